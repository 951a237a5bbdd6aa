"""QEMU's qtest protocol as a peer for device tests: port accesses on a
frozen PC (``-S``: no CPU runs, no firmware), answered by QEMU's own
devices, with the ISA interrupt lines QEMU drives reported as they change.

``qemu-system-i386 -machine pc -S -nodefaults -qtest stdio`` takes one
command a line (``outb PORT VAL``, ``inb PORT``, ...) and answers each with
``OK [VALUE]``; after ``irq_intercept_in ioapic`` it also writes
``IRQ raise N`` / ``IRQ lower N`` lines when the level of GSI N changes
(lines starting with ``[`` are QEMU's log and are skipped). QEMU missing:
:func:`tests.conftest.peer` skips, or fails under
``HVMSPEC_REQUIRE_PEERS=1``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile

from tests.conftest import peer


#: qtest's suffix of a port access by its size in bytes
SIZES = {1: "b", 2: "w", 4: "l"}


def run(script: list[tuple], args: tuple[str, ...] = ()) -> list[str]:
    """Run ``script`` on QEMU's PC: ``("out", port, value)`` or
    ``("in", port)`` steps, byte-sized unless a last element gives the size
    (``("out", 0xcf8, 0x80000000, 4)``, ``("in", 0xcfc, 4)``), and byte
    accesses to guest-physical memory, ``("write", addr, value)`` and
    ``("read", addr)`` (logged as ``read 0xa0000 = 0x5a``). The answer is
    the log of what happened, one line a step or interrupt change:
    ``in 0x60 = 0xfa``, ``irq 1 = 1`` (raise) / ``irq 1 = 0`` (lower)."""
    qemu = peer("qemu-system-i386")
    lines = ["irq_intercept_in ioapic"]
    for step in script:
        if step[0] == "out":
            size = step[3] if len(step) > 3 else 1
            lines.append(f"out{SIZES[size]} {step[1]:#x} {step[2]:#x}")
        elif step[0] == "write":
            lines.append(f"writeb {step[1]:#x} {step[2]:#x}")
        elif step[0] == "read":
            lines.append(f"readb {step[1]:#x}")
        else:
            size = step[2] if len(step) > 2 else 1
            lines.append(f"in{SIZES[size]} {step[1]:#x}")
    # QEMU does not always exit when its input ends: read the answers as
    # they come, one OK a command, then stop it
    proc = subprocess.Popen([qemu, "-machine", "pc", "-S", "-nodefaults", "-display", "none",
                             "-qtest", "stdio", *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    answers: list[str] = []
    try:
        proc.stdin.write("\n".join(lines) + "\n")
        proc.stdin.flush()
        oks = 0
        while oks < len(lines):
            answer = proc.stdout.readline()
            if not answer:
                raise AssertionError(f"qtest stopped after {oks} of {len(lines)} commands")
            if answer.startswith("["):
                continue
            answers.append(answer.strip())
            oks += answer.startswith("OK") or answer.startswith("FAIL")
    finally:
        proc.kill()
        proc.wait()
    log: list[str] = []
    steps = iter([None, *script])          # the first OK answers irq_intercept_in
    for answer in answers:
        words = answer.split()
        if words[0] == "IRQ":
            log.append(f"irq {int(words[2])} = {int(words[1] == 'raise')}")
        elif words[0] == "OK":
            step = next(steps)
            if step is not None and step[0] in ("in", "read"):
                log.append(f"{step[0]} {step[1]:#x} = {int(words[1], 16):#x}")
        else:
            raise AssertionError(f"qtest answered {answer!r}")
    return log


def hmp(path: str, line: str) -> str:
    """One command of QEMU's human monitor at the Unix socket ``path``
    (``-monitor unix:PATH,server=on,wait=off``); its answer, once the next
    prompt came."""
    client = socket.socket(socket.AF_UNIX)
    with client:
        client.settimeout(10)
        client.connect(path)
        answer = b""
        while b"(qemu)" not in answer:                    # the greeting's prompt
            answer += client.recv(4096)
        client.sendall(line.encode() + b"\n")
        answer = b""
        while b"(qemu)" not in answer:                    # the prompt after the answer
            answer += client.recv(4096)
    # the monitor echoes the line (with terminal escapes) before the answer
    text = answer.decode(errors="replace").replace("\r", "")
    return text.rsplit("(qemu)", 1)[0].split("\n", 1)[-1].strip()


class Session:
    """An interactive qtest session on QEMU's PC, for tests that must look at
    an answer before the next step (polling a status register while QEMU's
    block layer finishes a request): ``out``/``inp`` port accesses,
    ``memwrite``/``memread`` of guest-physical memory (qtest's ``write`` and
    ``read``); ``irqs`` collects the ``(line, level)`` changes QEMU
    reported, in order."""

    def __init__(self, args: tuple[str, ...] = (), monitor: bool = False) -> None:
        qemu = peer("qemu-system-i386")
        # QEMU's complaints go to a file: a pipe nobody reads would fill and stop it
        self.stderr = tempfile.TemporaryFile("w+")
        self.folder = tempfile.TemporaryDirectory(prefix="hvmspec-qtest-") if monitor else None
        if self.folder is not None:
            self.monitor = os.path.join(self.folder.name, "monitor")
            args = (*args, "-monitor", f"unix:{self.monitor},server=on,wait=off")
        self.proc = subprocess.Popen([qemu, "-machine", "pc", "-S", "-nodefaults", "-display",
                                      "none", "-qtest", "stdio", *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True)
        self.irqs: list[tuple[int, int]] = []
        self.command("irq_intercept_in ioapic")

    def hmp(self, line: str) -> str:
        """One command of QEMU's human monitor (``Session(monitor=True)``),
        e.g. ``change ide1-cd0 FILE``: :func:`hmp`."""
        return hmp(self.monitor, line)

    def command(self, line: str) -> list[str]:
        """Send one command; its answer's words after ``OK``."""
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        while True:
            answer = self.proc.stdout.readline()
            if not answer:
                self.stderr.seek(0)
                raise AssertionError(f"qtest stopped at {line!r}: {self.stderr.read()}")
            words = answer.split()
            if not words or answer.startswith("["):
                continue
            if words[0] == "IRQ":
                self.irqs.append((int(words[2]), int(words[1] == "raise")))
            elif words[0] == "OK":
                return words[1:]
            else:
                raise AssertionError(f"qtest answered {answer!r} to {line!r}")

    def out(self, port: int, value: int, size: int = 1) -> None:
        self.command(f"out{SIZES[size]} {port:#x} {value:#x}")

    def inp(self, port: int, size: int = 1) -> int:
        return int(self.command(f"in{SIZES[size]} {port:#x}")[0], 16)

    def memwrite(self, addr: int, data: bytes) -> None:
        self.command(f"write {addr:#x} {len(data):#x} 0x{data.hex()}")

    def memread(self, addr: int, length: int) -> bytes:
        return bytes.fromhex(self.command(f"read {addr:#x} {length:#x}")[0][2:])

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.stderr):
            stream.close()
        if self.folder is not None:
            self.folder.cleanup()
