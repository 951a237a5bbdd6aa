"""xend: the toolstack daemon that owns the domains' lives.

Room: the control plane's lifecycle state machine of each domain xend
manages, its reaction to a domain's shutdown, and the names it lets domains
have. One implementation, used by both engines and by ``hvmspec xend``
(``DESIGN.md``): a host gives xend a :class:`Host`, the hypercalls it
needs, and a XenStore client. Imports :mod:`spec.trace`,
:mod:`spec.platform`, :mod:`spec.dm_config`, :mod:`spec.xs_client`,
:mod:`spec.xenstore.wire` (for its payload limit), :mod:`spec.loader` (for
the error a kernel that does not load raises).

Lifecycle states (``xm list`` shows them with its letters, see
:data:`STATE_LETTERS`)::

    created --unpause--> running <--pause/unpause--> paused
    running --the guest, qemu-dm, Xen or xm shuts it down--> shutdown
    shutdown --on_<reason> = destroy--> dying
    shutdown --on_<reason> = restart--> dying, and a new domain (new domid)
    shutdown --on_<reason> = preserve--> stays shut down until xm destroy
    running, paused, shutdown --xm destroy--> dying
    dying --xenstored's @releaseDomain: the domain is gone--> destroyed

``xm create`` (:meth:`Xend.create`): Xen builds the domain, paused; xend
writes its XenStore nodes (:func:`spec.dm_config.write_domain`, one
transaction), introduces it to xenstored (``XS_INTRODUCE`` with its store
page and event channel), starts qemu-dm, which reads its configuration
there, and unpauses it.

A domain's shutdown reaches xend through XenStore: Xen raises
``VIRQ_DOM_EXC``, xenstored fires ``@releaseDomain`` (:mod:`spec.dom0`),
and xend, which watches it from the start, then asks the hypervisor each
domain's shutdown reason (``xc_domain_getinfo``) and acts on the configured
``on_poweroff``, ``on_reboot`` or ``on_crash``. To destroy a domain xend
asks Xen to (``xc_domain_destroy``) and removes its nodes
(:func:`spec.dm_config.remove_domain`); the domain is *dying* until Xen
has torn it down, which xend again learns from ``@releaseDomain`` (the dead
domain raises ``VIRQ_DOM_EXC`` once more), and is then destroyed.

Domain 0, ``Domain-0``, is the host's own domain: ``xm list`` shows it, no
other domain may take its name (:func:`check_name`), and xm cannot pause,
unpause, shut down or destroy it ("Cannot destroy privileged domain" in
Xen 3.x's ``XendDomain.domain_destroy``).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Protocol

from spec import dm_config, platform, trace
from spec.dm_config import DeviceModelError  # noqa: F401  (re-exported)
from spec.loader import GuestError
from spec.xenstore.wire import PAYLOAD_MAX
from spec.xs_client import XenstoreError, XsClient

ACTIONS = ("destroy", "restart", "preserve")

#: a domain that restarts sooner than this after its last restart (seconds of
#: the host's clock) is not restarted again (``MINIMUM_RESTART_TIME`` of Xen
#: 3.x's XendDomainInfo: "Refusing to restart to avoid loops")
MINIMUM_RESTART_TIME = 20

#: ``xm list``'s State column: running, blocked, paused, shutdown, crashed,
#: dying (one letter set per state; the rest are dashes)
STATE_LETTERS = "rbpscd"


class XendError(Exception):
    """A bad domain configuration or an impossible request."""


# --- domain names -------------------------------------------------------------------------

#: dom0's name, which xend gives it at start and lists first
DOM0_NAME = "Domain-0"
#: the characters of a domain name: letters, digits and ``_-.:/+``
#: (``XendDomainInfo._checkName`` in Xen 3.x)
NAME = re.compile(r"[A-Za-z0-9_\-.:/+]+")
#: the longest name whose XenStore write fits one message: xend writes the
#: name as the value of ``/vm/<uuid>/name`` (the longer of its two name
#: nodes, :mod:`spec.dm_config`), and an ``XS_WRITE``'s path, its NUL and
#: its value together are at most ``XENSTORE_PAYLOAD_MAX`` bytes
MAX_NAME_LENGTH = PAYLOAD_MAX - len(dm_config.vm_path(DOM0_NAME) + "/name") - 1


def check_name(name: object) -> None:
    """Raise :class:`XendError` unless ``name`` may be a new domain's name.

    Xen 3.x's xend checked every name it was asked to give a domain
    (``XendDomainInfo._checkName``, ``tools/python/xen/xend/XendDomainInfo.py``):

    * a missing or empty name is refused ("Missing VM Name");
    * so is one with a character other than a letter, a digit or one of
      ``_-.:/+`` ("Invalid VM Name": spaces, control characters, quotes
      and non-ASCII letters are all refused, and ``/`` is *allowed*);
    * so is a name another domain has ("VM name ... already exists");
      xend counts dom0 among its domains, so ``Domain-0`` is always taken
      (:meth:`Xend.check_name` checks the domains xend runs).

    xend had no length limit of its own: an over-long name failed when
    xend wrote it to XenStore. Here the limit is stated:
    :data:`MAX_NAME_LENGTH` characters, the most that such a write holds.
    """
    if not isinstance(name, str) or name == "":
        raise XendError("name is empty: a domain needs a name")
    if name == DOM0_NAME:
        raise XendError(f"name {DOM0_NAME!r} is dom0's, the host's own domain: give the "
                        f"domain another name")
    if len(name) > MAX_NAME_LENGTH:
        raise XendError(f"name is {len(name)} characters long: at most {MAX_NAME_LENGTH} "
                        f"(it must fit one XenStore write)")
    if NAME.fullmatch(name) is None:
        bad = next(c for c in name if NAME.fullmatch(c) is None)
        shown = name if len(name) <= 40 else name[:37] + "..."
        raise XendError(f"name {shown!r}: {bad!r} is not allowed (a name has letters, "
                        f"digits and _-.:/+ only)")


# --- disks ---------------------------------------------------------------------------------

#: the IDE drives qemu-dm has: primary master and slave, secondary master and
#: slave (Xen 3.0.4's qemu-dm took the ``hd`` devices of the domain's vbds)
IDE_DEVICES = ("hda", "hdb", "hdc", "hdd")
#: xm's disk modes: read-only, read-write, read-write even if shared
DISK_MODES = ("r", "w", "w!")
#: the image drivers offered: a raw file through the loop device or blktap's
#: asynchronous raw driver; both are a raw image file to qemu-dm
DISK_DRIVERS = ("file", "tap:aio")


@dataclass(frozen=True)
class Disk:
    """One entry of xm's ``disk`` list: ``uname,dev,mode``
    (:func:`parse_disk`)."""

    #: the drive, ``hda`` .. ``hdd``
    dev: str
    #: ``"disk"`` or ``"cdrom"`` (``dev``'s ``:cdrom`` suffix)
    kind: str = "disk"
    #: ``"r"``, ``"w"`` or ``"w!"`` (write even if another domain has the file)
    mode: str = "r"
    #: the image file, an absolute path ("" for an empty CD-ROM drive)
    path: str = ""
    #: ``"file"`` or ``"tap:aio"`` (the uname's prefix)
    driver: str = "file"

    def __post_init__(self) -> None:
        if self.dev not in IDE_DEVICES:
            raise XendError(f"disk {self.dev!r}: qemu-dm's drives are IDE: "
                            f"{', '.join(IDE_DEVICES)}")
        if self.kind not in ("disk", "cdrom"):
            raise XendError(f"disk {self.dev}: type {self.kind!r}: disk or cdrom")
        if self.mode not in DISK_MODES:
            raise XendError(f"disk {self.dev}: mode {self.mode!r}: r, w or w!")
        if self.driver not in DISK_DRIVERS:
            raise XendError(f"disk {self.dev}: driver {self.driver!r}: file or tap:aio")
        if self.kind == "cdrom" and self.mode != "r":
            raise XendError(f"disk {self.dev}: mode {self.mode}: a CD-ROM is read-only "
                            f"(give mode r)")
        if self.kind == "disk" and not self.path:
            raise XendError(f"disk {self.dev}: no image file (only a CD-ROM drive may be "
                            f"empty)")

    @property
    def writable(self) -> bool:
        return self.mode != "r"

    @property
    def uname(self) -> str:
        """xm's first field: ``file:PATH``, ``tap:aio:PATH`` or "" (empty)."""
        return f"{self.driver}:{self.path}" if self.path else ""

    @property
    def spec(self) -> str:
        """The entry as xm's ``disk`` list writes it."""
        return f"{self.uname},{self.dev}{':cdrom' if self.kind == 'cdrom' else ''},{self.mode}"


