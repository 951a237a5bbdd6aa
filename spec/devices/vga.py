"""qemu-dm's VGA: the standard VGA with Bochs VBE, its video memory shared
with the guest or trapped, and the display scanner.

Room: the device that owns the VGA's register file
(:mod:`spec.devices.vga_registers`), its video memory and latches (whose
access rules are :mod:`spec.devices.vga_memory`), the guest-physical views of
that memory, and the refresh that turns what changed into pixels
(:mod:`spec.devices.vga_scanner`). Imports those modules,
:mod:`spec.platform`, :mod:`spec.trace`. Xen's side of the change tracking
is :mod:`spec.dirty_vram`.

The device
----------

Xen 3.x's qemu-dm with ``stdvga=1`` (``tools/ioemu/hw/vga.c``,
``pci_vga_init``): PCI function 00:02.0, vendor 0x1234 device 0x1111
(the "dummy VGA" ID Bochs and QEMU use), class 0x0300, with its
:data:`VRAM_SIZE` bytes of video memory (Xen 3.0.4's ``VGA_RAM_SIZE``,
8 MiB) in memory BAR 0, prefetchable: the VBE *linear frame buffer*. Its
ports are the VGA's ``0x3B0``-``0x3DF`` and the Bochs VBE DISPI
``0x1CE``-``0x1D0``; the legacy window ``0xA0000``-``0xBFFFF`` reaches the
planes through the memory map the graphics controller selects.

At power-on the registers are those of Xen 3.0.4's ``vga_bios_init``
(mode 3 text, :meth:`spec.devices.vga_registers.VgaRegisters.bios_init`)
and video memory is as the VGA BIOS's mode-3 set leaves it: every cell of
the text page a blank (0x20) on light grey (0x07) and the 8x16 font
(:mod:`spec.devices.vga_font`) in plane 2. (Xen relies on the VGA BIOS for
the memory; a guest that runs without one, as hvmspec's own do, gets it
here, so that its text shows.)

Shared or trapped
-----------------

Video memory is stored as qemu-dm stores it: plane *p* of 32-bit word *w*
is byte ``4w + p``. Some of the guest's views of it are *linear*: byte *a*
of the view is one byte of video memory, whatever is written:

* the **linear frame buffer** (BAR 0): byte *a* is byte *a*, always;
* the legacy window in **chain-4** mode (sequencer register 4 bit 3, memory
  map 0 or 1, all four planes write-enabled: mode 13h and VBE's banked
  8-bit modes): byte *a* of the window is byte *a* (plus the VBE bank);
* the **text window** in odd/even mode (graphics register 5 bit 4, memory
  map 2 or 3, planes 0 and 1 write-enabled, graphics register 4 bit 1
  clear): byte *a* is plane ``a & 1`` of word ``a >> 1``, which is not a
  contiguous range of video memory. qemu-dm keeps a separate 32 KiB
  *text page* for it, equal to planes 0 and 1 of words 0-16383.

qemu-dm shares exactly one view at a time, the one the display shows,
because Xen tracks one dirty range per domain (``HVMOP_track_dirty_vram``
takes one range): the linear frame buffer while VBE is enabled with its
LFB bit, else the chain-4 window, else the text window; none in the
planar modes. Sharing maps the view's memory into the guest's p2m at the
view's address (``xc_domain_add_to_physmap``): a guest store there is an
ordinary store, with no exit, and Xen's dirty tracking of that range tells
the scanner which pages changed. Every other access to the legacy window
or to BAR 0 reaches guest-physical memory that nothing backs: an MMIO
exit, an ioreq to qemu-dm, the rules of :mod:`spec.devices.vga_memory`
one byte at a time (QEMU's ``vga_mem_ops`` take bytes, lowest address
first). qemu-dm remembers which pages of video memory it wrote itself.

After every register write qemu-dm works out which view the registers
make linear; when that changed (or a VBE mode set cleared video memory)
it *releases* the old view (folds it in, stops the tracking, removes it
from the p2m), applies the clear, and *takes* the new one (fills the text
page from planes 0 and 1, maps it, starts tracking it). *Folding* is what
keeps the text page and the planes equal: the text page's pages that Xen
reports dirty are copied into planes 0 and 1, at each refresh, when the
view is released, and before a trapped access to BAR 0 (the only other way
to those planes while the text page is shared; a trapped write there is
also copied into the text page).

Xen 3.0.4's qemu-dm shared only the Cirrus linear frame buffer
(``set_vram_mapping``) and trapped the whole legacy window, buffering its
writes (``buffered_stdvga_range``); its std VGA's linear frame buffer was
MMIO ("XXX: use optimized standard vga accesses"), and its scanner found
changes by comparing video memory with a shadow copy (``vram_dirty``).
hvmspec follows later Xen's dirty-VRAM tracking instead, and shares the
text and chain-4 windows so that the modes firmware and DOS-era guests
draw in cause no exit per store.

The display scanner
-------------------

Every refresh period (:data:`REFRESH_NS` of virtual time) the display timer
folds the dirty text pages in, then works out the picture
(:meth:`~spec.devices.vga_registers.VgaRegisters.display`) and its colours
(:meth:`~spec.devices.vga_registers.VgaRegisters.palette_rgb`). When they
are what the last refresh drew, it redraws only the *bands*
(:func:`spec.devices.vga_scanner.bands`: a character row of text, a memory
line of graphics) whose bytes of video memory lie in a dirty page, and the
text rows the cursor left or entered; otherwise every band. A band whose
pixels differ from the last picture is *changed*; if any is, the refresh
is a display update: a :class:`spec.trace.DisplayUpdate` event with the
picture's mode and size, the changed rectangles, in text modes the changed
rows' cells and the cursor, and a hash of the whole picture. The text
cursor and blinking characters show by the blink phase of the virtual
clock at the refresh (:func:`spec.devices.vga_scanner.cursor_visible`); a refresh
is not scheduled for the blink alone, so an idle screen neither shows in
the trace nor keeps a halted vcpu's clock running.

qemu-dm draws the power-on picture when it starts, and that is not an
update: a guest that never changes the screen has no display event. The
display timer runs once per period: the first pass of qemu-dm's main
loop in a new period (``clock // REFRESH_NS`` greater than the last one)
refreshes. qemu-dm asks Xen to preempt the vcpu at the next period boundary
(its timer deadline) only when a refresh there can find something (a page
is dirty or a register was written). When the domain ends, qemu-dm
refreshes once more, so that the trace ends with the final frame.
"""

