"""The hardware boundary: a vcpu in VMX non-root mode, and its VM exits.

Room: the physical CPU that runs the guest's ordinary instructions (Unicorn,
outside the spec) and what the VT-x hardware reports to the VMM when the
guest does something the VMM must handle: the exit reason, the exit
qualification, the VM-exit instruction-information field and the guest-state
area. Imports Unicorn and capstone, :mod:`spec.platform`.

Exits modelled here (Intel SDM vol. 3C, chapter 28 "VM Exits"):

``io``
    An IN, OUT, INS or OUTS (I/O bitmaps: every port exits except the
    ones whose intercept Xen clears, see :meth:`HardwareVcpu.run`). The exit
    qualification (SDM vol. 3C, table 28-5) gives: bits 2:0 size of access
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
    instruction boundary. Nothing of the next instruction has executed.
``interrupt_window``
    The VMM asked for interrupt-window exiting (an interrupt is pending but
    the guest cannot take it) and the guest reached an instruction boundary
    where RFLAGS.IF = 1 and there is no interrupt shadow (SDM vol. 3C,
    25.2 "Other Causes of VM Exits"). If both are due at one boundary the
    preemption timer is reported.
``triple_fault``
    Delivering a double fault raised a further fault (SDM vol. 3C 27.1,
    exit reason 2). The VMM resets the domain.

Software interrupts and exceptions do not exit: the CPU delivers them
through the guest's IVT or IDT (:mod:`spec.delivery`). How the physical CPU
reports them, measured on Unicorn 2.1.4: INT n, INT3, INTO (with OF = 1)
and every exception it raises itself (#DE, #BR, #NM, #MF, #GP, #NP, #SS,
#TS, #PF with CR2 set) arrive at ``UC_HOOK_INTR`` with the vector only; EIP
is past the instruction for INT n, INT3 and INTO (traps) and at it for an
exception (a fault). The error code is read from the CPU state
(:func:`spec.physical_cpu.error_code`). An undecodable instruction (UD2,
a LOCK where none is allowed) ends the run with ``UC_ERR_INSN_INVALID``,
and so does INT1 (ICEBP, ``F1``), which Unicorn gets wrong: it is a trap
through vector 1. Unicorn, like QEMU's TCG it derives from, never raises
#AC (it does not check alignment) and does not check the segment limits of
data accesses (no #GP or #SS for an offset beyond a limit). Anything else
Unicorn reports as an error is a ``cpu_error`` exit, which crashes the
domain, and so is an event the model cannot deliver (a task gate).

The instruction count (``icount``) counts retired guest instructions: one
per instruction the CPU retires, and one per instruction, or per restarted
iteration chunk, that the VMM completes by emulation. The virtual clock is
``icount`` plus the bus time of the vcpu's I/O accesses (``io_ns``), as
:mod:`spec.clock` defines; the preemption timer's deadline is on that
clock. CPUID, RDTSC and RDTSCP cause no exit here: the hardware boundary
answers them (:mod:`spec.cpuid`, :mod:`spec.clock`). A REP string instruction that the CPU runs
(MOVS, STOS, ...) is re-entered for each iteration, as Unicorn executes it:
it counts once per iteration plus once for the entry that finds the count
exhausted, so ``rep movsb`` with CX = 7 counts 8 and with CX = 0 counts 1.

Interruptibility. The hardware keeps the guest's *interrupt shadow* (the
blocking-by-STI and blocking-by-MOV-SS bits of the guest interruptibility
state): after an STI executed with IF = 0, and after a MOV to SS or POP SS,
external interrupts are not recognised until one more instruction has
completed (SDM vol. 2B "STI", vol. 3A 6.8.3). ``shadow`` is that state at
the instruction boundary where the vcpu stopped.

Event delivery on VM entry (SDM vol. 3C, 27.6 "Event Injection"): the VMM
injects an external interrupt and the CPU delivers it through the guest's
interrupt table as if it had arrived at that boundary
(:meth:`HardwareVcpu.deliver_interrupt`).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Callable

import capstone
import unicorn
from unicorn import x86_const as X

from spec import clock, cpuid, delivery, paging, physical_cpu, platform, trace
from spec.physical_cpu import REGS, SEGMENT_REGS as _SEG_REGS

# Segment registers, in the encoding of the instruction-information field.
SEGMENTS = ("es", "cs", "ss", "ds", "fs", "gs")
_CS_SEG_PREFIX = {capstone.x86.X86_PREFIX_ES: "es", capstone.x86.X86_PREFIX_CS: "cs",
                  capstone.x86.X86_PREFIX_SS: "ss", capstone.x86.X86_PREFIX_DS: "ds",
                  capstone.x86.X86_PREFIX_FS: "fs", capstone.x86.X86_PREFIX_GS: "gs"}

RFLAGS_TF = 1 << 8
RFLAGS_IF = 1 << 9
RFLAGS_DF = 1 << 10
RFLAGS_NT = 1 << 14
RFLAGS_RF = 1 << 16
RFLAGS_VM = 1 << 17
RFLAGS_AC = 1 << 18
CR0_PE = 1 << 0

_STI, _POP_SS, _MOV_SREG = 0xFB, 0x17, 0x8E


class GuestAccessError(delivery.Unreachable):
    """A linear access on the guest's behalf failed: a page fault or #GP of
    the walk (:mod:`spec.paging`, kept as ``page_fault``), or a
    guest-physical address no RAM backs (``page_fault`` None)."""


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
_HLT = 0xF4
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
        return byte if byte in _IO_OPCODES or byte == _HLT else None
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


def _passes_through(q: IoQualification | None) -> bool:
    """True when the I/O bitmap lets the access through: every port it
    touches has its intercept cleared (Xen's ``hvm_enable``)."""
    return (q is not None and not q.string
            and all((q.port + i) & 0xFFFF in platform.PASSTHROUGH_PORTS for i in range(q.size)))


def _trap_length(opcode: int) -> int:
    """The length of INT n (2), INT3 and INTO (1) after their prefixes."""
    return 2 if opcode == 0xCD else 1


def _mask_of(size: int) -> int:
    return (1 << 8 * size) - 1


class HardwareVcpu:
    """One vcpu of an HVM domain on the physical CPU.

    It owns the domain's guest-physical RAM (mapped into Unicorn, except the
    VGA hole, where the device model may map its video memory) and runs the
    guest until the next VM exit. ``run`` returns the
    exit; the VMM then reads and writes guest state through ``reg``/``set_reg``
    and guest memory through ``read``/``write``, as Xen does through the VMCS
    and the p2m.
    """

    def __init__(self, memory_bytes: int) -> None:
        self.memory_bytes = memory_bytes
        self.uc = physical_cpu.open_cpu()
        #: memory of another domain mapped into this one: (start, end, buffer)
        self.foreign: list[tuple[int, int, object]] = []
        #: the host frames behind the guest's RAM
        self.host_ram = physical_cpu.HostRam(self.uc)
        for start, end in self.ram_ranges():
            self.host_ram.map(start, end)
        #: pages of RAM whose EPT entry Xen removed (the guest gave them back)
        self.holes: set[int] = set()
        #: Xen's writes into guest memory are reported here (log-dirty tracking)
        self.on_copy: Callable[[int, int], None] = lambda gpa, length: None
        self.icount = 0
        #: bus time of the vcpu's I/O accesses (:mod:`spec.clock`)
        self.io_ns = 0
        self.shadow = False
        #: the host's operator asked the vcpu to stop (:meth:`interrupt`)
        self.interrupted = False
        #: where pass-through port accesses are traced, and this vcpu's id
        self.emit: Callable[[trace.Event], None] | None = None
        self.vcpu_id = 0
        self._pending: Exit | None = None
        self._fault: str | None = None
        self.uc.hook_add(unicorn.UC_HOOK_CODE, self._on_instruction)
        self.uc.hook_add(unicorn.UC_HOOK_MEM_UNMAPPED, self._on_unmapped)
        self.uc.hook_add(unicorn.UC_HOOK_MEM_WRITE_PROT, self._on_write_protected)
        self.uc.hook_add(unicorn.UC_HOOK_INTR, self._on_event)
        # the code hook counted the RDTSC before it executes
        clock.attach(self.uc, lambda: self.icount - 1 + self.io_ns)
        cpuid.attach(self.uc)
        self.reset()

    def ram_ranges(self) -> list[tuple[int, int]]:
        """Guest-physical RAM (:func:`spec.platform.ram_ranges`): the VGA hole
        and the MMIO hole below 4 GiB left out, the rest above 4 GiB. The
        host backs a page only when it is first touched."""
        return platform.ram_ranges(self.memory_bytes)

    def is_ram(self, gpa: int, length: int) -> bool:
        """Whether memory backs the whole range: the domain's RAM, or memory
        mapped into it (qemu-dm's video memory)."""
        spans = self.ram_ranges() + [(start, end) for start, end, _ in self.foreign]
        if not any(start <= gpa and gpa + length <= end for start, end in spans):
            return False
        return not self.holes or not any(
            p in self.holes for p in range(gpa >> platform.PAGE_SHIFT,
                                           ((gpa + max(length, 1) - 1) >> platform.PAGE_SHIFT) + 1))

    def unmap_page(self, pfn: int) -> None:
        """Remove a page's EPT entry and free its frame: the page is a hole."""
        self.host_ram.release(pfn << platform.PAGE_SHIFT, platform.PAGE_SIZE)
        self.holes.add(pfn)

    def remap_page(self, pfn: int) -> None:
        """Give a hole a new, zeroed frame."""
        self.host_ram.restore(pfn << platform.PAGE_SHIFT, platform.PAGE_SIZE)
        self.holes.discard(pfn)

    def map_foreign(self, gpa: int, buffer) -> None:
        """Map a dom0 buffer (a ctypes array) at ``gpa`` in the domain's
        physical address space, as qemu-dm's video memory is added to the
        guest's p2m; the pages are writable until :meth:`set_writable` says
        otherwise."""
        size = ctypes.sizeof(buffer)
        self.uc.mem_map_ptr(gpa, size, unicorn.UC_PROT_ALL, buffer)
        self.foreign.append((gpa, gpa + size, buffer))

    def map_rom(self, gpa: int, data: bytes) -> None:
        """A ROM in the domain's physical address space (a firmware's alias
        below 4 GiB, :mod:`spec.hvmloader`): readable and executable, not
        writable; reads of it are reads of memory, as RAM's are."""
        self.uc.mem_map(gpa, len(data), unicorn.UC_PROT_READ | unicorn.UC_PROT_EXEC)
        self.uc.mem_write(gpa, data)
        self.foreign.append((gpa, gpa + len(data), data))

    def set_writable(self, pfn: int, writable: bool) -> None:
        """The EPT write permission of one page (a log-dirty page is read-only)."""
        prot = unicorn.UC_PROT_ALL if writable else unicorn.UC_PROT_READ | unicorn.UC_PROT_EXEC
        self.uc.mem_protect(pfn << platform.PAGE_SHIFT, platform.PAGE_SIZE, prot)

    def reset(self) -> None:
        """The reset state of SDM vol. 3A table 9-1 that matters here: real
        mode (CR0 = 0x60000010 less the cache bits: PE and PG clear, ET set;
        EFER = 0), CS:IP = F000:FFF0, DS/ES/SS/FS/GS = 0, RFLAGS = 2, GDTR
        and IDTR with base 0 and limit 0xFFFF (the IVT at address 0); see
        :func:`spec.physical_cpu.reset`."""
        physical_cpu.reset(self.uc, platform.RESET_CS, platform.RESET_IP)

    # --- guest state ----------------------------------------------------------

    def reg(self, name: str) -> int:
        return self.uc.reg_read(REGS[name])

    def set_reg(self, name: str, value: int) -> None:
        self.uc.reg_write(REGS[name], value & 0xFFFF_FFFF_FFFF_FFFF)

    def efer(self) -> int:
        return self.uc.msr_read(physical_cpu.MSR_EFER)

    def long_mode(self) -> bool:
        """IA-32e mode is active (EFER.LMA, SDM vol. 3A, 2.2.1): 64-bit or
        compatibility mode, and 64-bit IDT gates."""
        return bool(self.efer() & paging.EFER_LMA)

    def mode(self) -> int:
        """The code segment's default operand and address size: 16 in real
        mode; in IA-32e mode 64 when the CS descriptor's L bit is set;
        otherwise the D bit of the CS descriptor (SDM vol. 3A, 3.4.5)."""
        if not self.reg("cr0") & CR0_PE:
            return 16
        high = self._descriptor("cs")[1]
        if high & (1 << 21) and self.long_mode():
            return 64
        return 32 if high & (1 << 22) else 16

    def address_mask(self) -> int:
        """Linear addresses wrap at 4 GiB outside 64-bit mode."""
        return 0xFFFF_FFFF_FFFF_FFFF if self.mode() == 64 else 0xFFFF_FFFF

    def segment_base(self, seg: str) -> int:
        """The base of a segment register: the selector times 16 in real
        mode (SDM vol. 3A, 20.1.1); in 64-bit mode 0, except FS and GS whose
        bases are MSRs (3.4.4); in protected mode the base in the selector's
        GDT descriptor, which the hardware cached when the selector was
        loaded (a GDT changed after loading is not modelled)."""
        if not self.reg("cr0") & CR0_PE:
            return self.uc.reg_read(_SEG_REGS[seg]) << 4
        if self.mode() == 64:
            if seg in ("fs", "gs"):
                return self.uc.reg_read(X.UC_X86_REG_FS_BASE if seg == "fs"
                                        else X.UC_X86_REG_GS_BASE)
            return 0
        low, high = self._descriptor(seg)
        return (low >> 16) | ((high & 0xFF) << 16) | (high & 0xFF000000)

    def _descriptor(self, seg: str) -> tuple[int, int]:
        """The two 32-bit words of a segment's GDT descriptor (LDT-based
        selectors are not modelled and read as a null descriptor)."""
        selector = self.uc.reg_read(_SEG_REGS[seg])
        raw = self._gdt_entry(selector)
        if raw is None:
            return 0, 0
        return int.from_bytes(raw[:4], "little"), int.from_bytes(raw[4:], "little")

    def _gdt_entry(self, selector: int) -> bytes | None:
        _sel, base, limit, _flags = self.uc.reg_read(X.UC_X86_REG_GDTR)
        index = selector & ~7
        if selector & 4 or index + 7 > limit:
            return None
        try:
            return self.read_linear(base + index, 8)
        except GuestAccessError:
            return None

    def ss_dpl(self) -> int:
        """The DPL of SS, which Xen takes as the guest's privilege level
        (0 in real mode)."""
        if not self.reg("cr0") & CR0_PE:
            return 0
        return (self._descriptor("ss")[1] >> 13) & 3

    def linear_rip(self) -> int:
        return (self.segment_base("cs") + self.reg("rip")) & self.address_mask()

    def read(self, gpa: int, length: int) -> bytes:
        return bytes(self.uc.mem_read(gpa, length))

    def write(self, gpa: int, data: bytes) -> None:
        self.uc.mem_write(gpa, data)
        self.on_copy(gpa, len(data))

    # --- linear addresses ---------------------------------------------------------

    def paging(self) -> paging.PagingState:
        return paging.PagingState(self.reg("cr0"), self.reg("cr3"), self.reg("cr4"),
                                  self.efer())

    def translate(self, linear: int, write: bool = False) -> int:
        """The guest-physical address of ``linear`` (:mod:`spec.paging`);
        raises :class:`GuestAccessError`."""
        def table(gpa: int, n: int) -> bytes:
            if not self.is_ram(gpa, n):
                raise GuestAccessError(f"page-table entry at {gpa:#x} is not RAM")
            return self.read(gpa, n)
        cr0 = self.reg("cr0")
        if not cr0 & paging.CR0_PG:
            return linear & 0xFFFF_FFFF         # paging off: linear is physical
        state = paging.PagingState(cr0, self.reg("cr3"), self.reg("cr4"), self.efer())
        try:
            return paging.translate(state, linear, write, table, self.write)
        except paging.PageFault as fault:
            raise GuestAccessError(str(fault), fault) from None

    def _pieces(self, linear: int, length: int, write: bool) -> list[tuple[int, int]]:
        """(gpa, length) of each page's part of a linear range, all RAM."""
        out, done = [], 0
        while done < length:
            at = linear + done
            n = min(length - done, paging.PAGE - at % paging.PAGE)
            gpa = self.translate(at, write)
            if not self.is_ram(gpa, n):
                raise GuestAccessError(f"linear {at:#x} is guest-physical {gpa:#x}, "
                                       f"which is not RAM")
            out.append((gpa, n))
            done += n
        return out

    def reachable(self, linear: int, length: int, write: bool = False) -> None:
        """Raise :class:`GuestAccessError` unless the whole range is RAM
        the guest's page tables reach."""
        self._pieces(linear, length, write)

    def read_linear(self, linear: int, length: int) -> bytes:
        """Guest memory by linear address, as Xen's ``hvm_copy_from_guest_linear``."""
        return b"".join(self.read(gpa, n) for gpa, n in self._pieces(linear, length, False))

    def write_linear(self, linear: int, data: bytes) -> None:
        """Guest memory by linear address, as Xen's ``hvm_copy_to_guest_linear``;
        nothing is written unless every page is reachable."""
        done = 0
        for gpa, n in self._pieces(linear, len(data), True):
            self.write(gpa, data[done:done + n])
            done += n

    # --- running ----------------------------------------------------------------

    def clock_ns(self) -> int:
        """The vcpu's virtual clock (:mod:`spec.clock`)."""
        return self.icount + self.io_ns

    def run(self, budget: int, deadline: int | None = None, window: bool = False) -> Exit:
        """Run the guest until a VM exit, or until ``budget`` more
        instructions have retired (reason ``limit``). ``deadline`` arms the
        preemption timer (an absolute value of :meth:`clock_ns`); ``window``
        sets interrupt-window exiting.

        The I/O bitmap: an IN or OUT (not a string form) whose every port
        is one of :data:`spec.platform.PASSTHROUGH_PORTS` does not exit. It
        executes on the host's port: an OUT is gone, an IN reads
        :data:`spec.platform.PASSTHROUGH_READ`; the instruction retires and
        the guest runs on. It is traced as :class:`spec.trace.DirectIo`.
        (String forms to these ports exit as any other port does: the model
        runs no string I/O natively.) Each costs a port access's bus time
        (:func:`spec.clock.port_time`)."""
        end = self.icount + budget
        while True:
            ex = self._run_to_exit(end - self.icount,
                                   None if deadline is None else deadline - self.io_ns, window)
            if ex.reason == "event":
                ex = self._deliver(ex)
                if ex is None:
                    continue
            if ex.reason != "io" or not _passes_through(ex.io):
                return ex
            self._direct_io(ex)

    def _deliver(self, ex: Exit) -> Exit | None:
        """The guest raised an event that the CPU delivers without an exit
        (:mod:`spec.delivery`); a triple fault is an exit (SDM vol. 3C
        27.1, exit reason 2), and so is an event the model cannot deliver."""
        try:
            outcome = self.raise_event(ex.detail["event"])
        except delivery.NotModelled as exc:
            return Exit("cpu_error", ex.rip, 0, self.icount,
                        detail={"bytes": self.read_code(ex.rip).hex(), "error": str(exc)})
        if outcome.result == "triple_fault":
            return Exit("triple_fault", self.linear_rip(), 0, self.icount)
        return None

    def _direct_io(self, ex: Exit) -> None:
        q = ex.io
        data = self.reg("rax") & _mask_of(q.size)
        if q.dir == "in":
            data = (1 << 8 * q.size) - 1 & platform.PASSTHROUGH_READ
            self.set_reg("rax", self.reg("rax") & ~_mask_of(q.size) | data)
        if self.emit is not None:
            self.emit(trace.DirectIo(vcpu=self.vcpu_id, port=q.port, size=q.size, dir=q.dir,
                                     data=data, icount=ex.icount, rip=ex.rip))
        width = {16: 0xFFFF, 32: 0xFFFF_FFFF}.get(self.mode(), 0xFFFF_FFFF_FFFF_FFFF)
        self.set_reg("rip", (self.reg("rip") + ex.length) & width)
        self.icount += 1
        self.io_ns += clock.port_time(1)
        self.shadow = False

    def interrupt(self) -> None:
        """Stop from outside (another thread may call this): the vcpu leaves
        the guest at the next instruction boundary, and every later run
        returns at once, as a ``limit`` exit with nothing retired. This is
        the host's business, not the guest's: nothing is traced for it."""
        self.interrupted = True
        self.uc.emu_stop()

    def _run_to_exit(self, budget: int, deadline: int | None, window: bool) -> Exit:
        if self.interrupted:
            return Exit("limit", self.linear_rip(), 0, self.icount,
                        detail={"note": "interrupted"})
        self._pending = None
        self._raised: tuple[int, int, int, int] | None = None
        self._fault = None
        self._p2m: str | None = None
        self._fetch = False
        self._budget_end = self.icount + budget
        self._deadline = deadline
        self._window = window
        self._next_shadow = self.shadow
        start = self.linear_rip()
        self._last = start
        self._counted: int | None = None    # the instruction the code hook counted last
        try:
            self.uc.emu_start(self.reg("rip"), 1 << 40, count=0)
        except unicorn.UcError as exc:
            return self._fault_exit(exc, start)
        if self._raised is not None:
            physical_cpu.exception_delivered(self.uc)
            return self._event_exit(*self._raised)
        if self._pending is not None:
            return self._pending
        if self.icount >= self._budget_end:
            return Exit("limit", self.linear_rip(), 0, self.icount)
        return Exit("limit", self.linear_rip(), 0, self.icount, detail={"note": "stopped"})

    def _on_instruction(self, uc, address: int, size: int, _data) -> None:
        if address == self._counted and not follows_itself(
                self._code_bytes(address, min(size, 15)), self.mode()):
            # An instruction that stored into the bytes of Unicorn's block
            # being run: QEMU abandons the block before the store and runs
            # the instruction again, alone. It is one instruction, counted.
            return
        # the instruction before this one has retired: its shadow holds now
        self.shadow = self._next_shadow
        if self.icount >= self._budget_end or self.interrupted:
            uc.emu_stop()
            return
        if self._deadline is not None and self.icount >= self._deadline:
            uc.emu_stop()
            self._pending = Exit("preemption_timer", address, 0, self.icount)
            return
        interrupts = self.uc.reg_read(X.UC_X86_REG_EFLAGS) & RFLAGS_IF
        if self._window and interrupts and not self.shadow:
            uc.emu_stop()
            self._pending = Exit("interrupt_window", address, 0, self.icount)
            return
        code = self._code_bytes(address, min(size, 15))
        mode = self.mode()
        opcode = exiting_opcode(code, mode)
        if opcode is None:
            self._next_shadow = shadow_after(code, mode, bool(interrupts))
            self.icount += 1
            self._last = self._counted = address
            return
        uc.emu_stop()
        at = opcode_index(code, mode)
        if 0xF0 in code[:at]:
            # LOCK on IN/OUT/INS/OUTS/HLT is #UD (SDM vol. 2, "LOCK"), raised
            # before any exit
            event = delivery.Event(delivery.UD, delivery.FAULT, address - self.segment_base("cs"))
            self._pending = Exit("event", address, 0, self.icount, detail={"event": event})
        elif opcode == _HLT:
            self._pending = Exit("hlt", address, size, self.icount)
        elif opcode == VMCALL:
            self._pending = Exit("vmcall", address, at + 3, self.icount)
        else:
            qual, length = decode_io(code, mode, self.reg("rdx"))
            self._pending = Exit("io", address, length, self.icount, io=qual)

    def _code_bytes(self, linear: int, size: int) -> bytes:
        """The bytes of the instruction the CPU is about to execute."""
        if not self.reg("cr0") & paging.CR0_PG:
            return bytes(self.uc.mem_read(linear, size))
        return self.read_linear(linear, size)

    def _on_unmapped(self, uc, access, address, size, value, _data) -> bool:
        self._fault = f"{address:#x}:{size}"
        self._fault_gpa = address
        self._fetch = access == unicorn.UC_MEM_FETCH_UNMAPPED
        self._access = {unicorn.UC_MEM_READ_UNMAPPED: "read",
                        unicorn.UC_MEM_WRITE_UNMAPPED: "write"}.get(access, "fetch")
        return False

    def _on_write_protected(self, uc, access, address, size, value, _data) -> bool:
        # an EPT violation on a page that is mapped but not writable
        self._fault = f"{address:#x}:{size}"
        self._fault_gpa = address
        self._fetch = False
        self._access = "write"
        self._p2m = "logdirty"
        return False

    def _fault_exit(self, exc: unicorn.UcError, start: int) -> Exit:
        # The faulting instruction was counted on entry to its hook but did
        # not retire; the hook's address is exact. An instruction fetch from
        # unbacked memory never reached the hook: the fault is at the
        # fetched address, and every instruction before it retired.
        if self._fault is not None and self._fetch:
            rip = self._fault_gpa
        else:
            self.icount -= 1
            rip = self._last
        self.set_reg("rip", rip - self.segment_base("cs"))
        code = self.read_code(rip)
        if self._fault is not None:
            detail = {"bytes": code.hex(), "access": self._access}
            if self._p2m is not None:
                detail["p2m"] = self._p2m
            return Exit("ept_violation", rip, 0, self.icount, gpa=self._fault_gpa,
                        detail=detail)
        if exc.errno == unicorn.UC_ERR_INSN_INVALID:
            # Unicorn reports INT1 (ICEBP, F1) as an invalid instruction: it is
            # a trap through vector 1 (SDM vol. 2, "INT n"); anything else is #UD
            ip = rip - self.segment_base("cs")
            at = opcode_index(code, self.mode())
            if code[at:at + 1] == b"\xf1":
                self.icount += 1
                event = delivery.Event(delivery.DB, delivery.ICEBP, ip + at + 1)
            else:
                event = delivery.Event(delivery.UD, delivery.FAULT, ip)
            return Exit("event", rip, 0, self.icount, detail={"event": event})
        return Exit("cpu_error", rip, 0, self.icount,
                    detail={"bytes": code.hex(), "error": str(exc)})

    def _on_event(self, uc, vector: int, _data) -> None:
        """Unicorn raises INT n, INT3, INTO and every exception to its caller
        instead of delivering it: note the vector, the error code the CPU
        computed, and where it left EIP; deliver it when the run stops."""
        self._raised = (vector, physical_cpu.error_code(uc), self.reg("rip"), self.reg("cr2"))
        uc.emu_stop()

    def _event_exit(self, vector: int, error_code: int, ip: int, cr2: int) -> Exit:
        """The event Unicorn raised, as :mod:`spec.delivery` takes it. For
        INT n, INT3 and INTO (traps) Unicorn leaves EIP after the
        instruction, which retired; for an exception, at the faulting
        instruction, which did not retire (its code hook counted it, unless
        its fetch faulted)."""
        linear = (self.segment_base("cs") + ip) & self.address_mask()
        code = self.read_code(self._last)
        at = opcode_index(code, self.mode())
        trap = {0xCD: delivery.SOFTWARE, 0xCC: delivery.SOFTWARE_EXCEPTION,
                0xCE: delivery.SOFTWARE_EXCEPTION}.get(code[at] if at < len(code) else -1)
        if trap is not None and linear == self._last + len(code[:at]) + _trap_length(code[at]):
            return Exit("event", self._last, 0, self.icount,
                        detail={"event": delivery.Event(vector, trap, ip)})
        if linear == self._counted:
            self.icount -= 1
        code_of = delivery.ERROR_CODE
        event = delivery.Event(vector, delivery.FAULT, ip,
                               error_code if vector in code_of else None,
                               cr2 if vector == delivery.PF else None)
        return Exit("event", linear, 0, self.icount, detail={"event": event})

    # --- event delivery (the rules are :mod:`spec.delivery`'s) ----------------------

    def deliver_interrupt(self, vector: int) -> delivery.Outcome:
        """Deliver external interrupt ``vector`` at the current instruction
        boundary, as the CPU does for an event injected on VM entry
        (:func:`spec.delivery.raise_event`); the exceptions it raised are
        traced."""
        event = delivery.Event(vector, delivery.EXTERNAL, self.reg("rip"))
        return self.raise_event(event)

    def raise_event(self, event: delivery.Event) -> delivery.Outcome:
        """Deliver ``event`` and trace every exception raised on the way."""
        base = (self.segment_base("cs"), self.address_mask())
        try:
            outcome = delivery.raise_event(self, event)
        except delivery.NotModelled as exc:
            self._trace_events(exc.outcome, base)
            raise
        self._trace_events(outcome, base)
        return outcome

    def _trace_events(self, outcome: delivery.Outcome, base: tuple[int, int]) -> None:
        self.shadow = False
        if self.emit is not None:
            for ev in outcome.events:
                if ev.source != delivery.EXTERNAL:
                    self.emit(trace.ExceptionDelivery(
                        vcpu=self.vcpu_id, vector=ev.vector, source=ev.source,
                        error_code=ev.error_code, cr2=ev.cr2,
                        rip=(base[0] + ev.return_ip) & base[1], icount=self.icount))

    def idtr(self) -> tuple[int, int]:
        _sel, base, limit, _flags = self.uc.reg_read(X.UC_X86_REG_IDTR)
        return base, limit

    def gdtr(self) -> tuple[int, int]:
        _sel, base, limit, _flags = self.uc.reg_read(X.UC_X86_REG_GDTR)
        return base, limit

    def tss(self) -> tuple[int, int, int]:
        selector, base, limit, _flags = self.uc.reg_read(X.UC_X86_REG_TR)
        return selector, base, limit

    def selector(self, seg: str) -> int:
        return self.uc.reg_read(_SEG_REGS[seg])

    def stack_32bit(self) -> bool:
        return bool(self._descriptor("ss")[1] & (1 << 22))

    def load_segment(self, seg: str, selector: int, descriptor: bytes | None) -> None:
        """Load a segment register as the CPU does in delivery, and set the
        descriptor's accessed bit in the GDT. CS reloaded with the selector
        it holds (in 64-bit mode, or outside IA-32e mode) keeps its hidden
        part: Unicorn's segment loader cannot load CS from 64-bit mode."""
        if (seg == "cs" and selector == self.selector("cs")
                and (self.mode() == 64 or not self.long_mode())):
            return
        inward = seg == "cs" and selector & 3 < self.selector("cs") & 3
        try:
            loaded = physical_cpu.load_segment(self.uc, seg, selector, descriptor,
                                               selector & 3 if inward else None)
        except physical_cpu.SegmentLoadRefused as exc:
            raise delivery.NotModelled(str(exc)) from None
        if loaded is not None and descriptor is not None and loaded != descriptor:
            base, _limit = self.gdtr()
            self.write_linear(base + (selector & ~7), loaded)

    def read_code(self, rip: int) -> bytes:
        """Up to 15 bytes at linear ``rip`` that RAM backs (the instruction
        the VMM fetches to emulate, or shows in a diagnostic)."""
        out = b""
        for i in range(15):
            try:
                out += self.read_linear(rip + i, 1)
            except GuestAccessError:
                break
        return out
