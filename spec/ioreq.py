"""ioreqs: how the VMM asks the device model to perform a device access.

Room: the ioreq structure, the shared ioreq page, and the state machine of an
ioreq slot, with the steps each party may take. Imports :mod:`spec.bv` and :mod:`spec.trace`.
Source: ``xen/include/public/hvm/ioreq.h`` and ``xen/common/ioreq.c``.

The structure
-------------

One ``struct ioreq`` of 32 bytes per vcpu lives in the *shared ioreq page*, a
page of guest-owned memory that Xen and qemu-dm both map; the slot of vcpu
*n* is at byte ``32 * n``::

    offset  field        width
    0       addr         u64   port number (PIO) or guest-physical address (COPY)
    8       data         u64   the datum, or the guest-physical address of the
                               data when data_is_ptr
    16      count        u32   number of repetitions (string forms)
    20      size         u32   bytes per repetition: 1, 2, 4 or 8
    24      vp_eport     u32   event channel for notifications to/from the DM
    28      pad          u16
    30      state:4 | data_is_ptr:1 | dir:1 | df:1 | pad:1
    31      type         u8    IOREQ_TYPE_*

``dir`` is 1 for a read (``IOREQ_READ``: the device produces data) and 0 for a
write. ``df`` is the direction flag of a string form: when set, repetition *i*
uses address ``data - i*size``.

The state machine
-----------------

A slot moves through four states, in this order only::

    NONE --(VMM sends)--> READY --(DM accepts)--> INPROCESS
         --(DM responds)--> IORESP_READY --(VMM completes)--> NONE

The VMM sends only into a slot in ``NONE`` (so at most one ioreq per vcpu is
in flight), and the vcpu it sends for stays blocked until the VMM sees
``IORESP_READY``. Because the page is shared with a less trusted device
model, the VMM does not believe the state blindly: on wake-up it completes on
``IORESP_READY``, keeps waiting on ``READY`` or ``INPROCESS``, and crashes the
domain on anything else (a state that went backwards, or an unknown value),
as ``xen/common/ioreq.c``'s ``wait_for_io`` does.

Each step below is a function over the bit-vector domain of :mod:`spec.bv`:
the reference model calls it with ints, :mod:`proofs.ioreq` with Z3 terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from spec import bv, trace

# --- constants of public/hvm/ioreq.h --------------------------------------------

STATE_IOREQ_NONE = 0
STATE_IOREQ_READY = 1
STATE_IOREQ_INPROCESS = 2
STATE_IORESP_READY = 3
STATE_NAMES = {0: "NONE", 1: "READY", 2: "INPROCESS", 3: "IORESP_READY"}
STATE_BITS = 4

IOREQ_WRITE = 0
IOREQ_READ = 1
DIR_NAMES = {IOREQ_WRITE: "write", IOREQ_READ: "read"}

IOREQ_TYPE_PIO = 0
IOREQ_TYPE_COPY = 1
IOREQ_TYPE_PCI_CONFIG = 2
IOREQ_TYPE_TIMEOFFSET = 7
IOREQ_TYPE_INVALIDATE = 8
TYPE_NAMES = {0: "pio", 1: "copy", 2: "pci_config", 7: "timeoffset", 8: "invalidate"}

IOREQ_SIZE = 32

#: struct ioreq's whole-byte fields: (name, byte offset, bits)
WORD_FIELDS = (("addr", 0, 64), ("data", 8, 64), ("count", 16, 32), ("size", 20, 32),
               ("vp_eport", 24, 32))
#: the bitfields of byte 30, from its least significant bit, as GCC packs
#: them on x86: (name, first bit, bits)
FLAG_FIELDS = (("state", 0, STATE_BITS), ("data_is_ptr", 4, 1), ("dir", 5, 1), ("df", 6, 1))
FLAGS_OFFSET = 30
TYPE_OFFSET = 31


def state_name(state: int) -> str:
    """The header's name of a state value, or ``UNKNOWN(n)``."""
    return STATE_NAMES.get(state, f"UNKNOWN({state})")


