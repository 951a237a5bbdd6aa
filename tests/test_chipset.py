"""The chipset Xen 3.0.4's qemu-dm gave an HVM guest: the i440FX's PAM and
SMRAM registers, PIIX3's reset registers and PIRQ routes, the PIIX4 ACPI
function, the two 8237 DMA controllers with their page registers, and the
GPE0 block of later qemu-dm (spec/devices/pci.py, spec/devices/dma.py,
spec/devices/acpi.py; impl/pci.py, impl/dma.py, impl/qemu_dm.py).

One script of port accesses runs as a guest on both engines (traces equal)
and, through qtest, on QEMU 7.2's ``pc`` machine; every read has the value
Xen 3.0.4's qemu-dm gives and, where QEMU 7.2 differs, QEMU's value with the
reason (the docstrings of those modules say the same)."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from impl.dma import Dma, DmaPorts
from spec import platform
from spec.devices.dma import Dma8237
from tests import qtest
from tests.conftest import both, guest

SAME = None
SUBSYSTEM = 0x11001AF4      # QEMU 7.2 gives every device subsystem 1af4:1100; qemu-dm did not
QEMU_ARGS = ("-m", "16")    # hvmspec's default memory: i440FX 0x57 then reads 16 MiB / 8 MiB


def _address(bdf: tuple[int, int], reg: int) -> int:
    return 0x80000000 | bdf[0] << 11 | bdf[1] << 8 | reg & 0xFC


def out(port: int, value: int, size: int = 1, qemu: int | None = SAME) -> tuple:
    return ("out", port, size, value, qemu)


def inp(port: int, ours: int, qemu: int | None = SAME, size: int = 1) -> tuple:
    return ("in", port, size, ours, qemu)


def config(bdf, reg: int, ours: int, qemu: int | None = SAME, qemu_bdf=None, size: int = 4):
    """Select ``reg`` of ``bdf`` (``qemu_bdf`` on QEMU) and read it."""
    there = _address(qemu_bdf, reg) if qemu_bdf else SAME
    return [out(0xCF8, _address(bdf, reg), 4, there), inp(0xCFC + (reg & 3), ours, qemu, size)]


def set_config(bdf, reg: int, value: int, size: int = 4, qemu_bdf=None):
    there = _address(qemu_bdf, reg) if qemu_bdf else SAME
    return [out(0xCF8, _address(bdf, reg), 4, there), out(0xCFC + (reg & 3), value, size)]


HOST, ISA, PM = platform.PCI_BDF_HOST_BRIDGE, platform.PCI_BDF_ISA_BRIDGE, platform.PCI_BDF_PM
QEMU_PM = (1, 3)            # QEMU 7.2's PIIX4 PM function; Xen 3.0.4's qemu-dm used 00:01.2

CONFIG_SCRIPT = [
    # i440FX: IDs; PAM0-6 (0x59-0x5F) and SMRAM (0x72) as qemu-dm left them (0),
    # where QEMU 7.2 sets SMRAM 0x02 and its coreboot RAM-size byte 0x57
    *config(HOST, 0x00, 0x12378086), *config(HOST, 0x04, 0), *config(HOST, 0x08, 0x06000002),
    *config(HOST, 0x2C, 0, SUBSYSTEM), *config(HOST, 0x54, 0, 0x02000000),
    *config(HOST, 0x58, 0), *config(HOST, 0x5C, 0), *config(HOST, 0x70, 0, 0x00020000),
    # PAM and SMRAM are plain read/write bytes on both
    *set_config(HOST, 0x59, 0x30, 1), *set_config(HOST, 0x5A, 0x33, 1),
    *config(HOST, 0x58, 0x333000),
    *set_config(HOST, 0x72, 0x0A, 1), *config(HOST, 0x70, 0x000A0000),
    # PIIX3: qemu-dm's piix3_reset (QEMU 7.2 leaves the command register 0)
    *config(ISA, 0x00, 0x70008086), *config(ISA, 0x04, 0x02000007, 0x02000000),
    *config(ISA, 0x08, 0x06010000), *config(ISA, 0x0C, 0x00800000),
    *config(ISA, 0x2C, 0, SUBSYSTEM), *config(ISA, 0x4C, 0x0003004D),
    *config(ISA, 0x60, 0x80808080), *config(ISA, 0x68, 0x00000200), *config(ISA, 0x70, 0x80),
    *config(ISA, 0x74, 0x0C0C0000), *config(ISA, 0x78, 0x02), *config(ISA, 0xA0, 0x08),
    *config(ISA, 0xA8, 0x0F),
    # PIRQ routes: written as hvmloader does (links to IRQ 5, 6, 10, 11), one disabled again
    *set_config(ISA, 0x60, 0x0B0A0605), *config(ISA, 0x60, 0x0B0A0605),
    *set_config(ISA, 0x63, 0x80, 1), *config(ISA, 0x60, 0x800A0605),
    # PIIX4 PM: qemu-dm's header (revision 1, PMBA 0x1f41 hard-wired); QEMU 7.2's
    # is revision 3 with status 0x0280 and PMBA unassigned until firmware sets it
    *config(PM, 0x00, 0x71138086, qemu_bdf=QEMU_PM),
    *config(PM, 0x04, 0, 0x02800000, qemu_bdf=QEMU_PM),
    *config(PM, 0x08, 0x06800001, 0x06800003, qemu_bdf=QEMU_PM),
    *config(PM, 0x0C, 0, qemu_bdf=QEMU_PM),
    *config(PM, 0x3C, 0x00000100, qemu_bdf=QEMU_PM),
    *config(PM, 0x40, 0x00001F41, 0x00000001, qemu_bdf=QEMU_PM),
    # PMBA keeps what firmware writes (rombios32 writes 0xb001); on hvmspec the PM
    # block stays at 0x1f40: the guest's power-off there still ends it
    *set_config(PM, 0x40, 0x0000B001, qemu_bdf=QEMU_PM),
    *config(PM, 0x40, 0x0000B001, qemu_bdf=QEMU_PM),
]

DMA_SCRIPT = [
    # after reset: status 0, all channels masked; qemu-dm reads the mask at register
    # 15 (0x0f, 0xde), QEMU 7.2 at register 9 (0x09, 0xd2); QEMU's controller 2
    # also answers at the odd ports (0xd1 = its status), qemu-dm's does not
    inp(0x08, 0), inp(0x09, 0, 0xFF), inp(0x0F, 0xFF, 0),
    inp(0xD0, 0), inp(0xD2, 0, 0xFF), inp(0xDE, 0xFF, 0), inp(0xD1, 0xFF, 0),
    inp(0x81, 0), inp(0x84, 0xFF), inp(0x8F, 0),
    # channel 2 as a floppy driver programs it: address, count, page, mode
    out(0x0C, 0), out(0x04, 0x34), out(0x04, 0x12), out(0x05, 0xFF), out(0x05, 0x01),
    out(0x81, 0x05), out(0x0B, 0x46),
    out(0x0C, 0), inp(0x04, 0x34), inp(0x04, 0x12), inp(0x05, 0xFF), inp(0x05, 0x01),
    inp(0x81, 0x05),
    # a word read is two byte reads, 0x04 then 0x05: address low byte, count high byte
    out(0x0C, 0), inp(0x04, 0x0134, size=2),
    # the current address is loaded when a high byte is written, not by a low byte alone
    out(0x0C, 0), out(0x00, 0x78), out(0x0C, 0), inp(0x00, 0), inp(0x00, 0),
    out(0x0C, 0), out(0x00, 0x78), out(0x00, 0x56), out(0x0C, 0), inp(0x00, 0x78), inp(0x00, 0x56),
    # ... the count's high byte loads it too
    out(0x0C, 0), out(0x02, 0x22), out(0x03, 0x99), out(0x0C, 0), inp(0x02, 0x22), inp(0x02, 0),
    # channel 5 on controller 2 (word counts, even ports); a word read at 0xc4 meets the
    # unclaimed 0xc5 on qemu-dm, the alias of 0xc4 on QEMU
    out(0xD8, 0), out(0xC4, 0xCD), out(0xC4, 0xAB), out(0xC6, 0x10), out(0xC6, 0x00),
    out(0x8B, 0x33), out(0xD8, 0), inp(0xC4, 0xCD), inp(0xC4, 0xAB), inp(0xC6, 0x10),
    inp(0xC6, 0), inp(0x8B, 0x33), out(0xD8, 0), inp(0xC4, 0xFFCD, 0xABCD, size=2),
    # a word at the POST code port 0x80 (Xen lets only bytes through) reaches qemu-dm,
    # which splits it into bytes: the high one is channel 2's page register at 0x81;
    # QEMU 7.2's port-0x80 region takes the whole word
    out(0x80, 0x4400, size=2), inp(0x81, 0x44, 0x05), inp(0x80, 0x44FF, 0xFFFF, size=2),
    # the other page registers
    out(0x82, 0x11), out(0x83, 0x22), out(0x87, 0x44), out(0x89, 0x55), out(0x8A, 0x66),
    out(0x8F, 0x77), inp(0x82, 0x2211, size=2), inp(0x83, 0x22), inp(0x87, 0x44),
    inp(0x89, 0x55), inp(0x8A, 0x66), inp(0x8F, 0x77),
    # mask: clear all, set one, write all, clear one
    out(0x0E, 0), inp(0x0F, 0), inp(0x09, 0),
    out(0x0A, 0x05), inp(0x0F, 0x02, 0), inp(0x09, 0, 0x02),
    out(0x0F, 0x0A), inp(0x0F, 0x0A, 0), inp(0x09, 0, 0x0A),
    out(0x0A, 0x01), inp(0x0F, 0x08, 0),
    # request bits in the status register
    out(0x09, 0x06), inp(0x08, 0x40), out(0x09, 0x02), inp(0x08, 0),
    out(0xD2, 0x05), inp(0xD0, 0x20), out(0xD2, 0x01), inp(0xD0, 0),
    # master clear: all masked, flip-flop low
    out(0x0D, 0), inp(0x0F, 0xFF, 0), inp(0x09, 0, 0xFF), inp(0x04, 0x34),
    out(0xDA, 0), inp(0xDE, 0xFF, 0), inp(0xD2, 0, 0xFF),
]

GPE = platform.ACPI_GPE0_BLK
GPE_SCRIPT = [
    # the GPE0 block of later qemu-dm at Xen's version-1 place, QEMU's too: zero from
    # reset; GPE0_EN keeps what is written, GPE0_STS clears where 1 is written (and no
    # device sets it); a dword is the four bytes
    inp(GPE, 0, size=4),
    out(GPE + 2, 0xFF), out(GPE + 3, 0x5A), inp(GPE + 2, 0x5AFF, size=2),
    out(GPE, 0xFFFF, size=2), inp(GPE, 0x5AFF0000, size=4),
    out(GPE + 2, 0, size=2), inp(GPE, 0, size=4), inp(GPE + 3, 0),
]

SCRIPT = CONFIG_SCRIPT + DMA_SCRIPT + GPE_SCRIPT
REGISTER = {1: "al", 2: "ax", 4: "eax"}


def _source(script) -> str:
    lines = []
    for kind, port, size, value, _ in script:
        lines.append(f"    mov dx, {port:#x}")
        if kind == "out":
            lines += [f"    mov eax, {value:#x}", f"    out dx, {REGISTER[size]}"]
        else:
            lines.append(f"    in {REGISTER[size]}, dx")
    return "\n".join(lines) + "\n"


def _expected(script, qemu: bool) -> list[int]:
    return [(step[4] if qemu and step[4] is not SAME else step[3])
            for step in script if step[0] == "in"]


def test_the_chipset_reads_as_xen_304_qemu_dm_gave_it_on_both_engines():
    ref = both(guest("chipset", _source(SCRIPT)))
    reads = [e.data for e in ref.trace
             if e.kind == "ioreq" and e.new == "IORESP_READY" and e.dir == "read"]
    assert reads == _expected(SCRIPT, qemu=False)
    assert ref.exit["reason"] == "poweroff"        # the PM block did not move with PMBA
    dma = {e.addr for e in ref.trace if e.kind == "device_io" and e.device == "dma"}
    assert 0xC5 not in dma and 0xD1 not in dma     # odd ports of controller 2: unclaimed


def test_qemu_reads_the_same_but_for_the_documented_differences():
    script = [("out", port, value if there is SAME else there, size) if kind == "out"
              else ("in", port, size) for kind, port, size, value, there in SCRIPT]
    log = qtest.run(script, QEMU_ARGS)
    got = [int(line.split()[-1], 16) for line in log if line.startswith("in ")]
    assert got == _expected(SCRIPT, qemu=True)


def test_pam_settings_do_not_remap_the_bios_area():
    """PAM0 = 0x10 (BIOS area read from DRAM, writes to ROM) on real hardware,
    or QEMU, would drop the write; under Xen the area is RAM."""
    body = f"""
    mov dx, 0xcf8
    mov eax, {_address(HOST, 0x58):#x}
    out dx, eax
    mov dx, 0xcfd
    mov al, 0x10
    out dx, al
    mov ax, 0xf000
    mov es, ax
    mov byte ptr es:[0xe000], 0x5a
    mov al, es:[0xe000]
    mov dx, 0x1234
    out dx, al
"""
    ref = both(guest("pam", body))
    unclaimed = [e.data for e in ref.trace if e.kind == "device_io" and e.device is None]
    assert unclaimed == [0x5A]


PORTS = [p for first, n in platform.DMA_PORTS for p in range(first, first + n)]


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from(PORTS), st.integers(0, 0xFF)),
                max_size=60))
def test_spec_and_impl_dma_agree(steps):
    spec = Dma8237()
    impl = Dma()
    views = {first: DmaPorts(impl, first) for first, _ in platform.DMA_PORTS}
    base = {p: first for first, n in platform.DMA_PORTS for p in range(first, first + n)}
    for is_read, port, value in steps:
        view = views[base[port]]
        if is_read:
            assert spec.io_read(port, 1) == view.read(port - base[port], 1)
        else:
            spec.io_write(port, 1, value)
            view.write(port - base[port], 1, value)


def test_the_elcr_is_the_virtual_pics_not_qemu_dms():
    """PIIX3's ELCR ports 0x4d0/0x4d1 are claimed by Xen's vpic.c: writing the
    PCI-wired IRQs 5, 6, 10, 11 as level (hvmloader's value) never makes an
    ioreq, and reads back with the always-edge lines 0-2, 8, 13 masked off."""
    body = """
    mov dx, 0x4d0
    mov al, 0xff
    out dx, al
    mov al, 0x60
    out dx, al
    in al, dx
    mov dx, 0x4d1
    mov al, 0xff
    out dx, al
    in al, dx
"""
    ref = both(guest("elcr", body))
    assert not [e for e in ref.trace if e.kind == "ioreq" and e.addr in (0x4D0, 0x4D1)]
    xen = [(e.addr, e.dir, e.data) for e in ref.trace if e.kind == "xen_io"]
    assert xen == [(0x4D0, "out", 0xFF), (0x4D0, "out", 0x60), (0x4D0, "in", 0x60),
                   (0x4D1, "out", 0xFF), (0x4D1, "in", 0xDE)]
