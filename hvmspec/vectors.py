"""``hvmspec vectors``: run a vector file on an engine, and export the
project's own vectors.

Room: the tool side of the instruction vectors of :mod:`spec.vectors`:
choosing the engine's runner, running a file, and generating the exported
set. Imports :mod:`spec.vectors`, the engines' runners,
:mod:`hvmspec.x86diff` (the instruction generator), and for the suites'
files :mod:`spec.suites` and :mod:`spec.schemas`.

**Export.** The project's vectors are generated from a fixed seed by the
differential tester's generator (every family, size, mode, with and without
LOCK and REP), with the memory operand's neighbourhood as an MMIO region so
that every access shows in ``mmio_ops``. The expectations are the reference
engine's; a case is exported only if impl agrees with it, and a case on
which they disagree is reported (and the export fails) unless it is one of
the documented Unicorn deviations, which are left out and counted.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Callable

from spec.vectors import Case, Outcome, compare
from spec.x86.state import ARITH_FLAGS, FLAG_BITS


def runner(engine: str) -> Callable[[Case], Outcome]:
    if engine == "reference":
        from spec.x86.vectors import run_case
        return run_case
    if engine == "impl":
        from impl.vectors import run_case
        return run_case
    raise ValueError(f"unknown engine {engine!r}: choose reference or impl")


def run_file(cases: list[Case], engine: str) -> list[dict]:
    """The failures of running ``cases``: [{"id", "diff"}]."""
    run = runner(engine)
    failures = []
    for case in cases:
        diff = compare(case, run(case))
        if diff:
            failures.append({"id": case.id, "diff": diff})
    return failures


def _expectation(case: Case, out: Outcome, undefined: set[str]) -> dict:
    names = [r for r in out.regs if case.mode == 64 or r[1:].isalpha() and len(r) == 3]
    mask = sum(1 << FLAG_BITS[f] for f in ARITH_FLAGS if f not in undefined)
    mask |= 1 << FLAG_BITS["DF"]
    ranges = lambda rs: [{"addr": a, "hex": out.memory(a, len(d)).hex()} for a, d in rs]  # noqa
    return {"regs": {r: out.regs[r] for r in names}, "rflags": out.rflags & mask,
            "rflags_mask": mask, "ram": ranges(case.ram), "mmio": ranges(case.mmio),
            "mmio_ops": out.mmio_ops, "fault": out.fault}


def generate(count: int, seed: int = 2026) -> tuple[list[Case], dict]:
    """The exported cases, and a report (generated, left out and why)."""
    from hvmspec import x86diff
    from spec.x86.vectors import run as run_spec
    from impl.vectors import run_case as run_impl
    rng = random.Random(seed)
    cases: list[Case] = []
    report = {"deviations": {}, "disagreements": [], "unemulated": 0}
    while len(cases) < count:
        made = x86diff.make_case(rng.choice, rng.getrandbits, rng_bytes=rng.randbytes)
        if made is None:
            continue
        regs = dict(made.regs)
        rip = x86diff.CODE[made.mode]
        around = lambda a: a - a % 64 - 64                                 # noqa: E731
        mmio = [(around(regs["rbx"]), rng.randbytes(256))]
        ram = [(around(regs[r]), rng.randbytes(256)) for r in ("rsi", "rdi", "rsp")
               if not mmio[0][0] - 256 < around(regs[r]) < mmio[0][0] + 256]
        ram = [r for i, r in enumerate(ram) if all(abs(r[0] - o[0]) >= 256 for o in ram[:i])]
        if made.text.split()[0].lstrip("rep").startswith(("movs", "stos", "lods", "cmps", "scas")) \
                or made.text.startswith(("rep", "repe", "repne")):
            mmio = [(around(regs["rdi"]), rng.randbytes(256))]
            ram = [(around(regs["rsi"]), rng.randbytes(256))] \
                if abs(around(regs["rsi"]) - mmio[0][0]) >= 256 else []
        spec = run_spec(made.mode, made.code, {**regs, "rip": rip}, made.rflags, ram, mmio)
        if spec.fault and "unhandleable" in spec.fault:
            report["unemulated"] += 1
            continue
        if "result" in spec.undefined:          # e.g. SHLD/SHRD by more than the size
            report["undefined_result"] = report.get("undefined_result", 0) + 1
            continue
        case = Case(f"{len(cases):05d}-{made.mode}-{made.text.replace(' ', '_')}", made.mode,
                    made.code, {**regs, "rip": rip}, made.rflags, ram, mmio, {})
        case.expect = _expectation(case, Outcome(spec.regs, spec.rflags, spec.memory.peek,
                                                 spec.mmio_ops, spec.fault), spec.undefined)
        diff = compare(case, run_impl(case))
        if diff:
            deviation = next((name for name, _r, _m, touches in x86diff.DEVIATIONS
                              if touches(made.text) and made.mode == 64
                              or touches(made.text) and name == "lock-neg-flags"), None)
            if deviation:
                report["deviations"][deviation] = report["deviations"].get(deviation, 0) + 1
            else:
                report["disagreements"].append({"id": case.id, "diff": diff})
            continue
        cases.append(case)
    return cases, report


def export(directory: Path, count: int, seed: int = 2026) -> dict:
    """Write ``x86.jsonl`` into ``directory``; returns the report. Every case
    is checked against the format first: an export is a valid vector file."""
    from spec.vectors import dump, parse
    cases, report = generate(count, seed)
    for case in cases:
        parse(case.to_json())
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "x86.jsonl", "w") as stream:
        dump(cases, stream)
    report.update(cases=len(cases), file=str(directory / "x86.jsonl"))
    return report


def export_suites(directory: Path, seed: int = 2026) -> dict[str, str]:
    """Write ``<suite>.jsonl`` for the conformance suites into
    ``directory``: each line ``{"suite", "case", "expected"}``, the case and
    the reference model's answer (:mod:`spec.suites`). ``hvmspec conform
    --impl CMD --cases FILE`` runs such a file; an implementation can also
    run it on its own, without Python, and compare with ``expected``. Each
    line is checked against ``suite-case.schema.json`` first."""
    import json

    from hvmspec.conform import default_cases
    from spec.schemas import check
    from spec.suites import SuiteError, suites
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, module in suites().items():
        path = directory / f"{name}.jsonl"
        with open(path, "w") as stream:
            for case in default_cases(name):
                entry = {"suite": name, "case": case, "expected": module.expected(case)}
                check(entry, "suite-case", error=SuiteError)
                stream.write(json.dumps(entry, separators=(",", ":")) + "\n")
        files[name] = str(path)
    return files


def export_schemas(directory: Path) -> dict[str, str]:
    """Copy the published schemas (:mod:`spec.schemas`) into ``directory``,
    beside the files they describe: a runner in another language validates
    them there."""
    import shutil

    from spec.schemas import NAMES, path_of
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in NAMES:
        target = directory / f"{name}.schema.json"
        shutil.copyfile(path_of(name), target)
        files[name] = str(target)
    return files
