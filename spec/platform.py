"""Platform constants: the machine an HVM guest sees, and Xen's numbers.

Room: interface. Both engines import this module; it holds numbers only, no
behaviour. Every constant names its source.

The memory map and the reset convention
---------------------------------------

* Guest RAM starts at guest-physical address 0. The legacy VGA window
  ``0xA0000``–``0xBFFFF`` is a hole: no RAM backs it. qemu-dm's VGA, in the
  colour text mode it emulates, decodes ``0xB8000``–``0xBFFFF`` (graphics
  controller register 6, memory map 3): it maps its own video memory there,
  so guest accesses to it cause no exit; the rest of the window is an MMIO
  exit that no device claims.
* RAM beyond 3.75 GiB (``0xF0000000``) continues at 4 GiB: the range
  ``0xF0000000``–``0xFFFFFFFF`` is the MMIO hole where PCI devices live
  (:func:`ram_ranges`).
* Under Xen the BIOS region is ordinary guest RAM that the domain builder
  fills. A guest image is loaded so that it **ends at 1 MiB** (``0x100000``),
  the place a PC BIOS ROM occupies below 1 MiB, and the vcpu starts in real
  mode at the **reset vector** ``F000:FFF0`` (linear ``0xFFFF0``), the last 16
  bytes of the image (Intel SDM vol. 3, 9.1.4 "First Instruction Executed";
  the alias of the ROM at ``0xFFFFFFF0`` is not modelled, the alias below 1
  MiB holds the same bytes).
"""

# --- exception vectors (SDM vol. 3A, table 6-1) --------------------------------------

# the mnemonic of each architecturally defined exception vector
EXCEPTION_NAMES = {0: "#DE", 1: "#DB", 2: "NMI", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD",
                   7: "#NM", 8: "#DF", 10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF",
                   16: "#MF", 17: "#AC", 18: "#MC", 19: "#XM"}


# --- memory map -----------------------------------------------------------

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

VGA_HOLE_START = 0xA0000
VGA_HOLE_END = 0xC0000          # exclusive
IMAGE_END = 0x100000            # a guest image ends here (top of the BIOS area)
MAX_IMAGE_SIZE = IMAGE_END - VGA_HOLE_END   # the image must not reach the VGA hole
RESET_CS = 0xF000
RESET_IP = 0xFFF0
RESET_VECTOR = (RESET_CS << 4) + RESET_IP   # 0xFFFF0

# Guest RAM above 3.75 GiB is placed above 4 GiB, leaving the hole below 4 GiB
# to MMIO (PCI BARs, the test device): hvmloader's HVM_BELOW_4G_RAM_END and
# HVM_BELOW_4G_MMIO_START (tools/firmware/hvmloader/config.h).
BELOW_4G_RAM_END = 0xF0000000
ABOVE_4G_RAM_START = 1 << 32


def ram_ranges(memory_bytes: int) -> list[tuple[int, int]]:
    """Guest-physical RAM of a domain with ``memory_bytes`` of memory:
    [start, end) ranges, the VGA hole and the MMIO hole below 4 GiB left out."""
    low = min(memory_bytes, BELOW_4G_RAM_END)
    ranges = [(0, VGA_HOLE_START), (VGA_HOLE_END, low)]
    if memory_bytes > BELOW_4G_RAM_END:
        ranges.append((ABOVE_4G_RAM_START,
                       ABOVE_4G_RAM_START + memory_bytes - BELOW_4G_RAM_END))
    return ranges


# the text window qemu-dm's VGA maps its video memory at (VGA memory map 3)
VGA_TEXT_BASE = 0xB8000
VGA_TEXT_SIZE = 0x8000
VGA_PORTS = range(0x3B0, 0x3E0)  # the VGA's registers, monochrome and colour sets
VBE_PORTS = range(0x1CE, 0x1D1)  # Bochs VBE DISPI index and data

MIN_MEMORY_MIB = 1
DEFAULT_MEMORY_MIB = 16
MAX_MEMORY_MIB = 1 << 20        # 1 TiB: guest RAM is backed only where it is touched

# --- the BIOS's boot order -------------------------------------------------------

