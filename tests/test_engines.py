"""The two engines agree where their code differs most: the clock.

Both let Unicorn run the guest between exits. The reference has Unicorn
count the instructions (``emu_start(..., count=N)``) and looks at each
translated block in Python; impl counts translated blocks in C and stops
only at instructions that exit. These cases aim at the
places where that could drift: an instruction budget that ends anywhere,
REP string instructions run by the CPU, faults part-way through a block,
and a fetch from memory that nothing backs.
"""

import pytest

from spec import loader, trace
from tests.conftest import both, guest

HELLO_EXITS = (13, 18, 388, 390)
#: the reset vector's far jump and the seven instructions of the prologue
SETUP = 1 + 7


@pytest.mark.parametrize("budget", sorted({1, 2, 12, 14, 17, 19, 25, 100, 387, 389, 391}
                                          | {n + d for n in HELLO_EXITS for d in (-1, 0, 1)}))
def test_budget_ends_at_the_same_instruction(budget):
    result = both(loader.load("hello"), max_instructions=budget)
    if budget <= 390:
        assert result.exit["reason"] == "limit"
        assert result.instructions == budget
    else:
        assert result.exit["reason"] == "poweroff"


def test_rep_movs_counts_each_iteration():
    body = """
    push ds
    pop es
    mov si, 0
    mov di, 0x600
    xor ax, ax
    mov es, ax
    mov cx, 7
    cld
    rep movsb
    xor cx, cx
    rep movsb               ; count 0: one instruction, no iteration
    mov al, 'm'
    mov dx, 0x3f8
    out dx, al
"""
    result = both(guest("movs", body))
    out = [e for e in result.trace if isinstance(e, trace.VmExit)][0]
    # set-up, 8 before the rep, 7 iterations and the final check that ends
    # it, 1 for the clear of cx, 1 for the empty rep, 2 after
    assert out.icount == SETUP + 8 + (7 + 1) + 1 + 1 + 2


def test_divide_error_is_delivered_at_the_faulting_instruction():
    body = """
    mov ax, 1
    xor cx, cx
    div cx
"""
    # the IVT is all zeros: #DE's handler is 0000:0000, zeros (add [bx+si], al)
    image = guest("div", body, poweroff=False)
    result = both(image, max_instructions=SETUP + 100)
    assert result.exit["reason"] == "limit"
    raised = [e for e in result.trace if isinstance(e, trace.ExceptionDelivery)]
    assert [(e.vector, e.source, e.icount) for e in raised] == [(0, "fault", SETUP + 2)]
    offset = raised[0].rip - image.load_address
    assert image.image[offset:offset + 2] == b"\xf7\xf1"


def test_fetch_from_unbacked_memory_is_an_ept_violation_at_the_target():
    body = """
    .byte 0xea
    .word 0x0000, 0xa000     ; jmp far a000:0000, into the VGA hole
"""
    result = both(guest("fetch", body, poweroff=False))
    exit_ = [e for e in result.trace if isinstance(e, trace.VmExit)][-1]
    assert exit_.reason == "ept_violation"
    assert exit_.rip == 0xA0000 and exit_.info["gpa"] == 0xA0000
    assert exit_.icount == SETUP + 1        # the far jump retired
    assert result.exit["reason"] == "crash"


#: inc ax four times, then ret: five instructions in five bytes
ROUTINE = (0x40, 0x40, 0x40, 0x40, 0xC3)
#: add ax, 2; inc ax; ret: the same five bytes' room, three instructions
PATCHED = (0x83, 0xC0, 0x02)


def _poke(at: int, values) -> str:
    return "".join(f"    mov byte ptr [{at + i:#x}], {v:#x}\n" for i, v in enumerate(values))


