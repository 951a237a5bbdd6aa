"""The keyboard controller (Intel 8042) with its PS/2 keyboard and mouse,
and System Control Port A (0x92), as qemu-dm emulates them.

Room: the controller at ports 0x60 (data) and 0x64 (status and command),
its command byte, its output port (the A20 gate and the system reset), the
PS/2 keyboard on its first port and the PS/2 mouse (the *auxiliary device*)
on its second, their byte queues and the key queue the host feeds, IRQ1 and
IRQ12; and port 0x92. Sources: the IBM PC/AT Technical Reference (keyboard
controller, keyboard commands), the IBM PS/2 Hardware Interface Technical
Reference (auxiliary device commands, System Control Port A), the Intel
8042/UPI-41 data sheet, and QEMU's ``hw/input/pckbd.c``, ``hw/input/ps2.c``
and ``hw/i386/port92.c``. The model follows QEMU 7.2 (Debian's, the peer
the tests run) byte for byte; where Xen 3.0.x's qemu-dm (QEMU 0.8) or the
data sheet differ, the docstrings say so. In Xen 3.x all of this lived in
qemu-dm: each access to 0x60, 0x64 or 0x92 is an ioreq. Imports
:mod:`spec.platform`.

Status register (read at 0x64); reset value 0x18, as QEMU's ``kbd_reset``:

====  =======================================================================
bit   meaning
====  =======================================================================
0     OBF: the output buffer holds a byte for the guest (cleared by reading 0x60)
1     IBF: the input buffer is full; always 0 (the controller takes every
      byte at once)
2     system flag: 0 at power-on, 1 after a successful self-test (0xAA)
3     A2: the last byte written was a command (0x64) rather than data (0x60),
      as the data sheet says (QEMU leaves this bit at 1)
4     keylock: 1 = keyboard not inhibited
5     AUX OBF: the byte in the output buffer is from the mouse (or 0xD3)
6-7   timeout, parity: 0
====  =======================================================================

Command byte (0x20 reads it, 0x60 writes it; reset value 0x03): bit 0 IRQ1
for keyboard bytes, bit 1 IRQ12 for mouse bytes, bit 2 system flag, bit 4
keyboard interface disabled, bit 5 mouse interface disabled, bit 6
translation of the keyboard's codes to set 1.

Controller commands (written to 0x64):

=====  ====================================================================
0x20   read the command byte
0x60   the next byte written to 0x60 is the command byte
0xA7   disable the mouse interface (command byte bit 5 set)
0xA8   enable the mouse interface (bit 5 cleared)
0xA9   mouse interface test: 0x00
0xAA   self-test: 0x55, and the status register's system flag is set
0xAB   keyboard interface test: 0x00
0xAD   disable the keyboard interface (command byte bit 4 set)
0xAE   enable the keyboard interface (bit 4 cleared)
0xC0   read the input port: 0x80 (keyboard not inhibited)
0xD0   read the output port
0xD1   the next byte written to 0x60 is the output port
0xD2   the next byte written to 0x60 comes back in the output buffer, as
       if the keyboard had sent it
0xD3   likewise, as if the mouse had sent it (status bit 5, IRQ12)
0xD4   the next byte written to 0x60 goes to the mouse
0xDD   A20 off (output port bit 1 cleared); 0xDF: A20 on
0xF0+  pulse output port bits 3:0 low for those bits of the command that
       are 0: 0xFE (and any even one) pulses bit 0, the system reset
=====  ====================================================================

Other commands are ignored, as QEMU logs and ignores them. A byte written
to 0x60 with no command pending goes to the keyboard.

The output buffer. The controller's own replies (to 0x20, 0xA9, 0xAA, 0xAB,
0xC0, 0xD0, 0xD2, 0xD3) take one byte of their own; a new one replaces an
unread one. When the output buffer is empty, it takes the next byte from,
in this order of priority: a controller reply for the keyboard side, one
for the mouse side (0xD3), the keyboard's queue, the mouse's queue. A
device's queue is not looked at while its interface is disabled (command
byte bit 4 or 5); a byte written to the keyboard (0x60) or to the mouse
(0xD4) enables its interface again (QEMU's "sending data to the keyboard
reenables PS/2 communication"). Reading 0x60 empties the buffer and takes
the byte from its source; the buffer is then refilled at once if anything
is pending (the choice is made after the source's line was lowered and
before the keyboard's queue raises it again, so a mouse byte waiting
behind a keyboard byte comes next). Reading 0x60 with the buffer empty
returns the last byte again (QEMU: "needed for EMM386").

Interrupts. IRQ1 is high while the buffer holds a byte that is not from
the mouse, command byte bit 0 is set and bit 4 clear; IRQ12 while it holds
a mouse-side byte and bit 1 is set (QEMU's ``kbd_update_irq_lines``). A read
of 0x60 lowers both lines before refilling the buffer, so the next byte
raises its line again: a new edge for the 8259. A line is driven only when
its level changes.

The keyboard (an MF2 keyboard; QEMU's ``ps2_write_keyboard``) answers:

=====  ====================================================================
0xFF   reset: its queue is emptied, then 0xFA (ACK) 0xAA (self-test passed);
       scanning on, scan-code set 2, LEDs off
0xF6   defaults: as reset but only 0xFA, scanning on
0xF5   as 0xF6 but scanning off
0xF4   scanning on: 0xFA
0xF3   typematic rate: 0xFA, and 0xFA for its data byte (the rate is not
       modelled: no key repeats)
0xF2   identify: 0xFA 0xAB then 0x41 when the controller translates,
       0x83 when not
0xF0   scan-code set: 0xFA; data 1-3 selects the set, 0xFA; data 0 asks:
       0xFA and the set number (translated when the controller translates:
       set 2 reads as 0x41); other data: 0xFE
0xEE   echo: 0xEE
0xED   LEDs: 0xFA, and 0xFA for the data byte
0xFC   0xFA, and 0xFA for the data byte (the set-3 make/break setting is
       not kept)
0xFA   0xFA; likewise 0x00
other  0xFE, "resend": the command is not known; 0xFE itself (the host's
       resend request) included, as QEMU answers it
=====  ====================================================================

Replies to a command go ahead of any scan codes already queued, and
replies the guest has not read when it writes the next byte to the
keyboard are dropped (QEMU's command reply queue, ``ps2_cqueue_*``).

The key queue. The host (a VNC server, a test) feeds the keyboard scan codes
in the keyboard's current set (:meth:`Ps2Keyboard.send_keys`; set 2 unless
the guest chose another). While scanning is off they are dropped. With
translation on (command byte bit 6), the keyboard sends each code through
the 8042's table (:data:`spec.platform.KBC_TRANSLATE`): a break prefix 0xF0
is not sent, and the code after it gets bit 7 set. QEMU does this
translation in the keyboard model, not in the controller; so does this one.
The queue holds 16 bytes; a code that does not fit is dropped. The host
moves the mouse with :meth:`Kbc8042.send_mouse`.

The mouse (QEMU's ``ps2_write_mouse``; bytes reach it through 0xD4): every
command answers 0xFA first. 0xFF reset: queue emptied, then 0xFA 0xAA 0x00
(device id), sample rate 100, resolution 2 (4 counts/mm), status 0,
standard mouse; 0xF6 defaults: the same settings, 0xFA; 0xF5/0xF4 disable/enable
reporting; 0xF3 and 0xE8 take a data byte (sample rate, resolution), each
acknowledged; 0xF2 identify: 0xFA and the id (0; 3 after the IntelliMouse
sample-rate sequence 200, 100, 80; 4 after 200, 200, 80); 0xE9 status:
0xFA, status (bit 6 remote, bit 5 enabled, bit 4 scaling 2:1), resolution,
sample rate; 0xE6/0xE7 scaling 1:1/2:1; 0xEA stream mode; 0xF0 remote mode;
0xEB read data: 0xFA and a movement packet; 0xEE wrap mode (every byte but
0xEC and 0xFF comes back) and 0xEC to leave it (a reset in wrap mode does
not leave it, as in QEMU). Other bytes: no answer.
A reply that does not fit in the 16-byte queue is dropped whole. At
power-on its settings are all 0 (QEMU's ``ps2_mouse_reset``).

Output port: reset value 0xCF (QEMU: ``KBD_OUT_RESET | KBD_OUT_A20 |
KBD_OUT_ONES``); bits 4 and 5 follow the status register's OBF and AUX OBF.
Bit 0 = 0 resets the system: qemu-dm asks Xen to shut the domain down with
reason *reboot* (``SHUTDOWN_reboot``; Xen 3.x qemu-dm's
``qemu_system_reset_request`` ends in ``xc_domain_shutdown``), and xend acts
on its ``on_reboot``. Bit 1 drives the A20 gate.

Port 0x92 (:class:`Port92`) keeps the byte last written and reads it back
(0 at power-on); bit 1 drives the A20 gate, and bit 0 going from 0 to 1 resets
the system (QEMU's ``port92_write``). Xen 3.0.x's qemu-dm (QEMU 0.8) read
0x92 as the A20 gate's state in bit 1 and ignored bit 0.

The A20 gate (:class:`A20Gate`) is one line that both the output port and
port 0x92 drive, the last write winning; it is on at power-on (QEMU's CPU
reset). **Address line 20 is not masked** in this model, as it was not in a
Xen 3.x HVM domain: qemu-dm's ``cpu_x86_set_a20`` (Xen 3.x
``tools/ioemu/target-i386-dm/helper2.c``) records the state in the
``a20_mask`` of qemu-dm's stub CPU, which no guest access goes through; the
guest runs on the real CPU under VT-x/SVM with all of memory visible. QEMU's
TCG masks bit 20 of every physical address while the gate is off.
"""

