"""PMBA moves the PIIX4 PM block (spec.devices.pci, spec.devices.pmtimer): a
guest that points PMBA at 0xB000 and enables PM I/O finds the PM1a registers
and Xen's PM timer there, not at 0x1F40, and powers off through 0xB004."""

from spec.loader import GuestImage, rom_from_source
from tests.conftest import both

PMBA_GUEST = """
%include "lib/all.s"
start:
    real_mode_start
    ; PMBA (00:01.2, 0x40) = 0xb001: not yet enabled, so nothing moves
    mov dx, 0xcf8
    mov eax, 0x80000a40
    out dx, eax
    mov dx, 0xcfc
    mov eax, 0xb001
    out dx, eax
    mov dx, 0xb008
    in eax, dx              ; unclaimed still: all ones
    mov dx, 0x1f48
    in eax, dx              ; Xen's timer at the old place
    ; PMREGMISC (0x80) bit 0: the block moves to 0xb000
    mov dx, 0xcf8
    mov eax, 0x80000a80
    out dx, eax
    mov dx, 0xcfc
    mov al, 1
    out dx, al
    mov dx, 0xb008
    in eax, dx              ; the timer, twice
    mov dx, 0xb008
    in eax, dx
    mov dx, 0x1f48
    in eax, dx              ; nobody's now
    mov dx, 0xb002
    mov ax, 0x0120
    out dx, ax              ; PM1a_EN at the new base
    mov dx, 0xb002
    in ax, dx
    mov dx, 0x1f42
    in ax, dx               ; nobody's now
    mov dx, 0xb004
    in ax, dx               ; PM1a_CNT at the new base
    mov dx, PM1A_CNT        ; S5 at the old place: dropped
    mov ax, SLP_S5_EN
    out dx, ax
    mov dx, 0xb004          ; S5 at the new one: off
    mov ax, SLP_S5_EN
    out dx, ax
    halt_forever
"""


def test_pmba_moves_pm1a_and_pm_timer():
    rom = rom_from_source(PMBA_GUEST, "pmba")
    ref = both(GuestImage("pmba", rom, PMBA_GUEST))
    assert ref.exit["reason"] == "poweroff"
    pm = [(e.kind, getattr(e, "device", None), e.addr, e.dir, e.data) for e in ref.trace
          if e.kind in ("xen_io", "device_io") and 0x1F40 <= e.addr < 0x1F4C
          or e.kind in ("xen_io", "device_io") and 0xB000 <= e.addr < 0xB00C]
    timer = [t for t in pm if t[0] == "xen_io"]
    assert [(t[2], t[3]) for t in timer] == [(0x1F48, "in"), (0xB008, "in"), (0xB008, "in")]
    assert timer[1][4] <= timer[2][4] and timer[2][4] != 0xFFFFFFFF
    qemu = [t[1:] for t in pm if t[0] == "device_io"]
    assert qemu[0] == (None, 0xB008, "read", 0xFFFFFFFF)
    assert qemu[1] == (None, 0x1F48, "read", 0xFFFFFFFF)
    assert qemu[2][:3] == ("acpi_pm", 0xB002, "write")
    assert qemu[3] == ("acpi_pm", 0xB002, "read", 0x0120)
    assert qemu[4] == (None, 0x1F42, "read", 0xFFFF)
    # SCI_EN from reset, as Xen 3.0.4's acpi_reset: always in ACPI mode
    assert qemu[5] == ("acpi_pm", 0xB004, "read", 0x0001)
    assert qemu[6][:3] == (None, 0x1F44, "write")
    assert qemu[7][:3] == ("acpi_pm", 0xB004, "write")


OVERLAP_GUEST = """
%include "lib/all.s"
start:
    real_mode_start
    ; PMREGMISC bit 0 first, then PMBA = 0xc1: 0xc0-0xcb are the DMA
    ; controller's, so the block stays at 0x1f40
    mov dx, 0xcf8
    mov eax, 0x80000a80
    out dx, eax
    mov dx, 0xcfc
    mov al, 1
    out dx, al
    mov dx, 0xcf8
    mov eax, 0x80000a40
    out dx, eax
    mov dx, 0xcfc
    mov eax, 0xc1
    out dx, eax
    in eax, dx              ; PMBA keeps what was written
    mov dx, 0x1f48
    in eax, dx              ; Xen's timer where it was
    poweroff                ; through 0x1f44
"""


def test_pmba_over_another_device_leaves_the_block():
    rom = rom_from_source(OVERLAP_GUEST, "pmba_overlap")
    ref = both(GuestImage("pmba_overlap", rom, OVERLAP_GUEST))
    assert ref.exit["reason"] == "poweroff"
    assert [(e.addr, e.dir) for e in ref.trace if e.kind == "xen_io"
            and e.device == "pmtimer"] == [(0x1F48, "in")]
    pmba = [e.data for e in ref.trace if e.kind == "device_io" and e.addr == 0xCFC
            and e.dir == "read"]
    assert pmba == [0xC1]
    assert not any(e.kind == "device_io" and e.device == "acpi_pm" and e.addr < 0x100
                   for e in ref.trace)


def _sleep(slp_typ: int) -> GuestImage:
    """A guest that writes SLP_TYP and SLP_EN to PM1a_CNT, then halts with
    interrupts off (the domain stays up unless qemu-dm shuts it down)."""
    source = f"""
%include "lib/all.s"
start:
    real_mode_start
    mov dx, PM1A_CNT
    in ax, dx
    and ax, 0x1
    or ax, ({slp_typ} << 10) | (1 << 13)
    out dx, ax
    halt_forever
"""
    return GuestImage(f"sleep{slp_typ}", rom_from_source(source, f"sleep{slp_typ}"), source)


def test_s5_as_piix4_numbers_it_powers_off_too():
    """SLP_TYP 0 with SLP_EN is the S5 of the PIIX4 convention (the \\_S5 of
    the DSDTs Debian's rombios32 and SeaBIOS build, and QEMU's soft-off);
    later qemu-dm powers off on it as on Xen 3.0.4's 7. Any other sleep
    type (S3 is 1 or 5 here) leaves the domain running: it halts for good."""
    for slp_typ in (0, 7):
        assert both(_sleep(slp_typ), max_instructions=200_000).exit["reason"] == "poweroff"
    for slp_typ in (1, 5):
        assert both(_sleep(slp_typ), max_instructions=200_000).exit["reason"] != "poweroff"
