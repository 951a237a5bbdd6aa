"""Disks from the xm config: images (spec.block), xm's disk list, xend's vbd
nodes in XenStore (checked with Debian's xenstore-ls / xenstore-read), qemu-dm's
drives on both engines, CD media change, and the CLI's --disk, --cdrom, --boot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from impl.machine import Host as ImplXen
from spec import block, dm_config, trace
from spec.loader import load
from spec.machine import ReferenceXen
from spec.xend import Disk, DomainConfig, XendError, check_disks, parse_disk
from spec.xm_config import ConfigFileError, parse
from spec.xs_client import XenstoreError
from tests.conftest import ROOT, both, cli, peer

ENGINES = {"reference": ReferenceXen, "impl": ImplXen}


def image(path: Path, size: int, fill: bytes = b"") -> Path:
    """A raw image of ``size`` bytes (sparse, or ``fill`` repeated)."""
    if fill:
        path.write_bytes((fill * (size // len(fill) + 1))[:size])
    else:
        with open(path, "wb") as f:
            f.truncate(size)
    return path


def as_nobody(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` (Python, spec importable) as the unprivileged user
    nobody: root reads and writes any file whatever its mode."""
    setpriv = peer("setpriv")
    return subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                           sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
                           + code], capture_output=True, text=True, timeout=60, cwd="/")


# --- spec.block: an image file as a medium ---------------------------------------------------

@pytest.mark.parametrize("kind,size,message", [
    ("disk", 0, "is empty (0 bytes)"),
    ("disk", 1000, "is 1000 bytes, not a whole number of 512-byte sectors (1 and 488 bytes)"),
    ("cdrom", 4096 + 512, "is 4608 bytes, not a whole number of 2048-byte sectors"),
])
def test_image_sizes_refused(tmp_path, kind, size, message):
    path = image(tmp_path / "x.img", size)
    with pytest.raises(block.ImageError) as err:
        block.open_image(path, kind, False)
    assert str(err.value).startswith(("disk image " if kind == "disk" else "CD-ROM image ")
                                     + str(path))
    assert message in str(err.value)


def test_image_missing_directory_and_fifo_refused(tmp_path):
    with pytest.raises(block.ImageError, match=r"disk image .*nope\.img: no such file$"):
        block.open_image(tmp_path / "nope.img", "disk", False)
    with pytest.raises(block.ImageError, match="is a directory, not an image file"):
        block.open_image(tmp_path, "disk", False)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(block.ImageError, match="not a regular file"):
        block.open_image(tmp_path / "fifo", "cdrom", False)
    with pytest.raises(block.ImageError, match="a CD-ROM is read-only"):
        block.open_image(image(tmp_path / "cd.iso", 2048), "cdrom", True)
    with pytest.raises(block.ImageError, match="a drive is a 'disk' or a 'cdrom'"):
        block.open_image(tmp_path / "cd.iso", "floppy", False)


def test_image_too_large_for_the_drive(tmp_path):
    """A CD's block address is 32 bits (READ CAPACITY): 2**32 blocks at most
    (a sparse file of 8 TiB and one block more)."""
    big = image(tmp_path / "big.iso", ((1 << 32) + 1) * 2048)
    with pytest.raises(block.ImageError, match=r"4294967297 sectors is too large for the "
                                               r"drive \(ATAPI's 32-bit block address"):
        block.open_image(big, "cdrom", False)
    os.truncate(big, (1 << 32) * 2048)
    assert block.open_image(big, "cdrom", False).sectors == 1 << 32


def test_image_permissions_as_an_ordinary_user():
    import shutil
    import tempfile
    tmp_path = Path(tempfile.mkdtemp(prefix="hvmspec-disks-"))   # pytest's is root's alone
    tmp_path.chmod(0o755)
    locked = image(tmp_path / "locked.img", 1024)
    locked.chmod(0o000)
    readonly = image(tmp_path / "ro.img", 1024)
    readonly.chmod(0o444)
    out = as_nobody(f"""
from spec import block
for path, writable in (({str(locked)!r}, False), ({str(readonly)!r}, True)):
    try:
        block.open_image(path, "disk", writable)
    except block.ImageError as exc:
        print(exc)
print(block.open_image({str(readonly)!r}, "disk", False).sectors)
""")
    shutil.rmtree(tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        f"disk image {locked}: cannot be read (permission denied)",
        f"disk image {readonly}: read-only for this user, and mode w writes to it (give mode "
        f"r, or make the file writable)",
        "2"]


