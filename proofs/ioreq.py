"""Proofs about the ioreq state machine of :mod:`spec.ioreq`.

Room: two transition systems built from ``spec.ioreq``'s own step
functions (:func:`~spec.ioreq.vmm_send`, :func:`~spec.ioreq.dm_accept`,
:func:`~spec.ioreq.dm_respond`, :func:`~spec.ioreq.vmm_wait_outcome`,
:func:`~spec.ioreq.vmm_complete`), called with Z3 terms, and the mutants that
must break them. Imports :mod:`spec.ioreq`, :mod:`proofs.kinduction`.

The state of one vcpu's slot is its 4-bit ``state`` field, the VMM's own
``waiting`` flag and whether the domain was ``crashed``. In each step exactly
one party acts (the input ``act``) on the slot, and only when the spec's
function says its step is enabled; a disabled step changes nothing.

``ioreq.protocol`` (VMM and an honest device model). Property of every step:

* **only the four transitions**: the state is unchanged, or moves
  NONE→READY, READY→INPROCESS, INPROCESS→IORESP_READY or IORESP_READY→NONE;
* **at most one ioreq in flight**: the VMM sends only when no request is
  outstanding (state NONE and its vcpu not waiting);
* **resume only after the response**: a step that unblocks the vcpu reads
  IORESP_READY;
* the domain is never crashed.

Strengthening: ``not crashed and state <= IORESP_READY and
(waiting == (state != NONE))``, which says that a request is in flight
exactly while the vcpu waits, so the VMM's send guard and the wait
outcome together give the property.

``ioreq.hostile_dm`` (the device model may also write *any* value into the
shared state field at any time). Property: the VMM still sends only when its
vcpu is not waiting, and still resumes the vcpu only on IORESP_READY;
a forged state crashes the domain instead. Strengthening: ``true``.
"""

from __future__ import annotations

from typing import Callable

import z3

from proofs.kinduction import Outcome, TransitionSystem, check_mutated
from spec import bv, ioreq

ACTIONS = ("vmm_send", "dm_accept", "dm_respond", "vmm_wake", "dm_forge")
A = {name: i for i, name in enumerate(ACTIONS)}
ACT_BITS = 3
S = ioreq.STATE_BITS

NONE, READY, INPROC, RESP = (ioreq.STATE_IOREQ_NONE, ioreq.STATE_IOREQ_READY,
                             ioreq.STATE_IOREQ_INPROCESS, ioreq.STATE_IORESP_READY)


def _vars() -> dict[str, Callable[[str], z3.ExprRef]]:
    return {"state": lambda n: z3.BitVec(n, S), "waiting": z3.Bool, "crashed": z3.Bool}


def _inputs() -> dict[str, Callable[[str], z3.ExprRef]]:
    return {"act": lambda n: z3.BitVec(n, ACT_BITS), "forged": lambda n: z3.BitVec(n, S)}


def _same(s, t) -> z3.BoolRef:
    return z3.And(t["state"] == s["state"], t["waiting"] == s["waiting"],
                  t["crashed"] == s["crashed"])


def _step(hostile: bool):
    """The composed step relation, every party's move computed by the spec."""

    def step(s, i, t) -> z3.BoolRef:
        slot = ioreq.Slot(s["state"], s["waiting"])
        send = ioreq.vmm_send(slot)
        accept = ioreq.dm_accept(s["state"])
        respond = ioreq.dm_respond(s["state"])
        outcome = ioreq.vmm_wait_outcome(s["state"])
        complete = ioreq.vmm_complete(slot)

        def vmm(step_: ioreq.Step) -> z3.BoolRef:
            moved = z3.And(t["state"] == step_.after.state, t["waiting"] == step_.after.waiting,
                           t["crashed"] == s["crashed"])
            return z3.If(step_.enabled, moved, _same(s, t))

        def dm(step_: ioreq.DmStep) -> z3.BoolRef:
            moved = z3.And(t["state"] == step_.state, t["waiting"] == s["waiting"],
                           t["crashed"] == s["crashed"])
            return z3.If(step_.enabled, moved, _same(s, t))

        # The VMM's wake-up: complete, keep waiting, or crash the domain.
        crash = z3.And(t["crashed"], t["state"] == s["state"], t["waiting"] == s["waiting"])
        wake = z3.If(z3.Not(s["waiting"]), _same(s, t),
                     z3.If(outcome == ioreq.WAIT_CRASH, crash,
                           z3.If(complete.enabled, vmm(complete), _same(s, t))))
        forge = z3.And(t["state"] == i["forged"], t["waiting"] == s["waiting"],
                       t["crashed"] == s["crashed"])
        moves = [
            z3.Implies(i["act"] == A["vmm_send"], vmm(send)),
            z3.Implies(i["act"] == A["dm_accept"], dm(accept)),
            z3.Implies(i["act"] == A["dm_respond"], dm(respond)),
            z3.Implies(i["act"] == A["vmm_wake"], wake),
        ]
        allowed = [A["vmm_send"], A["dm_accept"], A["dm_respond"], A["vmm_wake"]]
        if hostile:
            moves.append(z3.Implies(i["act"] == A["dm_forge"], forge))
            allowed.append(A["dm_forge"])
        # A crashed domain runs no more.
        return z3.If(s["crashed"], _same(s, t),
                     z3.And(z3.Or(*[i["act"] == a for a in allowed]), *moves))

    return step


