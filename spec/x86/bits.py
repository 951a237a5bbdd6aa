"""Bit tests: BT BTS BTR BTC, with an immediate or a register bit offset
(SDM vol. 2, "BT", "BTS", "BTR", "BTC"; vol. 1, 3.4.1 "Bit Field Addressing").

Room: the forms and semantics of this family. Imports :mod:`spec.bv`,
:mod:`spec.x86.state`.

The selected bit goes to CF; BTS then sets it, BTR clears it, BTC
complements it (BT only reads). ZF is unaffected; OF, SF, AF and PF are
undefined (the spec leaves them as they were and records them undefined).

* **Immediate offset**: taken modulo the operand size in bits; the operand
  is the one addressed.
* **Register offset, register operand**: modulo the operand size.
* **Register offset, memory operand**: the offset is a *signed* integer of
  the operand size and may address memory far beyond the operand: the
  operand actually accessed is the one at effective address ``EA + (offset
  >> log2(w)) * (w / 8)`` (an arithmetic shift, so negative offsets reach
  below), computed modulo 2**address-size as every effective address is
  (so it wraps at 64 KiB with 16-bit addressing, at 4 GiB with 32-bit), and
  then checked and made linear as the operand's own address would be
  (segment limit, canonical form); the bit is ``offset mod w``.
"""

from __future__ import annotations


from spec import bv
from spec.x86.operands import Insn, Mem, Reg
from spec.x86.state import Context

FORMS = {m: ("m,r", "m,i", "r,r", "r,i") for m in ("bt", "bts", "btr", "btc")}
LOCKABLE = frozenset({"bts", "btr", "btc"})
UNDEFINED = {m: ("OF", "SF", "AF", "PF") for m in FORMS}


def bit_test(ctx: Context, insn: Insn) -> None:
    dest, offset_op = insn.operands
    w = 8 * dest.size
    offset = bv.concrete(ctx.read(offset_op))
    if isinstance(dest, Mem) and isinstance(offset_op, Reg):
        signed = bv.to_signed(offset, w)
        address = ctx.address(dest, (signed >> (w.bit_length() - 1)) * dest.size)
        bit = signed % w
        value = ctx.load(address, dest.size)
        write = lambda v: ctx.store(address, dest.size, v)       # noqa: E731
    else:
        bit = offset % w
        value = ctx.read(dest)
        write = lambda v: ctx.write(dest, v)                       # noqa: E731
    selected = bv.bit(value, bit)
    op = insn.mnemonic
    if op != "bt":
        one = 1 << bit
        new = {"bts": bv.bor(value, one, w),
               "btr": bv.band(value, bv.mask(w) ^ one, w),
               "btc": bv.bxor(value, one, w)}[op]
        write(new)
    ctx.set_flags(CF=selected)
    ctx.undefined.update(UNDEFINED[op])


SEMANTICS = {m: bit_test for m in FORMS}
