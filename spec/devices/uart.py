"""The 16550A UART of COM1, as qemu-dm emulates it (``hw/char/serial.c``).

Room: the register file of one UART, its receive FIFO, its modem-status
logic and its transmitter. Imports :mod:`spec.trace`. The facts are those
of the National Semiconductor PC16550D data sheet ("PC16550D UART with
FIFOs", June 1995) and of QEMU's ``hw/char/serial.c``; where the two
disagree, this module says which it follows and why.

Register offsets from the base port (data sheet, table II):

====== ==================== =====================
offset read                  write
====== ==================== =====================
0      RBR (DLL if DLAB)     THR (DLL if DLAB)
1      IER (DLM if DLAB)     IER (DLM if DLAB)
2      IIR                   FCR
3      LCR                   LCR (bit 7 = DLAB)
4      MCR                   MCR
5      LSR                   — (ignored)
6      MSR                   — (ignored)
7      SCR                   SCR
====== ==================== =====================

State after reset (QEMU's ``serial_reset``): IER, LCR, SCR and FCR 0,
divisor 12 (9600 baud), LSR 0x60 (THRE, TEMT), MCR 0x08 (OUT2; the data
sheet resets it to 0, QEMU sets OUT2 and this model is QEMU's), MSR 0xB0.

**The transmitter is never busy.** A byte written to THR leaves at once
(qemu-dm's character backend takes it without delay), so THR, the transmit
FIFO and the transmitter shift register are empty again straight away:
LSR shows THRE (bit 5) and TEMT (bit 6) whenever the guest looks, with or
without FIFOs, and the transmit FIFO never holds a byte.

**FCR** (write-only; data sheet "FIFO Control Register"). Bit 0 enables
both FIFOs; a write that changes it also clears both. Bit 1 clears the
receive FIFO (and LSR.DR, and a pending character timeout); bit 2 clears
the transmit FIFO, which makes THR empty and the THRE interrupt pending
(as QEMU does). Bits 7:6 choose the receive trigger level: 1, 4, 8 or 14
bytes. The data sheet ignores bits 1-7 unless bit 0 is written as 1;
QEMU acts on them in any case, and so does this model.

**IIR**: bits 7:6 are 11 while the FIFOs are enabled (so 0xC1 with nothing
pending), bits 3:0 name the pending interrupt of highest priority, each
only when enabled in IER (QEMU's ``serial_update_irq``):

1. receiver line status (IER bit 2): an overrun, LSR.OE - 0x06;
2. character timeout (IER bit 0, FIFO mode) - 0x0C, see below;
3. received data available (IER bit 0): without FIFOs LSR.DR; with FIFOs
   the receive FIFO holds at least the trigger level - 0x04;
4. transmitter holding register empty (IER bit 1) - 0x02. It becomes
   pending when THR empties (after every byte written, here at once), when
   IER.THRI is set while THR is empty, and when the transmit FIFO is
   cleared; reading IIR while it is the one shown, or writing THR, clears
   it;
5. modem status (IER bit 3): a delta bit in MSR - 0x00.

Bit 0 is set when none is pending. The UART drives its interrupt line
(IRQ4 for COM1) high while one is pending and low otherwise, through the
``irq`` callback. As in QEMU, MCR.OUT2 does not gate the line.

**The receiver.** Without FIFOs a byte goes to RBR; one arriving while
LSR.DR is still set overwrites it and sets LSR.OE. With FIFOs bytes queue
in a 16-byte receive FIFO; a byte arriving while it is full is lost and
sets LSR.OE (the FIFO's contents are kept). LSR.DR is set while the FIFO
holds a byte; reading RBR takes the oldest one (0 if the FIFO is empty).

**Character timeout** (data sheet, "FIFO Interrupt Mode Operation"): with
FIFOs enabled, when the receive FIFO holds at least one byte and none has
arrived in it or been read from it for four character times, the timeout
indication becomes pending. Here the four character times are a timer
deadline on the virtual clock, armed at every arrival (and every read that
leaves bytes behind), dropped when the FIFO empties; reading RBR or
clearing the FIFO clears the indication. As in QEMU and the data sheet it
does not depend on the trigger level (QEMU ranks it above "data
available", so a quiet FIFO at its trigger level shows 0x0C).

**MCR** keeps bits 4:0: DTR, RTS, OUT1, OUT2, LOOP; bits 7:5 read 0.
**Loopback** (MCR.LOOP, data sheet "Modem Control Register" bit 4): bytes
written to THR come back into the receiver instead of leaving, and the
modem inputs are connected to the modem outputs: CTS to RTS, DSR to DTR,
RI to OUT1, DCD to OUT2. While the UART is in loopback it takes no input
from outside.

**MSR**: the upper nibble shows the modem input lines; outside loopback
they are those of qemu-dm's backend, a file or pipe with no modem lines,
for which QEMU shows CTS, DSR and DCD set (0xB0). The lower nibble holds
the delta bits: DCTS, DDSR, DDCD (bits 0, 1, 3) set when CTS, DSR or DCD
change, TERI (bit 2) when RI falls; reading MSR clears them. An MCR write
that changes the lines (in loopback, or by entering or leaving it) sets
the deltas, and with IER bit 3 raises the modem status interrupt, as the
data sheet says ("the modem control interrupts are also operational" in
loopback). QEMU diverges here: in loopback its MSR mirrors MCR without
delta bits or interrupts. This model follows the data sheet
(:doc:`/devices` lists the divergence).

**LSR**: DR (bit 0), OE (bit 1), THRE (bit 5), TEMT (bit 6). Bit 7 (error
in the receive FIFO) reports parity, framing or break errors held in the
FIFO; a virtual line has none, so it reads 0, as do PE, FE and BI (bits
2-4). Reading LSR clears OE.

**LCR** keeps all its bits; DLAB (bit 7) maps offsets 0 and 1 to the
divisor latch (DLL, DLM); the break bit (6) is stored only. The divisor
sets the character time, ``10 bits * divisor / 115200`` seconds (a
character is counted as 10 bits whatever LCR's word length says; QEMU
counts LCR's frame size, which matters only to timing). **SCR** is a byte
of storage.

**Input timing.** The bytes of ``input`` come from a sender that obeys
RTS/CTS flow control and never overruns the receiver: it sends while the
guest holds RTS (MCR bit 1) outside loopback (in loopback the modem outputs
are inactive towards the line, data sheet MCR bit 4) and the receiver has
room (without FIFOs: RBR is empty; with FIFOs: fewer than 16 bytes
queued). A character takes one
character time at the rate programmed when it starts. The sender starts
one when RTS rises, and when it is idle and an MCR, FCR or RBR access
gives it leave (room again, loopback left); with FIFOs it starts the next
one the moment the previous one arrives, so bytes arrive one character
time apart until the FIFO is full. Without FIFOs every read of RBR starts
the character afresh (the model before FIFOs existed; kept so that the
timing of existing guests does not change). A character that arrives
while the UART is in loopback is not taken (it stays in ``input``).
The arrival and timeout times are the UART's timer deadlines
(:meth:`Uart16550.next_deadline`); at the same instant an arrival comes
before a timeout.

**A script at the other end.** A responder (``hvmspec run
--serial-script``) sees each byte as it leaves THR and may answer: the
answer is fed to the sender at that moment, the virtual time of the
guest's write, as if typed then (then it arrives as above). Input so
paced depends only on the guest's output, so both engines see it alike.
"""

