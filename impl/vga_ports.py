"""The VGA's register file for the impl engine: the standard VGA ports and the
Bochs VBE DISPI ports, table-dispatched.

Room: the state behind ports ``0x3B4``-``0x3DA`` (byte and word) and
``0x1CE``/``0x1CF``/``0x1D0`` (word only), what the display scanner and the
memory rules derive from it (:meth:`VgaPorts.display`,
:meth:`VgaPorts.palette_rgb`, :meth:`VgaPorts.memory_registers`), and input
status 1 as a function of virtual time. Imports nothing of ``spec/``; the
rules, with their sources (QEMU 7.2's ``hw/display/vga.c``, Xen 3.0.4's
qemu-dm ``vga.c``), are stated as prose in
``spec/devices/vga_registers.py``, whose observable behaviour this module
has (``tests/test_impl_vga.py`` runs both on the same random port
sequences; the QEMU-backed tests run it against QEMU's VGA).

How it is fast: every decoded port has its own reader and writer, found in
one dict lookup; the colour and monochrome address sets are two prebuilt
dicts, swapped when the miscellaneous output's I/O address select changes,
so that no access asks which set answers. Input status 1's raster timing is
computed once per change of the registers it depends on. Watchers
(:meth:`VgaPorts.watch`, :class:`impl.vga_planes.VgaPlanes`) hear of every
write that may change how the legacy window decodes.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

#: video memory of QEMU's ``-vga std``
VRAM_SIZE = 16 << 20

_SR_BITS = bytes((0x03, 0x3D, 0x0F, 0x3F, 0x0E, 0x00, 0x00, 0xFF))
_GR_BITS = bytes((0x0F, 0x0F, 0x0F, 0x1F, 0x03, 0x7B, 0x0F, 0x0F, 0xFF) + (0,) * 7)
_AR_BITS = bytes((0x3F,) * 16 + (0xEF, 0xFF, 0x3F, 0x0F, 0x0F))
_AR_COUNT = len(_AR_BITS)

VBE_INDEX_PORT = 0x1CE
VBE_PORTS = (0x1CE, 0x1CF, 0x1D0)
VGA_PORTS = (0x3B4, 0x3B5, 0x3BA, *range(0x3C0, 0x3D0), 0x3D4, 0x3D5, 0x3DA)
_VGA_PORT_SET = frozenset(VGA_PORTS)

ST01_DISPLAY_DISABLED, ST01_VERTICAL_RETRACE = 0x01, 0x08
_DOT_HZ = (25_175_000, 28_322_000, 25_175_000, 25_175_000)

# Bochs DISPI register numbers and ENABLE bits
_ID, _XRES, _YRES, _BPP, _ENABLE, _BANK, _VWIDTH, _VHEIGHT, _XOFF, _YOFF = range(10)
_GETCAPS_MAXIMA = {_XRES: 16000, _YRES: 12000, _BPP: 32}
_MAX_X, _MAX_Y = 16000, 12000
_DEPTHS = frozenset((4, 8, 15, 16, 24, 32))

# Xen 3.0.4 qemu-dm's vga_bios_init (mode 3, cursor on row 18)
_BIOS_SR = bytes.fromhex("0300030002000000")
_BIOS_GR = bytes.fromhex("0000000000100e0fff")
_BIOS_AR = bytes.fromhex("000102030405060708090a0b0c0d0e0f0c000f0800")
_BIOS_CR = bytes.fromhex("5f4f50825581bf1f004f0e0f000005a09c8e8f281f96b9a3ff")
_BIOS_DAC = bytes.fromhex(
    "0000000000aa00aa0000aaaaaa0000aa00aaaa5500aaaaaa5555555555ff55ff5555ffffff5555ff55ff"
    "ffff55ffffff00150000152a003f00003f2a2a15002a152a2a3f002a3f2a00151500153f003f15003f3f"
    "2a15152a153f2a3f152a3f3f15000015002a152a00152a2a3f00003f002a3f2a003f2a2a15001515003f"
    "152a15152a3f3f00153f003f3f2a153f2a3f15150015152a153f00153f2a3f15003f152a3f3f003f3f2a"
    "15151515153f153f15153f3f3f15153f153f3f3f153f3f3f")

BLANK, TEXT, PLANAR16, CGA4, CHAIN4_256, LINEAR = (
    "blank", "text", "planar16", "cga4", "chain4-256", "linear")

#: _FONTS[sequencer register 3]: the plane-2 bytes where the fonts of
#: attribute bit 3 clear (map B: bits 4, 1:0) and set (map A: bits 5, 3:2) start
_FONTS = tuple(((s >> 4 & 1 | s << 1 & 6) << 15 | 2, (s >> 5 & 1 | s >> 1 & 6) << 15 | 2)
               for s in range(256))
#: a 6-bit DAC component widened to 8 bits (low bit copied into the new two)
C6_TO_8 = bytes((c << 2) | (c & 1) * 3 for c in range(64)) * 4


class Timing(NamedTuple):
    """The CRTC's raster timing."""

    dot_hz: int
    dots_per_char: int
    line_chars: int
    shown_chars: int
    frame_lines: int
    shown_lines: int
    retrace_start: int
    retrace_lines: int


