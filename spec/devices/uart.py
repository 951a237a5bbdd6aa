"""The 16550A UART of COM1, as qemu-dm emulates it (``hw/serial.c``).

Room: the register file of one UART and its transmitter. Imports
:mod:`spec.trace`. Register offsets from the base port (National
Semiconductor PC16550D data sheet, table II):

====== ==================== =====================
offset read                  write
====== ==================== =====================
0      RBR (DLL if DLAB)     THR (DLL if DLAB)
1      IER (DLM if DLAB)     IER (DLM if DLAB)
2      IIR                   FCR
3      LCR                   LCR (bit 7 = DLAB)
4      MCR                   MCR
5      LSR                   —
6      MSR                   —
7      SCR                   SCR
====== ==================== =====================

A byte written to THR leaves at once (qemu-dm's backend is never busy), so
the transmitter is empty again straight away: LSR shows THRE (bit 5) and
TEMT (bit 6) whenever the guest looks.

Interrupts (PC16550D "Interrupt Identification Register", and QEMU's
``serial_update_irq``), in priority order, each only when enabled in IER:

1. receiver line status (IER bit 2): an overrun (LSR bit 1) - IIR 0x06;
2. received data available (IER bit 0): LSR.DR set - IIR 0x04;
3. transmitter holding register empty (IER bit 1) - IIR 0x02. It becomes
   pending when THR empties (after every byte written, here at once) and
   when the interrupt is enabled while THR is empty; reading IIR while it
   is the one shown, or writing THR, clears it;
4. modem status (IER bit 3): a delta bit in MSR - IIR 0x00.

IIR bit 0 is set when none is pending. The UART drives its interrupt line
(IRQ4 for COM1) high while one is pending and low otherwise, through the
``irq`` callback. As in QEMU, MCR.OUT2 does not gate the line.

The receiver. The bytes of ``input`` arrive one at a time, as a sender under
RTS/CTS flow control sends them: while the guest holds RTS (MCR bit 1), the
first one character time (10 bits at the programmed rate, 115200 / divisor
baud) after RTS rises, each next one a character time after the previous one
was taken from RBR. So nothing is overrun
and the arrival times, the UART's timer deadlines on the virtual clock, are
the same on every engine. The FIFOs come with issue 6.
"""

from __future__ import annotations

from typing import Callable

from spec import trace

LSR_DR = 0x01
LSR_OE = 0x02
LSR_THRE = 0x20
LSR_TEMT = 0x40
LCR_DLAB = 0x80
MCR_RTS = 0x02
MCR_LOOP = 0x10
IER_RDI, IER_THRI, IER_RLSI, IER_MSI = 0x01, 0x02, 0x04, 0x08
IIR_NO_INT, IIR_MSI, IIR_THRI, IIR_RDI, IIR_RLSI = 0x01, 0x00, 0x02, 0x04, 0x06
BAUD_BASE = 115_200
NS = 1_000_000_000


class Uart16550:
    """One UART; ``port`` names it in the trace (``com1``), ``irq`` sets
    its interrupt line's level, ``clock`` is the virtual time in ns."""

    sizes = (1,)

    def __init__(self, port: str, emit: Callable[[trace.Event], None],
                 irq: Callable[[int], None] = lambda level: None,
                 clock: Callable[[], int] = lambda: 0, input: bytes = b"") -> None:
        self.name = "uart"
        self.port = port
        self.emit = emit
        self.irq = irq
        self.clock = clock
        self.ier = self.lcr = self.mcr = self.scr = 0
        self.divisor = 12       # 9600 baud, the power-on divisor of qemu's serial.c
        self.output = bytearray()
        self.input = bytearray(input)
        self.rbr = 0
        self.lsr = LSR_THRE | LSR_TEMT
        self.thr_pending = False
        self.level = 0
        self.rx_deadline: int | None = None

    # --- registers -------------------------------------------------------------------

    def io_read(self, offset: int, size: int) -> int:
        dlab = self.lcr & LCR_DLAB
        if offset == 0 and dlab:
            return self.divisor & 0xFF
        if offset == 0:
            value, self.lsr = self.rbr, self.lsr & ~LSR_DR
            self._schedule_rx()
            self._update()
            return value
        if offset == 1:
            return self.divisor >> 8 if dlab else self.ier
        if offset == 2:
            value = self.iir()
            if value == IIR_THRI:
                self.thr_pending = False
                self._update()
            return value
        if offset == 5:
            value, self.lsr = self.lsr, self.lsr & ~LSR_OE
            self._update()
            return value
        return {3: self.lcr, 4: self.mcr, 6: 0, 7: self.scr}[offset]

    def io_write(self, offset: int, size: int, value: int) -> None:
        dlab = self.lcr & LCR_DLAB
        if offset == 0 and dlab:
            self.divisor = (self.divisor & 0xFF00) | value
        elif offset == 0:
            self._transmit(value)
        elif offset == 1 and dlab:
            self.divisor = (self.divisor & 0xFF) | value << 8
        elif offset == 1:
            if value & IER_THRI and not self.ier & IER_THRI and self.lsr & LSR_THRE:
                self.thr_pending = True
            self.ier = value & 0x0F
            self._update()
        elif offset == 3:
            self.lcr = value
        elif offset == 4:
            rts_rises = value & MCR_RTS and not self.mcr & MCR_RTS
            self.mcr = value & 0x1F
            if rts_rises:
                self._schedule_rx()
        elif offset == 7:
            self.scr = value
        # FCR (2) is accepted and ignored until the FIFOs exist; LSR and MSR
        # are read-only.

    def _transmit(self, value: int) -> None:
        self.thr_pending = False
        self._update()
        if self.mcr & MCR_LOOP:
            self._receive(value)            # loopback: the byte comes back in
        else:
            self.output.append(value)
            self.emit(trace.SerialOut(port=self.port, byte=value))
        self.thr_pending = True             # THR empty again at once
        self._update()

    # --- interrupts ------------------------------------------------------------------

    def iir(self) -> int:
        """The pending interrupt of highest priority (module docstring)."""
        if self.ier & IER_RLSI and self.lsr & LSR_OE:
            return IIR_RLSI
        if self.ier & IER_RDI and self.lsr & LSR_DR:
            return IIR_RDI
        if self.ier & IER_THRI and self.thr_pending:
            return IIR_THRI
        return IIR_NO_INT

    def _update(self) -> None:
        level = int(self.iir() != IIR_NO_INT)
        if level != self.level:
            self.level = level
            self.irq(level)

    # --- the receiver ------------------------------------------------------------------

    def char_ns(self) -> int:
        """One character (start, 8 data, stop bits) at the programmed rate."""
        return -(-10 * max(self.divisor, 1) * NS // BAUD_BASE)

    def _schedule_rx(self) -> None:
        if self.input and self.mcr & MCR_RTS and not self.lsr & LSR_DR:
            self.rx_deadline = self.clock() + self.char_ns()
        else:
            self.rx_deadline = None

    def next_deadline(self) -> int | None:
        return self.rx_deadline

    def expire(self, now: int) -> None:
        """The timer: the next input byte arrives."""
        if self.rx_deadline is None or now < self.rx_deadline:
            return
        self.rx_deadline = None
        if self.input and not self.mcr & MCR_LOOP:
            self._receive(self.input.pop(0))

    def _receive(self, byte: int) -> None:
        if self.lsr & LSR_DR:
            self.lsr |= LSR_OE
        self.rbr = byte
        self.lsr |= LSR_DR
        self._update()
