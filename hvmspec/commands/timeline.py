"""``hvmspec timeline``: a run's phases between its firmware's log lines,
read from a trace file (:mod:`hvmspec.timeline`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hvmspec.commands import EXIT_OK, UsageError
from hvmspec import timeline as tl


def add_parsers(sub) -> None:
    cmd = sub.add_parser("timeline", help="a trace's phases between the firmware's log lines",
                         description="Read a trace (as `hvmspec run --trace FILE` writes it) "
                         "and cut it at each line the firmware logged (BIOS 0x402/0x403, VGA "
                         "BIOS 0x500/0x501): for each phase, the instructions retired, VM "
                         "exits by reason, devices touched, interrupts injected, BIOS services "
                         "called (INT n) and time halted. Exit 0, or 2 if the file cannot be "
                         "read or is not a trace.")
    cmd.add_argument("trace", type=Path, metavar="TRACE",
                     help="the trace file ('-': standard input)")
    cmd.add_argument("--json", action="store_true",
                     help="print {phases: [{line, port, start, end, instructions, exits, "
                     "devices, irqs, services, log_bytes, idle_ns, mapcache_misses}], "
                     "totals}")
    cmd.add_argument("--mark", action="append", metavar="TEXT",
                     help="cut only where TEXT first shows, in a firmware line or in "
                     "COM1's output, after the marks before it (repeatable; an OS boot: "
                     "--mark 'Linux version' --mark 'Run /init'); --os: the Linux CD's")
    cmd.add_argument("--os", action="store_true",
                     help="the marks of the Linux CD's boot (hvmspec.timeline.OS_MARKS)")
    cmd.set_defaults(func=cmd_timeline)


def cmd_timeline(args: argparse.Namespace) -> int:
    marks = tuple(args.mark or ()) + (tl.OS_MARKS if args.os else ())
    phases = _read(args.trace, marks or None)
    report = {"phases": phases, "totals": tl.totals(phases)}
    if args.json:
        print(json.dumps(report))
        return EXIT_OK
    for p in phases:
        print(f"{p['instructions']:>12,} instr  {_counts(p['exits']):<28} "
              f"{_counts(p['devices'], 4)}")
        extra = [f"IRQ {_counts(p['irqs'])}" if p["irqs"] else "",
                 f"INT {_counts(p['services'])}" if p["services"] else "",
                 f"halted {p['idle_ns'] / 1e6:,.1f} ms" if p["idle_ns"] else ""]
        if any(extra):
            print(" " * 20 + "  ".join(e for e in extra if e))
        print(f"  {'-> ' + repr(p['line']) if p['line'] is not None else '(end of trace)'}")
    t = report["totals"]
    print(f"{t['lines']} lines logged, {t['instructions']:,} instructions, "
          f"{sum(t['exits'].values()):,} exits ({_counts(t['exits'])}), "
          f"{t['idle_ns'] / 1e6:,.1f} ms halted")
    return EXIT_OK


def _counts(counts: dict, most: int | None = None) -> str:
    items = list(counts.items())
    shown = ", ".join(f"{k} {v:,}" for k, v in items[:most])
    return shown + (f", +{len(items) - most} more" if most and len(items) > most else "")


def _read(path: Path, marks: tuple[str, ...] | None) -> list[dict]:
    try:
        if str(path) == "-":
            return tl.phases(tl.read_events(sys.stdin), marks)
        with open(path, encoding="utf-8") as stream:
            return tl.phases(tl.read_events(stream), marks)
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory; give a trace file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a trace (not UTF-8 text)") from None
    except ValueError as exc:
        raise UsageError(f"{path}: {exc}") from None
