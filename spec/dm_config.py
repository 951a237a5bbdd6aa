"""The domain's configuration in XenStore: what xend writes, what qemu-dm reads.

Room: control plane. The paths and their meaning; :func:`write_domain`
for xend, :func:`read_device_model` for qemu-dm. Imports
:mod:`spec.platform`, :mod:`spec.xs_client`. Both engines' qemu-dm read
their configuration through here, never from Python arguments.

xend writes, when it creates domain ``D`` with UUID ``U`` (the layout of
Xen 3.x's ``XendDomainInfo``; the ``device-model`` keys are hvmspec's)::

    /local/domain/D/name                 the domain's name
    /local/domain/D/domid                D
    /local/domain/D/vm                   /vm/U
    /local/domain/D/memory/target        memory in KiB
    /local/domain/D/cpu/N/availability   "online", for each vcpu N
    /vm/U/uuid, /vm/U/name
    /vm/U/memory                         memory in MiB
    /vm/U/vcpus                          number of vcpus
    /vm/U/on_poweroff, on_reboot, on_crash
    /vm/U/image/ostype                   "hvm"
    /vm/U/image/serial                   "pty" (COM1 present) or "none"
    /vm/U/image/nographic                "1": no VGA; "0": the VGA
    /vm/U/image/boot                     the BIOS's boot order ("c", "dc", ...)
    /vm/U/image/device-model/bits        qemu-dm's word size, 32 or 64
    /vm/U/image/device-model/mapcache-budget   bytes, or "default"
    /vm/U/image/device-model/map-everything    "1": map all memory at start
    /vm/U/image/device-model/rtc-base    the RTC's time at start-up (seconds since
                                         the epoch), or "default"
    /vm/U/image/device-model/vnc         qemu-dm's VNC server: "none", a display
                                         number N, or "unused" (the first free one)
    /vm/U/image/device-model/vnclisten   the address it listens on (with VNC only)
    /vm/U/vncpasswd                      the VNC password (only when not empty)

Disks (xm's ``disk`` list, :class:`spec.xend.Disk`) are virtual block
devices, written as Xen 3.0.4's xend wrote them (``DevController``'s
``addStoreEntries`` and ``blkif.py``'s ``getDeviceDetails``), for each
drive with device number N (:func:`device_number`: ``hda`` 768, ``hdb``
832, ``hdc`` 5632, ``hdd`` 5696, Linux's IDE numbers) and class C (``vbd``
for ``file:``, ``tap`` for ``tap:aio:``)::

    /local/domain/D/device/vbd/N/virtual-device   N
    /local/domain/D/device/vbd/N/device-type      "disk" or "cdrom"
    /local/domain/D/device/vbd/N/backend          /local/domain/0/backend/C/D/N
    /local/domain/D/device/vbd/N/backend-id       0
    /local/domain/D/device/vbd/N/state            1 (XenbusStateInitialising)
    /local/domain/0/backend/C/D/N/dev             hda .. hdd
    /local/domain/0/backend/C/D/N/type            "file", "tap", or "" (empty CD)
    /local/domain/0/backend/C/D/N/params          the image: PATH (file), aio:PATH
                                                  (tap), "" (an empty CD-ROM drive)
    /local/domain/0/backend/C/D/N/mode            r, w or w!
    /local/domain/0/backend/C/D/N/domain          the domain's name
    /local/domain/0/backend/C/D/N/frontend        /local/domain/D/device/vbd/N
    /local/domain/0/backend/C/D/N/frontend-id     D
    /local/domain/0/backend/C/D/N/online          1
    /local/domain/0/backend/C/D/N/state           1

The front end belongs to D (dom0 may read it), the back end to dom0 (D
may read it). qemu-dm reads them as Xen 3.0.4's did
(``xenstore_parse_domain_config`` in ``tools/ioemu/xenstore.c``): it lists
``/local/domain/D/device/vbd``, follows each ``backend``, takes ``dev``
(anything but ``hda`` .. ``hdd`` is not its), the front end's
``device-type`` and the back end's ``params`` (``aio:`` dropped for a tap
device), and opens the image (:mod:`spec.block`). One difference, stated:
it reads ``mode`` too, and opens an ``r`` disk read-only (Xen 3.0.4's opened
every image read-write); and a drive it cannot open stops it
(:class:`DeviceModelError`) where Xen 3.0.4's printed "could not open hard
disk image" and ran with the drive empty. For a CD-ROM drive it watches
the back end's ``params`` (token: the drive's name), and a new value there
is a medium change (``xm block-configure``, :func:`change_media`): the
medium is ejected and the new image, if any, inserted.

The VNC keys stand for the command-line arguments Xen 3.0.4's xend gave
qemu-dm (``tools/python/xen/xend/image.py``, ``configVNC``): ``-vnc N``
(N: ``vncdisplay``, by default the domain's ID) or, with ``vncunused``
(xm create's default), ``-vncunused`` alone, which starts the search for
a free port at display 0; and ``-vnclisten ADDR``. The password did go
through XenStore: xend stored it at ``/vm/U/vncpasswd``
(``storeVm("vncpasswd", ...)``, only when it is not empty), and qemu-dm
read it at start-up and wrote it back blanked (``xenstore_read_vncpasswd``
in ``tools/ioemu/xenstore.c``), so that it stays in XenStore no longer
than needed (:func:`take_vnc_password`). Once listening, qemu-dm
publishes its port, 5900 + the display it got, at
``/local/domain/D/console/vnc-port`` (``xenstore_write_vncport``), where
xend's ``xm list --long`` finds it (:func:`publish_vnc_port`).

Permissions (Xen 3.x's ``XendDomainInfo``): ``/local/domain/D`` belongs to
domain D and the nodes xend writes below it inherit that; its
``device``, ``control``, ``error`` and ``memory`` directories are D's
alone (``nD``); ``/vm/U`` is dom0's, except ``/vm/U/uuid``, which D may
read (``_setVmPermissions``: "allow the guest domain to read its UUID. We
don't allow it to access any other entry, for security"). xend writes all
of it in one transaction.

qemu-dm finds ``/vm/U`` through ``/local/domain/D/vm`` and reads the rest;
when it is ready it writes ``running`` to
``/local/domain/0/device-model/D/state``, where xend looks for it.
A missing or malformed key stops qemu-dm with a
:class:`spec.xend.DeviceModelError` that names the path.
"""

