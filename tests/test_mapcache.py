"""qemu-dm's mapcache: the spec's rules, impl's cache against them, and both
engines running a guest whose string I/O walks more buckets than the
budget holds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from impl.mapcache import Mapcache as ImplMapcache
from spec import platform, trace
from spec.mapcache import EMPTY, LegacyTooBig, Mapcache, MapcacheFull
from spec.xend import DeviceModelError
from tests.conftest import both, cli, guest, run

KIB = 1 << 10


def _cache(windows: int, **kw) -> tuple[Mapcache, list]:
    events: list = []
    return Mapcache(1 << 30, budget=windows * 64 * KIB, emit=events.append, **kw), events


def _use(cache: Mapcache, bucket: int) -> int:
    slot, _ = cache.map(bucket)
    cache.check(bucket)
    return slot


def test_least_recently_used_unlocked_window_is_evicted():
    cache, events = _cache(3)
    for b in (1, 2, 3, 1, 4):          # 1 was used again: 2 is the oldest
        _use(cache, b)
    misses = [e for e in events if isinstance(e, trace.MapcacheMiss)]
    assert [(e.bucket >> 16, e.evicted >> 16 if e.evicted >= 0 else None) for e in misses] == \
        [(1, None), (2, None), (3, None), (4, 2)]
    assert (cache.stats.hits, cache.stats.misses, cache.stats.evictions) == (1, 4, 1)
    assert cache.mapped_bytes() == 3 * 64 * KIB


def test_a_locked_window_is_never_evicted_and_a_full_lock_refuses():
    cache, events = _cache(2)
    cache.lock(_use(cache, 1))
    _use(cache, 2)
    _use(cache, 3)                     # 1 is older but locked: 2 goes
    assert events[-1] == trace.MapcacheMiss(bucket=3 << 16, evicted=2 << 16, mapped=128 * KIB)
    cache.lock(_use(cache, 3))
    with pytest.raises(MapcacheFull, match="all 2 windows of 64 KiB .* are locked; bucket 0x4"):
        _use(cache, 4)


def test_invalidation_drops_unlocked_windows_and_makes_locked_ones_stale():
    p2m: dict[int, int] = {}           # bucket -> the generation of its frames
    cache, events = _cache(4, frames=lambda gpa, length: p2m.get(gpa >> 16, 0))
    held = _use(cache, 5)
    cache.lock(held)
    _use(cache, 6)
    _use(cache, 9)
    p2m[5] = p2m[6] = 1                # buckets 5 and 6 given back
    cache.invalidate(5, 2)
    assert events[-1] == trace.MapcacheInvalidate(first=5 << 16, count=2, stale=1,
                                                  mapped=2 * 64 * KIB)
    _use(cache, 5)                     # a new window: the stale one is not reused
    assert cache.stats.misses == 4 and cache.mapped_bytes() == 3 * 64 * KIB
    cache.unlock(held)                 # the stale window goes with its last lock
    assert cache.mapped_bytes() == 2 * 64 * KIB
    cache.check(5)


def test_map_everything_refuses_a_guest_that_does_not_fit():
    with pytest.raises(LegacyTooBig, match="4096 MiB do not fit a 32-bit qemu-dm's 2304 MiB"):
        Mapcache(4 << 30, bits=32, legacy=True)
    with pytest.raises(DeviceModelError, match="4096 MiB do not fit a 32-bit qemu-dm's 2304 MiB"):
        ImplMapcache(4 << 30, bits=32, legacy=True)
    assert platform.MAPCACHE_DEFAULT_BUDGET[32] == 2304 << 20
    Mapcache(4 << 30, bits=64, legacy=True)     # a 64-bit qemu-dm maps it all


@pytest.mark.parametrize("bits, budget, fits", [
    (32, 2304 << 20, True), (32, (2304 << 20) + 1, False), (32, 8 << 30, False),
    (32, (1 << 64) - 1, False), (64, 8 << 30, True), (64, (1 << 47) - (768 << 20), True),
    (64, 1 << 47, False)])
def test_the_budget_must_fit_qemu_dms_own_address_space(bits, budget, fits):
    """A 32-bit qemu-dm has 3 GiB, 768 MiB of it its own: a budget beyond the
    2304 MiB left is refused by both engines' qemu-dm, with the same words."""
    if fits:
        assert Mapcache(1 << 30, bits=bits, budget=budget).budget == budget
        ImplMapcache(1 << 30, bits=bits, budget=budget)
        return
    with pytest.raises(DeviceModelError) as spec_error:
        Mapcache(1 << 30, bits=bits, budget=budget)
    with pytest.raises(DeviceModelError) as impl_error:
        ImplMapcache(1 << 30, bits=bits, budget=budget)
    assert str(spec_error.value) == str(impl_error.value)
    room = (platform.DM_ADDRESS_SPACE[bits] - platform.DM_FOOTPRINT[bits]) >> 20
    assert f"at most {room} MiB can map guest memory" in str(spec_error.value)


