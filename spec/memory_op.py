"""Xen's ``memory_op`` for an HVM guest: giving memory back and taking it again.

Room: the hypercall an HVM guest's balloon driver makes and what Xen does
with the domain's p2m for it: the argument structure, the rules of
``XENMEM_decrease_reservation`` and ``XENMEM_populate_physmap``, and
:class:`P2m`, which pages of the guest's RAM are present and which frames
they show. Imports :mod:`spec.platform` and :mod:`spec.trace` (each change of the p2m
is traced as :class:`spec.trace.P2mUpdate`). How the
guest reaches Xen (the VMCALL exit) and what happens after (the mapcache
invalidation) are :mod:`spec.vmm`'s.

A guest that knows nothing of Xen never calls it. A guest with a balloon
driver does: it executes VMCALL (the stub Xen's hypercall page holds) with
the hypercall number in (E/R)AX and the arguments in EBX, ECX, EDX, ESI,
EDI (a 32-bit or 16-bit guest) or RDI, RSI, RDX, R10, R8 (a 64-bit one);
Xen returns the result in (E/R)AX (``xen/arch/x86/hvm/hvm.c``,
``hvm_do_hypercall``). Only code at privilege level 0 may call; a call from
ring 3 or virtual-8086 mode gets ``-EPERM``.

``memory_op`` (hypercall 12) takes a command and a pointer to a
``struct xen_memory_reservation`` (``public/memory.h``)::

    XEN_GUEST_HANDLE(xen_pfn_t) extent_start;   the list of extents
    xen_ulong_t  nr_extents;
    unsigned int extent_order;                  each extent is 2^order pages
    unsigned int mem_flags;                     (address bits: not modelled)
    domid_t      domid;                         DOMID_SELF

laid out for the guest's word size (:data:`LAYOUT`: 20 bytes with 32-bit
handles and frame numbers for a 32-bit guest, Xen's compat layer; 32 bytes
with 64-bit ones for a 64-bit guest). The command's low 6 bits are the
operation, the rest the extent to start from (a continuation). Pointers
are guest linear addresses.

``XENMEM_decrease_reservation`` (1), for each extent from the start one:
read its first frame number from the list, then remove each of its 2^order
pages from the p2m (``guest_remove_page``); a page that is not present RAM
stops the call there. ``XENMEM_populate_physmap`` (6), for each extent:
read its first frame number, allocate 2^order new frames and put them in
the p2m at that place; the allocation fails, and the call stops, when the
domain would exceed its allowance (``max_pages``: the memory xend gave it).
Both return the number of extents completed. An extent order above 20
(decrease) or 9 (populate: ``multipage_allocation_permitted`` for a domU),
a ``domid`` other than ``DOMID_SELF`` (a domU has no rights over any
domain) or a list the guest cannot read ends the call with the extents done
so far; an unreadable structure gives ``-EFAULT``.

New frames come zeroed: current Xen scrubs free memory before giving it to
a domain (Xen 3.x scrubbed only the memory of dying domains). A page that is
not present is a hole in the p2m: a guest access there is an MMIO access
that reaches qemu-dm, as for any address no RAM backs.

``XENMEM_add_to_physmap`` (7) takes a ``struct xen_add_to_physmap``
(``domid`` and two bytes that Xen 3.0.4 does not read, ``space``, ``idx``,
``gpfn``: ``<HHIII``, 16 bytes, for a 32-bit guest, ``<HHIQQ``, 24 bytes,
for a 64-bit one) and maps a frame of Xen's at guest frame ``gpfn``
(``arch_memory_op`` in ``xen/arch/x86/mm.c``). For an HVM domain (shadow
mode translate) the one frame the model has is the domain's *shared info*
page (``XENMAPSPACE_shared_info`` (0), index 0): the page of RAM at
``gpfn``, if any, is given back (``guest_remove_page``, traced as a
"remove"), the shared info leaves the frame where an earlier call put it
(a hole there now) and appears at ``gpfn`` (traced as "shared_info").
Another index gives ``-EINVAL``, and so (model limits) do another space
(Xen 3.0.4 also mapped its grant table frames, ``XENMAPSPACE_grant_table``)
and a ``gpfn`` where memory other than RAM is mapped (video memory, a
ROM); another domain than
``DOMID_SELF``, ``-EPERM`` (a domU is not privileged). Xen cleared the
page when it built the domain and masked event delivery to each vcpu
(``evtchn_upcall_mask``, byte 1 of ``vcpu_info[0]``, is 1): the model's
page is so (:data:`SHARED_INFO`), and nothing of Xen writes it later
(no wall clock, no event channel is bound to an HVM guest's upcall).
Debian's Linux maps it while it boots (``xen_hvm_init_shared_info``), and
stops with ``BUG()`` if it cannot.

``xen_version`` (hypercall 17, ``do_xen_version`` in
``xen/common/kernel.c``): ``XENVER_version`` (0) returns 3.0 (``3 << 16``);
``XENVER_extraversion`` (1) writes ``".4"`` into the guest's 16-byte
buffer; ``XENVER_get_features`` (6) reads ``struct xen_feature_info``
(``submap_idx``, ``submap``: two 32-bit words) and, for sub-map 0, writes
back the features of an HVM domain, writable page tables and
auto-translated physmap (bits 0 and 2); another sub-map gives ``-EINVAL``;
``XENVER_pagesize`` (10) returns 4096 (``-EINVAL`` with a non-null
argument). A buffer the guest cannot read or write gives ``-EFAULT``.

Model limits: other memory_op commands, the other ``xen_version``
commands and the other hypercalls (Xen 3.0.4 gave an HVM guest
``multicall`` for 32-bit guests, ``event_channel_op`` and ``hvm_op``)
return ``-ENOSYS``; populate places frames only where the guest's RAM was
(given back before), an extent elsewhere fails as an allocation would;
hypercall preemption (continuations Xen creates itself) does not happen.

Generations. Each page's frame has a generation number that changes when
the page is given back: a mapping of the page made before shows frames
that are no longer the guest's. :mod:`spec.mapcache` compares a mapping's
generation with the p2m's to prove it never uses such a mapping.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable

from spec import platform, trace

HYPERVISOR_memory_op = 12
XENMEM_increase_reservation = 0
XENMEM_decrease_reservation = 1
XENMEM_populate_physmap = 6
MEMOP_CMD_MASK = 0x3F
MEMOP_EXTENT_SHIFT = 6
DOMID_SELF = 0x7FF0
#: the largest extent order decrease_reservation takes, and populate_physmap for a domU
MAX_ORDER = 20
DOMU_MAX_ORDER = 9

HYPERVISOR_xen_version = 17
XENMEM_add_to_physmap = 7
XENMAPSPACE_shared_info = 0
XENVER_version, XENVER_extraversion, XENVER_get_features, XENVER_pagesize = 0, 1, 6, 10
#: XENFEAT_writable_page_tables | XENFEAT_auto_translated_physmap
HVM_FEATURES = 1 << 0 | 1 << 2
#: Xen 3.0.4's version (major << 16 | minor) and extra version
XEN_VERSION, XEN_EXTRAVERSION = 3 << 16 | 0, b".4"
#: the shared info page as Xen built it: vcpu 0's events masked
SHARED_INFO = bytes([0, 1]) + bytes(platform.PAGE_SIZE - 2)
#: ``struct xen_add_to_physmap`` by the guest's word size
ADD_TO_PHYSMAP = {32: "<HHIII", 64: "<HHIQQ"}

EPERM, EFAULT, EINVAL, ENOSYS = 1, 14, 22, 38

HYPERCALL_NAMES = {HYPERVISOR_memory_op: "memory_op", HYPERVISOR_xen_version: "xen_version"}
MEMOP_NAMES = {XENMEM_increase_reservation: "increase_reservation",
               XENMEM_decrease_reservation: "decrease_reservation",
               XENMEM_populate_physmap: "populate_physmap"}

#: guest word size -> (struct layout, its size, bytes of one frame number)
LAYOUT = {32: ("<IIIIH", 20, 4), 64: ("<QQIIH", 32, 8)}


@dataclass(frozen=True)
class Reservation:
    """``struct xen_memory_reservation`` as the guest wrote it."""

    extent_start: int
    nr_extents: int
    extent_order: int
    mem_flags: int
    domid: int


def parse_reservation(raw: bytes, bits: int) -> Reservation:
    """The structure from its bytes in the guest's layout (``bits`` 32 or 64)."""
    fmt = LAYOUT[bits][0]
    return Reservation(*struct.unpack(fmt, raw[:struct.calcsize(fmt)]))


