"""Univariate and multivariate random-effects meta-analysis (REML, ML, method of moments).

This room fits the model the two-stage and Heckman conditional models need for their
second stage: study (cluster) estimates ``theta_hat_j`` of ``k`` quantities, with known
within-study covariances ``S_j``, combined under

.. math::

    \\hat\\theta_j \\sim N_k(B^\\top x_j,\\; S_j + \\Psi), \\qquad j = 1, \\dots, J,

with ``x_j`` the ``d`` study-level covariates (an intercept only by default), ``B`` the
``d x k`` matrix of pooled coefficients and ``Psi`` the ``k x k`` between-study covariance.
It is R's ``mixmeta`` / ``mvmeta`` (Gasparrini et al. 2012; Sera et al. 2019) with the
unstructured ``Psi``, and it adds what multiple imputation needs: draws of ``(B, Psi)``
from their approximate posterior and the per-study posterior of the true study effects.

Everything is vectorised over studies: within and marginal covariances are ``(J, k, k)``
stacks, inverted and factored in one batched call; no Python loop runs over studies.
This module knows nothing about clusters, imputation or DataFrames.

Orderings (as ``mixmeta``): the stacked coefficient vector is ``vec(B)``, outcome-major
(all ``d`` coefficients of outcome 1, then outcome 2, ...), that is ``B.ravel(order="F")``;
the optimiser parameters are the column-major ``vech`` of the lower Cholesky factor ``L``
of ``Psi = L L'`` (``L11, L21, ..., Lk1, L22, ...``), as ``mvmeta``'s ``par``.

References
----------
Jackson, D., White, I. R. and Riley, R. D. (2013). A matrix-based method of moments for
fitting the multivariate random effects model for meta-analysis and meta-regression.
Biometrical Journal 55, 231-245.

DerSimonian, R. and Laird, N. (1986). Meta-analysis in clinical trials. Controlled
Clinical Trials 7, 177-188.

Gasparrini, A., Armstrong, B. and Kenward, M. G. (2012). Multivariate meta-analysis for
non-linear and other multi-parameter associations. Statistics in Medicine 31, 3821-3839.

Resche-Rigon, M. and White, I. R. (2018). Multiple imputation by chained equations for
systematically and sporadically missing multilevel data. Statistical Methods in Medical
Research 27, 1634-1649.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import linalg, optimize
from sklearn.exceptions import ConvergenceWarning

__all__ = [
    "MetaAnalysisResult",
    "meta_analysis",
    "study_posterior",
    "draw_study_effects",
    "cholesky_parameters",
    "psi_from_parameters",
]

#: mixmeta's ``set.negeigen``: negative eigenvalues of a moment estimate of Psi are set to this.
_NEGEIGEN = float(np.sqrt(np.finfo(float).eps))
_LOG_2PI = float(np.log(2.0 * np.pi))


# --------------------------------------------------------------------------- parametrisation
def _vech_indices(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the column-major lower triangle (R's ``vech``)."""
    upper_rows, upper_cols = np.triu_indices(k)
    return upper_cols, upper_rows  # transposing the row-major upper triangle gives column-major lower


def psi_from_parameters(parameters: np.ndarray, k: int) -> np.ndarray:
    """``Psi = L L'`` from the column-major ``vech`` of the lower Cholesky factor ``L``.

    Parameters
    ----------
    parameters : ndarray of shape (k(k+1)/2,) or (n, k(k+1)/2)
        One vector of Cholesky parameters, or a stack of them.
    k : int
        Dimension of Psi.

    Returns
    -------
    ndarray of shape (k, k) or (n, k, k)
    """
    parameters = np.asarray(parameters, dtype=float)
    rows, cols = _vech_indices(k)
    L = np.zeros(parameters.shape[:-1] + (k, k))
    L[..., rows, cols] = parameters
    return L @ np.swapaxes(L, -1, -2)


def cholesky_parameters(psi: np.ndarray) -> np.ndarray:
    """Column-major ``vech`` of the lower Cholesky factor of a positive semi-definite ``psi``.

    A singular ``psi`` (at the boundary of the parameter space) is factored through its
    eigen-decomposition followed by a QR step, so the factor is lower triangular with a
    non-negative diagonal even when some diagonal entries are zero.

    Parameters
    ----------
    psi : ndarray of shape (k, k)
        A symmetric positive semi-definite matrix.

    Returns
    -------
    ndarray of shape (k(k+1)/2,)
    """
    psi = np.asarray(psi, dtype=float)
    k = psi.shape[0]
    try:
        L = np.linalg.cholesky(psi)
    except np.linalg.LinAlgError:
        values, vectors = np.linalg.eigh((psi + psi.T) / 2.0)
        root = vectors * np.sqrt(np.clip(values, 0.0, None))  # root root' = psi
        # root' = Q R  =>  psi = R' R with R' lower triangular
        _, R = np.linalg.qr(root.T)
        L = R.T
        L = L * np.where(np.diag(L) < 0, -1.0, 1.0)[None, :]
    rows, cols = _vech_indices(k)
    return L[rows, cols].copy()


