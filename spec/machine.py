"""The reference engine: Xen, dom0 and one host's worth of scheduling.

Room: the wiring of the reference model into a machine that runs a guest:
Xen's domains, event channels and VMMs, dom0's qemu-dm processes and xend,
and a deterministic scheduler. Imports the rest of ``spec/``.

Scheduling is deterministic, so that a guest's trace is a function of the
guest alone. One round of the scheduler:

1. every runnable vcpu of every live, unpaused domain runs until its next VM
   exit, which its VMM handles; a vcpu woken from an ioreq wait first
   completes it (the VMM's resume path). Before each VM entry the VMM runs
   its interrupt assist, and arms the preemption timer with the next timer
   deadline: Xen's own (the PIT's periodic time, :mod:`spec.devices.pit`)
   or the device model's, whichever comes first. A halted vcpu wakes if an interrupt is
   pending and IF = 1; if IF = 1 and nothing is pending, the virtual clock
   jumps to the next deadline (an ``idle`` event) and it sleeps on;
2. every qemu-dm runs one pass of its main loop;
3. xend handles ``VIRQ_DOM_EXC``.

The host stops when a round makes no progress: every domain is gone, or its
vcpus are halted with nothing that could wake them (*hung*), or a vcpu
reached the instruction budget (*limit*).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from spec import evtchn, ioreq, irq, platform, trace
from spec.hvmloader import domain_image
from spec.loader import GuestImage, check_image
from spec.dom0 import Dom0
from spec.qemu_dm import QemuDm
from spec.result import (RunControl, Recorder, RunResult, final_exit, firmware_report,
                         growing_trace)
from spec.vmm import Vmm
from spec.vmx import HardwareVcpu
from spec.xend import DeviceModelError, DomainConfig, DomainInfo, Xend


@dataclass
class HvmDomain:
    """Xen's ``struct domain`` for an HVM guest, and its device model."""

    domid: int
    config: DomainConfig
    vcpus: list[HardwareVcpu]
    vmm: Vmm
    iopage: ioreq.SharedIopage
    qemu: QemuDm | None = None
    lines: irq.SharedLines | None = None
    irq_port: int = 0
    paused: bool = True
    shutdown_reason: int | None = None
    #: the VGA's expansion ROM, which the domain's qemu-dm serves (SeaBIOS's VGA BIOS)
    vga_rom: bytes | None = None


class GuestRam:
    """qemu-dm's view of a domain's RAM (``xc_map_foreign_range``)."""

    def __init__(self, hw: HardwareVcpu) -> None:
        self.hw = hw

    def read(self, gpa: int, length: int) -> bytes:
        if not self.hw.is_ram(gpa, length):
            return b"\xff" * length
        return self.hw.read(gpa, length)

    def write(self, gpa: int, data: bytes) -> None:
        if self.hw.is_ram(gpa, len(data)):
            self.hw.write(gpa, data)


class DomainLink:
    """libxc as one qemu-dm process uses it."""

    def __init__(self, xen: "ReferenceXen", domid: int) -> None:
        self.xen = xen
        self.domid = domid

    def bind_interdomain(self, remote_dom: int, remote_port: int) -> int:
        return self.xen.events.bind_interdomain(platform.DOM0, remote_dom, remote_port)

    def take_pending(self, port: int) -> bool:
        return self.xen.events.take_pending(self.xen.events.domain(platform.DOM0), port)

    def notify(self, port: int) -> None:
        self.xen.events.send(platform.DOM0, port)

    def shutdown(self, domid: int, reason: int, by: str) -> None:
        self.xen.shutdown(domid, reason, by)

    def clock_ns(self) -> int:
        dom = self.xen.domains.get(self.domid)
        return dom.vcpus[0].clock_ns() if dom else 0

    def move_pm_timer(self, port: int) -> None:
        """Xen's PM timer to ports ``port`` .. ``port + 3`` (Xen 4's
        ``HVM_PARAM_ACPI_IOPORTS_LOCATION``; :mod:`spec.devices.pmtimer`)."""
        dom = self.xen.domains.get(self.domid)
        if dom is not None:
            dom.vmm.pmtimer.move(port)

    def map_vram(self, gpa: int, buffer) -> None:
        """``xc_domain_add_to_physmap``: qemu-dm's video memory into the guest."""
        self.xen.domains[self.domid].vcpus[0].map_foreign(gpa, buffer)

    def unmap_vram(self, gpa: int, length: int) -> None:
        """``xc_domain_remove_from_physmap``: the range is a hole again."""
        self.xen.domains[self.domid].vcpus[0].unmap_foreign(gpa, length)

    def track_dirty_vram(self, first_pfn: int, nr: int) -> int:
        """``xc_hvm_track_dirty_vram`` (:mod:`spec.dirty_vram`)."""
        return self.xen.domains[self.domid].vmm.dirty_vram.track(first_pfn, nr)

    def dirty_vram_pending(self) -> bool:
        return self.xen.domains[self.domid].vmm.dirty_vram.pending()

    def frames(self, gpa: int, length: int) -> int:
        """Which frames a new foreign mapping of the range shows (the p2m's generation)."""
        return self.xen.domains[self.domid].vmm.p2m.frames(gpa, length)