def parse_disk(entry: object, directory: str | None = None) -> Disk:
    """One string of xm's ``disk`` list, Xen 3.0.4's syntax
    ``uname,dev,mode`` (``xm create``'s ``preprocess_disk``: three fields, or
    four with the back-end domain)::

        'file:/images/disk.img,hda,w'
        'tap:aio:/images/disk.img,hdb,r'
        'file:/images/cd.iso,hdc:cdrom,r'
        ',hdc:cdrom,r'                      an empty CD-ROM drive

    ``uname`` is ``file:PATH`` or ``tap:aio:PATH`` (both a raw image file;
    ``phy:`` block devices are refused, as are blktap's other formats);
    a relative PATH is in ``directory`` (the configuration file's). ``dev``
    is ``hda`` .. ``hdd`` (an ``ioemu:`` prefix, which xend drops, is
    accepted), with ``:cdrom`` for a CD-ROM drive (or ``:disk``); ``mode``
    is ``r``, ``w`` or ``w!``. A fourth field names the back-end domain:
    only dom0 (0, ``Domain-0`` or empty) serves block devices here."""
    if not isinstance(entry, str):
        raise XendError(f"disk entry {entry!r}: a string 'uname,dev,mode'")
    fields = entry.split(",")
    if len(fields) not in (3, 4):
        raise XendError(f"disk entry {entry!r}: expected 'uname,dev,mode' (e.g. "
                        f"'file:/images/disk.img,hda,w'), got {len(fields)} fields")
    uname, dev, mode = (f.strip() for f in fields[:3])
    if len(fields) == 4 and fields[3].strip() not in ("", str(platform.DOM0), DOM0_NAME):
        raise XendError(f"disk entry {entry!r}: back-end domain {fields[3].strip()!r}: "
                        f"only dom0 serves block devices here")
    dev = dev.removeprefix("ioemu:")
    name, _, kind = dev.partition(":")
    if not kind:
        kind = "disk"
    if kind not in ("disk", "cdrom"):
        raise XendError(f"disk entry {entry!r}: {dev!r}: the device type is :cdrom or "
                        f":disk")
    if name not in IDE_DEVICES:
        raise XendError(f"disk entry {entry!r}: device {name!r}: qemu-dm's drives are "
                        f"IDE: {', '.join(IDE_DEVICES)}")
    if mode not in DISK_MODES:
        raise XendError(f"disk entry {entry!r}: mode {mode!r}: r (read-only), w "
                        f"(read-write) or w! (read-write, even if shared)")
    driver, path = _uname(entry, uname)
    if path and directory is not None:
        path = os.path.normpath(os.path.join(directory, path))
    return Disk(dev=name, kind=kind, mode=mode, path=path, driver=driver)