from __future__ import annotations

from typing import Callable

from spec import platform

STATUS_OBF, STATUS_SYS, STATUS_A2, STATUS_UNLOCKED, STATUS_AUX_OBF = 0x01, 0x04, 0x08, 0x10, 0x20
MODE_KBD_INT, MODE_AUX_INT = 0x01, 0x02
MODE_DISABLE_KBD, MODE_DISABLE_AUX, MODE_TRANSLATE = 0x10, 0x20, 0x40
OUT_RESET, OUT_A20, OUT_OBF, OUT_AUX_OBF = 0x01, 0x02, 0x10, 0x20
RESET_STATUS = STATUS_A2 | STATUS_UNLOCKED      # 0x18
RESET_MODE = MODE_KBD_INT | MODE_AUX_INT        # 0x03
RESET_OUTPORT = 0xCF

ACK, RESEND, BAT_OK, KBD_ID = 0xFA, 0xFE, 0xAA, 0xAB
#: how many bytes a device's queue holds (QEMU's ``PS2_QUEUE_SIZE``)
QUEUE_SIZE = 16

# where the byte in the output buffer came from
FROM_CONTROLLER, FROM_KEYBOARD, FROM_MOUSE = "controller", "keyboard", "mouse"


class A20Gate:
    """The A20 line: on at power-on; not applied to guest accesses (above)."""

    def __init__(self) -> None:
        self.enabled = True

    def set(self, level: int) -> None:
        self.enabled = bool(level)