def test_code_the_guest_rewrites_is_counted_as_rewritten():
    """A routine the guest writes into RAM, runs, overwrites with different
    instructions in the same bytes' room (same address, same block size,
    fewer instructions), and runs again: each call's exit carries the count
    of what ran. impl's clock keeps a table of blocks it decoded and counts
    a known block without Python; it must notice that these bytes changed.
    A near call, so that nothing else sends the routine's block back to
    Python (a far call would: it loads CS)."""
    calls = """
    mov cx, 3
{label}:
    mov bx, 0x1000
    call bx                  ; the routine at f000:1000
    mov dx, 0x3f8
    out dx, al
    loop {label}
"""
    body = ("    mov ax, cs\n    mov ds, ax\n" + _poke(0x1000, ROUTINE)
            + calls.format(label="first") + _poke(0x1000, PATCHED) + calls.format(label="second"))
    result = both(guest("smc", body))
    outs = [e for e in result.trace if isinstance(e, trace.VmExit) and e.info.get("port") == 0x3F8]
    gaps = [b.icount - a.icount for a, b in zip(outs, outs[1:])]
    # per call: out, loop, mov bx, call, the routine, then mov dx before the next out
    assert gaps[:2] == [1 + 1 + 1 + 1 + 5 + 1] * 2
    assert gaps[-2:] == [1 + 1 + 1 + 1 + 3 + 1] * 2


def test_an_event_built_for_speed_is_the_event():
    """``Event.of`` (impl's per-access paths) builds the same event as the
    dataclass's constructor: equal, same hash, same JSON, still frozen."""
    import dataclasses
    fields = dict(vcpu=0, by="vmm", old="NONE", new="READY", type="pio", dir="write",
                  addr=0x3F8, size=1, count=1, df=0, data_is_ptr=0, data=0x41)
    fast, slow = trace.IoreqTransition.of(**fields), trace.IoreqTransition(**fields)
    assert fast == slow and hash(fast) == hash(slow) and fast.to_json() == slow.to_json()
    assert trace.Event.from_json(fast.to_json()) == slow
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.data = 0


def test_impl_counts_known_blocks_without_python_and_slices_leave_no_stop_points():
    """impl's clock counts a loop's block in C once it knows it: a loop of
    100,000 iterations in slices of 1,000 instructions ends at the exact
    count, with Python called a few times per slice (the slice's last
    block, the stop point where it ends), not on every iteration: the stop
    point placed where each slice ended is gone when the next one runs."""
    from spec.loader import GuestImage, rom_from_source
    from impl.vcpu import Vcpu
    source = ("mov ecx, 100000\ntop:\n add eax, 3\n dec ecx\n jnz top\n hlt\n")
    image = GuestImage("loop", rom_from_source(source, "loop"))
    cpu = Vcpu(16 << 20)
    cpu.write(image.load_address, image.image)
    slices = 0
    while True:
        ex = cpu.run(1000)
        slices += 1
        if ex.reason != "limit":
            break
        assert ex.icount == 1000 * slices
    # the reset vector's far jump, mov ecx, 3 per iteration, then hlt exits
    assert ex.reason == "hlt" and ex.icount == 1 + 1 + 3 * 100_000
    assert slices == 301
    assert cpu.python_calls() < 5 * slices


def test_reference_counts_through_the_cpu_not_per_instruction():
    """The reference has Unicorn count (``emu_start(..., count=N)``) and calls
    Python where a translated block starts, not on every instruction: a loop
    whose block is 22 instructions long, run in slices of 1,000 instructions
    (each ends inside the block), ends at the exact count with the model's
    code called a few times per block at most."""
    import sys
    from spec.loader import GuestImage, rom_from_source
    from spec.vmx import HardwareVcpu
    source = "mov ecx, 2000\ntop:\n" + " add eax, 3\n" * 20 + " dec ecx\n jnz top\n hlt\n"
    image = GuestImage("loop", rom_from_source(source, "loop"))
    hw = HardwareVcpu(16 << 20)
    hw.write(image.load_address, image.image)
    calls = 0

    def profile(frame, event, _arg):
        nonlocal calls
        if event == "call" and frame.f_code.co_filename.endswith("spec/vmx.py"):
            calls += 1
    slices = 0
    sys.setprofile(profile)
    try:
        while True:
            ex = hw.run(1000)
            slices += 1
            if ex.reason != "limit":
                break
            assert ex.icount == 1000 * slices
    finally:
        sys.setprofile(None)
    instructions = 1 + 1 + 22 * 2000
    assert ex.reason == "hlt" and ex.icount == instructions
    assert hw.reg("rax") == 3 * 20 * 2000
    assert calls < instructions / 5


