"""qemu-dm's VGA: shared video memory, Xen's dirty tracking, the display
scanner, the text picture, and the CLI's screen and screenshot."""

from __future__ import annotations

import ctypes
import json

import pytest
from hypothesis import given, settings, strategies as st

from hvmspec.display import FrameMismatch, Screen
from impl.vga import Vga as ImplVga
from spec import platform, trace
from spec.devices.vga import REFRESH_NS, Vga, frame_hash
from spec.devices.vga_scanner import cursor_visible
from spec.dirty_vram import DirtyVram
from spec.loader import load
from tests.conftest import both, cli, guest, io_clock

TEXT = platform.VGA_TEXT_BASE
PFN = TEXT >> 12


@pytest.fixture(scope="module")
def vga():
    return both(load("vga"))


def _updates(result) -> list[trace.DisplayUpdate]:
    return [e for e in result.trace if isinstance(e, trace.DisplayUpdate)]


def test_vga_guest_output_and_final_screen(vga):
    assert vga.serial == "vga: start address 0280, cursor 0668, input status 0000\n"
    assert vga.exit["reason"] == "poweroff"
    screen = Screen.from_trace(vga.trace)
    lines = screen.text().splitlines()
    # 30 lines from row 3 of video memory, scrolled by 8 rows (start 0x280 = 640 cells)
    assert lines[0].startswith("line 06: written to video memory")
    assert lines[24].startswith("line 30: ")
    # the cursor parked at row 12, column 40, an underline from scan line 14
    # to 15 (CRTC 0x0B as Xen 3.0.4's qemu-dm powers on: the guest sets 0x0A)
    assert screen.cursor == [12, 40, 14, 15]
    assert 0x668 - 0x280 == 12 * 80 + 40


def test_first_update_is_the_whole_screen_at_the_first_refresh(vga):
    first = _updates(vga)[0]
    assert first.icount == REFRESH_NS and first.rows == list(range(25))
    title = bytes.fromhex(first.cells[0])
    assert title[0::2].decode().strip().startswith("hvmspec: qemu-dm's VGA")
    length = len(" hvmspec: qemu-dm's VGA, text mode 80x25, shared video memory ")
    assert set(title[1:2 * length:2]) == {0x1F} and set(title[2 * length + 1::2]) == {0x17}
    bar = bytes.fromhex(first.cells[2])
    assert list(bar[1:32:2]) == list(range(16)) and set(bar[0:32:2]) == {0xDB}


def test_updates_come_on_refresh_boundaries_and_name_only_changed_rows(vga):
    updates = _updates(vga)
    final = updates[-1]
    screen = Screen()
    for update in updates[:-1]:
        assert update.icount % REFRESH_NS == 0, update.icount
    for update in updates:
        before, cursor_rows = list(screen.rows), {*screen.cursor[:1], *update.cursor[:1]}
        screen.apply(update)
        # a row is named when its cells or the cursor on it changed its pixels
        assert all(before[r] != screen.rows[r] or r in cursor_rows for r in update.rows)
    # the last update's frame is the hash of the picture the run ends with
    assert final.frame == frame_hash(*vga.picture)
    # scrolling: every start-address move re-reads all rows, and rows shift up
    assert sum(1 for u in updates if len(u.rows) == 25) >= 2


def test_guest_writes_to_video_memory_exit_only_once_per_page_and_refresh(vga):
    faults = [(e.icount, e.info["gpa"]) for e in vga.trace
              if isinstance(e, trace.VmExit) and e.info.get("p2m") == "logdirty"]
    assert faults, "no log-dirty faults"
    assert all(TEXT <= gpa < TEXT + platform.VGA_TEXT_SIZE for _, gpa in faults)
    period = lambda icount: icount // REFRESH_NS            # noqa: E731
    pages = [(period(i), gpa >> 12) for i, gpa in faults]
    assert len(pages) == len(set(pages))
    # thousands of stores, a few dozen exits
    io = sum(1 for e in vga.trace if isinstance(e, trace.VmExit))
    assert len(faults) < io / 5


def test_crtc_cursor_and_start_address_are_read_back_by_the_guest(vga):
    reads = [(e.addr, e.data) for e in vga.trace if isinstance(e, trace.DeviceIo)
             and e.device == "vga" and e.dir == "read"]
    assert (0x3D5, 0x06) in reads and (0x3D5, 0x68) in reads
    assert reads[-1][0] == 0x3DA


