"""The documentation and the README say what is, not what was or will be.

Each test reads the pages' sources (``docs/*.rst``, ``README.md``) against
the thing they describe: the code, the Makefile, ``pyproject.toml``, the
bundled guests and configurations in ``guests/``, the proofs, and the last
``make bench`` run (``docs/bench.json``). No Sphinx build: that is
``tests/test_docs.py``.
"""

import ast
import copy
import json
import re
import sys
import tomllib

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "docs" / "_ext"))

import hvmspec_docs  # noqa: E402

README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.rst"))
SOURCES = PAGES + [README]
BENCH = json.loads((ROOT / "docs" / "bench.json").read_text())


def _name(path) -> str:
    return str(path.relative_to(ROOT))


def _paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]


# --- phrases of a project's past or future ------------------------------------------------

#: phrases that say something is missing, coming, or part of a numbered plan
STALE = [
    (r"\bissues?\s+\d+", "an issue number: readers do not know the project's issues; "
                         "say what is meant"),
    (r"\b(comes?|will come|arrives?) (later|in issue|with issue)\b", "something coming later"),
    (r"\bnot\b[^.;:,()]{0,40}\byet\b", "'not ... yet'"),
    (r"\bno\b[^.;:,()]{0,40}\byet\b", "'no ... yet'"),
    (r"\bnot included\b", "'not included'"),
    (r"\bfor now\b", "'for now'"),
    (r"\bat present\b", "'at present'"),
    (r"\bcurrently\b", "'currently'"),
    (r"\btoday\b", "'today'"),
    (r"\bthe current model\b", "'the current model'"),
]

#: (file, words of the sentence, why it may stand): sentences about something
#: that is truly not built, or where the phrase is not about the project
ALLOWED = [
    ("docs/ioreq.rst", "the device model has not answered yet",
     "a state of the ioreq protocol (no response in the slot), not of the project"),
]


def _stale_hits(name: str, text: str) -> list[str]:
    hits = []
    for para in _paragraphs(text):
        for pattern, what in STALE:
            for m in re.finditer(pattern, para, flags=re.IGNORECASE):
                context = para[max(0, m.start() - 60):m.end() + 60]
                if any(f == name and words in para for f, words, _ in ALLOWED):
                    continue
                hits.append(f"{name}: {what}: ...{context}...")
    return hits


def test_pages_and_readme_say_what_is():
    """No page says a thing "comes later", is "not included yet", that
    there is "no ... yet", or names an issue by its number, unless the
    sentence is on the small allow-list, with its reason."""
    hits = [h for path in SOURCES for h in _stale_hits(_name(path), path.read_text())]
    assert hits == [], "\n".join(hits)


def test_the_phrase_check_catches_what_the_pages_used_to_say():
    for old in ("the current model does not include it yet (it comes with the real protocol)",
                "(``xc_map_foreign_range``; the bounded mapcache comes later)",
                "the current model has no interrupt sources yet, so a vcpu halted",
                "until exception delivery exists (issue 5), the VMM crashes the domain",
                "and checks issue 8's targets; it writes the run"):
        assert _stale_hits("docs/x.rst", old), old
    assert _stale_hits("docs/ioreq.rst", "- *block*: the device model has not answered yet;") \
        == []


