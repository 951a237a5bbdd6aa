"""COM1's 16550A: every register on the reference model, with exact values,
and the impl engine's UART against it for random register traffic.

Offsets: 0 RBR/THR/DLL, 1 IER/DLM, 2 IIR/FCR, 3 LCR, 4 MCR, 5 LSR, 6 MSR, 7 SCR.
"""

from hypothesis import given, settings, strategies as st

from impl.uart import Uart
from spec import trace
from spec.devices.uart import Uart16550

CHAR = -(-10 * 12 * 1_000_000_000 // 115_200)     # 9600 baud: 1041667 ns


class Clock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def make(input: bytes = b""):
    clock, levels, out = Clock(), [], []
    uart = Uart16550("com1", out.append, irq=levels.append, clock=clock, input=input)
    return uart, clock, levels, out


def advance(uart, clock, to: int) -> None:
    """Run the UART's timers up to time ``to``, each at its deadline."""
    while (due := uart.next_deadline()) is not None and due <= to:
        clock.now = due
        uart.expire(due)
    clock.now = to


def loop_bytes(uart, data: bytes) -> None:
    for b in data:
        uart.io_write(0, 1, b)


# --- reset values ---------------------------------------------------------------------

def test_reset_values_are_qemus():
    uart, *_ = make()
    assert [uart.io_read(i, 1) for i in (1, 2, 3, 4, 5, 6, 7)] == \
        [0x00, 0x01, 0x00, 0x08, 0x60, 0xB0, 0x00]


# --- FCR and IIR ------------------------------------------------------------------------

def test_fifo_enable_shows_in_iir_bits_7_6():
    uart, *_ = make()
    uart.io_write(2, 1, 0x01)
    assert uart.io_read(2, 1) == 0xC1
    uart.io_write(2, 1, 0x00)
    assert uart.io_read(2, 1) == 0x01


def test_trigger_levels():
    for fcr, level in ((0x01, 1), (0x41, 4), (0x81, 8), (0xC1, 14)):
        uart, *_ = make()
        uart.io_write(2, 1, fcr)
        uart.io_write(1, 1, 0x01)                   # IER.RDI
        uart.io_write(4, 1, 0x10)                   # loopback
        loop_bytes(uart, bytes(range(level - 1)))
        assert uart.io_read(2, 1) == 0xC1, fcr
        uart.io_write(0, 1, 0x55)
        assert uart.io_read(2, 1) == 0xC4, fcr
        assert uart.level == 1
        uart.io_read(0, 1)                          # one below the level again
        assert uart.io_read(2, 1) == 0xC1 and uart.level == 0


def test_fifo_keeps_order_and_reads_zero_when_empty():
    uart, *_ = make()
    uart.io_write(2, 1, 0x07)
    uart.io_write(4, 1, 0x10)
    loop_bytes(uart, b"abc")
    assert uart.io_read(5, 1) == 0x61
    assert bytes(uart.io_read(0, 1) for _ in range(3)) == b"abc"
    assert uart.io_read(5, 1) == 0x60
    assert uart.io_read(0, 1) == 0


def test_changing_fifo_enable_clears_the_receiver():
    uart, *_ = make()
    uart.io_write(2, 1, 0x01)
    uart.io_write(4, 1, 0x10)
    loop_bytes(uart, b"xy")
    uart.io_write(2, 1, 0x00)                       # FIFOs off: both cleared
    assert uart.io_read(5, 1) == 0x60
    loop_bytes(uart, b"z")                          # without FIFOs: RBR
    uart.io_write(2, 1, 0x01)                       # on again: cleared again
    assert uart.io_read(5, 1) == 0x60


def test_fcr_clears_rx_fifo_and_tx_fifo_makes_thri_pending():
    uart, *_ = make()
    uart.io_write(2, 1, 0x01)
    uart.io_write(4, 1, 0x10)
    loop_bytes(uart, b"xy")
    uart.io_write(1, 1, 0x02)                       # IER.THRI: pending at once
    assert uart.io_read(2, 1) == 0xC2
    assert uart.io_read(2, 1) == 0xC1               # reading IIR cleared it
    uart.io_write(2, 1, 0x03)                       # clear the receive FIFO
    assert uart.io_read(5, 1) == 0x60
    assert uart.io_read(2, 1) == 0xC1
    uart.io_write(2, 1, 0x05)                       # clear the transmit FIFO
    assert uart.io_read(2, 1) == 0xC2


def test_without_fifo_thr_interrupt_as_before():
    uart, _, levels, out = make()
    uart.io_write(1, 1, 0x02)
    assert levels == [1] and uart.io_read(2, 1) == 0x02 and levels == [1, 0]
    uart.io_write(0, 1, ord("x"))
    assert levels == [1, 0, 1] and [e.byte for e in out] == [ord("x")]
    assert isinstance(out[0], trace.SerialOut)


# --- character timeout ------------------------------------------------------------------

def test_character_timeout_after_four_character_times():
    uart, clock, levels, _ = make()
    uart.io_write(2, 1, 0x41)                       # trigger 4
    uart.io_write(1, 1, 0x01)
    uart.io_write(4, 1, 0x10)
    loop_bytes(uart, b"ab")
    assert uart.next_deadline() == 4 * CHAR
    advance(uart, clock, 4 * CHAR - 1)
    assert uart.io_read(2, 1) == 0xC1 and uart.level == 0
    advance(uart, clock, 4 * CHAR)
    assert uart.io_read(2, 1) == 0xCC and uart.level == 1
    assert uart.io_read(0, 1) == ord("a")           # a read clears it and restarts
    assert uart.io_read(2, 1) == 0xC1 and uart.level == 0
    assert uart.next_deadline() == 8 * CHAR
    advance(uart, clock, 8 * CHAR)
    assert uart.io_read(2, 1) == 0xCC
    assert uart.io_read(0, 1) == ord("b")           # empty: no more timeouts
    assert uart.next_deadline() is None
    assert uart.io_read(2, 1) == 0xC1


def test_character_timeout_restarts_on_each_arrival_and_outranks_data_available():
    uart, clock, _, _ = make()
    uart.io_write(2, 1, 0x01)                       # trigger 1
    uart.io_write(1, 1, 0x01)
    uart.io_write(4, 1, 0x10)
    uart.io_write(0, 1, 1)
    clock.now = 3 * CHAR
    uart.io_write(0, 1, 2)
    assert uart.next_deadline() == 7 * CHAR
    assert uart.io_read(2, 1) == 0xC4
    advance(uart, clock, 7 * CHAR)
    assert uart.io_read(2, 1) == 0xCC               # ranked above data available


def test_character_timeout_is_masked_by_ier_rdi():
    uart, clock, *_ = make()
    uart.io_write(2, 1, 0x01)
    uart.io_write(4, 1, 0x10)
    uart.io_write(0, 1, 7)
    advance(uart, clock, 4 * CHAR)
    assert uart.io_read(2, 1) == 0xC1
    uart.io_write(1, 1, 0x01)
    assert uart.io_read(2, 1) == 0xCC


# --- overrun -----------------------------------------------------------------------------

def test_overrun_with_the_fifo_full_loses_the_byte():
    uart, *_ = make()
    uart.io_write(2, 1, 0xC1)
    uart.io_write(1, 1, 0x05)                       # RLSI and RDI
    uart.io_write(4, 1, 0x10)
    loop_bytes(uart, bytes(range(0x40, 0x50)))      # 16 bytes: full
    assert uart.io_read(2, 1) == 0xC4
    uart.io_write(0, 1, 0x99)                       # the 17th
    assert uart.io_read(2, 1) == 0xC6
    assert uart.io_read(5, 1) == 0x63               # DR, OE, THRE, TEMT
    assert uart.io_read(5, 1) == 0x61               # reading LSR cleared OE
    assert uart.io_read(2, 1) == 0xC4
    assert bytes(uart.io_read(0, 1) for _ in range(16)) == bytes(range(0x40, 0x50))
    assert uart.io_read(5, 1) == 0x60


def test_overrun_without_fifo_overwrites_rbr():
    uart, *_ = make()
    uart.io_write(4, 1, 0x10)
    loop_bytes(uart, b"pq")
    assert uart.io_read(5, 1) == 0x63
    assert uart.io_read(0, 1) == ord("q")
    assert uart.io_read(0, 1) == ord("q")           # RBR keeps its byte
    assert uart.io_read(5, 1) == 0x60


# --- MCR, MSR, loopback -------------------------------------------------------------------

def test_mcr_keeps_bits_4_0():
    uart, *_ = make()
    uart.io_write(4, 1, 0xFF)
    assert uart.io_read(4, 1) == 0x1F


def test_msr_outside_loopback_shows_a_backend_without_modem_lines():
    uart, *_ = make()
    for mcr in (0x00, 0x0F, 0x03):
        uart.io_write(4, 1, mcr)
        assert uart.io_read(6, 1) == 0xB0


def test_loopback_mirrors_mcr_in_msr_with_deltas():
    uart, *_ = make()
    uart.io_write(4, 1, 0x1B)                       # DTR RTS OUT2: lines as before
    assert uart.io_read(6, 1) == 0xB0
    uart.io_write(4, 1, 0x1F)                       # OUT1 -> RI rises: no TERI
    assert uart.io_read(6, 1) == 0xF0
    uart.io_write(4, 1, 0x1B)                       # RI falls: TERI
    assert uart.io_read(6, 1) == 0xB4
    assert uart.io_read(6, 1) == 0xB0               # reading cleared the deltas
    uart.io_write(4, 1, 0x10)                       # CTS DSR DCD fall
    assert uart.io_read(6, 1) == 0x0B
    uart.io_write(4, 1, 0x11)                       # DTR -> DSR
    uart.io_write(4, 1, 0x13)                       # RTS -> CTS
    assert uart.io_read(6, 1) == 0x33
    uart.io_write(4, 1, 0x0B)                       # leave loopback: 0x30 -> 0xB0
    assert uart.io_read(6, 1) == 0xB8


def test_modem_status_interrupt():
    uart, _, levels, _ = make()
    uart.io_write(1, 1, 0x08)                       # IER.MSI
    uart.io_write(4, 1, 0x1B)
    assert levels == [] and uart.io_read(2, 1) == 0x01
    uart.io_write(4, 1, 0x19)                       # CTS falls: DCTS
    assert levels == [1] and uart.io_read(2, 1) == 0x00
    assert uart.io_read(6, 1) == 0xA1
    assert levels == [1, 0] and uart.io_read(2, 1) == 0x01


def test_loopback_sends_nothing_out():
    uart, _, _, out = make()
    uart.io_write(4, 1, 0x10)
    uart.io_write(0, 1, 0x41)
    assert out == [] and uart.io_read(0, 1) == 0x41
    uart.io_write(4, 1, 0x00)
    uart.io_write(0, 1, 0x42)
    assert [e.byte for e in out] == [0x42]


# --- LCR, divisor, SCR ------------------------------------------------------------------

def test_dlab_aliases_offsets_0_and_1_to_the_divisor():
    uart, *_ = make()
    uart.io_write(1, 1, 0x05)
    uart.io_write(3, 1, 0x83)
    assert (uart.io_read(0, 1), uart.io_read(1, 1)) == (12, 0)
    uart.io_write(0, 1, 0x34)
    uart.io_write(1, 1, 0x12)
    assert (uart.io_read(0, 1), uart.io_read(1, 1)) == (0x34, 0x12)
    assert uart.divisor == 0x1234 and uart.io_read(3, 1) == 0x83
    uart.io_write(3, 1, 0x43)                       # break bit kept, DLAB off
    assert uart.io_read(3, 1) == 0x43 and uart.io_read(1, 1) == 0x05


def test_divisor_sets_the_character_time():
    uart, *_ = make()
    uart.io_write(3, 1, 0x80)
    uart.io_write(0, 1, 1)
    uart.io_write(1, 1, 0)
    assert uart.char_ns() == 86806                  # 115200 baud
    uart.io_write(0, 1, 0)
    assert uart.char_ns() == 86806                  # divisor 0 counts as 1


def test_scr_round_trip():
    uart, *_ = make()
    for value in (0x00, 0x5A, 0xFF):
        uart.io_write(7, 1, value)
        assert uart.io_read(7, 1) == value


def test_lsr_and_msr_ignore_writes():
    uart, *_ = make()
    uart.io_write(5, 1, 0xFF)
    uart.io_write(6, 1, 0xFF)
    assert uart.io_read(5, 1) == 0x60 and uart.io_read(6, 1) == 0xB0


# --- the receiver and its sender ---------------------------------------------------------

def test_without_fifo_bytes_arrive_one_character_after_each_read():
    uart, clock, *_ = make(b"AB")
    uart.io_write(4, 1, 0x02)                       # RTS
    assert uart.next_deadline() == CHAR
    advance(uart, clock, 10 * CHAR)
    assert uart.io_read(5, 1) == 0x61 and uart.next_deadline() is None
    assert uart.io_read(0, 1) == ord("A")
    assert uart.next_deadline() == 11 * CHAR


def test_with_fifo_bytes_arrive_back_to_back_until_full():
    uart, clock, *_ = make(bytes(range(20)))
    uart.io_write(2, 1, 0x01)
    uart.io_write(4, 1, 0x02)
    advance(uart, clock, 16 * CHAR)
    assert len(uart.fifo) == 16 and uart.rx_deadline is None
    assert uart.timeout_deadline == 20 * CHAR       # four characters after the last
    clock.now = 30 * CHAR
    assert uart.io_read(0, 1) == 0                  # room: the sender starts again
    assert uart.rx_deadline == 31 * CHAR
    advance(uart, clock, 31 * CHAR)
    assert list(uart.fifo) == list(range(1, 17)) and uart.io_read(5, 1) == 0x61


def test_the_sender_waits_for_rts_and_does_not_send_into_loopback():
    uart, clock, *_ = make(b"Z")
    uart.io_write(2, 1, 0x01)
    advance(uart, clock, 5 * CHAR)
    assert uart.io_read(5, 1) == 0x60
    uart.io_write(4, 1, 0x12)                       # RTS, in loopback
    advance(uart, clock, 10 * CHAR)
    assert uart.io_read(5, 1) == 0x60 and bytes(uart.input) == b"Z"
    uart.io_write(4, 1, 0x02)                       # loopback left: it sends
    assert uart.rx_deadline == 11 * CHAR
    advance(uart, clock, 11 * CHAR)
    assert uart.io_read(0, 1) == ord("Z")


# --- impl against the spec ---------------------------------------------------------------

OFFSETS = st.integers(0, 7)
VALUES = st.one_of(st.integers(0, 255), st.sampled_from(
    [0x01, 0x07, 0x41, 0x81, 0xC7, 0x00, 0x10, 0x12, 0x1B, 0x1F, 0x0B, 0x80, 0x83, 0x03, 0x0F]))
#: register traffic that reaches the interesting states often: loopback
#: bytes filling the FIFO, reads draining it, FCR/MCR/IER changes, time
COMMON = st.sampled_from([
    ("write", 0, 0x41), ("write", 0, 0x42), ("write", 0, 0x43), ("write", 0, 0x44),
    ("read", 0, 0), ("read", 2, 0), ("read", 5, 0), ("read", 6, 0),
    ("write", 2, 0x01), ("write", 2, 0x41), ("write", 2, 0x81), ("write", 2, 0xC1),
    ("write", 2, 0x03), ("write", 2, 0x05), ("write", 2, 0x00),
    ("write", 4, 0x10), ("write", 4, 0x12), ("write", 4, 0x1B), ("write", 4, 0x1F),
    ("write", 4, 0x02), ("write", 4, 0x0B), ("write", 4, 0x00),
    ("write", 1, 0x0F), ("write", 1, 0x01), ("write", 1, 0x05), ("write", 1, 0x08),
    ("write", 1, 0x00), ("write", 3, 0x83), ("write", 3, 0x03),
    ("tick", 0, CHAR), ("tick", 0, 4 * CHAR), ("tick", 0, 20 * CHAR), ("tick", 0, 1),
])
#: how a run starts: as it comes out of reset, or receiving with or without FIFOs
PRELUDES = st.sampled_from([
    [], [("write", 4, 0x02)], [("write", 2, 0x01), ("write", 4, 0x0B)],
    [("write", 2, 0xC1), ("write", 1, 0x05), ("write", 4, 0x03)],
    [("write", 2, 0x41), ("write", 4, 0x10), ("write", 1, 0x0F)],
])
OPS = st.lists(st.one_of(
    COMMON, COMMON, COMMON,
    st.tuples(st.just("read"), OFFSETS, st.just(0)),
    st.tuples(st.just("write"), OFFSETS, VALUES),
    st.tuples(st.just("repeat"), st.integers(2, 18), COMMON),
    st.tuples(st.just("tick"), st.just(0), st.integers(1, 6 * CHAR)),
), min_size=20, max_size=80)


def _pair(data: bytes):
    clock = Clock()
    ref_events, imp_events = [], []
    ref = Uart16550("com1", ref_events.append,
                    irq=lambda lv: ref_events.append(("irq", lv)), clock=clock, input=data)
    imp = Uart(imp_events.append, lambda lv: imp_events.append(("irq", lv)), clock, data)
    return clock, ref, imp, ref_events, imp_events


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(data=st.one_of(st.binary(max_size=24), st.just(bytes(range(0x30, 0x50)))),
       prelude=PRELUDES, ops=OPS)
def test_impl_uart_behaves_as_the_spec(data, prelude, ops):
    clock, ref, imp, ref_events, imp_events = _pair(data)
    steps = prelude + [op for kind, *rest in ops
             for op in ([rest[1]] * rest[0] if kind == "repeat" else [(kind, *rest)])]
    for kind, offset, value in steps:
        if kind == "read":
            assert ref.io_read(offset, 1) == imp.read(offset, 1), (offset, steps)
        elif kind == "write":
            ref.io_write(offset, 1, value)
            imp.write(offset, 1, value)
        else:
            end = clock.now + value
            while True:
                due = ref.next_deadline()
                assert due == imp.due()
                if due is None or due > end:
                    break
                clock.now = max(clock.now, due)
                ref.expire(clock.now)
                imp.timer(clock.now)
            clock.now = end
        assert ref_events == imp_events
        assert ref.level == imp.line
    assert ref.next_deadline() == imp.due()


# --- the serial guest on both engines ------------------------------------------------------

SERIAL_GUEST_OUTPUT = """\
reset iir lcr mcr lsr msr scr: 01 00 08 60 b0 00
scr: 5a a5
dlab dll dlm, dll dlm, ier lcr: 0c 00 00 01 05 03
fifo iir: c1
trigger 4 iir iir lsr, data, iir lsr: c1 c4 61 abcd c1 60
overrun iir iir lsr lsr iir, data, lsr: c4 c6 63 61 c4 ABCDEFGHIJKLMNOP 60
loop msr: b0 f0 b0 00 20 30 b0 b0
loop deltas: 01 00 04 0b 02 01 08
msi iir: c0 c1
cti iir, polled, data, iir, data, lsr: c1 cc x c1 y 60
rx:{rx}
done
"""


def test_serial_guest_with_input_from_outside():
    """Loopback ignores the outside; once RTS is held outside loopback the
    input arrives through the FIFO, one character time apart."""
    from spec import loader
    from tests.conftest import both
    result = both(loader.load("serial"), serial_input=b"hi")
    assert result.serial == SERIAL_GUEST_OUTPUT.format(rx=" 68 69")
