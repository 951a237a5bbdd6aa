"""``make bench``: one table, every number measured in this run, side by side.

Rows (each the best of several runs: how many, :func:`best_of` says and
each row of the JSON records). Where an engine runs a guest of
N iterations, the row is the difference between that guest and the same
guest of 1 iteration (of 1 KiB for rep outsb), so that what an engine does
once per run (domain creation, XenStore, qemu-dm's start) is not counted
as the guest's:

* ``cpu-bound``: a guest loop of 3 instructions (add, dec, jnz) run for N
  iterations, then power-off: million guest instructions per second, for raw
  Unicorn (no hooks but the one OUT hook that ends the run: the limit), the
  reference and the impl engine; impl and raw Unicorn run 100 times as many
  iterations as the reference, and take turns (at least ``CPU_TURNS`` each),
  so that a slow spell of the host falls on both;
* ``port I/O round trip``: a guest doing N ``out`` to the UART scratch
  register: microseconds per round trip (guest instruction -> exit -> ioreq
  -> qemu-dm -> device -> resume), per engine, and a bare Unicorn
  ``UC_HOOK_INSN`` hook on the same loop as the limit;
* ``MMIO RMW round trip``: a 32-bit guest doing N ``add dword [mem], 1`` on
  the test device: microseconds per instruction (nested-page-fault exit,
  decode, a read ioreq and a write ioreq, resume), per engine, and a bare
  Unicorn ``mmio_map`` region (one read and one write callback) as the limit;
* ``rep string I/O``: one ``rep outsb`` of 64 KiB to the UART scratch
  register: MB/s of guest data through ioreqs with ``data_is_ptr``
  (split at page boundaries), per engine;
* ``interrupt window``: impl's vcpu (no domain) running a loop of 10^7
  instructions with IF = 0 while an interrupt waits (interrupt-window
  exiting), then STI: million instructions per second inside the window,
  and for the same loop run as ordinary code (no window asked for);
* ``demo wall time``, ``hello wall time``: the bundled guests, per engine
  (the demo once: its reference run takes most of a second);
* ``VGA device``: the VGA's device code alone, no guest, no exit (the
  reference's :mod:`spec.devices.vga_registers` and
  :mod:`spec.devices.vga_memory`, impl's :mod:`impl.vga_ports` and
  :mod:`impl.vga_planes`, both from Xen 3.0.4's power-on state): nanoseconds
  per port write (a mix of word writes to the CRTC and graphics controller
  index ports and byte writes of DAC data and the sequencer index), and per
  byte written through the window in planar write mode 0 (set/reset on two
  planes, all planes and bits enabled, as a mode 12h fill does);
* ``VGA frame``: the scanner alone (the reference's
  :mod:`spec.devices.vga_scanner`, impl's :mod:`impl.vga_scan`):
  milliseconds per whole picture of random video memory (new bytes each
  run, so that no memoised row or line is drawn again) in mode 3 (720x400
  text, Xen 3.0.4's power-on), VBE 800x600 at 4 bits a pixel (planar) and
  VBE 1024x768 at 32 bits;
* ``hvmspec check``: every proof and mutant, in a process of its own, once;
* ``dma peak memory``: the peak resident memory of ``hvmspec run dma``
  (impl engine, a 32-bit qemu-dm's mapcache) in a process of its own, for a
  guest of 4 GiB and one of 64 GiB (once each): the guest touches the same
  memory, so the figure must not grow with the guest's size;
* ``trace peak memory``: the peak resident memory of ``hvmspec run --json``
  (impl engine) in a process of its own, for a guest of
  :data:`TRACE_WRITES` port writes and one of ten times as many (once
  each): nine trace events a write, which flow to the run's sinks and are
  not kept (docs/overview.rst, "Sinks"), so the figure must not grow with
  the run's length;
* ``rombios POST``, ``SeaBIOS POST``: Debian's firmware (the firmware cases
  of ``hvmspec conform``, :mod:`hvmspec.conform`) from the reset vector to
  its log's line "No bootable device", once each: the wall time on impl, on
  the reference and on QEMU (Debian's ``qemu-system-i386`` with the same
  BIOS file, :mod:`hvmspec.qemu_peer`, from its start until its debug
  console shows the line; QEMU waits the firmware's waits in the host's
  time, where the engines jump their clock), and the engines' speed in
  million instructions per second, counting the instructions the guest
  executed (the clock's idle jumps, most of POST's ``instructions``, are
  recorded with the row but not counted). Their ratios, side by side, are
  the report's ``ratios``.

Then the project's performance targets (:func:`targets`: impl within half
of raw Unicorn's speed on CPU-bound code, a port round trip within 3 times
a bare Unicorn hook, impl 100 times the reference on I/O, an interrupt
window as fast as ordinary code (within 10 %), every proof
within a minute, peak memory independent of the guest's size and of the
run's length), each with
the measured ratio and whether it is met. ``--write FILE`` also writes the
whole run as JSON, with the machine it ran on (architecture, CPU model
from ``/proc/cpuinfo``, cores, Python); the docs' performance page renders
``docs/bench.json`` and every figure its prose quotes. ``--only TEXT``
(repeatable) measures only the rows whose name contains TEXT (e.g.
``--only POST``; ``--write`` needs every row).
"""

