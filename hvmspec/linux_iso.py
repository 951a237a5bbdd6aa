"""A bootable CD of Debian's Linux kernel with a busybox userland, built
from Debian's packages at test time and cached: the operating system that
hvmspec's engines and QEMU boot to a shell prompt on COM1.

Room: tool. :func:`linux_iso` builds (or finds in the cache) the Linux CD
and :func:`memtest_iso` the memtest86+ CD; ``python -m hvmspec.linux_iso
--json`` builds both and prints their paths, the packages' versions and
the kernel command line. Imports nothing of the model.

**Packages.** Five Debian packages, by name (:data:`PACKAGES`):
``linux-image-amd64`` (a metapackage: its ``Depends`` names the kernel's
real package, whose ``/boot/vmlinuz-*`` and ``/lib/modules/*`` are used),
``busybox-static`` (``/bin/busybox``, the whole userland), ``isolinux``
(``isolinux.bin``, the CD's El Torito boot image), ``syslinux-common``
(``ldlinux.c32``, the rest of isolinux) and ``memtest86+``. A package
installed on this machine at the version apt would fetch is taken from
the system's files; otherwise ``apt-get download`` fetches its ``.deb``
into the cache and ``dpkg-deb -x`` unpacks it there (no root install: the
kernel's package would pull in initramfs-tools and run its hooks). The
versions come from apt's local lists (``apt-cache show``); with no lists
and nothing cached, or no network and nothing cached, the builder raises
:class:`LinuxIsoUnavailable` with the reason (tests skip on it, and fail
under ``HVMSPEC_REQUIRE_PEERS=1`` as for the other peers).

**Cache.** ``$HVMSPEC_CACHE/linux`` (or ``~/.cache/hvmspec/linux``): the
``.deb`` files and their unpacked trees under ``debs/``, and each CD under
a key: the SHA-256 of the recipe (the texts that go into the CD: the init
script, the kernel command line, the isolinux configuration, the module
list, and :data:`RECIPE_VERSION` for the way they are put together) and
the packages' versions. A new kernel in Debian or a change of recipe is a
new CD (the older one is removed); the same ones are the same file, built
once.

**The CD.** ISO 9660 with El Torito "no emulation" boot of isolinux
(``xorriso -as mkisofs -b isolinux/isolinux.bin -c isolinux/boot.cat
-no-emul-boot -boot-load-size 4 -boot-info-table``), which loads
``/boot/vmlinuz`` and ``/boot/initrd.gz`` with :data:`KERNEL_CMDLINE` at
once (no prompt, no timeout, no menu: isolinux reads nothing from the
keyboard or COM1, so keys typed early reach nobody but the kernel's UART).
The files' times are fixed (``SOURCE_DATE_EPOCH``), so the same inputs give
the same bytes.

**The initramfs.** A gzip'd ``newc`` cpio archive written here (no
``cpio`` tool needed, device nodes without root): busybox as ``/bin/busybox``
with ``/bin/sh``, ``/init`` (:data:`INIT`), ``/etc/inittab``
(:data:`INITTAB`), ``/etc/profile`` (the prompt), ``/dev/console`` (the
kernel opens it for init's standard streams before any ``/dev`` is
mounted) and the CD's modules (:data:`MODULES` and what they depend on,
decompressed if the package has them as ``.ko.xz`` or ``.ko.zst``), loaded
by ``/init`` in dependency order. Debian's package has no ``modules.dep``
(``depmod`` makes it at install time), so the order comes from each
module's own ``depends=`` (its ``.modinfo`` section), as ``depmod`` reads it.

``/init`` mounts ``/proc``, ``/sys`` and ``/dev`` (devtmpfs), loads the
modules, waits (at most 10 s) for the CD's block device ``/dev/sr0``
(the SCSI scan of the ATA ports runs asynchronously), prints
:data:`MARKER` with what it found and hands over to busybox's ``init``
(PID 1), which starts the shell on ``ttyS0`` with the prompt
:data:`PROMPT` and restarts it if it exits. Busybox ``init`` as PID 1 is
what makes a plain ``poweroff`` work: the command signals PID 1, which
runs the shutdown, kills the processes and asks the kernel to power off
(``reboot(RB_POWER_OFF)``: ACPI S5 through the FADT's PM1 control
register); ``poweroff -f`` asks the kernel at once.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

#: the Debian packages the CDs are made of
PACKAGES = ("linux-image-amd64", "busybox-static", "isolinux", "syslinux-common", "memtest86+")

#: The kernel's command line, one option a line with its reason:
KERNEL_OPTIONS = (
    # COM1 is the console: the whole log and the shell are on the serial line
    # (hvmspec's COM1 is what a test reads); 115200 8N1 as a terminal expects.
    "console=ttyS0,115200n8",
    # The same log from the first lines of setup, before the real console
    # registers: a boot that dies early on an engine still says where.
    "earlyprintk=serial,ttyS0,115200",
    # Xen 3.0.4's HVM platform has no I/O APIC (its interrupts are the 8259
    # pair's): do not look for one, even where QEMU's MP/ACPI tables list one.
    "noapic",
    # ... and no local APIC (the CPUID Xen 3.0.4 gives clears the APIC bit):
    # the kernel must not enable one from MSRs or tables; its timer is the
    # PIT on IRQ 0.
    "nolapic",
    # Trust the TSC: no clocksource watchdog comparing it with the PIT/ACPI
    # timer every 0.5 s, whose verdict ("TSC unstable") depends on how QEMU's
    # TCG paces its clocks against the host's, not on the guest.
    "tsc=reliable",
    # Run as a plain HVM guest, none of Linux's Xen guest support: the kernel
    # finds Xen in CPUID leaf 0x40000000, and Linux 5.17 and later then need
    # VCPUOP_register_vcpu_info, a hypercall Xen 3.0.4 never gave HVM guests
    # (its HVM table has memory_op, xen_version, hvm_op and event_channel_op):
    # without this Debian 12's kernel panics ("register_vcpu_info failed:
    # cpu=0 err=-38") on hvmspec as it would on a real Xen 3.0.4.
    "nopv",
    # No address randomisation: KASLR seeds the kernel's physical and virtual
    # placement (and its memory regions' bases) from RDTSC, RDRAND and the
    # PIT, so every boot would lay memory out anew and the logs would differ
    # by the addresses they print; the engines' boots are to be repeatable.
    "nokaslr",
    # Unpack the initramfs before the initcalls that follow it, not in a
    # work item beside them: its "Trying to unpack rootfs image" line (and
    # the work) would otherwise land among other drivers' lines wherever
    # the scheduler put it (seen on QEMU: two boots, two places).
    "initramfs_async=0",
    # Every message but KERN_DEBUG on the console (Debian's default is 7
    # already; "quiet" would make it 4): the full log is what is compared,
    # line by line, between engines and QEMU. Debug messages are left out:
    # they follow dynamic-debug settings, not the platform.
    "loglevel=7",
    # A panic reboots at once (with QEMU's -no-reboot: QEMU ends), so a boot
    # that fails ends instead of hanging until a test's timeout.
    "panic=-1",
)
KERNEL_CMDLINE = " ".join(KERNEL_OPTIONS)

#: what /init prints once the modules are in, and before the shell starts
MARKER = "hvmspec-linux: init"
#: the shell's prompt (a string that no kernel message contains)
PROMPT = "hvmspec-linux# "

#: the modules the CD needs: the PIIX IDE controller (and the generic ATA
#: driver, for a controller ata_piix does not claim), the ATAPI CD as SCSI
#: device sr0, and its ISO 9660 file system; what they depend on comes too
MODULES = ("ata_piix", "ata_generic", "sr_mod", "isofs")

INIT = f"""#!/bin/sh
# hvmspec's Linux CD: the first process; mounts, loads the CD's modules,
# then hands over to busybox init (see hvmspec/linux_iso.py)
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /lib/modules/order); do
    insmod /lib/modules/$m.ko || echo "hvmspec-linux: insmod $m failed"