def _uname(entry: str, uname: str) -> tuple[str, str]:
    if not uname:
        return "file", ""
    if uname.startswith("tap:"):
        driver, _, path = uname[4:].partition(":")
        if driver != "aio" or not _:
            raise XendError(f"disk entry {entry!r}: {uname!r}: of blktap's drivers only "
                            f"tap:aio: (a raw image file) is offered")
        driver = "tap:aio"
    else:
        driver, colon, path = uname.partition(":")
        if driver == "phy":
            raise XendError(f"disk entry {entry!r}: {uname!r}: phy: block devices are not "
                            f"offered; give an image file as file:PATH")
        if not colon or driver != "file":
            raise XendError(f"disk entry {entry!r}: {uname!r}: expected file:PATH or "
                            f"tap:aio:PATH")
    if not path:
        raise XendError(f"disk entry {entry!r}: {uname!r} names no file")
    return driver, path


def check_disks(disks: "tuple[Disk, ...]") -> None:
    """Raise :class:`XendError` unless the drives are distinct and each
    image can be its drive's medium (:func:`spec.block.check_image`: it
    exists, is a readable regular file of whole sectors, writable for mode
    ``w``), as xend checked before it built an HVM domain ("Disk image does
    not exist", Xen 3.0.4's ``image.py``)."""
    from spec import block
    for disk in disks:
        if disk.path:
            try:
                block.check_image(disk.path, disk.kind, disk.writable)
            except block.ImageError as exc:
                raise XendError(f"disk {disk.dev}: {exc}") from None


