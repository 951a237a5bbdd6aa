"""The implementation protocol: how hvmspec drives anyone's implementation.

Room: the transport between ``hvmspec conform --impl CMD`` and an
implementation in any language. A subprocess; JSON lines on its stdin and
stdout, one object per line each way; whatever it writes on stderr is kept
for the report. What the cases mean is :mod:`spec.suites`'.

The conversation::

    hvmspec -> {"op": "hello", "protocol": 1, "suites": ["ioreq", "uart", "system"]}
    impl    -> {"op": "hello", "protocol": 1, "name": "my-xen", "suites": ["ioreq"]}
    hvmspec -> {"op": "run", "suite": "ioreq", "case": {...}}
    impl    -> {"op": "result", "id": "<the case's id>", "events": [...]}
               or {"op": "error", "id": "<id>", "message": "why it cannot run it"}
    ...
    hvmspec -> {"op": "bye"}          (the implementation exits with status 0)

The implementation names the suites it runs; hvmspec sends only cases of
those. An implementation that exits, writes a line that is not a JSON
object, answers for another case, or takes longer than the timeout is
reported for that case (with its stderr), and a fresh process serves the
next case: one broken case does not hide the others.
"""

from __future__ import annotations

import json
import queue
import shlex
import subprocess
import tempfile
import threading

PROTOCOL = 1
TIMEOUT = 300.0


class ImplementationError(Exception):
    """The implementation did not answer as the protocol says."""


class External:
    """One implementation process, restarted when it fails."""

    def __init__(self, command: str | list[str], suites: list[str],
                 timeout: float = TIMEOUT) -> None:
        self.command = shlex.split(command) if isinstance(command, str) else list(command)
        self.offered = suites
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None
        self.lines: queue.Queue = queue.Queue()
        self.stderr = tempfile.TemporaryFile(mode="w+b")
        self.name = ""
        self.suites: list[str] = []

    # --- the process -------------------------------------------------------------------

    def start(self) -> dict:
        try:
            self.proc = subprocess.Popen(self.command, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self.stderr)
        except OSError as exc:
            raise ImplementationError(f"cannot start {shlex.join(self.command)}: "
                                      f"{exc.strerror}") from None
        self.lines = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc, self.lines), daemon=True).start()
        reply = self._ask({"op": "hello", "protocol": PROTOCOL, "suites": self.offered})
        if reply.get("op") != "hello" or reply.get("protocol") != PROTOCOL:
            raise ImplementationError(f"expected a hello of protocol {PROTOCOL}, got {reply}")
        suites = reply.get("suites")
        if not isinstance(suites, list) or not all(isinstance(s, str) for s in suites):
            raise ImplementationError(f"hello: 'suites' must be a list of names, got {suites!r}")
        self.name, self.suites = str(reply.get("name", self.command[0])), suites
        return reply

    @staticmethod
    def _read(proc: subprocess.Popen, lines: queue.Queue) -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    def _ask(self, message: dict) -> dict:
        try:
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise ImplementationError(f"the implementation is gone{self._exit()}") from None
        try:
            line = self.lines.get(timeout=self.timeout)
        except queue.Empty:
            self.kill()
            raise ImplementationError(f"no answer within {self.timeout:g} s") from None
        if line is None:
            raise ImplementationError(f"the implementation exited{self._exit()}")
        try:
            reply = json.loads(line)
        except ValueError:
            raise ImplementationError(f"not a JSON line: {line[:200]!r}") from None
        if not isinstance(reply, dict):
            raise ImplementationError(f"not a JSON object: {line[:200]!r}")
        return reply

    def _exit(self) -> str:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return ""
        tail = self.stderr_tail()
        return f" (status {code})" + (f"; its stderr ends: {tail}" if tail else "")

    def stderr_tail(self, n: int = 600) -> str:
        self.stderr.flush()
        self.stderr.seek(0, 2)
        size = self.stderr.tell()
        self.stderr.seek(max(0, size - n))
        return self.stderr.read().decode("utf-8", "replace").strip()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.stdin.write(b'{"op": "bye"}\n')
                self.proc.stdin.flush()
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()
        self.proc = None

    # --- cases ---------------------------------------------------------------------------

    def run(self, suite: str, case: dict) -> list[dict]:
        """The implementation's events for one case (restarting it first if
        an earlier case killed it)."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        try:
            reply = self._ask({"op": "run", "suite": suite, "case": case})
        except ImplementationError:
            self.kill()
            self.proc = None
            raise
        if reply.get("id") != case["id"]:
            raise ImplementationError(f"answered for case {reply.get('id')!r}, not "
                                      f"{case['id']!r}")
        if reply.get("op") == "error":
            raise ImplementationError(f"cannot run it: {reply.get('message')}")
        events = reply.get("events")
        if reply.get("op") != "result" or not isinstance(events, list):
            raise ImplementationError(f"expected a result with events, got {str(reply)[:200]}")
        return events

