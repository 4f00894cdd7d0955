"""Cluster-level (level-2) conditional models and the detection of cluster-level columns."""

import pickle

import numpy as np
import pandas as pd
import pytest

from skmlmi.conditional.base import DrawContext
from skmlmi.conditional.cluster_level import (
    ClusterLevelLogistic,
    ClusterLevelNormal,
    ClusterLevelPMM,
    ClusterMean,
    is_cluster_constant,
)

MODELS = [ClusterLevelNormal, ClusterLevelPMM, ClusterMean]


def _level2_data(rng, J=60, sizes=(3, 12), missing=0.3, noise=0.5):
    """A level-2 target y_j = 1 + 2 * mean_j(x) + 0.5 * w_j + noise, missing for whole clusters."""
    n_j = rng.integers(sizes[0], sizes[1] + 1, size=J)
    groups = np.repeat(np.arange(J), n_j)
    x = rng.normal(size=len(groups)) + rng.normal(size=J)[groups]
    w = rng.normal(size=J)[groups]
    X = np.column_stack([x, w])
    xbar = np.bincount(groups, weights=x) / n_j
    y_j = 1 + 2 * xbar + 0.5 * w[np.cumsum(n_j) - 1] + noise * rng.normal(size=J)
    observed = np.repeat(rng.random(J) >= missing, n_j)
    return X, y_j[groups], observed, groups


def _context(J, kind="continuous", K=0):
    return DrawContext(
        target="school_size", kind=kind, n_categories=K, n_clusters=J, cluster_labels=[f"school{j}" for j in range(J)]
    )


# --------------------------------------------------------------------------- detection
def test_is_cluster_constant_known_answers():
    groups = np.array(["a", "a", "b", "b", "b", "c"])
    assert is_cluster_constant(np.array([1.0, 1.0, 2.0, 2.0, np.nan, 7.0]), groups) is True
    assert is_cluster_constant(np.array([1.0, 1.1, 2.0, 2.0, 2.0, 7.0]), groups) is False
    X = np.array([[1, 5], [1, 6], [2, 5], [2, 5], [2, 5], [3, 5]], dtype=float)
    np.testing.assert_array_equal(is_cluster_constant(X, groups), [True, False])


def test_is_cluster_constant_reads_dataframes_of_any_dtype():
    df = pd.DataFrame(
        {
            "type": pd.Categorical(["x", "x", "y", "y"]),
            "label": ["p", "q", "r", "r"],
            "flag": [True, True, False, None],
            "size": [10, 10, 20, 20],
        }
    )
    result = is_cluster_constant(df, pd.Series([1, 1, 2, 2]))
    assert result.to_dict() == {"type": True, "label": False, "flag": True, "size": True}


def test_is_cluster_constant_needs_evidence_from_a_cluster_with_two_values():
    # one row per cluster, or a variable observed at most once per cluster: no evidence
    assert is_cluster_constant(np.arange(4.0), np.arange(4)) is False
    assert is_cluster_constant(np.array([1.0, np.nan, 2.0, np.nan]), np.array([0, 0, 1, 1])) is False
    assert is_cluster_constant(np.full(4, np.nan), np.array([0, 0, 1, 1])) is False


def test_is_cluster_constant_rejects_missing_cluster_labels_and_bad_lengths():
    with pytest.raises(ValueError, match="missing cluster labels"):
        is_cluster_constant(np.ones(3), np.array([1.0, np.nan, 2.0]))
    with pytest.raises(ValueError, match="3 rows but groups has 2"):
        is_cluster_constant(np.ones(3), np.array([1, 2]))


# --------------------------------------------------------------------------- imputation
@pytest.mark.parametrize("model_class", MODELS)
def test_imputations_are_constant_within_each_cluster(model_class):
    rng = np.random.default_rng(0)
    X, y, observed, groups = _level2_data(rng)
    J = groups.max() + 1
    draw, _ = model_class().draw(y, observed, X, np.ones(2, int), groups, rng, context=_context(J))
    imputed = draw.sample(X[~observed], groups[~observed], rng)
    assert np.all(np.isfinite(imputed))
    assert is_cluster_constant(imputed, groups[~observed])
    # and clusters differ from each other
    assert len(np.unique(imputed)) > 1