done
n=0
while [ ! -b /dev/sr0 ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
if [ -b /dev/sr0 ]; then cd=sr0; else cd=none; fi
echo "{MARKER}: modules $(cat /lib/modules/order | tr '\\n' ' ')cd $cd"
exec /bin/busybox init
"""

INITTAB = """\
ttyS0::respawn:-/bin/sh
::shutdown:/bin/echo hvmspec-linux: shutdown
"""

PROFILE = f"""export PS1='{PROMPT}'
export PATH=/bin
"""

ISOLINUX_CFG = f"""default linux
prompt 0
timeout 0
label linux
  kernel /boot/vmlinuz
  initrd /boot/initrd.gz
  append {KERNEL_CMDLINE}
"""

#: memtest86+ with its screen mirrored on COM1 (``console=ttyS0,115200``: the
#: text screen's updates as VT100 output), so that its progress can be read
#: without a picture
MEMTEST_CFG = """default memtest
prompt 0
timeout 0
label memtest
  linux /boot/memtest.bin
  append console=ttyS0,115200
"""

#: the fixed time of every file in the CDs and the initramfs
SOURCE_DATE_EPOCH = 0


class LinuxIsoUnavailable(RuntimeError):
    """The CD cannot be built here (no apt lists, no network, no xorriso);
    the message says which and what to do."""


@dataclass
class Built:
    """A built CD: its path, its size in bytes, the packages' versions and
    the kernel command line."""

    iso: str
    size: int
    versions: dict[str, str]
    cmdline: str
    kernel: str = ""
    initrd_size: int = 0
    modules: tuple[str, ...] = ()


def cache_dir() -> Path:
    """Where the packages and CDs are kept: ``$HVMSPEC_CACHE/linux``, or
    ``~/.cache/hvmspec/linux`` (``$XDG_CACHE_HOME`` if set)."""
    base = os.environ.get("HVMSPEC_CACHE")
    root = Path(base) if base else Path(os.environ.get(
        "XDG_CACHE_HOME", Path.home() / ".cache")) / "hvmspec"
    return root / "linux"


def _run(argv: list[str], what: str, cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=600)
    except FileNotFoundError:
        raise LinuxIsoUnavailable(f"{what}: {argv[0]} is not installed") from None
    if proc.returncode != 0:
        raise LinuxIsoUnavailable(f"{what}: {' '.join(argv)} failed: "
                                  f"{(proc.stderr or proc.stdout).strip()[-400:]}")
    return proc.stdout


def _candidates(packages: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """(version, Depends) of the version apt would install of each of
    ``packages``, from apt's local lists: one ``apt-cache`` run for all (a
    run is about a second, most of it loading apt's cache)."""
    out = _run(["apt-cache", "show", "--no-all-versions", *packages],
               f"no version of {', '.join(packages)} in apt's lists (run apt-get update)")
    found: dict[str, tuple[str, str]] = {}
    for record in out.split("\n\n"):
        fields: dict[str, str] = {}
        for line in record.splitlines():
            if ":" in line and not line.startswith(" "):
                key, value = line.split(":", 1)
                fields.setdefault(key, value.strip())
        if "Package" in fields and "Version" in fields:
            found.setdefault(fields["Package"], (fields["Version"], fields.get("Depends", "")))
    missing = [p for p in packages if p not in found]
    if missing:
        raise LinuxIsoUnavailable(f"no version of {', '.join(missing)} in apt's lists "
                                  "(run apt-get update)")
    return found


def resolve() -> dict[str, str]:
    """The package of each of :data:`PACKAGES` to use and its version;
    ``linux-image-amd64`` is replaced by the kernel package it depends on."""
    candidates = _candidates(PACKAGES)
    versions = {}
    for package in PACKAGES:
        version, depends = candidates[package]
        if package == "linux-image-amd64":
            kernel = next((d.split()[0] for d in depends.split(",")
                           if d.strip().startswith("linux-image-")), None)
            if kernel is None:
                raise LinuxIsoUnavailable(f"{package} {version} names no kernel package")
            package = kernel
            version, _ = _candidates((kernel,))[kernel]
        versions[package] = version
    return versions


def _installed(package: str) -> str | None:
    proc = subprocess.run(["dpkg-query", "-W", "-f", "${Status} ${Version}", package],
                          capture_output=True, text=True)
    words = proc.stdout.split()
    if proc.returncode == 0 and words[:3] == ["install", "ok", "installed"]:
        return words[3]
    return None


def unpack(package: str, version: str, debs: Path) -> Path:
    """The root of ``package``'s files at ``version``: ``/`` if it is
    installed so, else its ``.deb`` fetched and unpacked under ``debs``."""
    if _installed(package) == version:
        return Path("/")
    tree = debs / f"{package}_{version.replace(':', '%3a')}"
    if (tree / ".unpacked").exists():
        return tree
    debs.mkdir(parents=True, exist_ok=True)
    deb = next(iter(sorted(debs.glob(f"{package}_*{version.split(':')[-1]}_*.deb"))), None)
    if deb is None:
        _run(["apt-get", "download", f"{package}={version}"],
             f"cannot fetch {package} {version} (offline? nothing cached in {debs})", cwd=debs)
        deb = next(iter(sorted(debs.glob(f"{package}_*{version.split(':')[-1]}_*.deb"))), None)
        if deb is None:
            raise LinuxIsoUnavailable(f"apt-get download {package} left no .deb in {debs}")
    shutil.rmtree(tree, ignore_errors=True)
    _run(["dpkg-deb", "-x", str(deb), str(tree)], f"cannot unpack {deb}")
    (tree / ".unpacked").write_text(version + "\n")
    return tree


# --- modules ------------------------------------------------------------------------------

def _module_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".zst"):
        return subprocess.run(["zstd", "-dc", str(path)], capture_output=True,
                              check=True).stdout
    return data


