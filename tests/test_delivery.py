"""Software interrupts and exceptions, delivered as the SDM says (spec/delivery.py,
impl/delivery.py), on both engines with equal traces (``both``)."""

from __future__ import annotations

import pytest

from spec import delivery, loader, trace
from tests.conftest import POWEROFF, both, guest


def _raised(result) -> list[trace.ExceptionDelivery]:
    return [e for e in result.trace if isinstance(e, trace.ExceptionDelivery)]


# --- the exceptions guest: every vector, three modes ------------------------------------

@pytest.fixture(scope="module")
def exceptions():
    return loader.load("exceptions"), both(loader.load("exceptions"))


def test_the_exceptions_guest_prints_every_vector_in_every_mode(exceptions):
    _image, result = exceptions
    assert result.exit["reason"] == "poweroff"
    seen = {}
    for line in result.serial.splitlines():
        mode, vector = line.split()[:2]
        seen.setdefault(mode, []).append(int(vector, 16))
    assert seen == {"R": [0x21, 3, 4, 1, 0, 5, 6, 7, 16],
                    "P": [0x21, 3, 4, 1, 0, 5, 6, 7, 16, 13, 11, 12, 10, 14, 14, 14, 14, 8],
                    "L": [0x21, 3, 1, 0, 6, 7, 13, 14, 14, 14, 0x22]}
    assert [e.vector for e in _raised(result)] == seen["R"] + [
        0x21, 3, 4, 1, 0, 5, 6, 7, 16, 13, 11, 12, 10, 14, 14, 14, 14, 13, 8] + seen["L"]


def test_traps_save_the_next_instruction_and_faults_the_faulting_one(exceptions):
    """INT n, INT3, INTO and INT1 are traps; the rest are faults (SDM 6.5)."""
    image, result = exceptions
    traps = {"software": (0xCD, 2), "software_exception": None, "icebp": (0xF1, 1)}
    for e in _raised(result):
        at = e.rip - image.load_address
        if e.source == "fault":
            # the saved instruction is the one that faulted: not a trap opcode
            assert image.image[at] not in (0xCD, 0xCC, 0xCE, 0xF1), e
        elif e.source == "software_exception":
            assert image.image[at - 1] == (0xCC if e.vector == 3 else 0xCE), e
        else:
            opcode, length = traps[e.source]
            assert image.image[at - length] == opcode, e


def test_error_codes_and_cr2(exceptions):
    _image, result = exceptions
    codes = [(e.vector, e.error_code, e.cr2) for e in _raised(result)
             if e.vector in delivery.ERROR_CODE]
    assert codes == [
        (13, 0x1238, None),               # a selector beyond the GDT
        (11, 0x18, None),                 # a data segment not present
        (12, 0x18, None),                 # the same as SS
        (10, 0x10, None),                 # a task return to a segment that is not a TSS
        (14, 0, 0x300000),                # read, not present
        (14, 3, 0x301004),                # write, present but read-only (CR0.WP)
        (14, 2, 0x300000),                # MMIO: rep movsd's write to an absent page
        (14, 0, 0xA1000),                 # MMIO: a read's second page, from its start
        (13, 0x1238, None),               # #GP, whose gate is not present: #NP,
        (8, 0, None),                     # contributory twice: #DF
        (13, 0, None),                    # long mode: a non-canonical address
        (14, 0, 0x300000),
        (14, 3, 0x400010),
        (14, 2, 0x300000),                # MMIO: rep movsq's write to an absent page
    ]
    lines = result.serial.splitlines()
    assert "P 0e 00000003 000f0559 00301004 00006ff4" in lines
    assert "P 08 00000000 000f0599 000a1000 00006ff4" in lines


def test_no_error_code_is_pushed_in_real_mode_and_the_frame_is_flags_cs_ip(exceptions):
    _image, result = exceptions
    real = [line for line in result.serial.splitlines() if line.startswith("R ")]
    # SP = 0x7000 before each event: FLAGS, CS, IP below it, IP at 0x6ffa
    assert {line.split()[3] for line in real} == {"6ffa"}
    # 32-bit gates at CPL 0: EFLAGS, CS, EIP and the error code (or the stub's
    # dummy) on the same stack, the saved EIP at 0x6ff4 (the handler's frame)
    prot = [line for line in result.serial.splitlines() if line.startswith("P ")]
    assert {line.split()[5] for line in prot} == {"00006ff4"}


def test_long_mode_aligns_the_stack_and_ist_switches_it(exceptions):
    _image, result = exceptions
    long_lines = [line.split() for line in result.serial.splitlines() if line.startswith("L ")]
    frames = {fields[1]: fields[5] for fields in long_lines}
    # RSP = 0x7000: SS, RSP, RFLAGS, CS, RIP (+ the error code or dummy), RIP at 0x6fd8
    assert frames["21"] == "0000000000006fd8"
    # INT 22h's gate names IST 1 (0x6000 in the TSS): the frame is there
    assert frames["22"] == "0000000000005fd8"


