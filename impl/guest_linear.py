"""Guest-linear addresses on impl's vcpu: segment bases and the page walk.

Room: how impl's vcpu turns the guest's addresses into guest-physical ones,
as the CPU does and as Xen does when it copies to or from the guest:
segment bases (real mode, the GDT descriptor CS was loaded from, FS and GS
bases in 64-bit mode), the guest's page tables (SDM vol. 3A chapter 4: the
32-bit, PAE and 4-level walks, with accessed and dirty bits set on the way)
and guest memory read and written by linear address. It is one part of
:class:`impl.vcpu.Vcpu` (:class:`GuestLinear`), reading the registers and
guest-physical RAM the vcpu owns. Imports Unicorn's register ids and
:mod:`impl.registers`; none of the reference's behaviour (the reference's
walk is :mod:`spec.paging`).
"""

from __future__ import annotations

from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uclib

from impl.registers import BASE_MSR, CR0, CR0_PG, EFER_LMA, RIP, SEG, WIDE


class LinearFault(Exception):
    """A linear address the guest's page tables do not map to RAM; ``pf``
    is (vector, error code, linear) when the page tables refuse it (#PF, or
    #GP for a non-canonical address), None when no RAM backs it."""

    def __init__(self, message: str, pf: tuple[int, int, int] | None = None) -> None:
        super().__init__(message)
        self.pf = pf


PAGE = 4096
#: per level: (index shift, index bits, whether the entry may map a large page)
_WALK_32BIT = ((22, 10, True), (12, 10, False))
_WALK_PAE = ((30, 2, False), (21, 9, True), (12, 9, False))
_WALK_4LEVEL = ((39, 9, False), (30, 9, True), (21, 9, True), (12, 9, False))


def pfns(gpa: int, length: int) -> range:
    """The page frames that ``[gpa, gpa + length)`` touches (at least one)."""
    return range(gpa >> 12, ((gpa + max(length, 1) - 1) >> 12) + 1)


