"""Imputation compatible with the analysis model (skmlmi/_compatible.py).

The full conditional of a covariate is checked against its density computed on a grid, for the
exact draws (a term linear in x, random slope included), the Metropolis-Hastings steps (terms not
linear in x) and the two-point draw of a binary covariate; the imputer's interface, errors and
new-data imputation are checked on small data. The known-truth validation (bias and coverage
against chained equations) is tests/validation/test_validate_compatible.py.
"""

from __future__ import annotations

import re
import types
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import special

from skmlmi import MultilevelIterativeImputer
from skmlmi._compatible import CompatibleDraw, sample_compatible
from skmlmi.analysis import LinearMixedModel
from skmlmi.conditional import PredictiveMeanMatching, RandomEffectsPMM
from skmlmi.conditional.random_effects import _RandomEffectsNormalDraw


def _data(seed=0, J=12, n=15, binary=False):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(J), n)
    x = rng.normal(0, 0.5, J)[g] + rng.normal(size=J * n)
    w = rng.normal(size=J * n)
    if binary:
        x = (x > 0).astype(float)
    y = 1 + 0.5 * x + 0.3 * w + rng.normal(0, 0.5, J)[g] + rng.normal(size=J * n)
    df = pd.DataFrame({"g": g, "y": y, "x": x, "w": w})
    df.loc[rng.random(J * n) < 0.3, "x"] = np.nan
    return df


def _fitted_plan(formula, binary=False):
    imputer = MultilevelIterativeImputer(n_imputations=1, max_iter=1, random_state=0, analysis_model=formula)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imputer.fit(_data(binary=binary), groups="g")
    plan = imputer._fitted.plan
    target = next(t for t in plan.targets if t.name == "x")
    return plan, target


def _normal_draw(beta, slope_columns, b, sigma):
    b = np.asarray(b, dtype=float)
    return _RandomEffectsNormalDraw(np.asarray(beta, float), slope_columns, b, np.eye(b.shape[1]), sigma, 1.0, 1.0, "t")


def _draws(W, target, spec, analysis, covariate, groups, seed, acceptance=None):
    """The full-conditional draws of every row of W (the covariate model's design has no columns)."""
    rows = np.arange(len(W))
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    draw = CompatibleDraw(analysis, covariate)
    return sample_compatible(W, np.zeros((len(W), 0)), rows, target, spec, draw, groups, rng, acceptance)


def _grid_moments(log_density, grid):
    logp = log_density(grid)
    p = np.exp(logp - logp.max())
    p /= p.sum()
    mean = float(p @ grid)
    return mean, float(p @ (grid - mean) ** 2), p


def _rows_of_one_case(plan, n_rows, y, w, cluster, x_start):
    """Working data of ``n_rows`` identical rows (outcome y, w, cluster), x at ``x_start``."""
    names = list(plan.names)
    W = np.zeros((n_rows, len(names)))
    W[:, names.index("y")] = y
    W[:, names.index("w")] = w
    W[:, names.index("x")] = x_start
    return W, np.full(n_rows, cluster)


@pytest.mark.parametrize(
    "formula, slope",
    [("y ~ x * w + (1 + x | g)", True), ("y ~ x + w + (1 | g)", False)],
)
def test_exact_draw_is_the_full_conditional_of_a_term_linear_in_x(formula, slope):
    # analysis: y = 1 + 0.5 x + 0.3 w (+ 0.4 x w) + b0_j + b1_j x + e, sigma 0.8; covariate: x ~ N(0.2 + b_j, 0.81)
    plan, target = _fitted_plan(formula)
    spec = plan.analysis
    names = spec.fixed_names[1:]
    beta = np.zeros(len(names) + 1)
    beta[0] = 1.0
    coef = {"x": 0.5, "w": 0.3, "x:w": 0.4}
    for k, name in enumerate(names):
        beta[k + 1] = coef[name]
    b = np.array([[0.3, -0.6]]) if slope else np.array([[0.3]])
    analysis = _normal_draw(beta, [names.index("x")] if slope else [], np.repeat(b, 12, axis=0), 0.8)
    covariate = _normal_draw([0.2], [], np.full((12, 1), -0.1), 0.9)
    n_rows, y, w = 40_000, 2.5, 1.3
    W, groups = _rows_of_one_case(plan, n_rows, y, w, 3, 0.7)  # the current value must not matter
    X = np.zeros((n_rows, 0))
    covariate.beta = np.array([0.2])
    values = sample_compatible(
        W, X, np.arange(n_rows), target, spec, CompatibleDraw(analysis, covariate), groups, np.random.default_rng(1)
    )
    slope_x = 0.5 + (0.4 * w if "x:w" in names else 0.0) + (b[0, 1] if slope else 0.0)
    intercept = 1.0 + 0.3 * w + b[0, 0]

    def log_density(x):
        return -0.5 * ((x - 0.1) / 0.9) ** 2 - 0.5 * ((y - intercept - slope_x * x) / 0.8) ** 2

    mean, var, _ = _grid_moments(log_density, np.linspace(-8, 8, 20_001))
    se = np.sqrt(var / n_rows)
    assert abs(values.mean() - mean) < 4 * se
    assert abs(values.var() / var - 1) < 4 * np.sqrt(2 / n_rows)


