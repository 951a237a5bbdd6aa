"""QEMU as an independent peer: the bundled guests boot there too.

Debian's ``qemu-system-i386`` (TCG) runs the same ROM image with ``-bios``.
QEMU's PC has no device at Xen's ACPI PM1a control port, so the test puts
QEMU's ``isa-debug-exit`` there: the guest's power-off write (0x3c00 to
0x1f44) ends QEMU with status ``(0x3c00 << 1 | 1) & 0xff`` = 1, as it ends
the domain on hvmspec. Both machines must print the same serial output.

hvmspec's HVM domain has no local APIC (Xen 3.0's ``apic=0``): the PIC's
output goes straight to the vcpu. QEMU runs with ``-cpu qemu32,-apic`` to
be the same machine (with an APIC, the PIC would reach the CPU only after
the BIOS set LINT0 to ExtINT, which these BIOS-less guests do not). The
long-mode guest runs on ``qemu-system-x86_64 -cpu qemu64,-apic``.

Time differs by design: QEMU's clock is the host's, hvmspec's counts
instructions. Where a guest prints a time stamp, both outputs are compared
with the stamps masked, and hvmspec's stamps must increase. (The guests
stamp with the ACPI PM timer at Xen's port 0x1f48; QEMU's PIIX4 puts its PM
block where the BIOS configures it, so there the port reads all-ones.)

Beyond the serial output, the devices must see the same accesses: QEMU's
trace events (``memory_region_ops_read``/``_write``, with the log backend
Debian's build has) list every access a device region receives, in order.
COM1's accesses (port, direction, size, and the value of every read) must
be those qemu-dm's UART receives on hvmspec, and the text screen that QEMU's
VGA was left with (its ``vga-lowmem`` writes) must be the one hvmspec's
display shows at the end, in every cell the guest wrote.

Skipped when QEMU is not installed, a failure under
``HVMSPEC_REQUIRE_PEERS=1`` (CI installs it).
"""

import re
import subprocess

import pytest

from spec import loader, trace
from tests.conftest import peer, run

POWEROFF_STATUS = (0x3C00 << 1 | 1) & 0xFF

#: guests that end by resetting the machine (the 8042's pulse reset)
REBOOTS = {"reboot"}
#: guests that call Xen: on QEMU their first VMCALL is an invalid opcode,
#: and with no IDT set up the CPU shuts down (-no-reboot ends QEMU there)
XEN_ONLY = {"balloon"}

#: guests that wait for a person's keys: without them QEMU runs until killed
#: (tests/test_vnc_run.py types into them, through VNC, on both engines)
INTERACTIVE = {"kbdecho"}

#: guests whose output QEMU cannot reproduce, and why (docs/guests.rst)
KNOWN_DIVERGENCES = {
    "mmio": "hvmspec's test device at 0xfeb00000 does not exist on QEMU's pc machine, "
            "whose unassigned MMIO reads as zeros",
}


#: guests that print time stamps, and the pattern of a stamp
STAMPED = {"timer": re.compile(r"pmtmr ([0-9a-f]{8})")}
#: guests whose tick counts depend on time: on QEMU, ticks come at the host's
#: pace, so how many fall into a busy loop (and whether the next one is due
#: again the moment a handler returns) differs; the counts are masked here and
#: asserted exactly against both hvmspec engines in tests/test_interrupts.py
#: (likewise whether a tick fell due within a busy loop: the IRR bit and the
#: order in which two requests were served)
COUNTED = {"irqs": re.compile(r"(before|during|shadow|after|IRR bit 0|order) \d\d"),
           # the VGA's input status follows the raster: the host's time there
           "vga": re.compile(r"(input status) [0-9a-f]{4}")}
