"""Proofs about the event channels of :mod:`spec.evtchn`, as the engine
runs them: the 2-level bits (``evtchn.2l``), the table (``evtchn.table``),
the port bits the table's operations read and clear (``evtchn.port_bits``)
and the constants of Xen's interface (``evtchn.abi``).

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

``evtchn.table``: the world of :data:`D` domains of :data:`N` ports each
(every field a Z3 word of the spec's width: a domid of 16 bits, a port of
13), and each step one operation of :class:`spec.evtchn.EventChannels`
on any domains, ports and VIRQ number: the spec's rules
(:func:`~spec.evtchn.alloc_unbound_rule`, :func:`~spec.evtchn.bind_interdomain_rule`,
:func:`~spec.evtchn.bind_virq_rule`, :func:`~spec.evtchn.close_rule`,
:func:`~spec.evtchn.remove_rule`, :func:`~spec.evtchn.send_target`,
:func:`~spec.evtchn.virq_port`) with ``limit`` N. The strengthening
(``_table_sound``): per live domain, port 0 reserved, ports from the size
on free; an interdomain port names a port of a live domain that names it
back; a VIRQ at most once. What each operation must do is stated from the
state before it (``_alloc_prop`` ... ``_remove_prop``), never through the
rule's own search. As for ``evtchn.2l`` the initial states are every state
of the strengthening (each reachable, up to fields no operation reads:
allocate, bind, close and remove in turn), so the search is one step.

``evtchn.port_bits`` and ``evtchn.abi`` are function-level checks
(:func:`proofs.kinduction.valid`); ``evtchn.engine`` runs
:class:`spec.evtchn.EventChannels` concretely on every operation from a few
starting tables and compares it with the rules (the glue the engine adds:
the world built and written back, refusals raised, handlers called).
"""

from __future__ import annotations

import time

import z3

from proofs.kinduction import (Outcome, TransitionSystem, check_mutated, replaced,
                               source_mutant, valid)
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

# --- the event-channel table -------------------------------------------------------------

#: the bounded world: domains 0..D-1, each a table of N ports
D, N = 3, 3
T = evtchn
TABLE_ACTIONS = ("alloc_unbound", "alloc_unbound_xen", "bind_interdomain", "bind_virq",
                 "close", "remove_domain", "send", "send_virq")
_FIELDS = (("s", T.STATE_BITS), ("rd", T.DOM_BITS), ("rp", T.PORT_BITS), ("vq", T.VIRQ_BITS),
           ("x", None))


def _bv(width):
    return lambda n: z3.BitVec(n, width)


def _table_vars():
    out = {}
    for d in range(D):
        out[f"live{d}"], out[f"size{d}"] = z3.Bool, _bv(T.PORT_BITS)
        for p in range(N):
            for name, width in _FIELDS:
                out[f"{name}{d}{p}"] = z3.Bool if width is None else _bv(width)
    return out


def _table_inputs():
    return {"act": _bv(3), "dom": _bv(T.DOM_BITS), "rdom": _bv(T.DOM_BITS),
            "port": _bv(T.PORT_BITS), "virq": _bv(T.VIRQ_BITS)}


def _chan(s, d: int, p: int) -> evtchn.Channel:
    return evtchn.Channel(*(s[f"{name}{d}{p}"] for name, _w in _FIELDS))


def world_of(s) -> evtchn.World:
    """The state's world, as the spec's rules take it."""
    return tuple(evtchn.Domain(z3.BitVecVal(d, T.DOM_BITS), s[f"live{d}"], s[f"size{d}"],
                               tuple(_chan(s, d, p) for p in range(N))) for d in range(D))


def _is_world(t, w: evtchn.World) -> z3.BoolRef:
    facts = []
    for d, dom in enumerate(w):
        facts += [t[f"live{d}"] == dom.live, t[f"size{d}"] == dom.size]
        for p, chan in enumerate(dom.table):
            facts += [a == b for a, b in zip(_chan(t, d, p), chan)]
    return z3.And(facts)


_MEMO: dict = {}


def _results(s, i) -> list:
    """(error, world after, port) of each action, by the spec's rules (built
    once per step: the step, the property and the witnesses share them)."""
    key = (id(s), id(i))
    if key in _MEMO and _MEMO[key][0] is s and _MEMO[key][1] is i:
        return _MEMO[key][2]
    if len(_MEMO) > 32:
        _MEMO.clear()
    _MEMO[key] = (s, i, _build_results(s, i))
    return _MEMO[key][2]


def _build_results(s, i) -> list:
    w, dom, rdom, port, virq = world_of(s), i["dom"], i["rdom"], i["port"], i["virq"]
    ok = z3.BitVecVal(T.OK, T.ERR_BITS)
    target = T.send_target(w, dom, port)
    return [T.alloc_unbound_rule(w, dom, rdom, False, N),
            T.alloc_unbound_rule(w, dom, rdom, True, N),
            T.bind_interdomain_rule(w, dom, rdom, port, N),
            T.bind_virq_rule(w, dom, virq, N),
            (*T.close_rule(w, dom, port), port),
            (ok, T.remove_rule(w, dom), port),
            (target.err, w, port),
            (ok, w, T.virq_port(w, dom, virq))]


def _table_step(s, i, t) -> z3.BoolRef:
    return z3.Or(*[z3.And(i["act"] == k, _is_world(t, w))
                   for k, (_err, w, _port) in enumerate(_results(s, i))])


def _same(s, t, d: int, p: int) -> z3.BoolRef:
    return z3.And(*[a == b for a, b in zip(_chan(s, d, p), _chan(t, d, p))])


def _st(s, d, p):
    return s[f"s{d}{p}"]


