"""``hvmspec run``: boot one guest and run it to its end.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from spec import platform, trace
from spec.loader import GuestError, bundled_guests, load
from hvmspec.commands import EXIT_NO, EXIT_OK, UsageError, output_path
from hvmspec.conform import FileSink


def add_parsers(sub) -> None:
    run = sub.add_parser("run", help="boot a guest and run it to its end",
                         description="Boot a guest in a new HVM domain and run it until the "
                         "domain is gone. Prints the guest's serial output live, its firmware "
                         "log (the Bochs BIOS debug ports) live on standard error, each line "
                         "prefixed '[fw] ', and a final line with the domain's fate. Exit 0 if "
                         "the guest powered off (with --until: if the text appeared), 1 if "
                         "the domain crashed, hung or hit the instruction budget (or the "
                         "--until text never appeared; for --firmware with a report of how the "
                         "firmware failed, where, and its log's last lines), 2 for a guest "
                         "that cannot be loaded (or a --vnc display that cannot be listened "
                         "on), 130 when stopped with Ctrl-C. With --vnc the run is never "
                         "'hung': it waits for a client's keys until the domain ends.")
    run.add_argument("guest", nargs="?",
                     help=f"a bundled guest ({', '.join(bundled_guests())}), "
                     "or the path of an assembly file (.s, .S, .asm) or a raw image; a "
                     "bundled name wins over a file of the same name here: write ./NAME "
                     "for the file. Not with --firmware")
    run.add_argument("--firmware", metavar="rombios|rombios-legacy|seabios|FILE",
                     help="boot firmware as Xen's hvmloader placed it: rombios (Debian's "
                     "bochsbios), rombios-legacy (its 64 KiB rombios without rombios32, "
                     "as Xen 3.0.4 carried, with hvmloader's ACPI tables), seabios "
                     "(Debian's seabios) or a BIOS file, at the top of the first MiB and "
                     "aliased below 4 GiB, with a VGA BIOS at 0xc0000")
    run.add_argument("--vgabios", metavar="FILE",
                     help="the VGA BIOS for --firmware (default: Debian's vgabios, "
                     "/usr/share/vgabios/vgabios.bin; 'none': no VGA BIOS)")
    run.add_argument("--engine", choices=("reference", "impl"), default="impl",
                     help="the reference model (slow, the definition) or the optimised "
                     "Unicorn implementation (default)")
    run.add_argument("--trace", metavar="FILE", type=Path,
                     help="write the trace as JSON lines to FILE while the guest runs ('-': "
                     "to standard output, and the serial output and fate line to "
                     "standard error)")
    run.add_argument("--json", action="store_true",
                     help="print one JSON object: serial, firmware_log, exit, instructions, "
                     "exits, seconds, mapcache, devices (the unclaimed accesses)")
    run.add_argument("--until", metavar="TEXT",
                     help="stop the run, with exit 0, as soon as the serial output, the "
                     "firmware log or the text screen shows TEXT (the fate is then 'until', "
                     "the domain destroyed); if it never does, the run ends as it would "
                     "and exits 1")
    run.add_argument("--memory", metavar="MIB", type=int,
                     help="guest memory in MiB (default: what the guest's source asks for, "
                     f"else {platform.DEFAULT_MEMORY_MIB})")
    run.add_argument("--max-instructions", metavar="N", type=int,
                     help="stop the guest after N instructions (default "
                     f"{platform.DEFAULT_MAX_INSTRUCTIONS:,}; with --firmware "
                     f"{platform.FIRMWARE_MAX_INSTRUCTIONS:,}, enough for the BIOS's POST: "
                     "halted waits cost no wall time)")
    serial = run.add_mutually_exclusive_group()
    serial.add_argument("--serial-input", metavar="FILE", type=Path,
                     help="bytes for COM1's receiver; they arrive one character time apart "
                     "while the guest holds RTS. '-': the terminal (or a pipe) as a live "
                     "line, each key sent as typed; the run then waits for input instead "
                     "of ending while the guest waits")
    serial.add_argument("--serial-script", metavar="FILE", type=Path,
                        help="type on COM1 as the script FILE says, each line after the output "
                        "it waits for: 'expect TEXT', 'send TEXT' (TEXT and Enter), 'type "
                        "TEXT', 'timeout SECONDS' (QEMU only); the answers reach COM1 at the "
                        "virtual time of the output they wait for, so runs are repeatable. "
                        "The run fails (exit 1) naming the expect still waiting when it ends")
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
    run.add_argument("--vnc", metavar="[HOST]:N", type=_vnc_address,
                     help="serve the guest's screen, keyboard and mouse over VNC (qemu-dm's "
                     "server, as vnc=1 in an xm config) on display N, TCP port 5900+N, of "
                     f"HOST (default {platform.VNC_DEFAULT_LISTEN}). The run then goes on "
                     "until the domain ends (or Ctrl-C: exit 130), waiting for keys while "
                     "the guest waits; without --max-instructions it has no instruction "
                     "budget")
    run.add_argument("--vnc-password", metavar="PASSWORD",
                     help="with --vnc: VNC authentication with PASSWORD (at most 8 "
                     "characters); clients that do not know it are dropped")
    run.add_argument("--disk", metavar="FILE[,MODE]", action="append", default=[],
                     help="a raw disk image as an IDE disk: the first is hda, a second hdb; "
                          "MODE w (the default: the guest's writes go to the file), r "
                          "(read-only) or w! (xm's disk = ['file:FILE,hda,w'])")
    run.add_argument("--cdrom", metavar="FILE",
                     help="a raw CD-ROM image (ISO 9660, 2048-byte sectors) as the IDE "
                          "CD-ROM drive hdc, read-only; '' for the drive with no medium; "
                          "@linux.iso or @memtest.iso: the CD hvmspec builds")
    run.add_argument("--boot", metavar="ORDER", default="c",
                     help="the BIOS's boot order, one to three of a (floppy), c (hard disk), "
                          "d (CD-ROM); default c (xm's boot)")
    run.add_argument("--no-status", dest="status", action="store_false",
                     help="on a terminal, no live status line (instructions, exits, virtual "
                     "time, rate) while the guest runs")
    run.set_defaults(func=cmd_run)


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


def _vnc_address(text: str) -> tuple[str, int]:
    """``--vnc [HOST]:N``: (the address, the display number)."""
    from spec.xend import XendError, check_vnc
    host, colon, number = text.rpartition(":")
    if not colon or not number.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: give a display as :N or HOST:N (display "
                                         f"N is TCP port {platform.VNC_BASE_PORT}+N)")
    host = host or platform.VNC_DEFAULT_LISTEN
    try:
        check_vnc(int(number), host, "")
    except XendError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {str(exc).replace('vncdisplay', 'display')}"
                                         ) from None
    return host, int(number)


def _vnc_options(args: argparse.Namespace) -> dict:
    """The domain configuration's VNC keys for ``--vnc`` (empty without it)."""
    from spec.xend import XendError, check_vnc
    if args.vnc is None:
        if args.vnc_password is not None:
            raise UsageError("--vnc-password goes with --vnc")
        return {}
    try:
        check_vnc(None, platform.VNC_DEFAULT_LISTEN, args.vnc_password or "")
    except XendError as exc:
        raise UsageError(f"--vnc-password: {str(exc).removeprefix('vncpasswd')}".replace(
            ":  ", ": ")) from None
    host, display = args.vnc
    return {"vnc": True, "vncdisplay": display, "vncunused": False, "vnclisten": host,
            "vncpasswd": args.vnc_password or ""}