#: lines of a guest that concern hvmspec's test device, masked for the same
#: reason as the mmio guest's divergence (the rest of the output must agree)
DEVICE_LINES = {"lm64": re.compile(r"(via alias) [0-9a-f]{16}"),
                "demo": re.compile(r"(after add, xor, or:) [0-9a-f ]{26}"),
                "platform": re.compile(r"(bar0|mask|moved|new bar|old bar) [0-9a-f]{8}")}
#: lines of a guest where hvmspec follows the PC16550D data sheet and QEMU
#: does not (docs/devices.rst): in loopback QEMU's MSR has no delta bits and
#: raises no modem status interrupt; the rest of the output must agree
DATASHEET_LINES = {"serial": re.compile(r"(loop deltas:|msi iir:)[ 0-9a-f]*")}
#: guests that need a 64-bit CPU: QEMU's x86_64 system, its qemu64 model
LONG_MODE = {"lm64", "exceptions"}
#: lines where hvmspec follows the SDM and QEMU's TCG does not: INT1 (ICEBP,
#: opcode F1) is a trap through vector 1 that saves the next instruction's
#: address (SDM vol. 2B "INT n/INTO/INT3/INT1", vol. 3A 6.15 "Interrupt 1");
#: QEMU 7.2 raises #UD (vector 6) at the instruction instead. The guest prints
#: vector and saved IP; QEMU's line must be exactly that #UD, one byte back
#: (:func:`_icebp_as_the_sdm_says`).
#: guests that draw on the text screen: QEMU gets a VGA (``-nodefaults`` has none)
DISPLAY = {"vga", "demo"}
#: QEMU options that make its pc machine the one a guest expects: for the
#: platform guest, Xen 3.x qemu-dm's std VGA in slot 2 (8 MiB of video memory, no
#: QEMU MMIO BAR), hvmspec's 16 MiB
#: (the CMOS memory bytes), and an RTC that starts at hvmspec's default
#: 2026-01-01 00:00:00 and runs on QEMU's virtual clock
QEMU_ARGS = {"platform": ["-vga", "none", "-device", "VGA,vgamem_mb=8,mmio=off", "-m", "16",
                          "-rtc", "base=2026-01-01T00:00:00,clock=vm"],
             "dma": ["-m", "4096"],
             # QEMU's UART times the character timeout on its virtual clock,
             # which without -icount follows the host's clock: on a loaded
             # host the timeout fired before the guest's first IIR read
             # (cc instead of c1). With -icount shift=0 its clock is one ns
             # per instruction, as hvmspec's is, and the reading is exact.
             "serial": ["-icount", "shift=0"],
             # the tick count printed after TICKS ticks: without -icount a
             # tick can fall due at the host's pace while the last one is
             # printed (a loaded host printed 11 ticks); on the instruction
             # clock the printing takes microseconds of a 1 ms period
             "timer": ["-icount", "shift=0"],
             # the demo's progress bar is drawn tick by tick: on host time a
             # loaded host draws a different last cell (seen once in a full run)
             "demo": ["-icount", "shift=0"],
             # the std VGA of qemu-dm's vga.c, whose BAR0 the guest draws into
             # (its pictures: tests/test_graphics_screens.py)
             "graphics": ["-device", "VGA,romfile=,vgamem_mb=8,mmio=off"]}
#: lines that follow where the machine's RAM below 4 GiB ends: hvmloader
#: stops it at 3.75 GiB (0xf0000000), QEMU's pc machine at 3.5 GiB for a
#: guest of 4 GiB; the dma guest prints that size and places its far-apart
#: lines by it (the walk and its data must agree all the same)
MEMORY_MAP_LINES = {"dma": re.compile(r"(memory below 4 GiB:|across the page at) [0-9a-fx]+")}
#: lines only one machine prints, dropped before comparing: QEMU's PIIX3 has
#: its PIIX4 power management at 00:01.3, where Xen 3.0.4's qemu-dm put the
#: same function (8086:7113) at 00:01.2 (tests/test_chipset.py compares
#: their headers); hvmspec's test device (00:03.0) does not exist on QEMU;
#: both have the IDE function 00:01.1
ONLY_QEMU = {"platform": re.compile(r"pci 00:01\.[3-7] .*\n")}
ONLY_HVMSPEC = {"platform": re.compile(r"pci 00:(01\.2|03\.0) .*\n")}