def test_rendered_docstrings_name_no_issue_numbers():
    """The pages render the code's docstrings (autodoc): they must not send
    readers to an issue number or to something that "comes in issue N"
    either."""
    pattern = re.compile(STALE[0][0] + "|" + STALE[1][0], re.IGNORECASE)
    hits = []
    for folder in ("spec", "impl", "proofs", "hvmspec", "bench", "guests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                         ast.AsyncFunctionDef)):
                    continue
                doc = ast.get_docstring(node) or ""
                for m in pattern.finditer(" ".join(doc.split())):
                    hits.append(f"{_name(path)} {getattr(node, 'name', '(module)')}: "
                                f"{m.group()!r}")
    assert hits == [], "\n".join(hits)


# --- what the Makefile, the layout rule and pyproject.toml say ---------------------------

def _make_run_guest() -> str:
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^run:.*\n\t(.*)$", makefile, flags=re.MULTILINE).group(1)
    return re.search(r"hvmspec run (\S+)", recipe).group(1)


def test_make_run_boots_the_guest_the_pages_name():
    guest = _make_run_guest()
    cli = (ROOT / "docs" / "cli.rst").read_text()
    said = re.findall(r"``make run`` \(``(\w+)``", cli)
    assert said == [guest], said
    readme = README.read_text()
    assert re.search(rf"make run\s+# boot the {guest} guest", readme)
    assert f"the guest `make run` boots" in hvmspec_docs.guest_summary(guest)


def test_overview_lists_the_interface_impl_may_import():
    """The overview's list of what impl may import from the spec is the
    layout test's rule, no more and no less."""
    from tests.test_layout import INTERFACE
    text = (ROOT / "docs" / "overview.rst").read_text()
    start = text.index("the spec's *interface* only:")
    block = text[start:text.index("The test suite enforces this", start)]
    assert set(re.findall(r":mod:`(spec[\w.]*)`", block)) == INTERFACE


def _requirements(project: dict) -> list[str]:
    build = project.get("build-system", {}).get("requires", [])
    deps = project["project"].get("dependencies", [])
    extra = [d for group in project["project"].get("optional-dependencies", {}).values()
             for d in group]
    return build + deps + extra


def test_readme_says_pinned_and_every_dependency_is_pinned():
    """The README says the dependencies are pinned: every requirement of
    ``pyproject.toml`` (build, run and the extras) names one version with
    ``==``."""
    assert "pinned dependencies" in README.read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    loose = [r for r in _requirements(project)
             if not re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[A-Za-z0-9_.+\-!]+", r.replace(" ", ""))]
    assert loose == [], f"not pinned with ==: {loose}"


def test_readme_states_the_python_it_needs():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = re.fullmatch(r">=\s*(\d+\.\d+)", project["project"]["requires-python"]).group(1)
    assert f"Python {needed} or newer" in README.read_text()


def test_readme_mentions_the_run_and_conform_options_users_ask_for():
    readme = README.read_text()
    for option in ("--screenshot FILE.png", "--display live", "--display text",
                   "--display off", "conform --impl CMD"):
        assert re.search(rf"`[^`]*{re.escape(option)}[^`]*`", readme), option


# --- lists of bundled guests and configurations ------------------------------------------

def _bundled() -> tuple[set[str], set[str]]:
    from spec.loader import GUESTS_DIR, bundled_guests
    return set(bundled_guests()), {p.name for p in (GUESTS_DIR / "configs").glob("*.cfg")}


def _listed(text: str, names: set[str]) -> list[list[str]]:
    """Runs of three or more of ``names`` written as a list: literals
    separated only by commas, "and"/"or", and parenthesised remarks."""
    runs = []
    for para in _paragraphs(text):
        found = [(m.start(), m.end(), m.group(1))
                 for m in re.finditer(r"``?([\w.]+)``?", para) if m.group(1) in names]
        run = found[:1]
        for prev, cur in zip(found, found[1:]):
            between = para[prev[1]:cur[0]]
            while re.search(r"\([^()]*\)", between):
                between = re.sub(r"\([^()]*\)", "", between)
            if re.fullmatch(r"[\s,;]*((and|or)\s*)?", between):
                run.append(cur)
            else:
                if len(run) >= 3:
                    runs.append([n for _, _, n in run])
                run = [cur]
        if len(run) >= 3:
            runs.append([n for _, _, n in run])
    return runs


def test_lists_of_bundled_guests_and_configs_are_complete():
    """A page that lists bundled guests or xm configurations lists them all
    (the README's list had 8 of the 15 guests, the XenStore page 3 of the 15
    configurations); better, it renders the list from the files."""
    guests, configs = _bundled()
    bad = []
    for path in SOURCES:
        text = path.read_text()
        for names, everything in ((guests, guests), (configs, configs)):
            for run in _listed(text, names):
                if set(run) != everything:
                    bad.append(f"{_name(path)}: lists {run}, not all of {sorted(everything)}")
    assert bad == [], "\n".join(bad)
    old_readme = ("Bundled guests: `hello`, `portio`, `pm32`, `mmio`, `timer` (PIT ticks "
                  "with HLT), `irqs` (masking, IF and the shadow, IRQ4), `idt32`")
    old_xenstore = "(``demo.cfg``, ``hello.cfg``, ``reboot.cfg``); ``hvmspec xm create"
    assert _listed(old_readme, guests) and _listed(old_xenstore, configs)


def test_readme_table_of_guests_is_the_files():
    """The README's table is what ``guests/*.s`` say of themselves; when a
    guest is added, paste the table this prints."""
    table = hvmspec_docs.guests_markdown()
    assert table in README.read_text(), "README.md should have this table:\n" + table
    guests, _ = _bundled()
    assert len(table.splitlines()) == 2 + len(guests)


def test_pages_render_the_guests_and_configs_from_the_files(tmp_path):
    hvmspec_docs._write_bundled(tmp_path)
    guests, configs = _bundled()
    table = (tmp_path / "guests_table.rst").read_text()
    assert all(f"``{g}``" in table for g in guests)
    assert f"{len(guests)} bundled guests" in table
    assert ".. include:: _generated/guests_table.rst" in (ROOT / "docs/guests.rst").read_text()
    cfgs = (tmp_path / "xm_configs.rst").read_text()
    assert all(f"``{c}``" in cfgs for c in configs)
    assert ".. include:: _generated/xm_configs.rst" in (ROOT / "docs/xenstore.rst").read_text()


# --- the proofs page -----------------------------------------------------------------------

def test_proofs_page_describes_every_proof():
    """Every invariant ``hvmspec check`` proves is described in the proofs
    page's own prose (the mapcache's were only in the generated table), and
    every proof module is listed with the proof code."""
    from proofs import all_checks
    text = (ROOT / "docs" / "proofs.rst").read_text()
    prose = text[:text.index("The results\n")]
    families = {c.name for c in all_checks()
                if c.kind == "invariant" and not c.name.startswith("x86.rmw.")}
    missing = [name for name in sorted(families) if f"``{name}``" not in prose]
    assert missing == []
    for mutant in {c.name.split("/mutant:")[1] for c in all_checks()
                   if c.name.startswith("mapcache.") and c.kind == "mutant"}:
        assert f"``{mutant}``" in prose, mutant
    modules = {p.stem for p in (ROOT / "proofs").glob("*.py") if p.stem != "__init__"}
    assert {m for m in modules if f".. py:module:: proofs.{m}" not in text} == set()


# --- the performance page and the last make bench ----------------------------------------

#: numbers the performance page may write by hand: parameters of the
#: benchmark and facts of the machine, not measurements
FIXED = {
    "16-bit": "the mode of the raw row's Unicorn",
    "64-bit": "the mode of the engines' Unicorn",
    "4 GiB": "the smaller dma guest (a bench parameter, in its row's name)",
    "64 GiB": "the larger dma guest (a bench parameter, in its row's name)",
    "64 KiB": "the rep outsb guest's string (a bench parameter, in its row's name)",
    "4 KiB": "the page size: one ioreq per page",
}


def _prose(text: str) -> str:
    """A page's prose: no directives (and their bodies), inline literals,
    substitution references or ``:past:`` figures (quoted history)."""
    out, skipping = [], False
    for line in text.splitlines():
        if line.startswith(".. "):
            skipping = True
            continue
        if skipping and (line.startswith(" ") or not line.strip()):
            continue
        skipping = False
        out.append(line)
    prose = "\n".join(out)
    prose = re.sub(r":past:`[^`]*`", " ", prose)
    prose = re.sub(r"``.*?``", " ", prose, flags=re.DOTALL)
    return re.sub(r"\|[\w-]+\|", " ", prose)


def _hand_written_figures(text: str) -> list[str]:
    return [m.group() for m in re.finditer(r"\d+(?:[,.]\d+)*(?:-bit| [KMG]iB\b)?", _prose(text))
            if m.group() not in FIXED]


def test_performance_page_writes_no_figure_by_hand():
    """Every figure of the last run on the performance page is a
    substitution rendered from docs/bench.json; a number written in the
    prose is a fixed parameter (listed here with its reason) or an earlier
    measurement marked ``:past:``."""
    text = (ROOT / "docs" / "performance.rst").read_text()
    assert _hand_written_figures(text) == []
    assert _hand_written_figures("**CPU-bound code** (impl 993 MIPS against raw Unicorn's "
                                 "1,839: 0.54, where the target is 0.5)") == \
        ["993", "1,839", "0.54", "0.5"]
    assert ".. include:: _generated/bench_figures.rst" in text
    used = set(re.findall(r"\|([\w-]+)\|", _prose_with_substitutions(text)))
    assert used and used <= set(hvmspec_docs.bench_figures(BENCH))


def _prose_with_substitutions(text: str) -> str:
    return re.sub(r"``.*?``", " ", text, flags=re.DOTALL)


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def test_bench_figures_are_the_recorded_run():
    """The figures the page quotes are docs/bench.json's, rounded; and they
    follow the file: another run gives other figures."""
    figures = hvmspec_docs.bench_figures(BENCH)
    rows = {(r["row"], r["engine"]): r["value"] for r in BENCH["rows"]}
    targets = {t["target"]: t for t in BENCH["targets"]}
    for name, row in (("cpu-impl", ("cpu-bound", "impl")), ("cpu-raw", ("cpu-bound", "raw unicorn")),
                      ("cpu-ref", ("cpu-bound", "reference")),
                      ("io-impl", ("port I/O round trip", "impl")),
                      ("io-ref", ("port I/O round trip", "reference")),
                      ("io-hook", ("port I/O round trip", "bare unicorn hook")),
                      ("mmio-impl", ("MMIO RMW round trip", "impl")),
                      ("demo-ref", ("demo wall time", "reference")),
                      ("demo-impl", ("demo wall time", "impl")),
                      ("check-s", ("hvmspec check", "proofs")),
                      ("dma-4", ("dma peak memory, 4 GiB guest", "impl")),
                      ("dma-64", ("dma peak memory, 64 GiB guest", "impl"))):
        assert _number(figures[name]) == pytest.approx(rows[row], rel=0.05), name
    for name, target in (("cpu-ratio", "impl CPU-bound speed / raw Unicorn"),
                         ("io-ratio", "impl port I/O round trip / bare hook"),
                         ("io-speedup", "impl speed-up over reference, port I/O round trip"),
                         ("mmio-speedup", "impl speed-up over reference, MMIO RMW round trip"),
                         ("outsb-speedup", "impl speed-up over reference, rep outsb"),
                         ("dma-ratio", "dma peak memory, 64 GiB / 4 GiB guest")):
        assert _number(figures[name]) == pytest.approx(targets[target]["measured"], rel=0.05)
    for name, target in (("cpu-met", "impl CPU-bound speed / raw Unicorn"),
                         ("io-met", "impl port I/O round trip / bare hook"),
                         ("check-met", "hvmspec check seconds"),
                         ("dma-met", "dma peak memory, 64 GiB / 4 GiB guest")):
        assert figures[name] == ("met" if targets[target]["met"] else "missed"), name
    assert figures["cpu-goal"] == "0.5" and figures["io-goal"] == "3"
    other = copy.deepcopy(BENCH)
    for r in other["rows"]:
        r["value"] *= 2
    for t in other["targets"]:
        t["measured"] *= 3
        t["met"] = not t["met"]
    changed = hvmspec_docs.bench_figures(other)
    assert _number(changed["cpu-impl"]) == pytest.approx(2 * rows[("cpu-bound", "impl")],
                                                         rel=0.05)
    assert changed["cpu-met"] != figures["cpu-met"]


def test_readme_quotes_no_bench_figure_that_is_not_the_run():
    """A speed in the README (MIPS, µs, MB/s) must be the last run's."""
    figures = {_number(v) for k, v in hvmspec_docs.bench_figures(BENCH).items()
               if re.fullmatch(r"[\d,.]+", v)}
    quoted = re.findall(r"([\d,.]*\d)\s*(?:MIPS|µs|us\b|MB/s)", README.read_text())
    assert [q for q in quoted if _number(q) not in figures] == []


def test_machine_line_names_the_cpu_model():
    """The machine a run measured includes its CPU model; a file from before
    it was recorded says so instead of leaving it out."""
    old = {"machine": "x86_64 , 2 cores, Python 3.11.7"}
    assert hvmspec_docs.machine_line(old) == \
        "x86_64, CPU model not recorded, 2 cores, Python 3.11.7"
    new = {"machine": "x86_64, AMD EPYC 7B13, 2 cores, Python 3.11.7", "cpu": "AMD EPYC 7B13"}
    assert hvmspec_docs.machine_line(new) == new["machine"]
    line = hvmspec_docs.bench_table_rst(BENCH).splitlines()[0]
    assert BENCH.get("cpu") and BENCH["cpu"] in line or "CPU model not recorded" in line
    from bench import __main__ as bench
    assert bench.cpu_model("processor\t: 0\nmodel name\t: Intel(R) Xeon(R)  CPU @ 2.20GHz\n"
                           "model name\t: other\n") == "Intel(R) Xeon(R) CPU @ 2.20GHz"
    where = bench.machine()
    assert where["cpu"] in where["machine"] and " ," not in where["machine"]


def test_best_of_is_one_rule_rendered_into_the_page():
    """How many runs a figure is the best of comes from bench (one rule,
    :func:`bench.__main__.best_of`, recorded per row) into the page's table;
    the prose writes no "best of N" of its own (it said "best of seven"
    where the table said "best of 3")."""
    from bench import __main__ as bench
    text = (ROOT / "docs" / "performance.rst").read_text()
    assert re.findall(r"best of (?!\|)\S+", _prose(text)) == []
    assert "best of |cpu-turns|" in text
    assert bench.best_of("cpu-bound", "impl") == bench.best_of("cpu-bound", "raw unicorn") \
        == max(bench.REPEAT, bench.CPU_TURNS)
    assert bench.best_of("port I/O round trip", "impl", 5) == 5
    table = hvmspec_docs.bench_table_rst(BENCH)
    for r in BENCH["rows"]:
        expected = r.get("best_of", bench.best_of(r["row"], r["engine"], BENCH["repeat"]))
        assert f"   * - {r['row']}\n     - {r['engine']}\n     - {r['value']:.2f}\n" \
               f"     - {r['unit']}\n     - {expected}\n" in table + "\n"
    assert hvmspec_docs.bench_figures(BENCH)["cpu-turns"] == str(
        bench.best_of("cpu-bound", "impl", BENCH["repeat"]))


def test_post_rows_render_side_by_side_or_say_they_are_missing():
    """The bench's firmware POST rows (wall time per engine and QEMU, the
    engines' speed) render as one table with their ratios to impl; a run
    recorded before the bench measured them says so instead."""
    from bench import __main__ as bench
    old = hvmspec_docs.bench_post_rst(BENCH)
    assert "no POST rows" in old or "rombios" in old
    rows = [dict(r) for r in BENCH["rows"] if "POST" not in r["row"]]
    for section, (impl, ref, qemu) in (("rombios POST", (2.0, 80.0, 3.2)),
                                       ("SeaBIOS POST", (1.5, 150.0, 2.9))):
        for engine, seconds in (("impl", impl), ("reference", ref), ("qemu", qemu)):
            rows.append({"row": f"{section} wall time", "engine": engine, "value": seconds,
                         "unit": "s", "best_of": 1, "executed": 840_000,
                         "instructions": 2_990_000_000})
        for engine, seconds in (("impl", impl), ("reference", ref)):
            rows.append({"row": f"{section} speed", "engine": engine,
                         "value": 840_000 / seconds / 1e6, "unit": "MIPS", "best_of": 1})
    report = dict(BENCH, rows=rows)
    table = hvmspec_docs.bench_post_rst(report)
    assert "   * - rombios\n     - 2.00\n     - 80.00\n     - 3.20\n     - 40.0\n     - 1.60\n" \
        "     - 840,000\n     - 0.42\n     - 0.011\n" in table
    assert "   * - SeaBIOS\n" in table and "no POST rows" not in table
    assert [r["ratio"] for r in bench.ratios(rows)] == [
        "rombios POST: reference / impl wall time", "rombios POST: qemu / impl wall time",
        "SeaBIOS POST: reference / impl wall time", "SeaBIOS POST: qemu / impl wall time"]
    assert bench.ratios(rows)[0]["value"] == pytest.approx(40.0)
    assert bench.best_of("rombios POST wall time", "reference") == 1
    # the rest of the page's figures do not depend on the new rows
    assert hvmspec_docs.bench_figures(report) == hvmspec_docs.bench_figures(BENCH)


def test_bench_only_picks_measures_and_targets_follow():
    from bench import __main__ as bench
    assert bench.chosen(None) == list(bench.SECTIONS)
    assert bench.chosen(["post"]) == ["rombios POST", "SeaBIOS POST"]
    assert bench.chosen(["nothing"]) == []
    assert bench.ROWS == sum(bench.SECTIONS.values())
    some = [r for r in BENCH["rows"] if r["row"] == "cpu-bound"]
    assert [t["target"] for t in bench.targets(some)] == ["impl CPU-bound speed / raw Unicorn"]
    assert [t["target"] for t in bench.targets(BENCH["rows"])] == \
        [t["target"] for t in BENCH["targets"]]
