"""impl's VGA (impl.vga_ports, impl.vga_planes, impl.vga_scan) against the
reference (spec.devices.vga_registers, vga_memory, vga_scanner): the same random
sequences of port accesses (every VGA and VBE port, byte, word and dword,
the VGA BIOS's mode tables, VBE mode sets) and legacy-window accesses (every
memory map, chain 4, odd/even, planar read and write modes, 1, 2 and 4
bytes) on both; every value read, the changed range of every byte write,
the latches, the derived display and palette, every register and the whole
of video memory equal; then the scanners' bands and pixels over the layouts
and random registers of tests/test_vga_scanner.py. The QEMU-backed tests of
tests/test_vga_registers.py, test_vga_memory.py and test_vga_scanner.py
hold impl to QEMU's VGA as well; the VBE bank, which the reference's memory
rules leave to the device, is tested here against QEMU."""

import random
import zlib

import pytest

from impl import vga_scan
from impl.vga_planes import VgaPlanes
from impl.vga_ports import VgaPorts
from spec.devices import vga_memory as vm
from spec.devices import vga_registers as vr
from spec.devices import vga_scanner as sc
from tests import qtest
from tests import test_vga_registers as tvr
from tests import test_vga_scanner as tvs

#: register state compared after a run (the reference's and impl's attribute names)
STATE = ("sr", "sr_vbe", "gr", "ar", "cr", "sr_index", "gr_index", "ar_index", "cr_index",
         "ar_flip_flop", "msr", "fcr", "palette", "dac_state", "dac_sub_index",
         "dac_read_index", "dac_write_index", "dac_cache", "dac_8bit", "vbe_index", "vbe_regs",
         "vbe_line_offset", "vbe_start_addr", "bank_offset", "vbe_enabled")


class Reference:
    """The reference's register file, memory rules, video memory and latches."""

    def __init__(self, vram_size: int) -> None:
        self.regs = vr.VgaRegisters(vram_size)
        self.vram, self.latch = bytearray(vram_size), 0

    def out(self, port: int, value: int, size: int) -> None:
        cleared = self.regs.write(port, size, value)
        self.vram[:cleared] = bytes(cleared)

    def inp(self, port: int, size: int, now: int) -> int:
        return self.regs.read(port, size, now)

    def store(self, address: int, value: int, size: int):
        """The changed range: (start, length) of a byte write; (first, one
        past the last) of the bytes a longer write changed; or None."""
        ranges = []
        for i in range(size):
            changed = vm.write(self.vram, self.latch, self.regs.memory_registers(), address + i,
                               value >> 8 * i & 0xFF)
            if changed is not None:
                ranges.append(changed)
        if size == 1:
            return ranges[0] if ranges else None
        if not ranges:
            return None
        return min(r[0] for r in ranges), max(r[0] + r[1] for r in ranges)

    def load(self, address: int, size: int) -> int:
        value = 0
        for i in range(size):
            byte, self.latch = vm.read(self.vram, self.latch, self.regs.memory_registers(),
                                       address + i)
            value |= byte << 8 * i
        return value


class Impl:
    """impl's register file and planes on video memory of their own."""

    def __init__(self, vram_size: int, banked: bool = True) -> None:
        self.regs = VgaPorts(vram_size)
        self.vram = bytearray(vram_size)
        self.planes = VgaPlanes(self.vram, self.regs, banked=banked)

    @property
    def latch(self) -> int:
        return self.planes.latch

    def out(self, port: int, value: int, size: int) -> None:
        cleared = self.regs.write(port, size, value)
        self.vram[:cleared] = bytes(cleared)

    def inp(self, port: int, size: int, now: int) -> int:
        return self.regs.read(port, size, now)

    def store(self, address: int, value: int, size: int):
        if size != 1:
            return self.planes.write(address, size, value)
        at = self.planes.write_byte(address, value)
        return None if at < 0 else (at, self.planes.span)

    def load(self, address: int, size: int) -> int:
        if size == 1:
            return self.planes.read_byte(address)
        return self.planes.read(address, size)


#: window addresses: both ends of every window, a few in each, some outside all
POOL = sorted({base + i for base in (0xA0000, 0xA8000, 0xAFFFC, 0xB0000, 0xB7FFC, 0xB8000,
                                     0xBFFFC, 0x9FFFE, 0xC0000) for i in range(5)})


