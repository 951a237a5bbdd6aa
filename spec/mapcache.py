"""The mapcache: how qemu-dm reaches guest memory within its own address space.

Room: the state and rules of QEMU's ``hw/xen/xen-mapcache.c`` as qemu-dm
uses them, written over :mod:`spec.bv` so that :mod:`proofs.mapcache` checks
these very functions; and :class:`Mapcache`, the concrete cache a qemu-dm
process keeps. Imports :mod:`spec.bv` and :mod:`spec.trace`.

Why it exists. qemu-dm is an ordinary dom0 process. To touch guest memory
(the data of a ``data_is_ptr`` ioreq, a DMA buffer, video memory) it must
map the guest's frames into its own virtual address space
(``xc_map_foreign_bulk``). A 32-bit qemu-dm has about 2.5 GiB of address
space for that, less what qemu-dm itself uses, so it cannot map a guest of
4 GiB at once. It maps guest memory on demand, a *bucket* at a time:

* a bucket is an aligned block of guest-physical memory: 64 KiB
  (``MCACHE_BUCKET_SHIFT`` 16) for a 32-bit qemu-dm, 1 MiB (20) for a
  64-bit one;
* the cache holds mappings of buckets, within an address-space *budget*;
  a mapping is found again by the bucket's index (a *hit*) or made (a
  *miss*);
* a mapping can be *locked* while an access that uses it is in flight
  (``xen_map_cache(..., lock=1)``; the lock is a count, dropped by
  ``xen_invalidate_map_cache_entry``);
* a miss when the budget is full *evicts* the unlocked mapping used least
  recently; if every mapping is locked, the access fails (the model says so,
  naming the budget);
* an *invalidation* (Xen's ``IOREQ_TYPE_INVALIDATE``, sent after the guest
  gave memory back with ``XENMEM_decrease_reservation``) drops the mappings
  of the buckets given back: their frames now belong to someone else. A
  locked mapping cannot be dropped under the access that uses it: it is
  marked *stale*, no translation uses it again, and it goes when its last
  lock does.

The model names the frames a mapping shows by a *generation*: each guest
bucket's memory has a generation number that Xen's p2m changes when the
bucket's frames are given back and repopulated. A mapping records the
generation it was made at; a translation is right when that is the bucket's
current generation.

The *legacy* mode maps all guest memory at start-up (``map-everything``);
it refuses a guest whose memory does not fit the budget.

The budget itself is bounded by the process: a 32-bit qemu-dm under Linux
has 3 GiB of address space, and about 768 MiB of it is qemu-dm's own
(:data:`spec.platform.DM_FOOTPRINT`), so no budget above 2304 MiB is
accepted (:func:`budget_fits`): a 32-bit qemu-dm cannot map a 6 GiB guest
whatever it is told.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
# (Optional[X], not X | None: make mutate would rewrite the | of an annotation, which
# is never evaluated here, into equivalent mutants)
from typing import Callable, Iterable, NamedTuple, Optional

from spec import bv, platform, trace
from spec.xend import DeviceModelError

# bucket sizes and default budgets by qemu-dm's word size are platform
# constants (spec.platform.MAPCACHE_BUCKET_SHIFT, MAPCACHE_DEFAULT_BUDGET)

#: widths of the words of an entry, as the proofs see them
BUCKET_BITS = 32
GEN_BITS = 16
LOCK_BITS = 8
STAMP_BITS = 32


class Entry(NamedTuple):
    """One mapping of the cache: a window of qemu-dm's address space."""

    valid: bv.Bit       # the window is mapped
    bucket: bv.Word     # which guest bucket it shows
    gen: bv.Word        # the generation of that bucket's frames when mapped
    locks: bv.Word      # accesses in flight that use it
    stale: bv.Bit       # invalidated while locked: no new translation uses it
    stamp: bv.Word      # the clock at its last use (least recently used goes first)


EMPTY = Entry(False, 0, 0, 0, False, 0)


