"""The guest's text screen, rebuilt from the trace: for the terminal and as an image.

Room: tool. Reads :class:`spec.trace.DisplayUpdate` events (the changed
rows' cells, the cursor, the frame hash) and keeps the screen they
describe; draws it with rich (live, while a guest runs) or as a PNG
(``hvmspec run --screenshot``). Imports :mod:`spec.trace`; rich and Pillow.

Every update's frame hash is checked against the screen rebuilt so far, so a
trace whose updates do not add up is reported, not drawn.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from spec import trace

COLUMNS, ROWS = 80, 25
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
        self.rows = [b"\x20\x07" * COLUMNS for _ in range(ROWS)]
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
        digest = hashlib.sha256(b"".join(self.rows) + bytes(self.cursor)).hexdigest()[:16]
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
        """The screen as a 720x400 image, as the VGA shows mode 3 (9x16
        cells); blinking cells are drawn steadily."""
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
                if char == "█":
                    draw.rectangle((left, top, left + CELL_WIDTH - 1, top + CELL_HEIGHT - 1),
                                   fill=f"#{PALETTE[attr & 0x0F]}")
                elif char.strip():
                    draw.text((left + CELL_WIDTH / 2, top + CELL_HEIGHT / 2), char,
                              fill=f"#{PALETTE[attr & 0x0F]}", font=font, anchor="mm")
        if self.cursor:
            row, column, first, last = self.cursor
            attr = self.rows[row][2 * column + 1]
            left, top = column * CELL_WIDTH, row * CELL_HEIGHT
            draw.rectangle((left, top + min(first, 15), left + CELL_WIDTH - 1,
                            top + min(max(first, last), 15)), fill=f"#{PALETTE[attr & 0x0F]}")
        image.save(path, "PNG")
