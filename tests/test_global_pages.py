"""Global pages: a MOV to CR3 keeps their translations, and impl keeps their blocks.

A MOV to CR3 flushes every translation that is not global; with CR4.PGE
set, one whose page-table entry has the G bit survives it, and only a
flush of global translations drops it: a MOV to CR4 that changes PGE, a
MOV to CR0 that changes PG, an INVLPG of the page (SDM vol. 3A 4.10.4.1).
An operating system maps its kernel global and switches CR3 at every
process switch; with page-table isolation (Debian's Linux on a CPU without
PCID) at every entry from user mode too.

impl keys the blocks it has counted by decode context, which with paging
includes CR3 and a count of TLB flushes (:mod:`impl.blocks`); blocks on
global pages are kept under a second, *global* context, which a MOV to
CR3 does not change. The guests here switch between two address spaces
that share global code and map other code, not global, at the same
linear page; both engines must run what each address space maps, and
impl must not decode the global code again after every switch.
"""

from __future__ import annotations

from hvmspec.guestgen import EPILOGUE, PROLOGUE
from spec.loader import GuestImage, rom_from_source
from tests.conftest import both


def _code(at: int, text: str) -> str:
    """Stores that put machine code ``text`` (hex) at physical ``at``."""
    data = bytes.fromhex(text)
    data += b"\x90" * (-len(data) % 4)
    return "".join(f"    mov dword ptr [{at + i:#x}], "
                   f"{int.from_bytes(data[i:i + 4], 'little'):#x}\n"
                   for i in range(0, len(data), 4))


def _putc(char: str) -> str:
    """mov al, CHAR; mov dx, 0x3f8; out dx, al; ret"""
    return f"b0{ord(char):02x}66baf803eec3"


#: Two address spaces, page directories at 0x20000 (A) and 0x23000 (B).
#: Both map the first 4 MiB through one page table (0x21000), identity,
#: with PTE flags ``LOW`` (0x103: global; 0x003: not). Linear 0x400000 is
#: physical 0x300000 in A (code printing "A") and 0x301000 in B ("B"),
#: never global. Linear 0x3ff000 (the last page of the first 4 MiB) is
#: global code printing "C" at physical 0x302000, remapped to "D" at
#: 0x303000 and flushed by a MOV to CR3 (which keeps it if it is global)
#: and by clearing and setting CR4.PGE again (which does not keep it).
SPACES = """
    mov edi, 0x21000
    mov eax, LOW
    mov ecx, 1024
fill:
    mov [edi], eax
    add eax, 0x1000
    add edi, 4
    dec ecx
    jnz fill
    mov dword ptr [0x21ffc], 0x302103
    mov edi, 0x22000
    xor eax, eax
    mov ecx, 3072
    rep stosd
    mov dword ptr [0x20000], 0x21003
    mov dword ptr [0x20004], 0x22003
    mov dword ptr [0x23000], 0x21003
    mov dword ptr [0x23004], 0x24003
    mov dword ptr [0x22000], 0x300003
    mov dword ptr [0x24000], 0x301003
""" + _code(0x300000, _putc("A")) + _code(0x301000, _putc("B")) \
    + _code(0x302000, _putc("C")) + _code(0x303000, _putc("D")) + """
    mov eax, 0x20000
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
    mov eax, cr4
    or eax, PGE
    mov cr4, eax
    mov esi, ROUNDS
round:
    mov eax, 0x20000
    mov cr3, eax
    mov ebx, 0x400000
    call ebx
    mov ecx, 50
work:
    add eax, ecx
    dec ecx
    jnz work
    add eax, 0
    jmp chain0
chain0:
    add eax, 1
    jmp chain1
chain1:
    add eax, 2
    jmp chain2
chain2:
    add eax, 3
    jmp chain3
chain3:
    add eax, 4
    jmp chain4
chain4:
    add eax, 5
    jmp chain5
chain5:
    add eax, 6
    jmp chain6
chain6:
    add eax, 7
    jmp chain7
chain7:
    add eax, 8
    jmp chain8
chain8:
    add eax, 9
    jmp chain9
chain9:
    add eax, 10
    jmp chain10
chain10:
    add eax, 11
    jmp chain11
chain11:
    mov eax, 0x23000
    mov cr3, eax
    call ebx
    mov ecx, 50
work2:
    add eax, ecx
    dec ecx
    jnz work2
    dec esi
    jnz round
    mov ebx, 0x3ff000
    call ebx
    mov dword ptr [0x21ffc], 0x303103
    mov eax, cr3
    mov cr3, eax
    mov eax, cr4
    and eax, ~0x80
    mov cr4, eax
    or eax, PGE
    mov cr4, eax
    call ebx
"""


def _guest(rounds: int, global_pages: bool) -> GuestImage:
    flags = (f"LOW = {0x103 if global_pages else 0x003:#x}\n"
             f"PGE = {0x80 if global_pages else 0:#x}\nROUNDS = {rounds}\n")
    source = PROLOGUE + flags + SPACES + EPILOGUE
    name = "global" if global_pages else "local"
    return GuestImage(name, rom_from_source(source, name), source)


def _serial(result) -> bytes:
    return bytes(e.byte for e in result.trace if e.kind == "serial")


def test_each_address_space_runs_its_own_code_and_global_code_is_flushed_by_pge():
    """Both engines, global kernel-like code: after each MOV to CR3 the
    page that is not global shows the new address space's code, and the
    global page remapped and flushed by a CR4.PGE toggle shows its new code."""
    result = both(_guest(3, True))
    assert _serial(result)[:-1] == b"ABABABCD"
    assert result.exit["reason"] == "poweroff"


def test_without_global_pages_the_same_code_runs_the_same():
    result = both(_guest(3, False))
    assert _serial(result)[:-1] == b"ABABABCD"


def _clock_counts(image: GuestImage) -> tuple[int, int, bytes]:
    """impl on a bare vcpu: how many blocks the clock sent to Python, how
    many it found again by a page walk of its own, and what the guest wrote."""
    from impl.vcpu import Vcpu
    cpu = Vcpu(16 << 20)
    cpu.write(image.load_address, image.image)
    out = b""
    while True:
        ex = cpu.run(50_000_000)
        if ex.reason == "hlt":
            return cpu.python_calls(), cpu._c.refills, out
        if ex.reason == "io":               # the serial bytes: step over the OUT
            out += bytes([cpu.get("rax") & 0xFF])   # every OUT's AL
            cpu.put("rip", cpu.get("rip") + ex.length)
            cpu.icount += 1
            continue
        raise AssertionError(ex)


def test_impl_finds_its_blocks_again_after_mov_to_cr3():
    """2,000 rounds of two CR3 switches each. Every switch sends the block
    after it to Python (the context is read again), the page that is not
    global and shows other code is decoded again, and the serial byte's
    exit ends the run (whose first block goes to Python): about four calls
    a switch. Every other block is found again without Python: a block on
    a global page at once, any other by the C clock's page walk, which
    finds its page at the same frame (a chain of twelve blocks after the
    first switch of each round, and the loops, tell the two apart)."""
    rounds = 2_000
    calls_global, walks_global, out = _clock_counts(_guest(rounds, True))
    assert b"AB" * rounds + b"CD" in out
    calls_local, walks_local, out = _clock_counts(_guest(rounds, False))
    assert b"AB" * rounds + b"CD" in out
    for calls in (calls_global, calls_local):
        assert calls / (2 * rounds) < 5, calls / (2 * rounds)
    # without global pages, the chain's twelve blocks and more are walked for
    assert walks_local - walks_global > 12 * rounds, (walks_local, walks_global)