def _masked(name: str, text: str, increasing: bool) -> str:
    counted = COUNTED.get(name)
    if counted is not None:
        text = counted.sub(lambda m: f"{m.group(1)} ##", text)
    device = DEVICE_LINES.get(name)
    if device is not None:
        text = device.sub(lambda m: f"{m.group(1)} (test device)", text)
    memory_map = MEMORY_MAP_LINES.get(name)
    if memory_map is not None:
        text = memory_map.sub(lambda m: f"{m.group(1)} (memory map)", text)
    datasheet = DATASHEET_LINES.get(name)
    if datasheet is not None:
        text = datasheet.sub(lambda m: f"{m.group(1)} (data sheet)", text)
    pattern = STAMPED.get(name)
    if pattern is None:
        return text
    stamps = [int(m, 16) for m in pattern.findall(text)]
    assert stamps, text
    if increasing:
        assert all(a < b for a, b in zip(stamps, stamps[1:])), text
    return pattern.sub("pmtmr ########", text)


def qemu_serial(image: loader.GuestImage, tmp_path, long_mode: bool = False,
                args: list[str] = ()) -> tuple[subprocess.CompletedProcess, str]:
    """Run ``image`` on QEMU's PC as the module docstring says: QEMU's
    exit, and what the guest printed on COM1."""
    qemu = peer("qemu-system-x86_64" if long_mode else "qemu-system-i386")
    cpu = "qemu64,-apic" if long_mode else "qemu32,-apic"
    rom = tmp_path / f"{image.name}.rom"
    rom.write_bytes(image.image)
    serial = tmp_path / "serial.out"
    proc = subprocess.run(
        [qemu, "-machine", "pc", "-accel", "tcg", "-cpu", cpu, "-nodefaults",
         "-display", "none", "-bios", str(rom), "-serial", f"file:{serial}", "-no-reboot",
         "-device", "isa-debug-exit,iobase=0x1f44,iosize=2", *args],
        capture_output=True, text=True, timeout=60)
    return proc, serial.read_bytes().decode("latin-1")


@pytest.mark.parametrize("name", [n for n in loader.bundled_guests() if n not in INTERACTIVE])
def test_bundled_guest_prints_the_same_on_qemu(name, tmp_path):
    image = loader.load(name)
    proc, theirs = qemu_serial(image, tmp_path, name in LONG_MODE,
                               [*(["-device", "VGA"] if name in DISPLAY else []),
                                *QEMU_ARGS.get(name, [])])
    ours = run("impl", image)
    if name in XEN_ONLY:
        # QEMU prints what the guest prints before its first hypercall, and stops
        first = next(e for e in ours.trace if isinstance(e, trace.Hypercall))
        before = "".join(chr(e.byte) for e in ours.trace[:ours.trace.index(first)]
                         if isinstance(e, trace.SerialOut))
        assert proc.returncode != POWEROFF_STATUS
        assert theirs == before and before
        return
    if name in REBOOTS:
        # a reset: QEMU with -no-reboot exits with status 0, the domain
        # shuts down with reason reboot
        assert proc.returncode == 0, proc.stderr
        assert ours.exit["reason"] == "reboot"
    else:
        assert proc.returncode == POWEROFF_STATUS, proc.stderr
        assert ours.exit["reason"] == "poweroff"
    if name in KNOWN_DIVERGENCES:
        # the guest still runs to its power-off there; only its output differs
        assert theirs != ours.serial, \
            f"{name} now agrees with QEMU: drop it from KNOWN_DIVERGENCES"
        return
    mine = ours.serial
    if name == "exceptions":
        theirs = _icebp_as_the_sdm_says(mine, theirs)
    if name in ONLY_QEMU:
        theirs = ONLY_QEMU[name].sub("", theirs)
        mine = ONLY_HVMSPEC[name].sub("", mine)
    assert _masked(name, theirs, False) == _masked(name, mine, True)


