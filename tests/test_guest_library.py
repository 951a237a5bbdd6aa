"""The guest library: ``%include``, macros, and the errors and cache around
them (spec/loader.py), and the bundled guests sharing guests/lib/."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from spec import loader
from spec.loader import GuestError

ROOT = Path(__file__).resolve().parent.parent
NOP, HLT, CLI = b"\x90", b"\xf4", b"\xfa"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HVMSPEC_CACHE", str(tmp_path / "cache"))


def _files(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def _code(path: Path) -> bytes:
    """The assembled code of a source file, without the ROM's padding."""
    return loader.assemble(path.read_text(), str(path), path)


def _error(path: Path) -> str:
    with pytest.raises(GuestError) as info:
        loader.load(str(path))
    return str(info.value)


def test_nested_includes_are_found_next_to_the_including_file(tmp_path):
    _files(tmp_path, {
        "top.s": 'cli\n%include "sub/a.s"\nhlt\n',
        "sub/a.s": 'nop\n%include "b.s"   ; next to sub/a.s\n',
        "sub/b.s": "nop\nnop\n",
    })
    assert _code(tmp_path / "top.s") == CLI + NOP * 3 + HLT


def test_a_file_is_included_once(tmp_path):
    # b.s defines a label: a second copy of it would not assemble
    _files(tmp_path, {
        "top.s": '%include "b.s"\n%include "c.s"\n.include "b.s"\njmp here\n',
        "b.s": "here:\n    nop\n",
        "c.s": '%include "b.s"\n    hlt\n',
    })
    assert _code(tmp_path / "top.s") == NOP + HLT + b"\xeb\xfc"


def test_an_include_cycle_is_refused_with_its_chain(tmp_path):
    _files(tmp_path, {
        "a.s": 'nop\n%include "b.s"\n',
        "b.s": '%include "c.s"\n',
        "c.s": 'nop\n\n%include "a.s"\n',
    })
    message = _error(tmp_path / "a.s")
    a, b, c = (str(tmp_path / n) for n in ("a.s", "b.s", "c.s"))
    assert message == (f"{c}:3: include cycle: {a} includes {b} ({a}:2), "
                       f"{b} includes {c} ({b}:1), {c} includes {a} ({c}:3)")


def test_a_file_that_includes_itself_is_a_cycle(tmp_path):
    _files(tmp_path, {"self.s": 'nop\n%include "self.s"\n'})
    path = tmp_path / "self.s"
    assert f"{path}:2: include cycle: {path} includes {path} ({path}:2)" in _error(path)


def test_a_missing_include_names_the_including_line(tmp_path):
    _files(tmp_path, {
        "top.s": 'nop\n%include "lib2.s"\n',
        "lib2.s": 'nop\n\n  %include "nowhere.s"  ; a comment\n',
    })
    message = _error(tmp_path / "top.s")
    assert message.startswith(f"{tmp_path / 'lib2.s'}:3: cannot include 'nowhere.s': no such file")
    assert "guests/lib/nowhere.s" in message


def test_an_assembly_error_in_an_included_file_names_its_line(tmp_path):
    _files(tmp_path, {
        "top.s": '%include "lib/all.s"\nstart:\n    real_mode_start\n%include "bad.s"\n'
                 '    poweroff\n',
        "bad.s": "    nop\n    nop\n    frobnicate ax, 1\n",
    })
    message = _error(tmp_path / "top.s")
    assert f"does not assemble at {tmp_path / 'bad.s'}:3: 'frobnicate ax, 1'" in message


def test_an_error_in_a_macro_names_the_body_line_and_the_invocation(tmp_path):
    _files(tmp_path, {
        "top.s": '%include "macros.s"\nnop\nnop\n    twice 3\n',
        "macros.s": ".macro twice x\n    mov ax, \\x\n    frob ax\n.endm\n",
    })
    message = _error(tmp_path / "top.s")
    assert (f"does not assemble at {tmp_path / 'macros.s'}:3 (macro twice at "
            f"{tmp_path / 'top.s'}:4): 'frob ax'") in message


def test_an_error_in_the_guest_itself_is_its_line_despite_forward_references(tmp_path):
    # `call puts` and `call putc` refer to labels that macros define further on
    _files(tmp_path, {"top.s": '%include "lib/all.s"\nstart:\n    real_mode_start\n'
                               '    call puts\n    mov ax, bogus\n    serial_putc\n'
                               '    serial_puts\n'})
    assert "does not assemble at line 5: 'mov ax, bogus'" in _error(tmp_path / "top.s")


