"""Proofs about qemu-dm's mapcache: the address-space budget, locks, and
invalidation.

Room: one transition system built from the spec's own functions
(:func:`spec.mapcache.map_bucket` with :func:`~spec.mapcache.room`,
:func:`~spec.mapcache.lru_victim` and :func:`~spec.mapcache.evictable`,
:func:`~spec.mapcache.lock`, :func:`~spec.mapcache.unlock`,
:func:`~spec.mapcache.invalidate`, :func:`~spec.mapcache.translate`) called
with Z3 terms, the properties checked on it, and the mutants that must
break them. Imports :mod:`spec.mapcache`, :mod:`spec.platform`, :mod:`spec.trace`,
:mod:`proofs.kinduction`.

The system. State: a cache of four windows (each entry: mapped, bucket,
generation, lock count, stale, stamp), the clock, the budget (any number of
windows from 1 to 4, fixed for a run), and Xen's p2m for one arbitrary
bucket *K* (fixed for a run): its current generation. Every other bucket's
generation is whatever the step's input says when it is mapped; since *K*
is any bucket, what is proved for *K* holds for every bucket (the same
argument as the tracked line of :mod:`proofs.interrupts`). Each step one
of:

``map``
    qemu-dm maps any bucket (:func:`~spec.mapcache.map_bucket`);
``lock``, ``unlock``
    an access starts using a usable window (up to 254 at once), or one that
    uses a window ends;
``invalidate``
    qemu-dm's cache is invalidated for any range of buckets, and the p2m's
    generations of any of them may have changed (the guest gave them back;
    new frames may come). Xen's invalidation asks qemu-dm to flush
    everything, whatever was given back: a range that covers more than the
    buckets whose frames changed is the common case. The p2m changes
    only together with an invalidation, because Xen sends it before the
    vcpu that gave memory back runs again, and qemu-dm touches guest
    memory only for that vcpu's requests;
``translate``
    an access through an existing mapping of any bucket.

Properties, each checked by induction for runs of any length:

* ``mapcache.budget``: the mapped windows never exceed the budget;
* ``mapcache.locked_kept``: a locked window is never unmapped or remapped:
  after any step it still shows the same bucket at the same generation;
* ``mapcache.no_stale``: every successful translation reaches the bucket's
  current frames (its generation in the p2m), never those of a mapping made
  before the bucket was given back.

Strengthening (the invariant every reachable state has, which makes the
induction go through): the budget is 1..4 windows and at most that many are
mapped; a locked or stale entry is mapped; a stale entry is locked (it goes
with its last lock); a mapped entry of bucket *K* that is not stale shows
*K*'s current generation.

Three more systems tie these functions to what the engine runs:

* ``mapcache.lru`` and ``mapcache.invalidate``: one map, or one
  invalidation, on *every* table of four entries (no strengthening needed):
  the window a map evicts is the least recently used mapped, unlocked one,
  stated entry by entry; an invalidation reaches exactly the mappings of
  its range (bounds compared in 64-bit words);
* ``mapcache.engine``: the run-time :class:`~spec.mapcache.Mapcache` (its
  slices through :func:`~spec.mapcache.map_indexed`, its index records filed
  by :func:`~spec.mapcache.index_plan` and read through
  :func:`~spec.mapcache.usable`, :func:`~spec.mapcache.free_current` and
  :func:`~spec.mapcache.lru_current`) gives what the whole-table functions
  give (the comments above :func:`engine_system` say how the heaps are
  modelled).

Around the table, the cache's arithmetic and its admission rules are
function-level checks (each claim for every value of its words):

* ``mapcache.locking``: an access's lock is given back (unlock after lock
  is the identity; an unlock takes one lock; a stale window's last unlock
  unmaps it; unlocking an unlocked window changes nothing)
* ``mapcache.span``: the buckets an access touches
  (:func:`~spec.mapcache.bucket_span`, 64-bit addresses that wrap) and where
  a bucket starts (:func:`~spec.mapcache.bucket_address`);
* ``mapcache.geometry``: the bucket size by word size, the windows a budget
  holds, the budgets and map-everything guests accepted, the units of the
  messages, and the range the invalidation of everything covers.

And ``mapcache.runtime`` runs the :class:`~spec.mapcache.Mapcache` class
itself (its heaps are Python lists) against the whole-table functions on
every short run of a small domain: a bounded, exhaustive check, not a Z3
proof (:func:`runtime_rule`).

Most mutants here are the spec's code with one line changed
(:func:`proofs.kinduction.source_mutant`).
"""

from __future__ import annotations

import copy
import dataclasses
import heapq
import time
from contextlib import ExitStack

import z3

from proofs.kinduction import (Outcome, TransitionSystem, check, replaced, source_mutant,
                               valid)
from spec import bv, mapcache as mc, platform, trace

SLOTS = 4
ACTIONS = ("map", "lock", "unlock", "invalidate", "translate")
A = {name: i for i, name in enumerate(ACTIONS)}
FIELDS = ("valid", "bucket", "gen", "locks", "stale", "stamp")


def _vars(slots: int = SLOTS) -> dict:
    out = {"clock": lambda n: z3.BitVec(n, mc.STAMP_BITS),
           "budget": lambda n: z3.BitVec(n, mc.LOCK_BITS),
           "K": lambda n: z3.BitVec(n, mc.BUCKET_BITS),
           "genK": lambda n: z3.BitVec(n, mc.GEN_BITS)}
    widths = {"bucket": mc.BUCKET_BITS, "gen": mc.GEN_BITS, "locks": mc.LOCK_BITS,
              "stamp": mc.STAMP_BITS}
    for i in range(slots):
        for f in FIELDS:
            if f in ("valid", "stale"):
                out[f"{f}{i}"] = lambda n: z3.Bool(n)
            else:
                out[f"{f}{i}"] = lambda n, w=widths[f]: z3.BitVec(n, w)
    return out


def _inputs() -> dict:
    return {"act": lambda n: z3.BitVec(n, 3),
            "bucket": lambda n: z3.BitVec(n, mc.BUCKET_BITS),
            "slot": lambda n: z3.BitVec(n, mc.LOCK_BITS),
            "count": lambda n: z3.BitVec(n, mc.BUCKET_BITS),
            "gen": lambda n: z3.BitVec(n, mc.GEN_BITS),
            "changed": lambda n: z3.Bool(n)}


def _table(s) -> tuple[mc.Entry, ...]:
    return tuple(mc.Entry(*(s[f"{f}{i}"] for f in FIELDS)) for i in range(_slots(s)))


def _slots(s) -> int:
    """How many entries the state ``s`` has (four; three in mapcache.engine)."""
    return sum(1 for name in s if name.startswith("valid"))


def _is(t, table: tuple[mc.Entry, ...]) -> z3.BoolRef:
    return z3.And(*[t[f"{f}{i}"] == getattr(e, f) for i, e in enumerate(table)
                    for f in FIELDS])


def _slot_ok(s, slot) -> z3.BoolRef:
    return z3.ULT(slot, _slots(s))


def _entry(s, slot) -> mc.Entry:
    return mc._get(_table(s), slot)


def _step(s, i, t) -> z3.BoolRef:
    table, act = _table(s), i["act"]
    fixed = z3.And(t["budget"] == s["budget"], t["K"] == s["K"])
    keep = z3.And(fixed, t["clock"] == s["clock"], t["genK"] == s["genK"])
    now = s["clock"] + 1
    current = z3.If(i["bucket"] == s["K"], s["genK"], i["gen"])    # the p2m's generation
    mapped = mc.map_bucket(table, i["bucket"], current, s["budget"], now)
    do_map = z3.And(_is(t, mapped.table), fixed, t["clock"] == now, t["genK"] == s["genK"])
    e = _entry(s, i["slot"])
    can_lock = z3.And(_slot_ok(s, i["slot"]), e.valid, z3.Not(e.stale), e.locks != 0xFF)
    can_unlock = z3.And(_slot_ok(s, i["slot"]), e.locks != 0)
    k_given_back = z3.And(z3.ULT(s["K"] - i["bucket"], i["count"]), i["changed"])
    do_invalidate = z3.And(_is(t, mc.invalidate(table, i["bucket"], i["count"])), fixed,
                           t["clock"] == s["clock"],
                           t["genK"] == z3.If(k_given_back, s["genK"] + 1, s["genK"]))
    return z3.Or(
        z3.And(act == A["map"], do_map),
        z3.And(act == A["lock"], can_lock, _is(t, mc.lock(table, i["slot"])), keep),
        z3.And(act == A["unlock"], can_unlock, _is(t, mc.unlock(table, i["slot"])), keep),
        z3.And(act == A["invalidate"], do_invalidate),
        z3.And(act == A["translate"], _is(t, table), keep),
    )


