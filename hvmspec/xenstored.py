"""``hvmspec xenstored``: the XenStore daemon on a Unix socket.

Room: the transport. Sockets, framing, many concurrent clients (asyncio),
and what happens to a client that misbehaves. What a request *does* is
:mod:`spec.xenstore.wire` on a :class:`spec.xenstore.Store`; nothing about
XenStore's semantics lives here.

* The main socket (``--socket PATH``, where ``XENSTORED_PATH`` points the
  Xen tools) serves the tools: each client is a dom0 connection.
* An introduced domain's ring is, here, a second socket beside it,
  ``PATH.d<domid>``: a client there acts as that domain, with its
  permissions, quotas and relative paths. It goes when the domain is
  released or dies.
* A header announcing more than ``XENSTORE_PAYLOAD_MAX`` bytes, a client
  that goes away in the middle of a message, or one that stops reading
  while more than :data:`MAX_UNSENT` bytes of replies and events wait
  for it: that client is dropped, with a line on stderr, and nobody else
  notices. Everything a request committed stays committed.
* Requests are handled one at a time on the event loop, so each is atomic
  with respect to every other client, as in xenstored.
* One daemon per socket (:func:`claim`): a second one for the same path
  refuses to start (:class:`AlreadyRunning`, naming the live one's pid)
  instead of taking the socket over; only a stale socket, one that nothing
  listens on any more, is replaced. ``hvmspec xend`` claims its sockets the
  same way.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import signal
import socket
import stat
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from spec.xenstore import Store
from spec.xenstore import wire
from spec.xenstore.store import Connection

#: bytes a client may leave unread before it is dropped
MAX_UNSENT = 16 << 20


# --- one daemon per socket ---------------------------------------------------------------

class AlreadyRunning(Exception):
    """A live process serves the socket path; ``pid`` is its process ID
    (None if it could not be learnt)."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.path, self.pid = Path(path), pid
        super().__init__(f"{path} is served by a running process "
                         f"({'pid ' + str(pid) if pid else 'pid unknown'})")


class Claim:
    """The right to serve one socket path, held while the daemon lives: the
    pid file ``PATH.pid`` beside the socket, locked with ``flock`` and
    holding the daemon's pid. :meth:`release` removes it."""

    def __init__(self, path: Path, pid_path: Path, fd: int) -> None:
        self.path, self.pid_path, self._fd = path, pid_path, fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if os.stat(self.pid_path).st_ino == os.fstat(self._fd).st_ino:
                os.unlink(self.pid_path)
        except FileNotFoundError:
            pass
        os.close(self._fd)         # the lock goes with the last descriptor
        self._fd = None


def pid_file(path: str | os.PathLike) -> Path:
    """The pid file of the daemon that serves the socket ``path``."""
    path = Path(path)
    return path.with_name(path.name + ".pid")


