"""Conformance: the same guest on two engines, compared event by event.

A case is a guest. Both engines run it; their traces must be equal event by
event, and so must their summaries (the domain's fate and the instruction
count). A divergence is reported as the index of the first differing event,
both sides' event there, and the events around it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from spec.loader import GuestImage
from spec.result import RunResult

CONTEXT = 3


@dataclass
class CaseResult:
    case: str
    equal: bool
    events: int
    index: int | None = None
    reference: dict | None = None
    impl: dict | None = None
    context: dict = field(default_factory=dict)


def compare(case: str, ref: RunResult, other: RunResult) -> CaseResult:
    """Find the first difference between two runs of one guest."""
    a = [e.to_json() for e in ref.trace]
    b = [e.to_json() for e in other.trace]
    i = first_difference(a, b)
    if i is not None:
        return CaseResult(case, False, max(len(a), len(b)), i,
                          *around(a, b, i, "trace", ("reference", "impl")))
    sa = {"exit": ref.exit, "instructions": ref.instructions}
    sb = {"exit": other.exit, "instructions": other.instructions}
    if sa != sb:
        return CaseResult(case, False, len(a), len(a), {"kind": "summary", **sa},
                          {"kind": "summary", **sb})
    return CaseResult(case, True, len(a))


def first_difference(a: list, b: list) -> int | None:
    """The index of the first event where two event lists differ (the
    shorter one's length if one is a prefix of the other), or None."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def around(a: list[dict], b: list[dict], i: int, what: str,
           sides: tuple[str, str]) -> tuple[dict, dict, dict]:
    """Both sides' event at ``i`` (or an end marker) and the events around
    it, under the names ``sides``."""
    end = {"kind": f"end of {what}"}
    lo = max(0, i - CONTEXT)
    return (a[i] if i < len(a) else end, b[i] if i < len(b) else end,
            {"from": lo, sides[0]: a[lo:i + CONTEXT + 1], sides[1]: b[lo:i + CONTEXT + 1]})


def run_case(image: GuestImage, engines=("reference", "impl")) -> CaseResult:
    from hvmspec.engines import runner
    ref = runner(engines[0])(image)
    other = runner(engines[1])(image)
    return compare(image.name, ref, other)


# --- anyone's implementation, through the protocol ------------------------------------

#: cases per suite when none are given (a fixed seed: the same cases each run)
DEFAULT_COUNTS = {"ioreq": 200, "uart": 200, "system": 9}
SEED = 2026


def default_cases(suite_name: str, count: int | None = None) -> list[dict]:
    import random
    from spec.suites import suite
    return suite(suite_name).generate(random.Random(SEED), count or DEFAULT_COUNTS[suite_name])


@dataclass
class ExternalResult:
    suite: str
    case: str
    equal: bool
    events: int
    index: int | None = None
    expected: dict | None = None
    got: dict | None = None
    context: dict = field(default_factory=dict)
    error: str | None = None
    reproducer: str | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None and v != {}}


def _against(suite: str, case: dict, expected: list[dict], got: list[dict]) -> ExternalResult:
    i = first_difference(expected, got)
    if i is None:
        return ExternalResult(suite, case["id"], True, len(expected))
    return ExternalResult(suite, case["id"], False, max(len(expected), len(got)), i,
                          *around(expected, got, i, "events", ("expected", "got")))


def minimize(suite_name: str, case: dict, diverges) -> dict:
    """The smallest case (by steps, ddmin) that still diverges; for the
    system suite, the run cut just after the first differing event."""
    if "steps" not in case:
        return case
    steps = list(case["steps"])
    chunk = max(1, len(steps) // 2)
    while chunk >= 1:
        i, shrunk = 0, False
        while i < len(steps):
            trial = steps[:i] + steps[i + chunk:]
            candidate = {**case, "steps": trial}
            if trial and diverges(candidate):
                steps, shrunk = trial, True
            else:
                i += chunk
        if not shrunk:
            chunk //= 2
    return {**case, "id": case["id"] + "-min", "steps": steps}


def run_external(command: str, suites: list[str] | None = None,
                 cases: dict[str, list[dict]] | None = None, reproducers=None,
                 advance=lambda result: None,
                 timeout: float | None = None) -> tuple[str, list]:
    """Every case of every suite the implementation runs (and hvmspec was
    asked for), compared with the spec's answer; ``(its name, results)``.
    ``advance`` is given each case's result as soon as it is known."""
    from pathlib import Path

    from hvmspec.protocol import TIMEOUT, External, ImplementationError
    from spec.suites import suite as suite_of, suites as all_suites
    offered = suites or list(all_suites())
    impl = External(command, offered, timeout or TIMEOUT)
    impl.start()
    results = []
    try:
        for name in [s for s in offered if s in impl.suites]:
            module = suite_of(name)
            for case in (cases or {}).get(name) or default_cases(name):
                expected = module.expected(case)
                try:
                    got = impl.run(name, case)
                except ImplementationError as exc:
                    results.append(ExternalResult(name, case["id"], False, len(expected),
                                                  error=str(exc)))
                    advance(results[-1])
                    continue
                result = _against(name, case, expected, got)
                if not result.equal and reproducers is not None:
                    def diverges(c, module=module, name=name) -> bool:
                        try:
                            return module.expected(c) != impl.run(name, c)
                        except ImplementationError:
                            return True
                    small = minimize(name, case, diverges)
                    out = Path(reproducers) / f"{name}-{case['id']}.json"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    exp = module.expected(small)
                    try:
                        got_small = impl.run(name, small)
                    except ImplementationError as exc:
                        got_small = [{"error": str(exc)}]
                    out.write_text(json.dumps({"suite": name, "case": small,
                                               "expected": exp, "got": got_small,
                                               "first_difference":
                                               first_difference(exp, got_small)},
                                              indent=1) + "\n")
                    result.reproducer = str(out)
                results.append(result)
                advance(result)
    finally:
        impl.close()
    return impl.name, results
