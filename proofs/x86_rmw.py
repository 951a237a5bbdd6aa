"""Proofs that the VMM's emulation of an instruction on device memory is the
SDM's, end to end: through the MMIO layer and the ioreqs it sends.

Room: for every instruction family that reads, or reads and writes, a memory
operand (ALU, TEST, INC DEC NEG NOT, shifts and rotates, SHLD SHRD, BT BTS
BTR BTC, XADD CMPXCHG XCHG CMPXCHG8B CMPXCHG16B), in each of the 16-, 32-
and 64-bit modes, one Z3 check that runs the VMM's own MMIO layer on the instruction's real bytes
with symbolic data. Imports :mod:`spec.mmio`, :mod:`spec.x86`, keystone (to
assemble the instructions) and :mod:`proofs.kinduction` (the outcome type).

**What runs.** :func:`through_vmm` does what ``Vmm.emulate_mmio`` and
``Vmm.resume`` do (:mod:`spec.vmm`): it decodes the bytes, calls
:func:`spec.mmio.attempt` (the probe attempt, then the real one, each a
fresh copy of the registers and a fresh :class:`spec.mmio.GuestMemory`),
and, each time the attempt stops at a device access it sent, plays the
device model: a read is answered with a fresh Z3 value of the access's size
(the device's answer), a write is acknowledged; the completed access joins
the emulation's replay cache (:class:`spec.mmio.Completed`, keyed by
:func:`spec.mmio.access_key`) and the instruction is attempted again, until
an attempt completes. Every guest-physical address belongs to the device.
The general-purpose registers other than the operand's base (and a shift's
count or a bit offset, which the emulator needs as numbers) and the incoming
RFLAGS are Z3 bit-vectors.

**What each check proves**, for every instruction form the check lists
(:func:`cases`), for all operand values (which the device gives out piece by
piece), register values and incoming
flags:

* *the ioreqs*: the attempts send, in order, one read ioreq per page the
  operand touches (one; two, each clipped at the page boundary, for the
  operand placed 2 bytes before a page boundary), then, for a form that
  writes, one write ioreq per page with the same addresses and sizes; every
  one of type COPY, ``count`` 1, ``data_is_ptr`` 0, ``df`` 0; each attempt
  sends at most one and the last one completes, so a read-modify-write
  takes one attempt per ioreq plus the completing one;
* *the value written*: the write ioreqs' data, joined, are the SDM's
  result (for SHLD/SHRD with a count above the operand size, whose result
  the SDM leaves undefined, only the shape of the ioreqs is checked);
* *the registers*: every general-purpose register is as the SDM says (the
  destination of a ``reg, [mem]`` form, XADD's and XCHG's register,
  CMPXCHG's accumulator; all others unchanged), and RIP has moved past the
  instruction;
* *the flags*: every arithmetic flag the SDM defines for this execution is
  the SDM's, a flag the instruction does not affect is unchanged, one the
  SDM leaves undefined is not compared, and every other bit of RFLAGS is
  unchanged.

The SDM's side is written here, independently of :mod:`spec.x86`: the ALU
with *wide arithmetic* (one bit wider than the operand, so CF is the extra
bit and OF compares with the sign-extended sum), the shifts and rotates as
the SDM's "Operation" loops one bit at a time, SHLD/SHRD bit by bit, BT's
bit-base addressing from the SDM's formula on Python integers.

**The forms.** In each mode, at each operand size the mode has (8, 16, 32;
and 64 in 64-bit mode, by REX.W; 16 in 32-bit code and 32 in 16-bit code by
the 66 prefix): ``op [mem], reg``; ``op reg, [mem]`` (one read, no write);
``op [mem], imm`` with the full-size immediate (80/81) and the
sign-extended imm8 (83), both with their sign bit set; shifts by 1, by imm8
and by CL; BT* with immediates and register offsets. At every size above 8
bits some forms are repeated with the operand straddling a page boundary
(:func:`cases` says which). The immediates, shift counts and bit offsets
are part of the instruction bytes or numbers the emulator branches on, so
each check runs a list of them: the boundary counts of :func:`counts`,
immediates whose sign extension matters, and register bit offsets
(negative, beyond the operand, and at the ends of the offset's range).

Each check is named ``x86.rmw.<mnemonic>/<mode>``. The mutants (the spec
with one function replaced, each must give a counterexample with concrete
operands) are in :data:`MUTANTS`, each run against the one check it
targets.
"""

from __future__ import annotations

import functools
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Callable

import z3

from proofs.kinduction import Outcome
from spec import ioreq, mmio
from spec.x86.decode import LOCKABLE, decode
from spec.x86.operands import GPRS
from spec.x86.state import ARITH_FLAGS, FLAG_BITS, Cpu, Fault, Unhandleable

MODES = (16, 32, 64)
PAGE = 4096
#: where the memory operand is: inside a page, and 2 bytes before a page boundary
INSIDE = {16: 0x0F00, 32: 0xFEBF0F00, 64: 0xFEBF0F00}
STRADDLE = {16: 0x0FFE, 32: 0xFEBF0FFE, 64: 0xFEBF0FFE}
RIP = 0x100
#: the most attempts an instruction may take (at most 2 reads and 2 writes)
MAX_ATTEMPTS = 8

