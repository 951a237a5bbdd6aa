"""Why impl's vcpu stops: the exits, and the instruction bytes that cause them.

Room: what the vcpu reports to impl's VMM when it stops (:class:`Exit`,
with the I/O exit qualification and instruction information of
:class:`IoExit` decoded from the instruction's bytes), the classification
of instruction bytes that tells which instructions exit or cast an
interrupt shadow, and the hooks through which Unicorn's ways of stopping
become exits (:class:`ExitHooks`, a part of :class:`impl.vcpu.Vcpu`): a
stop point reached (I/O, HLT, VMCALL, an instruction that casts a shadow,
the end of a budget), memory that no RAM backs or that is write-protected
(a page of code, a log-dirty page), an undecodable instruction, and the
interrupts and exceptions Unicorn raises instead of delivering. Imports
Unicorn, :mod:`impl.registers`, :mod:`impl.guest_linear` (for faults of
linear reads) and :mod:`spec.physical_cpu` (the hardware: the error code of
an exception); none of the reference's behaviour (the reference's exits are
:mod:`spec.vm_exit`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import unicorn
from unicorn import x86_const as X

from impl.guest_linear import LinearFault, pfns
from impl.registers import EFLAGS_IF, RFLAGS, RIP, SEG
from spec import physical_cpu

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
VMCALL = b"\x0f\x01\xc1"
STI, POP_SS, MOV_SREG = 0xFB, 0x17, 0x8E
POPF = 0x9D


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


def split_prefixes(code: bytes, mode: int = 32) -> tuple[bytes, int | None]:
    """The prefixes at the start of ``code`` (legacy ones; in 64-bit mode REX
    too) and the opcode after them."""
    i = 0
    while i < len(code) and (code[i] in _LEGACY_PREFIXES
                             or (mode == 64 and 0x40 <= code[i] <= 0x4F)):
        i += 1
    return code[:i], (code[i] if i < len(code) else None)


def decode_io(code: bytes, mode: int, dx: int) -> tuple[IoExit, int]:
    """The exit information of the I/O instruction at the start of ``code``
    and its length."""
    prefixes, opcode = split_prefixes(code, mode)
    direction, string, size, imm = IO_FORMS[opcode]
    wide = (mode != 16) != (0x66 in prefixes)          # REX.W does not widen I/O
    if not size:
        size = 4 if wide else 2
    if mode == 64:
        address_size = 32 if 0x67 in prefixes else 64
    else:
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


class InternalError(RuntimeError):
    """A state the vcpu's own bookkeeping cannot account for: a defect of
    impl, which the machine turns into a domain crash that names it."""


def is_exiting(insn: bytes, prefixes: bytes, opcode: int | None) -> bool:
    """IN, OUT, INS, OUTS, HLT or VMCALL: ``insn`` split by :func:`split_prefixes`."""
    return (opcode == HLT or opcode in IO_FORMS
            or (opcode == 0x0F and insn[len(prefixes):len(prefixes) + 3] == VMCALL))


def casts_shadow(code: bytes, prefixes: bytes, opcode: int | None) -> bool:
    """STI, POP SS or MOV SS: ``code`` split by :func:`split_prefixes`."""
    if opcode in (STI, POP_SS):
        return True
    i = len(prefixes)
    return opcode == MOV_SREG and i + 1 < len(code) and code[i + 1] >> 3 & 7 == 2


class ExitHooks:
    """The vcpu's hooks that end a run with an exit: a part of
    :class:`impl.vcpu.Vcpu`, whose run loop reads ``_exit`` and the state
    these hooks leave (``_gpa``, ``_access``, ``_refused``, ``_intr``...)
    when Unicorn returns; the current block and its count are
    :class:`impl.blocks.BlockAccounting`'s."""

    def _stop(self, ex: Exit) -> None:
        self._exit = ex
        self.uc.emu_stop()

    def _on_stop_point(self, uc, address: int, size: int, _data) -> None:
        """An instruction that exits, or the one at which the budget ends."""
        self._stop_calls += 1
        if self._quiet:
            return
        block = self._current()
        index = block.index.get(address)
        if index is None:
            return
        icount = self._block_start(block) + index
        if icount >= self._budget_end:
            self._stop(Exit("limit", address, 0, icount))
            return
        if address not in block.stops:
            return
        known = block.io.get(address)
        if known is not None:               # the block's bytes are as decoded
            io, length = known
            if not io.imm:
                io = IoExit(self._reg(X.UC_X86_REG_EDX) & 0xFFFF, io.size, io.dir, io.string,
                            io.rep, False, io.address_size, io.segment)
            self._stop(Exit("io", address, length, icount, io.info(), io))
            return
        code = self._code(address, min(size, 15))
        prefixes, opcode = split_prefixes(code, block.mode)
        if casts_shadow(code, prefixes, opcode):
            if opcode != STI or not self._reg(RFLAGS) & EFLAGS_IF:
                self._shadow_at = icount + 1
            return
        if is_exiting(code, prefixes, opcode):
            if 0xF0 in prefixes:                # #UD, before any exit
                self._stop(Exit("event", address, 0, icount,
                                {"vector": 6, "source": "fault",
                                 "ip": address - self.seg_base("cs")}))
            elif opcode == HLT:
                self._stop(Exit("hlt", address, size, icount))
            elif opcode == 0x0F:
                self._stop(Exit("vmcall", address, len(prefixes) + 3, icount))
            else:
                io, length = decode_io(code, block.mode, self._reg(X.UC_X86_REG_EDX))
                self._stop(Exit("io", address, length, icount, io.info(), io))

    def _on_unmapped(self, uc, access: int, address: int, size: int, value: int, _data) -> bool:
        if self._quiet:
            return False
        if access == unicorn.UC_MEM_FETCH_UNMAPPED:
            self._fetch_fault = address
        elif self._access_at is None:
            self._access_at = (self._reg(SEG["cs"]), self._reg(RIP))
        self._gpa = address
        self._access = {unicorn.UC_MEM_READ_UNMAPPED: "read",
                        unicorn.UC_MEM_WRITE_UNMAPPED: "write"}.get(access, "fetch")
        return False

    def _on_read_only(self, uc, access: int, address: int, size: int, value: int,
                      _data) -> bool:
        if self._refused is None:
            # Unicorn drops a refused store made inside one of its helpers
            # (a far CALL's pushes, say) and lets the instruction complete:
            # the state here, before the instruction, is where it restarts
            self._refused = (self._reg(SEG["cs"]), self._reg(RIP), uc.context_save())
        pages = [p for p in pfns(address, size) if p in self._ro_pages]
        if pages:
            self._code_written = pages      # the run restarts once these are writable
            return False
        if self._quiet:
            return False
        self._gpa = address
        self._access = "write"
        self._logdirty = True
        return False

    def _fault(self, exc: unicorn.UcError) -> Exit | None:
        """The exit for a run that Unicorn ended with an error; None when
        the run is to start again where it stopped (a store into a page of
        code that the clock had write-protected, now writable).

        A refused access made inside one of Unicorn's helpers (the pushes
        of a far CALL through a call gate or in real mode, for one) does
        not stop the instruction: the access is dropped and the instruction
        completes, CS:RIP at its target. A refused store is undone here
        (the registers as they were when the store was refused, which is
        before the instruction); an access to memory that no RAM backs
        cannot be, and crashes the domain as an internal error."""
        went_on = False
        if self._refused is not None:
            cs, ip, saved = self._refused
            if (self._reg(SEG["cs"]), self._reg(RIP)) != (cs, ip):
                self.uc.context_restore(saved)
                self._stale = True
        elif self._access_at is not None and self._fetch_fault is None:
            went_on = (self._reg(SEG["cs"]), self._reg(RIP)) != self._access_at
        block = self._current()
        base = self._block_start(block)
        if self._fetch_fault is not None:
            rip = self._fetch_fault
            icount = base + len(block.addresses)
        else:
            rip = self.rip()
            icount = base + block.index.get(rip, len(block.addresses))
        self.icount = icount
        self.put("rip", rip - self.seg_base("cs"))
        if self._code_written:
            for pfn in self._code_written:
                self.release_written(pfn)
            return None
        code = self.code_at(rip).hex()
        if went_on:
            cs, ip = self._access_at
            raise InternalError(
                f"the instruction at {cs:#x}:{ip:#x} completed without its {self._access} of "
                f"gpa {self._gpa:#x}, which no RAM backs (an access made inside a far "
                f"transfer, an IRET or a descriptor load): not emulated")
        if self._gpa is not None:
            info = {"bytes": code, "access": self._access, "gpa": self._gpa}
            if self._logdirty:
                info = {"bytes": code, "access": "write", "p2m": "logdirty", "gpa": self._gpa}
            return Exit("ept_violation", rip, 0, icount, info)
        if exc.errno == unicorn.UC_ERR_INSN_INVALID:
            # #UD; but Unicorn reports INT1 (ICEBP, F1) so too: a trap, vector 1
            raw = bytes.fromhex(code)
            prefixes, opcode = split_prefixes(raw, self.mode())
            ip = rip - self.seg_base("cs")
            if opcode == 0xF1:
                self.icount = icount + 1
                return Exit("event", rip, 0, icount + 1,
                            {"vector": 1, "source": "icebp", "ip": ip + len(prefixes) + 1})
            return Exit("event", rip, 0, icount, {"vector": 6, "source": "fault", "ip": ip})
        return Exit("cpu_error", rip, 0, icount, {"bytes": code, "error": str(exc)})

    def _on_intr(self, uc, vector: int, _data) -> None:
        """Unicorn hands INT n, INT3, INTO and every exception to us: keep the
        vector, the CPU's error code and EIP, and stop. The page fault that
        a call dropping translations left pending (:meth:`impl.blocks.
        BlockAccounting._drop`) is not the guest's: discarded, and the CPU
        runs on. It is raised before any instruction of the run; an event
        after a block has begun is the guest's (Unicorn does not always
        keep the stray fault pending: after a run that a refused store
        ended, the next run raised none, and discarding the guest's next
        #PF in its place made it a #DF)."""
        if self._stray:
            self._stray = False
            if self._c.current < 0:
                return
        self._intr = (vector, physical_cpu.error_code(uc), self._reg(RIP),
                      self._reg(X.UC_X86_REG_CR2))
        uc.emu_stop()

    def _intr_exit(self) -> Exit:
        """The event Unicorn raised, placed on the clock. EIP is past a trap
        (INT n, INT3, INTO: the instruction before EIP in the block, which
        retired) and at a fault (which did not)."""
        vector, code, ip, cr2 = self._intr
        block = self._current()
        at = self.seg_base("cs") + ip & self.linear_mask()
        base = self._block_start(block)
        i = block.index.get(at, len(block.addresses))
        if i and self._is_trap(block.addresses[i - 1], at, vector):
            return Exit("event", block.addresses[i - 1], 0, base + i,
                        {"vector": vector, "source": "software" if self._trap_op == 0xCD
                         else "software_exception", "ip": ip})
        return Exit("event", at, 0, base + i,
                    {"vector": vector, "source": "fault", "ip": ip, "code": code,
                     "cr2": cr2 if vector == 14 else None})

    def _is_trap(self, prev: int, after: int, vector: int) -> bool:
        try:
            code = self._code(prev, after - prev) if 0 < after - prev <= 15 else b""
        except LinearFault:
            return False
        prefixes, opcode = split_prefixes(code, self.mode())
        self._trap_op = opcode
        n = len(prefixes)
        return ((opcode == 0xCD and len(code) == n + 2 and code[n + 1] == vector)
                or (opcode == 0xCC and len(code) == n + 1 and vector == 3)
                or (opcode == 0xCE and len(code) == n + 1 and vector == 4))
