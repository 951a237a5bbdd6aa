"""``hvmspec xenstored``, ``hvmspec xend`` and ``hvmspec xm``: the host's daemons
and the tool that talks to xend.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hvmspec.commands import EXIT_OK, EXIT_NO, EXIT_USAGE, Parser, error


def add_parsers(sub) -> None:
    xsd = sub.add_parser("xenstored", help="serve XenStore on a Unix socket",
                         description="The XenStore daemon: the wire protocol of xs_wire.h on "
                         "a Unix socket, for Xen's own client tools (XENSTORED_PATH=SOCKET "
                         "xenstore-read /x) and any other client. Each socket client is dom0 "
                         "(the tools); a domain introduced with XS_INTRODUCE gets its ring as "
                         "the socket SOCKET.d<domid>. Serves until SIGINT or SIGTERM (exit "
                         "0); exit 2 if the socket cannot be made or another daemon serves "
                         "it. Its pid file, SOCKET.pid, is locked while it runs.")
    xsd.add_argument("--socket", required=True, metavar="PATH", type=Path,
                     help="where to listen (a stale socket there, one nobody listens on, is "
                     "replaced; a live one is not)")
    xsd.add_argument("--json", action="store_true",
                     help="print one JSON line {socket, pid} once listening")
    xsd.set_defaults(func=cmd_xenstored)

    xend = sub.add_parser("xend", help="run a host: Xen, dom0's xenstored and xend, for xm",
                          description="A host that runs HVM domains until stopped: xend takes "
                          "xm's commands on its socket, and XenStore is served on a second "
                          "socket for Xen's client tools. Serves until SIGINT or SIGTERM "
                          "(exit 0); exit 2 if a socket cannot be made, or if another xend "
                          "(or a xenstored) serves that directory: one xend per directory.")
    xend.add_argument("--dir", type=Path, metavar="DIR",
                      help="where the sockets go: DIR/xend.sock and DIR/xenstored.sock "
                      "(default: $HVMSPEC_DIR, else $XDG_RUNTIME_DIR/hvmspec or "
                      "/tmp/hvmspec-UID/hvmspec)")
    xend.add_argument("--engine", choices=("reference", "impl"), default="impl")
    xend.add_argument("--trace", metavar="FILE", type=Path,
                      help="write every domain's trace as JSON lines to FILE")
    xend.add_argument("--json", action="store_true",
                      help="print one JSON line {xend, xenstored, pid} once listening")
    xend.set_defaults(func=cmd_xend)

    xm = sub.add_parser("xm", help="xm: create, list, pause, unpause, shutdown, reboot, "
                        "destroy domains", description="Xen 3.x's xm, talking to "
                        "`hvmspec xend` on DIR/xend.sock (DIR: --dir, else $HVMSPEC_DIR, "
                        "else xend's default). Exit 0 on success, 1 if xend refused (no "
                        "such domain, a domain in the wrong state, a name in use), 2 for "
                        "bad usage, a bad configuration file (its name or kernel "
                        "included), or no xend to talk to (none answers on the socket, or "
                        "what answers closes the connection or does not reply in xm's "
                        "protocol).")
    dir_help = "xend's directory, as given to xend (default: $HVMSPEC_DIR, else xend's)"
    xm.add_argument("--dir", type=Path, metavar="DIR", help=dir_help)
    xsub = xm.add_subparsers(dest="xm_command", required=True, parser_class=Parser)
    xcreate = xsub.add_parser("create", help="create a domain from an xm configuration file")
    xcreate.add_argument("config", type=Path, help="an xm config file "
                         "(bundled: guests/configs/*.cfg, or a bundled name such as demo)")
    xcreate.add_argument("-p", "--paused", action="store_true", help="leave it paused")
    xlist = xsub.add_parser("list", help="list the domains")
    xlist.add_argument("-l", "--long", action="store_true",
                       help="each domain as an S-expression, as xm list --long: its "
                       "fields, its drives (device vbd) and, with vnc = 1, its VNC "
                       "display's address")
    xblock = xsub.add_parser("block-configure",
                             help="change a CD-ROM drive's medium (as Xen 3.0.4's xm "
                             "block-configure DOMAIN BACKDEV FRONTDEV MODE)")
    xblock.add_argument("domain", help="a domain's name or ID")
    xblock.add_argument("uname", help="the new image, file:PATH or tap:aio:PATH (a relative "
                        "PATH is from here); '' to eject")
    xblock.add_argument("dev", help="the CD-ROM drive, e.g. hdc:cdrom")
    xblock.add_argument("mode", nargs="?", default="r", help="r (a CD-ROM is read-only)")
    xsub.add_parser("history", help="every lifecycle transition xend made, oldest first "
                    "(hvmspec's; xm log shows the same in xend's log)")
    for name, what in (("pause", "pause a domain"), ("unpause", "unpause a domain"),
                       ("shutdown", "shut a domain down (on_poweroff applies)"),
                       ("reboot", "reboot a domain (on_reboot applies)"),
                       ("destroy", "destroy a domain at once"),
                       ("console", "attach to the domain's COM1 (serial = 'pty'), as xm "
                        "console: print its output from the start and as it comes, type "
                        "what arrives on standard input; Ctrl-] detaches, the domain's "
                        "end ends it (--json: print the output so far, once)")):
        cmd = xsub.add_parser(name, help=what)
        cmd.add_argument("domain", help="a domain's name or ID")
        if name == "console":
            cmd.add_argument("--script", type=Path, metavar="FILE",
                             help="type what a serial script says, each send once the "
                             "output it waits for has come (expect/send/type/timeout, as "
                             "hvmspec run --serial-script; each expect waits at most its "
                             "timeout, in seconds of the host's clock), then detach; exit "
                             "1 naming the expect that did not match")
    for sp in xsub.choices.values():
        sp.add_argument("--json", action="store_true", help="print xend's reply as JSON")
        # accepted after the subcommand too: `xm list --dir D`
        sp.add_argument("--dir", type=Path, metavar="DIR", default=argparse.SUPPRESS,
                        help=dir_help)
    del xlist
    xm.set_defaults(func=cmd_xm)


def cmd_xenstored(args: argparse.Namespace) -> int:
    import os

    from hvmspec import xenstored

    if not args.socket.parent.is_dir():
        error(f"{args.socket.parent} is not a directory")
        return EXIT_USAGE

    def ready(daemon) -> None:
        if args.json:
            print(json.dumps({"socket": str(daemon.socket_path), "pid": os.getpid()}),
                  flush=True)
        else:
            print(f"xenstored: listening on {daemon.socket_path}", flush=True)
    try:
        return xenstored.serve(str(args.socket), ready)
    except xenstored.AlreadyRunning as exc:
        error(f"a xenstored is already serving {exc.path} ({_pid(exc.pid)}): stop it "
              f"first, or give another --socket")
        return EXIT_USAGE
    except OSError as exc:
        error(f"cannot listen on {args.socket}: {exc.strerror or exc}")
        return EXIT_USAGE


def _pid(pid: int | None) -> str:
    return f"pid {pid}" if pid else "its pid unknown"


# --- xend and xm ---------------------------------------------------------------------

def cmd_xend(args: argparse.Namespace) -> int:
    import os
    import signal

    from hvmspec import xenstored
    from hvmspec.xend import XendDaemon, xend_dir

    where, _ = xend_dir(args.dir)
    try:
        where.mkdir(parents=True, exist_ok=True)
        daemon = XendDaemon(args.engine, where / "xend.sock", where / "xenstored.sock",
                            args.trace)
    except xenstored.AlreadyRunning as exc:
        if exc.path.name == "xend.sock":
            error(f"xend is already running in {where} ({_pid(exc.pid)}): stop it first, or "
                  f"give this one another --dir")
        else:
            error(f"a xenstored is already serving {exc.path} ({_pid(exc.pid)}): stop it "
                  f"first, or give xend another --dir")
        return EXIT_USAGE
    except OSError as exc:      # the directory, a socket, or the trace file
        error(f"cannot start xend in {where}: {exc.filename or where}: "
              f"{exc.strerror or exc}")
        return EXIT_USAGE
    try:
        daemon.start()
    except OSError as exc:
        daemon.close()
        error(f"cannot serve in {where}: {exc.strerror or exc}")
        return EXIT_USAGE
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: daemon.stop())
    if args.json:
        print(json.dumps({"xend": str(where / "xend.sock"),
                          "xenstored": str(where / "xenstored.sock"), "pid": os.getpid()}),
              flush=True)
    else:
        print(f"xend: xm socket {where / 'xend.sock'}, XenStore {where / 'xenstored.sock'} "
              f"(XENSTORED_PATH)", flush=True)
    daemon.serve_forever()
    return EXIT_OK


def _xm_config(path: Path) -> Path:
    if not path.exists() and not path.suffix:
        bundled = Path(__file__).resolve().parent.parent.parent / "guests" / "configs" \
            / f"{path}.cfg"
        if bundled.exists():
            return bundled
    return path


def cmd_xm(args: argparse.Namespace) -> int:
    import os

    from hvmspec.xend import DIR_VARIABLE, XendBroken, XmClient, xend_dir
    from spec.xm_config import ConfigFileError, decode

    where, chosen_by = xend_dir(args.dir)
    sock = where / "xend.sock"
    if args.xm_command == "create":
        path = _xm_config(args.config)
        try:
            text = decode(path.read_bytes(), str(path))
        except OSError as exc:
            error(f"cannot read {path}: {exc.strerror or exc}")
            return EXIT_USAGE
        except ConfigFileError as exc:
            error(str(exc))
            return EXIT_USAGE
        if "file:@" in text:            # a disk image hvmspec builds (hvmspec.linux_iso)
            from hvmspec.linux_iso import LinuxIsoUnavailable, resolve_artifacts
            try:
                text = resolve_artifacts(text, str(path))
            except LinuxIsoUnavailable as exc:
                error(str(exc))
                return EXIT_USAGE
        request = {"config": text, "source": str(path), "paused": args.paused,
                   "directory": os.path.dirname(os.path.abspath(path))}
    elif args.xm_command in ("list", "history"):
        request = {}
    elif args.xm_command == "block-configure":
        request = {"domain": args.domain, "uname": _absolute_uname(args.uname),
                   "dev": args.dev, "mode": args.mode}
    else:
        request = {"domain": args.domain}
    try:
        client = XmClient(sock)
    except OSError as exc:
        error(f"no xend answers at {sock} ({exc.strerror or exc}; the directory is "
              f"{chosen_by}): start one with `hvmspec xend --dir {where}`, or point xm at "
              f"the directory of a running one with --dir DIR or {DIR_VARIABLE}=DIR")
        return EXIT_USAGE
    try:
        if args.xm_command == "console" and not args.json:
            return _console(client, args.domain, getattr(args, "script", None))
        reply = client.call(args.xm_command, **request)
        if args.json:
            print(json.dumps(reply))
        elif not reply["ok"]:
            error(reply["error"])
        else:
            _show(args.xm_command, reply, getattr(args, "long", False))
    except XendBroken as exc:
        error(str(exc))
        return EXIT_USAGE
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        error(f"xend at {sock} replied to '{args.xm_command}' with a reply xm cannot read "
              f"({type(exc).__name__}: {exc})")
        return EXIT_USAGE
    finally:
        client.close()
    if not reply["ok"]:
        return EXIT_USAGE if reply.get("kind") in ("config", "request") else EXIT_NO
    return EXIT_OK


#: the key that detaches xm console, as xenconsole's (Ctrl-])
DETACH = b"\x1d"
#: how often xm console asks xend for more output (seconds)
POLL = 0.05


def _console(client, domain: str, script_path: Path | None) -> int:
    """``xm console DOMAIN``: the domain's COM1 output from the start, then
    as it comes, until the domain is gone (exit 0) or Ctrl-] on a terminal
    (exit 0); standard input's bytes are typed into COM1 as they arrive.
    With a script, its sends are typed as its expects match, and xm
    detaches when it is done (exit 0) or an expect did not match in its
    timeout or before the domain's end (exit 1, naming it)."""
    import os
    import time

    from hvmspec.serial_line import LiveLine
    from hvmspec.serial_script import ScriptError, ScriptLine, load

    script = None
    if script_path is not None:
        try:
            script = ScriptLine(load(script_path))
        except ScriptError as exc:
            error(str(exc))
            return EXIT_USAGE
    line = LiveLine(sys.stdin.fileno()) if script is None else None
    typed = script.start() if script is not None else b""
    offset, since = 0, time.monotonic()
    out = sys.stdout.buffer
    try:
        while True:
            if line is not None:
                typed += line.read()
                if DETACH in typed and os.isatty(line.fd):
                    return EXIT_OK
            reply = client.call("console", domain=domain, offset=offset,
                                input=typed.decode("latin-1"))
            typed = b""
            if not reply["ok"]:
                error(reply["error"])
                return EXIT_NO
            domain = str(reply["domid"])        # the same domain, whatever comes later
            data = reply["output"].encode("latin-1")
            offset = reply["offset"]
            out.write(data)
            out.flush()
            if script is not None:
                matched = len(script.matched)
                for byte in data:
                    typed += script.output(byte)
                if len(script.matched) > matched:       # an expect's wait starts
                    since = time.monotonic()
                if script.done and not typed:
                    return EXIT_OK
                step = script.waiting
                if step is not None and time.monotonic() - since > step.timeout:
                    error(script.unfinished(f"nothing matched in {step.timeout:g} s"))
                    return EXIT_NO
            if not reply["live"]:
                if script is not None and not script.done:
                    error(script.unfinished(f"domain {domain} ended"))
                    return EXIT_NO
                return EXIT_OK
            if not data:
                time.sleep(POLL)
    except KeyboardInterrupt:
        return 130
    finally:
        if line is not None:
            line.close()