def test_reads_are_bounds_checked(tmp_path):
    path = image(tmp_path / "d.img", 4 * 512, bytes(range(256)))
    disk = block.open_image(path, "disk", False)
    assert (disk.kind, disk.sector_size, disk.sectors, disk.read_only) == ("disk", 512, 4, True)
    assert disk.read(1, 2) == path.read_bytes()[512:1536]
    assert disk.read(4, 0) == b""
    for lba, count, message in ((3, 2, r"sectors 3\.\.4: beyond the end of the image "
                                        r"\(4 sectors\)"),
                                (4, 1, "beyond the end"), (-1, 1, "not a sector address"),
                                (0, -1, "not a sector address"), (1 << 60, 1, "beyond")):
        with pytest.raises(block.MediumError, match=message):
            disk.read(lba, count)


def test_writes_go_through_to_the_file_and_read_only_never_writes(tmp_path):
    path = image(tmp_path / "d.img", 4 * 512)
    disk = block.open_image(path, "disk", True)
    disk.write(2, b"\xAA" * 512)
    # at once, before any flush: the file is the disk
    assert path.read_bytes()[1024:1536] == b"\xAA" * 512
    assert disk.read(2, 1) == b"\xAA" * 512
    for lba, data, message in ((3, b"\x01" * 1024, "beyond the end"),
                               (0, b"\x01" * 100, "not whole 512-byte sectors"),
                               (-1, b"\x01" * 512, "not a sector address")):
        with pytest.raises(block.MediumError, match=message):
            disk.write(lba, data)
    disk.close()
    assert path.read_bytes() == bytes(1024) + b"\xAA" * 512 + bytes(512)
    before = path.read_bytes()
    ro = block.open_image(path, "disk", False)
    with pytest.raises(block.MediumError, match="the medium is read-only"):
        ro.write(0, b"\x55" * 512)
    assert path.read_bytes() == before
    cd = block.open_image(image(tmp_path / "c.iso", 2048, b"CD"), "cdrom", False)
    assert (cd.sector_size, cd.sectors, cd.read_only) == (2048, 1, True)
    with pytest.raises(block.MediumError, match="read-only"):
        cd.write(0, bytes(2048))


def test_an_empty_drive_and_a_medium_change(tmp_path):
    cd = block.empty_drive("cdrom")
    assert (cd.present, cd.sectors, cd.kind, cd.read_only) == (False, 0, "cdrom", True)
    with pytest.raises(block.MediumError, match="no medium in the drive"):
        cd.read(0, 1)
    cd.insert(image(tmp_path / "a.iso", 2 * 2048, b"A"))
    assert cd.present and cd.sectors == 2 and cd.read(1, 1) == b"A" * 2048
    assert cd.generation == 1
    with pytest.raises(block.ImageError, match="no such file"):
        cd.insert(tmp_path / "gone.iso")
    assert not cd.present and cd.generation == 2
    cd.insert(tmp_path / "a.iso")
    cd.eject()
    assert (cd.present, cd.path, cd.generation) == (False, None, 4)


# --- xm's disk list ---------------------------------------------------------------------------

def config_file(tmp_path: Path, *lines: str) -> tuple[str, str]:
    text = "\n".join(["builder = 'hvm'", "name = 'd'", *lines]) + "\n"
    return text, str(tmp_path)


def test_xm_disk_list_and_boot(tmp_path):
    image(tmp_path / "disk.img", 1 << 20)
    image(tmp_path / "cd.iso", 8 * 2048)
    text, where = config_file(
        tmp_path, "disk = ['file:disk.img,hda,w', 'tap:aio:" + str(tmp_path / "cd.iso")
        + ",hdc:cdrom,r', ',hdd:cdrom,r', 'file:disk.img,ioemu:hdb,r,0']", "boot = 'dc'")
    config = parse(text, "d.cfg", where)
    assert config.boot == "dc"
    assert config.disks == (
        Disk("hda", "disk", "w", str(tmp_path / "disk.img"), "file"),
        Disk("hdc", "cdrom", "r", str(tmp_path / "cd.iso"), "tap:aio"),
        Disk("hdd", "cdrom", "r", "", "file"),
        Disk("hdb", "disk", "r", str(tmp_path / "disk.img"), "file"))
    assert [d.spec for d in config.disks][:3] == [
        f"file:{tmp_path}/disk.img,hda,w", f"tap:aio:{tmp_path}/cd.iso,hdc:cdrom,r",
        ",hdd:cdrom,r"]


