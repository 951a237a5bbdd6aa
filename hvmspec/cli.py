"""``hvmspec``: run guests, check the proofs, compare engines.

Exit codes, for every command:

* 0: success (the guest powered off; every proof gave what was expected;
  every case conformed);
* 1: the thing ran and the answer is no (the domain crashed, hung or hit the
  instruction budget; a proof or mutant gave an unexpected result; a case
  diverged);
* 2: bad input or usage (no such guest, a guest that does not assemble, an
  image that cannot be placed, bad options).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from spec import platform, trace
from spec.loader import GuestError, bundled_guests, load

EXIT_OK, EXIT_NO, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:   # usage errors exit 2 with the usage line
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hvmspec", description=(
        "An executable specification of Xen full virtualization (HVM): run guests on the "
        "reference model or the optimised engine, check the Z3 proofs, compare engines."),
        epilog="Exit codes: 0 success, 1 the answer is no, 2 bad input or usage.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="boot a guest and run it to its end",
                         description="Boot a guest in a new HVM domain and run it until the "
                         "domain is gone. Prints the guest's serial output live and a final "
                         "line with the domain's fate. Exit 0 if the guest powered off, 1 if "
                         "the domain crashed, hung or hit the instruction budget, 2 for a "
                         "guest that cannot be loaded.")
    run.add_argument("guest", help=f"a bundled guest ({', '.join(bundled_guests())}), "
                     "or the path of an assembly file (.s/.asm) or a raw image")
    run.add_argument("--engine", choices=("reference", "impl"), default="impl",
                     help="the reference model (slow, the definition) or the optimised "
                     "Unicorn implementation (default)")
    run.add_argument("--trace", metavar="FILE", type=Path,
                     help="write the trace as JSON lines to FILE")
    run.add_argument("--json", action="store_true",
                     help="print one JSON object: serial, exit, instructions, exits, seconds, "
                     "mapcache, devices (the unclaimed accesses)")
    run.add_argument("--memory", metavar="MIB", type=int,
                     help="guest memory in MiB (default: what the guest's source asks for, "
                     f"else {platform.DEFAULT_MEMORY_MIB})")
    run.add_argument("--max-instructions", metavar="N", type=int,
                     default=platform.DEFAULT_MAX_INSTRUCTIONS,
                     help="stop the guest after N instructions (default %(default)s)")
    run.add_argument("--serial-input", metavar="FILE", type=Path,
                     help="bytes for COM1's receiver; they arrive one character time apart "
                     "while the guest holds RTS. '-': the terminal (or a pipe) as a live "
                     "line, each key sent as typed; the run then waits for input instead "
                     "of ending while the guest waits")
    run.add_argument("--dm-bits", type=int, choices=(32, 64), default=32,
                     help="qemu-dm's word size: its mapcache buckets are 64 KiB (32) or "
                     "1 MiB (64) (default %(default)s)")
    run.add_argument("--mapcache-budget", metavar="SIZE", type=_size,
                     help="qemu-dm's address space for guest mappings, e.g. 2304M, 1G "
                     "(default: 2.5 GiB less 256 MiB for 32-bit, 32 GiB for 64-bit)")
    run.add_argument("--map-everything", action="store_true",
                     help="map all guest memory at start-up (the legacy mode) instead of "
                     "using the mapcache; refused if the guest does not fit the budget")
    run.add_argument("--stats", action="store_true",
                     help="print the VM exits by reason, qemu-dm's mapcache statistics and "
                     "its count of accesses no device claimed")
    run.add_argument("--display", choices=("auto", "live", "text", "off"), default="auto",
                     help="the guest's text screen: live in the terminal while it runs, "
                     "or its final frame as text after the run; auto (default): live on a "
                     "terminal, text otherwise, and only if the guest drew anything")
    run.add_argument("--screenshot", metavar="FILE.png", type=Path,
                     help="write the final frame of the text screen as a PNG image")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", help="run every Z3 proof and its mutants",
                           description="Run every proof over the spec's own functions, and "
                           "every mutant (a deliberately broken spec function) that must give "
                           "a counterexample. Exit 0 only if every result is the expected one.")
    check.add_argument("--json", action="store_true",
                       help="print a JSON list of {name, kind, expected, result, seconds}")
    check.set_defaults(func=cmd_check)

    conform = sub.add_parser("conform", help="run the bundled guests on both engines and "
                             "compare their traces",
                             description="Run every bundled guest on the reference and the "
                             "impl engine and compare their traces event by event. Exit 0 "
                             "only if all are equal.")
    conform.add_argument("guests", nargs="*", help="guests to compare (default: all bundled)")
    conform.add_argument("--json", action="store_true",
                         help="print {cases, equal, diverged: [{case, index, reference, impl}]}")
    conform.add_argument("--impl", metavar="CMD",
                         help="instead, check an implementation in any language: CMD speaks "
                         "the implementation protocol (JSON lines on stdin/stdout, docs: "
                         "conformance for implementers) and runs the suites it names; each "
                         "case is compared with the spec's answer")
    conform.add_argument("--suite", action="append", choices=("ioreq", "uart", "system"),
                         help="with --impl: only this suite (repeatable)")
    conform.add_argument("--cases", metavar="FILE", type=Path, action="append",
                         help="with --impl: run the cases of FILE (JSON lines, each "
                         "{\"suite\", \"case\"}) instead of the generated ones")
    conform.add_argument("--reproducers", metavar="DIR", type=Path,
                         help="with --impl: write a minimal reproducer of each divergence "
                         "into DIR")
    conform.add_argument("--timeout", type=float, default=300.0,
                         help="with --impl: seconds one case may take (default %(default)s)")
    conform.set_defaults(func=cmd_conform)

    vectors = sub.add_parser("vectors", help="run or export instruction test vectors",
                             description="Instruction test vectors: one JSON case per line "
                             "(docs: vectors). 'run' checks an engine against a file; "
                             "'export' writes the project's own vectors.")
    vsub = vectors.add_subparsers(dest="vectors_command", metavar="{run,export}", required=True)
    vrun = vsub.add_parser("run", help="run a vector file on an engine",
                           description="Run every case of FILE on the engine and compare with "
                           "its expectations. Exit 0 only if every case passes; 2 for a file "
                           "that is not valid vectors.")
    vrun.add_argument("file", help="a JSON-lines vector file")
    vrun.add_argument("--engine", choices=("reference", "impl"), default="impl")
    vrun.add_argument("--json", action="store_true",
                      help="print {passed, failed, failures: [{id, diff}]}")
    vrun.set_defaults(func=cmd_vectors_run)
    vexp = vsub.add_parser("export", help="write the project's own vectors into DIR",
                           description="Generate the project's instruction vectors (a fixed "
                           "seed; expectations from the reference engine, kept only where impl "
                           "agrees or a documented Unicorn deviation explains the difference) "
                           "and write DIR/x86.jsonl; and the conformance suites' cases with the "
                           "spec's answers, DIR/ioreq.jsonl, DIR/uart.jsonl and DIR/system.jsonl "
                           "(whole guests: image, configuration, inputs, expected trace). Exit 1 "
                           "if the engines disagree anywhere else.")
    vexp.add_argument("dir", help="output directory")
    vexp.add_argument("--count", type=int, default=2000, help="cases (default %(default)s)")
    vexp.add_argument("--seed", type=int, default=2026)
    vexp.add_argument("--json", action="store_true", help="print the export report as JSON")
    vexp.set_defaults(func=cmd_vectors_export)

    xsd = sub.add_parser("xenstored", help="serve XenStore on a Unix socket",
                         description="The XenStore daemon: the wire protocol of xs_wire.h on "
                         "a Unix socket, for Xen's own client tools (XENSTORED_PATH=SOCKET "
                         "xenstore-read /x) and any other client. Each socket client is dom0 "
                         "(the tools); a domain introduced with XS_INTRODUCE gets its ring as "
                         "the socket SOCKET.d<domid>. Serves until SIGINT or SIGTERM (exit "
                         "0); exit 2 if the socket cannot be made.")
    xsd.add_argument("--socket", required=True, metavar="PATH", type=Path,
                     help="where to listen (an old socket there is replaced)")
    xsd.add_argument("--json", action="store_true",
                     help="print one JSON line {socket, pid} once listening")
    xsd.set_defaults(func=cmd_xenstored)

    xend = sub.add_parser("xend", help="run a host: Xen, dom0's xenstored and xend, for xm",
                          description="A host that runs HVM domains until stopped: xend takes "
                          "xm's commands on its socket, and XenStore is served on a second "
                          "socket for Xen's client tools. Serves until SIGINT or SIGTERM "
                          "(exit 0); exit 2 if a socket cannot be made.")
    xend.add_argument("--dir", type=Path, metavar="DIR",
                      help="where the sockets go: DIR/xend.sock and DIR/xenstored.sock "
                      "(default: $XDG_RUNTIME_DIR/hvmspec or /tmp/hvmspec-UID/hvmspec)")
    xend.add_argument("--engine", choices=("reference", "impl"), default="impl")
    xend.add_argument("--trace", metavar="FILE", type=Path,
                      help="write every domain's trace as JSON lines to FILE")
    xend.add_argument("--json", action="store_true",
                      help="print one JSON line {xend, xenstored, pid} once listening")
    xend.set_defaults(func=cmd_xend)

    xm = sub.add_parser("xm", help="xm: create, list, pause, unpause, shutdown, reboot, "
                        "destroy domains", description="Xen 3.x's xm, talking to "
                        "`hvmspec xend`. Exit 0 on success, 1 if xend refused (no such "
                        "domain, a domain in the wrong state), 2 for bad usage, a bad "
                        "configuration file or no xend to talk to.")
    xm.add_argument("--dir", type=Path, metavar="DIR", help="xend's directory (as for xend)")
    xsub = xm.add_subparsers(dest="xm_command", required=True, parser_class=_Parser)
    xcreate = xsub.add_parser("create", help="create a domain from an xm configuration file")
    xcreate.add_argument("config", type=Path, help="an xm config file "
                         "(bundled: guests/configs/*.cfg, or a bundled name such as demo)")
    xcreate.add_argument("-p", "--paused", action="store_true", help="leave it paused")
    xlist = xsub.add_parser("list", help="list the domains")
    xsub.add_parser("history", help="every lifecycle transition xend made, oldest first "
                    "(hvmspec's; xm log shows the same in xend's log)")
    for name, what in (("pause", "pause a domain"), ("unpause", "unpause a domain"),
                       ("shutdown", "shut a domain down (on_poweroff applies)"),
                       ("reboot", "reboot a domain (on_reboot applies)"),
                       ("destroy", "destroy a domain at once"),
                       ("console", "print what the domain wrote to COM1 so far")):
        cmd = xsub.add_parser(name, help=what)
        cmd.add_argument("domain", help="a domain's name or ID")
    for sp in xsub.choices.values():
        sp.add_argument("--json", action="store_true", help="print xend's reply as JSON")
    del xlist
    xm.set_defaults(func=cmd_xm)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except GuestError as exc:
        print(f"hvmspec: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_NO


# --- xenstored -------------------------------------------------------------------------

def cmd_xenstored(args: argparse.Namespace) -> int:
    import os

    from hvmspec import xenstored

    if not args.socket.parent.is_dir():
        print(f"hvmspec: error: {args.socket.parent} is not a directory", file=sys.stderr)
        return EXIT_USAGE

    def ready(daemon) -> None:
        if args.json:
            print(json.dumps({"socket": str(daemon.socket_path), "pid": os.getpid()}),
                  flush=True)
        else:
            print(f"xenstored: listening on {daemon.socket_path}", flush=True)
    try:
        return xenstored.serve(str(args.socket), ready)
    except OSError as exc:
        print(f"hvmspec: error: cannot listen on {args.socket}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE


# --- xend and xm ---------------------------------------------------------------------

def cmd_xend(args: argparse.Namespace) -> int:
    import os
    import signal

    from hvmspec.xend import XendDaemon, default_dir

    where = args.dir or default_dir()
    where.mkdir(parents=True, exist_ok=True)
    try:
        daemon = XendDaemon(args.engine, where / "xend.sock", where / "xenstored.sock",
                            args.trace)
        daemon.start()
    except OSError as exc:
        print(f"hvmspec: error: cannot serve in {where}: {exc.strerror}", file=sys.stderr)
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
        bundled = Path(__file__).resolve().parent.parent / "guests" / "configs" / f"{path}.cfg"
        if bundled.exists():
            return bundled
    return path


def cmd_xm(args: argparse.Namespace) -> int:
    from hvmspec.xend import XmClient, default_dir

    sock = (args.dir or default_dir()) / "xend.sock"
    if args.xm_command == "create":
        path = _xm_config(args.config)
        try:
            text = path.read_text()
        except OSError as exc:
            print(f"hvmspec xm: error: cannot read {path}: {exc.strerror}", file=sys.stderr)
            return EXIT_USAGE
        request = {"config": text, "source": str(path), "paused": args.paused}
    elif args.xm_command in ("list", "history"):
        request = {}
    else:
        request = {"domain": args.domain}
    try:
        client = XmClient(sock)
    except OSError as exc:
        print(f"hvmspec xm: error: no xend at {sock} ({exc.strerror}): start `hvmspec xend`",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        reply = client.call(args.xm_command, **request)
    finally:
        client.close()
    if args.json:
        print(json.dumps(reply))
    elif not reply["ok"]:
        print(f"hvmspec xm: error: {reply['error']}", file=sys.stderr)
    elif args.xm_command == "list":
        print(f"{'Name':<32} {'ID':>5} {'Mem':>5} {'VCPUs':>5} {'State':>10} {'Time(s)':>8}")
        for row in reply["domains"]:
            print(f"{row['name']:<32} {row['id']:>5} {row['mem']:>5} {row['vcpus']:>5} "
                  f"{row['state']:>10} {row['time']:>8.1f}")
    elif args.xm_command == "create":
        print(f"Started domain {reply['name']} (id={reply['domid']})")
    elif args.xm_command == "console":
        sys.stdout.write(reply["output"])
    elif args.xm_command == "history":
        for e in reply["events"]:
            print(f"domain {e['dom']} ({e['name']}): {e['old']} -> {e['new']}"
                  + (f" ({e['reason']})" if e["reason"] else ""))
    if not reply["ok"]:
        return EXIT_USAGE if reply["error"].startswith(str(request.get("source", "\0"))) \
            else EXIT_NO
    return EXIT_OK


# --- run ------------------------------------------------------------------------------

def _size(text: str) -> int:
    """A size in bytes with an optional K, M or G suffix (powers of 1024)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    number, unit = (text[:-1], units[text[-1].upper()]) if text[-1:].upper() in units \
        else (text, 1)
    try:
        value = int(number) * unit
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 64M, 1G)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be positive")
    return value


