"""Parity with R's mice 3.15 on popmis (../shared/reference/popmis_mice.csv, m = 50, maxit = 10).

Compared are the means over imputations of the lmer-type estimates of
popular ~ 1 + sex + texp + (1 | school) (REML, statsmodels MixedLM). The tolerance is
4 * sqrt(se_R^2 + se_ours^2) + 0.01 (0.005 for the ICC), se being the Monte Carlo standard
error sd/sqrt(m) of each side: four combined Monte Carlo SEs make a false alarm very
unlikely (two-sided p ~ 6e-5 per comparison), the small absolute term covers the
analysis-model fit differences between statsmodels and lme4.
"""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from skmlmi import MultilevelIterativeImputer
from skmlmi.conditional import PredictiveMeanMatching
from skmlmi.datasets import load_popmis

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "popmis_mice.csv"
TERMS = ["sex", "texp", "tau2", "sigma2", "icc"]


def lmer_estimates(data: pd.DataFrame) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = smf.mixedlm("popular ~ sex + texp", data, groups=data["school"]).fit(reml=True)
    tau2, sigma2 = float(fit.cov_re.iloc[0, 0]), float(fit.scale)
    return {"sex": fit.fe_params["sex"], "texp": fit.fe_params["texp"], "tau2": tau2, "sigma2": sigma2,
            "icc": tau2 / (tau2 + sigma2)}


def compare_with_r(sets, row: str) -> pd.DataFrame:
    reference = pd.read_csv(REFERENCE).query("method == @row").set_index("term")
    ours = pd.DataFrame([lmer_estimates(s) for s in sets])
    table = pd.DataFrame({
        "ours": ours[TERMS].mean(), "se_ours": ours[TERMS].std() / np.sqrt(len(sets)),
        "R": reference.loc[TERMS, "estimate"], "se_R": reference.loc[TERMS, "mc_se"],
    })
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
    imp = MultilevelIterativeImputer(methods={"popular": PredictiveMeanMatching()}, predictor_matrix=predictor_matrix,
                                     n_imputations=50, max_iter=10, random_state=2022)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sets = imp.fit_transform_all(data, groups="school")
    table = compare_with_r(sets, row)
    failing = table[table["difference"].abs() > table["tolerance"]]
    assert failing.empty, f"differs from R's mice {row}:\n{table.round(4)}"