# --- protected mode, built per test ------------------------------------------------------

#: the descriptors after lib/pm32.s's flat GDT: ring-3 code (0x18) and data
#: (0x20), both flat, and a 32-bit TSS (0x28) at 0xc000, 104 bytes
RING3_CODE, RING3_DATA, TSS_AT_C000 = 0x00CFFB000000FFFF, 0x00CFF3000000FFFF, 0x00008900C0000067

#: an IRETD to ring 3 (CS 0x1b, SS:ESP 0x23:0x5000), at the label ``ring3``
RING3 = """
    push 0x23
    push 0x5000
    pushfd
    push 0x1b
    mov eax, ring3
    add eax, 0xf0000
    push eax
    iretd
ring3:
"""

#: paging with one 4 MiB page (CR4.PSE) for 0 .. 4 MiB: a page directory at
#: 0x20000 whose other entries are not present
PAGING_4MIB = """
    mov edi, 0x20000
    mov ecx, 1024
    xor eax, eax
    rep stosd
    mov dword ptr [0x20000], 0x83       ; 0 .. 4 MiB, one page (PSE)
    mov eax, cr4
    or eax, 0x10
    mov cr4, eax
    mov eax, 0x20000
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
"""


def _pm(body: str, gates: dict[int, tuple[str, int]], extra: str = "") -> loader.GuestImage:
    """A 32-bit protected-mode guest (flat ring-0 segments 0x08/0x10, ring-3
    0x1b/0x23, a TSS at 0x28 whose ESP0 is 0x6800) with an IDT at 0x9000 of
    ``gates``: vector -> (handler label, type/attribute byte). Each handler
    sends ESP and the five dwords above it to port 0x510 (ioreqs the trace
    shows), then powers off."""
    fill = "".join(f"""
    mov eax, {label}
    add eax, 0xf0000
    mov edi, 0x9000 + {vector * 8}
    gate32 {attr << 8:#x}
""" for vector, (label, attr) in gates.items())
    source = f"""
    enter_pm32
    mov edi, 0x9000
    mov ecx, 0x200
    xor eax, eax
    rep stosd
    mov edi, 0xc000
    mov ecx, 26
    rep stosd
    mov dword ptr [0xc004], 0x6800      ; ESP0
    mov dword ptr [0xc008], 0x10        ; SS0
    mov ax, 0x28
    ltr ax
{fill}
    mov ebx, idtr
    lidt [ebx + 0xf0000]
{body}
dump:
    mov dx, 0x510
    mov eax, esp
    out dx, eax
    mov ecx, 5
dump_next:
    pop eax
    out dx, eax
    loop dump_next
    poweroff
{extra}
    flat_gdt more="{RING3_CODE:#x}, {RING3_DATA:#x}, {TSS_AT_C000:#x}"
idtr:
    .word 0x1ff
    .long 0x9000
"""
    return guest("pm", source, poweroff=False)


def _dumped(result) -> list[int]:
    return [e.data for e in result.trace if isinstance(e, trace.IoreqTransition)
            and e.addr == 0x510 and e.new == "READY"]


@pytest.mark.parametrize("attr,if_after", [(0x8E, 0), (0x8F, 1)], ids=["interrupt", "trap"])
def test_an_interrupt_gate_clears_if_and_a_trap_gate_does_not(attr, if_after):
    body = """
    sti
    int 0x21
"""
    result = both(_pm(body, {0x21: ("handler", attr)},
                      "handler:\n    pushfd\n    jmp dump\n"))
    words = _dumped(result)
    assert words[1] >> 9 & 1 == if_after            # EFLAGS as the handler found it
    assert words[4] >> 9 & 1 == 1                   # the saved EFLAGS: IF was set
    assert words[3] == 0x08                         # the saved CS


def test_a_privilege_change_switches_to_the_tss_stack():
    """INT 21h from ring 3 through a DPL-3 gate to a ring-0 handler: the CPU
    takes SS:ESP from the TSS (SS0 0x10, ESP0 0x6800) and pushes the old SS,
    ESP, EFLAGS, CS and EIP there (SDM 6.12.1)."""
    body = RING3 + "    int 0x21\n"
    result = both(_pm(body, {0x21: ("handler", 0xEE)}, "handler:\n    jmp dump\n"))
    esp, eip, cs, eflags, old_esp, old_ss = _dumped(result)
    assert esp == 0x6800 - 20
    assert cs == 0x1B and old_esp == 0x5000 and old_ss == 0x23
    assert [(e.vector, e.source) for e in _raised(result)] == [(0x21, "software")]


