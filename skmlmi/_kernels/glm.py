"""Batched Newton / IRLS fits of generalised linear models.

Per-cluster logit and log-linear fits of every cluster at once (two-stage models), a
multinomial logit with one intercept vector per group whose intercepts are eliminated by a
Schur complement (single-level logit models, fixed-cluster imputation), a Poisson regression
with cluster fixed effects profiled out and its Pearson dispersion (the planner's check that a
count's Poisson model fits given its predictors), and a plain logistic IRLS (start values of
the analysis models). Each step is one batched solve on a stack of
small matrices built by ``np.bincount``; no loop over rows or clusters, no n x J matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg, special

from .clusters import weighted_cluster_cross_products
from .linalg import batched_cholesky, chol_solve_stack, ridge_cholesky

__all__ = [
    "PoissonFixedEffectsFit",
    "batched_irls",
    "logistic_irls",
    "multinomial_newton",
    "poisson_fixed_effects",
    "softmax_reference",
]


# --------------------------------------------------------------------------- per-cluster GLMs
_DIVERGED = 30.0  # |coefficient| in standardised units beyond which a fit has run away


def batched_irls(D, y, g, J, active, family, start, max_iter, tol=1e-8):
    """Per-cluster maximum likelihood of a logit or log-linear model, all clusters at once.

    Newton-Raphson (= IRLS for canonical links) on the ``(J, k, k)`` stack of
    ``X_j' W_j X_j`` built by bincounts; each step is one batched solve. Steps are capped
    at 5 (standardised units) so that separated clusters drift rather than overflow.
    Returns coefficients (J, k), the inverse information stack (J, k, k) and the mask of
    clusters that converged.
    """
    k = D.shape[1]
    beta = start.copy()
    converged = ~active
    eye = np.eye(k)
    info = np.broadcast_to(eye, (J, k, k)).copy()
    deviance_old = np.full(J, np.inf)
    for _ in range(max_iter):
        eta = np.einsum("ik,ik->i", D, beta[g])
        if family == "logistic":
            mu = special.expit(eta)
            w = mu * (1.0 - mu)
            loglik = y * eta - np.logaddexp(0.0, eta)
        else:
            mu = np.exp(np.minimum(eta, 30.0))
            w = mu
            loglik = y * eta - mu
        # R's glm.fit criterion, per cluster: |dev - dev_old| / (|dev| + 0.1) < 1e-8. Under
        # (quasi-)separation the deviance flattens while the coefficients creep outwards;
        # the fit then stops, and its huge standard errors mark the cluster as separated.
        deviance = -2.0 * np.bincount(g, weights=loglik, minlength=J)
        converged |= np.abs(deviance - deviance_old) / (np.abs(deviance) + 0.1) < 1e-8
        deviance_old = deviance
        # a cluster whose coefficients run away (separation: the likelihood has no
        # maximum) stops iterating; it stays unconverged and is treated as not estimable
        todo = ~converged & (np.abs(beta).max(axis=1) < _DIVERGED)
        if not todo.any():
            break
        rows = todo[g]  # only the clusters still iterating: late iterations touch few rows
        Dr, gr, wr, rr = D[rows], g[rows], w[rows], (y - mu)[rows]
        info = weighted_cluster_cross_products(Dr, gr, J, wr)
        score = np.stack([np.bincount(gr, weights=Dr[:, a] * rr, minlength=J) for a in range(k)], axis=1)
        A = info[todo]
        ridge = 1e-10 * np.abs(np.diagonal(A, axis1=1, axis2=2)).max(axis=1)
        step = np.linalg.solve(A + ridge[:, None, None] * eye, score[todo][:, :, None])[:, :, 0]
        size = np.abs(step).max(axis=1)
        step *= np.minimum(1.0, 5.0 / np.maximum(size, 1e-300))[:, None]
        beta[todo] += step
        converged[todo] = size < tol * (1.0 + np.abs(beta[todo]).max(axis=1))
    # information at the final coefficients
    eta = np.einsum("ik,ik->i", D, beta[g])
    mu = special.expit(eta) if family == "logistic" else np.exp(np.minimum(eta, 30.0))
    w = mu * (1.0 - mu) if family == "logistic" else mu
    info = weighted_cluster_cross_products(D, g, J, w)
    cov = np.broadcast_to(eye, (J, k, k)).copy()
    ok = active & converged
    if ok.any():
        A = info[ok]
        with np.errstate(all="ignore"):
            try:
                cov[ok] = np.linalg.inv(A)
            except np.linalg.LinAlgError:
                ridge = 1e-12 * np.abs(np.diagonal(A, axis1=1, axis2=2)).max(axis=1)
                cov[ok] = np.linalg.inv(A + ridge[:, None, None] * eye)
    return beta, cov, converged & active


# --------------------------------------------------------------------------- multinomial logit
def softmax_reference(eta):
    """Probabilities of categories 0..K-1 from the K-1 logits against category 0."""
    full = np.concatenate([np.zeros((eta.shape[0], 1)), eta], axis=1)
    full -= full.max(axis=1, keepdims=True)
    np.exp(full, out=full)
    full /= full.sum(axis=1, keepdims=True)
    return full


def _multinomial_loglik(alpha, beta, X, y, w, g):
    eta = alpha[g] + X @ beta
    full = np.concatenate([np.zeros((eta.shape[0], 1)), eta], axis=1)
    top = full.max(axis=1)
    lse = top + np.log(np.exp(full - top[:, None]).sum(axis=1))
    return float(w @ (full[np.arange(len(y)), y] - lse))


def multinomial_newton(X, y, w, g, n_groups, n_categories, start=None, ridge=1e-5, max_iter=100, tol=1e-8):
    """Weighted ML of a multinomial logit with one intercept vector per group, by Newton.

    Model: log P(y = k) / P(y = 0) = alpha_{g,k} + x' beta_k, k = 1..K-1 (m = K-1 logits),
    weights w (augmentation pseudo-rows carry fractional weights). The Hessian of the
    negative log-likelihood in (alpha, beta) is

        [[D, B], [B', C]],  D = blockdiag_g D_g (m x m blocks),

    with D_g = sum_{i in g} w_i V_i, B_g = sum_{i in g} w_i V_i (x) x_i', C = sum_i w_i V_i (x) x_i x_i',
    V_i = diag(p_i) - p_i p_i'. The intercepts are eliminated by the Schur complement
    S = C - sum_g B_g' D_g^-1 B_g (a (p m) x (p m) matrix), so a step costs
    O(n m^2 p^2 + G m^3 + (p m)^3): linear in the number of groups G, no n x G matrix.
    Step halving keeps the log-likelihood increasing.

    Returns a dict with alpha (G, m), beta (p, m), the Cholesky factor of S, the
    per-group D blocks, E = D^-1 B (G, m, p m), whether a ridge was needed, whether
    Newton converged and the number of iterations.
    """
    N, p = X.shape
    m = n_categories - 1
    G = n_groups
    if start is not None:
        alpha, beta = start[0].copy(), start[1].copy()
    else:
        alpha, beta = np.zeros((G, m)), np.zeros((p, m))
    Y = np.zeros((N, m))
    pos = y > 0
    Y[np.flatnonzero(pos), y[pos] - 1] = 1.0
    loglik = _multinomial_loglik(alpha, beta, X, y, w, g)
    converged, ridged = False, False
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        P = softmax_reference(alpha[g] + X @ beta)[:, 1:]
        R = w[:, None] * (Y - P)
        grad_alpha = np.stack([np.bincount(g, weights=R[:, k], minlength=G) for k in range(m)], axis=1)
        grad_beta = X.T @ R
        D = np.empty((G, m, m))
        B = np.empty((G, m, p, m))
        C = np.empty((p, m, p, m))
        for k in range(m):  # loops over categories only
            for l in range(k, m):
                v = w * (P[:, k] * ((k == l) - P[:, l]))
                D[:, k, l] = D[:, l, k] = np.bincount(g, weights=v, minlength=G)
                Xv = X * v[:, None]
                for b in range(p):
                    B[:, k, b, l] = B[:, l, b, k] = np.bincount(g, weights=Xv[:, b], minlength=G)
                C[:, k, :, l] = X.T @ Xv
                C[:, l, :, k] = C[:, k, :, l].T
        Bm = B.reshape(G, m, p * m)
        Dchol = batched_cholesky(D)
        E = chol_solve_stack(Dchol, Bm)
        D_grad = chol_solve_stack(Dchol, grad_alpha[:, :, None])[:, :, 0]
        S = C.reshape(p * m, p * m) - np.einsum("gkq,gkr->qr", Bm, E)
        if p:
            S_chol, ridged_now = ridge_cholesky(0.5 * (S + S.T), ridge)
            ridged |= ridged_now
            step_beta = linalg.cho_solve((S_chol, True), grad_beta.ravel() - np.einsum("gkq,gk->q", Bm, D_grad))
        else:
            S_chol, step_beta = np.zeros((0, 0)), np.zeros(0)
        step_alpha = D_grad - np.einsum("gkq,q->gk", E, step_beta)
        step_beta = step_beta.reshape(p, m)
        t = 1.0
        for _ in range(30):  # step halving
            new_alpha, new_beta = alpha + t * step_alpha, beta + t * step_beta
            new_loglik = _multinomial_loglik(new_alpha, new_beta, X, y, w, g)
            if new_loglik >= loglik - 1e-10 * (1 + abs(loglik)):
                break
            t *= 0.5
        else:
            converged = True  # no ascent along the Newton direction: optimum up to rounding
            break
        change = max(np.abs(t * step_alpha).max(initial=0.0), np.abs(t * step_beta).max(initial=0.0))
        alpha, beta, loglik = new_alpha, new_beta, new_loglik
        if change < tol:
            converged = True
            break
    return {
        "alpha": alpha,
        "beta": beta,
        "S_chol": S_chol,
        "D_chol": Dchol,
        "E": E,
        "ridged": ridged,
        "converged": converged,
        "iterations": iterations,
    }


# --------------------------------------------------------------------------- logistic
def logistic_irls(X: np.ndarray, y: np.ndarray, n_iter: int = 25) -> np.ndarray:
    """Maximum-likelihood coefficients of a logistic regression of 0/1 ``y`` on ``X``, by IRLS.

    Newton steps solved by least squares (so a singular information matrix gives the minimum-norm
    step), weights floored at 1e-10; stops when no coefficient moves more than 1e-10 or after
    ``n_iter`` steps. Start values of the analysis models; one fit, no clusters.
    """
    beta = np.zeros(X.shape[1])
    for _ in range(n_iter):
        mu = special.expit(X @ beta)
        w = np.maximum(mu * (1 - mu), 1e-10)
        step = np.linalg.lstsq(X.T @ (w[:, None] * X), X.T @ (y - mu), rcond=None)[0]
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta


# --------------------------------------------------------------------------- Poisson, cluster fixed effects
@dataclass(frozen=True)
class PoissonFixedEffectsFit:
    """Maximum-likelihood Poisson regression with cluster fixed effects (:func:`poisson_fixed_effects`)."""

    coef: np.ndarray  # (p,) slopes of the columns of X (minimum-norm where X is rank deficient within clusters)
    fitted: np.ndarray  # (n,) fitted means; 0 in clusters whose counts are all zero
    n_rows: int  # rows of clusters with a non-zero count
    n_clusters: int  # clusters with a non-zero count (each has a fitted intercept)
    rank: int  # rank of X within clusters (slopes the data identify)
    pearson: float  # sum of squared Pearson residuals
    df: int  # n_rows - rank - n_clusters
    dispersion: float  # pearson / df (NaN when df < 1)
    dispersion_se: float  # its standard error under the Poisson model (see poisson_fixed_effects)
    converged: bool


def poisson_fixed_effects(
    X: np.ndarray, y: np.ndarray, groups: np.ndarray, n_clusters: int, max_iter: int = 50, tol: float = 1e-10
) -> PoissonFixedEffectsFit:
    """Poisson regression of ``y`` on ``X`` with one intercept per cluster, and its Pearson dispersion.

    Model: y_ij ~ Poisson(mu_ij), log mu_ij = alpha_j + x_ij' beta. For given beta the ML
    intercepts are closed-form, alpha_j = log(sum_i y_ij / sum_i exp(x_ij' beta)), so they are
    profiled out: the profile log-likelihood

        l(beta) = sum_ij y_ij x_ij' beta - sum_j Y_j log sum_i exp(x_ij' beta),  Y_j = sum_i y_ij,

    (the conditional likelihood given the cluster totals) has gradient sum_ij (y_ij - mu_ij) x_ij
    and negative Hessian sum_ij mu_ij (x_ij - xbar_j)(x_ij - xbar_j)', xbar_j the mu-weighted
    cluster mean of x, mu_ij = Y_j exp(x_ij' beta) / sum_i exp(x_ij' beta): the Schur complement
    of the intercepts in the full information matrix. Newton steps with step halving, built from
    bincounts: no J dummy columns, no loop over clusters. Clusters whose counts are all zero
    have alpha_j = -inf and fit exactly; they are left out of every count below. Columns
    constant within clusters are absorbed by the intercepts (the step is the minimum-norm
    solution, and ``rank`` counts only what the data identify).

    The Pearson dispersion phi = sum r_ij^2 / (n - rank - J), r_ij = (y_ij - mu_ij) / sqrt(mu_ij),
    is about 1 when the Poisson model fits, below 1 when y is underdispersed given X and above
    when overdispersed. Under the model Var(r^2) = 2 + 1/mu (the Poisson fourth central moment
    is mu + 3 mu^2) and Cov(r^2, y) = 1, so r^2 = 1 + (y - mu) / mu + a remainder of variance 2;
    the fit absorbs the part of the linear term in its span, so the standard error of phi is
    taken as sqrt(2 df + RSS) / df, RSS the residual sum of squares of the mu-weighted regression
    of 1/mu on the cluster intercepts and X (McCullagh 1985; Farrington 1996): sqrt(2 / df)
    where mu varies little within clusters, more where small and varying counts make r^2 skewed.

    Parameters
    ----------
    X : ndarray of shape (n, p)
        Predictors, finite, without an intercept (the cluster intercepts are the model's).
    y : ndarray of shape (n,)
        Non-negative counts.
    groups : ndarray of shape (n,) of int
        Cluster code of each row, in ``0..n_clusters-1``.
    n_clusters : int
    max_iter : int, default=50
        Newton steps at most.
    tol : float, default=1e-10
        Convergence: the largest step (standardised columns) below ``tol``.

    Returns
    -------
    PoissonFixedEffectsFit
    """
    X = np.asarray(X, dtype=float).reshape(len(y), -1)
    y = np.asarray(y, dtype=float)
    groups = np.asarray(groups)
    totals = np.bincount(groups, weights=y, minlength=n_clusters)
    fitted = np.zeros(len(y))
    rows = totals[groups] > 0
    Xr, yr, g = X[rows], y[rows], groups[rows]
    n, p = Xr.shape
    J = int(np.count_nonzero(totals))
    # standardised columns: steps and the rank tolerance in comparable units
    center = Xr.mean(axis=0) if n else np.zeros(p)
    scale = Xr.std(axis=0) if n else np.ones(p)
    scale[scale == 0] = 1.0
    Z = (Xr - center) / scale
    Y = totals[g]
    beta = np.zeros(p)

    def profile(beta):
        eta = Z @ beta
        top = np.full(n_clusters, -np.inf)
        np.maximum.at(top, g, eta)  # per-cluster maximum: exp never overflows
        e = np.exp(eta - top[g])
        sums = np.bincount(g, weights=e, minlength=n_clusters)
        loglik = float(yr @ eta - totals @ np.where(totals > 0, np.log(np.maximum(sums, 1e-300)) + top, 0.0))
        return loglik, Y * e / sums[g]

    loglik, mu = profile(beta)
    converged = p == 0
    information = np.zeros((p, p))
    for _ in range(max_iter if p else 0):
        centred = Z - _weighted_cluster_means(Z, mu, g, n_clusters)[g]
        information = centred.T @ (mu[:, None] * centred)
        step = np.linalg.lstsq(information, Z.T @ (yr - mu), rcond=1e-10)[0]
        t = 1.0
        for _ in range(30):  # step halving: the profile likelihood is concave, but a full step can overshoot
            new_loglik, new_mu = profile(beta + t * step)
            if new_loglik >= loglik - 1e-12 * (1.0 + abs(loglik)):
                break
            t *= 0.5
        beta, loglik, mu = beta + t * step, new_loglik, new_mu
        if np.abs(t * step).max() < tol:
            converged = True
            break
    if p:
        centred = Z - _weighted_cluster_means(Z, mu, g, n_clusters)[g]
        information = centred.T @ (mu[:, None] * centred)
    rank = int(np.linalg.matrix_rank(information, tol=1e-8 * max(np.abs(information).max(initial=0.0), 1e-300)))
    fitted[rows] = mu
    mu = np.maximum(mu, 1e-300)
    pearson = float(np.sum((yr - mu) ** 2 / mu))
    df = n - rank - J
    if df >= 1:
        dispersion = pearson / df
        # r^2 = 1 + (y - mu) / mu + a remainder of variance 2 (Poisson: Cov(r^2, y) = 1, Var(r^2) = 2 + 1/mu);
        # the fit absorbs the part of the linear term (1/mu)(y - mu) in its span: what is left has
        # variance RSS of the mu-weighted regression of 1/mu on the cluster intercepts and X
        # (McCullagh 1985; Farrington 1996)
        inverse = 1.0 / mu
        centred_inverse = inverse - _weighted_cluster_means(inverse[:, None], mu, g, n_clusters)[g, 0]
        residual = float(np.sum(mu * centred_inverse**2))
        if p:
            cross = centred.T @ (mu * centred_inverse)
            residual -= float(cross @ np.linalg.lstsq(information, cross, rcond=1e-10)[0])
        dispersion_se = float(np.sqrt(2.0 * df + max(residual, 0.0)) / df)
    else:
        dispersion = dispersion_se = float("nan")
    return PoissonFixedEffectsFit(
        coef=beta / scale,
        fitted=fitted,
        n_rows=n,
        n_clusters=J,
        rank=rank,
        pearson=pearson,
        df=df,
        dispersion=dispersion,
        dispersion_se=dispersion_se,
        converged=converged,
    )


def _weighted_cluster_means(Z: np.ndarray, w: np.ndarray, g: np.ndarray, n_clusters: int) -> np.ndarray:
    """Per-cluster means of the columns of ``Z`` weighted by ``w`` (a loop over columns only)."""
    totals = np.maximum(np.bincount(g, weights=w, minlength=n_clusters), 1e-300)
    return np.stack(
        [np.bincount(g, weights=w * Z[:, a], minlength=n_clusters) / totals for a in range(Z.shape[1])], axis=1
    ).reshape(n_clusters, Z.shape[1])