def _memory_registers(rng: random.Random) -> list[tuple]:
    if rng.random() < 0.4:
        return [("out", 0x3C4, rng.choice((2, 4))), ("out", 0x3C5, rng.randrange(256))]
    index, value = rng.randrange(9), rng.randrange(256)
    if index == 6:
        value = value & 0xF3 | rng.choice((0, 0, 4, 8, 12))
    if rng.random() < 0.5:
        return [("out", 0x3CE, index | value << 8, 2)]
    return [("out", 0x3CE, index), ("out", 0x3CF, value)]


def _random_script(rng: random.Random, steps: int) -> list[tuple]:
    """Register, mode-set and window steps mixed (``steps`` choices; a mode
    set is one choice of some 800 port writes)."""
    script: list[tuple] = [("out", 0x3C4, 0x0F02, 2), ("out", 0x3CE, 0xFF08, 2)]
    for _ in range(steps):
        kind = rng.random()
        if kind < 0.005:
            script += tvr._init_vga_card() + tvr._set_mode(rng.choice(sorted(tvr.MODES)))
        elif kind < 0.015:
            script += tvr._vbe_mode(rng.choice((8, 16, 320, 640, 800, 1024)),
                                    rng.choice((1, 200, 480, 600, 768)),
                                    rng.choice((4, 8, 15, 16, 24, 32)),
                                    rng.choice((0x41, 0xC1, 0xC1, 0xE1, 0x81)))
        elif kind < 0.025:
            script += [("out", 0x1CE, 5, 2), ("out", 0x1CF, rng.randrange(1 << 16), 2)]
        elif kind < 0.027:                       # the VBE versions a BIOS offers
            script += [("out", 0x1CE, 0, 2), ("out", 0x1CF, rng.randrange(0xB0BE, 0xB0C8), 2),
                       ("in", 0x1CF, 2)]
        elif kind < 0.029:                       # QEMU's 100-row case, in both address sets
            port = rng.choice((0x3B4, 0x3D4))
            script += [("out", port, 0x0E11, 2), ("out", port, 0x6406, 2)]     # unprotected
        elif kind < 0.031:
            script.append((rng.choice(("reset", "bios_init")),))
        elif kind < 0.2:
            script += tvr._random_script(rng, 2)
        elif kind < 0.45:
            script += _memory_registers(rng)
        else:
            size = rng.choice((1, 1, 1, 1, 2, 4))
            address = rng.choice(POOL) if rng.random() < 0.8 else rng.randrange(0xA0000, 0xC0000)
            if rng.random() < 0.55:
                script.append(("write", address, rng.randrange(1 << 8 * size), size))
            else:
                script.append(("read", address, size))
    return script


def _run(engine, script: list[tuple], checks: list | None = None) -> list:
    """``script`` on ``engine``: the log of every read and byte write, (every
    10 steps) the latches, the display and the timing, (every 200) the
    palette, and (every 1000) a checksum of video memory."""
    log = []
    for now, step in enumerate(script):
        kind = step[0]
        if kind == "out":
            engine.out(step[1], step[2], step[3] if len(step) > 3 else 1)
        elif kind == "in":
            log.append((now, engine.inp(step[1], step[2] if len(step) > 2 else 1, 37 * now)))
        elif kind == "write":
            log.append((now, engine.store(step[1], step[2], step[3])))
        elif kind == "read":
            log.append((now, engine.load(step[1], step[2]), engine.latch))
        else:
            getattr(engine.regs, kind)()
        if now % 10 == 0:
            log.append((now, engine.latch, tuple(engine.regs.display()), engine.regs.timing()))
        if now % 200 == 0:
            log.append((now, engine.regs.palette_rgb()))
        if now % 1000 == 0:
            log.append((now, zlib.crc32(engine.vram)))
    return log


def _same(script: list[tuple], vram_size: int) -> tuple:
    reference, impl = Reference(vram_size), Impl(vram_size)
    ours, theirs = _run(reference, script), _run(impl, script)
    for a, b in zip(ours, theirs):
        assert a == b, f"step {a[0]}: reference {a[1:]}, impl {b[1:]} ({script[a[0]]})"
    assert len(ours) == len(theirs)
    for name in STATE:
        assert getattr(reference.regs, name) == getattr(impl.regs, name), name
    assert tuple(reference.regs.display()) == tuple(impl.regs.display())
    assert reference.regs.palette_rgb() == impl.regs.palette_rgb()
    assert reference.latch == impl.latch
    assert reference.vram == impl.vram
    return ours, reference


