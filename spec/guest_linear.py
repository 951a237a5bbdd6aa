"""Guest-linear addresses on the hardware vcpu: segments, and memory by linear address.

Room: how a linear address is formed and reached on
:class:`spec.vmx.HardwareVcpu`, as the CPU forms it and as Xen copies to
and from the guest (``hvm_copy_to/from_guest_linear``): the code
segment's size (16, 32 or 64 bits), segment bases (real mode, the GDT
descriptor, FS and GS bases in 64-bit mode), the walk of the guest's page
tables (whose rules are :mod:`spec.paging`'s), and guest memory read and
written by linear address, all of it RAM or nothing. It is one part of the
hardware vcpu (:class:`GuestLinear`), which provides the registers
(``reg``, ``efer``, ``uc``) and guest-physical memory (``is_ram``,
``read``, ``write``). Imports Unicorn's register ids, :mod:`spec.paging`,
:mod:`spec.physical_cpu` (the segment registers' ids) and
:mod:`spec.delivery` (an access that fails is the kind of failure its
delivery expects: :class:`spec.delivery.Unreachable`).
"""

from __future__ import annotations

from unicorn import x86_const as X

from spec import delivery, paging
from spec.physical_cpu import SEGMENT_REGS as _SEG_REGS

CR0_PE = 1 << 0


class GuestAccessError(delivery.Unreachable):
    """A linear access on the guest's behalf failed: a page fault or #GP of
    the walk (:mod:`spec.paging`, kept as ``page_fault``), or a
    guest-physical address no RAM backs (``page_fault`` None)."""


