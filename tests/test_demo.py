"""guests/demo, the guest ``make run`` boots: serial, the text screen, MMIO
read-modify-write on the test device, timer ticks with HLT, ACPI power-off,
the same on both engines."""

from __future__ import annotations

import subprocess

import pytest

from hvmspec.display import Screen
from spec import platform, trace
from spec.loader import load
from tests.conftest import ROOT, both

SERIAL = ("demo: hello from an unmodified guest on hvmspec's Xen HVM\n"
          "demo: test device after add, xor, or: 11223445 0f0ff0f0 00000ab0\n"
          "demo: taking 24 timer ticks, halting in between\n"
          "demo: ticks 00000018\n"
          "demo: powering off\n")


@pytest.fixture(scope="module")
def demo():
    return both(load("demo"))


def test_serial_and_power_off(demo):
    assert demo.serial == SERIAL
    assert demo.exit == {"reason": "poweroff", "dom": 1, "by": "qemu-dm", "domain": "destroyed"}


def test_final_screen(demo):
    screen = Screen.from_trace(demo.trace)
    lines = screen.text().splitlines()
    assert lines[1] == "  ╔" + "═" * 74 + "╗"
    assert lines[22] == "  ╚" + "═" * 74 + "╝"
    assert "hvmspec: an unmodified guest under Xen HVM" in lines[2]
    assert lines[9].split("=")[1].strip().startswith("0x11223445")
    assert lines[14].rstrip("║ ").endswith("█" * 24 + "  24")
    assert "done: powering off through ACPI S5" in lines[20]
    assert screen.cursor[:2] == [20, 36]


def test_the_bar_grows_one_tick_per_display_update_at_most(demo):
    bars = []
    screen = Screen()
    for event in demo.trace:
        if isinstance(event, trace.DisplayUpdate):
            screen.apply(event)
            bars.append(screen.text().splitlines()[14].count("█"))
    assert bars == sorted(bars) and bars[-1] == 24
    assert len(set(bars)) >= 12          # the scanner saw the bar grow


def test_rmw_on_the_test_device_is_one_read_and_one_write_each(demo):
    accesses = [(e.dir, e.addr - platform.TESTDEV_BASE, e.size, e.data) for e in demo.trace
                if isinstance(e, trace.DeviceIo) and e.device == "testdev"]
    assert accesses[:8] == [("write", 0, 4, 0x11223344), ("read", 0, 4, 0x11223344),
                            ("write", 0, 4, 0x11223445), ("write", 4, 4, 0xF0F0F0F0),
                            ("read", 4, 4, 0xF0F0F0F0), ("write", 4, 4, 0x0F0FF0F0),
                            ("write", 8, 2, 0x0A00), ("read", 8, 2, 0x0A00)]


def test_ticks_arrive_after_halts(demo):
    injections = [e for e in demo.trace if isinstance(e, trace.Injection)]
    assert len(injections) == 24 and {e.vector for e in injections} == {0x20}
    idle = [e for e in demo.trace if isinstance(e, trace.Idle)]
    assert len(idle) >= 23


def test_make_run_boots_the_demo():
    proc = subprocess.run(["make", "-s", "run"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(SERIAL)
    assert "hvmspec: an unmodified guest under Xen HVM" in proc.stdout
    assert proc.stdout.rstrip().splitlines()[-1].startswith("[impl] domain 1 (demo) powered off")
