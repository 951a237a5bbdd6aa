"""``hvmspec conform`` and ``hvmspec vectors``: engines and implementations
against the spec.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hvmspec.conform import FIRMWARE_CASES
from spec.loader import GuestError, bundled_guests, load
from hvmspec.commands import EXIT_NO, EXIT_OK, EXIT_USAGE, UsageError, progress


def add_parsers(sub) -> None:
    conform = sub.add_parser("conform", help="run the bundled guests on both engines and "
                             "compare their traces",
                             description="Run every bundled guest (or the guests named) on "
                             "the reference and the impl engine and compare their traces event "
                             "by event; with --firmware, also Debian's firmware (rombios, "
                             "rombios-legacy, SeaBIOS) through its power-on self-test. Exit 0 only if all are equal; "
                             "2 if a guest or firmware file is missing.")
    conform.add_argument("guests", nargs="*", help="guests to compare (default: all bundled); "
                         "rombios, rombios-legacy and seabios name the firmware cases, "
                         "linux-cd the Linux CD booted by rombios until it boots the "
                         "CD (hvmspec.conform.OS_CASE; minutes on the reference)")
    conform.add_argument("--firmware", action="store_true",
                         help="also the firmware cases: Debian's rombios and rombios-legacy (with "
                         "the VGA BIOS placed as hvmloader did) and SeaBIOS, each through its "
                         "power-on "
                         "self-test until its log says 'No bootable device' (minutes on the "
                         "reference engine; make conform runs them)")
    conform.add_argument("--json", action="store_true",
                         help="print {cases, equal, results: [{case, equal, events}], "
                              "diverged: [{case, index, reference, impl}]}")
    conform.add_argument("--impl", metavar="CMD",
                         help="instead, check an implementation in any language: CMD speaks "
                         "the implementation protocol (JSON lines on stdin/stdout, docs: "
                         "conformance for implementers) and runs the suites it names; each "
                         "case is compared with the spec's answer")
    conform.add_argument("--suite", action="append", choices=("ioreq", "uart", "system"),
                         help="with --impl: only this suite (repeatable)")
    conform.add_argument("--cases", metavar="FILE", type=Path, action="append",
                         help="with --impl: run the cases of FILE (JSON lines, each "
                         "{\"suite\", \"case\"}) instead of the generated ones")
    conform.add_argument("--reproducers", metavar="DIR", type=Path,
                         help="with --impl: write a minimal reproducer of each divergence "
                         "into DIR")
    conform.add_argument("--timeout", type=float, default=300.0,
                         help="with --impl: seconds one case may take (default %(default)s)")
    conform.set_defaults(func=cmd_conform)

    vectors = sub.add_parser("vectors", help="run or export instruction test vectors",
                             description="Instruction test vectors: one JSON case per line "
                             "(docs: vectors). 'run' checks an engine against a file; "
                             "'export' writes the project's own vectors.")
    vsub = vectors.add_subparsers(dest="vectors_command", metavar="{run,export}", required=True)
    vrun = vsub.add_parser("run", help="run a vector file on an engine",
                           description="Run every case of FILE on the engine and compare with "
                           "its expectations. Exit 0 only if every case passes; 2 for a file "
                           "that is not valid vectors.")
    vrun.add_argument("file", help="a JSON-lines vector file")
    vrun.add_argument("--engine", choices=("reference", "impl"), default="impl")
    vrun.add_argument("--json", action="store_true",
                      help="print {passed, failed, failures: [{id, diff}]}")
    vrun.set_defaults(func=cmd_vectors_run)
    vexp = vsub.add_parser("export", help="write the project's own vectors into DIR",
                           description="Generate the project's instruction vectors (a fixed "
                           "seed; expectations from the reference engine, kept only where impl "
                           "agrees or a documented Unicorn deviation explains the difference) "
                           "and write DIR/x86.jsonl; and the conformance suites' cases with the "
                           "spec's answers, DIR/ioreq.jsonl, DIR/uart.jsonl and DIR/system.jsonl "
                           "(whole guests: image, configuration, inputs, expected trace). Exit 1 "
                           "if the engines disagree anywhere else.")
    vexp.add_argument("dir", help="output directory")
    vexp.add_argument("--count", type=int, default=2000, help="cases (default %(default)s)")
    vexp.add_argument("--seed", type=int, default=2026)
    vexp.add_argument("--json", action="store_true", help="print the export report as JSON")
    vexp.set_defaults(func=cmd_vectors_export)


def cmd_vectors_run(args: argparse.Namespace) -> int:
    from hvmspec.vectors import run_file
    from spec.vectors import VectorError, load
    try:
        with open(args.file, "rb") as stream:
            cases = load(stream)
    except (OSError, VectorError) as exc:
        _case_file_error(args.file, exc)
        return EXIT_USAGE
    failures = run_file(cases, args.engine)
    passed = len(cases) - len(failures)
    if args.json:
        print(json.dumps({"passed": passed, "failed": len(failures), "failures": failures}))
    else:
        for f in failures:
            print(f"FAIL {f['id']}: " + "; ".join(f["diff"]))
        print(f"{passed} passed, {len(failures)} failed")
    return EXIT_OK if not failures else EXIT_NO


def _case_file_error(path, exc: Exception) -> None:
    """A vector or case file that cannot be read: ``file:line: field: why``,
    and the command that runs it if it is the other kind of file."""
    from hvmspec.commands import error
    if isinstance(exc, OSError):
        error(f"{path}: {exc.strerror or exc}")
        return
    message = exc.located(str(path))
    if exc.looks_like == "suite-case":
        message += (f"; {path} is a conformance-suite case file (as `hvmspec vectors export` "
                    f"writes ioreq.jsonl, uart.jsonl and system.jsonl): `hvmspec conform --impl "
                    f"CMD --cases {path}` runs it against an implementation")
    elif exc.looks_like == "x86-vector":
        message += (f"; {path} is an instruction vector file (as x86.jsonl): `hvmspec vectors "
                    f"run {path}` runs it")
    error(message)


def cmd_vectors_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hvmspec.vectors import export, export_schemas, export_suites
    try:              # before the cases are generated: a bad DIR fails at once
        report = {"schemas": export_schemas(Path(args.dir))}
    except OSError as exc:
        _case_file_error(args.dir, exc)
        return EXIT_USAGE
    report.update(export(Path(args.dir), args.count, args.seed))
    report["suites"] = export_suites(Path(args.dir))
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['cases']} cases written to {report['file']}; left out: "
              f"{report['deviations'] or 'no'} documented Unicorn deviations, "
              f"{report['unemulated']} not emulated, {len(report['disagreements'])} "
              f"disagreements")
        for name, path in report["suites"].items():
            print(f"{name} suite: {path}")
        print(f"schemas: {', '.join(report['schemas'].values())}")
        for d in report["disagreements"][:20]:
            print(f"  {d['id']}: " + "; ".join(d["diff"]))
    return EXIT_OK if not report["disagreements"] else EXIT_NO


def cmd_conform(args: argparse.Namespace) -> int:
    if args.impl:
        if args.firmware:
            raise UsageError("--firmware compares the two engines; with --impl, give the "
                             "cases with --suite or --cases")
        return _conform_external(args)
    from hvmspec.conform import run_case
    from hvmspec.console import OPERATOR
    names = list(args.guests or bundled_guests())
    if args.firmware:
        names += [n for n in FIRMWARE_CASES if n not in names]
    cases = [_case(n) for n in names]       # every file read before minutes of running
    results = []
    with progress(len(cases), "cases", quiet=args.json) as advance:
        for case in cases:
            results.append(run_case(case))
            OPERATOR.checkpoint()
            if not args.json:            # each case as it ends, for a pipe as well
                _print_case(results[-1])
            advance()
    diverged = [r for r in results if not r.equal]
    if args.json:
        print(json.dumps({"cases": len(results), "equal": len(results) - len(diverged),
                          "results": [{"case": r.case, "equal": r.equal, "events": r.events}
                                      for r in results],
                          "diverged": [{"case": r.case, "index": r.index,
                                        "reference": r.reference, "impl": r.impl,
                                        "context": r.context} for r in diverged]}))
    else:
        print(f"{len(results) - len(diverged)} of {len(results)} cases equal")
    return EXIT_OK if not diverged else EXIT_NO


def _case(name: str):
    """The case a name on the command line means: a bundled guest, a
    firmware of :data:`hvmspec.conform.FIRMWARE_CASES` (its file missing:
    the error names its Debian package), or a guest file."""
    from hvmspec.conform import OS_CASE, Case, firmware_case, os_case
    if name in FIRMWARE_CASES and name not in bundled_guests():
        return firmware_case(name)
    if name == OS_CASE:
        from hvmspec.linux_iso import LinuxIsoUnavailable
        try:
            return os_case()
        except LinuxIsoUnavailable as exc:
            raise GuestError(f"{OS_CASE}: {exc}") from None
    try:
        return Case(load(name))
    except GuestError as exc:
        if str(exc).startswith(f"no guest {name!r}"):
            raise GuestError(f"{exc}; or a firmware case ({', '.join(FIRMWARE_CASES)}), "
                             f"or {OS_CASE}") from None
        raise


def _print_case(r) -> None:
    """One guest's comparison: equal, or the first difference and its context."""
    if r.equal:
        print(f"{r.case}: equal ({r.events} events)", flush=True)
        return
    print(f"{r.case}: DIVERGED at event {r.index}")
    print(f"  reference: {json.dumps(r.reference)}")
    print(f"  impl:      {json.dumps(r.impl)}")
    if r.context:
        _print_around(r.index, r.context, ("reference", "impl"))
    sys.stdout.flush()