@pytest.mark.parametrize("engine", ["reference", "impl"])
def test_a_32_bit_qemu_dm_cannot_map_6_gib(engine):
    """The issue's run: told to map a 6 GiB guest whole with an 8 GiB budget,
    a 32-bit qemu-dm refuses (exit 2); a 64-bit one does it."""
    proc = cli("run", "hello", "--engine", engine, "--dm-bits", "32", "--mapcache-budget",
               "8G", "--map-everything", "--memory", "6144")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "does not fit a 32-bit qemu-dm" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("run", "hello", "--engine", engine, "--dm-bits", "64", "--mapcache-budget",
               "8G", "--map-everything", "--memory", "6144")
    assert proc.returncode == 0, proc.stderr


# --- impl against the spec: the same events for any sequence of operations -------------

OPS = st.lists(st.one_of(
    st.tuples(st.just("use"), st.integers(0, 9)),
    st.tuples(st.just("hold"), st.integers(0, 9)),
    st.tuples(st.just("release"), st.integers(0, 5)),
    st.tuples(st.just("invalidate"), st.integers(0, 9), st.integers(1, 3)),
), max_size=40)


@settings(max_examples=300, deadline=None)
@given(windows=st.integers(1, 4), bits=st.sampled_from([32, 64]), ops=OPS)
def test_impl_mapcache_emits_what_the_spec_emits(windows, bits, ops):
    shift = platform.MAPCACHE_BUCKET_SHIFT[bits]
    ref_events, imp_events = [], []
    p2m: dict[int, int] = {}
    frames = lambda gpa, length: p2m.get(gpa >> shift, 0)          # noqa: E731
    ref = Mapcache(1 << 32, bits=bits, budget=windows << shift, emit=ref_events.append,
                   frames=frames)
    imp = ImplMapcache(1 << 32, bits, windows << shift, False, imp_events.append, frames)
    ref_held, imp_held = [], []
    for op in ops:
        if op[0] in ("use", "hold"):
            try:
                slot, _ = ref.map(op[1])
                ref.lock(slot)
                ref_failed = False
            except MapcacheFull:
                ref_failed = True
            try:
                w = imp.window(op[1])
                imp_failed = False
            except DeviceModelError:
                imp_failed = True
            assert ref_failed == imp_failed
            if ref_failed:
                continue
            if op[0] == "use":
                ref.unlock(slot)
                imp.release(w)
            else:
                ref_held.append(slot)
                imp_held.append(w)
        elif op[0] == "release" and ref_held:
            k = op[1] % len(ref_held)
            ref.unlock(ref_held.pop(k))
            imp.release(imp_held.pop(k))
        elif op[0] == "invalidate":
            for b in range(op[1], op[1] + op[2]):
                p2m[b] = p2m.get(b, 0) + 1
            ref.invalidate(op[1], op[2])
            imp.invalidate(op[1], op[2])
        assert ref.mapped_bytes() == imp.mapped()
    assert ref_events == imp_events
    assert ref.summary() == imp.summary()


# --- both engines: a guest's string I/O through a small mapcache -------------------------

#: ``rep outsb`` of 2 bytes from buckets 1..5, then 1 and 2 again, then 6;
#: each buffer holds "<digit>\n" written there first
WALK = "".join(f"""
    mov ax, {b * 0x1000:#x}
    mov ds, ax
    mov word ptr [0x10], {0x0A30 + b:#x}
    mov si, 0x10
    mov cx, 2
    mov dx, 0x3f8
    rep outsb
""" for b in (1, 2, 3, 4, 5, 1, 2, 6))


def test_string_io_through_a_small_mapcache_misses_and_evicts_alike():
    image = guest("walk", WALK)
    result = both(image, device_model={"mapcache_budget": 3 * 64 * KIB})
    assert result.serial == "1\n2\n3\n4\n5\n1\n2\n6\n"
    misses = [(e.bucket >> 16, e.evicted >> 16 if e.evicted >= 0 else None)
              for e in result.trace if isinstance(e, trace.MapcacheMiss)]
    assert misses == [(1, None), (2, None), (3, None), (4, 1), (5, 2), (1, 3), (2, 4), (6, 5)]
    assert result.mapcache["misses"] == 8 and result.mapcache["evictions"] == 5
    assert result.mapcache["peak"] == 3 * 64 * KIB
    # with the default budget every bucket stays mapped: no evictions
    roomy = run("impl", image)
    assert roomy.mapcache["evictions"] == 0 and roomy.mapcache["hits"] == 2


def test_a_budget_below_one_bucket_is_refused():
    from spec.xend import DomainConfig, XendError
    with pytest.raises(XendError, match="needs at least one bucket \\(64 KiB\\)"):
        DomainConfig(name="x", mapcache_budget=4096)


