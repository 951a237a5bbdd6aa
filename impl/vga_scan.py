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
come from one table lookup per glyph byte (0x00/0xFF bytes), and
foreground and background meet them as three big-integer operations over
the whole band (line graphics' ninth column is the dots shifted one byte
under a mask). A planar or CGA line is each plane's bytes (one strided slice)
looked up in a table of that plane's 8 (16 at half dot clock) pixel bytes
with its bits already in place, the four planes ORed as big integers; 15-
and 16-bit pixels are split into components by ``bytes.translate`` of their
low and high bytes. Colour numbers become RGB by three ``bytes.translate``
into a strided bytearray. Bands are kept for the last Display, palettes'
translation tables for the last palette object, and the RGB of up to 2048
graphics lines by their bytes (a picture repeats lines: a background, a
cleared screen), under the same mode and colours.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

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
    return b"".join([draw_band(display, palette, vram, band, blink)
                     for band in bands(display, len(vram))])


def draw_band(display, palette: Sequence | bytes, vram, band: Band, blink: bool) -> bytes:
    """One band's pixels: ``band.lines`` rows of ``display.width`` RGB
    pixels. ``palette``: :meth:`impl.vga_ports.VgaPorts.palette_rgb` or
    ``palette_bytes``; ``blink``: :func:`cursor_visible`."""
    tables = _channels(palette)
    if display.mode == "text":
        return _rgb(_text_indexes(display, vram, band, blink), tables)
    return _graphic_line(display, tables, vram, band.address) * band.lines


# --- text --------------------------------------------------------------------------------------

#: a glyph byte as dots, 0xFF where set: 8 wide, 9 wide (background ninth), 16 wide
_DOTS = {8: [bytes(0xFF if b >> (7 - i) & 1 else 0 for i in range(8)) for b in range(256)]}
_DOTS[9] = [row + b"\0" for row in _DOTS[8]]
_DOTS[16] = [bytes(d for d in row for _ in "ab") for row in _DOTS[8]]
#: per cell width: an attribute's foreground and background colour, a cell wide
_FOREGROUND = {w: [bytes((a & 0x0F,)) * w for a in range(256)] for w in (8, 9, 16)}
_BACKGROUND = {w: [bytes((a >> 4,)) * w for a in range(256)] for w in (8, 9, 16)}
#: a character's ninth column repeats its eighth (line graphics 0xB0-0xDF): mask, 9 wide
_NINTH = [b"\0" * 8 + (b"\xff" if 0xB0 <= c <= 0xDF else b"\0") for c in range(256)]
_FONT_BYTES = 0x8000


