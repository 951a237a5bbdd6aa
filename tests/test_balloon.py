"""The guest gives memory back and takes it again: memory_op on the p2m, the
VMCALL exit, and the IOREQ_TYPE_INVALIDATE that makes qemu-dm drop its
mappings, on both engines."""

from __future__ import annotations

import struct

import pytest

from spec import ioreq, memory_op as mo, platform, trace
from spec.loader import load
from spec.qemu_dm import QemuDm
from tests.conftest import both, guest, run

MIB = 1 << 20


# --- the rules of memory_op, on a p2m of its own -----------------------------------------

class _Guest:
    """Guest memory for memory_op to read, and a p2m over 16 MiB of RAM."""

    def __init__(self) -> None:
        self.memory: dict[int, bytes] = {}
        self.unmapped: list[int] = []
        self.events: list = []
        self.p2m = mo.P2m(platform.ram_ranges(16 * MIB), self.unmapped.append,
                          lambda pfn: self.unmapped.remove(pfn), self.events.append)

    def read(self, linear: int, length: int) -> bytes | None:
        out = b""
        for a in range(linear, linear + length):
            page = self.memory.get(a & ~0xFFF)
            if page is None:
                return None
            out += page[a & 0xFFF:(a & 0xFFF) + 1]
        return out

    def put(self, linear: int, data: bytes) -> None:
        for i, byte in enumerate(data):
            a = linear + i
            page = bytearray(self.memory.get(a & ~0xFFF, bytes(4096)))
            page[a & 0xFFF] = byte
            self.memory[a & ~0xFFF] = bytes(page)

    def call(self, cmd: int, extents: list[int], order: int = 0, domid: int = mo.DOMID_SELF,
             bits: int = 32, nr: int | None = None, at: int = 0x8100) -> int:
        fmt, size, pfn_bytes = mo.LAYOUT[bits]
        self.put(at, b"".join(e.to_bytes(pfn_bytes, "little") for e in extents))
        self.put(0x8000, struct.pack(fmt, at, len(extents) if nr is None else nr, order,
                                     0, domid).ljust(size, b"\0"))
        return mo.memory_op(self.p2m, cmd, self.read, 0x8000, bits)


def test_decrease_removes_each_page_and_counts_extents():
    g = _Guest()
    assert g.call(mo.XENMEM_decrease_reservation, [0x200, 0x210], order=1) == 2
    assert g.unmapped == [0x200, 0x201, 0x210, 0x211]
    assert g.events == [trace.P2mUpdate("remove", 0x200000, 2),
                        trace.P2mUpdate("remove", 0x210000, 2)]
    assert g.p2m.tot_pages == g.p2m.max_pages - 4
    assert not g.p2m.backs(0x201000, 1) and g.p2m.backs(0x202000, 4096)
    assert g.p2m.frames(0x200000, 0x10000) == 2     # two pages of the bucket changed


def test_decrease_stops_at_a_page_that_is_not_present_ram():
    g = _Guest()
    g.call(mo.XENMEM_decrease_reservation, [0x301])
    # the second extent's second page (0x301) is already gone: 0x300 goes, the call stops
    assert g.call(mo.XENMEM_decrease_reservation, [0x200, 0x300], order=1) == 1
    assert g.events[-1] == trace.P2mUpdate("remove", 0x300000, 1)
    assert g.call(mo.XENMEM_decrease_reservation, [0xA0]) == 0          # the VGA hole
    assert g.call(mo.XENMEM_decrease_reservation, [16 * MIB >> 12]) == 0   # beyond RAM


@pytest.mark.parametrize("bits", [32, 64])
def test_the_structure_is_read_in_the_guests_layout(bits):
    g = _Guest()
    assert g.call(mo.XENMEM_decrease_reservation, [0x400, 0x500], bits=bits) == 2
    assert g.unmapped == [0x400, 0x500]


