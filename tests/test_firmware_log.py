"""The firmware log: the Bochs BIOS debug ports of Xen 3.0.4's qemu-dm and
Xen's port 0xE9 (spec/devices/debugport.py), on both engines, in
``hvmspec run`` (live, ``--json``, ``--until``) and against QEMU's
isa-debugcon with Debian's SeaBIOS and rombios."""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path

import pytest

from hvmspec import qemu_peer
from hvmspec.qemu_peer import LOG_PORTS
from spec import hvmloader, trace
from spec.result import RunControl
from tests.conftest import both, cli, guest, peer, peer_file, run

#: OUT each byte at DS:SI to port DX, up to the NUL (labels next/done)
OUT_STRING = """
next:
    lodsb
    test al, al
    jz done
    out dx, al
    jmp next
done:
"""

#: one line of log through 0x402 after reading the port back (SeaBIOS's
#: test), then each width the ports take: a panic word, a byte to a panic
#: port (dropped), a word of two log bytes, a doubleword (dropped), the VGA
#: BIOS's log port, reads of 0x403, of the word at 0x401, of a doubleword and
#: of Bochs's power-off port, and Xen's 0xE9
LOG_BODY = """
    mov dx, 0x402
    in al, dx
    cmp al, 0xe9
    jne skip
    mov si, msg
""" + OUT_STRING + """    mov dx, 0x400
    mov ax, 1234
    out dx, ax
    mov dx, 0x401
    mov al, 0
    out dx, al
    mov dx, 0x402
    mov ax, 0x4241
    out dx, ax
    mov eax, 0x44434241
    out dx, eax
    mov dx, 0x500
    mov al, 'v'
    out dx, al
    mov dx, 0x403
    in al, dx
    mov dx, 0x401
    in ax, dx
    mov dx, 0x402
    in eax, dx
    mov dx, 0x8900
    in al, dx
    mov al, 'x'
    out 0xe9, al
    mov al, 10
    out 0xe9, al
skip:
    jmp over
msg:
    .ascii "Hello from the firmware\\n"
    .byte 0
over:
"""


def _log_events(result):
    return [e for e in result.trace if isinstance(e, (trace.FirmwareLog, trace.FirmwarePanic))]


def test_debug_ports_give_the_firmware_log_on_both_engines():
    result = both(guest("fwlog", LOG_BODY))
    assert result.exit["reason"] == "poweroff"
    assert result.firmware_log == ("Hello from the firmware\n"
                                   "BIOS panic at rombios.c, line 1234\n"
                                   "ABvx\n")
    events = _log_events(result)
    assert events[0] == trace.FirmwareLog(by="qemu-dm", port=0x402, byte=ord("H"))
    panic = next(e for e in events if isinstance(e, trace.FirmwarePanic))
    assert panic == trace.FirmwarePanic(port=0x400, line=1234)
    assert [(e.port, e.byte) for e in events[-5:]] == [
        (0x402, ord("A")), (0x403, ord("B")), (0x500, ord("v")), (0xE9, ord("x")),
        (0xE9, 10)]
    assert {e.by for e in events if e.port == 0xE9} == {"xen"}
    reads = [(e.addr, e.size, e.data) for e in result.trace
             if isinstance(e, trace.DeviceIo) and e.dir == "read"]
    assert reads == [(0x402, 1, 0xE9), (0x403, 1, 0xFF), (0x401, 2, 0xE9FF),
                     (0x402, 4, 0xFFFFFFFF), (0x8900, 1, 0xFF)]
    # Xen printed the 0xE9 bytes and still sent them to qemu-dm, where no device is
    e9 = [e for e in result.trace if isinstance(e, trace.DeviceIo) and e.addr == 0xE9]
    assert [(e.device, e.data) for e in e9] == [(None, ord("x")), (None, 10)]


