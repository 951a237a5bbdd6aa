"""The RTC and CMOS split as in Xen 3.0.4: Xen's clock registers
(spec.devices.rtc, impl.rtc) in front of qemu-dm's CMOS RAM
(spec.devices.cmos, impl.cmos), register by register, then whole guests.

Every device check runs on both engines' independent code, behind the same
routing Xen's ``handle_rtc_io`` does (an access Xen does not handle goes on
to qemu-dm, and is recorded as an ioreq); a hypothesis differential drives
both with the same random accesses and clock steps. The guest tests run on
both engines with equal traces (``both``)."""

import pathlib
import tempfile

import pytest
from hypothesis import given, settings, strategies as st

from impl import cmos as impl_cmos
from impl import rtc as impl_rtc
from spec import loader, platform, trace
from spec.devices import cmos as spec_cmos
from spec.devices import rtc as spec_rtc
from tests.conftest import both

NS = 1_000_000_000
UIP = 244_000           # second_timer -> second_timer2


class Clock:
    def __init__(self, now: int = 0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class Device:
    """Xen's RTC in front of qemu-dm's CMOS at ports 0x70/0x71, with the
    clock, IRQ8's levels and the accesses that became ioreqs."""

    def __init__(self, engine: str, memory: int = 16 << 20,
                 base: int = platform.RTC_DEFAULT_BASE, boot: str = "c") -> None:
        self.engine = engine
        self.clock = Clock()
        self.irqs: list[int] = []
        self.ioreqs: list[tuple] = []
        if engine == "spec":
            self.xen = spec_rtc.VirtualRtc(self.clock, self.irqs.append, base)
            self.ram = spec_cmos.Cmos(memory, base, boot)
        else:
            self.xen = impl_rtc.Rtc(self.clock, self.irqs.append, base)
            self.ram = impl_cmos.Cmos(memory, base, boot)

    def out(self, port: int, value: int) -> None:
        if self.engine == "spec":
            handled, _ = self.xen.intercept(port, 1, "out", value, False)
        else:
            handled = self.xen.access(port, False, value) != -2
        if not handled:
            self.ioreqs.append(("out", port, value))
            (self.ram.io_write if self.engine == "spec" else self.ram.write)(port - 0x70, 1, value)

    def inp(self, port: int) -> int:
        if self.engine == "spec":
            handled, value = self.xen.intercept(port, 1, "in", 0, False)
        else:
            value = self.xen.access(port, True, 0)
            handled = value != -2
        if handled:
            return value
        self.ioreqs.append(("in", port))
        return (self.ram.io_read if self.engine == "spec" else self.ram.read)(port - 0x70, 1)

    def get(self, index: int) -> int:
        self.out(0x70, index)
        return self.inp(0x71)

    def put(self, index: int, value: int) -> None:
        self.out(0x70, index)
        self.out(0x71, value)

    def deadline(self):
        return self.xen.deadline()

    def expire(self, now: int) -> None:
        self.clock.now = now
        self.xen.run(now)


ENGINES = ["spec", "impl"]


@pytest.fixture(params=ENGINES)
def rtc(request):
    return Device(request.param)


def clock_bytes(rtc):
    return [rtc.get(i) for i in (0, 2, 4, 6, 7, 8, 9)]


def test_reset_registers_and_default_time(rtc):
    # 2026-01-01 00:00:00, a Thursday: Xen's day of week counts Sunday as 0
    assert clock_bytes(rtc) == [0x00, 0x00, 0x00, 0x04, 0x01, 0x01, 0x26]
    assert [rtc.get(i) for i in (0x0A, 0x0B, 0x0C, 0x0D)] == [0x26, 0x02, 0x00, 0x80]
    assert rtc.ioreqs == []                            # all of it Xen's
    assert (rtc.get(0x32), rtc.get(0x37)) == (0x20, 0x20)   # qemu-dm's century bytes
    assert rtc.inp(0x70) == 0xFF                       # qemu-dm's index port reads 0xff


def test_xen_handles_indices_below_14_and_passes_the_rest_on(rtc):
    rtc.get(0x00)
    rtc.get(0x0D)
    assert rtc.inp(0x70) == 0xFF                       # Xen answers while its index < 14
    assert rtc.ioreqs == []
    assert rtc.get(0x10) == 0x00                       # floppy types: qemu-dm's
    assert rtc.ioreqs == [("out", 0x70, 0x10), ("in", 0x71)]
    rtc.ioreqs.clear()
    assert rtc.inp(0x70) == 0xFF                       # index >= 14: qemu-dm's 0x70
    rtc.out(0x71, 0x5A)                                # a write to qemu-dm's RAM
    assert rtc.ioreqs == [("in", 0x70), ("out", 0x71, 0x5A)]


def test_index_bit_7_the_nmi_mask_is_dropped_on_both_sides(rtc):
    rtc.out(0x70, 0x8F)                                # 0x0F: shutdown status, qemu-dm's
    assert rtc.ioreqs == [("out", 0x70, 0x8F)]         # passed on with bit 7 as written
    rtc.out(0x71, 0x0A)
    assert rtc.get(0x0F) == 0x0A
    rtc.ioreqs.clear()
    rtc.out(0x70, 0x8D)                                # 0x0D: Xen's register D
    assert rtc.inp(0x71) == 0x80
    assert rtc.ioreqs == []
    rtc.put(0x40 | 0x80, 0x11)
    assert rtc.get(0x40) == 0x11


def test_an_index_below_14_is_never_seen_by_qemu_dm(rtc):
    rtc.put(0x40, 0x77)                                # qemu-dm selects 0x40
    rtc.get(0x00)                                      # Xen selects 0x00; qemu-dm does not
    ram, selected = ((rtc.ram.cmos_data, rtc.ram.cmos_index) if rtc.engine == "spec"
                     else (rtc.ram.ram, rtc.ram.sel))
    assert (ram[0x40], selected) == (0x77, 0x40)


def test_the_clock_ticks_as_xens_second_timers_do(rtc):
    rtc.clock.now = NS                                 # first copy: the start time again
    assert clock_bytes(rtc)[:3] == [0x00, 0x00, 0x00]
    rtc.clock.now = 2 * NS + UIP - 1                   # second_timer fired, UIP
    assert rtc.get(0x0A) == 0xA6
    assert rtc.get(0) == 0x00
    rtc.clock.now = 2 * NS + UIP                       # second_timer2: one second on
    assert rtc.get(0x0A) == 0x26
    assert rtc.get(0) == 0x01
    rtc.clock.now = 3723 * NS + UIP                    # 1 h 2 min 3 s: shows 01:02:02
    assert clock_bytes(rtc)[:3] == [0x02, 0x02, 0x01]
    rtc.clock.now = 86_400 * 59 * NS + 2 * NS          # 59 days: 2026-03-01, a Sunday
    assert clock_bytes(rtc)[3:] == [0x00, 0x01, 0x03, 0x26]


def test_update_in_progress_window(rtc):
    rtc.clock.now = NS                                 # no UIP before the first copy
    assert rtc.get(0x0A) == 0x26
    rtc.clock.now = 5 * NS - 1
    assert rtc.get(0x0A) == 0x26
    rtc.clock.now = 5 * NS
    assert rtc.get(0x0A) == 0xA6
    rtc.clock.now = 5 * NS + UIP
    assert rtc.get(0x0A) == 0x26
    rtc.put(0x0A, 0x26 | 0x80)                         # UIP is read-only
    assert rtc.get(0x0A) == 0x26


def test_binary_and_12_hour_modes_apply_at_the_next_copy(rtc):
    rtc.put(4, 0x13)                                   # 13:00:00, set at once
    rtc.put(0x0B, 0x06)                                # binary, 24-hour: nothing converted
    assert rtc.get(4) == 0x13
    rtc.clock.now = NS + UIP                           # the next copy is binary
    assert rtc.get(4) == 13
    rtc.put(0x0B, 0x04)                                # binary, 12-hour: 1 PM
    rtc.clock.now = 2 * NS + UIP
    assert rtc.get(4) == 0x81
    rtc.put(0x0B, 0x00)                                # BCD, 12-hour
    rtc.put(4, 0x80)                                   # "0 PM": Xen's noon, tm_hour 12
    rtc.clock.now = 3 * NS + UIP
    assert rtc.get(4) == 0x80
    rtc.put(4, 0x00)                                   # midnight shows 0, not 12
    rtc.clock.now = 4 * NS + UIP
    assert rtc.get(4) == 0x00


def test_set_stops_the_copy_and_sets_the_clock(rtc):
    rtc.clock.now = NS // 2
    rtc.put(0x0B, 0x82 | 0x10)                         # SET (and UIE, which SET clears)
    assert rtc.get(0x0B) == 0x82
    rtc.clock.now = 5 * NS
    assert rtc.get(0) == 0x00                          # no copy under SET, no UIP
    assert rtc.get(0x0A) == 0x26
    for index, value in ((9, 0x99), (8, 0x12), (7, 0x31), (6, 0x05), (4, 0x23),
                         (2, 0x59), (0, 0x58)):
        rtc.put(index, value)
    rtc.put(0x0B, 0x02)                                # runs from what was set
    rtc.clock.now = 7 * NS + UIP                       # two updates: 1999-12-31 23:59:60 -> 2000
    assert clock_bytes(rtc) == [0x00, 0x00, 0x00, 0x06, 0x01, 0x01, 0x00]
    assert rtc.get(0x32) == 0x20                       # the century is qemu-dm's, unchanged
    assert rtc.ioreqs == [("out", 0x70, 0x32), ("in", 0x71)]


def test_set_loses_the_time_it_was_held(rtc):
    rtc.put(0x0B, 0x82)
    rtc.clock.now = 10 * NS
    rtc.put(0x0B, 0x02)                                # the registers still show 00:00:00
    rtc.clock.now = 11 * NS + UIP
    assert rtc.get(0) == 0x01


def test_write_while_running_sets_the_clock(rtc):
    rtc.clock.now = 10 * NS
    rtc.put(2, 0x30)                                   # minutes := 30, the rest as shown
    rtc.clock.now = 11 * NS + UIP
    assert [rtc.get(0), rtc.get(2)] == [0x09, 0x30]


def test_periodic_interrupt(rtc):
    assert rtc.deadline() is None                      # nothing enabled: no deadline
    rtc.clock.now = 1000
    rtc.put(0x0B, 0x42)                                # PIE, rate 6 = 1024 Hz
    assert rtc.deadline() == 1000 + 976_563           # DIV_ROUND(32 * 10**9, 32768)
    rtc.expire(1000 + 976_563)
    assert rtc.irqs == [1]
    assert rtc.deadline() == 1000 + 2 * 976_563
    assert rtc.get(0x0C) == 0xC0                       # IRQF | PF; the read lowers IRQ8
    assert rtc.irqs == [1, 0]
    assert rtc.get(0x0C) == 0x00
    rtc.put(0x0A, 0x23)                                # rate 3: 4 cycles, restarted now
    assert rtc.deadline() == rtc.clock.now + 122_070
    rtc.put(0x0A, 0x21)                                # rate 1: 128 cycles
    assert rtc.deadline() == rtc.clock.now + 3_906_250


def test_periodic_catch_up_keeps_the_grid(rtc):
    rtc.put(0x0B, 0x42)
    rtc.expire(10 * 976_563 + 5)                       # ten periods late, no second timer
    assert rtc.irqs == [1]
    assert rtc.deadline() == 11 * 976_563


def test_disabled_interrupts_set_no_flags(rtc):
    rtc.clock.now = 3 * NS
    assert rtc.get(0x0C) == 0x00                       # Xen sets a flag only when enabled
    assert rtc.irqs == []


def test_update_ended_interrupt(rtc):
    rtc.clock.now = 300
    rtc.put(0x0B, 0x12)                                # UIE
    assert rtc.deadline() == NS                        # the first second_timer2
    rtc.expire(NS)
    assert rtc.irqs == [1]
    assert rtc.deadline() == 2 * NS + UIP
    rtc.expire(2 * NS + UIP)                           # deassert and assert: a new edge
    assert rtc.irqs == [1, 0, 1]
    assert rtc.get(0x0C) == 0x90                       # IRQF | UF


def test_alarm_with_dont_care(rtc):
    rtc.put(1, 0x05)                                   # at hh:mm:05 ...
    rtc.put(3, 0xC0)                                   # ... any minute
    rtc.put(5, 0xFF)                                   # ... any hour
    rtc.put(0x0B, 0x22)                                # AIE
    assert rtc.deadline() == 6 * NS + UIP             # the copy showing 00:00:05
    rtc.expire(6 * NS + UIP)
    assert rtc.get(0x0C) == 0xA0                       # IRQF | AF
    assert rtc.deadline() == 66 * NS + UIP            # the next minute
    rtc.put(1, 0xC0)                                   # everything don't care: every second
    assert rtc.deadline() == 7 * NS + UIP
    rtc.put(1, 0x60)                                   # a second the clock never shows
    assert rtc.deadline() is None


def test_alarm_exact_time_next_day(rtc):
    rtc.clock.now = 3600 * NS                          # second_timer: 00:59:59
    rtc.put(1, 0x00)
    rtc.put(3, 0x30)
    rtc.put(5, 0x00)                                   # 00:30:00 -> tomorrow
    rtc.put(0x0B, 0x22)
    assert rtc.deadline() == (86_400 + 1801) * NS + UIP


def test_divider_off_stops_the_clock(rtc):
    rtc.put(0x0A, 0x66)                                # divider 110: no update
    rtc.put(0x0B, 0x12)
    rtc.clock.now = 5 * NS + UIP
    assert rtc.get(0) == 0x00
    assert rtc.deadline() is None


def test_c_and_d_are_read_only(rtc):
    rtc.put(0x0D, 0x00)
    rtc.put(0x0C, 0xFF)
    assert rtc.get(0x0D) == 0x80
    assert rtc.get(0x0C) == 0x00
    rtc.put(0x40, 0x5A)                                # qemu-dm's RAM
    assert rtc.get(0x40) == 0x5A


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


@pytest.mark.parametrize("engine", ENGINES)
def test_century_bytes_follow_the_base(engine):
    rtc = Device(engine, base=951_868_799)             # 2000-02-29 23:59:59, a Tuesday
    assert (rtc.get(0x32), rtc.get(0x37)) == (0x20, 0x20)
    assert clock_bytes(rtc) == [0x59, 0x59, 0x23, 0x02, 0x29, 0x02, 0x00]
    rtc = Device(engine, base=915_148_799)             # 1998-12-31 23:59:59
    assert (rtc.get(0x32), rtc.get(0x09)) == (0x19, 0x98)


@settings(max_examples=40, derandomize=True, deadline=None)
@given(st.sampled_from(ENGINES), st.integers(0, 59), st.sampled_from([0xC0, 0xFF, 0, 1, 59]),
       st.sampled_from([0x02, 0x06]), st.integers(0, 10 * NS))
def test_the_alarm_deadline_is_when_the_alarm_fires(engine, second, minute, b, start):
    """The deadline the VMM arms for AIE is the second_timer2 that sets AF:
    not one earlier (no flag yet), and AF there."""
    rtc = Device(engine, base=1_767_225_600 + 3000)     # 00:50:00
    rtc.clock.now = start
    rtc.put(0x0B, b)
    enc = (lambda v: v) if b & 4 else (lambda v: v // 10 * 16 + v % 10)
    rtc.put(1, enc(second))
    rtc.put(3, minute if minute >= 0xC0 else enc(minute))     # don't care, or a minute
    rtc.put(5, 0xC0)
    rtc.put(0x0B, b | 0x20)
    due = rtc.deadline()
    assert due is not None
    rtc.expire(due - 1)
    assert rtc.get(0x0C) == 0 and rtc.irqs == []
    rtc.expire(due)
    assert rtc.get(0x0C) == 0xA0 and rtc.irqs == [1, 0]


_access = st.one_of(
    st.tuples(st.just("index"), st.integers(0, 255)),
    st.tuples(st.just("read"), st.sampled_from([0x70, 0x71])),
    st.tuples(st.just("write"), st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0x0A, 0x0B,
                                                 0x0C, 0x32, 0x40]), st.integers(0, 255)),
    st.tuples(st.just("ctrl"), st.sampled_from([0x0A, 0x0B]),
              st.sampled_from([0x02, 0x06, 0x12, 0x22, 0x42, 0x72, 0x82, 0x21, 0x23, 0x26,
                               0x2F, 0x66, 0x00, 0x04, 0x32, 0x62])),
    st.tuples(st.just("wait"), st.integers(0, 3 * NS)),
    st.tuples(st.just("timer")),
)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.lists(_access, max_size=40), st.integers(0, 4_000_000_000))
def test_spec_and_impl_agree(steps, base):
    a, b = Device("spec", base=base), Device("impl", base=base)
    for step in steps:
        if step[0] == "index":
            a.out(0x70, step[1])
            b.out(0x70, step[1])
        elif step[0] == "read":
            assert a.inp(step[1]) == b.inp(step[1]), step
        elif step[0] in ("write", "ctrl"):
            a.put(step[1], step[2])
            b.put(step[1], step[2])
        elif step[0] == "wait":
            a.clock.now += step[1]
            b.clock.now += step[1]
        else:
            due = a.deadline()
            assert due == b.deadline()
            if due is not None:
                a.expire(due)
                b.expire(due)
        assert a.irqs == b.irqs
        assert a.ioreqs == b.ioreqs
    assert a.deadline() == b.deadline()
    assert [a.get(i) for i in range(0x0E)] == [b.get(i) for i in range(0x0E)]


