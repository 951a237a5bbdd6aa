"""Checking a transition system with Z3: bounded search, then induction.

Room: the proof engine, generic over the transition systems that the other
modules of ``proofs/`` build from the spec's own step functions. Imports
``z3``.

A system has state variables, per-step inputs (which party acts, and any
value it chooses), an initial condition, a step relation, a *safety
property* of each step (old state, inputs, new state) and an *inductive
strengthening*: an invariant of the reachable states, written out so that
the property follows from it in one step.

The check has two halves:

1. **Bounded model checking** from the initial states, for 1..``depth``
   steps: a satisfying assignment is a concrete run that breaks the property,
   returned as a readable sequence of states (a counterexample).
2. **Induction** (1-induction with the strengthening): the initial states
   satisfy the invariant; and from any state satisfying the invariant, any
   step keeps the invariant and satisfies the property. If both hold the
   property holds in every reachable step, for runs of any length.

The result is ``proved`` when the induction succeeds (and the search found
nothing), ``counterexample`` when the search found a run, and ``unknown``
otherwise (the strengthening is too weak, or Z3 gave up). When the
induction succeeds no run of any length breaks the property, so the search
can find nothing: a check expected to prove (the unmutated spec,
:func:`check_mutated`) runs the induction first and searches only if it
fails (``TransitionSystem.prove_first``); the verdict is the same.

**The vacuity guard.** A property that holds because nothing can happen
proves nothing: an initial condition that no state satisfies, a step
relation that no state can take, or an obligation whose interesting case
(the antecedent of its implication: a send to a masked port, a miss with
the budget full) never arises. So a proof is only ``proved`` with its
*witnesses*: every system names the cases its properties are about
(:attr:`TransitionSystem.witnesses`), and for each the check finds a
concrete run from the initial states, within ``witness_depth`` steps,
whose last step is that case; it also finds a state of the strengthening
that can take a step (the induction's premise is satisfiable). A system
that names no witness, or one whose witness has no run, gives
``vacuous``, which is not ``proved``: ``hvmspec check`` fails it. The runs
found are reported with the proof.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Callable
from unittest import mock

import z3

State = dict[str, z3.ExprRef]


@dataclass
class TransitionSystem:
    name: str
    state: dict[str, Callable[[str], z3.ExprRef]]
    inputs: dict[str, Callable[[str], z3.ExprRef]]
    init: Callable[[State], z3.BoolRef]
    step: Callable[[State, State, State], z3.BoolRef]
    invariant: Callable[[State], z3.BoolRef]
    prop: Callable[[State, State, State], z3.BoolRef]
    describe_state: Callable[[dict], str]
    describe_input: Callable[[dict], str]
    depth: int = 8
    #: optional: conditions on a step's inputs (say, which operation it is)
    #: under which the induction step is checked one at a time, and then
    #: for inputs none of them covers; the verdict is the same, often faster
    cases: Callable[[State], list[z3.BoolRef]] | None = None
    #: False: every query (each search depth, each induction case) gets a
    #: new solver. Without push/pop Z3 simplifies and bit-blasts the whole
    #: query first, which is much faster on some systems, slower on others
    incremental: bool = True
    #: the vacuity guard (module docstring): (name, condition over a step's
    #: old state, inputs and new state), each of which some run must reach
    witnesses: tuple[tuple[str, Callable[[State, State, State], z3.BoolRef]], ...] = ()
    #: how many steps a witness run may take (default: ``depth``)
    witness_depth: int | None = None
    #: True: the bounded search, too, asks one query per case of ``cases``
    split_search: bool = False
    #: True: the induction runs first, and the search only if it fails (an
    #: induction that holds with initial states inside the strengthening
    #: leaves no run of any length that breaks the property, so the search
    #: could find nothing); the verdict is the same. :func:`check_mutated`
    #: sets it for the unmutated spec, which is expected to be proved
    prove_first: bool = False


@dataclass
class Outcome:
    result: str                      # proved | counterexample | unknown | vacuous | error
    seconds: float
    counterexample: list[str] = field(default_factory=list)
    detail: str = ""
    #: the witnesses of a proof: (name, the run that reaches its case)
    witnesses: list[tuple[str, list[str]]] = field(default_factory=list)


def _fresh(decls: dict[str, Callable[[str], z3.ExprRef]], tag: str) -> State:
    return {name: make(f"{name}@{tag}") for name, make in decls.items()}


def _value(model: z3.ModelRef, expr: z3.ExprRef) -> object:
    val = model.eval(expr, model_completion=True)
    if z3.is_true(val):
        return True
    if z3.is_false(val):
        return False
    if z3.is_bv_value(val):
        return val.as_long()
    return val                       # an array: the describer evaluates it


def check(system: TransitionSystem, timeout_ms: int = 60_000) -> Outcome:
    """Search, then induction (see module docstring)."""
    started = time.perf_counter()
    if system.prove_first:
        verdict, detail = _induction(system, timeout_ms)
    if not system.prove_first or verdict != "proved":
        cex = _search(system, timeout_ms)
        if cex is not None:
            return Outcome("counterexample", time.perf_counter() - started, cex)
    if not system.prove_first:
        verdict, detail = _induction(system, timeout_ms)
    if verdict != "proved":
        return Outcome(verdict, time.perf_counter() - started, detail=detail)
    missing, found = _witnesses(system, timeout_ms)
    if missing:
        return Outcome("vacuous", time.perf_counter() - started, detail=missing,
                       witnesses=found)
    return Outcome("proved", time.perf_counter() - started, detail=detail, witnesses=found)


def _witnesses(system: TransitionSystem,
               timeout_ms: int) -> tuple[str, list[tuple[str, list[str]]]]:
    """The vacuity guard: (what is missing, or ""; the witness runs found)."""
    if not system.witnesses:
        return "no witness: the system names no case its properties are about", []
    s, i, t = _fresh(system.state, "ws"), _fresh(system.inputs, "wi"), _fresh(system.state, "wt")
    premise = _solver(timeout_ms, system.invariant(s), system.step(s, i, t)).check()
    if premise != z3.sat:
        return f"no state of the strengthening can take a step ({premise})", []
    found = []
    for name, case in system.witnesses:
        run = _reach(system, case, system.witness_depth or system.depth, timeout_ms)
        if run is None:
            return (f"witness {name!r}: no run from the initial states reaches it within "
                    f"{system.witness_depth or system.depth} steps"), found
        found.append((name, run))
    return "", found


def _reach(system: TransitionSystem, case, depth: int, timeout_ms: int) -> list[str] | None:
    """A run from the initial states whose last step satisfies ``case``."""
    solver = _solver(timeout_ms)
    states = [_fresh(system.state, "r0")]
    inputs: list[State] = []
    solver.add(system.init(states[0]))
    for k in range(1, depth + 1):
        states.append(_fresh(system.state, f"r{k}"))
        inputs.append(_fresh(system.inputs, f"r{k}"))
        solver.add(system.step(states[k - 1], inputs[k - 1], states[k]))
        solver.push()
        solver.add(case(states[k - 1], inputs[k - 1], states[k]))
        if solver.check() == z3.sat:
            run = _render(system, solver.model(), states, inputs)
            return run[:-1] + ["the last step is the case"]
        solver.pop()
    return None


def _solver(timeout_ms: int, *facts: z3.BoolRef) -> z3.Solver:
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.add(*facts)
    return solver


def _search(system: TransitionSystem, timeout_ms: int) -> list[str] | None:
    solver = _solver(timeout_ms)
    states = [_fresh(system.state, "0")]
    inputs: list[State] = []
    run = [system.init(states[0])]
    solver.add(run[0])
    for k in range(1, system.depth + 1):
        states.append(_fresh(system.state, str(k)))
        inputs.append(_fresh(system.inputs, str(k)))
        run.append(system.step(states[k - 1], inputs[k - 1], states[k]))
        bad = z3.Not(system.prop(states[k - 1], inputs[k - 1], states[k]))
        if system.split_search and system.cases:
            found = _search_cases(system, timeout_ms, run, bad, inputs[k - 1])
            if found is not None:
                return _render(system, found, states, inputs)
            continue
        if system.incremental:
            solver.add(run[-1])
            solver.push()
            solver.add(bad)
            query = solver
        else:
            query = _solver(timeout_ms, *run, bad)
        if query.check() == z3.sat:
            return _render(system, query.model(), states, inputs)
        if system.incremental:
            solver.pop()
    return None


def _search_cases(system: TransitionSystem, timeout_ms: int, run: list, bad: z3.BoolRef,
                  inputs: State) -> z3.ModelRef | None:
    """One search query per case of the step's inputs (``split_search``)."""
    cases = system.cases(inputs)
    for case in cases + [z3.Not(z3.Or(*cases))]:
        query = _solver(timeout_ms, *run, bad, case)
        if query.check() == z3.sat:
            return query.model()
    return None


