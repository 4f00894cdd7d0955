"""Formulas with transformed terms fit as R does: lme4 / lm fits and mitml pooling on the completed popmis data.

References: tests/analysis/reference/formula_terms_*.csv, made by benchmarks/formula_terms_reference.R
(R 4.2.2, lme4 1.1-31, mitml 0.4-4) from the 5 completed datasets of the shared reference folder.
Identical inputs, so differences are optimiser precision (lme4 stops at ~1e-6 relative in theta):
1e-4 relative, as the issue asks (with 1e-4 x SE absolute for estimates near zero).
"""

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skmlmi.analysis import OLS, LinearMixedModel
from skmlmi.pooling import pool, pool_variance_components

HERE = Path(__file__).parent / "reference"
SHARED = Path(os.environ["SKMLMI_SHARED"]) / "reference" / "popmis_completed_long.csv"
MODELS = {
    "lmm_terms": (LinearMixedModel, "popular ~ C(sex, Treatment(1)) + I(texp ** 2) + np.log(texp) + (1 | school)"),
    "lmm_slope": (LinearMixedModel, "popular ~ C(sex, Treatment(1)) * np.log(texp) + (1 + sex | school)"),
    "lm_poly": (OLS, "popular ~ poly(texp, 2) + C(sex)"),
    "lm_bs": (OLS, "popular ~ bs(texp, df=4) + sex"),
    "lm_scale": (OLS, "popular ~ scale(texp) + np.sqrt(texp) + np.exp(sex)"),
}
NAMES = {
    "lmm_terms": ["(Intercept)", "sex0", "I(texp ** 2)", "np.log(texp)"],
    "lmm_slope": ["(Intercept)", "sex0", "np.log(texp)", "sex0:np.log(texp)"],
    "lm_poly": ["(Intercept)", "poly(texp, 2)1", "poly(texp, 2)2", "sex1"],
}
RTOL = 1e-4

pytestmark = pytest.mark.skipif(not SHARED.exists(), reason="shared/reference not beside the repository")


@pytest.fixture(scope="module")
def fits():
    long = pd.read_csv(SHARED)
    sets = [long[long[".imp"] == i].drop(columns=[".imp", ".id"]).reset_index(drop=True) for i in range(1, 6)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fit that warns (convergence) is not a parity fit
        return {name: [cls(formula).fit(d) for d in sets] for name, (cls, formula) in MODELS.items()}


@pytest.fixture(scope="module")
def reference():
    return pd.read_csv(HERE / "formula_terms_fits.csv"), pd.read_csv(HERE / "formula_terms_pooled.csv")


def _close(ours, theirs, se=None):
    ours, theirs = np.asarray(ours, float), np.asarray(theirs, float)
    atol = 0.0 if se is None else 1e-4 * np.asarray(se, float)
    ok = np.abs(ours - theirs) <= RTOL * np.abs(theirs) + atol
    assert ok.all(), pd.DataFrame({"ours": ours, "R": theirs, "relative": np.abs(ours / theirs - 1)})


@pytest.mark.parametrize("model", list(MODELS))
def test_per_imputation_fixed_effects_and_standard_errors_match_r(fits, reference, model):
    table = reference[0]
    for imp, fit in enumerate(fits[model], start=1):
        ref = table[(table.model == model) & (table.imp == imp) & (table.kind == "fixed")].sort_values("position")
        assert len(fit.coef_) == len(ref)
        if model in NAMES:
            assert list(fit.coef_.index) == NAMES[model]
        se = np.sqrt(np.diag(fit.cov_params_.to_numpy()))
        _close(fit.coef_, ref.estimate, se=ref.std_error)
        _close(se, ref.std_error)
        fit_rows = table[(table.model == model) & (table.imp == imp) & (table.kind == "fit")].set_index("term").estimate
        assert fit.df_resid_ == fit_rows["df.residual"]
        if model.startswith("lmm"):
            np.testing.assert_allclose(-2 * fit.loglik_, fit_rows["REMLcrit"], rtol=1e-6)
        else:
            np.testing.assert_allclose(fit.loglik_, fit_rows["logLik"], rtol=1e-6)


@pytest.mark.parametrize("model", ["lmm_terms", "lmm_slope"])
def test_per_imputation_variance_components_match_lme4(fits, reference, model):
    table = reference[0]
    names = {"(Intercept)": "Intercept~~Intercept|school", "sex": "sex~~sex|school"}
    names |= {"(Intercept)~~sex": "Intercept~~sex|school", "Residual": "Residual~~Residual"}
    for imp, fit in enumerate(fits[model], start=1):
        ref = table[(table.model == model) & (table.imp == imp) & (table.kind == "variance")]
        ours = fit.variance_components_[[names[t] for t in ref.term]]
        np.testing.assert_allclose(ours, ref.estimate, rtol=RTOL, atol=1e-6)


@pytest.mark.parametrize("model", list(MODELS))
def test_pooled_estimates_match_mitml(fits, reference, model):
    ref = reference[1][reference[1].model == model].sort_values("position")
    estimates = np.array([f.coef_.to_numpy() for f in fits[model]])
    covariances = np.array([f.cov_params_.to_numpy() for f in fits[model]])
    table = pool(estimates, covariances, dfcom=fits[model][0].df_resid_, names=fits[model][0].coef_.index)
    _close(table["estimate"], ref.estimate, se=ref.std_error)
    _close(table["std_error"], ref.std_error)
    np.testing.assert_allclose(table["df"], ref.df, rtol=1e-3)  # df and fmi amplify the SEs' differences
    np.testing.assert_allclose(table["fmi"], ref.fmi, rtol=1e-3, atol=1e-5)
    if model.startswith("lmm"):
        assert "Residual~~Residual" in pool_variance_components([f.variance_components_ for f in fits[model]])


def test_predict_on_new_data_uses_the_training_state_of_stateful_transforms(fits):
    fit = fits["lm_scale"][0]
    new = pd.DataFrame({"texp": [2.0, 25.0], "sex": [0, 1]})
    train = pd.read_csv(SHARED).query("`.imp` == 1")
    z = (new.texp - train.texp.mean()) / train.texp.std()
    expected = fit.coef_.iloc[0] + fit.coef_.iloc[1] * z + fit.coef_.iloc[2] * np.sqrt(new.texp)
    expected += fit.coef_.iloc[3] * np.exp(new.sex)
    np.testing.assert_allclose(fit.predict(new), expected, rtol=1e-12)
