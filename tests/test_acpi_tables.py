"""The ACPI tables the domain builder writes as hvmloader did (spec/acpi_tables.py).

The tables are read back from the guest image's bytes as an OS reads them:
the RSDP found by scanning 0xE0000-0xFFFFF, the rest by following its
pointers; field offsets are the ACPI 2.0 specification's, written out
here, not taken from the builder.
"""

from __future__ import annotations

import dataclasses
import struct
import subprocess
from pathlib import Path

import pytest

from tests.conftest import both, peer, peer_file
from spec import hvmloader, platform
from spec.loader import GuestImage, rom_from_source

LEGACY_ROMBIOS = "/usr/share/bochs/BIOS-bochs-legacy"

#: hvmloader's compiled DSDT (Xen 3.0.4, tools/firmware/hvmloader/acpi/dsdt.c,
#: AmlCode bytes 0x59-0xB3): Scope (\_PR) with CPU0-CPU3, Name (\_S5, Package
#: {7, 7, 0, 0}), Name (PICD, 0), Method (_PIC, 1) {Store (Arg0, PICD)}
HVMLOADER_AML = bytes.fromhex(
    "10395f50525f5b830b435055300000000000005b830b435055310100000000005b830b4350"
    "55320200000000005b830b43505533030000000000085f53355f1208040a070a070000085049"
    "434400140c5f50494301706850494344")


def _tiny_bios(tmp_path: Path) -> str:
    """A 64 KiB BIOS (the size hvmloader's rombios was) that powers off."""
    rom = rom_from_source('%include "lib/all.s"\n    real_mode_start\n    poweroff\n', "tiny")
    path = tmp_path / "tiny.bin"
    path.write_bytes(rom)
    return str(path)


def _low_memory(image: GuestImage) -> bytearray:
    """0xE0000-0xFFFFF as the builder leaves it (zeros where nothing is placed)."""
    mem = bytearray(0x20000)
    for gpa, data in image.ram_placements():
        for i, byte in enumerate(data):
            if 0xE0000 <= gpa + i < 0x100000:
                mem[gpa + i - 0xE0000] = byte
    return mem


class Tables:
    """The tables an OS finds in the first MiB."""

    def __init__(self, mem: bytearray) -> None:
        self.mem = mem
        found = [0xE0000 + off for off in range(0, 0x20000, 16)
                 if mem[off:off + 8] == b"RSD PTR "]
        assert len(found) == 1, [hex(a) for a in found]
        self.rsdp = found[0]

    def at(self, address: int, length: int) -> bytes:
        assert 0xE0000 <= address and address + length <= 0x100000, hex(address)
        return bytes(self.mem[address - 0xE0000:address - 0xE0000 + length])

    def table(self, address: int, signature: bytes) -> bytes:
        """The description table at ``address``: its signature, its whole
        length, and a checksum of 0."""
        head = self.at(address, 36)
        assert head[:4] == signature, (hex(address), head[:4])
        length = struct.unpack_from("<I", head, 4)[0]
        data = self.at(address, length)
        assert sum(data) % 256 == 0, f"{signature!r} checksum"
        return data


def _tables(image: GuestImage) -> Tables:
    return Tables(_low_memory(image))


@pytest.fixture
def tables(tmp_path) -> Tables:
    return _tables(hvmloader.load_firmware(hvmloader.choose(_tiny_bios(tmp_path), "none")))


def test_the_rsdp_is_at_0xea0xx_with_both_checksums_and_both_roots(tables):
    rsdp = tables.at(tables.rsdp, 36)
    assert 0xEA000 < tables.rsdp < 0xEB000 and tables.rsdp % 16 == 0
    assert sum(rsdp[:20]) % 256 == 0 and sum(rsdp) % 256 == 0
    assert rsdp[9:15] == b"INTEL " and rsdp[15] == 2                 # OEM ID, revision 2
    rsdt, length, xsdt = struct.unpack_from("<IIQ", rsdp, 16)
    assert length == 36
    # the RSDP is last: both roots are below it, each on a 16-byte boundary
    assert rsdt % 16 == 0 and xsdt % 16 == 0 and xsdt < rsdt < tables.rsdp
    r = tables.table(rsdt, b"RSDT")
    x = tables.table(xsdt, b"XSDT")
    assert r[8] == 1 and x[8] == 1                                      # revisions
    assert struct.unpack_from("<I", r, 36) == struct.unpack_from("<Q", x, 36)
    assert len(r) == 40 and len(x) == 44                                # one entry: the FADT


