"""The virtual 8259A pair for the impl engine.

Room: Xen's in-hypervisor PIC (``hvm/vpic.c``): IRR/ISR/IMR, rotation,
ICW/OCW programming, ELCR, the cascade on IRQ2 and the interrupt
acknowledge, on plain integers. Imports nothing of ``spec/``; the rules are
the 8259A data sheet's, stated as prose in :mod:`spec.pic`.
"""

from __future__ import annotations

#: _FIRST[pa][bits] = the line of highest priority among ``bits`` when line
#: ``pa`` is the highest, or -1
_FIRST = [[next(((pa + k) & 7 for k in range(8) if bits >> ((pa + k) & 7) & 1), -1)
           for bits in range(256)] for pa in range(8)]


class Chip:
    """One 8259A."""

    __slots__ = ("irr", "isr", "imr", "elcr", "pa", "base", "aeoi", "rotate_aeoi", "smm",
                 "sfnm", "init", "need_icw4", "single", "read_isr", "poll", "elcr_mask")

    def __init__(self, elcr_mask: int) -> None:
        self.elcr = 0
        self.elcr_mask = elcr_mask
        self.reset()

    def reset(self) -> None:
        self.irr = self.isr = self.imr = self.pa = self.base = 0
        self.aeoi = self.rotate_aeoi = self.smm = self.sfnm = False
        self.init = 0
        self.need_icw4 = self.single = self.read_isr = self.poll = False

    def pending(self, nested: bool = False) -> int:
        """The line to present to the CPU, or -1."""
        first = _FIRST[self.pa]
        req = first[self.irr & ~self.imr & 0xFF]
        if req < 0:
            return -1
        busy = self.isr & ~self.imr & 0xFF if self.smm else self.isr
        if nested:
            busy &= 0xFB
        cur = first[busy]
        if cur >= 0 and (cur - self.pa) & 7 <= (req - self.pa) & 7:
            return -1
        return req

    def ack(self, line: int) -> None:
        bit = 1 << line
        if self.aeoi:
            if self.rotate_aeoi:
                self.pa = (line + 1) & 7
        else:
            self.isr |= bit
        if not self.elcr & bit:
            self.irr &= ~bit

    def command(self, value: int) -> None:
        if value & 0x10:                                    # ICW1
            elcr = self.elcr
            self.reset()
            self.elcr = elcr
            self.init, self.need_icw4, self.single = 1, bool(value & 1), bool(value & 2)
            return
        if value & 0x08:                                    # OCW3
            if value & 0x04:
                self.poll = True
            if value & 0x02:
                self.read_isr = bool(value & 1)
            if value & 0x40:
                self.smm = bool(value & 0x20)
            return
        op, line = value >> 5, value & 7                    # OCW2
        if op == 0 or op == 4:
            self.rotate_aeoi = op == 4
        elif op == 1 or op == 5:
            top = _FIRST[self.pa][self.isr]
            if top >= 0:
                self.isr &= ~(1 << top)
                if op == 5:
                    self.pa = (top + 1) & 7
        elif op == 3 or op == 7:
            self.isr &= ~(1 << line)
            if op == 7:
                self.pa = (line + 1) & 7
        elif op == 6:
            self.pa = (line + 1) & 7

    def data(self, value: int) -> None:
        if self.init == 0:
            self.imr = value
        elif self.init == 1:
            self.base = value & 0xF8
            self.init = 2 if not self.single else (3 if self.need_icw4 else 0)
        elif self.init == 2:
            self.init = 3 if self.need_icw4 else 0
        else:
            self.sfnm, self.aeoi, self.init = bool(value & 0x10), bool(value & 2), 0

    def read(self, port_low: int) -> int:
        if self.poll:
            self.poll = False
            line = self.pending()
            if line < 0:
                return 0
            self.ack(line)
            return 0x80 | line
        if port_low:
            return self.imr
        return self.isr if self.read_isr else self.irr


class Vpic:
    """Master (IRQ0-7) and slave (IRQ8-15) on the master's IRQ2."""

    def __init__(self) -> None:
        self.master = Chip(0xF8)
        self.slave = Chip(0xDE)

    def _cascade(self) -> None:
        if self.slave.pending() >= 0:
            self.master.irr |= 4

    def lines(self, raised: int, cleared: int) -> None:
        m, s = self.master, self.slave
        m.irr = (m.irr & ~cleared | raised) & 0xFF
        s.irr = (s.irr & ~(cleared >> 8) | raised >> 8) & 0xFF
        self._cascade()

    def lower(self, line: int) -> None:
        """Xen's own line falls: its request goes; an idle slave drops IRQ2."""
        self.lines(0, 1 << line)
        if line >= 8 and self.slave.pending() < 0:
            self.master.irr &= ~4

    def requesting(self) -> bool:
        self._cascade()
        return self.master.pending(self.master.sfnm) >= 0

    def intack(self) -> tuple[int, int]:
        m, s = self.master, self.slave
        line = m.pending(m.sfnm)
        if line < 0:
            return 7, m.base | 7
        m.ack(line)
        if line != 2:
            return line, m.base | line
        sline = s.pending()
        if sline < 0:
            return 15, s.base | 7
        s.ack(sline)
        return 8 + sline, s.base | sline

    def elcr(self) -> int:
        return self.master.elcr | self.slave.elcr << 8

    def read(self, port: int) -> int:
        if port in (0x4D0, 0x4D1):
            return (self.master if port == 0x4D0 else self.slave).elcr
        chip = self.master if port < 0x80 else self.slave
        value = chip.read(port & 1)
        self._cascade()
        return value

    def write(self, port: int, value: int) -> None:
        if port in (0x4D0, 0x4D1):
            chip = self.master if port == 0x4D0 else self.slave
            chip.elcr = value & chip.elcr_mask
            return
        chip = self.master if port < 0x80 else self.slave
        if port & 1:
            chip.data(value)
        else:
            chip.command(value)
        self._cascade()


PORTS = frozenset({0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1})
