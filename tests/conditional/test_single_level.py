"""Single-level conditional models: norm, PMM, logistic and polytomous (with fixed clusters)."""

import pickle

import numpy as np
import pytest
from scipy.special import expit

from skmlmi._kernels import softmax_reference as _softmax_reference
from skmlmi.conditional.base import DrawContext
from skmlmi.conditional.single_level import (
    BayesianLogistic,
    BayesianNormal,
    Polytomous,
    PredictiveMeanMatching,
)

MODELS = [BayesianNormal, PredictiveMeanMatching, BayesianLogistic, Polytomous]


def _context(model_class, n_clusters=0, n_categories=3):
    kind = {BayesianLogistic: "binary", Polytomous: "categorical"}.get(model_class, "continuous")
    K = {"binary": 2, "categorical": n_categories}.get(kind, 0)
    return DrawContext(target="target", kind=kind, n_categories=K, n_clusters=n_clusters)


def _data(model_class, rng, n=300, J=None, K=3):
    """Predictors, target (codes for the logit models), observed mask and cluster codes."""
    X = rng.normal(size=(n, 2))
    groups = None if J is None else rng.integers(0, J, size=n)
    shift = 0.0 if J is None else rng.normal(size=J)[groups]
    eta = X @ [1.0, -0.5] + shift
    if model_class is BayesianLogistic:
        y = (rng.random(n) < expit(eta)).astype(float)
    elif model_class is Polytomous:
        y = np.digitize(eta + rng.logistic(size=n), np.linspace(-1, 1, K - 1)).astype(float)
    else:
        y = eta + rng.normal(size=n)
    observed = rng.random(n) < 0.7
    return X, y, observed, groups


# --------------------------------------------------------------------------- parameter draws
@pytest.mark.parametrize("model_class", [BayesianNormal, PredictiveMeanMatching])
def test_linear_parameter_draw_has_posterior_spread(model_class):
    # Frequentist check of a proper draw: beta* - beta = (beta* - beta_hat) + (beta_hat - beta), two
    # independent parts of variance sigma^2 V each (V = (X'X)^-1, up to the t factor df/(df-2) = 1.01
    # for df = 197), so z = (beta* - beta) / sqrt(2 sigma^2 V) has variance ~1.005 and |z| < 1.96 with
    # probability ~0.95. Over R = 1000 replications: mean z^2 has SD sqrt(2/1000) = 0.045, the coverage
    # SD sqrt(.95 * .05 / 1000) = 0.007; bounds are ~3.5-4 SD. A draw without parameter uncertainty
    # gives mean z^2 = 0.5 and coverage 0.994; a doubled variance gives 1.5 and 0.86.
    rng = np.random.default_rng(11)
    n, R, beta = 200, 1000, np.array([0.5, -1.0])
    X = rng.normal(size=(n, 2))
    design = np.column_stack([np.ones(n), X])
    V = np.linalg.inv(design.T @ design)[1:, 1:]
    observed = np.ones(n, dtype=bool)
    z = np.empty((R, 2))
    for r in range(R):
        y = 1.0 + X @ beta + rng.normal(size=n)
        draw, _ = model_class().draw(y, observed, X, np.ones(2, int), None, rng)
        z[r] = (draw.beta - beta) / np.sqrt(2 * np.diag(V))
    assert 0.85 < np.mean(z**2) < 1.17
    assert 0.92 < np.mean(np.abs(z) < 1.96) < 0.978


def _multinomial_information(X, alpha, beta):
    """Fisher information of (alpha_k, beta_k), k = 1..K-1, at the true parameters (test oracle)."""
    design = np.column_stack([np.ones(len(X)), X])
    eta = np.column_stack([np.zeros(len(X)), alpha + X @ beta])
    P = np.exp(eta - eta.max(axis=1, keepdims=True))
    P = (P / P.sum(axis=1, keepdims=True))[:, 1:]
    m, q = P.shape[1], design.shape[1]
    info = np.zeros((m * q, m * q))
    for k in range(m):
        for l in range(m):
            v = P[:, k] * ((k == l) - P[:, l])
            info[k * q : (k + 1) * q, l * q : (l + 1) * q] = design.T @ (design * v[:, None])
    return info


