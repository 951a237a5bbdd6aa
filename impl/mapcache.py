"""impl's mapcache: qemu-dm's windows onto guest memory, kept in LRU order.

Room: the bucket mappings of impl's qemu-dm (QEMU's ``xen-mapcache.c`` as
DESIGN.md describes it), with the same observable behaviour as the
reference: the same misses, the same victims, the same statistics. Imports
:mod:`spec.platform`, :mod:`spec.trace` and :mod:`spec.xend` (interface only).

Instead of scanning a table of windows, usable windows sit in an
``OrderedDict`` keyed by bucket, least recently used first: a hit moves
its window to the end, a miss with the budget full evicts the first
unlocked one. Windows invalidated while locked leave the dict (no
translation may use them) but keep their place in the budget until their
last lock goes. A window remembers the generation of the frames it shows
(``frames(gpa, length)``, Xen's p2m), and is never used once that moved on.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

from spec import platform, trace
from spec.xend import DeviceModelError


class Window:
    __slots__ = ("bucket", "gen", "locks", "stale")

    def __init__(self, bucket: int, gen: int) -> None:
        self.bucket, self.gen, self.locks, self.stale = bucket, gen, 0, False


class Mapcache:
    def __init__(self, memory_bytes: int, bits: int = 32, budget: int | None = None,
                 legacy: bool = False, emit: Callable[[trace.Event], None] = lambda e: None,
                 frames: Callable[[int, int], int] = lambda gpa, length: 0) -> None:
        self.memory_bytes, self.bits, self.legacy, self.emit = memory_bytes, bits, legacy, emit
        self.frames = frames
        self.shift = platform.MAPCACHE_BUCKET_SHIFT[bits]
        self.budget = platform.MAPCACHE_DEFAULT_BUDGET[bits] if budget is None else budget
        room = platform.DM_ADDRESS_SPACE[bits] - platform.DM_FOOTPRINT[bits]
        if self.budget > room:
            raise DeviceModelError(
                f"a mapcache budget of {self.budget >> 20} MiB does not fit a {bits}-bit "
                f"qemu-dm: Linux gives the process {platform.DM_ADDRESS_SPACE[bits] >> 20} MiB "
                f"of address space and qemu-dm needs {platform.DM_FOOTPRINT[bits] >> 20} MiB "
                f"of it itself, so at most {room >> 20} MiB can map guest memory")
        self.windows = self.budget >> self.shift
        if legacy and memory_bytes > self.budget:
            raise DeviceModelError(
                f"map-everything mode: the guest's {memory_bytes >> 20} MiB do not fit "
                f"a {bits}-bit qemu-dm's {self.budget >> 20} MiB of address space for "
                f"guest memory; use the mapcache")
        self.live: OrderedDict[int, Window] = OrderedDict()
        self.stale: list[Window] = []
        self.hits = self.misses = self.evictions = self.invalidations = self.peak = 0

    def mapped(self) -> int:
        if self.legacy:
            return self.memory_bytes
        return (len(self.live) + len(self.stale)) << self.shift

    def window(self, bucket: int) -> Window | None:
        """The usable window of ``bucket``, made if needed, and locked; None in
        map-everything mode (nothing to lock)."""
        if self.legacy:
            self.hits += 1
            return None
        gen = self.frames(bucket << self.shift, 1 << self.shift)
        w = self.live.get(bucket)
        if w is not None:
            self.live.move_to_end(bucket)
            self.hits += 1
        else:
            evicted = -1
            if len(self.live) + len(self.stale) >= self.windows:
                victim = next((b for b, v in self.live.items() if not v.locks), None)
                if victim is None:
                    raise DeviceModelError(
                        f"mapcache: all {self.windows} windows of {1 << self.shift >> 10} KiB "
                        f"({self.budget >> 20} MiB of address space) are locked; bucket "
                        f"{bucket:#x} cannot be mapped")
                del self.live[victim]
                evicted = victim << self.shift
                self.evictions += 1
            w = self.live[bucket] = Window(bucket, gen)
            self.misses += 1
            self.peak = max(self.peak, self.mapped())
            self.emit(trace.MapcacheMiss(bucket=bucket << self.shift, evicted=evicted,
                                         mapped=self.mapped()))
        assert w.gen == gen, f"stale window for bucket {bucket:#x}"
        w.locks += 1
        return w

    def release(self, w: Window | None) -> None:
        if w is None:
            return
        w.locks -= 1
        if w.stale and not w.locks:
            self.stale.remove(w)

    def buckets(self, gpa: int, length: int) -> range:
        return range(gpa >> self.shift, ((gpa + max(length, 1) - 1) >> self.shift) + 1)

    def invalidate_all(self) -> None:
        """Every bucket up to the top of the guest's RAM (IOREQ_TYPE_INVALIDATE)."""
        top = platform.ram_ranges(self.memory_bytes)[-1][1]
        self.invalidate(0, -(-top >> self.shift))

    def invalidate(self, first: int, count: int) -> None:
        """Buckets ``first`` .. ``first + count - 1`` may show other frames now."""
        stale = 0
        if not self.legacy:
            for b in [b for b in self.live if first <= b < first + count]:
                w = self.live.pop(b)
                if w.locks:
                    w.stale = True
                    self.stale.append(w)
                    stale += 1
        self.invalidations += 1
        self.emit(trace.MapcacheInvalidate(first=first << self.shift, count=count,
                                           stale=stale, mapped=self.mapped()))

    def summary(self) -> trace.MapcacheStats:
        return trace.MapcacheStats(
            mode="map-everything" if self.legacy else "mapcache", bucket_size=1 << self.shift,
            budget=self.budget, hits=self.hits, misses=self.misses, evictions=self.evictions,
            invalidations=self.invalidations, mapped=self.mapped(),
            peak=self.memory_bytes if self.legacy else self.peak)
