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

EPERM, EFAULT, EINVAL, ENOSYS = 1, 14, 22, 38
MEMORY_OP, XEN_VERSION = 12, 17
NAMES = {MEMORY_OP: "memory_op", XEN_VERSION: "xen_version"}
ADD_TO_PHYSMAP = 7
#: struct xen_add_to_physmap: domid, (unread), space, idx, gpfn
PHYSMAP = {32: struct.Struct("<HHIII"), 64: struct.Struct("<HHIQQ")}
#: Xen's shared info page when the domain is built: zero, but vcpu 0's
#: evtchn_upcall_mask (byte 1) set
SHARED_INFO_PAGE = b"\x00\x01".ljust(4096, b"\x00")
DECREASE, POPULATE = 1, 6
DOMID_SELF = 0x7FF0
DECREASE_MAX_ORDER, POPULATE_MAX_ORDER = 20, 9
#: the guest's word size -> (the reservation struct, bytes of one frame number)
RESERVATION = {32: (struct.Struct("<IIIIH"), 4), 64: (struct.Struct("<QQIIH"), 8)}

Reader = Callable[[int, int], "bytes | None"]
Writer = Callable[[int, bytes], bool]


def xen_version(cmd: int, arg: int, read: Reader, write: Writer) -> int:
    """``xen_version(cmd, arg)`` as Xen 3.0.4 answers an HVM guest: the
    version 3.0, the extra version ".4", the feature sub-map 0 (writable
    page tables and auto-translated physmap, bits 0 and 2), the page size;
    ``-ENOSYS`` for the rest (not modelled)."""
    if cmd == 0:
        return 0x30000
    if cmd == 1:
        return 0 if write(arg, b".4" + bytes(14)) else -EFAULT
    if cmd == 6:
        info = read(arg, 8)
        if info is None:
            return -EFAULT
        if info[:4] != bytes(4):
            return -EINVAL
        return 0 if write(arg + 4, (5).to_bytes(4, "little")) else -EFAULT
    if cmd == 10:
        return 4096 if arg == 0 else -EINVAL
    return -ENOSYS


class P2m:
    """One domain's RAM pages: the given-back ones (holes) and a generation
    per page that moves on each time the page is given back."""

    def __init__(self, memory_bytes: int, unmap: Callable[[int], None],
                 remap: Callable[[int], None], emit: Callable[[trace.Event], None],
                 share: Callable[[int | None, int], bool] = lambda old, new: True) -> None:
        shift = platform.PAGE_SHIFT
        #: RAM as pfn ranges [first, end)
        self.ram = [(lo >> shift, hi >> shift) for lo, hi in platform.ram_ranges(memory_bytes)]
        self.unmap, self.remap, self.emit = unmap, remap, emit
        self.holes: set[int] = set()
        self.gen: dict[int, int] = {}
        self.max_pages = sum(hi - lo for lo, hi in self.ram)
        self.tot_pages = self.max_pages
        #: puts the shared info frame at a guest frame, taking it from the
        #: one it was at (None: none); False where it cannot (not RAM)
        self.share = share
        self.shared_at: int | None = None

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
        if op == ADD_TO_PHYSMAP:
            return self._add_to_physmap(arg, read, bits)
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

    def _add_to_physmap(self, arg: int, read: Reader, bits: int) -> int:
        """``XENMEM_add_to_physmap``: the shared info page (space 0, index 0)
        at the guest's frame, the RAM page there given back first."""
        layout = PHYSMAP[bits]
        raw = read(arg, layout.size)
        if raw is None:
            return -EFAULT
        domid, _, space, idx, gpfn = layout.unpack(raw)
        if domid != DOMID_SELF:
            return -EPERM
        if space or idx:
            return -EINVAL
        shift = platform.PAGE_SHIFT
        if self._give_back(gpfn):
            self.emit(trace.P2mUpdate(op="remove", gpa=gpfn << shift, pages=1))
        if not self.share(self.shared_at, gpfn):
            return -EINVAL
        self.shared_at = gpfn
        self.emit(trace.P2mUpdate(op="shared_info", gpa=gpfn << shift, pages=1))
        return 0
