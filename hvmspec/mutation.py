"""Mutation testing of the spec, with the proofs as the only killer: ``make mutate``.

Room: drives cosmic-ray (PyPI, pinned in the ``dev`` extra) over the spec
modules the invariants are about, with ``hvmspec check`` as the test
command, and records the score and every surviving mutant with the reason
it survives (``proofs/survivors.toml``) in ``docs/mutation.json``, which
the proofs page renders. Imports cosmic_ray (when run), rich, and
:mod:`hvmspec.commands` for exit codes and progress.

A proof is worth what it catches. The hand-written mutants of
:mod:`proofs` are bugs a developer could plausibly write; mutation testing
asks the same question without our choosing: cosmic-ray rewrites one
operator, constant, comparison or boolean of a spec module at a time, and
the mutant is *killed* when ``hvmspec check --invariants -x GROUP...`` no
longer exits 0 (an invariant gets a counterexample, becomes vacuous, or the
spec raises while a proof runs it). Each module is checked by the groups
whose proofs run its functions (:data:`TARGETS`); no other group imports
it. A mutant that makes the check run past its timeout is counted as killed
and reported as ``timeout``, as cosmic-ray does.

Workers: cosmic-ray's ``http`` distributor, with one ``cosmic-ray
http-worker`` per job, each in a private copy of the source tree (a worker
mutates its copy's file in place, runs the check there, and restores it).
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "mutate"
REPORT = ROOT / "docs" / "mutation.json"
SURVIVORS = ROOT / "proofs" / "survivors.toml"
TARGET_SCORE = 0.90
#: how the report names the killer
KILLER = ("hvmspec check --invariants -x GROUP..., only the invariants that call the "
          "mutated function")
#: what a worker's copy of the tree needs to run ``hvmspec check``
COPIED = ("spec", "proofs", "hvmspec", "impl", "guests")

#: spec module -> the ``hvmspec check`` groups whose proofs run its functions
TARGETS: dict[str, tuple[str, ...]] = {
    "spec/evtchn.py": ("evtchn", "interrupts"),
    "spec/pic.py": ("interrupts", "pic"),
    "spec/irq.py": ("interrupts",),
    "spec/ioreq.py": ("ioreq",),
    "spec/mapcache.py": ("mapcache",),
    "spec/x86/alu.py": ("x86",),
    "spec/x86/flags.py": ("x86",),
}


class MutationError(Exception):
    """The campaign cannot run (tool missing, unmutated check failing, ...)."""


@dataclass
class Mutant:
    module: str
    operator: str
    occurrence: int
    line: int
    function: str
    outcome: str                     # killed | timeout | survived | incompetent | error
    before: str = ""
    after: str = ""
    why: str = ""
    #: what the killer said: which invariants call the mutated function
    detail: str = ""


@dataclass
class ModuleResult:
    module: str
    groups: tuple[str, ...]
    mutants: int = 0                 # run (a sample when --limit is given)
    generated: int = 0               # what cosmic-ray generated for the module
    baseline_seconds: float = 0.0
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    survivors: list[Mutant] = field(default_factory=list)

    @property
    def killed(self) -> int:
        return self.counts.get("killed", 0) + self.counts.get("timeout", 0)

    @property
    def scored(self) -> int:
        return self.mutants - self.counts.get("incompetent", 0)


# --- the killer and the workers ------------------------------------------------------------

def kill_command(calls: Path) -> list[str]:
    """The test command cosmic-ray runs for each mutant (:func:`kill`)."""
    return [sys.executable, "-m", "hvmspec.mutation", "kill", str(calls)]


def _cosmic_ray() -> str:
    exe = Path(sys.executable).with_name("cosmic-ray")
    if not exe.exists():
        raise MutationError("cosmic-ray is not installed in this environment (it is in the "
                            "project's dev extra: make .venv/.installed)")
    return str(exe)


def _copy_tree(dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    for name in COPIED:
        shutil.copytree(ROOT / name, dest / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tree: Path) -> dict[str, str]:
    # one hash seed: the record of calls and each mutant's run see the same
    # iteration orders
    return {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0"}


class Workers:
    """``jobs`` cosmic-ray HTTP workers, each in its own copy of the tree."""

    def __init__(self, jobs: int) -> None:
        self.trees = [WORK / f"w{i}" for i in range(jobs)]
        self.procs: list[subprocess.Popen] = []
        self.urls: list[str] = []

    def __enter__(self) -> "Workers":
        exe = _cosmic_ray()
        try:
            for tree in self.trees:
                _copy_tree(tree)
                port = _free_port()
                log = open(tree / "worker.log", "w")
                self.procs.append(subprocess.Popen(
                    [exe, "http-worker", "--port", str(port)], cwd=tree, env=_env(tree),
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
                self.urls.append(f"http://127.0.0.1:{port}")
            for url, proc in zip(self.urls, self.procs):
                _wait_listening(int(url.rsplit(":", 1)[1]), proc)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_listening(port: int, proc: subprocess.Popen, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise MutationError(f"a cosmic-ray worker exited at start (status {proc.returncode})")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise MutationError(f"a cosmic-ray worker did not listen on port {port} in {seconds:.0f} s")


# --- which checks can see a mutant ---------------------------------------------------------
#
# A check that never calls the mutated function runs exactly as on the
# unmutated spec, so it cannot kill the mutant: running it only costs time.
# Before a module's mutants run, its groups' invariants run once with a
# trace function that records, per check, which functions of the module it
# calls (and which run while the proofs are imported). A mutant then faces
# the checks that call the function whose body it changes, quickest first.
# A mutant outside every function body (module or class level, a default
# value, a decorator) runs at import time and faces every check. A nested
# function or lambda only exists once its enclosing function has run, so a
# lambda counts as part of its enclosing function (its body and defaults).


def _code_key(name: str, first_line: int) -> str:
    return f"{name}:{first_line}"


def record_calls(module: str, groups: tuple[str, ...]) -> dict:
    """Run ``groups``' invariants (in this process, on the tree on
    ``sys.path``) recording the functions of ``module`` each one calls."""
    import threading
    suffix = "/" + module
    current = "<import>"
    calls: dict[str, set[str]] = {current: set()}

    def tracer(frame, event, arg):
        code = frame.f_code
        if code.co_filename.endswith(suffix):
            calls[current].add(_code_key(code.co_name, code.co_firstlineno))

    sys.settrace(tracer)
    threading.settrace(tracer)
    try:
        from hvmspec.commands.check import _run, select
        from proofs import all_checks
        checks = [c for c in select(all_checks(), list(groups), None) if c.kind == "invariant"]
        seconds: dict[str, float] = {}
        for chk in checks:
            current = chk.name
            calls[current] = set()
            started = time.perf_counter()
            outcome = _run(chk)
            seconds[chk.name] = round(time.perf_counter() - started, 3)
            if outcome.result != chk.expected:
                raise MutationError(f"{chk.name} is {outcome.result} on the unmutated spec")
    finally:
        sys.settrace(None)
        threading.settrace(None)
    return {"module": module, "groups": list(groups),
            "source": (ROOT / module).read_text(),
            "import": sorted(calls.pop("<import>")),
            "checks": {name: {"seconds": seconds[name], "calls": sorted(found)}
                       for name, found in calls.items()}}


def changed_lines(before: str, after: str) -> list[int]:
    """The lines of ``before`` (1-based) that ``after`` replaces or deletes
    (for an insertion, the line it follows)."""
    import difflib
    a, b = before.splitlines(), after.splitlines()
    lines: list[int] = []
    for tag, i1, i2, _j1, _j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            lines += range(i1 + 1, i2 + 1) if i2 > i1 else [max(i1, 1)]
    return lines


def scope_of(source: str, line: int) -> str | None:
    """The function whose body holds ``line`` (its code key), or None when
    the line runs at import time (module or class level, a decorator, a
    default value)."""
    best: tuple[int, str] | None = None

    def walk(node) -> None:
        nonlocal best
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                # the body, not the def line (a one-line def's default values
                # share it: counted as the enclosing scope, to be safe)
                if max(child.body[0].lineno, child.lineno + 1) <= line \
                        <= (child.end_lineno or child.lineno):
                    if best is None or first >= best[0]:
                        best = (first, _code_key(child.name, first))
            walk(child)
    walk(ast.parse(source))
    return None if best is None else best[1]


def kill(calls_path: Path) -> int:
    """The killer of one mutant, run by a cosmic-ray worker in its tree:
    the invariants that call the mutated function, quickest first, stopping
    at the first whose result is not the expected one. Exit 0: survived."""
    calls = json.loads(calls_path.read_text())
    source, checks = calls["source"], calls["checks"]
    lines = changed_lines(source, (ROOT / calls["module"]).read_text())
    scopes = {scope_of(source, line) for line in lines}
    if not lines or None in scopes or scopes & set(calls["import"]):
        names = list(checks)
        where = "import time"
    else:
        names = [n for n, c in checks.items() if scopes & set(c["calls"])]
        where = ", ".join(sorted(scopes))
    print(f"mutant in {where}: {len(names)} of {len(checks)} invariants call it")
    if not names:
        print("no invariant calls the mutated function")
        return 0
    from hvmspec.commands.check import _in_turn
    from proofs import all_checks
    by_name = {c.name: c for c in all_checks()}
    chosen = [by_name[n] for n in sorted(names, key=lambda n: checks[n]["seconds"])]
    outcomes = _in_turn(chosen, exitfirst=True, advance=lambda: None)
    for name, outcome in outcomes.items():
        print(f"{name}: {outcome.result}")
    return int(any(o.result != by_name[n].expected for n, o in outcomes.items()))


def build_calls(module: str, groups: tuple[str, ...], tree: Path) -> tuple[Path, float]:
    """Record which invariants call which functions of ``module`` (on the
    unmutated ``tree``, which must pass them: else every mutant would look
    killed). Returns the record's path and the wall time."""
    out = WORK / (module.replace("/", "_").removesuffix(".py") + ".calls.json")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "hvmspec.mutation", "calls", module, str(out),
                           *groups], cwd=tree, env=_env(tree), capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        raise MutationError(f"hvmspec check {' '.join(groups)} fails on the unmutated spec "
                            f"(exit {done.returncode}): {' / '.join(tail)}")
    return out, time.perf_counter() - started


