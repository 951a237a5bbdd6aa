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
command words (:func:`ocw`); and on one 8259A with its command interface
(:class:`Chip`: the ICW sequence, OCW3's register select and poll) and the
pair of them (:class:`PicPair`): the initialisation (:func:`icw1`,
:func:`icw`), a port write (:func:`write`) and read (:func:`read`), the
ELCR (:func:`elcr_write`) and the pair's ports (:func:`io_write`,
:func:`io_read`). :class:`VirtualPic` is a thin wrapper that keeps the
pair's state and calls these rules with Python ints;
:mod:`proofs.interrupts` runs the same functions on Z3 terms. Register
names follow the Intel 8259A data sheet (order no. 231468):

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


def eoi(p: PicRegs, rotate: bv.Bit) -> PicRegs:
    """OCW2 non-specific EOI: clear the ISR bit of highest priority (and,
    for "rotate on non-specific EOI", make that line the lowest)."""
    found, irq = highest_priority(p.isr, p.priority_add)
    isr = bv.ite(found, bv.band(p.isr, bv.bnot(line_bit(irq), W), W), p.isr)
    priority_add = bv.ite(bv.and_(found, rotate), bv.band(bv.add(irq, 1, W), 7, W),
                          p.priority_add)
    return p._replace(isr=isr, priority_add=priority_add)


def specific_eoi(p: PicRegs, irq: bv.Word, rotate: bv.Bit) -> PicRegs:
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
    are the command interface's, :func:`write`.)"""
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


def pair_negative_edge(p: PairRegs, irq: bv.Word) -> PairRegs:
    """Xen lowers one of its own ISA lines, IRQ ``irq`` (0..15, an 8-bit
    word; Xen 3.0.4's ``vpic_irq_negative_edge``): the line's request bit is
    cleared, edge- or level-triggered, and a slave that no longer presents
    a request lowers its output, the master's IRQ2
    (``vpic_update_int_output``)."""
    line = bv.shl(bv.const(1, LW, irq), bv.zext(irq, W, LW), LW)
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


# --- one controller's programming interface ---------------------------------------------

#: where a controller's initialisation sequence is: READY takes OCW1 on the
#: data port; otherwise the next data-port byte is ICW2, ICW3 or ICW4
READY, ICW2, ICW3, ICW4 = 0, 1, 2, 3


class Interface(NamedTuple):
    """The state of one 8259A's command interface (the data sheet's
    "Programming the 8259A"): where the ICW sequence is, what ICW1 said
    follows, and what the next read gives."""

    init_state: bv.Word     # READY, ICW2, ICW3 or ICW4
    init4: bv.Bit           # ICW1 IC4: an ICW4 follows
    single: bv.Bit          # ICW1 SNGL: no other 8259A, so no ICW3
    read_isr: bv.Bit        # OCW3 RIS (with RR): a command-port read gives the ISR, else the IRR
    poll: bv.Bit            # OCW3 P: the next read is a poll
    nested: bv.Bit          # ICW4 SFNM (the master's is the pair's special fully nested mode)


class Chip(NamedTuple):
    """One 8259A as its ports see it: the registers the interrupt rules act
    on and its command interface."""

    regs: PicRegs
    iface: Interface


def reset_chip() -> Chip:
    """An 8259A at power-on, as Xen's ``vpic_init`` leaves it (every
    register zero, the ELCR all edge) until the guest's ICW1."""
    return Chip(reset_regs(), Interface(READY, False, False, False, False, False))


def select_chip(cond: bv.Bit, a: Chip, b: Chip) -> Chip:
    """The controller ``a`` if ``cond`` holds, else ``b``."""
    return Chip(select(cond, a.regs, b.regs),
                Interface(*[bv.ite(cond, x, y) for x, y in zip(a.iface, b.iface)]))


def icw1(c: Chip, value: bv.Word) -> Chip:
    """ICW1, a command-port byte with bit 4 set, starts the initialisation
    (8259A data sheet, "Initialization Command Words"): the edge sense
    circuit is reset (no request is latched: IRR cleared), the IMR is
    cleared, IR7 gets the lowest priority (no rotation), special mask mode
    is cleared and a status read gives the IRR; nothing is in service.
    Bit 0 (IC4) says whether an ICW4 follows, bit 1 (SNGL) whether this is
    the only 8259A (then no ICW3 follows); the next data-port byte is ICW2.
    As QEMU's ``pic_reset`` (``hw/i8259.c``, which Xen 3.0's vPIC follows),
    every other register goes back to its reset value too (vector base 0,
    no automatic EOI or special fully nested mode: "if IC4 = 0, all
    functions selected in ICW4 are set to zero"), but the ELCR, which is
    not the 8259A's."""
    return Chip(reset_regs()._replace(elcr=c.regs.elcr),
                Interface(bv.const(ICW2, W, value), bv.bit(value, 0), bv.bit(value, 1),
                          False, False, False))


