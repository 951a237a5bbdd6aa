"""XenStore transactions: a snapshot, and a commit that fails on conflict.

Room: what a transaction remembers and the rule that decides its commit
(:func:`conflict_free`, over :mod:`spec.bv` so that
:mod:`proofs.xenstore` checks this very function). The store
(:mod:`spec.xenstore.store`) runs the operations. Imports :mod:`spec.bv`.

A client starts a transaction (``XS_TRANSACTION_START``, reply: its id) and
names it in the header of later requests. Inside it, operations see the
store as it was at the start (a snapshot) plus the transaction's own
changes; nobody else sees those changes, and watches they would fire wait.
``XS_TRANSACTION_END`` with ``F`` drops them; with ``T`` the store commits:

* every node has a *generation*, the value of a global counter when it was
  last changed (``tools/xenstored/transaction.c``);
* the transaction records, for each node it looked at (read, listed,
  checked permissions on, or found missing), the generation it saw
  (:data:`ABSENT` for a missing node);
* the commit succeeds only if each of those is still the node's generation
  now; then the transaction's changes become the store's, with new
  generations, and the waiting watches fire. Otherwise the reply is
  ``EAGAIN`` and the client retries the whole transaction;
* the node quota (:mod:`spec.xenstore.quota`) is checked again at the
  commit, on the counts now, for each domain the changes charge more
  (``acc_fix_domains``): the transaction checked its snapshot's counts,
  which the domain's other changes, or the tools', may have raised since.
  If one is exceeded the reply is ``ENOSPC`` and nothing changes.

So a committed transaction behaves as if it ran alone at the moment of its
commit (it is serialisable): everything it read was still current.
For serialisability alone, a node it only changed would need no check (its
change replaces whatever a concurrent writer did, as a later serial write
would); but changing a node means first checking its permissions, which is
looking at it, so every node it wrote is checked too, and a change of those
permissions since makes the commit fail rather than commit a write they now
deny (:mod:`proofs.xenstore`, mutant ``commit_skips_written``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from spec import bv

#: the generation recorded for a node that did not exist
ABSENT = 0
GENERATION_BITS = 64


@dataclass
class Access:
    """A node a transaction touched: the generation it first saw, and how
    it used the node."""

    seen: int
    read: bool = True
    written: bool = False
    #: the node's list when the transaction first saw it (``None``: missing)
    acl: tuple | None = None


def conflict_free(checks: list[tuple[bv.Bit, bv.Bit, bv.Word, bv.Word]]) -> bv.Bit:
    """The commit rule: for every ``(read, written, seen, now)`` of a node
    the transaction accessed, a node it read still has the generation it
    saw (whether it also wrote the node does not matter)."""
    return bv.and_(*(bv.implies(read, bv.eq(seen, now)) for read, _written, seen, now in checks))


@dataclass
class Transaction:
    """One open transaction of a connection."""

    id: int
    #: the snapshot plus this transaction's changes: name -> node
    nodes: dict
    #: nodes owned per domid, as the snapshot plus changes count them
    owned: dict
    accessed: dict[str, Access] = field(default_factory=dict)
    #: watch firings waiting for the commit, one per node (``queue_watches``):
    #: name -> exact (a subtree firing wins over an exact one)
    fired: dict[str, bool] = field(default_factory=dict)
