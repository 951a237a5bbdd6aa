"""The PIIX3 IDE controller of impl's qemu-dm: two channels of two drives,
ATA disks and ATAPI CD-ROMs, PIO and bus-master DMA.

Room: Xen 3.0.4's ``tools/ioemu/hw/ide.c`` (QEMU 0.8.2 with Xen's DMA
thread), PCI function 00:01.1 (8086:7010, legacy ports 0x1F0-0x1F7/0x3F6 on
IRQ 14 and 0x170-0x177/0x376 on IRQ 15, the bus-master registers where BAR 4
puts them), with the ATAPI packet commands of :mod:`impl.atapi`. Same
observable behaviour as the reference model's device; different code:

* a drive's data register moves whole runs of elements with one slice of
  its buffer (:meth:`Channel.data_block`), so a ``rep insw`` ioreq of a page
  costs one copy, not 2048 Python calls;
* a bus-master transfer copies each PRD's span in one slice, guest memory
  reached through impl's mapcache (one lookup a bucket an access, as
  qemu-dm's ``cpu_physical_memory_rw`` does);
* Xen's DMA thread finishes a transfer before the guest can look again, so
  here it runs to its end where the guest starts it.

A medium is an object with ``kind`` ("disk" or "cdrom"), ``read_only``,
``sector_size`` (512 or 2048), ``sectors``, ``read(lba, count) -> bytes`` and
``write(lba, data)``, in its own sectors; the drive never asks for one
outside it. Imports :mod:`spec.platform` (ports, lines).
"""

from __future__ import annotations

from typing import Callable

from spec import platform as P
from spec.block import MediumError

# status (ide.c's *_STAT) and error bits
ERR, DRQ, SEEK, READY, BUSY = 0x01, 0x08, 0x10, 0x40, 0x80
ABRT = 0x04
# device control (0x3F6)
SRST, NIEN = 0x04, 0x02
# bus master: status and command bits
BM_ACTIVE, BM_ERROR, BM_INT = 0x01, 0x02, 0x04
BM_START, BM_READ = 0x01, 0x08

MAX_MULT = 16                           # MAX_MULT_SECTORS
BUFFER = MAX_MULT * 512 + 4             # io_buffer
VERSION = "0.8.2"                       # QEMU_VERSION of Xen 3.0.4's qemu-dm

#: per channel: (command block base, control port, ISA IRQ line)
CHANNELS = ((P.IDE0_BASE, P.IDE0_CONTROL, P.IRQ_IDE0), (P.IDE1_BASE, P.IDE1_CONTROL, P.IRQ_IDE1))
BM_SIZE = P.IDE_BMDMA_SIZE              # BAR 4: 8 bytes a channel


def _pad(text: str, n: int) -> bytes:
    """ATA string: ``n`` bytes, space padded, bytes swapped in each word."""
    raw = text.encode("ascii")[:n].ljust(n, b" ")
    return bytes(raw[i ^ 1] for i in range(n))


def _words(values: dict[int, int]) -> bytearray:
    out = bytearray(512)
    for index, value in values.items():
        out[2 * index:2 * index + 2] = (value & 0xFFFF).to_bytes(2, "little")
    return out