def modinfo(elf: bytes) -> dict[str, str]:
    """A kernel module's ``.modinfo`` section (``key=value`` strings, NUL
    separated) as a dict (the first value of each key)."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        raise ValueError("not a 64-bit ELF module")
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        name, _, _, _, offset, size = struct.unpack_from("<IIQQQQ", elf, shoff + i * shentsize)
        return name, offset, size

    _, stroff, _ = section(shstrndx)
    for i in range(shnum):
        name, offset, size = section(i)
        if elf[stroff + name:elf.index(b"\0", stroff + name)] == b".modinfo":
            info: dict[str, str] = {}
            for item in elf[offset:offset + size].split(b"\0"):
                if b"=" in item:
                    key, value = item.decode("latin-1").split("=", 1)
                    info.setdefault(key, value)
            return info
    return {}


def modules_in_order(moddir: Path, wanted=MODULES) -> list[tuple[str, bytes]]:
    """The modules ``wanted`` and those they depend on, each after what it
    depends on (names as in ``depends=``, files found under ``moddir``),
    with their uncompressed bytes."""
    files = {}
    for path in moddir.rglob("*.ko*"):
        name = path.name.split(".ko")[0]
        files[name] = files[name.replace("-", "_")] = path
    order: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        key = name.replace("-", "_")
        if key in seen:
            return
        if key in chain:
            raise LinuxIsoUnavailable(f"modules depend on each other: {' -> '.join(chain)}")
        if key not in files:
            raise LinuxIsoUnavailable(f"module {name} is not in {moddir}")
        data = _module_bytes(files[key])
        for dep in filter(None, modinfo(data).get("depends", "").split(",")):
            visit(dep, chain + (key,))
        seen.add(key)
        order.append((key, data))

    for name in wanted:
        visit(name, ())
    return order


# --- initramfs ----------------------------------------------------------------------------

def newc(entries: list[tuple[str, int, bytes, tuple[int, int]]]) -> bytes:
    """A ``newc`` cpio archive of ``entries`` (path, mode, data, (major,
    minor) of a device), every file owned by root at time
    :data:`SOURCE_DATE_EPOCH`, with the ``TRAILER!!!`` entry."""
    out = io.BytesIO()

    def pad(n: int) -> None:
        out.write(b"\0" * (-n % 4))

    for ino, (path, mode, data, (major, minor)) in enumerate(
            [*entries, ("TRAILER!!!", 0, b"", (0, 0))], start=1):
        name = path.encode() + b"\0"
        fields = (ino if path != "TRAILER!!!" else 0, mode, 0, 0,
                  2 if stat.S_ISDIR(mode) else 1, SOURCE_DATE_EPOCH, len(data),
                  0, 0, major, minor, len(name), 0)
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        out.write(header + name)
        pad(len(header) + len(name))
        out.write(data)
        pad(len(data))
    return out.getvalue()


def initramfs(busybox: bytes, modules: list[tuple[str, bytes]]) -> bytes:
    """The gzip'd initramfs (gzip's header without a name or a time)."""
    d, x, f = stat.S_IFDIR | 0o755, stat.S_IFREG | 0o755, stat.S_IFREG | 0o644
    entries = [(p, d, b"", (0, 0)) for p in
               ("bin", "dev", "etc", "lib", "lib/modules", "mnt", "proc", "sys", "tmp",
                "root")]
    entries += [("dev/console", stat.S_IFCHR | 0o600, b"", (5, 1)),
                ("bin/busybox", x, busybox, (0, 0)),
                ("bin/sh", stat.S_IFLNK | 0o777, b"busybox", (0, 0)),
                ("init", x, INIT.encode(), (0, 0)),
                ("etc/inittab", f, INITTAB.encode(), (0, 0)),
                ("etc/profile", f, PROFILE.encode(), (0, 0)),
                ("lib/modules/order", f, "".join(n + "\n" for n, _ in modules).encode(),
                 (0, 0))]
    entries += [(f"lib/modules/{name}.ko", f, data, (0, 0)) for name, data in modules]
    raw = newc(entries)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9, filename="") as gz:
        gz.write(raw)
    return buf.getvalue()


# --- the CDs ------------------------------------------------------------------------------

#: the builder's own version: raised when the way a CD is made changes
#: (the texts below are hashed as they are)
RECIPE_VERSION = 2


def _recipe(what: str) -> list:
    """The recipe of a CD: every text that goes into it, and the builder's version."""
    if what == "memtest":
        return [RECIPE_VERSION, MEMTEST_CFG, SOURCE_DATE_EPOCH]
    return [RECIPE_VERSION, KERNEL_CMDLINE, MARKER, PROMPT, MODULES, INIT, INITTAB, PROFILE,
            ISOLINUX_CFG, SOURCE_DATE_EPOCH]


