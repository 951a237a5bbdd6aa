"""The VGA's scanner (spec.devices.vga_scanner): the same register and video
memory accesses on the spec (VgaRegisters, vga_memory's rules on 8 MiB of
video memory) and on QEMU 7.2's VGA (-vga std, 8 MiB as Xen 3.0.4's
VGA_RAM_SIZE) through qtest; QEMU's screendump and the scanner's picture
equal pixel for pixel. Then, by hand: a band's spans hold every byte it
reads."""

import base64
import os
import random
import socket
import subprocess
import tempfile
import time

import pytest

from spec.devices import vga_memory
from spec.devices import vga_registers as vr
from spec.devices import vga_scanner as sc
from tests.conftest import peer
from tests.test_vga_registers import _init_vga_card, _set_mode, _vbe_mode

VRAM = 8 << 20
QEMU_ARGS = ("-vga", "std", "-global", f"VGA.vgamem_mb={VRAM >> 20}")
LFB = 0xE0000000                      # where the tests put the std VGA's BAR 0
#: program BAR 0 of 00:02.0 (the std VGA) to LFB and enable its memory decoding
MAP_LFB = [("out", 0xCF8, 0x80001010, 4), ("out", 0xCFC, LFB, 4),
           ("out", 0xCF8, 0x80001004, 4), ("out", 0xCFC, 0x00000003, 4)]