from __future__ import annotations

import uuid as _uuid
from dataclasses import dataclass

from spec import platform
from spec.xs_client import XenstoreError, XsClient, transact

#: the namespace of the UUIDs xend gives domains (deterministic by name)
UUID_NAMESPACE = _uuid.UUID("6f0b1a3e-49d6-4c8e-9a8e-68766d737065")


class DeviceModelError(Exception):
    """qemu-dm could not start for this domain (the message says why)."""


class ConfigError(DeviceModelError):
    """A device-model configuration qemu-dm cannot use; names the path."""


@dataclass(frozen=True)
class DeviceModelConfig:
    """What qemu-dm serves the domain with."""

    domid: int
    memory_bytes: int
    vcpus: int
    serial: bool
    vga: bool
    bits: int
    mapcache_budget: int | None
    map_everything: bool
    rtc_base: int | None
    boot: str = "c"
    #: VNC: the display to listen on (None: no VNC server), or with
    #: ``vnc_unused`` the first display to try; the address it listens on
    vnc_display: int | None = None
    vnc_unused: bool = False
    vnc_listen: str = platform.VNC_DEFAULT_LISTEN
    #: the IDE drives (:class:`DriveConfig`), in device order
    disks: tuple = ()


@dataclass(frozen=True)
class DriveConfig:
    """One drive as qemu-dm reads it from the domain's vbds."""

    #: ``hda`` .. ``hdd``
    dev: str
    #: ``"disk"`` or ``"cdrom"``
    kind: str
    #: the image file ("" for an empty CD-ROM drive)
    path: str
    #: mode ``w`` or ``w!``: the image is opened for writing
    writable: bool
    #: the back end's XenStore directory (where ``params`` is watched)
    backend: str = ""


