"""Screens equal to QEMU's (issue 20, item 5): the graphics guest's screens
(guests/graphics.s: text mode 3 with its own font, mode 12h, mode 13h, VBE
linear modes at 32, 16, 8 and 24 bits a pixel) and the VGA BIOSes'
banners, pictured on QEMU 7.2's std VGA (``-device
VGA,romfile=,vgamem_mb=8,mmio=off``) through ``screendump`` on its human
monitor (:mod:`hvmspec.qemu_peer`), and on hvmspec through ``hvmspec run
--screenshot``.

QEMU's side is checked on its own: each screen is the picture the guest
means (its size, colours the guest put at known places), the screens all
differ, and the text cursor is the only thing that moves. QEMU blinks it on
its virtual clock, which follows the host's, so the phase at a screendump
is chance: QEMU's pictures are taken four times a phase apart, and
hvmspec's must equal one of them, the cursor shown or hidden, in its place
and shape. (The checks of QEMU alone mask the cursor's cell: the one cell
where its pictures differ.)

The comparison with hvmspec needs an engine that makes pixels from video
memory (the VGA scanner): without it (:func:`_needs_scanner`:
``spec.devices.vga_scanner`` importable) those tests are skipped with that
reason. Beneath the pictures, the VGA's accesses are compared with QEMU's
trace events byte for byte, once hvmspec's 00:02.0 is the std VGA.

The firmware banners are taken where both BIOSes stop for want of a boot
disk: rombios with the LGPL vgabios at 0xC0000 (``FATAL: No bootable
device.``, then a halt), SeaBIOS with ``vgabios-stdvga.bin`` (``No bootable
device.  Retrying in 60 seconds.``). ``tests/data/screens/`` keeps QEMU's
pictures of them all, for people (docs/screens.rst says what each shows).
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

from hvmspec import qemu_peer
from hvmspec.qemu_peer import Picture
from spec import hvmloader, loader
from tests.conftest import cli, peer, peer_file

#: screen: (QEMU's size, what it is)
SCREENS = {1: ((720, 400), "text mode 3, its own font"),
           2: ((640, 480), "mode 12h, planar"),
           3: ((640, 400), "mode 13h, each pixel doubled both ways"),
           4: ((640, 480), "VBE 640x480x32, linear framebuffer"),
           7: ((800, 600), "VBE 800x600x16 (5:6:5)"),
           8: ((640, 480), "VBE 640x480x8, the DAC's palette"),
           9: ((640, 480), "VBE 640x480x24")}
#: pixels the guest sets, and their colour as QEMU's DAC widens 6 bits to 8
#: (vga.c's c6_to_8: v << 2, and bit 0 copied into bits 1 and 0: 0x2a -> 168,
#: 0x15 -> 87, 0x3f -> 255)
KNOWN_PIXELS = {
    1: [((715, 8), (0, 0, 168)),            # the title bar's blue, past its text
        ((400, 300), (0, 0, 0))],            # the black below the box
    2: [((580, 60), (0xFF, 0xFF, 87)),     # bar 14, yellow, in write mode 2
        ((20, 60), (0, 0, 0)),               # bar 0, black
        ((320, 20), (0, 0, 168)),           # the set/reset blue above the bars
        ((380, 130), (168, 87, 0)),          # bar 9 XORed with 15: 6, brown (DAC 0x14)
        ((161, 310), (0, 0, 168)), ((163, 310), (0xFF, 87, 87)),   # write mode 3
        ((100, 260), (0xFF, 0xFF, 87)), ((101, 260), (0, 0, 168))],  # the diagonal
    3: [((320, 200), (0xFF, 0, 0)),          # the red square (DAC 0x3f)
        ((40, 20), (0xFF, 0xFF, 0xFF)),      # the white frame (grey ramp's top)
        ((0, 0), (0, 0, 0))],                # band colour 0: red ramp's black
    4: [((320, 240), (0, 0xFF, 0)),          # the green square
        ((160, 240), (0xFF, 0, 0)), ((480, 240), (0, 0, 0xFF)),
        ((30, 21), (0xFF, 0xFF, 0xFF))],     # the white frame
    # QEMU 7.2 widens 5:6:5 by copying the top bits down (green 62: 251)
    7: [((400, 300), (255, 255, 255)), ((0, 0), (0, 0, 255)), ((799, 599), (255, 251, 0))],
    8: [((320, 240), (255, 0, 0)), ((0, 0), (0, 0, 0)), ((1, 0), (7, 0, 0))],
    9: [((0, 0), (0, 0, 255)), ((639, 479), (255, 254, 0)), ((320, 240), (128, 127, 127))],
}
#: screens whose colours Xen 3.0.4's qemu-dm widened otherwise than QEMU 7.2,
#: and the bits of each 8-bit component that both give alike: at 16 bits a
#: pixel qemu-dm shifted 5:6:5 up with zeros below (vga_template.h,
#: vga_draw_line16: white is 248, 252, 248), QEMU copies the top bits down
#: (255, 255, 255). hvmspec may follow either; the comparison keeps the 5:6:5.
PRECISION = {7: (0xF8, 0xFC, 0xF8)}
#: the text cursor's cell in screen 1: row 20, column 8 (9x16 cells)
TEXT_CURSOR = (8 * 9, 20 * 16, 9 * 9, 21 * 16)
#: firmware: (hvmspec's --firmware, its --vgabios, QEMU_ARGS key, the line
#: of the 0x402 log at which QEMU's picture is taken, hvmspec's --until: none
#: for rombios, which halts with interrupts off after its line (the run ends
#: hung); SeaBIOS waits 60 s and boots again, so its run stops at the line)
FIRMWARE = {
    "rombios-vgabios": ("rombios", None, "rombios-stdvga", "No bootable device", None),
    "seabios-stdvga": ("seabios", qemu_peer.SEABIOS_VGABIOS, "seabios-stdvga",
                       "No bootable device.  Retrying in 60 seconds.",
                       "Retrying in 60 seconds.\n"),
}
DATA = Path(__file__).resolve().parent / "data" / "screens"
#: when QEMU's later pictures are taken (seconds after the first): a blink
#: phase (about 267 ms) apart, so that both phases of the text cursor are
#: among the four
PHASES = (0.27, 0.54, 0.81)


def variant(screen: int, directory: Path) -> Path:
    """The graphics guest built for ``screen`` (a file ``hvmspec run`` takes)."""
    path = directory / f"graphics-{screen}.s"
    path.write_text(loader.variant_source("graphics", SCREEN=screen))
    return path


def qemu_guest_screen(screen: int, directory: Path, later=(0.3,)) -> qemu_peer.QemuScreen:
    image = loader.load(str(variant(screen, directory)))
    return qemu_peer.guest_screen(peer("qemu-system-i386"), image.image, directory,
                                  f"screen {screen} drawn", later=later)


@pytest.fixture(scope="module")
def qemu_shots(tmp_path_factory):
    """QEMU's pictures of each screen (a blink phase apart), taken once for
    the module: one QEMU run a screen."""
    shots: dict[int, qemu_peer.QemuScreen] = {}

    def shot(screen: int) -> qemu_peer.QemuScreen:
        if screen not in shots:
            shots[screen] = qemu_guest_screen(screen, tmp_path_factory.mktemp(f"qemu{screen}"),
                                              later=PHASES)
        return shots[screen]
    return shot


def qemu_firmware_screen(which: str, directory: Path, later=PHASES) -> qemu_peer.QemuScreen:
    _, _, args, line, _ = FIRMWARE[which]
    bios = peer_file(hvmloader.FIRMWARE[args.split("-")[0]][0], "firmware")
    peer_file(hvmloader.VGABIOS[0], "vgabios")
    peer_file(qemu_peer.SEABIOS_VGABIOS, "seabios")
    return qemu_peer.firmware_screen(peer("qemu-system-i386"), args, bios, directory, line,
                                     settle=0.2, later=later)


def blink_cell(shot: qemu_peer.QemuScreen, cell=(9, 16)) -> tuple[int, int, int, int] | None:
    """The text cell where QEMU's pictures differ (the cursor blinking), or
    None if they are equal; AssertionError if they differ in more than one
    cell."""
    cells = set()
    for picture in shot.later:
        cells |= {(x // cell[0], y // cell[1]) for x, y, _, _ in
                  shot.picture.differences(picture)}
    assert len(cells) <= 1, f"QEMU's picture changes in {len(cells)} cells: {sorted(cells)[:8]}"
    if not cells:
        return None
    (column, row), = cells
    return (column * cell[0], row * cell[1], (column + 1) * cell[0], (row + 1) * cell[1])


# --- QEMU's side ---------------------------------------------------------------------------


@pytest.mark.parametrize("screen", sorted(SCREENS))
def test_each_screen_on_qemu_is_the_picture_the_guest_draws(screen, qemu_shots):
    shot = qemu_shots(screen)
    picture = shot.picture
    assert shot.serial == f"graphics: screen {screen} drawn\n"
    assert (picture.width, picture.height) == SCREENS[screen][0]
    assert picture.colours() >= {1: 16, 2: 16, 3: 250, 4: 60000, 7: 1900, 8: 250,
                                 9: 65000}[screen]
    for (x, y), colour in KNOWN_PIXELS[screen]:
        assert picture.pixel(x, y) == colour, (x, y)
    # the guest halted: nothing moves but the text cursor
    box = blink_cell(shot)
    assert box in ((None, TEXT_CURSOR) if screen == 1 else (None,))


def test_the_screens_differ_on_qemu(qemu_shots):
    pictures = {screen: qemu_shots(screen).picture for screen in SCREENS}
    for a in SCREENS:
        for b in SCREENS:
            if a < b:
                assert pictures[a].differences(pictures[b]), (a, b)


def test_the_text_cursor_is_the_only_thing_that_blinks(qemu_shots):
    """Screen 1's cursor (scan lines 12-15 of row 20, column 8) appears in
    some of QEMU's pictures and not in others, taken a blink phase apart;
    everything else stays."""
    shot = qemu_shots(1)
    phases = [shot.picture, *shot.later]
    left, top, right, bottom = TEXT_CURSOR
    lit = [sum(p.pixel(x, y) != (0, 0, 0) for x in range(left, right - 1)
               for y in range(top + 12, bottom)) for p in phases]
    assert max(lit) == 8 * 4 and min(lit) == 0, lit
    assert {len(p.masked(TEXT_CURSOR).differences(phases[0].masked(TEXT_CURSOR)))
            for p in phases} == {0}


@pytest.mark.parametrize("which", sorted(FIRMWARE))
def test_the_vga_bios_banner_on_qemu(which, tmp_path):
    shot = qemu_firmware_screen(which, tmp_path)
    picture = shot.picture
    assert (picture.width, picture.height) == (720, 400)
    box = blink_cell(shot)
    # text on black: more than a few hundred lit pixels outside the cursor
    lit = sum(1 for i in range(0, len(picture.rgb), 3) if picture.rgb[i:i + 3] != b"\0\0\0")
    assert lit > 2000
    if which == "rombios-vgabios":
        assert "VBE Bios" in shot.logs[0x500]       # the VGA BIOS found Bochs VBE
    assert box is None or box[2] - box[0] == 9


def test_the_stored_pictures_are_what_qemu_shows(qemu_shots):
    """tests/data/screens holds QEMU's pictures as this QEMU draws them
    (the cursor cell masked), for people and for the docs."""
    for screen in SCREENS:
        stored = Picture.from_png(DATA / f"graphics-{screen}.png")
        theirs = qemu_shots(screen).picture
        mask = TEXT_CURSOR if screen == 1 else None
        assert theirs.masked(mask).differences(stored.masked(mask)) == [], screen


# --- hvmspec against QEMU ------------------------------------------------------------------


def _needs_scanner() -> None:
    """Skip until hvmspec's display makes pixels from video memory: the
    VGA scanner of the issue's item 3 (``spec.devices.vga_scanner``)."""
    if importlib.util.find_spec("spec.devices.vga_scanner") is None:
        pytest.skip("hvmspec has no VGA scanner yet (spec.devices.vga_scanner): "
                    "--screenshot draws only the text screen's characters")


