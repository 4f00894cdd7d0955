"""The validity matrix of the default imputation models, shared by validate_defaults.py and its reduced CI test.

Three parts:

* fast analysis fitters (random-intercept linear mixed model by REML profiled over the variance
  ratio, random-intercept logistic mixed model by the Laplace approximation, OLS and logistic
  regression), working on per-cluster sums so that the 80 analysis fits of a replication cost
  less than its imputation; ``tests/validation/test_validate_defaults.py`` checks them against
  :class:`skmlmi.analysis.LinearMixedModel` and :class:`skmlmi.analysis.LogisticMixedModel`;
* the known-truth simulation of each kind of incomplete variable (:func:`simulate`) and its
  MAR amputation (:func:`ampute`); the data-generating models are written out in
  ``benchmarks/validate_defaults.py``;
* one replication (:func:`replication`: complete-data analysis, imputation with the defaults
  and single-level imputation, Rubin pooling) and the summary over replications
  (:func:`summarise`) with the acceptance criteria.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, special, stats
from threadpoolctl import threadpool_limits

from skmlmi import MultilevelIterativeImputer
from skmlmi._kernels import logistic_irls as _logistic_irls  # the package's IRLS: the GLM start and the tau = 0 fit
from skmlmi.pooling import pool

KINDS = (
    "continuous",
    "whole-number",
    "binary",
    "unordered",
    "ordered",
    "cluster continuous",
    "cluster binary",
    "systematic continuous",
    "systematic binary",
)
METHODS = ("defaults", "single-level")
CLUSTER_LEVEL = ("cluster continuous", "cluster binary")
SYSTEMATIC = ("systematic continuous", "systematic binary")
NUMERIC = ("continuous", "whole-number", "cluster continuous", "systematic continuous")
#: Replications of a kind relative to the discrete ones: the continuous-type and cluster-level kinds cost
#: a fifth as much per replication, and their intercepts (0.1 SE bounds) and 30-cluster regressions need
#: 300-700 replications for an MC SE of a third of the bound (measured in a 30-replication run).
REPS_FACTOR = {"cluster continuous": 4, "cluster binary": 4, "systematic continuous": 3}
#: Share of x made missing (rows, or clusters for the cluster-level and systematic kinds).
MISSING_SHARE = 0.3
#: Log-odds of missingness per SD of y (rows) or of the cluster mean of y (clusters).
MAR_SLOPE = 1.0
#: Cluster sizes are drawn uniformly from these (inclusive).
SIZE_RANGE = (5, 40)
#: ICC of the complete covariate z.
ICC_Z = 0.2
LOGISTIC_VARIANCE = np.pi**2 / 3.0
#: Acceptance bounds: relative coefficient bias, absolute ICC bias, relative tau^2 bias, coverage level.
BIAS_SHARE, SMALL_TRUTH_SE, ICC_BOUND, TAU2_SHARE = 0.05, 0.1, 0.02, 0.10
COVERAGE, COVERAGE_ALPHA = 0.95, 0.01


# =============================================================================== fast fitters
@dataclass
class Fit:
    """What pooling and the criteria need from one analysis fit."""

    coef: np.ndarray
    cov: np.ndarray
    df_resid: float
    tau2: float = np.nan  # random-intercept variance
    icc: float = np.nan  # tau2 / (tau2 + sigma2), latent scale (sigma2 = pi^2/3) for the logistic model
    sigma2: float = np.nan
    t_reference: bool = True  # complete-data CI from t(df_resid) (linear models) or the normal (logistic)


def _cluster_sums(values: np.ndarray, groups: np.ndarray, n_clusters: int) -> np.ndarray:
    """Per-cluster sums of the columns of a 1-d or 2-d array."""
    if values.ndim == 1:
        return np.bincount(groups, values, minlength=n_clusters)
    return np.column_stack([np.bincount(groups, values[:, k], minlength=n_clusters) for k in range(values.shape[1])])


def _reml_terms(lam, n_j, XX, Xy, yy, S, t, n, p):
    """beta, the residual quadratic form and the REML deviance at variance ratio lambda = tau^2 / sigma^2.

    V_j = I + lambda 1 1' has V_j^{-1} = I - w_j 1 1' with w_j = lambda / (1 + lambda n_j), so
    X'V^{-1}X, X'V^{-1}y and y'V^{-1}y are the pooled cross-products minus weighted per-cluster sums.
    """
    w = lam / (1.0 + lam * n_j)
    A = XX - (S * w[:, None]).T @ S
    b = Xy - S.T @ (w * t)
    c = yy - np.sum(w * t * t)
    chol = np.linalg.cholesky(A)
    beta = np.linalg.solve(A, b)
    quad = max(c - b @ beta, 1e-300)
    dev = (n - p) * np.log(quad) + np.sum(np.log1p(lam * n_j)) + 2.0 * np.sum(np.log(np.diag(chol)))
    return dev, beta, quad, A


def fit_linear_mixed(y: np.ndarray, X: np.ndarray, groups: np.ndarray, n_clusters: int) -> Fit:
    """REML random-intercept model y = X beta + b_j + e (lme4 ``lmer(y ~ X + (1 | g))``).

    The REML deviance profiled over beta and sigma^2 is a function of theta = tau / sigma alone,
    minimised by bounded Brent on per-cluster sums (O(J p^2) per evaluation); the boundary
    theta = 0 is compared explicitly. Inference as lme4: cov = sigma^2 (X'V^{-1}X)^{-1},
    df_resid = n - p - 2.
    """
    n, p = X.shape
    n_j = np.bincount(groups, minlength=n_clusters).astype(float)
    S, t = _cluster_sums(X, groups, n_clusters), _cluster_sums(y, groups, n_clusters)
    XX, Xy, yy = X.T @ X, X.T @ y, float(y @ y)

    def objective(theta):
        return _reml_terms(theta * theta, n_j, XX, Xy, yy, S, t, n, p)[0]

    for upper in (10.0, 100.0, 1000.0):  # widened when the optimum sits at the upper end (ICC above 0.99)
        res = optimize.minimize_scalar(
            objective, bounds=(0.0, upper), method="bounded", options={"xatol": 1e-10, "maxiter": 500}
        )
        if res.x < 0.99 * upper:
            break
    theta = res.x if res.fun <= objective(0.0) else 0.0
    lam = theta * theta
    _, beta, quad, A = _reml_terms(lam, n_j, XX, Xy, yy, S, t, n, p)
    sigma2 = quad / (n - p)
    tau2 = lam * sigma2
    return Fit(beta, sigma2 * np.linalg.inv(A), float(n - p - 2), tau2, tau2 / (tau2 + sigma2), sigma2)


def _laplace(par, X, Y, groups, n_clusters, u0):
    """Laplace log-likelihoods of m random-intercept logistic models, their gradients, and the modes.

    logit P(y_kij = 1 | u_kj) = x_ij' beta_k + tau_k u_kj, u_kj ~ N(0, 1), for m responses Y (m, n)
    sharing X and the clusters (the m completed datasets of one replication). The modes of all
    clusters of all datasets come from one vectorised Newton iteration (steps capped at 4 prior
    SDs); the gradient in (beta, tau) differentiates the modes implicitly (their first-order
    condition), so it is exact. Returns (loglik (m,), gradient (m, p + 1), modes (m, J)).
    """
    m, p = par.shape[0], X.shape[1]
    beta, tau = par[:, :p], par[:, p]
    bins = (groups[None, :] + n_clusters * np.arange(m)[:, None]).ravel()

    def sums(values):  # (m, n) -> per-dataset, per-cluster sums (m, J)
        return np.bincount(bins, values.ravel(), minlength=m * n_clusters).reshape(m, n_clusters)

    eta = beta @ X.T
    u = u0.copy()
    settled = False
    for _ in range(100):
        mu = special.expit(eta + tau[:, None] * u[:, groups])
        w = mu * (1.0 - mu)
        step = np.clip((tau[:, None] * sums(Y - mu) - u) / (tau[:, None] ** 2 * sums(w) + 1.0), -4.0, 4.0)
        u = u + step
        if np.max(np.abs(step)) < 1e-11:
            if settled:  # one more step once converged: Newton's quadratic convergence to ~1e-15
                break
            settled = True
    lin = eta + tau[:, None] * u[:, groups]
    mu = special.expit(lin)
    w = mu * (1.0 - mu)
    wp = w * (1.0 - 2.0 * mu)
    resid = Y - mu
    sum_w, sum_wp, sum_r = sums(w), sums(wp), sums(resid)
    t = tau[:, None]
    H = t * t * sum_w + 1.0
    loglik = (
        np.sum(Y * lin - np.logaddexp(0.0, lin), axis=1) - 0.5 * np.sum(u * u, axis=1) - 0.5 * np.sum(np.log(H), axis=1)
    )
    sum_wx = np.stack([sums(w * X[:, k]) for k in range(p)], axis=2)  # (m, J, p)
    sum_wpx = np.stack([sums(wp * X[:, k]) for k in range(p)], axis=2)
    du_dbeta = -t[:, :, None] * sum_wx / H[:, :, None]
    du_dtau = (sum_r - t * u * sum_w) / H
    dH_dbeta = (t * t)[:, :, None] * sum_wpx + (t**3 * sum_wp)[:, :, None] * du_dbeta
    dH_dtau = 2.0 * t * sum_w + t * t * u * sum_wp + t**3 * sum_wp * du_dtau
    grad_beta = resid @ X - np.sum(dH_dbeta / (2.0 * H[:, :, None]), axis=1)
    grad_tau = np.sum(u * sum_r, axis=1) - np.sum(dH_dtau / (2.0 * H), axis=1)
    return loglik, np.column_stack([grad_beta, grad_tau]), u


def fit_logistic_mixed(Y: np.ndarray, X: np.ndarray, groups: np.ndarray, n_clusters: int) -> list[Fit]:
    """Random-intercept logistic models by the Laplace approximation (lme4 ``glmer``, nAGQ = 1).

    ``Y`` holds one response (n,) or m responses (m, n) sharing X and the clusters; all m fits run
    together. Damped Newton per response in (beta, log tau) from lme4's start tau = 1, the Hessian
    from differences of the exact gradient, its curvatures taken by absolute value where the
    log-likelihood is not concave (far from the optimum), the step capped at length 1. The Laplace
    log-likelihood is even in tau (u_j -> -u_j), so tau = 0 is always stationary: when it is the
    maximum (the log-likelihood falls along tau there), the fit stops at the logistic regression
    with tau = 0, where only the beta block of the Hessian is informative (as lme4). cov = beta
    block of the inverse negative Hessian. Returns one Fit per
    response.
    """
    Y = np.atleast_2d(np.asarray(Y, dtype=float))
    m, p = Y.shape[0], X.shape[1]

    def evaluate(par, u, rows):
        return _laplace(par, X, Y[rows], groups, n_clusters, u)

    def evaluate_log(theta, u, rows):
        """The log-likelihood in (beta, log tau), where Newton neither lands on nor creeps from tau = 0."""
        par = np.column_stack([theta[:, :p], np.exp(theta[:, p])])
        loglik, grad, u = evaluate(par, u, rows)
        grad[:, p] *= par[:, p]
        return loglik, grad, u

    def hessian(function, par, u, rows, grad=None):
        """Central differences of the gradient, or forward ones from ``grad`` (half the cost, for steps)."""
        h = 1e-6 * np.maximum(np.abs(par), 1.0)
        cols = []
        for k in range(p + 1):
            e = np.zeros_like(par)
            e[:, k] = h[:, k]
            if grad is None:
                cols.append((function(par + e, u, rows)[1] - function(par - e, u, rows)[1]) / (2.0 * h[:, k, None]))
            else:
                cols.append((function(par + e, u, rows)[1] - grad) / h[:, k, None])
        H = np.stack(cols, axis=2)
        return (H + np.swapaxes(H, 1, 2)) / 2.0

    everything = np.arange(m)
    glm = np.array([_logistic_irls(X, y, n_iter=50) for y in Y])  # the maximum at tau = 0, where Laplace is the GLM
    boundary = np.column_stack([glm, np.zeros(m)])
    boundary_loglik = evaluate(boundary, np.zeros((m, n_clusters)), everything)[0]
    # tau = 0 is a maximum when the log-likelihood falls along tau there (it is even in tau, and the
    # cross derivatives vanish at tau = 0); Newton in log tau then heads for -inf and is stopped near 0
    step_tau = boundary + np.r_[np.zeros(p), 1e-3][None, :]
    at_boundary = evaluate(step_tau, np.zeros((m, n_clusters)), everything)[0] <= boundary_loglik
    theta = np.column_stack([glm, np.zeros(m)])  # lme4's start, tau = 1
    loglik, grad, u = evaluate_log(theta, np.zeros((m, n_clusters)), everything)
    done = np.zeros(m, dtype=bool)
    for _ in range(200):
        rows = np.flatnonzero(~done)  # the responses still moving: one slow fit does not hold up the rest
        w, v = np.linalg.eigh(-hessian(evaluate_log, theta[rows], u[rows], rows, grad[rows]))
        # far from the optimum the log-likelihood need not be concave: curvatures by their absolute value
        # make the step an ascent direction, and a cap of 1 on its length (a factor e in tau) keeps it where
        # the quadratic model holds, so the halving below is rarely needed
        w = np.maximum(np.abs(w), 1e-4 * np.abs(w).max(axis=1, keepdims=True) + 1e-12)
        step = np.einsum("mij,mj->mi", v, np.einsum("mji,mj->mi", v, grad[rows]) / w)
        step /= np.maximum(np.linalg.norm(step, axis=1, keepdims=True), 1.0)
        size = np.ones(rows.size)
        base, base_loglik, base_u = theta[rows], loglik[rows], u[rows]
        trial, new_loglik, new_grad, new_u = base, base_loglik, grad[rows], base_u
        pending = np.ones(rows.size, dtype=bool)
        while pending.any():  # halve the step of the responses whose log-likelihood would fall
            candidate = base + size[:, None] * step
            c_loglik, c_grad, c_u = evaluate_log(candidate, base_u, rows)
            accept = pending & ((c_loglik >= base_loglik - 1e-12 * np.abs(base_loglik)) | (size < 1e-8))
            trial = np.where(accept[:, None], candidate, trial)
            new_loglik, new_grad = np.where(accept, c_loglik, new_loglik), np.where(accept[:, None], c_grad, new_grad)
            new_u = np.where(accept[:, None], c_u, new_u)
            pending &= ~accept
            size[pending] /= 2.0
        moved = np.max(np.abs(size[:, None] * step), axis=1)
        flat = (np.abs(new_loglik - base_loglik) < 1e-14 * np.abs(base_loglik)) & (
            np.max(np.abs(new_grad), axis=1) < 1e-6
        )
        theta[rows], loglik[rows], grad[rows], u[rows] = trial, new_loglik, new_grad, new_u
        done[rows] = (moved < 1e-9) | flat  # Newton's last step of 1e-9 leaves an error of order 1e-18
        settle = ~done & at_boundary & (theta[:, p] < np.log(1e-2)) & (boundary_loglik >= loglik - 1e-9)
        theta[settle], loglik[settle], u[settle], done[settle] = boundary[settle], boundary_loglik[settle], 0.0, True
        theta[settle, p] = -np.inf
        if done.all():
            break
    par = np.column_stack([theta[:, :p], np.exp(theta[:, p])])
    H = hessian(evaluate, par, u, everything)
    fits = []
    for k in range(m):
        tau = float(par[k, p])
        cov = np.linalg.inv(-H[k])[:p, :p] if tau > 1e-6 else np.linalg.inv(-H[k, :p, :p])
        tau2 = tau * tau
        fits.append(
            Fit(
                par[k, :p].copy(),
                cov,
                float(Y.shape[1] - p - 1),
                tau2,
                tau2 / (tau2 + LOGISTIC_VARIANCE),
                t_reference=False,
            )
        )
    return fits


def fit_ols(y: np.ndarray, X: np.ndarray) -> Fit:
    """Ordinary least squares (one row per cluster for the cluster-level analyses)."""
    n, p = X.shape
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    sigma2 = float(resid @ resid) / (n - p)
    return Fit(beta, sigma2 * np.linalg.inv(X.T @ X), float(n - p), sigma2=sigma2)


def fit_logistic(y: np.ndarray, X: np.ndarray) -> Fit:
    """Maximum-likelihood logistic regression by IRLS; cov = (X'WX)^{-1}, df_resid = n - p (R's glm)."""
    beta = _logistic_irls(X, y, n_iter=50)
    mu = special.expit(X @ beta)
    info = X.T @ ((mu * (1.0 - mu))[:, None] * X)
    return Fit(beta, np.linalg.inv(info), float(len(y) - X.shape[1]), t_reference=False)


def fit_logistic_firth(y: np.ndarray, X: np.ndarray, max_iter: int = 100) -> Fit:
    """Firth's bias-reduced logistic regression (R's ``logistf`` point estimate); cov = (X'WX)^{-1} at it.

    Maximises the log-likelihood plus half the log-determinant of the information (the Jeffreys
    prior), by Fisher scoring on the modified score X'(y - mu + h (1/2 - mu)), h the leverages,
    with step halving on the penalised log-likelihood. Unlike the maximum-likelihood estimate it is
    finite when the data are separated, and its O(1/n) bias is removed (Firth 1993).
    """
    beta = np.zeros(X.shape[1])

    def penalised(b):
        eta = X @ b
        mu = special.expit(eta)
        info = X.T @ ((mu * (1.0 - mu))[:, None] * X)
        return float(y @ eta - np.logaddexp(0.0, eta).sum() + 0.5 * np.linalg.slogdet(info)[1]), mu, info

    value, mu, info = penalised(beta)
    for _ in range(max_iter):
        w = mu * (1.0 - mu)
        root = np.sqrt(w)[:, None] * X
        h = np.einsum("ij,ij->i", root @ np.linalg.inv(info), root)
        step = np.linalg.solve(info, X.T @ (y - mu + h * (0.5 - mu)))
        for _ in range(30):  # step halving
            new_value, new_mu, new_info = penalised(beta + step)
            if new_value >= value - 1e-12 * abs(value):
                break
            step = step / 2.0
        beta, value, mu, info = beta + step, new_value, new_mu, new_info
        if np.max(np.abs(step)) < 1e-10:
            break
    return Fit(beta, np.linalg.inv(info), float(len(y) - X.shape[1]), t_reference=False)


# =============================================================================== data-generating models
@dataclass
class Truth:
    """True parameters of one kind and design."""

    predictor: dict  # term -> coefficient in y ~ x + z + (1 | g)
    outcome: dict  # term -> coefficient of the outcome-role analysis
    tau2_y: float  # random-intercept variance of y ~ x + z + (1 | g)
    tau2_x: float = np.nan  # random-intercept variance of the outcome-role model (nan: no such model)
    icc_x: float = np.nan  # ICC of x given z (latent scale for discrete x; nan for cluster-level x)
    categories: list = field(default_factory=list)  # categories of x (reference first)
    indicator: str | None = None  # the category whose indicator is the outcome-role response


def latent_variance(icc: float) -> float:
    """Random-intercept variance of a logistic latent variable with the given ICC."""
    return icc / (1.0 - icc) * LOGISTIC_VARIANCE


def truth_of(kind: str, icc: float) -> Truth:
    """The true parameters (see the module docstring of validate_defaults.py)."""
    s2 = latent_variance(icc)
    if kind in ("continuous", "systematic continuous"):
        return Truth({"x": 0.5}, {"(Intercept)": 0.0, "z": 0.5}, icc, icc, icc)
    if kind == "whole-number":
        return Truth({"x": 0.25}, {"(Intercept)": 10.0, "z": 1.0}, icc, 4.0 * icc, icc)
    if kind in ("binary", "systematic binary"):
        return Truth({"x": 0.5}, {"(Intercept)": -0.5, "z": 0.8}, icc, s2, icc)
    if kind == "unordered":
        return Truth({"x[B]": 0.5, "x[C]": -0.3}, {"(Intercept)": -0.5, "z": 0.8}, icc, s2, icc, ["A", "B", "C"], "A")
    if kind == "ordered":
        return Truth({"x[B]": 0.4, "x[C]": 0.8}, {"(Intercept)": -0.8, "z": 0.8}, icc, s2, icc, ["A", "B", "C"], "C")
    if kind == "cluster continuous":
        return Truth({"x": 0.5}, {"(Intercept)": 0.0, "zbar": 1.5}, icc)
    if kind == "cluster binary":
        return Truth({"x": 0.5}, {"(Intercept)": -0.5, "zbar": 2.0}, icc)
    raise ValueError(f"unknown kind {kind!r}; one of {KINDS}")


def simulate(kind: str, n_clusters: int, icc: float, rng: np.random.Generator) -> tuple[pd.DataFrame, Truth]:
    """Complete data (columns g, y, z, x) of one kind, and its truth."""
    truth = truth_of(kind, icc)
    J = n_clusters
    sizes = rng.integers(SIZE_RANGE[0], SIZE_RANGE[1] + 1, size=J)
    g = np.repeat(np.arange(J), sizes)
    n = g.size
    z = rng.normal(0.0, np.sqrt(ICC_Z), J)[g] + rng.normal(0.0, np.sqrt(1.0 - ICC_Z), n)
    zbar = np.bincount(g, z) / sizes
    s2 = latent_variance(icc)
    if kind in ("continuous", "systematic continuous"):
        x = 0.5 * z + rng.normal(0.0, np.sqrt(icc), J)[g] + rng.normal(0.0, np.sqrt(1.0 - icc), n)
        effect = 0.5 * x
    elif kind == "whole-number":
        # rounding adds variance 1/12 (Sheppard), taken off the within variance so that the ICC is exact
        latent = (
            10.0
            + z
            + rng.normal(0.0, np.sqrt(4.0 * icc), J)[g]
            + rng.normal(0.0, np.sqrt(4.0 * (1.0 - icc) - 1.0 / 12.0), n)
        )
        x = np.round(latent)
        effect = 0.25 * x - 2.5
    elif kind in ("binary", "systematic binary"):
        x = (rng.random(n) < special.expit(-0.5 + 0.8 * z + rng.normal(0.0, np.sqrt(s2), J)[g])).astype(float)
        effect = 0.5 * x
    elif kind == "unordered":
        first = rng.random(n) < special.expit(-0.5 + 0.8 * z + rng.normal(0.0, np.sqrt(s2), J)[g])
        second = rng.random(n) < special.expit(rng.normal(0.0, np.sqrt(s2), J)[g])
        codes = np.where(first, 0, np.where(second, 1, 2))
        x = pd.Categorical.from_codes(codes, categories=truth.categories)
        effect = np.array([0.0, 0.5, -0.3])[codes]
    elif kind == "ordered":
        latent = 0.8 * z + rng.normal(0.0, np.sqrt(s2), J)[g] + rng.logistic(size=n)
        codes = np.searchsorted(np.array([-0.5, 0.8]), latent, side="right")
        x = pd.Categorical.from_codes(codes, categories=truth.categories, ordered=True)
        effect = np.array([0.0, 0.4, 0.8])[codes]
    elif kind == "cluster continuous":
        x = (1.5 * zbar + rng.normal(0.0, 1.0, J))[g]
        effect = 0.5 * x
    elif kind == "cluster binary":
        x = (rng.random(J) < special.expit(-0.5 + 2.0 * zbar)).astype(float)[g]
        effect = 0.5 * x
    else:
        raise ValueError(f"unknown kind {kind!r}; one of {KINDS}")
    y = effect + 0.3 * z + rng.normal(0.0, np.sqrt(icc), J)[g] + rng.normal(0.0, np.sqrt(1.0 - icc), n)
    return pd.DataFrame({"g": g, "y": y, "z": z, "x": x}), truth


def _calibrated(score: np.ndarray, share: float) -> np.ndarray:
    """P(missing) = expit(c + MAR_SLOPE * standardised score), c chosen so that the mean is ``share``."""
    s = (score - score.mean()) / score.std()
    c = optimize.brentq(lambda c: special.expit(c + MAR_SLOPE * s).mean() - share, -20.0, 20.0)
    return special.expit(c + MAR_SLOPE * s)


def ampute(data: pd.DataFrame, kind: str, rng: np.random.Generator) -> pd.DataFrame:
    """x made 30% missing, MAR on y: rows (sporadic kinds) or whole clusters on the cluster mean of y.

    Redrawn (same generator, so still seeded) until every category of a discrete x is observed
    and at least three clusters keep x, so that each analysis and model is defined.
    """
    g = data["g"].to_numpy()
    y = data["y"].to_numpy()
    by_cluster = kind in CLUSTER_LEVEL or kind in SYSTEMATIC
    if by_cluster:
        ybar = np.bincount(g, y) / np.bincount(g)
        prob = _calibrated(ybar, MISSING_SHARE)
    else:
        prob = _calibrated(y, MISSING_SHARE)
    x = data["x"]
    discrete = isinstance(x.dtype, pd.CategoricalDtype) or kind in ("binary", "systematic binary", "cluster binary")
    for _ in range(1000):
        missing = rng.random(prob.size) < prob
        if by_cluster:
            missing = missing[g]
        every_value_kept = not discrete or x[~missing].nunique() == x.nunique()
        if missing.any() and np.unique(g[~missing]).size >= 3 and every_value_kept:
            break
    out = data.copy()
    out.loc[missing, "x"] = np.nan
    return out


# =============================================================================== analyses
def _x_columns(x: pd.Series, truth: Truth) -> np.ndarray:
    """The x terms of the predictor-role design: x itself, or dummies of the non-reference categories."""
    if truth.categories:
        codes = pd.Categorical(x, categories=truth.categories).codes
        return (codes[:, None] == np.arange(1, len(truth.categories))[None, :]).astype(float)
    return x.to_numpy(dtype=float)[:, None]


def analyse(frames: list[pd.DataFrame], kind: str, truth: Truth, groups: np.ndarray, n_clusters: int) -> dict:
    """Both analyses of each (complete or completed) dataset: {"predictor": [Fit], "outcome": [Fit]}.

    The datasets share y, z and the clusters; the logistic outcome-role fits of all of them run
    as one batch.
    """
    z = frames[0]["z"].to_numpy(dtype=float)
    y = frames[0]["y"].to_numpy(dtype=float)
    n = len(z)
    ones = np.ones(n)
    fits = {
        "predictor": [
            fit_linear_mixed(y, np.column_stack([ones, _x_columns(f["x"], truth), z]), groups, n_clusters)
            for f in frames
        ]
    }
    if kind in CLUSTER_LEVEL:
        # one record per cluster: its first row's x (constant within clusters under the defaults;
        # the single-level imputation may vary it within a cluster, and an analyst would keep one)
        first = np.unique(groups, return_index=True)[1]
        zbar = np.bincount(groups, z, minlength=n_clusters) / np.bincount(groups, minlength=n_clusters)
        Xc = np.column_stack([np.ones(n_clusters), zbar])
        # the binary one by Firth's bias-reduced logistic regression: with 30 clusters, the maximum-likelihood
        # estimate is infinite in some completed datasets (separation) and 13-17% high in the complete data
        fitter = fit_ols if kind == "cluster continuous" else fit_logistic_firth
        fits["outcome"] = [fitter(f["x"].to_numpy(dtype=float)[first], Xc) for f in frames]
        return fits
    Xz = np.column_stack([ones, z])
    if truth.indicator is not None:
        responses = np.array([(f["x"].astype(object) == truth.indicator).to_numpy(dtype=float) for f in frames])
        fits["outcome"] = fit_logistic_mixed(responses, Xz, groups, n_clusters)
    elif kind in ("binary", "systematic binary"):
        responses = np.array([f["x"].to_numpy(dtype=float) for f in frames])
        fits["outcome"] = fit_logistic_mixed(responses, Xz, groups, n_clusters)
    else:
        fits["outcome"] = [fit_linear_mixed(f["x"].to_numpy(dtype=float), Xz, groups, n_clusters) for f in frames]
    return fits


def terms(truth: Truth, role: str) -> list[str]:
    return list(truth.predictor if role == "predictor" else truth.outcome)


def _term_indices(truth: Truth, role: str) -> list[int]:
    """Positions of the target terms in the design: x terms after the intercept; the outcome's (1, z)."""
    if role == "predictor":
        return list(range(1, 1 + len(truth.predictor)))
    return [0, 1]


# =============================================================================== one replication
def seed_sequence(seed: int, kind: str, n_clusters: int, icc: float, rep: int) -> np.random.SeedSequence:
    """The replication's own seed: a function of the cell and the replication only, not of the jobs."""
    return np.random.SeedSequence([seed, KINDS.index(kind), n_clusters, round(icc * 1000), rep])


def impute(data: pd.DataFrame, method: str, m: int, max_iter: int, random_state: int):
    """m completed datasets: the package defaults with groups, or the same imputer without them."""
    imputer = MultilevelIterativeImputer(n_imputations=m, max_iter=max_iter, random_state=random_state, n_jobs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # logged events (systematic clusters, few clusters) are expected here
        if method == "defaults":
            sets = imputer.fit_transform_all(data, groups="g")
        else:
            sets = imputer.fit_transform_all(data.drop(columns="g"))
    return list(sets), type(imputer.methods_["x"]).__name__


def _pooled_rows(fits: dict, truth: Truth, base: dict) -> list[dict]:
    """Rubin-pooled target terms of each role (or the single complete-data fit), tau^2 and ICC averaged."""
    rows = []
    for role in ("predictor", "outcome"):
        role_fits = fits[role]
        idx = _term_indices(truth, role)
        names = terms(truth, role)
        true = truth.predictor if role == "predictor" else truth.outcome
        q = np.array([f.coef[idx] for f in role_fits])
        u = np.array([f.cov[np.ix_(idx, idx)] for f in role_fits])
        if len(role_fits) > 1:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                table = pool(q, u, dfcom=role_fits[0].df_resid, names=names)
            est, se, low, high = (table[c].to_numpy() for c in ("estimate", "std_error", "conf_low", "conf_high"))
        else:  # the complete data: one fit, its own Wald interval
            f = role_fits[0]
            est, se = q[0], np.sqrt(np.diag(u[0]))
            crit = stats.t.ppf(0.975, f.df_resid) if f.t_reference else stats.norm.ppf(0.975)
            low, high = est - crit * se, est + crit * se
        tau2 = float(np.mean([f.tau2 for f in role_fits]))  # mitml: variance components averaged
        icc = float(np.mean([f.icc for f in role_fits]))
        for k, name in enumerate(names):
            rows.append(
                {
                    **base,
                    "role": role,
                    "term": name,
                    "truth": true[name],
                    "estimate": est[k],
                    "std_error": se[k],
                    "covered": bool(low[k] <= true[name] <= high[k]),
                    "tau2": tau2,
                    "icc_x": icc if role == "outcome" else np.nan,
                    "tau2_true": truth.tau2_y if role == "predictor" else truth.tau2_x,
                    "icc_true": truth.icc_x if role == "outcome" else np.nan,
                }
            )
    return rows


def replication(
    kind: str, n_clusters: int, icc: float, rep: int, m: int = 20, max_iter: int = 10, seed: int = 2024, methods=METHODS
) -> list[dict]:
    """One replication of one cell: rows (method x role x term) with estimates, coverage, tau^2 and ICC."""
    with threadpool_limits(1):  # one BLAS thread: results do not depend on the machine's thread count
        data_seed, amputation_seed, imputation_seed = seed_sequence(seed, kind, n_clusters, icc, rep).spawn(3)
        complete, truth = simulate(kind, n_clusters, icc, np.random.default_rng(data_seed))
        incomplete = ampute(complete, kind, np.random.default_rng(amputation_seed))
        groups = complete["g"].to_numpy()
        base = {"kind": kind, "J": n_clusters, "icc": icc, "rep": rep}
        rows = _pooled_rows(
            analyse([complete], kind, truth, groups, n_clusters),
            truth,
            {**base, "method": "complete", "model": "", "seconds": 0.0},
        )
        random_state = int(imputation_seed.generate_state(1)[0] % (2**31 - 1))
        for method in methods:
            start = time.perf_counter()
            sets, model = impute(incomplete, method, m, max_iter, random_state)
            middle = time.perf_counter()
            fits = analyse(sets, kind, truth, groups, n_clusters)
            stop = time.perf_counter()
            rows += _pooled_rows(
                fits,
                truth,
                {
                    **base,
                    "method": method,
                    "model": model,
                    "seconds": middle - start,
                    "analysis_seconds": stop - middle,
                },
            )
        return rows


# =============================================================================== summary and criteria
def coverage_region(n_reps: int, n_tests: int) -> tuple[float, float]:
    """Family-wise 99% binomial acceptance region of a 95% coverage rate (Bonferroni over n_tests)."""
    low, high = stats.binom.interval(1.0 - COVERAGE_ALPHA / max(n_tests, 1), n_reps, COVERAGE)
    return low / n_reps, high / n_reps


def bias_bound(truth: float, complete_se: float, term: str, kind: str) -> float:
    """5% of |truth|; 0.1 complete-data SE where |truth| < 2 SE, and for the intercept of a numeric x.

    A numeric x has no natural origin (whole-number x centred at 10 would get a bound of 0.5,
    4 SE), so its location gets the small-truth bound; a logit intercept is relative to even odds.
    """
    if abs(truth) < 2.0 * complete_se or (term == "(Intercept)" and kind in NUMERIC):
        return SMALL_TRUTH_SE * complete_se
    return BIAS_SHARE * abs(truth)


def _mean_se(values: pd.Series) -> tuple[float, float]:
    values = values.dropna()
    if len(values) < 2:
        return float(values.mean()) if len(values) else np.nan, np.nan
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))


