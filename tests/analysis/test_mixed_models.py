"""Linear and logistic mixed models: parity with lme4 and the pooled popmis results of mitml / mice.

The R fits are deterministic given the completed datasets, so differences are optimiser
precision only: lme4 stops at ~1e-6 relative in theta, which moves estimates and SEs by
< 1e-4 relative (measured: fixed effects <= 8e-6, SEs <= 3e-5, variance components <= 2e-5
absolute). The tolerances are the issue's (1e-3 relative; 1e-4 absolute for the near-zero
covariance).
"""

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from skmlmi.analysis import LinearMixedModel, LogisticMixedModel
from skmlmi.pooling import pool, pool_variance_components

REFERENCE = Path(os.environ["SKMLMI_SHARED"]) / "reference"
DATA = Path(os.environ["SKMLMI_SHARED"]) / "data"
FORMULAS = {
    "ri": "popular ~ 1 + sex + texp + (1 | school)",
    "rs": "popular ~ 1 + sex + texp + (1 + sex | school)",
}


@pytest.fixture(scope="module")
def popmis_sets():
    long = pd.read_csv(REFERENCE / "popmis_completed_long.csv")
    return [long[long[".imp"] == i].drop(columns=[".imp", ".id"]).reset_index(drop=True) for i in range(1, 6)]


@pytest.fixture(scope="module")
def popmis_fits(popmis_sets):
    return {model: [LinearMixedModel(f).fit(d) for d in popmis_sets] for model, f in FORMULAS.items()}


@pytest.fixture(scope="module")
def lmer_fits():
    return pd.read_csv(REFERENCE / "popmis_lmer_fits.csv")


def _lme4_name(term):
    # lme4 "school:(Intercept)~~sex" -> mitml "Intercept~~sex|school"
    if term == "Residual~~Residual":
        return term
    group, rest = term.split(":", 1)
    return rest.replace("(Intercept)", "Intercept") + "|" + group


@pytest.mark.parametrize("model", ["ri", "rs"])
def test_per_imputation_fits_match_lme4(popmis_fits, lmer_fits, model):
    for imp, fit in enumerate(popmis_fits[model], start=1):
        ref = lmer_fits[(lmer_fits.model == model) & (lmer_fits.imp == imp)].set_index("term")
        fixed = ref[ref.kind == "fixed"]
        np.testing.assert_allclose(fit.coef_[fixed.index], fixed.estimate, rtol=1e-3)
        se = np.sqrt(np.diag(fit.cov_params_.loc[fixed.index, fixed.index]))
        np.testing.assert_allclose(se, fixed.std_error, rtol=1e-3)
        variances = ref[ref.kind == "variance"]
        ours = fit.variance_components_[[_lme4_name(t) for t in variances.index]].to_numpy()
        close = np.isclose(ours, variances.estimate, rtol=1e-3) | np.isclose(ours, variances.estimate, atol=1e-4)
        assert close.all(), (imp, ours, variances.estimate.to_numpy())
        assert fit.df_resid_ == ref.loc["df.residual", "estimate"]
        assert fit.converged_


@pytest.mark.parametrize("model", ["ri", "rs"])
@pytest.mark.parametrize("source", ["mitml_testEstimates_dfcom", "mitml_testEstimates_largesample", "mice_pool"])
def test_pooled_popmis_matches_mitml_and_mice(popmis_fits, model, source):
    fits = popmis_fits[model]
    ref = pd.read_csv(REFERENCE / "popmis_pooled.csv")
    ref = ref[(ref.model == model) & (ref.source == source)].set_index("term")
    estimates = np.array([f.coef_.to_numpy() for f in fits])
    covariances = np.array([f.cov_params_.to_numpy() for f in fits])
    dfcom = None if "largesample" in source else fits[0].df_resid_
    table = pool(estimates, covariances, dfcom=dfcom, names=fits[0].coef_.index).loc[ref.index]
    np.testing.assert_allclose(table["estimate"], ref["estimate"], rtol=1e-3)
    np.testing.assert_allclose(table["std_error"], ref["std_error"], rtol=1e-3)
    np.testing.assert_allclose(table["df"], ref["df"], rtol=5e-3)
    np.testing.assert_allclose(table["fmi"], ref["fmi"], rtol=5e-3)