@pytest.mark.parametrize("model_class, K", [(BayesianLogistic, 2), (Polytomous, 3)])
def test_logit_parameter_draw_has_posterior_spread(model_class, K):
    # As for the linear models, with the Fisher information I at the true parameters: beta* - beta has
    # asymptotic variance 2 I^-1, so z^2 has mean ~1. R = 300 replications x (K-1) slopes: the SD of
    # mean z^2 is at most sqrt(2/300) = 0.08 (less for K = 3 with two slopes); bounds ~3 SD. An
    # improper draw (probabilities from the ML fit, as R's polyreg) gives 0.5.
    rng = np.random.default_rng(5)
    n, R = 400, 300
    alpha = np.array([0.2] * (K - 1))
    beta = np.array([[0.8, -0.6][: K - 1]])
    X = rng.normal(size=(n, 1))
    sd = np.sqrt(np.diag(np.linalg.inv(_multinomial_information(X, alpha, beta))))
    slope_sd = sd.reshape(K - 1, 2)[:, 1]
    observed = np.ones(n, dtype=bool)
    z = []
    for _ in range(R):
        eta = np.column_stack([np.zeros(n), alpha + X @ beta])
        P = np.exp(eta) / np.exp(eta).sum(axis=1, keepdims=True)
        y = (rng.random(n)[:, None] > np.cumsum(P, axis=1)[:, :-1]).sum(axis=1).astype(float)
        context = DrawContext(target="y", kind="categorical", n_categories=K)
        draw, _ = model_class().draw(y, observed, X, np.ones(1, int), None, rng, context=context)
        z.append((draw.beta[0] - beta[0]) / (np.sqrt(2) * slope_sd))
    z = np.concatenate(z)
    assert 0.75 < np.mean(z**2) < 1.3


# --------------------------------------------------------------------------- pmm
@pytest.mark.parametrize("J", [None, 12])
def test_pmm_imputes_only_observed_values(J):
    rng = np.random.default_rng(3)
    X, y, observed, groups = _data(PredictiveMeanMatching, rng, J=J)
    y = np.round(y * 2) / 2  # a coarse support that a normal draw would leave
    draw, _ = PredictiveMeanMatching().draw(
        y, observed, X, np.ones(2, int), groups, rng, context=_context(PredictiveMeanMatching, J or 0)
    )
    imputed = draw.sample(X[~observed], None if groups is None else groups[~observed], rng)
    assert set(imputed) <= set(y[observed])


# --------------------------------------------------------------------------- fixed clusters
@pytest.mark.parametrize("model_class", [BayesianNormal, PredictiveMeanMatching])
def test_fixed_cluster_draws_recover_cluster_means(model_class):
    # Cluster intercepts alpha_j ~ N(0, 3^2) dominate y. The drawn alpha*_j - alpha_j has variance
    # ~2 sigma^2 / n_j (estimation + posterior spread, n_j observed rows), so the standardised squares
    # average ~1 over 30 clusters x 40 replications (SD sqrt(2/1200) = 0.04; bounds ~4 SD plus the
    # small slope uncertainty). The imputed cluster means follow the clusters: a model ignoring them
    # would regress every cluster to the grand mean (correlation ~0).
    rng = np.random.default_rng(8)
    J, n_j, R = 30, 20, 40
    groups = np.repeat(np.arange(J), n_j)
    X = rng.normal(size=(J * n_j, 1))
    scores, corrs = [], []
    for _ in range(R):
        alpha = 3 * rng.normal(size=J)
        y = alpha[groups] + 0.5 * X[:, 0] + rng.normal(size=len(groups))
        observed = rng.random(len(y)) < 0.6
        context = _context(model_class, J)
        draw, _ = model_class().draw(y, observed, X, np.ones(1, int), groups, rng, context=context)
        n_obs = np.bincount(groups[observed], minlength=J)
        if model_class is BayesianNormal:
            scores.append((draw.alpha - alpha) ** 2 / (2 / n_obs))
        imputed = draw.sample(X[~observed], groups[~observed], rng)
        missing_groups = groups[~observed]
        means = np.bincount(missing_groups, weights=imputed, minlength=J) / np.bincount(missing_groups, minlength=J)
        corrs.append(np.corrcoef(means, alpha)[0, 1])
    if scores:
        assert 0.85 < np.mean(scores) < 1.2
    assert np.min(corrs) > 0.95