def test_int_n_through_a_gate_below_cpl_is_gp_with_the_idt_index():
    """A software interrupt checks the gate's DPL against CPL (SDM 6.12.1.1):
    ring 3 through a DPL-0 gate is #GP(vector * 8 + 2), EXT clear."""
    body = RING3 + "    int 0x21\n"
    result = both(_pm(body, {0x21: ("handler", 0x8E), 13: ("handler", 0x8E)},
                      "handler:\n    jmp dump\n"))
    assert [(e.vector, e.error_code) for e in _raised(result)] == [(0x21, None),
                                                                   (13, 0x21 * 8 + 2)]
    esp, code, eip, cs, *_ = _dumped(result)
    assert code == 0x10A and cs == 0x1B


def test_a_fault_delivering_int_n_is_delivered_serially_not_as_a_double_fault():
    """INT n is benign (SDM table 6-5): its gate missing is #NP(vector * 8 + 2)
    with EXT clear, delivered in its place."""
    result = both(_pm("    int 0x21\n", {0x21: ("handler", 0x0E), 11: ("handler", 0x8E)},
                      "handler:\n    jmp dump\n"))
    assert [(e.vector, e.error_code) for e in _raised(result)] == [(0x21, None),
                                                                   (11, 0x21 * 8 + 2)]
    assert result.exit["reason"] == "poweroff"


def test_a_page_fault_during_a_page_fault_is_a_double_fault():
    """#PF with the stack unmapped: pushing its frame faults again (a write:
    error code 2, CR2 the first push); two page faults make #DF (table 6-5),
    whose frame goes on the same stack: a triple fault."""
    body = PAGING_4MIB + """
    mov esp, 0x800000                   ; above the mapping
    mov eax, [0x400000]
"""
    result = both(_pm(body, {14: ("handler", 0x8E), 8: ("handler", 0x8E)},
                      "handler:\n    jmp dump\n"))
    assert [(e.vector, e.error_code, e.cr2) for e in _raised(result)] == [
        (14, 0, 0x400000), (8, 0, None)]
    assert result.exit["reason"] == "reboot"
    assert [e.reason for e in result.trace if isinstance(e, trace.VmExit)][-1] == "triple_fault"


# --- real mode ---------------------------------------------------------------------------

def test_int_21h_in_real_mode_goes_through_the_ivt():
    """The report of issue 17: INT 21h crashed the domain."""
    body = """
    ivt_set 0x21 * 4, handler, es:
    sti
    int 0x21
    hlt
handler:
    pushf
    pop ax
    mov dx, 0x510
    out dx, ax
""" + POWEROFF
    result = both(guest("int21", body, poweroff=False))
    assert result.exit["reason"] == "poweroff"
    flags = _dumped(result)[0]
    assert not flags & 0x200                        # IF cleared on the way in
    assert [(e.vector, e.source) for e in _raised(result)] == [(0x21, "software")]


def test_a_vector_beyond_the_ivt_limit_triple_faults_and_xen_resets_the_domain():
    body = """
    lidt cs:[empty]
    int3
    hlt
empty:
    .word 0
    .long 0
"""
    result = both(guest("tf", body, poweroff=False))
    # INT3 (benign) faults with #GP; #GP's own entry is beyond the limit too:
    # contributory twice, #DF; and #DF's: a triple fault
    assert [(e.vector, e.error_code) for e in _raised(result)] == [
        (3, None), (13, 3 * 8 + 2), (8, 0)]
    assert result.exit["reason"] == "reboot"


# --- the rules themselves ---------------------------------------------------------------

@pytest.mark.parametrize("first,second,double", [
    (delivery.Event(0x21, delivery.SOFTWARE, 0), 13, False),     # benign first
    (delivery.Event(0x20, delivery.EXTERNAL, 0), 11, False),     # an interrupt is benign
    (delivery.Event(6, delivery.FAULT, 0), 13, False),           # #UD is benign
    (delivery.Event(13, delivery.FAULT, 0, 0), 11, True),        # contributory twice
    (delivery.Event(13, delivery.FAULT, 0, 0), 14, False),       # contributory, then #PF
    (delivery.Event(14, delivery.FAULT, 0, 0, 0), 14, True),     # #PF twice
    (delivery.Event(14, delivery.FAULT, 0, 0, 0), 13, True),     # #PF, then contributory
    (delivery.Event(0, delivery.FAULT, 0), 12, True),            # #DE is contributory
])
def test_table_6_5(first, second, double):
    assert delivery.second_is_double(first, delivery.Fault(second, 0, "")) is double


