"""The VGA's register file: the ports of the standard VGA and of the Bochs VBE
extension, and what the scanner derives from them.

Room: the state behind ports ``0x3B4``-``0x3DA`` and ``0x1CE``-``0x1D0`` and
the rules of each access, as qemu-dm's ``tools/ioemu/hw/vga.c`` (Xen 3.0.4:
``vga_ioport_read``, ``vga_ioport_write``, ``vbe_ioport_read_data``,
``vbe_ioport_write_data``) and QEMU 7.2's ``hw/display/vga.c`` have them;
where the two differ this module follows QEMU 7.2, the peer its tests run
against, and the last section lists each difference. The register
meanings are the IBM VGA Technical Reference's ("Sequencer Registers",
"CRT Controller Registers", "Graphics Controller Registers", "Attribute
Controller Registers", "Video DAC Palette Registers", "General Registers").
Imports :mod:`spec.devices.vga_memory` only for the registers tuple its
memory rules read (:meth:`VgaRegisters.memory_registers`).

Ports
-----

==============  ========================================================================
port            register
==============  ========================================================================
0x3C0           attribute controller: index and data share one write port through a
                flip-flop (first write: index, bits 4:0 the register, bit 5 the
                palette address source; second write: data). Reading it gives the
                index while the flip-flop expects an index, else 0.
0x3C1           attribute controller data (read)
0x3C2           miscellaneous output (write); input status 0 (read: always 0)
0x3C4 / 0x3C5   sequencer index (3 bits) / data
0x3C6           DAC pixel mask: not implemented (reads 0, writes ignored)
0x3C7           DAC read index (write); DAC state (read: 0 after a write index was
                set, 3 after a read index)
0x3C8           DAC write index (write and read)
0x3C9           DAC data: red, green, blue of one colour in turn, then the index
                advances (one sub-index counter serves reads and writes)
0x3CA           feature control (read)
0x3CC           miscellaneous output (read)
0x3CE / 0x3CF   graphics controller index (4 bits) / data
0x3B4 / 0x3B5   CRTC index / data, monochrome addresses
0x3D4 / 0x3D5   CRTC index / data, colour addresses (256 data registers are kept,
                whatever the index)
0x3BA / 0x3DA   input status 1 (read; also resets the attribute flip-flop);
                feature control (write, bit 4 kept)
0x1CE           VBE DISPI index (16-bit)
0x1CF, 0x1D0    VBE DISPI data (16-bit)
==============  ========================================================================

Every other port of ``0x3B0``-``0x3DF`` is not decoded: it reads ``0xFF``
(the floating ISA bus) and ignores writes. Other ports of ``0x3C0``-``0x3CF``
read 0. Of the ``0x3Bx`` and ``0x3Dx`` sets only one answers: the colour set
(``0x3Dx``) while the miscellaneous output register's bit 0 (I/O address
select) is set, the monochrome set (``0x3Bx``) while it is clear; the other
set reads ``0xFF`` and ignores writes. At power-on every register is 0, so
the monochrome set answers until a BIOS selects colour.

A 16-bit access to a VGA port is two byte accesses, the low byte at the port
and the high byte at the next (so ``outw 0x3C4, 0x0F02`` sets sequencer
register 2 to 0x0F); a 32-bit one is not decoded (reads all ones). A byte
access to a VBE port is not decoded (reads ``0xFF``).

Written values keep only the bits a register implements (:data:`SR_MASK`,
:data:`GR_MASK`, and per attribute register; the miscellaneous output drops
bit 4, feature control keeps only bit 4); the CRTC keeps all 8 bits.
While CRTC register 0x11 bit 7 (protect) is set, writes to CRTC registers
0-7 are ignored, except bit 4 of register 7 (line compare bit 8).

Input status 1 on virtual time
------------------------------

Bit 3 (vertical retrace) and bit 0 (display enable NOT: not in the shown
part of a line or frame) are a function of virtual time, which the caller
passes in nanoseconds (hvmspec counts one retired instruction as one
nanosecond), and of the CRTC timing registers (:meth:`VgaRegisters.timing`):
the dot clock is 25.175 MHz or 28.322 MHz by miscellaneous output bits 3:2
(0 and 1; 2 and 3 count as 25.175), halved by sequencer register 1 bit 3; a
character is 8 dots (sequencer register 1 bit 0 set) or 9; a line is CRTC
register 0 plus 5 characters, of which register 1 plus 1 are shown; a frame
is the vertical total (register 6 with bits 8 and 9 in register 7 bits 0
and 5) plus 2 lines, of which the vertical display end (register 0x12, bits
8 and 9 in register 7 bits 1 and 6) plus 1 are shown. Vertical retrace
starts at line register 0x10 (bits 8 and 9 in register 7 bits 2 and 7) and
ends at the next line whose low 4 bits equal register 0x11 bits 3:0. The
frame starts at time 0. In mode 3 this is VESA 720x400 at 70 Hz, retrace
during lines 412 and 413 of 449.

QEMU does not do this: its default ("dumb") method toggles both bits on every
read (first 0x09, then 0x00, ...), whatever the time, and so did Xen 3.0.4's
qemu-dm; QEMU's optional "precise" method reads its virtual clock, which
without ``-icount`` follows the host's clock. Neither is a function of the
guest's progress, so the spec does not follow them. The other bits of input
status 1 are 0, as in both.

Bochs VBE DISPI
---------------

Index ``0x1CE`` selects a 16-bit register, ``0x1CF`` reads or writes it:

=====  =============  ==================================================================
index  register       written value
=====  =============  ==================================================================
0      ID             kept if it is ``0xB0C0``-``0xB0C5`` (the BIOS writes the
                      version it speaks and reads back what the card accepts;
                      power-on value ``0xB0C5``)
1      XRES           kept; while enabled, rounded down to a multiple of 8, 0 as 8,
                      at most 16000
2      YRES           kept; while enabled, 0 as 1, at most 12000 and at most what
                      video memory holds at the virtual width
3      BPP            kept; while enabled, other than 4, 8, 15, 16, 24, 32 becomes 8
                      (15 takes 16 bits a pixel)
4      ENABLE         bit 0 enabled, 1 GETCAPS, 5 8-bit DAC, 6 LFB (the BIOS's
                      record: the LFB is always decoded), 7 do not clear memory
5      BANK           masked to video memory's 64 KiB banks; the bank the 64 KiB
                      window at ``0xA0000`` (memory map 1) shows
6      VIRT_WIDTH     kept; while enabled, rounded down to 8, at most 16000, at
                      least XRES
7      VIRT_HEIGHT    read only: the lines video memory holds at the virtual width
8, 9   X/Y_OFFSET     kept; while enabled, moved back to 0 when the screen would
                      end beyond video memory (Y first, then X)
10     VIDEO_MEMORY   read only: video memory in 64 KiB units (256: 16 MiB)
=====  =============  ==================================================================

While GETCAPS is set, XRES, YRES and BPP read the maxima (16000, 12000, 32).
Indexes above 10 read 0.

Enabling (ENABLE bit 0 rising) zeroes VIRT_WIDTH and both offsets, fixes the
registers up as above, clears the first ``YRES * line length`` bytes of video
memory unless bit 7 is set, and programs the VGA registers for a linear mode:
graphics controller register 6 gets graphics mode and memory map 1 (64 KiB
at ``0xA0000``), register 5 bits 6:5 (shift control) 2 (0 at 4 bpp); CRTC
register 0x17 bits 1:0 set, 0x13 (offset) the line length / 8, 1 (horizontal
display end) XRES / 8 - 1, 0x12 and register 7 bits 1 and 6 YRES - 1, 0x18
and the other line compare bits all ones, 0x09 bits 7 and 4:0 (double scan,
maximum scan line) clear. While enabled, every write to a graphics controller
or CRTC register, and every write of XRES, YRES, BPP, VIRT_WIDTH or an
offset, programs these registers again. The sequencer is not touched:
memory accesses and the scanner use a second copy of sequencer registers
while VBE is enabled (QEMU's ``sr_vbe``), zero at power-on, in which
enabling sets chain 4 (register 4 bit 3) and all planes (register 2), or at
4 bpp clears register 1 bit 3; the sequencer ports still read what the
guest wrote. Writing ENABLE with bit 0 set while enabled, or clear, moves
the bank back to 0 (the BANK register keeps its value).

Derived quantities
------------------

:meth:`VgaRegisters.display` gives what QEMU's display code derives (its
``vga_update_display``, ``vga_get_text_resolution``, ``vga_get_resolution``,
``vga_get_offsets``): the mode, the picture's size in pixels, where video
memory's lines start, and for text modes the character cell, the columns and
rows, the cursor, the two fonts and the line graphics bit (for graphics
modes the CRTC mode register and the plane enable): everything
:mod:`spec.devices.vga_scanner` draws by. :meth:`VgaRegisters.palette_rgb`
gives the colours. The mode is:

``blank``
    attribute index bit 5 (palette address source) clear: nothing shows;
``text``
    graphics controller register 6 bit 0 clear: character cells of
    ``(CRTC 1 + 1)`` columns by ``(vertical display end + 1) / (CRTC 9
    bits 4:0 + 1)`` rows, 9 dots wide, 8 when sequencer register 1 bit 0 is
    set, 16 when its bit 3 (half dot clock) is set (40-column modes);
``planar16``, ``cga4``
    graphics, shift control (graphics controller register 5 bits 6:5) 0
    or 1: ``(CRTC 1 + 1) * 8`` pixels a line, twice that at half dot
    clock (modes 0Dh, 04h: 640 wide), by vertical display end + 1 lines;
``chain4-256``
    shift control 2 or 3, VBE off: 256 colours, bytes in video memory's
    order; the same size rule, so mode 13h is 640x400, each pixel and each
    line twice (as QEMU draws and screendumps it);
``linear``
    VBE on, above 4 bits a pixel: XRES by YRES at BPP (VBE at 4 bpp is
    ``planar16`` of that size).

Where Xen 3.0.4's qemu-dm differs
---------------------------------

Xen 3.0.4's ``vga.c`` and ``vga_int.h`` have the same VGA registers (the same
masks, protect rule, flip-flop, DAC cycle and address decoding) but an older
Bochs VBE and retrace:

- The VBE ID accepts ``0xB0C0``-``0xB0C2`` (QEMU: to ``0xB0C5``), and reads
  ``0xB0C0`` at power-on (QEMU: ``0xB0C5``).
- The VBE maxima are 1600x1200 (QEMU: 16000x12000). Index 10 (video memory
  in 64 KiB units) is not implemented.
- XRES, YRES and BPP writes out of range are ignored: the register keeps its
  value (QEMU keeps any value and fixes it up while VBE is enabled).
- A VIRT_WIDTH below XRES, or leaving fewer lines than YRES, is ignored; the
  offsets are not checked against video memory.
- Enabling sets VIRT_WIDTH to XRES and VIRT_HEIGHT to YRES, and writes
  sequencer registers 4 (chain 4), 2 (all planes) and 1 themselves, so the
  guest reads them back changed (QEMU: the separate VBE copy). At 4 bpp
  the map mask is then the guest's (vgabios's mode 6Ah: all planes); in
  QEMU the VBE copy's map mask stays 0 unless an 8 bpp or deeper mode was
  enabled since power-on, so planar writes in a 4 bpp VBE mode change
  nothing.
- The VGA registers are programmed once, when VBE is enabled, not again
  after each graphics controller or CRTC write.
- No 8-bit DAC: ENABLE bit 5 is kept but changes no colour.
- Input status 1 toggles on every read, as QEMU's default method does.
- At power-on qemu-dm's ``vga_bios_init`` ("do the same job as vgabios before
  vgabios get ready") puts the VGA in mode 3, as :meth:`VgaRegisters.bios_init`
  does; QEMU's VGA starts with every register 0.
- Video memory is 8 MiB (``VGA_RAM_SIZE``; QEMU's ``-vga std``: 16 MiB), so
  index 5 (BANK) keeps 7 bits; :class:`VgaRegisters` takes the size.
"""