@pytest.mark.parametrize("term", ["I(x ** 2)", "np.exp(x / 2)"])
def test_metropolis_steps_keep_the_full_conditional_of_a_nonlinear_term(term):
    # started at draws from the full conditional (inverse CDF on a grid), independence
    # Metropolis-Hastings steps must leave it unchanged: rows are independent chains
    plan, target = _fitted_plan(f"y ~ x + {term} + w + (1 | g)")
    spec = plan.analysis
    coef = {"x": 0.5, term: 0.4, "w": 0.3}
    beta = np.array([1.0, *[coef[name] for name in spec.fixed_names[1:]]])
    analysis = _normal_draw(beta, [], np.full((12, 1), 0.2), 0.6)
    covariate = _normal_draw([0.0], [], np.zeros((12, 1)), 1.0)
    n_rows, y, w = 30_000, 3.0, 0.5
    f = {"I(x ** 2)": lambda x: x**2, "np.exp(x / 2)": lambda x: np.exp(x / 2)}[term]

    def log_density(x):
        return -0.5 * x**2 - 0.5 * ((y - 1.0 - 0.5 * x - 0.4 * f(x) - 0.3 * w - 0.2) / 0.6) ** 2

    grid = np.linspace(-8, 8, 40_001)
    mean, var, p = _grid_moments(log_density, grid)
    rng = np.random.default_rng(2)
    start = np.interp(rng.random(n_rows), np.cumsum(p), grid)
    W, groups = _rows_of_one_case(plan, n_rows, y, w, 0, start)
    acceptance = {}
    values = _draws(W, target, spec, analysis, covariate, groups, rng, acceptance)
    se = np.sqrt(var / n_rows)
    assert abs(values.mean() - mean) < 4 * se
    assert abs(values.var() / var - 1) < 4 * np.sqrt(2 / n_rows)
    accepted, proposed = acceptance[target.column]
    assert proposed == 10 * n_rows and 0.05 < accepted / proposed < 1.0
    assert not np.array_equal(values, start)


def test_binary_covariate_takes_its_two_point_full_conditional():
    plan, target = _fitted_plan("y ~ x * w + (1 | g)", binary=True)
    spec = plan.analysis
    coef = {"x": 0.8, "w": 0.3, "x:w": -0.5}
    beta = np.array([1.0, *[coef[name] for name in spec.fixed_names[1:]]])
    analysis = _normal_draw(beta, [], np.full((12, 1), 0.1), 0.7)
    n_rows, y, w = 40_000, 1.9, 0.8

    class Logit:  # covariate model: logit P(x = 1) = 0.4
        def linear_predictor(self, X, groups, rng):
            return np.full(len(groups), 0.4)

    W, groups = _rows_of_one_case(plan, n_rows, y, w, 5, 0.0)
    values = _draws(W, target, spec, analysis, Logit(), groups, 3)
    mean0 = 1.0 + 0.3 * w + 0.1
    mean1 = mean0 + 0.8 - 0.5 * w
    p = special.expit(0.4 - 0.5 * ((y - mean1) / 0.7) ** 2 + 0.5 * ((y - mean0) / 0.7) ** 2)
    assert set(np.unique(values)) <= {0.0, 1.0}
    assert abs(values.mean() - p) < 4 * np.sqrt(p * (1 - p) / n_rows)


