"""The CMOS RAM and real-time clock (Motorola MC146818A), as qemu-dm emulates it.

Room: ports 0x70/0x71 (:data:`spec.platform.RTC_INDEX_PORT`), the 128
bytes of CMOS, the clock registers running on the virtual clock, and the
RTC's three interrupts on IRQ8. Sources: the MC146818A data sheet
(Motorola, "MC146818A Real-Time Clock Plus RAM"), QEMU's
``hw/rtc/mc146818rtc.c`` (the device Xen's qemu-dm inherits), and QEMU's
``pc_cmos_init`` for the bytes a BIOS reads. Imports :mod:`spec.platform`.

Ports. A write to 0x70 selects the CMOS byte ``value & 0x7F``; bit 7 is the
NMI mask (stored; the model has no NMI source). 0x70 reads as 0xFF (it is
write-only). 0x71 reads and writes the selected byte.

========  ===========================================================
index     register
========  ===========================================================
0, 2, 4   seconds, minutes, hours (12-hour mode: 1-12, bit 7 = PM)
1, 3, 5   seconds, minutes, hours alarm (0xC0-0xFF: "don't care")
6, 7, 8   day of week (1 = Sunday), day of month, month
9, 0x32   year within the century, century
0x0A      A: UIP (bit 7, read-only), divider (6:4), rate select (3:0)
0x0B      B: SET (7), PIE (6), AIE (5), UIE (4), SQWE (3), DM binary (2),
          24-hour (1), DSE (0)
0x0C      C (read-only): IRQF (7), PF (6), AF (5), UF (4); a read clears
          it and lowers IRQ8
0x0D      D (read-only): VRT (bit 7, valid RAM and time) = 0x80
others    battery-backed RAM
========  ===========================================================

The clock. Time is kept in nanoseconds since the epoch, ``T(now) = base +
(now - start)`` on the virtual clock (:mod:`spec.clock`: a
nanosecond per guest instruction, plus the bus time of I/O accesses); it starts at the domain's ``rtc_base`` (default
2026-01-01 00:00:00, :data:`spec.platform.RTC_DEFAULT_BASE`). The clock
registers show ``T // 10**9`` broken down (UTC, proleptic Gregorian) in BCD
(B.DM = 0) or binary (B.DM = 1), in 24- or 12-hour form (B bit 1): reset
values A = 0x26, B = 0x02 (BCD, 24-hour), as QEMU's ``rtc_realizefn``.
An *update* happens at each whole second of ``T``.

SET. While B.SET = 1 the registers are not updated: setting SET latches the
current time into them (and clears UIE, as QEMU does); the guest may then
write them. Clearing SET makes the clock run from what the registers hold,
keeping the sub-second phase (QEMU's ``offset``). A time register written
while SET = 0 sets the clock at once from all the registers. The guest's
date is converted with QEMU's ``mktimegm`` formula (days of month beyond
the month's end run into the next), century from 0x32; day of week is
recomputed, never stored.

UIP. Register A bit 7 reads 1 during the last 244.140625 µs (8 cycles of
the 32.768 kHz time base, QEMU's ``UIP_HOLD_LENGTH``) before each update,
and never while SET = 1.

Interrupts. Register C's flags are set whether or not they are enabled:

* PF at every edge of the periodic rate: rate select ``rs`` in register A
  gives a period of ``2**(rs-1)`` cycles of 32.768 kHz (rs = 1, 2 give
  128 and 256 cycles, as with the 32.768 kHz time base; rs = 0: none).
  Edges lie on the grid ``k * period`` from power-on (virtual time 0);
* UF at every update (none while SET = 1);
* AF at an update whose new time matches the alarm registers, each field
  matching when equal or when its top two bits are set (0xC0 "don't care").

When a flag is set and enabled in B (PIE, AIE, UIE), IRQF is set and IRQ8
is raised; it stays raised until the guest reads C. Flags are computed on
the virtual clock when C is read or a register changes; only the *enabled*
events are timer deadlines of qemu-dm (:meth:`Rtc.next_deadline`), so an
RTC with no enabled interrupt never makes the vcpu exit. The divider bits
of A are stored; the time base is always 32.768 kHz (a divider reset,
DV = 110/111, is not modelled).

Memory size bytes (QEMU ``pc_cmos_init``; RAM below 4 GiB ends at
:data:`spec.platform.HVM_BELOW_4G_RAM_END` on Xen): 0x15/0x16 base memory
in KiB (at most 640), 0x17/0x18 and 0x30/0x31 KiB above 1 MiB (at most
0xFFFF), 0x34/0x35 64 KiB blocks above 16 MiB (at most 0xFFFF), 0x5B-0x5D
64 KiB blocks above 4 GiB.

The BIOS's configuration bytes (Xen 3.0.4 qemu-dm, ``tools/ioemu/hw/pc.c``
``cmos_init``; :func:`cmos_config_bytes`): the boot order at 0x3D (first
device in bits 3:0, second in 7:4) and 0x38 (third in bits 7:4; bit 0 set
would skip the floppy boot signature check, which qemu-dm leaves clear), in
the codes 1 floppy, 2 hard disk, 3 CD-ROM (``get_bios_disk``); the
equipment byte 0x14 = 0x06 (an FPU, a PS/2 mouse, no floppy drive, EGA/VGA
display); 0x10 (floppy types) and 0x12 (hard disk types) 0: the platform has
no floppy controller, and no disk yet. rombios reads 0x3D and 0x38 to
choose where it boots from: with 0 there it tries nothing.
"""

