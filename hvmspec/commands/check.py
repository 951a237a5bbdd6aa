"""``hvmspec check``: the Z3 proofs and their mutants.
"""

from __future__ import annotations

import argparse
import json

from hvmspec.commands import EXIT_NO, EXIT_OK, progress


def add_parsers(sub) -> None:
    check = sub.add_parser("check", help="run every Z3 proof and its mutants",
                           description="Run every proof over the spec's own functions, and "
                           "every mutant (a deliberately broken spec function) that must give "
                           "a counterexample. Exit 0 only if every result is the expected one.")
    check.add_argument("--json", action="store_true",
                       help="print a JSON list of {name, kind, expected, result, seconds}")
    check.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    from proofs import all_checks
    rows = []
    checks = all_checks()
    with progress(len(checks), "proofs", quiet=args.json) as advance:
        for chk in checks:
            outcome = chk.run()
            rows.append({"name": chk.name, "kind": chk.kind, "expected": chk.expected,
                         "result": outcome.result, "seconds": round(outcome.seconds, 4),
                         "counterexample": outcome.counterexample})
            advance()
    ok = all(r["result"] == r["expected"] for r in rows)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        _print_check_table(rows)
    return EXIT_OK if ok else EXIT_NO


def _print_check_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table
    console = Console()
    table = Table(title="hvmspec check")
    for col in ("name", "expected", "result", "seconds"):
        table.add_column(col, justify="right" if col == "seconds" else "left")
    for r in rows:
        style = "green" if r["result"] == r["expected"] else "bold red"
        table.add_row(r["name"], r["expected"], f"[{style}]{r['result']}[/]", f"{r['seconds']:.3f}")
    console.print(table)
    for r in rows:
        if r["counterexample"]:
            console.print(f"[bold]{r['name']}[/]: counterexample", highlight=False)
            for line in r["counterexample"]:
                console.print(f"    {line}", highlight=False)
    bad = [r["name"] for r in rows if r["result"] != r["expected"]]
    console.print(f"{len(rows) - len(bad)} as expected, {len(bad)} not"
                  + (f": {', '.join(bad)}" if bad else ""))