def _init(s) -> z3.BoolRef:
    return z3.And(z3.UGE(s["budget"], 1), z3.ULE(s["budget"], SLOTS),
                  *[z3.And(z3.Not(s[f"valid{i}"]), z3.Not(s[f"stale{i}"]), s[f"locks{i}"] == 0)
                    for i in range(SLOTS)])


def _mapped(s) -> z3.ArithRef:
    return z3.Sum(*[z3.If(s[f"valid{i}"], 1, 0) for i in range(_slots(s))])


def _invariant(s) -> z3.BoolRef:
    per_entry = []
    for i in range(SLOTS):
        valid, stale, locks = s[f"valid{i}"], s[f"stale{i}"], s[f"locks{i}"]
        per_entry += [
            z3.Implies(locks != 0, valid),
            z3.Implies(stale, z3.And(valid, locks != 0)),
            z3.Implies(z3.And(valid, z3.Not(stale), s[f"bucket{i}"] == s["K"]),
                       s[f"gen{i}"] == s["genK"]),
        ]
    return z3.And(z3.UGE(s["budget"], 1), z3.ULE(s["budget"], SLOTS),
                  _mapped(s) <= z3.BV2Int(s["budget"]), *per_entry)


def _budget_property(s, i, t) -> z3.BoolRef:
    return _mapped(t) <= z3.BV2Int(t["budget"])


def _locked_property(s, i, t) -> z3.BoolRef:
    """(the unlock that ends a window's last lock may let it go)"""
    releases = lambda k: z3.And(i["act"] == A["unlock"], i["slot"] == k)   # noqa: E731
    return z3.And(*[z3.Implies(z3.And(s[f"locks{k}"] != 0, z3.Not(releases(k))),
                               z3.And(t[f"valid{k}"], t[f"bucket{k}"] == s[f"bucket{k}"],
                                      t[f"gen{k}"] == s[f"gen{k}"]))
                    for k in range(SLOTS)])


def _stale_property(s, i, t) -> z3.BoolRef:
    found, gen = mc.translate(_table(s), i["bucket"])
    return z3.Implies(z3.And(i["act"] == A["translate"], i["bucket"] == s["K"], found),
                      gen == s["genK"])


def _lru_property(s, i, t) -> z3.BoolRef:
    """A map that evicts takes a window that was mapped and unlocked, and no
    other mapped unlocked window was used less recently (nor as recently
    with a lower slot: the first of equals goes)."""
    mapped = mc.map_bucket(_table(s), i["bucket"], i["gen"], s["budget"], s["clock"] + 1)
    facts = []
    for v in range(SLOTS):
        unlocked = lambda k: z3.And(s[f"valid{k}"], s[f"locks{k}"] == 0)      # noqa: E731
        older = [z3.Implies(unlocked(k),
                            z3.Or(z3.ULT(s[f"stamp{v}"], s[f"stamp{k}"]),
                                  z3.And(s[f"stamp{v}"] == s[f"stamp{k}"], v < k)))
                 for k in range(SLOTS) if k != v]
        facts.append(z3.Implies(mapped.slot == v, z3.And(unlocked(v), *older)))
    return z3.Implies(z3.And(i["act"] == A["map"], mapped.evicted), z3.And(facts))


def _invalidate_property(s, i, t) -> z3.BoolRef:
    """An invalidation of buckets first .. first + count - 1 (a range that
    does not wrap past 2^32) drops every unlocked mapping of the range, marks
    every locked one stale and leaves it showing what it showed, and leaves
    every other entry as it was."""
    wide = lambda x: z3.ZeroExt(32, x)                                       # noqa: E731
    first, count = wide(i["bucket"]), wide(i["count"])
    no_wrap = z3.ULE(first + count, 1 << mc.BUCKET_BITS)
    facts = []
    for k in range(SLOTS):
        inside = z3.And(s[f"valid{k}"], z3.ULE(first, wide(s[f"bucket{k}"])),
                        z3.ULT(wide(s[f"bucket{k}"]), first + count))
        same = z3.And(*[t[f"{f}{k}"] == s[f"{f}{k}"] for f in FIELDS])
        kept = z3.And(*[t[f"{f}{k}"] == s[f"{f}{k}"] for f in FIELDS if f != "stale"])
        facts.append(z3.Implies(i["slot"] == k, z3.If(
            inside, z3.If(s[f"locks{k}"] == 0, z3.Not(t[f"valid{k}"]),
                          z3.And(kept, t[f"stale{k}"])),
            same)))
    # (the entry the property speaks of is the input ``slot``: any of them)
    return z3.Implies(z3.And(i["act"] == A["invalidate"], no_wrap), z3.And(facts))


def _describe_state(v: dict) -> str:
    parts = []
    for i in range(_slots(v)):
        if not v[f"valid{i}"]:
            parts.append("-")
            continue
        flags = (f" L{v[f'locks{i}']}" if v[f"locks{i}"] else "") + \
                (" stale" if v[f"stale{i}"] else "")
        parts.append(f"b{v[f'bucket{i}']:#x}@g{v[f'gen{i}']}{flags}")
    return f"budget {v['budget']}, K=b{v['K']:#x}@g{v['genK']}: [" + ", ".join(parts) + "]"


def _describe_input(v: dict) -> str:
    act = ACTIONS[v["act"]] if v["act"] < len(ACTIONS) else f"act {v['act']}"
    if act == "map":
        return f"map b{v['bucket']:#x} (g{v['gen']})"
    if act == "translate":
        return f"translate b{v['bucket']:#x}"
    if act in ("lock", "unlock"):
        return f"{act} slot {v['slot']}"
    given = " (K's frames changed)" if v.get("changed") else ""
    return f"invalidate b{v['bucket']:#x} +{v['count']}{given}"


def _full_miss(s, i, t) -> z3.BoolRef:
    """A map of a bucket no window shows, with every window of the budget
    mapped: the step that must evict (or refuse)."""
    found, _gen = mc.translate(_table(s), i["bucket"])
    return z3.And(i["act"] == A["map"], z3.Not(found), _mapped(s) == z3.BV2Int(s["budget"]))


def _evicts_around_a_lock(s, i, t) -> z3.BoolRef:
    """A full-budget miss while a window is locked: the lock must hold."""
    return z3.And(_full_miss(s, i, t), z3.Or(*[s[f"locks{k}"] != 0 for k in range(SLOTS)]),
                  z3.UGE(s["budget"], 2))


def _translates_past_stale(s, i, t) -> z3.BoolRef:
    """A translation of *K* that succeeds while a stale window of *K* (made
    before its frames were given back) is still mapped."""
    found, _gen = mc.translate(_table(s), s["K"])
    stale_k = z3.Or(*[z3.And(s[f"stale{k}"], s[f"bucket{k}"] == s["K"]) for k in range(SLOTS)])
    return z3.And(i["act"] == A["translate"], i["bucket"] == s["K"], found, stale_k)


def _evicts_among_two(s, i, t) -> z3.BoolRef:
    """A full-budget miss with two unlocked windows used at different times."""
    unlocked = [z3.And(s[f"valid{k}"], s[f"locks{k}"] == 0) for k in range(SLOTS)]
    return z3.And(_full_miss(s, i, t), unlocked[0], unlocked[1], s["stamp0"] != s["stamp1"])


def _invalidates_edges(s, i, t) -> z3.BoolRef:
    """An invalidation whose range ends just before a mapped bucket, with a
    mapped bucket at its last one."""
    last = i["bucket"] + i["count"] - 1
    return z3.And(i["act"] == A["invalidate"], i["count"] != 0, s["valid0"], s["valid1"],
                  s["bucket0"] == last, s["bucket1"] == last + 1,
                  z3.ULT(i["bucket"], i["bucket"] + i["count"]))


def _system(name: str, prop, witnesses) -> TransitionSystem:
    return TransitionSystem(name, _vars(), _inputs(), _init, _step, _invariant, prop,
                            _describe_state, _describe_input, depth=4, witnesses=witnesses,
                            witness_depth=6)


def budget_system() -> TransitionSystem:
    """The windows qemu-dm maps never exceed its address-space budget."""
    return _system("mapcache.budget", _budget_property,
                   (("a miss with the budget full", _full_miss),))