@pytest.mark.parametrize("model", ["ri", "rs"])
def test_pooled_variance_components_match_mitml_extra_pars(popmis_fits, model):
    # mitml: plain mean over imputations, ICC computed per imputation then averaged
    ref = pd.read_csv(REFERENCE / "popmis_pooled.csv")
    ref = ref[(ref.model == model) & (ref.source == "mitml_extra_pars")].set_index("term")["estimate"]
    ours = pool_variance_components([f.variance_components_ for f in popmis_fits[model]])
    assert list(ours.index) == list(ref.index)
    close = np.isclose(ours, ref, rtol=1e-3) | np.isclose(ours, ref, atol=1e-4)
    assert close.all(), pd.DataFrame({"ours": ours, "mitml": ref})


def test_uncorrelated_random_effects_have_no_covariance(popmis_sets):
    d = popmis_sets[0]
    split = LinearMixedModel("popular ~ sex + texp + (1 | school) + (0 + sex | school)").fit(d)
    double = LinearMixedModel("popular ~ sex + texp + (1 + sex || school)").fit(d)
    assert list(split.variance_components_.index) == [
        "Intercept~~Intercept|school",
        "sex~~sex|school",
        "Residual~~Residual",
        "ICC|school",
    ]
    assert split.cov_re_.loc["Intercept", "sex"] == 0.0
    np.testing.assert_allclose(split.coef_, double.coef_, rtol=1e-8)
    assert split.df_resid_ == len(d) - (3 + 2 + 1)
    # the correlated model nests it: its REML likelihood is at least as high
    correlated = LinearMixedModel(FORMULAS["rs"]).fit(d)
    assert correlated.loglik_ >= split.loglik_ - 1e-8


def test_ml_fit_has_higher_likelihood_and_smaller_variances_than_reml(popmis_sets):
    d = popmis_sets[2]
    reml = LinearMixedModel(FORMULAS["ri"]).fit(d)
    ml = LinearMixedModel(FORMULAS["ri"], reml=False).fit(d)
    assert ml.variance_components_["Residual~~Residual"] < reml.variance_components_["Residual~~Residual"]
    # the ML optimum beats the REML estimates on the ML likelihood
    assert ml.loglik_ >= ml.loglik_at(reml.likelihood_params()) - 1e-9
    refit = reml.refit_ml()
    assert refit.loglik_ == pytest.approx(ml.loglik_, rel=1e-9)


def test_predict_adds_cluster_effects_and_uses_population_for_new_clusters(popmis_fits, popmis_sets):
    fit, d = popmis_fits["rs"][0], popmis_sets[0]
    rows = d.iloc[:5]
    population = fit.coef_["(Intercept)"] + fit.coef_["sex"] * rows.sex + fit.coef_["texp"] * rows.texp
    b = fit.random_effects_.loc[rows.school]
    np.testing.assert_allclose(
        fit.predict(rows), population + b["Intercept"].to_numpy() + b["sex"].to_numpy() * rows.sex
    )
    unseen = rows.assign(school=-99)
    np.testing.assert_allclose(fit.predict(unseen), population)
    assert 0.5 < fit.score(d) < 1.0


def test_model_is_a_clonable_sklearn_estimator_and_leaves_data_untouched(popmis_sets):
    d = popmis_sets[0].copy()
    before = d.copy()
    model = LinearMixedModel(FORMULAS["ri"], reml=False)
    assert clone(model).get_params()["reml"] is False
    model.fit(d, y=d.popular.to_numpy() + 1.0)
    pd.testing.assert_frame_equal(d, before)
    assert model.coef_["(Intercept)"] == pytest.approx(
        LinearMixedModel(FORMULAS["ri"], reml=False).fit(d).coef_["(Intercept)"] + 1.0, rel=1e-6
    )