def test_calls_that_do_nothing():
    g = _Guest()
    dec = mo.XENMEM_decrease_reservation
    assert g.call(dec, [0x200], order=mo.MAX_ORDER + 1) == 0
    assert g.call(dec, [0x200], domid=1) == 0                   # not DOMID_SELF: no rights
    assert g.call(dec | 2 << mo.MEMOP_EXTENT_SHIFT, [0x200]) == 2   # continuation past the end
    assert g.call(3, [0x200]) == -mo.ENOSYS
    # the list's second entry is on a page the guest cannot read
    assert g.call(dec, [0x200], nr=3, at=0x9FFC) == 1
    assert mo.memory_op(g.p2m, dec, g.read, 0xFFFF000, 32) == -mo.EFAULT
    assert g.unmapped == [0x200]


def test_a_continuation_starts_at_its_extent():
    g = _Guest()
    assert g.call(mo.XENMEM_decrease_reservation | 1 << mo.MEMOP_EXTENT_SHIFT,
                  [0x200, 0x201, 0x202]) == 3
    assert g.unmapped == [0x201, 0x202]


def test_populate_only_within_the_allowance_and_only_where_memory_was_given_back():
    g = _Guest()
    pop = mo.XENMEM_populate_physmap
    g.call(mo.XENMEM_decrease_reservation, [0x200], order=2)
    assert g.call(pop, [0x200], order=mo.DOMU_MAX_ORDER + 1) == 0
    assert g.call(pop, [0x200], order=3) == 0          # 8 pages: more than the 4 given back
    assert g.call(pop, [0x100]) == 0                   # present already
    assert g.call(pop, [0x202, 0x200, 0x202]) == 2     # the third is present again
    assert g.unmapped == [0x201, 0x203]
    assert g.events[-2:] == [trace.P2mUpdate("populate", 0x202000, 1),
                             trace.P2mUpdate("populate", 0x200000, 1)]
    assert g.p2m.frames(0x200000, 0x4000) == 4         # generations stay changed


# --- the guest, on both engines -------------------------------------------------------------

@pytest.fixture(scope="module")
def balloon():
    return both(load("balloon"))


def test_the_guest_sees_the_hole_and_then_zeroed_frames(balloon):
    assert balloon.serial.splitlines() == [
        "balloon: a line from the bucket, old frames",
        "balloon: decrease_reservation of 16 pages at 2 MiB -> 16",
        "balloon: the first page given back reads ffffffff",
        "balloon: giving it back again -> 0",
        "balloon: populate_physmap of a page that is present -> 0",
        "balloon: hypercall 99 -> -38",
        "balloon: memory_op command 3 -> -38",
        "balloon: populate_physmap of 16 pages at 2 MiB -> 1",
        "balloon: the new frames read as zero for 65536 bytes",
        "balloon: a line from the bucket, new frames",
    ]
    assert balloon.exit["reason"] == "poweroff"


def test_each_hypercall_is_traced_with_its_result(balloon):
    calls = [e for e in balloon.trace if isinstance(e, trace.Hypercall)]
    assert [(e.number, e.name, e.args[0], e.result) for e in calls] == [
        (12, "memory_op", 1, 16), (12, "memory_op", 1, 0), (12, "memory_op", 6, 0),
        (99, "", 6, -38), (12, "memory_op", 3, -38), (12, "memory_op", 6, 1)]
    p2m = [(e.op, e.gpa, e.pages) for e in balloon.trace if isinstance(e, trace.P2mUpdate)]
    assert p2m == [("remove", 0x200000 + 0x1000 * i, 1) for i in range(16)] + \
        [("populate", 0x200000, 16)]


