"""Tests of the random-effects models of binary and categorical targets.

Every model is called through the contract (``model.draw(...)`` repeatedly, feeding the
state back, as the chained-equations engine does for one variable). Tolerances come from
Monte Carlo error: a posterior mean from a calibrated posterior lies within a few
posterior standard deviations of the truth; Monte Carlo means within a few standard
errors of their expectation. Each tolerance states its derivation where it is used.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import special

from skmlmi.conditional.base import DrawContext
from skmlmi.conditional.random_effects_discrete import RandomEffectsCategorical, RandomEffectsLogistic


# --------------------------------------------------------------------------- helpers
def _context(n_clusters, kind="binary", n_categories=2, ordered=False, target="smoker"):
    return DrawContext(target=target, kind=kind, n_categories=n_categories, ordered=ordered, n_clusters=n_clusters)


def _run_chain(model, y, observed, X, roles, groups, n_visits, seed, **context_kwargs):
    """Visit one variable ``n_visits`` times, feeding the state back; return draws and events."""
    rng = np.random.default_rng(seed)
    state, draws, events = None, [], []
    for _ in range(n_visits):
        context = _context(**context_kwargs)
        draw, state = model.draw(y, observed, X, np.asarray(roles), groups, rng, state, context)
        draws.append(draw)
        events.extend(context.events)
    return draws, events, rng


def _simulate_logistic(seed, n_clusters=80, size=40, beta=(-0.5, 1.0, 0.5), tau2=1.0, slope_var=0.0):
    rng = np.random.default_rng(seed)
    n = n_clusters * size
    groups = np.repeat(np.arange(n_clusters), size)
    X = rng.normal(size=(n, 2))
    b0 = np.sqrt(tau2) * rng.normal(size=n_clusters)
    b1 = np.sqrt(slope_var) * rng.normal(size=n_clusters)
    eta = beta[0] + X @ np.asarray(beta[1:]) + b0[groups] + b1[groups] * X[:, 0]
    y = (rng.random(n) < special.expit(eta)).astype(float)
    observed = rng.random(n) < 0.8
    return y, observed, X, groups


def _sample_categories(eta, rng):
    """Categories drawn from softmax(eta) (one uniform per row), and an 80 % observed mask."""
    prob = special.softmax(eta, axis=1)
    y = (prob.cumsum(axis=1) < rng.random(len(eta))[:, None]).sum(axis=1).astype(float)
    return prob, y, rng.random(len(eta)) < 0.8


def _ordered_chain(latent, cuts, x, role, groups, rng, seed):
    """Ordered categories cut from ``latent``, 80 % observed, imputed by a 250-visit chain: (kept draws, rng)."""
    y = np.searchsorted(cuts, latent).astype(float)
    observed = rng.random(len(groups)) < 0.8
    draws, _, chain_rng = _run_chain(
        RandomEffectsCategorical(n_gibbs=1),
        y,
        observed,
        x,
        [role],
        groups,
        250,
        seed=seed,
        n_clusters=int(groups.max()) + 1,
        kind="categorical",
        n_categories=len(cuts) + 1,
        ordered=True,
    )
    return draws[50:], chain_rng


def _anova_icc(y, groups):
    """One-way ANOVA estimator of the intraclass correlation (equal cluster sizes)."""
    n_clusters = groups.max() + 1
    size = len(y) / n_clusters
    means = np.bincount(groups, weights=y) / np.bincount(groups)
    msb = size * np.sum((means - y.mean()) ** 2) / (n_clusters - 1)
    msw = np.sum((y - means[groups]) ** 2) / (len(y) - n_clusters)
    return (msb - msw) / (msb + (size - 1) * msw)


# --------------------------------------------------------------------------- logistic
def test_logistic_recovers_fixed_effects_and_variance_components():
    truth = np.array([-0.5, 1.0, 0.5])
    y, observed, X, groups = _simulate_logistic(1, n_clusters=100, beta=truth, tau2=1.0, slope_var=0.25)
    draws, _, _ = _run_chain(
        RandomEffectsLogistic(n_gibbs=1), y, observed, X, [2, 1], groups, 400, seed=2, n_clusters=100
    )
    kept = draws[50:]
    beta = np.array([d.beta for d in kept])
    psi = np.array([np.diag(d.psi) for d in kept])
    # Posterior mean vs truth: for a calibrated posterior the error is ~ N(0, posterior sd^2);
    # the chain's Monte Carlo error (350 weakly correlated draws) adds < 10% of that. 4 sd.
    sd = beta.std(axis=0)
    assert np.all(np.abs(beta.mean(axis=0) - truth) < 4 * sd), (beta.mean(axis=0), sd)
    psi_truth = np.array([1.0, 0.25])
    assert np.all(np.abs(psi.mean(axis=0) - psi_truth) < 4 * psi.std(axis=0)), (psi.mean(axis=0), psi.std(axis=0))
    # The between-cluster variance is really estimated, not stuck at the prior (scale 0.1).
    assert psi[:, 0].mean() > 0.5


def test_logistic_imputations_keep_clustering_single_level_loses_it():
    rng = np.random.default_rng(5)
    n_clusters, size = 100, 30
    groups = np.repeat(np.arange(n_clusters), size)
    x = rng.normal(size=(len(groups), 1))
    eta = 0.3 * x[:, 0] + np.sqrt(2.0) * rng.normal(size=n_clusters)[groups]
    y = (rng.random(len(groups)) < special.expit(eta)).astype(float)
    observed = rng.random(len(groups)) < 0.5
    icc_full = _anova_icc(y, groups)

    def completed_iccs(model_groups, n_model_clusters):
        draws, _, rng_chain = _run_chain(
            RandomEffectsLogistic(), y, observed, x, [1], model_groups, 40, seed=6, n_clusters=n_model_clusters
        )
        out = []
        for draw in draws[4::3]:  # every third visit: successive visits share slow variance moves
            completed = y.copy()
            completed[~observed] = draw.sample(x[~observed], model_groups[~observed], rng_chain)
            out.append(_anova_icc(completed, groups))
        return np.array(out)

    ours = completed_iccs(groups, n_clusters)
    single = completed_iccs(np.zeros_like(groups), 1)  # one cluster: a single-level logistic model
    # In proper imputation the full-data ICC behaves like one more imputation, so
    # ICC_full - mean(ICC_m) has sd ~ sd_between * sqrt(1 + 1/m). Over 12 simulated data
    # sets the standardised differences had mean -0.09 (no bias) and sd 1.26 (the visits
    # of one chain are not independent), so 4 * 1.26 ~ 5 of those.
    tolerance = 5 * ours.std(ddof=1) * np.sqrt(1 + 1 / len(ours))
    assert abs(ours.mean() - icc_full) < tolerance, (ours.mean(), icc_full, tolerance)
    # With half the rows imputed without clustering the ICC roughly halves.
    assert single.mean() < icc_full - 0.25 * icc_full, (single.mean(), icc_full)


def test_systematically_missing_clusters_drawn_from_population():
    y, observed, X, groups = _simulate_logistic(3, n_clusters=100, size=30, beta=(0.0, 0.5, 0.0), tau2=2.0)
    systematic = np.arange(70, 100)
    observed[np.isin(groups, systematic)] = False
    draws, events, rng = _run_chain(RandomEffectsLogistic(), y, observed, X, [1, 1], groups, 8, seed=4, n_clusters=100)
    assert any("not observed in 30 cluster(s)" in e and "'smoker'" in e and "70" in e for e in events)
    draw = draws[-1]
    assert np.all(np.isnan(draw.b[systematic])) and not np.any(np.isnan(draw.b[:70]))
    # Imputed cluster proportions in systematic clusters must vary between clusters as in
    # the population (tau^2 = 2), far beyond the binomial variance p(1-p)/30 <= 0.0083 of a
    # model that would give them all the same effect.
    rows = np.isin(groups, systematic)
    imputed = draw.sample(X[rows], groups[rows], rng)
    proportions = np.bincount(groups[rows], weights=imputed, minlength=100)[systematic] / 30
    observed_props = np.bincount(groups[~rows], weights=y[~rows], minlength=100)[:70] / 30
    assert proportions.var() > 3 * 0.0083
    # ... and on the same scale as the observed clusters' spread (ratio of variances of 30
    # and 70 clusters: an F(29, 69) ratio lies within (0.45, 2.0) with probability ~0.98).
    assert 0.35 < proportions.var() / observed_props.var() < 2.5


def test_unseen_clusters_at_sample_time_share_one_effect_per_cluster():
    y, observed, X, groups = _simulate_logistic(4, n_clusters=30, size=20)
    draws, _, rng = _run_chain(RandomEffectsLogistic(), y, observed, X, [1, 1], groups, 2, seed=1, n_clusters=30)
    new_groups = np.repeat([30, 31, 32], 4)
    eta = draws[-1].linear_predictor(np.zeros((12, 2)), new_groups, rng)
    # Same cluster, same effect; different clusters, different effects.
    assert np.allclose(eta.reshape(3, 4), eta.reshape(3, 4)[:, :1])
    assert len(np.unique(np.round(eta, 12))) == 3


def test_perfect_separation_keeps_draws_finite():
    rng = np.random.default_rng(8)
    groups = np.repeat(np.arange(20), 25)
    x = rng.normal(size=(500, 1))
    y = (x[:, 0] > 0).astype(float)  # x separates y completely
    observed = rng.random(500) < 0.8
    draws, events, rng = _run_chain(RandomEffectsLogistic(), y, observed, x, [1], groups, 30, seed=9, n_clusters=20)
    slopes = np.array([d.beta[1] for d in draws])
    assert np.all(np.isfinite(slopes))
    # The Student-t_7(2.5) prior on the log-odds per 2 SD bounds the draws: |t_7| > 20 has
    # probability ~3e-4 per draw, i.e. a slope of 2.5 * 20 / (2 sd(x)) ~ 25 on x's scale.
    assert np.all(np.abs(slopes) < 60), slopes.max()
    assert slopes.min() > 0
    assert any("separation" in e for e in events)
    imputed = draws[-1].sample(x[~observed], groups[~observed], rng)
    assert set(np.unique(imputed)) <= {0.0, 1.0}
    assert np.mean(imputed == y[~observed]) > 0.9


def test_logistic_same_seed_same_draws_and_imputations():
    y, observed, X, groups = _simulate_logistic(6, n_clusters=20, size=20)
    out = []
    for _ in range(2):
        draws, _, rng = _run_chain(RandomEffectsLogistic(), y, observed, X, [2, 1], groups, 3, seed=13, n_clusters=20)
        out.append((draws[-1].beta, draws[-1].psi, draws[-1].sample(X, groups, rng)))
    for a, b in zip(out[0], out[1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_logistic_state_is_carried_and_reset_when_columns_change():
    y, observed, X, groups = _simulate_logistic(7, n_clusters=20, size=20)
    model = RandomEffectsLogistic(n_gibbs=1)
    rng = np.random.default_rng(0)
    draw, state = model.draw(y, observed, X, np.array([1, 1]), groups, rng, None, _context(20))
    np.testing.assert_allclose(state.beta, draw.beta)
    # Fewer columns: the old state no longer applies and must not crash the draw.
    draw2, state2 = model.draw(y, observed, X[:, :1], np.array([1]), groups, rng, state, _context(20))
    assert state2.beta.shape == (2,)
    restored = pickle.loads(pickle.dumps(draw2))
    assert restored.sample(X[:5, :1], groups[:5], rng).shape == (5,)


def test_logistic_rejects_non_binary_codes_naming_the_target():
    y, observed, X, groups = _simulate_logistic(8, n_clusters=10, size=10)
    y[0] = 2.0
    observed[0] = True
    with pytest.raises(ValueError, match="'smoker'.*0..1"):
        RandomEffectsLogistic().draw(
            y, observed, X, np.array([1, 1]), groups, np.random.default_rng(0), None, _context(10)
        )


def test_logistic_needs_groups_and_observed_values():
    y, observed, X, groups = _simulate_logistic(9, n_clusters=10, size=10)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="cluster identifier"):
        RandomEffectsLogistic().draw(y, observed, X, np.array([1, 1]), None, rng, None, _context(10))
    with pytest.raises(ValueError, match="no observed values"):
        RandomEffectsLogistic().draw(y, np.zeros_like(observed), X, np.array([1, 1]), groups, rng, None, _context(10))


# --------------------------------------------------------------------------- categorical
def test_unordered_categorical_recovers_cluster_proportions_and_variances():
    rng = np.random.default_rng(21)
    n_clusters, size = 80, 40
    groups = np.repeat(np.arange(n_clusters), size)
    x = rng.normal(size=(len(groups), 1))
    psi_truth = np.array([[1.0, 0.5], [0.5, 1.0]])
    u = rng.multivariate_normal([0, 0], psi_truth, size=n_clusters)
    eta = np.column_stack(
        [np.zeros(len(groups)), 0.2 + 0.7 * x[:, 0] + u[groups, 0], -0.3 - 0.5 * x[:, 0] + u[groups, 1]]
    )
    prob, y, observed = _sample_categories(eta, rng)
    draws, _, chain_rng = _run_chain(
        RandomEffectsCategorical(n_gibbs=1),
        y,
        observed,
        x,
        [1],
        groups,
        250,
        seed=22,
        n_clusters=n_clusters,
        kind="categorical",
        n_categories=3,
    )
    kept = draws[50:]
    psi = np.array([d.psi for d in kept])
    # Variances and covariance within 4 posterior sd of the truth (calibration argument).
    assert np.all(np.abs(psi.mean(axis=0) - psi_truth) < 4 * psi.std(axis=0)), psi.mean(axis=0)
    beta = np.array([d.beta for d in kept])
    truth = np.array([[0.2, 0.7], [-0.3, -0.5]])
    assert np.all(np.abs(beta.mean(axis=0) - truth) < 4 * beta.std(axis=0))
    # Per-cluster category proportions: the model's (posterior mean over draws) must be far
    # closer to the true ones than pooled proportions that ignore the clusters, and at least
    # about as close as the raw observed proportions of each cluster (~32 rows: binomial
    # error ~0.06). Over 10 seeds the ratios were 0.42-0.53 (pooled) and 0.91-1.01 (raw).
    true_props = np.stack([np.bincount(groups, weights=prob[:, k]) for k in range(3)], axis=1) / size
    model_props = np.mean(
        [
            np.stack([np.bincount(groups, weights=p[:, k]) for k in range(3)], axis=1) / size
            for p in (d.probabilities(x, groups, chain_rng) for d in kept[::10])
        ],
        axis=0,
    )
    pooled = np.bincount(y[observed].astype(int), minlength=3) / observed.sum()
    model_error = np.abs(model_props - true_props).mean()
    pooled_error = np.abs(pooled - true_props).mean()
    raw = np.stack([np.bincount(groups[observed], weights=y[observed] == k) for k in range(3)], axis=1)
    raw_error = np.abs(raw / np.bincount(groups[observed])[:, None] - true_props).mean()
    assert model_error < 0.7 * pooled_error, (model_error, pooled_error)
    assert model_error < 1.1 * raw_error, (model_error, raw_error)
    imputed = kept[-1].sample(x, groups, chain_rng)
    assert set(np.unique(imputed)) <= {0.0, 1.0, 2.0}


def test_ordered_categorical_recovers_slope_cutpoints_and_variance():
    rng = np.random.default_rng(31)
    n_clusters, size = 80, 40
    groups = np.repeat(np.arange(n_clusters), size)
    x = rng.normal(size=(len(groups), 1))
    u = np.sqrt(0.5) * rng.normal(size=n_clusters)
    latent = 0.3 + 0.8 * x[:, 0] + u[groups] + rng.normal(size=len(groups))
    cuts = np.array([0.0, 1.0, 1.8])
    kept, chain_rng = _ordered_chain(latent, cuts, x, 1, groups, rng, seed=32)
    cut = np.array([d.cutpoints for d in kept])
    slope = np.array([d.beta[1] for d in kept])
    tau2 = np.array([d.psi[0, 0] for d in kept])
    # Cutpoints and slope within 4 posterior sd; the intercept absorbs mean(u) so it is not
    # compared. tau^2 against the realised variance of u (what the data carry) and the truth.
    assert np.all(np.abs(cut.mean(axis=0) - cuts) < 4 * cut.std(axis=0) + 1e-12), cut.mean(axis=0)
    assert abs(slope.mean() - 0.8) < 4 * slope.std()
    assert abs(tau2.mean() - 0.5) < 4 * tau2.std(), (tau2.mean(), tau2.std())
    imputed = kept[-1].sample(x, groups, chain_rng)
    assert set(np.unique(imputed)) <= {0.0, 1.0, 2.0, 3.0}
    # Ordered imputations keep the association with x: mean category rises with x.
    assert np.corrcoef(imputed, x[:, 0])[0, 1] > 0.2


def test_unordered_categorical_recovers_random_slopes():
    # Each category's log-odds has its own random intercept and random slope of x, all four
    # correlated (Psi 4 x 4, category-major); role 2 asks for the slope.
    rng = np.random.default_rng(23)
    n_clusters, size = 80, 100  # with 40 rows per cluster the slopes are too weakly identified to check Psi
    groups = np.repeat(np.arange(n_clusters), size)
    x = rng.normal(size=(len(groups), 1))
    psi_truth = np.diag([0.6, 0.5, 0.6, 0.5])
    psi_truth[0, 2] = psi_truth[2, 0] = 0.3
    u = rng.multivariate_normal(np.zeros(4), psi_truth, size=n_clusters)
    eta = np.column_stack(
        [
            np.zeros(len(groups)),
            0.2 + (0.7 + u[groups, 1]) * x[:, 0] + u[groups, 0],
            -0.3 + (-0.5 + u[groups, 3]) * x[:, 0] + u[groups, 2],
        ]
    )
    prob, y, observed = _sample_categories(eta, rng)
    draws, _, chain_rng = _run_chain(
        RandomEffectsCategorical(n_gibbs=1),
        y,
        observed,
        x,
        [2],
        groups,
        250,
        seed=24,
        n_clusters=n_clusters,
        kind="categorical",
        n_categories=3,
    )
    kept = draws[50:]
    psi = np.array([d.psi for d in kept])
    # every entry of Psi within 4 posterior SDs of the realised covariance of the effects
    # (what the data carry; calibration argument); the slope variances clearly away from zero
    realised = np.cov(u.T)
    assert np.all(np.abs(psi.mean(axis=0) - realised) < 4 * psi.std(axis=0)), (psi.mean(axis=0).round(2), realised)
    assert np.all(psi.mean(axis=0)[[1, 3], [1, 3]] > 4 * psi.std(axis=0)[[1, 3], [1, 3]])
    beta = np.array([d.beta for d in kept])
    assert np.all(np.abs(beta.mean(axis=0) - [[0.2, 0.7], [-0.3, -0.5]]) < 4 * beta.std(axis=0))
    # cluster-specific slopes: P(category 1) rises with x much more in some clusters than in
    # others, as in the truth; the imputed categories follow (correlation of the per-cluster
    # slopes of the imputation probabilities with the true ones)
    probabilities = np.mean([d.probabilities(x, groups, chain_rng) for d in kept[::10]], axis=0)
    fitted = np.array([np.polyfit(x[groups == j, 0], probabilities[groups == j, 1], 1)[0] for j in range(n_clusters)])
    true = np.array([np.polyfit(x[groups == j, 0], prob[groups == j, 1], 1)[0] for j in range(n_clusters)])
    assert np.corrcoef(fitted, true)[0, 1] > 0.8
    assert set(np.unique(kept[-1].sample(x, groups, chain_rng))) <= {0.0, 1.0, 2.0}


def test_ordered_categorical_recovers_a_random_slope():
    rng = np.random.default_rng(33)
    n_clusters, size = 80, 40
    groups = np.repeat(np.arange(n_clusters), size)
    x = rng.normal(size=(len(groups), 1))
    u = rng.normal(size=n_clusters) * np.sqrt(0.5)
    v = rng.normal(size=n_clusters) * np.sqrt(0.4)
    latent = 0.3 + (0.8 + v[groups]) * x[:, 0] + u[groups] + rng.normal(size=len(groups))
    kept, chain_rng = _ordered_chain(latent, np.array([0.0, 1.0, 1.8]), x, 2, groups, rng, seed=34)
    psi = np.array([d.psi for d in kept])
    assert abs(psi[:, 1, 1].mean() - 0.4) < 4 * psi[:, 1, 1].std(), psi.mean(axis=0).round(2)
    assert abs(psi[:, 0, 0].mean() - 0.5) < 4 * psi[:, 0, 0].std()
    slope = np.array([d.beta[1] for d in kept])
    assert abs(slope.mean() - 0.8) < 4 * slope.std()
    # a cluster with no observed y (code 80, unseen) still gets a full draw
    assert set(np.unique(kept[-1].sample(x[:5], np.full(5, 80), chain_rng))) <= {0.0, 1.0, 2.0, 3.0}


def test_categorical_systematic_cluster_and_bad_input():
    rng = np.random.default_rng(41)
    groups = np.repeat(np.arange(15), 20)
    x = rng.normal(size=(300, 1))
    y = rng.integers(0, 3, size=300).astype(float)
    observed = groups != 14
    for ordered in (False, True):
        draws, events, chain_rng = _run_chain(
            RandomEffectsCategorical(),
            y,
            observed,
            x,
            [1],
            groups,
            2,
            seed=1,
            n_clusters=15,
            kind="categorical",
            n_categories=3,
            ordered=ordered,
            target="school_type",
        )
        assert any("'school_type' is not observed in 1 cluster(s) (14)" in e for e in events)
        imputed = draws[-1].sample(x[groups == 14], groups[groups == 14], chain_rng)
        assert set(np.unique(imputed)) <= {0.0, 1.0, 2.0}
    context = _context(15, kind="categorical", n_categories=3, target="school_type")
    bad = y.copy()
    bad[0] = 3.0
    with pytest.raises(ValueError, match="'school_type'.*0..2"):
        RandomEffectsCategorical().draw(bad, observed, x, np.array([1]), groups, rng, None, context)
    with pytest.raises(ValueError, match="role code -3"):
        RandomEffectsCategorical().draw(y, observed, x, np.array([-3]), groups, rng, None, context)
    with pytest.raises(ValueError, match="number of categories"):
        RandomEffectsCategorical().draw(
            y, observed, x, np.array([1]), groups, rng, None, _context(15, kind="categorical", n_categories=0)
        )


def test_categorical_same_seed_same_imputations():
    rng = np.random.default_rng(51)
    groups = np.repeat(np.arange(10), 20)
    x = rng.normal(size=(200, 1))
    y = rng.integers(0, 3, size=200).astype(float)
    observed = rng.random(200) < 0.7
    for ordered in (False, True):
        out = []
        for _ in range(2):
            draws, _, chain_rng = _run_chain(
                RandomEffectsCategorical(),
                y,
                observed,
                x,
                [1],
                groups,
                2,
                seed=3,
                n_clusters=10,
                kind="categorical",
                n_categories=3,
                ordered=ordered,
            )
            out.append(draws[-1].sample(x, groups, chain_rng))
        np.testing.assert_array_equal(out[0], out[1])


def test_hard_cases_run_and_log_what_they_decided():
    rng = np.random.default_rng(61)
    groups = np.r_[np.repeat(np.arange(3), 10), 3]  # the last cluster has one row
    n = len(groups)
    X = rng.normal(size=(n, 3))
    X[:, 2] = rng.normal(size=4)[groups]  # a random slope on a predictor constant within clusters
    y = (rng.random(n) < 0.5).astype(float)
    observed = np.ones(n, dtype=bool)
    draws, events, chain_rng = _run_chain(
        RandomEffectsLogistic(), y, observed, X, [2, 2, 2], groups, 3, seed=2, n_clusters=4
    )
    # 4 random effects, 4 clusters: Psi is shrunk by its prior, and the log says so.
    assert any("4 random effect(s) but only 4 cluster(s)" in e and "'smoker'" in e for e in events)
    assert np.all(np.linalg.eigvalsh(draws[-1].psi) > 0)
    assert set(np.unique(draws[-1].sample(X, groups, chain_rng))) <= {0.0, 1.0}
    # A target observed at one value only: finite draws, imputations of that value, logged.
    draws, events, chain_rng = _run_chain(
        RandomEffectsLogistic(), np.zeros(n), observed, X, [1, 1, 1], groups, 2, seed=3, n_clusters=4
    )
    assert np.all(np.isfinite(draws[-1].beta))
    assert any("single value 0" in e for e in events)
    assert draws[-1].sample(X, groups, chain_rng).mean() < 0.2


def test_categorical_target_with_random_slopes_through_the_imputer():
    # the tutorial's IMPACT workflow codes every predictor 2 (random slopes), also for the
    # categorical targets; codes 2 and 4 (slope + cluster mean) must run end to end
    from skmlmi import MultilevelIterativeImputer

    rng = np.random.default_rng(61)
    n_clusters, size = 30, 40
    g = np.repeat(np.arange(n_clusters), size)
    x = rng.normal(size=len(g))
    slope = 1.0 + 0.7 * rng.normal(size=n_clusters)
    latent = slope[g] * x + 0.5 * rng.normal(size=n_clusters)[g] + rng.logistic(size=len(g))
    level = np.searchsorted([-0.5, 0.7], latent)
    data = pd.DataFrame(
        {
            "g": g,
            "x": x,
            "w": rng.normal(size=len(g)),
            "level": pd.Categorical(np.array(["low", "mid", "high"])[level], categories=["low", "mid", "high"]),
        }
    )
    data.loc[rng.random(len(g)) < 0.3, "level"] = np.nan
    for ordered in (False, True):
        frame = data.assign(level=data["level"].cat.set_categories(["low", "mid", "high"], ordered=ordered))
        imp = MultilevelIterativeImputer(
            methods={"level": RandomEffectsCategorical()},
            predictor_matrix={"x": {"level": 2}, "w": {"level": 4}},
            n_imputations=2,
            max_iter=3,
            random_state=0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = imp.fit_transform_all(frame, groups="g")
        assert all(not o["level"].isna().any() for o in out)
        draw = imp.final_draws_[0][0]
        # random intercept + slopes of x and w (w's cluster mean is a fixed effect only)
        assert draw.random_columns == (0, 1)
        assert draw.psi.shape == ((3, 3) if ordered else (6, 6))
