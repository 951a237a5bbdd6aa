"""The virtual 8259A PIC pair that the VMM emulates for an HVM guest.

Room: the two interrupt controllers of a PC (master at ports 0x20/0x21,
slave at 0xA0/0xA1, cascaded on the master's IRQ2; edge/level control at
0x4D0/0x4D1), as Xen's ``xen/arch/x86/hvm/vpic.c`` (Xen 3.0.x:
``hvm/i8259.c``, after QEMU's ``hw/i8259.c``) keeps them inside the
hypervisor: the guest's accesses to these ports never reach qemu-dm.
Imports :mod:`spec.bv` and :mod:`spec.trace`.

The controller's rules are written over :mod:`spec.bv`, on the registers of
one 8259A (:class:`PicRegs`); :mod:`proofs.interrupts` runs the same
functions on Z3 terms. Register names follow the Intel 8259A data sheet
(order no. 231468):

IRR
    interrupt request register: the lines asking for service. A line in
    *edge* mode latches its request here on a rising edge and keeps it until
    the request is acknowledged, even while it is masked; a line in *level*
    mode (its ELCR bit set) has its IRR bit follow the line.
ISR
    in-service register: the requests acknowledged and not yet ended by an
    EOI.
IMR
    interrupt mask register (OCW1): a masked request is kept in IRR but not
    presented to the CPU.
priority
    the fixed order IRQ0 (highest) .. IRQ7 (lowest), rotated so that the
    line after ``priority_add - 1`` is highest (rotation commands of OCW2).

A request is presented to the CPU (the controller's INT output) when the
highest-priority unmasked IRR bit has a higher priority than every ISR bit
(in special mask mode, than every *unmasked* ISR bit). On the CPU's
interrupt acknowledge the controller sets that line's ISR bit (unless in
automatic-EOI mode), clears its IRR bit (edge mode only) and supplies the
vector ``irq_base + irq``. An acknowledge that finds no request (the line
dropped in between) supplies the vector of IRQ7, the *spurious* interrupt,
and sets no ISR bit; on the slave that is IRQ15.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from spec import bv, trace

W = 8                       # an 8259A has 8 lines

MASTER_PORTS = (0x20, 0x21)
SLAVE_PORTS = (0xA0, 0xA1)
ELCR_PORTS = (0x4D0, 0x4D1)
CASCADE_IRQ = 2
SPURIOUS_IRQ = 7
# PIIX3 ELCR: IRQ0, 1, 2 (master) and 8, 13 (slave) are always edge
# triggered; Xen's vpic.c keeps the same masks.
ELCR_WRITABLE = (0xF8, 0xDE)


class PicRegs(NamedTuple):
    """The registers of one 8259A that the interrupt rules act on."""

    irr: bv.Word
    isr: bv.Word
    imr: bv.Word
    elcr: bv.Word
    priority_add: bv.Word       # 0..7: the line of highest priority
    irq_base: bv.Word           # ICW2: vector of IRQ0, low 3 bits zero
    auto_eoi: bv.Bit            # ICW4 AEOI
    rotate_on_aeoi: bv.Bit      # OCW2 "rotate in automatic EOI mode"
    special_mask: bv.Bit        # OCW3 SMM


def reset_regs() -> PicRegs:
    """An 8259A after ICW1 (``pic_init_reset``): nothing requested, in
    service or masked; IRQ0 highest; vector base 0."""
    return PicRegs(0, 0, 0, 0, 0, 0, False, False, False)


# --- the rules, over the bit-vector domain ----------------------------------------------

def line_bit(irq: bv.Word) -> bv.Word:
    """The one-hot bit of line ``irq`` (0..7)."""
    return bv.shl(bv.const(1, W, irq), irq, W)


def _rotr(x: bv.Word, n: bv.Word) -> bv.Word:
    """Rotate an 8-bit word right by ``n`` (0..7)."""
    return bv.bor(bv.lshr(x, n, W), bv.shl(x, bv.sub(W, n, W), W), W)


def _lowest_set(x: bv.Word) -> tuple[bv.Bit, bv.Word]:
    """Whether ``x`` has a set bit, and the index of its lowest one."""
    index = bv.const(W - 1, W, x)
    for i in reversed(range(W - 1)):
        index = bv.ite(bv.bit(x, i), bv.const(i, W, x), index)
    return bv.ne(x, 0), index


def highest_priority(lines: bv.Word, priority_add: bv.Word) -> tuple[bv.Bit, bv.Word]:
    """``get_priority``: among the set bits of ``lines``, the one of highest
    priority under the rotation; returns (any set, its line)."""
    found, offset = _lowest_set(_rotr(lines, priority_add))
    return found, bv.band(bv.add(offset, priority_add, W), 7, W)


def requested(p: PicRegs, cascade_nested: bv.Bit = False) -> tuple[bv.Bit, bv.Word]:
    """``pic_get_irq``: the line the controller presents to the CPU, if any.

    ``cascade_nested`` is the master's special fully nested mode: a request
    from the slave may interrupt a slave handler in progress, so the cascade
    line's ISR bit does not block."""
    found, irq = highest_priority(bv.band(p.irr, bv.bnot(p.imr, W), W), p.priority_add)
    in_service = bv.ite(p.special_mask, bv.band(p.isr, bv.bnot(p.imr, W), W), p.isr)
    in_service = bv.ite(cascade_nested, bv.band(in_service, ~(1 << CASCADE_IRQ) & 0xFF, W),
                        in_service)
    busy, current = highest_priority(in_service, p.priority_add)
    # rotated positions: smaller is higher priority
    beats = bv.ult(bv.band(bv.sub(irq, p.priority_add, W), 7, W),
                   bv.band(bv.sub(current, p.priority_add, W), 7, W))
    return bv.and_(found, bv.or_(bv.not_(busy), beats)), irq


