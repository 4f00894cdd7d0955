"""Cholesky factors with a ridge fallback, for one matrix and for ``(J, q, q)`` stacks.

Batched factors, inverses and solves of the small per-cluster matrices of random-effects
designs, vectorised over the stack (loops over the q^2 / 2 entries only).
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.linalg import lapack

__all__ = [
    "ridge_cholesky",
    "lower_inverse",
    "symmetric_eigenvalues",
    "batched_cholesky",
    "batched_small_cholesky",
    "batched_lower_inverse",
    "batched_inverse_factor",
    "chol_solve_stack",
]


def ridge_cholesky(A: np.ndarray, ridge: float = 1e-5) -> tuple[np.ndarray, bool]:
    """Lower Cholesky factor of symmetric ``A``; adds ``ridge * diag(A)`` if it fails.

    Returns the factor and whether the ridge was needed. Works on a single matrix; for
    stacks see :func:`batched_cholesky`. One direct LAPACK call (``dpotrf``): the Gibbs
    samplers factor a few q x q matrices per step, where numpy's wrapper costs five times
    the factorisation.
    """
    if A.size == 0:
        return np.zeros_like(A, dtype=float), False
    L, info = lapack.dpotrf(A, lower=1, clean=1)
    if info == 0:
        return L, False
    d = np.diag(A).astype(float)
    d[d <= 0] = 1.0
    L, info = lapack.dpotrf(A + np.diag(ridge * d), lower=1, clean=1)
    if info != 0:
        raise np.linalg.LinAlgError("Matrix is not positive definite, even with a ridge")
    return L, True


def lower_inverse(L: np.ndarray) -> np.ndarray:
    """Inverse of one lower-triangular matrix (LAPACK ``dtrtri``; lower triangular again)."""
    if L.size == 0:
        return np.zeros_like(L, dtype=float)
    inverse, info = lapack.dtrtri(L, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError("Singular triangular matrix")
    return inverse


def symmetric_eigenvalues(A: np.ndarray) -> np.ndarray:
    """Ascending eigenvalues of one symmetric matrix, read from its lower triangle (LAPACK ``dsyev``)."""
    values, _, info = lapack.dsyev(A, compute_v=0, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError("Eigenvalues did not converge")
    return values


def batched_cholesky(A: np.ndarray, ridge: float = 1e-8) -> np.ndarray:
    """Lower Cholesky factors of a ``(J, q, q)`` stack, with a relative ridge on failure."""
    try:
        return np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        q = A.shape[-1]
        d = np.abs(np.diagonal(A, axis1=-2, axis2=-1)).max(axis=-1)
        d = np.where(d > 0, d, 1.0)
        return np.linalg.cholesky(A + (ridge * d)[:, None, None] * np.eye(q))


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
        with np.errstate(invalid="ignore", divide="ignore"):  # matrices that fail are ridged below
            for i in range(q):
                for k in range(i + 1):
                    s = A[:, i, k] - np.einsum("jm,jm->j", L[:, i, :k], L[:, k, :k])
                    if i == k:
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


def batched_inverse_factor(A: np.ndarray, ridge: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """L_j^-1 for the lower Cholesky factors L_j of a ``(J, q, q)`` stack of symmetric matrices
    (so that A_j^-1 = L_j^-T L_j^-1), and the mask of matrices that needed a ridge.

    For q = 1 and 2 (a random intercept, and one random slope) the factor and its inverse are
    written out entry by entry, each entry one operation over the J matrices (the formulas of
    LAPACK's ``dpotrf``: l_00 = sqrt(a_00), l_10 = a_10 / l_00, l_11 = sqrt(a_11 - l_10^2)); the Gibbs
    steps call this once per step, where numpy's stacked Cholesky and a substitution cost three
    times as much. Larger q, and any matrix that is not positive definite, go through
    :func:`batched_small_cholesky` (with its ridge) and :func:`batched_lower_inverse`.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[[4.0, 2.0], [2.0, 3.0]]])
    >>> Linv, ridged = batched_inverse_factor(A)
    >>> bool(np.allclose(Linv[0].T @ Linv[0], np.linalg.inv(A[0]))), bool(ridged[0])
    (True, False)
    """
    J, q, _ = A.shape
    if q <= 2:
        with np.errstate(invalid="ignore", divide="ignore"):
            l00 = np.sqrt(A[:, 0, 0])
            inverse = np.zeros_like(A, dtype=float)
            np.divide(1.0, l00, out=inverse[:, 0, 0])
            if q == 1:
                positive = l00 > 0
            else:
                l10 = A[:, 1, 0] / l00
                l11 = np.sqrt(A[:, 1, 1] - l10 * l10)
                positive = (l00 > 0) & (l11 > 0)
                np.divide(1.0, l11, out=inverse[:, 1, 1])
                np.multiply(-l10 * inverse[:, 0, 0], inverse[:, 1, 1], out=inverse[:, 1, 0])
        if positive.all():
            return inverse, np.zeros(J, dtype=bool)
    L, bad = batched_small_cholesky(A, ridge)
    return batched_lower_inverse(L), bad


@functools.lru_cache(maxsize=16)
def _strict_lower(q: int):
    return np.tril_indices(q, -1)


def chol_solve_stack(L, rhs):
    """Solve (L L') x = rhs for a (G, m, m) stack of lower factors and (G, m, r) right sides."""
    z = np.linalg.solve(L, rhs)
    return np.linalg.solve(np.swapaxes(L, -1, -2), z)
