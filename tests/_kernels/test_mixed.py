"""skmlmi._kernels.mixed: weighted mixed-model cross-products and draws against dense computations."""

import numpy as np

from skmlmi._kernels import (
    MixedCrossProducts,
    cluster_blocks,
    collapsed_mixed_draw,
    constant_within_clusters,
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


def _crossed_problem(seed: int, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    n, counts = 400, (13, 9)
    codes = np.column_stack([rng.integers(0, J, n) for J in counts])
    codes[: counts[0], 0] = np.arange(counts[0])
    X = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    y = X @ [0.5, 1.0, -0.5] + rng.normal(size=13)[codes[:, 0]] + rng.normal(size=9)[codes[:, 1]]
    return X, y + scale * rng.normal(size=n), codes, counts


def _gibbs_run(X, y, codes, counts, cross, donors=True):
    from skmlmi._kernels.mixed import FactorState, multi_factor_gibbs

    state = FactorState([np.zeros(J) for J in counts], np.ones(len(counts)), 1.0)
    rng = np.random.default_rng(7)
    beta_hat, donor_effects = multi_factor_gibbs(
        X, y, codes, counts, cross, state, 6, (0.0, 0.0, 1.0, 0.1), rng, donor_effects=donors
    )
    return state, beta_hat, donor_effects


def test_multi_factor_gibbs_from_cross_products_equals_the_pass_over_rows():
    # Without weights the Gibbs steps use only cross-products: the other factors' effects summed per unit as
    # N_kl u_l and sigma^2's residual sum of squares expanded. The same random numbers must give the draws of
    # the pass over the rows (cross-products without the co-occurrence counts) up to rounding, donors included;
    # and an almost exact fit (residual SD 1e-7 of y's), where sigma^2's residuals come from the rows again, the
    # same draws too (there rounding differences of 1e-16 in y's units are 1e-9 of the residuals' and grow along
    # the chain).
    from skmlmi._kernels.mixed import factor_cross_products

    for scale, rtol in ((1.0, 1e-9), (1e-7, 1e-6)):
        X, y, codes, counts = _crossed_problem(11, scale)
        cross = factor_cross_products(X, y, codes, counts)
        assert set(cross["pairs"]) == {(0, 1), (1, 0)}
        rows_cross = {key: value for key, value in cross.items() if key != "pairs"}
        fast, slow = _gibbs_run(X, y, codes, counts, cross), _gibbs_run(X, y, codes, counts, rows_cross)
        np.testing.assert_allclose(fast[0].sigma2, slow[0].sigma2, rtol=rtol)
        np.testing.assert_allclose(fast[0].tau2, slow[0].tau2, rtol=rtol)
        np.testing.assert_allclose(fast[1], slow[1], rtol=rtol, atol=1e-12)
        for a, b in zip(fast[2], slow[2], strict=True):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12)


def test_factor_pair_counts_are_the_units_co_occurrences():
    from skmlmi._kernels.mixed import factor_pair_counts

    _, _, codes, counts = _crossed_problem(12)
    pairs = factor_pair_counts(codes, counts)
    dense = np.zeros(counts)
    np.add.at(dense, (codes[:, 0], codes[:, 1]), 1.0)
    np.testing.assert_array_equal(pairs[0, 1].toarray(), dense)
    np.testing.assert_array_equal(pairs[1, 0].toarray(), dense.T)


def test_random_slope_constancy_equals_the_one_rule_with_the_cross_product_shortcut():
    # MixedCrossProducts answers "constant within every cluster?" for role-2 columns from the
    # per-cluster sums of squares when a cluster clearly varies, and by the rule otherwise: the
    # answer must equal constant_within_clusters' for varying, constant (up to rounding), barely
    # varying (one cluster 1e-12 relative apart: beyond the rule's few ulps, invisible to the
    # sums of squares) and tiny-valued columns.
    rng = np.random.default_rng(5)
    J, per = 40, 6
    groups = np.repeat(np.arange(J), per)
    level2 = rng.normal(size=J)[groups] * 1e3
    rounding = level2 * (1 + rng.integers(-1, 2, size=len(groups)) * np.finfo(float).eps)
    barely = rng.normal(size=J)[groups] * 1e3
    barely[0] *= 1 + 1e-12  # rows 0 and 1: cluster 0
    tiny_level2 = rng.normal(size=J)[groups] * 1e-90
    tiny_varying = rng.normal(size=len(groups)) * 1e-90
    columns = np.column_stack([rng.normal(size=len(groups)), rounding, barely, tiny_level2, tiny_varying])
    y = rng.normal(size=len(groups))
    observed = rng.random(len(groups)) < 0.8
    observed[:2] = True  # the barely varying cluster keeps both of its values
    suff = MixedCrossProducts(y, observed, columns, np.full(5, 2), groups, J, False)
    expected = constant_within_clusters(columns[observed], groups[observed], J)
    np.testing.assert_array_equal(expected, [False, True, False, True, False])
    np.testing.assert_array_equal(suff.slope_constant, expected)
