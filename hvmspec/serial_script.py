"""Serial scripts: what to type on COM1, each line after the output it
waits for (``hvmspec run --serial-script FILE``, and QEMU as a peer).

Room: tool. :func:`parse` reads a script; :class:`ScriptLine` plays it
against the guest's COM1 output, byte by byte, and answers with the bytes
to type. The engines call it from the UART's transmitter (each byte the
guest sends, at the virtual time it sends it) and feed the answer to the
receiver at that same time; :func:`hvmspec.qemu_peer.run_serial_script`
calls it with the bytes QEMU's serial socket gives. Imports nothing of
the model.

**Why a script and not bytes.** A real UART has no buffer in front of
it: bytes that arrive before the guest reads them are lost (QEMU's
16550), and a boot loader or firmware that polls the keyboard or COM1 may
take keys meant for the shell. ``--serial-input FILE`` hands the bytes to
a sender that waits for the guest's RTS, which a guest sets long before
the program that should read them runs. A script waits instead for what
the guest shows (a prompt) and types then, as a person would.

**Determinism.** On hvmspec's engines the bytes of an answer are handed
to COM1's sender at the virtual time of the output byte that completed the
awaited text, so the same script gives the same trace on both engines and
on every run. On QEMU the same script runs in host time.

**The language.** One command a line; blank lines and lines starting with
``#`` are skipped. The command is the first word, its argument the rest
of the line after one space (spaces after it are kept), with the escapes
``\\n``, ``\\r``, ``\\t``, ``\\e`` (ESC), ``\\xNN`` and ``\\\\``:

``expect TEXT``
    wait until COM1's output, from where the previous ``expect`` matched
    (or from the start), shows TEXT.
``send TEXT``
    type TEXT and Enter (a carriage return, ``\\r``, as a terminal's Enter
    key sends it; the guest's tty turns it into a newline).
``type TEXT``
    type TEXT alone (no Enter): a key for a menu, or ``\\x03`` for Ctrl-C.
``timeout SECONDS``
    how long each later ``expect`` may wait (default :data:`DEFAULT_TIMEOUT`)
    on QEMU, in host seconds. On the engines an ``expect`` waits as long as
    the run goes on (``--max-instructions``, ``--until``); when the run ends
    with one still waiting, the run fails naming it.

Sends before the first ``expect`` are typed at once. There is no
``sleep``: a pause in host time means nothing on the engines, and one in
virtual time would not be the same pause on QEMU; wait for output instead.
The echo of what is typed is output like any other, so ``send echo hi``
then ``expect hi`` matches the echo; expect the prompt, or text the
command prints but does not contain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

#: seconds an ``expect`` waits on QEMU unless a ``timeout`` line says otherwise
DEFAULT_TIMEOUT = 60.0
#: what ``send`` adds: the Enter key of a terminal
ENTER = b"\r"
COMMANDS = ("expect", "send", "type", "timeout")


class ScriptError(ValueError):
    """A script that cannot run, or one that did not finish: the message
    names the file and line."""


@dataclass(frozen=True)
class Step:
    """One command: ``kind`` (expect, send, type), its bytes, the timeout
    in force for an expect, and where it was written."""

    kind: str
    data: bytes
    timeout: float
    where: str

    def describe(self) -> str:
        text = self.data.decode("latin-1")
        return f"{self.where}: {self.kind} {text!r}"


_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|.)")
_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "e": "\x1b", "\\": "\\"}


def _unescape(text: str, where: str) -> bytes:
    def one(m: re.Match) -> str:
        code = m.group(1)
        if code[0] == "x" and len(code) == 3:
            return chr(int(code[1:], 16))
        if code in _SIMPLE:
            return _SIMPLE[code]
        raise ScriptError(f"{where}: unknown escape \\{code} "
                          "(known: \\n \\r \\t \\e \\xNN \\\\)")
    if text.endswith("\\") and not text.endswith("\\\\"):
        raise ScriptError(f"{where}: a lone backslash ends the line")
    try:
        return _ESCAPE.sub(one, text).encode("latin-1")
    except UnicodeEncodeError:
        raise ScriptError(f"{where}: only 8-bit characters can be typed on a serial "
                          "line (use \\xNN for bytes)") from None


def parse(text: str, name: str = "<script>") -> list[Step]:
    """The steps of a script; :class:`ScriptError` with ``name:line`` for a
    line that is not a command."""
    steps: list[Step] = []
    timeout = DEFAULT_TIMEOUT
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{name}:{number}"
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        command, _, argument = line.lstrip().partition(" ")
        if command not in COMMANDS:
            raise ScriptError(f"{where}: unknown command {command!r} "
                              f"(one of: {', '.join(COMMANDS)})")
        if command == "timeout":
            try:
                timeout = float(argument)
            except ValueError:
                timeout = -1.0
            if not timeout > 0:
                raise ScriptError(f"{where}: timeout needs a number of seconds > 0, "
                                  f"not {argument!r}")
            continue
        data = _unescape(argument, where)
        if command == "expect" and not data:
            raise ScriptError(f"{where}: expect needs the text to wait for")
        if command == "send":
            data += ENTER
        if command == "type" and not data:
            raise ScriptError(f"{where}: type needs the text to type")
        steps.append(Step(command, data, timeout, where))
    return steps


def load(path: Path) -> list[Step]:
    """The steps of the script in file ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScriptError(f"--serial-script {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ScriptError(f"--serial-script {path}: not UTF-8 text") from None
    return parse(text, str(path))


@dataclass
class ScriptLine:
    """A script playing against COM1's output.

    :meth:`start` gives what to type before any output; :meth:`output`
    takes each byte the guest sends and gives what to type then (the sends
    after an ``expect`` that this byte completed, up to the next
    ``expect``). ``matched`` lists, per ``expect`` that matched, its step
    and the output's length when it did."""

    steps: list[Step]
    index: int = 0
    window: bytearray = field(default_factory=bytearray)
    seen: int = 0
    matched: list[tuple[Step, int]] = field(default_factory=list)
    typed: bytearray = field(default_factory=bytearray)

    def _sends(self) -> bytes:
        out = bytearray()
        while self.index < len(self.steps) and self.steps[self.index].kind != "expect":
            out += self.steps[self.index].data
            self.index += 1
        self.typed += out
        return bytes(out)

    def start(self) -> bytes:
        return self._sends()

    @property
    def waiting(self) -> Step | None:
        """The ``expect`` not yet matched (None once the script is done)."""
        return self.steps[self.index] if self.index < len(self.steps) else None

    @property
    def done(self) -> bool:
        return self.index >= len(self.steps)

    def output(self, byte: int) -> bytes:
        self.seen += 1
        step = self.waiting
        if step is None:
            return b""
        self.window.append(byte)
        if len(self.window) > len(step.data):
            del self.window[:-len(step.data)]
        if self.window != step.data:
            return b""
        self.window.clear()
        self.matched.append((step, self.seen))
        self.index += 1
        return self._sends()

    def unfinished(self, why: str) -> str:
        """The message for a run that ended (``why``) with an ``expect``
        still waiting."""
        step = self.waiting
        return f"serial script: {step.describe()} never matched ({why})"


class EngineScript:
    """A script as the engines' serial line (``hvmspec run
    --serial-script``), what qemu-dm's COM1 uses: ``start()`` gives the
    sends before the first ``expect`` (COM1's input from the start, as
    ``--serial-input``'s bytes); the UART's transmitter calls
    ``on_output(byte)`` with each byte the guest sends and hands what it
    returns to the sender at once. ``read()`` gives nothing (nothing is
    typed at a time of the host's) and ``wait()`` returns False: a guest
    waiting for nothing with an ``expect`` pending will not show it, so the
    run ends (and fails naming the ``expect``)."""

    def __init__(self, steps: list[Step]) -> None:
        self.script = ScriptLine(steps)

    def start(self) -> bytes:
        return self.script.start()

    def read(self) -> bytes:
        return b""

    def wait(self, seconds: float) -> bool:
        return False

    def on_output(self, byte: int) -> bytes:
        return self.script.output(byte)

    def close(self) -> None:
        pass