def _key(versions: dict[str, str], what: str) -> str:
    """The cache key of a CD: its recipe and the versions of the packages
    it is made of (the Linux CD's are all but memtest86+, memtest86+'s
    CD's are memtest86+ and isolinux's)."""
    used = {p: v for p, v in versions.items()
            if (p == "memtest86+") == (what == "memtest") or p in ("isolinux", "syslinux-common")}
    text = json.dumps({"recipe": _recipe(what), "versions": used, "what": what},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _xorriso(tree: Path, iso: Path) -> None:
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(SOURCE_DATE_EPOCH))
    argv = ["xorriso", "-as", "mkisofs", "-quiet", "-o", str(iso), "-V", "HVMSPEC_LINUX",
            "-J", "-R", "-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat",
            "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", str(tree)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    except FileNotFoundError:
        raise LinuxIsoUnavailable("xorriso is not installed (Debian package xorriso)") from None
    if proc.returncode != 0:
        raise LinuxIsoUnavailable(f"xorriso failed: {proc.stderr.strip()[-400:]}")


def _find_cached(what: str) -> Built | None:
    """The newest CD of kind ``what`` already in the cache, for a machine
    whose apt lists are gone (its manifest beside it)."""
    manifests = sorted(cache_dir().glob(f"{what}-*.json"), key=lambda p: p.stat().st_mtime)
    for manifest in reversed(manifests):
        built = Built(**json.loads(manifest.read_text()))
        if Path(built.iso).exists() and manifest.stem.endswith(_key(built.versions, what)):
            built.modules = tuple(built.modules)
            return built
    return None


def _build(what: str, make) -> Built:
    try:
        versions = resolve()
    except LinuxIsoUnavailable as exc:
        cached = _find_cached(what)
        if cached is None:
            raise LinuxIsoUnavailable(f"{exc}; and no {what} CD is cached in {cache_dir()}") \
                from None
        return cached
    key = _key(versions, what)
    base = cache_dir()
    iso, manifest = base / f"{what}-{key}.iso", base / f"{what}-{key}.json"
    if iso.exists() and manifest.exists():
        built = Built(**json.loads(manifest.read_text()))
        built.modules = tuple(built.modules)
        return built
    roots = {package: unpack(package, version, base / "debs")
             for package, version in versions.items()}
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        tree = Path(tmp) / "cd"
        (tree / "isolinux").mkdir(parents=True)
        (tree / "boot").mkdir()
        syslinux = roots["syslinux-common"] / "usr/lib/syslinux/modules/bios"
        shutil.copy(roots["isolinux"] / "usr/lib/ISOLINUX/isolinux.bin", tree / "isolinux")
        shutil.copy(syslinux / "ldlinux.c32", tree / "isolinux")
        built = make(tree, roots, versions)
        for path in [tree, *sorted(tree.rglob("*"))]:
            os.utime(path, (SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH), follow_symlinks=False)
        part = Path(tmp) / "cd.iso"
        _xorriso(tree, part)
        os.replace(part, iso)
    for stale in base.glob(f"{what}-*.iso"):        # older recipes' or versions' CDs
        if stale != iso:
            stale.unlink()
            stale.with_suffix(".json").unlink(missing_ok=True)
    built.iso, built.size = str(iso), iso.stat().st_size
    manifest.write_text(json.dumps(asdict(built), indent=1) + "\n")
    return built


def _make_linux(tree: Path, roots: dict[str, Path], versions: dict[str, str]) -> Built:
    kernel = next(p for p in versions if p.startswith("linux-image-"))
    release = kernel[len("linux-image-"):]
    root = roots[kernel]
    shutil.copy(root / f"boot/vmlinuz-{release}", tree / "boot/vmlinuz")
    modules = modules_in_order(root / f"lib/modules/{release}/kernel")
    busybox = (roots["busybox-static"] / "bin/busybox").read_bytes()
    initrd = initramfs(busybox, modules)
    (tree / "boot/initrd.gz").write_bytes(initrd)
    (tree / "isolinux/isolinux.cfg").write_text(ISOLINUX_CFG)
    return Built("", 0, versions, KERNEL_CMDLINE, release, len(initrd),
                 tuple(name for name, _ in modules))


def _make_memtest(tree: Path, roots: dict[str, Path], versions: dict[str, str]) -> Built:
    shutil.copy(roots["memtest86+"] / "boot/memtest86+x64.bin", tree / "boot/memtest.bin")
    (tree / "isolinux/isolinux.cfg").write_text(MEMTEST_CFG)
    return Built("", 0, versions, "")


def linux_iso() -> Built:
    """The Linux CD (built once per recipe and package versions)."""
    return _build("linux", _make_linux)


def memtest_iso() -> Built:
    """The memtest86+ CD: isolinux loading ``memtest86+x64.bin`` with the
    Linux boot protocol (memtest86+ 6's ``.bin`` has a bzImage header)."""
    return _build("memtest", _make_memtest)


# --- built artifacts in xm configurations -------------------------------------------------

#: the artifacts a configuration may name as ``file:@NAME``, by name
ARTIFACTS = {"linux.iso": linux_iso, "memtest.iso": memtest_iso}
_ARTIFACT = re.compile(r"(?<=file:)@([^,'\"\s]*)")


def resolve_artifacts(text: str, source: str = "<config>", path_of=None) -> str:
    """An xm configuration's text with each ``file:@NAME`` (a disk whose
    image hvmspec builds: ``@linux.iso``, ``@memtest.iso``) replaced by the
    built file's path, built first if the cache has none. The bundled
    ``guests/configs/linux.cfg`` names its CD so: the CD's path depends on
    the cache and the packages' versions, so no file can spell it.
    :class:`LinuxIsoUnavailable` names the file, the line and why.
    ``path_of(NAME)``, if given, gives the path instead of building (the
    documentation lists the configuration without building its CD)."""
    def one(match: re.Match) -> str:
        name = match.group(1)
        line = text.count("\n", 0, match.start()) + 1
        if name not in ARTIFACTS:
            raise LinuxIsoUnavailable(f"{source}:{line}: @{name}: no such built image "
                                      f"(known: {', '.join('@' + a for a in ARTIFACTS)})")
        if path_of is not None:
            return path_of(name)
        try:
            return ARTIFACTS[name]().iso
        except LinuxIsoUnavailable as exc:
            raise LinuxIsoUnavailable(f"{source}:{line}: @{name} cannot be built: {exc}") \
                from None
    return _ARTIFACT.sub(one, text)


# --- comparing boots ----------------------------------------------------------------------

#: Lines of a boot log whose content is timing, not behaviour: dropped by
#: :func:`normalise`, each pattern with its reason.
TIMING_LINES = (
    # the TSC's frequency, measured against the PIT or the ACPI timer in the
    # host's time on QEMU (TCG), in virtual time on the engines; and its
    # later refinement, a delayed work item that runs after a time, not at a
    # point of the boot
    (r"^tsc: ", "the TSC's measured frequency"),
    # the delay loop's value and the BogoMIPS, both derived from that frequency
    (r"BogoMIPS|Calibrating delay loop", "loops per jiffy from the TSC's frequency"),
    # clock sources: their max_cycles/max_idle_ns follow the measured
    # frequency, and "Switched to clocksource" comes when a work item ran
    (r"^clocksource: |^sched_clock: |^clocksource_done_booting",
     "clock sources' limits follow measured frequencies; switches come in time"),
    # the random pool is ready when enough interrupt timing entropy came
    (r"^random: ", "the entropy pool fills with interrupt timing"),
    # QEMU's HPET (where on) re-tunes after late interrupts on a busy host
    (r"^CE: hpet increased min_delta_ns", "late timer interrupts on a busy host"),
    # the audit subsystem's first message comes from its kernel thread when
    # that first runs (here before, there after thermal_sys's lines), and it
    # carries the wall-clock time
    (r"^audit: type=2000 ", "printed by a thread whenever it first runs"),
    # the RTC's date: the host's on QEMU, hvmspec's RTC's own start date
    (r"^rtc_cmos [0-9a-f:]+: setting system clock to ", "the date of the run"),
    # a handler or a work item that took long in the host's time
    (r"^hrtimer: interrupt took |hogged CPU for", "the host's scheduling"),
)

#: Lines a work item prints whenever the scheduler runs it: kept, but moved
#: to the end of the log and sorted, as their place among the other lines
#: (and among themselves) depends on timing, not on the platform; an input
#: device's number (``input0``) is its place in that order, so it becomes
#: ``inputN``.
ASYNC_LINES = (
    # serio's work item probes the keyboard (and mouse) behind the i8042 and
    # registers the input device: here before rtc_cmos's lines, there after
    (r"^input: ", "input devices are registered by serio's work item"),
)

#: a /proc/interrupts line: its count is how long the guest ran (the timer's
#: is ticks at HZ), which differs wherever time does
_INTERRUPT_COUNT = re.compile(r"^(\s*[0-9A-Z]+:)\s+(\d+)(\s)")
_TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\] ")
_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_TIMING = [re.compile(pattern) for pattern, _ in TIMING_LINES]
_ASYNC = [re.compile(pattern) for pattern, _ in ASYNC_LINES]
_INPUT_NUMBER = re.compile(r"\binput\d+\b")


