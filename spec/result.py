"""The result of running a guest, as every engine reports it.

Room: interface. ``RunResult``, the :class:`Recorder` through which every
engine streams its trace to the run's sinks, and the sink that derives a
run's summary as the events pass (:class:`TraceSummary`), so that every
engine's summary means the same thing and no run need keep its trace.
Imports :mod:`spec.trace` and :mod:`spec.platform`.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from dataclasses import dataclass, field
from typing import Callable

from spec import platform, trace


class TraceNotKept(RuntimeError):
    """The whole trace of a run that was not asked to keep it."""


@dataclass
class RunResult:
    """One guest run on one engine: its summary (:class:`TraceSummary`,
    computed as the events passed), and its whole trace only when the run
    was asked to keep it (``keep_trace=True``): a long run's events flow to
    its sinks and are gone, so that its memory does not grow with its
    length (docs/trace.rst, "Sinks")."""

    engine: str
    guest: str
    exit: dict
    instructions: int
    seconds: float
    #: every event, in order, if the run kept them (else None)
    kept: list[trace.Event] | None = None
    #: the VGA's last picture (width, height, RGB pixels), or None without a VGA
    picture: tuple[int, int, bytes] | None = None
    #: the counters of the run's summary (from ``kept`` when not given)
    counts: "TraceSummary | None" = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.counts is None:
            self.counts = TraceSummary.of(self.kept or ())

    @property
    def trace(self) -> list[trace.Event]:
        """Every event of the run, if it kept them; else :class:`TraceNotKept`."""
        if self.kept is None:
            raise TraceNotKept(f"the {self.engine} run of {self.guest} kept no trace: run it "
                               f"with keep_trace=True, or give it a sink")
        return self.kept

    @property
    def events(self) -> int:
        """How many events the run's trace has."""
        return self.counts.events

    @property
    def serial(self) -> str:
        """Everything the guest sent out of its UARTs, in order."""
        return self.counts.serial

    @property
    def firmware_log(self) -> str:
        """The firmware log (:class:`FirmwareLogText`)."""
        return self.counts.log.text()

    @property
    def exits(self) -> dict[str, int]:
        """VM exits by reason."""
        return dict(self.counts.exits)

    @property
    def mapcache(self) -> dict | None:
        """qemu-dm's mapcache statistics (the last ``mapcache_stats`` event)."""
        return _fields(self.counts.mapcache)

    @property
    def devices(self) -> dict | None:
        """qemu-dm's count of unclaimed accesses (the last ``device_stats`` event)."""
        return _fields(self.counts.devices)

    def summary(self) -> dict:
        """The object ``hvmspec run --json`` prints."""
        return {"serial": self.serial, "firmware_log": self.firmware_log,
                "exit": self.exit, "instructions": self.instructions,
                "exits": self.exits, "seconds": round(self.seconds, 6),
                "mapcache": self.mapcache, "devices": self.devices}


def _fields(event: trace.Event | None) -> dict | None:
    """An event's fields without its kind, or None."""
    if event is None:
        return None
    out = event.to_json()
    del out["kind"]
    return out


def serial_text(events: list[trace.Event]) -> str:
    return bytes(e.byte for e in events if isinstance(e, trace.SerialOut)).decode("latin-1")


def panic_message(port: int, line: int) -> str:
    """What Xen 3.0.4's qemu-dm printed for a firmware panic (``hw/pc.c``)."""
    if port in platform.VGABIOS_PANIC_PORTS:
        return f"VGA BIOS panic, line {line}"
    return f"BIOS panic at rombios.c, line {line}"