class GuestLinear:
    """The vcpu's linear addresses: a part of :class:`impl.vcpu.Vcpu`, which
    provides the registers (``_reg``, ``_efer``, ``_handle`` and ``_mmr``), guest-physical
    RAM (``backed``, ``read``, ``write``) and the decode context
    (``_context``, :class:`impl.blocks.BlockAccounting`)."""

    def paging(self) -> bool:
        return bool(self._reg(CR0) & CR0_PG)

    def long_mode(self) -> bool:
        # EFER.LMA needs paging: the MSR is read only when CR0.PG is set
        return self.paging() and bool(self._efer() & EFER_LMA)

    def mode(self) -> int:
        """The code segment's size: 16, 32 or 64 (read when the decode
        context was last probed: the CPU, too, uses the descriptor it
        cached when CS was loaded)."""
        self._context()
        return self._cs_mode

    def linear_mask(self) -> int:
        return WIDE if self.mode() == 64 else 0xFFFFFFFF

    def selector(self, seg: str) -> int:
        """The selector (real mode: the segment) in segment register ``seg``."""
        return self._reg(SEG[seg])

    def seg_base(self, seg: str) -> int:
        if not self._reg(CR0) & 1:
            return self._reg(SEG[seg]) << 4
        if seg == "cs":
            self._context()
            return self._cs_base
        if self.long_mode() and self.mode() == 64:
            msr = BASE_MSR.get(seg)
            return self._reg(msr) if msr is not None else 0
        low, high = self._descriptor(seg)
        return (low >> 16) | (high & 0xFF) << 16 | (high & 0xFF000000)

    def _descriptor(self, seg: str) -> tuple[int, int]:
        raw = self._gdt(self._reg(SEG[seg]))
        return (0, 0) if raw is None else (raw & 0xFFFFFFFF, raw >> 32)

    def _gdt(self, selector: int) -> int | None:
        uclib.uc_reg_read(self._handle, X.UC_X86_REG_GDTR, self._mmr_ref)
        base, limit = self._mmr.base, self._mmr.limit
        offset = selector & 0xFFF8
        if selector & 4 or offset + 7 > limit:
            return None
        try:
            return int.from_bytes(self.lread(base + offset, 8), "little")
        except LinearFault:
            return None

    def ss_dpl(self) -> int:
        """The privilege level Xen reads from SS's descriptor (0 in real mode)."""
        if not self._reg(CR0) & 1:
            return 0
        return self._descriptor("ss")[1] >> 13 & 3

    def rip(self) -> int:
        """The linear address of the next instruction."""
        return self.seg_base("cs") + self._reg(RIP) & self.linear_mask()

    # --- linear addresses: the guest's page tables (SDM vol. 3A chapter 4) -------------

    def translate(self, linear: int, write: bool = False) -> int:
        """Guest-physical address of ``linear``; accessed and dirty bits are
        set on the way, as the CPU sets them. Raises :class:`LinearFault`."""
        if not self.paging():
            return linear & 0xFFFFFFFF
        return self._walk(linear, write)[0]

    def leaf_entry(self, linear: int) -> int:
        """The page-table entry that maps ``linear`` (a PTE, or the PDE or
        PDPTE of a large page), as :meth:`translate` finds it; paging is on."""
        return self._walk(linear, False)[1]

    def _walk(self, linear: int, write: bool) -> tuple[int, int]:
        """The page walk (SDM vol. 3A chapter 4): the guest-physical address
        of ``linear`` and the entry that maps it."""
        cr4, cr3 = self._reg(X.UC_X86_REG_CR4), self._reg(X.UC_X86_REG_CR3)
        if self.long_mode():
            if (linear >> 47) not in (0, (1 << 17) - 1):
                raise LinearFault(f"#GP at linear {linear:#x}: non-canonical address",
                                  (13, 0, linear))
            walk, table, entry_bytes = _WALK_4LEVEL, cr3 & 0xFFFFFFFFFF000, 8
        elif cr4 & 0x20:
            linear &= 0xFFFFFFFF
            walk, table, entry_bytes = _WALK_PAE, cr3 & 0xFFFFFFE0, 8
        else:
            linear &= 0xFFFFFFFF
            walk, table, entry_bytes = _WALK_32BIT, cr3 & 0xFFFFF000, 4
        wp = self._reg(CR0) >> 16 & 1
        for level, (shift, width, may_be_large) in enumerate(walk):
            slot = table + (linear >> shift & (1 << width) - 1) * entry_bytes
            if not self.backed(slot, entry_bytes):
                raise LinearFault(f"page-table entry at {slot:#x} is not RAM")
            entry = int.from_bytes(self.read(slot, entry_bytes), "little")
            is_pdpte = walk is _WALK_PAE and level == 0
            if not entry & 1:
                raise LinearFault(f"#PF at linear {linear:#x}: level {level + 1} entry at "
                                  f"{slot:#x} is not present", (14, write << 1, linear))
            if write and wp and not is_pdpte and not entry & 2:
                raise LinearFault(f"#PF at linear {linear:#x}: level {level + 1} entry at "
                                  f"{slot:#x} is read-only", (14, 3, linear))
            big = may_be_large and entry & 0x80 and (entry_bytes == 8 or cr4 & 0x10)
            leaf = big or level == len(walk) - 1
            if not is_pdpte:
                marked = entry | 0x20 | (0x40 if write and leaf else 0)
                if marked != entry:
                    self.write(slot, marked.to_bytes(entry_bytes, "little"))
            if leaf:
                span = (1 << shift) - 1
                base = entry & (0xFFC00000 if entry_bytes == 4 and big else
                                0xFFFFF000 if entry_bytes == 4 else 0xFFFFFFFFFF000)
                return (base & ~span) | (linear & span), entry
            table = entry & (0xFFFFF000 if entry_bytes == 4 else 0xFFFFFFFFFF000)
        raise AssertionError("the walk ends at a leaf")

    def _spans(self, linear: int, n: int, write: bool,
               translate=None) -> list[tuple[int, int]]:
        """``[linear, linear + n)`` as guest-physical spans of RAM, one per
        page, through :meth:`translate` (or ``translate(linear)``, another
        way to it); raises :class:`LinearFault`."""
        out = []
        while n:
            part = min(n, PAGE - linear % PAGE)
            gpa = self.translate(linear, write) if translate is None else translate(linear)
            if not self.backed(gpa, part):
                raise LinearFault(f"linear {linear:#x} is guest-physical {gpa:#x}, "
                                  f"which is not RAM")
            out.append((gpa, part))
            linear, n = linear + part, n - part
        return out

    def lread(self, linear: int, n: int) -> bytes:
        """Guest memory by linear address."""
        if not self.paging():
            linear &= 0xFFFFFFFF
            if not self.backed(linear, n):
                raise LinearFault(f"{linear:#x}+{n} is not RAM")
            return self.read(linear, n)
        return b"".join(self.read(g, k) for g, k in self._spans(linear, n, False))

    def lread_pages(self, linear: int, n: int) -> bytes:
        """As :meth:`lread`, page by page also without paging (Xen's
        ``copy_from_guest``); raises :class:`LinearFault`."""
        return b"".join(self.read(g, k) for g, k in self._spans(linear, n, False))

    def lwrite(self, linear: int, data: bytes) -> None:
        """Guest memory by linear address; nothing is written unless all of it can be."""
        at = 0
        for gpa, k in self._spans(linear, len(data), True):
            self.write(gpa, data[at:at + k])
            at += k

    def check(self, linear: int, n: int, write: bool) -> None:
        self._spans(linear, n, write)

    def code_at(self, linear: int) -> bytes:
        """Up to 15 bytes that RAM backs at ``linear`` (the instruction to
        emulate, or a diagnostic)."""
        try:
            return self.lread(linear, 15)      # the common case: all 15 are RAM
        except LinearFault:
            pass
        out = b""
        for i in range(15):
            try:
                out += self.lread(linear + i, 1)
            except LinearFault:
                break
        return out

    def _code(self, linear: int, n: int) -> bytes:
        return self.lread(linear, n) if self.paging() else self.read(linear, n)
