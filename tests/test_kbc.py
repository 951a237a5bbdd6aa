"""The 8042 keyboard controller with its PS/2 keyboard and mouse, and port
0x92: spec.devices.kbc and impl.kbc against each other and against QEMU
(qtest), and the reset it pulses ending the domain with reason reboot on
both engines."""

import pytest
from hypothesis import given, settings, strategies as st

from impl import kbc as impl_kbc
from spec.devices import kbc as spec_kbc
from tests import qtest
from tests.conftest import both, guest, run


class Device:
    """One engine's 8042 and port 0x92, logging as :func:`tests.qtest.run` does."""

    def __init__(self, engine: str) -> None:
        self.irqs: list[int] = []         # IRQ1's levels
        self.log: list[str] = []
        self.resets = 0

        def line(n):
            def drive(level):
                if n == 1:
                    self.irqs.append(level)
                self.log.append(f"irq {n} = {level}")
            return drive

        if engine == "spec":
            dev = self.dev = spec_kbc.Kbc8042(line(1), self._reset, line(12))
            port92 = spec_kbc.Port92(dev.a20, self._reset)
            self.read, self.write = dev.io_read, dev.io_write
            self.read92, self.write92 = port92.io_read, port92.io_write
            self.a20 = lambda: dev.a20.enabled
        else:
            dev = self.dev = impl_kbc.Kbc(line(1), self._reset, line(12))
            port92 = impl_kbc.Port92(dev.a20, self._reset)
            self.read, self.write = dev.read, dev.write
            self.read92, self.write92 = port92.read, port92.write
            self.a20 = lambda: dev.a20.on
        self.send_keys, self.send_mouse = dev.send_keys, dev.send_mouse

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

    def run(self, script: list[tuple]) -> list[str]:
        """``script`` as :func:`tests.qtest.run` takes it; its log."""
        self.log = []
        for step in script:
            port = step[1]
            if step[0] == "out":
                (self.write92(0, 1, step[2]) if port == 0x92
                 else self.write(port - 0x60, 1, step[2]))
            else:
                value = self.read92(0, 1) if port == 0x92 else self.read(port - 0x60, 1)
                self.log.append(f"in {port:#x} = {value:#x}")
        return self.log


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


VALUES = [0x00, 0x01, 0x02, 0x03, 0x07, 0x1C, 0x20, 0x43, 0x50, 0x55, 0x60, 0x64, 0x80, 0xA7,
          0xA8, 0xA9, 0xAA, 0xAB, 0xAD, 0xAE, 0xC0, 0xC8, 0xCE, 0xD0, 0xD1, 0xD2, 0xD3, 0xD4,
          0xDD, 0xDF, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xEB, 0xEC, 0xED, 0xEE, 0xF0, 0xF2, 0xF3,
          0xF4, 0xF5, 0xF6, 0xFA, 0xFC, 0xFE, 0xFF]


@settings(max_examples=400, derandomize=True, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0, 4, 0x92, "keys", "mouse"]), st.booleans(),
                          st.sampled_from(VALUES)), max_size=40))
def test_spec_and_impl_agree(steps):
    a, b = Device("spec"), Device("impl")
    for port, is_read, value in steps:
        if port == "keys":
            a.send_keys(bytes([value, 0xF0, value]))
            b.send_keys(bytes([value, 0xF0, value]))
        elif port == "mouse":
            a.send_mouse(value * 3 - 300, 100 - value, 1 - value % 3, value & 7)
            b.send_mouse(value * 3 - 300, 100 - value, 1 - value % 3, value & 7)
        elif port == 0x92:
            assert (a.read92(0, 1), a.a20()) == (b.read92(0, 1), b.a20())
            if not is_read:
                a.write92(0, 1, value)
                b.write92(0, 1, value)
        elif is_read:
            assert a.read(port, 1) == b.read(port, 1)
        else:
            a.write(port, 1, value)
            b.write(port, 1, value)
        assert (a.log, a.resets, a.a20()) == (b.log, b.resets, b.a20())


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


