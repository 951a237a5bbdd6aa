"""Guest images: finding, assembling and placing a guest program.

Room: interface. Both engines load guests through this module; it has no
behaviour of the VMM. Imports keystone-engine and :mod:`spec.platform`.

A guest is named in one of three ways:

* a bundled guest's name (``hello``): ``guests/<name>.s``. A bare word
  (no ``/``, no suffix) that names a bundled guest is that guest, even if a
  file of that name is in the current directory: write ``./timer`` for the
  file (the loader's :attr:`GuestImage.note` says so when both exist);
* a path to an assembly file: ``*.s``, ``*.S`` (the GNU spelling) or
  ``*.asm``;
* a path to a raw image: its bytes as they are. A file whose suffix says
  it is text (``.txt``, ``.md``, ``.c``, ...) or whose bytes are all
  printable text is refused rather than executed as machine code.

:attr:`GuestImage.kind` and :attr:`GuestImage.path` say which way was taken.

**Assembly.** The source is 16-bit Intel-syntax assembly for keystone-engine;
``;`` starts a comment (the loader removes comments, outside string quotes,
before assembling, since keystone reads ``;`` as a statement separator).
It is assembled at offset 0 of segment ``F000`` and becomes a 64 KiB BIOS
ROM image: code at ``F000:0000`` (physical ``0xF0000``), padding, and at
``F000:FFF0`` the reset vector ``jmp F000:0000`` that the loader adds, as a
BIOS ROM has. The assembled bytes are cached by the SHA-256 of the
expanded program (includes and macros expanded, comments removed; in
``$HVMSPEC_CACHE`` or ``~/.cache/hvmspec``), so the assembler runs once per
program, and a change to an included file is a new program.

**Includes.** A line ``%include "file"`` (or ``.include "file"``) stands
for the lines of that file (:func:`expand`). The name is looked up next to
the including file, then in the guest library ``guests/lib/`` (where
``lib/x.s`` also names ``guests/lib/x.s``, so that a copy of a bundled
guest elsewhere still finds the library). A file is included once per
guest: a second ``%include`` of it, from anywhere, adds nothing. A file
that includes itself, directly or through others, is refused, and the
error names the chain (``a.s includes b.s (a.s:3), b.s includes a.s
(b.s:5)``); so is a missing file, named with the ``file:line`` that asks
for it. A source given as text without a path (a test's, a generated
guest's) finds only the library.

**Macros.** ``.macro NAME a, b=default`` ... ``.endm`` defines a macro, as
in GNU as; the loader expands it, so that keystone sees plain instructions
and an error is named by the line of the macro's body, with the invocation
it came through. In the body ``\\a`` is an argument, ``\\()`` ends a name
(``\\w\\()dx`` is ``edx`` with ``w=e``) and ``\\@`` is a number unique to
each invocation (for labels of the macro's own). Arguments are positional
or ``name=value``, separated by commas; ``"..."`` quotes one that has a
comma. ``.if``, ``.ifb`` and ``.ifnb`` in a body are keystone's.

**Errors.** keystone reports no line numbers: the loader finds the first
line whose addition makes the program fail (bisecting over prefixes, with
the labels defined further on kept so that forward references resolve) and
names it as ``line N`` of the guest's own file, or as ``file:N`` of an
included one, with the macro invocations that brought it.

**The guest library.** ``guests/lib/`` holds what the bundled guests share,
a file per concept: ``serial.s`` (polled output on COM1: ``putc``, ``puts``),
``digits.s`` (numbers as text), ``pic.s`` (the 8259 pair, the PIT, waiting
with HLT), ``idt.s`` (IVT entries, 32- and 64-bit gates), ``realmode.s``
(the first instructions after reset), ``pm32.s`` (protected-mode entry and
a flat GDT), ``longmode.s`` (long-mode entry), ``vga.s`` (CRTC register
pairs) and ``poweroff.s`` (ACPI S5). They define constants and macros only:
nothing is assembled until a guest invokes a macro, where it wants the
code, so a guest includes the whole library (``lib/all.s``) and keeps its
own layout: the guests assemble to the bytes they did before the library.

**Settings.** A source may ask for the memory it needs with a comment
line ``; hvmspec: memory = <MiB>``; a run without ``--memory`` gives it that
much (:func:`guest_settings`). Settings are the guest's own: a settings line
in an included file is refused.

**Images.** An image is placed in guest RAM so that it ends at 1 MiB
(:data:`spec.platform.IMAGE_END`); its last 16 bytes hold the reset vector.
It must be non-empty and fit between the VGA hole and 1 MiB (256 KiB), and
the guest's memory must reach 1 MiB. The same image boots on QEMU with
``-bios`` (which maps a ROM's last 128 KiB below 1 MiB).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from spec import platform

GUESTS_DIR = Path(__file__).resolve().parent.parent / "guests"
ROM_SIZE = 0x10000
RESET_STUB = bytes([0xEA, 0x00, 0x00, 0x00, 0xF0])   # jmp far F000:0000


class GuestError(Exception):
    """A guest that cannot be loaded; the message says why, specifically."""


@dataclass(frozen=True)
class GuestImage:
    """A loadable guest: its name, image bytes and where they go."""

    name: str
    image: bytes
    source: str | None = None
    #: the memory the guest asks for in its source (``; hvmspec: memory = MIB``)
    memory_mib: int | None = None
    #: how the name was taken: ``bundled``, ``assembly`` (a source file) or
    #: ``image`` (a raw image file); ``built`` for an image made in memory
    kind: str = "built"
    #: the file it came from
    path: str | None = None
    #: something the user should know about how the name was read
    note: str | None = None
    #: further (guest-physical address, bytes) to place in RAM: a
    #: firmware's VGA BIOS (:mod:`spec.hvmloader`)
    placements: tuple[tuple[int, bytes], ...] = ()
    #: a firmware's whole ROM, decoded read-only at the top of 4 GiB
    rom: bytes | None = None
    #: the VGA's PCI expansion ROM, which qemu-dm serves (SeaBIOS's VGA BIOS)
    vga_rom: bytes | None = None

    def describe(self) -> str:
        """One line: what was loaded, from where, and how it was taken."""
        what = {"bundled": "the bundled guest", "assembly": "16-bit assembly source",
                "image": "a raw image", "built": "a guest image",
                "firmware": "the BIOS"}[self.kind]
        where = f" {self.path}" if self.path else ""
        line = (f"{self.name}: {what}{where}, {len(self.image):,} bytes at "
                f"{self.load_address:#x}-{platform.IMAGE_END - 1:#x}")
        for gpa, data in self.placements:
            line += f"; {len(data):,} bytes at {gpa:#x}"
        if self.rom is not None:
            start = self.rom_alias()[0]
            line += f"; ROM alias {start:#x}-{start + len(self.rom) - 1:#x}"
        return line

    @property
    def load_address(self) -> int:
        return platform.IMAGE_END - len(self.image)

    def ram_placements(self) -> list[tuple[int, bytes]]:
        """What the domain builder writes into guest RAM: the image, ending
        at 1 MiB, then the further placements."""
        return [(self.load_address, self.image), *self.placements]

    def rom_alias(self) -> tuple[int, bytes] | None:
        """The ROM's alias ending at 4 GiB (guest-physical address, bytes), if any."""
        if self.rom is None:
            return None
        return (1 << 32) - len(self.rom), self.rom


