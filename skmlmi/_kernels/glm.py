"""Batched Newton / IRLS fits of generalised linear models.

Per-cluster logit and log-linear fits of every cluster at once (two-stage models), a
multinomial logit with one intercept vector per group whose intercepts are eliminated by a
Schur complement (single-level logit models, fixed-cluster imputation), and a plain logistic
IRLS (start values of the analysis models). Each step is one batched solve on a stack of
small matrices built by ``np.bincount``; no loop over rows or clusters, no n x J matrix.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg, special

from .clusters import weighted_cluster_cross_products
from .linalg import batched_cholesky, chol_solve_stack, ridge_cholesky

__all__ = ["batched_irls", "logistic_irls", "multinomial_newton", "softmax_reference"]


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