def hvmspec_screenshot(args: list[str], path: Path, engine: str = "impl") -> Picture:
    """``hvmspec run ARGS --screenshot PATH``: the picture it wrote (the run
    stopped by --until, exit 0, or a BIOS halted for good: hung, exit 1)."""
    proc = cli("run", *args, "--engine", engine, "--display", "off", "--screenshot", str(path))
    said = proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.returncode == 0 or (proc.returncode == 1 and " hung" in said), said
    return Picture.from_png(path)


def reduced(picture: Picture, masks: tuple[int, int, int] | None) -> Picture:
    """The picture with each component ANDed with its mask (:data:`PRECISION`)."""
    if masks is None:
        return picture
    table = bytes(masks * 256)
    rgb = bytes(c & table[i % 3] for i, c in enumerate(picture.rgb))
    return Picture(picture.width, picture.height, rgb)


def assert_same_picture(ours: Picture, shot: qemu_peer.QemuScreen, masks=None) -> None:
    """Pixel for pixel equal to one of QEMU's pictures: the text cursor, if
    any, shown or hidden as in one of QEMU's blink phases, in QEMU's place
    and shape (colours to the bits ``masks`` keeps). Otherwise the message
    says how many pixels differ, and how many outside the cursor's cell."""
    ours = reduced(ours, masks)
    shot = qemu_peer.QemuScreen(reduced(shot.picture, masks),
                                [reduced(p, masks) for p in shot.later])
    phases = [shot.picture, *shot.later]
    if any(not ours.differences(theirs) for theirs in phases):
        return
    differ = ours.differences(shot.picture)
    cell = blink_cell(shot)
    outside = ours.masked(cell).differences(shot.picture.masked(cell))
    assert False, (f"{len(differ)} pixels differ from QEMU's picture, {len(outside)} outside "
                   f"its cursor's cell {cell}; first (x, y, ours, QEMU's): "
                   f"{(outside or differ)[:5]}")


