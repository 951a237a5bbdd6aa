"""qemu-dm's VGA: shared video memory, Xen's dirty tracking, the display
scanner, the text picture, and the CLI's screen and screenshot."""

from __future__ import annotations

import ctypes
import hashlib
import json

import pytest
from hypothesis import given, settings, strategies as st

from hvmspec.display import FrameMismatch, Screen
from impl.vga import Vga as ImplVga
from spec import platform, trace
from spec.devices.vga import REFRESH_NS, Vga
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
    # the cursor parked at row 12, column 40, an underline on scan line 14
    assert screen.cursor == [12, 40, 14, 14]
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
        before = list(screen.rows)
        screen.apply(update)
        assert all(before[r] != screen.rows[r] for r in update.rows)
    # the final refresh at power-off, when qemu-dm stops, finds nothing new
    assert final.frame == hashlib.sha256(b"".join(screen.rows)
                                         + bytes(screen.cursor)).hexdigest()[:16]
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


def test_the_rest_of_the_vga_window_is_an_empty_bus():
    body = """
    mov ax, 0xa000
    mov es, ax
    mov byte ptr es:[0x10], 0x41     ; graphics window: not decoded in text mode
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
    """What the VGA reaches of Xen, for driving it directly: the video memory
    it maps and a dirty log kept by :class:`DirtyVram` (pages are never
    really protected here, so the test marks its own writes)."""

    def __init__(self) -> None:
        self.buffer = None
        self.log = DirtyVram(lambda pfn, writable: None)
        self.now = 0

    def map_vram(self, gpa, buffer):
        self.buffer = buffer

    def track_dirty_vram(self, first, nr):
        return self.log.track(first, nr)

    def dirty_vram_pending(self):
        return self.log.pending()

    def clock_ns(self):
        return self.now

    def store(self, offset: int, data: bytes) -> None:
        ctypes.memmove(ctypes.addressof(self.buffer) + offset, data, len(data))
        self.log.copied(TEXT + offset, len(data))


def test_input_status_follows_the_mode3_timing():
    host = _Host()
    dev = Vga(host)
    samples = {}
    for ns in (0, 25_000, 30_000, 412 * 31_778 + 10, 414 * 31_778 + 10, 401 * 31_778):
        host.now = ns
        samples[ns] = dev.io_read(0x1A, 1)
    # shown dots of line 0; the horizontal blank of line 0; retrace; after it; vertical blank
    assert list(samples.values()) == [0, 0, 1, 9, 1, 1]


def test_cursor_off_and_outside_the_screen():
    host = _Host()
    dev = Vga(host)
    assert dev.cursor_position() == [0, 0, 0x0D, 0x0E]
    dev.io_write(0x14, 1, 0x0E)
    dev.io_write(0x15, 1, 0x07)
    dev.io_write(0x14, 1, 0x0F)
    dev.io_write(0x15, 1, 0xD0)             # 2000: one past the last cell
    assert dev.cursor_position() == []
    dev.io_write(0x14, 1, 0x0A)
    dev.io_write(0x15, 1, 0x2D)             # cursor off
    dev.io_write(0x14, 1, 0x0E)
    dev.io_write(0x15, 1, 0x00)             # back on the screen, at cell 0xD0 ...
    assert dev.cursor_position() == []      # ... but switched off


OPS = st.lists(st.one_of(
    st.tuples(st.just("store"), st.integers(0, platform.VGA_TEXT_SIZE - 8), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("crtc"), st.sampled_from([0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x13, 0x30]),
              st.integers(0, 255)),
    st.tuples(st.just("port"), st.integers(0, 0x1F), st.integers(0, 255)),
    st.tuples(st.just("read"), st.integers(0, 0x1F), st.just(0)),
    st.tuples(st.just("tick"), st.integers(1, 3 * REFRESH_NS), st.just(0)),
), max_size=40)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(OPS)
def test_impl_vga_matches_the_spec(ops):
    hosts = (_Host(), _Host())
    spec_dev, impl_dev = Vga(hosts[0]), ImplVga(hosts[1])
    spec_events: list = []
    impl_events: list = []
    for op, a, b in ops:
        if op == "store":
            for host in hosts:
                host.store(a, b)
        elif op == "crtc":
            spec_dev.io_write(0x14, 1, a)
            spec_dev.io_write(0x15, 1, b)
            impl_dev.write(0x14, 1, a)
            impl_dev.write(0x15, 1, b)
        elif op == "port":
            if a in (0x18, 0x1A):                 # keep the table: the CRTC goes through "crtc"
                continue
            spec_dev.io_write(a, 1, b)
            impl_dev.write(a, 1, b)
        elif op == "read":
            assert spec_dev.io_read(a, 1) == impl_dev.read(a, 1), hex(0x3C0 + a)
        else:
            for host in hosts:
                host.now += a
            assert (spec_dev.next_refresh(0) is None) == (not impl_dev.wants_refresh())
            update = spec_dev.refresh()
            if update is not None:
                spec_events.append(update)
            impl_dev.refresh(impl_events.append)
    assert spec_events == impl_events


def test_a_trace_whose_updates_do_not_add_up_is_reported():
    screen = Screen()
    bogus = trace.DisplayUpdate(icount=5, rows=[0], cells=["41" * 160], cursor=[], frame="0" * 16)
    with pytest.raises(FrameMismatch, match="frame 0000000000000000"):
        screen.apply(bogus)


# --- the CLI --------------------------------------------------------------------------------

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
        assert image.getpixel((79 * 9 + 4, 8)) == (0, 0, 0xAA)
        # the cursor: an underline on scan line 14 of row 12, column 40, in
        # the cell's foreground colour (bright white, attribute 0x1f)
        assert image.getpixel((40 * 9 + 1, 12 * 16 + 14)) == (0xFF, 0xFF, 0xFF)
        assert image.getpixel((40 * 9 + 1, 12 * 16 + 15)) == (0, 0, 0xAA)


def test_display_off_and_json_print_no_screen():
    proc = cli("run", "vga", "--display", "off")
    assert "line 30" not in proc.stdout
    proc = cli("run", "vga", "--json")
    json.loads(proc.stdout)


def test_screenshot_to_an_unwritable_place_is_a_usage_error(tmp_path):
    proc = cli("run", "vga", "--screenshot", str(tmp_path / "no" / "such" / "dir.png"))
    assert proc.returncode == 2 and "--screenshot" in proc.stderr
