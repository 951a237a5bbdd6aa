"""qemu-dm: the device model, a dom0 process serving one HVM domain.

Room: qemu-dm's ioreq loop (take a request from the shared page, perform it
on the devices, respond) and its wiring of devices and power management.
Imports :mod:`spec.ioreq`, :mod:`spec.devices`, :mod:`spec.trace`,
:mod:`spec.dm_config` (its configuration, read from XenStore).

At start-up qemu-dm maps the domain's shared ioreq page and, for each vcpu,
binds an interdomain event channel to the port Xen put in the slot's
``vp_eport`` (``xc_evtchn_bind_interdomain``). Its main loop then waits for
any of those ports to become pending, and for each pending port:

1. reads the slot's state and applies :func:`spec.ioreq.dm_accept`: only a
   ``READY`` request is taken (``INPROCESS`` is written back); a notification
   that finds anything else is ignored, as qemu-dm's ``cpu_get_ioreq`` does;
2. performs the request: a PIO request of ``count`` repetitions of ``size``
   bytes at port ``addr``; when ``data_is_ptr`` the data of repetition *i*
   is in guest memory at ``data ± i*size`` (minus when ``df``), which
   qemu-dm reaches through its mapping of guest memory; otherwise ``data``
   holds the datum;
3. writes the response data, applies :func:`spec.ioreq.dm_respond`
   (``IORESP_READY``) and notifies the port.

Interrupts. Devices drive ISA lines through :meth:`QemuDm.set_irq` (the
shared lines of :mod:`spec.irq`); when a change needs the VMM's attention,
qemu-dm sends on the domain's interrupt event channel once, at the end of
the pass of its main loop. The UART drives IRQ4 and the keyboard controller
(:mod:`spec.devices.kbc`, with port 0x92) IRQ1 and IRQ12; the DMA
controllers (:mod:`spec.devices.dma`) are registers only. The firmware
writes its log to the Bochs BIOS debug ports (:mod:`spec.devices.debugport`).
PIIX3's IDE function (:mod:`spec.devices.ide`) has its two channels on
the legacy ports and IRQ14/IRQ15, and its bus-master registers
(:mod:`spec.devices.bmdma`) wherever the guest puts its BAR 4; it is there
with or without drives (``drives``: hda .. hdd). A bus master's PRD table
and data are guest memory, which qemu-dm reaches through the mapcache:
each access maps and locks the buckets it touches, as a ``data_is_ptr``
request does.
The VGA (:mod:`spec.devices.vga`) has its registers on ports, the legacy
window ``0xA0000``-``0xBFFFF`` and its PCI BAR 0 on the MMIO bus, shares
the one view of its video memory the display shows with the guest, and
refreshes the display on a timer of its own. Timers run on the virtual clock: qemu-dm tells the VMM
its next deadline (the VMM arms the vcpu's preemption timer with it), and a
pass at or after a deadline runs the timer: the UART's receiver takes its next input byte or, with its
FIFO enabled, signals a character timeout.

When the guest's ACPI write asks for power-off, qemu-dm records the request
and, after responding to the ioreq in hand, asks Xen to shut the domain down
(``xc_domain_shutdown``, reason *poweroff*): Xen then tells xend. A
system reset asked for by the keyboard controller (its output port's bit 0,
command 0xFE) or by PIIX3's reset control register (0xCF9, bit 2) becomes a
shutdown with reason *reboot* in the same way (Xen 3.x qemu-dm's
``qemu_system_reset_request``); the first request of a pass wins.
The PIT (0x40-0x43) and port 0x61 are not qemu-dm's: Xen 3.0.4 emulates
them, and drives IRQ0, in the hypervisor (:mod:`spec.devices.pit`;
qemu-dm's ``pc_init1`` builds its PIT and speaker only ``#ifndef
CONFIG_DM``), as it does the PIC and the PM timer. The RTC's clock,
its registers 0x00-0x0D and IRQ8 are Xen's too (:mod:`spec.devices.rtc`):
qemu-dm's ``rtc-dm.c`` is CMOS RAM only (:mod:`spec.devices.cmos`), and
sees an access to ports 0x70/0x71 only when Xen's index is 0x0E or above.
Port 0x80 never reaches qemu-dm: Xen lets the guest access it directly
(:data:`spec.platform.PASSTHROUGH_PORTS`). When qemu-dm stops it reports
how many port and MMIO accesses no device claimed
(:class:`spec.trace.DeviceStats`).
A COPY request is an MMIO access: ``count`` repetitions of ``size`` bytes at
guest-physical address ``addr`` (``addr ± i*size``), dispatched on the MMIO
bus, with the data by value or, when ``data_is_ptr``, in guest RAM at
``data ± i*size`` (the RAM side of a ``rep movs``). An INVALIDATE request
(after the guest gave memory back, :mod:`spec.vmm`) drops every mapping of
the mapcache, whatever its ``data`` says (``xen_invalidate_map_cache``;
mappings in use become stale, :mod:`spec.mapcache`). Other request types
are not sent by this model's VMM; one would be answered with all-ones data.

Drives (xm's ``disk`` list). qemu-dm reads the domain's vbds from
XenStore (:func:`spec.dm_config.read_disks`) and opens each image as its
drive's medium (:func:`spec.dm_config.open_drives`, :mod:`spec.block`):
``drives`` maps ``hda`` .. ``hdd`` to them, for the IDE controller. An
image it cannot open stops it. It watches each CD-ROM drive's ``params``
and, in a pass of its main loop after ``xm block-configure`` wrote a new
one, changes the medium (:func:`spec.dm_config.take_media_changes`). When
it stops, writable images are flushed and every image closed.

The VNC display (Xen 3.0.4's ``vnc.c``; ``vnc = 1`` in the xm config).
When its configuration asks for one (:mod:`spec.dm_config`), qemu-dm takes
the password from XenStore (:func:`spec.dm_config.take_vnc_password`),
asks the host's VNC back end (``vnc_backend``, the tool that owns the
sockets: :mod:`hvmspec.vnc_display`) to listen on the configured address
and display (or the first free display, for ``-vncunused``) and show its
VGA's picture, and publishes
the port it got (:func:`spec.dm_config.publish_vnc_port`) before it
announces itself; an address that cannot be listened on stops qemu-dm
(:class:`spec.xend.DeviceModelError`). A person's input reaches the model
only at one point of each pass of the main loop, as the live serial line's
does: the console's ``take()`` gives what arrived since the last pass, in
order, each item ``("keys", codes)`` (make or break bytes in scan-code set
2, for :meth:`spec.devices.kbc.Kbc8042.send_keys`) or ``("mouse", dx, dy,
dz, buttons)`` (for :meth:`~spec.devices.kbc.Kbc8042.send_mouse`, which
drops movement the guest has not enabled). The console is closed when
qemu-dm stops.
"""