class Ps2Keyboard:
    """The PS/2 keyboard: its command state, its settings and its queue."""

    def __init__(self) -> None:
        self.replies: list[int] = []     # answers to the last command, read first
        self.codes: list[int] = []       # scan codes for the guest, in order
        self.command: int | None = None  # the command waiting for its data byte
        self.scanning = True
        self.scancode_set = 2
        self.leds = 0
        self.translate = False           # set by the controller (command byte bit 6)
        self.break_pending = False       # translating: an 0xF0 was swallowed
        self.last = 0

    def has_data(self) -> bool:
        return bool(self.replies or self.codes)

    def read(self) -> int:
        """The next byte for the controller (replies first)."""
        queue = self.replies if self.replies else self.codes
        if queue:
            self.last = queue.pop(0)
        return self.last

    def _reset(self, scanning: bool) -> None:
        self.scanning = scanning
        self.scancode_set = 2
        self.leds = 0
        self.replies, self.codes = [], []

    def write(self, value: int) -> None:
        """A byte from the controller: a command or a command's data."""
        self.replies = []                # unread replies are dropped
        command, self.command = self.command, None
        if command == 0xF0:
            if value == 0:
                current = self.scancode_set
                if self.translate:
                    current = platform.KBC_TRANSLATE[current]
                self.replies = [ACK, current]
            elif 1 <= value <= 3:
                self.scancode_set = value
                self.replies = [ACK]
            else:
                self.replies = [RESEND]
        elif command == 0xED:
            self.leds = value
            self.replies = [ACK]
        elif command in (0xF3, 0xFC):
            self.replies = [ACK]
        elif value == 0xFF:
            self._reset(scanning=True)
            self.replies = [ACK, BAT_OK]
        elif value in (0xF5, 0xF6):
            self._reset(scanning=value == 0xF6)
            self.replies = [ACK]
        elif value == 0xF4:
            self.scanning = True
            self.replies = [ACK]
        elif value in (0xF0, 0xED, 0xF3, 0xFC):
            self.command = value
            self.replies = [ACK]
        elif value == 0xF2:
            self.replies = [ACK, KBD_ID, 0x41 if self.translate else 0x83]
        elif value == 0xEE:
            self.replies = [0xEE]
        elif value in (0x00, 0xFA):
            self.replies = [ACK]
        else:
            self.replies = [RESEND]

    def _queue(self, byte: int) -> None:
        if len(self.replies) + len(self.codes) < QUEUE_SIZE:
            self.codes.append(byte)

    def put_code(self, code: int) -> None:
        """One byte of a scan code, translated when the controller says so."""
        if not self.translate:
            self._queue(code)
        elif code == 0xF0:
            self.break_pending = True
        else:
            if code < 0x80:
                code = platform.KBC_TRANSLATE[code]
            else:
                code = platform.KBC_TRANSLATE_HIGH.get(code, code)
            if self.break_pending:
                code |= 0x80
                self.break_pending = False
            self._queue(code)

    def send_keys(self, codes: bytes) -> None:
        """The host's key queue: ``codes`` in the current scan-code set."""
        if self.scanning:
            for code in codes:
                self.put_code(code)


