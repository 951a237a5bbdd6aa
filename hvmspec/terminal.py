"""A serial console's screen: VT100 output replayed onto a grid of text.

Room: turning what a guest writes to a serial line as a terminal's output
(the VT100 / ANSI escape sequences a text-mode program uses to draw in
place) back into the screen a terminal would show. memtest86+ mirrors its
text screen on COM1 this way (``console=ttyS0``): it clears the terminal,
then rewrites rows and fields with cursor positioning, so the screen at a
moment is the replay of the output up to it, not the output's last lines.
Imports nothing of the project.

Handled: CSI ``H``/``f`` (cursor position, 1-based, defaults 1), ``A``
``B`` ``C`` ``D`` (cursor moves), ``J`` (erase in display: 0 below, 1
above, 2 all), ``K`` (erase in line), ``m`` and private modes (``?25l``)
as no change to the text; CR, LF, BS; printable characters at the cursor,
wrapping at the right margin and scrolling at the bottom. Any other escape
sequence is skipped whole.
"""

from __future__ import annotations

import re

#: a CSI sequence: parameters, intermediates, the final byte
_CSI = re.compile(r"\x1b\[([0-9;?]*)([ -/]*)([@-~])")


class Screen:
    """``rows`` x ``cols`` characters and a cursor, blank at the start."""

    def __init__(self, rows: int = 25, cols: int = 80) -> None:
        self.rows, self.cols = rows, cols
        self.cells = [[" "] * cols for _ in range(rows)]
        self.row = self.col = 0

    def feed(self, text: str) -> "Screen":
        """Replay ``text`` (the output, as characters) onto the screen."""
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "\x1b":
                match = _CSI.match(text, i)
                if match is None:
                    i += 2                  # ESC and one character (ESC 7, ESC c, ...)
                    continue
                self._csi(match.group(1), match.group(3))
                i = match.end()
                continue
            if ch == "\r":
                self.col = 0
            elif ch == "\n":
                self._down()
            elif ch == "\b":
                self.col = max(0, self.col - 1)
            elif ch >= " ":
                if self.col >= self.cols:
                    self.col = 0
                    self._down()
                self.cells[self.row][self.col] = ch
                self.col += 1
            i += 1
        return self

    def lines(self) -> list[str]:
        """The screen's rows, trailing blanks removed."""
        return ["".join(row).rstrip() for row in self.cells]

    def _down(self) -> None:
        if self.row == self.rows - 1:
            self.cells = self.cells[1:] + [[" "] * self.cols]
        else:
            self.row += 1

    def _csi(self, params: str, final: str) -> None:
        if params.startswith("?"):
            return                          # private modes: the cursor's visibility
        numbers = [int(p) if p else 0 for p in params.split(";")] if params else []

        def arg(k: int, default: int) -> int:
            return numbers[k] if k < len(numbers) and numbers[k] else default
        if final in "Hf":
            self.row = min(arg(0, 1), self.rows) - 1
            self.col = min(arg(1, 1), self.cols) - 1
        elif final == "A":
            self.row = max(0, self.row - arg(0, 1))
        elif final == "B":
            self.row = min(self.rows - 1, self.row + arg(0, 1))
        elif final == "C":
            self.col = min(self.cols - 1, self.col + arg(0, 1))
        elif final == "D":
            self.col = max(0, self.col - arg(0, 1))
        elif final == "J":
            mode = numbers[0] if numbers else 0
            cells = [(r, c) for r in range(self.rows) for c in range(self.cols)]
            here = self.row * self.cols + self.col
            for r, c in cells:
                at = r * self.cols + c
                if mode == 2 or (mode == 0 and at >= here) or (mode == 1 and at <= here):
                    self.cells[r][c] = " "
        elif final == "K":
            mode = numbers[0] if numbers else 0
            span = {0: range(self.col, self.cols), 1: range(0, self.col + 1)}.get(
                mode, range(self.cols))
            for c in span:
                self.cells[self.row][c] = " "


def screen(output: str, rows: int = 25, cols: int = 80) -> list[str]:
    """The screen a VT100 shows after ``output``: its rows, trailing blanks
    removed."""
    return Screen(rows, cols).feed(output).lines()