@dataclass(frozen=True)
class DomainConfig:
    """The part of an xm domain configuration that xend acts on."""

    name: str
    memory_mib: int = platform.DEFAULT_MEMORY_MIB
    vcpus: int = 1
    on_poweroff: str = "destroy"
    on_reboot: str = "restart"
    on_crash: str = "restart"
    #: qemu-dm's word size (32 or 64): its mapcache's bucket size follows
    device_model_bits: int = 32
    #: bytes of qemu-dm's address space for guest mappings (None: the default)
    mapcache_budget: int | None = None
    #: map all guest memory at start-up instead of using the mapcache
    map_everything: bool = False
    #: COM1: "pty" (the user's terminal or a file) or "none"
    serial: str = "pty"
    #: the VGA (False: xm's ``nographic = 1``)
    vga: bool = True
    #: the guest image the HVM builder loads (xm's ``kernel``, in Xen the
    #: hvmloader firmware): a bundled guest's name or a file; "" for the
    #: host's own image
    kernel: str = ""
    #: with ``kernel = hvmloader``: the BIOS (rombios, seabios or a file;
    #: "" for rombios) and the VGA BIOS (a file, "none"; "" for the default),
    #: :mod:`spec.hvmloader`
    bios: str = ""
    vgabios: str = ""
    #: the RTC's time at start-up, seconds since the epoch (None:
    #: :data:`spec.platform.RTC_DEFAULT_BASE`): Xen's RTC starts its clock
    #: there (the domain's time offset, ``get_localtime(d)``) and runs on the
    #: virtual clock; qemu-dm writes the century bytes of CMOS from it
    rtc_base: int | None = None
    #: the BIOS's boot order (xm's ``boot``, qemu-dm's ``-boot``): up to
    #: three of ``a`` (floppy), ``c`` (hard disk), ``d`` (CD-ROM); Xen 3.x's
    #: ``xm create`` gave ``c``
    boot: str = "c"
    #: qemu-dm's VNC server (xm's ``vnc``, ``vncdisplay``, ``vncunused``,
    #: ``vnclisten``, ``vncpasswd``; :mod:`spec.dm_config` says how they reach
    #: qemu-dm): display ``vncdisplay`` (None: the domain's ID, as Xen 3.0.4's
    #: xend chose), or with ``vncunused`` the first free display from 0 on (xm
    #: create's default, as Xen 3.0.4's: ``vncdisplay`` then has no effect), on
    #: address ``vnclisten``, with VNC authentication when ``vncpasswd`` is
    #: not empty
    vnc: bool = False
    vncdisplay: int | None = None
    vncunused: bool = True
    vnclisten: str = platform.VNC_DEFAULT_LISTEN
    vncpasswd: str = ""
    #: the IDE drives (xm's ``disk`` list, :class:`Disk`): qemu-dm's view of
    #: the domain's virtual block devices (:mod:`spec.dm_config`)
    disks: tuple = ()

    def __post_init__(self) -> None:
        for key in ("on_poweroff", "on_reboot", "on_crash"):
            if getattr(self, key) not in ACTIONS:
                raise XendError(f"{key} = {getattr(self, key)!r}: must be one of {', '.join(ACTIONS)}")
        if self.memory_mib < platform.MIN_MEMORY_MIB:
            raise XendError(f"memory = {self.memory_mib} MiB: at least "
                            f"{platform.MIN_MEMORY_MIB} MiB is needed (the image ends at 1 MiB)")
        if self.memory_mib > platform.MAX_MEMORY_MIB:
            raise XendError(f"memory = {self.memory_mib} MiB: at most "
                            f"{platform.MAX_MEMORY_MIB} MiB")
        if self.device_model_bits not in (32, 64):
            raise XendError(f"device_model_bits = {self.device_model_bits}: qemu-dm is 32- or "
                            f"64-bit")
        bucket = 1 << platform.MAPCACHE_BUCKET_SHIFT[self.device_model_bits]
        if self.mapcache_budget is not None and self.mapcache_budget < bucket:
            raise XendError(f"mapcache budget = {self.mapcache_budget} bytes: a "
                            f"{self.device_model_bits}-bit qemu-dm needs at least one bucket "
                            f"({bucket >> 10} KiB)")
        if not platform.valid_boot_order(self.boot):
            raise XendError(f"boot = {self.boot!r}: one to three of a (floppy), c (hard disk), "
                            f"d (CD-ROM)")
        if self.serial not in ("pty", "none"):
            raise XendError(f"serial = {self.serial!r}: must be 'pty' or 'none'")
        if self.vcpus != 1:
            raise XendError(f"vcpus = {self.vcpus}: this model runs one vcpu per domain")
        check_vnc(self.vncdisplay, self.vnclisten, self.vncpasswd)
        if not isinstance(self.disks, tuple) or not all(isinstance(d, Disk)
                                                          for d in self.disks):
            raise XendError("disks: a tuple of Disk entries")
        seen = set()
        for disk in self.disks:
            if disk.dev in seen:
                raise XendError(f"disk {disk.dev} is given twice: one image per drive")
            seen.add(disk.dev)
        if self.vnc and not self.vga:
            raise XendError("vnc = 1 with no VGA (nographic = 1 or vga = 0): there is no "
                            "screen to serve (Xen 3.0.4's xend then started no VNC server); "
                            "drop one of them")

    def action_for(self, reason: str) -> str:
        return {"poweroff": self.on_poweroff, "reboot": self.on_reboot}.get(reason, self.on_crash)


