"""Debian's Linux from the CD on impl, as a Xen user ran an HVM guest: ``hvmspec
xend``, ``xm create linux``, ``xm console`` typing into the shell, ``poweroff``
through the ACPI tables, qemu-dm's PM1a and Xen to xend, which destroys the
domain (issue 21). The same CD and script on QEMU give the same serial log,
line by line, but for the differences hvmspec.linux_iso.QEMU_DIFFERENCES lists
with their reasons.

One boot, made once for the module (about 13.4e9 instructions; several
minutes): the slowest module of ``make test``, started first.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from hvmspec import linux_iso, qemu_peer
from hvmspec.serial_script import parse
from tests.conftest import HVMSPEC, peer, peer_file
from tests.test_linux_qemu import SESSION, check_session, linux_cd  # noqa: F401 - a fixture

#: host seconds the boot may take on a loaded two-core machine (CI)
BOOT_TIMEOUT = 1500


def _xm(where: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([HVMSPEC, "xm", "--dir", str(where), *args], capture_output=True,
                          text=True, timeout=timeout)


def _history(where: Path) -> list[tuple]:
    reply = json.loads(_xm(where, "history", "--json").stdout)
    return [(e["dom"], e["old"], e["new"], e["reason"]) for e in reply["events"]]


@contextlib.contextmanager
def linux_domain(where: Path):
    """``hvmspec xend`` in ``where`` and ``xm create linux`` there; xend
    stops when the block ends."""
    xend = subprocess.Popen([HVMSPEC, "xend", "--dir", str(where), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        json.loads(xend.stdout.readline())
        created = _xm(where, "create", "linux", timeout=600)
        assert created.returncode == 0, created.stderr
        yield
    finally:
        xend.terminate()
        xend.communicate(timeout=60)


@pytest.fixture(scope="module")
def session(linux_cd, tmp_path_factory):  # noqa: F811 - the fixture imported above
    """``xm create linux``, then ``xm console linux --script`` with the
    session: the prompt, three commands, ``poweroff``; then xend's history
    once the domain is gone."""
    where = tmp_path_factory.mktemp("xend")
    with linux_domain(where):
        script = where / "session.script"
        script.write_text(SESSION.replace("timeout 180", f"timeout {BOOT_TIMEOUT}"))
        started = time.perf_counter()
        console = _xm(where, "console", "linux", "--script", str(script),
                      timeout=BOOT_TIMEOUT * 2)
        seconds = time.perf_counter() - started
        deadline = time.time() + 300
        while time.time() < deadline and not any(h[2] == "destroyed" for h in
                                                 _history(where)):
            time.sleep(1)
        final = json.loads(_xm(where, "console", "1", "--json").stdout)
        yield {"console": console, "output": final["output"], "history": _history(where),
               "seconds": seconds, "list": _xm(where, "list").stdout}


@pytest.mark.slow
def test_xm_create_linux_boots_to_the_prompt_and_runs_the_commands(session):
    console = session["console"]
    assert console.returncode == 0, (console.stderr, session["output"][-2000:])
    out = session["output"].replace("\r", "")
    # the CD's init found the drive through ata_piix, sr_mod and the IDE
    assert linux_iso.MARKER + ": modules scsi_common scsi_mod libata" in out
    assert "cd sr0" in out
    assert "Linux (none) 6." in out and "x86_64 GNU/Linux" in out
    # the 8259 pair delivers every interrupt: the timer, and the IDE
    # channels' interrupts (ata_piix, IRQ 14 and 15)
    interrupts = out[out.index("cat /proc/interrupts"):]
    assert re.search(r"^ +0: +[1-9]\d* +XT-PIC +timer$", interrupts, re.M)
    assert re.search(r"^ +1[45]: +[1-9]\d* +XT-PIC +ata_piix$", interrupts, re.M)
    assert "IO-APIC" not in out
    assert "100+0 records in\n100+0 records out" in out


@pytest.mark.slow
def test_poweroff_goes_through_acpi_to_xend_which_destroys_the_domain(session):
    out = session["output"].replace("\r", "")
    assert "ACPI: PM: Preparing to enter system sleep state S5" in out
    assert "reboot: Power down" in out
    assert session["history"][-3:] == [
        (1, "running", "shutdown", "poweroff"),
        (1, "shutdown", "dying", "on_poweroff = destroy"),
        (1, "dying", "destroyed", "released")]
    assert "linux" not in session["list"]


@pytest.fixture(scope="module")
def qemu_session(linux_cd, tmp_path_factory):  # noqa: F811 - the fixture imported above
    """The same CD and session on QEMU with rombios (the platform's shape:
    :data:`hvmspec.qemu_peer.OS_MACHINE`)."""
    qemu = peer("qemu-system-x86_64")
    peer_file("/usr/share/bochs/BIOS-bochs-latest", "bochsbios")
    peer_file("/usr/share/vgabios/vgabios.bin", "vgabios")
    return qemu_peer.run_serial_script(qemu, qemu_peer.os_args("rombios", linux_cd.iso),
                                       parse(SESSION, "session"),
                                       tmp_path_factory.mktemp("qemu"))


@pytest.mark.slow
def test_the_same_cd_boots_on_qemu_with_rombios_and_runs_the_script(qemu_session):
    check_session(qemu_session)


@pytest.mark.slow
def test_the_serial_log_is_qemus_line_by_line_but_for_the_documented_differences(
        session, qemu_session):
    """Both logs after normalise (timing-dependent lines out): every line
    that differs is one of hvmspec.linux_iso.QEMU_DIFFERENCES, each with its
    reason, and each of those still occurs (none is stale)."""
    explained, unexplained, unused = linux_iso.compare_with_qemu(session["output"],
                                                                 qemu_session.serial)
    ours = linux_iso.normalise(session["output"])
    assert len(ours) > 300
    report = "\n".join(f"{side}: {line}" for side, line in unexplained)
    assert not unexplained, "differences without a reason:\n" + report
    assert not unused, f"documented differences that no longer occur: {unused}"
    # what is left equal is most of the log
    assert len(explained) < len(ours) // 8
