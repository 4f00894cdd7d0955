"""OLS and GLM adapters: R-style names, R's inference quantities."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from skmlmi.analysis import GLM, OLS


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    n = 300
    f = rng.choice(["low", "mid", "high"], size=n)
    x = rng.normal(size=n)
    eta = 0.2 + 0.7 * x + np.where(f == "mid", 0.5, 0.0) - np.where(f == "high", 0.4, 0.0)
    return pd.DataFrame(
        {
            "x": x,
            "f": f,
            "y": eta + rng.normal(size=n),
            "b": (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(int),
            "c": rng.poisson(np.exp(eta / 2)),
        }
    )


def test_ols_matches_least_squares_with_r_names_and_residual_df(data):
    fit = OLS("y ~ x * f").fit(data)
    assert list(fit.coef_.index) == ["(Intercept)", "x", "flow", "fmid", "x:flow", "x:fmid"]
    X = np.column_stack(
        [
            np.ones(len(data)),
            data.x,
            data.f == "low",
            data.f == "mid",
            data.x * (data.f == "low"),
            data.x * (data.f == "mid"),
        ]
    ).astype(float)
    beta, rss, *_ = np.linalg.lstsq(X, data.y, rcond=None)
    np.testing.assert_allclose(fit.coef_, beta, rtol=1e-10)
    s2 = rss[0] / (len(data) - 6)
    np.testing.assert_allclose(fit.cov_params_.to_numpy(), s2 * np.linalg.inv(X.T @ X), rtol=1e-8)
    assert fit.df_resid_ == len(data) - 6
    assert fit.variance_components_["Residual~~Residual"] == pytest.approx(s2)
    n = len(data)
    assert fit.loglik_ == pytest.approx(-n / 2 * (np.log(2 * np.pi * rss[0] / n) + 1), rel=1e-12)


@pytest.mark.parametrize(
    ("family", "response", "sm_family"),
    [
        ("binomial", "b", sm.families.Binomial()),
        ("poisson", "c", sm.families.Poisson()),
        ("gaussian", "y", sm.families.Gaussian()),
    ],
)
def test_glm_agrees_with_statsmodels_and_reports_loglik(data, family, response, sm_family):
    fit = GLM(f"{response} ~ x + f", family=family, reference_levels={"f": "mid"}).fit(data)
    assert list(fit.coef_.index) == ["(Intercept)", "x", "fhigh", "flow"]
    X = np.column_stack([np.ones(len(data)), data.x, data.f == "high", data.f == "low"]).astype(float)
    ref = sm.GLM(data[response].to_numpy(float), X, family=sm_family).fit()
    np.testing.assert_allclose(fit.coef_, ref.params, rtol=1e-8)
    np.testing.assert_allclose(fit.cov_params_.to_numpy(), ref.cov_params(), rtol=1e-8)
    assert fit.loglik_ == pytest.approx(ref.llf, rel=1e-10)
    pred = fit.predict(data)
    np.testing.assert_allclose(pred, ref.fittedvalues if hasattr(ref, "fittedvalues") else ref.mu, rtol=1e-8)


def test_glm_rejects_responses_outside_the_family(data):
    with pytest.raises(ValueError, match="0/1 response"):
        GLM("y ~ x", family="binomial").fit(data)
    with pytest.raises(ValueError, match="counts"):
        GLM("y ~ x", family="poisson").fit(data)


def test_single_level_models_refuse_random_effects_and_non_frames(data):
    with pytest.raises(ValueError, match="single-level"):
        OLS("y ~ x + (1 | f)").fit(data)
    with pytest.raises(TypeError, match="DataFrame"):
        OLS("y ~ x").fit(data.to_numpy())


def test_summary_uses_t_for_ols_and_normal_for_binomial(data):
    ols = OLS("y ~ x").fit(data).summary()
    assert list(ols.columns) == ["estimate", "std_error", "statistic", "p_value", "conf_low", "conf_high"]
    from scipy import stats

    row = ols.loc["x"]
    assert row["p_value"] == pytest.approx(2 * stats.t.sf(abs(row["statistic"]), len(data) - 2))
    logit = GLM("b ~ x", family="binomial").fit(data).summary().loc["x"]
    assert logit["p_value"] == pytest.approx(2 * stats.norm.sf(abs(logit["statistic"])))


def test_collinear_design_is_a_clear_error(data):
    with pytest.raises(ValueError, match="rank deficient"):
        OLS("y ~ x + z").fit(data.assign(z=2 * data.x))


def test_declared_categories_no_row_holds_are_left_out_with_a_note(data):
    declared = data.assign(f=pd.Categorical(data.f, categories=["none", "low", "mid", "high", "top"]))
    fit = OLS("y ~ x + f").fit(declared)
    reference = OLS("y ~ x + f").fit(data.assign(f=pd.Categorical(data.f, categories=["low", "mid", "high"])))
    pd.testing.assert_series_equal(fit.coef_, reference.coef_)
    assert fit.dropped_levels_ == {"f": ["none", "top"]} and reference.dropped_levels_ == {}
    assert "never observed are left out of the design (f: ['none', 'top'])" in fit.summary().attrs["note"]
    assert "note" not in reference.summary().attrs


def test_levels_parameter_fixes_the_coding(data):
    fit = GLM("b ~ x + f", family="binomial", levels={"f": ["mid", "low", "high"]}).fit(data)
    assert list(fit.coef_.index) == ["(Intercept)", "x", "flow", "fhigh"]
    with pytest.raises(ValueError, match="column 'f' holds levels"):
        OLS("y ~ x + f", levels={"f": ["low", "mid"]}).fit(data)


@pytest.mark.parametrize("alpha", [5, 0, -0.1, "0.05"])
def test_summary_alpha_outside_zero_one_is_an_error(data, alpha):
    model = OLS("y ~ x").fit(data)
    with pytest.raises(ValueError, match="alpha must lie in"):
        model.summary(alpha=alpha)


# --------------------------------------------------------------------------- hostile inputs
@pytest.fixture
def six_clusters():
    rng = np.random.default_rng(11)
    n = 60
    df = pd.DataFrame({"g": np.repeat(np.arange(6), 10), "x": rng.normal(size=n), "y": rng.normal(size=n)})
    df.loc[rng.random(n) < 0.2, "y"] = np.nan
    return df


def test_analysis_models_name_the_problem_in_degenerate_designs(six_clusters):
    data = six_clusters.dropna()
    with pytest.raises(ValueError, match="too few for the 2 fixed effects"):
        OLS("y ~ x").fit(data.iloc[:2])  # was ZeroDivisionError
    with pytest.raises(ValueError, match=r"\['x'\] .* hold infinite values"):
        OLS("y ~ x").fit(data.assign(x=np.r_[np.inf, data["x"].to_numpy()[1:]]))  # was "rank deficient"
    with pytest.raises(ValueError, match="appear more than once"):
        OLS("y ~ x").fit(pd.concat([data, data[["x"]]], axis=1))  # was "truth value of a Series is ambiguous"


def test_unused_categories_do_not_make_the_design_rank_deficient(six_clusters):
    data = six_clusters.dropna()
    f = np.array(["a", "b", "c"])[np.arange(len(data)) % 3]
    with_unused = data.assign(f=pd.Categorical(f, categories=["a", "b", "c", "d"]))
    fit = OLS("y ~ x + f").fit(with_unused)
    reference = OLS("y ~ x + f").fit(data.assign(f=f))
    pd.testing.assert_series_equal(fit.coef_, reference.coef_)
