"""The operand model: what a decoded instruction operates on.

Room: the data types every instruction family works with; no decoding, no
semantics. Imports nothing of the emulator.

An operand is one of three forms (the "one table of operand forms" of
Xen's ``x86_emulate``, in the notation of the SDM's opcode tables):

``r``  a general-purpose register, or the part of one that the operand size
       selects (AL, AH, AX, EAX, RAX, R8B, ...);
``m``  a memory operand: segment, base, index, scale, displacement and the
       address size that the effective address is computed in;
``i``  an immediate, already sign- or zero-extended by the decoder as the
       instruction's definition says.

An instruction's *form* is its operands' kinds in order (``"m,r"`` for
``add [mem], eax``).
"""

from __future__ import annotations

from dataclasses import dataclass

#: the 64-bit general-purpose registers, in encoding order
GPRS = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")


@dataclass(frozen=True)
class Reg:
    """``size`` bytes of register ``name`` starting at byte ``offset``
    (``offset = 1`` only for AH, CH, DH, BH)."""

    name: str
    size: int
    offset: int = 0
    kind: str = "r"


@dataclass(frozen=True)
class Mem:
    """A memory operand of ``size`` bytes at ``segment:[base + index*scale +
    disp]``, computed in ``address_size`` bits (``base`` is ``"rip"`` for
    RIP-relative addressing)."""

    size: int
    segment: str
    base: str | None
    index: str | None
    scale: int
    disp: int
    address_size: int
    kind: str = "m"


@dataclass(frozen=True)
class Imm:
    """An immediate operand, extended to ``size`` bytes."""

    value: int
    size: int
    kind: str = "i"


Operand = Reg | Mem | Imm


@dataclass(frozen=True)
class Insn:
    """One decoded instruction."""

    mnemonic: str               # the family member: "add", "movzx", "movs", ...
    operands: tuple[Operand, ...]
    mode: int                   # 16, 32 or 64: the code segment's default size
    length: int
    raw: bytes
    address_size: int
    lock: bool = False
    rep: str | None = None      # "rep"/"repe" or "repne" for string forms
    element_size: int = 0       # string forms: bytes per element

    @property
    def form(self) -> str:
        """The operands' kinds, e.g. ``"m,r"``."""
        return ",".join(op.kind for op in self.operands)

    @property
    def memory(self) -> Mem | None:
        """The memory operand, if there is one."""
        return next((op for op in self.operands if isinstance(op, Mem)), None)