def _table_sound(s) -> z3.BoolRef:
    """Per live domain: its size is 1..N; port 0 is reserved, no other port
    is; ports from the size on are free; every port is free, unbound,
    interdomain or a VIRQ. An interdomain port names a port of a live
    domain (not itself) that is interdomain and names it back. A VIRQ port's
    number is below NR_VIRQS, and no two ports of a domain have the same."""
    facts = []
    for d in range(D):
        size, mine = s[f"size{d}"], []
        mine += [z3.ULE(1, size), z3.ULE(size, N), _st(s, d, 0) == T.ECS_RESERVED]
        for p in range(1, N):
            st = _st(s, d, p)
            mine.append(z3.Or(*[st == k for k in (T.ECS_FREE, T.ECS_UNBOUND,
                                                  T.ECS_INTERDOMAIN, T.ECS_VIRQ)]))
            mine.append(z3.Implies(z3.ULE(size, p), st == T.ECS_FREE))
            peers = [z3.And(s[f"rd{d}{p}"] == r, s[f"rp{d}{p}"] == q, s[f"live{r}"],
                            _st(s, r, q) == T.ECS_INTERDOMAIN, s[f"rd{r}{q}"] == d,
                            s[f"rp{r}{q}"] == p)
                     for r in range(D) for q in range(1, N) if (r, q) != (d, p)]
            mine.append(z3.Implies(st == T.ECS_INTERDOMAIN, z3.Or(*peers)))
            mine.append(z3.Implies(st == T.ECS_VIRQ, z3.ULT(s[f"vq{d}{p}"], T.NR_VIRQS)))
            for q in range(p + 1, N):
                mine.append(z3.Not(z3.And(st == T.ECS_VIRQ, _st(s, d, q) == T.ECS_VIRQ,
                                          s[f"vq{d}{p}"] == s[f"vq{d}{q}"])))
        facts.append(z3.Implies(s[f"live{d}"], z3.And(mine)))
    return z3.And(facts)


def _err(k: int) -> z3.BitVecRef:
    return z3.BitVecVal(k, T.ERR_BITS)


def _frame(s, t, spared) -> z3.BoolRef:
    """Every port but those ``spared(d, p)`` allows is unchanged."""
    return z3.And(*[z3.Implies(z3.Not(spared(d, p)), _same(s, t, d, p))
                    for d in range(D) for p in range(N)])


def _live(s, dom) -> z3.BoolRef:
    return z3.Or(*[z3.And(dom == d, s[f"live{d}"]) for d in range(D)])


def _lowest_free(s, dom, port) -> z3.BoolRef:
    """``port`` (not 0) is the lowest port of ``dom`` that is free."""
    return z3.Or(*[z3.And(dom == d, port == p, _st(s, d, p) == T.ECS_FREE,
                          *[_st(s, d, q) != T.ECS_FREE for q in range(p)])
                   for d in range(D) for p in range(1, N)])


def _has_free(s, dom) -> z3.BoolRef:
    return z3.Or(*[z3.And(dom == d, _st(s, d, p) == T.ECS_FREE)
                   for d in range(D) for p in range(1, N)])


def _chan_is(t, dom, port, **fields) -> z3.BoolRef:
    """The channel ``dom:port`` of ``t`` has these fields."""
    names = dict(state="s", remote_dom="rd", remote_port="rp", virq="vq", xen="x")
    return z3.Or(*[z3.And(dom == d, port == p, *[t[f"{names[k]}{d}{p}"] == v
                                                 for k, v in fields.items()])
                   for d in range(D) for p in range(N)])


def _allocated(s, i, t, k: int, chan: dict, spared) -> z3.BoolRef:
    """Action ``k`` allocates: refused (ESRCH: no domain, ENOSPC: no free
    port) with nothing changed, or it took the lowest free port of the
    domain for ``chan``, growing the size to cover it, nothing else
    changed but what ``spared`` allows."""
    err, _w, port = _results(s, i)[k]
    dom = i["dom"]
    ok = err == T.OK
    sizes = [t[f"size{d}"] == z3.If(z3.And(ok, dom == d, z3.UGE(port, s[f"size{d}"])),
                                    port + 1, s[f"size{d}"]) for d in range(D)]
    lives = [t[f"live{d}"] == s[f"live{d}"] for d in range(D)]
    done = z3.And(_lowest_free(s, dom, port), port != 0, _live(s, dom),
                  _chan_is(t, dom, port, **chan),
                  _frame(s, t, lambda d, p: z3.Or(z3.And(dom == d, port == p), spared(d, p))))
    refused = z3.And(_frame(s, t, lambda d, p: False),
                     z3.Implies(err == T.E_NO_DOMAIN, z3.Not(_live(s, dom))),
                     z3.Implies(err == T.E_FULL, z3.And(_live(s, dom),
                                                        z3.Not(_has_free(s, dom)))))
    return z3.Implies(i["act"] == k, z3.And(*sizes, *lives, z3.If(ok, done, refused)))


def _none(d, p):
    return z3.BoolVal(False)


def _alloc_prop(s, i, t) -> z3.BoolRef:
    dom, rdom, virq = i["dom"], i["rdom"], i["virq"]
    return z3.And(
        _allocated(s, i, t, 0, dict(state=T.ECS_UNBOUND, remote_dom=rdom, xen=False), _none),
        _allocated(s, i, t, 1, dict(state=T.ECS_UNBOUND, remote_dom=rdom, xen=True), _none),
        _allocated(s, i, t, 3, dict(state=T.ECS_VIRQ, virq=virq), _none),
        _allocated(s, i, t, 2, dict(state=T.ECS_INTERDOMAIN, remote_dom=rdom,
                                    remote_port=i["port"]),
                   lambda d, p: z3.And(rdom == d, i["port"] == p)),
        _table_sound(t))


