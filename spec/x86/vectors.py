"""The reference engine's runner for instruction test vectors.

Room: running one vector case (the format of ``docs/vectors.rst``) on the
spec's own emulator: flat segments, RAM everywhere except the case's MMIO
regions, every access to those logged in order. Imports :mod:`spec.x86`.

A case is one instruction. A repeated string instruction is emulated chunk
after chunk (:mod:`spec.x86.string`) until RIP moves past it; every element
is its own access. A fault leaves RIP on the instruction and is reported as
``{"vector": n}``; an instruction the emulator does not carry out is reported
as ``{"unhandleable": why}``, which no case expects, so it fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from spec import bv
from spec.x86.decode import UNDEFINED_FLAGS
from spec.x86.emulate import emulate
from spec.x86.operands import GPRS
from spec.x86.state import Cpu, Fault, Unhandleable

#: how many chunks one repeated string instruction may take
MAX_CHUNKS = 1 << 16


class CaseMemory:
    """RAM everywhere (zero where the case gives nothing) with logged MMIO
    regions. The given ranges are kept as byte arrays, the rest sparsely."""

    def __init__(self, ram: list[tuple[int, bytes]], mmio: list[tuple[int, bytes]]) -> None:
        self.ranges = [(addr, bytearray(data)) for addr, data in ram + mmio]
        self.sparse: dict[int, int] = {}
        self.mmio = [(addr, addr + len(data)) for addr, data in mmio]
        self.ops: list[dict] = []

    def _logged(self, addr: int, size: int) -> bool:
        return any(lo < addr + size and addr < hi for lo, hi in self.mmio)

    def _range(self, addr: int, size: int) -> tuple[int, bytearray] | None:
        for lo, data in self.ranges:
            if lo <= addr and addr + size <= lo + len(data):
                return lo, data
        return None

    def read(self, addr: int, size: int) -> int:
        value = int.from_bytes(self.peek(addr, size), "little")
        if self._logged(addr, size):
            self.ops.append({"op": "read", "addr": addr, "size": size, "value": value})
        return value

    def write(self, addr: int, size: int, value: bv.Word) -> None:
        value = bv.concrete(value)
        self.poke(addr, value.to_bytes(size, "little"))
        if self._logged(addr, size):
            self.ops.append({"op": "write", "addr": addr, "size": size, "value": value})

    def peek(self, addr: int, size: int) -> bytes:
        """Bytes as they are, without logging."""
        found = self._range(addr, size)
        if found is not None:
            lo, data = found
            return bytes(data[addr - lo:addr - lo + size])
        if size > 1:
            return b"".join(self.peek(addr + i, 1) for i in range(size))
        return bytes([self.sparse.get(addr, 0)])

    def poke(self, addr: int, data: bytes) -> None:
        """Store bytes, without logging."""
        found = self._range(addr, len(data))
        if found is not None:
            lo, block = found
            block[addr - lo:addr - lo + len(data)] = data
        elif len(data) > 1:
            for i, b in enumerate(data):
                self.poke(addr + i, bytes([b]))
        else:
            self.sparse[addr] = data[0]


@dataclass
class Result:
    """What the instruction did."""

    regs: dict[str, int]
    rflags: int
    memory: CaseMemory
    fault: dict | None
    undefined: set[str] = field(default_factory=set)

    @property
    def mmio_ops(self) -> list[dict]:
        return self.memory.ops


def run(mode: int, code: bytes, regs: dict[str, int], rflags: int,
        ram: list[tuple[int, bytes]], mmio: list[tuple[int, bytes]]) -> Result:
    """Run the instruction ``code`` at ``regs["rip"]`` (see the module docstring)."""
    memory = CaseMemory(ram, mmio)
    rip = regs.get("rip", 0)
    memory.poke(rip, code)
    cpu = Cpu(mode, regs={r: regs.get(r, 0) for r in GPRS}, rflags=rflags, rip=rip)
    fault, undefined = None, set()
    try:
        for _ in range(MAX_CHUNKS):
            ctx = emulate(cpu, memory, code)
            undefined |= ctx.undefined | set(UNDEFINED_FLAGS.get(ctx.insn.mnemonic, ()))
            if cpu.rip != rip:
                break
        else:
            fault = {"unhandleable": f"still repeating after {MAX_CHUNKS} chunks"}
    except Fault as exc:
        fault = {"vector": exc.vector}
    except Unhandleable as exc:
        fault = {"unhandleable": str(exc)}
    out = dict(cpu.regs)
    out["rip"] = cpu.rip
    return Result(out, cpu.rflags, memory, fault, undefined)


def run_case(case):
    """Run a :class:`spec.vectors.Case` on the reference emulator."""
    from spec.vectors import Outcome
    result = run(case.mode, case.code, case.regs, case.rflags, case.ram, case.mmio)
    fault = result.fault
    return Outcome(result.regs, result.rflags, result.memory.peek, result.mmio_ops, fault)
