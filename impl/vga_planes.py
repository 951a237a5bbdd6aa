"""The VGA's four planes as the CPU reaches them through the legacy window, for
the impl engine: chain 4, odd/even, planar with latches, read modes 0-1,
write modes 0-3, memory maps 0-3.

Room: one byte (or a run of bytes) at ``0xA0000``-``0xBFFFF`` against video
memory in qemu-dm's interleaved layout (plane *p* of 32-bit word *w* is byte
``4 * w + p``). Imports nothing of ``spec/``; the rules, with their sources
(IBM VGA Technical Reference, qemu-dm's ``vga_mem_readb``/``vga_mem_writeb``),
are stated as prose in ``spec/devices/vga_memory.py``, whose observable
behaviour this module has (``tests/test_impl_vga.py``).

How it is fast: the registers that decide the rules (sequencer 2 and 4, the
graphics controller but the bit mask, the VBE bank) are compiled, when they
change, into four closures, :attr:`VgaPlanes.read_byte`,
:attr:`VgaPlanes.write_byte`, :attr:`VgaPlanes.read` and
:attr:`VgaPlanes.write`, that hold the window's bounds and every constant
word of the write path (enable set/reset, the map mask, already ANDed
together) as closure cells; compiled rules are kept by their registers, so
a guest that switches between a few settings compiles each once. The bit
mask (GR8), which drawing code changes between bytes, is read at each
write instead, so changing it compiles nothing. A planar access is one 32-bit load or store on a
``memoryview`` cast to 32-bit words; per-byte values come from tables
(the byte rotated and copied to four planes, 4-bit plane sets as 32-bit
masks), with no loop over bits or planes.
"""

from __future__ import annotations

import sys

#: (window start, size) by graphics controller register 6 bits 3:2
WINDOWS = ((0xA0000, 0x20000), (0xA0000, 0x10000), (0xB0000, 0x8000), (0xB8000, 0x8000))
_ONES = 0xFFFFFFFF
#: the low 4 bits of a byte as a 32-bit word, byte *p* all ones where bit *p* is set
EXPAND = tuple(sum(0xFF << 8 * p for p in range(4) if v >> p & 1) for v in range(256))
#: a byte copied to all four planes
REPLICATE = tuple(v * 0x01010101 for v in range(256))
#: ROTATED[r][v]: byte v rotated right by r
ROTATED = tuple(tuple((v >> r | v << (8 - r)) & 0xFF for v in range(256)) for r in range(8))
#: ROTATED_REPLICATED[r][v]: byte v rotated right by r, copied to all four planes
ROTATED_REPLICATED = tuple(tuple(REPLICATE[b] for b in row) for row in ROTATED)
#: compiled rules kept per VgaPlanes before the cache is emptied
_CACHE_LIMIT = 512


