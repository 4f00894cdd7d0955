"""Design checks: redundant (constant or collinear) predictor columns and exact power-of-two units.

Which columns carry no information beyond the others (mice's ``remove.lindep``, decided from one
eigendecomposition), and the powers of two a model divides its columns by before its numerics.
This module knows nothing about DataFrames, column names or the imputation loop.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CONSTANT_RTOL",
    "DERIVED_RTOL",
    "power_of_two_exponents",
    "scale_by_powers_of_two",
    "find_redundant_columns",
    "redundant_columns_from_moments",
]


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


def scale_by_powers_of_two(values: np.ndarray, exponents: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.ldexp(values, exponents)``, column by column, bit for bit, by one multiplication.

    Where every ``2**e`` is a normal number, ``values * 2**e`` is the same correctly rounded
    result as ``ldexp`` (exact away from overflow and subnormals), and a multiplication runs
    several times faster on a design's worth of values; extreme exponents keep ``ldexp``.
    """
    exponents = np.asarray(exponents)
    if out is values and not exponents.any():  # in place by 2^0 (columns with SDs in [1, 2)): nothing to do
        return out
    if exponents.size == 0 or np.abs(exponents).max() < 1000:
        return np.multiply(values, np.ldexp(1.0, exponents), out=out)
    return np.ldexp(values, exponents, out=out)


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


# A column whose SD is below this fraction of its mean is constant up to rounding: values that
# differ only in their last bits spread by a few eps |mean|, while centring at a rounded mean
# shifts every value alike and adds no spread. 16 eps keeps a margin; far larger (1e-12 before)
# took 1e12 + x with SD 0.2 (2,000 units of rounding at 1e12, e.g. a cluster mean) for a constant.
CONSTANT_RTOL = 16 * np.finfo(float).eps
# The same for quantities derived from raw values of magnitude ``scale`` (cluster means:
# sums of up to ~1e4 values, each rounding relative to the raw magnitude).
DERIVED_RTOL = 1e-10


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
