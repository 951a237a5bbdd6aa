"""Instruction test vectors: the file format other engines run.

Room: interface. Reading, checking and writing vector files, the outcome a
runner reports, and the comparison of an outcome with a case's
expectations. No x86 behaviour: the reference runner is
:mod:`spec.x86.vectors`, impl's is :mod:`impl.vectors`. Imports
:mod:`spec.schemas`, whose ``x86-vector.schema.json`` is the format.

One case per line (JSON)::

    {"id": str, "mode": 16|32|64, "code": hex,
     "regs": {"rax": int, ..., "r15": int, "rip": int}, "rflags": int,
     "ram": [{"addr": int, "hex": str}], "mmio": [{"addr": int, "hex": str}],
     "expect": {"regs": {...}, "rflags": int, "rflags_mask": int,
                "ram": [...], "mmio": [...],
                "mmio_ops": [{"op": "read"|"write", "addr": int, "size": int,
                              "value": int}],
                "fault": null | {"vector": int}}}

Segments are flat (base 0); ``code`` is placed at ``regs.rip``; registers not
given are zero. A 64-bit case has the sixteen registers, 64-bit; a 16- or
32-bit case the first eight, 32-bit, and rip (IP, below 64 KiB, in 16-bit
mode). ``expect.regs`` lists the registers compared. Every address outside
the ``mmio`` regions is RAM, zero unless ``ram`` gives its bytes; an address
is guest-physical, below ``2**52`` (x86-64's widest physical address), and so
is the end of every region and of the code; the ``ram`` and ``mmio``
regions and the code do not overlap one another, except that code may lie
in RAM that ``ram`` gives (it is written over it). ``expect.ram`` and
``expect.mmio`` give final bytes; flags (32 bits) are compared under
``rflags_mask``. MMIO regions behave like memory, but every access to them
is logged in ``mmio_ops``, in order, element by element for string forms.
``expect.fault`` must be given: ``null``, or the fault's vector. A case is
one instruction (a repeated string instruction runs all its iterations);
on a fault RIP stays on it.

A file has at least one case, and no two with one ``id``. A key the format
does not define, anywhere, makes the case invalid (a misspelt ``expect.rgs``
would otherwise compare nothing and pass).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import IO, Callable, Iterable

from spec.schemas import FormatError, check, json_lines

REGISTERS = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
FLAG_NAMES = {0: "CF", 2: "PF", 4: "AF", 6: "ZF", 7: "SF", 8: "TF", 9: "IF", 10: "DF", 11: "OF"}
#: guest-physical addresses lie below this (x86-64's MAXPHYADDR is at most 52)
ADDRESS_LIMIT = 1 << 52
#: where a mode's code must end: IP and EIP wrap, and memory ends
CODE_LIMIT = {16: 1 << 16, 32: 1 << 32, 64: ADDRESS_LIMIT}


class VectorError(FormatError):
    """A case or file that is not valid vectors; says where (line, JSON path) and why."""


@dataclass
class Case:
    id: str
    mode: int
    code: bytes
    regs: dict[str, int]
    rflags: int
    ram: list[tuple[int, bytes]]
    mmio: list[tuple[int, bytes]]
    expect: dict

    def to_json(self) -> dict:
        ranges = lambda rs: [{"addr": a, "hex": d.hex()} for a, d in rs]   # noqa: E731
        return {"id": self.id, "mode": self.mode, "code": self.code.hex(), "regs": self.regs,
                "rflags": self.rflags, "ram": ranges(self.ram), "mmio": ranges(self.mmio),
                "expect": self.expect}


@dataclass
class Outcome:
    """What a runner reports for one case."""

    regs: dict[str, int]                     # rax..r15 and rip
    rflags: int
    memory: Callable[[int, int], bytes]      # final bytes, RAM or MMIO backing
    mmio_ops: list[dict] = field(default_factory=list)
    fault: dict | None = None


# --- reading -------------------------------------------------------------------------------

def _regions(items: list[dict]) -> list[tuple[int, bytes]]:
    return [(item["addr"], bytes.fromhex(item["hex"])) for item in items]


def _check_places(obj: dict) -> None:
    """What the schema cannot say: regions and code end by ``2**52`` (and
    within the mode's reach), and do not overlap."""
    spans = []          # (start, end, JSON path)
    for where, place in (("$", obj), ("$.expect", obj["expect"])):
        for key in ("ram", "mmio"):
            for i, item in enumerate(place.get(key, [])):
                spans.append((item["addr"], item["addr"] + len(item["hex"]) // 2,
                              f"{where}.{key}[{i}]"))
    for lo, hi, where in spans:
        if hi > ADDRESS_LIMIT:
            raise VectorError(f"the region {lo:#x}+{hi - lo} ends past 2**52, the end of "
                              f"guest-physical memory", path=where)
    given = sorted(s for s in spans if not s[2].startswith("$.expect"))
    for (a, b, first), (c, d, second) in zip(given, given[1:]):
        if c < b:
            raise VectorError(f"overlaps {first} ({a:#x}-{b - 1:#x}): one address, one value",
                              path=second)
    rip = obj.get("regs", {}).get("rip", 0)
    end = rip + len(obj["code"]) // 2
    if end > CODE_LIMIT[obj["mode"]]:
        raise VectorError(f"the instruction at rip {rip:#x} ends past {CODE_LIMIT[obj['mode']]:#x}"
                          f", where a {obj['mode']}-bit case's code must end", path="$.code")
    for lo, hi, where in given:
        if where.startswith("$.mmio") and lo < end and rip < hi:
            raise VectorError(f"the instruction at rip {rip:#x} lies in {where} ({lo:#x}-"
                              f"{hi - 1:#x}): code is fetched from RAM", path="$.code")


def parse(obj: object, line: int | None = None) -> Case:
    """Check one case (a decoded JSON object) against the format: the
    schema, then what ties its values together."""
    if isinstance(obj, dict) and "suite" in obj and "case" in obj:
        raise VectorError("a conformance-suite case ({\"suite\", \"case\"}), not an "
                          "instruction vector", line=line, path="$", looks_like="suite-case")
    try:
        check(obj, "x86-vector", error=VectorError)
        _check_places(obj)
    except VectorError as exc:
        exc.line = line
        raise
    return Case(obj["id"], obj["mode"], bytes.fromhex(obj["code"]), dict(obj.get("regs", {})),
                obj.get("rflags", 2), _regions(obj.get("ram", [])),
                _regions(obj.get("mmio", [])), obj["expect"])


def load(stream: IO[str] | IO[bytes]) -> list[Case]:
    """Read a JSON-lines vector file (text, or bytes that must be UTF-8);
    errors name the line and the field."""
    cases: list[Case] = []
    first_line: dict[str, int] = {}
    for lineno, obj in json_lines(stream.read(), VectorError):
        case = parse(obj, lineno)
        if case.id in first_line:
            raise VectorError(f"id {case.id!r} is already the case of line "
                              f"{first_line[case.id]}", line=lineno, path="$.id")
        first_line[case.id] = lineno
        cases.append(case)
    if not cases:
        raise VectorError("no cases: a vector file with none would pass without testing "
                          "anything")
    return cases


def dump(cases: Iterable[Case], stream: IO[str]) -> None:
    for case in cases:
        stream.write(json.dumps(case.to_json(), separators=(",", ":")) + "\n")


# --- comparing -------------------------------------------------------------------------------

def compare(case: Case, outcome: Outcome) -> list[str]:
    """Every way ``outcome`` differs from what ``case`` expects."""
    expect, diffs = case.expect, []
    if expect.get("fault") != outcome.fault:
        diffs.append(f"fault: expected {expect.get('fault')}, got {outcome.fault}")
    width = (1 << 64) - 1 if case.mode == 64 else 0xFFFFFFFF
    for name, value in expect.get("regs", {}).items():
        got = outcome.regs.get(name, 0) & width
        if got != value & width:
            diffs.append(f"{name}: expected {value & width:#x}, got {got:#x}")
    if "rflags" in expect:
        mask = expect.get("rflags_mask", (1 << 64) - 1)
        want, got = expect["rflags"] & mask, outcome.rflags & mask
        if want != got:
            names = [n for bit, n in FLAG_NAMES.items() if (want ^ got) >> bit & 1]
            diffs.append(f"rflags & {mask:#x}: expected {want:#x}, got {got:#x} "
                         f"({' '.join(names)})")
    for kind in ("ram", "mmio"):
        for addr, data in _regions(expect.get(kind, [])):
            got = outcome.memory(addr, len(data))
            if got != data:
                diffs.append(f"{kind} {addr:#x}+{len(data)}: expected {data.hex()}, "
                             f"got {got.hex()}")
    ops, want_ops = outcome.mmio_ops, expect.get("mmio_ops", [])
    for i in range(max(len(ops), len(want_ops))):
        a = want_ops[i] if i < len(want_ops) else None
        b = ops[i] if i < len(ops) else None
        if a != b:
            show = lambda o: "nothing" if o is None else \
                f"{o['op']} {o['addr']:#x}/{o['size']} = {o['value']:#x}"   # noqa: E731
            diffs.append(f"mmio_ops[{i}]: expected {show(a)}, got {show(b)}")
            break
    return diffs