class Display(NamedTuple):
    """What the picture is: the mode, its size in pixels, where its lines are
    in video memory; for text its cells, cursor (the word of video memory it
    marks, first and last scan line; None when hidden), fonts (the plane-2
    bytes where the glyphs of attributes with bit 3 clear and set start) and
    line graphics; for graphics the CRTC mode (0x17) and the planes shown
    (the same fields as the reference's)."""

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


class MemoryRegisters(NamedTuple):
    """The sequencer registers memory accesses see (the VBE copy while VBE
    is enabled) and the graphics controller's."""

    sr: bytearray
    gr: bytearray


class VgaPorts:
    """One VGA's registers, reached by :meth:`read` and :meth:`write`."""

    def __init__(self, vram_size: int = VRAM_SIZE) -> None:
        if vram_size < 0x10000 or vram_size % 0x10000:
            raise ValueError(f"video memory must be a multiple of 64 KiB, not {vram_size}")
        self.vram_size = vram_size
        self._watchers: tuple[Callable[[], None], ...] = ()
        self._build_tables()
        self.reset()

    # --- state ---------------------------------------------------------------------------------

    def reset(self) -> None:
        """QEMU's power-on: every VGA register 0 (monochrome addresses), VBE ID 0xB0C5."""
        # the same arrays for the device's life: the planes' compiled rules read them
        for name, size in (("sr", 8), ("sr_vbe", 8), ("gr", 16), ("ar", _AR_COUNT), ("cr", 256),
                           ("palette", 768), ("dac_cache", 3)):
            if hasattr(self, name):
                getattr(self, name)[:] = bytes(size)
            else:
                setattr(self, name, bytearray(size))
        self.sr_index = self.gr_index = self.ar_index = self.cr_index = 0
        self.ar_flip_flop = 0
        self.msr = self.fcr = 0
        self.dac_state = self.dac_sub_index = self.dac_read_index = self.dac_write_index = 0
        self.dac_8bit = False
        self.vbe_index = 0
        self.vbe_regs = [0xB0C5] + [0] * 9
        self.vbe_line_offset = self.vbe_start_addr = self.bank_offset = 0
        #: the sequencer registers memory accesses see: ``sr``, or ``sr_vbe`` while VBE is on
        self.memory_sr = self.sr
        self._select_addresses()
        self._timing = None
        self._memory_changed()

    def bios_init(self) -> None:
        """Xen 3.0.4 qemu-dm's power-on (``vga_bios_init``): mode 3 text."""
        self.reset()
        self.sr[:] = _BIOS_SR
        self.gr[:9] = _BIOS_GR
        self.ar[:] = _BIOS_AR
        self.cr[:len(_BIOS_CR)] = _BIOS_CR
        self.palette[:len(_BIOS_DAC)] = _BIOS_DAC
        self.sr_index, self.gr_index, self.ar_index, self.cr_index = 3, 5, 0x20, 15
        self.ar_flip_flop, self.dac_write_index = 1, 16
        self.dac_cache[:] = b"\xff\xff\xff"
        self.msr = 0x67
        self._select_addresses()
        self._timing = None
        self._memory_changed()

    def watch(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after every write that may change how the legacy
        window decodes (sequencer 2/4, graphics controller but the bit mask,
        VBE, reset)."""
        self._watchers += (callback,)

    def _memory_changed(self) -> None:
        for callback in self._watchers:
            callback()

    # --- dispatch ------------------------------------------------------------------------------

    def _build_tables(self) -> None:
        common_w = {0x3C0: self._w_attribute, 0x3C2: self._w_misc, 0x3C4: self._w_sr_index,
                    0x3C5: self._w_sr, 0x3C7: self._w_dac_read_index,
                    0x3C8: self._w_dac_write_index, 0x3C9: self._w_dac, 0x3CE: self._w_gr_index,
                    0x3CF: self._w_gr}
        for port in range(0x3C0, 0x3D0):
            common_w.setdefault(port, _ignore)
        common_r = {port: _zero for port in range(0x3C0, 0x3D0)}
        common_r.update({0x3C0: self._r_attribute_index, 0x3C1: self._r_attribute,
                         0x3C4: lambda now: self.sr_index,
                         0x3C5: lambda now: self.sr[self.sr_index],
                         0x3C7: lambda now: self.dac_state,
                         0x3C8: lambda now: self.dac_write_index, 0x3C9: self._r_dac,
                         0x3CA: lambda now: self.fcr, 0x3CC: lambda now: self.msr,
                         0x3CE: lambda now: self.gr_index,
                         0x3CF: lambda now: self.gr[self.gr_index]})
        self._tables = []
        for base in (0x3B0, 0x3D0):                     # mono (msr bit 0 clear), colour
            writers, readers = dict(common_w), dict(common_r)
            writers.update({base + 4: self._w_cr_index, base + 5: self._w_cr,
                            base + 0xA: self._w_feature})
            readers.update({base + 4: lambda now: self.cr_index,
                            base + 5: lambda now: self.cr[self.cr_index],
                            base + 0xA: self._r_status})
            # a word written to an index port: the index, then the data (one call)
            words = {0x3C4: self._w_sr_word, 0x3CE: self._w_gr_word, base + 4: self._w_cr_word}
            self._tables.append((writers, readers, words))

    def _select_addresses(self) -> None:
        self._writers, self._readers, self._word_writers = self._tables[self.msr & 1]

    @staticmethod
    def decodes(port: int, size: int) -> bool:
        """Whether an access of ``size`` bytes at ``port`` reaches the VGA."""
        if size == 2 and port in VBE_PORTS:
            return True
        return (size == 1 or size == 2) and port in _VGA_PORT_SET

    def answers(self, port: int) -> bool:
        """Whether a byte access to VGA port ``port`` is decoded now (the
        CRTC set the I/O address select does not pick is not)."""
        return port in self._writers

    def read(self, port: int, size: int, now_ns: int) -> int:
        """A read of ``size`` bytes at ``port`` at virtual time ``now_ns``."""
        if size == 1:
            reader = self._readers.get(port)
            return 0xFF if reader is None else reader(now_ns)
        if size == 2:
            if port == 0x1CF or port == 0x1D0:
                return self._vbe_read_data()
            if port == 0x1CE:
                return self.vbe_index
            reader = self._readers.get(port)
            low = 0xFF if reader is None else reader(now_ns)
            reader = self._readers.get(port + 1)
            return low | (0xFF if reader is None else reader(now_ns)) << 8
        return (1 << 8 * size) - 1

    def write(self, port: int, size: int, value: int) -> int:
        """A write of ``size`` bytes at ``port``: how many bytes at the start
        of video memory it clears (a VBE mode set), else 0."""
        if size == 1:
            writer = self._writers.get(port)
            if writer is not None:
                writer(value & 0xFF)
        elif size == 2:
            if port == 0x1CF or port == 0x1D0:
                return self._vbe_write_data(value & 0xFFFF)
            if port == 0x1CE:
                self.vbe_index = value & 0xFFFF
                return 0
            writer = self._word_writers.get(port)
            if writer is not None:
                writer(value)
                return 0
            writer = self._writers.get(port)
            if writer is not None:
                writer(value & 0xFF)
            writer = self._writers.get(port + 1)       # the first may have swapped the set
            if writer is not None:
                writer(value >> 8 & 0xFF)
        return 0

    # --- VGA writers ---------------------------------------------------------------------------

    def _w_attribute(self, value: int) -> None:
        if self.ar_flip_flop:
            index = self.ar_index & 0x1F
            if index < _AR_COUNT:
                self.ar[index] = value & _AR_BITS[index]
            self.ar_flip_flop = 0
        else:
            self.ar_index = value & 0x3F
            self.ar_flip_flop = 1

    def _w_misc(self, value: int) -> None:
        self.msr = value & 0xEF
        self._writers, self._readers, self._word_writers = self._tables[value & 1]
        self._timing = None

    def _w_sr_index(self, value: int) -> None:
        self.sr_index = value & 7

    def _w_sr(self, value: int) -> None:
        index = self.sr_index
        self.sr[index] = value & _SR_BITS[index]
        if index == 2 or index == 4:
            self._memory_changed()
        elif index == 1:
            self._timing = None

    def _w_sr_word(self, value: int) -> None:
        self.sr_index = index = value & 7
        self.sr[index] = value >> 8 & _SR_BITS[index]
        if index == 2 or index == 4:
            self._memory_changed()
        elif index == 1:
            self._timing = None

    def _w_dac_read_index(self, value: int) -> None:
        self.dac_read_index, self.dac_sub_index, self.dac_state = value, 0, 3

    def _w_dac_write_index(self, value: int) -> None:
        self.dac_write_index, self.dac_sub_index, self.dac_state = value, 0, 0

    def _w_dac(self, value: int) -> None:
        sub = self.dac_sub_index
        self.dac_cache[sub] = value
        if sub == 2:
            at = 3 * self.dac_write_index
            self.palette[at:at + 3] = self.dac_cache
            self.dac_sub_index = 0
            self.dac_write_index = (self.dac_write_index + 1) & 0xFF
        else:
            self.dac_sub_index = sub + 1

    def _w_gr_index(self, value: int) -> None:
        self.gr_index = value & 0x0F

    def _w_gr(self, value: int) -> None:
        index = self.gr_index
        self.gr[index] = value & _GR_BITS[index]
        if self.vbe_regs[_ENABLE] & 1:
            self._program_linear_mode()
            self._memory_changed()
        elif index != 8:                                # the planes read the bit mask as they write
            self._memory_changed()

    def _w_gr_word(self, value: int) -> None:
        self.gr_index = index = value & 0x0F
        self.gr[index] = value >> 8 & _GR_BITS[index]
        if self.vbe_regs[_ENABLE] & 1:
            self._program_linear_mode()
            self._memory_changed()
        elif index != 8:                                # the planes read the bit mask as they write
            self._memory_changed()

    def _w_cr_index(self, value: int) -> None:
        self.cr_index = value

    def _w_cr(self, value: int) -> None:
        index, cr = self.cr_index, self.cr
        if index <= 7 and cr[0x11] & 0x80:              # CR0-7 protected: line compare bit 8 only
            if index != 7:
                return
            value = cr[7] & 0xEF | value & 0x10
        cr[index] = value
        if self.vbe_regs[_ENABLE] & 1:
            self._program_linear_mode()
            self._memory_changed()
        self._timing = None

    def _w_cr_word(self, value: int) -> None:
        self.cr_index = value & 0xFF
        self._w_cr(value >> 8 & 0xFF)

    def _w_feature(self, value: int) -> None:
        self.fcr = value & 0x10

    # --- VGA readers ---------------------------------------------------------------------------

    def _r_attribute_index(self, now_ns: int) -> int:
        return 0 if self.ar_flip_flop else self.ar_index

    def _r_attribute(self, now_ns: int) -> int:
        index = self.ar_index & 0x1F
        return self.ar[index] if index < _AR_COUNT else 0

    def _r_dac(self, now_ns: int) -> int:
        sub, index = self.dac_sub_index, self.dac_read_index
        value = self.palette[3 * index + sub]
        if sub == 2:
            self.dac_sub_index = 0
            self.dac_read_index = (index + 1) & 0xFF
        else:
            self.dac_sub_index = sub + 1
        return value

    def _r_status(self, now_ns: int) -> int:
        self.ar_flip_flop = 0
        return self.input_status_1(now_ns)

    # --- VBE DISPI -----------------------------------------------------------------------------

    @property
    def vbe_enabled(self) -> bool:
        return bool(self.vbe_regs[_ENABLE] & 1)

    def _vbe_read_data(self) -> int:
        index, regs = self.vbe_index, self.vbe_regs
        if index < 10:
            if regs[_ENABLE] & 2 and index in _GETCAPS_MAXIMA:
                return _GETCAPS_MAXIMA[index]
            return regs[index]
        return self.vram_size >> 16 if index == 10 else 0

    def _vbe_write_data(self, value: int) -> int:
        index, regs = self.vbe_index, self.vbe_regs
        if index == _ENABLE:
            return self._vbe_enable(value)
        if index == _BANK:
            regs[_BANK] = value & ((self.vram_size >> 16) - 1)
            self.bank_offset = regs[_BANK] << 16
            self._memory_changed()
        elif index == _ID:
            if 0xB0C0 <= value <= 0xB0C5:
                regs[_ID] = value
        elif index < 10 and index != _VHEIGHT:
            regs[index] = value
            if regs[_ENABLE] & 1:
                self._fix_up_dispi()
                self._program_linear_mode()
                self._memory_changed()
        return 0

    def _vbe_enable(self, value: int) -> int:
        regs, cleared = self.vbe_regs, 0
        if value & 1 and not regs[_ENABLE] & 1:
            regs[_VWIDTH] = regs[_XOFF] = regs[_YOFF] = 0
            regs[_ENABLE] |= 1
            self._fix_up_dispi()
            self._program_linear_mode()
            if not value & 0x80:
                cleared = min(regs[_YRES] * self.vbe_line_offset, self.vram_size)
        else:
            self.bank_offset = 0
        self.dac_8bit = bool(value & 0x20)
        regs[_ENABLE] = value
        self.memory_sr = self.sr_vbe if value & 1 else self.sr
        self._timing = None
        self._memory_changed()
        return cleared

    def _fix_up_dispi(self) -> None:
        regs, size = self.vbe_regs, self.vram_size
        bpp = regs[_BPP]
        if bpp not in _DEPTHS:
            regs[_BPP] = bpp = 8
        bytes_x8 = 16 if bpp == 15 else bpp             # bits a pixel
        xres = min(regs[_XRES] & ~7 or 8, _MAX_X)
        width = min(regs[_VWIDTH] & ~7, _MAX_X)
        if width < xres:
            width = xres
        regs[_XRES], regs[_VWIDTH] = xres, width
        line = width * bytes_x8 >> 3
        lines = size // line
        regs[_YRES] = min(regs[_YRES] or 1, _MAX_Y, lines)
        x_bytes = min(regs[_XOFF], _MAX_X) * bytes_x8 >> 3
        regs[_XOFF], regs[_YOFF] = min(regs[_XOFF], _MAX_X), min(regs[_YOFF], _MAX_Y)
        shown = regs[_YRES] * line
        offset = x_bytes + regs[_YOFF] * line
        if offset + shown > size:
            regs[_YOFF], offset = 0, x_bytes
            if offset + shown > size:
                regs[_XOFF] = offset = 0
        regs[_VHEIGHT] = lines & 0xFFFF
        self.vbe_line_offset, self.vbe_start_addr = line, offset >> 2

    def _program_linear_mode(self) -> None:
        regs, cr, gr = self.vbe_regs, self.cr, self.gr
        gr[6] = gr[6] & 0xF3 | 0x05
        last = regs[_YRES] - 1
        cr[0x01] = ((regs[_XRES] >> 3) - 1) & 0xFF
        cr[0x07] = cr[0x07] & 0xBD | (last >> 7 & 0x02) | (last >> 3 & 0x40) | 0x10
        cr[0x09] = cr[0x09] & 0x60 | 0x40
        cr[0x12] = last & 0xFF
        cr[0x13] = self.vbe_line_offset >> 3 & 0xFF
        cr[0x17] |= 3
        cr[0x18] = 0xFF
        if regs[_BPP] == 4:
            self.sr_vbe[1] &= 0xF7
            gr[5] &= 0x9F
        else:
            self.sr_vbe[4] |= 0x08
            self.sr_vbe[2] |= 0x0F
            gr[5] = gr[5] & 0x9F | 0x40
        self._timing = None

    # --- what the other parts read -------------------------------------------------------------

    def memory_registers(self) -> MemoryRegisters:
        """The registers the legacy window's rules read."""
        return MemoryRegisters(self.memory_sr, self.gr)

    def effective_sr(self, index: int) -> int:
        """Sequencer register ``index`` as memory and the scanner see it."""
        return self.memory_sr[index]

    def vertical_display_end(self) -> int:
        cr7 = self.cr[7]
        return self.cr[0x12] | (cr7 & 0x02) << 7 | (cr7 & 0x40) << 3

    def timing(self) -> Timing:
        """The CRTC's raster timing."""
        cr, clock = self.cr, self.effective_sr(1)
        cr7 = cr[7]
        start = cr[0x10] | (cr7 & 0x04) << 6 | (cr7 & 0x80) << 2
        return Timing(_DOT_HZ[self.msr >> 2 & 3], (9 - (clock & 1)) << (clock >> 3 & 1),
                      cr[0] + 5, cr[1] + 1, (cr[6] | (cr7 & 0x01) << 8 | (cr7 & 0x20) << 4) + 2,
                      self.vertical_display_end() + 1, start,
                      ((cr[0x11] & 0x0F) - start - 1 & 0x0F) + 1)

    def _status_constants(self) -> tuple:
        t = self.timing()
        self._timing = (t.dot_hz, 1_000_000_000 * t.dots_per_char, t.line_chars,
                        t.line_chars * t.frame_lines, t.shown_chars, t.shown_lines,
                        t.retrace_start, t.retrace_lines)
        return self._timing

    def input_status_1(self, now_ns: int) -> int:
        """Input status 1 at virtual time ``now_ns``: vertical retrace (bit 3)
        and display enable NOT (bit 0) from the raster position."""
        hz, per_char, line_chars, frame, shown_chars, shown_lines, retrace, span = (
            self._timing or self._status_constants())
        line, column = divmod(now_ns * hz // per_char % frame, line_chars)
        value = 1 if column >= shown_chars or line >= shown_lines else 0
        if 0 <= line - retrace < span:
            value |= ST01_VERTICAL_RETRACE
        return value

    def display(self) -> Display:
        """What the picture is (the mode, its size, where its lines are)."""
        if not self.ar_index & 0x20:
            return Display(BLANK, 0, 0)
        cr, gr = self.cr, self.gr
        vbe = self.vbe_regs[_ENABLE] & 1
        if vbe:
            line_offset, start, compare = self.vbe_line_offset, self.vbe_start_addr << 2, 65535
        else:
            line_offset, start = cr[0x13] << 3, (cr[0x0C] << 8 | cr[0x0D]) << 2
            compare = cr[0x18] | (cr[7] & 0x10) << 4 | (cr[9] & 0x40) << 3
        lines = self.vertical_display_end() + 1
        clock = self.memory_sr[1]
        if not gr[6] & 1:
            height = (cr[9] & 0x1F) + 1
            width = 16 if clock & 8 else 9 - (clock & 1)
            columns = cr[1] + 1
            rows = 100 if cr[6] == 100 else lines // height
            cursor = None
            if not cr[0x0A] & 0x20:
                cursor = (cr[0x0E] << 8 | cr[0x0F], cr[0x0A] & 0x1F, cr[0x0B] & 0x1F)
            fonts = _FONTS[self.memory_sr[3]]
            return Display(TEXT, columns * width, rows * height, 0, start, line_offset,
                           compare, 1, False, width, height, columns, rows, cursor, fonts,
                           bool(self.ar[0x10] & 0x04))
        half = bool(clock & 8)
        shift = gr[5] >> 5 & 3
        if vbe:
            width, height = self.vbe_regs[_XRES], self.vbe_regs[_YRES]
        else:
            width, height = (cr[1] + 1) << 3, lines
        if shift == 0:
            mode, depth, width = PLANAR16, 4, width << half
        elif shift == 1:
            mode, depth, width = CGA4, 2, width << half
        elif vbe:
            mode, depth = LINEAR, self.vbe_regs[_BPP]
        else:
            mode, depth = CHAIN4_256, 8
        double = cr[9] >> 7
        scan = ((cr[9] & 0x1F) + 1) << double if cr[0x17] & 1 else 1 + double
        return Display(mode, width, height, depth, start, line_offset, compare, scan, half,
                       crtc_mode=cr[0x17], plane_enable=self.ar[0x12] & 0x0F)

    def palette_bytes(self) -> bytes:
        """The colours the picture's pixel values show, as RGB bytes (3 a
        colour, 8 bits a component): 256 colours in the 256-colour modes,
        else the 16 the attribute controller maps to the DAC."""
        mode = self.display().mode
        if mode == CHAIN4_256 or mode == LINEAR:
            return bytes(self.palette) if self.dac_8bit else self.palette.translate(C6_TO_8)
        ar, palette = self.ar, self.palette
        select = ar[0x14]
        if ar[0x10] & 0x80:
            entries = [(select & 0x0F) << 4 | ar[i] & 0x0F for i in range(16)]
        else:
            entries = [(select & 0x0C) << 4 | ar[i] & 0x3F for i in range(16)]
        return b"".join(palette[3 * e:3 * e + 3] for e in entries).translate(C6_TO_8)

    def palette_rgb(self) -> list[tuple[int, int, int]]:
        """:meth:`palette_bytes` as (red, green, blue) tuples."""
        rgb = self.palette_bytes()
        return list(zip(rgb[0::3], rgb[1::3], rgb[2::3]))


def _ignore(value: int) -> None:
    """A decoded port that ignores writes."""


def _zero(now_ns: int) -> int:
    """A decoded port that reads 0."""
    return 0
