"""Heckman selection model for outcomes missing not at random, per cluster with meta-analysis.

When whether a value is observed depends on the value itself, every MAR model is biased.
The selection model (Heckman 1979) writes the response indicator ``s`` and the outcome
``y`` as two equations with correlated errors,

.. math::

    s_{ij} = 1\\{w_{ij}'\\gamma_j + u_{ij} > 0\\}, \\qquad
    y_{ij} = v_{ij}'\\beta_j + \\sigma_j \\varepsilon_{ij}, \\qquad
    (u_{ij}, \\varepsilon_{ij}) \\sim N_2\\!\\left(0, \\begin{pmatrix} 1 & \\rho_j \\\\ \\rho_j & 1
    \\end{pmatrix}\\right),

with ``y`` observed iff ``s = 1`` (for a binary outcome ``y = 1{v'beta + eps > 0}``: the
bivariate probit with sample selection). Following Munoz et al. (2023, micemd's
``2l.2stage.heckman``), the model is fitted by maximum likelihood in every cluster, the
cluster estimates of the four parameter blocks ``gamma``, ``beta``, ``log sigma`` and
``atanh rho`` are combined by random-effects meta-analyses
(:mod:`skmlmi.meta_analysis`), and every cluster's parameters are drawn from their
posterior given the drawn population distribution before imputing.

This module knows nothing about DataFrames or the chained-equations loop; it receives
numeric arrays, role codes (``-3`` selection equation only, ``-4`` outcome equation only,
``1``/``2`` both) and integer cluster codes.
"""

from __future__ import annotations

import warnings
from numbers import Integral

import numpy as np
from scipy import special
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions

from .._kernels import constant_within_clusters, find_redundant_columns, pmm_match
from ..meta_analysis import draw_study_effects, meta_analysis, study_posterior
from .base import BaseConditionalImputer, Draw

__all__ = ["HeckmanSelection", "bivariate_normal_cdf"]

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

# Gauss-Legendre rule of Genz's BVNU (20 points on [0, 2], as x = 1 -+ nodes)
_GL_NODES = np.array(
    [
        0.9931285991850949,
        0.9639719272779138,
        0.9122344282513259,
        0.8391169718222188,
        0.7463319064601508,
        0.6360536807265150,
        0.5108670019508271,
        0.3737060887154196,
        0.2277858511416451,
        0.07652652113349733,
    ]
)
_GL_WEIGHTS = np.array(
    [
        0.01761400713915212,
        0.04060142980038694,
        0.06267204833410906,
        0.08327674157670475,
        0.1019301198172404,
        0.1181945319615184,
        0.1316886384491766,
        0.1420961093183821,
        0.1491729864726037,
        0.1527533871307259,
    ]
)
_GL_X = np.concatenate([1.0 - _GL_NODES, 1.0 + _GL_NODES])
_GL_W = np.concatenate([_GL_WEIGHTS, _GL_WEIGHTS])


# --------------------------------------------------------------------------- normal helpers
def _ndtr(x):
    return special.ndtr(x)


def _mills(x: np.ndarray) -> np.ndarray:
    """phi(x) / Phi(x), stable in the lower tail (where it approaches -x)."""
    return np.exp(-0.5 * x * x - _LOG_SQRT_2PI - special.log_ndtr(x))


