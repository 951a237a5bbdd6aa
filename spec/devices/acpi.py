"""ACPI power management in qemu-dm (``hw/piix4acpi.c`` of Xen's qemu-dm).

Room: the PM1a event and control blocks and the PM timer, at Xen's
version-0 locations (:data:`spec.platform.ACPI_PM1A_EVT_BLK`) after reset,
and wherever the PIIX4 PM function's PMBA moves them later (a deliberate
difference from Xen 3.0.4: :mod:`spec.devices.pci`); the GPE0 block of
later qemu-dm, at Xen's version-1 location. Imports :mod:`spec.platform`.

==========  =====  ============================================
offset      width  register
==========  =====  ============================================
0           16     PM1a_STS (write 1 to clear)
2           16     PM1a_EN
4           16     PM1a_CNT: SCI_EN (bit 0), SLP_TYP (12:10), SLP_EN (13)
8           32     PM_TMR: 3.579545 MHz counter (read only)
==========  =====  ============================================

qemu-dm's PM_TMR is shadowed: Xen claims ports 0x1F48-0x1F4B (base + 8) first
(:mod:`spec.devices.pmtimer`), so no guest access reaches it; qemu-dm keeps
it, as Xen 3.0.4's ``piix4acpi.c`` did.

Writing PM1a_CNT with SLP_EN set and SLP_TYP = S5 is the guest's soft power
off: qemu-dm asks Xen to shut the domain down with reason *poweroff*
(``xc_domain_shutdown(..., SHUTDOWN_poweroff)``), which Xen signals to xend.
S5's SLP_TYP is :data:`spec.platform.SLP_TYP_S5` (7), the value the DSDT's
``\\_S5`` package gives an OS (:mod:`spec.acpi_tables`, as hvmloader's
``dsdt.asl``: "Poweroff support - ties in with qemu emulation").
SLP_EN itself always reads as 0. Other sleep types are accepted and
ignored (qemu-dm of that era implemented S3 only on request).

S5 is also SLP_TYP 0 (:data:`spec.platform.SLP_TYP_S5_PIIX4`), a
deliberate difference from Xen 3.0.4 that follows later qemu-dm (Xen
4.1's ``piix4acpi.c`` powers off on ``SLP_TYP_S5_V0`` 7 and
``SLP_TYP_S5_V1`` 0): Debian's rombios32 and SeaBIOS build a DSDT whose
``\\_S5`` is 0, PIIX4's soft-off as QEMU implements it, and an OS that
powered off by it on Xen 3.0.4 stopped at "Power down" and never left.

SCI_EN reads 1 from reset, as Xen 3.0.4's ``acpi_reset`` set it: the
platform is always in ACPI mode. That matters to firmware whose own FADT
names an SMI command port (Debian's rombios32 and SeaBIOS name 0xB2, with
ACPI_ENABLE 0xF1, for QEMU's PIIX4, whose APM port sets SCI_EN): Xen's
platform has no such port, and an OS that wrote ACPI_ENABLE there and
found SCI_EN clear would poll it for three seconds and then run without
ACPI (Linux: "Hardware did not enter ACPI mode"), powering off by no
means at all. QEMU's PIIX4 resets it to 0 and sets it on that write.

**The GPE0 block** (:class:`Gpe0Block`) is a deliberate difference from
Xen 3.0.4, whose qemu-dm had none: it follows later qemu-dm
(qemu-xen-traditional's ``gpe_acpi_init``), at the place Xen's public
``ioreq.h`` gives it in "Version 1: Locations preferred by modern Qemu"
(:data:`spec.platform.ACPI_GPE0_BLK`, 0xAFE0, 4 bytes), which is also QEMU's
PIIX4's:

==========  =====  ============================================
offset      width  register
==========  =====  ============================================
0           16     GPE0_STS (write 1 to clear)
2           16     GPE0_EN (kept as written)
==========  =====  ============================================

Both read 0 from reset, and no device of this platform ever sets a status
bit (later qemu-dm set bit 3 for a PCI hot-plug of a passed-through device,
which this platform has not), so the block raises no SCI. It is there
because firmware names it: the FADTs that Debian's rombios32 and SeaBIOS
build say GPE0_BLK = 0xAFE0, and SeaBIOS's DSDT has GPE handlers for QEMU's
PCI hot-plug (``_E01``: read the slots plugged and unplugged at 0xAE00 and
0xAE04, ask the OS to eject the latter) and CPU hot-plug (``_E02``). With
nobody at 0xAFE0, qemu-dm's all-ones answer says every GPE is pending; when
Linux enables its GPEs it runs ``_E01``, which reads all ones at 0xAE04 as
well, and Linux ejects every PCI slot: the IDE controller is gone before
``ata_piix`` loads, and there is no CD (measured with Debian's SeaBIOS and
Linux 6.1 on both engines). The hot-plug registers themselves stay
unclaimed: with GPE0_STS at 0 nothing reads them.
"""