from __future__ import annotations

from typing import Callable, Protocol

from spec import dm_config, ioreq, irq, platform, trace
from spec.xs_client import XsClient
from spec.devices import MmioBus, PortBus
from spec.mapcache import Mapcache
from spec.devices.acpi import AcpiPm, Gpe0Block
from spec.devices.debugport import DebugPorts, ShutdownPort
from spec.devices.dma import Dma8237
from spec.devices.kbc import Kbc8042, Port92
from spec.devices.ide import IdeController, IdeMedium
from spec.devices.pci import PciHost
from spec.devices.cmos import Cmos
from spec.devices.testdev import TestDevice
from spec.devices.uart import Uart16550
from spec.devices.vga import (PORT_RANGES, REFRESH_NS, WINDOW_BASE, WINDOW_SIZE, Vga,
                              VgaLinear, VgaPorts, VgaWindow)


class GuestMemoryMap(Protocol):
    """qemu-dm's mapping of the guest's memory: the mapcache
    (:mod:`spec.mapcache`), or all of it mapped at start-up (``map_everything``)."""

    def read(self, gpa: int, length: int) -> bytes: ...

    def write(self, gpa: int, data: bytes) -> None: ...


class QemuDmHost(Protocol):
    """What qemu-dm asks of Xen, through libxc."""

    def bind_interdomain(self, remote_dom: int, remote_port: int) -> int: ...

    def take_pending(self, port: int) -> bool: ...

    def notify(self, port: int) -> None: ...

    def shutdown(self, domid: int, reason: int, by: str) -> None: ...

    def clock_ns(self) -> int: ...

    def move_pm_timer(self, port: int) -> None: ...

    def map_vram(self, gpa: int, buffer) -> None: ...

    def unmap_vram(self, gpa: int, length: int) -> None: ...

    def track_dirty_vram(self, first_pfn: int, nr: int) -> int: ...

    def dirty_vram_pending(self) -> bool: ...

    def frames(self, gpa: int, length: int) -> int: ...