@pytest.mark.parametrize(
    ("model", "formula", "match"),
    [
        (LogisticMixedModel, "high ~ sex + (1 | school) + (1 | texp)", "crossed"),
        (LinearMixedModel, "popular ~ sex + texp", "random-effects term"),
        (LogisticMixedModel, "high ~ sex + (1 + sex | school)", "random intercept"),
        (LogisticMixedModel, "popular ~ sex + (1 | school)", "0/1 response"),
    ],
)
def test_unsupported_models_raise_clear_errors(popmis_sets, model, formula, match):
    d = popmis_sets[0].assign(high=(popmis_sets[0].popular > 5).astype(int))
    with pytest.raises(ValueError, match=match):
        model(formula).fit(d)


@pytest.fixture(scope="module")
def impact():
    # R reads only "NA" as missing; pandas' default would turn the pupil level "None" into NaN
    return pd.read_csv(DATA / "impact.csv", keep_default_na=False, na_values=["NA", ""])


@pytest.fixture(scope="module")
def impact_fit(impact):
    formula = "mort ~ type + age + motor_score + pupil + ct + (1 | name)"
    return LogisticMixedModel(formula, reference_levels={"motor_score": "5/6"}).fit(impact)


def test_logistic_mixed_model_matches_glmer_on_impact(impact_fit):
    # Laplace (n_agq = 1) is glmer's own approximation; measured agreement ~1e-5 (estimates),
    # ~3e-4 (SEs, glmer's finite-difference Hessian); the issue asks for 1e-2.
    ref = pd.read_csv(REFERENCE / "impact_glmer.csv").set_index("term")
    fixed = ref.loc[impact_fit.coef_.index]
    np.testing.assert_allclose(impact_fit.coef_, fixed.estimate, rtol=1e-2)
    np.testing.assert_allclose(np.sqrt(np.diag(impact_fit.cov_params_)), fixed.std_error, rtol=1e-2)
    tau2 = impact_fit.variance_components_["Intercept~~Intercept|name"]
    assert tau2 == pytest.approx(ref.loc["name:(Intercept)~~(Intercept)", "estimate"], rel=1e-2)
    assert impact_fit.loglik_ == pytest.approx(ref.loc["logLik", "estimate"], rel=1e-6)
    assert impact_fit.df_resid_ == 11022 - 11
    assert impact_fit.converged_


def test_logistic_loglik_at_own_parameters_and_predictions(impact_fit, impact):
    assert impact_fit.loglik_at(impact_fit.likelihood_params()) == pytest.approx(impact_fit.loglik_, rel=1e-10)
    p = impact_fit.predict(impact.iloc[:20])
    assert np.all((p > 0) & (p < 1))
    new = impact.iloc[:20].assign(name="unseen trial")
    eta = impact_fit._linear_predictor(impact_fit._new_design(new), random_effects=False)
    np.testing.assert_allclose(impact_fit.predict(new), 1 / (1 + np.exp(-eta)))


def test_adaptive_quadrature_agrees_with_laplace_on_large_clusters():
    # 40 clusters of 50: the Laplace error is O(1/n_j), far below the sampling error
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(40), 50)
    x = rng.normal(size=g.size)
    eta = -0.3 + 0.8 * x + rng.normal(0, 0.8, 40)[g]
    d = pd.DataFrame({"g": g, "x": x, "y": (rng.uniform(size=g.size) < 1 / (1 + np.exp(-eta))).astype(int)})
    laplace = LogisticMixedModel("y ~ x + (1 | g)").fit(d)
    agq = LogisticMixedModel("y ~ x + (1 | g)", n_agq=7).fit(d)
    np.testing.assert_allclose(agq.coef_, laplace.coef_, rtol=2e-2)
    assert agq.variance_components_.iloc[0] == pytest.approx(laplace.variance_components_.iloc[0], rel=3e-2)


def test_statsmodels_start_reaches_the_same_optimum(popmis_sets, popmis_fits):
    fit = LinearMixedModel(FORMULAS["rs"], solver="statsmodels").fit(popmis_sets[1])
    default = popmis_fits["rs"][1]
    np.testing.assert_allclose(fit.coef_, default.coef_, rtol=1e-5)
    np.testing.assert_allclose(fit.variance_components_, default.variance_components_, rtol=1e-3, atol=1e-5)
    assert fit.loglik_ == pytest.approx(default.loglik_, abs=1e-6)


