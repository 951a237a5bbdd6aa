"""String instructions: MOVS STOS LODS CMPS SCAS INS OUTS, with REP, REPE and
REPNE (SDM vol. 2, each instruction; vol. 1, 7.3.9 "String Operations").

Room: the forms and semantics of this family. Imports :mod:`spec.bv`,
:mod:`spec.x86.alu` (CMPS and SCAS compare as SUB does), :mod:`spec.x86.state`.

Operands are implicit: the source is ``DS:[rSI]`` (the segment may be
overridden), the destination ``ES:[rDI]`` (never overridden); INS and OUTS
use the port in DX. rSI, rDI and rCX are SI/ESI/RSI, DI/EDI/RDI and CX/ECX/RCX
as the *address size* says. After each element rSI and/or rDI move by the
element size, forwards when DF = 0 and backwards when DF = 1.

With a REP prefix the instruction repeats while rCX is not zero, decrementing
it per element; REPE/REPZ and REPNE/REPNZ on CMPS and SCAS also stop after an
element whose comparison leaves ZF = 0, respectively ZF = 1. A REP with
rCX = 0 does nothing. LODS, STOS, MOVS, INS and OUTS ignore the E/NE
distinction (both mean REP).

A repeated string instruction is interruptible between elements: the
processor keeps RIP on the instruction until it is done. The emulator does
the same, in *chunks*: one call performs the elements up to the first page
boundary that either operand would cross (as Xen's ``hvmemul_rep_*`` clip a
repetition to a page), updates rSI, rDI and rCX, and leaves RIP on the
instruction if elements remain; it is then emulated again. Each element is
its own memory access (an element that itself crosses a page boundary is a
chunk of one, split as every access is), unless the memory takes a whole
chunk of MOVS or STOS at once (``rep_movs``/``rep_stos``): the VMM's memory
does, to send one ioreq with a count (:mod:`spec.mmio`).
"""

from __future__ import annotations

from spec import bv
from spec.x86 import alu
from spec.x86.operands import Insn, Mem
from spec.x86.state import PAGE, Context, Unhandleable

_SIZES = {"b": 1, "w": 2, "d": 4, "q": 8}
_OPS = ("movs", "stos", "lods", "cmps", "scas", "ins", "outs")
_FORM = {"movs": "m,m", "stos": "m,r", "lods": "r,m", "cmps": "m,m", "scas": "r,m",
         "ins": "m,r", "outs": "r,m"}

FORMS = {op + s: (_FORM[op],) for op in _OPS for s in _SIZES
         if not (op in ("ins", "outs") and s == "q")}
LOCKABLE: frozenset[str] = frozenset()
UNDEFINED: dict[str, tuple[str, ...]] = {}

def _elements_in_page(offset_linear: int, size: int, backwards: bool) -> int:
    """How many elements fit from ``offset_linear`` to the page's edge in the
    direction of travel (at least one)."""
    if backwards:
        return max(1, (offset_linear % PAGE) // size + 1)
    return max(1, (PAGE - offset_linear % PAGE) // size)


def string(ctx: Context, insn: Insn) -> None:
    """One chunk of a string instruction (see the module docstring)."""
    op, size = insn.mnemonic[:-1], _SIZES[insn.mnemonic[-1]]
    aw = insn.address_size
    backwards = ctx.flag("DF")
    if not isinstance(backwards, bool):
        raise Unhandleable(f"{insn.mnemonic} with a symbolic direction flag")
    step = -size if backwards else size
    remaining = bv.concrete(ctx.gpr("rcx", aw // 8)) if insn.rep else 1
    if remaining == 0:
        return
    source_segment = next((m.segment for m in insn.operands
                           if isinstance(m, Mem) and m.base == "rsi"), "ds")
    uses_si = op in ("movs", "lods", "cmps", "outs")
    uses_di = op in ("movs", "stos", "cmps", "scas", "ins")
    chunk = remaining
    for used, reg, seg in ((uses_si, "rsi", source_segment), (uses_di, "rdi", "es")):
        if used:
            linear = ctx.linear(seg, bv.concrete(ctx.gpr(reg, aw // 8)), size)
            chunk = min(chunk, _elements_in_page(linear, size, backwards))
    done = 0
    if op in ("movs", "stos") and _batched(ctx, op, size, chunk, source_segment, backwards):
        for used, reg in ((uses_si, "rsi"), (uses_di, "rdi")):
            if used:
                ctx.set_gpr(reg, aw // 8, bv.add(ctx.gpr(reg, aw // 8), step * chunk, aw))
        if insn.rep:
            ctx.set_gpr("rcx", aw // 8, bv.sub(remaining, chunk, aw))
        done = chunk
    while done < chunk:
        si = bv.concrete(ctx.gpr("rsi", aw // 8))
        di = bv.concrete(ctx.gpr("rdi", aw // 8))
        equal = _element(ctx, op, size, si, di, source_segment)
        if uses_si:
            ctx.set_gpr("rsi", aw // 8, bv.add(si, step, aw))
        if uses_di:
            ctx.set_gpr("rdi", aw // 8, bv.add(di, step, aw))
        done += 1
        if insn.rep:
            ctx.set_gpr("rcx", aw // 8, bv.sub(remaining, done, aw))
        if equal is not None and insn.rep and equal != (insn.rep == "rep"):
            return                                  # REPE saw a difference, REPNE a match
    if insn.rep and done < remaining:
        ctx.restart = True


def _batched(ctx: Context, op: str, size: int, count: int, seg: str, backwards: bool) -> bool:
    """Offer a whole chunk of MOVS or STOS to the memory at once (the VMM's
    memory turns one that touches MMIO into a single ioreq with ``count``);
    False when the memory does not take it."""
    aw = ctx.insn.address_size
    dst = ctx.linear("es", bv.concrete(ctx.gpr("rdi", aw // 8)), size)
    if op == "movs":
        mover = getattr(ctx.memory, "rep_movs", None)
        src = ctx.linear(seg, bv.concrete(ctx.gpr("rsi", aw // 8)), size)
        return bool(mover and mover(dst, src, size, count, backwards))
    filler = getattr(ctx.memory, "rep_stos", None)
    return bool(filler and filler(dst, size, count, backwards, ctx.gpr("rax", size)))


def _element(ctx: Context, op: str, size: int, si: int, di: int, seg: str) -> bool | None:
    """One element; for CMPS and SCAS returns whether the operands were equal."""
    if op == "movs":
        ctx.store(ctx.linear("es", di, size), size, ctx.load(ctx.linear(seg, si, size), size))
    elif op == "stos":
        ctx.store(ctx.linear("es", di, size), size, ctx.gpr("rax", size))
    elif op == "lods":
        ctx.set_gpr("rax", size, ctx.load(ctx.linear(seg, si, size), size))
    elif op in ("cmps", "scas"):
        if op == "cmps":
            a = ctx.load(ctx.linear(seg, si, size), size)
        else:
            a = ctx.gpr("rax", size)
        b = ctx.load(ctx.linear("es", di, size), size)
        r, f = alu.sub(a, b, False, 8 * size)
        ctx.set_flags(**f)
        return bv.concrete(f["ZF"])
    elif op == "ins":
        value = ctx.port_read(bv.concrete(ctx.gpr("rdx", 2)), size)
        ctx.store(ctx.linear("es", di, size), size, value)
    else:                                               # outs
        value = ctx.load(ctx.linear(seg, si, size), size)
        ctx.port_write(bv.concrete(ctx.gpr("rdx", 2)), size, value)
    return None


SEMANTICS = {name: string for name in FORMS}
