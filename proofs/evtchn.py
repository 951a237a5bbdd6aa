"""Proofs about the 2-level event-channel rules of :mod:`spec.evtchn`, as
the engine runs them.

Room: a transition system built from the function every per-port operation
of the engine is, :func:`spec.evtchn.port_rule`, with the spec's own rules
(:func:`~spec.evtchn.set_pending_2l`, :func:`~spec.evtchn.mask_2l`,
:func:`~spec.evtchn.unmask_2l`, :func:`~spec.evtchn.take_2l`), called with
Z3 terms; and the mutants that must break it. Imports :mod:`spec.evtchn`,
:mod:`proofs.kinduction`.

State: the pending and mask bits of ``NWORDS`` (2) selector words of 64 ports
(the width of the engine's words, :data:`spec.evtchn.BITS_PER_WORD`) as two
128-bit words, the vcpu's 64-bit selector word and its upcall bit. Each step
one of the four operations acts on any port. What :func:`~spec.evtchn.port_rule`
must do is stated through the port's place in the whole bit string
(``1 << port``), never through the word number and bit it computes itself,
and for each selector word separately. Properties of every step:

* **the port, and only it**: a send sets the port's pending bit, a take
  clears it, a mask sets its mask bit and an unmask clears it; no other bit
  of any word changes;
* **masking**: a send to a masked port changes neither the selector word nor
  the upcall;
* **soundness of the selector word and the upcall** (after the step): for
  every word, a pending unmasked port has the word's selector bit set (so
  an unmask of a port pending while masked delivers it: never lost); a set
  selector bit has a pending port in its word; no selector bit is set
  beyond the words; the upcall is raised exactly while a selector bit is.

The strengthening is the last property of the state before the step, and
the initial states are all the states it allows (each reachable from the
domain's first state, as ``_ports_init`` says), so the search is one step deep.
"""

from __future__ import annotations

import z3

from proofs.kinduction import Outcome, TransitionSystem, check_mutated, source_mutant
from spec import evtchn

WIDTH = evtchn.BITS_PER_WORD          # the engine's word: 64 ports
ACTIONS = ("send", "mask", "unmask", "take")
NWORDS = 2
PORTS = NWORDS * WIDTH

def _ports_vars():
    return {"pending": lambda n: z3.BitVec(n, PORTS), "mask": lambda n: z3.BitVec(n, PORTS),
            "sel": lambda n: z3.BitVec(n, WIDTH), "upcall": z3.Bool}


def _ports_inputs():
    return {"act": lambda n: z3.BitVec(n, 2), "port": lambda n: z3.BitVec(n, PORTS)}


_RULES = ("set_pending_2l", "mask_2l", "unmask_2l", "take_2l")


def _ports_step(s, i, t) -> z3.BoolRef:
    state = evtchn.PortBits(s["pending"], s["mask"], s["sel"], s["upcall"])
    cases = []
    for k, rule in enumerate(_RULES):
        after = evtchn.port_rule(state, i["port"], getattr(evtchn, rule), PORTS)
        cases.append(z3.And(i["act"] == k, t["pending"] == after.pending,
                            t["mask"] == after.mask, t["sel"] == after.sel,
                            t["upcall"] == after.upcall))
    return z3.And(z3.ULT(i["port"], PORTS), z3.Or(cases))


def _word_of(x, k: int) -> z3.BitVecRef:
    return z3.Extract(WIDTH * k + WIDTH - 1, WIDTH * k, x)


def _sel_bit(x, k: int) -> z3.BoolRef:
    return z3.Extract(k, k, x) == 1


def _ports_sound(s) -> z3.BoolRef:
    """Per selector word k: a pending unmasked port of word k has selector
    bit k set; selector bit k is set only while word k has a pending port;
    no selector bit beyond the words; the upcall is raised exactly while a
    selector bit is set."""
    facts = []
    for k in range(NWORDS):
        visible = _word_of(s["pending"] & ~s["mask"], k) != 0
        facts += [z3.Implies(visible, _sel_bit(s["sel"], k)),
                  z3.Implies(_sel_bit(s["sel"], k), _word_of(s["pending"], k) != 0)]
    facts += [z3.LShR(s["sel"], NWORDS) == 0, s["upcall"] == (s["sel"] != 0)]
    return z3.And(facts)


def _port_bit(i) -> z3.BitVecRef:
    return z3.BitVecVal(1, PORTS) << i["port"]


def _ports_prop(s, i, t) -> z3.BoolRef:
    bit, act = _port_bit(i), i["act"]
    pending = z3.If(act == 0, s["pending"] | bit,
                    z3.If(act == 3, s["pending"] & ~bit, s["pending"]))
    mask = z3.If(act == 1, s["mask"] | bit, z3.If(act == 2, s["mask"] & ~bit, s["mask"]))
    masked_send = z3.Implies(z3.And(act == 0, (s["mask"] & bit) != 0),
                             z3.And(t["upcall"] == s["upcall"], t["sel"] == s["sel"]))
    return z3.And(t["pending"] == pending, t["mask"] == mask, masked_send, _ports_sound(t))


def _ports_init(s) -> z3.BoolRef:
    """Every state of the strengthening. Each is reachable from the domain's
    first state (nothing pending): for each pending port, unmask it if its
    word's selector bit is to be set and send, then set the masks."""
    return _ports_sound(s)


