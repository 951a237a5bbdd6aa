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
BIOS ROM has. The assembled bytes are cached by the source's SHA-256 (in
``$HVMSPEC_CACHE`` or ``~/.cache/hvmspec``), so the assembler runs once per
source text.

**Settings.** A source may ask for the memory it needs with a comment
line ``; hvmspec: memory = <MiB>``; a run without ``--memory`` gives it that
much (:func:`guest_settings`).

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

    def describe(self) -> str:
        """One line: what was loaded, from where, and how it was taken."""
        what = {"bundled": "the bundled guest", "assembly": "16-bit assembly source",
                "image": "a raw image", "built": "a guest image"}[self.kind]
        where = f" {self.path}" if self.path else ""
        return (f"{self.name}: {what}{where}, {len(self.image):,} bytes at "
                f"{self.load_address:#x}-{platform.IMAGE_END - 1:#x}")

    @property
    def load_address(self) -> int:
        return platform.IMAGE_END - len(self.image)


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
        return GuestImage(path.stem, rom_from_source(source, str(path)), source,
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


def rom_from_source(source: str, origin: str = "<source>") -> bytes:
    """Assemble ``source`` into a 64 KiB ROM image (cached)."""
    digest = hashlib.sha256(source.encode()).hexdigest()
    cache = _cache_dir() / f"{digest}.bin"
    if cache.exists():
        code = cache.read_bytes()
    else:
        code = assemble(source, origin)
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


def assemble(source: str, origin: str = "<source>") -> bytes:
    """Assemble 16-bit code at offset 0 with keystone, with a clear error."""
    import keystone
    if not source.strip():
        raise GuestError(f"{origin}: the source is empty")
    ks = keystone.Ks(keystone.KS_ARCH_X86, keystone.KS_MODE_16)
    source = strip_comments(source)
    try:
        encoding, _count = ks.asm(source, 0)
    except keystone.KsError as exc:
        line = _failing_line(ks, source)
        where = f" at line {line[0]}: {line[1].strip()!r}" if line else ""
        raise GuestError(f"{origin}: does not assemble{where}: {exc}") from None
    if not encoding:
        raise GuestError(f"{origin}: assembles to no code")
    return bytes(encoding)


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
    reports no line numbers). Labels are kept so references resolve."""
    import keystone
    lines = source.splitlines()
    labels = [l for l in lines if re.match(r"^\s*[A-Za-z_.][\w.]*:", l)]
    for i in range(len(lines)):
        candidate = "\n".join(lines[: i + 1] + [l for l in labels if l not in lines[: i + 1]])
        try:
            ks.asm(candidate, 0)
        except keystone.KsError:
            return i + 1, lines[i]
    return None


def _cache_dir() -> Path:
    base = os.environ.get("HVMSPEC_CACHE")
    if base:
        return Path(base)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hvmspec"