class MapResult(NamedTuple):
    """What :func:`map_bucket` did."""

    table: tuple[Entry, ...]
    slot: bv.Word       # the entry that now shows the bucket (if ``ok``)
    ok: bv.Bit          # False: every mapping is locked and the budget is full
    hit: bv.Bit
    evicted: bv.Bit     # a mapping was dropped to make room
    victim: bv.Word     # the bucket it showed


def usable(e: Entry, bucket: bv.Word) -> bv.Bit:
    """An entry a translation of ``bucket`` may use: mapped, not stale."""
    return bv.and_(e.valid, bv.not_(e.stale), bv.eq(e.bucket, bucket))


def mapped_count(table: tuple[Entry, ...]) -> bv.Word:
    """How many windows are mapped (stale ones too: they still take space)."""
    count: bv.Word = bv.const(0, LOCK_BITS, table[0].locks)
    for e in table:
        count = bv.add(count, bv.from_bit(e.valid, LOCK_BITS), LOCK_BITS)
    return count


def max_budget(footprint: bv.Word, space: bv.Word) -> bv.Word:
    """The largest budget a process of address ``space`` bytes, ``footprint``
    of them its own, can give guest mappings (64-bit words; the footprint is
    less than the space)."""
    return bv.sub(space, footprint, 64)


def budget_fits(budget: bv.Word, footprint: bv.Word, space: bv.Word) -> bv.Bit:
    """Whether a budget of ``budget`` bytes of guest mappings fits the
    process: qemu-dm's own ``footprint`` plus the budget within its address
    ``space`` (at most :func:`max_budget`)."""
    return bv.not_(bv.ult(max_budget(footprint, space), budget))


def legacy_fits(memory: bv.Word, budget: bv.Word) -> bv.Bit:
    """Whether map-everything mode can map a guest of ``memory`` bytes
    within a budget of ``budget`` bytes (64-bit words)."""
    return bv.not_(bv.ult(budget, memory))


# --- buckets and bytes -----------------------------------------------------------------


def bucket_shift(bits32: bv.Bit) -> bv.Word:
    """log2 of the bucket size of a 32-bit (``bits32``) or 64-bit qemu-dm:
    64 KiB and 1 MiB (Xen 3.0.4's ``tools/ioemu/patches/xen-mapcache``:
    ``MCACHE_BUCKET_SHIFT`` 16 on i386, 20 on x86_64; QEMU's
    ``hw/xen/xen-mapcache.c`` keeps them)."""
    return bv.ite(bits32, bv.const(platform.MAPCACHE_BUCKET_SHIFT[32], 64, bits32),
                  bv.const(platform.MAPCACHE_BUCKET_SHIFT[64], 64, bits32))


def bucket_address(n: bv.Word, shift: bv.Word) -> bv.Word:
    """Where bucket ``n`` starts, which is also the bytes of ``n`` buckets
    (64-bit words)."""
    return bv.shl(n, shift, 64)


def windows_of(budget: bv.Word, shift: bv.Word) -> bv.Word:
    """The buckets a budget of ``budget`` bytes holds whole: its windows."""
    return bv.lshr(budget, shift, 64)


def bucket_span(gpa: bv.Word, length: bv.Word, shift: bv.Word) -> tuple[bv.Word, bv.Word]:
    """(first, count): the buckets that the bytes ``gpa`` .. ``gpa + length
    - 1`` touch are buckets ``first`` .. ``first + count - 1``
    (:func:`nth_bucket`); an access of no bytes touches ``gpa``'s bucket.
    Addresses are 64-bit: an access that runs past 2^64 goes on at address
    0, so bucket numbers count modulo the 2^(64 - ``shift``) buckets of the
    space (``mapcache.span``)."""
    last = bv.add(gpa, bv.sub(bv.ite(bv.is_zero(length, 64), 1, length), 1, 64), 64)
    first = bv.lshr(gpa, shift, 64)
    buckets = bv.lshr(bv.mask(64), shift, 64)         # bucket numbers are below this + 1
    between = bv.band(bv.sub(bv.lshr(last, shift, 64), first, 64), buckets, 64)
    return first, bv.add(between, 1, 64)


