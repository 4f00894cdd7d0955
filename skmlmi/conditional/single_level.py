"""Single-level conditional models: mice's norm, pmm, logreg and polyreg.

These ignore the clustering unless the cluster column is coded 1, in which case they
absorb cluster fixed effects ("fixed-cluster imputation"). The linear models do so by
within-cluster centring: y_ij = alpha_j + x_ij' beta + e_ij with a flat prior on every
alpha_j. The draw of (beta, sigma) comes from the centred data, and each alpha_j from its
conditional posterior N(ybar_j - xbar_j' beta*, sigma*^2 / n_j), so no n x J dummy matrix
is ever formed. A logit model cannot be centred; the logistic and multinomial models
estimate the J cluster intercepts jointly with the slopes by Newton steps whose Hessian
has a block-diagonal intercept part, eliminated by a Schur complement (cost linear in J,
see :func:`_multinomial_newton`). Rows of clusters unseen at fit cannot be imputed by a
fixed-cluster model: that is a ValueError naming the clusters.

This module knows nothing about DataFrames, column names or the chained-equations loop.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval

from scipy import linalg

from .._kernels import (
    batched_cholesky,
    bayesian_regression_draw,
    cluster_counts,
    cluster_means,
    find_redundant_columns,
    pmm_match,
    ridge_cholesky,
)
from .base import BaseConditionalImputer, Draw

__all__ = ["BayesianNormal", "PredictiveMeanMatching", "BayesianLogistic", "Polytomous"]


# --------------------------------------------------------------------------- helpers
class _SingleLevelBase(BaseConditionalImputer):
    """Shared design handling: intercept, optional cluster fixed effects."""

    accepted_roles = frozenset({1})
    supports_fixed_clusters = True

    def _usable_columns(self, X, observed, roles, groups, context):
        if groups is None or X.shape[1] == 0:
            return super()._usable_columns(X, observed, roles, groups, context)
        # With cluster fixed effects, a column constant within clusters is absorbed.
        Xo, go = X[observed], groups[observed]
        n_groups = context.n_clusters
        within = Xo - cluster_means(Xo, go, n_groups)[go]
        drop = find_redundant_columns(within + X[observed].mean(axis=0))
        keep = np.ones(X.shape[1], dtype=bool)
        for index, reason in drop.items():
            reason = "constant within clusters (absorbed by the cluster fixed effects)" if reason == "constant" else reason
            context.log(f"predictor {context.predictor_name(index)!r} dropped: {reason}")
            keep[index] = False
        return keep


def _linear_draw(y, observed, X, groups, rng, context, ridge):
    """Posterior draw of a linear model, with cluster fixed effects when groups are given.

    Returns (beta_hat, beta_star, sigma_star, alpha_hat, alpha_star) where alpha are
    intercepts: one scalar without groups, one per cluster code with groups.
    """
    yo, Xo = y[observed], X[observed]
    if groups is None:
        design = np.column_stack([np.ones(len(yo)), Xo])
        beta_hat, beta_star, sigma, ridged = bayesian_regression_draw(design, yo, rng, ridge)
        if ridged:
            context.log(f"ridge {ridge:g} added to the normal equations")
        return beta_hat[1:], beta_star[1:], sigma, beta_hat[0], beta_star[0]
    go = groups[observed]
    J = context.n_clusters
    n_j = cluster_counts(go, J)
    ybar = cluster_means(yo, go, J)
    xbar = cluster_means(Xo, go, J) if X.shape[1] else np.zeros((J, 0))
    fitted_clusters = int((n_j > 0).sum())
    yw = yo - ybar[go]
    Xw = Xo - xbar[go]
    if X.shape[1]:
        beta_hat, beta_star, sigma, ridged = bayesian_regression_draw(Xw, yw, rng, ridge, df_extra=fitted_clusters)
        if ridged:
            context.log(f"ridge {ridge:g} added to the normal equations")
    else:
        df = max(len(yo) - fitted_clusters, 1)
        sigma = float(np.sqrt(yw @ yw / rng.chisquare(df)))
        beta_hat = beta_star = np.zeros(0)
    with np.errstate(invalid="ignore"):
        alpha_hat = ybar - xbar @ beta_hat
        alpha_star = ybar - xbar @ beta_star + sigma / np.sqrt(np.where(n_j > 0, n_j, np.nan)) * rng.standard_normal(J)
    return beta_hat, beta_star, sigma, alpha_hat, alpha_star


def _intercepts_for(alpha, groups, context_name):
    """Intercept of each row: scalar, or the cluster's fixed effect."""
    if np.ndim(alpha) == 0:
        return alpha
    if groups is None:
        raise ValueError(f"{context_name}: this draw has cluster fixed effects and needs cluster codes.")
    unseen = (groups >= len(alpha)) | np.isnan(alpha[np.minimum(groups, len(alpha) - 1)])
    if unseen.any():
        raise ValueError(
            f"{context_name}: fixed-cluster imputation cannot impute rows of clusters without "
            "observed values at fit (cluster codes "
            f"{sorted(set(groups[unseen].tolist()))[:10]}); use a random-effects model such as "
            "RandomEffectsPMM or RandomEffectsNormal, or code the cluster column -2."
        )
    return alpha[groups]