from __future__ import annotations

import ctypes
import hashlib
import mmap
from typing import NamedTuple, Protocol

from spec import platform, trace
from spec.devices import vga_memory, vga_scanner
from spec.devices.vga_font import FONT_8X16, GLYPH_HEIGHT
from spec.devices.vga_registers import VBE_ENABLE, VBE_LFB_ENABLED, VgaRegisters

#: Xen 3.0.4 qemu-dm's ``VGA_RAM_SIZE``
VRAM_SIZE = 8 << 20
#: qemu-dm's display refresh period, in virtual ns (one instruction is one ns)
REFRESH_NS = 1_000_000
#: the legacy window the memory maps select from
WINDOW_BASE, WINDOW_SIZE = 0xA0000, 0x20000
#: the text page: planes 0 and 1 of words 0 .. 16383
TEXT_PAGE_SIZE = 0x8000
#: the port ranges the device claims: the VGA's, and the VBE DISPI index and data
PORT_RANGES = tuple((ports.start, len(ports)) for ports in (platform.VGA_PORTS, platform.VBE_PORTS))
PAGE = platform.PAGE_SIZE
BLANK = bytes((0x20, 0x07))


class DisplayHost(Protocol):
    """What the VGA asks of Xen, through libxc."""

    def map_vram(self, gpa: int, buffer: ctypes.Array) -> None: ...

    def unmap_vram(self, gpa: int, length: int) -> None: ...

    def track_dirty_vram(self, first_pfn: int, nr: int) -> int: ...

    def dirty_vram_pending(self) -> bool: ...

    def clock_ns(self) -> int: ...