def _disk_options(args: argparse.Namespace) -> dict:
    """The domain configuration's ``disks`` and ``boot`` for ``--disk``,
    ``--cdrom`` and ``--boot``; each image checked now
    (:func:`spec.xend.check_disks`), so that a bad one is a usage error
    before anything runs."""
    import os

    from spec.xend import Disk, XendError, check_disks
    if not platform.valid_boot_order(args.boot):
        raise UsageError(f"--boot {args.boot!r}: one to three of a (floppy), c (hard disk), "
                         f"d (CD-ROM), e.g. dc")
    if len(args.disk) > 2:
        raise UsageError(f"--disk given {len(args.disk)} times: at most 2 (hda and hdb; "
                         f"hdc is the CD-ROM drive)")
    disks = []
    for dev, given in zip(("hda", "hdb"), args.disk):
        path, comma, mode = given.rpartition(",")
        if not comma or mode not in ("r", "w", "w!"):
            path, mode = given, "w"
        if not path:
            raise UsageError("--disk: give an image file")
        disks.append(("--disk", Disk(dev=dev, kind="disk", mode=mode,
                                     path=os.path.abspath(path))))
    if args.cdrom is not None and args.cdrom.startswith("@"):   # a CD hvmspec builds
        from hvmspec.linux_iso import LinuxIsoUnavailable, resolve_artifacts
        try:
            args.cdrom = resolve_artifacts(f"file:{args.cdrom}", "--cdrom")[len("file:"):]
        except LinuxIsoUnavailable as exc:
            raise UsageError(str(exc).replace("--cdrom:1: ", "--cdrom ")) from None
    if args.cdrom is not None:
        disks.append(("--cdrom", Disk(dev="hdc", kind="cdrom", mode="r",
                                      path=os.path.abspath(args.cdrom) if args.cdrom else "")))
    for option, disk in disks:
        try:
            check_disks((disk,))
        except XendError as exc:
            raise UsageError(f"{option} {disk.path}: {str(exc).split(': ', 2)[-1]}") from None
    return {"boot": args.boot, "disks": tuple(disk for _o, disk in disks)}


