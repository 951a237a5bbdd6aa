"""XenStore node names.

Room: what a path may be, and how a connection's path names a node. No
state. Imports :mod:`spec.xenstore.errors`.

A node is named by an absolute path of components joined by ``/``
(``/local/domain/3/name``); ``/`` is the root. A path that does not start
with ``/`` is relative to the connection's own directory,
``/local/domain/<domid>`` (``get_implicit_path`` in xenstored). Names that
start with ``@`` are the special watch nodes (``@introduceDomain``,
``@releaseDomain``), allowed only where an operation admits them (watches
and permissions). A valid name has only letters, digits and ``-/_@``, no
empty component (``//``) and no trailing ``/`` except the root's
(``canonicalize`` in ``tools/xenstored/core.c``); anything else is
``EINVAL``.

Length limits (``xs_wire.h``): an absolute path of at most
:data:`ABS_PATH_MAX` bytes; for an unprivileged domain, the part after
``/local/domain/<domid>/`` at most :data:`REL_PATH_MAX` (the ``path-max``
quota). A longer name is ``EINVAL``.
"""

from __future__ import annotations

import re

from spec.xenstore.errors import XenstoreError

#: XENSTORE_ABS_PATH_MAX and XENSTORE_REL_PATH_MAX (xs_wire.h)
ABS_PATH_MAX = 3072
REL_PATH_MAX = 2048

#: the special nodes that name events rather than data
INTRODUCE_DOMAIN = "@introduceDomain"
RELEASE_DOMAIN = "@releaseDomain"
SPECIAL = (INTRODUCE_DOMAIN, RELEASE_DOMAIN)

_VALID = re.compile(r"[A-Za-z0-9\-/_@]+\Z")
_LOCAL = re.compile(r"/local/domain/(\d{1,5})/")


def domain_path(domid: int) -> str:
    """A domain's home directory (``XS_GET_DOMAIN_PATH``)."""
    return f"/local/domain/{domid}"


def canonicalize(path: str, domid: int, privileged: bool, allow_special: bool = False) -> str:
    """The absolute name ``path`` stands for on a connection of ``domid``."""
    if not path or not _VALID.match(path) or (path[0] == "@" and not allow_special):
        raise XenstoreError("EINVAL", path, "not a valid node name")
    name = path if path[0] in "/@" else f"{domain_path(domid)}/{path}"
    if (name.endswith("/") and name != "/") or "//" in name:
        raise XenstoreError("EINVAL", path, "empty path component")
    if len(name.encode()) > ABS_PATH_MAX:
        raise XenstoreError("EINVAL", path[:64] + "...", f"longer than {ABS_PATH_MAX} bytes")
    local = _LOCAL.match(name)
    if not privileged and len(name) - (local.end() if local else 0) > REL_PATH_MAX:
        raise XenstoreError("EINVAL", path[:64] + "...", f"longer than {REL_PATH_MAX} bytes")
    return name


def relative_to(name: str, domid: int) -> str:
    """``name`` as a connection that used a relative path sees it."""
    prefix = domain_path(domid) + "/"
    return name[len(prefix):] if name.startswith(prefix) else name


def parent(name: str) -> str:
    """The parent of a node other than the root."""
    head = name.rsplit("/", 1)[0]
    return head or "/"


def basename(name: str) -> str:
    return name.rsplit("/", 1)[1]


def child(name: str, base: str) -> str:
    return f"/{base}" if name == "/" else f"{name}/{base}"


def is_child(name: str, ancestor: str) -> bool:
    """``name`` is ``ancestor`` or lies below it (``is_child`` in watch.c)."""
    if ancestor == "/":
        return name.startswith("/")
    return name == ancestor or name.startswith(ancestor + "/")


def ancestors(name: str) -> list[str]:
    """The proper ancestors of ``name``, nearest first, the root last."""
    out = []
    while name != "/":
        name = parent(name)
        out.append(name)
    return out