from __future__ import annotations

from typing import NamedTuple

from spec.devices import vga_memory

#: video memory of QEMU's ``-vga std`` (``vgamem_mb`` 16)
VRAM_SIZE = 16 << 20

#: implemented bits of the sequencer and graphics controller registers
SR_MASK = (0x03, 0x3D, 0x0F, 0x3F, 0x0E, 0x00, 0x00, 0xFF)
GR_MASK = (0x0F, 0x0F, 0x0F, 0x1F, 0x03, 0x7B, 0x0F, 0x0F, 0xFF) + (0x00,) * 7
#: implemented bits of attribute controller registers 0x10-0x14 (0-0xF: 0x3F)
AR_MASK = {0x10: 0xEF, 0x11: 0xFF, 0x12: 0x3F, 0x13: 0x0F, 0x14: 0x0F}
AR_COUNT = 0x15
CR_COUNT = 256
MISC_COLOUR = 0x01                    # miscellaneous output: I/O address select
AR_PALETTE_SOURCE = 0x20              # attribute index bit 5: the screen shows

#: the ports the VGA decodes (byte and word accesses; the VBE ports: word only)
VGA_PORTS = (0x3B4, 0x3B5, 0x3BA, *range(0x3C0, 0x3D0), 0x3D4, 0x3D5, 0x3DA)
VBE_INDEX_PORT, VBE_DATA_PORTS = 0x1CE, (0x1CF, 0x1D0)
VBE_PORTS = (VBE_INDEX_PORT, *VBE_DATA_PORTS)

