"""Shifts and rotates: SHL/SAL SHR SAR ROL ROR RCL RCR (by 1, by imm8, by CL)
and the double shifts SHLD SHRD (SDM vol. 2, "SAL/SAR/SHL/SHR", "RCL/RCR/ROL/
ROR", "SHLD", "SHRD").

Room: the forms, semantics and flags of this family. Imports :mod:`spec.bv`,
:mod:`spec.x86.flags`, :mod:`spec.x86.state`.

The count is masked to 5 bits, or 6 bits for a 64-bit operand. A masked count
of 0 changes no flag and leaves the destination's value as it was (a memory
destination is still read and written back, as Xen's emulator does with
``force_writeback`` for MMIO). For RCL and RCR of 8- and 16-bit operands the
rotation is by the masked count modulo 9 or 17.

Flags for a non-zero masked count ``c`` of a ``w``-bit operand:

===========  ===========================  ===================  ===============
instruction  CF                           OF                   SF ZF PF / AF
===========  ===========================  ===================  ===============
SHL          last bit shifted out         c = 1: MSB(r) ^ CF   from r / undef.
SHR          last bit shifted out         c = 1: MSB(dest)     from r / undef.
SAR          last bit shifted out         c = 1: 0             from r / undef.
ROL          LSB(r)                       c = 1: MSB(r) ^ CF   unaffected
ROR          MSB(r)                       c = 1: top two of r  unaffected
RCL          last bit rotated out         c = 1: MSB(r) ^ CF   unaffected
RCR          last bit rotated out         c = 1: MSB(dest)^CF  unaffected
SHLD/SHRD    last bit shifted out         c = 1: sign change   from r / undef.
===========  ===========================  ===================  ===============

OF is undefined when ``c > 1``; for SHL/SHR/SAR a CF of a count beyond the
operand size (8- and 16-bit operands) is undefined; SHLD/SHRD with ``c``
greater than the operand size leave result and flags undefined. The spec
then computes OF with the ``c = 1`` formula and CF as the bit that would
have been shifted out, and records the flags as undefined
(:meth:`spec.x86.state.Context.set_undefined`).
"""

from __future__ import annotations

from spec import bv
from spec.x86.flags import result_flags
from spec.x86.operands import Insn
from spec.x86.state import Context, Unhandleable

_SHIFT_FORMS = ("m,i", "r,i", "m,r", "r,r", "m", "r")
FORMS = {m: _SHIFT_FORMS for m in ("shl", "sal", "shr", "sar", "rol", "ror", "rcl", "rcr")}
FORMS.update(shld=("m,r,i", "r,r,i", "m,r,r", "r,r,r"), shrd=("m,r,i", "r,r,i", "m,r,r", "r,r,r"))
LOCKABLE: frozenset[str] = frozenset()
UNDEFINED = {m: ("AF", "OF") for m in ("shl", "sal", "shr", "sar", "shld", "shrd")}
UNDEFINED.update({m: ("OF",) for m in ("rol", "ror", "rcl", "rcr")})


def _count(ctx: Context, insn: Insn, operand_index: int) -> int:
    """The masked count: the operand if there is one, else 1."""
    width = 8 * insn.operands[0].size
    if len(insn.operands) > operand_index:
        raw = ctx.read(insn.operands[operand_index])
    else:
        raw = 1
    if bv.is_symbolic(raw):
        raise Unhandleable(f"{insn.mnemonic} with a symbolic count")
    return raw & (0x3F if width == 64 else 0x1F)


def _write_shifted(ctx: Context, dest, r: bv.Word, w: int, cf: bv.Bit, of: bv.Bit,
                   count: int) -> None:
    """The end every shift shares: the result, CF, SF ZF PF from the result,
    AF undefined, OF defined only for a count of 1."""
    ctx.write(dest, r)
    ctx.set_flags(CF=cf, **result_flags(r, w))
    ctx.set_undefined(AF=False)
    if count == 1:
        ctx.set_flags(OF=of)
    else:
        ctx.set_undefined(OF=of)


