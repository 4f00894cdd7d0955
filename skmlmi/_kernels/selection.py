"""Per-cluster maximum likelihood of the Heckman selection model, all clusters at once.

The log-likelihood of the selection model (normal outcome: Heckman 1979; binary outcome: the
bivariate probit with sample selection) in every cluster, its analytic gradient and Hessian,
and a batched Newton that maximises every cluster's likelihood together (per-cluster step
control). :class:`~skmlmi.conditional.heckman.HeckmanSelection` meta-analyses the per-cluster
estimates and draws from them; this module is its numerics and knows nothing about draws,
DataFrames or the imputation loop.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from .clusters import SortedClusters
from .distributions import bivariate_normal_cdf, mills_ratio

__all__ = ["SelectionFit", "SelectionLayout", "fit_selection_by_cluster"]

_LOG_SQRT_2PI = 0.5 * float(np.log(2.0 * np.pi))
#: Prior standard deviation of every regression coefficient, in units of standardised
#: predictors (and outcome): weak enough to be negligible where the data inform a
#: coefficient, strong enough to keep it finite where they do not (separation, a predictor
#: constant within one cluster).
_PRIOR_SD = 10.0
#: |atanh rho| beyond this (|rho| > 0.9993) is the boundary of the likelihood, not an estimate.
_ATANH_RHO_LIMIT = 4.0
#: A standard error of atanh rho above this means a flat likelihood in rho: its 95% interval
#: spans tanh(+-3.9) = +-0.999, so the cluster says nothing about rho.
_ATANH_RHO_MAX_SE = 2.0
_MAX_NEWTON = 60


# --------------------------------------------------------------------------- per-cluster likelihood
class SelectionLayout:
    """Where each parameter block sits in the per-cluster parameter vector.

    ``theta = [gamma (pw), beta (pv), log sigma (normal outcome only), atanh rho]``;
    ``gamma`` and ``beta`` include the intercepts (first entries).
    """

    def __init__(self, selection: np.ndarray, outcome_columns: np.ndarray, binary: bool):
        self.selection = selection
        self.outcome = outcome_columns
        self.binary = binary
        self.pw = len(selection) + 1
        self.pv = len(outcome_columns) + 1
        self.n_coef = self.pw + self.pv
        self.size = self.n_coef + (1 if binary else 2)
        self.rho = self.size - 1
        self.log_sigma = None if binary else self.n_coef
        blocks = {"gamma": np.arange(self.pw), "beta": np.arange(self.pw, self.n_coef)}
        if not binary:
            blocks["log_sigma"] = np.array([self.n_coef])
        blocks["atanh_rho"] = np.array([self.rho])
        self.blocks = blocks

    def designs(self, Xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ones = np.ones((Xs.shape[0], 1))
        return np.hstack([ones, Xs[:, self.selection]]), np.hstack([ones, Xs[:, self.outcome]])


class _Clusters:
    """The rows of a selection model sorted by cluster, so per-cluster sums are one ``np.add.reduceat``."""

    def __init__(self, W, V, y, s, codes, n_groups, clusters: SortedClusters | None = None):
        self.clusters = SortedClusters(codes, n_groups) if clusters is None else clusters
        order = self.clusters.order
        self.W, self.V, self.y, self.s = W[order], V[order], y[order], s[order]
        self.g = self.clusters.codes
        self.starts = self.clusters.starts
        self.n_groups = n_groups

    def sums(self, values: np.ndarray) -> np.ndarray:
        return self.clusters.sums(values)

    def subset(self, clusters: np.ndarray) -> _Clusters:
        """The rows of the clusters in the boolean mask ``clusters`` (still sorted), recoded 0..G'-1."""
        sub, rows = self.clusters.subset(clusters)
        return _Clusters(self.W[rows], self.V[rows], self.y[rows], self.s[rows], sub.codes, sub.n_groups, sub)