class ReferenceXen:
    """Xen and dom0 on one host (the reference engine)."""

    def __init__(self, image: GuestImage, emit: Callable[[trace.Event], None],
                 max_instructions: int = platform.DEFAULT_MAX_INSTRUCTIONS,
                 serial_input=b"") -> None:
        self.image = image
        # bytes for COM1's sender, or a live line (``read()``/``wait()``)
        live = not isinstance(serial_input, (bytes, bytearray))
        self.serial_input = b"" if live else bytes(serial_input)
        self.serial_source = serial_input if live else None
        #: the tool that serves qemu-dm's VNC displays (:mod:`spec.qemu_dm`), or None
        self.vnc_backend = None
        self.emit = emit
        self.max_instructions = max_instructions
        self.events = evtchn.EventChannels(emit)
        self.events.add_domain(platform.DOM0)
        self.virq_port = self.events.bind_virq(platform.DOM0, evtchn.VIRQ_DOM_EXC)
        #: the last picture of each destroyed domain's VGA (width, height, RGB)
        self.pictures: dict[int, tuple[int, int, bytes]] = {}
        self.domains: dict[int, HvmDomain] = {}
        self.next_domid = 1
        self.stopped: str | None = None
        #: a host that serves others (``hvmspec xend``) preempts a vcpu after
        #: this many nanoseconds of its clock (the preemption timer); None: never
        self.slice: int | None = None
        #: dom0's xenstored and xend (:mod:`spec.dom0`)
        self.dom0 = Dom0(self, emit)
        self.xenstore = self.dom0.store
        self.xend = self.dom0.xend

    # --- hypercalls (xend.Host) --------------------------------------------------

    def create_domain(self, config: DomainConfig) -> int:
        """``XEN_DOMCTL_createdomain`` plus the HVM builder: memory, the
        image, the ioreq page with a Xen-consumed port per vcpu."""
        memory = config.memory_mib << 20
        image = (domain_image(config.kernel, config.bios, config.vgabios) if config.kernel
                 else self.image)
        check_image(image.image, memory)
        domid = self.next_domid
        self.next_domid += 1
        hw = HardwareVcpu(memory)
        hw.emit = self.emit
        for gpa, data in image.ram_placements():
            hw.write(gpa, data)
        if image.rom_alias() is not None:
            hw.map_rom(*image.rom_alias())
        self.events.add_domain(domid)
        page = ioreq.SharedIopage()
        lines = irq.SharedLines()
        vmm = Vmm(domid, [hw], page, [], notify=lambda port: self.events.send(domid, port),
                  emit=self.emit, crash=lambda msg, rip: self.crash(domid, msg, rip),
                  lines=lines, shutdown=lambda reason: self.shutdown(domid, reason, "xen"),
                  rtc_base=config.rtc_base)
        for vcpu in range(config.vcpus):
            port = self.events.alloc_unbound_xen(domid, platform.DOM0, vmm.on_notify)
            vmm.ports.append(port)
            page.write_fields(vcpu, ioreq.Ioreq(vp_eport=port))
        # the interrupt port: an ordinary port of the domain that dom0's
        # qemu-dm binds; Xen tests its pending bit at VM entry
        irq_port = self.events.alloc_unbound(domid, platform.DOM0)
        events = self.events
        vmm.take_irq_event = lambda: events.take_pending(events.domain(domid), irq_port)
        self.domains[domid] = HvmDomain(domid, config, [hw], vmm, page, lines=lines,
                                        irq_port=irq_port, vga_rom=image.vga_rom)
        return domid

    def start_device_model(self, domid: int) -> None:
        """xend starts qemu-dm for the domain: it maps the ioreq page and
        guest memory and binds its event channels."""
        dom = self.domains[domid]
        try:
            dom.qemu = QemuDm(domid, self.dom0.connect("qemu-dm"), dom.iopage,
                              GuestRam(dom.vcpus[0]), DomainLink(self, domid),
                              self.device_model_emit(domid),
                              lines=dom.lines, irq_port=dom.irq_port,
                              serial_input=self.serial_input,
                              serial_source=self.console_line(domid),
                              vnc_backend=self.vnc_backend, vga_rom=dom.vga_rom)
        except DeviceModelError:
            self.domains.pop(domid, None)
            self.events.remove_domain(domid)
            raise

    def device_model_emit(self, domid: int) -> Callable[[trace.Event], None]:
        """Where the domain's qemu-dm reports (one trace for the host)."""
        return self.emit

    def console_line(self, domid: int):
        """The live line into the domain's COM1 (``serial = 'pty'``): the
        run's one (``--serial-input -``, a serial script), or, under
        ``hvmspec xend``, the domain's own, which ``xm console`` types into."""
        return self.serial_source

    def unpause(self, domid: int) -> None:
        self.domains[domid].paused = False

    def pause(self, domid: int) -> None:
        self.domains[domid].paused = True

    def store_ring(self, domid: int) -> tuple[int, int]:
        """The XenStore page two below the top of RAM (Xen 3.x's HVM
        builder: the ioreq page is the last, the store page the one before
        it... see :data:`spec.platform.STORE_PFN_FROM_TOP`) and a port for
        xenstored."""
        dom = self.domains[domid]
        pfn = (dom.config.memory_mib << 8) - platform.STORE_PFN_FROM_TOP
        return pfn, self.events.alloc_unbound(domid, platform.DOM0)

    def domain_info(self, domid: int) -> DomainInfo | None:
        dom = self.domains.get(domid)
        if dom is None:
            return None
        hw = dom.vcpus[0]
        return DomainInfo(dom.shutdown_reason is not None, dom.shutdown_reason,
                          paused=dom.paused, blocked=bool(dom.vmm.halted[0]),
                          cpu_seconds=hw.icount / 1e9)

    def destroy(self, domid: int) -> None:
        """``XEN_DOMCTL_destroydomain``; its qemu-dm exits with it."""
        dom = self.domains.get(domid)
        if dom is not None and dom.qemu is not None:
            dom.qemu.stop()
            if dom.qemu.vga is not None:      # what the screen showed at the end
                self.pictures[domid] = dom.qemu.vga.picture_rgb()
        if self.domains.pop(domid, None) is not None:
            self.events.remove_domain(domid)
            # the domain is dead: dom0 hears of it as of a shutdown
            self.events.send_virq(platform.DOM0, evtchn.VIRQ_DOM_EXC)

    def dom_exc_pending(self) -> bool:
        return self.events.take_pending(self.events.domain(platform.DOM0), self.virq_port)

    def shutdown(self, domid: int, reason: int, by: str) -> None:
        """``domain_shutdown``: stop the vcpus, tell dom0 (``VIRQ_DOM_EXC``)."""
        dom = self.domains.get(domid)
        if dom is None or dom.shutdown_reason is not None:
            return
        dom.shutdown_reason = reason
        self.emit(trace.DomainShutdown(dom=domid, reason=platform.SHUTDOWN_REASONS[reason], by=by))
        self.events.send_virq(platform.DOM0, evtchn.VIRQ_DOM_EXC)

    def crash(self, domid: int, message: str, rip: int) -> None:
        """``domain_crash``: a diagnostic, then shutdown with reason crash."""
        self.emit(trace.DomainCrash(dom=domid, rip=rip, message=message))
        self.shutdown(domid, platform.SHUTDOWN_CRASH, "xen")

    # --- scheduling ------------------------------------------------------------------

    def interrupt(self) -> None:
        """The operator's stop (:class:`spec.result.RunControl`), from any
        thread: the scheduler ends its loop and each vcpu leaves the guest
        at its next instruction boundary (as a ``limit`` exit)."""
        self.stopped = "interrupted"
        for dom in list(self.domains.values()):
            for hw in dom.vcpus:
                hw.interrupt()

    def instructions(self) -> int:
        """The instructions the domains have retired so far (any thread)."""
        return sum(hw.icount for dom in list(self.domains.values()) for hw in dom.vcpus)

    def run(self) -> None:
        """Schedule until no round makes progress (see module docstring)."""
        while self.stopped is None:
            if not self.round() and self.stopped is None:
                # a live line or a VNC console may still bring input: wait
                # for it (in real time) rather than end; when none can, the run ends
                if self._wait_for_input(0.05):
                    continue
                return

    def _wait_for_input(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for a person's input; False if none can come
        (no live serial line, or it ended, and no VNC console)."""
        if not self.domains:
            return False
        sources = [dom.qemu.console for dom in self.domains.values()
                   if dom.qemu is not None and dom.qemu.console is not None]
        if self.serial_source is not None:
            sources.append(self.serial_source)
        return any([source.wait(seconds / len(sources)) for source in sources])

    def round(self) -> bool:
        """One scheduling round: each domain's vcpus, each qemu-dm, dom0's
        daemons. True if anything made progress."""
        progressed = False
        for dom in list(self.domains.values()):
            progressed |= self._run_vcpus(dom)
            if self.stopped:
                return progressed
        for dom in list(self.domains.values()):
            if dom.qemu is not None:
                progressed |= dom.qemu.poll()
        return self.dom0.poll() or progressed

    def _run_vcpus(self, dom: HvmDomain) -> bool:
        progressed = False
        for v, hw in enumerate(dom.vcpus):
            if dom.paused or dom.shutdown_reason is not None:
                break
            if dom.vmm.waiting[v] is not None:
                if not dom.vmm.woken[v]:
                    continue
                progressed = True
                if not dom.vmm.resume(v) or dom.shutdown_reason is not None:
                    continue
            if dom.vmm.halted[v]:
                wake = dom.vmm.can_wake(v)
                if not wake:
                    deadline = self._deadline(dom)
                    if wake is not None and deadline is not None:
                        progressed |= self._sleep(dom, v, deadline)
                    continue
                dom.vmm.halted[v] = False
            budget = self.max_instructions - hw.icount
            if budget <= 0:
                self.stopped = self.stopped or "limit"
                return progressed
            try:
                if not dom.vmm.intr_assist(v):
                    return True
                self.emit(trace.VmEntry(vcpu=v, rip=hw.linear_rip(), icount=hw.icount))
                deadline = self._deadline(dom)      # after the assist: Xen's timer may have fired
                ex = hw.run(budget, _sliced(deadline, hw.clock_ns(), self.slice), dom.vmm.window[v])
                if ex.reason == "limit":
                    self.stopped = self.stopped or "limit"
                    return True
                dom.vmm.handle_exit(v, ex)
            except Exception as exc:        # noqa: BLE001 - a bug of the model, not the guest's
                self.internal_error(dom, v, exc)
                return True
            progressed = True
        return progressed

    def internal_error(self, dom: HvmDomain, v: int, exc: Exception) -> None:
        """A defect of the model met while running the guest (an exception
        of Python, not of the guest: a guest's fault is an exit). The
        domain crashes with a message that names it as an internal error,
        and the run ends as any crash does: never a traceback, never a
        silent end."""
        hw = dom.vcpus[v]
        try:
            rip = hw.linear_rip()
        except Exception:                   # noqa: BLE001 - the message matters more
            rip = 0
        self.crash(dom.domid, f"internal error of the reference engine at rip {rip:#x}, "
                              f"instruction {hw.icount}: {type(exc).__name__}: {exc}", rip)


    @staticmethod
    def _deadline(dom: HvmDomain) -> int | None:
        """The vcpu's next timer deadline: Xen's or qemu-dm's."""
        return _earliest(dom.vmm.next_deadline(),
                         dom.qemu.next_deadline() if dom.qemu is not None else None)

    def _sleep(self, dom: HvmDomain, v: int, deadline: int) -> bool:
        """A halted vcpu with IF = 1 and nothing pending: the clock jumps to
        the next timer deadline (or stops at the instruction budget). The
        jump is counted in ``icount`` (:mod:`spec.clock`), which the
        ``idle`` event shows going from ``icount`` to ``until``."""
        hw = dom.vcpus[v]
        until = hw.icount + deadline - hw.clock_ns()
        if until > self.max_instructions:
            self.stopped = self.stopped or "limit"
            return False
        if until > hw.icount:
            self.emit(trace.Idle(vcpu=v, icount=hw.icount, until=until))
            hw.icount = until
        return True


def run_guest(image: GuestImage, memory_mib: int | None = None,
              max_instructions: int = platform.DEFAULT_MAX_INSTRUCTIONS,
              listeners: list[Callable[[trace.Event], None]] | None = None,
              serial_input=b"", device_model: dict | None = None,
              control: RunControl | None = None, vnc=None,
              keep_trace: bool = False) -> RunResult:
    """Boot ``image`` in a new HVM domain on the reference engine, run it to
    its end, and report. ``device_model`` sets the domain configuration's
    qemu-dm keys (``device_model_bits``, ``mapcache_budget``,
    ``map_everything``, ``rtc_base``, the ``vnc`` keys); ``vnc`` is the VNC
    back end that serves a display it asks for (:mod:`spec.qemu_dm`).
    ``control`` is the operator's handle (:class:`spec.result.RunControl`):
    a stop it asks for ends the run with the exit reason ``interrupted``, the
    domain destroyed. Each trace event goes, as it happens, to the run's
    summary and to ``listeners`` (its sinks: :class:`spec.result.Recorder`);
    the result keeps the whole trace only with ``keep_trace``, so that a
    long run's memory does not grow with its length. Raises
    :class:`spec.loader.GuestError` for an image
    that cannot be placed, :class:`spec.xend.DeviceModelError` when qemu-dm
    cannot serve the domain."""
    if memory_mib is None:
        memory_mib = image.memory_mib or platform.DEFAULT_MEMORY_MIB
    check_image(image.image, memory_mib << 20)
    control = control or RunControl()
    recorder = Recorder([*(listeners or []), control] if control.watched else listeners,
                        keep=keep_trace)
    started = time.perf_counter()
    xen = ReferenceXen(image, recorder, max_instructions, serial_input)
    xen.vnc_backend = vnc
    control.attach(xen.interrupt, xen.instructions,
                   lambda: sum(hw.io_ns for dom in list(xen.domains.values()) for hw in dom.vcpus))
    config = DomainConfig(name=image.name, memory_mib=memory_mib, on_poweroff="destroy",
                          on_reboot="destroy", on_crash="destroy", **(device_model or {}))
    domid = xen.xend.create(config)
    first = xen.domains[domid].vcpus[0]
    with control, growing_trace():
        xen.run()
    cpu = {"cs": first.selector("cs"), "ip": first.reg("rip"), "rip": first.linear_rip(),
           "if": bool(first.reg("rflags") & 1 << 9)}     # as the run left it
    dom = xen.domains.get(domid)
    instructions = dom.vcpus[0].icount if dom else recorder.summary.last_icount
    exit_info = final_exit(recorder.summary, {})
    if dom is not None and dom.shutdown_reason is None:
        exit_info = _stuck(xen, dom, control.reason)
        xen.xend.destroy(domid, f"{exit_info['reason']}: destroyed by the host")
        xen.dom0.poll()       # Xen tears it down; xend hears of it
        exit_info["domain"] = "destroyed"
    if image.kind == "firmware":
        exit_info.update(firmware_report(recorder.summary, exit_info, instructions, cpu))
    return RunResult("reference", image.name, exit_info, instructions,
                     time.perf_counter() - started, recorder.events,
                     xen.pictures.get(domid), recorder.summary)


def _stuck(xen: ReferenceXen, dom: HvmDomain, stopper: str | None = None) -> dict:
    hw = dom.vcpus[0]
    if xen.stopped == "limit":
        return {"reason": "limit", "dom": dom.domid,
                "message": f"stopped after {hw.icount} instructions (the budget)"}
    if xen.stopped == "interrupted":
        return {"reason": "interrupted", "dom": dom.domid,
                "message": f"stopped by {stopper} after {hw.icount} instructions"}
    if hw.reg("rflags") & (1 << 9):
        why = "interrupts enabled and no timer armed"
    else:
        why = "interrupts disabled"
    return {"reason": "hung", "dom": dom.domid,
            "message": f"vcpu 0 halted (next rip {hw.linear_rip():#x}) with {why}, "
                       f"and nothing can wake it"}


def _earliest(*deadlines: int | None) -> int | None:
    """The first of the deadlines that are armed, or None."""
    return min((d for d in deadlines if d is not None), default=None)


def _sliced(deadline: int | None, now: int, slice_: int | None) -> int | None:
    """The preemption timer's deadline on the clock: the next timer's, or
    the end of the vcpu's time slice if that comes first (``now`` is the
    vcpu's clock)."""
    if slice_ is None:
        return deadline
    return now + slice_ if deadline is None else min(deadline, now + slice_)