def variant_source(name: str, **constants: int) -> str:
    """The source of a variant of bundled guest ``name``: its build-time
    constants set (``SCREEN = 2``), then the guest included by its path.
    The guest gives each such constant a default under ``.ifndef``, as
    ``guests/graphics.s`` does for ``SCREEN``; a file with this text (any
    name ending in ``.s``) is a guest that ``load`` and ``hvmspec run`` take."""
    path = GUESTS_DIR / f"{name}.s"
    if not path.exists():
        raise GuestError(f"no bundled guest {name!r}")
    lines = [f"; {name} with {', '.join(f'{k} = {v}' for k, v in constants.items())}"]
    lines += [f"{key} = {int(value)}" for key, value in constants.items()]
    lines.append(f'%include "{path}"')
    return "\n".join(lines) + "\n"


def bundled_guests() -> list[str]:
    """The names of the guests shipped in ``guests/``."""
    return sorted(p.stem for p in GUESTS_DIR.glob("*.s"))


#: suffixes of assembly source (the GNU spellings, and NASM's)
ASSEMBLY_SUFFIXES = (".s", ".S", ".asm", ".ASM")
#: suffixes that say a file is text, never a raw image
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".c", ".h", ".py", ".cfg", ".json", ".jsonl",
                 ".sh", ".html", ".xml", ".yaml", ".yml", ".ini", ".log")


