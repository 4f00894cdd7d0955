"""Linear mixed models with several grouping factors (nested, crossed, random slopes): parity with lme4.

References (tests/analysis/reference/, copies of ../shared/reference/ plus one tight refit):
``pastes_lmer.csv``, ``egsingle_lmer.csv``, ``insteval_lmer.csv`` (lme4 1.1-31 defaults, made by
shared/anchors-r/multilevel3_reference.R), ``egsingle_rs_tight_lmer.csv``
(benchmarks/egsingle_rs_tight_reference.R) and ``insteval_subset_lmer.csv`` (crossed random slopes and
three crossed factors on 400 students' ratings, benchmarks/several_factors_extra_reference.R). The
data are the package's copies of the same CSVs.

Tolerances are the reference README's: 1e-4 relative on every fixed estimate (plus 1e-4 x SE
absolute, for near-zero estimates such as femaleMale), standard error, variance and covariance;
the log-likelihood within 1e-6 relative, or higher. lme4 stops its default BOBYQA at ~1e-6 in
theta, which moves these values by < 1e-5 except on flat criteria: for the egsingle random-slope
model lme4's restarted fit (``rs_reml_restart``) stops 1.9e-6 above the minimum of the REML
criterion, where the school-level intercept-slope covariance is 7.5e-4 (relative) from the
optimum; the optimum itself, from lme4 run to tight tolerances (``rs_reml_tight``), is compared
at 1e-4, and ``rs_reml_restart`` at the README's 1e-3 for a fit R stopped early. Likewise the model
without the school-level covariance: lme4's defaults (``rs_uncorr_school_reml``) leave the school
variances 1.5e-4 from the optimum that lme4 reaches with tight tolerances
(``rs_uncorr_school_reml_tight``, compared at 1e-4); the default fit is compared at 1e-3.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from skmlmi.analysis import LinearMixedModel
from skmlmi.datasets import load_egsingle, load_insteval, load_pastes
from skmlmi.pooling import pool_results, pool_variance_components

REFERENCE = Path(__file__).parent / "reference"
EG_FIXED = "math ~ year + female + black + hispanic"


def load_insteval_subset():
    """InstEval's rows of the first 400 students (benchmarks/several_factors_extra_reference.R)."""
    data = load_insteval()
    return data[data.s.astype(int) <= 400].reset_index(drop=True)


MODELS = {
    # reference file, model -> (data loader, formula, reml, relative tolerance)
    ("pastes", "nested_reml"): (load_pastes, "strength ~ 1 + (1 | batch/cask)", True, 1e-4),
    ("pastes", "nested_ml"): (load_pastes, "strength ~ 1 + (1 | batch/cask)", False, 1e-4),
    ("egsingle", "ri_reml"): (load_egsingle, f"{EG_FIXED} + (1 | schoolid/childid)", True, 1e-4),
    ("egsingle", "ri_ml"): (load_egsingle, f"{EG_FIXED} + (1 | schoolid/childid)", False, 1e-4),
    ("egsingle_rs_tight", "rs_reml_tight"): (
        load_egsingle,
        f"{EG_FIXED} + (year | schoolid) + (year | schoolid:childid)",
        True,
        1e-4,
    ),
    ("egsingle", "rs_reml_restart"): (
        load_egsingle,
        f"{EG_FIXED} + (year | schoolid) + (year | schoolid:childid)",
        True,
        1e-3,
    ),
    ("egsingle_rs_tight", "rs_uncorr_school_reml_tight"): (
        load_egsingle,
        f"{EG_FIXED} + (year || schoolid) + (year | schoolid:childid)",
        True,
        1e-4,
    ),
    ("egsingle", "rs_uncorr_school_reml"): (
        load_egsingle,
        f"{EG_FIXED} + (year || schoolid) + (year | schoolid:childid)",
        True,
        1e-3,
    ),
    ("insteval", "crossed_reml"): (load_insteval, "y ~ service + (1 | s) + (1 | d)", True, 1e-4),
    # crossed random slopes (the eliminated factor d has two correlated effects) and three crossed factors
    ("insteval_subset", "crossed_slope_reml"): (
        load_insteval_subset,
        "y ~ service + (1 | s) + (1 + service | d)",
        True,
        1e-4,
    ),
    ("insteval_subset", "three_crossed_ml"): (
        load_insteval_subset,
        "y ~ service + (1 | s) + (1 | d) + (1 | dept)",
        False,
        1e-4,
    ),
}
_FITS: dict = {}