def test_zero_slope_variance_converges_on_the_boundary():
    # no true slope variance: the estimate sits on (or next to) the theta >= 0 bound
    rng = np.random.default_rng(11)
    g = np.repeat(np.arange(60), 15)
    x = rng.normal(size=g.size)
    d = pd.DataFrame({"g": g, "x": x, "y": 1 + 0.5 * x + rng.normal(size=60)[g] + rng.normal(size=g.size)})
    fit = LinearMixedModel("y ~ x + (1 + x | g)").fit(d)
    assert fit.converged_
    assert fit.variance_components_["x~~x|g"] < 0.02
    ri = LinearMixedModel("y ~ x + (1 | g)").fit(d)
    assert fit.loglik_ >= ri.loglik_ - 1e-8


def test_logistic_mixed_model_does_not_stop_at_tau_zero_below_an_interior_maximum():
    # 30 clusters, latent random-intercept SD 0.6: L-BFGS-B stopped on the bound tau = 0 (a stationary
    # point, the likelihood being symmetric in tau) with loglik -327.03, below the maximum -324.40
    from scipy.special import expit

    rng = np.random.default_rng(25)
    g = np.repeat(np.arange(30), rng.integers(5, 41, 30))
    z = rng.normal(size=g.size)
    y = (rng.random(g.size) < expit(-0.5 + 0.8 * z + rng.normal(0, 0.6, 30)[g])).astype(float)
    fit = LogisticMixedModel("y ~ z + (1 | g)").fit(pd.DataFrame({"g": g, "z": z, "y": y}))
    # at tau = 0 the Laplace log-likelihood is -327.03 (the logistic regression's): the fit must be above it
    assert fit.variance_components_.iloc[0] > 0.05 and fit.loglik_ > -325.0, fit.loglik_


# --------------------------------------------------------------------------- hostile inputs
def _quiet_convergence(func, *args):
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return func(*args)


def test_logistic_mixed_model_warns_on_separation_and_constant_response():
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"g": np.repeat(np.arange(12), 10), "x": rng.normal(size=120)})
    with pytest.warns(UserWarning, match="numerically 0 or 1"):
        _quiet_convergence(LogisticMixedModel("b ~ x + (1 | g)").fit, df.assign(b=(df["x"] > 0).astype(int)))
    with pytest.warns(UserWarning, match="the response is 0 in every row"):
        _quiet_convergence(LogisticMixedModel("b ~ x + (1 | g)").fit, df.assign(b=0))


def test_random_slope_fit_is_scale_equivariant_for_a_badly_scaled_covariate():
    # x ~ 5e-3 +- 1e-3 and y in thousands: the relative SD of the slope is near 200, far from lme4's
    # start of 1, from which the optimiser stopped at a slope variance 14 times too small
    rng = np.random.default_rng(1000)
    J, n = 30, 10
    g = np.repeat(np.arange(J), n)
    xs = rng.normal(0, np.sqrt(0.3), J)[g] + rng.normal(0, np.sqrt(0.7), J * n)
    u = rng.multivariate_normal([0, 0], [[0.4, 0.1], [0.1, 0.25]], J)
    y = 2 + 0.7 * xs + u[g, 0] + u[g, 1] * xs + rng.normal(0, np.sqrt(0.5), J * n)
    unit = LinearMixedModel("y ~ x + (1 + x | g)").fit(pd.DataFrame({"g": g, "y": y, "x": xs + 5.0}))
    scaled = LinearMixedModel("y ~ x + (1 + x | g)").fit(pd.DataFrame({"g": g, "y": 1000 * y, "x": 1e-3 * (xs + 5.0)}))
    ratio = scaled.variance_components_ / unit.variance_components_
    factor = {"Intercept~~Intercept|g": 1e6, "x~~x|g": 1e12, "Intercept~~x|g": 1e9, "Residual~~Residual": 1e6}
    for name, expected in factor.items():
        assert abs(ratio[name] / expected - 1) < 1e-4, name
    np.testing.assert_allclose(scaled.coef_["x"], 1e6 * unit.coef_["x"], rtol=1e-5)
