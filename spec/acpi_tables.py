"""The ACPI tables Xen 3.0.4's hvmloader built, as the domain builder writes them.

Room: interface. :mod:`spec.hvmloader` places these bytes in guest RAM with
the firmware; nothing here runs while the guest does. Imports
:mod:`spec.platform`.

Sources: Xen 3.0.4's ``tools/firmware/hvmloader/acpi/`` (``build.c``
``acpi_build_tables``, ``static_tables.c``, ``acpi2_0.h``, ``dsdt.asl``)
and the ACPI 2.0 specification (5.2 "ACPI System Description Tables",
16 "ACPI Source Language Reference", 17 "ACPI Machine Language
Specification").

**Where.** hvmloader called ``acpi_build_tables(0xEA000)``
(``ACPI_PHYSICAL_ADDRESS``) and asserted that the tables end at or below
``0xF0000``, where it had copied rombios. They follow one another, each
starting on a 16-byte boundary, in hvmloader's order:

=====  ===========================================================
table  what it says
=====  ===========================================================
FACS   signature and length only (no waking vector: no S3)
DSDT   the AML below
FADT   revision 3: where the PM1a blocks and the PM timer are, the
       SCI's line, the DSDT and FACS (32- and 64-bit pointers)
XSDT   revision 1: one 64-bit entry, the FADT
RSDT   revision 1: one 32-bit entry, the FADT
RSDP   last: revision 2, the RSDT's and the XSDT's addresses, the
       ACPI 1.0 checksum (first 20 bytes) and the extended one (36)
=====  ===========================================================

The OS finds the RSDP by scanning ``0xE0000``-``0xFFFFF`` on 16-byte
boundaries for ``"RSD PTR "`` (ACPI 2.0, 5.2.4.1); no BIOS call is
involved, so the BIOS need not know the tables are there. Every table but
the FACS (which has no checksum field) sums to 0 modulo 256.

**Identity.** Every table's header carries hvmloader's IDs: OEM ``"INTEL "``,
OEM table ID ``" TBD"`` (``ASCII32(' ','T','B','D')`` in a 64-bit field:
four NULs follow), OEM revision 2, creator ID 0, creator revision 2. The
DSDT's header is that of hvmloader's compiled ``dsdt.asl``
(``DefinitionBlock ("DSDT.aml", "DSDT", 1, "INTEL", "int-xen", 2006)``,
creator ``"INTL"`` revision ``0x20050513``, the iasl that built it), so an
OS that keys quirks on these IDs sees Xen 3.0.4's.

**The FADT** (``static_tables.c``): SCI on IRQ 9
(:data:`spec.platform.IRQ_SCI`); PM1a event block at
:data:`spec.platform.ACPI_PM1A_EVT_BLK` (4 bytes), PM1a control block at
:data:`spec.platform.ACPI_PM1A_CNT_BLK` (2 bytes), PM timer at
:data:`spec.platform.ACPI_PM_TMR_BLK` (4 bytes), each also as a SystemIO
generic address (``X_PM1a_EVT_BLK`` ...); no SMI command port (SCI_EN is
set from reset: :mod:`spec.devices.acpi`), no PM1b, PM2 or GPE blocks;
``P_LVL2_LAT`` and ``P_LVL3_LAT`` 0x0FFF (no C2, no C3); boot
architecture flags LEGACY_DEVICES | 8042; feature flags WBINVD, PROC_C1,
PWR_BUTTON, SLP_BUTTON, FIX_RTC and TMR_VAL_EXT (the PM timer is 32 bits
wide, as Xen's is: :mod:`spec.devices.pmtimer`); ``RESET_REG`` SystemIO
byte at :data:`spec.platform.PIIX3_RCR_PORT` with ``RESET_VALUE`` 6 (but
RESET_REG_SUP clear, as hvmloader left it, so an OS does not use it);
``CENTURY`` 0.

**The DSDT** is AML assembled here by a small builder (:func:`aml_name`,
:func:`aml_package`, ...; no ASL compiler at run time). It holds what an
OS needs from hvmloader's ``dsdt.asl`` to find the processor and the PCI
root and to power the domain off:

* ``\\_PR.CPU0`` ... ``CPU3``: ``Processor`` objects, IDs 0-3, no P_BLK
  (hvmloader declared four whatever the vcpu count);
* ``\\_S5``: ``Package {7, 7, 0, 0}`` ("Poweroff support - ties in with
  qemu emulation"): SLP_TYPa and SLP_TYPb of S5 are
  :data:`spec.platform.SLP_TYP_S5`, the sleep type qemu-dm's PM1a_CNT
  takes for power off (:mod:`spec.devices.acpi`), so an OS that writes
  ``SLP_TYPa << 10 | SLP_EN`` to the FADT's PM1a control block powers the
  domain off;
* ``PICD`` and ``\\_PIC(1)``, which stores its argument there (the OS
  says whether it routes interrupts through the PIC or the APIC);
* ``\\_SB.PCI0``: the PCI root bridge, ``_HID`` EISAID ``PNP0A03``,
  ``_UID``, ``_ADR`` and ``_BBN`` 0.

The objects it shares with hvmloader's DSDT are byte for byte those of
hvmloader's compiled ``dsdt.c`` (names at the root are written as iasl
writes them, without the root prefix ``\\``, which the definition block's
scope makes the same name).

Left out of the DSDT, each something an OS can do without: hvmloader's
unused ``PMBS``/``PMLN``/``IOB1``/``IOL1``/``APCB``/``APCL``/``PUID``
names, ``\\_SB.MEM0``, ``PCI0._CRS`` (the OS then takes the PC's
default windows), the PCI interrupt links ``LNKA``-``LNKD`` and ``_PRT``
(the OS then uses the interrupt line the BIOS wrote in each function's
configuration space) and the ISA device objects.

**What hvmloader built that the builder does not**, and why:

* **No MADT.** hvmloader built one only for ``(vcpus > 1) || apic``
  (``construct_secondary_tables``); the model has one vcpu and no local
  APIC or I/O APIC (CPUID says so: :mod:`spec.cpuid`), which is the case
  hvmloader left the MADT out of. No SSDT/TCPA either: those came only
  with a virtual TPM.
* **No MP tables.** ``create_mp_tables`` ran on the same condition as the
  MADT, and wrote into the slot Xen's patched rombios reserved
  (``___HVMMP``), which Debian's rombios does not have.
* **No SMBIOS tables.** hvmloader wrote them at ``0x9F000`` for Xen's
  rombios to find; Debian's rombios (its rombios32) and SeaBIOS build
  their own.
* **No e820 page.** In 3.0.4 libxc, not hvmloader, wrote the memory map at
  ``0x90000``, and only Xen's patched rombios read it; Debian's firmware
  asks the CMOS (:mod:`spec.devices.cmos`).

**Which BIOS gets them** (:func:`spec.hvmloader.load_firmware`): only a
64 KiB BIOS, which sits at ``0xF0000``-``0xFFFFF`` as hvmloader's rombios
did, leaving ``0xEA000`` free. A 128 KiB BIOS fills ``0xE0000``-``0xFFFFF``
and the tables cannot go at ``0xEA000`` without overwriting it: then the
builder writes none. That is SeaBIOS, and Debian's ``BIOS-bochs-latest``
(rombios with rombios32 in its lower 64 KiB); both build their own ACPI
tables from the PIIX4 PM function (:mod:`spec.devices.pci`), and later
Xen's hvmloader, which loads SeaBIOS, passes its tables another way: in a
list at ``0x1000`` under the signature ``XenHVMSeaBIOS``
(``tools/firmware/hvmloader/seabios.c``) that SeaBIOS copies from.

Debian's ``BIOS-bochs-legacy`` is the 64 KiB rombios without rombios32,
like the rombios Xen 3.0.4 carried, which built no ACPI tables of its own:
with it the guest sees hvmloader's tables and no others. Had a BIOS with
tables of its own been there too, an OS scanning upward would still find
these first: rombios32 puts its RSDP in its table area in the ``0xF0000``
segment (``0xF9FA0`` with Debian's ``BIOS-bochs-latest``, its log says),
above ``0xEA000``.
"""

