"""The virtual 8259A PIC pair that the VMM emulates for an HVM guest.

Room: the two interrupt controllers of a PC (master at ports 0x20/0x21,
slave at 0xA0/0xA1, cascaded on the master's IRQ2; edge/level control at
0x4D0/0x4D1), as Xen's ``xen/arch/x86/hvm/vpic.c`` (Xen 3.0.x:
``hvm/i8259.c``, after QEMU's ``hw/i8259.c``) keeps them inside the
hypervisor: the guest's accesses to these ports never reach qemu-dm.
Imports :mod:`spec.bv` and :mod:`spec.trace`.

The controller's rules are written over :mod:`spec.bv`, on the registers of
one 8259A (:class:`PicRegs`) and of the pair (:class:`PairRegs`): the
lines (:func:`pair_apply`, with the cascade :func:`cascade`, and Xen's
:func:`pair_negative_edge`), the INT output (:func:`pair_request`), the
interrupt acknowledge (:func:`pair_acknowledge`) and the guest's operation
command words (:func:`ocw`). :class:`VirtualPic` and :class:`Pic8259` are
thin wrappers that keep the registers and the command interface's state
(the ICW sequence, OCW3's register select and poll) and call these rules
with Python ints; :mod:`proofs.interrupts` runs the same functions on Z3
terms. Register names follow the Intel 8259A data sheet (order no. 231468):

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

The pair: the slave's INT output drives the master's IRQ2, an edge each
time the slave presents a request. The master's acknowledge of IRQ2
continues on the slave, which supplies the vector; in the master's special
fully nested mode (ICW4 SFNM) the master's in-service IRQ2 does not block
its requests, so a slave line may interrupt a slave handler.
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


def ocw2(p: PicRegs, value: bv.Word) -> PicRegs:
    """OCW2 (a command-port byte with bits 3 and 4 clear): bits 7-5 are the
    command, bits 2-0 a line. 0/4: clear/set rotate in automatic EOI mode;
    1/5: non-specific EOI (5: and rotate); 3/7: specific EOI of the line
    (7: and rotate); 6: set priority (the line becomes lowest); 2: no
    operation. Bit 7 is the rotation bit of commands 5 and 7."""
    command, irq = bv.lshr(value, 5, W), bv.band(value, 7, W)
    rotate = bv.bit(value, 7)
    aeoi = p._replace(rotate_on_aeoi=bv.eq(command, 4))
    set_priority = p._replace(priority_add=bv.band(bv.add(irq, 1, W), 7, W))
    return select(bv.member(command, (0, 4)), aeoi,
                  select(bv.member(command, (1, 5)), eoi(p, rotate),
                         select(bv.member(command, (3, 7)), specific_eoi(p, irq, rotate),
                                select(bv.eq(command, 6), set_priority, p))))


def ocw(p: PicRegs, data_port: bv.Bit, value: bv.Word) -> PicRegs:
    """A guest's operation command word, once the controller is initialised:
    a byte on the data port is OCW1 (the IMR); on the command port, bit 3
    set is OCW3 (of which the registers keep the special mask mode, set or
    cleared when bit 6 is set: bit 5) and bit 3 clear is :func:`ocw2`. (An
    ICW1, bit 4 on the command port, and OCW3's register select and poll
    are the command interface's, :class:`Pic8259`.)"""
    ocw3 = p._replace(special_mask=bv.ite(bv.bit(value, 6), bv.bit(value, 5), p.special_mask))
    return select(data_port, p._replace(imr=value),
                  select(bv.bit(value, 3), ocw3, ocw2(p, value)))


def select(cond: bv.Bit, a: PicRegs, b: PicRegs) -> PicRegs:
    """The registers ``a`` if ``cond`` holds, else ``b``."""
    return PicRegs(*[bv.ite(cond, x, y) for x, y in zip(a, b)])


# --- the master/slave pair ---------------------------------------------------------------

LW = 16                     # ISA lines of the pair: bit n = IRQ n (8..15 on the slave)


class PairRegs(NamedTuple):
    """The pair's registers: the master's, the slave's, and the master's
    special fully nested mode (ICW4 SFNM), the state the pair's rules act on."""

    master: PicRegs
    slave: PicRegs
    nested: bv.Bit


def select_pair(cond: bv.Bit, a: PairRegs, b: PairRegs) -> PairRegs:
    """The pair ``a`` if ``cond`` holds, else ``b``."""
    return PairRegs(select(cond, a.master, b.master), select(cond, a.slave, b.slave),
                    bv.ite(cond, a.nested, b.nested))


def _low(lines: bv.Word) -> bv.Word:
    return bv.extract(lines, 7, 0)


def _high(lines: bv.Word) -> bv.Word:
    return bv.extract(lines, 15, 8)


def cascade(p: PairRegs) -> PairRegs:
    """The slave's INT output drives the master's IRQ2 (an edge each time
    the slave presents a request, as ``pic_update_irq`` pulses it)."""
    found, _irq = requested(p.slave)
    cascade_bit = bv.const(1 << CASCADE_IRQ, W, p.master.irr)
    irr = bv.ite(found, bv.bor(p.master.irr, cascade_bit, W), p.master.irr)
    return p._replace(master=p.master._replace(irr=irr))


def pair_apply(p: PairRegs, raised: bv.Word, cleared: bv.Word) -> PairRegs:
    """Raised and cleared lines (16 bits: IRQ0..15) applied to both
    controllers (:func:`apply_lines`), then the cascade."""
    return cascade(PairRegs(apply_lines(p.master, _low(raised), _low(cleared)),
                            apply_lines(p.slave, _high(raised), _high(cleared)), p.nested))


def pair_negative_edge(p: PairRegs, line: bv.Word) -> PairRegs:
    """Xen lowers one of its own ISA lines, the one-hot 16-bit ``line``
    (Xen 3.0.4's ``vpic_irq_negative_edge``): the line's request bit is
    cleared, edge- or level-triggered, and a slave that no longer presents
    a request lowers its output, the master's IRQ2
    (``vpic_update_int_output``)."""
    q = pair_apply(p, bv.const(0, LW, line), line)
    found, _irq = requested(q.slave)
    drop = bv.and_(bv.ne(_high(line), 0), bv.not_(found))
    keep = bv.const(~(1 << CASCADE_IRQ) & 0xFF, W, q.master.irr)
    irr = bv.ite(drop, bv.band(q.master.irr, keep, W), q.master.irr)
    return q._replace(master=q.master._replace(irr=irr))


def pair_request(p: PairRegs) -> tuple[PairRegs, bv.Bit]:
    """The master's INT output (``vpic_get_highest_priority_irq`` found a
    line that may interrupt), after the cascade: (pair, requesting)."""
    q = cascade(p)
    found, _irq = requested(q.master, q.nested)
    return q, found


class Acknowledged(NamedTuple):
    """What the pair's interrupt acknowledge cycle gives."""

    pair: PairRegs
    irq: bv.Word            # 0..15 (an 8-bit word)
    vector: bv.Word
    spurious: bv.Bit        # no request was found: IRQ7 or IRQ15, no ISR bit set


def pair_acknowledge(p: PairRegs) -> Acknowledged:
    """The interrupt acknowledge cycle of the pair. The master acknowledges
    the line it presents; an acknowledge of IRQ2 continues on the slave. A
    controller that presents no request (the line dropped, or was masked,
    after the request) answers with its IRQ7's vector, the *spurious*
    interrupt, and sets no ISR bit: IRQ7 on the master, IRQ15 on the slave."""
    m, s = p.master, p.slave
    found, irq = requested(m, p.nested)
    cascaded = bv.eq(irq, CASCADE_IRQ)
    s_found, s_irq = requested(s)
    spurious_7 = bv.const(SPURIOUS_IRQ, W, irq)
    on_slave = bv.and_(found, cascaded)
    line = bv.ite(bv.not_(found), spurious_7,
                  bv.ite(cascaded, bv.bor(bv.ite(s_found, s_irq, spurious_7), 8, W), irq))
    vec = bv.ite(bv.not_(found), vector(m, spurious_7),
                 bv.ite(cascaded, vector(s, bv.ite(s_found, s_irq, spurious_7)),
                        vector(m, irq)))
    pair = PairRegs(select(found, acknowledge(m, irq), m),
                    select(bv.and_(on_slave, s_found), acknowledge(s, s_irq), s), p.nested)
    spurious = bv.or_(bv.not_(found), bv.and_(on_slave, bv.not_(s_found)))
    return Acknowledged(pair, line, vec, spurious)


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
        elif offset == 0 or self.init_state == 0:    # OCW2, OCW3, OCW1
            if offset == 0 and value & 0x08:         # OCW3's command-interface part
                if value & 0x04:
                    self.poll = True
                if value & 0x02:
                    self.read_isr = bool(value & 1)
            self.regs = ocw(r, offset == 1, value)
        elif self.init_state == 1:                   # ICW2
            self.regs = r._replace(irq_base=value & 0xF8)
            self.init_state = (3 if self.init4 else 0) if self.single else 2
        elif self.init_state == 2:                   # ICW3 (cascade wiring: fixed)
            self.init_state = 3 if self.init4 else 0
        else:                                        # ICW4
            self.fully_nested = bool(value & 0x10)
            self.regs = r._replace(auto_eoi=bool(value & 0x02))
            self.init_state = 0

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

    # --- the pair's registers, for the rules ---------------------------------------------

    @property
    def pair(self) -> PairRegs:
        """The registers the pair's rules act on."""
        return PairRegs(self.master.regs, self.slave.regs, self.master.fully_nested)

    @pair.setter
    def pair(self, p: PairRegs) -> None:
        self.master.regs, self.slave.regs = p.master, p.slave

    # --- lines ----------------------------------------------------------------------

    def apply_lines(self, raised: int, cleared: int) -> None:
        """Raised and cleared lines (16 bits: IRQ0..15): :func:`pair_apply`."""
        self.pair = pair_apply(self.pair, raised, cleared)

    def negative_edge(self, line: int) -> None:
        """Xen lowers one of its own ISA lines: :func:`pair_negative_edge`."""
        self.pair = pair_negative_edge(self.pair, 1 << line)

    def _cascade(self) -> None:
        self.pair = cascade(self.pair)

    def elcr(self) -> int:
        """Both ELCRs as the 16-bit ``pic_elcr`` qemu-dm reads."""
        return self.master.regs.elcr | self.slave.regs.elcr << 8

    # --- the CPU side -------------------------------------------------------------------

    def has_request(self) -> bool:
        """The master's INT output: :func:`pair_request`."""
        self.pair, found = pair_request(self.pair)
        return bool(found)

    def acknowledge(self) -> tuple[int, int]:
        """The interrupt acknowledge cycle (:func:`pair_acknowledge`):
        returns (irq 0..15, vector)."""
        ack = pair_acknowledge(self.pair)
        self.pair = ack.pair
        return ack.irq, ack.vector

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
