"""The error replies of XenStore.

Room: the one exception every XenStore operation raises. ``xs_wire.h``
names the errors by their errno names (``xsd_errors[]``); a refused
operation's reply is an ``XS_ERROR`` message carrying that name.
"""

from __future__ import annotations

#: the errno names ``xs_wire.h`` lists (``xsd_errors[]``), in its order
ERRORS = ("EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM", "ENOSPC", "EIO",
          "ENOTEMPTY", "ENOSYS", "EROFS", "EBUSY", "EAGAIN", "EISCONN", "E2BIG", "EPERM")


class XenstoreError(Exception):
    """An operation XenStore refuses; ``errno`` is the ``xs_wire.h`` name,
    ``path`` what it was asked about."""

    def __init__(self, errno: str, path: str = "", detail: str = "") -> None:
        if errno not in ERRORS:
            raise ValueError(f"{errno!r} is not an xs_wire.h error")
        super().__init__(f"{errno}: {path}" + (f" ({detail})" if detail else ""))
        self.errno = errno
        self.path = path
        self.detail = detail
