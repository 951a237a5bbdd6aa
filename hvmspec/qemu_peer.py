"""QEMU as the firmware's peer: Debian's ``qemu-system-i386`` running the
same BIOS file as hvmspec, until its debug console shows a line.

Room: tool. The machine options that make QEMU's ``pc`` machine as close
to hvmspec's platform as its options allow, by firmware (:data:`QEMU_ARGS`),
and :func:`run_to_line`, which the firmware log's comparison with QEMU
(tests/test_firmware_log.py) and ``make bench``'s POST rows both use.
Imports :mod:`spec.hvmloader` (the firmware's file names) and nothing of
the engines.

QEMU runs the BIOS with an ``isa-debugcon`` device at each log port
(:data:`LOG_PORTS`: the Bochs BIOS's info port 0x402, and 0x500, the VGA
BIOS's), each into a file, and is killed once the file of the first shows
the line; QEMU's time is the host's, so a firmware's waits are waited.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from spec.hvmloader import VGABIOS

#: the machine: 16 MiB, no APIC, no serial line, no display, no reboot
QEMU_MACHINE = ["-M", "pc", "-nodefaults", "-m", "16", "-cpu", "qemu32,-apic",
                "-serial", "null", "-display", "none", "-no-reboot"]
#: QEMU's options and hvmspec's VGA BIOS, by firmware
QEMU_ARGS = {
    # the boot order, and what SeaBIOS does without fw_cfg: offer its boot
    # menu, retry after 60 s when nothing boots
    "seabios": ["-device", "cirrus-vga,romfile=", "-boot", "order=c,menu=on,reboot-timeout=60000"],
    # FACTS: QEMU runs rombios + the LGPL VGA BIOS only with it placed as hvmloader did
    "rombios": ["-device", "cirrus-vga,romfile=", "-boot", "c", "-device",
                f"loader,file={VGABIOS[0]},addr=0xc0000,force-raw=on"],
}
#: the debug consoles: the BIOS's log first (the one :func:`run_to_line` watches)
LOG_PORTS = (0x402, 0x500)


@dataclass
class QemuRun:
    """What :func:`run_to_line` saw: each console's log by port, and the
    seconds from QEMU's start until the line was whole (None if it never
    came)."""

    logs: dict[int, str]
    seconds: float | None


def run_to_line(qemu: str, name: str, bios: str, workdir: Path, line: str,
                timeout: float = 60.0) -> QemuRun:
    """Run ``qemu`` with the options of firmware ``name`` (a key of
    :data:`QEMU_ARGS`) and the BIOS file ``bios``, the consoles' files in
    ``workdir``, until the log on 0x402 holds ``line`` and ends with a
    newline (or ``timeout`` seconds of the host's time pass, or QEMU ends);
    then kill it."""
    logs = {port: workdir / f"debugcon-{port:x}.log" for port in LOG_PORTS}
    consoles = [arg for i, (port, log) in enumerate(logs.items())
                for arg in ("-device", f"isa-debugcon,iobase={port:#x},chardev=d{i}",
                            "-chardev", f"file,id=d{i},path={log}")]
    started = time.perf_counter()
    proc = subprocess.Popen([qemu, *QEMU_MACHINE, *QEMU_ARGS[name], "-bios", bios, *consoles],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = None
    try:
        while time.perf_counter() - started < timeout and proc.poll() is None:
            main = logs[LOG_PORTS[0]].read_bytes() if logs[LOG_PORTS[0]].exists() else b""
            if line.encode() in main and main.endswith(b"\n"):
                seconds = time.perf_counter() - started
                break
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.wait()
    return QemuRun({port: log.read_bytes().decode("latin-1") if log.exists() else ""
                    for port, log in logs.items()}, seconds)
