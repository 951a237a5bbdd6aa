"""Generated guests: programs composed from building blocks, run on both engines.

Room: the tool's guest generator and campaign. A guest here is a list of
:class:`Block` values; :func:`source` turns it into a flat 32-bit
protected-mode guest (the ``demo`` guest's set-up: a GDT, an IDT with
IRQ0's gate at vector 0x20 whose handler counts ticks, the PIC initialised
with every line masked), the blocks in order, and an epilogue that sends
the tick count to COM1 and powers off through ACPI. :func:`blocks` is the
hypothesis strategy; :func:`campaign` runs many guests on the reference
model and on impl and compares their traces; on a divergence hypothesis
shrinks the guest to a minimal one. Imports :mod:`spec.loader`,
:mod:`hvmspec.conform`, the engines, and hypothesis (a dev dependency).

The blocks (every one a thing a real guest does, and each a different path
through the VMM, qemu-dm and the interrupt logic):

=============  ==================================================================
kind           what the guest does
=============  ==================================================================
``out``        ``out dx, al`` to a port: COM1's THR or SCR, the CMOS index,
               port 0x80 (passed through), an unclaimed port
``in``         ``in al, dx`` from a port: COM1's LSR, IIR or MSR, CMOS data,
               port 0x61, the PCI data port, an unclaimed port
``outs``       ``rep outsb`` of 1-40 bytes of a ROM buffer to COM1, DF clear
               or set (an ioreq with ``data_is_ptr``, counts, backwards)
``ins``        ``rep insb`` of 1-40 bytes from a port into RAM, DF clear or set
``mmio``       a read-modify-write (add, sub, and, or, xor, mov, inc, not,
               neg, xchg) of a byte, word or dword of the test device
``vga``        a store of a character and attribute into the text screen
``if``         ``sti``, a few ``nop``, ``cli``: an interrupt window
``pit``        PIT counter 0 in mode 2 or 3 with a count, and IRQ0 unmasked
               (Xen 3.0.4's PIT ticks in mode 2 only, spec/devices/pit.py)
``mask``       the master PIC's mask register written
``hlt``        ``sti; hlt; cli``: wait for an interrupt (a guest with no timer
               armed hangs here, on both engines alike)
``spin``       a CPU-bound loop of some hundreds of instructions
=============  ==================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

from spec.loader import GuestImage, rom_from_source

#: a generated guest stops after this many instructions at the latest
MAX_INSTRUCTIONS = 3_000_000

OUT_PORTS = (0x3F8, 0x3FF, 0x70, 0x80, 0x1234)
IN_PORTS = (0x3FD, 0x3FA, 0x3FE, 0x71, 0x61, 0xCFC, 0x1234)
MMIO_OPS = ("add", "sub", "and", "or", "xor", "mov", "inc", "not", "neg", "xchg")
WIDTHS = {1: ("byte", "al"), 2: ("word", "ax"), 4: ("dword", "eax")}


@dataclass(frozen=True)
class Block:
    kind: str
    a: int = 0
    b: int = 0
    c: int = 0


PROLOGUE = """\
ROM = 0xf0000
start:
    cli
    lgdt cs:[gdtr]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    .byte 0x66, 0xea
    .long ROM + pm32
    .word 0x08
.code32
pm32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, 0x7000
    mov dword ptr [0x8000], 0
    cld
    mov edi, 0x9000
    xor eax, eax
    mov ecx, 96
    rep stosd
    mov eax, irq0
    add eax, ROM
    mov ebx, eax
    and eax, 0xffff
    or eax, 0x00080000
    mov [0x9100], eax
    and ebx, 0xffff0000
    or ebx, 0x8e00
    mov [0x9104], ebx
    mov ebx, idtr
    lidt [ebx + ROM]
    mov al, 0x11
    out 0x20, al
    mov al, 0x20
    out 0x21, al
    mov al, 0x04
    out 0x21, al
    mov al, 0x01
    out 0x21, al
    mov al, 0xff
    out 0x21, al
    out 0xa1, al
"""

EPILOGUE = """\
    cli
    mov dx, 0x3f8
    mov al, [0x8000]
    out dx, al
    mov dx, 0x1f44
    mov ax, 0x3c00
    out dx, ax
halt:
    hlt
    jmp halt
irq0:
    push eax
    inc dword ptr [0x8000]
    mov al, 0x20
    out 0x20, al
    pop eax
    iretd
gdt:
    .quad 0
    .quad 0x00cf9b000000ffff
    .quad 0x00cf93000000ffff
gdtr:
    .word 23
    .long ROM + gdt
idtr:
    .word 0x17f
    .long 0x9000
buffer:
    .ascii "generated guest: bytes for rep outsb 0123456789"
