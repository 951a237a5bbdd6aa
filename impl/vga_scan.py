"""The VGA's scanner for the impl engine: pixels from the registers' Display,
the colours and video memory, band by band.

Room: the picture of :class:`impl.vga_ports.Display` over video memory in
qemu-dm's interleaved layout (plane *p* of word *w* is byte ``4 * w + p``),
as RGB bytes, cut into the same bands (character rows, runs of picture lines
drawn from one memory line) with the same video memory spans, for a device
that redraws only the bands whose spans changed. Imports nothing of
``spec/``; the rules (QEMU 7.2's ``vga_draw_text``, ``vga_draw_graphic`` and
line drawers) are stated as prose in ``spec/devices/vga_scanner.py``, whose
bands and pixels this module gives (``tests/test_impl_vga.py`` compares
them over every mode).

How it is fast: no Python loop runs per pixel, and none per cell but one
that finds each cell's glyph. A text band reads its characters and
attributes as two strided slices; each cell's glyph column is one strided
slice of the font, and the cells' glyphs are turned into scan lines by
strided slices of their concatenation; the dots of all the band's lines
come from eight ``bytes.translate`` (one a dot column, into every 8th or
9th byte of the band), and foreground and background meet them as three
big-integer operations over the whole band (line graphics' ninth column is
the dots shifted one byte under a mask). A 16-colour planar line is its
four planes' bytes (four strided slices) one after the other, unpacked to
pixels by Pillow's ``P;4L`` raw decoder (the one PCX's 4-plane images
use), many lines in one call when :func:`draw_bands` draws them; a CGA
line is its words' plane 0/1 byte pairs and plane 2/3 byte pairs (two
strided 16-bit views), each unpacked as 2-bit pixels by Pillow's ``P;2``
decoder, the high pair's shifted over the low's as big integers; 15- and
16-bit pixels are split into components by
``bytes.translate`` of their low and high bytes. Colour numbers become RGB
by three ``bytes.translate`` into a strided bytearray. Bands are kept for
the last Display, palettes' translation tables for the last palette object,
and the RGB of character rows by their glyphs, attributes and cursor, and
of graphics lines by their bytes (up to 16 MiB each: a picture repeats rows
and lines, a scroll moves them, a background or a cleared screen is one
line many times), under the same mode and colours.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

from PIL import Image

#: QEMU's VGA_TEXT_CURSOR_PERIOD_MS / 2: the cursor's blink half period
CURSOR_HALF_PERIOD_NS = 266_000_000
#: QEMU's CH_ATTR_SIZE: the most text cells drawn
MAX_CELLS = 16000
_PIXEL_BYTES = {8: 1, 15: 2, 16: 2, 24: 3, 32: 4}


class Band(NamedTuple):
    """Picture lines ``first`` .. ``first + lines - 1`` from the video memory
    at byte ``address``; ``spans`` the (start, length) byte runs of video
    memory they read (text glyphs aside: :func:`glyph_spans`)."""

    first: int
    lines: int
    address: int
    spans: tuple[tuple[int, int], ...]


def cursor_visible(now_ns: int) -> bool:
    """Whether the text cursor is in its shown half period at ``now_ns``."""
    return not (now_ns // CURSOR_HALF_PERIOD_NS) & 1


def next_blink_turn(now_ns: int) -> int:
    """The first virtual time after ``now_ns`` when the cursor's phase turns."""
    return now_ns - now_ns % CURSOR_HALF_PERIOD_NS + CURSOR_HALF_PERIOD_NS


def cursor_bands(display, band_list) -> list[Band]:
    """The bands whose cells include the cursor's word (its phase turning
    redraws them); none outside text or while the cursor is hidden."""
    if display.mode != "text" or display.cursor is None:
        return []
    at, reach = display.cursor[0] << 2, display.columns << 2
    return [band for band in band_list if 0 <= at - band.address < reach]


# --- bands -------------------------------------------------------------------------------------

_last_bands: list = [None, None]


def bands(display, vram_size: int) -> tuple[Band, ...]:
    """The bands of ``display`` over ``vram_size`` bytes of video memory
    (the last answer is kept: a refresh with the same Display costs a
    comparison)."""
    key = (display, vram_size)
    if _last_bands[0] == key:
        return _last_bands[1]
    if display.mode == "blank":
        out: tuple[Band, ...] = ()
    elif display.mode == "text":
        out = _text_bands(display, vram_size)
    else:
        out = _graphic_bands(display, vram_size)
    _last_bands[:] = key, out
    return out