from __future__ import annotations

from typing import Callable

from spec import platform

NS = 1_000_000_000
TIME_BASE_HZ = 32_768
UIP_HOLD_NS = 8 * NS // TIME_BASE_HZ        # 244140 (244.140625 us, truncated as QEMU)

SECONDS, SECONDS_ALARM, MINUTES, MINUTES_ALARM, HOURS, HOURS_ALARM = range(6)
DAY_OF_WEEK, DAY_OF_MONTH, MONTH, YEAR = 6, 7, 8, 9
REG_A, REG_B, REG_C, REG_D = 0x0A, 0x0B, 0x0C, 0x0D
TIME_REGISTERS = (SECONDS, MINUTES, HOURS, DAY_OF_WEEK, DAY_OF_MONTH, MONTH, YEAR,
                  platform.RTC_CENTURY)

A_UIP = 0x80
B_SET, B_PIE, B_AIE, B_UIE, B_DM, B_24H = 0x80, 0x40, 0x20, 0x10, 0x04, 0x02
C_IRQF, C_PF, C_AF, C_UF = 0x80, 0x40, 0x20, 0x10
D_VRT = 0x80


def _cdiv(a: int, b: int) -> int:
    """C's integer division (truncation toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def mktimegm(year: int, month: int, day: int, hour: int, minute: int, second: int) -> int:
    """Seconds since the epoch of a broken-down UTC time, by QEMU's
    ``mktimegm`` (util/cutils.c): no validation, out-of-range fields run on."""
    if month < 3:
        month += 12
        year -= 1
    days = (day + _cdiv(153 * month - 457, 5) + 365 * year + _cdiv(year, 4)
            - _cdiv(year, 100) + _cdiv(year, 400) - 719469)
    return 86400 * days + 3600 * hour + 60 * minute + second


def broken_down(seconds: int) -> tuple[int, int, int, int, int, int, int]:
    """(year, month, day, hour, minute, second, weekday 0 = Sunday) of
    ``seconds`` since the epoch, UTC, proleptic Gregorian calendar."""
    days, rest = divmod(seconds, 86400)
    weekday = (days + 4) % 7                         # 1970-01-01 was a Thursday
    z = days + 719468                                # civil from days (era of 400 years)
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    return year, month, day, rest // 3600, rest // 60 % 60, rest % 60, weekday


def cmos_memory_bytes(memory: int) -> dict[int, int]:
    """The memory-size bytes of CMOS for a domain of ``memory`` bytes."""
    below = min(memory, platform.HVM_BELOW_4G_RAM_END)
    above = memory - below
    base = min(below // 1024, 640)
    ext = min((below - (1 << 20)) // 1024 if below > 1 << 20 else 0, 0xFFFF)
    high = min((below - (16 << 20)) // 65536 if below > 16 << 20 else 0, 0xFFFF)
    top = above // 65536
    return {0x15: base & 0xFF, 0x16: base >> 8 & 0xFF,
            0x17: ext & 0xFF, 0x18: ext >> 8, 0x30: ext & 0xFF, 0x31: ext >> 8,
            0x34: high & 0xFF, 0x35: high >> 8,
            0x5B: top & 0xFF, 0x5C: top >> 8 & 0xFF, 0x5D: top >> 16 & 0xFF}


#: the equipment byte: FPU (bit 1), PS/2 mouse (bit 2); no floppy (bits 0, 7:6)
EQUIPMENT = 0x02 | 0x04


def cmos_config_bytes(boot: str) -> dict[int, int]:
    """The BIOS's configuration bytes for the boot order ``boot`` (module
    docstring)."""
    codes = [platform.BOOT_DEVICES[c] for c in boot] + [0, 0]
    return {0x3D: codes[0] | codes[1] << 4, 0x38: codes[2] << 4,
            0x10: 0, 0x12: 0, 0x14: EQUIPMENT}


def alarm_matches(alarm: int, value: int) -> bool:
    """One alarm field against the time's field (both as the guest sees
    them, after conversion): equal, or a don't-care code (top bits 11)."""
    return alarm & 0xC0 == 0xC0 or alarm == value