"""


def _block(block: Block, n: int) -> list[str]:
    k, a, b, c = block.kind, block.a, block.b, block.c
    if k == "out":
        return [f"    mov dx, {OUT_PORTS[a % len(OUT_PORTS)]:#x}", f"    mov al, {b & 0xFF:#x}",
                "    out dx, al"]
    if k == "in":
        return [f"    mov dx, {IN_PORTS[a % len(IN_PORTS)]:#x}", "    in al, dx"]
    if k == "outs":
        count, df = 1 + a % 40, b & 1
        start = (count - 1) if df else 0
        return ["    mov esi, buffer", f"    add esi, {0xF0000 + start:#x}",
                f"    mov ecx, {count}", "    mov dx, 0x3f8", "    std" if df else "    cld",
                "    rep outsb", "    cld"]
    if k == "ins":
        count, df = 1 + a % 40, b & 1
        port = IN_PORTS[c % len(IN_PORTS)]
        return [f"    mov edi, {0x20000 + 64 * (c % 8) + (count - 1 if df else 0):#x}",
                f"    mov ecx, {count}", f"    mov dx, {port:#x}",
                "    std" if df else "    cld", "    rep insb", "    cld"]
    if k == "mmio":
        op = MMIO_OPS[a % len(MMIO_OPS)]
        width = (1, 2, 4)[b % 3]
        size, reg = WIDTHS[width]
        mem = f"{size} ptr [ebp + {(c % 16) * 4}]"
        value = (c * 0x9E3779B1) & ((1 << 8 * width) - 1)
        lines = ["    mov ebp, 0xfeb00000"]
        if op in ("inc", "not", "neg"):
            lines.append(f"    {op} {mem}")
        elif op == "xchg":
            lines += [f"    mov {reg}, {value:#x}", f"    xchg {mem}, {reg}"]
        else:
            lines.append(f"    {op} {mem}, {value:#x}")
        return lines
    if k == "vga":
        return [f"    mov word ptr [{0xB8000 + 2 * (a % 2000):#x}], {b & 0xFFFF:#x}"]
    if k == "if":
        return ["    sti"] + ["    nop"] * (1 + a % 4) + ["    cli"]
    if k == "pit":
        mode = (0x34, 0x36)[a & 1]
        count = 200 + b % 4000
        return [f"    mov al, {mode:#x}", "    out 0x43, al", f"    mov al, {count & 0xFF:#x}",
                "    out 0x40, al", f"    mov al, {count >> 8:#x}", "    out 0x40, al",
                "    mov al, 0xfe", "    out 0x21, al"]
    if k == "mask":
        return [f"    mov al, {a & 0xFF:#x}", "    out 0x21, al"]
    if k == "hlt":
        return ["    sti", "    hlt", "    cli"]
    if k == "spin":
        return [f"    mov ecx, {10 + a % 500}", f"spin{n}:", "    dec ecx", f"    jnz spin{n}"]
    raise ValueError(f"unknown block kind {k!r}")


KINDS = ("out", "in", "outs", "ins", "mmio", "vga", "if", "pit", "mask", "hlt", "spin")


def source(blocks: list[Block]) -> str:
    """The assembly source of a generated guest."""
    body = [line for n, block in enumerate(blocks) for line in _block(block, n)]
    return PROLOGUE + "\n".join(body) + "\n" + EPILOGUE


def image(blocks: list[Block], name: str = "generated") -> GuestImage:
    text = source(blocks)
    return GuestImage(name, rom_from_source(text, name), text)


def blocks():
    """The hypothesis strategy of a guest's blocks."""
    from hypothesis import strategies as st
    word = st.integers(0, 1 << 16)
    block = st.builds(Block, st.sampled_from(KINDS), word, word, word)
    return st.lists(block, min_size=1, max_size=14)


def compare_engines(guest: list[Block]):
    """Both engines on one generated guest: the conformance result."""
    from hvmspec.conform import Case, compare_streams
    return compare_streams(Case(image(guest), max_instructions=MAX_INSTRUCTIONS))


class Divergence(AssertionError):
    """The engines disagree on a (shrunk) generated guest."""

    def __init__(self, guest: list[Block], result) -> None:
        self.guest, self.result = guest, result
        super().__init__(f"engines diverge at event {result.index}:\n"
                         f"  reference: {result.reference}\n  impl:      {result.impl}\n"
                         f"minimal guest ({len(guest)} blocks):\n{source(guest)}")


def campaign(count: int, seed: int, advance=lambda: None, check=compare_engines) -> int:
    """Run ``count`` generated guests on both engines (hypothesis, seeded);
    raise :class:`Divergence` with the shrunk guest on the first
    disagreement. Returns how many guests ran."""
    from hypothesis import HealthCheck, Phase, given, settings
    ran = [0]

    @settings(max_examples=count, deadline=None, database=None, derandomize=False,
              phases=(Phase.generate, Phase.shrink),
              suppress_health_check=list(HealthCheck))
    @given(guest=blocks())
    def one(guest):
        ran[0] += 1
        advance()
        result = check(guest)
        if not result.equal:
            raise Divergence(guest, result)

    from hypothesis import seed as hypothesis_seed
    hypothesis_seed(seed)(one)()
    return ran[0]


def main(argv: list[str] | None = None) -> int:
    """``python -m hvmspec.guestgen``: a campaign of generated guests on
    both engines, with a progress bar. Exit 0 if every guest conformed, 1
    with the minimal diverging guest otherwise."""
    import argparse
    import json
    import sys
    import time
    parser = argparse.ArgumentParser(prog="python -m hvmspec.guestgen",
                                     description=main.__doc__)
    parser.add_argument("--count", type=int, default=2000, help="guests (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true",
                        help="print {guests, seconds, divergence: null | {index, reference, "
                        "impl, source}}")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    outcome: dict = {"divergence": None}
    try:
        if args.json or not sys.stderr.isatty():
            ran = campaign(args.count, args.seed)
        else:
            from rich.progress import Progress
            with Progress(transient=False) as progress:
                task = progress.add_task("generated guests", total=args.count)
                ran = campaign(args.count, args.seed, lambda: progress.advance(task))
    except Divergence as exc:
        r = exc.result
        outcome["divergence"] = {"index": r.index, "reference": r.reference, "impl": r.impl,
                                 "source": source(exc.guest)}
        ran = None
        if not args.json:
            print(exc, file=sys.stderr)
    outcome.update(guests=ran, seconds=round(time.perf_counter() - started, 1))
    if args.json:
        print(json.dumps(outcome))
    elif ran is not None:
        print(f"{ran} generated guests, both engines equal on every one "
              f"({outcome['seconds']} s)")
    return 0 if outcome["divergence"] is None else 1


if __name__ == "__main__":
    raise SystemExit(main())