def normalise(log: str) -> list[str]:
    """A serial log as lines to compare between runs and machines:

    - ``\\r`` and trailing spaces go: the tty writes ``\\r\\n``, a
      capture may keep either;
    - the kernel's ``[    1.234567]`` timestamps go: virtual time on the
      engines, the host's pace on QEMU;
    - terminal escape sequences go (busybox's line editor asks for the
      cursor's position, ``ESC [6n``, before each prompt, and redraws by
      what the terminal answers);
    - lines matching :data:`TIMING_LINES` go (each with its reason there);
    - lines matching :data:`ASYNC_LINES` move to the end, sorted, with
      ``inputN`` for an input device's number;
    - a ``/proc/interrupts`` count becomes ``N``;
    - empty lines go (the kernel's early and the shell's blank lines come
      and go with the console's setup).
    """
    out, moved = [], []
    for raw in log.replace("\r", "").split("\n"):
        line = _ESCAPE.sub("", _TIMESTAMP.sub("", raw)).rstrip()
        if not line or any(p.search(line) for p in _TIMING):
            continue
        line = _INTERRUPT_COUNT.sub(r"\1 N\3", line)     # its padding is its width
        if any(p.search(line) for p in _ASYNC):
            moved.append(_INPUT_NUMBER.sub("inputN", line))
        else:
            out.append(line)
    return out + sorted(moved)


