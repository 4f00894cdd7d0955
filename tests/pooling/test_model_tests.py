"""test_models (mitml testModels) on fitted analysis models."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skmlmi.analysis import GLM, OLS, LinearMixedModel
from skmlmi.pooling import d1, d2, test_models

REFERENCE = Path(os.environ["SKMLMI_SHARED"]) / "reference"


@pytest.fixture(scope="module")
def popmis_sets():
    long = pd.read_csv(REFERENCE / "popmis_completed_long.csv")
    return [long[long[".imp"] == i].drop(columns=[".imp", ".id"]) for i in range(1, 6)]


@pytest.fixture(scope="module")
def mixed_fits(popmis_sets):
    full = [LinearMixedModel("popular ~ 1 + sex + texp + (1 | school)").fit(d) for d in popmis_sets[:3]]
    null = [LinearMixedModel("popular ~ 1 + (1 | school)").fit(d) for d in popmis_sets[:3]]
    return full, null


def test_d1_and_d2_wald_use_the_tested_fixed_effects(mixed_fits):
    full, null = mixed_fits
    q = np.array([f.coef_[["sex", "texp"]].to_numpy() for f in full])
    u = np.array([f.cov_params_.loc[["sex", "texp"], ["sex", "texp"]].to_numpy() for f in full])
    got = test_models(full, null, method="D1")
    pd.testing.assert_frame_equal(got, d1(q, u), check_exact=False, rtol=1e-12)
    assert got.attrs["terms"] == ["sex", "texp"]
    got2 = test_models(full, null, method="D2", use="wald")
    pd.testing.assert_frame_equal(got2, d2(q, u), check_exact=False, rtol=1e-12)


def test_likelihood_tests_refit_reml_models_by_ml(mixed_fits):
    full, null = mixed_fits
    table = test_models(full, null, method="D2", use="likelihood")
    assert table.attrs["refit_ml"] is True
    lr = [-2 * (n.refit_ml().loglik_ - f.refit_ml().loglik_) for f, n in zip(full, null, strict=True)]
    assert table["df1"].iloc[0] == 2
    # all LR statistics are huge (sex and texp are strong predictors): D2 is of their order / k
    assert 0.3 * np.mean(lr) / 2 < table["F"].iloc[0] < np.mean(lr) / 2


def test_d3_equals_lr_statistic_when_imputations_agree(popmis_sets):
    # m copies of one dataset: no between-imputation variance, pooled = own parameters,
    # so D3 = LR / k with r3 = 0 exactly (up to the optimiser's precision)
    d = popmis_sets[0]
    full = [LinearMixedModel("popular ~ sex + texp + (1 | school)", reml=False).fit(d)] * 3
    null = [LinearMixedModel("popular ~ sex + (1 | school)", reml=False).fit(d)] * 3
    table = test_models(full, null, method="D3")
    lr = -2 * (null[0].loglik_ - full[0].loglik_)
    assert table["riv"].iloc[0] == pytest.approx(0.0, abs=1e-9)
    assert table["F"].iloc[0] == pytest.approx(lr, rel=1e-9)
    assert table.attrs["refit_ml"] is False


def test_d3_on_imputations_has_positive_riv_and_fmi_order(mixed_fits):
    full, null = mixed_fits
    table = test_models(full, null, method="D3")
    assert table.attrs["refit_ml"] is True
    row = table.iloc[0]
    assert row["riv"] > 0 and np.isfinite(row["df2"]) and row["p_value"] < 1e-10


def test_loglik_at_own_parameters_reproduces_loglik_for_ml_fits(popmis_sets):
    d = popmis_sets[1]
    for model in (
        LinearMixedModel("popular ~ sex + texp + (1 + sex | school)", reml=False),
        OLS("popular ~ sex + texp"),
        GLM("popular ~ sex + texp"),
    ):
        fit = model.fit(d)
        assert fit.loglik_at(fit.likelihood_params()) == pytest.approx(fit.loglik_, rel=1e-10)


def test_ols_d3_uses_ml_residual_variance(popmis_sets):
    full = [OLS("popular ~ sex + texp").fit(d) for d in popmis_sets]
    null = [OLS("popular ~ sex").fit(d) for d in popmis_sets]
    table = test_models(full, null, method="D3")

    # hand computation of mitml's lm branch
    def ll(fit, beta, sigma2, d):
        X = np.column_stack([np.ones(len(d)), d.sex] + ([d.texp] if len(beta) == 3 else []))
        r = d.popular.to_numpy() - X @ beta
        return -len(d) / 2 * np.log(2 * np.pi * sigma2) - r @ r / (2 * sigma2)

    b1 = np.mean([f.coef_.to_numpy() for f in full], axis=0)
    s1 = np.mean([np.sum((d.popular - f.predict(d)) ** 2) / len(d) for f, d in zip(full, popmis_sets, strict=True)])
    b0 = np.mean([f.coef_.to_numpy() for f in null], axis=0)
    s0 = np.mean([np.sum((d.popular - f.predict(d)) ** 2) / len(d) for f, d in zip(null, popmis_sets, strict=True)])
    dtilde = np.mean([-2 * (ll(None, b0, s0, d) - ll(None, b1, s1, d)) for d in popmis_sets])
    dbar = np.mean([-2 * (n.loglik_ - f.loglik_) for f, n in zip(full, null, strict=True)])
    r = 6 / 4 * (dbar - dtilde)
    assert table["F"].iloc[0] == pytest.approx(dtilde / (1 + r), rel=1e-9)


def test_glm_binomial_d2_likelihood_and_d3_run(popmis_sets):
    sets = [d.assign(high=(d.popular > 5).astype(int)) for d in popmis_sets[:3]]
    full = [GLM("high ~ sex + texp", family="binomial").fit(d) for d in sets]
    null = [GLM("high ~ sex", family="binomial").fit(d) for d in sets]
    for method, use in (("D2", "likelihood"), ("D3", "wald")):
        row = test_models(full, null, method=method, use=use).iloc[0]
        assert row["df1"] == 1 and row["F"] > 10 and 0 <= row["p_value"] < 1e-3


def test_models_rejects_non_nested_and_mismatched_inputs(mixed_fits, popmis_sets):
    full, null = mixed_fits
    with pytest.raises(ValueError, match="nothing to test"):
        test_models(full, full)
    with pytest.raises(ValueError, match="not nested"):
        test_models(null, full)
    with pytest.raises(ValueError, match="one model per imputation"):
        test_models(full, null[:2])
    with pytest.raises(ValueError, match="method"):
        test_models(full, null, method="D4")
    other = LinearMixedModel("popular ~ 1 + sex + (1 | school)").fit(popmis_sets[0])
    with pytest.raises(ValueError, match="imputation 2"):
        test_models([full[0], other, full[2]], null)


def test_dfcom_is_ignored_with_a_warning_outside_d1(mixed_fits):
    full, null = mixed_fits
    with pytest.warns(UserWarning, match="only used by D1"):
        test_models(full, null, method="D2", dfcom=100)
