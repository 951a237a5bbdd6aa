"""Proofs about XenStore: who may read and write what, quotas, and commits.

Room: two transition systems built from the spec's own rules
(:func:`spec.xenstore.perms.access`, :func:`~spec.xenstore.perms.allows`,
:func:`~spec.xenstore.perms.inherit`, :func:`~spec.xenstore.perms.may_set`,
:func:`spec.xenstore.watch.may_see`, :func:`spec.xenstore.quota.within`,
:func:`spec.xenstore.transaction.conflict_free`) called with Z3 terms, put
together in the order :mod:`spec.xenstore.store` applies them, the
properties checked on them, and the mutants that must break them. Imports
:mod:`spec.xenstore`, :mod:`proofs.kinduction`.

The store system
----------------

State: a node *P* that exists and a child slot *C* below it (present or
missing), each with a generation and a permission list of three symbolic
``(domid, permission)`` entries (16 and 8 bits: every permission byte, not
only the four letters; three entries also stand for shorter lists, as a
repeated entry or one naming the owner changes nothing); a tracked domain
*T* (any unprivileged domid, fixed for a run), the number of nodes charged
to it (``owned``, 32 bits: its nodes in the model and any number
elsewhere) and the node quota (any value, fixed for a run); and one
transaction, of any domain: its snapshot (each node's generation then,
:data:`~spec.xenstore.transaction.ABSENT` if missing), its view (the
snapshot plus its own changes: each node's presence and list), which nodes
it accessed and wrote (the :class:`~spec.xenstore.transaction.Access`
records; every access is ``read``, as :meth:`Store.get
<spec.xenstore.store.Store.get>` records it) and its view of *T*'s count.
The lists start arbitrary, so *P* is any node and *C* any child of it.
Each step, a connection of any domain (dom0's is the tools, privileged, as
``Connection.privileged`` says) does one of:

``read N``
    ``XS_READ``, ``XS_DIRECTORY`` or ``XS_GET_PERMS`` of either node: the
    value (or list of children, or permissions) if
    :func:`~spec.xenstore.perms.allows` grants read; for a missing *C*,
    ``ENOENT`` if :func:`~spec.xenstore.perms.access` on *P* has read
    (``get_node``), else ``EACCES``;
``write N``
    ``XS_WRITE`` of an existing node (needs write);
``create C``
    ``XS_WRITE`` or ``XS_MKDIR`` of the missing child: needs write on *P*
    and the creator's count within its quota
    (:func:`~spec.xenstore.quota.within`; *T*'s count if the creator is
    *T*, any count otherwise); the node's list is
    :func:`~spec.xenstore.perms.inherit` of *P*'s, and the node is charged
    to that list's owner;
``rm C``
    ``XS_RM`` of the existing child (needs write on it);
``set_perms N``
    ``XS_SET_PERMS`` with any new list of letters (needs write and
    ownership, and :func:`~spec.xenstore.perms.may_set`); the node is
    charged to the new owner;
``create elsewhere``
    a creation outside the model, below a parent with any list, by the
    rules of ``create`` (so *T*'s count also grows by nodes elsewhere);
``tx_start``, ``tx_read N``, ``tx_write N``, ``tx_create C``
    the transaction starts (a snapshot; an earlier one is dropped), or
    operates on its view by the same rules, as its domain, recording what
    it accessed and wrote;
``tx_commit``
    ``XS_TRANSACTION_END`` with ``T``:
    :func:`~spec.xenstore.transaction.conflict_free` over the access
    records and the generations now, then the node quota on the counts now
    of each domain the commit charges more (*T*'s here; any other domain's
    may refuse the commit, an input), then the written nodes become the
    store's. Either way the transaction ends.

Every change (write, create, rm, set_perms) fires a watch event for the
node, delivered to a watcher of any domain (an input) if
:func:`~spec.xenstore.watch.may_see` allows, with the lists the store
passes (the node's, its parent's, and for a permission change the old
one; *P*'s parent's is any list). Each change takes a new generation
(:func:`_fresh_ok`), and no domain owns 2**31 nodes.

Properties, each checked by induction for runs of any length, against the
rule as Xen documents it (``perm_for_conn``, written out here as
:func:`granted`, independently of the spec's
:func:`~spec.xenstore.perms.access`): the tools and the owner have every
right; otherwise the first later entry naming the domain decides;
otherwise the first entry's permission.

* ``xenstore.access``: a domain never reads or writes a node its
  permissions deny. Every value a read returns, every change, every
  ``ENOENT`` (it tells that a node is missing: only to who may list its
  parent) and every watch event (only to who may read the node, before or
  after the change, or its parent: an event never leaks the name of a
  node the watcher can neither read nor list) is granted by the lists at
  the time; inside a transaction, by the lists of the view it reads (the
  snapshot: what the domain could read then); and every change a commit
  applies is granted by the lists *at the commit*, so a permission change
  since the transaction looked at a node makes the commit fail.
* ``xenstore.quota``: the owner rule. A node an unprivileged domain creates
  is its own, so an unprivileged domain never raises another domain's
  count, and raises its own only within its quota, directly or by a
  commit. The tools are not limited.

Strengthening: *P* exists; *T* is not dom0; a present node's generation is
not ``ABSENT``; *T*'s count is at least its nodes in the model; and while
the transaction is open: *P* was in its snapshot; a node whose generation
now is the snapshot's is present exactly as in the snapshot, with the same
list (every change takes a new generation); the view differs from the
snapshot only where the transaction wrote, and there only by creating *C*
(with *P* written too); each node it wrote was granted write to its domain
(by the node's list in the view, or *P*'s for a child it created); and a
child an unprivileged transaction created is owned by its domain.

The transaction system
----------------------

``xenstore.serialisable``: three nodes, each present or missing with an
8-bit value and a generation, and one transaction with its snapshot, its
view, its access records and *ghosts*: for each node the value it first
read from the store (not its own write), or that it found it missing. Each
step: the transaction starts, reads a node, writes or removes one in its
view, or commits (:func:`~spec.xenstore.transaction.conflict_free`, then
its writes with new generations); or another client writes or removes any
node (a new generation). Property: when a commit succeeds, everything the
transaction read from the store (a value, or a node's absence) is still
so, so it behaves as if it ran alone at the commit. Strengthening: a
present node's generation is not ``ABSENT``, and while the transaction is
open: a node whose generation is the snapshot's holds the snapshot's value
(or is missing like it); the view is the snapshot where the transaction
did not write; a written node was accessed; each ghost is the snapshot's
value of an accessed node.

Searched runs start from small counts and domids in the lists, and from
lists of letters, to read well; the induction covers every state its
strengthening allows, so what is proved holds from every store state.
Generations are printed ``g1``, ``g2``, ... in order of appearance.

Mutants
-------

``xenstore.quota/mutant:inherit_without_owner`` (a new node keeps its
parent's list: the owner rule forgotten): a domain that may write a
directory owned by *T* creates a node there; the node is *T*'s, charged to
*T*, though the quota checked was the creator's: a guest can push another
domain past its quota, and fill the store without limit. (It would still
read what it created, through the parent's list that let it write there:
the quota is the property that truly breaks.) ``may_set_gives_away`` (an
unprivileged owner may name any owner) breaks it too.

``xenstore.access``: ``allows_default_only`` (the default entry decides;
entries naming a domain to deny it, ``n5`` after ``r0``, are ignored),
``may_see_ignores_perms`` (every watcher sees every event, so watches leak
names), and ``commit_skips_written`` (the commit checks only the nodes the
transaction read without writing, as if "a node it only changed needs no
check" held for permissions too: a write the node's permissions no longer
allow is committed).

``xenstore.serialisable``: ``commit_checks_only_written`` (the commit checks
the nodes the transaction wrote, not those it read: a stale read is
committed) and ``commit_ignores_absent`` (a node it found missing is not
checked: a node created since, a phantom, goes unnoticed).

Each mutant replaces the function in its spec module
(``mock.patch.object``), where the store looks it up too.

What this proof found: the commit checked the node quota only on the
transaction's snapshot counts, so a domain could exceed its quota by
creating nodes elsewhere (or being given nodes by the tools) while its
transaction, within quota on its snapshot, was open. Xen checks again at
the commit (``acc_fix_domains``); so does the store now.

Not modelled: watch events a transaction queues (they fire at its commit),
removal and permission changes inside a transaction, deeper trees,
quotas other than the node quota.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from unittest import mock

import z3

from proofs.kinduction import Outcome, TransitionSystem, check
from spec import bv
from spec.xenstore import perms, quota, transaction, watch

PARENT = "P"
CHILDREN = ("C",)
NODES = (PARENT,) + CHILDREN
ENTRIES = 3
GEN = transaction.GENERATION_BITS
COUNT = 32
DOMID = perms.DOMID_BITS
PERM = perms.BITS
#: no domain owns this many nodes
COUNT_ROOM = 2**31
#: new generations one step may take (a commit: one per node it writes)
FRESH = 3


def _fresh_decls() -> dict:
    return {f"fresh{k}": lambda n: z3.BitVec(n, GEN) for k in range(FRESH)}


def _fresh_ok(s, i, generations: list[str], remembered: list[str]) -> z3.BoolRef:
    """The generations a step gives are new: none is :data:`ABSENT
    <spec.xenstore.transaction.ABSENT>`, they differ from each other, from
    every generation a node has, and from every one the transaction
    remembers. The store's counter gives each change the next value, which
    is all of this (it never wraps: 2**64 changes never happen); only
    equality of generations matters to the commit rule."""
    fresh = [i[f"fresh{k}"] for k in range(FRESH)]
    held = [s[name] for name in generations + remembered]
    return z3.And(z3.Distinct(*fresh), *[f != transaction.ABSENT for f in fresh],
                  *[f != g for f in fresh for g in held])


# --- permission lists as state ------------------------------------------------------

def _acl_decls(prefix: str) -> dict:
    out = {}
    for k in range(ENTRIES):
        out[f"{prefix}d{k}"] = lambda n: z3.BitVec(n, DOMID)
        out[f"{prefix}p{k}"] = lambda n: z3.BitVec(n, PERM)
    return out


def _acl(v, prefix: str) -> perms.Acl:
    return tuple(perms.Perm(v[f"{prefix}d{k}"], v[f"{prefix}p{k}"]) for k in range(ENTRIES))


def _acl_set(prefix: str, acl: perms.Acl) -> dict:
    out = {}
    for k, entry in enumerate(acl):
        out[f"{prefix}d{k}"] = entry.domid
        out[f"{prefix}p{k}"] = entry.perm
    return out


def _acl_eq(a: perms.Acl, b: perms.Acl) -> z3.BoolRef:
    return z3.And(*[z3.And(x.domid == y.domid, x.perm == y.perm) for x, y in zip(a, b)])


def _acl_ite(cond, a: perms.Acl, b: perms.Acl) -> perms.Acl:
    return tuple(perms.Perm(z3.If(cond, x.domid, y.domid), z3.If(cond, x.perm, y.perm))
                 for x, y in zip(a, b))


def granted(domid, privileged, acl: perms.Acl, need: int) -> z3.BoolRef:
    """Xen's rule (``perm_for_conn``), as documented, written out for the
    properties: the tools and the owner (the first entry's domid) have
    every right, ownership included; anyone else has ``need`` if the first
    later entry that names it has it, or, if no later entry names it, the
    first entry's permission has it."""
    owner, later = acl[0], acl[1:]
    names = [entry.domid == domid for entry in later]

    def has(perm) -> z3.BoolRef:
        return (perm & need) == need
    if need & perms.OWNER:
        by_list = z3.BoolVal(False)
    else:
        first = [z3.And(names[k], *[z3.Not(x) for x in names[:k]], has(later[k].perm))
                 for k in range(len(later))]
        by_list = z3.Or(*first, z3.And(*[z3.Not(x) for x in names], has(owner.perm)))
    return z3.Or(privileged, owner.domid == domid, by_list)


def _has_right(domid, privileged, acl, need: int):
    """``rights & need`` of ``get_node`` for a missing node's nearest
    existing ancestor."""
    return bv.ne(bv.band(perms.access(domid, privileged, acl), need, PERM), 0)


# --- one operation: when it happens, what it changes, what it must respect ------------

@dataclass
class _Op:
    happens: object = True
    updates: dict = field(default_factory=dict)
    refused: dict = field(default_factory=dict)   # the changes when it does not happen
    actor: tuple | None = None                    # (domid, privileged)
    safe: object = True                           # xenstore.access's obligation
    owner_rule: object = True                     # xenstore.quota's, besides the count


def _store_vars() -> dict:
    out = {"T": lambda n: z3.BitVec(n, DOMID),
           "owned": lambda n: z3.BitVec(n, COUNT), "limit": lambda n: z3.BitVec(n, COUNT),
           "tx": z3.Bool, "tdom": lambda n: z3.BitVec(n, DOMID),
           "towned": lambda n: z3.BitVec(n, COUNT)}
    for node in NODES:
        out[f"{node}.ex"] = z3.Bool
        out[f"{node}.g"] = lambda n: z3.BitVec(n, GEN)
        out.update(_acl_decls(f"{node}."))
        out[f"{node}.sg"] = lambda n: z3.BitVec(n, GEN)     # snapshot generation
        out[f"{node}.vex"] = z3.Bool                        # present in the view
        out.update(_acl_decls(f"{node}.v"))                 # list in the view
        out[f"{node}.acc"] = z3.Bool
        out[f"{node}.wr"] = z3.Bool
    return out


STORE_OPS: list[tuple[str, str | None]] = (
    [("read", n) for n in NODES] + [("write", n) for n in NODES]
    + [("create", c) for c in CHILDREN] + [("rm", c) for c in CHILDREN]
    + [("set_perms", n) for n in NODES] + [("create", "elsewhere"), ("tx_start", None)]
    + [("tx_read", n) for n in NODES] + [("tx_write", n) for n in NODES]
    + [("tx_create", c) for c in CHILDREN] + [("tx_commit", None)])
OP_BITS = 5
assert len(STORE_OPS) <= 2**OP_BITS


def _store_inputs() -> dict:
    out = {"op": lambda n: z3.BitVec(n, OP_BITS), "dom": lambda n: z3.BitVec(n, DOMID),
           "wdom": lambda n: z3.BitVec(n, DOMID), "used": lambda n: z3.BitVec(n, COUNT),
           "refuse": z3.Bool}
    out.update(_fresh_decls())
    out.update(_acl_decls("new."))       # the list of a set_perms
    out.update(_acl_decls("above."))     # P's parent's list, or the parent elsewhere
    return out


def _privileged(domid) -> z3.BoolRef:
    """A connection of dom0 is the tools (``Connection.privileged``)."""
    return domid == 0


def _now(s, node):
    """The node's generation as the commit reads it (``ABSENT`` if missing)."""
    return z3.If(s[f"{node}.ex"], s[f"{node}.g"], z3.BitVecVal(transaction.ABSENT, GEN))


def _one(cond):
    return z3.If(cond, z3.BitVecVal(1, COUNT), z3.BitVecVal(0, COUNT))


def _parent_acl(s, i, node):
    return _acl(i, "above.") if node == PARENT else _acl(s, "P.")


def _event(i, node_acl, parent_acl, old_acl=None):
    """The watch event of a change, to the step's watcher: delivered by
    :func:`~spec.xenstore.watch.may_see`; the obligation that it leaks
    nothing."""
    w = i["wdom"]
    wp = _privileged(w)
    delivered = watch.may_see(w, wp, node_acl, parent_acl, old_acl)
    seen = [granted(w, wp, acl, perms.READ) for acl in (node_acl, parent_acl, old_acl)
            if acl is not None]
    return delivered, z3.Implies(delivered, z3.Or(*seen))


def _store_op(kind: str, node: str | None, s, i) -> _Op:
    dom, T = i["dom"], s["T"]
    priv = _privileged(dom)
    me = (dom, priv)
    if kind == "read":
        acl, ex = _acl(s, f"{node}."), s[f"{node}.ex"]
        value = z3.And(ex, perms.allows(dom, priv, acl, perms.READ))
        safe = z3.Implies(value, granted(dom, priv, acl, perms.READ))
        if node != PARENT:
            enoent = z3.And(z3.Not(ex), _has_right(dom, priv, _acl(s, "P."), perms.READ))
            safe = z3.And(safe, z3.Implies(enoent, granted(dom, priv, _acl(s, "P."),
                                                           perms.READ)))
        return _Op(actor=me, safe=safe)
    if kind == "write":
        acl = _acl(s, f"{node}.")
        happens = z3.And(s[f"{node}.ex"], perms.allows(dom, priv, acl, perms.WRITE))
        delivered, leak_free = _event(i, acl, _parent_acl(s, i, node))
        return _Op(happens, {f"{node}.g": i["fresh0"]}, actor=me,
                   safe=z3.And(z3.Implies(happens, granted(dom, priv, acl, perms.WRITE)),
                               z3.Implies(happens, leak_free)))
    if kind == "create":
        parent = _acl(i, "above.") if node == "elsewhere" else _acl(s, "P.")
        used = z3.If(dom == T, s["owned"], i["used"])
        happens = z3.And(_has_right(dom, priv, parent, perms.WRITE),
                         quota.within(priv, used, 1, s["limit"], COUNT))
        new = perms.inherit(parent, dom, priv)
        updates = {"owned": s["owned"] + _one(new[0].domid == T)}
        safe = z3.Implies(happens, granted(dom, priv, parent, perms.WRITE))
        if node != "elsewhere":
            happens = z3.And(z3.Not(s[f"{node}.ex"]), happens)
            updates.update({f"{node}.ex": True, f"{node}.g": i["fresh0"], "P.g": i["fresh1"]})
            updates.update(_acl_set(f"{node}.", new))
            delivered, leak_free = _event(i, new, parent)
            safe = z3.And(z3.Implies(happens, granted(dom, priv, parent, perms.WRITE)),
                          z3.Implies(happens, leak_free))
        return _Op(happens, updates, actor=me, safe=safe,
                   owner_rule=z3.Implies(z3.And(happens, z3.Not(priv)), new[0].domid == dom))
    if kind == "rm":
        acl = _acl(s, f"{node}.")
        happens = z3.And(s[f"{node}.ex"], perms.allows(dom, priv, acl, perms.WRITE))
        delivered, leak_free = _event(i, acl, _acl(s, "P."))
        return _Op(happens, {f"{node}.ex": False, "P.g": i["fresh1"],
                             "owned": s["owned"] - _one(acl[0].domid == T)}, actor=me,
                   safe=z3.And(z3.Implies(happens, granted(dom, priv, acl, perms.WRITE)),
                               z3.Implies(happens, leak_free)))
    if kind == "set_perms":
        old, new = _acl(s, f"{node}."), _acl(i, "new.")
        happens = z3.And(s[f"{node}.ex"],
                         perms.allows(dom, priv, old, perms.WRITE | perms.OWNER),
                         perms.may_set(dom, priv, old, new[0].domid))
        delivered, leak_free = _event(i, new, _parent_acl(s, i, node), old)
        rule = z3.And(granted(dom, priv, old, perms.WRITE | perms.OWNER),
                      z3.Or(priv, new[0].domid == old[0].domid))
        updates = {f"{node}.g": i["fresh0"],
                   "owned": s["owned"] + _one(new[0].domid == T) - _one(old[0].domid == T)}
        updates.update(_acl_set(f"{node}.", new))
        return _Op(happens, updates, actor=me,
                   safe=z3.Implies(happens, z3.And(rule, leak_free)))
    if kind == "tx_start":
        updates = {"tx": True, "tdom": dom, "towned": s["owned"]}
        for n in NODES:
            updates.update({f"{n}.sg": _now(s, n), f"{n}.vex": s[f"{n}.ex"],
                            f"{n}.acc": False, f"{n}.wr": False})
            updates.update(_acl_set(f"{n}.v", _acl(s, f"{n}.")))
        return _Op(True, updates, actor=me)
    return _tx_op(kind, node, s, i)


def _tx_op(kind: str, node: str | None, s, i) -> _Op:
    """The transaction's operations: on its view, as its domain."""
    dom, T, tx = s["tdom"], s["T"], s["tx"]
    priv = _privileged(dom)
    me = (dom, priv)
    view_p = _acl(s, "P.v")
    if kind == "tx_read":
        acl, vex = _acl(s, f"{node}.v"), s[f"{node}.vex"]
        value = z3.And(tx, vex, perms.allows(dom, priv, acl, perms.READ))
        safe = z3.Implies(value, granted(dom, priv, acl, perms.READ))
        seen = {f"{node}.acc": z3.Or(s[f"{node}.acc"], tx)}
        if node != PARENT:
            # a missing node: get_node looks at its parent too
            enoent = z3.And(tx, z3.Not(vex), _has_right(dom, priv, view_p, perms.READ))
            safe = z3.And(safe, z3.Implies(enoent, granted(dom, priv, view_p, perms.READ)))
            seen["P.acc"] = z3.Or(s["P.acc"], z3.And(tx, z3.Not(vex)))
        return _Op(tx, seen, actor=me, safe=safe)
    if kind == "tx_write":
        acl = _acl(s, f"{node}.v")
        happens = z3.And(tx, s[f"{node}.vex"], perms.allows(dom, priv, acl, perms.WRITE))
        return _Op(happens, {f"{node}.acc": True, f"{node}.wr": True},
                   {f"{node}.acc": z3.Or(s[f"{node}.acc"], tx)}, actor=me,
                   safe=z3.Implies(happens, granted(dom, priv, acl, perms.WRITE)))
    if kind == "tx_create":
        used = z3.If(dom == T, s["towned"], i["used"])
        happens = z3.And(tx, z3.Not(s[f"{node}.vex"]),
                         _has_right(dom, priv, view_p, perms.WRITE),
                         quota.within(priv, used, 1, s["limit"], COUNT))
        new = perms.inherit(view_p, dom, priv)
        updates = {f"{node}.vex": True, f"{node}.acc": True, f"{node}.wr": True,
                   "P.acc": True, "P.wr": True,
                   "towned": s["towned"] + _one(new[0].domid == T)}
        updates.update(_acl_set(f"{node}.v", new))
        return _Op(happens, updates,
                   {f"{node}.acc": z3.Or(s[f"{node}.acc"], tx),
                    "P.acc": z3.Or(s["P.acc"], tx)}, actor=me,
                   safe=z3.Implies(happens, granted(dom, priv, view_p, perms.WRITE)),
                   owner_rule=z3.Implies(z3.And(happens, z3.Not(priv)), new[0].domid == dom))
    assert kind == "tx_commit"
    checks = [(s[f"{n}.acc"], z3.And(s[f"{n}.acc"], s[f"{n}.wr"]), s[f"{n}.sg"], _now(s, n))
              for n in NODES]
    free = transaction.conflict_free(checks)
    # the node quota of every domain the commit charges more (T's here; any
    # other domain's by the input `refuse`)
    grows = z3.BitVecVal(0, COUNT)
    for n in NODES:
        new_t = z3.And(s[f"{n}.wr"], s[f"{n}.vex"], s[f"{n}.vd0"] == T)
        old_t = z3.And(s[f"{n}.wr"], s[f"{n}.ex"], s[f"{n}.d0"] == T)
        grows = grows + _one(new_t) - _one(old_t)
    fits = z3.Or(z3.Not(grows > 0), quota.within(priv, s["owned"], grows, s["limit"], COUNT))
    happens = z3.And(tx, free, fits, z3.Not(i["refuse"]))
    updates = {"tx": False, "owned": s["owned"] + grows}
    for k, n in enumerate(NODES):
        wr = s[f"{n}.wr"]
        updates[f"{n}.ex"] = z3.If(wr, s[f"{n}.vex"], s[f"{n}.ex"])
        updates[f"{n}.g"] = z3.If(wr, i[f"fresh{k}"], s[f"{n}.g"])
        for e, (cur, view) in enumerate(zip(_acl(s, f"{n}."), _acl(s, f"{n}.v"))):
            updates[f"{n}.d{e}"] = z3.If(wr, view.domid, cur.domid)
            updates[f"{n}.p{e}"] = z3.If(wr, view.perm, cur.perm)
    # every change the commit makes is granted by the lists now
    safe = []
    for n in NODES:
        acl_now = _acl(s, f"{n}.") if n == PARENT else \
            _acl_ite(s[f"{n}.ex"], _acl(s, f"{n}."), _acl(s, "P."))
        safe.append(z3.Implies(s[f"{n}.wr"], granted(dom, priv, acl_now, perms.WRITE)))
    return _Op(happens, updates, {"tx": False}, actor=me,
               safe=z3.Implies(happens, z3.And(*safe)))


def _ops(s, i) -> list[_Op]:
    return [_store_op(kind, node, s, i) for kind, node in STORE_OPS]


def _after(s, op: _Op, name: str):
    """A variable's value after the operation (whether it happens or not)."""
    done = op.updates.get(name, s[name])
    not_done = op.refused.get(name, s[name])
    return done if done is not_done else z3.If(op.happens, done, not_done)


def _next(s, t, select, ops: list[_Op]) -> z3.BoolRef:
    """The new state: each variable, by the operation ``select`` names
    (written per variable, over the operations that change it)."""
    eqs = [z3.ULT(select, len(ops))]
    for name in s:
        value = s[name]
        for k in reversed(range(len(ops))):
            after = _after(s, ops[k], name)
            if after is not s[name]:
                value = z3.If(select == k, after, value)
        eqs.append(t[name] == value)
    return z3.And(*eqs)


def _store_step(s, i, t) -> z3.BoolRef:
    sane = z3.And(_fresh_ok(s, i, [f"{n}.g" for n in NODES], [f"{n}.sg" for n in NODES]),
                  _letters(_acl(i, "new.")), _letters(_acl(i, "above.")),
                  z3.ULT(t["owned"], COUNT_ROOM), z3.ULT(t["towned"], COUNT_ROOM))
    return z3.And(sane, _next(s, t, i["op"], _ops(s, i)))


def _letters(acl: perms.Acl) -> z3.BoolRef:
    """Every permission is one of n, r, w, b (what :func:`~spec.xenstore.perms.parse`
    gives, and so every list a client can set)."""
    return z3.And(*[z3.ULE(entry.perm, perms.BOTH) for entry in acl])


def _store_init(s) -> z3.BoolRef:
    """Any tree within its quota, with no transaction open. For readable
    counterexamples, the lists are made of letters, the domids in them and
    the counts are small; the induction is not limited by this (its
    strengthening allows every list, domid and count)."""
    small = [z3.ULT(s["T"], 16), z3.ULT(s["limit"], 16), z3.ULE(s["owned"], s["limit"])]
    for n in NODES:
        acl = _acl(s, f"{n}.")
        small += [_letters(acl), *[z3.ULT(entry.domid, 16) for entry in acl]]
    return z3.And(_tree_ok(s), z3.Not(s["tx"]), *small)


def _mine(s, node):
    return z3.And(s[f"{node}.ex"], s[f"{node}.d0"] == s["T"])


def _tree_ok(s) -> z3.BoolRef:
    held = z3.BitVecVal(0, COUNT)
    for n in NODES:
        held = held + _one(_mine(s, n))
    return z3.And(s["P.ex"], s["T"] != 0, z3.UGE(s["owned"], held),
                  z3.ULT(s["owned"], COUNT_ROOM),
                  *[z3.Implies(s[f"{n}.ex"], s[f"{n}.g"] != transaction.ABSENT)
                    for n in NODES])


def _store_invariant(s) -> z3.BoolRef:
    tx_facts = [z3.ULT(s["towned"], COUNT_ROOM), s["P.sg"] != transaction.ABSENT]
    dom = s["tdom"]
    priv = _privileged(dom)
    for n in NODES:
        sg, sex = s[f"{n}.sg"], s[f"{n}.sg"] != transaction.ABSENT
        vex, wr, acc = s[f"{n}.vex"], s[f"{n}.wr"], s[f"{n}.acc"]
        write_acl = _acl(s, f"{n}.v") if n == PARENT else \
            _acl_ite(sex, _acl(s, f"{n}.v"), _acl(s, "P.v"))
        tx_facts += [
            z3.Implies(_now(s, n) == sg,
                       z3.And(s[f"{n}.ex"] == sex,
                              z3.Implies(sex, _acl_eq(_acl(s, f"{n}."), _acl(s, f"{n}.v"))))),
            z3.Implies(wr, z3.And(acc, vex, granted(dom, priv, write_acl, perms.WRITE))),
            z3.Implies(z3.Not(wr), vex == sex),
        ]
        if n != PARENT:
            tx_facts += [
                z3.Implies(z3.And(vex, z3.Not(sex)),
                           z3.And(s["P.wr"], z3.Implies(z3.Not(priv), s[f"{n}.vd0"] == dom))),
            ]
    return z3.And(_tree_ok(s), z3.Implies(s["tx"], z3.And(*tx_facts)))


def _access_property(s, i, t) -> z3.BoolRef:
    return z3.And(*[z3.Implies(i["op"] == k, op.safe) for k, op in enumerate(_ops(s, i))])


def _quota_property(s, i, t) -> z3.BoolRef:
    out = []
    for k, op in enumerate(_ops(s, i)):
        dom, priv = op.actor
        raised = z3.UGT(t["owned"], s["owned"])
        out.append(z3.Implies(z3.And(i["op"] == k, op.happens, z3.Not(priv)),
                              z3.And(op.owner_rule,
                                     z3.Implies(raised, z3.And(dom == s["T"],
                                                               z3.ULE(t["owned"],
                                                                      s["limit"]))))))
    return z3.And(*out)


# --- reading a counterexample ---------------------------------------------------------

def _perm_text(domid: int, perm: int) -> str:
    letter = {0: "n", 1: "r", 2: "w", 3: "b"}.get(perm)
    return f"{letter}{domid}" if letter else f"{perm:#x}:{domid}"


def _acl_text(v, prefix) -> str:
    return " ".join(_perm_text(v[f"{prefix}d{k}"], v[f"{prefix}p{k}"]) for k in range(ENTRIES))


class _Generations:
    """Generations as ``g1``, ``g2``, ... in the order a counterexample shows
    them (only their equality matters); ``absent`` for
    :data:`~spec.xenstore.transaction.ABSENT`. One per system built, so
    that the lines of one counterexample agree."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {}

    def __call__(self, value: int) -> str:
        if value == transaction.ABSENT:
            return "absent"
        return self.names.setdefault(value, f"g{len(self.names) + 1}")


def _who(domid: int) -> str:
    return f"dom{domid}" + (" (tools)" if domid == 0 else "")


def _store_describer(gen: _Generations):
    def describe(v: dict) -> str:
        parts = [f"{n}[{_acl_text(v, f'{n}.')}] {gen(v[f'{n}.g'])}" if v[f"{n}.ex"]
                 else f"{n} missing" for n in NODES]
        text = ", ".join(parts) + f" | T=dom{v['T']} owns {v['owned']}, quota {v['limit']}"
        if v["tx"]:
            notes = []
            for n in NODES:
                if not v[f"{n}.acc"]:
                    continue
                note = f"{n} {'written' if v[f'{n}.wr'] else 'read'}, saw {gen(v[f'{n}.sg'])}"
                if v[f"{n}.vex"] and v[f"{n}.sg"] == transaction.ABSENT:
                    note += f", created [{_acl_text(v, f'{n}.v')}]"
                notes.append(note)
            text += f" | tx of {_who(v['tdom'])}: " + ("; ".join(notes) or "nothing yet") + \
                f"; T owns {v['towned']} in it"
        return text
    return describe


def _describe_store_input(v: dict) -> str:
    k = v["op"]
    if k >= len(STORE_OPS):
        return f"op {k}"
    kind, node = STORE_OPS[k]
    who = "" if kind.startswith("tx_") and kind != "tx_start" else _who(v["dom"]) + " "
    text = f"{who}{kind}" + (f" {node}" if node else "")
    if kind == "set_perms":
        text += f" [{_acl_text(v, 'new.')}]"
    if node == "elsewhere" or (node == PARENT and kind in ("write", "set_perms")):
        text += f" (parent [{_acl_text(v, 'above.')}])"
    if kind in ("write", "create", "rm", "set_perms") and node != "elsewhere":
        text += f", watcher {_who(v['wdom'])}"
    if kind == "tx_commit" and v["refuse"]:
        text += " (refused for another domain's quota)"
    return text


def _by_op(count: int):
    """The induction step, one operation at a time."""
    return lambda i: [i["op"] == k for k in range(count)]


def _op_case(kind: str, node: str | None, when):
    """A witness: operation (``kind``, ``node``) by the step's domain, with
    ``when(op, s, i)`` true of it."""
    k = STORE_OPS.index((kind, node))
    return lambda s, i, t: z3.And(i["op"] == k, when(_store_op(kind, node, s, i), s, i))


def _unprivileged(op) -> z3.BoolRef:
    return z3.Not(op.actor[1])


#: the cases the store system's properties are about
STORE_WITNESSES = {
    "xenstore.access": (
        ("an unprivileged domain creates C", _op_case(
            "create", "C", lambda op, s, i: z3.And(op.happens, _unprivileged(op)))),
        ("an unprivileged domain's write refused", _op_case(
            "write", "P", lambda op, s, i: z3.And(s["P.ex"], z3.Not(op.happens),
                                                  _unprivileged(op))))),
    "xenstore.quota": (
        ("T's creation refused by its quota", _op_case(
            "create", "C", lambda op, s, i: z3.And(
                i["dom"] == s["T"], z3.Not(s["C.ex"]), z3.Not(op.happens),
                _has_right(i["dom"], op.actor[1], _acl(s, "P."), perms.WRITE)))),
        ("T creates C and is charged", _op_case(
            "create", "C", lambda op, s, i: z3.And(i["dom"] == s["T"], op.happens)))),
}


def _store_system(name: str, prop) -> TransitionSystem:
    return TransitionSystem(name, _store_vars(), _store_inputs(), _store_init, _store_step,
                            _store_invariant, prop, _store_describer(_Generations()),
                            _describe_store_input,
                            depth=4, cases=_by_op(len(STORE_OPS)), incremental=False,
                            witnesses=STORE_WITNESSES[name], witness_depth=2)


def access_system() -> TransitionSystem:
    """A domain never reads or writes a XenStore node its permissions deny:
    every value read, change, ``ENOENT`` and watch event is granted by the
    lists at the time, a transaction's by the snapshot it reads, and a
    commit's changes by the lists at the commit."""
    return _store_system("xenstore.access", _access_property)


def quota_system() -> TransitionSystem:
    """The owner rule: what an unprivileged domain creates is its own, so it
    never raises another domain's node count, and raises its own only within
    its quota, directly or through a transaction's commit."""
    return _store_system("xenstore.quota", _quota_property)


# --- the transaction system -------------------------------------------------------------

ITEMS = 3
VALUE = 8
TX_OPS: list[tuple[str, int | None]] = (
    [("tx_start", None)] + [("tx_read", k) for k in range(ITEMS)]
    + [("tx_write", k) for k in range(ITEMS)] + [("tx_rm", k) for k in range(ITEMS)]
    + [("other_write", k) for k in range(ITEMS)] + [("other_rm", k) for k in range(ITEMS)]
    + [("tx_commit", None)])


def _tx_vars() -> dict:
    out = {"tx": z3.Bool}
    for k in range(ITEMS):
        out.update({
            f"ex{k}": z3.Bool, f"val{k}": lambda n: z3.BitVec(n, VALUE),
            f"g{k}": lambda n: z3.BitVec(n, GEN),
            f"sg{k}": lambda n: z3.BitVec(n, GEN),            # snapshot generation
            f"sex{k}": z3.Bool, f"sval{k}": lambda n: z3.BitVec(n, VALUE),   # snapshot
            f"vex{k}": z3.Bool, f"vval{k}": lambda n: z3.BitVec(n, VALUE),   # view
            f"acc{k}": z3.Bool, f"wr{k}": z3.Bool,
            f"got{k}": z3.Bool, f"rex{k}": z3.Bool,           # ghosts: read from the store
            f"rval{k}": lambda n: z3.BitVec(n, VALUE),
        })
    return out


def _tx_inputs() -> dict:
    return {"op": lambda n: z3.BitVec(n, OP_BITS), "value": lambda n: z3.BitVec(n, VALUE),
            **_fresh_decls()}


def _gen_now(s, k):
    return z3.If(s[f"ex{k}"], s[f"g{k}"], z3.BitVecVal(transaction.ABSENT, GEN))


def _tx_op_effect(kind: str, k: int | None, s, i) -> tuple[object, dict]:
    """(when it happens, what it changes); otherwise nothing changes."""
    tx = s["tx"]
    if kind == "tx_start":
        updates = {"tx": True}
        for j in range(ITEMS):
            updates.update({f"sg{j}": _gen_now(s, j), f"sex{j}": s[f"ex{j}"],
                            f"sval{j}": s[f"val{j}"], f"vex{j}": s[f"ex{j}"],
                            f"vval{j}": s[f"val{j}"], f"acc{j}": False, f"wr{j}": False,
                            f"got{j}": False})
        return True, updates
    if kind == "tx_read":
        # Store.get records the first access, with the generation seen
        first = z3.And(z3.Not(s[f"got{k}"]), z3.Not(s[f"wr{k}"]))
        return tx, {f"acc{k}": True, f"got{k}": z3.Or(s[f"got{k}"], first),
                    f"rex{k}": z3.If(first, s[f"vex{k}"], s[f"rex{k}"]),
                    f"rval{k}": z3.If(first, s[f"vval{k}"], s[f"rval{k}"])}
    if kind in ("tx_write", "tx_rm"):
        present = kind == "tx_write"
        return tx, {f"acc{k}": True, f"wr{k}": True, f"vex{k}": present,
                    f"vval{k}": i["value"] if present else s[f"vval{k}"]}
    if kind in ("other_write", "other_rm"):
        present = kind == "other_write"
        return True, {f"ex{k}": present, f"val{k}": i["value"] if present else s[f"val{k}"],
                      f"g{k}": i["fresh0"]}
    assert kind == "tx_commit"
    free = transaction.conflict_free([(s[f"acc{j}"], z3.And(s[f"acc{j}"], s[f"wr{j}"]),
                                       s[f"sg{j}"], _gen_now(s, j)) for j in range(ITEMS)])
    updates = {"tx": False}
    for j in range(ITEMS):
        wr = s[f"wr{j}"]
        updates.update({f"ex{j}": z3.If(wr, s[f"vex{j}"], s[f"ex{j}"]),
                        f"val{j}": z3.If(wr, s[f"vval{j}"], s[f"val{j}"]),
                        f"g{j}": z3.If(wr, i[f"fresh{j}"], s[f"g{j}"])})
    return z3.And(tx, free), updates


def _tx_step(s, i, t) -> z3.BoolRef:
    ops = []
    for kind, k in TX_OPS:
        happens, updates = _tx_op_effect(kind, k, s, i)
        ops.append(_Op(happens, updates, {"tx": False} if kind == "tx_commit" else {}))
    fresh = _fresh_ok(s, i, [f"g{k}" for k in range(ITEMS)], [f"sg{k}" for k in range(ITEMS)])
    return z3.And(fresh, _next(s, t, i["op"], ops))


def _tx_init(s) -> z3.BoolRef:
    return z3.And(z3.Not(s["tx"]), _gens_ok(s))


def _gens_ok(s) -> z3.BoolRef:
    return z3.And(*[z3.Implies(s[f"ex{k}"], s[f"g{k}"] != transaction.ABSENT)
                    for k in range(ITEMS)])


def _same_content(ex_a, val_a, ex_b, val_b) -> z3.BoolRef:
    return z3.And(ex_a == ex_b, z3.Implies(ex_a, val_a == val_b))


def _tx_invariant(s) -> z3.BoolRef:
    facts = []
    for k in range(ITEMS):
        sg, sex = s[f"sg{k}"], s[f"sex{k}"]
        facts += [
            sex == (sg != transaction.ABSENT),
            z3.Implies(_gen_now(s, k) == sg,
                       _same_content(s[f"ex{k}"], s[f"val{k}"], sex, s[f"sval{k}"])),
            z3.Implies(z3.Not(s[f"wr{k}"]),
                       _same_content(s[f"vex{k}"], s[f"vval{k}"], sex, s[f"sval{k}"])),
            z3.Implies(s[f"wr{k}"], s[f"acc{k}"]),
            z3.Implies(s[f"got{k}"], z3.And(s[f"acc{k}"], _same_content(
                s[f"rex{k}"], s[f"rval{k}"], sex, s[f"sval{k}"]))),
        ]
    return z3.And(_gens_ok(s), z3.Implies(s["tx"], z3.And(*facts)))


def _serialisable_property(s, i, t) -> z3.BoolRef:
    commit = TX_OPS.index(("tx_commit", None))
    happens, _ = _tx_op_effect("tx_commit", None, s, i)
    current = [z3.Implies(s[f"got{k}"], _same_content(s[f"rex{k}"], s[f"rval{k}"],
                                                      s[f"ex{k}"], s[f"val{k}"]))
               for k in range(ITEMS)]
    return z3.Implies(z3.And(i["op"] == commit, happens), z3.And(*current))


def _tx_describer(gen: _Generations):
    def describe(v: dict) -> str:
        nodes = ", ".join(f"n{k}={v[f'val{k}']} {gen(v[f'g{k}'])}" if v[f"ex{k}"]
                          else f"n{k} missing" for k in range(ITEMS))
        if not v["tx"]:
            return nodes
        notes = []
        for k in range(ITEMS):
            if not v[f"acc{k}"]:
                continue
            note = f"n{k} saw {gen(v[f'sg{k}'])}"
            if v[f"got{k}"]:
                note += f", read {v[f'rval{k}'] if v[f'rex{k}'] else 'missing'}"
            if v[f"wr{k}"]:
                note += f", wrote {v[f'vval{k}'] if v[f'vex{k}'] else 'a removal'}"
            notes.append(note)
        return f"{nodes} | tx: " + ("; ".join(notes) or "nothing yet")
    return describe


def _describe_tx_input(v: dict) -> str:
    n = v["op"]
    if n >= len(TX_OPS):
        return f"op {n}"
    kind, k = TX_OPS[n]
    text = kind + ("" if k is None else f" n{k}")
    return text + (f" = {v['value']}" if kind in ("tx_write", "other_write") else "")


def serialisable_system() -> TransitionSystem:
    """A committed XenStore transaction is serialisable: everything it read
    from the store is still current at its commit."""
    return TransitionSystem("xenstore.serialisable", _tx_vars(), _tx_inputs(), _tx_init,
                            _tx_step, _tx_invariant, _serialisable_property,
                            _tx_describer(_Generations()), _describe_tx_input, depth=4,
                            witnesses=(("a commit of what the transaction read",
                                        _commit_after_read),
                                       ("a commit refused for a conflict",
                                        _commit_conflicts)))


def _commit(s, i):
    happens, _ = _tx_op_effect("tx_commit", None, s, i)
    return i["op"] == TX_OPS.index(("tx_commit", None)), happens


def _commit_after_read(s, i, t) -> z3.BoolRef:
    is_commit, happens = _commit(s, i)
    return z3.And(is_commit, happens, z3.Or(*[s[f"got{k}"] for k in range(ITEMS)]))


def _commit_conflicts(s, i, t) -> z3.BoolRef:
    is_commit, happens = _commit(s, i)
    return z3.And(is_commit, s["tx"], z3.Not(happens))


# --- mutants: the spec with one function replaced ---------------------------------------

_real_conflict_free = transaction.conflict_free


def _inherit_without_owner(parent_acl, creator, privileged):
    """A new node gets its parent's list unchanged: the owner rule forgotten,
    so the node is charged to the parent's owner, whose quota nobody
    checked."""
    return tuple(parent_acl)


def _may_set_gives_away(domid, privileged, acl, new_owner):
    """An owner may name any owner: an unprivileged domain can give its
    nodes, and their quota, to another domain."""
    return perms.allows(domid, privileged, acl, perms.WRITE | perms.OWNER)


def _allows_default_only(domid, privileged, acl, need):
    """Only the owner and the default entry count: an entry that names a
    domain to deny it (``n5`` after ``r0``) is ignored."""
    rights = bv.ite(bv.or_(privileged, bv.eq(acl[0].domid, domid)), perms.BOTH | perms.OWNER,
                    bv.band(acl[0].perm, perms.BOTH, perms.BITS))
    return bv.eq(bv.band(rights, need, perms.BITS), need)


def _may_see_ignores_perms(domid, privileged, node_acl, parent_acl, old_acl=None):
    """Every watcher sees every event: a watch leaks the names of nodes it
    may neither read nor list."""
    return True


def _commit_skips_written(checks):
    """The commit checks only nodes the transaction read and did not write:
    a write it made under permissions revoked since is committed."""
    return bv.and_(*(bv.implies(bv.and_(read, bv.not_(written)), bv.eq(seen, now))
                     for read, written, seen, now in checks))


def _commit_checks_only_written(checks):
    """The commit checks the nodes the transaction wrote, not those it
    read: a read that another client's write made stale is committed."""
    return bv.and_(*(bv.implies(written, bv.eq(seen, now)) for read, written, seen, now in checks))


def _commit_ignores_absent(checks):
    """A node the transaction found missing is not checked: a node created
    since (a phantom) goes unnoticed."""
    return bv.and_(*(bv.implies(bv.and_(read, bv.ne(seen, transaction.ABSENT)),
                                bv.eq(seen, now)) for read, written, seen, now in checks))


#: (check name, system factory, [(mutant, "module.function" replaced, replacement)])
CHECKS = [
    ("xenstore.access", access_system,
     [("allows_default_only", "perms.allows", _allows_default_only),
      ("may_see_ignores_perms", "watch.may_see", _may_see_ignores_perms),
      ("commit_skips_written", "transaction.conflict_free", _commit_skips_written)]),
    ("xenstore.quota", quota_system,
     [("inherit_without_owner", "perms.inherit", _inherit_without_owner),
      ("may_set_gives_away", "perms.may_set", _may_set_gives_away)]),
    ("xenstore.serialisable", serialisable_system,
     [("commit_checks_only_written", "transaction.conflict_free",
       _commit_checks_only_written),
      ("commit_ignores_absent", "transaction.conflict_free", _commit_ignores_absent)]),
]

_MODULES = {"perms": perms, "watch": watch, "quota": quota, "transaction": transaction}


def run_check(factory, mutant: tuple[str, str, object] | None = None) -> Outcome:
    """Check the system ``factory`` builds; with ``mutant``, with that spec
    function replaced in its module while the system is built and checked."""
    with ExitStack() as stack:
        if mutant is not None:
            module, name = mutant[1].split(".")
            stack.enter_context(mock.patch.object(_MODULES[module], name, mutant[2]))
        return check(factory())