#: Where the Linux CD's serial log on hvmspec (rombios, ``xm create linux``)
#: and on QEMU (rombios, :data:`hvmspec.qemu_peer.OS_MACHINE`) differ after
#: :func:`normalise`, each with why: (side, pattern, reason), ``side`` the
#: log the line is in ("hvmspec" or "qemu"). Every other difference is a
#: failure (tests/test_linux_boot.py), and so is an entry that matches none.
QEMU_DIFFERENCES = (
    # the CPU: a Core 2 as Xen 3.0.4 passed the host's CPUID through, against
    # QEMU's core2duo model
    ("hvmspec", r"^Disabled fast string operations$",
     "Unicorn reads IA32_MISC_ENABLE as 0 (fast strings off); Xen 3.0.4 read the host's "
     "MSR, QEMU's core2duo has the bit set (docs: cpu)"),
    ("hvmspec", r"^Hypervisor detected: Xen HVM$",
     "CPUID leaf 0x40000000 says Xen, as Xen's did; QEMU's TCG says nothing there"),
    ("hvmspec", r"^Last level [id]TLB entries: ",
     "CPUID leaf 2's TLB descriptors: the model's are a Core 2's, QEMU's core2duo gives none"),
    ("qemu", r"^Last level [id]TLB entries: 4KB 0, ",
     "CPUID leaf 2's TLB descriptors: the model's are a Core 2's, QEMU's core2duo gives none"),
    ("qemu", r"^(active return thunk: its_return_thunk|ITS: Mitigation: Aligned branch/return "
     r"thunks)$",
     "Indirect Target Selection is judged by family, model and stepping: QEMU's core2duo is "
     "stepping 11, the model's Core 2 stepping 6"),
    ("hvmspec", r"^microcode: (sig=0x6f6, pf=0x1, revision=0x1|Microcode Update Driver: "
     r"v2\.2\.)$",
     "QEMU's CPUID sets the hypervisor bit (leaf 1 ECX bit 31), which keeps Linux's "
     "microcode loader away; Xen 3.0.4's did not set it"),
    # the platform: Xen 3.0.4's, against QEMU's pc machine
    ("hvmspec", r"^BIOS bug: APIC version mismatch, boot CPU: ff, CPU 0: version 11$",
     "the boot CPU's APIC ID is read from the local APIC's MMIO, which on Xen 3.0.4's "
     "platform (no APIC) is no device's: qemu-dm answers all ones (exec-dm.c: 'Neither RAM "
     "nor known MMIO space'), QEMU 0"),
    ("qemu", r"^BIOS bug: APIC version mismatch, boot CPU: 0, CPU 0: version 11$",
     "the boot CPU's APIC ID read where no APIC is: QEMU's unassigned memory reads 0"),
    ("hvmspec", r"^smpboot: weird, boot CPU \(#255\) not listed by the BIOS$",
     "follows from the all-ones APIC ID (255), which the MP table's CPU 0 is not"),
    ("hvmspec", r"^I/O APIC 0xfec00000 registers return all ones, skipping!$",
     "Xen 3.0.4's platform has the 8259 pair and no I/O APIC (qemu-dm answers all ones "
     "there); QEMU's pc machine always has one, which the firmware's tables list"),
    ("qemu", r"^IOAPIC\[0\]: apic_id 1, version 32, address 0xfec00000, GSI 0-23$",
     "QEMU's pc machine's I/O APIC (the model's platform has none)"),
    ("hvmspec", r"^NR_IRQS: \d+, nr_irqs: 32, ", "no I/O APIC: 16 legacy lines and 16 more"),
    ("qemu", r"^NR_IRQS: \d+, nr_irqs: 256, ", "an I/O APIC's 24 lines size the table"),
    ("hvmspec", r"^hpet: Config register invalid\. Disabling HPET$",
     "rombios32 writes an HPET table on both; the address it names is no device's on either "
     "(hpet=off on QEMU, none in Xen 3.0.4): Xen's qemu-dm answers all ones, which Linux "
     "checks for and refuses aloud, QEMU 0, a period of 0 that Linux refuses without a word"),
    ("hvmspec", r"^\* (Found PM-Timer Bug on the chipset\. Due to workarounds for a bug,|this "
     r"clock source is slow\. Consider trying other clock sources)$",
     "Xen 3.0.4's PIIX4 PM function is revision 1 ('B0 stepping', piix4acpi.c), which has "
     "the PM timer erratum Linux works around; QEMU's is revision 3"),
    ("hvmspec", r"^pci 0000:00:01\.2: (\[8086:7113\]|quirk: \[io  0xb[01]00-0xb[01][03]f\])",
     "Xen 3.0.4's qemu-dm puts the PIIX4 PM function at 00:01.2 (piix3_devfn + 2); QEMU at "
     "00:01.3"),
    ("qemu", r"^pci 0000:00:01\.3: (\[8086:7113\]|quirk: \[io  0xb[01]00-0xb[01][03]f\])",
     "QEMU's PIIX4 PM function is 00:01.3"),
    ("hvmspec", r"^pci 0000:00:03\.0: (\[1234:7e57\] type 00 class 0xff0000|BAR 0 \[mem "
     r"0xfeb00000-0xfeb00fff\])$",
     "hvmspec's test device (spec.platform.PCI_ID_TESTDEV), which the bundled guests use"),
    ("hvmspec", r"^pnp: PnP ACPI: found 7 devices$",
     "rombios32's DSDT (Bochs's: \\_SB.PCI0.PX13 at 00:01.3, config 0x5C-0x7F) reports the "
     "parallel port by DRSA bit 31 and COM2 by DRSC bit 31 of the PIIX4 PM function there; "
     "on Xen 3.0.4's platform no function is at 00:01.3, its config space reads all ones, "
     "and both are reported present"),
    ("qemu", r"^pnp: PnP ACPI: found 5 devices$",
     "QEMU's PIIX4 PM function at 00:01.3 has those two bits clear"),
    ("hvmspec", r"^00:05: ttyS0 at I/O 0x3f8 ", "COM1 is the sixth PnP device (two more first)"),
    ("qemu", r"^00:04: ttyS0 at I/O 0x3f8 ", "COM1 is QEMU's fifth PnP device"),
    # the CD-ROM drive: Xen 3.0.4's qemu-dm's IDENTIFY and INQUIRY, QEMU 7.2's
    ("hvmspec", r"^ata2\.00: ATAPI: QEMU CD-ROM, 0\.8\.2, max MWDMA2$",
     "Xen 3.0.4's qemu-dm (QEMU 0.8.2): a CD-ROM with multiword DMA 2"),
    ("qemu", r"^ata2\.00: ATAPI: QEMU DVD-ROM, 2\.5\+, max UDMA/100$",
     "QEMU 7.2: a DVD-ROM with Ultra DMA"),
    ("hvmspec", r"^scsi 1:0:0:0: CD-ROM +QEMU +QEMU CD-ROM +0\.8\. PQ: 0 ANSI: 5$",
     "INQUIRY's product and revision, Xen 3.0.4's"),
    ("qemu", r"^scsi 1:0:0:0: CD-ROM +QEMU +QEMU DVD-ROM +2\.5\+ PQ: 0 ANSI: 5$",
     "INQUIRY's product and revision, QEMU 7.2's"),
    ("hvmspec", r"^ata2: found unknown device \(class 0\)$",
     "each reset of the secondary channel: Xen 3.0.4's absent slave shows the signature "
     "0xff/0xff (ide_set_signature), which Linux names before it drops it; QEMU's absent "
     "slave reads 0. Linux resets the channel at its probe, and after an ATAPI command "
     "that follows a failed one (GET CONFIGURATION of a feature other than 0, ILLEGAL "
     "REQUEST on both): Xen 3.0.4's PACKET keeps the failed command's ERR beside DRQ "
     "(ide_transfer_start ORs DRQ in), which Linux's state machine takes for a device "
     "error; QEMU 7.2 clears the status and error at every command"),
    ("hvmspec", r"^sr 1:0:0:0: \[sr0\] scsi3-mmc drive: 4x/4x xa/form2 tray$",
     "MODE SENSE's capabilities page: Xen 3.0.4's byte 2 (read capabilities) is 0, no CD-R "
     "or CD-RW"),
    ("qemu", r"^sr 1:0:0:0: \[sr0\] scsi3-mmc drive: 4x/4x cd/rw xa/form2 tray$",
     "QEMU 7.2's capabilities page reads CD-R, CD-RW and DVDs (byte 2 0x3b)"),
)


