"""qemu-dm for the impl engine: the ioreq loop and the devices.

Room: the device model of one domain — taking ioreqs from the shared page,
performing them on the port bus (COM1's 16550 UART of :mod:`impl.uart`, ACPI PM1a, PM timer and GPE0,
the VGA of :mod:`impl.vga`, the CMOS RAM of :mod:`impl.cmos`, the 8042 and port 0x92 of
:mod:`impl.kbc`, PCI configuration of :mod:`impl.pci`, the DMA registers of :mod:`impl.dma`,
the firmware's debug ports of :mod:`impl.debugport`) or, for COPY requests, in MMIO space (the
test device's page of memory-like registers where its BAR0 puts it;
elsewhere an empty bus), dropping every mapcache window for an INVALIDATE
request (the guest gave memory back), responding, asking Xen for a power-off or a
reboot, and counting the accesses no device claimed; with a VNC display
(:mod:`spec.qemu_dm` says how), what the person types and points goes to the
8042 at one point of each pass of the main loop. The PIT and port 0x61
are Xen's (:mod:`impl.timer`, driven by :mod:`impl.xen`), not qemu-dm's, as are the RTC's
clock registers 0x00-0x0D and IRQ8 (:mod:`impl.rtc`). Imports :mod:`impl.xen` (the
page layout and state numbers) and, for the interface, :mod:`spec.trace` and
:mod:`spec.platform`.
"""

from __future__ import annotations

from typing import Callable

from spec import dm_config, platform, trace
from impl.debugport import DebugPorts, ShutdownPort
from impl.dma import Dma, DmaPorts
from impl.ide import CommandBlock, Ide
from impl.kbc import Kbc, Port92, StatusPort
from impl.mapcache import Mapcache
from impl.pci import Pci
from impl.cmos import Cmos
from impl.uart import Uart
from impl.vga import PERIOD, PORT_RANGES, WINDOW, Vga, VgaPortRange
from impl.xen import (COPY, INPROCESS, INVALIDATE, PIO, READ, READY, RESP_READY, WRITE, Emit,
                      IoreqPage, IrqLines)

PM_TIMER_HZ = 3_579_545


class AcpiPm:
    """PM1a status/enable/control and the PM timer, as 12 bytes of registers."""

    name, sizes = "acpi_pm", (1, 2, 4)

    def __init__(self, power_off: Callable[[], None], clock_ns: Callable[[], int]) -> None:
        self.power_off = power_off
        self.clock_ns = clock_ns
        self.block = bytearray(8)       # STS(2) EN(2) CNT(2) reserved(2)
        self.block[4] = platform.PM1_CNT_SCI_EN         # in ACPI mode from reset

    def read(self, offset: int, size: int) -> int:
        ticks = self.clock_ns() * PM_TIMER_HZ // 1_000_000_000 & 0xFFFFFFFF
        regs = bytes(self.block) + ticks.to_bytes(4, "little")
        return int.from_bytes(regs[offset:offset + size].ljust(size, b"\xff"), "little")

    def write(self, offset: int, size: int, value: int) -> None:
        for i in range(size):
            at, byte = offset + i, value >> 8 * i & 0xFF
            if at < 2:
                self.block[at] &= ~byte & 0xFF          # write one to clear
            elif at < 6:
                self.block[at] = byte
        if offset < 6 and offset + size > 4:      # PM1a_CNT written
            cnt = int.from_bytes(self.block[4:6], "little")
            if cnt & platform.PM1_CNT_SLP_EN:
                cnt &= ~platform.PM1_CNT_SLP_EN
                self.block[4:6] = cnt.to_bytes(2, "little")
                slp_typ = (cnt & platform.PM1_CNT_SLP_TYP_MASK) >> platform.PM1_CNT_SLP_TYP_SHIFT
                if slp_typ in platform.SLP_TYP_POWEROFF:
                    self.power_off()


class Gpe0:
    """GPE0_STS (write 1 to clear) and GPE0_EN, two bytes each, all zero from
    reset; nothing here sets a status bit, so they raise no SCI."""

    name, sizes = "acpi_gpe0", (1,)

    def __init__(self) -> None:
        self.regs = bytearray(platform.ACPI_GPE0_BLK_LEN)

    def read(self, offset: int, size: int) -> int:
        return self.regs[offset]

    def write(self, offset: int, size: int, value: int) -> None:
        if offset < platform.ACPI_GPE0_BLK_LEN // 2:
            self.regs[offset] &= ~value & 0xFF
        else:
            self.regs[offset] = value & 0xFF