class SharedView(NamedTuple):
    """A linear view of video memory mapped into the guest: ``kind`` is
    ``"lfb"``, ``"chain4"`` or ``"text"``; ``gpa`` and ``size`` where and
    how much; ``offset`` the byte of video memory its first byte is (linear
    views)."""

    kind: str
    gpa: int
    size: int
    offset: int = 0


def frame_hash(width: int, height: int, rgb: bytes) -> str:
    """The picture's identity: SHA-256 of its width and height (two bytes
    each, little-endian) then its RGB pixels, first 16 hex digits."""
    size = width.to_bytes(2, "little") + height.to_bytes(2, "little")
    return hashlib.sha256(size + rgb).hexdigest()[:16]


def linear_view(regs: VgaRegisters, lfb_base: int | None) -> SharedView | None:
    """The view the registers make linear and the display shows (module
    docstring, "Shared or trapped"), or None."""
    if regs.vbe_enabled and regs.vbe_regs[VBE_ENABLE] & VBE_LFB_ENABLED:
        return None if lfb_base is None else SharedView("lfb", lfb_base, regs.vram_size)
    memory = regs.memory_registers()
    sr, gr = memory.sr, memory.gr
    memory_map = gr[vga_memory.GR_MISC] >> 2 & 3
    start, size = vga_memory.WINDOWS[memory_map]
    if sr[vga_memory.SR_MEMORY_MODE] & 0x08:
        if memory_map < 2 and sr[vga_memory.SR_MAP_MASK] & 0x0F == 0x0F:
            return SharedView("chain4", start, size, memory.bank if memory_map == 1 else 0)
        return None
    if (gr[vga_memory.GR_MODE] & 0x10 and memory_map >= 2
            and sr[vga_memory.SR_MAP_MASK] & 3 == 3 and not gr[vga_memory.GR_READ_MAP] & 2):
        return SharedView("text", start, size)
    return None


