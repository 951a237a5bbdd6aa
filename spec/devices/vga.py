"""qemu-dm's VGA in colour text mode: shared video memory and the display scanner.

Room: the VGA's registers, its video memory, the text-mode picture and the
refresh that finds what changed. Imports :mod:`spec.platform`,
:mod:`spec.trace`. Xen's side of the change tracking is
:mod:`spec.dirty_vram`.

Video memory is shared, not emulated
------------------------------------

qemu-dm allocates the VGA's memory itself and has Xen map it into the guest
at the window the VGA decodes (in text mode, graphics controller register 6
memory map 3: ``0xB8000``–``0xBFFFF``, 32 KiB). A guest write there is an
ordinary store to RAM: no exit, no ioreq. Only the registers (ports
``0x3C0``–``0x3DF``) are port I/O that reaches qemu-dm as ioreqs.

So qemu-dm learns of a change only by asking: every refresh period
(:data:`REFRESH_NS` of virtual time) its display timer calls
``HVMOP_track_dirty_vram`` for the window's 8 pages and re-reads only the
rows whose cells lie in a page the bitmap reports dirty (all of them when
the start address or the row stride changed). A row whose cells differ from
the last picture is *changed*; if any row, or the cursor, changed, the
refresh is a display update: a :class:`spec.trace.DisplayUpdate` event with
the changed rows' cells, the cursor and a hash of the whole frame. The
display timer runs once per period: the first pass of qemu-dm's main loop
in a new period (``clock // REFRESH_NS`` greater than the last one)
refreshes. qemu-dm asks Xen to preempt the vcpu at the next period boundary
(its timer deadline) only when a refresh there can find something (a page
is dirty or a CRTC register was written): a refresh that finds nothing does
nothing, so an idle screen neither shows in the trace nor keeps a halted
vcpu's clock running. When the domain ends, qemu-dm refreshes once more, so
that the trace ends with the final frame.

The picture (IBM VGA technical reference, "Alphanumeric modes")
---------------------------------------------------------------

Mode 3 is 80 columns by 25 rows of 16-bit cells: the character (code page
437) in the low byte, the attribute in the high byte (foreground colour in
bits 3:0, background in bits 6:4, bit 7 blink; the trace carries the
cells as they are, and the pictures hvmspec draws show blinking cells
steadily). The
first cell shown is the CRTC start address (registers 0x0C high, 0x0D low),
in cells from the start of the window; each row is ``2 * offset`` cells
further on (CRTC register 0x13, 40 in mode 3), wrapping at the end of the
32 KiB window. A guest scrolls by moving the start address.

The cursor is at CRTC registers 0x0E (high) and 0x0F (low), a cell address
in the same space; it shows when it falls on the screen and register 0x0A
bit 5 (cursor off) is clear, from scan line 0x0A bits 4:0 to 0x0B bits 4:0.

The VGA BIOS that hvmloader runs leaves the VGA in mode 3; qemu-dm's VGA
starts in that state (the register values of the standard mode-3 table)
and with its memory as the BIOS leaves it: every cell a blank (0x20) on
light grey (0x07).

Registers
---------

======================= ============================================================
port                     register
======================= ============================================================
0x3C0 / 0x3C1            attribute controller: index and data share 0x3C0 through a
                         flip-flop (index first), reset by reading 0x3DA; 0x3C1 reads
0x3C2 / 0x3CC            miscellaneous output: write / read
0x3C4 / 0x3C5            sequencer index / data
0x3C6 .. 0x3C9           DAC: pixel mask, read index, write index, data (red, green,
                         blue in turn; the index advances after blue)
0x3CE / 0x3CF            graphics controller index / data
0x3D4 / 0x3D5            CRTC index / data (registers 0x00-0x18)
0x3DA                    input status 1 (read): bit 0 display disabled, bit 3
                         vertical retrace, on the virtual clock
======================= ============================================================

Reads of any other port of the range return 0xFF; writes to it are ignored.
So do the CRTC and input status ports while the miscellaneous output
register's bit 0 (I/O address select) is clear: they are then at 0x3B4,
0x3B5 and 0x3BA, the monochrome addresses, which are not emulated. (A VGA
that no BIOS has set up, as QEMU's under ``-bios`` with a guest of
hvmspec's, starts that way; the guests set the register first, as a mode
set does.)
Registers are kept as written (the DAC and attribute palettes, the
sequencer and graphics registers do not change the text picture in this
model, which always draws with the default palette).

Input status 1 follows the mode-3 timing (VESA 720x400 at 70 Hz): a
28.322 MHz dot clock, lines of 900 dots of which 720 are shown, frames of
449 lines of which 400 are shown, vertical retrace during lines 412 and
413. Bit 0 is set outside the shown part of a line or frame.
"""

from __future__ import annotations

import ctypes
import hashlib
from typing import Protocol

from spec import platform, trace

