"""PCI configuration mechanism #1, bus 0's functions, and PIIX3's reset control register.

Room: the i440FX host bridge's configuration ports 0xCF8-0xCFF, the type-0
configuration headers of the functions on bus 0, the test device's memory
BAR (which places :mod:`spec.devices.testdev` on the MMIO bus), the VGA's
BAR 0 (reported to the VGA, which places its linear frame buffer), the IDE
function's BAR 4 (reported to qemu-dm, which places the bus-master
registers), and the PIIX3 Reset Control Register at 0xCF9. Sources: PCI Local Bus
Specification 2.1 (3.2.2.3.2 "Configuration Mechanism #1", 6.1 "Configuration
Space Organization", 6.2.5 "Base Addresses"); Intel 82441FX PMC data sheet
(CONFADD/CONFDATA); Intel 82371SB PIIX3 data sheet (RC register); QEMU's
``hw/pci/pci_host.c``, ``hw/pci/pci.c``, ``hw/pci-host/i440fx.c`` and
``hw/isa/piix3.c`` (the chipset of Xen's qemu-dm). Imports
:mod:`spec.platform`.

Ports (offsets from 0xCF8):

========  ======  ===========================================================
ports     access  meaning
========  ======  ===========================================================
0xCF8     dword   CONFIG_ADDRESS: enable (31), bus (23:16), device (15:11),
                  function (10:8), register (7:2); bits 30:24 and 1:0 are
                  reserved and read 0 (82441FX CONFADD)
0xCF9     byte    PIIX3 Reset Control Register (RC)
0xCF8-B   other   not decoded (PCI 2.1: only a dword access is the address
                  register): reads all-ones, writes dropped
0xCFC-F   any     CONFIG_DATA: the bytes ``register + (port & 3)`` onwards of
                  the addressed function's configuration space
========  ======  ===========================================================

With the enable bit clear, CONFIG_DATA is not decoded (reads all-ones,
writes dropped). A function that does not exist (any bus but 0, an empty
slot, function > 0 of a single-function device) reads all-ones and ignores
writes: a master abort.

Bus 0 (:mod:`spec.platform`, ``PCI_*``):

=======  =========  =======  =============================================
BDF      ID         class    device
=======  =========  =======  =============================================
00:00.0  8086:1237  060000   Intel 440FX host bridge (revision 2)
00:01.0  8086:7000  060100   PIIX3 ISA bridge; header type 0x80
                             (multi-function, as QEMU creates it)
00:01.1  8086:7010  010180   PIIX3 IDE (:mod:`spec.devices.ide`): both
                             channels in compatibility mode, BAR 4 the
                             bus-master block (16 I/O ports)
00:01.2  8086:7113  068000   PIIX4 ACPI power management (revision 1),
                             where Xen 3.0.4's qemu-dm put it
                             (``piix3_devfn + 2`` with ``acpi=1``); PIIX3's
                             USB function is not modelled and reads
                             all-ones
00:02.0  1234:1111  030000   the std VGA (Xen 3.x qemu-dm's ``stdvga=1``,
                             :mod:`spec.devices.vga`): BAR0 8 MiB
                             prefetchable, its video memory, which the
                             VGA shows at the BAR as the VBE linear frame
                             buffer
00:03.0  1234:7e57  ff0000   hvmspec's test device: BAR0 4 KiB memory
=======  =========  =======  =============================================

Each function's header (type 0): vendor and device ID, revision, class,
header type, BIST, status, subsystem IDs, interrupt pin and the expansion
ROM BAR (0: no ROM) are read-only. Writable: the command register's bits
0x0547 (I/O, memory, bus master, parity, SERR, INTx disable), cache line
size, latency timer, interrupt line, the address bits of each BAR, and the
device-specific bytes 0x40-0xFF (stored without effect, as QEMU's default
``wmask``). A memory BAR of size *S* keeps its low 4 bits (type,
prefetchable) and its bits below *S* read-only 0, so writing all-ones and
reading back gives the size mask (``~(S - 1)`` with the type bits).

The VGA's expansion ROM (PCI 2.1, 6.2.5.2 "Expansion ROM Base Address
Register", offset 0x30), when qemu-dm was given one (SeaBIOS's VGA BIOS,
:mod:`spec.hvmloader`): a power of two of at least 2 KiB that holds the
file, the rest zero (QEMU's ``pci_add_option_rom``); bit 0 enables it and
bits 31:11 are its address, the ones below its size read-only 0. It is
decoded, read-only, while it is enabled, the memory-space bit is set and
the address is not 0; writes to it are dropped. Without a ROM, 0x30 reads 0
and is read-only.

The IDE function (qemu-dm's ``pci_piix3_ide_init``): revision 0, command
and status 0, no interrupt pin (its channels use ISA IRQ14 and IRQ15), and
BAR 4 an I/O BAR of 16 ports: bit 0 reads 1, bits 3:1 read 0. Its ports are
decoded while the command register's I/O space bit (bit 0) is set, the BAR
is not 0 and its last port is below 0x10000 (QEMU 0.8's
``pci_update_mappings``); each change is told to qemu-dm, which moves the
bus-master registers on its port bus. qemu-dm's BAR read 0 until first
written (QEMU 0.8 put the type bit in only with the address); the model,
like QEMU 7.2, shows the I/O bit from reset, as the VGA's BAR shows its
type bits. QEMU 7.2 starts the function with status 0x0280 and subsystem
1af4:1100.

The test device decodes its BAR0 page only while the command register's
memory-space bit (bit 1) is set, the BAR is not 0, and the page does not
reach 0xFFFFFFFF (QEMU's ``pci_bar_address``); its registers keep their
contents while it is not decoded. Moving BAR0 moves the device on qemu-dm's
MMIO bus: the old page then reads all-ones. As if firmware had set it up,
the test device starts with BAR0 = :data:`spec.platform.TESTDEV_BASE` and
memory decode on; the other functions start with BARs 0 and, but for
PIIX3 (below), command 0.

The chipset's device-specific registers are those of Xen 3.0.4's qemu-dm,
which sets few of them; every byte from 0x40 up is writable (QEMU 0.8's
``pci_default_write_config``) and, unless said here, stored without effect.

i440FX (00:00.0). qemu-dm's ``i440fx_init`` sets only the IDs, revision and
class: the PAM registers (0x59-0x5F, shadow-RAM control of 0xC0000-0xFFFFF)
and SMRAM (0x72) read 0 after reset and keep what the guest writes, **with no
effect on memory**. Under Xen the BIOS area is guest RAM that the domain
builder filled: reads and writes there are RAM accesses whatever PAM says
(qemu-xen-traditional compiles ``i440fx_update_memory_mappings`` only
``#ifndef CONFIG_DM``). QEMU 7.2, which maps ROM or RAM per PAM field, starts
SMRAM at 0x02 and also sets config 0x57 (RAM size in 8 MiB units, for
coreboot) and the subsystem IDs 1af4:1100; qemu-dm did neither.

PIIX3 (00:01.0). Reset (qemu-dm's ``piix3_reset``): command 0x0007 (I/O,
memory, bus master), status 0x0200 (DEVSEL medium), and

======  =====  ==============================================================
offset  reset  register
======  =====  ==============================================================
0x4C    0x4D   ISA I/O recovery timer
0x4E    0x03   X-bus chip select
0x60-3  0x80   PIRQRC[A-D]: PCI interrupt link A-D to ISA IRQ (bit 7 = routing
               disabled, bits 3:0 = IRQ)
0x69    0x02   top of memory
0x70    0x80   motherboard IRQ route 0 (disabled)
0x76-7  0x0C   motherboard DMA 0 and 1 (channel 4 = none)
0x78    0x02   programmable chip select
0xA0    0x08   SMI control
0xA8    0x0F   SMI request
======  =====  ==============================================================

qemu-dm also passes each byte written to 0x60-0x63 to Xen
(``xc_hvm_set_pci_link_route(link, value & 0x80 ? 0 : value & 0xf)``),
where the hypervisor's PCI INTx router keeps it; no device of the model
raises a PCI interrupt, so that route is not modelled. The ELCR
(ports 0x4D0/0x4D1), a PIIX3 register too, is the virtual PIC's: Xen 3.0.4's
``vpic.c`` claims those ports, so they never reach qemu-dm
(:mod:`spec.pic`). QEMU 7.2 starts PIIX3 with command 0.

PIIX4 power management (00:01.2, qemu-dm's ``pci_piix4_acpi_init``): command
and status 0, interrupt pin 1 (INTA#, read-only), interrupt line 0, and PMBA
(0x40) = 0x00001F41: the PM1a blocks at :data:`spec.platform.ACPI_PM1A_EVT_BLK`
(:mod:`spec.devices.acpi`), bit 0 marking I/O space. qemu-dm hard-wired the
block there ("hardcoded to 0x1f40 to make shutdown work"), and that is where
it is after reset. Two bytes differ from qemu-dm by design.

PMBA moves the block (unlike Xen 3.0.4), as on a real PIIX4 and in QEMU
7.2's ``pm_io_space_update``: after a write to PMBA (0x40-0x43) or to
PMREGMISC (0x80), if PMREGMISC bit 0 (PM I/O space enable) is set, the
block's base is PMBA & 0xFFC0, and qemu-dm's PM1a event (base + 0) and
control (base + 4) registers go there, and the PM timer (base + 8) with
them: qemu-dm asks Xen to move its timer (:mod:`spec.devices.pmtimer`), as
Xen 4's qemu asks with ``HVM_PARAM_ACPI_IOPORTS_LOCATION`` (version 1:
PM1a at 0xB000, timer at 0xB008). Whatever SLP_EN write powers off then
works at the new base only. The block does not move while bit 0 is clear
(Xen 3.0.4's block is never switched off), for a base of 0, or where its 12
ports would overlap another of qemu-dm's devices; PMBA keeps what was
written in any case. The reason is firmware that programs PMBA itself and
then uses the block where it put it: Debian's SeaBIOS writes PMBA = 0xB001
and PMREGMISC = 1 and times its delays (the ATA probe's among them) on the
PM timer at 0xB008, which would otherwise read all ones forever; Debian's
rombios32 writes the same and builds its FADT for 0xB000. hvmloader's
rombios writes neither and finds the block at 0x1F40 as before.

The other byte: DEVACTB (0x58) bit 25, APMC_EN, reads 1, the mark
rombios32 and SeaBIOS take for "SMM set up already"; with it 0 Debian's
rombios32 starts an SMM set-up that waits on APM port 0xB3, which neither Xen
nor its qemu-dm had, forever. It has no
ordinary BARs. Firmware finds the function by its IDs (rombios32 builds ACPI
tables only when it finds 8086:7113). QEMU 7.2 differs: its PIIX4 PM is
00:01.3, revision 3, status 0x0280, PMBA 0x00000001 (unassigned) and moves
the PM block to where firmware points PMBA, with SMBus at 0x90 (0xB101) and
its enable at 0xD2 (0x09).

Reset Control Register (0xCF9, PIIX3 data sheet; QEMU ``rcr_write``): a
write with bit 2 (reset CPU) set resets the system, which qemu-dm turns
into a shutdown with reason *reboot*; QEMU, and this model, reset the whole
system whether bit 1 (hard reset) is set or not (on a PIIX3, bit 1 = 0 would
reset the CPU alone). Otherwise bit 1 is stored; reads return it.
hvmloader's FADT names this register as the ACPI reset register, with the
value 6 (hard reset).
"""

