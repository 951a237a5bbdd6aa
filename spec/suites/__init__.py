"""Conformance suites: cases any implementation can run, with the spec's answers.

Room: interface. The case formats of the suites that ``hvmspec conform
--impl`` drives an external implementation through (:mod:`hvmspec.protocol`),
and, for each, the events the reference model gives for a case: the
expected answer. Each suite is one module: its case format in the
docstring, :func:`validate`, :func:`expected` and :func:`generate`.
Imports the spec modules whose behaviour a suite covers.

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
"""

from __future__ import annotations

from types import ModuleType


class SuiteError(Exception):
    """A case that is not valid for its suite; says which field and why."""


def suites() -> dict[str, ModuleType]:
    from spec.suites import ioreq, system, uart
    return {"ioreq": ioreq, "uart": uart, "system": system}


def suite(name: str) -> ModuleType:
    found = suites().get(name)
    if found is None:
        raise SuiteError(f"no suite {name!r} (suites: {', '.join(suites())})")
    return found


def need(case: dict, key: str, kind: type | tuple, where: str = "case") -> object:
    """``case[key]``, which must be of ``kind``."""
    if key not in case:
        raise SuiteError(f"{where}: missing {key!r}")
    value = case[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise SuiteError(f"{where}: {key} = {value!r} is not "
                         f"{getattr(kind, '__name__', kind)}")
    return value
