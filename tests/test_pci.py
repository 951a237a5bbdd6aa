"""PCI configuration mechanism #1, the test device's BAR, PIIX3's RCR (spec and
impl), port 0x80 passing through Xen's I/O bitmap, qemu-dm's count of
unclaimed accesses, and the platform guest on both engines."""

import pytest
from hypothesis import given, settings, strategies as st

from impl import pci as impl_pci
from spec import loader, platform
from spec.devices import MmioBus
from spec.devices import pci as spec_pci
from spec.devices.testdev import TestDevice as Page
from tests.conftest import both, run


class Device:
    """The config ports (offsets from 0xcf8) and where the test device is."""

    def __init__(self, engine: str) -> None:
        self.resets = 0
        if engine == "spec":
            self.mmio = MmioBus(lambda e: None)
            self.testdev = Page(platform.TESTDEV_SIZE)
            dev = spec_pci.PciHost(self.mmio, self.testdev, self._reset)
            self.read, self.write = dev.io_read, dev.io_write
            self.where = lambda: next((s for s, _, d in self.mmio.ranges
                                       if d is self.testdev), None)
        else:
            self.moves: list[int | None] = []
            dev = impl_pci.Pci(self.moves.append, self._reset)
            self.read, self.write = dev.read, dev.write
            self.where = lambda: dev.testdev_base

    def _reset(self) -> None:
        self.resets += 1

    def config(self, dev: int, fn: int, reg: int, size: int = 4, bus: int = 0) -> int:
        self.write(0, 4, 0x80000000 | bus << 16 | dev << 11 | fn << 8 | reg & 0xFC)
        return self.read(4 + (reg & 3), size)

    def set_config(self, dev: int, fn: int, reg: int, value: int, size: int = 4) -> None:
        self.write(0, 4, 0x80000000 | dev << 11 | fn << 8 | reg & 0xFC)
        self.write(4 + (reg & 3), size, value)


@pytest.fixture(params=["spec", "impl"])
def pci(request):
    return Device(request.param)


def test_bus_0(pci):
    assert pci.config(0, 0, 0) == 0x12378086
    assert pci.config(0, 0, 8) == 0x06000002
    assert pci.config(1, 0, 0) == 0x70008086
    assert pci.config(1, 0, 8) == 0x06010000
    assert pci.config(1, 0, 0x0C) == 0x00800000      # header type: multi-function
    assert pci.config(2, 0, 0) == 0x11111234            # the std VGA
    assert pci.config(2, 0, 8) == 0x03000000
    assert pci.config(3, 0, 0) == 0x7E571234
    assert pci.config(3, 0, 8) == 0xFF000000
    assert pci.config(3, 0, 0x10) == platform.TESTDEV_BASE
    assert pci.config(3, 0, 4, 2) == 0x0002            # memory decode on


def test_absent_functions_read_all_ones(pci):
    assert pci.config(4, 0, 0) == 0xFFFFFFFF
    assert pci.config(1, 3, 0) == 0xFFFFFFFF          # USB (off in Xen 3.0.4 unless usb=1)
    assert pci.config(0, 0, 0, bus=1) == 0xFFFFFFFF
    pci.set_config(5, 0, 0x3C, 0x12)                  # dropped
    assert pci.config(5, 0, 0x3C) == 0xFFFFFFFF


def test_byte_and_word_accesses_at_their_offsets(pci):
    assert pci.config(0, 0, 0x00, 1) == 0x86
    assert pci.config(0, 0, 0x01, 1) == 0x80
    assert pci.config(0, 0, 0x02, 2) == 0x1237
    assert pci.config(0, 0, 0x03, 1) == 0x12
    assert pci.config(1, 0, 0x0B, 1) == 0x06
    pci.set_config(3, 0, 0x3C, 0x0B, 1)               # interrupt line
    assert pci.config(3, 0, 0x3C) == 0x0000000B       # pin stays 0 (read-only)
    pci.set_config(3, 0, 0x3D, 0x01, 1)
    assert pci.config(3, 0, 0x3D, 1) == 0x00


