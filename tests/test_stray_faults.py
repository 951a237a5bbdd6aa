"""Changing the CPU's code cache or memory map raises nothing in the guest.

Unicorn 2.1.4 drops translated code for a range by looking the range's
start up as a linear address in the guest's page tables, even where it is
a guest-physical address; where paging does not map it, the walk raises a
#PF that Unicorn leaves pending, with CR2 set and counted as a first
fault for #DF (:func:`spec.physical_cpu.drop_translations`). impl
write-protects each page of code it counts (:mod:`impl.blocks`): Debian's
Linux, whose early page tables map the kernel only at its high address,
took such a fault (CR2 its own physical address) in its first
milliseconds and reset. The guest here runs code from a page whose
guest-physical address is not mapped at the same linear address.
"""

from __future__ import annotations

import unicorn
from unicorn import x86_const as X

from hvmspec.guestgen import EPILOGUE, PROLOGUE
from spec import physical_cpu
from spec.loader import GuestImage, rom_from_source
from tests.conftest import both
from tests.test_page_faults import PAGING, _jump_to

#: linear 0xF1000-0x3FFFFF not present (the ROM's code is in its first
#: page); linear 0x400000 maps physical 0x300000
UNMAP = """
    mov edi, 0x21000 + 0xf1 * 4
    xor eax, eax
    mov ecx, 0x400 - 0xf1
    rep stosd
    mov dword ptr [0x22000], 0x300003
    mov eax, cr3
    mov cr3, eax
"""
#: at linear 0x400000: a hypercall (VMCALL first in its block, whose page
#: write-protection takes the stray fault), a loop, then "A" + CR2 >> 20 to
#: COM1 and power-off
CODE = ("0f01c1"                                    # vmcall
        "b910270000" "49" "75fd"                    # mov ecx, 10000; dec ecx; jnz
        "0f20d0" "c1e814" "0441"                    # mov eax, cr2; shr eax, 20; add al, 'A'
        "baf8030000" "ee"                           # out 0x3f8
        "66ba441f" "66b8003c" "66ef" "f4" "ebfd")   # PM1a_CNT: S5; hlt


def test_code_on_a_page_mapped_elsewhere_runs_without_a_stray_fault():
    source = PROLOGUE + PAGING + UNMAP + _jump_to(0x400000, CODE) + EPILOGUE
    result = both(GuestImage("stray", rom_from_source(source, "stray"), source))
    assert [e for e in result.trace if e.kind == "exception"] == []
    assert [e.rip for e in result.trace if e.kind == "hypercall"] == [0x400000]
    assert bytes(e.byte for e in result.trace if e.kind == "serial") == b"A"   # CR2 = 0
    assert result.exit["reason"] == "poweroff"


def _paged_cpu() -> unicorn.Uc:
    """A CPU with 32-bit paging that maps linear page 0 only, and RAM at
    0-0xFFFF and (a second region) 0x10000-0x1FFFF."""
    uc = physical_cpu.open_cpu()
    uc.mem_map(0, 0x10000)
    uc.mem_map(0x10000, 0x10000)
    uc.mem_write(0x1000, (0x2003).to_bytes(4, "little"))
    uc.mem_write(0x2000, (0x0003).to_bytes(4, "little"))
    uc.reg_write(X.UC_X86_REG_CR3, 0x1000)
    uc.reg_write(X.UC_X86_REG_CR0, 0x80000011)
    uc.reg_write(X.UC_X86_REG_CR2, 0x1234)
    return uc


def test_unicorn_faults_on_the_physical_address_it_drops_code_for():
    """The defect itself: protecting a region whose start is not mapped
    linearly sets CR2 to that start."""
    uc = _paged_cpu()
    uc.mem_protect(0x10000, 0x1000, unicorn.UC_PROT_READ)
    assert uc.reg_read(X.UC_X86_REG_CR2) == 0x10000


def test_drop_translations_says_so_and_puts_cr2_back():
    uc = _paged_cpu()
    assert physical_cpu.drop_translations(uc, uc.mem_protect, 0x10000, 0x1000,
                                          unicorn.UC_PROT_READ)
    assert uc.reg_read(X.UC_X86_REG_CR2) == 0x1234
    assert not physical_cpu.drop_translations(uc, uc.mem_protect, 0, 0x1000,
                                              unicorn.UC_PROT_ALL)


#: linear 0x401000 maps physical 0x301000, a page of the chunk that the
#: code at 0x300000 (linear 0x400000) has impl write-protect with it
#: (impl.blocks.CHUNK_PAGES): the code stores there, a loop, then reads
#: linear 0x200000, not present
CHUNK_STORE = """
    mov dword ptr [0x22004], 0x301003
"""
CHUNK_CODE = ("a300184000"                               # mov [0x401800], eax
              "b910270000" "49" "75fd"                   # mov ecx, 10000; dec ecx; jnz
              "a100002000"                               # mov eax, [0x200000]: #PF
              "ebfe")


def test_a_store_beside_code_then_a_page_fault_is_a_page_fault():
    """The store makes impl release the chunk's pages without code, from
    outside the run: the release's stray fault (linear 0x301000 is not
    present) was not left pending after a run that a refused store had
    ended, and impl discarded the guest's next exception in its place:
    the #PF came as a #DF. These guests have no IDT: #PF, #DF, then the
    triple fault resets the domain."""
    source = (PROLOGUE + PAGING + UNMAP + CHUNK_STORE + _jump_to(0x400000, CHUNK_CODE)
              + EPILOGUE)
    result = both(GuestImage("chunk", rom_from_source(source, "chunk"), source))
    faults = [e for e in result.trace if e.kind == "exception"]
    assert [(e.vector, e.cr2) for e in faults][:2] == [(14, 0x200000), (8, None)]
    assert result.exit["reason"] == "reboot"
