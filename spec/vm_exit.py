"""VM exits: what the VT-x hardware reports, and the instruction bytes behind it.

Room: the record of one VM exit (:class:`Exit`: the exit reason, the
guest's RIP and instruction length, the clock, and the reason's own
information) and what the hardware works out from the guest's instruction
bytes when it exits or decides whether to: the I/O exit qualification and
VM-exit instruction-information field (:class:`IoQualification`,
:func:`decode_io`), which instructions exit unconditionally
(:func:`exiting_opcode`), which leave an interrupt shadow
(:func:`shadow_after`), which may run again at their own address
(:func:`follows_itself`) and which may change the code segment's size
(:func:`changes_mode`); and a block of code as the CPU translates and runs
it, decoded instruction by instruction (:class:`Block`,
:func:`decode_block`). The vcpu that reports these exits, and when, is
:class:`spec.vmx.HardwareVcpu`. Imports capstone (the instruction decoder
that stands in for the hardware's) and nothing of the spec.

Exits modelled here (Intel SDM vol. 3C, chapter 28 "VM Exits"):

``io``
    An IN, OUT, INS or OUTS (I/O bitmaps: every port exits except the
    ones whose intercept Xen clears, see
    :meth:`spec.vmx.HardwareVcpu.run`). The exit qualification (SDM vol.
    3C, table 28-5) gives: bits 2:0 size of access
    (0 = 1 byte, 1 = 2 bytes, 3 = 4 bytes); bit 3 direction (1 = IN); bit 4
    string instruction; bit 5 REP prefixed; bit 6 operand encoding
    (1 = immediate port); bits 31:16 port number. For INS/OUTS the
    VM-exit instruction-information field (table 28-8) gives the address
    size and, for OUTS, the segment register. The exit is fault-like: RIP
    still points at the instruction and nothing of it has executed.
``hlt``
    HLT exiting. RIP points at the HLT.
``ept_violation``
    An access to a guest-physical address that no RAM backs (the MMIO
    exit of ``DESIGN.md``). Like the EPT-violation exit qualification (SDM
    vol. 3C, table 28-7, bits 0-2) it says whether the access was a data
    read, a data write or an instruction fetch (``access``).
``vmcall``
    VMCALL (``0F 01 C1``), which always exits in VMX non-root operation
    (SDM vol. 3C, 26.1.2; exit reason 18): the guest calls the VMM. RIP
    points at the VMCALL; the VMM advances it by the instruction's length.
``preemption_timer``
    The VMX-preemption timer expired: the virtual clock reached the deadline
    the VMM armed (the next timer event of the device model) at an
    instruction boundary. Nothing of the next instruction has executed. A
    deadline already past at VM entry (the bus time of the I/O the VMM just
    completed went beyond it) gives the exit before the first instruction,
    after the entry's interrupt injection (SDM vol. 3C 26.7.4: the timer
    expires during VM entry).
``interrupt_window``
    The VMM asked for interrupt-window exiting (an interrupt is pending but
    the guest cannot take it) and the guest reached an instruction boundary
    where RFLAGS.IF = 1 and there is no interrupt shadow (SDM vol. 3C,
    25.2 "Other Causes of VM Exits"). If both are due at one boundary the
    preemption timer is reported.
``triple_fault``
    Delivering a double fault raised a further fault (SDM vol. 3C 27.1,
    exit reason 2). The VMM resets the domain.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import capstone

# Segment registers, in the encoding of the instruction-information field.
SEGMENTS = ("es", "cs", "ss", "ds", "fs", "gs")
_CS_SEG_PREFIX = {capstone.x86.X86_PREFIX_ES: "es", capstone.x86.X86_PREFIX_CS: "cs",
                  capstone.x86.X86_PREFIX_SS: "ss", capstone.x86.X86_PREFIX_DS: "ds",
                  capstone.x86.X86_PREFIX_FS: "fs", capstone.x86.X86_PREFIX_GS: "gs"}

_STI, _POP_SS, _MOV_SREG = 0xFB, 0x17, 0x8E


def shadow_after(code: bytes, mode: int, if_before: bool) -> bool:
    """Whether the instruction at the start of ``code``, executed with
    RFLAGS.IF = ``if_before``, leaves an interrupt shadow."""
    i = 0
    while i < len(code) and code[i] in _PREFIXES:
        i += 1
    if i >= len(code):
        return False
    op = code[i]
    if op == _STI:
        return not if_before
    if op == _POP_SS:
        return True
    return op == _MOV_SREG and i + 1 < len(code) and (code[i + 1] >> 3) & 7 == 2


@dataclass(frozen=True)
class IoQualification:
    """The exit qualification of an I/O instruction exit (SDM table 28-5),
    with the instruction-information fields that string forms add."""

    size: int           # 1, 2 or 4
    dir: str            # "in" or "out"
    string: bool
    rep: bool
    imm: bool           # operand encoding: immediate port
    port: int
    address_size: int   # 16, 32 or 64 (string forms)
    segment: str        # segment of the memory operand (string forms)

    def encode(self) -> int:
        """The qualification as the 64-bit field the hardware writes."""
        return ({1: 0, 2: 1, 4: 3}[self.size] | (self.dir == "in") << 3
                | self.string << 4 | self.rep << 5 | self.imm << 6 | self.port << 16)

    def as_info(self) -> dict:
        info = {"port": self.port, "size": self.size, "dir": self.dir,
                "string": self.string, "rep": self.rep, "imm": self.imm,
                "qualification": self.encode()}
        if self.string:
            info.update(address_size=self.address_size, segment=self.segment)
        return info


@dataclass(frozen=True)
class Exit:
    """One VM exit: its reason, the guest's RIP and instruction length, the
    clock, and the reason-specific information."""

    reason: str
    rip: int
    length: int
    icount: int
    io: IoQualification | None = None
    gpa: int | None = None
    detail: dict = field(default_factory=dict)

    def info(self) -> dict:
        if self.io is not None:
            return self.io.as_info()
        out = dict(self.detail)
        if self.gpa is not None:
            out["gpa"] = self.gpa
        return out


_IO_OPCODES = frozenset({0x6C, 0x6D, 0x6E, 0x6F, 0xE4, 0xE5, 0xE6, 0xE7,
                         0xEC, 0xED, 0xEE, 0xEF})
HLT = 0xF4
#: what :func:`exiting_opcode` reports for VMCALL (0F 01 C1)
VMCALL = 0x0F01C1
_PREFIXES = frozenset({0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3})


def exiting_opcode(code: bytes, mode: int) -> int | None:
    """The opcode of an instruction that causes an unconditional exit (I/O,
    HLT, or :data:`VMCALL`), skipping legacy prefixes (and REX in 64-bit
    mode)."""
    for i, byte in enumerate(code):
        if byte in _PREFIXES or (mode == 64 and 0x40 <= byte <= 0x4F):
            continue
        if code[i:i + 3] == b"\x0f\x01\xc1":
            return VMCALL
        return byte if byte in _IO_OPCODES or byte == HLT else None
    return None


def opcode_index(code: bytes, mode: int) -> int:
    """Where the opcode starts, after the prefixes."""
    i = 0
    while i < len(code) and (code[i] in _PREFIXES or (mode == 64 and 0x40 <= code[i] <= 0x4F)):
        i += 1
    return i


#: one-byte opcodes of control transfers, which may go to their own address
_TRANSFERS = frozenset(range(0x70, 0x80)) | {0xE0, 0xE1, 0xE2, 0xE3, 0xE8, 0xE9, 0xEA, 0xEB,
                                             0xC2, 0xC3, 0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF,
                                             0xF1, 0x9A}
#: string instructions, which a REP prefix repeats in place
_STRINGS = frozenset({0xA4, 0xA5, 0xA6, 0xA7, 0xAA, 0xAB, 0xAC, 0xAD, 0xAE, 0xAF,
                      0x6C, 0x6D, 0x6E, 0x6F})


def follows_itself(code: bytes, mode: int) -> bool:
    """Whether the instruction at the start of ``code`` can be followed by
    itself, at the same address: a REP string instruction (one iteration
    per execution) or a control transfer (a jump to itself)."""
    i = opcode_index(code, mode)
    if i >= len(code):
        return False
    op, rest = code[i], code[i + 1:i + 2]
    if op in _STRINGS:
        return 0xF2 in code[:i] or 0xF3 in code[:i]
    if op in _TRANSFERS:
        return True
    if op == 0xFF and rest:
        return rest[0] >> 3 & 7 in (2, 3, 4, 5)
    return op == 0x0F and bool(rest) and (0x80 <= rest[0] <= 0x8F
                                          or rest[0] in (0x05, 0x07, 0x34, 0x35))


def decode_io(code: bytes, mode: int, dx: int) -> tuple[IoQualification, int]:
    """What the hardware reports for the I/O instruction at the start of
    ``code`` in a ``mode``-bit code segment; returns it with the
    instruction's length."""
    md = _disassembler(mode)
    insn = next(md.disasm(code, 0), None)
    if insn is None:
        raise ValueError(f"undecodable I/O instruction {code[:15].hex()}")
    opcode = insn.opcode[0]
    string = opcode in (0x6C, 0x6D, 0x6E, 0x6F)
    direction = "in" if opcode in (0x6C, 0x6D, 0xE4, 0xE5, 0xEC, 0xED) else "out"
    imm = opcode in (0xE4, 0xE5, 0xE6, 0xE7)
    if opcode in (0x6C, 0x6E, 0xE4, 0xE6, 0xEC, 0xEE):
        size = 1
    else:
        size = 2 if _operand_size(insn, mode) == 16 else 4
    port = insn.operands[-1].imm if imm and direction == "in" else (
        insn.operands[0].imm if imm else dx & 0xFFFF)
    rep = insn.prefix[0] in (capstone.x86.X86_PREFIX_REP, capstone.x86.X86_PREFIX_REPNE)
    address_size = _address_size(insn, mode)
    segment = "es" if direction == "in" else _CS_SEG_PREFIX.get(insn.prefix[1], "ds")
    qual = IoQualification(size=size, dir=direction, string=string, rep=rep, imm=imm,
                           port=port & 0xFFFF, address_size=address_size,
                           segment=segment if string else "")
    return qual, insn.size


