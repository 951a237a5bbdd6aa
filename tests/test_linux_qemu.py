"""The Linux CD (hvmspec.linux_iso) built from Debian's packages, serial
scripts (hvmspec.serial_script), and the CD booting on QEMU to a shell
that runs the script's commands and powers off through ACPI, with SeaBIOS
and with rombios (issue 21)."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hvmspec import linux_iso, qemu_peer
from hvmspec.serial_script import EngineScript, ScriptError, ScriptLine, parse
from tests.conftest import ROOT, peer, peer_file

#: the script of a session: the prompt, three commands, power off
SESSION = """\
# boot to the prompt, three commands, power off
timeout 180
expect hvmspec-linux# \n\
send uname -a
expect hvmspec-linux# \n\
send cat /proc/interrupts
expect hvmspec-linux# \n\
send dd if=/dev/sr0 of=/dev/null bs=2048 count=100
expect hvmspec-linux# \n\
send poweroff
"""


def _unavailable(message: str):
    if os.environ.get("HVMSPEC_REQUIRE_PEERS") == "1":
        pytest.fail(message + " and HVMSPEC_REQUIRE_PEERS=1")
    pytest.skip(message)


@pytest.fixture(scope="module")
def linux_cd() -> linux_iso.Built:
    try:
        return linux_iso.linux_iso()
    except linux_iso.LinuxIsoUnavailable as exc:
        _unavailable(f"the Linux CD cannot be built here: {exc}")


@pytest.fixture(scope="module")
def seabios_session(linux_cd, tmp_path_factory) -> qemu_peer.ScriptRun:
    """The session script on QEMU with SeaBIOS (once per module). The same
    session with rombios on QEMU is booted by tests/test_linux_boot.py,
    which compares it with impl's: one boot serves both."""
    qemu = peer("qemu-system-x86_64")
    peer_file("/usr/share/seabios/bios.bin", "seabios")
    work = tmp_path_factory.mktemp("linux-seabios")
    return qemu_peer.run_serial_script(
        qemu, qemu_peer.os_args("seabios", linux_cd.iso), parse(SESSION, "session"), work)


# --- the script language ---------------------------------------------------------------

def test_script_steps_and_escapes():
    steps = parse("# c\n\nexpect login: \nsend root\ntype \\x03\\e[A\ntimeout 5\nexpect $ ",
                  "s")
    assert [(s.kind, s.data, s.where) for s in steps] == [
        ("expect", b"login: ", "s:3"), ("send", b"root\r", "s:4"),
        ("type", b"\x03\x1b[A", "s:5"), ("expect", b"$ ", "s:7")]
    assert steps[0].timeout == 60.0 and steps[3].timeout == 5.0


@pytest.mark.parametrize("text, message", [
    ("expect a\nwait 3\n", "s:2: unknown command 'wait' (one of: expect, send, type, timeout)"),
    ("expect\n", "s:1: expect needs the text to wait for"),
    ("send a\ntimeout soon\n", "s:2: timeout needs a number of seconds > 0, not 'soon'"),
    ("timeout 0\n", "s:1: timeout needs a number of seconds > 0, not '0'"),
    ("send \\q\n", "s:1: unknown escape \\q"),
    ("send a\\\n", "s:1: a lone backslash ends the line"),
    ("type \n", "s:1: type needs the text to type"),
    ("send caf\u00e9\u2603\n", "s:1: only 8-bit characters"),
])
def test_script_errors_name_the_line(text, message):
    with pytest.raises(ScriptError) as info:
        parse(text, "s")
    assert message in str(info.value)


def test_script_answers_at_the_byte_that_completes_the_text():
    line = ScriptLine(parse("send first\nexpect $ \nsend ls\ntype q\nexpect done", "s"))
    assert line.start() == b"first\r"
    answers = [line.output(b) for b in b"boot... $$ "]
    # the answer comes with the last byte of "$ ", not before
    assert answers[:-1] == [b""] * 10 and answers[-1] == b"ls\rq"
    assert line.waiting.where == "s:5"
    for b in b"not yet: don":
        assert line.output(b) == b""
    assert not line.done and line.output(ord("e")) == b"" and line.done
    assert [(s.where, n) for s, n in line.matched] == [("s:2", 11), ("s:5", 24)]