def _fadt(tables: Tables) -> tuple[int, bytes]:
    rsdt = struct.unpack_from("<I", tables.at(tables.rsdp, 36), 16)[0]
    address = struct.unpack_from("<I", tables.table(rsdt, b"RSDT"), 36)[0]
    return address, tables.table(address, b"FACP")


def test_every_header_carries_hvmloaders_ids(tables):
    fadt_at, fadt = _fadt(tables)
    rsdp = tables.at(tables.rsdp, 36)
    rsdt_at, _, xsdt_at = struct.unpack_from("<IIQ", rsdp, 16)
    for data in (fadt, tables.table(rsdt_at, b"RSDT"), tables.table(xsdt_at, b"XSDT")):
        assert data[10:16] == b"INTEL " and data[16:24] == b" TBD\0\0\0\0"
        assert struct.unpack_from("<III", data, 24) == (2, 0, 2)
    dsdt = tables.table(struct.unpack_from("<I", fadt, 40)[0], b"DSDT")
    assert dsdt[8] == 1 and dsdt[10:16] == b"INTEL " and dsdt[16:24] == b"int-xen\0"
    assert struct.unpack_from("<I4sI", dsdt, 24) == (2006, b"INTL", 0x20050513)


def test_the_fadt_is_static_tables_c(tables):
    fadt_at, f = _fadt(tables)
    assert len(f) == 244 and f[8] == 3
    facs, dsdt = struct.unpack_from("<II", f, 36)
    assert struct.unpack_from("<QQ", f, 132) == (facs, dsdt)             # X_FIRMWARE_CTRL, X_DSDT
    # FACS first, at 0xEA000 (64-byte aligned, as ACPI requires), then the DSDT
    assert facs == 0xEA000 and facs < dsdt < fadt_at
    facs_bytes = tables.at(facs, 64)
    assert facs_bytes[:4] == b"FACS" and struct.unpack_from("<I", facs_bytes, 4)[0] == 64
    assert facs_bytes[32] == 1                                          # version
    assert struct.unpack_from("<H", f, 46)[0] == 9                      # SCI_INT
    assert struct.unpack_from("<I", f, 48)[0] == 0                      # no SMI_CMD
    evt, evt_b, cnt, cnt_b, pm2, tmr, gpe0, gpe1 = struct.unpack_from("<8I", f, 56)
    assert (evt, cnt, tmr) == (0x1F40, 0x1F44, 0x1F48)
    assert (evt_b, cnt_b, pm2, gpe0, gpe1) == (0, 0, 0, 0, 0)
    assert tuple(f[88:92]) == (4, 2, 0, 4)              # PM1_EVT_LEN PM1_CNT_LEN PM2 PM_TMR_LEN
    assert struct.unpack_from("<HH", f, 96) == (0x0FFF, 0x0FFF)         # no C2, no C3
    assert f[108] == 0                                                  # CENTURY
    assert struct.unpack_from("<H", f, 109)[0] == 0b11                  # LEGACY_DEVICES | 8042
    flags = struct.unpack_from("<I", f, 112)[0]
    # WBINVD, PROC_C1, PWR_BUTTON, SLP_BUTTON, FIX_RTC, TMR_VAL_EXT; not RESET_REG_SUP
    assert flags == 1 << 0 | 1 << 2 | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 8
    # RESET_REG: SystemIO, 8 bits, offset 0, at 0xcf9; RESET_VALUE 6
    assert struct.unpack_from("<BBBBQ", f, 116) == (1, 8, 0, 0, 0xCF9) and f[128] == 6
    gas = {name: struct.unpack_from("<BBBBQ", f, off) for name, off in (
        ("pm1a_evt", 148), ("pm1b_evt", 160), ("pm1a_cnt", 172), ("pm1b_cnt", 184),
        ("pm2_cnt", 196), ("pm_tmr", 208), ("gpe0", 220), ("gpe1", 232))}
    assert gas["pm1a_evt"] == (1, 32, 0, 0, 0x1F40)
    assert gas["pm1a_cnt"] == (1, 16, 0, 0, 0x1F44)
    assert gas["pm_tmr"] == (1, 32, 0, 0, 0x1F48)
    assert all(g == (0, 0, 0, 0, 0) for name, g in gas.items()
               if name not in ("pm1a_evt", "pm1a_cnt", "pm_tmr"))


