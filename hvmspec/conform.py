"""Conformance: the same guest on two engines, compared event by event.

A case is a guest. Both engines run it; their traces must be equal event by
event, and so must their summaries (the domain's fate and the instruction
count). A divergence is reported as the index of the first differing event,
both sides' event there, and the events around it.

Neither trace is held whole (a Linux boot is millions of events): the first
engine's events stream to a temporary file as JSON lines (:class:`FileSink`),
then the second engine's stream, as it happens, through a
:class:`Comparator` that reads that file one line per event and keeps only
the last :data:`CONTEXT` events of each side, and the few after a
difference.

A firmware case (:data:`FIRMWARE_CASES`) is one of Debian's BIOSes, placed
as hvmloader placed it (:mod:`spec.hvmloader`), run through its whole
power-on self-test: until the firmware log's line on port 0x402 that says
there is no bootable device is whole (:class:`LogLineStop`), when the run
is stopped as ``hvmspec run --until`` stops one, or until
:data:`FIRMWARE_BUDGET` instructions. A halted BIOS's waits are jumps of
the clock, so POST is billions of instructions but only some 10^5 events.
"""

from __future__ import annotations

import json
import tempfile
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, TextIO

from spec import trace
from spec.loader import GuestImage
from spec.result import RunControl, RunResult

CONTEXT = 3

#: the firmware cases: each BIOS by name (:data:`spec.hvmloader.FIRMWARE`)
#: and its VGA BIOS (a file, ``None`` for hvmloader's, ``"none"``): rombios,
#: and the 64 KiB rombios-legacy that gets hvmloader's ACPI tables, with the
#: LGPL VGA BIOS at 0xC0000 as hvmloader placed it; SeaBIOS with its own VGA
#: BIOS as the std VGA's expansion ROM (as tests/test_firmware_log.py runs
#: them against QEMU)
FIRMWARE_CASES = {"rombios": None, "rombios-legacy": None, "seabios": None}
#: where a firmware case ends: the BIOS's last line of POST
FIRMWARE_END = "No bootable device"
#: the firmware log port whose line is watched (the Bochs BIOS's info port)
FIRMWARE_LOG_PORT = 0x402
#: a firmware case's instruction budget: POST to :data:`FIRMWARE_END` is
#: some 3.0 G instructions with rombios (either), 2.6 G with SeaBIOS
FIRMWARE_BUDGET = 4_000_000_000


#: the operating-system case: rombios booting the Linux CD (hvmspec.linux_iso)
#: as ``xm create linux`` configures it, compared until rombios hands the CD's
#: boot image control (its log's "Booting from"): the longest window the
#: reference runs in reasonable time (the POST with a CD drive, El Torito's
#: boot catalog and image read through INT 13h; ISOLINUX's loading of the
#: kernel, 2.5 million port accesses, and the kernel's decompression, 4.5
#: billion instructions, are beyond it at some 10 thousand instructions a
#: second: measured in docs/os.rst)
OS_CASE = "linux-cd"
OS_WINDOW_END = "Booting from"


@dataclass(frozen=True)
class Case:
    """A guest to run on both engines, and how far: to its end, or (a
    firmware) until its log shows ``until``; ``options`` go to the engines'
    runners (memory, the device model's drives)."""

    image: GuestImage
    until: str | None = None
    max_instructions: int | None = None
    options: tuple = ()

    @property
    def name(self) -> str:
        return OS_CASE if dict(self.options).get("os") else self.image.name


def os_case() -> Case:
    """:data:`OS_CASE`: rombios, 128 MiB, the Linux CD as hdc, boot 'd';
    raises :class:`hvmspec.linux_iso.LinuxIsoUnavailable` where the CD
    cannot be built, :class:`spec.loader.GuestError` without rombios."""
    from hvmspec import linux_iso
    from spec.xend import Disk
    built = linux_iso.linux_iso()
    case = firmware_case("rombios")
    drives = {"disks": (Disk(dev="hdc", kind="cdrom", mode="r", path=built.iso),),
              "boot": "d"}
    return Case(case.image, OS_WINDOW_END, FIRMWARE_BUDGET,
                (("os", True), ("memory_mib", 128), ("device_model", drives)))