# boot devices as qemu-dm's ``-boot`` letters (Xen 3.0.4 tools/ioemu
# ``get_bios_disk``): the CMOS codes the BIOS reads at 0x3D and 0x38
BOOT_DEVICES = {"a": 0x01, "c": 0x02, "d": 0x03}


def valid_boot_order(order: str) -> bool:
    """One to three boot device letters (qemu-dm's vl.c accepts only "acd")."""
    return 1 <= len(order) <= 3 and all(c in BOOT_DEVICES for c in order)


# --- ISA ports ----------------------------------------------------------------

COM1_BASE = 0x3F8               # 16550 UART, IRQ 4
COM1_PORTS = range(COM1_BASE, COM1_BASE + 8)

PIT_BASE = 0x40                 # 8254 counters 0-2 and control word (0x43)
PORT_61 = 0x61                  # NMI status and control: counter 2 gate, speaker

# ISA interrupt lines of the PC (IBM PC/AT technical reference).
IRQ_PIT = 0
IRQ_CASCADE = 2
IRQ_COM1 = 4
NR_ISA_IRQS = 16

# ACPI PM1a blocks, "Version 0 (default): Traditional Xen locations",
# xen/include/public/hvm/ioreq.h: ACPI_PM1A_EVT_BLK_ADDRESS_V0 0x1f40,
# ACPI_PM1A_CNT_BLK_ADDRESS_V0 = EVT + 4, ACPI_PM_TMR_BLK_ADDRESS_V0 = EVT + 8.
ACPI_PM1A_EVT_BLK = 0x1F40
ACPI_PM1A_CNT_BLK = ACPI_PM1A_EVT_BLK + 0x04
ACPI_PM_TMR_BLK = ACPI_PM1A_EVT_BLK + 0x08

# PM1 control register bits (ACPI spec, 4.8.3.2.1 PM1 Control Registers).
PM1_CNT_SCI_EN = 1 << 0
PM1_CNT_SLP_TYP_SHIFT = 10
PM1_CNT_SLP_TYP_MASK = 0x7 << PM1_CNT_SLP_TYP_SHIFT
PM1_CNT_SLP_EN = 1 << 13
# The sleep type of S5 in Xen's HVM DSDT of the version-0 era (qemu-dm's
# piix4acpi.c: SLP_TYP_MASK 0x1C00, power off when SLP_TYP == 0x1C00), and in
# the \_S5 package of the DSDT the domain builder writes (spec/acpi_tables.py).
SLP_TYP_S5 = 7
# the S5 value of the PIIX4 convention (QEMU's, and the DSDTs Debian's rombios32
# and SeaBIOS build): later qemu-dm (Xen 4.1's piix4acpi.c, SLP_TYP_S5_V1 with
# hvmloader's _S5 changed to 0, commit 8fe49db6 "Change ACPI IO values to match
# QEMU BIOS") powers off on either; Xen 3.0.4's on 7 alone
SLP_TYP_S5_PIIX4 = 0
SLP_TYP_POWEROFF = (SLP_TYP_S5, SLP_TYP_S5_PIIX4)
# The GPE0 block of later qemu-dm (qemu-xen-traditional's piix4acpi.c
# ``gpe_acpi_init``): xen/include/public/hvm/ioreq.h "Version 1: Locations
# preferred by modern Qemu", ACPI_GPE0_BLK_ADDRESS_V1 0xafe0 and
# ACPI_GPE0_BLK_LEN_V1 4: GPE0_STS in the first half, GPE0_EN in the second.
# QEMU's PIIX4 PM has it at the same port, and the FADTs that Debian's
# rombios32 and SeaBIOS build name it (spec/devices/acpi.py says why it is here).
ACPI_GPE0_BLK = 0xAFE0
ACPI_GPE0_BLK_LEN = 4
# The ACPI SCI's ISA line: hvmloader's pci_setup hard-wires the PIIX4 PM
# function's interrupt line to IRQ 9 ("Hardcoded IRQ9") and its FADT says
# ``.sci_int = 9`` (tools/firmware/hvmloader/acpi/static_tables.c)
IRQ_SCI = 9
# Where hvmloader builds the ACPI tables (acpi2_0.h ``ACPI_PHYSICAL_ADDRESS``);
# hvmloader.c asserts they end at or below the BIOS at 0xF0000
ACPI_TABLES_ADDRESS = 0xEA000
ACPI_TABLES_END = 0xF0000

