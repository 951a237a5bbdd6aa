"""The HVM domain builder's firmware job: what Xen 3.x's hvmloader did.

Room: interface. Both engines place firmware through this module; it reads
files and computes where their bytes go, and has no behaviour of the VMM.
Imports :mod:`spec.loader`, :mod:`spec.acpi_tables` and :mod:`spec.platform`.

In Xen 3.x an HVM domain's "kernel" was ``/usr/lib/xen/boot/hvmloader``
(``tools/firmware/hvmloader``): a small 32-bit program that the domain
builder loaded at 1 MiB and that ran first in the new domain. It copied the
BIOS it carried (rombios, the Bochs BIOS, ``tools/firmware/rombios``) to
the top of the first MiB and the VGA BIOS (the LGPL vgabios, in its
standard-VGA build for ``stdvga=1``, or its Cirrus build) to ``0xC0000``, built the ACPI tables, and jumped to
the BIOS's reset entry in real mode. The model does that job in the builder,
before the vcpu first runs: the vcpu starts at the BIOS's reset vector
``F000:FFF0`` (the SDM's reset state) with the firmware already in place, so
no hvmloader code runs in the guest. What the model places
(:func:`load_firmware`):

* **The BIOS** at the top of the first MiB: its last 128 KiB (all of a
  64 or 128 KiB image) end at ``0x100000``, in guest RAM, as hvmloader's
  copy did. On a PC the whole ROM is also decoded at the top of the 4 GiB
  address space (its **alias**: ``0xFFFE0000``-``0xFFFFFFFF`` for a 128 KiB
  BIOS), which Xen 3.x's guests did not have (hvmloader's copy was the only
  one). SeaBIOS, built for QEMU, needs it: on the i440FX it reads PAM0 and,
  when the BIOS area does not read from RAM, runs ``make_bios_writable``
  from the alias. The model maps the alias read-only, as a ROM is; the
  guest cannot write it (a write is a write to a read-only page, which
  crashes the domain with the address).
* **The VGA BIOS** at ``0xC0000``, in guest RAM, where the BIOS's option
  ROM scan (``0xC0000``-``0xDFFFF``, 2 KiB steps) finds it by its
  ``55 AA`` signature, as hvmloader placed it, for rombios. SeaBIOS, built
  for QEMU, runs only the option ROMs PCI devices carry: with it the VGA
  BIOS (by default SeaBIOS's own, ``vgabios-stdvga.bin``) is the std VGA's
  expansion ROM (its PCI ROM BAR, :mod:`spec.devices.pci`), which qemu-dm
  serves as QEMU serves ``-device VGA,romfile=FILE``, and SeaBIOS copies
  it to ``0xC0000`` and runs it (later Xen's hvmloader, with qemu-xen,
  left it there too).
* **The ACPI tables** hvmloader built, at ``0xEA000``
  (:mod:`spec.acpi_tables`), when the BIOS is a 64 KiB one that leaves
  that room free, as hvmloader's rombios did: a 128 KiB BIOS (SeaBIOS,
  Debian's rombios with rombios32) fills ``0xE0000``-``0xFFFFF`` and builds
  its own tables, and the builder writes none.

An xm configuration asks for this job as Xen 3.x's did, with ``kernel =
"/usr/lib/xen/boot/hvmloader"`` (any path whose last part is
``hvmloader``); which BIOS then comes from ``bios = "rombios"`` (the
default: the only one Xen 3.x's hvmloader carried), ``"seabios"`` or a file
(the key of later Xen's xl), and ``vgabios = FILE`` or ``"none"``
(:func:`domain_image`).

Firmware comes from Debian's packages (:data:`FIRMWARE`): rombios from
``bochsbios``, SeaBIOS from ``seabios``, the VGA BIOS from ``vgabios``. A
file that is missing names the package that installs it.

Checks (:class:`spec.loader.GuestError`, each with the file and the reason):
a firmware file exists, is a regular file and can be read; a BIOS is a whole
number of 64 KiB blocks, at most :data:`MAX_BIOS_SIZE`, with a jump at its
reset vector (offset ``size - 16``); a VGA BIOS starts with ``55 AA``, its
length byte (in 512-byte blocks, so at most 127.5 KiB: it always fits
between ``0xC0000`` and the BIOS's 128 KiB) fits the file, and its bytes sum
to 0 modulo 256 (the checksum the BIOS's scan tests before it calls a ROM).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from spec import acpi_tables, platform
from spec.loader import GuestError, GuestImage, load

#: firmware by name: (file, the Debian package that installs it)
FIRMWARE = {
    "rombios": ("/usr/share/bochs/BIOS-bochs-latest", "bochsbios"),
    # the 64 KiB rombios without rombios32: the shape of the BIOS Xen 3.0.4's
    # hvmloader carried, and the one that gets hvmloader's ACPI tables
    "rombios-legacy": ("/usr/share/bochs/BIOS-bochs-legacy", "bochsbios"),
    "seabios": ("/usr/share/seabios/bios.bin", "seabios"),
}
#: the VGA BIOS hvmloader placed: the LGPL vgabios (standard VGA with
#: Bochs VBE), the one QEMU runs with rombios (FACTS: ``-device VGA``)
VGABIOS = ("/usr/share/vgabios/vgabios.bin", "vgabios")
#: SeaBIOS's VGA BIOS for the std VGA, its expansion ROM under SeaBIOS
SEABIOS_VGABIOS = ("/usr/share/seabios/vgabios-stdvga.bin", "seabios")
#: the packages, by the directory their files live in (to name the one a
#: missing file comes from: the files above, and their siblings)
PACKAGE_OF_DIR = {"/usr/share/bochs": "bochsbios", "/usr/share/seabios": "seabios",
                  "/usr/share/vgabios": "vgabios"}

BIOS_BLOCK = 0x10000                 # a BIOS is a whole number of these (QEMU's rule too)
MAX_BIOS_SIZE = 0x100000             # 1 MiB of ROM below 4 GiB
LOW_BIOS_SIZE = 0x20000              # what of it is copied below 1 MiB
VGABIOS_ADDRESS = 0xC0000
RESET_OFFSET = 16                    # the reset vector: 16 bytes before the end
#: a jump opcode at the reset vector: far (EA), near (E9) or short (EB)
RESET_JUMPS = (0xEA, 0xE9, 0xEB)
ROM_ALIAS_END = 1 << 32


@dataclass(frozen=True)
class Firmware:
    """A BIOS (and its VGA BIOS) chosen by name or file."""

    name: str
    bios_path: str
    vgabios_path: str | None
    #: the VGA BIOS is the VGA's PCI expansion ROM (SeaBIOS), not placed at 0xC0000
    vga_rom: bool = False


def choose(firmware: str, vgabios: str | None = None) -> Firmware:
    """``firmware`` is a name of :data:`FIRMWARE` or a BIOS file; ``vgabios``
    a VGA BIOS file, ``"none"`` for none, or None for the default."""
    if firmware in FIRMWARE:
        bios_path, name = FIRMWARE[firmware][0], firmware
    else:
        bios_path, name = firmware, Path(firmware).name
    as_rom = name == "seabios"
    if vgabios is None:
        vgabios = (SEABIOS_VGABIOS if as_rom else VGABIOS)[0]
    return Firmware(name, bios_path, None if vgabios == "none" else vgabios, as_rom)


def _read(path: str, what: str) -> bytes:
    """The bytes of a firmware file, or a :class:`GuestError` that names
    the file and what is wrong with it: missing (with the package that
    installs it), a directory, not a regular file (a FIFO or a device would
    block or never end), or unreadable (with the system's reason)."""
    file = Path(path)
    try:
        if not file.exists():
            package = PACKAGE_OF_DIR.get(str(file.parent))
            hint = f" (install the Debian package {package}: apt-get install {package})" \
                if package else ""
            raise GuestError(f"{what} {path!r} does not exist{hint}")
        if file.is_dir():
            raise GuestError(f"{what} {path!r} is a directory, not a firmware image")
        if not file.is_file():
            raise GuestError(f"{what} {path!r} is not a regular file (a device, FIFO or "
                             f"socket), not a firmware image")
        return file.read_bytes()
    except OSError as exc:
        raise GuestError(f"{what} {path!r} cannot be read: "
                         f"{exc.strerror or exc}") from None


def check_bios(data: bytes, path: str) -> None:
    """Refuse a BIOS image that cannot be one (module docstring)."""
    size = len(data)
    if size == 0:
        raise GuestError(f"BIOS {path!r} is empty (0 bytes): a BIOS image is a whole "
                         f"number of 64 KiB blocks")
    if size % BIOS_BLOCK:
        raise GuestError(f"BIOS {path!r} is {size:,} bytes: a BIOS image is a whole "
                         f"number of 64 KiB blocks")
    if size > MAX_BIOS_SIZE:
        raise GuestError(f"BIOS {path!r} is {size:,} bytes: at most {MAX_BIOS_SIZE:,} "
                         f"bytes of ROM fit below 4 GiB here")
    opcode = data[size - RESET_OFFSET]
    if opcode not in RESET_JUMPS:
        raise GuestError(f"BIOS {path!r} has no jump at its reset vector (offset "
                         f"{size - RESET_OFFSET:#x}: {data[-RESET_OFFSET:-RESET_OFFSET + 5].hex()}"
                         f"): not a PC BIOS image")


def check_vgabios(data: bytes, path: str) -> int:
    """Refuse a VGA BIOS that the BIOS's option ROM scan would not run;
    returns its length."""
    if data[:2] != b"\x55\xaa":
        raise GuestError(f"VGA BIOS {path!r} does not start with the option ROM "
                         f"signature 55 aa (it starts {data[:2].hex() or 'empty'})")
    length = data[2] * 512 if len(data) > 2 else 0
    if length == 0 or length > len(data):
        raise GuestError(f"VGA BIOS {path!r} says it is {length:,} bytes (byte 2: "
                         f"{length // 512} blocks of 512) but the file has {len(data):,}")
    if sum(data[:length]) % 256:
        raise GuestError(f"VGA BIOS {path!r}: its {length:,} bytes do not sum to 0 modulo "
                         f"256 (checksum {sum(data[:length]) % 256:#04x}): the BIOS would "
                         f"skip it")
    return length


def acpi_placements(bios_size: int) -> tuple[tuple[int, bytes], ...]:
    """The ACPI tables to place with a BIOS of ``bios_size`` bytes: at
    :data:`spec.platform.ACPI_TABLES_ADDRESS` for a 64 KiB BIOS (it sits
    at ``0xF0000``, as hvmloader's rombios did), none for a larger one,
    which occupies that address (module docstring)."""
    if bios_size != BIOS_BLOCK:
        return ()
    return ((platform.ACPI_TABLES_ADDRESS, acpi_tables.build()),)


def load_firmware(firmware: Firmware) -> GuestImage:
    """The guest image of a firmware: the BIOS's low copy as the image
    (ending at 1 MiB), the whole ROM as its alias below 4 GiB, and the VGA
    BIOS and (for a 64 KiB BIOS) the ACPI tables as further placements."""
    bios = _read(firmware.bios_path, "BIOS")
    check_bios(bios, firmware.bios_path)
    low = bios[-LOW_BIOS_SIZE:]
    placements: tuple[tuple[int, bytes], ...] = ()
    vga_rom = None
    if firmware.vgabios_path is not None:
        vga = _read(firmware.vgabios_path, "VGA BIOS")
        length = check_vgabios(vga, firmware.vgabios_path)
        if firmware.vga_rom:
            vga_rom = vga
        else:
            placements = ((VGABIOS_ADDRESS, vga[:length]),)
    placements += acpi_placements(len(bios))
    return GuestImage(firmware.name, low, kind="firmware", path=firmware.bios_path,
                      placements=placements, rom=bios, vga_rom=vga_rom)


def is_hvmloader(kernel: str) -> bool:
    """Whether an xm ``kernel`` names hvmloader (``/usr/lib/xen/boot/hvmloader``)."""
    return Path(kernel).name == "hvmloader"


def domain_image(kernel: str, bios: str = "", vgabios: str = "") -> GuestImage:
    """What the HVM builder loads for a domain's ``kernel``: hvmloader's
    firmware (``bios``, ``vgabios``: module docstring), or a guest image."""
    if is_hvmloader(kernel):
        return load_firmware(choose(bios or "rombios", vgabios or None))
    return load(kernel)