from __future__ import annotations

import argparse
import json
import platform as host
import time
from pathlib import Path

from spec.loader import GuestImage, rom_from_source

POWEROFF = "mov dx, 0x1f44\n mov ax, 0x3c00\n out dx, ax\n hlt\n"

#: how many runs a row is the best of, unless :func:`best_of` says otherwise
#: (``--repeat``'s default)
REPEAT = 3
#: impl and raw Unicorn take turns on the CPU-bound loop, at least this many each
CPU_TURNS = 7
#: rows measured once: the demo (its reference run takes most of a second),
#: and what runs in a process of its own
ONCE = ("demo wall time", "hvmspec check", "dma peak memory", "trace peak memory",
        "rombios POST", "SeaBIOS POST")
#: the POST rows: their name's firmware (a firmware case of hvmspec conform)
POST = {"rombios POST": "rombios", "SeaBIOS POST": "seabios"}


def best_of(row: str, engine: str, repeat: int = REPEAT) -> int:
    """How many runs the figure of ``row`` on ``engine`` is the best of, when
    the other rows are the best of ``repeat``: what :func:`measure` runs,
    and what ``docs/bench.json`` records with each row."""
    if row.startswith(ONCE):
        return 1
    if row == "cpu-bound" and engine != "reference":
        return max(repeat, CPU_TURNS)
    return repeat


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name: the first ``model name`` of ``/proc/cpuinfo``
    (Linux), else what :func:`platform.processor` says, else ``""``."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return " ".join(value.split())
    return host.processor().strip()


def machine() -> dict:
    """The machine a run measures: ``machine`` (one line: architecture, CPU
    model, cores, Python) and ``cpu`` (the model alone, ``""`` when the host
    does not say)."""
    import os
    cpu = cpu_model()
    parts = [host.machine(), cpu, f"{os.cpu_count()} cores", f"Python {host.python_version()}"]
    return {"machine": ", ".join(p for p in parts if p), "cpu": cpu}


def cpu_guest(iterations: int) -> GuestImage:
    src = f"mov ecx, {iterations}\nloop_top:\n add eax, 3\n dec ecx\n jnz loop_top\n" + POWEROFF
    return GuestImage("cpu", rom_from_source(src, "cpu"))


def io_guest(iterations: int) -> GuestImage:
    src = (f"mov cx, {iterations}\n mov dx, 0x3ff\nio_top:\n out dx, al\n dec cx\n"
           " jnz io_top\n" + POWEROFF)
    return GuestImage("io", rom_from_source(src, "io"))


def _flat(body: str, name: str) -> GuestImage:
    """A flat 32-bit guest (the generated guests' set-up) running ``body``."""
    from hvmspec.guestgen import EPILOGUE, PROLOGUE
    return GuestImage(name, rom_from_source(PROLOGUE + body + EPILOGUE, name))


def mmio_guest(iterations: int) -> GuestImage:
    return _flat(f"    mov ebp, 0xfeb00000\n    mov ecx, {iterations}\nrmw_top:\n"
                 "    add dword ptr [ebp], 1\n    dec ecx\n    jnz rmw_top\n", "mmio-rmw")


def string_guest(kib: int) -> GuestImage:
    return _flat(f"    mov esi, 0x10000\n    mov ecx, {kib * 1024}\n    mov dx, 0x3ff\n"
                 "    rep outsb\n", "rep-outsb")


#: the interrupt-window row's loop: IF = 0, 2 instructions per iteration, then STI
WINDOW_SPINS = 5_000_000


def window_seconds(window: bool, spins: int = WINDOW_SPINS) -> tuple[float, int]:
    """Seconds and instructions for impl's vcpu to run ``spins`` iterations
    of ``dec ecx; jnz`` with IF = 0 in real mode, then STI, INC, HLT; with
    ``window`` the VMM asks for an interrupt window (the run ends at the
    boundary after the INC, in STI's shadow), else the run ends at HLT."""
    from impl.vcpu import Vcpu
    from spec import physical_cpu
    from spec.loader import assemble
    cpu = Vcpu(1 << 20)
    cpu.write(0x80000, assemble(f"cli\n mov ecx, {spins}\nspin:\n dec ecx\n jnz spin\n"
                                f" sti\n inc bx\n inc bx\n hlt\n"))
    physical_cpu.reset(cpu.uc, cs=0x8000, ip=0)
    cpu.run(100, window=window)                 # blocks decoded, stop points placed
    started = time.perf_counter()
    ex = cpu.run(1 << 40, window=window)
    seconds = time.perf_counter() - started
    assert ex.reason == ("interrupt_window" if window else "hlt"), ex
    return seconds, ex.icount - 100