from __future__ import annotations

from typing import Callable

from spec import trace

LSR_DR = 0x01
LSR_OE = 0x02
LSR_THRE = 0x20
LSR_TEMT = 0x40
LCR_DLAB = 0x80
MCR_DTR, MCR_RTS, MCR_OUT1, MCR_OUT2, MCR_LOOP = 0x01, 0x02, 0x04, 0x08, 0x10
MSR_DCTS, MSR_DDSR, MSR_TERI, MSR_DDCD = 0x01, 0x02, 0x04, 0x08
MSR_CTS, MSR_DSR, MSR_RI, MSR_DCD = 0x10, 0x20, 0x40, 0x80
FCR_FE, FCR_RFR, FCR_XFR = 0x01, 0x02, 0x04
FCR_KEPT = 0xC9                 # FE, DMA mode, trigger level: the bits that stay
IER_RDI, IER_THRI, IER_RLSI, IER_MSI = 0x01, 0x02, 0x04, 0x08
IIR_NO_INT, IIR_MSI, IIR_THRI, IIR_RDI, IIR_RLSI = 0x01, 0x00, 0x02, 0x04, 0x06
IIR_CTI = 0x0C
IIR_FIFO = 0xC0
FIFO_SIZE = 16
TRIGGER_LEVELS = (1, 4, 8, 14)  # FCR bits 7:6
#: the modem inputs of qemu-dm's backend: no modem lines, shown as CTS, DSR, DCD
BACKEND_LINES = MSR_CTS | MSR_DSR | MSR_DCD
TIMEOUT_CHARS = 4
BAUD_BASE = 115_200
NS = 1_000_000_000


