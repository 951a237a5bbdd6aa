"""ATAPI packet commands of impl's IDE CD-ROM (:mod:`impl.ide`).

Room: what Xen 3.0.4's ``ide_atapi_cmd`` answers (TEST UNIT READY, REQUEST
SENSE, INQUIRY, MODE SENSE(10) pages 0x01 and 0x2A, PREVENT/ALLOW MEDIUM
REMOVAL, READ(10)/(12), READ CD, SEEK, START STOP UNIT, MECHANISM STATUS,
READ TOC formats 0-2, READ CAPACITY) and, as QEMU 7.2 does where Xen
3.0.4 refused them, GET CONFIGURATION (the DVD-ROM/CD-ROM
profile list), GET EVENT STATUS NOTIFICATION (polled, the media class: the
NewMedia event after the host changed the disc, the tray and media status)
and SET CD SPEED; every other opcode fails ILLEGAL REQUEST / invalid
command operation code.
Replies go out in pieces no longer than the byte count limit the guest put
in the cylinder registers; reads one CD sector at a time, by PIO or, when
the PACKET command asked for it, the bus master. Imports nothing of
``spec/``.
"""

from __future__ import annotations

from impl.ide import DRQ, ERR, READY

# sense keys and additional sense codes
NOT_READY, ILLEGAL_REQUEST = 2, 5
ASC_ILLEGAL_OPCODE, ASC_LBA_OUT_OF_RANGE, ASC_INV_FIELD = 0x20, 0x21, 0x24
ASC_SAVING_NOT_SUPPORTED, ASC_NO_MEDIUM = 0x39, 0x3A
# the interrupt reason in the sector count register
CD, IO = 0x01, 0x02
# QEMU's CD_MAX_SECTORS: a disc larger than 80 minutes (in 512-byte sectors) is a DVD
DVD_ABOVE = 1440000


def _be16(b: bytes, at: int) -> int:
    return b[at] << 8 | b[at + 1]


def _be32(b: bytes, at: int) -> int:
    return int.from_bytes(b[at:at + 4], "big")


