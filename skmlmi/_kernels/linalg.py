"""Cholesky factors with a ridge fallback, for one matrix and for ``(J, q, q)`` stacks.

Batched factors, inverses and solves of the small per-cluster matrices of random-effects
designs, vectorised over the stack (loops over the q^2 / 2 entries only).
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = [
    "ridge_cholesky",
    "batched_cholesky",
    "batched_small_cholesky",
    "batched_lower_inverse",
    "chol_solve_stack",
]


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


@functools.lru_cache(maxsize=16)
def _strict_lower(q: int):
    return np.tril_indices(q, -1)


def chol_solve_stack(L, rhs):
    """Solve (L L') x = rhs for a (G, m, m) stack of lower factors and (G, m, r) right sides."""
    z = np.linalg.solve(L, rhs)
    return np.linalg.solve(np.swapaxes(L, -1, -2), z)
