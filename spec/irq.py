"""ISA interrupt lines from qemu-dm to the VMM, and when an interrupt may be injected.

Room: the shared ``sp_global`` area through which qemu-dm drives the
guest's 16 ISA interrupt lines, the rules of both sides, and the CPU's
interruptibility rule that decides whether the VMM may inject at VM entry,
and the interrupt assist that puts them together (:func:`assist`).
Imports :mod:`spec.bv`, :mod:`spec.pic`.

The path of an interrupt (Xen 3.0.x: ``struct global_iodata`` of
``public/hvm/ioreq.h``, qemu-dm's ``i8259_stub.c``, Xen's
``hvm_pic_assist``; the seed: qemu-dm "asynchronously fire[s] interrupts
to the guest via the VMM (the VMM checks the event-channel and issues a
virtual interrupt)"):

1. A device in qemu-dm sets a line's level: :func:`dm_set_irq` updates the
   shared bits; when the VMM must learn of it, qemu-dm then sends on the
   domain's interrupt event channel (one send per pass of its main loop,
   however many lines changed).
2. The send makes the port pending in the domain's shared info (the 2-level
   rule of :mod:`spec.evtchn`).
3. At the next VM entry of the vcpu, the VMM tests and clears that pending
   bit; only if it was set does it take the raised and cleared lines
   (:func:`vmm_take_lines`, atomic exchanges with zero) and apply them to
   the virtual PIC pair (:func:`spec.pic.pair_apply`).
4. If the PIC then presents a request and :func:`may_inject` holds, the VMM
   acknowledges it and injects its vector; otherwise, with a request
   pending, it asks for an interrupt-window exit.

What the VMM does in steps 3 and 4 once it has tested and cleared the
pending bit is one function over :mod:`spec.bv`, :func:`assist`, which
:class:`spec.vmm.Vmm` calls at every VM entry with Python ints and
:mod:`proofs.interrupts` with Z3 terms.

In Xen 3.0.x the notification travelled on the vcpu's ioreq port and Xen
tested the same pending bit; the model gives interrupts a port of their own
so that the two uses read apart in the trace.

The shared bits (16 bits each, bit *n* = IRQ *n*):

``elcr``
    the PIC's edge/level control, copied here by the VMM for qemu-dm;
``raised`` (``pic_irr``)
    lines qemu-dm raised since the VMM last looked;
``last`` (``pic_last_irr``)
    edge lines qemu-dm currently holds high (its edge detector);
``cleared`` (``pic_clear_irr``)
    level lines qemu-dm lowered since the VMM last looked.
"""

from __future__ import annotations

from typing import NamedTuple

from spec import bv, pic

W = 16


class GlobalIodata(NamedTuple):
    """``struct global_iodata``: the interrupt lines qemu-dm drives."""

    elcr: bv.Word
    raised: bv.Word
    last: bv.Word
    cleared: bv.Word


def dm_set_irq(g: GlobalIodata, line: bv.Word, level: bv.Bit) -> tuple[GlobalIodata, bv.Bit]:
    """qemu-dm's ``pic_set_irq_new``: drive the line whose one-hot bit is
    ``line`` to ``level``. Returns the new bits and whether the VMM must be
    notified. A level line reports every change; an edge line only a rising
    edge (a raise while it is already high, and any lowering, are silent)."""
    is_level = bv.ne(bv.band(g.elcr, line, W), 0)
    held = bv.ne(bv.band(g.last, line, W), 0)
    off = bv.bnot(line, W)
    rising = bv.and_(bv.not_(is_level), level, bv.not_(held))
    raised = bv.ite(bv.or_(rising, bv.and_(is_level, level)), bv.bor(g.raised, line, W),
                    bv.ite(is_level, bv.band(g.raised, off, W), g.raised))
    cleared = bv.ite(is_level, bv.ite(level, bv.band(g.cleared, off, W),
                                      bv.bor(g.cleared, line, W)), g.cleared)
    last = bv.ite(is_level, g.last, bv.ite(level, bv.bor(g.last, line, W),
                                          bv.band(g.last, off, W)))
    notify = bv.or_(is_level, rising)
    return GlobalIodata(g.elcr, raised, last, cleared), notify


