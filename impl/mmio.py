"""MMIO for the impl engine: the instruction that touched a device, carried out.

Room: what impl's VMM does at an ``ept_violation`` that is not a fetch: run
the faulting instruction once more on Unicorn with the device's pages mapped
through ``mmio_map``, and turn its device accesses into ioreqs. Imports
capstone, Unicorn, :mod:`impl.vcpu`.

Unicorn is the hardware here, but its ``mmio_map`` callbacks do not see the
accesses the hardware makes: an 8-byte access arrives as two 4-byte halves, a
misaligned read as the aligned reads around it, a misaligned write as single
bytes. So this module decides the accesses itself, from the decoded
instruction: one per memory operand of the operand's size, split at page
boundaries and into pieces of at most 8 bytes (what an ioreq's ``data``
holds); only the pieces that no RAM backs become ioreqs. The callbacks are
then served from those accesses: a read piece from the device value fetched
for the access it falls in, a write piece collected until its access is
complete.

String moves and stores (MOVS, STOS) are not run on Unicorn: one page-clipped
chunk goes as one ioreq with ``count`` (and ``data_is_ptr`` for MOVS), and
rSI, rDI, rCX and RIP are updated here. LODS, CMPS and SCAS run element by
element within the chunk.
"""

from __future__ import annotations

from typing import Callable

import capstone
from capstone import x86 as cx
import unicorn

from impl.accesses import PAGE, Pieces, bit_string_operand
from impl.guest_linear import LinearFault
from impl.registers import EFLAGS_DF
from impl.vcpu import Vcpu

READ, WRITE = 1, 0
#: (direction, addr, size, count, data_is_ptr, data) -> the datum read
DeviceAccess = Callable[[int, int, int, int, int, int, int], int]

_STRING = {0xA4: "movs", 0xA5: "movs", 0xAA: "stos", 0xAB: "stos", 0xAC: "lods", 0xAD: "lods",
           0xA6: "cmps", 0xA7: "cmps", 0xAE: "scas", 0xAF: "scas"}
_CS = {16: capstone.CS_MODE_16, 32: capstone.CS_MODE_32, 64: capstone.CS_MODE_64}


#: what impl's VMM carries out on MMIO (capstone's mnemonics, prefixes aside)
EMULATED = frozenset(
    "add adc sub sbb cmp and or xor test inc dec neg not "
    "mov movabs movzx movsx movsxd xchg push pop "
    "shl sal shr sar rol ror rcl rcr shld shrd bt bts btr btc "
    "cmpxchg cmpxchg8b cmpxchg16b xadd".split()
    + [f"{p}{cc}" for p in ("cmov", "set") for cc in
       "o no b ae e ne be a s ns p np l ge le g".split()]
    + [f"{op}{s}" for op in ("movs", "stos", "lods", "cmps", "scas", "ins", "outs")
       for s in "bwdq"])


class EmulationFailed(Exception):
    """The instruction cannot be carried out on MMIO."""


class GuestFault(Exception):
    """The instruction faults before any device access: (vector, error
    code, CR2 or None), for the VMM to inject."""

    def __init__(self, vector: int, code: int, cr2: int | None, why: str) -> None:
        super().__init__(why)
        self.vector, self.code, self.cr2 = vector, code, cr2


_GP, _SS, _PF = 13, 12, 14


def _within_limit(mode: int, seg: str, offset: int, size: int) -> None:
    """Real mode's 64 KiB segment limit, for an access that starts within
    it (an offset above it is big real mode's, whose limit the model does
    not see)."""
    if mode == 16 and offset <= 0xFFFF < offset + size - 1:
        raise GuestFault(_SS if seg == "ss" else _GP, 0, None,
                         f"{seg}:{offset:#x}+{size} is past the segment limit 0xffff")


