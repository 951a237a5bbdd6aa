"""Event channels: Xen's doorbells between domains, and from Xen itself.

Room: the per-domain event-channel table and the 2-level pending/mask bits,
as ``xen/common/event_channel.c`` and ``xen/common/event_2l.c`` keep them.
Imports :mod:`spec.trace` only.

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

ECS_FREE = "free"
ECS_UNBOUND = "unbound"
ECS_INTERDOMAIN = "interdomain"
ECS_VIRQ = "virq"

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


class EvtchnError(Exception):
    """A failed event-channel operation, carrying Xen's errno name."""

    def __init__(self, errno: str, message: str) -> None:
        super().__init__(f"{errno}: {message}")
        self.errno = errno


@dataclass
class Channel:
    """``struct evtchn``: one port of one domain."""

    state: str = ECS_FREE
    remote_dom: int = -1
    remote_port: int = -1
    virq: int = -1
    #: set when Xen consumes notifications on this port (xen_consumer)
    xen_consumer: Callable[[int], None] | None = None


@dataclass
class DomainEvents:
    """A domain's event-channel table and its shared-info bits."""

    dom: int
    channels: list[Channel] = field(default_factory=lambda: [Channel()])
    #: the shared-info bits, changed only by :func:`port_rule`
    bits: PortBits = NO_EVENTS

    @property
    def pending(self) -> set[int]:
        """The ports whose pending bit is set."""
        return _ports(self.bits.pending)

    @property
    def masked(self) -> set[int]:
        """The ports whose mask bit is set."""
        return _ports(self.bits.mask)

    @property
    def pending_sel(self) -> int:
        return self.bits.sel

    @property
    def upcall_pending(self) -> bool:
        return bool(self.bits.upcall)

    def apply(self, port: int, rule) -> None:
        """Run the 2-level ``rule`` for ``port`` (:func:`port_rule`)."""
        self.bits = port_rule(self.bits, port, rule)

    def get(self, port: int) -> Channel:
        if not 0 < port < len(self.channels):
            raise EvtchnError("EINVAL", f"dom{self.dom} has no port {port}")
        return self.channels[port]

    def alloc_port(self) -> int:
        """``get_free_port``: the lowest free port, port 0 being reserved."""
        for port, chan in enumerate(self.channels):
            if port and chan.state == ECS_FREE:
                return port
        if len(self.channels) >= MAX_PORTS:
            raise EvtchnError("ENOSPC", f"dom{self.dom} has no free port")
        self.channels.append(Channel())
        return len(self.channels) - 1


