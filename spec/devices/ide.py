"""The PIIX3 IDE controller's two channels and their ATA drives, as qemu-dm emulates them.

Room: the ATA task-file registers of the two legacy channels, the drives
behind them (hard disks and the ATA side of ATAPI CD-ROMs), the ATA
commands, PIO data transfer through the data register, the device control
register (SRST, nIEN) and IRQ14/IRQ15. The ATAPI packet commands are
:mod:`spec.devices.atapi`'s, bus-master DMA is :mod:`spec.devices.bmdma`'s,
the PCI function (00:01.1, 8086:7010) is :mod:`spec.devices.pci`'s.
Sources: Xen 3.0.4's ``tools/ioemu/hw/ide.c`` (QEMU 0.8.2 as qemu-dm
carries it: the model follows it statement by statement), ATA/ATAPI-6
(T13/1410D) for the register and command definitions, and QEMU 7.2's
``hw/ide/core.c`` (the peer the tests run) where it differs; each
difference is written down here. Imports :mod:`spec.platform`.

Ports. Channel 0 (primary) at 0x1F0-0x1F7 with its control register at
0x3F6 drives IRQ14; channel 1 (secondary) at 0x170-0x177 and 0x376, IRQ15.
They are hard-wired (``prog-if`` 0x80: both channels in compatibility mode).

=======  ==============================  ===================================
offset   read                            write
=======  ==============================  ===================================
0        data (word or dword only; a     data (word or dword only; a byte
         byte reads 0xFF)                is dropped)
1        error                           features
2        sector count                    sector count
3        sector number (LBA 7:0)         sector number
4        cylinder low (LBA 15:8)         cylinder low
5        cylinder high (LBA 23:16)       cylinder high
6        device/head                     device/head
7        status (lowers the IRQ)         command
ctl      alternate status                device control
=======  ==============================  ===================================

A word at offsets 1-7 is two byte accesses, a dword there reads all-ones
and is dropped (QEMU 0.8's ``default_ioport_readw``/``readl``: only offset
0 has word and dword handlers).

Each channel holds two drives, master (0) and slave (1), each with its own
copy of the task file. A write to offsets 1-5 goes to both drives; the
value each held before is kept as its *HOB* ("high order byte", for 48-bit
commands). Offset 6 selects the drive (bit 4) and is stored in both, with
bits 7 and 5 forced to 1 and bit 4 set to the drive's own number. Reads
come from the selected drive; with no drive at all on the channel, offsets
1-7 and the alternate status read 0; with the slave selected and absent,
the status reads 0 (the other registers read the slave's copy). A command
written while an absent slave is selected is ignored.

Status bits: BSY 0x80, DRDY 0x40, DSC 0x10, DRQ 0x08, ERR 0x01; error bits:
ABRT 0x04 (aborted command), and after reset or diagnostics the diagnostic
code 0x01. An aborted command (an unknown opcode among them) leaves status
DRDY|ERR (0x41) and error ABRT, and raises the interrupt.

Interrupts. A drive *raises* its channel's line when a command completes
or a data block is ready (``ide_set_irq``), unless nIEN (device control bit
1) is set; reading the status register (offset 7, not the alternate
status) lowers it. Both drives of a channel share the line; qemu-dm's
``set_irq`` hears of the line only when its level changes (Xen 3.0.4
called it at every status read; a call that changes nothing has no effect
there). Xen 3.0.4
never lowers the line otherwise: not on nIEN, not on SRST (QEMU 7.2 does
on both).

Device control (``ide_cmd_write``). Bit 2 (SRST) going 0 to 1 puts both
drives in BSY|DSC (0x90), error 0x01; going 1 to 0 leaves a disk DRDY|DSC
(0x50), a CD-ROM 0x00, and each drive's signature (sector count 1, sector
1, cylinder 0x0000 for a disk, 0xEB14 for a CD-ROM, 0xFFFF with no medium
object; head 0). SRST does not stop a transfer in progress, nor reset the
multiple count (Xen 3.0.4; QEMU 7.2 does both).

Data register. A transfer moves a buffer of the drive through the data
register, two or four bytes an access; when the last byte has moved the
drive does what the command said comes next (the next block, the end of
the command). Outside a transfer the register still reads the first bytes
of the drive's buffer (0xFFFF after reset; after a command that moved
data, the first bytes it moved) and each access re-runs the end of the
last transfer (Xen 3.0.4; QEMU 7.2 reads 0 and ignores writes while DRQ is
clear). A string access (``rep insw``: one ioreq of ``count`` words) is
``count`` such accesses.

After a PIO block that failed (a read or write aborted part-way), the
drive's next step stays the block's end and the pointer is not reset: each
further data access moves it on and runs that step again. qemu-dm then
reads and writes past the end of its buffer (``io_buffer``, 16 sectors and
4 bytes) into the rest of the drive's state, a qemu-dm bug with no defined
result. The model keeps the pointer moving: a read past the buffer's
current end gives 0 for the bytes that are not there, a write there
appends its bytes to the buffer (Python's ``bytearray`` slice assignment);
nothing of it reaches the image or guest memory.

ATA commands (hard disk; the commands a CD-ROM answers as well are said):

====  =======================  ===============================================
code  command                  effect
====  =======================  ===============================================
0x20  READ SECTORS (0x21)      PIO in, one sector a DRQ block
0x24  READ SECTORS EXT         the same, 48-bit address and count
0x29  READ MULTIPLE EXT        as 0xC4, 48-bit
0x30  WRITE SECTORS (0x31)     PIO out, one sector a block
0x34  WRITE SECTORS EXT        48-bit
0x39  WRITE MULTIPLE EXT       as 0xC5, 48-bit
0x40  READ VERIFY (0x41)       completes at once, no check of the address
0x42  READ VERIFY EXT          48-bit
0x10  RECALIBRATE              completes (DRDY|DSC)
0x91  INITIALIZE DEVICE        completes (DRDY|DSC); the geometry is kept
      PARAMETERS
0xC4  READ MULTIPLE            PIO in, the multiple count a block (ABRT
                               while it is 0)
0xC5  WRITE MULTIPLE           PIO out, the same
0xC6  SET MULTIPLE MODE        count 1, 2, 4, 8 or 16 (else ABRT)
0xC8  READ DMA (0xC9)          bus-master DMA to memory
0x25  READ DMA EXT             48-bit
0xCA  WRITE DMA (0xCB)         bus-master DMA from memory
0x35  WRITE DMA EXT            48-bit
0xF8  READ NATIVE MAX ADDRESS  the address of the last sector (0x27: EXT)
0xE5  CHECK POWER MODE         sector count 0xFF (active)
0xEF  SET FEATURES             0x02/0x82 write cache on/off, 0xAA/0x55 look
                               ahead, 0x03 transfer mode (PIO, MDMA, UDMA:
                               IDENTIFY words 63 and 88 then show it); else
                               ABRT
0xE7  FLUSH CACHE (0xEA EXT)   completes
0xE0  STANDBY IMMEDIATE        completes (0xE1 IDLE IMMEDIATE too)
0xEC  IDENTIFY DEVICE          PIO in, 256 words; on a CD-ROM: ABRT and the
                               signature (how ATAPI drives are found)
0xA1  IDENTIFY PACKET DEVICE   CD-ROM: PIO in, 256 words; a disk: ABRT
0x90  EXECUTE DIAGNOSTICS      signature, status 0, error 0x01, no interrupt
0x08  DEVICE RESET             CD-ROM: as 0x90; a disk: ABRT
0xA0  PACKET                   CD-ROM (:mod:`spec.devices.atapi`); disk: ABRT
====  =======================  ===============================================

Any other opcode aborts, SEEK (0x70) among them: Xen 3.0.4 has no SEEK
(QEMU 7.2 completes it). QEMU 7.2 also aborts the read, write and verify
commands on a CD-ROM; Xen 3.0.4 runs them on the CD image's 512-byte
sectors. EXECUTE DIAGNOSTICS raises no interrupt in Xen 3.0.4 (ATA says
it does; QEMU 7.2 does).

Addressing (``ide_get_sector``): with device/head bit 6 (LBA) clear, CHS:
``(cylinder * heads + head) * sectors + sector - 1`` with the drive's
geometry; with it set, LBA28 (``head`` bits 3:0 are LBA 27:24) or, for the
EXT commands, LBA48 from the current and HOB bytes of sector number and
cylinder. A sector count of 0 means 256 (65536 for EXT, when the HOB count
is 0 too). After each block the address registers show the next sector.
An access that does not lie wholly inside the medium aborts (ABRT) and
never reaches the image: Xen 3.0.4's raw driver fails a short read the
same way, but would write past the end of an image file (growing it);
the model does not. A write to a read-only medium aborts
(``bdrv_write`` refuses it).

IDENTIFY DEVICE data (``ide_identify``, words not listed are 0): 0:
0x0040; 1, 54: cylinders; 3, 55: heads; 4: 512 * sectors; 5: 512; 6, 56:
sectors per track; 10-19: serial ``QM0000n`` (n = 1 to 4, hda to hdd);
20: 3; 21: 512; 22: 4; 23-26: firmware ``0.8.2``; 27-46: model ``QEMU
HARDDISK``; 47: 0x8010 (16 sectors a multiple block); 48: 1; 49: 0x0B00
(DMA, LBA, IORDY); 51, 52: 0x200; 53: 7; 57-58: cylinders * heads *
sectors; 59: 0x0110 (multiple count 16); 60-61: the sector count (not
clamped to 28 bits); 63: 7 (MDMA 0-2); 65-68: 120; 80: 0xF0; 81: 0x16; 82,
84, 85, 87: 0x4000; 83, 86: 0x7400 (LBA48, FLUSH CACHE and its EXT); 88:
0x3F (UDMA 0-5); 93: 0x6001; 100-103: the 48-bit sector count. The data is
made once, at the first IDENTIFY; later changes (the multiple count)
do not show in it, SET FEATURES' transfer mode does.

Geometry (``ide_init2``): from the image's MBR when it has a partition
with an end head (heads = end head + 1, sectors = end sector & 63,
cylinders = total / (heads * sectors), when heads <= 16 and 1 <= cylinders
<= 16383), and then the BIOS translation hint is *none*; else 16 heads, 63
sectors and total / 1008 cylinders, clamped to 2-16383, the hint *auto*.
CD-ROMs get one too (an empty drive: 2 cylinders). qemu-dm writes the
geometries and hints into CMOS for the BIOS (:mod:`spec.devices.cmos`).
"""

