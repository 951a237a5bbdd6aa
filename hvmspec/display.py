"""The guest's screen, from the trace and from the scanner's picture: for the terminal and as an image.

Room: tool. Reads :class:`spec.trace.DisplayUpdate` events and keeps the
text screen they describe (the changed rows' cells, the cursor), which it
draws with rich while a guest runs; in graphics modes it keeps the mode
and size and says so. :func:`write_png` saves a picture the VGA's scanner
drew (``hvmspec run --screenshot``): pixels, in every mode. Imports
:mod:`spec.trace`; rich and Pillow.
"""

from __future__ import annotations

from pathlib import Path

from spec import trace

#: the 16 colours of the VGA's default palette (the CGA colours)
PALETTE = ("000000", "0000aa", "00aa00", "00aaaa", "aa0000", "aa00aa", "aa5500", "aaaaaa",
           "555555", "5555ff", "55ff55", "55ffff", "ff5555", "ff55ff", "ffff55", "ffffff")
#: code page 437's pictures for the control characters 0x00-0x1f, and 0x7f
_LOW = " ☺☻♥♦♣♠•◘○◙♂♀♪♫☼►◄↕‼¶§▬↨↑↓→←∟↔▲▼"
BLANK = bytes((0x20, 0x07))


def glyph(code: int) -> str:
    """The character code page 437 shows for ``code``."""
    if code < 0x20:
        return _LOW[code]
    if code == 0x7F:
        return "⌂"
    return bytes([code]).decode("cp437")


class FrameMismatch(ValueError):
    """A display update does not fit the screen the updates so far describe."""


class Screen:
    """The screen as the trace's display updates describe it: the text
    grid in text modes (blank cells until the first update), the mode and
    size in graphics modes."""

    def __init__(self) -> None:
        self.mode = "text"
        self.width = self.height = 0
        self.columns, self.lines = 80, 25
        self.rows = [BLANK * self.columns for _ in range(self.lines)]
        self.cursor: list[int] = []
        self.updates = 0

    def apply(self, event: trace.DisplayUpdate) -> None:
        self.mode, self.width, self.height = event.mode, event.width, event.height
        self.updates += 1
        if event.mode != "text":
            self.cursor = []
            return
        columns, lines = event.grid
        if (columns, lines) != (self.columns, self.lines):
            self.columns, self.lines = columns, lines
            self.rows = [BLANK * columns for _ in range(lines)]
        for row, cells in zip(event.rows, event.cells):
            data = bytes.fromhex(cells)
            if not 0 <= row < lines or len(data) != 2 * columns:
                raise FrameMismatch(f"display update at {event.icount}: row {row} with "
                                    f"{len(data)} bytes in a {columns}x{lines} grid")
            self.rows[row] = data
        self.cursor = list(event.cursor)

    @classmethod
    def from_trace(cls, events) -> "Screen":
        screen = cls()
        for event in events:
            if isinstance(event, trace.DisplayUpdate):
                screen.apply(event)
        return screen

    def text(self) -> str:
        """The characters, one line per row, trailing blanks removed; in a
        graphics mode, one line that says which."""
        if self.mode != "text":
            return f"[graphics: {self.mode} {self.width}x{self.height}]"
        return "\n".join("".join(glyph(row[i]) for i in range(0, 2 * self.columns, 2)).rstrip()
                         for row in self.rows)

    def cells(self, row: int):
        data = self.rows[row]
        for column in range(self.columns):
            yield data[2 * column], data[2 * column + 1]

    # --- drawing ----------------------------------------------------------------------

    def __rich__(self):
        return self.rich()

    def rich(self):
        """A rich renderable: the screen's colours, the cursor in reverse
        video; in a graphics mode a line saying so (``--screenshot`` and VNC
        show the picture)."""
        from rich.text import Text
        out = Text(no_wrap=True, overflow="crop")
        if self.mode != "text":
            out.append(f"[the guest is in graphics mode ({self.mode}, {self.width}x"
                       f"{self.height}): --screenshot or --vnc show it]", style="italic")
            return out
        for row in range(self.lines):
            for column, (code, attr) in enumerate(self.cells(row)):
                style = f"#{PALETTE[attr & 0x0F]} on #{PALETTE[attr >> 4 & 0x07]}"
                if self.cursor[:2] == [row, column]:
                    style += " reverse"
                out.append(glyph(code), style=style)
            if row < self.lines - 1:
                out.append("\n")
        return out


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