@pytest.mark.parametrize("value,message", [
    ("['phy:/dev/sda1,hda,w']", "'phy:/dev/sda1': phy: block devices are not offered; give "
                                "an image file as file:PATH"),
    ("['file:disk.img,sda,w']", "device 'sda': qemu-dm's drives are IDE: hda, hdb, hdc, hdd"),
    ("['file:disk.img,xvda,w']", "device 'xvda'"),
    ("['file:disk.img,hda,rw']", "mode 'rw': r (read-only), w (read-write) or w! "),
    ("['file:disk.img,hda']", "expected 'uname,dev,mode' (e.g. 'file:/images/disk.img,hda,w'), "
                              "got 2 fields"),
    ("['file:disk.img,hda:floppy,r']", "'hda:floppy': the device type is :cdrom or :disk"),
    ("['file:cd.iso,hdc:cdrom,w']", "disk hdc: mode w: a CD-ROM is read-only (give mode r)"),
    ("[',hda,w']", "disk hda: no image file (only a CD-ROM drive may be empty)"),
    ("['tap:qcow:disk.img,hda,w']", "of blktap's drivers only tap:aio: (a raw image file)"),
    ("['disk.img,hda,w']", "'disk.img': expected file:PATH or tap:aio:PATH"),
    ("['file:,hda,w']", "'file:' names no file"),
    ("['file:disk.img,hda,w,backend-dom']", "back-end domain 'backend-dom': only dom0"),
    ("['file:disk.img,hda,w', 'file:cd.iso,hda:cdrom,r']", "disk hda is given twice"),
    ("['file:missing.img,hda,w']", "disk hda: disk image {dir}/missing.img: no such file"),
    ("['file:odd.img,hda,w']", "is 1000 bytes, not a whole number of 512-byte sectors"),
    ("['file:disk.img,hdc:cdrom,r']", "CD-ROM image {dir}/disk.img: is 1536 bytes, not a "
                                      "whole number of 2048-byte sectors"),
    ("['file:" + "/" + ",hda,w']", "disk image /: is a directory, not an image file"),
    ("[42]", "disk entry 42: a string 'uname,dev,mode'"),
])
def test_xm_disk_errors_name_file_line_and_key(tmp_path, value, message):
    image(tmp_path / "disk.img", 3 * 512)
    image(tmp_path / "cd.iso", 2048)
    image(tmp_path / "odd.img", 1000)
    text, where = config_file(tmp_path, "memory = 16", f"disk = {value}")
    with pytest.raises(ConfigFileError) as err:
        parse(text, "d.cfg", where)
    assert str(err.value).startswith("d.cfg:4: disk: ")
    assert message.format(dir=tmp_path) in str(err.value)


def test_xm_disk_error_names_the_line_of_the_entry(tmp_path):
    image(tmp_path / "disk.img", 512)
    text, where = config_file(tmp_path, "disk = [", "    'file:disk.img,hda,w',",
                              "    'file:disk.img,hda,r',", "]")
    with pytest.raises(ConfigFileError, match=r"^d\.cfg:5: disk: disk hda is given twice: "
                                              r"one image per drive$"):
        parse(text, "d.cfg", where)


def test_xm_disk_must_be_a_list_and_boot_letters(tmp_path):
    text, where = config_file(tmp_path, "disk = 'file:disk.img,hda,w'")
    with pytest.raises(ConfigFileError, match=r"d\.cfg:3: disk = 'file:disk.img,hda,w': "
                                              r"expected list or tuple"):
        parse(text, "d.cfg", where)
    text, where = config_file(tmp_path, "boot = 'dcab'")
    with pytest.raises(ConfigFileError, match=r"boot = 'dcab': one to three of a \(floppy\), "
                                              r"c \(hard disk\), d \(CD-ROM\)"):
        parse(text, "d.cfg", where)


# --- xend -> XenStore -> qemu-dm ------------------------------------------------------------

def host(engine: str, tmp_path: Path):
    xen = ENGINES[engine](load("hello"), lambda event: None, 10 ** 6)
    return xen


def disks_in(tmp_path: Path) -> tuple[Disk, ...]:
    image(tmp_path / "disk.img", 8 * 512, b"D")
    image(tmp_path / "cd.iso", 2 * 2048, b"C")
    image(tmp_path / "other.iso", 3 * 2048, b"O")
    return (Disk("hda", "disk", "w", str(tmp_path / "disk.img")),
            Disk("hdb", "disk", "r", str(tmp_path / "cd.iso"), "tap:aio"),
            Disk("hdc", "cdrom", "r", str(tmp_path / "cd.iso")),
            Disk("hdd", "cdrom", "r", ""))


