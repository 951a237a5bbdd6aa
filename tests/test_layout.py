"""The house rules of DESIGN.md that code can check."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: the interface impl may use; spec.physical_cpu is the hardware both engines
#: run on (how Unicorn is opened, reset and made to load a segment), not behaviour;
#: spec.devices.vga_font is data (the VGA BIOS's font), spec.hvmloader is the guest loader's firmware half (where the bytes go), and
#: spec.acpi_tables the ACPI tables it places (bytes built before the guest runs),
#: spec.block the image files under the drives (I/O: both engines read and write the
#: same bytes and refuse the same requests)
INTERFACE = {"spec.platform", "spec.trace", "spec.loader", "spec.hvmloader", "spec.result",
             "spec.acpi_tables", "spec.block",
             "spec.xend",
             "spec.vectors", "spec.physical_cpu", "spec.xs_client", "spec.dm_config",
             "spec.dom0", "spec.suites.system", "spec.suites.uart",
             "spec.devices.vga_font"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "spec":
                names.update(f"spec.{a.name}" for a in node.names)
            else:
                names.add(node.module)
    return names


def test_impl_imports_only_the_spec_interface():
    offending = {}
    for path in (ROOT / "impl").rglob("*.py"):
        bad = {n for n in _imports(path) if n.startswith("spec") and n not in INTERFACE}
        if bad:
            offending[str(path.relative_to(ROOT))] = sorted(bad)
    assert offending == {}
    assert list((ROOT / "impl").rglob("*.py")), "impl/ has no code"


def test_every_module_says_what_room_it_is():
    missing = []
    for folder in ("spec", "impl", "proofs", "hvmspec"):
        for path in (ROOT / folder).rglob("*.py"):
            doc = ast.get_docstring(ast.parse(path.read_text()))
            if not doc:
                missing.append(str(path.relative_to(ROOT)))
    assert missing == []


def test_proofs_have_mutants():
    from proofs import all_checks
    checks = all_checks()
    invariants = [c for c in checks if c.kind == "invariant"]
    for inv in invariants:
        assert any(c.kind == "mutant" and c.name.startswith(inv.name + "/") for c in checks)


def test_pyproject_installs_every_package():
    """An installed (not editable) hvmspec has every package: the list in
    pyproject.toml is every folder with an ``__init__.py``."""
    import tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(project["tool"]["setuptools"]["packages"])
    found = {str(p.parent.relative_to(ROOT)).replace("/", ".")
             for top in ("spec", "impl", "proofs", "hvmspec", "guests", "bench")
             for p in (ROOT / top).rglob("__init__.py")}
    assert listed == found