def cmd_run(args: argparse.Namespace) -> int:
    from hvmspec.engines import runner
    from spec.physical_cpu import HostMemoryError
    from spec.xend import DeviceModelError, XendError
    if args.memory is not None and args.memory < platform.MIN_MEMORY_MIB:
        raise GuestError(f"--memory {args.memory}: at least {platform.MIN_MEMORY_MIB} MiB")
    if args.max_instructions <= 0:
        raise GuestError(f"--max-instructions {args.max_instructions}: must be positive")
    image = load(args.guest)
    serial_input = b""
    line = None
    if args.serial_input is not None and str(args.serial_input) == "-":
        from hvmspec.serial_line import LiveLine
        serial_input = line = LiveLine(0)
    elif args.serial_input is not None:
        try:
            serial_input = args.serial_input.read_bytes()
        except OSError as exc:
            raise GuestError(f"--serial-input {args.serial_input}: {exc.strerror}") from None
    display = _Display(args.display if not args.json else "off")
    listeners = [display] if args.json else [_live_serial, display]
    try:
        device_model = {"device_model_bits": args.dm_bits,
                        "mapcache_budget": args.mapcache_budget,
                        "map_everything": args.map_everything}
        result = runner(args.engine)(image, memory_mib=args.memory,
                                     max_instructions=args.max_instructions,
                                     listeners=listeners, serial_input=serial_input,
                                     device_model=device_model)
    except (XendError, DeviceModelError, HostMemoryError) as exc:
        raise GuestError(str(exc)) from None
    finally:
        display.close()
        if line is not None:
            line.close()
    if args.screenshot:
        _screenshot(display.screen, args.screenshot)
    if args.trace:
        with open(args.trace, "w") as stream:
            trace.dump(result.trace, stream)
    if args.json:
        print(json.dumps(result.summary()))
    else:
        sys.stdout.flush()
        if result.serial and not result.serial.endswith("\n"):
            print()
        display.print_final()
        print(_fate_line(result))
        if args.stats:
            print(_stats_text(result))
    return EXIT_OK if result.exit.get("reason") == "poweroff" else EXIT_NO


