"""Event delivery for the impl engine: IVT and IDT, stacks, #DF and triple faults.

Room: what the CPU does with an interrupt or exception and no VM exit (SDM
vol. 3A ch. 6, 20.1.4), on impl's own :class:`impl.vcpu.Vcpu`: it builds
the frame, switches stacks and loads CS:IP. Imports Unicorn's register ids,
:mod:`impl.guest_linear` (the fault of a linear access),
:mod:`spec.physical_cpu` (the shared hardware: segment loads) and
:mod:`spec.trace`; none of the reference's behaviour. The rules are the
reference's (:mod:`spec.delivery`); this is another piece of code for them,
table-driven where the reference reads as prose.
"""

from __future__ import annotations

from unicorn import x86_const as X

from impl.guest_linear import LinearFault
from spec import physical_cpu, trace

#: vectors with an error code, and the contributory ones (SDM tables 6-1, 6-4)
WITH_CODE = (1 << 8) | (1 << 10) | (1 << 11) | (1 << 12) | (1 << 13) | (1 << 14) | (1 << 17)
CONTRIB = (1 << 0) | (1 << 10) | (1 << 11) | (1 << 12) | (1 << 13)
#: sources whose faults carry EXT = 0 and whose gates are DPL-checked
_SOFT = ("software", "software_exception")
_TF_NT_RF_VM = 0x100 | 0x4000 | 0x10000 | 0x20000


class Refused(Exception):
    """The model does not deliver this (task gate, LDT, v86, memory that no
    RAM backs): the VMM crashes the domain with the message."""


class _Raise(Exception):
    """A fault while delivering: (vector, error code, cr2)."""

    def __init__(self, vector: int, code: int, cr2: int | None = None) -> None:
        super().__init__(vector, code)
        self.vector, self.code, self.cr2 = vector, code, cr2


def deliver(cpu, vector: int, source: str, ip: int, code: int | None = None,
            cr2: int | None = None, vcpu_id: int = 0) -> bool:
    """Deliver an event and what its faults become; trace each exception.
    True when delivered, False on a triple fault. ``ip`` is the CS-relative
    instruction pointer the frame saves."""
    linear_cs = cpu.seg_base("cs")
    mask = cpu.linear_mask()
    try:
        while True:
            if source != "external" and cpu.emit is not None:
                cpu.emit(trace.ExceptionDelivery(
                    vcpu=vcpu_id, vector=vector, source=source,
                    error_code=code if WITH_CODE >> vector & 1 else None,
                    cr2=cr2, rip=(linear_cs + ip) & mask, icount=cpu.icount))
            try:
                _once(cpu, vector, source, ip, code if WITH_CODE >> vector & 1 else None, cr2)
                return True
            except _Raise as second:
                if vector == 8 and source == "fault":
                    return False
                benign = source in ("external", "software") or not (CONTRIB >> vector & 1
                                                                    or vector == 14)
                double = not benign and (CONTRIB >> second.vector & 1 or
                                         (vector == 14 and second.vector == 14))
                if double:
                    if second.cr2 is not None:
                        cpu.uc.reg_write(X.UC_X86_REG_CR2, second.cr2)
                    vector, code, cr2 = 8, 0, None
                else:
                    vector, code, cr2 = second.vector, second.code, second.cr2
                source = "fault"
    finally:
        cpu.shadow = False
        cpu._stale = True


# --- memory, with #PF for what the page tables refuse ----------------------------------

def _read(cpu, linear: int, n: int) -> bytes:
    try:
        return cpu.lread_pages(linear, n)
    except LinearFault as exc:
        raise _as_fault(exc) from None


def _write(cpu, linear: int, data: bytes) -> None:
    try:
        cpu.lwrite(linear, data)
    except LinearFault as exc:
        raise _as_fault(exc) from None


def _probe(cpu, linear: int, n: int) -> None:
    """Raise what a write of ``n`` bytes at ``linear`` would, writing nothing."""
    try:
        cpu.check(linear, n, True)
    except LinearFault as exc:
        raise _as_fault(exc) from None


def _as_fault(exc) -> Exception:
    if exc.pf is None:
        return Refused(f"event delivery: {exc}")
    vector, error, linear = exc.pf
    return _Raise(vector, error, linear if vector == 14 else None)


