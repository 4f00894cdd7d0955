"""Parity tables with R's mice 3.15 on popmis (the figures the parity tests assert).

Run: python benchmarks/parity_popmis.py  (needs ../shared/reference beside the repository)
Each row: mean over m = 50 imputations (max_iter = 10) of the REML estimates of
popular ~ 1 + sex + texp + (1 | school), ours and R's, with Monte Carlo SEs and the
tolerance 4 * sqrt(se_R^2 + se_ours^2) + 0.01 (0.005 for the ICC).
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("SKMLMI_SHARED", str(ROOT.parent / "shared"))
sys.path.insert(0, str(ROOT / "tests" / "validation"))
from test_parity_popmis import compare_with_r  # noqa: E402

from skmlmi import MultilevelIterativeImputer  # noqa: E402
from skmlmi.conditional import PredictiveMeanMatching, RandomEffectsNormal  # noqa: E402
from skmlmi.datasets import load_popmis  # noqa: E402

RUNS = [
    ("pmm", PredictiveMeanMatching(), {"school": {"popular": 0}}, None),
    ("pmm_cluster_dummies", PredictiveMeanMatching(), {"school": {"popular": 1}}, None),
    ("2l.pan", RandomEffectsNormal(), {"sex": {"popular": 2}}, "continuous"),
    ("2l.pan_ri", RandomEffectsNormal(), {"sex": {"popular": 1}}, "continuous"),
    ("2l.lmer", RandomEffectsNormal(), {"sex": {"popular": 2}}, "continuous"),
    ("2l.lmer_ri", RandomEffectsNormal(), {"sex": {"popular": 1}}, "continuous"),
]


def main() -> None:
    warnings.simplefilter("ignore")
    data = load_popmis()[["school", "popular", "sex", "texp"]]
    with pd.option_context("display.width", 160, "display.float_format", "{:.4f}".format):
        for row, model, matrix, kind in RUNS:
            imp = MultilevelIterativeImputer(
                methods={"popular": model},
                predictor_matrix=matrix,
                column_kinds={"popular": kind} if kind else None,
                n_imputations=50,
                max_iter=10,
                random_state=2022,
            )
            table = compare_with_r(imp.fit_transform_all(data, groups="school"), row)
            factor = 2 if row.startswith("2l.lmer") else 1
            table["within"] = table["difference"].abs() <= factor * table["tolerance"]
            note = " (2x tolerance)" if factor > 1 else ""
            print(f"\n== skmlmi {type(model).__name__} against R mice {row}{note}")
            print(table.to_string())


if __name__ == "__main__":
    main()
