"""The VMM: what Xen does when an HVM vcpu exits.

Room: exit handling for an HVM domain's vcpus; turning an I/O exit into an
ioreq, waiting for it, and completing the instruction. Imports
:mod:`spec.ioreq`, :mod:`spec.vm_exit` (the hardware's report),
:mod:`spec.vmx` (the hardware vcpu) and
:mod:`spec.trace`. The device model is reached only through the shared
ioreq page and the vcpu's event channel, as in Xen.

Port I/O, step by step (``xen/arch/x86/hvm/vmx/vmx.c``, ``hvm/io.c``,
``common/ioreq.c``; the string path follows Xen 3.x's
``vmx_io_instruction``):

1. **Exit.** The guest executes IN/OUT/INS/OUTS; the hardware exits with
   the I/O exit qualification (:class:`spec.vm_exit.IoQualification`).
2. **Build the ioreq.** ``type = PIO``, ``addr = port``, ``size`` from the
   qualification, ``dir = READ`` for IN. For IN/OUT, ``count = 1``,
   ``data_is_ptr = 0`` and, for OUT, ``data`` = the low ``size`` bytes of
   (E/R)AX. For INS/OUTS the data lives in guest memory: the VMM computes
   the operand's linear address from (E/R)SI (OUTS) or (E/R)DI (INS),
   truncated to the address size, plus the segment's base (ES for INS, DS or
   the override for OUTS); the count is (E/R)CX truncated to the address size
   when REP is present, else 1; ``df`` is RFLAGS.DF. The request is then
   clipped so that it **never crosses a page boundary**: forwards, to the
   elements that fit before the page's end; backwards (DF=1), to those at
   or after the page's start. It becomes ``data_is_ptr = 1`` with
   ``data`` = the guest-physical address of the first element. A single
   element that itself straddles a page boundary is sent by value
   (``data_is_ptr = 0``, ``count = 1``): for OUTS the VMM copies it from guest
   memory, for INS it copies the response there. A REP form with a count of
   0 completes at once, without an ioreq.
3. **Send.** Into the vcpu's slot, allowed only by
   :func:`spec.ioreq.vmm_send` (slot ``NONE``, vcpu not waiting): write the
   fields, then the state ``READY``, then notify the vcpu's event channel
   (``vp_eport``). The vcpu blocks.
4. **Wait and complete.** When the device model notifies back, the vcpu is
   woken and the VMM applies :func:`spec.ioreq.vmm_wait_outcome` to the state
   it reads: on *complete* it frees the slot (``NONE``) and finishes the
   instruction: IN writes the datum to AL/AX/EAX; string forms advance
   (E/R)SI or (E/R)DI by ``count * size`` in the direction of DF and, with
   REP, decrease (E/R)CX by ``count``; RIP moves past the instruction only
   when nothing is left to do, otherwise the instruction restarts and exits
   again for its next chunk. On *block* the vcpu waits on; on *crash* the
   domain is crashed. The accesses' bus time is charged to the vcpu's
   clock here (:mod:`spec.clock`): a port access per element of the
   ioreq.

Video memory. A guest write to a page of qemu-dm's video memory that Xen
tracks as log-dirty is an EPT violation that Xen handles itself
(:meth:`spec.dirty_vram.DirtyVram.write_fault`): the page is marked dirty
and made writable, and the write is retried at the next VM entry.

Hypercalls. A VMCALL exit is a hypercall (:mod:`spec.memory_op`): the VMM
reads the number and arguments from the registers of the guest's ABI,
performs it, puts the result in (E/R)AX and advances RIP past the VMCALL
(``vmx_vmexit_handler``, ``hvm_do_hypercall``). After a
``XENMEM_decrease_reservation``, whatever its result, the guest may have
given back memory that qemu-dm has mapped: before the vcpu runs again Xen
sends qemu-dm an ``IOREQ_TYPE_INVALIDATE`` request on the vcpu's ioreq
slot (``send_invalidate_req``: size 4, a write, ``data = ~0``, "flush
all"; the model clears the slot's other fields, which Xen 3.x left as the
previous request had them) and the vcpu waits for the response like any
other ioreq. So no access of qemu-dm through an old mapping can follow the
guest's next instruction.

Ports that Xen emulates itself never become ioreqs: the VMM's internal
handler performs the access at once (Xen's ``hvm_portio_intercept``, which
``send_pio_req`` asks before it sends anything to qemu-dm) and the
instruction retires. In Xen 3.0.4 these are the virtual PIC of
:mod:`spec.pic` (0x20/0x21, 0xA0/0xA1 and the ELCR at 0x4D0/0x4D1, string
forms included) and the PIT with port 0x61 of :mod:`spec.devices.pit`
(0x40-0x43, 0x61: one-byte IN and OUT; any other access is claimed and
ignored, as ``handle_pit_io`` does) and the ACPI PM timer of
:mod:`spec.devices.pmtimer` (0x1F48-0x1F4B, or PMBA's base + 8 once qemu-dm
moves it: 4-byte reads). Each access is
traced as a ``xen_io`` event and costs the bus time of :mod:`spec.clock`.
Ports 0x70/0x71 are the RTC's of :mod:`spec.devices.rtc`, Xen's only in
part: ``handle_rtc_io`` keeps an index of its own and performs a one-byte
access while that index is below 0x0E; from 0x0E on (and for the index
write that selects such a byte) it declines, and the access becomes an
ioreq to qemu-dm's CMOS RAM like any other. Other sizes and string forms
are claimed and ignored, as the PIT's are.

Port 0xE9 is Xen's debug console for HVM guests (Xen 3.0.4's
``vmx_io_instruction``): a byte OUT there (not a string form, not a wider
one) is printed on Xen's console a line at a time (``hvm_print_line``,
"HVM<dom>: ..."): the trace has it as a :class:`spec.trace.FirmwareLog`
byte ``by`` "xen". The access then becomes an ioreq as any other does;
qemu-dm has no device there. (Later Xen handles 0xE9 wholly in the
hypervisor, without an ioreq; QEMU's ``isa-debugcon`` sits there only
when configured.)

Interrupts (:mod:`spec.irq`). At every VM entry the VMM first runs its
*interrupt assist* (Xen's ``hvm_pic_assist`` then ``vmx_intr_assist``):

0. Xen's periodic time for the PIT (:mod:`spec.devices.pit`, rules 3-4)
   fires for every tick due by the vcpu's clock (a ``timer_tick`` event)
   and, while ticks are pending, raises an edge on ISA line 0 of the
   virtual PIC: IRQ0 comes from Xen itself, not through qemu-dm; then
   the RTC's timers that are due run (:mod:`spec.devices.rtc`) and assert
   or deassert IRQ8 on the PIC themselves (``xen_irq`` events);
1. if the domain's interrupt event channel is pending, clear it and apply
   the lines qemu-dm raised and lowered to the virtual PIC;
2. if the PIC presents a request and the guest may take an interrupt
   (:func:`spec.irq.may_inject`: IF = 1, no interrupt shadow), acknowledge
   it and inject the vector (the trace records vector, IRQ, instruction
   count and RIP); the injection of IRQ0's vector is counted by the
   periodic time (rule 5), which also restarts counter 0;
3. if a request is (still) pending, set interrupt-window exiting, so that
   the vcpu exits as soon as it can take it.

Steps 1 to 3 are :func:`spec.irq.assist`, given whether the port was
pending (the 2-level rules of :mod:`spec.evtchn` test and clear it), the
function the interrupt proofs of :mod:`proofs.interrupts` are about.

HLT: the VMM retires the HLT and blocks the vcpu. A blocked vcpu wakes when
the PIC presents a request (after steps 0 and 1 above) and RFLAGS.IF = 1;
with IF = 0 nothing but an NMI (not modelled) can wake it, and the machine
reports it hung.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Callable

from spec import clock, ioreq, irq, memory_op, platform, trace
from spec.ioreq import Ioreq
from spec.dirty_vram import DirtyVram
from spec.pic import VirtualPic
from spec.devices.pit import VirtualPit
from spec.devices.pmtimer import PmTimer
from spec.devices.rtc import VirtualRtc
from spec.mmio import Completed, Emulation, GuestMemory, Pending, access_key, attempt
from spec import delivery
from spec.guest_linear import GuestAccessError
from spec.vm_exit import SEGMENTS, Exit, IoQualification
from spec.vmx import RFLAGS_DF, RFLAGS_IF, RFLAGS_VM, HardwareVcpu
from spec.x86.decode import decode
from spec.x86.operands import GPRS
from spec.x86.state import PF, Cpu, Fault, Unhandleable


@dataclass
class PendingIo:
    """What the VMM remembers about the ioreq its vcpu waits for (Xen's
    ``struct hvm_vcpu_io``)."""

    exit: Exit
    count: int              # elements in this chunk
    finishes: bool          # the chunk completes the instruction
    by_value_gpa: int | None = None   # straddling INS element: copy the datum here
    mmio_key: tuple | None = None     # an MMIO emulation's device access
    invalidate: bool = False          # the mapcache invalidation after a hypercall


@dataclass
class StringChunk:
    """The part of a string I/O instruction that one ioreq performs: it
    never crosses a page, so one translation of ``linear`` places it all."""

    linear: int
    count: int
    data_is_ptr: bool
    finishes: bool


def string_chunk(q: IoQualification, regs: dict[str, int], seg_base: int,
                 linear_mask: int = 0xFFFF_FFFF) -> StringChunk | None:
    """Where the data of an INS/OUTS lives (its linear address) and how
    much of it one ioreq moves (step 2 of the module docstring); ``None``
    for a REP count of 0. Linear addresses wrap at ``linear_mask`` (4 GiB
    outside 64-bit mode)."""
    mask = (1 << q.address_size) - 1
    offset = (regs["rdi"] if q.dir == "in" else regs["rsi"]) & mask
    linear = (seg_base + offset) & linear_mask
    total = regs["rcx"] & mask if q.rep else 1
    if total == 0:
        return None
    size = q.size
    page = platform.PAGE_SIZE
    backwards = bool(regs["rflags"] & RFLAGS_DF)
    if linear // page != (linear + size - 1) // page:
        return StringChunk(linear, 1, False, total == 1)
    last = linear - (total - 1) * size if backwards else linear + total * size - 1
    if last // page == linear // page and last >= 0:
        return StringChunk(linear, total, True, True)
    if backwards:
        count = (linear % page) // size + 1
    else:
        count = (page - linear % page) // size
    return StringChunk(linear, count, True, False)


class Vmm:
    """Xen's HVM support for one domain: exit handling and ioreqs."""

    def __init__(self, domid: int, vcpus: list[HardwareVcpu], iopage: ioreq.SharedIopage,
                 ports: list[int], notify: Callable[[int], None],
                 emit: Callable[[trace.Event], None],
                 crash: Callable[[str, int], None],
                 lines: irq.SharedLines | None = None,
                 shutdown: Callable[[int], None] | None = None,
                 take_irq_event: Callable[[], bool] = lambda: False,
                 rtc_base: int | None = None) -> None:
        self.domid = domid
        self.vcpus = vcpus
        self.iopage = iopage
        self.ports = ports                  # vp_eport of each vcpu
        self.notify = notify                # notify_via_xen_event_channel
        self.emit = emit
        self.crash = crash                  # domain_crash(message, rip)
        #: domain_shutdown(reason)
        self.shutdown = shutdown or (lambda reason: crash("shutdown", 0))
        self.waiting: list[PendingIo | None] = [None] * len(vcpus)
        self.woken = [False] * len(vcpus)
        self.halted = [False] * len(vcpus)
        self.emulating: list[Emulation | None] = [None] * len(vcpus)
        self.exits: dict[str, int] = {}
        self.pic = VirtualPic(emit)
        #: Xen's PIT, port 0x61 and periodic time (vcpu 0's clock)
        self.pit = VirtualPit(vcpus[0].clock_ns)
        #: Xen's ACPI PM timer (:mod:`spec.devices.pmtimer`)
        self.pmtimer = PmTimer(vcpus[0].clock_ns)
        #: Xen's RTC (:mod:`spec.devices.rtc`), from the domain's time offset
        self.rtc = VirtualRtc(vcpus[0].clock_ns, self._rtc_irq,
                              platform.RTC_DEFAULT_BASE if rtc_base is None else rtc_base)
        self.lines = lines if lines is not None else irq.SharedLines()
        self.take_irq_event = take_irq_event    # test-and-clear the interrupt port
        self.window = [False] * len(vcpus)     # interrupt-window exiting requested
        #: HVMOP_track_dirty_vram (:mod:`spec.dirty_vram`), on vcpu 0's p2m
        self.dirty_vram = DirtyVram(vcpus[0].set_writable, lambda first, nr: vcpus[0].watch_writes(
            first, nr, self.dirty_vram.stored))
        vcpus[0].on_copy = self.dirty_vram.copied
        #: the domain's p2m as hypercalls change it (:mod:`spec.memory_op`)
        self.p2m = memory_op.P2m(vcpus[0].ram_ranges(), vcpus[0].unmap_page,
                                 vcpus[0].remap_page, emit, self._share)
        #: the domain's shared info page (Xen's frame, :mod:`spec.memory_op`)
        self.shared_info = ctypes.create_string_buffer(memory_op.SHARED_INFO,
                                                       platform.PAGE_SIZE)

    # --- exits ---------------------------------------------------------------------

    def handle_exit(self, vcpu: int, ex: Exit) -> None:
        """Dispatch a VM exit by its reason."""
        self.exits[ex.reason] = self.exits.get(ex.reason, 0) + 1
        self.emit(trace.VmExit(vcpu=vcpu, reason=ex.reason, rip=ex.rip,
                               icount=ex.icount, info=ex.info()))
        if ex.reason == "io":
            self.handle_io(vcpu, ex)
        elif ex.reason == "hlt":
            self.finish(vcpu, ex, advance=True)
            self.halted[vcpu] = True
        elif ex.reason == "vmcall":
            self.hypercall(vcpu, ex)
        elif ex.reason in ("preemption_timer", "interrupt_window"):
            pass                            # the next VM entry does the work
        elif ex.reason == "triple_fault":
            self.triple_fault(vcpu)
        elif ex.reason == "ept_violation" and ex.detail.get("p2m") == "logdirty":
            if not self.dirty_vram.write_fault(ex.gpa):
                self.crash(f"write to read-only gpa {ex.gpa:#x}", ex.rip)
        elif ex.reason == "ept_violation" and ex.detail.get("access") == "fetch":
            self.crash(f"instruction fetch from gpa {ex.gpa:#x}, which no RAM backs", ex.rip)
        elif ex.reason == "ept_violation":
            hw = self.vcpus[vcpu]
            self.emulating[vcpu] = Emulation(ex.rip, hw.read_code(ex.rip))
            self.emulate_mmio(vcpu, ex)
        else:
            self.crash(f"{ex.reason} at rip {ex.rip:#x}; instruction bytes "
                       f"{ex.detail.get('bytes', '')}", ex.rip)

    def handle_io(self, vcpu: int, ex: Exit) -> None:
        """Step 2 and 3: build the ioreq for an I/O exit and send it."""
        hw = self.vcpus[vcpu]
        q = ex.io
        assert q is not None
        if q.port in VirtualPic.PORTS:
            self.internal_io(vcpu, ex)
            return
        if self.pit.claims(q.port):
            self.timer_io(vcpu, ex, "vpit",
                          lambda: self.pit.access(q.port, q.size, q.dir, hw.reg("rax")))
            return
        if self.pmtimer.claims(q.port):
            self.timer_io(vcpu, ex, "pmtimer", lambda: self.pmtimer.access(q.size, q.dir))
            return
        if self.rtc.claims(q.port):
            handled, datum = self.rtc.intercept(q.port, q.size, q.dir, hw.reg("rax"), q.string)
            if handled:
                self.timer_io(vcpu, ex, "vrtc", lambda: datum)
                return
        req = Ioreq(addr=q.port, size=q.size, count=1, type=ioreq.IOREQ_TYPE_PIO,
                    dir=ioreq.IOREQ_READ if q.dir == "in" else ioreq.IOREQ_WRITE,
                    vp_eport=self.ports[vcpu])
        if not q.string:
            if q.dir == "out":
                req.data = hw.reg("rax") & _mask(q.size)
                if q.port == platform.XEN_DEBUG_PORT and q.size == 1:
                    # hvm_print_line: Xen's own log of the byte, and still the ioreq
                    self.emit(trace.FirmwareLog(by="xen", port=q.port, byte=req.data))
            self.send(vcpu, req, PendingIo(ex, 1, True))
            return
        regs = {name: hw.reg(name) for name in ("rsi", "rdi", "rcx", "rflags")}
        chunk = string_chunk(q, regs, hw.segment_base(q.segment), hw.address_mask())
        if chunk is None:
            self.finish(vcpu, ex, advance=True)
            return
        backwards = bool(regs["rflags"] & RFLAGS_DF)
        low = chunk.linear - (chunk.count - 1) * q.size if backwards else chunk.linear
        try:
            gpa = hw.translate(chunk.linear, write=q.dir == "in")
        except GuestAccessError as exc:
            self._string_io_fault(vcpu, ex, exc)
            return
        gpa_low = gpa - (chunk.linear - low)
        if not hw.is_ram(gpa_low, chunk.count * q.size):
            self.crash(f"string I/O at rip {ex.rip:#x}: data at {gpa_low:#x}+"
                       f"{chunk.count * q.size} is not guest RAM", ex.rip)
            return
        req.count = chunk.count
        req.df = int(backwards)
        pending = PendingIo(ex, chunk.count, chunk.finishes)
        if chunk.data_is_ptr:
            req.data_is_ptr, req.data = 1, gpa
        elif q.dir == "out":
            req.data = int.from_bytes(hw.read(gpa, q.size), "little")
        else:
            pending.by_value_gpa = gpa
        self.send(vcpu, req, pending)

    # --- hypercalls ---------------------------------------------------------------------

    def _share(self, old: int | None, new: int) -> bool:
        """Move the shared info page's EPT entry (:class:`spec.memory_op.P2m`)."""
        hw, shift = self.vcpus[0], platform.PAGE_SHIFT
        if hw.is_ram(new << shift, platform.PAGE_SIZE) and new != old:
            return False
        if old is not None:
            hw.unmap_foreign(old << shift, platform.PAGE_SIZE)
        hw.map_foreign(new << shift, self.shared_info)
        return True

    def hypercall(self, vcpu: int, ex: Exit) -> None:
        """A VMCALL exit (module docstring, "Hypercalls")."""
        hw = self.vcpus[vcpu]
        bits = 64 if hw.mode() == 64 else 32
        width = (1 << bits) - 1
        number = hw.reg("rax") & 0xFFFF_FFFF
        args = [hw.reg(r) & width for r in HYPERCALL_ARGS[bits]]
        if hw.reg("rflags") & RFLAGS_VM or hw.ss_dpl() == 3:
            result = -memory_op.EPERM
        elif number == memory_op.HYPERVISOR_xen_version:
            result = memory_op.xen_version(args[0] & 0xFFFF_FFFF, args[1], _linear_reader(hw),
                                           _linear_writer(hw))
        elif number != memory_op.HYPERVISOR_memory_op:
            result = -memory_op.ENOSYS
        else:
            result = memory_op.memory_op(self.p2m, args[0] & 0xFFFF_FFFF,
                                         _linear_reader(hw), args[1], bits)
        hw.set_reg("rax", result)
        self.emit(trace.Hypercall(vcpu=vcpu, number=number,
                                  name=memory_op.HYPERCALL_NAMES.get(number, ""),
                                  args=args, result=result, icount=ex.icount, rip=ex.rip))
        self.finish(vcpu, ex, advance=True)
        if (result != -memory_op.EPERM and number == memory_op.HYPERVISOR_memory_op
                and args[0] & memory_op.MEMOP_CMD_MASK == memory_op.XENMEM_decrease_reservation):
            self.send(vcpu, Ioreq(size=4, count=1, type=ioreq.IOREQ_TYPE_INVALIDATE,
                                  dir=ioreq.IOREQ_WRITE, data=(1 << 64) - 1,
                                  vp_eport=self.ports[vcpu]),
                      PendingIo(ex, 1, True, invalidate=True))

    # --- ports Xen emulates itself ------------------------------------------------------

    def internal_io(self, vcpu: int, ex: Exit) -> None:
        """An access to the virtual PIC: performed at once, byte by byte
        (the 8259's registers are bytes; a wider access reaches the next
        ports), every element of a string form in turn."""
        hw, q = self.vcpus[vcpu], ex.io
        if not q.string:
            if q.dir == "in":
                value = self._pic_access(q.port, q.size, "in", 0)
                mask = _mask(q.size)
                hw.set_reg("rax", (hw.reg("rax") & ~mask) | value)
            else:
                self._pic_access(q.port, q.size, "out", hw.reg("rax") & _mask(q.size))
            hw.io_ns += clock.port_time(1)
            self.finish(vcpu, ex, advance=True)
            return
        amask = (1 << q.address_size) - 1
        index = "rdi" if q.dir == "in" else "rsi"
        base = hw.segment_base(q.segment)
        for _ in range(_string_count(hw, q)):
            linear = (base + (hw.reg(index) & amask)) & hw.address_mask()
            try:
                if q.dir == "in":
                    hw.reachable(linear, q.size, write=True)   # before the read's side effects
                    value = self._pic_access(q.port, q.size, "in", 0)
                    hw.write_linear(linear, value.to_bytes(q.size, "little"))
                else:
                    value = int.from_bytes(hw.read_linear(linear, q.size), "little")
                    self._pic_access(q.port, q.size, "out", value)
            except GuestAccessError as exc:
                self._string_io_fault(vcpu, ex, exc)     # the elements done stay done
                return
            hw.io_ns += clock.port_time(1)
            _advance_string(hw, q, 1)
        self.finish(vcpu, ex, advance=True)

    def timer_io(self, vcpu: int, ex: Exit, device: str, access) -> None:
        """An access to the PIT or port 0x61 (:mod:`spec.devices.pit`), the
        PM timer (:mod:`spec.devices.pmtimer`) or the RTC that Xen handles
        (:mod:`spec.devices.rtc`), done by ``access()``:
        an IN or OUT is performed at once; a read Xen does not answer (PIT
        0x43, a size the handler refuses) leaves (E)AX as it was, such a
        write is dropped. A string form is claimed and ignored
        (``p->data_is_ptr``: "wrong PIT IO", "wrong PM timer IO", "wrong RTC
        IO"): no device access, memory untouched, but the instruction
        completes, its index registers and count advanced for every element,
        each charged as a port access."""
        hw, q = self.vcpus[vcpu], ex.io
        mask = _mask(q.size)
        if not q.string:
            data = hw.reg("rax") & mask
            value = access()
            if q.dir == "in" and value is not None:
                hw.set_reg("rax", (hw.reg("rax") & ~mask) | value)
                data = value
            self.emit(trace.XenIo(device=device, addr=q.port, size=q.size, dir=q.dir,
                                  data=data))
            hw.io_ns += clock.port_time(1)
            self.finish(vcpu, ex, advance=True)
            return
        count = _string_count(hw, q)
        _advance_string(hw, q, count)
        for _ in range(count):              # one xen_io per element, as the vPIC's
            self.emit(trace.XenIo(device=device, addr=q.port, size=q.size, dir=q.dir, data=0))
        hw.io_ns += clock.port_time(count)
        self.finish(vcpu, ex, advance=True)

    def _pic_access(self, port: int, size: int, direction: str, value: int) -> int:
        result = 0
        for i in range(size):
            p = (port + i) & 0xFFFF
            if p not in VirtualPic.PORTS:
                byte = 0xFF if direction == "in" else 0    # nothing else is Xen's here
            elif direction == "in":
                byte = self.pic.io_read(p)
            else:
                byte = (value >> 8 * i) & 0xFF
                self.pic.io_write(p, byte)
                self.lines.set_elcr(self.pic.elcr())
            result |= byte << 8 * i
        self.emit(trace.XenIo(device="vpic", addr=port, size=size, dir=direction,
                              data=result if direction == "in" else value))
        return result

    # --- interrupts --------------------------------------------------------------------

    def next_deadline(self) -> int | None:
        """When Xen's own timers (the PIT's periodic time, the RTC's
        interrupts) fire next."""
        times = (self.pit.pt.deadline(), self.rtc.deadline())
        return min((t for t in times if t is not None), default=None)

    def _rtc_irq(self, level: int) -> None:
        """``hvm_isa_irq_assert``/``_deassert`` of IRQ8 by Xen's RTC: an
        edge on the virtual PIC, no qemu-dm."""
        self.emit(trace.XenIrq(device="vrtc", irq=platform.IRQ_RTC, level=level))
        if level:
            self.pic.apply_lines(1 << platform.IRQ_RTC, 0)
        else:
            self.pic.negative_edge(platform.IRQ_RTC)

    def timer_assist(self, vcpu: int) -> None:
        """Step 0 of the interrupt assist (``pt_timer_fn``, then
        ``vmx_intr_assist``'s deassert and assert of the timer's line)."""
        if vcpu != 0:
            return
        hw = self.vcpus[vcpu]
        fired = self.pit.pt.update(hw.clock_ns())
        if fired:
            self.emit(trace.TimerTick(vcpu=vcpu, irq=platform.IRQ_PIT, ticks=fired,
                                      pending=self.pit.pt.pending, icount=hw.icount))
        if self.pit.pt.enabled and self.pit.pt.pending:
            self.pic.apply_lines(1 << platform.IRQ_PIT, 0)
        self.rtc.run(hw.clock_ns())

    def take_lines(self, rflags_if: bool = False, shadow: bool = False) -> irq.Assist:
        """Steps 1 to 3 of the interrupt assist: test and clear the interrupt
        port's pending bit, then :func:`spec.irq.assist` on the PIC pair
        and the shared lines (with ``rflags_if`` False it takes and applies
        the lines, and acknowledges nothing). The new state is kept."""
        a = irq.assist(self.pic.pair, self.lines.bits, self.take_irq_event(), rflags_if, shadow)
        self.pic.pair, self.lines.bits = a.pic, a.lines
        return a

    def can_wake(self, vcpu: int) -> bool | None:
        """For a halted vcpu: True if an interrupt wakes it now, False if
        it may wake later (IF = 1), None if it never can (IF = 0)."""
        self.timer_assist(vcpu)
        found = self.take_lines().window
        if not self.vcpus[vcpu].reg("rflags") & RFLAGS_IF:
            return None
        return bool(found)

    def intr_assist(self, vcpu: int) -> bool:
        """The interrupt assist at VM entry (module docstring). Returns
        False if delivery failed and the domain was crashed."""
        hw = self.vcpus[vcpu]
        self.timer_assist(vcpu)
        a = self.take_lines(bool(hw.reg("rflags") & RFLAGS_IF), hw.shadow)
        self.window[vcpu] = bool(a.window) and not a.inject
        if not a.inject:
            return True
        line, vector = a.irq, a.vector
        if line == platform.IRQ_PIT and vcpu == 0:
            self.pit.injected(hw.clock_ns())
        rip = hw.linear_rip()
        self.emit(trace.Injection(vcpu=vcpu, vector=vector, irq=line, icount=hw.icount,
                                  rip=rip))
        try:
            outcome = hw.deliver_interrupt(vector)
        except delivery.NotModelled as exc:
            self.crash(f"delivering vector {vector:#x} (IRQ{line}): {exc}", rip)
            return False
        if outcome.result == "triple_fault":
            # the VM entry that injected the event ends in a triple-fault exit
            self.handle_exit(vcpu, Exit("triple_fault", rip, 0, hw.icount))
            return False
        self.window[vcpu] = bool(a.window)
        return True

    def inject_fault(self, vcpu: int, ex: Exit, vector: int, error_code: int | None,
                     cr2: int | None = None) -> None:
        """An instruction the VMM emulates faults (its data is where the
        guest's page tables do not reach, or past a segment limit): it does
        not retire, and the VMM injects the exception the CPU would have
        raised, with the error code and CR2 of the walk (:mod:`spec.paging`),
        delivered as any exception is (:mod:`spec.delivery`):
        ``hvm_inject_exception(TRAP_page_fault, pfec, addr)`` in Xen's
        emulation paths. The return address is the faulting instruction."""
        hw = self.vcpus[vcpu]
        event = delivery.Event(vector, delivery.FAULT, hw.reg("rip"), error_code, cr2)
        try:
            outcome = hw.raise_event(event)
        except delivery.NotModelled as exc:
            name = delivery.NAMES.get(vector, f"vector {vector:#x}")
            self.crash(f"delivering {name} at rip {ex.rip:#x}: {exc}", ex.rip)
            return
        if outcome.result == "triple_fault":
            self.handle_exit(vcpu, Exit("triple_fault", hw.linear_rip(), 0, hw.icount))

    def _string_io_fault(self, vcpu: int, ex: Exit, exc: GuestAccessError) -> None:
        """INS/OUTS data the guest's page tables refuse: their #PF (or #GP
        for a non-canonical address); data no RAM backs crashes the domain."""
        fault = exc.page_fault
        if fault is None:
            self.crash(f"string I/O at rip {ex.rip:#x}: {exc}", ex.rip)
            return
        self.inject_fault(vcpu, ex, fault.vector, fault.error_code,
                          fault.linear if fault.vector == delivery.PF else None)

    def triple_fault(self, vcpu: int) -> None:
        """A triple-fault exit (exit reason 2). Xen of the model's time
        (``xen/arch/x86/hvm/vmx/vmx.c``: ``case EXIT_REASON_TRIPLE_FAULT:
        hvm_triple_fault()``; ``xen/arch/x86/hvm/hvm.c``, early 2007)
        resets the machine the way the guest's own reset would::

            void hvm_triple_fault(void)
            {
                gdprintk(XENLOG_INFO, "Triple fault on VCPU%d - "
                         "invoking HVM system reset.\\n", v->vcpu_id);
                domain_shutdown(v->domain, SHUTDOWN_reboot);
            }

        so xend then applies the domain's ``on_reboot``, not ``on_crash``.
        (Later Xen made the reason a per-domain parameter,
        ``HVM_PARAM_TRIPLE_FAULT_REASON``, whose default is still reboot.)"""
        self.shutdown(platform.SHUTDOWN_REBOOT)

    # --- MMIO ----------------------------------------------------------------------------

    def emulate_mmio(self, vcpu: int, ex: Exit) -> bool:
        """One attempt at the instruction that touched MMIO (:mod:`spec.mmio`);
        True when it completed and the vcpu may run on."""
        hw, em = self.vcpus[vcpu], self.emulating[vcpu]
        mode = hw.mode()
        try:
            insn = decode(em.code, mode)
        except (Fault, Unhandleable) as exc:    # the hardware ran it: the emulator cannot
            self._emulation_failed(vcpu, f"MMIO emulation failed at rip {em.rip:#x}: {exc}")
            return False
        def new_cpu() -> Cpu:
            return Cpu(mode, regs={r: hw.reg(r) for r in GPRS},
                       rflags=hw.reg("rflags"), rip=hw.reg("rip"),
                       segment_base={seg: hw.segment_base(seg) for seg in SEGMENTS})

        def new_memory(probe: bool) -> GuestMemory:
            return GuestMemory(em, hw.is_ram, hw.read,
                               send=lambda req: self._send_mmio(vcpu, req, ex),
                               translate=_translator(hw), probe=probe)
        try:
            cpu, memory = attempt(em, insn, new_cpu, new_memory)
        except Pending:
            return False
        except Unhandleable as exc:
            self._emulation_failed(vcpu, f"MMIO emulation failed at rip {em.rip:#x}: {exc}")
            return False
        except Fault as exc:
            self.emulating[vcpu] = None
            self.inject_fault(vcpu, ex, exc.vector, exc.error_code, exc.cr2)
            return True
        for addr, data in memory.held:
            hw.write(addr, data)
        for r in GPRS:
            hw.set_reg(r, cpu.regs[r])
        hw.set_reg("rflags", cpu.rflags)
        hw.set_reg("rip", cpu.rip)
        hw.icount += 1
        hw.shadow = False
        self.emulating[vcpu] = None
        return True

    def _emulation_failed(self, vcpu: int, why: str) -> None:
        em = self.emulating[vcpu]
        self.emulating[vcpu] = None
        self.crash(f"{why}; instruction bytes {em.code.hex()}", em.rip)

    def _send_mmio(self, vcpu: int, req: Ioreq, ex: Exit) -> None:
        req.vp_eport = self.ports[vcpu]
        self.send(vcpu, req, PendingIo(ex, req.count, True, mmio_key=access_key(req)))

    # --- the ioreq protocol ------------------------------------------------------------

    def send(self, vcpu: int, req: Ioreq, pending: PendingIo) -> None:
        """Step 3: ``vmm_send`` decides; fields, then state, then notify."""
        slot = ioreq.Slot(self.iopage.state(vcpu), self.waiting[vcpu] is not None)
        step = ioreq.vmm_send(slot)
        if not step.enabled:
            self.crash(f"ioreq slot of vcpu {vcpu} is busy "
                       f"({ioreq.state_name(slot.state)})", pending.exit.rip)
            return
        self.iopage.write_fields(vcpu, req)
        self.iopage.set_state(vcpu, step.after.state)
        self.waiting[vcpu] = pending
        self.woken[vcpu] = False
        self._emit_transition(vcpu, "vmm", slot.state, step.after.state)
        self.notify(self.ports[vcpu])

    def on_notify(self, port: int) -> None:
        """Xen's consumer of the vcpu's event channel: wake the vcpu that
        waits on it (it completes when it is next scheduled)."""
        vcpu = self.ports.index(port)
        if self.waiting[vcpu] is not None:
            self.woken[vcpu] = True

    def resume(self, vcpu: int) -> bool:
        """Step 4, when the woken vcpu is scheduled. Returns True when the
        vcpu may run guest code again."""
        self.woken[vcpu] = False
        pending = self.waiting[vcpu]
        assert pending is not None
        state = self.iopage.state(vcpu)
        outcome = ioreq.vmm_wait_outcome(state)
        if outcome == ioreq.WAIT_BLOCK:
            return False
        if outcome == ioreq.WAIT_CRASH:
            self.crash(f"ioreq of vcpu {vcpu} in unexpected state "
                       f"{ioreq.state_name(state)} while waiting", pending.exit.rip)
            return False
        step = ioreq.vmm_complete(ioreq.Slot(state, True))
        assert step.enabled
        req = self.iopage.read(vcpu)
        self.iopage.set_state(vcpu, step.after.state)
        self.waiting[vcpu] = None
        self._emit_transition(vcpu, "vmm", state, step.after.state)
        if pending.invalidate:
            return True
        if pending.mmio_key is not None:
            self.vcpus[vcpu].io_ns += clock.mmio_time(pending.count)
            em = self.emulating[vcpu]
            em.done.append(Completed(pending.mmio_key, req.data))
            return self.emulate_mmio(vcpu, pending.exit)
        self.complete_io(vcpu, pending, req)
        return True

    def complete_io(self, vcpu: int, pending: PendingIo, req: Ioreq) -> None:
        """Finish the instruction with the response (step 4)."""
        hw = self.vcpus[vcpu]
        q = pending.exit.io
        assert q is not None
        hw.io_ns += clock.port_time(pending.count)
        if not q.string:
            if q.dir == "in":
                mask = _mask(q.size)
                hw.set_reg("rax", (hw.reg("rax") & ~mask) | (req.data & mask))
            self.finish(vcpu, pending.exit, advance=True)
            return
        if pending.by_value_gpa is not None:
            hw.write(pending.by_value_gpa, (req.data & _mask(q.size)).to_bytes(q.size, "little"))
        _advance_string(hw, q, pending.count)
        self.finish(vcpu, pending.exit, advance=pending.finishes)

    def finish(self, vcpu: int, ex: Exit, advance: bool) -> None:
        """The emulated instruction (or chunk of it) retires."""
        hw = self.vcpus[vcpu]
        hw.shadow = False           # skipping an instruction ends the shadow (Xen's update_guest_eip)
        if advance:
            width = {16: 0xFFFF, 32: 0xFFFF_FFFF}.get(hw.mode(), 0xFFFF_FFFF_FFFF_FFFF)
            hw.set_reg("rip", (hw.reg("rip") + ex.length) & width)
        hw.icount += 1

    def _emit_transition(self, vcpu: int, by: str, old: int, new: int) -> None:
        req = self.iopage.read(vcpu)
        self.emit(ioreq.transition_event(vcpu, by, old, new, req))


