"""The impl engine's host: Xen's domains, dom0's qemu-dm and xend, scheduled.

Room: wiring and scheduling for the impl engine, and its ``run_guest``.
Imports the rest of ``impl/``; from ``spec/`` the interface (trace, platform,
loader, result) and the shared control plane (:mod:`spec.xend`).

The schedule is the one every engine follows, so that traces compare event
by event: in each round the domain's vcpu runs to its next exit (first
completing an ioreq it was woken for), then each qemu-dm polls its ports,
then xend handles ``VIRQ_DOM_EXC``; a round with nothing to do ends the run.
An MMIO instruction's ioreqs are served inside its exit, each by a pass of
qemu-dm's loop; that pass is the round's (``Vmm.take_served``).
"""

from __future__ import annotations

import time
from typing import Callable

from spec import platform, trace
from spec.hvmloader import domain_image
from spec.loader import GuestImage, check_image
from spec.result import (RunControl, Recorder, RunResult, final_exit, firmware_report,
                         growing_trace)
from spec.xend import DeviceModelError, DomainConfig, DomainInfo, Xend
from spec.dom0 import Dom0
from impl.qemu_dm import QemuDm
from impl.registers import EFLAGS_IF
from impl.vcpu import Vcpu
from impl.xen import EventChannels, IoreqPage, IrqLines, Vmm

VIRQ_DOM_EXC = 3


class Domain:
    def __init__(self, domid: int, vcpu: Vcpu, vmm: Vmm, page: IoreqPage,
                 config: DomainConfig) -> None:
        self.domid = domid
        self.config = config
        self.vcpu = vcpu
        self.vmm = vmm
        self.page = page
        self.qemu: QemuDm | None = None
        self.paused = True
        self.shutdown: int | None = None
        self.irq_port = 0
        self.vga_rom: bytes | None = None


class Ram:
    """qemu-dm's mapping of guest RAM; unbacked addresses read as all-ones."""

    def __init__(self, vcpu: Vcpu) -> None:
        self.vcpu = vcpu

    def read(self, gpa: int, n: int) -> bytes:
        raw = self.read_all(gpa, n)
        return raw if raw is not None else b"\xff" * n

    def read_all(self, gpa: int, n: int) -> bytes | None:
        """``[gpa, gpa + n)`` if RAM backs all of it, else None."""
        return self.vcpu.read(gpa, n) if self.vcpu.backed(gpa, n) else None

    def write(self, gpa: int, data: bytes) -> None:
        if self.vcpu.backed(gpa, len(data)):
            self.vcpu.write(gpa, data)


class Libxc:
    """What one qemu-dm reaches of Xen."""

    def __init__(self, host: "Host", domid: int) -> None:
        self.host, self.domid = host, domid

    def bind(self, rdom: int, rport: int) -> int:
        return self.host.evtchn.bind_interdomain(platform.DOM0, rdom, rport)

    def take(self, port: int) -> bool:
        return self.host.evtchn.take(platform.DOM0, port)

    def notify(self, port: int) -> None:
        self.host.evtchn.send(platform.DOM0, port)

    def shutdown(self, domid: int, reason: int, by: str) -> None:
        self.host.shutdown(domid, reason, by)

    def clock_ns(self) -> int:
        dom = self.host.domains.get(self.domid)
        return dom.vcpu.clock_ns() if dom else 0

    def move_pm_timer(self, port: int) -> None:
        dom = self.host.domains.get(self.domid)
        if dom is not None:
            dom.vmm.pmt.base = port

    def map_vram(self, gpa: int, buffer) -> None:
        self.host.domains[self.domid].vcpu.map_buffer(gpa, buffer)

    def unmap_vram(self, gpa: int, length: int) -> None:
        self.host.domains[self.domid].vcpu.unmap_buffer(gpa, length)

    def track_dirty_vram(self, first_pfn: int, nr: int) -> int:
        return self.host.domains[self.domid].vmm.vram.track(first_pfn, nr)

    def dirty_vram_pending(self) -> bool:
        return self.host.domains[self.domid].vmm.vram.bits != 0

    def frames(self, gpa: int, length: int) -> int:
        """The generation of the frames behind a range (the mapcache's check)."""
        return self.host.domains[self.domid].vmm.p2m.frames(gpa, length)