def _render(system: TransitionSystem, model: z3.ModelRef, states: list[State],
            inputs: list[State]) -> list[str]:
    lines = [f"initially       {system.describe_state(_concrete(model, states[0]))}"]
    for i, (inp, st) in enumerate(zip(inputs, states[1:]), 1):
        lines.append(f"step {i}: {system.describe_input(_concrete(model, inp)):<24} "
                     f"-> {system.describe_state(_concrete(model, st))}")
    lines.append("the last step breaks the property")
    return lines


def _concrete(model: z3.ModelRef, state: State) -> dict:
    return {name: _value(model, expr) for name, expr in state.items()}


def _induction(system: TransitionSystem, timeout_ms: int) -> tuple[str, str]:
    s0 = _fresh(system.state, "i0")
    base = _solver(timeout_ms, system.init(s0), z3.Not(system.invariant(s0))).check()
    if base != z3.unsat:
        return "unknown", f"the initial states do not satisfy the strengthening ({base})"
    s, i, t = _fresh(system.state, "s"), _fresh(system.inputs, "i"), _fresh(system.state, "t")
    facts = [system.invariant(s), system.step(s, i, t),
             z3.Not(z3.And(system.invariant(t), system.prop(s, i, t)))]
    cases = system.cases(i) if system.cases else []
    if not cases:
        step = _solver(timeout_ms, *facts).check()
        if step == z3.unsat:
            return "proved", "inductive"
        return "unknown", f"induction step not proved ({step})"
    solver = _solver(timeout_ms, *facts)
    for case in cases + [z3.Not(z3.Or(*cases))]:
        if system.incremental:
            solver.push()
            solver.add(case)
            step = solver.check()
            solver.pop()
        else:
            step = _solver(timeout_ms, *facts, case).check()
        if step != z3.unsat:
            return "unknown", f"induction step not proved ({step})"
    return "proved", "inductive"


