"""RandomEffectsPoisson: its Metropolis kernel keeps the exact posterior, bad counts are errors, known truth,
and the defaults choose it for counts only.

Tolerances come from Monte Carlo error (seeded): Kolmogorov-Smirnov tests at level 0.001 and
mean differences within 3.5 Monte Carlo standard errors.
"""

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from skmlmi import MultilevelIterativeImputer
from skmlmi.conditional import DrawContext, RandomEffectsPoisson
from skmlmi.conditional.random_effects_poisson import _newton_metropolis, _recentre
from skmlmi.pooling.rubin import pool_scalar
from skmlmi.recommend import is_count_column, recommend_methods


# --------------------------------------------------------------------------- the kernel
def test_newton_metropolis_step_leaves_the_exact_posterior_invariant():
    # One coefficient theta, rows y_i ~ Poisson(exp(offset_i + x_i theta)), prior N(0, 1/P): the
    # posterior is known up to a constant, so its CDF follows by quadrature. 20,000 independent
    # copies of the chain (blocks, all at once) start far in the tail and run 40 steps: a kernel that
    # keeps the posterior and mixes has then reached it.
    y = np.array([0.0, 3.0, 1.0, 2.0, 0.0])
    x = np.array([-1.0, 1.2, 0.3, 0.8, -0.5])
    offset = np.array([0.2, -0.1, 0.0, 0.3, 0.1])
    precision = 0.5

    def log_post(theta):
        eta = offset[None] + np.outer(theta, x)
        return (y * eta - np.exp(eta)).sum(axis=1) - 0.5 * precision * theta**2

    grid = np.linspace(-6, 6, 4001)
    density = np.exp(log_post(grid) - log_post(grid).max())
    cdf = integrate.cumulative_trapezoid(density, grid, initial=0.0)
    cdf /= cdf[-1]

    K = 20_000
    rows = np.tile(np.arange(len(y)), K)
    block = np.repeat(np.arange(K), len(y))
    starts = np.arange(K) * len(y)
    theta = np.full((K, 1), 2.5)
    rng = np.random.default_rng(7)
    accepted = 0.0
    for _ in range(40):
        theta, accept = _newton_metropolis(
            x[rows, None], offset[rows], y[rows], theta, np.array([[precision]]), block, starts, rng
        )
        accepted += accept.mean()
    assert accepted / 40 > 0.5
    p_value = stats.kstest(theta[:, 0], lambda t: np.interp(t, grid, cdf)).pvalue
    assert p_value > 1e-3, p_value


def test_centred_step_is_the_exact_conditional_of_the_random_part_fixed_effects():
    # Given c_j = beta_R + b_j the draw of beta_R is N(A^-1 Psi^-1 sum c_j, A^-1): check mean and variance.
    rng = np.random.default_rng(3)
    b = rng.normal(size=(30, 1)) * 0.5
    beta = np.array([0.4, -0.2])
    psi = np.array([[0.25]])
    prior_variance = np.array([100.0, 6.25])
    draws = np.array([_recentre(beta, b, np.array([0]), prior_variance, psi, rng)[0][0] for _ in range(4000)])
    centred = (b + beta[0]).sum()
    precision = 1 / 100 + 30 / 0.25
    assert abs(draws.mean() - centred / 0.25 / precision) < 3.5 * np.sqrt(1 / precision / 4000)
    assert abs(draws.var() / (1 / precision) - 1) < 3.5 * np.sqrt(2 / 4000)
    kept = _recentre(beta, b, np.array([0]), prior_variance, psi, rng)
    np.testing.assert_allclose(kept[1] + kept[0][0], b + beta[0])  # the likelihood's c_j are unchanged
    assert kept[0][1] == beta[1]  # other fixed effects untouched


# --------------------------------------------------------------------------- bad input
def _counts(seed=0, J=12, n_j=15):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(J), n_j)
    x = rng.normal(size=(J * n_j, 1))
    y = rng.poisson(np.exp(0.3 + 0.4 * x[:, 0] + 0.5 * rng.normal(size=J)[groups])).astype(float)
    return y, rng.random(J * n_j) < 0.7, x, groups


