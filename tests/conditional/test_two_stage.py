"""Two-stage models (per-cluster fits + random-effects meta-analysis): systematic clusters, logging, coverage."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from skmlmi.conditional import DrawContext, RandomEffectsLogistic, RandomEffectsNormal
from skmlmi.conditional.two_stage import TwoStageLogistic, TwoStageNormal, TwoStagePMM, TwoStagePoisson
from skmlmi.imputer import MultilevelIterativeImputer
from skmlmi.pooling import pool_scalar


def _context(J, target="y", names=("x",), kind="continuous", n_categories=0, labels=None):
    return DrawContext(
        target=target,
        kind=kind,
        n_categories=n_categories,
        n_clusters=J,
        predictor_names=tuple(names),
        cluster_labels=labels,
    )


def _random_intercept_data(seed, J=40, n=50, n_systematic=8, tau=1.0):
    """y = 2 + x + u_j + e, u_j ~ N(0, tau^2), e ~ N(0, 1); y missing in whole clusters 0..n_systematic-1."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(J), n)
    x = rng.normal(size=J * n)
    y = 2 + x + tau * rng.normal(size=J)[groups] + rng.normal(size=J * n)
    observed = (groups >= n_systematic) & (rng.random(J * n) < 0.8)
    return y, observed, x[:, None], groups


# --------------------------------------------------------------------------- systematic clusters
@pytest.mark.parametrize("model", [TwoStageNormal(), RandomEffectsNormal()], ids=["two-stage", "random-effects"])
def test_systematically_missing_clusters_get_population_draws_in_both_families(model):
    # In the systematic clusters, y* - (2 + x) should be u_j* + e*: cluster means of the
    # residuals vary between clusters with variance tau^2 + 1/n = 1.02 (not ~0: a model that
    # gave them no random effect), and the residuals have total variance tau^2 + 1 = 2.
    # Tolerances: the spread of tau^2's posterior with 32 clusters (SD ~ sqrt(2/32) ~ 0.25)
    # dominates; 40 draws x 8 clusters give a between-variance estimate with SD ~ 0.1 on top.
    y, observed, X, groups = _random_intercept_data(seed=3)
    J = groups.max() + 1
    rows = ~observed & (groups < 8)
    rng = np.random.default_rng(7)
    between, total, centre = [], [], []
    state = None
    for _ in range(40):
        draw, state = model.draw(y, observed, X, np.array([1]), groups, rng, state, _context(J))
        resid = draw.sample(X[rows], groups[rows], rng) - (2 + X[rows, 0])
        means = np.bincount(groups[rows], resid, 8) / np.bincount(groups[rows], None, 8)
        between.append(means.var(ddof=1))
        total.append(resid.var())
        centre.append(resid.mean())
    assert 0.5 < np.mean(between) < 1.7
    assert 1.5 < np.mean(total) < 2.7
    # the population mean: residual centre within 3 SE (SE ~ sqrt(1.02/8 / 40 + posterior var of the mean ~ 0.03))
    assert abs(np.mean(centre)) < 0.45


def test_two_stage_and_random_effects_agree_on_systematic_clusters():
    # Both families impute the same 8 systematically missing clusters; their mean imputed
    # cluster spread and centre must agree (same data, 40 draws each; tolerance from the
    # posterior spread of tau^2, SD ~ 0.25, per model).
    y, observed, X, groups = _random_intercept_data(seed=11)
    J = groups.max() + 1
    rows = ~observed & (groups < 8)
    summary = {}
    for label, model in (("two-stage", TwoStageNormal()), ("random-effects", RandomEffectsNormal())):
        rng = np.random.default_rng(5)
        state, between, centre = None, [], []
        for _ in range(40):
            draw, state = model.draw(y, observed, X, np.array([1]), groups, rng, state, _context(J))
            resid = draw.sample(X[rows], groups[rows], rng) - (2 + X[rows, 0])
            means = np.bincount(groups[rows], resid, 8) / np.bincount(groups[rows], None, 8)
            between.append(means.var(ddof=1))
            centre.append(means.mean())
        summary[label] = (np.mean(between), np.mean(centre))
    (b1, c1), (b2, c2) = summary["two-stage"], summary["random-effects"]
    assert abs(b1 - b2) < 0.6
    assert abs(c1 - c2) < 0.35