# --- the PS/2 devices, byte for byte: both engines and QEMU --------------------------

def kbd(*values):
    """Bytes written to the keyboard (0x60), each answer read out with the
    status before it (the tests read as many bytes as QEMU answers)."""
    return [("out", 0x60, v) for v in values]


def cmd(*values):
    return [("out", 0x64, v) for v in values]


def aux(*values):
    """Bytes for the mouse: each after controller command 0xD4."""
    return [step for v in values for step in (("out", 0x64, 0xD4), ("out", 0x60, v))]


def reads(n):
    """``n`` times: the status, then the data port."""
    return [step for _ in range(n) for step in (("in", 0x64), ("in", 0x60))]


SCRIPTS = {
    # reset: ACK then BAT; a read with the buffer empty repeats the last byte
    "kbd reset": kbd(0xFF) + reads(3),
    "kbd leds and echo": kbd(0xED) + reads(1) + kbd(0x07) + reads(1) + kbd(0xEE) + reads(1),
    "kbd scan-code set": (kbd(0xF0) + reads(1) + kbd(0x00) + reads(2) + kbd(0xF0, 0x01)
                          + reads(1) + kbd(0xF0, 0x00) + reads(2) + kbd(0xF0, 0x07) + reads(1)
                          + kbd(0xF0, 0x02) + reads(1)),
    "kbd identify": kbd(0xF2) + reads(3),
    # with translation on (command byte bit 6) the keyboard says 0x41
    "kbd identify translated": (cmd(0x60) + [("out", 0x60, 0x43)] + kbd(0xF2) + reads(3)
                                + kbd(0xF0, 0x00) + reads(2) + cmd(0x20) + reads(1)),
    "kbd typematic, enable, disable, defaults": (kbd(0xF3) + reads(1) + kbd(0x20) + reads(1)
                                                 + kbd(0xF4) + reads(1) + kbd(0xF5) + reads(1)
                                                 + kbd(0xF6) + reads(1)),
    # resend and unknown commands: 0xFE; 0x00 and 0xFA: ACK
    "kbd resend and unknown": kbd(0xFE) + reads(1) + kbd(0x55) + reads(1) + kbd(0x00)
                              + reads(1) + kbd(0xFA) + reads(1) + kbd(0xFC, 0x01) + reads(2),
    # an unread reply is dropped when the next byte goes to the keyboard
    "kbd unread reply dropped": kbd(0xF2, 0xEE) + reads(2),
    "mouse reset and identify": aux(0xFF) + reads(3) + aux(0xF2) + reads(2),
    "mouse settings and status": (aux(0xF3) + reads(1) + aux(40) + reads(1) + aux(0xE8)
                                  + reads(1) + aux(0x03) + reads(1) + aux(0xE7) + reads(1)
                                  + aux(0xF4) + reads(1) + aux(0xF0) + reads(1)
                                  + aux(0xE9) + reads(4) + aux(0xE6, 0xEA, 0xF5) + reads(3)
                                  + aux(0xE9) + reads(4) + aux(0xF6) + reads(1)
                                  + aux(0xE9) + reads(4)),
    "mouse intellimouse": aux(0xF3, 200, 0xF3, 100, 0xF3, 80, 0xF2) + reads(8)
                          + aux(0xF3, 200, 0xF3, 200, 0xF3, 80, 0xF2) + reads(8),
    "mouse read data": aux(0xEB) + reads(4),
    # wrap mode echoes; 0xFF still resets, and wrap mode stays on after it
    "mouse wrap": (aux(0xEE, 0x12, 0x34, 0xEC) + reads(4) + aux(0x00) + reads(1)
                   + aux(0xEE) + reads(1) + aux(0xFF) + reads(3) + aux(0x21) + reads(1)),
    "controller commands": (cmd(0x20) + reads(1) + cmd(0xA9) + reads(1) + cmd(0xAA)
                            + reads(1) + cmd(0xAB) + reads(1) + cmd(0xC0) + reads(1)
                            + cmd(0xD0) + reads(1) + cmd(0xA7, 0x20) + reads(1)
                            + cmd(0xA8, 0xAD, 0x20) + reads(1) + cmd(0xAE, 0x20) + reads(1)),
    "write output buffer": (cmd(0xD2) + [("out", 0x60, 0x5A)] + reads(1) + cmd(0xD3)
                            + [("out", 0x60, 0x5B)] + reads(1)),
    # interrupts off (command byte 0x00): no IRQ1/IRQ12, the buffer still fills
    "no interrupts": (cmd(0x60) + [("out", 0x60, 0x00)] + kbd(0xFF) + reads(2) + aux(0xFF)
                      + reads(3) + cmd(0x60) + [("out", 0x60, 0x03)]),
    # a disabled interface holds its device's bytes back; writing to the
    # device enables it again
    "disabled interfaces": (kbd(0xF2) + cmd(0xAD) + reads(1) + cmd(0xAE) + reads(3)
                            + cmd(0xA7) + aux(0xF2) + reads(2) + cmd(0x20) + reads(1)),
    # priorities: a controller reply first, the mouse after a keyboard byte
    "priorities": (kbd(0xFF) + cmd(0xD3) + [("out", 0x60, 0x77)] + reads(3)
                   + aux(0xFF) + kbd(0xEE) + reads(4) + reads(1)
                   + kbd(0xFF) + aux(0xF2) + reads(4)),
    "a20 gate": (cmd(0xD0) + reads(1) + cmd(0xDD, 0xD0) + reads(1) + cmd(0xDF, 0xD0) + reads(1)
                 + cmd(0xD1) + [("out", 0x60, 0xCD)] + cmd(0xD0) + reads(1)
                 + [("in", 0x92), ("out", 0x92, 0x02), ("in", 0x92), ("out", 0x92, 0x00),
                    ("in", 0x92)]),
}


