"""What every ``hvmspec`` command shares: exit codes, the argument parser's
class, the one way an error is printed, and the progress bar.

Room: the CLI's plumbing. Imports nothing of the engines.
"""

from __future__ import annotations

import argparse
import sys

EXIT_OK, EXIT_NO, EXIT_USAGE = 0, 1, 2


class Parser(argparse.ArgumentParser):
    """Usage errors exit 2 with the usage line of the command that was given."""

    def error(self, message: str) -> None:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def error(message: str) -> None:
    """Print an error the way every command prints one: ``hvmspec: error: ...``."""
    print(f"hvmspec: error: {message}", file=sys.stderr)


# --- progress -------------------------------------------------------------------------

class progress:
    """A rich progress bar on stderr while work runs (only on a terminal)."""

    def __init__(self, total: int, what: str, quiet: bool) -> None:
        self.total, self.what = total, what
        self.enabled = not quiet and sys.stderr.isatty()

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        from rich.console import Console
        from rich.progress import Progress
        self.progress = Progress(console=Console(stderr=True), transient=True)
        self.progress.start()
        task = self.progress.add_task(self.what, total=self.total)
        return lambda: self.progress.advance(task)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.progress.stop()
