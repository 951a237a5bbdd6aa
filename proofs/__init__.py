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
    from proofs import evtchn, ioreq, mapcache
    checks: list[Check] = []
    for module, spec_module in ((ioreq, "spec.ioreq"), (evtchn, "spec.evtchn"),
                                (mapcache, "spec.mapcache")):
        for name, factory, mutants in module.CHECKS:
            checks.append(Check(name, "invariant", "proved", "", factory.__doc__ or "",
                                lambda f=factory, m=module: m.run_check(f)))
            for mutant in mutants:
                checks.append(Check(f"{name}/mutant:{mutant[0]}", "mutant", "counterexample",
                                    f"{spec_module}.{mutant[1]}", _mutant_doc(mutant),
                                    lambda f=factory, mu=mutant, m=module: m.run_check(f, mu)))
    checks += interrupt_checks()
    checks += xenstore_checks()
    checks += x86_rmw_checks()
    return checks


def _mutant_doc(mutant: tuple) -> str:
    """A mutant's description: its fourth element when the replacement is
    a value (a table), else the replacement function's docstring."""
    return mutant[3] if len(mutant) > 3 else (mutant[2].__doc__ or "")


def _dotted_checks(m, package: str) -> list[Check]:
    """The checks of a module whose mutants name ``module.function`` of the
    spec ``package`` (its ``CHECKS`` and ``run_check``)."""
    checks: list[Check] = []
    for name, factory, mutants in m.CHECKS:
        checks.append(Check(name, "invariant", "proved", "", factory.__doc__ or "",
                            lambda f=factory: m.run_check(f)))
        for mutant in mutants:
            checks.append(Check(f"{name}/mutant:{mutant[0]}", "mutant", "counterexample",
                                f"{package}.{mutant[1]}", mutant[2].__doc__ or "",
                                lambda f=factory, mu=mutant: m.run_check(f, mu)))
    return checks


def xenstore_checks() -> list[Check]:
    from proofs import xenstore
    return _dotted_checks(xenstore, "spec.xenstore")


def interrupt_checks() -> list[Check]:
    from proofs import interrupts as m
    checks = _dotted_checks(m, "spec")
    for name, rule, mutants in m.RULES:
        checks.append(Check(name, "invariant", "proved", "", rule.__doc__ or "",
                            lambda r=rule: m.run_rule(r)))
        for mutant in mutants:
            checks.append(Check(f"{name}/mutant:{mutant[0]}", "mutant", "counterexample",
                                f"spec.{mutant[1]}", mutant[2].__doc__ or "",
                                lambda r=rule, mu=mutant: m.run_rule(r, mu)))
    return checks


def x86_rmw_checks() -> list[Check]:
    from proofs import x86_rmw
    return [Check(name, kind, "proved" if kind == "invariant" else "counterexample", replaced,
                  doc, run) for name, kind, replaced, doc, run in x86_rmw.checks()]