@pytest.mark.parametrize("seed", range(8))
def test_random_port_and_window_sequences_match_the_reference(seed):
    rng = random.Random(seed)
    vram_size = (256 << 10, 1 << 20, 16 << 20)[seed % 3]
    log, reference = _same(_random_script(rng, 5000), vram_size)
    reads = [entry[1] for entry in log if len(entry) == 3 and isinstance(entry[1], int)]
    writes = [entry[1] for entry in log if len(entry) == 2 and isinstance(entry[1], tuple)]
    assert len(set(reads)) > 20 and len(writes) > 100       # the script did reach memory
    assert any(reference.vram)


@pytest.mark.parametrize("mode", sorted(tvr.MODES))
def test_every_vgabios_mode_draws_the_same_planes(mode):
    """A mode set, then writes and reads through the window that mode
    decodes, in every write mode with the mode's own sequencer settings."""
    rng = random.Random(mode)
    gr = bytes.fromhex(tvr.MODES[mode][2])
    script = tvr._init_vga_card() + tvr._set_mode(mode) + [("out", 0x3C0, 0x20)]
    for _ in range(1500):
        if rng.random() < 0.1:
            index = rng.choice((0, 1, 2, 3, 4, 5, 7, 8))
            value = rng.randrange(256)
            if index == 5:                      # the mode's odd/even and shift control
                value = value & 0x0B | gr[5] & 0x70
            script.append(("out", 0x3CE, index | value << 8, 2))
        else:
            base = vm.WINDOWS[gr[6] >> 2 & 3][0]
            address, size = base + rng.randrange(0x400), rng.choice((1, 1, 2, 4))
            if rng.random() < 0.6:
                script.append(("write", address, rng.randrange(1 << 8 * size), size))
            else:
                script.append(("read", address, size))
    _same(script, 1 << 20)


def test_input_status_1_follows_the_same_raster():
    """Retrace and display-enable bits sampled over two frames of modes 3,
    12h, 13h and 7 (set twice: see tests/test_vga_registers.py's SCREENS)."""
    for mode in (0x03, 0x12, 0x13, 0x07):
        reference, impl = Reference(1 << 20), Impl(1 << 20)
        script = tvr._init_vga_card() + tvr._set_mode(mode) + tvr._set_mode(mode)
        _run(reference, script)
        _run(impl, script)
        samples = range(0, 2 * tvr.FRAME_NS, 997)
        ours = [reference.regs.input_status_1(now) for now in samples]
        assert ours == [impl.regs.input_status_1(now) for now in samples]
        assert {0, 1, 9} <= set(ours)


def test_bios_init_and_vbe_clear_as_the_reference():
    reference, impl = Reference(8 << 20), Impl(8 << 20)
    reference.regs.bios_init()
    impl.regs.bios_init()
    assert tuple(reference.regs.display()) == tuple(impl.regs.display())
    assert reference.regs.palette_rgb() == impl.regs.palette_rgb()
    for step in tvr._vbe_mode(1024, 768, 32):
        assert impl.regs.write(step[1], 2, step[2]) == reference.regs.write(step[1], 2, step[2])
    assert impl.regs.write(0x1CE, 2, 4) == 0
    assert impl.regs.write(0x1CF, 2, 0) == 0
    assert impl.regs.write(0x1CF, 2, 0x01) == 1024 * 768 * 4


def test_a_bad_video_memory_size_or_buffer_is_refused():
    with pytest.raises(ValueError, match="64 KiB"):
        VgaPorts(1000)
    with pytest.raises(ValueError, match="writable"):
        VgaPlanes(bytes(1 << 16), VgaPorts())


def test_multi_byte_window_accesses_are_byte_accesses_in_order():
    """A dword in chain 4 (the fast slice) and in planar mode 0 (the latches
    end as the last byte's) equal four byte accesses."""
    for memory_mode, gr5 in ((0x08, 0x00), (0x00, 0x00), (0x00, 0x10), (0x00, 0x08)):
        one, four = Impl(1 << 20), Impl(1 << 20)
        for engine in (one, four):
            for port, value in ((0x3C4, 2), (0x3C5, 0x0F), (0x3C4, 4), (0x3C5, memory_mode),
                                (0x3CE, 5), (0x3CF, gr5), (0x3CE, 8), (0x3CF, 0xFF)):
                engine.out(port, value, 1)
        four.store(0xA0101, 0x44332211, 4)
        for i, byte in enumerate((0x11, 0x22, 0x33, 0x44)):
            one.store(0xA0101 + i, byte, 1)
        assert one.vram == four.vram and any(one.vram)
        assert four.load(0xA0101, 4) == sum(one.load(0xA0101 + i, 1) << 8 * i for i in range(4))
        assert one.latch == four.latch


