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

import functools
from typing import Union

import z3

Word = Union[int, z3.BitVecRef]
Bit = Union[bool, z3.BoolRef]


def is_symbolic(*values: object) -> bool:
    """True when any value is a Z3 expression."""
    for v in values:
        if isinstance(v, z3.ExprRef):
            return True
    return False


def _width_of(values: tuple) -> int:
    for v in values:
        if isinstance(v, z3.BitVecRef):
            return v.size()
    raise TypeError("no symbolic word among the arguments")


def _lift(v: object, width: int) -> object:
    if isinstance(v, bool):
        return z3.BoolVal(v)
    if isinstance(v, int):
        return _bitvec_value(v, width)
    return v


@functools.lru_cache(maxsize=4096)
def _bitvec_value(value: int, width: int) -> z3.BitVecRef:
    """A Z3 constant; the proofs build the same few thousand of them again
    and again, and a Z3 term is immutable, so one of each is kept."""
    return z3.BitVecVal(value, width)


def ite(cond: Bit, then: object, other: object) -> object:
    """``then`` if ``cond`` holds, else ``other`` (if-then-else on values)."""
    if not is_symbolic(cond, then, other):
        return then if cond else other
    if isinstance(then, (bool, z3.BoolRef)) or isinstance(other, (bool, z3.BoolRef)):
        return z3.If(_lift(cond, 1), _lift(then, 1), _lift(other, 1))
    width = _width_of((then, other))
    return z3.If(_lift(cond, 1), _lift(then, width), _lift(other, width))


def select(cond: Bit, a: object, b: object) -> object:
    """:func:`ite` over values and records: ``a`` if ``cond`` holds, else
    ``b``, where a record (a tuple or NamedTuple, nested) is chosen field by
    field when ``cond`` is symbolic, and whole when it is concrete."""
    if not is_symbolic(cond):
        return a if cond else b
    if isinstance(a, tuple):
        fields = [select(cond, x, y) for x, y in zip(a, b)]
        return type(a)(*fields) if hasattr(a, "_fields") else tuple(fields)
    return ite(cond, a, b)


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


def xor_(a: Bit, b: Bit) -> Bit:
    """Exactly one of ``a`` and ``b`` holds."""
    if not is_symbolic(a, b):
        return bool(a) != bool(b)
    return z3.Xor(_lift(a, 1), _lift(b, 1))


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
        return _bitvec_value(value, width)
    return value & ((1 << width) - 1)


# --- machine words of a given width ------------------------------------------------
#
# The x86 semantics of :mod:`spec.x86` compute on words whose width is part of
# the instruction (8, 16, 32 or 64 bits). A concrete word carries no width of
# its own, so these operations take it as an argument; a symbolic word's width
# must agree with it. Results are always reduced to the width: arithmetic is
# modulo 2**width, as the hardware's.


def _sym(a: Word, width: int) -> z3.BitVecRef:
    if isinstance(a, z3.BitVecRef):
        if a.size() != width:
            raise TypeError(f"a {a.size()}-bit word where {width} bits are expected")
        return a
    return _bitvec_value(a, width)


def mask(width: int) -> int:
    """All ones in ``width`` bits."""
    return (1 << width) - 1


def add(a: Word, b: Word, width: int) -> Word:
    """``a + b`` modulo ``2**width``."""
    if not is_symbolic(a, b):
        return (a + b) & mask(width)
    return _sym(a, width) + _sym(b, width)


def sub(a: Word, b: Word, width: int) -> Word:
    """``a - b`` modulo ``2**width``."""
    if not is_symbolic(a, b):
        return (a - b) & mask(width)
    return _sym(a, width) - _sym(b, width)


def neg(a: Word, width: int) -> Word:
    """Two's complement negation."""
    return sub(0, a, width)


def band(a: Word, b: Word, width: int) -> Word:
    """Bitwise AND."""
    if not is_symbolic(a, b):
        return a & b & mask(width)
    return _sym(a, width) & _sym(b, width)


def bor(a: Word, b: Word, width: int) -> Word:
    """Bitwise OR."""
    if not is_symbolic(a, b):
        return (a | b) & mask(width)
    return _sym(a, width) | _sym(b, width)