def test_the_tables_are_in_hvmloaders_order_below_the_bios(tables):
    fadt_at, f = _fadt(tables)
    facs, dsdt = struct.unpack_from("<II", f, 36)
    rsdt, _, xsdt = struct.unpack_from("<IIQ", tables.at(tables.rsdp, 36), 16)
    order = [facs, dsdt, fadt_at, xsdt, rsdt, tables.rsdp]
    assert order == sorted(order) and all(a % 16 == 0 for a in order)
    lengths = [64, struct.unpack_from("<I", tables.at(dsdt, 8), 4)[0], 244, 44, 40, 36]
    # each table starts at the first 16-byte boundary after the one before
    for (a, n), b in zip(zip(order, lengths), order[1:]):
        assert b == (a + n + 15) & ~15
    assert tables.rsdp + 36 <= 0xF0000


def test_the_dsdt_s5_is_the_sleep_type_qemu_dm_powers_off_on(tables):
    _, f = _fadt(tables)
    dsdt = tables.table(struct.unpack_from("<I", f, 40)[0], b"DSDT")
    at = dsdt.index(b"_S5_")
    # NameOp _S5_ PackageOp PkgLength(8) NumElements(4) BytePrefix 7 BytePrefix 7 Zero Zero
    assert dsdt[at - 1:at + 13] == b"\x08_S5_\x12\x08\x04\x0a\x07\x0a\x07\x00\x00"
    assert platform.SLP_TYP_S5 == 7
    # what hvmloader's DSDT and this one share is byte for byte the same
    assert HVMLOADER_AML in dsdt