def _absolute_uname(uname: str) -> str:
    """``file:PATH`` / ``tap:aio:PATH`` with a relative PATH made absolute
    (xm runs here; xend elsewhere)."""
    import os
    for prefix in ("tap:aio:", "file:"):
        if uname.startswith(prefix) and uname[len(prefix):]:
            return prefix + os.path.abspath(uname[len(prefix):])
    return uname


def _show(command: str, reply: dict, long: bool = False) -> None:
    """Print a successful reply the way xm does."""
    if command == "list" and long:
        for row in reply["domains"]:
            print("(domain")
            for key, value in (("domid", row["id"]), ("name", row["name"]),
                               ("memory", row["mem"]), ("vcpus", row["vcpus"]),
                               ("state", row["state"]), ("cpu_time", row["time"])):
                print(f"    ({key} {value})")
            for disk in row.get("disks", ()):
                print("    (device")
                print("        (vbd")
                print(f"            (uname {disk['uname'] or ''})")
                print(f"            (dev {disk['dev']})")
                print(f"            (mode {disk['mode']})")
                print("        )")
                print("    )")
            if "vnc" in row:
                display = row["vncdisplay"]
                print(f"    (vnc {row['vnc'] or 'none'})")
                print(f"    (vncdisplay {'none' if display is None else display})")
            print(")")
    elif command == "list":
        print(f"{'Name':<32} {'ID':>5} {'Mem':>5} {'VCPUs':>5} {'State':>10} {'Time(s)':>8}")
        for row in reply["domains"]:
            print(f"{row['name']:<32} {row['id']:>5} {row['mem']:>5} {row['vcpus']:>5} "
                  f"{row['state']:>10} {row['time']:>8.1f}")
    elif command == "block-configure":
        pass                                    # xm prints nothing
    elif command == "create":
        print(f"Started domain {reply['name']} (id={reply['domid']})")
    elif command == "console":
        sys.stdout.write(reply["output"])
    elif command == "history":
        for e in reply["events"]:
            print(f"domain {e['dom']} ({e['name']}): {e['old']} -> {e['new']}"
                  + (f" ({e['reason']})" if e["reason"] else ""))
