"""The 8042 keyboard controller for the impl engine's qemu-dm.

Room: ports 0x60/0x64 — status, command byte, output port, self-tests and
the reset line. Imports nothing of ``spec/``; the behaviour is the one
:mod:`spec.devices.kbc` states.
"""

from __future__ import annotations

from typing import Callable

_REPLIES = {0xA9: 0x00, 0xAB: 0x00, 0xAA: 0x55}
_MODE_BITS = {0xA7: (0x20, True), 0xA8: (0x20, False), 0xAD: (0x10, True), 0xAE: (0x10, False)}


class Kbc:
    name, sizes = "kbc", (1,)

    def __init__(self, irq: Callable[[int], None], reset: Callable[[], None]) -> None:
        self.irq, self.reset = irq, reset
        self.stat, self.cmd_byte, self.port, self.obuf = 0x18, 0x03, 0xCF, 0
        self.expect = 0                 # command awaiting a data byte (0: none)
        self.irq1 = 0

    def _update(self) -> None:
        want = 1 if self.stat & 1 and self.cmd_byte & 1 else 0
        if want != self.irq1:
            self.irq1 = want
            self.irq(want)

    def _reply(self, byte: int) -> None:
        self.obuf, self.stat = byte, self.stat | 1
        self._update()

    def read(self, offset: int, size: int) -> int:
        if offset == 4:
            return self.stat
        if offset:
            return 0xFF
        self.stat &= 0xFE
        self._update()
        return self.obuf

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == 4:
            self.stat |= 0x08
            self.expect = 0
            if value in _REPLIES:
                if value == 0xAA:
                    self.stat |= 0x04
                self._reply(_REPLIES[value])
            elif value == 0x20:
                self._reply(self.cmd_byte)
            elif value == 0xD0:
                self._reply(self.port)
            elif value in (0x60, 0xD1):
                self.expect = value
            elif value in _MODE_BITS:
                bit, on = _MODE_BITS[value]
                self.cmd_byte = self.cmd_byte | bit if on else self.cmd_byte & ~bit
            elif value & 0xF1 == 0xF0:
                self.reset()
        elif offset == 0:
            self.stat &= ~0x08
            expect, self.expect = self.expect, 0
            if expect == 0x60:
                self.cmd_byte = value
                self._update()
            elif expect == 0xD1:
                self.port = value
                if value & 1 == 0:
                    self.reset()


class StatusPort:
    """Port 0x64: the controller's status and command register."""

    name, sizes = "kbc", (1,)

    def __init__(self, kbc: Kbc) -> None:
        self.kbc = kbc

    def read(self, offset: int, size: int) -> int:
        return self.kbc.read(4, size)

    def write(self, offset: int, size: int, value: int) -> None:
        self.kbc.write(4, size, value)
