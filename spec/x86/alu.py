"""Integer arithmetic and logic: ADD ADC SUB SBB AND OR XOR CMP TEST, INC DEC
NEG NOT (SDM vol. 2, each instruction's "Operation" and "Flags Affected").

Room: the forms, semantics, flags and LOCK rules of this family. Imports
:mod:`spec.bv`, :mod:`spec.x86.flags`, :mod:`spec.x86.state`.

Two-operand forms: ``op r/m, r``, ``op r, r/m``, ``op r/m, imm`` (the
immediate sign-extended from 8 bits for the ``83`` opcodes, and from 32 bits
for 64-bit operands), and ``op AL/AX/EAX/RAX, imm``. The destination is read,
combined with the source, and written back, except for CMP and TEST, which
only set flags. With a memory destination that is a read-modify-write: one
read of the operand, then one write of the same address and size.

===========  =============================  ===================================
mnemonic     operation                      flags
===========  =============================  ===================================
add          dest + src                     OF SF ZF AF CF PF
adc          dest + src + CF                OF SF ZF AF CF PF
sub          dest - src                     OF SF ZF AF CF PF
sbb          dest - (src + CF)              OF SF ZF AF CF PF
cmp          dest - src, not written        OF SF ZF AF CF PF
and/or/xor   dest op src                    OF=CF=0; SF ZF PF; AF undefined
test         dest & src, not written        OF=CF=0; SF ZF PF; AF undefined
inc/dec      dest ± 1                       OF SF ZF AF PF; CF unchanged
neg          0 - dest                       CF = (dest != 0); OF SF ZF AF PF
not          ~dest                          none
===========  =============================  ===================================

LOCK is allowed with a memory destination on all of them but CMP and TEST;
anywhere else it raises #UD (SDM vol. 2, "LOCK—Assert LOCK# Signal Prefix").
"""

from __future__ import annotations

from spec import bv
from spec.x86 import flags
from spec.x86.operands import Insn
from spec.x86.state import Context

_TWO = ("m,r", "r,m", "m,i", "r,r", "r,i")
_ONE = ("m", "r")

FORMS = {"add": _TWO, "adc": _TWO, "sub": _TWO, "sbb": _TWO, "cmp": _TWO,
         "and": _TWO, "or": _TWO, "xor": _TWO, "test": ("m,r", "m,i", "r,r", "r,i"),
         "inc": _ONE, "dec": _ONE, "neg": _ONE, "not": _ONE}
LOCKABLE = frozenset(FORMS) - {"cmp", "test"}
UNDEFINED = {"and": ("AF",), "or": ("AF",), "xor": ("AF",), "test": ("AF",)}


def add(a: bv.Word, b: bv.Word, carry: bv.Bit, width: int) -> tuple[bv.Word, dict]:
    """``a + b + carry`` and its flags (ADD with carry = 0, ADC with CF)."""
    r = bv.add(bv.add(a, b, width), bv.from_bit(carry, width), width)
    return r, flags.add_flags(a, b, r, width)


def sub(a: bv.Word, b: bv.Word, borrow: bv.Bit, width: int) -> tuple[bv.Word, dict]:
    """``a - b - borrow`` and its flags (SUB and CMP with borrow = 0, SBB with CF)."""
    r = bv.sub(bv.sub(a, b, width), bv.from_bit(borrow, width), width)
    return r, flags.sub_flags(a, b, r, width)


def logic(op: str, a: bv.Word, b: bv.Word, width: int) -> tuple[bv.Word, dict]:
    """AND, OR, XOR (and TEST as AND)."""
    r = {"and": bv.band, "test": bv.band, "or": bv.bor, "xor": bv.bxor}[op](a, b, width)
    return r, flags.logic_flags(r, width)


def binary(ctx: Context, insn: Insn) -> None:
    """The two-operand members: read both, compute, write back, set flags."""
    dest, src = insn.operands
    width = 8 * dest.size
    a, b = ctx.read(dest), ctx.read(src)
    op = insn.mnemonic
    if op in ("add", "adc"):
        r, f = add(a, b, ctx.flag("CF") if op == "adc" else False, width)
    elif op in ("sub", "sbb", "cmp"):
        r, f = sub(a, b, ctx.flag("CF") if op == "sbb" else False, width)
    else:
        r, f = logic(op, a, b, width)
    if op not in ("cmp", "test"):
        ctx.write(dest, r)
    ctx.set_flags(**f)


def unary(ctx: Context, insn: Insn) -> None:
    """INC, DEC, NEG, NOT."""
    (dest,) = insn.operands
    width = 8 * dest.size
    a = ctx.read(dest)
    op = insn.mnemonic
    if op == "not":
        ctx.write(dest, bv.bnot(a, width))
        return
    if op == "neg":
        r, f = sub(0, a, False, width)
    else:
        r, f = (add if op == "inc" else sub)(a, 1, False, width)
        del f["CF"]                     # INC and DEC leave CF alone
    ctx.write(dest, r)
    ctx.set_flags(**f)


SEMANTICS = {**{m: binary for m in ("add", "adc", "sub", "sbb", "cmp", "and", "or", "xor",
                                     "test")},
             **{m: unary for m in ("inc", "dec", "neg", "not")}}