SHUTDOWN_BODY = """
    mov dx, 0x8900
    mov si, words
""" + OUT_STRING + """    hlt
words:
    .ascii "ShutdxwnSShutdownxShutdown"
    .byte 0
"""


def test_bochs_shutdown_port_powers_off_on_the_whole_word():
    # a wrong byte starts the match again (and is not itself its first 'S'):
    # "SShutdown" is no match, only the last eight bytes make "Shutdown"
    result = both(guest("bochs-shutdown", SHUTDOWN_BODY, poweroff=False))
    assert result.exit["reason"] == "poweroff" and result.exit["by"] == "qemu-dm"
    writes = [e for e in result.trace if isinstance(e, trace.DeviceIo) and e.addr == 0x8900]
    assert len(writes) == len("ShutdxwnSShutdownxShutdown")
    assert {e.device for e in writes} == {"debug_ports"}


def test_bochs_shutdown_port_needs_every_byte():
    body = SHUTDOWN_BODY.replace("ShutdxwnSShutdownxShutdown", "ShutdxwnSShutdownxShutdow")
    result = both(guest("bochs-no-shutdown", body, poweroff=False))
    assert result.exit["reason"] == "hung"


def test_the_trace_file_round_trips_the_new_events(tmp_path):
    result = run("impl", guest("fwlog", LOG_BODY))
    path = tmp_path / "t.jsonl"
    with open(path, "w") as f:
        trace.dump(result.trace, f)
    with open(path) as f:
        back = trace.load(f)
    assert [e for e in back if isinstance(e, (trace.FirmwareLog, trace.FirmwarePanic))] \
        == _log_events(result)


# --- hvmspec run ---------------------------------------------------------------------------

@pytest.fixture
def fw_guest(tmp_path) -> Path:
    """A guest file: two log lines around a serial line, then power-off."""
    path = tmp_path / "fw.s"
    path.write_text("""%include "lib/all.s"
start:
    cli
    mov ax, cs
    mov ds, ax
    mov dx, 0x402
    mov si, first
    port_write
    mov dx, 0x3f8
    mov al, 'S'
    out dx, al
    mov al, 10
    out dx, al
    mov dx, 0x402
    mov si, second
    port_write
    mov dx, 0x1f44
    mov ax, 0x3c00
    out dx, ax
    hlt
first:
    .ascii "Booting the firmware\\nhalf a "
    .byte 0
second:
    .ascii "line\\nunfinished"
    .byte 0
""")
    return path


def test_run_prints_the_firmware_log_live_on_stderr(fw_guest):
    proc = cli("run", str(fw_guest))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "S"
    assert "[fw]" not in proc.stdout
    assert [line for line in proc.stderr.splitlines() if line.startswith("[fw] ")] == [
        "[fw] Booting the firmware", "[fw] half a line", "[fw] unfinished"]