#: the Linux device numbers of the IDE drives (major 3 for the primary
#: channel, 22 for the secondary; minor 0 or 64), as Xen 3.0.4's
#: ``blkdev_name_to_number`` gave them
DEVICE_NUMBERS = {"hda": 3 << 8, "hdb": (3 << 8) + 64, "hdc": 22 << 8, "hdd": (22 << 8) + 64}


def device_number(dev: str) -> int:
    """The vbd's device number for the drive ``dev`` (``hda`` .. ``hdd``)."""
    return DEVICE_NUMBERS[dev]


def disk_entries(domid: int, name: str, disk) -> tuple[str, str, list[tuple[str, str]]]:
    """xend: a disk's front-end path, back-end path and the nodes of both
    (module docstring) for a :class:`spec.xend.Disk`."""
    number = device_number(disk.dev)
    cls = "tap" if disk.driver == "tap:aio" else "vbd"
    front = f"/local/domain/{domid}/device/vbd/{number}"
    back = f"/local/domain/{platform.DOM0}/backend/{cls}/{domid}/{number}"
    typ, params = (disk.driver.split(":")[0], disk.path) if disk.path else ("", "")
    if typ == "tap":
        params = f"aio:{params}"
    return front, back, [
        (f"{front}/virtual-device", str(number)), (f"{front}/device-type", disk.kind),
        (f"{front}/backend", back), (f"{front}/backend-id", str(platform.DOM0)),
        (f"{front}/state", XENBUS_INITIALISING),
        (f"{back}/dev", disk.dev), (f"{back}/type", typ), (f"{back}/params", params),
        (f"{back}/mode", disk.mode), (f"{back}/domain", name), (f"{back}/frontend", front),
        (f"{back}/frontend-id", str(domid)), (f"{back}/online", "1"),
        (f"{back}/state", XENBUS_INITIALISING)]


#: ``XenbusStateInitialising``, the state xend gives a new device's ends
XENBUS_INITIALISING = "1"


def domain_uuid(name: str) -> str:
    return str(_uuid.uuid5(UUID_NAMESPACE, name))


def vm_path(name: str) -> str:
    return f"/vm/{domain_uuid(name)}"