def _operand_size(insn, mode: int) -> int:
    has66 = insn.prefix[2] == capstone.x86.X86_PREFIX_OPSIZE
    if mode == 16:
        return 32 if has66 else 16
    return 16 if has66 else 32


def _address_size(insn, mode: int) -> int:
    has67 = insn.prefix[3] == capstone.x86.X86_PREFIX_ADDRSIZE
    if mode == 64:
        return 32 if has67 else 64
    if mode == 32:
        return 16 if has67 else 32
    return 32 if has67 else 16


_DISASM: dict[int, capstone.Cs] = {}


def _disassembler(mode: int) -> capstone.Cs:
    if mode not in _DISASM:
        md = capstone.Cs(capstone.CS_ARCH_X86,
                         {16: capstone.CS_MODE_16, 32: capstone.CS_MODE_32,
                          64: capstone.CS_MODE_64}[mode])
        md.detail = True
        _DISASM[mode] = md
    return _DISASM[mode]


# --- translated blocks ------------------------------------------------------------------

#: one-byte opcodes after which the code segment's size may differ: far
#: JMP/CALL/RET, IRET, and the software interrupts (which load CS)
_CS_LOADS = frozenset({0x9A, 0xEA, 0xCA, 0xCB, 0xCF, 0xCC, 0xCD, 0xCE, 0xF1})
#: 0F xx opcodes after which it may differ: MOV to a control register,
#: WRMSR (EFER), RSM, SYSCALL, SYSRET, SYSENTER, SYSEXIT
_CS_LOADS_0F = frozenset({0x22, 0x30, 0xAA, 0x05, 0x07, 0x34, 0x35})