def summarise(rows: list[dict] | pd.DataFrame, widen=0.0, n_tests: int | None = None) -> pd.DataFrame:
    """One row per kind x role x term x design: truth, complete-data mean, biases with MC SEs, coverage, flags.

    ``widen`` = 0 applies the criteria as stated (the full run). The reduced CI test passes the
    t quantile of its family-wise level (a number, or one per row of the table, whose order does
    not depend on ``widen``): a bias (or ICC, tau^2) passes when it lies within bound + t MC SE,
    so a method that meets a bound exactly still passes with probability 1 - alpha despite the MC
    error of few replications. ``n_tests`` overrides the number of
    coverage tests of the Bonferroni correction (default: the rows of the table).
    """
    frame = pd.DataFrame(rows)
    keys = ["kind", "role", "term", "J", "icc"]
    wide = frame.pivot_table(
        index=keys + ["rep"],
        columns="method",
        values=["estimate", "std_error", "covered", "tau2", "icc_x"],
        aggfunc="first",
    )
    info = frame.groupby(keys, sort=False)[["truth", "tau2_true", "icc_true"]].first()
    out = []
    for key, part in wide.groupby(level=keys, sort=False):
        truth, tau2_true, icc_true = info.loc[key]
        complete = part["estimate"]["complete"]
        complete_se = float(part["std_error"]["complete"].mean())
        bound = bias_bound(truth, complete_se, key[2], key[0])
        row = dict(zip(keys, key, strict=True))
        row.update(
            {
                "R": len(part),
                "truth": truth,
                "cd_mean": complete.mean(),
                "cd_se": complete_se,
                "cd_cov": part["covered"]["complete"].astype(float).mean(),
                "bound": bound,
            }
        )
        for method, short in (("defaults", "def"), ("single-level", "sl")):
            if method not in part["estimate"]:
                continue
            est = part["estimate"][method]
            row[f"{short}_R"] = int(est.notna().sum())  # the contrast may run in fewer replications
            row[f"{short}_bias"], row[f"{short}_bias_mcse"] = _mean_se(est - truth)
            row[f"{short}_paired"], row[f"{short}_paired_mcse"] = _mean_se(est - complete)
            row[f"{short}_cov"] = part["covered"][method].astype(float).mean()
            # pivot_table drops a value that is NaN throughout (the ICC of x when only cluster-level kinds ran)
            icc_x = part["icc_x"] if "icc_x" in part.columns.get_level_values(0) else None
            row[f"{short}_icc"], row[f"{short}_icc_mcse"] = (
                _mean_se(icc_x[method] - icc_x["complete"]) if icc_x is not None else (np.nan, np.nan)
            )
            rel = (part["tau2"][method] - part["tau2"]["complete"]) / tau2_true
            row[f"{short}_tau2"], row[f"{short}_tau2_mcse"] = _mean_se(rel)
        row["icc_true"], row["tau2_true"] = icc_true, tau2_true
        out.append(row)
    table = pd.DataFrame(out)
    order = {kind: k for k, kind in enumerate(KINDS)}
    table = table.sort_values(
        ["kind", "role", "term", "J", "icc"], key=lambda c: c.map(order) if c.name == "kind" else c, ignore_index=True
    )
    if "def_bias" not in table:
        return table
    regions = np.array([coverage_region(int(r), n_tests or len(table)) for r in table["R"]])
    table["cov_low"], table["cov_high"] = regions[:, 0], regions[:, 1]
    table["ok_bias"] = table["def_paired"].abs() < table["bound"] + widen * table["def_paired_mcse"]
    table["ok_icc"] = (table["def_icc"].abs() < ICC_BOUND + widen * table["def_icc_mcse"]).where(
        table["def_icc"].notna()
    )
    table["ok_tau2"] = (table["def_tau2"].abs() < TAU2_SHARE + widen * table["def_tau2_mcse"]).where(
        table["def_tau2"].notna()
    )
    table["ok_cov"] = (table["def_cov"] >= table["cov_low"]) & (table["def_cov"] <= table["cov_high"])
    # enough replications: every MC SE at most a third of its bound
    mc = table["def_paired_mcse"] <= table["bound"] / 3.0
    mc &= ~(table["def_icc_mcse"] > ICC_BOUND / 3.0)
    mc &= ~(table["def_tau2_mcse"] > TAU2_SHARE / 3.0)
    table["ok_mc"] = mc
    return table