class Vga:
    """The VGA of one domain: registers, video memory, views, scanner."""

    name = "vga"

    def __init__(self, host: DisplayHost, vram_size: int = VRAM_SIZE) -> None:
        self.host = host
        self.registers = VgaRegisters(vram_size)
        self.registers.bios_init()
        self._memory = mmap.mmap(-1, vram_size)
        self.vram = memoryview(self._memory)
        self._text_memory = mmap.mmap(-1, TEXT_PAGE_SIZE)
        self.text_page = memoryview(self._text_memory)
        self.latch = 0
        self.vram[0:4 * TEXT_PAGE_SIZE // 2:4] = BLANK[:1] * (TEXT_PAGE_SIZE // 2)
        self.vram[1:4 * TEXT_PAGE_SIZE // 2:4] = BLANK[1:] * (TEXT_PAGE_SIZE // 2)
        for code in range(256):             # plane 2: 32 bytes a glyph, 16 of them used
            glyph = FONT_8X16[GLYPH_HEIGHT * code:GLYPH_HEIGHT * (code + 1)]
            self.vram[4 * 32 * code + 2:4 * (32 * code + GLYPH_HEIGHT) + 2:4] = glyph
        self.lfb_base: int | None = None
        #: pages of video memory changed since the last refresh (qemu-dm's
        #: own writes, and the tracked view's pages Xen reported)
        self.dirty_pages: set[int] = set()
        self.registers_written = True
        self.view: SharedView | None = None
        self._buffer = None                 # the shared view's memory, as mapped
        self._take_view(linear_view(self.registers, self.lfb_base))
        # what the last refresh drew
        self.display = None
        self.palette: list = []
        self.picture = bytearray()
        self.glyphs = b""
        self.band_pixels: list[bytes] = []
        self.cells: list[bytes] = []
        self.cursor: list[int] = []
        self.refresh()                      # the power-on picture, shown before any update

    # --- ports ---------------------------------------------------------------------

    def port_read(self, port: int, size: int) -> int:
        return self.registers.read(port, size, self.host.clock_ns())

    def port_write(self, port: int, size: int, value: int) -> None:
        """A register write, then the view it leaves linear (module docstring)."""
        cleared = self.registers.write(port, size, value)
        self.registers_written = True
        wanted = linear_view(self.registers, self.lfb_base)
        if cleared or wanted != self.view:
            self._release_view()
            if cleared:
                self.vram[:cleared] = bytes(cleared)
                self._written(0, cleared)
            self._take_view(wanted)

    # --- the legacy window and the linear frame buffer (trapped accesses) -------------

    def window_read(self, offset: int, size: int) -> int:
        """An MMIO read of ``size`` bytes at ``0xA0000 + offset``: byte reads,
        lowest address first (:mod:`spec.devices.vga_memory`)."""
        self._fold_if_text_shared()
        regs, value = self.registers.memory_registers(), 0
        for i in range(size):
            byte, self.latch = vga_memory.read(self.vram, self.latch, regs,
                                               WINDOW_BASE + offset + i)
            value |= byte << 8 * i
        return value

    def window_write(self, offset: int, size: int, value: int) -> None:
        self._fold_if_text_shared()
        regs = self.registers.memory_registers()
        for i in range(size):
            changed = vga_memory.write(self.vram, self.latch, regs, WINDOW_BASE + offset + i,
                                       value >> 8 * i & 0xFF)
            if changed is not None:
                self._written(*changed)

    def linear_read(self, offset: int, size: int) -> int:
        """An MMIO read of the linear frame buffer while it is not shared."""
        self._fold_if_text_shared()
        return int.from_bytes(self.vram[offset:offset + size], "little")

    def linear_write(self, offset: int, size: int, value: int) -> None:
        self._fold_if_text_shared()
        self.vram[offset:offset + size] = value.to_bytes(size, "little")
        self._written(offset, size)

    def set_linear_base(self, base: int | None) -> None:
        """PCI moved (or disabled) BAR 0: the linear frame buffer is now at ``base``."""
        if base == self.lfb_base:
            return
        self.lfb_base = base
        wanted = linear_view(self.registers, base)
        if wanted != self.view:
            self._release_view()
            self._take_view(wanted)

    def _written(self, start: int, length: int) -> None:
        """qemu-dm wrote ``length`` bytes of video memory from ``start``."""
        self.dirty_pages.update(range(start // PAGE, (start + length - 1) // PAGE + 1))
        if self.view is not None and self.view.kind == "text" and start < 2 * TEXT_PAGE_SIZE:
            for index in range(start, min(start + length, 2 * TEXT_PAGE_SIZE)):
                if index & 3 < 2:
                    self.text_page[(index >> 2) * 2 + (index & 3)] = self.vram[index]

    # --- the views ---------------------------------------------------------------------

    def _take_view(self, view: SharedView | None) -> None:
        self.view = view
        if view is None:
            return
        if view.kind == "text":
            self.text_page[0::2] = self.vram[0:2 * TEXT_PAGE_SIZE:4]
            self.text_page[1::2] = self.vram[1:2 * TEXT_PAGE_SIZE:4]
            buffer = (ctypes.c_char * view.size).from_buffer(self._text_memory)
        else:
            buffer = (ctypes.c_char * view.size).from_buffer(self._memory, view.offset)
        self._buffer = buffer
        self.host.map_vram(view.gpa, buffer)
        self.host.track_dirty_vram(view.gpa >> platform.PAGE_SHIFT, view.size // PAGE)
        self.dirty_pages.update(self._view_pages(range(view.size // PAGE)))

    def _release_view(self) -> None:
        view = self.view
        if view is None:
            return
        self.sync()
        self.host.track_dirty_vram(0, 0)
        self.host.unmap_vram(view.gpa, view.size)
        self.view = self._buffer = None

    def _fold_if_text_shared(self) -> None:
        if self.view is not None and self.view.kind == "text":
            self.sync()

    def sync(self) -> None:
        """Ask Xen which pages of the shared view the guest wrote, fold the
        text page's into planes 0 and 1, and remember them as dirty."""
        view = self.view
        if view is None:
            return
        bitmap = self.host.track_dirty_vram(view.gpa >> platform.PAGE_SHIFT, view.size // PAGE)
        pages = [i for i in range(view.size // PAGE) if bitmap >> i & 1]
        if view.kind == "text":
            for page in pages:
                self._fold(page)
        self.dirty_pages.update(self._view_pages(pages))

    def _fold(self, page: int) -> None:
        """Copy page ``page`` of the text page into planes 0 and 1."""
        text = self.text_page[page * PAGE:(page + 1) * PAGE]
        start = 2 * page * PAGE
        self.vram[start:start + 2 * PAGE:4] = text[0::2]
        self.vram[start + 1:start + 2 * PAGE:4] = text[1::2]

    def _view_pages(self, pages) -> list[int]:
        """The pages of video memory that pages ``pages`` of the view show."""
        if self.view.kind == "text":
            return [vram_page for page in pages for vram_page in (2 * page, 2 * page + 1)]
        first = self.view.offset // PAGE
        return [first + page for page in pages]

    # --- the display scanner -------------------------------------------------------------

    def next_refresh(self, period: int) -> int | None:
        """The boundary after ``period`` when a refresh there can find
        something (a page is dirty or a register was written)."""
        if not (self.registers_written or self.dirty_pages or self.host.dirty_vram_pending()):
            return None
        return (period + 1) * REFRESH_NS

    def refresh(self) -> trace.DisplayUpdate | None:
        """One refresh (module docstring): the update, or None if nothing changed."""
        self.sync()
        now = self.host.clock_ns()
        display, palette = self.registers.display(), self.registers.palette_rgb()
        blink = vga_scanner.cursor_visible(now)
        bands = vga_scanner.bands(display, len(self.vram))
        old = self.display
        resized = (old is None or (display.mode, display.width, display.height)
                   != (old.mode, old.width, old.height) or len(self.band_pixels) != len(bands))
        glyphs = self._glyphs(display)
        # every band is drawn again for a new picture or new colours or
        # glyphs (not for a moved cursor: its rows are redrawn below); a
        # band is changed only if its pixels differ from the last picture's
        whole = (resized or display._replace(cursor=None) != old._replace(cursor=None)
                 or palette != self.palette or glyphs != self.glyphs)
        self.display, self.palette, self.glyphs = display, palette, glyphs
        if resized:
            self.band_pixels = [b""] * len(bands)
            self.picture = bytearray(3 * display.width * display.height)
            self.cells = [b""] * len(bands) if display.mode == "text" else []
        cursor = self._cursor(display, bands)
        cursor_rows = {row for row in (cursor[:1] + self.cursor[:1])}
        stale = [i for i, band in enumerate(bands)
                 if whole or i in cursor_rows or any(map(self._touches_dirty, band.spans))]
        self.dirty_pages.clear()
        self.registers_written = False
        changed = []
        for i in stale:
            pixels = vga_scanner.draw_band(display, palette, self.vram, bands[i], blink)
            if pixels != self.band_pixels[i]:
                self.band_pixels[i] = pixels
                first = 3 * display.width * bands[i].first
                self.picture[first:first + len(pixels)] = pixels
                changed.append(i)
        if not changed and cursor == self.cursor:
            return None
        self.cursor = cursor
        text_rows = self._text_rows(display, bands, changed)
        return trace.DisplayUpdate(
            icount=now, mode=display.mode, width=display.width, height=display.height,
            rects=self._rects(display, bands, changed),
            grid=[display.columns, display.rows] if display.mode == "text" else [],
            rows=text_rows, cells=[self.cells[row].hex() for row in text_rows],
            cursor=cursor, frame=frame_hash(display.width, display.height, bytes(self.picture)))

    def picture_rgb(self) -> tuple[int, int, bytes]:
        """The last picture drawn: (width, height, RGB pixels row after row)."""
        if self.display is None:
            return 0, 0, b""
        return self.display.width, self.display.height, bytes(self.picture)

    def _glyphs(self, display) -> bytes:
        """The plane-2 bytes of the glyphs a text picture reads (none in graphics)."""
        return b"".join(bytes(self.vram[start + (2 - start) % 4:start + length:4])
                        for start, length in vga_scanner.glyph_spans(display))

    def _touches_dirty(self, span: tuple[int, int]) -> bool:
        start, length = span
        return any(page in self.dirty_pages
                   for page in range(start // PAGE, (start + max(length, 1) - 1) // PAGE + 1))

    @staticmethod
    def _cursor(display, bands) -> list[int]:
        """Text: ``[row, column, first scan line, last scan line]`` of the
        cursor's cell on the screen, or ``[]`` when it is off or on no cell."""
        if display.mode != "text" or display.cursor is None:
            return []
        word, first, last = display.cursor
        for row, band in enumerate(bands):
            column = (4 * word - band.address) // 4
            if 4 * word >= band.address and column < display.columns:
                return [row, column, first, last]
        return []

    def _text_rows(self, display, bands, changed: list[int]) -> list[int]:
        """Text: the changed rows, their cells (character, attribute) kept."""
        if display.mode != "text":
            return []
        for row in changed:
            at = bands[row].address
            cells = bytearray(2 * display.columns)
            cells[0::2] = self.vram[at:at + 4 * display.columns:4]
            cells[1::2] = self.vram[at + 1:at + 4 * display.columns:4]
            self.cells[row] = bytes(cells)
        return changed

    @staticmethod
    def _rects(display, bands, changed: list[int]) -> list[list[int]]:
        """The changed bands as full-width rectangles ``[x, y, width, height]``,
        adjacent bands merged."""
        rects: list[list[int]] = []
        for i in changed:
            band = bands[i]
            if rects and rects[-1][1] + rects[-1][3] == band.first:
                rects[-1][3] += band.lines
            else:
                rects.append([0, band.first, display.width, band.lines])
        return rects


class VgaPorts:
    """The VGA seen on the port bus at one of :data:`PORT_RANGES`."""

    name, sizes = "vga", (1, 2, 4)

    def __init__(self, vga: Vga, base: int) -> None:
        self.vga, self.base = vga, base

    def io_read(self, offset: int, size: int) -> int:
        return self.vga.port_read(self.base + offset, size)

    def io_write(self, offset: int, size: int, value: int) -> None:
        self.vga.port_write(self.base + offset, size, value)


class VgaWindow:
    """The legacy window on the MMIO bus (trapped accesses)."""

    name, sizes = "vga", (1, 2, 4, 8)

    def __init__(self, vga: Vga) -> None:
        self.vga = vga

    def io_read(self, offset: int, size: int) -> int:
        return self.vga.window_read(offset, size)

    def io_write(self, offset: int, size: int, value: int) -> None:
        self.vga.window_write(offset, size, value)


class VgaLinear:
    """BAR 0, the linear frame buffer, on the MMIO bus (trapped accesses)."""

    name, sizes = "vga", (1, 2, 4, 8)

    def __init__(self, vga: Vga) -> None:
        self.vga = vga

    def io_read(self, offset: int, size: int) -> int:
        return self.vga.linear_read(offset, size)

    def io_write(self, offset: int, size: int, value: int) -> None:
        self.vga.linear_write(offset, size, value)
