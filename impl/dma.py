"""ISA DMA for the impl engine's qemu-dm: two 8237A register files and the
page registers, without transfers.

Room: the ports of :data:`spec.platform.DMA_PORTS`. The behaviour is the one
:mod:`spec.devices.dma` states; this is its own code. Each range is reached
through a :class:`DmaPorts` view that knows its first port.
"""

from __future__ import annotations

# page port & 7 -> channel within its controller
_PAGE = (None, 2, 3, 1, None, None, None, 0)


class _Chip:
    __slots__ = ("shift", "regs", "live", "modes", "pages", "cmd", "stat", "mask", "ff")

    def __init__(self, shift: int) -> None:
        self.shift = shift
        self.regs = [0] * 8         # base address / base count, by register index 0..7
        self.live = [0] * 4         # current address of each channel
        self.modes = [0] * 4
        self.pages = [0] * 4
        self.cmd = self.stat = self.ff = 0
        self.mask = 0xFF


class Dma:
    """Both 8237s; ``port_read``/``port_write`` take an absolute port."""

    name, sizes = "dma", (1,)

    def __init__(self) -> None:
        self.chips = (_Chip(0), _Chip(1))

    def port_read(self, port: int) -> int:
        if port & 0xF0 == 0x80:
            chip = self.chips[port >> 3 & 1]
            return chip.pages[_PAGE[port & 7]]
        chip = self.chips[1] if port >= 0xC0 else self.chips[0]
        r = port >> chip.shift & 15
        if r < 8:
            hi, chip.ff = chip.ff, chip.ff ^ 1
            word = chip.regs[r] if r & 1 else chip.live[r >> 1]
            return (word >> 8 if hi else word) & 0xFF
        if r == 8:
            out, chip.stat = chip.stat, chip.stat & 0xF0
            return out
        return chip.mask if r == 15 else 0

    def port_write(self, port: int, value: int) -> None:
        value &= 0xFF
        if port & 0xF0 == 0x80:
            self.chips[port >> 3 & 1].pages[_PAGE[port & 7]] = value
            return
        chip = self.chips[1] if port >= 0xC0 else self.chips[0]
        r = port >> chip.shift & 15
        if r < 8:
            hi, chip.ff = chip.ff, chip.ff ^ 1
            chip.regs[r] = chip.regs[r] & 0xFF | value << 8 if hi else chip.regs[r] & 0xFF00 | value
            if hi:
                chip.live[r >> 1] = chip.regs[r & 6]
            return
        ch = value & 3
        if r == 8:
            if not value & 0xFB:
                chip.cmd = value
        elif r == 9:
            chip.stat = (chip.stat | 0x10 << ch if value & 4 else chip.stat & ~(0x10 << ch)) \
                & ~(1 << ch)
        elif r == 10:
            chip.mask = chip.mask | 1 << ch if value & 4 else chip.mask & ~(1 << ch)
        elif r == 11:
            chip.modes[ch] = value
        elif r == 12:
            chip.ff = 0
        elif r == 13:
            chip.ff, chip.mask, chip.stat, chip.cmd = 0, 0xFF, 0, 0
        elif r == 14:
            chip.mask = 0
        else:
            chip.mask = value


class DmaPorts:
    """One port range of the DMA: offsets from ``first``."""

    name, sizes = "dma", (1,)

    def __init__(self, dma: Dma, first: int) -> None:
        self.dma, self.first = dma, first

    def read(self, offset: int, size: int) -> int:
        return self.dma.port_read(self.first + offset)

    def write(self, offset: int, size: int, value: int) -> None:
        self.dma.port_write(self.first + offset, value)