def _as_qemu(log: list[str]) -> list[str]:
    """Status bit 3 (A2) as QEMU has it: always 1 (docs/devices.rst)."""
    return [f"in 0x64 = {int(line.split()[-1], 16) | 0x08:#x}" if line.startswith("in 0x64")
            else line for line in log]


@pytest.mark.parametrize("name", SCRIPTS)
def test_both_engines_answer_alike(name):
    assert Device("spec").run(SCRIPTS[name]) == Device("impl").run(SCRIPTS[name])


@pytest.mark.parametrize("name", SCRIPTS)
def test_qemu_answers_the_same_bytes_and_interrupts(name):
    ours = Device("spec").run(SCRIPTS[name])
    assert _as_qemu(ours) == qtest.run(SCRIPTS[name])


def test_keyboard_and_mouse_replies():
    dev = Device("spec")
    replies = lambda script: [line for line in dev.run(script) if line.startswith("in 0x60")]
    assert replies(kbd(0xFF) + reads(2)) == ["in 0x60 = 0xfa", "in 0x60 = 0xaa"]
    assert replies(kbd(0xF2) + reads(3)) == ["in 0x60 = 0xfa", "in 0x60 = 0xab",
                                             "in 0x60 = 0x83"]
    assert replies(aux(0xFF) + reads(3)) == ["in 0x60 = 0xfa", "in 0x60 = 0xaa",
                                             "in 0x60 = 0x0"]
    # the last write was data: A2 clear; AUX OBF set
    assert dev.run(aux(0xF2) + [("in", 0x64)])[-1] == "in 0x64 = 0x31"
    assert dev.log[:1] == ["irq 12 = 1"]


# --- the key queue ----------------------------------------------------------------