# input status 1 bits
ST01_DISPLAY_DISABLED, ST01_VERTICAL_RETRACE = 0x01, 0x08
#: dot clocks by miscellaneous output bits 3:2
DOT_CLOCKS_HZ = (25_175_000, 28_322_000, 25_175_000, 25_175_000)

# VBE DISPI registers (QEMU's VBE_DISPI_INDEX_*)
(VBE_ID, VBE_XRES, VBE_YRES, VBE_BPP, VBE_ENABLE, VBE_BANK, VBE_VIRT_WIDTH,
 VBE_VIRT_HEIGHT, VBE_X_OFFSET, VBE_Y_OFFSET) = range(10)
VBE_REGISTERS = 10
VBE_VIDEO_MEMORY_64K = 10
VBE_ID0, VBE_ID5 = 0xB0C0, 0xB0C5
VBE_MAX_XRES, VBE_MAX_YRES, VBE_MAX_BPP = 16000, 12000, 32
VBE_ENABLED, VBE_GETCAPS, VBE_8BIT_DAC, VBE_LFB_ENABLED, VBE_NOCLEARMEM = (
    0x01, 0x02, 0x20, 0x40, 0x80)
VBE_DEPTHS = (4, 8, 15, 16, 24, 32)

# Xen 3.0.4 qemu-dm's vga_bios_init: mode 3 as vgabios would leave it, the
# cursor on row 18 (the first 64 DAC colours in 8-bit EGA values for 0-15,
# which the 6-bit DAC reads as their low 6 bits)
BIOS_INIT_SR = bytes.fromhex("0300030002000000")
BIOS_INIT_GR = bytes.fromhex("0000000000100e0fff")
BIOS_INIT_AR = bytes.fromhex("000102030405060708090a0b0c0d0e0f0c000f0800")
BIOS_INIT_CR = bytes.fromhex("5f4f50825581bf1f004f0e0f000005a09c8e8f281f96b9a3ff")
BIOS_INIT_PALETTE = bytes.fromhex(
    "0000000000aa00aa0000aaaaaa0000aa00aaaa5500aaaaaa5555555555ff55ff5555ffffff5555ff55ff"
    "ffff55ffffff00150000152a003f00003f2a2a15002a152a2a3f002a3f2a00151500153f003f15003f3f"
    "2a15152a153f2a3f152a3f3f15000015002a152a00152a2a3f00003f002a3f2a003f2a2a15001515003f"
    "152a15152a3f3f00153f003f3f2a153f2a3f15150015152a153f00153f2a3f15003f152a3f3f003f3f2a"
    "15151515153f153f15153f3f3f15153f153f3f3f153f3f3f")