from __future__ import annotations

import struct

from spec import platform

# --- AML (ACPI 2.0, 17: "ACPI Machine Language Specification") ---------------------

ZERO_OP, ONE_OP, ONES_OP = 0x00, 0x01, 0xFF
BYTE_PREFIX, WORD_PREFIX, DWORD_PREFIX, STRING_PREFIX = 0x0A, 0x0B, 0x0C, 0x0D
NAME_OP, SCOPE_OP, PACKAGE_OP, METHOD_OP, STORE_OP = 0x08, 0x10, 0x12, 0x14, 0x70
EXT_OP_PREFIX, DEVICE_OP, PROCESSOR_OP = 0x5B, 0x82, 0x83
ARG0_OP = 0x68
ROOT_CHAR, DUAL_NAME_PREFIX, MULTI_NAME_PREFIX = 0x5C, 0x2E, 0x2F


def aml_pkg_length(body: int) -> bytes:
    """PkgLength (17.2.4) of a package whose contents after it are ``body``
    bytes: the length counts its own encoding. One byte up to 63; else a
    lead byte (bits 7:6 the number of bytes that follow, bits 3:0 the low
    nibble) and 1-3 bytes of the rest, least significant first."""
    if body + 1 < 0x40:
        return bytes([body + 1])
    for extra in (1, 2, 3):
        total = body + 1 + extra
        if total < 1 << (4 + 8 * extra):
            return bytes([extra << 6 | total & 0x0F]) + (total >> 4).to_bytes(extra, "little")
    raise ValueError(f"an AML package of {body} bytes is longer than PkgLength can say")


