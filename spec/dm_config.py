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
    ]

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
    transact(xs, body)


def remove_domain(xs: XsClient, domid: int, name: str) -> None:
    """xend, when the domain is gone: its nodes, its ``/vm`` entry and its
    device model's state."""
    for path in (f"/local/domain/{domid}", vm_path(name),
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
    )


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
