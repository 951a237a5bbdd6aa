"""The engines a guest can run on, by name."""

from __future__ import annotations

from typing import Callable

from spec.result import RunResult

ENGINES = ("reference", "impl")


def runner(name: str) -> Callable[..., RunResult]:
    """``run_guest`` of the named engine."""
    if name == "reference":
        from spec.machine import run_guest
        return run_guest
    if name == "impl":
        from impl.machine import run_guest
        return run_guest
    raise ValueError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")
