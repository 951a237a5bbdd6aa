"""A segment load at the hardware boundary leaves GDTR and CR3 alone.

Both engines load segment registers the CPU's way through
:func:`spec.physical_cpu.load_segment` (event delivery from ring 3, SYSCALL,
the VMM's emulation). It does the load on a scratch 32-bit CPU, whose
register interface cuts a descriptor-table base to 32 bits; the guest's
GDTR came back as ``0x1000`` where Linux had put its GDT at
``0xfffffe0000001000``, and the first event from ring 3 (busybox's first
page fault) then ended in a triple fault: the return to user mode read the
GDT at the cut address. Only LGDT changes GDTR (SDM vol. 3A 2.4.1); in
IA-32e mode its base is a 64-bit linear address (3.5.1).
"""

from __future__ import annotations

import unicorn.x86_const as X

from spec import physical_cpu

GDT_BASE = 0xFFFF_8000_0000_1000
DATA = (0x00CF92000000FFFF).to_bytes(8, "little")     # flat writable data, DPL 0


def test_loading_a_segment_keeps_the_64_bit_gdt_base():
    uc = physical_cpu.open_cpu()
    uc.reg_write(X.UC_X86_REG_CR0, 0x11)                # protected mode
    uc.reg_write(X.UC_X86_REG_GDTR, (0, GDT_BASE, 0x7F, 0))
    physical_cpu.load_segment(uc, "ds", 0x10, DATA)
    assert uc.reg_read(X.UC_X86_REG_DS) == 0x10
    assert uc.reg_read(X.UC_X86_REG_GDTR)[1:3] == (GDT_BASE, 0x7F)


def test_event_delivery_into_ring_0_keeps_the_64_bit_gdt_base():
    uc = physical_cpu.open_cpu()
    uc.reg_write(X.UC_X86_REG_CR0, 0x11)
    uc.reg_write(X.UC_X86_REG_GDTR, (0, GDT_BASE, 0x7F, 0))
    code = (0x00CF9A000000FFFF).to_bytes(8, "little")   # flat code, DPL 0
    physical_cpu.load_segment(uc, "cs", 0x08, code, privilege=0)
    physical_cpu.load_segment(uc, "ss", 0x10, DATA)
    assert uc.reg_read(X.UC_X86_REG_GDTR)[1] == GDT_BASE
