"""Port I/O beyond hello: sizes, unclaimed ports, string forms, faults.

Every case runs on both engines, which must agree event by event.
"""

import pytest

from spec import trace
from tests.conftest import POWEROFF, both, guest

SEND_AL = """
    mov dx, 0x3f8
    out dx, al
"""


def _sends(result):
    return [e for e in result.trace if isinstance(e, trace.IoreqTransition) and e.new == "READY"]


def test_unclaimed_port_reads_all_ones_and_ignores_writes():
    body = """
    mov dx, 0x2e0
    mov al, 0x12
    out dx, al              ; dropped
    in al, dx
""" + SEND_AL + """
    mov dx, 0x2e0
    in ax, dx
    mov al, ah
""" + SEND_AL + """
    mov dx, 0x2e0
    in eax, dx
    shr eax, 24
""" + SEND_AL
    result = both(guest("unclaimed", body))
    assert result.serial == "\xff\xff\xff"
    unclaimed = [e for e in result.trace if isinstance(e, trace.DeviceIo) and e.device is None]
    assert [(e.dir, e.size, e.data) for e in unclaimed] == [
        ("write", 1, 0x12), ("read", 1, 0xFF), ("read", 2, 0xFFFF), ("read", 4, 0xFFFFFFFF)]


def test_immediate_port_and_sizes():
    body = """
    mov al, 'A'
    out 0xe9, al            ; unclaimed, immediate port
    mov dx, 0x3ff           ; UART scratch register
    mov al, 'S'
    out dx, al
    in al, dx
""" + SEND_AL
    result = both(guest("imm", body))
    assert result.serial == "S"
    exits = [e for e in result.trace if isinstance(e, trace.VmExit)]
    assert exits[0].info["imm"] is True and exits[0].info["port"] == 0xE9
    assert exits[1].info["imm"] is False and exits[1].info["port"] == 0x3FF


def test_word_access_to_byte_device_is_split():
    body = """
    mov dx, 0x3fe           ; MSR (ignored) and SCR
    mov ax, 0x4100
    out dx, ax
    mov dx, 0x3ff
    in al, dx
""" + SEND_AL
    result = both(guest("split", body))
    assert result.serial == "A"
    parts = [e for e in result.trace if isinstance(e, trace.DeviceIo) and e.dir == "write"
             and e.device == "uart" and e.addr in (0x3FE, 0x3FF)]
    assert [(e.addr, e.size, e.data) for e in parts] == [(0x3FE, 1, 0x00), (0x3FF, 1, 0x41)]


def test_rep_outsb_backwards_with_df():
    body = """
    mov si, text_end - 1
    mov cx, text_end - text
    mov dx, 0x3f8
    std
    rep outsb
    cld
    jmp done
text:
    .ascii "olleh"
text_end:
done:
"""
    result = both(guest("df", body))
    assert result.serial == "hello"
    (send,) = [e for e in _sends(result) if e.data_is_ptr]
    assert send.df == 1 and send.count == 5


def test_string_io_never_crosses_a_page():
    # 10 bytes at 0x1ffb..0x2004: 5 before the page boundary, 5 after
    body = """
    mov di, 0x1ffb
    mov cx, 10
    mov al, 'a'
fill:
    mov [di], al
    inc di
    inc al
    loop fill
    mov si, 0x1ffb
    mov cx, 10
    mov dx, 0x3f8
    cld
    push ds
    xor ax, ax
    mov ds, ax
    rep outsb
    pop ds
"""
    body = body.replace("mov [di], al", "mov es:[di], al")
    result = both(guest("page", body))
    assert result.serial == "abcdefghij"
    chunks = [(e.data, e.count) for e in _sends(result) if e.data_is_ptr]
    assert chunks == [(0x1FFB, 5), (0x2000, 5)]


