"""The operator at dom0's terminal: Ctrl-C and SIGTERM stop a run on both
engines, and a terminal shows a live status line (hvmspec.console)."""

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT

#: a guest that never ends on its own: a tight loop with interrupts off
SPIN = "cli\nspin:\n  jmp spin\n"
#: one that never ends and exits to qemu-dm at every instruction pair:
#: the signal lands while Python runs inside Unicorn's callbacks
PORT_LOOP = "cli\nmov dx, 0x3ff\nagain:\n  out dx, al\n  jmp again\n"


def _start(tmp_path, source: str, *args: str, **popen) -> subprocess.Popen:
    guest = tmp_path / "forever.s"
    guest.write_text(source)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "hvmspec", "run", str(guest),
                             "--max-instructions", str(10 ** 15), *args], cwd=ROOT, env=env,
                            **popen)


def _wait_for(stream, text: str, seconds: float = 120) -> str:
    """Read ``stream`` (a file descriptor or pipe) until ``text`` appears."""
    fd = stream if isinstance(stream, int) else stream.fileno()
    seen = b""
    end = time.monotonic() + seconds
    while text.encode() not in seen:
        if time.monotonic() > end or not select.select([fd], [], [], end - time.monotonic())[0]:
            raise AssertionError(f"{text!r} never came; got {seen[-500:]!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:      # a pty's other end closed
            chunk = b""
        if not chunk:
            raise AssertionError(f"{text!r} never came; got {seen[-500:]!r}")
        seen += chunk
    return seen.decode(errors="replace")


def _wait_for_running(trace_file, seconds: float = 120) -> None:
    """Until the run's trace (flushed at each change of the domain's life)
    says the domain is running: on a loaded machine, starting Python and
    assembling the guest can take longer than any fixed sleep."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if trace_file.exists() and '"new":"running"' in trace_file.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"the domain never ran: {trace_file.read_text()[-500:]!r}")


@pytest.mark.parametrize("engine", ["impl", "reference"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("guest", [SPIN, PORT_LOOP], ids=["spin", "port-loop"])
def test_a_signal_stops_a_run_with_one_line_and_the_shells_exit_code(tmp_path, engine, sig,
                                                                     guest):
    trace_file = tmp_path / "t.jsonl"
    proc = _start(tmp_path, guest, "--engine", engine, "--trace", str(trace_file),
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(proc.stderr, "16-bit assembly source")
        _wait_for_running(trace_file)
        time.sleep(0.2)                     # inside the guest's loop by now
        assert proc.poll() is None, "the guest ended on its own"
        sent = time.monotonic()
        proc.send_signal(sig)
        code = proc.wait(timeout=30)
        took = time.monotonic() - sent
    finally:
        proc.kill()
    err = proc.stderr.read().decode()
    name = signal.Signals(sig).name
    assert code == 128 + sig, err
    assert took < 5, f"{took:.1f} s from {name} to exit"
    assert "Traceback" not in err and "Exception ignored" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"hvmspec: {name}: [{engine}] domain 1 (forever) was stopped; "
                           f"xend: destroyed."), err
    # the trace up to the stop is kept, and ends with the domain's destruction
    events = [json.loads(line) for line in trace_file.read_text().splitlines()]
    assert events[-1]["kind"] == "domain" and events[-1]["new"] == "destroyed"


def test_the_json_summary_of_a_stopped_run_says_interrupted(tmp_path):
    proc = _start(tmp_path, SPIN, "--json", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(2.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    summary = json.loads(out)
    assert summary["exit"]["reason"] == "interrupted"
    assert summary["exit"]["message"].startswith("stopped by SIGINT after ")
    assert summary["instructions"] > 0


def test_a_terminal_shows_a_live_status_line(tmp_path):
    master, slave = pty.openpty()
    proc = _start(tmp_path, PORT_LOOP, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    try:
        seen = _wait_for(master, "MIPS")
        time.sleep(2.0)
        seen += _wait_for(master, "MIPS")     # later frames of the line
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        proc.kill()
        os.close(master)
    line = seen.split("\r")[-1]
    assert "[impl] " in seen and " instructions · " in seen and " exits · " in seen
    assert "virtual " in seen, line
    units = {"s": 10 ** 9, "ms": 10 ** 6, "us": 10 ** 3, "ns": 1}
    frames = []
    for part in seen.split("[impl] ")[1:]:
        fields = part.split(" · ")
        if len(fields) < 3 or not fields[0].endswith(" instructions"):
            continue
        n = int(fields[0].split()[0].replace(",", ""))
        value, unit = fields[2].split()[1:3]
        frames.append((n, float(value) * units[unit]))
    assert frames and max(n for n, _ in frames) > 0
    # the virtual clock charges each OUT a microsecond of bus time (spec.clock):
    # a guest that is half OUTs is far ahead of its instruction count
    n, clock = max(frames)
    assert clock > 100 * n


def test_no_status_line_on_a_pipe_or_with_no_status(tmp_path):
    guest = tmp_path / "short.s"
    guest.write_text("cli\nmov cx, 1000\nl:\n  loop l\nhlt\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", "hvmspec", "run", str(guest)],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert "MIPS" not in out.stdout + out.stderr
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "hvmspec", "run", str(guest), "--no-status"],
                            stdout=slave, stderr=slave, cwd=ROOT, env=env)
    os.close(slave)
    try:
        seen = _wait_for(master, "hung")
        proc.wait(timeout=60)
    finally:
        proc.kill()
        os.close(master)
    assert "MIPS" not in seen


def test_conform_on_a_pipe_prints_each_case_as_it_ends_and_stops_on_ctrl_c(tmp_path):
    guest = tmp_path / "forever.s"
    guest.write_text(SPIN)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "hvmspec", "conform", "hello", str(guest)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    try:
        first = _wait_for(proc.stdout, "\n")
        assert first.startswith("hello: equal (")
        assert proc.poll() is None           # the second case is still running
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    finally:
        proc.kill()
    err = proc.stderr.read().decode()
    assert code == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "hvmspec: SIGINT: stopped"


def test_check_stops_on_ctrl_c_while_z3_solves():
    """Z3 takes SIGINT for itself while it solves unless told not to (and
    then answers 'unknown'): the check must stop, not go on and pass."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "hvmspec", "check"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(4.0)
        assert proc.poll() is None
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
        took = time.monotonic() - sent
    finally:
        proc.kill()
    err = proc.stderr.read().decode()
    assert code == 130, err
    assert took < 5 and err.strip().splitlines()[-1] == "hvmspec: SIGINT: stopped"
    assert "as expected" not in proc.stdout.read().decode()    # no table: it stopped


def test_a_signal_that_lands_inside_a_c_call_is_a_stop():
    """SIGINT's KeyboardInterrupt raised while ctypes converts an argument
    (Z3 building a term) comes out as ``ctypes.ArgumentError``: once the
    operator has asked to stop, hvmspec reports the stop, exit 130, not a
    traceback. Without a signal, the same error is a bug in the spec or the
    proof: that check's result is ``error`` with the exception, exit 1.
    (In a process of its own: the operator's stop is process-wide.)"""
    script = """
import ctypes, signal, sys
import proofs
from hvmspec.cli import main
from hvmspec.console import OPERATOR
from proofs import Check
def interrupted():
    if sys.argv[1] == "signal":
        OPERATOR.signum = signal.SIGINT
    raise ctypes.ArgumentError("argument 1: KeyboardInterrupt: ")
proofs.all_checks = lambda: [Check("x", "invariant", "proved", "", "", interrupted)]
sys.exit(main(["check", "--json"]))
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    stopped = subprocess.run([sys.executable, "-c", script, "signal"], capture_output=True,
                             text=True, env=env, cwd=ROOT, timeout=60)
    assert stopped.returncode == 130, stopped.stderr
    assert stopped.stderr.strip().splitlines()[-1] == "hvmspec: SIGINT: stopped"
    assert "Traceback" not in stopped.stderr
    bug = subprocess.run([sys.executable, "-c", script, "none"], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=60)
    assert bug.returncode == 1, bug.stderr
    [row] = json.loads(bug.stdout)
    assert row["result"] == "error" and row["detail"].startswith("ArgumentError: argument 1")