#: --vnc without --max-instructions: no budget to speak of (xend's, 10**15)
VNC_MAX_INSTRUCTIONS = 10 ** 15


def _guest_image(args: argparse.Namespace):
    """The guest named on the command line, or the firmware of --firmware."""
    from spec import hvmloader
    if args.firmware is not None:
        if args.guest is not None:
            raise UsageError(f"give a guest ({args.guest}) or --firmware, not both")
        return hvmloader.load_firmware(hvmloader.choose(args.firmware, args.vgabios))
    if args.vgabios is not None:
        raise UsageError("--vgabios goes with --firmware")
    if args.guest is None:
        raise UsageError("a guest to run, or --firmware, is required")
    return load(args.guest)


def cmd_run(args: argparse.Namespace) -> int:
    from hvmspec.console import OPERATOR
    from hvmspec.engines import runner
    from spec.physical_cpu import HostMemoryError
    from spec.result import RunControl
    from spec.xend import DeviceModelError, XendError
    if args.memory is not None and args.memory < platform.MIN_MEMORY_MIB:
        raise GuestError(f"--memory {args.memory}: at least {platform.MIN_MEMORY_MIB} MiB")
    if args.max_instructions is not None and args.max_instructions <= 0:
        raise GuestError(f"--max-instructions {args.max_instructions}: must be positive")
    if args.until is not None and not args.until:
        raise GuestError("--until: give the text to wait for")
    to_stdout = args.trace is not None and str(args.trace) == "-"
    if to_stdout and args.json:
        raise GuestError("--trace - and --json both want standard output: give --trace a file")
    if args.trace is not None and not to_stdout:
        output_path(args.trace, "--trace")
    if args.screenshot is not None:
        output_path(args.screenshot, "--screenshot", suffixes=(".png",))
    vnc_options = _vnc_options(args)
    disk_options = _disk_options(args)
    image = _guest_image(args)
    if args.max_instructions is None and vnc_options:
        args.max_instructions = VNC_MAX_INSTRUCTIONS
    if args.max_instructions is None:
        args.max_instructions = (platform.FIRMWARE_MAX_INSTRUCTIONS if image.kind == "firmware"
                                 else platform.DEFAULT_MAX_INSTRUCTIONS)
    human = sys.stderr if to_stdout else sys.stdout   # where people read the run
    if not args.json:
        if image.note:
            print(f"hvmspec: note: {image.note}", file=sys.stderr)
        if image.kind in ("assembly", "image", "firmware"):
            print(f"hvmspec: {image.describe()}", file=sys.stderr)
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
    script = None
    if args.serial_script is not None:
        from hvmspec.serial_script import EngineScript, ScriptError, load as load_script
        try:
            serial_input = script = EngineScript(load_script(args.serial_script))
        except ScriptError as exc:
            raise GuestError(str(exc)) from None
    status = (args.status and not args.json and line is None and human.isatty())
    control = RunControl(watched=status)
    terminal = _Terminal(args.display if not args.json else "off", human,
                         _StatusLine(control, args.engine) if status else None)
    listeners = [terminal] if args.json else [_LiveSerial(human), terminal]
    fw_log = None if args.json else _LiveFirmwareLog(lambda: sys.stderr)
    if fw_log is not None:
        listeners.append(fw_log)
    until = _Until(args.until, control, terminal.screen) if args.until is not None else None
    if until is not None:
        listeners.append(until)
    vnc = None
    if vnc_options:
        from hvmspec.vnc_display import VncBackend
        vnc = VncBackend(log=lambda line: print(f"hvmspec: {line}", file=sys.stderr,
                                                flush=True))
        listeners.append(vnc.listener())
    sink = None
    if args.trace is not None:
        sink = _TraceSink(sys.stdout if to_stdout else open(args.trace, "w"))
        listeners.append(sink)
    try:
        device_model = {"device_model_bits": args.dm_bits,
                        "mapcache_budget": args.mapcache_budget,
                        "map_everything": args.map_everything, **vnc_options,
                        **disk_options}
        terminal.start()
        result = runner(args.engine)(image, memory_mib=args.memory,
                                     max_instructions=args.max_instructions,
                                     listeners=listeners, serial_input=serial_input,
                                     device_model=device_model, control=control,
                                     **({"vnc": vnc} if vnc is not None else {}))
    except (XendError, DeviceModelError, HostMemoryError) as exc:
        raise GuestError(str(exc)) from None
    finally:
        terminal.close()
        if fw_log is not None:
            fw_log.close()
        if line is not None:
            line.close()
        if vnc is not None:
            vnc.close()
        if sink is not None:
            sink.close()
    if args.screenshot:
        _screenshot(result.picture, args.screenshot)
    if until is not None and until.seen_in is not None and control.reason == _Until.REASON:
        result.exit = until.fate(result.exit, result.instructions)
    interrupted = result.exit.get("reason") == "interrupted"
    unfinished = None
    if script is not None and not script.script.done:
        unfinished = script.script.unfinished(f"the run ended: {result.exit.get('reason')}")
    if args.json:
        summary = result.summary()
        if script is not None:
            summary["serial_script"] = {"done": unfinished is None, "error": unfinished}
        if disk_options["disks"] or args.boot != "c":   # the drives, as xm list shows them
            summary.update(boot=args.boot, disks=[
                {"dev": f"{d.dev}:{d.kind}", "uname": d.uname or None, "mode": d.mode}
                for d in disk_options["disks"]])
        print(json.dumps(summary))
    else:
        human.flush()
        if result.serial and not result.serial.endswith("\n"):
            print(file=human)
        terminal.print_final()
        if interrupted:
            print(f"hvmspec: {OPERATOR.signal_name}: {_fate_line(result).splitlines()[0]}",
                  file=sys.stderr)
        else:
            print(_fate_line(result), file=human)
        if result.exit.get("failure"):
            human.flush()
            print(_firmware_report(result.exit), file=sys.stderr)
        if args.stats:
            print(_stats_text(result), file=human)
    if unfinished is not None and not interrupted:
        print(f"hvmspec: {unfinished}", file=sys.stderr)
    if interrupted:
        return OPERATOR.exit_code
    if unfinished is not None and result.exit.get("reason") != "until":
        return EXIT_NO
    if until is not None:
        return EXIT_OK if result.exit.get("reason") == "until" else EXIT_NO
    return EXIT_OK if result.exit.get("reason") == "poweroff" else EXIT_NO


