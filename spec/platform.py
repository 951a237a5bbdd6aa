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
VGA_PORTS = range(0x3C0, 0x3E0)  # attribute .. CRTC and input status (colour)

MIN_MEMORY_MIB = 1
DEFAULT_MEMORY_MIB = 16
MAX_MEMORY_MIB = 1 << 20        # 1 TiB: guest RAM is backed only where it is touched

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
# piix4acpi.c: SLP_TYP_MASK 0x1C00, power off when SLP_TYP == 0x1C00).
SLP_TYP_S5 = 7

# --- Xen ------------------------------------------------------------------------

DOMID_SELF = 0x7FF0
DOM0 = 0

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
# the default address space for guest mappings by qemu-dm's word size: 2.5 GiB
# less 256 MiB that a 32-bit qemu-dm uses itself; ``MCACHE_MAX_SIZE`` on 64-bit
MAPCACHE_DEFAULT_BUDGET = {32: (5 << 29) - (256 << 20), 64: 1 << 35}
