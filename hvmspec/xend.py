"""``hvmspec xend``: a host that runs domains until told otherwise, and ``xm``'s way in.

Room: the long-running host process. It owns one engine host (Xen and its
domains, dom0's qemu-dms, :mod:`spec.dom0`'s xenstored and xend), serves
that XenStore to the world on a socket (:mod:`hvmspec.xenstored`), and
takes ``xm`` commands on another socket. The lifecycle rules are
:mod:`spec.xend`'s; this module only schedules and carries requests.

Threads: the scheduler (the caller of :meth:`XendDaemon.serve_forever`)
runs the host's rounds and the xm commands, one at a time, holding the
store's lock (xenstored's clients take it for each request); the XenStore
socket has its asyncio thread; the xm socket a thread per client.

The xm protocol: one JSON object per line each way. A request is
``{"cmd": ..., ...}``; the reply ``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``:

=============  ==================================  ==============================
``cmd``        arguments                           reply
=============  ==================================  ==============================
``create``     ``config`` (the file's text),       ``domid``, ``name``
               ``source``, ``paused``
``list``                                           ``domains``: xm list's rows
``pause``,     ``domain`` (a name or an ID)        ``domid``
``unpause``,
``shutdown``,
``reboot``,
``destroy``
``console``    ``domain``                          ``output``: its COM1 bytes so far
``history``                                        ``events``: lifecycle transitions
=============  ==================================  ==============================
"""

from __future__ import annotations

import json
import os
import queue
import socketserver
import sys
import threading
from collections import defaultdict
from pathlib import Path
from typing import Callable

from spec import trace
from spec.loader import GuestError
from spec.xend import DeviceModelError, XendError
from spec.xm_config import parse
from hvmspec import xenstored

#: a guest that never powers off may run this long (virtual instructions)
BUDGET = 10 ** 15
#: instructions a vcpu runs before the host looks at xm's commands again
SLICE = 20_000


def default_dir() -> Path:
    """Where ``hvmspec xend`` and ``hvmspec xm`` meet by default."""
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/hvmspec-{os.getuid()}"
    return Path(base) / "hvmspec"


