"""``hvmspec``: run guests, check the proofs, compare engines.

Exit codes, for every command:

* 0: success (the guest powered off; every proof gave what was expected;
  every case conformed);
* 1: the thing ran and the answer is no (the domain crashed, hung or hit the
  instruction budget; a proof or mutant gave an unexpected result; a case
  diverged);
* 2: bad input or usage (no such guest, a guest that does not assemble, an
  image that cannot be placed, bad options).
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version

from hvmspec.commands import EXIT_NO, EXIT_OK, EXIT_USAGE, Parser, UsageError, error
from hvmspec.commands import check, conform, host, run, timeline
from hvmspec.console import OPERATOR
from spec.loader import GuestError

__all__ = ["EXIT_OK", "EXIT_NO", "EXIT_USAGE", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="hvmspec", description=(
        "An executable specification of Xen full virtualization (HVM): run guests on the "
        "reference model or the optimised engine, check the Z3 proofs, compare engines."),
        epilog="Exit codes: 0 success, 1 the answer is no, 2 bad input or usage.")
    parser.add_argument("--version", action="version",
                        version=f"hvmspec {version('hvmspec')} (Python {sys.version.split()[0]})")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for commands in (run, check, conform, host, timeline):
        commands.add_parsers(sub)
    return parser


#: commands that take SIGINT and SIGTERM themselves (they serve until told to stop)
DAEMONS = ("xend", "xenstored")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in DAEMONS:
        OPERATOR.install()
    try:
        return args.func(args)
    except (GuestError, UsageError) as exc:
        error(str(exc))
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_NO
    except KeyboardInterrupt:
        print(f"\nhvmspec: {OPERATOR.signal_name}: stopped", file=sys.stderr)
        return OPERATOR.exit_code
    except Exception:
        # a signal's KeyboardInterrupt that landed inside a C call comes out
        # as that library's error (ctypes: "argument 1: KeyboardInterrupt",
        # while Z3 builds a term): once the operator has asked to stop, it
        # is that stop, not a failure
        if OPERATOR.signum is None:
            raise
        print(f"\nhvmspec: {OPERATOR.signal_name}: stopped", file=sys.stderr)
        return OPERATOR.exit_code
    finally:
        OPERATOR.uninstall()


if __name__ == "__main__":
    sys.exit(main())
