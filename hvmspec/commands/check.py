"""``hvmspec check``: the Z3 proofs and their mutants.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import signal
import time

from hvmspec.commands import EXIT_NO, EXIT_OK, UsageError, progress


def add_parsers(sub) -> None:
    check = sub.add_parser("check", help="run every Z3 proof and its mutants",
                           description="Run every proof over the spec's own functions, and "
                           "every mutant (a deliberately broken spec function) that must give "
                           "a counterexample. Exit 0 only if every result is the expected one.")
    check.add_argument("names", nargs="*", metavar="NAME",
                       help="run only these checks: a check's name (mapcache.budget), or a "
                       "group ending at a '.' or '/' (mapcache: every mapcache check and "
                       "mutant; mapcache.budget: the invariant and its mutants)")
    check.add_argument("-k", dest="pattern", metavar="PATTERN",
                       help="run only checks whose name contains PATTERN (case-insensitive; "
                       "* and ? as in shell patterns)")
    check.add_argument("--list", action="store_true",
                       help="list the checks that would run, without running them")
    check.add_argument("--json", action="store_true",
                       help="print a JSON list of {name, kind, expected, result, seconds}")
    check.add_argument("--invariants", action="store_true",
                       help="run only the invariants, not their mutants (a mutation-testing "
                       "run asks whether the proofs catch a change to the spec's source)")
    check.add_argument("-j", "--jobs", type=int, metavar="N",
                       help="run the checks in N processes at once (default: one per CPU; "
                       "1 runs them one after another in this process)")
    check.add_argument("-x", "--exitfirst", action="store_true",
                       help="stop at the first check whose result is not the expected one "
                       "(what a mutation-testing run wants: a broken spec is found sooner)")
    check.set_defaults(func=cmd_check)


def select(checks: list, names: list[str], pattern: str | None) -> list:
    """The checks that ``NAME...`` and ``-k PATTERN`` pick, in their order.
    A name that picks nothing is an error (a typo must not run zero checks
    and pass)."""
    picked = checks
    if names:
        unknown = [n for n in names if not any(_in_group(c.name, n) for c in checks)]
        if unknown:
            groups = sorted({c.name.split(".")[0] for c in checks})
            raise UsageError(f"no check named {', '.join(map(repr, unknown))} (groups: "
                             f"{', '.join(groups)}; hvmspec check --list shows every name)")
        picked = [c for c in picked if any(_in_group(c.name, n) for n in names)]
    if pattern is not None:
        glob = pattern.lower() if any(ch in pattern for ch in "*?[") else f"*{pattern.lower()}*"
        picked = [c for c in picked if fnmatch.fnmatchcase(c.name.lower(), glob)]
        if not picked:
            raise UsageError(f"-k {pattern!r} matches no check (hvmspec check --list shows "
                             f"every name)")
    return picked


def _in_group(name: str, group: str) -> bool:
    return name == group or (name.startswith(group) and name[len(group)] in "./") \
        or group.endswith((".", "/")) and name.startswith(group)


def cmd_check(args: argparse.Namespace) -> int:
    from proofs import all_checks
    rows = []
    checks = select(all_checks(), args.names, args.pattern)
    if args.invariants:
        checks = [c for c in checks if c.kind == "invariant"]
    if args.list:
        if args.json:
            print(json.dumps([{"name": c.name, "kind": c.kind, "expected": c.expected}
                              for c in checks], indent=1))
        else:
            for c in checks:
                print(f"{c.name}  ({c.kind}, expects {c.expected})")
        return EXIT_OK
    jobs = args.jobs if args.jobs is not None else os.cpu_count() or 1
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, not {jobs}")
    with progress(len(checks), "proofs", quiet=args.json) as advance:
        if jobs == 1 or len(checks) < 2:
            outcomes = _in_turn(checks, args.exitfirst, advance)
        else:
            outcomes = _at_once(checks, min(jobs, len(checks)), args.exitfirst, advance)
    for chk in checks:
        if chk.name not in outcomes:
            continue
        outcome = outcomes[chk.name]
        rows.append({"name": chk.name, "kind": chk.kind, "expected": chk.expected,
                     "result": outcome.result, "seconds": round(outcome.seconds, 4),
                     "counterexample": outcome.counterexample, "detail": outcome.detail,
                     "witnesses": [{"case": name, "run": run}
                                   for name, run in outcome.witnesses]})
    ok = all(r["result"] == r["expected"] for r in rows)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        _print_check_table(rows)
    return EXIT_OK if ok else EXIT_NO


def _in_turn(checks: list, exitfirst: bool, advance) -> dict:
    """The checks one after another in this process (SIGINT interrupts Z3)."""
    import z3

    from hvmspec.console import OPERATOR
    z3.set_param("ctrl_c", False)           # SIGINT is the operator's (hvmspec.console)
    OPERATOR.interrupters.append(z3.main_ctx().interrupt)
    outcomes = {}
    for chk in checks:
        OPERATOR.checkpoint()
        outcomes[chk.name] = outcome = _run(chk)
        OPERATOR.checkpoint()
        advance()
        if exitfirst and outcome.result != chk.expected:
            break
    return outcomes


def _at_once(checks: list, jobs: int, exitfirst: bool, advance) -> dict:
    """The checks in ``jobs`` worker processes (each check is independent:
    its own Z3 terms and solver); results are reported in the checks' own
    order whatever order they finish in. A worker that dies gives its check
    the result ``error``."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from proofs.kinduction import Outcome
    outcomes = {}
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_start)
    try:
        futures = {pool.submit(_worker_run, chk.name): chk for chk in checks}
        for future in as_completed(futures):
            chk = futures[future]
            try:
                outcome = future.result()
            except Exception as exc:            # noqa: BLE001 - a dead worker, reported
                outcome = Outcome("error", 0.0, detail=f"{type(exc).__name__}: {exc}")
            outcomes[chk.name] = outcome
            advance()
            if exitfirst and outcome.result != chk.expected:
                break
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return outcomes