# --------------------------------------------------------------------------- input checks
def _as_inputs(
    estimates: np.ndarray, within_covariances: np.ndarray, design: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate and reshape to ``y (J, k)``, ``S (J, k, k)``, ``X (J, d)``."""
    y = np.asarray(estimates, dtype=float)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2:
        raise ValueError(f"estimates must have shape (J,) or (J, k); got shape {np.shape(estimates)}")
    J, k = y.shape
    S = np.asarray(within_covariances, dtype=float)
    if k == 1 and S.shape in ((J,), (J, 1)):
        S = S.reshape(J, 1, 1)
    if S.shape != (J, k, k):
        raise ValueError(
            f"within_covariances must have shape (J, k, k) = ({J}, {k}, {k})"
            + (f" or ({J},) for univariate estimates" if k == 1 else "")
            + f"; got shape {S.shape}"
        )
    if not np.all(np.isfinite(y)):
        bad = np.flatnonzero(~np.all(np.isfinite(y), axis=1))
        raise ValueError(f"estimates are not finite for studies {bad[:10].tolist()}")
    if not np.all(np.isfinite(S)):
        bad = np.flatnonzero(~np.all(np.isfinite(S), axis=(1, 2)))
        raise ValueError(f"within_covariances are not finite for studies {bad[:10].tolist()}")
    scale = np.abs(S).max(axis=(1, 2))
    asym = np.abs(S - np.swapaxes(S, 1, 2)).max(axis=(1, 2))
    if np.any(asym > 1e-8 * np.maximum(scale, np.finfo(float).tiny)):
        bad = np.flatnonzero(asym > 1e-8 * scale)
        raise ValueError(f"within_covariances are not symmetric for studies {bad[:10].tolist()}")
    S = (S + np.swapaxes(S, 1, 2)) / 2.0
    # positive definite = positive variances and a nonsingular correlation matrix (a test that
    # does not depend on the units of the k estimates)
    variances = np.diagonal(S, axis1=1, axis2=2)
    sd = np.sqrt(np.where(variances > 0, variances, 1.0))
    eig = np.linalg.eigvalsh(S / (sd[:, :, None] * sd[:, None, :]))
    singular = np.any(variances <= 0, axis=1) | (eig[:, 0] <= 1e-12)
    if np.any(singular):
        bad = np.flatnonzero(singular)
        raise ValueError(
            f"within_covariances are not positive definite for studies {bad[:10].tolist()} "
            f"(smallest variances {variances[bad[:3]].min(axis=1).tolist()}, smallest eigenvalues of the "
            f"correlation matrices {eig[bad[:3], 0].tolist()}); a study whose estimates have a singular "
            "covariance carries no usable information: leave it out of the meta-analysis "
            "(the two-stage models treat such clusters as systematically missing)"
        )
    if design is None:
        X = np.ones((J, 1))
    else:
        X = np.asarray(design, dtype=float)
        if X.ndim == 1:
            X = X[:, None]
        if X.ndim != 2 or X.shape[0] != J:
            raise ValueError(f"design must have shape (J, d) with J = {J} studies; got shape {np.shape(design)}")
        if not np.all(np.isfinite(X)):
            raise ValueError("design contains non-finite values")
    d = X.shape[1]
    if J <= d:
        raise ValueError(
            f"a random-effects meta-analysis needs more studies than design columns to estimate Psi; "
            f"got J = {J} studies and d = {d} design column(s)"
        )
    if np.linalg.matrix_rank(X) < d:
        raise ValueError(f"design (J = {J}, d = {d}) is rank deficient: its columns are linearly dependent")
    return y, S, X


# --------------------------------------------------------------------------- GLS given Psi
@dataclass
class _GLS:
    """Generalised least squares given Psi: everything the likelihoods and gradients reuse."""

    coefficients: np.ndarray  # (d, k)
    information: np.ndarray  # (dk, dk) = sum_j X_j' W_j X_j
    covariance: np.ndarray  # (dk, dk) inverse of information
    weights: np.ndarray  # (J, k, k) = (S_j + Psi)^-1
    residuals: np.ndarray  # (J, k)
    logdet_sigma: float  # sum_j log|S_j + Psi|
    logdet_information: float  # log|information|
    quadratic: float  # sum_j r_j' W_j r_j


def _gls(y: np.ndarray, S: np.ndarray, X: np.ndarray, psi: np.ndarray) -> _GLS:
    """GLS fit of ``y_j ~ N(B' x_j, S_j + psi)`` by batched Cholesky factors.

    With ``X_j = I_k (x) x_j'`` the information ``sum_j X_j' W_j X_j`` is
    ``sum_j W_j (x) x_j x_j'`` and the score ``sum_j X_j' W_j y_j`` is ``sum_j (W_j y_j) (x) x_j``,
    both formed by one ``einsum`` over the stack. Cost O(J k^3 + J k^2 d^2 + (kd)^3).
    """
    J, k = y.shape
    d = X.shape[1]
    sigma = S + psi
    U = np.linalg.cholesky(sigma)  # S_j positive definite and psi semi-definite: never fails
    eye = np.broadcast_to(np.eye(k), sigma.shape)
    U_inv = np.linalg.solve(U, eye)
    W = np.swapaxes(U_inv, 1, 2) @ U_inv
    logdet_sigma = 2.0 * float(np.log(np.diagonal(U, axis1=1, axis2=2)).sum())
    info = np.einsum("jab,jc,je->acbe", W, X, X).reshape(k * d, k * d)
    score = np.einsum("jab,jb,jc->ac", W, y, X).reshape(k * d)
    chol = linalg.cho_factor(info, lower=True)
    coef = linalg.cho_solve(chol, score)
    cov = linalg.cho_solve(chol, np.eye(k * d))
    B = coef.reshape(k, d).T
    resid = y - X @ B
    quad = float(np.einsum("ja,jab,jb->", resid, W, resid))
    logdet_info = 2.0 * float(np.log(np.diag(chol[0])).sum())
    return _GLS(B, info, (cov + cov.T) / 2.0, W, resid, logdet_sigma, logdet_info, quad)


def _projection_blocks(X: np.ndarray, middle: np.ndarray, k: int) -> np.ndarray:
    """``X_j A X_j'`` for every study: ``(..., J, k, k)`` from ``A`` of shape ``(..., kd, kd)``."""
    d = X.shape[1]
    A = middle.reshape(middle.shape[:-2] + (k, d, k, d))
    return np.einsum("jc,...acbe,je->...jab", X, A, X)


# --------------------------------------------------------------------------- likelihoods
def _loglik_and_gradient(
    theta: np.ndarray, y: np.ndarray, S: np.ndarray, X: np.ndarray, reml: bool
) -> tuple[float, np.ndarray]:
    """Profile (restricted) log-likelihood in the Cholesky parameters and its exact gradient.

    ``l(Psi) = -1/2 sum_j log|Sigma_j| - 1/2 sum_j r_j' W_j r_j [- 1/2 log|sum_j X_j' W_j X_j|] + c``
    with ``Sigma_j = S_j + Psi``, ``W_j = Sigma_j^-1`` and ``r_j`` the GLS residuals. As
    ``beta_hat`` maximises the likelihood given Psi, its derivative drops out and
    ``dl = tr(G dPsi)`` with
    ``G = 1/2 sum_j W_j (r_j r_j' - Sigma_j [+ X_j M^-1 X_j']) W_j`` (bracket for REML).
    With ``Psi = L L'``, ``dl/dL = 2 G L``.
    """
    J, k = y.shape
    d = X.shape[1]
    psi = psi_from_parameters(theta, k)
    fit = _gls(y, S, X, psi)
    if reml:
        const = -0.5 * (J * k - d * k) * _LOG_2PI + 0.5 * k * np.linalg.slogdet(X.T @ X)[1]
        value = const - 0.5 * fit.logdet_sigma - 0.5 * fit.quadratic - 0.5 * fit.logdet_information
    else:
        value = -0.5 * J * k * _LOG_2PI - 0.5 * fit.logdet_sigma - 0.5 * fit.quadratic
    Wr = np.einsum("jab,jb->ja", fit.weights, fit.residuals)
    G = np.einsum("ja,jb->ab", Wr, Wr) - fit.weights.sum(axis=0)
    if reml:
        P = _projection_blocks(X, fit.covariance, k)
        G = G + np.einsum("jab,jbc,jcd->ad", fit.weights, P, fit.weights)
    G = 0.25 * (G + G.T)  # 1/2 sum(...), symmetrised against rounding
    rows, cols = _vech_indices(k)
    L = np.zeros((k, k))
    L[rows, cols] = theta
    grad = (2.0 * G @ L)[rows, cols]
    return float(value), grad


def _numerical_hessian(theta: np.ndarray, gradient, scale: float) -> np.ndarray:
    """Hessian by central differences of the exact gradient (error O(h^2), h ~ eps^(1/3))."""
    p = theta.size
    H = np.empty((p, p))
    h = np.cbrt(np.finfo(float).eps) * np.maximum(np.abs(theta), scale)
    for i in range(p):  # loop over the k(k+1)/2 parameters, not over studies
        e = np.zeros(p)
        e[i] = h[i]
        H[:, i] = (gradient(theta + e) - gradient(theta - e)) / (2.0 * h[i])
    return (H + H.T) / 2.0


def _maximise(
    y: np.ndarray, S: np.ndarray, X: np.ndarray, reml: bool, psi_start: np.ndarray, max_iter: int
) -> tuple[np.ndarray, float, np.ndarray, bool, int]:
    """BFGS on the exact gradient, then Newton steps on the numerical Hessian to polish.

    BFGS (as ``mvmeta``/``micemd``) brings the parameters near the maximum; the Newton
    polish then converges quadratically, so the estimate is the maximum to ~1e-10 rather
    than to BFGS's stopping rule. Convergence means the Newton decrement
    ``-g' H^-1 g / 2`` (the expected remaining gain in log-likelihood) is below 1e-10,
    or the gradient vanishes. The search runs in units of the median within-study
    standard deviations (``L = diag(u) L_s``), so that it behaves the same whatever the
    units of the k estimates; the parameters and Hessian returned are in ``L``.
    """
    k = y.shape[1]
    rows, _ = _vech_indices(k)
    t = np.sqrt(np.median(np.diagonal(S, axis1=1, axis2=2), axis=0))[rows]  # theta = t * phi

    def value_gradient(phi):
        value, grad = _loglik_and_gradient(t * phi, y, S, X, reml)
        return value, t * grad

    def negative(phi):
        value, grad = value_gradient(phi)
        return -value, -grad

    def gradient(phi):
        return value_gradient(phi)[1]

    phi = cholesky_parameters(psi_start) / t
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        opt = optimize.minimize(negative, phi, jac=True, method="BFGS", options={"maxiter": max_iter, "gtol": 1e-9})
    phi = opt.x
    n_iter = int(opt.nit)
    value, grad = value_gradient(phi)
    hessian = _numerical_hessian(phi, gradient, 1e-3)
    converged = False
    for _ in range(50):  # Newton polish; a handful of steps in practice
        values, vectors = np.linalg.eigh(-hessian)
        if values[0] <= 1e-12 * max(values[-1], 1e-300):
            # flat or indefinite direction (boundary of the parameter space): trust the gradient test
            converged = float(np.max(np.abs(grad)) * (np.max(np.abs(phi)) + 1.0)) < 1e-8
            break
        step = vectors @ ((vectors.T @ grad) / values)
        decrement = float(grad @ step) / 2.0
        if decrement < 1e-10:
            converged = True
            break
        size = 1.0
        while size > 1e-8:
            candidate = phi + size * step
            new_value, new_grad = value_gradient(candidate)
            if new_value >= value - 1e-12 * abs(value):
                break
            size /= 2.0
        else:
            break
        phi, value, grad = candidate, new_value, new_grad
        n_iter += 1
        hessian = _numerical_hessian(phi, gradient, 1e-3)
    # Psi = L L' is invariant to the sign of each column of L: report the factor with a non-negative diagonal
    phi = cholesky_parameters(psi_from_parameters(phi, k))
    hessian = _numerical_hessian(phi, gradient, 1e-3) / np.outer(t, t)  # chain rule back to theta = t * phi
    return t * phi, value, hessian, converged, n_iter


# --------------------------------------------------------------------------- method of moments
@dataclass
class _MomentSystem:
    """The parts of the Jackson-White-Riley estimator that do not depend on the estimates.

    ``Q = sum_j W_j e_j e_j'`` (``e_j`` residuals of the fixed-effect fit, ``W_j = S_j^-1``)
    has expectation ``btr(B) + F(Psi)`` with ``F`` linear; ``system`` is ``F`` as a
    ``k^2 x k^2`` matrix acting on ``vec(Psi)``. Reused by the parametric bootstrap.
    """

    weights: np.ndarray  # (J, k, k) S_j^-1, in units where the median within variances are 1
    fixed_covariance: np.ndarray  # (dk, dk) (sum X_j' W_j X_j)^-1, in the same units
    system: np.ndarray  # (k^2, k^2)
    btr_b: np.ndarray  # (k, k)
    within_scale: np.ndarray  # (k,) median within-study variances, the scale of the eigenvalue floor


def _moment_system(S: np.ndarray, X: np.ndarray) -> _MomentSystem:
    """Build ``F`` and ``btr(B)`` of the matrix method of moments without any ``Jk x Jk`` matrix.

    With ``P_jc = X_j M^-1 X_c'`` (``M = sum_j X_j' W_j X_j``) the stacked expressions of
    Jackson, White & Riley (2013) reduce blockwise to

    * ``btr(B) = J I - sum_j W_j P_jj``,
    * ``F(Psi) = sum_j [W_j Psi - W_j Psi W_j P_jj - W_j P_jj W_j Psi + W_j X_j M^-1 N(Psi) M^-1 X_j']``
      with ``N(Psi) = sum_c X_c' W_c Psi W_c X_c``,

    so the cost is O(J k^5 + k^2 (kd)^3) instead of O((Jk)^3) with O(J) memory.
    """
    J, k = S.shape[:2]
    d = X.shape[1]
    # Work in units where the median within variances are 1 (estimates on scales 1e-8 and
    # 1e8 would otherwise make S_j^-1 and F too ill-conditioned to solve); _moment_psi
    # rescales the estimates the same way and Psi back.
    within_scale = np.median(np.diagonal(S, axis1=1, axis2=2), axis=0)
    u = np.sqrt(within_scale)
    S = S / np.outer(u, u)
    W = np.linalg.inv(S)
    W = (W + np.swapaxes(W, 1, 2)) / 2.0
    info = np.einsum("jab,jc,je->acbe", W, X, X).reshape(k * d, k * d)
    Minv = np.linalg.inv(info)
    Minv = (Minv + Minv.T) / 2.0
    P = _projection_blocks(X, Minv, k)  # (J, k, k), P_jj
    WP = W @ P
    btr_b = J * np.eye(k) - WP.sum(axis=0)
    # F is linear in Psi: evaluate it on the basis E_i = e_r e_s' (i = r k + s, row-major
    # ravel). Products with E_i pick a column and a row, (A E_i B)[a, d] = A[a, r] B[s, d],
    # which the einsums below write out directly (O(J k^4), not O(J k^6) through a dense basis).
    eye = np.eye(k)
    t1 = np.einsum("ar,sc->rsac", W.sum(axis=0), eye).reshape(k * k, k, k)
    t2 = np.einsum("jar,jsd->rsad", W, WP, optimize=True).reshape(k * k, k, k)
    t3 = np.einsum("ar,sc->rsac", (W @ P @ W).sum(axis=0), eye).reshape(k * k, k, k)
    WEW = np.einsum("jar,jsd->rsjad", W, W).reshape(k * k, J, k, k)
    N = np.einsum("ijab,jc,je->iacbe", WEW, X, X, optimize=True).reshape(k * k, k * d, k * d)
    R = Minv @ N @ Minv
    t4 = np.einsum("jab,ijbc->iac", W, _projection_blocks(X, R, k), optimize=True)
    F = t1 - t2 - t3 + t4
    system = F.reshape(k * k, k * k).T  # column i = vec(F(E_i))
    return _MomentSystem(W, Minv, system, btr_b, within_scale)


def _moment_psi(y: np.ndarray, X: np.ndarray, system: _MomentSystem) -> np.ndarray:
    """Solve ``F(Psi) = Q - btr(B)`` for Psi, symmetrise, floor negative eigenvalues (as mixmeta's checkPD).

    The system is in the units of :func:`_moment_system` (median within variances 1): the
    estimates are rescaled to them and the solution back, so the estimate is equivariant to
    the units of each of the k estimates.
    """
    k = y.shape[1]
    d = X.shape[1]
    unit = np.sqrt(system.within_scale)
    y = y / unit
    W = system.weights
    score = np.einsum("jab,jb,jc->ac", W, y, X).reshape(k * d)
    B = (system.fixed_covariance @ score).reshape(k, d).T
    e = y - X @ B
    Q = np.einsum("jab,jb,jc->ac", W, e, e)
    rhs = (Q - system.btr_b).reshape(k * k)
    try:
        solution = np.linalg.solve(system.system, rhs)
    except np.linalg.LinAlgError:
        solution = np.linalg.lstsq(system.system, rhs, rcond=None)[0]
    scaled = solution.reshape(k, k)
    scaled = (scaled + scaled.T) / 2.0
    # Floor negative eigenvalues at sqrt(eps) as mixmeta's checkPD, but in these units:
    # mixmeta's absolute floor is not invariant to the units of the estimates (with
    # coefficients of order 1e-4 it would exceed the real variances). Identical to mixmeta
    # when the median within variances are 1.
    values, vectors = np.linalg.eigh(scaled)
    if np.any(values < 0):
        values = np.where(values < 0, _NEGEIGEN, values)
        scaled = (vectors * values) @ vectors.T
        scaled = (scaled + scaled.T) / 2.0
    return scaled * np.outer(unit, unit)


# --------------------------------------------------------------------------- draws
def _mvn_rows(mean: np.ndarray, cov: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row from ``N(mean_j, cov_j)``; ``cov`` may be semi-definite.

    The square root is the symmetric one, ``Q sqrt(L) Q'``: unlike ``Q sqrt(L)`` it does not
    depend on which eigenvectors ``eigh`` returns for a repeated (or nearly repeated)
    eigenvalue, so the draw is a continuous function of ``cov`` (data that differ by rounding,
    e.g. in other units, give draws that differ by rounding, not by an arbitrary rotation).
    """
    z = rng.standard_normal(mean.shape)
    return mean + np.einsum("...ab,...b->...a", _symmetric_root(cov), z)


def _symmetric_root(cov: np.ndarray) -> np.ndarray:
    """The symmetric square root ``Q sqrt(L) Q'`` of a (stack of) semi-definite matrices."""
    values, vectors = np.linalg.eigh(cov)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))[..., None, :]) @ np.swapaxes(vectors, -1, -2)


