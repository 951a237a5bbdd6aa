"""Sequence diagrams of hvmspec traces, drawn as plain SVG.

Room: documentation tooling. It reads a trace in its file format (the JSON
objects of :mod:`spec.trace`, one per event) and draws one arrow or note per
event between seven lifelines: the guest, the VMM (Xen), the shared ioreq
page, qemu-dm, its devices, XenStore (xenstored) and xend. Each event is
drawn on the lifeline of the party that acted (:func:`party`): a XenStore
request is an arrow from its client (xend or qemu-dm) to XenStore, a watch
firing one from XenStore to the watcher. No graphviz or plotting library:
the SVG is written by hand, so the drawing is deterministic (the same trace
gives the same bytes). Text wider than the drawing is wrapped, never
clipped.

A guest's trace repeats itself: every port access is the same round trip
(VM exit, ioreq to READY, event channel, INPROCESS, device access,
IORESP_READY, event channel, NONE, VM entry). :func:`plan` keeps the
start-up, the first round trip, the first round trip whose ioreq has
``data_is_ptr = 1`` (a string instruction), and the last round trip (the one
that ends the domain) in full, and folds every run of the others into one
labelled band; inside a kept round trip, a long run of device accesses (one
per repetition of a ``rep`` ioreq) is folded the same way.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field, replace
from xml.sax.saxutils import escape

from spec import platform
from spec.trace import EVENT_TYPES

#: (key, heading) of each lifeline, left to right
LANES = (
    ("guest", "guest"),
    ("vmm", "VMM (Xen)"),
    ("page", "ioreq page"),
    ("qemu-dm", "qemu-dm (dom0)"),
    ("devices", "devices"),
    ("xenstore", "XenStore (dom0)"),
    ("xend", "xend (dom0)"),
)

#: the colour of each acting party
COLOURS = {
    "guest": "#333333",
    "vmm": "#1f5fa8",
    "qemu-dm": "#2a7f3b",
    "devices": "#a0522d",
    "xenstore": "#8a6a00",
    "xend": "#7a3a9a",
}

WIDTH = 960
FONT = 11
CHAR = 6.7          # advance of one monospace character at FONT px
LINE = 13           # line height of multi-line labels
GUTTER = 44         # left margin, holds the event index


@dataclass
class Row:
    """One row of the diagram."""

    kind: str                       # arrow | note | band | header
    text: str
    index: int | None = None        # event index in the trace file
    src: str = ""
    dst: str = ""
    colour: str = "#333333"
    dashed: bool = False


# --- naming ----------------------------------------------------------------------------

_UART_READ = ("RBR", "IER", "IIR", "LCR", "MCR", "LSR", "MSR", "SCR")
_UART_WRITE = ("THR", "IER", "FCR", "LCR", "MCR", "LSR", "MSR", "SCR")


def port_name(port: int, direction: str) -> str:
    """The register behind an I/O port, as a reader of the guest knows it."""
    if platform.COM1_BASE <= port < platform.COM1_BASE + 8:
        names = _UART_READ if direction in ("in", "read") else _UART_WRITE
        return f"COM1 {names[port - platform.COM1_BASE]}"
    if platform.ACPI_PM1A_EVT_BLK <= port < platform.ACPI_PM1A_CNT_BLK:
        return "ACPI PM1a_EVT"
    if platform.ACPI_PM1A_CNT_BLK <= port < platform.ACPI_PM_TMR_BLK:
        return "ACPI PM1a_CNT"
    if platform.ACPI_PM_TMR_BLK <= port < platform.ACPI_PM_TMR_BLK + 4:
        return "ACPI PM_TMR"
    return "no device"


def mnemonic(info: dict) -> str:
    """The I/O instruction an ``io`` exit reports, in Intel syntax."""
    size, direction = info["size"], info["dir"]
    if info.get("string"):
        name = ("ins" if direction == "in" else "outs") + {1: "b", 2: "w", 4: "d"}[size]
        return ("rep " if info.get("rep") else "") + name
    reg = {1: "al", 2: "ax", 4: "eax"}[size]
    port = f"{info['port']:#x}" if info.get("imm") else "dx"
    return f"in {reg}, {port}" if direction == "in" else f"out {port}, {reg}"


def byte_repr(byte: int) -> str:
    """A serial byte as a quoted character."""
    return repr(chr(byte)) if 0x20 <= byte < 0x7F or byte in (9, 10, 13) else f"{byte:#04x}"


def client_lane(client: str) -> str:
    """The lifeline of a XenStore client: xend and qemu-dm have their own; any
    other client (a domain's ring, a tool) is drawn on XenStore's."""
    return client if client in ("xend", "qemu-dm") else "xenstore"


def party(event: dict) -> str:
    """Which party performed an event (the acting lifeline): the event type's
    ``actor`` in :mod:`spec.trace`, except where the event itself says who
    acted (an ioreq transition's ``by``, the sending domain of an
    event-channel send, the caller of a shutdown, the client of a XenStore
    request) and for a serial byte, which the UART sends."""
    kind = event["kind"]
    if kind == "ioreq":
        return event["by"]
    if kind == "evtchn_send":
        return "qemu-dm" if event["dom"] == platform.DOM0 else "vmm"
    if kind == "shutdown":
        return "qemu-dm" if event["by"] == "qemu-dm" else "vmm"
    if kind == "xenstore":
        return client_lane(event["client"])
    if kind == "serial":
        return "devices"
    cls = EVENT_TYPES.get(kind)
    actor = cls.actor if cls is not None else ""
    return actor if actor in dict(LANES) else "vmm"


def ioreq_detail(event: dict) -> str:
    """The request's fields worth reading at a state change."""
    if event["new"] == "READY":
        out = f"{event['type']} {event['dir']} {event['addr']:#x} size {event['size']}"
        if event["data_is_ptr"]:
            out += f" count {event['count']} data_is_ptr=1 data={event['data']:#x}"
        elif event["count"] != 1:
            out += f" count {event['count']}"
        if event["dir"] == "write" and not event["data_is_ptr"]:
            out += f" data={event['data']:#x}"
        return out
    if event["new"] == "IORESP_READY" and event["dir"] == "read" and not event["data_is_ptr"]:
        return f"data={event['data']:#x}"
    return ""


def _n(count: int, noun: str) -> str:
    """``count`` and the noun, plural unless the count is one."""
    return f"{count} {noun}{'' if count == 1 else 'es' if noun.endswith('s') else 's'}"


# --- events to rows -------------------------------------------------------------------------

def rows_for(index: int, event: dict) -> list[Row]:
    """The diagram rows of one trace event."""
    kind = event["kind"]
    who = party(event)
    colour = COLOURS.get(who, "#333333")
    if kind == "vmexit":
        info = event["info"]
        if event["reason"] == "io":
            text = (f"VM exit (io): {mnemonic(info)} · port {info['port']:#x}"
                    f" · icount {event['icount']}")
        else:
            text = f"VM exit ({event['reason']}): rip {event['rip']:#x} · icount {event['icount']}"
        return [Row("arrow", text, index, "guest", "vmm", colour)]
    if kind == "vmentry":
        return [Row("arrow", f"VM entry: rip {event['rip']:#x} · icount {event['icount']}",
                    index, "vmm", "guest", colour)]
    if kind == "ioreq":
        detail = ioreq_detail(event)
        text = f"{event['old']} → {event['new']}" + (f" · {detail}" if detail else "")
        return [Row("arrow", text, index, who, "page", colour)]
    if kind == "evtchn_send":
        text = (f"evtchn_send dom{event['dom']}:{event['port']} → "
                f"dom{event['remote_dom']}:{event['remote_port']}")
        dst = "vmm" if who == "qemu-dm" else "qemu-dm"
        return [Row("arrow", text, index, who, dst, colour)]
    if kind == "evtchn_bind":
        text = (f"bind_interdomain dom{event['dom']}:{event['port']} ↔ "
                f"dom{event['remote_dom']}:{event['remote_port']}")
        return [Row("arrow", text, index, "qemu-dm", "vmm", colour)]
    if kind == "device_io":
        arrow = "→" if event["dir"] == "read" else "←"
        name = port_name(event["addr"], event["dir"]) if event["space"] == "pio" else ""
        text = (f"{event['device'] or 'unclaimed'} {event['dir']} {event['addr']:#x}"
                f"{' (' + name + ')' if name else ''} {arrow} {event['data']:#x}")
        return [Row("arrow", text, index, "qemu-dm", "devices", colour)]
    if kind == "serial":
        return [Row("note", f"{event['port'].upper()} TX {byte_repr(event['byte'])}",
                    index, "devices", colour=colour)]
    if kind == "shutdown":
        text = f"domain_shutdown(dom{event['dom']}, {event['reason']})"
        if event["by"] == "qemu-dm":
            return [Row("arrow", text + " · xc_domain_shutdown", index, "qemu-dm", "vmm",
                        colour)]
        return [Row("note", f"{text} by {event['by']}", index, "vmm", colour=colour)]
    if kind == "domain":
        text = f"dom{event['dom']} {event['old']} → {event['new']}"
        if event["reason"]:
            text += f"\n{event['reason']}"
        return [Row("note", text, index, "xend", colour=colour)]
    if kind == "domain_crash":
        message = event["message"]
        message = message if len(message) <= 60 else message[:57] + "..."
        return [Row("note", f"domain_crash(dom{event['dom']})\n{message}", index, "vmm",
                    colour=colour)]
    if kind == "irq":
        return [Row("note", f"IRQ{event['irq']} := {event['level']} (sp_global)", index,
                    "qemu-dm", colour=COLOURS["qemu-dm"])]
    if kind == "inject":
        text = (f"inject vector {event['vector']:#x} (IRQ{event['irq']}) · rip "
                f"{event['rip']:#x} · icount {event['icount']}")
        return [Row("arrow", text, index, "vmm", "guest", COLOURS["vmm"])]
    if kind == "idle":
        return [Row("note", f"vcpu idle in HLT: clock {event['icount']} → {event['until']}",
                    index, "vmm", colour=COLOURS["vmm"])]
    if kind == "xen_io":
        arrow = "→" if event["dir"] == "in" else "←"
        device = {"vpic": "vPIC", "vpit": "vPIT", "pmtimer": "PM timer",
                  "vrtc": "vRTC"}.get(event["device"], event["device"])
        return [Row("note", f"{device} {event['dir']} {event['addr']:#x} {arrow} "
                            f"{event['data']:#x}", index, "vmm", colour=COLOURS["vmm"])]
    if kind == "xen_irq":
        verb = "hvm_isa_irq_assert" if event["level"] else "hvm_isa_irq_deassert"
        return [Row("note", f"IRQ{event['irq']} := {event['level']} ({verb})", index, "vmm",
                    colour=COLOURS["vmm"])]
    if kind == "timer_tick":
        text = (f"Xen's PIT timer fires: IRQ{event['irq']} edge on the vPIC "
                f"({event['pending']} pending)")
        return [Row("note", text, index, "vmm", colour=COLOURS["vmm"])]
    if kind == "hypercall":
        name = event["name"] or f"hypercall {event['number']}"
        args = ", ".join(f"{a:#x}" for a in event["args"][:2])
        return [Row("note", f"{name}({args}) → {event['result']}", index, "vmm",
                    colour=COLOURS["vmm"])]
    if kind == "p2m":
        pages = f"{event['pages']} page{'s' if event['pages'] != 1 else ''}"
        what = "removed (a hole)" if event["op"] == "remove" else "new zeroed frames"
        return [Row("note", f"p2m: {event['gpa']:#x}, {pages} {what}", index, "vmm",
                    colour=COLOURS["vmm"])]
    if kind == "mapcache_invalidate":
        return [Row("note", f"mapcache: invalidate {event['count']} buckets from "
                            f"{event['first']:#x} · {event['stale']} stale · "
                            f"{event['mapped'] >> 10} KiB still mapped", index, "qemu-dm",
                    colour=COLOURS["qemu-dm"])]
    if kind == "mapcache_miss":
        evicted = f", evicting {event['evicted']:#x}" if event["evicted"] >= 0 else ""
        return [Row("note", f"mapcache miss: map bucket {event['bucket']:#x}{evicted}",
                    index, "qemu-dm", colour=COLOURS["qemu-dm"])]
    if kind == "mapcache_stats":
        return [Row("note", f"mapcache at the end: {_n(event['hits'], 'hit')}, "
                            f"{_n(event['misses'], 'miss')}, "
                            f"{_n(event['evictions'], 'eviction')}, "
                            f"{event['mapped'] >> 10} KiB mapped", index, "qemu-dm",
                    colour=colour)]
    if kind == "device_stats":
        return [Row("note", f"unclaimed accesses: port {_n(event['unclaimed_reads'], 'read')}, "
                            f"{_n(event['unclaimed_writes'], 'write')}; MMIO "
                            f"{_n(event['mmio_unclaimed_reads'], 'read')}, "
                            f"{_n(event['mmio_unclaimed_writes'], 'write')}", index, "qemu-dm",
                    colour=colour)]
    if kind == "xenstore":
        return [xenstore_row(index, event)]
    if kind == "xenstore_watch":
        text = f"watch fires: {event['path']} (token {event['token']})"
        lane = client_lane(event["client"])
        if lane == "xenstore":
            return [Row("note", f"{text} for {event['client']}", index, "xenstore",
                        colour=colour)]
        return [Row("arrow", text, index, "xenstore", lane, colour)]
    if kind == "display":
        return [Row("note", f"display update: {len(event['rows'])} rows changed", index,
                    "qemu-dm", colour=colour)]
    if kind == "direct_io":
        return [Row("note", f"{event['dir']} {event['port']:#x}: no exit (passthrough)",
                    index, "guest", colour=colour)]
    return [Row("note", kind, index, who, colour=colour)]


def xenstore_row(index: int, event: dict) -> Row:
    """One XenStore request: an arrow from its client to XenStore."""
    op, path, value = event["op"], event["path"], event["value"]
    text = f"XenStore {op} {path}".rstrip()
    if value and op in ("write", "read"):
        text += f" {'=' if op == 'write' else '→'} {value}"
    lane = client_lane(event["client"])
    if lane == "xenstore":
        return Row("note", f"{text} by {event['client']}", index, "xenstore",
                   colour=COLOURS["xenstore"])
    return Row("arrow", text, index, lane, "xenstore", COLOURS[lane])


def window_svg(events: list[dict], start: int, end: int, title: str, fold: int = 4) -> str:
    """The diagram of ``events[start..end]``, every event drawn, except that
    a run of more than ``fold`` events of one kind keeps its first two and
    its last, with a band for the rest."""
    rows: list[Row] = []
    i = start
    while i <= end:
        j = i
        while j + 1 <= end and events[j + 1]["kind"] == events[i]["kind"]:
            j += 1
        if j - i + 1 > fold:
            for k in (i, i + 1):
                rows += rows_for(k, events[k])
            rows.append(Row("band", f"⋯ {j - i - 2} more {events[i]['kind']} events ⋯\n"
                                    f"events #{i + 2}–#{j - 1}"))
            rows += rows_for(j, events[j])
        else:
            for k in range(i, j + 1):
                rows += rows_for(k, events[k])
        i = j + 1
    return render(rows, title)


def tick_svg(events: list[dict], tick: int = 2,
             title: str = "one timer tick") -> str:
    """The diagram of one timer interrupt: from the vcpu's ``tick``-th sleep
    in HLT through the handler's EOI, unfolded; what the main loop does
    after it, up to its next HLT, is one band."""
    idles = [i for i, e in enumerate(events) if e["kind"] == "idle"]
    if len(idles) < tick:
        raise ValueError(f"the trace has {len(idles)} idle periods, not {tick}")
    start = idles[tick - 1]
    eoi = next(i for i in range(start, len(events))
               if events[i]["kind"] == "xen_io" and events[i]["device"] == "vpic")
    end = next(i for i in range(eoi, len(events)) if events[i]["kind"] == "vmentry")
    halt = next(i for i in range(end, len(events))
                if events[i]["kind"] == "vmexit" and events[i]["reason"] == "hlt")
    rows = [row for i in range(start, end + 1) for row in rows_for(i, events[i])]
    rest = events[end + 1:halt]
    text = "".join(chr(e["byte"]) for e in rest if e["kind"] == "serial")
    exits = sum(e["kind"] == "vmexit" for e in rest)
    rows.append(Row("band", f"⋯ the handler returns (IRET); the main loop prints, "
                            f"{exits} more exits ⋯\nevents #{end + 1}–#{halt - 1}; "
                            f"serial meanwhile: {text!r}"))
    rows += rows_for(halt, events[halt])
    return render(rows, title)


# --- folding -----------------------------------------------------------------------------------

@dataclass
class RoundTrip:
    """The events from one VM exit up to (not including) the next."""

    start: int
    events: list[tuple[int, dict]] = field(default_factory=list)

    @property
    def exit(self) -> dict:
        return self.events[0][1]

    def ioreqs(self) -> list[dict]:
        return [e for _, e in self.events if e["kind"] == "ioreq"]

    def is_string_ptr(self) -> bool:
        return any(e["data_is_ptr"] for e in self.ioreqs())

    def serial(self) -> str:
        return "".join(chr(e["byte"]) for _, e in self.events if e["kind"] == "serial")

    def describe(self) -> str:
        ex = self.exit
        if ex["reason"] != "io":
            return f"{ex['reason']} exit at rip {ex['rip']:#x}"
        info = ex["info"]
        return f"{mnemonic(info)} ({port_name(info['port'], info['dir'])})"


def split(events: list[dict]) -> tuple[list[tuple[int, dict]], list[RoundTrip]]:
    """The start-up events, and the round trips that follow."""
    prologue: list[tuple[int, dict]] = []
    trips: list[RoundTrip] = []
    for i, event in enumerate(events):
        if event["kind"] == "vmexit":
            trips.append(RoundTrip(i))
        if trips:
            trips[-1].events.append((i, event))
        else:
            prologue.append((i, event))
    return prologue, trips


def _fold_devices(trip: RoundTrip, keep_head: int = 2, keep_tail: int = 1) -> list[Row]:
    """The rows of a kept round trip, a long run of device accesses folded."""
    positions = [k for k, (_, e) in enumerate(trip.events) if e["kind"] == "device_io"]
    if len(positions) <= keep_head + keep_tail + 1:
        return _fold_xenstore(trip.events)
    lo, hi = positions[keep_head], positions[-keep_tail]
    rows = _fold_xenstore(trip.events[:lo])
    folded = trip.events[lo:hi]
    accesses = [e for _, e in folded if e["kind"] == "device_io"]
    text = "".join(chr(e["byte"]) for _, e in folded if e["kind"] == "serial")
    first, last = folded[0][0], folded[-1][0]
    devices = sorted({f"{e['device'] or 'unclaimed'} {e['dir']} {e['addr']:#x}" for e in accesses})
    label = (f"⋯ {len(accesses)} more device accesses of this ioreq, one per repetition "
             f"({', '.join(devices)}) ⋯")
    lines = [label, f"events #{first}–#{last}"]
    if text:
        lines[1] += f"; serial meanwhile: {text!r}"
    rows.append(Row("band", "\n".join(lines)))
    rows += _fold_xenstore(trip.events[hi:])
    return rows


def _fold_xenstore(events: list[tuple[int, dict]]) -> list[Row]:
    """The rows of a run of events, each client's consecutive XenStore
    operations drawn as one arrow from the client's lifeline to XenStore's."""
    rows: list[Row] = []
    run: list[tuple[int, dict]] = []

    def flush() -> None:
        if not run:
            return
        if len(run) == 1:
            rows.append(xenstore_row(*run[0]))
            run.clear()
            return
        client = run[0][1]["client"]
        ops: dict[str, int] = {}
        for _, e in run:
            ops[e["op"]] = ops.get(e["op"], 0) + 1
        roots = sorted({"/".join(e["path"].split("/")[:3]) + "/…" for _, e in run
                        if e["path"].startswith("/")})
        text = (f"XenStore: {', '.join(f'{n} × {op}' for op, n in ops.items())}\n"
                f"{', '.join(roots)} · events #{run[0][0]}–#{run[-1][0]}")
        lane = client_lane(client)
        if lane == "xenstore":
            rows.append(Row("note", f"{text} by {client}", run[0][0], lane,
                            colour=COLOURS[lane]))
        else:
            rows.append(Row("arrow", text, run[0][0], lane, "xenstore", COLOURS[lane]))
        run.clear()

    for i, event in events:
        if event["kind"] == "xenstore" and (not run or run[0][1]["client"] == event["client"]):
            run.append((i, event))
            continue
        flush()
        if event["kind"] == "xenstore":
            run.append((i, event))
        else:
            rows += rows_for(i, event)
    flush()
    return rows


def _band(trips: list[RoundTrip]) -> Row:
    """One band standing for a run of round trips that are not drawn."""
    counts: dict[str, int] = {}
    for t in trips:
        counts[t.describe()] = counts.get(t.describe(), 0) + 1
    sizes = sorted({len(t.events) for t in trips})
    each = f", each the same {sizes[0]} events" if len(sizes) == 1 else ""
    first, last = trips[0].events[0][0], trips[-1].events[-1][0]
    lines = [f"⋯ {len(trips)} more round trip{'s' if len(trips) != 1 else ''}{each} ⋯",
             ", ".join(f"{n} × {what}" for what, n in counts.items())]
    text = "".join(t.serial() for t in trips)
    tail = f"events #{first}–#{last}"
    if text:
        tail += f"; serial meanwhile: {text!r}"
    lines.append(tail)
    return Row("band", "\n".join(lines))


def plan(events: list[dict]) -> list[Row]:
    """The rows of the folded diagram of a whole trace (see module docstring)."""
    prologue, trips = split(events)
    rows: list[Row] = []
    if prologue:
        rows.append(Row("header", "start-up: xend creates the domain and writes its "
                        "configuration to XenStore, qemu-dm reads it and binds the vcpu's "
                        "ioreq event channel, first VM entry"))
        rows += _fold_xenstore(prologue)
    if not trips:
        return rows
    keep = {0, len(trips) - 1}
    string = next((k for k, t in enumerate(trips) if t.is_string_ptr()), None)
    if string is not None:
        keep.add(string)
    pending: list[RoundTrip] = []
    for k, trip in enumerate(trips):
        if k not in keep:
            pending.append(trip)
            continue
        if pending:
            rows.append(_band(pending))
            pending = []
        header = f"exit {k + 1} of {len(trips)}: {trip.describe()}"
        ptr = [e for e in trip.ioreqs() if e["data_is_ptr"]]
        if ptr:
            header += (f": one ioreq, data_is_ptr=1, count={ptr[0]['count']}, "
                       f"data={ptr[0]['data']:#x}")
        if any(e["kind"] == "shutdown" for _, e in trip.events):
            header += ": the domain shuts down"
        rows.append(Row("header", header))
        rows += _fold_devices(trip)
    return rows


# --- drawing --------------------------------------------------------------------------------------

def _lane_x() -> dict[str, float]:
    left, right = GUTTER + 50, WIDTH - 90
    step = (right - left) / (len(LANES) - 1)
    return {key: left + i * step for i, (key, _) in enumerate(LANES)}


def _text_width(text: str) -> float:
    return max(len(line) for line in text.split("\n")) * CHAR


#: the most characters of a line of text that fit any row (a header's or a
#: band's box, a note's, an arrow's label) between the index gutter and the
#: right edge
MAX_CHARS = int((WIDTH - GUTTER - 24) / CHAR)


def _wrapped(row: Row) -> Row:
    """The row with every line of its text wrapped to :data:`MAX_CHARS`."""
    lines = [part for line in row.text.split("\n")
             for part in (textwrap.wrap(line, MAX_CHARS, break_on_hyphens=False,
                                        subsequent_indent="  ") or [""])]
    text = "\n".join(lines)
    return row if text == row.text else replace(row, text=text)


def _text(x: float, y: float, text: str, *, anchor: str = "start", colour: str = "#222",
          weight: str = "normal", style: str = "normal", halo: bool = False,
          size: int = FONT) -> str:
    attrs = [f'x="{x:.1f}"', f'y="{y:.1f}"', f'fill="{colour}"']
    if anchor != "start":
        attrs.append(f'text-anchor="{anchor}"')
    if weight != "normal":
        attrs.append(f'font-weight="{weight}"')
    if style != "normal":
        attrs.append(f'font-style="{style}"')
    if size != FONT:
        attrs.append(f'font-size="{size}"')
    if halo:
        attrs.append('stroke="#ffffff" stroke-width="3" stroke-linejoin="round" '
                     'paint-order="stroke"')
    return f"<text {' '.join(attrs)}>{escape(text)}</text>"


def _row_height(row: Row) -> float:
    lines = row.text.count("\n") + 1
    if row.kind == "arrow":
        return 22 + (lines - 1) * LINE
    if row.kind == "note":
        return 10 + lines * LINE + 4
    if row.kind == "band":
        return 14 + lines * LINE + 6
    return 26 + (lines - 1) * LINE    # header


def _lane_heads(y: float, xs: dict[str, float]) -> list[str]:
    out = []
    for key, title in LANES:
        w = max(len(title) * CHAR + 16, 100)
        out.append(f'<rect x="{xs[key] - w / 2:.1f}" y="{y:.1f}" width="{w:.1f}" height="26" '
                   f'rx="3" fill="#f4f4f4" stroke="#555555"/>')
        out.append(_text(xs[key], y + 17, title, anchor="middle", weight="bold"))
    return out


def render(rows: list[Row], title: str) -> str:
    """The SVG document of a list of rows."""
    xs = _lane_x()
    rows = [_wrapped(row) for row in rows]
    top = 12
    y = top + 26 + 14
    body: list[str] = []
    for row in rows:
        h = _row_height(row)
        body += _draw(row, y, h, xs)
        y += h
    bottom = y + 10
    legend_y = bottom + 26 + 18
    height = legend_y + 26
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH} {height:.0f}" font-family="DejaVu Sans Mono, Menlo, Consolas, '
        f'Liberation Mono, monospace" font-size="{FONT}">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{height:.0f}" fill="#ffffff"/>',
    ]
    for key, _ in LANES:
        out.append(f'<line x1="{xs[key]:.1f}" y1="{top + 26}" x2="{xs[key]:.1f}" y2="{bottom:.1f}" '
                   f'stroke="#b0b0b0" stroke-dasharray="4 3"/>')
    out += _lane_heads(top, xs)
    out += body
    out += _lane_heads(bottom, xs)
    out += _legend(legend_y)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _legend(y: float) -> list[str]:
    """Two lines under the diagram: the colours, then how to read it."""
    out = [_text(8, y, "acts:", colour="#555555")]
    x = GUTTER
    items = [("guest", "guest"), ("vmm", "Xen"), ("qemu-dm", "qemu-dm"),
             ("devices", "device"), ("xenstore", "XenStore"), ("xend", "xend")]
    for key, label in items:
        out.append(f'<line x1="{x:.1f}" y1="{y - 4:.1f}" x2="{x + 22:.1f}" y2="{y - 4:.1f}" '
                   f'stroke="{COLOURS[key]}" stroke-width="2"/>')
        out.append(_text(x + 27, y, label, colour=COLOURS[key]))
        x += 27 + len(label) * CHAR + 18
    out.append(_text(GUTTER, y + 16, "#n: the event's index in the trace file (0-based). "
                     "Dashed: modelled but not a trace event.", colour="#555555"))
    return out