def _describe_ports(v: dict) -> str:
    return (f"pending={v['pending']:#x} mask={v['mask']:#x} "
            f"sel={v['sel']:#x} upcall={int(v['upcall'])}")


def _describe_port_input(v: dict) -> str:
    port = v["port"]
    return f"{ACTIONS[v['act']]} port {port} (word {port >> evtchn.WORD_SHIFT})"


def _in_word(i, k: int) -> z3.BoolRef:
    return z3.LShR(i["port"], evtchn.WORD_SHIFT) == k


def _masked_send_far(s, i, t) -> z3.BoolRef:
    """A send to a masked port of the second word while the first is selected."""
    return z3.And(i["act"] == 0, _in_word(i, 1), (s["mask"] & _port_bit(i)) != 0,
                  _sel_bit(s["sel"], 0))


def _unmask_far(s, i, t) -> z3.BoolRef:
    """Unmasking a port of the second word pending while masked, its selector
    bit clear, the upcall raised by the first word."""
    bit = _port_bit(i)
    return z3.And(i["act"] == 2, _in_word(i, 1), (s["mask"] & bit) != 0,
                  (s["pending"] & bit) != 0, z3.Not(_sel_bit(s["sel"], 1)), s["upcall"])


def _take_one_word(s, i, t) -> z3.BoolRef:
    """Taking the last pending port of a word while another word is selected."""
    bit = _port_bit(i)
    return z3.And(i["act"] == 3, (s["pending"] & bit) != 0, _in_word(i, 0),
                  _word_of(s["pending"] & ~bit, 0) == 0, _sel_bit(s["sel"], 1))


def ports_system() -> TransitionSystem:
    """evtchn.2l: the engine's per-port operations (the 2-level rules on the
    port's selector word of the whole state) on two selector words."""
    return TransitionSystem("evtchn.2l", _ports_vars(), _ports_inputs(), _ports_init,
                            _ports_step, _ports_sound, _ports_prop, _describe_ports,
                            _describe_port_input, depth=1,
                            incremental=False,
                            witnesses=(("a send to a masked port in the second word",
                                        _masked_send_far),
                                       ("an unmask in a word whose selector bit is clear",
                                        _unmask_far),
                                       ("a take that empties one of two selected words",
                                        _take_one_word)))


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


def _glue(name: str, old: str, new: str, doc: str):
    return (name, "port_rule", source_mutant(evtchn, "port_rule", old, new, doc))


#: one-line bugs in :func:`spec.evtchn.port_rule`, the code the engine runs
GLUE_MUTANTS = [
    _glue("word_of_32_ports", "index = bv.lshr(port, WORD_SHIFT, ports)",
          "index = bv.lshr(port, WORD_SHIFT - 1, ports)",
          "The port's word taken as port >> 5, as if words held 32 ports."),
    _glue("bit_of_32_ports",
          "bit = bv.shl(bv.const(1, w, port), bv.trunc(bv.band(port, w - 1, ports), w), w)",
          "bit = bv.shl(bv.const(1, w, port), bv.trunc(bv.band(port, 31, ports), w), w)",
          "The port's bit within its word taken as port & 31."),
    _glue("selector_of_the_bit",
          "sel_bit = bv.shl(bv.const(1, w, port), bv.trunc(index, w), w)",
          "sel_bit = bv.shl(bv.const(1, w, port), bv.trunc(bv.band(port, w - 1, ports), w), w)",
          "The selector bit numbered by the port's bit in its word, not by the word."),
    _glue("selector_read_any",
          "bv.ne(bv.band(state.sel, sel_bit, w), 0), state.upcall)",
          "bv.ne(state.sel, 0), state.upcall)",
          "The rule is told the word is selected when any word is."),
    _glue("upcall_of_the_word",
          "upcall = bv.or_(after.upcall, bv.and_(state.upcall, bv.ne(sel, 0)))",
          "upcall = after.upcall",
          "The word's upcall written back as the vcpu's: taking the last port of one "
          "word drops the upcall another selected word still needs."),
    _glue("upcall_from_pending",
          "upcall = bv.or_(after.upcall, bv.and_(state.upcall, bv.ne(sel, 0)))",
          "upcall = bv.or_(after.upcall, bv.ne(put(state.pending, after.pending), 0))",
          "The upcall kept while any port is pending, selected or not: a masked "
          "pending port in another word keeps it raised."),
    _glue("selector_never_cleared",
          "bv.band(state.sel, bv.bnot(sel_bit, w), w))",
          "state.sel)",
          "A word that empties keeps its selector bit."),
    _glue("write_back_or",
          "return bv.bor(bv.band(words, keep, ports), "
          "bv.shl(bv.zext(word, w, ports), base, ports),",
          "return bv.bor(words, bv.shl(bv.zext(word, w, ports), base, ports),",
          "The rule's word ORed into the state instead of replacing it: a bit the "
          "rule clears stays set."),
]

#: (check name, system factory, [(mutant, spec function replaced, replacement)])
CHECKS = [
    ("evtchn.2l", ports_system,
     [("unmask_forgets_pending", "unmask_2l", _unmask_forgets_pending),
      ("send_ignores_mask", "set_pending_2l", _send_ignores_mask)] + GLUE_MUTANTS),
]


def run_check(factory, mutant=None) -> Outcome:
    return check_mutated(factory, evtchn, mutant)
