"""The VMM's x86 instruction emulator (Xen's ``x86_emulate``).

Room: decoding one guest instruction into the operand model and executing
its semantics against a register file and a memory that may be MMIO. Imports
capstone (decoding only) and :mod:`spec.bv`; nothing of the VMM: the VMM
gives it a :class:`spec.x86.state.Memory` that turns accesses into ioreqs.

When a guest touches memory that no RAM backs, the hardware exits with the
guest-physical address only; the VMM must fetch the instruction at RIP,
decode it and carry it out itself, reading and writing the device through
the device model. Read-modify-write forms such as ``add %eax,(mmio)`` need
the device's current value before the new one can be computed.

Layout (as sail-riscv groups an instruction family with its forms,
semantics, flags and prose):

* :mod:`spec.x86.operands` — the one operand model: registers, memory
  operands, immediates, and the decoded instruction;
* :mod:`spec.x86.decode` — capstone's decoding mapped onto that model, and the
  one table of emulated forms (built from the families' ``FORMS``);
* :mod:`spec.x86.state` — the register file, RFLAGS, the memory interface,
  faults, and operand access (effective addresses, page splitting);
* :mod:`spec.x86.flags` — how the arithmetic flags are computed (SDM vol. 1,
  3.4.3 and appendix A);
* one module per instruction family: :mod:`spec.x86.alu`, ...;
* :mod:`spec.x86.emulate` — one instruction, start to end.

Every semantic function is written over :mod:`spec.bv`, so the proofs in
``proofs/x86`` run the same code on Z3 bit-vectors.
"""