from __future__ import annotations

from typing import Callable

from spec import platform

COMMAND, STATUS, REVISION, CLASS, CACHE_LINE, LATENCY = 0x04, 0x06, 0x08, 0x09, 0x0C, 0x0D
HEADER_TYPE, BAR0, SUBSYSTEM, ROM_BAR, INTERRUPT_LINE = 0x0E, 0x10, 0x2C, 0x30, 0x3C
COMMAND_WRITABLE = 0x0547
COMMAND_MEMORY = 0x0002
COMMAND_IO = 0x0001
BAR_PREFETCH = 0x08
BAR_IO = 0x01
ROM_BAR = 0x30
ROM_ENABLE = 0x01
ROM_MIN_SIZE = 0x800
#: the PIIX4 PM function's PMBA, PMREGMISC and its PM I/O space enable bit
PMBA, PMREGMISC, PM_IO_ENABLE = 0x40, 0x80, 0x01
PMBA_MASK = 0xFFC0
RCR_RESET_CPU, RCR_HARD = 0x04, 0x02
ADDRESS_MASK = 0x80FFFFFC
ENABLE = 0x80000000


class PciFunction:
    """One function's 256-byte configuration space, with its write mask."""

    def __init__(self, name: str, ids: tuple[int, int], class_code: int, revision: int = 0,
                 header_type: int = 0, bars: tuple[tuple[int, int, int], ...] = (),
                 command: int = 0, status: int = 0,
                 specific: dict[int, int] | None = None, rom: bytes | None = None) -> None:
        """``bars``: (size, type bits, initial address) of BARs 0, 1, ... (None:
        no BAR there; type bit 0 set: an I/O BAR);
        ``specific``: the bytes (offset: value) qemu-dm sets at reset beyond the
        IDs, class and BARs, the interrupt pin (0x3D) among them."""
        self.name = name
        self.config = bytearray(256)
        self.wmask = bytearray(256)
        self.bars = bars
        self._put(0x00, 2, ids[0])
        self._put(0x02, 2, ids[1])
        self._put(REVISION, 1, revision)
        self._put(CLASS, 3, class_code)
        self._put(HEADER_TYPE, 1, header_type)
        self._put(COMMAND, 2, command)
        self._put(STATUS, 2, status)
        self._put(0x04, 2, COMMAND_WRITABLE, self.wmask)
        self.wmask[CACHE_LINE] = self.wmask[LATENCY] = self.wmask[INTERRUPT_LINE] = 0xFF
        for i, bar in enumerate(bars):
            if bar is None:
                continue
            size, flags, address = bar
            self._put(BAR0 + 4 * i, 4, address | flags)
            low = 0xFFFFFFFC if flags & BAR_IO else 0xFFFFFFF0
            self._put(BAR0 + 4 * i, 4, ~(size - 1) & low, self.wmask)
        self.wmask[0x40:] = b"\xff" * 0xC0
        self.rom = b""
        if rom:
            size = max(ROM_MIN_SIZE, 1 << (len(rom) - 1).bit_length())
            self.rom = bytes(rom) + bytes(size - len(rom))
            self._put(ROM_BAR, 4, ~(size - 1) & 0xFFFFF800 | ROM_ENABLE, self.wmask)
        for at, byte in (specific or {}).items():
            self.config[at] = byte

    def _put(self, at: int, size: int, value: int, where: bytearray | None = None) -> None:
        (self.config if where is None else where)[at:at + size] = value.to_bytes(size, "little")

    def read(self, at: int) -> int:
        return self.config[at]

    def write(self, at: int, byte: int) -> None:
        mask = self.wmask[at]
        self.config[at] = (self.config[at] & ~mask | byte & mask) & 0xFF

    def word(self, at: int, size: int) -> int:
        return int.from_bytes(self.config[at:at + size], "little")

    def rom_address(self) -> int | None:
        """Where the expansion ROM is decoded, or None (module docstring)."""
        value = self.word(ROM_BAR, 4)
        if not self.rom or not value & ROM_ENABLE or not self.word(COMMAND, 2) & COMMAND_MEMORY:
            return None
        base = value & ~(len(self.rom) - 1) & 0xFFFFF800
        return base or None

    def io_bar_address(self, index: int) -> int | None:
        """Where I/O BAR ``index`` is decoded, or None: the I/O space bit of the
        command register set, the BAR not 0 and wholly below port 0x10000 (QEMU
        0.8's ``pci_update_mappings``)."""
        size = self.bars[index][0]
        if not self.word(COMMAND, 2) & COMMAND_IO:
            return None
        base = self.word(BAR0 + 4 * index, 4) & ~(size - 1) & 0xFFFFFFFC
        if base == 0 or base + size - 1 >= 0x10000:
            return None
        return base

    def bar_address(self, index: int) -> int | None:
        """Where memory BAR ``index`` is decoded, or None (QEMU's ``pci_bar_address``)."""
        size = self.bars[index][0]
        if not self.word(COMMAND, 2) & COMMAND_MEMORY:
            return None
        base = self.word(BAR0 + 4 * index, 4) & ~(size - 1) & 0xFFFFFFF0
        if base == 0 or base + size - 1 >= 0xFFFFFFFF:
            return None
        return base


