"""The CLI as a user runs it: JSON shapes, exit codes, errors without tracebacks."""

import json
import os
import subprocess
import sys

import pytest

from spec import trace
from tests.conftest import ROOT, cli, cli_json


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
    assert set(out) == {"serial", "firmware_log", "exit", "instructions", "exits", "seconds",
                        "mapcache", "devices"}
    assert out["firmware_log"] == ""
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
    # the ioreq group (every check of every group runs in tests/test_proofs.py)
    proc, rows = cli_json("check", "ioreq")
    assert proc.returncode == 0
    assert len(rows) > 2 and all(r["name"].startswith("ioreq") for r in rows)
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
    assert [r["case"] for r in out["results"]] == guests
    assert all(r["equal"] and r["events"] > 0 for r in out["results"])


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
    src.write_text("start:\n    .byte 0xea\n    .word 0x0000, 0xa000\n")
    proc, out = cli_json("run", str(src), "--engine", "reference")
    assert proc.returncode == 1
    assert out["exit"]["reason"] == "crash" and "instruction fetch" in out["exit"]["message"]


def test_run_reports_an_unreadable_serial_input_file():
    proc = cli("run", "hello", "--serial-input", "/nonexistent/input.bin")
    assert proc.returncode == 2
    assert "--serial-input /nonexistent/input.bin" in proc.stderr


def test_run_stats_counts_unclaimed_accesses():
    proc = cli("run", "platform", "--engine", "impl", "--stats")
    assert proc.returncode == 0
    assert "unclaimed accesses: ports 1 reads, 0 writes; MMIO 1 reads, 0 writes" in proc.stdout


# --- how a guest's name is read ------------------------------------------------------

def test_upper_case_S_is_assembly_and_the_run_says_so(tmp_path):
    src = tmp_path / "HELLO.S"
    src.write_text((ROOT / "guests" / "hello.s").read_text())
    proc = cli("run", str(src))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Hello from an unmodified guest\n")
    assert f"HELLO: 16-bit assembly source {src}, 65,536 bytes" in proc.stderr


@pytest.mark.parametrize("name", ["notes.txt", "hello.asm.bak", "readme"])
def test_text_is_not_run_as_machine_code(tmp_path, name):
    path = tmp_path / name
    path.write_text((ROOT / "guests" / "hello.s").read_text())
    proc = cli("run", str(path))
    assert proc.returncode == 2
    assert f"{path}: this is text, not a raw image" in proc.stderr
    assert "*.s, *.S or *.asm" in proc.stderr


def test_a_raw_image_is_named_as_one(tmp_path):
    from spec.loader import load
    image = tmp_path / "rom.bin"
    image.write_bytes(load("hello").image)
    proc = cli("run", str(image))
    assert proc.returncode == 0
    assert f"rom: a raw image {image}, 65,536 bytes at 0xf0000-0xfffff" in proc.stderr


