"""The guest's text screen, rebuilt from the trace: for the terminal and as an image.

Room: tool. Reads :class:`spec.trace.DisplayUpdate` events (the changed
rows' cells, the cursor, the frame hash) and keeps the screen they
describe; draws it with rich (live, while a guest runs) or as a PNG
(``hvmspec run --screenshot``). :func:`write_png` saves a scanner's RGB
picture (:mod:`spec.devices.vga_scanner`) as a PNG. Imports
:mod:`spec.trace` and, for the frame's size and hash,
:mod:`spec.devices.vga`; rich and Pillow.

Every update's frame hash is checked against the screen rebuilt so far, so a
trace whose updates do not add up is reported, not drawn.
"""

from __future__ import annotations

from pathlib import Path

from spec import trace
from spec.devices.vga import BLANK, COLUMNS, ROWS, frame_hash

CELL_WIDTH, CELL_HEIGHT = 9, 16          # the VGA's 720x400 text mode
#: the 16 colours of the VGA's default palette (the CGA colours)
PALETTE = ("000000", "0000aa", "00aa00", "00aaaa", "aa0000", "aa00aa", "aa5500", "aaaaaa",
           "555555", "5555ff", "55ff55", "55ffff", "ff5555", "ff55ff", "ffff55", "ffffff")
#: code page 437's pictures for the control characters 0x00-0x1f, and 0x7f
_LOW = " ☺☻♥♦♣♠•◘○◙♂♀♪♫☼►◄↕‼¶§▬↨↑↓→←∟↔▲▼"


def glyph(code: int) -> str:
    """The character code page 437 shows for ``code``."""
    if code < 0x20:
        return _LOW[code]
    if code == 0x7F:
        return "⌂"
    return bytes([code]).decode("cp437")


class FrameMismatch(ValueError):
    """An update's frame hash does not match the screen its updates build."""


class Screen:
    """The text screen as the trace's display updates describe it; blank
    cells (a space on light grey) until the first update."""

    def __init__(self) -> None:
        self.rows = [BLANK * COLUMNS for _ in range(ROWS)]
        self.cursor: list[int] = []
        self.updates = 0

    def apply(self, event: trace.DisplayUpdate) -> None:
        for row, cells in zip(event.rows, event.cells):
            data = bytes.fromhex(cells)
            if not 0 <= row < ROWS or len(data) != 2 * COLUMNS:
                raise FrameMismatch(f"display update at {event.icount}: row {row} with "
                                    f"{len(data)} bytes")
            self.rows[row] = data
        self.cursor = list(event.cursor)
        self.updates += 1
        digest = frame_hash(self.rows, self.cursor)
        if digest != event.frame:
            raise FrameMismatch(f"display update at {event.icount}: frame {event.frame}, "
                                f"but the updates so far build {digest}")

    @classmethod
    def from_trace(cls, events: list[trace.Event]) -> "Screen":
        screen = cls()
        for event in events:
            if isinstance(event, trace.DisplayUpdate):
                screen.apply(event)
        return screen

    def text(self) -> str:
        """The characters, one line per row, trailing blanks removed."""
        return "\n".join("".join(glyph(row[i]) for i in range(0, 2 * COLUMNS, 2)).rstrip()
                         for row in self.rows)

    def cells(self, row: int):
        data = self.rows[row]
        for column in range(COLUMNS):
            yield data[2 * column], data[2 * column + 1]

    # --- drawing ----------------------------------------------------------------------

    def __rich__(self):
        return self.rich()

    def rich(self):
        """A rich renderable: the screen's colours, the cursor in reverse video."""
        from rich.text import Text
        out = Text(no_wrap=True, overflow="crop")
        for row in range(ROWS):
            for column, (code, attr) in enumerate(self.cells(row)):
                style = f"#{PALETTE[attr & 0x0F]} on #{PALETTE[attr >> 4 & 0x07]}"
                if self.cursor[:2] == [row, column]:
                    style += " reverse"
                out.append(glyph(code), style=style)
            if row < ROWS - 1:
                out.append("\n")
        return out

    def png(self, path: Path) -> None:
        """The screen as a PNG file (:meth:`image`)."""
        self.image().save(path, "PNG")

    def image(self):
        """The screen as a 720x400 RGB image (Pillow's), as the VGA shows
        mode 3 (9x16 cells); blinking cells are drawn steadily. The VNC
        display shows the same image (:mod:`hvmspec.vnc_display`)."""
        from PIL import Image, ImageDraw, ImageFont
        image = Image.new("RGB", (COLUMNS * CELL_WIDTH, ROWS * CELL_HEIGHT))
        draw = ImageDraw.Draw(image)
        font = ImageFont.load_default(size=14)
        for row in range(ROWS):
            top = row * CELL_HEIGHT
            for column, (code, attr) in enumerate(self.cells(row)):
                left = column * CELL_WIDTH
                draw.rectangle((left, top, left + CELL_WIDTH - 1, top + CELL_HEIGHT - 1),
                               fill=f"#{PALETTE[attr >> 4 & 0x07]}")
                char = glyph(code)
                colours = (PALETTE[attr & 0x0F], PALETTE[attr >> 4 & 0x07])
                if _draw_block(draw, char, left, top, colours):
                    continue
                if _draw_box(draw, char, left, top, f"#{colours[0]}"):
                    continue
                if char.strip():
                    draw.text((left + CELL_WIDTH / 2, top + CELL_HEIGHT / 2), char,
                              fill=f"#{PALETTE[attr & 0x0F]}", font=font, anchor="mm")
        if self.cursor:
            row, column, first, last = self.cursor
            attr = self.rows[row][2 * column + 1]
            left, top = column * CELL_WIDTH, row * CELL_HEIGHT
            draw.rectangle((left, top + min(first, 15), left + CELL_WIDTH - 1,
                            top + min(max(first, last), 15)), fill=f"#{PALETTE[attr & 0x0F]}")
        return image


