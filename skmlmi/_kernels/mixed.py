"""Draws of a weighted Gaussian linear mixed model, all clusters at once.

The Polya-Gamma augmented logit and the probit latent model are, given their latent
variables, weighted linear mixed models: fixed effects drawn with the random effects
integrated out, then every cluster's effects given them, on ``(J, q, q)`` stacks built by one
``np.add.reduceat`` over rows sorted by cluster; and random effects of clusters without data
from the population distribution.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "cluster_blocks",
    "collapsed_mixed_draw",
    "population_effects",
]


def cluster_blocks(
    design: np.ndarray, random: np.ndarray, weights: np.ndarray, starts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-products of a weighted mixed model: total F'WF and per-cluster F_j'W_j Z_j.

    Rows are sorted by cluster (cluster j occupies ``starts[j]:starts[j + 1]``); Z is the
    sub-matrix ``design[:, random]``. Returns ``(FWF, FWZ)`` with shapes (m, m) and
    (J, m, q): one matrix product and one ``np.add.reduceat`` over the (n, m q) products,
    never an n x J matrix.
    """
    weighted = design * weights[:, None]
    total = weighted.T @ design
    m, q = design.shape[1], len(random)
    if q == 1 and random[0] == 0:  # random intercept only (design[:, 0] is the intercept column)
        products = weighted
    else:
        products = (weighted[:, :, None] * design[:, None, random]).reshape(len(design), m * q)
    blocks = np.add.reduceat(products, starts, axis=0).reshape(len(starts), m, q)
    return total, blocks


def collapsed_mixed_draw(
    total: np.ndarray,
    blocks: np.ndarray,
    design: np.ndarray,
    random: np.ndarray,
    response: np.ndarray,
    starts: np.ndarray,
    psi_inverse: np.ndarray,
    prior_precision: np.ndarray,
    rng: np.random.Generator,
    prior_mean_b: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Joint draw of (beta, b_1..b_J) in a weighted Gaussian linear mixed model.

    The likelihood is exp(sum_i r_i eta_i - 1/2 sum_i w_i eta_i^2) with
    eta_i = f_i' beta + z_i' b_j, which is the Polya-Gamma augmented logit
    (w = omega, r = y - 1/2) and the unit-variance probit latent model (w = 1, r = z).
    Priors beta ~ N(0, diag(1 / prior_precision)) and b_j ~ N(m_j, Psi).
    With P_j = Psi^-1 + Z_j'W_j Z_j and g_j = Z_j' r_j + Psi^-1 m_j, integrating out b_j gives

        beta | . ~ N(A^-1 a, A^-1),  A = D + F'WF - sum_j F_j'W_j Z_j P_j^-1 Z_j'W_j F_j,
                                     a = F'r - sum_j F_j'W_j Z_j P_j^-1 g_j,

    and then b_j | beta, . ~ N(P_j^-1 (g_j - Z_j'W_j F_j beta), P_j^-1), for all clusters at
    once on (J, q, q) stacks. Drawing beta with b integrated out avoids the slow mixing
    of the intercept against the random intercepts that a two-block Gibbs sampler has.
    Rows are sorted by cluster, cluster j starting at ``starts[j]`` (:func:`sort_by_cluster`).
    """
    n_clusters, m, q = blocks.shape
    zr = np.add.reduceat(response[:, None] * design[:, random], starts, axis=0)  # rows sorted by cluster
    if prior_mean_b is not None:
        zr = zr + prior_mean_b @ psi_inverse.T
    precision_b = psi_inverse[None] + blocks[:, random, :]
    rhs = np.concatenate([np.swapaxes(blocks, 1, 2), zr[:, :, None]], axis=2)  # (J, q, m + 1)
    solved = np.linalg.solve(precision_b, rhs)
    a_matrix = np.diag(prior_precision) + total - np.einsum("jaq,jqb->ab", blocks, solved[:, :, :m])
    a_vector = design.T @ response - np.einsum("jaq,jq->a", blocks, solved[:, :, m])
    a_matrix = 0.5 * (a_matrix + a_matrix.T)
    chol = np.linalg.cholesky(a_matrix)
    mean = np.linalg.solve(chol.T, np.linalg.solve(chol, a_vector))
    beta = mean + np.linalg.solve(chol.T, rng.standard_normal(m))
    b_mean = solved[:, :, m] - np.einsum("jqa,a->jq", solved[:, :, :m], beta)
    chol_b = np.linalg.cholesky(precision_b)
    noise = np.linalg.solve(np.swapaxes(chol_b, 1, 2), rng.standard_normal((n_clusters, q, 1)))[:, :, 0]
    return beta, b_mean + noise


def population_effects(groups: np.ndarray, known: np.ndarray, psi: np.ndarray, rng: np.random.Generator):
    """Random effects of rows' clusters, drawing new clusters from N(0, Psi).

    ``known`` (J, q) holds the drawn effects of clusters with observed data and NaN rows
    for the others. Clusters whose code is >= J (unseen at fit) or whose row is NaN
    (systematically missing) get one N(0, Psi) draw each, shared by all their rows.
    """
    n_known, q = known.shape
    in_range = groups < n_known
    effects = np.full((len(groups), q), np.nan)
    effects[in_range] = known[groups[in_range]]
    new = np.isnan(effects[:, 0])
    if new.any():
        codes, inverse = np.unique(groups[new], return_inverse=True)
        # Psi is on the data's scale (a slope's variance is in 1/x^2 units): factor its correlation
        # form, whose jitter of 1e-12 is then relative to each effect's own variance
        sd = np.sqrt(np.diag(psi))
        sd = np.where(sd > 0, sd, 1.0)
        chol = sd[:, None] * np.linalg.cholesky(psi / np.outer(sd, sd) + 1e-12 * np.eye(q))
        fresh = rng.standard_normal((len(codes), q)) @ chol.T
        effects[new] = fresh[inverse]
    return effects