def test_xend_writes_the_vbds_as_xen_3_0_4_did(tmp_path):
    xen = host("reference", tmp_path)
    disks = disks_in(tmp_path)
    domid = xen.xend.create(DomainConfig(name="d", disks=disks), paused=True)
    xs = xen.dom0.connect("test")
    front = f"/local/domain/{domid}/device/vbd"
    assert sorted(xs.directory(front)) == ["5632", "5696", "768", "832"]
    assert {k: xs.read(f"{front}/768/{k}") for k in xs.directory(f"{front}/768")} == {
        "virtual-device": "768", "device-type": "disk",
        "backend": f"/local/domain/0/backend/vbd/{domid}/768", "backend-id": "0",
        "state": "1"}
    back = f"/local/domain/0/backend/vbd/{domid}/768"
    assert {k: xs.read(f"{back}/{k}") for k in xs.directory(back)} == {
        "dev": "hda", "type": "file", "params": str(tmp_path / "disk.img"), "mode": "w",
        "domain": "d", "frontend": f"{front}/768", "frontend-id": str(domid),
        "online": "1", "state": "1"}
    tap = f"/local/domain/0/backend/tap/{domid}/832"
    assert (xs.read(f"{front}/832/backend"), xs.read(f"{tap}/type"),
            xs.read(f"{tap}/params")) == (tap, "tap", f"aio:{tmp_path}/cd.iso")
    assert xs.read(f"{front}/5632/device-type") == "cdrom"
    empty = f"/local/domain/0/backend/vbd/{domid}/5696"
    assert (xs.read(f"{empty}/type"), xs.read(f"{empty}/params")) == ("", "")
    # qemu-dm's reading of them
    conf = dm_config.read_device_model(xs, domid)
    assert [(d.dev, d.kind, d.path, d.writable) for d in conf.disks] == [
        ("hda", "disk", str(tmp_path / "disk.img"), True),
        ("hdb", "disk", str(tmp_path / "cd.iso"), False),
        ("hdc", "cdrom", str(tmp_path / "cd.iso"), False),
        ("hdd", "cdrom", "", False)]
    xen.xend.destroy(domid)
    for gone in (front, f"/local/domain/0/backend/vbd/{domid}",
                 f"/local/domain/0/backend/tap/{domid}"):
        with pytest.raises(XenstoreError):
            xs.directory(gone)


def test_qemu_dm_reports_a_malformed_vbd_by_its_path(tmp_path):
    xen = host("reference", tmp_path)
    domid = xen.xend.create(DomainConfig(name="d", disks=disks_in(tmp_path)[:1]), paused=True)
    xs = xen.dom0.connect("test")
    xs.write(f"/local/domain/0/backend/vbd/{domid}/768/mode", "rw")
    with pytest.raises(dm_config.ConfigError, match=rf"qemu-dm: /local/domain/0/backend/vbd/"
                                                    rf"{domid}/768/mode = 'rw': expected one "
                                                    rf"of 'r', 'w', 'w!'"):
        dm_config.read_device_model(xs, domid)
    xs.write(f"/local/domain/0/backend/vbd/{domid}/768/dev", "xvda")
    assert dm_config.read_device_model(xs, domid).disks == ()   # not qemu-dm's


@pytest.mark.parametrize("engine", ENGINES)
def test_qemu_dm_opens_the_drives_and_changes_the_cd(tmp_path, engine):
    xen = host(engine, tmp_path)
    disks = disks_in(tmp_path)
    domid = xen.xend.create(DomainConfig(name="d", disks=disks, boot="dc"), paused=True)
    qemu = xen.domains[domid].qemu
    drives = qemu.drives
    assert sorted(drives) == ["hda", "hdb", "hdc", "hdd"]
    assert [(m.kind, m.sector_size, m.sectors, m.read_only, m.present)
            for m in (drives[d] for d in sorted(drives))] == [
        ("disk", 512, 8, False, True), ("disk", 512, 8, True, True),
        ("cdrom", 2048, 2, True, True), ("cdrom", 2048, 0, True, False)]
    assert drives["hda"].read(7, 1) == b"D" * 512
    drives["hda"].write(0, b"W" * 512)
    assert (tmp_path / "disk.img").read_bytes()[:512] == b"W" * 512
    # the BIOS's boot order in CMOS: 0x3D = CD (3) then disk (2), 0x38's high nibble none
    cmos = qemu.cmos.cmos_data if engine == "reference" else qemu.cmos.ram
    assert (cmos[0x3D], cmos[0x38]) == (0x23, 0x00)
    # xm block-configure: a new CD, then none
    cd = drives["hdc"]
    xen.xend.block_configure(domid, parse_disk(f"file:{tmp_path}/other.iso,hdc:cdrom,r"))
    qemu.poll()
    assert (cd.path, cd.sectors, cd.read(2, 1)) == (str(tmp_path / "other.iso"), 3,
                                                    b"O" * 2048)
    assert drives["hdc"] is cd
    xen.xend.block_configure(domid, parse_disk(",hdc:cdrom,r"))
    qemu.poll()
    assert not cd.present
    xen.xend.block_configure(domid, parse_disk(f"file:{tmp_path}/cd.iso,hdd:cdrom,r"))
    qemu.poll()
    assert drives["hdd"].sectors == 2
    row = next(r for r in xen.xend.list() if r["id"] == domid)
    assert row["disks"] == [
        {"dev": "hda:disk", "uname": f"file:{tmp_path}/disk.img", "mode": "w"},
        {"dev": "hdb:disk", "uname": f"tap:aio:{tmp_path}/cd.iso", "mode": "r"},
        {"dev": "hdc:cdrom", "uname": None, "mode": "r"},
        {"dev": "hdd:cdrom", "uname": f"file:{tmp_path}/cd.iso", "mode": "r"}]
    for refused, message in ((f"file:{tmp_path}/cd.iso,hda,r", "refusing to reconfigure hda "
                              "(disk)"),
                             (f"file:{image(tmp_path / 'odd.iso', 1536)},hdc:cdrom,r",
                              "is 1536 bytes, not a whole number of 2048-byte sectors")):
        with pytest.raises(XendError, match=message.replace("(", r"\(").replace(")", r"\)")):
            xen.xend.block_configure(domid, parse_disk(refused))
    xen.xend.destroy(domid)
    assert drives["hda"]._fd is None                # flushed and closed with qemu-dm