def _text_indexes(display, vram, band: Band, blink: bool) -> bytes:
    width, height, columns = display.char_width, display.char_height, display.columns
    at, size = band.address, len(vram)
    shown = max(0, min(columns, (size - 2 - at) // 4 + 1))        # cells whose bytes exist
    chars = bytes(vram[at:at + 4 * shown:4]).ljust(columns, b"\0")
    attrs = bytes(vram[at + 1:at + 4 * shown:4]).ljust(columns, b"\0")
    first_font, second_font = display.fonts
    fonts = {first_font: bytes(vram[first_font:first_font + _FONT_BYTES]).ljust(_FONT_BYTES,
                                                                                   b"\0")}
    if second_font != first_font:
        fonts[second_font] = bytes(vram[second_font:second_font + _FONT_BYTES]).ljust(
            _FONT_BYTES, b"\0")
    clear_font, set_font = fonts[first_font], fonts[second_font]
    reach = 4 * height
    glyphs = b"".join([(set_font if a & 8 else clear_font)[c << 7:(c << 7) + reach:4]
                       for c, a in zip(chars, attrs)])          # cell after cell
    lines = b"".join([glyphs[r::height] for r in range(height)])  # scan line after line
    total = columns * width * height
    dots = int.from_bytes(b"".join(map(_DOTS[width].__getitem__, lines)), "big")
    if width == 9 and display.line_graphics:
        ninth = int.from_bytes(b"".join(map(_NINTH.__getitem__, chars)) * height, "big")
        dots |= dots >> 8 & ninth
    fg = int.from_bytes(b"".join(map(_FOREGROUND[width].__getitem__, attrs)) * height, "big")
    bg = int.from_bytes(b"".join(map(_BACKGROUND[width].__getitem__, attrs)) * height, "big")
    indexes = (bg ^ (dots & (fg ^ bg))).to_bytes(total, "big")
    if display.cursor is not None and blink:
        word, top, bottom = display.cursor
        bottom = min(bottom, height - 1)
        cell, rest = divmod(4 * word - at, 4)
        if not rest and 0 <= cell < shown and top <= bottom:
            out = bytearray(indexes)
            solid = bytes((attrs[cell] & 0x0F,)) * width
            line = columns * width
            for r in range(top, bottom + 1):
                x = r * line + cell * width
                out[x:x + width] = solid
            indexes = bytes(out)
    return indexes


# --- graphics ----------------------------------------------------------------------------------


def _spread_tables(pixels_of, double: bool) -> list[list[bytes]]:
    """For each plane, a byte of that plane as its contribution to the 8
    pixels of its word (16 at half dot clock), the bits already in place."""
    tables = []
    for plane in range(4):
        rows = []
        for b in range(256):
            row = pixels_of(plane, b)
            rows.append(bytes(p for p in row for _ in "ab") if double else row)
        tables.append(rows)
    return tables


def _planar_pixels(plane: int, b: int) -> bytes:
    return bytes(((b >> (7 - i)) & 1) << plane for i in range(8))


def _cga_pixels(plane: int, b: int) -> bytes:
    """Planes 0 and 2 give pixels 0-3 (bits 1:0 and 3:2), planes 1 and 3 pixels 4-7."""
    fields = bytes((b >> (6 - 2 * i) & 3) << (plane & 2) for i in range(4))
    return fields + bytes(4) if not plane & 1 else bytes(4) + fields


#: [table][plane][byte]: planar (16-colour) and CGA (4-colour), plain and doubled
_SPREAD = {(kind, double): [t.__getitem__ for t in _spread_tables(pixels, double)]
           for kind, pixels in (("planar16", _planar_pixels), ("cga4", _cga_pixels))
           for double in (False, True)}
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


#: lines drawn before under the same mode and colours: (context, {line bytes: RGB})
_memo: list = [None, {}]
_MEMO_LINES = 2048


def _graphic_line(display, tables, vram, at: int) -> bytes:
    data = _fetch(vram, at, _line_length(display))
    context = (tables, display.mode, display.depth, display.half_clock, display.plane_enable)
    if _memo[0] != context:
        _memo[:] = context, {}
    seen = _memo[1]
    rgb = seen.get(data)
    if rgb is None:
        if len(seen) >= _MEMO_LINES:
            seen.clear()
        rgb = seen[data] = _line_rgb(display, tables, data)
    return rgb


def _line_rgb(display, tables, data: bytes) -> bytes:
    mode = display.mode
    if mode == "planar16" or mode == "cga4":
        enable = display.plane_enable
        if mode == "cga4" and enable != 0x0F:     # a disabled plane's bytes read as 0
            keep = bytes(0xFF if enable >> p & 1 else 0 for p in range(4)) * (len(data) >> 2)
            data = (int.from_bytes(data, "big") & int.from_bytes(keep, "big")).to_bytes(
                len(data), "big")
        p0, p1, p2, p3 = _SPREAD[mode, display.half_clock]
        indexes = (int.from_bytes(b"".join(map(p0, data[0::4])), "big")
                   | int.from_bytes(b"".join(map(p1, data[1::4])), "big")
                   | int.from_bytes(b"".join(map(p2, data[2::4])), "big")
                   | int.from_bytes(b"".join(map(p3, data[3::4])), "big")).to_bytes(
                       (2 << display.half_clock) * len(data), "big")
        if mode == "planar16" and enable != 0x0F:
            indexes = indexes.translate(_ENABLED[enable])
        return _rgb(indexes, tables)
    depth = display.depth
    if mode == "chain4-256" or depth not in _PIXEL_BYTES:
        return _rgb(_doubled(data), tables)
    if depth == 8:
        return _rgb(data, tables)
    return _direct(data, depth)