class VgaPlanes:
    """Video memory ``vram`` (a writable buffer) through the legacy window,
    with the latches, under the registers of ``ports`` (an
    :class:`impl.vga_ports.VgaPorts`, or anything with its ``memory_sr``,
    ``gr``, ``bank_offset`` and ``watch()``).

    Access methods: ``read_byte(address) -> int`` (0xFF outside the
    window); ``write_byte(address, value) -> int``, the index of the first
    byte of video memory it changed (:attr:`span` bytes: 1, or 4 for a
    planar write), or -1; ``read(address, size) -> int`` and
    ``write(address, size, value)``, byte accesses in address order
    (little-endian), the write answering the bytes it changed as (first, one
    past the last), or None.

    The four access methods are replaced whenever the registers change:
    look them up on the object at each access (``planes.write_byte(...)``);
    a method kept from before a change stays correct but compiles the rules
    again at every call.

    ``banked``: memory map 1 adds the VBE bank (``ports.bank_offset``) to
    the offset, as QEMU's ``vga_mem_readb``/``vga_mem_writeb`` (and the
    reference's memory rules) do; ``banked=False`` leaves it out."""

    def __init__(self, vram, ports, *, banked: bool = True) -> None:
        if sys.byteorder != "little":
            raise RuntimeError("impl.vga_planes stores planes as native 32-bit words: "
                               "it needs a little-endian host")
        self.vram = vram
        self._v8 = memoryview(vram).cast("B")
        if self._v8.readonly:
            raise ValueError("video memory must be a writable buffer (bytearray, mmap)")
        self._v32 = self._v8[:len(self._v8) & ~3].cast("I")
        self.ports, self.banked = ports, banked
        self.latch = 0
        #: bytes of video memory a :meth:`write_byte` changes from the index it returns
        self.span = 1
        self._cache: dict[tuple, tuple] = {}
        self._stale = (self._stale_read_byte, self._stale_write_byte, self._stale_read,
                       self._stale_write)
        self._fresh = True
        self.invalidate()
        ports.watch(self.invalidate)

    def invalidate(self) -> None:
        """The registers may have changed: compile again at the next access."""
        if self._fresh:
            self.read_byte, self.write_byte, self.read, self.write = self._stale
            self._fresh = False

    # the first access after a change compiles, then runs the compiled rule

    def _stale_read_byte(self, address: int) -> int:
        self._compile()
        return self.read_byte(address)

    def _stale_write_byte(self, address: int, value: int) -> int:
        self._compile()
        return self.write_byte(address, value)

    def _stale_read(self, address: int, size: int) -> int:
        self._compile()
        return self.read(address, size)

    def _stale_write(self, address: int, size: int, value: int) -> tuple[int, int] | None:
        self._compile()
        return self.write(address, size, value)

    def _compile(self) -> None:
        ports = self.ports
        sr, gr = ports.memory_sr, ports.gr
        bank = ports.bank_offset if self.banked and gr[6] & 0x0C == 0x04 else 0
        key = (bytes(gr[:8]), sr[2], sr[4], bank)
        rules = self._cache.get(key)
        if rules is None:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            rules = self._cache[key] = self._rules(sr[2] & 0x0F, sr[4], gr, bank)
        self.read_byte, self.write_byte, self.read, self.write, self.span = rules
        self._fresh = True

    # --- the rules -----------------------------------------------------------------------------

    def _rules(self, map_mask: int, memory_mode: int, gr, bank: int) -> tuple:
        lo, size = WINDOWS[gr[6] >> 2 & 3]
        hi, shift = lo + size, lo - bank               # offset = address - shift
        if memory_mode & 0x08:
            read_byte, write_byte = self._chain4(lo, hi, shift, map_mask)
            read, write = self._linear_runs(lo, hi, shift, map_mask, read_byte, write_byte)
            return read_byte, write_byte, read, write, 1
        if gr[5] & 0x10:
            read_byte, write_byte = self._odd_even(lo, hi, shift, map_mask, gr[4] & 2)
            span = 1
        else:
            read_byte = self._planar_read(lo, hi, shift, gr)
            write_byte = self._planar_write(lo, hi, shift, map_mask, gr)
            span = 4
        read, write = _byte_runs(read_byte, write_byte, span)
        return read_byte, write_byte, read, write, span

    def _chain4(self, lo: int, hi: int, shift: int, map_mask: int) -> tuple:
        v8, n8 = self._v8, len(self._v8)
        lands = tuple(bool(map_mask >> p & 1) for p in range(4))

        def read_byte(address: int) -> int:
            if lo <= address < hi:
                offset = address - shift
                if offset < n8:
                    return v8[offset]
            return 0xFF

        def write_byte(address: int, value: int) -> int:
            if lo <= address < hi:
                offset = address - shift
                if lands[offset & 3] and offset < n8:
                    v8[offset] = value & 0xFF
                    return offset
            return -1

        return read_byte, write_byte

    def _linear_runs(self, lo: int, hi: int, shift: int, map_mask: int, read_byte,
                     write_byte) -> tuple:
        """Chain 4's multi-byte accesses: one slice when the whole run is in
        the window and in video memory (and, for writes, every plane lands)."""
        v8, n8 = self._v8, len(self._v8)
        slow_read, slow_write = _byte_runs(read_byte, write_byte, 1)
        all_planes = map_mask == 0x0F

        def read(address: int, size: int) -> int:
            offset = address - shift
            if lo <= address and address + size <= hi and offset + size <= n8:
                return int.from_bytes(v8[offset:offset + size], "little")
            return slow_read(address, size)

        def write(address: int, size: int, value: int) -> tuple[int, int] | None:
            offset = address - shift
            if all_planes and lo <= address and address + size <= hi and offset + size <= n8:
                v8[offset:offset + size] = (value & (1 << 8 * size) - 1).to_bytes(size, "little")
                return offset, offset + size
            return slow_write(address, size, value)

        return read, write

    def _odd_even(self, lo: int, hi: int, shift: int, map_mask: int, high_pair: int) -> tuple:
        v8, n8 = self._v8, len(self._v8)
        lands = (bool(map_mask >> high_pair & 1), bool(map_mask >> (high_pair | 1) & 1))

        def read_byte(address: int) -> int:
            if lo <= address < hi:
                offset = address - shift
                index = (offset & ~1) << 1 | high_pair | offset & 1
                if index < n8:
                    return v8[index]
            return 0xFF

        def write_byte(address: int, value: int) -> int:
            if lo <= address < hi:
                offset = address - shift
                if lands[offset & 1]:
                    index = (offset & ~1) << 1 | high_pair | offset & 1
                    if index < n8:
                        v8[index] = value & 0xFF
                        return index
            return -1

        return read_byte, write_byte

    def _planar_read(self, lo: int, hi: int, shift: int, gr) -> object:
        v32, n32, planes = self._v32, len(self._v32), self
        if not gr[5] & 0x08:                            # read mode 0: the plane GR4 selects
            plane_shift = (gr[4] & 3) << 3

            def read_byte(address: int) -> int:
                if lo <= address < hi:
                    offset = address - shift
                    latch = planes.latch = v32[offset] if offset < n32 else _ONES
                    return latch >> plane_shift & 0xFF
                return 0xFF
            return read_byte
        compare, care = EXPAND[gr[2]], EXPAND[gr[7]]     # read mode 1: colour compare

        def read_colour(address: int) -> int:
            if lo <= address < hi:
                offset = address - shift
                latch = planes.latch = v32[offset] if offset < n32 else _ONES
                differ = (latch ^ compare) & care
                differ |= differ >> 16
                return ~(differ | differ >> 8) & 0xFF
            return 0xFF
        return read_colour

    def _planar_write(self, lo: int, hi: int, shift: int, map_mask: int, gr) -> object:
        v32, n32, planes = self._v32, len(self._v32), self
        keep = EXPAND[map_mask]                         # planes the write stores
        old_part = ~keep & _ONES
        mode, function = gr[5] & 3, gr[3] >> 3 & 3
        if mode == 1:                                   # the latches as they are

            def write_latches(address: int, value: int) -> int:
                if lo <= address < hi:
                    offset = address - shift
                    if offset < n32:
                        v32[offset] = v32[offset] & old_part | planes.latch & keep
                        return offset << 2
                return -1
            return write_latches
        if mode == 3:                                   # set/reset colour, bit mask AND byte
            rotated, colour = ROTATED[gr[3] & 7], EXPAND[gr[0]]

            def write_colour(address: int, value: int) -> int:
                if lo <= address < hi:
                    offset = address - shift
                    if offset < n32:
                        latch = planes.latch
                        mask = REPLICATE[gr[8] & rotated[value & 0xFF]]
                        word = colour
                        if function == 1:
                            word &= latch
                        elif function == 2:
                            word |= latch
                        elif function == 3:
                            word ^= latch
                        v32[offset] = (v32[offset] & old_part
                                       | (word & mask | latch & ~mask) & keep)
                        return offset << 2
                return -1
            return write_colour
        # modes 0 and 2: word = table[value] & byte_part | fixed
        if mode == 0:
            table = ROTATED_REPLICATED[gr[3] & 7]
            enable = EXPAND[gr[1]]
            byte_part, fixed = ~enable & _ONES, EXPAND[gr[0]] & enable
        else:
            table, byte_part, fixed = EXPAND, _ONES, 0
        # the bit mask (GR8) is read at each write: drawing changes it between bytes
        if function == 0:                               # replace: all constant but the byte

            def write_replace(address: int, value: int) -> int:
                if lo <= address < hi:
                    offset = address - shift
                    if offset < n32:
                        mask = REPLICATE[gr[8]] & keep
                        v32[offset] = (v32[offset] & old_part
                                       | (table[value & 0xFF] & byte_part | fixed) & mask
                                       | planes.latch & (keep ^ mask))
                        return offset << 2
                return -1
            return write_replace

        def write_logic(address: int, value: int) -> int:
            if lo <= address < hi:
                offset = address - shift
                if offset < n32:
                    latch = planes.latch
                    word = table[value & 0xFF] & byte_part | fixed
                    if function == 1:
                        word &= latch
                    elif function == 2:
                        word |= latch
                    else:
                        word ^= latch
                    mask = REPLICATE[gr[8]] & keep
                    v32[offset] = v32[offset] & old_part | word & mask | latch & (keep ^ mask)
                    return offset << 2
            return -1
        return write_logic


def _byte_runs(read_byte, write_byte, span: int) -> tuple:
    """Multi-byte accesses as byte accesses in address order (little-endian);
    a write answers the bytes of video memory it changed, (first, one past
    the last), or None."""

    def read(address: int, size: int) -> int:
        value = 0
        for i in range(size):
            value |= read_byte(address + i) << 8 * i
        return value

    def write(address: int, size: int, value: int) -> tuple[int, int] | None:
        first = end = -1
        for i in range(size):
            at = write_byte(address + i, value >> 8 * i & 0xFF)
            if at >= 0:
                if first < 0 or at < first:
                    first = at
                if at + span > end:
                    end = at + span
        return None if first < 0 else (first, end)

    return read, write
