"""make mutate: cosmic-ray over the spec with hvmspec check as the only killer
(hvmspec/mutation.py), and the recorded campaign the proofs page shows."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hvmspec import mutation

ROOT = Path(__file__).resolve().parent.parent


def test_every_module_is_checked_by_groups_that_exist():
    from hvmspec.commands.check import select
    from proofs import all_checks
    checks = all_checks()
    for module, groups in mutation.TARGETS.items():
        assert (ROOT / module).is_file(), module
        picked = [c for c in select(checks, list(groups), None) if c.kind == "invariant"]
        assert picked, module


def _line_of(module: str, text: str) -> int:
    lines = (ROOT / module).read_text().splitlines()
    [number] = [i + 1 for i, line in enumerate(lines) if line.startswith(text)]
    return number


def test_a_mutant_the_proofs_catch_is_killed_and_an_equivalent_one_survives(tmp_path):
    """Three real mutants of spec/ioreq.py through cosmic-ray's workers:
    READY renumbered (ioreq.layout states the header's value) and WAIT_BITS
    narrowed to 1 (the crash outcome no longer fits, so a forged state
    resumes the vcpu) are killed; WAIT_BITS widened to 3 is equivalent and
    survives, with the reason proofs/survivors.toml gives."""
    module = "spec/ioreq.py"
    ready, wait_bits = _line_of(module, "STATE_IOREQ_READY = 1"), _line_of(module, "WAIT_BITS = 2")
    numbers = [(occ, line) for op, occ, line in mutation.plan(module)
               if op == "core/NumberReplacer"]
    picks = [min(o for o, line in numbers if line == ready)] + \
        [o for o, line in numbers if line == wait_bits]
    assert len(picks) == 3
    args = [a for occ in picks for a in ("--mutant", f"core/NumberReplacer:{occ}")]
    done = subprocess.run([sys.executable, "-m", "hvmspec.mutation", "--module", module,
                           "--jobs", "2", "--json", "--workdir", str(tmp_path), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    report = json.loads(done.stdout)
    assert (report["mutants"], report["killed"]) == (3, 2)
    [survivor] = report["survivors"]
    assert (survivor["line"], survivor["after"]) == (wait_bits, "WAIT_BITS = 3")
    assert "equivalent" in survivor["why"].lower()
    assert done.returncode == 1                      # 2 of 3 is below the target


def test_a_survivor_is_explained_by_module_function_and_line_patterns():
    entries = [{"module": "spec/a.py", "function": "Pic8259.*", "line": "*self.poll*",
                "why": "poll"},
               {"module": "spec/a.py", "function": "Pic8259.read", "why": "read"}]
    m = mutation.Mutant("spec/a.py", "core/NumberReplacer", 1, 10, "Pic8259.read",
                        "survived", before="self.poll = False", after="self.poll = True")
    assert mutation.explain(m, entries) == "poll"
    m.before = "return 0"
    assert mutation.explain(m, entries) == "read"
    m.module = "spec/b.py"
    assert mutation.explain(m, entries) == ""


def test_an_explanation_without_a_reason_is_an_error(tmp_path):
    bad = tmp_path / "survivors.toml"
    bad.write_text('[[survivor]]\nmodule = "spec/a.py"\nfunction = "f"\n')
    with pytest.raises(mutation.MutationError, match="needs module, function and why"):
        mutation.load_explanations(bad)


def test_the_recorded_campaign_adds_up_and_its_survivors_are_the_explained_ones():
    report = json.loads((ROOT / "docs" / "mutation.json").read_text())
    assert mutation.totals(report) == report | {"tool": report["tool"]}
    assert {m["module"] for m in report["modules"]} <= set(mutation.TARGETS)
    for m in report["modules"]:
        assert m["mutants"] == sum(m["counts"].values())
        assert m["killed"] == m["counts"].get("killed", 0) + m["counts"].get("timeout", 0)
    recorded = {m["module"] for m in report["modules"]}
    assert {s["module"] for s in report["survivors"]} <= recorded
    # the reasons are proofs/survivors.toml's as it stands (no stale or hand-made reason);
    # make mutate's exit status, not this test, holds the target and the explanations
    explanations = mutation.load_explanations()
    for s in report["survivors"]:
        assert s["why"] == mutation.explain(mutation.Mutant(**s), explanations), s
    assert report["unexplained"] == sum(1 for s in report["survivors"] if not s["why"])


def test_bad_arguments_are_usage_errors():
    for args in (["--module", "spec/nothere.py"], ["--jobs", "0"],
                 ["--mutant", "core/NumberReplacer:1"], ["--module", "spec/irq.py",
                                                         "--mutant", "nocolon"],
                 ["--module", "spec/irq.py", "--limit", "3", "--write", "/tmp/x.json"]):
        done = subprocess.run([sys.executable, "-m", "hvmspec.mutation", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, args
        assert done.stderr.startswith("hvmspec mutation: error:") and "Traceback" not in \
            done.stderr, args


SOURCE = '''\
X = 1


class C:
    y = 2

    @staticmethod
    def f(a=3):
        b = a + 1

        def inner():
            return b * 2
        return inner() + (lambda: 4)()


def g():
    return 5
'''


def test_a_mutated_line_belongs_to_the_function_whose_body_holds_it():
    """Function bodies are scopes (a nested def its own, a lambda its
    enclosing function's); module and class level, decorators and default
    values run at import time (None)."""
    line = {text.strip(): n + 1 for n, text in enumerate(SOURCE.splitlines())}
    assert mutation.scope_of(SOURCE, line["X = 1"]) is None
    assert mutation.scope_of(SOURCE, line["y = 2"]) is None
    assert mutation.scope_of(SOURCE, line["@staticmethod"]) is None
    assert mutation.scope_of(SOURCE, line["def f(a=3):"]) is None
    assert mutation.scope_of(SOURCE, line["b = a + 1"]) == "f:7"
    assert mutation.scope_of(SOURCE, line["return b * 2"]) == "inner:11"
    assert mutation.scope_of(SOURCE, line["return inner() + (lambda: 4)()"]) == "f:7"
    assert mutation.scope_of(SOURCE, line["return 5"]) == "g:16"
    mutated = SOURCE.replace("b = a + 1", "b = a - 1")
    assert mutation.changed_lines(SOURCE, mutated) == [line["b = a + 1"]]
    assert mutation.changed_lines(SOURCE, SOURCE.replace("    @staticmethod\n", "")) \
        == [line["@staticmethod"]]


def test_the_record_of_calls_names_the_functions_each_invariant_runs(tmp_path):
    """spec/irq.py: every interrupt invariant calls ``assist`` (the VMM's
    entry decision); none of the x86 ones would. The record is built in a
    subprocess, as a campaign builds it."""
    out = tmp_path / "irq.calls.json"
    done = subprocess.run([sys.executable, "-m", "hvmspec.mutation", "calls", "spec/irq.py",
                           str(out), "interrupts"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    assert record["source"] == (ROOT / "spec" / "irq.py").read_text()
    assert set(record["checks"]) >= {"interrupts.only_evtchn", "interrupts.never_lost"}
    assert "<module>:1" in record["import"]
    for name, c in record["checks"].items():
        assert any(key.startswith("assist:") for key in c["calls"]), name


def test_the_killer_runs_only_the_invariants_that_call_the_mutated_function(tmp_path):
    """The killer reads the mutated module from the tree it runs in. A
    mutant of ``line_bit`` is killed by the invariants that call it; the
    same mutant survives, with no proof run, when the record says that no
    invariant calls ``line_bit``; a mutant at module level faces them all."""
    tree = tmp_path / "tree"
    for name in mutation.COPIED:
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    source = (ROOT / "spec" / "irq.py").read_text()
    line = "    return bv.shl(bv.const(1, W, irq), irq, W)"
    assert line in source
    (tree / "spec" / "irq.py").write_text(source.replace(line, line.replace("(1,", "(2,")))
    [key] = {mutation.scope_of(source, n + 1) for n, text in enumerate(source.splitlines())
             if text == line}
    assert key.startswith("line_bit:")

    def kill(calls: list[str], imported: list[str] | None = None):
        record = {"module": "spec/irq.py", "groups": ["interrupts"], "source": source,
                  "import": imported or ["<module>:1"],
                  "checks": {"interrupts.only_evtchn": {"seconds": 1.0, "calls": calls}}}
        path = tmp_path / "calls.json"
        path.write_text(json.dumps(record))
        return subprocess.run([sys.executable, "-m", "hvmspec.mutation", "kill", str(path)],
                              cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)},
                              capture_output=True, text=True, timeout=600)

    killed = kill([key])
    assert killed.returncode == 1, killed.stdout + killed.stderr
    assert "1 of 1 invariants call it" in killed.stdout
    assert "interrupts.only_evtchn: counterexample" in killed.stdout
    unreached = kill(["assist:117"])
    assert unreached.returncode == 0
    assert "no invariant calls the mutated function" in unreached.stdout
    (tree / "spec" / "irq.py").write_text(source.replace("QUIET = GlobalIodata(0, 0, 0, 0)",
                                                         "QUIET = GlobalIodata(0, 0, 0, 1)"))
    at_import = kill(["assist:117"])
    assert "import time: 1 of 1" in at_import.stdout
