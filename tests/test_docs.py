"""The documentation builds with warnings as errors, its internal links resolve, and a browser renders it.

One Sphinx build (about 20-60 s, the gallery script included) is shared by every test of
this module, also across pytest-xdist workers (built once under a file lock). The tests
skip with a message saying what is missing: Sphinx and the theme (``pip install -e
".[docs]"``), or Chromium (``apt-get install chromium``) for the browser checks.
"""

from __future__ import annotations

import fcntl
import importlib.util
import inspect
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "chromium", "chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
API_PAGE = "api/generated/skmlmi.MultilevelIterativeImputer.html"


def _require_sphinx():
    needed = ("sphinx", "numpydoc", "pydata_sphinx_theme", "sphinx-mathjax-offline")
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"docs not built: {', '.join(missing)} not installed (pip install -e '.[docs]')")


@pytest.fixture(scope="module")
def built_docs(tmp_path_factory) -> Path:
    """Build the HTML docs once with -W --keep-going; fail with Sphinx's output if it warns."""
    _require_sphinx()
    # Under xdist every worker has its own basetemp below a shared parent: build there once.
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    root = shared / "skmlmi-docs"
    root.mkdir(exist_ok=True)
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other worker waits for the build, then reuses it
        result_file = root / "result.json"
        if not result_file.exists():
            html = root / "html"
            command = [
                sys.executable,
                "-m",
                "sphinx",
                "-W",
                "--keep-going",
                "-b",
                "html",
                "-d",
                str(root / "doctrees"),
                str(DOCS),
                str(html),
            ]
            run = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT)
            result_file.write_text(
                json.dumps(
                    {"returncode": run.returncode, "output": run.stdout + run.stderr, "command": " ".join(command)}
                )
            )
        result = json.loads(result_file.read_text())
    if result["returncode"] != 0:
        pytest.fail(f"docs build failed ({result['command']}):\n{result['output'][-6000:]}")
    return root / "html"


# ----------------------------------------------------------------------------- build + links
class _LinkParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name") if tag in ("a", "span", "div", "section", "dt", "p", "table", "figure") else ("id",):
            if attrs.get(key):
                self.ids.add(attrs[key])
        for key in ("href", "src"):
            if attrs.get(key) and tag in ("a", "link", "img", "script"):
                self.links.append(attrs[key])
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data


def _parse(path: Path) -> _LinkParser:
    parser = _LinkParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_docs_build_without_warnings(built_docs):
    for page in (
        "index.html",
        "coming_from_r.html",
        "models.html",
        "gallery.html",
        "changelog.html",
        "user_guide/index.html",
        "api/index.html",
        API_PAGE,
    ):
        assert (built_docs / page).is_file(), f"{page} missing from the built docs"


def test_every_internal_link_resolves(built_docs):
    # The documents; _static/ holds the theme's assets (one is a Jinja fragment, not a page).
    pages = {path: _parse(path) for path in built_docs.rglob("*.html") if "_static" not in path.parts}
    broken = []
    for page, parsed in pages.items():
        for link in parsed.links:
            parts = urlsplit(link)
            if parts.scheme or link.startswith("//") or link.startswith("mailto:"):
                continue  # external: not checked (CI may have no network)
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if not target.exists():
                broken.append(f"{page.relative_to(built_docs)}: {link} (no file)")
            elif parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{page.relative_to(built_docs)}: {link} (no anchor)")
    assert not broken, f"{len(broken)} broken internal links:\n" + "\n".join(sorted(set(broken))[:50])


def test_every_public_name_has_an_api_page(built_docs):
    """Each class and function in a public module's __all__ is documented (under some public path)."""
    import importlib
    import pkgutil

    import skmlmi

    generated = {p.stem for p in (built_docs / "api" / "generated").glob("*.html")}
    documented = set()
    for full in generated:
        module, _, name = full.rpartition(".")
        try:
            documented.add(id(getattr(importlib.import_module(module), name)))
        except (ImportError, AttributeError):
            continue
    missing = []
    modules = [skmlmi] + [
        importlib.import_module(m.name)
        for m in pkgutil.walk_packages(skmlmi.__path__, "skmlmi.")
        if not any(part.startswith("_") for part in m.name.split("."))
    ]
    for module in modules:
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and id(obj) not in documented:
                missing.append(f"{module.__name__}.{name}")
    assert not missing, f"public names without an API page: {missing}"


