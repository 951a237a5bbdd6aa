"""ATAPI: the packet commands of qemu-dm's IDE CD-ROM.

Room: what a CD-ROM drive (:mod:`spec.devices.ide`) does with the 12-byte
packet the PACKET command (0xA0) takes, how it returns data through the
data register within the host's byte-count limit, its sense data, and the
TOC of the one-track disc it shows. Sources: Xen 3.0.4's
``tools/ioemu/hw/ide.c`` (``ide_atapi_cmd`` and its helpers) and
``hw/cdrom.c`` (the TOC), the SFF-8020i / MMC-2 command definitions, and
QEMU 7.2's ``hw/ide/atapi.c`` where it differs. Imports nothing.

The packet phase. PACKET sets the sector count register (the *interrupt
reason*) to 1 (CoD: a command is wanted) and DRQ, without an interrupt;
features bit 0 asks for the data by DMA, bit 1 (overlap) aborts the
command. When the twelfth byte has arrived the command runs.

Data in (``ide_atapi_cmd_reply_end``). A reply of *N* bytes (cut to the
length the packet allows) moves in DRQ blocks: for each, the drive reads
the byte-count limit the host put in the cylinder registers (0xFFFF counts
as 0xFFFE; an odd limit smaller than what is left is rounded down to even),
writes the block's size there, sets the interrupt reason to IO (2: data to
the host), DRQ, and raises the interrupt. A read of CD sectors moves at most
one sector (2048 bytes) a block. After the last block: status DRDY (0x40),
interrupt reason IO|CoD (3), interrupt. A command without data completes
the same way (``ide_atapi_cmd_ok``); a failing one with status DRDY|ERR
(0x41), the sense key in error bits 7:4, reason 3, interrupt
(``ide_atapi_cmd_error``), and its sense kept for REQUEST SENSE.

With the DMA bit, READ(10) and READ(12) move their sectors by bus-master
DMA (:mod:`spec.devices.bmdma`), and so does every other reply: a
deliberate difference from Xen 3.0.4, whose ``ide_atapi_cmd_reply`` sent
replies by PIO whatever the PACKET asked, following later qemu-dm (and
QEMU 7.2), which send the reply as one DMA chunk (``ide_atapi_cmd_read_dma_cb``
with ``lba == -1``). A real drive moves any data by DMA when asked: Debian's
Linux asks for MODE SENSE's capabilities page (128 bytes) by DMA, and with
the reply left waiting for PIO it saw the bus master finish with DRQ still
set, took it for a protocol violation and reset the channel at every
command after ("ata2: found unknown device", the sr driver a "scsi-1
drive").

Commands (``nr`` = medium present: NOT READY, ASC 0x3A, without one):

====  ===========================  ==========================================
op    command                      reply
====  ===========================  ==========================================
0x00  TEST UNIT READY              ok (nr)
0x03  REQUEST SENSE                18 bytes: 0xF0, 0, key, 0 x4, 10, 0 x4,
                                   ASC, 0 x5 (ASCQ is always 0)
0x12  INQUIRY                      36 bytes: type 5, removable, version 0,
                                   response format 0x21, additional length
                                   31, ``QEMU``, ``QEMU CD-ROM``, ``0.8.``
0x1B  START STOP UNIT              ok; eject (LoEj=1, Start=0) removes the
                                   disc, locked or not (QEMU 7.2 refuses a
                                   locked eject: NOT READY, ASC 0x53)
0x1E  PREVENT ALLOW MEDIUM         ok and the lock bit (nr)
      REMOVAL
0x25  READ CAPACITY                last LBA, 2048 (nr)
0x28  READ(10), 0xA8 READ(12)      the sectors (nr; a count of 0: ok; past
                                   the end: ILLEGAL REQUEST, ASC 0x21)
0x2B  SEEK(10)                     ok (nr; past the end: 0x21)
0x43  READ TOC                     format 0 (tracks), 1 (sessions), 2 (raw
                                   TOC), LBA or MSF (nr; other formats or a
                                   start track > 1 but 0xAA: ILLEGAL REQUEST,
                                   ASC 0x24)
0x46  GET CONFIGURATION            the profile list (below); a starting
                                   feature other than 0: ASC 0x24
0x4A  GET EVENT STATUS             polled: the media event class (below);
      NOTIFICATION                 asynchronous (Polled bit clear): ASC 0x24
0x5A  MODE SENSE(10)               current pages 0x01 (error recovery) and
                                   0x2A (capabilities); other pages and
                                   changeable/default values: ASC 0x24;
                                   saved values: ASC 0x39
0xBB  SET CD SPEED                 ok (the speed is not kept)
0xBD  MECHANISM STATUS             8 bytes, one slot
0xBE  READ CD                      sectors of 2048 or 2352 (sync, header,
                                   data, zero EDC/ECC) bytes by the
                                   sector-type byte 0x10/0xF8; 0x00: ok;
                                   others: ASC 0x24 (nr, 0x21)
====  ===========================  ==========================================

Every other opcode is ILLEGAL REQUEST, ASC 0x20 (invalid command operation
code): READ DISC INFORMATION (0x51) and MODE SENSE(6) among them, which
QEMU 7.2 implements. Xen 3.0.4 never reports UNIT ATTENTION: the sense
starts as NO SENSE (0/0) and a disc is ready at once; QEMU 7.2 also starts
ready, but reports UNIT ATTENTION, ASC 0x28 after a disc change and keeps
the sense until REQUEST SENSE.

GET CONFIGURATION, GET EVENT STATUS NOTIFICATION and SET CD SPEED depart
from Xen 3.0.4, whose ``ide_atapi_cmd`` has no case for them and answers
ILLEGAL REQUEST, ASC 0x20. The model answers them as QEMU 7.2's
``hw/ide/atapi.c`` does (``cmd_get_configuration``,
``cmd_get_event_status_notification``, ``cmd_set_speed``): the issue this
model serves ("an unmodified OS from a CD") names them, and Linux asks a
drive for them: its ``cdrom`` layer reads the current profile with GET
CONFIGURATION (``cdrom_mmc3_profile``: feature 0, 32 bytes) and its ``sr``
driver polls GET EVENT STATUS NOTIFICATION for disc changes
(``sr_get_events``: polled, the media class, 8 bytes). Later qemu-dm
(``qemu-xen-traditional``, Xen 4.x's ``hw/ide.c``) answers GET
CONFIGURATION and SET CD SPEED with the same bytes, but still refuses GET
EVENT STATUS NOTIFICATION; QEMU (Xen's ``qemu-xen`` device model since
4.2) has all three. None of the three needs a disc.

*GET CONFIGURATION* (MMC-5 6.6). Only the starting feature number 0
(bytes 2-3) is accepted; the Requested Type (byte 1) is not looked at. The
reply is 20 bytes, cut to the allocation length in bytes 7-8: the feature
header (data length 16, reserved, the *current profile*: 0x0010 DVD-ROM
for a disc of more than 1,440,000 512-byte sectors, QEMU's
``CD_MAX_SECTORS``, 80 minutes of 2048-byte frames; 0x0008 CD-ROM for a
smaller one; 0 with no disc) and feature 0, the Profile List: code 0,
byte 0x03 (version 0, persistent, current), additional length 8, then the
profiles DVD-ROM and CD-ROM, each four bytes: the profile number, a byte
with bit 0 set for the current one, a reserved byte.

*GET EVENT STATUS NOTIFICATION* (MMC-5 6.7). Only the polled form: with
the Polled bit (byte 1, bit 0) clear the command fails, INVALID FIELD IN
CDB (ASC 0x24), as in QEMU (MMC lets a drive refuse asynchronous
operation). The allocation length is bytes 7-8. The drive supports one
event class, *media* (class 4). When the notification class request
(byte 4) has bit 4 set the reply is 8 bytes: the event header (event
data length 4, notification class 4, supported classes 0x10) and the
media event descriptor: the event code, the media status, two reserved
zero bytes. Otherwise 4 bytes: length 0, class 0x80 (no event available,
NEA), supported classes 0x10.

The media status is 0x01 (door or tray open) after the guest ejected the
disc (START STOP UNIT) or the host emptied the drive; 0x02 (media
present) with a disc; 0 with the tray closed and no disc (after START
STOP UNIT loads an empty tray). The event code is 2 (NewMedia) once after
each change of medium by the host (``xm block-configure``, through
:meth:`spec.devices.ide.IdeController.medium_changed`: the one event QEMU
reports, from its ``ide_cd_change_cb``), reported by the first GET EVENT
STATUS NOTIFICATION that asks for the media class while the tray is
closed, and 0 (NoChg) otherwise. A guest's eject is no media event
(QEMU's ``blk_eject`` does not raise one either); EjectRequest (1) never
happens, since Xen 3.0.4 changes a locked drive's disc anyway where QEMU
asks the guest. The event survives a reset.

The model keeps Xen 3.0.4's answers where the two differ: an eject
(START STOP UNIT) drops the disc (``bdrv_close``), so that a load closes an
empty tray (media status 0), where QEMU 7.2 only opens the tray and a load
brings its disc back (0x02).

Sense data carries no ASCQ (0 on both). INQUIRY's header is QEMU 7.2's
too; its product is ``QEMU DVD-ROM`` there, and its MODE SENSE page 0x2A is
MMC-3's 0x14 bytes against qemu-dm's 0x12. qemu-dm's page 0x2A puts the
lock state in byte 6 of the mode parameter header (``buf[6] |= 1 << 1``),
where the page's byte 6 was meant; the model does the same.

The reply's version string is QEMU_VERSION (4 bytes: ``0.8.``). A LBA is
a 32-bit unsigned number here; Xen 3.0.4 took it as a signed ``int`` (an
LBA of 2^31 or more passed its end check and read before the image), the
model answers 0x21 for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:                                    # pragma: no cover
    from spec.devices.ide import Drive

DRDY, ERR, DRQ = 0x40, 0x01, 0x08
# interrupt reason (sector count register)
REASON_COD, REASON_IO = 0x01, 0x02
# sense keys and additional sense codes ("same constants as bochs")
NO_SENSE, NOT_READY, ILLEGAL_REQUEST, UNIT_ATTENTION = 0, 2, 5, 6
ASC_ILLEGAL_OPCODE = 0x20
ASC_LOGICAL_BLOCK_OOR = 0x21
ASC_INV_FIELD_IN_CMD_PACKET = 0x24
ASC_MEDIUM_NOT_PRESENT = 0x3A
ASC_SAVING_PARAMETERS_NOT_SUPPORTED = 0x39
CD_SECTOR = 2048
RAW_SECTOR = 2352
# GET CONFIGURATION: profiles (MMC-5 table 89) and QEMU's CD/DVD boundary
PROFILE_CD_ROM, PROFILE_DVD_ROM = 0x0008, 0x0010
CD_MAX_SECTORS = 80 * 60 * 75 * CD_SECTOR // 512
# GET EVENT STATUS NOTIFICATION: the media class, its event codes and statuses
GESN_MEDIA = 4
GESN_NO_EVENT_AVAILABLE = 0x80
MEC_NO_CHANGE, MEC_NEW_MEDIA = 0, 2
MS_TRAY_OPEN, MS_MEDIA_PRESENT = 0x01, 0x02


class _InvalidField(Exception):
    """The packet names a page, format or track the drive does not have."""


def be16(v: int) -> bytes:
    return (v & 0xFFFF).to_bytes(2, "big")


def be32(v: int) -> bytes:
    return (v & 0xFFFFFFFF).to_bytes(4, "big")


def lba_to_msf(lba: int) -> bytes:
    lba += 150
    return bytes([(lba // 75) // 60 & 0xFF, (lba // 75) % 60, lba % 75])


def cmd_ok(s: "Drive") -> None:
    """``ide_atapi_cmd_ok``."""
    s.error = 0
    s.status = DRDY
    s.nsector = (s.nsector & ~7) | REASON_IO | REASON_COD
    s.set_irq()


def cmd_error(s: "Drive", sense_key: int, asc: int) -> None:
    """``ide_atapi_cmd_error``."""
    s.error = sense_key << 4
    s.status = DRDY | ERR
    s.nsector = (s.nsector & ~7) | REASON_IO | REASON_COD
    s.sense_key, s.asc = sense_key, asc
    s.set_irq()


def read_cd_sector(s: "Drive", lba: int, size: int) -> None:
    """``cd_read_sector``: sector ``lba`` into the buffer, cooked (2048) or
    raw (2352: sync bytes, MSF header, mode 1, data, zero EDC/ECC)."""
    data = s.read_sectors(lba * 4, 4) or bytes(CD_SECTOR)
    if size == CD_SECTOR:
        s.buffer[0:CD_SECTOR] = data
    elif size == RAW_SECTOR:
        s.buffer[0:RAW_SECTOR] = (b"\x00" + b"\xff" * 10 + b"\x00" + lba_to_msf(lba)
                                  + b"\x01" + data + bytes(288))


def reply_end(s: "Drive") -> None:
    """``ide_atapi_cmd_reply_end``: the next DRQ block of a reply, or its end."""
    if s.packet_transfer_size <= 0:
        s.transfer_stop()
        s.status = DRDY
        s.nsector = (s.nsector & ~7) | REASON_IO | REASON_COD
        s.set_irq()
        return
    if s.lba != -1 and s.io_buffer_index >= s.cd_sector_size:
        read_cd_sector(s, s.lba, s.cd_sector_size)
        s.lba += 1
        s.io_buffer_index = 0
    if s.elementary_transfer_size > 0:
        size = min(s.cd_sector_size - s.io_buffer_index, s.elementary_transfer_size)
        s.transfer_start(s.io_buffer_index, size, lambda: reply_end(s))
        s.packet_transfer_size -= size
        s.elementary_transfer_size -= size
        s.io_buffer_index += size
        return
    s.nsector = (s.nsector & ~7) | REASON_IO
    limit = s.lcyl | (s.hcyl << 8)
    if limit == 0xFFFF:
        limit -= 1
    size = s.packet_transfer_size
    if size > limit:
        if limit & 1:
            limit -= 1
        size = limit
    s.lcyl, s.hcyl = size & 0xFF, (size >> 8) & 0xFF
    s.elementary_transfer_size = size
    if s.lba != -1:
        size = min(size, s.cd_sector_size - s.io_buffer_index)
    s.transfer_start(s.io_buffer_index, size, lambda: reply_end(s))
    s.packet_transfer_size -= size
    s.elementary_transfer_size -= size
    s.io_buffer_index += size
    s.set_irq()


def reply(s: "Drive", data: bytes, max_size: int) -> None:
    """``ide_atapi_cmd_reply``: send ``data``, at most ``max_size`` bytes; by
    bus-master DMA when the PACKET asked for it (later qemu-dm), else PIO."""
    s.buffer[0:len(data)] = data
    s.lba = -1
    s.packet_transfer_size = min(len(data), max_size)
    s.elementary_transfer_size = 0
    s.io_buffer_index = 0
    if s.atapi_dma:
        from spec.devices import bmdma
        s.status = DRDY | DRQ
        bmdma.start(s, lambda memory, addr, length: reply_dma_cb(s, memory, addr, length))
    else:
        s.status = DRDY
        reply_end(s)


def reply_dma_cb(s: "Drive", memory, addr: int, length: int) -> int:
    """``ide_atapi_cmd_read_dma_cb`` with no sector read (``lba == -1``):
    the reply in the buffer, to guest memory, as one chunk."""
    chunk = min(length, s.packet_transfer_size)
    i = s.io_buffer_index
    memory.write(addr, bytes(s.buffer[i:i + chunk]))
    s.packet_transfer_size -= chunk
    s.io_buffer_index += chunk
    if s.packet_transfer_size <= 0:
        s.status = DRDY
        s.nsector = (s.nsector & ~7) | REASON_IO | REASON_COD
        return 0
    return chunk


def read_sectors(s: "Drive", lba: int, count: int, sector_size: int) -> None:
    """``ide_atapi_cmd_read``: by DMA when the PACKET asked for it."""
    s.lba = lba
    s.packet_transfer_size = count * sector_size
    s.io_buffer_index = sector_size
    s.cd_sector_size = sector_size
    if s.atapi_dma:
        from spec.devices import bmdma
        s.status = DRDY | DRQ
        bmdma.start(s, lambda memory, addr, length: read_dma_cb(s, memory, addr, length))
    else:
        s.elementary_transfer_size = 0
        s.status = DRDY
        reply_end(s)


def read_dma_cb(s: "Drive", memory, addr: int, length: int) -> int:
    """``ide_atapi_cmd_read_dma_cb``: CD sectors to guest memory."""
    left = length
    while left > 0:
        if s.packet_transfer_size <= 0:
            break
        avail = s.cd_sector_size - s.io_buffer_index
        if avail <= 0:
            read_cd_sector(s, s.lba, s.cd_sector_size)
            s.lba += 1
            s.io_buffer_index = 0
            avail = s.cd_sector_size
        chunk = min(avail, left)
        i = s.io_buffer_index
        memory.write(addr, bytes(s.buffer[i:i + chunk]))
        s.packet_transfer_size -= chunk
        s.io_buffer_index += chunk
        left -= chunk
        addr += chunk
    if s.packet_transfer_size <= 0:
        s.status = DRDY
        s.nsector = (s.nsector & ~7) | REASON_IO | REASON_COD
        return 0
    return length - left


def read_toc(nb_sectors: int, msf: bool, start_track: int) -> bytes:
    """``cdrom_read_toc``: format 0, one data track and the lead-out."""
    if start_track > 1 and start_track != 0xAA:
        raise _InvalidField
    q = bytearray(b"\x01\x01")
    if start_track <= 1:
        q += b"\x00\x14\x01\x00"
        q += b"\x00" + lba_to_msf(0) if msf else be32(0)
    q += b"\x00\x16\xaa\x00"
    q += b"\x00" + lba_to_msf(nb_sectors) if msf else be32(nb_sectors)
    return be16(len(q)) + bytes(q)


def read_toc_raw(nb_sectors: int, msf: bool) -> bytes:
    """``cdrom_read_toc_raw``: format 2, the session's A0, A1, A2 and track 1."""
    q = bytearray(b"\x01\x01")
    q += bytes([1, 0x14, 0, 0xA0, 0, 0, 0, 0, 1, 0x00, 0x00])
    q += bytes([1, 0x14, 0, 0xA1, 0, 0, 0, 0, 1, 0x00, 0x00])
    q += bytes([1, 0x14, 0, 0xA2, 0, 0, 0])
    q += b"\x00" + lba_to_msf(nb_sectors) if msf else be32(nb_sectors)
    q += bytes([1, 0x14, 0, 1, 0, 0, 0])
    q += b"\x00" + lba_to_msf(0) if msf else bytes(4)
    return be16(len(q)) + bytes(q)