def _marker_gaps(name: str, body: str) -> list[int]:
    """Run ``body`` in a flat 32-bit guest (the generated guests' set-up) on
    both engines, insisting on equal traces; the instruction counts between
    its successive OUTs to port 0x3ff."""
    from hvmspec.guestgen import EPILOGUE, PROLOGUE
    from spec.loader import GuestImage, rom_from_source
    source = PROLOGUE + body + EPILOGUE
    result = both(GuestImage(name, rom_from_source(source, name), source))
    marks = [e.icount for e in result.trace
             if isinstance(e, trace.VmExit) and e.info.get("port") == 0x3FF]
    return [b - a for a, b in zip(marks, marks[1:])]


def test_one_selector_two_code_segment_sizes():
    """The same six bytes at the same linear address, reached by a near call
    in a 32-bit code segment (mov eax, imm32; ret: two instructions) and in
    a 16-bit one (mov ax, 1; inc ax; inc ax; ret: four), where the 16-bit
    segment has the same selector, 0x08, in a second GDT: what decides how
    a block decodes is the code segment's size, not its selector. Each
    marker's exit carries the count of what ran between."""
    body = """
    mov dword ptr [0x7100], 0x400001b8     ; the routine: b8 01 00 40 40 c3
    mov word ptr [0x7104], 0xc340
    mov dword ptr [0x7200], 0xff7100bb     ; 16-bit: mov bx, 0x7100; call bx;
    mov dword ptr [0x7204], 0x16010fd3     ; lgdt [0xa110]; jmp far 0x08:back32
    mov dword ptr [0x7208], 0xea66a110
    mov eax, back32
    add eax, ROM
    mov [0x720c], eax
    mov word ptr [0x7210], 0x08
    mov dword ptr [0xa000], 0              ; the second GDT: 0x08 is 16-bit code
    mov dword ptr [0xa004], 0
    mov dword ptr [0xa008], 0x0000ffff
    mov dword ptr [0xa00c], 0x008f9b00
    mov dword ptr [0xa010], 0x0000ffff
    mov dword ptr [0xa014], 0x00cf9300
    mov word ptr [0xa100], 23
    mov dword ptr [0xa102], 0xa000
    mov word ptr [0xa110], 23              ; the first GDT, where 16-bit code finds it
    mov eax, gdt
    add eax, ROM
    mov [0xa112], eax
    mov dx, 0x3ff
    out dx, al
    mov ebx, 0x7100
    call ebx
    out dx, al
    mov ebx, 0x7100
    call ebx
    out dx, al
    mov esi, 2
trip:
    lgdt [0xa100]
    .byte 0xea                             ; jmp far 0x08:0x7200, now 16-bit code
    .long 0x7200
    .word 0x08
back32:
    out dx, al
    dec esi
    jnz trip
    mov ebx, 0x7100
    call ebx
    out dx, al
"""
    gaps = _marker_gaps("cs-size", body)
    # out, mov ebx, call, 2 | 4 and lgdt, jmp far, mov bx, call, lgdt, jmp far
    assert gaps == [5, 5, 1 + 1 + 6 + 4, 1 + 2 + 6 + 4, 1 + 2 + 2 + 2]


def test_a_linear_address_remapped_under_paging():
    """With paging on, linear 0x400000 names one physical page, then (after
    the page-table entry changes and INVLPG) another holding different code
    in the same six bytes' room, then (after a MOV to CR3) the first again:
    each call counts the code that the translation names. impl's clock
    keeps decoded blocks by linear address; a TLB flush must start afresh."""
    call = "    mov ebx, 0x400000\n    call ebx\n    out dx, al\n"
    body = """
    mov edi, 0x21000                       ; a page table mapping 0-4 MiB as itself
    mov eax, 0x3
    mov ecx, 1024
fill:
    mov [edi], eax
    add eax, 0x1000
    add edi, 4
    dec ecx
    jnz fill
    mov dword ptr [0x22000], 0x30003       ; linear 0x400000 -> 0x30000
    mov dword ptr [0x20000], 0x21003
    mov dword ptr [0x20004], 0x22003
    mov dword ptr [0x30000], 0x000001b8    ; mov eax, 1; ret: 2 instructions
    mov word ptr [0x30004], 0xc300
    mov dword ptr [0x31000], 0xb0404040    ; inc eax (3 times); mov al, 1; ret: 5
    mov word ptr [0x31004], 0xc301
    mov eax, 0x20000
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
    mov dx, 0x3ff
    out dx, al
""" + call + call + """
    mov dword ptr [0x22000], 0x31003       ; linear 0x400000 -> 0x31000
    invlpg [0x400000]
""" + call + call + """
    mov dword ptr [0x22000], 0x30003       ; back to 0x30000
    mov eax, cr3
    mov cr3, eax
""" + call
    gaps = _marker_gaps("remap", body)
    # out, mov ebx, call, the routine; the writes and flushes before
    assert gaps == [3 + 2, 3 + 2, 2 + 3 + 5, 3 + 5, 4 + 2 + 2]