#: each screen on impl, the text screen on the reference too: that the
#: engines draw the same pixels for every screen is ``hvmspec conform
#: graphics`` (tests/test_cli.py), whose display events carry a hash of each
#: picture's pixels
ENGINE_SCREENS = [(screen, "impl") for screen in sorted(SCREENS)] + [(1, "reference")]


@pytest.mark.parametrize("screen, engine", ENGINE_SCREENS)
def test_each_screen_equals_qemus(screen, engine, tmp_path, qemu_shots):
    _needs_scanner()
    shot = qemu_shots(screen)
    ours = hvmspec_screenshot([str(variant(screen, tmp_path)), "--until",
                               f"screen {screen} drawn"], tmp_path / "ours.png", engine)
    assert_same_picture(ours, shot, PRECISION.get(screen))


@pytest.mark.parametrize("which", sorted(FIRMWARE))
def test_the_vga_bios_banner_equals_qemus(which, tmp_path):
    _needs_scanner()
    firmware, vgabios, _, _, until = FIRMWARE[which]
    shot = qemu_firmware_screen(which, tmp_path)
    args = ["--firmware", firmware, *(["--until", until] if until else [])]
    if vgabios is not None:
        args += ["--vgabios", vgabios]
    ours = hvmspec_screenshot(args, tmp_path / "ours.png")
    assert_same_picture(ours, shot)