def load(spec: str) -> GuestImage:
    """Find and prepare the guest named by ``spec`` (see module docstring)."""
    path = Path(spec)
    bare = "/" not in spec and not path.suffix
    candidate = GUESTS_DIR / f"{spec}.s"
    note = None
    if bare and candidate.exists():
        if path.exists():
            note = (f"{spec!r} is a bundled guest and also a {'directory' if path.is_dir() else 'file'} "
                    f"here; running the bundled guest (write ./{spec} for the file)")
        path, kind = candidate, "bundled"
    elif bare and not path.exists():
        raise GuestError(f"no guest {spec!r}: not a file, and not one of the bundled "
                         f"guests ({', '.join(bundled_guests()) or 'none'})")
    else:
        kind = "assembly" if path.suffix in ASSEMBLY_SUFFIXES else "image"
    if not path.exists():
        raise GuestError(f"guest file {str(path)!r} does not exist")
    if path.is_dir():
        raise GuestError(f"guest {str(path)!r} is a directory, not an image or source file")
    if kind in ("bundled", "assembly"):
        try:
            source = path.read_text()
        except UnicodeDecodeError as exc:
            raise GuestError(f"{path}: assembly source must be UTF-8 text (byte "
                             f"{exc.start}: {exc.object[exc.start]:#04x})") from None
        settings = guest_settings(source, str(path))
        return GuestImage(path.stem, rom_from_source(source, str(path), path), source,
                          memory_mib=settings.get("memory"), kind=kind,
                          path=str(path) if kind == "bundled" else spec, note=note)
    image = path.read_bytes()
    if path.suffix.lower() in TEXT_SUFFIXES or _looks_like_text(image):
        raise GuestError(
            f"{path}: this is text, not a raw image (a raw image is machine code, run as "
            f"it is); an assembly source must be named *.s, *.S or *.asm")
    check_image(image)
    return GuestImage(path.stem, image, kind="image", path=spec)


def _looks_like_text(data: bytes) -> bool:
    """Printable UTF-8 text with line breaks throughout: machine code has
    zero bytes and control bytes (a ROM's padding, its opcodes), so such a
    file is a text someone meant as source or notes."""
    sample = data[:4096]
    if b"\0" in sample or b"\n" not in sample:
        return False
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\t\r\n\f" for ch in text)


_SETTING = re.compile(r"^;\s*hvmspec:\s*(\S+)\s*=\s*(.*?)\s*$")


def guest_settings(source: str, origin: str = "<source>") -> dict[str, int]:
    """The settings a guest's source asks for, in comment lines of the form
    ``; hvmspec: memory = 4096`` (the guest's memory in MiB, as an xm
    configuration's ``memory``). An unknown key or a bad value is refused."""
    settings: dict[str, int] = {}
    for number, line in enumerate(source.splitlines(), 1):
        match = _SETTING.match(line)
        if match is None:
            continue
        key, value = match.groups()
        if key != "memory":
            raise GuestError(f"{origin}:{number}: unknown setting {key!r} (known: memory)")
        if not value.isdigit() or not (platform.MIN_MEMORY_MIB <= int(value)
                                       <= platform.MAX_MEMORY_MIB):
            raise GuestError(f"{origin}:{number}: memory = {value!r}: a number of MiB from "
                             f"{platform.MIN_MEMORY_MIB} to {platform.MAX_MEMORY_MIB}")
        settings[key] = int(value)
    return settings


def check_image(image: bytes, memory_bytes: int | None = None) -> None:
    """Refuse an image that cannot be placed, with the reason."""
    if not image:
        raise GuestError("guest image is empty (0 bytes): nothing to run")
    limit = platform.MAX_IMAGE_SIZE
    if len(image) > limit:
        raise GuestError(
            f"guest image is {len(image)} bytes, larger than the {limit} bytes of guest "
            f"memory it loads into ({platform.VGA_HOLE_END:#x}-{platform.IMAGE_END - 1:#x}, "
            f"ending at 1 MiB)")
    if memory_bytes is not None and memory_bytes < platform.IMAGE_END:
        raise GuestError(f"guest memory of {memory_bytes} bytes does not reach 1 MiB, "
                         f"where the image ends")