def _live_serial(event: trace.Event) -> None:
    if isinstance(event, trace.SerialOut):
        sys.stdout.write(chr(event.byte))
        if event.byte == 0x0A:
            sys.stdout.flush()


class _Display:
    """The guest's screen on the terminal (``run --display``)."""

    def __init__(self, mode: str) -> None:
        from hvmspec.display import Screen
        if mode == "auto":
            mode = "live" if sys.stdout.isatty() else "text"
        self.mode = mode
        self.screen = Screen()
        self.live = None

    def __call__(self, event: trace.Event) -> None:
        # the screen is kept in every mode: --screenshot draws it
        if not isinstance(event, trace.DisplayUpdate):
            return
        self.screen.apply(event)
        if self.mode == "live" and self.live is None:
            from rich.live import Live
            self.live = Live(self.screen, refresh_per_second=20)
            self.live.start()

    def close(self) -> None:
        if self.live is not None:
            self.live.refresh()
            self.live.stop()

    def print_final(self) -> None:
        if self.mode == "text" and self.screen.updates:
            rule = "-" * 80
            print(f"{rule}\n{self.screen.text()}\n{rule}")


def _screenshot(screen, path: Path) -> None:
    try:
        screen.png(path)
    except OSError as exc:
        raise GuestError(f"--screenshot {path}: {exc.strerror or exc}") from None