def test_rep_ins_into_video_memory_marks_the_page_dirty():
    # the data of a rep insb is written by Xen (hvm_copy), not by a guest
    # store: no fault, but the page is dirty and the scanner sees it (at the
    # refresh qemu-dm makes when the domain ends, before the first period)
    body = """
    mov ax, 0xb800
    mov es, ax
    mov di, 160 * 5
    mov dx, 0x3fd           ; COM1 LSR: 0x60, twice
    mov cx, 2
    rep insb
"""
    result = both(guest("vga_ins", body))
    (update,) = _updates(result)
    assert update.rows == [5] and bytes.fromhex(update.cells[0])[:2] == b"\x60\x60"
    # its time is the clock: the instructions, plus the bus time of the two
    # port accesses of the rep insb (spec/clock.py)
    at = result.trace.index(update)
    assert update.icount == result.instructions + io_clock(result.trace)[at] < REFRESH_NS
    assert io_clock(result.trace)[at] == 2 * platform.PORT_ACCESS_NS
    assert not [e for e in result.trace if isinstance(e, trace.VmExit)
                and e.info.get("p2m") == "logdirty"]


def test_the_rest_of_the_vga_window_is_not_decoded_in_text_mode():
    body = """
    mov ax, 0xa000
    mov es, ax
    mov byte ptr es:[0x10], 0x41     ; graphics window: trapped, not decoded in map 3
    mov ax, 0xb000
    mov es, ax
    mov al, es:[0x8000 + 2]          ; the text window: video memory, blank is 0x20
    mov dx, 0x3f8
    out dx, al
"""
    result = both(guest("vga_window", body))
    assert result.serial == " "
    ept = [e for e in result.trace if isinstance(e, trace.VmExit) and e.reason == "ept_violation"]
    assert [e.info["gpa"] for e in ept] == [0xA0010]


# --- the pieces, directly -------------------------------------------------------------------

def test_dirty_vram_reports_all_then_what_was_written():
    calls = []
    log = DirtyVram(lambda pfn, writable: calls.append((pfn, writable)))
    assert log.track(PFN, 8) == 0xFF
    assert calls == [(PFN + i, False) for i in range(8)]
    calls.clear()
    assert log.write_fault(TEXT + 0x1234) and calls == [(PFN + 1, True)]
    assert not log.write_fault(TEXT - 1)                   # not tracked
    log.copied(TEXT + 0x2FFF, 2)                           # pages 2 and 3
    assert log.pending()
    calls.clear()
    assert log.track(PFN, 8) == 0b1110
    assert calls == [(PFN + 1, False), (PFN + 2, False), (PFN + 3, False)]
    assert log.track(PFN, 8) == 0 and not log.pending()
    calls.clear()
    assert log.track(PFN + 8, 1) == 1                      # a new range: old pages writable
    assert calls[:8] == [(PFN + i, True) for i in range(8)] and calls[8:] == [(PFN + 8, False)]


class _Host:
    """What the VGA reaches of Xen, for driving it directly: the views it
    maps (gpa -> buffer) and a dirty log kept by :class:`DirtyVram` (pages
    are never really protected here, so :meth:`store` marks its writes)."""

    def __init__(self) -> None:
        self.mapped: dict[int, object] = {}
        self.log = DirtyVram(lambda pfn, writable: None)
        self.now = 0

    def map_vram(self, gpa, buffer):
        self.mapped[gpa] = buffer

    def unmap_vram(self, gpa, length):
        assert ctypes.sizeof(self.mapped.pop(gpa)) == length

    def track_dirty_vram(self, first, nr):
        return self.log.track(first, nr)

    def dirty_vram_pending(self):
        return self.log.pending()

    def clock_ns(self):
        return self.now

    def store(self, offset: int, data: bytes) -> bool:
        """A guest store at ``offset`` into whatever view is mapped; False if none."""
        if not self.mapped:
            return False
        (gpa, buffer), = self.mapped.items()
        offset %= ctypes.sizeof(buffer) - len(data)
        ctypes.memmove(ctypes.addressof(buffer) + offset, data, len(data))
        self.log.copied(gpa + offset, len(data))
        return True


def test_input_status_follows_the_mode3_timing():
    host = _Host()
    dev = Vga(host)
    samples = {}
    for ns in (0, 25_000, 30_000, 412 * 31_778 + 10, 414 * 31_778 + 10, 401 * 31_778):
        host.now = ns
        samples[ns] = dev.port_read(0x3DA, 1)
    # shown dots of line 0; the horizontal blank of line 0; retrace; after it; vertical blank
    assert list(samples.values()) == [0, 0, 1, 9, 1, 1]


