"""The vcpu on Unicorn, built to stop only where the VMM must act.

Room: guest execution for the impl engine: RAM, the virtual instruction
clock, and the exits (I/O, HLT, unbacked memory, undecodable or faulting
instructions, the instruction budget). Imports Unicorn, capstone (for
instruction lengths only) and :mod:`spec.platform`.

How it stays fast and exact
---------------------------

The reference model calls Python on every instruction. Here Python runs once
per *translated block* (``UC_HOOK_BLOCK``): the block's instructions are
decoded once (cached by address, mode and bytes) and the clock advances by
their number when the next block starts. Instructions that exit — IN, OUT,
INS, OUTS and HLT, with any prefixes — get a code hook on their address
alone. The first time a block containing such an instruction is seen, the
hook is added, Unicorn's translation of that address is dropped and the
block restarts (its first instruction has not run yet when the block hook is
called), so the retranslated block stops exactly there.

A REP string instruction ends its block, and each iteration re-enters it, so
counting blocks counts each iteration once, as the reference does. A fault
stops the block part-way; Unicorn reports the faulting instruction's EIP,
and the clock counts the instructions of the block before it.

Interrupts. The interrupt shadow (after an STI that set IF, a MOV SS or a
POP SS) is tracked without a hook per instruction: those three instructions
get a code hook like the exiting ones, which notes the instruction count at
which their shadow holds. While the VMM asks for interrupt-window exiting
the vcpu runs one instruction at a time, through the same stop points, and
exits at the first boundary with IF = 1 and no shadow. The preemption timer
is a second budget: the run stops at whichever comes first.

Known limit: a guest write into the very block that is executing makes
Unicorn abandon the block after the writing instruction; the next block
hook would then count the abandoned instructions as well. None of the
bundled guests modify their own code.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field

import capstone
import unicorn
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uclib

from spec import platform

_EIP, _EFLAGS, _CR0 = X.UC_X86_REG_EIP, X.UC_X86_REG_EFLAGS, X.UC_X86_REG_CR0
_GPR = {"eax": X.UC_X86_REG_EAX, "ecx": X.UC_X86_REG_ECX, "edx": X.UC_X86_REG_EDX,
        "ebx": X.UC_X86_REG_EBX, "esp": X.UC_X86_REG_ESP, "ebp": X.UC_X86_REG_EBP,
        "esi": X.UC_X86_REG_ESI, "edi": X.UC_X86_REG_EDI, "eip": _EIP, "eflags": _EFLAGS}
_SEG = {"es": X.UC_X86_REG_ES, "cs": X.UC_X86_REG_CS, "ss": X.UC_X86_REG_SS,
        "ds": X.UC_X86_REG_DS, "fs": X.UC_X86_REG_FS, "gs": X.UC_X86_REG_GS}
_SEG_OVERRIDE = {0x26: "es", 0x2E: "cs", 0x36: "ss", 0x3E: "ds", 0x64: "fs", 0x65: "gs"}
_LEGACY_PREFIXES = frozenset(_SEG_OVERRIDE) | {0x66, 0x67, 0xF0, 0xF2, 0xF3}

#: opcode -> (direction, string, element size or 0 for the operand size, immediate port)
IO_FORMS = {
    0x6C: ("in", True, 1, False), 0x6D: ("in", True, 0, False),
    0x6E: ("out", True, 1, False), 0x6F: ("out", True, 0, False),
    0xE4: ("in", False, 1, True), 0xE5: ("in", False, 0, True),
    0xE6: ("out", False, 1, True), 0xE7: ("out", False, 0, True),
    0xEC: ("in", False, 1, False), 0xED: ("in", False, 0, False),
    0xEE: ("out", False, 1, False), 0xEF: ("out", False, 0, False),
}
HLT = 0xF4
STI, POP_SS, MOV_SREG = 0xFB, 0x17, 0x8E
EFLAGS_IF = 1 << 9
EFLAGS_DF = 1 << 10
LOCK_UD = "LOCK prefix on an instruction that does not accept it (#UD)"


@dataclass
class Exit:
    """Why the vcpu stopped, where, and at which instruction count."""

    reason: str
    rip: int            # linear address of the instruction
    length: int
    icount: int
    info: dict = field(default_factory=dict)
    io: "IoExit | None" = None


@dataclass
class IoExit:
    """The I/O exit qualification and instruction information (SDM vol. 3C
    tables 28-5 and 28-8), decoded from the instruction bytes."""

    port: int
    size: int
    dir: str
    string: bool
    rep: bool
    imm: bool
    address_size: int
    segment: str

    def info(self) -> dict:
        qual = ((self.size - 1) | (self.dir == "in") << 3 | self.string << 4
                | self.rep << 5 | self.imm << 6 | self.port << 16)
        out = {"port": self.port, "size": self.size, "dir": self.dir, "string": self.string,
               "rep": self.rep, "imm": self.imm, "qualification": qual}
        if self.string:
            out["address_size"] = self.address_size
            out["segment"] = self.segment
        return out


def split_prefixes(code: bytes) -> tuple[bytes, int | None]:
    """The legacy prefixes at the start of ``code`` and the opcode after them."""
    i = 0
    while i < len(code) and code[i] in _LEGACY_PREFIXES:
        i += 1
    return code[:i], (code[i] if i < len(code) else None)


def decode_io(code: bytes, mode: int, dx: int) -> tuple[IoExit, int]:
    """The exit information of the I/O instruction at the start of ``code``
    and its length."""
    prefixes, opcode = split_prefixes(code)
    direction, string, size, imm = IO_FORMS[opcode]
    wide = (mode == 32) != (0x66 in prefixes)
    if not size:
        size = 4 if wide else 2
    address_size = 32 if (mode == 32) != (0x67 in prefixes) else 16
    segment = ""
    if string:
        segment = "es"
        if direction == "out":
            overrides = [_SEG_OVERRIDE[p] for p in prefixes if p in _SEG_OVERRIDE]
            segment = overrides[-1] if overrides else "ds"
    length = len(prefixes) + 1 + imm
    port = code[length - 1] if imm else dx & 0xFFFF
    rep = 0xF3 in prefixes or 0xF2 in prefixes
    return IoExit(port, size, direction, string, rep, imm, address_size, segment), length


@dataclass
class Block:
    """One translated block as the clock sees it."""

    addresses: tuple[int, ...]
    index: dict[int, int]
    exiting: tuple[int, ...]        # addresses of instructions that exit
    shadowing: tuple[int, ...] = ()  # STI, MOV SS, POP SS


_EMPTY = Block((), {}, ())


class DeliveryFault(Exception):
    """An interrupt that the guest's table cannot deliver."""


