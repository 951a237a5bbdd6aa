"""The mutants of :mod:`proofs.x86_rmw`: plausible one-line bugs in the
emulator and the MMIO layer, each of which must give a counterexample.

Room: each mutant is a copy of one spec function (or a wrapper around it)
with one thing wrong; :data:`BREAKS` gives every check of
:mod:`proofs.x86_rmw` one mutant of its own mnemonic, :data:`REPLACES`
names the spec function each replaces, and :func:`patches` puts it in
place of the function the VMM runs. Imports :mod:`proofs.x86_rmw` (the
checks), :mod:`spec.x86` and :mod:`spec.mmio`.

The families' semantic bugs (swapped operands, a lost or inverted carry, a
flag from the wrong bit or left as it was, a shift's or rotate's carry from
the wrong end, a logical shift for an arithmetic one, a double shift filled
from the wrong end, a bit offset read unsigned, a complement that sets,
exchanges that swap, skip their write or compare the wrong registers) and
the layer's (a write before the read, an operand that straddles a page sent
as one ioreq, a read that the retried attempt sends again instead of
replaying).
"""

from __future__ import annotations

from unittest import mock

from proofs.x86_rmw import CHECKS, MODES
from spec import bv, ioreq, mmio
from spec.x86 import alu, atomic, bits, decode, flags, mov, shift
from spec.x86.operands import Mem, Reg
from spec.x86.state import Context

_REAL = {"add": alu.add, "binary": alu.binary, "unary": alu.unary,
         "add_flags": flags.add_flags, "sub_flags": flags.sub_flags,
         "shift": shift.shift, "rotate": shift.rotate, "double_shift": shift.double_shift,
         "bit_test": bits.bit_test, "xadd": atomic.xadd, "cmpxchg": atomic.cmpxchg,
         "xchg": mov.xchg, "cmpxchg_double": atomic.cmpxchg_double,
         "device": mmio.GuestMemory._device}


def cmp_reversed(ctx, insn):
    """CMP computes ``src - dest`` (the operands swapped); the other members
    are as the spec has them."""
    if insn.mnemonic != "cmp":
        return _REAL["binary"](ctx, insn)
    dest, src = insn.operands
    a, b = ctx.read(dest), ctx.read(src)
    _, f = alu.sub(b, a, False, 8 * dest.size)
    ctx.set_flags(**f)


def adc_ignores_carry(a, b, carry, width):
    """ADC adds no carry (``alu.add`` drops its carry in)."""
    return _REAL["add"](a, b, False, width)


def sbb_borrow_inverted(ctx, insn):
    """SBB subtracts the complement of CF."""
    if insn.mnemonic != "sbb":
        return _REAL["binary"](ctx, insn)
    dest, src = insn.operands
    a, b = ctx.read(dest), ctx.read(src)
    r, f = alu.sub(a, b, bv.not_(ctx.flag("CF")), 8 * dest.size)
    ctx.write(dest, r)
    ctx.set_flags(**f)


def of_from_wrong_bit(a, b, r, width):
    """A subtraction's OF is taken from the bit below the sign bit."""
    out = _REAL["sub_flags"](a, b, r, width)
    overflow = bv.band(bv.bxor(a, b, width), bv.bxor(a, r, width), width)
    out["OF"] = bv.bit(overflow, width - 2)
    return out


def af_from_wrong_bit(a, b, r, width):
    """An addition's AF is taken from bit 3 instead of bit 4."""
    out = _REAL["add_flags"](a, b, r, width)
    out["AF"] = bv.bit(bv.bxor(bv.bxor(a, b, width), r, width), 3)
    return out


def shift_cf_wrong_end(ctx, insn):
    """SHL's and SHR's CF is the bit the other would shift out (the wrong
    end of the operand)."""
    if insn.mnemonic not in ("shl", "shr"):
        return _REAL["shift"](ctx, insn)
    dest = insn.operands[0]
    w = 8 * dest.size
    a = ctx.read(dest)
    c = shift._count(ctx, insn, 1)
    if c == 0:
        ctx.write(dest, a)
        return
    if insn.mnemonic == "shl":
        r = bv.shl(a, c, w)
        cf = bv.bit(a, c - 1) if c <= w else False
        of = bv.xor_(bv.msb(r, w), cf)
    else:
        r = bv.lshr(a, c, w)
        cf = bv.bit(a, w - c) if c <= w else False
        of = bv.msb(a, w)
    shift._write_shifted(ctx, dest, r, w, cf, of, c)


