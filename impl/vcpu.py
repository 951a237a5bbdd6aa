"""The vcpu on Unicorn, built to stop only where the VMM must act.

Room: guest execution for the impl engine: RAM, the virtual instruction
clock, and the exits (I/O, HLT, VMCALL, unbacked memory including pages
given back to Xen, undecodable or faulting instructions, the instruction
budget). :class:`Vcpu` holds the state and runs the guest; it is built
from three parts, one concern each: :mod:`impl.guest_linear` (segment
bases, the page walk, guest memory by linear address), :mod:`impl.blocks`
(counting retired instructions block by block, and how that stays fast
and exact) and :mod:`impl.exits` (what an exit reports, and the hooks
that end a run with one). Imports Unicorn, capstone (for instruction
lengths only), the clock's fast path :mod:`impl.clock`, impl's answers to
CPUID and RDTSC (:mod:`impl.cpuid`), impl's event delivery
(:mod:`impl.delivery`), :mod:`spec.platform`, :mod:`spec.trace` and the
CPU both engines share, :mod:`spec.physical_cpu` (the hardware: how
Unicorn is opened for x86-64, reset, and made to load a segment
register).
"""

from __future__ import annotations

import ctypes
from typing import Callable

import capstone
import unicorn
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uclib

from impl import clock, cpuid, delivery
from impl.blocks import _EMPTY, Block, BlockAccounting
from impl.exits import Exit, ExitHooks, InternalError
from impl.guest_linear import PAGE, GuestLinear, pfns
from impl.registers import EFLAGS_IF, GPR, RFLAGS, RIP, WIDE, Mmr, Msr
from spec import physical_cpu, platform, trace


_STAR, _LSTAR, _FMASK = 0xC0000081, 0xC0000082, 0xC0000084
_RF = 1 << 16
#: the code and stack segments SYSCALL loads (flat, ring 0; 64-bit code)
_SYSCALL_CS = (0x00AF9B000000FFFF).to_bytes(8, "little")
_SYSCALL_SS = (0x00CF93000000FFFF).to_bytes(8, "little")