def shift(ctx: Context, insn: Insn) -> None:
    """SHL, SAL, SHR, SAR."""
    dest = insn.operands[0]
    w = 8 * dest.size
    a = ctx.read(dest)
    c = _count(ctx, insn, 1)
    op = "shl" if insn.mnemonic == "sal" else insn.mnemonic
    if c == 0:
        ctx.write(dest, a)
        return
    if op == "shl":
        r = bv.shl(a, c, w)
        cf = bv.bit(a, w - c) if c <= w else False
        of = bv.xor_(bv.msb(r, w), cf)
    elif op == "shr":
        r = bv.lshr(a, c, w)
        cf = bv.bit(a, c - 1) if c <= w else False
        of = bv.msb(a, w)
    else:
        r = bv.ashr(a, c, w)
        cf = bv.bit(a, c - 1) if c <= w else bv.msb(a, w)
        of = False
    _write_shifted(ctx, dest, r, w, cf, of, c)
    if c > w:
        ctx.undefined.add("CF")


def rotate(ctx: Context, insn: Insn) -> None:
    """ROL, ROR, RCL, RCR."""
    dest = insn.operands[0]
    w = 8 * dest.size
    a = ctx.read(dest)
    masked = _count(ctx, insn, 1)
    op = insn.mnemonic
    if masked == 0:
        ctx.write(dest, a)
        return
    cf_in = ctx.flag("CF")
    if op in ("rol", "ror"):
        c = masked % w
        left = c if op == "rol" else (w - c) % w
        r = bv.bor(bv.shl(a, left, w), bv.lshr(a, (w - left) % w if left else w, w), w)
        if op == "rol":
            cf = bv.bit(r, 0)
            of = bv.xor_(bv.msb(r, w), cf)
        else:
            cf = bv.msb(r, w)
            of = bv.xor_(bv.msb(r, w), bv.bit(r, w - 2))
    else:
        c = masked % (w + 1) if w < 32 else masked
        # rotate the (w+1)-bit value CF:dest
        wide = bv.concat(bv.from_bit(cf_in, 1), a, w, 1)
        left = c if op == "rcl" else (w + 1 - c) % (w + 1)
        rotated = bv.bor(bv.shl(wide, left, w + 1),
                         bv.lshr(wide, (w + 1 - left) % (w + 1) if left else w + 1, w + 1), w + 1)
        r = bv.extract(rotated, w - 1, 0)
        cf = bv.bit(rotated, w)
        of = bv.xor_(bv.msb(r, w), cf) if op == "rcl" else bv.xor_(bv.msb(a, w), cf_in)
    ctx.write(dest, r)
    ctx.set_flags(CF=cf)
    if masked == 1:
        ctx.set_flags(OF=of)
    else:
        ctx.set_undefined(OF=of)


def double_shift(ctx: Context, insn: Insn) -> None:
    """SHLD and SHRD: shift ``dest`` filling from ``src``."""
    dest, src = insn.operands[0], insn.operands[1]
    w = 8 * dest.size
    a, b = ctx.read(dest), ctx.read(src)
    c = _count(ctx, insn, 2)
    if c == 0:
        ctx.write(dest, a)
        return
    # shift the 2w-bit value dest:src (SHLD) or src:dest (SHRD)
    if insn.mnemonic == "shld":
        wide = bv.concat(a, b, w, w)
        shifted = bv.shl(wide, c, 2 * w)
        r = bv.extract(shifted, 2 * w - 1, w)
        cf = bv.bit(wide, 2 * w - c) if c <= 2 * w else False
    else:
        wide = bv.concat(b, a, w, w)
        shifted = bv.lshr(wide, c, 2 * w)
        r = bv.extract(shifted, w - 1, 0)
        cf = bv.bit(wide, c - 1)
    of = bv.xor_(bv.msb(r, w), bv.msb(a, w))
    _write_shifted(ctx, dest, r, w, cf, of, c)
    if c > w:
        ctx.undefined.update(("CF", "ZF", "SF", "PF", "result"))


SEMANTICS = {**{m: shift for m in ("shl", "sal", "shr", "sar")},
             **{m: rotate for m in ("rol", "ror", "rcl", "rcr")},
             "shld": double_shift, "shrd": double_shift}