@pytest.mark.parametrize("screen, line", [(5, "bench mode 13h"), (6, "bench vbe 640x480x32")])
def test_the_benchmarks_run_on_qemu(screen, line, tmp_path):
    """The benchmark variants print a line before their first frame and one
    after their last (frames per second on QEMU, :func:`qemu_peer.guest_line_times`)."""
    image = loader.load(str(_bench(screen, 20, tmp_path)))
    first, last = qemu_peer.guest_line_times(peer("qemu-system-i386"), image.image, tmp_path,
                                             (f"graphics: {line}", "graphics: 20 frames drawn"))
    assert 0 < first <= last


def _bench(screen: int, frames: int, directory: Path) -> Path:
    path = directory / f"graphics-{screen}-{frames}.s"
    path.write_text(loader.variant_source("graphics", SCREEN=screen, FRAMES=frames))
    return path


# --- the VGA's accesses, as QEMU's trace events list them ----------------------------------

#: the VGA's ports (both CRTC address sets, the attribute controller to input
#: status 1, the Bochs DISPI pair) and its legacy window
VGA_PORTS = (range(0x3B0, 0x3E0), range(0x1CE, 0x1D1))
VGA_WINDOW = range(0xA0000, 0xC0000)
#: input status 1 (0x3BA, 0x3DA): its retrace and display-enable bits follow
#: time, the host's on QEMU (docs/display.rst), so they are not compared
STATUS_PORTS, RETRACE_BITS = (0x3BA, 0x3DA), 0x09
QEMU_VGA_REGIONS = {"vga", "vbe", "vga-lowmem"}
#: the text window: Xen's qemu-dm shares it with the guest (stores reach
#: video memory without an exit, and no device sees them); QEMU 7.2 takes
#: stores there through the VGA's MMIO region in odd/even modes. Stores to
#: it are left out on both sides. (The chain-4 window of mode 13h and the
#: linear framebuffer are memory on QEMU as well: neither side lists them.)
SHARED_TEXT = range(0xB8000, 0xC0000)