def locked_system() -> TransitionSystem:
    """A locked window is never evicted or remapped while the access that
    locked it is in flight."""
    return _system("mapcache.locked_kept", _locked_property,
                   (("a full-budget miss while a window is locked", _evicts_around_a_lock),))


def stale_system() -> TransitionSystem:
    """Every successful translation reaches the bucket's current frames,
    never a mapping made before the bucket was given back."""
    return _system("mapcache.no_stale", _stale_property,
                   (("a translation of K past a stale window of K", _translates_past_stale),))


def _any_table(name: str, action: str, prop, witnesses, cases=None) -> TransitionSystem:
    """A property of one operation on *every* table of four entries (any
    contents, any budget), reachable or not: one step from any state is the
    whole search, and the induction needs no strengthening."""
    def step(s, i, t):
        table = _table(s)
        if action == "map":
            after = mc.map_bucket(table, i["bucket"], i["gen"], s["budget"],
                                  s["clock"] + 1).table
        else:
            after = mc.invalidate(table, i["bucket"], i["count"])
        return z3.And(i["act"] == A[action], _is(t, after))
    return TransitionSystem(name, _vars(), _inputs(), lambda s: z3.BoolVal(True), step,
                            lambda s: z3.BoolVal(True), prop, _describe_state,
                            _describe_input, depth=1, witnesses=witnesses, incremental=False,
                            cases=cases, split_search=cases is not None)


def lru_system() -> TransitionSystem:
    """The window a full-budget miss evicts is the least recently used
    mapped, unlocked one (on every table)."""
    return _any_table("mapcache.lru", "map", _lru_property,
                      (("a full-budget miss with two unlocked windows", _evicts_among_two),))


def invalidate_system() -> TransitionSystem:
    """An invalidation reaches exactly the mappings of its range (on every
    table)."""
    return _any_table("mapcache.invalidate", "invalidate", _invalidate_property,
                      (("an invalidation ending next to a mapped bucket", _invalidates_edges),),
                      cases=lambda i: [i["slot"] == k for k in range(SLOTS)])


# --- mapcache.engine: the run-time cache, its slices and its indexes ----------------------
#
# The engine (:class:`spec.mapcache.Mapcache`) never runs map_bucket on its
# whole table: it asks three indexes for slots and runs
# :func:`~spec.mapcache.map_indexed` on the entries they name, stores back
# what changed, and files index records by :func:`~spec.mapcache.index_plan`;
# lock and unlock run on the one entry, invalidate on the entries
# :func:`~spec.mapcache.invalidated` picks. This system runs that code on a
# table of three entries (ENGINE_SLOTS: a hit, a free entry, a victim and
# one more than a slice holds), beside the whole-table functions.
#
# The indexes are modelled by which records they hold: for each slot, whether
# the bucket index holds (its bucket, slot), the free heap holds the slot,
# the LRU heap holds (its stamp, slot). Records are only ever assumed present
# when a store filed them and nothing about the entry changed since (a heap
# may drop a record its reader skips); and each read may also meet one
# out-of-date record of any key for any slot (an input). A read gives what a
# heap gives: the least key among the records the reader's check accepts
# (the free heap's reader appends an entry while the table is shorter than
# the budget).

EKEYS = ("U", "F", "L")          # bucket index, free heap, LRU heap
ENGINE_SLOTS = 3


def _engine_vars() -> dict:
    out = {name: make for name, make in _vars(ENGINE_SLOTS).items()
           if name not in ("K", "genK")}
    out["n"] = lambda n: z3.BitVec(n, mc.LOCK_BITS)          # entries made so far
    out["mapped"] = lambda n: z3.BitVec(n, mc.BUCKET_BITS)   # the engine's count
    for k in range(ENGINE_SLOTS):
        for key in EKEYS:
            out[f"{key}{k}"] = lambda n: z3.Bool(n)
    return out


def _engine_inputs() -> dict:
    out = _inputs()
    out.update({"gu": lambda n: z3.BitVec(n, mc.LOCK_BITS),    # out-of-date records
                "gu_bucket": lambda n: z3.BitVec(n, mc.BUCKET_BITS),
                "gf": lambda n: z3.BitVec(n, mc.LOCK_BITS),
                "gl": lambda n: z3.BitVec(n, mc.LOCK_BITS),
                "gl_stamp": lambda n: z3.BitVec(n, mc.STAMP_BITS)})
    return out


def _reads(s, i, bucket) -> tuple[mc.Found, mc.Found, mc.Found]:
    table = _table(s)
    slot = lambda k: z3.BitVecVal(k, mc.LOCK_BITS)                            # noqa: E731
    exists = lambda k: z3.ULT(k, s["n"])                                      # noqa: E731
    # the bucket index: a set per bucket, read for ``bucket``; the least slot
    cands = [(z3.And(s[f"U{k}"], e.bucket == bucket, mc.usable(e, bucket)), slot(k), slot(k))
             for k, e in enumerate(table)]
    g = mc._get(table, i["gu"])
    cands.append((z3.And(exists(i["gu"]), i["gu_bucket"] == bucket, mc.usable(g, bucket)),
                  i["gu"], i["gu"]))
    hit = mc.least(cands)
    cands = [(z3.And(s[f"F{k}"], exists(slot(k)), mc.free_current(e)), slot(k), slot(k))
             for k, e in enumerate(table)]
    cands.append((z3.And(exists(i["gf"]), mc.free_current(mc._get(table, i["gf"]))),
                  i["gf"], i["gf"]))
    heap = mc.least(cands)
    free = mc.free_or_new(heap, s["n"], s["budget"])
    wide = lambda stamp, k: z3.Concat(stamp, k)                               # noqa: E731
    cands = [(z3.And(s[f"L{k}"], mc.lru_current(e, e.stamp)), wide(e.stamp, slot(k)), slot(k))
             for k, e in enumerate(table)]
    cands.append((z3.And(exists(i["gl"]), mc.lru_current(mc._get(table, i["gl"]), i["gl_stamp"])),
                  wide(i["gl_stamp"], i["gl"]), i["gl"]))
    victim = mc.least(cands)
    # the engine reads the free heap and the LRU heap only on a miss
    return (hit, mc.Found(z3.And(z3.Not(hit.found), free.found), free.slot),
            mc.Found(z3.And(z3.Not(hit.found), victim.found), victim.slot))


def _filed(s, t, old: tuple, new: tuple, n_after) -> z3.BoolRef:
    """The index records after the engine stored ``new`` over ``old``."""
    facts = []
    for k, (o, e) in enumerate(zip(old, new)):
        changed = z3.Or(*[getattr(o, f) != getattr(e, f) for f in FIELDS])
        plan = mc.index_plan(o, e)
        kept_u = z3.And(s[f"U{k}"], z3.Not(plan.drop_usable), e.bucket == o.bucket)
        kept_l = z3.And(s[f"L{k}"], e.stamp == o.stamp, mc.evictable(e))
        facts += [t[f"U{k}"] == z3.If(changed, z3.Or(plan.add_usable, kept_u), s[f"U{k}"]),
                  t[f"F{k}"] == z3.If(changed, z3.Or(plan.push_free,
                                                     z3.And(s[f"F{k}"], z3.Not(e.valid))),
                                      s[f"F{k}"]),
                  t[f"L{k}"] == z3.If(changed, z3.Or(plan.push_lru, kept_l), s[f"L{k}"])]
    mapped = s["mapped"]
    for o, e in zip(old, new):
        mapped = z3.If(z3.Or(*[getattr(o, f) != getattr(e, f) for f in FIELDS]),
                       mc.mapped_after(mapped, o, e), mapped)
    return z3.And(*facts, t["n"] == n_after, t["mapped"] == mapped)