COLUMNS, ROWS = 80, 25
#: qemu-dm's display refresh period, in virtual ns (one instruction is one ns)
REFRESH_NS = 1_000_000
WINDOW_CELLS = platform.VGA_TEXT_SIZE // 2
BLANK = bytes((0x20, 0x07))
FIRST_PFN = platform.VGA_TEXT_BASE >> platform.PAGE_SHIFT
NR_PAGES = platform.VGA_TEXT_SIZE >> platform.PAGE_SHIFT

# the standard mode-3 register values (IBM VGA technical reference, table of
# video modes; the same table is in every VGA BIOS)
MODE3_CRTC = bytes.fromhex("5f4f50825581bf1f004f0d0e000000009c8e8f281f96b9a3ff")
MODE3_SEQUENCER = bytes.fromhex("0300030002")
MODE3_GRAPHICS = bytes.fromhex("000000000010" "0e00ff")
MODE3_ATTRIBUTE = bytes.fromhex("00010203040514380738393a3b3c3d3e3f" "0c000f0800")
MODE3_MISC = 0x67

# the ports that move with the I/O address select (miscellaneous output bit 0)
COLOUR_PORTS = (0x3D4, 0x3D5, 0x3DA)

# CRTC registers the picture depends on
CRTC_OFFSET = 0x13
CRTC_CURSOR_START, CRTC_CURSOR_END = 0x0A, 0x0B
CRTC_START_HIGH, CRTC_START_LOW = 0x0C, 0x0D
CRTC_CURSOR_HIGH, CRTC_CURSOR_LOW = 0x0E, 0x0F
CURSOR_OFF = 0x20

# input status 1 timing (module docstring)
DOT_HZ = 28_322_000
LINE_DOTS, SHOWN_DOTS = 900, 720
FRAME_LINES, SHOWN_LINES = 449, 400
RETRACE_LINES = range(412, 414)


class DisplayHost(Protocol):
    """What the VGA asks of Xen, through libxc."""

    def map_vram(self, gpa: int, buffer: ctypes.Array) -> None: ...

    def track_dirty_vram(self, first_pfn: int, nr: int) -> int: ...

    def dirty_vram_pending(self) -> bool: ...

    def clock_ns(self) -> int: ...


def frame_hash(rows: list[bytes], cursor: list[int]) -> str:
    """The frame's identity: SHA-256 of the rows' cells then the cursor's
    numbers (one byte each), first 16 hex digits."""
    return hashlib.sha256(b"".join(rows) + bytes(cursor)).hexdigest()[:16]