def test_two_stage_logistic_and_random_effects_logistic_agree_on_systematic_clusters():
    # logit P(y=1) = -0.5 + x + u_j, u_j ~ N(0, 0.5^2); y never observed in clusters 0..5.
    # The imputed event rate of those clusters should match the population's marginal
    # rate (computed by Monte Carlo) for both families; the SD of an average rate over 30
    # draws x 6 clusters x 150 rows is ~0.03 (dominated by the parameter draws).
    rng = np.random.default_rng(2)
    J, n = 30, 150
    groups = np.repeat(np.arange(J), n)
    x = rng.normal(size=J * n)
    y = (rng.random(J * n) < 1 / (1 + np.exp(0.5 - x - 0.5 * rng.normal(size=J)[groups]))).astype(float)
    observed = groups >= 6
    rows = ~observed
    u = rng.normal(scale=0.5, size=(2000, 1))
    truth = np.mean(1 / (1 + np.exp(0.5 - x[rows][None, :200] - u)))
    context = _context(J, kind="binary", n_categories=2)
    rates = {}
    for label, model in (("two-stage", TwoStageLogistic()), ("random-effects", RandomEffectsLogistic())):
        draw_rng = np.random.default_rng(9)
        state, values = None, []
        for _ in range(30):
            draw, state = model.draw(y, observed, x[:, None], np.array([1]), groups, draw_rng, state, context)
            values.append(draw.sample(x[rows, None], groups[rows], draw_rng).mean())
        rates[label] = np.mean(values)
    assert abs(rates["two-stage"] - truth) < 0.1
    assert abs(rates["random-effects"] - truth) < 0.1
    assert abs(rates["two-stage"] - rates["random-effects"]) < 0.1


def test_poisson_imputes_systematic_clusters_at_the_population_rate():
    # log E[y] = 0.5 + 0.3 x + u_j, u_j ~ N(0, 0.3^2): marginal mean exp(0.5 + 0.3 x + 0.045).
    rng = np.random.default_rng(4)
    J, n = 25, 80
    groups = np.repeat(np.arange(J), n)
    x = rng.normal(size=J * n)
    y = rng.poisson(np.exp(0.5 + 0.3 * x + 0.3 * rng.normal(size=J)[groups])).astype(float)
    observed = groups >= 5
    rows = ~observed
    truth = np.mean(np.exp(0.5 + 0.3 * x[rows] + 0.045))
    draw_rng = np.random.default_rng(1)
    values = []
    for _ in range(30):
        draw, _ = TwoStagePoisson().draw(
            y, observed, x[:, None], np.array([1]), groups, draw_rng, None, _context(J, kind="integer")
        )
        values.append(draw.sample(x[rows, None], groups[rows], draw_rng).mean())
    # the SD of the averaged rate is dominated by the population draws (0.3 on the log scale over 5 clusters)
    assert abs(np.mean(values) / truth - 1) < 0.15


# --------------------------------------------------------------------------- non-estimable clusters
def test_non_estimable_normal_clusters_are_logged_and_imputed():
    y, observed, X, groups = _random_intercept_data(seed=1, J=20, n_systematic=2)
    labels = np.array([f"study{j}" for j in range(20)])
    observed = observed.copy()
    few = np.flatnonzero(groups == 5)
    observed[few] = False
    observed[few[:2]] = True  # 2 observed rows for 2 coefficients (+ min_residual_df 2)
    X = X.copy()
    X[groups == 6, 0] = 1.5  # x constant within cluster 6: singular per-cluster design
    context = _context(20, labels=labels)
    draw, _ = TwoStageNormal().draw(y, observed, X, np.array([1]), groups, np.random.default_rng(0), None, context)
    text = " ".join(context.events)
    assert "'study5'" in text and "fewer than" in text
    assert "'study6'" in text and "singular design" in text
    values = draw.sample(X, groups, np.random.default_rng(1))
    assert np.isfinite(values).all()


