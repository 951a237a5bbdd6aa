"""Sphinx configuration of the hvmspec documentation site.

The spec modules' docstrings are the specification prose (autodoc renders
them); ``_ext/hvmspec_docs.py`` runs the reference engine and the proofs at
build time and writes what the pages include into ``_generated/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent

# The repository root first, so that ``import spec`` works without installing
# the project; then the local extensions.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))

project = "hvmspec"
author = "the hvmspec authors"
copyright = "the hvmspec authors"
release = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "hvmspec_docs",
]

# ``_generated/`` holds build products: the JSON-lines trace (not a source)
# and the .rst fragments that pages pull in with ``.. include::`` (they are
# not documents of their own).
exclude_patterns = ["_build", "_generated/*.jsonl", "_generated/*.rst"]

# The spec reads top to bottom: keep the modules' own order.
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True}
autodoc_typehints = "signature"
# No docstring here starts with a signature; and a dataclass without a
# docstring has a generated one that does (with quoted types), which the
# extension drops so that autodoc shows the real signature instead.
autodoc_docstring_signature = False
add_module_names = False

# Quotes and ellipses become typographic, but "--" stays two hyphens: the
# pages quote command lines ("hvmspec run --help").
smartquotes_action = "qe"

highlight_language = "none"
pygments_style = "sphinx"

html_theme = "alabaster"
html_title = "hvmspec: an executable specification of Xen HVM"
html_static_path = ["_static"]
html_theme_options = {
    "description": "Xen full virtualization, executable, proven and tested",
    "page_width": "1240px",
    "sidebar_width": "230px",
    "fixed_sidebar": False,
    "show_relbars": True,
    "extra_nav_links": {},
}
html_sidebars = {"**": ["about.html", "navigation.html", "searchbox.html"]}
html_show_sourcelink = False
