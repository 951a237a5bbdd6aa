"""The keyboard controller (Intel 8042), as qemu-dm emulates it.

Room: the controller at ports 0x60 (data) and 0x64 (status and command),
its command byte, its output port and the system reset it can pulse.
Sources: the IBM PC/AT Technical Reference (keyboard controller), the
Intel 8042/UPI-41 data sheet, and QEMU's ``hw/input/pckbd.c`` (the
controller of Xen's qemu-dm). Imports :mod:`spec.platform`.

Status register (read at 0x64); reset value 0x18, as QEMU's ``kbd_reset``:

====  =======================================================================
bit   meaning
====  =======================================================================
0     OBF: the output buffer holds a byte for the guest (cleared by reading 0x60)
1     IBF: the input buffer is full; always 0 (the controller takes every
      byte at once)
2     system flag: 0 at power-on, 1 after a successful self-test (0xAA)
3     A2: the last byte written was a command (0x64) rather than data (0x60)
4     keylock: 1 = keyboard not inhibited
5-7   auxiliary OBF, timeout, parity: 0
====  =======================================================================

Commands (written to 0x64; results appear in the output buffer):

=====  ====================================================================
0x20   read the command byte (reset value 0x03: keyboard and mouse
       interrupts enabled)
0x60   the next byte written to 0x60 is the command byte
0xA7   disable the auxiliary device (command byte bit 5 set)
0xA8   enable the auxiliary device (bit 5 cleared)
0xA9   auxiliary interface test: 0x00
0xAA   self-test: 0x55, and the status register's system flag is set
0xAB   keyboard interface test: 0x00
0xAD   disable the keyboard (command byte bit 4 set)
0xAE   enable the keyboard (bit 4 cleared)
0xD0   read the output port
0xD1   the next byte written to 0x60 is the output port
0xF0+  pulse output port bits 3:0 low for those bits of the command that
       are 0: 0xFE (and any even one) pulses bit 0, the system reset
=====  ====================================================================

Output port: reset value 0xCF (QEMU: ``KBD_OUT_RESET | KBD_OUT_A20 |
KBD_OUT_ONES``). Bit 0 = 0 resets the system: qemu-dm asks Xen to shut the
domain down with reason *reboot* (``SHUTDOWN_reboot``; Xen 3.x qemu-dm's
``qemu_system_reset_request`` ends in ``xc_domain_shutdown``), and xend acts
on its ``on_reboot``. Bit 1 is the A20 gate: stored and read back, but
address line 20 is **not masked** in this model (the guest always sees all
of memory, as with A20 enabled).

Interrupts. When the controller puts a byte in the output buffer and the
command byte's bit 0 is set, it raises IRQ1 (QEMU's ``kbd_update_irq``);
reading 0x60 empties the buffer and lowers IRQ1. Reading 0x60 with the
buffer empty returns the last byte again. A byte written to 0x60 with no
command pending is for the keyboard itself, which is not modelled: it is
dropped (the model has no keyboard input).
"""

from __future__ import annotations

from typing import Callable

STATUS_OBF, STATUS_SYS, STATUS_A2, STATUS_UNLOCKED = 0x01, 0x04, 0x08, 0x10
MODE_KBD_INT, MODE_DISABLE_KBD, MODE_DISABLE_AUX = 0x01, 0x10, 0x20
OUT_RESET, OUT_A20 = 0x01, 0x02
RESET_STATUS = STATUS_A2 | STATUS_UNLOCKED      # 0x18
RESET_MODE = 0x03
RESET_OUTPORT = 0xCF


class Kbc8042:
    """The 8042 of one domain; ``reset`` asks for a system reset."""

    sizes = (1,)

    def __init__(self, set_irq: Callable[[int], None], reset: Callable[[], None]) -> None:
        self.name = "kbc"
        self.set_irq = set_irq
        self.reset = reset
        self.status = RESET_STATUS
        self.mode = RESET_MODE
        self.outport = RESET_OUTPORT
        self.output = 0
        self.pending: int | None = None      # the command waiting for its data byte
        self.irq_level = 0

    def _put(self, value: int) -> None:
        self.output = value
        self.status |= STATUS_OBF
        self._sync_irq()

    def _sync_irq(self) -> None:
        level = int(bool(self.status & STATUS_OBF and self.mode & MODE_KBD_INT))
        if level != self.irq_level:
            self.irq_level = level
            self.set_irq(level)

    def io_read(self, offset: int, size: int) -> int:
        if offset == 4:
            return self.status
        if offset != 0:
            return 0xFF
        self.status &= ~STATUS_OBF
        self._sync_irq()
        return self.output

    def io_write(self, offset: int, size: int, value: int) -> None:
        if offset == 4:
            self.status |= STATUS_A2
            self._command(value)
        elif offset == 0:
            self.status &= ~STATUS_A2
            self._data(value)

    def _command(self, value: int) -> None:
        self.pending = None
        if value == 0x20:
            self._put(self.mode)
        elif value in (0x60, 0xD1):
            self.pending = value
        elif value == 0xA7:
            self.mode |= MODE_DISABLE_AUX
        elif value == 0xA8:
            self.mode &= ~MODE_DISABLE_AUX
        elif value in (0xA9, 0xAB):
            self._put(0x00)
        elif value == 0xAA:
            self.status |= STATUS_SYS
            self._put(0x55)
        elif value == 0xAD:
            self.mode |= MODE_DISABLE_KBD
        elif value == 0xAE:
            self.mode &= ~MODE_DISABLE_KBD
        elif value == 0xD0:
            self._put(self.outport)
        elif value >= 0xF0 and not value & OUT_RESET:
            self.reset()
        # other commands are ignored, as QEMU logs and ignores them

    def _data(self, value: int) -> None:
        command, self.pending = self.pending, None
        if command == 0x60:
            self.mode = value
            self._sync_irq()
        elif command == 0xD1:
            self.outport = value
            if not value & OUT_RESET:
                self.reset()
