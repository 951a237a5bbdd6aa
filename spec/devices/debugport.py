"""The Bochs BIOS debug ports: the firmware log, as qemu-dm gives it.

Room: the ports through which the firmware talks to whoever runs it (Xen
3.0.4's ``tools/ioemu/hw/pc.c``, ``bochs_bios_write``; QEMU's
``hw/char/debugcon.c`` for the read of 0x402). Imports :mod:`spec.platform`
and :mod:`spec.trace`.

qemu-dm registers two blocks of four ports, one for rombios (0x400-0x403)
and one for the LGPL VGA BIOS (0x500-0x503); :class:`DebugPorts` is one
block. What each access does is what Xen 3.0.4's I/O port table did with
it (``vl.c``: a handler registered for one width; a word access to a port
with only a byte handler is two byte accesses, the other way round nothing):

* a byte written to a *log port* (0x402 INFO_PORT and 0x403 DEBUG_PORT of
  rombios, which SeaBIOS's ``CONFIG_DEBUG_IO`` uses too; 0x500 and 0x503
  of the VGA BIOS) is a byte of the firmware log: a
  :class:`spec.trace.FirmwareLog` event;
* a word written to a *panic port* (0x400/0x401: rombios's ``HALT``
  macro writes its source line there; 0x501/0x502: the VGA BIOS's) is a
  :class:`spec.trace.FirmwarePanic` with that line;
* a word written to a log port is its two bytes, to that port and the
  next (a byte that falls on 0x404 or 0x504 reaches nobody); a byte written
  to a panic port (rombios's ``BX_PANIC`` writes 0 to 0x401 before it
  prints "FATAL:" on the screen) and any doubleword are dropped;
* a byte read of 0x402 returns :data:`spec.platform.DEBUGCON_READBACK`
  (0xE9), as QEMU's ``isa-debugcon`` does: SeaBIOS reads the port back
  and logs only if it sees 0xE9. Every other read returns all ones (a word
  read: two byte reads; a doubleword: 0xFFFFFFFF).

Differences from Xen 3.0.4's qemu-dm, on purpose:

* Xen 3.0.4's qemu-dm had no read handler here: a read of 0x402 gave 0xFF,
  and SeaBIOS (which Xen of that time did not load) would have turned its
  log off. The model answers as QEMU does, so that SeaBIOS's log is seen
  and can be compared with QEMU's.
* On a panic word Xen 3.0.4's qemu-dm printed "BIOS panic at rombios.c,
  line N" and exited (status 1), leaving the domain waiting for the
  response to its ioreq for ever. The model records the panic and carries
  on (the firmware then halts or reports on its screen), so that a run
  shows what the firmware did next and ends with a report instead of a
  hang.
* qemu-dm printed the log bytes only when built with ``DEBUG_BIOS``; the
  model always traces them. Modern QEMU has dropped the ports 0x400-0x403
  and 0x500-0x503 from its PC: a log needs ``-device isa-debugcon``, and a
  write to 0x400/0x401 goes nowhere.

Port 0xE9 (Bochs's and QEMU's usual debug console) is not here: Xen 3.0.4
printed a byte written there on its own console (``hvm_print_line``) and
then sent the ioreq on to qemu-dm, which has no device at 0xE9
(:mod:`spec.vmm`).

Port 0x8900 (:class:`ShutdownPort`) is the same function's Bochs power-off:
the eight bytes "Shutdown" written there one after the other make qemu-dm
end the domain as an ACPI S5 request does (``qemu_system_shutdown_request``,
then ``destroy_hvm_domain``: ``xc_domain_shutdown`` with reason
*poweroff*). A byte that is not the next one of the string starts the
match again from its beginning (the byte itself is not taken as a first
"S"); a word is two bytes, to 0x8900 and 0x8901 (no device), a doubleword
dropped; reads return all ones.
"""

from __future__ import annotations

from typing import Callable

from spec import platform, trace


class DebugPorts:
    """One block of four debug ports at ``base`` (0x400 or 0x500)."""

    sizes = (1, 2, 4)

    def __init__(self, base: int, emit: Callable[[trace.Event], None]) -> None:
        self.name = "debug_ports"
        self.base = base
        self.emit = emit

    def io_read(self, offset: int, size: int) -> int:
        if size == 4:
            return 0xFFFFFFFF
        value = 0
        for i in range(size):
            value |= self._read_byte(self.base + offset + i) << 8 * i
        return value

    def _read_byte(self, port: int) -> int:
        return platform.DEBUGCON_READBACK if port == platform.DEBUGCON_PORT else 0xFF

    def io_write(self, offset: int, size: int, value: int) -> None:
        port = self.base + offset
        if size == 2 and port in platform.BIOS_PANIC_PORTS + platform.VGABIOS_PANIC_PORTS:
            self.emit(trace.FirmwarePanic(port=port, line=value))
        elif size == 2:
            self._write_byte(port, value & 0xFF)
            self._write_byte(port + 1, value >> 8)
        elif size == 1:
            self._write_byte(port, value)

    def _write_byte(self, port: int, byte: int) -> None:
        if port in platform.FIRMWARE_LOG_PORTS:
            self.emit(trace.FirmwareLog(by="qemu-dm", port=port, byte=byte))


#: the string Bochs's power-off port waits for (``shutdown_str``)
SHUTDOWN_STRING = b"Shutdown"


class ShutdownPort:
    """Port 0x8900: "Shutdown", a byte at a time, powers the domain off."""

    sizes = (1, 2, 4)

    def __init__(self, power_off: Callable[[], None]) -> None:
        self.name = "debug_ports"
        self.power_off = power_off
        self.matched = 0            # bytes of the string seen so far

    def io_read(self, offset: int, size: int) -> int:
        return (1 << 8 * size) - 1

    def io_write(self, offset: int, size: int, value: int) -> None:
        if size == 4:
            return
        byte = value & 0xFF
        if byte != SHUTDOWN_STRING[self.matched]:
            self.matched = 0
            return
        self.matched += 1
        if self.matched == len(SHUTDOWN_STRING):
            self.matched = 0
            self.power_off()