_BASE = {16: "bx", 32: "ebx", 64: "rbx"}
_PTR = {8: "byte", 16: "word", 32: "dword", 64: "qword", 128: "xmmword"}
_RCX = {8: "cl", 16: "cx", 32: "ecx", 64: "rcx"}
_RAX = {8: "al", 16: "ax", 32: "eax", 64: "rax"}


def widths(mode: int) -> tuple[int, ...]:
    return (8, 16, 32, 64) if mode == 64 else (8, 16, 32)


@functools.lru_cache(maxsize=None)
def _assembler(mode: int):
    from keystone import KS_ARCH_X86, KS_MODE_16, KS_MODE_32, KS_MODE_64, Ks
    return Ks(KS_ARCH_X86, {16: KS_MODE_16, 32: KS_MODE_32, 64: KS_MODE_64}[mode])


@functools.lru_cache(maxsize=None)
def assemble(text: str, mode: int) -> bytes:
    """The instruction's bytes, checked by decoding them back to ``text``
    (keystone has been seen to encode a negative immediate wrongly, so the
    cases write immediates as capstone prints them, and the check is that
    it prints them back)."""
    from spec.x86.decode import decoder
    code = bytes(_assembler(mode).asm(text, 0)[0])
    back = next(decoder(mode).disasm(code, 0))
    if not _same_text(f"{back.mnemonic} {back.op_str}", text):
        raise AssertionError(f"keystone assembled {text!r} as {code.hex()}, which is "
                             f"{back.mnemonic} {back.op_str}")
    return code


def _same_text(a: str, b: str) -> bool:
    """Two disassemblies are the same instruction (a trailing immediate may
    be printed negative)."""
    if a == b or f"{a}, 1" == b:        # capstone leaves out RCL/RCR's implicit 1
        return True
    head_a, _, imm_a = a.rpartition(", ")
    head_b, _, imm_b = b.rpartition(", ")
    w = next((w for w, ptr in _PTR.items() if f"{ptr} ptr" in a), 64)
    try:
        return head_a == head_b and int(imm_a, 0) % (1 << w) == int(imm_b, 0) % (1 << w)
    except ValueError:
        return False


def _imm(value: int) -> str:
    """An immediate as capstone prints it."""
    return str(value) if value < 10 else hex(value)


# --- the VMM's MMIO layer, with a device that answers symbolically ------------------

@dataclass
class Run:
    """What :func:`through_vmm` saw."""

    sent: list[ioreq.Ioreq]          # every ioreq sent, in order
    attempts: int                    # the attempts made (each sends one, the last completes)
    cpu: Cpu | None                  # the registers of the attempt that completed


def through_vmm(code: bytes, mode: int, regs: dict, rflags,
                device: Callable[[ioreq.Ioreq], z3.BitVecRef]) -> Run:
    """Run the instruction ``code`` as the VMM does (see the module docstring);
    ``device(req)`` is the device model's answer to a read."""
    emulation = mmio.Emulation(RIP, code)
    insn = decode(code, mode)
    run = Run([], 0, None)

    def new_cpu() -> Cpu:
        return Cpu(mode, regs=dict(regs), rflags=rflags, rip=RIP)

    def new_memory(probe: bool) -> mmio.GuestMemory:
        return mmio.GuestMemory(emulation, is_ram=lambda addr, size: False,
                                read_ram=_no_ram, send=run.sent.append, probe=probe)

    while run.attempts < MAX_ATTEMPTS:
        run.attempts += 1
        try:
            run.cpu, _ = mmio.attempt(emulation, insn, new_cpu, new_memory)
            return run
        except mmio.Pending:
            req = run.sent[-1]
            answer = device(req) if req.dir == ioreq.IOREQ_READ else req.data
            emulation.done.append(mmio.Completed(mmio.access_key(req), answer))
    return run


def _no_ram(addr: int, size: int) -> bytes:
    raise AssertionError("no guest RAM in this proof")


def pieces(address: int, size: int) -> list[tuple[int, int]]:
    """The operand's accesses: clipped at page boundaries (the SDM's), and
    each in ioreqs of at most 8 bytes (the size of an ioreq's ``data``)."""
    first = min(size, PAGE - address % PAGE)
    pages = [(address, first)] + ([(address + first, size - first)] if first < size else [])
    return [(addr + off, min(8, n - off)) for addr, n in pages for off in range(0, n, 8)]


# --- the SDM's definitions --------------------------------------------------------------

def _bv(value, width: int) -> z3.BitVecRef:
    return value if isinstance(value, z3.BitVecRef) else z3.BitVecVal(value, width)


def _bit(x: z3.BitVecRef, i: int) -> z3.BoolRef:
    return z3.Extract(i, i, x) == 1


def _parity_even(r: z3.BitVecRef) -> z3.BoolRef:
    ones = z3.Sum([z3.ZeroExt(7, z3.Extract(i, i, r)) for i in range(8)])
    return z3.Extract(0, 0, ones) == 0


