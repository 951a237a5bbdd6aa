"""Decoding: instruction bytes to the operand model, and the table of forms.

Room: turning bytes into an :class:`spec.x86.operands.Insn` (capstone does
the byte-level decoding, as a hardware decoder would; this module maps its
answer onto the operand model) and the one table of emulated forms, built
from the families' ``FORMS``. Imports capstone, :mod:`spec.x86.operands` and
the family modules (for their tables only).

An instruction is *emulated* when its mnemonic and form are in
:data:`FORMS`; anything else is :class:`spec.x86.state.Unhandleable`, which
the VMM answers by crashing the domain, as Xen does for an instruction its
emulator does not know. Bytes that do not decode at all raise
:class:`spec.x86.state.Fault` ``#UD``, as the processor would.
"""

from __future__ import annotations

import capstone
from capstone import x86 as cx

from spec.x86 import alu, atomic, bits, mov, shift, string
from spec.x86.operands import GPRS, Imm, Insn, Mem, Operand, Reg
from spec.x86.state import UD, Fault, Unhandleable

FAMILIES = (alu, mov, shift, bits, atomic, string)

#: mnemonic -> the forms the emulator carries out
FORMS: dict[str, tuple[str, ...]] = {m: f for fam in FAMILIES for m, f in fam.FORMS.items()}
LOCKABLE = frozenset().union(*(fam.LOCKABLE for fam in FAMILIES))
UNDEFINED_FLAGS: dict[str, tuple[str, ...]] = {m: u for fam in FAMILIES
                                               for m, u in fam.UNDEFINED.items()}
SEMANTICS = {m: s for fam in FAMILIES for m, s in fam.SEMANTICS.items()}

_CS_MODES = {16: capstone.CS_MODE_16, 32: capstone.CS_MODE_32, 64: capstone.CS_MODE_64}
_DECODERS: dict[int, capstone.Cs] = {}
_SEGMENT_PREFIX = {cx.X86_PREFIX_ES: "es", cx.X86_PREFIX_CS: "cs", cx.X86_PREFIX_SS: "ss",
                   cx.X86_PREFIX_DS: "ds", cx.X86_PREFIX_FS: "fs", cx.X86_PREFIX_GS: "gs"}


def _register_parts() -> dict[str, Reg]:
    """Every register name capstone uses, as a part of a 64-bit register."""
    parts: dict[str, Reg] = {}
    legacy = {"rax": "a", "rcx": "c", "rdx": "d", "rbx": "b"}
    for name, letter in legacy.items():
        parts.update({name: Reg(name, 8), f"e{letter}x": Reg(name, 4),
                      f"{letter}x": Reg(name, 2), f"{letter}l": Reg(name, 1),
                      f"{letter}h": Reg(name, 1, 1)})
    for name in ("rsp", "rbp", "rsi", "rdi"):
        short = name[1:]
        parts.update({name: Reg(name, 8), f"e{short}": Reg(name, 4), short: Reg(name, 2),
                      f"{short}l": Reg(name, 1)})
    for n in range(8, 16):
        name = f"r{n}"
        parts.update({name: Reg(name, 8), f"{name}d": Reg(name, 4), f"{name}w": Reg(name, 2),
                      f"{name}b": Reg(name, 1)})
    return parts


REGISTER_PARTS = _register_parts()
_SEGMENTS = {"es", "cs", "ss", "ds", "fs", "gs"}


def decoder(mode: int) -> capstone.Cs:
    if mode not in _DECODERS:
        md = capstone.Cs(capstone.CS_ARCH_X86, _CS_MODES[mode])
        md.detail = True
        _DECODERS[mode] = md
    return _DECODERS[mode]


def decode(code: bytes, mode: int) -> Insn:
    """Decode the instruction at the start of ``code`` in a ``mode``-bit code
    segment. Raises ``Fault(#UD)`` for bytes that are no instruction and
    :class:`Unhandleable` for an instruction the emulator does not carry out."""
    md = decoder(mode)
    ci = next(md.disasm(code[:15], 0), None)
    if ci is None:
        raise Fault(UD, f"undecodable instruction bytes {code[:15].hex()}")
    prefixes = ci.prefix
    mnemonic = ci.mnemonic.split()[-1]
    address_size = 8 * ci.addr_size
    default_segment = _SEGMENT_PREFIX.get(prefixes[1])
    not_emulated = Unhandleable(f"{ci.mnemonic} {ci.op_str} is not emulated")
    try:
        operands = tuple(_operand(md, ci, op, address_size, default_segment, mode)
                         for op in ci.operands)
    except Unhandleable:
        raise not_emulated from None
    rep = {cx.X86_PREFIX_REP: "rep", cx.X86_PREFIX_REPNE: "repne"}.get(prefixes[0])
    insn = Insn(mnemonic=mnemonic, operands=operands, mode=mode, length=ci.size,
                raw=bytes(ci.bytes), address_size=address_size,
                lock=prefixes[0] == cx.X86_PREFIX_LOCK, rep=rep)
    if insn.form not in FORMS.get(mnemonic, ()):
        raise not_emulated
    return insn


def _operand(md: capstone.Cs, ci, op, address_size: int, segment: str | None,
             mode: int) -> Operand:
    if op.type == cx.X86_OP_REG:
        name = md.reg_name(op.reg)
        if name not in REGISTER_PARTS:
            raise Unhandleable(f"register {name} in {ci.mnemonic} {ci.op_str}")
        return REGISTER_PARTS[name]
    if op.type == cx.X86_OP_IMM:
        # capstone reports the implicit count of the memory forms of
        # "shift by 1" (D0/D1 /r) with a size of 0: it is one byte
        size = op.size or 1
        return Imm(op.imm & ((1 << 8 * size) - 1), size)
    mem = op.mem
    base = md.reg_name(mem.base) if mem.base else None
    index = md.reg_name(mem.index) if mem.index else None
    if base not in (None, "rip", "eip"):
        base = REGISTER_PARTS[base].name
    if base == "eip":
        base = "rip"
    if index is not None:
        index = REGISTER_PARTS[index].name
    seg = md.reg_name(mem.segment) if mem.segment else segment
    if seg is None:
        seg = "ss" if base in ("rsp", "rbp") else "ds"
    return Mem(size=op.size, segment=seg, base=base, index=index, scale=mem.scale,
               disp=mem.disp, address_size=address_size)