# --- the concrete cache runs the spec's functions on slices of its table --------------------

def _whole_table_run(windows: int, ops: list) -> list:
    """The same operations with every function applied to the whole table
    (what the slicing in :class:`spec.mapcache.Mapcache` must equal)."""
    from spec import mapcache as mc
    table: tuple = ()
    clock, out, held = 0, [], []
    gen: dict[int, int] = {}
    for op, arg in ops:
        if op == "use":
            clock += 1
            if len(table) < windows and all(e.valid for e in table):
                table += (mc.EMPTY,)
            r = mc.map_bucket(table, arg, gen.get(arg, 0), windows, clock)
            if not r.ok:
                out.append(("full",))
                continue
            table = mc.lock(r.table, r.slot)
            held.append(r.slot)
            out.append(("use", r.slot, bool(r.hit), bool(r.evicted),
                        r.victim if r.evicted else None))
        elif op == "release" and held:
            table = mc.unlock(table, held.pop(arg % len(held)))
        elif op == "invalidate":
            for b in range(arg, arg + 2):
                gen[b] = gen.get(b, 0) + 1
            table = mc.invalidate(table, arg, 2)
        out.append(tuple(e for e in table if e != mc.EMPTY))
    return out


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.integers(1, 5), st.lists(st.tuples(st.sampled_from(["use", "use", "release",
                                                               "invalidate"]),
                                             st.integers(0, 7)), max_size=40))
def test_slices_give_what_the_whole_table_gives(windows, ops):
    p2m: dict[int, int] = {}
    cache = Mapcache(1 << 30, budget=windows << 16,
                     frames=lambda gpa, length: p2m.get(gpa >> 16, 0))
    out, held = [], []
    for op, arg in ops:
        if op == "use":
            try:
                slot, r = cache.map(arg)
            except MapcacheFull:
                out.append(("full",))
                continue
            cache.lock(slot)
            held.append(slot)
            out.append(("use", slot, bool(r.hit), bool(r.evicted),
                        r.victim if r.evicted else None))
        elif op == "release" and held:
            cache.unlock(held.pop(arg % len(held)))
        elif op == "invalidate":
            for b in range(arg, arg + 2):
                p2m[b] = p2m.get(b, 0) + 1
            cache.invalidate(arg, 2)
        out.append(tuple(e for e in cache.table if e != EMPTY))
    assert out == _whole_table_run(windows, ops)


def test_the_cache_maps_through_the_functions_mapcache_engine_proves():
    """Each map runs spec.mapcache.map_indexed on the slice its indexes name,
    and each store files its index records by index_plan: the code the
    mapcache.engine proof runs on Z3 terms."""
    from unittest import mock
    from spec import mapcache as mc
    seen = {"map_indexed": 0, "index_plan": 0}

    def counting(name):
        real = getattr(mc, name)

        def wrapper(*args):
            seen[name] += 1
            return real(*args)
        return wrapper
    with mock.patch.object(mc, "map_indexed", counting("map_indexed")), \
            mock.patch.object(mc, "index_plan", counting("index_plan")):
        cache, _events = _cache(2)
        for b in (1, 2, 1, 3):
            _use(cache, b)
    assert seen == {"map_indexed": 4, "index_plan": 4}   # 3 misses store, the hit restamps


def test_a_window_used_again_is_evicted_by_its_new_use():
    """The LRU heap learns a hit's new stamp: after 1, 2, 1, 3 (evicting 2),
    4 evicts 1 (used at the third access), not 3."""
    cache, events = _cache(2)
    for b in (1, 2, 1, 3, 4):
        _use(cache, b)
    misses = [(e.bucket >> 16, e.evicted >> 16) for e in events
              if isinstance(e, trace.MapcacheMiss) and e.evicted >= 0]
    assert misses == [(3, 2), (4, 1)]


def test_an_access_that_runs_past_2_to_the_64_goes_on_at_bucket_0():
    """buckets_of is bucket_span (mapcache.span): 64-bit addresses wrap, and
    bucket numbers with them."""
    cache = Mapcache(1 << 30)
    assert cache.buckets_of((1 << 64) - 1, 2) == [(1 << 48) - 1, 0]
    assert cache.buckets_of(0xFFFF, 2) == [0, 1]
    assert cache.buckets_of(0x10000, 0x10000) == [1]
    assert cache.buckets_of(0x10000, 0) == [1]
    assert Mapcache(1 << 30, bits=64).buckets_of(0xFFFFF, 0x100002) == [0, 1, 2]


def test_invalidate_all_reaches_the_memory_above_4_gib():
    cache = Mapcache(6 << 30, bits=64)
    assert cache.ram_buckets() == (0, ((4 << 30) + (6 << 30) - platform.BELOW_4G_RAM_END) >> 20)
