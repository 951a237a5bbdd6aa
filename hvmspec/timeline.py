"""A run's timeline, read from its trace: what the guest did between the
lines its firmware logged.

Room: trace analysis for ``hvmspec timeline`` and the Firmware page. Reads
events of :mod:`spec.trace` (as ``hvmspec run --trace FILE`` writes them)
and imports nothing of the engines.

A firmware says where it is in POST by the lines it writes to its debug
ports (:mod:`spec.devices.debugport`): the BIOS's at 0x402/0x403, the VGA
BIOS's at 0x500/0x501. The timeline cuts the trace at each line the
firmware completed: a **phase** is the work done after one line and up to
the next, named by the line that ends it (the last phase, the work after
the last complete line, is named by the line the run ended in, if any, or
none). For each phase it counts:

* the instructions the vcpu retired: the span of ``icount`` over the phase
  (from the events that carry one: VM exits, entries, injections, direct
  port accesses; not a display refresh, whose ``icount`` is the clock) less the nanoseconds it spent halted, since a halted
  vcpu's count jumps to the next timer deadline (:mod:`spec.clock`);
* VM exits by reason (``io``, ``hlt``, ``ept_violation``, ...);
* the devices the guest touched, by accesses: qemu-dm's (``device_io``;
  an address no device claims counts as ``unclaimed``), Xen's own
  (``xen_io``: the PIT, port 0x61, the PM timer, the PIC, the RTC's clock
  registers) and the ports Xen
  passes straight through (``direct_io``, named ``port 0x80`` and so on).
  The debug ports' own accesses (one per logged byte) are the log, not
  devices, and are counted as ``log bytes``;
* hardware interrupts injected, by IRQ line, and software interrupts
  (``INT n``: BIOS services) by vector;
* the halts, and the virtual time the vcpu spent halted (``idle``);
* qemu-dm's mapcache misses (buckets it mapped: its DMA and the data of
  string ioreqs go through it), and, in the phase where the domain ended,
  its hits and misses in all (``mapcache``).

**Marks.** An operating system's boot is a few long phases, not a line per
phase: given ``marks`` (texts), the timeline is cut only where each mark
first shows, in order, in a firmware line or in COM1's output (where the
text completes), and a phase is named by the mark that ends it
(:data:`OS_MARKS` for the Linux CD).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Iterator, TextIO

from spec import trace

#: the debug ports whose completed lines cut the trace (the logs' ports)
LOG_PORTS = (0x402, 0x403, 0x500, 0x501)


@dataclass
class Phase:
    """The work between two logged lines."""

    line: str | None                 # the line that ends the phase (None: the run's end)
    port: int | None                 # the port it was written to
    first: int | None = None         # icount at the phase's first counted event
    last: int | None = None          # icount at its last
    exits: Counter = field(default_factory=Counter)
    devices: Counter = field(default_factory=Counter)
    irqs: Counter = field(default_factory=Counter)
    services: Counter = field(default_factory=Counter)
    log_bytes: int = 0
    idle_ns: int = 0
    mapcache_misses: int = 0
    mapcache: dict | None = None     # the domain's mapcache totals, where it ended

    def saw(self, icount: int) -> None:
        self.first = icount if self.first is None else self.first
        self.last = icount

    def to_json(self, start: int) -> dict:
        """The phase, with ``start`` the icount where it began (the end of the
        phase before)."""
        end = self.last if self.last is not None else start
        return {"line": self.line, "port": self.port, "start": start, "end": end,
                "instructions": max(end - start - self.idle_ns, 0), "exits": dict(self.exits.most_common()),
                "devices": dict(self.devices.most_common()),
                "irqs": {str(k): v for k, v in sorted(self.irqs.items())},
                "services": {f"{k:#04x}": v for k, v in sorted(self.services.items())},
                "log_bytes": self.log_bytes, "idle_ns": self.idle_ns,
                "mapcache_misses": self.mapcache_misses,
                **({"mapcache": self.mapcache} if self.mapcache is not None else {})}


def read_events(stream: TextIO) -> Iterator[trace.Event]:
    """The events of a trace file, one at a time (a POST's trace is large),
    with the line number in any error."""
    for lineno, text in enumerate(stream, 1):
        if not text.strip():
            continue
        try:
            yield trace.Event.from_json(json.loads(text))
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"line {lineno}: not a trace event: {exc}") from exc


def _device_name(event: trace.Event) -> str | None:
    if isinstance(event, trace.DeviceIo):
        if event.space == "pio" and event.addr in LOG_PORTS:
            return None
        return event.device or "unclaimed"
    if isinstance(event, trace.XenIo):
        return event.device
    if isinstance(event, trace.DirectIo):
        return f"port {event.port:#x}"
    return None


def phases(events: Iterable[trace.Event], marks: tuple[str, ...] | None = None) -> list[dict]:
    """The timeline of a trace: its phases in order, cut at each firmware
    line, or only at ``marks`` (module docstring)."""
    done: list[tuple[Phase, int]] = []
    current, start = Phase(None, None), 0
    lines: dict[int, list[str]] = {}
    icount = 0
    pending_marks = list(marks or ())
    serial = ""                         # COM1's output, as long as the next mark

    def cut(line: str, port: int | None) -> None:
        nonlocal current, start
        current.line, current.port = line, port
        current.saw(icount)
        done.append((current, start))
        start = icount
        current = Phase(None, None)

    for event in events:
        at = None if isinstance(event, trace.DisplayUpdate) else getattr(event, "icount", None)
        if isinstance(at, int):         # (a display refresh's is the clock, not a count)
            icount = at
            current.saw(at)
        name = _device_name(event)
        if name is not None:
            current.devices[name] += 1
        if isinstance(event, trace.VmExit):
            current.exits[event.reason] += 1
        elif isinstance(event, trace.Injection):
            current.irqs[event.irq] += 1
        elif isinstance(event, trace.ExceptionDelivery) and event.source == "software":
            current.services[event.vector] += 1
        elif isinstance(event, trace.Idle):
            current.idle_ns += max(event.until - event.icount, 0)
        elif isinstance(event, trace.MapcacheMiss):
            current.mapcache_misses += 1
        elif isinstance(event, trace.MapcacheStats):
            current.mapcache = {"hits": event.hits, "misses": event.misses,
                                "evictions": event.evictions, "bucket_size": event.bucket_size}
        elif isinstance(event, trace.SerialOut) and pending_marks:
            serial = (serial + chr(event.byte))[-len(pending_marks[0]):]
            if serial == pending_marks[0]:
                cut(pending_marks.pop(0), None)
                serial = ""
        elif isinstance(event, trace.FirmwareLog):
            current.log_bytes += 1
            text = lines.setdefault(event.port, [])
            if event.byte == 0x0A:
                line = "".join(text).strip("\r")
                text.clear()
                if marks is None and line.strip():
                    cut(line, event.port)
                elif pending_marks and pending_marks[0] in line:
                    cut(pending_marks.pop(0), event.port)
            elif event.byte != 0x0D:
                text.append(chr(event.byte))
    pending = [(port, "".join(text).strip()) for port, text in lines.items() if "".join(text).strip()]
    if pending and marks is None:       # the run ended inside a line: the last phase ends it
        current.port, current.line = pending[-1]
    done.append((current, start))
    return [phase.to_json(begin) for phase, begin in done]


def totals(timeline: list[dict]) -> dict:
    """The whole run's counts, summed over its phases."""
    out = {"instructions": sum(p["instructions"] for p in timeline),
           "icount": max((p["end"] for p in timeline), default=0),
           "lines": sum(p["line"] is not None for p in timeline)}
    for key in ("exits", "devices", "irqs", "services"):
        total: Counter = Counter()
        for p in timeline:
            total.update(p[key])
        out[key] = dict(total.most_common())
    out["log_bytes"] = sum(p["log_bytes"] for p in timeline)
    out["idle_ns"] = sum(p["idle_ns"] for p in timeline)
    out["mapcache_misses"] = sum(p.get("mapcache_misses", 0) for p in timeline)
    ended = [p["mapcache"] for p in timeline if "mapcache" in p]
    if ended:
        out["mapcache"] = ended[-1]
    return out


# --- an OS boot's marks --------------------------------------------------------------------

#: where the Linux CD's boot changes hands: rombios's POST ends as it boots
#: from the CD (its log), ISOLINUX loads the kernel, the kernel starts and
#: runs init, init gives the shell's prompt; then the session's commands
#: and the power-off (hvmspec.linux_iso)
OS_MARKS = ("Booting from", "Linux version", "Run /init as init process", "hvmspec-linux# ")


# --- the Firmware page's recorded timeline --------------------------------------------------

#: what the Firmware page's POST timeline is drawn from: rombios and the VGA
#: BIOS on the impl engine, until rombios says it has no boot device
POST_RUN = ("run", "--firmware", "rombios", "--until", "No bootable device",
            "--max-instructions", "4000000000", "--engine", "impl")


def record_post() -> dict:
    """Run :data:`POST_RUN` as a user would (``hvmspec run ... --trace
    FILE``) and read its trace back: the page's timeline."""
    import os
    import subprocess
    import sys
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "post.jsonl")
        proc = subprocess.run([sys.executable, "-m", "hvmspec.cli", *POST_RUN, "--trace", path],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"hvmspec {' '.join(POST_RUN)} exited {proc.returncode}: "
                               f"{proc.stderr.strip()}")
        with open(path, encoding="utf-8") as stream:
            timeline = phases(read_events(stream))
    return {"command": "hvmspec " + " ".join(POST_RUN), "phases": timeline,
            "totals": totals(timeline)}