def _bind_prop(s, i, t) -> z3.BoolRef:
    """After every action the bindings are symmetric (the strengthening);
    a bind succeeds only on a port unbound for the binder, and connects
    the two ports both ways."""
    err, _w, port = _results(s, i)[2]
    dom, rdom, rport = i["dom"], i["rdom"], i["port"]
    was_unbound = z3.And(_live(s, rdom), z3.ULT(0, rport),
                         z3.Or(*[z3.And(rdom == d, z3.ULT(rport, s[f"size{d}"]))
                                 for d in range(D)]),
                         _chan_is(s, rdom, rport, state=T.ECS_UNBOUND, remote_dom=dom))
    connected = z3.And(_chan_is(t, dom, port, state=T.ECS_INTERDOMAIN, remote_dom=rdom,
                                remote_port=rport),
                       _chan_is(t, rdom, rport, state=T.ECS_INTERDOMAIN, remote_dom=dom,
                                remote_port=port))
    return z3.And(_table_sound(t), z3.Implies(
        i["act"] == 2, z3.And(z3.Implies(err == T.OK, z3.And(was_unbound, connected)),
                              z3.Implies(z3.And(was_unbound, _live(s, dom), _has_free(s, dom)),
                                         err == T.OK))))


def _close_prop(s, i, t) -> z3.BoolRef:
    """A close of a port the domain has that is not free frees it; an
    interdomain peer becomes unbound for the closer; nothing else
    changes. Any other close is refused and changes nothing."""
    err, _w, _port = _results(s, i)[4]
    dom, port = i["dom"], i["port"]
    cases = []
    for d in range(D):
        for p in range(1, N):
            here = z3.And(dom == d, port == p)
            ok = z3.And(s[f"live{d}"], z3.ULT(p, s[f"size{d}"]), _st(s, d, p) != T.ECS_FREE)
            peer = [z3.And(_st(s, d, p) == T.ECS_INTERDOMAIN, s[f"rd{d}{p}"] == r,
                           s[f"rp{d}{p}"] == q) for r in range(D) for q in range(N)]
            freed = z3.And(*[a == b for a, b in zip(_chan(t, d, p), T.FREE)])
            unbound = z3.And(*[z3.Implies(
                peer[r * N + q], z3.And(_st(t, r, q) == T.ECS_UNBOUND, t[f"rd{r}{q}"] == d,
                                        t[f"x{r}{q}"] == s[f"x{r}{q}"]))
                for r in range(D) for q in range(N) if (r, q) != (d, p)])
            spared = lambda r, q, d=d, p=p, peer=peer: z3.Or(  # noqa: E731
                z3.BoolVal((r, q) == (d, p)), peer[r * N + q])
            cases.append(z3.Implies(here, z3.If(ok, z3.And(err == T.OK, freed, unbound,
                                                          _frame(s, t, spared)),
                                                z3.And(err != T.OK, _frame(s, t, _none)))))
    invalid = z3.Or(port == 0, z3.UGE(port, N), z3.UGE(dom, D))
    return z3.Implies(i["act"] == 4, z3.And(
        *cases, z3.Implies(invalid, z3.And(err != T.OK, _frame(s, t, _none))),
        *[t[f"live{d}"] == s[f"live{d}"] for d in range(D)],
        *[t[f"size{d}"] == s[f"size{d}"] for d in range(D)]))


def _send_prop(s, i, t) -> z3.BoolRef:
    """A send on an unbound port does nothing; on an interdomain port it
    goes to exactly the port's peer (which names it back), taken by Xen
    exactly when the peer is Xen-consumed; any other send is refused."""
    target = T.send_target(world_of(s), i["dom"], i["port"])
    dom, port = i["dom"], i["port"]
    cases = []
    for d in range(D):
        for p in range(1, N):
            valid = z3.And(s[f"live{d}"], z3.ULT(p, s[f"size{d}"]))
            st = _st(s, d, p)
            peer = z3.And(target.remote_dom == s[f"rd{d}{p}"],
                          target.remote_port == s[f"rp{d}{p}"],
                          _chan_is(s, target.remote_dom, target.remote_port,
                                   state=T.ECS_INTERDOMAIN, remote_dom=d, remote_port=p,
                                   xen=target.xen))
            cases.append(z3.Implies(z3.And(dom == d, port == p), z3.And(
                (target.err == T.OK) == z3.And(valid, z3.Or(st == T.ECS_UNBOUND,
                                                             st == T.ECS_INTERDOMAIN)),
                target.deliver == z3.And(valid, st == T.ECS_INTERDOMAIN),
                z3.Implies(target.deliver, peer))))
    invalid = z3.Or(port == 0, z3.UGE(port, N), z3.UGE(dom, D))
    return z3.Implies(i["act"] == 6, z3.And(
        *cases, z3.Implies(invalid, z3.And(target.err != T.OK, z3.Not(target.deliver)))))


def _virq_prop(s, i, t) -> z3.BoolRef:
    """A VIRQ is bound at most once per domain (the strengthening): a bind
    of a bound VIRQ is refused with EEXIST, of one out of range with
    EINVAL; send_virq finds exactly the port bound to the VIRQ, or port 0
    when none is."""
    err, _w, _port = _results(s, i)[3]
    dom, virq = i["dom"], i["virq"]
    bound = [z3.And(dom == d, s[f"live{d}"], _st(s, d, p) == T.ECS_VIRQ, s[f"vq{d}{p}"] == virq)
             for d in range(D) for p in range(1, N)]
    port = T.virq_port(world_of(s), dom, virq)
    in_range = z3.ULT(virq, T.NR_VIRQS)
    return z3.And(_table_sound(t), z3.Implies(i["act"] == 3, z3.And(
        (err == T.E_VIRQ_RANGE) == z3.Not(in_range),
        z3.Implies(in_range, (err == T.E_VIRQ_BOUND) == z3.And(_live(s, dom), z3.Or(bound))))),
        z3.Implies(i["act"] == 7, z3.And(
            z3.Implies(z3.Not(z3.Or(bound)), port == 0),
            *[z3.Implies(b, port == (k % (N - 1)) + 1) for k, b in enumerate(bound)])))


