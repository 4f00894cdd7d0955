"""skmlmi._kernels.linalg: batched Cholesky factors, inverses and solves against numpy's one at a time."""

import numpy as np
import pytest

from skmlmi._kernels import (
    batched_cholesky,
    batched_inverse_factor,
    batched_lower_inverse,
    batched_small_cholesky,
    chol_solve_stack,
    lower_inverse,
    ridge_cholesky,
    symmetric_eigenvalues,
)


def _spd_stack(J, q, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(J, q, q + 2))
    return A @ np.swapaxes(A, 1, 2) + 0.1 * np.eye(q)


@pytest.mark.parametrize("J", [3, 800])  # LAPACK per matrix below 500, the vectorised factor above
@pytest.mark.parametrize("q", [1, 2, 4])
def test_batched_small_cholesky_equals_numpys_factor(J, q):
    A = _spd_stack(J, q)
    L, ridged = batched_small_cholesky(A)
    np.testing.assert_allclose(L, np.linalg.cholesky(A), rtol=1e-10, atol=1e-12)
    assert not ridged.any()


def test_batched_small_cholesky_ridges_only_the_singular_matrices():
    A = _spd_stack(600, 2)
    A[5] = np.array([[1.0, 1.0], [1.0, 1.0]])  # rank one
    L, ridged = batched_small_cholesky(A)
    assert ridged[5] and ridged.sum() == 1
    np.testing.assert_allclose(L[6], np.linalg.cholesky(A[6]), rtol=1e-12)
    assert np.all(np.diagonal(L[5]) > 0)
    np.testing.assert_allclose(L[5] @ L[5].T, A[5], atol=1e-6)


def test_batched_lower_inverse_and_chol_solve_stack_match_numpy():
    A = _spd_stack(50, 3, seed=1)
    L = np.linalg.cholesky(A)
    np.testing.assert_allclose(batched_lower_inverse(L), np.linalg.inv(L), rtol=1e-10, atol=1e-12)
    rhs = np.random.default_rng(2).normal(size=(50, 3, 2))
    np.testing.assert_allclose(chol_solve_stack(L, rhs), np.linalg.solve(A, rhs), rtol=1e-9, atol=1e-12)


def test_ridge_cholesky_and_batched_cholesky_fall_back_to_a_ridge():
    A = np.array([[2.0, 1.0], [1.0, 3.0]])
    L, ridged = ridge_cholesky(A)
    np.testing.assert_allclose(L, np.linalg.cholesky(A))
    assert not ridged
    singular = np.array([[1.0, 2.0], [2.0, 4.0]])
    L, ridged = ridge_cholesky(singular, ridge=1e-5)
    assert ridged
    np.testing.assert_allclose(L @ L.T, singular + np.diag(1e-5 * np.diag(singular)), rtol=1e-12)
    stack = np.stack([A, singular])
    np.testing.assert_allclose(batched_cholesky(stack)[0] @ batched_cholesky(stack)[0].T, A, rtol=1e-6)
    assert np.all(np.isfinite(batched_cholesky(stack)))


def test_lower_inverse_and_symmetric_eigenvalues_match_numpy_and_reject_singular_input():
    A = _spd_stack(1, 4, seed=3)[0]
    L = np.linalg.cholesky(A)
    np.testing.assert_allclose(lower_inverse(L), np.linalg.inv(L), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(symmetric_eigenvalues(A), np.linalg.eigvalsh(A), rtol=1e-12)
    lower_only = np.tril(A)  # the eigenvalues are read from the lower triangle
    np.testing.assert_allclose(symmetric_eigenvalues(lower_only), np.linalg.eigvalsh(A), rtol=1e-12)
    with pytest.raises(np.linalg.LinAlgError):
        lower_inverse(np.array([[1.0, 0.0], [2.0, 0.0]]))
    with pytest.raises(np.linalg.LinAlgError):
        ridge_cholesky(np.array([[-1.0, 0.0], [0.0, -1.0]]), ridge=1e-5)


def test_batched_inverse_factor_matches_the_cholesky_inverse_and_ridges_what_is_not_positive_definite():
    # q = 1 and 2 are written out entry by entry, q = 3 goes through the general path: all must give
    # L_j^-1 of numpy's Cholesky factor; a singular or negative matrix takes the ridge (and is flagged).
    for q in (1, 2, 3):
        A = _spd_stack(60, q, seed=q)
        inverse, ridged = batched_inverse_factor(A)
        np.testing.assert_allclose(inverse, np.linalg.inv(np.linalg.cholesky(A)), rtol=1e-12, atol=1e-14)
        assert not ridged.any()
        bad = A.copy()
        bad[7] = 0.0 if q == 1 else np.outer(np.arange(1.0, q + 1), np.arange(1.0, q + 1))  # rank one
        inverse, ridged = batched_inverse_factor(bad)
        assert ridged[7] and ridged.sum() == 1 and np.all(np.isfinite(inverse))
        np.testing.assert_allclose(inverse[:7], np.linalg.inv(np.linalg.cholesky(A[:7])), rtol=1e-12, atol=1e-14)
