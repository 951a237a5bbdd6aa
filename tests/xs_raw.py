"""A small XenStore client of the tests' own, on the raw wire protocol.

Written from ``xs_wire.h`` alone (a 16-byte little-endian header ``type,
req_id, tx_id, len``, then ``len`` bytes), independent of
:mod:`spec.xenstore.wire`, so that the daemon's framing is checked by
someone else's reading of the protocol. :class:`Client` blocks on a socket;
:class:`AsyncClient` is the same on asyncio, for the load test. Both keep the
watch events that arrive between replies.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import subprocess
import sys
import json
import time
from pathlib import Path

HEADER = struct.Struct("<IIII")
(DIRECTORY, READ, GET_PERMS, WATCH, UNWATCH, TRANSACTION_START, TRANSACTION_END, INTRODUCE,
 RELEASE, GET_DOMAIN_PATH, WRITE, MKDIR, RM, SET_PERMS, WATCH_EVENT, ERROR,
 IS_DOMAIN_INTRODUCED) = range(1, 18)
RESET_WATCHES = 21
DIRECTORY_PART = 22


class XsError(Exception):
    def __init__(self, errno: str) -> None:
        super().__init__(errno)
        self.errno = errno


def z(*parts: str | bytes) -> bytes:
    """Each part followed by a NUL."""
    return b"".join((p.encode() if isinstance(p, str) else p) + b"\0" for p in parts)


def message(kind: int, payload: bytes, req_id: int = 0, tx: int = 0) -> bytes:
    return HEADER.pack(kind, req_id, tx, len(payload)) + payload


def split(payload: bytes) -> list[str]:
    """NUL-terminated strings."""
    return [p.decode() for p in payload.split(b"\0")[:-1]]


class _Ops:
    """The operations, over ``self.call(kind, payload, tx) -> payload``."""

    def _ok(self, reply: bytes) -> None:
        assert reply == b"OK\0", reply


class Client(_Ops):
    """A blocking client: one request at a time."""

    def __init__(self, path: str | os.PathLike, timeout: float = 20.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.events: list[tuple[str, str]] = []
        self._req = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError(f"closed after {len(out)} of {n} bytes")
            out += chunk
        return out

    def receive(self) -> tuple[int, int, int, bytes]:
        kind, req_id, tx, length = HEADER.unpack(self._exact(HEADER.size))
        return kind, req_id, tx, self._exact(length)

    def send(self, kind: int, payload: bytes, tx: int = 0) -> int:
        self._req += 1
        self.sock.sendall(message(kind, payload, self._req, tx))
        return self._req

    def reply(self, req_id: int, kind: int, tx: int = 0) -> bytes:
        """The reply to ``req_id``; events that come first are kept."""
        while True:
            got, rid, rtx, payload = self.receive()
            if got == WATCH_EVENT:
                assert (rid, rtx) == (0, 0)
                path, token = split(payload)
                self.events.append((path, token))
                continue
            assert rid == req_id and rtx == tx, (rid, req_id, rtx, tx)
            if got == ERROR:
                assert payload.endswith(b"\0")
                raise XsError(payload[:-1].decode())
            assert got == kind, (got, kind, payload)
            return payload

    def call(self, kind: int, payload: bytes, tx: int = 0) -> bytes:
        return self.reply(self.send(kind, payload, tx), kind, tx)

    def wait_events(self, count: int, timeout: float = 10.0) -> list[tuple[str, str]]:
        """At least ``count`` events (read off the socket as needed)."""
        deadline = time.monotonic() + timeout
        while len(self.events) < count:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            kind, rid, tx, payload = self.receive()
            assert kind == WATCH_EVENT, (kind, payload)
            self.events.append(tuple(split(payload)))
        out, self.events = self.events, []
        return out

    def sync(self) -> list[tuple[str, str]]:
        """Every event queued before now: a request's reply comes after
        the events the daemon queued before it read the request."""
        self.call(GET_DOMAIN_PATH, z("0"))
        out, self.events = self.events, []
        return out

    # the operations
    def read(self, path: str, tx: int = 0) -> bytes:
        return self.call(READ, z(path), tx)

    def write(self, path: str, value: bytes | str, tx: int = 0) -> None:
        value = value.encode() if isinstance(value, str) else value
        self._ok(self.call(WRITE, z(path) + value, tx))

    def mkdir(self, path: str, tx: int = 0) -> None:
        self._ok(self.call(MKDIR, z(path), tx))

    def rm(self, path: str, tx: int = 0) -> None:
        self._ok(self.call(RM, z(path), tx))

    def directory(self, path: str, tx: int = 0) -> list[str]:
        return split(self.call(DIRECTORY, z(path), tx))

    def get_perms(self, path: str, tx: int = 0) -> list[str]:
        return split(self.call(GET_PERMS, z(path), tx))

    def set_perms(self, path: str, acl: list[str], tx: int = 0) -> None:
        self._ok(self.call(SET_PERMS, z(path, *acl), tx))

    def watch(self, path: str, token: str) -> None:
        self._ok(self.call(WATCH, z(path, token)))

    def unwatch(self, path: str, token: str) -> None:
        self._ok(self.call(UNWATCH, z(path, token)))

    def start(self) -> int:
        return int(split(self.call(TRANSACTION_START, b"\0"))[0])

    def end(self, tx: int, commit: bool = True) -> None:
        self._ok(self.call(TRANSACTION_END, z("T" if commit else "F"), tx))

    def introduce(self, domid: int, mfn: int = 1, port: int = 1) -> None:
        self._ok(self.call(INTRODUCE, z(str(domid), str(mfn), str(port))))

    def release(self, domid: int) -> None:
        self._ok(self.call(RELEASE, z(str(domid))))

    def tree(self, top: str = "/") -> dict[str, bytes]:
        """Every node at or below ``top``: name -> value."""
        out = {top: self.read(top)}
        for child in self.directory(top):
            out.update(self.tree(f"/{child}" if top == "/" else f"{top}/{child}"))
        return out


class AsyncClient:
    """An asyncio client; one request in flight at a time, events kept
    with the position (the number of replies received before them)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self._req = 0
        self.requests = 0

    async def connect(self, path: str) -> "AsyncClient":
        self.reader, self.writer = await asyncio.open_unix_connection(path)
        return self

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, BrokenPipeError):
            pass

    async def call(self, kind: int, payload: bytes, tx: int = 0) -> bytes:
        self._req += 1
        self.requests += 1
        self.writer.write(message(kind, payload, self._req, tx))
        while True:
            got, rid, rtx, length = HEADER.unpack(await self.reader.readexactly(HEADER.size))
            body = await self.reader.readexactly(length)
            if got == WATCH_EVENT:
                assert (rid, rtx) == (0, 0)
                path, token = split(body)
                self.events.append((path, token))
                continue
            assert (rid, rtx) == (self._req, tx), (rid, self._req, rtx, tx)
            if got == ERROR:
                raise XsError(body[:-1].decode())
            assert got == kind, (got, kind, body)
            return body


def spawn_daemon(socket_path: Path, extra_env: dict | None = None) -> subprocess.Popen:
    """``hvmspec xenstored --socket PATH --json`` as a user runs it; returns
    once it printed its JSON line."""
    exe = Path(sys.executable).with_name("hvmspec")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "hvmspec.cli"]
    proc = subprocess.Popen(cmd + ["xenstored", "--socket", str(socket_path), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, **(extra_env or {})))
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise RuntimeError(f"xenstored did not start: {proc.stderr.read()}")
    info = json.loads(line)
    assert info == {"socket": str(socket_path), "pid": proc.pid}, info
    return proc
