"""Data movement: MOV (including the moffs and immediate forms), MOVZX,
MOVSX, MOVSXD, XCHG, CMOVcc, SETcc, PUSH m and POP m (SDM vol. 2).

Room: the forms and semantics of this family. Imports :mod:`spec.bv`,
:mod:`spec.x86.flags`, :mod:`spec.x86.state`. None of them changes a flag.

* **MOV** copies its source; ``mov r/m, imm32`` with a 64-bit operand
  sign-extends the immediate (the decoder has done so), and the ``A0``–``A3``
  *moffs* forms (``movabs`` in 64-bit mode) address memory by an absolute
  offset.
* **MOVZX/MOVSX/MOVSXD** read an 8-, 16- or 32-bit source and zero- or
  sign-extend it to the destination register's size.
* **XCHG** with a memory operand reads it, then writes the register's old
  value to it (one read, one write); it is locked whether or not LOCK is
  given.
* **CMOVcc** always reads its source, even when the condition is false;
  with a 32-bit operand in 64-bit mode the destination's upper half is
  cleared either way (SDM vol. 2, CMOVcc, "Operation").
* **SETcc** writes 1 or 0 to a byte.
* **PUSH m** reads the operand, decrements the stack pointer by the operand
  size and writes to ``SS:[rSP]``; **POP m** reads ``SS:[rSP]``, increments
  the stack pointer, and only then computes the destination's address, so
  a destination based on rSP sees the incremented value (SDM vol. 2, POP).
  The stack pointer is SP, ESP or RSP as the mode's stack size says.
"""

from __future__ import annotations

from spec import bv
from spec.x86.flags import CONDITIONS, condition
from spec.x86.operands import Insn
from spec.x86.state import Context

FORMS = {"mov": ("m,r", "r,m", "m,i", "r,r", "r,i"), "movabs": ("r,m", "m,r", "r,i"),
         "movzx": ("r,m", "r,r"), "movsx": ("r,m", "r,r"), "movsxd": ("r,m", "r,r"),
         "xchg": ("m,r", "r,m", "r,r"),
         **{f"cmov{cc}": ("r,m", "r,r") for cc in CONDITIONS},
         **{f"set{cc}": ("m", "r") for cc in CONDITIONS},
         "push": ("m",), "pop": ("m",)}
LOCKABLE = frozenset({"xchg"})
UNDEFINED: dict[str, tuple[str, ...]] = {}


def mov(ctx: Context, insn: Insn) -> None:
    dest, src = insn.operands
    ctx.write(dest, ctx.read(src))


def extend(ctx: Context, insn: Insn) -> None:
    """MOVZX, MOVSX, MOVSXD."""
    dest, src = insn.operands
    grow = bv.zext if insn.mnemonic == "movzx" else bv.sext
    ctx.write(dest, grow(ctx.read(src), 8 * src.size, 8 * dest.size))


def xchg(ctx: Context, insn: Insn) -> None:
    first, second = insn.operands
    a, b = ctx.read(first), ctx.read(second)
    ctx.write(first, b)
    ctx.write(second, a)


def _flags(ctx: Context) -> dict[str, bv.Bit]:
    return {name: ctx.flag(name) for name in ("CF", "ZF", "SF", "OF", "PF")}


def cmov(ctx: Context, insn: Insn) -> None:
    dest, src = insn.operands
    value = ctx.read(src)
    taken = condition(insn.mnemonic[4:], _flags(ctx))
    ctx.write(dest, bv.ite(taken, value, ctx.read(dest)))


def setcc(ctx: Context, insn: Insn) -> None:
    (dest,) = insn.operands
    ctx.write(dest, bv.from_bit(condition(insn.mnemonic[3:], _flags(ctx)), 8))


def _stack_width(mode: int) -> int:
    return {16: 16, 32: 32, 64: 64}[mode]


def push(ctx: Context, insn: Insn) -> None:
    (src,) = insn.operands
    value = ctx.read(src)
    width = _stack_width(insn.mode)
    sp = bv.sub(ctx.gpr("rsp", width // 8), src.size, width)
    ctx.store(ctx.linear("ss", bv.concrete(sp), src.size), src.size, value)
    ctx.set_gpr("rsp", width // 8, sp)


def pop(ctx: Context, insn: Insn) -> None:
    (dest,) = insn.operands
    width = _stack_width(insn.mode)
    sp = ctx.gpr("rsp", width // 8)
    value = ctx.load(ctx.linear("ss", bv.concrete(sp), dest.size), dest.size)
    ctx.set_gpr("rsp", width // 8, bv.add(sp, dest.size, width))
    ctx.write(dest, value)


SEMANTICS = {"mov": mov, "movabs": mov, "movzx": extend, "movsx": extend, "movsxd": extend,
             "xchg": xchg, **{f"cmov{cc}": cmov for cc in CONDITIONS},
             **{f"set{cc}": setcc for cc in CONDITIONS}, "push": push, "pop": pop}
