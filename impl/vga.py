"""The VGA for the impl engine: registers, shared text memory, the display scanner.

Room: qemu-dm's VGA in colour text mode — the 0x3C0-0x3DF registers, the
32 KiB of video memory that Xen maps at 0xB8000, and the refresh that turns
dirty pages into display updates. Imports :mod:`spec.trace` and
:mod:`spec.platform` (interface only). The reference model's prose is
``spec/devices/vga.py``.
"""

from __future__ import annotations

import ctypes
import hashlib
from typing import Callable

from spec import platform, trace

PERIOD = 1_000_000              # display refresh, virtual ns
CELLS = platform.VGA_TEXT_SIZE // 2
PFN = platform.VGA_TEXT_BASE >> 12
PAGES = platform.VGA_TEXT_SIZE >> 12
# mode 3 as the VGA BIOS leaves it
_CRTC = "5f4f50825581bf1f004f0d0e000000009c8e8f281f96b9a3ff"
_SEQ = "0300030002"
_GC = "0000000000100e00ff"
_ATTR = "00010203040514380738393a3b3c3d3e3f0c000f0800"
# input status 1: 28.322 MHz dots, 900 per line (720 shown), 449 lines (400 shown)
_FRAME_DOTS = 900 * 449


class Vga:
    name, sizes = "vga", (1,)

    def __init__(self, libxc) -> None:
        self.libxc = libxc
        self.vram = ctypes.create_string_buffer(b"\x20\x07" * CELLS, platform.VGA_TEXT_SIZE)
        self.regs = {"crtc": bytearray.fromhex(_CRTC), "seq": bytearray.fromhex(_SEQ),
                     "gc": bytearray.fromhex(_GC), "attr": bytearray.fromhex(_ATTR)}
        self.index = {"crtc": 0, "seq": 0, "gc": 0, "attr": 0}
        self.misc = 0x67
        self.dac = bytearray(768)
        self.dac_mask = 0xFF
        self.dac_r = self.dac_w = 0
        self.flip = False
        self.dirty_regs = False
        libxc.map_vram(platform.VGA_TEXT_BASE, self.vram)
        libxc.track_dirty_vram(PFN, PAGES)
        self.shown = self._view()
        self.lines = [self._line(r) for r in range(25)]
        self.cur = self._cursor()

    # --- ports ------------------------------------------------------------------------

    _READ_INDEXED = {0x3C1: "attr", 0x3C5: "seq", 0x3CF: "gc", 0x3D5: "crtc"}
    _INDEX_PORTS = {0x3C4: "seq", 0x3CE: "gc", 0x3D4: "crtc"}

    def read(self, offset: int, size: int) -> int:
        port = 0x3C0 + offset
        if port in (0x3D4, 0x3D5, 0x3DA) and not self.misc & 1:
            return 0xFF             # the CRTC is at the monochrome addresses
        bank = self._READ_INDEXED.get(port)
        if bank is not None:
            regs, i = self.regs[bank], self.index[bank]
            return regs[i] if i < len(regs) else 0xFF
        bank = self._INDEX_PORTS.get(port)
        if bank is not None:
            return self.index[bank]
        if port == 0x3DA:
            self.flip = False
            dot = self.libxc.clock_ns() * 28_322_000 // 1_000_000_000 % _FRAME_DOTS
            line, col = dot // 900, dot % 900
            return (1 if col >= 720 or line >= 400 else 0) | (8 if 412 <= line < 414 else 0)
        if port == 0x3CC:
            return self.misc
        if port == 0x3C6:
            return self.dac_mask
        if port == 0x3C9:
            value = self.dac[self.dac_r]
            self.dac_r = (self.dac_r + 1) % 768
            return value
        return 0xFF

    def write(self, offset: int, size: int, value: int) -> None:
        port = 0x3C0 + offset
        if port in (0x3D4, 0x3D5, 0x3DA) and not self.misc & 1:
            return
        bank = self._INDEX_PORTS.get(port)
        if bank is not None:
            self.index[bank] = value
            return
        if port in (0x3C5, 0x3CF, 0x3D5):
            bank = self._READ_INDEXED[port]
            regs, i = self.regs[bank], self.index[bank]
            if i < len(regs):
                regs[i] = value
            self.dirty_regs |= bank == "crtc"
        elif port == 0x3C0:
            if self.flip:
                i = self.index["attr"]
                if i < len(self.regs["attr"]):
                    self.regs["attr"][i] = value
            else:
                self.index["attr"] = value & 0x1F
            self.flip = not self.flip
        elif port == 0x3C2:
            self.misc = value
        elif port == 0x3C6:
            self.dac_mask = value
        elif port == 0x3C7:
            self.dac_r = 3 * value
        elif port == 0x3C8:
            self.dac_w = 3 * value
        elif port == 0x3C9:
            self.dac[self.dac_w] = value & 0x3F
            self.dac_w = (self.dac_w + 1) % 768

    # --- the screen -------------------------------------------------------------------

    def _view(self) -> tuple[int, int]:
        crtc = self.regs["crtc"]
        return crtc[0x0C] << 8 | crtc[0x0D], 2 * crtc[0x13]

    def _line(self, row: int) -> bytes:
        start, stride = self.shown
        first = (start + row * stride) % CELLS
        raw = self.vram.raw
        if first + 80 <= CELLS:
            return raw[2 * first:2 * first + 160]
        split = CELLS - first
        return raw[2 * first:] + raw[:2 * (80 - split)]

    def _cursor(self) -> list[int]:
        crtc = self.regs["crtc"]
        start, stride = self._view()
        if crtc[0x0A] & 0x20 or stride == 0:
            return []
        where = ((crtc[0x0E] << 8 | crtc[0x0F]) - start) % CELLS
        row, col = where // stride, where % stride
        if row > 24 or col > 79:
            return []
        return [row, col, crtc[0x0A] & 0x1F, crtc[0x0B] & 0x1F]

    def wants_refresh(self) -> bool:
        return self.dirty_regs or self.libxc.dirty_vram_pending()

    def refresh(self, emit: Callable[[trace.Event], None]) -> bool:
        bitmap = self.libxc.track_dirty_vram(PFN, PAGES)
        self.dirty_regs = False
        view = self._view()
        moved = view != self.shown
        self.shown = view
        start, stride = view
        changed = []
        for row in range(25):
            if not moved:
                first = (start + row * stride) % CELLS
                low, high = (2 * first) >> 12, (2 * ((first + 79) % CELLS) + 1) >> 12
                pages = (1 << low) | (1 << high)
                if low > high:          # the row wraps round the window
                    pages |= ((1 << PAGES) - 1) & ~((1 << low) - 1)
                elif high > low:
                    pages |= ((1 << (high + 1)) - 1) & ~((1 << low) - 1)
                if not bitmap & pages:
                    continue
            line = self._line(row)
            if line != self.lines[row]:
                self.lines[row] = line
                changed.append(row)
        cursor = self._cursor()
        if not changed and cursor == self.cur:
            return False
        self.cur = cursor
        digest = hashlib.sha256(b"".join(self.lines) + bytes(cursor)).hexdigest()[:16]
        emit(trace.DisplayUpdate(icount=self.libxc.clock_ns(), rows=changed,
                                 cells=[self.lines[r].hex() for r in changed],
                                 cursor=cursor, frame=digest))
        return True