def _arrow_head(x: float, y: float, direction: int, colour: str) -> str:
    back = x - direction * 8
    return (f'<path d="M{x:.1f},{y:.1f} L{back:.1f},{y - 4:.1f} L{back:.1f},{y + 4:.1f} Z" '
            f'fill="{colour}"/>')


def _draw(row: Row, y: float, h: float, xs: dict[str, float]) -> list[str]:
    out = []
    if row.index is not None:
        out.append(_text(6, y + h - 7 if row.kind == "arrow" else y + 17, f"#{row.index}",
                         colour="#888888", size=10))
    lines = row.text.split("\n")
    if row.kind == "header":
        out.append(f'<rect x="{GUTTER - 8}" y="{y + 4:.1f}" width="{WIDTH - GUTTER:.1f}" '
                   f'height="{h - 6:.1f}" fill="#e8eef7" stroke="none"/>')
        for k, line in enumerate(lines):
            out.append(_text(GUTTER, y + 18 + k * LINE, line, colour="#1f3f6a", weight="bold"))
        return out
    if row.kind == "band":
        out.append(f'<rect x="{GUTTER - 8}" y="{y + 5:.1f}" width="{WIDTH - GUTTER - 2:.1f}" '
                   f'height="{h - 10:.1f}" rx="4" fill="#f3f3f8" fill-opacity="0.94" '
                   f'stroke="#8888aa" stroke-dasharray="5 3"/>')
        mid = (GUTTER - 8 + WIDTH - 10) / 2
        for k, line in enumerate(lines):
            out.append(_text(mid, y + 5 + 14 + k * LINE, line, anchor="middle",
                             colour="#333355", style="italic" if k == 0 else "normal"))
        return out
    if row.kind == "note":
        w = _text_width(row.text) + 14
        cx = xs[row.src]
        x0 = min(max(cx - w / 2, GUTTER), WIDTH - 8 - w)
        out.append(f'<rect x="{x0:.1f}" y="{y + 5:.1f}" width="{w:.1f}" '
                   f'height="{len(lines) * LINE + 6:.1f}" rx="3" fill="#fff8dc" '
                   f'stroke="{row.colour}" stroke-width="0.8"/>')
        for k, line in enumerate(lines):
            out.append(_text(x0 + 7, y + 5 + 12 + k * LINE, line, colour=row.colour))
        return out
    # arrow
    x1, x2 = xs[row.src], xs[row.dst]
    direction = 1 if x2 > x1 else -1
    ly = y + h - 5
    dash = ' stroke-dasharray="6 4"' if row.dashed else ""
    out.append(f'<line x1="{x1:.1f}" y1="{ly:.1f}" x2="{x2 - direction * 7:.1f}" y2="{ly:.1f}" '
               f'stroke="{row.colour}" stroke-width="1.4"{dash}/>')
    out.append(_arrow_head(x2, ly, direction, row.colour))
    w = _text_width(row.text)
    mid = (x1 + x2) / 2
    x0 = min(max(mid - w / 2, GUTTER - 4), WIDTH - 6 - w)
    for k, line in enumerate(lines):
        out.append(_text(x0, ly - 5 - (len(lines) - 1 - k) * LINE, line, colour=row.colour,
                         halo=True))
    return out


def sequence_svg(events: list[dict], title: str = "sequence diagram") -> str:
    """The folded sequence diagram of a trace (JSON objects of :mod:`spec.trace`)."""
    rows = plan(events)
    rows = _with_implied(rows, events)
    return render(rows, title)


def _with_implied(rows: list[Row], events: list[dict]) -> list[Row]:
    """Add the notification that is modelled but not traced: Xen raises
    ``VIRQ_DOM_EXC`` in dom0 when a domain shuts down or dies, xenstored
    handles it and fires ``@releaseDomain`` (:mod:`spec.dom0`), which is how
    xend learns of it. A firing right after the watch was set is the one
    every new watch gets, not a VIRQ's."""
    out: list[Row] = []
    for row in rows:
        i = row.index
        if (i is not None and events[i]["kind"] == "xenstore_watch"
                and events[i]["path"] == "@releaseDomain"
                and not (i > 0 and events[i - 1]["kind"] == "xenstore"
                         and events[i - 1]["op"] == "watch")):
            out.append(Row("arrow", "VIRQ_DOM_EXC", None, "vmm", "xenstore", COLOURS["vmm"],
                           dashed=True))
        out.append(row)
    return out