def test_config_address_register(pci):
    pci.write(0, 4, 0xFFFFFFFF)
    assert pci.read(0, 4) == 0x80FFFFFC               # reserved bits read 0
    pci.write(0, 4, 0x00001800)                       # enable bit clear
    assert pci.read(4, 4) == 0xFFFFFFFF
    pci.write(0, 4, 0x80001800)
    pci.write(2, 2, 0)                                # not a dword: not the address
    assert pci.read(0, 4) == 0x80001800
    assert pci.read(0, 1) == 0xFF
    assert pci.read(2, 2) == 0xFFFF


def test_read_only_fields(pci):
    for reg in (0x00, 0x08, 0x0C, 0x2C, 0x30):
        before = pci.config(0, 0, reg)
        pci.set_config(0, 0, reg, 0xFFFFFFFF)
        after = pci.config(0, 0, reg)
        # only cache line size and latency timer (0x0c, bytes 0 and 1) are writable
        assert after == (before | 0xFFFF if reg == 0x0C else before)
    pci.set_config(0, 0, 0x04, 0xFFFFFFFF)
    assert pci.config(0, 0, 0x04) == 0x00000547       # command bits; status read-only


def test_bar_sizing_and_relocation(pci):
    assert pci.where() == platform.TESTDEV_BASE
    pci.set_config(3, 0, 0x04, 0x0000, 2)             # memory decode off
    assert pci.where() is None
    pci.set_config(3, 0, 0x10, 0xFFFFFFFF)
    assert pci.config(3, 0, 0x10) == 0xFFFFF000       # 4 KiB, 32-bit memory
    pci.set_config(3, 0, 0x10, 0xE0000ABC)
    assert pci.config(3, 0, 0x10) == 0xE0000000
    assert pci.where() is None
    pci.set_config(3, 0, 0x04, 0x0002, 2)
    assert pci.where() == 0xE0000000
    pci.set_config(3, 0, 0x13, 0xFE, 1)               # a byte write moves it too
    assert pci.where() == 0xFE000000
    pci.set_config(3, 0, 0x10, 0xFFFFFFFF)            # sizing with decode on: the
    assert pci.where() is None                        # page would reach 4 GiB


def test_vga_bars(pci):
    pci.set_config(2, 0, 0x10, 0xFFFFFFFF)
    pci.set_config(2, 0, 0x14, 0xFFFFFFFF)
    assert pci.config(2, 0, 0x10) == 0xFF800008       # 8 MiB, prefetchable
    assert pci.config(2, 0, 0x14) == 0                # no BAR 1 (Xen 3.0.4's std VGA)
    assert pci.config(2, 0, 0x30) == 0                # no expansion ROM without a VGA BIOS


@pytest.mark.parametrize("value, resets, rcr", [(0x06, 1, 0), (0x04, 1, 0), (0x02, 0, 2),
                                                (0x0B, 0, 2)])
def test_reset_control_register(pci, value, resets, rcr):
    pci.write(1, 1, value)
    assert pci.resets == resets
    assert pci.read(1, 1) == rcr


@settings(max_examples=250, derandomize=True, deadline=None)
@given(st.lists(st.tuples(
    st.sampled_from(["addr", "read", "write"]),
    st.integers(0, 3), st.sampled_from([0, 1, 2, 3, 4, 8]), st.sampled_from([0, 4, 0x0C, 0x10,
                                                                             0x14, 0x3C, 0x40,
                                                                             0x58, 0x5C, 0x60,
                                                                             0x68, 0x70]),
    st.sampled_from([1, 2, 4]), st.integers(0, 3),
    st.sampled_from([0, 0xFFFFFFFF, 0x2, 0xFEB10000, 0xE0000000, 0x12345678])), max_size=25))
def test_spec_and_impl_agree(steps):
    a, b = Device("spec"), Device("impl")
    for op, fn, dev, reg, size, lane, value in steps:
        lane = lane - lane % size
        if op == "addr":
            for d in (a, b):
                d.write(0, 4, 0x80000000 | dev << 11 | (fn % 3) << 8 | reg)
        elif op == "read":
            assert a.read(4 + lane, size) == b.read(4 + lane, size)
        else:
            for d in (a, b):
                d.write(4 + lane, size, value & (1 << 8 * size) - 1)
        assert a.where() == b.where()


