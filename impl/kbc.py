"""The 8042 keyboard controller, its PS/2 keyboard and mouse, and port 0x92,
for the impl engine's qemu-dm.

Room: ports 0x60/0x64 — status, command byte, output port, self-tests, the
reset line, the A20 gate — the two PS/2 devices behind them with their byte
queues, and System Control Port A. Imports nothing of ``spec/`` but
:mod:`spec.platform`'s translation table; the behaviour is the one
:mod:`spec.devices.kbc` states (A20 is recorded, never applied to memory,
as in a Xen 3.x HVM domain).
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from spec.platform import KBC_TRANSLATE, KBC_TRANSLATE_HIGH

# pending bits, highest priority first
_P_CTRL, _P_CTRL_AUX, _P_KBD, _P_AUX = 1, 2, 4, 8
_LIMIT = 16


class A20:
    def __init__(self) -> None:
        self.on = True


class Keyboard:
    """Replies (``front``) are read before scan codes (``codes``)."""

    def __init__(self) -> None:
        self.front: deque[int] = deque()
        self.codes: deque[int] = deque()
        self.arg_for = -1               # command awaiting its argument
        self.scan, self.codeset, self.leds = 1, 2, 0
        self.xlat = 0
        self.high = 0
        self.prev = 0

    def ready(self) -> bool:
        return bool(self.front) or bool(self.codes)

    def pop(self) -> int:
        if self.front:
            self.prev = self.front.popleft()
        elif self.codes:
            self.prev = self.codes.popleft()
        return self.prev

    def _powerup(self, scan: int) -> None:
        self.scan, self.codeset, self.leds = scan, 2, 0
        self.codes.clear()

    def _arg(self, value: int) -> tuple:
        cmd, self.arg_for = self.arg_for, -1
        if cmd == 0xF0:
            if value == 0:
                return (0xFA, KBC_TRANSLATE[self.codeset] if self.xlat else self.codeset)
            if value > 3:
                return (0xFE,)
            self.codeset = value
        elif cmd == 0xED:
            self.leds = value
        return (0xFA,)

    def take(self, value: int) -> None:
        self.front.clear()
        if self.arg_for >= 0:
            out = self._arg(value)
        elif value == 0xFF:
            self._powerup(1)
            out = (0xFA, 0xAA)
        elif value == 0xF6 or value == 0xF5:
            self._powerup(int(value == 0xF6))
            out = (0xFA,)
        elif value == 0xF4:
            self.scan = 1
            out = (0xFA,)
        elif value == 0xF2:
            out = (0xFA, 0xAB, 0x41 if self.xlat else 0x83)
        elif value == 0xEE:
            out = (0xEE,)
        elif value in (0xED, 0xF0, 0xF3, 0xFC):
            self.arg_for = value
            out = (0xFA,)
        elif value == 0 or value == 0xFA:
            out = (0xFA,)
        else:
            out = (0xFE,)
        self.front.extend(out)

    def key(self, code: int) -> None:
        if self.xlat:
            if code == 0xF0:
                self.high = 0x80
                return
            code = KBC_TRANSLATE[code] if code < 0x80 else KBC_TRANSLATE_HIGH.get(code, code)
            code |= self.high
            self.high = 0
        if len(self.front) + len(self.codes) < _LIMIT:
            self.codes.append(code)


class Mouse:
    def __init__(self) -> None:
        self.q: deque[int] = deque()
        self.arg_for = -1
        self.stat = self.res = self.rate = 0
        self.wrap = 0
        self.kind = 0
        self.seq = 0
        self.dx = self.dy = self.dz = 0
        self.btn = 0
        self.prev = 0

    def ready(self) -> bool:
        return bool(self.q)

    def pop(self) -> int:
        if self.q:
            self.prev = self.q.popleft()
        return self.prev

    def _put(self, *data: int) -> None:
        if len(self.q) + len(data) <= _LIMIT:
            self.q.extend(data)

    def _packet(self) -> None:
        if len(self.q) + (4 if self.kind else 3) > _LIMIT:
            return
        x = -127 if self.dx < -127 else 127 if self.dx > 127 else self.dx
        y = -127 if self.dy < -127 else 127 if self.dy > 127 else self.dy
        head = 8 | (self.btn & 7)
        if x < 0:
            head |= 0x10
        if y < 0:
            head |= 0x20
        self.q.extend((head, x & 0xFF, y & 0xFF))
        self.dx -= x
        self.dy -= y
        if self.kind == 3:
            z = -127 if self.dz < -127 else 127 if self.dz > 127 else self.dz
            self.q.append(z & 0xFF)
            self.dz -= z
        elif self.kind == 4:
            z = -7 if self.dz < -7 else 7 if self.dz > 7 else self.dz
            self.q.append((z & 0xF) | ((self.btn & 0x18) << 1))
            self.dz -= z
        else:
            self.dz = 0

    def motion(self, dx: int, dy: int, dz: int, btn: int) -> None:
        if not self.stat & 0x20:
            return
        self.dx += dx
        self.dy += dy
        self.dz += dz
        self.btn = btn
        if self.stat & 0x40:
            return
        need = 4 if self.kind else 3
        while len(self.q) + need <= _LIMIT:
            self._packet()
            if self.dx == 0 and self.dy == 0 and self.dz == 0:
                return

    def take(self, value: int) -> None:
        cmd = self.arg_for
        if cmd == 0xE8:
            self.arg_for = -1
            self.res = value
            self._put(0xFA)
            return
        if cmd == 0xF3:
            self.arg_for = -1
            self.rate = value
            s = self.seq
            if s == 0:
                self.seq = 1 if value == 200 else 0
            elif s == 1:
                self.seq = 2 if value == 100 else 3 if value == 200 else 0
            else:
                if value == 80:
                    self.kind = 3 if s == 2 else 4
                self.seq = 0
            self._put(0xFA)
            return
        if self.wrap and value != 0xFF:
            if value == 0xEC:
                self.wrap = 0
                self._put(0xFA)
            else:
                self._put(value)
            return
        bit = {0xE6: (0x10, 0), 0xE7: (0x10, 1), 0xEA: (0x40, 0), 0xF0: (0x40, 1),
               0xF4: (0x20, 1), 0xF5: (0x20, 0)}.get(value)
        if bit is not None:
            mask, on = bit
            self.stat = (self.stat | mask) if on else (self.stat & ~mask)
            self._put(0xFA)
        elif value == 0xE8 or value == 0xF3:
            self.arg_for = value
            self._put(0xFA)
        elif value == 0xE9:
            self._put(0xFA, self.stat, self.res, self.rate)
        elif value == 0xF2:
            self._put(0xFA, self.kind)
        elif value == 0xEE:
            self.wrap = 1
            self._put(0xFA)
        elif value == 0xEB:
            self._put(0xFA)
            self._packet()
        elif value == 0xF6:
            self.rate, self.res, self.stat = 100, 2, 0
            self._put(0xFA)
        elif value == 0xFF:
            self.rate, self.res, self.stat, self.kind = 100, 2, 0, 0
            self.q.clear()
            self._put(0xFA, 0xAA, 0)


class Kbc:
    name, sizes = "kbc", (1,)

    def __init__(self, irq: Callable[[int], None], reset: Callable[[], None],
                 irq12: Callable[[int], None] = lambda level: None) -> None:
        self.irq, self.irq12, self.reset = irq, irq12, reset
        self.a20 = A20()
        self.kbd, self.mouse = Keyboard(), Mouse()
        self.stat, self.cmd_byte, self.port = 0x18, 0x03, 0xCF
        self.obuf = 0
        self.src = 0                    # pending bit the output buffer holds
        self.pend = 0                   # controller replies pending (_P_CTRL/_P_CTRL_AUX)
        self.cbyte = 0
        self.expect = 0                 # command awaiting a data byte (0: none)
        self.lines = 0                  # bit 0: IRQ1, bit 1: IRQ12

    def _lines(self) -> None:
        want = 0
        if self.stat & 1:
            if self.stat & 0x20:
                if self.cmd_byte & 2:
                    want = 2
            elif self.cmd_byte & 0x11 == 0x01:
                want = 1
        changed = want ^ self.lines
        self.lines = want
        if changed & 1:
            self.irq(want & 1)
        if changed & 2:
            self.irq12(want >> 1)

    def _avail(self) -> int:
        bits = self.pend
        if self.kbd.ready() and not self.cmd_byte & 0x10:
            bits |= _P_KBD
        if self.mouse.ready() and not self.cmd_byte & 0x20:
            bits |= _P_AUX
        return bits

    def _refill(self, skip: int = 0) -> None:
        if self.stat & 1:
            return
        bits = self._avail()
        if bits & ~skip:
            bits &= ~skip
        if not bits:
            return
        low = bits & -bits
        self.src = low
        self.stat |= 1
        self.port |= 0x10
        if low & (_P_CTRL_AUX | _P_AUX):
            self.stat |= 0x20
            self.port |= 0x20
        self._lines()

    def _reply(self, byte: int, aux: int = 0) -> None:
        self.cbyte = byte
        self.pend = _P_CTRL_AUX if aux else _P_CTRL
        self._refill()

    def send_keys(self, codes: bytes) -> None:
        if self.kbd.scan:
            for c in codes:
                self.kbd.key(c)
        self._refill()

    def send_mouse(self, dx: int, dy: int, dz: int = 0, buttons: int = 0) -> None:
        self.mouse.motion(dx, dy, dz, buttons)
        self._refill()

    def read(self, offset: int, size: int) -> int:
        if offset == 4:
            return self.stat
        if offset:
            return 0xFF
        if self.stat & 1:
            self.stat &= ~0x21
            self.port &= ~0x30
            self._lines()
            src = self.src
            if src & (_P_CTRL | _P_CTRL_AUX):
                self.obuf = self.cbyte
                self.pend = 0
                self._refill()
            elif src == _P_KBD:
                self.obuf = self.kbd.pop()
                self._refill(_P_KBD)
            else:
                self.obuf = self.mouse.pop()
                self._refill(_P_AUX)
        return self.obuf

    def _cmd(self, value: int) -> None:
        self.expect = 0
        if value & 0xF0 == 0xF0:
            if not value & 1:
                self.reset()
        elif value == 0x20:
            self._reply(self.cmd_byte)
        elif value in (0x60, 0xD1, 0xD2, 0xD3, 0xD4):
            self.expect = value
        elif value == 0xAA:
            self.stat |= 0x04
            self._reply(0x55)
        elif value == 0xA9 or value == 0xAB:
            self._reply(0)
        elif value == 0xC0:
            self._reply(0x80)
        elif value == 0xD0:
            self._reply(self.port)
        elif value == 0xA7 or value == 0xAD:
            self.cmd_byte |= 0x20 if value == 0xA7 else 0x10
        elif value == 0xA8 or value == 0xAE:
            self.cmd_byte &= ~(0x20 if value == 0xA8 else 0x10)
            self._refill()
        elif value == 0xDD or value == 0xDF:
            self.port = (self.port & ~2) | (value & 2)
            self.a20.on = value == 0xDF

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == 4:
            self.stat |= 0x08
            self._cmd(value)
            return
        if offset:
            return
        self.stat &= ~0x08
        expect, self.expect = self.expect, 0
        if expect == 0:
            self.kbd.take(value)
            self.cmd_byte &= ~0x10
            self._refill()
        elif expect == 0x60:
            self.cmd_byte = value
            self.kbd.xlat = value & 0x40
            self._lines()
            self._refill()
        elif expect == 0xD1:
            self.port = value
            self.a20.on = bool(value & 2)
            if not value & 1:
                self.reset()
        elif expect == 0xD4:
            self.mouse.take(value)
            self.cmd_byte &= ~0x20
            self._refill()
        else:
            self._reply(value, expect == 0xD3)


class StatusPort:
    """Port 0x64: the controller's status and command register."""

    name, sizes = "kbc", (1,)

    def __init__(self, kbc: Kbc) -> None:
        self.kbc = kbc

    def read(self, offset: int, size: int) -> int:
        return self.kbc.read(4, size)

    def write(self, offset: int, size: int, value: int) -> None:
        self.kbc.write(4, size, value)


class Port92:
    name, sizes = "port92", (1,)

    def __init__(self, a20: A20, reset: Callable[[], None]) -> None:
        self.a20, self.reset = a20, reset
        self.val = 0

    def read(self, offset: int, size: int) -> int:
        return self.val

    def write(self, offset: int, size: int, value: int) -> None:
        rising = value & ~self.val & 1
        self.val = value
        self.a20.on = bool(value & 2)
        if rising:
            self.reset()
