"""Parity with R's mice 3.15 on popmis (../shared/reference/popmis_mice.csv, m = 50, maxit = 10).

Compared are the means over imputations of the lmer-type estimates of
popular ~ 1 + sex + texp + (1 | school) (REML, statsmodels MixedLM). The tolerance is
4 * sqrt(se_R^2 + se_ours^2) + 0.01 (0.005 for the ICC), se being the Monte Carlo standard
error sd/sqrt(m) of each side: four combined Monte Carlo SEs make a false alarm very
unlikely (two-sided p ~ 6e-5 per comparison), the small absolute term covers the
remaining analysis-model differences. The random-effects model is compared with R's 2l.pan
rows (its priors are pan's); R's own 2l.pan and 2l.lmer differ by about 4 SE in tau2, so the
2l.lmer rows get twice the tolerance. ``popular`` holds whole numbers; an explicitly chosen normal
model imputes them unrounded, as R's 2l.pan does. The defaults (RandomEffectsPMM for a
whole-number column, the cluster mean of sex added) are compared with 2l.pan's ICC.
"""

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skmlmi import MultilevelIterativeImputer
from skmlmi.analysis import LinearMixedModel
from skmlmi.conditional import PredictiveMeanMatching, RandomEffectsNormal
from skmlmi.datasets import load_popmis

REFERENCE = Path(os.environ["SKMLMI_SHARED"]) / "reference" / "popmis_mice.csv"
TERMS = ["sex", "texp", "tau2", "sigma2", "icc"]


def lmer_estimates(data: pd.DataFrame) -> dict:
    """lme4-equivalent REML fit (LinearMixedModel matches lme4 to ~1e-6 on popmis)."""
    fit = LinearMixedModel("popular ~ 1 + sex + texp + (1 | school)").fit(data)
    vc = fit.variance_components_
    return {
        "sex": fit.coef_["sex"],
        "texp": fit.coef_["texp"],
        "tau2": vc["Intercept~~Intercept|school"],
        "sigma2": vc["Residual~~Residual"],
        "icc": vc["ICC|school"],
    }


def compare_with_r(sets, row: str) -> pd.DataFrame:
    reference = pd.read_csv(REFERENCE).query("method == @row").set_index("term")
    ours = pd.DataFrame([lmer_estimates(s) for s in sets])
    table = pd.DataFrame(
        {
            "ours": ours[TERMS].mean(),
            "se_ours": ours[TERMS].std() / np.sqrt(len(sets)),
            "R": reference.loc[TERMS, "estimate"],
            "se_R": reference.loc[TERMS, "mc_se"],
        }
    )
    table["tolerance"] = 4 * np.hypot(table["se_ours"], table["se_R"]) + np.where(table.index == "icc", 0.005, 0.01)
    table["difference"] = table["ours"] - table["R"]
    return table


@pytest.mark.skipif(not REFERENCE.exists(), reason="shared/reference not beside the repository")
@pytest.mark.parametrize(
    "row, predictor_matrix",
    [("pmm", {"school": {"popular": 0}}), ("pmm_cluster_dummies", {"school": {"popular": 1}})],
    ids=["pmm ignoring clusters", "pmm with school fixed effects"],
)
def test_pmm_matches_r_mice_on_popmis(row, predictor_matrix):
    data = load_popmis()[["school", "popular", "sex", "texp"]]
    imp = MultilevelIterativeImputer(
        methods={"popular": PredictiveMeanMatching()},
        predictor_matrix=predictor_matrix,
        n_imputations=50,
        max_iter=10,
        random_state=2022,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sets = imp.fit_transform_all(data, groups="school")
    table = compare_with_r(sets, row)
    failing = table[table["difference"].abs() > table["tolerance"]]
    assert failing.empty, f"differs from R's mice {row}:\n{table.round(4)}"


@pytest.mark.skipif(not REFERENCE.exists(), reason="shared/reference not beside the repository")
@pytest.mark.parametrize(
    "rows, sex_role",
    [(("2l.pan", "2l.lmer"), 2), (("2l.pan_ri", "2l.lmer_ri"), 1)],
    ids=["random slope of sex", "random intercept"],
)
def test_random_effects_normal_matches_r_2l_pan_on_popmis(rows, sex_role):
    data = load_popmis()[["school", "popular", "sex", "texp"]]
    imp = MultilevelIterativeImputer(
        methods={"popular": RandomEffectsNormal()},
        predictor_matrix={"sex": {"popular": sex_role}},
        n_imputations=50,
        max_iter=10,
        random_state=2022,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sets = imp.fit_transform_all(data, groups="school")
    pan, lmer = rows
    table = compare_with_r(sets, pan)
    failing = table[table["difference"].abs() > table["tolerance"]]
    assert failing.empty, f"differs from R's mice {pan}:\n{table.round(4)}"
    table = compare_with_r(sets, lmer)
    failing = table[table["difference"].abs() > 2 * table["tolerance"]]
    assert failing.empty, f"differs from R's mice {lmer} by more than twice the tolerance:\n{table.round(4)}"


@pytest.mark.skipif(not REFERENCE.exists(), reason="shared/reference not beside the repository")
def test_defaults_keep_the_icc_of_r_2l_pan_on_popmis():
    # what a new user runs: no methods, no predictor matrix
    data = load_popmis()[["school", "popular", "sex", "texp"]]
    imp = MultilevelIterativeImputer(n_imputations=50, max_iter=10, random_state=2022)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sets = imp.fit_transform_all(data, groups="school")
    assert type(imp.methods_["popular"]).__name__ == "RandomEffectsPMM"
    table = compare_with_r(sets, "2l.pan_ri")
    assert abs(table.loc["icc", "difference"]) <= table.loc["icc", "tolerance"], table.round(4)
