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

import time
from contextlib import ExitStack

from proofs.kinduction import Outcome, TransitionSystem, check, replaced, valid
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




# --- the layout of the shared page ---------------------------------------------------------
#
# Written here from public/hvm/ioreq.h, independently of spec.ioreq's tables:
#   struct ioreq { uint64_t addr; uint64_t data; uint32_t count; uint32_t size;
#                  uint32_t vp_eport; uint16_t _pad0; uint8_t state:4; uint8_t data_is_ptr:1;
#                  uint8_t dir:1; uint8_t df:1; uint8_t _pad1:1; uint8_t type; };
#   struct shared_iopage { struct ioreq vcpu_ioreq[1]; }  -- one per vcpu, 32 bytes apart
HEADER_BYTES = (("addr", 0, 8), ("data", 8, 8), ("count", 16, 4), ("size", 20, 4),
                ("vp_eport", 24, 4), ("type", 31, 1))
HEADER_BITS = (("state", 0, 4), ("data_is_ptr", 4, 1), ("dir", 5, 1), ("df", 6, 1))
HEADER_VALUES = {"STATE_IOREQ_NONE": 0, "STATE_IOREQ_READY": 1, "STATE_IOREQ_INPROCESS": 2,
                 "STATE_IORESP_READY": 3, "IOREQ_WRITE": 0, "IOREQ_READ": 1,
                 "IOREQ_TYPE_PIO": 0, "IOREQ_TYPE_COPY": 1, "IOREQ_TYPE_PCI_CONFIG": 2,
                 "IOREQ_TYPE_TIMEOFFSET": 7, "IOREQ_TYPE_INVALIDATE": 8, "IOREQ_SIZE": 32}
#: what a trace calls each value (the header's names, without their prefix)
HEADER_NAMES = {"state": {0: "NONE", 1: "READY", 2: "INPROCESS", 3: "IORESP_READY"},
                "type": {0: "pio", 1: "copy", 2: "pci_config", 7: "timeoffset",
                         8: "invalidate"},
                "dir": {0: "write", 1: "read"}}
WIDTH = {"addr": 64, "data": 64, "count": 32, "size": 32, "vp_eport": 32, "type": 8,
         "state": 4, "data_is_ptr": 1, "dir": 1, "df": 1}
SLOTS = 3
PAGE_BYTES = 4096


def _request(tag: str) -> ioreq.Ioreq:
    return ioreq.Ioreq(**{name: z3.BitVec(f"{name}.{tag}", bits) for name, bits in WIDTH.items()})


def _header_byte(req: ioreq.Ioreq, k: int) -> z3.BitVecRef:
    """Byte ``k`` of the structure as ioreq.h lays it out."""
    for name, offset, size in HEADER_BYTES:
        if offset <= k < offset + size:
            return z3.Extract(8 * (k - offset) + 7, 8 * (k - offset), getattr(req, name))
    if k == 30:
        byte = z3.BitVecVal(0, 8)
        for name, first, bits in HEADER_BITS:
            byte = byte | z3.ZeroExt(8 - bits, getattr(req, name)) << first
        return byte
    return z3.BitVecVal(0, 8)                 # _pad0


def _same_request(a: ioreq.Ioreq, b: ioreq.Ioreq, but: tuple[str, ...] = ()) -> z3.BoolRef:
    return z3.And(*[_word(getattr(a, n), WIDTH[n]) == _word(getattr(b, n), WIDTH[n])
                    for n in WIDTH if n not in but])


def _word(v, bits: int) -> z3.BitVecRef:
    return v if isinstance(v, z3.BitVecRef) else z3.BitVecVal(v, bits)


def _unchanged(before: list, after: list, except_at: set[int]) -> z3.BoolRef:
    return z3.And(*[_word(a, 8) == _word(b, 8) for k, (a, b) in enumerate(zip(before, after))
                    if k not in except_at])


def _same_size(before: list, after: list) -> z3.BoolRef:
    return z3.BoolVal(len(before) == len(after))