def _script_start(source) -> bytes:
    """What a serial script types before any output (its sends before the
    first ``expect``): COM1's input from the start, as ``--serial-input``'s."""
    start = getattr(source, "start", None)
    return start() if start is not None else b""


class QemuDm:
    """The device model of domain ``domid``."""

    def __init__(self, domid: int, xs: XsClient, iopage: ioreq.SharedIopage,
                 memory: GuestMemoryMap, host: QemuDmHost,
                 emit: Callable[[trace.Event], None],
                 lines: irq.SharedLines | None = None, irq_port: int | None = None,
                 serial_input: bytes = b"", serial_source=None, vnc_backend=None,
                 vga_rom: bytes | None = None,
                 drives: dict[str, IdeMedium] | None = None) -> None:
        self.domid = domid
        #: a live line into COM1 (the user's terminal): ``read()`` gives the
        #: bytes that arrived since the last call, without waiting
        self.serial_source = serial_source
        #: the configuration xend wrote to XenStore (:mod:`spec.dm_config`)
        self.config = config = dm_config.read_device_model(xs, domid)
        self.iopage = iopage
        self.memory = memory
        #: how qemu-dm reaches guest memory (:mod:`spec.mapcache`)
        self.mapcache = Mapcache(config.memory_bytes, bits=config.bits,
                                 budget=config.mapcache_budget, legacy=config.map_everything,
                                 emit=emit, frames=host.frames)
        self.host = host
        self.emit = emit
        self.lines = lines if lines is not None else irq.SharedLines()
        self.send_event = False
        self.bus = PortBus(emit)
        self.uart = Uart16550("com1", emit, irq=lambda level: self.set_irq(platform.IRQ_COM1, level),
                              clock=host.clock_ns,
                              input=serial_input + _script_start(serial_source))
        # a serial script answers COM1's output as it leaves
        self.uart.responder = getattr(serial_source, "on_output", None)
        if config.serial:
            self.bus.register(platform.COM1_BASE, 8, self.uart)
        self.acpi = AcpiPm(self._request_shutdown, host.clock_ns)
        self.bus.register(platform.ACPI_PM1A_EVT_BLK, 12, self.acpi)
        self.pm_at = platform.ACPI_PM1A_EVT_BLK
        self.gpe0 = Gpe0Block()
        self.bus.register(platform.ACPI_GPE0_BLK, platform.ACPI_GPE0_BLK_LEN, self.gpe0)
        self.mmio = MmioBus(emit)
        self.vga = Vga(host) if config.vga else None
        self.lfb: VgaLinear | None = None
        if self.vga is not None:
            for base, count in PORT_RANGES:
                self.bus.register(base, count, VgaPorts(self.vga, base))
            self.mmio.register(WINDOW_BASE, WINDOW_SIZE, VgaWindow(self.vga))
            self.lfb = VgaLinear(self.vga)
        self.display_period = 0
        self.kbc = Kbc8042(lambda level: self.set_irq(platform.IRQ_KBD, level),
                           lambda: self._request_shutdown(platform.SHUTDOWN_REBOOT),
                           lambda level: self.set_irq(platform.IRQ_MOUSE, level))
        self.bus.register(platform.KBC_DATA_PORT, 1, self.kbc)
        self.bus.register(platform.KBC_STATUS_PORT, 1, _Offset(self.kbc, 4))
        self.bus.register(platform.PORT_92, 1, Port92(
            self.kbc.a20, lambda: self._request_shutdown(platform.SHUTDOWN_REBOOT)))
        self.dma = Dma8237()
        for port, count in platform.DMA_PORTS:
            self.bus.register(port, count, _Offset(self.dma, port))
        #: PIIX3's IDE function (:mod:`spec.devices.ide`): the drives ``hda`` ..
        #: ``hdd``; there with none, as in Xen
        #: the IDE drives' media by name (``hda`` .. ``hdd``), opened from
        #: the images the configuration names (:func:`spec.dm_config.open_drives`);
        #: ``drives`` given here (a test's media) are added to them
        self.drives = dm_config.open_drives(config.disks)
        self.drives.update(drives or {})
        self.ide = IdeController(self.drives, self.set_irq, _DmaMemory(self))
        for base, count, device in self.ide.port_ranges():
            self.bus.register(base, count, device)
        #: CMOS RAM (:mod:`spec.devices.cmos`): the bytes from 0x0E on, the
        #: accesses Xen's RTC passes on; made after the drives, whose
        #: geometries it holds (``cmos_init`` follows the IDE set-up in ``pc_init1``)
        self.cmos = Cmos(config.memory_bytes,
                         platform.RTC_DEFAULT_BASE if config.rtc_base is None
                         else config.rtc_base, config.boot, self.ide.bios_geometries())
        self.bus.register(platform.RTC_INDEX_PORT, 2, self.cmos)
        self.testdev = TestDevice(platform.TESTDEV_SIZE)
        self.pci = PciHost(self.mmio, self.testdev,
                           lambda: self._request_shutdown(platform.SHUTDOWN_REBOOT),
                           vga_bar=self._move_linear_frame_buffer,
                           vga_rom=vga_rom if self.vga is not None else None,
                           ide_bar=self._move_bus_masters, pm_base=self._move_pm_block)
        self.bus.register(platform.PCI_CONFIG_ADDRESS, 8, self.pci)
        for base in (platform.BIOS_DEBUG_BASE, platform.VGABIOS_DEBUG_BASE):
            self.bus.register(base, platform.DEBUG_PORTS_LEN, DebugPorts(base, emit))
        self.bus.register(platform.BOCHS_SHUTDOWN_PORT, 1, ShutdownPort(
            lambda: self._request_shutdown(platform.SHUTDOWN_POWEROFF)))
        self.shutdown_requested: int | None = None
        self.xs = xs
        #: CD-ROM drives whose medium ``xm block-configure`` can change
        self.changeable = tuple(d for d in config.disks if d.kind == "cdrom")
        dm_config.watch_media(xs, self.changeable)
        #: the VNC display's input and its server (module docstring), or None
        try:
            self.console = self._open_vnc(xs, vnc_backend) if config.vnc_display is not None \
                else None
        except dm_config.DeviceModelError:
            for medium in self.drives.values():     # qemu-dm exits: its images let go
                medium.close()
            raise
        self.local_ports = [host.bind_interdomain(domid, iopage.read(v).vp_eport)
                            for v in range(config.vcpus)]
        self.irq_port = host.bind_interdomain(domid, irq_port) if irq_port is not None else None
        dm_config.announce(xs, domid)

    def _move_linear_frame_buffer(self, base: int | None) -> None:
        """The VGA's BAR 0 moved: its trapped accesses are now at ``base``."""
        if self.lfb is None:
            return
        self.mmio.unregister(self.lfb)
        if base is not None:
            self.mmio.register(base, self.vga.registers.vram_size, self.lfb)
        self.vga.set_linear_base(base)

    def _move_pm_block(self, base: int) -> bool:
        """PMBA and PMREGMISC point the PIIX4 PM block at ``base``
        (:mod:`spec.devices.pci`): unless its 12 ports overlap another
        device's, the PM1a registers move there and Xen is asked to move its
        PM timer to ``base + 8``. Whether it moved."""
        if any(self.bus.claim(port) not in (None, (self.pm_at, self.acpi))
               for port in range(base, base + 12)):
            return False
        self.bus.unregister(self.acpi)
        self.bus.register(base, 12, self.acpi)
        self.pm_at = base
        self.host.move_pm_timer(base + 8)
        return True

    def _move_bus_masters(self, base: int | None) -> None:
        """The IDE function's BAR 4 moved (or its I/O decode changed): its
        bus-master ports are now at ``base`` on the port bus."""
        self.ide.move_bus_masters(self.bus, base)

    def _open_vnc(self, xs: XsClient, backend):
        config = self.config
        if backend is None:
            raise dm_config.DeviceModelError("qemu-dm: the configuration asks for a VNC "
                                             "display, and this host serves none")
        console = backend(self.domid, config.vnc_listen, config.vnc_display,
                          config.vnc_unused, dm_config.take_vnc_password(xs, self.domid),
                          vga=self.vga)
        dm_config.publish_vnc_port(xs, self.domid, console.port)
        return console

    def set_irq(self, line: int, level: int) -> None:
        """A device drives ISA line ``line`` to ``level``."""
        self.emit(trace.IrqLevel(irq=line, level=int(level)))
        if self.lines.set_irq(line, level):
            self.send_event = True

    def next_deadline(self) -> int | None:
        """The earliest timer deadline of the devices, or None."""
        frame = self.vga.next_refresh(self.display_period) if self.vga is not None else None
        times = [t for t in (self.uart.next_deadline(), frame) if t is not None]
        return min(times, default=None)

    def run_timers(self) -> bool:
        """Run the timers that are due; True if one was."""
        now, fired = self.host.clock_ns(), False
        rx = self.uart.next_deadline()
        if rx is not None and now >= rx:
            self.uart.expire(now)
            fired = True
        if now // REFRESH_NS > self.display_period:
            self.display_period = now // REFRESH_NS
            fired |= self.refresh_display()
        return fired

    def refresh_display(self) -> bool:
        """The display timer (:mod:`spec.devices.vga`); True if the screen changed."""
        if self.vga is None:
            return False
        update = self.vga.refresh()
        if update is not None:
            self.emit(update)
        return update is not None

    def poll(self) -> bool:
        """One pass of the main loop; True if there was anything to do."""
        worked = False
        if self.serial_source is not None:
            typed = self.serial_source.read()
            if typed:
                self.uart.feed(typed)
                worked = True
        if self.console is not None:
            for item in self.console.take():
                if item[0] == "keys":
                    self.kbc.send_keys(item[1])
                else:
                    self.kbc.send_mouse(*item[1:])
                worked = True
        for vcpu, port in enumerate(self.local_ports):
            if self.host.take_pending(port):
                self.handle_ioreq(vcpu, port)
                worked = True
        worked |= self.run_timers()
        if self.changeable:
            for name in dm_config.take_media_changes(self.xs, self.changeable, self.drives):
                self.ide.medium_changed(name)
                worked = True
        if self.send_event and self.irq_port is not None:
            self.send_event = False
            self.host.notify(self.irq_port)
            worked = True
        if self.shutdown_requested is not None:
            reason, self.shutdown_requested = self.shutdown_requested, None
            self.host.shutdown(self.domid, reason, "qemu-dm")
            worked = True
        return worked

    def handle_ioreq(self, vcpu: int, port: int) -> None:
        state = self.iopage.state(vcpu)
        accept = ioreq.dm_accept(state)
        if not accept.enabled:
            return
        self.iopage.set_state(vcpu, accept.state)
        req = self.iopage.read(vcpu)
        self._transition(vcpu, state, accept.state, req)
        data = self.perform(req)
        if req.dir == ioreq.IOREQ_READ and not req.data_is_ptr:
            self.iopage.set_data(vcpu, data)
        respond = ioreq.dm_respond(accept.state)
        self.iopage.set_state(vcpu, respond.state)
        self._transition(vcpu, accept.state, respond.state, self.iopage.read(vcpu))
        self.host.notify(port)

    def perform(self, req: ioreq.Ioreq) -> int:
        """Step 2: carry out every repetition; returns the datum of a
        by-value read."""
        if req.type == ioreq.IOREQ_TYPE_PIO:
            read, write = self.bus.read, self.bus.write
            target = lambda i: req.addr                                  # noqa: E731
        elif req.type == ioreq.IOREQ_TYPE_COPY:
            read, write = self.mmio.read, self.mmio.write
            target = lambda i: (req.addr + i * step) & 0xFFFFFFFFFFFFFFFF  # noqa: E731
        elif req.type == ioreq.IOREQ_TYPE_INVALIDATE:
            self.mapcache.invalidate_all()
            return req.data
        else:
            return (1 << 64) - 1
        data = req.data
        step = -req.size if req.df else req.size
        windows = self._map_buffer(req) if req.data_is_ptr and req.count else []
        for i in range(req.count):
            if req.data_is_ptr:
                gpa = (req.data + i * step) & 0xFFFFFFFFFFFFFFFF
                if req.dir == ioreq.IOREQ_WRITE:
                    value = int.from_bytes(self.memory.read(gpa, req.size), "little")
                    write(target(i), req.size, value)
                else:
                    value = read(target(i), req.size)
                    self.memory.write(gpa, value.to_bytes(req.size, "little"))
            elif req.dir == ioreq.IOREQ_WRITE:
                write(target(i), req.size, data & ((1 << 8 * req.size) - 1))
            else:
                data = read(target(i), req.size)
        for slot in windows:
            self.mapcache.unlock(slot)
        return data

    def _map_buffer(self, req: ioreq.Ioreq) -> list[int]:
        """Map and lock the buckets of the guest buffer a ``data_is_ptr``
        request copies through (Xen never splits one across a page, so it
        lies in one bucket); returns the locked windows."""
        span = req.count * req.size
        low = req.data - (span - req.size) if req.df else req.data
        windows = []
        for bucket in self.mapcache.buckets_of(low, span):
            slot, _ = self.mapcache.map(bucket)
            self.mapcache.lock(slot)
            self.mapcache.check(bucket)
            windows.append(slot)
        return windows

    def stop(self) -> None:
        """qemu-dm exits with its domain: a last display refresh, its drives'
        images flushed and closed, then its mapcache report and how many
        accesses no device claimed."""
        self.refresh_display()
        for medium in self.drives.values():
            medium.close()
        if self.console is not None:
            self.console.close()
        self.emit(self.mapcache.summary())
        self.emit(trace.DeviceStats(unclaimed_reads=self.bus.unclaimed_reads,
                                    unclaimed_writes=self.bus.unclaimed_writes,
                                    mmio_unclaimed_reads=self.mmio.unclaimed_reads,
                                    mmio_unclaimed_writes=self.mmio.unclaimed_writes))

    def _request_shutdown(self, reason: int) -> None:
        if self.shutdown_requested is None:
            self.shutdown_requested = reason

    def _transition(self, vcpu: int, old: int, new: int, req: ioreq.Ioreq) -> None:
        self.emit(ioreq.transition_event(vcpu, "qemu-dm", old, new, req))