def _loglik(theta: np.ndarray, data: _Clusters, layout: SelectionLayout, gradient: bool = True):
    """Per-cluster log-likelihood (G,) and its analytic gradient (G, P) at parameters theta (G, P).

    Normal outcome, with ``eta_s = w'gamma``, ``r = (y - v'beta) / sigma``,
    ``A = cosh(a) eta_s + sinh(a) r`` (a = atanh rho, so ``A = (eta_s + rho r) / sqrt(1 - rho^2)``):

    * ``s = 0``: ``log Phi(-eta_s)``;
    * ``s = 1``: ``log phi(r) - log sigma + log Phi(A)``, whose derivatives with
      ``lambda = phi(A) / Phi(A)`` are ``lambda cosh(a) w`` (gamma),
      ``(r - lambda sinh(a)) v / sigma`` (beta), ``r^2 - 1 - lambda r sinh(a)`` (log sigma) and
      ``lambda (sinh(a) eta_s + cosh(a) r)`` (a).

    Binary outcome (bivariate probit with selection), ``q = 2y - 1``, ``eta_o = v'beta``:
    ``s = 1``: ``log Phi2(eta_s, q eta_o; q rho)``, derivatives
    ``phi(eta_s) Phi((q eta_o - rho eta_s) / sqrt(1 - rho^2)) / Phi2`` (eta_s),
    ``q phi(eta_o) Phi((eta_s - rho eta_o) / sqrt(1 - rho^2)) / Phi2`` (eta_o),
    ``q phi2(eta_s, q eta_o; q rho) (1 - rho^2) / Phi2`` (a).
    """
    th = theta[data.g]
    pw, pv = layout.pw, layout.pv
    W, V, s = data.W, data.V, data.s
    eta_s = np.einsum("ij,ij->i", W, th[:, :pw])
    eta_o = np.einsum("ij,ij->i", V, th[:, pw : pw + pv])
    alpha = th[:, layout.rho]
    ll = np.where(s, 0.0, special.log_ndtr(-eta_s))
    grad = None
    if not layout.binary:
        tau = th[:, layout.log_sigma]
        inv_sigma = np.exp(-tau)
        r = (data.y - eta_o) * inv_sigma
        ch, sh = np.cosh(alpha), np.sinh(alpha)
        A = ch * eta_s + sh * r
        ll = np.where(s, -0.5 * r * r - tau - _LOG_SQRT_2PI + special.log_ndtr(A), ll)
        if gradient:
            lam1 = mills_ratio(A)
            lam0 = mills_ratio(-eta_s)
            d_eta_s = np.where(s, lam1 * ch, -lam0)
            d_eta_o = np.where(s, inv_sigma * (r - lam1 * sh), 0.0)
            d_tau = np.where(s, r * r - 1.0 - lam1 * r * sh, 0.0)
            d_alpha = np.where(s, lam1 * (sh * eta_s + ch * r), 0.0)
            grad = np.hstack([W * d_eta_s[:, None], V * d_eta_o[:, None], d_tau[:, None], d_alpha[:, None]])
    else:
        ll, d_eta_s, d_eta_o, d_alpha = _binary_rows(eta_s, eta_o, alpha, data.y, s, gradient)
        if gradient:
            grad = np.hstack([W * d_eta_s[:, None], V * d_eta_o[:, None], d_alpha[:, None]])
    value = data.sums(ll)
    # weak normal prior on the coefficients (see _PRIOR_SD)
    coef = theta[:, : layout.n_coef]
    value = value - 0.5 * np.sum(coef * coef, axis=1) / _PRIOR_SD**2
    if not gradient:
        return value, None
    grad = data.sums(grad)
    grad[:, : layout.n_coef] -= coef / _PRIOR_SD**2
    return value, grad


def _binary_rows(eta_s, eta_o, alpha, y, s, gradient=True):
    """Row log-likelihoods of the bivariate probit with selection and their derivatives in (eta_s, eta_o, a)."""
    rho = np.tanh(alpha)
    q = 2.0 * y - 1.0
    b = q * eta_o
    qr = q * rho
    p2 = np.maximum(bivariate_normal_cdf(eta_s, b, qr), 1e-300)
    ll = np.where(s, np.log(p2), special.log_ndtr(-eta_s))
    if not gradient:
        return ll, None, None, None
    root = np.sqrt(1.0 - rho * rho)
    phi_s = np.exp(-0.5 * eta_s**2 - _LOG_SQRT_2PI)
    phi_b = np.exp(-0.5 * b**2 - _LOG_SQRT_2PI)
    d_a = phi_s * special.ndtr((b - qr * eta_s) / root) / p2
    d_b = phi_b * special.ndtr((eta_s - qr * b) / root) / p2
    dens = np.exp(-(eta_s**2 - 2 * qr * eta_s * b + b**2) / (2 * root**2)) / (2 * np.pi * root)
    d_eta_s = np.where(s, d_a, -mills_ratio(-eta_s))
    d_eta_o = np.where(s, q * d_b, 0.0)
    d_alpha = np.where(s, q * dens / p2 * root**2, 0.0)
    return ll, d_eta_s, d_eta_o, d_alpha