class _LiveSerial:
    """The guest's serial output as it comes, a line at a time."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def __call__(self, event: trace.Event) -> None:
        if isinstance(event, trace.SerialOut):
            self.stream.write(chr(event.byte))
            if event.byte == 0x0A:
                self.stream.flush()


class _LiveFirmwareLog:
    """The firmware log as it comes (:class:`spec.result.FirmwareLogText`):
    each complete line, prefixed ``[fw] `` so that it stands apart from the
    guest's serial output, on the stream ``stream()`` gives when the line is
    whole (standard error: while the terminal's live area is up, rich's
    stand-in for it, which prints above that area); the last, unfinished
    line when the run ends. Carriage returns (the VGA BIOS ends its lines
    with "\\r\\n") are left out here, so that no line overwrites itself;
    the log itself keeps every byte."""

    PREFIX = "[fw] "

    def __init__(self, stream) -> None:
        from spec.result import FirmwareLogText
        self.stream = stream
        self.log = FirmwareLogText()
        self.line = ""

    def __call__(self, event: trace.Event) -> None:
        if not isinstance(event, (trace.FirmwareLog, trace.FirmwarePanic)):
            return
        self.line += self.log.feed(event)
        if "\n" in self.line:
            *done, self.line = self.line.split("\n")
            stream = self.stream()
            stream.write("".join(f"{self.PREFIX}{line.replace(chr(13), '')}\n"
                                 for line in done))
            stream.flush()

    def close(self) -> None:
        stream = self.stream()
        if self.line.replace("\r", ""):
            stream.write(f"{self.PREFIX}{self.line.replace(chr(13), '')}\n")
        self.line = ""
        stream.flush()


class _Until:
    """``--until TEXT``: watches the serial output, the firmware log and the
    text screen, and asks the run to stop (:class:`spec.result.RunControl`)
    the first time one of them shows ``text``. The serial output and the
    log are matched as Latin-1 text across their whole length (a match may
    span lines); the screen as the rows' characters, one line per row."""

    REASON = "--until"

    def __init__(self, text: str, control, screen) -> None:
        from spec.result import FirmwareLogText
        self.text, self.control, self.screen = text, control, screen
        self.seen_in: str | None = None
        self.tails = {"serial output": "", "firmware log": ""}
        self.log = FirmwareLogText()

    def __call__(self, event: trace.Event) -> None:
        if self.seen_in is not None:
            return
        if isinstance(event, trace.SerialOut):
            self._grow("serial output", chr(event.byte))
        elif isinstance(event, (trace.FirmwareLog, trace.FirmwarePanic)):
            self._grow("firmware log", self.log.feed(event))
        elif isinstance(event, trace.DisplayUpdate) and self.text in self.screen.text():
            self._seen("screen")

    def _grow(self, where: str, added: str) -> None:
        tail = self.tails[where] + added
        if self.text in tail:
            self._seen(where)
        self.tails[where] = tail[-(len(self.text) - 1):] if len(self.text) > 1 else ""

    def _seen(self, where: str) -> None:
        self.seen_in = where
        self.control.request_stop(self.REASON)

    def fate(self, exit_: dict, instructions: int) -> dict:
        """The run's exit once the text was seen: reason ``until``."""
        return dict(exit_, reason="until", seen_in=self.seen_in,
                    message=f"{self.text!r} appeared "
                            f"{'on' if self.seen_in == 'screen' else 'in'} the {self.seen_in} after "
                            f"{instructions} instructions")