def test_the_cache_keys_on_the_expanded_program(tmp_path):
    _files(tmp_path, {"top.s": '%include "part.s"\n', "part.s": "nop\n"})
    top = tmp_path / "top.s"
    assert loader.load(str(top)).image[:1] == NOP
    (tmp_path / "part.s").write_text("hlt\n")       # the top file is unchanged
    assert loader.load(str(top)).image[:1] == HLT
    program = loader.expand(top.read_text(), str(top), top)
    key = hashlib.sha256(program.text.encode()).hexdigest()
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert f"{key}.bin" in cached and len(cached) == 2
    # a comment changes the source, not the program: the same entry serves
    top.write_text('%include "part.s"   ; the same program\n')
    assert loader.load(str(top)).image[:1] == HLT
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_settings_belong_to_the_guest_s_own_file(tmp_path):
    _files(tmp_path, {"top.s": '; hvmspec: memory = 64\n%include "part.s"\nnop\n',
                      "part.s": "nop\n"})
    assert loader.load(str(tmp_path / "top.s")).memory_mib == 64
    (tmp_path / "part.s").write_text("; hvmspec: memory = 128\nnop\n")
    message = _error(tmp_path / "top.s")
    assert message.startswith(f"{tmp_path / 'part.s'}:1: a setting")
    assert f"own file ({tmp_path / 'top.s'})" in message


def test_the_library_adds_no_code_until_a_macro_is_invoked():
    assert loader.assemble('nop\n%include "lib/all.s"\nnop\n') == NOP * 2
    assert loader.assemble('%include "lib/all.s"\npoweroff\n') == \
        bytes.fromhex("ba441f b8003c ef f4 ebfd")


def test_a_source_given_as_text_finds_the_library_and_only_the_library(tmp_path, monkeypatch):
    """A test's inline guest has no file: ``lib/x.s`` and a bare library
    name are found in guests/lib/, a file of the current directory is not."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.s").write_text("nop\n")
    assert loader.assemble('%include "lib/all.s"\n    real_mode_start rom_data=1, es=1\n') == \
        bytes.fromhex("fa 8cc8 8ed8 31c0 8ec0 8ed0 bc0070")
    assert loader.assemble('%include "poweroff.s"\n    halt_forever\n') == HLT + b"\xeb\xfd"
    with pytest.raises(GuestError, match=r"<source>:1: cannot include 'mine.s': no such file "
                                         r"\(looked for guests/lib/mine.s\)"):
        loader.assemble('%include "mine.s"\n')


def test_macro_arguments_defaults_and_unique_labels():
    source = (".macro m reg, value=7, w=\n"
              "m_\\@:\n    mov \\w\\()\\reg, \\value\n    jmp m_\\@\n.endm\n"
              "    m ax\n    m reg=bx, value=1\n    m dx, 2, e\n")
    assert loader.assemble(source) == bytes.fromhex(
        "b80700ebfb" "bb0100ebfb" "66ba02000000ebf8")


@pytest.mark.parametrize("source,message", [
    (".macro m a\n    nop\n", "<source>:1: macro m has no .endm"),
    (".macro m a\n    mov ax, \\b\n.endm\nm 1\n", "<source>:2: macro m has no parameter 'b'"),
    (".macro m a\n    nop\n.endm\nm 1, 2\n", "<source>:4: macro m takes 1 arguments: a"),
    (".macro m\n    m\n.endm\n    m\n", "macro m nests deeper than 20"),
])
def test_macro_mistakes_are_named(source, message):
    with pytest.raises(GuestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        loader.assemble(source)


def test_a_copy_of_a_bundled_guest_still_finds_the_library(tmp_path):
    copy = tmp_path / "mine.s"
    copy.write_text((ROOT / "guests" / "hello.s").read_text())
    assert loader.load(str(copy)).image == loader.load("hello").image


def test_every_bundled_guest_uses_the_library():
    for name in loader.bundled_guests():
        source = (ROOT / "guests" / f"{name}.s").read_text()
        assert '%include "lib/all.s"' in source, name


def test_the_library_is_installed_with_the_guests():
    import tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data = project["tool"]["setuptools"]["package-data"]["guests"]
    assert "lib/*.s" in data and list((ROOT / "guests" / "lib").glob("*.s"))


@pytest.mark.skipif(shutil.which("duplicates") is None, reason="the duplicates command is not here")
def test_the_guests_repeat_no_code():
    """`duplicates` (a developer tool: pairs of places that share six or more
    lines, the same or of the same shape) finds none among the guests and
    their library."""
    proc = subprocess.run(["duplicates", "--repo", str(ROOT / "guests"), "--min-lines", "6",
                           "--seconds", "60"], capture_output=True, text=True, timeout=120)
    assert proc.stdout.startswith("no duplicates"), proc.stdout
    assert "incomplete:" not in proc.stdout, proc.stdout


def test_the_guest_page_s_example_error_is_the_loader_s(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.s").write_text('%include "lib/all.s"\nstart:\n    real_mode_start\n'
                                    '    mov al, 65\n    call putc\n    poweroff\n'
                                    '    serial_putc w=x\n')
    page = (ROOT / "docs" / "guests.rst").read_text()
    assert f"     {_error(Path('bad.s'))}\n" in page
