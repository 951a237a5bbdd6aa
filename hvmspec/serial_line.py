"""COM1's line to the user: the terminal (or a pipe) as a live serial input.

Room: tool. What ``hvmspec run --serial-input -`` hands the engines: an
object whose ``read()`` returns the bytes that arrived since the last call,
without waiting, and whose ``wait(seconds)`` waits up to that long for more
and returns False once the line has ended (end of file). qemu-dm reads it
at each pass of its main loop and gives the bytes to COM1's sender; an
engine with nothing else to do waits on it instead of ending the run.
Imports nothing of the model.

On a terminal the line is put in cbreak mode (each key is sent as typed,
without echo, Ctrl-C still interrupts) and restored by :meth:`close`.
Input from a live line is not deterministic in time: a run that uses one is
for people, not for conformance.
"""

from __future__ import annotations

import os
import select


class LiveLine:
    """A file descriptor as COM1's line."""

    def __init__(self, fd: int = 0) -> None:
        self.fd = fd
        self.ended = False
        self._saved = None
        if os.isatty(fd):
            import termios
            import tty
            self._saved = termios.tcgetattr(fd)
            tty.setcbreak(fd)

    def read(self) -> bytes:
        if self.ended or not select.select([self.fd], [], [], 0)[0]:
            return b""
        data = os.read(self.fd, 4096)
        if not data:
            self.ended = True
        return data

    def wait(self, seconds: float) -> bool:
        if self.ended:
            return False
        select.select([self.fd], [], [], seconds)
        return True

    def close(self) -> None:
        if self._saved is not None:
            import termios
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None