def test_cluster_level_normal_parameter_draw_has_posterior_spread():
    # One draw per replication: coef* - coef = (coef* - coef_hat) + (coef_hat - coef), each of variance
    # sigma^2 V at the cluster level (V = (D'D)^-1, D the J_obs x 3 cluster design; t factor
    # df/(df-2) ~ 1.03 for df ~ 67), so z = (coef* - coef) / sqrt(2 sigma^2 V) has mean square ~1.02.
    # R = 400 replications x 3 coefficients: SD of the mean of z^2 <= sqrt(2/400) = 0.07; bounds ~3 SD.
    # A draw without parameter uncertainty gives ~0.5. Level-1 x enters through its cluster mean.
    rng = np.random.default_rng(1)
    X, _, observed, groups = _level2_data(rng, J=100, noise=0.5)
    n_j = np.bincount(groups)
    xbar = np.column_stack([np.bincount(groups, weights=X[:, k]) / n_j for k in range(2)])
    fitted = np.bincount(groups, weights=observed) > 0
    D = np.column_stack([np.ones(fitted.sum()), xbar[fitted]])
    sd = 0.5 * np.sqrt(2 * np.diag(np.linalg.inv(D.T @ D)))
    truth = np.array([1.0, 2.0, 0.5])
    z = []
    for _ in range(400):
        y = (np.column_stack([np.ones(len(xbar)), xbar]) @ truth + 0.5 * rng.normal(size=len(xbar)))[groups]
        draw, _ = ClusterLevelNormal().draw(y, observed, X, np.ones(2, int), groups, rng, context=_context(100))
        z.append((draw.coef - truth) / sd)
    assert 0.8 < np.mean(np.square(z)) < 1.25


def test_cluster_level_logistic_draws_from_the_exact_posterior_not_its_normal_approximation():
    # 20 observed clusters and a strong level-2 predictor: the posterior of the slope is skewed away
    # from zero, so its mean lies above the mode (where the normal approximation is centred). The
    # exact posterior (the likelihood times the WDR pseudo-data, 2 rows of weight 1/2 per outcome at
    # the predictor's mean +- 0.5 SD) is computed on a grid. R = 1000 draws, independent across visits:
    # MC SE of their mean = posterior SD / sqrt(1000); the bound is 4 MC SE (plus the grid's own error,
    # under 0.1%). The test is only sensitive if the mode is far from the mean: checked first (> 8 MC SE).
    rng = np.random.default_rng(7)
    J = 28
    n_j = rng.integers(3, 9, size=J)
    groups = np.repeat(np.arange(J), n_j)
    w_j = rng.normal(size=J)
    y_j = (rng.random(J) < 1 / (1 + np.exp(-(0.3 + 2.5 * w_j)))).astype(float)
    observed_j = np.arange(J) < 20
    X, y, observed = w_j[groups][:, None], y_j[groups], observed_j[groups]
    xo, yo = w_j[observed_j], y_j[observed_j]
    mean, sd = xo.mean(), xo.std(ddof=1)
    xa = np.clip(mean + np.array([0.5, 0.5, -0.5, -0.5]) * sd, xo.min(), xo.max())
    xs, ys, ws = np.r_[xo, xa], np.r_[yo, 0.0, 1.0, 0.0, 1.0], np.r_[np.ones(20), np.full(4, 0.5)]
    a, b = np.meshgrid(np.linspace(-6, 8, 561), np.linspace(-4, 20, 961), indexing="ij")
    eta = a[..., None] + b[..., None] * xs
    logpost = ((ys * eta - np.logaddexp(0.0, eta)) * ws).sum(axis=-1)
    post = np.exp(logpost - logpost.max())
    post /= post.sum()
    assert post[:, -5:].sum() < 1e-6 and post[:, :5].sum() < 1e-6  # the grid holds the posterior
    exact_mean = (post * b).sum()
    exact_sd = np.sqrt((post * b * b).sum() - exact_mean**2)
    mode = b.ravel()[np.argmax(logpost)]
    R = 1000
    mc_se = exact_sd / np.sqrt(R)
    assert exact_mean - mode > 8 * mc_se
    model, context, state = ClusterLevelLogistic(), _context(J, "binary", 2), None
    slopes = []
    for _ in range(R):
        draw, state = model.draw(y, observed, X, np.ones(1, int), groups, rng, context=context, state=state)
        slopes.append(draw.inner.beta[0, 0])
    assert abs(np.mean(slopes) - exact_mean) < 4 * mc_se
    # the relative MC SE of a sample SD is sqrt((kurtosis - 1) / (4 R))
    kurtosis = (post * (b - exact_mean) ** 4).sum() / exact_sd**4
    assert abs(np.std(slopes) / exact_sd - 1) < 4 * np.sqrt((kurtosis - 1) / (4 * R))


