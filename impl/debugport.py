"""The Bochs BIOS debug ports for the impl engine: the firmware log.

Room: qemu-dm's two blocks of debug ports, rombios's at 0x400 and the VGA
BIOS's at 0x500. A byte to a log port (0x402, 0x403, 0x500, 0x503) is
traced as a byte of the log, a word to a panic port (0x400, 0x401, 0x501,
0x502) as a panic with its line number; a word to any other of them is two
bytes (port, port + 1), and the rest is dropped. A byte read of 0x402
answers 0xE9 (QEMU's isa-debugcon), any other read all ones. Port 0x8900
powers the domain off once it has been written "Shutdown", byte by byte.
Imports, for the interface, :mod:`spec.trace` and :mod:`spec.platform`.
"""

from __future__ import annotations

from spec import platform, trace

_LOG = frozenset(platform.FIRMWARE_LOG_PORTS)
_PANIC = frozenset(platform.BIOS_PANIC_PORTS + platform.VGABIOS_PANIC_PORTS)
_READBACK = platform.DEBUGCON_PORT, platform.DEBUGCON_READBACK


class DebugPorts:
    name, sizes = "debug_ports", (1, 2, 4)

    def __init__(self, base: int, emit) -> None:
        self.base, self.emit = base, emit

    def read(self, offset: int, size: int) -> int:
        if size == 4:
            return 0xFFFFFFFF
        port, answer = _READBACK
        first = self.base + offset
        lo = answer if first == port else 0xFF
        if size == 1:
            return lo
        return lo | (answer if first + 1 == port else 0xFF) << 8

    def write(self, offset: int, size: int, value: int) -> None:
        port = self.base + offset
        if size == 1:
            if port in _LOG:
                self.emit(trace.FirmwareLog.of(by="qemu-dm", port=port, byte=value))
        elif size == 2:
            if port in _PANIC:
                self.emit(trace.FirmwarePanic.of(port=port, line=value))
                return
            for at, byte in ((port, value & 0xFF), (port + 1, value >> 8)):
                if at in _LOG:
                    self.emit(trace.FirmwareLog.of(by="qemu-dm", port=at, byte=byte))


class ShutdownPort:
    """Bochs's power-off port 0x8900."""

    name, sizes = "debug_ports", (1, 2, 4)
    WORD = b"Shutdown"

    def __init__(self, power_off) -> None:
        self.power_off = power_off
        self.next = 0

    def read(self, offset: int, size: int) -> int:
        return 0xFFFFFFFF if size == 4 else (0xFF if size == 1 else 0xFFFF)

    def write(self, offset: int, size: int, value: int) -> None:
        if size == 4:
            return
        if value & 0xFF == self.WORD[self.next]:
            self.next += 1
            if self.next == 8:
                self.next = 0
                self.power_off()
        else:
            self.next = 0