def test_both_engines_configure_the_drives_alike(tmp_path):
    """A run with disks: the same XenStore operations on both engines (xend's
    vbd nodes, qemu-dm's reads of them, the back ends removed at the end)."""
    result = both(load("hello"), device_model={"disks": disks_in(tmp_path), "boot": "dc"})
    assert result.exit["reason"] == "poweroff"
    ops = [(e.client, e.op, e.path) for e in result.trace if isinstance(e, trace.XenstoreOp)]
    assert ("qemu-dm", "read", "/local/domain/0/backend/vbd/1/768/params") in ops
    assert ("qemu-dm", "read", "/local/domain/1/device/vbd/5632/device-type") in ops
    assert ops[-5:] == [("xend", "rm", "/local/domain/1"),
                        ("xend", "rm", dm_config.vm_path("hello")),
                        ("xend", "rm", "/local/domain/0/backend/tap/1"),
                        ("xend", "rm", "/local/domain/0/backend/vbd/1"),
                        ("xend", "rm", "/local/domain/0/device-model/1")]


def test_sharing_of_an_image_between_domains(tmp_path):
    xen = host("reference", tmp_path)
    disk = image(tmp_path / "shared.img", 2048)
    rw = Disk("hda", "disk", "w", str(disk))
    ro = Disk("hda", "disk", "r", str(disk))
    first = xen.xend.create(DomainConfig(name="a", disks=(ro,)), paused=True)
    xen.xend.create(DomainConfig(name="b", disks=(ro,)), paused=True)     # r with r: fine
    with pytest.raises(XendError, match=rf"disk hda: {disk} is in use read-only by domain "
                                        rf"{first} \(a\) as hda, and so cannot be used "
                                        rf"read-write \(mode w! shares it anyway\)"):
        xen.xend.create(DomainConfig(name="c", disks=(rw,)), paused=True)
    alone = str(image(tmp_path / "alone.img", 1024))
    with pytest.raises(XendError, match="in use read-write by this domain as hda"):
        xen.xend.create(DomainConfig(name="c", disks=(Disk("hda", "disk", "w", alone),
                                                      Disk("hdb", "disk", "r", alone))),
                        paused=True)
    c = xen.xend.create(DomainConfig(name="c", disks=(Disk("hda", "disk", "w!", str(disk)),)),
                        paused=True)
    assert [r["name"] for r in xen.xend.list()] == ["Domain-0", "a", "b", "c"]
    # a CD's new medium: not a file a drive writes; then the domain's configuration has it
    d = xen.xend.create(DomainConfig(name="d", disks=(Disk("hdc", "cdrom", "r", ""),)),
                        paused=True)
    with pytest.raises(XendError, match=rf"disk hdc: {disk} is in use read-write by domain "
                                        rf"{c} \(c\) as hda"):
        xen.xend.block_configure(d, parse_disk(f"file:{disk},hdc:cdrom,r"))
    iso = image(tmp_path / "x.iso", 2048)
    xen.xend.block_configure(d, parse_disk(f"file:{iso},hdc:cdrom,r"))
    assert xen.xend.domains[d].config.disks == (Disk("hdc", "cdrom", "r", str(iso)),)
    with pytest.raises(XendError, match="in use read-only by domain"):
        xen.xend.create(DomainConfig(name="e", disks=(Disk("hda", "disk", "w", str(iso)),)),
                        paused=True)


def test_check_disks_names_the_drive(tmp_path):
    with pytest.raises(XendError, match=r"^disk hdb: disk image .*none\.img: no such file$"):
        check_disks((Disk("hdb", "disk", "r", str(tmp_path / "none.img")),))


