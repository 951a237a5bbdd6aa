"""Proofs about the interrupt path: qemu-dm's lines, the event channel, the
virtual PIC and injection at VM entry.

Room: one transition system built from the spec's own functions
(:func:`spec.irq.dm_set_irq`, :func:`spec.evtchn.set_pending_2l` and
:func:`~spec.evtchn.take_2l`, :func:`spec.irq.vmm_take_lines`,
:func:`spec.pic.apply_lines`, :func:`~spec.pic.requested`,
:func:`~spec.pic.acknowledge`, :func:`~spec.pic.eoi`,
:func:`~spec.pic.specific_eoi`, :func:`spec.irq.may_inject`) called with Z3
terms, the properties checked on it, and the mutants that must break them.
Imports :mod:`spec`, :mod:`proofs.kinduction`.

The system. State: the shared lines (``sp_global``), the interrupt port's
pending bit (one 2-level selector word), the master PIC's registers, the
vcpu's RFLAGS.IF and interrupt shadow, and *ghost* variables that record
history for the properties (they do not influence any step). Each step one
party acts, chosen by the inputs:

``dm``
    one pass of qemu-dm's loop that drives line *L* to a level: the lines
    change by ``dm_set_irq`` and, if the VMM must be told, qemu-dm sends on
    the interrupt port (``set_pending_2l``). The pass is one step: the
    reference engine runs qemu-dm between VM exits, as a whole.
``entry``
    a VM entry: the interrupt assist of :mod:`spec.vmm` (take the port if
    pending, then the lines; apply them; acknowledge and inject if
    ``may_inject``). The handler's gate decides IF (interrupt gate: 0,
    trap gate: unchanged); the shadow ends.
``eoi``, ``seoi``
    the guest's non-specific or specific EOI (with or without rotation);
``ocw``
    the guest writes the IMR and the special-mask bit;
``sti``, ``cli``, ``mov_ss``, ``insn``
    the guest's instructions that matter: STI (a shadow if IF was 0), CLI,
    MOV SS (a shadow), any other instruction (the shadow ends; an IRET or
    POPF may set IF to anything).

The ELCR is fixed for a run (an arbitrary mix of edge and level lines; the
guest programs it before enabling interrupts), and the same in the PIC and
in ``sp_global``.

Ghosts: ``owed`` has a bit for each edge line that qemu-dm raised with a
send since its last injection; ``credit`` counts, for one arbitrary edge
line *k*, raises minus injections.

Properties:

* **only through event channels** (``interrupts.only_evtchn``): every
  injection of an edge line is owed to a raise that qemu-dm announced with
  an event-channel send and that no earlier injection consumed;
* **never lost** (``interrupts.never_lost``): an injection happens only when
  the guest may take it (IF = 1, no shadow); and at a VM entry where IF = 1,
  there is no shadow and nothing is in service, any owed request on an
  unmasked edge line gives an injection;
* **masking** is :mod:`proofs.evtchn`'s ``evtchn.2l``: a masked port never
  raises an upcall, unmasking a pending port does;
* **no duplicates** (``interrupts.no_duplicates``): line *k* is never
  injected more often than it was raised.

Strengthening, shared by the three checks (why they hold for runs of any
length):

0. ``sp_global``'s cleared bits are level lines only (an edge line's
   lowering is qemu-dm's own business, its edge detector), and while any
   raised or cleared bit is there, the port is pending: the VMM takes the
   bits only with the notification, so none is stranded;
1. an edge line's request in the PIC's IRR or in ``sp_global``'s raised bits
   is owed (nothing else can put it there);
2. an owed line's request is in the IRR, or in the raised bits with the
   port pending (the notification has not been consumed yet, so the next
   entry will collect it);
3. line *k*'s credit is at least its IRR bit plus its raised bit (each
   latched request stands for a raise not yet injected).

A separate function-level check, ``pic.eoi``, states the 8259A's EOI rule
against the data sheet's definition: a non-specific EOI clears exactly the
in-service bit of highest priority under the current rotation.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from unittest import mock

import z3

from proofs.kinduction import Outcome, TransitionSystem, check
from spec import evtchn, irq, pic

B8 = lambda n: z3.BitVec(n, 8)          # noqa: E731
B16 = lambda n: z3.BitVec(n, 16)        # noqa: E731
PORT_WIDTH = 4
PORT = z3.BitVecVal(1, PORT_WIDTH)      # the interrupt port's bit in its word

ACTIONS = ("dm", "entry", "eoi", "seoi", "ocw", "sti", "cli", "mov_ss", "insn")


def _vars():
    return {
        # sp_global
        "g_elcr": B16, "g_raised": B16, "g_last": B16, "g_cleared": B16,
        # the interrupt port's selector word
        "p_pending": lambda n: z3.BitVec(n, PORT_WIDTH), "p_sel": z3.Bool, "p_upcall": z3.Bool,
        # the master PIC
        "irr": B8, "isr": B8, "imr": B8, "elcr": B8, "pa": B8, "base": B8,
        "aeoi": z3.Bool, "rot_aeoi": z3.Bool, "smm": z3.Bool,
        # the vcpu
        "if_": z3.Bool, "shadow": z3.Bool,
        # ghosts
        "owed": B8, "k": B8, "credit": z3.Int,
        # what the step did (for the properties)
        "injected": z3.Bool, "inj_line": B8,
    }


def _inputs():
    return {"act": lambda n: z3.BitVec(n, 4), "line": B8, "level": z3.Bool, "flag": z3.Bool,
            "byte": B8}


def _regs(s) -> pic.PicRegs:
    return pic.PicRegs(s["irr"], s["isr"], s["imr"], s["elcr"], s["pa"], s["base"], s["aeoi"],
                       s["rot_aeoi"], s["smm"])


def _lines(s) -> irq.GlobalIodata:
    return irq.GlobalIodata(s["g_elcr"], s["g_raised"], s["g_last"], s["g_cleared"])


def _word(s) -> evtchn.SelectorWord:
    return evtchn.SelectorWord(s["p_pending"], z3.BitVecVal(0, PORT_WIDTH), s["p_sel"],
                               s["p_upcall"])


def _bit8(v) -> z3.BitVecRef:
    return z3.BitVecVal(1, 8) << v


def _low(v16) -> z3.BitVecRef:
    return z3.Extract(7, 0, v16)


def _same(s, t, changed: dict) -> z3.BoolRef:
    """``t`` equals ``s`` except for ``changed`` (name -> new value)."""
    return z3.And(*[t[name] == changed.get(name, s[name]) for name in s])


def _with_regs(r: pic.PicRegs) -> dict:
    return {"irr": r.irr, "isr": r.isr, "imr": r.imr, "pa": r.priority_add, "aeoi": r.auto_eoi,
            "rot_aeoi": r.rotate_on_aeoi, "smm": r.special_mask}


def _step(s, i, t) -> z3.BoolRef:
    act, line, level, flag, byte = i["act"], i["line"], i["level"], i["flag"], i["byte"]
    regs = _regs(s)
    cases = []
    quiet = {"injected": False, "inj_line": s["inj_line"]}

    # qemu-dm drives `line` to `level`, and sends if the VMM must be told
    g, notify = irq.dm_set_irq(_lines(s), z3.ZeroExt(8, _bit8(line)), level)
    port = evtchn.set_pending_2l(_word(s), PORT, PORT_WIDTH)
    edge = (s["elcr"] & _bit8(line)) == 0
    rising = z3.And(notify, edge)
    cases.append(z3.And(act == 0, z3.ULT(line, 8), _same(s, t, {
        "g_raised": g.raised, "g_last": g.last, "g_cleared": g.cleared,
        "p_pending": z3.If(notify, port.pending, s["p_pending"]),
        "p_sel": z3.If(notify, port.sel, s["p_sel"]),
        "p_upcall": z3.If(notify, port.upcall, s["p_upcall"]),
        "owed": z3.If(rising, s["owed"] | _bit8(line), s["owed"]),
        "credit": s["credit"] + z3.If(z3.And(rising, line == s["k"]), 1, 0), **quiet})))

    # VM entry: the interrupt assist
    pending = (s["p_pending"] & PORT) != 0
    taken = evtchn.take_2l(_word(s), PORT, PORT_WIDTH)
    g2, raised, cleared = irq.vmm_take_lines(_lines(s))
    applied = pic.apply_lines(regs, _low(raised), _low(cleared))
    r1 = pic.PicRegs(*[z3.If(pending, a, b) for a, b in zip(applied, regs)])
    found, which = pic.requested(r1)
    inject = z3.And(found, irq.may_inject(s["if_"], s["shadow"]))
    r2 = pic.acknowledge(r1, which)
    after = pic.PicRegs(*[z3.If(inject, a, b) for a, b in zip(r2, r1)])
    consumed = z3.And(inject, (s["elcr"] & _bit8(which)) == 0)
    cases.append(z3.And(act == 1, _same(s, t, {
        "p_pending": z3.If(pending, taken.pending, s["p_pending"]),
        "p_sel": z3.If(pending, taken.sel, s["p_sel"]),
        "p_upcall": z3.If(pending, taken.upcall, s["p_upcall"]),
        "g_raised": z3.If(pending, g2.raised, s["g_raised"]),
        "g_cleared": z3.If(pending, g2.cleared, s["g_cleared"]),
        **_with_regs(after),
        "if_": z3.If(inject, z3.And(s["if_"], flag), s["if_"]),     # flag: a trap gate
        "shadow": z3.If(inject, False, s["shadow"]),
        "owed": z3.If(consumed, s["owed"] & ~_bit8(which), s["owed"]),
        "credit": s["credit"] - z3.If(z3.And(consumed, which == s["k"]), 1, 0),
        "injected": inject, "inj_line": which})))

    # the guest's EOIs and OCWs
    cases.append(z3.And(act == 2, _same(s, t, {**_with_regs(pic.eoi(regs, flag)), **quiet})))
    cases.append(z3.And(act == 3, z3.ULT(line, 8), _same(s, t, {
        **_with_regs(pic.specific_eoi(regs, line, flag)), **quiet})))
    cases.append(z3.And(act == 4, _same(s, t, {"imr": byte, "smm": flag, **quiet})))
    # the guest's instructions
    cases.append(z3.And(act == 5, _same(s, t, {"if_": True, "shadow": z3.Not(s["if_"]),
                                               **quiet})))
    cases.append(z3.And(act == 6, _same(s, t, {"if_": False, "shadow": False, **quiet})))
    cases.append(z3.And(act == 7, _same(s, t, {"shadow": True, **quiet})))
    cases.append(z3.And(act == 8, _same(s, t, {"if_": flag, "shadow": False, **quiet})))
    return z3.Or(cases)


def _wellformed(s) -> z3.BoolRef:
    """What every state has: the PIC's ELCR is sp_global's low byte (the
    VMM copies it), the high byte's lines are not driven in this system,
    the rotation is a line number, the tracked line *k* is an edge line."""
    return z3.And(_low(s["g_elcr"]) == s["elcr"],
                  z3.Extract(15, 8, s["g_elcr"]) == 0,
                  z3.Extract(15, 8, s["g_raised"]) == 0,
                  z3.ULT(s["pa"], 8), z3.ULT(s["k"], 8),
                  (s["elcr"] & _bit8(s["k"])) == 0)


def _init(s) -> z3.BoolRef:
    """Any programming of the PIC, nothing requested, raised, in service,
    pending or owed; any IF; no shadow."""
    return z3.And(_wellformed(s), s["g_raised"] == 0, s["g_last"] == 0, s["g_cleared"] == 0,
                  s["p_pending"] == 0, z3.Not(s["p_sel"]), z3.Not(s["p_upcall"]),
                  s["irr"] == 0, s["isr"] == 0, z3.Not(s["shadow"]),
                  s["owed"] == 0, s["credit"] == 0, z3.Not(s["injected"]))


def _invariant(s) -> z3.BoolRef:
    edge = ~s["elcr"]
    raised = _low(s["g_raised"])
    pending = (s["p_pending"] & PORT) != 0
    kbit = _bit8(s["k"])
    irr_k = z3.If((s["irr"] & kbit) != 0, 1, 0)
    raised_k = z3.If((raised & kbit) != 0, 1, 0)
    return z3.And(
        _wellformed(s),
        # 0. qemu-dm lowers only level lines through sp_global, and every
        #    change it made there is announced by the pending port
        (_low(s["g_cleared"]) & edge) == 0,
        z3.Extract(15, 8, s["g_cleared"]) == 0,
        z3.Implies((s["g_raised"] | s["g_cleared"]) != 0, pending),
        # 1. latched or raised edge requests are owed
        ((s["irr"] | raised) & edge & ~s["owed"]) == 0,
        # 2. an owed request is in the IRR, or raised with the port pending
        (s["owed"] & ~s["irr"] & ~z3.If(pending, raised, z3.BitVecVal(0, 8))) == 0,
        (s["owed"] & ~edge) == 0,
        # 3. line k's credit covers its latched requests
        s["credit"] >= irr_k + raised_k)


def _only_evtchn(s, i, t) -> z3.BoolRef:
    edge_injected = z3.And(t["injected"], (s["elcr"] & _bit8(t["inj_line"])) == 0)
    return z3.Implies(edge_injected, (s["owed"] & _bit8(t["inj_line"])) != 0)


def _never_lost(s, i, t) -> z3.BoolRef:
    # the SDM's rule, stated here (not the spec's may_inject, which a mutant replaces)
    allowed = z3.Implies(t["injected"], z3.And(s["if_"], z3.Not(s["shadow"])))
    ready = z3.And(i["act"] == 1, s["if_"], z3.Not(s["shadow"]), s["isr"] == 0,
                   (s["owed"] & ~s["imr"]) != 0)
    return z3.And(allowed, z3.Implies(ready, t["injected"]))


def _no_duplicates(s, i, t) -> z3.BoolRef:
    return z3.Implies(z3.And(t["injected"], t["inj_line"] == s["k"]), s["credit"] >= 1)


def _describe_state(v: dict) -> str:
    return (f"raised={v['g_raised'] & 0xFF:08b} port={'P' if v['p_pending'] & 1 else '-'} "
            f"irr={v['irr']:08b} isr={v['isr']:08b} imr={v['imr']:08b} "
            f"elcr={v['elcr']:08b} IF={int(v['if_'])} shadow={int(v['shadow'])} "
            f"owed={v['owed']:08b} k={v['k']} credit={v['credit']}"
            + (f" INJECTED IRQ{v['inj_line']}" if v["injected"] else ""))


def _describe_input(v: dict) -> str:
    act = ACTIONS[v["act"]] if v["act"] < len(ACTIONS) else f"act{v['act']}"
    if act == "dm":
        return f"qemu-dm: IRQ{v['line']} := {int(v['level'])}"
    if act == "entry":
        return "VM entry" + (" (trap gate)" if v["flag"] else "")
    if act == "seoi":
        return f"guest: specific EOI {v['line']}"
    if act == "ocw":
        return f"guest: IMR := {v['byte']:08b}"
    if act == "insn":
        return f"guest: insn (IF := {int(v['flag'])})"
    return f"guest: {act}"


def _edge_injected(s, i, t) -> z3.BoolRef:
    """An edge line qemu-dm raised is injected at a VM entry."""
    return z3.And(t["injected"], (s["elcr"] & _bit8(t["inj_line"])) == 0)


def _ready_entry(s, i, t) -> z3.BoolRef:
    """A VM entry with IF = 1, no shadow, nothing in service and an owed
    request on an unmasked line: the case that must inject."""
    return z3.And(i["act"] == 1, s["if_"], z3.Not(s["shadow"]), s["isr"] == 0,
                  (s["owed"] & ~s["imr"]) != 0)


def _k_injected(s, i, t) -> z3.BoolRef:
    """The tracked line *k* is injected."""
    return z3.And(t["injected"], t["inj_line"] == s["k"])


WITNESSES = {
    "interrupts.only_evtchn": (("an edge line injected", _edge_injected),),
    "interrupts.never_lost": (("a VM entry that must inject", _ready_entry),),
    "interrupts.no_duplicates": (("line k injected", _k_injected),),
}


def _system(name: str, prop) -> TransitionSystem:
    return TransitionSystem(name, _vars(), _inputs(), _init, _step, _invariant, prop,
                            _describe_state, _describe_input, depth=7,
                            witnesses=WITNESSES[name])


def only_evtchn() -> TransitionSystem:
    """interrupts.only_evtchn: every injection of an edge-triggered line is
    owed to a raise qemu-dm announced with an event-channel send and no
    earlier injection consumed."""
    return _system("interrupts.only_evtchn", _only_evtchn)


def never_lost() -> TransitionSystem:
    """interrupts.never_lost: injection only when IF = 1 and no shadow; at a
    VM entry with IF = 1, no shadow and nothing in service, an owed request
    on an unmasked line is injected."""
    return _system("interrupts.never_lost", _never_lost)


def no_duplicates() -> TransitionSystem:
    """interrupts.no_duplicates: an edge-triggered line is never injected
    more often than qemu-dm raised it."""
    return _system("interrupts.no_duplicates", _no_duplicates)


# --- the 8259A's EOI rule, against the data sheet -------------------------------------------

def eoi_rule() -> Outcome:
    """pic.eoi: a non-specific EOI clears exactly one in-service bit, the one
    of highest priority under the rotation (8259A data sheet, OCW2), and
    changes nothing when none is in service."""
    started = time.perf_counter()
    isr, pa = z3.BitVec("isr", 8), z3.BitVec("priority_add", 8)
    regs = pic.PicRegs(z3.BitVecVal(0, 8), isr, z3.BitVecVal(0, 8), z3.BitVecVal(0, 8), pa,
                       z3.BitVecVal(0, 8), False, False, False)
    after = pic.eoi(regs)
    cleared = isr & ~after.isr
    rank = lambda line: (line - pa) & 7                        # noqa: E731
    b = z3.BitVec("b", 8)
    highest = z3.And(z3.ULT(b, 8), (isr >> b) & 1 == 1,
                     *[z3.Implies(z3.And((isr >> c) & 1 == 1, z3.BitVecVal(c, 8) != b),
                                  z3.ULT(rank(b), rank(z3.BitVecVal(c, 8)))) for c in range(8)])
    definition = z3.If(isr == 0, cleared == 0,
                       z3.Exists([b], z3.And(highest, cleared == z3.BitVecVal(1, 8) << b)))
    solver = z3.Solver()
    solver.add(z3.ULT(pa, 8), z3.Not(z3.And(definition, (after.isr & ~isr) == 0)))
    verdict = solver.check()
    seconds = time.perf_counter() - started
    if verdict == z3.unsat:
        return Outcome("proved", seconds, detail="valid")
    if verdict == z3.sat:
        m = solver.model()
        before = m.eval(isr, model_completion=True).as_long()
        rot = m.eval(pa, model_completion=True).as_long()
        got = m.eval(after.isr, model_completion=True).as_long()
        return Outcome("counterexample", seconds, [
            f"ISR={before:08b}, IRQ{rot} highest (priority_add={rot})",
            f"non-specific EOI leaves ISR={got:08b}",
            "the in-service bit of highest priority was not the one cleared"])
    return Outcome("unknown", seconds, detail=str(verdict))


# --- mutants -----------------------------------------------------------------------------------

_REAL_ACK, _REAL_APPLY, _REAL_TAKE = pic.acknowledge, pic.apply_lines, irq.vmm_take_lines


def _ack_keeps_irr(p, line):
    """Interrupt acknowledge that sets the ISR bit but leaves an edge line's
    IRR bit: the same request is injected again after the EOI, with no send."""
    return _REAL_ACK(p, line)._replace(irr=p.irr)


def _inject_ignores_shadow(rflags_if, shadow):
    """may_inject that looks at IF only: an interrupt lands inside the STI or
    MOV SS shadow."""
    return rflags_if


def _apply_drops_masked(p, raised, cleared):
    """Applying qemu-dm's lines that drops a raise on a masked line: the edge
    is lost, and unmasking later delivers nothing."""
    return _REAL_APPLY(p, raised & ~p.imr, cleared)


def _vmm_rereads_lines(g):
    """Taking the lines without clearing the raised bits: every later
    notification re-applies old raises, and a line is injected twice."""
    _g, raised, cleared = _REAL_TAKE(g)
    return g._replace(cleared=_g.cleared), raised, cleared


def _eoi_clears_lowest(p, rotate=False):
    """Non-specific EOI that clears the lowest-numbered in-service bit,
    ignoring the rotation."""
    isr = p.isr & (p.isr - 1)
    return p._replace(isr=isr)


#: (check name, system factory, [(mutant, "module.function" replaced, replacement)])
CHECKS = [
    ("interrupts.only_evtchn", only_evtchn,
     [("ack_keeps_irr", "pic.acknowledge", _ack_keeps_irr)]),
    ("interrupts.never_lost", never_lost,
     [("inject_ignores_shadow", "irq.may_inject", _inject_ignores_shadow),
      ("apply_drops_masked", "pic.apply_lines", _apply_drops_masked)]),
    ("interrupts.no_duplicates", no_duplicates,
     [("vmm_rereads_lines", "irq.vmm_take_lines", _vmm_rereads_lines)]),
]

#: function-level checks: (name, run, [(mutant, replaced, replacement)])
RULES = [("pic.eoi", eoi_rule, [("eoi_clears_lowest", "pic.eoi", _eoi_clears_lowest)])]

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
