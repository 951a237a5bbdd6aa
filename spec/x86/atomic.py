"""Compare-and-exchange and exchange-and-add: CMPXCHG, CMPXCHG8B,
CMPXCHG16B, XADD (SDM vol. 2, each instruction).

Room: the forms, semantics and flags of this family. Imports :mod:`spec.bv`,
:mod:`spec.x86.alu` (the comparison and the addition are SUB's and ADD's),
:mod:`spec.x86.state`.

* **CMPXCHG r/m, r**: compare the accumulator (AL/AX/EAX/RAX) with the
  destination, setting the flags as ``CMP accumulator, dest`` does. Equal:
  the destination receives the source. Not equal: the accumulator receives
  the destination, and the destination is written back with its own value
  (the processor always makes the write cycle).
* **CMPXCHG8B m64 / CMPXCHG16B m128**: compare EDX:EAX (RDX:RAX) with the
  operand. Equal: ZF = 1 and the operand receives ECX:EBX (RCX:RBX). Not
  equal: ZF = 0, EDX:EAX (RDX:RAX) receive the operand, and the operand is
  written back unchanged. No other flag changes. CMPXCHG16B requires a
  16-byte aligned operand (#GP(0) otherwise) and exists only in 64-bit mode.
* **XADD r/m, r**: ``temp = dest + src; src = dest; dest = temp``, flags as
  ADD.

In 64-bit mode a 32-bit accumulator (or EDX:EAX) is written, and so
zero-extended, only when the comparison fails; when it succeeds the
registers are left entirely alone.
"""

from __future__ import annotations

from spec import bv
from spec.x86 import alu
from spec.x86.operands import Insn, Reg
from spec.x86.state import GP, Context, Fault

FORMS = {"cmpxchg": ("m,r", "r,r"), "cmpxchg8b": ("m",), "cmpxchg16b": ("m",),
         "xadd": ("m,r", "r,r")}
LOCKABLE = frozenset(FORMS)
UNDEFINED: dict[str, tuple[str, ...]] = {}


def _write_unless(ctx: Context, equal: bv.Bit, reg: Reg, value: bv.Word) -> None:
    """Write ``value`` to ``reg`` only if the comparison failed."""
    before = ctx.cpu.regs[reg.name]
    ctx.set_reg(reg, value)
    ctx.cpu.regs[reg.name] = bv.ite(equal, before, ctx.cpu.regs[reg.name])


def cmpxchg(ctx: Context, insn: Insn) -> None:
    dest, src = insn.operands
    w = 8 * dest.size
    acc = Reg("rax", dest.size)
    old = ctx.read(dest)
    expected = ctx.reg(acc)
    _, flags = alu.sub(expected, old, False, w)
    equal = flags["ZF"]
    ctx.write(dest, bv.ite(equal, ctx.read(src), old))
    _write_unless(ctx, equal, acc, old)
    ctx.set_flags(**flags)


def cmpxchg_double(ctx: Context, insn: Insn) -> None:
    (dest,) = insn.operands
    half = dest.size // 2
    address = ctx.address(dest)
    if dest.size == 16 and address % 16:
        raise Fault(GP, f"cmpxchg16b operand at {address:#x} is not 16-byte aligned",
                    error_code=0)
    old = ctx.load(address, dest.size)
    expected = bv.concat(ctx.gpr("rdx", half), ctx.gpr("rax", half), 8 * half, 8 * half)
    equal = bv.eq(old, expected)
    replacement = bv.concat(ctx.gpr("rcx", half), ctx.gpr("rbx", half), 8 * half, 8 * half)
    ctx.store(address, dest.size, bv.ite(equal, replacement, old))
    _write_unless(ctx, equal, Reg("rax", half), bv.extract(old, 8 * half - 1, 0))
    _write_unless(ctx, equal, Reg("rdx", half), bv.extract(old, 16 * half - 1, 8 * half))
    ctx.set_flags(ZF=equal)


def xadd(ctx: Context, insn: Insn) -> None:
    dest, src = insn.operands
    w = 8 * dest.size
    a, b = ctx.read(dest), ctx.read(src)
    total, flags = alu.add(a, b, False, w)
    ctx.write(src, a)
    ctx.write(dest, total)
    ctx.set_flags(**flags)


SEMANTICS = {"cmpxchg": cmpxchg, "cmpxchg8b": cmpxchg_double, "cmpxchg16b": cmpxchg_double,
             "xadd": xadd}
