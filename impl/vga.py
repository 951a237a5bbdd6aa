"""The VGA for the impl engine: std VGA with Bochs VBE, shared or trapped video
memory, and the display scanner.

Room: qemu-dm's VGA device — its ports (registers of :mod:`impl.vga_ports`),
its legacy window and linear frame buffer when trapped (the planes of
:mod:`impl.vga_planes`), the one view of video memory it shares with the
guest, and the refresh that turns dirty pages into display updates (pixels
from :mod:`impl.vga_scan`). Imports :mod:`spec.trace`, :mod:`spec.platform`
and the font table :mod:`spec.devices.vga_font` (interface and data only).
The reference model's prose is ``spec/devices/vga.py``: which view is
shared (the LFB while VBE's LFB is on, else the chain-4 window, else the
odd/even text window through a separate text page that is folded into
planes 0/1), and when a refresh redraws what.
"""

from __future__ import annotations

import ctypes
import hashlib
import mmap
from typing import Callable

from spec import platform, trace
from spec.devices.vga_font import FONT_8X16
from impl import vga_scan
from impl.vga_planes import VgaPlanes
from impl.vga_ports import VgaPorts

VRAM_SIZE = 8 << 20
PERIOD = 1_000_000              # display refresh, virtual ns
WINDOW = (0xA0000, 0x20000)
TEXT = 0x8000                   # the text page: planes 0/1 of words 0-16383
PORT_RANGES = tuple((p.start, p.stop) for p in (platform.VGA_PORTS, platform.VBE_PORTS))
_WINDOWS = ((0xA0000, 0x20000), (0xA0000, 0x10000), (0xB0000, 0x8000), (0xB8000, 0x8000))


def _frame(width: int, height: int, rgb: bytes) -> str:
    return hashlib.sha256(width.to_bytes(2, "little") + height.to_bytes(2, "little")
                          + rgb).hexdigest()[:16]