def test_non_estimable_logistic_clusters_are_logged():
    rng = np.random.default_rng(3)
    J, n = 15, 80
    groups = np.repeat(np.arange(J), n)
    x = rng.normal(size=J * n)
    y = (rng.random(J * n) < 1 / (1 + np.exp(-x))).astype(float)
    y[groups == 2] = 0.0  # all-0 outcome
    sep = groups == 3
    y[sep] = (x[sep] > 0).astype(float)  # perfect separation
    observed = np.ones(J * n, dtype=bool)
    labels = np.array([f"c{j}" for j in range(J)])
    context = _context(J, kind="binary", n_categories=2, labels=labels)
    draw, _ = TwoStageLogistic().draw(y, observed, x[:, None], np.array([1]), groups, rng, None, context)
    text = " ".join(context.events)
    assert "'c2'" in text and "all 0 or all 1" in text
    assert "'c3'" in text and "separation" in text
    assert not any(f"'c{j}'" in text for j in (0, 1, 4, 5))


def test_engine_records_non_estimable_clusters_in_logged_events():
    y, observed, X, groups = _random_intercept_data(seed=8, J=15, n=30, n_systematic=2)
    observed = observed.copy()
    observed[np.flatnonzero(groups == 4)[2:]] = False
    df = pd.DataFrame({"school": groups, "x": X[:, 0], "y": np.where(observed, y, np.nan)})
    imp = MultilevelIterativeImputer(methods={"y": TwoStageNormal()}, n_imputations=2, max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sets = imp.fit_transform_all(df, groups="school")
    assert all(s["y"].notna().all() for s in sets)
    reasons = imp.logged_events_["reason"].astype(str)
    assert reasons.str.contains("systematically missing").any() and reasons.str.contains("'4'").any()


# --------------------------------------------------------------------------- cluster-level predictors
def test_cluster_level_predictor_enters_the_meta_regression():
    # beta_0j = 1 + 2 z_j + u_j (tau = 0.2): the imputed cluster means of the systematic
    # clusters must follow z_j with slope ~2 (SE of the meta-regression slope with 30
    # clusters and tau 0.2 is ~0.05); without the meta-regression they would not depend on z.
    rng = np.random.default_rng(6)
    J, n = 40, 40
    groups = np.repeat(np.arange(J), n)
    z = rng.normal(size=J)
    x = rng.normal(size=J * n)
    y = 1 + 2 * z[groups] + x + 0.2 * rng.normal(size=J)[groups] + rng.normal(size=J * n)
    observed = groups >= 10
    X = np.column_stack([x, z[groups]])
    context = _context(J, names=("x", "z"))
    draw, _ = TwoStageNormal().draw(y, observed, X, np.array([1, 1]), groups, rng, None, context)
    rows = ~observed
    slopes = []
    for _ in range(20):
        values = draw.sample(X[rows], groups[rows], rng) - x[rows]
        means = np.bincount(groups[rows], values, 10) / np.bincount(groups[rows], None, 10)
        slopes.append(np.polyfit(z[:10], means, 1)[0])
    assert abs(np.mean(slopes) - 2) < 0.3
    # a cluster unseen at fit takes its study-level covariate from its own rows
    new_X = np.column_stack([np.zeros(50), np.full(50, 3.0)])
    new = draw.sample(new_X, np.full(50, J + 1), rng)
    assert abs(new.mean() - 7) < 1.5  # 1 + 2 * 3, +- population draw (tau 0.2) and residual noise


def test_too_few_estimable_clusters_for_the_meta_regression_is_a_clear_error():
    rng = np.random.default_rng(0)
    J, n = 3, 30  # 3 clusters cannot estimate a meta-regression on intercept + 2 study-level covariates
    groups = np.repeat(np.arange(J), n)
    z1, z2 = rng.normal(size=J), rng.normal(size=J)
    X = np.column_stack([rng.normal(size=J * n), z1[groups], z2[groups]])
    y = X.sum(axis=1) + rng.normal(size=J * n)
    with pytest.raises(ValueError, match="cluster-level predictors"):
        TwoStageNormal().draw(
            y, np.ones(J * n, bool), X, np.ones(3, int), groups, rng, None, _context(J, names=("x", "z1", "z2"))
        )


# --------------------------------------------------------------------------- PMM
def test_pmm_imputations_do_not_depend_on_row_order():
    # Clusters with intercepts 0, 5, ..., 45: micemd's row-order bug would match recipients
    # with other clusters' predictions (imputations off by multiples of 5). Per-cluster mean
    # imputations over 20 draws: MC SD ~0.1, so 0.5 separates order effects from noise.
    rng = np.random.default_rng(1)
    J, n = 10, 60
    groups = np.repeat(np.arange(J), n)
    x = rng.normal(size=J * n)
    y = np.round(5.0 * groups + x + rng.normal(size=J * n), 1)
    observed = rng.random(J * n) < 0.7
    perm = rng.permutation(J * n)

    def cluster_means(order, seed):
        draw_rng = np.random.default_rng(seed)
        g, xo, yo, obs = groups[order], x[order, None], y[order], observed[order]
        sums = np.zeros(J)
        for _ in range(20):
            draw, _ = TwoStagePMM().draw(yo, obs, xo, np.array([2]), g, draw_rng, None, _context(J))
            values = draw.sample(xo[~obs], g[~obs], draw_rng)
            sums += np.bincount(g[~obs], values, J) / np.bincount(g[~obs], None, J)
        return sums / 20

    plain = cluster_means(np.arange(J * n), 3)
    shuffled = cluster_means(perm, 4)
    truth = np.bincount(groups[~observed], y[~observed], J) / np.bincount(groups[~observed], None, J)
    assert np.abs(plain - shuffled).max() < 0.5
    assert np.abs(shuffled - truth).max() < 0.8  # each cluster's own values, not its neighbours'


def test_pmm_imputes_only_observed_values():
    y, observed, X, groups = _random_intercept_data(seed=2)
    y = np.round(y)
    draw, _ = TwoStagePMM().draw(
        y, observed, X, np.array([1]), groups, np.random.default_rng(0), None, _context(groups.max() + 1)
    )
    values = draw.sample(X[~observed], groups[~observed], np.random.default_rng(1))
    assert set(np.unique(values)) <= set(np.unique(y[observed]))


# --------------------------------------------------------------------------- roles, input checks
def test_role_codes_one_and_two_mean_the_same():
    y, observed, X, groups = _random_intercept_data(seed=4)
    out = []
    for role in (1, 2):
        rng = np.random.default_rng(3)
        draw, _ = TwoStageNormal().draw(y, observed, X, np.array([role]), groups, rng, None, _context(40))
        out.append(draw.sample(X, groups, rng))
    np.testing.assert_array_equal(out[0], out[1])


def test_bad_targets_are_refused_with_the_variable_name():
    y, observed, X, groups = _random_intercept_data(seed=4)
    with pytest.raises(ValueError, match="'y'.*non-negative counts"):
        TwoStagePoisson().draw(
            y - 10, observed, X, np.array([1]), groups, np.random.default_rng(0), None, _context(40, kind="integer")
        )
    with pytest.raises(ValueError, match="'y'.*0/1"):
        TwoStageLogistic().draw(
            y,
            observed,
            X,
            np.array([1]),
            groups,
            np.random.default_rng(0),
            None,
            _context(40, kind="binary", n_categories=2),
        )


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_likelihood_meta_analysis_methods_draw_too(method):
    y, observed, X, groups = _random_intercept_data(seed=5, J=20)
    draw, state = TwoStageNormal(method=method).draw(
        y, observed, X, np.array([1]), groups, np.random.default_rng(0), None, _context(20)
    )
    assert state.psi.shape == (2, 2) and np.isfinite(draw.sample(X, groups, np.random.default_rng(1))).all()


# --------------------------------------------------------------------------- known-truth coverage
def _coverage_problem(rng, J=30, n=40, n_systematic=6):
    """x_ij ~ N(mu_j, 1), y = 1 + 0.5 x + v_j + e; x systematically missing in 6 clusters, MAR on y elsewhere."""
    groups = np.repeat(np.arange(J), n)
    x = rng.normal(size=J)[groups] + rng.normal(size=J * n)
    y = 1 + 0.5 * x + rng.normal(0, 0.7, J)[groups] + rng.normal(size=J * n)
    systematic = rng.choice(J, n_systematic, replace=False)
    p = 1 / (1 + np.exp(1.0 - 0.8 * (y - y.mean())))
    observed = ~((rng.random(J * n) < p) | np.isin(groups, systematic))
    return groups, x, y, observed


def _analyses(groups, x, y, J):
    """Grand mean of x (mean of cluster means, df J - 1) and the within-cluster slope of y on x (df n - J - 1)."""
    counts = np.bincount(groups, None, J)
    cm = np.bincount(groups, x, J) / counts
    xc = x - cm[groups]
    yc = y - (np.bincount(groups, y, J) / counts)[groups]
    slope = xc @ yc / (xc @ xc)
    s2 = ((yc - slope * xc) ** 2).sum() / (len(y) - J - 1)
    return np.array([cm.mean(), slope]), np.array([cm.var(ddof=1) / J, s2 / (xc @ xc)]), [J - 1, len(y) - J - 1]


def test_two_stage_normal_coverage_of_a_systematically_missing_covariate():
    # x is the incomplete variable (predictor y), so one draw per imputation from the
    # observed data is a proper MI. Truths: E[x] = 0, within slope 0.5. Full version (1000
    # replications; coverage 0.947 and 0.955) in benchmarks/bench_two_stage.py.
    reps, m = 150, 5
    low, high = stats.binom.ppf([0.005, 0.995], reps, 0.95) / reps  # 99% acceptance region for `reps`
    hits = np.zeros(2)
    truth = np.array([0.0, 0.5])
    for child in np.random.SeedSequence(2024).spawn(reps):
        rng = np.random.default_rng(child)
        groups, x, y, observed = _coverage_problem(rng)
        J = groups.max() + 1
        estimates, variances = [], []
        for _ in range(m):
            draw, _ = TwoStageNormal().draw(
                np.where(observed, x, 0.0),
                observed,
                y[:, None],
                np.array([1]),
                groups,
                rng,
                None,
                _context(J, target="x", names=("y",)),
            )
            completed = x.copy()
            completed[~observed] = draw.sample(y[~observed, None], groups[~observed], rng)
            q, u, df = _analyses(groups, completed, y, J)
            estimates.append(q)
            variances.append(u)
        estimates, variances = np.array(estimates), np.array(variances)
        for k in range(2):
            row = pool_scalar(estimates[:, k], variances[:, k], dfcom=df[k])
            hits[k] += row["conf_low"] <= truth[k] <= row["conf_high"]
    coverage = hits / reps
    assert np.all((coverage >= low) & (coverage <= high)), (coverage, low, high)


# --------------------------------------------------------------------------- hostile inputs
def test_too_few_estimable_clusters_error_says_why():
    # y constant within every cluster: each per-cluster fit is perfect, none is estimable
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(6), 20)
    df = pd.DataFrame({"g": g, "x": rng.normal(size=120), "y": g * 1.0})
    df.loc[df["g"] == 0, "y"] = np.nan
    df.loc[rng.random(120) < 0.1, "y"] = np.nan
    imp = MultilevelIterativeImputer(methods={"y": TwoStageNormal()}, n_imputations=1, max_iter=1, random_state=0)
    with pytest.raises(ValueError, match=r"only 0 of 6 cluster\(s\).*1 without observed values; 5 with perfect fit"):
        imp.fit_transform_all(df, groups="g")


def test_separated_and_all_zero_clusters_are_logged_and_imputed_without_nan():
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(10), 40)
    x = rng.normal(size=400)
    b = (rng.random(400) < 1 / (1 + np.exp(-x))).astype(float)
    b[g == 3] = (x[g == 3] > 0).astype(float)  # perfectly separated cluster
    b[g == 4] = 0.0  # no event
    df = pd.DataFrame({"g": pd.Categorical([f"s{j}" for j in g]), "x": x, "b": b})
    df.loc[(df["g"] == "s0") | (rng.random(400) < 0.15), "b"] = np.nan
    before = df.copy()
    imp = MultilevelIterativeImputer(methods={"b": TwoStageLogistic()}, n_imputations=2, max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sets = imp.fit_transform_all(df, groups="g")
    assert df.equals(before)
    assert all(s["b"].notna().all() and s["b"].isin([0.0, 1.0]).all() for s in sets)
    reasons = " ".join(imp.logged_events_["reason"])
    assert "separation" in reasons and "'s3'" in reasons
    assert "all 0 or all 1" in reasons and "'s4'" in reasons
