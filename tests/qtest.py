"""QEMU's qtest protocol as a peer: port I/O on a stopped ``pc`` machine.

``qemu-system-i386 -machine pc -S -nodefaults -qtest stdio -display none``
takes one command a line (``outb PORT VALUE``, ``inw PORT``, ...) and
answers ``OK`` or ``OK VALUE``; its log lines start with ``[``. The machine
never runs (``-S``): only the devices answer. Skipped without QEMU, a
failure under ``HVMSPEC_REQUIRE_PEERS=1`` (:func:`tests.conftest.peer`).
"""

from __future__ import annotations

import subprocess

from tests.conftest import peer

SIZES = {1: "b", 2: "w", 4: "l"}


class Qtest:
    """One QEMU process under qtest; use as a context manager."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [peer("qemu-system-i386"), "-machine", "pc", "-S", "-nodefaults",
             "-qtest", "stdio", "-display", "none", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def __enter__(self) -> "Qtest":
        return self

    def __exit__(self, *exc) -> None:
        self.proc.kill()
        self.proc.wait()

    def command(self, line: str) -> str:
        """Send one command; its answer without the ``OK``."""
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        while True:
            answer = self.proc.stdout.readline()
            if not answer:
                raise RuntimeError(f"qtest: QEMU ended at {line!r}")
            if not answer.startswith("["):
                break
        if not answer.startswith("OK"):
            raise RuntimeError(f"qtest: {line!r} -> {answer.strip()!r}")
        return answer[2:].strip()

    def port_in(self, port: int, size: int = 1) -> int:
        return int(self.command(f"in{SIZES[size]} {port:#x}"), 16)

    def port_out(self, port: int, value: int, size: int = 1) -> None:
        self.command(f"out{SIZES[size]} {port:#x} {value:#x}")
