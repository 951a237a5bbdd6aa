"""hvmspec's MMIO test device (in the manner of QEMU's ``pci-testdev``).

Room: one page of memory-like registers at
:data:`spec.platform.TESTDEV_BASE`. Imports nothing.

Every byte is a register that reads back what was last written to it (zero
at power-on), at any access size from 1 to 8 bytes, little-endian. Because
qemu-dm traces every access it dispatches, a guest's read-modify-write of
this page shows in the trace as the read the VMM made, the value it wrote
back, and the device's content after it.
"""

from __future__ import annotations


class TestDevice:
    """A page of registers that behave like memory."""

    sizes = (1, 2, 4, 8)

    def __init__(self, length: int) -> None:
        self.name = "testdev"
        self.registers = bytearray(length)

    def io_read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.registers[offset:offset + size], "little")

    def io_write(self, offset: int, size: int, value: int) -> None:
        self.registers[offset:offset + size] = value.to_bytes(size, "little")