def raw_unicorn(image: GuestImage, io_hook: bool) -> float:
    """Seconds for raw Unicorn to run the guest from the reset vector to its power-off."""
    import unicorn
    from unicorn import x86_const as X
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_16)
    uc.mem_map(0, 0xA0000)
    uc.mem_map(0xC0000, 0x40000)
    uc.mem_write(0x100000 - len(image.image), image.image)
    uc.reg_write(X.UC_X86_REG_CS, 0xF000)
    if io_hook:
        def on_out(uc_, port, size, value, data):
            if port == 0x1F44:
                uc_.emu_stop()
        uc.hook_add(unicorn.UC_HOOK_INSN, on_out, None, 1, 0, X.UC_X86_INS_OUT)
    started = time.perf_counter()
    uc.emu_start(0xFFF0, 0xFFFFF if not io_hook else 0)
    return time.perf_counter() - started


def raw_unicorn_mmio(iterations: int) -> float:
    """Seconds per ``add dword [mem], 1`` on a bare ``mmio_map`` region."""
    import unicorn
    from keystone import KS_ARCH_X86, KS_MODE_32, Ks
    from unicorn import x86_const as X
    code = bytes(Ks(KS_ARCH_X86, KS_MODE_32).asm(
        f"mov ecx, {iterations}; top: add dword ptr [ebp], 1; dec ecx; jnz top; hlt",
        0x1000)[0])
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_32)
    uc.mem_map(0, 0x10000)
    uc.mem_write(0x1000, code)
    cell = [0]

    def read(uc_, offset, size, data):
        return cell[0]

    def write(uc_, offset, size, value, data):
        cell[0] = value
    uc.mmio_map(0xFEB00000, 0x1000, read, None, write, None)
    uc.reg_write(X.UC_X86_REG_EBP, 0xFEB00000)
    started = time.perf_counter()
    uc.emu_start(0x1000, 0x1000 + len(code) - 1)
    return (time.perf_counter() - started) / iterations


def per_iteration(engine: str, make, iterations: int, repeat: int) -> tuple[float, int]:
    """Seconds of the guest ``make(iterations)`` beyond those of ``make(1)``
    (each the best of ``repeat``), and the instructions beyond."""
    many, big = timed(engine, make(iterations), repeat)
    one, small = timed(engine, make(1), repeat)
    return many - one, big.instructions - small.instructions


def timed(engine: str, image: GuestImage, repeat: int) -> tuple[float, object]:
    from hvmspec.engines import runner
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = runner(engine)(image, max_instructions=1 << 40)
        best = min(best, time.perf_counter() - started)
        assert result.exit["reason"] == "poweroff", result.exit
    return best, result


def peak_memory(memory_mib: int) -> tuple[float, dict]:
    """Peak RSS (MiB) of ``hvmspec run dma`` with ``memory_mib`` of guest
    memory, in a child process; and its mapcache report."""
    import os
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "hvmspec.cli", "run", "dma", "--json",
                             "--memory", str(memory_mib)], stdout=subprocess.PIPE)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    result = json.loads(out)
    assert result["exit"]["reason"] == "poweroff", result["exit"]
    return usage.ru_maxrss / 1024, result["mapcache"]


#: the short run of the trace memory rows: port writes (the long run: ten times as many)
TRACE_WRITES = 3_000


def writes_source(count: int) -> str:
    """A guest that writes the UART scratch register ``count`` times (a
    round trip of nine trace events each), then powers off."""
    return (f"; {count} writes to the UART scratch register, then ACPI power-off\n"
            f"    mov ecx, {count}\n    mov dx, 0x3ff\ntop:\n    out dx, al\n    dec ecx\n"
            f"    jnz top\n    " + POWEROFF.replace("\n ", "\n    "))


def trace_peak_memory(writes: int) -> tuple[float, int]:
    """Peak RSS (MiB) of ``hvmspec run --json`` (impl) of a guest of
    ``writes`` port writes (:func:`writes_source`), in a child process; and
    its VM exits."""
    import os
    import subprocess
    import sys
    import tempfile
    with tempfile.TemporaryDirectory(prefix="hvmspec-bench-") as folder:
        source = Path(folder) / "writes.s"
        source.write_text(writes_source(writes))
        proc = subprocess.Popen([sys.executable, "-m", "hvmspec.cli", "run", str(source),
                                 "--json", "--engine", "impl"], stdout=subprocess.PIPE)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    result = json.loads(out)
    assert result["exit"]["reason"] == "poweroff", result["exit"]
    return usage.ru_maxrss / 1024, sum(result["exits"].values())


def check_seconds() -> float:
    import subprocess
    import sys
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "hvmspec.cli", "check", "--json"],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-500:]
    return seconds


def post(engine: str, name: str) -> tuple[float, int, int]:
    """Seconds for ``engine`` to run firmware ``name`` through POST (the
    firmware case of :mod:`hvmspec.conform`); the instructions on its clock
    and those the guest executed (the clock's idle jumps left out)."""
    from hvmspec import conform
    from spec import trace
    case = conform.firmware_case(name)
    idle = [0]

    def idles(e: trace.Event) -> None:     # a counter sink: the clock's idle jumps
        if isinstance(e, trace.Idle):
            idle[0] += e.until - e.icount
    started = time.perf_counter()
    result = conform.run(engine, case, [idles])
    seconds = time.perf_counter() - started
    assert result.exit.get("message", "").startswith("stopped by the firmware log"), result.exit
    return seconds, result.instructions, result.instructions - idle[0]


