"""The interrupt devices of the two engines, side by side: the virtual PIC
pair, the PIT with port 0x61, and the shared interrupt lines.

spec/ and impl/ implement these independently; hypothesis drives both with
the same random programming (every ICW/OCW form, ELCR, polls, register
reads, line changes, acknowledges; every PIT control word, counter access
and gate change at random times) and they must answer alike. A few direct
tests pin the data-sheet behaviour that a shared mistake would hide.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from impl import pic as impl_pic
from impl.timer import Pit, SpeakerPort
from impl.xen import IrqLines
from spec import irq as spec_irq
from spec import pic as spec_pic
from spec.devices.pit import Pit8254, Port61

PIC_PORTS = (0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1)

pic_ops = st.lists(st.one_of(
    st.tuples(st.just("out"), st.sampled_from(PIC_PORTS), st.integers(0, 255)),
    st.tuples(st.just("in"), st.sampled_from(PIC_PORTS), st.just(0)),
    st.tuples(st.just("lines"), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
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
    p.master.regs = p.master.regs._replace(irr=p.master.regs.irr | 4)
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
    st.tuples(st.just("out"), st.integers(0, 3), st.integers(0, 255)),
    st.tuples(st.just("in"), st.integers(0, 3), st.just(0)),
    st.tuples(st.just("61"), st.just(0), st.integers(0, 3)),
    st.tuples(st.just("in61"), st.just(0), st.just(0)),
    st.tuples(st.just("wait"), st.just(0), st.integers(0, 3_000_000)),
), max_size=50)


@settings(max_examples=400, deadline=None)
@given(pit_ops)
def test_pits_agree(ops):
    now = [0]
    clock = lambda: now[0]                      # noqa: E731
    ref, imp = Pit8254(clock), Pit(clock)
    ref61, imp61 = Port61(ref), SpeakerPort(imp)
    for op, a, b in ops:
        if op == "out":
            ref.io_write(a, 1, b)
            imp.write(a, 1, b)
        elif op == "in":
            assert ref.io_read(a, 1) == imp.read(a, 1), (op, a, now[0])
        elif op == "61":
            ref61.io_write(0, 1, b)
            imp61.write(0, 1, b)
        elif op == "in61":
            assert ref61.io_read(0, 1) == imp61.read(0, 1)
        else:
            now[0] += b
        assert ref.next_deadline() == imp.irq0_deadline(), now[0]


def test_pit_mode2_counts_down_and_rises_every_period():
    now = [0]
    pit = Pit8254(lambda: now[0])
    for value in (0x34, 100, 0):                # counter 0, lobyte/hibyte, mode 2, N = 100
        pit.io_write(0 if value != 0x34 else 3, 1, value)
    period = -(-100 * 1_000_000_000 // 1_193_182)
    assert pit.next_deadline() == period
    now[0] = period - 1
    pit.io_write(3, 1, 0x00)                    # latch counter 0
    assert pit.io_read(0, 1) | pit.io_read(0, 1) << 8 == 1   # one clock before the reload
    now[0] = period
    assert pit.next_deadline() == -(-200 * 1_000_000_000 // 1_193_182)


def test_uart_raises_irq4_for_an_empty_transmitter():
    from spec.devices.uart import Uart16550
    levels = []
    uart = Uart16550("com1", lambda e: None, irq=levels.append)
    uart.io_write(1, 1, 0x02)                   # IER.THRI while THR is empty
    assert levels == [1] and uart.io_read(2, 1) == 0x02
    assert levels == [1, 0]                     # reading IIR cleared it
    uart.io_write(0, 1, ord("x"))               # a byte: empty again at once
    assert levels == [1, 0, 1]