# --- Xen ------------------------------------------------------------------------

DOMID_SELF = 0x7FF0
DOM0 = 0

# The XenStore page of an HVM domain: Xen 3.x's HVM builder (xc_hvm_build)
# puts the ioreq page in the last page of RAM, the XenStore page in the one
# before it (HVM_PARAM_STORE_PFN) and the buffered ioreq page below that.
STORE_PFN_FROM_TOP = 2

# Shutdown reasons, xen/include/public/sched.h (SHUTDOWN_*).
SHUTDOWN_POWEROFF = 0
SHUTDOWN_REBOOT = 1
SHUTDOWN_SUSPEND = 2
SHUTDOWN_CRASH = 3
SHUTDOWN_WATCHDOG = 4
SHUTDOWN_REASONS = {
    SHUTDOWN_POWEROFF: "poweroff",
    SHUTDOWN_REBOOT: "reboot",
    SHUTDOWN_SUSPEND: "suspend",
    SHUTDOWN_CRASH: "crash",
    SHUTDOWN_WATCHDOG: "watchdog",
}

# --- run limits -------------------------------------------------------------

DEFAULT_MAX_INSTRUCTIONS = 50_000_000
# the budget of a run whose image is firmware (``hvmspec run --firmware``):
# enough for the POST of Debian's rombios (about 3.0 G instructions to "No
# bootable device.") and SeaBIOS (about 2.6 G), with room to spare. Most
# of it is halted waits, in which the virtual clock jumps to the next timer
# deadline without running anything (docs/firmware.rst, "When firmware
# fails"): on the impl engine 10 G cost a few seconds of wall time
FIRMWARE_MAX_INSTRUCTIONS = 10_000_000_000

# --- MMIO ---------------------------------------------------------------------
#
# Every guest-physical address that no RAM backs is MMIO: the VMM emulates
# the instruction and sends its device accesses to qemu-dm as ioreqs of type
# COPY, and qemu-dm answers an address no device claims as an empty bus
# (reads all-ones, writes dropped), as Xen 3.x's qemu-dm does.

# hvmspec's test device: a page of memory-like registers whose every access
# is traced, so that the result of a read-modify-write is observable. It
# sits in the PCI hole below 4 GiB (where QEMU's pc machine has nothing).
TESTDEV_BASE = 0xFEB00000
TESTDEV_SIZE = 0x1000


# --- qemu-dm's mapcache (QEMU's hw/xen/xen-mapcache.c) ----------------------------

# bucket size (log2 bytes) by qemu-dm's word size: ``MCACHE_BUCKET_SHIFT``
MAPCACHE_BUCKET_SHIFT = {32: 16, 64: 20}
# qemu-dm's own address space, by its word size: Linux gives a 32-bit process
# the 3 GiB below PAGE_OFFSET (0xC0000000, the i386 3G/1G split), a 64-bit one
# the 128 TiB below TASK_SIZE (2^47). qemu-dm itself (its program and
# libraries, heap, thread stacks and the VGA's video memory) takes about
# DM_FOOTPRINT of it; what is left is all the mapcache may map
DM_ADDRESS_SPACE = {32: 3 << 30, 64: 1 << 47}
DM_FOOTPRINT = {32: 768 << 20, 64: 768 << 20}
# the default address space for guest mappings by qemu-dm's word size: all a
# 32-bit qemu-dm has left (2304 MiB); ``MCACHE_MAX_SIZE`` (32 GiB) on 64-bit
MAPCACHE_DEFAULT_BUDGET = {32: DM_ADDRESS_SPACE[32] - DM_FOOTPRINT[32], 64: 1 << 35}


# --- CMOS/RTC (MC146818A data sheet; QEMU's hw/rtc/mc146818rtc.c) ------------------