class Host:
    """Xen and dom0 for the impl engine (``spec.xend.Host`` for xend)."""

    def __init__(self, image: GuestImage, emit: Callable[[trace.Event], None],
                 max_instructions: int, serial_input=b"") -> None:
        self.image = image
        live = not isinstance(serial_input, (bytes, bytearray))
        self.serial_input = b"" if live else bytes(serial_input)
        self.live_line = serial_input if live else None
        self.vnc_backend = None         # the tool serving qemu-dm's VNC displays
        self.emit = emit
        self.max_instructions = max_instructions
        self.evtchn = EventChannels(emit)
        self.evtchn.add_domain(platform.DOM0)
        self.virq_port = self.evtchn.bind_virq(platform.DOM0, VIRQ_DOM_EXC)
        self.pictures: dict[int, tuple[int, int, bytes]] = {}
        self.domains: dict[int, Domain] = {}
        self.next_domid = 1
        self.stopped: str | None = None
        #: a host that serves others (``hvmspec xend``) preempts a vcpu after
        #: this many nanoseconds of its clock (the preemption timer); None: never
        self.slice: int | None = None
        self.dom0 = Dom0(self, emit)
        self.xenstore = self.dom0.store
        self.xend = self.dom0.xend

    # --- xend's hypercalls -------------------------------------------------------

    def create_domain(self, config: DomainConfig) -> int:
        image = (domain_image(config.kernel, config.bios, config.vgabios) if config.kernel
                 else self.image)
        check_image(image.image, config.memory_mib << 20)
        domid, self.next_domid = self.next_domid, self.next_domid + 1
        vcpu = Vcpu(config.memory_mib << 20)
        vcpu.emit = self.emit
        for gpa, data in image.ram_placements():
            vcpu.write(gpa, data)
        if image.rom_alias() is not None:
            vcpu.map_rom(*image.rom_alias())
        self.evtchn.add_domain(domid)
        page = IoreqPage()
        vmm = Vmm(domid, vcpu, page, self.emit,
                  notify=lambda port: self.evtchn.send(domid, port),
                  crash=lambda message, rip: self.crash(domid, message, rip),
                  shutdown=lambda reason: self.shutdown(domid, reason, "xen"),
                  rtc_base=config.rtc_base)
        vmm.port = self.evtchn.alloc_unbound_xen(domid, platform.DOM0, vmm.on_notify)
        page.fill(0, 0, 0, 0, 0, vmm.port, 0, 0, 0, 0)
        dom = Domain(domid, vcpu, vmm, page, config)
        dom.vga_rom = image.vga_rom
        dom.irq_port = self.evtchn.alloc_unbound(domid, platform.DOM0)
        evtchn, port = self.evtchn, dom.irq_port
        vmm.irq_pending = lambda: evtchn.take(domid, port)
        self.domains[domid] = dom
        return domid

    def start_device_model(self, domid: int) -> None:
        dom = self.domains[domid]
        try:
            dom.qemu = QemuDm(domid, self.dom0.connect("qemu-dm"), dom.page, Ram(dom.vcpu),
                              Libxc(self, domid), self.device_model_emit(domid), dom.vmm.lines, dom.irq_port,
                              self.serial_input, self.console_line(domid), self.vnc_backend,
                              vga_rom=dom.vga_rom)
        except DeviceModelError:
            self.domains.pop(domid, None)
            self.evtchn.remove_domain(domid)
            raise
        dom.vmm.serve = dom.qemu.poll

    def unpause(self, domid: int) -> None:
        self.domains[domid].paused = False

    def device_model_emit(self, domid: int) -> Callable[[trace.Event], None]:
        return self.emit

    def console_line(self, domid: int):
        """The live line into the domain's COM1: the run's, or xend's for
        the domain (``xm console``)."""
        return self.live_line

    def pause(self, domid: int) -> None:
        self.domains[domid].paused = True

    def store_ring(self, domid: int) -> tuple[int, int]:
        pfn = (self.domains[domid].config.memory_mib << 8) - platform.STORE_PFN_FROM_TOP
        return pfn, self.evtchn.alloc_unbound(domid, platform.DOM0)

    def domain_info(self, domid: int) -> DomainInfo | None:
        dom = self.domains.get(domid)
        if dom is None:
            return None
        return DomainInfo(dom.shutdown is not None, dom.shutdown, paused=dom.paused,
                          blocked=bool(dom.vmm.halted), cpu_seconds=dom.vcpu.icount / 1e9)

    def destroy(self, domid: int) -> None:
        dom = self.domains.get(domid)
        if dom is not None and dom.qemu is not None:
            dom.qemu.stop()
            if dom.qemu.vga is not None:      # what the screen showed at the end
                self.pictures[domid] = dom.qemu.vga.picture_rgb()
        if self.domains.pop(domid, None) is not None:
            self.evtchn.remove_domain(domid)
            self.evtchn.send_virq(platform.DOM0, VIRQ_DOM_EXC)

    def dom_exc_pending(self) -> bool:
        return self.evtchn.take(platform.DOM0, self.virq_port)

    # --- Xen ------------------------------------------------------------------------

    def shutdown(self, domid: int, reason: int, by: str) -> None:
        dom = self.domains.get(domid)
        if dom is None or dom.shutdown is not None:
            return
        dom.shutdown = reason
        self.emit(trace.DomainShutdown(dom=domid, reason=platform.SHUTDOWN_REASONS[reason],
                                       by=by))
        self.evtchn.send_virq(platform.DOM0, VIRQ_DOM_EXC)

    def crash(self, domid: int, message: str, rip: int) -> None:
        self.emit(trace.DomainCrash(dom=domid, rip=rip, message=message))
        self.shutdown(domid, platform.SHUTDOWN_CRASH, "xen")

    def interrupt(self) -> None:
        """The operator's stop (:class:`spec.result.RunControl`), from any
        thread: the scheduler ends its loop and each vcpu leaves the guest
        at its next block boundary."""
        self.stopped = "interrupted"
        for dom in list(self.domains.values()):
            dom.vcpu.interrupt()

    def instructions(self) -> int:
        """The instructions the domains have retired so far (any thread)."""
        return sum(dom.vcpu.live_icount() for dom in list(self.domains.values()))

    def run(self) -> None:
        while self.stopped is None:
            if not self.round() and self.stopped is None:
                if self._wait_for_input(0.05):
                    continue
                return

    def _wait_for_input(self, seconds: float) -> bool:
        """Wait for a live line's or a VNC console's input; False if none can come."""
        if not self.domains:
            return False
        sources = [dom.qemu.console for dom in self.domains.values()
                   if dom.qemu is not None and dom.qemu.console is not None]
        if self.live_line is not None:
            sources.append(self.live_line)
        return any([source.wait(seconds / len(sources)) for source in sources])

    def round(self) -> bool:
        progressed = False
        for dom in list(self.domains.values()):
            progressed |= self._run_vcpu(dom)
            if self.stopped:
                return progressed
        for dom in list(self.domains.values()):
            if dom.qemu is not None and not dom.vmm.take_served():
                progressed |= dom.qemu.poll()
        return self.dom0.poll() or progressed

    def _run_vcpu(self, dom: Domain) -> bool:
        vmm, vcpu = dom.vmm, dom.vcpu
        if dom.paused or dom.shutdown is not None:
            return False
        progressed = False
        if vmm.waiting is not None:
            if not vmm.woken:
                return False
            progressed = True
            if not vmm.resume() or dom.shutdown is not None:
                return True
        if vmm.halted:
            wake = vmm.wakeable()
            if wake is None:
                return progressed
            if not wake:
                deadline = _first(vmm.deadline(), dom.qemu.deadline() if dom.qemu is not None else None)
                if deadline is None:
                    return progressed
                until = deadline - vcpu.io_ns      # the deadline as an icount
                if until > self.max_instructions:
                    self.stopped = self.stopped or "limit"
                    return progressed
                if until > vcpu.icount:
                    self.emit(trace.Idle(vcpu=0, icount=vcpu.icount, until=until))
                    vcpu.icount = until
                return True
            vmm.halted = False
        budget = self.max_instructions - vcpu.icount
        if budget <= 0:
            self.stopped = self.stopped or "limit"
            return progressed
        try:
            if not vmm.assist():
                return True
            self.emit(trace.VmEntry.of(vcpu=0, rip=vcpu.rip(), icount=vcpu.icount))
            deadline = _first(vmm.deadline(), dom.qemu.deadline() if dom.qemu is not None else None)
            ex = vcpu.run(budget, _sliced(deadline, vcpu.clock_ns(), self.slice), vmm.window)
            if ex.reason == "limit":
                self.stopped = self.stopped or "limit"
                return True
            vmm.handle_exit(ex)
        except Exception as exc:            # noqa: BLE001 - a bug of ours, not the guest's
            self.internal_error(dom, exc)
        return True

    def internal_error(self, dom: Domain, exc: Exception) -> None:
        """A defect of this engine met while running the guest: the domain
        crashes with a message that says so, and the run ends as any
        crash does (no traceback, no silent end)."""
        try:
            rip = dom.vcpu.rip()
        except Exception:                   # noqa: BLE001 - the message matters more
            rip = 0
        self.crash(dom.domid, f"internal error of the impl engine at rip {rip:#x}, "
                              f"instruction {dom.vcpu.icount}: {type(exc).__name__}: {exc}", rip)


