"""Event channels: Xen's doorbells between domains, and from Xen itself.

Room: the per-domain event-channel table and the 2-level pending/mask bits,
as ``xen/common/event_channel.c`` and ``xen/common/event_2l.c`` keep them.
Imports :mod:`spec.bv` and :mod:`spec.trace`.

On the HVM path of ``DESIGN.md`` the guest itself never uses an event
channel. Two kinds of user appear:

* **Xen-consumed ports.** For each vcpu, Xen allocates an unbound port in
  the HVM domain (``alloc_unbound_xen_event_channel``) whose consumer is Xen
  itself: a notification on it does not set a pending bit for the guest, it
  calls Xen's handler, which wakes the vcpu blocked on its ioreq. The port
  number is what the ioreq's ``vp_eport`` carries.
* **Dom0 processes.** qemu-dm binds an interdomain channel to each of those
  ports (``EVTCHNOP_bind_interdomain``), and xend binds ``VIRQ_DOM_EXC``.
  Their ports are ordinary 2-level ports of dom0: a send sets the port's
  pending bit by the rule of ``event_2l.c`` and the process finds it pending.

The 2-level rule, ``evtchn_2l_set_pending``: test-and-set the port's pending
bit; if it was already set, nothing more happens (events coalesce). Otherwise,
if the port is not masked and test-and-set of the vcpu's selector bit
(``port / BITS_PER_WORD``) finds it clear, set ``evtchn_upcall_pending``; if
that too was clear, the vcpu is kicked.

The unmask rule, ``evtchn_2l_unmask``: test-and-clear the mask bit; if it was
set and the port is pending and test-and-set of the selector bit finds it
clear, set ``evtchn_upcall_pending``: an event that arrived while the port
was masked is delivered when it is unmasked, never lost.

The domain's bits are kept whole (:class:`PortBits`: a pending and a mask
bit per port, the selector word, the upcall), and every per-port operation
is one call of :func:`port_rule`, which finds the port's selector word and
bit, runs the rule on that word and writes it back; :mod:`proofs.evtchn`
runs that same function on Z3 words of two selector words (``evtchn.2l``).

The table is written the same way, over the bit-vector domain: a port is a
:class:`Channel` (``struct evtchn``: state, remote domain and port, VIRQ,
``consumer_is_xen``), a domain a :class:`Domain` (its id, whether it exists,
its size and its table), and every operation one function of the whole
:data:`World`: :func:`alloc_rule` (``get_free_port``: the lowest free port;
port 0 is reserved), :func:`alloc_unbound_rule`, :func:`bind_interdomain_rule`,
:func:`bind_virq_rule`, :func:`close_rule`, :func:`remove_rule`
(``evtchn_destroy``) and :func:`send_target` (``evtchn_send``: who gets the
event). :class:`EventChannels` builds the world from its domains, runs the
rule and keeps what it gives, and :mod:`proofs.evtchn` runs the same rules on
Z3 terms of three domains (``evtchn.table``).

Bad calls fail with the error Xen returns (``xen/common/event_channel.c``):
``EINVAL`` for a port number the domain does not have, for closing a free
port, for sending on a port that is neither interdomain nor unbound, for
binding to a remote port that is not unbound for the caller and for a VIRQ
number out of range; ``EEXIST`` for binding a VIRQ twice; ``ESRCH`` for a
domain that does not exist. A send on an *unbound* port is silently dropped,
as in Xen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from spec import bv, trace

BITS_PER_WORD = 64
MAX_PORTS = BITS_PER_WORD * BITS_PER_WORD   # 2-level ABI: BITS_PER_WORD^2

VIRQ_DOM_EXC = 3    # public/xen.h: "(DOM0) Exceptional event for some domain"
NR_VIRQS = 24       # public/xen.h


# --- the 2-level rules, over the bit-vector domain ----------------------------------------

class SelectorWord(NamedTuple):
    """The shared-info bits that one selector word governs: the ports'
    ``pending`` and ``mask`` bits (a word of them), the word's bit in the
    vcpu's ``evtchn_pending_sel``, and ``evtchn_upcall_pending``.
    :mod:`proofs.evtchn` runs these same functions on Z3 terms."""

    pending: bv.Word
    mask: bv.Word
    sel: bv.Bit
    upcall: bv.Bit


def set_pending_2l(w: SelectorWord, bit: bv.Word, width: int) -> SelectorWord:
    """``evtchn_2l_set_pending`` for the port whose one-hot bit is ``bit``."""
    was_pending = bv.ne(bv.band(w.pending, bit, width), 0)
    unmasked = bv.is_zero(bv.band(w.mask, bit, width), width)
    fresh = bv.and_(bv.not_(was_pending), unmasked)
    return SelectorWord(bv.bor(w.pending, bit, width), w.mask,
                        bv.or_(w.sel, fresh),
                        bv.or_(w.upcall, bv.and_(fresh, bv.not_(w.sel))))


def unmask_2l(w: SelectorWord, bit: bv.Word, width: int) -> SelectorWord:
    """``evtchn_2l_unmask``: clear the mask bit; a port that was masked and is
    pending sets the selector bit and, if that was clear, the upcall."""
    was_masked = bv.ne(bv.band(w.mask, bit, width), 0)
    pending = bv.ne(bv.band(w.pending, bit, width), 0)
    deliver = bv.and_(was_masked, pending)
    return SelectorWord(w.pending, bv.band(w.mask, bv.bnot(bit, width), width),
                        bv.or_(w.sel, deliver),
                        bv.or_(w.upcall, bv.and_(deliver, bv.not_(w.sel))))


def mask_2l(w: SelectorWord, bit: bv.Word, width: int) -> SelectorWord:
    """Set a port's mask bit."""
    return w._replace(mask=bv.bor(w.mask, bit, width))


