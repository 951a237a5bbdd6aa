"""The documentation's generated material: drawn from real traces, readable, deterministic.

These exercise ``docs/_ext`` directly (no Sphinx build): the sequence
diagram of a trace, how it folds repeated round trips, and the proof table.
"""

import json
import sys
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import ROOT, guest, run

sys.path.insert(0, str(ROOT / "docs" / "_ext"))

import hvmspec_docs  # noqa: E402
import hvmspec_seq  # noqa: E402

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def hello_events():
    from spec.loader import load
    result = run("reference", load("hello"))
    return [json.loads(json.dumps(e.to_json())) for e in result.trace]


def _texts(svg: str) -> list[str]:
    root = ET.fromstring(svg.split("\n", 1)[1])
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def test_hello_diagram_is_well_formed_and_deterministic(hello_events):
    svg = hvmspec_seq.sequence_svg(hello_events, "hello")
    assert svg == hvmspec_seq.sequence_svg(hello_events, "hello")
    root = ET.fromstring(svg.split("\n", 1)[1])
    assert root.tag == f"{SVG}svg" and int(root.get("width")) <= 1000
    texts = _texts(svg)
    for lane in ("guest", "VMM (Xen)", "ioreq page", "qemu-dm (dom0)", "devices", "xend (dom0)"):
        assert lane in texts
    joined = "\n".join(texts)
    for needle in ("NONE → READY", "READY → INPROCESS", "INPROCESS → IORESP_READY",
                   "IORESP_READY → NONE", "data_is_ptr=1", "evtchn_send", "VIRQ_DOM_EXC",
                   "more round trips", "domain_shutdown(dom1, poweroff)", "shutdown → dying",
                   "dying → destroyed"):
        assert needle in joined, needle


def test_hello_diagram_keeps_first_string_and_last_round_trips(hello_events):
    rows = hvmspec_seq.plan(hello_events)
    headers = [r.text for r in rows if r.kind == "header"]
    assert headers[0].startswith("start-up")
    assert headers[1].startswith("exit 1 of 64: in al, dx")
    assert "rep outsb" in headers[2] and "data_is_ptr=1, count=44" in headers[2]
    assert headers[3].startswith("exit 64 of 64") and "shuts down" in headers[3]
    bands = [r.text for r in rows if r.kind == "band"]
    assert bands[0].startswith("⋯ 61 more round trips")
    assert "Hello from an unmodified guest" in bands[0]
    assert "41 more device accesses" in bands[1]
    # Every drawn trace event appears once, in trace order.
    indices = [r.index for r in rows if r.index is not None]
    assert indices == sorted(set(indices))
    assert len(rows) < 60


def test_diagram_of_a_crash(tmp_path):
    result = run("reference", guest("crash", "    .byte 0xea\n    .word 0x0000, 0xa000\n",
                                    poweroff=False))
    events = [e.to_json() for e in result.trace]
    assert any(e["kind"] == "domain_crash" for e in events)
    svg = hvmspec_seq.sequence_svg(events, "crash")
    joined = "\n".join(_texts(svg))
    assert "VM exit (ept_violation)" in joined and "domain_crash(dom1)" in joined


def test_excerpt_is_the_first_round_trip(hello_events):
    start, end = hvmspec_docs._first_round_trip(hello_events)
    kinds = [hello_events[i]["kind"] for i in range(start, end + 1)]
    assert kinds == ["vmexit", "ioreq", "evtchn_send", "ioreq", "device_io", "ioreq",
                     "evtchn_send", "ioreq", "vmentry"]
    text = hvmspec_docs._excerpt_rst(hello_events)
    assert "IORESP_READY" in text and ".. list-table::" in text


def test_proof_table_shows_every_counterexample():
    rows = [
        {"name": "ioreq.protocol", "kind": "invariant", "expected": "proved",
         "result": "proved", "seconds": 0.1, "counterexample": []},
        {"name": "ioreq.protocol/mutant:resume_on_inprocess", "kind": "mutant",
         "expected": "counterexample", "result": "counterexample", "seconds": 0.02,
         "counterexample": ["initially       NONE", "step 1: vmm_send -> READY",
                            "the last step breaks the property"]},
        {"name": "x.broken", "kind": "invariant", "expected": "proved", "result": "unknown",
         "seconds": 0.3, "counterexample": []},
    ]
    text = hvmspec_docs._proofs_rst(rows)
    assert "``ioreq.protocol``" in text
    assert "    step 1: vmm_send -> READY" in text
    assert "Mutant: replaces ``spec.ioreq.vmm_wait_outcome``" in text
    assert "(UNEXPECTED)" in text


def test_string_examples_come_from_the_spec():
    text = hvmspec_docs._string_chunks_rst()
    assert "by value (straddles a page)" in text and "no ioreq" in text


def test_timer_tick_diagram_shows_the_interrupt_path_in_order():
    from spec.loader import load
    result = run("reference", load("timer"))
    events = [json.loads(json.dumps(e.to_json())) for e in result.trace]
    svg = hvmspec_seq.tick_svg(events, 2, "tick")
    assert svg == hvmspec_seq.tick_svg(events, 2, "tick")
    texts = [t for t in _texts(svg) if not t.startswith("#")]
    # IRQ0 is Xen's (Xen 3.0.4's PIT, spec/devices/pit.py): its timer fires in
    # the VMM, with no qemu-dm line and no event-channel send; the handler's
    # PM timer read and EOI are Xen's too (pmtimer.c, vpic.c): no ioreq at all
    order = [next(i for i, t in enumerate(texts) if t.startswith(prefix)) for prefix in (
        "vcpu idle in HLT", "Xen's PIT timer fires: IRQ0", "inject vector 0x20",
        "VM entry", "PM timer in 0x1f48", "vPIC out 0x20", "VM exit (hlt)")]
    assert order == sorted(order), texts
    assert not [t for t in texts if t.startswith(("IRQ0 :=", "evtchn_send"))], texts
    inject = next(e for e in events if e["kind"] == "inject")
    assert any(f"icount {inject['icount']}" in t for t in _texts(hvmspec_seq.tick_svg(events, 1)))


