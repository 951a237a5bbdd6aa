"""INS and OUTS in the instruction emulator: the port side goes through the
memory's port interface, the memory side as ordinary accesses, element by
element, with REP and DF in both directions (the vector format has no ports,
so these are checked here)."""

from spec.x86.emulate import emulate
from spec.x86.state import Cpu


class PortsAndRam:
    def __init__(self, port_values):
        self.ram = {}
        self.port_values = list(port_values)
        self.log = []

    def read(self, addr, size):
        return int.from_bytes(bytes(self.ram.get(addr + i, 0) for i in range(size)), "little")

    def write(self, addr, size, value):
        for i in range(size):
            self.ram[addr + i] = value >> 8 * i & 0xFF

    def port_read(self, port, size):
        value = self.port_values.pop(0)
        self.log.append(("in", port, size, value))
        return value

    def port_write(self, port, size, value):
        self.log.append(("out", port, size, value))


def _run(cpu, memory, code):
    start = cpu.rip
    while cpu.rip == start:
        emulate(cpu, memory, code)


def test_rep_outsb_forwards():
    memory = PortsAndRam([])
    memory.write(0x2000, 3, 0x434241)
    cpu = Cpu(32, rflags=0x2, rip=0x1000)
    cpu.regs.update(rsi=0x2000, rcx=3, rdx=0x3F8)
    _run(cpu, memory, bytes.fromhex("f36e"))                # rep outsb
    assert memory.log == [("out", 0x3F8, 1, 0x41), ("out", 0x3F8, 1, 0x42),
                          ("out", 0x3F8, 1, 0x43)]
    assert (cpu.regs["rsi"], cpu.regs["rcx"], cpu.rip) == (0x2003, 0, 0x1002)


def test_rep_insw_backwards_across_a_page():
    memory = PortsAndRam([0x1111, 0x2222, 0x3333])
    cpu = Cpu(32, rflags=0x402, rip=0x1000)                  # DF = 1
    cpu.regs.update(rdi=0x3002, rcx=3, rdx=0x1F0)
    _run(cpu, memory, bytes.fromhex("66f36d"))               # rep insw
    assert [v for *_, v in memory.log] == [0x1111, 0x2222, 0x3333]
    assert memory.read(0x3002, 2) == 0x1111 and memory.read(0x3000, 2) == 0x2222
    assert memory.read(0x2FFE, 2) == 0x3333
    assert (cpu.regs["rdi"], cpu.regs["rcx"], cpu.rip) == (0x2FFC, 0, 0x1003)


def test_insb_without_ports_is_not_emulated():
    import pytest

    from spec.x86.state import Unhandleable

    class RamOnly:
        def read(self, addr, size):
            return 0

        def write(self, addr, size, value):
            pass

    cpu = Cpu(32, rip=0x1000)
    with pytest.raises(Unhandleable, match="no ports"):
        emulate(cpu, RamOnly(), bytes.fromhex("6c"))
