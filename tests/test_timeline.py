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