def nth_bucket(first: bv.Word, i: bv.Word, shift: bv.Word) -> bv.Word:
    """Bucket ``i`` of a span that starts at bucket ``first``."""
    return bv.band(bv.add(first, i, 64), bv.lshr(bv.mask(64), shift, 64), 64)


def mib(n: bv.Word) -> bv.Word:
    """``n`` bytes in whole MiB (rounded down), as messages name them."""
    return bv.lshr(n, 20, 64)


def kib(n: bv.Word) -> bv.Word:
    """``n`` bytes in whole KiB (rounded down)."""
    return bv.lshr(n, 10, 64)


def room(table: tuple[Entry, ...], budget_buckets: bv.Word) -> bv.Bit:
    """Whether one more window fits the budget (``budget_buckets`` windows)."""
    return bv.ult(mapped_count(table), budget_buckets)


def lookup(table: tuple[Entry, ...], bucket: bv.Word) -> tuple[bv.Bit, bv.Word]:
    """(found, slot) of the usable entry showing ``bucket``."""
    found: bv.Bit = False
    slot: bv.Word = bv.const(0, LOCK_BITS, bucket)
    for i, e in enumerate(table):
        take = bv.and_(bv.not_(found), usable(e, bucket))
        slot = bv.ite(take, bv.const(i, LOCK_BITS, bucket), slot)
        found = bv.or_(found, take)
    return found, slot


def free_slot(table: tuple[Entry, ...]) -> tuple[bv.Bit, bv.Word]:
    """(exists, slot) of the first entry that maps nothing."""
    found: bv.Bit = False
    slot: bv.Word = bv.const(0, LOCK_BITS, table[0].locks)
    for i, e in enumerate(table):
        take = bv.and_(bv.not_(found), bv.not_(e.valid))
        slot = bv.ite(take, bv.const(i, LOCK_BITS, table[0].locks), slot)
        found = bv.or_(found, take)
    return found, slot


def evictable(e: Entry) -> bv.Bit:
    """A mapping that may be dropped: mapped and not locked."""
    return bv.and_(e.valid, bv.is_zero(e.locks, LOCK_BITS))


def lru_victim(table: tuple[Entry, ...]) -> tuple[bv.Bit, bv.Word]:
    """(exists, slot) of the unlocked mapping used least recently (the
    first of equals)."""
    found: bv.Bit = False
    slot: bv.Word = bv.const(0, LOCK_BITS, table[0].locks)
    oldest: bv.Word = bv.const(0, STAMP_BITS, table[0].stamp)
    for i, e in enumerate(table):
        better = bv.and_(evictable(e), bv.or_(bv.not_(found), bv.ult(e.stamp, oldest)))
        slot = bv.ite(better, bv.const(i, LOCK_BITS, table[0].locks), slot)
        oldest = bv.ite(better, e.stamp, oldest)
        found = bv.or_(found, better)
    return found, slot


def _put(table: tuple[Entry, ...], slot: bv.Word, new: Entry, when: bv.Bit = True
         ) -> tuple[Entry, ...]:
    """``table`` with entry ``slot`` replaced by ``new`` if ``when``."""
    out = []
    for i, e in enumerate(table):
        here = bv.and_(when, bv.eq(slot, bv.const(i, LOCK_BITS, slot)))
        out.append(Entry(*(bv.ite(here, n, o) for n, o in zip(new, e))))
    return tuple(out)


def _get(table: tuple[Entry, ...], slot: bv.Word) -> Entry:
    """Entry ``slot`` of ``table``."""
    got = table[0]
    for i, e in enumerate(table[1:], start=1):
        here = bv.eq(slot, bv.const(i, LOCK_BITS, slot))
        got = Entry(*(bv.ite(here, n, o) for n, o in zip(e, got)))
    return got