def _engine_step(s, i, t) -> z3.BoolRef:
    """The engine's operation (state ``t``), with its inputs."""
    table, act = _table(s), i["act"]
    fixed = z3.And(t["budget"] == s["budget"])
    now = s["clock"] + 1
    hit, free, victim = _reads(s, i, i["bucket"])
    got = mc.map_indexed(lambda k: mc._get(table, k), hit, free, victim, i["bucket"], i["gen"],
                         z3.ZeroExt(mc.BUCKET_BITS - mc.LOCK_BITS, s["budget"]), s["mapped"],
                         now)
    mapped = table
    for present, k, e in got.writes:
        mapped = mc._put(mapped, k, e, present)
    appended = z3.And(z3.Not(hit.found), free.found, free.slot == s["n"])
    do_map = z3.And(_is(t, mapped), t["clock"] == now,
                    _filed(s, t, table, mapped, z3.If(appended, s["n"] + 1, s["n"])))
    e = _entry(s, i["slot"])
    can_lock = z3.And(_slot_ok(s, i["slot"]), e.valid, z3.Not(e.stale), e.locks != 0xFF)
    can_unlock = z3.And(_slot_ok(s, i["slot"]), e.locks != 0)
    locked = mc._put(table, i["slot"], mc.lock((e,), 0)[0])
    unlocked = mc._put(table, i["slot"], mc.unlock((e,), 0)[0])
    gone = tuple(mc._pick(mc.invalidated(x, i["bucket"], i["count"]),
                       mc.invalidate((x,), i["bucket"], i["count"])[0], x) for x in table)
    same = z3.And(t["clock"] == s["clock"])
    return z3.And(fixed, z3.Or(
        z3.And(act == A["map"], do_map),
        z3.And(act == A["lock"], can_lock, _is(t, locked), same, _filed(s, t, table, locked,
                                                                        s["n"])),
        z3.And(act == A["unlock"], can_unlock, _is(t, unlocked), same,
               _filed(s, t, table, unlocked, s["n"])),
        z3.And(act == A["invalidate"], _is(t, gone), same, _filed(s, t, table, gone, s["n"]))))


def _engine_prop(s, i, t) -> z3.BoolRef:
    """The engine's table after the step is the whole-table functions'; a
    map's outcome (ok, hit, slot, eviction and the bucket evicted) is theirs."""
    table, act = _table(s), i["act"]
    whole = mc.map_bucket(table, i["bucket"], i["gen"], s["budget"], s["clock"] + 1)
    hit, free, victim = _reads(s, i, i["bucket"])
    got = mc.map_indexed(lambda k: mc._get(table, k), hit, free, victim, i["bucket"], i["gen"],
                         z3.ZeroExt(mc.BUCKET_BITS - mc.LOCK_BITS, s["budget"]), s["mapped"],
                         s["clock"] + 1)
    outcome = z3.And(got.ok == whole.ok, got.hit == whole.hit, got.evicted == whole.evicted,
                     z3.Implies(whole.ok, got.slot == whole.slot),
                     z3.Implies(whole.evicted, got.victim == whole.victim))
    expected = z3.If(act == A["map"], _is(t, whole.table),
                     z3.If(act == A["lock"], _is(t, mc.lock(table, i["slot"])),
                           z3.If(act == A["unlock"], _is(t, mc.unlock(table, i["slot"])),
                                 _is(t, mc.invalidate(table, i["bucket"], i["count"])))))
    return z3.And(expected, z3.Implies(act == A["map"], outcome))


def _engine_init(s) -> z3.BoolRef:
    return z3.And(z3.UGE(s["budget"], 1), z3.ULE(s["budget"], ENGINE_SLOTS), s["n"] == 0,
                  s["mapped"] == 0, *[_is_empty(s, k) for k in range(ENGINE_SLOTS)])


def _is_empty(s, k: int) -> z3.BoolRef:
    return z3.And(*[s[f"{f}{k}"] == getattr(mc.EMPTY, f) for f in FIELDS])


def _engine_invariant(s) -> z3.BoolRef:
    facts = [z3.UGE(s["budget"], 1), z3.ULE(s["budget"], ENGINE_SLOTS),
             z3.ULE(s["n"], s["budget"]),
             z3.BV2Int(s["mapped"]) == _mapped(s)]
    for k, e in enumerate(_table(s)):
        exists = z3.ULT(k, s["n"])
        facts += [z3.Implies(z3.Not(exists), _is_empty(s, k)),
                  z3.Implies(e.locks != 0, e.valid),
                  z3.Implies(e.stale, z3.And(e.valid, e.locks != 0)),
                  z3.Implies(mc.usable(e, e.bucket), s[f"U{k}"]),
                  z3.Implies(z3.And(exists, z3.Not(e.valid)), s[f"F{k}"]),
                  z3.Implies(mc.evictable(e), s[f"L{k}"])]
    return z3.And(facts)


def _describe_engine(v: dict) -> str:
    text = _describe_state(dict(v, K=0, genK=0)).split(": ", 1)[1]
    files = " ".join("".join(key for key in EKEYS if v[f"{key}{k}"]) or "-"
                     for k in range(ENGINE_SLOTS))
    return f"budget {v['budget']}, {v['n']} entries {text} records {files}"


def _describe_engine_input(v: dict) -> str:
    text = _describe_input(v)
    if v["act"] == A["map"]:
        text += (f" [old records: b{v['gu_bucket']:#x}@{v['gu']}, free {v['gf']}, "
                 f"lru {v['gl_stamp']}@{v['gl']}]")
    return text


def _engine_evicts(s, i, t) -> z3.BoolRef:
    """A full-budget miss that evicts, with the whole budget of two or more
    windows made."""
    whole = mc.map_bucket(_table(s), i["bucket"], i["gen"], s["budget"], s["clock"] + 1)
    return z3.And(i["act"] == A["map"], whole.evicted, z3.UGE(s["budget"], 2))


def _engine_reuses(s, i, t) -> z3.BoolRef:
    """A miss that takes an entry made before and freed since (from the free
    heap, not appended)."""
    whole = mc.map_bucket(_table(s), i["bucket"], i["gen"], s["budget"], s["clock"] + 1)
    return z3.And(i["act"] == A["map"], z3.Not(whole.hit), z3.Not(whole.evicted), whole.ok,
                  z3.ULT(whole.slot, s["n"]))


def engine_system() -> TransitionSystem:
    """The run-time cache (its slices, index records and heaps) does what the
    whole-table functions do."""
    return TransitionSystem("mapcache.engine", _engine_vars(), _engine_inputs(), _engine_init,
                            _engine_step, _engine_invariant, _engine_prop, _describe_engine,
                            _describe_engine_input, depth=3,
                            cases=lambda i: [i["act"] == A["map"]],
                            witnesses=(("a full-budget miss that evicts", _engine_evicts),
                                       ("a miss that reuses a freed entry", _engine_reuses)))


# --- the budget within qemu-dm's address space -------------------------------------------
#
# ``mapcache.address_space``: a budget the spec accepts (Mapcache's
# :func:`~spec.mapcache.budget_fits` with the platform's footprint and
# address space for the word size) bounds the mapped bytes so that they and
# qemu-dm's own footprint stay inside the process. State: the word size (32
# or 64), the budget in bytes, the windows mapped. Steps: a miss maps one
# more window when the budget's windows (budget >> bucket shift, what
# :func:`~spec.mapcache.room` is given) have room, or a window goes. The
# bytes are compared in 128-bit words, so nothing in the property can wrap.

W = 64


def _space_vars() -> dict:
    return {"bits32": lambda n: z3.Bool(n), "budget": lambda n: z3.BitVec(n, W),
            "mapped": lambda n: z3.BitVec(n, W)}


def _space_inputs() -> dict:
    return {"map": lambda n: z3.Bool(n)}


def _by_bits(s, table: dict) -> z3.BitVecRef:
    return z3.If(s["bits32"], z3.BitVecVal(table[32], W), z3.BitVecVal(table[64], W))


def _windows(s) -> z3.BitVecRef:
    return mc.windows_of(s["budget"], mc.bucket_shift(s["bits32"]))


def _accepted(s) -> z3.BoolRef:
    return mc.budget_fits(s["budget"], _by_bits(s, platform.DM_FOOTPRINT),
                          _by_bits(s, platform.DM_ADDRESS_SPACE))


def _space_init(s) -> z3.BoolRef:
    # every count from 0 to the budget's windows is reached by that many
    # misses in a row; starting anywhere there lets the search find, in one
    # step, what a run of millions of misses would reach
    return z3.And(_accepted(s), z3.ULE(s["mapped"], _windows(s)))


def _space_step(s, i, t) -> z3.BoolRef:
    same = z3.And(t["bits32"] == s["bits32"], t["budget"] == s["budget"])
    grow = z3.And(i["map"], z3.ULT(s["mapped"], _windows(s)), t["mapped"] == s["mapped"] + 1)
    shrink = z3.And(z3.Not(i["map"]), z3.UGT(s["mapped"], 0), t["mapped"] == s["mapped"] - 1)
    return z3.And(same, z3.Or(grow, shrink))


def _space_invariant(s) -> z3.BoolRef:
    return z3.And(_accepted(s), z3.ULE(s["mapped"], _windows(s)))