def test_script_unfinished_names_the_expect():
    line = ScriptLine(parse("expect login:\nsend root\nexpect # ", "boot.script"))
    for b in b"login:":
        line.output(b)
    assert line.unfinished("the run ended") == \
        "serial script: boot.script:3: expect '# ' never matched (the run ended)"


def test_engine_script_gives_its_first_sends_once_and_never_waits():
    source = EngineScript(parse("send a\nexpect b\nsend c", "s"))
    assert source.start() == b"a\r" and source.start() == b"" and source.read() == b""
    assert source.wait(10.0) is False
    assert source.on_output(ord("b")) == b"c\r"


# --- the CD ----------------------------------------------------------------------------

def test_builder_without_apt_or_cache_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("HVMSPEC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))       # no apt-cache, no xorriso
    with pytest.raises(linux_iso.LinuxIsoUnavailable) as info:
        linux_iso.linux_iso()
    assert str(info.value) == (
        f"no version of {', '.join(linux_iso.PACKAGES)} in apt's lists (run apt-get update): "
        "apt-cache is "
        f"not installed; and no linux CD is cached in {tmp_path / 'cache' / 'linux'}")


def test_builder_command_fails_cleanly(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), HVMSPEC_CACHE=str(tmp_path), PATH=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "hvmspec.linux_iso", "--json"],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("hvmspec.linux_iso: no version of linux-image-amd64")
    assert "Traceback" not in proc.stderr