def take_2l(w: SelectorWord, bit: bv.Word, width: int) -> SelectorWord:
    """The consumer (dom0's evtchn driver, or a guest's upcall handler)
    clears the port's pending bit; a word with nothing left pending clears
    its selector bit, and with it the upcall of this word (whether the
    vcpu's upcall stays raised for its other words is :func:`port_rule`'s)."""
    pending = bv.band(w.pending, bv.bnot(bit, width), width)
    sel = bv.and_(w.sel, bv.ne(pending, 0))
    return SelectorWord(pending, w.mask, sel, bv.and_(w.upcall, sel))


class PortBits(NamedTuple):
    """All of a domain's 2-level bits in shared info: ``pending`` and ``mask``
    are words of one bit per port (``ports`` bits: selector word *i* is bits
    ``64i`` .. ``64i + 63``), ``sel`` is the vcpu's ``evtchn_pending_sel``
    (a word of :data:`BITS_PER_WORD` bits, bit *i* for word *i*) and
    ``upcall`` its ``evtchn_upcall_pending``. The engine keeps one per
    domain, of :data:`MAX_PORTS` ports; :mod:`proofs.evtchn` runs
    :func:`port_rule` on Z3 words of fewer."""

    pending: bv.Word
    mask: bv.Word
    sel: bv.Word
    upcall: bv.Bit


NO_EVENTS = PortBits(0, 0, 0, False)
WORD_SHIFT = BITS_PER_WORD.bit_length() - 1        # port >> 6: its selector word