def _sent(s, i, t) -> z3.BoolRef:
    return z3.And(i["act"] == A["vmm_send"], z3.Not(s["crashed"]),
                  ioreq.vmm_send(ioreq.Slot(s["state"], s["waiting"])).enabled)


def _resumed(s, t) -> z3.BoolRef:
    return z3.And(s["waiting"], z3.Not(t["waiting"]), z3.Not(t["crashed"]))


def _protocol_property(s, i, t) -> z3.BoolRef:
    legal = z3.Or(t["state"] == s["state"],
                  *[z3.And(s["state"] == a, t["state"] == b)
                    for a, b in ((NONE, READY), (READY, INPROC), (INPROC, RESP), (RESP, NONE))])
    one_in_flight = z3.Implies(_sent(s, i, t), z3.And(s["state"] == NONE, z3.Not(s["waiting"])))
    resume = z3.Implies(_resumed(s, t), s["state"] == RESP)
    return z3.And(legal, one_in_flight, resume, z3.Not(t["crashed"]))


def _hostile_property(s, i, t) -> z3.BoolRef:
    one_in_flight = z3.Implies(_sent(s, i, t), z3.Not(s["waiting"]))
    resume = z3.Implies(_resumed(s, t), s["state"] == RESP)
    return z3.And(one_in_flight, resume)


def _init(s) -> z3.BoolRef:
    return z3.And(s["state"] == NONE, z3.Not(s["waiting"]), z3.Not(s["crashed"]))


def _describe_state(v: dict) -> str:
    who = "crashed" if v["crashed"] else ("vcpu waiting" if v["waiting"] else "vcpu running")
    return f"{ioreq.state_name(v['state']):<13} {who}"


def _describe_input(v: dict) -> str:
    name = ACTIONS[v["act"]] if v["act"] < len(ACTIONS) else f"act {v['act']}"
    return f"{name} ({ioreq.state_name(v['forged'])})" if name == "dm_forge" else name


def _round_trip(s, i, t) -> z3.BoolRef:
    """The vcpu resumes: a request went all the way round."""
    return _resumed(s, t)


def _forgery_crashes(s, i, t) -> z3.BoolRef:
    """A forged state, read by the waiting VMM, crashes the domain."""
    return z3.And(z3.Not(s["crashed"]), t["crashed"])


def protocol_system() -> TransitionSystem:
    """Only the four transitions occur, at most one ioreq is in flight per
    vcpu, and the vcpu resumes only after IORESP_READY."""
    return TransitionSystem(
        "ioreq.protocol", _vars(), _inputs(), _init, _step(hostile=False),
        invariant=lambda s: z3.And(z3.Not(s["crashed"]), z3.ULE(s["state"], RESP),
                                   s["waiting"] == (s["state"] != NONE)),
        prop=_protocol_property, describe_state=_describe_state,
        describe_input=_describe_input,
        witnesses=(("a round trip: the vcpu resumes", _round_trip),
                   ("a send", lambda s, i, t: _sent(s, i, t))))


def hostile_system() -> TransitionSystem:
    """Even when the device model writes any value into the shared state, the
    VMM never has two ioreqs in flight and resumes only on IORESP_READY."""
    return TransitionSystem(
        "ioreq.hostile_dm", _vars(), _inputs(), _init, _step(hostile=True),
        invariant=lambda s: z3.BoolVal(True), prop=_hostile_property,
        describe_state=_describe_state, describe_input=_describe_input,
        witnesses=(("a round trip: the vcpu resumes", _round_trip),
                   ("a forged state crashes the domain", _forgery_crashes)))


# --- mutants: the spec with one function replaced ------------------------------------

_real_wait = ioreq.vmm_wait_outcome
_real_send = ioreq.vmm_send


def _resume_on_inprocess(state: bv.Word) -> bv.Word:
    """A VMM that takes INPROCESS for a finished request."""
    return bv.ite(bv.eq(state, INPROC), bv.const(ioreq.WAIT_COMPLETE, ioreq.WAIT_BITS, state),
                  _real_wait(state))


def _trust_any_state(state: bv.Word) -> bv.Word:
    """A VMM that resumes on any wake-up without reading the state."""
    return bv.const(ioreq.WAIT_COMPLETE, ioreq.WAIT_BITS, state)


def _send_ignoring_waiting(slot: ioreq.Slot) -> ioreq.Step:
    """A VMM that trusts the shared state alone to decide that the slot is free."""
    real = _real_send(slot)
    return ioreq.Step(bv.eq(slot.state, NONE), real.after)


#: (check name, system factory, [(mutant name, spec function replaced, replacement)])
CHECKS = [
    ("ioreq.protocol", protocol_system,
     [("resume_on_inprocess", "vmm_wait_outcome", _resume_on_inprocess)]),
    ("ioreq.hostile_dm", hostile_system,
     [("trust_any_state", "vmm_wait_outcome", _trust_any_state),
      ("send_ignoring_waiting", "vmm_send", _send_ignoring_waiting)]),
]


def run_check(factory, mutant: tuple[str, str, object] | None = None) -> Outcome:
    return check_mutated(factory, ioreq, mutant)