class P2m:
    """The pages of one domain's RAM and the frames behind them.

    ``ranges`` is the RAM xend built (:func:`spec.platform.ram_ranges`);
    ``unmap`` and ``remap`` change the hardware's nested page tables for a
    page (the EPT entry goes, or comes back with a fresh zeroed frame)."""

    def __init__(self, ranges: list[tuple[int, int]], unmap: Callable[[int], None],
                 remap: Callable[[int], None],
                 emit: Callable[[trace.Event], None] = lambda event: None,
                 share: Callable[[int | None, int], bool] = lambda old, new: True) -> None:
        self.ranges = ranges
        self.unmap, self.remap, self.emit = unmap, remap, emit
        #: moves the shared info frame from a guest frame (None: from
        #: nowhere) to another, in the hardware's nested page tables; False
        #: (nothing moves) where memory other than RAM is
        self.share = share
        #: the guest frame that shows the shared info page, if any
        self.shared_info: int | None = None
        self.absent: set[int] = set()
        self.generation: dict[int, int] = {}
        self.max_pages = sum(end - start for start, end in ranges) >> platform.PAGE_SHIFT
        self.tot_pages = self.max_pages

    def in_ram(self, pfn: int) -> bool:
        """Whether the page lies in the RAM xend built for the domain."""
        gpa = pfn << platform.PAGE_SHIFT
        return any(start <= gpa < end for start, end in self.ranges)

    def present(self, pfn: int) -> bool:
        return self.in_ram(pfn) and pfn not in self.absent

    def remove_page(self, pfn: int) -> bool:
        """``guest_remove_page``: False if the page is not present RAM."""
        if not self.present(pfn):
            return False
        self.unmap(pfn)
        self.absent.add(pfn)
        self.generation[pfn] = self.generation.get(pfn, 0) + 1
        self.tot_pages -= 1
        return True

    def populate(self, pfn: int, pages: int) -> bool:
        """Allocate ``pages`` frames and place them at ``pfn`` onwards;
        False (nothing changes) if the domain would exceed ``max_pages`` or a
        page is not a given-back page of its RAM."""
        wanted = range(pfn, pfn + pages)
        if self.tot_pages + pages > self.max_pages:
            return False
        if not all(self.in_ram(p) and p in self.absent for p in wanted):
            return False
        for p in wanted:
            self.remap(p)
            self.absent.discard(p)
        self.tot_pages += pages
        return True

    def frames(self, gpa: int, length: int) -> int:
        """The generation of the frames behind ``[gpa, gpa + length)``: it
        changes whenever one of its pages is given back."""
        if not self.generation:
            return 0
        first = gpa >> platform.PAGE_SHIFT
        last = (gpa + max(length, 1) - 1) >> platform.PAGE_SHIFT
        return sum(self.generation.get(p, 0) for p in range(first, last + 1))

    def backs(self, gpa: int, length: int) -> bool:
        """Whether every page of the range is present (given back pages are holes)."""
        if not self.absent:
            return True
        first = gpa >> platform.PAGE_SHIFT
        last = (gpa + max(length, 1) - 1) >> platform.PAGE_SHIFT
        return not any(p in self.absent for p in range(first, last + 1))