def port_rule(state: PortBits, port: bv.Word, rule, ports: int = MAX_PORTS) -> PortBits:
    """Run a 2-level ``rule`` (:func:`set_pending_2l`, :func:`mask_2l`,
    :func:`unmask_2l`, :func:`take_2l`) for ``port`` (a word of ``ports``
    bits) on the whole state: the port's selector word is word ``port >> 6``
    of the pending and mask bits, its bit ``port & 63`` of that word, its
    selector bit bit ``port >> 6`` of ``sel``; the rule's word is written
    back in place, the selector bit set or cleared as the rule leaves it.
    The upcall is the vcpu's, over all its words: the rule raises it, and a
    word that empties (:func:`take_2l`) clears it only if no other selector
    bit is still set. Every per-port operation of :class:`EventChannels` is
    this function, and :mod:`proofs.evtchn` checks it on Z3 words."""
    w = BITS_PER_WORD
    index = bv.lshr(port, WORD_SHIFT, ports)
    base = bv.shl(index, WORD_SHIFT, ports)
    bit = bv.shl(bv.const(1, w, port), bv.trunc(bv.band(port, w - 1, ports), w), w)
    sel_bit = bv.shl(bv.const(1, w, port), bv.trunc(index, w), w)
    before = SelectorWord(bv.trunc(bv.lshr(state.pending, base, ports), w),
                          bv.trunc(bv.lshr(state.mask, base, ports), w),
                          bv.ne(bv.band(state.sel, sel_bit, w), 0), state.upcall)
    after = rule(before, bit, w)
    keep = bv.bnot(bv.shl(bv.const(bv.mask(w), ports, port), base, ports), ports)

    def put(words: bv.Word, word: bv.Word) -> bv.Word:
        return bv.bor(bv.band(words, keep, ports), bv.shl(bv.zext(word, w, ports), base, ports),
                      ports)

    sel = bv.ite(after.sel, bv.bor(state.sel, sel_bit, w),
                 bv.band(state.sel, bv.bnot(sel_bit, w), w))
    upcall = bv.or_(after.upcall, bv.and_(state.upcall, bv.ne(sel, 0)))
    return PortBits(put(state.pending, after.pending), put(state.mask, after.mask), sel, upcall)


def is_pending(bits: PortBits, port: bv.Word, ports: int = MAX_PORTS) -> bv.Bit:
    """The port's bit in ``evtchn_pending``."""
    return bv.ne(bv.band(bv.lshr(bits.pending, port, ports), 1, ports), 0)


def is_masked(bits: PortBits, port: bv.Word, ports: int = MAX_PORTS) -> bv.Bit:
    """The port's bit in ``evtchn_mask``."""
    return bv.ne(bv.band(bv.lshr(bits.mask, port, ports), 1, ports), 0)


def take_pending_rule(bits: PortBits, port: bv.Word,
                      ports: int = MAX_PORTS) -> tuple[bv.Bit, PortBits]:
    """What the dom0 kernel's evtchn driver (and the VMM, for the interrupt
    port) does before handing a port on: if the port is pending, clear it
    (:func:`take_2l` through :func:`port_rule`); (whether it was, the bits
    after). A port that is not pending leaves every bit as it is."""
    was = is_pending(bits, port, ports)
    after = port_rule(bits, port, take_2l, ports)
    return was, PortBits(*(bv.ite(was, new, old) for new, old in zip(after, bits)))


def clear_port(bits: PortBits, port: bv.Word, ports: int = MAX_PORTS) -> PortBits:
    """A closed port starts again with its pending and mask bits clear (the
    selector word and the upcall are left as they are)."""
    keep = bv.bnot(bv.shl(bv.const(1, ports, port), port, ports), ports)
    return bits._replace(pending=bv.band(bits.pending, keep, ports),
                         mask=bv.band(bits.mask, keep, ports))


# --- the table, over the bit-vector domain ------------------------------------------------

#: ``struct evtchn``'s state (``xen/include/xen/sched.h``); ECS_PIRQ and
#: ECS_IPI are not used on the HVM path
ECS_FREE, ECS_RESERVED, ECS_UNBOUND, ECS_INTERDOMAIN, ECS_VIRQ = 0, 1, 2, 3, 5
STATE_NAMES = {ECS_FREE: "free", ECS_RESERVED: "reserved", ECS_UNBOUND: "unbound",
               ECS_INTERDOMAIN: "interdomain", ECS_VIRQ: "virq"}
#: widths of a channel's words: the state, a domid_t, a port (up to and
#: including MAX_PORTS, the port a full table would grow to), a VIRQ number
STATE_BITS, DOM_BITS, PORT_BITS, VIRQ_BITS = 3, 16, 13, 5


class Channel(NamedTuple):
    """``struct evtchn``: one port of one domain. ``remote_dom`` is the
    domain an unbound port may be bound from, or an interdomain port's
    peer domain, whose port is ``remote_port``; ``virq`` a VIRQ port's
    number; ``xen`` is ``consumer_is_xen``: Xen itself consumes
    notifications on the port."""

    state: bv.Word
    remote_dom: bv.Word
    remote_port: bv.Word
    virq: bv.Word
    xen: bv.Bit


