"""Proofs that the emulator's read-modify-write arithmetic is the SDM's.

Room: for every RMW member of :mod:`spec.x86.alu` (ADD ADC SUB SBB AND OR
XOR INC DEC NEG NOT) and every operand width (8, 16, 32, 64), one Z3 check
that runs the spec's own emulator — :func:`spec.x86.emulate.emulate` on the
instruction's real bytes, ``op [rbx], <reg>`` in 64-bit mode — on symbolic
data: the memory operand's old value, the source register and the incoming
RFLAGS are all Z3 bit-vectors. Imports :mod:`spec.x86`, keystone (to
assemble the instruction) and :mod:`proofs.kinduction` (the outcome type).

What each check proves, for all operand values and incoming flags:

* the instruction makes exactly one read and then one write of memory, of
  the same address and the operand's size;
* the value written is the SDM's result, and every flag the SDM defines for
  the instruction is what the independent definition below gives; flags the
  SDM leaves undefined (AF after a logic operation) are the only ones not
  compared, and every other bit of RFLAGS is unchanged.

The independent definition is written here from the SDM's "Operation" and
"Flags Affected" sections in the plainest way, with *wide arithmetic*:
the sum or difference is computed one bit wider than the operand, so CF is
the extra bit; OF compares the result with the sign-extended sum computed
one bit wider; AF is the carry (or borrow) of the low nibbles computed on
their own. The spec computes the same flags with carry-chain identities
(:mod:`spec.x86.flags`), so the two are different pieces of code.

Mutants (each must give a counterexample with concrete operands):
``adc_ignores_carry`` (ADC adds no carry), ``af_from_wrong_bit`` (AF taken
from bit 3 instead of bit 4), ``rmw_writes_before_read`` (the destination is
written before it is read); and, for every check, ``result_bit_flipped``
(the emulator stores its result with bit 0 inverted), which shows that each
check really looks at the value written.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Callable
from unittest import mock

import z3

from proofs.kinduction import Outcome
from spec import bv
from spec.x86 import alu, flags
from spec.x86.emulate import emulate
from spec.x86.state import ARITH_FLAGS, FLAG_BITS, Context, Cpu

WIDTHS = (8, 16, 32, 64)
BINARY = ("add", "adc", "sub", "sbb", "and", "or", "xor")
UNARY = ("inc", "dec", "neg", "not")
ADDRESS = 0x1000
_SRC = {8: "cl", 16: "cx", 32: "ecx", 64: "rcx"}
_PTR = {8: "byte", 16: "word", 32: "dword", 64: "qword"}


def assemble(op: str, width: int) -> bytes:
    """The instruction's bytes: ``op <width> ptr [rbx], <rcx part>``, or the
    one-operand form."""
    from keystone import KS_ARCH_X86, KS_MODE_64, Ks
    text = f"{op} {_PTR[width]} ptr [rbx]" + (f", {_SRC[width]}" if op in BINARY else "")
    encoding, _ = Ks(KS_ARCH_X86, KS_MODE_64).asm(text, 0)
    return bytes(encoding)


class SymbolicMemory:
    """Memory whose reads return fresh Z3 values; accesses are recorded."""

    def __init__(self) -> None:
        self.log: list[tuple[str, int, int, object]] = []

    def read(self, addr: int, size: int) -> z3.BitVecRef:
        value = z3.BitVec(f"mem_{len(self.log)}", 8 * size)
        self.log.append(("read", addr, size, value))
        return value

    def write(self, addr: int, size: int, value) -> None:
        self.log.append(("write", addr, size, value))


# --- the SDM's definition, by wide arithmetic --------------------------------------

def _parity_even(r: z3.BitVecRef) -> z3.BoolRef:
    ones = z3.Sum([z3.ZeroExt(7, z3.Extract(i, i, r)) for i in range(8)])
    return z3.Extract(0, 0, ones) == 0


def sdm(op: str, a: z3.BitVecRef, b: z3.BitVecRef | None, cf: z3.BoolRef,
        width: int) -> tuple[z3.BitVecRef, dict[str, z3.BoolRef]]:
    """The result and defined flags of ``op`` on ``a`` (the destination) and
    ``b`` (the source), with incoming carry ``cf``."""
    w = width
    one_bit = z3.If(cf, z3.BitVecVal(1, w + 1), z3.BitVecVal(0, w + 1))
    carry = one_bit if op in ("adc", "sbb") else z3.BitVecVal(0, w + 1)
    nib = lambda x: z3.ZeroExt(1, z3.Extract(3, 0, x))           # noqa: E731
    nib_carry = z3.Extract(4, 0, carry)
    if op in ("add", "adc", "inc"):
        b = z3.BitVecVal(1, w) if op == "inc" else b
        carry = z3.BitVecVal(0, w + 1) if op == "inc" else carry
        nib_carry = z3.Extract(4, 0, carry)
        wide = z3.ZeroExt(1, a) + z3.ZeroExt(1, b) + carry
        r = z3.Extract(w - 1, 0, wide)
        signed = z3.SignExt(1, a) + z3.SignExt(1, b) + carry
        f = {"CF": z3.Extract(w, w, wide) == 1, "OF": signed != z3.SignExt(1, r),
             "AF": z3.UGE(nib(a) + nib(b) + nib_carry, 16)}
    elif op in ("sub", "sbb", "dec", "neg"):
        if op == "neg":
            a, b = z3.BitVecVal(0, w), a
        b = z3.BitVecVal(1, w) if op == "dec" else b
        carry = z3.BitVecVal(0, w + 1) if op in ("dec", "neg") else carry
        nib_carry = z3.Extract(4, 0, carry)
        wide = z3.ZeroExt(1, a) - z3.ZeroExt(1, b) - carry
        r = z3.Extract(w - 1, 0, wide)
        signed = z3.SignExt(1, a) - z3.SignExt(1, b) - carry
        f = {"CF": z3.ULT(z3.ZeroExt(1, a), z3.ZeroExt(1, b) + carry),
             "OF": signed != z3.SignExt(1, r),
             "AF": z3.ULT(nib(a), nib(b) + nib_carry)}
    elif op == "not":
        return ~a, {}
    else:
        r = {"and": a & b, "or": a | b, "xor": a ^ b}[op]
        f = {"CF": z3.BoolVal(False), "OF": z3.BoolVal(False)}
    if op in ("inc", "dec"):
        del f["CF"]                                   # CF is not affected
    f.update(ZF=r == 0, SF=z3.Extract(w - 1, w - 1, r) == 1, PF=_parity_even(r))
    return r, f


# --- one check ----------------------------------------------------------------------

def prove(op: str, width: int, timeout_ms: int = 60_000) -> Outcome:
    """Run the spec's emulator on symbolic data and compare with :func:`sdm`."""
    started = time.perf_counter()
    code = assemble(op, width)
    cpu = Cpu(64)
    cpu.regs["rbx"] = ADDRESS
    src = z3.BitVec("rcx", 64)
    cpu.regs["rcx"] = src
    rflags_in = z3.BitVec("rflags", 64)
    cpu.rflags = rflags_in
    memory = SymbolicMemory()
    emulate(cpu, memory, code)
    log = memory.log
    n = width // 8
    shape = [(kind, addr, size) for kind, addr, size, _ in log]
    if shape != [("read", ADDRESS, n), ("write", ADDRESS, n)]:
        return Outcome("counterexample", time.perf_counter() - started,
                       [f"{op} {_PTR[width]} [rbx] made the accesses {shape}; expected one "
                        f"read then one write of {n} bytes at {ADDRESS:#x}"])
    old, written = log[0][3], log[1][3]
    cf_in = z3.Extract(0, 0, rflags_in) == 1
    expected, defined = sdm(op, old, z3.Extract(width - 1, 0, src), cf_in, width)
    claims = [("result", written == expected)]
    undefined = set(alu.UNDEFINED.get(op, ()))
    for name in ARITH_FLAGS:
        got = z3.Extract(FLAG_BITS[name], FLAG_BITS[name], cpu.rflags) == 1
        if name in defined:
            claims.append((name, got == defined[name]))
        elif name not in undefined:
            before = z3.Extract(FLAG_BITS[name], FLAG_BITS[name], rflags_in) == 1
            claims.append((f"{name} unchanged", got == before))
    others = ~z3.BitVecVal(sum(1 << FLAG_BITS[f] for f in ARITH_FLAGS), 64)
    claims.append(("other RFLAGS bits unchanged", cpu.rflags & others == rflags_in & others))
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.add(z3.Not(z3.And([c for _, c in claims])))
    answer = solver.check()
    seconds = time.perf_counter() - started
    if answer == z3.unsat:
        return Outcome("proved", seconds)
    if answer == z3.unknown:
        return Outcome("unknown", seconds, detail=solver.reason_unknown())
    model = solver.model()
    value = lambda e: model.eval(e, model_completion=True)     # noqa: E731
    lines = [f"{op} {_PTR[width]} ptr [rbx], with [rbx] = {value(old).as_long():#x}"
             + (f", {_SRC[width]} = {value(z3.Extract(width - 1, 0, src)).as_long():#x}"
                if op in BINARY else "")
             + f", CF in = {int(z3.is_true(value(cf_in)))}",
             f"spec wrote {value(written).as_long():#x}, the SDM gives "
             f"{value(expected).as_long():#x}"]
    for name, claim in claims[1:]:
        if z3.is_false(value(claim)):
            lines.append(f"{name} differs from the SDM")
    return Outcome("counterexample", seconds, lines)