def map_bucket(table: tuple[Entry, ...], bucket: bv.Word, gen: bv.Word,
               budget_buckets: bv.Word, now: bv.Word) -> MapResult:
    """Find or make the mapping of ``bucket`` (whose frames are at
    generation ``gen``) at clock ``now``:

    1. a usable mapping of the bucket is a hit: its stamp becomes ``now``;
    2. otherwise, if one more window fits the budget, a free entry maps it;
    3. otherwise the unlocked mapping used least recently is evicted
       (unmapped) and its entry maps the bucket;
    4. otherwise (every window locked) nothing changes and the map fails."""
    hit, hit_slot = lookup(table, bucket)
    has_room = room(table, budget_buckets)
    has_free, free = free_slot(table)
    can_evict, victim_slot = lru_victim(table)
    use_free = bv.and_(bv.not_(hit), has_room, has_free)
    evict = bv.and_(bv.not_(hit), bv.not_(use_free), can_evict)
    ok = bv.or_(hit, use_free, evict)
    slot = bv.ite(hit, hit_slot, bv.ite(use_free, free, victim_slot))
    old = _get(table, slot)
    fresh = Entry(True, bucket, gen, bv.const(0, LOCK_BITS, old.locks), False, now)
    touched = old._replace(stamp=now)
    new = Entry(*(bv.ite(hit, t, f) for t, f in zip(touched, fresh)))
    return MapResult(_put(table, slot, new, ok), slot, ok, hit, evict, old.bucket)


def lock(table: tuple[Entry, ...], slot: bv.Word) -> tuple[Entry, ...]:
    """An access starts using mapping ``slot``."""
    e = _get(table, slot)
    return _put(table, slot, e._replace(locks=bv.add(e.locks, 1, LOCK_BITS)))


def unlock(table: tuple[Entry, ...], slot: bv.Word) -> tuple[Entry, ...]:
    """An access stops using mapping ``slot``; a stale mapping whose last
    lock goes is unmapped."""
    e = _get(table, slot)
    locks = bv.ite(bv.is_zero(e.locks, LOCK_BITS), e.locks, bv.sub(e.locks, 1, LOCK_BITS))
    gone = bv.and_(e.stale, bv.is_zero(locks, LOCK_BITS))
    return _put(table, slot, e._replace(locks=locks, valid=bv.and_(e.valid, bv.not_(gone)),
                                        stale=bv.and_(e.stale, bv.not_(gone))))


def invalidated(e: Entry, first: bv.Word, count: bv.Word) -> bv.Bit:
    """A mapping that the invalidation of buckets ``first`` .. ``first +
    count - 1`` reaches (the run-time cache picks its entries with this)."""
    return bv.and_(e.valid, bv.ult(bv.sub(e.bucket, first, BUCKET_BITS), count))


def invalidate(table: tuple[Entry, ...], first: bv.Word, count: bv.Word
               ) -> tuple[Entry, ...]:
    """The guest gave back buckets ``first`` .. ``first + count - 1``: every
    mapping of one of them (:func:`invalidated`) is dropped, or marked stale
    while it is locked; every other entry is left as it is."""
    out = []
    for e in table:
        inside = invalidated(e, first, count)
        locked = bv.not_(bv.is_zero(e.locks, LOCK_BITS))
        out.append(e._replace(valid=bv.and_(e.valid, bv.not_(bv.and_(inside, bv.not_(locked)))),
                              stale=bv.or_(e.stale, bv.and_(inside, locked))))
    return tuple(out)


def translate(table: tuple[Entry, ...], bucket: bv.Word) -> tuple[bv.Bit, bv.Word]:
    """(found, generation): what an access to ``bucket`` through an existing
    mapping reaches."""
    found, slot = lookup(table, bucket)
    return found, _get(table, slot).gen


# --- how the concrete cache finds its entries ------------------------------------------
#
# The cache of a 2304 MiB budget has 36,864 entries; a map must not scan them.
# :class:`Mapcache` keeps three indexes over its entries and runs
# :func:`map_indexed` on the few entries they name. What it does with them
# is written here, over :mod:`spec.bv`, so that :mod:`proofs.mapcache`
# (``mapcache.engine``) runs the same code on Z3 terms:
#
# * an index *record* names a slot (and the key it was filed under: the
#   bucket, or the stamp); a record may be out of date, so every read checks
#   the entry it names (:func:`usable`, :func:`free_current`,
#   :func:`lru_current`) and skips it if it no longer qualifies;
# * every store of an entry files the records that :func:`index_plan` says,
#   so that every entry that qualifies has its record.


