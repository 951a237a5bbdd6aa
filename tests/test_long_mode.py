"""Long mode on both engines: the guest's page tables as the VMM walks them,
and interrupt delivery through 64-bit IDT gates, with its failures.

``both`` runs each guest on the reference and on impl and insists that the
traces are equal, injection counts and RIPs included; the page walk is
compared directly, spec against impl, on the same tables.
"""

from __future__ import annotations

import pytest

from impl.guest_linear import LinearFault
from impl.vcpu import Vcpu
from spec import loader, trace
from spec.guest_linear import GuestAccessError
from spec.vmx import HardwareVcpu
from tests.conftest import both, guest

#: real mode -> protected mode -> long mode, identity-mapping the first
#: 2 MiB with one 2 MiB page; 64-bit code at ``lm`` with RSP = 0x7000, and
#: the PIT at about 1 kHz on IRQ0 (vector 0x20), unmasked
LONG_MODE = """
    enter_pm32
    mov edi, 0x20000
    mov ecx, 3072
    xor eax, eax
    rep stosd
    mov dword ptr [0x20000], 0x21003
    mov dword ptr [0x21000], 0x22003
    mov dword ptr [0x22000], 0x83
    enter_long_mode 0x20000
    mov rsp, 0x7000
    mov r15, 0x9000
    pic_init master_mask=0xfe
    pit_init 100
"""

#: lib/pm32.s's flat GDT with the 64-bit code segment (0x18), then a 32-bit
#: code segment (0x20) for a gate to name: five descriptors, 0x28 is beyond
GDT = """
    flat_gdt long64=1, more=0x00cf9b000000ffff
"""


def _gate(type_byte: int, selector: int, ist: int = 0) -> str:
    """Gate 0x20 of an IDT at 0x9000 (R15) for the ``handler`` below, then LIDT."""
    return f"""
    lea rax, [rip + handler]
    lea rdi, [r15 + 0x200]
    mov edx, {type_byte << 8 | ist:#x}
    gate64 {selector:#x}
    mov word ptr [r15 + 0x400], 0x2ff
    mov qword ptr [r15 + 0x402], 0x9000
    lidt [r15 + 0x400]
"""


def _long_mode_guest(name: str, gate: str, tail: str = "") -> loader.GuestImage:
    """The handler disables interrupts and halts: one delivery, then a hung vcpu."""
    body = (LONG_MODE + gate + tail + "    sti\nspin:\n    hlt\n    jmp spin\n"
            + "handler:\n    cli\n    hlt\n" + GDT)
    return guest(name, body, poweroff=False)


def test_lm64_guest_takes_interrupts_through_64_bit_gates():
    result = both(loader.load("lm64"))
    assert result.exit["reason"] == "poweroff"
    assert result.serial.splitlines() == [
        "lm64: long mode, paging. ticks 5, IF in the interrupt-gate handler 0, "
        "IF in the trap-gate handler 1",
        "frame: CS 0018 SS 0010 saved RSP 7008, frame at 6fd8",
        "R12 kept 0123456789abcdef",
        "test device qword + 0x101 via alias 1122334455667889",
    ]
    injections = [e for e in result.trace if isinstance(e, trace.Injection)]
    assert [e.vector for e in injections] == [0x20] * 5 + [0x24]
    # the vcpu was halted at each: the RIP is the instruction after a HLT
    image = loader.load("lm64")
    for e in injections:
        offset = e.rip - image.load_address
        assert image.image[offset - 1] == 0xF4, hex(e.rip)


def test_string_io_data_is_found_through_the_guests_page_tables():
    """lm64 sends its text with ``rep outsb`` from linear 0x40000000 + x,
    an alias of physical x: the ioreq carries the guest-physical address."""
    result = both(loader.load("lm64"))
    ptrs = [e for e in result.trace if isinstance(e, trace.IoreqTransition)
            and e.data_is_ptr and e.addr == 0x3F8]
    assert ptrs, "no data_is_ptr ioreq to COM1"
    assert all(0xF0000 <= e.data < 0x100000 for e in ptrs), [hex(e.data) for e in ptrs]


#: a bad gate 0x20 faults with this (vector, error code) as the CPU delivers
#: IRQ0 (EXT = 1); the guest's other gates are empty, so that fault's own gate
#: faults too, then #DF's: a triple fault, which Xen answers with a reset
@pytest.mark.parametrize("type_byte,selector,ist,first", [
    (0x8E, 0x18, 0, None),
    (0x86, 0x18, 0, (0x0D, 0x20 * 8 + 3)),      # a 32-bit gate type: #GP(IDT index)
    (0x0E, 0x18, 0, (0x0B, 0x20 * 8 + 3)),      # not present: #NP
    (0x8E, 0x20, 0, (0x0D, 0x21)),              # a 32-bit handler: #GP(selector)
    (0x8E, 0x10, 0, (0x0D, 0x11)),              # a data segment
    (0x8E, 0x28, 0, (0x0D, 0x29)),              # beyond the GDT
    (0x8E, 0x18, 1, (0x0A, 0x01)),              # IST 1, but no TSS: #TS(EXT)
], ids=["good", "16-bit-gate", "not-present", "32-bit-handler", "data-segment",
        "beyond-gdt", "ist"])
def test_a_64_bit_gate_is_checked_as_the_cpu_checks_it(type_byte, selector, ist, first):
    result = both(_long_mode_guest("gate", _gate(type_byte, selector, ist)), max_instructions=300_000)
    raised = [(e.vector, e.error_code) for e in result.trace
              if isinstance(e, trace.ExceptionDelivery)]
    if first is None:
        assert result.exit["reason"] == "hung", result.exit
        assert "interrupts disabled" in result.exit["message"]
        assert [e.vector for e in result.trace if isinstance(e, trace.Injection)] == [0x20]
        assert raised == []
        return
    assert result.exit["reason"] == "reboot", result.exit
    assert raised[0] == first and raised[-1] == (0x08, 0), raised
    assert [e.reason for e in result.trace if isinstance(e, trace.VmExit)][-1] == "triple_fault"


