"""Sphinx configuration of the skmlmi documentation.

Build (CI builds with warnings as errors, see tests/test_docs.py)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The gallery PNGs are rendered by ``docs/make_gallery.py`` at the start of every build when
matplotlib is installed (``SKMLMI_DOCS_GALLERY=0`` skips it and uses the PNGs already in
``docs/_static/gallery/``); without matplotlib the gallery page says so instead of failing.
The changelog is the repository's ``CHANGELOG.md``, included through a small Markdown
reader (the ``md-include`` directive below), so the docs need no Markdown extension.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive, directives
from docutils.statemachine import StringList
from sphinx.util import logging

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import skmlmi  # noqa: E402

logger = logging.getLogger("skmlmi.docs")

# -- project -------------------------------------------------------------------------
project = "skmlmi"
author = "The skmlmi developers"
copyright = "The skmlmi developers, BSD-3-Clause"  # noqa: A001 (Sphinx's name)
release = skmlmi.__version__
version = ".".join(release.split(".")[:2])

# -- extensions ----------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
]
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
root_doc = "index"

autosummary_generate = True
autosummary_imported_members = False
# Signatures show parameter names only; the numpydoc "Parameters" section holds the types.
autodoc_typehints = "none"
autodoc_default_options = {"members": False}
autodoc_member_order = "groupwise"

# numpydoc renders the sections; class members are listed by our autosummary class
# template (docs/_templates/autosummary/class.rst), so numpydoc must not list them again
# (that would duplicate object descriptions).
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False
# Validation is off: docstring style is enforced in review, not by the docs build.
numpydoc_validation_checks: set[str] = set()

# Warnings that are understood and harmless, suppressed one by one (none so far: every
# warning of the build is an error in CI; add an entry here only with a reason).
suppress_warnings: list[str] = []

# -- HTML ----------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"skmlmi {release}"
html_short_title = "skmlmi"
html_static_path = ["_static"]
html_css_files = ["skmlmi.css"]
html_show_sourcelink = False
html_copy_source = False
html_theme_options = {
    "logo": {"text": "skmlmi"},
    "navbar_align": "left",
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 7,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"index": [], "changelog": [], "gallery": []}
html_context = {"default_mode": "light"}


# -- gallery -------------------------------------------------------------------------
GALLERY_DIR = HERE / "_static" / "gallery"


def _render_gallery() -> None:
    """Run docs/make_gallery.py (a colleague's script) if it exists and matplotlib is here."""
    script = HERE / "make_gallery.py"
    if os.environ.get("SKMLMI_DOCS_GALLERY", "1") == "0" or not script.exists():
        return
    if importlib.util.find_spec("matplotlib") is None:
        logger.info("skmlmi docs: matplotlib is not installed; the gallery is not rendered")
        return
    spec = importlib.util.spec_from_file_location("skmlmi_make_gallery", script)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        module.make_gallery(GALLERY_DIR)
    except Exception as exc:  # reported as a Sphinx warning: an error under -W
        logger.warning(f"skmlmi docs: docs/make_gallery.py failed: {type(exc).__name__}: {exc}")


class GalleryFigure(Directive):
    """``.. gallery-figure:: plot_trace`` -- a gallery PNG with its caption, or a note if absent."""

    required_arguments = 1
    has_content = True

    def run(self):
        name = self.arguments[0]
        path = GALLERY_DIR / f"{name}.png"
        if path.exists():
            lines = [f".. figure:: /_static/gallery/{name}.png", f"   :alt: {name}", "   :width: 100%", ""]
            lines += [f"   {line}" for line in self.content]
        else:
            lines = [f".. note:: The image of ``{name}`` is rendered by ``docs/make_gallery.py``, "
                     "which needs matplotlib; it was not rendered in this build.", ""]
            lines += list(self.content)
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=f"gallery:{name}"), self.content_offset, container)
        return container.children


class GalleryText(Directive):
    """``.. gallery-text:: icc_table.txt`` -- a text output of the gallery script, verbatim."""

    required_arguments = 1

    def run(self):
        path = GALLERY_DIR / self.arguments[0]
        if not path.exists():
            return [nodes.paragraph(text=f"({self.arguments[0]} is written by docs/make_gallery.py; not in this build.)")]
        text = path.read_text(encoding="utf-8")
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


# -- Markdown include (the changelog) -------------------------------------------------
_HEADING_MARKS = {1: "=", 2: "-", 3: "~", 4: "^"}


def markdown_to_rst(text: str) -> list[str]:
    """Translate the Markdown subset our CHANGELOG.md uses (headings, lists, code, links)."""
    out: list[str] = []
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            out += ([".. code-block:: text", ""] if in_code else [""])
            continue
        if in_code:
            out.append("   " + line)
            continue
        heading = re.match(r"^(#{1,4})\s+(.*)$", line)
        if heading:
            title = _inline(heading.group(2))
            out += [title, _HEADING_MARKS[len(heading.group(1))] * max(len(title), 3), ""]
            continue
        bullet = re.match(r"^(\s*)[*+-]\s+(.*)$", line)
        if bullet:
            out.append(f"{bullet.group(1)}- {_inline(bullet.group(2))}")
            continue
        out.append(_inline(line))
    return out


def _inline(text: str) -> str:
    text = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"`\1 <\2>`__", text)       # links
    text = re.sub(r"(?<!`)`([^`]+)`(?!`)", r"``\1``", text)                # inline code
    text = re.sub(r"\*\*([^*]+)\*\*", r"**\1**", text)                      # bold stays
    return text


class MarkdownInclude(Directive):
    """``.. md-include:: ../CHANGELOG.md`` -- include a Markdown file (path relative to docs/)."""

    required_arguments = 1

    def run(self):
        env = self.state.document.settings.env
        rel, path = env.relfn2path(self.arguments[0])
        env.note_dependency(rel)
        if not Path(path).exists():
            raise self.error(f"md-include: {path} does not exist")
        lines = markdown_to_rst(Path(path).read_text(encoding="utf-8"))
        container = nodes.section()
        container.document = self.state.document
        self.state.nested_parse(StringList(lines, source=str(path)), 0, container, match_titles=True)
        return container.children


def setup(app):
    directives.register_directive("gallery-figure", GalleryFigure)
    directives.register_directive("gallery-text", GalleryText)
    directives.register_directive("md-include", MarkdownInclude)
    app.connect("builder-inited", lambda app: _render_gallery())
    return {"parallel_read_safe": True, "parallel_write_safe": True}