class FirmwareLogText:
    """The firmware log as people read it, fed one event at a time: the
    bytes of :class:`spec.trace.FirmwareLog` events in order (whatever
    port, whoever took them), and each :class:`spec.trace.FirmwarePanic`
    as a line of its own (:func:`panic_message`). :meth:`feed` returns the
    text the event added ("" for any other event)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.at_line_start = True

    def feed(self, event: trace.Event) -> str:
        if isinstance(event, trace.FirmwareLog):
            text = chr(event.byte)
        elif isinstance(event, trace.FirmwarePanic):
            text = ("" if self.at_line_start else "\n") + panic_message(event.port,
                                                                        event.line) + "\n"
        else:
            return ""
        self.parts.append(text)
        self.at_line_start = text.endswith("\n")
        return text

    def text(self) -> str:
        return "".join(self.parts)


def firmware_log_text(events: list[trace.Event]) -> str:
    """The firmware log of a trace (:class:`FirmwareLogText`), bytes as
    Latin-1 characters."""
    log = FirmwareLogText()
    for event in events:
        log.feed(event)
    return log.text()


@contextlib.contextmanager
def growing_trace():
    """While a run's trace grows: Python's cyclic garbage collector scans
    every live object in its oldest generation each time that generation
    fills, and a trace is hundreds of thousands of live events that hold no
    cycles; without this, those scans took 40 % of a run of 20,000 port
    writes (1.45 s against 0.89 s) and 60 % of a 64 KiB ``rep outsb``. A run
    that streams its trace (the default: :class:`Recorder`) holds no events;
    this stays for runs that keep theirs. Every engine runs its guest inside
    this, so that they compare on equal terms. The thresholds are restored
    after."""
    before = gc.get_threshold()
    gc.set_threshold(before[0], before[1], max(before[2], 1000))
    try:
        yield
    finally:
        gc.set_threshold(*before)


class RunControl:
    """A run's handle for the world outside the engine: the host's operator.

    A person at dom0's console stops a run (Ctrl-C, or a SIGTERM from a
    supervisor) and watches it go. Neither is the guest's business, and
    neither may change what the guest sees: a run that is watched gives the
    same trace as one that is not, and a stopped run's trace is the prefix
    of the full one up to the point where it stopped.

    * :meth:`request_stop` may be called from any thread, any number of
      times. The engine stops its vcpus at the next instruction boundary it
      can reach (within one basic block), destroys the domain as xend's
      ``destroy`` does, and reports the exit reason ``interrupted``.
    * :meth:`instructions` reads the live instruction count from another
      thread while the vcpu runs, and :meth:`clock_ns` the virtual clock
      (:mod:`spec.clock`: instructions plus the bus time of I/O); if the control is ``watched``, :attr:`exits`
      counts VM exits as the recorder sees them (a listener, so only then).
    """

    def __init__(self, watched: bool = False) -> None:
        self.reason: str | None = None          # who asked for the stop (e.g. SIGINT)
        self.watched = watched
        self.exits = 0
        self._stoppers: list[Callable[[], None]] = []
        self._counter: Callable[[], int] = lambda: 0
        self._io_ns: Callable[[], int] = lambda: 0

    # --- the engine's side ------------------------------------------------------------

    def attach(self, stopper: Callable[[], None], counter: Callable[[], int],
               io_ns: Callable[[], int] | None = None) -> None:
        """The engine's way to stop its vcpus, to read their count and
        their I/O's bus time."""
        self._stoppers.append(stopper)
        self._counter = counter
        self._io_ns = io_ns or (lambda: 0)
        if self.reason is not None:
            stopper()

    def __enter__(self) -> "RunControl":
        """While the engine runs: the control is one of :func:`running_controls`."""
        with _RUNNING_LOCK:
            _RUNNING.add(self)
        return self

    def __exit__(self, *exc) -> None:
        with _RUNNING_LOCK:
            _RUNNING.discard(self)
        self.detach()

    def detach(self) -> None:
        """The run is over: its vcpus are no longer the operator's to stop,
        and its count stays where it ended."""
        final, bus = self._counter(), self._io_ns()
        self._counter, self._io_ns = (lambda: final), (lambda: bus)
        self._stoppers.clear()

    def __call__(self, event: trace.Event) -> None:
        """A listener: counts the VM exits."""
        if isinstance(event, trace.VmExit):
            self.exits += 1

    # --- the operator's side ----------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        for stop in list(self._stoppers):
            stop()

    def instructions(self) -> int:
        return self._counter()

    def clock_ns(self) -> int:
        """The virtual clock: instructions (one ns each) plus I/O bus time."""
        return self._counter() + self._io_ns()


_RUNNING: set[RunControl] = set()
_RUNNING_LOCK = threading.Lock()


def running_controls() -> list[RunControl]:
    """The controls of the runs under way in this process (any thread)."""
    with _RUNNING_LOCK:
        return list(_RUNNING)


