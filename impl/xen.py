"""Xen for the impl engine: event channels, the shared ioreq page, the VMM.

Room: the hypervisor side of the data path — what happens at a VM exit and
how an ioreq travels to the device model and back, and the hypercalls a
VMCALL makes (:mod:`impl.p2m`); the devices Xen emulates itself, the vPIC
(:mod:`impl.pic`), the PIT with port 0x61 and IRQ0's periodic time
(:mod:`impl.timer`) and the RTC's clock registers with IRQ8 (:mod:`impl.rtc`,
CMOS indices below 0x0E; the rest goes on to qemu-dm). Imports :mod:`impl.vcpu` and its parts
(:mod:`impl.exits`, :mod:`impl.guest_linear`, :mod:`impl.registers`),
:mod:`impl.mmio`, :mod:`impl.delivery`, :mod:`impl.p2m`, and
:mod:`spec.trace` / :mod:`spec.platform` for the interface (event types,
constants). The rules are those of
``public/hvm/ioreq.h``, ``common/event_2l.c`` and Xen 3.x's
``vmx_io_instruction``; the reference model in ``spec/`` states them as
prose, this module as fast code.
"""

from __future__ import annotations

import ctypes
import struct
from typing import Callable

from spec import platform, trace
from impl import p2m, pic, rtc, timer
from impl.mmio import EmulationFailed, GuestFault, MmioInstruction
from impl import delivery
from impl.delivery import Refused
from impl.exits import Exit
from impl.guest_linear import LinearFault
from impl.registers import EFLAGS_DF, EFLAGS_IF, EFLAGS_VM
from impl.vcpu import Vcpu

# public/hvm/ioreq.h
NONE, READY, INPROCESS, RESP_READY = 0, 1, 2, 3
COPY = 1
STATE = {NONE: "NONE", READY: "READY", INPROCESS: "INPROCESS", RESP_READY: "IORESP_READY"}
WRITE, READ = 0, 1
PIO = 0
INVALIDATE = 8
#: the hypercall argument registers by the guest's word size
HYPERCALL_ARGS = {32: ("rbx", "rcx", "rdx", "rsi", "rdi"), 64: ("rdi", "rsi", "rdx", "r10", "r8")}
TYPE = {0: "pio", 1: "copy", 2: "pci_config", 7: "timeoffset", 8: "invalidate"}
SLOT = struct.Struct("<QQIIIHBB")       # addr data count size vp_eport pad flags type

Emit = Callable[[trace.Event], None]


class IoreqPage:
    """``struct shared_iopage``: 32-byte ``struct ioreq`` slots in one page."""

    def __init__(self) -> None:
        self.raw = bytearray(4096)

    def fields(self, vcpu: int) -> tuple:
        """(addr, data, count, size, vp_eport, state, data_is_ptr, dir, df, type)"""
        addr, data, count, size, port, _, flags, typ = SLOT.unpack_from(self.raw, 32 * vcpu)
        return (addr, data, count, size, port, flags & 15, flags >> 4 & 1,
                flags >> 5 & 1, flags >> 6 & 1, typ)

    def fill(self, vcpu: int, addr: int, data: int, count: int, size: int, port: int,
             data_is_ptr: int, direction: int, df: int, typ: int) -> None:
        """Every field but the state."""
        state = self.raw[32 * vcpu + 30] & 15
        flags = state | data_is_ptr << 4 | direction << 5 | df << 6
        SLOT.pack_into(self.raw, 32 * vcpu, addr, data, count, size, port, 0, flags, typ)

    def state(self, vcpu: int) -> int:
        return self.raw[32 * vcpu + 30] & 15

    def set_state(self, vcpu: int, state: int) -> None:
        off = 32 * vcpu + 30
        self.raw[off] = self.raw[off] & 0xF0 | state

    def set_data(self, vcpu: int, data: int) -> None:
        struct.pack_into("<Q", self.raw, 32 * vcpu + 8, data & 0xFFFFFFFFFFFFFFFF)

    def event(self, vcpu: int, by: str, old: int, new: int) -> trace.IoreqTransition:
        addr, data, count, size, _, _, ptr, direction, df, typ = self.fields(vcpu)
        return trace.IoreqTransition.of(
            vcpu=vcpu, by=by, old=STATE.get(old) or f"UNKNOWN({old})",
            new=STATE.get(new) or f"UNKNOWN({new})", type=TYPE.get(typ) or str(typ),
            dir="read" if direction else "write", addr=addr, size=size, count=count,
            df=df, data_is_ptr=ptr, data=data)


