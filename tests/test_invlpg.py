"""INVLPG: the code a linear page shows may change; a data page's flush costs nothing.

impl counts instructions per translated block, keyed by a decode context
that, with paging, includes a count of TLB flushes (:mod:`impl.blocks`).
An INVLPG of a page that holds no block the clock has seen cannot change
the bytes of any known block, and keeps the context: Debian's Linux
flushes page by page while it maps and unmaps its data, and with a new
context for each flush impl ran it at a few thousand instructions a
second. An INVLPG of a page of code still starts a new context: the guest
here maps other code at the same linear page, flushes it and calls it
again, and both engines count what runs.
"""

from __future__ import annotations

from hvmspec.guestgen import EPILOGUE, PROLOGUE
from spec.loader import GuestImage, rom_from_source
from tests.conftest import both
from tests.test_page_faults import PAGING

#: linear 0x400000 shows physical 0x300000 ("A": mov al, 'A'; out; ret),
#: then physical 0x301000 ("B", two more instructions), with flushes of a
#: data page (linear 0x500000) in between
REMAP = """
    mov dword ptr [0x22000], 0x300003
    mov eax, cr3
    mov cr3, eax
    mov dword ptr [0x400000], 0xf8ba41b0
    mov dword ptr [0x400004], 0xee000003
    mov dword ptr [0x400008], 0x909090c3
    mov dword ptr [0x22004], 0x301003
    invlpg [0x401000]
    mov dword ptr [0x401000], 0x909042b0
    mov dword ptr [0x401004], 0x0003f8ba
    mov dword ptr [0x401008], 0x90c3ee00
    mov ebx, 0x400000
    call ebx
    mov ecx, FLUSHES
flush:
    invlpg [0x500000]
    dec ecx
    jnz flush
    mov dword ptr [0x22000], 0x301003
    invlpg [0x400000]
    call ebx
"""


def _guest(flushes: int) -> GuestImage:
    source = PROLOGUE + PAGING + f"FLUSHES = {flushes}\n" + REMAP + EPILOGUE
    return GuestImage("invlpg", rom_from_source(source, "invlpg"), source)


def test_code_remapped_and_flushed_runs_anew_on_both_engines():
    result = both(_guest(100))
    assert bytes(e.byte for e in result.trace if e.kind == "serial") == b"AB\x00"
    assert result.exit["reason"] == "poweroff"


def test_flushing_a_data_page_keeps_the_decode_context():
    """impl alone, on a bare vcpu: 5,000 flushes of a data page leave the
    decode context as it was (each sends the block after it to Python,
    which finds the context unchanged without probing it)."""
    from impl.vcpu import Vcpu
    image = _guest(5_000)
    cpu = Vcpu(16 << 20)
    cpu.write(image.load_address, image.image)
    while True:
        ex = cpu.run(10_000_000)
        if ex.reason == "hlt":
            break
        if ex.reason == "io":               # the serial bytes: step over the OUT
            cpu.put("rip", cpu.get("rip") + ex.length)
            cpu.icount += 1
            continue
        raise AssertionError(ex)
    assert cpu.icount > 15_000
    assert len(cpu._contexts) < 10