def run_guest(image: GuestImage, memory_mib: int | None = None,
              max_instructions: int = platform.DEFAULT_MAX_INSTRUCTIONS,
              listeners: list[Callable[[trace.Event], None]] | None = None,
              serial_input=b"", device_model: dict | None = None,
              control: RunControl | None = None, vnc=None,
              keep_trace: bool = False) -> RunResult:
    """Boot ``image`` in a new HVM domain on the impl engine and run it to
    its end; ``device_model``, ``control``, ``listeners`` and ``keep_trace`` as for
    the reference engine. Raises
    :class:`spec.loader.GuestError` for an image that cannot be placed."""
    if memory_mib is None:
        memory_mib = image.memory_mib or platform.DEFAULT_MEMORY_MIB
    check_image(image.image, memory_mib << 20)
    control = control or RunControl()
    recorder = Recorder([*(listeners or []), control] if control.watched else listeners,
                        keep=keep_trace)
    started = time.perf_counter()
    host = Host(image, recorder, max_instructions, serial_input)
    host.vnc_backend = vnc
    control.attach(host.interrupt, host.instructions,
                   lambda: sum(dom.vcpu.io_ns for dom in list(host.domains.values())))
    config = DomainConfig(name=image.name, memory_mib=memory_mib, on_poweroff="destroy",
                          on_reboot="destroy", on_crash="destroy", **(device_model or {}))
    domid = host.xend.create(config)
    vcpu = host.domains[domid].vcpu
    with control, growing_trace():
        host.run()
    cpu = {"cs": vcpu.selector("cs"), "ip": vcpu.get("rip"), "rip": vcpu.rip(),
           "if": bool(vcpu.get("rflags") & EFLAGS_IF)}     # as the run left it
    dom = host.domains.get(domid)
    if dom is not None:
        instructions = dom.vcpu.icount
    else:
        instructions = recorder.summary.last_icount
    exit_info = final_exit(recorder.summary, {})
    if dom is not None and dom.shutdown is None:
        if host.stopped == "limit":
            exit_info = {"reason": "limit", "dom": domid, "message":
                         f"stopped after {dom.vcpu.icount} instructions (the budget)"}
        elif host.stopped == "interrupted":
            exit_info = {"reason": "interrupted", "dom": domid, "message":
                         f"stopped by {control.reason} after {dom.vcpu.icount} instructions"}
        else:
            why = ("interrupts enabled and no timer armed"
                   if dom.vcpu.get("rflags") & EFLAGS_IF else "interrupts disabled")
            exit_info = {"reason": "hung", "dom": domid, "message":
                         f"vcpu 0 halted (next rip {dom.vcpu.rip():#x}) with {why}, "
                         f"and nothing can wake it"}
        host.xend.destroy(domid, f"{exit_info['reason']}: destroyed by the host")
        host.dom0.poll()       # Xen tears it down; xend hears of it
        exit_info["domain"] = "destroyed"
    if image.kind == "firmware":
        exit_info.update(firmware_report(recorder.summary, exit_info, instructions, cpu))
    return RunResult("impl", image.name, exit_info, instructions,
                     time.perf_counter() - started, recorder.events,
                     host.pictures.get(domid), recorder.summary)


def _first(a: int | None, b: int | None) -> int | None:
    """The earlier of two deadlines, either of which may be unarmed."""
    if a is None:
        return b
    return a if b is None or a <= b else b


def _sliced(deadline: int | None, now: int, slice_: int | None) -> int | None:
    """The preemption timer's deadline: the next timer's, or the end of the
    vcpu's time slice if that comes first."""
    if slice_ is None:
        return deadline
    return now + slice_ if deadline is None else min(deadline, now + slice_)
