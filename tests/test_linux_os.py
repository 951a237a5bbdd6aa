"""Whole-OS runs beyond the one boot ``make test`` keeps (tests/test_linux_boot.py):
each is several minutes on impl, so they carry the ``os`` marker, which
``make test`` leaves out and ``make os`` runs.

* SeaBIOS boots the CD on impl to the prompt, and the session runs: the
  path that needs the GPE0 block (spec.devices.acpi: with SeaBIOS's FADT and
  no GPE0 block, Linux ejected every PCI slot and had no CD drive).
"""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import HVMSPEC
from tests.test_linux_qemu import SESSION, check_output, linux_cd  # noqa: F401 - a fixture


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