def test_gallery_page_shows_the_rendered_plots(built_docs):
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib not installed: the gallery is not rendered")
    images = [link for link in _parse(built_docs / "gallery.html").links if link.endswith(".png")]
    assert len(images) >= 5, f"gallery shows {len(images)} images"


def test_no_page_has_an_empty_section_navigation_and_every_page_links_the_sections(built_docs):
    # pydata's left sidebar lists the current section's pages; on a page without sub-pages it was an
    # empty "Section Navigation" box. Every page has the top bar's links to the sections.
    empty, unlinked = [], []
    for path in sorted(built_docs.rglob("*.html")):
        if "_static" in path.parts or "_sources" in path.parts or path.name in ("genindex.html", "search.html"):
            continue
        text = path.read_text(encoding="utf-8")
        nav = re.search(r'<nav class="bd-docs-nav[^>]*>(.*?)</nav>', text, flags=re.S)
        if nav and "<li" not in nav.group(1):
            empty.append(path.relative_to(built_docs).as_posix())
        bar = re.search(r'<ul class="bd-navbar-elements[^"]*">(.*?)</ul>', text, flags=re.S)
        if not bar or bar.group(1).count("<li") < 4:
            unlinked.append(path.relative_to(built_docs).as_posix())
    assert not empty, f"pages with an empty section navigation: {empty}"
    assert not unlinked, f"pages without the top bar's section links: {unlinked[:5]}"


def test_changelog_is_included(built_docs):
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    first_entry = re.search(r"^## (.+)$", changelog, flags=re.M).group(1).strip()
    parsed = _parse(built_docs / "changelog.html")
    assert "Changelog" in parsed.title
    assert first_entry in (built_docs / "changelog.html").read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- browser
def _chromium() -> str:
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    pytest.skip(
        "Chromium not found (Debian: apt-get install --no-install-recommends chromium); "
        "browser checks of the docs skipped"
    )