def _space_property(s, i, t) -> z3.BoolRef:
    def wide(table: dict) -> z3.BitVecRef:       # 128 bits: no sum below can wrap
        return z3.ZeroExt(W, _by_bits(t, table))
    mapped_bytes = z3.ZeroExt(W, t["mapped"]) << z3.ZeroExt(W, mc.bucket_shift(t["bits32"]))
    return z3.ULE(mapped_bytes + wide(platform.DM_FOOTPRINT), wide(platform.DM_ADDRESS_SPACE))


def _describe_space(v: dict) -> str:
    bits = 32 if v["bits32"] else 64
    return (f"{bits}-bit qemu-dm, budget {v['budget'] >> 20} MiB, "
            f"{v['mapped']} windows mapped")


def address_space_system() -> TransitionSystem:
    """A budget qemu-dm accepts keeps its mapped bytes plus its own footprint
    inside its address space (3 GiB for a 32-bit qemu-dm)."""
    return TransitionSystem("mapcache.address_space", _space_vars(), _space_inputs(),
                            _space_init, _space_step, _space_invariant, _space_property,
                            _describe_space, lambda v: "map" if v["map"] else "unmap",
                            depth=2, witnesses=(("a 32-bit qemu-dm's largest budget filled",
                                                 _fills_largest_budget),))


def _fills_largest_budget(s, i, t) -> z3.BoolRef:
    largest = platform.DM_ADDRESS_SPACE[32] - platform.DM_FOOTPRINT[32]
    return z3.And(s["bits32"], s["budget"] == largest, i["map"], t["mapped"] == _windows(t))


# --- buckets, bytes and what qemu-dm accepts: function-level checks ------------------------
#
# The run-time cache turns addresses into buckets and budgets into windows
# with :func:`~spec.mapcache.bucket_span`, :func:`~spec.mapcache.nth_bucket`,
# :func:`~spec.mapcache.bucket_address`, :func:`~spec.mapcache.windows_of`
# and :func:`~spec.mapcache.bucket_shift`, and decides what it accepts with
# :func:`~spec.mapcache.budget_fits` and :func:`~spec.mapcache.legacy_fits`.
# Each claim below holds for every value of its words (one query for its
# negation, :func:`proofs.kinduction.valid`); 128-bit words where a sum or
# a shift could wrap.

X = 128


def _x(v) -> z3.BitVecRef:
    """A 64-bit word (or a Python int) widened to 128 bits."""
    return z3.ZeroExt(X - 64, v) if isinstance(v, z3.BitVecRef) else z3.BitVecVal(v, X)


def _floor_of(q, n, shift) -> z3.BoolRef:
    """``q`` is ``n`` divided by 2^``shift``, rounded down (128-bit words)."""
    return z3.And(z3.ULE(_x(q) << _x(shift), _x(n)), z3.ULT(_x(n), (_x(q) + 1) << _x(shift)))


def _claims(claims: list[tuple[str, z3.BoolRef]], assumptions=()) -> Outcome:
    started = time.perf_counter()
    outcome = Outcome("proved", 0.0, detail="valid")
    for what, claim in claims:
        outcome = valid(claim, started, lambda m, what=what: [f"not so: {what}", _model(m)],
                        *assumptions)
        if outcome.result != "proved":
            outcome.detail = f"{what}: {outcome.detail}"
            break
    return outcome


def _model(m: z3.ModelRef) -> str:
    shown = [f"{d.name()}={m[d]}" for d in sorted(m.decls(), key=lambda d: d.name())]
    return "for " + (", ".join(shown) if shown else "any values")


def span_rule() -> Outcome:
    """mapcache.span: for 64 KiB and 1 MiB buckets and any 64-bit address
    and length (up to 2^64 less a bucket), the buckets
    :func:`~spec.mapcache.bucket_span` gives (through
    :func:`~spec.mapcache.nth_bucket`) are exactly those the bytes touch:
    every byte's bucket is one of them, and each of them holds a byte of
    the access (an access of no bytes is one byte; past 2^64 it goes on at
    address 0). :func:`~spec.mapcache.bucket_address` of a bucket is its
    first byte, the bytes of that many buckets."""
    claims = []
    gpa, length, n = (z3.BitVec(name, 64) for name in ("gpa", "length", "n"))
    for bits in (32, 64):
        shift = mc.bucket_shift(bits == 32)
        first, count = mc.bucket_span(gpa, length, shift)
        size = z3.If(length == 0, z3.BitVecVal(1, 64), length)
        fits = z3.ULE(length, z3.BitVecVal((1 << 64) - (1 << shift), 64))
        # the access is contiguous (and, up to 2^64 less a bucket long, never
        # comes back into its first bucket from below), so the buckets it
        # touches are those from its first byte's to its last byte's, counted
        # modulo the space's buckets: the span is exactly they when it starts
        # at the first, ends at the last and has no more buckets than the space
        claims.append((f"the span runs from the first byte's bucket to the last byte's, "
                       f"no more ({bits}-bit)",
                       z3.Implies(fits, z3.And(
                           first == z3.LShR(gpa, shift),
                           z3.ULE(count, 1 << (64 - shift)), count != 0,
                           mc.nth_bucket(first, count - 1, shift)
                           == z3.LShR(gpa + size - 1, shift)))))
        claims.append((f"bucket n starts at n << {shift}, the bytes of n buckets",
                       z3.Implies(z3.ULT(n, 1 << (64 - shift)),
                                  _x(mc.bucket_address(n, shift)) == _x(n) << shift)))
    return _claims(claims)


def locking_rule() -> Outcome:
    """mapcache.locking: an access's lock is given back. On a table of two
    windows of any contents and either slot, :func:`~spec.mapcache.unlock`
    after :func:`~spec.mapcache.lock` gives the table back (below the lock
    count's limit, and unless it is the last lock of a stale window); an
    unlock takes exactly one lock and changes no other window and no other
    field, except that a stale window whose last lock goes is unmapped (and
    no longer stale); an unlock of an unlocked window that is not stale
    changes nothing. The safety proofs cannot see a lock that is never
    given back (a window that stays locked is still never evicted): this is
    the liveness they leave out."""
    widths = {"valid": None, "bucket": mc.BUCKET_BITS, "gen": mc.GEN_BITS,
              "locks": mc.LOCK_BITS, "stale": None, "stamp": mc.STAMP_BITS}
    table = tuple(mc.Entry(*(z3.Bool(f"{f}{i}") if w is None else z3.BitVec(f"{f}{i}", w)
                             for f, w in widths.items())) for i in range(2))
    slot = z3.BitVec("slot", mc.LOCK_BITS)
    picked = slot == 1
    e = mc._get(table, slot)
    after = mc.unlock(table, slot)
    u = mc._get(after, slot)
    untouched = z3.And(*[z3.If(picked, getattr(after[0], f) == getattr(table[0], f),
                               getattr(after[1], f) == getattr(table[1], f))
                         for f in widths])
    gone = z3.And(e.stale, e.locks == 1)
    held = z3.And(*[getattr(u, f) == getattr(e, f) for f in ("bucket", "gen", "stamp")])
    same = z3.And(*[getattr(a, f) == getattr(b, f) for a, b in zip(table, after)
                    for f in widths])
    back = mc.unlock(mc.lock(table, slot), slot)
    claims = [
        ("unlock(lock(t)) is t", z3.Implies(z3.And(
            e.locks != (1 << mc.LOCK_BITS) - 1, z3.Or(z3.Not(e.stale), e.locks != 0)), z3.And(
            *[getattr(a, f) == getattr(b, f) for a, b in zip(table, back) for f in widths]))),
        ("an unlock takes exactly one lock", z3.Implies(
            e.locks != 0, z3.And(u.locks == e.locks - 1, held, untouched))),
        ("a stale window's last unlock unmaps it",
         z3.Implies(e.locks != 0, z3.And(u.valid == z3.And(e.valid, z3.Not(gone)),
                                         u.stale == z3.And(e.stale, z3.Not(gone))))),
        ("an unlock of an unlocked window changes nothing",
         z3.Implies(z3.And(e.locks == 0, z3.Not(e.stale)), same)),
    ]
    return _claims(claims, [z3.ULT(slot, 2)])


#: guest memory sizes whose RAM ``ram_buckets`` is checked against (below
#: the VGA hole's end, below and above the MMIO hole, not bucket-aligned)
RAM_SIZES = (1 << 20, 16 << 20, (1 << 30) + (4 << 10), 3 << 30, 6 << 30)