from __future__ import annotations

from typing import Callable

from spec import platform

PM_TIMER_HZ = 3_579_545


class AcpiPm:
    """PM1a blocks and PM timer of one domain."""

    sizes = (1, 2, 4)

    def __init__(self, request_shutdown: Callable[[int], None],
                 clock_ns: Callable[[], int]) -> None:
        self.name = "acpi_pm"
        self.request_shutdown = request_shutdown
        self.clock_ns = clock_ns
        self.sts = self.en = 0
        #: SCI_EN is set from reset (``acpi_reset``: ``s->pm1_control =
        #: SCI_EN``): the platform is in ACPI mode, with no SMI command port
        #: to switch it (the FADT's SMI_CMD is 0 in hvmloader's tables)
        self.cnt = platform.PM1_CNT_SCI_EN

    def registers(self) -> bytes:
        timer = (self.clock_ns() * PM_TIMER_HZ // 1_000_000_000) & 0xFFFFFFFF
        return (self.sts.to_bytes(2, "little") + self.en.to_bytes(2, "little")
                + self.cnt.to_bytes(2, "little") + bytes(2) + timer.to_bytes(4, "little"))

    def io_read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.registers()[offset:offset + size].ljust(size, b"\xff"),
                              "little")

    def io_write(self, offset: int, size: int, value: int) -> None:
        for i in range(size):
            self._write_byte(offset + i, (value >> 8 * i) & 0xFF)
        if offset < 6 and offset + size > 4:
            self._control_written()

    def _write_byte(self, offset: int, byte: int) -> None:
        if offset in (0, 1):
            self.sts &= ~(byte << 8 * offset)
        elif offset in (2, 3):
            shift = 8 * (offset - 2)
            self.en = (self.en & ~(0xFF << shift)) | byte << shift
        elif offset in (4, 5):
            shift = 8 * (offset - 4)
            self.cnt = (self.cnt & ~(0xFF << shift)) | byte << shift

    def _control_written(self) -> None:
        if self.cnt & platform.PM1_CNT_SLP_EN:
            self.cnt &= ~platform.PM1_CNT_SLP_EN
            sleep_type = (self.cnt & platform.PM1_CNT_SLP_TYP_MASK) >> platform.PM1_CNT_SLP_TYP_SHIFT
            if sleep_type in platform.SLP_TYP_POWEROFF:
                self.request_shutdown(platform.SHUTDOWN_POWEROFF)


class Gpe0Block:
    """GPE0_STS and GPE0_EN of one domain, a byte each per half of the block
    (qemu-xen-traditional's ``gpe_sts_read``/``gpe_sts_write``/``gpe_en_read``/
    ``gpe_en_write``: byte-wide handlers, so wider accesses are split)."""

    sizes = (1,)

    def __init__(self) -> None:
        self.name = "acpi_gpe0"
        half = platform.ACPI_GPE0_BLK_LEN // 2
        self.sts = bytearray(half)
        self.en = bytearray(half)

    def io_read(self, offset: int, size: int) -> int:
        registers = bytes(self.sts) + bytes(self.en)
        return registers[offset]

    def io_write(self, offset: int, size: int, value: int) -> None:
        half = len(self.sts)
        if offset < half:
            self.sts[offset] &= ~value & 0xFF      # write 1 to clear
        else:
            self.en[offset - half] = value & 0xFF