def rom_from_source(source: str, origin: str = "<source>", path: str | Path | None = None) -> bytes:
    """Assemble ``source`` into a 64 KiB ROM image (cached by the program
    with its includes and macros expanded). ``origin`` names the source in
    errors; includes are looked up next to the file ``path``, when given,
    then in the library."""
    if not source.strip():
        raise GuestError(f"{origin}: the source is empty")
    program = expand(source, origin, path)
    text = program.text
    digest = hashlib.sha256(text.encode()).hexdigest()
    cache = _cache_dir() / f"{digest}.bin"
    if cache.exists():
        code = cache.read_bytes()
    else:
        code = _assemble_program(program, origin)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(code)
            tmp.replace(cache)
        except OSError:
            pass    # a read-only cache costs time, not correctness
    if len(code) > 0xFFF0:
        raise GuestError(f"{origin}: assembled code is {len(code)} bytes; it must end "
                         f"before the reset vector at F000:FFF0 (65520 bytes)")
    rom = bytearray(ROM_SIZE)
    rom[:len(code)] = code
    rom[0xFFF0:0xFFF0 + len(RESET_STUB)] = RESET_STUB
    return bytes(rom)


def assemble(source: str, origin: str = "<source>", path: str | Path | None = None) -> bytes:
    """Assemble 16-bit code at offset 0 with keystone, with a clear error."""
    if not source.strip():
        raise GuestError(f"{origin}: the source is empty")
    return _assemble_program(expand(source, origin, path), origin)


def _assemble_program(program: Program, origin: str) -> bytes:
    import keystone
    ks = keystone.Ks(keystone.KS_ARCH_X86, keystone.KS_MODE_16)
    try:
        encoding, _count = ks.asm(program.text, 0)
    except keystone.KsError as exc:
        found = _failing_line(ks, program.text)
        where = ""
        if found:
            where = f" at {program.where(found[0] - 1, origin)}: {found[1].strip()!r}"
        raise GuestError(f"{origin}: does not assemble{where}: {exc}") from None
    if not encoding:
        raise GuestError(f"{origin}: assembles to no code")
    return bytes(encoding)


# --- includes and macros -------------------------------------------------------------

#: the guest library: shared set-up code that guests include
LIBRARY_DIR = GUESTS_DIR / "lib"

_INCLUDE = re.compile(r"""^\s*[%.]include\s+(?:"([^"]*)"|'([^']*)'|(\S+))\s*$""")
_MACRO = re.compile(r"^\s*\.macro\s+([A-Za-z_][\w.]*)\s*(.*?)\s*$")
_ENDM = re.compile(r"^\s*\.endm\s*$")
_IF = re.compile(r"^\s*\.if\w*\b")
_ENDIF = re.compile(r"^\s*\.endif\b")
_PARAM_USE = re.compile(r"\\(\w+|\(\)|@)")
_MAX_MACRO_DEPTH = 20


@dataclass(frozen=True)
class Origin:
    """Where one line of the expanded program was written: a file and a
    line, and, for a line of a macro's body, the invocations that brought it."""

    file: str
    line: int
    via: tuple[str, ...] = ()