# --- one module ----------------------------------------------------------------------------

def _config(module: str, command: list[str], timeout: float, urls: list[str]) -> str:
    command = " ".join(command)
    return "\n".join([
        "[cosmic-ray]",
        f"module-path = {json.dumps(module)}",
        f"timeout = {timeout:.1f}",
        "excluded-modules = []",
        f"test-command = {json.dumps(command)}",
        "",
        "[cosmic-ray.distributor]",
        'name = "http"',
        "",
        "[cosmic-ray.distributor.http]",
        f"worker-urls = {json.dumps(urls)}",
        "",
    ])


def _sample(db, limit: int | None, only: list[tuple[str, int]] | None) -> None:
    """Skip all but ``limit`` work items (spread evenly) or all but ``only``
    ((operator, occurrence) pairs), the way cosmic-ray's own filters skip."""
    from cosmic_ray.work_item import WorkerOutcome, WorkResult
    items = sorted(db.work_items, key=lambda w: (w.mutations[0].start_pos,
                                                 w.mutations[0].operator_name,
                                                 w.mutations[0].occurrence))
    if only is not None:
        keep = {w.job_id for w in items
                if (w.mutations[0].operator_name, w.mutations[0].occurrence) in only}
    elif limit is not None and limit < len(items):
        stride = len(items) / limit
        keep = {items[int(i * stride)].job_id for i in range(limit)}
    else:
        return
    skipped = [w.job_id for w in items if w.job_id not in keep]
    if skipped:
        db.set_multiple_results(skipped, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))


