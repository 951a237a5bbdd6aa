"""The memory accesses an instruction makes, rebuilt from Unicorn's callbacks.

Room: turning what Unicorn's ``mmio_map`` callbacks report into the accesses
the hardware makes, for impl's MMIO path (:mod:`impl.mmio`) and its vector
runner (:mod:`impl.vectors`). Imports nothing of hvmspec.

Unicorn reports an 8-byte access as two 4-byte halves, a misaligned read as
the aligned reads around it and a misaligned write as single bytes. The
hardware makes one access per memory operand of the operand's size, split at
4 KiB page boundaries (and, for an ioreq, into pieces of at most 8 bytes).
:class:`Pieces` is given the operands (address, size, whether it is read) from the decoded
instruction, cuts them that way, and serves the callbacks: the first read
touching a piece fetches the whole piece once, after any earlier operand
that is read (operands are read in their order, as Xen's emulator does); writes to a piece are
collected and delivered once it is complete. Bytes outside every piece go to
a fallback (the memory behind the page, or nothing).
"""

from __future__ import annotations

from typing import Callable

PAGE = 4096


class Pieces:
    """The device pieces of one instruction's memory operands."""

    def __init__(self, operands: list[tuple], is_device: Callable[[int, int], bool],
                 read: Callable[[int, int], int], write: Callable[[int, int, int], None],
                 fallback_read: Callable[[int], int] = lambda a: 0,
                 fallback_write: Callable[[int, int], None] = lambda a, b: None) -> None:
        self.read, self.write = read, write
        self.fallback_read, self.fallback_write = fallback_read, fallback_write
        # [addr, size, value read or None, {offset: byte}, operand is read]
        self.pieces: list[list] = []
        for operand in operands:
            addr, size = operand[0], operand[1]
            reads = operand[2] if len(operand) > 2 else True
            while size:
                n = min(size, 8, PAGE - addr % PAGE)
                if is_device(addr, n):
                    self.pieces.append([addr, n, None, {}, reads])
                addr, size = addr + n, size - n

    def pages(self) -> list[int]:
        """The pages the device pieces lie in."""
        return sorted({p[0] - p[0] % PAGE for p in self.pieces})

    def _piece(self, addr: int) -> list | None:
        return next((p for p in self.pieces if p[0] <= addr < p[0] + p[1]), None)

    def on_read(self, uc, offset: int, size: int, page: int) -> int:
        value = 0
        for i in range(size):
            a = page + offset + i
            p = self._piece(a)
            if p is None:
                byte = self.fallback_read(a)
            else:
                if p[2] is None:
                    # the operands are read in their order (as Xen's emulator
                    # reads them), whatever order Unicorn asks in
                    for earlier in self.pieces[:self.pieces.index(p)]:
                        if earlier[4] and earlier[2] is None:
                            earlier[2] = self.read(earlier[0], earlier[1])
                    p[2] = self.read(p[0], p[1])
                byte = p[2] >> 8 * (a - p[0]) & 0xFF
            value |= byte << 8 * i
        return value

    def on_write(self, uc, offset: int, size: int, value: int, page: int) -> None:
        for i in range(size):
            a = page + offset + i
            byte = value >> 8 * i & 0xFF
            p = self._piece(a)
            if p is None:
                self.fallback_write(a, byte)
                continue
            p[3][a - p[0]] = byte
            if len(p[3]) == p[1]:
                datum = sum(b << 8 * k for k, b in p[3].items())
                p[3] = {}
                self.write(p[0], p[1], datum)


def bit_string_operand(addr: int, size: int, offset: int) -> int:
    """Where BT/BTS/BTR/BTC with a register bit offset really access memory:
    the offset is signed (of the operand size) and selects the operand
    ``offset >> log2(8 * size)`` operands away (SDM vol. 2, "BT")."""
    bits = 8 * size
    signed = offset - (1 << bits) if offset >> (bits - 1) & 1 else offset
    return addr + (signed >> (bits.bit_length() - 1)) * size