def test_newc_archive_layout():
    data = linux_iso.newc([("dev", 0o40755, b"", (0, 0)),
                           ("dev/console", 0o20600, b"", (5, 1)),
                           ("init", 0o100755, b"#!/bin/sh\n", (0, 0))])
    entries, pos = [], 0
    while True:
        header = data[pos:pos + 110]
        assert header[:6] == b"070701"
        f = [int(header[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = f[11], f[6]
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += -pos % 4
        entries.append((name, f[1], f[9], f[10], data[pos:pos + filesize]))
        pos += filesize + (-filesize % 4)
        if name == "TRAILER!!!":
            break
    assert pos == len(data)
    assert entries == [("dev", 0o40755, 0, 0, b""), ("dev/console", 0o20600, 5, 1, b""),
                       ("init", 0o100755, 0, 0, b"#!/bin/sh\n"), ("TRAILER!!!", 0, 0, 0, b"")]


def test_cd_is_built_and_cached(linux_cd):
    iso = Path(linux_cd.iso)
    assert iso.exists() and linux_cd.size == iso.stat().st_size > 8 << 20
    assert set(linux_cd.versions) >= {"busybox-static", "isolinux", "syslinux-common"}
    kernel = next(p for p in linux_cd.versions if p.startswith("linux-image-"))
    assert kernel == f"linux-image-{linux_cd.kernel}"
    # each module after what it depends on (Debian's package has no modules.dep)
    order = list(linux_cd.modules)
    assert order.index("scsi_common") < order.index("scsi_mod") < order.index("libata") \
        < order.index("ata_piix") and order.index("cdrom") < order.index("sr_mod")
    assert "noapic" in linux_cd.cmdline and "nolapic" in linux_cd.cmdline
    # El Torito: the boot record volume descriptor at sector 17
    with iso.open("rb") as f:
        f.seek(17 * 2048)
        assert f.read(32)[:30] == b"\0CD001\x01EL TORITO SPECIFICATION"[:30]
    mtime = iso.stat().st_mtime_ns
    again = linux_iso.linux_iso()
    assert again.iso == linux_cd.iso and iso.stat().st_mtime_ns == mtime


def test_initramfs_holds_the_userland(linux_cd, tmp_path):
    xorriso = peer("xorriso")
    subprocess.run([xorriso, "-osirrox", "on", "-indev", linux_cd.iso, "-extract",
                    "/boot/initrd.gz", str(tmp_path / "initrd.gz")],
                   check=True, capture_output=True)
    raw = gzip.decompress((tmp_path / "initrd.gz").read_bytes())
    assert len(raw) > len(gzip.decompress(gzip.compress(b""))) and raw[:6] == b"070701"
    for name in (b"init\0", b"bin/busybox\0", b"dev/console\0", b"etc/inittab\0",
                 b"lib/modules/sr_mod.ko\0", b"lib/modules/isofs.ko\0"):
        assert name in raw


# --- QEMU --------------------------------------------------------------------------------

def check_output(out: str) -> None:
    """What the session's serial output must show, on any engine or peer
    with either firmware: the CD's drive found, the commands' output, the
    ACPI power-off."""
    out = out.replace("\r", "")
    assert linux_iso.MARKER + ": modules scsi_common scsi_mod libata" in out
    assert "cd sr0" in out
    assert "Linux (none) 6." in out and "x86_64 GNU/Linux" in out
    # the 8259 pair delivers every interrupt: no IO-APIC, no local APIC timer
    assert " XT-PIC      timer" in out and "IO-APIC" not in out
    assert "100+0 records in\n100+0 records out" in out
    # a plain poweroff: busybox init (PID 1) powers off through ACPI S5
    assert "ACPI: PM: Preparing to enter system sleep state S5" in out
    assert "reboot: Power down" in out


def check_session(run: qemu_peer.ScriptRun) -> None:
    """The session on QEMU: every expect matched, the output
    (:func:`check_output`), and QEMU ended by the guest's power-off."""
    assert [m[0] for m in run.matched] == ["session:3", "session:5", "session:7", "session:9"]
    check_output(run.serial)
    assert run.shutdown == "guest-shutdown" and run.status == 0


@pytest.mark.slow
def test_linux_boots_on_qemu_with_seabios_and_runs_the_script(seabios_session):
    check_session(seabios_session)


@pytest.mark.slow
def test_expect_that_never_matches_names_its_line(linux_cd, tmp_path):
    qemu = peer("qemu-system-x86_64")
    script = parse("timeout 3\nexpect no such text\nsend ls\n", "stuck.script")
    with pytest.raises(ScriptError) as info:
        qemu_peer.run_serial_script(qemu, qemu_peer.os_args("seabios", linux_cd.iso),
                                    script, tmp_path)
    assert str(info.value).startswith(
        "serial script: stuck.script:2: expect 'no such text' did not match in 3 s; "
        "COM1 ended with: ")


# --- normalising logs ----------------------------------------------------------------------

def test_normalise_rules():
    log = ("[    0.000000] Linux version 6.1.0\r\n"
           "[    0.004681] Calibrating delay loop (skipped), value calculated using timer "
           "frequency.. 4890.95 BogoMIPS (lpj=9781904)\r\n"
           "[    0.028000] tsc: Detected 2445.476 MHz processor\r\n"
           "[    2.930228] clocksource: Switched to clocksource tsc\r\n"
           "[    3.1] random: crng init done\r\n\r\n"
           "[    0.9] audit: type=2000 audit(1796303562.200:1): state=initialized\r\n"
           "[    2.1] rtc_cmos 00:04: setting system clock to 2026-12-03T13:12:50 UTC "
           "(1796303570)\r\n"
           "[    2.2] input: Power Button as /devices/LNXPWRBN:00/input/input1\r\n"
           "[    2.2] input: AT Translated Set 2 keyboard as /devices/serio0/input/input0\r\n"
           "[    2.3] rtc_cmos 00:04: registered as rtc0\r\n"
           "\x1b[6nhvmspec-linux# cat /proc/interrupts\r\n"
           "  0:       1266    XT-PIC      timer\r\n"
           "  1:          9    XT-PIC      i8042\r\n"
           "NMI:          0   Non-maskable interrupts   \r\n")
    assert linux_iso.normalise(log) == [
        "Linux version 6.1.0", "rtc_cmos 00:04: registered as rtc0",
        "hvmspec-linux# cat /proc/interrupts",
        "  0: N    XT-PIC      timer", "  1: N    XT-PIC      i8042",
        "NMI: N   Non-maskable interrupts",
        "input: AT Translated Set 2 keyboard as /devices/serio0/input/inputN",
        "input: Power Button as /devices/LNXPWRBN:00/input/inputN"]


@pytest.mark.slow
def test_normalised_boots_on_qemu_repeat(seabios_session, linux_cd, tmp_path):
    """Two boots with SeaBIOS on QEMU, whose timing differs with the host's
    load, give the same normalised log: what is left is behaviour."""
    again = qemu_peer.run_serial_script(
        peer("qemu-system-x86_64"), qemu_peer.os_args("seabios", linux_cd.iso),
        parse(SESSION, "session"), tmp_path)
    first, second = (linux_iso.normalise(r.serial) for r in (seabios_session, again))
    assert len(first) > 300
    import difflib
    diff = "\n".join(difflib.unified_diff(first, second, "first", "second", lineterm="", n=1))
    assert first == second, diff


# --- built images named in xm configurations ------------------------------------------------

def test_unknown_artifact_is_named_with_its_line():
    with pytest.raises(linux_iso.LinuxIsoUnavailable) as info:
        linux_iso.resolve_artifacts("builder = 'hvm'\ndisk = ['file:@nosuch.iso,hdc:cdrom,r']\n",
                                    "x.cfg")
    assert str(info.value) == \
        "x.cfg:2: @nosuch.iso: no such built image (known: @linux.iso, @memtest.iso)"


def test_artifact_that_cannot_be_built_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("HVMSPEC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(linux_iso.LinuxIsoUnavailable) as info:
        linux_iso.resolve_artifacts("disk = ['file:@memtest.iso,hdc:cdrom,r']", "m.cfg")
    assert str(info.value).startswith("m.cfg:1: @memtest.iso cannot be built: no version of ")


def test_artifact_resolves_to_the_built_cd(linux_cd):
    text = "name = 'linux'\ndisk = ['file:@linux.iso,hdc:cdrom,r']\nkernel = 'x@y'\n"
    assert linux_iso.resolve_artifacts(text) == \
        f"name = 'linux'\ndisk = ['file:{linux_cd.iso},hdc:cdrom,r']\nkernel = 'x@y'\n"


def test_linux_page_explains_every_kernel_option():
    page = (ROOT / "docs" / "linux.rst").read_text()
    missing = [o for o in linux_iso.KERNEL_OPTIONS if f"``{o}``" not in page]
    assert missing == []


@pytest.mark.slow
def test_memtest_starts_on_qemu(tmp_path):
    """memtest86+ from its CD: its screen, mirrored on COM1, names it, the
    127 MiB it tests and one core without SMP (no APIC). A whole pass takes
    about 9 minutes of its time here, too long for a test (docs/linux.rst)."""
    try:
        cd = linux_iso.memtest_iso()
    except linux_iso.LinuxIsoUnavailable as exc:
        _unavailable(f"the memtest86+ CD cannot be built here: {exc}")
    run = qemu_peer.run_serial_script(
        peer("qemu-system-x86_64"), qemu_peer.os_args("seabios", cd.iso),
        parse("timeout 180\nexpect Memtest86+ v6.10\nexpect Memory  :  127MB\n"
              "expect SMP: Disabled\nexpect Status: Testing\n", "memtest"),
        tmp_path, wait_end=False)
    assert [m[0] for m in run.matched] == ["memtest:2", "memtest:3", "memtest:4", "memtest:5"]
