"""The published JSON Schemas of hvmspec's case files, and reading such a file.

Room: interface. The schema files beside this module say what a case file
must be, for hvmspec and for a runner in any other language (JSON Schema
draft 2020-12, every object closed: a key the format does not define is an
error, not something ignored):

* ``x86-vector.schema.json``: one line of an instruction vector file
  (``x86.jsonl``, :mod:`spec.vectors`);
* ``suite-case.schema.json``: one line of a conformance-suite case file
  (``ioreq.jsonl``, ``uart.jsonl``, ``system.jsonl``) or a reproducer
  (:mod:`spec.suites`); its ``$defs`` hold each suite's case and event.

A schema says what one value may be. What ties values of a case together
(regions that must not overlap, a vcpu below the case's count) is checked
by the module of the format, after the schema.

Reading a JSON-lines file (:func:`json_lines`): UTF-8 text, one JSON value
per line (blank lines are skipped), no key twice in one object, integers
written as integers (``1.0`` and ``1e3`` are floating point in most
languages' JSON parsers, which lose the bits of a 64-bit value; NaN and
Infinity are not JSON). Every error is a :class:`FormatError` that names
the line and, for a value, its place as a JSON path (``$.expect.regs``).
Imports ``jsonschema``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import jsonschema

#: the schema files, by name
NAMES = ("x86-vector", "suite-case")


class FormatError(ValueError):
    """A file, line or value that is not what its format says: ``line`` (or
    None), ``path`` (a JSON path, or None) and ``text``, why."""

    def __init__(self, text: str, line: int | None = None, path: str | None = None,
                 looks_like: str | None = None) -> None:
        super().__init__(text)
        self.text, self.line, self.path = text, line, path
        #: the other format the value seems to be in (a schema's name), if any
        self.looks_like = looks_like

    def located(self, file: str | None = None) -> str:
        """``file:line: path: text``, the parts that are known."""
        where = "" if file is None else str(file)
        if self.line is not None:
            where = f"{where}:{self.line}" if where else f"line {self.line}"
        parts = [p for p in (where, self.path, self.text) if p]
        return ": ".join(parts)

    def __str__(self) -> str:
        return self.located()


# --- the schemas ---------------------------------------------------------------------------

def path_of(name: str) -> str:
    """Where the schema file ``name`` is installed."""
    return str(resources.files(__name__) / f"{name}.schema.json")


@lru_cache(maxsize=None)
def schema(name: str) -> dict:
    """The schema ``name`` (one of :data:`NAMES`), as a JSON object."""
    if name not in NAMES:
        raise ValueError(f"no schema {name!r} (schemas: {', '.join(NAMES)})")
    return json.loads((resources.files(__name__) / f"{name}.schema.json").read_text("utf-8"))


def _is_integer(_checker, value) -> bool:
    # JSON Schema calls 1.0 an integer; a case file writes integers as integers
    return isinstance(value, int) and not isinstance(value, bool)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer))


@lru_cache(maxsize=None)
def _validator(name: str, ref: str | None):
    whole = schema(name)
    if ref is None:
        return _Validator(whole)
    return _Validator({"$schema": whole["$schema"], "$defs": whole["$defs"], "$ref": ref})


def check(value: object, name: str, ref: str | None = None, path: str = "$",
          error: type[FormatError] = FormatError) -> None:
    """Raise ``error`` if ``value`` is not valid under the schema ``name``
    (or its part ``ref``, e.g. ``#/$defs/ioreq-case``), naming the value's
    place under ``path`` and why. Of several faults, the one
    :func:`jsonschema.exceptions.best_match` picks is named."""
    validator = _validator(name, ref)
    if validator.is_valid(value):
        return
    best = jsonschema.exceptions.best_match(validator.iter_errors(value))
    where, text = _describe(best)
    raise error(text, path=path + where[1:])


# --- what a schema error means, in words ----------------------------------------------------

def _show(value: object) -> str:
    text = json.dumps(value)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0xFFFF:
        text += f" ({value:#x})"
    return text if len(text) <= 60 else text[:40] + "..." + text[-12:]


def _bound(value: int) -> str:
    return f"{value} ({value:#x})" if value > 0xFFFF else str(value)


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if key.isidentifier() else f"{path}[{json.dumps(key)}]"


def _describe(error: jsonschema.ValidationError) -> tuple[str, str]:
    """The JSON path of the faulty value and what is wrong with it."""
    path, value, schema_, v = error.json_path, error.instance, error.schema, error.validator
    note = schema_.get("description") if isinstance(schema_, dict) else None
    why = f" ({note})" if note else ""
    if v == "additionalProperties":
        known = list(schema_.get("properties", {}))
        extra = next(k for k in value if k not in known)
        return _child(path, extra), f"unknown key (known here: {', '.join(known)})"
    if v == "required":
        missing = next(k for k in error.validator_value if k not in value)
        return path, f"missing {missing!r}"
    if v == "dependentRequired":
        for key, needs in error.validator_value.items():
            if key in value and any(n not in value for n in needs):
                return _child(path, key), f"given without {', '.join(needs)}"
    if v == "type":
        kinds = error.validator_value
        kinds = " or ".join(kinds) if isinstance(kinds, list) else kinds
        return path, f"{_show(value)} is not {'an' if kinds[0] in 'aeio' else 'a'} {kinds}"
    if v == "enum":
        return path, (f"{_show(value)} is not one of "
                      f"{', '.join(json.dumps(x) for x in error.validator_value)}")
    if v == "const":
        return path, f"{_show(value)} is not {json.dumps(error.validator_value)}{why}"
    if v == "maximum":
        return path, f"{_show(value)} is above the maximum {_bound(error.validator_value)}{why}"
    if v == "minimum":
        return path, f"{_show(value)} is below the minimum {_bound(error.validator_value)}{why}"
    if v == "pattern":
        return path, f"{_show(value)} is not {note or 'of the form ' + error.validator_value}"
    if v in ("minLength", "maxLength"):
        return path, (f"{len(value)} characters: {'at least' if v == 'minLength' else 'at most'} "
                      f"{error.validator_value}{why}")
    if v in ("minItems", "maxItems"):
        return path, (f"{len(value)} items: {'at least' if v == 'minItems' else 'at most'} "
                      f"{error.validator_value}{why}")
    if v == "not":
        return path, f"not allowed here{why}"
    if v == "oneOf":
        return path, f"{_show(value)} is none of the forms this place takes{why}"
    return path, error.message


# --- reading ------------------------------------------------------------------------------------

class _Duplicate(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    seen: dict = {}
    for key, value in pairs:
        if key in seen:
            raise _Duplicate(key)
        seen[key] = value
    return seen


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def decode(text: str, line: int = 1, error: type[FormatError] = FormatError) -> object:
    """One JSON value (a line, or a whole document starting at ``line``)."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except _Duplicate as exc:
        raise error(f"key {exc.args[0]!r} appears twice in one object", line=line) from None
    except json.JSONDecodeError as exc:
        raise error(f"not JSON: {exc.msg} (column {exc.colno})",
                    line=line + exc.lineno - 1) from None
    except ValueError as exc:         # NaN, Infinity
        raise error(f"not JSON: {exc}", line=line) from None


def text_of(data: bytes | str, error: type[FormatError] = FormatError) -> str:
    """``data`` as text: it must be UTF-8."""
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise error(f"not UTF-8 text: byte {data[exc.start]:#04x} at column {column}",
                    line=line) from None


def json_lines(data: bytes | str, error: type[FormatError] = FormatError
               ) -> list[tuple[int, object]]:
    """The values of a JSON-lines file, each with its line number."""
    text = text_of(data, error)
    return [(n, decode(line, n, error)) for n, line in enumerate(text.split("\n"), 1)
            if line.strip()]
