"""``hvmspec timeline``: a trace cut at the firmware's log lines, and the
Firmware page's recorded POST timeline against a fresh run."""

from __future__ import annotations

import json

from spec import hvmloader, trace
from hvmspec import timeline
from tests.conftest import ROOT, cli, peer_file


def _events(*specs):
    return [trace.Event.from_json(s) for s in specs]


def _log(port: int, text: str):
    return [{"kind": "firmware_log", "by": "qemu-dm", "port": port, "byte": b}
            for b in text.encode()]


def _exit(icount: int, reason: str = "io", port: int = 0x70):
    return {"kind": "vmexit", "vcpu": 0, "reason": reason, "rip": 0xF0000, "icount": icount,
            "info": {"port": port}}


def test_phases_cut_at_completed_lines_on_each_port():
    events = _events(
        _exit(10), {"kind": "device_io", "device": "rtc", "space": "pio", "addr": 0x71,
                    "size": 1, "dir": "read", "data": 0},
        *_log(0x402, "Start"),                       # the BIOS's line, not yet complete
        *_log(0x500, "VGA\r\n"),                     # the VGA BIOS's line ends first
        _exit(50, "hlt"),
        {"kind": "idle", "vcpu": 0, "icount": 50, "until": 1050},
        {"kind": "inject", "vcpu": 0, "vector": 8, "irq": 0, "icount": 1050, "rip": 0},
        {"kind": "exception", "vcpu": 0, "vector": 0x1C, "source": "software",
         "error_code": None, "cr2": None, "rip": 0, "icount": 1060},
        {"kind": "device_io", "device": None, "space": "pio", "addr": 0x1F7, "size": 1,
         "dir": "read", "data": 0xFF},
        {"kind": "device_io", "device": "debug_ports", "space": "pio", "addr": 0x402,
         "size": 1, "dir": "write", "data": 0x41},
        *_log(0x402, " here\n"),
        _exit(1100), {"kind": "direct_io", "vcpu": 0, "port": 0x80, "size": 1, "dir": "out",
                      "data": 0, "icount": 1110, "rip": 0},
        {"kind": "display", "icount": 99_999, "mode": "text", "width": 720, "height": 400,
         "rects": [], "grid": [80, 25], "rows": [], "cells": [], "cursor": [],
         "frame": "0"},                              # the clock, not an instruction count
        *_log(0x402, "No boot"))                     # the run ended inside a line
    phases = timeline.phases(events)
    assert [p["line"] for p in phases] == ["VGA", "Start here", "No boot"]
    assert [p["port"] for p in phases] == [0x500, 0x402, 0x402]
    first, second, last = phases
    assert first["exits"] == {"io": 1} and first["devices"] == {"rtc": 1}
    assert (first["start"], first["end"], first["instructions"]) == (0, 10, 10)
    # the halted 1000 ns are not instructions
    assert (second["start"], second["end"], second["idle_ns"]) == (10, 1060, 1000)
    assert second["instructions"] == 50
    assert second["exits"] == {"hlt": 1} and second["irqs"] == {"0": 1}
    assert second["services"] == {"0x1c": 1}
    assert second["devices"] == {"unclaimed": 1}     # the log's own port is not a device
    assert last["devices"] == {"port 0x80": 1} and last["instructions"] == 50
    totals = timeline.totals(phases)
    assert totals["instructions"] == 110 and totals["icount"] == 1110
    assert totals["exits"] == {"io": 2, "hlt": 1} and totals["lines"] == 3


def test_timeline_command_reads_a_trace_file(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in [_exit(5), *_log(0x402, "Hi\n")]))
    proc = cli("timeline", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["phases"][0]["line"] == "Hi" and out["totals"]["exits"] == {"io": 1}
    human = cli("timeline", str(path))
    assert human.returncode == 0 and "-> 'Hi'" in human.stdout


def test_timeline_command_refuses_what_is_not_a_trace(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kind": "vmexit"}\n')
    proc = cli("timeline", str(bad))
    assert proc.returncode == 2 and "line 1" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("timeline", str(tmp_path / "missing.jsonl"))
    assert proc.returncode == 2 and "cannot read" in proc.stderr
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\xff\xfe\x00")
    proc = cli("timeline", str(binary))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_the_firmware_pages_post_timeline_is_a_fresh_runs():
    """docs/post_timeline.json is what ``make timeline`` records now: if a
    change alters rombios's POST, the page must be recorded again."""
    peer_file(*hvmloader.FIRMWARE["rombios"])
    peer_file(*hvmloader.VGABIOS)
    recorded = json.loads((ROOT / "docs" / "post_timeline.json").read_text())
    fresh = timeline.record_post()
    assert fresh == recorded, "rombios's POST changed: run `make timeline` and review the page"
    assert fresh["phases"][-1]["line"] == "No bootable device"


def _serial(text: str):
    return [{"kind": "serial", "port": "com1", "byte": b} for b in text.encode()]


def test_marks_cut_only_where_each_first_shows_in_order():
    """An OS boot's phases: cut where each mark first completes, in a
    firmware line or in COM1's output, in order; a later mark seen early
    does not cut; mapcache misses are counted per phase and the domain's
    totals land in the phase where it ended."""
    events = _events(
        _exit(100), *_log(0x402, "POST line\n"), *_log(0x402, "Booting from CD\n"),
        _exit(200), *_serial("early Run /init too soon\r\n"),
        {"kind": "mapcache_miss", "bucket": 0x100000, "evicted": -1, "mapped": 1 << 20},
        _exit(300), *_serial("[0.0] Linux version 6.1\r\n"),
        _exit(400), *_serial("Run /init as init process\r\n"),
        {"kind": "mapcache_miss", "bucket": 0x200000, "evicted": -1, "mapped": 2 << 20},
        {"kind": "mapcache_miss", "bucket": 0x300000, "evicted": -1, "mapped": 3 << 20},
        _exit(500), *_serial("hvmspec-linux# "), _exit(600),
        {"kind": "mapcache_stats", "mode": "bucket", "bucket_size": 1 << 20, "budget": 0,
         "hits": 40, "misses": 3, "evictions": 0, "invalidations": 0, "mapped": 3 << 20,
         "peak": 3 << 20})
    out = timeline.phases(events, timeline.OS_MARKS)
    assert [p["line"] for p in out] == ["Booting from", "Linux version",
                                        "Run /init as init process", "hvmspec-linux# ", None]
    assert [p["port"] for p in out] == [0x402, None, None, None, None]
    assert [(p["start"], p["end"]) for p in out] == [(0, 100), (100, 300), (300, 400),
                                                     (400, 500), (500, 600)]
    assert [p["mapcache_misses"] for p in out] == [0, 1, 0, 2, 0]
    assert "mapcache" not in out[0] and out[-1]["mapcache"]["hits"] == 40
    totals = timeline.totals(out)
    assert totals["mapcache_misses"] == 3 and totals["mapcache"]["misses"] == 3


def test_timeline_command_takes_marks(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in
                            [*_log(0x402, "Booting from CD-Rom\n"), _exit(5),
                             *_serial("Linux version x\n"), _exit(9)]))
    proc = cli("timeline", str(path), "--os", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [p["line"] for p in json.loads(proc.stdout)["phases"]] == [
        "Booting from", "Linux version", None]
    proc = cli("timeline", str(path), "--mark", "version x", "--json")
    assert [p["line"] for p in json.loads(proc.stdout)["phases"]] == ["version x", None]