#: a free port: Xen's buckets are zeroed when allocated (``get_free_port``)
FREE = Channel(ECS_FREE, 0, 0, 0, False)
#: port 0 of every domain (``evtchn_init``)
RESERVED = FREE._replace(state=ECS_RESERVED)


class Domain(NamedTuple):
    """One domain's event channels: its id, whether it exists, ``size``
    (the ports ``port_is_valid`` accepts: Xen allocates the table in
    buckets as ports are taken, here port by port) and the table, at
    least ``size`` ports long; ports from ``size`` on are free."""

    dom: bv.Word
    live: bv.Bit
    size: bv.Word
    table: tuple[Channel, ...]


World = tuple[Domain, ...]

#: what an operation gives back: 0, or the reason it was refused
OK, E_NO_DOMAIN, E_NO_REMOTE_DOMAIN, E_NO_PORT, E_NO_REMOTE_PORT = 0, 1, 2, 3, 4
E_FREE, E_NOT_UNBOUND, E_NOT_INTERDOMAIN, E_VIRQ_RANGE, E_VIRQ_BOUND, E_FULL = \
    5, 6, 7, 8, 9, 10
ERR_BITS = 4
#: each refusal's errno and message
ERRORS = {
    E_NO_DOMAIN: ("ESRCH", "no domain {dom}"),
    E_NO_REMOTE_DOMAIN: ("ESRCH", "no domain {remote_dom}"),
    E_NO_PORT: ("EINVAL", "dom{dom} has no port {port}"),
    E_NO_REMOTE_PORT: ("EINVAL", "dom{remote_dom} has no port {remote_port}"),
    E_FREE: ("EINVAL", "dom{dom} port {port} is already free"),
    E_NOT_UNBOUND: ("EINVAL", "dom{remote_dom} port {remote_port} is not unbound for dom{dom}"),
    E_NOT_INTERDOMAIN: ("EINVAL", "dom{dom} port {port} is {state}, not interdomain"),
    E_VIRQ_RANGE: ("EINVAL", "virq {virq} is out of range"),
    E_VIRQ_BOUND: ("EEXIST", "virq {virq} already bound in dom{dom}"),
    E_FULL: ("ENOSPC", "dom{dom} has no free port"),
}


def pick(cond: bv.Bit, a: Channel, b: Channel) -> Channel:
    """Channel ``a`` if ``cond`` holds, else ``b``."""
    return bv.select(cond, a, b)


def choose(cond: bv.Bit, a: World, b: World) -> World:
    """World ``a`` if ``cond`` holds, else ``b`` (the same domains)."""
    return bv.select(cond, a, b)


def _error(*checks: tuple[bv.Bit, int]) -> bv.Word:
    """The code of the first of ``checks`` (each: what must hold, and the
    code if it does not) that fails, or :data:`OK`."""
    err = OK
    for holds, code in reversed(checks):
        err = bv.ite(holds, err, bv.const(code, ERR_BITS, holds))
    return err


def exists(world: World, dom: bv.Word) -> bv.Bit:
    """``find_domain_by_id`` finds ``dom``."""
    return bv.or_(*(bv.and_(d.live, bv.eq(d.dom, dom)) for d in world))


def valid_port(world: World, dom: bv.Word, port: bv.Word) -> bv.Bit:
    """``port_is_valid``, port 0 excepted (it is reserved: every operation
    on it is refused)."""
    return bv.or_(*(bv.and_(d.live, bv.eq(d.dom, dom), bv.ult(0, port), bv.ult(port, d.size))
                    for d in world))


def channel_at(world: World, dom: bv.Word, port: bv.Word) -> Channel:
    """``evtchn_from_port``: the channel ``dom:port`` (free if the world
    has no such port)."""
    out = FREE
    for d in world:
        mine = bv.eq(d.dom, dom)
        for p, chan in enumerate(d.table):
            out = pick(bv.and_(mine, bv.eq(port, p)), chan, out)
    return out


