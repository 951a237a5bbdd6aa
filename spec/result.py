"""The result of running a guest, as every engine reports it.

Room: interface. ``RunResult`` and the helpers that derive a run's summary
from its trace, so that every engine's summary means the same thing.
Imports :mod:`spec.trace`.
"""

from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass, field
from typing import Callable

from spec import trace


@dataclass
class RunResult:
    """One guest run on one engine."""

    engine: str
    guest: str
    exit: dict
    instructions: int
    seconds: float
    trace: list[trace.Event] = field(default_factory=list)

    @property
    def serial(self) -> str:
        """Everything the guest sent out of its UARTs, in order."""
        return serial_text(self.trace)

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
        return {"serial": self.serial, "exit": self.exit, "instructions": self.instructions,
                "exits": self.exits, "seconds": round(self.seconds, 6),
                "mapcache": self.mapcache, "devices": self.devices}


def serial_text(events: list[trace.Event]) -> str:
    return bytes(e.byte for e in events if isinstance(e, trace.SerialOut)).decode("latin-1")


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