def study_posterior(
    estimates: np.ndarray,
    within_covariances: np.ndarray,
    mean: np.ndarray,
    psi: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior of each study's true effects given the population distribution (shrinkage).

    For ``theta_j ~ N(mu_j, Psi)`` and ``theta_hat_j | theta_j ~ N(theta_j, S_j)``:

    .. math::

        V_j = (\\Psi^{-1} + S_j^{-1})^{-1} = \\Psi - \\Psi(\\Psi + S_j)^{-1}\\Psi, \\qquad
        m_j = V_j(\\Psi^{-1}\\mu_j + S_j^{-1}\\hat\\theta_j)
            = \\mu_j + \\Psi(\\Psi + S_j)^{-1}(\\hat\\theta_j - \\mu_j).

    The right-hand forms are used: they need only ``Psi + S_j`` to be invertible, so a
    singular ``Psi`` (boundary estimate: no shrinkage freedom in some direction) or a
    singular ``S_j`` (an exactly known effect) are handled. This is micemd's per-cluster
    draw (R_METHODS.md §3.9) without its ``ginv`` calls. Vectorised over studies.

    Parameters
    ----------
    estimates : array of shape (J, k) or (J,)
        Study estimates ``theta_hat_j``.
    within_covariances : array of shape (J, k, k) or (J,)
        Their covariances ``S_j`` (variances when univariate).
    mean : array of shape (k,) or (J, k)
        Population means ``mu_j`` (``B' x_j``; the same for all studies when intercept-only).
    psi : array of shape (k, k)
        Between-study covariance.

    Returns
    -------
    posterior_mean : ndarray of shape (J, k)
    posterior_covariance : ndarray of shape (J, k, k)

    Examples
    --------
    >>> import numpy as np
    >>> m, v = study_posterior(np.array([1.0, 3.0]), np.array([1.0, 1.0]), np.array([2.0]), np.array([[1.0]]))
    >>> m.ravel().tolist(), v.ravel().tolist()
    ([1.5, 2.5], [0.5, 0.5])
    """
    y = np.asarray(estimates, dtype=float)
    if y.ndim == 1:
        y = y[:, None]
    J, k = y.shape
    S = np.asarray(within_covariances, dtype=float)
    if k == 1 and S.shape in ((J,), (J, 1)):
        S = S.reshape(J, 1, 1)
    if S.shape != (J, k, k):
        raise ValueError(f"within_covariances must have shape ({J}, {k}, {k}); got {S.shape}")
    psi = np.asarray(psi, dtype=float).reshape(k, k)
    mu = np.broadcast_to(np.asarray(mean, dtype=float).reshape(-1, k), (J, k))
    try:
        gain = np.linalg.solve(S + psi, np.broadcast_to(psi, (J, k, k)))  # (Psi + S_j)^-1 Psi
    except np.linalg.LinAlgError as exc:
        raise ValueError("Psi + S_j is singular for some study: the study posterior is undefined") from exc
    post_mean = mu + np.einsum("jba,jb->ja", gain, y - mu)  # Psi (Psi + S_j)^-1 = gain'
    post_cov = psi - psi @ gain
    post_cov = (post_cov + np.swapaxes(post_cov, 1, 2)) / 2.0
    return post_mean, post_cov


def draw_study_effects(
    posterior_mean: np.ndarray, posterior_covariance: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """One draw per study from ``N(m_j, V_j)`` (batched eigen square roots; semi-definite ``V_j`` allowed).

    Also draws population effects for systematically missing studies: pass ``mu`` and a
    broadcast ``Psi`` stack.

    Parameters
    ----------
    posterior_mean : ndarray of shape (J, k)
        The studies' posterior means m_j.
    posterior_covariance : ndarray of shape (J, k, k) or (k, k)
        Their posterior covariances V_j (one matrix is broadcast to every study).
    rng : numpy.random.Generator
        The random-number generator.

    Returns
    -------
    ndarray of shape (J, k)
    """
    mean = np.asarray(posterior_mean, dtype=float)
    cov = np.asarray(posterior_covariance, dtype=float)
    return _mvn_rows(mean, np.broadcast_to(cov, mean.shape + mean.shape[-1:]), rng)


# --------------------------------------------------------------------------- result
@dataclass
class MetaAnalysisResult:
    """A fitted random-effects meta-analysis (what :func:`meta_analysis` returns).

    Attributes
    ----------
    coefficients : ndarray of shape (d, k)
        Pooled coefficients ``B_hat`` (row = design column, column = outcome).
    coefficients_covariance : ndarray of shape (d*k, d*k)
        Covariance of ``vec(B_hat)`` (outcome-major, ``B.ravel(order="F")``), the GLS
        ``(sum_j X_j' (S_j + Psi_hat)^-1 X_j)^-1`` as ``mixmeta``'s ``vcov``.
    psi : ndarray of shape (k, k)
        Between-study covariance ``Psi_hat``.
    method : {"reml", "ml", "mm"}
    parameters : ndarray of shape (k(k+1)/2,) or None
        Column-major ``vech`` of the lower Cholesky factor of ``Psi_hat`` (``mvmeta``'s ``par``);
        None for "mm".
    parameters_covariance : ndarray or None
        ``(-H)^-1`` with ``H`` the Hessian of the (restricted) log-likelihood in ``parameters``,
        inverted on its negative-definite part (directions of zero or positive curvature,
        e.g. at the boundary, get variance 0, as micemd's ``draw_psi``). None for "mm".
    hessian : ndarray or None
        That Hessian (central differences of the exact gradient).
    log_likelihood : float
        Maximised (restricted) log-likelihood with mixmeta's constants; NaN for "mm".
    converged : bool
        Whether the optimiser met its criterion (always True for "mm").
    n_iterations : int
    n_studies, n_outcomes, n_covariates : int
    """

    coefficients: np.ndarray
    coefficients_covariance: np.ndarray
    psi: np.ndarray
    method: str
    parameters: np.ndarray | None
    parameters_covariance: np.ndarray | None
    hessian: np.ndarray | None
    log_likelihood: float
    converged: bool
    n_iterations: int
    n_studies: int
    n_outcomes: int
    n_covariates: int
    _estimates: np.ndarray = field(repr=False)
    _within: np.ndarray = field(repr=False)
    _design: np.ndarray = field(repr=False)
    _moments: _MomentSystem | None = field(default=None, repr=False)

    @property
    def standard_errors(self) -> np.ndarray:
        """Standard errors of the coefficients, shape (d, k)."""
        return np.sqrt(np.diag(self.coefficients_covariance)).reshape(self.n_outcomes, self.n_covariates).T

    def fitted_means(self, design: np.ndarray | None = None) -> np.ndarray:
        """Population means ``B_hat' x_j`` (J, k) for the fitted studies or for a new ``design``.

        Parameters
        ----------
        design : ndarray of shape (J, d), default=None
            Study-level covariates of new studies; None for the fitted studies.

        Returns
        -------
        ndarray of shape (J, k)
        """
        X = self._design if design is None else np.atleast_2d(np.asarray(design, dtype=float))
        return X @ self.coefficients

    def study_posterior(
        self, psi: np.ndarray | None = None, coefficients: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:func:`study_posterior` of the fitted studies at ``(coefficients, psi)`` (default: the estimates).

        Parameters
        ----------
        psi : ndarray of shape (k, k), default=None
            Between-study covariance; default the estimate ``psi``.
        coefficients : ndarray of shape (d, k), default=None
            Pooled coefficients; default the estimate ``coefficients``.

        Returns
        -------
        posterior_mean : ndarray of shape (J, k)
        posterior_covariance : ndarray of shape (J, k, k)
        """
        B = self.coefficients if coefficients is None else np.asarray(coefficients, dtype=float)
        B = B.reshape(self.coefficients.shape)
        P = self.psi if psi is None else psi
        return study_posterior(self._estimates, self._within, self._design @ B, P)

    def draw_psi(self, rng: np.random.Generator, how: Literal["auto", "normal", "bootstrap"] = "auto") -> np.ndarray:
        """One draw of Psi from its approximate posterior.

        * ``how="normal"`` ("reml"/"ml" only; the default for them): ``theta* ~ N(theta_hat, (-H)^-1)``
          on the Cholesky parameters and ``Psi* = L* L*'`` (micemd's ``draw_psi``,
          R_METHODS.md §3.9). Normal on the Cholesky scale, so ``Psi*`` is always positive
          semi-definite. Unlike micemd, a draw far from ``Psi_hat`` is kept (micemd
          replaces it by ``Psi_hat`` with a warning, which truncates the posterior's tail).
          Caveat: near the boundary (a small eigenvalue of Psi) the likelihood is flat in
          ``L`` (it depends on ``L^2``), the curvature is small and this approximation
          overstates the spread in that direction, so draws of the small variance are
          inflated (several-fold when an eigenvalue is within about one standard error of 0).
        * ``how="bootstrap"`` (the only choice for "mm", available for all): parametric
          bootstrap. Simulate ``theta*_j ~ N(B_hat' x_j, S_j + Psi_hat)`` and re-estimate
          Psi by the fitted method. micemd draws nothing for "mm" (it returns ``Psi_hat``,
          so imputations ignore the uncertainty of the between-study covariance). The
          bootstrap draw has the sampling distribution of the estimator, including the
          part due to the within-study variances, and shares its boundary handling; for
          large J it approximates the posterior under a flat prior. With few studies it is
          centred on ``Psi_hat`` (not on the truth) like every plug-in draw, and a
          truncated estimate at the boundary is redrawn at or above it. Cost for "mm": the
          moment system does not depend on the estimates, so a draw is one O(J k^2)
          residual step plus a ``k^2 x k^2`` solve. For "reml"/"ml" a draw is one
          warm-started likelihood fit (milliseconds for tens of studies).

        Parameters
        ----------
        rng : numpy.random.Generator
            The random-number generator.
        how : {"auto", "normal", "bootstrap"}, default="auto"
            "auto" is "bootstrap" for a moment estimate ("mm") and "normal" otherwise.

        Returns
        -------
        ndarray of shape (k, k)
        """
        k = self.n_outcomes
        if how == "auto":
            how = "bootstrap" if self.method == "mm" else "normal"
        if how not in ("normal", "bootstrap"):
            raise ValueError(f"how must be 'auto', 'normal' or 'bootstrap'; got {how!r}")
        if how == "bootstrap":
            mean = self._design @ self.coefficients
            y_star = _mvn_rows(mean, self._within + self.psi, rng)
            if self.method == "mm":
                return _moment_psi(y_star, self._design, self._moments)
            ridge = 0.01 * np.median(np.diagonal(self._within, axis1=1, axis2=2), axis=0)
            theta = _maximise(
                y_star, self._within, self._design, self.method == "reml", self.psi + np.diag(ridge), 200
            )[0]
            return psi_from_parameters(theta, k)
        if self.method == "mm":
            raise ValueError("a moment estimate has no likelihood Hessian: use how='bootstrap' (or 'auto')")
        z = rng.standard_normal(self.parameters.size)
        theta = self.parameters + _symmetric_root(self.parameters_covariance) @ z
        return psi_from_parameters(theta, k)

    def draw(
        self,
        rng: np.random.Generator,
        conditional: bool = True,
        how: Literal["auto", "normal", "bootstrap"] = "auto",
    ) -> tuple[np.ndarray, np.ndarray]:
        """One draw ``(B*, Psi*)`` from the approximate posterior.

        ``Psi*`` comes from :meth:`draw_psi` (``how`` is passed on). With ``conditional=True`` (default),
        ``vec(B*) ~ N(B_hat(Psi*), V(Psi*))``, the GLS estimate and its covariance given
        ``Psi*``: the exact conditional posterior of B under a flat prior, which carries
        the uncertainty of Psi into B. With ``conditional=False``,
        ``vec(B*) ~ N(vec(B_hat), coefficients_covariance)`` independently of ``Psi*``
        (micemd's draw, R_METHODS.md §3.9). Both coincide when ``Psi* = Psi_hat``.

        Parameters
        ----------
        rng : numpy.random.Generator
            The random-number generator.
        conditional : bool, default=True
            Draw B given the drawn Psi (True) or independently of it (False, micemd).
        how : {"auto", "normal", "bootstrap"}, default="auto"
            How Psi is drawn (:meth:`draw_psi`).

        Returns
        -------
        coefficients : ndarray of shape (d, k)
        psi : ndarray of shape (k, k)
        """
        psi_star = self.draw_psi(rng, how)
        if conditional:
            fit = _gls(self._estimates, self._within, self._design, psi_star)
            center, cov = fit.coefficients.ravel(order="F"), fit.covariance
        else:
            center, cov = self.coefficients.ravel(order="F"), self.coefficients_covariance
        vec = _mvn_rows(center, cov, rng)
        return vec.reshape(self.n_outcomes, self.n_covariates).T, psi_star


# --------------------------------------------------------------------------- entry point
def meta_analysis(
    estimates: np.ndarray,
    within_covariances: np.ndarray,
    design: np.ndarray | None = None,
    method: Literal["reml", "ml", "mm"] = "reml",
    max_iter: int = 200,
    start: np.ndarray | None = None,
) -> MetaAnalysisResult:
    """Random-effects meta-analysis or meta-regression, univariate or multivariate.

    Model: ``theta_hat_j ~ N_k(B' x_j, S_j + Psi)``, ``j = 1..J``, ``S_j`` known,
    ``Psi`` unstructured positive semi-definite. Given Psi, B is the GLS estimate
    ``vec(B_hat) = (sum_j X_j' W_j X_j)^-1 sum_j X_j' W_j theta_hat_j`` with
    ``X_j = I_k (x) x_j'`` and ``W_j = (S_j + Psi)^-1``. Psi is estimated by

    * ``"reml"``: maximising the restricted likelihood
      ``-1/2 sum_j log|Sigma_j| - 1/2 sum_j r_j' W_j r_j - 1/2 log|sum_j X_j' W_j X_j|``
      over ``Psi = L L'`` (``L`` lower triangular, ``mvmeta``'s parametrisation);
    * ``"ml"``: the same without the last term;
    * ``"mm"``: the matrix method of moments of Jackson, White & Riley (2013), which is
      DerSimonian & Laird's estimator when ``k = 1``; negative eigenvalues of the
      solution are set to ``sqrt(machine eps)`` as ``mixmeta``, but after rescaling Psi by
      the median within-study standard deviations (``D^-1/2 Psi D^-1/2``), so that the
      floor does not depend on the units (mixmeta's floor is absolute; both agree when
      the within variances are of order 1, and away from the boundary).

    Maximisation: BFGS on the exact gradient from the moment estimate (plus a small ridge
    so that no parameter starts at the saddle ``L = 0``), then Newton steps on a
    central-difference Hessian of that gradient, so the result is the maximum to about
    1e-10 in log-likelihood (``mixmeta`` stops BFGS at a relative change of 1.5e-8).
    Everything is vectorised over studies (batched Cholesky on the ``(J, k, k)`` stack).

    Parameters
    ----------
    estimates : array of shape (J, k), or (J,) when univariate
        Study estimates ``theta_hat_j``.
    within_covariances : array of shape (J, k, k), or (J,) variances when univariate
        Within-study covariances ``S_j``; each must be symmetric positive definite (a
        study with a singular ``S_j`` raises ValueError naming it: drop it first).
    design : array of shape (J, d), default None
        Study-level design including its intercept column; None is intercept-only.
        Needs ``J > d`` and full column rank.
    method : {"reml", "ml", "mm"}, default "reml"
    max_iter : int, default 200
        Iteration limit of BFGS (the Newton polish adds at most 50 steps).
    start : array of shape (k, k), default None
        Starting Psi for "reml"/"ml" (a warm start, e.g. the previous Gibbs iteration's
        estimate); None starts from the moment estimate plus a ridge. A start at or near
        a singular Psi is moved off the boundary by the same ridge. Ignored by "mm".

    Returns
    -------
    MetaAnalysisResult
        With ``coefficients``, ``coefficients_covariance``, ``psi``, ``parameters`` and
        ``parameters_covariance`` (for drawing Psi), ``converged`` and the ``draw`` /
        ``draw_psi`` / ``study_posterior`` methods.

    Raises
    ------
    ValueError
        On shapes that do not match, non-finite values, a non-symmetric or singular
        ``S_j`` (naming the studies), ``J <= d`` (e.g. a single study), a rank-deficient
        design or an unknown method.

    Warns
    -----
    ConvergenceWarning
        When the (restricted) likelihood maximisation does not meet its criterion;
        ``result.converged`` is then False. Estimates at the boundary (Psi singular, e.g.
        ``tau^2 = 0``) are legitimate maxima, not failures.

    Notes
    -----
    Degenerate cases. One study (or as many studies as design columns) leaves nothing
    to estimate Psi from and raises. When Psi is estimated at the boundary, the
    Cholesky parameters of the null directions are 0, the Hessian has (near) zero
    curvature there and ``parameters_covariance`` gives them variance 0 only if the
    curvature is not negative; draws then stay on the boundary in those directions.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array([0.1, 0.5, 0.9, 0.3])
    >>> s2 = np.array([0.04, 0.05, 0.03, 0.06])
    >>> fit = meta_analysis(y, s2, method="mm")
    >>> round(float(fit.psi[0, 0]), 4), round(float(fit.coefficients[0, 0]), 4)
    (0.1006, 0.4628)
    >>> beta, psi = fit.draw(np.random.default_rng(0))
    >>> beta.shape, psi.shape
    ((1, 1), (1, 1))
    """
    if method not in ("reml", "ml", "mm"):
        raise ValueError(f"method must be 'reml', 'ml' or 'mm'; got {method!r}")
    y, S, X = _as_inputs(estimates, within_covariances, design)
    J, k = y.shape
    d = X.shape[1]
    moments = _moment_system(S, X)
    psi_mm = _moment_psi(y, X, moments)

    def result(psi, **fitted):
        fit = _gls(y, S, X, psi)
        return MetaAnalysisResult(
            coefficients=fit.coefficients,
            coefficients_covariance=fit.covariance,
            psi=psi,
            method=method,
            n_studies=J,
            n_outcomes=k,
            n_covariates=d,
            _estimates=y,
            _within=S,
            _design=X,
            _moments=moments,
            **fitted,
        )

    if method == "mm":
        return result(
            psi_mm,
            parameters=None,
            parameters_covariance=None,
            hessian=None,
            log_likelihood=float("nan"),
            converged=True,
            n_iterations=0,
        )
    # Start away from the saddle point L = 0 (where the gradient in L vanishes whatever the data):
    # add a ridge of 5% of the median within variance (1% to a warm start).
    median_within = np.median(np.diagonal(S, axis1=1, axis2=2), axis=0)
    if start is None:
        psi_start = psi_mm + np.diag(0.05 * median_within)
    else:
        psi_start = np.asarray(start, dtype=float)
        if psi_start.shape != (k, k) or not np.all(np.isfinite(psi_start)):
            raise ValueError(f"start must be a finite ({k}, {k}) matrix; got shape {psi_start.shape}")
        values, vectors = np.linalg.eigh((psi_start + psi_start.T) / 2.0)
        psi_start = (vectors * np.clip(values, 0.0, None)) @ vectors.T + np.diag(0.01 * median_within)
    theta, value, hessian, converged, n_iter = _maximise(y, S, X, method == "reml", psi_start, max_iter)
    psi = psi_from_parameters(theta, k)
    values, vectors = np.linalg.eigh(-hessian)
    keep = values > 1e-10 * max(values.max(), 1e-300)
    inv_values = np.where(keep, 1.0 / np.where(keep, values, 1.0), 0.0)
    param_cov = (vectors * inv_values) @ vectors.T
    if not converged:
        warnings.warn(
            f"random-effects meta-analysis ({method}, J = {J} studies, k = {k}) did not converge in "
            f"{n_iter} iterations; check result.converged and the estimates",
            ConvergenceWarning,
            stacklevel=2,
        )
    return result(
        psi,
        parameters=theta,
        parameters_covariance=(param_cov + param_cov.T) / 2.0,
        hessian=hessian,
        log_likelihood=value,
        converged=converged,
        n_iterations=n_iter,
    )
