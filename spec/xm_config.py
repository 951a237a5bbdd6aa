"""xm's domain configuration files.

Room: control plane. The file format ``xm create`` reads, and the
:class:`spec.xend.DomainConfig` it gives. Imports :mod:`spec.xend` and
:mod:`spec.loader` (where the bundled guests are).

An xm configuration is a Python file of assignments (Xen 3.x's
``xm create`` executes it; here only literal assignments are accepted, and
nothing is executed)::

    builder = 'hvm'           # required: this is an HVM domain
    name = 'demo'             # required
    kernel = 'demo'           # the firmware image (Xen: hvmloader): a bundled
                              # guest's name or a file, or
                              # '/usr/lib/xen/boot/hvmloader' for real firmware:
    bios = 'rombios'          # with hvmloader: rombios, rombios-legacy, seabios or a file
    vgabios = '/usr/share/vgabios/vgabios.bin'   # or 'none'
    memory = 16               # MiB
    vcpus = 1
    serial = 'pty'            # or 'none'
    vga = 1                   # 0 (or nographic = 1): no VGA
    on_poweroff = 'destroy'   # destroy, restart or preserve
    on_reboot = 'restart'
    on_crash = 'restart'
    # qemu-dm's process (hvmspec's keys)
    device_model_bits = 32
    mapcache_budget = 2415919104
    map_everything = 0
    rtc_base = 1700000000
    boot = 'c'                # the BIOS's boot order: a, c, d (floppy, disk, CD)
    # IDE drives (Xen 3.0.4's syntax: uname,dev,mode)
    disk = ['file:disk.img,hda,w',          # a disk image, read-write
            'file:/isos/cd.iso,hdc:cdrom,r']  # a CD-ROM (',hdc:cdrom,r': empty)
    # qemu-dm's VNC server (Xen 3.0.4's keys and defaults)
    vnc = 1                   # serve the screen, keyboard and mouse over VNC
    vncunused = 1             # the first free display from 0 on (the default);
    vncdisplay = 1            #   with vncunused = 0: this display (default: the domid)
    vnclisten = '127.0.0.1'   # the address (the default)
    vncpasswd = 'secret'      # VNC authentication (at most 8 characters; '': none)
    sdl = 0                   # an SDL window: not offered (sdl = 1 is refused)

A flag (``map_everything``, ``vnc``, ``vncunused``, ``sdl``) is 0 or 1
(or a bool). ``sdl = 1`` is refused: hvmspec opens no SDL window, and the
message points at ``vnc = 1``. ``vnc = 1`` with no VGA is refused by
:class:`~spec.xend.DomainConfig`: Xen 3.0.4's xend then started no VNC
server at all (``configVNC`` returns ``-nographic`` alone).

A key xm does not know, a value of the wrong type or a value
:class:`~spec.xend.DomainConfig` refuses is a :class:`ConfigFileError`
that names the file, the line and the key. So is a ``name`` that xend
would refuse (:func:`spec.xend.check_name`: empty, ``Domain-0``, a
character outside letters, digits and ``_-.:/+``, or too long for
XenStore), and a file that is not text (:func:`decode`: not UTF-8, or
with a NUL byte).

``disk`` is a list of ``'uname,dev,mode'`` strings
(:func:`spec.xend.parse_disk`): ``uname`` is ``file:PATH`` or
``tap:aio:PATH`` (a raw image file; ``phy:`` block devices are refused
with the reason), or empty for a CD-ROM drive with no medium; ``dev`` is
``hda`` .. ``hdd``, with ``:cdrom`` for a CD-ROM drive; ``mode`` is ``r``,
``w`` or ``w!``. A relative PATH is in the configuration file's directory.
Each image is checked when the file is read (:func:`spec.block.open_image`:
a missing, unreadable, empty or misshapen image, or a read-only file for
mode ``w``, is an error naming the file, the line and the key). ``boot``
orders the drives the BIOS tries (``'dc'``: the CD, then the disk).

``kernel`` is found the way a user reads the file, wherever xend runs
(:func:`kernel_path`): a relative path names a file in the configuration
file's directory; a bare name (no ``/``, no suffix) that is no file there
names a bundled guest. A kernel that is missing, does not assemble or
does not fit is, too, a bad configuration; xend finds that out when it
builds the domain.
"""

from __future__ import annotations

import ast
import os

from spec.hvmloader import FIRMWARE
from spec.loader import GUESTS_DIR
from spec.xend import DomainConfig, XendError, check_disks, check_name, parse_disk

#: key -> (the DomainConfig field, the accepted Python types)
KEYS = {
    "name": ("name", (str,)),
    "kernel": ("kernel", (str,)),
    "bios": ("bios", (str,)),
    "vgabios": ("vgabios", (str,)),
    "memory": ("memory_mib", (int,)),
    "vcpus": ("vcpus", (int,)),
    "serial": ("serial", (str,)),
    "on_poweroff": ("on_poweroff", (str,)),
    "on_reboot": ("on_reboot", (str,)),
    "on_crash": ("on_crash", (str,)),
    "device_model_bits": ("device_model_bits", (int,)),
    "mapcache_budget": ("mapcache_budget", (int,)),
    "map_everything": ("map_everything", (int, bool)),
    "rtc_base": ("rtc_base", (int,)),
    "boot": ("boot", (str,)),
    "vnc": ("vnc", (int, bool)),
    "vncdisplay": ("vncdisplay", (int,)),
    "vncunused": ("vncunused", (int, bool)),
    "vnclisten": ("vnclisten", (str,)),
    "vncpasswd": ("vncpasswd", (str,)),
    "disk": ("disks", (list, tuple)),
}
#: keys that are read but have no field of their own
OTHER_KEYS = ("builder", "vga", "stdvga", "nographic", "sdl")
#: keys whose value is a flag (0 or 1, or a bool)
FLAGS = ("map_everything", "vnc", "vncunused", "sdl")