RTC_INDEX_PORT = 0x70           # index (bits 6:0) and NMI mask (bit 7), write-only
RTC_DATA_PORT = 0x71            # the indexed CMOS byte
IRQ_RTC = 8                     # IRQ8: slave PIC line 0 (IBM PC/AT technical reference)
RTC_CMOS_SIZE = 128
# the RTC's time when the domain starts, unless configured (``rtc_base``):
# 2026-01-01 00:00:00 UTC, seconds since the epoch
RTC_DEFAULT_BASE = 1_767_225_600
# where the BIOS expects the century (QEMU's ``RTC_CENTURY``, mc146818rtc_regs.h)
RTC_CENTURY = 0x32
# Xen's HVM memory map: RAM below 4 GiB ends where the PCI hole starts
# (qemu-dm's ``HVM_BELOW_4G_RAM_END``, xen/include/public/hvm/e820.h)
HVM_BELOW_4G_RAM_END = 0xF0000000

# --- keyboard controller (Intel 8042; QEMU's hw/input/pckbd.c) -------------------

KBC_DATA_PORT = 0x60
KBC_STATUS_PORT = 0x64          # reads: status; writes: a controller command
IRQ_KBD = 1
IRQ_MOUSE = 12                  # IRQ12: the PS/2 mouse (auxiliary device) behind the 8042
# System Control Port A (IBM PS/2 technical reference): bit 1 the A20 gate,
# bit 0 fast reset (QEMU's hw/i386/port92.c)
PORT_92 = 0x92
# The 8042's scan-code translation (command byte bit 6): set 2 code -> set 1
# code, for codes 0x00-0x7f (QEMU's ``translate_table``, hw/input/ps2.c, from
# the IBM PC/AT technical reference); codes 0x80 and above pass unchanged but
# 0x83 (F7) -> 0x41 and 0x84 (Alt+SysRq) -> 0x54. The keyboard sets bit 7 of
# the code that follows a break prefix 0xf0 and drops the prefix.
KBC_TRANSLATE = bytes.fromhex(
    "ff43413f3d3b3c58644442403e0f2959"
    "65382a701d10025a66712c1f1e11035b"
    "672e2d201205045c68392f211413065d"
    "693130232215075e6a7232241608095f"
    "6b332517180b0a606c34352627190c61"
    "6d7328741a0d626e3a361c1b752b6376"
    "55567778797a0e7b7c4f7d4b477e7f6f"
    "5253504c4d480145574e514a37494654")
KBC_TRANSLATE_HIGH = {0x83: 0x41, 0x84: 0x54}

# --- PCI (PCI Local Bus Specification 2.1, 3.2.2.3.2 Configuration Mechanism #1) ----

PCI_CONFIG_ADDRESS = 0xCF8      # dword only
PCI_CONFIG_DATA = 0xCFC         # 0xCFC-0xCFF, byte, word and dword
# PIIX3's Reset Control Register (82371SB data sheet, 4.1.2 "RC"), a byte
# register inside CONFIG_ADDRESS's dword; the FADT's RESET_REG of
# hvmloader's ACPI tables points here (tools/firmware/hvmloader/acpi/
# static_tables.c: ``.reset_reg = {SYSTEM_IO, 8 bits, .address = 0xcf9}``,
# ``.reset_value = 6``)
PIIX3_RCR_PORT = 0xCF9