def write_domain(xs: XsClient, domid: int, config) -> None:
    """xend: the domain's nodes (module docstring) for a
    :class:`spec.xend.DomainConfig`, in one transaction."""
    dom, vm = f"/local/domain/{domid}", vm_path(config.name)
    entries = [
        (f"{dom}/name", config.name), (f"{dom}/domid", str(domid)), (f"{dom}/vm", vm),
        (f"{dom}/memory/target", str(config.memory_mib << 10)),
        *((f"{dom}/cpu/{n}/availability", "online") for n in range(config.vcpus)),
        (f"{vm}/uuid", domain_uuid(config.name)), (f"{vm}/name", config.name),
        (f"{vm}/memory", str(config.memory_mib)), (f"{vm}/vcpus", str(config.vcpus)),
        (f"{vm}/on_poweroff", config.on_poweroff), (f"{vm}/on_reboot", config.on_reboot),
        (f"{vm}/on_crash", config.on_crash),
        (f"{vm}/image/ostype", "hvm"), (f"{vm}/image/serial", config.serial),
        (f"{vm}/image/nographic", "0" if config.vga else "1"),
        (f"{vm}/image/boot", config.boot),
        (f"{vm}/image/device-model/bits", str(config.device_model_bits)),
        (f"{vm}/image/device-model/mapcache-budget",
         "default" if config.mapcache_budget is None else str(config.mapcache_budget)),
        (f"{vm}/image/device-model/map-everything", "1" if config.map_everything else "0"),
        (f"{vm}/image/device-model/rtc-base",
         "default" if config.rtc_base is None else str(config.rtc_base)),
        (f"{vm}/image/device-model/vnc", _vnc_argument(domid, config)),
    ]
    if config.vnc:
        entries.append((f"{vm}/image/device-model/vnclisten", config.vnclisten))
        if config.vncpasswd:
            entries.append((f"{vm}/vncpasswd", config.vncpasswd))

    def body(tx: int) -> None:
        xs.mkdir("/local/domain", tx)
        xs.rm(dom, tx)
        xs.mkdir(dom, tx)
        xs.set_perms(dom, [f"r{domid}"], tx)
        for sub in ("device", "control", "error", "memory"):
            xs.mkdir(f"{dom}/{sub}", tx)
            xs.set_perms(f"{dom}/{sub}", [f"n{domid}"], tx)
        for path, value in entries:
            xs.write(path, value, tx)
        xs.set_perms(f"{vm}/uuid", [f"n{platform.DOM0}", f"r{domid}"], tx)
        for disk in config.disks:
            front, back, nodes = disk_entries(domid, config.name, disk)
            xs.mkdir(back, tx)
            xs.set_perms(back, [f"n{platform.DOM0}", f"r{domid}"], tx)
            xs.mkdir(front, tx)
            xs.set_perms(front, [f"n{domid}", f"r{platform.DOM0}"], tx)
            for path, value in nodes:
                xs.write(path, value, tx)
    transact(xs, body)


def _vnc_argument(domid: int, config) -> str:
    """xend's ``configVNC``: ``-vncunused``, else ``-vnc N`` with N the
    configured display or the domain's ID; nothing without ``vnc``."""
    if not config.vnc:
        return "none"
    if config.vncunused:
        return "unused"
    return str(domid if config.vncdisplay is None else config.vncdisplay)


def remove_domain(xs: XsClient, domid: int, name: str, disks: tuple = ()) -> None:
    """xend, when the domain is gone: its nodes, its ``/vm`` entry, the
    back ends of its ``disks`` and its device model's state."""
    classes = sorted({"tap" if disk.driver == "tap:aio" else "vbd" for disk in disks})
    for path in (f"/local/domain/{domid}", vm_path(name),
                 *(f"/local/domain/{platform.DOM0}/backend/{cls}/{domid}" for cls in classes),
                 f"/local/domain/{platform.DOM0}/device-model/{domid}"):
        xs.rm(path)


def read_device_model(xs: XsClient, domid: int) -> DeviceModelConfig:
    """qemu-dm: its configuration from the domain's nodes."""
    dom = f"/local/domain/{domid}"
    vm = _read(xs, f"{dom}/vm")
    budget = _read(xs, f"{vm}/image/device-model/mapcache-budget")
    rtc = _read(xs, f"{vm}/image/device-model/rtc-base")
    return DeviceModelConfig(
        domid=domid,
        memory_bytes=_number(xs, f"{dom}/memory/target", 1, 1 << 40) << 10,
        vcpus=_number(xs, f"{vm}/vcpus", 1, 128),
        serial=_choice(xs, f"{vm}/image/serial", {"pty": True, "none": False}),
        vga=_choice(xs, f"{vm}/image/nographic", {"0": True, "1": False}),
        bits=_choice(xs, f"{vm}/image/device-model/bits", {"32": 32, "64": 64}),
        mapcache_budget=None if budget == "default" else
        _number(xs, f"{vm}/image/device-model/mapcache-budget", 1, 1 << 48, budget),
        map_everything=_choice(xs, f"{vm}/image/device-model/map-everything",
                               {"0": False, "1": True}),
        rtc_base=None if rtc == "default" else
        _number(xs, f"{vm}/image/device-model/rtc-base", 0, (1 << 40), rtc),
        boot=_boot_order(xs, f"{vm}/image/boot"),
        **_vnc(xs, f"{vm}/image/device-model"),
        disks=read_disks(xs, domid),
    )