def geometry_rule() -> Outcome:
    """mapcache.geometry: a 32-bit qemu-dm has 64 KiB buckets and a 64-bit
    one 1 MiB (:func:`~spec.mapcache.bucket_shift`, Xen 3.0.4's
    ``xen-mapcache`` patch); for any 64-bit budget and guest size, a budget
    holds as windows (:func:`~spec.mapcache.windows_of`) the whole buckets
    it holds; :func:`~spec.mapcache.budget_fits` accepts exactly the budgets
    up to :func:`~spec.mapcache.max_budget`, the address space less
    qemu-dm's footprint (the number the refusal names); map-everything mode
    (:func:`~spec.mapcache.legacy_fits`) exactly the guests the budget
    holds; messages name bytes in whole MiB and KiB rounded down
    (:func:`~spec.mapcache.mib`, :func:`~spec.mapcache.kib`); and the
    invalidation of everything (``Mapcache.ram_buckets``) reaches every
    byte of the guest's RAM and no bucket past it, for guests of 1 MiB to
    6 GiB."""
    bits32 = z3.Bool("bits32")
    budget, memory, n = (z3.BitVec(name, 64) for name in ("budget", "memory", "n"))
    by_bits = lambda table: z3.If(bits32, z3.BitVecVal(table[32], 64),          # noqa: E731
                                  z3.BitVecVal(table[64], 64))
    shift = mc.bucket_shift(bits32)
    own, space = by_bits(platform.DM_FOOTPRINT), by_bits(platform.DM_ADDRESS_SPACE)
    windows = mc.windows_of(budget, shift)
    claims = [
        ("64 KiB buckets on 32-bit, 1 MiB on 64-bit",
         mc.bucket_address(1, shift) == z3.If(bits32, z3.BitVecVal(64 << 10, 64),
                                              z3.BitVecVal(1 << 20, 64))),
        ("the windows are the whole buckets the budget holds",
         _floor_of(windows, budget, shift)),
        ("the largest budget is the address space less the footprint",
         mc.max_budget(own, space) == space - own),
        ("a budget fits exactly when it is at most the largest",
         mc.budget_fits(budget, own, space) == z3.ULE(budget, space - own)),
        ("map-everything fits exactly the guests the budget holds",
         mc.legacy_fits(memory, budget) == z3.ULE(memory, budget)),
        ("MiB are whole and rounded down", _floor_of(mc.mib(n), n, 20)),
        ("KiB are whole and rounded down", _floor_of(mc.kib(n), n, 10)),
    ]
    a = z3.BitVec("address", 64)
    for bits in (32, 64):
        for size in RAM_SIZES:
            cache = mc.Mapcache(size, bits=bits, budget=1 << 20)
            first, count = cache.ram_buckets()
            top = platform.ram_ranges(size)[-1][1]
            ram = z3.Or(*[z3.And(z3.ULE(lo, a), z3.ULT(a, hi))
                          for lo, hi in platform.ram_ranges(size)])
            claims.append((f"a {size >> 20} MiB guest's RAM is all in ram_buckets ({bits}-bit)",
                           z3.Implies(ram, z3.ULT(z3.LShR(a, cache.shift) - first, count))))
            claims.append((f"ram_buckets of a {size >> 20} MiB guest ends with its RAM "
                           f"({bits}-bit)",
                           z3.BoolVal(first == 0 and first + count - 1
                                      == (top - 1) >> cache.shift)))
    return _claims(claims)


# --- mapcache.runtime: the run-time cache itself, on every short run -----------------------
#
# mapcache.engine proves the cache's decisions (map_indexed, index_plan, the
# index readers' least / free_or_new / lru_current, mapped_after) over a
# model of its heaps. The heaps themselves are Python lists (heapq) and the
# class's operations are Python around those functions: they cannot take Z3
# terms. This check runs the class itself (:class:`spec.mapcache.Mapcache`)
# on every run of a few operations over a small domain, beside the
# whole-table functions on a table of the budget's windows (which
# mapcache.budget, locked_kept, no_stale and lru prove), and compares after
# every operation what qemu-dm shows: the table, the slot a map gives or
# its refusal, the trace events, the statistics, the bytes mapped and the
# summary. It is exhaustive over its domain, not a proof for every run.

#: (windows, bits, buckets used, operations per run)
RUNS = ((1, 32, (0, 1, 2), 3), (2, 32, (0, 1, 2), 4), (3, 32, (0, 1, 2, 3), 3),
        (2, 64, (0, 1, 2), 2))
RUN_MEMORY = 16 << 20
#: longer runs beyond the exhaustive domain, each a case it cannot reach:
#: two windows freed together, then reused one after the other (the free
#: heap's top goes out of date while a later slot is still free); three
#: held windows invalidated, one of them already stale (the event counts
#: the two that become stale)
DIRECTED = ((3, 32, (("use", 0), ("use", 1), ("invalidate_all",), ("use", 2), ("use", 3),
                     ("use", 2))),
            (3, 32, (("hold", 0), ("invalidate_all",), ("hold", 1), ("hold", 2),
                     ("invalidate_all",), ("release",), ("release",), ("release",))))


class _Whole:
    """The whole-table functions on a table of the budget's windows, with
    the events and statistics qemu-dm reports (what the cache must give)."""

    def __init__(self, windows: int, shift: int, gens: dict) -> None:
        self.table, self.windows, self.shift, self.gens = (mc.EMPTY,) * windows, windows, \
            shift, gens
        self.clock = self.hits = self.misses = self.evictions = self.invalidations = 0
        self.peak, self.events = 0, []

    def mapped(self) -> int:
        return mc.bucket_address(mc.mapped_count(self.table), self.shift)

    def map(self, bucket: int) -> int | None:
        self.clock += 1
        r = mc.map_bucket(self.table, bucket, self.gens.get(bucket, 0), self.windows,
                          self.clock)
        if not r.ok:
            return None
        self.table = mc.lock(r.table, r.slot)
        if r.hit:
            self.hits += 1
        else:
            self.misses += 1
            self.evictions += bool(r.evicted)
            self.peak = max(self.peak, self.mapped())
            self.events.append(trace.MapcacheMiss(
                bucket=mc.bucket_address(bucket, self.shift),
                evicted=mc.bucket_address(r.victim, self.shift) if r.evicted else -1,
                mapped=self.mapped()))
        return r.slot

    def invalidate(self, first: int, count: int) -> None:
        before = sum(e.stale for e in self.table)
        self.table = mc.invalidate(self.table, first, count)
        self.invalidations += 1
        self.events.append(trace.MapcacheInvalidate(
            first=mc.bucket_address(first, self.shift), count=count,
            stale=sum(e.stale for e in self.table) - before, mapped=self.mapped()))

    def seen(self, budget: int) -> tuple:
        return (self.table, self.events, self.mapped(), trace.MapcacheStats(
            mode="mapcache", bucket_size=mc.bucket_address(1, self.shift), budget=budget,
            hits=self.hits, misses=self.misses, evictions=self.evictions,
            invalidations=self.invalidations, mapped=self.mapped(), peak=self.peak))


def _ops(buckets: tuple[int, ...]) -> list[tuple]:
    """A run's alphabet: an access that maps, locks, checks and unlocks a
    bucket; one that keeps its lock (a bucket's first); the end of the
    oldest held access; the guest giving bucket 1 back; the invalidation of
    everything."""
    return ([("use", b) for b in buckets] + [("hold", buckets[0]), ("release",),
                                            ("invalidate", 1, 1), ("invalidate_all",)])


