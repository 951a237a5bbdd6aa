"""The system suite: a whole guest in a new HVM domain, and its trace.

Room: interface (the case format, ``#/$defs/system-case`` of the schema of
:mod:`spec.suites`) and the expected answers, computed by the reference
model (:func:`spec.machine.run_guest`). Imports
:mod:`spec.loader`, :mod:`spec.machine`, :mod:`spec.platform`,
:mod:`spec.suites`.

A case::

    {"id": str, "guest": name, "image": hex, "memory_mib": int,
     "device_model": {...}, "serial_input": hex, "max_instructions": int}

``image`` is the guest's ROM image: it is placed to end at 1 MiB, and the
vcpu starts at the reset vector ``F000:FFF0`` (``spec.loader``). The domain
is created by xend with ``memory_mib`` of RAM, the ``device_model`` keys of
:class:`spec.xend.DomainConfig` (``device_model_bits``,
``mapcache_budget``, ``map_everything``, ``rtc_base``, ``serial``,
``vga``), and ``on_poweroff``, ``on_reboot`` and ``on_crash`` all
``destroy``; ``serial_input`` is what arrives on COM1; the run stops after
``max_instructions``. The image is 1 byte to 256 KiB (it must not reach the
VGA hole); ``memory_mib`` is 1 to ``2**20`` (:mod:`spec.platform`);
``max_instructions`` at least 1; ``device_model_bits`` 32 or 64;
``mapcache_budget`` null (the default) or at least one bucket (64 KiB, or
1 MiB for a 64-bit qemu-dm) up to ``2**48`` bytes; ``rtc_base`` null or 0 to
``2**40`` seconds; ``serial`` ``"pty"`` or ``"none"``; ``map_everything`` and
``vga`` true or false.

The answer is the run's whole trace, every event of :mod:`spec.trace` as
its JSON object, in order, then ``{"kind": "result", "exit": {...},
"instructions": n}``: the domain's fate and the instructions the vcpu
retired.
"""

from __future__ import annotations

import random

from spec import platform
from spec.loader import GuestImage, bundled_guests, load
from spec.suites import check_case

NAME = "system"
DEVICE_MODEL_KEYS = ("device_model_bits", "mapcache_budget", "map_everything", "rtc_base",
                     "serial", "vga")


def validate(case: dict, path: str = "$") -> None:
    """Refuse a case that is not of this format (the schema's
    ``#/$defs/system-case``), naming the field under ``path``."""
    check_case(case, NAME, path)


def image_of(case: dict) -> GuestImage:
    return GuestImage(case.get("guest", case["id"]), bytes.fromhex(case["image"]),
                      memory_mib=case["memory_mib"])


def run_args(case: dict) -> dict:
    """The keyword arguments of an engine's ``run_guest`` for ``case``; the
    answer is the whole trace, so the run keeps it (``keep_trace``)."""
    return {"memory_mib": case["memory_mib"], "max_instructions": case["max_instructions"],
            "serial_input": bytes.fromhex(case.get("serial_input", "")),
            "device_model": dict(case.get("device_model", {})), "keep_trace": True}


def answer(result) -> list[dict]:
    """A run's events, as the suite compares them."""
    return [e.to_json() for e in result.trace] + [
        {"kind": "result", "exit": result.exit, "instructions": result.instructions}]


def expected(case: dict) -> list[dict]:
    validate(case)
    from spec.machine import run_guest
    return answer(run_guest(image_of(case), **run_args(case)))


def case_for(name: str, max_instructions: int = platform.DEFAULT_MAX_INSTRUCTIONS,
             **device_model) -> dict:
    """The case of a bundled guest (or a guest file)."""
    image = load(name)
    return {"id": f"system-{image.name}", "guest": image.name, "image": image.image.hex(),
            "memory_mib": image.memory_mib or platform.DEFAULT_MEMORY_MIB,
            "device_model": device_model, "serial_input": "",
            "max_instructions": max_instructions}


#: the bundled guests a system run covers by default: quick on the reference
#: model, and between them every path of DESIGN.md's ioreq and interrupt story
DEFAULT_GUESTS = ("hello", "portio", "mmio", "pm32", "timer", "irqs", "idt32", "lm64",
                  "reboot")


def generate(rng: random.Random, count: int) -> list[dict]:
    names = [n for n in DEFAULT_GUESTS if n in bundled_guests()]
    return [case_for(name) for name in names[:count]]