def _remove_prop(s, i, t) -> z3.BoolRef:
    """After remove_domain the domain is gone and no port of a live domain
    is bound to it: each port that was is unbound, for the dead domain;
    nothing else changes."""
    dom = i["dom"]

    def was_bound(d, p):
        return z3.And(dom != d, s[f"live{d}"], _st(s, d, p) == T.ECS_INTERDOMAIN,
                      s[f"rd{d}{p}"] == dom)
    facts = []
    for d in range(D):
        facts.append(t[f"live{d}"] == z3.And(s[f"live{d}"], dom != d))
        facts.append(t[f"size{d}"] == s[f"size{d}"])
        for p in range(N):
            facts.append(z3.Implies(was_bound(d, p),
                                    z3.And(_st(t, d, p) == T.ECS_UNBOUND, t[f"rd{d}{p}"] == dom)))
            facts.append(z3.Implies(z3.And(t[f"live{d}"], _st(t, d, p) == T.ECS_INTERDOMAIN),
                                    t[f"rd{d}{p}"] != dom))
    spared = lambda d, p: z3.Or(dom == d, was_bound(d, p))       # noqa: E731
    return z3.Implies(i["act"] == 5, z3.And(*facts, _frame(s, t, spared)))


# --- reading a run, and the witnesses ----------------------------------------------------

_LETTER = {T.ECS_FREE: "-", T.ECS_RESERVED: "R", T.ECS_UNBOUND: "U", T.ECS_INTERDOMAIN: "I",
           T.ECS_VIRQ: "V"}


def _describe_chan(v: dict, d: int, p: int) -> str:
    st = v[f"s{d}{p}"]
    text = _LETTER.get(st, f"?{st}")
    if st == T.ECS_UNBOUND:
        text += f">{v[f'rd{d}{p}']}"
    elif st == T.ECS_INTERDOMAIN:
        text += f"{v[f'rd{d}{p}']}:{v[f'rp{d}{p}']}"
    elif st == T.ECS_VIRQ:
        text += f"{v[f'vq{d}{p}']}"
    return text + ("x" if v[f"x{d}{p}"] and st in (T.ECS_UNBOUND, T.ECS_INTERDOMAIN) else "")


def _describe_table(v: dict) -> str:
    """dom d: [port 0, port 1, ...] (R reserved, - free, U>r unbound for r,
    Ir:q interdomain to r:q, Vn VIRQ n, x: Xen-consumed; | marks the size)."""
    out = []
    for d in range(D):
        if not v[f"live{d}"]:
            out.append(f"dom{d} dead")
            continue
        ports = [_describe_chan(v, d, p) for p in range(N)]
        ports.insert(min(v[f"size{d}"], N), "|")
        out.append(f"dom{d} [{' '.join(ports)}]")
    return "  ".join(out)


def _describe_table_input(v: dict) -> str:
    act = TABLE_ACTIONS[v["act"]]
    args = {"alloc_unbound": f"dom{v['dom']}, for dom{v['rdom']}",
            "alloc_unbound_xen": f"dom{v['dom']}, for dom{v['rdom']}",
            "bind_interdomain": f"dom{v['dom']} to dom{v['rdom']}:{v['port']}",
            "bind_virq": f"dom{v['dom']} VIRQ {v['virq']}",
            "close": f"dom{v['dom']}:{v['port']}", "remove_domain": f"dom{v['dom']}",
            "send": f"dom{v['dom']}:{v['port']}", "send_virq": f"dom{v['dom']} VIRQ {v['virq']}"}
    return f"{act}({args[act]})"


def _ok(s, i, k):
    return _results(s, i)[k][0] == T.OK


def _alloc_below_used(s, i, t):
    """alloc_unbound takes a port of dom0 below its last, which is in use."""
    port = _results(s, i)[0][2]
    return z3.And(i["act"] == 0, _ok(s, i, 0), i["dom"] == 0, z3.ULT(port, N - 1),
                  _st(s, 0, N - 1) != T.ECS_FREE)


def _alloc_full(s, i, t):
    """A bind_virq refused with ENOSPC."""
    return z3.And(i["act"] == 3, _results(s, i)[3][0] == T.E_FULL)


def _bind_across(s, i, t):
    """A bind_interdomain between two domains, to a Xen-consumed port."""
    return z3.And(i["act"] == 2, _ok(s, i, 2), i["dom"] != i["rdom"],
                  _chan_is(s, i["rdom"], i["port"], xen=True))


def _bind_loopback(s, i, t):
    """A bind_interdomain of a domain to its own unbound port."""
    return z3.And(i["act"] == 2, _ok(s, i, 2), i["dom"] == i["rdom"])


def _close_bound(s, i, t):
    """A close of an interdomain port whose peer is in another domain."""
    return z3.And(i["act"] == 4, _ok(s, i, 4), _chan_is(s, i["dom"], i["port"],
                                                        state=T.ECS_INTERDOMAIN),
                  z3.Or(*[z3.And(i["dom"] == d, i["port"] == p, s[f"rd{d}{p}"] != d)
                          for d in range(D) for p in range(N)]))


