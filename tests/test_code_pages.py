"""Code that shares a page with data it writes, in real mode, on both engines.

impl write-protects the pages holding blocks it has counted; the guest's
first store there stops the run before the store, the page becomes writable
for good, and the run starts again at the store. Each guest here copies a
payload to 0800:0000 (linear 0x8000) and runs it there, its stack on the
same page, and writes its own page in one way: pushes, near and far calls
(the far call's pushes are made inside one of Unicorn's helpers, which
used to drop them and complete the call: the run then started again at the
call's target with a stack that was never written), a store into the next
block, a store into the block that is running (QEMU abandons that block
and runs the store again on its own), a loop that patches itself on every
pass, REP STOSD over the rest of the page, a read-modify-write, a store
into the next page (of the same 64 KiB chunk) before one into the code.
Every trace
must be equal on both engines, instruction counts included.
"""

from __future__ import annotations

import pytest

from spec.loader import assemble
from tests.conftest import PROLOGUE, both, guest

SEGMENT = 0x800
OUT = "    mov dx, 0x3f8\n    out dx, al\n"

#: name -> (payload source, {placeholder: where it points in the payload}, serial)
CASES = {
    "stack pushes": ("    push ax\n    pop bx\n    mov al, 'a'\n" + OUT, {}, "a"),
    "near call": ("    call sub\n    mov al, bl\n" + OUT + "    jmp end\nsub:\n    mov bl, 'b'\n"
                  "    .byte 0x66, 0xc3\n", {}, "b"),
    "far call": ("    mov bl, 'c'\n    .byte 0x9a\n    .word {SUB}\n    .word 0x800\n    mov al, bl\n"
                 + OUT + "    jmp end\n    inc bl\n    .byte 0xcb\n",
                 {"SUB": lambda c: c.rindex(b"\xfe\xc3\xcb")}, "d"),
    "store into the next block": ("    mov byte ptr [{P}], 'e'\n    jmp next\nnext:\n    mov al, 'x'\n"
                                  + OUT, {"P": lambda c: c.index(b"\xb0x\xba") + 1}, "e"),
    "store into the running block": ("    mov byte ptr [{P}], 'f'\n    nop\n    mov al, 'x'\n" + OUT,
                                     {"P": lambda c: c.index(b"\xb0x\xba") + 1}, "f"),
    "a loop that patches itself": ("    mov cx, 5\nagain:\n    inc byte ptr [{P}]\n    mov al, '0'\n"
                                   + OUT + "    loop again\n",
                                   {"P": lambda c: c.index(b"\xb00\xba") + 1}, "12345"),
    "rep stosd over the rest of the page": (
        "    mov di, 0x400\n    mov cx, 0x300\n    mov eax, 0x67676767\n    cld\n    rep stosd\n"
        "    mov al, [0xfff]\n" + OUT, {}, "g"),
    # impl protects code in 64 KiB chunks (impl.blocks.CHUNK_PAGES): the
    # store to 0800:1000 (the next page, no code) releases the chunk's
    # pages without code, and the one into the next block must still be
    # caught on the code's page
    "a store beside the code, then into it": (
        "    mov byte ptr [0x1000], 1\n    mov byte ptr [{P}], 'j'\n    jmp next\nnext:\n"
        "    mov al, 'x'\n" + OUT, {"P": lambda c: c.index(b"\xb0x\xba") + 1}, "j"),
    "read-modify-write": ("    add byte ptr [{D}], 1\n    mov al, [{D}]\n" + OUT + "    jmp end\n"
                          "    .byte 0x67\n", {"D": lambda c: len(c) - 1}, "h"),
    # memtest86+'s 16-bit setup: fix up a GDT descriptor and the offset of
    # a far jump in its own code, zero a block after itself, call far
    "setup code": ("    xor eax, eax\n    mov ax, cs\n    shl eax, 4\n    add dword ptr [{G}], eax\n"
                   "    mov eax, [{G}]\n    mov word ptr [{J}], {K}\n    push ds\n    mov ax, ds\n"
                   "    add ax, 0x80\n    mov es, ax\n    xor di, di\n    mov cx, 0x100\n"
                   "    xor eax, eax\n    rep stosd\n    pop ds\n    .byte 0xea\n    .word 0\n"
                   "    .word 0x800\n    .byte 0x90, 0x90\n    mov al, 'i'\n" + OUT + "    jmp end\n"
                   "    .long 0x1000\n",
                   {"G": lambda c: len(c) - 4, "J": lambda c: c.index(b"\xea\x00\x00") + 1,
                    "K": lambda c: c.index(b"\x90\x90\xb0i")}, "i"),
}


def _payload(source: str, fills: dict) -> bytes:
    """``source`` (the payload, at offset 0 of its segment) with each
    placeholder replaced by the offset it names: assembled once with
    placeholders of the same width, then again."""
    source = "    mov ax, cs\n    mov ds, ax\n" + source + "end:\n"
    first = assemble(source.format(**{k: 0x1234 for k in fills}))
    code = assemble(source.format(**{k: where(first) for k, where in fills.items()}))
    assert len(code) == len(first)
    return code


def _guest(name: str, payload: bytes, sp: int):
    """Copy ``payload`` from the ROM to 0800:0000, put the stack at
    0800:``sp`` and jump there; the payload's end powers off."""
    body = f"""
    push cs
    pop ds
    mov si, 0x1000
    xor di, di
    mov ax, {SEGMENT}
    mov es, ax
    mov cx, {len(payload) + len(_POWEROFF)}
    cld
    rep movsb
    mov ss, ax
    mov sp, {sp}
    .byte 0xea
    .word 0
    .word {SEGMENT}
"""
    pad = 0x1000 - len(assemble(PROLOGUE + body))
    data = bytes(pad) + payload + _POWEROFF
    body += "".join(f"    .byte {b}\n" for b in data)
    return guest(name, body, poweroff=False)


_POWEROFF = assemble('%include "lib/all.s"\n    poweroff\n')      # S5; its HLT loop is relative


@pytest.mark.parametrize("sp", [0xf00, 0x200], ids=["stack after the code", "stack before it"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_code_that_writes_its_own_page_runs_alike_on_both_engines(case, sp):
    source, fills, serial = CASES[case]
    result = both(_guest(case.replace(" ", "_"), _payload(source, fills), sp))
    assert result.exit["reason"] == "poweroff", result.exit
    assert result.serial == serial