def decrease_reservation(p2m: P2m, res: Reservation, start: int,
                         extent: Callable[[int], int | None]) -> int:
    """Give back the extents from ``start``; ``extent(i)`` reads entry *i*
    of the list (None if the guest cannot read it). Returns the number of
    extents done."""
    if res.extent_order > MAX_ORDER:
        return start
    for i in range(start, res.nr_extents):
        first = extent(i)
        if first is None:
            return i
        removed = 0
        while removed < 1 << res.extent_order and p2m.remove_page(first + removed):
            removed += 1
        if removed:
            p2m.emit(trace.P2mUpdate(op="remove", gpa=first << platform.PAGE_SHIFT,
                                     pages=removed))
        if removed < 1 << res.extent_order:
            return i
    return res.nr_extents


def populate_physmap(p2m: P2m, res: Reservation, start: int,
                     extent: Callable[[int], int | None]) -> int:
    """Populate the extents from ``start`` with new zeroed frames; returns
    the number of extents done."""
    if res.extent_order > DOMU_MAX_ORDER:
        return start
    for i in range(start, res.nr_extents):
        first = extent(i)
        if first is None or not p2m.populate(first, 1 << res.extent_order):
            return i
        p2m.emit(trace.P2mUpdate(op="populate", gpa=first << platform.PAGE_SHIFT,
                                 pages=1 << res.extent_order))
    return res.nr_extents


