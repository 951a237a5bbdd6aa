"""``hvmspec xend``: a host that runs domains until told otherwise, and ``xm``'s way in.

Room: the long-running host process. It owns one engine host (Xen and its
domains, dom0's qemu-dms, :mod:`spec.dom0`'s xenstored and xend), serves
that XenStore to the world on a socket (:mod:`hvmspec.xenstored`), and
takes ``xm`` commands on another socket. The lifecycle rules are
:mod:`spec.xend`'s; this module only schedules and carries requests.

A domain created with ``vnc = 1`` gets qemu-dm's VNC display
(:mod:`hvmspec.vnc_display`): its server runs in a thread of its own, and
what clients type waits there until the domain's qemu-dm takes it in its
next pass.

Threads: the scheduler (the caller of :meth:`XendDaemon.serve_forever`)
runs the host's rounds and the xm commands, one at a time, holding the
store's lock (xenstored's clients take it for each request); the XenStore
socket has its asyncio thread; the xm socket a thread per client.

One xend per directory: its two sockets are claimed before anything else
(:func:`hvmspec.xenstored.claim`), so a second ``hvmspec xend`` for the
same directory, or a ``hvmspec xenstored`` on its XenStore socket, refuses
to start, naming the running one's pid.

Where xend and xm meet (:func:`xend_dir`): ``--dir DIR``, else the
directory in ``$HVMSPEC_DIR``, else :func:`default_dir`.

The xm protocol: one JSON object per line each way. A request is
``{"cmd": ..., ...}``; the reply ``{"ok": true, ...}`` or
``{"ok": false, "error": "...", "kind": ...}``, where ``kind`` is
``"config"`` for a bad configuration (the file, its name, its kernel: xm
exits 2), ``"request"`` for a request xend cannot read, and ``"refused"``
for a request xend will not carry out (no such domain, a domain in the
wrong state, a name in use: xm exits 1):

=============  ==================================  ==============================
``cmd``        arguments                           reply
=============  ==================================  ==============================
``create``     ``config`` (the file's text),       ``domid``, ``name``
               ``source`` (the file's name, for
               messages), ``directory`` (its
               directory, absolute: a relative
               ``kernel`` is there), ``paused``
``list``                                           ``domains``: xm list's rows
``pause``,     ``domain`` (a name or an ID)        ``domid``
``unpause``,
``shutdown``,
``reboot``,
``destroy``
``block-``     ``domain``, ``uname``               ``domid``
``configure``  (``file:PATH``, absolute, or ""
               to eject), ``dev``
               (``hdc:cdrom``), ``mode`` (``r``):
               a CD-ROM drive's new medium
``console``    ``domain``; ``offset`` (optional:   ``output``: its COM1 bytes
               the output from there on),          from ``offset`` on (all by
               ``input`` (optional: characters     default), ``offset``: the
               typed into its COM1, code points    output's length so far,
               0-255, before the output is read)   ``live``: the domain runs
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

from spec import platform, trace
from spec.loader import GuestError
from spec.xend import DOM0_NAME, DeviceModelError, XendError, parse_disk
from spec.xm_config import ConfigFileError, parse
from hvmspec import xenstored

#: a guest that never powers off may run this long (virtual instructions)
BUDGET = 10 ** 15
#: instructions a vcpu runs before the host looks at xm's commands again
#: (the preemption timer), by engine: each about a hundredth of a second
#: of the host's time at the engine's speed (the reference runs some ten
#: thousand instructions a second, impl tens of millions; a run of impl's
#: costs a stop point where its budget ends, so a short slice made a Linux
#: boot several times slower)
SLICES = {"reference": 20_000, "impl": 1_000_000}


#: the environment variable that names xend's directory, for xend and xm
DIR_VARIABLE = "HVMSPEC_DIR"


def default_dir() -> Path:
    """Where ``hvmspec xend`` and ``hvmspec xm`` meet when neither ``--dir``
    nor ``$HVMSPEC_DIR`` says: ``$XDG_RUNTIME_DIR/hvmspec``, or
    ``/tmp/hvmspec-UID/hvmspec``."""
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/hvmspec-{os.getuid()}"
    return Path(base) / "hvmspec"


def xend_dir(given: Path | None) -> tuple[Path, str]:
    """xend's directory and what chose it: ``given`` (``--dir``), else
    ``$HVMSPEC_DIR``, else :func:`default_dir`."""
    if given is not None:
        return Path(given), "given by --dir"
    if os.environ.get(DIR_VARIABLE):
        return Path(os.environ[DIR_VARIABLE]), f"given by ${DIR_VARIABLE}"
    return default_dir(), f"the default, as neither --dir nor ${DIR_VARIABLE} is set"


class ConsoleLine:
    """A domain's COM1 line as ``xm console`` reaches it (``serial =
    'pty'``): what xm types waits here until the domain's qemu-dm takes it
    at its next pass (``read``), as a pty's bytes wait for qemu-dm's
    ``select``. The UART then receives it at its line rate; bytes that
    arrive before the guest reads them are lost, as on the real part."""

    def __init__(self, wake: threading.Event) -> None:
        self._typed = bytearray()
        self._lock = threading.Lock()
        self._wake = wake

    def type(self, data: bytes) -> None:
        with self._lock:
            self._typed += data
        self._wake.set()

    def read(self) -> bytes:
        with self._lock:
            data, self._typed = bytes(self._typed), bytearray()
        return data

    def wait(self, seconds: float) -> bool:
        return True                 # xend waits for its own wake-ups


class XendDaemon:
    """The host, its XenStore socket and its xm socket."""

    def __init__(self, engine: str, xm_socket: Path, xenstored_socket: Path,
                 trace_file: Path | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.log = log or (lambda line: print(f"xend: {line}", file=sys.stderr, flush=True))
        self.xm_socket = Path(xm_socket)
        self.lock = threading.RLock()
        self.commands: queue.Queue = queue.Queue()
        self.consoles: dict[int, bytearray] = defaultdict(bytearray)
        #: each domain's COM1 line, which xm console types into
        self.lines: dict[int, ConsoleLine] = {}
        self.history: list[dict] = []
        self._server: socketserver.ThreadingUnixStreamServer | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        # both sockets are claimed before anything else is touched (a live
        # xend's trace file included): raises xenstored.AlreadyRunning
        self._claims = [xenstored.claim(self.xm_socket)]
        self.xenstored: xenstored.Thread | None = None
        self._trace = None
        try:
            self._claims.append(xenstored.claim(xenstored_socket))
            self._trace = open(trace_file, "w") if trace_file else None
            self.host = _host(engine, self._emit)
        except BaseException:
            self.close()
            raise
        self.host.slice = SLICES.get(engine, SLICES["impl"])
        self.host.device_model_emit = self._device_model_emit
        self.host.console_line = self._console_line
        from hvmspec.vnc_display import VncBackend
        #: the qemu-dms' VNC displays (xm's ``vnc = 1``)
        self.vnc = VncBackend(log=self.log, on_input=self._wake.set)
        self.host.vnc_backend = self.vnc
        self.xenstored = xenstored.Thread(self.host.dom0.store, xenstored_socket, self.lock,
                                          claimed=self._claims.pop())

    # --- events ------------------------------------------------------------------------

    def _emit(self, event: trace.Event) -> None:
        if self._trace is not None:
            trace.dump((event,), self._trace)
        if isinstance(event, trace.DomainLifecycle):
            self.history.append(event.to_json())
            self.log(f"domain {event.dom} ({event.name}): {event.old} -> {event.new}"
                     + (f" ({event.reason})" if event.reason else ""))

    def _device_model_emit(self, domid: int) -> Callable[[trace.Event], None]:
        console = self.consoles[domid]
        display = self.vnc.listener(domid)

        def emit(event: trace.Event) -> None:
            if isinstance(event, trace.SerialOut):
                console.append(event.byte)
            display(event)
            self._emit(event)
        return emit

    def _console_line(self, domid: int) -> ConsoleLine:
        line = self.lines[domid] = ConsoleLine(self._wake)
        return line

    # --- serving -----------------------------------------------------------------------

    def start(self) -> None:
        self.xenstored.start()
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
            return {"ok": False, "error": f"bad request: {exc}", "kind": "request"}
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
        if self.xenstored is not None:
            self.xenstored.stop()
        if getattr(self, "vnc", None) is not None:
            self.vnc.close()
        while self._claims:
            self._claims.pop().release()
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
                except ConfigFileError as exc:
                    box["reply"] = {"ok": False, "error": str(exc), "kind": "config"}
                except (XendError, DeviceModelError, GuestError) as exc:
                    box["reply"] = {"ok": False, "error": str(exc), "kind": "refused"}
                except Exception as exc:  # a bug: say so, keep serving the others
                    self.log(f"internal error on {req.get('cmd')}: {exc!r}")
                    box["reply"] = {"ok": False, "error": f"internal error: {exc!r}",
                                    "kind": "refused"}
            done.set()

    # --- the commands --------------------------------------------------------------------

    def _carry_out(self, req: dict) -> dict:
        xend, cmd = self.host.xend, req["cmd"]
        if cmd == "create":
            source = str(req.get("source", "<config>"))
            directory = req.get("directory")
            config = parse(str(req.get("config", "")), source,
                           str(directory) if directory is not None else None)
            if not config.kernel:
                raise ConfigFileError(f"{source}: kernel is required (the guest image)")
            xend.check_name(config.name)
            try:
                domid = xend.create(config, paused=bool(req.get("paused")))
            except GuestError as exc:    # the kernel: missing, bad source, too big
                raise ConfigFileError(f"{source}: kernel {config.kernel!r}: {exc}") from None
            except DeviceModelError as exc:     # qemu-dm cannot serve what it asks for
                raise ConfigFileError(f"{source}: {exc}") from None
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
        elif cmd == "block-configure":
            try:
                disk = parse_disk(f"{req.get('uname', '')},{req.get('dev', '')},"
                                  f"{req.get('mode', 'r')}")
            except XendError as exc:
                raise ConfigFileError(f"block-configure: {exc}") from None
            xend.block_configure(domid, disk)
        elif cmd == "console":
            return self._console(domid, req)
        else:
            raise XendError(f"unknown command {cmd!r}")
        return {"domid": domid}

    def _console(self, domid: int, req: dict) -> dict:
        """``xm console``: type ``input`` into the domain's COM1, then give
        its output from ``offset`` on."""
        if domid == platform.DOM0:
            raise XendError(f"domain {platform.DOM0} ({DOM0_NAME}) has no console here: "
                            f"it is the host")
        offset, typed = req.get("offset", 0), req.get("input", "")
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise XendError(f"console: offset must be a whole number, not {offset!r}")
        if not isinstance(typed, str) or any(ord(ch) > 0xFF for ch in typed):
            raise XendError("console: input must be a string of code points 0-255 (bytes)")
        live = domid in self.host.xend.domains and self.host.xend.domains[domid].live
        if typed:
            if not live or domid not in self.lines:
                raise XendError(f"domain {domid} is gone: nothing can be typed into its console")
            self.lines[domid].type(typed.encode("latin-1"))
        output = bytes(self.consoles.get(domid, b""))
        return {"domid": domid, "output": output[offset:].decode("latin-1"),
                "offset": len(output), "live": live}

    def _domid(self, which) -> int:
        """A live domain by ID or by name; dom0 by ``0`` or ``Domain-0``
        (which xend then refuses to act on, :meth:`spec.xend.Xend.destroy`)."""
        live = {r.domid: r for r in self.host.xend.domains.values() if r.live}
        if which in (platform.DOM0, str(platform.DOM0), DOM0_NAME):
            return platform.DOM0
        if isinstance(which, int) or (isinstance(which, str) and which.isdigit()):
            if int(which) in live:
                return int(which)
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


class XendBroken(Exception):
    """xend's socket answered, but not with an xm reply: it closed the
    connection, the connection broke, the reply is not JSON or not a reply,
    or none came in time."""


class XmClient:
    """xm's end of the xm socket. Connecting raises :class:`OSError` (no
    xend listens there); :meth:`call` raises :class:`XendBroken`."""

    def __init__(self, socket_path: Path, timeout: float = 60.0) -> None:
        import socket
        self.path, self.timeout = Path(socket_path), timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(socket_path))
        except BaseException:
            self.sock.close()
            raise
        self.file = self.sock.makefile("rwb")

    def call(self, cmd: str, **args) -> dict:
        """Send one request and read its reply: a JSON object with a
        boolean ``ok`` (and, if it is false, a string ``error``)."""
        import socket
        where = f"xend at {self.path}"
        try:
            self.file.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
            self.file.flush()
            line = self.file.readline()
        except socket.timeout:
            raise XendBroken(f"{where} did not answer '{cmd}' within {self.timeout:g} s") \
                from None
        except OSError as exc:
            raise XendBroken(f"the connection to {where} broke during '{cmd}': "
                             f"{exc.strerror or exc}") from None
        if not line.endswith(b"\n"):
            raise XendBroken(f"{where} closed the connection before it finished its reply "
                             f"to '{cmd}' ({len(line)} bytes came)")
        try:
            reply = json.loads(line)
        except ValueError:
            raise XendBroken(f"{where} replied to '{cmd}' with something that is not JSON: "
                             f"{_excerpt(line)}") from None
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool) or \
                (not reply["ok"] and not isinstance(reply.get("error"), str)):
            raise XendBroken(f"{where} replied to '{cmd}' with JSON that is not an xm reply "
                             f"(an object with 'ok'): {_excerpt(line)}")
        return reply

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _excerpt(line: bytes, limit: int = 60) -> str:
    text = repr(line.rstrip(b"\n")[:limit])
    return text + ("..." if len(line.rstrip(b"\n")) > limit else "")
