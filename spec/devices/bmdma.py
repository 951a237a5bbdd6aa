"""PIIX3 IDE bus-master DMA: the registers BAR 4 places and the PRD walk.

Room: the two bus masters (one a channel) of the PIIX3 IDE function, their
registers in the 16 I/O ports of BAR 4, and how a DMA command moves its
data between a drive (:mod:`spec.devices.ide`, :mod:`spec.devices.atapi`)
and guest memory. Sources: Xen 3.0.4's ``tools/ioemu/hw/ide.c`` (``bmdma_*``,
``ide_dma_loop``, ``ide_dma_finish``), the Intel 82371SB (PIIX3) data sheet
(2.7 "Bus Master IDE I/O Registers") and the SFF-8038i bus-master
programming interface, and QEMU 7.2's ``hw/ide/pci.c`` where it differs.
Imports nothing.

Registers (offset from BAR 4; channel 1's at +8):

======  =====  ==============================================================
offset  size   register
======  =====  ==============================================================
0       byte   command: bit 0 start/stop, bit 3 direction (1 = to memory);
               the other bits read 0
1       byte   reads 0xFF, writes dropped
2       byte   status: bit 0 active, bit 1 error, bit 2 interrupt; bits 1
               and 2 are cleared by writing 1; bits 5 and 6 (drive 0/1 DMA
               capable) are plain storage
3       byte   reads 0xFF, writes dropped
4       dword  PRD table address (bits 1:0 read 0)
======  =====  ==============================================================

Only these sizes exist (QEMU 0.8 registered no others): a word at offset 0
or 2 is two byte accesses, a byte or word at 4-7 reads all-ones and is
dropped, as is a dword anywhere but 4.

The PRD table is a list of 8-byte entries in guest memory: a buffer's
physical address (dword) and byte count (bits 15:1; 0 means 64 KiB), bit
31 of the second dword marking the last entry.

A DMA command of a drive (READ/WRITE DMA and their EXT forms, an ATAPI
read with the DMA bit) sets DRQ and waits for its bus master. Writing the
command register with bit 0 set sets *active* and, if a command waits,
runs the transfer; with bit 0 clear it clears *active* (the transfer in
progress, if any, is not stopped: it has already run). A command issued
while *active* is set runs at once. The transfer walks the PRD table
(at most 512 entries), giving each buffer to the drive until the drive has
no more to move or fails, or the last entry is done; then the bus master
clears *active*, sets *interrupt* and the drive raises its interrupt line
(unless nIEN). At the end of a successful transfer the drive's status is
DRDY|DSC (0x50; an ATAPI drive: 0x40, interrupt reason 3). If the PRD
table ends first, the bus master finishes the same way with the drive
still showing DRQ (Xen 3.0.4; QEMU 7.2 then clears *active* without an
interrupt, ends the command with DRDY and moves no data). Before BAR 4 has ever been mapped, a DMA
command waits forever (qemu-dm's drives learn their bus master in
``bmdma_map``).

qemu-dm ran the transfer in a thread of its own (``DMA_MULTI_THREAD``):
the guest could read the registers while it ran. The model runs it to its
end within the access that starts it, as if the thread were instant.
Guest memory is read and written through qemu-dm's mapcache
(:mod:`spec.mapcache`), as ``cpu_physical_memory_rw`` does: each access
maps (and locks for its duration) the buckets it touches, in this order:
the PRD entry's 8 bytes, then the entry's buffer in pieces, each piece
ending where the buffer or the drive's data ends: an ATA drive moves up
to 16 sectors (8 KiB) of its buffer at a time, an ATAPI drive one 2048-
or 2352-byte CD sector. The mapcache's hits and misses (its trace events,
its LRU order) follow that sequence.
"""

from __future__ import annotations

from typing import Callable, Protocol

START, DIRECTION = 0x01, 0x08
ACTIVE, ERROR, INTERRUPT = 0x01, 0x02, 0x04
MAX_PRD = 512


class DmaMemory(Protocol):
    """Guest memory as a bus master reaches it."""

    def read(self, gpa: int, length: int) -> bytes: ...

    def write(self, gpa: int, data: bytes) -> None: ...


class BusMaster:
    """One channel's bus master (qemu-dm's ``BMDMAState``)."""

    def __init__(self, channel, memory: DmaMemory) -> None:
        self.channel, self.memory = channel, memory
        self.cmd = self.status = self.addr = 0
        #: the drive whose DMA command waits, and what moves its data
        self.drive = None
        self.dma_cb: Callable[[DmaMemory, int, int], int] | None = None

    def write_command(self, val: int) -> None:
        """``bmdma_cmd_writeb``."""
        self.cmd = val & (START | DIRECTION)
        if not val & START:
            self.status &= ~ACTIVE
        else:
            self.status |= ACTIVE
            if self.dma_cb is not None:
                self.run()

    def write_status(self, val: int) -> None:
        self.status = (val & 0x60) | (self.status & ACTIVE) | (self.status & ~val & 0x06)

    def run(self) -> None:
        """``ide_dma_loop``: walk the PRD table, then ``ide_dma_finish``."""
        at = self.addr
        for _ in range(MAX_PRD):
            entry = self.memory.read(at, 8)
            addr = int.from_bytes(entry[0:4], "little")
            size = int.from_bytes(entry[4:8], "little")
            length = size & 0xFFFE or 0x10000
            done = False
            while length > 0:
                moved = self.dma_cb(self.memory, addr, length)
                if moved == 0:
                    done = True
                    break
                addr = (addr + moved) & 0xFFFFFFFF
                length -= moved
            if done or size & 0x80000000:
                break
            at = (at + 8) & 0xFFFFFFFF
        drive = self.drive
        self.status = (self.status & ~ACTIVE) | INTERRUPT
        self.dma_cb = self.drive = None
        drive.set_irq()


def start(drive, dma_cb) -> None:
    """``ide_dma_start``: ``drive``'s DMA command waits for (or, the bus
    master being active, runs on) its channel's bus master."""
    bm = drive.channel.bmdma
    if bm is None:
        return
    bm.drive, bm.dma_cb = drive, dma_cb
    if bm.status & ACTIVE:
        bm.run()


class BmdmaPorts:
    """The 16 ports of BAR 4, wherever the guest puts them."""

    name = "ide-bmdma"
    sizes = (1, 2, 4)

    def __init__(self, masters: tuple[BusMaster, BusMaster]) -> None:
        self.masters = masters

    def io_read(self, offset: int, size: int) -> int:
        bm, reg = self.masters[offset >> 3], offset & 7
        if size == 4:
            return bm.addr if reg == 4 else 0xFFFFFFFF
        if size == 2:
            high = self.io_read(offset + 1, 1) if offset < 15 else 0xFF
            return self.io_read(offset, 1) | high << 8
        if reg == 0:
            return bm.cmd
        if reg == 2:
            return bm.status
        return 0xFF

    def io_write(self, offset: int, size: int, value: int) -> None:
        bm, reg = self.masters[offset >> 3], offset & 7
        if size == 4:
            if reg == 4:
                bm.addr = value & ~3 & 0xFFFFFFFF
        elif size == 2:
            self.io_write(offset, 1, value & 0xFF)
            if offset < 15:
                self.io_write(offset + 1, 1, value >> 8)
        elif reg == 0:
            bm.write_command(value)
        elif reg == 2:
            bm.write_status(value)