@dataclass(frozen=True)
class Program:
    """A source with its includes and macros expanded, comments removed:
    the text keystone assembles, a line of it for each :class:`Origin`."""

    lines: tuple[str, ...]
    origins: tuple[Origin, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def where(self, index: int, top: str) -> str:
        """``line N`` for a line of the top file, else ``file:N``; then the
        macro invocations it came through."""
        at = self.origins[index]
        place = f"line {at.line}" if at.file == top else f"{at.file}:{at.line}"
        return place + "".join(f" ({via})" for via in at.via)


def _display(path: Path) -> str:
    """A library or bundled file as ``guests/...``; any other as given."""
    try:
        return str(path.resolve().relative_to(GUESTS_DIR.parent))
    except ValueError:
        return str(path)


def _resolve(name: str, including: Path | None) -> Path | None:
    """An included file: next to the including file, then in the library
    (where ``lib/x.s`` also names ``guests/lib/x.s``)."""
    places = []
    if including is not None:
        places.append(including.parent / name)
    places.append(LIBRARY_DIR / name)
    if name.startswith("lib/"):
        places.append(GUESTS_DIR / name)
    for place in places:
        if place.is_file():
            return place
    return None


def expand(source: str, origin: str = "<source>", path: str | Path | None = None) -> Program:
    """Resolve ``%include "file"`` (or ``.include "file"``) lines, remove
    comments and expand macros: the program keystone assembles, each line
    with the file and line it came from (see the module docstring)."""
    top = Path(path) if path is not None else None
    lines: list[str] = []
    origins: list[Origin] = []
    seen: set[Path] = set()

    def include(text: str, file: Path | None, label: str,
                stack: list[tuple[Path | None, str, str]]) -> None:
        # stack: the files being expanded, outermost first, each as (its real
        # path, its name, the file:line that included it); this one is last
        for number, raw in enumerate(text.splitlines(), 1):
            stripped = strip_comments(raw)
            match = _INCLUDE.match(stripped)
            if match is None:
                if len(stack) > 1 and _SETTING.match(raw):
                    raise GuestError(
                        f"{label}:{number}: a setting (; hvmspec: ...) belongs in the guest's "
                        f"own file ({stack[0][1]}), not in a file it includes")
                lines.append(stripped)
                origins.append(Origin(label, number))
                continue
            name = next(g for g in match.groups() if g is not None)
            site = f"{label}:{number}"
            found = _resolve(name, file)
            if found is None:
                looked = ([_display(file.parent / name)] if file is not None else []) + \
                         [_display(LIBRARY_DIR / name)]
                raise GuestError(f"{site}: cannot include {name!r}: no such file "
                                 f"(looked for {' and '.join(looked)})")
            real = found.resolve()
            paths = [entry[0] for entry in stack]
            if real in paths:
                cycle = stack[paths.index(real):]
                steps = [f"{a[1]} includes {b[1]} ({b[2]})" for a, b in zip(cycle, cycle[1:])]
                steps.append(f"{label} includes {cycle[0][1]} ({site})")
                raise GuestError(f"{site}: include cycle: " + ", ".join(steps))
            lines.append("")                   # the include line itself
            origins.append(Origin(label, number))
            if real in seen:
                continue                       # once only
            seen.add(real)
            try:
                body = found.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise GuestError(f"{site}: cannot include {name!r}: {exc}") from None
            include(body, found, _display(found), stack + [(real, _display(found), site)])

    if top is not None:
        seen.add(top.resolve())
    include(source, top, origin, [(top.resolve() if top is not None else None, origin, "")])
    out_lines, out_origins = _expand_macros(lines, origins)
    return Program(tuple(out_lines), tuple(out_origins))


def _split_args(text: str) -> list[str]:
    """Split macro arguments at commas outside quotes and brackets."""
    args, depth, quote, current = [], 0, None, ""
    for ch in text:
        if quote:
            current += ch
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
            current += ch
        elif ch in "([":
            depth += 1
            current += ch
        elif ch in ")]":
            depth -= 1
            current += ch
        elif ch == "," and depth == 0:
            args.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip() or args:
        args.append(current.strip())
    return args


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@dataclass
class _Macro:
    name: str
    params: list[str]
    defaults: dict[str, str]
    body: list[str]
    origins: list[Origin]


def _expand_macros(lines: list[str], origins: list[Origin]) -> tuple[list[str], list[Origin]]:
    """GNU-as ``.macro NAME a, b=default`` ... ``.endm``, expanded by the
    loader so that an error in a macro's body is named by its own file and
    line: ``\\a`` is an argument, ``\\()`` separates a name from what
    follows, ``\\@`` counts invocations. Arguments are positional or
    ``name=value``, separated by commas; ``"..."`` quotes one with commas."""
    macros: dict[str, _Macro] = {}
    out: list[str] = []
    out_origins: list[Origin] = []
    counter = [0]

    def run(src: list[str], src_origins: list[Origin], depth: int) -> None:
        i = 0
        while i < len(src):
            line, at = src[i], src_origins[i]
            match = _MACRO.match(line)
            if match:
                name, params_text = match.groups()
                params, defaults = [], {}
                for param in _split_args(params_text):
                    key, eq, default = param.partition("=")
                    key = key.strip()
                    if not re.fullmatch(r"[A-Za-z_]\w*", key):
                        raise GuestError(f"{at.file}:{at.line}: macro {name}: bad parameter "
                                         f"{param!r}")
                    params.append(key)
                    if eq:
                        defaults[key] = _unquote(default.strip())
                body, body_origins = [], []
                i += 1
                while i < len(src) and not _ENDM.match(src[i]):
                    if _MACRO.match(src[i]):
                        raise GuestError(f"{src_origins[i].file}:{src_origins[i].line}: a "
                                         f".macro inside macro {name}")
                    body.append(src[i])
                    body_origins.append(src_origins[i])
                    i += 1
                if i == len(src):
                    raise GuestError(f"{at.file}:{at.line}: macro {name} has no .endm")
                macros[name] = _Macro(name, params, defaults, body, body_origins)
                # keep the line count: the definition becomes blank lines
                for k in range(len(body) + 2):
                    out.append("")
                    out_origins.append(src_origins[i - len(body) - 1 + k])
                i += 1
                continue
            word = line.split(None, 1)
            if word and word[0] in macros:
                macro = macros[word[0]]
                if depth >= _MAX_MACRO_DEPTH:
                    raise GuestError(f"{at.file}:{at.line}: macro {macro.name} nests deeper "
                                     f"than {_MAX_MACRO_DEPTH} (does it invoke itself?)")
                values = dict(macro.defaults)
                positional = 0
                for arg in _split_args(word[1] if len(word) > 1 else ""):
                    key, eq, value = arg.partition("=")
                    if eq and key.strip() in macro.params:
                        values[key.strip()] = _unquote(value.strip())
                    elif positional < len(macro.params):
                        values[macro.params[positional]] = _unquote(arg)
                        positional += 1
                    else:
                        raise GuestError(f"{at.file}:{at.line}: macro {macro.name} takes "
                                         f"{len(macro.params)} arguments: "
                                         f"{', '.join(macro.params) or 'none'}")
                counter[0] += 1
                count = counter[0]

                def substitute(m: re.Match, body_at: Origin) -> str:
                    ref = m.group(1)
                    if ref == "()":
                        return ""
                    if ref == "@":
                        return str(count)
                    if ref not in macro.params:
                        raise GuestError(f"{body_at.file}:{body_at.line}: macro {macro.name} "
                                         f"has no parameter {ref!r}")
                    return values.get(ref, "")

                via = f"macro {macro.name} at {at.file}:{at.line}"
                body = [_PARAM_USE.sub(lambda m, b=b_at: substitute(m, b), text)
                        for text, b_at in zip(macro.body, macro.origins)]
                body_origins = [Origin(o.file, o.line, (via,) + at.via) for o in macro.origins]
                out.append("")                 # the invocation line itself
                out_origins.append(at)
                run(body, body_origins, depth + 1)
                i += 1
                continue
            out.append(line)
            out_origins.append(at)
            i += 1

    run(lines, origins, 0)
    return out, out_origins


def strip_comments(source: str) -> str:
    """Remove ``;`` comments that are not inside a quoted string."""
    out = []
    for line in source.splitlines():
        quote = None
        for i, ch in enumerate(line):
            if quote:
                if ch == quote and line[i - 1] != "\\":
                    quote = None
            elif ch in "\"'":
                quote = ch
            elif ch == ";":
                line = line[:i]
                break
        out.append(line.rstrip())
    return "\n".join(out)


def _failing_line(ks, source: str) -> tuple[int, str] | None:
    """Find the first line whose addition makes the source fail (keystone
    reports no line numbers), by bisection over prefixes. Labels defined
    further on are kept so that references resolve, and ``.if`` blocks that
    a prefix leaves open are closed."""
    import keystone
    lines = source.splitlines()
    label_re = re.compile(r"^\s*([A-Za-z_.][\w.]*):")
    first_def: dict[str, int] = {}
    for n, l in enumerate(lines):
        m = label_re.match(l)
        if m:
            first_def.setdefault(m.group(1), n)

    def fails(i: int) -> bool:
        prefix = lines[: i + 1]
        opened = sum(1 for l in prefix if _IF.match(l)) - sum(1 for l in prefix if _ENDIF.match(l))
        tail = [".endif"] * max(opened, 0)
        tail += [lines[n] for name, n in first_def.items() if n > i]
        try:
            ks.asm("\n".join(prefix + tail), 0)
        except keystone.KsError:
            return True
        return False

    low, high = 0, len(lines) - 1
    if high < 0 or not fails(high):
        return None
    while low < high:
        mid = (low + high) // 2
        if fails(mid):
            high = mid
        else:
            low = mid + 1
    return low + 1, lines[low]


def _cache_dir() -> Path:
    base = os.environ.get("HVMSPEC_CACHE")
    if base:
        return Path(base)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hvmspec"