def read_disks(xs: XsClient, domid: int) -> tuple:
    """qemu-dm: the domain's IDE drives from its vbds (module docstring),
    in device order. A vbd whose ``dev`` is not an IDE drive is not
    qemu-dm's and is passed over, as Xen 3.0.4's qemu-dm did; a malformed
    node of an IDE drive is a :class:`ConfigError`."""
    root = f"/local/domain/{domid}/device/vbd"
    try:
        numbers = xs.directory(root)
    except XenstoreError:
        return ()
    drives = {}
    for number in numbers:
        back = _read(xs, f"{root}/{number}/backend")
        dev = _read(xs, f"{back}/dev")
        if dev not in DEVICE_NUMBERS:
            continue
        if dev in drives:
            raise ConfigError(f"qemu-dm: {back}/dev = {dev!r}: a second vbd for {dev}")
        kind = _choice(xs, f"{root}/{number}/device-type", {"disk": "disk", "cdrom": "cdrom"})
        writable = _choice(xs, f"{back}/mode", {"r": False, "w": True, "w!": True})
        path = media_path(_read(xs, f"{back}/type"), _read(xs, f"{back}/params"))
        if kind == "disk" and not path:
            raise ConfigError(f"qemu-dm: {back}/params is empty: a disk needs an image")
        if kind == "cdrom" and writable:
            raise ConfigError(f"qemu-dm: {back}/mode: a CD-ROM drive is read-only")
        drives[dev] = DriveConfig(dev, kind, path, writable, back)
    return tuple(drives[dev] for dev in sorted(drives))


def media_path(typ: str, params: str) -> str:
    """The image file a back end's ``type`` and ``params`` name: ``params``
    itself, less the ``aio:`` driver of a tap device."""
    if typ == "tap" and params.startswith("aio:"):
        return params[4:]
    return params


def open_drives(disks: tuple) -> dict:
    """qemu-dm: the media of its drives (:mod:`spec.block`), by name; an
    image that cannot be opened stops it (:class:`DeviceModelError`)."""
    from spec import block
    drives = {}
    try:
        for drive in disks:
            drives[drive.dev] = (block.open_image(drive.path, drive.kind, drive.writable)
                                 if drive.path else block.empty_drive(drive.kind))
    except block.ImageError as exc:
        for medium in drives.values():
            medium.close()
        raise DeviceModelError(f"qemu-dm: could not open {drive.dev}: {exc}") from None
    return drives


def watch_media(xs: XsClient, disks: tuple) -> None:
    """qemu-dm: watch each CD-ROM drive's ``params`` (token: the drive)."""
    for drive in disks:
        if drive.kind == "cdrom":
            xs.watch(f"{drive.backend}/params", drive.dev)


def take_media_changes(xs: XsClient, disks: tuple, drives: dict) -> bool:
    """qemu-dm's ``xenstore_process_event``: for each fired watch on a
    CD-ROM drive's ``params``, the image named there, if it differs from
    the drive's, replaces its medium (ejected; the new one, if any,
    inserted at once, where Xen 3.0.4's qemu-dm waited 5 s). An image that
    cannot be opened leaves the drive empty. True if a medium changed."""
    from spec import block
    changed = False
    by_dev = {drive.dev: drive for drive in disks}
    for path, token in xs.take_events():
        drive = by_dev.get(token)
        if drive is None or path != f"{drive.backend}/params":
            continue
        try:
            image = media_path(xs.read(f"{drive.backend}/type"), xs.read(path))
        except XenstoreError:
            continue                                # gone
        medium = drives[token]
        if image == (medium.path or ""):
            continue                                # identical
        changed = True
        if not image:
            medium.eject()
            continue
        try:
            medium.insert(image)
        except block.ImageError:
            pass                                    # the drive stays empty
    return changed