class Rtc:
    """The MC146818A of one domain, with its CMOS RAM."""

    sizes = (1,)

    def __init__(self, clock: Callable[[], int], set_irq: Callable[[int], None],
                 memory: int, base: int = platform.RTC_DEFAULT_BASE, boot: str = "c") -> None:
        self.name = "rtc"
        self.clock = clock
        self.set_irq = set_irq
        self.cmos = bytearray(platform.RTC_CMOS_SIZE)
        for index, value in {**cmos_memory_bytes(memory), **cmos_config_bytes(boot)}.items():
            self.cmos[index] = value
        self.cmos[REG_A], self.cmos[REG_B], self.cmos[REG_D] = 0x26, B_24H, D_VRT
        self.index = 0
        self.nmi_masked = False
        #: the clock: T(now) = epoch_ns + (now - start_ns)
        self.epoch_ns = base * NS
        self.start_ns = clock()
        #: the time up to which register C's flags have been computed
        self.flags_until = self.start_ns
        self.irq_level = 0

    # --- time ------------------------------------------------------------------------

    def time_ns(self, now: int) -> int:
        """``T(now)``: nanoseconds since the epoch (the clock runs on under SET)."""
        return self.epoch_ns + (now - self.start_ns)

    def running(self) -> bool:
        return not self.cmos[REG_B] & B_SET

    def _to_reg(self, value: int) -> int:
        if self.cmos[REG_B] & B_DM:
            return value & 0xFF
        return ((value // 10 % 10) << 4 | value % 10) & 0xFF

    def _from_reg(self, value: int) -> int:
        if self.cmos[REG_B] & B_DM:
            return value
        return (value >> 4) * 10 + (value & 0x0F)

    def _hour_to_reg(self, hour: int) -> int:
        if self.cmos[REG_B] & B_24H:
            return self._to_reg(hour)
        return self._to_reg(hour % 12 or 12) | (0x80 if hour >= 12 else 0)

    def _hour_from_reg(self, value: int) -> int:
        if self.cmos[REG_B] & B_24H:
            return self._from_reg(value)
        return self._from_reg(value & 0x7F) % 12 + (12 if value & 0x80 else 0)

    def time_registers(self, seconds: int) -> dict[int, int]:
        """The clock registers showing ``seconds`` since the epoch."""
        year, month, day, hour, minute, second, weekday = broken_down(seconds)
        return {SECONDS: self._to_reg(second), MINUTES: self._to_reg(minute),
                HOURS: self._hour_to_reg(hour), DAY_OF_WEEK: self._to_reg(weekday + 1),
                DAY_OF_MONTH: self._to_reg(day), MONTH: self._to_reg(month),
                YEAR: self._to_reg(year % 100), platform.RTC_CENTURY: self._to_reg(year // 100)}

    def _latch(self, now: int) -> None:
        for index, value in self.time_registers(self.time_ns(now) // NS).items():
            self.cmos[index] = value

    def _registers_seconds(self) -> int:
        c = self.cmos
        year = self._from_reg(c[platform.RTC_CENTURY]) * 100 + self._from_reg(c[YEAR])
        return mktimegm(year, self._from_reg(c[MONTH]), self._from_reg(c[DAY_OF_MONTH]),
                        self._hour_from_reg(c[HOURS]), self._from_reg(c[MINUTES]),
                        self._from_reg(c[SECONDS]))

    def _set_clock(self, now: int) -> None:
        """Run the clock from the registers, keeping the sub-second phase."""
        phase = self.time_ns(now) % NS
        self.epoch_ns = self._registers_seconds() * NS + phase
        self.start_ns = now

    def update_in_progress(self, now: int) -> bool:
        return self.running() and self.time_ns(now) % NS >= NS - UIP_HOLD_NS

    # --- events ----------------------------------------------------------------------

    def period_cycles(self) -> int | None:
        """The periodic interrupt's period in 32.768 kHz cycles, or None."""
        rs = self.cmos[REG_A] & 0x0F
        if rs == 0:
            return None
        return 1 << (rs + 6 if rs <= 2 else rs - 1)

    def _edges(self, t: int, period: int) -> int:
        """Periodic edges at virtual times in (0, t]."""
        return t * TIME_BASE_HZ // (period * NS)

    def next_periodic(self, now: int) -> int | None:
        period = self.period_cycles()
        if period is None:
            return None
        k = self._edges(now, period) + 1
        return -(-k * period * NS // TIME_BASE_HZ)

    def next_update(self, now: int) -> int | None:
        """The virtual time of the next update, or None while SET."""
        if not self.running():
            return None
        t = self.time_ns(now)
        return now + (t // NS + 1) * NS - t

    def _alarm_second_after(self, second: int) -> int | None:
        """The first whole second after ``second`` whose time matches the
        alarm registers, or None if none ever does."""
        c = self.cmos
        if all(c[reg] & 0xC0 == 0xC0 for reg in (HOURS_ALARM, MINUTES_ALARM, SECONDS_ALARM)):
            return second + 1
        fields = []
        for reg, limit in ((HOURS_ALARM, 24), (MINUTES_ALARM, 60), (SECONDS_ALARM, 60)):
            if c[reg] & 0xC0 == 0xC0:
                fields.append(range(limit))
                continue
            value = self._hour_from_reg(c[reg]) if reg == HOURS_ALARM else self._from_reg(c[reg])
            # the alarm compares register contents: a value the clock never shows never matches
            shown = self._hour_to_reg(value) if reg == HOURS_ALARM else self._to_reg(value)
            if not 0 <= value < limit or shown != c[reg]:
                return None
            fields.append(range(value, value + 1))
        day_start = second - second % 86400
        times = [h * 3600 + m * 60 + s for h in fields[0] for m in fields[1] for s in fields[2]]
        later = [t for t in times if day_start + t > second]
        return day_start + (later[0] if later else 86400 + times[0])

    def next_alarm(self, now: int) -> int | None:
        if not self.running():
            return None
        t = self.time_ns(now)
        second = self._alarm_second_after(t // NS)
        if second is None:
            return None
        return now + second * NS - t

    def _accumulate(self, now: int) -> None:
        """Set register C's flags for the events in ``(flags_until, now]``,
        then IRQF and IRQ8 for the enabled ones."""
        last, self.flags_until = self.flags_until, now
        flags = 0
        period = self.period_cycles()
        if period is not None and self._edges(now, period) > self._edges(last, period):
            flags |= C_PF
        if self.running():
            update = self.next_update(last)
            if update is not None and update <= now:
                flags |= C_UF
            alarm = self.next_alarm(last)
            if alarm is not None and alarm <= now:
                flags |= C_AF
        self.cmos[REG_C] |= flags
        self._sync_irq()

    def _sync_irq(self) -> None:
        if self.cmos[REG_C] & self.cmos[REG_B] & (C_PF | C_AF | C_UF):
            self.cmos[REG_C] |= C_IRQF
        if self.cmos[REG_C] & C_IRQF and not self.irq_level:
            self.irq_level = 1
            self.set_irq(1)

    def next_deadline(self) -> int | None:
        """The next enabled RTC event (IRQ8), or None."""
        now, b = self.clock(), self.cmos[REG_B]
        times = [self.next_periodic(now) if b & B_PIE else None,
                 self.next_update(now) if b & B_UIE else None,
                 self.next_alarm(now) if b & B_AIE else None]
        return min((t for t in times if t is not None), default=None)

    def expire(self, now: int) -> None:
        """qemu-dm's timer at or after a deadline."""
        self._accumulate(now)

    # --- ports ------------------------------------------------------------------------

    def io_read(self, offset: int, size: int) -> int:
        if offset == 0:
            return 0xFF
        now, index = self.clock(), self.index
        if index in TIME_REGISTERS and self.running():
            return self.time_registers(self.time_ns(now) // NS)[index]
        if index == REG_A:
            return self.cmos[REG_A] & 0x7F | (A_UIP if self.update_in_progress(now) else 0)
        if index == REG_C:
            self._accumulate(now)
            value, self.cmos[REG_C] = self.cmos[REG_C], 0
            if self.irq_level:
                self.irq_level = 0
                self.set_irq(0)
            return value
        return self.cmos[index]

    def io_write(self, offset: int, size: int, value: int) -> None:
        if offset == 0:
            self.index, self.nmi_masked = value & 0x7F, bool(value & 0x80)
            return
        now, index = self.clock(), self.index
        if index in (REG_C, REG_D):
            return                                  # read-only
        self._accumulate(now)                       # events so far, under the old settings
        if index in TIME_REGISTERS:
            if self.running():
                self._latch(now)
                self.cmos[index] = value
                self._set_clock(now)
            else:
                self.cmos[index] = value
        elif index == REG_A:
            self.cmos[REG_A] = value & 0x7F
        elif index == REG_B:
            was_set = not self.running()
            if value & B_SET:
                if not was_set:
                    self._latch(now)
                value &= ~B_UIE
            elif was_set:
                self._set_clock(now)                # in the format the registers were set in
            self.cmos[REG_B] = value
        else:
            self.cmos[index] = value
        self.flags_until = now
        self._sync_irq()