def bivariate_normal_cdf(a: np.ndarray, b: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """``P(X <= a, Y <= b)`` for a standard bivariate normal with correlation ``rho``, vectorised.

    Genz's (2004) BVNU algorithm (Drezner & Wesolowsky 1990, refined), with the 20-point
    Gauss-Legendre rule for every ``rho``: absolute error below 1e-15. For ``|rho| < 0.925``
    it integrates Plackett's identity over ``arcsin rho``; above, it integrates the
    remainder after the singular part of the density near ``|rho| = 1`` is taken out.

    Parameters
    ----------
    a, b : array_like
        Upper limits (broadcast together with ``rho``).
    rho : array_like
        Correlations in (-1, 1).

    Returns
    -------
    ndarray

    References
    ----------
    Genz, A. (2004). Numerical computation of rectangular bivariate and trivariate normal
    and t probabilities. Statistics and Computing 14, 251-260.

    Examples
    --------
    >>> float(bivariate_normal_cdf(0.0, 0.0, 0.5))  # 1/4 + arcsin(0.5) / (2 pi) = 1/3
    0.3333333333333333
    """
    a, b, rho = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (a, b, rho)))
    h, k, r = -a.ravel(), -b.ravel(), rho.ravel()
    out = np.empty(h.shape)
    hk = h * k
    small = np.abs(r) < 0.925
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        if small.any():
            hs = (h[small] ** 2 + k[small] ** 2) / 2.0
            asr = np.arcsin(r[small]) / 2.0
            sn = np.sin(asr[:, None] * _GL_X[None, :])
            bvn = np.exp((sn * hk[small, None] - hs[:, None]) / (1.0 - sn**2)) @ _GL_W
            out[small] = bvn * asr / (2.0 * np.pi) + _ndtr(-h[small]) * _ndtr(-k[small])
        big = ~small
        if big.any():
            hb, rb = h[big], r[big]
            kb = np.where(rb < 0, -k[big], k[big])
            hkb = np.where(rb < 0, -hk[big], hk[big])
            as_ = (1.0 - rb) * (1.0 + rb)
            aa = np.sqrt(as_)
            bs = (hb - kb) ** 2
            asr = -(bs / as_ + hkb) / 2.0
            c = (4.0 - hkb) / 8.0
            d = (12.0 - hkb) / 80.0
            bvn = np.where(asr > -100, aa * np.exp(asr) * (1 - c * (bs - as_) * (1 - d * bs) / 3 + c * d * as_**2), 0.0)
            bb = np.sqrt(bs)
            sp = np.sqrt(2.0 * np.pi) * _ndtr(-bb / aa)
            bvn = np.where(hkb > -100, bvn - np.exp(-hkb / 2.0) * sp * bb * (1 - c * bs * (1 - d * bs) / 3), bvn)
            half = aa / 2.0
            xs = (half[:, None] * _GL_X[None, :]) ** 2
            asr2 = -(bs[:, None] / xs + hkb[:, None]) / 2.0
            sp2 = 1.0 + c[:, None] * xs * (1.0 + 5.0 * d[:, None] * xs)
            rs = np.sqrt(1.0 - xs)
            ep = np.exp(-(hkb[:, None] / 2.0) * xs / (1.0 + rs) ** 2) / rs
            term = np.where(asr2 > -100, np.exp(asr2) * (sp2 - ep), 0.0)
            bvn = (half * (term @ _GL_W) - bvn) / (2.0 * np.pi)
            low = np.where(hb < 0, _ndtr(kb) - _ndtr(hb), _ndtr(-hb) - _ndtr(-kb))
            res = np.where(rb > 0, bvn + _ndtr(-np.maximum(hb, kb)), np.where(hb >= kb, -bvn, low - bvn))
            out[big] = res
    return np.clip(out, 0.0, 1.0).reshape(a.shape)


