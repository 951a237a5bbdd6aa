"""The VGA's video memory as the CPU reaches it through the legacy window: four
planes, the latches, the read and write modes.

Room: the rules of one byte access to the window ``0xA0000``-``0xBFFFF``
(IBM VGA Technical Reference, "Graphics Controller Registers" and
"Sequencer Registers"; Xen 3.0.4's qemu-dm ``tools/ioemu/hw/vga.c``,
``vga_mem_readb`` and ``vga_mem_writeb``, which QEMU's ``hw/display/vga.c``
still follows). Pure functions of the registers, the video memory and the
latches; the device that owns them is :mod:`spec.devices.vga`. Imports
nothing of the model.

Video memory is four *planes* of bytes. It is stored as qemu-dm stores it:
plane *p* of word *w* is byte ``4 * w + p``, so that one 32-bit word holds
the four bytes the latches load at once, and a chain-4 access is a plain
byte index.

Which window decodes (graphics controller register 6, bits 3:2):

====  =====================  ==========================================
map   window                 offset into video memory
====  =====================  ==========================================
0     ``0xA0000``, 128 KiB    the address less ``0xA0000``
1     ``0xA0000``, 64 KiB     the same plus the VBE bank offset
2     ``0xB0000``, 32 KiB     the address less ``0xB0000``
3     ``0xB8000``, 32 KiB     the address less ``0xB8000``
====  =====================  ==========================================

A byte outside the selected window reads ``0xFF`` and writes nothing.

How an offset reaches the planes (checked in this order):

chain 4 (sequencer register 4 bit 3)
    the offset is the byte index: plane ``offset & 3``, word ``offset >> 2``
    (mode 13h's linear 320x200 pixels). A write lands if the map mask
    (sequencer register 2) enables that plane.
odd/even (graphics controller register 5 bit 4)
    plane ``(GR4 & 2) | (offset & 1)``, word ``offset >> 1``: the text
    modes' characters (even offsets, plane 0) and attributes (odd, plane 1).
    A write lands if the map mask enables that plane.
planar
    word ``offset``. A read loads the four planes into the *latches*, then
    returns, in read mode 0 (GR5 bit 3 clear), the plane GR4 selects; in
    read mode 1, a bit set where all four planes match the colour compare
    (GR2) in the planes the colour don't-care register (GR7) selects.
    A write makes a 32-bit value by the write mode (GR5 bits 1:0):

    0. the byte rotated right by GR3 bits 2:0, copied to the four planes,
       each plane whose enable set/reset bit (GR1) is set taking its
       set/reset bit (GR0) as all ones or all zeros;
    1. the latches, unchanged (a copy of what was read);
    2. the byte's low four bits as all ones or zeros per plane;
    3. the set/reset colour (GR0) per plane, with the bit mask ANDed with
       the rotated byte;

    then (modes 0, 2 and 3) combines it with the latches by GR3 bits 4:3
    (replace, AND, OR, XOR), takes from it only the bits the bit mask
    (GR8) selects and the rest from the latches, and stores the planes the
    map mask enables.
"""

from __future__ import annotations

from typing import NamedTuple

PLANES = 4
#: (window start, size) by GR6 bits 3:2
WINDOWS = ((0xA0000, 0x20000), (0xA0000, 0x10000), (0xB0000, 0x8000), (0xB8000, 0x8000))

# register numbers (sequencer: SR, graphics controller: GR)
SR_MAP_MASK, SR_MEMORY_MODE = 2, 4
GR_SET_RESET, GR_ENABLE_SET_RESET, GR_COLOR_COMPARE, GR_DATA_ROTATE = 0, 1, 2, 3
GR_READ_MAP, GR_MODE, GR_MISC, GR_COLOR_DONT_CARE, GR_BIT_MASK = 4, 5, 6, 7, 8


class Registers(NamedTuple):
    """What the memory rules read: the sequencer's and the graphics
    controller's registers (indexable, as the device keeps them), and the
    VBE bank offset in bytes (DISPI register 5 times 64 KiB, which QEMU's
    ``vga_mem_readb``/``vga_mem_writeb`` add in memory map 1)."""

    sr: bytes | bytearray
    gr: bytes | bytearray
    bank: int = 0