def _text_bands(display, vram_size: int) -> tuple[Band, ...]:
    columns, rows, height = display.columns, display.rows, display.char_height
    if not 1 < columns * rows <= MAX_CELLS:
        return ()
    reads = 4 * columns - 2                     # the last cell's character and attribute
    compare, step = display.line_compare, display.line_offset
    out, at = [], display.start
    for row in range(rows):
        top = row * height
        length = min(reads, vram_size - at)
        out.append(Band(top, height, at, ((at, length),) if length > 0 else ()))
        at = 0 if top < compare <= top + height else at + step
    return tuple(out)


def glyph_spans(display) -> list[tuple[int, int]]:
    """The font bytes a text picture reads (only plane 2's, every 4th, are
    glyphs); a change there may change every band. Empty outside text."""
    if display.mode != "text":
        return []
    length = 4 * (display.char_height - 1) + 128 * 255 + 1
    first, second = display.fonts
    return [(first, length)] if first == second else [(min(first, second), length),
                                                      (max(first, second), length)]


def _line_length(display) -> int:
    """Bytes of video memory one picture line reads."""
    mode, width = display.mode, display.width
    if mode == "planar16" or mode == "cga4":
        return (width >> display.half_clock) >> 3 << 2
    bytes_per_pixel = _PIXEL_BYTES.get(display.depth)
    if mode == "chain4-256" or bytes_per_pixel is None:
        return width >> 3 << 2                  # a byte a pixel pair (QEMU's line8d2)
    return width * bytes_per_pixel


def _line_starts(display) -> list[int]:
    """The byte each picture line starts at (unwrapped): the memory line
    moves on by the line offset after each run of scan lines whose memory
    line number has every bit CRTC 0x17 bits 1:0 leave clear; CGA and
    Hercules banks put the memory line's low bits in address bits 13-15;
    after the line compare the next line starts at 0."""
    cr17, step, compare = display.crtc_mode, display.line_offset, display.line_compare
    need = (cr17 & 3) ^ 3
    scan = display.scan_lines
    bank_bit = 1 << (14 + (cr17 >> 6 & 1)) if not cr17 & 1 else 0
    high_bit = 0 if cr17 & 2 else 0x8000
    starts, base, memory_line = [], display.start, 0
    left = scan                                  # picture lines left in this memory line
    for y in range(display.height):
        at = base
        if bank_bit:
            at = at & ~bank_bit | (bank_bit if memory_line & 1 else 0)
        if high_bit:
            at = at & ~0x8000 | (0x8000 if memory_line & 2 else 0)
        starts.append(at & 0xFFFFFFFF)
        left -= 1
        if not left:
            if memory_line & need == need:
                base += step
            memory_line += 1
            left = scan
        if y == compare:
            base = 0
    return starts


def _spans(at: int, length: int, vram_size: int) -> tuple[tuple[int, int], ...]:
    at %= vram_size
    over = at + length - vram_size
    return ((at, length),) if over <= 0 else ((at, length - over), (0, over))


def _graphic_bands(display, vram_size: int) -> tuple[Band, ...]:
    length = _line_length(display)
    out: list[Band] = []
    previous, first = None, 0
    for y, at in enumerate(_line_starts(display)):
        if at != previous:
            if previous is not None:
                out.append(Band(first, y - first, previous, _spans(previous, length, vram_size)))
            previous, first = at, y
    if previous is not None:
        out.append(Band(first, display.height - first, previous,
                        _spans(previous, length, vram_size)))
    return tuple(out)


# --- colours -----------------------------------------------------------------------------------

_last_palette: list = [None, None]


def _channels(palette) -> tuple[bytes, bytes, bytes]:
    """Red, green and blue translation tables (256 bytes each) of
    ``palette``: RGB bytes, or a sequence of (r, g, b). The tables of the
    last palette object are kept: a palette is not to be changed in place
    between calls."""
    if _last_palette[0] is palette:
        return _last_palette[1]
    if isinstance(palette, (bytes, bytearray)):
        rgb = bytes(palette)
    else:
        rgb = b"".join(map(bytes, palette))
    rgb = rgb.ljust(768, b"\0")
    tables = (rgb[0::3], rgb[1::3], rgb[2::3])
    _last_palette[:] = palette, tables
    return tables


