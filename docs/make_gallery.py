"""Render one PNG per plotting function of skmlmi.diagnostics.plots into docs/_static/gallery/.

Also writes text outputs: icc_table.txt, suggest_predictors.txt, convergence_table.txt (last iteration).

The docs build calls ``python docs/make_gallery.py`` (or ``make_gallery(outdir)``); the data
are R's popmis (2000 pupils in 100 schools) with extra missing values made by
``skmlmi.ampute.ampute``: pupil sex and teacher popularity sporadically, teacher
experience (a school-level variable) systematically in 5 schools.

Run: ``python docs/make_gallery.py [outdir]`` (about 10 s).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from skmlmi import MultilevelIterativeImputer  # noqa: E402
from skmlmi.ampute import ampute  # noqa: E402
from skmlmi.datasets import load_popmis  # noqa: E402
from skmlmi.diagnostics.plots import (  # noqa: E402
    convergence_table,
    icc_table,
    plot_corr,
    plot_imputed,
    plot_missing_by_cluster,
    plot_pattern,
    plot_predictor_matrix,
    plot_trace,
)
from skmlmi.predictors import suggest_predictors  # noqa: E402

FORMULA = "popular ~ sex + texp + (1 + sex | school)"


def example_data():
    """popmis with sporadic missing sex/teachpop and texp missing in 5 whole schools."""
    data = load_popmis()[["school", "popular", "sex", "texp", "teachpop"]]
    return ampute(
        data,
        groups="school",
        prop=0.3,
        mechanism="MAR",
        patterns=[["sex"], ["teachpop"]],
        weights={"popular": 0.0, "texp": 1.0, "sex": 0.0, "teachpop": 0.0},
        systematic_clusters={"texp": 5},
        random_state=8,
    )


def make_gallery(outdir: str | Path | None = None) -> list[Path]:
    """Write the gallery PNGs and return their paths."""
    outdir = Path(outdir) if outdir is not None else Path(__file__).parent / "_static" / "gallery"
    outdir.mkdir(parents=True, exist_ok=True)
    data = example_data()
    suggestion = suggest_predictors(FORMULA, data, auxiliary=["teachpop"])
    imputer = MultilevelIterativeImputer.from_suggestion(suggestion, n_imputations=5, max_iter=10, random_state=2022)
    completed = imputer.fit_transform_all(data, groups="school")

    plots = {
        "plot_pattern": plot_pattern(data.drop(columns="school")),
        "plot_missing_by_cluster": plot_missing_by_cluster(data, "school"),
        "plot_corr": plot_corr(data.drop(columns="school")),
        "plot_corr_missingness": plot_corr(data.drop(columns="school"), missingness=True),
        "plot_predictor_matrix": plot_predictor_matrix(imputer),
        "plot_trace": plot_trace(imputer),
        "plot_imputed": plot_imputed(data, completed, ["popular", "sex"], groups="school", n_clusters=3),
    }
    paths = []
    for name, plot in plots.items():
        path = outdir / f"{name}.png"
        plot.figure.savefig(path, dpi=90, bbox_inches="tight")
        plt.close(plot.figure)
        paths.append(path)
    table = icc_table(data, completed, "school")
    (outdir / "icc_table.txt").write_text(table.round(3).to_string() + "\n")
    (outdir / "suggest_predictors.txt").write_text(suggestion.explanation + "\n")
    convergence = convergence_table(imputer)
    last = convergence[convergence["iteration"] == convergence["iteration"].max()]
    (outdir / "convergence_table.txt").write_text(last.round(3).to_string(index=False) + "\n")
    return paths


if __name__ == "__main__":
    for p in make_gallery(sys.argv[1] if len(sys.argv) > 1 else None):
        print(p)
