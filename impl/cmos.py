"""CMOS RAM for the impl engine's qemu-dm (Xen 3.0.4's ``rtc-dm.c``).

Room: 128 bytes behind ports 0x70/0x71 with the bytes ``cmos_init`` writes
(century, memory sizes, boot order, equipment, the IDE drives' types,
geometries and BIOS translations). Imports nothing of
``spec/`` but the platform numbers; the behaviour is the one
:mod:`spec.devices.cmos` states. The clock is Xen's (:mod:`impl.rtc`).
"""

from __future__ import annotations

import time

from spec import platform


def cmos_sizes(mem: int) -> list[tuple[int, int]]:
    """(index, byte) of the memory-size bytes for ``mem`` bytes of RAM."""
    low = mem if mem < platform.HVM_BELOW_4G_RAM_END else platform.HVM_BELOW_4G_RAM_END
    kib_base = low >> 10 if low >> 10 < 640 else 640
    kib_ext = max(low - 0x100000, 0) >> 10
    blocks16 = max(low - 0x1000000, 0) >> 16
    blocks4g = (mem - low) >> 16
    kib_ext, blocks16 = min(kib_ext, 0xFFFF), min(blocks16, 0xFFFF)
    out = []
    for index, value, n in ((0x15, kib_base, 2), (0x17, kib_ext, 2), (0x30, kib_ext, 2),
                            (0x34, blocks16, 2), (0x5B, blocks4g, 3)):
        out += [(index + i, value >> 8 * i & 0xFF) for i in range(n)]
    return out


def _bios_bytes(boot: str) -> list[tuple[int, int]]:
    """qemu-dm's cmos_init: boot order (0x3D, 0x38), equipment, no floppy."""
    code = [platform.BOOT_DEVICES[c] for c in boot] + [0, 0]
    return [(0x3D, code[0] | code[1] << 4), (0x38, code[2] << 4), (0x10, 0), (0x14, 0x06)]


def _drive_bytes(drives: list) -> list[tuple[int, int]]:
    """cmos_init's hard disk bytes from the IDE drives hda .. hdd (objects
    with cylinders, heads, sectors and chs_from_mbr, or None): 0x12, types
    47 at 0x19/0x1A with cmos_init_hd's nine bytes at 0x1B/0x24, and the
    two translation bits a drive in 0x39 (LBA for a default geometry of
    more than 1024 cylinders)."""
    out = [(0x12, (drives[0] is not None) * 0xF0 | (drives[1] is not None) * 0x0F)]
    for d, kind, at in zip(drives[:2], (0x19, 0x1A), (0x1B, 0x24)):
        if d is None:
            continue
        c = d.cylinders
        out.append((kind, 47))
        out += list(zip(range(at, at + 9), (c & 0xFF, c >> 8 & 0xFF, d.heads, 0xFF, 0xFF,
                                             0xC8 if d.heads > 8 else 0xC0, c & 0xFF,
                                             c >> 8 & 0xFF, d.sectors)))
    lba = 0
    for i, d in enumerate(drives):
        if d is not None and not d.chs_from_mbr and (
                d.cylinders > 1024 or d.heads > 16 or d.sectors > 63):
            lba |= 1 << 2 * i
    return out + [(0x39, lba)]


def _century(base: int) -> list[tuple[int, int]]:
    c = (time.gmtime(base).tm_year - 1900) // 100 + 19
    return [(platform.RTC_CENTURY, c // 10 * 16 + c % 10), (0x37, c // 10 * 16 + c % 10)]


class Cmos:
    name, sizes = "cmos", (1,)

    def __init__(self, mem: int, base: int, boot: str = "c", drives: list | None = None) -> None:
        self.ram = bytearray(128)
        for index, value in (_century(base) + cmos_sizes(mem) + _bios_bytes(boot)
                             + _drive_bytes(drives or [None] * 4)):
            self.ram[index] = value
        self.sel = 0

    def read(self, offset: int, size: int) -> int:
        return self.ram[self.sel] if offset else 0xFF

    def write(self, offset: int, size: int, value: int) -> None:
        if offset:
            self.ram[self.sel] = value & 0xFF
        else:
            self.sel = value & 0x7F