class _DmaMemory:
    """Guest memory as a bus master reaches it: each access maps and locks
    the mapcache buckets it touches for its duration, as qemu-dm's
    ``cpu_physical_memory_rw`` goes through the mapcache."""

    def __init__(self, dm: QemuDm) -> None:
        self.dm = dm

    def _lock(self, gpa: int, length: int) -> list[int]:
        cache, windows = self.dm.mapcache, []
        for bucket in cache.buckets_of(gpa, length):
            slot, _ = cache.map(bucket)
            cache.lock(slot)
            cache.check(bucket)
            windows.append(slot)
        return windows

    def _unlock(self, windows: list[int]) -> None:
        for slot in windows:
            self.dm.mapcache.unlock(slot)

    def read(self, gpa: int, length: int) -> bytes:
        windows = self._lock(gpa, length)
        try:
            return self.dm.memory.read(gpa, length)
        finally:
            self._unlock(windows)

    def write(self, gpa: int, data: bytes) -> None:
        windows = self._lock(gpa, len(data))
        try:
            self.dm.memory.write(gpa, data)
        finally:
            self._unlock(windows)


class _Offset:
    """A device seen at a further port range: accesses reach it at
    ``offset`` (the 8042's status port 0x64 is four ports after 0x60)."""

    def __init__(self, device, offset: int) -> None:
        self.device, self.offset = device, offset
        self.name, self.sizes = device.name, device.sizes

    def io_read(self, offset: int, size: int) -> int:
        return self.device.io_read(offset + self.offset, size)

    def io_write(self, offset: int, size: int, value: int) -> None:
        self.device.io_write(offset + self.offset, size, value)