class Found(NamedTuple):
    """What an index lookup gave: whether it found a slot, and which."""

    found: bv.Bit
    slot: bv.Word


#: an entry no rule picks (mapped, locked, stale): fills a slice's unused place
BLOCKED = EMPTY._replace(valid=True, locks=1, stale=True)


class IndexPlan(NamedTuple):
    """The index records one store of an entry files or withdraws."""

    drop_usable: bv.Bit     # withdraw (old bucket, slot) from the bucket index
    add_usable: bv.Bit      # file (new bucket, slot) in the bucket index
    push_free: bv.Bit       # file the slot in the free heap
    push_lru: bv.Bit        # file (new stamp, slot) in the LRU heap


def free_current(e: Entry) -> bv.Bit:
    """A free-heap record of this entry's slot still names a free entry."""
    return bv.not_(e.valid)


def lru_current(e: Entry, stamp: bv.Word) -> bv.Bit:
    """An LRU-heap record (``stamp``, this entry's slot) still names an
    evictable entry last used at ``stamp`` (a window used again since, or
    locked, or unmapped, has a stale record: skipped)."""
    return bv.and_(evictable(e), bv.eq(e.stamp, stamp))


def least(candidates: Iterable[tuple[bv.Bit, bv.Word, bv.Word]]) -> Found:
    """What an index read gives: the slot of the least key among the
    (accepted, key, slot) candidates, the first of equals."""
    found: bv.Bit = False
    slot: bv.Word = 0
    best: bv.Word = 0
    for ok, key, k in candidates:
        better = bv.and_(ok, bv.or_(bv.not_(found), bv.ult(key, best)))
        slot = bv.ite(better, k, slot)
        best = bv.ite(better, key, best)
        found = bv.or_(found, better)
    return Found(found, slot)


def free_or_new(heap: Found, made: bv.Word, windows: bv.Word) -> Found:
    """The free entry a miss may use: the free heap's (``heap``), else a new
    entry after the ``made`` ones while fewer than the budget's ``windows``
    are made."""
    new = bv.and_(bv.not_(heap.found), bv.ult(made, windows))
    return Found(bv.or_(heap.found, new), bv.ite(heap.found, heap.slot, made))


def mapped_after(mapped: bv.Word, old: Entry, new: Entry) -> bv.Word:
    """The count of mapped windows after ``new`` is stored over ``old``
    (32-bit words)."""
    return bv.sub(bv.add(mapped, bv.from_bit(new.valid, BUCKET_BITS), BUCKET_BITS),
                  bv.from_bit(old.valid, BUCKET_BITS), BUCKET_BITS)


def index_plan(old: Entry, new: Entry) -> IndexPlan:
    """What storing ``new`` over ``old`` files in the indexes: a usable entry
    is filed under its bucket, a slot that becomes free in the free heap, an
    evictable entry under its stamp unless it was already filed under it."""
    return IndexPlan(usable(old, old.bucket), usable(new, new.bucket),
                     bv.and_(old.valid, bv.not_(new.valid)),
                     bv.and_(evictable(new),
                             bv.not_(bv.and_(evictable(old), bv.eq(old.stamp, new.stamp)))))


class IndexedMap(NamedTuple):
    """What :func:`map_indexed` did: the two entries of the slice written
    back (``present``, slot, entry), and the map's outcome in table slots."""

    writes: tuple[tuple[bv.Bit, bv.Word, Entry], ...]
    slot: bv.Word
    ok: bv.Bit
    hit: bv.Bit
    evicted: bv.Bit
    victim: bv.Word


def _pick(cond: bv.Bit, a: Entry, b: Entry) -> Entry:
    return Entry(*(bv.ite(cond, x, y) for x, y in zip(a, b)))


