"""The hardware boundary: a vcpu in VMX non-root mode, and its VM exits.

Room: the physical CPU that runs the guest's ordinary instructions (Unicorn,
outside the spec) and what the VT-x hardware reports to the VMM when the
guest does something the VMM must handle. This module is the vcpu
(:class:`HardwareVcpu`): its RAM and guest state, the run loop that stops
it at the next VM exit, and the glue through which the CPU delivers
interrupts and exceptions by :mod:`spec.delivery`'s rules. What an exit
reports (the exit reasons, the exit qualification, the VM-exit
instruction-information field) and which instruction bytes cause one is
:mod:`spec.vm_exit`; segments and guest memory by linear address are
:mod:`spec.guest_linear`. Imports Unicorn, :mod:`spec.vm_exit`,
:mod:`spec.guest_linear`, :mod:`spec.delivery`, :mod:`spec.clock`,
:mod:`spec.cpuid`, :mod:`spec.paging` (whether paging is on),
:mod:`spec.physical_cpu`, :mod:`spec.platform` and :mod:`spec.trace`.

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

How the count is kept. The physical CPU counts: a run is Unicorn's
``emu_start(..., count=N)``, which retires at most N instructions and stops
at the boundary before the next one, where N is what is left before the
budget or the preemption timer's deadline, whichever comes first. Nothing
of the model runs per instruction. It runs per *block*: Unicorn, like the
QEMU it derives from, translates straight-line code into blocks and reports
the start of each (``UC_HOOK_BLOCK``: the linear address and size) before
its first instruction runs (:meth:`HardwareVcpu._on_block`). The block's
bytes are decoded once for each mode (:func:`spec.vm_exit.decode_block`)
and the decoding is used again while they stay the same. When a run ends
before its N instructions (an exit, an exception, a fault), the count is
the instructions of the blocks that ran whole plus, in the block where it
stopped, those before the instruction at RIP (:meth:`HardwareVcpu._settle`).
At each block's start the vcpu decides whether the run may enter it: not
past the budget; not where the interrupt window is open; and if the block
holds an instruction that exits (:func:`spec.vm_exit.exiting_opcode`), the
run stops at the block's start and runs again with a count that ends it
right before that instruction, whose exit is then reported with nothing of
it executed. Three facts of the CPU make this exact
(:class:`spec.vm_exit.Block`): a block runs from its first instruction to
its last unless something stops it; only the last instruction of a block
can set IF or cast an interrupt shadow; and a store into the block being
run makes QEMU abandon it before the store and run the storing instruction
again as a block of its own (that block is recognised, and the instruction
counted once; Unicorn's own count sees it twice, so that run ends one
instruction early and the next goes on from there).

Interruptibility. The hardware keeps the guest's *interrupt shadow* (the
blocking-by-STI and blocking-by-MOV-SS bits of the guest interruptibility
state): after an STI executed with IF = 0, and after a MOV to SS or POP SS,
external interrupts are not recognised until one more instruction has
completed (SDM vol. 2B "STI", vol. 3A 6.8.3). ``shadow`` is that state at
the instruction boundary where the vcpu stopped. With interrupt-window
exiting the vcpu stops at the first boundary where IF = 1 and there is no
shadow. IF goes from 0 to 1 only through an instruction that ends its
block (STI, POPF, IRET, ...), and a shadow holds only after the last
instruction of a block, so the window is looked for where a block starts:
IF = 1 without a shadow opens it there; IF = 1 in a shadow opens it one
instruction later (the run goes on for one instruction and looks again).

Event delivery on VM entry (SDM vol. 3C, 27.6 "Event Injection"): the VMM
injects an external interrupt and the CPU delivers it through the guest's
interrupt table as if it had arrived at that boundary
(:meth:`HardwareVcpu.deliver_interrupt`).
"""

from __future__ import annotations

import ctypes
from typing import Callable

import unicorn
from unicorn import x86_const as X