# --- the CLI -------------------------------------------------------------------------------

def test_run_with_disks_cdrom_and_boot(tmp_path):
    disk = image(tmp_path / "disk.img", 1 << 20)
    cd = image(tmp_path / "cd.iso", 16 * 2048)
    proc = cli("run", "hello", "--disk", str(disk), "--disk", f"{cd},r", "--cdrom", str(cd),
               "--boot", "dc", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["exit"]["reason"] == "poweroff"
    assert out["boot"] == "dc"
    assert out["disks"] == [{"dev": "hda:disk", "uname": f"file:{disk}", "mode": "w"},
                            {"dev": "hdb:disk", "uname": f"file:{cd}", "mode": "r"},
                            {"dev": "hdc:cdrom", "uname": f"file:{cd}", "mode": "r"}]
    empty = cli("run", "hello", "--cdrom", "", "--engine", "reference", "--json")
    assert empty.returncode == 0, empty.stderr
    assert json.loads(empty.stdout)["disks"] == [{"dev": "hdc:cdrom", "uname": None,
                                                  "mode": "r"}]


@pytest.mark.parametrize("args,message", [
    (["--disk", "{dir}/none.img"], "--disk {dir}/none.img: no such file"),
    (["--disk", "{dir}/odd.img"], "--disk {dir}/odd.img: is 1000 bytes, not a whole number "
                                  "of 512-byte sectors"),
    (["--cdrom", "{dir}/odd.img"], "--cdrom {dir}/odd.img: is 1000 bytes, not a whole number "
                                   "of 2048-byte sectors"),
    (["--disk", "{dir}"], "is a directory, not an image file"),
    (["--boot", "x"], "--boot 'x': one to three of a (floppy), c (hard disk), d (CD-ROM)"),
    (["--disk", "{dir}/odd.img", "--disk", "{dir}/odd.img", "--disk", "{dir}/odd.img"],
     "--disk given 3 times: at most 2 (hda and hdb; hdc is the CD-ROM drive)"),
])
def test_run_disk_errors_exit_2(tmp_path, args, message):
    image(tmp_path / "odd.img", 1000)
    proc = cli("run", "hello", *(a.format(dir=tmp_path) for a in args))
    assert proc.returncode == 2
    assert message.format(dir=tmp_path) in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.fixture
def xend(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "hvmspec.cli", "xend", "--dir",
                             str(tmp_path), "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    json.loads(proc.stdout.readline())
    yield tmp_path
    proc.terminate()
    _, err = proc.communicate(timeout=20)
    assert "Traceback" not in err


def xm(where: Path, *args: str) -> subprocess.CompletedProcess:
    return cli("xm", "--dir", str(where), *args, cwd=where)


def test_xm_create_disks_in_xenstore_for_the_xen_tools(xend):
    """Debian's xenstore-ls and xenstore-read find the vbds where Xen 3.0.4's
    qemu-dm looked for them, with xend's permissions."""
    peer("xenstore-ls")
    image(xend / "disk.img", 1 << 20)
    image(xend / "cd.iso", 4 * 2048)
    (xend / "spin.s").write_text("spin:\n    jmp spin\n")
    (xend / "d.cfg").write_text("builder = 'hvm'\nname = 'd'\nkernel = 'spin.s'\nmemory = 4\n"
                                "disk = ['file:disk.img,hda,w', 'file:cd.iso,hdc:cdrom,r']\n"
                                "boot = 'dc'\n")
    out = xm(xend, "create", "-p", "d.cfg")
    assert out.returncode == 0, out.stderr
    env = dict(os.environ, XENSTORED_PATH=str(xend / "xenstored.sock"))

    def tool(*args):
        done = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert tool("xenstore-read", "/local/domain/1/device/vbd/768/backend") == \
        "/local/domain/0/backend/vbd/1/768\n"
    assert tool("xenstore-read", "/local/domain/1/device/vbd/5632/device-type") == "cdrom\n"
    listing = tool("xenstore-ls", "-p", "/local/domain/0/backend/vbd/1/5632")
    assert tool("xenstore-read", "/local/domain/0/backend/vbd/1/5632/params") == \
        f"{xend}/cd.iso\n"
    assert 'dev = "hdc"' in listing and 'mode = "r"' in listing and 'type = "file"' in listing
    perms = tool("xenstore-ls", "-p", "/local/domain/0/backend/vbd/1")
    assert "(n0,r1)" in perms
    assert "(n1,r0)" in tool("xenstore-ls", "-p", "/local/domain/1/device/vbd")
    assert tool("xenstore-read", f"/vm/{dm_config.domain_uuid('d')}/image/boot") == "dc\n"
    # xm block-configure, then xm list --long shows the new medium
    image(xend / "new.iso", 2048)
    out = xm(xend, "block-configure", "d", "file:new.iso", "hdc:cdrom", "r")
    assert out.returncode == 0, out.stderr
    assert tool("xenstore-read", "/local/domain/0/backend/vbd/1/5632/params") == \
        f"{xend}/new.iso\n"
    long = xm(xend, "list", "--long").stdout
    assert (f"    (device\n        (vbd\n            (uname file:{xend}/new.iso)\n"
            f"            (dev hdc:cdrom)\n            (mode r)\n        )\n    )") in long
    assert f"(uname file:{xend}/disk.img)" in long and "(dev hda:disk)" in long
    refused = xm(xend, "block-configure", "d", "file:new.iso", "hda", "w")
    assert refused.returncode == 1 and "refusing to reconfigure hda" in refused.stderr
    bad = xm(xend, "block-configure", "d", "phy:/dev/sr0", "hdc:cdrom", "r")
    assert bad.returncode == 2 and "phy: block devices are not offered" in bad.stderr
    (xend / "e.cfg").write_text("builder = 'hvm'\nname = 'e'\nkernel = 'spin.s'\n"
                                "disk = ['file:missing.img,hda,w']\n")
    out = xm(xend, "create", "e.cfg")
    assert out.returncode == 2
    assert f"e.cfg:4: disk: disk hda: disk image {xend}/missing.img: no such file" in out.stderr
    xm(xend, "destroy", "d")
    gone = subprocess.run(["xenstore-ls", "/local/domain/0/backend/vbd/1"], env=env,
                          capture_output=True, text=True)
    assert gone.returncode != 0


def test_qemu_dm_that_cannot_open_an_image_stops(tmp_path):
    """An image gone between xend's check and qemu-dm's start: qemu-dm
    stops with the reason (Xen 3.0.4's printed "could not open hard disk
    image" and ran with the drive empty); the other drives are let go."""
    ok = image(tmp_path / "ok.img", 512)
    drives = (dm_config.DriveConfig("hda", "disk", str(ok), True),
              dm_config.DriveConfig("hdb", "disk", str(tmp_path / "gone.img"), False))
    with pytest.raises(dm_config.DeviceModelError,
                       match=rf"^qemu-dm: could not open hdb: disk image {tmp_path}/gone\.img: "
                             rf"no such file$"):
        dm_config.open_drives(drives)
    opened = dm_config.open_drives(drives[:1])
    assert opened["hda"].sectors == 1 and not opened["hda"].read_only


# --- the drives in CMOS ----------------------------------------------------------------------

def _mbr(path: Path, end_head: int, end_sector: int) -> Path:
    """A partition table whose one partition ends on ``end_head`` and
    ``end_sector`` (what ide_init2's geometry guess reads)."""
    entry = bytearray(16)
    entry[5], entry[6], entry[12] = end_head, end_sector, 1
    with open(path, "r+b") as f:
        f.seek(0x1BE)
        f.write(entry)
        f.seek(510)
        f.write(b"\x55\xaa")
    return path


#: the bytes cmos_init writes for the drives (spec.devices.cmos)
DISK_BYTES = (0x12, 0x19, 0x1A, *range(0x1B, 0x2D), 0x39, 0x3A)
#: a 4 MiB disk: 8 cylinders of 16 heads, 63 sectors: type 47 and its nine bytes
HDA_4M = {0x12: 0xF0, 0x19: 47, 0x1B: 8, 0x1D: 16, 0x1E: 0xFF, 0x1F: 0xFF, 0x20: 0xC8,
          0x21: 8, 0x23: 63}
#: (drives: dev -> (kind, size in bytes, MBR end head and sector or None)), the
#: bytes Xen 3.0.4 writes (others 0), and those QEMU 7.2 writes where it differs, with why
CMOS_CASES = {
    "disk-and-cd": ({"hda": ("disk", 4 << 20, None), "hdc": ("cdrom", 64 * 2048, None)},
                    HDA_4M, None),
    # a 1 GiB disk: 2080 default cylinders, LBA; a disk whose MBR gives 4 heads of 17
    # sectors (120 cylinders: no translation)
    "lba-and-mbr": ({"hda": ("disk", 1 << 30, None), "hdb": ("disk", 4 << 20, (3, 17))},
                    {**HDA_4M, 0x12: 0xFF, 0x1A: 47, 0x1B: 0x20, 0x1C: 0x08, 0x21: 0x20,
                     0x22: 0x08, 0x24: 120, 0x26: 4, 0x27: 0xFF, 0x28: 0xFF, 0x29: 0xC0,
                     0x2A: 120, 0x2C: 17, 0x39: 0x01}, None),
    # an MBR of 16 heads (63 sectors): its geometry, 130 cylinders, on both
    "mbr-16-heads": ({"hda": ("disk", 64 << 20, (15, 63))},
                     {**HDA_4M, 0x1B: 130, 0x21: 130}, None),
    # an MBR of 255 heads (a translating BIOS): the default geometry, 1219
    # cylinders; Xen 3.0.4 LBA, QEMU 7.2 LARGE (hd_geometry_guess)
    "mbr-255-heads": ({"hda": ("disk", 600 << 20, (254, 63))},
                      {**HDA_4M, 0x1B: 0xC3, 0x1C: 0x04, 0x21: 0xC3, 0x22: 0x04, 0x39: 0x01},
                      ({0x39: 0x02}, "QEMU 7.2 takes LARGE translation (2) for an MBR of "
                                     "more than 16 heads while cylinders x heads <= 131072")),
    # a CD-ROM counts in Xen 3.0.4 (bs_table), not in QEMU 7.2 (ide_get_geometry fails)
    "cd-at-hda": ({"hda": ("cdrom", 600 << 20, None)},
                  {**HDA_4M, 0x1B: 0xC3, 0x1C: 0x04, 0x21: 0xC3, 0x22: 0x04, 0x39: 0x01},
                  ({i: 0 for i in DISK_BYTES}, "QEMU 7.2 writes nothing for a CD-ROM")),
    "big-cd-at-hdc": ({"hda": ("disk", 4 << 20, None), "hdc": ("cdrom", 600 << 20, None)},
                      {**HDA_4M, 0x39: 0x10},
                      ({0x39: 0x00}, "QEMU 7.2 has no translation bits for a CD-ROM")),
    "empty-cd-at-hdb": ({"hda": ("disk", 4 << 20, None), "hdb": ("cdrom", 0, None)},
                        {**HDA_4M, 0x12: 0xFF, 0x1A: 47, 0x24: 2, 0x26: 16, 0x27: 0xFF,
                         0x28: 0xFF, 0x29: 0xC8, 0x2A: 2, 0x2C: 63},
                        ({0x12: 0xF0, **{i: 0 for i in range(0x1A, 0x2D) if i >= 0x24 or
                                         i == 0x1A}}, "QEMU 7.2 writes nothing for a CD-ROM")),
}


def _cmos_images(tmp_path: Path, drives: dict) -> dict:
    paths = {}
    for dev, (kind, size, mbr) in drives.items():
        path = image(tmp_path / f"{dev}.{'iso' if kind == 'cdrom' else 'img'}", size)
        paths[dev] = str(_mbr(path, *mbr) if mbr else path) if size else ""
    return paths


def _qemu_cmos(drives: dict, paths: dict) -> dict[int, int]:
    from tests import qtest
    args = []
    for dev, (kind, _size, _mbr) in drives.items():
        media = ",media=cdrom" if kind == "cdrom" else ""
        where = f"file={paths[dev]},format=raw," if paths[dev] else ""
        args += ["-drive", f"{where}if=ide,index={'abcd'.index(dev[2])}{media}"]
    qemu = qtest.Session(tuple(args))
    try:
        values = {}
        for index in DISK_BYTES:
            qemu.out(0x70, index)
            values[index] = qemu.inp(0x71)
        return values
    finally:
        qemu.close()


@pytest.mark.parametrize("case", CMOS_CASES)
def test_cmos_holds_the_drives_as_cmos_init_wrote_them(tmp_path, case):
    """CMOS 0x12, 0x19/0x1A, 0x1B-0x2C and 0x39 from the configured drives,
    as Xen 3.0.4's cmos_init writes them (spec.devices.cmos), the same on
    both engines and the same as QEMU 7.2 for the same -drive options but
    where the case says why not."""
    drives, want, qemu_differs = CMOS_CASES[case]
    paths = _cmos_images(tmp_path, drives)
    disks = tuple(Disk(dev, kind, "r" if kind == "cdrom" else "w", paths[dev])
                  for dev, (kind, _size, _mbr) in drives.items())
    seen = {}
    for engine in ENGINES:
        xen = host(engine, tmp_path)
        domid = xen.xend.create(DomainConfig(name="d", disks=disks), paused=True)
        qemu = xen.domains[domid].qemu
        cmos = qemu.cmos.cmos_data if engine == "reference" else qemu.cmos.ram
        seen[engine] = {i: cmos[i] for i in DISK_BYTES}
        xen.xend.destroy(domid)
    expected = {i: want.get(i, 0) for i in DISK_BYTES}
    assert seen["reference"] == expected
    assert seen["impl"] == expected
    theirs = _qemu_cmos(drives, paths)
    if qemu_differs is not None:
        expected.update(qemu_differs[0])
    assert theirs == expected
