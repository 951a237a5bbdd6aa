"""The CMOS RAM behind ports 0x70/0x71, as Xen 3.0.4's qemu-dm emulates it.

Room: qemu-dm's 128 bytes of CMOS and their index register, and the bytes
``cmos_init`` writes there for the BIOS. Imports :mod:`spec.platform`. The
clock and its interrupt are Xen's (:mod:`spec.devices.rtc`).

Where it lives. Xen 3.0.4's qemu-dm does not build QEMU's MC146818
(``mc146818rtc.o`` is not linked for x86): ``rtc_init(0x70, 8)`` in
``pc_init1`` is ``tools/ioemu/target-i386-dm/rtc-dm.c``, plain RAM::

    static void cmos_ioport_write(void *opaque, uint32_t addr, uint32_t data)
    {
        if ((addr & 1) == 0) {
            s->cmos_index = data & 0x7f;
        } else {
            s->cmos_data[s->cmos_index] = data;
        }
    }

and a read of 0x70 gives 0xFF, a read of 0x71 ``cmos_data[cmos_index]``;
``rtc_set_date`` is empty. Xen claims ports 0x70/0x71 first
(:mod:`spec.devices.rtc`) and passes an access on to qemu-dm (an ioreq)
only when its own index, the last one written to 0x70, is 0x0E or above:
so qemu-dm sees every index write of 0x0E-0x7F (bit 7, the NMI mask, is
dropped by both), never one below, and every data access to the bytes from
0x0E on. Its copies of 0x00-0x0D are never read.

The bytes ``cmos_init`` (``tools/ioemu/hw/pc.c``) writes, for the domain's
memory, boot order and clock base:

* the century, in BCD, at 0x32 and 0x37 (``REG_IBM_CENTURY_BYTE``,
  ``REG_IBM_PS2_CENTURY_BYTE``), of the domain's ``rtc_base``: written once
  at start-up, it does not follow Xen's clock (:func:`century_bytes`);
* the memory sizes (:func:`cmos_memory_bytes`; RAM below 4 GiB ends at
  :data:`spec.platform.HVM_BELOW_4G_RAM_END` on Xen): 0x15/0x16 base memory
  in KiB (at most 640), 0x17/0x18 and 0x30/0x31 KiB above 1 MiB (at most
  0xFFFF), 0x34/0x35 64 KiB blocks above 16 MiB (at most 0xFFFF), 0x5B-0x5D
  64 KiB blocks above 4 GiB (the model's addition: 3.0.4 wrote none);
* the BIOS's configuration bytes (:func:`cmos_config_bytes`): the boot order
  at 0x3D (first device in bits 3:0, second in 7:4) and 0x38 (third in bits
  7:4; bit 0 set would skip the floppy boot signature check, which qemu-dm
  leaves clear), in the codes 1 floppy, 2 hard disk, 3 CD-ROM
  (``get_bios_disk``); the equipment byte 0x14 = 0x06 (an FPU, a PS/2 mouse,
  no floppy drive, EGA/VGA display); 0x10 (floppy types) 0: the platform
  has no floppy controller. rombios reads 0x3D and 0x38 to choose where it
  boots from: with 0 there it tries nothing;
* the drives (:func:`cmos_disk_bytes`), from the IDE drives as
  ``ide_init2`` set them up (:meth:`spec.devices.ide.IdeController.bios_geometries`):
  every configured drive counts, a CD-ROM, empty or not, as much as a disk
  (``bs_table``). 0x12, the hard disk types: 0xF0 with a drive at hda, 0x0F
  with one at hdb; 0x19 (hda) and 0x1A (hdb), the extended type, 47 (user
  defined); hda's parameters at 0x1B-0x23, hdb's at 0x24-0x2C
  (``cmos_init_hd``): cylinders (two bytes, little-endian), heads, write
  precompensation 0xFFFF, the control byte 0xC0 (bit 3 set for more than 8
  heads), the landing zone (the cylinders again, two bytes), sectors per
  track; 0x39, two bits a drive (hda in bits 1:0 .. hdd in bits 7:6), the
  BIOS translation: 0 none, 1 LBA. A drive whose geometry came from its MBR
  has none; one with the default geometry has none up to 1024 cylinders and
  LBA above. rombios's ATA driver takes the translation from 0x39 for the
  logical geometry INT 13h shows (its log prints ``translation=none`` or
  ``lba``); the rest serves BIOSes without one.

  QEMU 7.2's ``pc_cmos_init_late`` writes the same bytes for hard disks but
  leaves CD-ROMs out (``ide_get_geometry`` fails for one: no 0x12 bits, no
  translation bits for a CD-ROM, even one of more than 1024 default
  cylinders); and where an MBR's partitions end on more than 16 heads (a
  translating BIOS wrote them) both take the default geometry, but QEMU's
  ``hd_geometry_guess`` then picks LARGE translation (2) while cylinders x
  heads <= 131072, where Xen 3.0.4 picks none or LBA by the cylinders.

Every other byte starts at 0 and is the guest's RAM to write.
"""