def _icebp_as_the_sdm_says(ours: str, theirs: str) -> str:
    """QEMU's text with each of its INT1 lines (vector 1) replaced by
    ours, after checking that it is QEMU's #UD at the INT1 itself."""
    mine, out = ours.splitlines(keepends=True), theirs.splitlines(keepends=True)
    replaced = 0
    for i, line in enumerate(mine):
        fields = line.split()
        if len(fields) < 3 or fields[0] not in "RPL" or fields[1] != "01" or i >= len(out):
            continue
        at = 2 if fields[0] == "R" else 3              # the saved instruction pointer
        expected = list(fields)
        expected[1] = "06"
        expected[at] = format(int(fields[at], 16) - 1, f"0{len(fields[at])}x")
        assert out[i].split() == expected, (line, out[i])
        out[i] = line
        replaced += 1
    assert replaced == 3, ours
    return "".join(out)


# --- the devices' view: accesses and the screen, from QEMU's trace events --------------

TRACE_LINE = re.compile(r"memory_region_ops_(read|write) cpu \d+ mr 0x[0-9a-f]+ "
                        r"addr (0x[0-9a-f]+) value (0x[0-9a-f]+) size (\d+) name '([^']*)'")
#: guests too big to trace access by access on QEMU (the dma guest walks
#: 40,000 buckets), and the Xen-only one
UNTRACED = {"dma"} | XEN_ONLY | INTERACTIVE
#: guests whose modem-status reads differ for a documented reason
#: (docs/devices.rst): in loopback, MSR's delta bits and the modem status
#: interrupt follow the data sheet on hvmspec; QEMU has neither. Their MSR
#: values, and IIR's while loopback and IER.MSI are both on, are not compared.
MODEM_STATUS_DIFFERS = {"serial"}
#: guests that poll a register until time has passed: hvmspec's clock charges
#: a microsecond of bus time per port access (spec/clock.py), QEMU's -icount
#: clock nothing, so the number of identical reads in a row (polls) differs;
#: each run of them is compared as one read
POLLS_DIFFER = {"serial"}
#: guests whose COM1 writes differ for a documented reason: the lines only one
#: machine prints (ONLY_QEMU/ONLY_HVMSPEC), each byte after an LSR poll; their
#: other reads are compared
WRITES_DIFFER = {"platform"}
#: screen cells that show hvmspec's test device (absent on QEMU's pc): the
#: demo's three RMW results, rows 9-11 from column 50
DEVICE_CELLS = {"demo": {(row, col) for row in (9, 10, 11) for col in range(50, 60)}}


def _qemu_accesses(name: str, tmp_path):
    qemu = peer("qemu-system-x86_64" if name in LONG_MODE else "qemu-system-i386")
    cpu = "qemu64,-apic" if name in LONG_MODE else "qemu32,-apic"
    image = loader.load(name)
    rom, log = tmp_path / f"{name}.rom", tmp_path / "trace.log"
    rom.write_bytes(image.image)
    subprocess.run(
        [qemu, "-machine", "pc", "-accel", "tcg", "-cpu", cpu, "-nodefaults",
         "-display", "none", *(["-device", "VGA"] if name in DISPLAY else []),
         "-bios", str(rom), "-serial", "null", "-no-reboot",
         "-device", "isa-debug-exit,iobase=0x1f44,iosize=2", *QEMU_ARGS.get(name, []),
         "-trace", f"enable=memory_region_ops_*,file={log}"],
        capture_output=True, text=True, timeout=120)
    out = []
    for line in log.read_text().splitlines():
        m = TRACE_LINE.match(line)
        if m:
            out.append((m[1], int(m[2], 16), int(m[3], 16), int(m[4]), m[5]))
    assert out, f"QEMU's trace events gave nothing for {name}"
    return image, out


