"""The machine state an instruction works on, and how operands reach it.

Room: the register file and RFLAGS, the memory interface, the faults, and
operand access: effective addresses, register parts, and memory accesses
split at page boundaries. Imports :mod:`spec.bv` and
:mod:`spec.x86.operands`.

Register parts (SDM vol. 1, 3.4.1.1): writing a 32-bit register in 64-bit
mode zero-extends into the whole 64-bit register; writing 8 or 16 bits
leaves the other bits as they were. Outside 64-bit mode only the low 32 bits
exist; a 32-bit write is modelled the same way.

Effective addresses (SDM vol. 1, 3.7.5): ``base + index * scale + disp``,
computed modulo 2**address_size; RIP-relative operands use the address of the
next instruction. The linear address adds the segment base (in 64-bit mode
only FS and GS have one). In real mode a segment's limit is 0xFFFF: an
operand that starts within it and reaches past it raises #GP(0), or #SS(0)
for an SS-based operand (SDM vol. 3A, 20.1.1; vol. 2, "Real-Address Mode
Exceptions"). An offset above 0xFFFF, which only 32-bit addressing makes, is
not checked: firmware runs such code in "big real mode", with a limit of
4 GiB left in the segment's descriptor cache from protected mode, and the
hardware boundary does not show the model that hidden limit. In 64-bit
mode a non-canonical linear address raises #GP(0).

Memory accesses: an instruction makes one access per memory operand of the
operand's size, unless the operand crosses a 4 KiB page boundary, which the
hardware (and Xen's ``hvmemul_linear_to_phys``) splits into one access per
page, the lower page first. Outside 64-bit mode linear addresses wrap at
4 GiB, and an operand that wraps is split there as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from spec import bv
from spec.x86.operands import GPRS, Imm, Insn, Mem, Operand, Reg

PAGE = 4096

# RFLAGS bits (SDM vol. 1, figure 3-8)
FLAG_BITS = {"CF": 0, "PF": 2, "AF": 4, "ZF": 6, "SF": 7, "TF": 8, "IF": 9, "DF": 10, "OF": 11}
ARITH_FLAGS = ("CF", "PF", "AF", "ZF", "SF", "OF")

# exception vectors (SDM vol. 3A, table 6-1)
DE, UD, SS, GP, PF = 0, 6, 12, 13, 14


class Fault(Exception):
    """An architectural exception the instruction raises (``#UD``, ``#GP(0)``,
    ...): its vector, the error code the CPU pushes with it (None: the
    vector has none), and for ``#PF`` the linear address CR2 receives."""

    NAMES = {DE: "#DE", UD: "#UD", SS: "#SS", GP: "#GP", PF: "#PF"}

    def __init__(self, vector: int, why: str, error_code: int | None = None,
                 cr2: int | None = None) -> None:
        super().__init__(f"{self.NAMES.get(vector, vector)}: {why}")
        self.vector = vector
        self.why = why
        self.error_code = error_code
        self.cr2 = cr2


class Unhandleable(Exception):
    """Xen's ``X86EMUL_UNHANDLEABLE``: the emulator cannot carry out this
    instruction (not decodable, or not a form it emulates). The VMM crashes
    the domain with a diagnostic."""


class Memory(Protocol):
    """Guest memory as the emulator reaches it: RAM, or a device through the
    device model. ``read`` returns a word of ``8 * size`` bits. A memory may
    also offer ``port_read(port, size)`` and ``port_write(port, size,
    value)`` for INS and OUTS."""

    def read(self, addr: int, size: int) -> bv.Word: ...

    def write(self, addr: int, size: int, value: bv.Word) -> None: ...


@dataclass
class Cpu:
    """The register state of one vcpu: 64-bit general-purpose registers,
    RFLAGS, RIP, the code segment's mode and the segment bases."""

    mode: int
    regs: dict[str, bv.Word] = field(default_factory=lambda: {r: 0 for r in GPRS})
    rflags: bv.Word = 0x2
    rip: int = 0
    segment_base: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Access:
    """One memory access the instruction made, in order."""

    op: str         # "read" or "write" (memory), "in" or "out" (ports)
    addr: int
    size: int
    value: bv.Word


