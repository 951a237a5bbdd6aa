"""The MC146818 RTC and CMOS: spec.devices.rtc and impl.rtc, register by register.

Every check runs on both devices (the spec's and impl's independent code),
then a hypothesis differential drives both with the same random accesses
and clock steps."""

import pytest
from hypothesis import given, settings, strategies as st

from impl import rtc as impl_rtc
from spec import platform
from spec.devices import rtc as spec_rtc

NS = 1_000_000_000


class Clock:
    def __init__(self, now: int = 0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class Device:
    """One RTC behind ports 0x70/0x71, with its clock and IRQ8 levels."""

    def __init__(self, engine: str, memory: int = 16 << 20,
                 base: int = platform.RTC_DEFAULT_BASE, boot: str = "c") -> None:
        self.clock = Clock()
        self.irqs: list[int] = []
        if engine == "spec":
            self.dev = spec_rtc.Rtc(self.clock, self.irqs.append, memory, base, boot)
            self._read, self._write = self.dev.io_read, self.dev.io_write
            self.deadline, self.expire = self.dev.next_deadline, self.dev.expire
        else:
            self.dev = impl_rtc.Rtc(self.clock, self.irqs.append, memory, base, boot)
            self._read, self._write = self.dev.read, self.dev.write
            self.deadline, self.expire = self.dev.deadline, self.dev.timer

    def get(self, index: int) -> int:
        self._write(0, 1, index)
        return self._read(1, 1)

    def put(self, index: int, value: int) -> None:
        self._write(0, 1, index)
        self._write(1, 1, value)


ENGINES = ["spec", "impl"]


@pytest.fixture(params=ENGINES)
def rtc(request):
    return Device(request.param)


def test_reset_registers_and_default_time(rtc):
    # 2026-01-01 00:00:00 is a Thursday (day of week 5, Sunday = 1), BCD, 24-hour
    assert [rtc.get(i) for i in (0, 2, 4, 6, 7, 8, 9, 0x32)] == \
        [0x00, 0x00, 0x00, 0x05, 0x01, 0x01, 0x26, 0x20]
    assert rtc.get(0x0A) == 0x26
    assert rtc.get(0x0B) == 0x02
    assert rtc.get(0x0C) == 0x00
    assert rtc.get(0x0D) == 0x80
    assert rtc._read(0, 1) == 0xFF                     # the index port is write-only


def test_time_runs_on_the_virtual_clock(rtc):
    rtc.clock.now = 3_723 * NS + 5                    # 1 h 2 min 3 s later
    assert [rtc.get(i) for i in (0, 2, 4)] == [0x03, 0x02, 0x01]
    rtc.clock.now = 86_400 * 59 * NS                  # 59 days: 2026-03-01, a Sunday
    assert [rtc.get(i) for i in (6, 7, 8, 9)] == [0x01, 0x01, 0x03, 0x26]


def test_binary_and_12_hour_modes(rtc):
    rtc.clock.now = (13 * 3600 + 45 * 60 + 30) * NS   # 13:45:30
    rtc.put(0x0B, 0x06)                               # binary, 24-hour
    assert [rtc.get(i) for i in (0, 2, 4, 0x32)] == [30, 45, 13, 20]
    rtc.put(0x0B, 0x04)                               # binary, 12-hour: 1 PM
    assert rtc.get(4) == 0x81
    rtc.put(0x0B, 0x00)                               # BCD, 12-hour
    assert rtc.get(4) == 0x81
    rtc.clock.now = 0
    assert rtc.get(4) == 0x12                         # midnight is 12 AM


def test_set_freezes_and_sets_the_time(rtc):
    rtc.clock.now = NS // 2
    rtc.put(0x0B, 0x82 | 0x10)                        # SET (and UIE, which SET clears)
    assert rtc.get(0x0B) == 0x82
    rtc.clock.now = 5 * NS
    assert rtc.get(0) == 0x00                         # frozen
    for index, value in ((0x32, 0x19), (9, 0x99), (8, 0x12), (7, 0x31), (4, 0x23),
                         (2, 0x59), (0, 0x58)):
        rtc.put(index, value)
    assert rtc.get(0x0A) & 0x80 == 0                  # no UIP while SET
    rtc.put(0x0B, 0x02)                               # runs from what was set
    rtc.clock.now = 7 * NS                            # +2 s, phase kept (.5 s)
    assert [rtc.get(i) for i in (0, 2, 4, 7, 8, 9, 0x32)] == \
        [0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x20]
    assert rtc.get(6) == 0x07                         # 2000-01-01 was a Saturday


def test_write_while_running_sets_the_clock(rtc):
    rtc.clock.now = 10 * NS
    rtc.put(2, 0x30)                                  # minutes := 30
    rtc.clock.now = 11 * NS
    assert [rtc.get(0), rtc.get(2)] == [0x11, 0x30]


def test_update_in_progress_window(rtc):
    rtc.clock.now = NS - 244_141
    assert rtc.get(0x0A) == 0x26
    rtc.clock.now = NS - 244_140
    assert rtc.get(0x0A) == 0xA6
    rtc.clock.now = NS
    assert rtc.get(0x0A) == 0x26


def test_periodic_interrupt(rtc):
    assert rtc.deadline() is None                     # nothing enabled: no timer
    rtc.put(0x0B, 0x42)                               # PIE, rate 6 = 1024 Hz
    assert rtc.deadline() == 976_563                  # ceil(10**9 / 1024)
    rtc.clock.now = 976_563
    rtc.expire(rtc.clock.now)
    assert rtc.irqs == [1]
    assert rtc.deadline() == 1_953_125
    assert rtc.get(0x0C) == 0xC0                      # IRQF | PF; the read lowers IRQ8
    assert rtc.irqs == [1, 0]
    assert rtc.get(0x0C) == 0x00
    rtc.put(0x0A, 0x23)                               # rate 3: 8192 Hz, 4 cycles
    assert rtc.deadline() == 1_098_633                # the 9th edge: ceil(9 * 4e9 / 32768)
    rtc.put(0x0A, 0x21)                               # rate 1: 128 cycles, 256 Hz
    assert rtc.deadline() == 3_906_250


def test_flags_without_enables_raise_nothing(rtc):
    rtc.clock.now = 2 * NS + 1
    assert rtc.get(0x0C) == 0x50                      # PF and UF, no IRQF
    assert rtc.irqs == []


def test_update_ended_interrupt(rtc):
    rtc.clock.now = 300
    rtc.put(0x0B, 0x12)                               # UIE
    assert rtc.deadline() == NS
    rtc.clock.now = NS
    rtc.expire(NS)
    assert rtc.irqs == [1]
    assert rtc.get(0x0C) == 0xD0                      # IRQF | PF (rate 6 ran too) | UF


def test_alarm_with_dont_care(rtc):
    rtc.put(1, 0x05)                                  # at hh:mm:05 ...
    rtc.put(3, 0xC0)                                  # ... any minute
    rtc.put(5, 0xFF)                                  # ... any hour
    rtc.put(0x0B, 0x22)                               # AIE
    assert rtc.deadline() == 5 * NS
    rtc.clock.now = 5 * NS
    rtc.expire(rtc.clock.now)
    assert rtc.get(0x0C) & 0xA0 == 0xA0               # IRQF | AF
    assert rtc.deadline() == 65 * NS                  # the next minute
    rtc.put(1, 0xC0)                                  # everything don't care: every second
    assert rtc.deadline() == 6 * NS                   # the next second
    rtc.put(1, 0x60)                                  # an impossible second: never
    assert rtc.deadline() is None


def test_alarm_exact_time_next_day(rtc):
    rtc.clock.now = 3600 * NS                          # 01:00:00
    rtc.put(1, 0x00)
    rtc.put(3, 0x30)
    rtc.put(5, 0x00)                                  # 00:30:00 -> tomorrow
    rtc.put(0x0B, 0x22)
    assert rtc.deadline() == (86_400 + 1800) * NS


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("mib, expect", [
    (16, {0x15: 0x80, 0x16: 0x02, 0x17: 0x00, 0x18: 0x3C, 0x30: 0x00, 0x31: 0x3C,
          0x34: 0x00, 0x35: 0x00, 0x5B: 0, 0x5C: 0, 0x5D: 0}),
    (1, {0x15: 0x80, 0x16: 0x02, 0x17: 0, 0x18: 0, 0x34: 0, 0x35: 0}),
    (64, {0x17: 0x00, 0x18: 0xFC, 0x34: 0x00, 0x35: 0x03}),           # 0xfc00 KiB, 0x300 blocks
    (128, {0x17: 0xFF, 0x18: 0xFF, 0x34: 0x00, 0x35: 0x07}),          # capped; 0x700 blocks
    (8192, {0x17: 0xFF, 0x18: 0xFF, 0x30: 0xFF, 0x31: 0xFF, 0x34: 0x00, 0x35: 0xEF,
            0x5B: 0x00, 0x5C: 0x10, 0x5D: 0x01}),     # 4 GiB + 256 MiB above 4 GiB: 0x11000
])
def test_memory_size_bytes(engine, mib, expect):
    rtc = Device(engine, memory=mib << 20)
    assert {i: rtc.get(i) for i in expect} == expect


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("boot, b3d, b38", [
    ("c", 0x02, 0x00), ("d", 0x03, 0x00), ("dc", 0x23, 0x00), ("cda", 0x32, 0x10),
    ("a", 0x01, 0x00)])
def test_the_bios_reads_its_boot_order_and_equipment(engine, boot, b3d, b38):
    """Xen 3.0.4 qemu-dm's cmos_init: rombios boots from nothing when 0x3D is 0."""
    rtc = Device(engine, boot=boot)
    assert (rtc.get(0x3D), rtc.get(0x38)) == (b3d, b38)
    assert (rtc.get(0x14), rtc.get(0x10), rtc.get(0x12)) == (0x06, 0, 0)


def test_c_and_d_are_read_only(rtc):
    rtc.put(0x0D, 0x00)
    rtc.put(0x0C, 0xFF)
    assert rtc.get(0x0D) == 0x80
    assert rtc.get(0x0C) == 0x00
    rtc.put(0x40, 0x5A)                               # RAM
    assert rtc.get(0x40) == 0x5A
    rtc.put(0x0A, 0xFF)                               # UIP is read-only
    assert rtc.get(0x0A) == 0x7F


def test_nmi_mask_bit_selects_the_same_byte(rtc):
    rtc.put(0x40 | 0x80, 0x11)
    assert rtc.get(0x40) == 0x11


_access = st.one_of(
    st.tuples(st.just("read"), st.sampled_from([0, 1, 2, 4, 6, 7, 8, 9, 0x0A, 0x0B, 0x0C,
                                                0x0D, 0x32, 0x15, 0x40])),
    st.tuples(st.just("write"), st.sampled_from([0, 1, 2, 3, 4, 5, 7, 8, 9, 0x0A, 0x0B,
                                                 0x0C, 0x32, 0x40]), st.integers(0, 255)),
    st.tuples(st.just("wait"), st.integers(0, 3 * NS)),
    st.tuples(st.just("timer")),
)


@settings(max_examples=250, derandomize=True, deadline=None)
@given(st.lists(_access, max_size=30), st.integers(0, 4_000_000_000))
def test_spec_and_impl_agree(steps, base):
    a, b = Device("spec", base=base), Device("impl", base=base)
    for step in steps:
        if step[0] == "read":
            assert a.get(step[1]) == b.get(step[1]), step
        elif step[0] == "write":
            a.put(step[1], step[2])
            b.put(step[1], step[2])
        elif step[0] == "wait":
            a.clock.now += step[1]
            b.clock.now += step[1]
        else:
            due = a.deadline()
            assert due == b.deadline()
            if due is not None:
                a.clock.now = b.clock.now = due
                a.expire(due)
                b.expire(due)
        assert a.irqs == b.irqs
    assert a.deadline() == b.deadline()
