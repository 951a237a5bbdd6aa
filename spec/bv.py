"""The bit-vector domain the spec is written over.

Room: this module owns the handful of operations that the spec's semantic
functions use on machine words and truth values. It imports only ``z3``.

Every semantic function in ``spec/`` that a proof checks is written with
these operations, never with Python's ``if`` on a machine value. Called with
Python ints and bools, they compute concretely (the reference model running a
guest); called with Z3 bit-vectors and booleans, they build the formula that
``proofs/`` checks. One function, two readings: the proofs are about the code
that runs, not about a re-typed copy of it.

A concrete word is a non-negative ``int`` below ``2**width``; a symbolic word
is a ``z3.BitVecRef``. A concrete truth value is a ``bool``; a symbolic one a
``z3.BoolRef``. Mixed arguments are lifted to Z3.
"""

from __future__ import annotations

from typing import Union

import z3

Word = Union[int, z3.BitVecRef]
Bit = Union[bool, z3.BoolRef]


def is_symbolic(*values: object) -> bool:
    """True when any value is a Z3 expression."""
    return any(isinstance(v, z3.ExprRef) for v in values)


def _width_of(values: tuple) -> int:
    for v in values:
        if isinstance(v, z3.BitVecRef):
            return v.size()
    raise TypeError("no symbolic word among the arguments")


def _lift(v: object, width: int) -> object:
    if isinstance(v, bool):
        return z3.BoolVal(v)
    if isinstance(v, int):
        return z3.BitVecVal(v, width)
    return v


def ite(cond: Bit, then: object, other: object) -> object:
    """``then`` if ``cond`` holds, else ``other`` (if-then-else on values)."""
    if not is_symbolic(cond, then, other):
        return then if cond else other
    if isinstance(then, (bool, z3.BoolRef)) or isinstance(other, (bool, z3.BoolRef)):
        return z3.If(_lift(cond, 1), _lift(then, 1), _lift(other, 1))
    width = _width_of((then, other))
    return z3.If(_lift(cond, 1), _lift(then, width), _lift(other, width))


def eq(a: Word, b: Word) -> Bit:
    """Word equality."""
    if not is_symbolic(a, b):
        return a == b
    width = _width_of((a, b))
    return _lift(a, width) == _lift(b, width)


def ne(a: Word, b: Word) -> Bit:
    """Word inequality."""
    return not_(eq(a, b))


def ult(a: Word, b: Word) -> Bit:
    """Unsigned less-than."""
    if not is_symbolic(a, b):
        return a < b
    width = _width_of((a, b))
    return z3.ULT(_lift(a, width), _lift(b, width))


def and_(*bits: Bit) -> Bit:
    """Conjunction."""
    if not is_symbolic(*bits):
        return all(bits)
    return z3.And(*[_lift(b, 1) for b in bits])


def or_(*bits: Bit) -> Bit:
    """Disjunction."""
    if not is_symbolic(*bits):
        return any(bits)
    return z3.Or(*[_lift(b, 1) for b in bits])


def not_(bit: Bit) -> Bit:
    """Negation."""
    if not is_symbolic(bit):
        return not bit
    return z3.Not(bit)


def implies(a: Bit, b: Bit) -> Bit:
    """Implication."""
    return or_(not_(a), b)


def member(value: Word, options: tuple[int, ...]) -> Bit:
    """``value`` is one of ``options``."""
    return or_(*[eq(value, o) for o in options])


def concrete(value: object) -> object:
    """Return a concrete value, refusing a symbolic one.

    The running model calls this where it must branch on a value; a symbolic
    value reaching such a point is a modelling error, reported as such.
    """
    if is_symbolic(value):
        raise TypeError(f"symbolic value {value} where a concrete one is required")
    return value


def const(value: int, width: int, like: object = None) -> Word:
    """The constant ``value`` of ``width`` bits, in the domain of ``like``:
    a Z3 bit-vector when ``like`` is symbolic, else a Python int."""
    if is_symbolic(like):
        return z3.BitVecVal(value, width)
    return value & ((1 << width) - 1)