def _stats_text(result) -> str:
    lines = ["VM exits: " + ", ".join(f"{k} {v}" for k, v in sorted(result.exits.items()))]
    m = result.mapcache
    if m is not None:
        lines.append(
            f"mapcache ({m['mode']}, {m['bucket_size'] >> 10} KiB buckets, budget "
            f"{m['budget'] >> 20} MiB): {m['hits']} hits, {m['misses']} misses, "
            f"{m['evictions']} evictions, {m['invalidations']} invalidations; "
            f"{m['mapped'] >> 10} KiB mapped at the end, {m['peak'] >> 10} KiB at most")
    d = result.devices
    if d is not None:
        lines.append(
            f"unclaimed accesses: ports {d['unclaimed_reads']} reads, {d['unclaimed_writes']} "
            f"writes; MMIO {d['mmio_unclaimed_reads']} reads, {d['mmio_unclaimed_writes']} "
            f"writes")
    return "\n".join(lines)


def _fate_line(result) -> str:
    exit_ = result.exit
    exits = sum(result.exits.values())
    what = {"poweroff": "powered off", "reboot": "rebooted", "crash": "crashed",
            "hung": "hung", "limit": "reached the instruction budget"}.get(
        exit_.get("reason"), exit_.get("reason", "?"))
    line = (f"[{result.engine}] domain {exit_.get('dom', '?')} ({result.guest}) {what}"
            f"{' (signalled by ' + exit_['by'] + ')' if exit_.get('by') else ''}"
            f"; xend: {exit_.get('domain', '?')}. {result.instructions} instructions, "
            f"{exits} exits, {result.seconds:.3f} s")
    if exit_.get("message"):
        line += f"\n  {exit_['message']}"
    return line


