"""The two 8237A DMA controllers and their page registers, as registers.

Room: the ports of ISA DMA in qemu-dm (:data:`spec.platform.DMA_PORTS`):
controller 1 (8-bit channels 0-3) at 0x00-0x0F, controller 2 (16-bit
channels 4-7, cascaded on channel 4) at the even ports 0xC0-0xDE, and the
page registers at 0x81-0x8F. Sources: Intel 8237A data sheet (order no.
231466), Intel 82371SB PIIX3 data sheet (DMA registers); Xen 3.0.4's qemu-dm
``tools/ioemu/hw/dma.c`` (QEMU 0.8's), ``DMA_init(0)`` in ``hw/pc.c``;
QEMU 7.2's ``hw/dma/i8257.c`` for comparison. Imports nothing.

Ports of one controller, by register index *r*: port = base + (*r* << shift),
base 0x00 and shift 0 for controller 1, base 0xC0 and shift 1 for controller 2.

=====  ===================================  ====================================
r      write                                read
=====  ===================================  ====================================
2c     channel c base address, low then     channel c current address, low
       high byte (flip-flop)                then high byte (flip-flop)
2c+1   channel c base count, low then high  channel c current count (flip-flop)
8      command (stored; a value with an     status: bits 3:0 terminal count,
       unsupported bit set is ignored)      7:4 request; reading clears 3:0
9      request: bit 2 sets, else clears,    0
       the request bit of channel bits 1:0
       (and clears its terminal count)
10     single mask bit: bit 2 sets, else    0
       clears, channel bits 1:0's mask
11     mode of channel bits 1:0 (stored)    0
12     clear the byte flip-flop             0
13     master clear: flip-flop 0, mask      0
       0xFF (all masked), status 0,
       command 0
14     clear all mask bits                  0
15     write all mask bits                  the mask register
=====  ===================================  ====================================

The byte flip-flop, shared by the address and count registers of all four
channels, selects the low (0) or high (1) byte and toggles on every access
to them, read or write. Writing a high byte also loads the channel's
current address from its base address (``init_chan``); a low byte alone
does not, so the current address reads back the base address as it was
when its high byte was last written. No transfer ever runs (qemu-dm of the
model has no ISA DMA device: no floppy controller, no Sound Blaster), so
the current count is always the base count. On controller 2 the address
and count registers count 16-bit words: they read back what was written.

Page registers (one byte each, read and write): 0x87, 0x83, 0x81, 0x82 for
channels 0-3 and 0x8F, 0x8B, 0x89, 0x8A for channels 4-7. Port 0x80, the
POST code port, is not a page register: under Xen it is not intercepted at
all (:data:`spec.platform.PASSTHROUGH_PORTS`), and qemu-dm itself only
dropped writes there (``ioport80_write``): a word written to 0x80 (which
Xen does intercept) reaches 0x81 with its high byte (:mod:`spec.devices`,
the bus). qemu-dm does not enable the
high page registers (0x481-0x48F). Reset: every register 0, the masks all
set (the master clear).

Each port takes byte accesses only (qemu-dm registers 1-byte handlers; a
wider access is split into bytes, lowest port first). The odd ports
0xC1-0xDF belong to no device: they read all-ones.

Not modelled: transfers (nothing requests DMA), the terminal count and the
autoinitialise, address-decrement and memory-to-memory modes they would use,
the 8237's temporary register (register 13 read): qemu-dm reads 0 at every
control port but status and mask.

Differences from QEMU 7.2, which maps each controller's control ports as
one region and numbers them from its start: the mask register reads back at
register 9 (port 0x09 or 0xD2/0xD3) there and register 15 reads 0, and
controller 2's odd ports alias the even port below them instead of being
unclaimed. The page registers, reset values, flip-flop, address and count
read-back are the same (``tests/test_chipset.py`` compares them). QEMU 7.2's
port-0x80 device also takes a whole word at 0x80, so 0x81 keeps its value.
"""

from __future__ import annotations

CMD_SUPPORTED = 0x04            # only "controller disable"; qemu-dm ignores the rest
# the channel of each page port, by port & 7 (0x81 -> 2, 0x82 -> 3, 0x83 -> 1, 0x87 -> 0)
PAGE_CHANNEL = {1: 2, 2: 3, 3: 1, 7: 0}


class Controller:
    """One 8237A: four channels, with the register index shift of its ports."""

    def __init__(self, shift: int) -> None:
        self.shift = shift
        self.base_address = [0] * 4
        self.base_count = [0] * 4
        self.current_address = [0] * 4
        self.mode = [0] * 4
        self.page = [0] * 4
        self.command = self.status = self.flip_flop = 0
        self.mask = 0
        self.master_clear()

    def master_clear(self) -> None:
        self.flip_flop = 0
        self.mask = 0xFF        # qemu-dm's ``~0`` in a byte: all four masked
        self.status = 0
        self.command = 0

    def _toggle(self) -> int:
        """The flip-flop's current byte select; it toggles."""
        high = self.flip_flop
        self.flip_flop ^= 1
        return high

    def read(self, register: int) -> int:
        if register < 8:
            channel, is_count = register >> 1, register & 1
            value = self.base_count[channel] if is_count else self.current_address[channel]
            return value >> 8 * self._toggle() & 0xFF
        if register == 8:
            status = self.status
            self.status &= 0xF0
            return status
        if register == 15:
            return self.mask
        return 0

    def write(self, register: int, value: int) -> None:
        if register < 8:
            channel, is_count = register >> 1, register & 1
            regs = self.base_count if is_count else self.base_address
            if self._toggle():
                regs[channel] = regs[channel] & 0xFF | value << 8
                self.current_address[channel] = self.base_address[channel]
            else:
                regs[channel] = regs[channel] & 0xFF00 | value
            return
        channel = value & 3
        if register == 8:
            if (value & ~CMD_SUPPORTED) == 0:
                self.command = value
        elif register == 9:
            if value & 4:
                self.status |= 0x10 << channel
            else:
                self.status &= ~(0x10 << channel)
            self.status &= ~(1 << channel)
        elif register == 10:
            if value & 4:
                self.mask |= 1 << channel
            else:
                self.mask &= ~(1 << channel)
        elif register == 11:
            self.mode[channel] = value
        elif register == 12:
            self.flip_flop = 0
        elif register == 13:
            self.master_clear()
        elif register == 14:
            self.mask = 0
        else:
            self.mask = value


class Dma8237:
    """Both controllers and the page registers. It is registered on the port
    bus once per range of :data:`spec.platform.DMA_PORTS`; ``io_read`` and
    ``io_write`` take the port number itself as their offset."""

    sizes = (1,)

    def __init__(self) -> None:
        self.name = "dma"
        self.controllers = (Controller(0), Controller(1))

    def _decode(self, port: int) -> tuple[Controller, int | None, int | None]:
        """(controller, register index or None, page channel or None)."""
        if 0x80 <= port < 0x90:
            return self.controllers[port >> 3 & 1], None, PAGE_CHANNEL[port & 7]
        controller = self.controllers[port >= 0xC0]
        return controller, (port & 0x3F) >> controller.shift & 0x0F, None

    def io_read(self, port: int, size: int) -> int:
        controller, register, channel = self._decode(port)
        if register is None:
            return controller.page[channel]
        return controller.read(register)

    def io_write(self, port: int, size: int, value: int) -> None:
        controller, register, channel = self._decode(port)
        if register is None:
            controller.page[channel] = value & 0xFF
        else:
            controller.write(register, value & 0xFF)
