"""skmlmi._kernels.mixed: weighted mixed-model cross-products and draws against dense computations."""

import numpy as np

from skmlmi._kernels import (
    cluster_blocks,
    collapsed_mixed_draw,
    population_effects,
    sort_by_cluster,
)


def test_cluster_blocks_match_dense_cross_products_with_unequal_clusters():
    # The reduceat path on rows sorted by cluster must equal F_j' W_j Z_j computed cluster by
    # cluster (exact up to rounding), for a random intercept alone and with a random slope.
    rng = np.random.default_rng(3)
    groups = rng.integers(0, 7, size=200)
    groups[:7] = np.arange(7)  # every cluster present, sizes unequal
    design = np.column_stack([np.ones(200), rng.normal(size=(200, 3))])
    weights = rng.random(200)
    order, starts = sort_by_cluster(groups, 7)
    for random in (np.array([0]), np.array([0, 2])):
        total, blocks = cluster_blocks(design[order], random, weights[order], starts)
        np.testing.assert_allclose(total, (design * weights[:, None]).T @ design, rtol=1e-12)
        for j in range(7):
            rows = groups == j
            dense = (design[rows] * weights[rows, None]).T @ design[rows][:, random]
            np.testing.assert_allclose(blocks[j], dense, rtol=1e-12, atol=1e-12)


def test_collapsed_mixed_draw_has_the_dense_joint_posterior():
    # The joint posterior of (beta, b) in exp(r' eta - eta' W eta / 2) with priors N(0, D^-1), N(0, Psi):
    # precision Q = [X Z]' W [X Z] + blockdiag(D, Psi^-1 per cluster), mean Q^-1 [X Z]' r. Draws of the
    # collapsed sampler must have that mean and covariance: 4,000 draws, means within 4.5 MC SEs.
    rng = np.random.default_rng(4)
    J, per = 5, 6
    groups = np.repeat(np.arange(J), per)
    n = J * per
    design = np.column_stack([np.ones(n), rng.normal(size=n)])
    random = np.array([0, 1])
    weights = rng.uniform(0.5, 2.0, n)
    response = rng.normal(size=n)
    psi = np.array([[0.8, 0.2], [0.2, 0.5]])
    prior_precision = np.array([0.01, 0.04])
    order, starts = sort_by_cluster(groups, J)
    total, blocks = cluster_blocks(design, random, weights, starts)
    Z = np.zeros((n, J * 2))
    for j in range(J):
        Z[groups == j, 2 * j : 2 * j + 2] = design[groups == j][:, random]
    F = np.hstack([design, Z])
    Q = F.T @ (weights[:, None] * F)
    Q[:2, :2] += np.diag(prior_precision)
    Q[2:, 2:] += np.kron(np.eye(J), np.linalg.inv(psi))
    cov = np.linalg.inv(Q)
    mean = cov @ F.T @ response
    draws = np.array(
        [
            np.r_[beta, b.ravel()]
            for beta, b in (
                collapsed_mixed_draw(
                    total, blocks, design, random, response, starts, np.linalg.inv(psi), prior_precision, rng
                )
                for _ in range(4000)
            )
        ]
    )
    se = np.sqrt(np.diag(cov) / len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - mean) < 4.5 * se)
    # variances: SE of a sample variance of normal draws is var * sqrt(2 / n)
    assert np.all(np.abs(draws.var(axis=0) - np.diag(cov)) < 4.5 * np.diag(cov) * np.sqrt(2 / len(draws)))


def test_population_effects_keep_known_clusters_and_draw_one_effect_per_new_cluster():
    rng = np.random.default_rng(9)
    known = np.array([[1.0, 2.0], [np.nan, np.nan], [3.0, 4.0]])
    psi = np.array([[2.0, 0.5], [0.5, 1.0]])
    groups = np.array([0, 1, 1, 2, 7, 7, 9])
    effects = population_effects(groups, known, psi, rng)
    np.testing.assert_array_equal(effects[[0, 3]], known[[0, 2]])
    np.testing.assert_array_equal(effects[1], effects[2])  # one draw per systematically missing cluster
    np.testing.assert_array_equal(effects[4], effects[5])  # and per unseen cluster
    assert not np.array_equal(effects[4], effects[6])
    many = population_effects(np.arange(3, 40_003), known, psi, rng)
    # covariance of 40,000 N(0, Psi) draws: SE of each element below sqrt(2 * 2 * 2 / 40000) ~ 0.015
    np.testing.assert_allclose(np.cov(many.T), psi, atol=0.07)