class _Node:
    """One point of a run: the cache, the whole table, the p2m they share,
    the cache's events and the accesses still holding a lock."""

    def __init__(self, windows: int, bits: int) -> None:
        self.windows, self.shift = windows, mc.bucket_shift(bits == 32)
        self.gens: dict[int, int] = {}
        self.events: list = []
        self.cache = mc.Mapcache(RUN_MEMORY, bits=bits,
                                 budget=mc.bucket_address(windows, self.shift))
        self.whole, self.held = _Whole(windows, self.shift, self.gens), []
        self._wire()

    def _wire(self) -> None:
        gens, shift = self.gens, self.shift
        self.cache.emit = self.events.append
        self.cache.frames = lambda gpa, length: gens.get(gpa >> shift, 0)
        self.whole.gens = gens

    def fork(self) -> "_Node":
        other = copy.copy(self)
        other.gens, other.events, other.held = dict(self.gens), list(self.events), \
            list(self.held)
        other.cache = copy.deepcopy(self.cache)
        other.whole = copy.copy(self.whole)
        other.whole.events = list(self.whole.events)
        other._wire()
        return other

    def step(self, op: tuple) -> str:
        """Do ``op`` on both; "" or what differs."""
        cache, whole = self.cache, self.whole
        if op[0] in ("use", "hold"):
            want = whole.map(op[1])
            try:
                slot, _result = cache.map(op[1])
            except mc.MapcacheFull:
                slot = None
            if slot != want:
                return f"map b{op[1]} gave slot {slot}, the whole table {want}"
            if slot is not None:
                cache.lock(slot)
                cache.check(op[1])
                if op[0] == "use":
                    cache.unlock(slot)
                    whole.table = mc.unlock(whole.table, slot)
                else:
                    self.held.append(slot)
        elif op[0] == "release" and self.held:
            slot = self.held.pop(0)
            cache.unlock(slot)
            whole.table = mc.unlock(whole.table, slot)
        elif op[0] in ("invalidate", "invalidate_all"):
            first, count = op[1:] if op[0] == "invalidate" else cache.ram_buckets()
            for b in range(first, min(first + count, 8)):
                self.gens[b] = self.gens.get(b, 0) + 1
            whole.invalidate(first, count)
            if op[0] == "invalidate":
                cache.invalidate(first, count)
            else:
                cache.invalidate_all()
        table = cache.table + (mc.EMPTY,) * (self.windows - len(cache.table))
        got = (table, self.events, cache.mapped_bytes(), cache.summary())
        for what, a, b in zip(("table", "events", "bytes mapped", "summary"), got,
                              whole.seen(cache.budget)):
            if a != b:
                return f"the cache's {what} {a} is not the whole table's {b}"
        return ""


def _directed(node: _Node, ops: tuple) -> list[str]:
    """One given run from ``node``: the run up to where it differs, or []."""
    for n, op in enumerate(ops):
        try:
            wrong = node.step(op)
        except (AssertionError, IndexError, KeyError, ValueError) as exc:
            wrong = f"the cache raised {type(exc).__name__}: {exc}"
        if wrong:
            return [", ".join(" ".join(map(str, o)) for o in ops[:n + 1]), wrong]
    return []


def _explore(node: _Node, ops: list, depth: int, path: tuple) -> tuple[int, list[str]]:
    """Every run of up to ``depth`` more operations from ``node``: (runs,
    the first run that differs, or [])."""
    runs = 0
    for op in ops:
        child = node.fork()
        try:
            wrong = child.step(op)
        except (AssertionError, IndexError, KeyError, ValueError) as exc:
            wrong = f"the cache raised {type(exc).__name__}: {exc}"
        here = path + (op,)
        if wrong:
            return runs + 1, [", ".join(" ".join(map(str, o)) for o in here), wrong]
        if depth > 1:
            more, bad = _explore(child, ops, depth - 1, here)
            runs += more
            if bad:
                return runs, bad
        else:
            runs += 1
    return runs, []


def _legacy_run() -> str:
    """Map-everything mode: every access hits, nothing is locked or dropped,
    all the guest's memory is mapped."""
    events: list = []
    cache = mc.Mapcache(RUN_MEMORY, legacy=True, emit=events.append)        # 32-bit
    slot, result = cache.map(5)
    cache.lock(slot)
    cache.check(5)
    cache.unlock(slot)
    cache.invalidate(0, 2)
    want = ((5, None), [trace.MapcacheInvalidate(first=0, count=2, stale=0, mapped=RUN_MEMORY)],
            (), trace.MapcacheStats(mode="map-everything", bucket_size=64 << 10,
                                    budget=platform.MAPCACHE_DEFAULT_BUDGET[32], hits=1,
                                    misses=0, evictions=0, invalidations=1,
                                    mapped=RUN_MEMORY, peak=RUN_MEMORY))
    got = ((slot, result), events, cache.table, cache.summary())
    return "" if got == want else f"map-everything mode gave {got}, not {want}"


def runtime_rule() -> Outcome:
    """mapcache.runtime: the run-time :class:`~spec.mapcache.Mapcache` (its
    heaps and index sets, its statistics and events) gives what the
    whole-table functions give, after every operation of every run of up
    to four accesses, ends of accesses and invalidations over three or four
    buckets, with budgets of one to three windows, 32- and 64-bit; and
    map-everything mode maps everything; and the longer runs of
    :data:`DIRECTED`, cases that domain cannot reach. Exhaustive over that
    domain (a bounded check: the heaps are Python, not Z3 terms)."""
    started = time.perf_counter()
    runs = 0
    for windows, bits, buckets, length in RUNS:
        more, bad = _explore(_Node(windows, bits), _ops(buckets), length, ())
        runs += more
        if bad:
            return Outcome("counterexample", time.perf_counter() - started,
                           [f"{bits}-bit qemu-dm, {windows} windows: {bad[0]}", bad[1]])
    for windows, bits, ops in DIRECTED:
        bad = _directed(_Node(windows, bits), ops)
        runs += 1
        if bad:
            return Outcome("counterexample", time.perf_counter() - started,
                           [f"{bits}-bit qemu-dm, {windows} windows: {bad[0]}", bad[1]])
    wrong = _legacy_run()
    if wrong:
        return Outcome("counterexample", time.perf_counter() - started, [wrong])
    return Outcome("proved", time.perf_counter() - started,
                   detail=f"every one of {runs} runs (bounded)")


# --- mutants: the spec with one function replaced ------------------------------------

_real_room = mc.room
_real_invalidate = mc.invalidate


def _room_off_by_one(table, budget_buckets):
    """The budget check lets one more window in than the budget holds."""
    return bv.not_(bv.ult(budget_buckets, mc.mapped_count(table)))


def _evict_locked(e: mc.Entry):
    """Eviction may take any mapped window, locked or not."""
    return e.valid


def _invalidate_forgets_last(table, first, count):
    """Invalidation drops the mappings of all but the last bucket given back."""
    return _real_invalidate(table, first, bv.ite(bv.eq(count, 0), count,
                                                 bv.sub(count, 1, mc.BUCKET_BITS)))


def _fits_forgets_footprint(budget, footprint, space):
    """The budget is checked against the whole address space, as if qemu-dm
    took none of it itself."""
    return bv.not_(bv.ult(space, budget))


def _fits_wraps(budget, footprint, space):
    """Budget and footprint are added in a 64-bit word before the
    comparison: a budget near 2^64 wraps around and is accepted."""
    return bv.not_(bv.ult(space, bv.add(budget, footprint, 64)))


def _src(name: str, function: str, old: str, new: str, doc: str):
    """A mutant: the spec's ``function`` with one line of its code changed."""
    return (name, function, source_mutant(mc, function, old, new, doc))


def _ram_below_4g(self):
    """The invalidation of everything reaches the RAM below the MMIO hole
    only: a guest's memory above 4 GiB keeps its mappings."""
    return mc.bucket_span(0, platform.ram_ranges(self.memory_bytes)[1][1], self.shift)


def _windows_round_up(budget, shift):
    """The budget's windows rounded up: a budget that is not a whole number
    of buckets gets one window more than it holds."""
    return bv.lshr(bv.add(budget, bv.sub(bv.shl(1, shift, 64), 1, 64), 64), shift, 64)


def _lru_reader_trusts_top(self):
    """The run-time LRU heap's reader takes its least record without
    checking it still names an evictable window last used at that stamp."""
    return mc.Found(bool(self._lru), self._lru[0][1] if self._lru else 0)


def _store_never_frees(self, slot, new):
    """The run-time store files no slot in the free heap: a window an
    invalidation drops is never mapped again while the budget's windows are
    all made."""
    old = self.entries[slot]
    plan = mc.index_plan(old, new)
    if plan.drop_usable:
        self._usable.get(old.bucket, set()).discard(slot)
    self._mapped = mc.mapped_after(self._mapped, old, new)
    self.entries[slot] = new
    if plan.add_usable:
        self._usable.setdefault(new.bucket, set()).add(slot)
    if plan.push_lru:
        heapq.heappush(self._lru, (new.stamp, slot))


