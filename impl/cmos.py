"""CMOS RAM for the impl engine's qemu-dm (Xen 3.0.4's ``rtc-dm.c``).

Room: 128 bytes behind ports 0x70/0x71 with the bytes ``cmos_init`` writes
(century, memory sizes, boot order, equipment). Imports nothing of
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
    """qemu-dm's cmos_init: boot order (0x3D, 0x38), equipment, no drives."""
    code = [platform.BOOT_DEVICES[c] for c in boot] + [0, 0]
    return [(0x3D, code[0] | code[1] << 4), (0x38, code[2] << 4), (0x10, 0), (0x12, 0),
            (0x14, 0x06)]


def _century(base: int) -> list[tuple[int, int]]:
    c = (time.gmtime(base).tm_year - 1900) // 100 + 19
    return [(platform.RTC_CENTURY, c // 10 * 16 + c % 10), (0x37, c // 10 * 16 + c % 10)]


class Cmos:
    name, sizes = "cmos", (1,)

    def __init__(self, mem: int, base: int, boot: str = "c") -> None:
        self.ram = bytearray(128)
        for index, value in _century(base) + cmos_sizes(mem) + _bios_bytes(boot):
            self.ram[index] = value
        self.sel = 0

    def read(self, offset: int, size: int) -> int:
        return self.ram[self.sel] if offset else 0xFF

    def write(self, offset: int, size: int, value: int) -> None:
        if offset:
            self.ram[self.sel] = value & 0xFF
        else:
            self.sel = value & 0x7F