def changes_mode(code: bytes, mode: int) -> bool:
    """Whether the instruction at the start of ``code`` may change the code
    segment's size (:meth:`spec.guest_linear.GuestLinear.mode`): it loads
    CS (a far transfer, IRET, a software interrupt, SYSCALL and its kin),
    CR0 (MOV to CR0, LMSW: protection on or off) or EFER (WRMSR; and MOV
    to CR0 that turns paging on activates IA-32e mode), or leaves SMM."""
    i = opcode_index(code, mode)
    op, rest = code[i:i + 1], code[i + 1:i + 3]
    if not op:
        return False
    if op[0] in _CS_LOADS:
        return True
    if op[0] == 0xFF and rest:
        return rest[0] >> 3 & 7 in (3, 5)                  # CALL/JMP far through memory
    if op[0] != 0x0F or not rest:
        return False
    return rest[0] in _CS_LOADS_0F or (rest[0] == 0x01 and len(rest) > 1
                                       and rest[1] >> 3 & 7 == 6)      # LMSW


def _is_cli(code: bytes, mode: int) -> bool:
    i = opcode_index(code, mode)
    return code[i:i + 1] == b"\xfa"


@dataclass(frozen=True)
class Block:
    """A block of guest code as the CPU translates it: what Unicorn reports
    when it starts one (``UC_HOOK_BLOCK``: its linear address and size),
    decoded in the code segment's size ``mode``.

    Unicorn (QEMU's TCG) translates straight-line code into a block that
    runs from its first instruction to its last, unless an instruction
    faults or exits on the way. It ends a block after every instruction
    that may change how the next bytes decode or whether interrupts may be
    taken: jumps, calls and returns, STI, POPF, MOV SS and POP SS (and
    runs the instruction after an interrupt shadow as a block of its own),
    an instruction that loads CS, CR0 or EFER. A REP string instruction
    ends its block and each iteration runs it again, as a block of one
    instruction at the same address. So within one block IF can go from 1
    to 0 (CLI) but not from 0 to 1, only its last instruction can cast an
    interrupt shadow, and the code segment's size is the one its first
    instruction saw."""

    address: int
    raw: bytes
    mode: int
    #: the linear address and the bytes of each instruction, in order
    starts: tuple[int, ...]
    codes: tuple[bytes, ...]
    #: the index of the first instruction that exits (:func:`exiting_opcode`),
    #: if any
    exiting: int | None
    #: a CLI comes before the last instruction (IF = 0 when the last runs)
    clears_if: bool
    #: the last instruction is STI, which leaves a shadow if IF was 0 before it
    sti_last: bool
    #: the last instruction is MOV SS or POP SS, which always leaves a shadow
    ss_last: bool
    #: the last instruction may change the code segment's size (:func:`changes_mode`)
    mode_last: bool
    index: dict = field(default_factory=dict, compare=False)

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def last(self) -> bytes:
        return self.codes[-1]

    def end(self) -> int:
        """The linear address after the block's last byte."""
        return self.address + len(self.raw)


