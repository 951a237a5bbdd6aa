"""The real-time clock (MC146818A), as Xen 3.0.4 emulates it in the hypervisor.

Room: the clock, alarm and control registers (CMOS 0x00-0x0D), Xen's index
register at port 0x70, the rule that passes the rest of CMOS on to qemu-dm,
the three timers and IRQ8. Imports :mod:`spec.platform`. The VMM
(:mod:`spec.vmm`) owns it; the CMOS RAM from 0x0E on is qemu-dm's
(:mod:`spec.devices.cmos`).

Where it lives. "[HVM] Move RTC emulation into the hypervisor" (October
2006) put the time and interrupt part of the RTC in Xen
(``xen/arch/x86/hvm/rtc.c``; ``RTC_SIZE`` 14 in ``asm-x86/hvm/vpt.h``:
``uint8_t cmos_data[RTC_SIZE]; /* Only handle time/interrupt part in HV
*/``). ``rtc_init(v, RTC_PORT(0), RTC_IRQ)`` registers ports 0x70-0x71
with ``register_portio_handler``, so every access there reaches Xen's
``handle_rtc_io`` first, and it decides:

* an access that is not one byte, or is a string form (``p->data_is_ptr``),
  is claimed and ignored ("HVM_RTC: wrong RTC IO!"): a read leaves the
  datum as it was, a write is dropped;
* a write to 0x70 stores ``cmos_index = data & 0x7f`` (the NMI mask, bit 7,
  is dropped) and is Xen's alone when the index is below 14; an index of
  0x0E or above is *also* passed on, as an ioreq, to qemu-dm, which selects
  the same byte of its CMOS RAM;
* a write to 0x71, and a read of 0x70 or 0x71, is Xen's while
  ``cmos_index`` is below 14, and an ioreq to qemu-dm otherwise. Xen
  answers a read of 0x70 with 0xFF (as qemu-dm does).

So a guest that reads the seconds never makes an ioreq, and one that reads
the boot order at 0x3D makes two (the index write, the data read).

Registers. At ``rtc_init``: A = 0x26 (divider 010: the 32.768 kHz time
base; rate 6), B = 0x02 (24-hour, BCD), C = 0, D = 0x80 (VRT), and the
clock ``current_tm`` = ``gmtime(get_localtime(d))``: the domain's
``rtc_base`` (default 2026-01-01 00:00:00 UTC,
:data:`spec.platform.RTC_DEFAULT_BASE`), copied into 0x00-0x09 at once.
A read of 0x00-0x0D returns the byte as it is stored; a read of C then
clears it and deasserts IRQ8. Writes (``rtc_ioport_write``):

* the alarm registers 1, 3, 5 are stored;
* a time register (0, 2, 4, 6, 7, 8, 9) is stored and, unless B.SET is set,
  the clock is set from all of them at once (``rtc_set_time``:
  ``tm_hour`` from the hours byte without bit 7, plus 12 in 12-hour mode
  when bit 7 is set; ``tm_mon`` = month - 1; ``tm_year`` = year + 100, the
  century never considered; day of week stored as it is written);
* A keeps its UIP bit and takes the rest of the byte; B, with SET, clears
  UIP in A and UIE in the byte written; B without SET, when SET was set,
  sets the clock from the registers; then the byte is stored. Both restart
  the periodic timer (below);
* C and D are read-only.

BCD or binary follows B bit 2 at the moment of each conversion
(``to_bcd``/``from_bcd``); nothing is converted when B changes. Xen's
conversions are as written, whatever the values: ``to_bcd(a)`` is
``(a / 10) << 4 | a % 10`` in a byte, a 12-hour clock shows ``tm_hour %
12`` (0, not 12, at midnight and noon) with bit 7 for PM, and the day of
week shows ``tm_wday``: 0 for Sunday, where the MC146818A and QEMU count 1.

The second. Two Xen timers on the domain's time (the model's virtual
clock, :mod:`spec.clock`: vcpu 0's) keep the clock:

1. ``second_timer2`` first fires one second after ``rtc_init``, and then
   244 µs (``+ 244000`` ns) after each ``second_timer``
   (``rtc_update_second2``): unless SET, copy ``current_tm`` into the
   registers (``rtc_copy_date``); if AIE and the alarm matches
   ``current_tm`` (each of the seconds, minutes and hours alarm bytes is a
   don't-care when its top two bits are set, otherwise ``from_bcd(byte)``
   must equal the field: hours compared with ``tm_hour`` as it is, 0-23),
   ``C |= 0xA0`` (IRQF, AF) and IRQ8 is deasserted and asserted; if UIE,
   ``C |= 0x90`` (IRQF, UF) and IRQ8 deasserted and asserted; clear UIP; the next
   ``second_timer`` is a second after the previous one's time;
2. ``second_timer`` (``rtc_update_second``): if the divider (A bits 6:4) is
   not 010, nothing but the next second is scheduled; otherwise the clock
   advances a second (``rtc_next_second``: a field that reached or passed
   its limit wraps and carries, a day of month past the month's length, by
   ``get_days_in_month`` of ``tm_mon``, starts the next month), UIP is set
   unless SET, and ``second_timer2`` is armed 244 µs later.

So the registers change 244 µs after each whole second (from the second
one: the first copy, at one second, shows the start time again), UIP reads
1 during those 244 µs, and the clock advances under SET too (only the copy
stops); clearing SET sets the clock from the registers, which still show
the time of the last copy.

Periodic interrupt (``rtc_timer_update``, after every write to A or B):
with PIE set and a rate ``rs`` (A bits 3:0) that is not 0, the period is
``1 << (rs - 1)`` cycles of 32.768 kHz (``rs`` 1 and 2 count as 8 and 9:
128 and 256 cycles), ``DIV_ROUND(cycles * 10**9, 32768)`` ns, and
``pie_timer`` is armed one period from *now* (every write to A or B
restarts it); otherwise it stops. Each time it fires
(``rtc_pie_callback``) ``C |= 0xC0`` (IRQF, PF), IRQ8 is asserted and the timer
is armed a period later. The flags of a disabled interrupt are never set:
C shows only what was enabled.

IRQ8 (``hvm_isa_irq_assert``/``hvm_isa_irq_deassert``): the line is Xen's
own, a bit of the domain's ISA lines; asserting it when it was low is a
positive edge on the virtual PIC (the request bit is set), deasserting it
when it was high a negative edge (Xen 3.0.4's ``vpic_irq_negative_edge``
clears the request bit, and a slave with no request left lowers its
cascade on the master). qemu-dm and its event channel are not involved: the
trace has each change as a ``xen_irq`` event.

Timers on the virtual clock. A timer fires at its time; the model runs
every timer that is due, in the order of their times (at equal times the
second timers before ``pie_timer``), whenever it looks at the RTC: before
each access to its ports and at each VM entry (the VMM's interrupt assist,
:mod:`spec.vmm`). Only the timers that can raise IRQ8 are deadlines of the
vcpu (:meth:`VirtualRtc.deadline`): ``pie_timer`` while armed, the next
``second_timer2`` with UIE set, and with AIE set the next one whose
second matches the alarm. So an RTC whose interrupts are disabled never
makes the vcpu exit.

Not modelled: ``rtc_freeze``/``rtc_thaw`` (the periodic timer stops while
vcpu 0 is descheduled with the PIT's periodic time running: the model's
vcpu is never descheduled but by HLT, where Xen does not freeze it) and
save/restore.
"""