class Ps2Mouse:
    """The PS/2 mouse: its settings, its movement and its queue."""

    STATUS_REMOTE, STATUS_ENABLED, STATUS_SCALE21 = 0x40, 0x20, 0x10

    def __init__(self) -> None:
        self.queue: list[int] = []
        self.command: int | None = None
        self.status = 0
        self.resolution = 0
        self.sample_rate = 0
        self.wrap = False
        self.type = 0
        self.detect = 0                  # progress through an IntelliMouse sequence
        self.dx = self.dy = self.dz = 0
        self.buttons = 0
        self.last = 0

    def has_data(self) -> bool:
        return bool(self.queue)

    def read(self) -> int:
        if self.queue:
            self.last = self.queue.pop(0)
        return self.last

    def _reply(self, *data: int) -> None:
        if len(self.queue) + len(data) <= QUEUE_SIZE:
            self.queue.extend(data)

    def _defaults(self) -> None:
        self.sample_rate, self.resolution, self.status = 100, 2, 0

    def _sample_rate(self, value: int) -> None:
        self.sample_rate = value
        if self.detect == 0:
            self.detect = 1 if value == 200 else 0
        elif self.detect == 1:
            self.detect = {100: 2, 200: 3}.get(value, 0)
        else:
            if value == 80:
                self.type = 3 if self.detect == 2 else 4
            self.detect = 0

    def packet(self) -> None:
        """Queue one movement packet (3 bytes; 4 for the wheel types)."""
        if len(self.queue) + (4 if self.type else 3) > QUEUE_SIZE:
            return
        dx, dy = max(-127, min(127, self.dx)), max(-127, min(127, self.dy))
        self.queue += [0x08 | (dx < 0) << 4 | (dy < 0) << 5 | self.buttons & 0x07,
                       dx & 0xFF, dy & 0xFF]
        dz = self.dz
        if self.type == 3:
            dz = max(-127, min(127, dz))
            self.queue.append(dz & 0xFF)
        elif self.type == 4:
            dz = max(-7, min(7, dz))
            self.queue.append(dz & 0x0F | (self.buttons & 0x18) << 1)
        self.dx, self.dy = self.dx - dx, self.dy - dy
        self.dz = self.dz - dz if self.type else 0

    def move(self, dx: int, dy: int, dz: int, buttons: int) -> None:
        """The host moves the mouse (``dy`` up is positive, as the PS/2
        packet has it) and holds ``buttons`` (bit 0 left, 1 right, 2
        middle): ignored while reporting is off; in stream mode the
        movement goes out at once, in packets of at most 127 counts an
        axis, as many as the queue takes (QEMU's ``ps2_mouse_sync``); in
        remote mode it waits for 0xEB."""
        if not self.status & self.STATUS_ENABLED:
            return
        self.dx, self.dy, self.dz, self.buttons = self.dx + dx, self.dy + dy, self.dz + dz, buttons
        if self.status & self.STATUS_REMOTE:
            return
        while len(self.queue) + (4 if self.type else 3) <= QUEUE_SIZE:
            self.packet()
            if not (self.dx or self.dy or self.dz):
                break

    def write(self, value: int) -> None:
        """A byte from the controller (command 0xD4)."""
        command, self.command = self.command, None
        if command == 0xF3:
            self._sample_rate(value)
            self._reply(ACK)
            return
        if command == 0xE8:
            self.resolution = value
            self._reply(ACK)
            return
        if self.wrap:
            if value == 0xEC:
                self.wrap = False
                self._reply(ACK)
                return
            if value != 0xFF:
                self._reply(value)
                return
        if value in (0xE6, 0xE7):
            self.status = (self.status & ~self.STATUS_SCALE21
                           | (self.STATUS_SCALE21 if value == 0xE7 else 0))
            self._reply(ACK)
        elif value in (0xEA, 0xF0):
            self.status = (self.status & ~self.STATUS_REMOTE
                           | (self.STATUS_REMOTE if value == 0xF0 else 0))
            self._reply(ACK)
        elif value in (0xF4, 0xF5):
            self.status = (self.status & ~self.STATUS_ENABLED
                           | (self.STATUS_ENABLED if value == 0xF4 else 0))
            self._reply(ACK)
        elif value == 0xEE:
            self.wrap = True
            self._reply(ACK)
        elif value == 0xF2:
            self._reply(ACK, self.type)
        elif value in (0xE8, 0xF3):
            self.command = value
            self._reply(ACK)
        elif value == 0xE9:
            self._reply(ACK, self.status, self.resolution, self.sample_rate)
        elif value == 0xEB:
            self._reply(ACK)
            self.packet()
        elif value == 0xF6:
            self._defaults()
            self._reply(ACK)
        elif value == 0xFF:
            self._defaults()
            self.type = 0
            self.queue = []
            self._reply(ACK, BAT_OK, self.type)
        # other bytes: no answer (QEMU)