# --------------------------------------------------------------------------- norm
class _NormalDraw(Draw):
    def __init__(self, beta, alpha, sigma, name):
        self.beta, self.alpha, self.sigma, self.name = beta, alpha, sigma, name

    def sample(self, X, groups, rng):
        mean = _intercepts_for(self.alpha, groups, self.name) + X @ self.beta
        return mean + self.sigma * rng.standard_normal(len(X))


class BayesianNormal(_SingleLevelBase):
    """Bayesian linear regression imputation (mice's ``norm``).

    y = alpha + X beta + e, e ~ N(0, sigma^2), flat prior on (alpha, beta, log sigma).
    Each visit draws sigma*^2 = RSS / chi^2_{n-p} and beta* ~ N(beta_hat, sigma*^2 (X'X)^-1)
    (Rubin 1987, p. 167; van Buuren 2018, Algorithm 3.1) and imputes
    y* = alpha* + x' beta* + sigma* eps. With the cluster column coded 1, alpha is a
    cluster fixed effect (see the module docstring).

    Parameters
    ----------
    ridge : float, default=1e-5
        Relative ridge added to the diagonal of X'X only if its Cholesky factorisation
        fails (logged). Cost per visit: O(n p^2).

    Examples
    --------
    >>> import numpy as np
    >>> from skmlmi.conditional import BayesianNormal
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 2)); y = X @ [1.0, -1.0] + rng.normal(size=200)
    >>> observed = rng.random(200) < 0.7
    >>> draw, _ = BayesianNormal().draw(y, observed, X, np.ones(2, int), None, rng)
    >>> draw.sample(X[~observed], None, rng).shape == ((~observed).sum(),)
    True
    """

    target_kinds = frozenset({"continuous", "integer"})
    _parameter_constraints = {"ridge": [Interval(Real, 0, None, closed="left")]}

    def __init__(self, ridge: float = 1e-5):
        self.ridge = ridge

    def _draw(self, y, observed, X, roles, groups, rng, state, context):
        _, beta_star, sigma, _, alpha_star = _linear_draw(y, observed, X, groups, rng, context, self.ridge)
        return _NormalDraw(beta_star, alpha_star, sigma, f"BayesianNormal for {context.target!r}"), None


# --------------------------------------------------------------------------- pmm
class _PMMDraw(Draw):
    def __init__(self, beta, alpha, yhat_donors, y_donors, donors, name):
        self.beta, self.alpha = beta, alpha
        self.yhat_donors, self.y_donors = yhat_donors, y_donors
        self.donors, self.name = donors, name

    def sample(self, X, groups, rng):
        target = _intercepts_for(self.alpha, groups, self.name) + X @ self.beta
        index = pmm_match(self.yhat_donors, np.broadcast_to(target, (len(X),)).astype(float), self.donors, rng)
        return self.y_donors[index]


class PredictiveMeanMatching(_SingleLevelBase):
    """Predictive mean matching (mice's ``pmm``, matchtype 1).

    The donors' predictions use the least-squares estimate, y_hat_obs = X_obs beta_hat;
    the recipients' use a posterior draw, y_hat_mis = X_mis beta* (van Buuren 2018,
    §3.4). Each recipient receives the observed value of one of the ``donors`` donors
    whose predictions are closest, drawn at random. Only observed values are imputed,
    so the imputations respect the data's support (integers stay integers). With the
    cluster column coded 1 the predictions include cluster fixed effects.

    Parameters
    ----------
    donors : int, default=5
        Size of the pool of closest donors to draw from.
    ridge : float, default=1e-5
        Relative ridge used only if X'X is numerically singular (logged).

    Notes
    -----
    Matching is vectorised (sorting plus binary search): O((n_obs + n_mis) log n_obs)
    per visit, no loop over recipients.

    Examples
    --------
    >>> import numpy as np
    >>> from skmlmi.conditional import PredictiveMeanMatching
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 1)); y = np.round(2 * X[:, 0] + rng.normal(size=100))
    >>> observed = rng.random(100) < 0.7
    >>> draw, _ = PredictiveMeanMatching().draw(y, observed, X, np.ones(1, int), None, rng)
    >>> set(draw.sample(X[~observed], None, rng)) <= set(y[observed])
    True
    """

    target_kinds = frozenset({"continuous", "integer"})
    _parameter_constraints = {
        "donors": [Interval(Integral, 1, None, closed="left")],
        "ridge": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, donors: int = 5, ridge: float = 1e-5):
        self.donors = donors
        self.ridge = ridge

    def _draw(self, y, observed, X, roles, groups, rng, state, context):
        beta_hat, beta_star, _, alpha_hat, alpha_star = _linear_draw(y, observed, X, groups, rng, context, self.ridge)
        go = None if groups is None else groups[observed]
        yhat_donors = _intercepts_for(alpha_hat, go, "") + X[observed] @ beta_hat
        yhat_donors = np.broadcast_to(yhat_donors, (int(observed.sum()),)).astype(float)
        draw = _PMMDraw(
            beta_star, alpha_star, yhat_donors, y[observed].copy(), self.donors,
            f"PredictiveMeanMatching for {context.target!r}",
        )
        return draw, None