class Vga:
    """The VGA of one domain, its video memory and its display scanner."""

    name = "vga"
    sizes = (1,)

    def __init__(self, host: DisplayHost) -> None:
        self.host = host
        self.vram = ctypes.create_string_buffer(BLANK * WINDOW_CELLS, platform.VGA_TEXT_SIZE)
        self.crtc = bytearray(MODE3_CRTC)
        self.sequencer = bytearray(MODE3_SEQUENCER)
        self.graphics = bytearray(MODE3_GRAPHICS)
        self.attribute = bytearray(MODE3_ATTRIBUTE)
        self.misc = MODE3_MISC
        self.dac = bytearray(3 * 256)
        self.dac_mask = 0xFF
        self.dac_read = self.dac_write = 0          # colour index * 3 + component
        self.crtc_index = self.sequencer_index = self.graphics_index = 0
        self.attribute_index = 0
        self.attribute_flip = False                 # False: the next 0x3C0 write is an index
        self.changed = False                        # a register the picture uses was written
        host.map_vram(platform.VGA_TEXT_BASE, self.vram)
        self.host.track_dirty_vram(FIRST_PFN, NR_PAGES)     # start tracking: all dirty
        self.rows = self.picture_rows(range(ROWS))
        self.layout = self._layout()
        self.cursor = self.cursor_position()

    # --- registers -----------------------------------------------------------------

    def decoded(self, port: int) -> bool:
        """The CRTC and input status answer at 0x3Dx only while the
        miscellaneous output register's I/O address select (bit 0) picks
        the colour addresses; with it clear they are at 0x3Bx (monochrome),
        which this colour VGA does not emulate."""
        return port not in COLOUR_PORTS or bool(self.misc & 1)

    def io_read(self, offset: int, size: int) -> int:
        port = 0x3C0 + offset
        if not self.decoded(port):
            return 0xFF
        if port == 0x3C1:
            return self._indexed(self.attribute, self.attribute_index)
        if port == 0x3CC:
            return self.misc
        if port == 0x3C4:
            return self.sequencer_index
        if port == 0x3C5:
            return self._indexed(self.sequencer, self.sequencer_index)
        if port == 0x3C6:
            return self.dac_mask
        if port == 0x3C9:
            value, self.dac_read = self.dac[self.dac_read], (self.dac_read + 1) % len(self.dac)
            return value
        if port == 0x3CE:
            return self.graphics_index
        if port == 0x3CF:
            return self._indexed(self.graphics, self.graphics_index)
        if port == 0x3D4:
            return self.crtc_index
        if port == 0x3D5:
            return self._indexed(self.crtc, self.crtc_index)
        if port == 0x3DA:
            self.attribute_flip = False
            return self.input_status()
        return 0xFF

    def io_write(self, offset: int, size: int, value: int) -> None:
        port = 0x3C0 + offset
        if not self.decoded(port):
            return
        if port == 0x3C0:
            if self.attribute_flip:
                self._store(self.attribute, self.attribute_index, value)
            else:
                self.attribute_index = value & 0x1F
            self.attribute_flip = not self.attribute_flip
        elif port == 0x3C2:
            self.misc = value
        elif port == 0x3C4:
            self.sequencer_index = value
        elif port == 0x3C5:
            self._store(self.sequencer, self.sequencer_index, value)
        elif port == 0x3C6:
            self.dac_mask = value
        elif port == 0x3C7:
            self.dac_read = 3 * value
        elif port == 0x3C8:
            self.dac_write = 3 * value
        elif port == 0x3C9:
            self.dac[self.dac_write] = value & 0x3F
            self.dac_write = (self.dac_write + 1) % len(self.dac)
        elif port == 0x3CE:
            self.graphics_index = value
        elif port == 0x3CF:
            self._store(self.graphics, self.graphics_index, value)
        elif port == 0x3D4:
            self.crtc_index = value
        elif port == 0x3D5:
            self._store(self.crtc, self.crtc_index, value)
            self.changed = True

    @staticmethod
    def _indexed(registers: bytearray, index: int) -> int:
        return registers[index] if index < len(registers) else 0xFF

    @staticmethod
    def _store(registers: bytearray, index: int, value: int) -> None:
        if index < len(registers):
            registers[index] = value

    def input_status(self) -> int:
        """Input status 1 on the virtual clock (module docstring)."""
        dot = self.host.clock_ns() * DOT_HZ // 1_000_000_000 % (LINE_DOTS * FRAME_LINES)
        line, column = divmod(dot, LINE_DOTS)
        disabled = column >= SHOWN_DOTS or line >= SHOWN_LINES
        return int(disabled) | (0x08 if line in RETRACE_LINES else 0)

    # --- the picture ---------------------------------------------------------------------

    def start_address(self) -> int:
        return self.crtc[CRTC_START_HIGH] << 8 | self.crtc[CRTC_START_LOW]

    def stride(self) -> int:
        """Cells from one row to the next."""
        return 2 * self.crtc[CRTC_OFFSET]

    def _layout(self) -> tuple[int, int]:
        return self.start_address(), self.stride()

    def row_cells(self, row: int) -> list[int]:
        """The window cells (0 .. 16383) that row ``row`` shows."""
        first = self.start_address() + row * self.stride()
        return [(first + column) % WINDOW_CELLS for column in range(COLUMNS)]

    def picture_rows(self, rows) -> list[bytes]:
        """The cells of each of ``rows``, two bytes each, as the VGA reads them."""
        memory = self.vram.raw
        return [b"".join(memory[2 * cell:2 * cell + 2] for cell in self.row_cells(row))
                for row in rows]

    def cursor_position(self) -> list[int]:
        """``[row, column, first scan line, last scan line]``, or ``[]``."""
        start = self.crtc[CRTC_CURSOR_START]
        if start & CURSOR_OFF or not self.stride():
            return []
        location = self.crtc[CRTC_CURSOR_HIGH] << 8 | self.crtc[CRTC_CURSOR_LOW]
        offset = (location - self.start_address()) % WINDOW_CELLS
        row, column = divmod(offset, self.stride())
        if row >= ROWS or column >= COLUMNS:
            return []
        return [row, column, start & 0x1F, self.crtc[CRTC_CURSOR_END] & 0x1F]

    # --- the display scanner -----------------------------------------------------------------

    def next_refresh(self, period: int) -> int | None:
        """The boundary after ``period`` when a refresh there can find
        something (a page is dirty or a picture register was written)."""
        if not (self.changed or self.host.dirty_vram_pending()):
            return None
        return (period + 1) * REFRESH_NS

    def refresh(self) -> trace.DisplayUpdate | None:
        """One refresh (module docstring): the update, or None if nothing changed."""
        dirty = self.host.track_dirty_vram(FIRST_PFN, NR_PAGES)
        self.changed = False
        layout = self._layout()
        if layout != self.layout:
            stale = list(range(ROWS))
        else:
            stale = [row for row in range(ROWS) if self._in_dirty_page(row, dirty)]
        self.layout = layout
        fresh = self.picture_rows(stale)
        changed = [row for row, cells in zip(stale, fresh) if cells != self.rows[row]]
        for row, cells in zip(stale, fresh):
            self.rows[row] = cells
        cursor = self.cursor_position()
        if not changed and cursor == self.cursor:
            return None
        self.cursor = cursor
        return trace.DisplayUpdate(icount=self.host.clock_ns(), rows=changed,
                                   cells=[self.rows[row].hex() for row in changed],
                                   cursor=cursor, frame=frame_hash(self.rows, cursor))

    def _in_dirty_page(self, row: int, bitmap: int) -> bool:
        pages = {2 * cell >> platform.PAGE_SHIFT for cell in self.row_cells(row)}
        return any(bitmap >> page & 1 for page in pages)
