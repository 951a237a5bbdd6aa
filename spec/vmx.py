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
:mod:`spec.cpuid`, :mod:`spec.physical_cpu`, :mod:`spec.platform` and
:mod:`spec.trace`.

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
from typing import Callable

import unicorn
from unicorn import x86_const as X

from spec import clock, cpuid, delivery, physical_cpu, platform, trace
from spec.guest_linear import GuestLinear
from spec.physical_cpu import REGS, SEGMENT_REGS as _SEG_REGS
from spec.vm_exit import (HLT, VMCALL, Exit, IoQualification, decode_io, exiting_opcode,
                          follows_itself, opcode_index, shadow_after)

RFLAGS_TF = 1 << 8
RFLAGS_IF = 1 << 9
RFLAGS_DF = 1 << 10
RFLAGS_NT = 1 << 14
RFLAGS_RF = 1 << 16
RFLAGS_VM = 1 << 17
RFLAGS_AC = 1 << 18


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
        elif opcode == HLT:
            self._pending = Exit("hlt", address, size, self.icount)
        elif opcode == VMCALL:
            self._pending = Exit("vmcall", address, at + 3, self.icount)
        else:
            qual, length = decode_io(code, mode, self.reg("rdx"))
            self._pending = Exit("io", address, length, self.icount, io=qual)

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