def bxor(a: Word, b: Word, width: int) -> Word:
    """Bitwise exclusive OR."""
    if not is_symbolic(a, b):
        return (a ^ b) & mask(width)
    return _sym(a, width) ^ _sym(b, width)


def bnot(a: Word, width: int) -> Word:
    """Bitwise complement."""
    return bxor(a, mask(width), width)


def shl(a: Word, n: Word, width: int) -> Word:
    """``a`` shifted left by ``n`` (zero when ``n >= width``)."""
    if not is_symbolic(a, n):
        return (a << n) & mask(width) if n < width else 0
    return _sym(a, width) << _sym(n, width)


def lshr(a: Word, n: Word, width: int) -> Word:
    """``a`` shifted right by ``n``, filling with zeros."""
    if not is_symbolic(a, n):
        return a >> n if n < width else 0
    return z3.LShR(_sym(a, width), _sym(n, width))


def ashr(a: Word, n: Word, width: int) -> Word:
    """``a`` shifted right by ``n``, filling with its sign bit."""
    if not is_symbolic(a, n):
        return (to_signed(a, width) >> min(n, width)) & mask(width)
    return _sym(a, width) >> _sym(n, width)


def bit(a: Word, i: int) -> Bit:
    """Bit ``i`` of ``a``, as a truth value."""
    if not is_symbolic(a):
        return bool(a >> i & 1)
    return z3.Extract(i, i, a) == 1


def msb(a: Word, width: int) -> Bit:
    """The most significant (sign) bit of a ``width``-bit word."""
    return bit(a, width - 1)


def extract(a: Word, hi: int, lo: int) -> Word:
    """Bits ``hi`` down to ``lo`` of ``a``, as a word of ``hi - lo + 1`` bits."""
    if not is_symbolic(a):
        return a >> lo & mask(hi - lo + 1)
    return z3.Extract(hi, lo, a)


def zext(a: Word, width: int, to: int) -> Word:
    """Zero-extend a ``width``-bit word to ``to`` bits."""
    if not is_symbolic(a):
        return a & mask(width)
    return z3.ZeroExt(to - width, _sym(a, width)) if to > width else _sym(a, width)


def sext(a: Word, width: int, to: int) -> Word:
    """Sign-extend a ``width``-bit word to ``to`` bits."""
    if not is_symbolic(a):
        return to_signed(a, width) & mask(to)
    return z3.SignExt(to - width, _sym(a, width)) if to > width else _sym(a, width)


def trunc(a: Word, to: int) -> Word:
    """The low ``to`` bits of ``a``."""
    if not is_symbolic(a):
        return a & mask(to)
    return z3.Extract(to - 1, 0, a) if a.size() > to else a


def from_bit(b: Bit, width: int) -> Word:
    """A truth value as the word 1 or 0."""
    return ite(b, const(1, width, like=b), const(0, width, like=b))


def is_zero(a: Word, width: int) -> Bit:
    """``a == 0``."""
    return eq(a, const(0, width, like=a))


def parity_even(a: Word) -> Bit:
    """The low byte of ``a`` has an even number of one bits (x86's PF)."""
    if not is_symbolic(a):
        return bin(a & 0xFF).count("1") % 2 == 0
    ones = z3.Extract(0, 0, a)
    for i in range(1, 8):
        ones = ones ^ z3.Extract(i, i, a)
    return ones == 0


def to_signed(a: int, width: int) -> int:
    """A concrete word read as two's complement."""
    return a - (1 << width) if a >> (width - 1) & 1 else a


def slt(a: Word, b: Word, width: int) -> Bit:
    """Signed less-than."""
    if not is_symbolic(a, b):
        return to_signed(a, width) < to_signed(b, width)
    return _sym(a, width) < _sym(b, width)


def concat(hi: Word, lo: Word, lo_width: int, hi_width: int) -> Word:
    """``hi:lo``, a word of ``hi_width + lo_width`` bits."""
    if not is_symbolic(hi, lo):
        return (hi & mask(hi_width)) << lo_width | lo & mask(lo_width)
    return z3.Concat(_sym(hi, hi_width), _sym(lo, lo_width))