class Vga:
    name = "vga"

    def __init__(self, libxc, vram_size: int = VRAM_SIZE) -> None:
        self.libxc = libxc
        self._mem = mmap.mmap(-1, vram_size)
        self.vram = memoryview(self._mem)
        self._text_mem = mmap.mmap(-1, TEXT)
        self.text = memoryview(self._text_mem)
        self.ports = VgaPorts(vram_size)
        self.ports.bios_init()
        self.planes = VgaPlanes(self._mem, self.ports)
        cells = TEXT // 2
        self.vram[0:2 * TEXT:4] = b"\x20" * cells
        self.vram[1:2 * TEXT:4] = b"\x07" * cells
        for code in range(256):
            self.vram[128 * code + 2:128 * code + 66:4] = FONT_8X16[16 * code:16 * code + 16]
        self.lfb: int | None = None
        self.dirty: set[int] = set()            # pages of video memory to look at
        self.regs_dirty = True
        self.view: tuple | None = None          # (kind, gpa, size, offset)
        self._buf = None
        self._take(self._linear())
        self.shown = None                       # (display, palette) last drawn
        self.band_pixels: list[bytes] = []
        self.picture = bytearray()
        self.glyphs = b""
        self.cells: list[bytes] = []
        self.cur: list[int] = []
        self.refresh(lambda event: None)        # the power-on picture

    # --- ports ------------------------------------------------------------------------

    def port_read(self, port: int, size: int) -> int:
        return self.ports.read(port, size, self.libxc.clock_ns())

    def port_write(self, port: int, size: int, value: int) -> None:
        cleared = self.ports.write(port, size, value)
        self.regs_dirty = True
        view = self._linear()
        if cleared or view != self.view:
            self._release()
            if cleared:
                self.vram[:cleared] = bytes(cleared)
                self.dirty.update(range(0, (cleared - 1 >> 12) + 1))
            self._take(view)

    def _linear(self) -> tuple | None:
        """Which view of video memory is linear and shown (spec/devices/vga.py)."""
        p = self.ports
        if p.vbe_enabled and p.vbe_regs[4] & 0x40:
            return None if self.lfb is None else ("lfb", self.lfb, p.vram_size, 0)
        sr, gr = p.memory_registers()[:2]
        memory_map = gr[6] >> 2 & 3
        base, size = _WINDOWS[memory_map]
        if sr[4] & 8:
            if memory_map < 2 and sr[2] & 15 == 15:
                return ("chain4", base, size, p.bank_offset if memory_map == 1 else 0)
            return None
        if gr[5] & 0x10 and memory_map >= 2 and sr[2] & 3 == 3 and not gr[4] & 2:
            return ("text", base, size, 0)
        return None

    # --- trapped accesses ------------------------------------------------------------------

    def window_read(self, offset: int, size: int) -> int:
        if self.view is not None and self.view[0] == "text":
            self.sync()
        read_byte, at = self.planes.read_byte, WINDOW[0] + offset
        return sum(read_byte(at + i) << 8 * i for i in range(size))

    def window_write(self, offset: int, size: int, value: int) -> None:
        if self.view is not None and self.view[0] == "text":
            self.sync()
        planes, at = self.planes, WINDOW[0] + offset
        for i in range(size):
            index = planes.write_byte(at + i, value >> 8 * i & 0xFF)
            if index >= 0:
                self._wrote(index, planes.span)

    def linear_read(self, offset: int, size: int) -> int:
        if self.view is not None and self.view[0] == "text":
            self.sync()
        return int.from_bytes(self.vram[offset:offset + size], "little")

    def linear_write(self, offset: int, size: int, value: int) -> None:
        if self.view is not None and self.view[0] == "text":
            self.sync()
        self.vram[offset:offset + size] = value.to_bytes(size, "little")
        self._wrote(offset, size)

    def moved(self, base: int | None) -> None:
        """The PCI BAR 0 (the linear frame buffer) is now at ``base``."""
        if base == self.lfb:
            return
        self.lfb = base
        view = self._linear()
        if view != self.view:
            self._release()
            self._take(view)

    def _wrote(self, start: int, length: int) -> None:
        self.dirty.update(range(start >> 12, (start + length - 1 >> 12) + 1))
        if self.view is not None and self.view[0] == "text" and start < 2 * TEXT:
            for index in range(start, min(start + length, 2 * TEXT)):
                if index & 3 < 2:
                    self.text[(index >> 2) * 2 + (index & 3)] = self.vram[index]

    # --- the shared view ---------------------------------------------------------------------

    def _take(self, view) -> None:
        self.view = view
        if view is None:
            return
        kind, gpa, size, offset = view
        if kind == "text":
            self.text[0::2] = self.vram[0:2 * TEXT:4]
            self.text[1::2] = self.vram[1:2 * TEXT:4]
            self._buf = (ctypes.c_char * size).from_buffer(self._text_mem)
        else:
            self._buf = (ctypes.c_char * size).from_buffer(self._mem, offset)
        self.libxc.map_vram(gpa, self._buf)
        self.libxc.track_dirty_vram(gpa >> 12, size >> 12)
        if kind == "text":
            self.dirty.update(range(0, 2 * TEXT >> 12))
        else:
            self.dirty.update(range(offset >> 12, offset + size >> 12))

    def _release(self) -> None:
        if self.view is None:
            return
        self.sync()
        self.libxc.track_dirty_vram(0, 0)
        self.libxc.unmap_vram(self.view[1], self.view[2])
        self.view = self._buf = None

    def sync(self) -> None:
        """Xen's dirty pages of the shared view: folded (text page) and remembered."""
        if self.view is None:
            return
        kind, gpa, size, offset = self.view
        bits = self.libxc.track_dirty_vram(gpa >> 12, size >> 12)
        page = 0
        while bits:
            if bits & 1:
                if kind == "text":
                    lo = page << 12
                    self.vram[2 * lo:2 * lo + 8192:4] = self.text[lo:lo + 4096:2]
                    self.vram[2 * lo + 1:2 * lo + 8192:4] = self.text[lo + 1:lo + 4096:2]
                    self.dirty.update((2 * page, 2 * page + 1))
                else:
                    self.dirty.add((offset >> 12) + page)
            bits >>= 1
            page += 1

    # --- refresh -----------------------------------------------------------------------------

    def wants_refresh(self) -> bool:
        return self.regs_dirty or bool(self.dirty) or self.libxc.dirty_vram_pending()

    def _hits(self, start: int, length: int) -> bool:
        dirty = self.dirty
        return any(page in dirty for page in range(start >> 12, (start + max(length, 1) - 1 >> 12)
                                                   + 1))

    def refresh(self, emit: Callable[[trace.Event], None]) -> bool:
        self.sync()
        now = self.libxc.clock_ns()
        display, palette = self.ports.display(), self.ports.palette_rgb()
        bands = vga_scan.bands(display, len(self.vram))
        text = display.mode == "text"
        shown = self.shown
        resized = (shown is None or len(bands) != len(self.band_pixels)
                   or (display.mode, display.width, display.height)
                   != (shown[0].mode, shown[0].width, shown[0].height))
        spans = vga_scan.glyph_spans(display)
        glyphs = (b"".join(bytes(self.vram[s + (2 - s) % 4:s + n:4]) for s, n in spans)
                  if spans and (resized or any(self._hits(s, n) for s, n in spans))
                  else self.glyphs if spans else b"")
        whole = (resized or glyphs != self.glyphs or palette != shown[1]
                 or display._replace(cursor=None) != shown[0]._replace(cursor=None))
        self.shown, self.glyphs = (display, palette), glyphs
        if resized:
            self.band_pixels = [b""] * len(bands)
            self.picture = bytearray(3 * display.width * display.height)
            self.cells = [b""] * len(bands) if text else []
        cursor = []
        if text and display.cursor is not None:
            word, first, last = display.cursor
            for row, band in enumerate(bands):
                if band.address <= 4 * word < band.address + 4 * display.columns:
                    cursor = [row, word - band.address // 4, first, last]
                    break
        marked = {cursor[0]} if cursor else set()
        if self.cur:
            marked.add(self.cur[0])
        blink = vga_scan.cursor_visible(now)
        changed = []
        row_bytes = 3 * display.width
        for i, band in enumerate(bands):
            if not (whole or i in marked or any(self._hits(*s) for s in band.spans)):
                continue
            pixels = vga_scan.draw_band(display, palette, self.vram, band, blink)
            if pixels != self.band_pixels[i]:
                self.band_pixels[i] = pixels
                self.picture[band.first * row_bytes:band.first * row_bytes + len(pixels)] = pixels
                changed.append(i)
        self.dirty.clear()
        self.regs_dirty = False
        if not changed and cursor == self.cur:
            return False
        self.cur = cursor
        rects: list[list[int]] = []
        for i in changed:
            band = bands[i]
            if rects and rects[-1][1] + rects[-1][3] == band.first:
                rects[-1][3] += band.lines
            else:
                rects.append([0, band.first, display.width, band.lines])
        if text:
            n = 4 * display.columns
            for row in changed:
                at = bands[row].address
                line = bytearray(2 * display.columns)
                line[0::2] = self.vram[at:at + n:4]
                line[1::2] = self.vram[at + 1:at + n:4]
                self.cells[row] = bytes(line)
        emit(trace.DisplayUpdate(
            icount=now, mode=display.mode, width=display.width, height=display.height,
            rects=rects, grid=[display.columns, display.rows] if text else [],
            rows=changed if text else [],
            cells=[self.cells[r].hex() for r in changed] if text else [],
            cursor=cursor, frame=_frame(display.width, display.height, bytes(self.picture))))
        return True

    def picture_rgb(self) -> tuple[int, int, bytes]:
        if self.shown is None:
            return 0, 0, b""
        display = self.shown[0]
        return display.width, display.height, bytes(self.picture)


class VgaPortRange:
    """The VGA on the port bus from ``base``."""

    name, sizes = "vga", (1, 2, 4)

    def __init__(self, vga: Vga, base: int) -> None:
        self.vga, self.base = vga, base

    def read(self, offset: int, size: int) -> int:
        return self.vga.port_read(self.base + offset, size)

    def write(self, offset: int, size: int, value: int) -> None:
        self.vga.port_write(self.base + offset, size, value)
