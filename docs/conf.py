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
copyright = "The skmlmi developers, BSD-3-Clause"
release = skmlmi.__version__
version = ".".join(release.split(".")[:2])

# -- extensions ----------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 copied into _static: formulas render without a network
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

# Plain-text maths in a few docstrings reads as reStructuredText markup: ``|x|`` (absolute
# value) as a substitution reference, ``u_.k`` as a hyperlink reference; docutils then
# reports "Undefined substitution" / "Unknown target name". Until the docstrings quote those
# spans themselves, the build quotes them here: object -> [(text, replacement)]. An entry
# whose text is no longer found does nothing, so a fixed docstring breaks nothing here (but
# remove its entry then). These are the only docstring problems the build papers over.
DOCSTRING_FIXES: dict[str, list[tuple[str, str]]] = {}


def _realign_simple_table(lines: list[str]) -> None:
    """Widen a simple table's first column to its longest entry (docutils: "Malformed table")."""
    rules = [i for i, line in enumerate(lines) if re.fullmatch(r"\s*=+ +=+\s*", line)]
    if len(rules) < 2:
        return
    first, last = rules[0], rules[-1]
    indent = len(lines[first]) - len(lines[first].lstrip())
    rows = [re.match(r"(\s*)(\S+) +(.*)$", line) for line in lines[first + 1 : last]]
    if not all(rows):
        return
    width = max(len(row.group(2)) for row in rows)
    rest = len(lines[first].split()[1])
    for i, row in zip(range(first + 1, last), rows, strict=True):
        lines[i] = " " * indent + row.group(2).ljust(width) + " " + row.group(3)
    for i in (first, last):
        lines[i] = " " * indent + "=" * width + " " + "=" * rest


# Structural fixes (a function of the docstring's lines), same rules as DOCSTRING_FIXES;
# remove an entry as soon as its docstring is fixed (the realignment assumes one-line rows).
DOCSTRING_CALLABLE_FIXES = {
    # its simple table's first column is narrower than "motor_score" ("Malformed table")
    "skmlmi.datasets.impact.load_impact": _realign_simple_table,
}


def _fix_docstring(app, what, name, obj, options, lines):
    key = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
    if key in DOCSTRING_CALLABLE_FIXES:
        DOCSTRING_CALLABLE_FIXES[key](lines)
    for old, new in DOCSTRING_FIXES.get(key, ()):
        for i, line in enumerate(lines):
            if old in line and new not in line:
                lines[i] = line.replace(old, new)


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
# Pages without sub-pages have no section to navigate: no left sidebar (an empty "Section
# Navigation" box otherwise); the top bar links every section from every page.
LEAF_PAGES = ("index", "changelog", "gallery", "code_layout", "coming_from_r", "models", "contributing")
html_sidebars = {page: [] for page in LEAF_PAGES}
html_context = {"default_mode": "light"}


# -- API reference, generated from the modules' __all__ ---------------------------------
# docs/api/ is written at every build (it is a build artefact, like docs/api/generated/):
# one page per public top-level module, listing every class and function of its public
# API, so a name added to a module's ``__all__`` (or a new public module) is documented
# without editing the docs. A name is documented once, under the shortest public path
# that exports it (``skmlmi.conditional.RandomEffectsNormal``, not
# ``skmlmi.conditional.random_effects.RandomEffectsNormal``).
API_DIR = HERE / "api"

# Page order and titles; modules not named here follow in alphabetical order.
API_PAGES = {
    "skmlmi": "The imputer and the pooler",
    "skmlmi.conditional": "Conditional models",
    "skmlmi.predictors": "Predictor matrix and default models",
    "skmlmi.recommend": "Recommendations",
    "skmlmi.diagnostics": "Diagnostics",
    "skmlmi.pooling": "Pooling",
    "skmlmi.analysis": "Analysis models",
    "skmlmi.meta_analysis": "Meta-analysis",
    "skmlmi.ampute": "Amputation",
    "skmlmi.datasets": "Datasets",
    "skmlmi.cli": "Command line",
}
# Listed first on their page (the rest keep their module's __all__ order).
API_FIRST = ["MultilevelIterativeImputer", "MIPooler"]
API_INTRO = """\
.. _api:

=============
API reference
=============

Every public class and function, by module (this listing is generated from the modules'
``__all__``). The docstrings are the manual: each class page gives the model, the priors,
the draws, the parameters with their defaults and costs, and references. Role codes are
in :ref:`role-codes`; the statistical models are summarised in :doc:`/models`.

.. toctree::
   :maxdepth: 2

"""


def _public_modules() -> dict[str, object]:
    import importlib
    import pkgutil

    modules = {"skmlmi": skmlmi}
    for info in pkgutil.walk_packages(skmlmi.__path__, "skmlmi."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        try:
            modules[info.name] = importlib.import_module(info.name)
        except Exception as exc:  # a module that cannot be imported cannot be documented
            logger.warning(f"skmlmi docs: cannot import {info.name}: {type(exc).__name__}: {exc}")
    return modules


def _api_entries(modules) -> dict[str, list[tuple[str, str, object]]]:
    """Top-level module -> [(documenting module, name, object)], deduplicated by identity."""
    import inspect

    seen: dict[int, tuple[str, str]] = {}
    # Shortest path first, so a package's re-export wins over the defining submodule.
    for modname in sorted(modules, key=lambda name: (name.count("."), name)):
        module = modules[modname]
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name, None)
            if obj is None or not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            seen.setdefault(id(obj), (modname, name))
    entries: dict[str, list[tuple[str, str, object]]] = {}
    for modname, module in modules.items():  # keep __all__ order within a module
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name, None)
            if obj is not None and seen.get(id(obj)) == (modname, name):
                top = modname if modname == "skmlmi" else ".".join(modname.split(".")[:2])
                entries.setdefault(top, []).append((modname, name, obj))
    return entries