def put(world: World, dom: bv.Word, port: bv.Word, chan: Channel) -> World:
    """``world`` with ``dom:port`` set to ``chan``; a port at or beyond the
    domain's size grows it to cover the port."""
    out = []
    for d in world:
        mine = bv.eq(d.dom, dom)
        table = tuple(pick(bv.and_(mine, bv.eq(port, p)), chan, old)
                      for p, old in enumerate(d.table))
        grown = bv.and_(mine, bv.not_(bv.ult(port, d.size)))
        out.append(d._replace(size=bv.ite(grown, bv.add(port, 1, PORT_BITS), d.size),
                              table=table))
    return tuple(out)


def free_port(table: tuple[Channel, ...]) -> bv.Word:
    """``get_free_port``: the lowest port whose state is free, searching
    from port 0 (never found: ``evtchn_init`` reserves it); ``len(table)``
    when none is."""
    like = table[0].state
    port = bv.const(len(table), PORT_BITS, like)
    for p, chan in reversed(list(enumerate(table))):
        port = bv.ite(bv.eq(chan.state, ECS_FREE), bv.const(p, PORT_BITS, like), port)
    return port


def alloc_rule(world: World, dom: bv.Word, chan: Channel,
               limit: int = MAX_PORTS) -> tuple[bv.Word, World, bv.Word]:
    """Take ``dom``'s lowest free port (:func:`free_port`) for ``chan``:
    (error, world, port). ``ESRCH`` for a domain that does not exist,
    ``ENOSPC`` when the free port would be ``limit`` or beyond (Xen's
    ``MAX_EVTCHNS``). A refused operation changes nothing."""
    port = bv.const(limit, PORT_BITS, dom)
    for d in world:
        port = bv.ite(bv.eq(d.dom, dom), free_port(d.table), port)
    err = _error((exists(world, dom), E_NO_DOMAIN), (bv.ult(port, limit), E_FULL))
    return err, choose(bv.eq(err, OK), put(world, dom, port, chan), world), port


def _refused(err: bv.Word, world: World, then: tuple) -> tuple:
    """``then`` (error, world, port), unless ``err`` refused the operation
    first: ``err`` then, and ``world`` unchanged."""
    first, after, port = then
    return bv.ite(bv.eq(err, OK), first, err), choose(bv.eq(err, OK), after, world), port


def alloc_unbound_rule(world: World, dom: bv.Word, remote_dom: bv.Word, xen: bv.Bit,
                       limit: int = MAX_PORTS) -> tuple[bv.Word, World, bv.Word]:
    """``evtchn_alloc_unbound`` (``EVTCHNOP_alloc_unbound``; ``xen``:
    ``alloc_unbound_xen_event_channel``): a port of ``dom`` that
    ``remote_dom`` may bind to. A guest's call is refused with ``ESRCH``
    if ``remote_dom`` does not exist; Xen's own call is not checked."""
    err = _error((bv.or_(xen, exists(world, remote_dom)), E_NO_REMOTE_DOMAIN))
    chan = FREE._replace(state=ECS_UNBOUND, remote_dom=remote_dom, xen=xen)
    return _refused(err, world, alloc_rule(world, dom, chan, limit))


def bind_interdomain_rule(world: World, dom: bv.Word, remote_dom: bv.Word,
                          remote_port: bv.Word,
                          limit: int = MAX_PORTS) -> tuple[bv.Word, World, bv.Word]:
    """``evtchn_bind_interdomain``: ``remote_dom:remote_port`` must be
    unbound for ``dom`` (``EINVAL`` otherwise, ``ESRCH`` for either domain
    missing); a new port of ``dom`` is connected to it, and it to that
    port: both become interdomain, each naming the other. The remote
    channel keeps its consumer (a Xen-consumed port stays Xen's). Unlike
    Xen 3.0.4 the new port is not marked pending at once (Xen does so in
    case notifications were lost on the unbound port; none are sent on
    the HVM path before the bind)."""
    remote = channel_at(world, remote_dom, remote_port)
    err = _error((exists(world, remote_dom), E_NO_REMOTE_DOMAIN),
                 (valid_port(world, remote_dom, remote_port), E_NO_REMOTE_PORT),
                 (bv.and_(bv.eq(remote.state, ECS_UNBOUND), bv.eq(remote.remote_dom, dom)),
                  E_NOT_UNBOUND))
    local = FREE._replace(state=ECS_INTERDOMAIN, remote_dom=remote_dom, remote_port=remote_port)
    first, after, port = alloc_rule(world, dom, local, limit)
    bound = remote._replace(state=ECS_INTERDOMAIN, remote_dom=dom, remote_port=port)
    after = put(after, remote_dom, remote_port, bound)
    err = bv.ite(bv.eq(err, OK), first, err)
    return err, choose(bv.eq(err, OK), after, world), port