class _TraceSink(FileSink):
    """``--trace``: each event written as it happens (JSON lines,
    :class:`hvmspec.conform.FileSink`), so that a run stopped early keeps its
    trace up to that point, and a long run's trace is on disk, not in memory."""

    def close(self) -> None:
        if self.stream is sys.stdout:
            self.stream.flush()
        else:
            self.stream.close()


class _StatusLine:
    """The live status line: instructions, VM exits, virtual time, rate."""

    def __init__(self, control, engine: str) -> None:
        import time
        self.control, self.engine = control, engine
        self._clock = time.perf_counter
        self.started = self._clock()

    def text(self) -> str:
        n = self.control.instructions()
        seconds = max(self._clock() - self.started, 1e-9)
        return (f"[{self.engine}] {n:,} instructions · {self.control.exits:,} exits · "
                f"virtual {_duration(self.control.clock_ns())} · {n / seconds / 1e6:.2f} MIPS · "
                f"{seconds:.1f} s")

    def __rich__(self):
        from rich.text import Text
        return Text(self.text(), style="dim", no_wrap=True, overflow="ellipsis")


def _duration(ns: int) -> str:
    """A virtual time (the instruction count as nanoseconds, without the bus time
    of I/O that spec.clock adds) for people."""
    for unit, scale in (("s", 10 ** 9), ("ms", 10 ** 6), ("us", 10 ** 3)):
        if ns >= scale:
            return f"{ns / scale:.3f} {unit}"
    return f"{ns} ns"