def _hessian_binary(theta: np.ndarray, data: _Clusters, layout: SelectionLayout) -> np.ndarray:
    """Per-cluster Hessians of the bivariate probit with selection, by the chain rule.

    A row's log-likelihood depends on the parameters only through ``(eta_s, eta_o, a)``
    with Jacobian ``blockdiag(w, v, 1)``. Its 3 x 3 Hessian in those indices comes from
    central differences of the analytic row derivatives (6 evaluations, error O(h^2)),
    and the cluster Hessian is ``sum_i J_i' h_i J_i``: weighted per-cluster Gram matrices
    of ``w`` and ``v`` (reduceat over cluster-sorted rows).
    """
    th = theta[data.g]
    pw, pv = layout.pw, layout.pv
    W, V, s, y = data.W, data.V, data.s, data.y
    point = [np.einsum("ij,ij->i", W, th[:, :pw]), np.einsum("ij,ij->i", V, th[:, pw : pw + pv]), th[:, layout.rho]]
    h = np.cbrt(np.finfo(float).eps) * np.maximum(np.abs(np.stack(point)), 1.0)
    rows = np.empty((len(s), 3, 3))
    for k in range(3):  # the three row indices, not clusters
        up = [v + h[k] if i == k else v for i, v in enumerate(point)]
        down = [v - h[k] if i == k else v for i, v in enumerate(point)]
        d_up = np.stack(_binary_rows(*up, y, s)[1:], axis=1)
        d_down = np.stack(_binary_rows(*down, y, s)[1:], axis=1)
        rows[:, :, k] = (d_up - d_down) / (2.0 * h[k][:, None])
    rows = (rows + np.swapaxes(rows, 1, 2)) / 2.0
    P = layout.size
    H = np.empty((len(data.starts), P, P))
    gs, go, a = slice(0, pw), slice(pw, pw + pv), layout.rho
    H[:, gs, gs] = data.sums(np.einsum("ni,nj->nij", W * rows[:, 0, 0, None], W))
    H[:, gs, go] = data.sums(np.einsum("ni,nj->nij", W * rows[:, 0, 1, None], V))
    H[:, go, gs] = np.swapaxes(H[:, gs, go], 1, 2)
    H[:, go, go] = data.sums(np.einsum("ni,nj->nij", V * rows[:, 1, 1, None], V))
    H[:, gs, a] = H[:, a, gs] = data.sums(W * rows[:, 0, 2, None])
    H[:, go, a] = H[:, a, go] = data.sums(V * rows[:, 1, 2, None])
    H[:, a, a] = data.sums(rows[:, 2, 2])
    diag = np.arange(layout.n_coef)
    H[:, diag, diag] -= 1.0 / _PRIOR_SD**2
    return H


def _hessian(theta: np.ndarray, data: _Clusters, layout: SelectionLayout) -> np.ndarray:
    """Per-cluster Hessians (G, P, P): analytic (normal outcome) or by the chain rule (binary outcome)."""
    if not layout.binary:
        return _hessian_normal(theta, data, layout)
    return _hessian_binary(theta, data, layout)


def _hessian_numerical(theta: np.ndarray, data: _Clusters, layout: SelectionLayout) -> np.ndarray:
    """Central differences of the analytic gradient, all clusters at once (used to check the others).

    Clusters are independent, so moving parameter k of every cluster at once gives
    column k of all G Hessians in two gradient evaluations: 2P evaluations in all.
    """
    G, P = theta.shape
    H = np.empty((G, P, P))
    h = np.cbrt(np.finfo(float).eps) * np.maximum(np.abs(theta), 1.0)
    for k in range(P):  # loop over parameters, not clusters
        up, down = theta.copy(), theta.copy()
        up[:, k] += h[:, k]
        down[:, k] -= h[:, k]
        H[:, :, k] = (_loglik(up, data, layout)[1] - _loglik(down, data, layout)[1]) / (2.0 * h[:, k, None])
    return (H + np.swapaxes(H, 1, 2)) / 2.0