def check_vnc(display: int | None, listen: str, password: str) -> None:
    """Raise :class:`XendError` for a VNC display, address or password
    qemu-dm cannot use: a display outside 0..59635 (its port, 5900 + N, must
    exist), an address that is neither an IPv4 address nor a host name, a
    password longer than VNC authentication uses (8 characters) or with a
    character outside Latin-1 or below a space."""
    import ipaddress
    if display is not None and not 0 <= display <= platform.VNC_MAX_DISPLAY:
        raise XendError(f"vncdisplay = {display}: a display is 0..{platform.VNC_MAX_DISPLAY} "
                        f"(TCP port {platform.VNC_BASE_PORT} + display)")
    if not isinstance(listen, str) or not HOST_NAME.fullmatch(listen):
        raise XendError(f"vnclisten = {listen!r}: not an IPv4 address or a host name")
    if all(part.isdigit() for part in listen.split(".")):
        try:
            ipaddress.IPv4Address(listen)
        except ValueError:
            raise XendError(f"vnclisten = {listen!r}: not an IPv4 address") from None
    if len(password) > platform.VNC_PASSWORD_MAX:
        raise XendError(f"vncpasswd is {len(password)} characters long: VNC authentication "
                        f"uses at most {platform.VNC_PASSWORD_MAX}")
    if any(not 0x20 <= ord(c) <= 0xFF for c in password):
        raise XendError("vncpasswd: only Latin-1 characters from the space on")


#: a host name (RFC 1123 labels) or a dotted address
HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")


@dataclass(frozen=True)
class DomainInfo:
    """What ``xc_domain_getinfo`` tells xend about a domain."""

    shutdown: bool
    shutdown_reason: int | None
    dying: bool = False
    paused: bool = False
    #: the vcpu is halted (HLT) waiting for an interrupt
    blocked: bool = False
    #: virtual time the vcpus ran, in seconds
    cpu_seconds: float = 0.0


class Host(Protocol):
    """Xen and dom0 as xend reaches them (libxc and the VIRQ)."""

    def create_domain(self, config: DomainConfig) -> int: ...

    def start_device_model(self, domid: int) -> None: ...

    def unpause(self, domid: int) -> None: ...

    def pause(self, domid: int) -> None: ...

    def shutdown(self, domid: int, reason: int, by: str) -> None: ...

    def store_ring(self, domid: int) -> tuple[int, int]:
        """The domain's XenStore page (its pfn) and an unbound event
        channel of the domain for xenstored (``HVM_PARAM_STORE_PFN``,
        ``xc_evtchn_alloc_unbound``)."""
        ...

    def domain_info(self, domid: int) -> DomainInfo | None:
        """``xc_domain_getinfo``; ``None`` for a domain that no longer exists."""
        ...

    def destroy(self, domid: int) -> None: ...

    def dom_exc_pending(self) -> bool: ...


@dataclass
class ManagedDomain:
    config: DomainConfig
    domid: int
    state: str = "created"
    reason: str = ""
    history: list[str] = field(default_factory=list)

    @property
    def live(self) -> bool:
        """Neither dying nor destroyed: it takes commands and holds its name."""
        return self.state not in ("dying", "destroyed")