def replaced(module: ModuleType, target: str, replacement: object):
    """A context in which ``target`` of the spec ``module`` (a function or
    constant ``name``, or ``Class.name``) is ``replacement``: how every
    proof runs a mutant."""
    owner, attr = module, target
    if "." in target:
        cls, attr = target.split(".")
        owner = getattr(module, cls)
    return mock.patch.object(owner, attr, replacement)


def check_mutated(factory: Callable[[], TransitionSystem], module: ModuleType,
                  mutant: tuple[str, str, object] | None = None) -> Outcome:
    """Check the system ``factory`` builds; with ``mutant`` = (name, function
    of the spec ``module``, replacement), with that function replaced while
    the system is built and checked."""
    if mutant is None:
        return check(dataclasses.replace(factory(), prove_first=True))
    _name, target, replacement = mutant
    with replaced(module, target, replacement):
        return check(factory())


def valid(claim: z3.BoolRef, started: float,
          describe: Callable[[z3.ModelRef], list[str]], *assumptions: z3.BoolRef) -> Outcome:
    """A function-level check: ``claim`` holds for every value of its free
    terms that satisfies ``assumptions`` (one query for its negation).
    ``proved``, or a ``counterexample`` that ``describe`` draws from the
    model, or ``unknown``; the time counts from ``started``."""
    solver = z3.Solver()
    solver.add(*assumptions, z3.Not(claim))
    verdict = solver.check()
    seconds = time.perf_counter() - started
    if verdict == z3.unsat:
        return Outcome("proved", seconds, detail="valid")
    if verdict == z3.sat:
        return Outcome("counterexample", seconds, describe(solver.model()))
    return Outcome("unknown", seconds, detail=str(verdict))


def source_mutant(module: ModuleType, function: str, old: str, new: str,
                  doc: str) -> Callable:
    """``module.function`` with the one source line ``old`` replaced by
    ``new`` (stripped lines compared; exactly one must match), compiled in a
    copy of the module's namespace: the very code the engine runs, with one
    line broken. It is compiled when first called, so that a spec whose code
    no longer has the line fails that mutant's check (loudly: ValueError),
    not the import of the proofs."""
    compiled: list[Callable] = []
    original = getattr(module, function)      # (while the mutant runs, it is patched in)

    def mutant(*args, **kwargs):
        if not compiled:
            compiled.append(_compile_mutant(module, original, old, new))
        return compiled[0](*args, **kwargs)
    mutant.__doc__ = doc
    mutant.__name__ = function
    return mutant


def _compile_mutant(module: ModuleType, original: Callable, old: str, new: str) -> Callable:
    import inspect
    import textwrap
    function = original.__name__
    source = textwrap.dedent(inspect.getsource(original))
    lines = source.splitlines()
    hits = [k for k, line in enumerate(lines) if line.strip() == old.strip()]
    if len(hits) != 1:
        raise ValueError(f"{module.__name__}.{function} has {len(hits)} lines {old.strip()!r}")
    k = hits[0]
    indent = lines[k][:len(lines[k]) - len(lines[k].lstrip())]
    lines[k] = indent + new.strip()
    namespace = dict(vars(module))
    exec(compile("\n".join(lines) + "\n", f"<mutant of {module.__name__}.{function}>", "exec"),
         namespace)
    return namespace[function]