@pytest.mark.parametrize("model_class", [BayesianLogistic, Polytomous])
def test_fixed_cluster_logit_recovers_cluster_intercepts_without_dummies(model_class):
    # With 60 rows per cluster the ML intercepts have SD ~0.3; true intercepts spread with SD 1.5, so
    # the correlation of drawn and true intercepts is ~0.9 (0.8 leaves room for the draw's noise).
    rng = np.random.default_rng(2)
    J, n_j = 40, 60
    groups = np.repeat(np.arange(J), n_j)
    X = rng.normal(size=(J * n_j, 1))
    alpha = 1.5 * rng.normal(size=J)
    eta = alpha[groups] + X[:, 0]
    if model_class is BayesianLogistic:
        y = (rng.random(len(eta)) < expit(eta)).astype(float)
    else:  # multinomial logit: category 1 (vs 0) logit eta, category 2 logit eta + 0.5 x - 0.5
        logits = np.column_stack([np.zeros(len(eta)), eta, eta + 0.5 * X[:, 0] - 0.5])
        P = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        y = (rng.random(len(eta))[:, None] > np.cumsum(P, axis=1)[:, :-1]).sum(axis=1).astype(float)
    observed = np.ones(len(y), dtype=bool)
    draw, _ = model_class().draw(y, observed, X, np.ones(1, int), groups, rng, context=_context(model_class, J))
    assert draw.alpha.shape[0] == J
    assert np.corrcoef(draw.alpha[:, 0], alpha)[0, 1] > 0.8
    assert abs(draw.beta_hat[0, 0] - 1.0) < 0.3  # slope SE ~0.06-0.08; 0.3 is ~4 SE plus the log-F pull


@pytest.mark.parametrize("model_class", MODELS)
def test_unseen_clusters_at_sample_raise_naming_them(model_class):
    rng = np.random.default_rng(4)
    J = 6
    X, y, observed, groups = _data(model_class, rng, n=200, J=J)
    observed[groups == 5] = False  # cluster 5: no observed value at fit
    draw, _ = model_class().draw(y, observed, X, np.ones(2, int), groups, rng, context=_context(model_class, J))
    with pytest.raises(ValueError, match=r"cluster codes \[5, 9\].*random-effects"):
        draw.sample(X[:3], np.array([0, 5, 9]), rng)
    assert draw.sample(X[:3], np.array([0, 1, 4]), rng).shape == (3,)


# --------------------------------------------------------------------------- separation
def test_logistic_separation_gives_finite_coefficients_and_both_outcomes():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = (X[:, 0] > 0).astype(float)  # perfect separation on the first predictor
    observed = np.ones(200, dtype=bool)
    context = _context(BayesianLogistic)
    draw, _ = BayesianLogistic().draw(y, observed, X, np.ones(2, int), None, rng, context=context)
    assert np.all(np.isfinite(draw.beta)) and np.all(np.abs(draw.beta) < 50)
    imputed = draw.sample(X, None, rng)
    assert set(imputed) == {0.0, 1.0}
    assert np.mean(imputed == y) > 0.8  # it still follows the predictor
    assert not any("converge" in event for event in context.events)