def virq_port(world: World, dom: bv.Word, virq: bv.Word) -> bv.Word:
    """``virq_to_evtchn[virq]``: the port of ``dom`` bound to ``virq``, or
    0 (never a VIRQ's port) when there is none."""
    port = bv.const(0, PORT_BITS, virq)
    for d in world:
        for p, chan in enumerate(d.table):
            hit = bv.and_(d.live, bv.eq(d.dom, dom), bv.eq(chan.state, ECS_VIRQ),
                          bv.eq(chan.virq, virq))
            port = bv.ite(hit, bv.const(p, PORT_BITS, virq), port)
    return port


def bind_virq_rule(world: World, dom: bv.Word, virq: bv.Word,
                   limit: int = MAX_PORTS) -> tuple[bv.Word, World, bv.Word]:
    """``evtchn_bind_virq`` for vcpu 0: ``EINVAL`` for a VIRQ number that is
    not below ``NR_VIRQS``, ``ESRCH`` for no domain, ``EEXIST`` when the
    VIRQ is bound already (a VIRQ has one port), else a new port."""
    err = _error((bv.member(virq, tuple(range(NR_VIRQS))), E_VIRQ_RANGE),
                 (exists(world, dom), E_NO_DOMAIN),
                 (bv.eq(virq_port(world, dom, virq), 0), E_VIRQ_BOUND))
    chan = FREE._replace(state=ECS_VIRQ, virq=virq)
    return _refused(err, world, alloc_rule(world, dom, chan, limit))


def port_error(world: World, dom: bv.Word, port: bv.Word) -> bv.Word:
    """``ESRCH`` for no domain, ``EINVAL`` for a port it does not have."""
    return _error((exists(world, dom), E_NO_DOMAIN), (valid_port(world, dom, port), E_NO_PORT))


def _unbind(world: World, closer: bv.Word, chan: Channel) -> World:
    """The peer of ``closer``'s interdomain ``chan`` goes back to unbound,
    for ``closer`` (if the peer's domain still exists); it keeps its
    consumer (and, as in Xen, whose ``u.unbound`` overlays
    ``u.interdomain``, its old remote port, which an unbound port does not
    use)."""
    bound = bv.and_(bv.eq(chan.state, ECS_INTERDOMAIN), exists(world, chan.remote_dom))
    return tuple(d._replace(table=tuple(
        pick(bv.and_(bound, bv.eq(d.dom, chan.remote_dom), bv.eq(chan.remote_port, p)),
             c._replace(state=ECS_UNBOUND, remote_dom=closer), c)
        for p, c in enumerate(d.table))) for d in world)


def close_rule(world: World, dom: bv.Word, port: bv.Word) -> tuple[bv.Word, World]:
    """``__evtchn_close``: ``EINVAL`` for no such port or a free one;
    otherwise the port is free again and an interdomain peer is unbound,
    for this domain (``chn2->u.unbound.remote_domid = d1->domain_id``).
    Xen refuses to close a Xen-consumed port from the guest; no guest
    closes one on the HVM path."""
    chan = channel_at(world, dom, port)
    err = _error((exists(world, dom), E_NO_DOMAIN), (valid_port(world, dom, port), E_NO_PORT),
                 (bv.ne(chan.state, ECS_FREE), E_FREE))
    after = put(_unbind(world, dom, chan), dom, port, FREE)
    return err, choose(bv.eq(err, OK), after, world)


def remove_rule(world: World, dom: bv.Word) -> World:
    """``evtchn_destroy``: every port of the dying domain is closed, so each
    interdomain peer goes back to unbound, for the dead domain; then the
    domain is gone. The peers are the ports of the other domains that are
    bound to the dying one (bindings are symmetric: ``evtchn.table``)."""
    out = []
    for d in world:
        other = bv.and_(d.live, bv.ne(d.dom, dom))
        table = tuple(pick(bv.and_(other, bv.eq(c.state, ECS_INTERDOMAIN),
                                   bv.eq(c.remote_dom, dom)),
                           c._replace(state=ECS_UNBOUND), c) for c in d.table)
        out.append(d._replace(live=other, table=table))
    return tuple(out)