def map_indexed(get: Callable[[bv.Word], Entry], hit: Found, free: Found, victim: Found,
                bucket: bv.Word, gen: bv.Word, windows: bv.Word, mapped: bv.Word,
                now: bv.Word) -> IndexedMap:
    """:func:`map_bucket` on the slice of the table the indexes name: the
    first usable entry of ``bucket`` if there is one, else the first free
    entry and the least recently used evictable one (``get`` reads an entry;
    ``windows`` and ``mapped`` are the budget's windows and the windows mapped
    in the whole table, 32-bit words). The slice has room for one more window
    exactly when the whole table has: :func:`map_bucket` sees its own
    windows and a budget one more than them, or no more. It gives on the
    slice what it gives on the whole table (``mapcache.engine``)."""
    first = Found(bv.or_(hit.found, free.found), bv.ite(hit.found, hit.slot, free.slot))
    second = Found(bv.and_(bv.not_(hit.found), victim.found), victim.slot)
    table = (_pick(first.found, get(first.slot), BLOCKED),
             _pick(second.found, get(second.slot), BLOCKED))
    count = mapped_count(table)
    has_room = bv.ult(mapped, windows)
    budget = bv.ite(has_room, bv.add(count, 1, LOCK_BITS), count)
    r = map_bucket(table, bucket, gen, budget, now)
    slot = bv.ite(bv.eq(r.slot, bv.const(0, LOCK_BITS, r.slot)), first.slot, second.slot)
    writes = ((first.found, first.slot, r.table[0]), (second.found, second.slot, r.table[1]))
    return IndexedMap(writes, slot, r.ok, r.hit, r.evicted, r.victim)


# --- the concrete cache of one qemu-dm -------------------------------------------------


class MapcacheFull(Exception):
    """Every window of the budget is locked: the access cannot be mapped."""


class BudgetTooBig(DeviceModelError):
    """A mapcache budget larger than what qemu-dm's address space leaves."""


class LegacyTooBig(DeviceModelError):
    """Map-everything mode with a guest larger than the address-space budget."""


@dataclass
class MapcacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    invalidations: int = 0
    peak_bytes: int = 0


def budget_refusal(bits: int, budget: int) -> str:
    """Why a ``bits``-bit qemu-dm cannot take a budget of ``budget`` bytes."""
    space, own = platform.DM_ADDRESS_SPACE[bits], platform.DM_FOOTPRINT[bits]
    return (f"a mapcache budget of {mib(budget)} MiB does not fit a {bits}-bit qemu-dm: "
            f"Linux gives the process {mib(space)} MiB of address space and qemu-dm "
            f"needs {mib(own)} MiB of it itself, so at most {mib(max_budget(own, space))} MiB "
            f"can map guest memory")