class Uart16550:
    """One UART; ``port`` names it in the trace (``com1``), ``irq`` sets
    its interrupt line's level, ``clock`` is the virtual time in ns,
    ``input`` the bytes a sender will send it."""

    sizes = (1,)

    def __init__(self, port: str, emit: Callable[[trace.Event], None],
                 irq: Callable[[int], None] = lambda level: None,
                 clock: Callable[[], int] = lambda: 0, input: bytes = b"") -> None:
        self.name = "uart"
        self.port = port
        self.emit = emit
        self.irq = irq
        self.clock = clock
        self.ier = self.lcr = self.scr = self.fcr = 0
        self.mcr = MCR_OUT2
        self.divisor = 12       # 9600 baud, the power-on divisor of qemu's serial.c
        self.output = bytearray()
        self.input = bytearray(input)
        self.rbr = 0
        self.fifo = bytearray()             # the receive FIFO, when enabled
        self.lsr = LSR_THRE | LSR_TEMT
        self.lines = BACKEND_LINES          # MSR bits 7:4
        self.deltas = 0                     # MSR bits 3:0
        self.thr_pending = False
        self.timeout_pending = False
        self.level = 0
        self.rx_deadline: int | None = None
        self.timeout_deadline: int | None = None
        #: the line's other end answering output (a serial script): called
        #: with each byte that leaves; what it returns is fed to the sender
        self.responder: Callable[[int], bytes] | None = None

    # --- register access -------------------------------------------------------------

    def io_read(self, offset: int, size: int) -> int:
        if offset in (0, 1) and self.lcr & LCR_DLAB:
            return self.divisor >> 8 * offset & 0xFF
        readers = {0: self._read_rbr, 1: lambda: self.ier, 2: self._read_iir,
                   3: lambda: self.lcr, 4: lambda: self.mcr, 5: self._read_lsr,
                   6: self._read_msr, 7: lambda: self.scr}
        return readers[offset]()

    def io_write(self, offset: int, size: int, value: int) -> None:
        if offset in (0, 1) and self.lcr & LCR_DLAB:
            shift = 8 * offset
            self.divisor = self.divisor & ~(0xFF << shift) & 0xFFFF | value << shift
            return
        writers = {0: self._transmit, 1: self._write_ier, 2: self._write_fcr,
                   3: self._write_lcr, 4: self._write_mcr, 7: self._write_scr}
        if offset in writers:           # LSR (5) and MSR (6) are read-only
            writers[offset](value)

    # --- the registers, one by one ----------------------------------------------------

    def _read_rbr(self) -> int:
        """RBR: the received byte (without FIFOs) or the oldest in the FIFO."""
        if self.fifo_enabled():
            value = self.fifo.pop(0) if self.fifo else 0
            self.timeout_pending = False
            self._fifo_activity(self.clock())
            self._sender_may_start()
        else:
            value, self.lsr = self.rbr, self.lsr & ~LSR_DR
            self._start_sender()
        self._update()
        return value

    def _read_iir(self) -> int:
        value = self.iir()
        if value & 0x0F == IIR_THRI:
            self.thr_pending = False
            self._update()
        return value

    def _read_lsr(self) -> int:
        value, self.lsr = self.lsr, self.lsr & ~LSR_OE
        self._update()
        return value

    def _read_msr(self) -> int:
        value, self.deltas = self.lines | self.deltas, 0
        self._update()
        return value

    def _write_ier(self, value: int) -> None:
        if value & IER_THRI and not self.ier & IER_THRI and self.lsr & LSR_THRE:
            self.thr_pending = True
        self.ier = value & 0x0F
        self._update()

    def _write_fcr(self, value: int) -> None:
        if (value ^ self.fcr) & FCR_FE:     # enabling or disabling clears both FIFOs
            value |= FCR_RFR | FCR_XFR
        if value & FCR_RFR:
            self.fifo.clear()
            self.lsr &= ~LSR_DR
            self.timeout_pending = False
            self.timeout_deadline = None
        if value & FCR_XFR:                 # the transmit FIFO is always empty already
            self.thr_pending = True
        self.fcr = value & FCR_KEPT
        self._sender_may_start()
        self._update()

    def _write_lcr(self, value: int) -> None:
        self.lcr = value

    def _write_mcr(self, value: int) -> None:
        rts_rises = value & MCR_RTS and not self.mcr & MCR_RTS
        self.mcr = value & 0x1F
        self._set_lines(self._modem_inputs())
        if rts_rises:
            self._start_sender()
        else:
            self._sender_may_start()
        self._update()

    def _write_scr(self, value: int) -> None:
        self.scr = value

    # --- the transmitter ---------------------------------------------------------------

    def _transmit(self, value: int) -> None:
        """A byte written to THR leaves at once (or, in loopback, comes back)."""
        self.thr_pending = False
        self._update()
        if self.mcr & MCR_LOOP:
            self._receive(value, self.clock())
        else:
            self.output.append(value)
            self.emit(trace.SerialOut(port=self.port, byte=value))
            if self.responder is not None:
                answer = self.responder(value)
                if answer:
                    self.feed(answer)
        self.thr_pending = True             # THR empty again at once
        self._update()

    # --- modem status ------------------------------------------------------------------

    def _modem_inputs(self) -> int:
        """MSR bits 7:4: the outputs looped back, or the backend's lines."""
        if not self.mcr & MCR_LOOP:
            return BACKEND_LINES
        mcr = self.mcr
        return ((MSR_CTS if mcr & MCR_RTS else 0) | (MSR_DSR if mcr & MCR_DTR else 0)
                | (MSR_RI if mcr & MCR_OUT1 else 0) | (MSR_DCD if mcr & MCR_OUT2 else 0))

    def _set_lines(self, lines: int) -> None:
        changed = (self.lines ^ lines) >> 4
        ri_fell = self.lines & MSR_RI and not lines & MSR_RI
        self.deltas |= changed & (MSR_DCTS | MSR_DDSR | MSR_DDCD)
        if ri_fell:
            self.deltas |= MSR_TERI
        self.lines = lines

    # --- interrupts --------------------------------------------------------------------

    def fifo_enabled(self) -> bool:
        return bool(self.fcr & FCR_FE)

    def trigger_level(self) -> int:
        return TRIGGER_LEVELS[self.fcr >> 6]

    def _data_available(self) -> bool:
        if not self.lsr & LSR_DR:
            return False
        return not self.fifo_enabled() or len(self.fifo) >= self.trigger_level()

    def iir(self) -> int:
        """IIR: the FIFO bits and the pending interrupt of highest
        priority (module docstring)."""
        return (IIR_FIFO if self.fifo_enabled() else 0) | self._pending()

    def _pending(self) -> int:
        if self.ier & IER_RLSI and self.lsr & LSR_OE:
            return IIR_RLSI
        if self.ier & IER_RDI and self.timeout_pending:
            return IIR_CTI
        if self.ier & IER_RDI and self._data_available():
            return IIR_RDI
        if self.ier & IER_THRI and self.thr_pending:
            return IIR_THRI
        if self.ier & IER_MSI and self.deltas:
            return IIR_MSI
        return IIR_NO_INT

    def _update(self) -> None:
        level = int(self._pending() != IIR_NO_INT)
        if level != self.level:
            self.level = level
            self.irq(level)

    # --- the receiver ------------------------------------------------------------------

    def char_ns(self) -> int:
        """One character (start, 8 data, stop bits) at the programmed rate."""
        return -(-10 * max(self.divisor, 1) * NS // BAUD_BASE)

    def _room(self) -> bool:
        if self.fifo_enabled():
            return len(self.fifo) < FIFO_SIZE
        return not self.lsr & LSR_DR

    def _may_send(self) -> bool:
        """Input left, RTS held towards the sender (in loopback the modem
        outputs are inactive outside) and room in the receiver."""
        rts = self.mcr & (MCR_RTS | MCR_LOOP) == MCR_RTS
        return bool(self.input) and rts and self._room()

    def _start_sender(self) -> None:
        """The sender starts a character now, or stops if it may not."""
        self.rx_deadline = self.clock() + self.char_ns() if self._may_send() else None

    def _sender_may_start(self) -> None:
        """An idle sender starts a character if it now may."""
        if self.rx_deadline is None and self._may_send():
            self.rx_deadline = self.clock() + self.char_ns()

    def _fifo_activity(self, at: int) -> None:
        """A byte arrived in the FIFO or was read from it at ``at``: the
        timeout counts four character times from here while bytes remain."""
        if self.fifo:
            self.timeout_deadline = at + TIMEOUT_CHARS * self.char_ns()
        else:
            self.lsr &= ~LSR_DR
            self.timeout_deadline = None

    def feed(self, data: bytes) -> None:
        """More bytes for the sender (the user typed them): an idle sender
        starts a character now if it may."""
        self.input += data
        self._sender_may_start()

    def next_deadline(self) -> int | None:
        """The earliest of the next arrival and the character timeout."""
        times = [t for t in (self.rx_deadline, self.timeout_deadline) if t is not None]
        return min(times, default=None)

    def expire(self, now: int) -> None:
        """The timer: the arrivals and timeouts due by ``now``, in time order."""
        while True:
            rx, timeout = self.rx_deadline, self.timeout_deadline
            if rx is not None and rx <= now and (timeout is None or rx <= timeout):
                self._arrive(rx)
            elif timeout is not None and timeout <= now:
                self._time_out()
            else:
                return

    def _arrive(self, at: int) -> None:
        """The sender's character arrives at ``at``."""
        self.rx_deadline = None
        if not self.input or self.mcr & MCR_LOOP:
            return
        self._receive(self.input.pop(0), at)
        if self.fifo_enabled() and self._may_send():
            self.rx_deadline = at + self.char_ns()

    def _time_out(self) -> None:
        self.timeout_deadline = None
        if self.fifo:
            self.timeout_pending = True
            self._update()

    def _receive(self, byte: int, at: int) -> None:
        """A byte reaches the receiver (from the sender or looped back)."""
        if self.fifo_enabled():
            if len(self.fifo) < FIFO_SIZE:
                self.fifo.append(byte)
            else:
                self.lsr |= LSR_OE          # lost; the FIFO keeps its contents
            self.lsr |= LSR_DR
            self._fifo_activity(at)
        else:
            if self.lsr & LSR_DR:
                self.lsr |= LSR_OE
            self.rbr = byte
            self.lsr |= LSR_DR
        self._update()
