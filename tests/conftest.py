"""Shared helpers: engines, guests built from assembly, the CLI as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spec.loader import GuestImage, rom_from_source

ROOT = Path(__file__).resolve().parent.parent
#: the installed ``hvmspec`` command, for tests that run it as a user would
HVMSPEC = str(Path(sys.executable).parent / "hvmspec")
ENGINES = ("reference", "impl")

#: the guest library (guests/lib/all.s: constants and macros, no code of its
#: own), then the first instructions: interrupts off, DS = CS (labels address
#: the ROM's data), ES = SS = 0, SP = 0x7000 (7 instructions)
PROLOGUE = """
%include "lib/all.s"
    real_mode_start rom_data=1, es=1
"""
#: ACPI S5 through PM1a_CNT (lib/poweroff.s); defines the label ``halt``
POWEROFF = """
    poweroff
"""


def guest(name: str, body: str, poweroff: bool = True) -> GuestImage:
    """A real-mode guest: set-up, ``body``, then ACPI power-off. The body
    may use the guest library's macros and constants (``pic_init``,
    ``ivt_set``, ``COM1``, ...: guests/lib/)."""
    source = PROLOGUE + body + (POWEROFF if poweroff else "")
    return GuestImage(name, rom_from_source(source, name), source)


def one_tick(name: str, body: str) -> GuestImage:
    """A guest with a tick of IRQ0 (vector 0x20, the only line unmasked)
    pending in the PIC when ``body`` starts: ``body`` runs with IF = 0,
    counting in BL, and ends with CLI; the tick's handler masks IRQ0 and
    prints ``i``; then BL is printed as a digit. The PIT is Xen 3.0.4's
    (spec/devices/pit.py): count 10 is a period of 0.9 ms, its floor, so the
    guest first polls IRR bit 0 (OCW3) until the tick is there."""
    return guest(name, """
    ivt_set 0x80, one_tick, es:
    pic_init master_mask=0xfe
    pit_init 10
    mov al, 0x0a                    ; OCW3: read IRR
    out 0x20, al
one_tick_wait:
    in al, 0x20
    test al, 1
    jz one_tick_wait
""" + body + """
    mov al, bl
    add al, '0'
    mov dx, COM1
    out dx, al
    jmp one_tick_done
one_tick:
    pic_mask 0xff
    pic_eoi
    mov al, 'i'
    mov dx, COM1
    out dx, al
    iret
one_tick_done:
""")


def run(engine: str, image: GuestImage, **kwargs):
    """A run of a small guest whose whole trace the test reads: it asks the
    engine to keep it (``keep_trace``; a run keeps none by default)."""
    from hvmspec.engines import runner
    return runner(engine)(image, **{"keep_trace": True, **kwargs})


def both(image: GuestImage, **kwargs):
    """Run on both engines (keeping their traces: :func:`run`) and insist
    that the traces are equal."""
    ref = run("reference", image, **kwargs)
    imp = run("impl", image, **kwargs)
    a = [e.to_json() for e in ref.trace]
    b = [e.to_json() for e in imp.trace]
    first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
    assert first is None, f"first divergence at {first}: {a[first]} != {b[first]}"
    assert len(a) == len(b)
    assert ref.exit == imp.exit
    assert ref.instructions == imp.instructions
    assert ref.picture == imp.picture, "the engines' last pictures differ"
    return ref


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``hvmspec`` in a subprocess, as a user would."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "hvmspec.cli", *args], capture_output=True,
                          text=True, cwd=cwd or ROOT, env=env, timeout=300)


def cli_json(*args: str):
    proc = cli(*args, "--json")
    return proc, json.loads(proc.stdout)


def peer(program: str) -> str:
    """The path of a peer program (a real client or machine that hvmspec is
    checked against). Missing: the test is skipped, or fails when
    ``HVMSPEC_REQUIRE_PEERS=1`` (as in CI, which installs the peers)."""
    path = shutil.which(program)
    if path is None:
        message = f"peer {program!r} is not installed"
        if os.environ.get("HVMSPEC_REQUIRE_PEERS") == "1":
            pytest.fail(message + " and HVMSPEC_REQUIRE_PEERS=1")
        pytest.skip(message)
    return path


def peer_file(path: str, package: str) -> str:
    """A file a Debian peer package installs (firmware); missing: skipped,
    or failed under ``HVMSPEC_REQUIRE_PEERS=1``, as :func:`peer`."""
    if not os.path.exists(path):
        message = f"{path} is not installed (Debian package {package})"
        if os.environ.get("HVMSPEC_REQUIRE_PEERS") == "1":
            pytest.fail(message + " and HVMSPEC_REQUIRE_PEERS=1")
        pytest.skip(message)
    return path


def peer_module(name: str):
    """A peer Python package (a client hvmspec is checked against), imported;
    missing: skipped, or failed under ``HVMSPEC_REQUIRE_PEERS=1``, as
    :func:`peer`."""
    import importlib
    try:
        return importlib.import_module(name)
    except ImportError:
        message = f"peer package {name!r} is not installed"
        if os.environ.get("HVMSPEC_REQUIRE_PEERS") == "1":
            pytest.fail(message + " and HVMSPEC_REQUIRE_PEERS=1")
        pytest.skip(message)


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    return request.param


def io_clock(events) -> list[int]:
    """The bus time (``io_ns``, spec/clock.py) charged before each event of a
    trace, worked out from the trace alone: a port access per element of each
    PIO ioreq the VMM completes, per access to Xen's PIC and per pass-through
    access; an MMIO access per element of each COPY ioreq completed. The
    virtual clock at an event with an ``icount`` is ``icount + io_clock[i]``."""
    from spec import platform, trace as t
    out, io = [], 0
    for e in events:
        out.append(io)
        if isinstance(e, t.IoreqTransition) and e.by == "vmm" and e.new == "NONE":
            if e.type in ("pio", "pci_config"):
                io += e.count * platform.PORT_ACCESS_NS
            elif e.type == "copy":
                io += e.count * platform.MMIO_ACCESS_NS
        elif isinstance(e, (t.XenIo, t.DirectIo)):
            io += platform.PORT_ACCESS_NS
    return out


#: modules that take longest, longest first (measured with --durations):
#: `make test` runs modules on every core (pytest-xdist, ``--dist loadfile
#: --no-loadscope-reorder``: in this order, not by their number of tests),
#: and a long module that starts last is the suite's tail
FIRST = ("test_linux_boot.py", "test_x86_differential.py", "test_dma.py", "test_docs.py",
         "test_proofs.py", "test_cli.py", "test_firmware_conform.py", "test_linux_qemu.py")


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        name = item.path.name
        return FIRST.index(name) if name in FIRST else len(FIRST)
    items.sort(key=rank)