def _szp(r: z3.BitVecRef, w: int) -> dict[str, z3.BoolRef]:
    return {"ZF": r == 0, "SF": _bit(r, w - 1), "PF": _parity_even(r)}


def alu(op: str, a, b, cf: z3.BoolRef, w: int) -> tuple[z3.BitVecRef, dict]:
    """The result and defined flags of ``op`` on ``a`` (the destination) and
    ``b`` (the source) with incoming carry ``cf``, by wide arithmetic (SDM
    vol. 2, "ADD" ... "XOR", "Operation" and "Flags Affected")."""
    a, b = _bv(a, w), _bv(0 if b is None else b, w)
    zero = z3.BitVecVal(0, w + 1)
    carry = z3.If(cf, z3.BitVecVal(1, w + 1), zero) if op in ("adc", "sbb") else zero
    if op in ("inc", "dec"):
        b = z3.BitVecVal(1, w)
    if op == "neg":
        a, b = z3.BitVecVal(0, w), a
    nib = lambda x: z3.ZeroExt(1, z3.Extract(3, 0, x))           # noqa: E731
    nib_carry = z3.Extract(4, 0, carry)
    if op in ("add", "adc", "inc"):
        wide = z3.ZeroExt(1, a) + z3.ZeroExt(1, b) + carry
        r = z3.Extract(w - 1, 0, wide)
        signed = z3.SignExt(1, a) + z3.SignExt(1, b) + carry
        f = {"CF": _bit(wide, w), "OF": signed != z3.SignExt(1, r),
             "AF": z3.UGE(nib(a) + nib(b) + nib_carry, 16)}
    elif op in ("sub", "sbb", "cmp", "dec", "neg"):
        wide = z3.ZeroExt(1, a) - z3.ZeroExt(1, b) - carry
        r = z3.Extract(w - 1, 0, wide)
        signed = z3.SignExt(1, a) - z3.SignExt(1, b) - carry
        f = {"CF": z3.ULT(z3.ZeroExt(1, a), z3.ZeroExt(1, b) + carry),
             "OF": signed != z3.SignExt(1, r), "AF": z3.ULT(nib(a), nib(b) + nib_carry)}
    elif op == "not":
        return ~a, {}
    else:
        r = {"and": a & b, "test": a & b, "or": a | b, "xor": a ^ b}[op]
        f = {"CF": z3.BoolVal(False), "OF": z3.BoolVal(False)}
    if op in ("inc", "dec"):
        del f["CF"]                                   # CF is not affected
    f.update(_szp(r, w))
    return r, f


#: flags the SDM leaves undefined, by mnemonic (shifts: see :func:`shift`)
ALU_UNDEFINED = {"and": {"AF"}, "or": {"AF"}, "xor": {"AF"}, "test": {"AF"}}
BT_UNDEFINED = {"OF", "SF", "AF", "PF"}


def shift(op: str, a: z3.BitVecRef, count: int, cf: z3.BoolRef,
          w: int) -> tuple[z3.BitVecRef, dict, set]:
    """SAL/SHL SHR SAR ROL ROR RCL RCR by ``count``, as the SDM's "Operation"
    does it: one bit per step. Returns the result, the defined flags and the
    undefined ones."""
    masked = count & (0x3F if w == 64 else 0x1F)
    if op in ("rcl", "rcr"):
        steps = masked % (w + 1) if w < 32 else masked
    elif op in ("rol", "ror"):
        steps = masked % w
    else:
        steps = masked
    if masked == 0:
        return a, {}, set()
    # DEST as a list of its bits, least significant first; each step of the
    # SDM's loop moves them by one place
    bit = [z3.Extract(i, i, a) for i in range(w)]
    zero = z3.BitVecVal(0, 1)
    carry = z3.If(cf, z3.BitVecVal(1, 1), zero)
    for _ in range(steps):
        if op == "shl":                   # tempCF = MSB(DEST); DEST = DEST * 2
            carry, bit = bit[w - 1], [zero] + bit[:-1]
        elif op == "shr":                 # CF = LSB(DEST); DEST = DEST / 2 (unsigned)
            carry, bit = bit[0], bit[1:] + [zero]
        elif op == "sar":                 # CF = LSB(DEST); DEST = DEST / 2 (signed)
            carry, bit = bit[0], bit[1:] + [bit[w - 1]]
        elif op == "rol":                 # DEST = DEST * 2 + MSB(DEST)
            bit = [bit[w - 1]] + bit[:-1]
        elif op == "ror":                 # DEST = DEST / 2 + LSB(DEST) * 2^(w-1)
            bit = bit[1:] + [bit[0]]
        elif op == "rcl":                 # DEST = DEST * 2 + CF; CF = old MSB
            carry, bit = bit[w - 1], [carry] + bit[:-1]
        else:                             # rcr: DEST = DEST / 2 + CF * 2^(w-1); CF = old LSB
            carry, bit = bit[0], bit[1:] + [carry]
    dest = z3.Concat(*reversed(bit))
    is_one = lambda b: b == 1                                     # noqa: E731
    top = lambda x: _bit(x, w - 1)                                # noqa: E731
    carry = is_one(carry)
    if op == "rol":
        carry = is_one(bit[0])
    elif op == "ror":
        carry = is_one(bit[w - 1])
    of = {"shl": z3.Xor(top(dest), carry), "shr": top(a), "sar": z3.BoolVal(False),
          "rol": z3.Xor(top(dest), carry), "ror": z3.Xor(top(dest), _bit(dest, w - 2)),
          "rcl": z3.Xor(top(dest), carry), "rcr": z3.Xor(top(a), cf)}[op]
    flags = {"CF": carry, "OF": of}
    undefined = set() if masked == 1 else {"OF"}
    if op in ("shl", "shr", "sar"):
        flags.update(_szp(dest, w))
        undefined.add("AF")
        if op != "sar" and masked >= w:
            undefined.add("CF")
    return dest, flags, undefined


