"""The vcpu on Unicorn, built to stop only where the VMM must act.

Room: guest execution for the impl engine: RAM, the virtual instruction
clock, and the exits (I/O, HLT, VMCALL, unbacked memory including pages
given back to Xen, undecodable or faulting instructions, the instruction
budget). Imports Unicorn, capstone (for instruction lengths only), the
clock's fast path :mod:`impl.clock`, impl's answers to CPUID and RDTSC
(:mod:`impl.cpuid`), :mod:`spec.platform` and the CPU both engines
share, :mod:`spec.physical_cpu` (the hardware: how Unicorn is opened for
x86-64, reset, and made to load a segment register).

How it stays fast and exact
---------------------------

The reference model calls Python on every instruction. Here the clock runs
once per *translated block* (``UC_HOOK_BLOCK``), and in C
(``impl/_clock.c``, through :mod:`impl.clock`): a table holds, per block
already decoded, its linear address, size, instruction count and the
*decode context* it was decoded in (CR0.PE and PG, CS in protected mode;
with paging also CR3, CR4.PSE/PAE, EFER.LMA and a count of TLB flushes).
A known block, whose bytes are still those it was decoded from and inside
which the budget does not end, is counted without calling Python: the clock
advances by its count when the next block starts. Any other block comes to
Python (:meth:`Vcpu._on_block`), which decodes it with capstone (cached by
address, mode and bytes) and fills the table. Instructions that exit — IN,
OUT, INS, OUTS, HLT and VMCALL, with any prefixes — get a code hook on
their address alone. The first time a block containing such an instruction
is seen, the hook is added, Unicorn's translation of that address is
dropped and the block restarts (its first instruction has not run yet when
the block hook is called), so the retranslated block stops exactly there.
Where a budget ends inside a block, the same is done for the instruction at
which it ends, and that stop point is taken away again when the run stops.

The decode context can change only through an instruction that Unicorn
ends its block after: MOV to CR0, CR3 or CR4, LMSW, INVLPG, WRMSR, RSM, far
JMP/CALL/RET, IRET, INT, SYSCALL, SYSRET, SYSENTER, SYSEXIT. A block
holding one is marked, and the block after it goes to Python, which reads
the context again (and counts a TLB flush for the first six and far
JMP/CALL, which may switch tasks); so does the first block of every run,
as the VMM may have changed the context in between (an interrupt
delivered, an instruction emulated). Code the guest rewrites is noticed
as Xen notices writes to page tables it shadows: a page that holds a known
block is write-protected (``mem_protect``), and the guest's first store to
it stops the run before the store; the page is then made writable for good,
its blocks are forgotten, the run starts again at the store, and from then
on each block on that page has its bytes compared with the copy the table
keeps before it is counted (the guest's RAM is this process's memory).
Xen's own writes to RAM (an ``IN`` string's data, qemu-dm's DMA) forget
the blocks of the pages they touch.

A REP string instruction ends its block, and each iteration re-enters it, so
counting blocks counts each iteration once, as the reference does. A fault
stops the block part-way; Unicorn reports the faulting instruction's EIP,
and the clock counts the instructions of the block before it.

Interrupts. The interrupt shadow (after an STI that set IF, a MOV SS or a
POP SS) is tracked without a hook per instruction: those three instructions
get a code hook like the exiting ones, which notes the instruction count at
which their shadow holds. While the VMM asks for interrupt-window exiting
(an interrupt is pending and IF = 0) the vcpu runs at full speed: IF can
become 1 only through an instruction that Unicorn ends its block after.
STI and POPF mark their block (``SETS_IF``), and while a window is
awaited the C clock sends the block after one to Python, as it does after
every block that may change the decode context (IRET, far transfers,
SYSRET, RSM, INT n: a task switch loads EFLAGS). Python reads IF at the
start of each block it sees in a window; where IF = 1, the run stops
there, before the block, and :meth:`Vcpu._run_exit` exits at that
boundary, or, in the shadow of an STI, steps one more instruction through
a budget stop point. The preemption timer is a second budget: the run
stops at whichever comes first.

A store into the very block that is executing makes QEMU abandon the
block before the store and run the storing instruction again as a block of
its own: a block that lies inside the one before it and ends before it
comes to Python (from the C clock too, on a page the guest writes), which
takes back what the clock counted of the abandoned block. A store that
Unicorn refuses inside one of its helpers (a far CALL's pushes, for one)
is dropped while the instruction completes; the registers as they were
when the store was refused (before the instruction) are put back before
the run starts again (:meth:`Vcpu._fault`).

Known limits: a store into its own block that straddles two pages, where
the block that QEMU runs again lies on a page the guest has not written,
is counted by the C clock whole. A guest that
changes a page-table entry of its code and runs the page again without a
TLB flush (architecturally undefined: the old translation may be used)
gets the translation that the table holds. An IRET that switches tasks
(NT set) is not counted as a TLB flush.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Callable

import capstone
import unicorn
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uclib

from impl import clock, cpuid, delivery
from spec import physical_cpu, platform, trace

_RIP, _RFLAGS, _CR0 = X.UC_X86_REG_RIP, X.UC_X86_REG_RFLAGS, X.UC_X86_REG_CR0
_GPR = {name: getattr(X, f"UC_X86_REG_{name.upper()}") for name in
        "rax rcx rdx rbx rsp rbp rsi rdi r8 r9 r10 r11 r12 r13 r14 r15".split()}
_GPR.update(rip=_RIP, rflags=_RFLAGS)
_SEG = {"es": X.UC_X86_REG_ES, "cs": X.UC_X86_REG_CS, "ss": X.UC_X86_REG_SS,
        "ds": X.UC_X86_REG_DS, "fs": X.UC_X86_REG_FS, "gs": X.UC_X86_REG_GS}
#: the segments whose base counts in 64-bit mode, and where it is kept
_BASE_MSR = {"fs": X.UC_X86_REG_FS_BASE, "gs": X.UC_X86_REG_GS_BASE}
_EFER_LMA = 1 << 10
_CR0_PG = 1 << 31
_WIDE = 0xFFFF_FFFF_FFFF_FFFF
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
EFLAGS_IF = 1 << 9
EFLAGS_DF = 1 << 10
EFLAGS_VM = 1 << 17


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


@dataclass
class Block:
    """One translated block as the clock sees it."""

    addresses: tuple[int, ...]
    index: dict[int, int]
    exiting: tuple[int, ...]        # addresses of instructions that exit
    shadowing: tuple[int, ...] = ()  # STI, MOV SS, POP SS
    mode: int = 32                   # the code segment's size it was decoded in
    context: bool = False            # the decode context may differ after it
    flush: bool = False              # it may flush the TLB
    stops: frozenset = frozenset()   # exiting and shadowing, for lookups
    #: I/O instructions (no LOCK): address -> (exit information with port 0
    #: where DX names it, length), decoded once with the block
    io: dict = field(default_factory=dict)
    sets_if: bool = False            # STI or POPF, which Unicorn ends its block after
    raw: bytes = b""                 # the bytes it was decoded from


_EMPTY = Block((), {}, ())


class InternalError(RuntimeError):
    """A state the vcpu's own bookkeeping cannot account for: a defect of
    impl, which the machine turns into a domain crash that names it."""


class LinearFault(Exception):
    """A linear address the guest's page tables do not map to RAM; ``pf``
    is (vector, error code, linear) when the page tables refuse it (#PF, or
    #GP for a non-canonical address), None when no RAM backs it."""

    def __init__(self, message: str, pf: tuple[int, int, int] | None = None) -> None:
        super().__init__(message)
        self.pf = pf


PAGE = 4096
#: per level: (index shift, index bits, whether the entry may map a large page)
_WALK_32BIT = ((22, 10, True), (12, 10, False))
_WALK_PAE = ((30, 2, False), (21, 9, True), (12, 9, False))
_WALK_4LEVEL = ((39, 9, False), (30, 9, True), (21, 9, True), (12, 9, False))


def _exits(insn: bytes, prefixes: bytes, opcode: int | None) -> bool:
    """IN, OUT, INS, OUTS, HLT or VMCALL: ``insn`` split by :func:`split_prefixes`."""
    return (opcode == HLT or opcode in IO_FORMS
            or (opcode == 0x0F and insn[len(prefixes):len(prefixes) + 3] == VMCALL))


def _casts_shadow(code: bytes, prefixes: bytes, opcode: int | None) -> bool:
    """STI, POP SS or MOV SS: ``code`` split by :func:`split_prefixes`."""
    if opcode in (STI, POP_SS):
        return True
    i = len(prefixes)
    return opcode == MOV_SREG and i + 1 < len(code) and code[i + 1] >> 3 & 7 == 2


_CONTEXT, _FLUSH = 1, 2
#: one-byte opcodes that may load CS (far transfers, IRET, software
#: interrupts), with _FLUSH where a task switch may also load CR3
_CS_LOADS = {0x9A: _CONTEXT | _FLUSH, 0xEA: _CONTEXT | _FLUSH, 0xCA: _CONTEXT, 0xCB: _CONTEXT,
             0xCF: _CONTEXT, 0xCC: _CONTEXT, 0xCD: _CONTEXT, 0xCE: _CONTEXT, 0xF1: _CONTEXT}
#: 0F xx: MOV to CRn, WRMSR and RSM flush; SYSCALL, SYSRET, SYSENTER and
#: SYSEXIT load CS (LMSW and INVLPG are 0F 01 /6 and /7)
_TWO_BYTE = {0x22: _CONTEXT | _FLUSH, 0x30: _CONTEXT | _FLUSH, 0xAA: _CONTEXT | _FLUSH,
             0x05: _CONTEXT, 0x07: _CONTEXT, 0x34: _CONTEXT, 0x35: _CONTEXT}


def _context_effect(insn: bytes, prefixes: bytes, opcode: int | None) -> int:
    """Whether the instruction may change how the next bytes decode (CR0,
    CR4, EFER, CS) or which bytes a linear address names (CR3, a TLB
    flush): _CONTEXT, with _FLUSH for the latter. Unicorn ends its block
    after each of these."""
    i = len(prefixes)
    if opcode in _CS_LOADS:
        return _CS_LOADS[opcode]
    if opcode == 0xFF and i + 1 < len(insn) and insn[i + 1] >> 3 & 7 in (3, 5):
        return _CONTEXT | _FLUSH                        # CALL/JMP far through memory
    if opcode != 0x0F or i + 1 >= len(insn):
        return 0
    second = insn[i + 1]
    if second == 0x01 and i + 2 < len(insn):
        modrm = insn[i + 2]
        if modrm >> 3 & 7 == 6 or (modrm >> 3 & 7 == 7 and modrm < 0xC0):
            return _CONTEXT | _FLUSH                    # LMSW, INVLPG (a memory operand)
    return _TWO_BYTE.get(second, 0)


class _Msr(ctypes.Structure):
    """Unicorn's ``uc_x86_msr``."""

    _fields_ = [("rid", ctypes.c_uint32), ("value", ctypes.c_uint64)]


def _pfns(gpa: int, length: int) -> range:
    """The page frames that ``[gpa, gpa + length)`` touches (at least one)."""
    return range(gpa >> 12, ((gpa + max(length, 1) - 1) >> 12) + 1)


class _Mmr(ctypes.Structure):
    """Unicorn's ``uc_x86_mmr``: a descriptor-table register."""

    _fields_ = [("selector", ctypes.c_uint16), ("base", ctypes.c_uint64),
                ("limit", ctypes.c_uint32), ("flags", ctypes.c_uint32)]


class Vcpu:
    """One vcpu and the domain's RAM on Unicorn."""

    def __init__(self, memory_bytes: int) -> None:
        self.memory_bytes = memory_bytes
        self.ram = platform.ram_ranges(memory_bytes)
        uc = self.uc = physical_cpu.open_cpu()
        # Unicorn's own C entry points, called directly: the binding's
        # generic register and memory accessors cost microseconds per call.
        self._handle = uc._uch
        self._value = ctypes.c_uint64()
        self._value_ref = ctypes.byref(self._value)
        self._buffer = ctypes.create_string_buffer(4096)
        self._mmr = _Mmr()              # uc_x86_mmr, for GDTR reads without the binding
        self._mmr_ref = ctypes.byref(self._mmr)
        self.host_ram = physical_cpu.HostRam(uc)
        for start, end in self.ram:
            self.host_ram.map(start, end)
        #: pages of RAM given back to Xen (no frame behind them)
        self.holes: set[int] = set()
        self._mapped: list[object] = []         # buffers of other domains mapped here
        #: Xen's own writes to guest memory are reported here (dirty video memory)
        self.on_write: Callable[[int, int], None] | None = None
        self.icount = 0
        self.io_ns = 0                  # bus time of I/O accesses (spec.clock)
        self.shadow = False             # interrupt shadow at the current boundary
        self.interrupted = False        # the operator's stop (interrupt())
        #: trace sink for accesses to ports Xen does not intercept (0x80, 0xED)
        self.emit = None
        self._shadow_at = -1
        #: (address, size, decode context id) -> (bytes, block)
        self._blocks: dict[tuple[int, int, int], tuple[bytes, Block]] = {}
        #: addresses with a stop point (UC_HOOK_CODE) -> its hook
        self._hooked: dict[int, int] = {}
        #: the stop points placed where a budget ends, removed after the run
        self._budget_hooks: list[int] = []
        #: decode context (see _probe_context) -> its id in the C table
        self._contexts: dict[tuple, int] = {}
        self._epoch = 0
        self._quiet = False
        #: pages of code the clock write-protected -> the table slots of
        #: their blocks; pages the guest wrote after that (bytes compared)
        self._code_pages: dict[int, set[int]] = {}
        self._mixed: set[int] = set()
        self._code_written: list[int] = []
        self._stop_calls = 0
        #: the VMM changed the vcpu's state: probe the decode context again
        self._stale = True
        self._cs_mode, self._cs_base = 16, 0
        self._disasm = {m: capstone.Cs(capstone.CS_ARCH_X86, cm) for m, cm in
                        ((16, capstone.CS_MODE_16), (32, capstone.CS_MODE_32),
                         (64, capstone.CS_MODE_64))}
        self._clock = clock.BlockClock(uc, self._on_block)
        self._c = self._clock.state
        #: the block in each slot of the C table, and in the spare slot
        self._slot_block: list[Block] = [_EMPTY] * (clock.SLOTS + 1)
        self._budget_end = 0
        self._msr = _Msr(physical_cpu.MSR_EFER, 0)
        self._msr_ref = ctypes.byref(self._msr)
        uc.hook_add(unicorn.UC_HOOK_MEM_UNMAPPED, self._on_unmapped)
        uc.hook_add(unicorn.UC_HOOK_MEM_WRITE_PROT, self._on_read_only)
        uc.hook_add(unicorn.UC_HOOK_INTR, self._on_intr)
        self._intr: tuple[int, int, int, int] | None = None
        self._trap_op: int | None = None
        cpuid.install(self)             # CPUID, RDTSC, RDTSCP: answered, no exit
        # Real mode at the reset vector (SDM vol. 3A table 9-1).
        physical_cpu.reset(uc, platform.RESET_CS, platform.RESET_IP)

    # --- guest state ------------------------------------------------------------

    @property
    def quiet(self) -> bool:
        """Set while impl's VMM steps an instruction itself: the clock and
        its stop points stand aside."""
        return self._quiet

    @quiet.setter
    def quiet(self, value: bool) -> None:
        self._quiet = value
        self._c.quiet = int(value)
        if not value:
            self._stale = True              # the instruction stepped may load CS

    def _efer(self) -> int:
        self._msr.value = 0
        uclib.uc_reg_read(self._handle, X.UC_X86_REG_MSR, self._msr_ref)
        return self._msr.value

    def _reg(self, reg_id: int) -> int:
        self._value.value = 0
        uclib.uc_reg_read(self._handle, reg_id, self._value_ref)
        return self._value.value

    def get(self, reg: str) -> int:
        return self._reg(_GPR[reg])

    def put(self, reg: str, value: int) -> None:
        self._value.value = value & _WIDE
        uclib.uc_reg_write(self._handle, _GPR[reg], self._value_ref)

    def put_reg(self, reg_id: int, value: int) -> None:
        self._value.value = value & _WIDE
        uclib.uc_reg_write(self._handle, reg_id, self._value_ref)

    def clock_ns(self) -> int:
        """The virtual clock: instructions (and idle time) plus bus time."""
        return self.icount + self.io_ns

    def clock_at_rdtsc(self) -> int:
        """The clock at the boundary before the instruction executing now
        (called from its instruction hook, RIP at it)."""
        block = self._current()
        linear = self.seg_base("cs") + self._reg(_RIP) & self.linear_mask()
        index = block.index.get(linear)
        icount = self.live_icount() if index is None else self._block_start(block) + index
        return icount + self.io_ns

    def backed(self, gpa: int, length: int) -> bool:
        if not any(lo <= gpa and gpa + length <= hi for lo, hi in self.ram):
            return False
        holes = self.holes
        if not holes:
            return True
        return not any(p in holes for p in _pfns(gpa, length))

    def remove_page(self, pfn: int) -> None:
        """Take a page of RAM out of the guest's physical space: a hole, whose
        accesses exit as unbacked memory."""
        self.host_ram.release(pfn << 12, PAGE)
        self.holes.add(pfn)
        self._code_pages.pop(pfn, None)
        self._mixed.discard(pfn)
        self._clock.clear()

    def restore_page(self, pfn: int) -> None:
        """Back a hole again with a zeroed page."""
        self.host_ram.restore(pfn << 12, PAGE)
        self.holes.discard(pfn)
        self._clock.clear()

    def read(self, gpa: int, length: int) -> bytes:
        if length > 4096:
            return bytes(self.uc.mem_read(gpa, length))
        if uclib.uc_mem_read(self._handle, gpa, self._buffer, length):
            raise unicorn.UcError(unicorn.UC_ERR_READ_UNMAPPED)
        return ctypes.string_at(self._buffer, length)

    def write(self, gpa: int, data: bytes) -> None:
        self.uc.mem_write(gpa, data)
        if self._code_pages:
            self._forget_code(gpa, len(data))
        if self.on_write is not None:
            self.on_write(gpa, len(data))

    def map_buffer(self, gpa: int, buffer) -> None:
        """Back ``gpa`` with a dom0 buffer (qemu-dm's video memory)."""
        self.uc.mem_map_ptr(gpa, ctypes.sizeof(buffer), unicorn.UC_PROT_ALL, buffer)
        self._mapped.append(buffer)
        self.ram.append((gpa, gpa + ctypes.sizeof(buffer)))

    def map_rom(self, gpa: int, data: bytes) -> None:
        """A read-only, executable ROM at ``gpa`` (a firmware's alias below 4 GiB)."""
        self.uc.mem_map(gpa, len(data), unicorn.UC_PROT_READ | unicorn.UC_PROT_EXEC)
        self.uc.mem_write(gpa, data)
        self.ram.append((gpa, gpa + len(data)))

    def protect(self, gpa: int, length: int, writable: bool) -> None:
        self.uc.mem_protect(gpa, length, unicorn.UC_PROT_ALL if writable
                            else unicorn.UC_PROT_READ | unicorn.UC_PROT_EXEC)

    def paging(self) -> bool:
        return bool(self._reg(_CR0) & _CR0_PG)

    def long_mode(self) -> bool:
        # EFER.LMA needs paging: the MSR is read only when CR0.PG is set
        return self.paging() and bool(self._efer() & _EFER_LMA)

    def mode(self) -> int:
        """The code segment's size: 16, 32 or 64 (read when the decode
        context was last probed: the CPU, too, uses the descriptor it
        cached when CS was loaded)."""
        self._context()
        return self._cs_mode

    def linear_mask(self) -> int:
        return _WIDE if self.mode() == 64 else 0xFFFFFFFF

    def seg_base(self, seg: str) -> int:
        if not self._reg(_CR0) & 1:
            return self._reg(_SEG[seg]) << 4
        if seg == "cs":
            self._context()
            return self._cs_base
        if self.long_mode() and self.mode() == 64:
            msr = _BASE_MSR.get(seg)
            return self._reg(msr) if msr is not None else 0
        low, high = self._descriptor(seg)
        return (low >> 16) | (high & 0xFF) << 16 | (high & 0xFF000000)

    def _descriptor(self, seg: str) -> tuple[int, int]:
        raw = self._gdt(self._reg(_SEG[seg]))
        return (0, 0) if raw is None else (raw & 0xFFFFFFFF, raw >> 32)

    def _gdt(self, selector: int) -> int | None:
        uclib.uc_reg_read(self._handle, X.UC_X86_REG_GDTR, self._mmr_ref)
        base, limit = self._mmr.base, self._mmr.limit
        offset = selector & 0xFFF8
        if selector & 4 or offset + 7 > limit:
            return None
        try:
            return int.from_bytes(self.lread(base + offset, 8), "little")
        except LinearFault:
            return None

    def ss_dpl(self) -> int:
        """The privilege level Xen reads from SS's descriptor (0 in real mode)."""
        if not self._reg(_CR0) & 1:
            return 0
        return self._descriptor("ss")[1] >> 13 & 3

    def rip(self) -> int:
        """The linear address of the next instruction."""
        return self.seg_base("cs") + self._reg(_RIP) & self.linear_mask()

    # --- linear addresses: the guest's page tables (SDM vol. 3A chapter 4) -------------

    def translate(self, linear: int, write: bool = False) -> int:
        """Guest-physical address of ``linear``; accessed and dirty bits are
        set on the way, as the CPU sets them. Raises :class:`LinearFault`."""
        if not self.paging():
            return linear & 0xFFFFFFFF
        cr4, cr3 = self._reg(X.UC_X86_REG_CR4), self._reg(X.UC_X86_REG_CR3)
        if self.long_mode():
            if (linear >> 47) not in (0, (1 << 17) - 1):
                raise LinearFault(f"#GP at linear {linear:#x}: non-canonical address",
                                  (13, 0, linear))
            walk, table, entry_bytes = _WALK_4LEVEL, cr3 & 0xFFFFFFFFFF000, 8
        elif cr4 & 0x20:
            linear &= 0xFFFFFFFF
            walk, table, entry_bytes = _WALK_PAE, cr3 & 0xFFFFFFE0, 8
        else:
            linear &= 0xFFFFFFFF
            walk, table, entry_bytes = _WALK_32BIT, cr3 & 0xFFFFF000, 4
        wp = self._reg(_CR0) >> 16 & 1
        for level, (shift, width, may_be_large) in enumerate(walk):
            slot = table + (linear >> shift & (1 << width) - 1) * entry_bytes
            if not self.backed(slot, entry_bytes):
                raise LinearFault(f"page-table entry at {slot:#x} is not RAM")
            entry = int.from_bytes(self.read(slot, entry_bytes), "little")
            is_pdpte = walk is _WALK_PAE and level == 0
            if not entry & 1:
                raise LinearFault(f"#PF at linear {linear:#x}: level {level + 1} entry at "
                                  f"{slot:#x} is not present", (14, write << 1, linear))
            if write and wp and not is_pdpte and not entry & 2:
                raise LinearFault(f"#PF at linear {linear:#x}: level {level + 1} entry at "
                                  f"{slot:#x} is read-only", (14, 3, linear))
            big = may_be_large and entry & 0x80 and (entry_bytes == 8 or cr4 & 0x10)
            leaf = big or level == len(walk) - 1
            if not is_pdpte:
                marked = entry | 0x20 | (0x40 if write and leaf else 0)
                if marked != entry:
                    self.write(slot, marked.to_bytes(entry_bytes, "little"))
            if leaf:
                span = (1 << shift) - 1
                base = entry & (0xFFC00000 if entry_bytes == 4 and big else
                                0xFFFFF000 if entry_bytes == 4 else 0xFFFFFFFFFF000)
                return (base & ~span) | (linear & span)
            table = entry & (0xFFFFF000 if entry_bytes == 4 else 0xFFFFFFFFFF000)
        raise AssertionError("the walk ends at a leaf")

    def _spans(self, linear: int, n: int, write: bool) -> list[tuple[int, int]]:
        out = []
        while n:
            part = min(n, PAGE - linear % PAGE)
            gpa = self.translate(linear, write)
            if not self.backed(gpa, part):
                raise LinearFault(f"linear {linear:#x} is guest-physical {gpa:#x}, "
                                  f"which is not RAM")
            out.append((gpa, part))
            linear, n = linear + part, n - part
        return out

    def lread(self, linear: int, n: int) -> bytes:
        """Guest memory by linear address."""
        if not self.paging():
            linear &= 0xFFFFFFFF
            if not self.backed(linear, n):
                raise LinearFault(f"{linear:#x}+{n} is not RAM")
            return self.read(linear, n)
        return b"".join(self.read(g, k) for g, k in self._spans(linear, n, False))

    def lread_pages(self, linear: int, n: int) -> bytes:
        """As :meth:`lread`, page by page also without paging (Xen's
        ``copy_from_guest``); raises :class:`LinearFault`."""
        return b"".join(self.read(g, k) for g, k in self._spans(linear, n, False))

    def lwrite(self, linear: int, data: bytes) -> None:
        """Guest memory by linear address; nothing is written unless all of it can be."""
        at = 0
        for gpa, k in self._spans(linear, len(data), True):
            self.write(gpa, data[at:at + k])
            at += k

    def check(self, linear: int, n: int, write: bool) -> None:
        self._spans(linear, n, write)

    def code_at(self, linear: int) -> bytes:
        """Up to 15 bytes that RAM backs at ``linear`` (the instruction to
        emulate, or a diagnostic)."""
        try:
            return self.lread(linear, 15)      # the common case: all 15 are RAM
        except LinearFault:
            pass
        out = b""
        for i in range(15):
            try:
                out += self.lread(linear + i, 1)
            except LinearFault:
                break
        return out

    # --- running --------------------------------------------------------------------

    def run(self, budget: int, deadline: int | None = None, window: bool = False) -> Exit:
        """As :meth:`_run_exit`, except that a byte IN/OUT at a port whose
        bit Xen clears in the I/O bitmap does not exit: it completes here
        (OUT dropped, IN gives 0xFF), is traced, costs a port access's bus
        time, and the guest runs on. ``deadline`` is on the clock
        (:meth:`clock_ns`)."""
        limit = self.icount + budget
        while True:
            ex = self._run_exit(limit - self.icount,
                                None if deadline is None else deadline - self.io_ns, window)
            if ex.reason == "event":
                ex = self.raise_event(ex)
                if ex is None:
                    continue
            io = ex.io
            if (ex.reason != "io" or io is None or io.string or io.size != 1
                    or io.port not in platform.PASSTHROUGH_PORTS):
                return ex
            if io.dir == "in":
                value = platform.PASSTHROUGH_READ
                self.put("rax", self.get("rax") & ~0xFF | value)
            else:
                value = self.get("rax") & 0xFF
            if self.emit is not None:
                self.emit(trace.DirectIo(vcpu=0, port=io.port, size=1, dir=io.dir, data=value,
                                         icount=ex.icount, rip=ex.rip))
            self.put("rip", self.get("rip") + ex.length
                     & {16: 0xFFFF, 32: 0xFFFFFFFF}.get(self.mode(), (1 << 64) - 1))
            self.icount += 1
            self.io_ns += platform.PORT_ACCESS_NS
            self.shadow = False

    def _run_exit(self, budget: int, deadline: int | None = None, window: bool = False) -> Exit:
        """Run until an exit, until ``budget`` more instructions retired
        (``limit``), until the clock reaches ``deadline``
        (``preemption_timer``) or, with ``window``, until the guest can take
        an interrupt (``interrupt_window``)."""
        end = self.icount + budget
        stop = end if deadline is None else min(end, deadline)
        if not window:
            return self._timed(self._run_to(stop), deadline, end)
        while True:
            if self.icount >= stop or self.interrupted:
                return self._timed(Exit("limit", self.rip(), 0, self.icount), deadline, end)
            enabled = self._reg(_RFLAGS) & EFLAGS_IF
            if enabled and not self.shadow:
                return Exit("interrupt_window", self.rip(), 0, self.icount)
            # IF = 1 in a shadow: the window opens after one instruction.
            # IF = 0: run until an instruction that may set IF has retired
            # (the block after it comes to Python: _account).
            ex = self._run_to(self.icount + 1) if enabled else self._run_to(stop, watch=True)
            if ex.reason != "limit":
                return ex

    @staticmethod
    def _timed(ex: Exit, deadline: int | None, end: int) -> Exit:
        """A stop at the deadline is the preemption timer's (the budget wins a tie)."""
        if ex.reason == "limit" and deadline is not None and deadline <= ex.icount < end:
            ex.reason = "preemption_timer"
        return ex

    def _run_to(self, stop: int, watch: bool = False) -> Exit:
        """Run to an exit or to instruction count ``stop``; with ``watch``
        (interrupt-window exiting while IF = 0), also stop at the first
        block boundary at which IF = 1 (a ``limit`` exit before ``stop``)."""
        self._budget_end = stop
        self._shadow_at = self.icount if self.shadow else -1
        self._c.window = int(watch)
        try:
            ex = self._run()
        finally:
            self._c.window = 0
        self.shadow = self._shadow_at == self.icount
        return ex

    def interrupt(self) -> None:
        """Stop from outside (any thread): Unicorn leaves the guest at its
        next block boundary, and every later run returns at once with a
        ``limit`` exit."""
        self.interrupted = True
        self.uc.emu_stop()

    def live_icount(self) -> int:
        """The instruction count, read from another thread while the guest
        runs: the clock counts a block whole when it begins."""
        c = self._c
        return max(self.icount, c.end - c.left) if c.end else self.icount

    def _run(self) -> Exit:
        c = self._c
        while True:
            if self.interrupted:
                self._drop_budget_hooks()
                self.icount = self.live_icount()
                return Exit("limit", self.rip(), 0, self.icount)
            self._exit: Exit | None = None
            self._restart = False
            self._fetch_fault: int | None = None
            self._gpa: int | None = None
            self._logdirty = False
            self._hook_error: BaseException | None = None
            self._code_written: list[int] = []
            self._refused: tuple | None = None
            self._access_at: tuple[int, int] | None = None
            self._intr = None
            self._context()
            c.current, c.end = -1, self._budget_end
            c.left = self._budget_end - self.icount
            try:
                self.uc.emu_start(self._reg(_RIP), 1 << 40)
            except unicorn.UcError as exc:
                self._drop_budget_hooks()
                if self._hook_error is not None:
                    raise self._hook_error
                ex = self._fault(exc)
                if ex is None:
                    continue
                return ex
            if self._hook_error is not None:
                self._drop_budget_hooks()
                raise self._hook_error
            if self._intr is not None:
                physical_cpu.exception_delivered(self.uc)
                self._drop_budget_hooks()
                ex = self._intr_exit()
                self.icount = ex.icount
                return ex
            if self._restart or (self._exit is None and self.interrupted):
                continue                    # with the stop points just placed
            self._drop_budget_hooks()
            if self._exit is None:
                # Unicorn ended the run by itself: something ran that should
                # have stopped at a stop point (a HLT that Unicorn executed)
                self.icount = self.live_icount()
                rip = self.rip()
                raise InternalError(
                    f"emulation ended without an exit at rip {rip:#x} after "
                    f"{self.icount} instructions (bytes before it: "
                    f"{self.code_at(rip - 2)[:2].hex() if rip >= 2 else ''}; at it: "
                    f"{self.code_at(rip).hex()})")
            self.icount = self._exit.icount
            return self._exit

    # --- the clock: blocks the C fast path sends here (impl/_clock.c) ------------------

    def _context(self) -> int:
        """The decode context id, probed again if it may have changed: a
        block that may change it ran (the C clock set it to 0), or the VMM
        changed the vcpu's state (``_stale``)."""
        c = self._c
        if not c.context or self._stale:
            self._probe_context(not c.context and self._current().flush)
        return c.context

    def _probe_context(self, flush: bool) -> None:
        """The decode context id now: what decides how the bytes at a linear
        address decode (CR0.PE and PG, EFLAGS.VM, the code segment's size
        and base) and, with paging, which bytes they are (CR3, CR4's PSE
        and PAE, EFER.LMA, and a count of TLB flushes: ``flush`` starts a
        new one). The code segment's size and base are kept for
        :meth:`mode` and :meth:`seg_base`."""
        cr0 = self._reg(_CR0)
        self._stale = False
        mode, extra = 16, ()
        if cr0 & 1:
            low, high = self._descriptor("cs")
            if high >> 21 & 1 and self.long_mode():
                mode, self._cs_base = 64, 0
            else:
                mode = 32 if high >> 22 & 1 else 16
                self._cs_base = (low >> 16) | (high & 0xFF) << 16 | (high & 0xFF000000)
            extra = (self._cs_base, self._reg(_RFLAGS) & EFLAGS_VM)
        self._cs_mode = mode
        key: tuple = (cr0 & (1 | _CR0_PG), mode) + extra
        if cr0 & _CR0_PG:
            if flush:
                self._epoch += 1
            key += (self._reg(X.UC_X86_REG_CR3), self._reg(X.UC_X86_REG_CR4) & 0x30,
                    self._efer() & _EFER_LMA, self._epoch)
        context = self._contexts.get(key)
        if context is None:
            context = self._contexts[key] = len(self._contexts) + 1
        self._c.context = context

    def _current(self) -> Block:
        """The block executing now (the one the clock last counted)."""
        index = self._c.current
        return _EMPTY if index < 0 else self._slot_block[index]

    def python_calls(self) -> int:
        """How many times the clock has called Python so far: blocks the C
        fast path could not count, and stop points reached."""
        return self._c.slow + self._stop_calls

    def _block_start(self, block: Block) -> int:
        """The instruction count at the start of ``block``, the current one
        (the clock counted it whole when it began)."""
        c = self._c
        return c.end - c.left - len(block.addresses)

    def _on_block(self, address: int, size: int) -> None:
        """A block the C fast path could not account for: new, changed, in a
        new decode context, or one inside which the budget ends."""
        try:
            self._account(address, size)
        except BaseException as exc:        # noqa: BLE001 - re-raised after emu_start
            self._hook_error = exc
            self.uc.emu_stop()

    def _account(self, address: int, size: int) -> None:
        c = self._c
        self._context()
        prev = self._current()
        at = prev.index.get(address)
        if at is not None and address + size < prev.addresses[0] + len(prev.raw):
            # A block inside the one before it, ending before it ends: that
            # one stored into its own bytes, and Unicorn (QEMU) abandoned
            # it at the store, which it runs again as a block of its own
            # instruction (this one). The clock had counted it whole.
            c.left += len(prev.addresses) - at
        base = c.end - c.left
        if c.window and self._reg(_RFLAGS) & EFLAGS_IF:
            # the instruction before this block set IF: the window may open
            # here (or, in a shadow, one instruction later): _run_exit decides
            self._stop(Exit("limit", address, 0, base))
            return
        block = self._decode(address, size)
        missing = [a for a in block.exiting + block.shadowing if a not in self._hooked]
        if self._budget_hooks:
            # a stop point placed where a budget ends, at what this block
            # decodes as an exiting instruction, stays: dropped with the
            # budget's, it would leave the instruction to run in Unicorn
            # (a HLT that ends the run by itself)
            for a in block.stops:
                if a in self._budget_hooks:
                    self._budget_hooks.remove(a)
        end = self._budget_end - base
        if end < len(block.addresses):
            if end <= 0:
                self._stop(Exit("limit", address, 0, base))
                return
            at = block.addresses[end]
            if at not in self._hooked and at not in missing:
                missing.append(at)
                self._budget_hooks.append(at)
        if missing:
            for a in missing:
                self._hooked[a] = self.uc.hook_add(unicorn.UC_HOOK_CODE, self._on_stop_point,
                                                   begin=a, end=a)
                self.uc.ctl_remove_cache(a, a + 1)
            self.icount = base
            c.current = -1
            self._restart = True
            self.uc.emu_stop()
            return
        index = self._remember(address, size, block)
        self._slot_block[index] = block
        c.left -= len(block.addresses)
        c.current = index
        if block.context or (block.sets_if and c.window):
            c.context = 0

    def _remember(self, address: int, size: int, block: Block) -> int:
        """Put ``block`` in the C table if its bytes are RAM; its slot, or
        the spare slot that only Python reads."""
        index = clock.slot(address)
        try:
            spans = self._spans(address, size, False)
        except LinearFault:
            return clock.SLOTS
        hosts = []
        for gpa, n in spans:
            host = self._host_address(gpa, n)
            if host is None:
                return clock.SLOTS
            hosts.append((host, n))
        raw = b"".join(ctypes.string_at(h, n) for h, n in hosts)
        flags = (clock.CONTEXT if block.context else 0) | (clock.SETS_IF if block.sets_if else 0)
        pfns = {gpa >> 12 for gpa, _ in spans}
        if pfns & self._mixed:
            flags |= clock.VERIFY
        else:
            for pfn in pfns:
                slots = self._code_pages.get(pfn)
                if slots is None:
                    self.uc.mem_protect(pfn << 12, PAGE, unicorn.UC_PROT_READ | unicorn.UC_PROT_EXEC)
                    slots = self._code_pages[pfn] = set()
                slots.add(index)
        self._clock.put(index, address, size, len(block.addresses), self._c.context, flags,
                        hosts, raw)
        return index

    def release_code_page(self, pfn: int) -> None:
        """Make a write-protected page of code writable again, for good: the
        guest writes it, so its blocks' bytes are compared before each count
        from now on (and the ones known so far are forgotten)."""
        slots = self._code_pages.pop(pfn, set())
        for index in slots:
            self._clock.forget(index)
        self._mixed.add(pfn)
        self.uc.mem_protect(pfn << 12, PAGE, unicorn.UC_PROT_ALL)

    def make_writable(self, gpa: int, length: int) -> None:
        """Release the write-protected pages of code in ``[gpa, gpa + length)``
        (:meth:`release_code_page`): the VMM is about to let the guest write them."""
        for pfn in _pfns(gpa, length):
            if pfn in self._code_pages:
                self.release_code_page(pfn)

    def _forget_code(self, gpa: int, length: int) -> None:
        """Xen (not the guest) wrote RAM: forget the blocks on those pages
        (Unicorn lets the VMM write a write-protected page)."""
        for pfn in _pfns(gpa, length):
            slots = self._code_pages.get(pfn)
            if slots:
                for index in slots:
                    self._clock.forget(index)
                slots.clear()

    def _host_address(self, gpa: int, n: int) -> int | None:
        """Where RAM ``[gpa, gpa + n)`` (backed: see :meth:`_spans`) lies in
        this process, if it is the domain's own (not a mapped dom0 buffer)."""
        for start, size, _host, view in self.host_ram.pieces:
            if start <= gpa and gpa + n <= start + size:
                return ctypes.addressof(view) + (gpa - start)
        return None

    def _drop_budget_hooks(self) -> None:
        """The stop points placed only where a budget ended go, with their
        translations: left in place, each would call Python on every pass."""
        for a in self._budget_hooks:
            handle = self._hooked.pop(a, None)
            if handle is not None:
                self.uc.hook_del(handle)
                self.uc.ctl_remove_cache(a, a + 1)
        self._budget_hooks.clear()

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
        if _casts_shadow(code, prefixes, opcode):
            if opcode != STI or not self._reg(_RFLAGS) & EFLAGS_IF:
                self._shadow_at = icount + 1
            return
        if _exits(code, prefixes, opcode):
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
            self._access_at = (self._reg(_SEG["cs"]), self._reg(_RIP))
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
            self._refused = (self._reg(_SEG["cs"]), self._reg(_RIP), uc.context_save())
        pages = [p for p in _pfns(address, size) if p in self._code_pages]
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
            if (self._reg(_SEG["cs"]), self._reg(_RIP)) != (cs, ip):
                self.uc.context_restore(saved)
                self._stale = True
        elif self._access_at is not None and self._fetch_fault is None:
            went_on = (self._reg(_SEG["cs"]), self._reg(_RIP)) != self._access_at
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
                self.release_code_page(pfn)
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

    def _code(self, linear: int, n: int) -> bytes:
        return self.lread(linear, n) if self.paging() else self.read(linear, n)

    def _decode(self, address: int, size: int) -> Block:
        key = (address, size, self._context())
        raw = self.lread(address, size) if self.paging() else self.read(address, size)
        cached = self._blocks.get(key)
        if cached is not None and cached[0] == raw:
            return cached[1]
        mode = self.mode()
        addresses, exiting, shadowing = [], [], []
        io_forms: dict[int, tuple[IoExit, int]] = {}
        offset = effect = 0
        sets_if = False
        while offset < size:
            for _addr, length, _mn, _ops in self._disasm[mode].disasm_lite(
                    raw[offset:], address + offset):
                addresses.append(address + offset)
                insn = raw[offset:offset + length]
                prefixes, opcode = split_prefixes(insn, mode)
                if _exits(insn, prefixes, opcode):
                    exiting.append(address + offset)
                    if opcode in IO_FORMS and 0xF0 not in prefixes:
                        io_forms[address + offset] = decode_io(insn, mode, 0)
                elif _casts_shadow(insn, prefixes, opcode):
                    shadowing.append(address + offset)
                    sets_if |= opcode == STI
                else:
                    sets_if |= opcode == POPF
                    effect |= _context_effect(insn, prefixes, opcode)
                offset += length
            if offset >= size:
                break
            # capstone refuses some forms the CPU still decodes, LOCK on
            # IN/OUT among them: those exit (as #UD), so they are ours.
            insn = raw[offset:offset + 15]
            prefixes, opcode = split_prefixes(insn, mode)
            addresses.append(address + offset)
            if not _exits(insn, prefixes, opcode):
                break                               # undecodable: the block ends here
            exiting.append(address + offset)
            offset += len(prefixes) + (3 if opcode == 0x0F else
                                       1 + (opcode in (0xE4, 0xE5, 0xE6, 0xE7)))
        block = Block(tuple(addresses), {a: i for i, a in enumerate(addresses)}, tuple(exiting),
                      tuple(shadowing), mode, bool(effect & _CONTEXT), bool(effect & _FLUSH),
                      frozenset(exiting + shadowing), io_forms, sets_if, raw)
        self._blocks[key] = (raw, block)
        return block

    # --- event delivery (impl/delivery.py) ---------------------------------------------

    def deliver(self, vector: int) -> bool:
        """Deliver external interrupt ``vector`` as the CPU does on VM entry;
        False on a triple fault. Raises :class:`impl.delivery.Refused`."""
        return delivery.deliver(self, vector, "external", self._reg(_RIP))

    def _on_intr(self, uc, vector: int, _data) -> None:
        """Unicorn hands INT n, INT3, INTO and every exception to us: keep the
        vector, the CPU's error code and EIP, and stop."""
        self._intr = (vector, physical_cpu.error_code(uc), self._reg(_RIP),
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

    def raise_event(self, ex: Exit) -> Exit | None:
        """Deliver what an ``event`` exit carries; a triple fault, or an
        event the model does not deliver, is an exit; None otherwise."""
        info = ex.info
        self.icount = ex.icount
        try:
            ok = delivery.deliver(self, info["vector"], info["source"], info["ip"],
                                  info.get("code"), info.get("cr2"))
        except delivery.Refused as exc:
            return Exit("cpu_error", ex.rip, 0, self.icount,
                        {"bytes": self.code_at(ex.rip).hex(), "error": str(exc)})
        if not ok:
            return Exit("triple_fault", self.rip(), 0, self.icount)
        return None