class IrqLines:
    """``sp_global``: the ISA lines qemu-dm drives, as four 16-bit masks
    (elcr, raised ``pic_irr``, held-high ``pic_last_irr``, lowered
    ``pic_clear_irr``)."""

    __slots__ = ("elcr", "raised", "held", "lowered")

    def __init__(self) -> None:
        self.elcr = self.raised = self.held = self.lowered = 0

    def drive(self, line: int, level: int) -> bool:
        """qemu-dm sets a line; True if Xen must be told."""
        bit = 1 << line
        if self.elcr & bit:
            if level:
                self.lowered &= ~bit
                self.raised |= bit
            else:
                self.raised &= ~bit
                self.lowered |= bit
            return True
        if not level:
            self.held &= ~bit
            return False
        if self.held & bit:
            return False
        self.held |= bit
        self.raised |= bit
        return True

    def collect(self) -> tuple[int, int]:
        """Xen swaps both masks for zero: (raised, lowered)."""
        raised, lowered = self.raised, self.lowered
        self.raised = self.lowered = 0
        return raised, lowered


class EvtchnError(Exception):
    """A refused event-channel call, with Xen's errno name."""

    def __init__(self, errno: str, message: str) -> None:
        super().__init__(f"{errno}: {message}")
        self.errno = errno


WORD = 64          # ports per selector word (2-level ABI)
NR_VIRQS = 24


class _Shared:
    """A domain's shared-info event bits, as integers: pending and mask
    bitmaps over all ports, the selector word and the upcall flag."""

    __slots__ = ("pending", "mask", "sel", "upcall")

    def __init__(self) -> None:
        self.pending = self.mask = self.sel = 0
        self.upcall = False