# bus 0's functions as (device, function); vendor:device and class of each
# (class code = base class, sub-class, programming interface)
PCI_BDF_HOST_BRIDGE = (0, 0)    # Intel 82441FX (440FX) PMC, QEMU's i440fx
PCI_ID_HOST_BRIDGE = (0x8086, 0x1237)
PCI_CLASS_HOST_BRIDGE = 0x060000
PCI_REV_HOST_BRIDGE = 0x02      # QEMU's i440fx revision
PCI_BDF_ISA_BRIDGE = (1, 0)     # Intel 82371SB PIIX3 function 0 (PCI-to-ISA bridge)
PCI_ID_ISA_BRIDGE = (0x8086, 0x7000)
PCI_CLASS_ISA_BRIDGE = 0x060100
# the std VGA of Xen 3.x's qemu-dm with ``stdvga=1`` (tools/ioemu/hw/vga.c,
# ``pci_vga_init``): the "dummy VGA" ID Bochs and QEMU use (1234:1111),
# display controller class 0x0300, revision 0, in slot 2, with its video
# memory (``VGA_RAM_SIZE``, 8 MiB) as memory BAR 0, prefetchable: the VBE
# linear frame buffer (:mod:`spec.devices.vga`). (QEMU 7.2's ``-device VGA``
# adds subsystem 1af4:1100 and, unless ``mmio=off``, a 4 KiB BAR 2.)
PCI_BDF_VGA = (2, 0)
PCI_ID_VGA = (0x1234, 0x1111)
PCI_CLASS_VGA = 0x030000
PCI_VGA_BAR_SIZES = (8 << 20,)
# Xen 3.0.4's qemu-dm (tools/ioemu/target-i386-dm/piix_pci-dm.c, piix3_reset):
# PIIX3 function 0's command 0x0007 and status 0x0200, and the device-specific
# bytes it sets (PIRQ routes 0x60-0x63 disabled, top of memory 0x69, ...)
PIIX3_COMMAND, PIIX3_STATUS = 0x0007, 0x0200
PIIX3_RESET = {0x4C: 0x4D, 0x4E: 0x03, 0x60: 0x80, 0x61: 0x80, 0x62: 0x80, 0x63: 0x80,
               0x69: 0x02, 0x70: 0x80, 0x76: 0x0C, 0x77: 0x0C, 0x78: 0x02, 0xA0: 0x08,
               0xA8: 0x0F}
# the PIIX4 ACPI function of Xen 3.0.4's qemu-dm (hw/piix4acpi.c, at
# piix3_devfn + 2 by hw/pc.c): revision 1 ("B0 stepping"), class 0x0680, INTA#,
# and PMBA (0x40) hard-wired to the PM1a block at ACPI_PM1A_EVT_BLK (I/O bit set).
# Deviation: DEVACTB (0x58) bit 25, APMC_EN, reads 1 at reset ("SMM already set
# up" to rombios32 and SeaBIOS), because Xen had no SMM and no APM port 0xB2/0xB3
# to finish the SMM set-up Debian's rombios32 would otherwise wait for forever
PCI_BDF_PM = (1, 2)
PCI_ID_PM = (0x8086, 0x7113)
PCI_CLASS_PM = 0x068000
PCI_REV_PM = 0x01
PM_RESET = {0x3D: 0x01, 0x40: 0x41, 0x41: 0x1F, 0x5B: 0x02}
# PIIX3's IDE function (Xen 3.0.4 qemu-dm's ``pci_piix3_ide_init``, at
# piix3_devfn + 1): 8086:7010, class 0x0101 with programming interface 0x80
# (bus master; both channels in compatibility mode, on the legacy ports below),
# revision 0, no interrupt pin; BAR 4 is the bus-master block, 16 I/O ports
# (:mod:`spec.devices.ide`, :mod:`spec.devices.bmdma`)
PCI_BDF_IDE = (1, 1)
PCI_ID_IDE = (0x8086, 0x7010)
PCI_CLASS_IDE = 0x010180
IDE_BMDMA_SIZE = 16
IDE_BMDMA_BAR = 4
# the two channels: task file (8 ports), device control / alternate status, ISA line
IDE0_BASE, IDE0_CONTROL, IRQ_IDE0 = 0x1F0, 0x3F6, 14
IDE1_BASE, IDE1_CONTROL, IRQ_IDE1 = 0x170, 0x376, 15
# hvmspec's test device (no real device has these IDs: vendor 0x1234 is the
# placeholder QEMU's std VGA uses, device 0x7e57 "test"); class 0xff "does
# not fit any defined class" (PCI 2.1 appendix D); BAR0 is its 4 KiB page
# of registers, at :data:`TESTDEV_BASE` until the guest moves it
PCI_BDF_TESTDEV = (3, 0)
PCI_ID_TESTDEV = (0x1234, 0x7E57)
PCI_CLASS_TESTDEV = 0xFF0000

# --- 8237 DMA controllers and page registers (Xen 3.0.4 qemu-dm's hw/dma.c, DMA_init(0)) ---

