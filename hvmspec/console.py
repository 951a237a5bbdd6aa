"""The operator's console: stopping work with a signal.

Room: tool. What a person at dom0's terminal does to hvmspec from outside
the engines: Ctrl-C (SIGINT), or a supervisor's SIGTERM, stops the command,
through :class:`spec.result.RunControl` for each guest run under way.
Imports :mod:`spec.result` (the interface) and nothing of the model.

**The rule.** Every command stops within a second of the first SIGINT or
SIGTERM, prints one line that names the signal, and exits with the shell's
code for it, 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).
A run that is stopped destroys its domain as ``xm destroy`` would and keeps
its trace up to that point. A second signal, while the first is still being
acted on, ends the process at once.

**Why a signal needs a thread.** Python runs a signal handler only between
bytecodes of the main thread. While the impl engine runs guest code inside
Unicorn (C, its clock in C as well) the main thread runs no bytecode at
all, so a handler would run late; and when it does run, it runs inside
whatever Unicorn callback came next, where an exception such as
``KeyboardInterrupt`` is swallowed by ctypes ("Exception ignored on calling
ctypes callback function"). So:

* :func:`signal.set_wakeup_fd` has the C-level handler write the signal's
  number to a pipe at once; a watcher thread wakes on it and asks every run
  under way to stop (Unicorn's ``uc_emu_stop`` may be called from another
  thread; emulation ends at the next block boundary), and asks again every
  50 ms until the runs have returned, so that a stop landing between two
  ``emu_start`` calls is not lost;
* Z3 would take SIGINT for itself while it solves (and answer ``unknown``):
  ``hvmspec check`` turns that off (``ctrl_c``) and puts ``Z3_interrupt``
  among :attr:`Operator.interrupters`, which the watcher calls too;
* the Python-level handler raises ``KeyboardInterrupt`` only when no guest
  run is under way; otherwise it only records the signal, and the command
  raises it itself at a safe point (:func:`checkpoint`) once the run has
  returned.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time

from spec import result

#: the signals that stop a command
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Operator:
    """The process's signal handling (one per process: :data:`OPERATOR`)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._first_at: float | None = None
        self._pipe: tuple[int, int] | None = None
        self._saved: dict[int, object] = {}
        self._old_fd = -1
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        #: other long C calls to cut short on a signal (Z3's solver)
        self.interrupters: list = []

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum or signal.SIGINT).name

    @property
    def exit_code(self) -> int:
        """The shell's code for a process ended by the signal: 128 + its number."""
        return 128 + (self.signum or signal.SIGINT)

    # --- installing ---------------------------------------------------------------

    def install(self) -> None:
        """Take SIGINT and SIGTERM (main thread only)."""
        if self._pipe is not None or threading.current_thread() is not threading.main_thread():
            return
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        self._pipe = (r, w)
        for sig in STOP_SIGNALS:
            self._saved[sig] = signal.signal(sig, self._on_signal)
        self._old_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        self._done.clear()
        self._thread = threading.Thread(target=self._watch, name="hvmspec-operator",
                                        daemon=True)
        self._thread.start()

    def uninstall(self) -> None:
        """Give the signals back (a daemon that handles them itself)."""
        if self._pipe is None:
            return
        self._done.set()
        signal.set_wakeup_fd(self._old_fd)
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        if self._thread is not None:
            self._thread.join(1.0)
        for fd in self._pipe:
            os.close(fd)
        self._pipe = None

    # --- receiving ----------------------------------------------------------------

    def _on_signal(self, signum: int, _frame) -> None:
        """The Python-level handler (the main thread, whenever it next runs
        bytecode)."""
        self._record(signum)
        if not result.running_controls():
            raise KeyboardInterrupt

    def _record(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
            self._first_at = time.monotonic()
        self._stop_runs()

    def _stop_runs(self) -> None:
        for control in result.running_controls():
            control.request_stop(self.signal_name)
        for interrupt in list(self.interrupters):
            interrupt()

    def _watch(self) -> None:
        r = self._pipe[0]
        while not self._done.is_set():
            if not select.select([r], [], [], 0.05)[0]:
                if self.signum is not None:
                    self._stop_runs()         # again: a stop may land between runs
                continue
            try:
                data = os.read(r, 64)
            except (BlockingIOError, OSError):
                continue
            for signum in data:
                if signum not in STOP_SIGNALS:
                    continue
                if self._first_at is not None and time.monotonic() - self._first_at > 0.2:
                    print(f"\nhvmspec: {signal.Signals(signum).name} again: exiting at once",
                          file=sys.stderr, flush=True)
                    os._exit(128 + signum)
                self._record(signum)

    # --- the command's side -------------------------------------------------------

    def checkpoint(self) -> None:
        """Between two pieces of work: raise ``KeyboardInterrupt`` if a
        signal came while a run was under way."""
        if self.signum is not None:
            raise KeyboardInterrupt


#: this process's operator
OPERATOR = Operator()