def _page(tag: str) -> ioreq.SharedIopage:
    page = ioreq.SharedIopage()
    page.raw = [z3.BitVec(f"page{k}.{tag}", 8) for k in range(SLOTS * 32)]
    return page


def _layout_obligations() -> list[tuple[str, z3.BoolRef]]:
    out: list[tuple[str, z3.BoolRef]] = []
    for name, value in HEADER_VALUES.items():
        out.append((f"{name} is {value} as in ioreq.h", z3.BoolVal(getattr(ioreq, name) == value)))
    names = [ioreq.state_name(v) == HEADER_NAMES["state"].get(v, f"UNKNOWN({v})")
             for v in range(16)]
    names += [ioreq.TYPE_NAMES.get(v) == HEADER_NAMES["type"].get(v) for v in range(256)]
    names += [ioreq.DIR_NAMES.get(v) == HEADER_NAMES["dir"].get(v) for v in range(2)]
    out.append(("a trace names each state, type and direction by its ioreq.h name",
                z3.BoolVal(all(names))))
    out.append(("the shared page is one 4 KiB page",
                z3.BoolVal(len(ioreq.SharedIopage().raw) == PAGE_BYTES)))
    out.append(("a zeroed slot is the default ioreq (what a fresh page holds)",
                _same_request(ioreq.Ioreq.decode([0] * 32), ioreq.Ioreq())))
    req = _request("r")
    raw = req.encode()
    out.append(("the structure is 32 bytes", z3.BoolVal(len(raw) == 32)))
    out += [(f"byte {k} of the structure is ioreq.h's", _word(raw[k], 8) == _header_byte(req, k))
            for k in range(32)]
    out.append(("decode(encode(r)) is r", _same_request(ioreq.Ioreq.decode(raw), req)))
    for v in range(SLOTS):
        slot = set(range(32 * v, 32 * v + 32))
        page = _page(f"w{v}")
        before, old_state = list(page.raw), _word(page.raw[32 * v + 30], 8)
        page.write_fields(v, req)
        out.append((f"write_fields({v}) writes slot {v}'s fields at 32*{v} and keeps its state",
                    z3.And(*[_word(page.raw[32 * v + k], 8) == z3.If(
                        z3.BoolVal(k == 30),
                        (_header_byte(req, 30) & 0xF0) | (old_state & 0x0F),
                        _header_byte(req, k)) for k in range(32)])))
        out.append((f"write_fields({v}) leaves the other slots", _unchanged(before, page.raw,
                                                                            slot)))
        out.append((f"write_fields({v}) keeps the page's size", _same_size(before, page.raw)))
        page = _page(f"s{v}")
        before, new = list(page.raw), z3.BitVec(f"new_state{v}", 4)
        page.set_state(v, new)
        out.append((f"set_state({v}) sets bits 0-3 of byte 30 and keeps bits 4-7",
                    _word(page.raw[32 * v + 30], 8) == (before[32 * v + 30] & 0xF0)
                    | z3.ZeroExt(4, new)))
        out.append((f"set_state({v}) leaves every other byte",
                    _unchanged(before, page.raw, {32 * v + 30})))
        out.append((f"set_state({v}) keeps the page's size", _same_size(before, page.raw)))
        out.append((f"state({v}) reads it back", _word(page.state(v), 4) == new))
        page = _page(f"d{v}")
        before, data = list(page.raw), z3.BitVec(f"new_data{v}", 64)
        page.set_data(v, data)
        out.append((f"set_data({v}) writes data at bytes 8-15 of slot {v}",
                    _word(page.read(v).data, 64) == data))
        out.append((f"set_data({v}) leaves every other byte",
                    _unchanged(before, page.raw, set(range(32 * v + 8, 32 * v + 16)))))
        out.append((f"set_data({v}) keeps the page's size", _same_size(before, page.raw)))
        out.append((f"read({v}) is the decoded slot",
                    _same_request(page.read(v), ioreq.Ioreq.decode(page.raw[32 * v:32 * v + 32]))))
    return out