def _crtc(dev, index: int, value: int) -> None:
    dev.port_write(0x3D4, 1, index)
    dev.port_write(0x3D5, 1, value)


def test_cursor_off_and_outside_the_screen():
    host = _Host()
    dev = Vga(host)
    assert dev.cursor == [18, 0, 0x0E, 0x0F]                  # Xen 3.0.4's power-on cursor
    _crtc(dev, 0x0E, 0x07)
    _crtc(dev, 0x0F, 0xD0)                  # 2000: one past the last cell
    assert dev.refresh().cursor == []
    _crtc(dev, 0x0A, 0x2D)                  # cursor off
    _crtc(dev, 0x0E, 0x00)                  # back on the screen, at cell 0xD0 ...
    assert dev.refresh() is None and dev.cursor == []       # ... but switched off


def test_the_shared_view_follows_the_registers():
    """Text page at 0xB8000 at power-on; chain 4 at 0xA0000 for mode 13h;
    none while planar; the LFB at BAR 0 while VBE's LFB is on."""
    host = _Host()
    dev = Vga(host)
    assert list(host.mapped) == [0xB8000] and dev.view.kind == "text"
    host.store(0, b"A\x1e")                 # the guest writes cell 0 through the text page
    dev.port_write(0x3CE, 2, 0x0005)        # GR5 = 0: odd/even addressing off (planar)
    assert host.mapped == {} and dev.view is None
    assert bytes(dev.vram[0:2]) == b"A\x1e"  # folded into planes 0 and 1 when released
    dev.port_write(0x3C4, 2, 0x0E04)        # SR4 = 0x0E: chain 4
    dev.port_write(0x3CE, 2, 0x0506)        # GR6 = 5: graphics, memory map 1 (A0000 64 KiB)
    dev.port_write(0x3C4, 2, 0x0F02)        # all planes written
    assert list(host.mapped) == [0xA0000] and dev.view.kind == "chain4"
    host.store(0x1234, b"\x77")
    dev.sync()
    assert dev.vram[0x1234] == 0x77
    dev.set_linear_base(0xE0000000)
    for index, value in ((1, 640), (2, 480), (3, 32), (4, 0x41)):   # VBE on, LFB on
        dev.port_write(0x1CE, 2, index)
        dev.port_write(0x1CF, 2, value)
    assert list(host.mapped) == [0xE0000000] and dev.view.kind == "lfb"
    assert not any(dev.vram[:640 * 480 * 4])               # the mode set cleared it
    assert dev.refresh().mode == "linear"


def test_a_trapped_write_reaches_the_shared_text_page():
    host = _Host()
    dev = Vga(host)
    dev.set_linear_base(0xE0000000)
    dev.linear_write(4 * 80, 4, 0x07_00_1F_42)              # cell 80 via the trapped LFB
    text = host.mapped[0xB8000]
    assert text.raw[160:162] == b"B\x1f"
    update = dev.refresh()
    assert 1 in update.rows and bytes.fromhex(update.cells[update.rows.index(1)])[:2] == b"B\x1f"