# what the display shows (:meth:`VgaRegisters.display`)
BLANK, TEXT, PLANAR16, CGA4, CHAIN4_256, LINEAR = (
    "blank", "text", "planar16", "cga4", "chain4-256", "linear")


class Timing(NamedTuple):
    """The CRTC's raster timing (module docstring, "Input status 1")."""

    dot_hz: int
    dots_per_char: int            # dots a character clock (8 or 9, times 2 when halved)
    line_chars: int               # characters a line
    shown_chars: int              # characters shown a line
    frame_lines: int
    shown_lines: int
    retrace_start: int            # first line of vertical retrace
    retrace_lines: int            # lines of vertical retrace (1-16)


class Display(NamedTuple):
    """What the scanner reads the picture by (QEMU's display code).

    ``width`` and ``height`` are the picture in pixels; 0 in mode
    ``BLANK`` (attribute index bit 5 clear: the screen shows nothing, and
    QEMU paints the last picture it drew black). Graphics modes:
    ``depth`` bits a pixel in video memory (4 planar, 2 CGA, 8 chain-4 or
    VBE 8, VBE 15/16/24/32); ``start`` the byte of video memory the first
    line starts at; ``line_offset`` bytes from one line to the next;
    ``line_compare`` the picture line after which lines restart at byte 0;
    ``scan_lines`` how many picture lines each memory line fills (double
    scan and the maximum scan line); ``half_clock`` pixels doubled
    horizontally (sequencer register 1 bit 3). Text modes add the
    character cell (``char_width`` 8, 9 or 16 dots, ``char_height``), the
    ``columns`` and ``rows``, and the ``cursor``: (the word of video memory
    it marks, CRTC 0x0E:0x0F; first and last scan line, CRTC 0x0A and 0x0B
    bits 4:0) or None when hidden (CRTC 0x0A bit 5); ``fonts``: where the
    glyphs of characters whose attribute bit 3 is clear, and set, start
    (byte of video memory, plane 2: sequencer register 3's character map
    select B and A); ``line_graphics``: attribute register 0x10 bit 2
    (9-dot cells repeat the 8th column of line-drawing characters).
    Graphics modes add ``crtc_mode`` (CRTC 0x17: bits 0 and 1 clear put
    the memory line's bits 0 and 1 into address bits 14 or 15 and 15, the
    CGA's and Hercules' interleaved banks) and ``plane_enable``
    (attribute register 0x12 bits 3:0: the planes the 16- and 4-colour
    modes show)."""

    mode: str
    width: int
    height: int
    depth: int = 0
    start: int = 0
    line_offset: int = 0
    line_compare: int = 0
    scan_lines: int = 1
    half_clock: bool = False
    char_width: int = 0
    char_height: int = 0
    columns: int = 0
    rows: int = 0
    cursor: tuple[int, int, int] | None = None
    fonts: tuple[int, int] = (2, 2)
    line_graphics: bool = False
    crtc_mode: int = 0x03
    plane_enable: int = 0x0F


def c6_to_8(value: int) -> int:
    """A 6-bit DAC component as 8 bits (QEMU's ``c6_to_8``: the low bit
    repeated into the two new ones)."""
    value &= 0x3F
    low = value & 1
    return value << 2 | low << 1 | low


