"""xend: the toolstack daemon that owns the domains' lives.

Room: the control plane's lifecycle state machine of each domain xend
manages, and its reaction to a domain's shutdown. One implementation, used
by both engines (``DESIGN.md``): an engine gives xend a :class:`Host`, the
hypercalls and dom0 notifications it needs. Imports :mod:`spec.trace` and
:mod:`spec.platform`.

Lifecycle states (as ``xm list`` of Xen 3.x shows them later, issue 7)::

    created --unpause--> running --guest or qemu-dm shuts down--> shutdown
    shutdown --on_<reason> = destroy--> destroyed
    shutdown --on_<reason> = restart--> destroyed, and a new domain (new domid)
    shutdown --on_<reason> = preserve--> stays shut down until destroyed

Xen signals a domain's shutdown to dom0 with the virtual interrupt
``VIRQ_DOM_EXC``; xend (in Xen 3.x through xenstored's ``@releaseDomain``
watch, issue 7) then reads each domain's shutdown reason from the hypervisor
and acts on the configured ``on_poweroff``, ``on_reboot`` or ``on_crash``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

from spec import dm_config, platform, trace
from spec.dm_config import DeviceModelError  # noqa: F401  (re-exported)
from spec.xs_client import XsClient

ACTIONS = ("destroy", "restart", "preserve")


class XendError(Exception):
    """A bad domain configuration or an impossible request."""


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
    #: qemu-dm's RTC time at start-up, seconds since the epoch (None:
    #: :data:`spec.platform.RTC_DEFAULT_BASE`); the RTC then runs on the
    #: virtual clock
    rtc_base: int | None = None

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
        if self.serial not in ("pty", "none"):
            raise XendError(f"serial = {self.serial!r}: must be 'pty' or 'none'")
        if self.vcpus != 1:
            raise XendError(f"vcpus = {self.vcpus}: this model runs one vcpu per domain")

    def action_for(self, reason: str) -> str:
        return {"poweroff": self.on_poweroff, "reboot": self.on_reboot}.get(reason, self.on_crash)


@dataclass(frozen=True)
class DomainInfo:
    """What ``xc_domain_getinfo`` tells xend about a domain."""

    shutdown: bool
    shutdown_reason: int | None
    dying: bool = False


class Host(Protocol):
    """Xen and dom0 as xend reaches them (libxc and the VIRQ)."""

    def create_domain(self, config: DomainConfig) -> int: ...

    def start_device_model(self, domid: int) -> None: ...

    def unpause(self, domid: int) -> None: ...

    def domain_info(self, domid: int) -> DomainInfo: ...

    def destroy(self, domid: int) -> None: ...

    def dom_exc_pending(self) -> bool: ...


@dataclass
class ManagedDomain:
    config: DomainConfig
    domid: int
    state: str = "created"
    reason: str = ""
    history: list[str] = field(default_factory=list)


class Xend:
    """The daemon: creates domains and acts when they shut down."""

    def __init__(self, host: Host, emit: Callable[[trace.Event], None],
                 xs: XsClient) -> None:
        self.host = host
        self.emit = emit
        self.xs = xs
        self.domains: dict[int, ManagedDomain] = {}

    def create(self, config: DomainConfig) -> int:
        """``xm create``: build the domain (paused), write its configuration
        to XenStore (:mod:`spec.dm_config`), start its qemu-dm (which reads
        it there), then unpause it."""
        domid = self.host.create_domain(config)
        record = ManagedDomain(config, domid)
        self.domains[domid] = record
        self._move(record, "created", "")
        dm_config.write_domain(self.xs, domid, config)
        self.host.start_device_model(domid)
        self.host.unpause(domid)
        self._move(record, "running", "")
        return domid

    def destroy(self, domid: int, reason: str = "destroyed by request") -> None:
        """``xm destroy``."""
        record = self.domains.get(domid)
        if record is None or record.state == "destroyed":
            raise XendError(f"no live domain {domid}")
        self.host.destroy(domid)
        self._move(record, "destroyed", reason)

    def poll(self) -> bool:
        """Handle ``VIRQ_DOM_EXC``; True if it was pending."""
        if not self.host.dom_exc_pending():
            return False
        for record in list(self.domains.values()):
            if record.state != "running":
                continue
            info = self.host.domain_info(record.domid)
            if not info.shutdown:
                continue
            reason = platform.SHUTDOWN_REASONS.get(info.shutdown_reason, "crash")
            self._move(record, "shutdown", reason)
            action = record.config.action_for(reason)
            if action == "preserve":
                continue
            self.host.destroy(record.domid)
            self._move(record, "destroyed", f"on_{_key(reason)} = {action}")
            if action == "restart":
                self.create(record.config)
        return True

    def _move(self, record: ManagedDomain, new: str, reason: str) -> None:
        old = record.state if record.history else "none"
        record.state = new
        record.reason = reason
        record.history.append(new)
        self.emit(trace.DomainLifecycle(dom=record.domid, name=record.config.name,
                                        old=old, new=new, reason=reason))


def _key(reason: str) -> str:
    return reason if reason in ("poweroff", "reboot") else "crash"