# (first port, count) of each range qemu-dm claims: controller 1 (8-bit channels 0-3)
# at 0x00-0x0F; the page registers of channels 2, 3, 1 at 0x81-0x83 and of
# channel 0 at 0x87, of channels 6, 7, 5 at 0x89-0x8B and 4 at 0x8F (port 0x80 is
# not one); controller 2 (16-bit channels 4-7) at the even ports 0xC0-0xDE only
DMA_PORTS = ((0x00, 16), (0x81, 3), (0x87, 1), (0x89, 3), (0x8F, 1)) + tuple(
    (0xC0 + 2 * i, 1) for i in range(16))

# --- ports whose intercept Xen clears --------------------------------------------

# Xen's hvm_enable() (xen/arch/x86/hvm/hvm.c) fills the HVM I/O bitmap with
# ones and then clears the bits of ports 0x80 and 0xED: "Allow direct access
# to the PC debug ports 0x80 and 0xed (they are often used for I/O delays,
# but the vmexits simply slow things down)" (0x80 only while
# hvm_port80_allowed, the default). A byte IN/OUT there therefore causes no
# VM exit and no ioreq: it reaches the host's port directly.
PASSTHROUGH_PORTS = (0x80, 0xED)
# what a direct read of a pass-through port returns on the model's host
# (nothing drives the bus for a read of the POST port)
PASSTHROUGH_READ = 0xFF


# --- time: the virtual clock's rates (spec/clock.py says how they are used) -------

# Bus time of one port access (each element of IN, OUT, INS and OUTS, pass-through
# ports included): an ISA I/O cycle, which the PC's chipsets keep at the AT bus's
# pace whatever bus carries it (an 8-bit ISA I/O cycle at 8.33 MHz takes 6 bus
# clocks, 720 ns; an LPC I/O cycle of the ICH era is of the same order). It is the
# "about a microsecond" the PC's ``outb 0x80`` I/O delay is built on (Linux's
# arch/x86/kernel/io_delay.c).
PORT_ACCESS_NS = 1_000
# Bus time of one MMIO access that no RAM backs (each element of an MMIO ioreq):
# an uncached read or write across the host bridge to a PCI device, the same
# order as a port access; the model charges the same microsecond.
MMIO_ACCESS_NS = 1_000
# The TSC's rate: the clock of the host CPU the CPUID table describes (an Intel
# Core 2 Duo E6600, 2.40 GHz, whose TSC counts at its nominal clock): 2.4 ticks
# per nanosecond of the virtual clock (spec/clock.py).
TSC_HZ = 2_400_000_000


# --- CPUID (spec/cpuid.py derives this table from its host and Xen 3.0.4's vmx_do_cpuid) ---