def write_png(path: Path | str, width: int, height: int, rgb: bytes) -> None:
    """Save a picture of ``width`` by ``height`` pixels, ``rgb`` 3 bytes a
    pixel row after row (as :func:`spec.devices.vga_scanner.draw` gives
    it), as a PNG file at ``path``. A picture of no pixels (a blank VGA) or
    whose bytes do not fill its size is refused with a ValueError."""
    from PIL import Image
    if width <= 0 or height <= 0:
        raise ValueError(f"no picture to save: {width}x{height} pixels")
    if len(rgb) != 3 * width * height:
        raise ValueError(f"a {width}x{height} picture takes {3 * width * height} bytes of "
                         f"RGB, not {len(rgb)}")
    Image.frombytes("RGB", (width, height), bytes(rgb)).save(path, "PNG")


#: the block elements of code page 437: (x0, y0, x1, y1) in cell eighths, or a shade
_BLOCKS = {"█": (0, 0, 8, 8), "▀": (0, 0, 8, 4), "▄": (0, 4, 8, 8), "▌": (0, 0, 4, 8),
           "▐": (4, 0, 8, 8), "░": 0.25, "▒": 0.5, "▓": 0.75}


def _draw_block(draw, char: str, left: int, top: int, colours: tuple[str, str]) -> bool:
    shape = _BLOCKS.get(char)
    if shape is None:
        return False
    fg, bg = (tuple(int(c[i:i + 2], 16) for i in (0, 2, 4)) for c in colours)
    if isinstance(shape, float):
        mix = tuple(round(b + (f - b) * shape) for f, b in zip(fg, bg))
        draw.rectangle((left, top, left + CELL_WIDTH - 1, top + CELL_HEIGHT - 1), fill=mix)
        return True
    x0, y0, x1, y1 = shape
    draw.rectangle((left + x0 * CELL_WIDTH // 8, top + y0 * CELL_HEIGHT // 8,
                    left + x1 * CELL_WIDTH // 8 - 1, top + y1 * CELL_HEIGHT // 8 - 1), fill=fg)
    return True


def _box_arms(char: str) -> dict[str, str] | None:
    """The arms of a box-drawing character and their weight ("light" or
    "double"), read from its Unicode name (e.g. "BOX DRAWINGS DOWN SINGLE
    AND RIGHT DOUBLE")."""
    import unicodedata
    name = unicodedata.name(char, "")
    if not name.startswith("BOX DRAWINGS "):
        return None
    words = name[len("BOX DRAWINGS "):].split()
    expand = {"VERTICAL": ("UP", "DOWN"), "HORIZONTAL": ("LEFT", "RIGHT")}
    overall = "double" if "DOUBLE" in words and "SINGLE" not in words else "light"
    arms: dict[str, str] = {}
    for i, word in enumerate(words):
        for arm in expand.get(word, (word,) if word in ("UP", "DOWN", "LEFT", "RIGHT") else ()):
            after = words[i + 1] if i + 1 < len(words) else ""
            arms[arm] = {"SINGLE": "light", "DOUBLE": "double"}.get(after, overall)
    return arms or None


def _draw_box(draw, char: str, left: int, top: int, colour: str) -> bool:
    arms = _box_arms(char)
    if arms is None:
        return False
    cx, cy = left + CELL_WIDTH // 2, top + CELL_HEIGHT // 2
    ends = {"UP": (cx, top), "DOWN": (cx, top + CELL_HEIGHT - 1),
            "LEFT": (left, cy), "RIGHT": (left + CELL_WIDTH - 1, cy)}
    for arm, weight in arms.items():
        ex, ey = ends[arm]
        offsets = (-2, 2) if weight == "double" else (0,)
        for d in offsets:
            if arm in ("UP", "DOWN"):
                draw.line((cx + d, cy, cx + d, ey), fill=colour)
            else:
                draw.line((cx, cy + d, ex, cy + d), fill=colour)
    return True