from __future__ import annotations

from typing import Callable, Protocol

from spec import platform
from spec.block import MediumError

# status register
BSY, DRDY, DSC, DRQ, ERR = 0x80, 0x40, 0x10, 0x08, 0x01
# error register
ABRT = 0x04
# device control register
NIEN, SRST = 0x02, 0x04
#: sectors a DRQ block of READ/WRITE MULTIPLE may hold (qemu-dm's MAX_MULT_SECTORS)
MAX_MULT_SECTORS = 16
SECTOR = 512
#: QEMU_VERSION of Xen 3.0.4's qemu-dm (tools/ioemu/VERSION)
FIRMWARE = "0.8.2"
ATAPI_PACKET_SIZE = 12
#: BIOS translation hints (QEMU 0.8's ``BIOS_ATA_TRANSLATION_AUTO``, ``_NONE``)
TRANSLATION_AUTO, TRANSLATION_NONE = "auto", "none"


class IdeMedium(Protocol):
    """What the controller needs of a drive's image (:mod:`spec.block` opens
    image files as these). A ``"cdrom"`` medium with 0 sectors is an empty
    drive."""

    kind: str           # "disk" or "cdrom"
    read_only: bool
    sector_size: int    # 512 (disk) or 2048 (cdrom)
    sectors: int        # in sector_size units

    def read(self, lba: int, count: int) -> bytes: ...

    def write(self, lba: int, data: bytes) -> None: ...