def test_a_bundled_name_wins_over_a_local_file_and_says_so(tmp_path):
    (tmp_path / "timer").mkdir()                       # a directory ./timer
    (tmp_path / "hello").write_bytes(b"\xf4" * 16)     # a file ./hello
    proc = cli("run", "hello", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("Hello from")
    assert ("note: 'hello' is a bundled guest and also a file here; running the bundled "
            "guest (write ./hello for the file)") in proc.stderr
    local = cli("run", "./hello", "--max-instructions", "100", cwd=tmp_path)
    assert "hello: a raw image ./hello, 16 bytes" in local.stderr
    plain = cli("run", "hello")
    assert "note:" not in plain.stderr and plain.stderr == ""


# --- output paths are checked before the run -----------------------------------------

@pytest.mark.parametrize("option,value,message", [
    ("--trace", "/nonexistent/x.jsonl", "--trace /nonexistent/x.jsonl: directory "
                                        "/nonexistent does not exist"),
    ("--trace", "{tmp}", "--trace {tmp}: is a directory"),
    ("--screenshot", "/nonexistent/s.png", "--screenshot /nonexistent/s.png: directory "
                                           "/nonexistent does not exist"),
    ("--screenshot", "{tmp}/s.jpg", "--screenshot {tmp}/s.jpg: the file must end in .png"),
])
def test_output_paths_are_refused_before_the_guest_runs(tmp_path, option, value, message):
    proc = cli("run", "hello", option, value.format(tmp=tmp_path))
    assert proc.returncode == 2
    assert f"hvmspec: error: {message.format(tmp=tmp_path)}" in proc.stderr
    assert proc.stdout == ""                 # nothing ran: no serial output
    assert "Traceback" not in proc.stderr


def test_trace_to_stdout_keeps_people_output_on_stderr():
    proc = cli("run", "hello", "--trace", "-")
    assert proc.returncode == 0
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[0]["kind"] == "xenstore" and events[-1]["kind"] == "domain"
    assert "Hello from an unmodified guest" in proc.stderr
    assert "powered off" in proc.stderr
    both = cli("run", "hello", "--trace", "-", "--json")
    assert both.returncode == 2 and "both want standard output" in both.stderr


# --- version, module entry, usage -----------------------------------------------------

def test_version_and_python_dash_m():
    from importlib.metadata import version
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith(f"hvmspec {version('hvmspec')} ")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    as_module = subprocess.run([sys.executable, "-m", "hvmspec", "run", "hello"],
                               capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert as_module.returncode == 0 and as_module.stdout.startswith("Hello from")


@pytest.mark.parametrize("args,usage", [
    (["run", "hello", "--frobnicate"], "usage: hvmspec run "),
    (["check", "--frobnicate"], "usage: hvmspec check "),
    (["vectors", "run", "x.jsonl", "--frobnicate"], "usage: hvmspec vectors run "),
    (["xm", "list", "--frobnicate"], "usage: hvmspec xm list "),
])
def test_an_unknown_option_gets_its_commands_usage(args, usage):
    proc = cli(*args)
    assert proc.returncode == 2
    assert proc.stderr.startswith(usage), proc.stderr
    assert "hvmspec: error: unrecognized arguments: --frobnicate" in proc.stderr


def test_every_error_has_one_prefix(tmp_path):
    for args in (["run", "no-such-guest"], ["run", "hello", "--engine", "qemu"],
                 ["check", "no-such-check"], ["vectors", "run", "/nonexistent.jsonl"],
                 ["xm", "--dir", str(tmp_path), "list"]):
        proc = cli(*args)
        assert proc.returncode == 2, args
        assert proc.stderr.strip().splitlines()[-1].startswith("hvmspec: error: "), \
            (args, proc.stderr)


# --- check: a subset, literal counterexamples -----------------------------------------

def test_check_runs_a_subset_by_name_or_pattern():
    proc, rows = cli_json("check", "mapcache.budget")
    assert proc.returncode == 0
    assert [r["name"] for r in rows] == ["mapcache.budget",
                                         "mapcache.budget/mutant:room_off_by_one"]
    proc, rows = cli_json("check", "x86", "-k", "adc/64")
    assert {r["name"] for r in rows} == {"x86.rmw.adc/64", "x86.rmw.adc/64/mutant:adc_ignores_carry"}
    bad = cli("check", "mapcach")
    assert bad.returncode == 2 and "no check named 'mapcach'" in bad.stderr
    none = cli("check", "-k", "zzz")
    assert none.returncode == 2 and "matches no check" in none.stderr


def test_check_in_several_processes_gives_the_results_of_one():
    """--jobs runs the checks in worker processes; the rows come back in the
    checks' own order with the same results as one process gives, and a
    stop at the first unexpected result still reports what was run."""
    proc, one = cli_json("check", "pic", "--jobs", "1")
    assert proc.returncode == 0
    proc, two = cli_json("check", "pic", "--jobs", "2")
    assert proc.returncode == 0
    assert [(r["name"], r["result"]) for r in two] == [(r["name"], r["result"]) for r in one]
    assert len(one) > 2
    bad = cli("check", "pic", "--jobs", "0")
    assert bad.returncode == 2 and "--jobs must be at least 1" in bad.stderr


def test_check_prints_counterexamples_literally():
    proc = cli("check", "x86.rmw.adc/64")
    assert proc.returncode == 0
    assert "x86.rmw.adc/64/mutant:adc_ignores_carry: counterexample" in proc.stdout
    assert "    adc byte ptr [rbx], cl (64-bit) at 0xfebf0f00: the operand = 0x" in proc.stdout