def sar_logical(ctx, insn):
    """SAR fills with zeros, as SHR does."""
    if insn.mnemonic != "sar":
        return _REAL["shift"](ctx, insn)
    dest = insn.operands[0]
    w = 8 * dest.size
    a = ctx.read(dest)
    c = shift._count(ctx, insn, 1)
    if c == 0:
        ctx.write(dest, a)
        return
    r = bv.lshr(a, c, w)
    cf = bv.bit(a, c - 1) if c <= w else bv.msb(a, w)
    shift._write_shifted(ctx, dest, r, w, cf, False, c)


def _rotate_through_zero(ctx, insn):
    cf_in = ctx.flag("CF")
    ctx.set_flags(CF=False)
    _REAL["rotate"](ctx, insn)
    if shift._count(ctx, insn, 1) == 0:         # a count of 0 changes no flag
        ctx.set_flags(CF=cf_in)


def rcl_ignores_carry(ctx, insn):
    """RCL rotates through a carry of 0 instead of the incoming CF."""
    if insn.mnemonic != "rcl":
        return _REAL["rotate"](ctx, insn)
    _rotate_through_zero(ctx, insn)


def rcr_ignores_carry(ctx, insn):
    """RCR rotates through a carry of 0 instead of the incoming CF."""
    if insn.mnemonic != "rcr":
        return _REAL["rotate"](ctx, insn)
    _rotate_through_zero(ctx, insn)


def rotate_cf_wrong_end(ctx, insn):
    """ROL's CF is the result's top bit and ROR's its bottom bit (each the
    other's)."""
    if insn.mnemonic not in ("rol", "ror"):
        return _REAL["rotate"](ctx, insn)
    dest = insn.operands[0]
    w = 8 * dest.size
    a = ctx.read(dest)
    masked = shift._count(ctx, insn, 1)
    if masked == 0:
        ctx.write(dest, a)
        return
    c = masked % w
    left = c if insn.mnemonic == "rol" else (w - c) % w
    r = bv.bor(bv.shl(a, left, w), bv.lshr(a, (w - left) % w if left else w, w), w)
    cf = bv.msb(r, w) if insn.mnemonic == "rol" else bv.bit(r, 0)
    of = bv.xor_(bv.msb(r, w), cf) if insn.mnemonic == "rol" else \
        bv.xor_(bv.msb(r, w), bv.bit(r, w - 2))
    ctx.write(dest, r)
    ctx.set_flags(CF=cf)
    if masked == 1:
        ctx.set_flags(OF=of)
    else:
        ctx.set_undefined(OF=of)


def shld_fills_from_low_end(ctx, insn):
    """SHLD fills the vacated bits from the low end of the source."""
    if insn.mnemonic != "shld":
        return _REAL["double_shift"](ctx, insn)
    dest, src = insn.operands[0], insn.operands[1]
    w = 8 * dest.size
    a, b = ctx.read(dest), ctx.read(src)
    c = shift._count(ctx, insn, 2)
    if c == 0:
        ctx.write(dest, a)
        return
    r = bv.bor(bv.shl(a, c, w), bv.band(b, bv.mask(c) if c < w else bv.mask(w), w), w)
    cf = bv.bit(bv.concat(a, b, w, w), 2 * w - c) if c <= 2 * w else False
    of = bv.xor_(bv.msb(r, w), bv.msb(a, w))
    shift._write_shifted(ctx, dest, r, w, cf, of, c)
    if c > w:
        ctx.undefined.update(("CF", "ZF", "SF", "PF", "result"))