def _first_line(module) -> str:
    doc = (module.__doc__ or "").strip()
    return doc.splitlines()[0].rstrip(".") if doc else module.__name__


def write_api_pages() -> list[str]:
    """Write docs/api/*.rst; returns the documented names (full dotted paths)."""
    import shutil

    modules = _public_modules()
    entries = _api_entries(modules)
    if API_DIR.exists():
        shutil.rmtree(API_DIR)  # stale stubs of renamed functions would be orphan documents
    API_DIR.mkdir()
    order = [name for name in API_PAGES if name in entries]
    order += sorted(name for name in entries if name not in API_PAGES)
    documented = []
    index = [API_INTRO]
    for top in order:
        slug = top.replace(".", "_")
        index.append(f"   {slug}\n")
        title = API_PAGES.get(top, _first_line(modules[top]))
        lines = [f".. _api-{slug}:", "", title, "=" * len(title), ""]
        if top != "skmlmi":
            lines += [f".. automodule:: {top}", "   :no-members:", "   :no-index:", ""]
        groups: dict[str, list[str]] = {}
        ranked = sorted(entries[top], key=lambda e: API_FIRST.index(e[1]) if e[1] in API_FIRST else len(API_FIRST))
        for modname, name, _ in ranked:
            groups.setdefault(modname, []).append(name)
            documented.append(f"{modname}.{name}")
        for modname, names in groups.items():
            if modname != top:
                heading = f"``{modname}``: {_first_line(modules[modname])}"
                lines += [heading, "-" * len(heading), ""]
            lines += [
                f".. currentmodule:: {modname}",
                "",
                ".. autosummary::",
                "   :toctree: generated",
                "   :nosignatures:",
                "",
            ]
            lines += [f"   {name}" for name in names] + [""]
        (API_DIR / f"{slug}.rst").write_text("\n".join(lines), encoding="utf-8")
    (API_DIR / "index.rst").write_text("".join(index), encoding="utf-8")
    return documented


API_DOCUMENTED = write_api_pages()


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
            lines = [f".. figure:: /_static/gallery/{name}.png", f"   :alt: {name}", ""]
            lines += [f"   {line}" for line in self.content]
        else:
            lines = [
                f".. note:: The image of ``{name}`` is rendered by ``docs/make_gallery.py``, "
                "which needs matplotlib; it was not rendered in this build.",
                "",
            ]
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
            note = f"({self.arguments[0]} is written by docs/make_gallery.py; not in this build.)"
            return [nodes.paragraph(text=note)]
        text = path.read_text(encoding="utf-8")
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


# -- The models' table, from the registry ------------------------------------------------
MODEL_TABLE_HEADER = (
    "Model",
    "R names",
    "Target kinds",
    "Role codes",
    "Never-observed clusters",
    "Level",
    "Default for",
)


def model_table_rst() -> list[str]:
    """``skmlmi.conditional.registry.model_table()`` as an RST list-table (one row per registered model)."""
    from skmlmi.conditional.registry import model_table

    lines = [".. list-table::", "   :header-rows: 1", "   :widths: 20 14 14 10 10 7 25", ""]
    for k, row in enumerate([list(MODEL_TABLE_HEADER), *model_table()]):
        cells = row if k == 0 else [f":class:`~skmlmi.conditional.{row[0]}`", *row[1:]]
        for j, cell in enumerate(cells):
            lines.append(f"   {'* -' if j == 0 else '  -'} {cell}")
    return lines


class ModelTable(Directive):
    """``.. model-table::`` -- the registered models and what each declares (:func:`model_table_rst`)."""

    def run(self):
        container = nodes.container()
        self.state.nested_parse(StringList(model_table_rst(), source="model-table"), self.content_offset, container)
        return container.children


# -- Markdown include (the changelog) -------------------------------------------------
_HEADING_MARKS = {1: "=", 2: "-", 3: "~", 4: "^"}


def markdown_to_rst(text: str) -> list[str]:
    """Translate the Markdown subset our CHANGELOG.md uses (headings, lists, code, links)."""
    out: list[str] = []
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            out += [".. code-block:: text", ""] if in_code else [""]
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
    text = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"`\1 <\2>`__", text)  # links
    text = re.sub(r"(?<!`)`([^`]+)`(?!`)", r"``\1``", text)  # inline code
    text = re.sub(r"\*\*([^*]+)\*\*", r"**\1**", text)  # bold stays
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
    directives.register_directive("model-table", ModelTable)
    app.connect("builder-inited", lambda app: _render_gallery())
    # Before numpydoc's handler (default priority 500): the fixes see the raw docstring.
    app.connect("autodoc-process-docstring", _fix_docstring, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