def _casts_shadow(code: bytes, prefixes: bytes, opcode: int | None) -> bool:
    """STI, POP SS or MOV SS: ``code`` split by :func:`split_prefixes`."""
    if opcode in (STI, POP_SS):
        return True
    i = len(prefixes)
    return opcode == MOV_SREG and i + 1 < len(code) and code[i + 1] >> 3 & 7 == 2


class Vcpu:
    """One vcpu and the domain's RAM on Unicorn."""

    def __init__(self, memory_bytes: int) -> None:
        self.memory_bytes = memory_bytes
        self.ram = [(0, platform.VGA_HOLE_START), (platform.VGA_HOLE_END, memory_bytes)]
        uc = self.uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_32)
        # Unicorn's own C entry points, called directly: the binding's
        # generic register and memory accessors cost microseconds per call.
        self._handle = uc._uch
        self._value = ctypes.c_uint64()
        self._value_ref = ctypes.byref(self._value)
        self._buffer = ctypes.create_string_buffer(4096)
        for start, end in self.ram:
            uc.mem_map(start, end - start)
        self.icount = 0
        self.shadow = False             # interrupt shadow at the current boundary
        self._shadow_at = -1
        #: set while impl's VMM steps an instruction itself: the clock's
        #: hooks stand aside
        self.quiet = False
        self._blocks: dict[tuple[int, int, int], tuple[bytes, Block]] = {}
        self._hooked: set[int] = set()
        self._disasm = {m: capstone.Cs(capstone.CS_ARCH_X86, cm) for m, cm in
                        ((16, capstone.CS_MODE_16), (32, capstone.CS_MODE_32))}
        uc.hook_add(unicorn.UC_HOOK_BLOCK, self._on_block)
        uc.hook_add(unicorn.UC_HOOK_MEM_UNMAPPED, self._on_unmapped)
        # Real mode at the reset vector (SDM vol. 3A table 9-1).
        uc.reg_write(_CR0, 0x10)
        uc.reg_write(_SEG["cs"], platform.RESET_CS)
        for seg in ("ds", "es", "ss", "fs", "gs"):
            uc.reg_write(_SEG[seg], 0)
        uc.reg_write(_EFLAGS, 0x2)
        uc.reg_write(X.UC_X86_REG_IDTR, (0, 0, 0xFFFF, 0))
        uc.reg_write(X.UC_X86_REG_GDTR, (0, 0, 0xFFFF, 0))
        uc.reg_write(_EIP, platform.RESET_IP)

    # --- guest state ------------------------------------------------------------

    def _reg(self, reg_id: int) -> int:
        self._value.value = 0
        uclib.uc_reg_read(self._handle, reg_id, self._value_ref)
        return self._value.value

    def get(self, reg: str) -> int:
        return self._reg(_GPR[reg])

    def put(self, reg: str, value: int) -> None:
        self._value.value = value & 0xFFFFFFFF
        uclib.uc_reg_write(self._handle, _GPR[reg], self._value_ref)

    def backed(self, gpa: int, length: int) -> bool:
        return any(lo <= gpa and gpa + length <= hi for lo, hi in self.ram)

    def read(self, gpa: int, length: int) -> bytes:
        if length > 4096:
            return bytes(self.uc.mem_read(gpa, length))
        if uclib.uc_mem_read(self._handle, gpa, self._buffer, length):
            raise unicorn.UcError(unicorn.UC_ERR_READ_UNMAPPED)
        return ctypes.string_at(self._buffer, length)

    def write(self, gpa: int, data: bytes) -> None:
        self.uc.mem_write(gpa, data)

    def mode(self) -> int:
        if not self._reg(_CR0) & 1:
            return 16
        return 32 if self._descriptor("cs")[1] & (1 << 22) else 16

    def seg_base(self, seg: str) -> int:
        if not self._reg(_CR0) & 1:
            return self._reg(_SEG[seg]) << 4
        low, high = self._descriptor(seg)
        return (low >> 16) | (high & 0xFF) << 16 | (high & 0xFF000000)

    def _descriptor(self, seg: str) -> tuple[int, int]:
        selector = self._reg(_SEG[seg])
        _, base, limit, _ = self.uc.reg_read(X.UC_X86_REG_GDTR)
        offset = selector & 0xFFF8
        if selector & 4 or offset + 7 > limit or not self.backed(base + offset, 8):
            return 0, 0
        raw = self.read(base + offset, 8)
        return int.from_bytes(raw[:4], "little"), int.from_bytes(raw[4:], "little")

    def rip(self) -> int:
        """The linear address of the next instruction."""
        return self.seg_base("cs") + self._reg(_EIP)

    def code_at(self, linear: int) -> bytes:
        """Up to 15 bytes that RAM backs at ``linear`` (for diagnostics)."""
        n = 0
        while n < 15 and self.backed(linear + n, 1):
            n += 1
        return self.read(linear, n) if n else b""

    # --- running --------------------------------------------------------------------

    def run(self, budget: int, deadline: int | None = None, window: bool = False) -> Exit:
        """Run until an exit, until ``budget`` more instructions retired
        (``limit``), until the clock reaches ``deadline``
        (``preemption_timer``) or, with ``window``, until the guest can take
        an interrupt (``interrupt_window``)."""
        end = self.icount + budget
        stop = end if deadline is None else min(end, deadline)
        if not window:
            return self._timed(self._run_to(stop), deadline, end)
        while True:
            if self.icount >= stop:
                return self._timed(Exit("limit", self.rip(), 0, self.icount), deadline, end)
            if self._reg(_EFLAGS) & EFLAGS_IF and not self.shadow:
                return Exit("interrupt_window", self.rip(), 0, self.icount)
            ex = self._run_to(self.icount + 1)
            if ex.reason != "limit":
                return ex

    @staticmethod
    def _timed(ex: Exit, deadline: int | None, end: int) -> Exit:
        """A stop at the deadline is the preemption timer's (the budget wins a tie)."""
        if ex.reason == "limit" and deadline is not None and deadline <= ex.icount < end:
            ex.reason = "preemption_timer"
        return ex

    def _run_to(self, stop: int) -> Exit:
        self._budget_end = stop
        self._shadow_at = self.icount if self.shadow else -1
        ex = self._run()
        self.shadow = self._shadow_at == self.icount
        return ex

    def _run(self) -> Exit:
        while True:
            self._exit: Exit | None = None
            self._restart = False
            self._fetch_fault: int | None = None
            self._gpa: int | None = None
            self._base = self.icount
            self._block = _EMPTY
            try:
                self.uc.emu_start(self._reg(_EIP), 1 << 40)
            except unicorn.UcError as exc:
                return self._fault(exc)
            if self._restart:
                continue
            assert self._exit is not None, "emulation ended without an exit"
            self.icount = self._exit.icount
            return self._exit

    def _on_block(self, uc, address: int, size: int, _data) -> None:
        if self.quiet:
            return
        self._base += len(self._block.addresses)
        block = self._decode(address, size)
        missing = [a for a in block.exiting + block.shadowing if a not in self._hooked]
        end = self._budget_end - self._base
        if end < len(block.addresses):
            if end <= 0:
                self._stop(Exit("limit", address, 0, self._base))
                return
            if block.addresses[end] not in self._hooked:
                missing.append(block.addresses[end])
        if missing:
            for a in missing:
                self._hooked.add(a)
                uc.hook_add(unicorn.UC_HOOK_CODE, self._on_stop_point, begin=a, end=a)
                uc.ctl_remove_cache(a, a + 1)
            self.icount = self._base
            self._block = _EMPTY
            self._restart = True
            uc.emu_stop()
            return
        self._block = block

    def _stop(self, ex: Exit) -> None:
        self._exit = ex
        self._block = _EMPTY
        self.uc.emu_stop()

    def _on_stop_point(self, uc, address: int, size: int, _data) -> None:
        """An instruction that exits, or the one at which the budget ends."""
        if self.quiet:
            return
        index = self._block.index.get(address)
        if index is None:
            return
        icount = self._base + index
        if icount >= self._budget_end:
            self._stop(Exit("limit", address, 0, icount))
            return
        code = self.read(address, min(size, 15))
        prefixes, opcode = split_prefixes(code)
        if _casts_shadow(code, prefixes, opcode):
            if opcode != STI or not self._reg(_EFLAGS) & EFLAGS_IF:
                self._shadow_at = icount + 1
            return
        if opcode == HLT or opcode in IO_FORMS:
            if 0xF0 in prefixes:
                self._stop(Exit("invalid_opcode", address, size, icount,
                                {"bytes": code.hex(), "error": LOCK_UD}))
            elif opcode == HLT:
                self._stop(Exit("hlt", address, size, icount))
            else:
                io, length = decode_io(code, self.mode(), self._reg(X.UC_X86_REG_EDX))
                self._stop(Exit("io", address, length, icount, io.info(), io))

    def _on_unmapped(self, uc, access: int, address: int, size: int, value: int, _data) -> bool:
        if self.quiet:
            return False
        if access == unicorn.UC_MEM_FETCH_UNMAPPED:
            self._fetch_fault = address
        self._gpa = address
        self._access = {unicorn.UC_MEM_READ_UNMAPPED: "read",
                        unicorn.UC_MEM_WRITE_UNMAPPED: "write"}.get(access, "fetch")
        return False

    def _fault(self, exc: unicorn.UcError) -> Exit:
        if self._fetch_fault is not None:
            rip = self._fetch_fault
            icount = self._base + len(self._block.addresses)
        else:
            rip = self.rip()
            icount = self._base + self._block.index.get(rip, len(self._block.addresses))
        self.icount = icount
        self.put("eip", rip - self.seg_base("cs"))
        code = self.code_at(rip).hex()
        if self._gpa is not None:
            return Exit("ept_violation", rip, 0, icount,
                        {"bytes": code, "access": self._access, "gpa": self._gpa})
        reason = "invalid_opcode" if exc.errno == unicorn.UC_ERR_INSN_INVALID else "cpu_error"
        return Exit(reason, rip, 0, icount, {"bytes": code, "error": str(exc)})

    def _decode(self, address: int, size: int) -> Block:
        mode = self.mode()
        raw = self.read(address, size)
        cached = self._blocks.get((address, size, mode))
        if cached is not None and cached[0] == raw:
            return cached[1]
        addresses, exiting, shadowing = [], [], []
        offset = 0
        while offset < size:
            for _addr, length, _mn, _ops in self._disasm[mode].disasm_lite(
                    raw[offset:], address + offset):
                addresses.append(address + offset)
                insn = raw[offset:offset + length]
                prefixes, opcode = split_prefixes(insn)
                if opcode == HLT or opcode in IO_FORMS:
                    exiting.append(address + offset)
                elif _casts_shadow(insn, prefixes, opcode):
                    shadowing.append(address + offset)
                offset += length
            if offset >= size:
                break
            # capstone refuses some forms the CPU still decodes, LOCK on
            # IN/OUT among them: those exit (as #UD), so they are ours.
            prefixes, opcode = split_prefixes(raw[offset:offset + 15])
            addresses.append(address + offset)
            if opcode != HLT and opcode not in IO_FORMS:
                break                               # undecodable: the block ends here
            exiting.append(address + offset)
            offset += len(prefixes) + 1 + (opcode in (0xE4, 0xE5, 0xE6, 0xE7))
        block = Block(tuple(addresses), {a: i for i, a in enumerate(addresses)}, tuple(exiting),
                      tuple(shadowing))
        self._blocks[(address, size, mode)] = (raw, block)
        return block

    # --- interrupt delivery ------------------------------------------------------------

    def deliver(self, vector: int) -> None:
        """Deliver an external interrupt as the CPU does on VM entry: through
        the IVT in real mode, through an interrupt or trap gate of the IDT in
        protected mode (same privilege level only, no error code)."""
        _, base, limit, _ = self.uc.reg_read(X.UC_X86_REG_IDTR)
        eflags, eip = self._reg(_EFLAGS), self._reg(_EIP)
        cs = self._reg(_SEG["cs"])
        if not self._reg(_CR0) & 1:
            if vector * 4 + 3 > limit:
                raise DeliveryFault(f"vector {vector:#x} is beyond the IVT limit {limit:#x} (#GP)")
            target = int.from_bytes(self._table(base + vector * 4, 4), "little")
            self._frame(2, (eflags, cs, eip))
            self.put("eflags", eflags & ~0x40300)            # IF, TF, AC
            self.uc.reg_write(_SEG["cs"], target >> 16)
            self.put("eip", target & 0xFFFF)
            return
        if vector * 8 + 7 > limit:
            raise DeliveryFault(f"vector {vector:#x} is beyond the IDT limit {limit:#x} (#GP)")
        gate = int.from_bytes(self._table(base + vector * 8, 8), "little")
        kind, present = gate >> 40 & 0x1F, gate >> 47 & 1
        if not present:
            raise DeliveryFault(f"IDT gate {vector:#x} is not present (#NP)")
        if kind not in (6, 7, 14, 15):
            raise DeliveryFault(f"IDT gate {vector:#x} has type {kind & 0xF:#x}, not an "
                                f"interrupt or trap gate (#GP)")
        selector = gate >> 16 & 0xFFFF
        offset = gate & 0xFFFF | gate >> 32 & 0xFFFF0000
        if selector & 4 or selector & 3 != cs & 3:
            raise DeliveryFault(f"IDT gate {vector:#x}: handler selector {selector:#x} "
                                f"changes privilege (not modelled)")
        wide = kind >= 14
        self._frame(4 if wide else 2, (eflags, cs, eip))
        clear = 0x34100 | (0x200 if kind in (6, 14) else 0)   # TF NT RF VM (+ IF)
        self.put("eflags", eflags & ~clear)
        if selector != cs:
            self.uc.reg_write(_SEG["cs"], selector)
        self.put("eip", offset if wide else offset & 0xFFFF)

    def _table(self, linear: int, n: int) -> bytes:
        linear &= 0xFFFFFFFF
        if not self.backed(linear, n):
            raise DeliveryFault(f"event delivery reads {linear:#x}+{n}, which is not RAM")
        return self.read(linear, n)

    def _frame(self, width: int, values: tuple[int, ...]) -> None:
        big = bool(self._reg(_CR0) & 1) and bool(self._descriptor("ss")[1] >> 22 & 1)
        mask = 0xFFFFFFFF if big else 0xFFFF
        esp = self._reg(X.UC_X86_REG_ESP)
        sp, ss = esp & mask, self.seg_base("ss")
        for value in values:
            sp = sp - width & mask
            at = ss + sp & 0xFFFFFFFF
            if not self.backed(at, width):
                raise DeliveryFault(f"event delivery writes {at:#x}+{width}, which is not RAM")
            self.write(at, (value & (1 << 8 * width) - 1).to_bytes(width, "little"))
        self.put("esp", esp & ~mask | sp)