def acknowledge(p: PicRegs, irq: bv.Word) -> PicRegs:
    """``pic_intack``: the CPU's interrupt acknowledge of line ``irq``."""
    b = line_bit(irq)
    isr = bv.ite(p.auto_eoi, p.isr, bv.bor(p.isr, b, W))
    rotate = bv.and_(p.auto_eoi, p.rotate_on_aeoi)
    priority_add = bv.ite(rotate, bv.band(bv.add(irq, 1, W), 7, W), p.priority_add)
    edge = bv.is_zero(bv.band(p.elcr, b, W), W)
    irr = bv.ite(edge, bv.band(p.irr, bv.bnot(b, W), W), p.irr)
    return p._replace(irr=irr, isr=isr, priority_add=priority_add)


def eoi(p: PicRegs, rotate: bv.Bit = False) -> PicRegs:
    """OCW2 non-specific EOI: clear the ISR bit of highest priority (and,
    for "rotate on non-specific EOI", make that line the lowest)."""
    found, irq = highest_priority(p.isr, p.priority_add)
    isr = bv.ite(found, bv.band(p.isr, bv.bnot(line_bit(irq), W), W), p.isr)
    priority_add = bv.ite(bv.and_(found, rotate), bv.band(bv.add(irq, 1, W), 7, W),
                          p.priority_add)
    return p._replace(isr=isr, priority_add=priority_add)


def specific_eoi(p: PicRegs, irq: bv.Word, rotate: bv.Bit = False) -> PicRegs:
    """OCW2 specific EOI of line ``irq`` (with rotation: it becomes lowest)."""
    isr = bv.band(p.isr, bv.bnot(line_bit(irq), W), W)
    priority_add = bv.ite(rotate, bv.band(bv.add(irq, 1, W), 7, W), p.priority_add)
    return p._replace(isr=isr, priority_add=priority_add)


def apply_lines(p: PicRegs, raised: bv.Word, cleared: bv.Word) -> PicRegs:
    """What qemu-dm's notification brings (Xen 3.0.x ``do_pic_irqs_clear``
    then ``do_pic_irqs``): lowered level-triggered lines drop their request,
    raised lines request. Edge detection was done on qemu-dm's side, so a
    raised bit here *is* an edge (or an asserted level)."""
    return p._replace(irr=bv.bor(bv.band(p.irr, bv.bnot(cleared, W), W), raised, W))


def vector(p: PicRegs, irq: bv.Word) -> bv.Word:
    """The vector the controller supplies for line ``irq``."""
    return bv.bor(bv.band(p.irq_base, 0xF8, W), irq, W)


# --- one controller, with its programming interface ------------------------------------

class Pic8259:
    """One 8259A: the registers plus the state of its command interface
    (the ICW sequence, OCW3's register select and poll)."""

    def __init__(self, name: str, elcr_writable: int) -> None:
        self.name = name
        self.regs = reset_regs()
        self.elcr_writable = elcr_writable
        self.init_state = 0         # 0: ready; 1..3: expecting ICW2..ICW4
        self.init4 = False
        self.single = False
        self.read_isr = False
        self.poll = False
        self.fully_nested = False   # ICW4 SFNM

    def write(self, offset: int, value: int) -> None:
        """A byte written to the command (offset 0) or data (1) port."""
        r = self.regs
        if offset == 0 and value & 0x10:             # ICW1
            self.regs = reset_regs()._replace(elcr=r.elcr)
            self.init_state, self.init4, self.single = 1, bool(value & 1), bool(value & 2)
            self.read_isr = self.poll = self.fully_nested = False
        elif offset == 0 and value & 0x08:           # OCW3
            if value & 0x04:
                self.poll = True
            if value & 0x02:
                self.read_isr = bool(value & 1)
            if value & 0x40:
                self.regs = r._replace(special_mask=bool(value & 0x20))
        elif offset == 0:                            # OCW2
            self.regs = self._ocw2(value)
        elif self.init_state == 0:                   # OCW1
            self.regs = r._replace(imr=value)
        elif self.init_state == 1:                   # ICW2
            self.regs = r._replace(irq_base=value & 0xF8)
            self.init_state = (3 if self.init4 else 0) if self.single else 2
        elif self.init_state == 2:                   # ICW3 (cascade wiring: fixed)
            self.init_state = 3 if self.init4 else 0
        else:                                        # ICW4
            self.fully_nested = bool(value & 0x10)
            self.regs = r._replace(auto_eoi=bool(value & 0x02))
            self.init_state = 0

    def _ocw2(self, value: int) -> PicRegs:
        r, command, irq = self.regs, value >> 5, value & 7
        if command in (0, 4):                        # (clear|set) rotate in AEOI mode
            return r._replace(rotate_on_aeoi=command == 4)
        if command in (1, 5):                        # non-specific EOI (with rotation)
            return eoi(r, rotate=command == 5)
        if command in (3, 7):                        # specific EOI (with rotation)
            return specific_eoi(r, irq, rotate=command == 7)
        if command == 6:                             # set priority: irq becomes lowest
            return r._replace(priority_add=(irq + 1) & 7)
        return r                                     # 2: no operation

    def read(self, offset: int) -> int:
        """A byte read from the command (0) or data (1) port."""
        if self.poll:
            self.poll = False
            found, irq = requested(self.regs)
            if not found:
                return 0
            self.regs = acknowledge(self.regs, irq)
            return 0x80 | irq
        if offset == 0:
            return self.regs.isr if self.read_isr else self.regs.irr
        return self.regs.imr