class SendTarget(NamedTuple):
    """What a send does: ``err`` (a refusal), ``deliver`` (the event goes
    to ``remote_dom:remote_port``; a send on an unbound port is dropped),
    ``xen`` (Xen consumes it there: no pending bit, Xen's handler is
    called), and the sending port's ``state``."""

    err: bv.Word
    deliver: bv.Bit
    remote_dom: bv.Word
    remote_port: bv.Word
    xen: bv.Bit
    state: bv.Word


def send_target(world: World, dom: bv.Word, port: bv.Word) -> SendTarget:
    """``evtchn_send``: ``EINVAL`` for no such port or one that is neither
    interdomain nor unbound; an unbound port drops the event; an
    interdomain port delivers it to its peer, whose ``consumer_is_xen``
    decides who takes it."""
    chan = channel_at(world, dom, port)
    err = _error((exists(world, dom), E_NO_DOMAIN), (valid_port(world, dom, port), E_NO_PORT),
                 (bv.member(chan.state, (ECS_UNBOUND, ECS_INTERDOMAIN)), E_NOT_INTERDOMAIN))
    peer = channel_at(world, chan.remote_dom, chan.remote_port)
    return SendTarget(err, bv.and_(bv.eq(err, OK), bv.eq(chan.state, ECS_INTERDOMAIN)),
                      chan.remote_dom, chan.remote_port, peer.xen, chan.state)


# --- the engine's event channels ----------------------------------------------------------

class EvtchnError(Exception):
    """A failed event-channel operation, carrying Xen's errno name."""

    def __init__(self, errno: str, message: str) -> None:
        super().__init__(f"{errno}: {message}")
        self.errno = errno


@dataclass
class DomainEvents:
    """A domain's event-channel table, its shared-info bits and the Xen
    handlers of its Xen-consumed ports."""

    dom: int
    channels: list[Channel] = field(default_factory=lambda: [RESERVED])
    #: the shared-info bits, changed only by :func:`port_rule` and :func:`clear_port`
    bits: PortBits = NO_EVENTS
    consumers: dict[int, Callable[[int], None]] = field(default_factory=dict)

    def apply(self, port: int, rule) -> None:
        """Run the 2-level ``rule`` for ``port`` (:func:`port_rule`)."""
        self.bits = port_rule(self.bits, port, rule)