def test_string_io_into_an_unmapped_page_injects_a_page_fault():
    """The VMM finds the data of ``rep insb`` where the guest's page tables
    do not reach: it injects #PF (a write: error code 2; CR2 the address)
    instead of crashing the domain, and the instruction does not retire."""
    body = PAGING_4MIB + """
    mov edi, 0x400000
    mov ecx, 4
    mov dx, 0x3f8
    cld
    rep insb
"""
    result = both(_pm(body, {14: ("handler", 0x8E)}, "handler:\n    jmp dump\n"))
    assert [(e.vector, e.error_code, e.cr2) for e in _raised(result)] == [(14, 2, 0x400000)]
    esp, code, eip, cs, eflags, _ = _dumped(result)
    assert code == 2 and cs == 0x08
    assert not [e for e in result.trace if isinstance(e, trace.IoreqTransition) and e.addr == 0x3F8]
    assert result.exit["reason"] == "poweroff"


# --- faults of the instructions the VMM emulates ------------------------------------------

def test_mmio_faults_are_injected_before_any_ioreq(exceptions):
    """The exceptions guest's MMIO events (a string move from the VGA hole
    into an absent page; a read that crosses from the hole into an absent
    page) fault in the VMM's probe of the instruction: each is an
    ``ept_violation`` exit followed by the #PF, and no ioreq reaches the
    device model for either (spec/mmio.py, "Faults")."""
    _image, result = exceptions
    mmio_exits = [i for i, e in enumerate(result.trace)
                  if isinstance(e, trace.VmExit) and e.reason == "ept_violation"]
    assert len(mmio_exits) == 3                     # two in protected mode, one in long mode
    for i in mmio_exits:
        after = result.trace[i + 1]
        assert isinstance(after, trace.ExceptionDelivery) and after.vector == 14, after
    assert not [e for e in result.trace if isinstance(e, trace.IoreqTransition)
                and 0xA0000 <= e.addr < 0xC0000]


def _copies(result) -> list[int]:
    """The addresses of the MMIO ioreqs (type copy) the run sent."""
    return [e.addr for e in result.trace if isinstance(e, trace.IoreqTransition)
            and e.type == "copy" and e.new == "READY"]


def _real_mode_vga(access: str) -> loader.GuestImage:
    """A real-mode guest whose #GP handler (vector 13, through the IVT)
    sends the saved IP to port 0x510 and powers off, running ``access`` with
    DS at the VGA hole (0xA000)."""
    return guest("limit", f"""
    mov word ptr es:[13 * 4], handler
    mov word ptr es:[13 * 4 + 2], 0xf000
    mov ax, 0xa000
    mov ds, ax
here:
    {access}
    hlt
handler:
    pop ax
    mov dx, 0x510
    out dx, ax
""" + POWEROFF, poweroff=False)


def test_a_real_mode_access_past_the_segment_limit_on_mmio_is_gp():
    """A word at DS:0xFFFF reaches past real mode's 64 KiB limit: #GP, with
    no error code in real mode and the faulting instruction saved, and no
    ioreq. (QEMU's TCG does not check real-mode limits, nor does Unicorn for
    the code it runs itself: only the VMM's emulation sees this one.)"""
    image = _real_mode_vga("mov ax, [0xffff]")
    result = both(image)
    # the trace records the exception's error code; real mode pushes none,
    # so the first word the handler pops is the saved IP
    assert [(e.vector, e.error_code) for e in _raised(result)] == [(13, 0)]
    (ip,) = _dumped(result)
    assert image.image[ip] == 0xA1                 # mov ax, moffs16: the faulting one
    assert not _copies(result)
    assert result.exit["reason"] == "poweroff"


def test_big_real_mode_offsets_are_not_limit_checked():
    """An offset above 0xFFFF (32-bit addressing) is taken as big real
    mode's: DS:0x10010 (0xB0010) goes to the device as an ioreq, no fault."""
    result = both(_real_mode_vga("mov ebx, 0x10010\n    mov ax, [ebx]"))
    assert _copies(result) == [0xB0010]
    assert not _raised(result)


def test_string_io_to_the_vpic_faults_at_the_element_whose_page_is_absent():
    """``rep insb`` from the PIC (which Xen emulates itself) into a page the
    guest's page tables do not map: the elements before it are done, then
    #PF with ECX and EDI at the faulting element, as the CPU leaves a
    restartable string instruction."""
    body = PAGING_4MIB + """
    mov edi, 0x3ffffe
    mov ecx, 4
    mov dx, 0x20
    cld
    rep insb
"""
    handler = "handler:\n    push edi\n    push ecx\n    jmp dump\n"
    result = both(_pm(body, {14: ("handler", 0x8E)}, handler))
    assert [(e.vector, e.error_code, e.cr2) for e in _raised(result)] == [(14, 2, 0x400000)]
    _esp, ecx, edi, code, _eip, cs = _dumped(result)[:6]
    assert (ecx, edi, code, cs) == (2, 0x400000, 2, 0x08)
    assert len([e for e in result.trace if isinstance(e, trace.XenIo)]) == 2