@pytest.mark.parametrize("bad", [-1.0, 2.5])
def test_a_value_that_is_not_a_count_is_an_error_naming_the_variable_and_cluster(bad):
    y, observed, x, groups = _counts()
    row = np.flatnonzero(observed & (groups == 4))[0]
    y[row] = bad
    labels = [f"school {j}" for j in range(12)]
    context = DrawContext(target="visits", kind="integer", n_clusters=12, cluster_labels=labels)
    with pytest.raises(ValueError, match=rf"'visits'.*found {bad:g} in cluster 'school 4'"):
        RandomEffectsPoisson().draw(y, observed, x, np.array([1]), groups, np.random.default_rng(0), None, context)


def test_all_zero_counts_are_logged_and_imputed_as_mostly_zero():
    y, observed, x, groups = _counts()
    y[:] = 0.0
    context = DrawContext(target="y", kind="integer", n_clusters=12)
    draw, _ = RandomEffectsPoisson().draw(
        y, observed, x, np.array([1]), groups, np.random.default_rng(0), None, context
    )
    assert any("0 in every observed row" in event for event in context.events)
    assert draw.sample(x, groups, np.random.default_rng(1)).mean() < 0.05


def test_systematically_missing_and_unseen_clusters_draw_effects_from_the_population():
    # a cluster without observed counts: its rows share one effect drawn from N(0, Psi*), so over many
    # draws the cluster's log mean varies like the population's random intercept, not like a fitted one
    y, observed, x, groups = _counts(seed=1, J=40, n_j=20)
    observed &= groups != 0
    context = DrawContext(target="y", kind="integer", n_clusters=40, cluster_labels=[f"c{j}" for j in range(40)])
    rng = np.random.default_rng(2)
    model, state, means, psis = RandomEffectsPoisson(), None, [], []
    for _ in range(150):
        draw, state = model.draw(y, observed, x, np.array([1]), groups, rng, state, context)
        means.append(draw.log_mean(np.zeros((2, 1)), np.array([0, 99]), rng) - draw.beta[0])
        psis.append(draw.psi[0, 0])
    assert any("not observed in 1 cluster(s) (c0)" in event for event in context.events)
    effects = np.array(means)
    assert np.isnan(state.b_std[0]).all() and np.isfinite(state.b_std[1:]).all()
    # the variance of the population draws is the posterior mean of Psi (effects given Psi are N(0, Psi))
    for column in effects.T:
        assert abs(column.var() / np.mean(psis) - 1) < 3.5 * np.sqrt(2 / 150) + 0.1


# --------------------------------------------------------------------------- known truth
TRUE_BETA = (0.3, 0.5)
TRUE_PSI = 0.3  # log-rate random-intercept variance: an ICC of the log rate of 0.23 with x's variance 1