def double_shift(op: str, a: z3.BitVecRef, b: z3.BitVecRef, count: int,
                 w: int) -> tuple[z3.BitVecRef | None, dict, set]:
    """SHLD and SHRD (SDM vol. 2, "Operation"), bit by bit; a result of None
    is undefined (a count above the operand size)."""
    c = count & (0x3F if w == 64 else 0x1F)
    if c == 0:
        return a, {}, set()
    if c > w:
        return None, {}, {"CF", "OF", "SF", "ZF", "AF", "PF"}
    bits = []                                                 # bit i of the result, i = 0..w-1
    for i in range(w):
        if op == "shld":
            bits.append(z3.Extract(i - c, i - c, a) if i >= c else
                        z3.Extract(i - c + w, i - c + w, b))
        else:
            bits.append(z3.Extract(i + c, i + c, a) if i + c < w else
                        z3.Extract(i + c - w, i + c - w, b))
    r = z3.Concat(*reversed(bits)) if w > 1 else bits[0]
    carry = _bit(a, w - c) if op == "shld" else _bit(a, c - 1)
    flags = {"CF": carry, "OF": z3.Xor(_bit(r, w - 1), _bit(a, w - 1)), **_szp(r, w)}
    return r, flags, {"AF"} | (set() if c == 1 else {"OF"})


def put(old, value: z3.BitVecRef, w: int) -> z3.BitVecRef:
    """A ``w``-bit register write into the 64-bit register ``old`` (SDM vol. 1,
    3.4.1.1: a 32-bit write zero-extends, 8 and 16 bits merge)."""
    old = _bv(old, 64)
    if w == 64:
        return value
    if w == 32:
        return z3.ZeroExt(32, value)
    return z3.Concat(z3.Extract(63, w, old), value)


# --- the cases -----------------------------------------------------------------------------

@dataclass
class Inputs:
    """The symbolic inputs of one case, as the SDM's side sees them."""

    old: z3.BitVecRef               # the memory operand's value (as the device gives it)
    regs: dict                      # the 64-bit registers before
    cf: z3.BoolRef                  # incoming CF
    w: int

    def reg(self, name: str) -> z3.BitVecRef:
        return z3.Extract(self.w - 1, 0, _bv(self.regs[name], 64))


@dataclass
class Expected:
    """What the SDM says one case does."""

    written: z3.BitVecRef | None = None           # the value written (None: no write, or
    writes: bool = False                          # undefined when ``writes``)
    regs: dict = field(default_factory=dict)      # registers that change: name -> value
    flags: dict = field(default_factory=dict)     # defined flags: name -> truth value
    undefined: set = field(default_factory=set)


@dataclass
class Case:
    text: str                       # the instruction, as assembled
    mode: int
    size: int                       # the memory operand's bytes
    address: int                    # the guest-physical address the operand is accessed at
    sdm: Callable[[Inputs], Expected]
    fixed: dict = field(default_factory=dict)    # registers with concrete values
    base: str = "rbx"                            # the register that addresses the operand

    @property
    def w(self) -> int:
        return 8 * self.size


def _mem(mode: int, w: int) -> str:
    return f"{_PTR[w]} ptr [{_BASE[mode]}]"


