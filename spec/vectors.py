"""Instruction test vectors: the file format other engines run.

Room: interface. Reading, checking and writing vector files, the outcome a
runner reports, and the comparison of an outcome with a case's
expectations. No x86 behaviour: the reference runner is
:mod:`spec.x86.vectors`, impl's is :mod:`impl.vectors`.

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
given are zero; ``expect.regs`` lists the registers compared, and in 16- and
32-bit modes only the low 32 bits of the first eight registers (and of rip)
count. Every address outside the ``mmio`` regions is RAM, zero unless
``ram`` gives its bytes; ``expect.ram`` and ``expect.mmio`` give final
bytes; flags are compared under ``rflags_mask``. MMIO regions behave like
memory, but every access to them is logged in ``mmio_ops``, in order,
element by element for string forms. A case is one instruction (a repeated
string instruction runs all its iterations); on a fault RIP stays on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import IO, Callable, Iterable

REGISTERS = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
FLAG_NAMES = {0: "CF", 2: "PF", 4: "AF", 6: "ZF", 7: "SF", 8: "TF", 9: "IF", 10: "DF", 11: "OF"}


class VectorError(Exception):
    """A case that is not a valid vector; the message says where and why."""


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

def _need(obj: dict, key: str, kind, where: str):
    if key not in obj:
        raise VectorError(f"{where}: missing {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise VectorError(f"{where}: {key!r} must be {getattr(kind, '__name__', kind)}")
    return value


def _hex(text: str, where: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise VectorError(f"{where}: {text!r} is not hex") from None


def _ranges(items, where: str) -> list[tuple[int, bytes]]:
    if not isinstance(items, list):
        raise VectorError(f"{where}: must be a list of {{addr, hex}}")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise VectorError(f"{where}[{i}]: must be an object {{addr, hex}}")
        addr = _need(item, "addr", int, f"{where}[{i}]")
        if addr < 0:
            raise VectorError(f"{where}[{i}]: negative address")
        out.append((addr, _hex(_need(item, "hex", str, f"{where}[{i}]"), f"{where}[{i}]")))
    return out


def _regs(obj, where: str) -> dict[str, int]:
    if not isinstance(obj, dict):
        raise VectorError(f"{where}: must be an object of registers")
    for name, value in obj.items():
        if name not in REGISTERS + ("rip",):
            raise VectorError(f"{where}: unknown register {name!r}")
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 64:
            raise VectorError(f"{where}: {name} must be an integer in [0, 2**64)")
    return dict(obj)


def parse(obj: object, where: str = "case") -> Case:
    """Check one case (a decoded JSON object)."""
    if not isinstance(obj, dict):
        raise VectorError(f"{where}: a case must be a JSON object")
    case_id = _need(obj, "id", str, where)
    where = f"{where} (id {case_id!r})"
    mode = _need(obj, "mode", int, where)
    if mode not in (16, 32, 64):
        raise VectorError(f"{where}: mode {mode} is not one of 16, 32, 64")
    code = _hex(_need(obj, "code", str, where), f"{where}: code")
    if not 1 <= len(code) <= 15:
        raise VectorError(f"{where}: code must be 1 to 15 bytes, not {len(code)}")
    regs = _regs(obj.get("regs", {}), f"{where}: regs")
    rflags = obj.get("rflags", 2)
    if not isinstance(rflags, int) or isinstance(rflags, bool):
        raise VectorError(f"{where}: rflags must be an integer")
    ram = _ranges(obj.get("ram", []), f"{where}: ram")
    mmio = _ranges(obj.get("mmio", []), f"{where}: mmio")
    spans = sorted((a, a + len(d)) for a, d in mmio)
    for (a, b), (c, _) in zip(spans, spans[1:]):
        if c < b:
            raise VectorError(f"{where}: mmio regions at {a:#x} and {c:#x} overlap")
    expect = _need(obj, "expect", dict, where)
    _regs(expect.get("regs", {}), f"{where}: expect.regs")
    _ranges(expect.get("ram", []), f"{where}: expect.ram")
    _ranges(expect.get("mmio", []), f"{where}: expect.mmio")
    for i, op in enumerate(expect.get("mmio_ops", [])):
        if not isinstance(op, dict) or op.get("op") not in ("read", "write") or not all(
                isinstance(op.get(k), int) for k in ("addr", "size", "value")):
            raise VectorError(f"{where}: expect.mmio_ops[{i}] must be "
                              f"{{op: read|write, addr, size, value}}")
    fault = expect.get("fault")
    if fault is not None and not (isinstance(fault, dict) and isinstance(fault.get("vector"), int)):
        raise VectorError(f"{where}: expect.fault must be null or {{vector: int}}")
    return Case(case_id, mode, code, regs, rflags, ram, mmio, expect)


def load(stream: IO[str]) -> list[Case]:
    """Read a JSON-lines vector file; errors name the line."""
    cases = []
    for lineno, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise VectorError(f"line {lineno}: not JSON ({exc.msg})") from None
        cases.append(parse(obj, f"line {lineno}"))
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
        if case.mode != 64 and name in REGISTERS[8:]:
            continue
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
        for addr, data in _ranges(expect.get(kind, []), kind):
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
