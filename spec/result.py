"""The result of running a guest, as every engine reports it.

Room: interface. ``RunResult`` and the helpers that derive a run's summary
from its trace, so that every engine's summary means the same thing.
Imports :mod:`spec.trace` and :mod:`spec.platform`.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from dataclasses import dataclass, field
from typing import Callable

from spec import platform, trace


@dataclass
class RunResult:
    """One guest run on one engine."""

    engine: str
    guest: str
    exit: dict
    instructions: int
    seconds: float
    trace: list[trace.Event] = field(default_factory=list)
    #: the VGA's last picture (width, height, RGB pixels), or None without a VGA
    picture: tuple[int, int, bytes] | None = None

    @property
    def serial(self) -> str:
        """Everything the guest sent out of its UARTs, in order."""
        return serial_text(self.trace)

    @property
    def firmware_log(self) -> str:
        """The firmware log (:func:`firmware_log_text`)."""
        return firmware_log_text(self.trace)

    @property
    def exits(self) -> dict[str, int]:
        """VM exits by reason."""
        counts: dict[str, int] = {}
        for event in self.trace:
            if isinstance(event, trace.VmExit):
                counts[event.reason] = counts.get(event.reason, 0) + 1
        return counts

    @property
    def mapcache(self) -> dict | None:
        """qemu-dm's mapcache statistics (the last ``mapcache_stats`` event)."""
        return self._last_fields(trace.MapcacheStats)

    @property
    def devices(self) -> dict | None:
        """qemu-dm's count of unclaimed accesses (the last ``device_stats`` event)."""
        return self._last_fields(trace.DeviceStats)

    def _last_fields(self, kind: type[trace.Event]) -> dict | None:
        """The fields of the last event of type ``kind``, or None."""
        event = next((e for e in reversed(self.trace) if isinstance(e, kind)), None)
        if event is None:
            return None
        out = event.to_json()
        del out["kind"]
        return out

    def summary(self) -> dict:
        """The object ``hvmspec run --json`` prints."""
        return {"serial": self.serial, "firmware_log": self.firmware_log,
                "exit": self.exit, "instructions": self.instructions,
                "exits": self.exits, "seconds": round(self.seconds, 6),
                "mapcache": self.mapcache, "devices": self.devices}


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
    writes (1.45 s against 0.89 s) and 60 % of a 64 KiB ``rep outsb``. Every
    engine runs its guest inside this, so that they compare on equal terms.
    The thresholds are restored after."""
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


class Recorder:
    """Collects trace events and forwards each to listeners (the CLI's live
    serial output, for one)."""

    def __init__(self, listeners: list[Callable[[trace.Event], None]] | None = None) -> None:
        self.events: list[trace.Event] = []
        self.listeners = list(listeners or [])

    def __call__(self, event: trace.Event) -> None:
        self.events.append(event)
        for listener in self.listeners:
            listener(event)


def final_exit(events: list[trace.Event], default: dict) -> dict:
    """The domain's fate read from the trace: the last shutdown's reason and
    what xend did about it."""
    shutdown = next((e for e in reversed(events) if isinstance(e, trace.DomainShutdown)), None)
    if shutdown is None:
        return default
    fate = next((e for e in reversed(events) if isinstance(e, trace.DomainLifecycle)
                 and e.dom == shutdown.dom), None)
    out = {"reason": shutdown.reason, "dom": shutdown.dom, "by": shutdown.by,
           "domain": fate.new if fate else "shutdown"}
    crash = next((e for e in reversed(events) if isinstance(e, trace.DomainCrash)), None)
    if shutdown.reason == "crash" and crash is not None:
        out["message"] = crash.message
    return out


# --- a firmware run's report ----------------------------------------------------------

#: how many of the firmware log's last lines a firmware run's report keeps
REPORT_LOG_LINES = 5

#: exception vectors by their SDM mnemonic, for the report of a triple fault
def cs_ip(cs: int, ip: int) -> str:
    """``CS:IP`` as people write it: ``F000:E05B``; an offset above 64 KiB
    (protected mode) with eight digits."""
    return f"{cs:04X}:{ip:04X}" if ip <= 0xFFFF else f"{cs:04X}:{ip:08X}"


def firmware_report(events: list[trace.Event], exit_: dict, instructions: int,
                    cpu: dict) -> dict:
    """What the exit record of a run whose image is firmware adds, so that
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
    lines = [line for line in firmware_log_text(events).replace("\r", "").split("\n")
             if line.strip()]
    report = {"instructions": instructions, "rip": cpu["rip"],
              "cs_ip": cs_ip(cpu["cs"], cpu["ip"]),
              "last_firmware_log": lines[-REPORT_LOG_LINES:], "last_log_at": 0}
    panic = None
    chain: list[int] = []        # the exceptions of one instruction, first to last
    chain_at = -1
    triple = False
    icount = 0
    for event in events:
        if isinstance(event, (trace.VmExit, trace.VmEntry)):
            icount = event.icount
            if isinstance(event, trace.VmExit) and event.reason == "triple_fault":
                triple = True
                chain = chain if chain_at == event.icount else []
        elif isinstance(event, trace.ExceptionDelivery):
            if event.source != "fault" or event.icount != chain_at:
                chain, chain_at = [], event.icount
            chain.append(event.vector)
        elif isinstance(event, (trace.FirmwareLog, trace.FirmwarePanic)):
            report["last_log_at"] = icount
            if isinstance(event, trace.FirmwarePanic) and panic is None:
                panic = panic_message(event.port, event.line)
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