def test_iasl_disassembles_and_recompiles_the_dsdt(tables, tmp_path):
    """The AML is well-formed: iasl disassembles it to ASL with the objects
    written, and compiling that ASL gives back the same AML."""
    iasl = peer("iasl")
    _, f = _fadt(tables)
    dsdt = tables.table(struct.unpack_from("<I", f, 40)[0], b"DSDT")
    (tmp_path / "dsdt.aml").write_bytes(dsdt)
    proc = subprocess.run([iasl, "-d", "dsdt.aml"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    asl = (tmp_path / "dsdt.dsl").read_text()
    for text in ('DefinitionBlock ("", "DSDT", 1, "INTEL ", "int-xen", 0x000007D6)',
                 "Processor (CPU0, 0x00, 0x00000000, 0x00)",
                 "Processor (CPU3, 0x03, 0x00000000, 0x00)",
                 "Name (_S5, Package (0x04)", "Method (_PIC, 1, NotSerialized)",
                 "Device (PCI0)", 'Name (_HID, EisaId ("PNP0A03")', "Name (_BBN, Zero)"):
        assert text in asl, text
    assert "0x07, \n        0x07, \n        Zero, \n        Zero" in asl
    proc = subprocess.run([iasl, "-p", "again", "dsdt.dsl"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and "0 Errors" in proc.stdout, proc.stdout + proc.stderr
    again = (tmp_path / "again.aml").read_bytes()
    assert again[36:] == dsdt[36:]                  # the header's compiler ID is iasl's own


# --- which BIOS gets them ----------------------------------------------------------------


def test_a_128_kib_bios_gets_no_tables():
    """SeaBIOS and Debian's rombios (with rombios32) fill 0xE0000-0xFFFFF:
    the builder writes no tables over them, and they build their own."""
    for name, package in (("seabios", "seabios"), ("rombios", "bochsbios")):
        peer_file(hvmloader.FIRMWARE[name][0], package)
        image = hvmloader.load_firmware(hvmloader.choose(name, "none"))
        assert len(image.rom) == 0x20000 and image.placements == (), name
        assert b"RSD PTR " not in b"".join(d for _, d in image.placements)


def test_a_64_kib_bios_gets_them_at_0xea000(tmp_path):
    image = hvmloader.load_firmware(hvmloader.choose(_tiny_bios(tmp_path), "none"))
    (gpa, data), = image.placements
    assert gpa == 0xEA000 and len(data) % 16 == 0 and gpa + len(data) <= image.load_address
    assert "bytes at 0xea000" in image.describe()


# --- an OS's walk, on both engines ----------------------------------------------------------

#: what an OS does to power off (Linux's acpi_enter_sleep_state for S5): find the
#: RSDP in 0xE0000-0xFFFFF, the FADT through the RSDT, \_S5's SLP_TYPa in the
#: DSDT, and write SLP_TYPa << 10 | SLP_EN to the FADT's PM1a_CNT_BLK. It
#: prints R, F and S as it finds each; a letter in lower case is a step that
#: failed, and the guest then halts (the domain does not power off).
ACPI_WALKER = """
%include "lib/all.s"
    real_mode_start
    enter_pm32
    mov esi, 0xe0000
scan:
    cmp dword ptr [esi], 0x20445352         ; "RSD "
    jne scan_next
    cmp dword ptr [esi + 4], 0x20525450     ; "PTR "
    je rsdp_found
scan_next:
    add esi, 16
    cmp esi, 0x100000
    jb scan
    mov al, 'r'
    jmp fail
rsdp_found:
    mov al, 'R'
    call putc
    mov ebx, [esi + 16]                     ; RsdtAddress
    mov ecx, [ebx + 4]                      ; its length
    sub ecx, 36
    shr ecx, 2                              ; its entries
    lea edi, [ebx + 36]
find_fadt:
    mov al, 'f'
    test ecx, ecx
    jz fail
    mov edx, [edi]
    cmp dword ptr [edx], 0x50434146         ; "FACP"
    je fadt_found
    add edi, 4
    dec ecx
    jmp find_fadt
fadt_found:
    mov al, 'F'
    call putc
    mov ebp, [edx + 64]                     ; PM1a_CNT_BLK
    mov esi, [edx + 40]                     ; the DSDT
    mov ecx, [esi + 4]
    add ecx, esi                            ; its end
    add esi, 36
find_s5:
    cmp dword ptr [esi], 0x5f35535f         ; "_S5_"
    je s5_found
    inc esi
    cmp esi, ecx
    jb find_s5
    mov al, 's'
    jmp fail
s5_found:
    mov al, 's'
    cmp byte ptr [esi + 4], 0x12            ; PackageOp
    jne fail
    movzx eax, byte ptr [esi + 7]           ; after PkgLength, NumElements: SLP_TYPa
    cmp al, 0x0a                            ; BytePrefix: the value follows
    jne s5_value                            ; else ZeroOp (0) or OneOp (1) is the value
    movzx eax, byte ptr [esi + 8]
s5_value:
    mov ebx, eax
    mov al, 'S'
    call putc
    mov eax, ebx
    shl eax, 10
    or eax, 0x2000                          ; SLP_EN
    mov edx, ebp
    out dx, ax
    halt_forever
fail:
    call putc
    hlt
    serial_putc w=e
    flat_gdt
"""


def test_an_os_walk_of_the_tables_powers_the_domain_off_on_both_engines():
    rom = rom_from_source(ACPI_WALKER, "acpi_walker")
    image = GuestImage("acpi_walker", rom, ACPI_WALKER)
    image = dataclasses.replace(image, placements=hvmloader.acpi_placements(len(rom)))
    result = both(image)
    assert result.serial == "RFS"
    assert result.exit["reason"] == "poweroff" and result.exit["by"] == "qemu-dm"


def test_without_the_tables_the_walk_finds_no_rsdp():
    rom = rom_from_source(ACPI_WALKER, "acpi_walker")
    result = both(GuestImage("acpi_walker", rom, ACPI_WALKER))
    assert result.serial == "r" and result.exit["reason"] != "poweroff"


# --- real rombios ---------------------------------------------------------------------------


def _post(image: GuestImage, until: str = "No bootable device") -> tuple[str, bytes]:
    """Run ``image`` on the impl engine until its firmware log shows
    ``until``; the log, and 0xE0000-0xFFFFF of the domain's RAM then."""
    log, dom = _post_domain(image, until)
    return log, dom.vcpu.read(0xE0000, 0x20000)


def _post_domain(image: GuestImage, until: str = "No bootable device"):
    """:func:`_post`'s run; the log and the impl engine's domain then."""
    from impl.machine import Host
    from spec.result import FirmwareLogText
    from spec.xend import DomainConfig
    log = FirmwareLogText()
    hosts: list[Host] = []

    def listen(event) -> None:
        if log.feed(event) and until in "".join(log.parts):
            hosts[0].interrupt()

    host = Host(image, listen, 4_000_000_000)
    hosts.append(host)
    domid = host.xend.create(DomainConfig(name=image.name, memory_mib=16, on_poweroff="destroy",
                                          on_reboot="destroy", on_crash="destroy"))
    host.run()
    assert host.stopped == "interrupted", "".join(log.parts)
    return "".join(log.parts), host.domains[domid]


def test_legacy_rombios_posts_with_the_tables_and_leaves_them_in_place():
    """Debian's 64 KiB rombios (no rombios32, like Xen 3.0.4's) gets the
    tables; its POST to "No bootable device" logs what it logs without
    them, and the tables are still there, byte for byte, after it."""
    peer_file(LEGACY_ROMBIOS, "bochsbios")
    assert hvmloader.FIRMWARE["rombios-legacy"] == (LEGACY_ROMBIOS, "bochsbios")
    image = hvmloader.load_firmware(hvmloader.choose("rombios-legacy"))
    (gpa, tables), = [(g, d) for g, d in image.placements if g == 0xEA000]
    log, ram = _post(image)
    bare_log, _ = _post(dataclasses.replace(
        image, placements=tuple(p for p in image.placements if p[0] != 0xEA000)))
    assert log == bare_log and "No bootable device" in log
    assert ram[gpa - 0xE0000:gpa - 0xE0000 + len(tables)] == tables
    found = Tables(bytearray(ram))
    assert 0xEA000 < found.rsdp < 0xEB000


def test_rombios32_tables_name_the_pm_block_where_its_pmba_put_it():
    """Debian's 128 KiB rombios (with rombios32) writes PMBA = 0xB001 and
    PMREGMISC = 1 and builds its own FADT for a PM block at 0xB000; the block
    moves there (spec.devices.pci), so the FADT's PM1a control and PM timer
    are where qemu-dm's registers and Xen's timer now are, and 0x1F40 is no
    longer the block."""
    peer_file(hvmloader.FIRMWARE["rombios"][0], "bochsbios")
    log, dom = _post_domain(hvmloader.load_firmware(hvmloader.choose("rombios")))
    low = bytearray(dom.vcpu.read(0xE0000, 0x20000))
    rsdp = next(off for off in range(0, 0x20000, 16) if low[off:off + 8] == b"RSD PTR ")
    rsdt = struct.unpack_from("<I", low, rsdp + 16)[0]
    head = dom.vcpu.read(rsdt, 36)
    entries = struct.unpack_from(f"<{(struct.unpack_from('<I', head, 4)[0] - 36) // 4}I",
                                 dom.vcpu.read(rsdt + 36, struct.unpack_from("<I", head, 4)[0]
                                               - 36))
    fadt = next(dom.vcpu.read(a, 116) for a in entries if dom.vcpu.read(a, 4) == b"FACP")
    evt, cnt, tmr = (struct.unpack_from("<I", fadt, at)[0] for at in (56, 64, 76))
    assert (evt, cnt, tmr) == (0xB000, 0xB004, 0xB008)
    assert [lo for lo, _, dev in dom.qemu.devices if dev is dom.qemu.acpi] == [evt]
    assert dom.vmm.pmt.claims(tmr) and not dom.vmm.pmt.claims(platform.ACPI_PM_TMR_BLK)


def test_the_aml_builder_encodes_as_iasl_does():
    """The encodings the DSDT is made of, against hvmloader's compiled bytes
    (dsdt.c: ``Scope (\\_SB)`` is ``10 48 CE 5F 53 42 5F``, a PkgLength of
    0xCE8 in two bytes) and the ACPI 2.0 specification (17.2.4)."""
    from spec import acpi_tables as aml
    assert aml.aml_pkg_length(0xCE8 - 2) == b"\x48\xce"
    assert aml.aml_pkg_length(62) == b"\x3f"                    # the last one-byte length
    assert aml.aml_pkg_length(63) == b"\x41\x04"                # 65 = 0x41 | 0x04 << 4
    assert aml.aml_pkg_length(0xFFFF0) == b"\x83\xff\xff"            # 0xFFFF3 in three bytes
    assert aml.eisa_id("PNP0A03") == 0x030AD041
    assert aml.aml_integer(7) == b"\x0a\x07" and aml.aml_integer(0x1F44) == b"\x0b\x44\x1f"
    assert aml.aml_name_string("\\_SB.PCI0") == b"\\\x2e_SB_PCI0"
    assert aml.aml_name_string("_SB.PCI0.ISA") == b"\x2f\x03_SB_PCI0ISA_"
