"""Sphinx configuration: numpydoc API reference, executed tutorials."""

from __future__ import annotations

import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The tutorials draw figures while the site builds: no display needed.
os.environ.setdefault("MPLBACKEND", "Agg")

import portnn  # noqa: E402

project = "portnn"
copyright = "2026, the portnn authors"
release = version = portnn.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}

autosummary_generate = True
autodoc_default_options = {"inherited-members": False}
# A class page lists its own methods once, through numpydoc.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "tutorials"),
    "gallery_dirs": "tutorials",
    # Every tutorial runs while the site builds, and a failing one fails it.
    "filename_pattern": r"/\d\d_",
    "abort_on_example_error": True,
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
}

html_theme = "pydata_sphinx_theme"
html_title = "portnn"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]
