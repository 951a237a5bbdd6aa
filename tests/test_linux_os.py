"""Whole-OS runs beyond the one boot ``make test`` keeps (tests/test_linux_boot.py):
each is several minutes on impl, so they carry the ``os`` marker, which
``make test`` leaves out and ``make os`` runs.

* SeaBIOS boots the CD on impl to the prompt, and the session runs: the
  path that needs the GPE0 block (spec.devices.acpi: with SeaBIOS's FADT and
  no GPE0 block, Linux ejected every PCI slot and had no CD drive).
* ``reboot`` typed at the shell of ``xm create linux``: Linux resets the
  machine, qemu-dm asks Xen to shut the domain down with reason reboot, and
  xend, by the config's ``on_reboot = 'restart'``, destroys it and creates
  it again with a new domid, which boots the CD's Linux once more.
* memtest86+ from its CD on impl (16 MiB, rombios) to the start of its test
  #10, the bit fade, with its screen (replayed from COM1) equal to QEMU's
  at the same point once the fields hvmspec.linux_iso.MEMTEST_DIFFERENCES
  explains are masked: impl answers its RDTSCs in the C clock.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from hvmspec import linux_iso, qemu_peer
from hvmspec.serial_script import parse
from tests.conftest import HVMSPEC, peer, peer_file
from tests.test_linux_boot import _history, _xm, linux_domain
from tests.test_linux_qemu import SESSION, _unavailable, check_output, linux_cd  # noqa: F401

#: host seconds a boot to the prompt may take on a loaded two-core machine
BOOT_TIMEOUT = 1800


@pytest.mark.os
def test_seabios_boots_the_cd_on_impl_and_runs_the_session(linux_cd, tmp_path):  # noqa: F811
    script = tmp_path / "session.script"
    script.write_text(SESSION.replace("timeout 180", "timeout 1800"))
    proc = subprocess.run([HVMSPEC, "run", "--firmware", "seabios", "--engine", "impl",
                           "--cdrom", str(linux_cd.iso), "--boot", "d", "--memory", "128",
                           "--serial-script", str(script),
                           "--max-instructions", "40000000000"],
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    check_output(proc.stdout)
    assert "scsi host0: ata_piix" in proc.stdout
    assert "powered off" in proc.stdout


@pytest.mark.os
def test_reboot_in_linux_restarts_the_domain_through_xend(linux_cd, tmp_path):  # noqa: F811
    with linux_domain(tmp_path):
        script = tmp_path / "reboot.script"
        script.write_text(f"timeout {BOOT_TIMEOUT}\nexpect hvmspec-linux# \nsend reboot\n")
        console = _xm(tmp_path, "console", "linux", "--script", str(script),
                      timeout=BOOT_TIMEOUT * 2)
        assert console.returncode == 0, console.stderr
        deadline = time.time() + 600
        while time.time() < deadline and (2, "created", "running", "") not in _history(tmp_path):
            time.sleep(1)
        history = _history(tmp_path)
        assert history[:7] == [
            (1, "none", "created", ""), (1, "created", "running", ""),
            (1, "running", "shutdown", "reboot"),
            (1, "shutdown", "dying", "on_reboot = restart"),
            (2, "none", "created", ""), (2, "created", "running", ""),
            (1, "dying", "destroyed", "released")] or (
            history[:6] == [
                (1, "none", "created", ""), (1, "created", "running", ""),
                (1, "running", "shutdown", "reboot"),
                (1, "shutdown", "dying", "on_reboot = restart"),
                (1, "dying", "destroyed", "released"),
                (2, "none", "created", "")] and (2, "created", "running", "") in history), \
            history
        first = json.loads(_xm(tmp_path, "console", "1", "--json").stdout)["output"]
        assert "reboot: Restarting system" in first.replace("\r", "")
        again = tmp_path / "again.script"
        again.write_text(f"timeout {BOOT_TIMEOUT}\nexpect Run /init as init process\n")
        second = _xm(tmp_path, "console", "linux", "--script", str(again),
                     timeout=BOOT_TIMEOUT * 2)
        assert second.returncode == 0, second.stderr
        assert "Linux version 6." in second.stdout
        assert _xm(tmp_path, "destroy", "linux").returncode == 0


#: the point of memtest86+'s first pass where both screens are compared
MEMTEST_POINT = "#10 [Bit fade test, 2 patterns]"
#: instructions for impl to get there (it does in about 2.9e10: 416 s here)
MEMTEST_BUDGET = 30_000_000_000


@pytest.mark.os
def test_memtest_reaches_the_bit_fade_on_impl_with_qemus_screen(tmp_path):
    try:
        cd = linux_iso.memtest_iso()
    except linux_iso.LinuxIsoUnavailable as exc:
        _unavailable(f"the memtest86+ CD cannot be built here: {exc}")
    proc = subprocess.run([HVMSPEC, "run", "--firmware", "rombios", "--engine", "impl",
                           "--cdrom", str(cd.iso), "--boot", "d", "--memory", "16", "--json",
                           "--max-instructions", str(MEMTEST_BUDGET)],
                          capture_output=True, text=True, timeout=3600)
    ours = json.loads(proc.stdout)
    # (--until would stop the run when the VGA shows the point, before
    # memtest86+'s next refresh of its mirror on COM1 shows it)
    assert ours["exit"]["reason"] == "limit", (ours["exit"], proc.stderr[-2000:])
    qemu = peer("qemu-system-x86_64")
    peer_file("/usr/share/bochs/BIOS-bochs-latest", "bochsbios")
    args = qemu_peer.os_args("rombios", str(cd.iso))
    args[args.index("-m") + 1] = "16"
    theirs = qemu_peer.run_serial_script(
        qemu, args, parse(f"timeout 600\nexpect {MEMTEST_POINT}\n", "memtest"), tmp_path,
        wait_end=False)
    screen = linux_iso.memtest_screen(ours["serial"], MEMTEST_POINT)
    assert screen == linux_iso.memtest_screen(theirs.serial, MEMTEST_POINT)
    assert "Memory  :   16MB" in screen[5] and "Pass:  0        Errors: 0" in screen[8]