def _hessian_normal(theta: np.ndarray, data: _Clusters, layout: SelectionLayout) -> np.ndarray:
    """Analytic per-cluster Hessians (G, P, P) of the normal-outcome log-likelihood (with the prior).

    With ``lambda = phi(A) / Phi(A)`` and ``delta = lambda (A + lambda)`` (so that
    ``d lambda / dA = -delta``), a responder contributes
    ``-delta a a' + lambda A'' + d^2(-r^2 / 2 - log sigma)`` with ``a = dA / dtheta``
    ``= (cosh(a) w, -sinh(a) v / sigma, -sinh(a) r, sinh(a) eta_s + cosh(a) r)`` and the
    non-zero second derivatives ``A_{gamma a} = sinh(a) w``, ``A_{beta tau} = sinh(a) v / sigma``,
    ``A_{beta a} = -cosh(a) v / sigma``, ``A_{tau tau} = sinh(a) r``, ``A_{tau a} = -cosh(a) r``,
    ``A_{aa} = A``; ``-r^2 / 2`` adds ``-v v' / sigma^2`` (beta beta), ``-2 r v / sigma``
    (beta tau) and ``-2 r^2`` (tau tau). A non-responder contributes ``-delta_0 w w'`` with
    ``delta_0`` at ``-eta_s``. The rank-one parts are one per-cluster Gram matrix of
    ``sqrt(delta) a`` (a reduceat over cluster-sorted rows), the rest per-cluster sums.
    """
    th = theta[data.g]
    pw, pv, P = layout.pw, layout.pv, layout.size
    t_index, a_index = layout.log_sigma, layout.rho
    W, V, s = data.W, data.V, data.s
    eta_s = np.einsum("ij,ij->i", W, th[:, :pw])
    eta_o = np.einsum("ij,ij->i", V, th[:, pw : pw + pv])
    tau, alpha = th[:, t_index], th[:, a_index]
    inv_sigma = np.exp(-tau)
    r = np.where(s, (data.y - eta_o) * inv_sigma, 0.0)
    ch, sh = np.cosh(alpha), np.sinh(alpha)
    A = ch * eta_s + sh * r
    lam = mills_ratio(np.where(s, A, -eta_s))
    delta = lam * (np.where(s, A, -eta_s) + lam)
    a = np.empty((len(s), P))
    a[:, :pw] = W * np.where(s, ch, -1.0)[:, None]
    a[:, pw : pw + pv] = V * np.where(s, -sh * inv_sigma, 0.0)[:, None]
    a[:, t_index] = np.where(s, -sh * r, 0.0)
    a[:, a_index] = np.where(s, sh * eta_s + ch * r, 0.0)
    z = a * np.sqrt(delta)[:, None]
    H = -data.sums(np.einsum("ni,nj->nij", z, z))
    lam1 = np.where(s, lam, 0.0)
    Vs = V * s[:, None]
    H[:, pw : pw + pv, pw : pw + pv] -= data.sums(
        np.einsum("ni,nj->nij", Vs * inv_sigma[:, None], Vs * inv_sigma[:, None])
    )
    g_a = data.sums(W * (lam1 * sh)[:, None])
    b_t = data.sums(Vs * ((lam1 * sh - 2.0 * r) * inv_sigma)[:, None])
    b_a = data.sums(Vs * (-lam1 * ch * inv_sigma)[:, None])
    t_t = data.sums(np.where(s, lam1 * sh * r - 2.0 * r * r, 0.0))
    t_a = data.sums(-lam1 * ch * r)
    a_a = data.sums(lam1 * A * s)
    H[:, :pw, a_index] += g_a
    H[:, a_index, :pw] += g_a
    H[:, pw : pw + pv, t_index] += b_t
    H[:, t_index, pw : pw + pv] += b_t
    H[:, pw : pw + pv, a_index] += b_a
    H[:, a_index, pw : pw + pv] += b_a
    H[:, t_index, t_index] += t_t
    H[:, t_index, a_index] += t_a
    H[:, a_index, t_index] += t_a
    H[:, a_index, a_index] += a_a
    diag = np.arange(layout.n_coef)
    H[:, diag, diag] -= 1.0 / _PRIOR_SD**2
    return H