class TraceSummary:
    """A sink: everything a run's summary needs, computed as each event
    passes, so that a run need not keep its trace to report it. Its memory
    is the serial text and the firmware log (the product of the run) and a
    few counters, whatever the run's length:

    * ``events``: how many events passed;
    * ``serial``: the bytes of :class:`spec.trace.SerialOut`, as Latin-1 text;
    * ``log``: the firmware log (:class:`FirmwareLogText`);
    * ``exits``: VM exits by reason;
    * ``mapcache``, ``devices``: the last :class:`spec.trace.MapcacheStats`
      and :class:`spec.trace.DeviceStats` event (or None);
    * ``last_icount``: the largest ``icount`` of a VM exit or entry;
    * what :func:`final_exit` reads (the last shutdown, crash, and each
      domain's last lifecycle state) and what :func:`firmware_report` reads
      (the first panic, the exceptions of the instruction that triple
      faulted, the instruction count at the log's last byte)."""

    def __init__(self) -> None:
        self.events = 0
        self._serial = bytearray()
        self.log = FirmwareLogText()
        self.exits: dict[str, int] = {}
        self.mapcache: trace.MapcacheStats | None = None
        self.devices: trace.DeviceStats | None = None
        self.last_icount = 0
        self.shutdown: trace.DomainShutdown | None = None
        self.crash: trace.DomainCrash | None = None
        self.fates: dict[int, str] = {}            # dom -> its last lifecycle state
        self.panic: str | None = None              # the first panic's message
        self.triple = False                        # a triple-fault exit was seen
        self.chain: list[int] = []    # the exceptions of one instruction, first to last
        self._chain_at = -1
        self._icount = 0                           # the last exit's or entry's
        self.last_log_at = 0
        self._handlers = {
            trace.SerialOut: self._serial_out, trace.VmExit: self._vm_exit,
            trace.VmEntry: self._vm_entry, trace.ExceptionDelivery: self._exception,
            trace.FirmwareLog: self._firmware_log, trace.FirmwarePanic: self._firmware_log,
            trace.MapcacheStats: self._mapcache, trace.DeviceStats: self._devices,
            trace.DomainShutdown: self._shutdown, trace.DomainCrash: self._crash,
            trace.DomainLifecycle: self._lifecycle}

    @classmethod
    def of(cls, events) -> "TraceSummary":
        """The summary of a whole trace (a list, or a file's events)."""
        summary = cls()
        for event in events:
            summary(event)
        return summary

    def __call__(self, event: trace.Event) -> None:
        self.events += 1
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    @property
    def serial(self) -> str:
        return self._serial.decode("latin-1")

    def _serial_out(self, event: trace.SerialOut) -> None:
        self._serial.append(event.byte)

    def _vm_exit(self, event: trace.VmExit) -> None:
        self.exits[event.reason] = self.exits.get(event.reason, 0) + 1
        self._vm_entry(event)
        if event.reason == "triple_fault":
            self.triple = True
            if self._chain_at != event.icount:
                self.chain = []

    def _vm_entry(self, event: trace.VmExit | trace.VmEntry) -> None:
        self._icount = event.icount
        if event.icount > self.last_icount:
            self.last_icount = event.icount

    def _exception(self, event: trace.ExceptionDelivery) -> None:
        if event.source != "fault" or event.icount != self._chain_at:
            self.chain, self._chain_at = [], event.icount
        self.chain.append(event.vector)

    def _firmware_log(self, event: trace.FirmwareLog | trace.FirmwarePanic) -> None:
        self.log.feed(event)
        self.last_log_at = self._icount
        if isinstance(event, trace.FirmwarePanic) and self.panic is None:
            self.panic = panic_message(event.port, event.line)

    def _mapcache(self, event: trace.MapcacheStats) -> None:
        self.mapcache = event

    def _devices(self, event: trace.DeviceStats) -> None:
        self.devices = event

    def _shutdown(self, event: trace.DomainShutdown) -> None:
        self.shutdown = event

    def _crash(self, event: trace.DomainCrash) -> None:
        self.crash = event

    def _lifecycle(self, event: trace.DomainLifecycle) -> None:
        self.fates[event.dom] = event.new


class Recorder:
    """A run's trace: sends each event, as it happens, to the run's sinks
    (listeners): its :class:`TraceSummary` first, then the caller's (the
    CLI's live serial output, ``--trace``'s file, a conformance comparator,
    ...). The events are kept (``events``, a list) only when the run is
    asked to keep them (``keep``); otherwise ``events`` is None and the
    trace, once every sink has seen an event, is gone."""

    def __init__(self, listeners: list[Callable[[trace.Event], None]] | None = None,
                 keep: bool = False) -> None:
        self.summary = TraceSummary()
        self.events: list[trace.Event] | None = [] if keep else None
        self.listeners = list(listeners or [])
        self._sinks = ([self.events.append] if keep else []) + [self.summary, *self.listeners]

    def __call__(self, event: trace.Event) -> None:
        for sink in self._sinks:
            sink(event)


def _summary(events) -> TraceSummary:
    return events if isinstance(events, TraceSummary) else TraceSummary.of(events)


