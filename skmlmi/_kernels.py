"""Vectorised numerics shared by the conditional models.

Per-cluster sums by ``np.bincount``, batched solves on ``(J, q, q)`` stacks, Bayesian
regression draws and predictive mean matching. No Python loop over rows or clusters
lives here; loops over the (few) columns of a design are allowed.
This module knows nothing about DataFrames, column names or the imputation loop.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import linalg

__all__ = [
    "cluster_sums",
    "cluster_means",
    "cluster_counts",
    "find_redundant_columns",
    "bayesian_regression_draw",
    "ridge_cholesky",
    "pmm_match",
    "power_of_two_exponents",
    "batched_cholesky",
    "cluster_cross_products",
    "batched_small_cholesky",
    "batched_lower_inverse",
    "cluster_constancy",
    "constant_within_clusters",
    "redundant_columns_from_moments",
    "wishart_precision_draw",
]


# --------------------------------------------------------------------------- clusters
def cluster_counts(groups: np.ndarray, n_groups: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Number (or weighted count) of rows per cluster code."""
    return np.bincount(groups, weights=weights, minlength=n_groups).astype(float)


def cluster_sums(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-cluster column sums of ``values`` (n,) or (n, p) -> (J,) or (J, p)."""
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        return np.bincount(groups, weights=values, minlength=n_groups)
    out = np.empty((n_groups, values.shape[1]))
    for k in range(values.shape[1]):  # loop over columns, not clusters
        out[:, k] = np.bincount(groups, weights=values[:, k], minlength=n_groups)
    return out


def cluster_means(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-cluster means (NaN for empty clusters) of ``values`` (n,) or (n, p)."""
    counts = cluster_counts(groups, n_groups)
    sums = cluster_sums(values, groups, n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / (counts if sums.ndim == 1 else counts[:, None])


# --------------------------------------------------------------------------- scaling
def power_of_two_exponents(spread: np.ndarray, magnitude: np.ndarray | None = None) -> np.ndarray:
    """Exponents e with ``spread / 2**e`` in [1, 2): the units a model computes in.

    Models divide a column by ``2**e`` (``np.ldexp(x, -e)``) before their numerics and multiply
    their results back. Multiplying by a power of two is exact in floating point (away from
    overflow and subnormals), so this changes no result for ordinary data, makes a column and
    the same column times ``2**k`` give bit-identical imputations (up to that factor), and
    keeps data of order 1e-100 or 1e100 from over- or underflowing in cross-products, variances
    and their inverses. ``spread`` is usually the column's SD; where it is 0 or not finite,
    ``magnitude`` (e.g. the column's largest absolute value) is used, and where that is 0 too
    the exponent is 0.

    Examples
    --------
    >>> power_of_two_exponents(np.array([1.0, 3.0, 1e-99, 0.0]), np.array([1.0, 1.0, 1.0, 0.0]))
    array([   0,    1, -329,    0])
    """
    spread = np.atleast_1d(np.asarray(spread, dtype=float))
    use = np.isfinite(spread) & (spread > 0)
    if magnitude is not None:
        magnitude = np.broadcast_to(np.asarray(magnitude, dtype=float), spread.shape)
        spread = np.where(use, spread, magnitude)
        use = np.isfinite(spread) & (spread > 0)
    _, exponent = np.frexp(np.where(use, spread, 1.0))
    return np.where(use, exponent - 1, 0).astype(int)


# --------------------------------------------------------------------------- designs
def find_redundant_columns(
    X: np.ndarray, eps: float = 1e-8, maxcor: float = 0.99999, scale: np.ndarray | None = None
) -> dict[int, str]:
    """Columns of ``X`` that carry no information beyond the others (and an intercept).

    A column is dropped when it is constant on the given rows (its SD at the rounding level
    of its mean, or of ``scale``: the magnitude of the data ``X`` was computed from, for
    derived quantities such as cluster means, whose rounding noise follows the raw
    values), or when it is a linear combination of the other columns: the correlation matrix
    has eigenvalues below ``eps`` times its largest (mice's ``remove.lindep``). Which columns
    go is read from one eigendecomposition: while such near-null directions remain, the column
    with the largest share of them goes (its null leverage; with one null direction, the
    largest loading on the smallest eigenvector, mice's choice), and of exactly tied columns
    (duplicates) the later one, so the first stays. Returns ``{column index: reason}``, in the
    order dropped.

    Cost O(n p min(n, p)) for the cross-products or the rows' singular value decomposition (when
    p > 2n), O(p^3) for the eigendecomposition of the correlation matrix (when p <= 2n; a
    second one, of the kept columns, confirms the result when columns go) and O(p min(d, p - d))
    for each of the d dropped columns: 30 rows and 2,000 columns take a fraction of a second.
    """
    n, p = X.shape
    if p == 0 or n == 0:
        return {k: "no rows to estimate it" for k in range(p)} if n == 0 else {}
    center = X.mean(axis=0)
    Xc = X - center
    if 2 * n >= p:
        return redundant_columns_from_moments(center, (Xc.T @ Xc) / n, eps=eps, maxcor=maxcor, scale=scale)
    # More than twice as many columns as rows: the p x p correlation matrix has rank < n, and its
    # eigenvectors of nonzero eigenvalues are the right singular vectors of the standardised rows.
    sd = np.sqrt(np.einsum("ij,ij->j", Xc, Xc) / n)
    drop = _constant_columns(center, sd, scale)
    alive = np.array([k for k in range(p) if k not in drop], dtype=int)
    if alive.size >= 2:
        drop.update(_collinear_columns(alive, Xc[:, alive] / (sd[alive] * np.sqrt(n)), None, eps, maxcor))
    return drop


# --------------------------------------------------------------------------- algebra
def ridge_cholesky(A: np.ndarray, ridge: float = 1e-5) -> tuple[np.ndarray, bool]:
    """Lower Cholesky factor of symmetric ``A``; adds ``ridge * diag(A)`` if it fails.

    Returns the factor and whether the ridge was needed. Works on a single matrix; for
    stacks see :func:`batched_cholesky`.
    """
    try:
        return np.linalg.cholesky(A), False
    except np.linalg.LinAlgError:
        d = np.diag(A).copy()
        d[d <= 0] = 1.0
        return np.linalg.cholesky(A + np.diag(ridge * d)), True


def batched_cholesky(A: np.ndarray, ridge: float = 1e-8) -> np.ndarray:
    """Lower Cholesky factors of a ``(J, q, q)`` stack, with a relative ridge on failure."""
    try:
        return np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        q = A.shape[-1]
        d = np.abs(np.diagonal(A, axis1=-2, axis2=-1)).max(axis=-1)
        d = np.where(d > 0, d, 1.0)
        return np.linalg.cholesky(A + (ridge * d)[:, None, None] * np.eye(q))


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


# --------------------------------------------------------------------------- matching
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


# --------------------------------------------------------------------------- mixed models
def cluster_cross_products(
    W: np.ndarray,
    groups: np.ndarray,
    n_groups: int,
    left: np.ndarray | None = None,
) -> np.ndarray:
    """Per-cluster cross-products ``D_j' D_j`` of the design ``D = [1, W]``.

    Parameters
    ----------
    W : ndarray of shape (n, k)
        Columns without the intercept (the intercept is column 0 of ``D``).
    groups : ndarray of shape (n,) of int
        Cluster code of each row, in ``0..n_groups-1``.
    n_groups : int
    left : array of int, optional
        Rows of the product to compute (indices into the columns of ``D``); all
        ``k + 1`` by default. A mixed model only needs the random-effects rows
        ``Z_j' D_j`` unless its residual variance is cluster-specific.

    Returns
    -------
    ndarray of shape (n_groups, len(left), k + 1)
        ``out[j, a, b] = sum over rows i of cluster j of D[i, left[a]] * D[i, b]``.

    Notes
    -----
    One ``np.bincount`` per distinct product (symmetric pairs are computed once,
    products with the intercept need no multiplication), so the cost is
    O(n * len(left) * (k + 1)) with no loop over rows or clusters and no n x J matrix.

    Examples
    --------
    >>> import numpy as np
    >>> W = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    >>> cluster_cross_products(W, np.array([0, 0, 1]), 2)[1]
    array([[ 1.,  5.,  6.],
           [ 5., 25., 30.],
           [ 6., 30., 36.]])
    """
    W = np.asarray(W, dtype=float)
    n, k = W.shape
    left = np.arange(k + 1) if left is None else np.asarray(left, dtype=int)
    out = np.empty((n_groups, len(left), k + 1))
    position = {int(a): r for r, a in enumerate(left)}
    done: dict[tuple[int, int], np.ndarray] = {}
    for r, a in enumerate(left.tolist()):
        for b in range(k + 1):
            key = (min(a, b), max(a, b))
            if key in done:
                out[:, r, b] = done[key]
                continue
            if a == 0 and b == 0:
                value = np.bincount(groups, minlength=n_groups).astype(float)
            elif a == 0 or b == 0:
                value = np.bincount(groups, weights=W[:, max(a, b) - 1], minlength=n_groups)
            else:
                value = np.bincount(groups, weights=W[:, a - 1] * W[:, b - 1], minlength=n_groups)
            out[:, r, b] = value
            # keep only products that a later row of ``left`` will ask for again
            if b in position and position[b] > r:
                done[key] = value
    return out


def batched_small_cholesky(A: np.ndarray, ridge: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """Lower Cholesky factors of a ``(J, q, q)`` stack of small symmetric matrices.

    Column-by-column Cholesky with every operation vectorised over the J matrices
    (loops over the q^2 / 2 entries only), several times faster than LAPACK calls per
    matrix for the q <= 4 of random-effects designs. A matrix whose pivot is not
    positive gets ``ridge * max|diag|`` added to its diagonal and is factorised again
    (only those matrices). Returns the factors and the mask of ridged matrices.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[[4.0, 2.0], [2.0, 3.0]]])
    >>> L, ridged = batched_small_cholesky(A)
    >>> bool(np.allclose(L[0] @ L[0].T, A[0])), bool(ridged[0])
    (True, False)
    """
    J, q, _ = A.shape
    if J < 500:
        # few matrices: one LAPACK call per matrix inside numpy's loop is cheaper than the
        # vectorised substitution's fixed cost; any failure takes the ridged path below
        try:
            return np.linalg.cholesky(A), np.zeros(J, dtype=bool)
        except np.linalg.LinAlgError:
            pass

    def factor(A):
        L = np.zeros_like(A)
        for i in range(q):
            for k in range(i + 1):
                s = A[:, i, k] - np.einsum("jm,jm->j", L[:, i, :k], L[:, k, :k])
                if i == k:
                    with np.errstate(invalid="ignore"):
                        L[:, i, i] = np.sqrt(s)
                else:
                    L[:, i, k] = s / L[:, k, k]
        return L

    L = factor(A)
    bad = ~np.all(np.diagonal(L, axis1=1, axis2=2) > 0, axis=1)
    if bad.any():
        Ab = A[bad]
        d = np.abs(np.diagonal(Ab, axis1=1, axis2=2)).max(axis=1)
        d = np.where(d > 0, d, 1.0)
        for scale in (ridge, 1e-6, 1e-4, 1e-2, 1.0):
            Lb = factor(Ab + (scale * d)[:, None, None] * np.eye(q))
            if np.all(np.diagonal(Lb, axis1=1, axis2=2) > 0):
                break
        L[bad] = Lb
    return L, bad


def batched_lower_inverse(L: np.ndarray) -> np.ndarray:
    """Inverses of a ``(J, q, q)`` stack of lower-triangular factors.

    Forward substitution vectorised over the stack (loops over the q^2 / 2 entries),
    for the small q of random-effects designs.

    Examples
    --------
    >>> import numpy as np
    >>> L = np.array([[[2.0, 0.0], [1.0, 4.0]]])
    >>> batched_lower_inverse(L)[0] @ L[0]
    array([[1., 0.],
           [0., 1.]])
    """
    J, q, _ = L.shape
    inv = np.zeros_like(L)
    diag = 1.0 / np.diagonal(L, axis1=1, axis2=2)
    for k in range(q):
        inv[:, k, k] = diag[:, k]
        for i in range(k + 1, q):
            inv[:, i, k] = -np.einsum("jm,jm->j", L[:, i, k:i], inv[:, k:i, k]) * diag[:, i]
    return inv


# A column whose SD is below this fraction of its mean is constant up to rounding: values that
# differ only in their last bits spread by a few eps |mean|, while centring at a rounded mean
# shifts every value alike and adds no spread. 16 eps keeps a margin; far larger (1e-12 before)
# took 1e12 + x with SD 0.2 (2,000 units of rounding at 1e12, e.g. a cluster mean) for a constant.
CONSTANT_RTOL = 16 * np.finfo(float).eps
# The same for quantities derived from raw values of magnitude ``scale`` (cluster means:
# sums of up to ~1e4 values, each rounding relative to the raw magnitude).
DERIVED_RTOL = 1e-10
#: "Constant within clusters" tolerates this many units of rounding (eps) of the column's largest
#: magnitude between a value and its cluster's reference value. A cluster-level column is almost
#: always one float repeated (a merge of a cluster-level table, or a cluster mean broadcast to the
#: rows), whose deviations are exactly 0; a few units of rounding admit values that went through
#: one or two different roundings of the same number, and nothing that varies.
CONSTANT_ULPS = 4


def cluster_constancy(values: np.ndarray, groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster reference values and which clusters vary: THE rule of "constant within clusters".

    A column is constant within cluster j when every non-missing value of the cluster equals one
    of them (the reference value) up to ``CONSTANT_ULPS`` units of rounding of the column's
    largest magnitude::

        |x_ij - ref_j| <= CONSTANT_ULPS * eps * max_ij |x_ij|.

    The tolerance is relative to the column's own magnitude with no absolute floor, so a variable
    in units of 1e-12 (or 1e-200) or shifted by 1e12 is judged as in its natural units. Values are
    compared with one of their cluster's values, not with the cluster mean: no sums, so no
    rounding that grows with the cluster size (a mean over 10^6 rows carries ~1e-10 relative
    error; a repeated float deviates by exactly 0 whatever the cluster size). Every caller that
    asks whether something is constant within clusters (the engine's choice of cluster-level
    models, :func:`~skmlmi.conditional.cluster_level.is_cluster_constant`, ``recommend_methods``,
    ``suggest_predictors``, the cluster-level, two-stage, Heckman, random-slope and fixed-cluster
    models) uses this function.

    Parameters
    ----------
    values : ndarray of shape (n,) or (n, p)
        NaN marks a missing value (ignored). Infinite values compare equal only to themselves.
    groups : ndarray of shape (n,) of int
        Cluster codes ``0..n_groups-1``.
    n_groups : int

    Returns
    -------
    reference : ndarray of shape (n_groups,) or (n_groups, p)
        One observed value of each cluster (NaN for a cluster without one); for a constant
        cluster it is the cluster's value itself, exactly (no mean of equal floats).
    varying : ndarray of bool, same shape
        Clusters holding two values that differ beyond the tolerance.

    Notes
    -----
    O(n) per column: one scatter of the values into their clusters' slots (any value of the
    cluster may land there: every value is compared with it), one comparison, one
    ``np.bincount``. No loop over rows or clusters.

    Examples
    --------
    >>> import numpy as np
    >>> groups = np.array([0, 0, 1, 1])
    >>> reference, varying = cluster_constancy(np.array([1e-13, 1e-13, 2e-13, 3e-13]), groups, 2)
    >>> varying
    array([False,  True])
    """
    values = np.asarray(values, dtype=float)
    groups = np.asarray(groups, dtype=np.intp)
    single = values.ndim == 1
    V = values[:, None] if single else values
    p = V.shape[1]
    reference = np.full((n_groups, p), np.nan)
    varying = np.zeros((n_groups, p), dtype=bool)
    for k in range(p):  # loop over columns, not clusters
        column = V[:, k]
        present = ~np.isnan(column)
        if present.all():
            v, g = column, groups
        else:
            v, g = column[present], groups[present]
        if v.size == 0:
            continue
        reference[g, k] = v  # one of the cluster's own values lands in its slot
        finite = np.abs(v[np.isfinite(v)])
        tol = CONSTANT_ULPS * np.finfo(float).eps * (finite.max() if finite.size else 0.0)
        with np.errstate(invalid="ignore"):  # inf - inf: equal infinities, not a deviation
            differs = np.abs(v - reference[g, k]) > tol
        varying[:, k] = np.bincount(g[differs], minlength=n_groups) > 0
    if single:
        return reference[:, 0], varying[:, 0]
    return reference, varying


def constant_within_clusters(X: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Mask of the columns of ``X`` (n, p) that are constant within every cluster.

    The one rule of :func:`cluster_constancy` (missing values ignored). A column that no cluster
    holds twice counts as constant here (it has no within-cluster variation, so no within-cluster
    coefficient: per-cluster fits cannot estimate it); whether that is *evidence* of a
    cluster-level variable is :func:`~skmlmi.conditional.cluster_level.is_cluster_constant`'s
    question. Cost O(n p).
    """
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    if X.shape[1] == 0 or X.shape[0] == 0:
        return np.zeros(X.shape[1], dtype=bool)
    _, varying = cluster_constancy(X, groups, n_groups)
    return ~varying.any(axis=0)


def redundant_columns_from_moments(
    means: np.ndarray, cov: np.ndarray, eps: float = 1e-8, maxcor: float = 0.99999, scale: np.ndarray | None = None
) -> dict[int, str]:
    """:func:`find_redundant_columns` from the column means and covariance matrix.

    Same decisions (constant columns, then the collinear ones from the eigendecomposition
    of the correlation matrix), for callers that already hold the cross-products of the rows,
    so no second pass over the data is needed. ``cov`` must be accurate to rounding: computed
    from centred data (cross-products of uncentred columns lose the variance of a column
    whose SD is small against its mean).
    """
    sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
    drop = _constant_columns(means, sd, scale)
    alive = np.array([k for k in range(len(means)) if k not in drop], dtype=int)
    if alive.size >= 2:
        drop.update(
            _collinear_columns(alive, None, cov[np.ix_(alive, alive)] / np.outer(sd[alive], sd[alive]), eps, maxcor)
        )
    return drop


def _constant_columns(means, sd, scale) -> dict[int, str]:
    """Columns with no variation beyond the rounding of centring them."""
    # relative to the mean, no absolute floor: a predictor in units of 1e-12, or 1e12 + x, still varies
    reference = np.abs(means) if scale is None else np.maximum(np.abs(means), DERIVED_RTOL / CONSTANT_RTOL * scale)
    return {int(k): "constant" for k in np.flatnonzero(sd <= CONSTANT_RTOL * reference)}


def _collinear_columns(alive, rows, corr, eps, maxcor) -> dict[int, str]:
    """The collinear columns among ``alive`` (see :func:`find_redundant_columns`), with their reasons.

    Give either ``corr``, the correlation matrix, or ``rows`` (n, k): the standardised data
    divided by sqrt(n), whose cross-product ``rows.T @ rows`` is the correlation matrix (for n
    much smaller than k: its singular value decomposition is the cheaper factorisation).
    """
    k = alive.size
    drop: dict[int, str] = {}
    kept = np.arange(k)
    if rows is not None:
        # the correlation matrix's nonzero eigenvalues and their eigenvectors, from the rows
        _, singular, right = np.linalg.svd(rows, full_matrices=False)
        values = singular**2
        rank = int(np.count_nonzero(values > eps * values[0]))
        order = _null_leverage_order(row_basis=right[:rank].T)
        kept = _record_collinear(drop, alive, kept, order, lambda w: rows.T @ rows[:, w], maxcor)
        corr = rows[:, kept].T @ rows[:, kept]
        alive, kept = alive[kept], np.arange(kept.size)
    while kept.size >= 2:  # once, and once more to confirm (more only at the tolerance's edge)
        values, vectors = np.linalg.eigh(corr[np.ix_(kept, kept)])
        n_null = int(np.count_nonzero(values <= eps * values[-1]))
        if n_null == 0:
            break
        if n_null <= kept.size - n_null:
            order = _null_leverage_order(null_basis=vectors[:, :n_null])
        else:
            order = _null_leverage_order(row_basis=vectors[:, n_null:])
        kept = _record_collinear(drop, alive, kept, order, lambda w: corr[w], maxcor)
    return drop


def _record_collinear(drop, alive, kept, order, corr_row, maxcor) -> np.ndarray:
    """Enter the columns ``kept[order]`` in ``drop`` with their reason; return the kept ones.

    The reason names a correlation of at least ``maxcor`` with a column still there when the
    column goes (later ones included), as mice's ``remove.lindep`` does.
    """
    remaining = np.ones(kept.size, dtype=bool)
    for position in order:
        remaining[position] = False
        if np.any(np.abs(corr_row(kept[position])[kept[remaining]]) >= maxcor):
            drop[int(alive[kept[position]])] = "collinear (|r| >= 0.99999 with another predictor)"
        else:
            drop[int(alive[kept[position]])] = "collinear (linear combination of other predictors)"
    return kept[remaining]


#: Null leverages within this relative distance of the largest are a tie (exact duplicates
#: differ only by rounding, ~1e-15); the later column goes, so the first of duplicates stays.
_TIE_RTOL = 1e-9
#: The row-space update of :func:`_null_leverage_order` amplifies rounding by 1/leverage per
#: step; its basis is re-orthonormalised before the product reaches this.
_REORTHONORMALISE = 1e4


def _pick_largest(leverage: np.ndarray) -> int:
    """Index of the largest leverage; of near-equal ones (rounding), the last."""
    return int(np.flatnonzero(leverage >= leverage.max() * (1.0 - _TIE_RTOL))[-1])


def _null_leverage_order(null_basis: np.ndarray | None = None, row_basis: np.ndarray | None = None) -> list[int]:
    """Columns to drop, in order, so that the rest span the non-null eigenspace: one factorisation.

    Give an orthonormal basis N (p, d) of the near-null eigenspace of a correlation matrix, or
    one V (p, r) of its complement (the eigenvectors of the other eigenvalues). Each of the
    d = p - r steps drops the column with the largest null leverage ``l_i = ||N_i||^2 = 1 -
    ||V_i||^2`` and restricts N to the vectors that vanish on that column. With one null
    direction this is mice's ``remove.lindep`` choice (the largest loading on the smallest
    eigenvector); with several, the leverage does not depend on which basis of N the
    eigensolver returned, where the smallest eigenvector alone does (exact collinearities share
    the eigenvalue 0).

    Two equivalent updates (the restricted null leverages are the Schur complement of the null
    projector N N' = I - V V'): Gram-Schmidt on the rows of N, O(p d) per step, or, for a null
    space larger than its complement (more columns than rows), a rank-one update of V
    restricted to the remaining columns, O(p r) per step.
    """
    order: list[int] = []
    if null_basis is not None:
        B = null_basis.copy()
        alive = np.ones(B.shape[0], dtype=bool)
        for _ in range(B.shape[1]):
            leverage = np.where(alive, np.einsum("ij,ij->i", B, B), -np.inf)
            w = _pick_largest(leverage)
            b = B[w].copy()
            B -= np.outer(B @ b / (b @ b), b)  # row w becomes 0
            alive[w] = False
            order.append(w)
        return order
    p, rank = row_basis.shape
    alive = np.ones(p, dtype=bool)
    V = row_basis.copy()  # orthonormal on the remaining rows after each update
    growth = 1.0
    for _ in range(p - rank):
        leverage = np.where(alive, 1.0 - np.einsum("ij,ij->i", V, V), -np.inf)
        w = _pick_largest(leverage)
        u = V[w].copy()
        V[w] = 0.0
        alive[w] = False
        order.append(w)
        h = u @ u
        if h > 0:
            # V_R' V_R = I - u u' -> V_R (I - u u')^(-1/2) = V_R + a (V_R u) u'
            V += ((1.0 / np.sqrt(1.0 - h) - 1.0) / h) * np.outer(V @ u, u)
            growth /= 1.0 - h
        if growth > _REORTHONORMALISE:
            V[alive] = np.linalg.qr(V[alive])[0]
            growth = 1.0
    return order


@functools.lru_cache(maxsize=16)
def _strict_lower(q: int):
    return np.tril_indices(q, -1)


def wishart_precision_draw(
    S: np.ndarray,
    df: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw Psi ~ IW(df, S), i.e. Psi^-1 ~ W(df, S^-1), by Bartlett's construction.

    With S = R R' (lower Cholesky) and A lower-triangular, A_kk = sqrt(chi2_{df-k})
    (k = 0..q-1) and A_kl ~ N(0, 1) below the diagonal, Psi^-1 = (R^-T A)(R^-T A)' is
    W(df, S^-1) and Psi = (R A^-T)(R A^-T)'. Returning both the precision and a square
    root of Psi avoids inverting a possibly near-singular Psi (Odell & Feiveson 1966;
    the same construction as mice's ``rwishart``, which works on the scale matrix).

    Parameters
    ----------
    S : ndarray of shape (q, q)
        Symmetric positive-definite scale of the inverse Wishart.
    df : float
        Degrees of freedom, > q - 1.
    rng : numpy.random.Generator

    Returns
    -------
    precision : ndarray of shape (q, q)
        Psi^-1.
    psi_sqrt : ndarray of shape (q, q)
        A matrix C with C C' = Psi.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> draws = [wishart_precision_draw(np.eye(2), 50.0, rng)[0] for _ in range(4000)]
    >>> bool(np.allclose(np.mean(draws, axis=0), 50 * np.eye(2), atol=1.5))
    True
    """
    q = S.shape[0]
    R, _ = ridge_cholesky(0.5 * (S + S.T), 1e-10)
    A = np.zeros((q, q))
    A[np.diag_indices(q)] = np.sqrt(rng.chisquare(df - np.arange(q)))
    lower = _strict_lower(q)
    A[lower] = rng.standard_normal(len(lower[0]))
    # single q x q inverses: one LAPACK call each (the chains pin BLAS to one thread, so
    # there is no thread start-up to pay)
    factor = np.linalg.inv(R).T @ A  # R^-T A
    precision = factor @ factor.T
    psi_sqrt = R @ np.linalg.inv(A).T  # R A^-T
    return 0.5 * (precision + precision.T), psi_sqrt