def _truncated_below(upper: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draws of N(0, 1) truncated to (-inf, upper], by inversion on the log scale.

    ``log Phi`` is accurate in the lower tail, and inverting ``log Phi(upper) + log U``
    with ``ndtri_exp`` keeps full precision even 30 sd below the mean.
    """
    u = rng.random(upper.shape)
    with np.errstate(divide="ignore"):
        draw = special.ndtri_exp(special.log_ndtr(upper) + np.log(u))
    return np.minimum(draw, upper)


# --------------------------------------------------------------------------- per-cluster likelihood
class _Layout:
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
    """Rows sorted by cluster so per-cluster sums are one ``np.add.reduceat``."""

    def __init__(self, W, V, y, s, codes, n_groups):
        order = np.argsort(codes, kind="stable")
        self.W, self.V, self.y, self.s = W[order], V[order], y[order], s[order]
        self.g = codes[order]
        counts = np.bincount(codes, minlength=n_groups)
        self.starts = np.r_[0, np.cumsum(counts)[:-1]]
        self.n_groups = n_groups

    def sums(self, values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(values, self.starts, axis=0)

    def subset(self, clusters: np.ndarray) -> _Clusters:
        """The rows of the clusters in the boolean mask ``clusters`` (still sorted), recoded 0..G'-1."""
        rows = clusters[self.g]
        out = object.__new__(_Clusters)
        out.W, out.V, out.y, out.s = self.W[rows], self.V[rows], self.y[rows], self.s[rows]
        compact = np.cumsum(clusters) - 1
        out.g = compact[self.g[rows]]
        counts = np.bincount(out.g, minlength=int(clusters.sum()))
        out.starts = np.r_[0, np.cumsum(counts)[:-1]]
        out.n_groups = int(clusters.sum())
        return out


def _loglik(theta: np.ndarray, data: _Clusters, layout: _Layout, gradient: bool = True):
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
            lam1 = _mills(A)
            lam0 = _mills(-eta_s)
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
    d_a = phi_s * _ndtr((b - qr * eta_s) / root) / p2
    d_b = phi_b * _ndtr((eta_s - qr * b) / root) / p2
    dens = np.exp(-(eta_s**2 - 2 * qr * eta_s * b + b**2) / (2 * root**2)) / (2 * np.pi * root)
    d_eta_s = np.where(s, d_a, -_mills(-eta_s))
    d_eta_o = np.where(s, q * d_b, 0.0)
    d_alpha = np.where(s, q * dens / p2 * root**2, 0.0)
    return ll, d_eta_s, d_eta_o, d_alpha


def _hessian_binary(theta: np.ndarray, data: _Clusters, layout: _Layout) -> np.ndarray:
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


def _hessian(theta: np.ndarray, data: _Clusters, layout: _Layout) -> np.ndarray:
    """Per-cluster Hessians (G, P, P): analytic (normal outcome) or by the chain rule (binary outcome)."""
    if not layout.binary:
        return _hessian_normal(theta, data, layout)
    return _hessian_binary(theta, data, layout)


def _hessian_numerical(theta: np.ndarray, data: _Clusters, layout: _Layout) -> np.ndarray:
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


def _hessian_normal(theta: np.ndarray, data: _Clusters, layout: _Layout) -> np.ndarray:
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
    lam = _mills(np.where(s, A, -eta_s))
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


def _newton(theta: np.ndarray, data: _Clusters, layout: _Layout, free: np.ndarray, tol: float = 1e-9):
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
class _Fit:
    """Per-cluster maximum-likelihood fits (standardised units)."""

    def __init__(self, theta, covariance, estimable, reasons, n_rows, n_missing):
        self.theta = theta  # (J, P), NaN rows where not fitted
        self.covariance = covariance  # (J, P, P)
        self.estimable = estimable  # (J,) bool
        self.reasons = reasons  # list of str ("" when estimable)
        self.n_rows = n_rows
        self.n_missing = n_missing


def _start(W, V, y, s, layout: _Layout) -> np.ndarray:
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


def _fit_clusters(W, V, y, s, codes, J, layout: _Layout, warm, free=None) -> _Fit:
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
        return _Fit(theta, covariance, estimable, reasons, n_rows, n_missing)
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
    return _Fit(theta, covariance, estimable, reasons, n_rows, n_missing)


# --------------------------------------------------------------------------- draw
class _HeckmanState:
    """Warm start: the last per-cluster estimates of the chain."""

    def __init__(self, n_columns, theta, psi=None):
        self.n_columns, self.theta = n_columns, theta
        self.psi = {} if psi is None else psi  # block -> fitted between-cluster covariance


class _HeckmanDraw(Draw):
    """Drawn cluster parameters of the selection model and the population distribution.

    Attributes
    ----------
    theta : ndarray (J, P)
        Drawn parameters of each training cluster (standardised units).
    population_mean, population_covariance : ndarray (P,), (P, P)
        Drawn population distribution, used for clusters unseen at fit.
    rho_hat, rho_se, rho : ndarray (J,)
        Per-cluster ML estimate of rho, the standard error of atanh(rho-hat) (NaN where
        not estimable) and the drawn rho.
    estimable : ndarray (J,) of bool
    """

    def __init__(
        self,
        layout,
        x_center,
        x_scale,
        y_center,
        y_scale,
        theta,
        population_mean,
        population_covariance,
        single_level,
        fit,
        name,
        cluster_labels,
        pmm,
        donors,
    ):
        self.layout = layout
        self.x_center, self.x_scale = x_center, x_scale
        self.y_center, self.y_scale = y_center, y_scale
        self.theta = theta
        self.population_mean = population_mean
        self.population_covariance = population_covariance
        self.single_level = single_level
        self.name = name
        self.cluster_labels = None if cluster_labels is None else list(cluster_labels)
        r = layout.rho
        self.rho_hat = np.tanh(fit.theta[:, r])
        self.rho_se = np.where(fit.estimable, np.sqrt(np.abs(fit.covariance[:, r, r])), np.nan)
        self.rho = np.tanh(theta[:, r])
        self.estimable = fit.estimable.copy()
        self.n_rows, self.n_missing = fit.n_rows.copy(), fit.n_missing.copy()
        self.reasons = list(fit.reasons)
        self.pmm = pmm
        self.donors = donors
        self.donor_prediction = None
        self.donor_values = None

    # parameters of each row
    def _row_parameters(self, groups, n, rng):
        J = self.theta.shape[0]
        if self.single_level:
            return np.broadcast_to(self.theta[0], (n, self.theta.shape[1]))
        if groups is None:
            raise ValueError(f"{self.name}: this draw is per cluster and needs the cluster codes of the rows.")
        groups = np.asarray(groups, dtype=np.intp)
        out = np.empty((n, self.theta.shape[1]))
        known = groups < J
        out[known] = self.theta[groups[known]]
        if not known.all():
            codes, inverse = np.unique(groups[~known], return_inverse=True)
            mean = np.broadcast_to(self.population_mean, (len(codes), len(self.population_mean)))
            out[~known] = draw_study_effects(mean, self.population_covariance, rng)[inverse]
        return out

    def _linear(self, X, th):
        Xs = (np.asarray(X, dtype=float) - self.x_center) / self.x_scale
        W, V = self.layout.designs(Xs)
        lay = self.layout
        eta_s = np.einsum("ij,ij->i", W, th[:, : lay.pw])
        eta_o = np.einsum("ij,ij->i", V, th[:, lay.pw : lay.n_coef])
        return eta_s, eta_o

    def sample(self, X, groups, rng):
        """Draws from the conditional distribution of y given non-selection (s = 0).

        The selection error is drawn below its threshold, ``u ~ N(0, 1)`` truncated to
        ``u <= -w'gamma``, then ``y = v'beta + sigma (rho u + sqrt(1 - rho^2) z)``,
        ``z ~ N(0, 1)`` (binary: ``y = 1{v'beta + rho u + sqrt(1 - rho^2) z > 0}``). This is the
        exact law of ``y | x, s = 0``; R's imputation adds the mean shift
        ``-sigma rho phi(eta_s) / Phi(-eta_s)`` to unconditional noise, whose variance is too large.
        """
        X = np.asarray(X, dtype=float)
        n = X.shape[0]
        th = self._row_parameters(groups, n, rng)
        eta_s, eta_o = self._linear(X, th)
        rho = np.tanh(th[:, self.layout.rho])
        if self.layout.binary:
            u = _truncated_below(-eta_s, rng)
            latent = eta_o + rho * u + np.sqrt(1.0 - rho**2) * rng.standard_normal(n)
            return (latent > 0).astype(float)
        sigma = np.exp(th[:, self.layout.log_sigma])
        if self.pmm:
            # match the recipients' E[y | x, s = 0] to the donors' E[y | x, s = 1]
            target = eta_o - sigma * rho * _mills(eta_s * -1.0)
            index = pmm_match(self.donor_prediction, target, self.donors, rng)
            return self.donor_values[index]
        u = _truncated_below(-eta_s, rng)
        y = eta_o + sigma * (rho * u + np.sqrt(1.0 - rho**2) * rng.standard_normal(n))
        return self.y_center + self.y_scale * y

    def cluster_table(self):
        """Per-cluster summary: rows, missing, estimable, rho-hat, its SE (atanh scale), drawn rho, reason."""
        import pandas as pd

        J = len(self.rho)
        labels = self.cluster_labels[:J] if self.cluster_labels is not None else list(range(J))
        return pd.DataFrame(
            {
                "cluster": labels,
                "n": self.n_rows,
                "n_missing": self.n_missing,
                "estimable": self.estimable,
                "rho_hat": np.where(self.estimable, self.rho_hat, np.nan),
                "atanh_rho_se": self.rho_se,
                "rho_draw": self.rho,
                "reason": self.reasons,
            }
        )


# --------------------------------------------------------------------------- the model
class HeckmanSelection(BaseConditionalImputer):
    """Heckman selection model for a target missing not at random, per cluster + meta-analysis.

    Model in cluster j (module docstring): probit selection equation for the response
    indicator ``s`` with predictors ``w`` (roles ``1``, ``2`` and ``-3``), outcome equation
    with predictors ``v`` (roles ``1``, ``2`` and ``-4``), errors ``(u, eps)`` standard
    bivariate normal with correlation ``rho_j``; normal outcome ``y = v'beta_j + sigma_j eps``
    or binary outcome ``y = 1{v'beta_j + eps > 0}`` (bivariate probit with selection).
    A predictor coded ``-3`` (the exclusion restriction: it moves selection but not the
    outcome) is what identifies ``rho`` beyond the normality assumption.

    Each visit:

    1. Predictors are standardised (and a normal outcome too, so the parameters of all
       clusters share units). In every cluster with observed and missing rows, the
       full-information likelihood in ``theta_j = (gamma_j, beta_j, log sigma_j, atanh rho_j)``
       is maximised by a batched Newton over all clusters at once (analytic gradient;
       Hessian by central differences of it, one gradient pair per parameter for all
       clusters; per-cluster step halving). Coefficients get a weak ``N(0, 10^2)`` prior
       (standardised units, so scale-equivariant: a column in other units gives the same
       imputations in those units), which keeps them finite under separation or a predictor
       constant within a cluster and is negligible otherwise. ``V_j`` = inverse of the
       negative Hessian.
    2. A cluster is *not estimable* (imputed from the population distribution, as a
       systematically missing cluster, and logged) when it has no observed or no missing
       values, fewer than ``p_outcome + 3`` observed or fewer than 2 missing values,
       Newton did not converge, the information matrix is singular, or the likelihood is
       flat in rho (``|atanh rho| > 4`` or its standard error above 2).
    3. Across estimable clusters, four random-effects meta-analyses (``meta_method``,
       falling back to "mm" if the likelihood fit fails, as micemd) of the blocks
       ``gamma``, ``beta``, ``log sigma`` and ``atanh rho`` (three blocks for a binary
       outcome): ``theta_hat_j,b ~ N(mu_b, V_j,bb + Psi_b)``. One draw ``(mu*, Psi*)`` of each.
    4. Cluster parameters: estimable clusters from their posterior given the drawn
       population ``N(mu*, Psi*)``, ``Psi* = blockdiag(Psi*_b)``, using the full
       within-cluster covariance ``V_j`` (micemd shrinks each block separately, which
       discards the strong within-cluster correlation of ``rho`` with ``gamma`` and
       ``beta``); other clusters, and at sample time unseen clusters, from ``N(mu*, Psi*)``.
    5. Imputations from the exact conditional law given non-selection (see
       :meth:`_HeckmanDraw.sample`), or, with ``pmm=True`` (normal outcome), the observed
       value of one of the ``donors`` donors whose ``E[y | x, s = 1]`` is closest to the
       recipient's ``E[y | x, s = 0] = v'beta - sigma rho phi(w'gamma) / Phi(-w'gamma)``,
       both at the drawn parameters (mice's matching type 2).

    Without clusters (groups None) the same likelihood is fitted once and
    ``theta* ~ N(theta_hat, V)``. With fewer than two estimable clusters, one model is fitted on
    the pooled data and used for every cluster (micemd's fallback), logged. When the pooled
    model is not estimable either (e.g. no missing rows), rho is fixed at 0 (MAR) and that is
    logged.

    Parameters
    ----------
    outcome : {"auto", "normal", "binary"}, default="auto"
        Outcome equation: normal (continuous or integer target) or probit (binary target);
        "auto" follows the target's kind.
    meta_method : {"reml", "ml", "mm"}, default="reml"
        Estimator of the between-cluster covariances (:func:`skmlmi.meta_analysis.meta_analysis`).
    pmm : bool, default=False
        Predictive mean matching on the conditional means (normal outcome only; ignored
        for a binary outcome).
    donors : int, default=5
        Donor pool size of the matching.

    Attributes
    ----------
    uses_groups_if_given = True: the engine passes the cluster codes when the cluster
    column is coded -2; without them the model is single-level.

    Notes
    -----
    Cost per visit: O(n P^2) per Newton iteration (P parameters per cluster; a few
    iterations from the previous visit's estimates), plus the meta-analyses (O(J k^3) per
    likelihood evaluation for a block of k parameters). Roles ``1`` and ``2`` are the same
    here: every coefficient varies by cluster. Columns constant within every cluster (for
    example cluster means from roles 3 and 4) cannot be estimated per cluster and are
    dropped (logged). The response indicator is ``observed`` within
    ``context.modelled_rows``: rows the engine ignores (``fit(..., ignore=...)``) take no
    part in either equation, as in every other model.

    References
    ----------
    Heckman, J. J. (1979). Sample selection bias as a specification error. Econometrica 47, 153-161.

    Munoz, J., Hufstedler, H., Gustafson, P., Bärnighausen, T., De Jong, V. M. T. and
    Debray, T. P. A. (2023). Dealing with missing data using the Heckman selection model:
    methods primer for epidemiologists. International Journal of Epidemiology 52, 5-13.

    Galimard, J.-E., Chevret, S., Curis, E. and Resche-Rigon, M. (2018). Heckman imputation
    models for binary or continuous MNAR outcomes and MAR predictors. BMC Medical Research
    Methodology 18, 90.

    Examples
    --------
    >>> import numpy as np
    >>> from skmlmi.conditional.heckman import HeckmanSelection
    >>> from skmlmi.datasets.heckman import make_heckman
    >>> data = make_heckman(n_clusters=6, cluster_size=150, random_state=0)
    >>> X = data[["x", "z"]].to_numpy(); y = data["y"].to_numpy()
    >>> observed = ~np.isnan(y)
    >>> model = HeckmanSelection()
    >>> draw, _ = model.draw(np.nan_to_num(y), observed, X, np.array([1, -3]),
    ...                      data["cluster"].to_numpy(), np.random.default_rng(0))
    >>> values = draw.sample(X[~observed], data["cluster"].to_numpy()[~observed], np.random.default_rng(1))
    >>> values.shape == ((~observed).sum(),), bool(values.mean() < y[observed].mean())
    (True, True)
    >>> table = draw.cluster_table()  # per-cluster rho estimates
    >>> table.columns.tolist()[:5]
    ['cluster', 'n', 'n_missing', 'estimable', 'rho_hat']
    """

    target_kinds = frozenset({"continuous", "integer", "binary"})
    r_names = {"2l.2stage.heckman": {}}
    accepted_roles = frozenset({1, 2, -3, -4})
    requires_groups = False
    supports_fixed_clusters = False
    handles_systematic = True
    uses_groups_if_given = True

    _parameter_constraints = {
        "outcome": [StrOptions({"auto", "normal", "binary"})],
        "meta_method": [StrOptions({"reml", "ml", "mm"})],
        "pmm": ["boolean"],
        "donors": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, outcome: str = "auto", meta_method: str = "reml", pmm: bool = False, donors: int = 5):
        self.outcome = outcome
        self.meta_method = meta_method
        self.pmm = pmm
        self.donors = donors

    # ----------------------------------------------------------------- columns
    def _usable_columns(self, X, observed, roles, groups, context):
        p = X.shape[1]
        keep = np.ones(p, dtype=bool)
        if p == 0:
            return keep
        rows = np.all(np.isfinite(X), axis=1)
        if context.modelled_rows is not None:
            rows &= context.modelled_rows
        checks = [
            (roles != -4, rows, "in the selection equation"),
            (roles != -3, rows & observed, "in the outcome equation (observed rows)"),
        ]
        for columns, use, where in checks:
            index = np.flatnonzero(columns)
            if index.size == 0:
                continue
            for i, reason in find_redundant_columns(X[use][:, index]).items():
                if keep[index[i]]:
                    context.log(
                        f"predictor {context.predictor_name(int(index[i]))!r} of {context.target!r} "
                        f"dropped: {reason} {where}"
                    )
                    keep[index[i]] = False
        if groups is not None and keep.any():
            g = groups[rows]
            constant = constant_within_clusters(X[rows], g, int(g.max()) + 1 if g.size else 0)
            for k in np.flatnonzero(keep & constant):
                context.log(
                    f"predictor {context.predictor_name(int(k))!r} of {context.target!r} dropped: constant "
                    "within clusters, so not estimable in per-cluster Heckman models"
                )
                keep[k] = False
        return keep

    # ----------------------------------------------------------------- draw
    def _draw(self, y, observed, X, roles, groups, rng, state, context):
        name = f"HeckmanSelection for {context.target!r}"
        binary = self._binary(context)
        if not np.any(roles == -3):
            message = (
                f"{name}: no exclusion restriction (no predictor coded -3); the selection correlation rho "
                "is identified by the functional form (bivariate normality) alone"
            )
            context.log(message)
            warnings.warn(message, UserWarning, stacklevel=3)
        rows = np.all(np.isfinite(X), axis=1)
        if context.modelled_rows is not None:
            rows &= context.modelled_rows  # ignored rows are neither responders nor non-responders
        s = observed & rows
        if not s.any():
            raise ValueError(f"{name}: no observed value to fit on.")
        if binary:
            codes = y[s]
            if np.any((codes != 0) & (codes != 1)):
                found = np.unique(codes)[:10].tolist()
                raise ValueError(f"{name}: a binary outcome must hold codes 0/1; found {found}.")
        # standardise predictors (all usable rows) and a normal outcome (observed rows)
        x_center = X[rows].mean(axis=0) if X.shape[1] else np.zeros(0)
        x_scale = X[rows].std(axis=0) if X.shape[1] else np.ones(0)
        x_scale = np.where(x_scale > 0, x_scale, 1.0)
        if binary:
            y_center, y_scale = 0.0, 1.0
        else:
            y_center = float(y[s].mean())
            y_scale = float(y[s].std()) or 1.0
        Xs = (X - x_center) / x_scale
        layout = _Layout(np.flatnonzero(roles != -4), np.flatnonzero(roles != -3), binary)
        W, V = layout.designs(Xs[rows])
        ys = (np.where(s, y, y_center)[rows] - y_center) / y_scale
        sr = s[rows]
        usable_state = isinstance(state, _HeckmanState) and state.n_columns == X.shape[1]
        warm = state.theta if usable_state else None
        new_state = _HeckmanState(X.shape[1], None, dict(state.psi) if usable_state else {})
        J = context.n_clusters if groups is not None else 1
        codes = groups[rows] if groups is not None else np.zeros(int(rows.sum()), dtype=np.intp)
        if groups is not None:
            J = max(J, int(groups.max()) + 1)

        fit = _fit_clusters(W, V, ys, sr, codes, J, layout, warm)
        if groups is None:
            theta, mean, cov, fit = self._single_level(W, V, ys, sr, layout, fit, rng, context, name)
        else:
            for j in np.flatnonzero(~fit.estimable):  # message building only
                context.log(
                    f"{name}: cluster {context.cluster_name(int(j))!r} not estimable ({fit.reasons[j]}); "
                    "imputed from the population distribution (treated as systematically missing)"
                )
            theta, mean, cov = self._multilevel(W, V, ys, sr, layout, fit, rng, context, name, new_state.psi)
        draw = _HeckmanDraw(
            layout,
            x_center,
            x_scale,
            y_center,
            y_scale,
            theta,
            mean,
            cov,
            groups is None,
            fit,
            name,
            context.cluster_labels,
            bool(self.pmm) and not binary,
            self.donors,
        )
        if draw.pmm:
            th = theta[codes[sr]] if groups is not None else np.broadcast_to(theta[0], (int(sr.sum()), layout.size))
            Wo, Vo = W[sr], V[sr]
            eta_s = np.einsum("ij,ij->i", Wo, th[:, : layout.pw])
            eta_o = np.einsum("ij,ij->i", Vo, th[:, layout.pw : layout.n_coef])
            sigma, rho = np.exp(th[:, layout.log_sigma]), np.tanh(th[:, layout.rho])
            draw.donor_prediction = eta_o + sigma * rho * _mills(eta_s)
            draw.donor_values = y[s].copy()
        new_state.theta = fit.theta
        return draw, new_state

    def _binary(self, context) -> bool:
        kind = context.kind
        if self.outcome == "auto":
            return kind == "binary"
        if self.outcome == "binary" and kind != "binary":
            raise ValueError(f"HeckmanSelection(outcome='binary') cannot impute {context.target!r}, a {kind} column.")
        if self.outcome == "normal" and kind == "binary":
            raise ValueError(
                f"HeckmanSelection(outcome='normal') cannot impute {context.target!r}, a binary column; "
                "use outcome='binary' (bivariate probit)."
            )
        return self.outcome == "binary"

    def _single_level(self, W, V, ys, sr, layout, fit, rng, context, name):
        """One model for all rows: theta* ~ N(theta_hat, V); rho fixed at 0 if not estimable."""
        if not fit.estimable[0]:
            context.log(f"{name}: selection model not estimable ({fit.reasons[0]}); rho fixed at 0 (MAR)")
            free = np.ones(layout.size, dtype=bool)
            free[layout.rho] = False
            fit_mar = _fit_clusters(W, V, ys, sr, np.zeros(len(ys), dtype=np.intp), 1, layout, None, free)
            if not fit_mar.estimable[0]:
                if not np.all(np.isfinite(fit_mar.theta[0])):
                    raise ValueError(f"{name}: the model could not be fitted ({fit_mar.reasons[0]}).")
                context.log(
                    f"{name}: the MAR fit did not converge ({fit_mar.reasons[0]}); its estimates are used "
                    "without parameter uncertainty"
                )
                fit_mar.covariance = np.nan_to_num(fit_mar.covariance) * 0.0
            fit_mar.reasons = fit.reasons
            fit_mar.estimable = np.zeros(1, dtype=bool)
            fit = fit_mar
        theta = draw_study_effects(fit.theta, fit.covariance, rng)
        return theta, theta[0], np.zeros((layout.size, layout.size)), fit

    def _multilevel(self, W, V, ys, sr, layout, fit, rng, context, name, psi_starts):
        """Meta-analyse the estimable clusters, draw the population and every cluster's parameters."""
        J, P = fit.theta.shape
        est = np.flatnonzero(fit.estimable)
        population = None
        if est.size >= 2:
            population = self._meta_draw(fit.theta[est], fit.covariance[est], layout, rng, context, name, psi_starts)
        if population is None:
            context.log(
                f"{name}: fewer than two clusters with an estimable selection model "
                f"({est.size} of {J}); one model fitted on the pooled data is used for every cluster"
            )
            codes = np.zeros(len(ys), dtype=np.intp)
            pooled = _fit_clusters(W, V, ys, sr, codes, 1, layout, None)
            pooled_theta, _, _, _ = self._single_level(W, V, ys, sr, layout, pooled, rng, context, name)
            theta = np.tile(pooled_theta[0], (J, 1))
            return theta, pooled_theta[0], np.zeros((P, P))
        mean, psi = population
        theta = np.empty((J, P))
        if est.size:
            post_mean, post_cov = study_posterior(fit.theta[est], fit.covariance[est], mean, psi)
            theta[est] = draw_study_effects(post_mean, post_cov, rng)
        others = np.flatnonzero(~fit.estimable)
        if others.size:
            theta[others] = draw_study_effects(np.tile(mean, (others.size, 1)), psi, rng)
        return theta, mean, psi

    def _meta_draw(self, estimates, covariances, layout, rng, context, name, psi_starts):
        """One draw of (mu*, blockdiag Psi*) from the block-wise meta-analyses; None on failure.

        ``psi_starts`` holds each block's estimate from the previous visit (warm start of the
        likelihood fit); it is updated in place.
        """
        P = layout.size
        mean = np.zeros(P)
        psi = np.zeros((P, P))
        n_clusters = estimates.shape[0]
        for block, index in layout.blocks.items():
            result = None
            first = self.meta_method
            if first != "mm" and n_clusters - 1 < index.size:
                # The (restricted) likelihood of J studies identifies a Psi of rank J - 1 at most: with
                # fewer clusters than block parameters the fit sits on the boundary with a flat Hessian
                # (slow, and its normal-approximation draw of Psi is meaningless); use moments.
                context.log(
                    f"{name}: {n_clusters} estimable clusters for the {index.size} parameters of {block}: "
                    f"moment meta-analysis ('mm') instead of {first!r}"
                )
                first = "mm"
            for method in dict.fromkeys((first, "mm")):
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("error", ConvergenceWarning)
                        start = psi_starts.get(block) if method != "mm" else None
                        if start is not None and start.shape != (index.size, index.size):
                            start = None
                        result = meta_analysis(
                            estimates[:, index], covariances[:, index][:, :, index], method=method, start=start
                        )
                    break
                except (ValueError, ConvergenceWarning, np.linalg.LinAlgError) as exc:
                    context.log(
                        f"{name}: meta-analysis of {block} ({method}) failed ({exc}); "
                        + ("trying 'mm'" if method != "mm" else "giving up")
                    )
            if result is None:
                return None
            psi_starts[block] = result.psi
            coefficients, block_psi = result.draw(rng)
            mean[index] = coefficients.ravel()
            psi[np.ix_(index, index)] = block_psi
        return mean, psi