def _replicate(seed, m=5, J=40, n_j=15):
    """One simulated data set, 30% MAR missing counts, m imputations: pooled and complete-data analyses."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(J), n_j)
    x = rng.normal(size=J * n_j)
    u = rng.normal(scale=np.sqrt(TRUE_PSI), size=J)
    y = rng.poisson(np.exp(TRUE_BETA[0] + TRUE_BETA[1] * x + u[groups])).astype(float)
    missing = rng.random(J * n_j) < 1 / (1 + np.exp(-(-0.9 + 0.8 * x)))  # MAR on x, about 30%
    observed = ~missing
    context = DrawContext(target="y", kind="integer", n_clusters=J)
    model, state, estimates = RandomEffectsPoisson(), None, []
    current = np.where(observed, y, np.round(y[observed].mean()))
    for _ in range(m):
        for _ in range(3):  # visits between imputations (the engine's max_iter with nothing else to impute)
            draw, state = model.draw(current, observed, x[:, None], np.array([1]), groups, rng, state, context)
            current[missing] = draw.sample(x[missing, None], groups[missing], rng)
        estimates.append(_analysis(current, groups, J))
    complete = _analysis(y, groups, J)
    return np.array(estimates), complete


def _analysis(y, groups, J):
    """Mean count with its cluster-robust variance, and the between-cluster variance of cluster means."""
    cluster_means = np.bincount(groups, weights=y, minlength=J) / np.bincount(groups, minlength=J)
    return y.mean(), cluster_means.var(ddof=1) / J, cluster_means.var(ddof=1)


def test_known_truth_mean_count_is_unbiased_with_valid_coverage_and_keeps_the_clustering():
    reps = 60
    differences, covered = [], []
    truth = np.exp(TRUE_BETA[0] + TRUE_BETA[1] ** 2 / 2 + TRUE_PSI / 2)
    for seed in range(reps):
        estimates, complete = _replicate(seed)
        pooled = pool_scalar(estimates[:, 0], estimates[:, 1], dfcom=39)  # J - 1 cluster means
        covered.append(pooled["conf_low"] <= truth <= pooled["conf_high"])
        differences.append([pooled["estimate"] - complete[0], estimates[:, 2].mean() - complete[2]])
    differences = np.array(differences)
    mc_se = differences.std(axis=0, ddof=1) / np.sqrt(reps)
    # the mean count and the spread of the cluster means (the clustering) match the complete data
    assert np.all(np.abs(differences.mean(axis=0)) <= 3.5 * mc_se), (differences.mean(axis=0), mc_se)
    # 95% coverage: 3.5 binomial SEs with 60 replications
    assert np.mean(covered) >= 0.95 - 3.5 * np.sqrt(0.95 * 0.05 / reps)


# --------------------------------------------------------------------------- chosen by default
def _frame(kind, seed=0, J=30, n_j=20):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(J), n_j)
    x = rng.normal(size=J * n_j)
    mu = np.exp(0.5 + 0.3 * x + 0.4 * rng.normal(size=J)[groups])
    values = {
        "poisson": lambda: rng.poisson(mu),
        "overdispersed": lambda: rng.poisson(mu * rng.gamma(1.0, 1.0, size=J * n_j)),  # negative binomial
        "score": lambda: np.clip(np.round(3 + x + 0.3 * rng.normal(size=J * n_j)), 1, 5),  # 1..5, no zero
        "year": lambda: 2000 + rng.poisson(mu),  # counts shifted far from zero: underdispersed
    }[kind]()
    frame = pd.DataFrame({"school": groups, "x": x, "y": values.astype(float)})
    frame.loc[rng.random(J * n_j) < 0.2, "y"] = np.nan
    return frame


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("poisson", "RandomEffectsPoisson"),
        ("overdispersed", "RandomEffectsPMM"),
        ("score", "RandomEffectsPMM"),
        ("year", "RandomEffectsPMM"),
    ],
)
def test_the_defaults_give_counts_the_poisson_model_and_other_whole_numbers_pmm(kind, expected):
    # Poisson counts: 9600 observed values, so that the planner's check of the Poisson model given x
    # (its Pearson dispersion within 0.05 of 1, SE about 0.015) errs with probability below 0.001
    frame = _frame(kind, J=480) if kind == "poisson" else _frame(kind)
    codes = frame["school"].to_numpy()
    assert is_count_column(frame["y"].to_numpy(), codes) == (expected == "RandomEffectsPoisson")
    table = recommend_methods(frame, "school")
    assert table.set_index("column").loc["y", "method_name"] == expected
    imputer = MultilevelIterativeImputer(n_imputations=1, max_iter=1, random_state=0).fit(frame, groups="school")
    assert type(imputer.methods_["y"]).__name__ == expected
    completed = imputer.transform(frame)
    assert (completed["y"] == np.round(completed["y"])).all() and (completed["y"] >= 0).all()


def test_count_rule_needs_non_negative_whole_numbers_and_within_cluster_spread():
    codes = np.repeat(np.arange(10), 5)
    counts = np.random.default_rng(0).poisson(2.0, size=50).astype(float)
    assert is_count_column(counts, codes)
    assert not is_count_column(counts - 1, codes)  # negative values
    assert not is_count_column(counts + 0.5, codes)  # not whole
    assert not is_count_column(np.zeros(50), codes)  # all zero: nothing to spread
    assert not is_count_column(np.full(50, np.nan), codes)
    assert not is_count_column(counts[:10], np.arange(10))  # one row per cluster: no within-cluster spread
