"""The XenStore wire protocol of ``xen/include/public/io/xs_wire.h``.

Room: messages (a 16-byte header and a payload) and what each request type
does to a :class:`~spec.xenstore.store.Connection`. No I/O: the daemon
(``hvmspec xenstored``, :mod:`hvmspec.xenstored`) reads bytes off a socket
and hands each whole message here; the client of :mod:`spec.xenstore.client`
builds requests with :func:`encode`. Imports :mod:`spec.xenstore`.

A message is ``struct xsd_sockmsg`` (four little-endian ``uint32_t``:
``type``, ``req_id``, ``tx_id``, ``len``) and ``len`` bytes of payload,
at most :data:`PAYLOAD_MAX`. Arguments are NUL-terminated strings, except a
written value, which is the rest of the payload as it is. The reply has the
request's type, ``req_id`` and ``tx_id``; a refusal is ``XS_ERROR`` with the
errno name and a NUL. A watch event is ``XS_WATCH_EVENT`` with ``path NUL
token NUL``, ``req_id`` and ``tx_id`` 0.

===========================  ==============================  ==========================
request                      payload                         reply payload
===========================  ==============================  ==========================
``XS_READ``                  path NUL                        the value (no NUL)
``XS_WRITE``                 path NUL value                  ``OK`` NUL
``XS_MKDIR``, ``XS_RM``      path NUL                        ``OK`` NUL
``XS_DIRECTORY``             path NUL                        each child's name NUL
``XS_DIRECTORY_PART``        path NUL offset NUL             generation NUL, names from
                                                             byte ``offset`` NUL each;
                                                             an extra NUL ends the list
``XS_GET_PERMS``             path NUL                        each entry NUL (``r0``)
``XS_SET_PERMS``             path NUL entry NUL ...          ``OK`` NUL
``XS_WATCH``                 path NUL token NUL              ``OK`` NUL, then an event
``XS_UNWATCH``               path NUL token NUL              ``OK`` NUL
``XS_TRANSACTION_START``     NUL                             the id NUL
``XS_TRANSACTION_END``       ``T`` or ``F`` NUL (``tx_id``)  ``OK`` NUL
``XS_INTRODUCE``             domid NUL mfn NUL port NUL      ``OK`` NUL
``XS_RELEASE``               domid NUL                       ``OK`` NUL
``XS_GET_DOMAIN_PATH``       domid NUL                       path NUL
``XS_IS_DOMAIN_INTRODUCED``  domid NUL                       ``T`` or ``F`` NUL
``XS_RESET_WATCHES``         (none)                          ``OK`` NUL
===========================  ==============================  ==========================

A malformed request (wrong number of strings, a path without its NUL, a
domid that is not a number) is ``EINVAL``; a type xenstored does not serve
is ``ENOSYS``; a reply longer than :data:`PAYLOAD_MAX` is ``E2BIG``. A
header announcing more than :data:`PAYLOAD_MAX` bytes is not a message at
all: xenstored drops that client (:class:`BadClient`), and only that one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from spec.xenstore.errors import XenstoreError
from spec.xenstore.store import Connection

#: message types (``enum xsd_sockmsg_type``)
TYPES = {
    "XS_CONTROL": 0, "XS_DIRECTORY": 1, "XS_READ": 2, "XS_GET_PERMS": 3, "XS_WATCH": 4,
    "XS_UNWATCH": 5, "XS_TRANSACTION_START": 6, "XS_TRANSACTION_END": 7,
    "XS_INTRODUCE": 8, "XS_RELEASE": 9, "XS_GET_DOMAIN_PATH": 10, "XS_WRITE": 11,
    "XS_MKDIR": 12, "XS_RM": 13, "XS_SET_PERMS": 14, "XS_WATCH_EVENT": 15, "XS_ERROR": 16,
    "XS_IS_DOMAIN_INTRODUCED": 17, "XS_RESUME": 18, "XS_SET_TARGET": 19,
    "XS_RESET_WATCHES": 21, "XS_DIRECTORY_PART": 22, "XS_GET_FEATURE": 23,
    "XS_SET_FEATURE": 24, "XS_GET_QUOTA": 25, "XS_SET_QUOTA": 26,
}
NAMES = {number: name for name, number in TYPES.items()}
globals().update(TYPES)

HEADER = struct.Struct("<IIII")
HEADER_SIZE = HEADER.size
#: XENSTORE_PAYLOAD_MAX
PAYLOAD_MAX = 4096


class BadClient(Exception):
    """Input that is not a message: the connection is closed."""


@dataclass(frozen=True)
class Message:
    type: int
    req_id: int
    tx_id: int
    payload: bytes

    @property
    def name(self) -> str:
        return NAMES.get(self.type, f"type {self.type}")


def encode(msg: Message) -> bytes:
    return HEADER.pack(msg.type, msg.req_id, msg.tx_id, len(msg.payload)) + msg.payload


def decode_header(raw: bytes) -> tuple[int, int, int, int]:
    """``(type, req_id, tx_id, len)``; :class:`BadClient` for a length over
    :data:`PAYLOAD_MAX`."""
    kind, req_id, tx_id, length = HEADER.unpack(raw)
    if length > PAYLOAD_MAX:
        raise BadClient(f"a {NAMES.get(kind, kind)} message of {length} bytes "
                        f"(at most {PAYLOAD_MAX})")
    return kind, req_id, tx_id, length


def strings(*parts: str | bytes) -> bytes:
    """Arguments as the wire carries them: each followed by a NUL."""
    return b"".join((p if isinstance(p, bytes) else p.encode("utf-8", "surrogateescape"))
                    + b"\0" for p in parts)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _args(payload: bytes, count: int) -> list[str]:
    """Exactly ``count`` NUL-terminated strings, nothing after them."""
    if not payload.endswith(b"\0") or payload.count(b"\0") != count:
        raise XenstoreError("EINVAL", "", f"expected {count} NUL-terminated string(s)")
    return [_text(p) for p in payload[:-1].split(b"\0")]


def _decimal(text: str) -> bool:
    """Only ASCII digits (``str.isdigit`` also takes ``²``, which ``int``
    refuses; xenstored's ``strtoul`` reads ASCII)."""
    return text.isascii() and text.isdigit()


def _domid(text: str) -> int:
    if not _decimal(text) or int(text) > 0xFFFF:
        raise XenstoreError("EINVAL", text, "not a domid")
    return int(text)


OK = b"OK\0"


def _directory_part(conn: Connection, path: str, offset_text: str, tx: int) -> bytes:
    """``send_directory_part``: as many names from byte ``offset`` of the
    NUL-separated list as fit, after the node's generation."""
    if not _decimal(offset_text):
        raise XenstoreError("EINVAL", offset_text, "not an offset")
    generation, names = conn.directory_generation(path, tx)
    gen = str(generation).encode() + b"\0"
    listing = strings(*names)
    offset = int(offset_text)
    if offset >= len(listing):
        return gen + b"\0"
    room = PAYLOAD_MAX - len(gen) - 1
    end = offset
    while end < len(listing):
        nxt = listing.index(b"\0", end) + 1
        if nxt - offset > room:
            break
        end = nxt
    if end == offset:
        raise XenstoreError("E2BIG", path, "a child name does not fit one reply")
    chunk = listing[offset:end]
    return gen + chunk + (b"\0" if end == len(listing) else b"")


def _perform(conn: Connection, msg: Message) -> bytes:
    """The reply payload of one request, or :class:`XenstoreError`."""
    kind, p, tx = msg.type, msg.payload, msg.tx_id
    if kind == XS_READ:
        return conn.read(*_args(p, 1), tx=tx).encode("utf-8", "surrogateescape")
    if kind == XS_WRITE:
        nul = p.find(b"\0")
        if nul < 0:
            raise XenstoreError("EINVAL", "", "a write names a path and then the value")
        conn.write(_text(p[:nul]), p[nul + 1:], tx=tx)
        return OK
    if kind == XS_MKDIR:
        conn.mkdir(*_args(p, 1), tx=tx)
        return OK
    if kind == XS_RM:
        conn.rm(*_args(p, 1), tx=tx)
        return OK
    if kind == XS_DIRECTORY:
        return strings(*conn.directory(*_args(p, 1), tx=tx))
    if kind == XS_DIRECTORY_PART:
        return _directory_part(conn, *_args(p, 2), tx)
    if kind == XS_GET_PERMS:
        return strings(*conn.get_perms(*_args(p, 1), tx=tx))
    if kind == XS_SET_PERMS:
        if not p.endswith(b"\0") or p.count(b"\0") < 2:
            raise XenstoreError("EINVAL", "", "a path and at least one permission")
        path, *acl = _args(p, p.count(b"\0"))
        conn.set_perms(path, acl, tx=tx)
        return OK
    if kind == XS_WATCH:
        conn.watch(*_args(p, 2))
        return OK
    if kind == XS_UNWATCH:
        conn.unwatch(*_args(p, 2))
        return OK
    if kind == XS_TRANSACTION_START:
        if tx != 0:
            raise XenstoreError("EBUSY", "", "already in a transaction")
        if p not in (b"", b"\0"):
            raise XenstoreError("EINVAL", "", "no arguments expected")
        return strings(str(conn.transaction_start()))
    if kind == XS_TRANSACTION_END:
        (word,) = _args(p, 1)
        if word not in ("T", "F"):
            raise XenstoreError("EINVAL", word, "T to commit or F to abort")
        if tx == 0:
            raise XenstoreError("ENOENT", "", "no transaction named in the header")
        conn.transaction_end(tx, word == "T")
        return OK
    if kind == XS_INTRODUCE:
        domid, mfn, port = _args(p, 3)
        if not _decimal(mfn) or not _decimal(port):
            raise XenstoreError("EINVAL", mfn, "mfn and port are numbers")
        conn.introduce(_domid(domid), int(mfn), int(port))
        return OK
    if kind == XS_RELEASE:
        conn.release(_domid(*_args(p, 1)))
        return OK
    if kind == XS_GET_DOMAIN_PATH:
        return strings(conn.get_domain_path(_domid(*_args(p, 1))))
    if kind == XS_IS_DOMAIN_INTRODUCED:
        return b"T\0" if conn.is_domain_introduced(_domid(*_args(p, 1))) else b"F\0"
    if kind == XS_RESET_WATCHES:
        conn.reset_watches()
        return OK
    raise XenstoreError("ENOSYS", NAMES.get(kind, str(kind)), "not served")


def handle(conn: Connection, msg: Message) -> Message:
    """The reply to one request. Watch events the request caused wait in
    ``conn.events`` (and other connections'): :func:`events` sends them
    after the reply."""
    try:
        payload = _perform(conn, msg)
    except XenstoreError as exc:
        return Message(XS_ERROR, msg.req_id, msg.tx_id, strings(exc.errno))
    if len(payload) > PAYLOAD_MAX:
        return Message(XS_ERROR, msg.req_id, msg.tx_id, strings("E2BIG"))
    return Message(msg.type, msg.req_id, msg.tx_id, payload)


def events(conn: Connection) -> list[Message]:
    """The connection's waiting watch events, as messages."""
    return [Message(XS_WATCH_EVENT, 0, 0, strings(path, token))
            for path, token in conn.take_events()]
