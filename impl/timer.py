"""The 8254 PIT, port 0x61 and the PIT's periodic time, in the impl engine's Xen.

Room: three counters on the virtual clock, their programming and read-back,
counter 2's gate and port 0x61, and Xen 3.0.4's periodic time that makes
IRQ0's ticks (``i8254.c``, ``intercept.c``, ``io.c``). Imports nothing of
``spec/``; the behaviour is the one :mod:`spec.devices.pit` states.
"""

from __future__ import annotations

HZ = 1_193_181                  # vpt.h PIT_FREQ
GIGA = 1_000_000_000
FLOOR = 900_000                 # the shortest period (0.9 ms)
PORTS = frozenset((0x40, 0x41, 0x42, 0x43, 0x61))


class Channel:
    __slots__ = ("gate", "mode", "access", "bcd", "n", "t0", "wlow", "wlatch", "rhigh",
                 "latch", "status")

    def __init__(self, gate: bool) -> None:
        self.gate = gate
        self.mode, self.access, self.bcd, self.n, self.t0 = 0xFF, 3, 0, 0x10000, 0
        self.wlow = self.rhigh = False
        self.wlatch = 0
        self.latch: list[int] = []
        self.status = -1

    def clocks(self, now: int) -> int:
        return (now - self.t0) * HZ // GIGA

    def count(self, now: int) -> int:
        d, n, m = self.clocks(now), self.n, self.mode
        if m in (0, 1, 4, 5):
            return (n - d) & 0xFFFF
        if m == 3:
            return n - 2 * d % n
        return n - d % n

    def out(self, now: int) -> int:
        d, n, m = self.clocks(now), self.n, self.mode
        if m == 1:
            return int(d < n)
        if m == 2:
            return int(d != 0 and d % n == 0)
        if m == 3:
            return int(d % n < (n + 1) >> 1)
        if m == 4 or m == 5:
            return int(d == n)
        return int(d >= n)


class Ticker:
    """The periodic time: period (ns), next tick, ticks pending."""

    __slots__ = ("on", "period", "due", "pending", "started")

    def __init__(self) -> None:
        self.on, self.period, self.due, self.pending, self.started = False, 0, 0, 0, False

    def arm(self, n: int, now: int) -> None:
        self.on = True
        self.period = max((n * GIGA + HZ // 2) // HZ, FLOOR)
        self.due, self.pending, self.started = now + self.period, 0, False

    def fire(self, now: int) -> int:
        got = 0
        while self.on and now >= self.due:
            got += 1
            self.due += self.period
            if now > self.due:
                lost = (now - self.due) // self.period + 1
                got += lost if lost <= 1000 else 1
                self.due += lost * self.period
        self.pending += got
        return got


class Pit:
    name = "vpit"

    def __init__(self, clock) -> None:
        self.clock = clock
        self.ch = [Channel(True), Channel(True), Channel(False)]
        self.speaker = 0
        self.ticker = Ticker()

    def read(self, port: int) -> int:
        """One byte from 0x40-0x42 or 0x61 (-1: 0x43, unanswered)."""
        now = self.clock()
        if port == 0x61:
            c2 = self.ch[2]
            return c2.gate | self.speaker << 1 | (now >> 14 & 1) << 4 | c2.out(now) << 5
        if port == 0x43:
            return -1
        c = self.ch[port - 0x40]
        if c.status >= 0:
            value, c.status = c.status, -1
            return value
        if c.latch:
            return c.latch.pop(0)
        count = c.count(now)
        if c.access == 1:
            return count & 0xFF
        if c.access == 2:
            return count >> 8 & 0xFF
        c.rhigh = not c.rhigh
        return count & 0xFF if c.rhigh else count >> 8 & 0xFF

    def write(self, port: int, value: int) -> None:
        now, value = self.clock(), value & 0xFF
        if port == 0x61:
            c2, gate = self.ch[2], value & 1
            if gate and not c2.gate and c2.mode in (1, 2, 3, 5):
                c2.t0 = now
            c2.gate, self.speaker = bool(gate), value >> 1 & 1
            return
        if port < 0x43:
            i = port - 0x40
            c = self.ch[i]
            if c.access == 3:
                if not c.wlow:
                    c.wlow, c.wlatch = True, value
                    return
                c.wlow, value = False, c.wlatch | value << 8
            elif c.access == 2:
                value <<= 8
            c.n, c.t0 = value or 0x10000, now
            if i == 0 and c.mode in (1, 2):
                self.ticker.arm(c.n, now)
            return
        sel = value >> 6
        if sel == 3:                                    # read-back
            for i, c in enumerate(self.ch):
                if value & (2 << i):
                    if not value & 0x20 and not c.latch:
                        c.latch = self._latched(c, now)
                    if not value & 0x10 and c.status < 0:
                        c.status = (c.out(now) << 7 | c.access << 4 | c.mode << 1 | c.bcd) & 0xFF
            return
        c, access = self.ch[sel], value >> 4 & 3
        if access == 0:                                 # latch
            if not c.latch:
                c.latch = self._latched(c, now)
            return
        c.access, c.mode, c.bcd = access, value >> 1 & 7, value & 1
        c.wlow = c.rhigh = False

    @staticmethod
    def _latched(c: Channel, now: int) -> list[int]:
        count = c.count(now)
        return {1: [count & 0xFF], 2: [count >> 8 & 0xFF]}.get(
            c.access, [count & 0xFF, count >> 8 & 0xFF])

    def due(self) -> int | None:
        return self.ticker.due if self.ticker.on else None

    def taken(self, now: int) -> None:
        """IRQ0's vector went in: count it, restart counter 0."""
        t = self.ticker
        if not t.on:
            return
        if t.started:
            t.pending -= 1
        else:
            t.pending, t.due, t.started = 0, now + t.period, True
        self.ch[0].t0 = now


class PmTimer:
    """Xen's ACPI PM timer at 0x1F48-0x1F4B (or where qemu-dm moves it: PMBA's
    base + 8): 4-byte reads only, a 32-bit
    count advanced by the guest TSC since the last read (scale 2**32ths)."""

    name = "pmtimer"
    SCALE = (3_579_545 << 32) // 2_400_000_000      # the guest's TSC runs at 2.4 GHz

    def __init__(self, clock) -> None:
        self.clock = clock
        self.count = 0
        self.last = 0
        self.base = 0x1F48          # moved by qemu-dm when PMBA moves the PM block

    def claims(self, port: int) -> bool:
        return self.base <= port < self.base + 4

    def read4(self) -> int:
        tsc = self.clock() * 2_400_000_000 // GIGA & 0xFFFFFFFFFFFFFFFF
        self.count = self.count + ((tsc - self.last) * self.SCALE >> 32) & 0xFFFFFFFF
        self.last = tsc
        return self.count