def test_polytomous_separation_and_unobserved_category_stay_finite():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(150, 1))
    y = np.digitize(X[:, 0], [-0.5, 0.5]).astype(float)  # categories perfectly ordered by x
    observed = np.ones(150, dtype=bool)
    context = DrawContext(target="y", kind="categorical", n_categories=4)  # category 3 never observed
    draw, _ = Polytomous().draw(y, observed, X, np.ones(1, int), None, rng, context=context)
    # Without augmentation the ML slopes diverge; with it they are large (the data are separated) but
    # finite, and the pseudo-data give the unobserved category a small share (weight 2/8 of 151.5).
    assert np.all(np.isfinite(draw.alpha)) and np.all(np.isfinite(draw.beta)) and np.all(np.abs(draw.beta) < 100)
    P = _softmax_reference(draw.alpha_hat + X @ draw.beta_hat)
    assert P.shape == (150, 4) and P[:, 3].mean() < 0.02


@pytest.mark.parametrize("model_class", [BayesianLogistic, Polytomous])
def test_fixed_cluster_with_single_observed_category_keeps_finite_intercept(model_class):
    rng = np.random.default_rng(6)
    J, n_j = 5, 30
    groups = np.repeat(np.arange(J), n_j)
    X = rng.normal(size=(J * n_j, 1))
    y = (rng.random(J * n_j) < 0.5).astype(float)
    y[groups == 0] = 0.0  # cluster 0 observed only zeros, cluster 1 only ones
    y[groups == 1] = 1.0
    observed = np.ones(len(y), dtype=bool)
    draw, _ = model_class().draw(y, observed, X, np.ones(1, int), groups, rng, context=_context(model_class, J, 2))
    assert np.all(np.isfinite(draw.alpha)) and np.all(np.abs(draw.alpha) < 20)
    assert draw.alpha_hat[0, 0] < -2 and draw.alpha_hat[1, 0] > 2


def test_logistic_rejects_codes_other_than_zero_and_one():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 1))
    y = rng.integers(0, 3, size=20).astype(float)
    with pytest.raises(ValueError, match=r"'target'.*codes 0\.\.1"):
        BayesianLogistic().draw(y, np.ones(20, bool), X, np.ones(1, int), None, rng, context=_context(BayesianLogistic))


def test_logit_hyperparameters_are_validated():
    with pytest.raises(ValueError, match="max_iter"):
        BayesianLogistic(max_iter=0)._validate_params()
    with pytest.raises(ValueError, match="ridge"):
        Polytomous(ridge=-1.0)._validate_params()


# --------------------------------------------------------------------------- reproducibility
@pytest.mark.parametrize("J", [None, 8])
@pytest.mark.parametrize("model_class", MODELS)
def test_draws_are_reproducible_and_picklable(model_class, J):
    X, y, observed, groups = _data(model_class, np.random.default_rng(9), J=J)
    results = []
    for _ in range(2):
        rng = np.random.default_rng(123)
        context = _context(model_class, J or 0)
        draw, _ = model_class().draw(y, observed, X, np.ones(2, int), groups, rng, context=context)
        draw = pickle.loads(pickle.dumps(draw))
        results.append(draw.sample(X[~observed], None if groups is None else groups[~observed], rng))
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("J", [None, 8])
@pytest.mark.parametrize("model_class", [BayesianLogistic, Polytomous])
def test_warm_start_reaches_the_same_estimate(model_class, J):
    X, y, observed, groups = _data(model_class, np.random.default_rng(10), J=J)
    context = _context(model_class, J or 0)
    model = model_class()
    cold, state = model.draw(y, observed, X, np.ones(2, int), groups, np.random.default_rng(1), context=context)
    warm, _ = model.draw(y, observed, X, np.ones(2, int), groups, np.random.default_rng(1), state, context=context)
    np.testing.assert_allclose(warm.beta_hat, cold.beta_hat, atol=1e-7)
    np.testing.assert_allclose(warm.beta, cold.beta, atol=1e-6)