def _send_to_xen(s, i, t):
    """A send whose peer Xen consumes."""
    target = T.send_target(world_of(s), i["dom"], i["port"])
    return z3.And(i["act"] == 6, target.deliver, target.xen)


def _send_unbound(s, i, t):
    """A send on an unbound port."""
    target = T.send_target(world_of(s), i["dom"], i["port"])
    return z3.And(i["act"] == 6, target.err == T.OK, z3.Not(target.deliver))


def _virq_twice(s, i, t):
    """A bind_virq of a VIRQ bound already."""
    return z3.And(i["act"] == 3, _results(s, i)[3][0] == T.E_VIRQ_BOUND)


def _virq_sent_high(s, i, t):
    """A send_virq to a VIRQ bound on the last port, another VIRQ on port 1."""
    port = T.virq_port(world_of(s), i["dom"], i["virq"])
    return z3.And(i["act"] == 7, port == N - 1, i["dom"] == 1,
                  _st(s, 1, 1) == T.ECS_VIRQ)


def _remove_bound(s, i, t):
    """remove_domain of dom0, bound to both other domains."""
    def bound_from(d):
        return z3.Or(*[z3.And(_st(s, d, p) == T.ECS_INTERDOMAIN, s[f"rd{d}{p}"] == i["dom"])
                       for p in range(N)])
    return z3.And(i["act"] == 5, i["dom"] == 0, s["live0"], s["live1"], s["live2"],
                  bound_from(1), bound_from(2))


def _table_prop(s, i, t) -> z3.BoolRef:
    return z3.And(_alloc_prop(s, i, t), _bind_prop(s, i, t), _close_prop(s, i, t),
                  _send_prop(s, i, t), _virq_prop(s, i, t), _remove_prop(s, i, t))


def table_system() -> TransitionSystem:
    """evtchn.table: the event-channel table of D domains of N ports, under
    every operation of the engine. Allocations (alloc_unbound, Xen's
    alloc_unbound, bind_interdomain, bind_virq) take the lowest free port,
    never port 0, for the channel asked for and change no other port (but
    a bind's remote), or are refused (ESRCH, ENOSPC: no free port) and
    change nothing. Interdomain bindings are symmetric after every
    operation, and a bind succeeds exactly on a port unbound for the
    binder. A close frees the port and leaves an interdomain peer unbound
    for the closer. A send on an unbound port does nothing; on an
    interdomain port it goes to exactly its peer, consumed by Xen exactly
    when the peer is Xen's. A VIRQ is bound at most once (EEXIST), and
    send_virq finds its port. After remove_domain no port of a live domain
    is bound to the dead one."""
    return TransitionSystem("evtchn.table", _table_vars(), _table_inputs(), _table_sound,
                            _table_step, _table_sound, _table_prop, _describe_table,
                            _describe_table_input, depth=1, incremental=False,
                            cases=lambda i: [i["act"] == k for k in range(len(TABLE_ACTIONS))],
                            witnesses=(
                                ("an allocation below a port in use", _alloc_below_used),
                                ("an allocation refused with ENOSPC", _alloc_full),
                                ("a bind across domains to a Xen-consumed port", _bind_across),
                                ("a loopback bind", _bind_loopback),
                                ("a close of a port bound to another domain", _close_bound),
                                ("a send to a Xen-consumed peer", _send_to_xen),
                                ("a send on an unbound port", _send_unbound),
                                ("a VIRQ bound twice", _virq_twice),
                                ("a send_virq to the higher of two VIRQ ports", _virq_sent_high),
                                ("removing a domain bound to both others", _remove_bound)))


# --- the port bits of the table's operations ----------------------------------------------

BITS_PORTS = 128


def port_bits_rule() -> Outcome:
    """evtchn.port_bits: for any bits and port (128 ports): is_pending and
    is_masked read the port's own bits; take_pending says whether the port
    was pending and clears only its pending bit, and a take of a port not
    pending changes nothing; close's clear_port clears only the port's
    pending and mask bits."""
    started = time.perf_counter()
    bits = evtchn.PortBits(z3.BitVec("pending", BITS_PORTS), z3.BitVec("mask", BITS_PORTS),
                           z3.BitVec("sel", WIDTH), z3.Bool("upcall"))
    port = z3.BitVec("port", BITS_PORTS)
    one = z3.BitVecVal(1, BITS_PORTS) << port
    pending, masked = (bits.pending & one) != 0, (bits.mask & one) != 0
    was, after = evtchn.take_pending_rule(bits, port, BITS_PORTS)
    cleared = evtchn.clear_port(bits, port, BITS_PORTS)
    claim = z3.And(evtchn.is_pending(bits, port, BITS_PORTS) == pending,
                   evtchn.is_masked(bits, port, BITS_PORTS) == masked,
                   was == pending, after.pending == bits.pending & ~one, after.mask == bits.mask,
                   z3.Implies(z3.Not(pending), z3.And(after.sel == bits.sel,
                                                      after.upcall == bits.upcall)),
                   cleared.pending == bits.pending & ~one, cleared.mask == bits.mask & ~one,
                   cleared.sel == bits.sel, cleared.upcall == bits.upcall)

    def describe(m: z3.ModelRef) -> list[str]:
        def val(e) -> str:
            v = m.eval(e, model_completion=True)
            return hex(v.as_long()) if z3.is_bv_value(v) else str(v)
        return [f"port {val(port)}: pending={val(bits.pending)} mask={val(bits.mask)} "
                f"sel={val(bits.sel)} upcall={val(bits.upcall)}",
                f"take_pending -> {val(was)}, pending={val(after.pending)} "
                f"sel={val(after.sel)}", f"clear_port -> pending={val(cleared.pending)} "
                f"mask={val(cleared.mask)}", "not the port's own bits"]
    return valid(claim, started, describe, z3.ULT(port, BITS_PORTS))