def shrd_fills_from_high_end(ctx, insn):
    """SHRD fills the vacated bits from the high end of the source, shifted
    as SHLD's would be."""
    if insn.mnemonic != "shrd":
        return _REAL["double_shift"](ctx, insn)
    dest, src = insn.operands[0], insn.operands[1]
    w = 8 * dest.size
    a, b = ctx.read(dest), ctx.read(src)
    c = shift._count(ctx, insn, 2)
    if c == 0:
        ctx.write(dest, a)
        return
    r = bv.bor(bv.lshr(a, c, w), bv.shl(bv.lshr(b, w - c, w), w - c, w), w) if c < w else b
    cf = bv.bit(bv.concat(b, a, w, w), c - 1)
    of = bv.xor_(bv.msb(r, w), bv.msb(a, w))
    shift._write_shifted(ctx, dest, r, w, cf, of, c)
    if c > w:
        ctx.undefined.update(("CF", "ZF", "SF", "PF", "result"))


def bt_offset_unsigned(ctx, insn):
    """A register bit offset into memory is read as unsigned: a negative
    offset reaches far above the operand instead of below it."""
    dest, offset_op = insn.operands
    if not (isinstance(dest, Mem) and isinstance(offset_op, Reg)):
        return _REAL["bit_test"](ctx, insn)
    w = 8 * dest.size
    offset = bv.concrete(ctx.read(offset_op))
    address = ctx.address(dest) + (offset >> (w.bit_length() - 1)) * dest.size
    value = ctx.load(address, dest.size)
    ctx.set_flags(CF=bv.bit(value, offset % w))
    if insn.mnemonic != "bt":
        one = 1 << offset % w
        new = {"bts": bv.bor(value, one, w), "btr": bv.band(value, bv.mask(w) ^ one, w),
               "btc": bv.bxor(value, one, w)}[insn.mnemonic]
        ctx.store(address, dest.size, new)
    ctx.undefined.update(bits.UNDEFINED[insn.mnemonic])


def btc_sets(ctx, insn):
    """BTC sets the bit (as BTS) instead of complementing it."""
    if insn.mnemonic == "btc":
        insn = _renamed(insn, "bts")
    return _REAL["bit_test"](ctx, insn)


def xadd_swaps(ctx, insn):
    """XADD writes the sum to the register and the old value to memory."""
    dest, src = insn.operands
    w = 8 * dest.size
    a, b = ctx.read(dest), ctx.read(src)
    total, f = alu.add(a, b, False, w)
    ctx.write(src, total)
    ctx.write(dest, a)
    ctx.set_flags(**f)


def cmpxchg_zf_inverted(ctx, insn):
    """CMPXCHG exchanges correctly but reports ZF inverted."""
    _REAL["cmpxchg"](ctx, insn)
    ctx.set_flags(ZF=bv.not_(ctx.flag("ZF")))


def cmpxchg_always_stores(ctx, insn):
    """CMPXCHG stores the source whether or not the comparison succeeded."""
    dest, src = insn.operands
    w = 8 * dest.size
    acc = Reg("rax", dest.size)
    old = ctx.read(dest)
    _, f = alu.sub(ctx.reg(acc), old, False, w)
    ctx.write(dest, ctx.read(src))
    atomic._write_unless(ctx, f["ZF"], acc, old)
    ctx.set_flags(**f)


def cmpxchg8b_compares_replacement(ctx, insn):
    """CMPXCHG8B/16B compares the operand with ECX:EBX (RCX:RBX), the
    replacement, instead of EDX:EAX (RDX:RAX)."""
    (dest,) = insn.operands
    half = dest.size // 2
    address = ctx.address(dest)
    old = ctx.load(address, dest.size)
    replacement = bv.concat(ctx.gpr("rcx", half), ctx.gpr("rbx", half), 8 * half, 8 * half)
    equal = bv.eq(old, replacement)
    ctx.store(address, dest.size, bv.ite(equal, replacement, old))
    atomic._write_unless(ctx, equal, Reg("rax", half), bv.extract(old, 8 * half - 1, 0))
    atomic._write_unless(ctx, equal, Reg("rdx", half), bv.extract(old, 16 * half - 1, 8 * half))
    ctx.set_flags(ZF=equal)