def _browser(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    command = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def _read_png(path: Path) -> np.ndarray:
    """Decode an 8-bit, non-interlaced PNG into (height, width, channels) uint8 (no PIL needed)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat.append(chunk)
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(color)
    assert depth == 8 and channels and not interlace, f"unsupported PNG format in {path}: {header}"
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8).reshape(height, 1 + width * channels)
    out = np.zeros((height, width * channels), dtype=np.int32)
    previous = np.zeros(width * channels, dtype=np.int32)
    for row in range(height):  # PNG filters are sequential along rows (a test helper, not a hot path)
        kind, line = raw[row, 0], raw[row, 1:].astype(np.int32)
        if kind == 0:
            current = line
        elif kind == 2:
            current = (line + previous) % 256
        elif kind == 1:  # Sub: running sum per channel
            current = np.cumsum(line.reshape(width, channels), axis=0).ravel() % 256
        else:  # Average (3) and Paeth (4): byte by byte
            current = line.copy()
            for i in range(len(line)):
                left = current[i - channels] if i >= channels else 0
                up, upleft = previous[i], previous[i - channels] if i >= channels else 0
                if kind == 3:
                    predictor = (left + up) // 2
                else:
                    p = left + up - upleft
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - upleft)
                    predictor = left if pa <= pb and pa <= pc else (up if pb <= pc else upleft)
                current[i] = (line[i] + predictor) % 256
        out[row] = current
        previous = current
    return out.reshape(height, width, channels).astype(np.uint8)


def _load_image(path: Path) -> np.ndarray:
    """RGB(A) pixels in 0..255: matplotlib when installed, else the built-in PNG decoder."""
    if importlib.util.find_spec("matplotlib") is not None:
        import matplotlib.image

        image = matplotlib.image.imread(path)
        return np.round(image * 255).astype(np.uint8) if image.dtype != np.uint8 else image
    return _read_png(path)


@pytest.mark.parametrize("page, title", [("index.html", "skmlmi"), (API_PAGE, "MultilevelIterativeImputer")])
def test_page_renders_in_headless_chromium(built_docs, tmp_path, page, title):
    url = (built_docs / page).as_uri()
    shot = tmp_path / "page.png"
    run = _browser([f"--screenshot={shot}", "--window-size=1280,900", url], tmp_path / "profile")
    assert shot.exists(), f"no screenshot of {page}:\n{run.stderr[-3000:]}"
    keep = os.environ.get("SKMLMI_DOCS_SCREENSHOTS")  # a directory to keep the screenshots in
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / (Path(page).stem + ".png"))
    pixels = _load_image(shot)[..., :3].astype(float)
    assert pixels.shape[:2] == (900, 1280), pixels.shape
    # Non-blank: a page of text on white has a grey-level SD of tens; an empty or
    # single-colour page has 0. 5 is well below a rendered page and well above blank.
    grey = pixels.mean(axis=2)
    assert grey.std() > 5, f"{page} renders blank (grey-level SD {grey.std():.2f})"
    # Something dark (text) and something light (background) are both on screen.
    assert (grey < 100).mean() > 0.002 and (grey > 200).mean() > 0.3, f"{page} does not look like a text page"

    dom = _browser(["--dump-dom", url], tmp_path / "profile-dom").stdout
    titles = re.findall(r"<title>(.*?)</title>", dom, flags=re.S)
    assert titles and title in titles[0], f"{page}: title {titles[:1]} does not name {title!r}"
    assert title in re.sub(r"<[^>]+>", " ", dom), f"{page}: {title!r} not in the rendered text"


def test_maths_and_navigation_render_offline_in_headless_chromium(built_docs, tmp_path):
    # MathJax is copied into _static (no CDN): in a browser without network, every formula of the models
    # page becomes a rendered container and no raw TeX delimiter is left in the visible text.
    page = built_docs / "models.html"
    html = page.read_text(encoding="utf-8")
    assert "_static/mathjax/tex-chtml.js" in html and "cdn.jsdelivr" not in html
    formulas = html.count('class="math notranslate')
    assert formulas >= 10, f"the models page has {formulas} formulas"
    run = _browser(["--virtual-time-budget=20000", "--dump-dom", page.as_uri()], tmp_path / "profile")
    dom = run.stdout
    rendered = dom.count("<mjx-container")
    visible = re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S))
    raw = re.findall(r"\\\(|\\\[", visible)
    assert rendered >= formulas and not raw, f"{rendered} of {formulas} formulas rendered, {len(raw)} raw delimiters"
    # ... and the rendered page can be navigated: the top bar's section links, no empty section navigation
    bar = re.search(r'<ul class="bd-navbar-elements[^"]*">(.*?)</ul>', dom, flags=re.S)
    assert bar and bar.group(1).count("<li") >= 4, "the rendered page has no section links in its top bar"
    nav = re.search(r'<nav class="bd-docs-nav[^>]*>(.*?)</nav>', dom, flags=re.S)
    assert not nav or "<li" in nav.group(1), "the rendered page shows an empty section navigation"


def test_models_page_table_is_the_registrys(built_docs):
    # docs/models.rst renders skmlmi.conditional.registry.model_table() (the ``model-table`` directive
    # of docs/conf.py): one row per registered model, with its R names, so a new model appears by itself
    from skmlmi.conditional.registry import model_table

    html = (built_docs / "models.html").read_text(encoding="utf-8")
    section = html.split('id="the-models-at-a-glance"', 1)[1].split("</table>", 1)[0]
    body = section.split("<tbody>", 1)[1]
    rows = body.split("<tr")[1:]
    expected = model_table()
    assert len(rows) == len(expected)
    for row_html, row in zip(rows, expected, strict=True):
        assert f"skmlmi.conditional.{row[0]}" in row_html, row[0]
        for cell in row[1:3]:  # R names and target kinds, as the registry declares them
            assert cell.replace("--", "–") in row_html or cell in row_html, (row[0], cell)


def test_contributing_page_says_how_to_build_the_docs_and_code_lines_wrap(built_docs):
    text = re.sub(r"<[^>]+>", "", (built_docs / "contributing.html").read_text(encoding="utf-8"))
    assert "python -m sphinx -W --keep-going -b html docs docs/_build/html" in text
    css = (built_docs / "_static" / "skmlmi.css").read_text(encoding="utf-8")
    assert re.search(r"\.bd-article pre \{[^}]*white-space: pre-wrap", css)