# --- the constants Xen's interface fixes ---------------------------------------------------

#: written here from xen/include/public/xen.h (NR_VIRQS, VIRQ_DOM_EXC, domid_t),
#: xen/include/xen/sched.h (ECS_*) and the 2-level ABI of x86_64 (a selector
#: word of 64 bits, each bit a word of 64 ports)
HEADER_VALUES = {"NR_VIRQS": 24, "VIRQ_DOM_EXC": 3, "BITS_PER_WORD": 64, "MAX_PORTS": 4096,
                 "WORD_SHIFT": 6, "DOM_BITS": 16, "ECS_FREE": 0, "ECS_RESERVED": 1,
                 "ECS_UNBOUND": 2, "ECS_INTERDOMAIN": 3, "ECS_VIRQ": 5}


def _narrowest(bits: int, largest: int) -> bool:
    """``bits`` is the narrowest word that holds 0..``largest``."""
    return largest < 1 << bits and largest >= 1 << (bits - 1)


def abi_rule() -> Outcome:
    """evtchn.abi: the constants of spec.evtchn are Xen's (public/xen.h,
    sched.h, the 2-level ABI); a port up to MAX_PORTS, a state, a VIRQ
    number below NR_VIRQS and every refusal's code fit their words (the
    narrowest that do); the codes are 0 (none) and 1..n, each refusal with
    an errno; a trace names each state; a free port is zeroed (Xen's
    buckets are), a new domain has port 0 reserved and no events."""
    started = time.perf_counter()
    facts = [getattr(evtchn, name) == value for name, value in HEADER_VALUES.items()]
    codes = [evtchn.OK] + [getattr(evtchn, n) for n in dir(evtchn) if n.startswith("E_")]
    facts += [_narrowest(evtchn.PORT_BITS, evtchn.MAX_PORTS),
              _narrowest(evtchn.VIRQ_BITS, evtchn.NR_VIRQS - 1),
              _narrowest(evtchn.STATE_BITS, max(evtchn.STATE_NAMES)),
              sorted(codes) == list(range(len(codes))) and evtchn.OK == 0,
              sorted(evtchn.ERRORS) == sorted(set(codes) - {evtchn.OK}),
              _narrowest(evtchn.ERR_BITS, max(codes)),
              evtchn.STATE_NAMES == {0: "free", 1: "reserved", 2: "unbound",
                                     3: "interdomain", 5: "virq"},
              evtchn.NO_EVENTS == evtchn.PortBits(0, 0, 0, False),
              evtchn.FREE == evtchn.Channel(0, 0, 0, 0, False),
              evtchn.RESERVED == evtchn.Channel(1, 0, 0, 0, False),
              evtchn.DomainEvents(0).channels == [evtchn.RESERVED]]
    bad = [k for k, fact in enumerate(facts) if not fact]
    names = list(HEADER_VALUES) + ["port width", "VIRQ width", "state width", "codes 0..n",
                                   "every refusal has an errno", "code width", "state names",
                                   "no events at first", "a free port is zeroed",
                                   "port 0 reserved", "a new domain's table"]
    return valid(z3.BoolVal(not bad), started,
                 lambda m: [f"not Xen's: {', '.join(names[k] for k in bad)}"])


# --- the engine is the rules -------------------------------------------------------------

def _starts() -> list:
    """A few engines to start from: two domains (dom2 does not exist); then
    with unbound, interdomain, Xen-consumed and VIRQ ports; then with a
    port closed below others."""
    def fresh():
        xen = evtchn.EventChannels(lambda e: None)
        xen.add_domain(0)
        xen.add_domain(1)
        return xen
    empty, used, holed = fresh(), fresh(), fresh()
    for xen in (used, holed):
        xen.bind_virq(0, evtchn.VIRQ_DOM_EXC)
        xen.bind_interdomain(0, 1, xen.alloc_unbound_xen(1, 0, lambda port: None))
        xen.bind_interdomain(0, 1, xen.alloc_unbound(1, 0))
        xen.alloc_unbound(1, 0)
    holed.close(1, 2)
    holed.close(0, 1)
    return [empty, used, holed]


def _engine_calls():
    doms, ports = range(3), range(5)
    for d in doms:
        for r in doms:
            yield "alloc_unbound", (d, r)
            yield "alloc_unbound_xen", (d, r)
            for p in ports:
                yield "bind_interdomain", (d, r, p)
        for p in ports:
            for op in ("close", "send", "mask", "unmask", "take"):
                yield op, (d, p)
        for v in (0, evtchn.VIRQ_DOM_EXC, evtchn.NR_VIRQS):
            yield "bind_virq", (d, v)
            yield "send_virq", (d, v)
        yield "remove_domain", (d,)