def qemu_post(name: str) -> float:
    """Seconds from QEMU's start until its debug console shows firmware
    ``name``'s last line of POST (:func:`hvmspec.qemu_peer.run_to_line`)."""
    import shutil
    import tempfile
    from hvmspec import conform, qemu_peer
    from spec import hvmloader
    qemu = shutil.which("qemu-system-i386")
    if qemu is None:
        raise SystemExit("hvmspec: error: the POST rows need qemu-system-i386 (the Debian "
                         "package qemu-system-x86: apt-get install qemu-system-x86)")
    with tempfile.TemporaryDirectory(prefix="hvmspec-bench-") as workdir:
        run = qemu_peer.run_to_line(qemu, name, hvmloader.FIRMWARE[name][0], Path(workdir),
                                    conform.FIRMWARE_END)
    assert run.seconds is not None, f"QEMU's {name} never printed {conform.FIRMWARE_END!r}"
    return run.seconds


#: how many rows each measure gives (the progress bar's length)
SECTIONS = {"cpu-bound": 3, "port I/O round trip": 3, "MMIO RMW round trip": 3,
            "rep outsb, 64 KiB": 2, "interrupt window": 2, "demo wall time": 2,
            "hello wall time": 2, "VGA device": 4, "VGA frame": 6,
            "graphics frames per second": 6, "scanner per dirty page": 2,
            "VNC update latency": 2, "hvmspec check": 1, "dma peak memory": 2,
            "trace peak memory": 2,
            "rombios POST": 5, "SeaBIOS POST": 5}
#: how many rows :func:`measure` produces
ROWS = sum(SECTIONS.values())


def chosen(only: list[str] | None) -> list[str]:
    """The measures ``--only`` picks (every one without it): those whose
    name contains one of its texts, ignoring case."""
    return [name for name in SECTIONS
            if not only or any(text.lower() in name.lower() for text in only)]


def measure(args, advance=lambda: None) -> list[dict]:
    """Every row of the measures ``--only`` picks (:func:`chosen`), in the
    order of :data:`SECTIONS`."""
    rows = []

    def row(name: str, engine: str, value: float, unit: str, **more) -> None:
        rows.append({"row": name, "engine": engine, "value": value, "unit": unit,
                     "best_of": best_of(name, engine, args.repeat), **more})
        advance()

    def runs(name: str, engine: str) -> int:
        return best_of(name, engine, args.repeat)

    for section in chosen(getattr(args, "only", None)):
        if section in POST:
            _post_rows(section, row)
        else:
            MEASURES[section](args, row, runs)
    return rows


def _post_rows(section: str, row) -> None:
    """A firmware's POST on each engine and on QEMU."""
    name = POST[section]
    for engine in ("impl", "reference"):
        seconds, instructions, executed = post(engine, name)
        row(f"{section} wall time", engine, seconds, "s", instructions=instructions,
            executed=executed)
        row(f"{section} speed", engine, executed / seconds / 1e6, "MIPS",
            instructions=instructions, executed=executed)
    row(f"{section} wall time", "qemu", qemu_post(name), "s")


def _cpu_rows(args, row, runs) -> None:
    seconds, instructions = per_iteration("reference", cpu_guest, args.cpu_iterations,
                                          runs("cpu-bound", "reference"))
    row("cpu-bound", "reference", instructions / seconds / 1e6, "MIPS")
    # impl and raw Unicorn take well under a second each: they alternate, so
    # that a slow spell of the host falls on both
    n = 100 * args.cpu_iterations
    many, one = cpu_guest(n), cpu_guest(1)
    best = {"many": float("inf"), "one": float("inf"), "raw": float("inf")}
    assert runs("cpu-bound", "impl") == runs("cpu-bound", "raw unicorn")
    for _ in range(runs("cpu-bound", "impl")):
        seconds, big = timed("impl", many, 1)
        best["many"] = min(best["many"], seconds)
        seconds, small = timed("impl", one, 1)
        best["one"] = min(best["one"], seconds)
        best["raw"] = min(best["raw"], raw_unicorn(many, io_hook=True))
    row("cpu-bound", "impl", (big.instructions - small.instructions)
        / (best["many"] - best["one"]) / 1e6, "MIPS")
    row("cpu-bound", "raw unicorn", 3 * n / best["raw"] / 1e6, "MIPS")


def _port_rows(args, row, runs) -> None:
    io = io_guest(args.io_iterations)
    for engine in ("reference", "impl"):
        seconds, _ = per_iteration(engine, io_guest, args.io_iterations,
                                   runs("port I/O round trip", engine))
        row("port I/O round trip", engine, seconds / (args.io_iterations - 1) * 1e6, "µs")
    raw_io = min(raw_unicorn(io, io_hook=True)
                 for _ in range(runs("port I/O round trip", "bare unicorn hook")))
    row("port I/O round trip", "bare unicorn hook", raw_io / args.io_iterations * 1e6, "µs")


def _mmio_rows(args, row, runs) -> None:
    for engine in ("reference", "impl"):
        seconds, _ = per_iteration(engine, mmio_guest, args.io_iterations,
                                   runs("MMIO RMW round trip", engine))
        row("MMIO RMW round trip", engine, seconds / (args.io_iterations - 1) * 1e6, "µs")
    row("MMIO RMW round trip", "bare unicorn mmio_map",
        min(raw_unicorn_mmio(args.io_iterations)
            for _ in range(runs("MMIO RMW round trip", "bare unicorn mmio_map"))) * 1e6, "µs")


