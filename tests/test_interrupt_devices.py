"""The interrupt devices of the two engines, side by side: the virtual PIC
pair, the PIT with port 0x61, and the shared interrupt lines.

spec/ and impl/ implement these independently; hypothesis drives both with
the same random programming (every ICW/OCW form, ELCR, polls, register
reads, line changes, Xen's negative edges, acknowledges; every PIT control
word, counter access and gate change at random times) and they must answer
alike. A few direct
tests pin the data-sheet behaviour that a shared mistake would hide.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from impl import pic as impl_pic
from impl.timer import Pit
from impl.xen import IrqLines
from spec import irq as spec_irq
from spec import pic as spec_pic
from spec.devices.pit import VirtualPit, period_ns

PIC_PORTS = (0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1)

pic_ops = st.lists(st.one_of(
    st.tuples(st.just("out"), st.sampled_from(PIC_PORTS), st.integers(0, 255)),
    st.tuples(st.just("in"), st.sampled_from(PIC_PORTS), st.just(0)),
    st.tuples(st.just("lines"), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
    st.tuples(st.just("lower"), st.integers(0, 15), st.just(0)),
    st.tuples(st.just("ack"), st.just(0), st.just(0)),
), max_size=60)


@settings(max_examples=400, deadline=None)
@given(pic_ops)
def test_virtual_pics_agree(ops):
    ref, imp = spec_pic.VirtualPic(lambda e: None), impl_pic.Vpic()
    for op, a, b in ops:
        if op == "out":
            ref.io_write(a, b)
            imp.write(a, b)
        elif op == "in":
            assert ref.io_read(a) == imp.read(a), (op, a)
        elif op == "lines":
            ref.apply_lines(a, b)
            imp.lines(a, b)
        elif op == "lower":                     # Xen's own line falls (the RTC's IRQ8)
            ref.negative_edge(a)
            imp.lower(a)
        else:
            assert ref.has_request() == imp.requesting()
            assert ref.acknowledge() == imp.intack()
        assert ref.elcr() == imp.elcr()


def _programmed(pics, base=0x20):
    """ICW1-4 on both controllers, as a BIOS does (vectors base, base+8)."""
    for port, value in ((0x20, 0x11), (0x21, base), (0x21, 4), (0x21, 1),
                        (0xA0, 0x11), (0xA1, base + 8), (0xA1, 2), (0xA1, 1)):
        pics.io_write(port, value)
    return pics


def test_priority_rotation_and_eoi_follow_the_data_sheet():
    p = _programmed(spec_pic.VirtualPic(lambda e: None))
    p.io_write(0x21, 0x00)
    p.apply_lines(0b1001_0000, 0)               # IRQ4 and IRQ7
    assert p.acknowledge() == (4, 0x24)         # fixed priority: 4 before 7
    assert not p.has_request()                  # 7 waits for 4's EOI
    p.io_write(0x20, 0x20)                      # non-specific EOI
    assert p.acknowledge() == (7, 0x27)
    p.io_write(0x20, 0xC0 | 4)                  # set priority: IRQ4 lowest, 5 highest
    p.io_write(0x20, 0x20)                      # EOI of 7
    p.apply_lines(0b0010_0001, 0)               # IRQ0 and IRQ5
    assert p.acknowledge() == (5, 0x25)         # rotated: 5 is now highest


def test_masked_edges_are_latched_and_the_slave_cascades():
    p = _programmed(spec_pic.VirtualPic(lambda e: None))
    p.io_write(0x21, 0xFF)                      # everything masked
    p.apply_lines(1 << 0, 0)
    assert not p.has_request()
    p.io_write(0x20, 0x0A)                      # OCW3: read IRR
    assert p.io_read(0x20) & 1
    p.io_write(0x21, 0xFB)                      # only the cascade
    p.io_write(0xA1, 0x00)
    p.apply_lines(1 << 12, 0)                   # IRQ12 on the slave
    assert p.acknowledge() == (12, 0x2C)
    p.io_write(0xA0, 0x20)                      # EOI to the slave, then the master
    p.io_write(0x20, 0x20)
    # the slave's request vanished between the master's and its own acknowledge:
    p.apply_lines(1 << 9, 0)
    p.io_write(0xA1, 0xFF)                      # masked on the slave after the cascade latched
    p.pair = p.pair._replace(master=p.pair.master._replace(irr=p.pair.master.irr | 4))
    assert p.acknowledge() == (15, 0x2F)        # spurious IRQ15


def test_level_lines_follow_the_line_and_edge_lines_need_a_new_edge():
    lines = spec_irq.SharedLines()
    imp = IrqLines()
    lines.set_elcr(1 << 9)
    imp.elcr = 1 << 9
    for line, level in ((0, 1), (0, 1), (0, 0), (0, 1), (9, 1), (9, 0), (9, 1)):
        assert lines.set_irq(line, level) == imp.drive(line, level)
    assert lines.take() == imp.collect() == ((1 << 0) | (1 << 9), 0)
    assert lines.set_irq(0, 1) is False          # still high: no new edge


pit_ops = st.lists(st.one_of(
    st.tuples(st.just("out"), st.sampled_from([0x40, 0x41, 0x42, 0x43, 0x61]),
              st.integers(0, 255)),
    st.tuples(st.just("in"), st.sampled_from([0x40, 0x41, 0x42, 0x43, 0x61]), st.just(0)),
    st.tuples(st.just("fire"), st.just(0), st.just(0)),
    st.tuples(st.just("inject"), st.just(0), st.just(0)),
    st.tuples(st.just("wait"), st.just(0), st.integers(0, 3_000_000)),
), max_size=50)


@settings(max_examples=400, deadline=None)
@given(pit_ops)
def test_pits_agree(ops):
    """Xen's PIT of both engines: registers, port 0x61, the periodic time
    (what fires, what is pending, the next deadline)."""
    now = [0]
    clock = lambda: now[0]                      # noqa: E731
    ref, imp = VirtualPit(clock), Pit(clock)
    for op, port, b in ops:
        if op == "out":
            ref.access(port, 1, "out", b)
            imp.write(port, b)
        elif op == "in":
            got = imp.read(port)
            assert ref.access(port, 1, "in", 0) == (None if got < 0 else got), (port, now[0])
        elif op == "fire":
            assert ref.pt.update(now[0]) == imp.ticker.fire(now[0])
        elif op == "inject":
            ref.injected(now[0])
            imp.taken(now[0])
        else:
            now[0] += b
        assert ref.pt.deadline() == imp.due(), now[0]
        assert ref.pt.pending == imp.ticker.pending


def _program(pit, mode: int, count: int) -> None:
    pit.access(0x43, 1, "out", 0x30 | mode << 1)     # counter 0, lobyte/hibyte
    pit.access(0x40, 1, "out", count & 0xFF)
    pit.access(0x40, 1, "out", count >> 8)


def test_pit_mode2_counts_down_and_makes_a_periodic_timer():
    now = [0]
    pit = VirtualPit(lambda: now[0])
    _program(pit, 2, 2000)
    period = period_ns(2000)                    # DIV_ROUND(2000 * 10**9, 1193181)
    assert period == 1_676_192
    assert pit.pt.deadline() == period
    now[0] = period - 1000
    pit.access(0x43, 1, "out", 0x00)             # latch counter 0
    low, high = pit.access(0x40, 1, "in", 0), pit.access(0x40, 1, "in", 0)
    assert low | high << 8 == 2000 - (period - 1000) * 1_193_181 // 10**9
    now[0] = period
    assert pit.pt.update(now[0]) == 1 and pit.pt.deadline() == 2 * period


def test_pit_mode3_makes_no_irq0_and_a_short_period_is_0_9_ms():
    """i8254.c pit_load_count: only mode 2 (and 1) of counter 0 create the
    periodic time; create_periodic_time forces a period under 0.9 ms to 0.9 ms."""
    pit = VirtualPit(lambda: 0)
    _program(pit, 3, 1193)
    assert pit.pt.deadline() is None
    _program(pit, 2, 10)
    assert pit.pt.period == 900_000


def test_missed_ticks_are_counted_and_delivered_one_by_one():
    """pt_timer_fn and missed_ticks: one pending tick per period the clock
    ran past; hvm_interrupt_post: the first injection drops them, later
    ones consume one each; counter 0 restarts at each injection."""
    now = [0]
    pit = VirtualPit(lambda: now[0])
    _program(pit, 2, 1193)
    p = pit.pt.period
    now[0] = p
    assert pit.pt.update(now[0]) == 1
    pit.injected(now[0])                        # the first: pending dropped, restarted
    assert pit.pt.pending == 0 and pit.pt.deadline() == 2 * p
    assert pit.counters[0].load_ns == p
    now[0] = 2 * p + 3 * p + 5                  # three periods late
    assert pit.pt.update(now[0]) == 4 and pit.pt.deadline() == 6 * p
    pit.injected(now[0])
    assert pit.pt.pending == 3
    now[0] += 2000 * p                          # more than 1000 missed: one
    assert pit.pt.update(now[0]) == 2


def test_port_61_refresh_bit_is_bit_14_of_the_clock():
    """speaker_ioport_read: ((unsigned int)NOW() >> 14) & 1, on the virtual clock."""
    now = [0]
    pit, imp = VirtualPit(lambda: now[0]), Pit(lambda: now[0])
    for t in (0, 16_383, 16_384, 32_767, 32_768, 49_152):
        now[0] = t
        assert pit.port61_read() >> 4 & 1 == t >> 14 & 1 == imp.read(0x61) >> 4 & 1


def test_port_43_reads_and_wide_accesses_are_not_answered():
    """handle_pit_io: a read of A1:A0 = 3 is unsupported, a size other than 1
    is "wrong PIT IO": both claimed, the datum left as it was."""
    pit = VirtualPit(lambda: 0)
    assert pit.access(0x43, 1, "in", 0) is None
    assert pit.access(0x40, 2, "in", 0) is None
    pit.access(0x43, 2, "out", 0x34)            # ignored: counter 0 keeps the init mode
    assert pit.counters[0].mode == 0xFF


def test_uart_raises_irq4_for_an_empty_transmitter():
    from spec.devices.uart import Uart16550
    levels = []
    uart = Uart16550("com1", lambda e: None, irq=levels.append)
    uart.io_write(1, 1, 0x02)                   # IER.THRI while THR is empty
    assert levels == [1] and uart.io_read(2, 1) == 0x02
    assert levels == [1, 0]                     # reading IIR cleared it
    uart.io_write(0, 1, ord("x"))               # a byte: empty again at once
    assert levels == [1, 0, 1]


def test_pm_timers_agree_and_follow_xen_3_0_4():
    """pmtimer.c handle_pmt_io: only 4-byte reads are answered; each read
    adds ((guest TSC since the last read) * scale) >> 32 to a 32-bit count,
    scale = (3579545 << 32) / TSC rate, so the fraction is dropped per read."""
    from impl.timer import PmTimer as ImplPmTimer
    from spec import clock, platform
    from spec.devices.pmtimer import SCALE, PmTimer
    now = [0]
    ref, imp = PmTimer(lambda: now[0]), ImplPmTimer(lambda: now[0])
    assert ref.access(2, "in") is None and ref.access(4, "out") is None
    expected = last = 0
    for step in (1, 999, 1_000_000, 279, 10**9, 7 * 10**12):
        now[0] += step
        gtime = clock.tsc(now[0])
        expected = (expected + ((gtime - last) * SCALE >> 32)) & 0xFFFF_FFFF
        last = gtime
        assert ref.access(4, "in") == imp.read4() == expected
    assert SCALE == (3_579_545 << 32) // platform.TSC_HZ
    # read once after a millisecond: 3579 ticks (3579.545 in an ideal count)
    once = PmTimer(lambda: 1_000_000)
    assert once.access(4, "in") == 3579