@pytest.mark.parametrize("engine", ["spec", "impl"])
def test_key_queue_translates_when_the_command_byte_says(engine):
    dev = Device(engine)
    dev.send_keys(bytes([0x1C, 0xF0, 0x1C]))          # 'a' pressed and released, set 2
    assert [dev.data() for _ in range(3)] == [0x1C, 0xF0, 0x1C]
    dev.command(0x60)
    dev.data(0x43)                                    # translate
    dev.send_keys(bytes([0x1C, 0xF0, 0x1C, 0xE0, 0x75, 0xE0, 0xF0, 0x75, 0x83]))
    assert [dev.data() for _ in range(7)] == [0x1E, 0x9E, 0xE0, 0x48, 0xE0, 0xC8, 0x41]
    assert dev.status() & 1 == 0


@pytest.mark.parametrize("engine", ["spec", "impl"])
def test_key_queue_holds_16_and_waits_behind_replies(engine):
    dev = Device(engine)
    dev.send_keys(bytes(range(1, 21)))
    assert [dev.data() for _ in range(16)] == list(range(1, 17))
    assert dev.status() & 1 == 0                      # 17 to 20 were dropped
    dev.send_keys(bytes([0x10, 0x11]))
    # the echo goes ahead of the codes, even of the one the buffer already
    # signals: the 8042 takes the byte from the keyboard when 0x60 is read
    dev.data(0xEE)
    assert [dev.data() for _ in range(3)] == [0xEE, 0x10, 0x11]


@pytest.mark.parametrize("engine", ["spec", "impl"])
def test_no_keys_while_scanning_is_off(engine):
    dev = Device(engine)
    dev.data(0xF5)
    assert dev.data() == 0xFA
    dev.send_keys(b"\x1c")
    assert dev.status() & 1 == 0
    dev.data(0xF4)
    assert dev.data() == 0xFA
    dev.send_keys(b"\x1c")
    assert dev.data() == 0x1C


# --- port 0x92 and the A20 gate ---------------------------------------------------

@pytest.mark.parametrize("engine", ["spec", "impl"])
def test_a20_gate_follows_the_last_writer(engine):
    dev = Device(engine)
    assert dev.a20() and dev.read92(0, 1) == 0
    dev.write92(0, 1, 0x00)
    assert not dev.a20()
    dev.command(0xDF)
    assert dev.a20()
    dev.command(0xD1)
    dev.data(0xCD)
    assert not dev.a20() and dev.resets == 0
    dev.write92(0, 1, 0x02)
    assert dev.a20() and dev.read92(0, 1) == 0x02
    dev.write92(0, 1, 0x03)                           # bit 0 rises: fast reset
    assert dev.resets == 1
    dev.write92(0, 1, 0x03)                           # no edge: no reset
    assert dev.resets == 1


# --- a guest: the interrupts reach it on both engines ---------------------------------

PS2_GUEST = """
%include "lib/all.s"
    mov word ptr es:[0x21 * 4], kbd_isr     ; IRQ1: vector 0x21
    mov word ptr es:[0x21 * 4 + 2], cs
    mov word ptr es:[0x2c * 4], aux_isr     ; IRQ12: vector 0x2c
    mov word ptr es:[0x2c * 4 + 2], cs
    mov byte ptr es:[0x500], 0              ; bytes taken by the handlers
    pic_init master_mask=0xf9, slave_mask=0xef   ; IRQ1, the cascade, IRQ12
    mov al, 0xff                            ; keyboard reset: FA AA
    out 0x60, al
    mov bl, 2
    call wait
    mov al, 0xd4                            ; mouse reset: FA AA 00
    out 0x64, al
    mov al, 0xff
    out 0x60, al
    mov bl, 5
    call wait
    mov al, 0xd4                            ; mouse identify: FA 00
    out 0x64, al
    mov al, 0xf2
    out 0x60, al
    mov bl, 7
    call wait
    mov al, 0xee                            ; keyboard echo: EE
    out 0x60, al
    mov bl, 8
    call wait
    jmp done
wait:
    cli
    cmp es:[0x500], bl
    jae waited
    sti
    hlt
    jmp wait
waited:
    ret
kbd_isr:
    push ax
    mov al, 'k'
    jmp take
aux_isr:
    push ax
    mov al, 'm'
take:
    push dx
    mov dx, 0x3f8
    out dx, al
    in al, 0x60
    out dx, al
    inc byte ptr es:[0x500]
    mov al, 0x20
    out 0xa0, al
    out 0x20, al
    pop dx
    pop ax
    iret
done:
"""