def firmware_case(name: str) -> Case:
    """The firmware case ``name`` (a key of :data:`FIRMWARE_CASES`); raises
    :class:`spec.loader.GuestError`, naming the Debian package, for a
    firmware file that is not installed."""
    from spec import hvmloader
    image = hvmloader.load_firmware(hvmloader.choose(name, FIRMWARE_CASES[name]))
    return Case(image, FIRMWARE_END, FIRMWARE_BUDGET)


class LogLineStop:
    """A listener that asks ``control`` to stop the run once a whole line
    of the firmware log on :data:`FIRMWARE_LOG_PORT` contains ``text``
    (:meth:`spec.result.RunControl.request_stop`: the engine stops at the
    next instruction boundary it reaches and destroys the domain). The
    line is whole at its newline byte, so both engines stop at the same
    ioreq."""

    REASON = "the firmware log"

    def __init__(self, text: str, control: RunControl) -> None:
        self.text, self.control = text, control
        self.line: list[str] = []
        self.seen = False

    def __call__(self, event: trace.Event) -> None:
        if not isinstance(event, trace.FirmwareLog) or event.port != FIRMWARE_LOG_PORT \
                or self.seen:
            return
        self.line.append(chr(event.byte))
        if event.byte == 0x0A:
            if self.text in "".join(self.line):
                self.seen = True
                self.control.request_stop(self.REASON)
            self.line.clear()


def run(engine: str, case: Case, listeners=(), keep_trace: bool = False) -> RunResult:
    """Run ``case`` on ``engine``: a guest to its end, a firmware until its
    log shows the case's ``until`` (:class:`LogLineStop`). The events go to
    ``listeners`` (sinks) as they happen; the result keeps them all only
    with ``keep_trace``."""
    from hvmspec.engines import runner
    options = {"keep_trace": keep_trace,
               **{k: v for k, v in case.options if k != "os"}}
    if case.max_instructions is not None:
        options["max_instructions"] = case.max_instructions
    listeners = list(listeners)
    if case.until is not None:
        control = RunControl()
        listeners.append(LogLineStop(case.until, control))
        options["control"] = control
    return runner(engine)(case.image, listeners=listeners, **options)


@dataclass
class CaseResult:
    case: str
    equal: bool
    events: int
    index: int | None = None
    reference: dict | None = None
    impl: dict | None = None
    context: dict = field(default_factory=dict)
    #: the two runs compared (their summaries; no trace kept)
    runs: tuple = field(default=(), repr=False, compare=False)