def _print_around(index: int, context: dict, sides: tuple[str, str]) -> None:
    """Each side's events around the first difference, that one marked."""
    base = context["from"]
    for side in sides:
        print(f"  {side} around it:")
        for k, ev in enumerate(context[side]):
            mark = ">" if base + k == index else " "
            print(f"   {mark}{base + k:6d} {json.dumps(ev)}")


def _conform_external(args: argparse.Namespace) -> int:
    from hvmspec.conform import DEFAULT_COUNTS, run_external
    from hvmspec.protocol import ImplementationError
    from spec.suites import SuiteError, read_cases

    cases: dict[str, list[dict]] = {}
    for path in args.cases or []:
        try:
            for _line, name, case in read_cases(path.read_bytes()):
                cases.setdefault(name, []).append(case)
        except (OSError, SuiteError) as exc:
            _case_file_error(path, exc)
            return EXIT_USAGE
    missing = [s for s in args.suite or [] if args.cases and s not in cases]
    if missing:
        from hvmspec.commands import error
        error(f"--suite {missing[0]}: the case files have no {missing[0]} cases (they have "
              f"{', '.join(sorted(cases))})")
        return EXIT_USAGE
    suites = args.suite or (sorted(cases) if cases else None)
    total = sum(len(v) for v in cases.values()) if cases else \
        sum(DEFAULT_COUNTS[s] for s in (suites or DEFAULT_COUNTS))
    from hvmspec.console import OPERATOR

    try:
        with progress(total, "cases", quiet=args.json) as advance:
            def case_done(r) -> None:       # each case as it ends, for a pipe as well
                advance()
                if not args.json:
                    verdict = ("equal" if r.equal else "ERROR" if r.error
                               else f"DIVERGED at event {r.index}")
                    print(f"{r.suite} {r.case}: {verdict}", flush=True)
                OPERATOR.checkpoint()
            name, results = run_external(args.impl, suites, cases or None, args.reproducers,
                                         case_done, args.timeout)
    except ImplementationError as exc:
        print(f"hvmspec: error: {args.impl}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    bad = [r for r in results if not r.equal]
    by_suite: dict[str, list[int]] = {}
    for r in results:
        by_suite.setdefault(r.suite, [0, 0])[0 if r.equal else 1] += 1
    if args.json:
        print(json.dumps({"implementation": name, "cases": len(results),
                          "equal": len(results) - len(bad),
                          "suites": {s: {"equal": n[0], "diverged": n[1]}
                                     for s, n in by_suite.items()},
                          "diverged": [r.to_json() for r in bad]}))
    else:
        print(f"implementation: {name}")
        for r in bad:
            if r.error:
                print(f"{r.suite} {r.case}: ERROR {r.error}")
                continue
            print(f"{r.suite} {r.case}: DIVERGED at event {r.index}")
            print(f"  expected: {json.dumps(r.expected)}")
            print(f"  got:      {json.dumps(r.got)}")
            _print_around(r.index, r.context, ("expected", "got"))
            if r.reproducer:
                print(f"  minimal reproducer: {r.reproducer}")
        for s, (eq, dv) in by_suite.items():
            print(f"{s}: {eq} of {eq + dv} cases equal")
        if not results:
            print("no cases: the implementation runs none of the suites asked for")
    return EXIT_OK if results and not bad else EXIT_NO