class Drive:
    """One drive (ide.c's IDEState): its task-file copy, its buffer, the
    transfer in progress and its medium."""

    def __init__(self, channel: "Channel", unit: int, medium, serial: int) -> None:
        self.channel, self.unit, self.medium, self.serial = channel, unit, medium, serial
        self.cdrom = medium is not None and medium.kind == "cdrom"
        # the medium in 512-byte sectors (qemu's nb_sectors)
        self.nb_sectors = (medium.sectors * (medium.sector_size // 512)
                           if medium is not None else 0)
        self.cylinders = self.heads = self.sectors = 0
        self.chs_from_mbr = False               # Xen then hints no BIOS translation
        if medium is not None:
            self._geometry()
        self.identify = bytearray(512)          # identify_data
        self.identify_set = False
        self.write_cache = 0
        self.buf = bytearray(BUFFER)
        # ATAPI state
        self.sense_key = self.asc = 0
        self.packet_size = self.elem_size = self.index = 0
        self.lba = -1
        self.cd_sector = 0
        self.atapi_dma = 0
        self.locked = False
        self.inserted = medium is not None and medium.sectors > 0
        self.tray_open = False                  # ejected by the guest or emptied by the host
        self.new_media = False                  # a NewMedia event for GET EVENT STATUS
        # ATA DMA state
        self.buf_size = 0
        self.req = 1
        # the registers
        self.feature = self.error = self.nsector = self.sector = 0
        self.lcyl = self.hcyl = 0
        self.hob_feature = self.hob_nsector = self.hob_sector = 0
        self.hob_lcyl = self.hob_hcyl = 0
        self.select = self.status = 0
        self.lba48 = 0
        self.reset()

    def _geometry(self) -> None:
        """Xen's ide_init2: a geometry from the MBR's partitions where one
        ends on a cylinder below 16 heads, else 16 heads of 63 sectors."""
        n = self.nb_sectors
        if n:
            mbr = self.medium.read(0, 1)[:512]
            if mbr[510:512] == b"\x55\xaa":
                for i in range(4):
                    entry = mbr[0x1BE + 16 * i:0x1CE + 16 * i]
                    if int.from_bytes(entry[12:16], "little") and entry[5]:
                        heads, secs = entry[5] + 1, entry[6] & 63
                        if secs == 0:
                            continue
                        cyls = n // (heads * secs)
                        if cyls < 1 or cyls > 16383:
                            continue
                        if heads <= 16:
                            self.cylinders, self.heads, self.sectors = cyls, heads, secs
                            self.chs_from_mbr = True
                            return
                        break
        self.cylinders = min(max(n // (16 * 63), 2), 16383)
        self.heads, self.sectors = 16, 63

    def reset(self) -> None:
        """ide_reset."""
        self.mult = MAX_MULT
        self.select = 0xA0
        self.status = READY
        self.signature()
        self.end = self.dummy_stop
        self.dummy_stop()

    def signature(self) -> None:
        self.select &= 0xF0
        self.nsector = self.sector = 1
        if self.cdrom:
            self.lcyl, self.hcyl = 0x14, 0xEB
        elif self.medium is not None:
            self.lcyl = self.hcyl = 0
        else:
            self.lcyl = self.hcyl = 0xFF

    # transfers -----------------------------------------------------------------------------

    def start(self, at: int, size: int, end: Callable[[], None]) -> None:
        self.end, self.ptr, self.stop = end, at, at + size
        self.status |= DRQ

    def transfer_stop(self) -> None:
        self.end, self.ptr, self.stop = self.transfer_stop, 0, 0
        self.status &= ~DRQ

    def dummy_stop(self) -> None:
        self.ptr = self.stop = 0
        self.buf[0:4] = b"\xff\xff\xff\xff"

    def irq(self) -> None:
        self.channel.raise_irq()

    def abort(self) -> None:
        self.status = READY | ERR
        self.error = ABRT

    # sectors -------------------------------------------------------------------------------

    def get_sector(self) -> int:
        if self.select & 0x40:
            if not self.lba48:
                return ((self.select & 0x0F) << 24 | self.hcyl << 16 | self.lcyl << 8
                        | self.sector)
            return (self.hob_hcyl << 40 | self.hob_lcyl << 32 | self.hob_sector << 24
                    | self.hcyl << 16 | self.lcyl << 8 | self.sector)
        return ((self.hcyl << 8 | self.lcyl) * self.heads * self.sectors
                + (self.select & 0x0F) * self.sectors + self.sector - 1)

    def set_sector(self, n: int) -> None:
        if self.select & 0x40:
            if not self.lba48:
                self.select = self.select & 0xF0 | n >> 24 & 0x0F
                self.hcyl, self.lcyl, self.sector = n >> 16 & 0xFF, n >> 8 & 0xFF, n & 0xFF
            else:
                self.sector, self.lcyl, self.hcyl = n & 0xFF, n >> 8 & 0xFF, n >> 16 & 0xFF
                self.hob_sector, self.hob_lcyl = n >> 24 & 0xFF, n >> 32 & 0xFF
                self.hob_hcyl = n >> 40 & 0xFF
        else:
            track = self.heads * self.sectors
            cyl, r = divmod(n, track) if track else (0, 0)
            self.hcyl, self.lcyl = cyl >> 8 & 0xFF, cyl & 0xFF
            self.select = self.select & 0xF0 | r // self.sectors & 0x0F if track else self.select
            self.sector = (r % self.sectors + 1) & 0xFF if track else self.sector

    def disk_read(self, sector: int, n: int) -> bool:
        """``n`` 512-byte sectors into the buffer; False where the medium
        is absent or they are not all on it."""
        m = self.medium
        if m is None or not self.inserted or sector < 0 or sector + n > self.nb_sectors:
            return False
        per = m.sector_size // 512
        try:
            if per == 1:
                self.buf[0:512 * n] = m.read(sector, n)[:512 * n]
            else:
                first, last = sector // per, (sector + n - 1) // per
                raw = m.read(first, last - first + 1)
                at = (sector - first * per) * 512
                self.buf[0:512 * n] = raw[at:at + 512 * n]
        except MediumError:             # the host failed the read
            return False
        return True

    def disk_write(self, sector: int, n: int) -> bool:
        m = self.medium
        if (m is None or not self.inserted or m.read_only or m.sector_size != 512
                or sector < 0 or sector + n > self.nb_sectors):
            return False
        try:
            m.write(sector, bytes(self.buf[0:512 * n]))
        except MediumError:             # the host failed the write
            return False
        return True

    def sector_read(self) -> None:
        """ide_sector_read: the next block of a PIO read."""
        self.status = READY | SEEK
        self.error = 0
        sector = self.get_sector()
        n = self.nsector
        if n == 0:
            self.transfer_stop()
            return
        n = min(n, self.req)
        if not self.disk_read(sector, n):
            self.abort()
            self.irq()
            return
        self.start(0, 512 * n, self.sector_read)
        self.irq()
        self.set_sector(sector + n)
        self.nsector -= n

    def sector_write(self) -> None:
        """ide_sector_write: a block of a PIO write has come."""
        self.status = READY | SEEK
        sector = self.get_sector()
        n = min(self.nsector, self.req)
        if not self.disk_write(sector, n):
            self.abort()
            self.irq()
            return
        self.nsector -= n
        if self.nsector == 0:
            self.transfer_stop()
        else:
            self.start(0, 512 * min(self.nsector, self.req), self.sector_write)
        self.set_sector(sector + n)
        self.irq()

    def lba48_transform(self, lba48: int) -> None:
        self.lba48 = lba48
        if not lba48:
            if not self.nsector:
                self.nsector = 256
        elif not self.nsector and not self.hob_nsector:
            self.nsector = 65536
        else:
            self.nsector = self.hob_nsector << 8 | self.nsector

    # DMA callbacks: (guest address, length) -> bytes moved, 0 at the end -----------------

    def read_dma(self, addr: int, size: int) -> int:
        """ide_read_dma_cb."""
        left = size
        while left > 0:
            n = self.buf_size - self.index
            if n <= 0:
                count = self.nsector
                if count == 0:
                    break
                count = min(count, MAX_MULT)
                sector = self.get_sector()
                if not self.disk_read(sector, count):
                    self.abort()
                    self.irq()
                    return 0
                self.index, self.buf_size = 0, count * 512
                n = self.buf_size
                self.set_sector(sector + count)
                self.nsector -= count
            n = min(n, left)
            self.channel.mem_write(addr, self.buf[self.index:self.index + n])
            self.index += n
            left -= n
            addr += n
        if self.index >= self.buf_size and self.nsector == 0:
            self.status = READY | SEEK
            return 0
        return size - left

    def write_dma(self, addr: int, size: int) -> int:
        """ide_write_dma_cb."""
        left = size
        while True:
            n = self.buf_size - self.index
            if n == 0:
                count = self.buf_size >> 9
                sector = self.get_sector()
                if not self.disk_write(sector, count):
                    self.abort()
                    self.irq()
                    return 0
                self.set_sector(sector + count)
                self.nsector -= count
                if self.nsector == 0:
                    self.status = READY | SEEK
                    return 0
                self.index, self.buf_size = 0, min(self.nsector, MAX_MULT) * 512
                n = self.buf_size
            if left <= 0:
                break
            n = min(n, left)
            self.buf[self.index:self.index + n] = self.channel.mem_read(addr, n)
            self.index += n
            left -= n
            addr += n
        return size - left

    # commands ------------------------------------------------------------------------------

    def identify_disk(self) -> None:
        if not self.identify_set:
            c, h, s, n = self.cylinders, self.heads, self.sectors, self.nb_sectors
            old = c * h * s
            words = _words({
                0: 0x0040, 1: c, 3: h, 4: 512 * s, 5: 512, 6: s, 20: 3, 21: 512, 22: 4,
                47: 0x8000 | MAX_MULT, 48: 1, 49: 1 << 11 | 1 << 9 | 1 << 8, 51: 0x200,
                52: 0x200, 53: 7, 54: c, 55: h, 56: s, 57: old, 58: old >> 16,
                60: n, 61: n >> 16, 63: 7, 65: 120, 66: 120, 67: 120, 68: 120,
                80: 0xF0, 81: 0x16, 82: 1 << 14, 83: 0x7400, 84: 1 << 14, 85: 1 << 14,
                86: 0x7400, 87: 1 << 14, 88: 0x3F | 1 << 13, 93: 0x6001,
                100: n, 101: n >> 16, 102: n >> 32, 103: n >> 48})
            if self.mult:
                words[118:120] = (0x100 | self.mult).to_bytes(2, "little")
            words[20:40] = _pad(f"QM{self.serial:05d}", 20)
            words[46:54] = _pad(VERSION, 8)
            words[54:94] = _pad("QEMU HARDDISK", 40)
            self.identify[:], self.identify_set = words, True
        self.buf[0:512] = self.identify

    def identify_packet(self) -> None:
        if not self.identify_set:
            words = _words({
                0: 2 << 14 | 5 << 8 | 1 << 7 | 2 << 5, 20: 3, 21: 512, 22: 4, 48: 1,
                49: 1 << 11 | 1 << 9 | 1 << 8, 53: 3, 63: 7, 64: 1, 65: 0xB4, 66: 0xB4,
                67: 0x12C, 68: 0xB4, 71: 30, 72: 30, 80: 0x1E})
            words[20:40] = _pad(f"QM{self.serial:05d}", 20)
            words[46:54] = _pad(VERSION, 8)
            words[54:94] = _pad("QEMU CD-ROM", 40)
            self.identify[:], self.identify_set = words, True
        self.buf[0:512] = self.identify

    def command(self, val: int) -> None:
        """A write of the command register to this (the selected) drive."""
        lba48 = 0
        if val in (0x24, 0x29, 0x34, 0x39, 0x42, 0x25, 0x35, 0x27):
            lba48 = 1
        present = self.medium is not None
        if val == 0xEC:                                     # IDENTIFY DEVICE
            if present and not self.cdrom:
                self.identify_disk()
                self.status = READY | SEEK
                self.start(0, 512, self.transfer_stop)
            else:
                if self.cdrom:
                    self.signature()
                self.abort()
            self.irq()
        elif val in (0x91, 0x10):                           # INITIALIZE PARAMS, RECALIBRATE
            self.error = 0
            self.status = READY | SEEK
            self.irq()
        elif val == 0xC6:                                   # SET MULTIPLE MODE
            n = self.nsector
            if n > MAX_MULT or n == 0 or n & (n - 1):
                self.abort()
            else:
                self.mult = n
                self.status = READY
            self.irq()
        elif val in (0x40, 0x41, 0x42):                     # READ VERIFY SECTORS (EXT)
            self.lba48_transform(lba48)
            self.status = READY
            self.irq()
        elif val in (0x20, 0x21, 0x24):                     # READ SECTORS (EXT)
            if not present:
                self._abort_irq()
                return
            self.lba48_transform(lba48)
            self.req = 1
            self.sector_read()
        elif val in (0x30, 0x31, 0x34):                     # WRITE SECTORS (EXT)
            self.lba48_transform(lba48)
            self.error = 0
            self.status = SEEK | READY
            self.req = 1
            self.start(0, 512, self.sector_write)
        elif val in (0xC4, 0x29):                           # READ MULTIPLE (EXT)
            if not self.mult:
                self._abort_irq()
                return
            self.lba48_transform(lba48)
            self.req = self.mult
            self.sector_read()
        elif val in (0xC5, 0x39):                           # WRITE MULTIPLE (EXT)
            if not self.mult:
                self._abort_irq()
                return
            self.lba48_transform(lba48)
            self.error = 0
            self.status = SEEK | READY
            self.req = self.mult
            self.start(0, 512 * min(self.nsector, self.req), self.sector_write)
        elif val in (0xC8, 0xC9, 0x25):                     # READ DMA (EXT)
            if not present:
                self._abort_irq()
                return
            self.lba48_transform(lba48)
            self.status = READY | SEEK | DRQ
            self.index = self.buf_size = 0
            self.channel.dma_start(self, self.read_dma)
        elif val in (0xCA, 0xCB, 0x35):                     # WRITE DMA (EXT)
            if not present:
                self._abort_irq()
                return
            self.lba48_transform(lba48)
            self.status = READY | SEEK | DRQ
            self.index, self.buf_size = 0, min(self.nsector, MAX_MULT) * 512
            self.channel.dma_start(self, self.write_dma)
        elif val in (0xF8, 0x27):                           # READ NATIVE MAX ADDRESS (EXT)
            self.lba48_transform(lba48)
            self.set_sector(self.nb_sectors - 1)
            self.status = READY
            self.irq()
        elif val == 0xE5:                                   # CHECK POWER MODE
            self.nsector = 0xFF
            self.status = READY
            self.irq()
        elif val == 0xEF:                                   # SET FEATURES
            self._set_features()
        elif val in (0xE7, 0xEA):                           # FLUSH CACHE (EXT)
            self.status = READY
            self.irq()
        elif val in (0xE0, 0xE1):                           # STANDBY / IDLE IMMEDIATE
            self.status = READY
            self.irq()
        elif val == 0xA1:                                   # IDENTIFY PACKET DEVICE
            if self.cdrom:
                self.identify_packet()
                self.status = READY | SEEK
                self.start(0, 512, self.transfer_stop)
            else:
                self.abort()
            self.irq()
        elif val == 0x90:                                   # EXECUTE DEVICE DIAGNOSTIC
            self.signature()
            self.status = 0
            self.error = 0x01
        elif val == 0x08:                                   # DEVICE RESET
            if not self.cdrom:
                self._abort_irq()
                return
            self.signature()
            self.status = 0
            self.error = 0x01
        elif val == 0xA0:                                   # PACKET
            if not self.cdrom or self.feature & 0x02:
                self._abort_irq()
                return
            self.atapi_dma = self.feature & 1
            self.nsector = 1
            self.start(0, 12, self.packet)
        else:
            self._abort_irq()

    def _abort_irq(self) -> None:
        self.abort()
        self.irq()

    def _set_features(self) -> None:
        if self.medium is None:
            self._abort_irq()
            return
        feature = self.feature
        if feature in (0x02, 0x82, 0xAA, 0x55):
            if feature != 0xAA and feature != 0x55:
                self.write_cache = int(feature == 0x02)
        elif feature == 0x03:                               # set transfer mode
            mode, val = (self.nsector & 0xFF) >> 3, self.nsector & 7
            if mode in (0, 1):
                w63, w88 = 0x07, 0x3F
            elif mode == 4:
                w63, w88 = 0x07 | 1 << val + 8, 0x3F
            elif mode == 8:
                w63, w88 = 0x07, 0x3F | 1 << val + 8
            else:
                self._abort_irq()
                return
            # into identify_data: an IDENTIFY not yet built overwrites them
            self.identify[126:128] = w63.to_bytes(2, "little")
            self.identify[176:178] = w88.to_bytes(2, "little")
        else:
            self._abort_irq()
            return
        self.status = READY | SEEK
        self.irq()

    def packet(self) -> None:
        """The 12 bytes of a PACKET command have come."""
        atapi.command(self)

    def reply_end(self) -> None:
        """The guest has taken a piece of an ATAPI reply."""
        atapi.reply_end(self)


class Channel:
    """One channel: its two drives, the selected one, the device control
    register, its interrupt line and its half of the bus master."""

    def __init__(self, ide: "Ide", number: int, media, serial: int) -> None:
        self.ide, self.number, self.name = ide, number, f"ide{number}"
        self.base, self.control, self.line = CHANNELS[number]
        self.drives = (Drive(self, 0, media[0], serial), Drive(self, 1, media[1], serial + 1))
        self.cur = self.drives[0]
        self.empty = media[0] is None and media[1] is None
        self.ctl = 0
        self.level = 0
        # the bus master (BMDMAState): attached once BAR 4 was first mapped
        self.attached = False
        self.bm_cmd = self.bm_status = self.bm_addr = 0
        self.bm_drive: Drive | None = None
        self.bm_cb = None

    # interrupts ----------------------------------------------------------------------------

    def raise_irq(self) -> None:
        """ide_set_irq: unless nIEN masks it."""
        if not self.ctl & NIEN:
            if self.attached:
                self.bm_status |= BM_INT
            self._drive(1)

    def _drive(self, level: int) -> None:
        if level != self.level:
            self.level = level
            self.ide.set_irq(self.line, level)

    # the command block ---------------------------------------------------------------------

    def _absent(self) -> bool:
        """Status reads as 0: no drive on the channel, or the slave is
        selected and missing."""
        return self.empty or (self.cur is self.drives[1] and self.drives[1].medium is None)

    def reg_read(self, reg: int) -> int:
        s = self.cur
        if reg == 0:
            return 0xFF
        if reg == 7:
            value = 0 if self._absent() else s.status
            self._drive(0)
            return value
        if self.empty:
            return 0
        if reg == 1:
            return s.error
        if reg == 2:
            return s.nsector & 0xFF
        if reg == 3:
            return s.sector
        if reg == 4:
            return s.lcyl
        if reg == 5:
            return s.hcyl
        return s.select

    def reg_write(self, reg: int, val: int) -> None:
        d0, d1 = self.drives
        if 1 <= reg <= 5:
            d0.select &= 0x7F
            d1.select &= 0x7F
            name = ("feature", "nsector", "sector", "lcyl", "hcyl")[reg - 1]
            for d in (d0, d1):
                setattr(d, "hob_" + name, getattr(d, name) & 0xFF)
                setattr(d, name, val)
        elif reg == 6:
            d0.select = val & ~0x10 & 0xFF | 0xA0
            d1.select = val | 0x10 | 0xA0
            self.cur = self.drives[val >> 4 & 1]
        elif reg == 7:
            s = self.cur
            if s is d1 and s.medium is None:
                return                          # no slave: the command is lost
            s.command(val)

    def status_read(self) -> int:
        """The alternate status (0x3F6): no interrupt acknowledge."""
        return 0 if self._absent() else self.cur.status

    def ctl_write(self, val: int) -> None:
        if not self.ctl & SRST and val & SRST:
            for d in self.drives:
                d.status = BUSY | SEEK
                d.error = 0x01
        elif self.ctl & SRST and not val & SRST:
            for d in self.drives:
                d.status = 0 if d.cdrom else READY | SEEK
                d.signature()
        self.ctl = val

    # the data register: runs of elements ---------------------------------------------------

    def data_run(self, size: int, count: int) -> int:
        """How many of ``count`` ``size``-byte elements the selected drive's
        transfer takes before its end (at least one: an element past the
        end reads the buffer and ends it again)."""
        s = self.cur
        left = s.stop - s.ptr
        return min(count, max(1, -(-left // size)))

    def data_peek(self, n: int) -> bytes:
        s = self.cur
        raw = bytes(s.buf[s.ptr:s.ptr + n])
        return raw if len(raw) == n else raw.ljust(n, b"\0")

    def data_poke(self, data: bytes) -> None:
        # past its end (a PACKET whose command fails keeps its pointer moving
        # with each access) the buffer grows as the reference's bytearray does
        s = self.cur
        s.buf[s.ptr:s.ptr + len(data)] = data

    def data_advance(self, n: int) -> None:
        s = self.cur
        s.ptr += n
        if s.ptr >= s.stop:
            s.end()

    def data_read(self, size: int) -> int:
        raw = self.data_peek(size)
        self.data_advance(size)
        return int.from_bytes(raw, "little")

    def data_write(self, size: int, value: int) -> None:
        self.data_poke(value.to_bytes(size, "little"))
        self.data_advance(size)

    # the bus master ------------------------------------------------------------------------

    def dma_start(self, drive: Drive, cb) -> None:
        if not self.attached:
            return
        self.bm_drive, self.bm_cb = drive, cb
        if self.bm_status & BM_ACTIVE:
            self.dma_loop()

    def bm_cmd_write(self, val: int) -> None:
        self.bm_cmd = val & 0x09
        if not val & BM_START:
            self.bm_status &= ~BM_ACTIVE
        else:
            self.bm_status |= BM_ACTIVE
            if self.bm_cb is not None:
                self.dma_loop()

    def dma_loop(self) -> None:
        """The PRD table at ``bm_addr``: at most 512 entries; each moves up
        to 64 KiB until the command ends or the entry marks the end."""
        cb, at = self.bm_cb, self.bm_addr
        for _ in range(512):
            prd = self.mem_read(at, 8)
            addr = int.from_bytes(prd[0:4], "little")
            size = int.from_bytes(prd[4:8], "little")
            n = size & 0xFFFE or 0x10000
            done = False
            while n > 0:
                moved = cb(addr, n)
                if moved == 0:
                    done = True
                    break
                addr = addr + moved & 0xFFFFFFFF
                n -= moved
            if done or size & 0x80000000:
                break
            at = at + 8 & 0xFFFFFFFF
        # ide_dma_finish
        drive = self.bm_drive
        self.bm_status = self.bm_status & ~BM_ACTIVE | BM_INT
        self.bm_cb = self.bm_drive = None
        drive.irq()

    def mem_read(self, gpa: int, n: int) -> bytes:
        return self.ide.mem_read(gpa, n)

    def mem_write(self, gpa: int, data) -> None:
        self.ide.mem_write(gpa, data)


class CommandBlock:
    """Ports base..base+7 of a channel: the data register (words and
    dwords at base) and the task file (bytes); a word of the task file is
    two bytes (the second past base+7 reads all-ones), a dword all-ones,
    as qemu-dm's default handlers make them."""

    sizes = (1, 2, 4)

    def __init__(self, channel: Channel) -> None:
        self.channel, self.name = channel, channel.name

    def read(self, offset: int, size: int) -> int:
        ch = self.channel
        if offset == 0 and size > 1:
            return ch.data_read(size)
        if size == 1:
            return ch.reg_read(offset)
        if size == 2:
            high = ch.reg_read(offset + 1) if offset < 7 else 0xFF
            return ch.reg_read(offset) | high << 8
        return 0xFFFFFFFF

    def write(self, offset: int, size: int, value: int) -> None:
        ch = self.channel
        if offset == 0 and size > 1:
            ch.data_write(size, value)
        elif size == 1:
            ch.reg_write(offset, value)
        elif size == 2:
            ch.reg_write(offset, value & 0xFF)
            if offset < 7:
                ch.reg_write(offset + 1, value >> 8)


class ControlPort:
    """Port 0x3F6 / 0x376: alternate status and device control (bytes)."""

    sizes = (1,)

    def __init__(self, channel: Channel) -> None:
        self.channel, self.name = channel, channel.name

    def read(self, offset: int, size: int) -> int:
        return self.channel.status_read()

    def write(self, offset: int, size: int, value: int) -> None:
        self.channel.ctl_write(value & 0xFF)


class BusMaster:
    """The 16 bytes of BAR 4: per channel, command (+0) and status (+2)
    bytes, +1 and +3 reading all-ones, and the PRD table address (+4, a
    dword, the low two bits dropped)."""

    name, sizes = "ide-bmdma", (1, 2, 4)

    def __init__(self, channels: tuple[Channel, Channel]) -> None:
        self.channels = channels

    def _byte(self, offset: int) -> int:
        if offset >= BM_SIZE:
            return 0xFF
        ch, reg = self.channels[offset >> 3], offset & 7
        if reg == 0:
            return ch.bm_cmd
        if reg == 2:
            return ch.bm_status
        return 0xFF

    def _put(self, offset: int, val: int) -> None:
        if offset >= BM_SIZE:
            return
        ch, reg = self.channels[offset >> 3], offset & 7
        if reg == 0:
            ch.bm_cmd_write(val)
        elif reg == 2:
            s = ch.bm_status
            ch.bm_status = val & 0x60 | s & 1 | s & ~val & 0x06

    def read(self, offset: int, size: int) -> int:
        if size == 1:
            return self._byte(offset)
        if size == 2:
            return self._byte(offset) | self._byte(offset + 1) << 8
        if offset & 7 == 4:
            return self.channels[offset >> 3].bm_addr
        return 0xFFFFFFFF

    def write(self, offset: int, size: int, value: int) -> None:
        if size == 1:
            self._put(offset, value)
        elif size == 2:
            self._put(offset, value & 0xFF)
            self._put(offset + 1, value >> 8)
        elif offset & 7 == 4:
            self.channels[offset >> 3].bm_addr = value & ~3 & 0xFFFFFFFF


class Ide:
    """The controller: two channels, their ports, the bus master's window
    and the guest memory and interrupt lines it reaches."""

    def __init__(self, drives: dict, set_irq: Callable[[int, int], None],
                 mem_read: Callable[[int, int], bytes],
                 mem_write: Callable[[int, bytes], None]) -> None:
        for name, medium in drives.items():
            _check(name, medium)
        media = [drives.get(n) for n in ("hda", "hdb", "hdc", "hdd")]
        self.set_irq, self.mem_read, self.mem_write = set_irq, mem_read, mem_write
        self.channels = (Channel(self, 0, media[0:2], 1), Channel(self, 1, media[2:4], 3))
        self.bus_master = BusMaster(self.channels)
        self.bm_base: int | None = None

    def medium_changed(self, name: str) -> None:
        """A new medium (or none) in drive ``name``: its size read again (Xen
        3.0.4's cdrom_change_cb), no interrupt, no UNIT ATTENTION; and, for
        GET EVENT STATUS NOTIFICATION, a NewMedia event pending and the tray
        closed on a disc or open on none (QEMU 7.2's ide_cd_change_cb)."""
        index = ("hda", "hdb", "hdc", "hdd").index(name)
        drive = self.channels[index >> 1].drives[index & 1]
        drive.nb_sectors = drive.medium.sectors * (drive.medium.sector_size // 512)
        drive.inserted = drive.medium.sectors > 0
        drive.tray_open, drive.new_media = not drive.inserted, True

    def cmos_drives(self) -> list:
        """Per position hda .. hdd: the drive (any kind, empty CD-ROMs too)
        or None, for the CMOS bytes of cmos_init (:mod:`impl.cmos`)."""
        return [d if d.medium is not None else None for ch in self.channels for d in ch.drives]

    def ports(self) -> list[tuple[int, int, object]]:
        """(first port, one past the last, device) of the fixed ports."""
        out = []
        for ch in self.channels:
            out.append((ch.base, ch.base + 8, CommandBlock(ch)))
            out.append((ch.control, ch.control + 1, ControlPort(ch)))
        return out

    def moved(self, base: int | None) -> None:
        """BAR 4 now decodes at ``base`` (or nowhere): the first mapping
        attaches the bus master to the channels (Xen's bmdma_map)."""
        self.bm_base = base
        if base is not None:
            for ch in self.channels:
                ch.attached = True


def _check(name: str, medium) -> None:
    if name not in ("hda", "hdb", "hdc", "hdd"):
        raise ValueError(f"IDE drives are hda, hdb, hdc and hdd, not {name}")
    kind = getattr(medium, "kind", None)
    if kind not in ("disk", "cdrom"):
        raise ValueError(f"IDE drive {name}: kind {kind!r} is neither 'disk' nor 'cdrom'")
    want = 512 if kind == "disk" else 2048
    if medium.sector_size != want:
        raise ValueError(f"IDE drive {name}: a {kind} has sectors of {want} bytes, "
                         f"not {medium.sector_size}")


from impl import atapi  # noqa: E402  (it takes this module's bit names)