# --- whole guests, both engines -------------------------------------------------------------

def _guest(body: str):
    src = '%include "lib/all.s"\nstart:\n    cli\n' + body + "    poweroff\n"
    with tempfile.TemporaryDirectory() as d:
        path = pathlib.Path(d) / "rtcprobe.s"
        path.write_text(src)
        return both(loader.load(str(path)))


def _rtc_ioreqs(ref):
    """The (dir, port, data) of every PIO ioreq to 0x70/0x71 (on its way in)."""
    return [(e.dir, e.addr, e.data) for e in ref.trace
            if isinstance(e, trace.IoreqTransition) and e.by == "vmm" and e.new == "READY"
            and e.addr in (0x70, 0x71)]


def test_a_seconds_read_makes_no_ioreq_and_a_cmos_read_makes_two():
    ref = _guest("""
    mov al, 0x00
    out 0x70, al
    in al, 0x71
    mov bl, al
    mov al, 0x10
    out 0x70, al
    in al, 0x71
    mov al, 0x8f
    out 0x70, al
    mov al, 0x8b
    out 0x70, al
    in al, 0x71
""")
    xen = [(e.addr, e.dir, e.data) for e in ref.trace
           if isinstance(e, trace.XenIo) and e.device == "vrtc"]
    assert xen == [(0x70, "out", 0x00), (0x71, "in", 0x00), (0x70, "out", 0x8B),
                   (0x71, "in", 0x02)]
    assert _rtc_ioreqs(ref) == [("write", 0x70, 0x10), ("read", 0x71, 0),
                                ("write", 0x70, 0x8F)]
    cmos = [(e.addr, e.dir, e.data) for e in ref.trace
            if isinstance(e, trace.DeviceIo) and e.device == "cmos"]
    assert cmos == [(0x70, "write", 0x10), (0x71, "read", 0x00), (0x70, "write", 0x8F)]