def test_every_memory_register_takes_effect_at_the_next_access():
    """Sequencer 2 and 4 and graphics controller 0-8 written through the
    data port and as a word to the index port, each followed at once by
    window reads and writes: the same as the reference (no stale rules)."""
    rng = random.Random(11)
    script: list[tuple] = [("out", 0x3C4, 0x0F02, 2), ("out", 0x3CE, 0xFF08, 2)]
    for _ in range(600):
        port, index = rng.choice([(0x3C4, 2), (0x3C4, 4)] + [(0x3CE, i) for i in range(9)])
        value = rng.randrange(256)
        if (port, index) == (0x3CE, 6):
            value = value & 0xF3 | rng.choice((0, 4))            # the 0xA0000 windows
        if rng.random() < 0.5:
            script += [("out", port, index), ("out", port + 1, value)]
        else:
            script.append(("out", port, index | value << 8, 2))
        address = 0xA0000 + rng.randrange(64)
        script += [("read", address, 1), ("write", address + 1, rng.randrange(256), 1),
                   ("read", address + 1, 1)]
    _same(script, 1 << 20)


# --- impl against QEMU: the VBE bank ------------------------------------------------------


def test_vbe_bank_moves_the_64k_window_as_in_qemu():
    """VBE on at 8 bpp (chain 4, memory map 1): a byte written in bank 3 is
    not seen in bank 0 and is seen again in bank 3; banked planes as QEMU."""
    script = tvr._vbe_mode(1024, 768, 8, 0xC1)
    for bank, address, value in ((3, 0xA0010, 0x5A), (0, 0xA0010, 0x11), (3, 0xA0011, 0x77)):
        script += [("out", 0x1CE, 5, 2), ("out", 0x1CF, bank, 2), ("write", address, value)]
    for bank in (0, 3, 1):
        script += [("out", 0x1CE, 5, 2), ("out", 0x1CF, bank, 2), ("read", 0xA0010),
                   ("read", 0xA0011)]
    impl = Impl(16 << 20, banked=True)
    log = []
    for step in script:
        if step[0] == "out":
            impl.out(step[1], step[2], step[3])
        elif step[0] == "write":
            impl.store(step[1], step[2], 1)
        else:
            log.append(f"read {step[1]:#x} = {impl.load(step[1], 1):#x}")
    assert impl.vram[3 << 16 | 0x10] == 0x5A and impl.vram[0x10] == 0x11
    assert log == qtest.run(script, tvr.QEMU_ARGS)
    assert log[:4] == ["read 0xa0010 = 0x11", "read 0xa0011 = 0x0", "read 0xa0010 = 0x5a",
                       "read 0xa0011 = 0x77"]


def test_vbe_bank_applies_to_memory_map_1_only_as_in_qemu():
    """VBE off, BANK 3 written: chain 4 in memory map 0 (128 KiB) reaches
    byte 0x20 itself, in map 1 (64 KiB) byte 0x30020, as QEMU does."""
    script = [("out", 0x1CE, 5, 2), ("out", 0x1CF, 3, 2), ("out", 0x3C4, 0x0F02, 2),
              ("out", 0x3C4, 0x0804, 2)]
    for gr6, value in ((0x01, 0x66), (0x05, 0x77), (0x01, None), (0x05, None),
                       (0x09, 0x44), (0x0D, None)):
        script.append(("out", 0x3CE, gr6 << 8 | 6, 2))
        address = 0xA0020 if gr6 < 0x08 else 0xB0020 if gr6 < 0x0C else 0xB8020
        script.append(("write", address, value) if value is not None else ("read", address))
    impl = Impl(16 << 20, banked=True)
    log = []
    for step in script:
        if step[0] == "out":
            impl.out(step[1], step[2], step[3])
        elif step[0] == "write":
            impl.store(step[1], step[2], 1)
        else:
            log.append(f"read {step[1]:#x} = {impl.load(step[1], 1):#x}")
    assert impl.vram[0x20] == 0x44 and impl.vram[0x30020] == 0x77
    assert log == qtest.run(script, tvr.QEMU_ARGS) == [
        "read 0xa0020 = 0x66", "read 0xa0020 = 0x77", "read 0xb8020 = 0x44"]