def _fit(loader, formula, reml):
    key = (loader.__name__, formula, reml)
    if key not in _FITS:  # the random-slope formula serves two references: fit it once
        _FITS[key] = LinearMixedModel(formula, reml=reml).fit(loader())
    return _FITS[key]


def _component_name(group: str, term: str) -> str:
    # lme4's VarCorr rows -> mitml names: (Intercept) -> Intercept~~Intercept|g, (Intercept)~~year -> Intercept~~year|g
    if group == "Residual":
        return "Residual~~Residual"
    parts = [p.replace("(Intercept)", "Intercept") for p in term.split("~~")]
    return f"{parts[0]}~~{parts[-1]}|{group}"


@pytest.mark.parametrize(("reference", "model"), list(MODELS))
def test_fit_matches_lme4(reference, model):
    loader, formula, reml, rtol = MODELS[(reference, model)]
    table = pd.read_csv(REFERENCE / f"{reference}_lmer.csv")
    table = table[table.model == model]
    fit = _fit(loader, formula, reml)

    fixed = table[table.kind == "fixed"].set_index("term")
    se = np.sqrt(np.diag(fit.cov_params_.loc[fixed.index, fixed.index]))
    np.testing.assert_allclose(fit.coef_[fixed.index], fixed.estimate, rtol=rtol, atol=1e-4 * fixed.std_error.min())
    np.testing.assert_allclose(se, fixed.std_error, rtol=rtol)

    components = table[table.kind.isin(["variance", "covariance"])]
    names = [_component_name(g, t) for g, t in zip(components.group, components.term, strict=True)]
    np.testing.assert_allclose(fit.variance_components_[names], components.estimate, rtol=rtol)

    fitrows = table[table.kind == "fit"].set_index("term").estimate
    criterion = "REMLcrit" if reml else "deviance"
    # the criterion as lme4 reports it (8 significant digits, 10 for the tight refit), or a better one
    assert -2 * fit.loglik_ <= fitrows[criterion] * (1 + 1e-6)
    assert -2 * fit.loglik_ >= fitrows[criterion] * (1 - 1e-6)
    if "nobs" in fitrows:
        assert fit.nobs_ == fitrows["nobs"]
        for term, count in fitrows.items():
            if term.startswith("ngroups:"):
                assert len(fit.group_levels_[term.split(":", 1)[1]]) == count
    assert fit.converged_


def test_several_factor_results_name_every_level_with_an_icc_each():
    fit = _fit(*MODELS[("pastes", "nested_reml")][:3])
    vc = fit.variance_components_
    assert list(vc.index) == [
        "Intercept~~Intercept|cask:batch",
        "Intercept~~Intercept|batch",
        "Residual~~Residual",
        "ICC|cask:batch",
        "ICC|batch",
    ]
    total = vc.iloc[:3].sum()
    assert vc["ICC|batch"] == pytest.approx(vc["Intercept~~Intercept|batch"] / total, rel=1e-12)
    assert vc["ICC|cask:batch"] == pytest.approx(vc["Intercept~~Intercept|cask:batch"] / total, rel=1e-12)
    assert list(fit.cov_re_) == ["cask:batch", "batch"]  # lme4's order: most clusters first
    assert fit.df_resid_ == 60 - (1 + 2 + 1)


def test_predict_adds_each_factors_effect_and_population_values_for_unseen_clusters():
    data = load_pastes()
    fit = _fit(*MODELS[("pastes", "nested_reml")][:3])
    predicted = fit.predict(data)
    b_batch = fit.random_effects_["batch"]["Intercept"]
    b_cask = fit.random_effects_["cask:batch"]["Intercept"]
    cask_label = data.batch.astype(str) + ":" + data.cask.astype(str)
    expected = fit.coef_["(Intercept)"] + b_batch[data.batch.astype(str)].to_numpy() + b_cask[cask_label].to_numpy()
    np.testing.assert_allclose(predicted, expected, rtol=1e-12)
    # BLUPs of a nested factor sum to zero across clusters only approximately; their mean is small
    assert abs(b_batch.mean()) < 0.1 * b_batch.std()
    new = pd.DataFrame({"batch": ["A", "Z"], "cask": ["a", "a"]})
    out = fit.predict(new)
    assert out[1] == pytest.approx(fit.coef_["(Intercept)"])  # unseen batch Z, unseen cask Z:a
    assert out[0] == pytest.approx(fit.coef_["(Intercept)"] + b_batch["A"] + b_cask["A:a"])