def expand(planes: int) -> int:
    """A 4-bit plane set as a 32-bit word: byte *p* all ones where bit *p*
    is set (qemu-dm's ``mask16``)."""
    return sum(0xFF << 8 * p for p in range(PLANES) if planes >> p & 1)


def offset_of(regs: Registers, address: int) -> int | None:
    """The offset into video memory's addressing of a guest-physical
    ``address`` in the legacy window, or None when the selected window does
    not decode it."""
    memory_map = regs.gr[GR_MISC] >> 2 & 3
    start, size = WINDOWS[memory_map]
    offset = address - start
    if not 0 <= offset < size:
        return None
    return offset + regs.bank if memory_map == 1 else offset


def _odd_even_index(regs: Registers, offset: int) -> int:
    plane = (regs.gr[GR_READ_MAP] & 2) | (offset & 1)
    return (offset & ~1) << 1 | plane


def read(vram: bytearray, latch: int, regs: Registers, address: int) -> tuple[int, int]:
    """A byte read at ``address``: (value, the latches after it)."""
    offset = offset_of(regs, address)
    if offset is None:
        return 0xFF, latch
    if regs.sr[SR_MEMORY_MODE] & 0x08:                   # chain 4
        return _byte(vram, offset), latch
    if regs.gr[GR_MODE] & 0x10:                          # odd/even
        return _byte(vram, _odd_even_index(regs, offset)), latch
    latch = _word(vram, offset)
    if not regs.gr[GR_MODE] & 0x08:                      # read mode 0
        return latch >> 8 * (regs.gr[GR_READ_MAP] & 3) & 0xFF, latch
    differ = (latch ^ expand(regs.gr[GR_COLOR_COMPARE])) & expand(regs.gr[GR_COLOR_DONT_CARE])
    differ |= differ >> 16
    differ |= differ >> 8
    return ~differ & 0xFF, latch                          # read mode 1


def write(vram: bytearray, latch: int, regs: Registers, address: int, value: int
          ) -> tuple[int, int] | None:
    """A byte write at ``address``: the range of video memory it changed
    (start, length), or None when it touched nothing."""
    offset = offset_of(regs, address)
    if offset is None:
        return None
    map_mask = regs.sr[SR_MAP_MASK]
    if regs.sr[SR_MEMORY_MODE] & 0x08 or regs.gr[GR_MODE] & 0x10:
        chain4 = bool(regs.sr[SR_MEMORY_MODE] & 0x08)
        index = offset if chain4 else _odd_even_index(regs, offset)
        if not map_mask >> (index & 3) & 1 or index >= len(vram):
            return None
        vram[index] = value & 0xFF
        return index, 1
    if (offset + 1) * PLANES > len(vram):
        return None
    word = _planar_value(latch, regs, value & 0xFF)
    keep = expand(map_mask)
    old = _word(vram, offset)
    new = old & ~keep | word & keep
    vram[PLANES * offset:PLANES * offset + PLANES] = new.to_bytes(PLANES, "little")
    return PLANES * offset, PLANES


def _planar_value(latch: int, regs: Registers, value: int) -> int:
    """The 32-bit word a planar write stores (before the map mask)."""
    gr = regs.gr
    mode, rotate = gr[GR_MODE] & 3, gr[GR_DATA_ROTATE] & 7
    rotated = (value >> rotate | value << (8 - rotate)) & 0xFF
    if mode == 1:
        return latch
    bit_mask = gr[GR_BIT_MASK]
    if mode == 0:
        word = rotated * 0x01010101
        enable = expand(gr[GR_ENABLE_SET_RESET])
        word = word & ~enable | expand(gr[GR_SET_RESET]) & enable
    elif mode == 2:
        word = expand(value & 0x0F)
    else:
        bit_mask &= rotated
        word = expand(gr[GR_SET_RESET])
    function = gr[GR_DATA_ROTATE] >> 3 & 3
    if function == 1:
        word &= latch
    elif function == 2:
        word |= latch
    elif function == 3:
        word ^= latch
    mask = bit_mask * 0x01010101
    return word & mask | latch & ~mask & 0xFFFFFFFF


def _byte(vram: bytearray, index: int) -> int:
    return vram[index] if index < len(vram) else 0xFF


def _word(vram: bytearray, offset: int) -> int:
    start = PLANES * offset
    if start + PLANES > len(vram):
        return 0xFFFFFFFF
    return int.from_bytes(vram[start:start + PLANES], "little")
