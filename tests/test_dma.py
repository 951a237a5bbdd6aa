"""guests/dma: string I/O with data_is_ptr all over a 4 GiB guest, through a
32-bit qemu-dm's mapcache: page splits, far-apart buffers, misses and
evictions, and the right data, on both engines."""

from __future__ import annotations

import pytest

from spec import platform, trace
from spec.loader import load
from tests.conftest import both, cli, cli_json

LINE = 53                   # bytes of each far-apart line, 20 before the page and 33 after


@pytest.fixture(scope="module")
def dma():
    return both(load("dma"))


def test_the_guest_asks_for_4_gib_and_gets_them(dma):
    assert load("dma").memory_mib == 4096
    assert dma.serial.splitlines()[0] == "dma: memory below 4 GiB: 3840 MiB"
    assert dma.exit["reason"] == "poweroff"


def test_far_apart_lines_arrive_intact(dma):
    lines = dma.serial.splitlines()[1:9]
    places = [0x200000] + [(3840 << 20) * k // 8 & ~0xFFF for k in range(1, 8)]
    assert lines == [f"dma: a line across the page at {p:#010x}, far apart" for p in places]


def test_each_far_line_is_split_at_its_page(dma):
    sends = [(e.count, e.data) for e in dma.trace if isinstance(e, trace.IoreqTransition)
             and e.new == "READY" and e.data_is_ptr and e.addr == platform.COM1_BASE]
    assert len(sends) == 16
    for (first, at), (second, after) in zip(sends[::2], sends[1::2]):
        assert (first, second) == (20, LINE - 20)
        assert after == at + 20 and after % platform.PAGE_SIZE == 0


def test_the_walk_evicts_and_the_data_is_right(dma):
    assert "dma: rep insb into 40000 buckets of 64 KiB from 16 MiB, 0 wrong" in dma.serial
    m = dma.mapcache
    budget = platform.MAPCACHE_DEFAULT_BUDGET[32]
    assert (m["mode"], m["bucket_size"], m["budget"]) == ("mapcache", 64 << 10, budget)
    windows = budget >> 16
    # 40,000 walk buckets and 8 line buckets (each line's two pages share one
    # bucket); the first 16 walk buckets come back after eviction
    assert m["misses"] == 8 + 40000 + 16
    assert m["evictions"] == m["misses"] - windows
    assert m["mapped"] == m["peak"] == budget


def test_evicted_buckets_are_mapped_again(dma):
    misses = [e for e in dma.trace if isinstance(e, trace.MapcacheMiss)]
    again = misses[-16:]
    assert [e.bucket for e in again] == [(16 << 20) + (i << 16) for i in range(16)]
    assert all(e.evicted >= 0 for e in again)
    assert dma.serial.endswith("the last one sent 5a\n")


def test_map_everything_refuses_the_4_gib_guest():
    proc = cli("run", "dma", "--map-everything")
    assert proc.returncode == 2
    assert "4096 MiB do not fit a 32-bit qemu-dm's 2304 MiB" in proc.stderr


def test_a_64_bit_qemu_dm_holds_it_all():
    proc, out = cli_json("run", "dma", "--dm-bits", "64")
    assert proc.returncode == 0
    m = out["mapcache"]
    assert m["evictions"] == 0 and m["bucket_size"] == 1 << 20


def test_the_header_setting_is_checked(tmp_path):
    source = tmp_path / "bad.s"
    source.write_text("; hvmspec: memory = lots\nhlt\n")
    proc = cli("run", str(source))
    assert proc.returncode == 2 and "memory = 'lots'" in proc.stderr
    source.write_text("; hvmspec: disks = 2\nhlt\n")
    proc = cli("run", str(source))
    assert proc.returncode == 2 and "unknown setting 'disks'" in proc.stderr


def test_guests_far_larger_than_the_host_run_sparse():
    # 64 GiB of guest memory: RAM to 3.75 GiB, the MMIO hole, then 60.25 GiB
    # above 4 GiB; the host backs only the pages the guest touches
    result = both(load("hello"), memory_mib=65536)
    assert result.exit["reason"] == "poweroff"
    assert platform.ram_ranges(65536 << 20)[-1] == (1 << 32, (1 << 32) + (65536 << 20)
                                                     - platform.BELOW_4G_RAM_END)
