"""The XenStore client interface, and the in-process store behind it for now.

Room: control plane. How xend and qemu-dm reach XenStore: read, write,
mkdir, directory, rm on slash-separated paths, each traced. One
implementation, used by both engines (``DESIGN.md``). Imports
:mod:`spec.trace`.

XenStore is a tree of nodes, each with a string value and children; a path
names a node from the root (``/local/domain/3/name``). Writing a node
creates its missing ancestors with empty values; removing a node removes
its subtree. This module's :class:`InProcessStore` keeps the tree in the
host process and hands out :class:`Connection` objects, one per client
(``xend``, ``qemu-dm``), that trace every operation. The XenStore daemon
with permissions, transactions, watches and the wire protocol of
``xs_wire.h`` replaces the store behind the same interface later (issue 7);
the clients do not change.
"""

from __future__ import annotations

from typing import Callable, Protocol

from spec import trace


class XenstoreError(Exception):
    """An operation XenStore refuses; ``errno`` is the ``xs_wire.h`` name."""

    def __init__(self, errno: str, path: str) -> None:
        super().__init__(f"{errno}: {path}")
        self.errno = errno
        self.path = path


class XsClient(Protocol):
    """What a XenStore client can do (``xs_read``, ``xs_write``, ...)."""

    def read(self, path: str) -> str: ...

    def write(self, path: str, value: str) -> None: ...

    def mkdir(self, path: str) -> None: ...

    def directory(self, path: str) -> list[str]: ...

    def rm(self, path: str) -> None: ...


def _check(path: str) -> list[str]:
    """The path's components; ``EINVAL`` for a path that is not absolute,
    has an empty component or characters XenStore does not allow."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-/_@")
    if not path.startswith("/") or (path != "/" and path.endswith("/")) or "//" in path \
            or not set(path) <= allowed:
        raise XenstoreError("EINVAL", path)
    return [part for part in path.split("/") if part]


class InProcessStore:
    """The tree, in this process."""

    def __init__(self, emit: Callable[[trace.Event], None]) -> None:
        self.emit = emit
        self.root: dict = {"": "", "children": {}}

    def connect(self, client: str) -> "Connection":
        return Connection(self, client)

    def _node(self, path: str, create: bool = False) -> dict | None:
        node = self.root
        for part in _check(path):
            children = node["children"]
            if part not in children:
                if not create:
                    return None
                children[part] = {"": "", "children": {}}
            node = children[part]
        return node


class Connection:
    """One client's connection; every operation is a trace event."""

    def __init__(self, store: InProcessStore, client: str) -> None:
        self.store = store
        self.client = client

    def _trace(self, op: str, path: str, value: str = "") -> None:
        self.store.emit(trace.XenstoreOp(client=self.client, op=op, path=path, value=value))

    def read(self, path: str) -> str:
        node = self.store._node(path)
        if node is None:
            self._trace("read", path, "ENOENT")
            raise XenstoreError("ENOENT", path)
        self._trace("read", path, node[""])
        return node[""]

    def write(self, path: str, value: str) -> None:
        self.store._node(path, create=True)[""] = value
        self._trace("write", path, value)

    def mkdir(self, path: str) -> None:
        self.store._node(path, create=True)
        self._trace("mkdir", path)

    def directory(self, path: str) -> list[str]:
        node = self.store._node(path)
        if node is None:
            raise XenstoreError("ENOENT", path)
        names = sorted(node["children"])
        self._trace("directory", path, " ".join(names))
        return names

    def rm(self, path: str) -> None:
        parts = _check(path)
        parent = self.store._node("/" + "/".join(parts[:-1])) if parts else None
        if parent is None or parts[-1] not in parent["children"]:
            raise XenstoreError("ENOENT", path)
        del parent["children"][parts[-1]]
        self._trace("rm", path)