def vmm_take_lines(g: GlobalIodata) -> tuple[GlobalIodata, bv.Word, bv.Word]:
    """The VMM exchanges ``cleared`` and ``raised`` with zero (in that order)
    and returns the new bits with what it took: (bits, raised, cleared)."""
    return g._replace(raised=bv.const(0, W, g.raised), cleared=bv.const(0, W, g.cleared)), \
        g.raised, g.cleared


def may_inject(rflags_if: bv.Bit, shadow: bv.Bit) -> bv.Bit:
    """An external interrupt is recognised at an instruction boundary only
    when RFLAGS.IF = 1 and there is no interrupt shadow: the instruction
    just retired was not an STI that set IF, nor a MOV SS or POP SS (Intel
    SDM vol. 3A, 6.8.3 "Masking Exceptions and Interrupts When Switching
    Stacks", vol. 2B "STI"; vol. 3C, 25.4.2 "Guest Non-Register State":
    blocking by STI, blocking by MOV SS). VM entry honours the same rule
    for an injected interrupt (vol. 3C, 27.3.2.4 / 27.6)."""
    return bv.and_(rflags_if, bv.not_(shadow))


class Assist(NamedTuple):
    """What the interrupt assist decides at a VM entry (:func:`assist`)."""

    pic: pic.PairRegs
    lines: GlobalIodata
    inject: bv.Bit          # acknowledge and inject
    irq: bv.Word            # the line acknowledged (0..15), if inject
    vector: bv.Word         # its vector, if inject
    spurious: bv.Bit        # the acknowledge found no request (IRQ7 or IRQ15)
    window: bv.Bit          # a request is (still) pending: ask for an interrupt window


def assist(p: pic.PairRegs, g: GlobalIodata, notified: bv.Bit, rflags_if: bv.Bit,
           shadow: bv.Bit) -> Assist:
    """Steps 1 to 3 of the interrupt assist at VM entry (``hvm_pic_assist``
    then ``vmx_intr_assist``), after the VMM tested and cleared the
    interrupt port's pending bit (``notified``: it was set):

    1. only if ``notified``, take the lines (:func:`vmm_take_lines`) and
       apply them to the PIC pair (:func:`spec.pic.pair_apply`);
    2. if the pair presents a request (:func:`spec.pic.pair_request`) and
       :func:`may_inject` holds, acknowledge it
       (:func:`spec.pic.pair_acknowledge`) and inject its vector;
    3. ask for an interrupt window if a request is pending: the one that
       could not be injected, or one still presented after the acknowledge.

    :class:`spec.vmm.Vmm` calls this with Python ints, :mod:`proofs.interrupts`
    with Z3 terms."""
    taken, raised, cleared = vmm_take_lines(g)
    lines = GlobalIodata(*[bv.ite(notified, a, b) for a, b in zip(taken, g)])
    pair = pic.select_pair(notified, pic.pair_apply(p, raised, cleared), p)
    pair, found = pic.pair_request(pair)
    inject = bv.and_(found, may_inject(rflags_if, shadow))
    ack = pic.pair_acknowledge(pair)
    after, again = pic.pair_request(ack.pair)
    return Assist(pic.select_pair(inject, after, pair), lines, inject, ack.irq, ack.vector,
                  ack.spurious, bv.ite(inject, again, found))


#: the lines as a domain starts: nothing raised, held high or lowered, and
#: every line edge-triggered until the VMM copies the PIC's ELCR
QUIET = GlobalIodata(0, 0, 0, 0)


def line_bit(irq: bv.Word) -> bv.Word:
    """The one-hot bit of ISA line ``irq`` (0..15) in the shared words."""
    return bv.shl(bv.const(1, W, irq), irq, W)


class SharedLines:
    """The ``sp_global`` area both qemu-dm and the VMM map."""

    def __init__(self) -> None:
        self.bits = QUIET

    def set_irq(self, irq: int, level: int) -> bool:
        """qemu-dm's side; True when the VMM must be notified."""
        self.bits, notify = dm_set_irq(self.bits, line_bit(irq), bool(level))
        return bool(notify)

    def take(self) -> tuple[int, int]:
        """The VMM's side: (raised, cleared)."""
        self.bits, raised, cleared = vmm_take_lines(self.bits)
        return raised, cleared

    def set_elcr(self, elcr: int) -> None:
        self.bits = self.bits._replace(elcr=elcr)