def _desc(cpu, sel: int, vector: int, code: int) -> int:
    if sel & 4:
        raise Refused(f"selector {sel:#x} is in an LDT")
    _, base, limit, _ = cpu.uc.reg_read(X.UC_X86_REG_GDTR)
    if (sel | 7) > limit:
        raise _Raise(vector, code)
    return int.from_bytes(_read(cpu, base + (sel & 0xFFF8), 8), "little")


# --- one attempt -----------------------------------------------------------------------

def _once(cpu, vector: int, source: str, ip: int, code: int | None, cr2: int | None) -> None:
    if cr2 is not None:
        cpu.uc.reg_write(X.UC_X86_REG_CR2, cr2)
    cr0 = cpu.uc.reg_read(X.UC_X86_REG_CR0)
    ext = 0 if source in _SOFT else 1
    _, idt, idt_limit, _ = cpu.uc.reg_read(X.UC_X86_REG_IDTR)
    flags = cpu.get("rflags")
    cs = cpu.uc.reg_read(X.UC_X86_REG_CS)
    if not cr0 & 1:
        if vector * 4 + 3 > idt_limit:
            raise _Raise(13, vector * 8 + 2 + ext)
        target = int.from_bytes(_read(cpu, idt + vector * 4, 4), "little")
        ss_base = cpu.uc.reg_read(X.UC_X86_REG_SS) << 4
        rsp = cpu.get("rsp")
        sp = rsp & 0xFFFF
        for value in (flags, cs, ip):
            sp = sp - 2 & 0xFFFF
            _write(cpu, ss_base + sp, (value & 0xFFFF).to_bytes(2, "little"))
        cpu.put("rsp", rsp & ~0xFFFF | sp)
        cpu.put("rflags", flags & ~(0x200 | 0x100 | 0x40000 | 0x10000))
        physical_cpu.load_segment(cpu.uc, "cs", target >> 16)
        cpu.put("rip", target & 0xFFFF)
        return
    if flags & 0x20000:
        raise Refused("event delivery in virtual-8086 mode")
    wide = cpu.long_mode()
    size = 16 if wide else 8
    gate_code = vector * 8 + 2 + ext
    if vector * size + size - 1 > idt_limit:
        raise _Raise(13, gate_code)
    gate = int.from_bytes(_read(cpu, idt + vector * size, size), "little")
    kind = gate >> 40 & 0x1F
    if kind == 5 and not wide:
        raise Refused(f"IDT gate {vector:#x} is a task gate (task switches are not modelled)")
    if kind not in ((0xE, 0xF) if wide else (6, 7, 0xE, 0xF)):
        raise _Raise(13, gate_code)
    cpl = cs & 3
    if source in _SOFT and gate >> 45 & 3 < cpl:
        raise _Raise(13, vector * 8 + 2)
    if not gate >> 47 & 1:
        raise _Raise(11, gate_code)
    sel = gate >> 16 & 0xFFFF
    offset = gate & 0xFFFF | (gate >> 48 & 0xFFFF) << 16 | (gate >> 64 & 0xFFFFFFFF) << 32
    if not sel & 0xFFFC:
        raise _Raise(13, ext)
    sel_code = (sel & 0xFFFC) + ext
    d = _desc(cpu, sel, 13, sel_code)
    if d >> 43 & 3 != 3 or d >> 45 & 3 > cpl:        # S and code; DPL <= CPL
        raise _Raise(13, sel_code)
    if not d >> 47 & 1:
        raise _Raise(11, sel_code)
    if wide and d >> 53 & 3 != 1:                   # L = 1, D = 0
        raise _Raise(13, sel_code)
    new = cpl if d >> 42 & 1 else d >> 45 & 3
    image = flags | (0x10000 if source == "fault" and vector != 1 else 0)
    tr, tss, tss_limit, _ = cpu.uc.reg_read(X.UC_X86_REG_TR)

    def tss_field(offset_: int, n: int) -> int:
        if offset_ + n - 1 > tss_limit:
            raise _Raise(10, (tr & 0xFFFC) + ext)
        return int.from_bytes(_read(cpu, tss + offset_, n), "little")

    ss_sel, rsp = cpu.uc.reg_read(X.UC_X86_REG_SS), cpu.get("rsp")
    clear = _TF_NT_RF_VM | (0x200 if kind in (6, 0xE) else 0)
    if wide:
        ist = gate >> 32 & 7
        top = (tss_field(0x1C + 8 * ist, 8) if ist else
               tss_field(4 + 8 * new, 8) if new < cpl else rsp) & ~0xF
        words = [ss_sel, rsp, image, cs, ip] + ([code] if code is not None else [])
        frame = b"".join((w & (1 << 64) - 1).to_bytes(8, "little") for w in reversed(words))
        for slot in range(top - 8, top - 8 * len(words) - 1, -8):
            _probe(cpu, slot, 8)
        top -= 8 * len(words)
        _write(cpu, top, frame)
        cpu.put("rflags", flags & ~(clear & ~0x20000))
        _load(cpu, "cs", sel & ~3 | new, d)
        if new < cpl:
            try:
                physical_cpu.load_segment(cpu.uc, "ss", new, None)
            except physical_cpu.SegmentLoadRefused as exc:
                raise Refused(str(exc)) from None
        cpu.put("rsp", top)
        cpu.put("rip", offset)
        return
    unit = 4 if kind & 8 else 2
    words = [image, cs, ip] + ([code] if code is not None else [])
    if new < cpl:
        tss_d = _tss_kind(cpu, tr)
        if tss_d:
            esp, nss = tss_field(4 + 8 * new, 4), tss_field(8 + 8 * new, 2)
        else:
            esp, nss = tss_field(2 + 4 * new, 2), tss_field(4 + 4 * new, 2)
        if not nss & 0xFFFC:
            raise _Raise(10, ext)
        sd = _desc(cpu, nss, 10, (nss & 0xFFFC) + ext)
        if nss & 3 != new or sd >> 45 & 3 != new or sd >> 43 & 3 != 2 or not sd >> 41 & 1:
            raise _Raise(10, (nss & 0xFFFC) + ext)
        if not sd >> 47 & 1:
            raise _Raise(12, (nss & 0xFFFC) + ext)
        words = [ss_sel, rsp] + words
        big = bool(sd >> 54 & 1)
        base = (sd >> 16 & 0xFFFFFF) | (sd >> 56 & 0xFF) << 24
        sp = esp
    else:
        sd = None
        big = bool(cpu._descriptor("ss")[1] >> 22 & 1)
        base = cpu.seg_base("ss")
        sp = rsp
    smask = 0xFFFFFFFF if big else 0xFFFF
    slots = []
    for w in words:
        sp = sp - unit & smask
        slots.append((base + sp & 0xFFFFFFFF, (w & (1 << 8 * unit) - 1).to_bytes(unit, "little")))
    for at, data in slots:
        _probe(cpu, at, unit)
    for at, data in slots:
        _write(cpu, at, data)
    cpu.put("rflags", flags & ~clear)
    _load(cpu, "cs", sel & ~3 | new, d)
    if sd is not None:
        _load(cpu, "ss", nss, sd)
        cpu.put("rsp", sp)
    else:
        cpu.put("rsp", rsp & ~smask | sp)
    cpu.put("rip", offset & (0xFFFFFFFF if unit == 4 else 0xFFFF))


