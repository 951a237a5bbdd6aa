"""The VGA's planes, latches and read/write modes (spec.devices.vga_memory),
by hand and against QEMU's VGA through qtest; impl's (impl.vga_planes, with
impl.vga_ports) against the same QEMU runs."""

import random

import pytest

from impl.vga_planes import VgaPlanes
from impl.vga_ports import VgaPorts
from spec.devices import vga_memory as vm
from tests import qtest

# QEMU's (and qemu-dm's) masks of the registers' implemented bits
SR_MASK = {2: 0x0F, 4: 0x0E}
GR_MASK = (0x0F, 0x0F, 0x0F, 0x1F, 0x03, 0x7B, 0x0F, 0x0F, 0xFF)


def _regs(sr: dict[int, int], gr: dict[int, int]) -> vm.Registers:
    s, g = bytearray(8), bytearray(9)
    for i, v in sr.items():
        s[i] = v & SR_MASK[i]
    for i, v in gr.items():
        g[i] = v & GR_MASK[i]
    return vm.Registers(s, g)


def test_chain4_is_a_byte_index_and_honours_the_map_mask():
    vram, regs = bytearray(1 << 18), _regs({2: 0x0B, 4: 0x08}, {6: 0x04})   # map 1
    assert vm.write(vram, 0, regs, 0xA0005, 0x5A) == (5, 1)
    assert vram[5] == 0x5A
    assert vm.write(vram, 0, regs, 0xA0006, 0x77) is None           # plane 2 masked off
    assert vm.read(vram, 0, regs, 0xA0005) == (0x5A, 0)
    assert vm.read(vram, 0, regs, 0xB0000) == (0xFF, 0)             # outside map 1


def test_odd_even_puts_characters_in_plane_0_and_attributes_in_plane_1():
    vram, regs = bytearray(1 << 18), _regs({2: 0x03}, {5: 0x10, 6: 0x0C})  # map 3
    vm.write(vram, 0, regs, 0xB8002, ord("A"))
    vm.write(vram, 0, regs, 0xB8003, 0x1F)
    assert vram[4:6] == bytes([ord("A"), 0x1F])                        # word 1, planes 0/1


def test_planar_write_mode_0_with_set_reset_bit_mask_and_map_mask():
    vram = bytearray(1 << 18)
    regs = _regs({2: 0x07}, {0: 0x05, 1: 0x01, 3: 0x00, 8: 0xF0})
    vm.write(vram, 0, regs, 0xA0010, 0x3C)
    # plane 0 from set/reset (1 -> 0xF0 under the bit mask), planes 1-2 the
    # byte under the mask (0x30), plane 3 masked off by the map mask
    assert vram[0x40:0x44] == bytes([0xF0, 0x30, 0x30, 0x00])


def test_read_mode_1_compares_colours():
    vram = bytearray(1 << 18)
    vram[0:4] = bytes([0xFF, 0x0F, 0x00, 0xAA])
    regs = _regs({}, {2: 0x03, 5: 0x08, 7: 0x07})        # colour 3, plane 3 don't care
    value, latch = vm.read(vram, 0, regs, 0xA0000)
    assert latch == 0xAA000FFF and value == 0x0F


#: a few addresses in each window, so that reads meet what was written
POOL = [base + i for base in (0xA0000, 0xA4000, 0xB0000, 0xB8000) for i in range(6)]


def _random_script(rng: random.Random, steps: int) -> list[tuple]:
    script: list[tuple] = [("out", 0x3C4, 2), ("out", 0x3C5, 0x0F),
                           ("out", 0x3CE, 8), ("out", 0x3CF, 0xFF)]
    for _ in range(steps):
        kind = rng.random()
        if kind < 0.25:
            index = rng.choice((2, 4))
            script += [("out", 0x3C4, index), ("out", 0x3C5, rng.randrange(256))]
        elif kind < 0.5:
            index = rng.randrange(9)
            value = rng.randrange(256)
            if index == 6:          # mostly the 128 KiB window, which decodes the whole pool
                value = value & 0xF3 | rng.choice((0, 0, 0, 4, 8, 12))
            script += [("out", 0x3CE, index), ("out", 0x3CF, value)]
        elif kind < 0.8:
            script.append(("write", rng.choice(POOL), rng.randrange(256)))
        else:
            script.append(("read", rng.choice(POOL)))
    return script


def _model(script: list[tuple]) -> list[str]:
    """The script on the model, logged as qtest logs it."""
    vram, latch, sr, gr = bytearray(16 << 20), 0, bytearray(8), bytearray(9)
    sr_index = gr_index = 0
    log = []
    for step in script:
        regs = vm.Registers(sr, gr)
        if step[:2] == ("out", 0x3C4):
            sr_index = step[2]
        elif step[:2] == ("out", 0x3C5):
            sr[sr_index] = step[2] & SR_MASK.get(sr_index, 0xFF)
        elif step[:2] == ("out", 0x3CE):
            gr_index = step[2]
        elif step[:2] == ("out", 0x3CF):
            gr[gr_index] = step[2] & GR_MASK[gr_index]
        elif step[0] == "write":
            vm.write(vram, latch, regs, step[1], step[2])
        else:
            value, latch = vm.read(vram, latch, regs, step[1])
            log.append(f"read {step[1]:#x} = {value:#x}")
    return log


def _impl_model(script: list[tuple]) -> list[str]:
    """The script on impl's register file and planes, logged as qtest logs it."""
    ports = VgaPorts()
    planes = VgaPlanes(bytearray(16 << 20), ports)
    log = []
    for step in script:
        if step[0] == "out":
            ports.write(step[1], 1, step[2])
        elif step[0] == "write":
            planes.write_byte(step[1], step[2])
        else:
            log.append(f"read {step[1]:#x} = {planes.read_byte(step[1]):#x}")
    return log


@pytest.mark.parametrize("seed", range(6))
def test_random_accesses_read_what_qemus_vga_reads(seed):
    """Random register settings, writes and reads through the legacy window,
    on the model and on QEMU's VGA (-vga std): every read returns the same
    byte. The addresses come from a small pool in every window, so reads meet
    earlier writes of every mode, and the latches carry state between them.
    impl's planes run the same script and read the same bytes."""
    rng = random.Random(seed)
    script = _random_script(rng, 1000)
    ours = _model(script)
    assert len({line.split(" = ")[1] for line in ours}) > 10     # reads see varied data
    theirs = qtest.run(script, ("-vga", "std"))
    assert ours == theirs
    assert _impl_model(script) == theirs, "impl.vga_planes differs"