# --- check ----------------------------------------------------------------------------

def cmd_check(args: argparse.Namespace) -> int:
    from proofs import all_checks
    rows = []
    checks = all_checks()
    with _progress(len(checks), "proofs", quiet=args.json) as advance:
        for chk in checks:
            outcome = chk.run()
            rows.append({"name": chk.name, "kind": chk.kind, "expected": chk.expected,
                         "result": outcome.result, "seconds": round(outcome.seconds, 4),
                         "counterexample": outcome.counterexample})
            advance()
    ok = all(r["result"] == r["expected"] for r in rows)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        _print_check_table(rows)
    return EXIT_OK if ok else EXIT_NO


def _print_check_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table
    console = Console()
    table = Table(title="hvmspec check")
    for col in ("name", "expected", "result", "seconds"):
        table.add_column(col, justify="right" if col == "seconds" else "left")
    for r in rows:
        style = "green" if r["result"] == r["expected"] else "bold red"
        table.add_row(r["name"], r["expected"], f"[{style}]{r['result']}[/]", f"{r['seconds']:.3f}")
    console.print(table)
    for r in rows:
        if r["counterexample"]:
            console.print(f"[bold]{r['name']}[/]: counterexample", highlight=False)
            for line in r["counterexample"]:
                console.print(f"    {line}", highlight=False)
    bad = [r["name"] for r in rows if r["result"] != r["expected"]]
    console.print(f"{len(rows) - len(bad)} as expected, {len(bad)} not"
                  + (f": {', '.join(bad)}" if bad else ""))


