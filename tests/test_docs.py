"""The documentation builds with warnings as errors, from real traces and proofs."""

import json
import re
import subprocess
import sys

from tests.conftest import ROOT


def test_docs_build_with_warnings_as_errors(tmp_path):
    out = tmp_path / "html"
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html",
                           str(ROOT / "docs"), str(out)], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ioreq_page = (out / "ioreq.html").read_text()
    assert "hello_sequence.svg" in ioreq_page
    assert "IORESP_READY" in ioreq_page
    xenstore_page = (out / "xenstore.html").read_text()
    assert "Started domain demo (id=1)" in xenstore_page        # the recorded xm session
    assert "refusing to restart to avoid loops" in xenstore_page
    assert "@releaseDomain" in xenstore_page
    implementers = (out / "implementers.html").read_text()
    assert "DIVERGED at event" in implementers and "minimal reproducer" in implementers
    assert "xenstore.access" in (out / "proofs.html").read_text()
    proofs_page = (out / "proofs.html").read_text()
    assert "ioreq.protocol" in proofs_page and "counterexample" in proofs_page
    assert "mapcache.no_stale" in proofs_page
    # the performance page: every figure rendered from docs/bench.json, with the CPU
    performance = (out / "performance.html").read_text()
    bench = json.loads((ROOT / "docs" / "bench.json").read_text())
    assert (bench.get("cpu") or "CPU model not recorded") in performance
    assert not re.search(r"\|[\w-]+\|", re.sub(r"<[^>]*>", "", performance))
    # the bundled guests and configurations, listed from the files
    from spec.loader import bundled_guests
    guests_page = (out / "guests.html").read_text()
    assert all(f">{name}<" in guests_page for name in bundled_guests())
    assert all(f">{name}.cfg<" in xenstore_page for name in bundled_guests())
