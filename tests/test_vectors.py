"""Instruction test vectors: the format, both engines' runners, the CLI.

The hand-written cases' expectations were worked out from the SDM, not by
running an engine; the exported set's come from the reference engine and
must pass on impl too.
"""

import io
import json

import pytest

from spec.vectors import VectorError, load
from tests.conftest import ROOT, cli, cli_json

HANDWRITTEN = ROOT / "tests" / "vectors" / "handwritten.jsonl"


@pytest.mark.parametrize("engine", ["reference", "impl"])
def test_handwritten_vectors_pass_on_both_engines(engine):
    proc, out = cli_json("vectors", "run", str(HANDWRITTEN), "--engine", engine)
    assert proc.returncode == 0, out
    assert out == {"passed": 12, "failed": 0, "failures": []}


def test_exported_vectors_pass_on_both_engines(tmp_path):
    import jsonschema

    from spec.schemas import schema
    proc, report = cli_json("vectors", "export", str(tmp_path), "--count", "300")
    assert proc.returncode == 0 and report["cases"] == 300 and report["disagreements"] == []
    # every file the export writes is valid under the published schemas, as any
    # other language's validator would read it
    for name, kind, count in (("x86", "x86-vector", 300), ("ioreq", "suite-case", 200),
                              ("uart", "suite-case", 200), ("system", "suite-case", 9)):
        validator = jsonschema.Draft202012Validator(schema(kind))
        lines = (tmp_path / f"{name}.jsonl").read_text().splitlines()
        assert len(lines) == count
        for line in lines:
            validator.validate(json.loads(line))
    for engine in ("reference", "impl"):
        proc, out = cli_json("vectors", "run", str(tmp_path / "x86.jsonl"), "--engine", engine)
        assert proc.returncode == 0 and out["passed"] == 300, out["failures"][:3]


def test_a_wrong_expectation_fails_with_a_readable_diff(tmp_path):
    case = json.loads(HANDWRITTEN.read_text().splitlines()[0])
    case["expect"]["mmio_ops"][1]["value"] = 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(case) + "\n")
    proc = cli("vectors", "run", str(bad))
    assert proc.returncode == 1
    assert "mmio_ops[1]: expected write 0x1000/4 = 0x1, got write 0x1000/4 = 0x0" in proc.stdout
    assert proc.stdout.strip().endswith("0 passed, 1 failed")


def _case(**changes) -> str:
    """A valid 32-bit case with ``changes`` (a key set to None is removed)."""
    case = {"id": "x", "mode": 32, "code": "90", "expect": {"fault": None}}
    for key, value in changes.items():
        place, _, name = key.rpartition("__")
        target = case["expect"] if place == "expect" else case
        if value is None:
            target.pop(name, None)
        else:
            target[name] = value
    return json.dumps(case)


ADDRESS_NOTE = "(guest-physical: below 2**52, x86-64's widest physical address)"


