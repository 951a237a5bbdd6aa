"""The XenStore client interface that xend and qemu-dm program against.

Room: control plane. What a XenStore client can do (:class:`XsClient`, the
calls of Xen's ``xenstore.h``), and :func:`transact`, the retry loop every
client wraps a transaction in. A :class:`spec.xenstore.Connection` is such
a client: the engines' xend and qemu-dm each hold one on the host's store,
the same store ``hvmspec xend`` serves on its socket to Xen's own tools.
Imports :mod:`spec.xenstore.errors`.
"""

from __future__ import annotations

from typing import Callable, Protocol, TypeVar

from spec.xenstore.errors import XenstoreError

__all__ = ["XenstoreError", "XsClient", "transact"]

T = TypeVar("T")


class XsClient(Protocol):
    """``xs_read``, ``xs_write``, ... of ``xenstore.h``; ``tx`` names an
    open transaction (0: none)."""

    def read(self, path: str, tx: int = 0) -> str: ...

    def write(self, path: str, value: str, tx: int = 0) -> None: ...

    def mkdir(self, path: str, tx: int = 0) -> None: ...

    def directory(self, path: str, tx: int = 0) -> list[str]: ...

    def rm(self, path: str, tx: int = 0) -> None: ...

    def get_perms(self, path: str, tx: int = 0) -> list[str]: ...

    def set_perms(self, path: str, acl: list[str], tx: int = 0) -> None: ...

    def watch(self, path: str, token: str) -> None: ...

    def unwatch(self, path: str, token: str) -> None: ...

    def take_events(self) -> list[tuple[str, str]]: ...

    def transaction_start(self) -> int: ...

    def transaction_end(self, tx: int, commit: bool = True) -> None: ...

    def introduce(self, domid: int, mfn: int, port: int) -> object: ...

    def release(self, domid: int) -> None: ...


def transact(xs: XsClient, body: Callable[[int], T], attempts: int = 100) -> T:
    """Run ``body(tx)`` in a transaction and commit it, starting again from
    the beginning while the commit answers ``EAGAIN`` (what ``xstransact``
    in xend and every libxenstore user does)."""
    for _ in range(attempts):
        tx = xs.transaction_start()
        try:
            result = body(tx)
        except BaseException:
            xs.transaction_end(tx, commit=False)
            raise
        try:
            xs.transaction_end(tx, commit=True)
        except XenstoreError as exc:
            if exc.errno == "EAGAIN":
                continue
            raise
        return result
    raise XenstoreError("EAGAIN", "", f"no commit after {attempts} attempts")