def test_every_decrease_is_followed_by_an_invalidate_before_the_guest_runs(balloon):
    events = balloon.trace
    decreases = [i for i, e in enumerate(events) if isinstance(e, trace.Hypercall)
                 and e.args[0] == mo.XENMEM_decrease_reservation]
    assert len(decreases) == 2
    for i in decreases:
        after = events[i + 1:]
        entry = next(k for k, e in enumerate(after) if isinstance(e, trace.VmEntry))
        steps = [(e.by, e.old, e.new) for e in after[:entry]
                 if isinstance(e, trace.IoreqTransition)]
        assert steps == [("vmm", "NONE", "READY"), ("qemu-dm", "READY", "INPROCESS"),
                         ("qemu-dm", "INPROCESS", "IORESP_READY"),
                         ("vmm", "IORESP_READY", "NONE")]
        sent = next(e for e in after if isinstance(e, trace.IoreqTransition))
        assert (sent.type, sent.size, sent.dir, sent.data) == ("invalidate", 4, "write",
                                                               (1 << 64) - 1)
        flush = next(e for e in after[:entry] if isinstance(e, trace.MapcacheInvalidate))
        assert (flush.first, flush.count) == (0, (16 * MIB) >> 16)   # every bucket
    other = [e for e in events if isinstance(e, trace.Hypercall)
             and e.args[0] != mo.XENMEM_decrease_reservation]
    assert other and all(
        not any(isinstance(x, trace.IoreqTransition) and x.type == "invalidate"
                for x in events[events.index(e) + 1:events.index(e) + 3]) for e in other)


def test_qemu_dm_maps_the_bucket_anew_after_the_invalidation(balloon):
    misses = [e.bucket for e in balloon.trace if isinstance(e, trace.MapcacheMiss)]
    assert misses == [0x200000, 0x200000]
    assert (balloon.mapcache["hits"], balloon.mapcache["invalidations"]) == (0, 2)
    assert balloon.devices["mmio_unclaimed_reads"] == 1       # the hole's read


def test_without_the_invalidation_qemu_dm_would_use_a_stale_window(monkeypatch):
    """The run-time form of ``mapcache.no_stale``: with qemu-dm ignoring the
    invalidation, its old window of the bucket would show frames the guest
    gave back, and the check refuses to use it."""
    real = QemuDm.perform

    def deaf(self, req):
        if req.type == ioreq.IOREQ_TYPE_INVALIDATE:
            return req.data
        return real(self, req)
    monkeypatch.setattr(QemuDm, "perform", deaf)
    with pytest.raises(AssertionError, match="bucket 0x20 has no current mapping"):
        run("reference", load("balloon"))


# --- hypercalls from real mode -----------------------------------------------------------------

REAL_MODE = """
    mov dword ptr es:[0x9000], 0x300000   ; extent list: in the page given back first
    mov dword ptr es:[0x9004], 2
    mov dword ptr es:[0x9008], 0
    mov dword ptr es:[0x900c], 0
    mov word ptr es:[0x9010], 0x7ff0
    mov dword ptr es:[0x300000], 0x300
    mov dword ptr es:[0x300004], 0x301
    mov eax, 12
    mov ebx, 1
    mov ecx, 0x9000
    vmcall                                ; 1: the list went with the first extent
    mov eax, 12
    mov ebx, 1
    mov ecx, 0xfffff000
    vmcall                                ; -EFAULT: no RAM there
    mov eax, 12
    mov ebx, 6
    mov ecx, 0x9000
    mov dword ptr es:[0x9000], 0x9100
    mov dword ptr es:[0x9004], 1
    mov dword ptr es:[0x9100], 0x300
    vmcall                                ; 1: the page is back
"""


def test_hypercalls_work_from_real_mode_with_the_32_bit_abi():
    r = both(guest("realmode-balloon", REAL_MODE))
    calls = [e for e in r.trace if isinstance(e, trace.Hypercall)]
    assert [(e.args[:2], e.result) for e in calls] == [
        ([1, 0x9000], 1), ([1, 0xFFFFF000], -mo.EFAULT), ([6, 0x9000], 1)]
    assert [e for e in r.trace if isinstance(e, trace.VmExit)
            and e.reason == "vmcall"][0].info == {}
    assert r.exit["reason"] == "poweroff"