def _string_rows(args, row, runs) -> None:
    for engine in ("reference", "impl"):
        seconds, _ = per_iteration(engine, string_guest, 64, runs("rep outsb, 64 KiB", engine))
        row("rep outsb, 64 KiB", engine, 63 * 1024 / seconds / 1e6, "MB/s")


def _window_rows(args, row, runs) -> None:
    for window, engine in ((True, "impl"), (False, "impl, ordinary code")):
        seconds, instructions = min(window_seconds(window)
                                    for _ in range(runs("interrupt window", engine)))
        row("interrupt window", engine, instructions / seconds / 1e6, "MIPS")


def _wall_rows(name: str):
    def rows(args, row, runs) -> None:
        from spec.loader import load
        guest = load(name)
        for engine in ("reference", "impl"):
            seconds, _ = timed(engine, guest, runs(f"{name} wall time", engine))
            row(f"{name} wall time", engine, seconds * 1e3, "ms")
    return rows


#: operations a VGA device row times per run
VGA_OPS = 40_000


def vga_ns(engine: str, what: str, count: int = VGA_OPS) -> float:
    """Nanoseconds per ``what`` (``"port"`` or ``"planar"``) of ``engine``'s
    VGA device code, over ``count`` operations (module docstring)."""
    if engine == "impl":
        from impl.vga_planes import VgaPlanes
        from impl.vga_ports import VgaPorts
        regs = VgaPorts()
        planes = VgaPlanes(bytearray(regs.vram_size), regs)
    else:
        from spec.devices import vga_memory, vga_registers
        regs = vga_registers.VgaRegisters()
        vram, window = bytearray(regs.vram_size), regs.memory_registers

        def store(address: int, value: int) -> None:
            vga_memory.write(vram, 0, window(), address, value)
    regs.bios_init()
    for word in (0x0F02, 0x0604):                  # all planes, planar (odd/even off)
        regs.write(0x3C4, 2, word)
    for word in (0x0005, 0x0506, 0xFF08, 0x0003, 0x0500, 0x0501):
        regs.write(0x3CE, 2, word)                 # write mode 0, map 1, set/reset 0101
    if engine == "impl":                # the rules compiled by a first access, then kept
        planes.write_byte(0xA0000, 0)
        store = planes.write_byte
    write = regs.write
    started = time.perf_counter()
    if what == "port":
        for k in range(count >> 2):
            write(0x3D4, 2, 0x0E | (k & 0xFF) << 8)
            write(0x3C9, 1, k & 0x3F)
            write(0x3CE, 2, 0x08 | (k & 0xFF) << 8)
            write(0x3C4, 1, 2)
    else:
        for k in range(count):
            store(0xA0000 + (k & 0x7FFF), k & 0xFF)
    return (time.perf_counter() - started) / count * 1e9


def _vga_rows(args, row, runs) -> None:
    for what, name in (("port", "VGA port write"), ("planar", "VGA planar window write")):
        for engine in ("reference", "impl"):
            row(name, engine, min(vga_ns(engine, what) for _ in range(runs(name, engine))),
                "ns")


#: the VGA frame rows' pictures: name -> VBE (xres, yres, bpp), or None for mode 3 text
VGA_FRAMES = {"720x400 text": None, "800x600x4 planar": (800, 600, 4),
              "1024x768x32": (1024, 768, 32)}


def vga_frame_ms(engine: str, vbe: tuple[int, int, int] | None, seed: int) -> float:
    """Milliseconds for ``engine``'s scanner to draw one whole picture of
    random video memory (module docstring)."""
    import random
    if engine == "impl":
        from impl import vga_scan as scanner
        from impl.vga_ports import VgaPorts as Registers
    else:
        from spec.devices import vga_scanner as scanner
        from spec.devices.vga_registers import VgaRegisters as Registers
    regs = Registers(8 << 20)
    regs.bios_init()
    if vbe is not None:
        for index, value in ((1, vbe[0]), (2, vbe[1]), (3, vbe[2]), (4, 0xC1)):
            regs.write(0x1CE, 2, index)
            regs.write(0x1CF, 2, value)
    vram = bytearray(random.Random(seed).randbytes(8 << 20))
    display, palette = regs.display(), regs.palette_rgb()
    started = time.perf_counter()
    scanner.draw(display, palette, vram, True)
    return (time.perf_counter() - started) * 1e3


def _vga_frame_rows(args, row, runs) -> None:
    for picture, vbe in VGA_FRAMES.items():
        name = f"VGA frame, {picture}"
        for engine in ("reference", "impl"):
            row(name, engine, min(vga_frame_ms(engine, vbe, seed)
                                  for seed in range(runs(name, engine))), "ms")


#: frames each graphics benchmark draws (the guest's FRAMES)
BENCH_FRAMES = 20
#: the graphics guest's benchmarks: (SCREEN, the line it prints before its first frame)
GRAPHICS_BENCH = {"mode 13h redraw": (5, "bench mode 13h"),
                  "VBE 640x480x32 fill": (6, "bench vbe 640x480x32")}


