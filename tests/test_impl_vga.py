"""impl's VGA (impl.vga_ports, impl.vga_planes) against the reference
(spec.devices.vga_registers, spec.devices.vga_memory): the same random
sequences of port accesses (every VGA and VBE port, byte, word and dword,
the VGA BIOS's mode tables, VBE mode sets) and legacy-window accesses (every
memory map, chain 4, odd/even, planar read and write modes, 1, 2 and 4
bytes) on both; every value read, the changed range of every byte write,
the latches, the derived display and palette, every register and the whole
of video memory equal. The QEMU-backed tests of tests/test_vga_registers.py
and tests/test_vga_memory.py hold impl to QEMU's VGA as well; the VBE bank,
which the reference's memory rules leave to the device, is tested here
against QEMU."""

import random
import zlib

import pytest

from impl.vga_planes import VgaPlanes
from impl.vga_ports import VgaPorts
from spec.devices import vga_memory as vm
from spec.devices import vga_registers as vr
from tests import qtest
from tests import test_vga_registers as tvr

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
        changed = None
        for i in range(size):
            changed = vm.write(self.vram, self.latch, self.regs.memory_registers(), address + i,
                               value >> 8 * i & 0xFF)
        return changed if size == 1 else None

    def load(self, address: int, size: int) -> int:
        value = 0
        for i in range(size):
            byte, self.latch = vm.read(self.vram, self.latch, self.regs.memory_registers(),
                                       address + i)
            value |= byte << 8 * i
        return value


class Impl:
    """impl's register file and planes on video memory of their own."""

    def __init__(self, vram_size: int, banked: bool = False) -> None:
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


def test_a_bad_video_memory_size_is_refused():
    with pytest.raises(ValueError, match="64 KiB"):
        VgaPorts(1000)


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