def _mode_sense(s: "Drive", packet: bytes) -> None:
    max_len = int.from_bytes(packet[7:9], "big")
    action, code = packet[2] >> 6, packet[2] & 0x3F
    if action == 3:
        return cmd_error(s, ILLEGAL_REQUEST, ASC_SAVING_PARAMETERS_NOT_SUPPORTED)
    if action != 0 or code not in (0x01, 0x2A):
        return cmd_error(s, ILLEGAL_REQUEST, ASC_INV_FIELD_IN_CMD_PACKET)
    if code == 0x01:
        buf = be16(16 + 6) + bytes([0x70, 0, 0, 0, 0, 0]) \
            + bytes([0x01, 0x06, 0x00, 0x05, 0, 0, 0, 0])
        return reply(s, buf, max_len)
    head = bytearray(be16(28 + 6) + bytes([0x70, 0, 0, 0, 0, 0]))
    if s.locked:
        head[6] |= 1 << 1            # qemu-dm sets the lock in the header byte 6
    page = bytes([0x2A, 0x12, 0x00, 0x00, 0x70, 3 << 5, (1 << 0) | (1 << 3) | (1 << 5),
                  0x00]) + be16(706) + bytes([0, 2]) + be16(512) + be16(706) + bytes(4)
    reply(s, bytes(head) + page, max_len)


