"""The 8254 PIT and port 0x61 for the impl engine's qemu-dm.

Room: three counters on the virtual clock (ns = guest instructions), their
programming and read-back, counter 2's gate, and the time of counter 0's
next rising OUT edge (IRQ0). Imports nothing of ``spec/``; the behaviour is
the one :mod:`spec.devices.pit` states.
"""

from __future__ import annotations

HZ = 1_193_182
GIGA = 1_000_000_000


class Channel:
    __slots__ = ("gate", "mode", "access", "bcd", "n", "t0", "wlow", "wlatch", "rhigh",
                 "latch", "status")

    def __init__(self, gate: bool) -> None:
        self.gate = gate
        self.mode, self.access, self.bcd, self.n, self.t0 = 0, 3, 0, 0x10000, -1
        self.wlow = self.rhigh = False
        self.wlatch = 0
        self.latch: list[int] = []
        self.status = -1

    def clocks(self, now: int) -> int:
        return (now - self.t0) * HZ // GIGA

    def count(self, now: int) -> int:
        if self.t0 < 0:
            return self.n & 0xFFFF
        d, n = self.clocks(now), self.n
        if self.mode == 2:
            return (n - d % n) & 0xFFFF
        if self.mode == 3:
            return (n - 2 * d % n) & 0xFFFF
        return (n - d) & 0xFFFF

    def out(self, now: int) -> int:
        if self.t0 < 0:
            return int(self.mode != 0)
        d, n, m = self.clocks(now), self.n, self.mode
        if m == 0:
            return int(d >= n)
        if m == 1:
            return int(d >= n or not self.gate)
        if m == 2:
            return int(d % n != n - 1)
        if m == 3:
            return int(d % n < (n + 1) // 2)
        return int(d != n)

    def edge_after(self, now: int) -> int | None:
        if self.t0 < 0 or (self.mode in (1, 5) and not self.gate):
            return None
        d, n = self.clocks(now), self.n
        if self.mode in (2, 3):
            at = n * (d // n + 1)
        else:
            at = n + (self.mode in (4, 5))
            if at <= d:
                return None
        return self.t0 - (-at * GIGA // HZ)


class Pit:
    name, sizes = "pit", (1,)

    def __init__(self, clock) -> None:
        self.clock = clock
        self.ch = [Channel(True), Channel(True), Channel(False)]
        self.speaker = 0

    def read(self, offset: int, size: int) -> int:
        if offset == 3:
            return 0xFF
        c = self.ch[offset]
        if c.status >= 0:
            value, c.status = c.status, -1
            return value
        if c.latch:
            return c.latch.pop(0)
        count = c.count(self.clock())
        if c.access == 1:
            return count & 0xFF
        if c.access == 2:
            return count >> 8
        c.rhigh = not c.rhigh
        return count & 0xFF if c.rhigh else count >> 8

    def write(self, offset: int, size: int, value: int) -> None:
        now = self.clock()
        if offset < 3:
            c = self.ch[offset]
            if c.access == 3:
                if not c.wlow:
                    c.wlow, c.wlatch = True, value
                    return
                c.wlow, value = False, c.wlatch | value << 8
            elif c.access == 2:
                value <<= 8
            c.n, c.t0 = value or 0x10000, now
            return
        sel = value >> 6
        if sel == 3:                                    # read-back
            for i, c in enumerate(self.ch):
                if value & (2 << i):
                    if not value & 0x20 and not c.latch:
                        c.latch = self._latched(c, now)
                    if not value & 0x10 and c.status < 0:
                        c.status = (c.out(now) << 7 | (c.t0 < 0) << 6 | c.access << 4
                                    | c.mode << 1 | c.bcd)
            return
        c, access = self.ch[sel], value >> 4 & 3
        if access == 0:                                 # latch
            if not c.latch:
                c.latch = self._latched(c, now)
            return
        mode = value >> 1 & 7
        c.access, c.mode, c.bcd = access, mode & 3 if mode > 5 else mode, value & 1
        c.t0, c.wlow, c.rhigh, c.latch, c.status = -1, False, False, [], -1

    @staticmethod
    def _latched(c: Channel, now: int) -> list[int]:
        count = c.count(now)
        return {1: [count & 0xFF], 2: [count >> 8]}.get(c.access, [count & 0xFF, count >> 8])

    def irq0_deadline(self) -> int | None:
        return self.ch[0].edge_after(self.clock())


class SpeakerPort:
    """Port 0x61: counter 2's gate (bit 0), speaker data (bit 1), the
    refresh toggle (bit 4, every 15.085 us) and counter 2's OUT (bit 5)."""

    name, sizes = "port61", (1,)

    def __init__(self, pit: Pit) -> None:
        self.pit = pit

    def read(self, offset: int, size: int) -> int:
        now, c2 = self.pit.clock(), self.pit.ch[2]
        return c2.gate | self.pit.speaker << 1 | (now // 15_085 & 1) << 4 | c2.out(now) << 5

    def write(self, offset: int, size: int, value: int) -> None:
        c2, gate = self.pit.ch[2], bool(value & 1)
        if gate and not c2.gate and c2.mode in (1, 2, 3, 5) and c2.t0 >= 0:
            c2.t0 = self.pit.clock()
        c2.gate = gate
        self.pit.speaker = value >> 1 & 1