# --- conform --------------------------------------------------------------------------

def cmd_vectors_run(args: argparse.Namespace) -> int:
    from hvmspec.vectors import run_file
    from spec.vectors import VectorError, load
    try:
        with open(args.file) as stream:
            cases = load(stream)
        failures = run_file(cases, args.engine)
    except (OSError, VectorError) as exc:
        print(f"hvmspec: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    passed = len(cases) - len(failures)
    if args.json:
        print(json.dumps({"passed": passed, "failed": len(failures), "failures": failures}))
    else:
        for f in failures:
            print(f"FAIL {f['id']}: " + "; ".join(f["diff"]))
        print(f"{passed} passed, {len(failures)} failed")
    return EXIT_OK if not failures else EXIT_NO


def cmd_vectors_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hvmspec.vectors import export, export_suites
    report = export(Path(args.dir), args.count, args.seed)
    report["suites"] = export_suites(Path(args.dir))
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['cases']} cases written to {report['file']}; left out: "
              f"{report['deviations'] or 'no'} documented Unicorn deviations, "
              f"{report['unemulated']} not emulated, {len(report['disagreements'])} "
              f"disagreements")
        for name, path in report["suites"].items():
            print(f"{name} suite: {path}")
        for d in report["disagreements"][:20]:
            print(f"  {d['id']}: " + "; ".join(d["diff"]))
    return EXIT_OK if not report["disagreements"] else EXIT_NO


def cmd_conform(args: argparse.Namespace) -> int:
    if args.impl:
        return _conform_external(args)
    from hvmspec.conform import run_case
    names = args.guests or bundled_guests()
    images = [load(n) for n in names]
    results = []
    with _progress(len(images), "cases", quiet=args.json) as advance:
        for image in images:
            results.append(run_case(image))
            advance()
    diverged = [r for r in results if not r.equal]
    if args.json:
        print(json.dumps({"cases": len(results), "equal": len(results) - len(diverged),
                          "diverged": [{"case": r.case, "index": r.index,
                                        "reference": r.reference, "impl": r.impl,
                                        "context": r.context} for r in diverged]}))
    else:
        for r in results:
            if r.equal:
                print(f"{r.case}: equal ({r.events} events)")
                continue
            print(f"{r.case}: DIVERGED at event {r.index}")
            print(f"  reference: {json.dumps(r.reference)}")
            print(f"  impl:      {json.dumps(r.impl)}")
            if r.context:
                _print_around(r.index, r.context, ("reference", "impl"))
        print(f"{len(results) - len(diverged)} of {len(results)} cases equal")
    return EXIT_OK if not diverged else EXIT_NO


