"""The CLI as a user runs it: JSON shapes, exit codes, errors without tracebacks."""

import json

import pytest

from spec import trace
from tests.conftest import cli, cli_json


@pytest.mark.parametrize("engine", ["reference", "impl"])
def test_run_prints_serial_and_fate(engine):
    proc = cli("run", "hello", "--engine", engine)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "Hello from an unmodified guest"
    assert lines[1] == "...and this line left in a single rep outsb"
    assert "powered off" in lines[2] and "destroyed" in lines[2]
    assert "Traceback" not in proc.stderr


def test_run_json_shape():
    proc, out = cli_json("run", "hello", "--engine", "reference")
    assert proc.returncode == 0
    assert set(out) == {"serial", "exit", "instructions", "exits", "seconds", "mapcache",
                        "devices"}
    assert out["mapcache"]["mode"] == "mapcache" and out["mapcache"]["misses"] >= 1
    assert out["devices"] == {"unclaimed_reads": 0, "unclaimed_writes": 0,
                              "mmio_unclaimed_reads": 0, "mmio_unclaimed_writes": 0}
    assert out["serial"].startswith("Hello from an unmodified guest\n")
    assert out["exit"]["reason"] == "poweroff" and out["exit"]["domain"] == "destroyed"
    assert isinstance(out["instructions"], int) and out["instructions"] > 0
    assert out["exits"] == {"io": out["exits"]["io"]} and out["exits"]["io"] > 30
    assert isinstance(out["seconds"], float)


def test_run_trace_file_shows_ioreq_transitions(tmp_path):
    path = tmp_path / "t.jsonl"
    proc = cli("run", "hello", "--engine", "reference", "--trace", str(path))
    assert proc.returncode == 0
    lines = [json.loads(l) for l in path.read_text().splitlines()]
    moves = [(l["old"], l["new"]) for l in lines if l["kind"] == "ioreq"][:4]
    assert moves == [("NONE", "READY"), ("READY", "INPROCESS"),
                     ("INPROCESS", "IORESP_READY"), ("IORESP_READY", "NONE")]
    with open(path) as f:
        assert all(isinstance(e, trace.Event) for e in trace.load(f))


def test_check_json_and_exit_code():
    proc, rows = cli_json("check")
    assert proc.returncode == 0
    by_name = {r["name"]: r for r in rows}
    assert by_name["ioreq.protocol"]["result"] == "proved"
    mutant = by_name["ioreq.protocol/mutant:resume_on_inprocess"]
    assert mutant["kind"] == "mutant" and mutant["result"] == "counterexample"
    for r in rows:
        assert {"name", "kind", "expected", "result", "seconds"} <= set(r)
        assert r["kind"] in ("invariant", "mutant")
        assert r["result"] == r["expected"]


def test_conform_json():
    # dma (2 minutes on the reference engine) is compared event by event in
    # tests/test_dma.py; every other bundled guest here
    from spec.loader import bundled_guests
    guests = [g for g in bundled_guests() if g != "dma"]
    proc, out = cli_json("conform", *guests)
    assert proc.returncode == 0, out
    assert out["cases"] == len(guests) and out["equal"] == out["cases"]
    assert out["diverged"] == []


def test_help_on_every_command():
    for args in ([], ["run"], ["check"], ["conform"]):
        proc = cli(*args, "--help")
        assert proc.returncode == 0 and "usage: hvmspec" in proc.stdout


@pytest.mark.parametrize("setup,args,message", [
    (None, ["run", "no-such-guest"], "no guest 'no-such-guest'"),
    ("bad.s", ["run", "{path}"], "does not assemble at line 2"),
    ("empty.bin", ["run", "{path}"], "empty"),
    ("big.bin", ["run", "{path}"], "larger than"),
    (None, ["run", "hello", "--memory", "0"], "at least 1 MiB"),
    (None, ["run", "hello", "--engine", "qemu"], "invalid choice"),
])
def test_bad_input_is_a_clear_error(tmp_path, setup, args, message):
    path = tmp_path / (setup or "x")
    if setup == "bad.s":
        path.write_text("nop\nfrobnicate ax, 1\nnop\n")
    elif setup == "empty.bin":
        path.write_bytes(b"")
    elif setup == "big.bin":
        path.write_bytes(b"\x90" * (2 << 20))
    proc = cli(*[a.format(path=path) for a in args])
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_guest_that_crashes_exits_1(tmp_path):
    src = tmp_path / "ud.s"
    src.write_text("start:\n    .byte 0x0f, 0x0b\n")
    proc, out = cli_json("run", str(src), "--engine", "reference")
    assert proc.returncode == 1
    assert out["exit"]["reason"] == "crash" and "invalid_opcode" in out["exit"]["message"]


def test_run_reports_an_unreadable_serial_input_file():
    proc = cli("run", "hello", "--serial-input", "/nonexistent/input.bin")
    assert proc.returncode == 2
    assert "--serial-input /nonexistent/input.bin" in proc.stderr


def test_run_stats_counts_unclaimed_accesses():
    proc = cli("run", "platform", "--engine", "impl", "--stats")
    assert proc.returncode == 0
    assert "unclaimed accesses: ports 1 reads, 0 writes; MMIO 1 reads, 0 writes" in proc.stdout
