"""hvmspec.terminal: a VT100's screen from a serial console's output, as
memtest86+ draws on COM1 (rows and fields rewritten in place)."""

from __future__ import annotations

from hvmspec.terminal import screen


def test_cursor_positioning_rewrites_in_place():
    out = ("\x1b[2J\x1b[?25l\x1b[1;1H\x1b[7m  Memtest86+  \x1b[0m| CPU"
           "\x1b[2;1HPass:  0   Errors: 0\x1b[2;8H1")
    assert screen(out, 4, 30) == ["  Memtest86+  | CPU", "Pass:  1   Errors: 0", "", ""]


def test_erase_and_moves():
    out = "abcdef\x1b[3D\x1bK\x1b[K|\r\nxy\x1b[1A\x1b[2C!\x1b[2;1H\x1b[1K"
    assert screen(out, 3, 10) == ["abc|!", " y", ""]
    assert screen("abc\x1b[1;2H\x1b[J", 2, 5) == ["a", ""]
    assert screen("abc\x1b[2J", 2, 5) == ["", ""]


def test_wrap_and_scroll():
    assert screen("0123456789AB", 2, 10) == ["0123456789", "AB"]
    assert screen("one\r\ntwo\r\nthree", 2, 10) == ["two", "three"]


def test_memtest_screen_masks_what_depends_on_the_machine_not_the_platform():
    """hvmspec.linux_iso.memtest_screen: the screen when a marker first
    appears, with the CPU's name, the measured clock, the L3 cache, speeds,
    the time and the spinner masked, keeping the columns."""
    from hvmspec.linux_iso import memtest_screen
    out = ("\x1b[2J\x1b[1;1H      Memtest86+ v6.10      | Intel(R) Core(TM)2 CPU 6600"
           "\x1b[2;1HCLK/Temp: 2886MHz           | Pass 94%"
           "\x1b[3;1HL3 Cache:   N/A             | Test #10 [Bit fade test, 2 patterns]"
           "\x1b[4;1HTime:  0:00:18  Status: Testing  -\x1b[4;13H19\x1b[5;1Hlater")
    rows = memtest_screen(out, "#10 [Bit fade")
    assert rows[:5] == ["      Memtest86+ v6.10      | <cpu>",
                        "CLK/Temp: <MHz> | Pass <progress>",
                        "L3 Cache: <L3> | Test #10 [Bit fade test, 2 patterns]", "", ""]
    assert memtest_screen(out, "later")[3] == "Time: <time>  Status: Testing <spinner>"