def xchg_no_write(ctx, insn):
    """XCHG with memory loads the register but never writes memory back."""
    first, second = insn.operands
    a, b = ctx.read(first), ctx.read(second)
    if isinstance(first, Reg):
        ctx.write(first, b)
    if isinstance(second, Reg):
        ctx.write(second, a)


def neg_cf_wrong(ctx, insn):
    """NEG sets CF when the operand is zero (the SDM: when it is not)."""
    _REAL["unary"](ctx, insn)
    if insn.mnemonic == "neg":
        ctx.set_flags(CF=bv.not_(ctx.flag("CF")))


def inc_touches_cf(ctx, insn):
    """INC sets CF from the addition (the SDM: INC leaves CF alone)."""
    if insn.mnemonic != "inc":
        return _REAL["unary"](ctx, insn)
    (dest,) = insn.operands
    r, f = alu.add(ctx.read(dest), 1, False, 8 * dest.size)
    ctx.write(dest, r)
    ctx.set_flags(**f)


def dec_touches_cf(ctx, insn):
    """DEC sets CF from the subtraction (the SDM: DEC leaves CF alone)."""
    if insn.mnemonic != "dec":
        return _REAL["unary"](ctx, insn)
    (dest,) = insn.operands
    r, f = alu.sub(ctx.read(dest), 1, False, 8 * dest.size)
    ctx.write(dest, r)
    ctx.set_flags(**f)


def not_negates(ctx, insn):
    """NOT computes the two's complement (NEG's value) and leaves the flags."""
    if insn.mnemonic != "not":
        return _REAL["unary"](ctx, insn)
    (dest,) = insn.operands
    ctx.write(dest, bv.neg(ctx.read(dest), 8 * dest.size))


def logic_keeps_of(ctx, insn):
    """AND, OR, XOR and TEST leave OF as it was instead of clearing it."""
    if insn.mnemonic not in ("and", "or", "xor", "test"):
        return _REAL["binary"](ctx, insn)
    of = ctx.flag("OF")
    _REAL["binary"](ctx, insn)
    ctx.set_flags(OF=of)


def rmw_writes_before_read(ctx, insn):
    """A read-modify-write writes the destination (with the source) before
    it reads it."""
    dest, src = insn.operands
    if isinstance(dest, Mem):
        ctx.write(dest, ctx.read(src))
    _REAL["binary"](ctx, insn)


def straddle_not_split(self, addr, size):
    """An access that crosses a page boundary goes as one piece (one ioreq)."""
    return [(addr, size)]


def read_not_replayed(self, direction, addr, size, count=1, ptr=None, df=False, data=0):
    """The retried attempt sends a completed read again instead of replaying
    it from the cache."""
    if direction == ioreq.IOREQ_READ and not self.probe:
        self.replayed = len(self.emulation.done)
    return _REAL["device"](self, direction, addr, size, count, ptr, df, data)


def _renamed(insn, mnemonic):
    from dataclasses import replace
    return replace(insn, mnemonic=mnemonic)


def _semantics(function, *mnemonics):
    return mock.patch.dict(decode.SEMANTICS, {m: function for m in mnemonics})