def _expected(world, bits, op, args):
    """What the rules say ``op`` does: (error, world after or None, result,
    {dom: bits after}, consumer calls)."""
    if op in ("alloc_unbound", "alloc_unbound_xen"):
        err, after, port = evtchn.alloc_unbound_rule(world, *args, op.endswith("xen"))
        return err, after, port, bits, []
    if op == "bind_interdomain":
        err, after, port = evtchn.bind_interdomain_rule(world, *args)
        return err, after, port, bits, []
    if op == "bind_virq":
        err, after, port = evtchn.bind_virq_rule(world, *args)
        return err, after, port, bits, []
    if op == "remove_domain":
        return evtchn.OK, evtchn.remove_rule(world, args[0]), None, bits, []
    dom, port = args
    new = dict(bits)
    if op == "close":
        err, after = evtchn.close_rule(world, dom, port)
        if not err:
            new[dom] = evtchn.clear_port(bits[dom], port)
        return err, after, None, new, []
    if op in ("mask", "unmask"):
        err = evtchn.port_error(world, dom, port)
        rule = evtchn.mask_2l if op == "mask" else evtchn.unmask_2l
        if not err:
            new[dom] = evtchn.port_rule(bits[dom], port, rule)
        return err, world, None, new, []
    if op == "take":
        if dom not in bits:
            return evtchn.E_NO_DOMAIN, world, None, bits, []
        was, new[dom] = evtchn.take_pending_rule(bits[dom], port)
        return evtchn.OK, world, was, new, []
    if op == "send_virq":
        found = evtchn.virq_port(world, dom, port)
        if found:
            new[dom] = evtchn.port_rule(bits[dom], found, evtchn.set_pending_2l)
        return evtchn.OK, world, None, new, []
    target = evtchn.send_target(world, dom, port)                       # send
    calls = []
    if target.deliver and target.xen:
        calls = [(target.remote_dom, target.remote_port)]
    elif target.deliver:
        new[target.remote_dom] = evtchn.port_rule(bits[target.remote_dom], target.remote_port,
                                                  evtchn.set_pending_2l)
    return target.err, world, None, new, calls


def _run_engine(xen, op, args, calls):
    for events in xen.domains.values():
        events.consumers = {p: (lambda port, d=events.dom: calls.append((d, port)))
                            for p in events.consumers}
    if op == "alloc_unbound_xen":
        args = (*args, lambda port: calls.append(("new", port)))
    try:
        if op == "take":
            return ("ok", xen.take_pending(xen.domain(args[0]), args[1]))
        return ("ok", getattr(xen, op)(*args))
    except evtchn.EvtchnError as exc:
        return ("error", exc.errno, str(exc))
    except Exception as exc:                    # noqa: BLE001 - a broken engine, reported
        return ("crash", f"{type(exc).__name__}: {exc}")


def engine_rule() -> Outcome:
    """evtchn.engine: EventChannels is the rules. From a few starting
    tables, every operation on domains 0-2 (dom2 missing), ports 0-4 and
    VIRQs 0, 3 and 24: the engine refuses exactly what the rule refuses,
    with the errno and message of ERRORS; otherwise it returns the rule's
    port, its tables are the rule's world (size and channels, a removed
    domain gone), its bits are what port_rule, clear_port and
    take_pending_rule give for the rule's port, and a send to a
    Xen-consumed port calls exactly that port's handler. A concrete,
    exhaustive check of the glue around the proved rules."""
    import copy
    started = time.perf_counter()
    wrong: list[str] = []
    try:
        starts = _starts()
    except evtchn.EvtchnError as exc:
        starts, wrong = [], [f"building the starting tables: {exc}"]
    for start in starts:
        for op, args in _engine_calls():
            xen = copy.deepcopy(start)
            world = xen.world()
            bits = {d: e.bits for d, e in xen.domains.items()}
            err, after, result, new_bits, expected_calls = _expected(world, bits, op, args)
            calls: list = []
            got = _run_engine(xen, op, args, calls)
            if err:
                errno, message = evtchn.ERRORS[err]
                fields = dict(zip(("dom", "remote_dom", "remote_port") if op in (
                    "alloc_unbound", "alloc_unbound_xen", "bind_interdomain") else
                    ("dom", "virq") if op in ("bind_virq",) else ("dom", "port"), args))
                if op == "send":
                    fields["state"] = evtchn.STATE_NAMES.get(
                        evtchn.channel_at(world, *args).state)
                want = ("error", errno, f"{errno}: {message.format(**fields)}")
                if got != want:
                    wrong.append(f"{op}{args}: {got}, not {want}")
                continue
            tables = {d.dom: list(d.table[:d.size]) for d in after if d.live}
            state = {d: e.channels for d, e in xen.domains.items()}
            if got != ("ok", result) or state != tables or calls != expected_calls or \
                    {d: e.bits for d, e in xen.domains.items()} != \
                    {d: b for d, b in new_bits.items() if d in xen.domains}:
                wrong.append(f"{op}{args}: the engine gives {got}, tables {state}, "
                             f"calls {calls}; the rules {result}, {tables}, {expected_calls}")
    return valid(z3.BoolVal(not wrong), started, lambda m: wrong[:3] + ["not the rules"])


# --- mutants of the table -----------------------------------------------------------------

def _src(name: str, function: str, old: str, new: str, doc: str):
    return (name, function, source_mutant(evtchn, function, old, new, doc))


