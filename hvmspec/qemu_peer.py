"""QEMU as the firmware's and the screens' peer: Debian's
``qemu-system-i386`` running the same BIOS file or guest image as hvmspec,
until its debug console or COM1 shows a line, and what its VGA shows then.

Room: tool. The machine options that make QEMU's ``pc`` machine as close
to hvmspec's platform as its options allow, by firmware (:data:`QEMU_ARGS`),
and :func:`run_to_line`, which the firmware log's comparison with QEMU
(tests/test_firmware_log.py) and ``make bench``'s POST rows both use;
:func:`firmware_screen` and :func:`guest_screen`, QEMU's picture of the
std VGA (:data:`STD_VGA`) once a line came (tests/test_graphics_screens.py).
Imports :mod:`spec.hvmloader` (the firmware's file names),
:mod:`spec.platform` (which VGA 00:02.0 is) and nothing of the engines.

QEMU runs the BIOS with an ``isa-debugcon`` device at each log port
(:data:`LOG_PORTS`: the Bochs BIOS's info port 0x402, and 0x500, the VGA
BIOS's), each into a file, and is killed once the file of the first shows
the line; QEMU's time is the host's, so a firmware's waits are waited.

**Screens.** QEMU's human monitor listens on a Unix socket in the work
directory; once the line came, ``screendump FILE`` writes the console's
surface as a binary PPM (QEMU redraws it from video memory first), which
:class:`Picture` reads. A guest that is to be pictured halts with
interrupts off after its line, so the picture stays. Only the text cursor
moves: QEMU blinks it on its virtual clock (which follows the host's), a
phase every 16 frames of 60 Hz (about 267 ms); a comparison masks the
cursor's cell (:meth:`Picture.masked`), and :func:`guest_screen` can take
a second picture later to show it blinking.
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from spec import platform
from spec.hvmloader import VGABIOS

#: the machine: 16 MiB, no APIC, no serial line, no display, no reboot
QEMU_MACHINE = ["-M", "pc", "-nodefaults", "-m", "16", "-cpu", "qemu32,-apic",
                "-serial", "null", "-display", "none", "-no-reboot"]
#: QEMU's options and hvmspec's VGA BIOS, by firmware
#: the std VGA of Xen 3.0.4 qemu-dm's vga.c (PCI 1234:1111, Bochs VBE): its 8
#: MiB of video memory (VGA_RAM_SIZE) as BAR0, and no other BAR (mmio=off: no
#: BAR2 of QEMU's extended registers), without QEMU's option ROM (the VGA
#: BIOS, if any, is placed at 0xc0000 as hvmloader placed it)
STD_VGA = ["-device", "VGA,romfile=,vgamem_mb=8,mmio=off"]
#: SeaBIOS's own VGA BIOS for the std VGA, which QEMU runs as the VGA's
#: option ROM
SEABIOS_VGABIOS = "/usr/share/seabios/vgabios-stdvga.bin"
#: QEMU's device for each VGA hvmspec's PCI function 00:02.0 may be
#: (:data:`spec.platform.PCI_ID_VGA`): the std VGA, or the Cirrus CLGD5446
#: without a ROM
VGA_DEVICES = {(0x1234, 0x1111): STD_VGA, (0x1013, 0x00B8): ["-device", "cirrus-vga,romfile="]}
#: the VGA that hvmspec's platform has, on QEMU: the firmware logs list the
#: PCI functions, so the comparison of logs needs the same one
PLATFORM_VGA = VGA_DEVICES[platform.PCI_ID_VGA]
#: the boot order, and what SeaBIOS does without fw_cfg: offer its boot
#: menu, retry after 60 s when nothing boots
SEABIOS_BOOT = ["-boot", "order=c,menu=on,reboot-timeout=60000"]
#: FACTS: QEMU runs rombios + the LGPL VGA BIOS only with it placed as hvmloader did
ROMBIOS_VGABIOS = ["-boot", "c", "-device", f"loader,file={VGABIOS[0]},addr=0xc0000,force-raw=on"]
#: SeaBIOS runs its VGA BIOS from the std VGA's expansion ROM, on hvmspec
#: (spec.hvmloader) as on QEMU
SEABIOS_VGA = ["-device", f"VGA,romfile={SEABIOS_VGABIOS},vgamem_mb=8,mmio=off"]
QEMU_ARGS = {
    "seabios": [*SEABIOS_VGA, *SEABIOS_BOOT],
    "rombios": [*PLATFORM_VGA, *ROMBIOS_VGABIOS],
    # the banners' pictures: always on the std VGA, whose VGA BIOSes these are
    "rombios-stdvga": [*STD_VGA, *ROMBIOS_VGABIOS],
    # SeaBIOS with its VGA BIOS for the std VGA, as the VGA's option ROM
    "seabios-stdvga": [*SEABIOS_VGA, *SEABIOS_BOOT],
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
                timeout: float = 60.0, extra: tuple[str, ...] = ()) -> QemuRun:
    """Run ``qemu`` with the options of firmware ``name`` (a key of
    :data:`QEMU_ARGS`), the BIOS file ``bios`` and the options ``extra``
    (drives, say), the consoles' files in ``workdir``, until the log on
    0x402 holds ``line`` and ends with a newline (or ``timeout`` seconds of
    the host's time pass, or QEMU ends); then kill it."""
    logs = {port: workdir / f"debugcon-{port:x}.log" for port in LOG_PORTS}
    consoles = [arg for i, (port, log) in enumerate(logs.items())
                for arg in ("-device", f"isa-debugcon,iobase={port:#x},chardev=d{i}",
                            "-chardev", f"file,id=d{i},path={log}")]
    started = time.perf_counter()
    proc = subprocess.Popen([qemu, *QEMU_MACHINE, *QEMU_ARGS[name], "-bios", bios, *consoles,
                             *extra],
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


# --- screens ----------------------------------------------------------------------------

#: a guest image on QEMU's pc as tests/test_peer_qemu.py runs the bundled
#: guests (no APIC, Xen's power-off port as isa-debug-exit), with the std VGA
GUEST_MACHINE = ["-machine", "pc", "-accel", "tcg", "-cpu", "qemu32,-apic", "-nodefaults",
                 "-display", "none", "-no-reboot",
                 "-device", "isa-debug-exit,iobase=0x1f44,iosize=2", *STD_VGA]


class QemuScreenError(RuntimeError):
    """QEMU gave no picture: it ended, or the line never came; the message
    says which, with what COM1 and the log showed."""


@dataclass
class Picture:
    """A picture of the screen: ``width`` x ``height`` pixels, ``rgb`` three
    bytes each, row by row from the top left."""

    width: int
    height: int
    rgb: bytes

    @classmethod
    def from_ppm(cls, data: bytes) -> "Picture":
        """A binary PPM (P6, maximum value 255), as QEMU's screendump writes it."""
        fields, pos = [], 0
        while len(fields) < 4:
            while data[pos:pos + 1].isspace():
                pos += 1
            if data[pos:pos + 1] == b"#":
                pos = data.index(b"\n", pos) + 1
                continue
            end = pos
            while end < len(data) and not data[end:end + 1].isspace():
                end += 1
            fields.append(data[pos:end])
            pos = end
        if fields[0] != b"P6" or fields[3] != b"255":
            raise ValueError(f"not an 8-bit binary PPM: {b' '.join(fields)!r}")
        width, height = int(fields[1]), int(fields[2])
        rgb = data[pos + 1:pos + 1 + 3 * width * height]
        if len(rgb) != 3 * width * height:
            raise ValueError(f"PPM of {width}x{height} has {len(rgb)} bytes of pixels")
        return cls(width, height, rgb)

    @classmethod
    def from_png(cls, path: Path) -> "Picture":
        from PIL import Image
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            return cls(rgb.width, rgb.height, rgb.tobytes())

    def png(self, path: Path) -> None:
        from PIL import Image
        Image.frombytes("RGB", (self.width, self.height), self.rgb).save(path, "PNG")

    def colours(self) -> int:
        """How many different colours it shows."""
        return len({self.rgb[i:i + 3] for i in range(0, len(self.rgb), 3)})

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        i = 3 * (y * self.width + x)
        return tuple(self.rgb[i:i + 3])

    def masked(self, box: tuple[int, int, int, int] | None) -> "Picture":
        """The picture with the rectangle ``box`` (left, top, right, bottom,
        the last two exclusive) painted black: a part that may differ for
        a known reason, such as the blinking text cursor's cell."""
        if box is None:
            return self
        left, top, right, bottom = box
        rgb = bytearray(self.rgb)
        black = bytes(3 * max(0, min(right, self.width) - left))
        for y in range(max(top, 0), min(bottom, self.height)):
            i = 3 * (y * self.width + left)
            rgb[i:i + len(black)] = black
        return Picture(self.width, self.height, bytes(rgb))

    def differences(self, other: "Picture") -> list[tuple[int, int, tuple, tuple]]:
        """The pixels where ``other`` differs, as (x, y, ours, theirs);
        a different size is one difference at (-1, -1) with the sizes."""
        if (self.width, self.height) != (other.width, other.height):
            return [(-1, -1, (self.width, self.height), (other.width, other.height))]
        out = []
        for i in range(0, len(self.rgb), 3):
            if self.rgb[i:i + 3] != other.rgb[i:i + 3]:
                y, x = divmod(i // 3, self.width)
                out.append((x, y, tuple(self.rgb[i:i + 3]), tuple(other.rgb[i:i + 3])))
        return out


@dataclass
class QemuScreen:
    """What :func:`run_to_screen` saw: the picture, the later pictures
    asked for, COM1's output and the debug consoles' logs."""

    picture: Picture
    later: list[Picture] = field(default_factory=list)
    serial: str = ""
    logs: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0


def run_to_screen(qemu: str, args: list[str], workdir: Path, *, serial_line: str | None = None,
                  log_line: str | None = None, timeout: float = 60.0, settle: float = 0.0,
                  later: tuple[float, ...] = ()) -> QemuScreen:
    """Run ``qemu`` with ``args`` (the machine, firmware or guest), COM1
    into a file, the debug consoles of :data:`LOG_PORTS` into files and the
    human monitor on a Unix socket, all in ``workdir``, until COM1 shows
    ``serial_line`` or the log on 0x402 shows ``log_line`` as a whole line;
    wait ``settle`` seconds more, take the screendump, then one more after
    each of ``later``'s delays (seconds after the first); kill QEMU.
    :class:`QemuScreenError` if QEMU ends first or ``timeout`` passes."""
    if (serial_line is None) == (log_line is None):
        raise ValueError("give serial_line or log_line")
    serial = workdir / "com1.out"
    logs = {port: workdir / f"debugcon-{port:x}.log" for port in LOG_PORTS}
    monitor = workdir / "monitor.sock"
    for path in (serial, monitor, *logs.values()):
        path.unlink(missing_ok=True)
    consoles = [arg for i, (port, log) in enumerate(logs.items())
                for arg in ("-device", f"isa-debugcon,iobase={port:#x},chardev=d{i}",
                            "-chardev", f"file,id=d{i},path={log}")]
    argv = [qemu, *args, *consoles, "-serial", f"file:{serial}",
            "-monitor", f"unix:{monitor},server=on,wait=off"]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def read(path: Path) -> str:
        return path.read_bytes().decode("latin-1") if path.exists() else ""

    def seen() -> bool:
        text = read(serial) if serial_line is not None else read(logs[LOG_PORTS[0]])
        line = serial_line if serial_line is not None else log_line
        return any(line in whole for whole in text.split("\n")[:-1])

    try:
        while not seen():
            if proc.poll() is not None:
                raise QemuScreenError(
                    f"QEMU ended (status {proc.returncode}) before "
                    f"{serial_line or log_line!r}: {proc.stderr.read().decode(errors='replace')}"
                    f"COM1: {read(serial)[-500:]!r}")
            if time.perf_counter() - started > timeout:
                raise QemuScreenError(
                    f"no {serial_line or log_line!r} after {timeout:.0f} s; COM1: "
                    f"{read(serial)[-500:]!r}, log: {read(logs[LOG_PORTS[0]])[-500:]!r}")
            time.sleep(0.01)
        seconds = time.perf_counter() - started
        time.sleep(settle)
        pictures = []
        with _Monitor(monitor) as hmp:
            last = 0.0
            for delay in (0.0, *later):
                time.sleep(max(0.0, delay - last))
                last = delay
                dump = workdir / f"screendump-{len(pictures)}.ppm"
                answer = hmp.command(f"screendump {dump}")
                if not dump.exists():
                    raise QemuScreenError(f"screendump wrote nothing: {answer!r}")
                pictures.append(Picture.from_ppm(dump.read_bytes()))
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    return QemuScreen(pictures[0], pictures[1:], read(serial),
                      {port: read(log) for port, log in logs.items()}, seconds)


class _Monitor:
    """QEMU's human monitor on a Unix socket: a command, its answer up to
    the next prompt."""

    PROMPT = b"(qemu) "

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.path, self.timeout = path, timeout

    def __enter__(self) -> "_Monitor":
        deadline = time.perf_counter() + self.timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.settimeout(self.timeout)
                self.sock.connect(str(self.path))
                break
            except OSError:
                self.sock.close()
                if time.perf_counter() > deadline:
                    raise QemuScreenError(f"no QEMU monitor at {self.path}") from None
                time.sleep(0.05)
        self._until_prompt()
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def _until_prompt(self) -> str:
        data = b""
        while not data.endswith(self.PROMPT):
            chunk = self.sock.recv(4096)
            if not chunk:
                raise QemuScreenError(f"QEMU's monitor closed: {data!r}")
            data += chunk
        return data.decode("latin-1")

    def command(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\n")
        return self._until_prompt()


def guest_screen(qemu: str, rom: bytes, workdir: Path, line: str, *, timeout: float = 60.0,
                 later: tuple[float, ...] = ()) -> QemuScreen:
    """A guest's ROM image (:mod:`spec.loader`'s 64 KiB, run with ``-bios``)
    on :data:`GUEST_MACHINE` until COM1 shows ``line``; its picture."""
    image = workdir / "guest.rom"
    image.write_bytes(rom)
    return run_to_screen(qemu, [*GUEST_MACHINE, "-bios", str(image)], workdir,
                         serial_line=line, timeout=timeout, later=later)


def firmware_screen(qemu: str, name: str, bios: str, workdir: Path, line: str, *,
                    timeout: float = 60.0, settle: float = 0.0,
                    later: tuple[float, ...] = ()) -> QemuScreen:
    """Firmware ``name`` (a key of :data:`QEMU_ARGS`) from the file ``bios``
    on :data:`QEMU_MACHINE` until its log on 0x402 shows ``line``; the
    picture ``settle`` seconds later (and after each of ``later``)."""
    return run_to_screen(qemu, [*QEMU_MACHINE, *QEMU_ARGS[name], "-bios", bios], workdir,
                         log_line=line, timeout=timeout, settle=settle, later=later)


def guest_line_times(qemu: str, rom: bytes, workdir: Path, lines: tuple[str, ...],
                     timeout: float = 60.0) -> list[float]:
    """A guest's ROM image on :data:`GUEST_MACHINE` until COM1 has shown
    each of ``lines`` (in order, each as part of a whole line): the host's
    seconds from QEMU's start at which each was first seen (COM1's file
    polled every millisecond). The graphics guest's benchmarks print a line
    before their first frame and one after their last: frames per second on
    QEMU. :class:`QemuScreenError` if QEMU ends first or ``timeout`` passes."""
    image, serial = workdir / "guest.rom", workdir / "com1.out"
    image.write_bytes(rom)
    serial.unlink(missing_ok=True)
    started = time.perf_counter()
    proc = subprocess.Popen([qemu, *GUEST_MACHINE, "-bios", str(image),
                             "-serial", f"file:{serial}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times: list[float] = []
    try:
        while len(times) < len(lines):
            text = serial.read_bytes().decode("latin-1") if serial.exists() else ""
            whole = text.split("\n")[:-1]
            while len(times) < len(lines) and any(lines[len(times)] in w for w in whole):
                times.append(time.perf_counter() - started)
            if len(times) == len(lines):
                break
            if proc.poll() is not None or time.perf_counter() - started > timeout:
                raise QemuScreenError(f"QEMU showed {len(times)} of the lines {lines!r} "
                                      f"(status {proc.poll()}); COM1: {text[-500:]!r}")
            time.sleep(0.001)
    finally:
        proc.kill()
        proc.wait()
    return times


# --- an operating system on QEMU, driven by a serial script ------------------------------

#: the shape of hvmspec's platform for a 64-bit operating system from a CD:
#: the pc machine without an APIC (Xen 3.0.4's CPUID clears it; qemu64 for
#: long mode), without HPET (Xen 3.0.4's platform has none: Linux would use
#: it as its clock event device), 128 MiB, the std VGA, COM1 given by the
#: caller, the CD as the secondary master (hdc), booted from CD
OS_MACHINE = ["-machine", "pc,hpet=off", "-accel", "tcg", "-cpu", "core2duo,-apic", "-m", "128",
              "-nodefaults", "-display", "none", "-no-reboot", *STD_VGA, "-boot", "d"]
#: the firmware of an operating system's run, by name: SeaBIOS (its own VGA
#: BIOS as the std VGA's option ROM) or rombios with the LGPL VGA BIOS
#: placed as hvmloader placed it (FACTS)
OS_FIRMWARE = {
    "seabios": ["-bios", "/usr/share/seabios/bios.bin", "-device",
                f"VGA,romfile={SEABIOS_VGABIOS},vgamem_mb=8,mmio=off"],
    "rombios": ["-bios", "/usr/share/bochs/BIOS-bochs-latest", *STD_VGA,
                "-device", f"loader,file={VGABIOS[0]},addr=0xc0000,force-raw=on"],
}


@dataclass
class ScriptRun:
    """What :func:`run_serial_script` saw: COM1's output, the host seconds
    from QEMU's start at which each ``expect`` matched (its ``file:line``
    and text), how QEMU ended (QMP's SHUTDOWN reason, e.g.
    ``guest-shutdown`` for ACPI's S5, ``guest-reset``, or None if it was
    killed) and when."""

    serial: str
    matched: list[tuple[str, str, float]]
    shutdown: str | None
    seconds: float
    status: int | None


def os_args(firmware: str, iso: str) -> list[str]:
    """QEMU's options for booting the CD ``iso`` with ``firmware`` (a key
    of :data:`OS_FIRMWARE`) on :data:`OS_MACHINE`; the std VGA is given
    once, with the firmware's ROM."""
    machine = [a for a in OS_MACHINE if a not in STD_VGA]
    return [*machine, *OS_FIRMWARE[firmware], "-drive",
            f"file={iso},if=ide,index=2,media=cdrom,readonly=on"]


def run_serial_script(qemu: str, args: list[str], steps, workdir: Path, *,
                      end_timeout: float = 60.0, wait_end: bool = True) -> ScriptRun:
    """Run ``qemu`` with ``args``, COM1 on a Unix socket that the script
    ``steps`` (:func:`hvmspec.serial_script.parse`) reads and types into,
    QMP on another; after the script's last step, wait up to
    ``end_timeout`` seconds for QEMU to end (a script that ends with
    ``send poweroff``), or with ``wait_end`` False kill it then (a guest
    that never ends, such as memtest86+). :class:`hvmspec.serial_script.ScriptError` naming
    the ``expect`` that did not match in its timeout, or was still waiting
    when QEMU ended, with the output's end."""
    import json
    import selectors

    from hvmspec.serial_script import ScriptError, ScriptLine

    com1, qmp_path = workdir / "com1.sock", workdir / "qmp.sock"
    for path in (com1, qmp_path):
        path.unlink(missing_ok=True)
    argv = [qemu, *args, "-chardev", f"socket,id=com1,path={com1},server=on,wait=on",
            "-serial", "chardev:com1", "-qmp", f"unix:{qmp_path},server=on,wait=off"]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    script = ScriptLine(list(steps))
    output = bytearray()
    matched: list[tuple[str, str, float]] = []
    shutdown = None

    def connect(path: Path) -> socket.socket:
        while True:
            sock = socket.socket(socket.AF_UNIX)
            try:
                sock.connect(str(path))
                return sock
            except OSError:
                sock.close()
                if proc.poll() is not None:
                    raise ScriptError(f"QEMU ended (status {proc.returncode}) before its "
                                      f"COM1 socket: "
                                      f"{proc.stderr.read().decode(errors='replace')}") from None
                if time.perf_counter() - started > 30:
                    raise ScriptError(f"no QEMU socket at {path}") from None
                time.sleep(0.02)

    serial = qmp = None
    try:
        serial = connect(com1)
        qmp = connect(qmp_path)
        qmp.sendall(b'{"execute": "qmp_capabilities"}\n')
        serial.sendall(script.start())
        selector = selectors.DefaultSelector()
        selector.register(serial, selectors.EVENT_READ, "serial")
        selector.register(qmp, selectors.EVENT_READ, "qmp")
        qmp_buffer = b""
        since = time.perf_counter()
        open_socks = 2
        while open_socks:
            step = script.waiting
            if step is None and not wait_end:
                break
            now = time.perf_counter()
            limit = step.timeout if step is not None else end_timeout
            if now - since > limit:
                tail = output[-600:].decode("latin-1")
                what = (f"serial script: {step.describe()} did not match in {limit:g} s"
                        if step is not None else
                        f"QEMU did not end within {limit:g} s of the script's end")
                raise ScriptError(f"{what}; COM1 ended with: {tail!r}")
            for key, _ in selector.select(timeout=0.05):
                data = key.fileobj.recv(65536)
                if not data:
                    selector.unregister(key.fileobj)
                    open_socks -= 1
                    continue
                if key.data == "qmp":
                    qmp_buffer += data
                    *lines, qmp_buffer = qmp_buffer.split(b"\n")
                    for line in lines:
                        message = json.loads(line) if line.strip() else {}
                        if message.get("event") == "SHUTDOWN":
                            shutdown = message.get("data", {}).get("reason")
                    continue
                for byte in data:
                    output.append(byte)
                    answer = script.output(byte)
                    if len(script.matched) > len(matched):
                        step_done = script.matched[-1][0]
                        matched.append((step_done.where, step_done.data.decode("latin-1"),
                                        time.perf_counter() - started))
                        since = time.perf_counter()
                    if answer:
                        serial.sendall(answer)
            if proc.poll() is not None and not selector.select(timeout=0):
                break
        if not wait_end:
            proc.kill()
        status = proc.wait(timeout=10)
        if script.waiting is not None:
            raise ScriptError(script.unfinished(
                f"QEMU ended, status {status}, shutdown {shutdown}") +
                f"; COM1 ended with: {output[-600:].decode('latin-1')!r}")
    finally:
        for sock in (serial, qmp):
            if sock is not None:
                sock.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stderr.close()
    return ScriptRun(output.decode("latin-1"), matched, shutdown,
                     time.perf_counter() - started, proc.returncode)