from __future__ import annotations

import time
from typing import Callable

from spec import platform

NS = 1_000_000_000
#: ``RTC_SIZE``: Xen's part of CMOS
RTC_SIZE = 14
#: the delay from ``second_timer`` to ``second_timer2`` (the UIP window)
UIP_NS = 244_000

SECONDS, SECONDS_ALARM, MINUTES, MINUTES_ALARM, HOURS, HOURS_ALARM = range(6)
DAY_OF_WEEK, DAY_OF_MONTH, MONTH, YEAR = 6, 7, 8, 9
REG_A, REG_B, REG_C, REG_D = 0x0A, 0x0B, 0x0C, 0x0D
TIME_REGISTERS = (SECONDS, MINUTES, HOURS, DAY_OF_WEEK, DAY_OF_MONTH, MONTH, YEAR)

A_UIP, A_DIV_CTL, A_REF_CLCK_32KHZ, A_RATE_SELECT = 0x80, 0x70, 0x20, 0x0F
B_SET, B_PIE, B_AIE, B_UIE, B_DM_BINARY, B_24H = 0x80, 0x40, 0x20, 0x10, 0x04, 0x02
C_IRQF_PF, C_IRQF_AF, C_IRQF_UF = 0xC0, 0xA0, 0x90
D_VRT = 0x80

