"""Sphinx extension: the pages' material, produced from real runs at build time.

Room: documentation tooling. On ``builder-inited`` it writes into
``docs/_generated/`` (a build product, ignored by git):

``hello_trace.jsonl``
    the trace of the bundled ``hello`` guest on the reference engine, in the
    file format of :mod:`spec.trace` (what ``hvmspec run hello --engine
    reference --trace FILE`` writes);
``hello_sequence.svg``
    its sequence diagram (:mod:`hvmspec_seq`), drawn from that file;
``hello_trace_excerpt.rst``, ``hello_ioreqs.rst``, ``hello_summary.rst``
    tables of the first complete round trip, of the ioreqs as the VMM sent
    them, and of the whole trace;
``hello_run.json``, ``hello_disasm.txt``
    what ``hvmspec run hello --json`` prints, and the guest's ROM image
    disassembled where it is loaded;
``bench_table.rst``, ``bench_targets.rst``, ``bench_figures.rst``, ``bench_post.rst``
    the recorded ``make bench`` run (``docs/bench.json``) as tables, and
    every figure the performance page quotes as a substitution; its
    firmware POST rows side by side, with their ratios;
``post_timeline.rst``, ``post_totals.rst``
    rombios's POST timeline (``docs/post_timeline.json``, recorded by
    ``make timeline`` from a real run's trace) as a table;
``proofs_table.rst``, ``check.json``
    the output of ``hvmspec check --json`` (run as a subprocess, so it is
    exactly the CLI's answer) as a table, with every counterexample;
``guests_table.rst``, ``xm_configs.rst``
    the bundled guests and xm configurations, read from ``guests/``;
``cli_help_*.txt``
    each command's ``--help``.

Nothing is skipped silently: if the guest cannot be run or the proofs
cannot be checked, the build stops with the reason. A proof or mutant that
gives an unexpected result is a warning (an error under ``-W``): the site
never shows a failed proof as proved. Files are rewritten only when their
content changes, so an unchanged run does not make Sphinx re-read pages.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from sphinx.errors import ExtensionError
from sphinx.util import logging

import hvmspec_seq

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
GUEST = "hello"


def setup(app):
    app.connect("builder-inited", generate)
    app.connect("autodoc-process-docstring", _drop_dataclass_repr_doc)
    app.add_role("past", _past_role)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


def _drop_dataclass_repr_doc(app, what, name, obj, options, lines) -> None:
    """A dataclass without a docstring gets ``Name(field: 'type', ...)`` as
    its ``__doc__``; that is a signature (autodoc shows the real one), not
    prose, so it is dropped."""
    import dataclasses
    if (what == "class" and isinstance(obj, type) and dataclasses.is_dataclass(obj)
            and "__doc__" in vars(obj) and (obj.__doc__ or "").startswith(obj.__name__ + "(")):
        lines.clear()


def generate(app) -> None:
    out = Path(app.srcdir) / "_generated"
    out.mkdir(exist_ok=True)
    events, result = _hello_trace(out)
    _write(out / "hello_sequence.svg", hvmspec_seq.sequence_svg(
        events, title=f"{GUEST} on the reference engine: ioreq round trips"))
    _write(out / "hello_trace_excerpt.rst", _excerpt_rst(events))
    _write(out / "hello_ioreqs.rst", _ioreqs_rst(events))
    _write(out / "hello_summary.rst", _summary_rst(events, result))
    _write(out / "hello_run.json", json.dumps(result.summary(), indent=1) + "\n")
    _write(out / "hello_run.txt", _run_text(result))
    _write(out / "hello_disasm.txt", _disassembly())
    _write(out / "string_chunks.rst", _string_chunks_rst())
    _write(out / "platform_constants.rst", _platform_rst())
    _write(out / "x86_forms.rst", _x86_forms_rst())
    _write(out / "x86_deviations.rst", _x86_deviations_rst())
    _write_timer(out)
    _write_display(out)
    _write_screens(out)
    _write_mapcache(out)
    _write_devices(out)
    _write_balloon(out)
    _write_xenstore(out)
    _write_bundled(out)
    _write_xm_session(out)
    _write_divergence(out)
    _write_bench(out)
    _write_post_timeline(out)
    _write_os_timeline(out)
    _write_mutation(out)
    _write_proofs(out)
    _write_help(out)


def _write(path: Path, text: str) -> None:
    if path.exists() and path.read_text() == text:
        return
    path.write_text(text)


# --- the timer trace -----------------------------------------------------------------------

def _reference_run(name: str):
    """A bundled guest on the reference engine: (trace as JSON objects, result).
    A guest that cannot run or does not power off stops the build."""
    try:
        from hvmspec.engines import runner
        from spec.loader import load
        result = runner("reference")(load(name), keep_trace=True)
    except Exception as exc:   # noqa: BLE001 - any failure stops the build, with its cause
        raise ExtensionError(f"hvmspec docs: cannot run the {name!r} guest: "
                             f"{type(exc).__name__}: {exc}") from exc
    if result.exit.get("reason") != "poweroff":
        raise ExtensionError(f"hvmspec docs: the {name!r} guest did not power off: "
                             f"{result.exit}")
    return [e.to_json() for e in result.trace], result


def _write_timer(out: Path) -> None:
    """``timer_tick.svg`` and ``timer_injections.rst``: one tick of the
    ``timer`` guest drawn from its reference trace, and every injection."""
    events, result = _reference_run("timer")
    _write(out / "timer_tick.svg", hvmspec_seq.tick_svg(
        events, 2, title="timer on the reference engine: the second tick, from HLT to HLT"))
    rows = []
    previous = None
    for e in events:
        if e["kind"] != "inject":
            continue
        gap = "" if previous is None else str(e["icount"] - previous)
        rows.append([str(len(rows) + 1), f"{e['vector']:#x}", f"IRQ{e['irq']}",
                     str(e["icount"]), gap, f"{e['rip']:#x}"])
        previous = e["icount"]
    _write(out / "timer_injections.rst", _list_table(
        ["tick", "vector", "line", "icount", "since the last", "rip"], rows))


# --- the display ---------------------------------------------------------------------------

def _write_display(out: Path) -> None:
    """``demo_screen.png`` (the demo's final picture, as the reference's scanner drew it),
    ``demo_screen.txt``, and ``vga_updates.rst``: the vga guest's display
    updates with the log-dirty faults of each refresh period."""
    try:
        from hvmspec.display import Screen, write_png
        from hvmspec.engines import runner
        from spec.loader import load
        demo = runner("reference")(load("demo"), keep_trace=True)
        vga = runner("reference")(load("vga"), keep_trace=True)
    except Exception as exc:   # noqa: BLE001 - any failure stops the build, with its cause
        raise ExtensionError(f"hvmspec docs: cannot run the display guests: "
                             f"{type(exc).__name__}: {exc}") from exc
    for result in (demo, vga):
        if result.exit.get("reason") != "poweroff":
            raise ExtensionError(f"hvmspec docs: {result.guest} did not power off: {result.exit}")
    screen = Screen.from_trace(demo.trace)
    png = out / "demo_screen.png"
    write_png(png, *demo.picture)
    _write(out / "demo_screen.txt", screen.text() + "\n")
    events = [e.to_json() for e in vga.trace]
    rows, faults = [], []
    for e in events:
        if e["kind"] == "vmexit" and e["info"].get("p2m") == "logdirty":
            faults.append(f"{e['info']['gpa'] >> 12:#x}")
        elif e["kind"] == "display":
            changed = e["rows"]
            run = bool(changed) and changed == list(range(changed[0], changed[-1] + 1))
            span = (f"{changed[0]}–{changed[-1]}" if run and len(changed) > 2
                    else ", ".join(map(str, changed)))
            rows.append([str(len(rows) + 1), str(e["icount"]), span or "(cursor only)",
                         ", ".join(faults) or "—",
                         "off" if not e["cursor"] else f"{e['cursor'][0]}, {e['cursor'][1]}",
                         e["frame"]])
            faults = []
    head, tail = rows[:12], rows[-3:]
    gap = [["⋯", "", f"{len(rows) - 15} more updates", "", "", ""]] if len(rows) > 15 else []
    _write(out / "vga_updates.rst", _list_table(
        ["update", "icount", "changed rows", "log-dirty faults since the last (pfn)",
         "cursor", "frame"], head + gap + (tail if len(rows) > 15 else rows[12:])))


#: the graphics guest's screens the display page shows: (file stem, SCREEN, what)
_SCREENS = (("screen_text", 1, "text mode 3, its own font"),
            ("screen_12h", 2, "mode 12h, planar"),
            ("screen_13h", 3, "mode 13h, chain 4"),
            ("screen_vbe", 4, "VBE 640x480x32, linear frame buffer"))


def _write_screens(out: Path) -> None:
    """The graphics guest's four pictures as impl's scanner drew them, and
    ``screen_exits.rst``: what each cost in exits (planar writes trap,
    shared views do not)."""
    import tempfile
    try:
        from hvmspec.display import write_png
        from hvmspec.engines import runner
        from spec import trace
        from spec.loader import load, variant_source
        rows = []
        with tempfile.TemporaryDirectory(prefix="hvmspec-docs-") as folder:
            for stem, number, what in _SCREENS:
                source = Path(folder) / f"{stem}.s"
                source.write_text(variant_source("graphics", SCREEN=number))
                counts = [0, 0, 0]          # exits, MMIO exits, log-dirty faults

                def count(e, counts=counts) -> None:    # a counter sink
                    if isinstance(e, trace.VmExit):
                        counts[0] += 1
                        counts[1] += e.reason == "ept_violation" and "p2m" not in e.info
                        counts[2] += e.info.get("p2m") == "logdirty"
                result = runner("impl")(load(str(source)), max_instructions=50_000_000,
                                        listeners=[count])
                if result.picture is None or not result.picture[0]:
                    raise ExtensionError(f"hvmspec docs: graphics screen {number} drew nothing")
                write_png(out / f"{stem}.png", *result.picture)
                exits, mmio, dirty = counts
                width, height, _ = result.picture
                rows.append([what, f"{width}x{height}", f"{result.instructions:,}",
                             f"{exits:,}", f"{mmio:,}", f"{dirty:,}"])
    except ExtensionError:
        raise
    except Exception as exc:   # noqa: BLE001 - any failure stops the build, with its cause
        raise ExtensionError(f"hvmspec docs: cannot run the graphics guest: "
                             f"{type(exc).__name__}: {exc}") from exc
    _write(out / "screen_exits.rst", _list_table(
        ["screen", "picture", "instructions", "VM exits", "MMIO exits (trapped VGA accesses)",
         "log-dirty faults"], rows))


# --- the mapcache ---------------------------------------------------------------------------

#: a real-mode guest whose ``rep outsb`` reads from buckets 1 2 3 4 5 1 2 6
_WALK = "cli\n mov sp, 0x7000\n" + "".join(f"""
    mov ax, {b * 0x1000:#x}
    mov ds, ax
    mov word ptr [0x10], {0x0A30 + b:#x}
    mov si, 0x10
    mov cx, 2
    mov dx, 0x3f8
    rep outsb
""" for b in (1, 2, 3, 4, 5, 1, 2, 6)) + "mov dx, 0x1f44\n mov ax, 0x3c00\n out dx, ax\n hlt\n"


def _write_mapcache(out: Path) -> None:
    """``mapcache_walk.rst``: a guest's string I/O through a mapcache of
    three windows, from its reference trace: each data_is_ptr ioreq, and
    what qemu-dm's mapcache did for it."""
    try:
        from hvmspec.engines import runner
        from spec.loader import GuestImage, rom_from_source
        image = GuestImage("walk", rom_from_source(_WALK, "walk"), _WALK)
        result = runner("reference")(image, device_model={"mapcache_budget": 3 << 16},
                                     keep_trace=True)
    except Exception as exc:   # noqa: BLE001 - any failure stops the build, with its cause
        raise ExtensionError(f"hvmspec docs: cannot run the mapcache walk: "
                             f"{type(exc).__name__}: {exc}") from exc
    events = [e.to_json() for e in result.trace]
    rows, request = [], None
    for e in events:
        if e["kind"] == "ioreq" and e["new"] == "READY" and e["data_is_ptr"]:
            request = e
        elif e["kind"] == "mapcache_miss" and request is not None:
            evicted = "—" if e["evicted"] < 0 else f"{e['evicted']:#x}"
            rows.append([str(len(rows) + 1), f"{request['data']:#x}", "miss",
                         f"{e['bucket']:#x}", evicted, f"{e['mapped'] >> 10} KiB"])
            request = None
        elif e["kind"] == "device_io" and request is not None:
            rows.append([str(len(rows) + 1), f"{request['data']:#x}", "hit",
                         f"{request['data'] & ~0xFFFF:#x}", "—", ""])
            request = None
    _write(out / "mapcache_walk.rst", _list_table(
        ["ioreq", "guest buffer (data)", "mapcache", "bucket", "evicted", "mapped after"],
        rows))


def _write_devices(out: Path) -> None:
    """``platform_rtc.svg``: the ``platform`` guest's first RTC periodic
    interrupt, from the HLT before it to the HLT after the handler."""
    events, _ = _reference_run("platform")
    inject = next(i for i, e in enumerate(events) if e["kind"] == "inject" and e["irq"] == 8)
    start = max(i for i in range(inject) if events[i]["kind"] == "vmexit"
                and events[i]["reason"] == "hlt")
    end = next(i for i in range(inject, len(events)) if events[i]["kind"] == "vmexit"
               and events[i]["reason"] == "hlt")
    _write(out / "platform_rtc.svg", hvmspec_seq.window_svg(
        events, start, end, "platform on the reference engine: one RTC periodic interrupt"))


def _write_xenstore(out: Path) -> None:
    """``xenstore_tree.txt``: the store after xend created the demo domain
    from ``guests/configs/demo.cfg`` (as ``xenstore-ls -p`` prints it);
    ``xenstore_create.rst``: every XenStore operation of that creation;
    ``xenstore_poweroff.rst``: the power-off of ``hello``, from the guest's
    write to PM1a to xend's last step, from its reference trace."""
    from spec.machine import ReferenceXen
    from spec.xm_config import parse
    from spec.xenstore.store import walk
    events: list = []
    host = ReferenceXen(None, events.append)
    host.xend.create(parse((ROOT / "guests/configs/demo.cfg").read_text(), "demo.cfg"),
                     paused=True)
    store = host.dom0.store
    lines = []
    for name in walk(store):
        if name == "/":
            continue
        node = store.nodes[name]
        depth = name.count("/") - 1
        shown = f"{' ' * depth}{name.rsplit('/', 1)[1]} = \"{node.value}\""
        lines.append(f"{shown:<58} ({','.join(str(p) for p in node.acl)})")
    _write(out / "xenstore_tree.txt", "\n".join(lines) + "\n")
    rows = [(e.client, e.op, e.path, e.value) for e in events
            if e.kind in ("xenstore",)]
    table = [".. list-table::", "   :header-rows: 1", "   :widths: 8 14 50 28", "",
             "   * - client", "     - operation", "     - path", "     - value"]
    for client, op, path, value in rows:
        table += [f"   * - {client}", f"     - {op}", f"     - ``{path}``" if path else "     -",
                  f"     - ``{value}``" if value else "     -"]
    _write(out / "xenstore_create.rst", "\n".join(table) + "\n")
    hello, _ = _reference_run("hello")
    start = next(i for i, e in enumerate(hello) if e["kind"] == "shutdown")
    start = max(i for i in range(start) if hello[i]["kind"] == "vmexit")
    table = [".. list-table::", "   :header-rows: 1", "   :widths: 6 12 82", "",
             "   * - event", "     - kind", "     - what happened"]
    for i in range(start, len(hello)):
        e = hello[i]
        detail = ", ".join(f"{k}={v}" for k, v in e.items() if k != "kind")
        table += [f"   * - {i}", f"     - ``{e['kind']}``", f"     - {detail}"]
    _write(out / "xenstore_poweroff.rst", "\n".join(table) + "\n")


def guest_summary(name: str) -> str:
    """What a bundled guest does: the first paragraph of the comment that
    opens its source (``; name: what it does``), without the name."""
    from spec.loader import GUESTS_DIR
    words = []
    for line in (GUESTS_DIR / f"{name}.s").read_text().splitlines():
        if not line.startswith(";") or not line.lstrip(";").strip():
            break
        words.append(line.lstrip(";").strip())
    text = " ".join(words)
    prefix = f"{name}:"
    return text[len(prefix):].strip() if text.startswith(prefix) else text


def _rst_inline(text: str) -> str:
    """Source-comment text for reStructuredText: ```x``` becomes a literal."""
    import re
    parts = re.split(r"`([^`]+)`", text)
    return "".join(f"``{part}``" if k % 2 else _rst_escape(part) for k, part in enumerate(parts))


def guests_markdown() -> str:
    """The README's table of bundled guests, from ``guests/*.s`` (the README
    is not built, so a test holds it to this)."""
    from spec.loader import bundled_guests
    lines = ["| guest | what it does |", "|---|---|"]
    lines += [f"| `{name}` | {guest_summary(name)} |" for name in bundled_guests()]
    return "\n".join(lines) + "\n"


def _write_bundled(out: Path) -> None:
    """``guests_table.rst``: every bundled guest (``guests/*.s``) with what
    it does and its xm configuration; ``xm_configs.rst``: every bundled
    configuration (``guests/configs/*.cfg``) as :mod:`spec.xm_config` parses
    it. Both are read from the files, so a guest or configuration added is
    listed without editing a page."""
    from spec.loader import GUESTS_DIR, bundled_guests
    from spec.xm_config import parse
    configs = sorted((GUESTS_DIR / "configs").glob("*.cfg"))
    rows = []
    for name in bundled_guests():
        cfg = GUESTS_DIR / "configs" / f"{name}.cfg"
        rows.append([_lit(name), _rst_inline(guest_summary(name)),
                     _lit(f"configs/{cfg.name}") if cfg.exists() else "—"])
    _write(out / "guests_table.rst", f"{len(rows)} bundled guests, from ``guests/``.\n\n"
           + _list_table(["guest", "what it does", "xm configuration"], rows,
                         widths="12 68 20"))
    rows = []
    # a disk hvmspec builds (file:@linux.iso) is listed without building it:
    # an empty CD-sized stand-in takes its place for the parse
    import tempfile
    from hvmspec.linux_iso import resolve_artifacts
    stand_in = Path(tempfile.mkdtemp()) / "built.iso"
    stand_in.write_bytes(bytes(2048))
    for path in configs:
        try:
            text = resolve_artifacts(path.read_text(), str(path),
                                     path_of=lambda name: str(stand_in))
            c = parse(text, str(path.relative_to(ROOT)))
        except Exception as exc:   # noqa: BLE001 - a bundled file that does not parse stops the build
            raise ExtensionError(f"hvmspec docs: {path}: {exc}") from exc
        rows.append([_lit(path.name), _lit(c.name), _lit(c.kernel), str(c.memory_mib),
                     str(c.vcpus), f"{c.on_poweroff} / {c.on_reboot} / {c.on_crash}"])
    _write(out / "xm_configs.rst", _list_table(
        ["file", "name", "kernel", "memory (MiB)", "vcpus",
         "on_poweroff / on_reboot / on_crash"], rows, widths="16 12 12 12 8 40"))


def _write_xm_session(out: Path) -> None:
    """``xm_session.txt``: a real session: ``hvmspec xend`` started in a
    fresh directory, then xm create, list, unpause, the guest's own
    power-off, a rebooting guest and xm history, each command with what it
    printed."""
    import tempfile
    import time
    hvmspec = str(Path(sys.executable).parent / "hvmspec")
    with tempfile.TemporaryDirectory() as where:
        daemon = subprocess.Popen([hvmspec, "xend", "--dir", where, "--json"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True, cwd=ROOT)
        transcript: list[str] = []
        try:
            daemon.stdout.readline()

            def xm(*args: str) -> str:
                proc = subprocess.run([hvmspec, "xm", "--dir", where, *args], cwd=ROOT,
                                      capture_output=True, text=True, timeout=120)
                if proc.returncode != 0:
                    raise ExtensionError(f"hvmspec docs: xm {' '.join(args)}: {proc.stderr}")
                transcript.append(f"$ hvmspec xm {' '.join(args)}\n{proc.stdout}")
                return proc.stdout

            def until_gone(name: str) -> None:
                for _ in range(600):
                    if f"\n{name} " not in "\n" + subprocess.run(
                            [hvmspec, "xm", "--dir", where, "list"], capture_output=True,
                            text=True).stdout:
                        return
                    time.sleep(0.1)
                raise ExtensionError(f"hvmspec docs: domain {name} did not go away")

            xm("create", "-p", "guests/configs/demo.cfg")
            xm("list")
            xm("unpause", "demo")
            until_gone("demo")
            transcript.append("(the guest powers itself off: ACPI S5)\n")
            xm("list")
            xm("create", "guests/configs/reboot.cfg")
            until_gone("reboot")
            transcript.append("(the guest resets through the 8042, twice)\n")
            xm("history")
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
    _write(out / "xm_session.txt", "\n".join(transcript))


def _write_divergence(out: Path) -> None:
    """``divergence.txt`` and ``reproducer.json``: ``hvmspec conform
    --impl`` on a deliberately wrong implementation (``broken_impl.py``):
    its report's first divergence and the minimal reproducer it wrote."""
    import tempfile
    hvmspec = str(Path(sys.executable).parent / "hvmspec")
    broken = Path(__file__).with_name("broken_impl.py")
    with tempfile.TemporaryDirectory() as where:
        proc = subprocess.run([hvmspec, "conform", "--impl", f"{sys.executable} {broken}",
                               "--reproducers", where], capture_output=True, text=True,
                              cwd=ROOT, timeout=600)
        if proc.returncode != 1:
            raise ExtensionError(f"hvmspec docs: the broken implementation conformed? "
                                 f"{proc.returncode} {proc.stderr[-500:]}")
        lines = proc.stdout.splitlines()
        start = next(i for i, line in enumerate(lines) if "DIVERGED" in line)
        end = next(i for i in range(start + 1, len(lines)) if "minimal reproducer" in lines[i])
        report = [lines[0], *lines[start:end + 1], "...", lines[-1]]
        repro = Path(lines[end].split(": ", 1)[1])
        _write(out / "divergence.txt", "\n".join(report).replace(where, "DIR") + "\n")
        _write(out / "reproducer.json", repro.read_text())


POST_TIMELINE = ROOT / "docs" / "post_timeline.json"
OS_TIMELINE = ROOT / "docs" / "os_timeline.json"


def _counts(d: dict, most: int = 4) -> str:
    items = list(d.items())
    text = ", ".join(f"{k} {v:,}" for k, v in items[:most])
    return text + (f", {len(items) - most} more" if len(items) > most else "")


def _timeline_table(report: dict, first: str, per_second: bool = False) -> list[str]:
    """A recorded timeline (:mod:`hvmspec.timeline`) as a list-table: each
    phase's end, instructions, VM exits, devices and interrupts (with
    ``per_second``, each IRQ line's rate over the phase's virtual time)."""
    lines = [".. list-table::", "   :header-rows: 1", "   :widths: 34 12 16 22 16", "",
             f"   * - {first}", "     - instructions", "     - VM exits",
             "     - devices (accesses)", "     - interrupts"]
    for p in report["phases"]:
        line = p["line"].strip() if p["line"] is not None else "(end of the run)"
        port = f" ({p['port']:#x})" if p["port"] is not None else ""
        seconds = (p["end"] - p["start"]) / 1e9
        irqs = p["irqs"]
        if per_second and irqs and seconds > 0:
            irqs = {k: f"{v / seconds:,.0f}/s" for k, v in irqs.items()}
            irq_text = "IRQ " + ", ".join(f"{k} {v}" for k, v in irqs.items())
        else:
            irq_text = f"IRQ {_counts(irqs)}" if irqs else ""
        ints = "; ".join(x for x in (
            irq_text, f"INT {_counts(p['services'])}" if p["services"] else "",
            f"halted {p['idle_ns'] / 1e9:.2f} s" if p["idle_ns"] else "") if x)
        lines += [f"   * - ``{line.replace('`', chr(39))}``{port}",
                  f"     - {p['instructions']:,}", f"     - {_counts(p['exits']) or '-'}",
                  f"     - {_counts(p['devices']) or '-'}", f"     - {ints or '-'}"]
    return lines


def _write_post_timeline(out: Path) -> None:
    """``post_timeline.rst`` and ``post_totals.rst``: the recorded POST
    timeline (:mod:`hvmspec.timeline`). Recording runs the firmware, which
    needs Debian's ``bochsbios``; the build renders the recorded run, and
    ``tests/test_timeline.py`` checks the record against a fresh run."""
    report = json.loads(POST_TIMELINE.read_text())
    lines = _timeline_table(report, "then logged")
    _write(out / "post_timeline.rst", "\n".join(lines) + "\n")
    t = report["totals"]
    _write(out / "post_totals.rst", "".join(
        f".. |post-{k}| replace:: {v}\n" for k, v in {
            "command": f"``{report['command']}``",
            "instructions": f"{t['instructions']:,}", "icount": f"{t['icount']:,}",
            "halted": f"{t['idle_ns'] / 1e9:.2f} s", "lines": str(t["lines"]),
            "exits": f"{sum(t['exits'].values()):,}", "exit-kinds": _counts(t["exits"], 9),
            "devices": _counts(t["devices"], 20), "irqs": _counts(t["irqs"]),
            "services": _counts(t["services"], 9)}.items()))


def _write_os_timeline(out: Path) -> None:
    """``os_timeline.rst`` and ``os_totals.rst``: the recorded boot of the
    Linux CD (``make os-timeline``: :func:`hvmspec.timeline.record_os`),
    cut where the firmware, the boot loader, the kernel and init hand
    over; interrupts as rates over each phase's virtual time."""
    report = json.loads(OS_TIMELINE.read_text())
    _write(out / "os_timeline.rst",
           "\n".join(_timeline_table(report, "until", per_second=True)) + "\n")
    t = report["totals"]
    virtual = t["icount"] / 1e9
    mapcache = t.get("mapcache", {"hits": 0, "misses": 0, "bucket_size": 0})
    dma = {k: v for k, v in t["devices"].items() if k.startswith("ide")}
    _write(out / "os_totals.rst", "".join(
        f".. |os-{k}| replace:: {v}\n" for k, v in {
            "command": f"``{report['command']}``",
            "seconds": f"{report['seconds']:,.0f} s",
            "instructions": f"{t['instructions']:,}", "icount": f"{t['icount']:,}",
            "virtual": f"{virtual:.2f} s", "halted": f"{t['idle_ns'] / 1e9:.2f} s",
            "mips": f"{t['instructions'] / report['seconds'] / 1e6:.1f}",
            "exits": f"{sum(t['exits'].values()):,}", "exit-kinds": _counts(t["exits"], 9),
            "ioreqs": _counts({k: v for k, v in t["devices"].items()
                               if k not in ("vpic", "vpit", "vrtc", "pmtimer")
                               and not k.startswith("port ")}, 12),
            "xen-devices": _counts({k: v for k, v in t["devices"].items()
                                    if k in ("vpic", "vpit", "vrtc", "pmtimer")}),
            "direct": _counts({k: v for k, v in t["devices"].items() if k.startswith("port ")}),
            "ide": _counts(dma),
            "irqs": ", ".join(f"IRQ {k} {v / virtual:,.1f}/s ({v:,})"
                              for k, v in t["irqs"].items()),
            "mapcache-hits": f"{mapcache['hits']:,}", "mapcache-misses": f"{mapcache['misses']:,}",
            "mapcache-bucket": f"{mapcache['bucket_size'] // 1024} KiB",
            "kernel": next((f"{k[len('linux-image-'):]} ({v})" for k, v in
                            report["versions"].items() if k.startswith("linux-image-")), "?"),
            "exit": report["exit"]["reason"]}.items()))


MUTATION = ROOT / "docs" / "mutation.json"


def _write_mutation(out: Path) -> None:
    """``mutation.rst``: the recorded ``make mutate`` campaign
    (:mod:`hvmspec.mutation`): the score per module, and every survivor
    grouped by the reason it survives. A module whose source changed since
    it was recorded is marked so (recording takes hours; the page says what
    the numbers are about)."""
    import hashlib
    report = json.loads(MUTATION.read_text())
    lines = [".. list-table::", "   :header-rows: 1", "   :widths: 22 22 10 10 10 10 10", "",
             "   * - module", "     - checked by", "     - mutants", "     - killed",
             "     - of which timeout", "     - survived", "     - score"]
    stale = []
    for m in report["modules"]:
        c = m["counts"]
        now = hashlib.sha256((ROOT / m["module"]).read_bytes()).hexdigest()
        if now != m.get("source_sha256"):
            stale.append(m["module"])
        lines += [f"   * - ``{m['module']}``", f"     - {', '.join(m['groups'])}",
                  f"     - {m['mutants']:,}", f"     - {m['killed']:,}",
                  f"     - {c.get('timeout', 0)}",
                  f"     - {c.get('survived', 0) + c.get('error', 0)}",
                  f"     - {100 * m['score']:.1f} %"]
    lines += [f"   * - all recorded", "     -", f"     - {report['mutants']:,}",
              f"     - {report['killed']:,}", "     -",
              f"     - {len(report['survivors'])}", f"     - {100 * report['score']:.1f} %",
              ""]
    if stale:
        lines += ["Changed since recorded (the numbers are those of the earlier source): "
                  + ", ".join(f"``{m}``" for m in stale) + ".", ""]
    missing = [m for m in _targets() if m not in {x["module"] for x in report["modules"]}]
    if missing:
        lines += ["Not recorded yet: " + ", ".join(f"``{m}``" for m in missing) + ".", ""]
    groups: dict[str, list[dict]] = {}
    for sv in report["survivors"]:
        groups.setdefault(sv["why"] or "Not explained yet.", []).append(sv)
    for why, members in groups.items():
        lines += [f"* {why}", ""]
        for sv in members:
            lines += [f"  - ``{sv['module']}:{sv['line']}`` ``{sv['function']}``: "
                      f"{_rst_literal(sv['before'])} → {_rst_literal(sv['after'])}"]
        lines.append("")
    _write(out / "mutation.rst", "\n".join(lines) + "\n")


def _targets() -> list[str]:
    from hvmspec.mutation import TARGETS
    return list(TARGETS)


def _rst_literal(text: str) -> str:
    """A line of code as an inline literal (a removed line: *nothing*)."""
    text = " ".join(text.split()).strip(" /")
    if not text:
        return "*nothing*"
    text = (text[:90] + " ...") if len(text) > 94 else text
    return "``" + text.replace("``", "` `") + "``"


BENCH = ROOT / "docs" / "bench.json"


def _write_bench(out: Path) -> None:
    """``bench_table.rst``, ``bench_targets.rst`` and ``bench_figures.rst``:
    the last ``make bench`` (``docs/bench.json``, written by ``python -m
    bench --write``), with the machine and date it ran on, and every figure
    the performance page's prose quotes, as substitutions
    (:func:`bench_figures`). Measuring takes minutes, so the build renders
    the recorded run instead of measuring."""
    report = json.loads(BENCH.read_text())
    _write(out / "bench_table.rst", bench_table_rst(report))
    lines = [".. list-table::", "   :header-rows: 1", "",
             "   * - target", "     - measured", "     - goal", "     - met"]
    for t in report["targets"]:
        lines += [f"   * - {t['target']}", f"     - {t['measured']:g}", f"     - {t['goal']}",
                  f"     - {'yes' if t['met'] else '**no**'}"]
    _write(out / "bench_targets.rst", "\n".join(lines) + "\n")
    _write(out / "bench_figures.rst", "".join(
        f".. |{name}| replace:: {value}\n" for name, value in bench_figures(report).items()))
    _write(out / "bench_post.rst", bench_post_rst(report))


#: the POST rows' firmware, as the bench names them (:data:`bench.__main__.POST`)
POST_ROWS = ("rombios POST", "SeaBIOS POST")


def bench_post_rst(report: dict) -> str:
    """The firmware POST rows of a ``make bench`` run side by side: wall
    time on each engine and on QEMU, the ratios to impl, the instructions
    the guest executed and each engine's speed. A run recorded before the
    bench measured POST says so."""
    rows = {(r["row"], r["engine"]): r for r in report["rows"]}
    present = [s for s in POST_ROWS if (f"{s} wall time", "impl") in rows]
    if not present:
        return ("The recorded run has no POST rows: it was made before ``make bench`` "
                "measured them (``python -m bench --only POST`` measures them alone).\n")
    lines = [".. list-table::", "   :header-rows: 1", "",
             "   * - firmware", "     - impl (s)", "     - reference (s)", "     - QEMU (s)",
             "     - reference / impl", "     - QEMU / impl", "     - instructions executed",
             "     - impl (MIPS)", "     - reference (MIPS)"]
    for section in present:
        wall = {e: rows[(f"{section} wall time", e)]["value"]
                for e in ("impl", "reference", "qemu")}
        speed = {e: rows[(f"{section} speed", e)]["value"] for e in ("impl", "reference")}
        executed = rows[(f"{section} wall time", "impl")].get("executed")
        lines += [f"   * - {section.removesuffix(' POST')}", f"     - {wall['impl']:.2f}",
                  f"     - {wall['reference']:.2f}", f"     - {wall['qemu']:.2f}",
                  f"     - {wall['reference'] / wall['impl']:.1f}",
                  f"     - {wall['qemu'] / wall['impl']:.2f}",
                  f"     - {executed:,}" if executed is not None else "     - ",
                  f"     - {speed['impl']:.2f}", f"     - {speed['reference']:.3f}"]
    return "\n".join(lines) + "\n"


def machine_line(report: dict) -> str:
    """The machine a run measured, with its CPU model; a file from before
    the model was recorded says so rather than leave it out."""
    import re
    line = re.sub(r"\s+,", ",", report["machine"]).strip(" ,")
    if report.get("cpu"):
        return line
    arch, _, rest = line.partition(", ")
    return f"{arch}, CPU model not recorded" + (f", {rest}" if rest else "")


def row_best_of(report: dict, row: dict) -> int:
    """How many runs a row is the best of: what the row records, or, in a
    file from before rows recorded it, what :func:`bench.__main__.best_of`
    gives for the run's ``--repeat``."""
    if "best_of" in row:
        return row["best_of"]
    from bench.__main__ import best_of
    return best_of(row["row"], row["engine"], report["repeat"])


def bench_table_rst(report: dict) -> str:
    lines = [f"Measured on {machine_line(report)}, {report['date']}. Each figure is the "
             "best of as many runs as its row says.", "", ".. list-table::",
             "   :header-rows: 1", "",
             "   * - measure", "     - engine", "     - value", "     - unit", "     - best of"]
    for r in report["rows"]:
        lines += [f"   * - {r['row']}", f"     - {r['engine']}", f"     - {r['value']:.2f}",
                  f"     - {r['unit']}", f"     - {row_best_of(report, r)}"]
    return "\n".join(lines) + "\n"


def _sig(x: float, digits: int = 3) -> str:
    """``x`` to ``digits`` significant digits (a whole number has all its
    digits), with thousands separators."""
    from math import floor, log10
    if x == 0:
        return "0"
    places = digits - 1 - floor(log10(abs(x)))
    if places < 0 and abs(x) >= 10 ** digits and digits > 2:
        places = 0
    return f"{round(x, places):,.{max(places, 0)}f}"


def bench_figures(report: dict) -> dict[str, str]:
    """Every figure that the performance page's prose quotes, by the name of
    its substitution, from one ``make bench`` run: measurements to three
    significant digits, ratios to two. A row or target the page needs that
    the run lacks stops the build."""
    import re
    rows = {(r["row"], r["engine"]): r for r in report["rows"]}
    goals = {t["target"]: t for t in report["targets"]}

    def value(row: str, engine: str) -> float:
        try:
            return rows[(row, engine)]["value"]
        except KeyError:
            raise ExtensionError(f"hvmspec docs: docs/bench.json has no row {row!r} for "
                                 f"{engine!r}; the performance page quotes it") from None

    def target(name: str) -> dict:
        try:
            return goals[name]
        except KeyError:
            raise ExtensionError(f"hvmspec docs: docs/bench.json has no target {name!r}; "
                                 "the performance page quotes it") from None

    def goal(name: str) -> float:
        return float(re.sub(r"^[<>=\s]+", "", target(name)["goal"]))

    def g(x: float) -> str:
        return f"{x:g}"

    cores = re.search(r"(\d+) cores", report["machine"])
    cpu = target("impl CPU-bound speed / raw Unicorn")
    rt = target("impl port I/O round trip / bare hook")
    io_up = target("impl speed-up over reference, port I/O round trip")
    check = target("hvmspec check seconds")
    dma = target("dma peak memory, 64 GiB / 4 GiB guest")
    hook = value("port I/O round trip", "bare unicorn hook")
    io_ref = value("port I/O round trip", "reference")
    return {
        "machine": machine_line(report),
        "cores": f"{cores.group(1)} cores" if cores else "an unrecorded number of cores",
        "date": report["date"],
        "cpu-turns": str(row_best_of(report, rows[("cpu-bound", "impl")])),
        "cpu-ref": _sig(value("cpu-bound", "reference"), 2),
        "cpu-impl": _sig(value("cpu-bound", "impl")),
        "cpu-raw": _sig(value("cpu-bound", "raw unicorn")),
        "cpu-ratio": _sig(cpu["measured"], 2),
        "cpu-goal": g(goal(cpu["target"])),
        "cpu-met": "met" if cpu["met"] else "missed",
        "cpu-speedup": _sig(value("cpu-bound", "impl") / value("cpu-bound", "reference"), 2),
        "io-impl": _sig(value("port I/O round trip", "impl")),
        "io-ref": _sig(io_ref),
        "io-hook": _sig(hook, 2),
        "io-ratio": _sig(rt["measured"], 2),
        "io-goal": g(goal(rt["target"])),
        "io-goal-us": _sig(goal(rt["target"]) * hook, 2),
        "io-met": "met" if rt["met"] else "missed",
        "io-speedup": _sig(io_up["measured"], 2),
        "mmio-impl": _sig(value("MMIO RMW round trip", "impl")),
        "mmio-speedup": _sig(target("impl speed-up over reference, MMIO RMW round trip")
                             ["measured"], 2),
        "outsb-speedup": _sig(target("impl speed-up over reference, rep outsb")["measured"], 2),
        "speedup-goal": g(goal(io_up["target"])),
        "speedup-met": ("met" if all(t["met"] for t in report["targets"]
                                     if t["target"].startswith("impl speed-up")) else "missed"),
        "io-ref-goal": _sig(io_ref / goal(io_up["target"]), 2),
        "demo-ref": _sig(value("demo wall time", "reference")),
        "demo-impl": _sig(value("demo wall time", "impl")),
        "demo-speedup": _sig(value("demo wall time", "reference")
                             / value("demo wall time", "impl"), 2),
        "check-s": _sig(value("hvmspec check", "proofs")),
        "check-goal": g(goal(check["target"])),
        "check-met": "met" if check["met"] else "missed",
        "dma-4": _sig(value("dma peak memory, 4 GiB guest", "impl")),
        "dma-64": _sig(value("dma peak memory, 64 GiB guest", "impl")),
        "dma-ratio": _sig(dma["measured"], 3),
        "dma-goal": g(goal(dma["target"])),
        "dma-met": "met" if dma["met"] else "missed",
    }


def _past_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    """``:past:`0.40 MIPS``` : a figure of an earlier measurement, quoted as
    history (the prose around it says when, or of what). It renders as plain
    text; it marks the figure as one that ``make bench`` does not
    re-measure, so that the page's test lets it stand."""
    from docutils import nodes
    return [nodes.inline(rawtext, text, classes=["past"])], []


def _write_balloon(out: Path) -> None:
    """``balloon_invalidate.svg``: the ``balloon`` guest's first
    decrease_reservation, from its VMCALL exit to the VM entry after the
    invalidation; ``balloon_calls.rst``: every hypercall it made."""
    events, _ = _reference_run("balloon")
    start = next(i for i, e in enumerate(events)
                 if e["kind"] == "vmexit" and e["reason"] == "vmcall")
    end = next(i for i in range(start, len(events)) if events[i]["kind"] == "vmentry")
    _write(out / "balloon_invalidate.svg", hvmspec_seq.window_svg(
        events, start, end, "balloon on the reference engine: memory given back, "
                            "the mapcache invalidated"))
    rows = []
    for i, e in enumerate(events):
        if e["kind"] != "hypercall":
            continue
        invalidated = any(x["kind"] == "mapcache_invalidate" for x in events[i:i + 8])
        rows.append([str(i), e["name"] or str(e["number"]), f"{e['args'][0]:#x}",
                     f"{e['args'][1]:#x}", str(e["result"]), "yes" if invalidated else "no"])
    _write(out / "balloon_calls.rst", _list_table(
        ["event", "hypercall", "1st argument (cmd)", "2nd argument", "result (EAX)",
         "invalidate sent"], rows))


# --- the hello trace -----------------------------------------------------------------------

def _hello_trace(out: Path):
    """Run the guest on the reference engine, write the trace file, and read
    it back through :func:`spec.trace.load` (so the pages are drawn from the
    file format, validated)."""
    try:
        from hvmspec.engines import runner
        from spec import trace
        from spec.loader import load
        image = load(GUEST)
        result = runner("reference")(image, keep_trace=True)
    except Exception as exc:   # noqa: BLE001 - any failure stops the build, with its cause
        raise ExtensionError(f"hvmspec docs: cannot run the {GUEST!r} guest on the reference "
                             f"engine to produce its trace: {type(exc).__name__}: {exc}") from exc
    if result.exit.get("reason") != "poweroff":
        raise ExtensionError(f"hvmspec docs: the {GUEST!r} guest did not power off on the "
                             f"reference engine: {result.exit}")
    buffer = io.StringIO()
    trace.dump(result.trace, buffer)
    text = buffer.getvalue()
    _write(out / "hello_trace.jsonl", text)
    with open(out / "hello_trace.jsonl") as stream:
        loaded = trace.load(stream)
    if [e.to_json() for e in loaded] != [e.to_json() for e in result.trace]:
        raise ExtensionError("hvmspec docs: the trace does not survive its JSON-lines file")
    events = [json.loads(line) for line in text.splitlines()]
    for needed in ("IORESP_READY",):
        if not any(e.get("new") == needed for e in events):
            raise ExtensionError(f"hvmspec docs: the {GUEST!r} trace has no {needed} transition")
    return events, result


# --- reStructuredText helpers ------------------------------------------------------------------

def _list_table(headers: list[str], rows: list[list[str]], widths: str | None = None,
                caption: str = "", classes: str = "", align: str = "") -> str:
    lines = [f".. list-table::{' ' + caption if caption else ''}", "   :header-rows: 1"]
    if align:
        lines.append(f"   :align: {align}")
    if widths:
        lines.append(f"   :widths: {widths}")
    if classes:
        lines.append(f"   :class: {classes}")
    lines.append("")
    for row in [headers] + rows:
        for k, cell in enumerate(row):
            lines.append(f"   {'* -' if k == 0 else '  -'} {cell if cell else ' '}")
    return "\n".join(lines) + "\n"


def _lit(value: object) -> str:
    text = str(value)
    return f"``{text}``" if text else ""


def _fields(event: dict) -> str:
    """The fields of an event but its kind, compactly, numbers in hex where
    Xen's sources write them so."""
    hexed = {"addr", "data", "rip"}
    parts = []
    for key, value in event.items():
        if key in ("kind",):
            continue
        if key == "info" and isinstance(value, dict):
            value = "{" + ", ".join(f"{k}: {_short(k, v)}" for k, v in value.items()) + "}"
        elif key in hexed and isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:#x}"
        parts.append(f"``{key}={value}``")
    return " ".join(parts)


def _short(key: str, value: object) -> str:
    if key in ("port", "qualification") and isinstance(value, int) and not isinstance(value, bool):
        return f"{value:#x}"
    return json.dumps(value)


def _first_round_trip(events: list[dict]) -> tuple[int, int]:
    """Indices [start, end] of the first complete round trip: the first VM
    exit through the VM entry that resumes the guest after it."""
    start = next(i for i, e in enumerate(events) if e["kind"] == "vmexit")
    end = next(i for i in range(start + 1, len(events)) if events[i]["kind"] == "vmentry")
    return start, end


def _excerpt_rst(events: list[dict]) -> str:
    start, end = _first_round_trip(events)
    rows = [[str(i), _lit(events[i]["kind"]), hvmspec_seq.party(events[i]), _fields(events[i])]
            for i in range(start, end + 1)]
    head = (f"Events #{start} to #{end} of ``hello_trace.jsonl``: the guest's first "
            f"``{hvmspec_seq.mnemonic(events[start]['info'])}`` (a read of the COM1 line "
            f"status register, port ``{events[start]['info']['port']:#x}``), from the VM exit "
            f"to the VM entry after it. *by* is the party that acted.\n\n")
    return head + _list_table(["#", "kind", "by", "fields"], rows, widths="4 10 8 78",
                              classes="trace-excerpt")


def _ioreqs_rst(events: list[dict]) -> str:
    """The requests the VMM sent (its NONE -> READY transitions), one row per
    instruction and request shape, with how many times each was sent."""
    groups: dict[tuple, list[tuple[int, dict]]] = {}
    exit_ = None
    for i, e in enumerate(events):
        if e["kind"] == "vmexit":
            exit_ = e
        if e["kind"] != "ioreq" or e["new"] != "READY" or exit_ is None:
            continue
        key = (hvmspec_seq.mnemonic(exit_["info"]), e["type"], e["dir"], e["addr"], e["size"],
               e["count"], e["df"], e["data_is_ptr"])
        groups.setdefault(key, []).append((i, e))
    rows = []
    for (insn, typ, direction, addr, size, count, df, ptr), sent in groups.items():
        values = sorted({e["data"] for _, e in sent})
        if len(values) == 1:
            data = _lit(f"{values[0]:#x}")
        else:
            data = f"{len(values)} values (the bytes written)"
        rows.append([_lit(insn), str(len(sent)), str(sent[0][0]), _lit(typ), _lit(direction),
                     _lit(f"{addr:#x}"), str(size), str(count), str(df), str(ptr), data])
    return _list_table(["instruction", "sent", "first #", "type", "dir", "addr", "size",
                        "count", "df", "data_is_ptr", "data"], rows)


def _summary_rst(events: list[dict], result) -> str:
    kinds: dict[str, int] = {}
    for e in events:
        kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
    exits = ", ".join(f"{n} ``{k}``" for k, n in sorted(result.exits.items()))
    lines = [
        f"The run: {len(events)} events, {result.instructions} guest instructions retired, "
        f"VM exits: {exits}; the domain's fate: {result.exit.get('reason')} "
        f"(signalled by {result.exit.get('by')}), xend: {result.exit.get('domain')}.",
        "",
        _list_table(["event kind", "count"], [[_lit(k), str(n)] for k, n in kinds.items()],
                    widths="30 10", align="left"),
        "The guest's serial output (the ``serial`` events, in order)::",
        "",
    ]
    lines += [f"    {line}" for line in result.serial.splitlines()]
    return "\n".join(lines) + "\n"


def _run_text(result) -> str:
    """What ``hvmspec run hello --engine reference`` prints: the serial
    output, then the CLI's own line about the domain's fate."""
    from hvmspec.commands.run import _fate_line
    serial = result.serial if result.serial.endswith("\n") or not result.serial \
        else result.serial + "\n"
    return f"$ hvmspec run {GUEST} --engine reference\n{serial}{_fate_line(result)}\n"


def _disassembly() -> str:
    """The hello ROM where it is loaded: the code at F000:0000 up to its
    strings, and the reset vector at F000:FFF0."""
    import capstone
    from spec import platform
    from spec.loader import load
    image = load(GUEST)
    base = image.load_address
    rom = image.image
    end = rom.find(b"Hello from")
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_16)
    out = [f"; {GUEST}: {len(rom)} bytes loaded at {base:#x}-{platform.IMAGE_END - 1:#x}",
           "; linear   F000:off  bytes            instruction"]

    def dump(start: int, stop: int) -> None:
        for insn in md.disasm(rom[start:stop], start):
            linear = base + insn.address
            out.append(f"{linear:#08x}  F000:{insn.address:04X}  {insn.bytes.hex():<16} "
                       f"{insn.mnemonic} {insn.op_str}".rstrip())

    dump(0, end if end > 0 else 0x100)
    out.append(f"; ... strings at F000:{end:04X}, zero padding ...")
    vector = platform.RESET_VECTOR - base
    dump(vector, vector + 5)
    return "\n".join(out) + "\n"


# --- string I/O, worked examples ---------------------------------------------------------

#: (instruction, size, dir, rep, segment, segment base, offset, count register, DF)
STRING_CASES = [
    ("rep outsb", 1, "out", True, "ds", 0xF0000, 0x005C, 44, 0),
    ("rep outsw", 2, "out", True, "ds", 0x10000, 0x0FFC, 8, 0),
    ("rep outsw", 2, "out", True, "ds", 0x10000, 0x0FFF, 4, 0),
    ("outsw", 2, "out", False, "ds", 0x00000, 0x0FFF, 0, 0),
    ("rep insb", 1, "in", True, "es", 0x10000, 0x1002, 8, 1),
    ("rep insd", 4, "in", True, "es", 0x20000, 0x0100, 16, 0),
    ("outsd", 4, "out", False, "ds", 0x00000, 0x2000, 0, 0),
    ("rep outsb", 1, "out", True, "ds", 0x10000, 0x0000, 0, 0),
]


def _string_chunks_rst() -> str:
    """The first ioreq of a few string instructions, computed by the spec."""
    from spec.vmm import string_chunk
    from spec.vm_exit import IoQualification
    from spec.vmx import RFLAGS_DF
    rows = []
    for insn, size, direction, rep, seg, base, offset, count, df in STRING_CASES:
        q = IoQualification(size=size, dir=direction, string=True, rep=rep, imm=False,
                            port=0x3F8, address_size=16, segment=seg)
        index = "di" if direction == "in" else "si"
        regs = {"rsi": offset if index == "si" else 0, "rdi": offset if index == "di" else 0,
                "rcx": count, "rflags": 0x2 | (RFLAGS_DF if df else 0)}
        chunk = string_chunk(q, regs, base)
        where = f"{seg}:{index} = {base >> 4:04x}:{offset:04x} ({base + offset:#x})"
        cx = str(count) if rep else "(no REP)"
        if chunk is None:
            result = ["no ioreq", "", "", "yes (completes at once)"]
        elif chunk.data_is_ptr:
            result = [f"``data = {chunk.linear:#x}``", str(chunk.count), "1",
                      "yes" if chunk.finishes else "no: restarts for the rest"]
        else:
            result = ["by value (straddles a page)", str(chunk.count), "0",
                      "yes" if chunk.finishes else "no: restarts for the rest"]
        rows.append([f"``{insn}``", where, cx, str(df)] + result)
    return _list_table(["instruction", "first element", "count (CX)", "DF", "ioreq data",
                        "count", "data_is_ptr", "RIP advances"], rows,
                       widths="13 25 9 5 19 7 9 13")


# --- platform constants ------------------------------------------------------------------

def _x86_forms_rst() -> str:
    """The emulator's coverage: every emulated mnemonic, its operand forms,
    the modes it exists in, LOCK, and the flags it leaves undefined, from
    the decoder's own table (mnemonics that differ only in their condition
    code or element size share a row)."""
    from spec.x86 import decode
    only64 = {"movsxd", "movabs", "cmpxchg16b"}
    groups: dict[tuple, list[str]] = {}
    for fam in decode.FAMILIES:
        for mnemonic, forms in fam.FORMS.items():
            key = (fam.__name__.rsplit(".", 1)[1], ", ".join(forms),
                   "64" if mnemonic in only64 else "16, 32, 64",
                   "yes" if mnemonic in decode.LOCKABLE else "",
                   " ".join(fam.UNDEFINED.get(mnemonic, ())))
            groups.setdefault(key, []).append(mnemonic)
    rows = [[f":mod:`spec.x86.{fam}`", " ".join(f"``{m}``" for m in names), forms, modes,
             lock, undefined] for (fam, forms, modes, lock, undefined), names in groups.items()]
    count = sum(len(names) for names in groups.values())
    return (f"{count} mnemonics in {len(rows)} rows.\n\n"
            + _list_table(["family", "mnemonics", "forms", "modes", "LOCK", "undefined flags"],
                          rows, widths="14 34 16 10 6 20"))


def _x86_deviations_rst() -> str:
    """Unicorn's deviations from the SDM that the CPU settled, from the
    differential tester's own list."""
    from hvmspec.x86diff import DEVIATIONS
    return _list_table(["deviation", "what the SDM and this machine's CPU do, and Unicorn"],
                       [[f"``{name}``", reason] for name, reason, *_ in DEVIATIONS],
                       widths="25 75")


def _rst_escape(text: str) -> str:
    """Plain text (a source comment) made safe for reStructuredText."""
    import re
    for ch in ("\\", "*", "`", "|"):
        text = text.replace(ch, "\\" + ch)
    return re.sub(r"(\w)_(?=\W|$)", r"\1\\_", text)


def _platform_rst() -> str:
    """Every constant of :mod:`spec.platform` as a ``py:data`` entry, with its
    value, the expression it is written as, and the source's comments (the
    module documents its constants with comments, which autodoc does not
    read)."""
    import ast
    import inspect
    from spec import platform
    source = inspect.getsource(platform)
    lines = source.splitlines()
    out = [".. py:currentmodule:: spec.platform", ""]
    previous_end = 0
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            continue
        name = node.targets[0].id
        value = getattr(platform, name)
        for line in lines[previous_end:node.lineno - 1]:
            if line.startswith("# ---"):
                title = line.strip("# -")
                out += [f".. rubric:: {title[0].upper() + title[1:]}", ""]
        previous_end = node.end_lineno
        above: list[str] = []
        k = node.lineno - 2
        while k >= 0 and lines[k].startswith("#") and not lines[k].startswith("# ---"):
            above.insert(0, lines[k].lstrip("#").strip())
            k -= 1
        if above:
            out += [_rst_escape(" ".join(above)), ""]
        expr = ast.get_source_segment(source, node.value) or ""
        if isinstance(value, int) and not isinstance(value, bool) and (
                "0x" in expr or "<<" in expr):
            shown = f"{value:#x}"
        else:
            shown = repr(value)
        line = lines[node.end_lineno - 1]
        comment = line.split("#", 1)[1].strip() if "#" in line else ""
        out += [f".. py:data:: {name}", f"   :value: {shown}", ""]
        detail = []
        if comment:
            detail.append(_rst_escape(comment[0].upper() + comment[1:]
                                      + ("" if comment.endswith(".") else ".")))
        if not isinstance(node.value, ast.Constant) and "\n" not in expr:
            detail.append(f"(``{expr}``)")
        if detail:
            out += ["   " + " ".join(detail), ""]
    return "\n".join(out) + "\n"


# --- the proofs -------------------------------------------------------------------------------

def _write_proofs(out: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    command = [sys.executable, "-m", "hvmspec.cli", "check", "--json"]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env,
                              timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExtensionError(f"hvmspec docs: cannot run {' '.join(command)}: {exc}") from exc
    try:
        rows = json.loads(proc.stdout)
    except json.JSONDecodeError:
        rows = None
    if proc.returncode not in (0, 1) or not isinstance(rows, list) or not rows:
        raise ExtensionError(f"hvmspec docs: `hvmspec check --json` failed (exit "
                             f"{proc.returncode}): {proc.stderr[-2000:] or proc.stdout[-2000:]}")
    _write(out / "check.json", proc.stdout)
    bad = [r["name"] for r in rows if r["result"] != r["expected"]]
    if bad or proc.returncode != 0:
        logger.warning("hvmspec check: unexpected results for %s (exit %d)",
                       ", ".join(bad) or "?", proc.returncode)
    _write(out / "proofs_table.rst", _proofs_rst(rows))


def _proofs_rst(rows: list[dict]) -> str:
    try:
        from proofs import all_checks
        about = {c.name: c for c in all_checks()}
    except Exception:   # noqa: BLE001 - the descriptions are a bonus, the table is not
        about = {}
    table = [[_lit(r["name"]), r["kind"], r["expected"],
              f"**{r['result']}**" if r["result"] == r["expected"]
              else f"**{r['result']}** (UNEXPECTED)", f"{r['seconds']:.3f}"]
             for r in rows]
    parts = [
        "Produced by ``hvmspec check --json`` when this site was built "
        f"({sum(r['result'] == r['expected'] for r in rows)} of {len(rows)} as expected; "
        "seconds are this build's).",
        "",
        _list_table(["name", "kind", "expected", "result", "seconds"], table,
                    widths="46 12 16 18 8", classes="proofs-table"),
    ]
    for r in rows:
        chk = about.get(r["name"])
        parts.append(f".. rubric:: {r['name']}")
        parts.append("")
        if chk is not None and chk.doc:
            doc = " ".join(chk.doc.split())
            if chk.mutates:
                parts.append(f"Mutant: replaces ``{chk.mutates}``. {doc}")
            else:
                parts.append(f"Invariant: {doc}")
            parts.append("")
        if r["counterexample"]:
            parts.append(f"Result: **{r['result']}**. The counterexample Z3 found, a run "
                         "from the initial state, one party's step per line::")
            parts.append("")
            parts += [f"    {line}" for line in r["counterexample"]]
        else:
            parts.append(f"Result: **{r['result']}**" + (
                " by bounded search and 1-induction with the strengthening: no "
                "counterexample exists, for runs of any length." if r["result"] == "proved"
                else f": {r.get('detail', '')}."))
        for w in r.get("witnesses", []):
            parts += ["", f"Witness, *{w['case']}*: a run that reaches it::", ""]
            parts += [f"    {line}" for line in w["run"]]
        parts.append("")
    return "\n".join(parts) + "\n"


# --- the CLI's help ----------------------------------------------------------------------------

def _write_help(out: Path) -> None:
    from hvmspec.cli import build_parser
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "88"
    try:
        parser = build_parser()
        _write(out / "cli_help_main.txt", _help_of(parser, []))
        for command in ("run", "check", "conform", "timeline", "xenstored", "xend", "xm"):
            _write(out / f"cli_help_{command}.txt", _help_of(parser, [command]))
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def _help_of(parser, argv: list[str]) -> str:
    stream = io.StringIO()
    with contextlib.redirect_stdout(stream):
        try:
            parser.parse_args(argv + ["--help"])
        except SystemExit:
            pass
    return stream.getvalue()