def test_cluster_level_pmm_imputes_only_observed_cluster_values():
    rng = np.random.default_rng(2)
    X, y, observed, groups = _level2_data(rng)
    y = np.round(y)
    draw, _ = ClusterLevelPMM().draw(y, observed, X, np.ones(2, int), groups, rng, context=_context(60))
    imputed = draw.sample(X[~observed], groups[~observed], rng)
    assert set(imputed) <= set(y[observed])


@pytest.mark.parametrize("model_class", [ClusterLevelNormal, ClusterLevelPMM])
def test_predictions_follow_the_cluster_means_of_level1_predictors(model_class):
    # y_j = 1 + 2 xbar_j + 0.5 w_j with tiny noise: the imputed value of a cluster must follow its
    # own predictor means (unseen clusters included), not the row values or the grand mean.
    rng = np.random.default_rng(3)
    X, y, observed, groups = _level2_data(rng, J=200, noise=0.01)
    draw, _ = model_class().draw(y, observed, X, np.ones(2, int), groups, rng, context=_context(200))
    new_groups = groups[~observed] + 1000  # the same rows presented as clusters unseen at fit
    for g in (groups[~observed], new_groups):
        imputed = draw.sample(X[~observed], g, rng)
        # y has SD ~2.3 across clusters; the normal draw errs by ~0.01 + coefficient noise, PMM by the
        # spacing of the 5 nearest of ~140 donor clusters (largest in the tails).
        assert np.corrcoef(imputed, y[~observed])[0, 1] > 0.98
        if model_class is ClusterLevelNormal:
            assert np.max(np.abs(imputed - y[~observed])) < 0.1


def test_partly_missing_cluster_level_variable_is_an_error_naming_clusters():
    rng = np.random.default_rng(4)
    X, y, observed, groups = _level2_data(rng, J=10, sizes=(4, 4), missing=0.0)
    observed[[0, 9]] = False  # first row of school0 and a row of school2
    with pytest.raises(ValueError, match=r"'school_size'.*'school0', 'school2'.*ClusterMean"):
        ClusterLevelNormal().draw(y, observed, X, np.ones(2, int), groups, rng, context=_context(10))


def test_cluster_level_models_require_groups():
    rng = np.random.default_rng(5)
    with pytest.raises(ValueError, match="cluster identifier"):
        ClusterLevelPMM().draw(np.ones(4), np.ones(4, bool), np.ones((4, 1)), np.ones(1, int), None, rng)


def test_predictor_with_constant_cluster_means_is_dropped_and_logged():
    rng = np.random.default_rng(6)
    X, y, observed, groups = _level2_data(rng)
    n_j = np.bincount(groups)
    centred = X[:, 0] - (np.bincount(groups, weights=X[:, 0]) / n_j)[groups]  # cluster means all 0
    X3 = np.column_stack([X, centred])
    context = _context(60)
    draw, _ = ClusterLevelNormal().draw(y, observed, X3, np.ones(3, int), groups, rng, context=context)
    assert any("x2" in e and "cluster means" in e for e in context.events)
    assert draw.sample(X3[~observed], groups[~observed], rng).shape == ((~observed).sum(),)