def padstr(text: str, length: int) -> bytes:
    """An IDENTIFY string: padded with spaces, each word's bytes swapped."""
    raw = text.encode("ascii")[:length].ljust(length, b" ")
    return bytes(raw[i ^ 1] for i in range(length))


class Drive:
    """One drive position of a channel (qemu-dm's ``IDEState``): the task
    file, the transfer in progress and the ATAPI state; ``medium`` None is
    an empty position."""

    def __init__(self, channel: "Channel", unit: int, medium: IdeMedium | None,
                 serial: int) -> None:
        self.channel, self.unit, self.medium, self.serial = channel, unit, medium, serial
        self.is_cdrom = medium is not None and medium.kind == "cdrom"
        #: the CD-ROM has a disc in (START STOP UNIT can eject it)
        self.inserted = medium is not None and medium.sectors > 0
        #: the medium's size in 512-byte sectors (``nb_sectors``)
        self.nb_sectors = 0 if medium is None else medium.sectors * medium.sector_size // SECTOR
        self.cylinders = self.heads = self.sectors = 0
        #: the BIOS translation hint (``bdrv_get_translation_hint``) CMOS
        #: byte 0x39 is made from: ``auto``, or ``none`` for a geometry the
        #: MBR gave (:meth:`_geometry`)
        self.translation = TRANSLATION_AUTO
        if medium is not None:
            self.cylinders, self.heads, self.sectors = self._geometry()
        self.locked = False
        #: the CD-ROM's tray is open (the guest ejected, or the host emptied, the drive)
        self.tray_open = False
        #: a NewMedia event waits for GET EVENT STATUS NOTIFICATION
        self.new_media = False
        self.write_cache = False
        self.identify_set = False
        self.identify_data = bytearray(SECTOR)
        self.feature = self.error = self.nsector = self.sector = self.lcyl = self.hcyl = 0
        self.hob_feature = self.hob_nsector = self.hob_sector = self.hob_lcyl = 0
        self.hob_hcyl = 0
        self.select = self.status = 0
        self.lba48 = False
        # ATAPI
        self.sense_key = self.asc = 0
        self.packet_transfer_size = self.elementary_transfer_size = 0
        self.io_buffer_index = 0
        self.lba = -1
        self.cd_sector_size = 0
        self.atapi_dma = False
        # ATA DMA and PIO transfer
        self.io_buffer_size = 0
        self.req_nb_sectors = 0
        self.buffer = bytearray(MAX_MULT_SECTORS * SECTOR + 4)
        self.data_ptr = self.data_end = 0
        self.end_transfer: Callable[[], None] = self.transfer_stop
        self.mult_sectors = MAX_MULT_SECTORS
        self.reset()

    # -- set-up ---------------------------------------------------------

    def _geometry(self) -> tuple[int, int, int]:
        """``ide_init2``: the MBR's geometry (and then no BIOS translation,
        "to be in sync with the logical geometry"), else 16 heads of 63
        sectors."""
        guessed = self._guess_lchs()
        if guessed is not None:
            self.translation = TRANSLATION_NONE
            return guessed
        cylinders = min(max(self.nb_sectors // (16 * 63), 2), 16383)
        return cylinders, 16, 63

    def _guess_lchs(self) -> tuple[int, int, int] | None:
        """``guess_disk_lchs``: the geometry the MBR's partitions end on."""
        mbr = self.read_sectors(0, 1)
        if mbr is None or mbr[510] != 0x55 or mbr[511] != 0xAA:
            return None
        for i in range(4):
            entry = mbr[0x1BE + 16 * i:0x1BE + 16 * (i + 1)]
            nr_sects = int.from_bytes(entry[12:16], "little")
            end_head, end_sector = entry[5], entry[6]
            if nr_sects and end_head:
                heads, sectors = end_head + 1, end_sector & 63
                if sectors == 0:
                    continue
                cylinders = self.nb_sectors // (heads * sectors)
                if cylinders < 1 or cylinders > 16383:
                    continue
                if heads > 16:          # a BIOS translation: the default geometry
                    return None
                return cylinders, heads, sectors
        return None

    def reset(self) -> None:
        """``ide_reset``: the drive at power-on."""
        self.mult_sectors = MAX_MULT_SECTORS
        self.select = 0xA0
        self.status = DRDY
        self.set_signature()
        self.end_transfer = self.dummy_transfer_stop
        self.dummy_transfer_stop()

    def set_signature(self) -> None:
        """``ide_set_signature``: what a drive shows after reset and
        diagnostics, its type in the cylinder registers."""
        self.select &= 0xF0
        self.nsector = self.sector = 1
        if self.is_cdrom:
            self.lcyl, self.hcyl = 0x14, 0xEB
        elif self.medium is not None:
            self.lcyl = self.hcyl = 0
        else:
            self.lcyl = self.hcyl = 0xFF

    # -- media access ------------------------------------------------------

    def read_sectors(self, sector: int, count: int) -> bytes | None:
        """``bdrv_read`` of 512-byte sectors; None when the range is not
        wholly on the medium (or there is none)."""
        m = self.medium
        if m is None or not self.inserted or sector < 0 or sector + count > self.nb_sectors:
            return None
        per = m.sector_size // SECTOR
        first, last = sector // per, (sector + count + per - 1) // per
        try:
            data = m.read(first, last - first)
        except MediumError:             # the host failed the read: a drive error
            return None
        skip = (sector - first * per) * SECTOR
        return bytes(data[skip:skip + count * SECTOR])

    def write_sectors(self, sector: int, data: bytes) -> bool:
        """``bdrv_write`` of 512-byte sectors; False (nothing written) for a
        read-only medium or a range not wholly on it."""
        m = self.medium
        count = len(data) // SECTOR
        if m is None or not self.inserted or m.read_only or m.sector_size != SECTOR \
                or sector < 0 or sector + count > self.nb_sectors:
            return False
        try:
            m.write(sector, bytes(data))
        except MediumError:             # the host failed the write: a drive error
            return False
        return True

    # -- interrupts and transfers ----------------------------------------

    def set_irq(self) -> None:
        """``ide_set_irq``: raise the channel's line unless nIEN is set (and
        mark the bus master's interrupt bit)."""
        self.channel.raise_irq()

    def abort_command(self) -> None:
        self.status = DRDY | ERR
        self.error = ABRT

    def transfer_start(self, start: int, size: int, end: Callable[[], None]) -> None:
        """Offer ``size`` bytes of the buffer from ``start``; ``end`` runs when
        the last of them has moved."""
        self.end_transfer = end
        self.data_ptr, self.data_end = start, start + size
        self.status |= DRQ

    def transfer_stop(self) -> None:
        self.end_transfer = self.transfer_stop
        self.data_ptr = self.data_end = 0
        self.status &= ~DRQ

    def dummy_transfer_stop(self) -> None:
        """After reset the data register reads 0xFFFF."""
        self.data_ptr = self.data_end = 0
        self.buffer[0:4] = b"\xff\xff\xff\xff"

    def data_read(self, size: int) -> int:
        p = self.data_ptr
        value = int.from_bytes(self.buffer[p:p + size], "little")
        self.data_ptr = p + size
        if self.data_ptr >= self.data_end:
            self.end_transfer()
        return value

    def data_write(self, size: int, value: int) -> None:
        p = self.data_ptr
        self.buffer[p:p + size] = value.to_bytes(size, "little")
        self.data_ptr = p + size
        if self.data_ptr >= self.data_end:
            self.end_transfer()

    # -- addressing ------------------------------------------------------

    def get_sector(self) -> int:
        """``ide_get_sector``: the address the task file names."""
        if self.select & 0x40:
            if not self.lba48:
                return ((self.select & 0x0F) << 24) | (self.hcyl << 16) | (self.lcyl << 8) \
                    | self.sector
            return (self.hob_hcyl << 40) | (self.hob_lcyl << 32) | (self.hob_sector << 24) \
                | (self.hcyl << 16) | (self.lcyl << 8) | self.sector
        return ((self.hcyl << 8) | self.lcyl) * self.heads * self.sectors \
            + (self.select & 0x0F) * self.sectors + self.sector - 1

    def set_sector(self, n: int) -> None:
        """``ide_set_sector``: show address ``n`` in the task file."""
        if self.select & 0x40:
            if not self.lba48:
                self.select = (self.select & 0xF0) | ((n >> 24) & 0x0F)
                self.hcyl, self.lcyl, self.sector = (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF
            else:
                self.sector, self.lcyl, self.hcyl = n & 0xFF, (n >> 8) & 0xFF, (n >> 16) & 0xFF
                self.hob_sector = (n >> 24) & 0xFF
                self.hob_lcyl, self.hob_hcyl = (n >> 32) & 0xFF, (n >> 40) & 0xFF
        else:
            per_cyl = self.heads * self.sectors
            cyl, r = (n // per_cyl, n % per_cyl) if per_cyl else (0, 0)
            self.hcyl, self.lcyl = (cyl >> 8) & 0xFF, cyl & 0xFF
            head = (r // self.sectors) & 0x0F if self.sectors else 0
            self.select = (self.select & 0xF0) | head
            self.sector = ((r % self.sectors) + 1) & 0xFF if self.sectors else 1

    def lba48_transform(self, lba48: bool) -> None:
        """``ide_cmd_lba48_transform``: the full sector count in ``nsector``."""
        self.lba48 = lba48
        if not lba48:
            if not self.nsector:
                self.nsector = 256
        elif not self.nsector and not self.hob_nsector:
            self.nsector = 65536
        else:
            self.nsector = (self.hob_nsector << 8) | (self.nsector & 0xFF)

    # -- PIO sector transfers ----------------------------------------------

    def sector_read(self) -> None:
        """``ide_sector_read``: the next block of a PIO read, or the end."""
        self.status = DRDY | DSC
        self.error = 0
        sector, n = self.get_sector(), self.nsector
        if n == 0:
            self.transfer_stop()
            return
        n = min(n, self.req_nb_sectors)
        data = self.read_sectors(sector, n)
        if data is None:
            self.abort_command()
            self.set_irq()
            return
        self.buffer[0:len(data)] = data
        self.transfer_start(0, SECTOR * n, self.sector_read)
        self.set_irq()
        self.set_sector(sector + n)
        self.nsector -= n

    def sector_write(self) -> None:
        """``ide_sector_write``: a block of a PIO write has arrived."""
        self.status = DRDY | DSC
        sector = self.get_sector()
        n = min(self.nsector, self.req_nb_sectors)
        if not self.write_sectors(sector, self.buffer[0:SECTOR * n]):
            self.abort_command()
            self.set_irq()
            return
        self.nsector -= n
        if self.nsector == 0:
            self.transfer_stop()
        else:
            n1 = min(self.nsector, self.req_nb_sectors)
            self.transfer_start(0, SECTOR * n1, self.sector_write)
        self.set_sector(sector + n)
        self.set_irq()

    # -- bus-master DMA callbacks (spec.devices.bmdma runs them) -----------

    def read_dma_cb(self, memory, addr: int, length: int) -> int:
        """``ide_read_dma_cb``: fill ``length`` bytes of guest memory at
        ``addr`` from the disk; returns how many moved (0: done or failed)."""
        left = length
        while left > 0:
            avail = self.io_buffer_size - self.io_buffer_index
            if avail <= 0:
                n = self.nsector
                if n == 0:
                    break
                n = min(n, MAX_MULT_SECTORS)
                sector = self.get_sector()
                data = self.read_sectors(sector, n)
                if data is None:
                    self.abort_command()
                    self.set_irq()
                    return 0
                self.buffer[0:len(data)] = data
                self.io_buffer_index, self.io_buffer_size = 0, n * SECTOR
                avail = self.io_buffer_size
                self.set_sector(sector + n)
                self.nsector -= n
            chunk = min(avail, left)
            i = self.io_buffer_index
            memory.write(addr, bytes(self.buffer[i:i + chunk]))
            self.io_buffer_index += chunk
            left -= chunk
            addr += chunk
        if self.io_buffer_index >= self.io_buffer_size and self.nsector == 0:
            self.status = DRDY | DSC
            return 0
        return length - left

    def write_dma_cb(self, memory, addr: int, length: int) -> int:
        """``ide_write_dma_cb``: take ``length`` bytes of guest memory at
        ``addr`` to the disk; returns how many moved (0: done or failed)."""
        left = length
        while True:
            avail = self.io_buffer_size - self.io_buffer_index
            if avail == 0:
                n = self.io_buffer_size // SECTOR
                sector = self.get_sector()
                if not self.write_sectors(sector, self.buffer[0:self.io_buffer_size]):
                    self.abort_command()
                    self.set_irq()
                    return 0
                self.set_sector(sector + n)
                self.nsector -= n
                if self.nsector == 0:
                    self.status = DRDY | DSC
                    return 0
                n = min(self.nsector, MAX_MULT_SECTORS)
                self.io_buffer_index, self.io_buffer_size = 0, n * SECTOR
                avail = self.io_buffer_size
            if left <= 0:
                break
            chunk = min(avail, left)
            i = self.io_buffer_index
            self.buffer[i:i + chunk] = memory.read(addr, chunk)
            self.io_buffer_index += chunk
            left -= chunk
            addr += chunk
        return length - left

    # -- IDENTIFY --------------------------------------------------------

    def identify(self) -> None:
        """``ide_identify`` into the buffer (module docstring)."""
        if not self.identify_set:
            words = [0] * 256
            c, h, s = self.cylinders, self.heads, self.sectors
            oldsize = c * h * s
            words[0], words[1], words[3], words[4] = 0x0040, c, h, (512 * s) & 0xFFFF
            words[5], words[6] = 512, s
            words[20], words[21], words[22] = 3, 512, 4
            words[47], words[48], words[49] = 0x8000 | MAX_MULT_SECTORS, 1, 0x0B00
            words[51] = words[52] = 0x200
            words[53] = 7
            words[54], words[55], words[56] = c, h, s
            words[57], words[58] = oldsize & 0xFFFF, (oldsize >> 16) & 0xFFFF
            if self.mult_sectors:
                words[59] = 0x100 | self.mult_sectors
            words[60], words[61] = self.nb_sectors & 0xFFFF, (self.nb_sectors >> 16) & 0xFFFF
            words[63] = 0x07
            words[65:69] = [120] * 4
            words[80], words[81] = 0xF0, 0x16
            words[82] = words[84] = words[85] = words[87] = 1 << 14
            words[83] = words[86] = (1 << 14) | (1 << 13) | (1 << 12) | (1 << 10)
            words[88] = 0x3F | (1 << 13)
            words[93] = 1 | (1 << 14) | 0x2000
            for i in range(4):
                words[100 + i] = (self.nb_sectors >> 16 * i) & 0xFFFF
            self._store_identify(words, "QEMU HARDDISK")
        self.buffer[0:SECTOR] = self.identify_data

    def atapi_identify(self) -> None:
        """``ide_atapi_identify``: IDENTIFY PACKET DEVICE's data: word 0
        0x85C0 (ATAPI, removable CD-ROM, 50 us DRQ, 12-byte packets); 20-22,
        serial, firmware as a disk's, model ``QEMU CD-ROM``; 48: 1; 49:
        0x0B00; 53: 3; 63: 7; 64: 1 (PIO 3); 65, 66: 0xB4; 67: 0x12C; 68:
        0xB4; 71, 72: 30; 80: 0x1E (ATA/ATAPI-1 to 4)."""
        if not self.identify_set:
            words = [0] * 256
            words[0] = (2 << 14) | (5 << 8) | (1 << 7) | (2 << 5)
            words[20], words[21], words[22] = 3, 512, 4
            words[48], words[49], words[53] = 1, 0x0B00, 3
            words[63], words[64], words[65], words[66] = 0x07, 1, 0xB4, 0xB4
            words[67], words[68], words[71], words[72] = 0x12C, 0xB4, 30, 30
            words[80] = 0x1E
            self._store_identify(words, "QEMU CD-ROM")
        self.buffer[0:SECTOR] = self.identify_data

    def _store_identify(self, words: list[int], model: str) -> None:
        data = bytearray(b"".join(w.to_bytes(2, "little") for w in words))
        data[20:40] = padstr(f"QM{self.serial:05d}", 20)
        data[46:54] = padstr(FIRMWARE, 8)
        data[54:94] = padstr(model, 40)
        self.identify_data[:] = data
        self.identify_set = True

    def _put_identify(self, word: int, value: int) -> None:
        self.identify_data[2 * word:2 * word + 2] = value.to_bytes(2, "little")

    # -- commands --------------------------------------------------------

    def command(self, val: int) -> None:
        """A command written to offset 7 (``ide_ioport_write`` case 7)."""
        from spec.devices import atapi, bmdma
        lba48 = False
        if val in (0x27, 0x42, 0x24, 0x29, 0x34, 0x39, 0x25, 0x35):
            lba48 = True
        if val == 0xEC:                                          # IDENTIFY DEVICE
            if self.medium is not None and not self.is_cdrom:
                self.identify()
                self.status = DRDY | DSC
                self.transfer_start(0, SECTOR, self.transfer_stop)
            else:
                if self.is_cdrom:
                    self.set_signature()
                self.abort_command()
            self.set_irq()
        elif val in (0x91, 0x10):                                # SPECIFY, RECALIBRATE
            self.error = 0
            self.status = DRDY | DSC
            self.set_irq()
        elif val == 0xC6:                                        # SET MULTIPLE MODE
            n = self.nsector
            if n > MAX_MULT_SECTORS or n == 0 or n & (n - 1):
                self.abort_command()
            else:
                self.mult_sectors = n
                self.status = DRDY
            self.set_irq()
        elif val in (0x42, 0x40, 0x41):                          # READ VERIFY
            self.lba48_transform(lba48)
            self.status = DRDY
            self.set_irq()
        elif val in (0x24, 0x20, 0x21):                          # READ SECTORS
            if self.medium is None:
                return self._abort()
            self.lba48_transform(lba48)
            self.req_nb_sectors = 1
            self.sector_read()
        elif val in (0x34, 0x30, 0x31):                          # WRITE SECTORS
            self.lba48_transform(lba48)
            self.error = 0
            self.status = DSC | DRDY
            self.req_nb_sectors = 1
            self.transfer_start(0, SECTOR, self.sector_write)
        elif val in (0x29, 0xC4):                                # READ MULTIPLE
            if not self.mult_sectors:
                return self._abort()
            self.lba48_transform(lba48)
            self.req_nb_sectors = self.mult_sectors
            self.sector_read()
        elif val in (0x39, 0xC5):                                # WRITE MULTIPLE
            if not self.mult_sectors:
                return self._abort()
            self.lba48_transform(lba48)
            self.error = 0
            self.status = DSC | DRDY
            self.req_nb_sectors = self.mult_sectors
            n = min(self.nsector, self.req_nb_sectors)
            self.transfer_start(0, SECTOR * n, self.sector_write)
        elif val in (0x25, 0xC8, 0xC9):                          # READ DMA
            if self.medium is None:
                return self._abort()
            self.lba48_transform(lba48)
            self.status = DRDY | DSC | DRQ
            self.io_buffer_index = self.io_buffer_size = 0
            bmdma.start(self, self.read_dma_cb)
        elif val in (0x35, 0xCA, 0xCB):                          # WRITE DMA
            if self.medium is None:
                return self._abort()
            self.lba48_transform(lba48)
            self.status = DRDY | DSC | DRQ
            self.io_buffer_index = 0
            self.io_buffer_size = min(self.nsector, MAX_MULT_SECTORS) * SECTOR
            bmdma.start(self, self.write_dma_cb)
        elif val in (0x27, 0xF8):                                # READ NATIVE MAX
            self.lba48_transform(lba48)
            self.set_sector(self.nb_sectors - 1)
            self.status = DRDY
            self.set_irq()
        elif val == 0xE5:                                        # CHECK POWER MODE
            self.nsector = 0xFF
            self.status = DRDY
            self.set_irq()
        elif val == 0xEF:                                        # SET FEATURES
            self._set_features()
        elif val in (0xE7, 0xEA, 0xE0, 0xE1):                    # FLUSH, STANDBY, IDLE
            self.status = DRDY
            self.set_irq()
        elif val == 0xA1:                                        # IDENTIFY PACKET DEVICE
            if self.is_cdrom:
                self.atapi_identify()
                self.status = DRDY | DSC
                self.transfer_start(0, SECTOR, self.transfer_stop)
            else:
                self.abort_command()
            self.set_irq()
        elif val == 0x90 or (val == 0x08 and self.is_cdrom):     # DIAGNOSE, DEVICE RESET
            self.set_signature()
            self.status = 0x00
            self.error = 0x01
        elif val == 0xA0 and self.is_cdrom:                      # PACKET
            if self.feature & 0x02:
                return self._abort()
            self.atapi_dma = bool(self.feature & 1)
            self.nsector = 1
            self.transfer_start(0, ATAPI_PACKET_SIZE, lambda: atapi.command(self))
        else:
            self._abort()

    def _abort(self) -> None:
        self.abort_command()
        self.set_irq()

    def _set_features(self) -> None:
        if self.medium is None:
            return self._abort()
        f = self.feature
        if f in (0x02, 0x82):
            self.write_cache = f == 0x02
        elif f in (0xAA, 0x55):
            pass
        elif f == 0x03:
            mode, kind = self.nsector & 0x07, (self.nsector & 0xFF) >> 3
            if kind in (0x00, 0x01):
                self._put_identify(63, 0x07)
                self._put_identify(88, 0x3F)
            elif kind == 0x04:
                self._put_identify(63, 0x07 | (1 << (mode + 8)))
                self._put_identify(88, 0x3F)
            elif kind == 0x08:
                self._put_identify(63, 0x07)
                self._put_identify(88, 0x3F | (1 << (mode + 8)))
            else:
                return self._abort()
        else:
            return self._abort()
        self.status = DRDY | DSC
        self.set_irq()


class Channel:
    """One IDE channel: its eight task-file ports (this object, a port
    device), its control port (:class:`ControlPort`), two drive positions and
    the interrupt line."""

    sizes = (1, 2, 4)

    def __init__(self, name: str, line: int, media: tuple[IdeMedium | None, IdeMedium | None],
                 serials: tuple[int, int], set_irq: Callable[[int, int], None]) -> None:
        self.name, self.line, self._set_irq = name, line, set_irq
        #: the bus master that serves this channel (spec.devices.bmdma), once
        #: BAR 4 has been mapped
        self.bmdma = None
        self.control = 0
        self.level = 0
        self.drives = (Drive(self, 0, media[0], serials[0]),
                       Drive(self, 1, media[1], serials[1]))
        self.cur = self.drives[0]

    @property
    def empty(self) -> bool:
        return self.drives[0].medium is None and self.drives[1].medium is None

    def raise_irq(self) -> None:
        if not self.control & NIEN:
            if self.bmdma is not None:
                self.bmdma.status |= 0x04
            self._drive_line(1)

    def _drive_line(self, level: int) -> None:
        if level != self.level:
            self.level = level
            self._set_irq(self.line, level)

    # -- task file -----------------------------------------------------

    def io_read(self, offset: int, size: int) -> int:
        if offset == 0 and size in (2, 4):
            return self.cur.data_read(size)
        if size == 4:
            return 0xFFFFFFFF
        if size == 2:
            high = self.read_register(offset + 1) if offset < 7 else 0xFF
            return self.read_register(offset) | high << 8
        return self.read_register(offset)

    def io_write(self, offset: int, size: int, value: int) -> None:
        if offset == 0 and size in (2, 4):
            self.cur.data_write(size, value)
        elif size == 2:
            self.write_register(offset, value & 0xFF)
            if offset < 7:
                self.write_register(offset + 1, value >> 8)
        elif size == 1:
            self.write_register(offset, value)

    def read_register(self, offset: int) -> int:
        """``ide_ioport_read``."""
        s = self.cur
        if offset == 0:
            return 0xFF
        if offset == 7:
            value = 0 if self.empty or (s.unit == 1 and s.medium is None) else s.status
            self._drive_line(0)
            return value
        if self.empty:
            return 0
        return (s.error, s.nsector & 0xFF, s.sector, s.lcyl, s.hcyl, s.select)[offset - 1]

    def write_register(self, offset: int, val: int) -> None:
        """``ide_ioport_write``."""
        d0, d1 = self.drives
        if 1 <= offset <= 5:
            for d in self.drives:
                d.select &= 0x7F
            names = {1: "feature", 2: "nsector", 3: "sector", 4: "lcyl", 5: "hcyl"}
            name = names[offset]
            for d in self.drives:
                setattr(d, "hob_" + name, getattr(d, name) & 0xFF)
                setattr(d, name, val)
        elif offset == 6:
            d0.select = (val & ~0x10) | 0xA0
            d1.select = val | 0x10 | 0xA0
            self.cur = self.drives[(val >> 4) & 1]
        elif offset == 7:
            s = self.cur
            if s.unit == 1 and s.medium is None:
                return
            s.command(val)

    # -- control port ----------------------------------------------------

    def alt_status(self) -> int:
        """``ide_status_read``: the status without lowering the line."""
        s = self.cur
        return 0 if self.empty or (s.unit == 1 and s.medium is None) else s.status

    def write_control(self, val: int) -> None:
        """``ide_cmd_write``: SRST edges and nIEN."""
        if not self.control & SRST and val & SRST:
            for s in self.drives:
                s.status = BSY | DSC
                s.error = 0x01
        elif self.control & SRST and not val & SRST:
            for s in self.drives:
                s.status = 0x00 if s.is_cdrom else DRDY | DSC
                s.set_signature()
        self.control = val


class ControlPort:
    """A channel's device control / alternate status port (0x3F6, 0x376)."""

    sizes = (1,)

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.name = channel.name

    def io_read(self, offset: int, size: int) -> int:
        return self.channel.alt_status()

    def io_write(self, offset: int, size: int, value: int) -> None:
        self.channel.write_control(value)


#: the drive names of the xm configuration, in channel order
DRIVE_NAMES = ("hda", "hdb", "hdc", "hdd")


class IdeController:
    """PIIX3's IDE function: two channels on their legacy ports and the
    bus-master registers (:mod:`spec.devices.bmdma`) that BAR 4 places."""

    def __init__(self, drives: dict[str, IdeMedium] | None,
                 set_irq: Callable[[int, int], None], memory) -> None:
        from spec.devices.bmdma import BusMaster, BmdmaPorts
        drives = dict(drives or {})
        unknown = sorted(set(drives) - set(DRIVE_NAMES))
        if unknown:
            raise ValueError(f"IDE drives are hda, hdb, hdc and hdd, not {', '.join(unknown)}")
        for name, medium in drives.items():
            if medium.kind not in ("disk", "cdrom"):
                raise ValueError(f"IDE drive {name}: kind {medium.kind!r} is neither "
                                 "'disk' nor 'cdrom'")
            if medium.sector_size != (SECTOR if medium.kind == "disk" else 2048):
                raise ValueError(f"IDE drive {name}: a {medium.kind} has sectors of "
                                 f"{SECTOR if medium.kind == 'disk' else 2048} bytes, "
                                 f"not {medium.sector_size}")
        media = [drives.get(n) for n in DRIVE_NAMES]
        self.channels = (
            Channel("ide0", platform.IRQ_IDE0, (media[0], media[1]), (1, 2), set_irq),
            Channel("ide1", platform.IRQ_IDE1, (media[2], media[3]), (3, 4), set_irq))
        self.bus_masters = (BusMaster(self.channels[0], memory),
                            BusMaster(self.channels[1], memory))
        self.bmdma_ports = BmdmaPorts(self.bus_masters)
        #: where BAR 4 has the bus-master ports decoded, or None
        self.bmdma_at: int | None = None

    def medium_changed(self, name: str) -> None:
        """qemu-dm changed drive ``name``'s medium (``xm block-configure``):
        Xen 3.0.4's ``cdrom_change_cb`` reads the medium's size again, and
        does nothing else ("XXX: send interrupt too"): no interrupt, no
        UNIT ATTENTION (QEMU 7.2 raises the channel's line and fails the
        next two commands NOT READY, then UNIT ATTENTION, ASC 0x28). A disc
        is in when the size is not 0. For GET EVENT
        STATUS NOTIFICATION (:mod:`spec.devices.atapi`, which departs from
        Xen 3.0.4 there) the drive also notes a NewMedia event and where the
        tray is, as QEMU 7.2's ``ide_cd_change_cb`` does: closed on the new
        disc, open when the drive was emptied."""
        index = DRIVE_NAMES.index(name)
        drive = self.channels[index // 2].drives[index % 2]
        medium = drive.medium
        drive.nb_sectors = medium.sectors * medium.sector_size // SECTOR
        drive.inserted = medium.sectors > 0
        drive.tray_open = not drive.inserted
        drive.new_media = True

    def bios_geometries(self) -> list[tuple[int, int, int, str] | None]:
        """For ``cmos_init`` (:func:`spec.devices.cmos.cmos_disk_bytes`), per
        drive position hda .. hdd: (cylinders, heads, sectors, translation
        hint) of a configured drive, CD-ROMs (empty or not) included, as
        Xen 3.0.4's ``bs_table`` holds them; None for an empty position."""
        return [None if d.medium is None else (d.cylinders, d.heads, d.sectors, d.translation)
                for channel in self.channels for d in channel.drives]

    def port_ranges(self) -> list[tuple[int, int, object]]:
        """(base, count, device) of the legacy ports."""
        c0, c1 = self.channels
        return [(platform.IDE0_BASE, 8, c0), (platform.IDE0_CONTROL, 1, ControlPort(c0)),
                (platform.IDE1_BASE, 8, c1), (platform.IDE1_CONTROL, 1, ControlPort(c1))]

    def move_bus_masters(self, bus, base: int | None) -> None:
        """BAR 4 moved (or the function's I/O decode changed): the
        bus-master ports leave port bus ``bus`` and, unless ``base`` is None,
        decode at ``base`` (``bmdma_map``)."""
        if self.bmdma_at is not None:
            bus.unregister(self.bmdma_ports)
        self.bmdma_at = base
        if base is not None:
            bus.register(base, platform.IDE_BMDMA_SIZE, self.bmdma_ports)
            self.attach_bus_masters()

    def attach_bus_masters(self) -> None:
        """``bmdma_map``: from the first time BAR 4 is mapped, the drives
        know their bus master (and DMA commands can run)."""
        for channel, bm in zip(self.channels, self.bus_masters):
            channel.bmdma = bm