class Xend:
    """The daemon: creates domains and acts when they shut down."""

    #: the token of xend's ``@releaseDomain`` watch
    TOKEN = "xend"

    def __init__(self, host: Host, emit: Callable[[trace.Event], None],
                 xs: XsClient, clock: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self.emit = emit
        self.xs = xs
        self.clock = clock
        self.domains: dict[int, ManagedDomain] = {}
        #: when each domain (by name) was last restarted
        self.restarted_at: dict[str, float] = {}
        # dom0's own entry, as xend writes it at start (``xm list`` shows it)
        xs.write(f"/local/domain/{platform.DOM0}/name", DOM0_NAME)
        xs.write(f"/local/domain/{platform.DOM0}/domid", str(platform.DOM0))
        xs.watch("@releaseDomain", self.TOKEN)

    def create(self, config: DomainConfig, paused: bool = False) -> int:
        """``xm create``: build the domain (paused), write its configuration
        to XenStore (:mod:`spec.dm_config`), introduce it to xenstored,
        start its qemu-dm (which reads it there), then unpause it (unless
        ``paused``, ``xm create -p``).

        A creation that fails once the domain exists (qemu-dm cannot serve
        it) is undone before the error goes to the caller: the domain is
        destroyed and its nodes removed, as Xen 3.x's
        ``XendDomainInfo.create`` destroys a domain whose construction
        failed. If Xen has already torn it down, no ``VIRQ_DOM_EXC`` is
        coming for it: xend has xenstored forget it (``XS_RELEASE``) and it
        is destroyed at once. Its name is free again either way.

        Before anything is built, each disk image is checked
        (:func:`check_disks`) and so is its sharing (:meth:`check_sharing`)."""
        check_disks(config.disks)
        self.check_sharing(config)
        domid = self.host.create_domain(config)
        record = ManagedDomain(config, domid)
        self.domains[domid] = record
        self._move(record, "created", "")
        try:
            dm_config.write_domain(self.xs, domid, config)
            self.xs.introduce(domid, *self.host.store_ring(domid))
            self.host.start_device_model(domid)
        except Exception as exc:
            self.host.destroy(domid)
            try:
                dm_config.remove_domain(self.xs, domid, config.name, config.disks)
            except XenstoreError:
                pass    # qemu-dm's node, the last removed, was never written
            self._move(record, "dying", f"creation failed: {exc}")
            if self.host.domain_info(domid) is None:
                try:
                    self.xs.release(domid)
                except XenstoreError:
                    pass                           # never introduced
                self._move(record, "destroyed", "released")
            raise
        if paused:
            self._move(record, "paused", "created paused")
            return domid
        self.host.unpause(domid)
        self._move(record, "running", "")
        return domid

    def check_name(self, name: str) -> None:
        """Raise :class:`XendError` unless ``xm create`` may give a new
        domain ``name``: a valid name (:func:`check_name`) that no live
        domain has."""
        check_name(name)
        for record in self.domains.values():
            if record.live and record.config.name == name:
                raise XendError(f"a domain named {name!r} already exists (domain "
                                f"{record.domid})")

    def check_sharing(self, config: DomainConfig) -> None:
        """Raise :class:`XendError` if an image of ``config`` is one that a
        live domain (or another drive of the same domain) already uses in a
        way that excludes it, the check of Xen 3.0.4's hotplug script
        ``block`` (``check_sharing``): a file may be in read-only use by any
        number of drives, but a drive of mode ``w`` must be its only user;
        mode ``w!`` skips the check (the user takes the risk)."""
        users = [(record, disk) for record in self.domains.values() if record.live
                 for disk in record.config.disks if disk.path]
        for n, disk in enumerate(config.disks):
            if not disk.path or disk.mode == "w!":
                continue
            mine = [(None, other) for other in config.disks[:n] if other.path]
            for record, other in users + mine:
                if not _same_file(disk.path, other.path) or \
                        disk.mode == "r" and other.mode == "r":
                    continue
                who = (f"domain {record.domid} ({record.config.name})" if record is not None
                       else "this domain")
                how = "read-write" if other.mode != "r" else "read-only"
                want = "read-write" if disk.mode != "r" else "read-only"
                raise XendError(f"disk {disk.dev}: {disk.path} is in use {how} by {who} as "
                                f"{other.dev}, and so cannot be used {want} (mode w! "
                                f"shares it anyway)")

    def pause(self, domid: int) -> None:
        """``xm pause``."""
        record = self._live(domid, "pause")
        if record.state != "running":
            raise XendError(f"domain {domid} is {record.state}, not running")
        self.host.pause(domid)
        self._move(record, "paused", "xm pause")

    def unpause(self, domid: int) -> None:
        """``xm unpause``."""
        record = self._live(domid, "unpause")
        if record.state != "paused":
            raise XendError(f"domain {domid} is {record.state}, not paused")
        self.host.unpause(domid)
        self._move(record, "running", "xm unpause")

    def shutdown(self, domid: int, reason: str = "poweroff") -> None:
        """``xm shutdown`` / ``xm reboot``: an HVM guest without PV drivers
        cannot be asked, so xend has Xen shut it down with that reason
        (``xc.domain_shutdown`` in ``XendDomainInfo.shutdown``); the
        domain's ``on_<reason>`` then applies as for the guest's own."""
        record = self._live(domid, "shut down" if reason == "poweroff" else reason)
        codes = {name: code for code, name in platform.SHUTDOWN_REASONS.items()}
        if reason not in ("poweroff", "reboot"):
            raise XendError(f"shutdown reason {reason!r}: poweroff or reboot")
        if record.state not in ("running", "paused"):
            raise XendError(f"domain {domid} is {record.state}")
        self.xs.write(f"/local/domain/{domid}/control/shutdown", reason)
        self.host.shutdown(domid, codes[reason], "xend")

    def destroy(self, domid: int, reason: str = "destroyed by request") -> None:
        """``xm destroy``."""
        record = self._live(domid, "destroy")
        self._destroy(record, reason)

    def _live(self, domid: int, what: str) -> "ManagedDomain":
        if domid == platform.DOM0:
            raise XendError(f"cannot {what} privileged domain {platform.DOM0} ({DOM0_NAME})")
        record = self.domains.get(domid)
        if record is None or not record.live:
            raise XendError(f"no live domain {domid}")
        return record

    def _destroy(self, record: "ManagedDomain", reason: str) -> None:
        self.host.destroy(record.domid)
        dm_config.remove_domain(self.xs, record.domid, record.config.name,
                                 record.config.disks)
        self._move(record, "dying", reason)

    def poll(self) -> bool:
        """Handle the ``@releaseDomain`` events waiting for xend; True if
        there were any."""
        if not [e for e in self.xs.take_events() if e[1] == self.TOKEN]:
            return False
        for record in list(self.domains.values()):
            if record.state not in ("running", "paused", "dying"):
                continue
            info = self.host.domain_info(record.domid)
            if record.state == "dying":
                if info is None:
                    self._move(record, "destroyed", "released")
                continue
            if info is None or not info.shutdown:
                continue
            reason = platform.SHUTDOWN_REASONS.get(info.shutdown_reason, "crash")
            self._move(record, "shutdown", reason)
            action = record.config.action_for(reason)
            if action == "preserve":
                continue
            self._destroy(record, f"on_{_key(reason)} = {action}")
            if action == "restart":
                self._restart(record)
        return True

    def _restart(self, record: ManagedDomain) -> None:
        """A new domain (new domid) from the same configuration, unless the
        last restart was less than :data:`MINIMUM_RESTART_TIME` ago. A
        restart that fails (its kernel is gone or changed into one that does
        not load) leaves the domain dead, with the reason in the lifecycle
        event, and xend serving the others (Xen 3.x's xend logged "Failed to
        restart domain" and carried on)."""
        now, name = self.clock(), record.config.name
        last = self.restarted_at.get(name)
        if last is not None and now - last < MINIMUM_RESTART_TIME:
            self.emit(trace.DomainLifecycle(
                dom=record.domid, name=name, old=record.state, new=record.state,
                reason=f"restarting too fast ({now - last:.1f} s since the last restart): "
                       f"refusing to restart to avoid loops"))
            return
        self.restarted_at[name] = now
        try:
            self.create(record.config)
        except (GuestError, XendError) as exc:
            self.emit(trace.DomainLifecycle(
                dom=record.domid, name=name, old=record.state, new=record.state,
                reason=f"restart failed: {exc}"))

    def list(self) -> list[dict]:
        """``xm list``: Domain-0 and each domain that is not destroyed, with
        its name, ID, memory (MiB), vcpus, state letters and CPU time; for a
        domain with a VNC display (``vnc = 1``) also ``vnc``, the address
        clients connect to (``vnclisten``:port, the port read from the
        ``console/vnc-port`` qemu-dm published, :mod:`spec.dm_config`), and
        ``vncdisplay``, the display number (port - 5900); both None until
        qemu-dm has published its port. A domain with disks has ``disks``
        (:meth:`disks`)."""
        rows = [{"name": DOM0_NAME, "id": platform.DOM0, "mem": 0, "vcpus": 1,
                 "state": "r-----", "time": 0.0}]
        for record in self.domains.values():
            if record.state == "destroyed":
                continue
            info = self.host.domain_info(record.domid)
            rows.append({"name": record.config.name, "id": record.domid,
                         "mem": record.config.memory_mib, "vcpus": record.config.vcpus,
                         "state": _letters(record.state, info),
                         "time": round(info.cpu_seconds, 1) if info else 0.0})
            if record.config.disks:
                rows[-1]["disks"] = self.disks(record)
            if record.config.vnc:
                port = dm_config.vnc_port(self.xs, record.domid) \
                    if record.state not in ("dying", "destroyed") else None
                rows[-1].update(
                    vnc=None if port is None else f"{record.config.vnclisten}:{port}",
                    vncdisplay=None if port is None else port - platform.VNC_BASE_PORT)
        return rows

    def disks(self, record: ManagedDomain) -> list[dict]:
        """The domain's drives as ``xm list --long`` shows them (Xen 3.0.4's
        ``BlkifController.getDeviceConfiguration``): ``dev`` with its type
        (``hda:disk``), ``uname`` (from the back end's ``type`` and
        ``params`` in XenStore, so that a CD's new medium shows; None for an
        empty drive) and ``mode``."""
        rows = []
        for disk in record.config.disks:
            _front, back, _nodes = dm_config.disk_entries(record.domid, record.config.name,
                                                          disk)
            try:
                typ, params = self.xs.read(f"{back}/type"), self.xs.read(f"{back}/params")
            except XenstoreError:               # a domain on its way out
                typ, params = disk.driver.split(":")[0], disk.uname.split(":", 1)[-1]
            rows.append({"dev": f"{disk.dev}:{disk.kind}", "mode": disk.mode,
                         "uname": f"{typ}:{params}" if typ and params else None})
        return rows

    def block_configure(self, domid: int, disk: Disk) -> None:
        """``xm block-configure``: put ``disk``'s image (none: eject) in the
        domain's CD-ROM drive ``disk.dev``. As Xen 3.0.4's
        ``BlkifController.reconfigureDevice``, only a CD-ROM drive of mode
        ``r`` can be given a new medium, and only as a CD-ROM of mode ``r``
        ("Refusing to reconfigure device"); the image is checked first
        (:func:`check_disks`), and so is its sharing (:meth:`check_sharing`:
        no drive may be writing it). xend writes the back end's ``type`` and
        ``params``, which the domain's qemu-dm watches
        (:func:`spec.dm_config.change_media`), and keeps the new medium in
        the domain's configuration."""
        record = self._live(domid, "reconfigure a device of")
        if record.state not in ("running", "paused", "created"):
            raise XendError(f"domain {domid} is {record.state}")
        current = {d.dev: d for d in record.config.disks}.get(disk.dev)
        if current is None:
            raise XendError(f"domain {domid} has no drive {disk.dev}")
        if current.kind != "cdrom" or disk.kind != "cdrom" or disk.mode != "r":
            raise XendError(f"refusing to reconfigure {disk.dev} ({current.kind}) to "
                            f"{disk.spec}: only a CD-ROM drive's medium can change, as a "
                            f"CD-ROM of mode r")
        if disk.driver != current.driver and disk.path:
            raise XendError(f"refusing to reconfigure {disk.dev}: its back end is "
                            f"{current.driver}:, not {disk.driver}:")
        new = Disk(dev=disk.dev, kind="cdrom", mode="r", path=disk.path,
                   driver=current.driver)
        check_disks((new,))
        config = replace(record.config, disks=tuple(new if d.dev == new.dev else d
                                                    for d in record.config.disks))
        self.check_sharing(replace(config, disks=(new,)))
        dm_config.change_media(self.xs, domid, disk.dev, new)
        record.config = config          # what the domain now uses (sharing, a restart)

    def _move(self, record: ManagedDomain, new: str, reason: str) -> None:
        old = record.state if record.history else "none"
        record.state = new
        record.reason = reason
        record.history.append(new)
        self.emit(trace.DomainLifecycle(dom=record.domid, name=record.config.name,
                                        old=old, new=new, reason=reason))


def _letters(state: str, info: DomainInfo | None) -> str:
    """xm's six state columns ``rbpscd``."""
    if info is None:
        flags = {"d"}
    else:
        crashed = info.shutdown and info.shutdown_reason == platform.SHUTDOWN_CRASH
        flags = {"p"} if info.paused or state == "paused" else set()
        if info.shutdown:
            flags.add("c" if crashed else "s")
        elif not flags:
            flags.add("b" if info.blocked else "r")
        if info.dying:
            flags.add("d")
    return "".join(letter if letter in flags else "-" for letter in STATE_LETTERS)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _key(reason: str) -> str:
    return reason if reason in ("poweroff", "reboot") else "crash"
