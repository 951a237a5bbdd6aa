"""The documentation builds with warnings as errors, from real traces and proofs."""

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