#: (check name, system factory, [(mutant name, spec function replaced, replacement)])
CHECKS = [
    ("mapcache.budget", budget_system, [("room_off_by_one", "room", _room_off_by_one)]),
    ("mapcache.locked_kept", locked_system, [("evict_locked", "evictable", _evict_locked)]),
    ("mapcache.no_stale", stale_system,
     [("invalidate_forgets_last", "invalidate", _invalidate_forgets_last)]),
    ("mapcache.lru", lru_system,
     [_src("lru_evicts_mru", "lru_victim",
           "better = bv.and_(evictable(e), bv.or_(bv.not_(found), bv.ult(e.stamp, oldest)))",
           "better = bv.and_(evictable(e), bv.or_(bv.not_(found), bv.ult(oldest, e.stamp)))",
           "The victim search keeps the most recently used window."),
      _src("victim_ignores_lock", "lru_victim",
           "better = bv.and_(evictable(e), bv.or_(bv.not_(found), bv.ult(e.stamp, oldest)))",
           "better = bv.and_(e.valid, bv.or_(bv.not_(found), bv.ult(e.stamp, oldest)))",
           "The victim search considers locked windows too.")]),
    ("mapcache.invalidate", invalidate_system,
     [_src("invalidate_off_by_one", "invalidated",
           "return bv.and_(e.valid, bv.ult(bv.sub(e.bucket, first, BUCKET_BITS), count))",
           "return bv.and_(e.valid, bv.not_(bv.ult(count, bv.sub(e.bucket, first, "
           "BUCKET_BITS))))",
           "The run-time invalidation reaches buckets first .. first + count: one "
           "more than was given back."),
      _src("invalidate_misses_last", "invalidated",
           "return bv.and_(e.valid, bv.ult(bv.sub(e.bucket, first, BUCKET_BITS), count))",
           "return bv.and_(e.valid, bv.ult(bv.add(bv.sub(e.bucket, first, BUCKET_BITS), 1, "
           "BUCKET_BITS), count))",
           "The run-time invalidation misses the last bucket of the range.")]),
    ("mapcache.engine", engine_system,
     [_src("heap_not_refreshed", "index_plan",
           "bv.not_(bv.and_(evictable(old), bv.eq(old.stamp, new.stamp)))))",
           "bv.not_(old.valid)))",
           "The LRU heap is told of a window only when it is mapped: a hit's new stamp "
           "and an unlock never reach it."),
      _src("lru_reader_ignores_stamp", "lru_current",
           "return bv.and_(evictable(e), bv.eq(e.stamp, stamp))", "return evictable(e)",
           "The LRU heap's reader takes a record of an evictable window without "
           "checking its stamp: a window used since is evicted by its old stamp."),
      _src("slice_budget_forgets_its_own", "map_indexed",
           "budget = bv.ite(has_room, bv.add(count, 1, LOCK_BITS), count)",
           "budget = bv.trunc(bv.sub(windows, mapped, BUCKET_BITS), LOCK_BITS)",
           "The slice's budget is the budget less the windows mapped, forgetting that "
           "the slice's own entries are among them."),
      _src("slice_slot_off_by_one", "map_indexed",
           "slot = bv.ite(bv.eq(r.slot, bv.const(0, LOCK_BITS, r.slot)), first.slot, "
           "second.slot)",
           "slot = bv.ite(bv.eq(r.slot, bv.const(1, LOCK_BITS, r.slot)), first.slot, "
           "second.slot)",
           "The slice's slot mapped back to the table's by the wrong place."),
      _src("free_filed_on_last_unlock_only", "index_plan",
           "bv.and_(old.valid, bv.not_(new.valid)),",
           "bv.and_(old.stale, bv.not_(new.valid)),",
           "A slot is filed as free only when a stale window goes with its last lock: "
           "one an invalidation unmaps is never reused."),
      _src("usable_filed_on_fresh_only", "index_plan",
           "return IndexPlan(usable(old, old.bucket), usable(new, new.bucket),",
           "return IndexPlan(usable(old, old.bucket), bv.and_(usable(new, new.bucket), "
           "bv.not_(old.valid)),",
           "A window mapped over an evicted one is not filed under its new bucket.")]),
    ("mapcache.address_space", address_space_system,
     [("fits_forgets_footprint", "budget_fits", _fits_forgets_footprint),
      ("fits_wraps", "budget_fits", _fits_wraps)]),
    ("mapcache.locking", locking_rule,
     [_src("unlock_keeps_count", "unlock",
           "locks = bv.ite(bv.is_zero(e.locks, LOCK_BITS), e.locks, bv.sub(e.locks, 1, LOCK_BITS))",
           "locks = e.locks",
           "An unlock that forgets to take its lock: the window stays locked for ever, "
           "which no safety proof sees (it is never evicted)."),
      _src("unlock_below_zero", "unlock",
           "locks = bv.ite(bv.is_zero(e.locks, LOCK_BITS), e.locks, bv.sub(e.locks, 1, LOCK_BITS))",
           "locks = bv.sub(e.locks, 1, LOCK_BITS)",
           "An unlock of an unlocked window wraps its count to 255 locks."),
      _src("unlock_unmaps_fresh", "unlock",
           "gone = bv.and_(e.stale, bv.is_zero(locks, LOCK_BITS))",
           "gone = bv.is_zero(locks, LOCK_BITS)",
           "The last unlock unmaps every window, not only a stale one: the cache "
           "forgets what it just mapped.")]),
    ("mapcache.span", span_rule,
     [_src("span_one_too_many", "bucket_span",
           "last = bv.add(gpa, bv.sub(bv.ite(bv.is_zero(length, 64), 1, length), 1, 64), 64)",
           "last = bv.add(gpa, bv.ite(bv.is_zero(length, 64), 1, length), 64)",
           "The span's last bucket is that of the byte after the access: an access "
           "that ends at a bucket's end maps one bucket more."),
      _src("span_ignores_wrap", "bucket_span",
           "between = bv.band(bv.sub(bv.lshr(last, shift, 64), first, 64), buckets, 64)",
           "between = bv.sub(bv.lshr(last, shift, 64), first, 64)",
           "The span counts buckets as 64-bit words: an access that runs past 2^64 "
           "gets a count of nearly 2^64 buckets."),
      _src("address_by_shift", "bucket_address",
           "return bv.shl(n, shift, 64)", "return bv.lshr(n, shift, 64)",
           "A bucket's address shifted the wrong way, as if bytes were turned into "
           "buckets.")]),
    ("mapcache.geometry", geometry_rule,
     [_src("shift_by_wrong_bitness", "bucket_shift",
           "return bv.ite(bits32, bv.const(platform.MAPCACHE_BUCKET_SHIFT[32], 64, bits32),",
           "return bv.ite(bv.not_(bits32), bv.const(platform.MAPCACHE_BUCKET_SHIFT[32], 64, "
           "bits32),",
           "The bucket size of the other word size: 1 MiB buckets for a 32-bit qemu-dm."),
      _src("fits_strict", "budget_fits",
           "return bv.not_(bv.ult(max_budget(footprint, space), budget))",
           "return bv.ult(budget, max_budget(footprint, space))",
           "The budget must be below the largest, not at most it: the 2304 MiB a 32-bit "
           "qemu-dm's refusal names is itself refused."),
      _src("largest_is_whole_space", "max_budget",
           "return bv.sub(space, footprint, 64)", "return space",
           "The largest budget forgets qemu-dm's own footprint (the refusal names 3072 MiB)."),
      _src("legacy_strict", "legacy_fits",
           "return bv.not_(bv.ult(budget, memory))", "return bv.ult(memory, budget)",
           "Map-everything mode refuses a guest exactly the budget's size."),
      _src("mib_by_1000", "mib", "return bv.lshr(n, 20, 64)", "return bv.lshr(n, 19, 64)",
           "Messages name bytes in units of 512 KiB as MiB."),
      ("windows_round_up", "windows_of", _windows_round_up),
      ("ram_below_4g", "Mapcache.ram_buckets", _ram_below_4g)]),
    ("mapcache.runtime", runtime_rule,
     [("lru_reader_trusts_top", "Mapcache._lru_victim", _lru_reader_trusts_top),
      ("store_never_frees", "Mapcache._store", _store_never_frees)]),
]


def run_check(factory, mutant: tuple[str, str, object] | None = None) -> Outcome:
    """A system (:func:`~proofs.kinduction.check_mutated`) or a function-level
    check (a factory that gives its :class:`Outcome`), with ``mutant``'s
    function (``name`` or ``Class.name`` of :mod:`spec.mapcache`) replaced."""
    with ExitStack() as stack:
        if mutant is not None:
            stack.enter_context(replaced(mc, mutant[1], mutant[2]))
        built = factory()
        if isinstance(built, Outcome):
            return built
        return check(dataclasses.replace(built, prove_first=mutant is None))
