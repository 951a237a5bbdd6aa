"""The VGA's scanner: the picture the registers and video memory make.

Room: turning a :class:`spec.devices.vga_registers.Display` (what the
registers say the picture is), its colours
(:meth:`~spec.devices.vga_registers.VgaRegisters.palette_rgb`) and video
memory (stored as :mod:`spec.devices.vga_memory` says: plane *p* of word *w*
is byte ``4 * w + p``) into pixels, 3 bytes (red, green, blue) a pixel, row
after row. The rules are QEMU 7.2's ``hw/display/vga.c`` (``vga_draw_text``,
``vga_draw_graphic``, ``vga_draw_blank``) and ``vga-helpers.h`` (the glyph
and line drawers), the peer the tests compare with pixel for pixel through
its ``screendump``; the hardware they model is the IBM VGA Technical
Reference's ("Sequencer Registers", "CRT Controller Registers",
"Attribute Controller Registers"). Where the two differ this module follows
QEMU and says so. Imports only :mod:`spec.devices.vga_registers` (the mode
names and the :class:`~spec.devices.vga_registers.Display` tuple).

Bands
-----

The picture is cut into *bands* (:func:`bands`): in text modes one band a
character row, in graphics modes one band a run of picture lines drawn from
the same memory line (double scan and the maximum scan line repeat a memory
line). A band lists the byte spans of video memory it reads, so that a
device redraws only the bands whose spans hold a changed byte
(:func:`draw_band`); :func:`draw` is every band. In text modes the glyphs
(plane 2 of the font) are read by every band: :func:`glyph_spans` lists
them, and a change there may change any band.

Text
----

Character cell *k* of a row whose words start at byte *a* is word
``a / 4 + k``: its character in plane 0 (byte ``a + 4k``), its attribute in
plane 1 (``a + 4k + 1``). Rows start at the start address (CRTC 0x0C:0x0D)
and each next row ``line_offset`` bytes on (CRTC 0x13 times 8). The glyph of
character *c* is 32 rows of plane 2, row *r* at byte ``F + 128c + 4r``, where
*F* is the font the attribute's bit 3 selects (sequencer register 3:
character map A when the bit is set, B when clear; ``Display.fonts``). Of
each glyph row the cell shows bit 7 (left) to bit 0 in the attribute's
foreground colour (bits 3:0) where set, background (bits 7:4) where clear;
9-dot cells add a ninth column, the background, or the eighth column again
for characters ``0xB0``-``0xDF`` while attribute register 0x10 bit 2 (line
graphics) is set; 16-dot cells (sequencer register 1 bit 3: 40 columns) show
each column twice. A cell whose word is the cursor's (CRTC 0x0E:0x0F) shows,
while the cursor is on (CRTC 0x0A bit 5 clear) and in its visible phase,
scan lines CRTC 0x0A bits 4:0 to CRTC 0x0B bits 4:0 (at most the cell's
last) in the foreground colour across the whole cell, nothing when the
first is after the last.

Differences from the IBM VGA, as QEMU 7.2 draws:

- no attribute blink: bit 7 of the attribute is always the background's
  bit 3 (intensity), whatever attribute register 0x10 bit 3 (blink enable)
  says ("Missing: flashing" in ``vga_draw_text``);
- line graphics repeat the 8th column for ``0xB0``-``0xDF`` (IBM:
  ``0xC0``-``0xDF``);
- line compare takes effect at a character row's end: the row that
  contains picture line *line compare* is drawn whole, and the next row
  starts at byte 0 (IBM: the next scan line);
- the cursor is drawn wherever its word is shown (also after the line
  compare's restart), the underline (attribute register 0x10 bit 1,
  CRTC 0x14), double scan, the pel panning (attribute register 0x13) and
  the preset row scan (CRTC 0x08) are not drawn;
- a text mode of one cell or of more than 16000 cells (QEMU's
  ``CH_ATTR_SIZE``) is not drawn: QEMU keeps the picture it had. Here it
  has no bands.

The cursor's blink
------------------

QEMU turns the cursor's phase over at a refresh that comes at least
``VGA_TEXT_CURSOR_PERIOD_MS / 2`` = 266 ms of its virtual clock after the
last turn, and turns it over at once after every change between text,
graphics and blank; the phase starts off, so the first text picture shows
the cursor. Here the phase is a pure function of virtual time
(:func:`cursor_visible`): on during ``[2n * 266 ms, (2n + 1) * 266 ms)``,
off during the others. This is QEMU's phase when a picture is taken at
least every 266 ms from time 0 at the turning points (such as a qtest
taking pictures between ``clock_step`` commands), with the text mode set
once; QEMU's drifts by up to a refresh interval at each turn and depends
on how many mode changes came before, which no pure function of time can
follow.

Graphics
--------

Picture line *y* reads the memory line at byte *addr*. The first starts at
the start address; after each memory line (the maximum scan line, CRTC 0x09
bits 4:0, plus 1, times 2 with double scan, bit 7, picture lines; 1 or 2
while CRTC 0x17 bit 0 is clear) *addr* moves ``line_offset`` on, but only
after lines whose number has every bit set that CRTC 0x17 bits 1:0 have
clear (``(cr17 & 3) ^ 3``). While CRTC 0x17 bit 0 is clear the memory
line's bit 0 replaces address bit 14 (bit 15 when CRTC 0x17 bit 6 is set);
while bit 1 is clear, its bit 1 replaces address bit 15 (CGA and Hercules
banks). After picture line *line compare* the next line reads from byte 0.
Every read wraps at the end of video memory. How a line's bytes become
pixels:

``planar16``
    each word gives 8 pixels, pixel *i* (left to right) the 4-bit value of
    bit ``7 - i`` of planes 0 to 3 (bits 0 to 3), planes not enabled by
    attribute register 0x12 read as 0; each shown twice at half dot clock.
``cga4``
    each word gives 8 pixels: 4 from planes 0 (bits 1:0) and 2 (bits 3:2),
    then 4 from planes 1 and 3, two bits a pixel from bit 7 down.
``chain4-256``
    each byte is one pixel's colour, shown twice (QEMU draws mode 13h's
    320x200 as 640x400); the line reads ``width / 2`` bytes.
``linear``
    VBE at 8 bits a pixel: a byte a pixel through the palette; 15 bits: a
    little-endian word ``xRRRRRGGGGGBBBBB``, each component shifted to the
    top of 8 bits, the low 3 zero; 16 bits: ``RRRRRGGGGGGBBBBB``, each
    component's top bits repeated into the low ones (QEMU shows 16-bit
    video memory itself to its display, and its conversion by pixman
    repeats them; 15-bit lines go through ``vga_draw_line15``, which does
    not); 24 bits: bytes blue, green, red; 32 bits: blue, green, red, unused.

Differences from the IBM VGA, as QEMU 7.2 draws: no pel panning (attribute
register 0x13), no 8-bit colour packing by attribute register 0x10 bit 6
(chain-4's bytes are the colours), no plane enable in 256-colour modes.

What is drawn when
------------------

The spec's picture is always what the registers and video memory say now.
QEMU redraws only what it sees change: a text cell when its character or
attribute changes, everything when the palette, the start address, the line
offset or compare, the fonts or the size change; a graphics line when its
video memory was written. A change of the line graphics bit, the plane
enable or CRTC 0x17 alone leaves QEMU's picture as it was until something
else redraws it; a device built on this module redraws the bands it is
told to (a register change that moves pixels redraws all).

Blank
-----

While attribute index bit 5 is clear the screen shows nothing: QEMU paints
the last picture black, at its size. Here the blank display has no bands
and :func:`draw` gives no pixels; the device shows black.

Where Xen 3.0.4's qemu-dm differs
---------------------------------

Xen 3.0.4's ``tools/ioemu/hw/vga.c`` and ``vga_template.h`` (QEMU 0.8) draw
by the same rules but for:

- the cursor does not blink: it shows whenever CRTC 0x0A bit 5 is clear;
- text modes have no line compare: rows go on from the start address;
- the maximum scan line is ignored (lines repeat only by double scan) in
  the CGA shift mode (graphics controller register 5 bits 6:5 = 1) rather
  than while CRTC 0x17 bit 0 is clear;
- lines are read from video memory without wrapping at its end;
- 16-bit pixels leave the low bits of each component 0, as 15-bit ones do
  (no shared display surface, no pixman conversion);
- the scanner reads the guest's sequencer registers even while VBE is
  enabled (no VBE copy).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

from spec.devices.vga_registers import (BLANK, CGA4, CHAIN4_256, LINEAR, PLANAR16, TEXT,
                                        Display)

#: QEMU's ``VGA_TEXT_CURSOR_PERIOD_MS / 2``: 266 ms on, 266 off (its period is
#: ``1000 * 2 * 16 / 60`` ms, 16 frames at 60 Hz twice, in integer milliseconds)
CURSOR_HALF_PERIOD_NS = (1000 * 2 * 16 // 60) // 2 * 1_000_000
#: the most text cells QEMU draws (``CH_ATTR_SIZE``, 160x100)
MAX_CELLS = 160 * 100

Span = tuple[int, int]                 # (first byte of video memory, bytes)
_PIXEL_BYTES = {8: 1, 15: 2, 16: 2, 24: 3, 32: 4}


class Band(NamedTuple):
    """Picture lines ``first`` to ``first + lines - 1``, drawn from the
    video memory words starting at byte ``address`` (graphics: before the
    wrap at the end of video memory); ``spans`` are the bytes of video
    memory they read, ``(start, length)`` each, within video memory (text:
    glyphs aside, :func:`glyph_spans`)."""

    first: int
    lines: int
    address: int
    spans: tuple[Span, ...]


def cursor_visible(now_ns: int) -> bool:
    """The cursor's blink phase at virtual time ``now_ns`` (module
    docstring, "The cursor's blink")."""
    return now_ns // CURSOR_HALF_PERIOD_NS % 2 == 0


def next_blink_turn(now_ns: int) -> int:
    """The first virtual time after ``now_ns`` at which the cursor's phase
    turns over (a device redraws the cursor's bands then)."""
    return (now_ns // CURSOR_HALF_PERIOD_NS + 1) * CURSOR_HALF_PERIOD_NS


def cursor_bands(display: Display, band_list: Sequence[Band]) -> list[Band]:
    """The bands of a text picture that show the cursor's word (none while
    it is hidden): the bands whose pixels change when its phase turns."""
    if display.mode != TEXT or display.cursor is None:
        return []
    at = 4 * display.cursor[0]
    return [band for band in band_list
            if band.address <= at < band.address + 4 * display.columns]


# --- bands ------------------------------------------------------------------------------------


def bands(display: Display, vram_size: int) -> list[Band]:
    """The bands of the picture ``display`` describes, over video memory of
    ``vram_size`` bytes (a power of two)."""
    if display.mode == BLANK:
        return []
    if display.mode == TEXT:
        return _text_bands(display, vram_size)
    return _graphic_bands(display, vram_size)


def _text_bands(display: Display, vram_size: int) -> list[Band]:
    cells = display.columns * display.rows
    if cells <= 1 or cells > MAX_CELLS:
        return []
    out, offset, line, height = [], display.start, 0, display.char_height
    for row in range(display.rows):
        length = min(4 * display.columns - 2, vram_size - offset)
        spans = ((offset, length),) if length > 0 else ()
        out.append(Band(row * height, height, offset, spans))
        offset += display.line_offset
        if line < display.line_compare <= line + height:
            offset = 0
        line += height
    return out


def glyph_spans(display: Display) -> list[Span]:
    """The spans holding the glyphs a text picture reads: of them only the
    plane 2 bytes (``index % 4 == 2``) are read, and a change to one may
    change every band. None outside text modes."""
    if display.mode != TEXT:
        return []
    length = 128 * 255 + 4 * (display.char_height - 1) + 1
    return [(font, length) for font in sorted(set(display.fonts))]


def _line_bytes(display: Display) -> int:
    """How many bytes of video memory one picture line reads."""
    if display.mode in (PLANAR16, CGA4):
        width = display.width // 2 if display.half_clock else display.width
        return 4 * (width >> 3)
    if display.mode == CHAIN4_256 or display.depth not in (8, 15, 16, 24, 32):
        return 4 * (display.width >> 3)                   # QEMU's vga_draw_line8d2
    return display.width * _PIXEL_BYTES[display.depth]


def line_addresses(display: Display) -> list[int]:
    """The byte of video memory each picture line of a graphics mode starts
    at, before the wrap at the end of video memory (module docstring,
    "Graphics"; QEMU's ``vga_draw_graphic``)."""
    cr17 = display.crtc_mode
    mask = (cr17 & 3) ^ 3
    multi_scan = display.scan_lines - 1
    addresses, start, memory_line, run = [], display.start, 0, multi_scan
    for y in range(display.height):
        address = start
        if not cr17 & 1:
            shift = 14 + (cr17 >> 6 & 1)
            address = address & ~(1 << shift) | (memory_line & 1) << shift
        if not cr17 & 2:
            address = address & ~0x8000 | (memory_line & 2) << 14
        addresses.append(address & 0xFFFFFFFF)
        if not run:
            if memory_line & mask == mask:
                start += display.line_offset
            memory_line += 1
            run = multi_scan
        else:
            run -= 1
        if y == display.line_compare:
            start = 0
    return addresses


def _wrapped(address: int, length: int, vram_size: int) -> tuple[Span, ...]:
    """``length`` bytes from ``address``, wrapping at the end of video memory."""
    address %= vram_size
    if address + length <= vram_size:
        return ((address, length),)
    return ((address, vram_size - address), (0, address + length - vram_size))


def _graphic_bands(display: Display, vram_size: int) -> list[Band]:
    length = _line_bytes(display)
    out: list[Band] = []
    for y, address in enumerate(line_addresses(display)):
        if out and out[-1].address == address and out[-1].first + out[-1].lines == y:
            out[-1] = out[-1]._replace(lines=out[-1].lines + 1)
        else:
            out.append(Band(y, 1, address, _wrapped(address, length, vram_size)))
    return out


# --- drawing ----------------------------------------------------------------------------------


def draw(display: Display, palette: Sequence[tuple[int, int, int]], vram: bytes | bytearray,
         blink: bool) -> bytes:
    """The whole picture: ``display.width * display.height`` pixels, RGB,
    row after row (empty when blank). ``blink`` is the cursor's phase
    (:func:`cursor_visible`)."""
    return b"".join(draw_band(display, palette, vram, band, blink)
                    for band in bands(display, len(vram)))


def draw_band(display: Display, palette: Sequence[tuple[int, int, int]],
              vram: bytes | bytearray, band: Band, blink: bool) -> bytes:
    """The pixels of one band: ``band.lines`` rows of ``display.width``
    pixels, RGB."""
    channels = _channels(palette)
    if display.mode == TEXT:
        return _text_band(display, channels, vram, band, blink)
    row = _graphic_line(display, channels, vram, band.address)
    return row * band.lines


def _channels(palette: Sequence[tuple[int, int, int]]) -> tuple[bytes, bytes, bytes]:
    """Translation tables from a colour number to its red, green and blue."""
    tables = []
    for component in range(3):
        values = [colour[component] for colour in palette]
        tables.append(bytes(values + [0] * (256 - len(values))))
    return tables[0], tables[1], tables[2]


def _rgb(indexes: bytes | bytearray, channels: tuple[bytes, bytes, bytes]) -> bytes:
    """Colour numbers, one a byte, as RGB pixels."""
    out = bytearray(3 * len(indexes))
    out[0::3] = indexes.translate(channels[0])
    out[1::3] = indexes.translate(channels[1])
    out[2::3] = indexes.translate(channels[2])
    return bytes(out)


# --- text -------------------------------------------------------------------------------------

def _glyph_row_tables() -> tuple[list[bytes], list[bytes], list[bytes], list[bytes]]:
    """For each glyph byte, its dots as 0/1 bytes: 8 wide, 9 wide with a
    background ninth, 9 wide with the eighth repeated, 16 wide."""
    eight = [bytes(b >> (7 - i) & 1 for i in range(8)) for b in range(256)]
    nine = [row + b"\0" for row in eight]
    repeat = [row + row[7:] for row in eight]
    sixteen = [bytes(dot for dot in row for _ in range(2)) for row in eight]
    return eight, nine, repeat, sixteen


_EIGHT, _NINE, _REPEAT, _SIXTEEN = _glyph_row_tables()
#: colour pair tables: translate 0/1 dots into the attribute's background/foreground
_PAIRS = [bytes([attribute >> 4, attribute & 0x0F]) + bytes(254) for attribute in range(256)]


def _text_band(display: Display, channels: tuple[bytes, bytes, bytes], vram: bytes | bytearray,
               band: Band, blink: bool) -> bytes:
    width, height, columns = display.char_width, display.char_height, display.columns
    cursor_at, first, last = -1, 0, -1
    if display.cursor is not None and blink:
        cursor_at, first, last = display.cursor
        cursor_at *= 4
        last = min(last, height - 1)
    rows: list[list[bytes]] = [[] for _ in range(height)]
    blank = bytes(width)
    for k in range(columns):
        src = band.address + 4 * k
        if src + 2 > len(vram):
            for pieces in rows:
                pieces.append(blank)
            continue
        char, attribute = vram[src], vram[src + 1]
        font = display.fonts[attribute >> 3 & 1] + 128 * char
        if width == 16:
            table = _SIXTEEN
        elif width == 8:
            table = _EIGHT
        elif display.line_graphics and 0xB0 <= char <= 0xDF:
            table = _REPEAT
        else:
            table = _NINE
        pair = _PAIRS[attribute]
        for r in range(height):
            rows[r].append(table[vram[font + 4 * r]].translate(pair))
        if src == cursor_at and first <= last:
            solid = bytes([attribute & 0x0F]) * width
            for r in range(first, last + 1):
                rows[r][-1] = solid
    return b"".join(_rgb(b"".join(pieces), channels) for pieces in rows)


# --- graphics ---------------------------------------------------------------------------------

def _bit_tables() -> tuple[list[bytes], list[bytes]]:
    """Per byte: its 8 bits as one byte each (bit 7 first), and its 4 2-bit
    fields as one byte each (bits 7:6 first)."""
    bits = [bytes(b >> (7 - i) & 1 for i in range(8)) for b in range(256)]
    pairs = [bytes(b >> (6 - 2 * i) & 3 for i in range(4)) for b in range(256)]
    return bits, pairs


_BITS, _PAIRS2 = _bit_tables()


def _spread(data: bytes, table: list[bytes]) -> int:
    """Each byte of ``data`` through ``table``, as one big number."""
    return int.from_bytes(b"".join(map(table.__getitem__, data)), "big")


def _read(vram: bytes | bytearray, address: int, length: int) -> bytes:
    """``length`` bytes of video memory from ``address``, wrapping."""
    return b"".join(bytes(vram[start:start + size])
                    for start, size in _wrapped(address, length, len(vram)))


def _graphic_line(display: Display, channels: tuple[bytes, bytes, bytes],
                  vram: bytes | bytearray, address: int) -> bytes:
    data = _read(vram, address, _line_bytes(display))
    if display.mode == PLANAR16:
        indexes = _planar_indexes(data, display.plane_enable)
    elif display.mode == CGA4:
        indexes = _cga_indexes(data, display.plane_enable)
    elif display.mode == CHAIN4_256 or display.depth not in (8, 15, 16, 24, 32):
        indexes = _doubled(data)
    elif display.depth == 8:
        indexes = data
    else:
        return _direct(data, display.depth)
    if display.half_clock and display.mode in (PLANAR16, CGA4):
        indexes = _doubled(indexes)
    return _rgb(indexes, channels)


def _plane(data: bytes, plane: int, enable: int) -> bytes:
    """Plane ``plane``'s bytes of the words ``data`` holds (zeros when not enabled)."""
    if not enable >> plane & 1:
        return bytes(len(data) // 4)
    return data[plane::4]


def _planar_indexes(data: bytes, enable: int) -> bytes:
    value = 0
    for plane in range(4):
        value |= _spread(_plane(data, plane, enable), _BITS) << plane
    return value.to_bytes(2 * len(data), "big")


def _cga_indexes(data: bytes, enable: int) -> bytes:
    """4 pixels from planes 0 and 2, then 4 from planes 1 and 3, a word."""
    halves = []
    for low, high in ((0, 2), (1, 3)):
        value = (_spread(_plane(data, low, enable), _PAIRS2)
                 | _spread(_plane(data, high, enable), _PAIRS2) << 2)
        halves.append(value.to_bytes(len(data), "big"))
    out = bytearray(2 * len(data))
    for i in range(4):
        out[i::8] = halves[0][i::4]
        out[4 + i::8] = halves[1][i::4]
    return bytes(out)


def _doubled(data: bytes) -> bytes:
    out = bytearray(2 * len(data))
    out[0::2] = data
    out[1::2] = data
    return bytes(out)


def _direct_tables() -> dict[int, tuple[bytes, bytes, bytes, bytes]]:
    """Per depth, translation tables from a pixel's high byte to its red and
    to the high byte's share of its green, from its low byte to the low
    byte's share of green and to its blue (module docstring: 15 bits keep
    the low 3 bits of each component 0, 16 bits repeat the top bits)."""
    def table(function) -> bytes:
        return bytes(function(byte) & 0xFF for byte in range(256))

    return {
        15: (table(lambda hi: hi << 1 & 0xF8), table(lambda hi: (hi & 3) << 6),
             table(lambda lo: lo >> 5 << 3), table(lambda lo: lo << 3 & 0xF8)),
        16: (table(lambda hi: hi & 0xF8 | hi >> 5),
             table(lambda hi: (hi & 7) << 5 | hi >> 1 & 3),
             table(lambda lo: lo >> 5 << 2),
             table(lambda lo: (lo << 3 & 0xF8) | (lo >> 2 & 7))),
    }


_DIRECT = _direct_tables()


def _direct(data: bytes, depth: int) -> bytes:
    """Pixels that carry their own colour (15, 16, 24, 32 bits)."""
    if depth in (15, 16):
        red, green_high, green_low, blue = _DIRECT[depth]
        low, high = data[0::2], data[1::2]
        green = (int.from_bytes(high.translate(green_high), "big")
                 | int.from_bytes(low.translate(green_low), "big"))
        out = bytearray(3 * len(low))
        out[0::3] = high.translate(red)
        out[1::3] = green.to_bytes(len(low), "big")
        out[2::3] = low.translate(blue)
        return bytes(out)
    size = depth // 8
    out = bytearray(3 * (len(data) // size))
    out[0::3] = data[2::size]
    out[1::3] = data[1::size]
    out[2::3] = data[0::size]
    return bytes(out)