def aml_name_seg(seg: str) -> bytes:
    """A NameSeg: 1-4 characters (a leading letter or ``_``, then letters,
    digits, ``_``), padded with ``_`` to 4."""
    if not 1 <= len(seg) <= 4 or not (seg[0].isupper() or seg[0] == "_") or not all(
            c.isupper() or c.isdigit() or c == "_" for c in seg):
        raise ValueError(f"{seg!r} is not an ACPI name segment")
    return seg.ljust(4, "_").encode("ascii")


def aml_name_string(path: str) -> bytes:
    """A NameString: an optional root ``\\``, then segments separated by
    ``.`` (one segment as it is, two after DualNamePrefix, more after
    MultiNamePrefix and their count)."""
    root = path.startswith("\\")
    segs = [aml_name_seg(s) for s in path.lstrip("\\").split(".")]
    prefix = bytes([ROOT_CHAR]) if root else b""
    if len(segs) == 1:
        return prefix + segs[0]
    if len(segs) == 2:
        return prefix + bytes([DUAL_NAME_PREFIX]) + b"".join(segs)
    return prefix + bytes([MULTI_NAME_PREFIX, len(segs)]) + b"".join(segs)


def aml_integer(value: int) -> bytes:
    """The shortest encoding of an integer, as iasl writes it: ZeroOp,
    OneOp, or BytePrefix, WordPrefix, DWordPrefix and the value. (A
    revision-1 DSDT has 32-bit integers.)"""
    if value == 0:
        return bytes([ZERO_OP])
    if value == 1:
        return bytes([ONE_OP])
    for prefix, size in ((BYTE_PREFIX, 1), (WORD_PREFIX, 2), (DWORD_PREFIX, 4)):
        if 0 <= value < 1 << 8 * size:
            return bytes([prefix]) + value.to_bytes(size, "little")
    raise ValueError(f"{value:#x} does not fit a 32-bit AML integer")