def test_balloon_diagram_shows_the_invalidation_before_the_guest_runs(tmp_path):
    hvmspec_docs._write_balloon(tmp_path)
    svg = (tmp_path / "balloon_invalidate.svg").read_text()
    texts = [t for t in _texts(svg) if not t.startswith("#")]
    order = [next(i for i, t in enumerate(texts) if t.startswith(prefix)) for prefix in (
        "VM exit (vmcall)", "p2m: 0x200000, 1 page removed", "⋯ 13 more p2m events",
        "p2m: 0x20f000", "memory_op(0x1, 0x9000) → 16", "NONE → READY · invalidate write",
        "mapcache: invalidate 256 buckets from 0x0", "IORESP_READY → NONE", "VM entry")]
    assert order == sorted(order), texts
    table = (tmp_path / "balloon_calls.rst").read_text()
    assert table.count("memory_op") == 5 and table.count("yes") == 2 and "-38" in table


def test_devices_diagram_is_one_rtc_interrupt(tmp_path):
    hvmspec_docs._write_devices(tmp_path)
    texts = [t for t in _texts((tmp_path / "platform_rtc.svg").read_text())
             if not t.startswith("#")]
    order = [next(i for i, t in enumerate(texts) if t.startswith(prefix)) for prefix in (
        "VM exit (hlt)", "vcpu idle in HLT", "IRQ8 := 1 (hvm_isa_irq_assert",
        "inject vector 0x70 (IRQ8)", "vRTC out 0x70", "IRQ8 := 0", "vRTC in 0x71",
        "vPIC out 0xa0", "vPIC out 0x20")]
    assert order == sorted(order), texts
    exits = [i for i, t in enumerate(texts) if t.startswith("VM exit")]
    assert texts[exits[-1]].startswith("VM exit (hlt)") and exits[-1] > order[-1]


def _text_extents(svg: str):
    """(text, left, right) of every text element, its width estimated with
    the diagram's own monospace advance (DejaVu Sans Mono's is 0.60 em, under
    :data:`hvmspec_seq.CHAR` at the diagram's font size)."""
    root = ET.fromstring(svg.split("\n", 1)[1])
    for t in root.iter(f"{SVG}text"):
        text = t.text or ""
        size = float(t.get("font-size", hvmspec_seq.FONT))
        width = len(text) * hvmspec_seq.CHAR * size / hvmspec_seq.FONT
        x = float(t.get("x"))
        anchor = t.get("text-anchor", "start")
        left = x - width / 2 if anchor == "middle" else x - width if anchor == "end" else x
        yield text, left, left + width


def test_hello_diagram_text_is_never_clipped(hello_events):
    """Every line of text lies inside the drawing (the start-up band's title
    ran past the right edge), and wrapped text keeps all its words."""
    svg = hvmspec_seq.sequence_svg(hello_events, "hello")
    width = int(ET.fromstring(svg.split("\n", 1)[1]).get("width"))
    for text, left, right in _text_extents(svg):
        assert 0 <= left and right <= width, (text, left, right)
    joined = " ".join(" ".join(t for t, _, _ in _text_extents(svg)).split())
    header = next(r.text for r in hvmspec_seq.plan(hello_events) if r.kind == "header")
    assert header in joined and header.endswith("first VM entry")


def test_hello_diagram_draws_each_event_on_its_actors_lifeline(hello_events):
    """A row starts on the lifeline of the party that acted, as the trace's
    event types name it (spec.trace's ``actor``): XenStore requests are
    arrows from their client to XenStore, watch firings arrows from XenStore,
    and nothing qemu-dm or XenStore did is drawn on the VMM's lifeline."""
    from spec.trace import EVENT_TYPES
    rows = hvmspec_seq.plan(hello_events)
    lanes = dict(hvmspec_seq.LANES)
    assert "xenstore" in lanes
    kinds = set()
    for row in rows:
        if row.index is None:
            continue
        e = hello_events[row.index]
        kinds.add(e["kind"])
        actor = EVENT_TYPES[e["kind"]].actor
        if e["kind"] == "xenstore":
            assert (row.kind, row.src, row.dst) == ("arrow", e["client"], "xenstore"), row
        elif e["kind"] == "xenstore_watch":
            assert (row.kind, row.src, row.dst) == ("arrow", "xenstore", e["client"]), row
        elif e["kind"] == "evtchn_send":
            assert row.src == ("qemu-dm" if e["dom"] == 0 else "vmm")
        elif e["kind"] == "serial":
            assert row.src == "devices"
        elif e["kind"] == "shutdown":
            assert row.src == e["by"]
        elif e["kind"] != "ioreq":
            assert row.src == actor, (e, row)
        if actor in ("qemu-dm", "xenstore", "xend"):
            assert "vmm" not in (row.src, row.dst) or e["kind"] in ("evtchn_bind", "shutdown"), \
                (e, row)
    assert {"xenstore", "xenstore_watch", "mapcache_stats", "device_stats"} <= kinds
    implied = [r for r in hvmspec_seq._with_implied(rows, hello_events)
               if r.index is None and r.kind == "arrow"]
    assert [(r.text, r.src, r.dst) for r in implied] == [("VIRQ_DOM_EXC", "vmm", "xenstore")] * 2