#: the ports Xen claims (``register_portio_handler(d, 0x70, 2, ...)``)
PORTS = range(platform.RTC_INDEX_PORT, platform.RTC_INDEX_PORT + 2)


class Tm:
    """The fields of ``struct tm`` the clock keeps (``current_tm``): month
    0-11, year since 1900, day of week 0 = Sunday."""

    __slots__ = ("sec", "min", "hour", "wday", "mday", "mon", "year")

    def __init__(self, sec: int, minute: int, hour: int, wday: int, mday: int, mon: int,
                 year: int) -> None:
        self.sec, self.min, self.hour = sec, minute, hour
        self.wday, self.mday, self.mon, self.year = wday, mday, mon, year

    @classmethod
    def gmtime(cls, seconds: int) -> "Tm":
        t = time.gmtime(seconds)
        return cls(t.tm_sec, t.tm_min, t.tm_hour, (t.tm_wday + 1) % 7, t.tm_mday,
                   t.tm_mon - 1, t.tm_year - 1900)

    def regular(self) -> bool:
        """A time of day that advances by plain arithmetic."""
        return 0 <= self.sec < 60 and 0 <= self.min < 60 and 0 <= self.hour < 24


def days_in_month(month: int, year: int) -> int:
    """``get_days_in_month``: ``month`` 0-11 (31 outside), ``year`` in full."""
    if not 0 <= month < 12:
        return 31
    days = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[month]
    if month == 1 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        days += 1
    return days


def next_second(tm: Tm) -> None:
    """``rtc_next_second``: ``tm`` one second on (the comparisons are
    unsigned in C: only the month can be negative, and it is compared
    signed)."""
    tm.sec += 1
    if tm.sec < 60:
        return
    tm.sec = 0
    tm.min += 1
    if tm.min < 60:
        return
    tm.min = 0
    tm.hour += 1
    if tm.hour < 24:
        return
    tm.hour = 0
    tm.wday += 1
    if tm.wday >= 7:
        tm.wday = 0
    length = days_in_month(tm.mon, tm.year + 1900)
    tm.mday += 1
    if tm.mday < 1:
        tm.mday = 1
    elif tm.mday > length:
        tm.mday = 1
        tm.mon += 1
        if tm.mon >= 12:
            tm.mon = 0
            tm.year += 1