OPS = st.lists(st.one_of(
    st.tuples(st.just("store"), st.integers(0, 0x7FFF), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("port"), st.sampled_from(
        [(0x3C4, 2, v) for v in (0x0E04, 0x0604, 0x0204, 0x0F02, 0x0302, 0x0102)]
        + [(0x3CE, 2, v) for v in (0x0506, 0x0E06, 0x0A06, 0x1005, 0x4005, 0x0005, 0x0204,
                                    0xFF08, 0x0F01, 0x0300)]
        + [(0x3D4, 2, v) for v in (0x0A0C, 0x500D, 0x0A0E, 0x200A, 0x2813, 0x1013)]
        + [(0x3C0, 1, v) for v in (0x10, 0x01, 0x20, 0x00)] + [(0x3DA, 1, None)]
        + [(0x1CE, 2, 4), (0x1CF, 2, 0x41), (0x1CF, 2, 0), (0x1CE, 2, 1), (0x1CF, 2, 320),
           (0x1CE, 2, 3), (0x1CF, 2, 8), (0x1CE, 2, 5), (0x1CF, 2, 1)]), st.just(0)),
    st.tuples(st.just("window"), st.integers(0, 0x1FFFF), st.integers(0, 255)),
    st.tuples(st.just("linear"), st.integers(0, 0x2FFFF), st.integers(0, 0xFFFF)),
    st.tuples(st.just("read"), st.integers(0, 0x1FFFF), st.just(0)),
    st.tuples(st.just("tick"), st.integers(1, 3 * REFRESH_NS), st.just(0)),
), max_size=40)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(OPS)
def test_impl_vga_matches_the_spec(ops):
    """Register writes that move the shared view, guest stores into it,
    trapped window and LFB accesses, refreshes: the same reads and the same
    display updates from both engines' VGAs."""
    hosts = (_Host(), _Host())
    spec_dev, impl_dev = Vga(hosts[0]), ImplVga(hosts[1])
    spec_dev.set_linear_base(0xE0000000)
    impl_dev.moved(0xE0000000)
    spec_events: list = []
    impl_events: list = []
    for op, a, b in ops:
        if op == "store":
            assert hosts[0].store(a, b) == hosts[1].store(a, b)
        elif op == "port":
            port, size, value = a
            if value is None:
                assert spec_dev.port_read(port, size) == impl_dev.port_read(port, size)
            else:
                spec_dev.port_write(port, size, value)
                impl_dev.port_write(port, size, value)
        elif op == "window":
            spec_dev.window_write(a, 1, b)
            impl_dev.window_write(a, 1, b)
        elif op == "linear":
            spec_dev.linear_write(a, 2, b)
            impl_dev.linear_write(a, 2, b)
        elif op == "read":
            assert spec_dev.window_read(a, 2) == impl_dev.window_read(a, 2), hex(a)
        else:
            for host in hosts:
                host.now += a
            assert (spec_dev.next_refresh(0) is None) == (not impl_dev.wants_refresh())
            update = spec_dev.refresh()
            if update is not None:
                spec_events.append(update)
            impl_dev.refresh(impl_events.append)
    assert spec_events == impl_events
    assert sorted(hosts[0].mapped) == sorted(hosts[1].mapped)


def test_a_trace_whose_updates_do_not_add_up_is_reported():
    screen = Screen()
    bogus = trace.DisplayUpdate(icount=5, mode="text", width=720, height=400, rects=[],
                                grid=[80, 25], rows=[30], cells=["41" * 160], cursor=[],
                                frame="0" * 16)
    with pytest.raises(FrameMismatch, match="row 30"):
        screen.apply(bogus)


# --- the CLI --------------------------------------------------------------------------------

def vga_picture():
    from spec.machine import run_guest
    return run_guest(load("vga")).picture


def test_run_prints_the_final_screen_and_writes_a_screenshot(tmp_path):
    shot = tmp_path / "vga.png"
    proc = cli("run", "vga", "--screenshot", str(shot))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "line 30: written to video memory" in out and "powered off" in out
    from PIL import Image
    with Image.open(shot) as image:
        assert image.size == (720, 400)
        # row 0, column 40 (the right of "line 06: ...", blue background)
        # (blue as Xen 3.0.4's qemu-dm powers its DAC on: EGA's 8-bit 170 in
        # a 6-bit register reads 42, shown as 0xA8)
        assert image.getpixel((79 * 9 + 4, 8)) == (0, 0, 0xA8)
        assert image.tobytes() == vga_picture()[2]


def test_the_picture_shows_the_font_and_the_cursor_by_its_blink_phase(vga):
    width, height, rgb = vga.picture
    final = _updates(vga)[-1]
    pixel = lambda x, y: rgb[3 * (y * width + x):3 * (y * width + x) + 3]      # noqa: E731
    assert (width, height) == (720, 400)
    # the cursor: an underline on scan line 14 of row 12, column 40, in the
    # cell's foreground colour (bright white, attribute 0x1f), when the
    # blink phase of the last refresh shows it
    shown = cursor_visible(final.icount)
    for line in (14, 15):
        assert pixel(40 * 9 + 1, 12 * 16 + line) == (b"\xff\xff\xff" if shown
                                                     else b"\0\0\xa8")
    assert pixel(40 * 9 + 1, 12 * 16 + 13) == b"\0\0\xa8"
    # 'l' of "line 06" (row 0, column 0) from the font in plane 2: its stem
    # is dots 2-3 of scan lines 2-12 of the 8x16 glyph
    assert pixel(3, 6) != pixel(7, 6)


def test_display_off_and_json_print_no_screen():
    proc = cli("run", "vga", "--display", "off")
    assert "line 30" not in proc.stdout
    proc = cli("run", "vga", "--json")
    json.loads(proc.stdout)


def test_screenshot_to_an_unwritable_place_is_a_usage_error(tmp_path):
    proc = cli("run", "vga", "--screenshot", str(tmp_path / "no" / "such" / "dir.png"))
    assert proc.returncode == 2 and "--screenshot" in proc.stderr