def decode_block(raw: bytes, address: int, mode: int) -> Block:
    """Decode the block of ``raw`` bytes at linear ``address``.

    Every instruction is decoded (capstone). Bytes it cannot decode end the
    block: an instruction that exits (LOCK on IN/OUT/HLT, which the
    hardware refuses with #UD before any exit) is taken by its opcode, and
    anything else is the block's last instruction, which the CPU refuses
    (#UD) when it gets there."""
    starts: list[int] = []
    codes: list[bytes] = []
    offset = 0
    md = _lite_disassembler(mode)
    while offset < len(raw):
        for _at, length, _mnemonic, _operands in md.disasm_lite(raw[offset:], address + offset):
            starts.append(address + offset)
            codes.append(raw[offset:offset + length])
            offset += length
        if offset >= len(raw):
            break
        code = raw[offset:offset + 15]
        starts.append(address + offset)
        op = exiting_opcode(code, mode)
        if op is None:
            codes.append(code)
            break
        at = opcode_index(code, mode)
        length = at + (3 if op == VMCALL else 2 if op in (0xE4, 0xE5, 0xE6, 0xE7) else 1)
        codes.append(code[:length])
        offset += length
    if not codes:                   # an empty block: what the CPU refuses at its address
        starts, codes = [address], [raw]
    exiting = next((i for i, code in enumerate(codes) if exiting_opcode(code, mode) is not None),
                   None)
    clears_if = any(_is_cli(code, mode) for code in codes[:-1])
    last = codes[-1]
    sti_last = last[opcode_index(last, mode):][:1] == bytes([_STI])
    return Block(address, raw, mode, tuple(starts), tuple(codes), exiting, clears_if, sti_last,
                 shadow_after(last, mode, True), changes_mode(last, mode),
                 {start: i for i, start in enumerate(starts)})


_LITE: dict[int, capstone.Cs] = {}


def _lite_disassembler(mode: int) -> capstone.Cs:
    if mode not in _LITE:
        _LITE[mode] = capstone.Cs(capstone.CS_ARCH_X86,
                                  {16: capstone.CS_MODE_16, 32: capstone.CS_MODE_32,
                                   64: capstone.CS_MODE_64}[mode])
    return _LITE[mode]
