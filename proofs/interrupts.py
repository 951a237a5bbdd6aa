"""Proofs about the interrupt path: qemu-dm's lines, the event channel, the
virtual PIC pair and injection at VM entry.

Room: one transition system built from the functions the reference engine
runs (:func:`spec.irq.dm_set_irq`, :func:`spec.evtchn.set_pending_2l` and
:func:`~spec.evtchn.take_2l`, the interrupt assist :func:`spec.irq.assist`
that :meth:`spec.vmm.Vmm.intr_assist` calls, and the pair's rules of
:mod:`spec.pic` that :class:`~spec.pic.VirtualPic` calls:
:func:`~spec.pic.pair_apply`, :func:`~spec.pic.pair_negative_edge`,
:func:`~spec.pic.ocw`) called with Z3 terms, the properties checked on it,
and the mutants that must break them. Imports :mod:`spec`,
:mod:`proofs.kinduction`.

The system. State: the shared lines (``sp_global``, 16 lines), the
interrupt port's pending bit (one 2-level selector word), qemu-dm's
``send_event`` (a send is due at the end of its pass), both 8259As'
registers and the master's special fully nested mode, the vcpu's RFLAGS.IF
and interrupt shadow, and *ghost* variables that record history for the
properties (they do not influence any step). Each step one party acts,
chosen by the inputs:

``dm``
    qemu-dm, in a pass of its main loop, drives one of its lines (any but
    IRQ0, IRQ2 and IRQ8) to a level (``dm_set_irq``, which says whether
    the VMM must be told); if the step ends the pass and a send is due,
    qemu-dm sends on the interrupt port (``set_pending_2l``). A pass may
    span several steps, and VM entries may come between them: qemu-dm runs
    beside the vcpu (in the reference engine, between VM exits);
``entry``
    a VM entry: the VMM tests and clears the port (``take_2l``), then the
    interrupt assist (``assist``: take and apply the lines if the port was
    pending, acknowledge and inject if the pair presents a request and the
    guest may take it). The handler's gate decides IF (interrupt gate: 0,
    trap gate: unchanged); the shadow ends;
``xen``
    Xen's own lines: the PIT's periodic time raises IRQ0, the RTC asserts
    IRQ8 or lowers it (Xen's negative edge), as
    :meth:`~spec.vmm.Vmm.timer_assist` and the RTC's callback do;
``out``
    the guest writes a byte to port 0x20, 0x21, 0xA0 or 0xA1 of the
    initialised pair: an OCW1 (IMR), OCW2 (EOI, specific EOI, rotations,
    set priority) or OCW3 (special mask mode), decoded by ``ocw``, then
    the cascade, as :meth:`~spec.pic.VirtualPic.io_write` does;
``sti``, ``cli``, ``mov_ss``, ``insn``
    the guest's instructions that matter: STI (a shadow if IF was 0), CLI,
    MOV SS (a shadow), any other instruction (the shadow ends; an IRET or
    POPF may set IF to anything).

The programming an ICW sets (vector bases, AEOI, special fully nested
mode) is fixed for a run, and arbitrary. So is the ELCR, which the run
starts with: the power-on pair's (:func:`spec.pic.reset_pair`, with the
shared lines' copy as :data:`spec.irq.QUIET` has it), or what the guest
wrote to both ELCR ports (:func:`spec.pic.io_write`: an arbitrary mix of
edge and level lines, IRQ0-2, 8 and 13 always edge-triggered) with the
VMM's copy in ``sp_global`` (:func:`spec.pic.pair_elcr`), before any line
moved. That the ELCR is the same in the pair and in ``sp_global`` is part
of the strengthening, so a wrong initial copy fails the base case. The ICW
sequence, the OCW3 poll and register select are not steps of the system;
function-level checks prove them.

Ghosts (bit *n* = IRQ *n*): ``owed``, the edges qemu-dm raised since the
VMM last took the lines with a notification; ``delivered``, those the VMM
took that way and has not injected; ``held``, the level lines qemu-dm
holds high; ``lowered``, the level lines it lowered since the last such
take; ``released``, the lowered level lines the VMM has taken and qemu-dm
has not raised again; ``in_pass``, qemu-dm is inside a pass.

Properties:

* **only through event channels** (``interrupts.only_evtchn``): when a
  pass of qemu-dm ends, every change it made to ``sp_global`` that the VMM
  has not taken is announced by the pending port; and every injection of an
  edge line of qemu-dm (not a spurious IRQ7/15) is of a raise the VMM took
  at an entry that consumed a pending notification, and that no earlier
  injection consumed (so a line is never injected more often than it was
  raised). A VMM that polls the lines at every entry, and a qemu-dm that
  raises a line without sending, are counterexamples;
* **never lost** (``interrupts.never_lost``): an injection happens only
  when the guest may take it (IF = 1, no shadow); and at a VM entry where
  IF = 1, there is no shadow and qemu-dm is between passes, an unmasked
  line qemu-dm raised (an edge no injection consumed) or holds high (a
  level) that may preempt what is in service (the rule of
  ``interrupts.priority``) gives an injection, on the slave through the
  cascade;
* **priority** (``interrupts.priority``): an injected line is unmasked (a
  slave line also on the master's IRQ2) and of higher priority, under its
  chip's rotation, than every line in service that blocks it (in special
  mask mode the unmasked ones; in the master's special fully nested mode
  not IRQ2, as Xen's and QEMU's ``pic_get_irq`` have it); a slave line's
  IRQ2 likewise on the master; a spurious injection is IRQ7 or IRQ15, and
  the chip that found no request sets no in-service bit. The comparison is
  written here, from the data sheet, not taken from :func:`spec.pic.requested`;
* **level release** (``interrupts.level_release``): a level line qemu-dm
  lowered is not injected once the VMM has taken the lowering, until
  qemu-dm raises it again;
* **masking** is :mod:`proofs.evtchn`'s ``evtchn.2l``: a masked port never
  raises an upcall, unmasking a pending port does.

Strengthening, shared by the checks but ``interrupts.priority`` (whose
property is local to one step, so the well-formedness of the state is
enough):

0. every change qemu-dm made in ``sp_global`` is announced: while a raised
   or cleared bit is there, the port is pending or a send is due at the
   end of qemu-dm's pass; the cleared bits are level lines, and no line is
   both raised and cleared;
1. ``owed`` is exactly ``sp_global``'s raised edge lines;
2. ``delivered`` is exactly the edge lines of qemu-dm whose request is
   latched in either IRR;
3. a level line qemu-dm holds high is raised in ``sp_global`` or latched;
   ``lowered`` is exactly the cleared bits; a released line is a level
   line neither held, raised nor latched.

Function-level checks state the 8259A's rules against the data sheet:
``pic.eoi``, a non-specific EOI clears exactly the in-service bit of
highest priority under the current rotation (with rotation, that line
becomes the lowest); ``pic.ocw``, the decoding of every operation command
word the system's guest may write; ``pic.icw``, the initialisation
sequence; ``pic.read``, the register reads OCW3 selects and the poll;
``pic.ports``, the pair's port decode and the ELCRs' writable bits;
``pic.lines``, Xen's negative edge; ``pic.reset``, the power-on pair (and
a BIOS's programming of it on Python ints). They run the functions
:class:`~spec.pic.VirtualPic` calls for every port access.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from unittest import mock

import z3

from proofs.kinduction import Outcome, TransitionSystem, check, source_mutant, valid
from spec import bv, evtchn, irq, pic

B8 = lambda n: z3.BitVec(n, 8)          # noqa: E731
B16 = lambda n: z3.BitVec(n, 16)        # noqa: E731
PORT_WIDTH = 4
PORT = z3.BitVecVal(1, PORT_WIDTH)      # the interrupt port's bit in its word
#: the lines qemu-dm drives: all but IRQ0 (Xen's PIT), IRQ2 (the cascade)
#: and IRQ8 (Xen's RTC)
QEMU_LINES = 0xFFFF & ~(1 << 0 | 1 << pic.CASCADE_IRQ | 1 << 8)

ACTIONS = ("dm", "entry", "xen", "out", "sti", "cli", "mov_ss", "insn")
_REGS = ("irr", "isr", "imr", "elcr", "pa", "base", "aeoi", "rot", "smm")
#: what no step changes: the programming that only an ICW (not in the
#: system) or the ELCR port changes
_FIXED = ("g_elcr", "m_elcr", "s_elcr", "m_base", "s_base", "m_aeoi", "s_aeoi", "nested")


def _chip_vars(c: str) -> dict:
    kinds = {"aeoi": z3.Bool, "rot": z3.Bool, "smm": z3.Bool}
    return {f"{c}_{r}": kinds.get(r, B8) for r in _REGS}


def _vars():
    return {
        # sp_global
        "g_elcr": B16, "g_raised": B16, "g_last": B16, "g_cleared": B16,
        # the interrupt port's selector word
        "p_pending": lambda n: z3.BitVec(n, PORT_WIDTH), "p_sel": z3.Bool, "p_upcall": z3.Bool,
        # qemu-dm's send_event (a send is due at the end of its pass)
        "send_event": z3.Bool,
        # the PIC pair
        **_chip_vars("m"), **_chip_vars("s"), "nested": z3.Bool,
        # the vcpu
        "if_": z3.Bool, "shadow": z3.Bool,
        # ghosts (16 bits, bit n = IRQ n)
        "in_pass": z3.Bool, "owed": B16, "delivered": B16, "held": B16, "lowered": B16,
        "released": B16,
        # what the step did (for the properties)
        "injected": z3.Bool, "inj_line": B8, "spurious": z3.Bool,
    }


def _inputs():
    return {"act": lambda n: z3.BitVec(n, 4), "line": B8, "level": z3.Bool, "flag": z3.Bool,
            "slave": z3.Bool, "byte": B8}


def _chip(s, c: str) -> pic.PicRegs:
    return pic.PicRegs(*[s[f"{c}_{r}"] for r in _REGS])


def _pair(s) -> pic.PairRegs:
    return pic.PairRegs(_chip(s, "m"), _chip(s, "s"), s["nested"])


def _with_pair(p: pic.PairRegs) -> dict:
    out = {}
    for c, regs in (("m", p.master), ("s", p.slave)):
        out.update({f"{c}_{r}": v for r, v in zip(_REGS, regs)})
    return out


def _lines(s) -> irq.GlobalIodata:
    return irq.GlobalIodata(s["g_elcr"], s["g_raised"], s["g_last"], s["g_cleared"])


def _word(s) -> evtchn.SelectorWord:
    return evtchn.SelectorWord(s["p_pending"], z3.BitVecVal(0, PORT_WIDTH), s["p_sel"],
                               s["p_upcall"])


def _with_word(w: evtchn.SelectorWord) -> dict:
    return {"p_pending": w.pending, "p_sel": w.sel, "p_upcall": w.upcall}


def _bit16(v) -> z3.BitVecRef:
    return z3.BitVecVal(1, 16) << z3.ZeroExt(8, v)


def _has(word, v) -> z3.BoolRef:
    return (word & _bit16(v)) != 0


def _irr16(s) -> z3.BitVecRef:
    return z3.Concat(s["s_irr"], s["m_irr"])


def _pending(s) -> z3.BoolRef:
    return (s["p_pending"] & PORT) != 0


def _same(s, t, changed: dict) -> z3.BoolRef:
    """``t`` equals ``s`` except for ``changed`` (name -> new value)."""
    return z3.And(*[t[name] == changed.get(name, s[name]) for name in s])


def _step(s, i, t) -> z3.BoolRef:
    act, line, level, flag, byte = i["act"], i["line"], i["level"], i["flag"], i["byte"]
    L = _bit16(line)                                 # the device's line (the ghosts')
    edge = (s["g_elcr"] & L) == 0
    cases = []
    quiet = {"injected": False, "inj_line": s["inj_line"], "spurious": False}

    # qemu-dm, in a pass of its loop, drives `line` to `level`; with `flag`
    # the pass ends, and qemu-dm sends on the interrupt port if it must
    g, notify = irq.dm_set_irq(_lines(s), irq.line_bit(z3.ZeroExt(8, line)), level)
    due = z3.Or(s["send_event"], notify)
    sent = evtchn.set_pending_2l(_word(s), PORT, PORT_WIDTH)
    port = {k: z3.If(z3.And(flag, due), v, s[k]) for k, v in _with_word(sent).items()}
    rising = z3.And(edge, level, (s["g_last"] & L) == 0)       # the device's edge
    cases.append(z3.And(act == 0, z3.ULT(line, 16), (L & QEMU_LINES) != 0, _same(s, t, {
        "g_raised": g.raised, "g_last": g.last, "g_cleared": g.cleared, **port,
        "send_event": z3.And(due, z3.Not(flag)), "in_pass": z3.Not(flag),
        "owed": z3.If(rising, s["owed"] | L, s["owed"]),
        "held": z3.If(edge, s["held"], z3.If(level, s["held"] | L, s["held"] & ~L)),
        "lowered": z3.If(edge, s["lowered"], z3.If(level, s["lowered"] & ~L, s["lowered"] | L)),
        "released": z3.If(z3.And(z3.Not(edge), level), s["released"] & ~L, s["released"]),
        **quiet})))

    # VM entry: the VMM tests and clears the port, then the interrupt assist
    notified = _pending(s)
    taken = evtchn.take_2l(_word(s), PORT, PORT_WIDTH)
    a = irq.assist(_pair(s), _lines(s), notified, s["if_"], s["shadow"])
    inj = _bit16(a.irq)
    consumed = z3.And(a.inject, z3.Not(a.spurious))
    delivered = s["delivered"] | z3.If(notified, s["owed"], z3.BitVecVal(0, 16))
    cases.append(z3.And(act == 1, _same(s, t, {
        **{k: z3.If(notified, v, s[k]) for k, v in _with_word(taken).items()},
        "g_raised": a.lines.raised, "g_cleared": a.lines.cleared, **_with_pair(a.pic),
        "if_": z3.If(a.inject, z3.And(s["if_"], flag), s["if_"]),     # flag: a trap gate
        "shadow": z3.If(a.inject, False, s["shadow"]),
        "owed": z3.If(notified, z3.BitVecVal(0, 16), s["owed"]),
        "delivered": z3.If(consumed, delivered & ~inj, delivered),
        "lowered": z3.If(notified, z3.BitVecVal(0, 16), s["lowered"]),
        "released": s["released"] | z3.If(notified, s["lowered"], z3.BitVecVal(0, 16)),
        "injected": a.inject, "inj_line": a.irq, "spurious": a.spurious})))

    # Xen's own lines: the PIT's periodic time raises IRQ0, the RTC asserts
    # or deasserts IRQ8 (Vmm.timer_assist, Vmm._rtc_irq)
    rtc = pic.pair_apply(_pair(s), z3.BitVecVal(1 << 8, 16), z3.BitVecVal(0, 16))
    rtc_low = pic.pair_negative_edge(_pair(s), z3.BitVecVal(8, 8))
    pit = pic.pair_apply(_pair(s), z3.BitVecVal(1, 16), z3.BitVecVal(0, 16))
    xen = pic.select_pair(i["slave"], pic.select_pair(level, rtc, rtc_low), pit)
    cases.append(z3.And(act == 2, _same(s, t, {**_with_pair(xen), **quiet})))

    # the guest writes `byte` to port 0x20/0x21 or 0xA0/0xA1 (`flag`: the
    # data port) once the pair is initialised: OCW1, OCW2 or OCW3, then the
    # cascade (VirtualPic.io_write)
    p = _pair(s)
    written = pic.cascade(pic.PairRegs(
        pic.select(i["slave"], p.master, pic.ocw(p.master, flag, byte)),
        pic.select(i["slave"], pic.ocw(p.slave, flag, byte), p.slave), p.nested))
    cases.append(z3.And(act == 3, z3.Or(flag, (byte & 0x10) == 0),
                        _same(s, t, {**_with_pair(written), **quiet})))
    # the guest's instructions
    cases.append(z3.And(act == 4, _same(s, t, {"if_": True, "shadow": z3.Not(s["if_"]),
                                               **quiet})))
    cases.append(z3.And(act == 5, _same(s, t, {"if_": False, "shadow": False, **quiet})))
    cases.append(z3.And(act == 6, _same(s, t, {"shadow": True, **quiet})))
    cases.append(z3.And(act == 7, _same(s, t, {"if_": flag, "shadow": False, **quiet})))
    return z3.And(*[t[n] == s[n] for n in _FIXED], z3.Or(cases))


def _elcr_ok(s) -> z3.BoolRef:
    """sp_global's ELCR is the pair's (the VMM copies it), with IRQ0-2, 8
    and 13 edge-triggered (the PIIX3's)."""
    return z3.And(s["g_elcr"] == z3.Concat(s["s_elcr"], s["m_elcr"]),
                  (s["m_elcr"] & 0b0000_0111) == 0, (s["s_elcr"] & 0b0010_0001) == 0)


def _shaped(s) -> z3.BoolRef:
    """Rotations are line numbers; qemu-dm's bits and the ghosts are of its
    lines; a send is due only inside a pass."""
    q = z3.BitVecVal(~QEMU_LINES & 0xFFFF, 16)
    return z3.And(z3.ULT(s["m_pa"], 8), z3.ULT(s["s_pa"], 8), z3.ULT(s["inj_line"], 16),
                  *[(s[n] & q) == 0 for n in ("g_raised", "g_last", "g_cleared", "owed",
                                              "delivered", "held", "lowered", "released")],
                  z3.Implies(s["send_event"], s["in_pass"]))


def _wellformed(s) -> z3.BoolRef:
    """What every state has: :func:`_elcr_ok` and :func:`_shaped`."""
    return z3.And(_elcr_ok(s), _shaped(s))


def _init(s) -> z3.BoolRef:
    """Any ICW programming of the pair, nothing requested, raised, in service,
    pending or owed (the shared lines as :data:`spec.irq.QUIET` has them); any IF;
    no shadow; qemu-dm between passes. The ELCRs are the power-on pair's
    (:func:`spec.pic.reset_pair`) with the shared lines' copy as
    :data:`~spec.irq.QUIET` has it, or what the guest then wrote to both
    ELCR ports (:func:`spec.pic.io_write`) with the VMM's copy of it
    (:func:`spec.pic.pair_elcr`), before any line moved."""
    reset = pic.PicPair(*[_lifted(chip) for chip in pic.reset_pair()])
    programmed = pic.io_write(pic.io_write(reset, 0x4D0, B8("boot_elcr_master")), 0x4D1,
                              B8("boot_elcr_slave"))
    wrote = z3.Bool("boot_elcr_written")
    elcr = z3.And(
        s["m_elcr"] == z3.If(wrote, programmed.master.regs.elcr, reset.master.regs.elcr),
        s["s_elcr"] == z3.If(wrote, programmed.slave.regs.elcr, reset.slave.regs.elcr),
        s["g_elcr"] == z3.If(wrote, pic.pair_elcr(programmed),
                             z3.BitVecVal(irq.QUIET.elcr, 16)))
    zero16 = [s[n] == 0 for n in ("owed", "delivered", "held", "lowered", "released")]
    zero16 += [s[f"g_{n}"] == getattr(irq.QUIET, n) for n in ("raised", "last", "cleared")]
    return z3.And(_shaped(s), elcr, *zero16, s["p_pending"] == 0, z3.Not(s["p_sel"]),
                  z3.Not(s["p_upcall"]), z3.Not(s["send_event"]), z3.Not(s["in_pass"]),
                  s["m_irr"] == 0, s["m_isr"] == 0, s["s_irr"] == 0, s["s_isr"] == 0,
                  z3.Not(s["shadow"]), z3.Not(s["injected"]))


def _invariant(s) -> z3.BoolRef:
    edge = ~s["g_elcr"]
    level = s["g_elcr"]
    irr = _irr16(s)
    return z3.And(
        _wellformed(s),
        # 0. every change qemu-dm made in sp_global is announced: the port
        #    is pending, or a send is due at the end of qemu-dm's pass
        z3.Implies((s["g_raised"] | s["g_cleared"]) != 0,
                   z3.Or(_pending(s), s["send_event"])),
        (s["g_cleared"] & edge) == 0, (s["g_raised"] & s["g_cleared"]) == 0,
        # 1. the edges qemu-dm raised since the last take are sp_global's
        s["owed"] == (s["g_raised"] & edge),
        # 2. the delivered edges are exactly qemu-dm's latched requests
        s["delivered"] == (irr & edge & QEMU_LINES),
        # 3. a level line qemu-dm holds high is raised in sp_global or
        #    requested; one it lowered is in the cleared bits until taken,
        #    and a released one is neither raised nor requested
        (s["held"] & edge) == 0, (s["held"] & ~(s["g_raised"] | irr)) == 0,
        (s["held"] & s["g_cleared"]) == 0, (s["g_raised"] & level & ~s["held"]) == 0,
        s["lowered"] == s["g_cleared"],
        (s["released"] & (irr | s["g_raised"] | s["held"] | edge)) == 0)


# --- the properties ----------------------------------------------------------------------

def _qemu(v, mask) -> z3.BoolRef:
    """Line ``v`` (an 8-bit word) is one of qemu-dm's and in ``mask``."""
    return (_bit16(v) & mask & QEMU_LINES) != 0


def _genuine(s, t) -> z3.BoolRef:
    """The step injected a request (not a spurious IRQ7/15) of qemu-dm's."""
    return z3.And(t["injected"], z3.Not(t["spurious"]))


def _pass_ends(s, i, t) -> z3.BoolRef:
    """A pass of qemu-dm's loop ends with changes in sp_global that the
    VMM has not taken."""
    return z3.And(i["act"] == 0, i["flag"], (t["g_raised"] | t["g_cleared"]) != 0)


def _only_evtchn(s, i, t) -> z3.BoolRef:
    # qemu-dm's side: what it changed is announced by the end of its pass
    announced = z3.Implies(_pass_ends(s, i, t), _pending(t))
    # the VMM's side: the raises a notification brought are those delivered
    # before, and those owed and taken now with the pending port (read
    # here, not from the assist)
    brought = s["delivered"] | z3.If(_pending(s), s["owed"], z3.BitVecVal(0, 16))
    edge_injected = z3.And(_genuine(s, t), _qemu(t["inj_line"], ~s["g_elcr"]))
    return z3.And(announced, z3.Implies(edge_injected, _has(brought, t["inj_line"])))


def _unmasked16(s) -> z3.BitVecRef:
    """The lines neither chip masks (a slave line also needs IRQ2)."""
    slave = z3.If((s["m_imr"] & (1 << pic.CASCADE_IRQ)) == 0, ~s["s_imr"], z3.BitVecVal(0, 8))
    return z3.Concat(slave, ~s["m_imr"])


def _ready(s, i) -> z3.BoolRef:
    """A VM entry with IF = 1, no shadow, qemu-dm between passes, and an
    unmasked line qemu-dm raised (an edge no injection consumed) or holds
    high (a level) of higher priority than every line in service that
    blocks it (a slave line: and its IRQ2 on the master)."""
    want = (s["owed"] | s["delivered"] | s["held"]) & _unmasked16(s)
    master, slave = _in_service(s, "m", True), _in_service(s, "s", False)
    cascade = _beats(z3.BitVecVal(pic.CASCADE_IRQ, 8), master, s["m_pa"])

    def may_preempt(n: int) -> z3.BoolRef:
        if n < 8:
            return _beats(z3.BitVecVal(n, 8), master, s["m_pa"])
        return z3.And(cascade, _beats(z3.BitVecVal(n - 8, 8), slave, s["s_pa"]))

    some = z3.Or(*[z3.And((want & (1 << n)) != 0, may_preempt(n))
                   for n in range(16) if QEMU_LINES >> n & 1])
    return z3.And(i["act"] == 1, s["if_"], z3.Not(s["shadow"]), z3.Not(s["in_pass"]), some)


def _never_lost(s, i, t) -> z3.BoolRef:
    # the SDM's rule, stated here (not the spec's may_inject, which a mutant replaces)
    allowed = z3.Implies(t["injected"], z3.And(s["if_"], z3.Not(s["shadow"])))
    return z3.And(allowed, z3.Implies(_ready(s, i), t["injected"]))


def _rank(line, pa):
    return (line - pa) & 7


def _beats(line, isr, pa) -> z3.BoolRef:
    """``line`` (0..7) has a higher priority than every bit of ``isr``
    under the rotation ``pa`` (8259A data sheet: the line after
    ``pa - 1`` is highest)."""
    return z3.And(*[z3.Implies((isr & (1 << b)) != 0, z3.ULT(_rank(line, pa), _rank(b, pa)))
                    for b in range(8)])


def _in_service(s, c: str, nested_master: bool) -> z3.BitVecRef:
    """The in-service lines that block a request on chip ``c``: all, or in
    special mask mode only the unmasked ones; on the master in special
    fully nested mode, not the cascade line."""
    isr = z3.If(s[f"{c}_smm"], s[f"{c}_isr"] & ~s[f"{c}_imr"], s[f"{c}_isr"])
    if nested_master:
        isr = z3.If(s["nested"], isr & ~(1 << pic.CASCADE_IRQ), isr)
    return isr


def _priority(s, i, t) -> z3.BoolRef:
    line = t["inj_line"]
    low = line & 7
    on_slave = z3.UGE(line, 8)
    master_ok = z3.And(low != pic.CASCADE_IRQ, (s["m_imr"] & (1 << low) & 0xFF) == 0,
                       _beats(low, _in_service(s, "m", True), s["m_pa"]))
    slave_ok = z3.And((s["s_imr"] & (1 << low)) == 0,
                      (s["m_imr"] & (1 << pic.CASCADE_IRQ)) == 0,
                      _beats(low, _in_service(s, "s", False), s["s_pa"]),
                      _beats(z3.BitVecVal(pic.CASCADE_IRQ, 8), _in_service(s, "m", True),
                             s["m_pa"]))
    # the chip that found no request sets no in-service bit (on IRQ15 the
    # master did acknowledge IRQ2)
    spurious_ok = z3.And(low == pic.SPURIOUS_IRQ, t["s_isr"] == s["s_isr"],
                         z3.Or(on_slave, t["m_isr"] == s["m_isr"]))
    return z3.Implies(t["injected"], z3.If(t["spurious"], spurious_ok,
                                           z3.If(on_slave, slave_ok, master_ok)))


def _level_release(s, i, t) -> z3.BoolRef:
    released = s["released"] | z3.If(_pending(s), s["lowered"], z3.BitVecVal(0, 16))
    level_injected = z3.And(_genuine(s, t), _qemu(t["inj_line"], s["g_elcr"]))
    return z3.Implies(level_injected, z3.Not(_has(released, t["inj_line"])))


# --- reading a run -------------------------------------------------------------------------

def _lines_of(v: int) -> str:
    return "{" + ",".join(str(n) for n in range(16) if v >> n & 1) + "}"


def _describe_state(v: dict) -> str:
    out = (f"raised={_lines_of(v['g_raised'])} cleared={_lines_of(v['g_cleared'])} "
           f"port={'P' if v['p_pending'] & 1 else '-'}{'*' if v['send_event'] else ''} "
           f"irr={_lines_of(v['s_irr'] << 8 | v['m_irr'])} "
           f"isr={_lines_of(v['s_isr'] << 8 | v['m_isr'])} "
           f"imr={_lines_of(v['s_imr'] << 8 | v['m_imr'])} "
           f"level={_lines_of(v['g_elcr'])} IF={int(v['if_'])} shadow={int(v['shadow'])} "
           f"owed={_lines_of(v['owed'])} delivered={_lines_of(v['delivered'])}")
    modes = [name for name, on in (("SFNM", v["nested"]), ("AEOI-master", v["m_aeoi"]),
                                   ("AEOI-slave", v["s_aeoi"]), ("SMM-master", v["m_smm"]),
                                   ("SMM-slave", v["s_smm"])) if on]
    if modes:
        out += " " + ",".join(modes)
    if v["injected"]:
        out += f" INJECTED IRQ{v['inj_line']}" + (" (spurious)" if v["spurious"] else "")
    return out


def _describe_input(v: dict) -> str:
    act = ACTIONS[v["act"]] if v["act"] < len(ACTIONS) else f"act{v['act']}"
    if act == "dm":
        return (f"qemu-dm: IRQ{v['line']} := {int(v['level'])}"
                + (", end of pass" if v["flag"] else ""))
    if act == "entry":
        return "VM entry" + (" (trap gate)" if v["flag"] else "")
    if act == "xen":
        return (f"Xen: RTC IRQ8 := {int(v['level'])}" if v["slave"] else "Xen: PIT IRQ0")
    if act == "out":
        port = (0xA0 if v["slave"] else 0x20) + (1 if v["flag"] else 0)
        return f"guest: out {port:#x}, {v['byte']:#04x}"
    if act == "insn":
        return f"guest: insn (IF := {int(v['flag'])})"
    return f"guest: {act}"


# --- witnesses: the cases the properties are about --------------------------------------

def _edge_injected(s, i, t) -> z3.BoolRef:
    """An edge line qemu-dm raised is injected at a VM entry."""
    return z3.And(_genuine(s, t), _qemu(t["inj_line"], ~s["g_elcr"]))


def _slave_edge_injected(s, i, t) -> z3.BoolRef:
    """An edge line of the slave is injected (through the cascade)."""
    return z3.And(_edge_injected(s, i, t), z3.UGE(t["inj_line"], 8))


def _ready_entry(s, i, t) -> z3.BoolRef:
    """A VM entry that must inject, on a request from the slave."""
    return z3.And(_ready(s, i), (s["owed"] & 0xFF00) != 0)


def _ready_in_service(s, i, t) -> z3.BoolRef:
    """A VM entry that must inject while a line of lower priority is in
    service on the same chip."""
    return z3.And(_ready(s, i), (s["m_isr"] & ~(1 << pic.CASCADE_IRQ) | s["s_isr"]) != 0)


def _preempts(s, i, t) -> z3.BoolRef:
    """An injection while another line of the same chip is in service."""
    isr = z3.If(z3.UGE(t["inj_line"], 8), s["s_isr"], s["m_isr"] & ~(1 << pic.CASCADE_IRQ))
    return z3.And(_genuine(s, t), isr != 0)


def _spurious(s, i, t) -> z3.BoolRef:
    """A spurious IRQ15: the slave's request vanished after the cascade."""
    return z3.And(t["injected"], t["spurious"], t["inj_line"] == 15)


def _level_lowering_taken(s, i, t) -> z3.BoolRef:
    """A VM entry takes the lowering of a level line whose request is latched."""
    return z3.And(i["act"] == 1, _pending(s), (s["lowered"] & _irr16(s)) != 0)


WITNESSES = {
    "interrupts.only_evtchn": (("a pass of qemu-dm ends with lines to take", _pass_ends),
                               ("an edge line injected", _edge_injected),
                               ("a slave edge line injected", _slave_edge_injected)),
    "interrupts.never_lost": (("a VM entry that must inject a slave line", _ready_entry),
                              ("a VM entry that must preempt an in-service line",
                               _ready_in_service)),
    "interrupts.priority": (("an injection while a line is in service", _preempts),
                            ("a spurious IRQ15", _spurious)),
    "interrupts.level_release": (("a lowered level line's request taken",
                                  _level_lowering_taken),),
}
#: the bounded search's depth (every mutant's counterexample is shorter;
#: the verdict for runs of any length is the induction's), and the witness
#: runs' (a spurious IRQ15 and a released level line take five steps)
DEPTH, WITNESS_DEPTH = 4, 6


def _system(name: str, prop, invariant=_invariant) -> TransitionSystem:
    return TransitionSystem(name, _vars(), _inputs(), _init, _step, invariant, prop,
                            _describe_state, _describe_input, depth=DEPTH,
                            witnesses=WITNESSES[name], witness_depth=WITNESS_DEPTH,
                            incremental=False,
                            cases=lambda i: [i["act"] == k for k in range(len(ACTIONS))])


def only_evtchn() -> TransitionSystem:
    """interrupts.only_evtchn: lines travel from qemu-dm to the guest only
    through the interrupt port: when a pass of qemu-dm's loop ends, every
    change it made to sp_global that the VMM has not taken is announced
    by the pending port; and every injection of an edge line qemu-dm
    drives (not a spurious IRQ7/15) is of a raise the VMM took from
    sp_global at an entry that consumed a pending notification, and that
    no earlier injection consumed."""
    return _system("interrupts.only_evtchn", _only_evtchn)


def never_lost() -> TransitionSystem:
    """interrupts.never_lost: injection only when IF = 1 and no shadow; at a
    VM entry with IF = 1, no shadow and qemu-dm between passes, an
    unmasked line qemu-dm raised (an edge no injection consumed) or holds
    high (a level), of higher priority than every line in service that
    blocks it (a slave line: and its IRQ2 on the master), gives an
    injection."""
    return _system("interrupts.never_lost", _never_lost)


def priority() -> TransitionSystem:
    """interrupts.priority: an injected line is unmasked (a slave line also
    on the master's IRQ2) and of higher priority, under its chip's
    rotation, than every line in service that blocks it (special mask
    mode: the unmasked ones; special fully nested mode: not the master's
    IRQ2); a slave line's IRQ2 likewise on the master; a spurious
    injection is IRQ7 or IRQ15 and the chip that found no request sets
    no in-service bit."""
    return _system("interrupts.priority", _priority, invariant=_wellformed)


def level_release() -> TransitionSystem:
    """interrupts.level_release: a level line qemu-dm lowered is not
    injected once the VMM has taken the lowering, until qemu-dm raises
    it again."""
    return _system("interrupts.level_release", _level_release)


# --- the 8259A's EOI rule, against the data sheet -------------------------------------------

def eoi_rule() -> Outcome:
    """pic.eoi: a non-specific EOI clears exactly one in-service bit, the one
    of highest priority under the rotation (8259A data sheet, OCW2), and
    changes nothing when none is in service; with rotation ("rotate on
    non-specific EOI") the line it ended becomes the lowest priority, and
    without, the priorities stay."""
    started = time.perf_counter()
    isr, pa = z3.BitVec("isr", 8), z3.BitVec("priority_add", 8)
    regs = pic.PicRegs(z3.BitVecVal(0, 8), isr, z3.BitVecVal(0, 8), z3.BitVecVal(0, 8), pa,
                       z3.BitVecVal(0, 8), False, False, False)
    rotate = z3.Bool("rotate")
    after = pic.eoi(regs, rotate)
    cleared = isr & ~after.isr
    rank = lambda line: (line - pa) & 7                        # noqa: E731
    b = z3.BitVec("b", 8)
    highest = z3.And(z3.ULT(b, 8), (isr >> b) & 1 == 1,
                     *[z3.Implies(z3.And((isr >> c) & 1 == 1, z3.BitVecVal(c, 8) != b),
                                  z3.ULT(rank(b), rank(z3.BitVecVal(c, 8)))) for c in range(8)])
    definition = z3.If(isr == 0, cleared == 0,
                       z3.Exists([b], z3.And(highest, cleared == z3.BitVecVal(1, 8) << b)))

    def describe(m: z3.ModelRef) -> list[str]:
        before = m.eval(isr, model_completion=True).as_long()
        rot = m.eval(pa, model_completion=True).as_long()
        got = m.eval(after.isr, model_completion=True).as_long()
        turned = z3.is_true(m.eval(rotate, model_completion=True))
        now = m.eval(after.priority_add, model_completion=True).as_long()
        return [f"ISR={before:08b}, IRQ{rot} highest (priority_add={rot})",
                f"non-specific EOI{' with rotation' if turned else ''} leaves ISR={got:08b}, "
                f"priority_add={now}",
                "not the in-service bit of highest priority cleared (with rotation: made "
                "lowest)"]
    new_rank = lambda line: (line - after.priority_add) & 7         # noqa: E731
    rotated = z3.If(z3.And(rotate, isr != 0),
                    z3.And(z3.ULT(after.priority_add, 8),
                           *[z3.Implies(cleared == 1 << c, new_rank(z3.BitVecVal(c, 8)) == 7)
                             for c in range(8)]),
                    after.priority_add == pa)
    return valid(z3.And(definition, (after.isr & ~isr) == 0, rotated), started, describe,
                 z3.ULT(pa, 8))


def ocw_rule() -> Outcome:
    """pic.ocw: the guest's operation command words do what the 8259A data
    sheet says, for any registers and byte: on the data port OCW1 sets the
    IMR; on the command port OCW3 (bit 3) sets or clears special mask mode
    when bit 6 is set, and OCW2 (bits 3 and 4 clear) by its command (bits
    7-5): 0/4 clear/set rotate in automatic EOI mode, 1/5 the non-specific
    EOI (:func:`spec.pic.eoi`, checked by ``pic.eoi``; 5 rotates), 3/7 clear
    the in-service bit of the line in bits 2-0 (7: and make it lowest),
    6 make that line lowest, 2 nothing. Nothing else changes."""
    started = time.perf_counter()
    names = pic.PicRegs._fields
    kinds = {"auto_eoi": z3.Bool, "rotate_on_aeoi": z3.Bool, "special_mask": z3.Bool}
    r = pic.PicRegs(*[kinds.get(n, B8)(f"ocw_{n}") for n in names])
    byte, data = B8("byte"), z3.Bool("data_port")
    after = pic.ocw(r, data, byte)
    command, line = z3.LShR(byte, 5), byte & 7
    lowest = (line + 1) & 7                                 # the line after it is highest

    def only(**changed):
        return z3.And(*[getattr(after, n) == changed.get(n, getattr(r, n)) for n in names])

    nonspecific = pic.eoi(r, command == 5)
    expected = z3.If(data, only(imr=byte), z3.If(
        (byte & 0x08) != 0,
        only(special_mask=z3.If((byte & 0x40) != 0, (byte & 0x20) != 0, r.special_mask)),
        z3.If(z3.Or(command == 0, command == 4), only(rotate_on_aeoi=command == 4),
              z3.If(z3.Or(command == 1, command == 5),
                    only(isr=nonspecific.isr, priority_add=nonspecific.priority_add),
                    z3.If(z3.Or(command == 3, command == 7),
                          only(isr=r.isr & ~(z3.BitVecVal(1, 8) << line),
                               priority_add=z3.If(command == 7, lowest, r.priority_add)),
                          z3.If(command == 6, only(priority_add=lowest), only()))))))

    def describe(m: z3.ModelRef) -> list[str]:
        val = lambda e: m.eval(e, model_completion=True)                # noqa: E731
        port = "data" if z3.is_true(val(data)) else "command"
        return [f"before: {', '.join(f'{n}={val(v)}' for n, v in zip(names, r))}",
                f"the guest writes {val(byte).as_long():#04x} to the {port} port",
                f"after:  {', '.join(f'{n}={val(v)}' for n, v in zip(names, after))}",
                "not what the data sheet's OCW does"]
    return valid(expected, started, describe, z3.ULT(r.priority_add, 8),
                 z3.Or(data, (byte & 0x10) == 0))


# --- the programming interface, against the data sheet ---------------------------------------

_BOOL_REGS = {"auto_eoi": z3.Bool, "rotate_on_aeoi": z3.Bool, "special_mask": z3.Bool}


def _sym_chip(tag: str) -> pic.Chip:
    """A controller in any state: every register and command-interface bit free."""
    regs = pic.PicRegs(*[_BOOL_REGS.get(n, B8)(f"{tag}_{n}") for n in pic.PicRegs._fields])
    iface = pic.Interface(B8(f"{tag}_init_state"),
                          *[z3.Bool(f"{tag}_{n}") for n in pic.Interface._fields[1:]])
    return pic.Chip(regs, iface)


def _chip_ok(c: pic.Chip) -> z3.BoolRef:
    """A state a controller can be in: a rotation is a line number, and the
    sequence is at READY, ICW2, ICW3 or ICW4."""
    return z3.And(z3.ULT(c.regs.priority_add, 8), z3.ULE(c.iface.init_state, pic.ICW4))


def _same_regs(after: pic.PicRegs, before: pic.PicRegs, **changed) -> z3.BoolRef:
    """``after`` is ``before`` but for ``changed`` (register -> value)."""
    return z3.And(*[getattr(after, n) == changed.get(n, getattr(before, n))
                    for n in pic.PicRegs._fields])


def _same_chip(a: pic.Chip, b: pic.Chip) -> z3.BoolRef:
    """Two controller states are equal, register by register."""
    return z3.And(*[x == y for x, y in zip(a.regs + a.iface, b.regs + b.iface)])


def _show(m: z3.ModelRef, label: str, c: pic.Chip) -> str:
    val = lambda e: m.eval(e, model_completion=True)                # noqa: E731
    regs = ", ".join(f"{n}={val(v)}" for n, v in zip(pic.PicRegs._fields, c.regs))
    iface = ", ".join(f"{n}={val(v)}" for n, v in zip(pic.Interface._fields, c.iface))
    return f"{label}: {regs}; {iface}"


def icw_rule() -> Outcome:
    """pic.icw: the initialisation sequence does what the 8259A data sheet
    says, from any state: after ICW1 (a command-port byte with bit 4 set)
    nothing is requested, in service or masked, IRQ7 has the lowest
    priority (no rotation), special mask mode and rotation in automatic EOI
    mode are cleared, as are the ICW4 modes (automatic EOI, special fully
    nested) and the vector base, a status read gives the IRR, and the
    ELCR is kept; the next data-port byte is ICW2, which sets the vector
    base to its bits 7-3 and nothing else (the vector of line n is then
    ICW2's bits 7-3 with n in bits 2-0); then comes ICW3 only when ICW1's
    SNGL bit is clear (changing no register), ICW4 only when ICW1's IC4 bit
    is set (automatic EOI from its bit 1, special fully nested mode from
    its bit 4, nothing else), and every data-port byte after the sequence
    is OCW1, the IMR."""
    started = time.perf_counter()
    c = _sym_chip("icw")
    b = [B8(f"icw_byte{k}") for k in range(5)]
    s = [pic.write(c, False, b[0])]
    for byte in b[1:]:
        s.append(pic.write(s[-1], True, byte))
    r1 = s[0].regs
    single, ic4 = (b[0] & 2) != 0, (b[0] & 1) != 0
    after_icw1 = z3.And(r1.irr == 0, r1.isr == 0, r1.imr == 0, r1.irq_base == 0,
                        ((7 - r1.priority_add) & 7) == 7,               # IRQ7 lowest
                        z3.Not(r1.special_mask), z3.Not(r1.rotate_on_aeoi),
                        z3.Not(r1.auto_eoi), z3.Not(s[0].iface.nested), r1.elcr == c.regs.elcr)
    icw2 = _same_regs(s[1].regs, r1, irq_base=b[1] & 0xF8)
    # ICW2's bits 7-3 are the vector's, the line its bits 2-0, whatever follows
    line, raised = B8("icw_line"), B8("icw_raised")
    vectors = z3.Implies(z3.ULT(line, 8), pic.vector(s[-1].regs, line) == (b[1] & 0xF8) | line)
    # a status read gives the IRR (lines raised after ICW1), no poll pending
    irr_read = pic.read(s[0]._replace(regs=r1._replace(irr=raised)), False)[1] == raised
    icw3s, icw4s = z3.If(single, 0, 1), z3.If(ic4, 1, 0)
    later = []
    for k in range(3):                       # the data-port bytes after ICW2
        prev, nxt, byte = s[1 + k], s[2 + k], b[2 + k]
        icw3 = z3.And(_same_regs(nxt.regs, prev.regs), nxt.iface.nested == prev.iface.nested)
        icw4 = z3.And(_same_regs(nxt.regs, prev.regs, auto_eoi=(byte & 2) != 0),
                      nxt.iface.nested == ((byte & 0x10) != 0))
        ocw1 = _same_regs(nxt.regs, prev.regs, imr=byte)
        later.append(z3.If(k < icw3s, icw3, z3.If(k < icw3s + icw4s, icw4, ocw1)))

    def describe(m: z3.ModelRef) -> list[str]:
        val = lambda e: m.eval(e, model_completion=True).as_long()     # noqa: E731
        return ([_show(m, "before", c), f"the guest writes {val(b[0]):#04x} to the command "
                 "port, then " + ", ".join(f"{val(x):#04x}" for x in b[1:]) + " to the data port"]
                + [_show(m, f"after byte {k + 1}", st) for k, st in enumerate(s)]
                + ["not the data sheet's initialisation sequence"])
    return valid(z3.And(after_icw1, irr_read, icw2, vectors, *later), started, describe,
                 (b[0] & 0x10) != 0)


def _may_interrupt(r: pic.PicRegs, line) -> z3.BoolRef:
    """``line`` (0..7) is an unmasked request of the highest priority among
    them, of higher priority than every line in service that blocks it
    (in special mask mode the unmasked ones), under the rotation: the
    line the 8259A presents (written here from the data sheet)."""
    asked = r.irr & ~r.imr
    busy = z3.If(r.special_mask, r.isr & ~r.imr, r.isr)
    rank = lambda x: (x - r.priority_add) & 7                          # noqa: E731
    first = z3.And(*[z3.Implies((asked & (1 << n)) != 0, z3.ULE(rank(line), rank(n)))
                     for n in range(8)])
    return z3.And(z3.ULT(line, 8), ((asked >> line) & 1) == 1, first,
                  *[z3.Implies((busy & (1 << n)) != 0, z3.ULT(rank(line), rank(n)))
                    for n in range(8)])


def read_rule() -> Outcome:
    """pic.read: reads do what the 8259A data sheet says, from any state of
    a controller that is not polling: after an OCW3 (a command-port byte
    with bit 3 set and bit 4 clear) without the poll bit, a command-port
    read gives the ISR if the OCW3 had RR and RIS set, the IRR if it had RR
    and not RIS, and the register selected before if it had no RR; a
    data-port read gives the IMR; such reads change nothing. After an OCW3
    with the poll bit, the next read (either port) is a poll: when an
    unmasked request may interrupt, it answers 0x80 with the line of
    highest priority that may (the rank comparison written here) in bits
    2-0 and acknowledges it (its in-service bit set unless in automatic EOI
    mode, an edge request cleared, nothing else); otherwise it answers 0
    and changes no register; and the read after it is a register read
    again."""
    started = time.perf_counter()
    c = _sym_chip("rd")
    v, data = B8("ocw3"), z3.Bool("data_port")
    c1 = pic.write(c, False, v)
    r = c1.regs
    poll = (v & 4) != 0
    selected = z3.If((v & 2) != 0, (v & 1) != 0, c.iface.read_isr)
    register = z3.If(data, r.imr, z3.If(selected, r.isr, r.irr))
    c2, answer = pic.read(c1, data)
    line = answer & 7
    bit = z3.BitVecVal(1, 8) << line
    some = z3.Or(*[_may_interrupt(r, z3.BitVecVal(n, 8)) for n in range(8)])
    acked = _same_regs(c2.regs, r, isr=z3.If(r.auto_eoi, r.isr, r.isr | bit),
                       irr=z3.If((r.elcr & bit) == 0, r.irr & ~bit, r.irr),
                       priority_add=z3.If(z3.And(r.auto_eoi, r.rotate_on_aeoi), (line + 1) & 7,
                                          r.priority_add))
    polled = z3.If(some, z3.And((answer & 0xF8) == 0x80, _may_interrupt(r, line), acked),
                   z3.And(answer == 0, _same_regs(c2.regs, r)))
    _c3, again = pic.read(c2, data)
    after_poll = again == z3.If(data, c2.regs.imr,
                                z3.If(selected, c2.regs.isr, c2.regs.irr))
    plain = z3.And(answer == register, _same_chip(c2, c1))
    claim = z3.If(poll, z3.And(polled, after_poll), plain)

    def describe(m: z3.ModelRef) -> list[str]:
        val = lambda e: m.eval(e, model_completion=True)               # noqa: E731
        port = "data" if z3.is_true(val(data)) else "command"
        return [_show(m, "before", c), f"OCW3 {val(v).as_long():#04x}, then a read of the "
                f"{port} port answers {val(answer).as_long():#04x}", _show(m, "after", c2),
                "not what the data sheet's register read or poll gives"]
    return valid(claim, started, describe, _chip_ok(c), z3.Not(c.iface.poll),
                 (v & 0x18) == 0x08)


#: the PC's PIC ports (master, slave, their ELCRs), written here, not taken
#: from the spec's constants
_PORTS = {0x20: ("master", False), 0x21: ("master", True), 0xA0: ("slave", False),
          0xA1: ("slave", True), 0x4D0: ("master", None), 0x4D1: ("slave", None)}


def lines_rule() -> Outcome:
    """pic.lines: when Xen lowers one of its lines (any IRQ 0..15, Xen
    3.0.4's vpic_irq_negative_edge), exactly that line's request bit is
    cleared, on the master for IRQ0-7 and on the slave for IRQ8-15; the
    master's IRQ2 request is then raised if the slave presents a request
    (the cascade; what the data sheet's priority rule would present is
    written here) and, for a slave line, dropped if it presents none;
    nothing else changes."""
    started = time.perf_counter()
    master, slave = _sym_chip("lm"), _sym_chip("ls")
    m, s, nested, irq = master.regs, slave.regs, master.iface.nested, B8("irq")
    pics = pic.VirtualPic(lambda event: None)        # the wrapper the VMM calls, on Z3 terms
    pics.state = pic.PicPair(master, slave)
    pics.negative_edge(irq)
    after = pics.pair
    bit16 = z3.BitVecVal(1, 16) << z3.ZeroExt(8, irq)
    irr = z3.Concat(s.irr, m.irr) & ~bit16
    slave_irr = z3.Extract(15, 8, irr)
    presents = z3.Or(*[_may_interrupt(s._replace(irr=slave_irr), z3.BitVecVal(n, 8))
                       for n in range(8)])
    master_irr = z3.If(presents, z3.Extract(7, 0, irr) | 4,
                       z3.If(z3.UGE(irq, 8), z3.Extract(7, 0, irr) & ~4, z3.Extract(7, 0, irr)))
    claim = z3.And(_same_regs(after.master, m, irr=master_irr),
                   _same_regs(after.slave, s, irr=slave_irr), after.nested == nested)

    def describe(model: z3.ModelRef) -> list[str]:
        val = lambda e: model.eval(e, model_completion=True).as_long()  # noqa: E731
        return [f"IRR={val(z3.Concat(s.irr, m.irr)):016b}, slave ISR={val(s.isr):08b}, "
                f"IMR={val(s.imr):08b}", f"Xen lowers IRQ{val(irq)}",
                f"IRR={val(z3.Concat(after.slave.irr, after.master.irr)):016b}",
                "not exactly that line's request (and the cascade's) cleared"]
    return valid(claim, started, describe, z3.ULT(irq, 16), z3.ULT(m.priority_add, 8),
                 z3.ULT(s.priority_add, 8))


def _lifted(c: pic.Chip) -> pic.Chip:
    """A concrete controller state as Z3 constants."""
    def lift(x):
        return z3.BoolVal(x) if isinstance(x, bool) else z3.BitVecVal(x, 8)
    return pic.Chip(pic.PicRegs(*map(lift, c.regs)), pic.Interface(*map(lift, c.iface)))


#: a BIOS's programming of the pair: ICW1-ICW4 on each, then the IMRs
_BIOS = ((0x20, 0x11), (0x21, 0x08), (0x21, 0x04), (0x21, 0x01),
         (0xA0, 0x11), (0xA1, 0x70), (0xA1, 0x02), (0xA1, 0x01), (0x21, 0xB8), (0xA1, 0x8F))


def reset_rule() -> Outcome:
    """pic.reset: the pair at power-on (Xen's vpic_init): on both
    controllers nothing is requested, in service or masked, the vector
    base is 0, there is no rotation, no automatic EOI, special mask or
    special fully nested mode, and every line is edge-triggered (the
    ELCRs read 0); both are ready, so a data-port byte is OCW1 (the IMR)
    and a command-port read gives the IRR without a poll. The same
    functions on Python ints (the engine's reading) program the pair as a
    BIOS does: ICW1-ICW4 on each, then its IMRs."""
    started = time.perf_counter()
    d = pic.PicPair(*[_lifted(chip) for chip in pic.reset_pair()])
    v = B8("value")
    claims = [z3.Not(pic.pair_regs(d).nested)]
    for elcr_port, chip in ((0x4D0, d.master), (0x4D1, d.slave)):
        claims.append(_same_regs(chip.regs, pic.PicRegs(0, 0, 0, 0, 0, 0, False, False, False)))
        written = pic.write(chip, True, v)
        claims.append(_same_regs(written.regs, chip.regs, imr=v))
        after, answer = pic.read(chip, False)
        claims += [answer == chip.regs.irr, _same_chip(after, chip),
                   pic.io_read(d, elcr_port)[1] == 0]

    # the same functions on Python ints: a BIOS's programming of the pair
    bios = pic.reset_pair()
    for port, byte in _BIOS:
        bios = pic.io_write(bios, port, byte)
    m, sl = bios.master.regs, bios.slave.regs
    programmed = (m.irq_base, m.imr, sl.irq_base, sl.imr) == (0x08, 0xB8, 0x70, 0x8F)
    claims.append(z3.BoolVal(programmed
                             and pic.io_write(bios, 0x21, 0x00).master.regs.imr == 0))

    def describe(model: z3.ModelRef) -> list[str]:
        return [_show(model, "master", d.master), _show(model, "slave", d.slave),
                f"after the BIOS's ICWs and OCW1s (Python ints): master base {m.irq_base:#x} "
                f"IMR {m.imr:#x}, slave base {sl.irq_base:#x} IMR {sl.imr:#x}",
                "not the power-on state of vpic_init, or a pair the BIOS cannot program"]
    return valid(z3.And(*claims), started, describe)


def ports_rule() -> Outcome:
    """pic.ports: the pair's ports, for any state of both controllers: a
    write to 0x20/0x21 is the master's command/data byte (the port's bit 0
    selects the data port) and leaves the slave; one to 0xA0/0xA1 the
    slave's, leaving the master but for its IRQ2 request, which the slave
    raises when it presents a request (the cascade); reads likewise. A
    write to the ELCR at 0x4D0 (0x4D1) sets the master's (slave's) ELCR to
    the byte with the bits of IRQ0, 1 and 2 (IRQ8 and 13) zero, those lines
    always being edge-triggered, and changes nothing else; reading it
    back gives what was written with those bits zero, and changes
    nothing."""
    started = time.perf_counter()
    d = pic.PicPair(_sym_chip("m"), _sym_chip("s"))
    port, value = z3.BitVec("port", 16), B8("value")
    pics = pic.VirtualPic(lambda event: None)        # the wrapper the VMM calls, on Z3 terms
    pics.state = d
    pics.io_write(port, value)
    after = pics.state
    pics.state = d
    answer = pics.io_read(port)
    read_state = pics.state
    edge_only = {True: (0, 1, 2), False: (0, 5)}            # IRQ0-2; IRQ8 and IRQ13

    def cascaded(master: pic.Chip, slave: pic.Chip) -> pic.Chip:
        found, _line = pic.requested(slave.regs)
        return master._replace(regs=master.regs._replace(
            irr=z3.If(found, master.regs.irr | 4, master.regs.irr)))

    def chip_port(on_slave: bool, data: bool):
        mine = d.slave if on_slave else d.master
        written = pic.write(mine, data, value)
        read_chip, read_value = pic.read(mine, data)
        if on_slave:
            wrote = z3.And(_same_chip(after.slave, written),
                           _same_chip(after.master, cascaded(d.master, written)))
            was_read = z3.And(_same_chip(read_state.slave, read_chip),
                              _same_chip(read_state.master, cascaded(d.master, read_chip)))
        else:
            wrote = z3.And(_same_chip(after.slave, d.slave),
                           _same_chip(after.master, cascaded(written, d.slave)))
            was_read = z3.And(_same_chip(read_state.slave, d.slave),
                              _same_chip(read_state.master, cascaded(read_chip, d.slave)))
        return z3.And(wrote, was_read, answer == read_value)

    def elcr_port(on_master: bool):
        mask = 0xFF & ~sum(1 << n for n in edge_only[on_master])
        mine, other = (d.master, d.slave) if on_master else (d.slave, d.master)
        new, kept = (after.master, after.slave) if on_master else (after.slave, after.master)
        back = pic.io_read(after, port)[1]
        return z3.And(_same_chip(kept, other),
                      *[x == y for x, y in zip(new.iface, mine.iface)],
                      _same_regs(new.regs, mine.regs, elcr=value & mask),
                      _same_chip(read_state.master, d.master),
                      _same_chip(read_state.slave, d.slave),
                      answer == mine.regs.elcr, back == value & mask)

    claim = z3.And(*[z3.Implies(port == p, chip_port(who == "slave", data) if data is not None
                                else elcr_port(who == "master"))
                     for p, (who, data) in _PORTS.items()])

    def describe(m: z3.ModelRef) -> list[str]:
        val = lambda e: m.eval(e, model_completion=True).as_long()     # noqa: E731
        return [_show(m, "master", d.master), _show(m, "slave", d.slave),
                f"port {val(port):#x}: write {val(value):#04x} / read {val(answer):#04x}",
                _show(m, "master after the write", after.master),
                _show(m, "slave after the write", after.slave),
                "not what the port's controller and register do"]
    if sorted(pic.VirtualPic.PORTS) != sorted(_PORTS):
        return Outcome("counterexample", time.perf_counter() - started,
                       [f"the pair claims ports {[hex(p) for p in pic.VirtualPic.PORTS]}",
                        f"the PC's are {[hex(p) for p in _PORTS]}"])
    return valid(claim, started, describe, _chip_ok(d.master), _chip_ok(d.slave),
                 z3.Or(*[port == p for p in _PORTS]))


# --- mutants -----------------------------------------------------------------------------------

_REAL = {"icw1": pic.icw1, "reset_chip": pic.reset_chip, "ack": pic.acknowledge,
         "apply": pic.apply_lines, "take": irq.vmm_take_lines, "assist": irq.assist,
         "dm": irq.dm_set_irq, "pair_ack": pic.pair_acknowledge, "ocw2": pic.ocw2,
         "requested": pic.requested}


def _polling_vmm(p, g, notified, rflags_if, shadow):
    """A VMM that takes the lines at every VM entry, whether or not the
    interrupt port is pending: a raise reaches the guest before (or
    without) qemu-dm's notification."""
    return _REAL["assist"](p, g, True, rflags_if, shadow)


def _silent_dm(g, line, level):
    """qemu-dm's pic_set_irq_new that asks for a notification only for
    level lines: a rising edge is written to sp_global and never sent."""
    bits, _notify = _REAL["dm"](g, line, level)
    return bits, bv.ne(bv.band(g.elcr, line, irq.W), 0)


def _ack_keeps_irr(p, line):
    """Interrupt acknowledge that sets the ISR bit but leaves an edge line's
    IRR bit: the same request is injected again after the EOI, with no send."""
    return _REAL["ack"](p, line)._replace(irr=p.irr)


def _inject_ignores_shadow(rflags_if, shadow):
    """may_inject that looks at IF only: an interrupt lands inside the STI or
    MOV SS shadow."""
    return rflags_if


def _apply_drops_masked(p, raised, cleared):
    """Applying qemu-dm's lines that drops a raise on a masked line: the edge
    is lost, and unmasking later delivers nothing."""
    return _REAL["apply"](p, raised & ~p.imr, cleared)


def _apply_ignores_cleared(p, raised, cleared):
    """Applying qemu-dm's lines without the lowered level lines: a
    released level line keeps requesting."""
    return _REAL["apply"](p, raised, 0)


def _vmm_rereads_lines(g):
    """Taking the lines without clearing the raised bits: every later
    notification re-applies old raises, and a line is injected twice."""
    _g, raised, cleared = _REAL["take"](g)
    return g._replace(cleared=_g.cleared), raised, cleared


def _no_cascade(p):
    """A slave whose request does not raise the master's IRQ2: a slave
    line is never presented to the CPU."""
    return p


def _ignores_nested(p, cascade_nested=False):
    """pic_get_irq without the special fully nested mode: while the
    master's IRQ2 is in service, a slave line of higher priority than the
    slave's handler waits for the master's EOI."""
    return _REAL["requested"](p)


def _equal_priority_preempts(p, cascade_nested=False):
    """pic_get_irq comparing priorities with <= instead of <: a request
    of the same line as the one in service (a level line still asserted)
    interrupts its own handler."""
    found, line = pic.highest_priority(bv.band(p.irr, bv.bnot(p.imr, 8), 8), p.priority_add)
    in_service = bv.ite(p.special_mask, bv.band(p.isr, bv.bnot(p.imr, 8), 8), p.isr)
    in_service = bv.ite(cascade_nested, bv.band(in_service, 0xFB, 8), in_service)
    busy, current = pic.highest_priority(in_service, p.priority_add)
    rank = lambda x: bv.band(bv.sub(x, p.priority_add, 8), 7, 8)       # noqa: E731
    beats = bv.or_(bv.ult(rank(line), rank(current)), bv.eq(rank(line), rank(current)))
    return bv.and_(found, bv.or_(bv.not_(busy), beats)), line


def _spurious_sets_isr(p):
    """An acknowledge of IRQ2 that finds no slave request and acknowledges
    the slave's IRQ7 anyway: the spurious IRQ15 is put in service."""
    ack = _REAL["pair_ack"](p)
    slave = pic.select(ack.spurious, pic.acknowledge(ack.pair.slave, 7), ack.pair.slave)
    return ack._replace(pair=ack.pair._replace(slave=slave))


def _set_priority_makes_highest(p, value):
    """OCW2's set priority that makes the named line the highest instead of
    the lowest."""
    after = _REAL["ocw2"](p, value)
    command, line = bv.lshr(value, 5, 8), bv.band(value, 7, 8)
    return pic.select(bv.eq(command, 6), p._replace(priority_add=line), after)


def _specific_eoi_ignores_line(p, value):
    """OCW2's specific EOI handled as a non-specific one: the line in bits
    2-0 is ignored, and the highest in-service line is ended instead."""
    command = bv.lshr(value, 5, 8)
    specific = bv.member(command, (3, 7))
    return pic.select(specific, pic.eoi(p, bv.bit(value, 7)), _REAL["ocw2"](p, value))


def _eoi_clears_lowest(p, rotate=False):
    """Non-specific EOI that clears the lowest-numbered in-service bit,
    ignoring the rotation."""
    isr = p.isr & (p.isr - 1)
    return p._replace(isr=isr)


def _icw1_keeps_imr(c, value):
    """ICW1 that leaves the IMR as it was: lines the guest masked before
    reinitialising stay masked after it."""
    after = _REAL["icw1"](c, value)
    return after._replace(regs=after.regs._replace(imr=c.regs.imr))


def _pic_line(function: str, old: str, new: str, doc: str):
    """``spec.pic.function`` with one source line changed (the mutant's
    replacement, named ``pic.function``)."""
    return source_mutant(pic, function, old, new, doc)


_ICW2_KEEPS_LOW_BITS = _pic_line(
    "icw", "second = Chip(r._replace(irq_base=bv.band(value, 0xF8, W)),",
    "second = Chip(r._replace(irq_base=value),",
    """ICW2 that keeps the low three bits of the byte as the vector base:
    vectors are base + line with the line added to those bits.""")
_ICW3_IN_SINGLE_MODE = _pic_line(
    "icw", "after_icw2 = bv.ite(f.single, after_icw3, bv.const(ICW3, W, value))",
    "after_icw2 = bv.const(ICW3, W, value)",
    """An ICW3 expected after ICW2 even when ICW1 said SNGL: a single
    8259A takes its ICW4 (or first OCW1) as ICW3.""")
_ICW4_WITHOUT_IC4 = _pic_line(
    "icw", "after_icw3 = bv.ite(f.init4, icw4, ready)", "after_icw3 = icw4",
    """An ICW4 expected even when ICW1's IC4 bit is clear: the guest's
    first OCW1 is taken as ICW4.""")
_POLL_WITHOUT_ACK = _pic_line(
    "read", "polled = Chip(select(found, acknowledge(r, irq), r), f._replace(poll=False))",
    "polled = Chip(r, f._replace(poll=False))",
    """A poll read that reports the line but does not acknowledge it: the
    line is neither put in service nor its edge request cleared.""")
_POLL_WITHOUT_FLAG = _pic_line(
    "read", "answer = bv.ite(found, bv.bor(irq, 0x80, W), bv.const(0, W, irq))",
    "answer = bv.ite(found, irq, bv.const(0, W, irq))",
    """A poll read that answers the line without bit 7: IRQ0 cannot be
    told from no request.""")
_READ_IGNORES_SELECT = _pic_line(
    "read", "register = bv.ite(data_port, r.imr, bv.ite(f.read_isr, r.isr, r.irr))",
    "register = bv.ite(data_port, r.imr, r.irr)",
    """A command-port read that always gives the IRR: OCW3's read ISR
    command is ignored.""")
_RIS_WITHOUT_RR = _pic_line(
    "write", "read_isr=bv.ite(bv.and_(ocw3, bv.bit(value, 1)), bv.bit(value, 0),",
    "read_isr=bv.ite(ocw3, bv.bit(value, 0),",
    """OCW3 that takes RIS without RR: an OCW3 that only sets special mask
    mode (RR = 0, RIS = 0) switches the reads back to the IRR.""")
_ELCR_UNMASKED = _pic_line(
    "elcr_write", "return r._replace(elcr=bv.band(value, writable, W))",
    "return r._replace(elcr=value)",
    """An ELCR write that stores the whole byte: the timer, keyboard and
    cascade lines can be made level-triggered.""")
_ELCR_MASTER_MASK = _pic_line(
    "io_write", "writable = bv.ite(slave, bv.const(ELCR_WRITABLE[1], W, value),",
    "writable = bv.ite(slave, bv.const(ELCR_WRITABLE[0], W, value),",
    """The slave's ELCR written with the master's writable bits: IRQ13
    (the FPU) can be made level-triggered, IRQ10 cannot.""")
_DATA_PORT_BIT_1 = _pic_line(
    "io_write", "write(chip, bv.bit(port, 0), value))",
    "write(chip, bv.bit(port, 1), value))",
    """A port decode that takes bit 1 of the port for the data port:
    0x21 and 0xA1 are taken as command ports.""")


def _slave_is_elcr_only(port):
    """A port decode that sends 0xA0/0xA1 to the master: only the slave's
    ELCR reaches the slave."""
    return bv.eq(port, pic.ELCR_PORTS[1])


_NEGATIVE_EDGE_KEEPS_IRQ2 = _pic_line(
    "pair_negative_edge", "drop = bv.and_(bv.ne(_high(line), 0), bv.not_(found))",
    "drop = False",
    """Xen's negative edge of a slave line that leaves the master's IRQ2
    request: the master presents the cascade after the slave went quiet,
    and the acknowledge gives a spurious IRQ15.""")
_NEGATIVE_EDGE_NEXT_LINE = _pic_line(
    "pair_negative_edge", "line = bv.shl(bv.const(1, LW, irq), bv.zext(irq, W, LW), LW)",
    "line = bv.shl(bv.const(2, LW, irq), bv.zext(irq, W, LW), LW)",
    """The line's bit computed one too high: lowering IRQ8 clears IRQ9's
    request.""")


def _reset_masks_all():
    """A power-on pair with every line masked (as some BIOSes leave it):
    the IMR the guest has not written yet is 0xFF, not 0."""
    chip = _REAL["reset_chip"]()
    return chip._replace(regs=chip.regs._replace(imr=0xFF))


def _reset_expects_icw2():
    """A power-on controller that waits for ICW2: the guest's first data
    byte (an OCW1 before any ICW1) becomes the vector base."""
    chip = _REAL["reset_chip"]()
    return chip._replace(iface=chip.iface._replace(init_state=pic.ICW2))


_EOI_ROTATE_MAKES_HIGHEST = _pic_line(
    "eoi", "priority_add = bv.ite(bv.and_(found, rotate), bv.band(bv.add(irq, 1, W), 7, W),",
    "priority_add = bv.ite(bv.and_(found, rotate), irq,",
    """Rotate on non-specific EOI that makes the ended line the highest
    priority instead of the lowest: the device just served is served
    again first.""")


#: (check name, system factory, [(mutant, "module.function" replaced, replacement)])
CHECKS = [
    ("interrupts.only_evtchn", only_evtchn,
     [("polling_vmm", "irq.assist", _polling_vmm),
      ("silent_dm", "irq.dm_set_irq", _silent_dm),
      ("ack_keeps_irr", "pic.acknowledge", _ack_keeps_irr),
      ("vmm_rereads_lines", "irq.vmm_take_lines", _vmm_rereads_lines)]),
    ("interrupts.never_lost", never_lost,
     [("silent_dm", "irq.dm_set_irq", _silent_dm),
      ("inject_ignores_shadow", "irq.may_inject", _inject_ignores_shadow),
      ("apply_drops_masked", "pic.apply_lines", _apply_drops_masked),
      ("no_cascade", "pic.cascade", _no_cascade),
      ("ignores_nested", "pic.requested", _ignores_nested)]),
    ("interrupts.priority", priority,
     [("equal_priority_preempts", "pic.requested", _equal_priority_preempts),
      ("spurious_sets_isr", "pic.pair_acknowledge", _spurious_sets_isr)]),
    ("interrupts.level_release", level_release,
     [("apply_ignores_cleared", "pic.apply_lines", _apply_ignores_cleared)]),
]

#: function-level checks: (name, run, [(mutant, replaced, replacement)])
RULES = [("pic.eoi", eoi_rule, [("eoi_clears_lowest", "pic.eoi", _eoi_clears_lowest),
                                ("eoi_rotate_makes_highest", "pic.eoi",
                                 _EOI_ROTATE_MAKES_HIGHEST)]),
         ("pic.ocw", ocw_rule,
          [("set_priority_makes_highest", "pic.ocw2", _set_priority_makes_highest),
           ("specific_eoi_ignores_line", "pic.ocw2", _specific_eoi_ignores_line)]),
         ("pic.icw", icw_rule,
          [("icw1_keeps_imr", "pic.icw1", _icw1_keeps_imr),
           ("icw2_keeps_low_bits", "pic.icw", _ICW2_KEEPS_LOW_BITS),
           ("icw3_in_single_mode", "pic.icw", _ICW3_IN_SINGLE_MODE),
           ("icw4_without_ic4", "pic.icw", _ICW4_WITHOUT_IC4)]),
         ("pic.read", read_rule,
          [("poll_without_ack", "pic.read", _POLL_WITHOUT_ACK),
           ("poll_without_flag", "pic.read", _POLL_WITHOUT_FLAG),
           ("read_ignores_select", "pic.read", _READ_IGNORES_SELECT),
           ("ris_without_rr", "pic.write", _RIS_WITHOUT_RR)]),
         ("pic.ports", ports_rule,
          [("elcr_unmasked", "pic.elcr_write", _ELCR_UNMASKED),
           ("elcr_master_mask", "pic.io_write", _ELCR_MASTER_MASK),
           ("data_port_bit_1", "pic.io_write", _DATA_PORT_BIT_1),
           ("slave_is_elcr_only", "pic._on_slave", _slave_is_elcr_only)]),
         ("pic.lines", lines_rule,
          [("negative_edge_keeps_irq2", "pic.pair_negative_edge", _NEGATIVE_EDGE_KEEPS_IRQ2),
           ("negative_edge_next_line", "pic.pair_negative_edge", _NEGATIVE_EDGE_NEXT_LINE)]),
         ("pic.reset", reset_rule,
          [("reset_masks_all", "pic.reset_chip", _reset_masks_all),
           ("reset_expects_icw2", "pic.reset_chip", _reset_expects_icw2)])]

_MODULES = {"pic": pic, "irq": irq, "evtchn": evtchn}


def _patched(mutant):
    stack = ExitStack()
    if mutant is not None:
        module, name = mutant[1].split(".")
        stack.enter_context(mock.patch.object(_MODULES[module], name, mutant[2]))
    return stack


def run_check(factory, mutant=None) -> Outcome:
    with _patched(mutant):
        return check(factory())


def run_rule(rule, mutant=None) -> Outcome:
    with _patched(mutant):
        return rule()