class _Terminal:
    """The terminal while the guest runs: its text screen (``--display``)
    and the status line, in one rich live area below the serial output."""

    def __init__(self, mode: str, stream, status: _StatusLine | None) -> None:
        from hvmspec.display import Screen
        if mode == "auto":
            mode = "live" if stream.isatty() else "text"
        self.mode = mode
        self.stream = stream
        self.screen = Screen()
        self.status = status
        self.live = None

    def start(self) -> None:
        if self.status is not None:
            self._show()

    def _show(self) -> None:
        from rich.console import Console, Group
        from rich.live import Live
        parts = []
        if self.mode == "live" and self.screen.updates:
            parts.append(self.screen)
        if self.status is not None:
            parts.append(self.status)
        if self.live is None:
            self.live = Live(Group(*parts), refresh_per_second=10,
                             console=Console(file=self.stream),
                             redirect_stdout=self.stream is sys.stdout,
                             redirect_stderr=True)      # the firmware log's lines
            self.live.start()
        else:
            self.live.update(Group(*parts))

    def __call__(self, event: trace.Event) -> None:
        # the screen is kept in every mode: --screenshot draws it
        if not isinstance(event, trace.DisplayUpdate):
            return
        first = not self.screen.updates
        self.screen.apply(event)
        if self.mode == "live" and first:
            self._show()

    def close(self) -> None:
        if self.live is not None:
            self.stream.flush()
            if self.status is not None:      # the status line goes; the screen stays
                self.status = None
                self._show()
            self.live.refresh()
            self.live.stop()

    def print_final(self) -> None:
        if self.mode == "text" and self.screen.updates:
            rule = "-" * 80
            print(f"{rule}\n{self.screen.text()}\n{rule}", file=self.stream)


def _screenshot(picture, path: Path) -> None:
    from hvmspec.display import write_png
    if picture is None:
        raise GuestError(f"--screenshot {path}: the domain has no VGA (vga = 0 or nographic)")
    try:
        write_png(path, *picture)
    except ValueError as exc:
        raise GuestError(f"--screenshot {path}: {exc}") from None
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


def _firmware_report(exit_: dict) -> str:
    """How a firmware failed (:func:`spec.result.firmware_report`), for
    people: what happened, where, and the firmware log's last lines."""
    lines = [f"hvmspec: firmware failed: {exit_['what']}"]
    if exit_.get("last_firmware_log"):
        lines.append("hvmspec: the firmware log's last lines:")
        lines += [f"  {line}" for line in exit_["last_firmware_log"]]
    else:
        lines.append("hvmspec: the firmware log is empty")
    return "\n".join(lines)


def _fate_line(result) -> str:
    exit_ = result.exit
    exits = sum(result.exits.values())
    what = {"poweroff": "powered off", "reboot": "rebooted", "crash": "crashed",
            "hung": "hung", "limit": "reached the instruction budget",
            "interrupted": "was stopped", "until": "was stopped by --until"}.get(
        exit_.get("reason"), exit_.get("reason", "?"))
    line = (f"[{result.engine}] domain {exit_.get('dom', '?')} ({result.guest}) {what}"
            f"{' (signalled by ' + exit_['by'] + ')' if exit_.get('by') else ''}"
            f"; xend: {exit_.get('domain', '?')}. {result.instructions} instructions, "
            f"{exits} exits, {result.seconds:.3f} s")
    if exit_.get("message"):
        line += f"\n  {exit_['message']}"
    return line