class Qemu:
    """QEMU's PC, frozen (-S), driven through qtest on its standard input and
    output, its pictures taken by screendump through the human monitor."""

    def __init__(self) -> None:
        self.folder = tempfile.TemporaryDirectory(prefix="hvmspec-scan-")
        self.monitor = os.path.join(self.folder.name, "monitor")
        self.proc = subprocess.Popen(
            [peer("qemu-system-i386"), "-machine", "pc", "-S", "-nodefaults", "-display", "none",
             *QEMU_ARGS, "-qtest", "stdio", "-monitor", f"unix:{self.monitor},server=on,wait=off"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.client: socket.socket | None = None

    def run(self, steps: list[tuple]) -> None:
        lines = []
        for step in steps:
            kind = step[0]
            if kind == "out":
                size = step[3] if len(step) > 3 else 1
                lines.append(f"out{'bwl'[size.bit_length() - 1]} {step[1]:#x} {step[2]:#x}")
            elif kind == "in":
                size = step[2] if len(step) > 2 else 1
                lines.append(f"in{'bwl'[size.bit_length() - 1]} {step[1]:#x}")
            elif kind == "write":
                data = base64.b64encode(step[2]).decode()
                lines.append(f"b64write {step[1]:#x} {len(step[2]):#x} {data}")
            elif kind == "planes":                   # mode 12h's memory layout, then each plane
                for plane, data in enumerate(step[1]):
                    lines += [f"outb 0x3c4 0x2", f"outb 0x3c5 {1 << plane:#x}",
                              f"b64write 0xa0000 {len(data):#x} {base64.b64encode(data).decode()}"]
        self.proc.stdin.write("".join(line + "\n" for line in lines))
        self.proc.stdin.flush()
        for _ in lines:
            while True:
                answer = self.proc.stdout.readline()
                if not answer:
                    raise AssertionError("qtest stopped")
                if answer.startswith("OK"):
                    break
                assert not answer.startswith("FAIL"), answer

    def screen(self) -> tuple[int, int, bytes]:
        shot = os.path.join(self.folder.name, "shot.ppm")
        self._command(f"screendump {shot}")
        with open(shot, "rb") as picture:
            magic, size, depth, pixels = picture.read().split(b"\n", 3)
        width, height = int(size.split()[0]), int(size.split()[1])
        assert (magic, depth) == (b"P6", b"255")
        # QEMU 7.2's ppm_save writes each row's pixman stride, 3 * width
        # rounded up to 4 bytes: the padding goes
        stride = (3 * width + 3) & ~3
        assert len(pixels) == stride * height
        pixels = b"".join(pixels[y * stride:y * stride + 3 * width] for y in range(height))
        return width, height, pixels

    def _command(self, command: str) -> None:
        if self.client is None:
            self.client = socket.socket(socket.AF_UNIX)
            for _ in range(100):
                try:
                    self.client.connect(self.monitor)
                    break
                except OSError:
                    time.sleep(0.05)
            self.client.settimeout(20)
            self._prompt()
        self.client.sendall(command.encode() + b"\n")
        self._prompt()

    def _prompt(self) -> None:
        answer = b""
        while b"(qemu)" not in answer:
            answer += self.client.recv(4096)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        self.proc.kill()
        self.proc.wait()
        self.folder.cleanup()


class Model:
    """The spec's side: the register file, 8 MiB of video memory, the latches."""

    def __init__(self) -> None:
        self.regs = vr.VgaRegisters(VRAM)
        self.vram = bytearray(VRAM)
        self.latch = 0

    def run(self, steps: list[tuple]) -> None:
        for step in steps:
            kind = step[0]
            if kind == "out":
                cleared = self.regs.write(step[1], step[3] if len(step) > 3 else 1, step[2])
                self.vram[:cleared] = bytes(cleared)
            elif kind == "in":
                self.regs.read(step[1], step[2] if len(step) > 2 else 1, 0)
            elif kind == "write":
                self._write(step[1], step[2])
            elif kind == "planes":
                # write mode 0, one plane in the map mask, bit mask 0xFF: the
                # byte lands in that plane (tests/test_vga_memory.py)
                for plane, data in enumerate(step[1]):
                    self.vram[plane:plane + 4 * len(data):4] = data
                self.regs.write(0x3C4, 1, 2)
                self.regs.write(0x3C5, 1, 0x08)

    def _write(self, address: int, data: bytes) -> None:
        if address >= LFB:
            self.vram[address - LFB:address - LFB + len(data)] = data
            return
        memory = self.regs.memory_registers()
        for i, value in enumerate(data):
            vga_memory.write(self.vram, self.latch, memory, address + i, value)

    def screen(self, blink: bool) -> tuple[int, int, bytes]:
        display = self.regs.display()
        pixels = sc.draw(display, self.regs.palette_rgb(), self.vram, blink)
        return display.width, display.height, pixels


def _differences(ours: tuple[int, int, bytes], theirs: tuple[int, int, bytes]) -> str:
    if ours[:2] != theirs[:2]:
        return f"size {ours[:2]} != QEMU's {theirs[:2]}"
    width, pixels = ours[0], [i // 3 for i in range(len(ours[2])) if ours[2][i] != theirs[2][i]]
    if not pixels:
        return ""
    first = pixels[0]
    here = slice(3 * first, 3 * first + 3)
    return (f"{len(set(pixels))} pixels differ, first at x={first % width} y={first // width}: "
            f"{ours[2][here].hex()} != {theirs[2][here].hex()}")


def _same_pictures(pictures: list[tuple]) -> list[tuple[int, int, bytes]]:
    """Each picture's steps (name, steps[, the cursor's phase]) on both
    sides, then both pictures compared; one QEMU for all of them. Returns
    QEMU's pictures. QEMU runs no CPU (-S): its virtual clock stays at 0,
    the cursor's phase is on, but for the turn each change between text,
    graphics and blank makes (vga_scanner's docstring)."""
    qemu, model, shots, failures = Qemu(), Model(), [], []
    try:
        for name, steps, *blink in pictures:
            qemu.run(steps)
            model.run(steps)
            theirs = qemu.screen()
            shots.append(theirs)
            display = model.regs.display()
            if display.mode == vr.BLANK or not sc.bands(display, VRAM):
                continue                     # (QEMU keeps a last picture: not drawn here)
            difference = _differences(model.screen(*blink or [True]), theirs)
            if difference:
                failures.append(f"{name}: {difference}")
    finally:
        qemu.close()
    assert not failures, "\n".join(failures)
    return shots


# --- what the pictures show ----------------------------------------------------------------


def _regs(port: int, values: dict[int, int] | list[tuple[int, int]]) -> list[tuple]:
    pairs = values.items() if isinstance(values, dict) else values
    return [s for index, value in pairs for s in (("out", port, index), ("out", port + 1, value))]


def _font_access(on: bool) -> list[tuple]:
    """vgabios's get_font_access / release_font_access: plane 2 at 0xA0000."""
    if on:
        return (_regs(0x3C4, [(0, 0x01), (2, 0x04), (4, 0x07), (0, 0x03)])
                + _regs(0x3CE, {4: 0x02, 5: 0x00, 6: 0x04}))
    return (_regs(0x3C4, [(0, 0x01), (2, 0x03), (4, 0x03), (0, 0x03)])
            + _regs(0x3CE, {4: 0x00, 5: 0x10, 6: 0x0E}))


def _font(rng: random.Random, map_index: int = 0) -> list[tuple]:
    """A random 8x32 font loaded into character map ``map_index``."""
    glyphs = bytes(rng.randrange(256) for _ in range(256 * 32))
    return (_font_access(True) + [("write", 0xA0000 + 0x2000 * map_index, glyphs)]
            + _font_access(False))


def _text(rng: random.Random, cells: int = 4000, address: int = 0xB8000) -> list[tuple]:
    """Random characters and attributes (all of them, line graphics too)."""
    return [("write", address, bytes(rng.randrange(256) for _ in range(2 * cells)))]


def _cursor(word: int, first: int, last: int) -> list[tuple]:
    return _regs(0x3D4, {0x0A: first, 0x0B: last, 0x0E: word >> 8, 0x0F: word & 0xFF})


def _planes(rng: random.Random, size: int, address: int = 0xA0000) -> list[tuple]:
    """Random bytes into each plane in turn (map mask), write mode 0."""
    steps: list[tuple] = []
    for plane in range(4):
        steps += _regs(0x3C4, {2: 1 << plane})
        steps.append(("write", address, rng.randbytes(size)))
    return steps + _regs(0x3C4, {2: 0x0F})


def _mode(mode: int) -> list[tuple]:
    return _init_vga_card() + _set_mode(mode)


def _vbe(xres: int, yres: int, bpp: int, virtual: int = 0, x: int = 0, y: int = 0,
         enable: int = 0x41) -> list[tuple]:
    steps = _mode(0x13) + MAP_LFB + _vbe_mode(xres, yres, bpp, enable)
    for index, value in ((6, virtual), (8, x), (9, y)):
        if value:
            steps += [("out", 0x1CE, index, 2), ("out", 0x1CF, value, 2)]
    return steps + [("out", 0x3C0, 0x20)]


# --- against QEMU --------------------------------------------------------------------------


def test_text_modes_fonts_cursor_and_line_graphics_as_qemu_draws():
    """Mode 3 with a random font and text, 9-dot cells with line graphics on
    and off, the cursor in its visible phase (mid-screen, then in a cell
    after a start address moved), two fonts chosen by attribute bit 3, 8-dot
    cells, 40 columns (16-dot cells), and the cursor's off phase. (QEMU
    redraws a text cell only when it sees a change: a change of the line
    graphics bit alone leaves its picture as it was, so the start address
    moves with it.)"""
    rng = random.Random(3)
    line_graphics_off = [("in", 0x3DA), ("out", 0x3C0, 0x30), ("out", 0x3C0, 0x08),
                         ("out", 0x3C0, 0x20)]
    pictures = [
        ("mode 3 font + cursor", _mode(0x03) + _font(rng) + _text(rng) + _cursor(1000, 3, 12)),
        ("line graphics off, start address moved", line_graphics_off
         + _regs(0x3D4, {0x0C: 0x00, 0x0D: 0x55}) + _cursor(0x55 + 81, 0, 31)),
        ("two fonts", _font(rng, 2) + _regs(0x3C4, {3: 0x04}) + _cursor(5, 14, 2)),
        ("8-dot cells", _regs(0x3C4, {1: 0x01})),
        ("40 columns", _mode(0x01) + _font(rng) + _text(rng, 1000) + _cursor(41, 6, 7)),
        ("blank", [("in", 0x3DA), ("out", 0x3C0, 0x00)]),
        ("cursor off phase", [("out", 0x3C0, 0x20)], False),
    ]
    _same_pictures(pictures)


def test_text_line_compare_restarts_at_the_row_end():
    rng = random.Random(4)
    # line compare 100: CRTC 0x18, bit 8 in 0x07 bit 4, bit 9 in 0x09 bit 6
    split = _regs(0x3D4, {0x0C: 0x02, 0x0D: 0x00, 0x18: 100, 0x07: 0x0F, 0x09: 0x0F})
    pictures = [("split at 100", _mode(0x03) + _font(rng) + _text(rng, 8000) + split
                 + _cursor(3, 0, 15)),
                ("split at 0", _regs(0x3D4, {0x18: 0}))]
    _same_pictures(pictures)


def test_planar_cga_chain4_and_mode_x_as_qemu_draws():
    rng = random.Random(5)
    mode_x = (_regs(0x3C4, {4: 0x06}) + _regs(0x3D4, {0x14: 0x00, 0x17: 0xE3})
              + _planes(rng, 0x4B00))
    pictures = [
        ("mode 12h", _mode(0x12) + _regs(0x3CE, {8: 0xFF}) + _planes(rng, 80 * 480)),
        ("plane enable 0101", [("in", 0x3DA), ("out", 0x3C0, 0x32), ("out", 0x3C0, 0x05),
                               ("out", 0x3C0, 0x20)] + _regs(0x3D4, {0x0D: 0x10})),
        ("mode 0Dh", _mode(0x0D) + _regs(0x3CE, {8: 0xFF}) + _planes(rng, 40 * 200)),
        ("mode 04h", _mode(0x04) + [("write", 0xB8000, rng.randbytes(0x8000))]),
        ("mode 06h", _mode(0x06) + [("write", 0xB8000, rng.randbytes(0x8000))]),
        ("mode 13h", _mode(0x13) + [("write", 0xA0000, rng.randbytes(0x10000))]),
        ("mode X", mode_x),
    ]
    _same_pictures(pictures)


def test_line_compare_split_screen_and_start_address_as_qemu_draws():
    rng = random.Random(6)
    split = _regs(0x3D4, {0x0C: 0x12, 0x0D: 0x34, 0x18: 200})
    pictures = [("mode 12h split", _mode(0x12) + _regs(0x3CE, {8: 0xFF})
                 + _planes(rng, 0x10000) + split + _regs(0x3D4, {0x07: 0x2E, 0x09: 0x00})),
                ("mode 13h split", _mode(0x13) + [("write", 0xA0000, rng.randbytes(0x10000))]
                 + split + _regs(0x3D4, {0x07: 0x0F, 0x09: 0x01}))]
    _same_pictures(pictures)


@pytest.mark.parametrize("bpp", [8, 15, 16, 24, 32])
def test_vbe_modes_with_offsets_and_virtual_width_as_qemu_draws(bpp):
    rng = random.Random(bpp)
    pictures = [(f"640x480x{bpp} at (24, 17) of 800 wide",
                 _vbe(640, 480, bpp, virtual=800, x=24, y=17)
                 + [("write", LFB, rng.randbytes(800 * 520 * 4))]),
                (f"800x600x{bpp}", _vbe(800, 600, bpp)
                 + [("write", LFB, rng.randbytes(800 * 600 * 4))])]
    _same_pictures(pictures)


def test_vbe_4bpp_is_planar():
    rng = random.Random(7)
    steps = _vbe(800, 600, 4) + [("write", LFB, rng.randbytes(400 * 600))]
    _same_pictures([("800x600x4", steps)])


def test_8_bit_dac_and_the_cga_160x100_rows_as_qemu_draws():
    """VBE's 8-bit DAC: the DAC's bytes are the colours as they are; a text
    mode whose vertical total (CRTC 6) is 100 has 100 rows whatever its
    height (QEMU's "ugly hack for CGA 160x100x16")."""
    rng = random.Random(9)
    dac = [("out", 0x3C8, 0)] + [("out", 0x3C9, rng.randrange(256)) for _ in range(768)]
    pictures = [("8-bit DAC", _vbe(320, 200, 8, enable=0x61) + dac
                 + [("write", LFB, rng.randbytes(320 * 200))]),
                ("160x100", [("out", 0x1CE, 4, 2), ("out", 0x1CF, 0, 2)] + _mode(0x03)
                 + _font(rng) + _text(rng, 8000)
                 + _regs(0x3D4, {0x11: 0x0E, 0x06: 100, 0x09: 0x01}))]
    shots = _same_pictures(pictures)
    assert shots[1][:2] == (720, 200)


def test_blank_paints_the_last_picture_black():
    """Attribute index bit 5 clear: the spec has no picture (size 0x0), QEMU
    paints its last one black."""
    rng = random.Random(8)
    shots = _same_pictures([("mode 3", _mode(0x03) + _text(rng)),
                            ("blank", [("in", 0x3DA), ("out", 0x3C0, 0x00)])])
    assert shots[1][:2] == (720, 400) and not any(shots[1][2])
    assert any(shots[0][2])


#: vgabios modes the random pictures start from
BASES = (0x03, 0x01, 0x07, 0x12, 0x0D, 0x04, 0x06, 0x13)


def _random_vbe(rng: random.Random) -> list[tuple]:
    """A random VBE mode (memory kept), virtual width and offsets."""
    xres, yres = 8 * rng.randrange(8, 129), rng.randrange(50, 601)
    steps = MAP_LFB + _vbe_mode(xres, yres, rng.choice((4, 8, 15, 16, 24, 32)), 0xC1)
    for index, value in ((6, xres + 8 * rng.randrange(20)), (8, rng.randrange(64)),
                         (9, rng.randrange(64))):
        steps += [("out", 0x1CE, index, 2), ("out", 0x1CF, value, 2)]
    return steps


def _random_registers(rng: random.Random, text: bool, port: int = 0x3D4) -> list[tuple]:
    """Random values for what the scanner reads: width, height, offset,
    start, line compare, scan lines, CRTC mode, cursor, clocking, fonts,
    line graphics, the attribute palette and plane enable."""
    height = rng.randrange(100, 600) - 1
    line_compare = rng.choice((1023, rng.randrange(height + 20)))
    crtc = {0x11: 0x0E, 0x01: rng.randrange(20, 100) - 1, 0x12: height & 0xFF,
            0x07: (height >> 7 & 0x02) | (height >> 3 & 0x40) | (line_compare >> 4 & 0x10),
            0x13: rng.randrange(10, 100), 0x0C: rng.randrange(0x40), 0x0D: rng.randrange(256),
            0x18: line_compare & 0xFF,
            0x09: (rng.randrange(32) if text else rng.choice((0, 0, 1, 3)))
            | (line_compare >> 3 & 0x40) | rng.choice((0, 0x80)),
            0x17: 0xA3 & ~rng.choice((0, 0, 1, 2, 3)) | rng.choice((0, 0x40)),
            0x0A: rng.randrange(64), 0x0B: rng.randrange(32), 0x0E: rng.randrange(8),
            0x0F: rng.randrange(256)}
    if text:
        crtc[0x01] = rng.randrange(20, 90) - 1
    steps = _regs(port, crtc)
    steps += _regs(0x3C4, {1: rng.choice((0, 1, 8, 9)), 3: rng.randrange(64)})
    steps.append(("in", 0x3DA))
    attributes = {i: rng.randrange(64) for i in range(16)}
    attributes.update({0x10: rng.choice((0x00, 0x04, 0x08, 0x80, 0x84)) | (0 if text else 1),
                       0x12: rng.randrange(16), 0x14: rng.randrange(16)})
    for index, value in attributes.items():
        steps += [("out", 0x3C0, index), ("out", 0x3C0, value)]
    return steps


def _memory(rng: random.Random) -> list[tuple]:
    """Random bytes in the first 128K words of each plane (the first 512
    KiB), and 2 MiB more through the LFB."""
    layout = _regs(0x3C4, {4: 0x06}) + _regs(0x3CE, {5: 0x00, 6: 0x01, 8: 0xFF, 1: 0, 3: 0})
    return layout + [("planes", [rng.randbytes(0x20000) for _ in range(4)])] + MAP_LFB + [
        ("write", LFB + 0x80000, rng.randbytes(0x200000))]


@pytest.mark.parametrize("seed", range(5))
def test_random_registers_draw_as_qemu_draws(seed):
    """Random video memory, then pictures of random register values on the
    modes the VGA BIOS sets, and random VBE modes. Each picture is taken
    after a blank one, which makes QEMU redraw everything (and turn its
    cursor's phase over on entering a text mode: the phases alternate,
    first on)."""
    rng = random.Random(seed)
    blank = [("in", 0x3DA), ("out", 0x3C0, 0)]
    vbe_off = [("out", 0x1CE, 4, 2), ("out", 0x1CF, 0, 2)]
    pictures: list[tuple] = [("memory", blank + _memory(rng))]
    phase = False
    for n in range(12):
        base = rng.choice(BASES + ("vbe",))
        text = base in (0x03, 0x01, 0x07)
        if base == "vbe":
            steps = blank + _set_mode(0x13) + blank + _random_vbe(rng)
        else:
            port = 0x3B4 if base == 0x07 else 0x3D4
            steps = blank + vbe_off + _set_mode(base)
            steps += blank + _random_registers(rng, text, port)
        pictures.append((f"{n} blank", steps))
        phase ^= text
        pictures.append((f"{n}: mode {base}", [("out", 0x3C0, 0x20)], phase))
    _same_pictures(pictures)


# --- by hand -------------------------------------------------------------------------------


class RecordingVram(bytearray):
    """Video memory that notes every byte index read through it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.seen: set[int] = set()

    def __getitem__(self, key):
        if isinstance(key, slice):
            self.seen.update(range(*key.indices(len(self))))
        else:
            self.seen.add(key % len(self))
        return super().__getitem__(key)


def _inside(spans, index: int) -> bool:
    return any(start <= index < start + length for start, length in spans)


def _glyph_byte(display: vr.Display, index: int) -> bool:
    return index % 4 == 2 and _inside(sc.glyph_spans(display), index)


#: register settings to scan: name -> steps (on the spec only)
LAYOUTS = {
    "mode 3": _mode(0x03) + _cursor(100, 0, 15),
    "mode 3 split, two fonts": _mode(0x03) + _regs(0x3D4, {0x0C: 0x01, 0x0D: 0x00, 0x18: 200,
                                                            0x07: 0x0F, 0x09: 0x0F})
    + _regs(0x3C4, {3: 0x2D}),
    "mode 1": _mode(0x01),
    "mode 12h split": _mode(0x12) + _regs(0x3D4, {0x0C: 0xFF, 0x0D: 0xF0, 0x18: 300 - 256,
                                                  0x07: 0x3E, 0x09: 0x00}),
    "mode 0Dh": _mode(0x0D),
    "mode 04h": _mode(0x04),
    "mode 06h": _mode(0x06),
    "mode 13h": _mode(0x13) + _regs(0x3D4, {0x0C: 0x40, 0x0D: 0x01}),
    "vbe 640x480x8": _vbe(640, 480, 8, virtual=1024, x=8, y=3),
    "vbe 320x200x15": _vbe(320, 200, 15, x=3, y=1),
    "vbe 320x200x24": _vbe(320, 200, 24, virtual=400, x=5, y=2),
    "vbe 320x240x32": _vbe(320, 240, 32, virtual=328, x=1, y=9),
    "vbe 320x200x4": _vbe(320, 200, 4),
}


def _layout(name: str, vram_size: int = VRAM) -> tuple[vr.Display, list, bytearray]:
    model = Model()
    model.regs = vr.VgaRegisters(vram_size)
    model.vram = bytearray(vram_size)
    model.run(LAYOUTS[name])
    rng = random.Random(name)
    return model.regs.display(), model.regs.palette_rgb(), bytearray(rng.randbytes(vram_size))


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_a_band_reads_only_bytes_its_spans_or_the_glyphs_hold(name):
    display, palette, vram = _layout(name)
    band_list = sc.bands(display, len(vram))
    assert band_list and sum(band.lines for band in band_list) == display.height
    assert [band.first for band in band_list] == sorted({band.first for band in band_list})
    for band in band_list:
        recording = RecordingVram(vram)
        pixels = sc.draw_band(display, palette, recording, band, True)
        assert len(pixels) == 3 * display.width * band.lines
        stray = [i for i in recording.seen
                 if not _inside(band.spans, i) and not _glyph_byte(display, i)]
        assert not stray, f"band at line {band.first} read {stray[:5]} outside its spans"


@pytest.mark.parametrize("name", ["mode 3 split, two fonts", "mode 12h split", "mode 04h",
                                  "vbe 320x200x15"])
def test_a_changed_byte_changes_only_the_bands_whose_spans_hold_it(name):
    """Random bytes of video memory changed one at a time, inside some band's
    spans or outside all: only the pixels of bands whose spans hold the
    byte change (any band for a glyph byte)."""
    display, palette, vram = _layout(name)
    band_list = sc.bands(display, len(vram))
    spans = [span for band in band_list for span in band.spans]
    rng = random.Random(1)
    before = sc.draw(display, palette, vram, True)
    row = 3 * display.width
    changed_some = 0
    for trial in range(12):
        if trial % 2:
            start, length = rng.choice(spans)
            index = start + rng.randrange(length)
        else:
            index = rng.randrange(len(vram))
        old = vram[index]
        vram[index] = old ^ 0xFF
        after = sc.draw(display, palette, vram, True)
        vram[index] = old
        for band in band_list:
            lines = slice(band.first * row, (band.first + band.lines) * row)
            if before[lines] != after[lines]:
                changed_some += 1
                assert _inside(band.spans, index) or _glyph_byte(display, index), (
                    f"byte {index:#x} changed band at line {band.first}")
    assert changed_some


def test_spans_wrap_at_the_end_of_video_memory():
    """Mode 12h from word 0xFFF0 of 256 KiB: lines run past the end of video
    memory and go on at byte 0, in their spans as in their pixels."""
    display, palette, vram = _layout("mode 12h split", 256 << 10)
    band_list = sc.bands(display, len(vram))
    assert band_list[0].spans == ((0x3FFC0, 0x40), (0, 0x100))
    recording = RecordingVram(vram)
    sc.draw_band(display, palette, recording, band_list[0], True)
    assert recording.seen == set(range(0x3FFC0, 0x40000)) | set(range(0x100))
    # after line 300 lines restart at byte 0
    assert band_list[301].address == 0 and band_list[302].address == 320


def test_text_bands_are_character_rows_and_restart_after_line_compare():
    display, _, _ = _layout("mode 3 split, two fonts")
    band_list = sc.bands(display, VRAM)
    assert len(band_list) == 25 and {band.lines for band in band_list} == {16}
    # line compare 200 falls in row 12 (lines 192-207): row 13 reads from byte 0
    assert [band.address for band in band_list[11:15]] == [
        0x400 + 11 * 320, 0x400 + 12 * 320, 0, 320]
    assert band_list[0].spans == ((0x400, 318),)
    # SR3 0x2D: map B = 2 (bit 4 the low bit, bits 1:0 above it), map A = 7 (bits 5, 3:2)
    assert display.fonts == (2 * 0x8000 + 2, 7 * 0x8000 + 2)
    assert sc.glyph_spans(display) == [(2 * 0x8000 + 2, 128 * 255 + 61),
                                       (7 * 0x8000 + 2, 128 * 255 + 61)]


def test_double_scan_makes_one_band_of_two_lines():
    display, _, _ = _layout("mode 13h")
    band_list = sc.bands(display, VRAM)
    assert len(band_list) == 200 and {band.lines for band in band_list} == {2}
    assert band_list[1].address - band_list[0].address == 320
    assert band_list[0].spans == ((0x4001 * 4, 320),)


def test_cga_banks_interleave_lines():
    """Mode 4: even lines from the first 8 KiB bank, odd from the second
    (CRTC 0x17 bit 0 clear: line bit 0 into address bit 14; the CPU's
    0xBA000 is word 0x1000), each line shown twice (double scan), and the
    address moves on after odd lines only (CRTC 0x17 bit 1 set): 80 bytes
    of the CPU's, 40 words, 160 bytes of video memory."""
    display, _, _ = _layout("mode 04h")
    band_list = sc.bands(display, VRAM)
    assert [band.address for band in band_list[:4]] == [0, 0x4000, 160, 0x4000 + 160]
    assert {band.lines for band in band_list} == {2}


def test_degenerate_text_and_blank_have_no_bands():
    display, palette, vram = _layout("mode 3")
    assert sc.bands(display._replace(columns=1, rows=1), VRAM) == []
    assert sc.bands(display._replace(columns=161, rows=100), VRAM) == []
    blank = vr.Display(vr.BLANK, 0, 0)
    assert sc.bands(blank, VRAM) == [] and sc.draw(blank, palette, vram, True) == b""


def test_cursor_blink_phase_is_a_function_of_virtual_time():
    half = 266_000_000
    assert [sc.cursor_visible(t) for t in (0, half - 1, half, 2 * half - 1, 2 * half)] == [
        True, True, False, False, True]
    display, palette, vram = _layout("mode 3")
    band = sc.bands(display, VRAM)[1]                    # the cursor's word 100: row 1
    on = sc.draw_band(display, palette, vram, band, sc.cursor_visible(0))
    off = sc.draw_band(display, palette, vram, band, sc.cursor_visible(half))
    row = 3 * 720
    differ = {i // row for i in range(len(on)) if on[i] != off[i]}
    assert differ and differ <= set(range(16))
    columns = {i % row // 3 // 9 for i in range(len(on)) if on[i] != off[i]}
    assert columns == {20}
    assert sc.next_blink_turn(0) == half and sc.next_blink_turn(half) == 2 * half
    assert sc.cursor_bands(display, sc.bands(display, VRAM)) == [band]


def test_cursor_bands_are_every_band_showing_its_word():
    """After the line compare's restart the cursor's word shows twice: both
    bands change with its phase; a hidden cursor changes none."""
    display, palette, vram = _layout("mode 3 split, two fonts")
    # rows 0-12 from byte 0x400, rows 13-24 from 0: word 0x151 (byte 0x544) is
    # cell 1 of row 1 and cell 17 of row 17
    display = display._replace(cursor=(0x100 + 81, 0, 15))
    band_list = sc.bands(display, VRAM)
    shown = sc.cursor_bands(display, band_list)
    assert [band.first // 16 for band in shown] == [1, 17]
    display = display._replace(cursor=(81, 0, 15))
    shown = sc.cursor_bands(display, band_list)
    assert [band.first // 16 for band in shown] == [14]
    vram[4 * 81 + 1] = 0x1F                      # the cell's colours differ
    for band in band_list:
        on = sc.draw_band(display, palette, vram, band, True)
        off = sc.draw_band(display, palette, vram, band, False)
        assert (on != off) == (band in shown)
    assert sc.cursor_bands(display._replace(cursor=None), band_list) == []


def test_write_png_saves_the_scanners_picture(tmp_path):
    from PIL import Image

    from hvmspec.display import write_png
    display, palette, vram = _layout("mode 13h")
    pixels = sc.draw(display, palette, vram, True)
    write_png(tmp_path / "shot.png", display.width, display.height, pixels)
    with Image.open(tmp_path / "shot.png") as image:
        assert image.size == (640, 400) and image.mode == "RGB"
        assert image.tobytes() == pixels
    with pytest.raises(ValueError, match="no picture"):
        write_png(tmp_path / "blank.png", 0, 0, b"")
    with pytest.raises(ValueError, match="takes 768000 bytes of RGB, not 5"):
        write_png(tmp_path / "short.png", 640, 400, b"12345")