def change_media(xs: XsClient, domid: int, dev: str, disk) -> None:
    """xend's ``xm block-configure``: the CD-ROM drive ``dev`` of domain
    ``domid`` now holds ``disk``'s image (:class:`spec.xend.Disk`; no path:
    empty): the back end's ``type`` and ``params`` (``blkif.py``'s
    ``reconfigureDevice``), which qemu-dm watches."""
    _front, back, nodes = disk_entries(domid, "", disk)
    values = dict(nodes)
    xs.write(f"{back}/type", values[f"{back}/type"])
    xs.write(f"{back}/params", values[f"{back}/params"])


def _vnc(xs: XsClient, where: str) -> dict:
    """The VNC fields of :class:`DeviceModelConfig` from ``where``."""
    path = f"{where}/vnc"
    text = _read(xs, path)
    if text == "none":
        return {}
    if text == "unused":
        display, unused = 0, True
    else:
        display, unused = _number(xs, path, 0, platform.VNC_MAX_DISPLAY, text), False
    listen = _read(xs, f"{where}/vnclisten")
    if not listen or len(listen) > 253 or any(c.isspace() for c in listen):
        raise ConfigError(f"qemu-dm: {where}/vnclisten = {listen!r}: not an address")
    return {"vnc_display": display, "vnc_unused": unused, "vnc_listen": listen}


def take_vnc_password(xs: XsClient, domid: int) -> str:
    """qemu-dm's ``xenstore_read_vncpasswd``: the password at
    ``/vm/U/vncpasswd`` ("" when there is none: no authentication), which
    it then blanks there."""
    vm = _read(xs, f"/local/domain/{domid}/vm")
    try:
        password = xs.read(f"{vm}/vncpasswd")
    except XenstoreError:
        return ""
    xs.write(f"{vm}/vncpasswd", "")
    return password


def publish_vnc_port(xs: XsClient, domid: int, port: int) -> None:
    """qemu-dm listens on ``port``: ``/local/domain/D/console/vnc-port``
    (``xenstore_write_vncport``)."""
    xs.write(f"/local/domain/{domid}/console/vnc-port", str(port))


def vnc_port(xs: XsClient, domid: int) -> int | None:
    """xend: the port the domain's qemu-dm published, or None."""
    try:
        return int(xs.read(f"/local/domain/{domid}/console/vnc-port"))
    except (XenstoreError, ValueError):
        return None


def _boot_order(xs: XsClient, path: str) -> str:
    order = _read(xs, path)
    if not platform.valid_boot_order(order):
        raise ConfigError(f"qemu-dm: {path} = {order!r}: not a boot order (one to three of "
                          f"a, c, d)")
    return order


def announce(xs: XsClient, domid: int) -> None:
    """qemu-dm is ready: ``/local/domain/0/device-model/D/state``."""
    xs.write(f"/local/domain/{platform.DOM0}/device-model/{domid}/state", "running")


def _read(xs: XsClient, path: str) -> str:
    try:
        return xs.read(path)
    except XenstoreError as exc:
        raise ConfigError(f"qemu-dm: cannot read {path} ({exc.errno})") from None


def _number(xs: XsClient, path: str, low: int, high: int, text: str | None = None) -> int:
    text = _read(xs, path) if text is None else text
    try:
        value = int(text, 10)
    except ValueError:
        raise ConfigError(f"qemu-dm: {path} = {text!r} is not a number") from None
    if not low <= value <= high:
        raise ConfigError(f"qemu-dm: {path} = {value} is out of range ({low}..{high})")
    return value


def _choice(xs: XsClient, path: str, choices: dict):
    text = _read(xs, path)
    if text not in choices:
        raise ConfigError(f"qemu-dm: {path} = {text!r}: expected one of "
                          f"{', '.join(repr(c) for c in choices)}")
    return choices[text]
