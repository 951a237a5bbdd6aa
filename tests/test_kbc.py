"""The 8042 keyboard controller: spec.devices.kbc and impl.kbc, and the reset
it pulses ending the domain with reason reboot on both engines."""

import pytest
from hypothesis import given, settings, strategies as st

from impl import kbc as impl_kbc
from spec.devices import kbc as spec_kbc
from tests.conftest import run


class Device:
    def __init__(self, engine: str) -> None:
        self.irqs: list[int] = []
        self.resets = 0
        if engine == "spec":
            dev = spec_kbc.Kbc8042(self.irqs.append, self._reset)
            self.read, self.write = dev.io_read, dev.io_write
        else:
            dev = impl_kbc.Kbc(self.irqs.append, self._reset)
            self.read, self.write = dev.read, dev.write

    def _reset(self) -> None:
        self.resets += 1

    def status(self) -> int:
        return self.read(4, 1)

    def command(self, value: int) -> None:
        self.write(4, 1, value)

    def data(self, value: int | None = None) -> int | None:
        if value is None:
            return self.read(0, 1)
        self.write(0, 1, value)
        return None


@pytest.fixture(params=["spec", "impl"])
def kbc(request):
    return Device(request.param)


def test_reset_status(kbc):
    assert kbc.status() == 0x18                   # A2 | keylock not inhibited


def test_self_test_sets_the_system_flag(kbc):
    kbc.command(0xAA)
    assert kbc.status() == 0x1D                   # OBF | SYS | A2 | unlocked
    assert kbc.irqs == [1]                        # command byte bit 0: IRQ1
    assert kbc.data() == 0x55
    assert kbc.status() == 0x1C
    assert kbc.irqs == [1, 0]
    assert kbc.data() == 0x55                     # an empty buffer repeats its byte


def test_interface_tests_and_command_byte(kbc):
    kbc.command(0xAB)
    assert kbc.data() == 0x00
    kbc.command(0xA9)
    assert kbc.data() == 0x00
    kbc.command(0x20)
    assert kbc.data() == 0x03
    kbc.command(0x60)
    kbc.data(0x44)
    assert kbc.status() & 0x08 == 0               # the last byte was data
    kbc.command(0x20)
    assert kbc.data() == 0x44
    kbc.command(0xAE)                             # enable: bit 4 cleared
    kbc.command(0xA7)                             # aux off: bit 5 set
    kbc.command(0x20)
    assert kbc.data() == 0x64
    kbc.command(0xAD)
    kbc.command(0xA8)
    kbc.command(0x20)
    assert kbc.data() == 0x54
    # IRQ1 for the first three replies only: command byte 0x44 has bit 0 clear
    assert kbc.irqs == [1, 0, 1, 0, 1, 0]


def test_output_port_and_a20(kbc):
    kbc.command(0xD0)
    assert kbc.data() == 0xCF
    kbc.command(0xD1)
    kbc.data(0xCD)                                # A20 off, reset line high
    kbc.command(0xD0)
    assert kbc.data() == 0xCD
    assert kbc.resets == 0
    kbc.command(0xD1)
    kbc.data(0xCE)                                # bit 0 = 0: system reset
    assert kbc.resets == 1


@pytest.mark.parametrize("command, resets", [(0xFE, 1), (0xF0, 1), (0xFF, 0), (0xF1, 0)])
def test_pulse_output_port(kbc, command, resets):
    kbc.command(command)
    assert kbc.resets == resets


@settings(max_examples=250, derandomize=True, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0, 4]), st.booleans(),
                          st.sampled_from([0x20, 0x60, 0xA7, 0xA8, 0xA9, 0xAA, 0xAB, 0xAD,
                                           0xAE, 0xD0, 0xD1, 0xFE, 0xFF, 0x00, 0x01, 0xCE,
                                           0x55])), max_size=25))
def test_spec_and_impl_agree(steps):
    a, b = Device("spec"), Device("impl")
    for port, is_read, value in steps:
        if is_read:
            assert a.read(port, 1) == b.read(port, 1)
        else:
            a.write(port, 1, value)
            b.write(port, 1, value)
        assert (a.irqs, a.resets) == (b.irqs, b.resets)


REBOOT_GUEST = """
%include "lib/all.s"
start:
    cli
    mov al, 0x42
    mov dx, COM1
    out dx, al
    {reset}
    halt_forever
"""


@pytest.mark.parametrize("engine", ["reference", "impl"])
@pytest.mark.parametrize("reset", [
    "mov al, 0xfe\n    out 0x64, al",                                      # 8042 pulse
    "mov al, 0xd1\n    out 0x64, al\n    mov al, 0xce\n    out 0x60, al",   # output port
    "mov dx, 0xcf9\n    mov al, 0x06\n    out dx, al",                      # PIIX3 RCR
])
def test_reset_reboots_the_domain(tmp_path, engine, reset):
    from spec import loader
    source = tmp_path / "reboot.s"
    source.write_text(REBOOT_GUEST.format(reset=reset))
    result = run(engine, loader.load(str(source)))
    assert result.serial == "B"
    assert result.exit["reason"] == "reboot"
    assert result.exit["by"] == "qemu-dm"
    shutdowns = [e for e in result.trace if e.kind == "shutdown"]
    assert [(e.reason, e.by) for e in shutdowns] == [("reboot", "qemu-dm")]


def test_reset_traces_conform(tmp_path):
    from spec import loader
    source = tmp_path / "reboot.s"
    source.write_text(REBOOT_GUEST.format(reset="mov al, 0xfe\n    out 0x64, al"))
    image = loader.load(str(source))
    assert run("reference", image).trace == run("impl", image).trace