from spec import clock, cpuid, delivery, paging, physical_cpu, platform, trace
from spec.guest_linear import GuestLinear
from spec.physical_cpu import REGS, SEGMENT_REGS as _SEG_REGS
from spec.vm_exit import (HLT, VMCALL, Block, Exit, IoQualification, decode_block, decode_io,
                          exiting_opcode, follows_itself, opcode_index)

RFLAGS_TF = 1 << 8
RFLAGS_IF = 1 << 9
RFLAGS_DF = 1 << 10
RFLAGS_NT = 1 << 14
RFLAGS_RF = 1 << 16
RFLAGS_VM = 1 << 17
RFLAGS_AC = 1 << 18
#: the MSRs of SYSCALL (SDM vol. 4, table 2-2) and EFER's SYSCALL enable
MSR_STAR, MSR_LSTAR, MSR_FMASK = 0xC0000081, 0xC0000082, 0xC0000084
EFER_SCE = 1


def _passes_through(q: IoQualification | None) -> bool:
    """True when the I/O bitmap lets the access through: every port it
    touches has its intercept cleared (Xen's ``hvm_enable``)."""
    return (q is not None and not q.string
            and all((q.port + i) & 0xFFFF in platform.PASSTHROUGH_PORTS for i in range(q.size)))


#: how many decoded blocks the vcpu keeps (:meth:`HardwareVcpu._decode`)
_BLOCKS_KEPT = 1 << 16


def _mask_of(size: int) -> int:
    return (1 << 8 * size) - 1