@dataclass
class Ioreq:
    """The fields of one ``struct ioreq``.

    The fields hold words of :mod:`spec.bv`: ints in the running model, Z3
    terms in :mod:`proofs.ioreq`'s layout check, which runs the same
    :meth:`encode`, :meth:`decode` and :class:`SharedIopage` methods."""

    addr: int = 0
    data: int = 0
    count: int = 0
    size: int = 0
    vp_eport: int = 0
    state: int = STATE_IOREQ_NONE
    data_is_ptr: int = 0
    dir: int = IOREQ_WRITE
    df: int = 0
    type: int = IOREQ_TYPE_PIO

    def encode(self) -> list[bv.Word]:
        """The 32 bytes of the structure: each field little-endian at its
        offset, the bitfields packed into byte 30, the type in byte 31, the
        padding (bytes 28-29, bit 7 of byte 30) zero."""
        like = self.addr
        raw: list[bv.Word] = [bv.const(0, 8, like)] * IOREQ_SIZE
        for name, offset, bits in WORD_FIELDS:
            value = _fitting(self, name, bits)
            for i in range(bits // 8):
                raw[offset + i] = bv.extract(value, 8 * i + 7, 8 * i)
        flags = bv.const(0, 8, like)
        for name, first, bits in FLAG_FIELDS:
            field_value = bv.zext(bv.trunc(_fitting(self, name, bits), bits), bits, 8)
            flags = bv.bor(flags, bv.shl(field_value, first, 8), 8)
        raw[FLAGS_OFFSET] = flags
        raw[TYPE_OFFSET] = bv.trunc(_fitting(self, "type", 8), 8)
        return raw

    @classmethod
    def decode(cls, raw) -> "Ioreq":
        """The fields of 32 bytes (any sequence of byte words)."""
        fields = {}
        for name, offset, bits in WORD_FIELDS:
            value = bv.zext(raw[offset], 8, bits)
            for i in range(1, bits // 8):
                value = bv.bor(value, bv.shl(bv.zext(raw[offset + i], 8, bits), 8 * i, bits),
                               bits)
            fields[name] = value
        for name, first, bits in FLAG_FIELDS:
            fields[name] = bv.extract(raw[FLAGS_OFFSET], first + bits - 1, first)
        return cls(**fields, type=raw[TYPE_OFFSET])


class SharedIopage:
    """``struct shared_iopage``: one ioreq slot per vcpu in a 4 KiB page.

    Both the VMM and qemu-dm hold this same object, as both map the same
    page. The state byte is written separately from the other fields, after
    them when the VMM sends and before it when the VMM completes, which is the
    ordering that the barriers of ``ioreq.c`` guarantee.

    ``raw`` is the page's bytes: a ``bytearray`` in the running model, a
    list of Z3 bytes in :mod:`proofs.ioreq`'s layout check.
    """

    PAGE = 4096

    def __init__(self) -> None:
        self.raw = bytearray(self.PAGE)

    def read(self, vcpu: int) -> Ioreq:
        off = vcpu * IOREQ_SIZE
        return Ioreq.decode(self.raw[off:off + IOREQ_SIZE])

    def write_fields(self, vcpu: int, req: Ioreq) -> None:
        """Write every field except ``state``."""
        off = vcpu * IOREQ_SIZE
        keep = bv.band(self.raw[off + FLAGS_OFFSET], STATE_MASK, 8)
        packed = req.encode()
        packed[FLAGS_OFFSET] = bv.bor(bv.band(packed[FLAGS_OFFSET], ~STATE_MASK & 0xFF, 8),
                                      keep, 8)
        self.raw[off:off + IOREQ_SIZE] = _bytes_like(self.raw, packed)

    def state(self, vcpu: int) -> int:
        return bv.extract(self.raw[vcpu * IOREQ_SIZE + FLAGS_OFFSET], STATE_BITS - 1, 0)

    def set_state(self, vcpu: int, state: int) -> None:
        off = vcpu * IOREQ_SIZE + FLAGS_OFFSET
        self.raw[off] = bv.bor(bv.band(self.raw[off], ~STATE_MASK & 0xFF, 8),
                               bv.zext(bv.trunc(state, STATE_BITS), STATE_BITS, 8), 8)

    def set_data(self, vcpu: int, data: int) -> None:
        off = vcpu * IOREQ_SIZE + 8
        self.raw[off:off + 8] = _bytes_like(
            self.raw, Ioreq(data=bv.trunc(data, 64)).encode()[8:16])


STATE_MASK = (1 << STATE_BITS) - 1


def _fitting(req: Ioreq, name: str, bits: int) -> bv.Word:
    """A field's value, which must fit its width: an ioreq the VMM builds
    with a value too wide for the structure is an error, never cut short
    silently. (A symbolic field has its width by construction.)"""
    value = getattr(req, name)
    if not bv.is_symbolic(value) and not 0 <= value < 1 << bits:
        raise ValueError(f"ioreq field {name} = {value:#x} does not fit {bits} bits")
    return value


def _bytes_like(page, values: list) -> object:
    """``values`` in the form ``page`` stores them (bytes for a bytearray)."""
    return bytes(values) if isinstance(page, bytearray) else values


def transition_event(vcpu: int, by: str, old: int, new: int,
                     req: Ioreq) -> trace.IoreqTransition:
    """The trace event of a slot's state change, with the slot's contents."""
    return trace.IoreqTransition(
        vcpu=vcpu, by=by, old=state_name(old), new=state_name(new),
        type=TYPE_NAMES.get(req.type, str(req.type)), dir=DIR_NAMES[req.dir],
        addr=req.addr, size=req.size, count=req.count, df=req.df,
        data_is_ptr=req.data_is_ptr, data=req.data)


# --- the state machine, over the bit-vector domain ------------------------------

class Slot(NamedTuple):
    """What the VMM sees of one vcpu's ioreq slot.

    ``state`` is the slot's 4-bit state field in the shared page;
    ``waiting`` is the VMM's own record that the vcpu is blocked on this slot
    (Xen keeps it in the vcpu's ioreq bookkeeping, not in the shared page,
    where the device model could forge it).
    """

    state: bv.Word
    waiting: bv.Bit


class Step(NamedTuple):
    """A step of the VMM: whether it is enabled in the slot it was applied
    to, and the slot after it."""

    enabled: bv.Bit
    after: Slot


class DmStep(NamedTuple):
    """A step of the device model, which sees only the shared state field."""

    enabled: bv.Bit
    state: bv.Word


# Outcomes of the VMM's wait, xen/common/ioreq.c wait_for_io().
WAIT_COMPLETE = 0   # IORESP_READY: take the data, free the slot, resume the vcpu
WAIT_BLOCK = 1      # READY or INPROCESS: keep the vcpu blocked on the event channel
WAIT_CRASH = 2      # anything else: the state went backwards or is unknown
WAIT_NAMES = {WAIT_COMPLETE: "complete", WAIT_BLOCK: "block", WAIT_CRASH: "crash"}
WAIT_BITS = 2


def vmm_send(slot: Slot) -> Step:
    """The VMM sends an ioreq: allowed only into a free slot whose vcpu is not
    already waiting; it sets ``READY`` and blocks the vcpu."""
    enabled = bv.and_(bv.eq(slot.state, STATE_IOREQ_NONE), bv.not_(slot.waiting))
    return Step(enabled, Slot(_state(slot.state, STATE_IOREQ_READY), True))


def dm_accept(state: bv.Word) -> DmStep:
    """qemu-dm takes a ``READY`` request and marks it ``INPROCESS``."""
    return DmStep(bv.eq(state, STATE_IOREQ_READY), _state(state, STATE_IOREQ_INPROCESS))


def dm_respond(state: bv.Word) -> DmStep:
    """qemu-dm has performed an ``INPROCESS`` request, written its data, and
    marks it ``IORESP_READY``."""
    return DmStep(bv.eq(state, STATE_IOREQ_INPROCESS), _state(state, STATE_IORESP_READY))


def vmm_wait_outcome(state: bv.Word) -> bv.Word:
    """What the VMM does when its blocked vcpu is woken and it reads the
    slot's state (after a read barrier): complete on ``IORESP_READY``, keep
    waiting on ``READY``/``INPROCESS``, crash the domain otherwise."""
    return bv.ite(bv.eq(state, STATE_IORESP_READY), _wait(WAIT_COMPLETE, state),
                  bv.ite(bv.member(state, (STATE_IOREQ_READY, STATE_IOREQ_INPROCESS)),
                         _wait(WAIT_BLOCK, state), _wait(WAIT_CRASH, state)))


def vmm_complete(slot: Slot) -> Step:
    """The VMM completes the ioreq of its waiting vcpu: when the wait's
    outcome is *complete* it frees the slot (``NONE``) and the vcpu resumes."""
    outcome = vmm_wait_outcome(slot.state)
    enabled = bv.and_(slot.waiting, bv.eq(outcome, WAIT_COMPLETE))
    return Step(enabled, Slot(_state(slot.state, STATE_IOREQ_NONE), False))


def _state(like: bv.Word, value: int) -> bv.Word:
    """A state constant in the domain of ``like``."""
    return bv.const(value, STATE_BITS, like=like)


def _wait(value: int, like: bv.Word) -> bv.Word:
    """A wait outcome in the domain of ``like``."""
    return bv.const(value, WAIT_BITS, like=like)