# --- the OS page's recorded boot ------------------------------------------------------------

#: the session the OS page records: the prompt, three commands, power off
#: (the one tests/test_linux_qemu.py and tests/test_linux_boot.py type)
OS_SESSION = """\
timeout 1500
expect hvmspec-linux#\\x20
send uname -a
expect hvmspec-linux#\\x20
send cat /proc/interrupts
expect hvmspec-linux#\\x20
send dd if=/dev/sr0 of=/dev/null bs=2048 count=100
expect hvmspec-linux#\\x20
send poweroff
"""


def os_run(iso: str, script: str) -> tuple[str, ...]:
    """The ``hvmspec run`` of the OS page: the Linux CD ``iso`` by rombios,
    as ``xm create linux`` configures the domain (guests/configs/linux.cfg),
    typed into by the serial ``script`` (a file)."""
    return ("run", "--firmware", "rombios", "--engine", "impl", "--cdrom", iso, "--boot", "d",
            "--memory", "128", "--max-instructions", "80000000000", "--display", "off",
            "--no-status", "--serial-script", script)


def record_os() -> dict:
    """Boot the Linux CD (:mod:`hvmspec.linux_iso`) on impl as :func:`os_run`
    says, with its trace streamed to a file, and read the trace back cut at
    :data:`OS_MARKS`: the OS page's timeline, with the host seconds the run
    took and the CD's packages (the record is of that CD)."""
    import os
    import subprocess
    import sys
    import tempfile
    import time

    from hvmspec import linux_iso
    built = linux_iso.linux_iso()
    with tempfile.TemporaryDirectory() as tmp:
        script, path = os.path.join(tmp, "session.script"), os.path.join(tmp, "os.jsonl")
        with open(script, "w", encoding="utf-8") as out:
            out.write(OS_SESSION)
        argv = os_run(built.iso, script)
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "hvmspec.cli", *argv, "--trace", path,
                               "--json"], capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"hvmspec {' '.join(argv)} exited {proc.returncode}: "
                               f"{proc.stderr.strip()[-800:]}")
        result = json.loads(proc.stdout)
        with open(path, encoding="utf-8") as stream:
            timeline = phases(read_events(stream), OS_MARKS)
    shown = " ".join(a if a not in (built.iso, script) else
                     ("@linux.iso" if a == built.iso else "SESSION") for a in argv)
    return {"command": f"hvmspec {shown}", "session": OS_SESSION, "phases": timeline,
            "totals": totals(timeline), "seconds": round(seconds, 1),
            "exit": result["exit"], "versions": built.versions, "cmdline": built.cmdline}


def main(argv: list[str] | None = None) -> int:
    """``python -m hvmspec.timeline --write FILE``: record the POST timeline
    (``--os``: the OS page's Linux boot)."""
    import argparse
    parser = argparse.ArgumentParser(prog="python -m hvmspec.timeline")
    parser.add_argument("--write", metavar="FILE", required=True)
    parser.add_argument("--os", action="store_true",
                        help="record the Linux CD's boot (minutes), not rombios's POST")
    args = parser.parse_args(argv)
    record = record_os() if args.os else record_post()
    with open(args.write, "w", encoding="utf-8") as out:
        json.dump(record, out, indent=1)
        out.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