def _script_start(source) -> bytes:
    start = getattr(source, "start", None)     # a serial script's first sends
    return start() if start is not None else b""


class QemuDm:
    """The device model of one domain."""

    def __init__(self, domid: int, xs, page: IoreqPage, ram, libxc, emit: Emit,
                 lines: IrqLines, irq_port: int, serial_input: bytes = b"",
                 serial_source=None, vnc_backend=None,
                 vga_rom: bytes | None = None, drives: dict | None = None) -> None:
        self.domid = domid
        self.source = serial_source     # a live line into COM1, or None
        conf = self.config = dm_config.read_device_model(xs, domid)
        self.page = page
        self.ram = ram                  # read(gpa, n) / write(gpa, bytes)
        self.mapcache = Mapcache(conf.memory_bytes, conf.bits, conf.mapcache_budget,
                                 conf.map_everything, emit, libxc.frames)
        self.libxc = libxc              # bind / take / notify / shutdown / clock_ns
        self.emit = emit
        self.lines = lines
        self.kick = False
        clock = libxc.clock_ns
        self.uart = Uart(emit, lambda level: self.set_irq(platform.IRQ_COM1, level), clock,
                         serial_input + _script_start(serial_source))
        self.uart.responder = getattr(serial_source, "on_output", None)
        self._ports: dict | None = None          # port -> (base, device), from devices
        self._parts: dict = {}                   # (device, access size) -> the size it takes
        self.acpi = AcpiPm(self._power_off, clock)
        self.devices = [(platform.ACPI_PM1A_EVT_BLK, platform.ACPI_PM1A_EVT_BLK + 12,
                         self.acpi),
                        (platform.ACPI_GPE0_BLK,
                         platform.ACPI_GPE0_BLK + platform.ACPI_GPE0_BLK_LEN, Gpe0())]
        if conf.serial:
            self.devices.append((platform.COM1_BASE, platform.COM1_BASE + 8, self.uart))
        self.vga = Vga(libxc) if conf.vga else None
        if self.vga is not None:
            self.devices += [(lo, hi, VgaPortRange(self.vga, lo)) for lo, hi in PORT_RANGES]
        self.frame_period = 0
        kbc = self.kbc = Kbc(lambda level: self.set_irq(platform.IRQ_KBD, level), self._reboot,
                             lambda level: self.set_irq(platform.IRQ_MOUSE, level))
        self.drives = dm_config.open_drives(conf.disks)     # name -> medium (spec.block)
        self.drives.update(drives or {})
        self.ide = Ide(self.drives, self.set_irq, self._guest_read, self._guest_write)
        self.cmos = Cmos(conf.memory_bytes,                 # after the drives it describes
                         platform.RTC_DEFAULT_BASE if conf.rtc_base is None else conf.rtc_base,
                         conf.boot, self.ide.cmos_drives())
        self.pci = Pci(self._testdev_moved, self._reboot,
                       self.vga.moved if self.vga is not None else lambda base: None,
                       vga_rom if self.vga is not None else None, self._ide_moved,
                       self._pm_moved)
        self.devices += self.ide.ports()
        self.devices += [(platform.RTC_INDEX_PORT, platform.RTC_INDEX_PORT + 2, self.cmos),
                         (platform.KBC_DATA_PORT, platform.KBC_DATA_PORT + 1, kbc),
                         (platform.KBC_STATUS_PORT, platform.KBC_STATUS_PORT + 1,
                          StatusPort(kbc)),
                         (platform.PORT_92, platform.PORT_92 + 1, Port92(kbc.a20, self._reboot)),
                         (platform.PCI_CONFIG_ADDRESS, platform.PCI_CONFIG_ADDRESS + 8, self.pci)]
        self.devices += [(base, base + platform.DEBUG_PORTS_LEN, DebugPorts(base, emit))
                         for base in (platform.BIOS_DEBUG_BASE, platform.VGABIOS_DEBUG_BASE)]
        self.devices.append((platform.BOCHS_SHUTDOWN_PORT, platform.BOCHS_SHUTDOWN_PORT + 1,
                             ShutdownPort(self._power_off)))
        dma = Dma()
        self.devices += [(lo, lo + n, DmaPorts(dma, lo)) for lo, n in platform.DMA_PORTS]
        self.testdev = bytearray(platform.TESTDEV_SIZE)     # memory-like registers
        self.testdev_base = self.pci.testdev_base
        self.unclaimed = [0, 0, 0, 0]       # pio reads, pio writes, mmio reads, mmio writes
        self.power_off_requested = False
        self.reboot_requested = False
        self.xs = xs
        self.changeable = tuple(d for d in conf.disks if d.kind == "cdrom")
        dm_config.watch_media(xs, self.changeable)
        self.console = None             # the VNC display's input, or None
        try:
            if conf.vnc_display is not None:
                if vnc_backend is None:
                    raise dm_config.DeviceModelError("qemu-dm: the configuration asks for a "
                                                     "VNC display, and this host serves none")
                self.console = vnc_backend(domid, conf.vnc_listen, conf.vnc_display,
                                           conf.vnc_unused,
                                           dm_config.take_vnc_password(xs, domid), vga=self.vga)
                dm_config.publish_vnc_port(xs, domid, self.console.port)
        except dm_config.DeviceModelError:
            for medium in self.drives.values():     # qemu-dm exits: its images let go
                medium.close()
            raise
        self.port = libxc.bind(domid, page.fields(0)[4])
        self.irq_port = libxc.bind(domid, irq_port)
        dm_config.announce(xs, domid)

    def stop(self) -> None:
        """qemu-dm exits with its domain: a last refresh, its images flushed
        and closed, then its mapcache report."""
        if self.vga is not None:
            self.vga.refresh(self.emit)
        for medium in self.drives.values():
            medium.close()
        if self.console is not None:
            self.console.close()
        self.emit(self.mapcache.summary())
        r, w, mr, mw = self.unclaimed
        self.emit(trace.DeviceStats(unclaimed_reads=r, unclaimed_writes=w,
                                    mmio_unclaimed_reads=mr, mmio_unclaimed_writes=mw))

    def _reboot(self) -> None:
        if not self.power_off_requested:
            self.reboot_requested = True

    def _testdev_moved(self, base: int | None) -> None:
        self.testdev_base = base

    def _ide_moved(self, base: int | None) -> None:
        """BAR 4 moved: the bus master's 16 ports follow (after every fixed
        device: those win where they overlap)."""
        self.devices = [d for d in self.devices if d[2] is not self.ide.bus_master]
        if base is not None:
            self.devices.append((base, base + platform.IDE_BMDMA_SIZE, self.ide.bus_master))
        self._ports = None
        self.ide.moved(base)

    def _pm_moved(self, base: int) -> bool:
        """PMBA moved the PM block: PM1a registers to ``base`` unless another
        device holds any of its 12 ports, Xen's PM timer to ``base + 8``."""
        hi = base + 12
        if any(lo < hi and base < end for lo, end, dev in self.devices if dev is not self.acpi):
            return False
        self.devices = [(base, hi, self.acpi) if d[2] is self.acpi else d for d in self.devices]
        self._ports = None
        self.libxc.move_pm_timer(base + 8)
        return True

    def _guest_read(self, gpa: int, n: int) -> bytes:
        """Bus-master DMA reads guest memory through the mapcache."""
        held = [self.mapcache.window(b) for b in self.mapcache.buckets(gpa, n)]
        data = self.ram.read(gpa, n)
        for w in held:
            self.mapcache.release(w)
        return data

    def _guest_write(self, gpa: int, data) -> None:
        held = [self.mapcache.window(b) for b in self.mapcache.buckets(gpa, len(data))]
        self.ram.write(gpa, bytes(data))
        for w in held:
            self.mapcache.release(w)

    def _power_off(self) -> None:
        if not self.reboot_requested:
            self.power_off_requested = True

    def set_irq(self, line: int, level: int) -> None:
        self.emit(trace.IrqLevel(irq=line, level=level))
        self.kick |= self.lines.drive(line, level)

    def deadline(self) -> int | None:
        due = self.uart.due()
        if self.vga is not None and self.vga.wants_refresh():
            frame = (self.frame_period + 1) * PERIOD
            if due is None or frame < due:
                due = frame
        return due

    def poll(self) -> bool:
        worked = False
        if self.source is not None:
            typed = self.source.read()
            if typed:
                self.uart.typed(typed)
                worked = True
        if self.console is not None:
            for item in self.console.take():
                if item[0] == "keys":
                    self.kbc.send_keys(item[1])
                else:
                    self.kbc.send_mouse(*item[1:])
                worked = True
        if self.libxc.take(self.port):
            worked = True
            if self.page.state(0) == READY:
                self._serve()
        now = self.libxc.clock_ns()
        uart_due = self.uart.due()
        if uart_due is not None and now >= uart_due:
            self.uart.timer(now)
            worked = True
        if now // PERIOD > self.frame_period:
            self.frame_period = now // PERIOD
            if self.vga is not None:
                worked |= self.vga.refresh(self.emit)
        if self.changeable:
            for name in dm_config.take_media_changes(self.xs, self.changeable, self.drives):
                self.ide.medium_changed(name)
                worked = True
        if self.kick:
            self.kick = False
            self.libxc.notify(self.irq_port)
            worked = True
        if self.power_off_requested:
            self.power_off_requested = False
            self.libxc.shutdown(self.domid, platform.SHUTDOWN_POWEROFF, "qemu-dm")
            worked = True
        if self.reboot_requested:
            self.reboot_requested = False
            self.libxc.shutdown(self.domid, platform.SHUTDOWN_REBOOT, "qemu-dm")
            worked = True
        return worked

    def _serve(self) -> None:
        page = self.page
        page.set_state(0, INPROCESS)
        self.emit(page.event(0, "qemu-dm", READY, INPROCESS))
        addr, data, count, size, _, _, ptr, direction, df, typ = page.fields(0)
        step = -size if df else size
        if typ not in (PIO, COPY):
            if typ == INVALIDATE:
                self.mapcache.invalidate_all()      # xen_invalidate_map_cache
            data = (1 << 64) - 1
            count = 0
        access = self._bus if typ == PIO else self._mmio
        held = []
        if ptr and count:
            span = count * size
            for bucket in self.mapcache.buckets(data - (span - size) if df else data, span):
                held.append(self.mapcache.window(bucket))
        # a write's data in guest memory, read at once where all of it is RAM
        # (the chunk lies in one page); element by element otherwise
        low = (data - (count - 1) * size if df else data) & 0xFFFFFFFFFFFFFFFF
        whole = (self.ram.read_all(low, count * size)
                 if ptr and direction == WRITE and count else None)
        first = 0
        if typ == PIO and ptr and count > 1 and not df and size > 1:
            claimed = self._claim(addr)
            if claimed is not None and claimed[0] == addr and isinstance(claimed[1],
                                                                         CommandBlock):
                first = self._ide_string(claimed[1], addr, size, count, data, direction, whole)
        for i in range(first, count):
            where = addr if typ == PIO else (addr + i * step) & 0xFFFFFFFFFFFFFFFF
            if ptr:
                gpa = (data + i * step) & 0xFFFFFFFFFFFFFFFF
                if direction == WRITE:
                    at = gpa - low
                    raw = whole[at:at + size] if whole is not None else self.ram.read(gpa, size)
                    access(where, size, WRITE, int.from_bytes(raw, "little"))
                else:
                    value = access(where, size, READ, 0)
                    self.ram.write(gpa, value.to_bytes(size, "little"))
            elif direction == WRITE:
                access(where, size, WRITE, data & ((1 << 8 * size) - 1))
            else:
                data = access(where, size, READ, 0)
        for w in held:
            self.mapcache.release(w)
        if direction == READ and not ptr:
            page.set_data(0, data)
        page.set_state(0, RESP_READY)
        self.emit(page.event(0, "qemu-dm", INPROCESS, RESP_READY))
        self.libxc.notify(self.port)

    def _ide_string(self, dev: CommandBlock, port: int, size: int, count: int, gpa: int,
                    direction: int, whole: bytes | None) -> int:
        """A ``rep insw``/``outsw`` (or dword) of the IDE data register: the
        drive's buffer moves a run at a time (each run ends where the
        transfer's end runs), with the trace of ``count`` single accesses.
        Returns how many elements it did (all of them, or none when the
        guest's buffer is not all RAM)."""
        ch, emit, name = dev.channel, self.emit, dev.name
        ram = self.ram
        if direction == WRITE and whole is None:
            return 0
        span = count * size
        if direction == READ and ram.read_all(gpa, span) is None:
            return 0
        fmt = "H" if size == 2 else "I"
        kind = "read" if direction == READ else "write"
        # the DeviceIo events of the single accesses, built from one template
        # (their cost is most of a run's)
        cls, new = trace.DeviceIo, object.__new__
        base = {"device": name, "space": "pio", "addr": port, "size": size, "dir": kind}
        done = 0
        while done < count:
            n = ch.data_run(size, count - done)
            nbytes = n * size
            if direction == READ:
                raw = ch.data_peek(nbytes)
                values = memoryview(raw).cast(fmt).tolist()
                for v in values[:-1]:
                    e = new(cls)
                    e.__dict__.update(base, data=v)
                    emit(e)
                ram.write(gpa + done * size, raw)
                ch.data_advance(nbytes)
                e = new(cls)
                e.__dict__.update(base, data=values[-1])
                emit(e)
            else:
                raw = whole[done * size:done * size + nbytes]
                for v in memoryview(raw).cast(fmt).tolist():
                    e = new(cls)
                    e.__dict__.update(base, data=v)
                    emit(e)
                ch.data_poke(raw)
                ch.data_advance(nbytes)
            done += n
        return count

    def _mmio(self, addr: int, size: int, direction: int, value: int) -> int:
        """One MMIO access: the VGA's legacy window or linear frame buffer
        (trapped), the test device's page, or an empty bus."""
        name, kind = None, "read" if direction == READ else "write"
        vga = self.vga
        if vga is not None and WINDOW[0] <= addr and addr + size <= WINDOW[0] + WINDOW[1]:
            name = "vga"
            if direction == READ:
                value = vga.window_read(addr - WINDOW[0], size)
        elif (vga is not None and vga.lfb is not None and vga.lfb <= addr
              and addr + size <= vga.lfb + len(vga.vram)):
            name = "vga"
            if direction == READ:
                value = vga.linear_read(addr - vga.lfb, size)
        elif (self.pci.rom_base is not None and self.pci.rom_base <= addr
              and addr + size <= self.pci.rom_base + len(self.pci.rom)):
            name = "stdvga-rom"
            if direction == READ:
                at = addr - self.pci.rom_base
                value = int.from_bytes(self.pci.rom[at:at + size], "little")
        else:
            base = self.testdev_base
            offset = addr - base if base is not None else -1
            if 0 <= offset and offset + size <= platform.TESTDEV_SIZE:
                name = "testdev"
                if direction == READ:
                    value = int.from_bytes(self.testdev[offset:offset + size], "little")
            else:
                self.unclaimed[2 if direction == READ else 3] += 1
                if direction == READ:
                    value = (1 << 8 * size) - 1
        self.emit(trace.DeviceIo.of(device=name, space="mmio", addr=addr, size=size, dir=kind,
                                    data=value))
        if direction == WRITE and name == "testdev":
            offset = addr - self.testdev_base
            self.testdev[offset:offset + size] = value.to_bytes(size, "little")
        elif direction == WRITE and name == "vga":
            if WINDOW[0] <= addr < WINDOW[0] + WINDOW[1]:
                vga.window_write(addr - WINDOW[0], size, value)
            else:
                vga.linear_write(addr - vga.lfb, size, value)
        return value

    def _claim(self, port: int):
        """(base port, device) of the device that decodes ``port``, or None
        (a table built at the first access: the devices are fixed by then)."""
        ports = self._ports
        if ports is None:
            ports = self._ports = {}
            for lo, hi, dev in reversed(self.devices):      # the first in the list wins
                for p in range(lo, hi):
                    ports[p] = (lo, dev)
        return ports.get(port)

    def _bus(self, port: int, size: int, direction: int, value: int) -> int:
        """One access of ``size`` bytes, split for a device that takes only
        narrower ones, or a word into bytes where it starts unclaimed and
        reaches a device; unclaimed ports read all-ones and drop writes."""
        claimed = self._claim(port)
        if claimed is not None:
            part = self._parts.get((claimed[1], size))
            if part is None:
                part = self._parts[claimed[1], size] = max(
                    (s for s in claimed[1].sizes if s <= size), default=1)
            if part < size:
                out = 0
                for i in range(0, size, part):
                    out |= self._bus((port + i) & 0xFFFF, part, direction,
                                     value >> 8 * i & ((1 << 8 * part) - 1)) << 8 * i
                return out
        elif size == 2 and self._claim((port + 1) & 0xFFFF):
            # a word from an unclaimed port into a device: its bytes, one each
            return self._bus(port, 1, direction, value & 0xFF) | self._bus(
                (port + 1) & 0xFFFF, 1, direction, value >> 8) << 8
        kind = "read" if direction == READ else "write"
        if claimed is None:
            self.unclaimed[0 if direction == READ else 1] += 1
            if direction == READ:
                value = (1 << 8 * size) - 1
            self.emit(trace.DeviceIo.of(device=None, space="pio", addr=port, size=size,
                                     dir=kind, data=value))
            return value
        base, dev = claimed
        if direction == READ:
            value = dev.read(port - base, size) & ((1 << 8 * size) - 1)
        self.emit(trace.DeviceIo.of(device=dev.name, space="pio", addr=port, size=size,
                                 dir=kind, data=value))
        if direction == WRITE:
            dev.write(port - base, size, value)
        return value
