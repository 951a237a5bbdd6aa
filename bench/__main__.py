"""``make bench``: one table, every number measured in this run, side by side.

Rows:

* ``cpu-bound``: a guest loop of 3 instructions (add, dec, jnz) run for N
  iterations, then power-off: million guest instructions per second, for raw
  Unicorn (no hooks: the limit), the reference and the impl engine;
* ``port I/O round trip``: a guest doing N ``out`` to the UART scratch
  register: microseconds per round trip (guest instruction -> exit -> ioreq
  -> qemu-dm -> device -> resume), per engine, and a bare Unicorn
  ``UC_HOOK_INSN`` hook on the same loop as the limit;
* ``hello``: wall time of the demo guest per engine;
* ``dma peak memory``: the peak resident memory of ``hvmspec run dma``
  (impl engine, a 32-bit qemu-dm's mapcache) in a process of its own, for a
  guest of 4 GiB and one of 64 GiB: the guest touches the same memory, so
  the figure must not grow with the guest's size (guest memory is backed
  only where touched, and qemu-dm maps within its budget).

Each figure is the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import json
import platform as host
import time

from spec.loader import GuestImage, rom_from_source

POWEROFF = "mov dx, 0x1f44\n mov ax, 0x3c00\n out dx, ax\n hlt\n"


def cpu_guest(iterations: int) -> GuestImage:
    src = f"mov ecx, {iterations}\nloop_top:\n add eax, 3\n dec ecx\n jnz loop_top\n" + POWEROFF
    return GuestImage("cpu", rom_from_source(src, "cpu"))


def io_guest(iterations: int) -> GuestImage:
    src = (f"mov cx, {iterations}\n mov dx, 0x3ff\nio_top:\n out dx, al\n dec cx\n"
           " jnz io_top\n" + POWEROFF)
    return GuestImage("io", rom_from_source(src, "io"))


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
    # the power-off OUT (no hook) or the hook stops it
    uc.emu_start(0xFFF0, 0xFFFFF if not io_hook else 0, count=0 if io_hook else 0)
    return time.perf_counter() - started


def timed(engine: str, image: GuestImage, repeat: int) -> tuple[float, int]:
    from hvmspec.engines import runner
    best, instructions = float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        result = runner(engine)(image)
        best = min(best, time.perf_counter() - started)
        instructions = result.instructions
        assert result.exit["reason"] == "poweroff", result.exit
    return best, instructions


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


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cpu-iterations", type=int, default=300_000)
    parser.add_argument("--io-iterations", type=int, default=2_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from spec.loader import load

    rows = []
    cpu = cpu_guest(args.cpu_iterations)
    for engine in ("reference", "impl"):
        seconds, n = timed(engine, cpu, args.repeat)
        rows.append({"row": "cpu-bound", "engine": engine, "value": n / seconds / 1e6,
                     "unit": "MIPS"})
    raw = min(raw_unicorn(cpu, io_hook=True) for _ in range(args.repeat))
    rows.append({"row": "cpu-bound", "engine": "raw unicorn", "value": 3 * args.cpu_iterations
                 / raw / 1e6, "unit": "MIPS"})
    io = io_guest(args.io_iterations)
    for engine in ("reference", "impl"):
        seconds, _ = timed(engine, io, args.repeat)
        rows.append({"row": "port I/O round trip", "engine": engine,
                     "value": seconds / args.io_iterations * 1e6, "unit": "µs"})
    raw_io = min(raw_unicorn(io, io_hook=True) for _ in range(args.repeat))
    rows.append({"row": "port I/O round trip", "engine": "bare unicorn hook",
                 "value": raw_io / args.io_iterations * 1e6, "unit": "µs"})
    hello = load("hello")
    for engine in ("reference", "impl"):
        seconds, _ = timed(engine, hello, args.repeat)
        rows.append({"row": "hello wall time", "engine": engine, "value": seconds * 1e3,
                     "unit": "ms"})
    for memory in (4096, 65536):
        rss, mapcache = peak_memory(memory)
        rows.append({"row": f"dma peak memory, {memory >> 10} GiB guest", "engine": "impl",
                     "value": rss, "unit": f"MiB ({mapcache['evictions']} evictions)"})
    machine = f"{host.machine()} {host.processor() or ''} Python {host.python_version()}".strip()
    if args.json:
        print(json.dumps({"machine": machine, "rows": rows}))
        return 0
    from rich.console import Console
    from rich.table import Table
    table = Table(title=f"hvmspec bench ({machine}; best of {args.repeat})")
    for col in ("measure", "engine", "value", "unit"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for r in rows:
        table.add_row(r["row"], r["engine"], f"{r['value']:.2f}", r["unit"])
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