def run_module(module: str, workers: Workers, limit: int | None = None,
               only: list[tuple[str, int]] | None = None, advance=None) -> ModuleResult:
    from cosmic_ray.work_db import WorkDB, use_db
    groups = TARGETS[module]
    result = ModuleResult(module, groups)
    calls, result.baseline_seconds = build_calls(module, groups, workers.trees[0])
    timeout = max(60.0, 5 * result.baseline_seconds + 30)
    stem = module.replace("/", "_").removesuffix(".py")
    cfg, db_path = WORK / f"{stem}.toml", WORK / f"{stem}.sqlite"
    cfg.write_text(_config(module, kill_command(calls), timeout, workers.urls))
    db_path.unlink(missing_ok=True)
    exe = _cosmic_ray()
    init = subprocess.run([exe, "init", str(cfg), str(db_path)], cwd=workers.trees[0],
                          capture_output=True, text=True)
    if init.returncode != 0:
        raise MutationError(f"cosmic-ray init {module}: {init.stderr.strip()[-300:]}")
    with use_db(str(db_path), WorkDB.Mode.open) as db:
        result.generated = db.num_work_items
        _sample(db, limit, only)
        todo = db.num_work_items - db.num_results
    started = time.perf_counter()
    proc = subprocess.Popen([exe, "exec", str(cfg), str(db_path)], cwd=workers.trees[0],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = 0
    while proc.poll() is None:
        time.sleep(1.0)
        seen = _progress(db_path, todo, seen, advance)
    _progress(db_path, todo, seen, advance)
    if proc.returncode != 0:
        raise MutationError(f"cosmic-ray exec {module} failed: {proc.stderr.read()[-300:]}")
    result.seconds = time.perf_counter() - started
    _collect(result, db_path)
    return result


def _progress(db_path: Path, todo: int, seen: int, advance) -> int:
    from cosmic_ray.work_db import WorkDB, use_db
    with use_db(str(db_path), WorkDB.Mode.open) as db:
        done = sum(1 for _item, r in db.completed_work_items
                   if r.worker_outcome.value != "skipped")
    if advance is not None:
        for _ in range(done - seen):
            advance()
    return max(seen, done)


def _outcome(r) -> str:
    if r.worker_outcome.value != "normal":
        return "error"
    if r.test_outcome.value == "killed":
        return "timeout" if (r.output or "").strip() == "timeout" else "killed"
    return r.test_outcome.value


def _collect(result: ModuleResult, db_path: Path) -> None:
    from cosmic_ray.work_db import WorkDB, use_db
    source = (ROOT / result.module).read_text()
    scopes = _scopes(source)
    explanations = load_explanations()
    counts: dict[str, int] = {}
    with use_db(str(db_path), WorkDB.Mode.open) as db:
        for item, r in db.completed_work_items:
            if r.worker_outcome.value == "skipped":
                continue
            m = item.mutations[0]
            outcome = _outcome(r)
            counts[outcome] = counts.get(outcome, 0) + 1
            if outcome in ("survived", "error"):
                before, after = _diff_lines(r.diff or "")
                mutant = Mutant(result.module, m.operator_name, m.occurrence, m.start_pos[0],
                                _function_at(scopes, m.start_pos[0]), outcome, before, after)
                mutant.why = explain(mutant, explanations)
                mutant.detail = next(iter((r.output or "").splitlines()), "")
                result.survivors.append(mutant)
    result.mutants = sum(counts.values())
    result.counts = dict(sorted(counts.items()))
    result.survivors.sort(key=lambda s: (s.line, s.operator, s.occurrence))


def _diff_lines(diff: str) -> tuple[str, str]:
    minus = [ln[1:].strip() for ln in diff.splitlines()
             if ln.startswith("-") and not ln.startswith("---")]
    plus = [ln[1:].strip() for ln in diff.splitlines()
            if ln.startswith("+") and not ln.startswith("+++")]
    return " / ".join(minus), " / ".join(plus)


def _scopes(source: str) -> list[tuple[int, int, str]]:
    """(first line, last line, qualified name) of every def and class."""
    out: list[tuple[int, int, str]] = []

    def walk(node, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                out.append((child.lineno, child.end_lineno or child.lineno, name))
                walk(child, name + ".")
            else:
                walk(child, prefix)
    walk(ast.parse(source), "")
    return out


def _function_at(scopes: list[tuple[int, int, str]], line: int) -> str:
    inside = [s for s in scopes if s[0] <= line <= s[1]]
    return max(inside, key=lambda s: s[0])[2] if inside else "<module>"


# --- why a mutant survives -----------------------------------------------------------------

def load_explanations(path: Path = SURVIVORS) -> list[dict]:
    """``proofs/survivors.toml``: ``[[survivor]]`` entries with ``module``,
    ``function`` (a qualified name; shell patterns allowed), optional
    ``line`` and ``operator`` patterns (each a pattern or a list of them),
    and ``why``."""
    if not path.exists():
        return []
    entries = tomllib.loads(path.read_text()).get("survivor", [])
    for e in entries:
        if not {"module", "function", "why"} <= set(e):
            raise MutationError(f"{path.name}: an entry needs module, function and why: {e}")
    return entries


def explain(m: Mutant, explanations: list[dict]) -> str:
    """The reason of the first entry that fits ``m`` ("" if none does)."""
    for e in explanations:
        if e["module"] == m.module and _fits(m.function, e["function"]) \
                and _fits(m.before, e.get("line", "*")) \
                and _fits(m.operator, e.get("operator", "*")):
            return e["why"]
    return ""


def _fits(text: str, patterns: str | list[str]) -> bool:
    """``text`` matches the pattern, or one of a list of patterns."""
    if isinstance(patterns, str):
        patterns = [patterns]
    return any(fnmatch.fnmatchcase(text, p) for p in patterns)


# --- the campaign --------------------------------------------------------------------------

def campaign(modules: list[str], jobs: int, limit: int | None = None,
             only: list[tuple[str, int]] | None = None, quiet: bool = False,
             record: Path | None = None) -> list[ModuleResult]:
    """Run the modules' mutants; with ``record``, merge each module into
    that report as soon as it is done (a campaign of hours keeps what it
    finished if it is stopped)."""
    from hvmspec.commands import progress
    WORK.mkdir(parents=True, exist_ok=True)
    results = []
    with Workers(jobs) as workers:
        for module in modules:
            total = _count(module, workers, limit, only)
            with progress(total, f"mutants of {module}", quiet=quiet) as advance:
                results.append(run_module(module, workers, limit, only, advance))
            if record is not None:
                old = json.loads(record.read_text()) if record.exists() else \
                    {"modules": [], "survivors": []}
                record.write_text(json.dumps(merge(old, summary(results[-1:])), indent=1)
                                  + "\n")
    return results


def _count(module: str, workers: Workers, limit, only) -> int:
    """How many mutants will run (for the progress bar)."""
    if only is not None:
        return len(only)
    if limit is not None:
        return limit
    return len(plan(module))


def plan(module: str) -> list[tuple[str, int, int]]:
    """The mutants cosmic-ray makes of ``module``: (operator, occurrence,
    line), in the order of the source (a dry ``cosmic-ray init``)."""
    from cosmic_ray.work_db import WorkDB, use_db
    WORK.mkdir(parents=True, exist_ok=True)
    cfg, db_path = WORK / "plan.toml", WORK / "plan.sqlite"
    cfg.write_text(_config(module, kill_command(WORK / "plan.calls.json"), 60,
                           ["http://127.0.0.1:1"]))
    db_path.unlink(missing_ok=True)
    done = subprocess.run([_cosmic_ray(), "init", str(cfg), str(db_path)], cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise MutationError(f"cosmic-ray init {module}: {done.stderr.strip()[-300:]}")
    with use_db(str(db_path), WorkDB.Mode.open) as db:
        found = [(w.mutations[0].operator_name, w.mutations[0].occurrence,
                  w.mutations[0].start_pos[0]) for w in db.work_items]
    return sorted(found, key=lambda f: (f[2], f[0], f[1]))


def summary(results: list[ModuleResult]) -> dict:
    """The report of a campaign (the shape of ``docs/mutation.json``)."""
    modules = [{"module": r.module, "groups": list(r.groups), "generated": r.generated,
                "mutants": r.mutants, "killed": r.killed, "counts": r.counts,
                "score": round(r.killed / r.scored, 4) if r.scored else 0.0,
                "baseline_seconds": round(r.baseline_seconds, 2),
                "seconds": round(r.seconds, 1), "source_sha256": source_hash(r.module)}
               for r in results]
    return totals({"modules": modules,
                   "survivors": [asdict(s) for r in results for s in r.survivors]})


def totals(report: dict) -> dict:
    """``report`` with its header (tool, killer, totals, score) recomputed
    from its modules and survivors."""
    modules = sorted(report["modules"], key=lambda m: list(TARGETS).index(m["module"])
                     if m["module"] in TARGETS else len(TARGETS))
    killed = sum(m["killed"] for m in modules)
    scored = sum(m["mutants"] - m["counts"].get("incompetent", 0) for m in modules)
    survivors = report["survivors"]
    return {
        "tool": f"cosmic-ray {_version()}",
        "killer": KILLER,
        "target": TARGET_SCORE,
        "mutants": sum(m["mutants"] for m in modules),
        "killed": killed,
        "score": round(killed / scored, 4) if scored else 0.0,
        "unexplained": sum(1 for s in survivors if not s["why"]),
        "modules": modules,
        "survivors": survivors,
    }


def merge(old: dict, new: dict) -> dict:
    """A recorded report updated with the modules of a new campaign (the
    others keep their last results)."""
    ran = {m["module"] for m in new["modules"]}
    return totals({
        "modules": [m for m in old["modules"] if m["module"] not in ran] + new["modules"],
        "survivors": [s for s in old["survivors"] if s["module"] not in ran]
        + new["survivors"]})


def reexplain(report: dict) -> dict:
    """The recorded survivors explained again from ``proofs/survivors.toml``
    (after editing the explanations, without running the mutants again)."""
    explanations = load_explanations()
    for s in report["survivors"]:
        s["why"] = explain(Mutant(**s), explanations)
    return totals(report)


def source_hash(module: str) -> str:
    import hashlib
    return hashlib.sha256((ROOT / module).read_bytes()).hexdigest()


def _version() -> str:
    from importlib.metadata import version
    return version("cosmic-ray")


def _print(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text
    console = Console()
    table = Table(title="mutation testing: hvmspec check as the killer")
    for col in ("module", "checked by", "mutants", "killed", "timeout", "survived", "score"):
        table.add_column(col, justify="left" if col in ("module", "checked by") else "right")
    for m in report["modules"]:
        c = m["counts"]
        table.add_row(m["module"], " ".join(m["groups"]), str(m["mutants"]), str(m["killed"]),
                      str(c.get("timeout", 0)), str(c.get("survived", 0) + c.get("error", 0)),
                      f"{100 * m['score']:.1f} %")
    console.print(table)
    for s in report["survivors"]:
        console.print(Text(f"{s['module']}:{s['line']} {s['function']} [{s['operator']}] "
                           f"{s['before']!r} -> {s['after']!r}"), highlight=False)
        console.print(Text(f"    {s['why'] or 'UNEXPLAINED'}"), highlight=False)
    console.print(Text(f"{report['killed']} of {report['mutants']} killed: "
                       f"{100 * report['score']:.1f} % (target {100 * TARGET_SCORE:.0f} %), "
                       f"{report['unexplained']} survivors unexplained"), highlight=False)


def main(argv: list[str] | None = None) -> int:
    global WORK
    from hvmspec.commands import EXIT_NO, EXIT_OK, EXIT_USAGE
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["kill"] and len(argv) == 2:         # a worker's test command
        return kill(Path(argv[1]))
    if argv[:1] == ["calls"] and len(argv) >= 4:        # build_calls, in a worker's tree
        try:
            record = record_calls(argv[1], tuple(argv[3:]))
        except MutationError as exc:
            print(f"hvmspec mutation: error: {exc}", file=sys.stderr)
            return EXIT_NO
        Path(argv[2]).write_text(json.dumps(record) + "\n")
        return EXIT_OK
    parser = argparse.ArgumentParser(
        prog="python -m hvmspec.mutation",
        description="Mutation-test the spec modules the proofs are about, with hvmspec check "
        "as the only killer (cosmic-ray). Exit 0 when the score reaches the target and every "
        "survivor is explained in proofs/survivors.toml.")
    parser.add_argument("--module", action="append", metavar="PATH",
                        help=f"only this module (repeatable; one of {', '.join(TARGETS)})")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="parallel workers (default: the number of CPUs)")
    parser.add_argument("--limit", type=int, metavar="N",
                        help="run an even sample of N mutants per module")
    parser.add_argument("--mutant", action="append", metavar="OPERATOR:OCCURRENCE",
                        help="run only this mutant (repeatable; with one --module)")
    parser.add_argument("--write", metavar="FILE",
                        help="record the report, merged into FILE's other modules "
                        "(docs/mutation.json)")
    parser.add_argument("--explain", metavar="FILE",
                        help="do not run: explain FILE's survivors again from "
                        "proofs/survivors.toml, rewrite it and print the report")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--workdir", metavar="DIR", type=Path,
                        help=f"where the workers' tree copies and cosmic-ray's sessions go "
                        f"(default {WORK.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    if args.workdir is not None:
        WORK = args.workdir.resolve()
    modules = args.module or list(TARGETS)
    unknown = [m for m in modules if m not in TARGETS]
    sampled = args.limit is not None or bool(args.mutant)
    if unknown or args.jobs < 1 or (args.limit is not None and args.limit < 1) \
            or (args.mutant and len(modules) != 1) or (args.write and sampled):
        why = (f"unknown module {', '.join(unknown)} (one of {', '.join(TARGETS)})" if unknown
               else "--write records whole modules, not --limit or --mutant samples"
               if args.write and sampled
               else "--mutant needs exactly one --module" if args.mutant
               else "--jobs and --limit must be at least 1")
        print(f"hvmspec mutation: error: {why}", file=sys.stderr)
        return EXIT_USAGE
    only = None
    if args.mutant:
        try:
            only = [(op, int(occ)) for op, occ in (m.rsplit(":", 1) for m in args.mutant)]
        except ValueError:
            print("hvmspec mutation: error: --mutant is OPERATOR:OCCURRENCE", file=sys.stderr)
            return EXIT_USAGE
    try:
        if args.explain:
            report = reexplain(json.loads(Path(args.explain).read_text()))
            Path(args.explain).write_text(json.dumps(report, indent=1) + "\n")
        else:
            record = Path(args.write) if args.write else None
            report = summary(campaign(modules, args.jobs, args.limit, only, quiet=args.json,
                                      record=record))
            if record is not None:
                report = json.loads(record.read_text())
    except (MutationError, OSError, ValueError, KeyError) as exc:
        print(f"hvmspec mutation: error: {exc}", file=sys.stderr)
        return EXIT_NO
    except KeyboardInterrupt:
        print("hvmspec mutation: stopped", file=sys.stderr)
        return 130
    if args.write:
        Path(args.write).write_text(json.dumps(report, indent=1) + "\n")
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        _print(report)
    ok = report["score"] >= TARGET_SCORE and report["unexplained"] == 0
    return EXIT_OK if ok else EXIT_NO


if __name__ == "__main__":
    sys.exit(main())