TABLE_MUTANTS = [
    _src("highest_free_port", "free_port", "for p, chan in reversed(list(enumerate(table))):",
         "for p, chan in enumerate(table):",
         "get_free_port searching from the top: the highest free port is taken."),
    _src("reserved_is_free", "free_port",
         "port = bv.ite(bv.eq(chan.state, ECS_FREE), bv.const(p, PORT_BITS, like), port)",
         "port = bv.ite(bv.ult(chan.state, ECS_UNBOUND), bv.const(p, PORT_BITS, like), port)",
         "A port counted free when its state is below unbound: the reserved port 0 is "
         "handed out."),
    _src("limit_off_by_one", "alloc_rule",
         "err = _error((exists(world, dom), E_NO_DOMAIN), (bv.ult(port, limit), E_FULL))",
         "err = _error((exists(world, dom), E_NO_DOMAIN), (bv.ult(port, limit + 1), E_FULL))",
         "ENOSPC only beyond MAX_EVTCHNS: a full table grows past its last port."),
    _src("size_not_grown", "put", "grown = bv.and_(mine, bv.not_(bv.ult(port, d.size)))",
         "grown = False",
         "A port allocated beyond the table's size does not grow it: the new port is not "
         "valid, and its peer names a port its domain does not have."),
    _src("remote_names_itself", "bind_interdomain_rule",
         "bound = remote._replace(state=ECS_INTERDOMAIN, remote_dom=dom, remote_port=port)",
         "bound = remote._replace(state=ECS_INTERDOMAIN, remote_dom=dom, "
         "remote_port=remote_port)",
         "bind_interdomain writing the remote's own port number as its peer port: the "
         "binding is not symmetric."),
    _src("bind_any_unbound", "bind_interdomain_rule",
         "(bv.and_(bv.eq(remote.state, ECS_UNBOUND), bv.eq(remote.remote_dom, dom)),",
         "(bv.eq(remote.state, ECS_UNBOUND),",
         "bind_interdomain accepting any unbound port, whoever it was allocated for."),
    _src("close_keeps_peer", "close_rule",
         "after = put(_unbind(world, dom, chan), dom, port, FREE)",
         "after = put(world, dom, port, FREE)",
         "close that frees the port but leaves its peer interdomain, bound to a free port."),
    _src("unbound_for_itself", "_unbind",
         "c._replace(state=ECS_UNBOUND, remote_dom=closer), c)",
         "c._replace(state=ECS_UNBOUND, remote_dom=d.dom), c)",
         "The closed port's peer left unbound for its own domain instead of the closer's."),
    _src("close_free_port", "close_rule", "(bv.ne(chan.state, ECS_FREE), E_FREE))",
         "(True, E_FREE))", "close accepting a port that is already free."),
    _src("send_reads_own_consumer", "send_target",
         "chan.remote_dom, chan.remote_port, peer.xen, chan.state)",
         "chan.remote_dom, chan.remote_port, chan.xen, chan.state)",
         "send deciding Xen's consumption by the sending port's flag, not the peer's."),
    _src("send_on_unbound_delivers", "send_target",
         "return SendTarget(err, bv.and_(bv.eq(err, OK), bv.eq(chan.state, ECS_INTERDOMAIN)),",
         "return SendTarget(err, bv.eq(err, OK),",
         "send on an unbound port delivering to whatever its remote fields name."),
    _src("virq_bound_twice", "bind_virq_rule",
         "(bv.eq(virq_port(world, dom, virq), 0), E_VIRQ_BOUND))",
         "(True, E_VIRQ_BOUND))",
         "bind_virq without the EEXIST check: a VIRQ gets a second port."),
    _src("virq_port_any_virq", "virq_port", "bv.eq(chan.virq, virq))", "True)",
         "send_virq raising the first VIRQ port, whatever its VIRQ."),
    _src("remove_keeps_peers", "remove_rule", "bv.eq(c.remote_dom, dom)),",
         "False),", "remove_domain that only marks the domain dead: its peers stay bound "
         "to it."),
]

BITS_MUTANTS = [
    _src("take_reports_after", "take_pending_rule",
         "return was, PortBits(*(bv.ite(was, new, old) for new, old in zip(after, bits)))",
         "return was, after",
         "take_pending running take_2l whether or not the port is pending: a take of a "
         "port not pending may clear its word's selector bit."),
    _src("clear_keeps_mask", "clear_port", "mask=bv.band(bits.mask, keep, ports))",
         "mask=bits.mask)", "close clearing the pending bit only: a reused port starts "
         "masked."),
    _src("pending_any_port", "is_pending",
         "return bv.ne(bv.band(bv.lshr(bits.pending, port, ports), 1, ports), 0)",
         "return bv.ne(bits.pending, 0)", "is_pending true when any port is pending."),
]

ABI_MUTANTS = [
    ("nr_virqs_32", "NR_VIRQS", 32, "NR_VIRQS taken as 32: VIRQs Xen refuses are bound."),
    ("virq_dom_exc_4", "VIRQ_DOM_EXC", 4, "VIRQ_DOM_EXC as 4 (VIRQ_DEBUGGER): xend "
     "binds the wrong VIRQ."),
]

def _commit_forgets_growth(self, world):
    """The engine keeping its tables' old length: a port taken beyond it is lost."""
    for events, d in zip(self.domains.values(), world):
        events.channels = list(d.table[:len(events.channels)])


def _check_ignores_refusals(err, **fields):
    """The engine raising nothing: a refused operation returns as if it worked."""


ENGINE_MUTANTS = [
    ("commit_forgets_growth", "EventChannels._commit", _commit_forgets_growth),
    ("check_ignores_refusals", "EventChannels._check", staticmethod(_check_ignores_refusals)),
]

#: (check name, system or rule, [(mutant, spec attribute replaced, replacement[, doc])])
CHECKS = [
    ("evtchn.2l", ports_system,
     [("unmask_forgets_pending", "unmask_2l", _unmask_forgets_pending),
      ("send_ignores_mask", "set_pending_2l", _send_ignores_mask)] + GLUE_MUTANTS),
    ("evtchn.table", table_system, TABLE_MUTANTS),
    ("evtchn.port_bits", port_bits_rule, BITS_MUTANTS),
    ("evtchn.abi", abi_rule, ABI_MUTANTS),
    ("evtchn.engine", engine_rule, ENGINE_MUTANTS),
]


_FUNCTION_CHECKS = (port_bits_rule, abi_rule, engine_rule)


def run_check(factory, mutant=None) -> Outcome:
    """A system (by :func:`~proofs.kinduction.check_mutated`) or a
    function-level rule, with ``mutant``'s attribute of :mod:`spec.evtchn`
    replaced."""
    if factory not in _FUNCTION_CHECKS:
        return check_mutated(factory, evtchn, mutant[:3] if mutant else None)
    if mutant is None:
        return factory()
    with replaced(evtchn, mutant[1], mutant[2]):
        return factory()
