"""Paging: how the VMM turns a guest's linear address into a guest-physical one.

Room: the guest page-table walk that Xen does in software whenever it must
touch guest memory by linear address on the guest's behalf (``hvm_copy_*``
through ``paging_gva_to_gfn``, ``guest_walk_tables``): fetching the
instruction to emulate, the data of string I/O, the IVT/IDT, GDT and stack
during event delivery. Imports nothing of the model.

The walk follows the SDM vol. 3A, chapter 4:

* paging off (CR0.PG = 0): the linear address is the physical address;
* 32-bit paging (CR4.PAE = 0, 4.3): a page directory at CR3[31:12], 1024
  four-byte entries indexed by bits 31:22, then a page table indexed by bits
  21:12; a directory entry with PS set and CR4.PSE maps a 4 MiB page;
* PAE paging (CR4.PAE = 1, EFER.LMA = 0, 4.4): four PDPTEs at CR3[31:5],
  then eight-byte directory (PS: 2 MiB page) and table entries, 9 bits each;
* 4-level paging (EFER.LMA = 1, 4.5): PML4 at CR3[51:12], then PDPT (PS:
  1 GiB page), directory (PS: 2 MiB page) and table, 9 bits per level,
  on a canonical 48-bit address.

Every entry on the way must be present (bit 0); a write needs R/W (bit 1)
at every level when CR0.WP is set (the guest runs at CPL 0, so U/S does not
matter). As the CPU does, the walk sets the accessed bit (5) of every entry
it uses and, for a write, the dirty bit (6) of the entry that maps the page
(4.8). A failed walk is a page fault (#PF) with its error code (4.7: bit 0
present, bit 1 write); a non-canonical address is a #GP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

PAGE = 4096
CR0_PG = 1 << 31
CR0_WP = 1 << 16
CR4_PSE = 1 << 4
CR4_PAE = 1 << 5
EFER_LMA = 1 << 10

_P, _RW, _A, _D, _PS = 1, 1 << 1, 1 << 5, 1 << 6, 1 << 7
_ADDR = 0x000F_FFFF_FFFF_F000      # bits 51:12 of an eight-byte entry


class PageFault(Exception):
    """The walk failed: ``linear`` with the #PF error code, or #GP for a
    non-canonical address (``vector`` 13)."""

    def __init__(self, linear: int, error_code: int, vector: int = 14, why: str = "") -> None:
        self.linear, self.error_code, self.vector = linear, error_code, vector
        name = "#PF" if vector == 14 else "#GP"
        super().__init__(f"{name} at linear {linear:#x}" + (f": {why}" if why else ""))


@dataclass(frozen=True)
class PagingState:
    """The control registers a walk reads."""

    cr0: int
    cr3: int
    cr4: int
    efer: int

    @property
    def enabled(self) -> bool:
        return bool(self.cr0 & CR0_PG)


#: (read, write) of guest-physical memory, eight bytes at most at a time
ReadPhys = Callable[[int, int], bytes]
WritePhys = Callable[[int, bytes], None]


def canonical(linear: int) -> bool:
    """Bits 63:47 all equal (SDM vol. 1, 3.3.7.1)."""
    top = linear >> 47
    return top == 0 or top == (1 << 17) - 1


def levels(state: PagingState, linear: int) -> list[tuple[int, int, int]]:
    """The walk's shape for ``linear``: per level, the index shift, the
    number of index bits and the entry size, from the top level down."""
    if state.efer & EFER_LMA:
        return [(39, 9, 8), (30, 9, 8), (21, 9, 8), (12, 9, 8)]
    if state.cr4 & CR4_PAE:
        return [(30, 2, 8), (21, 9, 8), (12, 9, 8)]
    return [(22, 10, 4), (12, 10, 4)]


def translate(state: PagingState, linear: int, write: bool,
              read: ReadPhys, store: WritePhys) -> int:
    """The guest-physical address of ``linear``, walking the guest's page
    tables and setting their accessed and dirty bits; raises
    :class:`PageFault`."""
    if not state.enabled:
        return linear & 0xFFFF_FFFF
    long_mode = bool(state.efer & EFER_LMA)
    if long_mode and not canonical(linear):
        raise PageFault(linear, 0, vector=13, why="non-canonical address")
    if not long_mode:
        linear &= 0xFFFF_FFFF
    table = state.cr3 & (_ADDR if long_mode else 0xFFFF_FFE0 if state.cr4 & CR4_PAE
                         else 0xFFFF_F000)
    shape = levels(state, linear)
    wp = bool(state.cr0 & CR0_WP)
    error = int(write) << 1
    for depth, (shift, bits, size) in enumerate(shape):
        at = table + ((linear >> shift) & ((1 << bits) - 1)) * size
        entry = int.from_bytes(read(at, size), "little")
        pdpte = state.cr4 & CR4_PAE and not long_mode and depth == 0
        if not entry & _P:
            raise PageFault(linear, error, why=f"level {depth + 1} entry at {at:#x} is "
                                                f"not present")
        if write and wp and not pdpte and not entry & _RW:
            raise PageFault(linear, error | 1, why=f"level {depth + 1} entry at {at:#x} "
                                                    f"is read-only")
        last = depth == len(shape) - 1
        large = (not last and not pdpte and entry & _PS
                 and (size == 8 or state.cr4 & CR4_PSE) and (depth > 0 or not long_mode))
        if not pdpte:
            updated = entry | _A | (_D if write and (last or large) else 0)
            if updated != entry:
                store(at, updated.to_bytes(size, "little"))
        if last or large:
            page = 1 << shift
            if size == 4 and large:       # a 4 MiB page: bits 31:22 (PSE-36 not modelled)
                frame = entry & 0xFFC0_0000
            else:
                frame = entry & _ADDR & ~(page - 1)
            return frame | (linear & (page - 1))
        table = entry & (_ADDR if size == 8 else 0xFFFF_F000)
    raise AssertionError("unreachable: the last level returns")