def eisa_id(text: str) -> int:
    """ASL's ``EISAID("PNP0A03")``: three letters of 5 bits each and four
    hex digits, stored big-endian, read as a little-endian dword."""
    if len(text) != 7 or not text[:3].isupper() or not text[:3].isalpha():
        raise ValueError(f"{text!r} is not an EISA ID (three capitals, four hex digits)")
    letters = sum((ord(c) - 0x40) << 10 - 5 * i for i, c in enumerate(text[:3]))
    return int.from_bytes(letters.to_bytes(2, "big") + int(text[3:], 16).to_bytes(2, "big"),
                          "little")


def aml_name(path: str, value: bytes) -> bytes:
    """``Name (path, value)``: DefName."""
    return bytes([NAME_OP]) + aml_name_string(path) + value


def aml_package(*elements: bytes) -> bytes:
    """``Package () {elements}``: DefPackage with its element count."""
    body = bytes([len(elements)]) + b"".join(elements)
    return bytes([PACKAGE_OP]) + aml_pkg_length(len(body)) + body


def aml_scope(path: str, *terms: bytes) -> bytes:
    """``Scope (path) {terms}``."""
    body = aml_name_string(path) + b"".join(terms)
    return bytes([SCOPE_OP]) + aml_pkg_length(len(body)) + body


def aml_device(path: str, *terms: bytes) -> bytes:
    """``Device (path) {terms}``."""
    body = aml_name_string(path) + b"".join(terms)
    return bytes([EXT_OP_PREFIX, DEVICE_OP]) + aml_pkg_length(len(body)) + body


def aml_processor(path: str, proc_id: int, pblk_address: int, pblk_length: int) -> bytes:
    """``Processor (path, proc_id, pblk_address, pblk_length) {}``."""
    body = (aml_name_string(path) + bytes([proc_id]) + pblk_address.to_bytes(4, "little")
            + bytes([pblk_length]))
    return bytes([EXT_OP_PREFIX, PROCESSOR_OP]) + aml_pkg_length(len(body)) + body


def aml_method(path: str, args: int, *terms: bytes) -> bytes:
    """``Method (path, args, NotSerialized) {terms}``."""
    body = aml_name_string(path) + bytes([args & 7]) + b"".join(terms)
    return bytes([METHOD_OP]) + aml_pkg_length(len(body)) + body


def aml_store(source: bytes, target: str) -> bytes:
    """``Store (source, target)``, the target a name."""
    return bytes([STORE_OP]) + source + aml_name_string(target)


def dsdt_body() -> bytes:
    """The DSDT's definition block (module docstring), after its header."""
    s5 = platform.SLP_TYP_S5
    return b"".join([
        aml_scope("_PR", *(aml_processor(f"CPU{i}", i, 0, 0) for i in range(4))),
        aml_name("_S5", aml_package(aml_integer(s5), aml_integer(s5),
                                      aml_integer(0), aml_integer(0))),
        aml_name("PICD", aml_integer(0)),
        aml_method("_PIC", 1, aml_store(bytes([ARG0_OP]), "PICD")),
        aml_scope("_SB", aml_device(
            "PCI0",
            aml_name("_HID", aml_integer(eisa_id("PNP0A03"))),
            aml_name("_UID", aml_integer(0)),
            aml_name("_ADR", aml_integer(0)),
            aml_name("_BBN", aml_integer(0)))),
    ])


# --- the tables (acpi2_0.h, static_tables.c, build.c) -----------------------------