def test_run_json_has_the_firmware_log(fw_guest):
    proc = cli("run", str(fw_guest), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["firmware_log"] == "Booting the firmware\nhalf a line\nunfinished"
    assert out["serial"] == "S\n"
    assert "[fw]" not in proc.stderr


@pytest.mark.parametrize("engine", ["reference", "impl"])
@pytest.mark.parametrize("text, seen_in", [("half a li", "firmware log"),
                                           ("S\n", "serial output")])
def test_until_stops_the_run_with_exit_0(fw_guest, engine, text, seen_in):
    proc = cli("run", str(fw_guest), "--engine", engine, "--until", text, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["exit"]["reason"] == "until" and out["exit"]["seen_in"] == seen_in
    assert out["exit"]["domain"] == "destroyed"
    # stopped there: the rest of the log never came, the guest never powered off
    assert "unfinished" not in out["firmware_log"]
    if seen_in == "firmware log":
        assert out["firmware_log"].endswith(text) and out["serial"] == "S\n"
    else:
        assert out["firmware_log"] == "Booting the firmware\nhalf a "


def test_until_that_never_appears_exits_1(fw_guest):
    proc = cli("run", str(fw_guest), "--until", "No bootable device")
    assert proc.returncode == 1
    assert "powered off" in proc.stdout and "Traceback" not in proc.stderr


def test_until_sees_the_screen():
    proc = cli("run", "demo", "--until", "ticks (IRQ0, HLT)", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["exit"]["reason"] == "until" and out["exit"]["seen_in"] == "screen"
    assert "powering off" not in out["serial"]


def test_until_is_in_the_help():
    proc = cli("run", "--help")
    assert "--until TEXT" in proc.stdout and "firmware" in proc.stdout
    proc = cli("run", "hello", "--until", "")
    assert proc.returncode == 2 and "--until" in proc.stderr


# --- QEMU's isa-debugcon as the peer ---------------------------------------------------------
#
# QEMU runs the same firmware file with a debug console at 0x402 and one at
# 0x500 (the VGA BIOS's log), on a pc machine made as close to hvmspec's as
# its options allow (hvmspec/qemu_peer.py: 16 MiB, no APIC, a COM1, the std
# VGA in slot 2, the boot order of the CMOS). Lines only one machine prints, and values that
# follow a device only one of them has, are masked, each with its reason;
# every other line must be the same, in order, port by port, from the
# banner to "No bootable device".

SEABIOS, VGABIOS = hvmloader.FIRMWARE["seabios"], hvmloader.VGABIOS
#: the VGA BIOS of each: the default (SeaBIOS: its vgabios-stdvga.bin as the VGA's
#: expansion ROM, as QEMU's romfile; rombios: the LGPL vgabios at 0xC0000)
OUR_VGABIOS = {"seabios": None, "rombios": None}
#: both run to "No bootable device" (hvmspec's halted waits are idle jumps)
END = "No bootable device"
#: (pattern, reason): lines only QEMU prints
ONLY_QEMU = [
    (r"Running on QEMU \(i440fx\)", "SeaBIOS knows QEMU by its i440FX's subsystem ID "
     "1af4:1100, which Xen 3.0.4's qemu-dm did not give it"),
    (r"Found QEMU fw_cfg|QEMU fw_cfg DMA interface supported|qemu/e820: .*",
     "Xen 3.x's qemu-dm has no fw_cfg (ports 0x510/0x511)"),
    (r"Moving pm_base to .*", "SeaBIOS learns QEMU's PM base through fw_cfg"),
]
#: (pattern, reason): lines only hvmspec prints
ONLY_HVMSPEC = [
    (r"RamSize: 0x[0-9a-f]+ \[cmos\]", "without fw_cfg SeaBIOS reads the RAM size from CMOS"),
    (r"ACPI DSDT=0x[0-9a-f]+|Copying ACPI RSDP from .*", "without fw_cfg SeaBIOS builds its "
     "own ACPI tables (it found the PIIX4 PM function); QEMU hands it QEMU's"),
    (r"PCI: (map device|init) bdf=00:03\.0 .*|PCI: bus=0 devfn=0x18: .*",
     "hvmspec's test device 00:03.0"),
]
#: (pattern, reason): lines dropped on both sides
BOTH = [
    (r"Returned \d+ bytes of ZoneHigh|e820 map has \d+ items:|  \d: [0-9a-f]{16} - [0-9a-f]{16} = .*",
     "the e820 map: QEMU's ACPI tables (through fw_cfg) take the top 128 KiB of RAM"),
]
#: (pattern, reason): values masked on both sides (the group ``v``)
VALUES = [
    (r"Found (?P<v>\d+) PCI devices", "the PCI functions above"),
    (r"PCI: init bdf=00:01\.(?P<v>[23]) id=8086:7113", "the PIIX4 PM function is 00:01.2 in "
     "Xen 3.0.4's qemu-dm, 00:01.3 in QEMU 7.2"),
    (r"PCI: bus=0 devfn=(?P<v>0x0[ab]): vendor_id=0x8086 device_id=0x7113", "the same"),
    (r"Using pmtimer, ioport (?P<v>0x[0-9a-f]+)", "SeaBIOS moves the PM block to 0xb000 by "
     "PMBA (timer 0xb008) on hvmspec; on QEMU fw_cfg tells it to use 0x600 (timer 0x608)"),
    (r"bdf=00:02\.0  bar 6, addr (?P<v>[0-9a-f]+)", "the test device's BAR0 takes the top "
     "page, so the VGA's expansion ROM goes below it"),
    (r"Copying MPTABLE from 0x[0-9a-f]+/(?P<v>[0-9a-f]+)", "SeaBIOS sizes its SMBIOS tables "
     "from fw_cfg on QEMU, and allocates the MP table after them"),
    (r"Copying SMBIOS from 0x[0-9a-f]+ to (?P<v>0x[0-9a-f]+)", "the same"),
    (r"bios_table_cur_addr: (?P<v>0x[0-9a-f]+)", "rombios32's ACPI RSDP takes room on QEMU"),
    (r"Space available for UMB: c[0-9a-f]000-ee800, f6280-(?P<v>[0-9a-f]+)", "follows the SMBIOS "
     "tables' size"),
]


def _qemu_logs(name: str, bios: str, tmp_path: Path, extra: tuple = ()) -> dict[int, str]:
    """The logs QEMU's isa-debugcon devices take from ``bios``, by port,
    once the one at 0x402 says there is no bootable device (or after 60 s
    of the host's time): :func:`hvmspec.qemu_peer.run_to_line`."""
    return qemu_peer.run_to_line(peer("qemu-system-i386"), name, bios, tmp_path, END,
                                 extra=extra).logs


def _our_logs(image, **kwargs) -> dict[int, str]:
    """hvmspec's firmware log (impl) by port, once the line on 0x402 that
    says there is no bootable device is whole (stopped there, as ``--until``
    stops a run), or where the run ends. A halted BIOS's waits are idle
    jumps of the clock, so the budget is large."""
    control = RunControl()
    line = []

    def listener(event):
        if isinstance(event, trace.FirmwareLog) and event.port == 0x402:
            line.append(chr(event.byte))
            if event.byte == 10:
                if END in "".join(line):
                    control.request_stop("no bootable device")
                line.clear()
    events = run("impl", image, listeners=[listener], control=control,
                 max_instructions=4_000_000_000, **kwargs).trace
    return {port: "".join(chr(e.byte) for e in events
                          if isinstance(e, trace.FirmwareLog) and e.port == port)
            for port in LOG_PORTS}


def _comparable(text: str, only: list) -> list[str]:
    out = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n") or any(re.fullmatch(p, line[:-1]) for p, _ in only + BOTH):
            continue
        for pattern, _ in VALUES:
            m = re.search(pattern, line)
            if m:
                line = line[:m.start("v")] + "#" + line[m.end("v"):]
        out.append(line)
    return out


@pytest.mark.parametrize("name", ["seabios", "rombios"])
def test_firmware_log_is_qemus_where_the_hardware_is_the_same(name, tmp_path):
    bios = peer_file(*hvmloader.FIRMWARE[name])
    peer_file(*VGABIOS)
    ours = _our_logs(hvmloader.load_firmware(hvmloader.choose(name, OUR_VGABIOS[name])))
    theirs = _qemu_logs(name, bios, tmp_path)
    for port in LOG_PORTS:
        mine, qemu = _comparable(ours[port], ONLY_HVMSPEC), _comparable(theirs[port], ONLY_QEMU)
        assert mine == qemu, f"port {port:#x}:\n" + "\n".join(difflib.unified_diff(
            qemu, mine, "QEMU", "hvmspec", lineterm=""))
    # all of POST on both, to the end, and the VGA BIOS's log where it ran
    assert END in ours[0x402].splitlines()[-1], ours[0x402]
    if name == "rombios":
        assert ours[0x500].startswith("VGABios $Id: ")


#: (pattern, reason): lines only QEMU prints when there are drives
ONLY_QEMU_DRIVES = [
    (r"IDE time out", "rombios's ata_reset waits for BSY while it holds SRST: Xen 3.0.4's "
     "drives show BSY|DSC then, QEMU 7.2's reset at once and never show BSY, so the wait "
     "times out (tests/test_ide.py: test_srst_and_nien)"),
]


def test_rombios_takes_the_drives_translation_from_cmos(tmp_path):
    """rombios's ATA driver reads the BIOS translation of each drive from
    CMOS 0x39 (cmos_init's bytes, spec.devices.cmos) and logs the drive's
    physical and logical geometry: a 1 GiB disk of default geometry (2080
    cylinders: LBA, logically 1024/32/63) and a 4 MiB one whose MBR gives 4
    heads of 17 sectors (none). The whole log is QEMU 7.2's for the same
    -drive options, but for the lines masked with their reasons."""
    from spec.xend import Disk
    big, small = tmp_path / "big.img", tmp_path / "small.img"
    for path, size in ((big, 1 << 30), (small, 4 << 20)):
        with path.open("wb") as f:
            f.truncate(size)
    with small.open("r+b") as f:                  # one partition ending on head 3, sector 17
        f.seek(0x1BE)
        f.write(bytes([0, 0, 0, 0, 0, 3, 17, 0, 0, 0, 0, 0, 1, 0, 0, 0]))
        f.seek(510)
        f.write(b"\x55\xaa")
    bios = peer_file(*hvmloader.FIRMWARE["rombios"])
    peer_file(*VGABIOS)
    ours = _our_logs(hvmloader.load_firmware(hvmloader.choose("rombios", None)),
                     device_model={"disks": (Disk("hda", "disk", "w", str(big)),
                                             Disk("hdb", "disk", "w", str(small))),
                                   "boot": "c"})
    theirs = _qemu_logs("rombios", bios, tmp_path, (
        "-drive", f"file={big},if=ide,index=0,format=raw",
        "-drive", f"file={small},if=ide,index=1,format=raw"))
    drives = [line for line in ours[0x402].splitlines() if line.startswith("ata0-")]
    assert drives == ["ata0-0: PCHS=2080/16/63 translation=lba LCHS=1024/32/63",
                      "ata0-1: PCHS=120/4/17 translation=none LCHS=120/4/17"]
    mine = _comparable(ours[0x402], ONLY_HVMSPEC)
    qemu = _comparable(theirs[0x402], ONLY_QEMU + ONLY_QEMU_DRIVES)
    assert mine == qemu, "\n".join(difflib.unified_diff(qemu, mine, "QEMU", "hvmspec",
                                                        lineterm=""))


def test_seabios_banner_on_both_engines():
    peer_file(*SEABIOS)
    image = hvmloader.load_firmware(hvmloader.choose("seabios", "none"))
    log = both(image, max_instructions=20_000).firmware_log
    assert log.startswith("SeaBIOS (version ") and "\nBUILD: " in log


def test_live_lines_leave_out_carriage_returns():
    """The VGA BIOS ends its lines with CR LF and starts the next with CR: on
    a terminal a CR would let the live area overwrite the line."""
    import io
    from hvmspec.commands.run import _LiveFirmwareLog
    out = io.StringIO()
    live = _LiveFirmwareLog(lambda: out)
    for byte in b"VGABios\r\nVBE\n\r":
        live(trace.FirmwareLog(by="qemu-dm", port=0x500, byte=byte))
    live(trace.FirmwarePanic(port=0x501, line=7))
    live.close()
    assert out.getvalue() == "[fw] VGABios\n[fw] VBE\n[fw] \n[fw] VGA BIOS panic, line 7\n"