class Kbc8042:
    """The 8042 of one domain, its keyboard and its mouse; ``reset`` asks for
    a system reset."""

    sizes = (1,)

    def __init__(self, set_irq: Callable[[int], None], reset: Callable[[], None],
                 set_irq12: Callable[[int], None] = lambda level: None) -> None:
        self.name = "kbc"
        self.set_irq = set_irq
        self.set_irq12 = set_irq12
        self.reset = reset
        self.a20 = A20Gate()
        self.keyboard = Ps2Keyboard()
        self.mouse = Ps2Mouse()
        self.status = RESET_STATUS
        self.mode = RESET_MODE
        self.outport = RESET_OUTPORT
        self.output = 0                  # the byte last read from 0x60
        self.source: str | None = None   # where the byte in the output buffer comes from
        self.reply: int | None = None    # the controller's own reply, not yet taken
        self.reply_aux = False           # ... given as if from the mouse (0xD3)
        self.pending: int | None = None  # the command waiting for its data byte
        self.irq_levels = [0, 0]         # IRQ1, IRQ12

    # -- the output buffer and the interrupt lines --

    def _next_source(self, last: str | None) -> str | None:
        """What fills the output buffer now: a controller reply, else the
        keyboard, else the mouse; ``last``, the device just read, only when
        nothing else is pending."""
        if self.reply is not None:
            return FROM_CONTROLLER
        ready = [source for source, device, disabled in (
                     (FROM_KEYBOARD, self.keyboard, MODE_DISABLE_KBD),
                     (FROM_MOUSE, self.mouse, MODE_DISABLE_AUX))
                 if device.has_data() and not self.mode & disabled]
        others = [source for source in ready if source != last]
        return (others or ready or [None])[0]

    def _fill(self, last: str | None = None) -> None:
        """With the output buffer empty, take the next byte's source."""
        if self.status & STATUS_OBF:
            return
        self.source = self._next_source(last)
        if self.source is None:
            return
        aux = self.source == FROM_MOUSE or (self.source == FROM_CONTROLLER and self.reply_aux)
        self.status |= STATUS_OBF | (STATUS_AUX_OBF if aux else 0)
        self.outport |= OUT_OBF | (OUT_AUX_OBF if aux else 0)
        self._sync_irqs()

    def _sync_irqs(self) -> None:
        full, aux = self.status & STATUS_OBF, self.status & STATUS_AUX_OBF
        irq1 = int(bool(full and not aux and self.mode & MODE_KBD_INT
                        and not self.mode & MODE_DISABLE_KBD))
        irq12 = int(bool(full and aux and self.mode & MODE_AUX_INT))
        if irq1 != self.irq_levels[0]:
            self.irq_levels[0] = irq1
            self.set_irq(irq1)
        if irq12 != self.irq_levels[1]:
            self.irq_levels[1] = irq12
            self.set_irq12(irq12)

    def _put(self, value: int, aux: bool = False) -> None:
        """A reply of the controller's own."""
        self.reply, self.reply_aux = value, aux
        self._fill()

    # -- the host --

    def send_keys(self, codes: bytes) -> None:
        """The host types: scan codes into the keyboard's queue (the key
        queue of a VNC server or a test)."""
        self.keyboard.send_keys(codes)
        self._fill()

    def send_mouse(self, dx: int, dy: int, dz: int = 0, buttons: int = 0) -> None:
        """The host moves the mouse (:meth:`Ps2Mouse.move`)."""
        self.mouse.move(dx, dy, dz, buttons)
        self._fill()

    # -- the guest --

    def io_read(self, offset: int, size: int) -> int:
        if offset == 4:
            return self.status
        if offset != 0:
            return 0xFF
        if self.status & STATUS_OBF:
            self.status &= ~(STATUS_OBF | STATUS_AUX_OBF)
            self.outport &= ~(OUT_OBF | OUT_AUX_OBF)
            self._sync_irqs()
            if self.source == FROM_CONTROLLER:
                self.output, self.reply = self.reply, None
                self._fill()
            elif self.source == FROM_KEYBOARD:
                self.output = self.keyboard.read()
                self._fill(last=FROM_KEYBOARD)
            elif self.source == FROM_MOUSE:
                self.output = self.mouse.read()
                self._fill(last=FROM_MOUSE)
        return self.output

    def io_write(self, offset: int, size: int, value: int) -> None:
        if offset == 4:
            self.status |= STATUS_A2
            self._command(value)
        elif offset == 0:
            self.status &= ~STATUS_A2
            self._data(value)

    def _command(self, value: int) -> None:
        self.pending = None
        if value == 0x20:
            self._put(self.mode)
        elif value in (0x60, 0xD1, 0xD2, 0xD3, 0xD4):
            self.pending = value
        elif value == 0xA7:
            self.mode |= MODE_DISABLE_AUX
        elif value == 0xA8:
            self.mode &= ~MODE_DISABLE_AUX
            self._fill()
        elif value in (0xA9, 0xAB):
            self._put(0x00)
        elif value == 0xAA:
            self.status |= STATUS_SYS
            self._put(0x55)
        elif value == 0xAD:
            self.mode |= MODE_DISABLE_KBD
        elif value == 0xAE:
            self.mode &= ~MODE_DISABLE_KBD
            self._fill()
        elif value == 0xC0:
            self._put(0x80)
        elif value == 0xD0:
            self._put(self.outport)
        elif value in (0xDD, 0xDF):
            self.outport = self.outport & ~OUT_A20 | (OUT_A20 if value == 0xDF else 0)
            self.a20.set(value == 0xDF)
        elif value >= 0xF0 and not value & OUT_RESET:
            self.reset()
        # other commands are ignored, as QEMU logs and ignores them

    def _data(self, value: int) -> None:
        command, self.pending = self.pending, None
        if command is None:
            self.keyboard.write(value)
            self.mode &= ~MODE_DISABLE_KBD
            self._fill()
        elif command == 0x60:
            self.mode = value
            self.keyboard.translate = bool(value & MODE_TRANSLATE)
            self._sync_irqs()
            self._fill()
        elif command == 0xD1:
            self.outport = value
            self.a20.set(value & OUT_A20)
            if not value & OUT_RESET:
                self.reset()
        elif command in (0xD2, 0xD3):
            self._put(value, aux=command == 0xD3)
        elif command == 0xD4:
            self.mouse.write(value)
            self.mode &= ~MODE_DISABLE_AUX
            self._fill()


class Port92:
    """System Control Port A: bit 1 the A20 gate, bit 0 fast reset."""

    sizes = (1,)

    def __init__(self, a20: A20Gate, reset: Callable[[], None]) -> None:
        self.name = "port92"
        self.a20 = a20
        self.reset = reset
        self.value = 0

    def io_read(self, offset: int, size: int) -> int:
        return self.value

    def io_write(self, offset: int, size: int, value: int) -> None:
        old, self.value = self.value, value
        self.a20.set(value & 0x02)
        if value & 1 and not old & 1:
            self.reset()