def claim(path: str | os.PathLike) -> Claim:
    """Become the one daemon serving the socket ``path``, or raise
    :class:`AlreadyRunning`.

    Real xenstored refuses to run twice by locking its pid file
    (``write_pidfile`` in ``tools/xenstore/xenstored_core.c``: ``lockf(fd,
    F_TLOCK, 0)``, and it exits if that fails), and ``xend start`` does
    nothing while the pid in ``/var/run/xend.pid`` is alive
    (``SrvDaemon.cleanup_xend``). Here each socket has its own pid file,
    ``PATH.pid``, locked for the daemon's life with ``flock``: the kernel
    drops the lock when the process dies, however it dies, so two daemons
    starting at once cannot both win and a crashed one never blocks the
    next. The one that holds the lock then looks at the socket path:

    * nothing there: it is free;
    * a socket that refuses connections: stale (its daemon died without
      removing it); it is removed;
    * a socket that accepts a connection: a process that does not use the
      pid file serves it; :class:`AlreadyRunning` with that process's pid,
      asked of the kernel (``SO_PEERCRED``);
    * anything else (a file, a directory): :class:`OSError` ``EEXIST``,
      never removed.
    """
    path = Path(path)
    pid_path = pid_file(path)
    while True:
        fd = os.open(pid_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _pid_in(fd)
            os.close(fd)
            raise AlreadyRunning(path, pid) from None
        except BaseException:
            os.close(fd)
            raise
        # the holder before us may have removed the file between our open
        # and our lock: then the lock is on a file nobody else will look at
        try:
            if os.stat(pid_path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    held = Claim(path, pid_path, fd)
    try:
        _replace_stale(path)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except BaseException:
        held.release()
        raise
    return held


def _pid_in(fd: int, wait: float = 2.0) -> int | None:
    """The pid a locked pid file holds (its holder writes it just after
    taking the lock, so an empty file is read again for a while)."""
    end = time.monotonic() + wait
    while True:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return int(text)
        if time.monotonic() >= end:
            return None
        time.sleep(0.02)


def _replace_stale(path: Path) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(errno.EEXIST, "it exists and is not a socket (not replacing it)",
                      str(path))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            pass                                  # stale: nobody listens
        except (socket.timeout, BlockingIOError):
            raise AlreadyRunning(path, None) from None  # alive, its backlog full
        else:
            raise AlreadyRunning(path, _peer_pid(probe))
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _peer_pid(sock: socket.socket) -> int | None:
    """The pid of a connected Unix socket's peer (``SO_PEERCRED``)."""
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                struct.calcsize("3i"))
    except OSError:
        return None
    pid = struct.unpack("3i", creds)[0]
    return pid or None


class Daemon:
    """The daemon: a store served on a socket (and one per domain ring)."""

    def __init__(self, store: Store, socket_path: str | os.PathLike,
                 log: Callable[[str], None] | None = None,
                 lock: threading.RLock | None = None,
                 claimed: Claim | None = None) -> None:
        self.store = store
        #: held while a request runs: a host that shares the store (``hvmspec
        #: xend``) holds it too while its xend and qemu-dm use the store
        self.lock = lock or threading.RLock()
        self.socket_path = Path(socket_path)
        self.log = log or (lambda line: print(f"xenstored: {line}", file=sys.stderr))
        self.loop: asyncio.AbstractEventLoop | None = None
        self._servers: dict[int | None, asyncio.AbstractServer] = {}
        self._clients: dict[int | None, set[asyncio.StreamWriter]] = {}
        self.requests = 0
        self.dropped = 0
        #: the tasks serving connected clients
        self._tasks: set[asyncio.Task] = set()
        #: the socket path's pid file, locked (:func:`claim`)
        self._claim: Claim | None = claimed

    # --- serving -----------------------------------------------------------------------

    def claim(self) -> None:
        """Become the socket's one daemon (:func:`claim`); :meth:`start`
        does it if it was not done before."""
        if self._claim is None:
            self._claim = claim(self.socket_path)

    def release(self) -> None:
        if self._claim is not None:
            self._claim.release()
            self._claim = None

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.claim()
        try:
            await self._listen(None, self.socket_path)
        except BaseException:
            self.release()
            raise

    async def _listen(self, domid: int | None, path: Path) -> None:
        if domid is not None and (path.exists() or path.is_symlink()):
            path.unlink()       # a ring socket of ours, left by a daemon that died
        server = await asyncio.start_unix_server(
            lambda r, w: self._serve(r, w, domid), path=str(path))
        self._servers[domid] = server
        self._clients[domid] = set()

    def ring_path(self, domid: int) -> Path:
        return self.socket_path.with_name(f"{self.socket_path.name}.d{domid}")

    async def stop(self) -> None:
        for domid in list(self._servers):
            await self._close(domid)
        # let the clients' tasks see their connections closed and end, rather
        # than be cancelled by the loop's shutdown (asyncio logs those)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        self.release()

    async def _close(self, domid: int | None) -> None:
        server = self._servers.pop(domid, None)
        if server is None:
            return
        server.close()
        for writer in self._clients.pop(domid, set()):
            writer.close()
        path = self.socket_path if domid is None else self.ring_path(domid)
        try:
            path.unlink()
        except FileNotFoundError:
            pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     domid: int | None) -> None:
        name = "tools" if domid is None else f"dom{domid}"
        with self.lock:
            conn = self.store.connect(name, 0 if domid is None else domid)
        self._clients.setdefault(domid, set()).add(writer)
        task = asyncio.current_task()
        self._tasks.add(task)
        conn.on_event = lambda: self.loop.call_soon_threadsafe(self._flush, conn, writer)
        try:
            while True:
                try:
                    header = await reader.readexactly(wire.HEADER_SIZE)
                except asyncio.IncompleteReadError as exc:
                    if exc.partial:
                        self._drop(name, f"went away inside a header ({len(exc.partial)} "
                                         f"of {wire.HEADER_SIZE} bytes)")
                    return
                try:
                    kind, req_id, tx_id, length = wire.decode_header(header)
                except wire.BadClient as exc:
                    self._drop(name, str(exc))
                    return
                try:
                    payload = await reader.readexactly(length)
                except asyncio.IncompleteReadError as exc:
                    self._drop(name, f"went away inside a {wire.NAMES.get(kind, kind)} "
                                     f"message ({len(exc.partial)} of {length} bytes)")
                    return
                self.requests += 1
                with self.lock:
                    reply = wire.handle(conn, wire.Message(kind, req_id, tx_id, payload))
                await self._sync_rings()
                if writer.is_closing():
                    return
                writer.write(wire.encode(reply))
                self._flush(conn, writer)
                if writer.is_closing():
                    return
                await writer.drain()
        except (ConnectionResetError, BrokenPipeError):
            return
        finally:
            with self.lock:
                self.store.disconnect(conn)
            self._clients.get(domid, set()).discard(writer)
            self._tasks.discard(task)
            writer.close()

    def _flush(self, conn: Connection, writer: asyncio.StreamWriter) -> None:
        """Send the connection's waiting events, then hold it to
        :data:`MAX_UNSENT`: other clients' requests queue events for it, so
        the limit is checked here and not only after its own requests."""
        with self.lock:
            events = wire.events(conn)
        if writer.is_closing():
            return
        if events:
            # one write: after a failed send the transport is closed, and
            # asyncio complains about every further write to it
            writer.write(b"".join(wire.encode(event) for event in events))
        if writer.transport.get_write_buffer_size() > MAX_UNSENT:
            self._drop(conn.name, f"does not read its replies or events "
                                  f"({MAX_UNSENT} bytes wait)")
            with self.lock:
                self.store.disconnect(conn)
            writer.transport.abort()

    async def _sync_rings(self) -> None:
        """A ring socket for each domain introduced, none for those gone."""
        served = {d for d in self._servers if d is not None}
        with self.lock:
            live = set(self.store.domains)
        for domid in sorted(live - served):
            await self._listen(domid, self.ring_path(domid))
        for domid in sorted(served - live):
            await self._close(domid)

    def _drop(self, name: str, why: str) -> None:
        self.dropped += 1
        self.log(f"dropped client {name}: {why}")

    # --- running in a thread beside an engine ------------------------------------------

    def call(self, fn: Callable[[], object]) -> object:
        """Run ``fn`` on the daemon's loop (where the store lives) and wait."""
        future = asyncio.run_coroutine_threadsafe(_call(fn), self.loop)
        return future.result()


async def _call(fn: Callable[[], object]) -> object:
    return fn()


class Thread:
    """The daemon on its own event loop in a background thread."""

    def __init__(self, store: Store, socket_path: str | os.PathLike,
                 lock: threading.RLock | None = None, claimed: Claim | None = None) -> None:
        self.daemon = Daemon(store, socket_path, lock=lock, claimed=claimed)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="xenstored", daemon=True)
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    def start(self) -> "Thread":
        """Serve; raises what starting raised (:class:`AlreadyRunning`,
        :class:`OSError`)."""
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.daemon.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stop.wait()
        await self.daemon.stop()

    def stop(self) -> None:
        loop = self.daemon.loop
        if self._error is None and loop is not None and self._stop is not None:
            loop.call_soon_threadsafe(self._stop.set)
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.daemon.release()


def serve(socket_path: str, ready: Callable[[Daemon], None] | None = None) -> int:
    """``hvmspec xenstored``: serve until SIGINT or SIGTERM; exit code 0."""
    async def main() -> None:
        daemon = Daemon(Store(), socket_path)
        await daemon.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if ready:
            ready(daemon)
        await stop.wait()
        await daemon.stop()
    asyncio.run(main())
    return 0