def graphics_fps(engine: str, screen: int) -> tuple[float, int]:
    """(Frames per second of the host's time, VM exits) of the graphics
    guest's benchmark ``screen`` on ``engine``: the whole run, mode set
    included, over :data:`BENCH_FRAMES` frames."""
    import tempfile as _tempfile
    from spec.loader import load, variant_source
    with _tempfile.TemporaryDirectory(prefix="hvmspec-bench-") as folder:
        source = Path(folder) / "bench.s"
        source.write_text(variant_source("graphics", SCREEN=screen, FRAMES=BENCH_FRAMES))
        seconds, result = timed(engine, load(str(source)), 1)
    assert f"{BENCH_FRAMES} frames drawn" in result.serial, result.serial
    return BENCH_FRAMES / seconds, sum(result.exits.values())


def qemu_graphics_fps(screen: int, start: str) -> float:
    """Frames per second of the same benchmark on QEMU (its std VGA), from
    the host's time between the line before the first frame and the last."""
    import shutil
    import tempfile as _tempfile
    from hvmspec import qemu_peer
    from spec.loader import load, variant_source
    qemu = shutil.which("qemu-system-i386")
    if qemu is None:
        raise SystemExit("hvmspec: error: the graphics rows need qemu-system-i386")
    with _tempfile.TemporaryDirectory(prefix="hvmspec-bench-") as folder:
        source = Path(folder) / "bench.s"
        source.write_text(variant_source("graphics", SCREEN=screen, FRAMES=BENCH_FRAMES))
        first, last = qemu_peer.guest_line_times(qemu, load(str(source)).image, Path(folder),
                                                 (start, f"{BENCH_FRAMES} frames drawn"))
    return BENCH_FRAMES / (last - first)


def _graphics_rows(args, row, runs) -> None:
    for name, (screen, start) in GRAPHICS_BENCH.items():
        for engine in ("reference", "impl"):
            fps, exits = max(graphics_fps(engine, screen)
                             for _ in range(runs(f"graphics {name}", engine)))
            row(f"graphics {name}", engine, fps, f"frames/s ({exits} exits)")
        row(f"graphics {name}", "qemu", qemu_graphics_fps(screen, start), "frames/s")


class _BenchHost:
    """What a VGA device asks of Xen, for timing the device alone: the view
    it maps and a dirty bitmap the bench sets by hand."""

    def __init__(self) -> None:
        self.mapped: dict[int, object] = {}
        self.dirty = 0

    def map_vram(self, gpa, buffer):
        self.mapped[gpa] = buffer

    def unmap_vram(self, gpa, length):
        self.mapped.pop(gpa)

    def track_dirty_vram(self, first, nr):
        bits, self.dirty = self.dirty, 0
        return bits

    def dirty_vram_pending(self):
        return bool(self.dirty)

    def clock_ns(self):
        return 0


def _vbe_device(engine: str):
    """(device, host, refresh) for ``engine``'s VGA in VBE 640x480x32 with
    its linear frame buffer shared at 0xE0000000."""
    host = _BenchHost()
    if engine == "impl":
        from impl.vga import Vga
        device = Vga(host)
        device.moved(0xE0000000)
        refresh = lambda: device.refresh(lambda event: None)       # noqa: E731
    else:
        from spec.devices.vga import Vga
        device = Vga(host)
        device.set_linear_base(0xE0000000)
        refresh = device.refresh
    for index, value in ((1, 640), (2, 480), (3, 32), (4, 0x41)):
        device.port_write(0x1CE, 2, index)
        device.port_write(0x1CF, 2, value)
    refresh()
    return device, host, refresh


def scanner_page_us(engine: str, pages: int = 64, seed: int = 0) -> float:
    """Microseconds of one refresh per dirty page: ``pages`` pages of a VBE
    640x480x32 picture written through the shared frame buffer (and marked
    dirty, as Xen's tracking would), then the device's refresh (bands,
    draw, compare, update event), per page."""
    import ctypes
    import random
    device, host, refresh = _vbe_device(engine)
    (buffer,) = host.mapped.values()
    rng = random.Random(seed)
    for page in range(pages):
        data = rng.randbytes(4096)
        ctypes.memmove(ctypes.addressof(buffer) + page * 4096, data, 4096)
        host.dirty |= 1 << page
    started = time.perf_counter()
    refresh()
    return (time.perf_counter() - started) / pages * 1e6


def _scanner_rows(args, row, runs) -> None:
    for engine in ("reference", "impl"):
        name = "scanner per dirty page"
        row(name, engine, min(scanner_page_us(engine, seed=k) for k in range(runs(name, engine))),
            "µs (VBE 640x480x32, 64 pages)")