class HardwareVcpu(GuestLinear):
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
        #: blocks decoded so far: (address, size, mode) -> the block
        self._blocks: dict[tuple[int, int, int], Block] = {}
        #: an instruction count the next run stops at, and the exit expected there
        self._stop_next: int | None = None
        self._again = 0
        self._exit_next: tuple[int, int, bytes, int] | None = None
        self._block: Block | None = None
        self._watch = None                  # the write watch's hook (watch_writes)
        self._base = 0
        #: a page fault the CPU raised while changing the EPT (_ept): not
        #: the guest's, it is the next event the CPU raises
        self._stray = False
        self.uc.hook_add(unicorn.UC_HOOK_BLOCK, self._on_block)
        self.uc.hook_add(unicorn.UC_HOOK_MEM_UNMAPPED, self._on_unmapped)
        self.uc.hook_add(unicorn.UC_HOOK_MEM_WRITE_PROT, self._on_write_protected)
        self.uc.hook_add(unicorn.UC_HOOK_INTR, self._on_event)
        self.uc.hook_add(unicorn.UC_HOOK_INSN, self._on_syscall, None, 1, 0,
                         X.UC_X86_INS_SYSCALL)
        clock.attach(self.uc, lambda: self._clock_at_rdtsc() + self.io_ns)
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
        self._ept(self.host_ram.release, pfn << platform.PAGE_SHIFT, platform.PAGE_SIZE)
        self.holes.add(pfn)

    def remap_page(self, pfn: int) -> None:
        """Give a hole a new, zeroed frame."""
        self._ept(self.host_ram.restore, pfn << platform.PAGE_SHIFT, platform.PAGE_SIZE)
        self.holes.discard(pfn)

    def map_foreign(self, gpa: int, buffer) -> None:
        """Map a dom0 buffer (a ctypes array) at ``gpa`` in the domain's
        physical address space, as qemu-dm's video memory is added to the
        guest's p2m; the pages are writable until :meth:`set_writable` says
        otherwise."""
        size = ctypes.sizeof(buffer)
        self._ept(self.uc.mem_map_ptr, gpa, size, unicorn.UC_PROT_ALL, buffer)
        self.foreign.append((gpa, gpa + size, buffer))

    def unmap_foreign(self, gpa: int, length: int) -> None:
        """Remove a mapping :meth:`map_foreign` made: the range is a hole
        again (an access there is an MMIO exit)."""
        self._ept(self.uc.mem_unmap, gpa, length)
        self.foreign = [f for f in self.foreign if (f[0], f[1]) != (gpa, gpa + length)]

    def map_rom(self, gpa: int, data: bytes) -> None:
        """A ROM in the domain's physical address space (a firmware's alias
        below 4 GiB, :mod:`spec.hvmloader`): readable and executable, not
        writable; reads of it are reads of memory, as RAM's are."""
        self.uc.mem_map(gpa, len(data), unicorn.UC_PROT_READ | unicorn.UC_PROT_EXEC)
        self.uc.mem_write(gpa, data)
        self.foreign.append((gpa, gpa + len(data), data))

    def watch_writes(self, first_pfn: int, nr: int, stored: Callable[[int, int], None]) -> None:
        """Report every guest store into pages ``first_pfn`` .. ``+ nr`` to
        ``stored(gpa, size)``; ``nr = 0`` stops (:mod:`spec.dirty_vram`,
        "Watched ranges")."""
        if self._watch is not None:
            self._ept(self.uc.hook_del, self._watch)
            self._watch = None
        if nr:
            first = first_pfn << platform.PAGE_SHIFT
            self._watch = self.uc.hook_add(
                unicorn.UC_HOOK_MEM_WRITE,
                lambda uc, access, address, size, value, data: stored(address, size),
                begin=first, end=first + (nr << platform.PAGE_SHIFT) - 1)

    def set_writable(self, pfn: int, writable: bool) -> None:
        """The EPT write permission of one page (a log-dirty page is read-only)."""
        prot = unicorn.UC_PROT_ALL if writable else unicorn.UC_PROT_READ | unicorn.UC_PROT_EXEC
        self._ept(self.uc.mem_protect, pfn << platform.PAGE_SHIFT, platform.PAGE_SIZE, prot)

    def _ept(self, call, *args) -> None:
        """Change the domain's physical address space with a Unicorn
        ``call``. The hardware raises nothing in the guest for it; Unicorn
        may raise a page fault that it leaves pending
        (:func:`spec.physical_cpu.drop_translations`), which
        :meth:`_on_event` then discards."""
        self._stray |= physical_cpu.drop_translations(self.uc, call, *args)

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

    def read(self, gpa: int, length: int) -> bytes:
        return bytes(self.uc.mem_read(gpa, length))

    def write(self, gpa: int, data: bytes) -> None:
        self.uc.mem_write(gpa, data)
        self.on_copy(gpa, len(data))

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
        """Run to the next exit. At each instruction boundary where the run
        stands, in this order: the budget (``limit``), the preemption timer,
        the interrupt window (IF = 1 and no shadow); then the instruction
        there, if it exits. Between these boundaries the CPU runs
        (:meth:`_emulate`), told how many instructions it may retire."""
        end = self.icount + budget
        limit = end if deadline is None else min(end, deadline)
        self._exit_next = self._stop_next = None
        self._again = 0
        while True:
            if self.interrupted:
                return Exit("limit", self.linear_rip(), 0, self.icount,
                            detail={"note": "interrupted"})
            if self.icount >= end:
                return Exit("limit", self.linear_rip(), 0, self.icount)
            if deadline is not None and self.icount >= deadline:
                return Exit("preemption_timer", self.linear_rip(), 0, self.icount)
            if window and self.reg("rflags") & RFLAGS_IF and not self.shadow:
                return Exit("interrupt_window", self.linear_rip(), 0, self.icount)
            if self._exit_next is not None:
                ex = self._exit_here(*self._exit_next)
                if ex is not None:
                    return ex
            stop = limit if self._stop_next is None else min(limit, self._stop_next)
            self._stop_next = None
            ex = self._emulate(stop, window)
            if ex is not None:
                return ex

    def _emulate(self, stop: int, window: bool) -> Exit | None:
        """Let the CPU run until instruction count ``stop`` at the latest:
        Unicorn counts the instructions (``emu_start(..., count=N)``) and
        ends the run before the one that would exceed them. Returns the exit
        the run ended with, or None when it ended at an instruction boundary
        that :meth:`_run_to_exit` looks at again; ``icount`` and ``shadow``
        are then those of that boundary.

        Where the run ends early (an exit, an exception, a fault), the count
        is the CPU's blocks' (:meth:`_on_block`): the instructions of every
        block that ran whole, and of the current one those before the
        boundary where it stopped."""
        self._pending: Exit | None = None
        self._syscall_at: int | None = None
        self._raised: tuple[int, int, int, int] | None = None
        self._fault: str | None = None
        self._p2m: str | None = None
        self._fetch = False
        self._stopped_at: tuple[int, bool] | None = None
        self._stop = stop
        self._window = window
        #: the block being run, the count and the shadow at its start
        self._block: Block | None = None
        self._base, self._base_shadow = self.icount, self.shadow
        self._entry_if = False
        self._read_mode()
        before = (self.icount, self.reg("rip"))
        # Unicorn counts an instruction that QEMU runs again after a store
        # into its own block twice (:meth:`_on_block`): a run of one such
        # instruction needs a count of two
        count, self._again = stop - self.icount + self._again, 0
        self._rerun = False
        try:
            self.uc.emu_start(self.reg("rip"), 1 << 40, count=count)
        except unicorn.UcError as exc:
            return self._fault_exit(exc)
        if self._syscall_at is not None:
            at, self._syscall_at = self._syscall_at, None
            self._settle(self.linear_rip())
            return self._syscall(at)
        if self._raised is not None:
            physical_cpu.exception_delivered(self.uc)
            return self._event_exit(*self._raised)
        if self._pending is not None:
            return self._pending
        if self._stopped_at is not None:
            self.icount, self.shadow = self._stopped_at
        else:
            self._settle(self.linear_rip())
        if (self.icount, self.reg("rip")) == before and self._stop_next is None \
                and self._exit_next is None and not self.interrupted:
            if self._rerun and count == 1:
                self._again = 1
                return None
            # Unicorn ended the run by itself with nothing retired
            return Exit("limit", self.linear_rip(), 0, self.icount, detail={"note": "stopped"})
        return None

    def _settle(self, linear: int) -> None:
        """The count and the interrupt shadow at the boundary before the
        instruction at ``linear``, where the run stopped: in the current
        block, after the instructions before it; past its end (its last
        instruction went elsewhere), after the whole block, with the shadow
        its last instruction casts."""
        block = self._block
        if block is None:
            self.icount, self.shadow = self._base, self._base_shadow
            return
        i = block.index.get(linear)
        if i is None:
            self.icount, self.shadow = self._base + len(block), self._casts(block)
        else:
            self.icount, self.shadow = self._base + i, self._base_shadow if i == 0 else False

    def _casts(self, block: Block) -> bool:
        """Whether the block's last instruction, now retired, left an
        interrupt shadow (:func:`spec.vm_exit.shadow_after`): MOV SS and POP
        SS always, STI if IF was 0 before it. IF before it is IF at the
        block's start, unless a CLI in the block cleared it: nothing else in
        a block can change IF (:class:`spec.vm_exit.Block`)."""
        return block.ss_last or (block.sti_last
                                 and not (self._entry_if and not block.clears_if))

    def _on_block(self, uc, address: int, size: int, _data) -> None:
        """The CPU is about to run the block at linear ``address`` (none of
        its instructions has run yet): the block before it ran whole, and
        this is the instruction boundary before this block's first
        instruction. Count, and stop here (before the block) where the run
        must not go on: the budget reached, the interrupt window open, or
        an instruction in the block that exits."""
        prev = self._block
        if prev is None:
            base, shadow = self._base, self._base_shadow
        else:
            i = prev.index.get(address)
            if (i is not None and size == len(prev.codes[i])
                    and not follows_itself(prev.codes[i], prev.mode)):
                # An instruction that stored into the bytes of the block
                # being run: QEMU abandons the block before the store and
                # runs the instruction again, as a block of its own. The
                # instructions before it retired; it is one instruction.
                base, shadow = self._base + i, self._base_shadow if i == 0 else False
                self._rerun = True
            else:
                base, shadow = self._base + len(prev.starts), self._casts(prev)
                if prev.mode_last:
                    self._read_mode()
        block = self._decode(address, size)
        self._block, self._base, self._base_shadow = block, base, shadow
        if block.sti_last:
            self._entry_if = bool(self.reg("rflags") & RFLAGS_IF)
        if base >= self._stop or self.interrupted:
            self._stop_here(base, shadow)
            return
        if self._window and self.reg("rflags") & RFLAGS_IF:
            if not shadow:
                self._stop_here(base, shadow)
                self._pending = Exit("interrupt_window", address, 0, base)
                return
            if len(block) > 1 and base + 1 < self._stop:
                # in a shadow: the window may open after this instruction
                self._stop_here(base, shadow)
                self._stop_next = base + 1
                return
        k = block.exiting
        if k == 0:
            self._stop_here(base, shadow)
            self._pending = self._exiting(address, block.codes[0], base, block.mode)
        elif k is not None and base + k < self._stop:
            # run the k instructions before it, then exit there
            self._stop_here(base, shadow)
            self._stop_next = base + k
            self._exit_next = (base + k, block.starts[k], block.codes[k], block.mode)

    def _stop_here(self, icount: int, shadow: bool) -> None:
        """End the run at the boundary before the current block."""
        self.uc.emu_stop()
        self._block = None
        self._stopped_at = (icount, shadow)
        self.icount, self.shadow = icount, shadow

    def _read_mode(self) -> None:
        """What decides how the bytes at a linear address decode (the code
        segment's size) and which bytes they are (paging on or off). Read
        when a run starts and after an instruction that may change them
        (:func:`spec.vm_exit.changes_mode`)."""
        self._mode = self.mode()
        self._paged = bool(self.reg("cr0") & paging.CR0_PG)

    def _decode(self, address: int, size: int) -> Block:
        """The block at ``address``, decoded once for its bytes and mode."""
        if self._paged:
            raw = self.read_linear(address, size)
        else:
            raw = physical_cpu.read_memory(self.uc, address, size)
        key = (address, size, self._mode)
        block = self._blocks.get(key)
        if block is None or block.raw != raw:
            if len(self._blocks) >= _BLOCKS_KEPT:
                self._blocks.clear()        # a cache: decoding again gives the same
            block = self._blocks[key] = decode_block(raw, address, self._mode)
        return block

    def _exit_here(self, icount: int, address: int, code: bytes, mode: int) -> Exit | None:
        """The exit of the instruction that a block's count stopped before,
        if the run stands there and the bytes are still that instruction."""
        self._exit_next = None
        if icount != self.icount or address != self.linear_rip() \
                or self._code_bytes(address, len(code)) != code:
            return None
        return self._exiting(address, code, icount, mode)

    def _exiting(self, address: int, code: bytes, icount: int, mode: int) -> Exit:
        """The exit of the instruction ``code`` at linear ``address``, one
        that :func:`spec.vm_exit.exiting_opcode` names, with nothing of it
        executed."""
        at = opcode_index(code, mode)
        if 0xF0 in code[:at]:
            # LOCK on IN/OUT/INS/OUTS/HLT is #UD (SDM vol. 2, "LOCK"), raised
            # before any exit
            event = delivery.Event(delivery.UD, delivery.FAULT, address - self.segment_base("cs"))
            return Exit("event", address, 0, icount, detail={"event": event})
        opcode = exiting_opcode(code, mode)
        if opcode == HLT:
            return Exit("hlt", address, len(code), icount)
        if opcode == VMCALL:
            return Exit("vmcall", address, at + 3, icount)
        qual, length = decode_io(code, mode, self.reg("rdx"))
        return Exit("io", address, length, icount, io=qual)

    def _clock_at_rdtsc(self) -> int:
        """The count at the boundary before the RDTSC (or RDTSCP) that is
        executing: the CPU has RIP at it, in the current block."""
        block = self._block
        linear = self.linear_rip()
        i = None if block is None else block.index.get(linear)
        return self._base + (0 if i is None else i)

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

    def _fault_exit(self, exc: unicorn.UcError) -> Exit:
        """The run ended with an error: the CPU left RIP at the instruction
        that faulted, which did not retire; every instruction before it did.
        An instruction fetch from unbacked memory is reported at the fetched
        address."""
        linear = self.linear_rip()
        self._settle(linear)
        rip = self._fault_gpa if self._fault is not None and self._fetch else linear
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
        computed, and where it left EIP; deliver it when the run stops. A
        fault left pending by a change of the EPT (:meth:`_ept`) is not the
        guest's: discarded, and the CPU runs on."""
        if self._stray:
            self._stray = False
            return
        self._raised = (vector, physical_cpu.error_code(uc), self.reg("rip"), self.reg("cr2"))
        uc.emu_stop()

    def _on_syscall(self, uc, _data) -> None:
        """Unicorn's SYSCALL calls this hook (RIP at the instruction) and
        then steps over the instruction, doing nothing of what it does:
        the run stops after it, and :meth:`_syscall` does the rest."""
        self._syscall_at = self.linear_rip()
        uc.emu_stop()

    def _syscall(self, at: int) -> Exit | None:
        """SYSCALL at linear ``at`` (SDM vol. 2B, "SYSCALL"), the count past
        it. An Intel CPU raises #UD unless in 64-bit mode with EFER.SCE set
        (the instruction did not retire: an ``event`` exit). Otherwise:

        * RCX := RIP of the next instruction; R11 := RFLAGS with RF clear;
        * CS := IA32_STAR[47:32] with RPL 0, a flat 64-bit code segment of
          ring 0 (base 0, limit 4 GiB, type 11, L = 1), SS := that + 8, a
          flat writable data segment of ring 0: fixed values, nothing is
          read from the GDT;
        * RFLAGS := RFLAGS AND NOT IA32_FMASK, RF clear; RIP := IA32_LSTAR.

        It causes no VM exit and nothing is traced."""
        if self.mode() != 64 or not self.efer() & EFER_SCE:
            self.icount -= 1
            ip = (at - self.segment_base("cs")) & 0xFFFF_FFFF
            self.set_reg("rip", ip)
            return Exit("event", at, 0, self.icount,
                        detail={"event": delivery.Event(delivery.UD, delivery.FAULT, ip)})
        star = self.uc.msr_read(MSR_STAR)
        flags = self.reg("rflags")
        self.set_reg("rcx", self.reg("rip"))
        self.uc.reg_write(X.UC_X86_REG_R11, flags & ~RFLAGS_RF)
        selector = (star >> 32) & 0xFFFC
        physical_cpu.load_segment(self.uc, "cs", selector,
                                  (0x00AF9B000000FFFF).to_bytes(8, "little"), 0)
        physical_cpu.load_segment(self.uc, "ss", (selector + 8) & 0xFFFF,
                                  (0x00CF93000000FFFF).to_bytes(8, "little"))
        self.set_reg("rflags", flags & ~self.uc.msr_read(MSR_FMASK) & ~RFLAGS_RF)
        self.set_reg("rip", self.uc.msr_read(MSR_LSTAR))
        self.shadow = False
        return None

    def _event_exit(self, vector: int, error_code: int, ip: int, cr2: int) -> Exit:
        """The event Unicorn raised, as :mod:`spec.delivery` takes it. For
        INT n, INT3 and INTO (traps, which end their block) Unicorn leaves
        EIP after the instruction, which retired; for an exception, at the
        faulting instruction, which did not retire."""
        linear = (self.segment_base("cs") + ip) & self.address_mask()
        block = self._block
        if block is not None:
            # the instruction that ends where EIP is (INT n and INT3 end
            # their block; INTO does not when OF = 0)
            after = len(block) if linear == block.end() else block.index.get(linear, 0)
            code = block.codes[after - 1] if after else b""
            at = opcode_index(code, block.mode)
            raises = {0xCD: (code[at + 1:at + 2] or b"\x00")[0], 0xCC: delivery.BP,
                      0xCE: delivery.OF}.get(code[at] if at < len(code) else -1)
            trap = delivery.SOFTWARE if code[at:at + 1] == b"\xcd" \
                else delivery.SOFTWARE_EXCEPTION
            if raises == vector:
                self.icount, self.shadow = self._base + after, False
                return Exit("event", block.starts[after - 1], 0, self.icount,
                            detail={"event": delivery.Event(vector, trap, ip)})
        self._settle(linear)
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
