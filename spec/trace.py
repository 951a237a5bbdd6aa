"""The trace: every observable action, as typed events.

Room: interface. Both engines emit these events; the conformance runner, the
docs' sequence diagrams and the vector files read them. No behaviour here.

A trace is a sequence of events, emitted one at a time to a run's sinks
(:class:`spec.result.Recorder`), which keep it only when asked: a long run
streams it. On disk it is JSON lines: one object per event,
``{"kind": ..., <fields>}``, with the fields in the order declared below.
Two engines conform when their traces are equal event by event; a bug is
reported as the first event where they differ.

Names follow ``DESIGN.md``: ``vcpu`` is the vcpu id, ``dom`` a domain id,
``icount`` the virtual clock (guest instructions retired so far), ``rip``
the guest's instruction pointer as a linear address.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, TextIO

EVENT_TYPES: dict[str, type["Event"]] = {}


@dataclass(frozen=True)
class Event:
    """One observable action."""

    kind: ClassVar[str] = ""
    #: which party acts: "guest", "vmm", "qemu-dm", "xend"
    actor: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            EVENT_TYPES[cls.kind] = cls

    @classmethod
    def of(cls, **fields: Any) -> "Event":
        """The event with ``fields``, every one of them given by name, built
        without the generated ``__init__`` (which a frozen dataclass makes
        slow): for the engines' per-access paths. Equal to ``cls(**fields)``."""
        event = object.__new__(cls)
        event.__dict__.update(fields)
        return event

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):
            out[f.name] = getattr(self, f.name)
        return out

    @staticmethod
    def from_json(obj: dict[str, Any]) -> "Event":
        kind = obj.get("kind")
        cls = EVENT_TYPES.get(kind)  # type: ignore[arg-type]
        if cls is None:
            raise ValueError(f"unknown trace event kind {kind!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        extra = set(obj) - names - {"kind"}
        missing = names - set(obj)
        if extra or missing:
            raise ValueError(
                f"trace event {kind!r}: unexpected fields {sorted(extra)}, "
                f"missing fields {sorted(missing)}")
        return cls(**{k: v for k, v in obj.items() if k != "kind"})


# --- xend: the domain's life ---------------------------------------------------

@dataclass(frozen=True)
class DomainLifecycle(Event):
    """xend moved a domain from one lifecycle state to another."""

    kind: ClassVar[str] = "domain"
    actor: ClassVar[str] = "xend"
    dom: int
    name: str
    old: str
    new: str
    reason: str


# --- event channels --------------------------------------------------------------

@dataclass(frozen=True)
class EvtchnBind(Event):
    """An interdomain event channel was connected: ``dom:port`` <-> ``remote_dom:remote_port``."""

    kind: ClassVar[str] = "evtchn_bind"
    actor: ClassVar[str] = "qemu-dm"
    dom: int
    port: int
    remote_dom: int
    remote_port: int


@dataclass(frozen=True)
class EvtchnSend(Event):
    """``dom`` notified its ``port``; the event arrives at ``remote_dom:remote_port``."""

    kind: ClassVar[str] = "evtchn_send"
    actor: ClassVar[str] = "vmm"
    dom: int
    port: int
    remote_dom: int
    remote_port: int


# --- the vcpu and the VMM ------------------------------------------------------------

@dataclass(frozen=True)
class VmExit(Event):
    """The vcpu left guest mode. ``reason`` is the exit reason; ``info`` what
    the hardware reports with it (for ``io``: the exit qualification's port,
    size, direction, string, rep and immediate bits, and for string forms the
    instruction information's address size and segment)."""

    kind: ClassVar[str] = "vmexit"
    actor: ClassVar[str] = "guest"
    vcpu: int
    reason: str
    rip: int
    icount: int
    info: dict


@dataclass(frozen=True)
class VmEntry(Event):
    """The VMM resumed the vcpu in guest mode at ``rip``."""

    kind: ClassVar[str] = "vmentry"
    actor: ClassVar[str] = "vmm"
    vcpu: int
    rip: int
    icount: int


@dataclass(frozen=True)
class Hypercall(Event):
    """The guest called Xen (a VMCALL exit, :mod:`spec.memory_op`):
    hypercall ``number`` (``name``; "" when Xen has none by that number),
    the five argument registers of the guest's ABI, and what Xen returned
    in (E/R)AX as a signed number (a count, or a negative errno)."""

    kind: ClassVar[str] = "hypercall"
    actor: ClassVar[str] = "vmm"
    vcpu: int
    number: int
    name: str
    args: list
    result: int
    icount: int
    rip: int


@dataclass(frozen=True)
class P2mUpdate(Event):
    """Xen changed the domain's p2m: ``pages`` pages from guest-physical
    ``gpa`` were given back (``op`` "remove": a hole now) or got new zeroed
    frames ("populate")."""

    kind: ClassVar[str] = "p2m"
    actor: ClassVar[str] = "vmm"
    op: str
    gpa: int
    pages: int


@dataclass(frozen=True)
class IoreqTransition(Event):
    """The state of ``vcpu``'s ioreq slot changed from ``old`` to ``new``
    (``public/hvm/ioreq.h`` state names), written by ``by``; the other fields
    are the slot's contents after the change."""

    kind: ClassVar[str] = "ioreq"
    actor: ClassVar[str] = "vmm"
    vcpu: int
    by: str
    old: str
    new: str
    type: str
    dir: str
    addr: int
    size: int
    count: int
    df: int
    data_is_ptr: int
    data: int


@dataclass(frozen=True)
class DomainCrash(Event):
    """Xen crashed the domain (``domain_crash()``), with its diagnostic."""

    kind: ClassVar[str] = "domain_crash"
    actor: ClassVar[str] = "vmm"
    dom: int
    rip: int
    message: str


@dataclass(frozen=True)
class DomainShutdown(Event):
    """The domain was shut down with ``reason`` (``SHUTDOWN_*`` of
    ``public/sched.h``), at the request of ``by``."""

    kind: ClassVar[str] = "shutdown"
    actor: ClassVar[str] = "vmm"
    dom: int
    reason: str
    by: str


# --- interrupts -------------------------------------------------------------------------

@dataclass(frozen=True)
class IrqLevel(Event):
    """qemu-dm drove ISA interrupt line ``irq`` to ``level`` (through the
    shared ``sp_global`` lines and, when the VMM must look, an event-channel
    send)."""

    kind: ClassVar[str] = "irq"
    actor: ClassVar[str] = "qemu-dm"
    irq: int
    level: int


@dataclass(frozen=True)
class Injection(Event):
    """At VM entry the VMM injected external interrupt ``vector`` (from PIC
    line ``irq``) into ``vcpu``, interrupting the guest at ``rip`` after
    ``icount`` instructions."""

    kind: ClassVar[str] = "inject"
    actor: ClassVar[str] = "vmm"
    vcpu: int
    vector: int
    irq: int
    icount: int
    rip: int


@dataclass(frozen=True)
class ExceptionDelivery(Event):
    """The CPU delivered (or tried to deliver) an exception or software
    interrupt through the guest's IVT or IDT (:mod:`spec.delivery`), without
    a VM exit: ``vector``; ``source`` "software" (INT n),
    "software_exception" (INT3, INTO), "icebp" (INT1) or "fault" (an
    exception the guest's instruction raised, or one raised while
    delivering another); the ``error_code`` pushed (None: none); ``cr2``
    for a #PF (None otherwise); ``rip`` the linear instruction pointer the
    frame saves; ``icount`` the clock. When delivering one event raises
    another, both appear, in order."""

    kind: ClassVar[str] = "exception"
    actor: ClassVar[str] = "guest"
    vcpu: int
    vector: int
    source: str
    error_code: int | None
    cr2: int | None
    rip: int
    icount: int


@dataclass(frozen=True)
class Idle(Event):
    """``vcpu`` was halted with interrupts enabled and nothing pending: its
    instruction count jumped from ``icount`` to ``until``, where the virtual
    clock (:mod:`spec.clock`: the count plus the bus time of I/O) reaches
    the next timer deadline."""

    kind: ClassVar[str] = "idle"
    actor: ClassVar[str] = "vmm"
    vcpu: int
    icount: int
    until: int


@dataclass(frozen=True)
class XenIo(Event):
    """A guest port access that Xen's own device model handled (``vpic``:
    the virtual PIC and ELCR; ``vpit``: the PIT and port 0x61; ``pmtimer``: the ACPI
    PM timer; ``vrtc``: the RTC's clock registers), without an ioreq."""

    kind: ClassVar[str] = "xen_io"
    actor: ClassVar[str] = "vmm"
    device: str
    addr: int
    size: int
    dir: str
    data: int


@dataclass(frozen=True)
class XenIrq(Event):
    """A device Xen emulates itself (``device``: ``vrtc``, the RTC of
    :mod:`spec.devices.rtc`) drove ISA line ``irq`` to ``level``
    (``hvm_isa_irq_assert``/``hvm_isa_irq_deassert``): straight to the
    virtual PIC, without qemu-dm or an event channel."""

    kind: ClassVar[str] = "xen_irq"
    actor: ClassVar[str] = "vmm"
    device: str
    irq: int
    level: int


@dataclass(frozen=True)
class TimerTick(Event):
    """Xen's periodic time for the PIT (:mod:`spec.devices.pit`) fired:
    ``ticks`` more ticks of IRQ ``irq`` became pending (more than one when
    the clock ran past a tick: Xen's missed ticks), ``pending`` are now
    waiting, at instruction count ``icount`` of ``vcpu``."""

    kind: ClassVar[str] = "timer_tick"
    actor: ClassVar[str] = "vmm"
    vcpu: int
    irq: int
    ticks: int
    pending: int
    icount: int


# --- qemu-dm and its devices ---------------------------------------------------------

@dataclass(frozen=True)
class DeviceIo(Event):
    """qemu-dm dispatched one access of an ioreq to a device (``device`` is
    ``None`` when no device claims the address: reads are all-ones, writes are
    dropped)."""

    kind: ClassVar[str] = "device_io"
    actor: ClassVar[str] = "qemu-dm"
    device: str | None
    space: str
    addr: int
    size: int
    dir: str
    data: int


@dataclass(frozen=True)
class SerialOut(Event):
    """A byte left a UART's transmitter."""

    kind: ClassVar[str] = "serial"
    actor: ClassVar[str] = "qemu-dm"
    port: str
    byte: int


@dataclass(frozen=True)
class FirmwareLog(Event):
    """A byte of the firmware log (:mod:`spec.devices.debugport`): ``byte``
    written to debug port ``port`` (0x402/0x403 rombios's and SeaBIOS's
    log, 0x500/0x503 the VGA BIOS's), taken by ``by``: "qemu-dm", or "xen"
    for port 0xE9, which Xen prints itself before it sends the ioreq on.
    One event per byte, as written; :func:`spec.result.firmware_log_text`
    gives the lines people read."""

    kind: ClassVar[str] = "firmware_log"
    actor: ClassVar[str] = "qemu-dm"
    by: str
    port: int
    byte: int


@dataclass(frozen=True)
class FirmwarePanic(Event):
    """The firmware reported a panic: the word ``line`` (its source line)
    written to ``port`` (0x400/0x401: rombios's ``HALT``, "BIOS panic at
    rombios.c, line N"; 0x501/0x502: the VGA BIOS's, "VGA BIOS panic,
    line N")."""

    kind: ClassVar[str] = "firmware_panic"
    actor: ClassVar[str] = "qemu-dm"
    port: int
    line: int


@dataclass(frozen=True)
class MapcacheMiss(Event):
    """qemu-dm mapped a bucket of guest memory into its address space
    (:mod:`spec.mapcache`): ``bucket`` is the guest-physical address of the
    bucket, ``evicted`` that of the bucket whose window it took (-1 if a
    free window was used), ``mapped`` the bytes mapped afterwards."""

    kind: ClassVar[str] = "mapcache_miss"
    actor: ClassVar[str] = "qemu-dm"
    bucket: int
    evicted: int
    mapped: int


@dataclass(frozen=True)
class MapcacheInvalidate(Event):
    """qemu-dm invalidated its mappings of ``count`` buckets from guest-physical
    address ``first`` (the guest gave them back); ``stale`` of them were in
    use and stay until their accesses end; ``mapped`` bytes remain."""

    kind: ClassVar[str] = "mapcache_invalidate"
    actor: ClassVar[str] = "qemu-dm"
    first: int
    count: int
    stale: int
    mapped: int


@dataclass(frozen=True)
class MapcacheStats(Event):
    """qemu-dm's mapcache when the domain ended: hits, misses, evictions,
    invalidations, bytes mapped at the end and at most, and the mode."""

    kind: ClassVar[str] = "mapcache_stats"
    actor: ClassVar[str] = "qemu-dm"
    mode: str
    bucket_size: int
    budget: int
    hits: int
    misses: int
    evictions: int
    invalidations: int
    mapped: int
    peak: int


@dataclass(frozen=True)
class DisplayUpdate(Event):
    """qemu-dm's display scanner found the picture changed
    (:mod:`spec.devices.vga`): ``mode`` is the VGA's display mode (``text``,
    ``planar16``, ``cga4``, ``chain4-256``, ``linear``, ``blank``),
    ``width`` and ``height`` the picture in pixels, ``rects`` the changed
    rectangles ``[x, y, width, height]``, ``frame`` a hash of the whole
    picture's pixels, and ``icount`` the virtual time of the refresh (the
    clock of :mod:`spec.clock`: the instruction count plus the bus time of
    I/O). In text modes also ``grid`` ``[columns, rows]``, ``rows`` the
    changed character rows, ``cells`` each changed row's character and
    attribute byte pairs in hex, and ``cursor`` ``[row, column, first scan
    line, last scan line]`` (``[]`` when it is off or outside the screen);
    in graphics modes these are empty."""

    kind: ClassVar[str] = "display"
    actor: ClassVar[str] = "qemu-dm"
    icount: int
    mode: str
    width: int
    height: int
    rects: list
    grid: list
    rows: list
    cells: list
    cursor: list
    frame: str


@dataclass(frozen=True)
class XenstoreOp(Event):
    """A XenStore operation by ``client`` (``xend``, ``qemu-dm``, a domain's
    ring ``domN``): ``op`` is read, write, mkdir, directory, rm, get_perms,
    set_perms, watch, unwatch, transaction_start, transaction_end,
    introduce, release, ...; ``value`` what was written or read (a
    directory: the children's names, space-separated), or the error's
    ``xs_wire.h`` name when the store refused it (``ENOENT``, ``EACCES``,
    ...)."""

    kind: ClassVar[str] = "xenstore"
    actor: ClassVar[str] = "xenstore"
    client: str
    op: str
    path: str
    value: str


@dataclass(frozen=True)
class DeviceStats(Event):
    """qemu-dm's device accesses when the domain ended: how many port and
    MMIO accesses no device claimed (reads answered all-ones, writes
    dropped), counted per bus access after splitting."""

    kind: ClassVar[str] = "device_stats"
    actor: ClassVar[str] = "qemu-dm"
    unclaimed_reads: int
    unclaimed_writes: int
    mmio_unclaimed_reads: int
    mmio_unclaimed_writes: int


@dataclass(frozen=True)
class XenstoreWatchEvent(Event):
    """A watch fired: XenStore queued ``XS_WATCH_EVENT`` (``path``,
    ``token``) for ``client``."""

    kind: ClassVar[str] = "xenstore_watch"
    actor: ClassVar[str] = "xenstore"
    client: str
    path: str
    token: str


@dataclass(frozen=True)
class DirectIo(Event):
    """The guest accessed a port whose intercept Xen clears in the HVM I/O
    bitmap (:data:`spec.platform.PASSTHROUGH_PORTS`): no VM exit, no ioreq;
    the instruction at ``rip`` reached the host's port directly after
    ``icount`` instructions (``dir`` "in" or "out")."""

    kind: ClassVar[str] = "direct_io"
    actor: ClassVar[str] = "guest"
    vcpu: int
    port: int
    size: int
    dir: str
    data: int
    icount: int
    rip: int


# --- files -------------------------------------------------------------------------------

def dump(events: Iterable[Event], stream: TextIO) -> None:
    """Write events as JSON lines."""
    for event in events:
        stream.write(json.dumps(event.to_json(), separators=(",", ":")) + "\n")


def load(stream: TextIO) -> list[Event]:
    """Read JSON-lines events, with the line number in any error."""
    events = []
    for lineno, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            events.append(Event.from_json(json.loads(line)))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"line {lineno}: {exc}") from exc
    return events
