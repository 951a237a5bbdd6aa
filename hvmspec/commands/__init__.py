"""What every ``hvmspec`` command shares: exit codes, the argument parser's
class, the one way an error is printed, and the progress bar.

Room: the CLI's plumbing. Imports nothing of the engines.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

#: the exit codes every command shares (docs/cli.rst): 0 yes (``run``: the guest
#: powered off, or with ``--until`` the text appeared), 1 no (``run``: the
#: domain crashed, hung or hit its budget, or with ``--until`` ended without
#: the text), 2 bad input or usage; a signal gives 128 + its number
EXIT_OK, EXIT_NO, EXIT_USAGE = 0, 1, 2


class Parser(argparse.ArgumentParser):
    """Usage errors exit 2 with the usage line of the command that was given:
    an option ``hvmspec run`` does not know is reported with ``run``'s usage,
    not the top level's (argparse hands a subcommand's unknown arguments up
    to the top, which would name itself)."""

    #: the innermost parser that has started parsing (the command given)
    innermost: "Parser | None" = None

    def parse_known_args(self, args=None, namespace=None):
        Parser.innermost = self
        return super().parse_known_args(args, namespace)

    def parse_args(self, args=None, namespace=None):
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            (Parser.innermost or self).error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace

    def error(self, message: str) -> None:
        """Every error starts ``hvmspec: error:`` (see :func:`error`); the
        usage line above it names the command."""
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"hvmspec: error: {message} (hvmspec "
                  f"{self.prog.removeprefix('hvmspec').strip() + ' ' if self.prog != 'hvmspec' else ''}"
                  f"--help for more)\n")


class UsageError(Exception):
    """Bad input or usage found by a command (exit 2); the message says what."""


def output_path(path: Path, option: str, suffixes: tuple[str, ...] = ()) -> Path:
    """Check, before any work, that ``path`` can be written: its directory
    exists and is writable, it is not a directory, and its suffix is one of
    ``suffixes`` (if given). Raises :class:`UsageError` naming the option
    and what is wrong."""
    if suffixes and path.suffix.lower() not in suffixes:
        raise UsageError(f"{option} {path}: the file must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a directory; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists()
                                                    and not os.access(path, os.W_OK)):
        raise UsageError(f"{option} {path}: not writable")
    return path


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
            return lambda *_: None
        from rich.console import Console
        from rich.progress import Progress
        self.progress = Progress(console=Console(stderr=True), transient=True)
        self.progress.start()
        task = self.progress.add_task(self.what, total=self.total)
        return lambda *_: self.progress.advance(task)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.progress.stop()