def test_ml_loglik_at_own_estimates_and_d3_parameters_of_several_factors():
    fit = _fit(*MODELS[("egsingle", "ri_ml")][:3])
    params = fit.likelihood_params()
    assert params["cov_re"].shape == (2, 2)  # block diagonal over the two factors
    assert fit.loglik_at(params) == pytest.approx(fit.loglik_, rel=1e-10)
    reml = _fit(*MODELS[("egsingle", "ri_reml")][:3])
    assert reml.refit_ml().loglik_ == pytest.approx(fit.loglik_, rel=1e-9)


def _dense_ml_loglik(y, X, Zs, variances, sigma2):
    """-0.5 (n log 2 pi + log|V| + r'V^{-1}r) with V = sigma^2 I + sum_k tau_k Z_k Z_k', beta by GLS: dense."""
    V = sigma2 * np.eye(len(y)) + sum(t * Z @ Z.T for t, Z in zip(variances, Zs, strict=True))
    Vi = np.linalg.inv(V)
    beta = np.linalg.solve(X.T @ Vi @ X, X.T @ Vi @ y)
    r = y - X @ beta
    return -0.5 * (len(y) * np.log(2 * np.pi) + np.linalg.slogdet(V)[1] + r @ Vi @ r)


def _indicators(codes):
    return (codes[:, None] == np.unique(codes)[None, :]).astype(float)


@pytest.mark.parametrize("design", ["nested", "crossed"])
def test_ml_fit_is_the_maximum_of_the_dense_likelihood(design):
    # the block-eliminated sparse criterion against the textbook dense one, on a small design
    rng = np.random.default_rng(5)
    if design == "nested":
        a = np.repeat(np.arange(8), 12)
        b = np.repeat(np.arange(24), 4)  # 3 inner units per outer unit
        formula = "y ~ x + (1 | a/b)"
    else:
        a = rng.integers(0, 10, 96)
        b = rng.integers(0, 7, 96)
        formula = "y ~ x + (1 | a) + (1 | b)"
    x = rng.normal(size=96)
    y = 1 + 0.5 * x + rng.normal(0, 0.8, 10)[a % 10] + rng.normal(0, 0.6, 24)[b] + rng.normal(size=96)
    data = pd.DataFrame({"a": a, "b": b, "x": x, "y": y})
    fit = LinearMixedModel(formula, reml=False).fit(data)
    X = np.column_stack([np.ones(96), x])
    inner = _indicators(a * 100 + b if design == "nested" else b)
    Zs = [_indicators(a), inner]
    vc = fit.variance_components_
    name_b = "Intercept~~Intercept|b:a" if design == "nested" else "Intercept~~Intercept|b"
    own = [vc["Intercept~~Intercept|a"], vc[name_b]]
    assert _dense_ml_loglik(y, X, Zs, own, fit.scale_) == pytest.approx(fit.loglik_, rel=1e-10)

    def negative(log_params):
        return -_dense_ml_loglik(y, X, Zs, np.exp(log_params[:2]), np.exp(log_params[2]))

    start = np.log(np.maximum([*own, fit.scale_], 1e-8))
    best = optimize.minimize(negative, start, method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-10})
    assert -best.fun <= fit.loglik_ + 1e-6


def _simulate(design: str, rng) -> tuple[pd.DataFrame, dict]:
    """One dataset of a known-truth nested (40 schools x 5 classes x 6 pupils) or crossed design."""
    if design == "nested":
        school = np.repeat(np.arange(40), 30)
        klass = np.repeat(np.arange(200), 6)
        truth = {
            "Intercept~~Intercept|school": 0.3,
            "Intercept~~Intercept|klass:school": 0.2,
            "Residual~~Residual": 1.0,
        }
        effects = rng.normal(0, np.sqrt(0.3), 40)[school] + rng.normal(0, np.sqrt(0.2), 200)[klass]
        frame = {"school": school, "klass": klass % 5}
    else:
        # 60 row units x 40 column units, each row unit meeting 10 column units, 2 observations per pair
        rows = np.repeat(np.arange(60), 10)
        cols = np.concatenate([rng.choice(40, 10, replace=False) for _ in range(60)])
        rows, cols = np.repeat(rows, 2), np.repeat(cols, 2)
        truth = {"Intercept~~Intercept|r": 0.3, "Intercept~~Intercept|c": 0.2, "Residual~~Residual": 1.0}
        effects = rng.normal(0, np.sqrt(0.3), 60)[rows] + rng.normal(0, np.sqrt(0.2), 40)[cols]
        frame = {"r": rows, "c": cols}
    n = effects.shape[0]
    x = rng.normal(size=n)
    y = 1.0 + 0.5 * x + effects + rng.normal(size=n)
    return pd.DataFrame({**frame, "x": x, "y": y}), {**truth, "(Intercept)": 1.0, "x": 0.5}