def _msf(lba: int) -> bytes:
    lba += 150
    return bytes(((lba // 75) // 60 & 0xFF, (lba // 75) % 60, lba % 75))


def ok(d) -> None:
    d.error = 0
    d.status = READY
    d.nsector = d.nsector & ~7 | IO | CD
    d.irq()


def error(d, key: int, asc: int) -> None:
    d.error = key << 4
    d.status = READY | ERR
    d.nsector = d.nsector & ~7 | IO | CD
    d.sense_key, d.asc = key, asc
    d.irq()


def read_sector(d) -> None:
    """The CD sector ``d.lba`` into the buffer: 2048 bytes of data, or the
    2352 of a raw mode-1 sector (sync, header, data, zero ECC); zeros for a
    sector not on the disc."""
    m = d.medium
    data = (m.read(d.lba, 1)[:2048] if d.inserted and 0 <= d.lba and (d.lba + 1) * 4
            <= d.nb_sectors else bytes(2048))
    if d.cd_sector == 2048:
        d.buf[0:2048] = data
    else:
        d.buf[0:2352] = (b"\x00" + b"\xff" * 10 + b"\x00" + _msf(d.lba) + b"\x01" + data
                         + bytes(288))


def reply_end(d) -> None:
    """ide_atapi_cmd_reply_end: the next piece of a reply, or its end."""
    if d.packet_size <= 0:
        d.transfer_stop()
        d.status = READY
        d.nsector = d.nsector & ~7 | IO | CD
        d.irq()
        return
    if d.lba != -1 and d.index >= d.cd_sector:
        read_sector(d)
        d.lba += 1
        d.index = 0
    if d.elem_size > 0:
        size = min(d.cd_sector - d.index, d.elem_size)
        d.start(d.index, size, d.reply_end)
        d.packet_size -= size
        d.elem_size -= size
        d.index += size
        return
    d.nsector = d.nsector & ~7 | IO
    limit = d.lcyl | d.hcyl << 8
    if limit == 0xFFFF:
        limit -= 1
    size = d.packet_size
    if size > limit:
        size = limit & ~1
    d.lcyl, d.hcyl = size & 0xFF, size >> 8 & 0xFF
    d.elem_size = size
    if d.lba != -1:
        size = min(size, d.cd_sector - d.index)
    d.start(d.index, size, d.reply_end)
    d.packet_size -= size
    d.elem_size -= size
    d.index += size
    d.irq()


def reply(d, data: bytes, max_len: int) -> None:
    """A reply: by DMA when the PACKET asked (as later qemu-dm), else PIO."""
    size = min(len(data), max_len)
    d.buf[0:len(data)] = data
    d.lba = -1
    d.packet_size, d.elem_size, d.index = size, 0, 0
    if d.atapi_dma:
        d.status = READY | DRQ
        d.channel.dma_start(d, lambda addr, n: reply_dma(d, addr, n))
    else:
        d.status = READY
        reply_end(d)


def reply_dma(d, addr: int, size: int) -> int:
    """The reply, in one chunk, to guest memory; 0 once it is all there."""
    n = min(size, d.packet_size)
    d.channel.mem_write(addr, d.buf[d.index:d.index + n])
    d.packet_size -= n
    d.index += n
    if d.packet_size > 0:
        return n
    d.status = READY
    d.nsector = d.nsector & ~7 | IO | CD
    return 0


def read(d, lba: int, count: int, sector_size: int) -> None:
    d.lba = lba
    d.packet_size = count * sector_size
    d.index = d.cd_sector = sector_size
    if d.atapi_dma:
        d.status = READY | DRQ
        d.channel.dma_start(d, lambda addr, size: read_dma(d, addr, size))
    else:
        d.elem_size = 0
        d.status = READY
        reply_end(d)


def read_dma(d, addr: int, size: int) -> int:
    """ide_atapi_cmd_read_dma_cb."""
    left = size
    while left > 0 and d.packet_size > 0:
        n = d.cd_sector - d.index
        if n <= 0:
            read_sector(d)
            d.lba += 1
            d.index = 0
            n = d.cd_sector
        n = min(n, left)
        d.channel.mem_write(addr, d.buf[d.index:d.index + n])
        d.packet_size -= n
        d.index += n
        left -= n
        addr += n
    if d.packet_size <= 0:
        d.status = READY
        d.nsector = d.nsector & ~7 | IO | CD
        return 0
    return size - left


def _toc(sectors: int, msf: bool, start: int) -> bytes | None:
    if start > 1 and start != 0xAA:
        return None
    out = bytearray(b"\0\0\x01\x01")
    if start <= 1:
        out += b"\x00\x14\x01\x00" + (b"\0" + _msf(0) if msf else bytes(4))
    out += b"\x00\x16\xaa\x00" + (b"\0" + _msf(sectors) if msf else
                                  (sectors & 0xFFFFFFFF).to_bytes(4, "big"))
    out[0:2] = (len(out) - 2).to_bytes(2, "big")
    return bytes(out)


def _toc_raw(sectors: int, msf: bool) -> bytes:
    out = bytearray(b"\0\0\x01\x01")
    out += b"\x01\x14\x00\xa0\x00\x00\x00\x00\x01\x00\x00"
    out += b"\x01\x14\x00\xa1\x00\x00\x00\x00\x01\x00\x00"
    out += b"\x01\x14\x00\xa2\x00\x00\x00" + (b"\0" + _msf(sectors) if msf else
                                               (sectors & 0xFFFFFFFF).to_bytes(4, "big"))
    out += b"\x01\x14\x00\x01\x00\x00\x00" + (b"\0" + _msf(0) if msf else bytes(4))
    out[0:2] = (len(out) - 2).to_bytes(2, "big")
    return bytes(out)


def _configuration(d, p: bytes) -> None:
    """GET CONFIGURATION from feature 0: header and Profile List."""
    if p[2] | p[3]:
        error(d, ILLEGAL_REQUEST, ASC_INV_FIELD)
        return
    out = bytearray(b"\x00\x00\x00\x10\x00\x00\x00\x00\x00\x00\x03\x08"
                    b"\x00\x10\x00\x00\x00\x08\x00\x00")
    if d.inserted:
        dvd = d.nb_sectors > DVD_ABOVE
        out[7] = 0x10 if dvd else 0x08
        out[14 if dvd else 18] = 1
    reply(d, bytes(out), _be16(p, 7))


def _events(d, p: bytes) -> None:
    """GET EVENT STATUS NOTIFICATION: polled only, the media class only."""
    if not p[1] & 1:
        error(d, ILLEGAL_REQUEST, ASC_INV_FIELD)
        return
    if not p[4] & 0x10:
        reply(d, b"\x00\x00\x80\x10", _be16(p, 7))
        return
    code = 0
    if d.tray_open:
        media = 1
    else:
        media = 2 if d.inserted else 0
        if d.new_media:
            d.new_media, code = False, 2
    reply(d, bytes((0, 4, 4, 0x10, code, media, 0, 0)), _be16(p, 7))


def _pad8(text: str, n: int) -> bytes:
    return text.encode("ascii")[:n].ljust(n, b" ")


def command(d) -> None:
    """A 12-byte packet is in the drive's buffer."""
    p = bytes(d.buf[0:12])
    op = p[0]
    inserted = d.inserted
    sectors = d.nb_sectors >> 2                      # CD sectors
    if op == 0x00:                                   # TEST UNIT READY
        if inserted:
            ok(d)
        else:
            error(d, NOT_READY, ASC_NO_MEDIUM)
    elif op == 0x5A:                                 # MODE SENSE (10)
        max_len, action, code = _be16(p, 7), p[2] >> 6, p[2] & 0x3F
        if action == 0 and code == 0x01:
            reply(d, b"\x00\x16\x70\x00\x00\x00\x00\x00\x01\x06\x00\x05\x00\x00\x00\x00",
                  max_len)
        elif action == 0 and code == 0x2A:
            page = bytearray(28)
            page[0:12] = b"\x00\x22\x70\x00\x00\x00\x00\x00\x2a\x12\x00\x00"
            page[12:16] = bytes((0x70, 3 << 5, 1 | 1 << 3 | 1 << 5, 0))
            if d.locked:
                page[6] |= 1 << 1
            page[16:20] = (706).to_bytes(2, "big") + b"\x00\x02"
            page[20:24] = (512).to_bytes(2, "big") + (706).to_bytes(2, "big")
            reply(d, bytes(page), max_len)
        elif action == 3:
            error(d, ILLEGAL_REQUEST, ASC_SAVING_NOT_SUPPORTED)
        else:
            error(d, ILLEGAL_REQUEST, ASC_INV_FIELD)
    elif op == 0x03:                                 # REQUEST SENSE
        sense = bytearray(18)
        sense[0], sense[2], sense[7], sense[12] = 0xF0, d.sense_key, 10, d.asc
        reply(d, bytes(sense), p[4])
    elif op == 0x1E:                                 # PREVENT/ALLOW MEDIUM REMOVAL
        if inserted:
            d.locked = bool(p[4] & 1)
            ok(d)
        else:
            error(d, NOT_READY, ASC_NO_MEDIUM)
    elif op in (0x28, 0xA8):                         # READ (10), READ (12)
        if not inserted:
            error(d, NOT_READY, ASC_NO_MEDIUM)
            return
        count = _be16(p, 7) if op == 0x28 else _be32(p, 6)
        lba = _be32(p, 2)
        if count == 0:
            ok(d)
        elif lba + count > sectors:
            error(d, ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE)
        else:
            read(d, lba, count, 2048)
    elif op == 0xBE:                                 # READ CD
        if not inserted:
            error(d, NOT_READY, ASC_NO_MEDIUM)
            return
        count, lba = int.from_bytes(p[6:9], "big"), _be32(p, 2)
        if count == 0:
            ok(d)
        elif lba + count > sectors:
            error(d, ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE)
        elif p[9] & 0xF8 == 0x00:
            ok(d)
        elif p[9] & 0xF8 == 0x10:
            read(d, lba, count, 2048)
        elif p[9] & 0xF8 == 0xF8:
            read(d, lba, count, 2352)
        else:
            error(d, ILLEGAL_REQUEST, ASC_INV_FIELD)
    elif op == 0x2B:                                 # SEEK (10)
        if not inserted:
            error(d, NOT_READY, ASC_NO_MEDIUM)
        elif _be32(p, 2) > sectors:
            error(d, ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE)
        else:
            ok(d)
    elif op == 0x1B:                                 # START STOP UNIT
        if p[4] & 2:
            if p[4] & 1:                             # load: the tray closes
                d.tray_open = False
            else:                                    # eject: the disc leaves
                d.inserted, d.tray_open = False, True
        ok(d)
    elif op == 0x46:                                 # GET CONFIGURATION
        _configuration(d, p)
    elif op == 0x4A:                                 # GET EVENT STATUS NOTIFICATION
        _events(d, p)
    elif op == 0xBB:                                 # SET CD SPEED
        ok(d)
    elif op == 0xBD:                                 # MECHANISM STATUS
        reply(d, b"\x00\x00\x00\x00\x00\x01\x00\x00", _be16(p, 8))
    elif op == 0x43:                                 # READ TOC/PMA/ATIP
        if not inserted:
            error(d, NOT_READY, ASC_NO_MEDIUM)
            return
        max_len, fmt, msf = _be16(p, 7), p[9] >> 6, bool(p[1] & 2)
        if fmt == 0:
            toc = _toc(sectors, msf, p[6])
        elif fmt == 1:
            toc = b"\x00\x0a\x01\x01" + bytes(8)
        elif fmt == 2:
            toc = _toc_raw(sectors, msf)
        else:
            toc = None
        if toc is None:
            error(d, ILLEGAL_REQUEST, ASC_INV_FIELD)
        else:
            reply(d, toc, max_len)
    elif op == 0x25:                                 # READ CAPACITY
        if not inserted:
            error(d, NOT_READY, ASC_NO_MEDIUM)
            return
        reply(d, (sectors - 1 & 0xFFFFFFFF).to_bytes(4, "big") + (2048).to_bytes(4, "big"), 8)
    elif op == 0x12:                                 # INQUIRY
        data = (b"\x05\x80\x00\x21\x1f\x00\x00\x00" + _pad8("QEMU", 8)
                + _pad8("QEMU CD-ROM", 16) + _pad8("0.8.2", 4))
        reply(d, data, p[4])
    else:
        error(d, ILLEGAL_REQUEST, ASC_ILLEGAL_OPCODE)