def add_to_physmap(p2m: P2m, raw: bytes, bits: int) -> int:
    """``XENMEM_add_to_physmap`` with the guest's structure ``raw``."""
    domid, _size, space, idx, gpfn = struct.unpack(ADD_TO_PHYSMAP[bits], raw)
    if domid != DOMID_SELF:
        return -EPERM
    if space != XENMAPSPACE_shared_info or idx != 0:
        return -EINVAL
    if p2m.remove_page(gpfn):
        p2m.emit(trace.P2mUpdate(op="remove", gpa=gpfn << platform.PAGE_SHIFT, pages=1))
    if not p2m.share(p2m.shared_info, gpfn):
        return -EINVAL
    p2m.shared_info = gpfn
    p2m.emit(trace.P2mUpdate(op="shared_info", gpa=gpfn << platform.PAGE_SHIFT, pages=1))
    return 0


def xen_version(cmd: int, arg: int, read: Callable[[int, int], bytes | None],
                write: Callable[[int, bytes], bool]) -> int:
    """Hypercall ``xen_version(cmd, arg)``; ``write`` writes guest linear
    memory (False if it cannot)."""
    if cmd == XENVER_version:
        return XEN_VERSION
    if cmd == XENVER_extraversion:
        return 0 if write(arg, XEN_EXTRAVERSION.ljust(16, b"\0")) else -EFAULT
    if cmd == XENVER_get_features:
        raw = read(arg, 8)
        if raw is None:
            return -EFAULT
        if int.from_bytes(raw[:4], "little") != 0:
            return -EINVAL
        return 0 if write(arg, raw[:4] + HVM_FEATURES.to_bytes(4, "little")) else -EFAULT
    if cmd == XENVER_pagesize:
        return -EINVAL if arg else platform.PAGE_SIZE
    return -ENOSYS


def memory_op(p2m: P2m, cmd: int, read: Callable[[int, int], bytes | None], arg: int,
              bits: int) -> int:
    """Hypercall ``memory_op(cmd, arg)`` of a ``bits``-bit guest; ``read``
    reads guest linear memory (None if it cannot). Returns what Xen puts in
    (E/R)AX: the extents done, 0, or a negative errno."""
    op, start = cmd & MEMOP_CMD_MASK, cmd >> MEMOP_EXTENT_SHIFT
    if op == XENMEM_add_to_physmap:
        raw = read(arg, struct.calcsize(ADD_TO_PHYSMAP[bits]))
        return -EFAULT if raw is None else add_to_physmap(p2m, raw, bits)
    if op not in (XENMEM_decrease_reservation, XENMEM_populate_physmap):
        return -ENOSYS
    _fmt, size, pfn_bytes = LAYOUT[bits]
    raw = read(arg, size)
    if raw is None:
        return -EFAULT
    res = parse_reservation(raw, bits)
    if start > res.nr_extents or res.domid != DOMID_SELF:
        return start

    def extent(i: int) -> int | None:
        got = read(res.extent_start + i * pfn_bytes, pfn_bytes)
        return None if got is None else int.from_bytes(got, "little")
    if op == XENMEM_decrease_reservation:
        return decrease_reservation(p2m, res, start, extent)
    return populate_physmap(p2m, res, start, extent)
