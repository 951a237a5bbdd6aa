"""Xen 3.0.4's RTC (``hvm/rtc.c``) for the impl engine's VMM.

Room: CMOS 0x00-0x0D (clock, alarm, A-D), Xen's index at port 0x70 and the
pass-through of other indices to qemu-dm, the second and periodic timers on
the virtual clock, IRQ8 straight to the vPIC. Imports nothing of ``spec/``
but the platform numbers; the behaviour is the one :mod:`spec.devices.rtc`
states.
"""

from __future__ import annotations

import time
from typing import Callable

GIGA = 1_000_000_000
UIP_WINDOW = 244_000
MDAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _mdays(mon: int, year: int) -> int:
    if mon < 0 or mon > 11:
        return 31
    if mon == 1 and not year & 3 and (year % 100 or not year % 400):
        return 29
    return MDAYS[mon]


class Rtc:
    """``RTCState``: ``t`` is current_tm as [sec, min, hour, wday, mday, mon, year-1900]."""

    name = "vrtc"

    def __init__(self, clock: Callable[[], int], irq: Callable[[int], None], base: int) -> None:
        self.clock, self.irq = clock, irq
        self.r = bytearray(14)
        self.r[10], self.r[11], self.r[13] = 0x26, 0x02, 0x80
        self.idx = 0
        g = time.gmtime(base)
        self.t = [g.tm_sec, g.tm_min, g.tm_hour, (g.tm_wday + 1) % 7, g.tm_mday, g.tm_mon - 1,
                  g.tm_year - 1900]
        self._copy()
        self.line = 0
        now = clock()
        self.nst = now + GIGA                    # next_second_time
        self.t1 = -1                             # second_timer (-1: stopped)
        self.t2 = self.nst                       # second_timer2
        self.tp = -1                             # pie_timer
        self.period = 0

    # --- BCD ------------------------------------------------------------------------------

    def _enc(self, v: int) -> int:
        return v & 0xFF if self.r[11] & 4 else (v // 10 * 16 + v % 10) & 0xFF

    def _dec(self, v: int) -> int:
        return v if self.r[11] & 4 else (v >> 4) * 10 + (v & 15)

    def _copy(self) -> None:
        r, t, enc = self.r, self.t, self._enc
        r[0], r[2] = enc(t[0]), enc(t[1])
        r[4] = enc(t[2]) if r[11] & 2 else enc(t[2] % 12) | (0x80 if t[2] >= 12 else 0)
        r[6], r[7], r[8], r[9] = enc(t[3]), enc(t[4]), enc(t[5] + 1), enc(t[6] % 100)

    def _set(self) -> None:
        r, dec = self.r, self._dec
        hour = dec(r[4] & 0x7F) + (12 if not r[11] & 2 and r[4] & 0x80 else 0)
        self.t = [dec(r[0]), dec(r[2]), hour, dec(r[6]), dec(r[7]), dec(r[8]) - 1,
                  dec(r[9]) + 100]

    # --- the line ----------------------------------------------------------------------------

    def _up(self) -> None:
        if not self.line:
            self.line = 1
            self.irq(1)

    def _down(self) -> None:
        if self.line:
            self.line = 0
            self.irq(0)

    # --- timers ------------------------------------------------------------------------------

    def _tick(self) -> None:
        t = self.t
        t[0] += 1
        if t[0] < 60:
            return
        t[0], t[1] = 0, t[1] + 1
        if t[1] < 60:
            return
        t[1], t[2] = 0, t[2] + 1
        if t[2] < 24:
            return
        t[2], t[3] = 0, (t[3] + 1 if t[3] < 6 else 0)
        n = _mdays(t[5], t[6] + 1900)
        t[4] += 1
        if t[4] < 1:
            t[4] = 1
        elif t[4] > n:
            t[4], t[5] = 1, t[5] + 1
            if t[5] >= 12:
                t[5], t[6] = 0, t[6] + 1

    def _alarm(self) -> bool:
        r, t = self.r, self.t
        for reg, v in ((1, t[0]), (3, t[1]), (5, t[2])):
            if r[reg] < 0xC0 and self._dec(r[reg]) != v:
                return False
        return True

    def run(self, now: int) -> None:
        r = self.r
        while True:
            t1 = self.t1 if 0 <= self.t1 <= now else None
            t2 = self.t2 if 0 <= self.t2 <= now else None
            tp = self.tp if 0 <= self.tp <= now else None
            if t1 is None and t2 is None and tp is None:
                return
            first = min(x for x in (t1, t2, tp) if x is not None)
            if t1 == first:                              # rtc_update_second
                self.t1 = -1
                if r[10] & 0x70 != 0x20:
                    self.nst += GIGA
                    self.t1 = self.nst
                else:
                    self._tick()
                    if not r[11] & 0x80:
                        r[10] |= 0x80
                    self.t2 = self.nst + UIP_WINDOW
            elif t2 == first:                            # rtc_update_second2
                self.t2 = -1
                if not r[11] & 0x80:
                    self._copy()
                if r[11] & 0x20 and self._alarm():
                    r[12] |= 0xA0
                    self._down()
                    self._up()
                if r[11] & 0x10:
                    r[12] |= 0x90
                    self._down()
                    self._up()
                r[10] &= 0x7F
                self.nst += GIGA
                self.t1 = self.nst
            else:                                        # rtc_pie_callback
                r[12] |= 0xC0
                self._up()
                late = (now - tp) // self.period + 1 if t1 is None and t2 is None else 1
                self.tp = tp + late * self.period

    def _restart_pie(self, now: int) -> None:
        rs = self.r[10] & 15
        if rs and self.r[11] & 0x40:
            cycles = 1 << ((rs + 7 if rs < 3 else rs) - 1)
            self.period = (cycles * GIGA + 16384) // 32768
            self.tp = now + self.period
        else:
            self.tp = -1

    def deadline(self) -> int | None:
        b = self.r[11]
        due = self.tp if self.tp >= 0 else None
        if b & 0x30:
            if self.t2 >= 0:
                at, ahead = self.t2, 0
            elif self.r[10] & 0x70 == 0x20:
                at, ahead = self.nst + UIP_WINDOW, 1
            else:
                return due
            if b & 0x10 and (due is None or at < due):
                due = at
            if b & 0x20:
                alarm = self._next_alarm(at, ahead)
                if alarm is not None and (due is None or alarm < due):
                    due = alarm
        return due

    def _next_alarm(self, at: int, ahead: int) -> int | None:
        t, r = self.t, self.r
        if not (0 <= t[0] < 60 and 0 <= t[1] < 60 and 0 <= t[2] < 24):
            return at
        want = []
        for reg, top in ((5, 24), (3, 60), (1, 60)):
            if r[reg] >= 0xC0:
                want.append(None)
            else:
                v = self._dec(r[reg])
                if v >= top:
                    return None
                want.append(v)
        if want == [None, None, None]:
            return at
        day = (t[2] * 3600 + t[1] * 60 + t[0] + ahead) % 86400
        best = 86400
        for h in (range(24) if want[0] is None else (want[0],)):
            for m in (range(60) if want[1] is None else (want[1],)):
                for s in (range(60) if want[2] is None else (want[2],)):
                    best = min(best, (h * 3600 + m * 60 + s - day) % 86400)
        if not best:
            return at
        return self.nst + best * GIGA + UIP_WINDOW

    # --- handle_rtc_io ------------------------------------------------------------------------

    def access(self, port: int, inward: bool, value: int) -> int:
        """A one-byte IN or OUT: the datum read, -1 for a write Xen handled,
        -2 when it goes on to qemu-dm."""
        now = self.clock()
        self.run(now)
        r = self.r
        if inward:
            if self.idx >= 14:
                return -2
            if not port & 1:
                return 0xFF
            got = r[self.idx]
            if self.idx == 12:
                self._down()
                r[12] = 0
            return got
        value &= 0xFF
        if not port & 1:
            self.idx = value & 0x7F
            return -1 if self.idx < 14 else -2
        i = self.idx
        if i >= 14:
            return -2
        if i in (1, 3, 5):
            r[i] = value
        elif i < 10:
            r[i] = value
            if not r[11] & 0x80:
                self._set()
        elif i == 10:
            r[10] = value & 0x7F | r[10] & 0x80
            self._restart_pie(now)
        elif i == 11:
            if value & 0x80:
                r[10] &= 0x7F
                value &= 0xEF
            elif r[11] & 0x80:
                self._set()
            r[11] = value
            self._restart_pie(now)
        return -1
