"""MMIO: the VMM emulates the instruction, and its device accesses are ioreqs.

Every case runs on both engines (the reference emulates with spec/x86 and
retries as device responses arrive; impl steps Unicorn over mmio_map) and
they must agree event by event.
"""

import pytest

from spec import loader, trace
from tests.conftest import both

DEV = 0xFEB00000


def _copies(result, new="READY"):
    return [e for e in result.trace if isinstance(e, trace.IoreqTransition)
            and e.type == "copy" and e.new == new and e.by == "vmm"]


@pytest.fixture(scope="module")
def mmio():
    return both(loader.load("mmio"))


def test_the_mmio_guest_reads_back_every_result(mmio):
    assert mmio.serial == ("abcdeABCDEFGHIJKLMNOPQR\nstring moves through the device\n*\n")
    assert mmio.exit["reason"] == "poweroff"


def test_read_modify_write_is_one_read_then_one_write(mmio):
    # the exit of `add dword ptr [ebx + 8], 1`: one read, then one write of the same
    exits = [i for i, e in enumerate(mmio.trace) if isinstance(e, trace.VmExit)
             and e.reason == "ept_violation"]
    for start, end in zip(exits, exits[1:] + [len(mmio.trace)]):
        sends = [e for e in mmio.trace[start:end] if isinstance(e, trace.IoreqTransition)
                 and e.by == "vmm" and e.new == "READY" and e.type == "copy"]
        if [s.dir for s in sends] == ["read", "write"]:
            assert sends[0].addr == sends[1].addr and sends[0].size == sends[1].size
    rmw = [e for e in _copies(mmio) if e.addr == DEV + 8]
    assert sum(1 for e in rmw if e.dir == "write") >= 17


def test_string_moves_are_one_ioreq_with_a_count(mmio):
    pointers = [(e.dir, e.count, e.data_is_ptr) for e in _copies(mmio) if e.count > 1]
    assert pointers == [("write", 32, 1), ("read", 32, 1)]


def test_a_vga_window_write_outside_the_memory_map_is_dropped(mmio):
    # 0xA0000 is the VGA's legacy window, trapped; in text mode (memory map 3,
    # 0xB8000) the VGA does not decode it, so the write lands nowhere
    (vga,) = [e for e in mmio.trace if isinstance(e, trace.DeviceIo) and e.space == "mmio"
              and e.addr == 0xA0000]
    assert vga.device == "vga" and vga.dir == "write"


def test_every_exit_reports_the_access_kind(mmio):
    kinds = {e.info["access"] for e in mmio.trace
             if isinstance(e, trace.VmExit) and e.reason == "ept_violation"}
    assert kinds == {"read", "write"}


def test_real_mode_rmw_on_the_vga_hole_reads_all_ones():
    from tests.conftest import guest
    body = """
    mov ax, 0xa000
    mov es, ax
    add byte ptr es:[5], 1          ; reads 0xff from the empty bus, writes 0x00
    mov al, es:[5]                  ; 0xff again: the write was dropped
    mov dx, 0x3f8
    out dx, al
"""
    result = both(guest("vga_rmw", body))
    assert result.serial == "\xff"
    sends = [(e.dir, e.addr, e.size, e.data) for e in _copies(result)]
    assert sends == [("read", 0xA0005, 1, 0), ("write", 0xA0005, 1, 0), ("read", 0xA0005, 1, 0)]


def test_an_instruction_not_emulated_on_mmio_crashes_the_domain():
    from tests.conftest import guest
    body = """
    mov ax, 0xa000
    mov es, ax
    fild word ptr es:[0]
"""
    result = both(guest("fpu_mmio", body, poweroff=False))
    assert result.exit["reason"] == "crash"
    assert "MMIO emulation failed" in result.exit["message"]
    assert "fild word ptr es:[0] is not emulated" in result.exit["message"]


def test_bt_with_a_register_offset_wraps_its_address_at_64k_on_both_engines():
    """BT's bit-base addressing is an effective address, which wraps at
    64 KiB with 16-bit addressing: DS = 0xa000, BX = 0x0f00 and a bit offset
    of -32768 (2048 words below) select the word at DS:0xff00, in the VGA
    hole, which no RAM backs and whose reads are all ones: CF = 1. (Added
    without the wrap, the address was 0x9ff00, RAM, which the hardware did
    not touch.)"""
    from tests.conftest import guest
    image = guest("bt-wrap", """
    mov ax, 0xa000
    mov ds, ax
    mov bx, 0x0f00
    mov cx, 0x8000
    bt word ptr [bx], cx
    setc al
    add al, '0'
    mov dx, COM1
    out dx, al
""")
    result = both(image)
    assert result.serial == "1"
    reads = [e for e in _copies(result) if e.dir == "read"]
    assert [(e.addr, e.size) for e in reads] == [(0xAFF00, 2)]