# --------------------------------------------------------------------------- the imputer
def test_imputer_keeps_observed_values_and_reports_acceptance():
    df = _data(seed=4)
    df.loc[::7, "y"] = np.nan
    before = df.copy()
    imputer = MultilevelIterativeImputer(
        n_imputations=2, max_iter=3, random_state=0, analysis_model="y ~ x + I(x ** 2) + w + (1 | g)"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sets = imputer.fit_transform_all(df, groups="g")
    pd.testing.assert_frame_equal(df, before)
    for completed in sets:
        assert not completed.isna().any().any()
        observed = before.notna()
        for column in ["y", "x", "w"]:
            np.testing.assert_array_equal(completed.loc[observed[column], column], before.loc[observed[column], column])
    assert list(imputer.acceptance_rates_.index) == ["x"]
    assert imputer.acceptance_rates_.shape == (1, 2)
    assert ((imputer.acceptance_rates_ > 0) & (imputer.acceptance_rates_ <= 1)).all().all()
    assert "analysis model" not in str(type(imputer.methods_["x"]))  # the covariate model is a conditional model
    assert imputer.predictor_matrix_.loc["x", "y"] == 0  # the outcome enters through the analysis model only


def test_linear_terms_are_drawn_exactly_so_no_acceptance_is_reported():
    imputer = MultilevelIterativeImputer(
        n_imputations=1, max_iter=2, random_state=0, analysis_model="y ~ x * w + (1 + x | g)"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imputer.fit(_data(seed=5), groups="g")
    assert imputer.acceptance_rates_.empty


def test_results_do_not_depend_on_n_jobs_and_continue_fit_runs_on():
    df = _data(seed=6)
    kwargs = dict(n_imputations=2, max_iter=2, random_state=3, analysis_model="y ~ x + (1 + x | g)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = MultilevelIterativeImputer(n_jobs=1, **kwargs).fit_transform_all(df, groups="g")
        two = MultilevelIterativeImputer(n_jobs=2, **kwargs).fit_transform_all(df, groups="g")
        for a, b in zip(one, two, strict=True):
            pd.testing.assert_frame_equal(a, b)
        imputer = MultilevelIterativeImputer(**kwargs).fit(df, groups="g")
        imputer.continue_fit(2)
    assert imputer.n_iter_ == 4


def test_new_data_are_imputed_from_the_full_conditional():
    # with a strong slope, the imputed x of new rows follows their outcome
    rng = np.random.default_rng(7)
    J, n = 20, 20
    g = np.repeat(np.arange(J), n)
    x = rng.normal(size=J * n)
    y = 2.0 * x + rng.normal(0, 0.3, J)[g] + rng.normal(0, 0.3, J * n)
    df = pd.DataFrame({"g": g, "y": y, "x": x})
    df.loc[rng.random(J * n) < 0.2, "x"] = np.nan
    imputer = MultilevelIterativeImputer(n_imputations=1, max_iter=3, random_state=0, analysis_model="y ~ x + (1 | g)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imputer.fit(df, groups="g")
        new = pd.DataFrame({"g": [0, 0, 1, 1], "y": [4.0, 4.0, -4.0, -4.0], "x": [np.nan] * 4})
        out = imputer.transform(new)
    assert (out["x"].iloc[:2] > 1.0).all() and (out["x"].iloc[2:] < -1.0).all()


def test_analysis_model_object_is_read_for_its_formula():
    imputer = MultilevelIterativeImputer(
        n_imputations=1, max_iter=1, random_state=0, analysis_model=LinearMixedModel("y ~ x + (1 | g)")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imputer.fit(_data(seed=8), groups="g")
    assert imputer._fitted.plan.analysis.formula == "y ~ x + (1 | g)"


@pytest.mark.parametrize(
    "formula, kwargs, message",
    [
        ("y ~ x + w", {}, "no random part"),
        ("y ~ x + (1 | w)", {}, "groups by 'w'"),
        ("y ~ z + (1 | g)", {}, "not columns of the data"),
        ("x ~ y + (0 + y | g)", {}, "random intercept"),
        ("y ~ x + w + (1 + w | g)", {}, None),  # a slope of a complete covariate is fine
        ("y ~ x + (1 + x | g)", {"methods": {"x": RandomEffectsPMM()}}, "must be RandomEffectsNormal"),
        ("y ~ x + (1 + x | g)", {"methods": {"x": PredictiveMeanMatching()}}, "must be RandomEffectsNormal"),
        ("y ~ x + (1 | g)", {"bounds": {"x": (-5, 5)}}, "bounds or post"),
        ("y ~ x + (1 | g)", {"methods": {"y": RandomEffectsPMM()}}, "response of analysis_model"),
        ("y ~ x + (1 | g)", {"methods": {"w": RandomEffectsPMM()}}, None),  # another column's model: fine
        ("y ~ (x | g)", {}, "not fixed terms"),
    ],
)
def test_bad_analysis_models_are_clear_errors(formula, kwargs, message):
    imputer = MultilevelIterativeImputer(n_imputations=1, max_iter=1, random_state=0, analysis_model=formula, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if message is None:
            imputer.fit(_data(seed=9), groups="g")
            return
        with pytest.raises(ValueError, match=message):
            imputer.fit(_data(seed=9), groups="g")


def test_a_derived_column_in_the_formula_is_refused():
    df = _data(seed=9).assign(x2=np.nan)
    imputer = MultilevelIterativeImputer(
        n_imputations=1, max_iter=1, analysis_model="y ~ x2 + (1 | g)", derived={"x2": "x ** 2"}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"derived column 'x2'.*I\(x \*\* 2\)"):
            imputer.fit(df, groups="g")


def test_partly_observed_cluster_level_covariates_are_refused_by_name():
    df = _data(seed=10)
    df["z"] = np.repeat(np.arange(12) % 3, 15).astype(float)
    df.loc[(df["g"] == 2) & (df.index % 2 == 0), "z"] = np.nan  # half of a cluster's rows
    df["c"] = pd.Categorical(np.repeat(np.resize(["a", "b", "c"], 12), 15))
    df.loc[df["g"] == 4, "c"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="'z' is constant within clusters but observed in some rows"):
            MultilevelIterativeImputer(n_imputations=1, max_iter=1, analysis_model="y ~ x + z + (1 | g)").fit(
                df, groups="g"
            )
        with pytest.raises(ValueError, match="'c' is an incomplete categorical covariate constant within clusters"):
            MultilevelIterativeImputer(n_imputations=1, max_iter=1, analysis_model="y ~ x + c + (1 | g)").fit(
                df, groups="g"
            )


def test_categorical_covariate_takes_its_k_point_full_conditional_and_never_an_unobserved_category():
    rng = np.random.default_rng(14)
    df = _data(seed=14)
    df["c"] = pd.Categorical(rng.choice(["a", "b", "c"], len(df)), categories=["a", "b", "c", "never"])
    df.loc[::4, "c"] = np.nan
    imputer = MultilevelIterativeImputer(
        n_imputations=2, max_iter=2, random_state=0, analysis_model="y ~ x + c + (1 | g)"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sets = imputer.fit_transform_all(df, groups="g")
    for completed in sets:
        assert completed["c"].notna().all() and "never" not in set(completed["c"])
    plan = imputer._fitted.plan
    target = next(t for t in plan.targets if t.name == "c")
    spec = plan.analysis
    names = spec.fixed_names[1:]  # x, cb, cc
    beta = np.array([1.0, *[{"x": 0.5, "cb": 1.0, "cc": -0.7}[n] for n in names]])
    analysis = _normal_draw(beta, [], np.zeros((12, 1)), 0.8)

    class Multinomial:  # covariate model: P(a, b, c) = 0.5, 0.3, 0.2
        def probabilities(self, X, groups, rng):
            return np.tile([0.5, 0.3, 0.2], (len(groups), 1))

    n_rows, y = 40_000, 1.6
    W = np.zeros((n_rows, len(plan.names)))
    W[:, plan.names.index("y")] = y
    W[:, plan.names.index("x")] = 0.4
    values = _draws(W, target, spec, analysis, Multinomial(), np.zeros(n_rows, dtype=int), 15)
    means = 1.0 + 0.2 + np.array([0.0, 1.0, -0.7])
    p = np.array([0.5, 0.3, 0.2]) * np.exp(-0.5 * ((y - means) / 0.8) ** 2)
    p /= p.sum()
    shares = np.bincount(values.astype(int), minlength=4) / n_rows
    assert shares[3] == 0
    assert np.all(np.abs(shares[:3] - p) < 4 * np.sqrt(p * (1 - p) / n_rows))


def test_a_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match="analysis_model"):
        MultilevelIterativeImputer(analysis_model=types.SimpleNamespace(fit=1, formula=3)).fit(_data(), groups="g")


def test_pooler_reads_the_analysis_model_from_the_imputer():
    from skmlmi import MIPooler

    df = _data(seed=11)
    imputer = MultilevelIterativeImputer(
        n_imputations=2, max_iter=2, random_state=0, analysis_model="y ~ x + w + (1 | g)"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pooler = MIPooler(imputer).fit(df, groups="g")
        binary = df.assign(y=(df["y"] > df["y"].median()).astype(float))
        logistic = MIPooler(imputer).fit(binary, groups="g")
    assert list(pooler.results_.table.index) == ["(Intercept)", "x", "w"]
    assert type(pooler.estimators_[0]).__name__ == "LinearMixedModel"
    assert type(logistic.estimators_[0]).__name__ == "LogisticMixedModel"
    with pytest.raises(ValueError, match="needs an estimator"):
        MIPooler(MultilevelIterativeImputer()).fit(df, groups="g")


def test_new_data_missing_an_outcome_complete_at_fit_draw_it_from_the_analysis_model():
    df = _data(seed=12)  # y complete at fit, x incomplete
    imputer = MultilevelIterativeImputer(
        n_imputations=1, max_iter=3, random_state=0, analysis_model="y ~ x + w + (1 | g)"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imputer.fit(df, groups="g")
        new = pd.DataFrame({"g": [0] * 400, "y": np.nan, "x": 3.0, "w": 0.0})
        out = imputer.transform(new)
    analysis = imputer.final_draws_[0][0].analysis  # the chain's last draw of the analysis model
    expected = analysis.beta[0] + 3.0 * analysis.beta[1] + analysis.b[0, 0]
    assert abs(out["y"].mean() - expected) < 4 * analysis.sigma / np.sqrt(400)
    assert abs(out["y"].std() / analysis.sigma - 1) < 0.15


def test_chain_statistics_and_convergence_diagnostics_cover_the_compatible_variables():
    from skmlmi import diagnostics

    df = _data(seed=13)
    df.loc[::6, "y"] = np.nan
    imputer = MultilevelIterativeImputer(
        n_imputations=3, max_iter=4, random_state=0, analysis_model="y ~ x + (1 + x | g)"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imputer.fit(df, groups="g")
    assert imputer.incomplete_columns_ == ["y", "x"]
    assert np.isfinite(imputer.chain_mean_).all() and imputer.chain_mean_.shape == (3, 4, 2)
    table = diagnostics.convergence_table(imputer)
    assert set(table["column"]) == {"y", "x"} and np.isfinite(table.groupby("column")["rhat"].last()).all()


def _cluster_level_plan():
    rng = np.random.default_rng(16)
    df = _data(seed=16)
    df["z"] = np.repeat(rng.normal(size=12), 15)
    df.loc[df["g"].isin([1, 5]), "z"] = np.nan
    imputer = MultilevelIterativeImputer(
        n_imputations=1, max_iter=1, random_state=0, analysis_model="y ~ x * z + (1 | g)"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imputer.fit(df, groups="g")
    plan = imputer._fitted.plan
    return plan, next(t for t in plan.targets if t.name == "z")


def test_cluster_level_covariate_takes_one_draw_per_cluster_from_its_full_conditional():
    from skmlmi.conditional.cluster_level import _ClusterNormalDraw

    plan, target = _cluster_level_plan()
    spec = plan.analysis
    assert target.column in spec.cluster_level and type(target.model).__name__ == "ClusterLevelNormal"
    coef = {"x": 0.5, "z": 0.3, "x:z": 0.6}
    beta = np.array([1.0, *[coef[n] for n in spec.fixed_names[1:]]])
    n_units, x_rows, y_rows = 20_000, np.array([-1.0, 0.5, 2.0]), np.array([0.2, 1.9, 3.1])
    rows = np.arange(3 * n_units)
    groups = np.repeat(np.arange(n_units), 3)
    analysis = _normal_draw(beta, [], np.zeros((n_units, 1)), 0.7)
    covariate = _ClusterNormalDraw(np.array([0.4]), 1.2, "z", np.zeros(0))
    W = np.zeros((rows.size, len(plan.names)))
    W[:, plan.names.index("x")] = np.tile(x_rows, n_units)
    W[:, plan.names.index("y")] = np.tile(y_rows, n_units)
    W[:, plan.names.index("z")] = -2.0  # the current value must not matter
    values = _draws(W, target, spec, analysis, covariate, groups, 17)
    per_unit = values.reshape(n_units, 3)
    assert np.all(per_unit == per_unit[:, :1])  # one value per cluster

    def log_density(z):
        eta = 1.0 + 0.5 * x_rows[None, :] + (0.3 + 0.6 * x_rows[None, :]) * z[:, None]
        return -0.5 * ((z - 0.4) / 1.2) ** 2 - 0.5 * (((y_rows[None, :] - eta) / 0.7) ** 2).sum(axis=1)

    mean, var, _ = _grid_moments(log_density, np.linspace(-10, 10, 20_001))
    draws = per_unit[:, 0]
    assert abs(draws.mean() - mean) < 4 * np.sqrt(var / n_units)
    assert abs(draws.var() / var - 1) < 4 * np.sqrt(2 / n_units)


def test_cluster_level_covariate_recovers_a_cross_level_interaction():
    # 30 replications would be the validation; two show the mechanism: chained equations lose the
    # interaction of x with the cluster-level z (about -27%), the compatible draw keeps it
    from skmlmi import MIPooler

    rng = np.random.default_rng(18)
    J, n = 60, 15
    g = np.repeat(np.arange(J), n)
    z = rng.normal(size=J)[g]
    x = rng.normal(size=J * n)
    y = 1 + 0.5 * x + 0.3 * z + 0.5 * x * z + rng.normal(0, 0.5, J)[g] + rng.normal(0, 0.7, J * n)
    df = pd.DataFrame({"g": g, "y": y, "x": x, "z": z})
    df.loc[np.repeat(rng.random(J) < 0.4, n), "z"] = np.nan
    f = "y ~ x * z + (1 | g)"
    estimates = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, analysis_model in (("chained", None), ("compatible", f)):
            imputer = MultilevelIterativeImputer(
                n_imputations=5, max_iter=10, random_state=1, analysis_model=analysis_model
            )
            sets = imputer.fit_transform_all(df, groups="g")
            table = MIPooler(None, LinearMixedModel(f)).fit_completed(list(sets)).results_.table
            estimates[label] = table.loc["x:z", ["estimate", "std_error"]]
    complete = LinearMixedModel(f).fit(pd.DataFrame({"g": g, "y": y, "x": x, "z": z})).coef_["x:z"]
    assert abs(estimates["compatible"]["estimate"] - complete) < 2 * estimates["compatible"]["std_error"]
    assert estimates["chained"]["estimate"] < estimates["compatible"]["estimate"]


def test_verbose_chains_report_their_acceptance_rates(capsys):
    imputer = MultilevelIterativeImputer(
        n_imputations=1, max_iter=1, random_state=0, verbose=1, analysis_model="y ~ x + I(x ** 2) + (1 | g)"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imputer.fit(_data(seed=19), groups="g")
    assert re.search(r"chain 1: Metropolis-Hastings acceptance 'x' \d\.\d\d", capsys.readouterr().err)


@pytest.mark.parametrize(
    "formula, linear",
    [
        ("y ~ x * w + (1 + x | g)", True),
        ("y ~ x + I(x ** 2) + (1 | g)", False),
        ("y ~ np.abs(x) + w + (1 | g)", False),  # a kink at 0, inside the range of the test points
        ("y ~ scale(x) + (1 | g)", True),  # through formulaic's coding
    ],
)
def test_linearity_in_a_covariate_is_decided_once_from_the_formula(formula, linear):
    plan, target = _fitted_plan(formula)
    assert (target.column in plan.analysis.linear_in) is linear