# --- the scanner: impl.vga_scan against spec.devices.vga_scanner ---------------------------


def _same_scans(reference: tvs.Model, impl: tvs.ImplModel, name: str) -> int:
    """Display, bands, glyph spans and every band's pixels in both cursor
    phases equal on the two sides; returns how many bands were drawn."""
    display, ours = reference.regs.display(), impl.regs.display()
    assert tuple(display) == tuple(ours), name
    assert reference.vram == impl.vram, name
    size = len(reference.vram)
    band_list = sc.bands(display, size)
    assert [tuple(b) for b in vga_scan.bands(ours, size)] == [tuple(b) for b in band_list], name
    assert vga_scan.glyph_spans(ours) == sc.glyph_spans(display), name
    palette, impl_palette = reference.regs.palette_rgb(), impl.regs.palette_bytes()
    vga_scan._line_memo, vga_scan._text_memo = vga_scan._Memo(), vga_scan._Memo()
    for memo in (False, True):                  # lines drawn afresh (together), then from the memo
        assert vga_scan.draw(ours, impl_palette, impl.vram, True) == sc.draw(
            display, palette, reference.vram, True), f"{name}: draw (memo {memo})"
    vga_scan._line_memo, vga_scan._text_memo = vga_scan._Memo(), vga_scan._Memo()
    for band in band_list:                      # afresh one at a time
        for blink in (True, False):
            expected = sc.draw_band(display, palette, reference.vram, band, blink)
            got = vga_scan.draw_band(ours, impl_palette, impl.vram, band, blink)
            assert got == expected, f"{name}: band at line {band.first}, blink {blink}"
    return len(band_list)


#: test_vga_scanner's layouts, and a few more
LAYOUTS = dict(tvs.LAYOUTS, **{
    "vbe 320x200x16": tvs._vbe(320, 200, 16, virtual=336, x=2, y=4),
    "mode 12h from the end": tvs._mode(0x12) + tvs._regs(0x3D4, {0x0C: 0xFF, 0x0D: 0xF0}),
    "mode 04h from the end": tvs._mode(0x04) + tvs._regs(0x3D4, {0x0C: 0xFF, 0x0D: 0xE0}),
    "mode 13h plane enable": tvs._mode(0x13) + [("in", 0x3DA), ("out", 0x3C0, 0x32),
                                                 ("out", 0x3C0, 0x03), ("out", 0x3C0, 0x20)],
})


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_scanner_layouts_draw_as_the_reference(name):
    """test_vga_scanner's layouts (text with split and two fonts, planar,
    CGA, chain 4, VBE 4-32 bpp with offsets) and lines that run off the end
    of 256 KiB of video memory, over random video memory."""
    reference, impl = tvs.Model(), tvs.ImplModel()
    if "end" in name:
        reference.regs, reference.vram = vr.VgaRegisters(256 << 10), bytearray(256 << 10)
        impl.regs, impl.vram = VgaPorts(256 << 10), bytearray(256 << 10)
        impl.planes = VgaPlanes(impl.vram, impl.regs)
    for side in (reference, impl):
        side.run(LAYOUTS[name])
    data = random.Random(name).randbytes(min(1 << 20, len(reference.vram)))
    for side in (reference, impl):
        side.vram[:len(data)] = data
    assert _same_scans(reference, impl, name)


