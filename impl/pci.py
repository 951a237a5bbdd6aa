"""PCI configuration mechanism #1 and PIIX3's reset control register for the
impl engine's qemu-dm.

Room: ports 0xCF8-0xCFF, bus 0's configuration spaces with their write
masks (the i440FX, PIIX3, its IDE function (BAR 4: where the bus-master
ports go) and its PIIX4 power-management function with the
reset bytes Xen 3.0.4's qemu-dm gave them; PAM, SMRAM and PIRQ routes
are stored only; PMBA with PMREGMISC bit 0 moves the PM block), and where
the test device's BAR0 puts its page and the VGA's BAR0
its linear frame buffer. Imports the platform
numbers of ``spec/``; the behaviour is the one :mod:`spec.devices.pci`
states.
"""

from __future__ import annotations

from typing import Callable

from spec import platform as P

IDE_BDF, IDE_BM_SIZE = P.PCI_BDF_IDE, P.IDE_BMDMA_SIZE


def _space(vendor_device, cls, rev=0, htype=0, bars=(), cmd=0, status=0, preset=None):
    """(config bytes, write mask, BAR sizes) of one type-0 function; ``preset``
    holds the other bytes qemu-dm sets at reset (offset: byte)."""
    cfg, mask = bytearray(256), bytearray(256)
    cfg[0:4] = (vendor_device[0] | vendor_device[1] << 16).to_bytes(4, "little")
    cfg[4:8] = (cmd | status << 16).to_bytes(4, "little")
    for at, byte in (preset or {}).items():
        cfg[at] = byte
    cfg[8:12] = (rev | cls << 8).to_bytes(4, "little")
    cfg[14] = htype
    mask[4], mask[5] = 0x47, 0x05
    mask[12] = mask[13] = mask[60] = 0xFF
    mask[64:256] = bytes([0xFF]) * 192
    sizes = []
    for n, (size, kind, addr) in enumerate(bars):
        at = 16 + 4 * n
        cfg[at:at + 4] = (addr | kind).to_bytes(4, "little")
        mask[at:at + 4] = (0xFFFFFFF0 & -size).to_bytes(4, "little")
        sizes.append(size)
    return cfg, mask, sizes