def test_an_idt_the_page_tables_do_not_map_is_a_page_fault_in_delivery():
    tail = """
    mov word ptr [r15 + 0x400], 0x2ff
    mov rax, 0x40000000
    mov [r15 + 0x402], rax
    lidt [r15 + 0x400]
"""
    result = both(_long_mode_guest("unmapped", "", tail), max_instructions=300_000)
    # #PF reading gate 0x20 (CR2 = its address); #PF again for gate 14: #DF; and
    # #DF's gate is unmapped too: a triple fault
    raised = [(e.vector, e.error_code, e.cr2) for e in result.trace
              if isinstance(e, trace.ExceptionDelivery)]
    assert raised == [(0x0E, 0, 0x40000200), (0x08, 0, None)]
    assert result.exit["reason"] == "reboot"


# --- the page walk itself, spec against impl on the same tables ----------------------

_MiB = 1 << 20

#: (CR0, CR4, EFER, page-table entries {gpa: (value, bytes)}, linear, write,
#:  expected gpa or the start of the error)
WALKS = [
    # 32-bit paging: a 4 KiB page, and a 4 MiB page with CR4.PSE
    (0x80000011, 0, 0, {0x10000: (0x11003, 4), 0x11000 + 4 * 5: (0x123003, 4)},
     0x5ABC, False, 0x123ABC),
    (0x80000011, 0x10, 0, {0x10000 + 4 * 1: (0xC00083, 4)}, 0x512345, False, 0xD12345),
    # PAE: PDPTE, then a 2 MiB page
    (0x80000011, 0x20, 0, {0x10000: (0x11001, 8), 0x11000 + 8 * 3: (0x600083, 8)},
     0x7ABCDE, True, 0x7ABCDE),
    # 4-level: 4 KiB, 2 MiB and 1 GiB pages
    (0x80000011, 0x20, 0x500, {0x10000: (0x11003, 8), 0x11000: (0x12003, 8),
                               0x12000: (0x13003, 8), 0x13000 + 8 * 2: (0x345003, 8)},
     0x2123, False, 0x345123),
    (0x80000011, 0x20, 0x500, {0x10000: (0x11003, 8), 0x11000: (0x12003, 8),
                               0x12000 + 8 * 1: (0x400083, 8)}, 0x2FFFFF, False, 0x4FFFFF),
    (0x80000011, 0x20, 0x500, {0x10000: (0x11003, 8), 0x11000 + 8 * 1: (0x80000083, 8)},
     0x40001234, False, 0x80001234),
    # failures: not present; read-only under CR0.WP; non-canonical
    (0x80000011, 0x20, 0x500, {0x10000: (0x11003, 8)}, 0x1000, False, "#PF at linear 0x1000"),
    (0x80010011, 0x20, 0x500, {0x10000: (0x11003, 8), 0x11000: (0x12003, 8),
                               0x12000: (0x200081, 8)}, 0x1000, True,
     "#PF at linear 0x1000: level 3 entry at 0x12000 is read-only"),
    (0x80000011, 0x20, 0x500, {}, 0x0000_8000_0000_0000, False, "#GP at linear"),
]


def _prepare(cpu_uc, write, cr0: int, cr4: int, efer: int, tables: dict) -> None:
    from unicorn import x86_const as X
    for gpa, (value, size) in tables.items():
        write(gpa, value.to_bytes(size, "little"))
    cpu_uc.reg_write(X.UC_X86_REG_CR4, cr4)
    cpu_uc.reg_write(X.UC_X86_REG_CR3, 0x10000)
    cpu_uc.msr_write(0xC0000080, efer & 0x100)
    cpu_uc.reg_write(X.UC_X86_REG_CR0, cr0)


@pytest.mark.parametrize("cr0,cr4,efer,tables,linear,write,expected", WALKS)
def test_spec_and_impl_walk_the_page_tables_alike(cr0, cr4, efer, tables, linear, write,
                                                  expected):
    ref, imp = HardwareVcpu(16 * _MiB), Vcpu(16 * _MiB)
    _prepare(ref.uc, ref.write, cr0, cr4, efer, tables)
    _prepare(imp.uc, imp.write, cr0, cr4, efer, tables)
    assert ref.long_mode() == imp.long_mode() == bool(efer)
    if isinstance(expected, int):
        assert ref.translate(linear, write) == imp.translate(linear, write) == expected
        # both set the accessed bit of every entry used (not of a PAE PDPTE,
        # which has none), and for a write the dirty bit of the last one
        leaf = max(tables)
        for gpa, (_value, size) in tables.items():
            a, b = ref.read(gpa, size), imp.read(gpa, size)
            assert a == b
            entry = int.from_bytes(a, "little")
            pdpte = bool(cr4 & 0x20) and not efer and gpa < 0x11000
            assert bool(entry & 0x20) != pdpte, (hex(gpa), hex(entry))
            assert bool(entry & 0x40) == (write and gpa == leaf), (hex(gpa), hex(entry))
        return
    with pytest.raises(GuestAccessError) as ref_err:
        ref.translate(linear, write)
    with pytest.raises(LinearFault) as imp_err:
        imp.translate(linear, write)
    assert str(ref_err.value).startswith(expected), str(ref_err.value)
    assert str(imp_err.value).startswith(expected), str(imp_err.value)
