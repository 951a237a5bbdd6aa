"""Proofs about the 2-level event-channel rules of :mod:`spec.evtchn`.

Room: a transition system over one selector word, built from the spec's own
rule functions (:func:`~spec.evtchn.set_pending_2l`,
:func:`~spec.evtchn.mask_2l`, :func:`~spec.evtchn.unmask_2l`,
:func:`~spec.evtchn.take_2l`) called with Z3 terms, and the mutants that must
break it. Imports :mod:`spec.evtchn`, :mod:`proofs.kinduction`.

State: the word's 64 pending bits and 64 mask bits (the width the engine's
words have, :data:`spec.evtchn.BITS_PER_WORD`), its selector bit and the
upcall bit. Each step one of the four operations acts on one port (chosen by
the inputs). Properties of every step:

* **masking**: a send to a masked port never raises the upcall (nor sets the
  selector bit);
* **unmasking delivers**: unmasking a port that is pending leaves the upcall
  raised.

Strengthening (why it holds for runs of any length): *a pending unmasked
port has its selector bit set, and a set selector bit has the upcall
raised* — so nothing pending and unmasked is ever invisible to the vcpu,
which is the "never lost" half of the issue's property for the word.
"""

from __future__ import annotations

from contextlib import ExitStack
from unittest import mock

import z3

from proofs.kinduction import Outcome, TransitionSystem, check
from spec import evtchn

WIDTH = evtchn.BITS_PER_WORD          # the engine's word: 64 ports
PORT_BITS = WIDTH.bit_length() - 1
ACTIONS = ("send", "mask", "unmask", "take")


def _vars():
    return {"pending": lambda n: z3.BitVec(n, WIDTH), "mask": lambda n: z3.BitVec(n, WIDTH),
            "sel": z3.Bool, "upcall": z3.Bool}


def _inputs():
    return {"act": lambda n: z3.BitVec(n, 2), "port": lambda n: z3.BitVec(n, PORT_BITS)}


def _word(s) -> evtchn.SelectorWord:
    return evtchn.SelectorWord(s["pending"], s["mask"], s["sel"], s["upcall"])


def _bit(i) -> z3.BitVecRef:
    return z3.BitVecVal(1, WIDTH) << z3.ZeroExt(WIDTH - PORT_BITS, i["port"])


def _step(s, i, t) -> z3.BoolRef:
    w, bit = _word(s), _bit(i)
    outcomes = [evtchn.set_pending_2l(w, bit, WIDTH), evtchn.mask_2l(w, bit, WIDTH),
                evtchn.unmask_2l(w, bit, WIDTH), evtchn.take_2l(w, bit, WIDTH)]
    cases = []
    for k, after in enumerate(outcomes):
        cases.append(z3.And(i["act"] == k, t["pending"] == after.pending,
                            t["mask"] == after.mask, t["sel"] == after.sel,
                            t["upcall"] == after.upcall))
    return z3.Or(cases)


def _invariant(s) -> z3.BoolRef:
    visible = (s["pending"] & ~s["mask"]) != 0
    return z3.And(z3.Implies(visible, s["sel"]), z3.Implies(s["sel"], s["upcall"]))


def _prop(s, i, t) -> z3.BoolRef:
    bit = _bit(i)
    masked = (s["mask"] & bit) != 0
    pending = (s["pending"] & bit) != 0
    masking = z3.Implies(z3.And(i["act"] == 0, masked),
                         z3.And(t["upcall"] == s["upcall"], t["sel"] == s["sel"]))
    delivers = z3.Implies(z3.And(i["act"] == 2, pending), t["upcall"])
    return z3.And(masking, delivers)


def _init(s) -> z3.BoolRef:
    return z3.And(s["pending"] == 0, z3.Not(s["sel"]), z3.Not(s["upcall"]))


def _describe_state(v: dict) -> str:
    return (f"pending={v['pending']:#x} mask={v['mask']:#x} "
            f"sel={int(v['sel'])} upcall={int(v['upcall'])}")


def _describe_input(v: dict) -> str:
    return f"{ACTIONS[v['act']]} port {v['port']}"


def _masked_send(s, i, t) -> z3.BoolRef:
    """A send to a masked port that was not pending."""
    bit = _bit(i)
    return z3.And(i["act"] == 0, (s["mask"] & bit) != 0, (s["pending"] & bit) == 0)


def _unmask_delivers(s, i, t) -> z3.BoolRef:
    """Unmasking a port that became pending while masked, with no upcall raised."""
    bit = _bit(i)
    return z3.And(i["act"] == 2, (s["mask"] & bit) != 0, (s["pending"] & bit) != 0,
                  z3.Not(s["upcall"]))


def word_system() -> TransitionSystem:
    """evtchn.2l: masking and unmasking on one selector word."""
    return TransitionSystem("evtchn.2l", _vars(), _inputs(), _init, _step, _invariant, _prop,
                            _describe_state, _describe_input, depth=4,
                            witnesses=(("a send to a masked port", _masked_send),
                                       ("an unmask of a port pending while masked",
                                        _unmask_delivers)))


# --- mutants -----------------------------------------------------------------------------

_REAL_UNMASK, _REAL_SET = evtchn.unmask_2l, evtchn.set_pending_2l


def _unmask_forgets_pending(w, bit, width):
    """Unmask that only clears the mask bit: a port pending while masked is
    never delivered."""
    return w._replace(mask=w.mask & ~bit)


def _send_ignores_mask(w, bit, width):
    """set_pending that raises the upcall whether or not the port is masked."""
    after = _REAL_SET(w, bit, width)
    fresh = (w.pending & bit) == 0
    return after._replace(sel=z3.Or(w.sel, fresh),
                          upcall=z3.Or(w.upcall, z3.And(fresh, z3.Not(w.sel))))


#: (check name, system factory, [(mutant, spec function replaced, replacement)])
CHECKS = [
    ("evtchn.2l", word_system,
     [("unmask_forgets_pending", "unmask_2l", _unmask_forgets_pending),
      ("send_ignores_mask", "set_pending_2l", _send_ignores_mask)]),
]


def run_check(factory, mutant=None) -> Outcome:
    with ExitStack() as stack:
        if mutant is not None:
            stack.enter_context(mock.patch.object(evtchn, mutant[1], mutant[2]))
        return check(factory())
