"""Z3 checks of hvmspec's invariants, over the spec's own functions.

Room: each module builds transition systems from ``spec/``'s step functions
(never from a re-typed copy) and pairs every check with at least one
*mutant*: the spec with one function deliberately broken, which must give a
counterexample. A proof that cannot fail proves nothing. Imports ``spec``
and :mod:`proofs.kinduction`.

:func:`all_checks` lists every check and mutant with what it is expected
to give; ``hvmspec check`` runs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from proofs.kinduction import Outcome


@dataclass(frozen=True)
class Check:
    name: str
    kind: str          # "invariant" or "mutant"
    expected: str      # "proved" or "counterexample"
    mutates: str       # the spec function a mutant replaces ("" for an invariant)
    doc: str
    run: Callable[[], Outcome]


def all_checks() -> list[Check]:
    from proofs import ioreq
    checks: list[Check] = []
    for name, factory, mutants in ioreq.CHECKS:
        checks.append(Check(name, "invariant", "proved", "", factory.__doc__ or "",
                            lambda f=factory: ioreq.run_check(f)))
        for mutant in mutants:
            checks.append(Check(f"{name}/mutant:{mutant[0]}", "mutant", "counterexample",
                                f"spec.ioreq.{mutant[1]}", mutant[2].__doc__ or "",
                                lambda f=factory, m=mutant: ioreq.run_check(f, m)))
    return checks
