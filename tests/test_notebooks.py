"""The case-study notebooks run, their assertions hold, and their key numbers agree with the
committed outputs within their Monte Carlo error.

Each notebook prints ``KEY: label = value (MC SE se)`` lines (see notebooks/specs.py). The
numbers come from Markov chains, which turn last-bit differences between machines (the BLAS
kernel OpenBLAS picks for the CPU at run time, library versions) into different draws: a
fresh run reproduces the committed digits on the machine that built the notebooks, and
elsewhere agrees in distribution only. The comparison is therefore statistical.
"""

import importlib.util
import math
import os
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is in the test extra")
nbclient = pytest.importorskip("nbclient", reason="nbclient is in the test extra")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# notebooks/build.py reads the KEY lines the same way when it builds them
_spec = importlib.util.spec_from_file_location("notebooks_build", ROOT / "notebooks" / "build.py")
_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_build)
KEY = re.compile(r"^KEY: (?P<label>.+) = (?P<value>-?\d+\.(?P<decimals>\d+)) \(MC SE (?P<se>\d+\.\d+)\)$")

# Two runs whose chains draw different random numbers give key numbers whose difference is
# about normal with SD sqrt(se_committed^2 + se_fresh^2), each se the Monte Carlo SE its run
# reports: SD / sqrt(m) of a mean over m independent chains, or the jackknife SE over the
# chains of a smooth function of such means. As both SEs are estimated from the chains, the
# standardised difference is closer to a t with about 2(m - 1) df: 18 for m = 10, 38 for
# m = 20. |t| > 4 then has probability 8e-4 (m = 10) or 3e-4 (m = 20) per key; over the 13
# simulated keys of the three notebooks (9 with m = 10, 4 with m = 20) a false alarm on a
# fresh machine has probability below 1%, while a shift of 5 or more combined SEs (a real
# change of the methods' results) is caught most of the time.
COMBINED_SES = 4.0


def _keys(notebook, which: str) -> dict[str, tuple[float, float, float]]:
    """label -> (value, Monte Carlo SE, unit of the value's last printed digit)."""
    keys = {}
    for line in _build.key_lines(notebook):
        match = KEY.match(line)
        assert match, f"{which} KEY line {line!r} is not 'KEY: label = value (MC SE se)'"
        unit = 10.0 ** -len(match["decimals"])
        keys[match["label"]] = (float(match["value"]), float(match["se"]), unit)
    assert keys, f"the {which} notebook prints no KEY lines"
    return keys


def _disagreements(committed: dict, fresh: dict) -> list[str]:
    problems = []
    if list(committed) != list(fresh):
        problems.append(f"KEY labels differ: committed {list(committed)}, fresh {list(fresh)}")
    for label in committed.keys() & fresh.keys():
        (a, se_a, unit), (b, se_b, _) = committed[label], fresh[label]
        # each printed value is rounded to half a unit of its last digit: one unit covers both
        # (plus a hair for the binary representation of decimals), and is the whole tolerance
        # of a number that involves no random draws (both SEs 0)
        tolerance = COMBINED_SES * math.hypot(se_a, se_b) + unit * (1 + 1e-6)
        if not abs(a - b) <= tolerance:
            problems.append(
                f"{label}: committed {a} (MC SE {se_a}), fresh {b} (MC SE {se_b}); "
                f"|difference| {abs(a - b):.4g} > {tolerance:.4g} ({COMBINED_SES:g} combined MC SEs)"
            )
    return problems


def test_key_comparison_allows_monte_carlo_error_and_catches_shifts():
    committed = {"simulated": (10.0, 0.5, 1e-4), "exact": (0.5, 0.0, 1e-4)}
    # 1.3 combined SEs apart, and a number without random draws off by its rounding only
    assert not _disagreements(committed, {"simulated": (10.9, 0.5, 1e-4), "exact": (0.5001, 0.0, 1e-4)})
    assert _disagreements(committed, {"simulated": (13.0, 0.5, 1e-4), "exact": (0.5, 0.0, 1e-4)})  # 4.2 SEs
    assert _disagreements(committed, {"simulated": (10.0, 0.5, 1e-4), "exact": (0.5002, 0.0, 1e-4)})
    assert _disagreements(committed, {"exact": (0.5, 0.0, 1e-4), "simulated": (10.0, 0.5, 1e-4)})  # order


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_agrees_with_its_key_numbers(path, monkeypatch):
    # the kernel is a separate process: make it import this checkout's skmlmi
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    committed = nbformat.read(path, as_version=4)
    fresh = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(
        fresh, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    problems = _disagreements(_keys(committed, "committed"), _keys(fresh, "fresh"))
    assert not problems, "\n".join(problems)


def _plot_cells(notebook) -> list[tuple[int, bool]]:
    """(cell number, whether it has an image output) for every code cell that draws a diagnostic plot."""
    cells = []
    for number, cell in enumerate(notebook.cells):
        if cell.cell_type == "code" and "diagnostics.plot_" in cell.source:
            images = [o for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
            cells.append((number, bool(images)))
    return cells


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebooks_show_their_plots_as_images(path):
    # a plot is an image in the notebook, not "<Figure size 900x280 with 2 Axes>" (the Agg backend's text)
    notebook = nbformat.read(path, as_version=4)
    cells = _plot_cells(notebook)
    assert cells, f"{path.stem} draws no plot"
    assert all(has_image for _, has_image in cells), f"plot cells without an image: {cells}"
    texts = [
        "".join(o["data"]["text/plain"])
        for cell in notebook.cells
        for o in cell.get("outputs", [])
        if set(o.get("data", {})) == {"text/plain"}
    ]
    assert not [t for t in texts if t.startswith("<Figure size")]


# The tutorial's steps each notebook must show (a call in its code cells), and what a notebook must not do:
# select the Agg backend (no plots) or silence the warnings a user would see.
TUTORIAL_STEPS = {
    "01_popmis": ["plot_pattern(", "plot_missing_by_cluster(", "plot_corr(", 'boxplot(column="popular", by="sex"',
                  "plan_summary(", "plot_predictor_matrix(", "plot_trace(", "plot_imputed(", "MIPooler("],
    "02_impact": ["plot_pattern(", "plot_corr(", 'drop(columns="hypox")', 'LogisticMixedModel(FORMULA, missing="drop")',
                  "np.exp(pooled[\"conf_low\"])", "plot_missing_by_cluster(", "plot_trace("],
    "03_mnar_heckman": ["HeckmanSelection(", "plot_trace(", "convergence_table(", ".analyse(analysis)"],
}  # fmt: skip


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_follow_the_tutorial_and_hide_nothing(path):
    notebook = nbformat.read(path, as_version=4)
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    missing = [step for step in TUTORIAL_STEPS[path.stem] if step not in code]
    assert not missing, f"{path.stem} lacks the steps {missing}"
    assert 'matplotlib.use("Agg")' not in code and 'simplefilter("ignore")' not in code