def final_exit(events, default: dict) -> dict:
    """The domain's fate read from the trace (a :class:`TraceSummary`, or
    the events): the last shutdown's reason and what xend did about it."""
    summary = _summary(events)
    shutdown = summary.shutdown
    if shutdown is None:
        return default
    out = {"reason": shutdown.reason, "dom": shutdown.dom, "by": shutdown.by,
           "domain": summary.fates.get(shutdown.dom, "shutdown")}
    if shutdown.reason == "crash" and summary.crash is not None:
        out["message"] = summary.crash.message
    return out


# --- a firmware run's report ----------------------------------------------------------

#: how many of the firmware log's last lines a firmware run's report keeps
REPORT_LOG_LINES = 5

#: exception vectors by their SDM mnemonic, for the report of a triple fault
def cs_ip(cs: int, ip: int) -> str:
    """``CS:IP`` as people write it: ``F000:E05B``; an offset above 64 KiB
    (protected mode) with eight digits."""
    return f"{cs:04X}:{ip:04X}" if ip <= 0xFFFF else f"{cs:04X}:{ip:08X}"


def firmware_report(events, exit_: dict, instructions: int, cpu: dict) -> dict:
    """What the exit record of a run whose image is firmware adds (read from
    the run's :class:`TraceSummary`, or its events), so that
    a firmware that fails says how (docs/firmware.rst, "When firmware
    fails"). ``cpu`` is vcpu 0 as the run left it: ``cs`` (the selector),
    ``ip`` (the offset in CS), ``rip`` (linear) and ``if`` (RFLAGS.IF).

    Always: ``instructions``, ``rip`` (linear), ``cs_ip`` (text) and
    ``last_firmware_log`` (the log's last :data:`REPORT_LOG_LINES` lines
    that are not blank, carriage returns left out), and ``last_log_at``,
    the instruction count at the VM exit that wrote the log's last byte (0
    if the log is empty). When the run is a failure, ``failure`` and
    ``what`` (a sentence) say which one, first match wins:

    * ``panic``: the firmware wrote a word to a panic port
      (:class:`spec.trace.FirmwarePanic`; ``panic`` is the first one's
      message, :func:`panic_message`), whatever it did afterwards (rombios
      then halts with interrupts disabled);
    * ``triple_fault``: a triple-fault exit, which Xen turns into a reboot
      (``hvm_triple_fault``, :meth:`spec.vmm.Vmm.triple_fault`); ``what``
      names the exceptions that led to it;
    * ``crash``: Xen crashed the domain (the exit's ``message`` says why);
    * ``halted``: the vcpu halted and nothing can wake it (interrupts
      disabled, or enabled with no timer armed);
    * ``budget``: the instruction budget ran out; ``what`` says for how
      many instructions the firmware log had been silent.

    Without a panic, a run that powered off, rebooted at the firmware's own
    request, or was stopped by the operator or ``--until`` is no failure."""
    summary = _summary(events)
    lines = [line for line in summary.log.text().replace("\r", "").split("\n")
             if line.strip()]
    report = {"instructions": instructions, "rip": cpu["rip"],
              "cs_ip": cs_ip(cpu["cs"], cpu["ip"]),
              "last_firmware_log": lines[-REPORT_LOG_LINES:],
              "last_log_at": summary.last_log_at}
    panic, chain, triple = summary.panic, summary.chain, summary.triple
    reason = exit_.get("reason")
    where = f"at {report['cs_ip']} (linear {cpu['rip']:#x}) after {instructions:,} instructions"
    halted = ("halted with interrupts disabled" if not cpu["if"]
              else "halted with interrupts enabled and no timer armed")
    then = {"hung": halted, "limit": "ran on until the instruction budget",
            "crash": "the domain crashed", "reboot": "the domain rebooted",
            "poweroff": "the domain powered off"}.get(reason, "")
    if panic is not None:
        report.update(failure="panic", panic=panic,
                      what=f"{panic}" + (f"; then {then}" if then else "") + f", {where}")
    elif triple and reason == "reboot":
        names = " -> ".join(platform.EXCEPTION_NAMES.get(v, f"vector {v}") for v in chain)
        report.update(failure="triple_fault",
                      what=f"triple fault{' (' + names + ')' if names else ''} {where}: Xen "
                           f"resets the domain (SHUTDOWN_reboot)")
    elif reason == "crash":
        report.update(failure="crash", what=f"the domain crashed {where}: "
                                            f"{exit_.get('message', '?')}")
    elif reason == "hung":
        report.update(failure="halted", what=f"{halted} {where}; nothing can wake it")
    elif reason == "limit":
        silent = instructions - report["last_log_at"]
        report.update(failure="budget", what=(
            f"stopped by the instruction budget {where}; the firmware log "
            + (f"had been silent for the last {silent:,} instructions" if lines
               else "stayed empty")))
    return report