class FileSink:
    """A sink that writes each event to ``stream`` as a JSON line (the
    format of :func:`spec.trace.dump`), as it happens: ``hvmspec run
    --trace``'s file, and the first engine's side of a comparison. The
    file is flushed at each change of a domain's life (created, running,
    shut down, destroyed: a few events a run), so that whoever follows it
    sees the domain start and end when they happen."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.count = 0

    def __call__(self, event: trace.Event) -> None:
        self.stream.write(json.dumps(event.to_json(), separators=(",", ":")) + "\n")
        self.count += 1
        if isinstance(event, trace.DomainLifecycle):
            self.stream.flush()


_END = object()


class Comparator:
    """A sink that compares each event of a run, as it happens, with the
    next of an expected stream (JSON objects, one per event: the first
    engine's trace read back from its file, one line at a time). It holds
    the last :data:`CONTEXT` events of each side, and after the first
    difference the next :data:`CONTEXT` of each; the rest of both streams is
    only counted. :meth:`result` then says where they differ, as
    :func:`compare` does for two whole traces."""

    def __init__(self, expected: Iterable[dict], context: int = CONTEXT) -> None:
        self.expected = iter(expected)
        self.width = context
        self.count = 0                       # this side's events so far
        self.index: int | None = None        # the first difference
        self.mine: deque = deque(maxlen=context)
        self.theirs: deque = deque(maxlen=context)
        self._mine_after: list[dict] = []    # from the difference on
        self._theirs_after: list[dict] = []

    def __call__(self, event: trace.Event) -> None:
        got = event.to_json()
        if self.index is None:
            want = next(self.expected, _END)
            if want is not _END and want != got:
                got = json.loads(json.dumps(got))        # as the file has it
            if want is _END or want != got:
                self.index = self.count
                if want is not _END:
                    self._theirs_after.append(want)
                self._mine_after.append(got)
            else:
                self.mine.append(got)
                self.theirs.append(want)
        elif len(self._mine_after) <= self.width:
            self._mine_after.append(got)
        self.count += 1

    def result(self, case: str, expected: RunResult, run: RunResult) -> CaseResult:
        """The comparison, once the run is over: the first differing event
        (a side that ended early shows the end of its trace there), and if
        the traces are equal, the runs' summaries (the domain's fate and
        the instruction count)."""
        total = self.count                   # the expected side's length
        if self.index is None:
            extra = next(self.expected, _END)
            if extra is _END:
                sa = {"exit": expected.exit, "instructions": expected.instructions}
                sb = {"exit": run.exit, "instructions": run.instructions}
                if sa != sb:
                    return CaseResult(case, False, total, total, {"kind": "summary", **sa},
                                      {"kind": "summary", **sb}, runs=(expected, run))
                return CaseResult(case, True, total, runs=(expected, run))
            self.index = self.count
            self._theirs_after.append(extra)
            total += 1
        else:
            total = self.index + len(self._theirs_after)
        for want in self.expected:
            if len(self._theirs_after) <= self.width:
                self._theirs_after.append(want)
            total += 1
        i, lo = self.index, self.index - len(self.mine)
        a = list(self.theirs) + self._theirs_after
        b = list(self.mine) + self._mine_after
        at, context = _near(a, b, i - lo, lo, "trace", ("reference", "impl"))
        return CaseResult(case, False, max(total, self.count), i, *at, context,
                          runs=(expected, run))


def compare(case: str, ref: RunResult, other: RunResult) -> CaseResult:
    """Find the first difference between two runs of one guest that kept
    their traces (:class:`Comparator` over the first's events)."""
    comparator = Comparator(e.to_json() for e in ref.trace)
    for event in other.trace:
        comparator(event)
    return comparator.result(case, ref, other)


def compare_streams(case: Case, engines=("reference", "impl"), listeners=()) -> CaseResult:
    """Run ``case`` on both engines and compare their traces as they go,
    neither held whole: the first engine's events to a temporary file
    (:class:`FileSink`), then the second's through a :class:`Comparator`
    that reads it back one line per event. ``listeners`` see the second
    engine's events too."""
    with tempfile.TemporaryFile("w+", prefix="hvmspec-conform-") as spool:
        ref = run(engines[0], case, [FileSink(spool)])
        spool.seek(0)
        comparator = Comparator(json.loads(line) for line in spool)
        other = run(engines[1], case, [comparator, *listeners])
        return comparator.result(case.name, ref, other)


def _near(a: list[dict], b: list[dict], i: int, base: int, what: str,
          sides: tuple[str, str]) -> tuple[tuple[dict, dict], dict]:
    """:func:`around` of the windows ``a`` and ``b`` of two traces that
    start at index ``base``."""
    x, y, context = around(a, b, i, what, sides)
    context["from"] += base
    return (x, y), context


def first_difference(a: list, b: list) -> int | None:
    """The index of the first event where two event lists differ (the
    shorter one's length if one is a prefix of the other), or None."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def around(a: list[dict], b: list[dict], i: int, what: str,
           sides: tuple[str, str]) -> tuple[dict, dict, dict]:
    """Both sides' event at ``i`` (or an end marker) and the events around
    it, under the names ``sides``."""
    end = {"kind": f"end of {what}"}
    lo = max(0, i - CONTEXT)
    return (a[i] if i < len(a) else end, b[i] if i < len(b) else end,
            {"from": lo, sides[0]: a[lo:i + CONTEXT + 1], sides[1]: b[lo:i + CONTEXT + 1]})


def run_case(case: GuestImage | Case, engines=("reference", "impl")) -> CaseResult:
    """Run a guest (or a :class:`Case`) on both engines and compare."""
    if isinstance(case, GuestImage):
        case = Case(case)
    return compare_streams(case, engines)


# --- anyone's implementation, through the protocol ------------------------------------

#: cases per suite when none are given (a fixed seed: the same cases each run)
DEFAULT_COUNTS = {"ioreq": 200, "uart": 200, "system": 9}
SEED = 2026


def default_cases(suite_name: str, count: int | None = None) -> list[dict]:
    import random
    from spec.suites import suite
    return suite(suite_name).generate(random.Random(SEED), count or DEFAULT_COUNTS[suite_name])


@dataclass
class ExternalResult:
    suite: str
    case: str
    equal: bool
    events: int
    index: int | None = None
    expected: dict | None = None
    got: dict | None = None
    context: dict = field(default_factory=dict)
    error: str | None = None
    reproducer: str | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None and v != {}}


def _against(suite: str, case: dict, expected: list[dict], got: list[dict]) -> ExternalResult:
    i = first_difference(expected, got)
    if i is None:
        return ExternalResult(suite, case["id"], True, len(expected))
    return ExternalResult(suite, case["id"], False, max(len(expected), len(got)), i,
                          *around(expected, got, i, "events", ("expected", "got")))


def minimize(suite_name: str, case: dict, diverges) -> dict:
    """The smallest case (by steps, ddmin) that still diverges; for the
    system suite, the run cut just after the first differing event."""
    if "steps" not in case:
        return case
    steps = list(case["steps"])
    chunk = max(1, len(steps) // 2)
    while chunk >= 1:
        i, shrunk = 0, False
        while i < len(steps):
            trial = steps[:i] + steps[i + chunk:]
            candidate = {**case, "steps": trial}
            if trial and diverges(candidate):
                steps, shrunk = trial, True
            else:
                i += chunk
        if not shrunk:
            chunk //= 2
    return {**case, "id": case["id"] + "-min", "steps": steps}


def run_external(command: str, suites: list[str] | None = None,
                 cases: dict[str, list[dict]] | None = None, reproducers=None,
                 advance=lambda result: None,
                 timeout: float | None = None) -> tuple[str, list]:
    """Every case of every suite the implementation runs (and hvmspec was
    asked for), compared with the spec's answer; ``(its name, results)``.
    ``advance`` is given each case's result as soon as it is known."""
    from pathlib import Path

    from hvmspec.protocol import TIMEOUT, External, ImplementationError
    from spec.suites import suite as suite_of, suites as all_suites
    offered = suites or list(all_suites())
    impl = External(command, offered, timeout or TIMEOUT)
    impl.start()
    results = []
    try:
        for name in [s for s in offered if s in impl.suites]:
            module = suite_of(name)
            for case in (cases or {}).get(name) or default_cases(name):
                expected = module.expected(case)
                try:
                    got = impl.run(name, case)
                except ImplementationError as exc:
                    results.append(ExternalResult(name, case["id"], False, len(expected),
                                                  error=str(exc)))
                    advance(results[-1])
                    continue
                result = _against(name, case, expected, got)
                if not result.equal and reproducers is not None:
                    def diverges(c, module=module, name=name) -> bool:
                        try:
                            return module.expected(c) != impl.run(name, c)
                        except ImplementationError:
                            return True
                    small = minimize(name, case, diverges)
                    out = Path(reproducers) / f"{name}-{case['id']}.json"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    exp = module.expected(small)
                    try:
                        got_small = impl.run(name, small)
                    except ImplementationError as exc:
                        got_small = [{"error": str(exc)}]
                    out.write_text(json.dumps({"suite": name, "case": small,
                                               "expected": exp, "got": got_small,
                                               "first_difference":
                                               first_difference(exp, got_small)},
                                              indent=1) + "\n")
                    result.reproducer = str(out)
                results.append(result)
                advance(result)
    finally:
        impl.close()
    return impl.name, results