class EventChannels:
    """Every domain's 2-level event-channel ports.

    A port is ``[state, remote_dom, remote_port, virq, xen_consumer]``; the
    pending, mask and selector bits live in :class:`_Shared` bitmaps."""

    def __init__(self, emit: Emit) -> None:
        self.emit = emit
        self.ports: dict[int, list[list]] = {}
        self.bits: dict[int, _Shared] = {}

    def _table(self, dom: int) -> list[list]:
        if dom not in self.ports:
            raise EvtchnError("ESRCH", f"no domain {dom}")
        return self.ports[dom]

    def _entry(self, dom: int, port: int) -> list:
        table = self._table(dom)
        if not 0 < port < len(table):
            raise EvtchnError("EINVAL", f"dom{dom} has no port {port}")
        return table[port]

    def add_domain(self, dom: int) -> None:
        self.ports[dom] = [["reserved", -1, -1, -1, None]]
        self.bits[dom] = _Shared()

    def remove_domain(self, dom: int) -> None:
        for state, rdom, rport, _, _ in self.ports.pop(dom, []):
            if state == "interdomain" and rdom in self.ports:
                peer = self.ports[rdom][rport]
                peer[0], peer[1], peer[2] = "unbound", dom, -1
        self.bits.pop(dom, None)

    def _alloc(self, dom: int, entry: list) -> int:
        table = self._table(dom)
        for port in range(1, len(table)):
            if table[port][0] == "free":
                table[port] = entry
                return port
        if len(table) >= WORD * WORD:
            raise EvtchnError("ENOSPC", f"dom{dom} has no free port")
        table.append(entry)
        return len(table) - 1

    def alloc_unbound_xen(self, dom: int, remote: int, consumer: Callable[[int], None]) -> int:
        return self._alloc(dom, ["unbound", remote, -1, -1, consumer])

    def alloc_unbound(self, dom: int, remote: int) -> int:
        self._table(remote)
        return self._alloc(dom, ["unbound", remote, -1, -1, None])

    def bind_virq(self, dom: int, virq: int) -> int:
        if not 0 <= virq < NR_VIRQS:
            raise EvtchnError("EINVAL", f"virq {virq} is out of range")
        if any(e[0] == "virq" and e[3] == virq for e in self._table(dom)):
            raise EvtchnError("EEXIST", f"virq {virq} already bound in dom{dom}")
        return self._alloc(dom, ["virq", -1, -1, virq, None])

    def bind_interdomain(self, dom: int, rdom: int, rport: int) -> int:
        remote = self._entry(rdom, rport)
        if remote[0] != "unbound" or remote[1] not in (dom, -1):
            raise EvtchnError("EINVAL", f"dom{rdom} port {rport} is not unbound for dom{dom}")
        self._table(dom)
        port = self._alloc(dom, ["interdomain", rdom, rport, -1, None])
        remote[0], remote[1], remote[2] = "interdomain", dom, port
        self.emit(trace.EvtchnBind(dom=dom, port=port, remote_dom=rdom, remote_port=rport))
        return port

    def close(self, dom: int, port: int) -> None:
        entry = self._entry(dom, port)
        if entry[0] == "free":
            raise EvtchnError("EINVAL", f"dom{dom} port {port} is already free")
        if entry[0] == "interdomain" and entry[1] in self.ports:
            peer = self.ports[entry[1]][entry[2]]
            peer[0], peer[1], peer[2] = "unbound", dom, -1
        self.ports[dom][port] = ["free", -1, -1, -1, None]
        bits = self.bits[dom]
        bits.pending &= ~(1 << port)
        bits.mask &= ~(1 << port)

    def send(self, dom: int, port: int) -> None:
        state, rdom, rport, _, _ = self._entry(dom, port)
        if state == "unbound":
            return                                  # dropped, as Xen does
        if state != "interdomain":
            raise EvtchnError("EINVAL", f"dom{dom} port {port} is {state}")
        self.emit(trace.EvtchnSend.of(dom=dom, port=port, remote_dom=rdom, remote_port=rport))
        consumer = self.ports[rdom][rport][4]
        if consumer is not None:
            consumer(rport)
        else:
            self._set_pending(rdom, rport)

    def _set_pending(self, dom: int, port: int) -> None:
        bits, one = self.bits[dom], 1 << port
        if bits.pending & one:
            return
        bits.pending |= one
        word = 1 << (port // WORD)
        if not bits.mask & one and not bits.sel & word:
            bits.sel |= word
            bits.upcall = True

    def send_virq(self, dom: int, virq: int) -> None:
        for port, entry in enumerate(self.ports.get(dom, ())):
            if entry[0] == "virq" and entry[3] == virq:
                self._set_pending(dom, port)

    def mask(self, dom: int, port: int) -> None:
        self._entry(dom, port)
        self.bits[dom].mask |= 1 << port

    def unmask(self, dom: int, port: int) -> None:
        self._entry(dom, port)
        bits, one = self.bits[dom], 1 << port
        if not bits.mask & one:
            return
        bits.mask &= ~one
        word = 1 << (port // WORD)
        if bits.pending & one and not bits.sel & word:
            bits.sel |= word
            bits.upcall = True

    def take(self, dom: int, port: int) -> bool:
        self._table(dom)
        bits, one = self.bits[dom], 1 << port
        if not bits.pending & one:
            return False
        bits.pending &= ~one
        index = port // WORD
        if not bits.pending >> (index * WORD) & ((1 << WORD) - 1):
            bits.sel &= ~(1 << index)
        if not bits.sel:
            bits.upcall = False
        return True


#: a tracked range of more pages than this is watched, not write-protected
#: (spec/dirty_vram.py, "Watched ranges")
WATCHED_OVER = 64


class VramLog:
    """HVMOP_track_dirty_vram for one domain: a bitmap of the tracked range's
    pages written since the last call; written pages are made writable
    until the next call write-protects them again. A large range is
    watched instead: every store into it sets its page's bit."""

    def __init__(self, vcpu: Vcpu) -> None:
        self.vcpu = vcpu
        self.range = (0, 0)             # first pfn, number of pages
        self.bits = 0

    def _stored(self, uc, access, address, size, value, data) -> None:
        first, count = self.range
        last = min(address + size - 1 >> 12, first + count - 1)
        self.bits |= 1 << ((address >> 12) - first) | 1 << (last - first)

    def track(self, first_pfn: int, nr: int) -> int:
        if (first_pfn, nr) != self.range:
            old, count = self.range
            if count > WATCHED_OVER:
                self.vcpu.watch(0, 0, None)
            elif count:
                self.vcpu.protect(old << 12, count << 12, True)
            self.range, self.bits = (first_pfn, nr), (1 << nr) - 1
            if nr > WATCHED_OVER:
                self.vcpu.watch(first_pfn << 12, nr << 12, self._stored)
        bits, self.bits = self.bits, 0
        if nr > WATCHED_OVER:
            return bits
        page = 0
        while bits >> page:
            if bits >> page & 1:
                self.vcpu.protect(first_pfn + page << 12, 4096, False)
            page += 1
        return bits

    def fault(self, gpa: int) -> bool:
        first, count = self.range
        index = (gpa >> 12) - first
        if not 0 <= index < count:
            return False
        self.bits |= 1 << index
        self.vcpu.protect(gpa & ~0xFFF, 4096, True)
        return True

    def written(self, gpa: int, length: int) -> None:
        first, count = self.range
        if not count or length <= 0:
            return
        low = max(gpa >> 12, first)
        high = min((gpa + length - 1) >> 12, first + count - 1)
        for pfn in range(low, high + 1):
            self.bits |= 1 << (pfn - first)


_XEN_DEBUG = platform.XEN_DEBUG_PORT     # Xen prints a byte written there
_RTC_PORTS = (platform.RTC_INDEX_PORT, platform.RTC_INDEX_PORT + 1)


class Vmm:
    """Exit handling and ioreqs for one HVM domain."""

    def __init__(self, domid: int, vcpu: Vcpu, page: IoreqPage, emit: Emit,
                 notify: Callable[[int], None], crash: Callable[[str, int], None],
                 shutdown: Callable[[int], None] | None = None,
                 rtc_base: int | None = None) -> None:
        self.domid = domid
        self.vcpu = vcpu
        self.page = page
        self.emit = emit
        self.notify = notify
        self.crash = crash
        #: domain_shutdown(reason): a triple fault resets the domain (Xen's
        #: hvm_triple_fault: SHUTDOWN_reboot)
        self.shutdown = shutdown or (lambda reason: crash("shutdown", 0))
        self.port = 0                   # vp_eport of vcpu 0
        self.waiting: tuple | None = None   # (exit, count, finishes, by-value gpa)
        self.woken = False
        self.halted = False
        self.vpic = pic.Vpic()
        #: Xen's PIT, port 0x61 and the PIT's periodic time
        self.vpit = timer.Pit(vcpu.clock_ns)
        self.pmt = timer.PmTimer(vcpu.clock_ns)
        #: Xen's RTC: CMOS 0x00-0x0D and IRQ8
        self.vrtc = rtc.Rtc(vcpu.clock_ns, self._irq8,
                            platform.RTC_DEFAULT_BASE if rtc_base is None else rtc_base)
        self.lines = IrqLines()
        #: test-and-clear of the domain's interrupt port
        self.irq_pending: Callable[[], bool] = lambda: False
        self.window = False
        #: runs the device model's loop once: impl completes an MMIO
        #: instruction's ioreqs one after the other, without leaving the VMM
        self.serve: Callable[[], None] = lambda: None
        #: this round's pass of the device model's loop was made while an
        #: MMIO instruction was emulated (:meth:`_device_access`): the
        #: round skips its own pass (:meth:`take_served`)
        self.served = False
        self.mmio = MmioInstruction(vcpu, self._device_access)
        self.vram = VramLog(vcpu)
        vcpu.on_write = self.vram.written
        self.p2m = p2m.P2m(vcpu.memory_bytes, vcpu.remove_page, vcpu.restore_page, emit,
                           self._share)
        #: the shared info page, a frame of Xen's (XENMEM_add_to_physmap)
        self.shared_info = ctypes.create_string_buffer(p2m.SHARED_INFO_PAGE, 4096)

    def handle_exit(self, ex: Exit) -> None:
        self.emit(trace.VmExit.of(vcpu=0, reason=ex.reason, rip=ex.rip, icount=ex.icount,
                               info=ex.info))
        if ex.reason == "io":
            self._io(ex)
        elif ex.reason == "hlt":
            self._retire(ex, True)
            self.halted = True
        elif ex.reason == "vmcall":
            self._hypercall(ex)
        elif ex.reason in ("preemption_timer", "interrupt_window"):
            pass
        elif ex.reason == "triple_fault":
            self.shutdown(platform.SHUTDOWN_REBOOT)
        elif ex.reason == "ept_violation" and "p2m" in ex.info:
            if not self.vram.fault(ex.info["gpa"]):
                self.crash(f"write to read-only gpa {ex.info['gpa']:#x}", ex.rip)
        elif ex.reason == "ept_violation" and ex.info["access"] == "fetch":
            self.crash(f"instruction fetch from gpa {ex.info['gpa']:#x}, which no RAM backs",
                       ex.rip)
        elif ex.reason == "ept_violation":
            try:
                self.mmio.run(ex.rip)
            except EmulationFailed as exc:
                self.served = False     # the round's pass comes after the crash
                self.crash(f"MMIO emulation failed at rip {ex.rip:#x}: {exc}; instruction "
                           f"bytes {ex.info['bytes']}", ex.rip)
                return
            except GuestFault as fault:
                self._inject_fault(ex, fault.vector, fault.code, fault.cr2)
                return
            if self.waiting is None and not self.halted:
                self.vcpu.icount += 1
                self.vcpu.shadow = False
        else:
            self.crash(f"{ex.reason} at rip {ex.rip:#x}; instruction bytes "
                       f"{ex.info.get('bytes', '')}", ex.rip)

    def _io(self, ex: Exit) -> None:
        io, cpu = ex.io, self.vcpu
        if io.port in pic.PORTS:
            self._vpic_io(ex)
            return
        if io.port in timer.PORTS or self.pmt.claims(io.port):
            self._vpit_io(ex)
            return
        if io.port in _RTC_PORTS and self._vrtc_io(ex):
            return
        direction = READ if io.dir == "in" else WRITE
        if not io.string:
            data = cpu.get("rax") & ((1 << 8 * io.size) - 1) if direction == WRITE else 0
            if io.port == _XEN_DEBUG and io.size == 1 and direction == WRITE:  # hvm_print_line
                self.emit(trace.FirmwareLog.of(by="xen", port=_XEN_DEBUG, byte=data))
            self._send(ex, (io.port, data, 1, io.size, 0, direction, 0), (ex, 1, True, None))
            return
        amask = (1 << io.address_size) - 1
        linear = (cpu.seg_base(io.segment)
                  + (cpu.get("rdi" if direction == READ else "rsi") & amask)) & cpu.linear_mask()
        total = _string_count(cpu, io)
        if total == 0:
            self._retire(ex, True)
            return
        size, page = io.size, platform.PAGE_SIZE
        back = 1 if cpu.get("rflags") & EFLAGS_DF else 0
        first_page = linear // page
        if (linear + size - 1) // page != first_page:            # straddles: by value
            count, by_value, finishes = 1, True, total == 1
        else:
            last = linear - (total - 1) * size if back else linear + total * size - 1
            if last >= 0 and last // page == first_page:
                count, by_value, finishes = total, False, True
            else:
                offset = linear % page
                count = offset // size + 1 if back else (page - offset) // size
                by_value, finishes = False, False
        try:
            gpa = cpu.translate(linear, direction == READ) if cpu.paging() else linear
        except LinearFault as exc:
            self._string_io_fault(ex, exc)
            return
        low = gpa - (count - 1) * size if back else gpa
        if not cpu.backed(low, count * size):
            self.crash(f"string I/O at rip {ex.rip:#x}: data at {low:#x}+{count * size} "
                       f"is not guest RAM", ex.rip)
            return
        linear = gpa
        if not by_value:
            fields = (io.port, linear, count, size, 1, direction, back)
        elif direction == WRITE:
            value = int.from_bytes(cpu.read(linear, size), "little")
            fields = (io.port, value, 1, size, 0, direction, back)
        else:
            fields = (io.port, 0, 1, size, 0, direction, back)
        self._send(ex, fields, (ex, count, finishes,
                                linear if by_value and direction == READ else None))

    # --- hypercalls ---------------------------------------------------------------------

    def _share(self, old: int | None, new: int) -> bool:
        """The shared info frame's EPT entry moves to guest frame ``new``."""
        cpu = self.vcpu
        if new != old and cpu.backed(new << 12, 4096):
            return False
        if old is not None:
            cpu.unmap_buffer(old << 12, 4096)
        cpu.map_buffer(new << 12, self.shared_info)
        return True

    def _hypercall(self, ex: Exit) -> None:
        """VMCALL: the call, its result in (E/R)AX, and after a
        decrease_reservation the INVALIDATE ioreq that flushes qemu-dm's
        mapcache before the guest runs on."""
        cpu = self.vcpu
        bits = 64 if cpu.mode() == 64 else 32
        width = (1 << bits) - 1
        number = cpu.get("rax") & 0xFFFFFFFF
        args = [cpu.get(r) & width for r in HYPERCALL_ARGS[bits]]
        if cpu.get("rflags") & EFLAGS_VM or cpu.ss_dpl() == 3:
            result = -p2m.EPERM
        else:
            def read(linear: int, n: int) -> bytes | None:
                try:
                    return cpu.lread_pages(linear & width, n)
                except LinearFault:
                    return None

            def write(linear: int, data: bytes) -> bool:
                try:
                    cpu.lwrite(linear & width, data)
                except LinearFault:
                    return False
                return True
            if number == p2m.MEMORY_OP:
                result = self.p2m.memory_op(args[0] & 0xFFFFFFFF, args[1], read, bits)
            elif number == p2m.XEN_VERSION:
                result = p2m.xen_version(args[0] & 0xFFFFFFFF, args[1], read, write)
            else:
                result = -p2m.ENOSYS
        cpu.put("rax", result)
        self.emit(trace.Hypercall(vcpu=0, number=number, name=p2m.NAMES.get(number, ""),
                                  args=args, result=result, icount=ex.icount, rip=ex.rip))
        self._retire(ex, True)
        if result != -p2m.EPERM and number == p2m.MEMORY_OP and args[0] & 0x3F == p2m.DECREASE:
            self._send(ex, (0, (1 << 64) - 1, 1, 4, 0, WRITE, 0), (ex, 0, True, None), INVALIDATE)

    # --- Xen's own PIC ---------------------------------------------------------------

    def _vpic_bytes(self, port: int, size: int, value: int, inward: bool) -> int:
        out = 0
        for i in range(size):
            p = port + i & 0xFFFF
            if inward:
                out |= (self.vpic.read(p) if p in pic.PORTS else 0xFF) << 8 * i
            elif p in pic.PORTS:
                self.vpic.write(p, value >> 8 * i & 0xFF)
                self.lines.elcr = self.vpic.elcr()
        self.emit(trace.XenIo.of(device="vpic", addr=port, size=size,
                              dir="in" if inward else "out", data=out if inward else value))
        return out

    def _vpic_io(self, ex: Exit) -> None:
        io, cpu = ex.io, self.vcpu
        inward, size = io.dir == "in", io.size
        mask = (1 << 8 * size) - 1
        if not io.string:
            if inward:
                cpu.put("rax", cpu.get("rax") & ~mask | self._vpic_bytes(io.port, size, 0, True))
            else:
                self._vpic_bytes(io.port, size, cpu.get("rax") & mask, False)
            cpu.io_ns += platform.PORT_ACCESS_NS
            self._retire(ex, True)
            return
        amask = (1 << io.address_size) - 1
        reg = "rdi" if inward else "rsi"
        base = cpu.seg_base(io.segment)
        for _ in range(_string_count(cpu, io)):
            at = base + (cpu.get(reg) & amask) & cpu.linear_mask()
            try:
                if inward:
                    cpu.check(at, size, True)
                    cpu.lwrite(at, self._vpic_bytes(io.port, size, 0, True).to_bytes(size, "little"))
                else:
                    self._vpic_bytes(io.port, size, int.from_bytes(cpu.lread(at, size), "little"),
                                     False)
            except LinearFault as exc:
                self._string_io_fault(ex, exc)
                return
            cpu.io_ns += platform.PORT_ACCESS_NS
            _advance_string(cpu, io, 1)
        self._retire(ex, True)

    # --- Xen's own PIT -----------------------------------------------------------------

    def _vpit_io(self, ex: Exit) -> None:
        """Xen's PIT/0x61 (one-byte IN/OUT) and PM timer (4-byte IN) performed;
        0x43 reads and other sizes leave RAX alone (writes dropped); string
        forms advance and retire untouched."""
        io, cpu = ex.io, self.vcpu
        size = io.size
        mask = (1 << 8 * size) - 1
        if io.string:
            self._ignored(ex, "pmtimer" if self.pmt.claims(io.port) else "vpit")
            return
        data = cpu.get("rax") & mask
        pm = self.pmt.claims(io.port)
        if pm:
            if size == 4 and io.dir == "in":
                data = self.pmt.read4()
                cpu.put("rax", cpu.get("rax") & ~mask | data)
        elif size == 1:
            if io.dir == "in":
                got = self.vpit.read(io.port)
                if got >= 0:
                    cpu.put("rax", cpu.get("rax") & ~0xFF | got)
                    data = got
            else:
                self.vpit.write(io.port, data)
        self.emit(trace.XenIo.of(device="pmtimer" if pm else "vpit", addr=io.port, size=size,
                                 dir=io.dir, data=data))
        cpu.io_ns += platform.PORT_ACCESS_NS
        self._retire(ex, True)

    def deadline(self) -> int | None:
        """When Xen's PIT timer or RTC interrupt fires next."""
        pit, clock = self.vpit.due(), self.vrtc.deadline()
        if pit is None or clock is not None and clock < pit:
            return clock
        return pit

    def _vrtc_io(self, ex: Exit) -> bool:
        """Xen's RTC: False when the access goes on to qemu-dm (index >= 14);
        other sizes and string forms are claimed and ignored, as the PIT's."""
        io, cpu = ex.io, self.vcpu
        if io.size != 1 or io.string:
            self._ignored(ex, "vrtc")
            return True
        data = cpu.get("rax") & 0xFF
        got = self.vrtc.access(io.port, io.dir == "in", data)
        if got == -2:
            return False
        if got >= 0:
            cpu.put("rax", cpu.get("rax") & ~0xFF | got)
            data = got
        self.emit(trace.XenIo.of(device="vrtc", addr=io.port, size=1, dir=io.dir, data=data))
        cpu.io_ns += platform.PORT_ACCESS_NS
        self._retire(ex, True)
        return True

    def _ignored(self, ex: Exit, device: str) -> None:
        """An access Xen claims and drops: IN leaves RAX, a string form only advances."""
        io, cpu = ex.io, self.vcpu
        size = io.size
        n = _string_count(cpu, io) if io.string else 1
        if io.string:
            _advance_string(cpu, io, n)
        data = 0 if io.string else cpu.get("rax") & ((1 << 8 * size) - 1)
        for _ in range(n):
            self.emit(trace.XenIo.of(device=device, addr=io.port, size=size, dir=io.dir,
                                     data=data))
        cpu.io_ns += n * platform.PORT_ACCESS_NS
        self._retire(ex, True)

    def _irq8(self, level: int) -> None:
        """hvm_isa_irq_assert/deassert by Xen's RTC: straight to the vPIC."""
        self.emit(trace.XenIrq.of(device="vrtc", irq=8, level=level))
        if level:
            self.vpic.lines(1 << 8, 0)
        else:
            self.vpic.lower(8)

    def _tick(self) -> None:
        """The periodic time: fire what is due, then hold an edge on IRQ0
        while ticks are pending; then the RTC's timers that are due."""
        t = self.vpit.ticker
        if t.on:
            got = t.fire(self.vcpu.clock_ns())
            if got:
                self.emit(trace.TimerTick.of(vcpu=0, irq=0, ticks=got, pending=t.pending,
                                             icount=self.vcpu.icount))
            if t.pending:
                self.vpic.lines(1, 0)
        self.vrtc.run(self.vcpu.clock_ns())

    # --- interrupts ---------------------------------------------------------------------

    def _collect(self) -> None:
        if self.irq_pending():
            self.vpic.lines(*self.lines.collect())

    def wakeable(self) -> bool | None:
        """Halted vcpu: True to wake now, False to sleep on, None if it never can."""
        self._tick()
        self._collect()
        if not self.vcpu.get("rflags") & EFLAGS_IF:
            return None
        return self.vpic.requesting()

    def assist(self) -> bool:
        """Before VM entry: Xen's timer, then qemu-dm's lines; inject or ask for a window."""
        self._tick()
        self._collect()
        cpu = self.vcpu
        if not self.vpic.requesting():
            self.window = False
            return True
        if not cpu.get("rflags") & EFLAGS_IF or cpu.shadow:
            self.window = True
            return True
        line, vector = self.vpic.intack()
        if line == 0:
            self.vpit.taken(cpu.clock_ns())
        rip = cpu.rip()
        self.emit(trace.Injection.of(vcpu=0, vector=vector, irq=line, icount=cpu.icount, rip=rip))
        try:
            delivered = cpu.deliver(vector)
        except Refused as exc:
            self.crash(f"delivering vector {vector:#x} (IRQ{line}): {exc}", rip)
            return False
        if not delivered:
            self.handle_exit(Exit("triple_fault", rip, 0, cpu.icount))
            return False
        self.window = self.vpic.requesting()
        return True

    def _device_access(self, direction: int, addr: int, size: int, count: int, ptr: int,
                       df: int, data: int) -> int:
        """One MMIO ioreq, sent, served and completed before returning its datum."""
        if self.page.state(0) != NONE or self.waiting is not None:
            raise EmulationFailed("the ioreq slot is busy")
        self.page.fill(0, addr, data, count, size, self.port, ptr, direction, df, COPY)
        self.page.set_state(0, READY)
        self.emit(self.page.event(0, "vmm", NONE, READY))
        self.notify(self.port)
        self.serve()
        self.served = True
        state = self.page.state(0)
        if state != RESP_READY:
            raise EmulationFailed(f"ioreq of vcpu 0 in state {STATE.get(state, state)}")
        value = self.page.fields(0)[1]
        self.vcpu.io_ns += count * platform.MMIO_ACCESS_NS
        self.page.set_state(0, NONE)
        self.woken = False
        self.emit(self.page.event(0, "vmm", RESP_READY, NONE))
        return value

    def take_served(self) -> bool:
        """Whether the device model's loop already ran for this round's
        exit (an MMIO instruction's ioreqs, served one after the other), and
        forget it. The reference sends the ioreq, lets qemu-dm's pass of
        the round serve it, and completes the instruction when the vcpu is
        next scheduled, then enters the guest: no pass of qemu-dm comes
        between the last ioreq's service and that VM entry. impl serves
        within the exit, so the round's own pass would be one the
        reference does not make; a timer due in the bus time of the
        accesses (a display refresh) would fire before the entry here and
        after it there."""
        served, self.served = self.served, False
        return served

    def _send(self, ex: Exit, fields: tuple, pending: tuple, typ: int = PIO) -> None:
        state = self.page.state(0)
        if state != NONE or self.waiting is not None:
            self.crash(f"ioreq slot of vcpu 0 is busy ({STATE.get(state, f'UNKNOWN({state})')})",
                       ex.rip)
            return
        port, data, count, size, ptr, direction, df = fields
        self.page.fill(0, port, data, count, size, self.port, ptr, direction, df, typ)
        self.page.set_state(0, READY)
        self.waiting, self.woken = pending, False
        self.emit(self.page.event(0, "vmm", NONE, READY))
        self.notify(self.port)

    def on_notify(self, port: int) -> None:
        if self.waiting is not None:
            self.woken = True

    def resume(self) -> bool:
        """The woken vcpu completes its ioreq; True when it may run again."""
        self.woken = False
        state = self.page.state(0)
        if state in (READY, INPROCESS):
            return False
        ex, count, finishes, by_value_gpa = self.waiting
        if state != RESP_READY:
            self.crash(f"ioreq of vcpu 0 in unexpected state "
                       f"{STATE.get(state, f'UNKNOWN({state})')} while waiting", ex.rip)
            return False
        data = self.page.fields(0)[1]
        self.page.set_state(0, NONE)
        self.waiting = None
        self.emit(self.page.event(0, "vmm", RESP_READY, NONE))
        if ex.reason == "vmcall":
            return True                 # the invalidation: nothing comes back
        io, cpu = ex.io, self.vcpu
        cpu.io_ns += count * platform.PORT_ACCESS_NS
        if not io.string:
            if io.dir == "in":
                mask = (1 << 8 * io.size) - 1
                cpu.put("rax", cpu.get("rax") & ~mask | data & mask)
            self._retire(ex, True)
            return True
        if by_value_gpa is not None:
            cpu.write(by_value_gpa, (data & ((1 << 8 * io.size) - 1)).to_bytes(io.size, "little"))
        _advance_string(cpu, io, count)
        self._retire(ex, finishes)
        return True

    def _string_io_fault(self, ex: Exit, exc: LinearFault) -> None:
        if exc.pf is None:
            self.crash(f"string I/O at rip {ex.rip:#x}: {exc}", ex.rip)
            return
        vector, code, linear = exc.pf
        self._inject_fault(ex, vector, code, linear if vector == 14 else None)

    def _inject_fault(self, ex: Exit, vector: int, code: int, cr2: int | None) -> None:
        """The instruction being emulated faults (its data is where the
        guest's page tables do not reach, or past a segment limit): the
        exception, delivered as the CPU would have (the instruction does not
        retire)."""
        cpu = self.vcpu
        try:
            delivered = delivery.deliver(cpu, vector, "fault", cpu.get("rip"), code, cr2)
        except Refused as exc:
            self.crash(f"delivering vector {vector:#x} at rip {ex.rip:#x}: {exc}", ex.rip)
            return
        if not delivered:
            self.handle_exit(Exit("triple_fault", cpu.rip(), 0, cpu.icount))

    def _retire(self, ex: Exit, advance: bool) -> None:
        cpu = self.vcpu
        cpu.shadow = False
        if advance:
            eip = cpu.get("rip") + ex.length
            cpu.put("rip", eip & {16: 0xFFFF, 32: 0xFFFFFFFF}.get(cpu.mode(), -1))
        cpu.icount += 1


def _string_count(cpu: Vcpu, io) -> int:
    """The elements a string I/O instruction asks for: (E/R)CX under its
    address size for a REP form, else one."""
    return cpu.get("rcx") & ((1 << io.address_size) - 1) if io.rep else 1


def _advance_string(cpu: Vcpu, io, elements: int) -> None:
    """A string I/O instruction moves on by ``elements``: (E/R)DI for INS
    or (E/R)SI for OUTS by that many sizes (down under DF), and a REP
    form's count down by as many, all under the address size."""
    amask = (1 << io.address_size) - 1
    step = -io.size if cpu.get("rflags") & EFLAGS_DF else io.size
    _add(cpu, "rdi" if io.dir == "in" else "rsi", step * elements, amask)
    if io.rep:
        _add(cpu, "rcx", -elements, amask)


def _add(cpu: Vcpu, reg: str, delta: int, mask: int) -> None:
    old = cpu.get(reg)
    cpu.put(reg, old & ~mask | (old + delta) & mask)