# (leaf, sub-leaf) -> (EAX, EBX, ECX, EDX) that an HVM guest reads; the sub-leaf (ECX)
# counts only for leaf 4, whose sub-leaves from 3 on read as zeros. Any input not
# listed (above the largest basic leaf 0xA or extended leaf 0x80000008, or in
# 0x40000003 and up) reads :data:`HVM_CPUID_OUT_OF_RANGE`: the host's raw leaf 0xA.
HVM_CPUID = {
    (0x00000000, 0): (0x0000000a, 0x756e6547, 0x6c65746e, 0x49656e69),
    (0x00000001, 0): (0x000006f6, 0x00000800, 0x0000e215, 0x8fa9f9ff),
    (0x00000002, 0): (0x05b0b101, 0x005657f0, 0x00000000, 0x2cb43049),
    (0x00000003, 0): (0x00000000, 0x00000000, 0x00000000, 0x00000000),
    (0x00000004, 0): (0x00000121, 0x01c0003f, 0x0000003f, 0x00000001),
    (0x00000004, 1): (0x00000122, 0x01c0003f, 0x0000003f, 0x00000001),
    (0x00000004, 2): (0x00000143, 0x03c0003f, 0x00000fff, 0x00000001),
    (0x00000004, 3): (0x00000000, 0x00000000, 0x00000000, 0x00000000),
    (0x00000005, 0): (0x00000040, 0x00000040, 0x00000003, 0x00000020),
    (0x00000006, 0): (0x00000000, 0x00000000, 0x00000000, 0x00000000),
    (0x00000007, 0): (0x00000000, 0x00000000, 0x00000000, 0x00000000),
    (0x00000008, 0): (0x00000000, 0x00000000, 0x00000000, 0x00000000),
    (0x00000009, 0): (0x00000000, 0x00000000, 0x00000000, 0x00000000),
    (0x0000000a, 0): (0x00000000, 0x00000000, 0x00000000, 0x00000000),
    (0x40000000, 0): (0x40000002, 0x566e6558, 0x65584d4d, 0x4d4d566e),
    (0x40000001, 0): (0x00030000, 0x00000000, 0x00000000, 0x00000000),
    (0x40000002, 0): (0x00000001, 0x40000000, 0x00000000, 0x00000000),
    (0x80000000, 0): (0x80000008, 0x00000000, 0x00000000, 0x00000000),
    (0x80000001, 0): (0x00000000, 0x00000000, 0x00000001, 0x20100800),
    (0x80000002, 0): (0x65746e49, 0x2952286c, 0x726f4320, 0x4d542865),
    (0x80000003, 0): (0x43203229, 0x20205550, 0x20202020, 0x20202020),
    (0x80000004, 0): (0x30303636, 0x20402020, 0x30342e32, 0x007a4847),
    (0x80000005, 0): (0x00000000, 0x00000000, 0x00000000, 0x00000000),
    (0x80000006, 0): (0x00000000, 0x00000000, 0x10008040, 0x00000000),
    (0x80000007, 0): (0x00000000, 0x00000000, 0x00000000, 0x00000000),
    (0x80000008, 0): (0x00003024, 0x00000000, 0x00000000, 0x00000000),
}
HVM_CPUID_OUT_OF_RANGE = (0x07280202, 0x00000000, 0x00000000, 0x00000000)

# --- the firmware log: the Bochs BIOS debug ports ------------------------------------

# Xen 3.0.4's qemu-dm (tools/ioemu/hw/pc.c, bochs_bios_init): rombios's ports
# 0x400-0x403 (0x400/0x401 a word: the line number of a panic; 0x402 INFO_PORT
# and 0x403 DEBUG_PORT: a byte of the log) and the LGPL VGA BIOS's 0x500-0x503
# (0x501/0x502 a word: panic; 0x500/0x503 a byte of the log)
BIOS_DEBUG_BASE = 0x400
VGABIOS_DEBUG_BASE = 0x500
DEBUG_PORTS_LEN = 4
BIOS_PANIC_PORTS = (0x400, 0x401)
VGABIOS_PANIC_PORTS = (0x501, 0x502)
FIRMWARE_LOG_PORTS = (0x402, 0x403, 0x500, 0x503)
# a byte read of 0x402 answers as QEMU's isa-debugcon does there (its
# ``readback`` property, default 0xe9): SeaBIOS turns its log off otherwise
DEBUGCON_PORT = 0x402
DEBUGCON_READBACK = 0xE9
# Xen itself prints a byte OUT to port 0xE9 (hvm_print_line), then still
# sends the ioreq on to qemu-dm, where no device claims the port
XEN_DEBUG_PORT = 0xE9
# Bochs's power-off port, in the same function of Xen 3.0.4's qemu-dm
BOCHS_SHUTDOWN_PORT = 0x8900

# --- qemu-dm's VNC display (Xen 3.0.4 tools/ioemu/vnc.c, xend's image.py) ---------------
# display N listens on TCP port VNC_BASE_PORT + N (``vnc_display_init``)
VNC_BASE_PORT = 5900
# the highest display number whose port exists
VNC_MAX_DISPLAY = 65535 - VNC_BASE_PORT
# where qemu-dm listens when neither the config nor xend-config says (xend-config.sxp's
# ``vnc-listen``, 127.0.0.1 in Xen 3.0.4)
VNC_DEFAULT_LISTEN = "127.0.0.1"
# VNC authentication keys DES with the password's first 8 bytes
VNC_PASSWORD_MAX = 8