def get_configuration(s: "Drive", packet: bytes) -> None:
    """GET CONFIGURATION (``cmd_get_configuration``): the feature header and
    the Profile List, DVD-ROM and CD-ROM, the disc's one current."""
    if packet[2] or packet[3]:
        return cmd_error(s, ILLEGAL_REQUEST, ASC_INV_FIELD_IN_CMD_PACKET)
    current = 0
    if s.inserted:
        current = PROFILE_DVD_ROM if s.nb_sectors > CD_MAX_SECTORS else PROFILE_CD_ROM
    profiles = b"".join(be16(p) + bytes([int(p == current), 0])
                        for p in (PROFILE_DVD_ROM, PROFILE_CD_ROM))
    feature = be16(0) + bytes([0x02 | 0x01, len(profiles)]) + profiles
    header = be32(4 + len(feature)) + bytes(2) + be16(current)
    reply(s, header + feature, int.from_bytes(packet[7:9], "big"))


def get_event_status(s: "Drive", packet: bytes) -> None:
    """GET EVENT STATUS NOTIFICATION, polled
    (``cmd_get_event_status_notification``, ``event_status_media``)."""
    if not packet[1] & 1:
        return cmd_error(s, ILLEGAL_REQUEST, ASC_INV_FIELD_IN_CMD_PACKET)
    supported = 1 << GESN_MEDIA
    if packet[4] & (1 << GESN_MEDIA):
        if s.tray_open:
            status = MS_TRAY_OPEN
        else:
            status = MS_MEDIA_PRESENT if s.inserted else 0
        event = MEC_NO_CHANGE
        if status != MS_TRAY_OPEN and s.new_media:
            event, s.new_media = MEC_NEW_MEDIA, False
        data = be16(4) + bytes([GESN_MEDIA, supported, event, status, 0, 0])
    else:
        data = be16(0) + bytes([GESN_NO_EVENT_AVAILABLE, supported])
    reply(s, data, int.from_bytes(packet[7:9], "big"))