class Context:
    """One instruction's view of the machine: operand access and flags."""

    def __init__(self, cpu: Cpu, memory: Memory, insn: Insn) -> None:
        self.cpu = cpu
        self.memory = memory
        self.insn = insn
        self.accesses: list[Access] = []
        #: set by a repeated string instruction that has elements left: RIP
        #: stays on the instruction
        self.restart = False
        #: flags this execution left undefined (SDM "Flags Affected"): the
        #: value the spec gives them is its own choice, and comparisons with
        #: other implementations mask them
        self.undefined: set[str] = set()

    # --- registers ------------------------------------------------------------

    def reg(self, r: Reg) -> bv.Word:
        """The register part ``r`` names."""
        lo = 8 * r.offset
        return bv.extract(self.cpu.regs[r.name], lo + 8 * r.size - 1, lo)

    def set_reg(self, r: Reg, value: bv.Word) -> None:
        """Write a register part (zero-extending a 32-bit write)."""
        if r.size >= 4:
            self.cpu.regs[r.name] = bv.zext(value, 8 * r.size, 64)
            return
        old, lo, width = self.cpu.regs[r.name], 8 * r.offset, 8 * r.size
        keep = bv.band(old, bv.mask(64) ^ (bv.mask(width) << lo), 64)
        self.cpu.regs[r.name] = bv.bor(keep, bv.shl(bv.zext(value, width, 64), lo, 64), 64)

    def gpr(self, name: str, size: int) -> bv.Word:
        """The low ``size`` bytes of a general-purpose register."""
        return self.reg(Reg(name, size))

    def set_gpr(self, name: str, size: int, value: bv.Word) -> None:
        self.set_reg(Reg(name, size), value)

    # --- flags ------------------------------------------------------------------

    def flag(self, name: str) -> bv.Bit:
        return bv.bit(self.cpu.rflags, FLAG_BITS[name])

    def set_flags(self, **flags: bv.Bit) -> None:
        """Set the named flags to the given truth values; others keep theirs."""
        rflags = self.cpu.rflags
        for name, value in flags.items():
            bit = 1 << FLAG_BITS[name]
            rflags = bv.ite(value, bv.bor(rflags, bit, 64), bv.band(rflags, bv.mask(64) ^ bit, 64))
        self.cpu.rflags = rflags

    def set_undefined(self, **flags: bv.Bit) -> None:
        """Set flags the SDM leaves undefined for this execution (to the
        values given), and record them as undefined."""
        self.set_flags(**flags)
        self.undefined.update(flags)

    # --- memory -------------------------------------------------------------------

    def address(self, m: Mem, displacement: int = 0) -> int:
        """The linear address of a memory operand (faults as the module says);
        ``displacement`` is added to the effective address, in the address
        size's arithmetic (BT's bit-base addressing)."""
        width = m.address_size
        offset = (m.disp + displacement) & bv.mask(width)
        if m.base == "rip":
            offset = bv.add(offset, self.cpu.rip + self.insn.length, width)
        elif m.base is not None:
            offset = bv.add(offset, bv.trunc(self.cpu.regs[m.base], width), width)
        if m.index is not None:
            scaled = bv.shl(bv.trunc(self.cpu.regs[m.index], width),
                            {1: 0, 2: 1, 4: 2, 8: 3}[m.scale], width)
            offset = bv.add(offset, scaled, width)
        offset = bv.concrete(offset)
        return self.linear(m.segment, offset, m.size)

    def linear(self, segment: str, offset: int, size: int) -> int:
        """``segment:offset`` as a linear address, checking the limits that
        apply in the current mode."""
        mode = self.cpu.mode
        if mode == 64:
            base = self.cpu.segment_base.get(segment, 0) if segment in ("fs", "gs") else 0
            linear = (base + offset) & bv.mask(64)
            if not _canonical(linear) or not _canonical((linear + size - 1) & bv.mask(64)):
                raise Fault(GP, f"non-canonical address {linear:#x}", error_code=0)
            return linear
        if mode == 16 and offset <= 0xFFFF < offset + size - 1:
            raise Fault(SS if segment == "ss" else GP,
                        f"{segment}:{offset:#x}+{size} is past the segment limit 0xffff",
                        error_code=0)
        return (self.cpu.segment_base.get(segment, 0) + offset) & bv.mask(32)

    def load(self, addr: int, size: int) -> bv.Word:
        """Read ``size`` bytes at a linear address: one access per page."""
        value, done = None, 0
        for part_addr, part_size in self._parts(addr, size):
            part = self.memory.read(part_addr, part_size)
            self.accesses.append(Access("read", part_addr, part_size, part))
            value = part if value is None else bv.concat(part, value, 8 * done, 8 * part_size)
            done += part_size
        return value

    def store(self, addr: int, size: int, value: bv.Word) -> None:
        """Write ``size`` bytes at a linear address: one access per page."""
        done = 0
        for part_addr, part_size in self._parts(addr, size):
            part = bv.extract(value, 8 * (done + part_size) - 1, 8 * done)
            self.memory.write(part_addr, part_size, part)
            self.accesses.append(Access("write", part_addr, part_size, part))
            done += part_size

    def port_read(self, port: int, size: int) -> bv.Word:
        """IN from an I/O port (INS), through the memory's ``port_read``."""
        reader = getattr(self.memory, "port_read", None)
        if reader is None:
            raise Unhandleable(f"port I/O to {port:#x} where the emulator has no ports")
        value = reader(port, size)
        self.accesses.append(Access("in", port, size, value))
        return value

    def port_write(self, port: int, size: int, value: bv.Word) -> None:
        """OUT to an I/O port (OUTS), through the memory's ``port_write``."""
        writer = getattr(self.memory, "port_write", None)
        if writer is None:
            raise Unhandleable(f"port I/O to {port:#x} where the emulator has no ports")
        writer(port, size, value)
        self.accesses.append(Access("out", port, size, value))

    def _parts(self, addr: int, size: int) -> list[tuple[int, int]]:
        space = bv.mask(64 if self.cpu.mode == 64 else 32)
        parts = []
        while size:
            n = min(size, PAGE - addr % PAGE)
            parts.append((addr, n))
            addr, size = (addr + n) & space, size - n
        return parts

    # --- operands -----------------------------------------------------------------

    def read(self, op: Operand) -> bv.Word:
        """An operand's value, ``8 * op.size`` bits."""
        if isinstance(op, Reg):
            return self.reg(op)
        if isinstance(op, Imm):
            return op.value & bv.mask(8 * op.size)
        return self.load(self.address(op), op.size)

    def write(self, op: Operand, value: bv.Word) -> None:
        """Store to a register or memory operand."""
        if isinstance(op, Reg):
            self.set_reg(op, value)
        elif isinstance(op, Mem):
            self.store(self.address(op), op.size, value)
        else:
            raise Unhandleable(f"write to an immediate operand in {self.insn.mnemonic}")


def _canonical(addr: int) -> bool:
    top = addr >> 47
    return top == 0 or top == (1 << 17) - 1