def layout() -> Outcome:
    """ioreq.layout: the shared ioreq page is public/hvm/ioreq.h's, for any
    field values: the constants have the header's values, and a trace names
    each state, type and direction by the header's name; byte *k* of an
    encoded ioreq is the header's byte *k* (fields little-endian at their
    offsets, state/data_is_ptr/dir/df packed from bit 0 of byte 30, type in
    byte 31, padding zero); decoding an encoding gives the same ioreq; and
    for the slots of vcpus 0, 1 and 2 (32 bytes apart), in a page of
    4096 bytes whose zeroed slot is the default ioreq, ``write_fields``
    writes every field but the state and nothing else, ``set_state`` changes
    bits 0-3 of byte 30 only and ``state`` reads them back, ``set_data``
    changes bytes 8-15 only, ``read`` decodes the slot, and none of them
    changes the page's size."""
    started = time.perf_counter()
    outcome = Outcome("proved", 0.0, detail="valid")
    for what, claim in _layout_obligations():
        outcome = valid(claim, started, lambda m, what=what: [f"not so: {what}", _model_line(m)])
        if outcome.result == "unknown":
            outcome.detail = f"{what}: {outcome.detail}"
        if outcome.result != "proved":
            break
    return outcome


def _model_line(model: z3.ModelRef) -> str:
    shown = [f"{d.name()}={model[d]}" for d in sorted(model.decls(), key=lambda d: d.name())
             if not d.name().startswith("page")][:8]
    return "for " + (", ".join(shown) if shown else "any values")


_real_encode = ioreq.Ioreq.encode


def _set_state_whole_byte(self, vcpu, state):
    """set_state that stores the state as the whole byte 30, clearing
    data_is_ptr, dir and df of the request qemu-dm is to read."""
    self.raw[vcpu * ioreq.IOREQ_SIZE + 30] = bv.zext(state, ioreq.STATE_BITS, 8)


def _write_fields_with_state(self, vcpu, req):
    """write_fields that copies the whole structure, state included."""
    off = vcpu * ioreq.IOREQ_SIZE
    packed = req.encode()
    self.raw[off:off + ioreq.IOREQ_SIZE] = ioreq._bytes_like(self.raw, packed)


#: (mutant name, "attribute" of spec.ioreq replaced, replacement)
LAYOUT_MUTANTS = [
    ("dir_df_swapped", "FLAG_FIELDS",
     (("state", 0, 4), ("data_is_ptr", 4, 1), ("dir", 6, 1), ("df", 5, 1)),
     "The bitfield table with dir and df in each other's bit: qemu-dm reads a read as "
     "a write whenever df differs."),
    ("count_size_swapped", "WORD_FIELDS",
     (("addr", 0, 64), ("data", 8, 64), ("count", 20, 32), ("size", 16, 32),
      ("vp_eport", 24, 32)),
     "The field table with count and size at each other's offset."),
    ("set_state_whole_byte", "SharedIopage.set_state", _set_state_whole_byte),
    ("write_fields_with_state", "SharedIopage.write_fields", _write_fields_with_state),
]


def run_check(factory, mutant: tuple[str, str, object] | None = None) -> Outcome:
    with ExitStack() as stack:
        if mutant is not None:
            stack.enter_context(replaced(ioreq, mutant[1], mutant[2]))
        built = factory()
        return built if isinstance(built, Outcome) else check(built)


#: (check name, system factory, [(mutant name, spec function replaced, replacement)])
CHECKS = [
    ("ioreq.protocol", protocol_system,
     [("resume_on_inprocess", "vmm_wait_outcome", _resume_on_inprocess)]),
    ("ioreq.hostile_dm", hostile_system,
     [("trust_any_state", "vmm_wait_outcome", _trust_any_state),
      ("send_ignoring_waiting", "vmm_send", _send_ignoring_waiting)]),
    ("ioreq.layout", layout, LAYOUT_MUTANTS),
]