class PciHost:
    """Ports 0xCF8-0xCFF: configuration mechanism #1 for bus 0, and the
    PIIX3 reset control register; moves the test device on ``mmio``."""

    sizes = (1, 2, 4)

    def __init__(self, mmio, testdev, reset: Callable[[], None],
                 vga_bar: Callable[[int | None], None] = lambda base: None,
                 vga_rom: bytes | None = None,
                 ide_bar: Callable[[int | None], None] = lambda base: None,
                 pm_base: Callable[[int], bool] = lambda base: False) -> None:
        """``pm_base(base)`` is asked to move the PM block to ``base`` when PMBA
        and PMREGMISC point it there, and says whether it did;
        ``vga_bar(base)`` is told where the VGA's BAR 0 is decoded (None:
        nowhere) whenever that changes; ``vga_rom`` is the VGA's expansion ROM;
        ``ide_bar(base)`` is told where the IDE function's BAR 4 (its bus-master
        ports) is decoded whenever that changes."""
        self.ide_bar = ide_bar
        self.pm_base = pm_base
        self.pm_at = platform.ACPI_PM1A_EVT_BLK
        self.ide_at: int | None = None
        self.name = "pci"
        self.vga_bar = vga_bar
        self.vga_at: int | None = None
        self.mmio = mmio
        self.testdev = testdev
        self.reset = reset
        self.address = 0
        self.rcr = 0
        p = platform
        self.functions = {
            p.PCI_BDF_HOST_BRIDGE: PciFunction("i440fx", p.PCI_ID_HOST_BRIDGE,
                                               p.PCI_CLASS_HOST_BRIDGE, p.PCI_REV_HOST_BRIDGE),
            p.PCI_BDF_ISA_BRIDGE: PciFunction("piix3", p.PCI_ID_ISA_BRIDGE,
                                              p.PCI_CLASS_ISA_BRIDGE, header_type=0x80,
                                              command=p.PIIX3_COMMAND, status=p.PIIX3_STATUS,
                                              specific=p.PIIX3_RESET),
            p.PCI_BDF_IDE: PciFunction("piix3_ide", p.PCI_ID_IDE, p.PCI_CLASS_IDE,
                                       bars=(None,) * p.IDE_BMDMA_BAR
                                       + ((p.IDE_BMDMA_SIZE, BAR_IO, 0),)),
            p.PCI_BDF_PM: PciFunction("piix4_pm", p.PCI_ID_PM, p.PCI_CLASS_PM, p.PCI_REV_PM,
                                      specific=p.PM_RESET),
            p.PCI_BDF_VGA: PciFunction("stdvga", p.PCI_ID_VGA, p.PCI_CLASS_VGA,
                                       bars=((p.PCI_VGA_BAR_SIZES[0], BAR_PREFETCH, 0),),
                                       rom=vga_rom),
            p.PCI_BDF_TESTDEV: PciFunction("testdev", p.PCI_ID_TESTDEV, p.PCI_CLASS_TESTDEV,
                                           bars=((p.TESTDEV_SIZE, 0, p.TESTDEV_BASE),),
                                           command=COMMAND_MEMORY),
        }
        self.testdev_at: int | None = None
        self.rom_at: int | None = None
        self.option_rom = OptionRom("stdvga-rom", self.functions[p.PCI_BDF_VGA].rom)
        self._map_bars()

    def function(self) -> PciFunction | None:
        """The function CONFIG_ADDRESS selects, or None (absent or not enabled)."""
        a = self.address
        if not a & ENABLE or (a >> 16) & 0xFF != 0:
            return None
        return self.functions.get(((a >> 11) & 0x1F, (a >> 8) & 0x7))

    def _map_bars(self) -> None:
        """Follow the BARs: the test device on the MMIO bus, the VGA's BAR 0 to the VGA."""
        at = self.functions[platform.PCI_BDF_TESTDEV].bar_address(0)
        if at != self.testdev_at:
            if self.testdev_at is not None:
                self.mmio.unregister(self.testdev)
            if at is not None:
                self.mmio.register(at, platform.TESTDEV_SIZE, self.testdev)
            self.testdev_at = at
        vga = self.functions[platform.PCI_BDF_VGA]
        vga_at = vga.bar_address(0)
        if vga_at != self.vga_at:
            self.vga_at = vga_at
            self.vga_bar(vga_at)
        pm = self.functions[platform.PCI_BDF_PM]
        pm_at = pm.word(PMBA, 4) & PMBA_MASK
        if pm.read(PMREGMISC) & PM_IO_ENABLE and pm_at and pm_at != self.pm_at:
            if self.pm_base(pm_at):
                self.pm_at = pm_at
        ide_at = self.functions[platform.PCI_BDF_IDE].io_bar_address(platform.IDE_BMDMA_BAR)
        if ide_at != self.ide_at:
            self.ide_at = ide_at
            self.ide_bar(ide_at)
        rom_at = vga.rom_address()
        if rom_at != self.rom_at:
            if self.rom_at is not None:
                self.mmio.unregister(self.option_rom)
            if rom_at is not None:
                self.mmio.register(rom_at, len(vga.rom), self.option_rom)
            self.rom_at = rom_at

    def io_read(self, offset: int, size: int) -> int:
        if offset < 4:
            if offset == 0 and size == 4:
                return self.address
            if offset == 1 and size == 1:
                return self.rcr
            return (1 << 8 * size) - 1
        fn, value = self.function(), 0
        for i in range(size):
            port = offset + i
            byte = 0xFF if fn is None or port > 7 else fn.read((self.address & 0xFC) + port - 4)
            value |= byte << 8 * i
        return value

    def io_write(self, offset: int, size: int, value: int) -> None:
        if offset < 4:
            if offset == 0 and size == 4:
                self.address = value & ADDRESS_MASK
            elif offset == 1 and size == 1:
                if value & RCR_RESET_CPU:
                    self.reset()
                else:
                    self.rcr = value & RCR_HARD
            return
        fn = self.function()
        if fn is None:
            return
        for i in range(size):
            port = offset + i
            if port <= 7:
                fn.write((self.address & 0xFC) + port - 4, (value >> 8 * i) & 0xFF)
        self._map_bars()


class OptionRom:
    """A PCI expansion ROM on the MMIO bus: reads its bytes, drops writes."""

    sizes = (1, 2, 4, 8)

    def __init__(self, name: str, data: bytes) -> None:
        self.name, self.data = name, data

    def io_read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.data[offset:offset + size], "little")

    def io_write(self, offset: int, size: int, value: int) -> None:
        pass
