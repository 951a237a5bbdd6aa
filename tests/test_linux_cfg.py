"""guests/configs/linux.cfg: the bundled configuration that boots the
Linux CD hvmspec builds (file:@linux.iso), as xm create reads it."""

from __future__ import annotations

import os

import pytest

from hvmspec import linux_iso
from spec.loader import GUESTS_DIR
from spec.xm_config import ConfigFileError, parse
from tests.conftest import cli

CFG = GUESTS_DIR / "configs" / "linux.cfg"


@pytest.fixture(scope="module")
def linux_cd():
    try:
        return linux_iso.linux_iso()
    except linux_iso.LinuxIsoUnavailable as exc:
        if os.environ.get("HVMSPEC_REQUIRE_PEERS") == "1":
            pytest.fail(f"the Linux CD cannot be built here: {exc} and HVMSPEC_REQUIRE_PEERS=1")
        pytest.skip(f"the Linux CD cannot be built here: {exc}")


def test_linux_cfg_names_the_built_cd(linux_cd):
    text = linux_iso.resolve_artifacts(CFG.read_text(), str(CFG))
    config = parse(text, str(CFG), CFG.parent)
    assert (config.name, config.memory_mib, config.boot) == ("linux", 128, "d")
    assert os.path.basename(config.kernel) == "hvmloader" and config.bios == "rombios"
    [cd] = config.disks
    assert (cd.dev, cd.kind, cd.mode, cd.path) == ("hdc", "cdrom", "r", linux_cd.iso)


def test_the_placeholder_alone_is_not_a_file():
    """xend reading the file as written (no xm client to build the CD)
    refuses the disk, naming it."""
    with pytest.raises(ConfigFileError) as info:
        parse(CFG.read_text(), "linux.cfg", CFG.parent)
    assert "linux.cfg:11: disk: " in str(info.value) and "@linux.iso" in str(info.value)


def test_run_cdrom_unknown_built_image_is_a_usage_error():
    proc = cli("run", "hello", "--cdrom", "@nosuch.iso")
    assert proc.returncode == 2
    assert "--cdrom @nosuch.iso: no such built image (known: @linux.iso, @memtest.iso)" \
        in proc.stderr