class Vcpu(GuestLinear, BlockAccounting, ExitHooks):
    """One vcpu and the domain's RAM on Unicorn: the state of its parts
    (:class:`impl.guest_linear.GuestLinear`, :class:`impl.blocks.BlockAccounting`,
    :class:`impl.exits.ExitHooks`) is set up here."""

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
        self._mmr = Mmr()               # uc_x86_mmr, for GDTR reads without the binding
        self._mmr_ref = ctypes.byref(self._mmr)
        self.host_ram = physical_cpu.HostRam(uc)
        for start, end in self.ram:
            self.host_ram.map(start, end)
        #: pages of RAM given back to Xen (no frame behind them)
        self.holes: set[int] = set()
        self._mapped: list[object] = []         # buffers of other domains mapped here
        self._watch = None                      # the write watch's hook (watch)
        #: Xen's own writes to guest memory are reported here (dirty video memory)
        self.on_write: Callable[[int, int], None] | None = None
        self.icount = 0
        self.io_ns = 0                  # bus time of I/O accesses (spec.clock)
        self.shadow = False             # interrupt shadow at the current boundary
        self.interrupted = False        # the operator's stop (interrupt())
        #: trace sink for accesses to ports Xen does not intercept (0x80, 0xED)
        self.emit = None
        self._shadow_at = -1
        #: (address, size, code segment size) -> (bytes, block)
        self._blocks: dict[tuple[int, int, int], tuple[bytes, Block]] = {}
        #: addresses with a stop point (UC_HOOK_CODE) -> its hook
        self._hooked: dict[int, int] = {}
        #: the stop points placed where a budget ends, removed after the run
        self._budget_hooks: list[int] = []
        #: decode context (see _probe_context) -> (TLB-flush epoch, its id
        #: in the C table); the epochs: all translations, global ones
        self._contexts: dict[tuple, tuple[int, int]] = {}
        self._context_ids = 0
        #: the decode context less the translation -> its id (the C clock's ``mode``)
        self._modes: dict[tuple, int] = {}
        self._epoch = self._global_epoch = 0
        #: the context ids (and the global one) the last probe found
        self._probed = (0, 0)
        #: linear pages that hold a block the clock has seen, in any context
        self._code_linear: set[int] = set()
        #: the clock's TLB of code pages: linear page -> (gpa, entry), for
        #: the decode context _tlb_context (blocks.BlockAccounting._code_page)
        self._tlb: dict[int, tuple[int, int]] = {}
        self._tlb_context = -1
        self._quiet = False
        #: pages of code the clock write-protected -> the table slots of
        #: their blocks; pages the guest wrote after that (bytes compared)
        self._code_pages: dict[int, set[int]] = {}
        self._mixed: set[int] = set()
        #: pages the clock write-protected: code, and the pages of a chunk
        #: protected whole with it (blocks.CHUNK_PAGES); the chunks so protected
        self._ro_pages: set[int] = set()
        self._chunked: set[int] = set()
        self._code_written: list[int] = []
        self._stop_calls = 0
        #: the VMM changed the vcpu's state: probe the decode context again
        self._stale = True
        self._cs_mode, self._cs_base = 16, 0
        self._disasm = {m: capstone.Cs(capstone.CS_ARCH_X86, cm) for m, cm in
                        ((16, capstone.CS_MODE_16), (32, capstone.CS_MODE_32),
                         (64, capstone.CS_MODE_64))}
        self._detail = {m: capstone.Cs(capstone.CS_ARCH_X86, cm) for m, cm in
                        ((16, capstone.CS_MODE_16), (32, capstone.CS_MODE_32),
                         (64, capstone.CS_MODE_64))}
        for cs in self._detail.values():
            cs.detail = True
        self._clock = clock.BlockClock(uc, self._on_block)
        self._c = self._clock.state
        self._clock.set_ram([(start, size, ctypes.addressof(view))
                             for start, size, _host, view in self.host_ram.pieces])
        #: the block in each slot of the C table, and in the spare slot
        self._slot_block: list[Block] = [_EMPTY] * (clock.SLOTS + 1)
        self._budget_end = 0
        self._msr = Msr(physical_cpu.MSR_EFER, 0)
        self._msr_ref = ctypes.byref(self._msr)
        uc.hook_add(unicorn.UC_HOOK_MEM_UNMAPPED, self._on_unmapped)
        uc.hook_add(unicorn.UC_HOOK_MEM_WRITE_PROT, self._on_read_only)
        uc.hook_add(unicorn.UC_HOOK_INTR, self._on_intr)
        self._intr: tuple[int, int, int, int] | None = None
        #: a page fault Unicorn left pending in a call that dropped
        #: translations (_drop): the next event raised is that fault
        self._stray = False
        #: ... left while the guest ran: the CPU forgets it once the run stops
        self._stray_dirty = False
        self._running = False
        self._trap_op: int | None = None
        uc.hook_add(unicorn.UC_HOOK_INSN, self._on_syscall, None, 1, 0, X.UC_X86_INS_SYSCALL)
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
        return self._reg(GPR[reg])

    def put(self, reg: str, value: int) -> None:
        self._value.value = value & WIDE
        uclib.uc_reg_write(self._handle, GPR[reg], self._value_ref)

    def put_reg(self, reg_id: int, value: int) -> None:
        self._value.value = value & WIDE
        uclib.uc_reg_write(self._handle, reg_id, self._value_ref)

    def clock_ns(self) -> int:
        """The virtual clock: instructions (and idle time) plus bus time."""
        return self.icount + self.io_ns

    def clock_at_rdtsc(self) -> int:
        """The clock at the boundary before the instruction executing now
        (called from its instruction hook, RIP at it)."""
        block = self._current()
        linear = self.seg_base("cs") + self._reg(RIP) & self.linear_mask()
        index = block.index.get(linear)
        icount = self.live_icount() if index is None else self._block_start(block) + index
        return icount + self.io_ns

    def backed(self, gpa: int, length: int) -> bool:
        if not any(lo <= gpa and gpa + length <= hi for lo, hi in self.ram):
            return False
        holes = self.holes
        if not holes:
            return True
        return not any(p in holes for p in pfns(gpa, length))

    def remove_page(self, pfn: int) -> None:
        """Take a page of RAM out of the guest's physical space: a hole, whose
        accesses exit as unbacked memory."""
        self._drop(self.host_ram.release, pfn << 12, PAGE)
        self.holes.add(pfn)
        self._code_pages.pop(pfn, None)
        self._ro_pages.discard(pfn)
        self._mixed.discard(pfn)
        self._clock.clear()

    def restore_page(self, pfn: int) -> None:
        """Back a hole again with a zeroed page."""
        self._drop(self.host_ram.restore, pfn << 12, PAGE)
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
        self._drop(self.uc.mem_map_ptr, gpa, ctypes.sizeof(buffer), unicorn.UC_PROT_ALL, buffer)
        self._mapped.append((gpa, buffer))
        self.ram.append((gpa, gpa + ctypes.sizeof(buffer)))

    def unmap_buffer(self, gpa: int, length: int) -> None:
        """Take a :meth:`map_buffer` mapping away: the range is a hole again."""
        self._drop(self.uc.mem_unmap, gpa, length)
        self._forget_code(gpa, length)
        self._mapped = [m for m in self._mapped if m[0] != gpa]
        self.ram.remove((gpa, gpa + length))

    def map_rom(self, gpa: int, data: bytes) -> None:
        """A read-only, executable ROM at ``gpa`` (a firmware's alias below 4 GiB)."""
        self.uc.mem_map(gpa, len(data), unicorn.UC_PROT_READ | unicorn.UC_PROT_EXEC)
        self.uc.mem_write(gpa, data)
        self.ram.append((gpa, gpa + len(data)))

    def watch(self, gpa: int, length: int, stored) -> None:
        """Have ``stored`` (a Unicorn memory-write hook) see every guest
        store into ``[gpa, gpa + length)``; length 0 ends the watch."""
        if self._watch is not None:
            self._drop(self.uc.hook_del, self._watch)
            self._watch = None
        if length:
            self._watch = self.uc.hook_add(unicorn.UC_HOOK_MEM_WRITE, stored, begin=gpa,
                                           end=gpa + length - 1)

    def protect(self, gpa: int, length: int, writable: bool) -> None:
        self._drop(self.uc.mem_protect, gpa, length, unicorn.UC_PROT_ALL if writable
                   else unicorn.UC_PROT_READ | unicorn.UC_PROT_EXEC)
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
            if ex.reason == "syscall":
                ex = self._syscall(ex)
                if ex is None:
                    continue
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
        if self.icount >= stop:
            # A timer armed with a deadline already past (the bus time of
            # the I/O just completed went beyond it; as an icount it may be
            # below 0): the VM exit comes before any instruction executes
            # (SDM vol. 3C 26.7.4, a VMX-preemption timer of 0 at VM entry).
            return self._timed(Exit("limit", self.rip(), 0, self.icount), deadline, end)
        if not window:
            return self._timed(self._run_to(stop), deadline, end)
        while True:
            if self.icount >= stop or self.interrupted:
                return self._timed(Exit("limit", self.rip(), 0, self.icount), deadline, end)
            enabled = self._reg(RFLAGS) & EFLAGS_IF
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
            c.io_ns = self.io_ns
            c.left = self._budget_end - self.icount
            self._running = True
            try:
                self.uc.emu_start(self._reg(RIP), 1 << 40)
            except unicorn.UcError as exc:
                self._settle_stray()
                self._drop_budget_hooks()
                if self._hook_error is not None:
                    raise self._hook_error
                ex = self._fault(exc)
                if ex is None:
                    continue
                return ex
            self._settle_stray()
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

    def _settle_stray(self) -> None:
        """The run has stopped: the CPU forgets a stray fault left while it
        ran (:meth:`_drop`)."""
        self._running = False
        if self._stray_dirty:
            self._stray_dirty = False
            physical_cpu.exception_delivered(self.uc)

    # --- SYSCALL ----------------------------------------------------------------------

    def _on_syscall(self, uc, _data) -> None:
        """Unicorn's SYSCALL calls this hook, with RIP at the instruction,
        and then only steps over it: the run stops, and :meth:`_syscall`
        does what the CPU does."""
        if self._quiet:
            return
        block = self._current()
        at = self._cs_base + self._reg(RIP) & self.linear_mask()
        index = block.index.get(at)
        if index is None:
            self._hook_error = InternalError(f"SYSCALL at {at:#x} outside the block counted")
            uc.emu_stop()
            return
        self._stop(Exit("syscall", at, 0, self._block_start(block) + index))

    def _syscall(self, ex: Exit) -> Exit | None:
        """SYSCALL (SDM vol. 2B): outside 64-bit mode, or with EFER.SCE
        clear, #UD (an Intel CPU's; the event is returned). Otherwise RCX
        gets the next instruction's address, R11 RFLAGS (RF clear); CS is
        STAR[47:32] & ~3, a flat 64-bit ring-0 code segment, SS that plus 8,
        a flat ring-0 data segment, neither read from the GDT; RFLAGS loses
        the bits set in FMASK (and RF); RIP is LSTAR. Nothing is traced:
        no VM exit happens."""
        after = self._reg(RIP)                  # Unicorn stepped over it
        efer = self._efer()
        if self.mode() != 64 or not efer & 1:
            ip = ex.rip - self._cs_base & 0xFFFFFFFF
            self.put("rip", ip)
            return Exit("event", ex.rip, 0, ex.icount, {"vector": 6, "source": "fault", "ip": ip})
        uc = self.uc
        star, lstar, fmask = (uc.msr_read(m) for m in (_STAR, _LSTAR, _FMASK))
        flags = self._reg(RFLAGS)
        self.put("rcx", after)
        self.put("r11", flags & ~_RF)
        selector = star >> 32 & 0xFFFC
        physical_cpu.load_segment(uc, "cs", selector, _SYSCALL_CS, 0)
        physical_cpu.load_segment(uc, "ss", selector + 8 & 0xFFFF, _SYSCALL_SS)
        self.put_reg(RFLAGS, flags & ~fmask & ~_RF)
        self.put("rip", lstar)
        self.icount = ex.icount + 1
        self.shadow = False
        self._stale = True
        return None

    # --- event delivery (impl/delivery.py) ---------------------------------------------

    def deliver(self, vector: int) -> bool:
        """Deliver external interrupt ``vector`` as the CPU does on VM entry;
        False on a triple fault. Raises :class:`impl.delivery.Refused`."""
        return delivery.deliver(self, vector, "external", self._reg(RIP))
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