class MmioInstruction:
    """One instruction that touched MMIO, on one vcpu."""

    def __init__(self, vcpu: Vcpu, device: DeviceAccess) -> None:
        self.vcpu = vcpu
        self.device = device
        self._cs = {m: capstone.Cs(capstone.CS_ARCH_X86, c) for m, c in _CS.items()}
        for md in self._cs.values():
            md.detail = True

    def run(self, rip: int) -> None:
        """Carry out the instruction at linear ``rip``; raises
        :class:`EmulationFailed`."""
        cpu = self.vcpu
        mode = cpu.mode()
        code = cpu.code_at(rip)
        insn = next(self._cs[mode].disasm(code, 0), None)
        if insn is None:
            raise EmulationFailed(f"undecodable instruction {code.hex()}")
        if insn.mnemonic.split()[-1] not in EMULATED:
            raise EmulationFailed(f"{insn.mnemonic} {insn.op_str} is not emulated")
        opcode = insn.opcode[0]
        if opcode in _STRING and insn.opcode[1] == 0:
            self._string(insn, _STRING[opcode], mode)
        else:
            self._step(insn, mode, self._operand_accesses(insn, mode))

    def _physical(self, linear: int, size: int, write: bool) -> int:
        """Where the access lands in guest-physical memory (the guest's page
        tables; the MMIO pages are physical)."""
        cpu = self.vcpu
        if not cpu.paging():
            return linear
        try:
            gpa = cpu.translate(linear, write)
            second = linear + size - 1 & ~(PAGE - 1)        # walked from the page's start
            if second > linear and cpu.translate(second, write) != gpa + second - linear:
                raise EmulationFailed(f"access at linear {linear:#x}+{size} spans two pages "
                                      f"that are not contiguous in guest-physical memory")
        except LinearFault as exc:
            if exc.pf is None:
                raise EmulationFailed(str(exc)) from None
            vector, code, address = exc.pf
            raise GuestFault(vector, code, address if vector == _PF else None,
                             str(exc)) from None
        return gpa

    # --- ordinary instructions: one step on Unicorn -----------------------------------

    def _operand_accesses(self, insn, mode: int) -> list[tuple[int, int]]:
        """(guest-physical address, size, read) of the instruction's memory operands."""
        out = []
        cpu = self.vcpu
        aw = 8 * insn.addr_size
        for op in insn.operands:
            if op.type != cx.X86_OP_MEM:
                continue
            mem = op.mem
            offset = mem.disp
            base = self._cs[mode].reg_name(mem.base) if mem.base else None
            if base == "rip":                   # RIP-relative: from the next instruction
                offset += cpu.get("rip") + insn.size
            elif base:
                offset += cpu.get(_full(base))
            if mem.index:
                offset += cpu.get(_full(self._cs[mode].reg_name(mem.index))) * mem.scale
            offset &= (1 << aw) - 1
            seg = self._cs[mode].reg_name(mem.segment) if mem.segment else (
                "ss" if mem.base and self._cs[mode].reg_name(mem.base) in
                ("esp", "ebp", "rsp", "rbp", "sp", "bp") else "ds")
            last = insn.operands[-1]
            if insn.mnemonic.split()[-1] in ("bt", "bts", "btr", "btc") \
                    and last.type == cx.X86_OP_REG:
                bit = cpu.get(_full(self._cs[mode].reg_name(last.reg))) & ((1 << 8 * op.size) - 1)
                offset = bit_string_operand(offset, op.size, bit) & ((1 << aw) - 1)
            _within_limit(mode, seg, offset, op.size)
            out.append((self._physical((cpu.seg_base(seg) + offset) & cpu.linear_mask(),
                                       op.size, bool(op.access & capstone.CS_AC_WRITE)), op.size,
                        op.access != capstone.CS_AC_WRITE))   # capstone: some reads are 0
        return out

    def _step(self, insn, mode: int, accesses: list[tuple[int, int]]) -> None:
        cpu = self.vcpu
        pieces = Pieces(accesses, lambda a, n: not cpu.backed(a, n),
                        read=lambda a, n: self.device(READ, a, n, 1, 0, 0, 0),
                        write=lambda a, n, v: self.device(WRITE, a, n, 1, 0, 0, v))
        pages = pieces.pages()
        if not pages:
            raise EmulationFailed(f"no MMIO operand in {insn.mnemonic} {insn.op_str}")
        on_read, on_write = pieces.on_read, pieces.on_write
        uc = cpu.uc
        # RAM this step writes must not be a page of code the clock
        # write-protected: a refused store would end the step half done
        for gpa, size, *_ in accesses:
            if cpu.backed(gpa, size):
                cpu.make_writable(gpa, size)
        if insn.mnemonic.split()[-1] == "push":
            size = insn.operands[0].size
            sp = cpu.get("rsp") - size & (1 << mode) - 1
            _within_limit(mode, "ss", sp, size)
            top = (cpu.seg_base("ss") + sp) & cpu.linear_mask()
            cpu.make_writable(self._physical(top, size, True), size)
        for page in pages:
            uc.mmio_map(page, PAGE, on_read, page, on_write, page)
        cpu.quiet = True
        here = cpu.rip()
        # Unicorn counts instructions only in blocks translated for counting:
        # drop the cached translation of this one, before and after
        cpu._drop(uc.ctl_remove_cache, here, here + insn.size)
        try:
            uc.emu_start(cpu.get("rip"), 1 << 40, count=1)
        except unicorn.UcError as exc:
            raise EmulationFailed(f"{insn.mnemonic} {insn.op_str}: {exc}") from exc
        finally:
            cpu.quiet = False
            cpu._drop(uc.ctl_remove_cache, here, here + insn.size)
            for page in pages:
                cpu._drop(uc.mem_unmap, page, PAGE)

    # --- string instructions ----------------------------------------------------------------

    def _string(self, insn, op: str, mode: int) -> None:
        cpu = self.vcpu
        size = insn.operands[-1].size if insn.operands else 1
        aw = 8 * insn.addr_size
        amask = (1 << aw) - 1
        rep = insn.prefix[0] in (cx.X86_PREFIX_REP, cx.X86_PREFIX_REPNE)
        remaining = cpu.get("rcx") & amask if rep else 1
        back = bool(cpu.get("rflags") & EFLAGS_DF)
        step = -size if back else size
        seg = next((self._cs[mode].reg_name(o.mem.segment) for o in insn.operands
                    if o.type == cx.X86_OP_MEM and o.mem.segment
                    and self._cs[mode].reg_name(o.mem.base) in ("esi", "rsi", "si")), "ds")
        lmask = cpu.linear_mask()
        if op in ("movs", "lods", "cmps"):
            _within_limit(mode, seg, cpu.get("rsi") & amask, size)
        if op != "lods":
            _within_limit(mode, "es", cpu.get("rdi") & amask, size)
        src = (cpu.seg_base(seg) + (cpu.get("rsi") & amask)) & lmask
        dst = (cpu.seg_base("es") + (cpu.get("rdi") & amask)) & lmask
        chunk = remaining
        for used, linear in ((op in ("movs", "lods", "cmps"), src),
                             (op in ("movs", "stos", "cmps", "scas"), dst)):
            if used:
                fit = (linear % PAGE) // size + 1 if back else (PAGE - linear % PAGE) // size
                chunk = min(chunk, max(1, fit))
        # the chunk lies within one page on each side: one translation places it
        src, dst = self._physical(src, 1, False), self._physical(dst, 1, True)
        low = lambda a: a - (chunk - 1) * size if back else a          # noqa: E731
        if op == "movs" and cpu.backed(low(src), chunk * size) != cpu.backed(low(dst), chunk * size):
            if cpu.backed(low(src), chunk * size):
                self.device(WRITE, dst, size, chunk, 1, int(back), src)
            else:
                self.device(READ, src, size, chunk, 1, int(back), dst)
        elif op == "stos" and not cpu.backed(low(dst), 1):
            value = cpu.get("rax") & ((1 << 8 * size) - 1)
            self.device(WRITE, dst, size, chunk, 0, int(back), value)
        elif op in ("lods", "cmps", "scas"):
            start = cpu.get("rip")
            for _ in range(chunk):
                if op != "scas":
                    _within_limit(mode, seg, cpu.get("rsi") & amask, size)
                if op != "lods":
                    _within_limit(mode, "es", cpu.get("rdi") & amask, size)
                s = self._physical((cpu.seg_base(seg) + (cpu.get("rsi") & amask)) & lmask,
                                   size, False)
                d = self._physical((cpu.seg_base("es") + (cpu.get("rdi") & amask)) & lmask,
                                   size, False)
                operands = [(s, size)] if op in ("lods", "cmps") else []
                operands += [(d, size)] if op in ("cmps", "scas") else []
                self._step(insn, mode, operands)
                if cpu.get("rip") != start:
                    return                  # the instruction finished
            return
        else:
            raise EmulationFailed(f"{insn.mnemonic} with both or neither operand in MMIO")
        for used, reg in ((op == "movs", "rsi"), (True, "rdi")):
            if used:
                old = cpu.get(reg)
                cpu.put(reg, old & ~amask | (old + step * chunk) & amask)
        if rep:
            old = cpu.get("rcx")
            cpu.put("rcx", old & ~amask | (old - chunk) & amask)
        if remaining == chunk:
            eip = cpu.get("rip") + insn.size
            cpu.put("rip", eip & {16: 0xFFFF, 32: 0xFFFFFFFF}.get(mode, -1))


def _full(name: str) -> str:
    """The 64-bit register that capstone's register ``name`` is part of."""
    if name[0] == "r" and name[1:2].isdigit():
        return name.rstrip("dwb")                       # r8d, r9w, r10b -> r8, r9, r10
    if name[0] in "er" and len(name) == 3:
        return "r" + name[1:]                           # eax, rax -> rax
    return "r" + name                                   # ax, si -> rax, rsi