def test_platform_guest():
    ref = both(loader.load("platform"))
    assert ref.exit["reason"] == "poweroff"
    assert ref.serial == (
        "platform: qemu-dm's platform devices\n"
        "pci 00:00.0 8086:1237 class 060000\n"
        "pci 00:01.0 8086:7000 class 060100\n"
        "pci 00:01.1 8086:7010 class 010180\n"
        "pci 00:01.2 8086:7113 class 068000\n"
        "pci 00:02.0 1234:1111 class 030000\n"
        "pci 00:03.0 1234:7e57 class ff0000\n"
        "cmos D 80 base 0280 ext 3c00\n"
        "rtc 2026-01-01 00:00:00\n"
        "rtc irq8 x3, C c0\n"
        "kbc self-test 55 status 1c\n"
        "port80 ff port1234 ff\n"
        "testdev bar0 feb00000 mask fffff000 moved feb10000\n"
        "testdev at new bar 12345678 at old bar ffffffff\n")
    kinds = [e.kind for e in ref.trace]
    # port 0x80: two direct accesses, neither an exit nor an ioreq
    direct = [e for e in ref.trace if e.kind == "direct_io"]
    assert [(e.port, e.dir, e.data) for e in direct] == [(0x80, "out", 0x42), (0x80, "in", 0xFF)]
    assert not any(e.kind == "vmexit" and e.info.get("port") == 0x80 for e in ref.trace)
    # three IRQ8 injections, vector 0x70
    assert [e.vector for e in ref.trace if e.kind == "inject"] == [0x70] * 3
    stats = ref.trace[kinds.index("device_stats")]
    assert (stats.unclaimed_reads, stats.unclaimed_writes) == (1, 0)        # port 0x1234
    assert (stats.mmio_unclaimed_reads, stats.mmio_unclaimed_writes) == (1, 0)  # the old BAR
    moved = [e for e in ref.trace if e.kind == "device_io" and e.space == "mmio"]
    assert [(e.device, e.addr, e.dir) for e in moved] == [
        ("testdev", 0xFEB10000, "write"), ("testdev", 0xFEB10000, "read"),
        (None, 0xFEB00000, "read")]


def test_rtc_base_is_configurable():
    image = loader.load("platform")
    # 2000-02-29 23:59:59 UTC, with the guest's few milliseconds it stays there
    result = run("impl", image, device_model={"rtc_base": 951_868_799})
    assert "rtc 2000-02-29 23:59:59\n" in result.serial
    ref = run("reference", image, device_model={"rtc_base": 951_868_799})
    assert ref.trace == result.trace


def test_string_io_to_port_80_exits():
    """A string form to a pass-through port still exits (the model runs no
    string I/O natively): qemu-dm sees it as an unclaimed port."""
    src = """
%include "lib/all.s"
start:
    cli
    xor ax, ax
    mov ds, ax
    mov si, 0x500
    mov dx, 0x80
    outsb
    mov ax, 0x2000
    out 0x80, ax
    poweroff
"""
    import tempfile, pathlib
    with tempfile.TemporaryDirectory() as d:
        path = pathlib.Path(d) / "p80.s"
        path.write_text(src)
        ref = both(loader.load(str(path)))
    assert not [e for e in ref.trace if e.kind == "direct_io"]
    unclaimed = [(e.addr, e.size) for e in ref.trace if e.kind == "device_io" and e.device is None]
    assert unclaimed == [(0x80, 1), (0x80, 1)]       # outsb; the word's low byte
    # its high byte reaches port 0x81, the page register of DMA channel 2 (qemu-dm
    # split a word at a port with byte handlers only into two bytes)
    dma = [(e.addr, e.dir, e.data) for e in ref.trace if e.kind == "device_io" and e.device == "dma"]
    assert dma == [(0x81, "write", 0x20)]