def vnc_latency_ms(engine: str, seed: int = 0) -> float:
    """Milliseconds from a guest's store into the shared frame buffer to a
    VNC client holding the changed picture: the device's refresh, the
    picture handed to the server, the incremental update sent and read (a
    raw RFB 3.8 client on the loopback)."""
    import ctypes
    import socket
    import struct
    from hvmspec.vnc import VncServer
    from hvmspec.vnc_display import Picture
    device, host, refresh = _vbe_device(engine)
    picture = Picture()
    picture.set(device.picture_rgb())
    server = VncServer(picture, port=0).start()
    client = socket.create_connection(("127.0.0.1", server.port))

    def read(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = client.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the VNC server closed the connection")
            data += chunk
        return data

    def update() -> None:           # one FramebufferUpdate, every rectangle read
        header = read(4)
        for _ in range(struct.unpack(">xxH", header)[0]):
            x, y, w, h, encoding = struct.unpack(">HHHHi", read(12))
            if encoding == 0:
                read(w * h * 4)
            elif encoding == 1:
                read(4)
    try:
        read(12)
        client.sendall(b"RFB 003.008\n")
        read(read(1)[0])                           # the security types
        client.sendall(b"\x01")                   # None
        read(4)
        client.sendall(b"\x01")                   # shared
        init = read(24)                            # ServerInit, then its name
        read(struct.unpack(">I", init[20:24])[0])
        client.sendall(struct.pack(">BxHI", 2, 1, 0))        # encodings: raw
        client.sendall(struct.pack(">BBHHHH", 3, 0, 0, 0, 640, 480))
        update()
        client.sendall(struct.pack(">BBHHHH", 3, 1, 0, 0, 640, 480))
        (buffer,) = host.mapped.values()
        data = bytes([(37 * seed + 1) & 0xFF]) * 4096 * 16     # never the cleared picture
        started = time.perf_counter()
        ctypes.memmove(ctypes.addressof(buffer), data, len(data))
        host.dirty |= 0xFFFF
        refresh()
        picture.set(device.picture_rgb())
        server.changed()
        update()
        return (time.perf_counter() - started) * 1e3
    finally:
        client.close()
        server.stop()


def _vnc_rows(args, row, runs) -> None:
    for engine in ("reference", "impl"):
        name = "VNC update latency"
        row(name, engine, min(vnc_latency_ms(engine, k) for k in range(runs(name, engine))),
            "ms (16 pages of VBE 640x480x32)")


def _check_rows(args, row, runs) -> None:
    row("hvmspec check", "proofs", check_seconds(), "s")


def _dma_rows(args, row, runs) -> None:
    for memory in (4096, 65536):
        rss, mapcache = peak_memory(memory)
        row(f"dma peak memory, {memory >> 10} GiB guest", "impl", rss,
            f"MiB ({mapcache['evictions']} evictions)")


def _trace_rows(args, row, runs) -> None:
    for writes in (TRACE_WRITES, 10 * TRACE_WRITES):
        rss, exits = trace_peak_memory(writes)
        row(f"trace peak memory, {writes:,} port writes", "impl", rss,
            f"MiB ({exits:,} exits)")


#: each measure but the POST rows, by its name in :data:`SECTIONS`
MEASURES = {"cpu-bound": _cpu_rows, "port I/O round trip": _port_rows,
            "MMIO RMW round trip": _mmio_rows, "rep outsb, 64 KiB": _string_rows,
            "interrupt window": _window_rows, "demo wall time": _wall_rows("demo"),
            "hello wall time": _wall_rows("hello"), "VGA device": _vga_rows,
            "VGA frame": _vga_frame_rows, "graphics frames per second": _graphics_rows,
            "scanner per dirty page": _scanner_rows, "VNC update latency": _vnc_rows,
            "hvmspec check": _check_rows,
            "dma peak memory": _dma_rows, "trace peak memory": _trace_rows}


def ratios(rows: list[dict]) -> list[dict]:
    """The POST rows' ratios, side by side: how many times as long the
    reference and QEMU take as impl, and the reference's speed against
    impl's."""
    v = {(r["row"], r["engine"]): r["value"] for r in rows}
    out = []
    for section in POST:
        wall = f"{section} wall time"
        if (wall, "impl") not in v:
            continue
        for other in ("reference", "qemu"):
            out.append({"ratio": f"{section}: {other} / impl wall time",
                        "value": v[(wall, other)] / v[(wall, "impl")]})
    return out


def targets(rows: list[dict]) -> list[dict]:
    """The performance targets against the measured rows (those whose rows
    were measured: ``--only`` may leave some out)."""
    v = {(r["row"], r["engine"]): r["value"] for r in rows}
    out = []

    def target(what: str, measured: float, goal: str, met: bool) -> None:
        out.append({"target": what, "measured": round(measured, 3), "goal": goal, "met": met})

    def have(*keys: tuple[str, str]) -> bool:
        return all(k in v for k in keys)

    if have(("cpu-bound", "impl"), ("cpu-bound", "raw unicorn")):
        cpu = v[("cpu-bound", "impl")] / v[("cpu-bound", "raw unicorn")]
        target("impl CPU-bound speed / raw Unicorn", cpu, ">= 0.5", cpu >= 0.5)
    if have(("port I/O round trip", "impl"), ("port I/O round trip", "bare unicorn hook")):
        rt = v[("port I/O round trip", "impl")] / v[("port I/O round trip", "bare unicorn hook")]
        target("impl port I/O round trip / bare hook", rt, "<= 3", rt <= 3)
    for row in ("port I/O round trip", "MMIO RMW round trip"):
        if have((row, "reference"), (row, "impl")):
            speedup = v[(row, "reference")] / v[(row, "impl")]
            target(f"impl speed-up over reference, {row}", speedup, ">= 100", speedup >= 100)
    if have(("rep outsb, 64 KiB", "impl"), ("rep outsb, 64 KiB", "reference")):
        speedup = v[("rep outsb, 64 KiB", "impl")] / v[("rep outsb, 64 KiB", "reference")]
        target("impl speed-up over reference, rep outsb", speedup, ">= 100", speedup >= 100)
    if have(("interrupt window", "impl"), ("interrupt window", "impl, ordinary code")):
        ratio = v[("interrupt window", "impl")] / v[("interrupt window", "impl, ordinary code")]
        target("impl interrupt window speed / ordinary code", ratio, ">= 0.9", ratio >= 0.9)
    if have(("hvmspec check", "proofs")):
        proofs = v[("hvmspec check", "proofs")]
        target("hvmspec check seconds", proofs, "<= 60", proofs <= 60)
    small, large = ("dma peak memory, 4 GiB guest", "impl"), ("dma peak memory, 64 GiB guest",
                                                               "impl")
    if have(small, large):
        ratio = v[large] / v[small]
        target("dma peak memory, 64 GiB / 4 GiB guest", ratio, "<= 1.1", ratio <= 1.1)
    short, long = ((f"trace peak memory, {n:,} port writes", "impl")
                   for n in (TRACE_WRITES, 10 * TRACE_WRITES))
    if have(short, long):
        ratio = v[long] / v[short]
        target("trace peak memory, 10 times the run", ratio, "<= 1.1", ratio <= 1.1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=REPEAT,
                        help="how many runs most rows are the best of (default %(default)s)")
    parser.add_argument("--cpu-iterations", type=int, default=300_000)
    parser.add_argument("--io-iterations", type=int, default=2_000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--write", type=Path, metavar="FILE",
                        help="also write the run as JSON to FILE (docs/bench.json)")
    parser.add_argument("--only", action="append", metavar="TEXT",
                        help="measure only the rows whose name contains TEXT (repeatable; "
                        "e.g. POST); not with --write")
    args = parser.parse_args()
    sections = chosen(args.only)
    if not sections:
        parser.exit(2, f"hvmspec: error: --only {' '.join(args.only)}: no measure's name "
                       f"contains it (measures: {', '.join(SECTIONS)})\n")
    if args.only and args.write is not None:
        parser.exit(2, "hvmspec: error: --write records every row (docs/bench.json): "
                       "not with --only\n")
    if args.write is not None:             # before minutes of measuring, not after
        from hvmspec.commands import UsageError, output_path
        try:
            output_path(args.write, "--write", suffixes=(".json",))
        except UsageError as exc:
            parser.exit(2, f"hvmspec: error: {exc}\n")
    for section in sections:               # the firmware and QEMU, before measuring too
        if section in POST:
            from hvmspec.conform import firmware_case
            from spec.loader import GuestError
            try:
                firmware_case(POST[section])
            except GuestError as exc:
                parser.exit(2, f"hvmspec: error: {section}: {exc}\n")
            import shutil
            if shutil.which("qemu-system-i386") is None:
                parser.exit(2, f"hvmspec: error: {section}: qemu-system-i386 is not installed "
                               f"(apt-get install qemu-system-x86)\n")
    from rich.console import Console
    from rich.progress import Progress
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("measuring", total=sum(SECTIONS[s] for s in sections))
        rows = measure(args, lambda: progress.advance(task))
    goals = targets(rows)
    where = machine()
    report = {**where, "date": time.strftime("%Y-%m-%d"), "repeat": args.repeat,
              "cpu_turns": best_of("cpu-bound", "impl", args.repeat),
              "rows": rows, "targets": goals, "ratios": ratios(rows)}
    if args.write:
        args.write.write_text(json.dumps(report, indent=1) + "\n")
    if args.json:
        print(json.dumps(report))
        return 0
    from rich.console import Console
    from rich.table import Table
    table = Table(title=f"hvmspec bench ({where['machine']})")
    for col in ("measure", "engine", "value", "unit", "best of"):
        table.add_column(col, justify="right" if col in ("value", "best of") else "left")
    for r in rows:
        table.add_row(r["row"], r["engine"], f"{r['value']:.2f}", r["unit"], str(r["best_of"]))
    console = Console()
    console.print(table)
    goal_table = Table(title="targets")
    for col in ("target", "measured", "goal", "met"):
        goal_table.add_column(col)
    for g in goals:
        goal_table.add_row(g["target"], f"{g['measured']:g}", g["goal"],
                           "yes" if g["met"] else "NO")
    console.print(goal_table)
    if report["ratios"]:
        ratio_table = Table(title="ratios")
        for col in ("ratio", "value"):
            ratio_table.add_column(col, justify="right" if col == "value" else "left")
        for r in report["ratios"]:
            ratio_table.add_row(r["ratio"], f"{r['value']:.2f}")
        console.print(ratio_table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