class EventChannels:
    """Xen's event-channel subsystem: every domain's table. Each operation
    is one of the rules above on the whole :data:`World`, each table with
    one free port beyond its size (where the table would grow: at
    :data:`MAX_PORTS` the rule refuses it); what the rule refuses is raised
    as :class:`EvtchnError`."""

    def __init__(self, tracer: "trace_sink") -> None:
        self.domains: dict[int, DomainEvents] = {}
        self.trace = tracer

    def domain(self, dom: int) -> DomainEvents:
        if dom not in self.domains:
            raise EvtchnError("ESRCH", f"no domain {dom}")
        return self.domains[dom]

    def add_domain(self, dom: int) -> None:
        self.domains[dom] = DomainEvents(dom)

    def world(self) -> World:
        """Every domain's table, as the rules take it."""
        return tuple(Domain(e.dom, True, len(e.channels), tuple(e.channels) + (FREE,))
                     for e in self.domains.values())

    def _commit(self, world: World) -> None:
        for events, d in zip(self.domains.values(), world):
            events.channels = list(d.table[:d.size])

    @staticmethod
    def _check(err: int, **fields) -> None:
        if err:
            errno, message = ERRORS[err]
            raise EvtchnError(errno, message.format(**fields))

    def _alloc(self, result: tuple, **fields) -> int:
        err, world, port = result
        self._check(err, **fields)
        self._commit(world)
        return port

    def remove_domain(self, dom: int) -> None:
        """Close every port of a dying domain, as ``evtchn_destroy`` does."""
        world = remove_rule(self.world(), dom)
        self._commit(world)
        self.domains.pop(dom, None)

    def alloc_unbound_xen(self, dom: int, remote_dom: int,
                          consumer: Callable[[int], None]) -> int:
        """``alloc_unbound_xen_event_channel``: a port of ``dom``, consumed
        by Xen (``consumer`` is called on each notification), that
        ``remote_dom`` may bind to."""
        port = self._alloc(alloc_unbound_rule(self.world(), dom, remote_dom, True),
                           dom=dom, remote_dom=remote_dom)
        self.domains[dom].consumers[port] = consumer
        return port

    def alloc_unbound(self, dom: int, remote_dom: int) -> int:
        """``EVTCHNOP_alloc_unbound``: a port of ``dom`` that ``remote_dom``
        may later bind to."""
        return self._alloc(alloc_unbound_rule(self.world(), dom, remote_dom, False),
                           dom=dom, remote_dom=remote_dom)

    def bind_interdomain(self, dom: int, remote_dom: int, remote_port: int) -> int:
        """``EVTCHNOP_bind_interdomain``: connect a new port of ``dom`` to the
        unbound ``remote_dom:remote_port`` that was allocated for ``dom``."""
        port = self._alloc(bind_interdomain_rule(self.world(), dom, remote_dom, remote_port),
                           dom=dom, remote_dom=remote_dom, remote_port=remote_port)
        self.trace(trace.EvtchnBind(dom=dom, port=port, remote_dom=remote_dom,
                                    remote_port=remote_port))
        return port

    def bind_virq(self, dom: int, virq: int) -> int:
        """``EVTCHNOP_bind_virq`` for vcpu 0."""
        return self._alloc(bind_virq_rule(self.world(), dom, virq), dom=dom, virq=virq)

    def close(self, dom: int, port: int) -> None:
        """``EVTCHNOP_close``: free the port (its pending and mask bits
        cleared); an interdomain peer goes back to unbound, for this domain."""
        err, world = close_rule(self.world(), dom, port)
        self._check(err, dom=dom, port=port)
        self._commit(world)
        events = self.domains[dom]
        events.bits = clear_port(events.bits, port)

    def _valid(self, dom: int, port: int) -> DomainEvents:
        self._check(port_error(self.world(), dom, port), dom=dom, port=port)
        return self.domains[dom]

    def mask(self, dom: int, port: int) -> None:
        """Set the port's mask bit (the guest writes it in shared info)."""
        self._valid(dom, port).apply(port, mask_2l)

    def unmask(self, dom: int, port: int) -> None:
        """``EVTCHNOP_unmask`` (:func:`unmask_2l`)."""
        self._valid(dom, port).apply(port, unmask_2l)

    def send(self, dom: int, port: int) -> None:
        """``EVTCHNOP_send`` (and ``notify_via_xen_event_channel``), by
        :func:`send_target`: a Xen-consumed far end calls Xen's handler,
        any other gets its pending bit set."""
        target = send_target(self.world(), dom, port)
        self._check(target.err, dom=dom, port=port, state=STATE_NAMES.get(target.state))
        if not target.deliver:
            return
        self.trace(trace.EvtchnSend(dom=dom, port=port, remote_dom=target.remote_dom,
                                    remote_port=target.remote_port))
        remote = self.domains[target.remote_dom]
        if target.xen:
            remote.consumers[target.remote_port](target.remote_port)
        else:
            self.set_pending(remote, target.remote_port)

    def send_virq(self, dom: int, virq: int) -> None:
        """``send_guest_global_virq``: raise ``virq`` in ``dom`` if bound."""
        port = virq_port(self.world(), dom, virq)
        if port:
            self.set_pending(self.domains[dom], port)

    @staticmethod
    def set_pending(events: DomainEvents, port: int) -> None:
        """``evtchn_2l_set_pending`` (:func:`set_pending_2l`)."""
        events.apply(port, set_pending_2l)

    @staticmethod
    def take_pending(events: DomainEvents, port: int) -> bool:
        """Clear ``port``'s pending bit (:func:`take_pending_rule`); True if
        it was set."""
        was, events.bits = take_pending_rule(events.bits, port)
        return was


trace_sink = Callable[[trace.Event], None]
