"""How the status flags follow from a result (SDM vol. 1, 3.4.3.1; appendix A).

Room: the flag functions shared by the instruction families. Imports
:mod:`spec.bv`.

For a ``w``-bit operation with operands ``a``, ``b`` and result ``r``:

* **ZF** — ``r`` is zero;  **SF** — the most significant bit of ``r``;
* **PF** — the low byte of ``r`` has an even number of one bits;
* **AF** — a carry or borrow out of bit 3: bit 4 of ``a ^ b ^ r``;
* **CF** — a carry out of (addition) or a borrow into (subtraction) the most
  significant bit; written here with the carry-chain identities
  ``(a & b) | ((a | b) & ~r)`` (addition) and ``(~a & b) | ((~a | b) & r)``
  (subtraction), taken at the most significant bit;
* **OF** — the signed result does not fit: ``(a ^ r) & (b ^ r)`` at the most
  significant bit for addition, ``(a ^ b) & (a ^ r)`` for subtraction.

These identities hold with a carry or borrow in (ADC, SBB); ``proofs/``
checks them against a definition by wide arithmetic.
"""

from __future__ import annotations

from spec import bv


def result_flags(r: bv.Word, width: int) -> dict[str, bv.Bit]:
    """ZF, SF and PF of a result."""
    return {"ZF": bv.is_zero(r, width), "SF": bv.msb(r, width), "PF": bv.parity_even(r)}


def add_flags(a: bv.Word, b: bv.Word, r: bv.Word, width: int) -> dict[str, bv.Bit]:
    """All six arithmetic flags of ``r = a + b (+ carry)``."""
    carries = bv.bor(bv.band(a, b, width), bv.band(bv.bor(a, b, width), bv.bnot(r, width), width),
                     width)
    overflow = bv.band(bv.bxor(a, r, width), bv.bxor(b, r, width), width)
    return {"CF": bv.msb(carries, width), "OF": bv.msb(overflow, width),
            "AF": bv.bit(bv.bxor(bv.bxor(a, b, width), r, width), 4), **result_flags(r, width)}


def sub_flags(a: bv.Word, b: bv.Word, r: bv.Word, width: int) -> dict[str, bv.Bit]:
    """All six arithmetic flags of ``r = a - b (- borrow)``."""
    not_a = bv.bnot(a, width)
    borrows = bv.bor(bv.band(not_a, b, width), bv.band(bv.bor(not_a, b, width), r, width), width)
    overflow = bv.band(bv.bxor(a, b, width), bv.bxor(a, r, width), width)
    return {"CF": bv.msb(borrows, width), "OF": bv.msb(overflow, width),
            "AF": bv.bit(bv.bxor(bv.bxor(a, b, width), r, width), 4), **result_flags(r, width)}


def logic_flags(r: bv.Word, width: int) -> dict[str, bv.Bit]:
    """AND, OR, XOR, TEST: CF and OF cleared, SF ZF PF from the result, AF
    undefined (cleared here, as the processors and QEMU do)."""
    return {"CF": False, "OF": False, "AF": False, **result_flags(r, width)}


#: the condition codes of Jcc/SETcc/CMOVcc (SDM vol. 1, appendix B, table B-1)
CONDITIONS = ("o", "no", "b", "ae", "e", "ne", "be", "a",
              "s", "ns", "p", "np", "l", "ge", "le", "g")


def condition(cc: str, f: dict[str, bv.Bit]) -> bv.Bit:
    """Whether condition ``cc`` holds for the flags ``f`` (CF, ZF, SF, OF and
    PF as truth values)."""
    below_or_equal = bv.or_(f["CF"], f["ZF"])
    less = bv.xor_(f["SF"], f["OF"])
    less_or_equal = bv.or_(f["ZF"], less)
    return {
        "o": f["OF"], "no": bv.not_(f["OF"]),
        "b": f["CF"], "ae": bv.not_(f["CF"]),
        "e": f["ZF"], "ne": bv.not_(f["ZF"]),
        "be": below_or_equal, "a": bv.not_(below_or_equal),
        "s": f["SF"], "ns": bv.not_(f["SF"]),
        "p": f["PF"], "np": bv.not_(f["PF"]),
        "l": less, "ge": bv.not_(less),
        "le": less_or_equal, "g": bv.not_(less_or_equal),
    }[cc]