@pytest.mark.parametrize("line,path,text", [
    ("{not json", None, "not JSON: Expecting property name enclosed in double quotes (column 2)"),
    ('{"id": "x", "mode": 32, "code": "90", "expect": {"fault": NaN}}', None,
     "not JSON: NaN is not JSON"),
    ('{"id": "x", "id": "y", "mode": 32, "code": "90", "expect": {"fault": null}}', None,
     "key 'id' appears twice in one object"),
    ("[1, 2]", "$", "[1, 2] is not an object"),
    (_case(mode=8), "$.mode", "8 is not one of 16, 32, 64"),
    (_case(code="zz"), "$.code", '"zz" is not one instruction in hex: 1 to 15 pairs of hex '
                                 'digits'),
    (_case(code="90" * 16), "$.code", "is not one instruction in hex: 1 to 15 pairs"),
    (_case(code="9 0"), "$.code", '"9 0" is not one instruction in hex'),
    (_case(expect=None), "$", "missing 'expect'"),
    # unknown keys, at every level: a misspelt key would compare nothing and pass
    (_case(frobnicate=3), "$.frobnicate",
     "unknown key (known here: id, mode, code, regs, rflags, ram, mmio, expect)"),
    (_case(expect__rgs={"rax": 1}), "$.expect.rgs",
     "unknown key (known here: regs, rflags, rflags_mask, ram, mmio, mmio_ops, fault)"),
    (_case(regs={"eax": 1}), "$.regs.eax",
     "unknown key (known here: rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, rip)"),
    (_case(ram=[{"addr": 0, "hex": "00", "size": 1}]), "$.ram[0].size",
     "unknown key (known here: addr, hex)"),
    (_case(expect__mmio_ops=[{"op": "read", "addr": 0, "size": 1, "value": 0, "x": 1}]),
     "$.expect.mmio_ops[0].x", "unknown key (known here: op, addr, size, value)"),
    (_case(expect__fault={"vector": 6, "error_code": 0}), "$.expect.fault.error_code",
     "unknown key (known here: vector)"),
    # a 16- or 32-bit case has eight 32-bit registers: r8 would be compared with nothing
    (_case(regs={"r8": 1}), "$.regs.r8",
     "unknown key (known here: rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, rip)"),
    (_case(expect__regs={"r15": 1}), "$.expect.regs.r15", "unknown key"),
    (_case(regs={"rax": 1 << 32}), "$.regs.rax",
     "4294967296 (0x100000000) is above the maximum 4294967295 (0xffffffff)"),
    (_case(mode=64, regs={"rax": 1 << 64}), "$.regs.rax",
     "is above the maximum 18446744073709551615 (0xffffffffffffffff)"),
    (_case(regs={"rax": -1}), "$.regs.rax", "-1 is below the minimum 0"),
    (_case(regs={"rax": 1.0}), "$.regs.rax", "1.0 is not an integer"),
    (_case(regs={"rax": True}), "$.regs.rax", "true is not an integer"),
    (_case(mode=16, regs={"rip": 0x10000}), "$.regs.rip",
     "65536 (0x10000) is above the maximum 65535 (IP: a 16-bit case's code lies below 64 KiB)"),
    (_case(mode=16, code="9090", regs={"rip": 0xFFFF}), "$.code",
     "the instruction at rip 0xffff ends past 0x10000, where a 16-bit case's code must end"),
    (_case(rflags=1 << 32), "$.rflags", "is above the maximum 4294967295 (0xffffffff) "
                                        "(EFLAGS: RFLAGS' upper 32 bits are reserved (zero))"),
    # addresses: guest-physical, below 2**52; regions end there and do not overlap
    (_case(mmio=[{"addr": 1 << 64, "hex": "00"}]), "$.mmio[0].addr",
     "18446744073709551616 (0x10000000000000000) is above the maximum 4503599627370495 "
     "(0xfffffffffffff) " + ADDRESS_NOTE),
    (_case(ram=[{"addr": (1 << 52) - 1, "hex": "0000"}]), "$.ram[0]",
     "the region 0xfffffffffffff+2 ends past 2**52, the end of guest-physical memory"),
    (_case(ram=[{"addr": 0, "hex": ""}]), "$.ram[0].hex",
     '"" is not hex: one or more pairs of hex digits'),
    (_case(ram=[{"addr": 0, "hex": "abc"}]), "$.ram[0].hex", '"abc" is not hex'),
    (_case(mmio=[{"addr": 0, "hex": "0000"}, {"addr": 1, "hex": "00"}]), "$.mmio[1]",
     "overlaps $.mmio[0] (0x0-0x1): one address, one value"),
    (_case(ram=[{"addr": 0x100, "hex": "0000"}], mmio=[{"addr": 0xFF, "hex": "0000"}]),
     "$.ram[0]", "overlaps $.mmio[0] (0xff-0x100): one address, one value"),
    (_case(regs={"rip": 0x1000}, mmio=[{"addr": 0x1000, "hex": "00"}]), "$.code",
     "the instruction at rip 0x1000 lies in $.mmio[0] (0x1000-0x1000): code is fetched from RAM"),
    # expectations
    (_case(expect={}), "$.expect", "missing 'fault'"),
    (_case(expect__rflags_mask=1), "$.expect.rflags_mask", "given without rflags"),
    (_case(expect__fault={"vector": 256}), "$.expect.fault.vector",
     "256 is above the maximum 255 (the exception's vector (0 #DE, 6 #UD, 13 #GP, 14 #PF, ...))"),
    (_case(expect__mmio_ops=[{"op": "load", "addr": 0, "size": 1, "value": 0}]),
     "$.expect.mmio_ops[0].op", '"load" is not one of "read", "write"'),
    (_case(expect__mmio_ops=[{"op": "read", "addr": 0, "size": 16, "value": 0}]),
     "$.expect.mmio_ops[0].size", "16 is above the maximum 8"),
    (_case(expect__mmio_ops=[{"op": "read", "addr": 0, "size": 2, "value": 0x10000}]),
     "$.expect.mmio_ops[0].value",
     "65536 (0x10000) is above the maximum 65535 (the value of a 2-byte access)"),
    (_case(expect__mmio_ops=[{"op": "read", "addr": 0, "size": 1}]), "$.expect.mmio_ops[0]",
     "missing 'value'"),
])
def test_malformed_vectors_are_named_by_line_and_field(line, path, text):
    with pytest.raises(VectorError) as caught:
        load(io.StringIO(_case(id="ok") + "\n\n" + line + "\n"))
    exc = caught.value
    assert (exc.line, exc.path) == (3, path)
    assert text in exc.text, exc.text
    assert exc.located("f.jsonl") == f"f.jsonl:3: {path + ': ' if path else ''}{exc.text}"


