"""Conformance: the same guest on two engines, compared event by event.

A case is a guest. Both engines run it; their traces must be equal event by
event, and so must their summaries (the domain's fate and the instruction
count). A divergence is reported as the index of the first differing event,
both sides' event there, and the events around it.
"""

from __future__ import annotations

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
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return _diverged(case, a, b, i)
    if len(a) != len(b):
        return _diverged(case, a, b, min(len(a), len(b)))
    sa = {"exit": ref.exit, "instructions": ref.instructions}
    sb = {"exit": other.exit, "instructions": other.instructions}
    if sa != sb:
        return CaseResult(case, False, len(a), len(a), {"kind": "summary", **sa},
                          {"kind": "summary", **sb})
    return CaseResult(case, True, len(a))


def _diverged(case: str, a: list[dict], b: list[dict], i: int) -> CaseResult:
    end = {"kind": "end of trace"}
    lo = max(0, i - CONTEXT)
    return CaseResult(case, False, max(len(a), len(b)), i,
                      a[i] if i < len(a) else end, b[i] if i < len(b) else end,
                      {"from": lo, "reference": a[lo:i + CONTEXT + 1],
                       "impl": b[lo:i + CONTEXT + 1]})


def run_case(image: GuestImage, engines=("reference", "impl")) -> CaseResult:
    from hvmspec.engines import runner
    ref = runner(engines[0])(image)
    other = runner(engines[1])(image)
    return compare(image.name, ref, other)