# --------------------------------------------------------------------------- ClusterMean
def test_cluster_mean_fills_from_observed_values_of_the_cluster():
    rng = np.random.default_rng(7)
    groups = np.array([0, 0, 0, 1, 1, 1, 1])
    y = np.array([2.0, 5.0, 0.0, 1.0, 2.0, 2.0, 0.0])
    observed = np.array([True, True, False, True, True, True, False])
    X = np.zeros((7, 0))
    draw, _ = ClusterMean().draw(y, observed, X, np.ones(0, int), groups, rng, context=_context(2))
    np.testing.assert_allclose(draw.sample(X[~observed], groups[~observed], rng), [3.5, 5 / 3])
    draw, _ = ClusterMean().draw(y, observed, X, np.ones(0, int), groups, rng, context=_context(2, "integer"))
    np.testing.assert_allclose(draw.sample(X[~observed], groups[~observed], rng), [4.0, 2.0])  # rint(3.5) = 4
    # categorical: the most frequent code (R's truncated median would give code 1 for cluster 1)
    codes = np.array([0.0, 2.0, 0.0, 1.0, 2.0, 2.0, 0.0])
    context = _context(2, "categorical", 3)
    draw, _ = ClusterMean().draw(codes, observed, X, np.ones(0, int), groups, rng, context=context)
    filled = draw.sample(X[~observed], groups[~observed], rng)
    assert filled[1] == 2.0 and filled[0] in (0.0, 2.0)


def test_cluster_mean_breaks_ties_at_random():
    groups = np.array([0, 0, 0])
    codes = np.array([0.0, 1.0, 0.0])
    observed = np.array([True, True, False])
    seen = set()
    for seed in range(20):  # each fill is 0 or 1 with probability 1/2: both appear with prob 1 - 2^-19
        rng = np.random.default_rng(seed)
        draw, _ = ClusterMean().draw(
            codes, observed, np.zeros((3, 0)), np.ones(0, int), groups, rng, context=_context(1, "binary", 2)
        )
        seen.add(float(draw.sample(np.zeros((1, 0)), np.array([0]), rng)[0]))
    assert seen == {0.0, 1.0}


@pytest.mark.parametrize("kind", ["continuous", "categorical"])
def test_cluster_mean_imputes_clusters_without_observed_values_and_logs_them(kind):
    rng = np.random.default_rng(8)
    X, y, observed, groups = _level2_data(rng, J=40, missing=0.25)
    K = 0
    if kind == "categorical":
        y, K = np.digitize(y, np.quantile(y, [0.33, 0.66])).astype(float), 3
    observed[groups == 0] = True
    observed[np.flatnonzero(groups == 1)[0]] = False  # cluster 1 partly observed: allowed here
    context = _context(40, kind, K)
    draw, _ = ClusterMean().draw(y, observed, X, np.ones(2, int), groups, rng, context=context)
    empty = np.unique(groups[~observed & (np.bincount(groups, weights=observed)[groups] == 0)])
    assert empty.size and any("no observed value" in e and f"'school{empty[0]}'" in e for e in context.events)
    imputed = draw.sample(X[~observed], groups[~observed], rng)
    assert np.all(np.isfinite(imputed)) and is_cluster_constant(imputed, groups[~observed])
    assert set(imputed) <= set(y[observed])  # PMM donors / categories seen at fit
    unseen = draw.sample(X[:5], np.full(5, 77), rng)  # a cluster unseen at fit
    assert np.all(np.isfinite(unseen)) and len(set(unseen)) == 1


def test_cluster_mean_without_any_observed_value_is_an_error():
    rng = np.random.default_rng(9)
    groups = np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match="no observed value"):
        ClusterMean().draw(
            np.zeros(4), np.zeros(4, bool), np.ones((4, 1)), np.ones(1, int), groups, rng, context=_context(2)
        )


@pytest.mark.parametrize("model_class", MODELS)
def test_cluster_level_draws_are_reproducible_and_picklable(model_class):
    X, y, observed, groups = _level2_data(np.random.default_rng(10))
    results = []
    for _ in range(2):
        rng = np.random.default_rng(99)
        draw, _ = model_class().draw(y, observed, X, np.ones(2, int), groups, rng, context=_context(60))
        draw = pickle.loads(pickle.dumps(draw))
        results.append(draw.sample(X[~observed], groups[~observed], rng))
    np.testing.assert_array_equal(results[0], results[1])


def test_values_varying_within_a_cluster_are_averaged_and_logged():
    rng = np.random.default_rng(11)
    X, y, observed, groups = _level2_data(rng, J=20, sizes=(4, 4), missing=0.3)
    y = y.copy()
    first_observed = np.flatnonzero(observed)[0]
    y[first_observed] += 1.0
    context = _context(20)
    ClusterLevelNormal().draw(y, observed, X, np.ones(2, int), groups, rng, context=context)
    name = f"'school{groups[first_observed]}'"
    assert any("not constant within" in e and name in e for e in context.events)