def period_ns(rate: int) -> int:
    """``rtc_timer_update``'s period for rate select ``rate`` (1-15)."""
    code = rate + 7 if rate <= 2 else rate
    cycles = 1 << (code - 1)
    return (cycles * NS + 32768 // 2) // 32768


class VirtualRtc:
    """Xen's ``RTCState`` of one domain. ``clock`` gives the virtual time in
    ns; ``set_irq(level)`` is ``hvm_isa_irq_assert`` (1) or ``_deassert`` (0)
    of IRQ8, called only when the line changes."""

    def __init__(self, clock: Callable[[], int], set_irq: Callable[[int], None],
                 base: int = platform.RTC_DEFAULT_BASE) -> None:
        self.clock = clock
        self.set_irq = set_irq
        self.cmos_data = bytearray(RTC_SIZE)
        self.cmos_index = 0
        self.cmos_data[REG_A] = A_REF_CLCK_32KHZ | 6
        self.cmos_data[REG_B] = B_24H
        self.cmos_data[REG_D] = D_VRT
        self.current_tm = Tm.gmtime(base)
        self._copy_date()
        self.level = 0
        now = clock()
        self.next_second_time = now + NS
        #: the armed timers' times (None: stopped)
        self.second_timer: int | None = None
        self.second_timer2: int | None = self.next_second_time
        self.pie_timer: int | None = None
        self.period = 0

    def claims(self, port: int) -> bool:
        return port in PORTS

    # --- conversions ------------------------------------------------------------------

    def _to_bcd(self, a: int) -> int:
        if self.cmos_data[REG_B] & B_DM_BINARY:
            return a & 0xFF
        return ((a // 10) << 4 | a % 10) & 0xFF

    def _from_bcd(self, a: int) -> int:
        if self.cmos_data[REG_B] & B_DM_BINARY:
            return a
        return (a >> 4) * 10 + (a & 0x0F)

    def _set_time(self) -> None:
        """``rtc_set_time``: the clock from the registers."""
        c, tm = self.cmos_data, self.current_tm
        tm.sec = self._from_bcd(c[SECONDS])
        tm.min = self._from_bcd(c[MINUTES])
        tm.hour = self._from_bcd(c[HOURS] & 0x7F)
        if not c[REG_B] & B_24H and c[HOURS] & 0x80:
            tm.hour += 12
        tm.wday = self._from_bcd(c[DAY_OF_WEEK])
        tm.mday = self._from_bcd(c[DAY_OF_MONTH])
        tm.mon = self._from_bcd(c[MONTH]) - 1
        tm.year = self._from_bcd(c[YEAR]) + 100

    def _copy_date(self) -> None:
        """``rtc_copy_date``: the registers from the clock."""
        c, tm = self.cmos_data, self.current_tm
        c[SECONDS] = self._to_bcd(tm.sec)
        c[MINUTES] = self._to_bcd(tm.min)
        if c[REG_B] & B_24H:
            c[HOURS] = self._to_bcd(tm.hour)
        else:
            c[HOURS] = self._to_bcd(tm.hour % 12) | (0x80 if tm.hour >= 12 else 0)
        c[DAY_OF_WEEK] = self._to_bcd(tm.wday)
        c[DAY_OF_MONTH] = self._to_bcd(tm.mday)
        c[MONTH] = self._to_bcd(tm.mon + 1)
        c[YEAR] = self._to_bcd(tm.year % 100)

    def _alarm_field(self, reg: int, value: int) -> bool:
        alarm = self.cmos_data[reg]
        return alarm & 0xC0 == 0xC0 or self._from_bcd(alarm) == value

    def _alarm_matches(self, tm: Tm) -> bool:
        return (self._alarm_field(SECONDS_ALARM, tm.sec)
                and self._alarm_field(MINUTES_ALARM, tm.min)
                and self._alarm_field(HOURS_ALARM, tm.hour))

    # --- IRQ8 -------------------------------------------------------------------------

    def _assert(self) -> None:
        if not self.level:
            self.level = 1
            self.set_irq(1)

    def _deassert(self) -> None:
        if self.level:
            self.level = 0
            self.set_irq(0)

    # --- the timers -------------------------------------------------------------------

    def _update_second(self) -> None:
        """``rtc_update_second``, at ``next_second_time``."""
        self.second_timer = None
        c = self.cmos_data
        if c[REG_A] & A_DIV_CTL != A_REF_CLCK_32KHZ:
            self.next_second_time += NS
            self.second_timer = self.next_second_time
            return
        next_second(self.current_tm)
        if not c[REG_B] & B_SET:
            c[REG_A] |= A_UIP
        self.second_timer2 = self.next_second_time + UIP_NS

    def _update_second2(self) -> None:
        """``rtc_update_second2``."""
        self.second_timer2 = None
        c = self.cmos_data
        if not c[REG_B] & B_SET:
            self._copy_date()
        if c[REG_B] & B_AIE and self._alarm_matches(self.current_tm):
            c[REG_C] |= C_IRQF_AF
            self._deassert()
            self._assert()
        if c[REG_B] & B_UIE:
            c[REG_C] |= C_IRQF_UF
            self._deassert()
            self._assert()
        c[REG_A] &= ~A_UIP & 0xFF
        self.next_second_time += NS
        self.second_timer = self.next_second_time

    def _pie(self, at: int, now: int) -> None:
        """``rtc_pie_callback`` at ``at``; the ones due by ``now`` after it
        repeat what it did (the line is still asserted), so they are run
        as one."""
        self.cmos_data[REG_C] |= C_IRQF_PF
        self._assert()
        self.pie_timer = at + self.period * ((now - at) // self.period + 1)

    def run(self, now: int) -> None:
        """Fire every timer due by ``now``, in order."""
        while True:
            due = [(t, order) for order, t in enumerate(
                (self.second_timer, self.second_timer2, self.pie_timer))
                if t is not None and t <= now]
            if not due:
                return
            at, which = min(due)
            if which == 0:
                self._update_second()
            elif which == 1:
                self._update_second2()
            else:
                self._pie(at, now if self._no_second_before(now) else at)

    def _no_second_before(self, now: int) -> bool:
        """No second timer is due by ``now``: the periodic timer's repeats
        up to ``now`` may be run at once."""
        return all(t is None or t > now for t in (self.second_timer, self.second_timer2))

    def _timer_update(self, now: int) -> None:
        """``rtc_timer_update``: restart or stop the periodic timer."""
        c = self.cmos_data
        rate = c[REG_A] & A_RATE_SELECT
        if rate and c[REG_B] & B_PIE:
            self.period = period_ns(rate)
            self.pie_timer = now + self.period
        else:
            self.pie_timer = None

    def _next_update2(self) -> tuple[int, int] | None:
        """(time of the next ``second_timer2``, seconds ``current_tm`` will
        have advanced by then), or None when no second will be updated. The
        ones after it come at ``next_second_time + UIP_NS`` plus whole
        seconds (the first one of all, at one second, had no UIP delay)."""
        if self.second_timer2 is not None:
            return self.second_timer2, 0
        if self.cmos_data[REG_A] & A_DIV_CTL != A_REF_CLCK_32KHZ:
            return None
        return self.next_second_time + UIP_NS, 1

    def _alarm_after(self, first: int, ahead: int) -> int | None:
        """The time of the first ``second_timer2`` from ``first`` (when the
        clock will be ``ahead`` seconds on) whose clock matches the alarm:
        the ``j``-th one after ``first`` comes at ``next_second_time + j s +
        UIP_NS``."""
        tm = self.current_tm
        if not tm.regular():
            return first                       # step by step until the clock is regular
        choices = []
        for reg, limit in ((HOURS_ALARM, 24), (MINUTES_ALARM, 60), (SECONDS_ALARM, 60)):
            alarm = self.cmos_data[reg]
            if alarm & 0xC0 == 0xC0:
                choices.append(None)
                continue
            value = self._from_bcd(alarm)
            if value >= limit:
                return None                    # a field the clock never shows
            choices.append(value)
        now_s = (tm.hour * 3600 + tm.min * 60 + tm.sec + ahead) % 86400
        if choices == [None, None, None]:
            return first
        hours = range(24) if choices[0] is None else (choices[0],)
        minutes = range(60) if choices[1] is None else (choices[1],)
        seconds = range(60) if choices[2] is None else (choices[2],)
        wait = min((h * 3600 + m * 60 + s - now_s) % 86400
                   for h in hours for m in minutes for s in seconds)
        if wait == 0:
            return first
        return self.next_second_time + wait * NS + UIP_NS

    def deadline(self) -> int | None:
        """The next timer that can raise IRQ8 (module docstring), or None."""
        b = self.cmos_data[REG_B]
        times = [self.pie_timer]
        update = self._next_update2() if b & (B_UIE | B_AIE) else None
        if update is not None:
            if b & B_UIE:
                times.append(update[0])
            if b & B_AIE:
                times.append(self._alarm_after(*update))
        return min((t for t in times if t is not None), default=None)

    # --- ports ------------------------------------------------------------------------

    def intercept(self, port: int, size: int, direction: str, value: int,
                  string: bool) -> tuple[bool, int | None]:
        """``handle_rtc_io``: (True, datum) when Xen handled the access (the
        datum of a read, None when it leaves it as it was), (False, None)
        when it goes on to qemu-dm."""
        if size != 1 or string:
            return True, None
        now = self.clock()
        self.run(now)
        if direction == "out":
            return self._write(port, value & 0xFF, now), None
        if self.cmos_index >= RTC_SIZE:
            return False, None
        return True, self._read(port)

    def _read(self, port: int) -> int:
        """``rtc_ioport_read``."""
        if port & 1 == 0:
            return 0xFF
        index = self.cmos_index
        value = self.cmos_data[index]
        if index == REG_C:
            self._deassert()
            self.cmos_data[REG_C] = 0
        return value

    def _write(self, port: int, data: int, now: int) -> bool:
        """``rtc_ioport_write``: True if Xen handled it."""
        if port & 1 == 0:
            self.cmos_index = data & 0x7F
            return self.cmos_index < RTC_SIZE
        index, c = self.cmos_index, self.cmos_data
        if index >= RTC_SIZE:
            return False
        if index in (SECONDS_ALARM, MINUTES_ALARM, HOURS_ALARM):
            c[index] = data
        elif index in TIME_REGISTERS:
            c[index] = data
            if not c[REG_B] & B_SET:
                self._set_time()
        elif index == REG_A:
            c[REG_A] = data & ~A_UIP | c[REG_A] & A_UIP
            self._timer_update(now)
        elif index == REG_B:
            if data & B_SET:
                c[REG_A] &= ~A_UIP & 0xFF
                data &= ~B_UIE
            elif c[REG_B] & B_SET:
                self._set_time()
            c[REG_B] = data
            self._timer_update(now)
        return True