def _tss_kind(cpu, tr: int) -> bool:
    """True for a 32-bit TSS (system type 9 or 0xB), False for a 16-bit one."""
    _, base, limit, _ = cpu.uc.reg_read(X.UC_X86_REG_GDTR)
    if tr & 4 or (tr | 7) > limit:
        return True
    try:
        return bool(int.from_bytes(_read(cpu, base + (tr & 0xFFF8), 8), "little") >> 43 & 1)
    except (_Raise, Refused):
        return True


def _load(cpu, seg: str, sel: int, d: int) -> None:
    if seg == "cs" and sel == cpu.uc.reg_read(X.UC_X86_REG_CS) and (
            not cpu.long_mode() or cpu.mode() == 64):
        return                              # the same code segment stays loaded
    raw = d.to_bytes(8, "little")
    cpl = cpu.uc.reg_read(X.UC_X86_REG_CS) & 3
    try:
        after = physical_cpu.load_segment(cpu.uc, seg, sel, raw,
                                          sel & 3 if seg == "cs" and sel & 3 < cpl else None)
    except physical_cpu.SegmentLoadRefused as exc:
        raise Refused(str(exc)) from None
    if after is not None and after != raw:                  # the accessed bit
        _, base, _, _ = cpu.uc.reg_read(X.UC_X86_REG_GDTR)
        _write(cpu, base + (sel & 0xFFF8), after)