from __future__ import annotations

import time

from spec import platform

#: where the BIOS expects the century (``REG_IBM_CENTURY_BYTE``,
#: ``REG_IBM_PS2_CENTURY_BYTE``)
CENTURY_BYTES = (platform.RTC_CENTURY, 0x37)


def cmos_memory_bytes(memory: int) -> dict[int, int]:
    """The memory-size bytes of CMOS for a domain of ``memory`` bytes."""
    below = min(memory, platform.HVM_BELOW_4G_RAM_END)
    above = memory - below
    base = min(below // 1024, 640)
    ext = min((below - (1 << 20)) // 1024 if below > 1 << 20 else 0, 0xFFFF)
    high = min((below - (16 << 20)) // 65536 if below > 16 << 20 else 0, 0xFFFF)
    top = above // 65536
    return {0x15: base & 0xFF, 0x16: base >> 8 & 0xFF,
            0x17: ext & 0xFF, 0x18: ext >> 8, 0x30: ext & 0xFF, 0x31: ext >> 8,
            0x34: high & 0xFF, 0x35: high >> 8,
            0x5B: top & 0xFF, 0x5C: top >> 8 & 0xFF, 0x5D: top >> 16 & 0xFF}


#: the equipment byte: FPU (bit 1), PS/2 mouse (bit 2); no floppy (bits 0, 7:6)
EQUIPMENT = 0x02 | 0x04


def cmos_config_bytes(boot: str) -> dict[int, int]:
    """The BIOS's configuration bytes for the boot order ``boot`` (module
    docstring)."""
    codes = [platform.BOOT_DEVICES[c] for c in boot] + [0, 0]
    return {0x3D: codes[0] | codes[1] << 4, 0x38: codes[2] << 4,
            0x10: 0, 0x14: EQUIPMENT}


#: rombios's BIOS translations (``ATA_TRANSLATION_NONE``, ``_LBA``)
TRANSLATION_NONE, TRANSLATION_LBA = 0, 1


def cmos_disk_bytes(drives: list[tuple[int, int, int, str] | None]) -> dict[int, int]:
    """The drive bytes for ``drives``, hda .. hdd, each None or (cylinders,
    heads, sectors, translation hint ``auto`` or ``none``) (module
    docstring)."""
    out = {0x12: (0xF0 if drives[0] else 0) | (0x0F if drives[1] else 0)}
    for drive, type_at, info_at in ((drives[0], 0x19, 0x1B), (drives[1], 0x1A, 0x24)):
        if drive is not None:
            cylinders, heads, sectors, _hint = drive
            params = [cylinders & 0xFF, cylinders >> 8 & 0xFF, heads, 0xFF, 0xFF,
                      0xC0 | (heads > 8) << 3, cylinders & 0xFF, cylinders >> 8 & 0xFF, sectors]
            out[type_at] = 47
            out.update(zip(range(info_at, info_at + 9), params))
    translations = 0
    for i, drive in enumerate(drives):
        if drive is not None:
            cylinders, heads, sectors, hint = drive
            if hint == "none" or (cylinders <= 1024 and heads <= 16 and sectors <= 63):
                translation = TRANSLATION_NONE
            else:
                translation = TRANSLATION_LBA
            translations |= translation << 2 * i
    out[0x39] = translations
    return out


def century_bytes(base: int) -> dict[int, int]:
    """``to_bcd((tm->tm_year / 100) + 19)`` of the time ``base`` (seconds
    since the epoch, UTC), at both century bytes."""
    century = time.gmtime(base).tm_year // 100
    value = (century // 10) << 4 | century % 10
    return {index: value for index in CENTURY_BYTES}


class Cmos:
    """qemu-dm's ``rtc-dm.c`` for one domain."""

    name = "cmos"
    sizes = (1,)

    def __init__(self, memory: int, base: int = platform.RTC_DEFAULT_BASE,
                 boot: str = "c",
                 drives: list[tuple[int, int, int, str] | None] | None = None) -> None:
        self.cmos_data = bytearray(platform.RTC_CMOS_SIZE)
        for index, value in {**century_bytes(base), **cmos_memory_bytes(memory),
                             **cmos_config_bytes(boot),
                             **cmos_disk_bytes(drives or [None] * 4)}.items():
            self.cmos_data[index] = value
        self.cmos_index = 0

    def io_read(self, offset: int, size: int) -> int:
        if offset == 0:
            return 0xFF
        return self.cmos_data[self.cmos_index]

    def io_write(self, offset: int, size: int, value: int) -> None:
        if offset == 0:
            self.cmos_index = value & 0x7F
        else:
            self.cmos_data[self.cmos_index] = value & 0xFF