def _print_around(index: int, context: dict, sides: tuple[str, str]) -> None:
    """Each side's events around the first difference, that one marked."""
    base = context["from"]
    for side in sides:
        print(f"  {side} around it:")
        for k, ev in enumerate(context[side]):
            mark = ">" if base + k == index else " "
            print(f"   {mark}{base + k:6d} {json.dumps(ev)}")


def _conform_external(args: argparse.Namespace) -> int:
    from hvmspec.conform import DEFAULT_COUNTS, run_external
    from hvmspec.protocol import ImplementationError
    from spec.suites import SuiteError, suite as suite_of

    cases: dict[str, list[dict]] = {}
    for path in args.cases or []:
        try:
            text = path.read_text()
            try:          # one JSON object (a reproducer), else JSON lines
                entries = [(1, json.loads(text))]
            except ValueError:
                entries = [(n, json.loads(line)) for n, line in
                           enumerate(text.splitlines(), 1) if line.strip()]
            for lineno, entry in entries:
                suite_of(entry["suite"]).validate(entry["case"])
                cases.setdefault(entry["suite"], []).append(entry["case"])
        except (OSError, ValueError, KeyError, TypeError, SuiteError) as exc:
            where = f"{path}:{lineno}" if "lineno" in locals() else str(path)
            print(f"hvmspec: error: {where}: not a case file ({exc})", file=sys.stderr)
            return EXIT_USAGE
    suites = args.suite or (sorted(cases) if cases else None)
    total = sum(len(v) for v in cases.values()) if cases else \
        sum(DEFAULT_COUNTS[s] for s in (suites or DEFAULT_COUNTS))
    try:
        with _progress(total, "cases", quiet=args.json) as advance:
            name, results = run_external(args.impl, suites, cases or None, args.reproducers,
                                         advance, args.timeout)
    except ImplementationError as exc:
        print(f"hvmspec: error: {args.impl}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    bad = [r for r in results if not r.equal]
    by_suite: dict[str, list[int]] = {}
    for r in results:
        by_suite.setdefault(r.suite, [0, 0])[0 if r.equal else 1] += 1
    if args.json:
        print(json.dumps({"implementation": name, "cases": len(results),
                          "equal": len(results) - len(bad),
                          "suites": {s: {"equal": n[0], "diverged": n[1]}
                                     for s, n in by_suite.items()},
                          "diverged": [r.to_json() for r in bad]}))
    else:
        print(f"implementation: {name}")
        for r in bad:
            if r.error:
                print(f"{r.suite} {r.case}: ERROR {r.error}")
                continue
            print(f"{r.suite} {r.case}: DIVERGED at event {r.index}")
            print(f"  expected: {json.dumps(r.expected)}")
            print(f"  got:      {json.dumps(r.got)}")
            _print_around(r.index, r.context, ("expected", "got"))
            if r.reproducer:
                print(f"  minimal reproducer: {r.reproducer}")
        for s, (eq, dv) in by_suite.items():
            print(f"{s}: {eq} of {eq + dv} cases equal")
        if not results:
            print("no cases: the implementation runs none of the suites asked for")
    return EXIT_OK if results and not bad else EXIT_NO


# --- progress -------------------------------------------------------------------------

class _progress:
    """A rich progress bar on stderr while work runs (only on a terminal)."""

    def __init__(self, total: int, what: str, quiet: bool) -> None:
        self.total, self.what = total, what
        self.enabled = not quiet and sys.stderr.isatty()

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        from rich.console import Console
        from rich.progress import Progress
        self.progress = Progress(console=Console(stderr=True), transient=True)
        self.progress.start()
        task = self.progress.add_task(self.what, total=self.total)
        return lambda: self.progress.advance(task)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.progress.stop()


if __name__ == "__main__":
    sys.exit(main())
