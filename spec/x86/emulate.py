"""One instruction, from its bytes to its effects.

Room: the emulator's entry point, the checks every instruction passes
before its semantics run (LOCK, the form table), and the step of RIP.
Imports the rest of :mod:`spec.x86`.

``emulate(cpu, memory, code)``:

1. decode ``code`` in the CPU's mode (:func:`spec.x86.decode.decode`);
2. LOCK is accepted only on the instructions that allow it and only with a
   memory destination; otherwise #UD (SDM vol. 2, "LOCK");
3. run the family's semantics, which read and write operands through a
   :class:`spec.x86.state.Context` (its ``accesses`` record every memory
   access, in order);
4. on success RIP moves past the instruction, unless a repeated string
   instruction has elements left (``ctx.restart``). A :class:`Fault` leaves
   RIP at the instruction, and leaves registers and flags as they were: the
   semantics work on a copy that is only committed on success.
"""

from __future__ import annotations

import copy

from spec import bv
from spec.x86.decode import LOCKABLE, SEMANTICS, decode
from spec.x86.operands import Insn, Mem
from spec.x86.state import UD, Context, Cpu, Fault, Memory


def execute(cpu: Cpu, memory: Memory, insn: Insn) -> Context:
    """Carry out a decoded instruction; returns its context (accesses)."""
    if insn.lock and not (insn.mnemonic in LOCKABLE and insn.operands
                          and isinstance(insn.operands[0], Mem)):
        raise Fault(UD, f"LOCK prefix on {insn.mnemonic} ({insn.form})")
    work = copy.copy(cpu)
    work.regs = dict(cpu.regs)
    ctx = Context(work, memory, insn)
    SEMANTICS[insn.mnemonic](ctx, insn)
    cpu.regs, cpu.rflags = work.regs, work.rflags
    if not ctx.restart:
        cpu.rip = (cpu.rip + insn.length) & {16: 0xFFFF, 32: bv.mask(32), 64: bv.mask(64)}[cpu.mode]
    return ctx


def emulate(cpu: Cpu, memory: Memory, code: bytes) -> Context:
    """Decode and carry out the instruction at the start of ``code``."""
    return execute(cpu, memory, decode(code, cpu.mode))
