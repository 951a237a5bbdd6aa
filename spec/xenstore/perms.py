"""XenStore permissions: who may read and write a node.

Room: a node's access control list and the three rules over it: the access
a connection has (:func:`access`), what an operation needs
(:func:`allows`), and the list a new node gets (:func:`inherit`). Written
over :mod:`spec.bv`, so that :mod:`proofs.xenstore` checks these very
functions with Z3 terms. Imports :mod:`spec.bv`, :mod:`spec.xenstore.errors`.

Every node carries a list of ``(domid, permission)`` entries
(``struct xs_permissions``; on the wire ``r0``, ``w5``, ``b3``, ``n0``: a
letter for none/read/write/both, then the domid). The first entry is
special: its domid *owns* the node, and its permission is the default for
every domain the list does not name. ``perm_for_conn`` in
``tools/xenstored/core.c``:

1. dom0 (the tools: every socket connection and domain 0 itself) and the
   owner get read, write and owner rights;
2. otherwise the first later entry naming the domain decides;
3. otherwise the first entry's permission.

A node created by an unprivileged domain inherits its parent's list with
that domain as the owner ("unpriv domains own what they create",
``construct_node``): the domain is then charged for the node in its quota
(:mod:`spec.xenstore.quota`), and no one else's rights change. Nodes dom0
creates keep the parent's list unchanged.

Not modelled: ``DOMID_ANY`` entries and the ``XS_PERM_IGNORE`` flag of newer
xenstoreds, and ``XS_SET_TARGET`` (a stub domain acting for its target).
"""

from __future__ import annotations

from dataclasses import dataclass

from spec import bv
from spec.xenstore.errors import XenstoreError

#: permission bits (``XS_PERM_*`` in ``xenstore_lib.h``)
NONE, READ, WRITE, OWNER = 0, 1, 2, 8
BOTH = READ | WRITE
BITS = 8
DOMID_BITS = 16

LETTERS = {"n": NONE, "r": READ, "w": WRITE, "b": BOTH}
_LETTER_OF = {v: k for k, v in LETTERS.items()}


@dataclass(frozen=True)
class Perm:
    """One entry of a node's list: a domid and its permission bits."""

    domid: bv.Word
    perm: bv.Word

    def __str__(self) -> str:
        return f"{_LETTER_OF[self.perm]}{self.domid}"


Acl = tuple  # tuple[Perm, ...], the owner's entry first


def access(domid: bv.Word, privileged: bv.Bit, acl: Acl) -> bv.Word:
    """The permission bits a connection of ``domid`` has on a node with
    ``acl`` (``perm_for_conn``): everything for the tools and the owner,
    else the first later entry that names the domain, else the default."""
    owner = acl[0]
    rights = bv.band(owner.perm, BOTH, BITS)
    for entry in reversed(acl[1:]):
        rights = bv.ite(bv.eq(entry.domid, domid), bv.band(entry.perm, BOTH, BITS), rights)
    return bv.ite(bv.or_(privileged, bv.eq(owner.domid, domid)), BOTH | OWNER, rights)


def allows(domid: bv.Word, privileged: bv.Bit, acl: Acl, need: int) -> bv.Bit:
    """The connection has every right in ``need`` (``get_node_chk_perm``)."""
    return bv.eq(bv.band(access(domid, privileged, acl), need, BITS), need)


def inherit(parent_acl: Acl, creator: bv.Word, privileged: bv.Bit) -> Acl:
    """The list of a node created under a parent with ``parent_acl``: the
    parent's, with an unprivileged creator as owner."""
    owner = parent_acl[0]
    return (Perm(bv.ite(privileged, owner.domid, creator), owner.perm),) + tuple(parent_acl[1:])


def may_set(domid: bv.Word, privileged: bv.Bit, acl: Acl, new_owner: bv.Word) -> bv.Bit:
    """``XS_SET_PERMS`` is allowed: the connection owns the node (or is the
    tools), and an unprivileged one keeps the owner."""
    return bv.and_(allows(domid, privileged, acl, WRITE | OWNER),
                   bv.or_(privileged, bv.eq(new_owner, acl[0].domid)))


def parse(words: list[str]) -> Acl:
    """A list from its wire strings (``xenstore_strings_to_perms``)."""
    if not words:
        raise XenstoreError("EINVAL", "", "no permissions")
    out = []
    for word in words:
        if len(word) < 2 or word[0] not in LETTERS or not word[1:].isascii() \
                or not word[1:].isdigit() \
                or int(word[1:]) > 0xFFFF:
            raise XenstoreError("EINVAL", word, "a permission is n, r, w or b and a domid")
        out.append(Perm(int(word[1:]), LETTERS[word[0]]))
    return tuple(out)


def format_acl(acl: Acl) -> list[str]:
    return [str(entry) for entry in acl]