def test_straddling_element_goes_by_value():
    # a word at 0x1fff straddles the page boundary: sent by value, count 1
    body = """
    xor ax, ax
    mov es, ax
    mov word ptr es:[0x1fff], 0x4241
    mov word ptr es:[0x2001], 0x4443
    push ds
    mov ds, ax
    mov si, 0x1fff
    mov cx, 2
    mov dx, 0x3fe
    cld
    rep outsw
    pop ds
    mov dx, 0x3ff
    in al, dx
""" + SEND_AL
    result = both(guest("straddle", body))
    sends = [e for e in _sends(result) if e.addr == 0x3FE]
    assert [(e.data_is_ptr, e.count, e.size) for e in sends] == [(0, 1, 2), (1, 1, 2)]
    assert sends[0].data == 0x4241 and sends[1].data == 0x2001
    assert result.serial == "D"


def test_rep_insb_writes_guest_memory():
    body = """
    mov byte ptr es:[0x500], 0x55
    mov dx, 0x3ff
    mov al, 'Z'
    out dx, al              ; SCR = 'Z'
    mov di, 0x500
    mov cx, 3
    cld
    rep insb                ; three reads of SCR into 0:0500
    push ds
    xor ax, ax
    mov ds, ax
    mov si, 0x500
    mov cx, 3
    mov dx, 0x3f8
    rep outsb
    pop ds
"""
    result = both(guest("insb", body))
    assert result.serial == "ZZZ"


def test_rep_with_zero_count_completes_without_an_ioreq():
    body = """
    xor cx, cx
    mov dx, 0x3f8
    rep outsb
    mov al, 'k'
""" + SEND_AL
    result = both(guest("zero", body))
    assert result.serial == "k"
    string_exits = [e for e in result.trace if isinstance(e, trace.VmExit) and e.info.get("string")]
    assert len(string_exits) == 1
    assert not [e for e in _sends(result) if e.data_is_ptr]


@pytest.mark.parametrize("body,reason,fragment", [
    ("hlt\n", "hung", "interrupts disabled"),
    (".byte 0xea\n .word 0x0000, 0xa000\n", "crash", "instruction fetch from gpa 0xa0000"),
])
def test_faults_and_hangs_end_the_domain_cleanly(body, reason, fragment):
    result = both(guest(reason, body, poweroff=False))
    assert result.exit["reason"] == reason
    assert fragment in result.exit["message"]
    assert result.exit["domain"] == "destroyed"


def test_instruction_budget():
    result = both(guest("spin", "spin:\n jmp spin\n", poweroff=False), max_instructions=5000)
    assert result.exit["reason"] == "limit"
    assert result.instructions == 5000


def test_lock_prefix_on_port_io_is_invalid():
    """LOCK OUT is #UD (SDM vol. 2, "LOCK"), raised before any exit and
    delivered through the IVT: the handler at 0xf000:ud powers off."""
    body = """
    ivt_set 6 * 4, ud, es:
    .byte 0xf0, 0xee
    hlt
ud:
""" + POWEROFF
    result = both(guest("lock", body, poweroff=False))
    assert result.exit["reason"] == "poweroff"
    raised = [e for e in result.trace if isinstance(e, trace.ExceptionDelivery)]
    assert [(e.vector, e.source) for e in raised] == [(6, "fault")]
    assert not [e for e in result.trace if isinstance(e, trace.VmExit) and e.info.get("port") == 0x3F8
                and e.rip == raised[0].rip]


def test_port_io_from_32_bit_protected_mode():
    from spec.loader import load
    result = both(load("pm32"))
    assert result.serial == "32-bit protected mode\n\xff\n"
    strings = [e for e in result.trace if isinstance(e, trace.VmExit) and e.info.get("string")]
    assert [e.info["address_size"] for e in strings] == [32, 32]
    assert result.exit["reason"] == "poweroff"


def test_dword_reaching_past_a_device_is_split_by_bytes():
    # 0x3ff is the UART's last port: the other three bytes go to unclaimed ports
    body = """
    mov dx, 0x3ff
    mov eax, 0x44434241
    out dx, eax
    in al, dx
""" + SEND_AL
    result = both(guest("dword", body))
    assert result.serial == "A"
    writes = [(e.device, e.addr, e.data) for e in result.trace
              if isinstance(e, trace.DeviceIo) and e.dir == "write" and e.size == 1
              and 0x3FF <= e.addr <= 0x402]
    assert writes == [("uart", 0x3FF, 0x41), (None, 0x400, 0x42), (None, 0x401, 0x43),
                      (None, 0x402, 0x44)]