# --- mutants ------------------------------------------------------------------------------

def _adc_ignores_carry(a, b, carry, width):
    return _REAL_ADD(a, b, False, width)


def _af_from_wrong_bit(a, b, r, width):
    out = _REAL_ADD_FLAGS(a, b, r, width)
    out["AF"] = bv.bit(bv.bxor(bv.bxor(a, b, width), r, width), 3)
    return out


def _rmw_writes_before_read(ctx, insn):
    dest, src = insn.operands
    ctx.write(dest, ctx.read(src))
    _REAL_BINARY(ctx, insn)


_REAL_ADD, _REAL_ADD_FLAGS, _REAL_BINARY = alu.add, flags.add_flags, alu.binary


def _store_bit_flipped(self, addr, size, value):
    _REAL_STORE(self, addr, size, bv.bxor(value, 1, 8 * size))


_REAL_STORE = Context.store


def _patches(mutant: str) -> list:
    """The replacements a mutant puts in place of the spec's functions."""
    from spec.x86 import decode
    if mutant == "result_bit_flipped":
        return [mock.patch.object(Context, "store", _store_bit_flipped)]
    if mutant == "adc_ignores_carry":
        return [mock.patch.object(alu, "add", _adc_ignores_carry)]
    if mutant == "af_from_wrong_bit":
        return [mock.patch.object(flags, "add_flags", _af_from_wrong_bit)]
    if mutant == "rmw_writes_before_read":
        return [mock.patch.dict(decode.SEMANTICS, {m: _rmw_writes_before_read for m in BINARY})]
    raise KeyError(mutant)


#: (mutant name, the check it must break, the spec function it replaces)
MUTANTS = [
    ("adc_ignores_carry", ("adc", 32), "spec.x86.alu.add"),
    ("af_from_wrong_bit", ("add", 8), "spec.x86.flags.add_flags"),
    ("rmw_writes_before_read", ("sub", 32), "spec.x86.alu.binary"),
] + [("result_bit_flipped", (op, width), "spec.x86.state.Context.store")
     for op in BINARY + UNARY for width in WIDTHS]


def run(op: str, width: int, mutant: str | None = None) -> Outcome:
    """One check, optionally with a mutant's replacements in place."""
    with ExitStack() as stack:
        for patch in _patches(mutant) if mutant else []:
            stack.enter_context(patch)
        return prove(op, width)


def checks() -> list[tuple[str, str, Callable[[], Outcome]]]:
    """(name, kind, run) for every check and mutant."""
    out = [(f"x86.alu.{op}/{width}", "invariant", lambda o=op, w=width: run(o, w))
           for op in BINARY + UNARY for width in WIDTHS]
    out += [(f"x86.alu.{op}/{width}/mutant:{name}", "mutant",
             lambda o=op, w=width, n=name: run(o, w, n)) for name, (op, width), _ in MUTANTS]
    return out
