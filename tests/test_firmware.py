"""Unmodified firmware, placed as Xen's hvmloader placed it (spec/hvmloader.py)."""

from __future__ import annotations

import pytest

from spec import hvmloader, trace
from spec.loader import GuestError, GuestImage, rom_from_source
from tests.conftest import both, cli, peer_file

ROMBIOS, VGABIOS = hvmloader.FIRMWARE["rombios"][0], hvmloader.VGABIOS[0]
SEABIOS = hvmloader.FIRMWARE["seabios"][0]


# --- placement ----------------------------------------------------------------------------

def test_rombios_is_placed_below_1_mib_and_aliased_below_4_gib_with_the_vga_bios():
    peer_file(ROMBIOS, "bochsbios")
    peer_file(VGABIOS, "vgabios")
    image = hvmloader.load_firmware(hvmloader.choose("rombios"))
    bios = open(ROMBIOS, "rb").read()
    assert image.ram_placements()[0] == (0x100000 - len(bios), bios)
    (gpa, vga), = image.placements
    assert gpa == 0xC0000 and vga[:2] == b"\x55\xaa" and len(vga) == vga[2] * 512
    assert image.rom_alias() == (0xFFFE0000, bios)


def test_a_bios_larger_than_128k_keeps_its_last_128k_below_1_mib(tmp_path):
    peer_file(SEABIOS, "seabios")
    big = open(SEABIOS.replace("bios.bin", "bios-256k.bin"), "rb").read()
    image = hvmloader.load_firmware(hvmloader.choose(SEABIOS.replace("bios.bin", "bios-256k.bin"),
                                                     "none"))
    assert image.load_address == 0xE0000 and image.image == big[-0x20000:]
    assert image.rom_alias() == (0xFFFC0000, big) and image.placements == ()


# --- the alias below 4 GiB, on both engines -----------------------------------------------

ALIAS_READER = """
%include "lib/all.s"
    real_mode_start
    enter_pm32
    mov esi, 0xfffffff0             ; the reset vector, through the alias
    mov edi, 0xffff0                ; and below 1 MiB
    mov ecx, 4
    repe cmpsd
    mov eax, ecx                    ; 0: the four dwords were equal
    mov dx, 0x510
    out dx, eax
    mov eax, [0xffff0000]           ; the first bytes of the ROM's last 64 KiB
    out dx, eax
    mov byte ptr [0xffff0000], 0    ; a ROM: the write is refused
    hlt
    flat_gdt
"""


def test_both_engines_map_the_rom_alias_read_only():
    rom = rom_from_source(ALIAS_READER, "alias")
    image = GuestImage("alias", rom, ALIAS_READER, kind="firmware", rom=rom)
    result = both(image)
    sent = [e.data for e in result.trace if isinstance(e, trace.IoreqTransition)
            and e.addr == 0x510 and e.new == "READY"]
    assert sent == [0, int.from_bytes(rom[:4], "little")]
    assert result.exit["reason"] == "crash"
    assert "0xffff0000" in result.exit["message"]


def test_seabios_runs_past_make_bios_writable_on_both_engines():
    """The report of issue 18: SeaBIOS died after 2,128 instructions,
    jumping into its ROM's alias below 4 GiB, which was not mapped."""
    peer_file(SEABIOS, "seabios")
    image = hvmloader.load_firmware(hvmloader.choose("seabios", "none"))
    result = both(image, max_instructions=20_000)
    assert result.exit["reason"] == "limit", result.exit
    assert result.instructions == 20_000


# --- bad firmware ---------------------------------------------------------------------------

def _bios(tmp_path, data: bytes, name="bios.bin") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _jumping(size: int) -> bytes:
    return bytes(size - 16) + b"\xea\x5b\xe0\x00\xf0" + bytes(11)


@pytest.mark.parametrize("data,words", [
    (b"", "whole number of 64 KiB blocks"),
    (bytes(0x18000), "98,304 bytes: a BIOS image is a whole number of 64 KiB blocks"),
    (_jumping(0x200000), "at most 1,048,576 bytes"),
    (bytes(0x10000), "no jump at its reset vector (offset 0xfff0: 0000000000)"),
])
def test_a_bios_that_cannot_be_one_is_refused(tmp_path, data, words):
    with pytest.raises(GuestError, match=words.replace("(", r"\(").replace(")", r"\)")):
        hvmloader.load_firmware(hvmloader.choose(_bios(tmp_path, data), "none"))


def _option_rom(blocks: int, fix_checksum: bool = True, size: int | None = None) -> bytes:
    rom = bytearray(size if size is not None else blocks * 512)
    rom[:3] = bytes([0x55, 0xAA, blocks])
    if fix_checksum:
        rom[-1] = -sum(rom[:-1]) % 256 if size is None else rom[-1]
    return bytes(rom)


@pytest.mark.parametrize("data,words", [
    (b"\x00\x00\x10" + bytes(0x2000), "does not start with the option ROM signature 55 aa"),
    (_option_rom(16, size=1024), "says it is 8,192 bytes"),
    (_option_rom(16, fix_checksum=False) [:-1] + b"\x01", "do not sum to 0 modulo 256"),
])
def test_a_vga_bios_the_scan_would_not_run_is_refused(tmp_path, data, words):
    bios = _bios(tmp_path, _jumping(0x20000))
    vga = _bios(tmp_path, data, "vga.bin")
    with pytest.raises(GuestError, match=words):
        hvmloader.load_firmware(hvmloader.choose(bios, vga))


def test_a_missing_firmware_file_names_the_package(tmp_path):
    with pytest.raises(GuestError, match=r"apt-get install bochsbios"):
        hvmloader.load_firmware(hvmloader.choose("/usr/share/bochs/BIOS-nonexistent", "none"))
    with pytest.raises(GuestError, match=r"VGA BIOS .* apt-get install vgabios"):
        hvmloader.load_firmware(hvmloader.choose(_bios(tmp_path, _jumping(0x10000)),
                                                 "/usr/share/vgabios/nonexistent.bin"))


def test_the_cli_runs_firmware_and_refuses_bad_use(tmp_path):
    proc = cli("run", "--firmware", str(tmp_path / "none.bin"))
    assert proc.returncode == 2 and "BIOS" in proc.stderr and "does not exist" in proc.stderr
    proc = cli("run", "hello", "--firmware", "rombios")
    assert proc.returncode == 2 and "not both" in proc.stderr
    proc = cli("run", "hello", "--vgabios", "x.bin")
    assert proc.returncode == 2 and "--vgabios goes with --firmware" in proc.stderr
    proc = cli("run")
    assert proc.returncode == 2 and "--firmware, is required" in proc.stderr
    bios = _bios(tmp_path, rom_from_source("%include \"lib/all.s\"\n    real_mode_start\n"
                                           "    poweroff\n", "tiny"))
    proc = cli("run", "--firmware", bios, "--vgabios", "none", "--no-status")
    assert proc.returncode == 0, proc.stderr
    assert "ROM alias 0xffff0000-0xffffffff" in proc.stderr