def _rgb(indexes: bytes, tables: tuple[bytes, bytes, bytes]) -> bytes:
    out = bytearray(3 * len(indexes))
    out[0::3] = indexes.translate(tables[0])
    out[1::3] = indexes.translate(tables[1])
    out[2::3] = indexes.translate(tables[2])
    return bytes(out)


# --- drawing -----------------------------------------------------------------------------------


def draw(display, palette, vram, blink: bool) -> bytes:
    """The whole picture, RGB, row after row (empty when blank)."""
    return b"".join(draw_bands(display, palette, vram, bands(display, len(vram)), blink))


def draw_bands(display, palette, vram, band_list, blink: bool) -> list[bytes]:
    """:func:`draw_band` of each band of ``band_list``: the same pixels, the
    graphics lines not in the memo converted together (one Pillow call and
    one colour translation for all of them)."""
    if display.mode == "text" or len(band_list) < 2:
        return [draw_band(display, palette, vram, band, blink) for band in band_list]
    tables = _channels(palette)
    length = _line_length(display)
    context = (tables, display.mode, display.depth, display.half_clock, display.plane_enable)
    lines = [_fetch(vram, band.address, length) for band in band_list]
    found = [_line_memo.lookup(context, data) for data in lines]
    missing = [i for i, pixels in enumerate(found) if pixels is None]
    if missing:
        datas = [lines[i] for i in missing]
        for i, data, pixels in zip(missing, datas, _lines_rgb(display, tables, datas)):
            found[i] = _line_memo.keep(data, pixels)
    return [pixels * band.lines for pixels, band in zip(found, band_list)]


def draw_band(display, palette: Sequence | bytes, vram, band: Band, blink: bool) -> bytes:
    """One band's pixels: ``band.lines`` rows of ``display.width`` RGB
    pixels. ``palette``: :meth:`impl.vga_ports.VgaPorts.palette_rgb` or
    ``palette_bytes``; ``blink``: :func:`cursor_visible`."""
    tables = _channels(palette)
    if display.mode == "text":
        return _text_band(display, tables, vram, band, blink)
    return _graphic_line(display, tables, vram, band.address) * band.lines


class _Memo:
    """Pixels drawn before, by what they were drawn from, under one context
    (the colours and the mode's parameters); emptied when the context
    changes or it holds more than ``limit`` bytes."""

    def __init__(self, limit: int = 16 << 20) -> None:
        self.context, self.seen, self.size, self.limit = None, {}, 0, limit

    def lookup(self, context, key):
        if self.context != context:
            self.context, self.seen, self.size = context, {}, 0
        return self.seen.get(key)

    def keep(self, key, pixels: bytes) -> bytes:
        self.size += len(pixels) + len(key if isinstance(key, bytes) else key[0])
        if self.size > self.limit:
            self.seen, self.size = {}, len(pixels)
        self.seen[key] = pixels
        return pixels


_text_memo, _line_memo = _Memo(), _Memo()


# --- text --------------------------------------------------------------------------------------

#: _COLUMN[i]: a glyph byte to its dot in column i (bit 7 - i), 0xFF where set
_COLUMN = [bytes(0xFF if b >> (7 - i) & 1 else 0 for b in range(256)) for i in range(8)]
#: per cell width: an attribute's foreground and background colour, a cell wide
_FOREGROUND = {w: [bytes((a & 0x0F,)) * w for a in range(256)] for w in (8, 9, 16)}
_BACKGROUND = {w: [bytes((a >> 4,)) * w for a in range(256)] for w in (8, 9, 16)}
#: a character's ninth column repeats its eighth (line graphics 0xB0-0xDF): mask, 9 wide
_NINTH = [b"\0" * 8 + (b"\xff" if 0xB0 <= c <= 0xDF else b"\0") for c in range(256)]
_FONT_BYTES = 0x8000


