"""Per-cluster sums, means, cross-products and the one rule of "constant within clusters".

Cluster codes are integers ``0..n_groups-1``; sums go through ``np.bincount`` (one call per
column or product) or, for rows sorted by cluster (:class:`SortedClusters`), one
``np.add.reduceat``. No loop over rows or clusters; loops over the (few) columns are allowed.
This module knows nothing about DataFrames, column names or the imputation loop.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import sparse

__all__ = [
    "rows_of_clusters",
    "CONSTANT_ULPS",
    "cluster_counts",
    "cluster_sums",
    "cluster_means",
    "cluster_cross_products",
    "cluster_constancy",
    "constant_within_clusters",
    "sort_by_cluster",
    "compress_clusters",
    "SortedClusters",
    "weighted_cluster_cross_products",
]


def cluster_counts(groups: np.ndarray, n_groups: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Number (or weighted count) of rows per cluster code."""
    return np.bincount(groups, weights=weights, minlength=n_groups).astype(float)


def cluster_sums(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-cluster column sums of ``values`` (n,) or (n, p) -> (J,) or (J, p).

    A row-major (n, p) array is summed in one pass as Z'X, Z the n x J indicator matrix of the
    clusters held as a CSR matrix with one entry per row (no sort, no copy of ``values``): its
    transpose's product adds each row of X to its cluster's sums in row order, exactly the sums
    ``np.bincount`` forms column by column (bit for bit), without reading strided columns.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        return np.bincount(groups, weights=values, minlength=n_groups)
    n, p = values.shape
    if values.flags.c_contiguous and p > 1 and n:
        indicator = sparse.csr_array((np.ones(n), groups, np.arange(n + 1)), shape=(n, n_groups))
        return np.asarray(indicator.T @ values)
    out = np.empty((n_groups, p))
    for k in range(p):  # contiguous columns: one np.bincount per column, not per cluster
        out[:, k] = np.bincount(groups, weights=values[:, k], minlength=n_groups)
    return out


def cluster_means(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-cluster means (NaN for empty clusters) of ``values`` (n,) or (n, p)."""
    counts = cluster_counts(groups, n_groups)
    sums = cluster_sums(values, groups, n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / (counts if sums.ndim == 1 else counts[:, None])


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


def sort_by_cluster(groups: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """Row order grouping the rows by cluster, and each cluster's first row in that order.

    Every cluster 0..n_clusters-1 must have rows (the compressed codes of
    :func:`compress_clusters`), so that ``np.add.reduceat(a[order], starts)`` gives the
    per-cluster sums of every column of ``a`` in one call.
    """
    order = np.argsort(groups, kind="stable")
    counts = np.bincount(groups, minlength=n_clusters)
    return order, np.r_[0, np.cumsum(counts)[:-1]]


def compress_clusters(groups_observed: np.ndarray, n_clusters: int):
    """Codes 0..J_obs-1 of the clusters with observed rows, and which clusters they are."""
    present = np.bincount(groups_observed, minlength=n_clusters) > 0
    codes = np.cumsum(present) - 1
    return codes[groups_observed], np.flatnonzero(present), present


class SortedClusters:
    """Rows sorted by cluster, with the offsets ``np.add.reduceat`` needs for per-cluster sums.

    Parameters
    ----------
    groups : ndarray of shape (n,) of int
        Cluster code of each row, in ``0..n_groups-1``.
    n_groups : int
    is_sorted : bool, default=False
        Whether ``groups`` is already in cluster order (then ``order`` is the identity).

    Attributes
    ----------
    order : ndarray of shape (n,)
        Row order that groups the rows by cluster (stable: rows keep their order within a cluster).
    codes : ndarray of shape (n,)
        The cluster codes in that order.
    starts : ndarray
        First sorted row of each cluster that has rows.
    present : ndarray
        The codes of the clusters that have rows (``len(starts)`` of them).
    n_groups : int

    Notes
    -----
    One stable sort, O(n log n), at construction; each :meth:`sums` is one ``np.add.reduceat``,
    O(n) per column, with no loop over rows or clusters and no n x J matrix.

    Examples
    --------
    >>> import numpy as np
    >>> clusters = SortedClusters(np.array([1, 0, 1, 3]), 4)
    >>> clusters.sums(np.array([1.0, 2.0, 3.0, 4.0])[clusters.order])
    array([2., 4., 0., 4.])
    """

    def __init__(self, groups: np.ndarray, n_groups: int, is_sorted: bool = False):
        groups = np.asarray(groups)
        self.order = np.arange(len(groups)) if is_sorted else np.argsort(groups, kind="stable")
        sorted_groups = groups if is_sorted else groups[self.order]
        changes = np.r_[True, sorted_groups[1:] != sorted_groups[:-1]] if len(groups) else np.zeros(0, dtype=bool)
        self.starts = np.flatnonzero(changes)
        self.present = sorted_groups[self.starts]
        self.codes = sorted_groups
        self.n_groups = n_groups

    def sums(self, values: np.ndarray) -> np.ndarray:
        """Per-cluster sums (n_groups, ...) of values in sorted row order; clusters without rows get zeros."""
        if len(self.starts) == self.n_groups:  # every cluster has rows: no scatter needed
            return np.add.reduceat(values, self.starts, axis=0)
        out = np.zeros((self.n_groups,) + values.shape[1:])
        if len(self.starts):
            out[self.present] = np.add.reduceat(values, self.starts, axis=0)
        return out

    def subset(self, clusters: np.ndarray) -> tuple[SortedClusters, np.ndarray]:
        """The clusters in the boolean mask ``clusters`` (n_groups,), recoded ``0..G'-1``.

        Returns the new :class:`SortedClusters` and the mask of the sorted rows it keeps (which
        stay sorted).
        """
        rows = clusters[self.codes]
        compact = np.cumsum(clusters) - 1
        return SortedClusters(compact[self.codes[rows]], int(clusters.sum()), is_sorted=True), rows


def weighted_cluster_cross_products(D: np.ndarray, g: np.ndarray, J: int, w: np.ndarray | None = None) -> np.ndarray:
    """``(J, k, k)`` stack of ``sum_i w_i d_i d_i'`` per cluster: one bincount per distinct product."""
    k = D.shape[1]
    out = np.empty((J, k, k))
    for a in range(k):  # loops over the k(k+1)/2 products, not over clusters
        Da = D[:, a] if w is None else D[:, a] * w
        for b in range(a, k):
            out[:, a, b] = out[:, b, a] = np.bincount(g, weights=Da * D[:, b], minlength=J)
    return out


def rows_of_clusters(
    table: np.ndarray,
    groups: np.ndarray,
    draw_new: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    missing_is_new: bool = False,
) -> np.ndarray:
    """Per-row parameters from a per-cluster table, with population draws for the other clusters.

    Row i gets ``table[groups[i]]`` when its cluster was seen at fit (code ``< len(table)``, and,
    with ``missing_is_new``, a table row that is not NaN: a systematically missing cluster).
    Every other cluster gets ONE draw from the population, shared by all its rows:
    ``draw_new(codes, inverse, rows)`` returns one row per distinct new cluster code (``codes``,
    sorted), where ``rows`` are the positions of the rows concerned and ``inverse`` their index
    into ``codes``. How the population is drawn (N(0, Psi), a meta-regression, a log-variance)
    is the model's; that unseen clusters are drawn once and their rows share the draw is this
    function's, the same for every model.

    Cost O(n log n) for the ``np.unique`` of the new rows' codes; no loop over rows or clusters.

    Parameters
    ----------
    table : ndarray of shape (J, ...)
        One row of parameters per cluster seen at fit.
    groups : ndarray of shape (n,)
        Cluster codes of the rows; codes ``>= J`` are clusters unseen at fit.
    draw_new : callable
        ``draw_new(codes, inverse, rows)``: one population draw per distinct new cluster code.
    missing_is_new : bool, default=False
        Whether a NaN row of ``table`` (a cluster never observed) is drawn like an unseen one.

    Returns
    -------
    ndarray of shape (n, ...)
    """
    groups = np.asarray(groups, dtype=np.intp)
    n_known = len(table)
    seen = groups < n_known
    out = (
        np.full((len(groups),) + table.shape[1:], np.nan)
        if missing_is_new
        else np.empty((len(groups),) + table.shape[1:])
    )
    out[seen] = table[groups[seen]]
    new = np.isnan(out.reshape(len(groups), -1)[:, 0]) if missing_is_new else ~seen
    if new.any():
        rows = np.flatnonzero(new)
        codes, inverse = np.unique(groups[rows], return_inverse=True)
        out[rows] = draw_new(codes, inverse, rows)[inverse]
    return out