def test_an_emulated_push_onto_a_page_of_code():
    """``push dword [mmio]`` with the stack on a page that also holds a block
    the guest has run: impl write-protects such a page, and the VMM, which
    carries the push out itself (a read ioreq, then the store), must not be
    refused halfway (the device read done, the stack not written)."""
    from hvmspec.guestgen import EPILOGUE, PROLOGUE
    body = """
    mov dword ptr [0x6800], 0x90909090     ; nop (4 times), then ret, at 0x6800
    mov byte ptr [0x6804], 0xc3
    mov ebx, 0x6800
    call ebx                               ; its block is known: the page is code
    mov ebp, 0xfeb00000
    mov dword ptr [ebp], 0x12345678        ; the test device's first register
    mov esi, esp
    mov esp, 0x6f00                        ; a stack on the routine's page
    push dword ptr [ebp]
    pop eax
    mov esp, esi
    mov dx, 0x3ff
    out dx, al
    shr eax, 8
    out dx, al
    call ebx                               ; the routine still runs, and counts
    out dx, al
"""
    from spec.loader import GuestImage, rom_from_source
    source = PROLOGUE + body + EPILOGUE
    result = both(GuestImage("push-code", rom_from_source(source, "push-code"), source))
    outs = [e for e in result.trace if isinstance(e, trace.VmExit) and e.info.get("port") == 0x3FF]
    assert result.exit["reason"] == "poweroff" and len(outs) == 3
    writes = [e.data for e in result.trace if isinstance(e, trace.DeviceIo)
              and e.addr == 0x3FF and e.dir == "write"]
    assert writes[:2] == [0x78, 0x56]
    assert outs[2].icount - outs[1].icount == 1 + 1 + 5    # out, call, 4 nops and ret


#: mov byte ptr [0x1005], 0x40 (turns the NOP after it into INC AX); nop;
#: inc ax; ret: a routine whose first instruction stores into its own block
SELF_STORE = (0xC6, 0x06, 0x05, 0x10, 0x40, 0x90, 0x40, 0xC3)


def test_a_budget_that_ends_at_a_store_into_its_own_block():
    """A store into the block being run makes Unicorn (QEMU) abandon the
    block before the store and run the storing instruction again, alone;
    Unicorn's own count sees that instruction twice. Budgets that end
    anywhere around it, the store first in its block among them, end at
    the same instruction on both engines, after the store retired once."""
    body = ("    mov ax, cs\n    mov ds, ax\n" + _poke(0x1000, SELF_STORE)
            + "    xor ax, ax\n    mov dx, 0x3f8\n    out dx, al\n    mov bx, 0x1000\n"
            "    call bx\n    out dx, al\n")
    full = both(guest("selfstore", body))
    outs = [e for e in full.trace if isinstance(e, trace.VmExit) and e.info.get("port") == 0x3F8]
    # mov bx, call, the store, inc ax (the NOP rewritten), inc ax, ret
    assert outs[1].icount - outs[0].icount == 1 + 1 + 1 + 1 + 1 + 1 + 1
    assert full.serial == "\x00\x02"            # AL: 0, then 2 (both INCs ran)
    for budget in range(outs[0].icount + 1, outs[1].icount + 2):
        result = both(guest("selfstore", body), max_instructions=budget)
        assert result.exit["reason"] == "limit" and result.instructions == budget