@pytest.mark.parametrize(
    ("design", "formula"),
    [("nested", "y ~ x + (1 | school/klass)"), ("crossed", "y ~ x + (1 | r) + (1 | c)")],
)
def test_known_truth_variance_components_are_recovered(design, formula):
    # REML is nearly unbiased for these balanced-ish designs: the mean over 25 seeded datasets lies within
    # 4 Monte Carlo SE of the truth (the family of 10 checks keeps a family-wise error below 1e-3)
    rng = np.random.default_rng(20260407)
    rows = []
    for _ in range(25):
        data, truth = _simulate(design, rng)
        fit = LinearMixedModel(formula).fit(data)
        rows.append({**fit.variance_components_.to_dict(), **fit.coef_.to_dict()})
    table = pd.DataFrame(rows)
    for name, value in truth.items():
        mean, mc_se = table[name].mean(), table[name].std(ddof=1) / np.sqrt(len(table))
        assert abs(mean - value) < 4 * mc_se, (name, mean, value, mc_se)


def test_pooled_components_and_iccs_per_level_are_means_over_imputations():
    data = load_pastes()
    rng = np.random.default_rng(3)
    fits = [
        LinearMixedModel("strength ~ 1 + (1 | batch/cask)").fit(
            data.assign(strength=data.strength + rng.normal(0, 0.3, len(data)))
        )
        for _ in range(3)
    ]
    components = [f.variance_components_ for f in fits]
    pooled = pool_variance_components(components)
    np.testing.assert_allclose(pooled, pd.concat(components, axis=1).mean(axis=1), rtol=1e-12)
    results = pool_results(
        [f.coef_ for f in fits], [f.cov_params_.to_numpy() for f in fits], variance_components=components
    )
    assert list(results.icc.index) == ["ICC|cask:batch", "ICC|batch"]
    assert results.variance_components["ICC|batch"] == pytest.approx(np.mean([c["ICC|batch"] for c in components]))


def test_insteval_crossed_fit_is_fast():
    import time

    data = load_insteval()
    start = time.perf_counter()
    LinearMixedModel("y ~ service + (1 | s) + (1 | d)").fit(data)
    # the bound is 30 s for the whole process; the fit itself takes about 3 s on one core
    assert time.perf_counter() - start < 30


def test_sparse_lu_schur_complement_gives_the_dense_fit(monkeypatch):
    # large Schur complements (more than DENSE_LIMIT effects outside the eliminated factor) go through sparse LU
    from skmlmi.analysis import _profiled

    formula = f"{EG_FIXED} + (year | schoolid) + (year | schoolid:childid)"
    dense = _fit(load_egsingle, formula, True)
    monkeypatch.setattr(_profiled, "DENSE_LIMIT", 0)
    sparse_fit = LinearMixedModel(formula).fit(load_egsingle())
    np.testing.assert_allclose(sparse_fit.loglik_, dense.loglik_, rtol=1e-10)
    np.testing.assert_allclose(sparse_fit.variance_components_, dense.variance_components_, rtol=1e-5)
    np.testing.assert_allclose(sparse_fit.coef_, dense.coef_, rtol=1e-6)


@pytest.mark.parametrize(
    ("formula", "match"),
    [
        ("strength ~ 1 + (1 | batch) + (1 | one)", r"grouping factor 'one' .* 1 cluster\(s\)"),
        ("strength ~ 1 + (1 | batch) + (1 | row)", r"grouping factor 'row' .* 60 cluster\(s\) for 60 rows"),
    ],
)
def test_degenerate_grouping_factors_are_named(formula, match):
    data = load_pastes().assign(one="x", row=np.arange(60))
    with pytest.raises(ValueError, match=match):
        LinearMixedModel(formula).fit(data)


def test_logistic_mixed_model_names_the_second_factor_and_the_model_that_fits_it():
    from skmlmi.analysis import LogisticMixedModel

    data = load_pastes().assign(high=lambda d: (d.strength > 60).astype(int))
    with pytest.raises(ValueError, match=r"adds another \('batch', 'cask:batch'\).*LinearMixedModel"):
        LogisticMixedModel("high ~ 1 + (1 | batch/cask)").fit(data)
