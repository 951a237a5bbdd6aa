"""COM1 for the impl engine: a 16550A with its receive FIFO.

Room: the UART's registers, receive queue, modem-status bits and its two
timers (the sender's next character, the FIFO's character timeout), on the
virtual clock. Imports :mod:`spec.trace` for the event type only.

Engineering notes (the behaviour is the reference model's; the code is
this engine's own): the transmitter is never busy, so a written byte is
emitted (or looped back) on the spot; the received bytes live in a deque
shared by both modes (without FIFOs it holds at most one byte, and the
last byte taken stays in ``rbr`` for re-reads); MSR is kept as one byte
whose upper nibble is recomputed from MCR on every MCR write; ``due()``
gives the engine's loop the earliest timer, ``timer(now)`` runs what is due.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from spec import trace

_SECOND = 1_000_000_000
_TRIGGER = {0x00: 1, 0x40: 4, 0x80: 8, 0xC0: 14}
# MCR bit -> MSR bit when looped back: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD
_LOOP_WIRES = ((0x01, 0x20), (0x02, 0x10), (0x04, 0x40), (0x08, 0x80))
_NO_MODEM = 0xB0


class Uart:
    """COM1: registers at offsets 0-7, byte accesses, an interrupt line."""

    name, sizes = "uart", (1,)

    def __init__(self, emit: Callable, irq: Callable[[int], None], clock: Callable[[], int],
                 data: bytes) -> None:
        self.emit, self.irq, self.clock = emit, irq, clock
        self.ier = self.lcr = self.scr = 0
        self.mcr = 0x08
        self.fcr = 0
        self.msr = _NO_MODEM
        self.dl = 12
        self.rx: deque[int] = deque()
        self.rbr = 0
        self.oe = False
        self.thre_int = False
        self.cti = False
        self.line = 0
        self.feed = deque(data)
        self.arrival: int | None = None
        self.quiet_until: int | None = None
        self.responder: Callable[[int], bytes] | None = None   # a serial script

    # the clock ---------------------------------------------------------------------------

    def _char(self) -> int:
        dl = self.dl or 1
        return (10 * dl * _SECOND + 115_199) // 115_200

    def due(self) -> int | None:
        a, q = self.arrival, self.quiet_until
        if a is None:
            return q
        return a if q is None or a <= q else q

    def timer(self, now: int) -> None:
        while True:
            a, q = self.arrival, self.quiet_until
            if a is not None and a <= now and (q is None or a <= q):
                self.arrival = None
                self._deliver(a)
            elif q is not None and q <= now:
                self.quiet_until = None
                if self.rx:
                    self.cti = True
                    self._sync()
            else:
                break

    def _deliver(self, at: int) -> None:
        if not self.feed or self.mcr & 0x10:
            return
        self._take(self.feed.popleft(), at)
        if self.fcr & 1 and self.mcr & 2 and self.feed and len(self.rx) < 16:
            self.arrival = at + self._char()

    def _can_send(self) -> bool:
        if not self.feed or self.mcr & 0x12 != 0x02:
            return False
        return len(self.rx) < 16 if self.fcr & 1 else not self.rx

    def typed(self, data: bytes) -> None:
        """Bytes from a live line (the user's terminal)."""
        self.feed.extend(data)
        self._kick()

    def _kick(self) -> None:
        if self.arrival is None and self._can_send():
            self.arrival = self.clock() + self._char()

    # interrupts -------------------------------------------------------------------------

    def _cause(self) -> int:
        ier = self.ier
        if ier & 4 and self.oe:
            return 6
        if ier & 1:
            if self.cti:
                return 0x0C
            n = len(self.rx)
            if n and (not self.fcr & 1 or n >= _TRIGGER[self.fcr & 0xC0]):
                return 4
        if ier & 2 and self.thre_int:
            return 2
        if ier & 8 and self.msr & 0x0F:
            return 0
        return 1

    def _sync(self) -> None:
        line = int(self._cause() != 1)
        if line != self.line:
            self.line = line
            self.irq(line)

    # the receive side -------------------------------------------------------------------

    def _take(self, byte: int, at: int) -> None:
        if self.fcr & 1:
            if len(self.rx) == 16:
                self.oe = True
            else:
                self.rx.append(byte)
            self.quiet_until = at + 4 * self._char()
        else:
            if self.rx:
                self.oe = True
                self.rx.clear()
            self.rx.append(byte)
            self.rbr = byte
        self._sync()

    def _read_data(self) -> int:
        if self.fcr & 1:
            value = self.rx.popleft() if self.rx else 0
            self.cti = False
            self.quiet_until = self.clock() + 4 * self._char() if self.rx else None
            self._kick()
        else:
            value = self.rbr
            self.rx.clear()
            self.arrival = self.clock() + self._char() if self._can_send() else None
        self._sync()
        return value

    # registers --------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        if self.lcr & 0x80 and offset < 2:
            return self.dl & 0xFF if offset == 0 else self.dl >> 8
        if offset == 0:
            return self._read_data()
        if offset == 1:
            return self.ier
        if offset == 2:
            cause = self._cause()
            if cause == 2:
                self.thre_int = False
                self._sync()
            return cause | (0xC0 if self.fcr & 1 else 0)
        if offset == 3:
            return self.lcr
        if offset == 4:
            return self.mcr
        if offset == 5:
            lsr = 0x60 | (1 if self.rx else 0) | (2 if self.oe else 0)
            self.oe = False
            self._sync()
            return lsr
        if offset == 6:
            msr = self.msr
            self.msr &= 0xF0
            self._sync()
            return msr
        return self.scr

    def write(self, offset: int, size: int, value: int) -> None:
        if self.lcr & 0x80 and offset < 2:
            if offset == 0:
                self.dl = self.dl & 0xFF00 | value
            else:
                self.dl = self.dl & 0x00FF | value << 8
        elif offset == 0:
            self._send(value)
        elif offset == 1:
            if value & 2 and not self.ier & 2:
                self.thre_int = True
            self.ier = value & 0x0F
            self._sync()
        elif offset == 2:
            self._fifo_control(value)
        elif offset == 3:
            self.lcr = value
        elif offset == 4:
            self._modem_control(value)
        elif offset == 7:
            self.scr = value

    def _send(self, value: int) -> None:
        self.thre_int = False
        self._sync()
        if self.mcr & 0x10:
            self._take(value, self.clock())
        else:
            self.emit(trace.SerialOut.of(port="com1", byte=value))
            if self.responder is not None:
                answer = self.responder(value)
                if answer:
                    self.typed(answer)
        self.thre_int = True
        self._sync()

    def _fifo_control(self, value: int) -> None:
        if (value ^ self.fcr) & 1:
            value |= 0x06
        if value & 2:
            self.rx.clear()
            self.cti = False
            self.quiet_until = None
        if value & 4:
            self.thre_int = True
        self.fcr = value & 0xC9
        self._kick()
        self._sync()

    def _modem_control(self, value: int) -> None:
        rts_up = value & 2 and not self.mcr & 2
        self.mcr = value & 0x1F
        if self.mcr & 0x10:
            lines = 0
            for out, into in _LOOP_WIRES:
                if self.mcr & out:
                    lines |= into
        else:
            lines = _NO_MODEM
        old = self.msr
        flips = (old ^ lines) & 0xF0
        delta = (flips >> 4) & 0x0B
        if old & 0x40 and not lines & 0x40:
            delta |= 0x04
        self.msr = lines | (old & 0x0F) | delta
        if rts_up:
            self.arrival = self.clock() + self._char() if self._can_send() else None
        else:
            self._kick()
        self._sync()