def test_irq1_and_irq12_reach_the_guest_on_both_engines():
    result = both(guest("ps2", PS2_GUEST))
    assert result.serial == "k\xfak\xaam\xfam\xaam\x00m\xfam\x00k\xee"
    assert result.exit["reason"] == "poweroff"
    levels = [(e.irq, e.level) for e in result.trace if e.kind == "irq" and e.irq in (1, 12)]
    assert levels[:4] == [(1, 1), (1, 0), (1, 1), (1, 0)]
    assert (12, 1) in levels


@pytest.mark.parametrize("engine", ["spec", "impl"])
def test_mouse_movement_in_stream_and_remote_mode(engine):
    dev = Device(engine)
    dev.send_mouse(5, 5)                              # reporting off: nothing
    assert dev.status() & 1 == 0
    dev.command(0xD4)
    dev.data(0xF4)                                    # enable
    assert dev.data() == 0xFA
    dev.send_mouse(200, -3, buttons=1)                # two packets: 127 then 73
    assert [dev.data() for _ in range(6)] == [0x29, 127, 0xFD, 0x09, 73, 0x00]
    assert dev.status() & 1 == 0
    dev.command(0xD4)
    dev.data(0xF0)                                    # remote mode: movement waits
    assert dev.data() == 0xFA
    dev.send_mouse(-4, 2)
    assert dev.status() & 1 == 0
    dev.command(0xD4)
    dev.data(0xEB)                                    # read data
    assert [dev.data() for _ in range(4)] == [0xFA, 0x18, 0xFC, 0x02]


A20_GUEST = """
    xor al, al                              ; port 0x92: A20 off
    out 0x92, al
    mov al, 0xd1                            ; and through the 8042's output port
    out 0x64, al
    mov al, 0xcd
    out 0x60, al
    mov byte ptr es:[0], 0x11
    mov ax, 0xffff
    mov fs, ax
    mov byte ptr fs:[0x10], 0x5a            ; 0x100000: 0 were A20 masked
    mov dx, 0x3f8
    mov al, es:[0]
    out dx, al
    mov al, fs:[0x10]
    out dx, al
    mov al, 0xd0                            ; the output port reads back A20 off
    out 0x64, al
    in al, 0x60
    out dx, al
    in al, 0x92
    out dx, al
"""


def test_a20_off_does_not_wrap_as_in_a_xen_hvm_domain():
    """The gate is recorded, not applied (spec.devices.kbc): FFFF:0010 is
    0x100000, not 0, whatever the guest set."""
    result = both(guest("a20", A20_GUEST))
    assert result.serial == "\x11\x5a\xcd\x00"


@pytest.mark.parametrize("name, source", [("ps2", PS2_GUEST), ("a20", A20_GUEST)])
def test_the_guests_print_the_same_on_qemu(name, source, tmp_path):
    """End to end on QEMU's PC: the same bytes, through IRQ1 and IRQ12 and
    both 8259s, in the same order; and QEMU's A20 wrap (TCG masks bit 20:
    FFFF:0010 is 0, the byte at 0 is then 0x5a), the one difference."""
    from tests.test_peer_qemu import POWEROFF_STATUS, qemu_serial
    image = guest(name, source)
    proc, theirs = qemu_serial(image, tmp_path)
    assert proc.returncode == POWEROFF_STATUS, proc.stderr
    ours = run("impl", image).serial
    if name == "a20":
        assert (ours, theirs) == ("\x11\x5a\xcd\x00", "\x5a\x5a\xcd\x00")
    else:
        assert theirs == ours