def _newton(theta: np.ndarray, data: _Clusters, layout: SelectionLayout, free: np.ndarray, tol: float = 1e-9):
    """Maximise every cluster's log-likelihood at once: batched Newton with per-cluster step control.

    Direction: ``(-H)^-1 g`` through the eigen-decomposition of the (G, P, P) stack, with
    non-positive curvature replaced by its absolute value (a safeguarded Newton step in a
    non-concave region); steps are capped at 2 standardised units and halved, cluster by
    cluster (vectorised), until the log-likelihood does not decrease. Parameters outside
    ``free`` stay fixed. A cluster has converged when the Newton decrement ``g'(-H)^-1 g / 2``
    (the expected remaining gain in log-likelihood) is below ``tol``. A cluster whose
    ``atanh rho`` runs past the boundary (``|atanh rho| > 5``) is stopped: its likelihood
    is flat in rho. Each iteration only evaluates the rows of clusters still iterating.

    Returns theta, log-likelihood, Hessian at theta and a converged mask (all per cluster).
    """
    G, P = theta.shape
    theta = theta.copy()
    fixed = ~free
    value, grad = _loglik(theta, data, layout)
    active = np.isfinite(value)
    converged = np.zeros(G, dtype=bool)
    for _ in range(_MAX_NEWTON):
        index = np.flatnonzero(active)
        if index.size == 0:
            break
        sub = data if index.size == G else data.subset(active)
        th = theta[index]
        g = np.where(fixed[None, :], 0.0, grad[index])
        negH = -_hessian(th, sub, layout)
        negH[:, fixed, :] = 0.0
        negH[:, :, fixed] = 0.0
        negH[:, fixed, fixed] = 1.0
        values, vectors = np.linalg.eigh(negH)
        floor = 1e-8 * np.maximum(np.abs(values).max(axis=1, keepdims=True), 1.0)
        values = np.maximum(np.abs(values), floor)
        step = np.einsum("gab,gb->ga", vectors, np.einsum("gba,gb->ga", vectors, g) / values)
        decrement = 0.5 * np.einsum("ga,ga->g", g, step)
        bad = ~np.all(np.isfinite(step), axis=1)
        done = ~bad & (decrement < tol)
        converged[index[done]] = True
        moving = ~(done | bad)
        active[index[~moving]] = False
        if not moving.any():
            break
        step *= np.minimum(1.0, 2.0 / np.maximum(np.abs(step).max(axis=1), 1e-300))[:, None]
        t = np.ones(index.size)
        pending = moving.copy()
        current = value[index]
        for _ in range(30):  # step halving, all pending clusters at once
            candidate = th + (t * pending)[:, None] * step
            candidate[:, layout.rho] = np.clip(candidate[:, layout.rho], -6.0, 6.0)
            new_value, _ = _loglik(candidate, sub, layout, gradient=False)
            ok = pending & np.isfinite(new_value) & (new_value >= current - 1e-12 * (1.0 + np.abs(current)))
            th[ok] = candidate[ok]
            current[ok] = new_value[ok]
            pending &= ~ok
            if not pending.any():
                break
            t[pending] /= 2.0
        # no ascent along the Newton direction: at the optimum up to rounding if the decrement is tiny
        converged[index[pending & (decrement < 1e-6)]] = True
        boundary = free[layout.rho] & (np.abs(th[:, layout.rho]) > _ATANH_RHO_LIMIT + 1.0)
        active[index[pending | boundary]] = False
        theta[index] = th
        new_value, new_grad = _loglik(th, sub, layout)
        value[index], grad[index] = new_value, new_grad
    H = _hessian(theta, data, layout)
    return theta, value, H, converged


# --------------------------------------------------------------------------- fitting
class SelectionFit:
    """Per-cluster maximum-likelihood fits (standardised units)."""

    def __init__(self, theta, covariance, estimable, reasons, n_rows, n_missing):
        self.theta = theta  # (J, P), NaN rows where not fitted
        self.covariance = covariance  # (J, P, P)
        self.estimable = estimable  # (J,) bool
        self.reasons = reasons  # list of str ("" when estimable)
        self.n_rows = n_rows
        self.n_missing = n_missing


def _start(W, V, y, s, layout: SelectionLayout) -> np.ndarray:
    """Pooled start: probit intercept at the observed share, OLS for the outcome, rho = 0."""
    theta = np.zeros(layout.size)
    share = np.clip(s.mean(), 0.02, 0.98)
    theta[0] = special.ndtri(share)
    if s.any():
        Vo, yo = V[s], y[s]
        if layout.binary:
            theta[layout.pw] = special.ndtri(np.clip(yo.mean(), 0.02, 0.98))
        else:
            gram = Vo.T @ Vo + np.eye(layout.pv) / _PRIOR_SD**2
            beta = np.linalg.solve(gram, Vo.T @ yo)
            theta[layout.pw : layout.n_coef] = beta
            resid = yo - Vo @ beta
            theta[layout.log_sigma] = np.log(max(np.sqrt(np.mean(resid**2)), 1e-3))
    return theta


