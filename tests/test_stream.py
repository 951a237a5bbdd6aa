"""Streamed traces (docs/trace.rst, "Sinks"): a run's events flow to its
sinks as they happen and are not kept unless asked for, so that the memory
of a run, of ``hvmspec run --trace FILE`` and of a conformance comparison
does not grow with the run's length; the summary computed as the events
pass is the one the whole trace gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench.__main__ import TRACE_WRITES, writes_source
from hvmspec import conform
from spec import trace
from spec.loader import GuestImage, rom_from_source
from spec.result import RunResult, TraceNotKept, TraceSummary, final_exit
from tests.conftest import ENGINES, ROOT, guest, run

#: a guest's port writes (bench's trace memory rows): each is a round trip
#: of 9 events (exit, ioreq transitions, the device's access, entry)
SHORT, LONG = TRACE_WRITES, 10 * TRACE_WRITES
#: how much more a long run may take than a short one (MiB): the long run's
#: 270,000 events took some 110 MiB more when a run kept its trace
GROWTH_MIB = 30


def _measure(args: list[str], cwd) -> tuple[float, str]:
    """The peak resident memory (MiB) of ``python args`` in a process of its
    own (as bench/ measures it), and its output."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with open(cwd / "stderr", "w+b") as err:
        proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=err,
                                cwd=cwd, env=env)
        out = proc.stdout.read()
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        assert proc.returncode == 0, err.read().decode()[-2000:]
    return usage.ru_maxrss / 1024, out.decode()


def _guests(tmp_path) -> dict[int, str]:
    paths = {}
    for count in (SHORT, LONG):
        path = tmp_path / f"writes{count}.s"
        path.write_text(writes_source(count))
        paths[count] = str(path)
    return paths


def test_a_runs_memory_does_not_grow_with_its_length(tmp_path):
    """``hvmspec run --json`` and ``--trace FILE`` (impl engine): ten times
    the round trips, the same peak memory within a margin; the trace file
    has every event."""
    paths = _guests(tmp_path)
    peak = {}
    for count, path in paths.items():
        out = tmp_path / f"{count}.jsonl"
        peak[count, "json"], text = _measure(["-m", "hvmspec.cli", "run", path, "--json",
                                              "--engine", "impl"], tmp_path)
        summary = json.loads(text)
        assert summary["exit"]["reason"] == "poweroff"
        assert summary["exits"] == {"io": count + 1}
        peak[count, "trace"], _ = _measure(["-m", "hvmspec.cli", "run", path, "--engine",
                                            "impl", "--trace", str(out)], tmp_path)
        with out.open() as f:
            lines = sum(1 for _ in f)
        assert lines > 9 * count
    for how in ("json", "trace"):
        grew = peak[LONG, how] - peak[SHORT, how]
        assert grew < GROWTH_MIB, (how, peak)


def test_a_comparisons_memory_does_not_grow_with_the_runs_length(tmp_path):
    """Conformance holds neither trace (impl against itself, to keep the
    test short: the comparison's plumbing is the same for any pair)."""
    paths = _guests(tmp_path)
    script = ("import json, sys\nfrom hvmspec import conform\nfrom spec.loader import load\n"
              "r = conform.run_case(load(sys.argv[1]), engines=('impl', 'impl'))\n"
              "print(json.dumps({'equal': r.equal, 'events': r.events}))\n")
    peak = {}
    for count, path in paths.items():
        peak[count], text = _measure(["-c", script, path], tmp_path)
        result = json.loads(text)
        assert result["equal"] and result["events"] > 9 * count
    assert peak[LONG] - peak[SHORT] < GROWTH_MIB, peak


@pytest.mark.parametrize("engine", ENGINES)
def test_a_run_keeps_no_trace_unless_asked_and_its_summary_is_the_traces(engine):
    image = guest("stream", """
    mov dx, COM1
    mov al, 'o'
    out dx, al
    mov al, 'k'
    out dx, al
    mov dx, 0x402
    mov al, 'f'
    out dx, al
    mov al, 10
    out dx, al
""")
    from hvmspec.engines import runner
    streamed = runner(engine)(image)
    kept = run(engine, image)                         # keep_trace=True
    with pytest.raises(TraceNotKept, match="keep_trace=True"):
        streamed.trace
    whole = TraceSummary.of(kept.trace)
    assert streamed.events == kept.events == whole.events == len(kept.trace)
    assert streamed.summary() | {"seconds": 0} == kept.summary() | {"seconds": 0}
    assert streamed.serial == whole.serial == "ok"
    assert streamed.firmware_log == whole.log.text() == "f\n"
    assert streamed.exits == whole.exits
    assert streamed.mapcache == kept.mapcache and streamed.mapcache is not None
    assert final_exit(kept.trace, {}) == streamed.exit
    assert streamed.instructions == kept.instructions


def test_a_result_built_from_a_list_summarises_it():
    """RunResult as it was built before sinks (a list of events): the
    summary is the list's."""
    events = [trace.SerialOut(port=0x3F8, byte=ord("h")),
              trace.VmExit(vcpu=0, reason="io", rip=0, icount=5, info={}),
              trace.SerialOut(port=0x3F8, byte=ord("i"))]
    result = RunResult("impl", "g", {}, 5, 0.0, events)
    assert result.serial == "hi" and result.exits == {"io": 1} and result.events == 3
    assert result.trace is events


def _image(count: int, byte: int) -> GuestImage:
    source = writes_source(count).replace("mov dx, 0x3ff", f"mov al, {byte}\n    mov dx, 0x3ff")
    return GuestImage("writes", rom_from_source(source, "writes"))


@pytest.mark.parametrize("change", ["data", "shorter", "longer"])
def test_the_streamed_comparison_reports_what_the_whole_traces_show(change, tmp_path):
    """A Comparator fed one run's trace from its file, line by line, while
    another runs: the first difference, both sides' events there and the
    context around it are those :func:`hvmspec.conform.compare` finds in
    the two whole traces."""
    first = _image(40, 1)
    second = {"data": _image(40, 2), "shorter": _image(39, 1), "longer": _image(41, 1)}[change]
    spool = tmp_path / "first.jsonl"
    with spool.open("w") as f:
        a = run("impl", first, listeners=[conform.FileSink(f)])
    with spool.open() as f:
        comparator = conform.Comparator(json.loads(line) for line in f)
        b = run("impl", second, listeners=[comparator])
        streamed = comparator.result("writes", a, b)
    whole = conform.compare("writes", a, b)
    assert not streamed.equal
    assert (streamed.index, streamed.events, streamed.reference, streamed.impl,
            streamed.context) == (whole.index, whole.events, whole.reference, whole.impl,
                                  whole.context)
    assert streamed.events == max(len(a.trace), len(b.trace))
    lo = streamed.context["from"]
    assert streamed.context["reference"] == [e.to_json() for e in
                                             a.trace[lo:streamed.index + conform.CONTEXT + 1]]