class XendDaemon:
    """The host, its XenStore socket and its xm socket."""

    def __init__(self, engine: str, xm_socket: Path, xenstored_socket: Path,
                 trace_file: Path | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.log = log or (lambda line: print(f"xend: {line}", file=sys.stderr, flush=True))
        self.lock = threading.RLock()
        self.commands: queue.Queue = queue.Queue()
        self.consoles: dict[int, bytearray] = defaultdict(bytearray)
        self.history: list[dict] = []
        self._trace = open(trace_file, "w") if trace_file else None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.host = _host(engine, self._emit)
        self.host.slice = SLICE
        self.host.device_model_emit = self._device_model_emit
        self.xenstored = xenstored.Thread(self.host.dom0.store, xenstored_socket, self.lock)
        self.xm_socket = Path(xm_socket)
        self._server: socketserver.ThreadingUnixStreamServer | None = None

    # --- events ------------------------------------------------------------------------

    def _emit(self, event: trace.Event) -> None:
        if self._trace is not None:
            self._trace.write(json.dumps(event.to_json(), separators=(",", ":")) + "\n")
        if isinstance(event, trace.DomainLifecycle):
            self.history.append(event.to_json())
            self.log(f"domain {event.dom} ({event.name}): {event.old} -> {event.new}"
                     + (f" ({event.reason})" if event.reason else ""))

    def _device_model_emit(self, domid: int) -> Callable[[trace.Event], None]:
        console = self.consoles[domid]

        def emit(event: trace.Event) -> None:
            if isinstance(event, trace.SerialOut):
                console.append(event.byte)
            self._emit(event)
        return emit

    # --- serving -----------------------------------------------------------------------

    def start(self) -> None:
        self.xenstored.start()
        if self.xm_socket.exists():
            self.xm_socket.unlink()
        daemon = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for line in self.rfile:
                    reply = daemon.request(line)
                    self.wfile.write((json.dumps(reply) + "\n").encode())
                    self.wfile.flush()

        self._server = socketserver.ThreadingUnixStreamServer(str(self.xm_socket), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="xm", daemon=True).start()

    def request(self, line: bytes) -> dict:
        """One xm request, carried out by the scheduler thread."""
        try:
            req = json.loads(line)
            if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
                raise ValueError("a request is a JSON object with a 'cmd'")
        except ValueError as exc:
            return {"ok": False, "error": f"bad request: {exc}"}
        done = threading.Event()
        box: dict = {}
        self.commands.put((req, box, done))
        self._wake.set()
        done.wait()
        return box["reply"]

    def serve_forever(self) -> None:
        """Schedule the domains and carry out xm's commands until stopped."""
        try:
            while not self._stop.is_set():
                self._commands()
                with self.lock:
                    progressed = self.host.round()
                if not progressed:
                    self._wake.wait(0.05)
                    self._wake.clear()
        finally:
            self.close()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            try:
                self.xm_socket.unlink()
            except FileNotFoundError:
                pass
        self.xenstored.stop()
        if self._trace is not None:
            self._trace.close()
            self._trace = None

    def _commands(self) -> None:
        while True:
            try:
                req, box, done = self.commands.get_nowait()
            except queue.Empty:
                return
            with self.lock:
                try:
                    box["reply"] = {"ok": True, **self._carry_out(req)}
                except (XendError, DeviceModelError, GuestError) as exc:
                    box["reply"] = {"ok": False, "error": str(exc)}
                except Exception as exc:  # a bug: say so, keep serving the others
                    self.log(f"internal error on {req.get('cmd')}: {exc!r}")
                    box["reply"] = {"ok": False, "error": f"internal error: {exc!r}"}
            done.set()

    # --- the commands --------------------------------------------------------------------

    def _carry_out(self, req: dict) -> dict:
        xend, cmd = self.host.xend, req["cmd"]
        if cmd == "create":
            source = str(req.get("source", "<config>"))
            config = parse(str(req.get("config", "")), source)
            if not config.kernel:
                raise XendError(f"{source}: kernel is required (the guest image)")
            if any(r.config.name == config.name and r.live
                   for r in xend.domains.values()):
                raise XendError(f"a domain named {config.name!r} already exists")
            domid = xend.create(config, paused=bool(req.get("paused")))
            return {"domid": domid, "name": config.name}
        if cmd == "list":
            return {"domains": xend.list()}
        if cmd == "history":
            return {"events": list(self.history)}
        if cmd == "console" and str(req.get("domain")).isdigit() \
                and int(req["domain"]) in self.consoles:
            domid = int(req["domain"])      # a domain that is gone keeps its output
        else:
            domid = self._domid(req.get("domain"))
        if cmd == "pause":
            xend.pause(domid)
        elif cmd == "unpause":
            xend.unpause(domid)
        elif cmd in ("shutdown", "reboot"):
            xend.shutdown(domid, "poweroff" if cmd == "shutdown" else "reboot")
        elif cmd == "destroy":
            xend.destroy(domid)
        elif cmd == "console":
            return {"domid": domid,
                    "output": bytes(self.consoles.get(domid, b"")).decode("latin-1")}
        else:
            raise XendError(f"unknown command {cmd!r}")
        return {"domid": domid}

    def _domid(self, which) -> int:
        """A live domain by ID or by name."""
        live = {r.domid: r for r in self.host.xend.domains.values() if r.live}
        if isinstance(which, int) or (isinstance(which, str) and which.isdigit()):
            if int(which) in live:
                return int(which)
        else:
            for record in live.values():
                if record.config.name == which:
                    return record.domid
        raise XendError(f"domain {which!r} does not exist")


def _host(engine: str, emit):
    if engine == "reference":
        from spec.machine import ReferenceXen
        return ReferenceXen(None, emit, BUDGET)
    from impl.machine import Host
    return Host(None, emit, BUDGET)


class XmClient:
    """xm's end of the xm socket."""

    def __init__(self, socket_path: Path, timeout: float = 60.0) -> None:
        import socket
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(socket_path))
        self.file = self.sock.makefile("rwb")

    def call(self, cmd: str, **args) -> dict:
        self.file.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
        self.file.flush()
        line = self.file.readline()
        if not line:
            raise ConnectionError("xend closed the connection")
        return json.loads(line)

    def close(self) -> None:
        self.file.close()
        self.sock.close()