def test_the_cli_names_the_file_line_and_field_and_exits_2(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(_case() + "\n" + _case(id="y", expect__rgs={"rax": 1}) + "\n")
    proc = cli("vectors", "run", str(bad))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (f"hvmspec: error: {bad}:2: $.expect.rgs: unknown key (known here: "
                           f"regs, rflags, rflags_mask, ram, mmio, mmio_ops, fault)\n")


@pytest.mark.parametrize("content,message", [
    (b"", "no cases: a vector file with none would pass without testing anything"),
    (b"\n  \n", "no cases: a vector file with none would pass without testing anything"),
    (b'{"id": "x", "mode": 32, "code": "90", "expect": {"fault": null}}\n{"id": "\xff"}\n',
     ":2: not UTF-8 text: byte 0xff at column 9"),
    (b'{"id": "x", "mode": 32, "code": "90", "expect": {"fault": null}}\n' * 2,
     ":2: $.id: id 'x' is already the case of line 1"),
])
def test_empty_binary_and_ambiguous_files_are_refused(content, message, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    proc = cli("vectors", "run", str(bad))
    assert proc.returncode == 2, proc.stdout
    assert proc.stderr.startswith(f"hvmspec: error: {bad}")
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_a_file_that_cannot_be_opened(tmp_path):
    proc = cli("vectors", "run", str(tmp_path))
    assert (proc.returncode, proc.stderr) == (2, f"hvmspec: error: {tmp_path}: Is a directory\n")


def test_a_suite_case_file_names_the_command_that_runs_it(tmp_path):
    from spec.suites import system
    case_file = tmp_path / "system.jsonl"
    case_file.write_text(json.dumps({"suite": "system", "case": system.case_for("hello")}) + "\n")
    proc = cli("vectors", "run", str(case_file))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"hvmspec: error: {case_file}:1: $: a conformance-suite case")
    assert f"`hvmspec conform --impl CMD --cases {case_file}` runs it" in proc.stderr


# --- the published schema -------------------------------------------------------------------

def _objects(node, where="#"):
    """Every subschema of a schema, with its JSON pointer."""
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from _objects(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _objects(value, f"{where}/{i}")


#: the only open objects: events as the trace format or an implementation gives them
OPEN = {"#/$defs/system-event", "#/$defs/any-event"}


@pytest.mark.parametrize("name", ["x86-vector", "suite-case"])
def test_the_schemas_are_draft_2020_12_and_closed_at_every_level(name):
    import jsonschema

    from spec.schemas import path_of, schema
    doc = schema(name)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(doc)
    assert json.loads(open(path_of(name)).read()) == doc        # the installed file
    objects = [(where, s) for where, s in _objects(doc)
               if s.get("type") == "object" or "object" in (s.get("type") or [])]
    assert len(objects) > 5
    # an if/then overlay narrows a value that a closed schema also validates
    # (a 32-bit case's expect.regs): it adds constraints, never keys
    overlays = [w for w, _s in objects if "/then/properties/" in w]
    for where in overlays:
        assert where.startswith("#/allOf/") and where.count("/properties/") == 1
    assert [w for w, s in objects if s.get("additionalProperties") is not False
            and w not in OPEN and w not in overlays] == []


def test_the_hand_written_vectors_validate_against_the_published_schema():
    import jsonschema

    from spec.schemas import schema
    validator = jsonschema.Draft202012Validator(schema("x86-vector"))
    lines = HANDWRITTEN.read_text().splitlines()
    assert len(lines) == 12
    for line in lines:
        validator.validate(json.loads(line))


# --- loading is linear in the size of a case ------------------------------------------

def _big_case(size: int, addr: int = 0x100000) -> str:
    data = bytes((i * 7 + 3) & 0xFF for i in range(size)).hex()
    return json.dumps({
        "id": f"ram-{size}", "mode": 64, "code": "488b03", "regs": {"rip": 0x10000, "rbx": addr},
        "ram": [{"addr": addr, "hex": data}],
        "expect": {"regs": {"rip": 0x10003, "rax": int.from_bytes(bytes.fromhex(data[:16]),
                                                                  "little")},
                   "ram": [{"addr": addr, "hex": data}], "fault": None}}) + "\n"


@pytest.mark.parametrize("engine", ["reference", "impl"])
def test_a_4_mib_ram_region_loads_and_runs(engine):
    # impl used to map and write such a region byte by byte, scanning all of
    # Unicorn's mapped regions for each byte: 64 KiB took 3 s, 256 KiB 44 s,
    # and 4 MiB did not finish in two minutes
    from hvmspec.vectors import run_file
    cases = load(io.StringIO(_big_case(4 << 20)))
    assert run_file(cases, engine) == []


def test_impl_loads_a_region_page_by_page_not_byte_by_byte(monkeypatch):
    import unicorn

    from impl.vectors import run_case
    calls = {"mem_map": 0, "mem_write": 0, "mem_read": 0, "mem_regions": 0}
    for name in calls:
        def counted(self, *args, _name=name, _real=getattr(unicorn.Uc, name)):
            calls[_name] += 1
            return _real(self, *args)
        monkeypatch.setattr(unicorn.Uc, name, counted)
    size = 64 << 10
    case = load(io.StringIO(_big_case(size, addr=0x100800)))[0]
    out = run_case(case)
    assert out.memory(0x100800, size) == case.ram[0][1]
    pages = size // 4096 + 1
    # one run of pages is mapped at once, written at once, read back a page at a time
    assert calls["mem_map"] <= 4 and calls["mem_write"] <= 4
    assert calls["mem_read"] <= 2 * pages + 8 and calls["mem_regions"] == 0
