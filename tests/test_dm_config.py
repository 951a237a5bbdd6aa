"""qemu-dm's configuration comes from the XenStore nodes xend wrote."""

from __future__ import annotations

import pytest

from spec import dm_config, trace
from spec.loader import load
from spec.xend import DomainConfig
from spec.xenstore import Store as InProcessStore
from spec.xs_client import XenstoreError
from tests.conftest import both, guest


def _ops(result, client: str) -> list[tuple[str, str, str]]:
    return [(e.op, e.path, e.value) for e in result.trace
            if isinstance(e, trace.XenstoreOp) and e.client == client]


def test_xend_writes_and_qemu_dm_reads_on_both_engines():
    result = both(load("hello"), memory_mib=8, device_model={"device_model_bits": 64})
    vm = dm_config.vm_path("hello")
    written = {path: value for op, path, value in _ops(result, "xend") if op == "write"}
    assert written["/local/domain/1/vm"] == vm
    assert written["/local/domain/1/memory/target"] == str(8 << 10)
    assert written[f"{vm}/image/device-model/bits"] == "64"
    assert written[f"{vm}/on_poweroff"] == "destroy"
    assert written[f"{vm}/image/boot"] == "c"
    reads = _ops(result, "qemu-dm")
    assert reads[0] == ("read", "/local/domain/1/vm", vm)
    assert ("read", f"{vm}/image/device-model/bits", "64") in reads
    assert reads[-1] == ("write", "/local/domain/0/device-model/1/state", "running")
    # qemu-dm's mapcache follows what it read: 1 MiB buckets of a 64-bit qemu-dm
    assert result.mapcache["bucket_size"] == 1 << 20
    # the configuration is in place before the first VM entry; after it, only
    # xend's clean-up once the domain is gone
    first_entry = next(i for i, e in enumerate(result.trace) if isinstance(e, trace.VmEntry))
    later = [(e.client, e.op, e.path) for i, e in enumerate(result.trace)
             if isinstance(e, trace.XenstoreOp) and i > first_entry]
    assert later == [("xend", "rm", "/local/domain/1"), ("xend", "rm", vm),
                     ("xend", "rm", "/local/domain/0/device-model/1")]


@pytest.mark.parametrize("key, value, message", [
    ("/image/device-model/bits", "48", "expected one of '32', '64'"),
    ("/vcpus", "two", "is not a number"),
    ("/image/serial", "tcp:1234", "expected one of 'pty', 'none'"),
    ("/image/device-model/rtc-base", "", "is not a number"),
    ("/image/boot", "cx", "not a boot order"),
    ("/image/boot", "", "not a boot order"),
])
def test_malformed_configuration_names_the_path(key, value, message):
    store = InProcessStore(lambda e: None)
    xend, qemu = store.connect("xend"), store.connect("qemu-dm")
    dm_config.write_domain(xend, 7, DomainConfig(name="g"))
    xend.write(dm_config.vm_path("g") + key, value)
    with pytest.raises(dm_config.ConfigError, match=message) as info:
        dm_config.read_device_model(qemu, 7)
    assert dm_config.vm_path("g") + key in str(info.value)


def test_missing_domain_is_reported():
    store = InProcessStore(lambda e: None)
    with pytest.raises(dm_config.ConfigError, match=r"cannot read /local/domain/9/vm \(ENOENT\)"):
        dm_config.read_device_model(store.connect("qemu-dm"), 9)


def test_paths_are_checked():
    conn = InProcessStore(lambda e: None).connect("x")
    for bad in ("/a//b", "/a/", "/a b", "", "@x"):
        with pytest.raises(XenstoreError, match="EINVAL"):
            conn.write(bad, "v")
    conn.write("relative", "v")           # relative to the connection's home
    assert conn.read("/local/domain/0/relative") == "v"
    conn.write("/a/b/c", "1")
    assert conn.directory("/a") == ["b"] and conn.read("/a/b") == ""
    conn.rm("/a/b")
    with pytest.raises(XenstoreError, match="ENOENT"):
        conn.read("/a/b/c")


def test_nographic_leaves_the_vga_window_and_ports_unclaimed():
    body = """
    mov ax, 0xb800
    mov es, ax
    mov byte ptr es:[0], 0x41        ; no video memory: an MMIO exit, nothing claims it
    mov dx, 0x3d5
    in al, dx                        ; no VGA: all-ones
"""
    result = both(guest("nographic", body), device_model={"vga": False})
    ept = [e for e in result.trace if isinstance(e, trace.VmExit) and e.reason == "ept_violation"]
    assert [e.info["gpa"] for e in ept] == [0xB8000]
    reads = [e for e in result.trace if isinstance(e, trace.DeviceIo) and e.addr == 0x3D5]
    assert [(r.device, r.data) for r in reads] == [(None, 0xFF)]
    assert not [e for e in result.trace if isinstance(e, trace.DisplayUpdate)]


def test_serial_none_leaves_com1_unclaimed():
    result = both(load("hello"), device_model={"serial": "none"})
    assert result.serial == "" and result.exit["reason"] == "poweroff"
    com1 = {e.device for e in result.trace if isinstance(e, trace.DeviceIo)
            and 0x3F8 <= e.addr < 0x400}
    assert com1 == {None}


def test_the_boot_order_reaches_the_cmos_on_both_engines():
    """xm's ``boot`` goes through XenStore to qemu-dm's CMOS (0x3D, 0x38)."""
    body = """
    mov dx, 0x510
    mov al, 0x3d
    out 0x70, al
    in al, 0x71
    out dx, al
    mov al, 0x38
    out 0x70, al
    in al, 0x71
    out dx, al
"""
    result = both(guest("boot", body), device_model={"boot": "dca"})
    sent = [e.data for e in result.trace if isinstance(e, trace.IoreqTransition)
            and e.addr == 0x510 and e.new == "READY"]
    assert sent == [0x23, 0x10]


def test_a_boot_order_xend_refuses():
    with pytest.raises(Exception, match="boot = 'x'"):
        DomainConfig(name="g", boot="x")
