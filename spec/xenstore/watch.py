"""XenStore watches: which changes fire them, and who may see the event.

Room: a watch, the match rule and the visibility rule
(:func:`may_see`, over :mod:`spec.bv` for :mod:`proofs.xenstore`).
Imports :mod:`spec.bv`, :mod:`spec.xenstore.paths`,
:mod:`spec.xenstore.perms`.

A client registers a watch on a path with a token of its choosing
(``XS_WATCH``); xenstored answers, then sends one event at once with the
watched path (the *initial firing*: "simplifies clients and restart").
Later, an event ``XS_WATCH_EVENT`` carries ``path NUL token NUL``:

* a write, mkdir or permission change of node *N* fires every watch on *N*
  or on an ancestor of *N*, with *N*'s name;
* removing a subtree fires, for the subtree's root, every watch on it or
  an ancestor; for each node below the root, the watches on exactly that
  node (``delnode_sub``);
* ``@introduceDomain`` fires when a domain is introduced,
  ``@releaseDomain`` when one is released, shuts down or dies;
* a change inside a transaction fires when the transaction commits, not
  before, and never if it does not.

A watch with a relative path gets relative names. A connection sees an
event only if it may read the node (with its list before a permission
change, or after), or its parent (``watch_permitted``): a watch never
leaks the name of a node the watcher can neither read nor list.
"""

from __future__ import annotations

from dataclasses import dataclass

from spec import bv
from spec.xenstore import paths, perms


@dataclass(frozen=True)
class Watch:
    name: str        # the absolute node name (or an @ name)
    token: str
    relative: bool   # registered with a relative path


def fires(watch_name: str, changed: str, exact: bool) -> bool:
    """A change of ``changed`` fires a watch on ``watch_name``."""
    return watch_name == changed if exact else paths.is_child(changed, watch_name)


def may_see(domid: bv.Word, privileged: bv.Bit, node_acl, parent_acl, old_acl=None) -> bv.Bit:
    """The watcher may read the node (its list now or, for a permission
    change, before) or its parent. A missing list (no such node) grants
    nothing."""
    def reads(acl) -> bv.Bit:
        return False if acl is None else perms.allows(domid, privileged, acl, perms.READ)
    return bv.or_(reads(old_acl), reads(node_acl), reads(parent_acl))