def compare_with_qemu(ours: str, qemu: str) -> tuple[list, list, list]:
    """The differences of two serial logs after :func:`normalise`: those
    :data:`QEMU_DIFFERENCES` explains (side, line, reason), those it does
    not (side, line), and its entries that matched no line."""
    import difflib
    a, b = normalise(qemu), normalise(ours)
    explained, unexplained, used = [], [], set()
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        for side, lines in (("qemu", a[i1:i2]), ("hvmspec", b[j1:j2])):
            for line in lines:
                hit = next((k for k, (s, p, _r) in enumerate(QEMU_DIFFERENCES)
                            if s == side and re.search(p, line)), None)
                if hit is None:
                    unexplained.append((side, line))
                else:
                    used.add(hit)
                    explained.append((side, line, QEMU_DIFFERENCES[hit][2]))
    unused = [QEMU_DIFFERENCES[k][1] for k in range(len(QEMU_DIFFERENCES)) if k not in used]
    return explained, unexplained, unused


#: The fields of memtest86+'s screen that differ between hvmspec and QEMU
#: for a reason other than the platform's behaviour: (pattern, what replaces
#: it, reason). Applied to every row of both screens before they are compared.
MEMTEST_DIFFERENCES = (
    (r"(Memtest86\+ v[\d.]+ +\| ).*", r"\1<cpu>",
     "the CPU's brand string (CPUID 0x80000002-4): spec.platform.HVM_CPUID's, "
     "\"Core(TM)2 CPU 6600\"; QEMU's core2duo model, \"Core(TM)2 Duo CPU T7700\""),
    (r"CLK/Temp: +\d+MHz +\|", "CLK/Temp: <MHz> |",
     "memtest86+ measures the TSC against the ACPI PM timer, read in a tight loop: "
     "Xen's PM timer drops the fraction of a tick at every read (spec.devices.pmtimer), "
     "so hvmspec's 2400 MHz TSC measures 2886 MHz; QEMU's TSC runs at the host's rate"),
    (r"L3 Cache: +(N/A|\d+[KM]B)( +\d+(\.\d+)? [GM]B/s)? +\|", "L3 Cache: <L3> |",
     "the caches CPUID leaf 4 lists: hvmspec's table has no L3, QEMU's core2duo a 16 MB one"),
    (r"(\d+(\.\d+)? [GM]B/s) +\|", "<speed> |",
     "cache and memory speeds, measured with the TSC: the host's speed"),
    (r"Time: +\d+:\d\d:\d\d", "Time: <time>",
     "memtest86+'s clock: the TSC over the rate it measured (above)"),
    (r"(Status: \w+) +[-\\|/]", r"\1 <spinner>",
     "the spinner turns with time"),
    (r"Pattern: 0x[0-9a-f]{16} - \d+", "Pattern: <random> - <offset>",
     "the modulo-20 test's pattern is seeded from the TSC (memtest86+'s test 9: "
     "prsg_state = get_tsc()), and which of its 20 offsets the screen shows is "
     "timing: memtest86+ mirrors its screen on COM1 at its timer's refresh, not at "
     "each change"),
    (r"(Pass|Test) +\d+% *#*", r"\1 <progress>",
     "how far the pass and the test had come when memtest86+'s timer last refreshed "
     "its mirror on COM1 (the test's 1% or 2% at the bit fade's start)"),
    (r"Testing: +\d+[KMG]B - +\d+[KMG]B \[ *\d+(\.\d+)?[KMG]B of", "Testing: <window> of",
     "which window of memory the screen shows is timing, as the pattern's offset "
     "(above); the total tested stays compared"),
)