class VirtualPic:
    """The master/slave pair, and the interrupt acknowledge the VMM performs
    when it injects (``vpic_ack_pending_irq``)."""

    def __init__(self, emit: Callable[[trace.Event], None]) -> None:
        self.emit = emit
        self.master = Pic8259("master", ELCR_WRITABLE[0])
        self.slave = Pic8259("slave", ELCR_WRITABLE[1])

    # --- lines ----------------------------------------------------------------------

    def apply_lines(self, raised: int, cleared: int) -> None:
        """Raised and cleared lines (16 bits: IRQ0..15) from qemu-dm."""
        m, s = self.master, self.slave
        m.regs = apply_lines(m.regs, raised & 0xFF, cleared & 0xFF)
        s.regs = apply_lines(s.regs, raised >> 8, cleared >> 8)
        self._cascade()

    def negative_edge(self, line: int) -> None:
        """Xen lowers one of its own ISA lines (Xen 3.0.4's
        ``vpic_irq_negative_edge``): the line's request bit is cleared,
        edge- or level-triggered, and a slave that no longer presents a
        request lowers its output, the master's IRQ2 (``vpic_update_int_output``)."""
        self.apply_lines(0, 1 << line)
        found, _irq = requested(self.slave.regs)
        if line >= 8 and not found:
            self.master.regs = apply_lines(self.master.regs, 0, 1 << CASCADE_IRQ)

    def _cascade(self) -> None:
        """The slave's INT output drives the master's IRQ2 (an edge each time
        the slave presents a request, as ``pic_update_irq`` pulses it)."""
        found, _irq = requested(self.slave.regs)
        if found:
            self.master.regs = apply_lines(self.master.regs, 1 << CASCADE_IRQ, 0)

    def elcr(self) -> int:
        """Both ELCRs as the 16-bit ``pic_elcr`` qemu-dm reads."""
        return self.master.regs.elcr | self.slave.regs.elcr << 8

    # --- the CPU side -------------------------------------------------------------------

    def has_request(self) -> bool:
        """The master's INT output (``vpic_get_highest_priority_irq`` found
        a line that may interrupt)."""
        self._cascade()
        return bool(requested(self.master.regs, self.master.fully_nested)[0])

    def acknowledge(self) -> tuple[int, int]:
        """The interrupt acknowledge cycle: returns (irq 0..15, vector). A
        master acknowledge of IRQ2 continues on the slave."""
        m, s = self.master, self.slave
        found, irq = requested(m.regs, m.fully_nested)
        if not found:
            return SPURIOUS_IRQ, vector(m.regs, SPURIOUS_IRQ)
        m.regs = acknowledge(m.regs, irq)
        if irq != CASCADE_IRQ:
            return irq, vector(m.regs, irq)
        found, sirq = requested(s.regs)
        if not found:
            return 8 + SPURIOUS_IRQ, vector(s.regs, SPURIOUS_IRQ)
        s.regs = acknowledge(s.regs, sirq)
        return 8 + sirq, vector(s.regs, sirq)

    # --- ports (the VMM's internal I/O handler) ------------------------------------------

    PORTS = MASTER_PORTS + SLAVE_PORTS + ELCR_PORTS

    def io_read(self, port: int) -> int:
        if port in ELCR_PORTS:
            chip = self.master if port == ELCR_PORTS[0] else self.slave
            return chip.regs.elcr
        chip = self.master if port in MASTER_PORTS else self.slave
        value = chip.read(port & 1)
        self._cascade()
        return value

    def io_write(self, port: int, value: int) -> None:
        if port in ELCR_PORTS:
            chip = self.master if port == ELCR_PORTS[0] else self.slave
            chip.regs = chip.regs._replace(elcr=value & chip.elcr_writable)
            return
        chip = self.master if port in MASTER_PORTS else self.slave
        chip.write(port & 1, value)
        self._cascade()
