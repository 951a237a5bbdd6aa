"""impl's p2m and ``memory_op``: an HVM guest gives memory back and takes it again.

Room: which pages of a domain's RAM are present, the generation of the
frames behind them, and the hypercall that changes them
(``XENMEM_decrease_reservation``, ``XENMEM_populate_physmap``) with the
rules of Xen's ``common/memory.c`` for a domU. Imports :mod:`spec.platform`
and :mod:`spec.trace` (interface only); the nested page tables are the
vcpu's (:meth:`impl.vcpu.Vcpu.remove_page`, ``restore_page``), passed in as
two callables.

The guest's ``struct xen_memory_reservation`` is read in its word size's
layout: five fields ``extent_start, nr_extents, extent_order, mem_flags,
domid`` packed ``<IIIIH`` (20 bytes, 4-byte frame numbers in the list) for
a 16/32-bit guest, ``<QQIIH`` (32 bytes, 8-byte frame numbers) for a
64-bit one. Results are what Xen leaves in (E/R)AX: extents done or a
negative errno.
"""

from __future__ import annotations

import struct
from typing import Callable

from spec import platform, trace

EPERM, EFAULT, ENOSYS = 1, 14, 38
MEMORY_OP = 12
NAMES = {MEMORY_OP: "memory_op"}
DECREASE, POPULATE = 1, 6
DOMID_SELF = 0x7FF0
DECREASE_MAX_ORDER, POPULATE_MAX_ORDER = 20, 9
#: the guest's word size -> (the reservation struct, bytes of one frame number)
RESERVATION = {32: (struct.Struct("<IIIIH"), 4), 64: (struct.Struct("<QQIIH"), 8)}

Reader = Callable[[int, int], "bytes | None"]


class P2m:
    """One domain's RAM pages: the given-back ones (holes) and a generation
    per page that moves on each time the page is given back."""

    def __init__(self, memory_bytes: int, unmap: Callable[[int], None],
                 remap: Callable[[int], None], emit: Callable[[trace.Event], None]) -> None:
        shift = platform.PAGE_SHIFT
        #: RAM as pfn ranges [first, end)
        self.ram = [(lo >> shift, hi >> shift) for lo, hi in platform.ram_ranges(memory_bytes)]
        self.unmap, self.remap, self.emit = unmap, remap, emit
        self.holes: set[int] = set()
        self.gen: dict[int, int] = {}
        self.max_pages = sum(hi - lo for lo, hi in self.ram)
        self.tot_pages = self.max_pages

    def _ram(self, pfn: int) -> bool:
        return any(lo <= pfn < hi for lo, hi in self.ram)

    def frames(self, gpa: int, length: int) -> int:
        """The generation of the frames a mapping of the range shows now."""
        gen = self.gen
        if not gen:
            return 0
        shift = platform.PAGE_SHIFT
        return sum(gen.get(p, 0) for p in range(gpa >> shift,
                                                 ((gpa + max(length, 1) - 1) >> shift) + 1))

    def _give_back(self, pfn: int) -> bool:
        if pfn in self.holes or not self._ram(pfn):
            return False
        self.unmap(pfn)
        self.holes.add(pfn)
        self.gen[pfn] = self.gen.get(pfn, 0) + 1
        self.tot_pages -= 1
        return True

    def _fill(self, pfn: int, pages: int) -> bool:
        if self.tot_pages + pages > self.max_pages:
            return False
        wanted = range(pfn, pfn + pages)
        holes = self.holes
        if any(p not in holes or not self._ram(p) for p in wanted):
            return False
        for p in wanted:
            self.remap(p)
            holes.remove(p)
        self.tot_pages += pages
        return True

    def memory_op(self, cmd: int, arg: int, read: Reader, bits: int) -> int:
        """``memory_op(cmd, arg)`` of a ``bits``-bit guest; ``read(linear, n)``
        is guest memory, None where the guest's tables do not reach RAM."""
        op, start = cmd & 0x3F, cmd >> 6
        if op != DECREASE and op != POPULATE:
            return -ENOSYS
        layout, pfn_bytes = RESERVATION[bits]
        raw = read(arg, layout.size)
        if raw is None:
            return -EFAULT
        extents, nr, order, _flags, domid = layout.unpack(raw)
        if start > nr or domid != DOMID_SELF:
            return start
        if order > (DECREASE_MAX_ORDER if op == DECREASE else POPULATE_MAX_ORDER):
            return start
        pages, shift = 1 << order, platform.PAGE_SHIFT
        for i in range(start, nr):
            got = read(extents + i * pfn_bytes, pfn_bytes)
            if got is None:
                return i
            pfn = int.from_bytes(got, "little")
            if op == DECREASE:
                done = 0
                while done < pages and self._give_back(pfn + done):
                    done += 1
                if done:
                    self.emit(trace.P2mUpdate(op="remove", gpa=pfn << shift, pages=done))
                if done < pages:
                    return i
            else:
                if not self._fill(pfn, pages):
                    return i
                self.emit(trace.P2mUpdate(op="populate", gpa=pfn << shift, pages=pages))
        return nr