@pytest.mark.parametrize("name", [n for n in loader.bundled_guests() if n not in UNTRACED])
def test_com1_sees_the_same_accesses_on_qemu(name, tmp_path):
    image, theirs = _qemu_accesses(name, tmp_path)
    ours = run("impl", image)
    qemu_com1 = [(d, a, v, s) for d, a, v, s, region in theirs if region == "serial"]
    hvm_com1 = [("read" if e.dir == "read" else "write", e.addr, e.data, e.size)
                for e in ours.trace if isinstance(e, trace.DeviceIo) and e.device == "uart"]
    assert hvm_com1, "the guest makes no COM1 access"
    if name in WRITES_DIFFER:
        qemu_com1, hvm_com1 = ([a for a in side if a[0] == "read" and a[1] != 0x3FD]
                               for side in (qemu_com1, hvm_com1))
    theirs_compared, ours_compared = _compared(name, qemu_com1), _compared(name, hvm_com1)
    if name in POLLS_DIFFER:
        theirs_compared, ours_compared = _polls_as_one(theirs_compared), _polls_as_one(ours_compared)
    assert theirs_compared == ours_compared


def _polls_as_one(accesses: list[tuple]) -> list[tuple]:
    """Each run of identical reads in a row as one read."""
    return [a for i, a in enumerate(accesses)
            if a[0] != "read" or i == 0 or accesses[i - 1] != a]


def _compared(name: str, accesses: list[tuple]) -> list[tuple]:
    """(direction, port, size, value of a read) of each access, with the
    documented exceptions' values left out."""
    out, ier, mcr, lcr = [], 0, 0x08, 0
    for direction, port, value, size in accesses:
        if direction == "write":
            if port == 0x3FB:
                lcr = value
            elif port == 0x3F9 and not lcr & 0x80:
                ier = value
            elif port == 0x3FC:
                mcr = value
            out.append((direction, port, size, None))
            continue
        modem = name in MODEM_STATUS_DIFFERS and (
            port == 0x3FE or (port == 0x3FA and mcr & 0x10 and ier & 0x08))
        out.append((direction, port, size, None if modem else value))
    return out


@pytest.mark.parametrize("name", sorted(DISPLAY))
def test_the_final_text_screen_is_the_same_on_qemu(name, tmp_path):
    from hvmspec.display import Screen
    image, theirs = _qemu_accesses(name, tmp_path)
    vram: dict[int, int] = {}
    crtc_index, crtc = 0, {}
    for direction, addr, value, size, region in theirs:
        if direction != "write":
            continue
        if region == "vga-lowmem" and 0xB8000 <= addr < 0xC0000:
            for i in range(size):
                vram[addr - 0xB8000 + i] = value >> 8 * i & 0xFF
        elif region == "vga" and addr == 0x3D4:
            crtc_index = value
        elif region == "vga" and addr == 0x3D5:
            crtc[crtc_index] = value
    assert len(vram) > 100, "QEMU's VGA saw no text-screen writes"
    # the frame starts at the CRTC's start address (registers 0x0c, 0x0d), in cells
    start = 2 * (crtc.get(0x0C, 0) << 8 | crtc.get(0x0D, 0))
    screen = Screen.from_trace(run("impl", image).trace)
    ours = b"".join(screen.rows)
    masked = DEVICE_CELLS.get(name, set())
    differ = [(off // 160, off % 160 // 2, vram[start + off], ours[off])
              for off in range(len(ours)) if start + off in vram
              and (off // 160, off % 160 // 2) not in masked and ours[off] != vram[start + off]]
    assert differ == [], differ[:10]
    assert sum(start + off in vram for off in range(len(ours))) > 1000