def command(s: "Drive") -> None:
    """``ide_atapi_cmd``: run the packet in the buffer."""
    packet = bytes(s.buffer[0:12])
    op = packet[0]
    present = s.inserted
    if op == 0x00:                                         # TEST UNIT READY
        cmd_ok(s) if present else cmd_error(s, NOT_READY, ASC_MEDIUM_NOT_PRESENT)
    elif op == 0x5A:                                       # MODE SENSE(10)
        _mode_sense(s, packet)
    elif op == 0x03:                                       # REQUEST SENSE
        buf = bytearray(18)
        buf[0], buf[2], buf[7], buf[12] = 0x70 | 0x80, s.sense_key, 10, s.asc
        reply(s, bytes(buf), packet[4])
    elif op == 0x1E:                                       # PREVENT ALLOW MEDIUM REMOVAL
        if present:
            s.locked = bool(packet[4] & 1)
            cmd_ok(s)
        else:
            cmd_error(s, NOT_READY, ASC_MEDIUM_NOT_PRESENT)
    elif op in (0x28, 0xA8, 0xBE):                         # READ(10), READ(12), READ CD
        if not present:
            return cmd_error(s, NOT_READY, ASC_MEDIUM_NOT_PRESENT)
        lba = int.from_bytes(packet[2:6], "big")
        if op == 0x28:
            count = int.from_bytes(packet[7:9], "big")
        elif op == 0xA8:
            count = int.from_bytes(packet[6:10], "big")
        else:
            count = int.from_bytes(packet[6:9], "big")
        if count == 0:
            return cmd_ok(s)
        if (lba + count) * 4 > s.nb_sectors:
            return cmd_error(s, ILLEGAL_REQUEST, ASC_LOGICAL_BLOCK_OOR)
        if op != 0xBE:
            return read_sectors(s, lba, count, CD_SECTOR)
        kind = packet[9] & 0xF8
        if kind == 0x00:
            cmd_ok(s)
        elif kind == 0x10:
            read_sectors(s, lba, count, CD_SECTOR)
        elif kind == 0xF8:
            read_sectors(s, lba, count, RAW_SECTOR)
        else:
            cmd_error(s, ILLEGAL_REQUEST, ASC_INV_FIELD_IN_CMD_PACKET)
    elif op == 0x2B:                                       # SEEK(10)
        if not present:
            return cmd_error(s, NOT_READY, ASC_MEDIUM_NOT_PRESENT)
        if int.from_bytes(packet[2:6], "big") * 4 > s.nb_sectors:
            return cmd_error(s, ILLEGAL_REQUEST, ASC_LOGICAL_BLOCK_OOR)
        cmd_ok(s)
    elif op == 0x1B:                                       # START STOP UNIT
        start, eject = packet[4] & 1, (packet[4] >> 1) & 1
        if eject and not start:
            s.inserted = False
            s.tray_open = True
        elif eject:                                        # load: the tray closes
            s.tray_open = False
        cmd_ok(s)
    elif op == 0x46:                                       # GET CONFIGURATION
        get_configuration(s, packet)
    elif op == 0x4A:                                       # GET EVENT STATUS NOTIFICATION
        get_event_status(s, packet)
    elif op == 0xBB:                                       # SET CD SPEED
        cmd_ok(s)
    elif op == 0xBD:                                       # MECHANISM STATUS
        reply(s, bytes([0, 0, 0, 0, 0, 1, 0, 0]), int.from_bytes(packet[8:10], "big"))
    elif op == 0x43:                                       # READ TOC
        if not present:
            return cmd_error(s, NOT_READY, ASC_MEDIUM_NOT_PRESENT)
        max_len = int.from_bytes(packet[7:9], "big")
        fmt, msf, start = packet[9] >> 6, bool((packet[1] >> 1) & 1), packet[6]
        try:
            if fmt == 0:
                return reply(s, read_toc(s.nb_sectors >> 2, msf, start), max_len)
            if fmt == 1:
                return reply(s, bytes([0, 0x0A, 0x01, 0x01]) + bytes(8), max_len)
            if fmt == 2:
                return reply(s, read_toc_raw(s.nb_sectors >> 2, msf), max_len)
            raise _InvalidField
        except _InvalidField:
            cmd_error(s, ILLEGAL_REQUEST, ASC_INV_FIELD_IN_CMD_PACKET)
    elif op == 0x25:                                       # READ CAPACITY
        if not present:
            return cmd_error(s, NOT_READY, ASC_MEDIUM_NOT_PRESENT)
        reply(s, be32((s.nb_sectors >> 2) - 1) + be32(CD_SECTOR), 8)
    elif op == 0x12:                                       # INQUIRY
        buf = bytes([0x05, 0x80, 0x00, 0x21, 31, 0, 0, 0]) + b"QEMU    " \
            + b"QEMU CD-ROM     " + b"0.8."
        reply(s, buf, packet[4])
    else:
        cmd_error(s, ILLEGAL_REQUEST, ASC_ILLEGAL_OPCODE)