HEADER_SIZE = 36
CHECKSUM_OFFSET = 9
OEM_ID = b"INTEL "
OEM_TABLE_ID = b" TBD" + bytes(4)          # ASCII32(' ','T','B','D') in a uint64_t
OEM_REVISION = 2
CREATOR_ID = bytes(4)                      # "TBD": 0
CREATOR_REVISION = 2
# the DSDT's header: dsdt.asl's DefinitionBlock and the iasl that compiled it (dsdt.c)
DSDT_REVISION = 1
DSDT_OEM_TABLE_ID = b"int-xen\0"
DSDT_OEM_REVISION = 2006
DSDT_CREATOR_ID = b"INTL"
DSDT_CREATOR_REVISION = 0x20050513

FACS_SIZE, FACS_VERSION = 64, 1
FADT_SIZE, FADT_REVISION = 244, 3
RSDT_REVISION = XSDT_REVISION = 1
RSDP_SIZE, RSDP_V1_SIZE, RSDP_REVISION = 36, 20, 2

SYSTEM_IO = 1                              # generic address space ID
# FADT boot architecture flags and fixed feature flags
BOOT_LEGACY_DEVICES, BOOT_8042 = 1 << 0, 1 << 1
WBINVD, PROC_C1, PWR_BUTTON, SLP_BUTTON = 1 << 0, 1 << 2, 1 << 4, 1 << 5
FIX_RTC, TMR_VAL_EXT = 1 << 6, 1 << 8
FADT_FLAGS = WBINVD | PROC_C1 | PWR_BUTTON | SLP_BUTTON | FIX_RTC | TMR_VAL_EXT
NO_C2_C3_LATENCY = 0x0FFF                  # > 100 (C2) and > 1000 (C3): not supported
RESET_VALUE = 0x06                         # PIIX3 RC: reset CPU (bit 2) | hard reset (bit 1)
PM1_EVT_LEN, PM1_CNT_LEN, PM_TMR_LEN = 4, 2, 4


def align16(n: int) -> int:
    return (n + 15) & ~15


def with_checksum(table: bytes, offset: int = CHECKSUM_OFFSET, length: int | None = None
                  ) -> bytes:
    """``table`` with the byte at ``offset`` set so that its first
    ``length`` bytes (all of it by default) sum to 0 modulo 256."""
    length = len(table) if length is None else length
    data = bytearray(table)
    data[offset] = 0
    data[offset] = -sum(data[:length]) & 0xFF
    return bytes(data)


def table_header(signature: bytes, length: int, revision: int, oem_table_id: bytes = OEM_TABLE_ID,
                 oem_revision: int = OEM_REVISION, creator_id: bytes = CREATOR_ID,
                 creator_revision: int = CREATOR_REVISION) -> bytes:
    """The 36-byte header every description table starts with (checksum 0
    until :func:`with_checksum`)."""
    return (signature + struct.pack("<IBB", length, revision, 0) + OEM_ID + oem_table_id
            + struct.pack("<I", oem_revision) + creator_id + struct.pack("<I", creator_revision))


def generic_address(address: int, bit_width: int, space: int = SYSTEM_IO) -> bytes:
    """An ACPI 2.0 Generic Address Structure (5.2.3.1): space, bit width,
    bit offset 0, reserved, 64-bit address."""
    return struct.pack("<BBBBQ", space, bit_width, 0, 0, address)


def facs() -> bytes:
    """The FACS: signature, length, version; the rest 0."""
    return (b"FACS" + struct.pack("<I", FACS_SIZE) + bytes(24) + bytes([FACS_VERSION])
            + bytes(31))


def dsdt() -> bytes:
    body = dsdt_body()
    header = table_header(b"DSDT", HEADER_SIZE + len(body), DSDT_REVISION, DSDT_OEM_TABLE_ID,
                          DSDT_OEM_REVISION, DSDT_CREATOR_ID, DSDT_CREATOR_REVISION)
    return with_checksum(header + body)