#: the argument registers of a hypercall, by the guest's word size
HYPERCALL_ARGS = {32: ("rbx", "rcx", "rdx", "rsi", "rdi"),
                  64: ("rdi", "rsi", "rdx", "r10", "r8")}


def _linear_reader(hw: HardwareVcpu) -> Callable[[int, int], bytes | None]:
    """Xen's ``copy_from_guest`` for an HVM guest: a linear address through
    the guest's page tables; None where that fails."""
    def read(linear: int, length: int) -> bytes | None:
        try:
            return hw.read_linear(linear & hw.address_mask(), length)
        except GuestAccessError:
            return None
    return read


def _linear_writer(hw: HardwareVcpu) -> Callable[[int, bytes], bool]:
    """Xen's ``copy_to_guest`` for an HVM guest; False where it fails."""
    def write(linear: int, data: bytes) -> bool:
        try:
            hw.write_linear(linear & hw.address_mask(), data)
        except GuestAccessError:
            return False
        return True
    return write


def _translator(hw: HardwareVcpu) -> Callable[[int, bool], int] | None:
    """The emulator's linear-to-physical step while the guest pages."""
    state = hw.paging()
    if not state.enabled:
        return None

    def translate(linear: int, write: bool) -> int:
        try:
            return hw.translate(linear, write)
        except GuestAccessError as exc:
            fault = exc.page_fault
            if fault is None:
                raise Unhandleable(str(exc)) from None
            raise Fault(fault.vector, str(exc), error_code=fault.error_code,
                        cr2=fault.linear if fault.vector == PF else None) from None
    return translate


def _mask(size: int) -> int:
    return (1 << (8 * size)) - 1


def _string_count(hw: HardwareVcpu, q) -> int:
    """The elements of a string I/O instruction: RCX at its address size
    under REP, else one."""
    return hw.reg("rcx") & ((1 << q.address_size) - 1) if q.rep else 1


def _advance_string(hw: HardwareVcpu, q, elements: int) -> None:
    """Move a string I/O instruction on by ``elements``: its index register
    (RDI for INS, RSI for OUTS) by that many elements in the direction of
    EFLAGS.DF, and RCX down by as many under REP, both at its address size."""
    amask = (1 << q.address_size) - 1
    step = -q.size if hw.reg("rflags") & RFLAGS_DF else q.size
    _update(hw, "rdi" if q.dir == "in" else "rsi", step * elements, amask)
    if q.rep:
        _update(hw, "rcx", -elements, amask)


def _update(hw: HardwareVcpu, reg: str, delta: int, mask: int) -> None:
    """Add ``delta`` to the address-size part of a register."""
    old = hw.reg(reg)
    hw.set_reg(reg, (old & ~mask) | ((old + delta) & mask))