def icw(c: Chip, value: bv.Word) -> Chip:
    """A data-port byte during the initialisation sequence. ICW2: the vector
    base, bits 7-3 (the line's number fills bits 2-0, so the low three bits
    written are ignored); then ICW3 unless ICW1 said SNGL (the cascade
    wiring, fixed in a PC: nothing is kept); then ICW4 if ICW1 said IC4:
    bit 1 AEOI (automatic EOI), bit 4 SFNM (special fully nested mode).
    After the last ICW the controller is ready: the next data-port byte is
    OCW1."""
    r, f = c.regs, c.iface
    ready, icw4 = bv.const(READY, W, value), bv.const(ICW4, W, value)
    after_icw3 = bv.ite(f.init4, icw4, ready)
    after_icw2 = bv.ite(f.single, after_icw3, bv.const(ICW3, W, value))
    second = Chip(r._replace(irq_base=bv.band(value, 0xF8, W)),
                  f._replace(init_state=after_icw2))
    third = Chip(r, f._replace(init_state=after_icw3))
    fourth = Chip(r._replace(auto_eoi=bv.bit(value, 1)),
                  f._replace(init_state=ready, nested=bv.bit(value, 4)))
    return select_chip(bv.eq(f.init_state, ICW2), second,
                       select_chip(bv.eq(f.init_state, ICW3), third, fourth))


def write(c: Chip, data_port: bv.Bit, value: bv.Word) -> Chip:
    """A byte written to the command port (``data_port`` false) or the data
    port. On the command port, bit 4 set is ICW1 (:func:`icw1`); otherwise
    it is an OCW2 or OCW3 (:func:`ocw`), and an OCW3 also sets the command
    interface: P (bit 2) makes the next read a poll, RR (bit 1) selects with
    RIS (bit 0) the register a command-port read gives (1: ISR, 0: IRR). On
    the data port, a byte during the initialisation sequence is the next
    ICW (:func:`icw`), else OCW1, the IMR."""
    f = c.iface
    command = bv.not_(data_port)
    ocw3 = bv.and_(command, bv.bit(value, 3))
    iface = f._replace(poll=bv.or_(f.poll, bv.and_(ocw3, bv.bit(value, 2))),
                       read_isr=bv.ite(bv.and_(ocw3, bv.bit(value, 1)), bv.bit(value, 0),
                                       f.read_isr))
    operation = Chip(ocw(c.regs, data_port, value), iface)
    return select_chip(bv.and_(command, bv.bit(value, 4)), icw1(c, value),
                       select_chip(bv.or_(command, bv.eq(f.init_state, READY)), operation,
                                   icw(c, value)))


def read(c: Chip, data_port: bv.Bit) -> tuple[Chip, bv.Word]:
    """A byte read from the command port (``data_port`` false) or the data
    port: (the controller after the read, the byte). After an OCW3 poll
    command the next read, on either port, is a poll (data sheet, "The
    Poll Command"): the controller treats it as an interrupt acknowledge
    of the line it would present (:func:`requested`, :func:`acknowledge`:
    its ISR bit set unless in automatic EOI mode, an edge request cleared)
    and answers 0x80 with the line in bits 2-0, or 0 when no line may
    interrupt; the poll is then over. Otherwise the command port gives the
    register OCW3 selected (IRR or ISR) and the data port the IMR, and
    nothing changes."""
    r, f = c.regs, c.iface
    found, irq = requested(r)
    polled = Chip(select(found, acknowledge(r, irq), r), f._replace(poll=False))
    answer = bv.ite(found, bv.bor(irq, 0x80, W), bv.const(0, W, irq))
    register = bv.ite(data_port, r.imr, bv.ite(f.read_isr, r.isr, r.irr))
    return select_chip(f.poll, polled, c), bv.ite(f.poll, answer, register)


def elcr_write(r: PicRegs, value: bv.Word, writable: int) -> PicRegs:
    """A write to the controller's edge/level control register (0x4D0 for
    the master, 0x4D1 for the slave): only the ``writable`` bits take the
    value (:data:`ELCR_WRITABLE`: IRQ0, 1 and 2 on the master and IRQ8 and
    13 on the slave are always edge-triggered, as on the PIIX3 and in
    QEMU's ``elcr_ioport_write``); a read gives the register back."""
    return r._replace(elcr=bv.band(value, writable, W))


# --- the pair's ports --------------------------------------------------------------------

class PicPair(NamedTuple):
    """Both controllers with their command interfaces: the state the
    guest's port accesses act on."""

    master: Chip
    slave: Chip


def reset_pair() -> PicPair:
    """Both controllers at power-on (:func:`reset_chip`)."""
    return PicPair(reset_chip(), reset_chip())