def memtest_screen(serial: str, marker: str) -> list[str]:
    """memtest86+'s screen, mirrored on COM1, as it was when ``marker``
    first appeared there (:mod:`hvmspec.terminal`): the output is replayed up
    to the escape sequence after the marker (the rest of its field), and
    :data:`MEMTEST_DIFFERENCES` masked. The box-drawing characters, which the
    serial mirror writes as ASCII, are the same on both sides. Raises
    ValueError if the marker never appears."""
    from hvmspec.terminal import screen
    at = serial.find(marker)
    if at < 0:
        raise ValueError(f"{marker!r} is not in memtest86+'s serial output")
    end = serial.find("\x1b", at + len(marker))
    rows = screen(serial[:len(serial) if end < 0 else end])
    out = []
    for row in rows:
        for pattern, replacement, _reason in MEMTEST_DIFFERENCES:
            row = re.sub(pattern, replacement, row)
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hvmspec.linux_iso",
        description="Build (or find in the cache) hvmspec's Linux CD and memtest86+ CD from "
                    "Debian's packages; print where they are.")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        built = {"linux": asdict(linux_iso()), "memtest": asdict(memtest_iso())}
    except LinuxIsoUnavailable as exc:
        print(f"hvmspec.linux_iso: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(built, indent=1))
    else:
        for name, b in built.items():
            print(f"{name}: {b['iso']} ({b['size']} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
