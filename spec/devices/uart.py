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
LSR always shows THRE (bit 5) and TEMT (bit 6). Nothing is ever received
here, so DR (bit 0) is clear and RBR reads 0; input, interrupts and the FIFOs
come with issue 6.
"""

from __future__ import annotations

from typing import Callable

from spec import trace

LSR_DR = 0x01
LSR_THRE = 0x20
LSR_TEMT = 0x40
LCR_DLAB = 0x80
IIR_NO_INT = 0x01


class Uart16550:
    """One UART; ``port`` names it in the trace (``com1``)."""

    sizes = (1,)

    def __init__(self, port: str, emit: Callable[[trace.Event], None]) -> None:
        self.name = "uart"
        self.port = port
        self.emit = emit
        self.ier = self.lcr = self.mcr = self.scr = 0
        self.divisor = 12       # 9600 baud, the power-on divisor of qemu's serial.c
        self.output = bytearray()

    def io_read(self, offset: int, size: int) -> int:
        dlab = self.lcr & LCR_DLAB
        if offset == 0:
            return self.divisor & 0xFF if dlab else 0
        if offset == 1:
            return self.divisor >> 8 if dlab else self.ier
        return {2: IIR_NO_INT, 3: self.lcr, 4: self.mcr,
                5: LSR_THRE | LSR_TEMT, 6: 0, 7: self.scr}[offset]

    def io_write(self, offset: int, size: int, value: int) -> None:
        dlab = self.lcr & LCR_DLAB
        if offset == 0 and dlab:
            self.divisor = (self.divisor & 0xFF00) | value
        elif offset == 0:
            self.output.append(value)
            self.emit(trace.SerialOut(port=self.port, byte=value))
        elif offset == 1 and dlab:
            self.divisor = (self.divisor & 0xFF) | value << 8
        elif offset == 1:
            self.ier = value & 0x0F
        elif offset == 3:
            self.lcr = value
        elif offset == 4:
            self.mcr = value & 0x1F
        elif offset == 7:
            self.scr = value
        # FCR (2) is accepted and ignored until the FIFOs exist; LSR and MSR
        # are read-only.