def pair_regs(d: PicPair) -> PairRegs:
    """The registers the pair's interrupt rules act on (the special fully
    nested mode is the master's)."""
    return PairRegs(d.master.regs, d.slave.regs, d.master.iface.nested)


def with_regs(d: PicPair, p: PairRegs) -> PicPair:
    """``d`` with the registers the pair's rules left (they never change an
    ICW4 mode)."""
    return PicPair(d.master._replace(regs=p.master), d.slave._replace(regs=p.slave))


def _on_slave(port: bv.Word) -> bv.Bit:
    return bv.member(port, SLAVE_PORTS + ELCR_PORTS[1:])


def io_write(d: PicPair, port: bv.Word, value: bv.Word) -> PicPair:
    """The guest writes ``value`` to ``port`` (a 16-bit word, one of
    :data:`VirtualPic.PORTS`): the master's (0x20, 0x21) or the slave's
    (0xA0, 0xA1) command and data ports (:func:`write`), then the cascade;
    or the master's or slave's ELCR (0x4D0, 0x4D1: :func:`elcr_write`, with
    that controller's writable bits)."""
    slave = _on_slave(port)
    chip = select_chip(slave, d.slave, d.master)
    elcr = bv.member(port, ELCR_PORTS)
    writable = bv.ite(slave, bv.const(ELCR_WRITABLE[1], W, value),
                      bv.const(ELCR_WRITABLE[0], W, value))
    written = select_chip(elcr, chip._replace(regs=elcr_write(chip.regs, value, writable)),
                          write(chip, bv.bit(port, 0), value))
    after = PicPair(select_chip(slave, d.master, written), select_chip(slave, written, d.slave))
    return select_pics(elcr, after, with_regs(after, cascade(pair_regs(after))))


def io_read(d: PicPair, port: bv.Word) -> tuple[PicPair, bv.Word]:
    """The guest reads ``port`` (one of :data:`VirtualPic.PORTS`): a
    controller's command or data port (:func:`read`, then the cascade), or
    its ELCR, which gives back what was written with the writable bits and
    changes nothing. Returns (the pair after the read, the byte)."""
    slave = _on_slave(port)
    chip = select_chip(slave, d.slave, d.master)
    after_read, value = read(chip, bv.bit(port, 0))
    after = PicPair(select_chip(slave, d.master, after_read),
                    select_chip(slave, after_read, d.slave))
    elcr = bv.member(port, ELCR_PORTS)
    return (select_pics(elcr, d, with_regs(after, cascade(pair_regs(after)))),
            bv.ite(elcr, chip.regs.elcr, value))


def select_pics(cond: bv.Bit, a: PicPair, b: PicPair) -> PicPair:
    """The pair ``a`` if ``cond`` holds, else ``b``."""
    return PicPair(select_chip(cond, a.master, b.master), select_chip(cond, a.slave, b.slave))


def pair_elcr(d: PicPair) -> bv.Word:
    """Both ELCRs as the 16-bit ``pic_elcr`` (bit n = IRQ n) that the VMM
    copies into the shared lines for qemu-dm."""
    return bv.concat(d.slave.regs.elcr, d.master.regs.elcr, W, W)


class VirtualPic:
    """The master/slave pair as the VMM keeps it: its state
    (:class:`PicPair`) and the rules above called with Python ints, for
    the lines, the interrupt acknowledge the VMM performs when it injects
    (``vpic_ack_pending_irq``) and the guest's port accesses."""

    PORTS = MASTER_PORTS + SLAVE_PORTS + ELCR_PORTS

    def __init__(self, emit: Callable[[trace.Event], None]) -> None:
        self.emit = emit
        self.state = reset_pair()

    @property
    def pair(self) -> PairRegs:
        """The registers the pair's rules act on (:func:`pair_regs`)."""
        return pair_regs(self.state)

    @pair.setter
    def pair(self, p: PairRegs) -> None:
        self.state = with_regs(self.state, p)

    def apply_lines(self, raised: int, cleared: int) -> None:
        """Raised and cleared lines (16 bits: IRQ0..15): :func:`pair_apply`."""
        self.pair = pair_apply(self.pair, raised, cleared)

    def negative_edge(self, line: int) -> None:
        """Xen lowers one of its own ISA lines: :func:`pair_negative_edge`."""
        self.pair = pair_negative_edge(self.pair, line)

    def elcr(self) -> int:
        """Both ELCRs as the 16-bit ``pic_elcr`` qemu-dm reads (:func:`pair_elcr`)."""
        return pair_elcr(self.state)

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

    def io_read(self, port: int) -> int:
        """A guest's read of one of :data:`PORTS`: :func:`io_read`."""
        self.state, value = io_read(self.state, port)
        return value

    def io_write(self, port: int, value: int) -> None:
        """A guest's write to one of :data:`PORTS`: :func:`io_write`."""
        self.state = io_write(self.state, port, value)