def _worker_start() -> None:
    """A worker leaves SIGINT to the command, which stops the pool."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


_BY_NAME: dict = {}


def _worker_run(name: str):
    if not _BY_NAME:
        from proofs import all_checks
        _BY_NAME.update((c.name, c) for c in all_checks())
    return _run(_BY_NAME[name])


def _run(chk):
    """One check. A spec function that raises while a proof runs it (a
    broken spec: a mutant, or a real bug) is the result ``error``, with the
    exception in the detail, not a traceback that hides the other results."""
    from proofs.kinduction import Outcome
    started = time.perf_counter()
    try:
        return chk.run()
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:                    # noqa: BLE001 - reported, not hidden
        return Outcome("error", time.perf_counter() - started,
                       detail=f"{type(exc).__name__}: {exc}")


def _print_check_table(rows: list[dict]) -> None:
    """The table, then each counterexample. Names and counterexamples are
    printed literally (rich Text, never markup): a counterexample such as
    ``adc byte ptr [rbx], cl (64-bit) at 0xfebf0f00`` keeps its brackets."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text
    console = Console()
    table = Table(title="hvmspec check")
    for col in ("name", "expected", "result", "seconds"):
        table.add_column(col, justify="right" if col == "seconds" else "left")
    for r in rows:
        style = "green" if r["result"] == r["expected"] else "bold red"
        table.add_row(Text(r["name"]), Text(r["expected"]), Text(r["result"], style=style),
                      f"{r['seconds']:.3f}")
    console.print(table)
    for r in rows:
        if r["counterexample"]:
            console.print(Text.assemble((r["name"], "bold"), ": counterexample"),
                          highlight=False)
            for line in r["counterexample"]:
                console.print(Text(f"    {line}"), highlight=False, soft_wrap=True)
    for r in rows:
        if r["result"] in ("vacuous", "error"):
            console.print(Text.assemble((r["name"], "bold"), f": {r['result']}: {r['detail']}"),
                          highlight=False)
    bad = [r["name"] for r in rows if r["result"] != r["expected"]]
    console.print(Text(f"{len(rows) - len(bad)} as expected, {len(bad)} not"
                       + (f": {', '.join(bad)}" if bad else "")), highlight=False)