class EventChannels:
    """Xen's event-channel subsystem: every domain's table."""

    def __init__(self, tracer: "trace_sink") -> None:
        self.domains: dict[int, DomainEvents] = {}
        self.trace = tracer

    def domain(self, dom: int) -> DomainEvents:
        if dom not in self.domains:
            raise EvtchnError("ESRCH", f"no domain {dom}")
        return self.domains[dom]

    def add_domain(self, dom: int) -> None:
        self.domains[dom] = DomainEvents(dom)

    def remove_domain(self, dom: int) -> None:
        """Close every port of a dying domain, as ``evtchn_destroy`` does."""
        events = self.domains.pop(dom, None)
        if events is None:
            return
        for chan in events.channels:
            if chan.state == ECS_INTERDOMAIN and chan.remote_dom in self.domains:
                peer = self.domains[chan.remote_dom].channels[chan.remote_port]
                peer.state, peer.remote_dom, peer.remote_port = ECS_UNBOUND, dom, -1

    def alloc_unbound_xen(self, dom: int, remote_dom: int,
                          consumer: Callable[[int], None]) -> int:
        """``alloc_unbound_xen_event_channel``: a port of ``dom``, consumed
        by Xen, that ``remote_dom`` may bind to."""
        events = self.domain(dom)
        port = events.alloc_port()
        events.channels[port] = Channel(ECS_UNBOUND, remote_dom, -1, -1, consumer)
        return port

    def bind_interdomain(self, dom: int, remote_dom: int, remote_port: int) -> int:
        """``EVTCHNOP_bind_interdomain``: connect a new port of ``dom`` to the
        unbound ``remote_dom:remote_port`` that was allocated for ``dom``."""
        remote = self.domain(remote_dom).get(remote_port)
        if remote.state != ECS_UNBOUND or remote.remote_dom not in (dom, -1):
            raise EvtchnError("EINVAL",
                              f"dom{remote_dom} port {remote_port} is not unbound for dom{dom}")
        events = self.domain(dom)
        port = events.alloc_port()
        events.channels[port] = Channel(ECS_INTERDOMAIN, remote_dom, remote_port)
        remote.state, remote.remote_dom, remote.remote_port = ECS_INTERDOMAIN, dom, port
        self.trace(trace.EvtchnBind(dom=dom, port=port, remote_dom=remote_dom,
                                    remote_port=remote_port))
        return port

    def alloc_unbound(self, dom: int, remote_dom: int) -> int:
        """``EVTCHNOP_alloc_unbound``: a port of ``dom`` that ``remote_dom``
        may later bind to."""
        self.domain(remote_dom)
        events = self.domain(dom)
        port = events.alloc_port()
        events.channels[port] = Channel(ECS_UNBOUND, remote_dom, -1)
        return port

    def bind_virq(self, dom: int, virq: int) -> int:
        """``EVTCHNOP_bind_virq`` for vcpu 0."""
        if not 0 <= virq < NR_VIRQS:
            raise EvtchnError("EINVAL", f"virq {virq} is out of range")
        events = self.domain(dom)
        for port, chan in enumerate(events.channels):
            if chan.state == ECS_VIRQ and chan.virq == virq:
                raise EvtchnError("EEXIST", f"virq {virq} already bound in dom{dom}")
        port = events.alloc_port()
        events.channels[port] = Channel(ECS_VIRQ, virq=virq)
        return port

    def close(self, dom: int, port: int) -> None:
        """``EVTCHNOP_close``: free the port; an interdomain peer goes back to
        unbound (for this domain), as ``evtchn_close`` leaves it."""
        events = self.domain(dom)
        chan = events.get(port)
        if chan.state == ECS_FREE:
            raise EvtchnError("EINVAL", f"dom{dom} port {port} is already free")
        if chan.state == ECS_INTERDOMAIN and chan.remote_dom in self.domains:
            peer = self.domains[chan.remote_dom].channels[chan.remote_port]
            peer.state, peer.remote_dom, peer.remote_port = ECS_UNBOUND, dom, -1
        events.channels[port] = Channel()
        clear = ~(1 << port)
        events.bits = events.bits._replace(pending=events.bits.pending & clear,
                                           mask=events.bits.mask & clear)

    def mask(self, dom: int, port: int) -> None:
        """Set the port's mask bit (the guest writes it in shared info)."""
        events = self.domain(dom)
        events.get(port)
        events.apply(port, mask_2l)

    def unmask(self, dom: int, port: int) -> None:
        """``EVTCHNOP_unmask`` (:func:`unmask_2l`)."""
        events = self.domain(dom)
        events.get(port)
        events.apply(port, unmask_2l)

    def send(self, dom: int, port: int) -> None:
        """``EVTCHNOP_send`` (and ``notify_via_xen_event_channel``): notify the
        far end of an interdomain port; on an unbound port the event is
        dropped."""
        chan = self.domain(dom).get(port)
        if chan.state == ECS_UNBOUND:
            return
        if chan.state != ECS_INTERDOMAIN:
            raise EvtchnError("EINVAL", f"dom{dom} port {port} is {chan.state}, not interdomain")
        self.trace(trace.EvtchnSend(dom=dom, port=port, remote_dom=chan.remote_dom,
                                    remote_port=chan.remote_port))
        remote = self.domain(chan.remote_dom)
        rchan = remote.channels[chan.remote_port]
        if rchan.xen_consumer is not None:
            rchan.xen_consumer(chan.remote_port)
        else:
            self.set_pending(remote, chan.remote_port)

    def send_virq(self, dom: int, virq: int) -> None:
        """``send_guest_global_virq``: raise ``virq`` in ``dom`` if bound."""
        events = self.domains.get(dom)
        if events is None:
            return
        for port, chan in enumerate(events.channels):
            if chan.state == ECS_VIRQ and chan.virq == virq:
                self.set_pending(events, port)

    @staticmethod
    def set_pending(events: DomainEvents, port: int) -> None:
        """``evtchn_2l_set_pending`` (:func:`set_pending_2l`)."""
        events.apply(port, set_pending_2l)

    @staticmethod
    def take_pending(events: DomainEvents, port: int) -> bool:
        """Clear ``port``'s pending bit (what the dom0 kernel's evtchn driver
        does before handing the port to the process, :func:`take_2l`); True
        if it was set."""
        if not events.bits.pending >> port & 1:
            return False
        events.apply(port, take_2l)
        return True


def _ports(word: int) -> set[int]:
    return {p for p in range(word.bit_length()) if word >> p & 1}


trace_sink = Callable[[trace.Event], None]
