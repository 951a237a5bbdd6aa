"""Conformance suites: cases any implementation can run, with the spec's answers.

Room: interface. The case formats of the suites that ``hvmspec conform
--impl`` drives an external implementation through (:mod:`hvmspec.protocol`),
reading a case file, and, for each suite, the events the reference model
gives for a case: the expected answer. Each suite is one module: its case
format in the docstring, :func:`validate`, :func:`expected` and
:func:`generate`. The formats are published as a JSON Schema,
``suite-case.schema.json`` (:mod:`spec.schemas`): a line of a case file, and
in its ``$defs`` each suite's case and event. Imports :mod:`spec.schemas`
and the spec modules whose behaviour a suite covers.

* :mod:`spec.suites.ioreq`: one shared ioreq page, the steps of the VMM and
  the device model (and of a device model that scribbles on the state), the
  slot's bytes after each step;
* :mod:`spec.suites.uart`: COM1's 16550A, register reads and writes on a
  virtual clock, bytes arriving on its line;
* :mod:`spec.suites.system`: a whole guest in a new HVM domain, and its trace
  (every event of :mod:`spec.trace`).

A case is a JSON object ``{"id": str, ...}``; its answer a list of JSON
objects (*events*), compared in order. An implementation conforms on a case
when its events equal the expected ones, one by one.

A case file (:func:`read_cases`) has one case per line, ``{"suite": name,
"case": {...}}``, optionally with ``"expected"``, the reference model's
events (as ``hvmspec vectors export`` writes them); or it is one such
object over several lines, a reproducer, which adds ``"got"`` and
``"first_difference"``. A file has at least one case, no key the format
does not define, and no two cases of a suite with one ``id``.
"""

from __future__ import annotations

from types import ModuleType

from spec.schemas import FormatError, check, decode, text_of


class SuiteError(FormatError):
    """A case or case file that is not valid for its suite; says where
    (line, JSON path) and why."""


def suites() -> dict[str, ModuleType]:
    from spec.suites import ioreq, system, uart
    return {"ioreq": ioreq, "uart": uart, "system": system}


def suite(name: str) -> ModuleType:
    found = suites().get(name)
    if found is None:
        raise SuiteError(f"no suite {name!r} (suites: {', '.join(suites())})")
    return found


def check_case(case: object, name: str, path: str = "$") -> None:
    """``case`` must be valid under the schema's ``#/$defs/<name>-case``."""
    check(case, "suite-case", f"#/$defs/{name}-case", path, SuiteError)


def _entries(text: str) -> list[tuple[int, object]]:
    lines = text.split("\n")
    first = next((n for n, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return []
    try:
        return [(n, decode(line, n, SuiteError)) for n, line in enumerate(lines, 1)
                if line.strip()]
    except SuiteError as line_error:
        if line_error.line != first + 1:
            raise
        try:                      # one object over several lines (a reproducer)
            return [(first + 1, decode("\n".join(lines[first:]), first + 1, SuiteError))]
        except SuiteError:
            if lines[first].strip() in ("{", "["):
                raise
            raise line_error from None


def read_cases(data: bytes | str) -> list[tuple[int, str, dict]]:
    """The cases of a case file, ``(line, suite, case)`` each: UTF-8, each
    entry valid under the schema, each case under its suite's
    :func:`validate`. Errors name the line and the field."""
    out: list[tuple[int, str, dict]] = []
    first_line: dict[tuple[str, str], int] = {}
    for line, entry in _entries(text_of(data, SuiteError)):
        try:
            if isinstance(entry, dict) and "suite" not in entry and "mode" in entry \
                    and "code" in entry:
                raise SuiteError("an instruction vector, not a conformance-suite case "
                                 "({\"suite\", \"case\"})", path="$", looks_like="x86-vector")
            check(entry, "suite-case", path="$", error=SuiteError)
            name, case = entry["suite"], entry["case"]
            suite(name).validate(case, "$.case")
        except SuiteError as exc:
            exc.line = line
            raise
        if (name, case["id"]) in first_line:
            raise SuiteError(f"id {case['id']!r} is already the {name} case of line "
                             f"{first_line[name, case['id']]}", line=line, path="$.case.id")
        first_line[name, case["id"]] = line
        out.append((line, name, case))
    if not out:
        raise SuiteError("no cases: a case file with none would pass without testing anything")
    return out