class GuestLinear:
    """Segments and linear addresses: a part of :class:`spec.vmx.HardwareVcpu`."""

    # --- segments -------------------------------------------------------------

    def long_mode(self) -> bool:
        """IA-32e mode is active (EFER.LMA, SDM vol. 3A, 2.2.1): 64-bit or
        compatibility mode, and 64-bit IDT gates."""
        return bool(self.efer() & paging.EFER_LMA)

    def mode(self) -> int:
        """The code segment's default operand and address size: 16 in real
        mode; in IA-32e mode 64 when the CS descriptor's L bit is set;
        otherwise the D bit of the CS descriptor (SDM vol. 3A, 3.4.5)."""
        if not self.reg("cr0") & CR0_PE:
            return 16
        high = self._descriptor("cs")[1]
        if high & (1 << 21) and self.long_mode():
            return 64
        return 32 if high & (1 << 22) else 16

    def address_mask(self) -> int:
        """Linear addresses wrap at 4 GiB outside 64-bit mode."""
        return 0xFFFF_FFFF_FFFF_FFFF if self.mode() == 64 else 0xFFFF_FFFF

    def segment_base(self, seg: str) -> int:
        """The base of a segment register: the selector times 16 in real
        mode (SDM vol. 3A, 20.1.1); in 64-bit mode 0, except FS and GS whose
        bases are MSRs (3.4.4); in protected mode the base in the selector's
        GDT descriptor, which the hardware cached when the selector was
        loaded (a GDT changed after loading is not modelled)."""
        if not self.reg("cr0") & CR0_PE:
            return self.uc.reg_read(_SEG_REGS[seg]) << 4
        if self.mode() == 64:
            if seg in ("fs", "gs"):
                return self.uc.reg_read(X.UC_X86_REG_FS_BASE if seg == "fs"
                                        else X.UC_X86_REG_GS_BASE)
            return 0
        low, high = self._descriptor(seg)
        return (low >> 16) | ((high & 0xFF) << 16) | (high & 0xFF000000)

    def _descriptor(self, seg: str) -> tuple[int, int]:
        """The two 32-bit words of a segment's GDT descriptor (LDT-based
        selectors are not modelled and read as a null descriptor)."""
        selector = self.uc.reg_read(_SEG_REGS[seg])
        raw = self._gdt_entry(selector)
        if raw is None:
            return 0, 0
        return int.from_bytes(raw[:4], "little"), int.from_bytes(raw[4:], "little")

    def _gdt_entry(self, selector: int) -> bytes | None:
        _sel, base, limit, _flags = self.uc.reg_read(X.UC_X86_REG_GDTR)
        index = selector & ~7
        if selector & 4 or index + 7 > limit:
            return None
        try:
            return self.read_linear(base + index, 8)
        except GuestAccessError:
            return None

    def ss_dpl(self) -> int:
        """The DPL of SS, which Xen takes as the guest's privilege level
        (0 in real mode)."""
        if not self.reg("cr0") & CR0_PE:
            return 0
        return (self._descriptor("ss")[1] >> 13) & 3

    def linear_rip(self) -> int:
        return (self.segment_base("cs") + self.reg("rip")) & self.address_mask()

    # --- linear addresses ---------------------------------------------------------

    def paging(self) -> paging.PagingState:
        return paging.PagingState(self.reg("cr0"), self.reg("cr3"), self.reg("cr4"),
                                  self.efer())

    def translate(self, linear: int, write: bool = False) -> int:
        """The guest-physical address of ``linear`` (:mod:`spec.paging`);
        raises :class:`GuestAccessError`."""
        def table(gpa: int, n: int) -> bytes:
            if not self.is_ram(gpa, n):
                raise GuestAccessError(f"page-table entry at {gpa:#x} is not RAM")
            return self.read(gpa, n)
        cr0 = self.reg("cr0")
        if not cr0 & paging.CR0_PG:
            return linear & 0xFFFF_FFFF         # paging off: linear is physical
        state = paging.PagingState(cr0, self.reg("cr3"), self.reg("cr4"), self.efer())
        try:
            return paging.translate(state, linear, write, table, self.write)
        except paging.PageFault as fault:
            raise GuestAccessError(str(fault), fault) from None

    def _pieces(self, linear: int, length: int, write: bool) -> list[tuple[int, int]]:
        """(gpa, length) of each page's part of a linear range, all RAM."""
        out, done = [], 0
        while done < length:
            at = linear + done
            n = min(length - done, paging.PAGE - at % paging.PAGE)
            gpa = self.translate(at, write)
            if not self.is_ram(gpa, n):
                raise GuestAccessError(f"linear {at:#x} is guest-physical {gpa:#x}, "
                                       f"which is not RAM")
            out.append((gpa, n))
            done += n
        return out

    def reachable(self, linear: int, length: int, write: bool = False) -> None:
        """Raise :class:`GuestAccessError` unless the whole range is RAM
        the guest's page tables reach."""
        self._pieces(linear, length, write)

    def read_linear(self, linear: int, length: int) -> bytes:
        """Guest memory by linear address, as Xen's ``hvm_copy_from_guest_linear``."""
        return b"".join(self.read(gpa, n) for gpa, n in self._pieces(linear, length, False))

    def write_linear(self, linear: int, data: bytes) -> None:
        """Guest memory by linear address, as Xen's ``hvm_copy_to_guest_linear``;
        nothing is written unless every page is reachable."""
        done = 0
        for gpa, n in self._pieces(linear, len(data), True):
            self.write(gpa, data[done:done + n])
            done += n

    def _code_bytes(self, linear: int, size: int) -> bytes:
        """The bytes of the instruction the CPU is about to execute."""
        if not self.reg("cr0") & paging.CR0_PG:
            return bytes(self.uc.mem_read(linear, size))
        return self.read_linear(linear, size)

    def read_code(self, rip: int) -> bytes:
        """Up to 15 bytes at linear ``rip`` that RAM backs (the instruction
        the VMM fetches to emulate, or shows in a diagnostic)."""
        out = b""
        for i in range(15):
            try:
                out += self.read_linear(rip + i, 1)
            except GuestAccessError:
                break
        return out
