"""qemu-dm's devices, and the port-I/O bus that dispatches to them.

Room: the bus (which device claims which port, how an access is split into
the sizes a device accepts, what an unclaimed port does) and, one module per
device, the devices. Imports :mod:`spec.trace`.

An access reaches a device as ``io_read(offset, size)`` or
``io_write(offset, size, value)``, with ``offset`` relative to the device's
first port. A device lists the access sizes it implements; a wider access is
split into accesses of the device's widest size, lowest port first (as
QEMU's ioport layer does for a device registered only for bytes). A port no
device claims behaves as an empty ISA bus: reads return all ones, writes are
dropped, and both are traced with ``device = None``. A word that starts at an
unclaimed port followed by a claimed one is split into its two bytes, as
qemu-dm's ``default_ioport_readw``/``writew`` (QEMU 0.8) split it, so that
the claimed port gets its byte: a word written to port 0x80 writes DMA page
register 0x81. (A dword there stays one unclaimed access: QEMU 0.8's
``default_ioport_readl`` returns all-ones without splitting.)

The MMIO bus (:class:`MmioBus`) dispatches by guest-physical address in the
same way: ``io_read(offset, size)`` and ``io_write(offset, size, value)`` on
the device that claims the address, all-ones and dropped writes where none
does. An access not wholly inside one device's range is unclaimed. A
device can be moved (a PCI BAR written; on the port bus too): :meth:`MmioBus.unregister` then
:meth:`MmioBus.register` at the new place. Both buses count the accesses
no device claimed (qemu-dm reports them when it stops).
"""

from __future__ import annotations

from typing import Callable, Protocol

from spec import trace


class PortDevice(Protocol):
    name: str
    sizes: tuple[int, ...]

    def io_read(self, offset: int, size: int) -> int: ...

    def io_write(self, offset: int, size: int, value: int) -> None: ...


class PortBus:
    """The ISA port space (64 Ki ports) as qemu-dm sees it."""

    def __init__(self, emit: Callable[[trace.Event], None]) -> None:
        self.emit = emit
        self.ranges: list[tuple[int, int, PortDevice]] = []
        self.unclaimed_reads = self.unclaimed_writes = 0

    def register(self, base: int, length: int, device: PortDevice) -> None:
        for start, end, other in self.ranges:
            if base < end and start < base + length:
                raise ValueError(f"ports {base:#x}+{length} of {device.name} overlap {other.name}")
        self.ranges.append((base, base + length, device))

    def unregister(self, device: PortDevice) -> None:
        """``device`` leaves the ports it had (a PCI I/O BAR moved)."""
        self.ranges = [r for r in self.ranges if r[2] is not device]

    def claim(self, port: int) -> tuple[int, PortDevice] | None:
        for start, end, device in self.ranges:
            if start <= port < end:
                return start, device
        return None

    def read(self, port: int, size: int) -> int:
        value = 0
        for shift, part_port, part_size in self._parts(port, size):
            value |= self._access(part_port, part_size, "read", 0) << shift
        return value

    def write(self, port: int, size: int, value: int) -> None:
        for shift, part_port, part_size in self._parts(port, size):
            self._access(part_port, part_size, "write", (value >> shift) & ((1 << 8 * part_size) - 1))

    def _parts(self, port: int, size: int) -> list[tuple[int, int, int]]:
        claimed = self.claim(port)
        if claimed is None:
            if size == 2 and self.claim((port + 1) & 0xFFFF) is not None:
                return [(0, port, 1), (8, (port + 1) & 0xFFFF, 1)]
            return [(0, port, size)]
        widest = max((s for s in claimed[1].sizes if s <= size), default=1)
        if widest >= size:
            return [(0, port, size)]
        return [(8 * i, (port + i) & 0xFFFF, widest) for i in range(0, size, widest)]

    def _access(self, port: int, size: int, direction: str, value: int) -> int:
        claimed = self.claim(port)
        if claimed is None:
            if direction == "read":
                self.unclaimed_reads += 1
                value = (1 << 8 * size) - 1
            else:
                self.unclaimed_writes += 1
            self.emit(trace.DeviceIo(device=None, space="pio", addr=port, size=size,
                                     dir=direction, data=value))
            return value
        base, device = claimed
        if direction == "read":
            value = device.io_read(port - base, size) & ((1 << 8 * size) - 1)
        self.emit(trace.DeviceIo(device=device.name, space="pio", addr=port, size=size,
                                 dir=direction, data=value))
        if direction == "write":
            device.io_write(port - base, size, value)
        return value


class MmioBus:
    """The guest-physical MMIO space as qemu-dm sees it."""

    def __init__(self, emit: Callable[[trace.Event], None]) -> None:
        self.emit = emit
        self.ranges: list[tuple[int, int, PortDevice]] = []
        self.unclaimed_reads = self.unclaimed_writes = 0

    def register(self, base: int, length: int, device: PortDevice) -> None:
        for start, end, other in self.ranges:
            if base < end and start < base + length:
                raise ValueError(f"MMIO {base:#x}+{length} of {device.name} overlaps {other.name}")
        self.ranges.append((base, base + length, device))

    def unregister(self, device: PortDevice) -> None:
        self.ranges = [r for r in self.ranges if r[2] is not device]

    def _claim(self, addr: int, size: int) -> tuple[int, PortDevice] | None:
        for start, end, device in self.ranges:
            if start <= addr and addr + size <= end:
                return start, device
        return None

    def read(self, addr: int, size: int) -> int:
        claimed = self._claim(addr, size)
        if claimed is None:
            self.unclaimed_reads += 1
            value = (1 << 8 * size) - 1
            name = None
        else:
            value = claimed[1].io_read(addr - claimed[0], size) & ((1 << 8 * size) - 1)
            name = claimed[1].name
        self.emit(trace.DeviceIo(device=name, space="mmio", addr=addr, size=size,
                                 dir="read", data=value))
        return value

    def write(self, addr: int, size: int, value: int) -> None:
        claimed = self._claim(addr, size)
        if claimed is None:
            self.unclaimed_writes += 1
        self.emit(trace.DeviceIo(device=claimed[1].name if claimed else None, space="mmio",
                                 addr=addr, size=size, dir="write", data=value))
        if claimed is not None:
            claimed[1].io_write(addr - claimed[0], size, value)