class VgaRegisters:
    """The register file of one VGA (module docstring)."""

    def __init__(self, vram_size: int = VRAM_SIZE) -> None:
        if vram_size < 1 << 16 or vram_size & 0xFFFF:
            raise ValueError(f"video memory must be a multiple of 64 KiB, not {vram_size}")
        self.vram_size = vram_size
        self.reset()

    def reset(self) -> None:
        """Power-on state (QEMU's ``vga_common_reset``): every register 0,
        the VBE ID ``0xB0C5``."""
        self.sr, self.sr_vbe, self.gr = bytearray(8), bytearray(8), bytearray(16)
        self.ar, self.cr = bytearray(AR_COUNT), bytearray(CR_COUNT)
        self.sr_index = self.gr_index = self.ar_index = self.cr_index = 0
        self.ar_flip_flop = 0                   # 0: the next 0x3C0 write is an index
        self.msr = self.fcr = 0
        self.palette = bytearray(3 * 256)       # DAC: red, green, blue of each colour
        self.dac_state = self.dac_sub_index = 0
        self.dac_read_index = self.dac_write_index = 0
        self.dac_cache = bytearray(3)
        self.dac_8bit = False
        self.vbe_index = 0
        self.vbe_regs = [0] * VBE_REGISTERS
        self.vbe_regs[VBE_ID] = VBE_ID5
        self.vbe_line_offset = self.vbe_start_addr = 0
        self.bank_offset = 0

    def bios_init(self) -> None:
        """Xen 3.0.4 qemu-dm's power-on state (``vga_bios_init``): mode 3
        text, colour addresses (miscellaneous output 0x67), the screen on
        (attribute index 0x20), the flip-flop expecting data, the DAC write
        index at 16 and its first 64 colours loaded. QEMU has no such step:
        its VGA BIOS sets the mode."""
        self.reset()
        self.sr[:], self.gr[:9], self.ar[:] = BIOS_INIT_SR, BIOS_INIT_GR, BIOS_INIT_AR
        self.cr[:len(BIOS_INIT_CR)] = BIOS_INIT_CR
        self.sr_index, self.gr_index, self.ar_index, self.cr_index = 3, 5, 0x20, 15
        self.ar_flip_flop, self.msr, self.dac_write_index = 1, 0x67, 16
        self.dac_cache[:] = b"\xff\xff\xff"
        self.palette[:len(BIOS_INIT_PALETTE)] = BIOS_INIT_PALETTE

    # --- ports -------------------------------------------------------------------------------

    @staticmethod
    def decodes(port: int, size: int) -> bool:
        """Whether an access of ``size`` bytes at ``port`` reaches the VGA."""
        if size == 2 and port in VBE_PORTS:
            return True
        return size in (1, 2) and port in VGA_PORTS

    def read(self, port: int, size: int, now_ns: int) -> int:
        """A read of ``size`` bytes at ``port`` at virtual time ``now_ns``."""
        if port in VBE_PORTS:
            if size != 2:
                return (1 << 8 * size) - 1
            return self.vbe_index if port == VBE_INDEX_PORT else self._vbe_read_data()
        if size == 2:
            return self._read_byte(port, now_ns) | self._read_byte(port + 1, now_ns) << 8
        if size != 1:
            return (1 << 8 * size) - 1
        return self._read_byte(port, now_ns)

    def write(self, port: int, size: int, value: int) -> int:
        """A write of ``size`` bytes at ``port``. Returns how many bytes at
        the start of video memory the write clears (a VBE mode set), else 0."""
        if port in VBE_PORTS:
            if size != 2:
                return 0
            if port == VBE_INDEX_PORT:
                self.vbe_index = value & 0xFFFF
                return 0
            return self._vbe_write_data(value & 0xFFFF)
        if size == 2:
            self._write_byte(port, value & 0xFF)
            self._write_byte(port + 1, value >> 8 & 0xFF)
        elif size == 1:
            self._write_byte(port, value & 0xFF)
        return 0

    def answers(self, port: int) -> bool:
        """A decoded VGA port answers unless it is of the CRTC / input status
        set the I/O address select does not pick (module docstring)."""
        if port not in VGA_PORTS:
            return False
        if 0x3B0 <= port <= 0x3BF:
            return not self.msr & MISC_COLOUR
        if 0x3D0 <= port <= 0x3DF:
            return bool(self.msr & MISC_COLOUR)
        return True

    def _read_byte(self, port: int, now_ns: int) -> int:
        if not self.answers(port):
            return 0xFF
        if port == 0x3C0:
            return 0 if self.ar_flip_flop else self.ar_index
        if port == 0x3C1:
            index = self.ar_index & 0x1F
            return self.ar[index] if index < AR_COUNT else 0
        if port == 0x3C4:
            return self.sr_index
        if port == 0x3C5:
            return self.sr[self.sr_index]
        if port == 0x3C7:
            return self.dac_state
        if port == 0x3C8:
            return self.dac_write_index
        if port == 0x3C9:
            value = self.palette[3 * self.dac_read_index + self.dac_sub_index]
            self.dac_sub_index += 1
            if self.dac_sub_index == 3:
                self.dac_sub_index = 0
                self.dac_read_index = (self.dac_read_index + 1) & 0xFF
            return value
        if port == 0x3CA:
            return self.fcr
        if port == 0x3CC:
            return self.msr
        if port == 0x3CE:
            return self.gr_index
        if port == 0x3CF:
            return self.gr[self.gr_index]
        if port in (0x3B4, 0x3D4):
            return self.cr_index
        if port in (0x3B5, 0x3D5):
            return self.cr[self.cr_index]
        if port in (0x3BA, 0x3DA):
            self.ar_flip_flop = 0
            return self.input_status_1(now_ns)
        return 0                       # 0x3C2 (input status 0), 0x3C3, 0x3C6, 0x3CB, 0x3CD

    def _write_byte(self, port: int, value: int) -> None:
        if not self.answers(port):
            return
        if port == 0x3C0:
            self._write_attribute(value)
        elif port == 0x3C2:
            self.msr = value & ~0x10
        elif port == 0x3C4:
            self.sr_index = value & 7
        elif port == 0x3C5:
            self.sr[self.sr_index] = value & SR_MASK[self.sr_index]
        elif port == 0x3C7:
            self.dac_read_index, self.dac_sub_index, self.dac_state = value, 0, 3
        elif port == 0x3C8:
            self.dac_write_index, self.dac_sub_index, self.dac_state = value, 0, 0
        elif port == 0x3C9:
            self._write_dac(value)
        elif port == 0x3CE:
            self.gr_index = value & 0x0F
        elif port == 0x3CF:
            self.gr[self.gr_index] = value & GR_MASK[self.gr_index]
            self._program_vga_for_vbe()
        elif port in (0x3B4, 0x3D4):
            self.cr_index = value
        elif port in (0x3B5, 0x3D5):
            self._write_crtc(value)
        elif port in (0x3BA, 0x3DA):
            self.fcr = value & 0x10

    def _write_attribute(self, value: int) -> None:
        if not self.ar_flip_flop:
            self.ar_index = value & 0x3F
        else:
            index = self.ar_index & 0x1F
            if index < 0x10:
                self.ar[index] = value & 0x3F
            elif index < AR_COUNT:
                self.ar[index] = value & AR_MASK[index]
        self.ar_flip_flop ^= 1

    def _write_dac(self, value: int) -> None:
        self.dac_cache[self.dac_sub_index] = value
        self.dac_sub_index += 1
        if self.dac_sub_index == 3:
            start = 3 * self.dac_write_index
            self.palette[start:start + 3] = self.dac_cache
            self.dac_sub_index = 0
            self.dac_write_index = (self.dac_write_index + 1) & 0xFF

    def _write_crtc(self, value: int) -> None:
        index = self.cr_index
        if self.cr[0x11] & 0x80 and index <= 7:         # CR0-7 write protected
            if index == 7:
                self.cr[7] = self.cr[7] & ~0x10 | value & 0x10
                self._program_vga_for_vbe()
            return
        self.cr[index] = value
        self._program_vga_for_vbe()

    # --- VBE DISPI ----------------------------------------------------------------------------

    @property
    def vbe_enabled(self) -> bool:
        return bool(self.vbe_regs[VBE_ENABLE] & VBE_ENABLED)

    def _vbe_read_data(self) -> int:
        index = self.vbe_index
        if index < VBE_REGISTERS:
            if self.vbe_regs[VBE_ENABLE] & VBE_GETCAPS:
                maxima = {VBE_XRES: VBE_MAX_XRES, VBE_YRES: VBE_MAX_YRES, VBE_BPP: VBE_MAX_BPP}
                if index in maxima:
                    return maxima[index]
            return self.vbe_regs[index]
        if index == VBE_VIDEO_MEMORY_64K:
            return self.vram_size >> 16
        return 0

    def _vbe_write_data(self, value: int) -> int:
        index, regs = self.vbe_index, self.vbe_regs
        if index == VBE_ID:
            if VBE_ID0 <= value <= VBE_ID5:
                regs[VBE_ID] = value
        elif index in (VBE_XRES, VBE_YRES, VBE_BPP, VBE_VIRT_WIDTH, VBE_X_OFFSET,
                       VBE_Y_OFFSET):
            regs[index] = value
            self._vbe_fix_up()
            self._program_vga_for_vbe()
        elif index == VBE_BANK:
            regs[VBE_BANK] = value & ((self.vram_size >> 16) - 1)
            self.bank_offset = regs[VBE_BANK] << 16
        elif index == VBE_ENABLE:
            return self._vbe_enable(value)
        return 0

    def _vbe_enable(self, value: int) -> int:
        regs, cleared = self.vbe_regs, 0
        if value & VBE_ENABLED and not self.vbe_enabled:
            regs[VBE_VIRT_WIDTH] = regs[VBE_X_OFFSET] = regs[VBE_Y_OFFSET] = 0
            regs[VBE_ENABLE] |= VBE_ENABLED
            self._vbe_fix_up()
            self._program_vga_for_vbe()
            if not value & VBE_NOCLEARMEM:
                cleared = min(regs[VBE_YRES] * self.vbe_line_offset, self.vram_size)
        else:
            self.bank_offset = 0
        self.dac_8bit = bool(value & VBE_8BIT_DAC)
        regs[VBE_ENABLE] = value
        return cleared

    def _vbe_fix_up(self) -> None:
        """Bring the DISPI registers into range while VBE is enabled (QEMU's
        ``vbe_fixup_regs``; module docstring)."""
        regs = self.vbe_regs
        if not self.vbe_enabled:
            return
        if regs[VBE_BPP] not in VBE_DEPTHS:
            regs[VBE_BPP] = 8
        bits = 16 if regs[VBE_BPP] == 15 else regs[VBE_BPP]
        regs[VBE_XRES] = min(regs[VBE_XRES] & ~7 or 8, VBE_MAX_XRES)
        regs[VBE_VIRT_WIDTH] = max(min(regs[VBE_VIRT_WIDTH] & ~7, VBE_MAX_XRES), regs[VBE_XRES])
        line = regs[VBE_VIRT_WIDTH] * bits // 8
        max_lines = self.vram_size // line
        regs[VBE_YRES] = min(regs[VBE_YRES] or 1, VBE_MAX_YRES, max_lines)
        regs[VBE_X_OFFSET] = min(regs[VBE_X_OFFSET], VBE_MAX_XRES)
        regs[VBE_Y_OFFSET] = min(regs[VBE_Y_OFFSET], VBE_MAX_YRES)
        offset = regs[VBE_X_OFFSET] * bits // 8 + regs[VBE_Y_OFFSET] * line
        if offset + regs[VBE_YRES] * line > self.vram_size:
            regs[VBE_Y_OFFSET] = 0
            offset = regs[VBE_X_OFFSET] * bits // 8
            if offset + regs[VBE_YRES] * line > self.vram_size:
                regs[VBE_X_OFFSET] = offset = 0
        regs[VBE_VIRT_HEIGHT] = max_lines & 0xFFFF          # a 16-bit register
        self.vbe_line_offset = line
        self.vbe_start_addr = offset // 4

    def _program_vga_for_vbe(self) -> None:
        """While VBE is enabled, set the VGA registers for a linear mode
        (QEMU's ``vbe_update_vgaregs``; module docstring)."""
        if not self.vbe_enabled:
            return
        regs, cr, gr = self.vbe_regs, self.cr, self.gr
        gr[6] = gr[6] & ~0x0C | 0x04 | 0x01           # memory map 1, graphics mode
        cr[0x17] |= 3
        cr[0x13] = self.vbe_line_offset >> 3 & 0xFF
        cr[0x01] = ((regs[VBE_XRES] >> 3) - 1) & 0xFF
        last = regs[VBE_YRES] - 1
        cr[0x12] = last & 0xFF
        cr[0x07] = cr[0x07] & ~0x42 | (last >> 7 & 0x02) | (last >> 3 & 0x40)
        cr[0x18] = 0xFF
        cr[0x07] |= 0x10
        cr[0x09] |= 0x40
        if regs[VBE_BPP] == 4:
            shift_control = 0
            self.sr_vbe[1] &= ~0x08
        else:
            shift_control = 2
            self.sr_vbe[4] |= 0x08
            self.sr_vbe[2] |= 0x0F
        gr[5] = gr[5] & ~0x60 | shift_control << 5
        cr[0x09] &= ~0x9F

    # --- what the other parts read ------------------------------------------------------------

    def effective_sr(self, index: int) -> int:
        """Sequencer register ``index`` as memory accesses and the scanner
        see it: the VBE copy while VBE is enabled (QEMU's ``sr()``)."""
        return (self.sr_vbe if self.vbe_enabled else self.sr)[index]

    def memory_registers(self) -> vga_memory.Registers:
        """The registers :mod:`spec.devices.vga_memory` reads."""
        return vga_memory.Registers(self.sr_vbe if self.vbe_enabled else self.sr, self.gr)

    def timing(self) -> Timing:
        """The CRTC's raster timing (module docstring)."""
        cr, clock = self.cr, self.effective_sr(1)
        dots = (8 if clock & 0x01 else 9) * (2 if clock & 0x08 else 1)
        frame = (cr[6] | (cr[7] & 0x01) << 8 | (cr[7] & 0x20) << 4) + 2
        start = cr[0x10] | (cr[7] & 0x04) << 6 | (cr[7] & 0x80) << 2
        return Timing(dot_hz=DOT_CLOCKS_HZ[self.msr >> 2 & 3], dots_per_char=dots,
                      line_chars=cr[0] + 5, shown_chars=cr[1] + 1,
                      frame_lines=frame, shown_lines=self.vertical_display_end() + 1,
                      retrace_start=start,
                      retrace_lines=((cr[0x11] & 0x0F) - start - 1 & 0x0F) + 1)

    def input_status_1(self, now_ns: int) -> int:
        """Input status 1 at virtual time ``now_ns`` (module docstring)."""
        t = self.timing()
        chars = now_ns * t.dot_hz // (1_000_000_000 * t.dots_per_char)
        line, column = divmod(chars % (t.line_chars * t.frame_lines), t.line_chars)
        value = 0
        if column >= t.shown_chars or line >= t.shown_lines:
            value |= ST01_DISPLAY_DISABLED
        if 0 <= line - t.retrace_start < t.retrace_lines:
            value |= ST01_VERTICAL_RETRACE
        return value

    def vertical_display_end(self) -> int:
        """The last shown line: CRTC 0x12 with bits 8 and 9 from register 7."""
        cr = self.cr
        return cr[0x12] | (cr[7] & 0x02) << 7 | (cr[7] & 0x40) << 3

    def display(self) -> Display:
        """What the picture is (module docstring, "Derived quantities")."""
        if not self.ar_index & AR_PALETTE_SOURCE:
            return Display(BLANK, 0, 0)
        cr = self.cr
        if self.vbe_enabled:
            line_offset, start, compare = self.vbe_line_offset, 4 * self.vbe_start_addr, 65535
        else:
            line_offset, start = cr[0x13] << 3, 4 * (cr[0x0C] << 8 | cr[0x0D])
            compare = cr[0x18] | (cr[7] & 0x10) << 4 | (cr[9] & 0x40) << 3
        lines = self.vertical_display_end() + 1
        if not self.gr[6] & 0x01:
            return self._text(line_offset, start, compare, lines)
        half = bool(self.effective_sr(1) & 0x08)
        shift_control = self.gr[5] >> 5 & 3
        if self.vbe_enabled:
            width, height = self.vbe_regs[VBE_XRES], self.vbe_regs[VBE_YRES]
        else:
            width, height = (cr[1] + 1) * 8, lines
        if shift_control < 2:
            mode, depth = (PLANAR16, 4) if shift_control == 0 else (CGA4, 2)
            width *= 2 if half else 1
        elif self.vbe_enabled:
            mode, depth = LINEAR, self.vbe_regs[VBE_BPP]
        else:
            mode, depth = CHAIN4_256, 8
        double = cr[9] >> 7
        if cr[0x17] & 1:
            scan = ((cr[9] & 0x1F) + 1) << double
        else:                                              # CGA addressing: no maximum scan line
            scan = 1 + double
        return Display(mode, width, height, depth=depth, start=start, line_offset=line_offset,
                       line_compare=compare, scan_lines=scan, half_clock=half,
                       crtc_mode=cr[0x17], plane_enable=self.ar[0x12] & 0x0F)

    def _text(self, line_offset: int, start: int, compare: int, lines: int) -> Display:
        cr, clock = self.cr, self.effective_sr(1)
        char_height = (cr[9] & 0x1F) + 1
        char_width = 16 if clock & 0x08 else 8 if clock & 0x01 else 9
        columns = cr[1] + 1
        rows = 100 if cr[6] == 100 else lines // char_height   # QEMU's CGA 160x100 case
        cursor = None
        if not cr[0x0A] & 0x20:
            cursor = (cr[0x0E] << 8 | cr[0x0F], cr[0x0A] & 0x1F, cr[0x0B] & 0x1F)
        select = self.effective_sr(3)
        fonts = ((select >> 4 & 1 | select << 1 & 6) * 0x8000 + 2,       # map B: bits 4, 1:0
                 (select >> 5 & 1 | select >> 1 & 6) * 0x8000 + 2)       # map A: bits 5, 3:2
        return Display(TEXT, columns * char_width, rows * char_height, start=start,
                       line_offset=line_offset, line_compare=compare, char_width=char_width,
                       char_height=char_height, columns=columns, rows=rows, cursor=cursor,
                       fonts=fonts, line_graphics=bool(self.ar[0x10] & 0x04))

    def palette_rgb(self) -> list[tuple[int, int, int]]:
        """The colours the picture's pixel values show, 8 bits a component.

        16-colour and text modes (16 colours): attribute register *i* picks
        a DAC entry, its bits 5:4 replaced by the colour select (register
        0x14) bits 1:0 when the mode control (register 0x10) bit 7 is set
        (then 3:0 are the entry's low bits and 0x14 bits 3:0 the high),
        else bits 7:6 from 0x14 bits 3:2. 256-colour modes: the DAC entries
        as they are. Components are 6 bits widened by :func:`c6_to_8`, or 8
        bits as they are while the VBE 8-bit DAC is on (256 colours only).
        The pixel mask (0x3C6) is not applied, as in QEMU."""
        display = self.display()
        if display.mode in (CHAIN4_256, LINEAR):
            if self.dac_8bit:
                return [tuple(self.palette[3 * i:3 * i + 3]) for i in range(256)]
            return [tuple(c6_to_8(c) for c in self.palette[3 * i:3 * i + 3])
                    for i in range(256)]
        colours = []
        for i in range(16):
            value, select = self.ar[i], self.ar[0x14]
            if self.ar[0x10] & 0x80:
                value = (select & 0x0F) << 4 | value & 0x0F
            else:
                value = (select & 0x0C) << 4 | value & 0x3F
            colours.append(tuple(c6_to_8(c) for c in self.palette[3 * value:3 * value + 3]))
        return colours