@pytest.mark.parametrize("seed", range(6))
def test_scanner_random_registers_draw_as_the_reference(seed):
    """test_vga_scanner's random register values on every mode the VGA BIOS
    sets and random VBE modes, over random video memory (through the
    window and the LFB), 10 pictures a seed; video memory of 1 MiB in
    odd seeds, so that lines and fonts wrap or run off its end."""
    rng = random.Random(seed)
    size = 1 << 20 if seed % 2 else tvs.VRAM
    reference, impl = tvs.Model(), tvs.ImplModel()
    if size != tvs.VRAM:
        reference.regs, reference.vram = vr.VgaRegisters(size), bytearray(size)
        impl.regs, impl.vram = VgaPorts(size), bytearray(size)
        impl.planes = VgaPlanes(impl.vram, impl.regs)
    memory = tvs._memory(rng)
    if size != tvs.VRAM:
        memory = [step for step in memory if step[0] != "write"]    # no LFB data beyond
    drawn = 0
    for n in range(10):
        base = rng.choice(tvs.BASES + ("vbe",))
        text = base in (0x03, 0x01, 0x07)
        if base == "vbe":
            steps = tvs._set_mode(0x13) + tvs._random_vbe(rng)
        else:
            port = 0x3B4 if base == 0x07 else 0x3D4
            steps = ([("out", 0x1CE, 4, 2), ("out", 0x1CF, 0, 2)] + tvs._set_mode(base)
                     + tvs._random_registers(rng, text, port))
        steps += [("in", 0x3DA), ("out", 0x3C0, 0x20)]
        for side in (reference, impl):
            side.run((memory if n == 0 else []) + steps)
        drawn += _same_scans(reference, impl, f"seed {seed} picture {n} (mode {base})")
    assert drawn > 100


def test_scanner_degenerate_and_blank_pictures():
    """Text of one cell or too many, rows running past the end of video
    memory, the cursor on the last cell, a blank display."""
    reference, impl = tvs.Model(), tvs.ImplModel()
    for side in (reference, impl):
        side.run(tvs._mode(0x03))
        side.vram[:] = random.Random(7).randbytes(len(side.vram))
    display = reference.regs.display()
    size = len(reference.vram)
    for changed in (dict(columns=1, rows=1), dict(columns=161, rows=100),
                    dict(start=size - 4 * 40), dict(start=size - 1),
                    dict(cursor=((size >> 2) - 1, 0, 31), start=size - 4 * 80),
                    dict(cursor=(5, 9, 3)), dict(line_graphics=True, char_width=9),
                    dict(start=6, cursor=(3, 0, 15)),
                    dict(fonts=(7 * 0x8000 + 2, 2))):
        spec_display = display._replace(**changed)
        ours = impl.regs.display()._replace(**changed)
        band_list = sc.bands(spec_display, size)
        assert [tuple(b) for b in vga_scan.bands(ours, size)] == [tuple(b) for b in band_list]
        palette = reference.regs.palette_rgb()
        assert (vga_scan.draw(ours, palette, impl.vram, True)
                == sc.draw(spec_display, palette, reference.vram, True)), changed
    blank = vr.Display(vr.BLANK, 0, 0)
    assert vga_scan.bands(blank, size) == () and vga_scan.draw(blank, [], impl.vram, True) == b""
    half = vga_scan.CURSOR_HALF_PERIOD_NS
    times = (0, 1, half - 1, half, 3 * half, 3 * half + 5)
    assert [vga_scan.cursor_visible(t) for t in times] == [
        sc.cursor_visible(t) for t in times] == [True, True, True, False, False, False]
    assert [vga_scan.next_blink_turn(t) for t in times] == [sc.next_blink_turn(t) for t in times]


def test_scanner_cursor_bands_as_the_reference():
    """The bands showing the cursor's word, over cursor places in the first
    rows, the last, past the end and after a line-compare restart (twice)."""
    reference, impl = tvs.Model(), tvs.ImplModel()
    split = tvs._regs(0x3D4, {0x0C: 0x00, 0x0D: 0x50, 0x18: 100, 0x07: 0x0F, 0x09: 0x0F})
    for side in (reference, impl):
        side.run(tvs._mode(0x03) + split)
    display, ours = reference.regs.display(), impl.regs.display()
    size = len(reference.vram)
    found = 0
    for word in (0, 0x50, 0x51, 0x50 + 80 * 7 - 1, 0x50 + 80 * 7, 80 * 3 + 2, 0x50 + 80 * 24,
                 0x50 + 80 * 25, 1 << 20):
        for hidden in (False, True):
            cursor = None if hidden else (word, 0, 15)
            spec_bands = sc.cursor_bands(display._replace(cursor=cursor),
                                         sc.bands(display, size))
            impl_bands = vga_scan.cursor_bands(ours._replace(cursor=cursor),
                                               vga_scan.bands(ours, size))
            assert [tuple(b) for b in impl_bands] == [tuple(b) for b in spec_bands], word
            found += len(spec_bands)
    assert found >= 6
    blank = vr.Display(vr.BLANK, 0, 0)
    assert vga_scan.cursor_bands(blank, ()) == sc.cursor_bands(blank, []) == []