#: the mutants that break each mnemonic's semantics; the check of the
#: mnemonic in the i-th mode runs the (i mod n)-th of its n mutants
BREAKS = {
    "add": ("af_from_wrong_bit", "rmw_writes_before_read"), "adc": ("adc_ignores_carry",),
    "sub": ("of_from_wrong_bit",), "sbb": ("sbb_borrow_inverted",), "cmp": ("cmp_reversed",),
    "and": ("logic_keeps_of",), "or": ("logic_keeps_of", "straddle_not_split"),
    "xor": ("logic_keeps_of", "read_not_replayed"), "test": ("logic_keeps_of",),
    "inc": ("inc_touches_cf",), "dec": ("dec_touches_cf",), "neg": ("neg_cf_wrong",),
    "not": ("not_negates",),
    "shl": ("shift_cf_wrong_end",), "shr": ("shift_cf_wrong_end",), "sar": ("sar_logical",),
    "rol": ("rotate_cf_wrong_end",), "ror": ("rotate_cf_wrong_end",),
    "rcl": ("rcl_ignores_carry",), "rcr": ("rcr_ignores_carry",),
    "shld": ("shld_fills_from_low_end",), "shrd": ("shrd_fills_from_high_end",),
    "bt": ("bt_offset_unsigned",), "bts": ("bt_offset_unsigned",),
    "btr": ("bt_offset_unsigned",), "btc": ("btc_sets", "bt_offset_unsigned"),
    "xadd": ("xadd_swaps",), "cmpxchg": ("cmpxchg_zf_inverted", "cmpxchg_always_stores"),
    "xchg": ("xchg_no_write",), "cmpxchg8b": ("cmpxchg8b_compares_replacement",),
    "cmpxchg16b": ("cmpxchg8b_compares_replacement",),
}

#: the spec function each mutant replaces
REPLACES = {
    "cmp_reversed": "spec.x86.alu.binary", "adc_ignores_carry": "spec.x86.alu.add",
    "sbb_borrow_inverted": "spec.x86.alu.binary", "of_from_wrong_bit": "spec.x86.flags.sub_flags",
    "af_from_wrong_bit": "spec.x86.flags.add_flags",
    "rmw_writes_before_read": "spec.x86.alu.binary", "logic_keeps_of": "spec.x86.alu.binary",
    "neg_cf_wrong": "spec.x86.alu.unary", "inc_touches_cf": "spec.x86.alu.unary",
    "dec_touches_cf": "spec.x86.alu.unary", "not_negates": "spec.x86.alu.unary",
    "shift_cf_wrong_end": "spec.x86.shift.shift", "sar_logical": "spec.x86.shift.shift",
    "rcl_ignores_carry": "spec.x86.shift.rotate", "rcr_ignores_carry": "spec.x86.shift.rotate",
    "rotate_cf_wrong_end": "spec.x86.shift.rotate",
    "shld_fills_from_low_end": "spec.x86.shift.double_shift",
    "shrd_fills_from_high_end": "spec.x86.shift.double_shift",
    "bt_offset_unsigned": "spec.x86.bits.bit_test", "btc_sets": "spec.x86.bits.bit_test",
    "xadd_swaps": "spec.x86.atomic.xadd", "cmpxchg_zf_inverted": "spec.x86.atomic.cmpxchg",
    "cmpxchg_always_stores": "spec.x86.atomic.cmpxchg", "xchg_no_write": "spec.x86.mov.xchg",
    "cmpxchg8b_compares_replacement": "spec.x86.atomic.cmpxchg_double",
    "straddle_not_split": "spec.x86.state.Context._parts",
    "read_not_replayed": "spec.mmio.GuestMemory._device",
}


def _doc(name: str) -> str:
    return " ".join(globals()[name].__doc__.split("\n\n")[0].split())


#: (name, the check it must break, the spec function it replaces, doc)
MUTANTS = [(names[i % len(names)], (op, mode), REPLACES[names[i % len(names)]],
            _doc(names[i % len(names)]))
           for op, names in BREAKS.items() for i, mode in enumerate(MODES) if (op, mode) in CHECKS]


def patches(mutant: str) -> list:
    """The replacements a mutant puts in place of the spec's functions."""
    function = globals()[mutant]
    replaced = REPLACES[mutant]
    owner, attribute = replaced.rsplit(".", 1)
    if owner == "spec.x86.state.Context":
        return [mock.patch.object(Context, attribute, function)]
    if owner == "spec.mmio.GuestMemory":
        return [mock.patch.object(mmio.GuestMemory, attribute, function)]
    if attribute in ("add", "add_flags", "sub_flags"):
        module = {"add": alu, "add_flags": flags, "sub_flags": flags}[attribute]
        return [mock.patch.object(module, attribute, function)]
    spec_function = _REAL[attribute]
    users = [m for m, f in decode.SEMANTICS.items() if f is spec_function]
    return [_semantics(function, *users)]