def fadt(facs_address: int, dsdt_address: int) -> bytes:
    """The FADT of ``static_tables.c``, pointing at the FACS and the DSDT."""
    evt, cnt, tmr = platform.ACPI_PM1A_EVT_BLK, platform.ACPI_PM1A_CNT_BLK, \
        platform.ACPI_PM_TMR_BLK
    body = b"".join([
        struct.pack("<II", facs_address, dsdt_address),
        struct.pack("<BBH", 0, 0, platform.IRQ_SCI),    # reserved, PM profile, SCI_INT
        struct.pack("<IBBBB", 0, 0, 0, 0, 0),           # SMI_CMD, ACPI_ENABLE/DISABLE, ...
        struct.pack("<8I", evt, 0, cnt, 0, 0, tmr, 0, 0),
        struct.pack("<8B", PM1_EVT_LEN, PM1_CNT_LEN, 0, PM_TMR_LEN, 0, 0, 0, 0),
        struct.pack("<HHHH", NO_C2_C3_LATENCY, NO_C2_C3_LATENCY, 0, 0),
        struct.pack("<5B", 0, 0, 0, 0, 0),              # duty cycle, alarms, CENTURY
        struct.pack("<HBI", BOOT_LEGACY_DEVICES | BOOT_8042, 0, FADT_FLAGS),
        generic_address(platform.PIIX3_RCR_PORT, 8), struct.pack("<B3x", RESET_VALUE),
        struct.pack("<QQ", facs_address, dsdt_address),
        generic_address(evt, 8 * PM1_EVT_LEN), bytes(12),
        generic_address(cnt, 8 * PM1_CNT_LEN), bytes(12),
        bytes(12),                                      # X_PM2_CNT_BLK
        generic_address(tmr, 8 * PM_TMR_LEN), bytes(24),
    ])
    assert HEADER_SIZE + len(body) == FADT_SIZE
    return with_checksum(table_header(b"FACP", FADT_SIZE, FADT_REVISION) + body)


def rsdt(entries: list[int]) -> bytes:
    length = HEADER_SIZE + 4 * len(entries)
    return with_checksum(table_header(b"RSDT", length, RSDT_REVISION)
                         + struct.pack(f"<{len(entries)}I", *entries))


def xsdt(entries: list[int]) -> bytes:
    length = HEADER_SIZE + 8 * len(entries)
    return with_checksum(table_header(b"XSDT", length, XSDT_REVISION)
                         + struct.pack(f"<{len(entries)}Q", *entries))


def rsdp(rsdt_address: int, xsdt_address: int) -> bytes:
    """The RSDP, revision 2: its first 20 bytes (ACPI 1.0's) sum to 0, and
    all 36 do."""
    data = (b"RSD PTR " + bytes([0]) + OEM_ID + bytes([RSDP_REVISION])
            + struct.pack("<IIQB3x", rsdt_address, RSDP_SIZE, xsdt_address, 0))
    data = with_checksum(data, 8, RSDP_V1_SIZE)
    return with_checksum(data, 32, RSDP_SIZE)


def build(base: int = platform.ACPI_TABLES_ADDRESS) -> bytes:
    """The tables as ``acpi_build_tables(base)`` lays them out: FACS, DSDT,
    FADT, XSDT, RSDT, RSDP, each from a 16-byte boundary (the gaps 0);
    the bytes to place at ``base``."""
    out = bytearray()

    def put(table: bytes) -> int:
        address = base + len(out)
        out.extend(table.ljust(align16(len(table)), b"\0"))
        return address

    facs_at = put(facs())
    dsdt_at = put(dsdt())
    fadt_at = put(fadt(facs_at, dsdt_at))
    xsdt_at = put(xsdt([fadt_at]))
    rsdt_at = put(rsdt([fadt_at]))
    put(rsdp(rsdt_at, xsdt_at))
    if base + len(out) > platform.ACPI_TABLES_END:
        raise ValueError(f"the ACPI tables ({len(out):,} bytes from {base:#x}) reach past "
                         f"{platform.ACPI_TABLES_END:#x}, where the BIOS starts")
    return bytes(out)