def _text_band(display, tables, vram, band: Band, blink: bool) -> bytes:
    """A character row's RGB, from the memo when the same glyphs, attributes
    and cursor were drawn before (a scrolled row, a blank row)."""
    width, height, columns = display.char_width, display.char_height, display.columns
    at, size = band.address, len(vram)
    shown = max(0, min(columns, (size - 2 - at) // 4 + 1))        # cells whose bytes exist
    chars = bytes(vram[at:at + 4 * shown:4]).ljust(columns, b"\0")
    attrs = bytes(vram[at + 1:at + 4 * shown:4]).ljust(columns, b"\0")
    glyphs = _glyph_columns(display, vram, chars, attrs)
    cursor = None
    if display.cursor is not None and blink:
        word, top, bottom = display.cursor
        bottom = min(bottom, height - 1)
        cell, rest = divmod(4 * word - at, 4)
        if not rest and 0 <= cell < shown and top <= bottom:
            cursor = (cell, top, bottom)
    line_graphics = width == 9 and display.line_graphics
    key = (glyphs, attrs, chars if line_graphics else None, cursor)
    context = (tables, width, height, line_graphics)
    pixels = _text_memo.lookup(context, key)
    if pixels is None:
        pixels = _text_memo.keep(key, _rgb(_text_indexes(
            width, height, columns, chars, attrs, glyphs, line_graphics, cursor), tables))
    return pixels


def _dots(lines: bytes, width: int) -> int:
    """Glyph bytes as their dots, ``width`` bytes each (0xFF where set; the
    ninth column of 9-dot cells 0, each dot twice in 16-dot cells), as one
    big number: column by column, a translate into every ``width``-th byte."""
    step = 8 if width == 16 else width
    out = bytearray(len(lines) * step)
    for column, table in enumerate(_COLUMN):
        out[column::step] = lines.translate(table)
    if width == 16:
        out = _doubled(out)
    return int.from_bytes(out, "big")


def _glyph_columns(display, vram, chars: bytes, attrs: bytes) -> bytes:
    """Each cell's glyph rows (plane 2 of its font, every 4th byte), cell
    after cell."""
    first_font, second_font = display.fonts
    fonts = {first_font: bytes(vram[first_font:first_font + _FONT_BYTES]).ljust(_FONT_BYTES,
                                                                                   b"\0")}
    if second_font != first_font:
        fonts[second_font] = bytes(vram[second_font:second_font + _FONT_BYTES]).ljust(
            _FONT_BYTES, b"\0")
    clear_font, set_font = fonts[first_font], fonts[second_font]
    reach = 4 * display.char_height
    return b"".join([(set_font if a & 8 else clear_font)[c << 7:(c << 7) + reach:4]
                     for c, a in zip(chars, attrs)])


def _text_indexes(width: int, height: int, columns: int, chars: bytes, attrs: bytes,
                  glyphs: bytes, line_graphics: bool, cursor) -> bytes:
    """A character row's colour numbers, scan line after scan line."""
    lines = b"".join([glyphs[r::height] for r in range(height)])  # scan line after line
    total = columns * width * height
    dots = _dots(lines, width)
    if line_graphics:
        ninth = int.from_bytes(b"".join(map(_NINTH.__getitem__, chars)) * height, "big")
        dots |= dots >> 8 & ninth
    fg = int.from_bytes(b"".join(map(_FOREGROUND[width].__getitem__, attrs)) * height, "big")
    bg = int.from_bytes(b"".join(map(_BACKGROUND[width].__getitem__, attrs)) * height, "big")
    indexes = (bg ^ (dots & (fg ^ bg))).to_bytes(total, "big")
    if cursor is not None:
        cell, top, bottom = cursor
        out = bytearray(indexes)
        solid = bytes((attrs[cell] & 0x0F,)) * width
        line = columns * width
        for r in range(top, bottom + 1):
            x = r * line + cell * width
            out[x:x + width] = solid
        indexes = bytes(out)
    return indexes


# --- graphics ----------------------------------------------------------------------------------


#: colour numbers ANDed with a plane enable (attribute register 0x12)
_ENABLED = [bytes(i & e for i in range(256)) for e in range(16)]


def _components(shift: int, mask: int, up: int) -> bytes:
    """A translation table: (byte >> shift & mask) << up (shift < 0: left)."""
    return bytes(((b >> shift if shift >= 0 else b << -shift) & mask) << up & 0xFF
                 for b in range(256))


# 15 and 16 bits a pixel: each component from the low byte, the high byte, or both
_R15, _G15_HI, _G15_LO, _B15 = (_components(2, 0x1F, 3), _components(-3, 0x18, 3),
                               _components(5, 0x07, 3), _components(0, 0x1F, 3))
_R16, _G16_HI, _G16_LO, _B16 = (_components(3, 0x1F, 0), _components(-3, 0x38, 0),
                               _components(5, 0x07, 0), _components(0, 0x1F, 0))
_WIDEN5 = bytes((v << 3 | v >> 2) & 0xFF for v in range(256))     # 5 bits -> 8 (v < 32)
_WIDEN6 = bytes((v << 2 | v >> 4) & 0xFF for v in range(256))     # 6 bits -> 8 (v < 64)


def _or(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") | int.from_bytes(b, "big")).to_bytes(len(a), "big")


def _direct(data: bytes, depth: int) -> bytes:
    """Pixels that carry their colour: 15/16 bits little-endian, 24 (B, G, R),
    32 (B, G, R, unused)."""
    out = bytearray(3 * (len(data) // (2 if depth <= 16 else depth >> 3)))
    if depth == 15 or depth == 16:
        low, high = data[0::2], data[1::2]
        if depth == 15:
            out[0::3] = high.translate(_R15)
            out[1::3] = _or(high.translate(_G15_HI), low.translate(_G15_LO))
            out[2::3] = low.translate(_B15)
        else:
            out[0::3] = high.translate(_R16).translate(_WIDEN5)
            out[1::3] = _or(high.translate(_G16_HI), low.translate(_G16_LO)).translate(_WIDEN6)
            out[2::3] = low.translate(_B16).translate(_WIDEN5)
        return bytes(out)
    step = depth >> 3
    out[0::3] = data[2::step]
    out[1::3] = data[1::step]
    out[2::3] = data[0::step]
    return bytes(out)


def _fetch(vram, at: int, length: int) -> bytes:
    size = len(vram)
    at %= size
    if at + length <= size:
        return bytes(vram[at:at + length])
    return bytes(vram[at:]) + bytes(vram[:at + length - size])


def _doubled(data: bytes) -> bytes:
    out = bytearray(2 * len(data))
    out[0::2] = data
    out[1::2] = data
    return bytes(out)


def _graphic_line(display, tables, vram, at: int) -> bytes:
    """A picture line's RGB, from the memo when the same bytes were drawn
    before under the same mode and colours."""
    data = _fetch(vram, at, _line_length(display))
    context = (tables, display.mode, display.depth, display.half_clock, display.plane_enable)
    pixels = _line_memo.lookup(context, data)
    if pixels is None:
        pixels = _line_memo.keep(data, _line_rgb(display, tables, data))
    return pixels


def _line_rgb(display, tables, data: bytes) -> bytes:
    return _lines_rgb(display, tables, [data])[0]


def _lines_rgb(display, tables, lines: list[bytes]) -> list[bytes]:
    """The RGB of picture lines (their video memory bytes, all of one
    length), converted together where the mode allows."""
    mode, length = display.mode, len(lines[0])
    if not length:
        return [b""] * len(lines)
    if mode == "cga4":
        enable = display.plane_enable
        data = b"".join(lines)
        if enable != 0x0F:                          # a disabled plane's bytes read as 0
            keep = bytes(0xFF if enable >> p & 1 else 0 for p in range(4)) * (len(data) >> 2)
            data = (int.from_bytes(data, "big") & int.from_bytes(keep, "big")).to_bytes(
                len(data), "big")
        # Pillow's "P;2" unpacker: 2-bit pixels, bits 7:6 first. A word's planes 0 and 1
        # give the low bits of its 8 pixels, planes 2 and 3 the high bits
        pairs, size = memoryview(data).cast("H"), (length << 1, len(lines))
        low = Image.frombytes("P", size, pairs[0::2].tobytes(), "raw", "P;2").tobytes()
        high = Image.frombytes("P", size, pairs[1::2].tobytes(), "raw", "P;2").tobytes()
        indexes = (int.from_bytes(low, "big") | int.from_bytes(high, "big") << 2).to_bytes(
            len(low), "big")
        rgb = _rgb(_doubled(indexes) if display.half_clock else indexes, tables)
    elif mode == "planar16":
        # Pillow's "P;4L" unpacker: a line's four bit planes, one after the other, to
        # 4-bit pixels
        planes = b"".join([data[0::4] + data[1::4] + data[2::4] + data[3::4] for data in lines])
        indexes = Image.frombytes("P", (length << 1, len(lines)), planes, "raw",
                                  "P;4L").tobytes()
        if display.half_clock:
            indexes = _doubled(indexes)
        if display.plane_enable != 0x0F:
            indexes = indexes.translate(_ENABLED[display.plane_enable])
        rgb = _rgb(indexes, tables)
    else:
        depth, data = display.depth, b"".join(lines)
        if mode == "chain4-256" or depth not in _PIXEL_BYTES:
            rgb = _rgb(_doubled(data), tables)
        elif depth == 8:
            rgb = _rgb(data, tables)
        else:
            rgb = _direct(data, depth)
    size = len(rgb) // len(lines)
    return [rgb[i:i + size] for i in range(0, len(rgb), size)]