class Pci:
    name, sizes = "pci", (1, 2, 4)

    def __init__(self, moved: Callable[[int | None], None], reset: Callable[[], None],
                 vga_moved: Callable[[int | None], None] = lambda base: None,
                 vga_rom: bytes | None = None,
                 ide_moved: Callable[[int | None], None] = lambda base: None,
                 pm_moved: Callable[[int], bool] = lambda base: False) -> None:
        self.moved, self.reset, self.vga_moved = moved, reset, vga_moved
        self.pm_moved = pm_moved            # asked to move the PM block; True: it did
        self.pm_base = P.ACPI_PM1A_EVT_BLK
        self.ide_moved = ide_moved
        # the VGA's expansion ROM: padded to a power of two (at least 2 KiB)
        self.rom = b""
        if vga_rom:
            size = max(0x800, 1 << (len(vga_rom) - 1).bit_length())
            self.rom = bytes(vga_rom).ljust(size, b"\0")
        self.addr = 0
        self.rc = 0
        self.slots = {
            P.PCI_BDF_HOST_BRIDGE: _space(P.PCI_ID_HOST_BRIDGE, P.PCI_CLASS_HOST_BRIDGE,
                                          rev=P.PCI_REV_HOST_BRIDGE),
            P.PCI_BDF_ISA_BRIDGE: _space(P.PCI_ID_ISA_BRIDGE, P.PCI_CLASS_ISA_BRIDGE, htype=0x80,
                                         cmd=P.PIIX3_COMMAND, status=P.PIIX3_STATUS,
                                         preset=P.PIIX3_RESET),
            IDE_BDF: _space(P.PCI_ID_IDE, P.PCI_CLASS_IDE,
                            bars=((0, 0, 0),) * P.IDE_BMDMA_BAR + ((IDE_BM_SIZE, 1, 0),)),
            P.PCI_BDF_PM: _space(P.PCI_ID_PM, P.PCI_CLASS_PM, rev=P.PCI_REV_PM,
                                 preset=P.PM_RESET),
            P.PCI_BDF_VGA: _space(P.PCI_ID_VGA, P.PCI_CLASS_VGA,
                                  bars=((P.PCI_VGA_BAR_SIZES[0], 8, 0),)),
            P.PCI_BDF_TESTDEV: _space(P.PCI_ID_TESTDEV, P.PCI_CLASS_TESTDEV,
                                      bars=((P.TESTDEV_SIZE, 0, P.TESTDEV_BASE),), cmd=2),
        }
        if self.rom:
            self.slots[P.PCI_BDF_VGA][1][0x30:0x34] = (
                -len(self.rom) & 0xFFFFF800 | 1).to_bytes(4, "little")
        self.testdev_base = self._bar0_window()
        self.vga_base = None
        self.ide_bm_base: int | None = None
        self.rom_base: int | None = None

    def _selected(self):
        a = self.addr
        if a >> 31 == 0 or a & 0x00FF0000:
            return None
        return self.slots.get((a >> 11 & 31, a >> 8 & 7))

    def _bar0_window(self, bdf=P.PCI_BDF_TESTDEV) -> int | None:
        cfg, _, sizes = self.slots[bdf]
        if not cfg[4] & 2:
            return None
        base = int.from_bytes(cfg[16:20], "little") & -sizes[0] & 0xFFFFFFF0
        return base if base and base + sizes[0] <= 0xFFFFFFFF else None

    def _ide_window(self) -> int | None:
        """Where the IDE function's BAR 4 puts the bus-master ports: I/O
        decoding on, a base above 0, the 16 ports below 0x10000."""
        cfg = self.slots[IDE_BDF][0]
        if not cfg[4] & 1:
            return None
        at = 0x10 + 4 * P.IDE_BMDMA_BAR
        base = int.from_bytes(cfg[at:at + 4], "little") & 0xFFFFFFF0
        return base if base and base + IDE_BM_SIZE <= 0x10000 else None

    def read(self, offset: int, size: int) -> int:
        if offset >= 4:
            slot = self._selected()
            out = 0
            for i in range(size):
                lane = offset - 4 + i
                b = slot[0][(self.addr & 0xFC) + lane] if slot is not None and lane < 4 else 0xFF
                out |= b << 8 * i
            return out
        if (offset, size) == (0, 4):
            return self.addr
        if (offset, size) == (1, 1):
            return self.rc
        return (1 << 8 * size) - 1

    def write(self, offset: int, size: int, value: int) -> None:
        if offset < 4:
            if (offset, size) == (0, 4):
                self.addr = value & 0x80FFFFFC
            elif (offset, size) == (1, 1):
                if value & 4:
                    self.reset()
                else:
                    self.rc = value & 2
            return
        slot = self._selected()
        if slot is None:
            return
        cfg, mask, _ = slot
        for i in range(size):
            lane = offset - 4 + i
            if lane < 4:
                at = (self.addr & 0xFC) + lane
                cfg[at] = cfg[at] & ~mask[at] & 0xFF | value >> 8 * i & mask[at]
        window = self._bar0_window()
        if window != self.testdev_base:
            self.testdev_base = window
            self.moved(window)
        window = self._bar0_window(P.PCI_BDF_VGA)
        if window != self.vga_base:
            self.vga_base = window
            self.vga_moved(window)
        pm = self.slots[P.PCI_BDF_PM][0]
        base = int.from_bytes(pm[0x40:0x44], "little") & 0xFFC0     # PMBA
        if pm[0x80] & 1 and base and base != self.pm_base and self.pm_moved(base):
            self.pm_base = base
        window = self._ide_window()
        if window != self.ide_bm_base:
            self.ide_bm_base = window
            self.ide_moved(window)
        if self.rom:
            cfg = self.slots[P.PCI_BDF_VGA][0]
            rom = int.from_bytes(cfg[0x30:0x34], "little")
            base = rom & -len(self.rom) & 0xFFFFF800
            self.rom_base = base if rom & 1 and cfg[4] & 2 and base else None
