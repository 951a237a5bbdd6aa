"""conform --impl: anyone's implementation through the implementation protocol."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hvmspec.conform import default_cases, first_difference, minimize, run_external
from hvmspec.protocol import External, ImplementationError
from spec.suites import SuiteError, suite
from spec.suites import ioreq as ioreq_suite, system as system_suite, uart as uart_suite
from tests.conftest import ROOT, peer

PY = sys.executable
IMPL = f"{PY} -m impl.adapter"
JS = ROOT / "adapters" / "js" / "hvmspec-adapter.mjs"
HVMSPEC = str(Path(PY).parent / "hvmspec")


def cases_file(tmp_path: Path, suite_name: str, cases: list[dict]) -> Path:
    path = tmp_path / f"{suite_name}.jsonl"
    path.write_text("".join(json.dumps({"suite": suite_name, "case": c}) + "\n" for c in cases))
    return path


# --- the suites' own answers ---------------------------------------------------------

def test_ioreq_suite_answers_the_protocol_step_by_step():
    case = {"id": "t", "vcpus": 2, "steps": [
        {"by": "vmm", "op": "wake", "vcpu": 0},
        {"by": "vmm", "op": "send", "vcpu": 0,
         "ioreq": {"addr": 0x3F8, "size": 1, "count": 1, "dir": 1, "vp_eport": 3}},
        {"by": "vmm", "op": "send", "vcpu": 0, "ioreq": {}},     # one in flight per vcpu
        {"by": "dm", "op": "respond", "vcpu": 0, "data": 7},       # not INPROCESS yet
        {"by": "dm", "op": "accept", "vcpu": 0},
        {"by": "vmm", "op": "wake", "vcpu": 0},
        {"by": "dm", "op": "respond", "vcpu": 0, "data": 0x41},
        {"by": "vmm", "op": "wake", "vcpu": 0},
        {"by": "dm", "op": "write_state", "vcpu": 1, "state": 9},
        {"by": "vmm", "op": "send", "vcpu": 1, "ioreq": {}},
        {"by": "vmm", "op": "send", "vcpu": 0, "ioreq": {"dir": 0}},
        {"by": "dm", "op": "write_state", "vcpu": 0, "state": 0},  # forged: backwards
        {"by": "vmm", "op": "wake", "vcpu": 0},
        {"by": "dm", "op": "accept", "vcpu": 0},
    ]}
    events = ioreq_suite.expected(case)
    assert [e["result"] for e in events] == [
        "not waiting", "sent", "refused", "refused", "accepted", "block", "responded",
        "complete", "written", "refused", "sent", "written", "crash", "crashed"]
    assert events[7]["data"] == 0x41
    # the slot's bytes: addr 0x3f8, size 1, count 1, port 3, state READY | dir read
    assert events[1]["slot"] == ("f803000000000000" "0000000000000000" "01000000"
                                 "01000000" "03000000" "0000" "21" "00")
    assert events[7]["slot"][16:32] == "4100000000000000" and events[7]["slot"][60:62] == "20"


def test_uart_suite_answers_in_the_order_things_happen():
    case = {"id": "u", "input": "", "steps": [
        {"op": "read", "offset": 5}, {"op": "write", "offset": 1, "value": 0x02},
        {"op": "write", "offset": 0, "value": 0x41}, {"op": "read", "offset": 2},
        {"op": "wait", "ns": 10}]}
    # LSR: THR and transmitter empty; ETBEI raises the THRE interrupt at once;
    # a THR write clears it, the byte leaves, THR is empty again: raised; the
    # IIR read that reports it (02: THRE) clears it
    assert uart_suite.expected(case) == [
        {"read": 5, "value": 0x60}, {"irq": 1}, {"irq": 0}, {"serial": 0x41}, {"irq": 1},
        {"irq": 0}, {"read": 2, "value": 0x02}]


STEP = {"by": "dm", "op": "accept", "vcpu": 0}


@pytest.mark.parametrize("module, case, path, message", [
    (ioreq_suite, {"id": "x", "vcpus": 0, "steps": [STEP]}, "$.vcpus",
     "0 is below the minimum 1"),
    (ioreq_suite, {"id": "x", "vcpus": 1, "steps": []}, "$.steps",
     "0 items: at least 1 (at least one step: a case of none would answer nothing)"),
    (ioreq_suite, {"id": "x", "vcpus": 1, "steps": [{"by": "vmm", "op": "fly", "vcpu": 0}]},
     "$.steps[0].op", '"fly" is not one of "send", "accept", "respond", "wake", "write_state"'),
    (ioreq_suite, {"id": "x", "vcpus": 1, "steps": [{"by": "vmm", "op": "accept", "vcpu": 0}]},
     "$.steps[0].by", '"vmm" is not "dm" (accept, respond and write_state are the device '
                      "model's steps)"),
    (ioreq_suite, {"id": "x", "vcpus": 1, "steps": [
        {"by": "vmm", "op": "send", "vcpu": 0, "ioreq": {"size": 1 << 32}}]},
     "$.steps[0].ioreq.size",
     "4294967296 (0x100000000) is above the maximum 4294967295 (0xffffffff) "
     "(a 32-bit field of struct ioreq)"),
    (ioreq_suite, {"id": "x", "vcpus": 1, "steps": [
        {"by": "vmm", "op": "send", "vcpu": 0, "ioreq": {"szie": 1}}]},
     "$.steps[0].ioreq.szie", "unknown key (known here: addr, data, count, size, vp_eport, dir, "
                              "df, data_is_ptr, type)"),
    (ioreq_suite, {"id": "x", "vcpus": 1, "steps": [{**STEP, "data": 7}]},
     "$.steps[0].data", "not allowed here (only a respond step has data)"),
    (ioreq_suite, {"id": "x", "vcpus": 1, "steps": [{"by": "vmm", "op": "send", "vcpu": 0}]},
     "$.steps[0]", "missing 'ioreq'"),
    (ioreq_suite, {"id": "x", "vcpus": 2, "steps": [STEP, {**STEP, "vcpu": 2}]},
     "$.steps[1].vcpu", "vcpu 2 of a case of 2 vcpus"),
    (ioreq_suite, {"id": "x", "vcpus": 1, "stesp": [STEP], "steps": [STEP]}, "$.stesp",
     "unknown key (known here: id, vcpus, steps)"),
    (uart_suite, {"id": "x", "input": "zz", "steps": [{"op": "read", "offset": 0}]}, "$.input",
     '"zz" is not hex: pairs of hex digits, or none'),
    (uart_suite, {"id": "x", "input": "", "steps": [{"op": "read", "offset": 8}]},
     "$.steps[0].offset", "8 is above the maximum 7 (the register's offset from the base port)"),
    (uart_suite, {"id": "x", "input": "", "steps": [{"op": "read", "offset": 1, "value": 3}]},
     "$.steps[0].value", "not allowed here (only a write step has a value)"),
    (uart_suite, {"id": "x", "input": "", "steps": [{"op": "wait", "ns": 1.5}]},
     "$.steps[0].ns", "1.5 is not an integer"),
    (system_suite, {"id": "x", "image": "00", "memory_mib": 0, "max_instructions": 1},
     "$.memory_mib", "0 is below the minimum 1"),
    (system_suite, {"id": "x", "image": "00", "memory_mib": 16, "max_instructions": 1,
                    "device_model": {"vga": False, "nographic": True}},
     "$.device_model.nographic", "unknown key (known here: device_model_bits, mapcache_budget, "
                                 "map_everything, rtc_base, serial, vga)"),
    (system_suite, {"id": "x", "image": "00", "memory_mib": 16, "max_instructions": 1,
                    "device_model": {"device_model_bits": 64, "mapcache_budget": 1 << 16}},
     "$.device_model.mapcache_budget",
     "65536 (0x10000) is below the minimum 1048576 (0x100000) "
     "(a 64-bit qemu-dm's bucket is 1 MiB)"),
    (system_suite, {"id": "x", "image": "00" * (0x40000 + 1), "memory_mib": 16,
                    "max_instructions": 1}, "$.image",
     "524290 characters: at most 524288 (the ROM image in hex: 1 to 262144 pairs of hex digits "
     "(it ends at 1 MiB and must not reach the VGA hole))"),
])
def test_bad_cases_say_which_field(module, case, path, message):
    with pytest.raises(SuiteError) as caught:
        module.validate(case)
    assert (caught.value.path, caught.value.text) == (path, message)


def test_the_system_suites_bounds_are_the_platforms():
    from spec import platform
    from spec.schemas import schema
    defs = schema("suite-case")["$defs"]
    system = defs["system-case"]["properties"]
    assert (system["memory_mib"]["minimum"], system["memory_mib"]["maximum"]) == \
        (platform.MIN_MEMORY_MIB, platform.MAX_MEMORY_MIB)
    assert system["image"]["maxLength"] == 2 * platform.MAX_IMAGE_SIZE
    assert tuple(defs["device-model"]["properties"]) == system_suite.DEVICE_MODEL_KEYS
    bucket = 1 << platform.MAPCACHE_BUCKET_SHIFT[32]
    assert defs["device-model"]["properties"]["mapcache_budget"]["minimum"] == bucket


# --- case files ---------------------------------------------------------------------

def _entry(suite_name: str, case: dict) -> str:
    return json.dumps({"suite": suite_name, "case": case})


UART_CASE = {"id": "u", "input": "", "steps": [{"op": "read", "offset": 5}]}


@pytest.mark.parametrize("content, message", [
    (b"", ": no cases: a case file with none would pass without testing anything"),
    (b"\n\n", ": no cases: a case file with none would pass without testing anything"),
    (_entry("uart", UART_CASE).encode() + b'\n{"suite": "uart", "case": "\xe9"}\n',
     ":2: not UTF-8 text: byte 0xe9 at column 28"),
    (_entry("uart", UART_CASE).encode() + b"\n{\"suite\": \"uart\",\n",
     ":2: not JSON: Expecting property name enclosed in double quotes (column 18)"),
    (json.dumps({"suite": "uart", "case": UART_CASE, "frobnicate": 3}).encode(),
     ":1: $.frobnicate: unknown key (known here: suite, case, expected, got, first_difference)"),
    (json.dumps({"suite": "uart", "case": {**UART_CASE, "stpes": []}}).encode(),
     ":1: $.case.stpes: unknown key (known here: id, input, steps)"),
    (json.dumps({"suite": "uart", "case": UART_CASE, "expected": [{"read": 5, "value": 256}]})
     .encode(), ":1: $.expected[0].value: 256 is above the maximum 255"),
    (json.dumps({"suite": "ioreq", "case": {"id": "i", "vcpus": 1, "steps": [
        {"by": "vmm", "op": "send", "vcpu": 0, "ioreq": {"addr": 1 << 64}}]}}).encode(),
     ":1: $.case.steps[0].ioreq.addr: 18446744073709551616 (0x10000000000000000) is above the "
     "maximum 18446744073709551615 (0xffffffffffffffff) (a 64-bit field of struct ioreq)"),
    (json.dumps({"suite": "ioreq", "case": {"id": "i", "vcpus": 1, "steps": [
        {"by": "dm", "op": "accept", "vcpu": 1}]}}).encode(),
     ":1: $.case.steps[0].vcpu: vcpu 1 of a case of 1 vcpus"),
    (json.dumps({"suite": "x86", "case": {}}).encode(),
     ':1: $.suite: "x86" is not one of "ioreq", "uart", "system"'),
    ((_entry("uart", UART_CASE) + "\n") .encode() * 2,
     ":2: $.case.id: id 'u' is already the uart case of line 1"),
    (b'{"id": "x", "mode": 32, "code": "90", "expect": {"fault": null}}\n',
     ":1: $: an instruction vector, not a conformance-suite case"),
])
def test_bad_case_files_are_named_by_line_and_field(tmp_path, content, message):
    path = tmp_path / "cases.jsonl"
    path.write_bytes(content)
    out = subprocess.run([HVMSPEC, "conform", "--impl", IMPL, "--cases", str(path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith(f"hvmspec: error: {path}{message}"), out.stderr
    assert "Traceback" not in out.stderr


def test_a_vector_file_given_as_cases_names_the_command_that_runs_it(tmp_path):
    path = ROOT / "tests" / "vectors" / "handwritten.jsonl"
    out = subprocess.run([HVMSPEC, "conform", "--impl", IMPL, "--cases", str(path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 2
    assert f"`hvmspec vectors run {path}` runs it" in out.stderr


def test_a_suite_the_case_files_do_not_have_is_refused(tmp_path):
    path = cases_file(tmp_path, "uart", [UART_CASE])
    out = subprocess.run([HVMSPEC, "conform", "--impl", IMPL, "--cases", str(path),
                          "--suite", "ioreq"], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert (out.returncode, out.stderr) == (
        2, "hvmspec: error: --suite ioreq: the case files have no ioreq cases (they have uart)\n")


def test_read_cases_reads_lines_and_reproducers(tmp_path):
    from spec.suites import read_cases
    lines = "\n".join([_entry("uart", UART_CASE), "", _entry("ioreq", {
        "id": "i", "vcpus": 1, "steps": [STEP]})]) + "\n"
    assert [(n, s, c["id"]) for n, s, c in read_cases(lines.encode())] == \
        [(1, "uart", "u"), (3, "ioreq", "i")]
    reproducer = json.dumps({"suite": "uart", "case": UART_CASE, "expected": [],
                             "got": [{"error": "gone"}], "first_difference": 0}, indent=1)
    assert [(n, s) for n, s, _c in read_cases(reproducer)] == [(1, "uart")]
    with pytest.raises(SuiteError) as caught:
        read_cases(reproducer.replace('"got"', '"gto"'))
    assert (caught.value.line, caught.value.path) == (1, "$.gto")
    with pytest.raises(SuiteError) as caught:     # a broken reproducer: the line it breaks on
        read_cases(reproducer.replace('"first_difference": 0', '"first_difference": 0,'))
    assert caught.value.line == reproducer.count("\n") + 1
    assert caught.value.text.startswith("not JSON")


# --- the bundled impl through the protocol ------------------------------------------

def test_bundled_impl_passes_uart_and_system_through_the_protocol():
    uart_cases = default_cases("uart", 60)
    system_cases = [system_suite.case_for(n) for n in ("hello", "portio", "reboot")]
    name, results = run_external(IMPL, cases={"uart": uart_cases, "system": system_cases})
    assert name == "hvmspec impl (Unicorn)"
    assert [(r.suite, r.equal) for r in results] == \
        [("uart", True)] * 60 + [("system", True)] * 3
    # it does not claim a suite it does not run
    assert {r.suite for r in results} == {"uart", "system"}


def test_cli_json_report(tmp_path):
    path = cases_file(tmp_path, "system", [system_suite.case_for("hello")])
    out = subprocess.run([HVMSPEC, "conform", "--impl", IMPL, "--cases", str(path), "--json"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report == {"implementation": "hvmspec impl (Unicorn)", "cases": 1, "equal": 1,
                      "suites": {"system": {"equal": 1, "diverged": 0}}, "diverged": []}


# --- a second implementation, in JavaScript -------------------------------------------

def test_javascript_adapter_passes_the_ioreq_and_uart_suites():
    node = peer("node")
    import random
    uart_cases = default_cases("uart") + uart_suite.generate(random.Random(7), 800)
    name, results = run_external(f"{node} {JS}", ["ioreq", "uart", "system"],
                                 {"ioreq": default_cases("ioreq"), "uart": uart_cases,
                                  "system": [system_suite.case_for("hello")]})
    assert name == "hvmspec-adapter.mjs (JavaScript)"
    # it runs the two suites it names, and is sent nothing else
    assert [(s, sum(r.equal for r in results if r.suite == s),
             sum(1 for r in results if r.suite == s)) for s in ("ioreq", "uart", "system")] \
        == [("ioreq", 200, 200), ("uart", 1000, 1000), ("system", 0, 0)]


def test_a_divergence_names_the_event_and_leaves_a_minimal_reproducer(tmp_path):
    node = peer("node")
    broken = tmp_path / "broken.mjs"       # INPROCESS treated as a state gone bad
    broken.write_text(JS.read_text().replace("} else if (s === READY || s === INPROCESS) {",
                                             "} else if (s === READY) {"))
    out = subprocess.run([HVMSPEC, "conform", "--impl", f"{node} {broken}", "--reproducers",
                          str(tmp_path / "repro"), "--json"], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    assert 0 < len(report["diverged"]) < 200
    first = report["diverged"][0]
    assert (first["expected"]["result"], first["got"]["result"]) == ("block", "crash")
    assert first["context"]["expected"][first["index"] - first["context"]["from"]] == \
        first["expected"]
    repro = json.loads(Path(first["reproducer"]).read_text())
    steps = repro["case"]["steps"]
    assert [(s["by"], s["op"]) for s in steps] == [("vmm", "send"), ("dm", "accept"),
                                                   ("vmm", "wake")]
    assert repro["expected"][2]["result"] == "block" and repro["got"][2]["result"] == "crash"
    # the reproducer runs again as it is
    again = subprocess.run([HVMSPEC, "conform", "--impl", f"{node} {broken}", "--cases",
                            first["reproducer"]], capture_output=True, text=True, cwd=ROOT,
                           timeout=120)
    assert again.returncode == 1 and "DIVERGED at event 2" in again.stdout


# --- implementations that misbehave --------------------------------------------------

FLAKY = r'''
import json, sys
n = 0
for line in sys.stdin:
    m = json.loads(line)
    if m["op"] == "hello":
        print(json.dumps({"op": "hello", "protocol": 1, "name": "flaky", "suites": ["ioreq"]}))
    elif m["op"] == "run":
        n += 1
        case = m["case"]
        if case["id"].endswith("1"):
            sys.stderr.write("flaky: giving up on " + case["id"] + "\n")
            sys.exit(3)
        if case["id"].endswith("2"):
            print("not json")
        elif case["id"].endswith("3"):
            print(json.dumps({"op": "result", "id": "someone-else", "events": []}))
        else:
            print(json.dumps({"op": "result", "id": case["id"], "events": []}))
    else:
        break
    sys.stdout.flush()
'''


def test_a_broken_implementation_is_reported_per_case_and_restarted(tmp_path):
    script = tmp_path / "flaky.py"
    script.write_text(FLAKY)
    cases = [{"id": f"c{i}", "vcpus": 1, "steps": [{"by": "dm", "op": "accept", "vcpu": 0}]}
             for i in range(5)]
    _, results = run_external(f"{PY} {script}", ["ioreq"], {"ioreq": cases})
    by_id = {r.case: r for r in results}
    assert "exited (status 3)" in by_id["c1"].error and "giving up on c1" in by_id["c1"].error
    assert "not a JSON line" in by_id["c2"].error
    assert "answered for case 'someone-else'" in by_id["c3"].error
    # c0 and c4 ran (on a restarted process after c1): they answered no events
    assert by_id["c0"].index == 0 and by_id["c4"].index == 0 and not by_id["c4"].error


def test_a_silent_implementation_times_out(tmp_path):
    script = tmp_path / "silent.py"
    script.write_text("import sys, time\nfor line in sys.stdin:\n"
                      "    print('{\"op\": \"hello\", \"protocol\": 1, \"suites\": [\"ioreq\"]}',"
                      " flush=True) if 'hello' in line else time.sleep(60)\n")
    impl = External(f"{PY} {script}", ["ioreq"], timeout=1.0)
    impl.start()
    with pytest.raises(ImplementationError, match="no answer within 1 s"):
        impl.run("ioreq", {"id": "x", "vcpus": 1, "steps": []})
    impl.close()


def test_minimize_keeps_what_diverges():
    case = {"id": "m", "steps": list(range(40))}
    small = minimize("ioreq", case, lambda c: 7 in c["steps"] and 31 in c["steps"])
    assert small["steps"] == [7, 31] and small["id"] == "m-min"


def test_first_difference():
    assert first_difference([1, 2], [1, 2]) is None
    assert first_difference([1, 2], [1, 3]) == 1
    assert first_difference([1, 2], [1]) == 1
    assert suite("uart") is uart_suite


def test_exported_suite_files_carry_the_cases_and_the_answers(tmp_path, monkeypatch):
    from hvmspec import conform
    from hvmspec.vectors import export_suites
    monkeypatch.setattr(conform, "DEFAULT_COUNTS", {"ioreq": 5, "uart": 5, "system": 2})
    files = export_suites(tmp_path)
    assert sorted(files) == ["ioreq", "system", "uart"]
    loaded = {name: [json.loads(line) for line in Path(path).read_text().splitlines()]
              for name, path in files.items()}
    assert [len(loaded[n]) for n in ("ioreq", "uart", "system")] == [5, 5, 2]
    hello = loaded["system"][0]
    assert hello["case"]["guest"] == "hello" and hello["expected"][-1]["kind"] == "result"
    assert hello["expected"][-1]["exit"]["reason"] == "poweroff"
    for entry in loaded["ioreq"] + loaded["uart"]:
        assert entry["expected"] == suite(entry["suite"]).expected(entry["case"])
    # the files are case files: the bundled impl runs them
    _, results = run_external(IMPL, cases={n: [e["case"] for e in loaded[n]]
                                           for n in ("uart", "system")})
    assert len(results) == 7 and all(r.equal for r in results)