def fit_selection_by_cluster(W, V, y, s, codes, J, layout: SelectionLayout, warm, free=None) -> SelectionFit:
    """Fit the selection model in every cluster that has both observed and missing rows.

    With rho fixed (``free[rho]`` False: the MAR fallback) a cluster needs observed rows only.
    """
    free = np.ones(layout.size, dtype=bool) if free is None else free
    P = layout.size
    n_rows = np.bincount(codes, minlength=J)
    n_obs = np.bincount(codes, weights=s.astype(float), minlength=J).astype(int)
    n_missing = n_rows - n_obs
    reasons = [""] * J
    candidate = np.zeros(J, dtype=bool)
    for j in np.flatnonzero(n_obs == 0):  # message building only (one string per failed cluster)
        reasons[j] = "no observed values"
    for j in np.flatnonzero((n_obs > 0) & (n_missing == 0)):
        reasons[j] = "no missing values (the selection equation is not estimable)"
    enough = (n_obs >= layout.pv + 3) & (n_missing >= 2)
    if not free[layout.rho]:
        enough = n_obs >= 1
    for j in np.flatnonzero((n_obs > 0) & (n_missing > 0) & ~enough):
        reasons[j] = f"too few observed ({n_obs[j]}) or missing ({n_missing[j]}) values"
    candidate = enough
    theta = np.full((J, P), np.nan)
    covariance = np.full((J, P, P), np.nan)
    estimable = np.zeros(J, dtype=bool)
    fit_clusters = np.flatnonzero(candidate)
    if fit_clusters.size == 0:
        return SelectionFit(theta, covariance, estimable, reasons, n_rows, n_missing)
    compact = np.full(J, -1)
    compact[fit_clusters] = np.arange(fit_clusters.size)
    rows = candidate[codes]
    data = _Clusters(W[rows], V[rows], y[rows], s[rows], compact[codes[rows]], fit_clusters.size)
    start = np.tile(_start(W, V, y, s, layout), (fit_clusters.size, 1))
    if warm is not None and warm.shape == (J, P):
        previous = warm[fit_clusters]
        ok = np.all(np.isfinite(previous), axis=1)
        start[ok] = previous[ok]
    if not free[layout.rho]:
        start[:, layout.rho] = 0.0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        est, value, H, converged = _newton(start, data, layout, free)
    negH = -H
    negH[:, ~free, :] = 0.0
    negH[:, :, ~free] = 0.0
    eig = np.linalg.eigvalsh(negH[:, free][:, :, free]) if free.any() else np.ones((len(est), 1))
    positive = np.all(np.isfinite(eig), axis=1) & (eig[:, 0] > 1e-10 * np.maximum(eig[:, -1], 1e-300))
    cov = np.zeros_like(H)
    if positive.any():
        sub = np.linalg.inv(negH[positive][:, free][:, :, free])
        block = np.zeros((int(positive.sum()), P, P))
        block[:, free[:, None] & free[None, :]] = sub.reshape(len(sub), -1)
        cov[positive] = (block + np.swapaxes(block, 1, 2)) / 2.0
    alpha = est[:, layout.rho]
    se_alpha = np.sqrt(np.abs(cov[:, layout.rho, layout.rho]))
    ok = converged & positive & np.all(np.isfinite(est), axis=1)
    if free[layout.rho]:
        flat = ok & ((np.abs(alpha) > _ATANH_RHO_LIMIT) | (se_alpha > _ATANH_RHO_MAX_SE))
    else:
        flat = np.zeros_like(ok)
    for position, j in enumerate(fit_clusters):  # message building only
        if not converged[position] and free[layout.rho] and abs(alpha[position]) > _ATANH_RHO_LIMIT:
            reasons[j] = f"flat likelihood in rho (atanh rho ran to {alpha[position]:.2f})"
        elif not converged[position]:
            reasons[j] = "maximum likelihood did not converge"
        elif not positive[position]:
            reasons[j] = "the information matrix is singular"
        elif flat[position]:
            reasons[j] = (
                f"flat likelihood in rho (atanh rho = {alpha[position]:.2f}, standard error {se_alpha[position]:.2f})"
            )
    good = ok & ~flat
    theta[fit_clusters] = est
    covariance[fit_clusters] = cov
    estimable[fit_clusters[good]] = True
    return SelectionFit(theta, covariance, estimable, reasons, n_rows, n_missing)