def _alu_cases(op: str, mode: int) -> list[Case]:
    out = []
    writes = op not in ("cmp", "test")
    undefined = ALU_UNDEFINED.get(op, set())
    for w in widths(mode):
        def m_r(i: Inputs, op=op) -> Expected:
            r, f = alu(op, i.old, i.reg("rcx"), i.cf, i.w)
            return Expected(r if writes else None, writes, {}, f, undefined)
        mem = _mem(mode, w)
        out.append(Case(f"{op} {mem}, {_RCX[w]}", mode, w // 8, INSIDE[mode], m_r))
        if w > 8:
            out.append(Case(f"{op} {mem}, {_RCX[w]}", mode, w // 8, STRADDLE[mode], m_r))
        if op != "test":
            def r_m(i: Inputs, op=op) -> Expected:
                r, f = alu(op, i.reg("rcx"), i.old, i.cf, i.w)
                regs = {"rcx": put(i.regs["rcx"], r, i.w)} if writes else {}
                return Expected(None, False, regs, f, undefined)
            out.append(Case(f"{op} {_RCX[w]}, {mem}", mode, w // 8, INSIDE[mode], r_m))
        # the full-size immediate (80/81; for 64 bits an imm32, sign-extended),
        # and imm8 sign-extended (83): both with their sign bit set
        immediates = [{8: 0x80, 16: 0x8001, 32: 0x80000001, 64: 0xFFFFFFFF80000001}[w]]
        if w > 8 and op != "test":
            immediates.append((1 << w) - 0x80)
        for value in immediates:
            def m_i(i: Inputs, op=op, value=value) -> Expected:
                r, f = alu(op, i.old, value, i.cf, i.w)
                return Expected(r if writes else None, writes, {}, f, undefined)
            out.append(Case(f"{op} {mem}, {_imm(value)}", mode, w // 8, INSIDE[mode], m_i))
    return out


def _unary_cases(op: str, mode: int) -> list[Case]:
    out = []
    for w in widths(mode):
        for address in (INSIDE[mode], STRADDLE[mode]) if w > 8 else (INSIDE[mode],):
            def sdm(i: Inputs, op=op) -> Expected:
                r, f = alu(op, i.old, None, i.cf, i.w)
                return Expected(r, True, {}, f, set())
            out.append(Case(f"{op} {_mem(mode, w)}", mode, w // 8, address, sdm))
    return out


def counts(w: int, mode: int) -> tuple[int, ...]:
    """The shift counts a check tries by CL: every boundary of the SDM's
    cases (0, 1, 2; the operand size, one below and one above it; 9 and 17,
    RCL/RCR's modulus for 8 and 16 bits; the mask and counts it wraps, with
    bits above it set). 16- and 32-bit code tries fewer: the semantics do
    not depend on the mode, which the other forms check."""
    mask = 0x3F if w == 64 else 0x1F
    if mode != 64:
        return (0, 1, 9, 17, 0xE1)
    return tuple(sorted({0, 1, 9, 17, w - 1, w, w + 1, mask, 0xE1}))


COUNTS_IMM = (0x21,)


def _shift_cases(op: str, mode: int) -> list[Case]:
    out = []
    for w in widths(mode):
        def sdm(i: Inputs, op=op, count=None) -> Expected:
            r, f, undefined = shift(op, i.old, count, i.cf, i.w)
            return Expected(r, True, {}, f, undefined)
        mem = _mem(mode, w)
        out.append(Case(f"{op} {mem}, 1", mode, w // 8, INSIDE[mode],
                        functools.partial(sdm, count=1)))
        if w > 8:
            out.append(Case(f"{op} {mem}, 1", mode, w // 8, STRADDLE[mode],
                            functools.partial(sdm, count=1)))
        for c in COUNTS_IMM:
            out.append(Case(f"{op} {mem}, {_imm(c)}", mode, w // 8, INSIDE[mode],
                            functools.partial(sdm, count=c)))
        for c in counts(w, mode):
            out.append(Case(f"{op} {mem}, cl", mode, w // 8, INSIDE[mode],
                            functools.partial(sdm, count=c), fixed={"rcx": c}))
    return out


def _double_shift_cases(op: str, mode: int) -> list[Case]:
    out = []
    for w in widths(mode):
        if w == 8:
            continue
        def sdm(i: Inputs, op=op, count=None) -> Expected:
            r, f, undefined = double_shift(op, i.old, i.reg("rdx"), count, i.w)
            return Expected(r, True, {}, f, undefined)
        mem = f"{_mem(mode, w)}, {_RAX[w].replace('a', 'd')}"
        for c in (1, 5):
            for address in (INSIDE[mode], STRADDLE[mode]):
                out.append(Case(f"{op} {mem}, {c}", mode, w // 8, address,
                                functools.partial(sdm, count=c)))
        for c in counts(w, mode):
            out.append(Case(f"{op} {mem}, cl", mode, w // 8, INSIDE[mode],
                            functools.partial(sdm, count=c), fixed={"rcx": c}))
    return out


def _bt_cases(op: str, mode: int) -> list[Case]:
    out = []
    writes = op != "bt"
    for w in widths(mode):
        if w == 8:
            continue
        def sdm(i: Inputs, op=op, bit=None) -> Expected:
            selected = _bit(i.old, bit)
            one = z3.BitVecVal(1 << bit, i.w)
            new = {"bt": None, "bts": i.old | one, "btr": i.old & ~one, "btc": i.old ^ one}[op]
            return Expected(new, writes, {}, {"CF": selected}, BT_UNDEFINED)
        mem = _mem(mode, w)
        for imm, address in ((3, INSIDE[mode]), (w + 5, INSIDE[mode]), (w - 1, STRADDLE[mode])):
            # an immediate is taken modulo the operand size
            out.append(Case(f"{op} {mem}, {_imm(imm)}", mode, w // 8, address,
                            functools.partial(sdm, bit=imm % w)))
        # a register offset is signed and selects the operand offset >> log2(w)
        # operands away (SDM vol. 2, "BT"; vol. 1, 3.4.1 "Bit Field Addressing"),
        # the effective address wrapping at the address size
        far = 1 << (40 if w == 64 else w - 1)        # 64 bits: stay canonical
        offsets = [(o, INSIDE[mode]) for o in (5, w + 3, -1, -w - 2, far - 1, -far)]
        for offset, base in offsets + [(5, STRADDLE[mode]), (-1, STRADDLE[mode])]:
            delta = (offset >> (w.bit_length() - 1)) * (w // 8)
            address = (base + delta) % (1 << mode)
            out.append(Case(f"{op} {mem}, {_RCX[w]}", mode, w // 8, address,
                            functools.partial(sdm, bit=offset % w),
                            fixed={"rcx": offset % (1 << w), "rbx": base}))
    return out


def _atomic_cases(op: str, mode: int) -> list[Case]:
    out = []
    for w in widths(mode):
        for address in (INSIDE[mode], STRADDLE[mode]) if w > 8 else (INSIDE[mode],):
            def sdm(i: Inputs, op=op) -> Expected:
                src = i.reg("rcx")
                if op == "xadd":
                    r, f = alu("add", i.old, src, i.cf, i.w)
                    return Expected(r, True, {"rcx": put(i.regs["rcx"], i.old, i.w)}, f)
                if op == "xchg":
                    return Expected(src, True, {"rcx": put(i.regs["rcx"], i.old, i.w)}, {})
                acc = i.reg("rax")
                _, f = alu("cmp", acc, i.old, i.cf, i.w)
                equal = acc == i.old
                rax = z3.If(equal, _bv(i.regs["rax"], 64), put(i.regs["rax"], i.old, i.w))
                return Expected(z3.If(equal, src, i.old), True, {"rax": rax}, f)
            out.append(Case(f"{op} {_mem(mode, w)}, {_RCX[w]}", mode, w // 8, address, sdm))
    return out


def _cmpxchg_double_cases(op: str, mode: int) -> list[Case]:
    """CMPXCHG8B m64 (every mode) and CMPXCHG16B m128 (64-bit mode, aligned:
    16 bytes go as two 8-byte ioreqs per side)."""
    if op == "cmpxchg16b" and mode != 64:
        return []
    w = 64 if op == "cmpxchg8b" else 128
    half = w // 2

    def sdm(i: Inputs) -> Expected:
        low = lambda r: z3.Extract(half - 1, 0, _bv(i.regs[r], 64))     # noqa: E731
        expected, replacement = z3.Concat(low("rdx"), low("rax")), z3.Concat(low("rcx"),
                                                                             low("rbx"))
        equal = i.old == expected
        regs = {r: z3.If(equal, _bv(i.regs[r], 64), put(i.regs[r], part, half))
                for r, part in (("rax", z3.Extract(half - 1, 0, i.old)),
                                ("rdx", z3.Extract(w - 1, half, i.old)))}
        return Expected(z3.If(equal, replacement, i.old), True, regs, {"ZF": equal})
    addresses = (INSIDE[mode], STRADDLE[mode]) if op == "cmpxchg8b" else (INSIDE[mode],)
    # addressed by rSI: EBX/RBX is the replacement's low half, and stays symbolic
    mem = f"{_PTR[w]} ptr [{ {16: 'si', 32: 'esi', 64: 'rsi'}[mode]}]"
    return [Case(f"{op} {mem}", mode, w // 8, address, sdm, base="rsi")
            for address in addresses]


FAMILIES: dict[str, Callable[[str, int], list[Case]]] = {
    **{op: _alu_cases for op in ("add", "adc", "sub", "sbb", "cmp", "and", "or", "xor",
                                 "test")},
    **{op: _unary_cases for op in ("inc", "dec", "neg", "not")},
    **{op: _shift_cases for op in ("shl", "shr", "sar", "rol", "ror", "rcl", "rcr")},
    **{op: _double_shift_cases for op in ("shld", "shrd")},
    **{op: _bt_cases for op in ("bt", "bts", "btr", "btc")},
    **{op: _atomic_cases for op in ("xadd", "cmpxchg", "xchg")},
    **{op: _cmpxchg_double_cases for op in ("cmpxchg8b", "cmpxchg16b")},
}


def cases(op: str, mode: int) -> list[Case]:
    """The instruction forms the check of ``op`` in ``mode`` runs; a mnemonic
    that LOCK may prefix runs its first form once more with LOCK (which
    changes nothing but what the decoder accepts)."""
    out = FAMILIES[op](op, mode)
    if out and op in LOCKABLE and op != "xchg":          # XCHG locks without the prefix
        first = out[0]
        out.append(Case(f"lock {first.text}", mode, first.size, first.address, first.sdm,
                        first.fixed, first.base))
    return out


# --- one case, one check -------------------------------------------------------------------

def _claims(case: Case) -> tuple[list[tuple[str, z3.BoolRef]], list[str], dict]:
    """Run one case through the VMM and return its claims (name, formula), a
    description of a wrong ioreq sequence ([] if right) and the terms a
    counterexample shows.

    The inputs are the same Z3 variables in every case of a check (each case
    is its own claim, so this is no loss of generality): the operand's value
    ``operand<w>``, which the device gives out piece by piece, a read of the
    bytes at ``addr..addr+size`` answered with those bytes of it; the
    registers; RFLAGS. Cases that differ only in where the operand lies
    then make the same formula, which the solver sees once."""
    code = assemble(case.text, case.mode)
    regs = {r: z3.BitVec(r, 64) for r in GPRS}
    regs[case.base] = case.address
    regs.update(case.fixed)
    rflags = z3.BitVec("rflags", 64)
    operand = z3.BitVec(f"operand{case.w}", case.w)

    def device(req: ioreq.Ioreq) -> z3.BitVecRef:
        start = req.addr - case.address
        if 0 <= start and start + req.size <= case.size:
            return z3.Extract(8 * (start + req.size) - 1, 8 * start, operand)
        return z3.BitVec(f"device@{req.addr:#x}", 8 * req.size)   # not the operand's bytes

    try:
        run = through_vmm(code, case.mode, regs, rflags, device)
    except (Unhandleable, Fault) as exc:
        return [], [f"the emulation failed: {exc}"], {}
    parts = pieces(case.address, case.size)
    cf = _bit(rflags, FLAG_BITS["CF"])
    shown = {"regs": regs, "rflags": rflags, "operand": operand}
    sdm = case.sdm(Inputs(operand, regs, cf, case.w))
    expected = _shape(parts, ioreq.IOREQ_READ) + (_shape(parts, ioreq.IOREQ_WRITE)
                                                    if sdm.writes else [])
    got = [_fields(req) for req in run.sent]
    if got != expected or run.cpu is None or run.attempts != len(run.sent) + 1:
        return [], _wrong_sequence(run, expected), shown
    claims = []
    if sdm.written is not None:
        writes = run.sent[len(parts):]
        data = _bv(writes[0].data, 8 * writes[0].size)
        for req in writes[1:]:
            data = z3.Concat(_bv(req.data, 8 * req.size), data)
        claims.append(("the value written", data == sdm.written))
        shown["written"], shown["sdm"] = data, sdm.written
    cpu = run.cpu
    for r in GPRS:
        want = sdm.regs.get(r, regs[r])
        if cpu.regs[r] is not want:          # (the very same term needs no claim)
            claims.append((f"{r}", _bv(cpu.regs[r], 64) == _bv(want, 64)))
    rflags_out = _bv(cpu.rflags, 64)
    for name in ARITH_FLAGS:
        got_flag = _bit(rflags_out, FLAG_BITS[name])
        if name in sdm.flags:
            claims.append((name, got_flag == sdm.flags[name]))
        elif name not in sdm.undefined:
            claims.append((f"{name} unchanged", got_flag == _bit(rflags, FLAG_BITS[name])))
    others = ~z3.BitVecVal(sum(1 << FLAG_BITS[f] for f in ARITH_FLAGS), 64)
    claims.append(("the other RFLAGS bits unchanged", rflags_out & others == rflags & others))
    rip_mask = {16: 0xFFFF, 32: 0xFFFFFFFF, 64: (1 << 64) - 1}[case.mode]
    claims.append(("RIP past the instruction",
                   z3.BoolVal(cpu.rip == (RIP + len(code)) & rip_mask)))
    return claims, [], shown


def _fields(req: ioreq.Ioreq) -> tuple:
    return (ioreq.DIR_NAMES[req.dir], req.addr, req.size, req.count, req.data_is_ptr, req.df,
            req.type)


def _shape(parts: list[tuple[int, int]], direction: int) -> list[tuple]:
    return [(ioreq.DIR_NAMES[direction], addr, size, 1, 0, 0, ioreq.IOREQ_TYPE_COPY)
            for addr, size in parts]


def _wrong_sequence(run: Run, expected: list[tuple]) -> list[str]:
    show = lambda f: f"{f[0]} {f[1]:#x}+{f[2]}" + (  # noqa: E731
        f" count={f[3]} data_is_ptr={f[4]} df={f[5]} type={f[6]}"
        if f[3:] != (1, 0, 0, ioreq.IOREQ_TYPE_COPY) else "")
    got = [show(_fields(r)) for r in run.sent]
    return [f"the ioreqs were [{', '.join(got)}] in {run.attempts} attempts"
            + ("" if run.cpu is not None else ", without completing"),
            f"the SDM's access gives [{', '.join(show(f) for f in expected)}], "
            f"then completion"]


def prove(op: str, mode: int, timeout_ms: int = 60_000) -> Outcome:
    """Run every case of ``op`` in ``mode`` through the VMM's MMIO layer on
    symbolic data and compare with the SDM's definition (module docstring).
    One query per case; a case whose claim, simplified, is a formula already
    proved is not asked again: the same form with the operand elsewhere, or
    the same operand size in another mode (the inputs are the same variables
    and the mode-dependent parts, such as RIP and the base register, are
    constants), gives the very same formula."""
    started = time.perf_counter()
    proved = _PROVED
    for case in cases(op, mode):
        claims, wrong, shown = _claims(case)
        if wrong:
            return Outcome("counterexample", time.perf_counter() - started,
                           [f"{case.text} ({case.mode}-bit) at {case.address:#x}"] + wrong)
        claim = z3.simplify(z3.And([c for _, c in claims]))
        if claim.get_id() in proved:
            continue
        answer = _solve(claim, timeout_ms)
        if answer[0] == z3.sat:
            return Outcome("counterexample", time.perf_counter() - started,
                           _describe(case, claims, shown, answer[1]))
        if answer[0] == z3.unknown:
            return Outcome("unknown", time.perf_counter() - started,
                           detail=f"{case.text}: {answer[1]}")
        proved[claim.get_id()] = claim
    return Outcome("proved", time.perf_counter() - started)


#: the formulas proved so far, by Z3's id (the terms are kept, so that no id is
#: reused for another formula)
_PROVED: dict[int, z3.BoolRef] = {}


def _solve(claim: z3.BoolRef, timeout_ms: int) -> tuple:
    """(sat, model), (unsat, None) or (unknown, why) for the negation of ``claim``."""
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.add(z3.Not(claim))
    answer = solver.check()
    if answer == z3.sat:
        return answer, solver.model()
    return answer, solver.reason_unknown() if answer == z3.unknown else None


def _inputs_line(case: Case, shown: dict, model) -> str:
    value = lambda e: model.eval(_bv(e, 64) if isinstance(e, int) else e,  # noqa: E731
                                 model_completion=True).as_long()
    regs = shown["regs"]
    w = case.w
    parts = [f"the operand = {value(shown['operand']):#x}"]
    if w >= 64 and case.text.startswith("cmpxchg"):          # CMPXCHG8B/16B
        half = w // 2
        for hi, lo in (("rdx", "rax"), ("rcx", "rbx")):
            pair = value(regs[hi]) % (1 << half) << half | value(regs[lo]) % (1 << half)
            name = f"{hi}:{lo}" if w == 128 else f"e{hi[1:]}:e{lo[1:]}"
            parts.append(f"{name} = {pair:#x}")
    elif case.text.split(", ")[-1] == _RCX[w] or f"{_RCX[w]}, " in case.text:
        parts.append(f"{_RCX[w]} = {value(regs['rcx']) & ((1 << w) - 1):#x}")
    if case.text.startswith("cmpxchg ptr") or case.text.split()[0] == "cmpxchg":
        parts.append(f"{_RAX[w]} = {value(regs['rax']) & ((1 << w) - 1):#x}")
    if "shld" in case.text or "shrd" in case.text:
        parts.append(f"{_RAX[w].replace('a', 'd')} = {value(regs['rdx']) & ((1 << w) - 1):#x}")
    parts.append(f"CF in = {value(shown['rflags']) & 1}")
    return ": " + ", ".join(parts)


def _describe(case: Case, claims, shown: dict, model) -> list[str]:
    lines = [f"{case.text} ({case.mode}-bit) at {case.address:#x}"
             + _inputs_line(case, shown, model)]
    if "written" in shown:
        got = model.eval(shown["written"], model_completion=True).as_long()
        want = model.eval(shown["sdm"], model_completion=True).as_long()
        if got != want:
            lines.append(f"the VMM wrote {got:#x}, the SDM gives {want:#x}")
    for name, claim in claims:
        if z3.is_false(model.eval(claim, model_completion=True)) and name != "the value written":
            lines.append(f"{name} differs from the SDM")
    return lines


# --- the checks and their mutants ----------------------------------------------------------

CHECKED = tuple(FAMILIES)
#: (mnemonic, mode) of every check: every mnemonic in every mode that has it
CHECKS = [(op, mode) for op in CHECKED for mode in MODES if cases(op, mode)]


def run(op: str, mode: int, mutant: str | None = None) -> Outcome:
    """One check, optionally with a mutant's replacements in place."""
    from proofs import x86_rmw_mutants
    with ExitStack() as stack:
        for patch in x86_rmw_mutants.patches(mutant) if mutant else []:
            stack.enter_context(patch)
        return prove(op, mode)


def checks() -> list[tuple[str, str, str, str, Callable[[], Outcome]]]:
    """(name, kind, replaced spec function, doc, run) for every check and mutant."""
    from proofs.x86_rmw_mutants import MUTANTS
    out = [(f"x86.rmw.{op}/{mode}", "invariant", "", _doc(op, mode),
            lambda o=op, m=mode: run(o, m)) for op, mode in CHECKS]
    out += [(f"x86.rmw.{op}/{mode}/mutant:{name}", "mutant", target, doc,
             lambda o=op, m=mode, n=name: run(o, m, n))
            for name, (op, mode), target, doc in MUTANTS]
    return out


def _doc(op: str, mode: int) -> str:
    return (f"{op.upper()} on device memory in {mode}-bit code, through the VMM's MMIO layer: "
            f"the ioreqs (per page), the value written, the registers and the defined flags "
            f"as the SDM's")
