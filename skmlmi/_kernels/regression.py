"""Bayesian linear regression draws and predictive mean matching (mice's ``.norm.draw`` and ``matchindex``)."""

from __future__ import annotations

import numpy as np
from scipy import linalg

from .linalg import ridge_cholesky

__all__ = [
    "bayesian_regression_draw",
    "pmm_match",
]


def bayesian_regression_draw(
    X: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    ridge: float = 1e-5,
    df_extra: int = 0,
) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """Posterior draw of (beta, sigma) in y = X beta + e under the flat prior.

    This is mice's ``.norm.draw`` (Rubin 1987, p. 167): beta_hat by least squares,
    sigma*^2 = RSS / chi^2_df with df = max(n - p - df_extra, 1), and
    beta* = beta_hat + sigma* L z with L L' = (X'X)^-1. ``df_extra`` removes degrees of
    freedom spent outside X (cluster fixed effects absorbed by centring).

    Returns beta_hat, beta_star, sigma_star and whether a ridge was added.
    """
    n, p = X.shape
    xtx = X.T @ X
    xty = X.T @ y
    chol, ridged = ridge_cholesky(xtx, ridge)
    if ridged:
        xtx = chol @ chol.T
    beta_hat = linalg.cho_solve((chol, True), xty)
    resid = y - X @ beta_hat
    df = max(n - p - df_extra, 1)
    sigma_star = float(np.sqrt(resid @ resid / rng.chisquare(df)))
    # (X'X)^-1 = L^-T L^-1, so beta_hat + sigma L^-T z has the right covariance.
    z = rng.standard_normal(p)
    beta_star = beta_hat + sigma_star * linalg.solve_triangular(chol, z, lower=True, trans="T")
    return beta_hat, beta_star, sigma_star, ridged


def pmm_match(
    yhat_donors: np.ndarray,
    yhat_recipients: np.ndarray,
    donors: int,
    rng: np.random.Generator,
    strata: np.ndarray | None = None,
) -> np.ndarray:
    """Index of a donor for each recipient: one of the ``donors`` closest predictions.

    With ``strata`` (e.g. the recipients' cluster codes), recipients of one stratum get
    distinct donors wherever their pools allow (see :func:`_distinct_within_strata`).

    Vectorised nearest-neighbour matching in one dimension: the donors' predictions are
    sorted once (after a random permutation so that ties are broken at random, as
    mice's ``matchindex``), each recipient's insertion point is found by binary search,
    the block of the ``donors`` closest sorted donors around it is located by bisection,
    and one of them is drawn uniformly. Cost O((n_donors + n_recipients) log n_donors).
    """
    n_donors = len(yhat_donors)
    if n_donors == 0:
        raise ValueError("predictive mean matching needs at least one observed donor")
    yhat_recipients = np.asarray(yhat_recipients, dtype=float)
    k = int(min(max(donors, 1), n_donors))
    perm = rng.permutation(n_donors)
    order = np.argsort(yhat_donors)
    sorted_hat = yhat_donors[order]
    if not np.all(sorted_hat[1:] > sorted_hat[:-1]):
        # ties: break them at random (a stable sort of randomly permuted donors); without
        # ties the sorted order is unique and both ways give the same result
        order = perm[np.argsort(yhat_donors[perm], kind="stable")]
        sorted_hat = yhat_donors[order]
    # binary search of recipients in sorted order: same positions, far fewer cache misses
    r_order = np.argsort(yhat_recipients, kind="stable")
    pos = np.empty(len(yhat_recipients), dtype=np.intp)
    pos[r_order] = np.searchsorted(sorted_hat, yhat_recipients[r_order])
    # The k closest donors form a contiguous block [lo, lo + k) of the sorted donors with
    # lo in [pos - k, pos]; shifting the block right helps while the donor it would drop
    # (lo) is farther than the one it would add (lo + k). That test is monotone in lo,
    # so a vectorised bisection finds the block in log2(k) passes (ties stay left).
    lo = np.clip(pos - k, 0, n_donors - k)
    hi = np.clip(pos, 0, n_donors - k)
    while True:
        active = lo < hi
        if not active.any():
            break
        mid = (lo + hi) // 2
        right = np.minimum(mid + k, n_donors - 1)
        move = (mid + k < n_donors) & (yhat_recipients - sorted_hat[mid] > sorted_hat[right] - yhat_recipients)
        lo = np.where(active & move, mid + 1, lo)
        hi = np.where(active & ~move, mid, hi)
    pick = rng.integers(0, k, size=len(yhat_recipients))
    if strata is not None and k > 1:
        pick = _distinct_within_strata(order, lo, pick, k, np.asarray(strata, dtype=np.int64), n_donors)
    return order[lo + pick]


def _distinct_within_strata(order, lo, pick, k, strata, n_donors):
    """Move picks so that no donor serves two recipients of one stratum, while the pool allows.

    Two recipients of a cluster whose predictions are equal (or close) share their pool of
    ``k`` closest donors; drawing from it with replacement gives both the same donor with
    probability 1/k, which correlates their imputations within the cluster: the within-cluster
    variance of the imputations shrinks by about 1/k of the residual variance and the ICC
    grows (on popmis, sigma^2 fell 3% with k = 5 and 9% with k = 1). A repeated donor steps
    to the next position of its own pool, round after round, until every donor of a stratum
    is distinct or the pools are exhausted (more recipients than donors in a pool: then some
    repeat). Each pick stays uniform over its pool (the steps are cyclic shifts).
    """
    key_scale = np.int64(n_donors)
    for _ in range(2 * k):
        key = strata * key_scale + order[lo + pick]
        _, first = np.unique(key, return_index=True)
        repeated = np.ones(len(key), dtype=bool)
        repeated[first] = False
        if not repeated.any():
            break
        pick[repeated] = (pick[repeated] + 1) % k
    return pick