def _bytes(direction: str, space: str, addr: int, size: int, value: int) -> list[tuple]:
    """An access as the byte accesses it amounts to: (direction, space,
    address, byte), retrace bits of input status reads masked."""
    out = []
    for i in range(size):
        byte = value >> 8 * i & 0xFF
        if direction == "read" and space == "pio" and addr + i in STATUS_PORTS:
            byte &= ~RETRACE_BITS & 0xFF
        out.append((direction, space, addr + i, byte))
    return out


def _is_vga(space: str, addr: int) -> bool:
    if space == "pio":
        return any(addr in ports for ports in VGA_PORTS)
    return addr in VGA_WINDOW


def _compared(accesses: list[tuple]) -> list[tuple]:
    """All but the stores to the text window (:data:`SHARED_TEXT`)."""
    return [a for a in accesses if not (a[0] == "write" and a[1] == "mmio"
                                        and a[2] in SHARED_TEXT)]


def qemu_vga_accesses(image, directory: Path) -> list[tuple]:
    """The VGA's accesses while ``image`` runs on QEMU to its power-off,
    from the ``memory_region_ops_*`` trace events (as tests/test_peer_qemu.py
    reads COM1's)."""
    from tests.test_peer_qemu import TRACE_LINE
    rom, log = directory / "guest.rom", directory / "trace.log"
    rom.write_bytes(image.image)
    subprocess.run([peer("qemu-system-i386"), *qemu_peer.GUEST_MACHINE, "-bios", str(rom),
                    "-serial", "null", "-trace", f"enable=memory_region_ops_*,file={log}"],
                   capture_output=True, timeout=120)
    out = []
    for line in log.read_text().splitlines():
        m = TRACE_LINE.search(line)
        if m and m[5] in QEMU_VGA_REGIONS:
            space = "mmio" if m[5] == "vga-lowmem" else "pio"
            out += _bytes(m[1], space, int(m[2], 16), int(m[4]), int(m[3], 16))
    return out


def hvmspec_vga_accesses(image, engine: str = "impl") -> list[tuple]:
    """The VGA's accesses as qemu-dm's devices received them on hvmspec
    (every ``device_io`` in the VGA's ports or window, whichever device, or
    none, claimed it)."""
    from spec import trace
    from tests.conftest import run
    out = []
    for e in run(engine, image).trace:
        if isinstance(e, trace.DeviceIo) and _is_vga(e.space, e.addr):
            out += _bytes(e.dir, e.space, e.addr, e.size, e.data)
    return out


def first_difference(ours: list[tuple], theirs: list[tuple]) -> str | None:
    """Where two access lists part, with a few accesses of context."""
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a != b:
            return (f"access {i} of {len(ours)} (QEMU: {len(theirs)}): ours {a}, QEMU's {b}; "
                    f"before: {ours[max(0, i - 3):i]}")
    if len(ours) != len(theirs):
        return f"ours has {len(ours)} accesses, QEMU's {len(theirs)}; the rest: " \
               f"{(ours or theirs)[min(len(ours), len(theirs)):][:3]}"
    return None


def test_the_vga_sees_the_same_accesses_on_qemu(tmp_path):
    """The bundled graphics guest (all four screens, then power off): every
    byte the VGA's ports and window take and give is QEMU's, in order (the
    text window's stores aside: :data:`SHARED_TEXT`); a read of video
    memory gives what the latches and planes hold there."""
    from spec import platform
    if platform.PCI_ID_VGA != (0x1234, 0x1111):
        pytest.skip(f"hvmspec's VGA at 00:02.0 is {platform.PCI_ID_VGA[0]:04x}:"
                    f"{platform.PCI_ID_VGA[1]:04x}, not the std VGA (1234:1111) whose "
                    "planes, DISPI registers and framebuffer the guest uses")
    image = loader.load("graphics")
    theirs = qemu_vga_accesses(image, tmp_path)
    assert len(theirs) > 50_000
    assert first_difference(_compared(hvmspec_vga_accesses(image)), _compared(theirs)) is None
