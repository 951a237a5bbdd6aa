"""CMOS RAM and the MC146818A real-time clock for the impl engine's qemu-dm.

Room: ports 0x70/0x71, 128 bytes of CMOS, the clock on the virtual clock
(ns = guest instructions) and the periodic, update-ended and alarm
interrupts on IRQ8. Imports nothing of ``spec/`` but the platform numbers;
the behaviour is the one :mod:`spec.devices.rtc` states.
"""

from __future__ import annotations

import time
from typing import Callable

from spec import platform

GIGA = 1_000_000_000
HOLD = 244_140                      # UIP lead before an update, ns
CENTURY = platform.RTC_CENTURY
CLOCK_REGS = {0: "sec", 2: "min", 4: "hour", 6: "wday", 7: "mday", 8: "mon", 9: "year",
              CENTURY: "century"}


def _trunc(a: int, b: int) -> int:
    return int(a / b) if abs(a) < 1 << 52 else (a // b if (a < 0) == (b < 0) else -(-a // b))


def seconds_of(year: int, mon: int, mday: int, hour: int, minute: int, sec: int) -> int:
    """QEMU's mktimegm: March-based years, no validation."""
    y, m = (year - 1, mon + 12) if mon < 3 else (year, mon)
    days = 365 * y + _trunc(y, 4) - _trunc(y, 100) + _trunc(y, 400)
    days += _trunc(153 * m - 457, 5) + mday - 719469
    return days * 86400 + hour * 3600 + minute * 60 + sec


def cmos_sizes(mem: int) -> list[tuple[int, int]]:
    """(index, byte) of the memory-size bytes for ``mem`` bytes of RAM."""
    low = mem if mem < platform.HVM_BELOW_4G_RAM_END else platform.HVM_BELOW_4G_RAM_END
    kib_base = low >> 10 if low >> 10 < 640 else 640
    kib_ext = max(low - 0x100000, 0) >> 10
    blocks16 = max(low - 0x1000000, 0) >> 16
    blocks4g = (mem - low) >> 16
    kib_ext, blocks16 = min(kib_ext, 0xFFFF), min(blocks16, 0xFFFF)
    out = []
    for index, value, n in ((0x15, kib_base, 2), (0x17, kib_ext, 2), (0x30, kib_ext, 2),
                            (0x34, blocks16, 2), (0x5B, blocks4g, 3)):
        out += [(index + i, value >> 8 * i & 0xFF) for i in range(n)]
    return out


def _bios_bytes(boot: str) -> list[tuple[int, int]]:
    """qemu-dm's cmos_init: boot order (0x3D, 0x38), equipment, no drives."""
    code = [platform.BOOT_DEVICES[c] for c in boot] + [0, 0]
    return [(0x3D, code[0] | code[1] << 4), (0x38, code[2] << 4), (0x10, 0), (0x12, 0),
            (0x14, 0x06)]


class Rtc:
    name, sizes = "rtc", (1,)

    def __init__(self, clock: Callable[[], int], irq: Callable[[int], None], mem: int,
                 base: int, boot: str = "c") -> None:
        self.clock, self.irq = clock, irq
        self.ram = bytearray(128)
        for index, value in cmos_sizes(mem) + _bios_bytes(boot):
            self.ram[index] = value
        self.ram[10], self.ram[11], self.ram[13] = 0x26, 0x02, 0x80
        self.sel = 0
        self.nmi = 0
        self.offset = base * GIGA - clock()        # T(now) = now + offset
        self.seen = clock()                         # register C is up to date until here
        self.line = 0

    # --- format ---------------------------------------------------------------------

    def _enc(self, v: int) -> int:
        return v & 0xFF if self.ram[11] & 4 else (v // 10 % 10 * 16 + v % 10) & 0xFF

    def _dec(self, v: int) -> int:
        return v if self.ram[11] & 4 else v // 16 * 10 + v % 16

    def _enc_hour(self, h: int) -> int:
        if self.ram[11] & 2:
            return self._enc(h)
        return self._enc(12 if h % 12 == 0 else h % 12) | (h >= 12) << 7

    def _dec_hour(self, v: int) -> int:
        if self.ram[11] & 2:
            return self._dec(v)
        return self._dec(v & 0x7F) % 12 + 12 * (v >> 7)

    def clock_bytes(self, secs: int) -> dict[int, int]:
        tm = time.gmtime(secs)
        return {0: self._enc(tm.tm_sec), 2: self._enc(tm.tm_min), 4: self._enc_hour(tm.tm_hour),
                6: self._enc((tm.tm_wday + 1) % 7 + 1), 7: self._enc(tm.tm_mday),
                8: self._enc(tm.tm_mon), 9: self._enc(tm.tm_year % 100),
                CENTURY: self._enc(tm.tm_year // 100)}

    def _stopped(self) -> bool:
        return bool(self.ram[11] & 0x80)

    def _snapshot(self, now: int) -> None:
        for index, value in self.clock_bytes((now + self.offset) // GIGA).items():
            self.ram[index] = value

    def _restart(self, now: int) -> None:
        r = self.ram
        secs = seconds_of(self._dec(r[CENTURY]) * 100 + self._dec(r[9]), self._dec(r[8]),
                          self._dec(r[7]), self._dec_hour(r[4]), self._dec(r[2]), self._dec(r[0]))
        frac = (now + self.offset) % GIGA
        self.offset = secs * GIGA + frac - now

    # --- events ------------------------------------------------------------------------

    def _period(self) -> int:
        rs = self.ram[10] & 15
        return 0 if rs == 0 else (128 << (rs - 1) if rs < 3 else 1 << (rs - 1))

    def _tick_index(self, t: int, period: int) -> int:
        return (t << 15) // (period * GIGA)

    def _periodic_after(self, now: int) -> int | None:
        p = self._period()
        if not p:
            return None
        n = (self._tick_index(now, p) + 1) * p * GIGA
        return (n + 32767) >> 15

    def _update_after(self, now: int) -> int | None:
        if self._stopped():
            return None
        t = now + self.offset
        return now + GIGA - t % GIGA

    def _alarm_after(self, now: int) -> int | None:
        if self._stopped():
            return None
        r, t = self.ram, now + self.offset
        want = []
        for reg, span, dec, enc in ((5, 24, self._dec_hour, self._enc_hour),
                                    (3, 60, self._dec, self._enc), (1, 60, self._dec, self._enc)):
            if r[reg] >= 0xC0:
                want.append(None)
                continue
            v = dec(r[reg])
            if v < 0 or v >= span or enc(v) != r[reg]:
                return None
            want.append(v)
        sec = t // GIGA
        if want == [None, None, None]:
            return now + (sec + 1) * GIGA - t
        day = sec - sec % 86400
        hours = range(24) if want[0] is None else (want[0],)
        mins = range(60) if want[1] is None else (want[1],)
        secs = range(60) if want[2] is None else (want[2],)
        best = None
        for h in hours:
            for m in mins:
                for s in secs:
                    at = day + h * 3600 + m * 60 + s
                    if at <= sec:
                        at += 86400
                    if best is None or at < best:
                        best = at
        return now + best * GIGA - t

    def _catch_up(self, now: int) -> None:
        since, self.seen = self.seen, now
        c = 0
        p = self._period()
        if p and self._tick_index(now, p) != self._tick_index(since, p):
            c |= 0x40
        upd = self._update_after(since)
        if upd is not None and upd <= now:
            c |= 0x10
        alarm = self._alarm_after(since)
        if alarm is not None and alarm <= now:
            c |= 0x20
        self.ram[12] |= c
        self._line()

    def _line(self) -> None:
        if self.ram[12] & self.ram[11] & 0x70:
            self.ram[12] |= 0x80
        if self.ram[12] & 0x80 and not self.line:
            self.line = 1
            self.irq(1)

    def deadline(self) -> int | None:
        now, b, due = self.clock(), self.ram[11], None
        for enabled, when in ((b & 0x40, self._periodic_after), (b & 0x10, self._update_after),
                              (b & 0x20, self._alarm_after)):
            if enabled:
                t = when(now)
                if t is not None and (due is None or t < due):
                    due = t
        return due

    def timer(self, now: int) -> None:
        self._catch_up(now)

    # --- ports ---------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        if not offset:
            return 0xFF
        now, i = self.clock(), self.sel
        if i in CLOCK_REGS and not self._stopped():
            return self.clock_bytes((now + self.offset) // GIGA)[i]
        if i == 10:
            uip = not self._stopped() and (now + self.offset) % GIGA >= GIGA - HOLD
            return self.ram[10] & 0x7F | uip << 7
        if i == 12:
            self._catch_up(now)
            c, self.ram[12] = self.ram[12], 0
            if self.line:
                self.line = 0
                self.irq(0)
            return c
        return self.ram[i]

    def write(self, offset: int, size: int, value: int) -> None:
        if not offset:
            self.sel, self.nmi = value & 0x7F, value >> 7
            return
        now, i = self.clock(), self.sel
        if i in (12, 13):
            return
        self._catch_up(now)
        if i in CLOCK_REGS:
            running = not self._stopped()
            if running:
                self._snapshot(now)
            self.ram[i] = value
            if running:
                self._restart(now)
        elif i == 10:
            self.ram[10] = value & 0x7F
        elif i == 11:
            stopping, running = bool(value & 0x80), not self._stopped()
            if stopping:
                if running:
                    self._snapshot(now)
                value &= 0xEF
            elif not running:
                self._restart(now)
            self.ram[11] = value
        else:
            self.ram[i] = value
        self._line()