def test_a_word_access_is_claimed_and_ignored():
    ref = _guest("""
    mov ax, 0x1234
    in ax, 0x71
    mov dx, ax
    out 0x70, ax
""")
    xen = [(e.addr, e.size, e.dir, e.data) for e in ref.trace
           if isinstance(e, trace.XenIo) and e.device == "vrtc"]
    assert xen == [(0x71, 2, "in", 0x1234), (0x70, 2, "out", 0x1234)]
    assert _rtc_ioreqs(ref) == []


def test_irq8_comes_from_xen_not_from_qemu_dm():
    """The platform guest's three periodic interrupts: Xen's RTC asserts
    IRQ8 itself (``xen_irq``), the VMM injects vector 0x70, and the
    handler's read of C deasserts it; qemu-dm never drives IRQ8 nor
    sends an event for it."""
    ref = both(loader.load("platform"))
    levels = [e.level for e in ref.trace if isinstance(e, trace.XenIrq) and e.irq == 8]
    assert levels == [1, 0] * 3
    assert [e.vector for e in ref.trace if isinstance(e, trace.Injection)] == [0x70] * 3
    assert not [e for e in ref.trace if isinstance(e, trace.IrqLevel) and e.irq == 8]
    kinds = [e.kind for e in ref.trace]
    first = kinds.index("xen_irq")
    inject = kinds.index("inject")
    assert "evtchn_send" not in kinds[first:inject]
    assert "rtc 2026-01-01 00:00:00\n" in ref.serial