class ConfigFileError(XendError):
    """An xm configuration that cannot be used; says where and why."""


def decode(data: bytes, source: str = "<config>") -> str:
    """An xm file's bytes as text, or :class:`ConfigFileError` naming the
    file and the first byte that makes it not a text file."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigFileError(f"{source}: not a text file: byte {data[exc.start]:#04x} at "
                              f"offset {exc.start} is not UTF-8 (an xm configuration is "
                              f"text: key = value lines)") from None
    _no_nul(text, source)
    return text


def _no_nul(text: str, source: str) -> None:
    if "\0" in text:
        offset = text.index("\0")
        raise ConfigFileError(f"{source}:{text.count(chr(10), 0, offset) + 1}: not a text "
                              f"file: a NUL byte (an xm configuration is text: key = value "
                              f"lines)")


def kernel_path(kernel: str, directory: str | os.PathLike | None) -> str:
    """Where the ``kernel`` of a configuration file in ``directory`` is.

    An absolute path is itself. A bare word (no ``/``, no suffix) that
    names a bundled guest is that guest, as for :func:`spec.loader.load`
    (write ``./word`` for a file of that name). Any other relative path is
    in ``directory`` (the configuration file's, made absolute by xm); a
    bare word that is neither a bundled guest nor a file there is left as
    it is, for the loader to say so. Without a directory (a configuration
    that is not from a file) the value is left as it is; ``""`` stays ``""``.
    """
    if not kernel or directory is None or os.path.isabs(kernel):
        return kernel
    here = os.path.normpath(os.path.join(os.fspath(directory), kernel))
    bare = "/" not in kernel and not os.path.splitext(kernel)[1]
    if bare and ((GUESTS_DIR / f"{kernel}.s").exists() or not os.path.exists(here)):
        return kernel
    return here


def parse(text: str, source: str = "<config>",
          directory: str | os.PathLike | None = None) -> DomainConfig:
    """The domain configuration an xm file describes; ``directory`` is the
    file's (a relative ``kernel`` is found there, :func:`kernel_path`)."""
    _no_nul(text, source)
    try:
        tree = ast.parse(text, filename=source)
    except SyntaxError as exc:
        raise ConfigFileError(f"{source}:{exc.lineno}: {exc.msg}") from None
    values: dict[str, object] = {}
    lines: dict[str, int] = {}
    for stmt in tree.body:
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name)):
            raise ConfigFileError(f"{source}:{stmt.lineno}: only 'key = value' lines are "
                                  f"allowed")
        key = stmt.targets[0].id
        try:
            value = ast.literal_eval(stmt.value)
        except ValueError:
            raise ConfigFileError(f"{source}:{stmt.lineno}: {key}: the value must be a "
                                  f"literal") from None
        if key not in KEYS and key not in OTHER_KEYS:
            raise ConfigFileError(f"{source}:{stmt.lineno}: unknown key {key!r} (known: "
                                  f"{', '.join(sorted((*KEYS, *OTHER_KEYS)))})")
        if key in KEYS and not isinstance(value, KEYS[key][1]):
            raise ConfigFileError(f"{source}:{stmt.lineno}: {key} = {value!r}: expected "
                                  f"{' or '.join(t.__name__ for t in KEYS[key][1])}")
        values[key], lines[key] = value, stmt.lineno
    if values.get("builder") != "hvm":
        raise ConfigFileError(f"{source}: builder = {values.get('builder')!r}: this is an HVM "
                              f"toolstack, builder = 'hvm' is required")
    if "name" not in values:
        raise ConfigFileError(f"{source}: name is required")
    try:
        check_name(values["name"])
    except XendError as exc:
        raise ConfigFileError(f"{source}:{lines['name']}: {exc}") from None
    for key in ("kernel", "bios", "vgabios"):     # files beside the configuration
        if key in values and values[key] not in (*FIRMWARE, "none"):
            values[key] = kernel_path(values[key], directory)
    for key in FLAGS:
        if key in values and values[key] not in (0, 1):
            raise ConfigFileError(f"{source}:{lines[key]}: {key} = {values[key]!r}: expected "
                                  f"0 or 1")
    if values.get("sdl"):
        raise ConfigFileError(f"{source}:{lines['sdl']}: sdl = 1: hvmspec has no SDL window; "
                              f"use vnc = 1 and a VNC viewer (or sdl = 0)")
    if "disk" in values:
        values["disk"] = _disks(values["disk"], source, lines["disk"], directory)
    fields = {KEYS[k][0]: v for k, v in values.items() if k in KEYS}
    for key in FLAGS:
        if key in fields:
            fields[key] = bool(fields[key])
    vga = bool(values.get("vga", values.get("stdvga", 1))) and not values.get("nographic", 0)
    try:
        return DomainConfig(vga=vga, **fields)
    except XendError as exc:
        raise ConfigFileError(f"{source}: {exc}") from None


def _disks(entries, source: str, line: int, directory) -> tuple:
    """The ``disk`` list as :class:`spec.xend.Disk` entries, each image
    checked (:func:`spec.xend.check_disks`)."""
    where = None if directory is None else os.fspath(directory)
    disks = []
    for entry in entries:
        try:
            disks.append(parse_disk(entry, where))
        except XendError as exc:
            raise ConfigFileError(f"{source}:{line}: disk: {exc}") from None
    try:
        check_disks(tuple(disks))
        DomainConfig(name="check", disks=tuple(disks))
    except XendError as exc:
        raise ConfigFileError(f"{source}:{line}: disk: {exc}") from None
    return tuple(disks)