@dataclass
class Mapcache:
    """The mapcache of one qemu-dm process, over the functions above.

    ``bits`` is qemu-dm's word size (the bucket size follows), ``budget`` the
    bytes of address space it may use for guest mappings, ``legacy`` the
    map-everything mode. ``frames(gpa, length)`` is the generation of the
    guest frames a new mapping of the range would show (Xen's p2m,
    :meth:`spec.memory_op.P2m.frames`)."""

    memory_bytes: int
    bits: int = 32
    budget: Optional[int] = None
    legacy: bool = False
    emit: Callable[[trace.Event], None] = lambda event: None
    frames: Callable[[int, int], int] = lambda gpa, length: 0
    stats: MapcacheStats = field(default_factory=MapcacheStats)

    def __post_init__(self) -> None:
        if self.bits not in platform.MAPCACHE_BUCKET_SHIFT:
            raise ValueError(f"qemu-dm is 32- or 64-bit, not {self.bits}-bit")
        if self.budget is None:
            self.budget = platform.MAPCACHE_DEFAULT_BUDGET[self.bits]
        if not budget_fits(self.budget, platform.DM_FOOTPRINT[self.bits],
                           platform.DM_ADDRESS_SPACE[self.bits]):
            raise BudgetTooBig(budget_refusal(self.bits, self.budget))
        self.shift = bucket_shift(self.bits == 32)
        self.bucket_bytes = bucket_address(1, self.shift)
        self.windows = windows_of(self.budget, self.shift)
        if bv.is_zero(self.windows, 64):
            raise ValueError(f"a mapcache budget of {self.budget} bytes holds no "
                             f"{kib(self.bucket_bytes)} KiB bucket")
        if self.legacy and not legacy_fits(self.memory_bytes, self.budget):
            raise LegacyTooBig(
                f"map-everything mode: the guest's {mib(self.memory_bytes)} MiB do not fit "
                f"a {self.bits}-bit qemu-dm's {mib(self.budget)} MiB of address space for "
                f"guest memory; use the mapcache")
        #: the windows made so far; the budget's other windows are empty and
        #: come after them (so "the first free entry" is the same either way)
        self.entries: list[Entry] = []
        self.clock = 0
        # indexes over the entries, to find the few an operation can touch
        self._usable: dict[int, set[int]] = {}     # bucket -> usable slots
        self._free: list[int] = []                 # heap of unmapped slots
        self._lru: list[tuple[int, int]] = []      # heap of (stamp, slot), checked on use
        self._mapped = 0

    # Each operation runs the functions above on the *slice* of the table
    # that can matter to it: a map runs :func:`map_indexed` on the entries
    # the indexes name; ``lock``/``unlock`` run on the one entry; an
    # invalidation runs on the entries :func:`invalidated` picks. Every store
    # files its index records by :func:`index_plan`. ``mapcache.engine``
    # proves that this gives what the functions give on the whole table, so
    # a 2304 MiB budget of 36,864 windows costs no more per access than a
    # budget of three.

    @property
    def table(self) -> tuple[Entry, ...]:
        """The whole table (for checks and tests)."""
        return tuple(self.entries)

    def _store(self, slot: int, new: Entry) -> None:
        """Write entry ``slot`` and file its index records (:func:`index_plan`)."""
        old = self.entries[slot]
        plan = index_plan(old, new)
        if plan.drop_usable:
            self._usable.get(old.bucket, set()).discard(slot)
        self._mapped = mapped_after(self._mapped, old, new)
        self.entries[slot] = new
        if plan.add_usable:
            self._usable.setdefault(new.bucket, set()).add(slot)
        if plan.push_free:
            heapq.heappush(self._free, slot)
        if plan.push_lru:
            heapq.heappush(self._lru, (new.stamp, slot))

    def _entry(self, slot: int) -> Entry:
        return self.entries[slot] if slot < len(self.entries) else EMPTY

    def _first_usable(self, bucket: int) -> Found:
        """The least usable slot the bucket index names for ``bucket``."""
        return least((usable(self.entries[k], bucket), k, k)
                     for k in self._usable.get(bucket, ()))

    def _first_free(self) -> Found:
        """The least slot of the free heap that is still free, else a new
        entry while the budget has windows never made (:func:`free_or_new`)."""
        while self._free and not free_current(self.entries[self._free[0]]):
            heapq.heappop(self._free)
        heap = Found(bool(self._free), self._free[0] if self._free else 0)
        free = free_or_new(heap, len(self.entries), self.windows)
        if free.found and not heap.found:          # a new entry, after the made ones
            self.entries.append(EMPTY)
        return free

    def _lru_victim(self) -> Found:
        """The least (stamp, slot) of the LRU heap that still names an
        evictable entry last used at that stamp (:func:`lru_current`)."""
        while self._lru and not lru_current(self.entries[self._lru[0][1]], self._lru[0][0]):
            heapq.heappop(self._lru)
        return Found(bool(self._lru), self._lru[0][1] if self._lru else 0)

    def _run(self, slots: list[int], step) -> None:
        """Run ``step`` on the slice ``slots`` (table order) and store back
        the entries it changes."""
        table = step(tuple(self.entries[i] for i in slots))
        for i, new in zip(slots, table):
            if new != self.entries[i]:
                self._store(i, new)

    def mapped_bytes(self) -> int:
        if self.legacy:
            return self.memory_bytes
        return bucket_address(self._mapped, self.shift)

    def buckets_of(self, gpa: int, length: int) -> list[int]:
        """The buckets the bytes ``gpa`` .. ``gpa + length - 1`` touch
        (:func:`bucket_span`)."""
        first, count = bucket_span(bv.const(gpa, 64), length, self.shift)
        return [nth_bucket(first, i, self.shift) for i in range(count)]

    def map(self, bucket: int) -> tuple[int, Optional[IndexedMap]]:
        """Map ``bucket``; returns (slot, what happened). Raises
        :class:`MapcacheFull`. In legacy mode everything is mapped already."""
        if self.legacy:
            self.stats.hits += 1
            return bucket, None
        self.clock += 1
        hit = self._first_usable(bucket)
        free = victim = Found(False, 0)
        if not hit.found:
            free, victim = self._first_free(), self._lru_victim()
        result = map_indexed(self._entry, hit, free, victim, bucket,
                             self.generation(bucket), self.windows, self._mapped, self.clock)
        for present, k, new in result.writes:
            if present and new != self.entries[k]:
                self._store(k, new)
        if not result.ok:
            raise MapcacheFull(
                f"mapcache: all {self.windows} windows of {kib(self.bucket_bytes)} KiB "
                f"({mib(self.budget)} MiB of address space) are locked; bucket {bucket:#x} "
                f"cannot be mapped")
        slot = result.slot
        if result.hit:
            self.stats.hits += 1
        else:
            self.stats.misses += 1
            self.stats.evictions += bool(result.evicted)
            self.stats.peak_bytes = max(self.stats.peak_bytes, self.mapped_bytes())
            self.emit(trace.MapcacheMiss(
                bucket=bucket_address(bucket, self.shift),
                evicted=bucket_address(result.victim, self.shift) if result.evicted else -1,
                mapped=self.mapped_bytes()))
        return slot, result

    def lock(self, slot: int) -> None:
        if not self.legacy:
            self._run([slot], lambda table: lock(table, 0))

    def unlock(self, slot: int) -> None:
        if not self.legacy:
            self._run([slot], lambda table: unlock(table, 0))

    def generation(self, bucket: int) -> int:
        """The generation of the frames behind ``bucket`` now."""
        return self.frames(bucket_address(bucket, self.shift), self.bucket_bytes)

    def invalidate_all(self) -> None:
        """Xen's ``IOREQ_TYPE_INVALIDATE`` asks for every mapping to go
        (``xen_invalidate_map_cache``): the range is all the guest's buckets."""
        self.invalidate(*self.ram_buckets())

    def ram_buckets(self) -> tuple[int, int]:
        """(first, count): the buckets of the guest's RAM, from address 0 to
        the end of its highest range (``mapcache.span``)."""
        return bucket_span(0, platform.ram_ranges(self.memory_bytes)[-1][1], self.shift)

    def invalidate(self, first: int, count: int) -> None:
        """Buckets ``first`` .. ``first + count - 1`` may have been given back."""
        stale = 0
        if not self.legacy:
            slots = [i for i, e in enumerate(self.entries) if invalidated(e, first, count)]
            before = sum(self.entries[i].stale for i in slots)
            if slots:
                self._run(slots, lambda table: invalidate(table, first, count))
            stale = sum(self.entries[i].stale for i in slots) - before
        self.stats.invalidations += 1
        self.emit(trace.MapcacheInvalidate(first=bucket_address(first, self.shift), count=count,
                                           stale=stale, mapped=self.mapped_bytes()))

    def summary(self) -> trace.MapcacheStats:
        """The statistics event qemu-dm emits when the domain ends."""
        st = self.stats
        return trace.MapcacheStats(
            mode="map-everything" if self.legacy else "mapcache",
            bucket_size=self.bucket_bytes, budget=self.budget, hits=st.hits,
            misses=st.misses, evictions=st.evictions, invalidations=st.invalidations,
            mapped=self.mapped_bytes(),
            peak=self.memory_bytes if self.legacy else st.peak_bytes)

    def check(self, bucket: int) -> None:
        """The mapping an access is about to use shows the bucket's frames
        now: the invariant :mod:`proofs.mapcache` proves, checked at run time."""
        if self.legacy:
            return
        slot = self._first_usable(bucket)
        found, gen = translate((self._entry(slot.slot),), bucket)
        assert slot.found and found and gen == self.generation(bucket), \
            f"mapcache: bucket {bucket:#x} has no current mapping"
