"""Single-level conditional models: mice's norm, pmm, logreg and polyreg.

These ignore the clustering unless the cluster column is coded 1, in which case they
absorb cluster fixed effects ("fixed-cluster imputation"). The linear models do so by
within-cluster centring: y_ij = alpha_j + x_ij' beta + e_ij with a flat prior on every
alpha_j. The draw of (beta, sigma) comes from the centred data, and each alpha_j from its
conditional posterior N(ybar_j - xbar_j' beta*, sigma*^2 / n_j), so no n x J dummy matrix
is ever formed. A logit model cannot be centred; the logistic and multinomial models
estimate the J cluster intercepts jointly with the slopes by Newton steps whose Hessian
has a block-diagonal intercept part, eliminated by a Schur complement (cost linear in J,
see :func:`multinomial_newton`). Rows of clusters unseen at fit cannot be imputed by a
fixed-cluster model: that is a ValueError naming the clusters.

This module knows nothing about DataFrames, column names or the chained-equations loop.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from scipy import linalg
from sklearn.utils._param_validation import Interval

from .._kernels import (
    bayesian_regression_draw,
    cluster_counts,
    cluster_means,
    constant_within_clusters,
    find_redundant_columns,
    multinomial_newton,
    pmm_match,
    power_of_two_exponents,
    scale_by_powers_of_two,
    softmax_reference,
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
        # With cluster fixed effects, a column constant within clusters is absorbed (the one rule
        # of constancy); the others must still vary, and not be collinear, after within-cluster centring.
        Xo, go = X[observed], groups[observed]
        n_groups = context.n_clusters
        keep = ~constant_within_clusters(Xo, go, n_groups)
        for index in np.flatnonzero(~keep):
            context.log(
                f"predictor {context.predictor_name(index)!r} dropped: constant within clusters "
                "(absorbed by the cluster fixed effects)"
            )
        varying = np.flatnonzero(keep)
        if varying.size:
            Xv = Xo if varying.size == Xo.shape[1] else Xo[:, varying]
            within = Xv - cluster_means(Xv, go, n_groups)[go]
            drop = find_redundant_columns(within + Xv.mean(axis=0), scale=np.abs(Xv).max(axis=0))
            for index, reason in drop.items():
                if reason == "constant":
                    reason = "its within-cluster deviations are at the rounding level of its cluster means"
                context.log(f"predictor {context.predictor_name(int(varying[index]))!r} dropped: {reason}")
                keep[varying[index]] = False
        return keep


def _linear_draw(y, observed, X, groups, rng, context, ridge):
    """Posterior draw of a linear model, with cluster fixed effects when groups are given.

    The predictors (and, without groups, y) are centred at their observed means first: that
    moves only the intercepts (flat prior), and keeps X'X free of the cancellation that a
    shifted predictor (1e12 + x) would bring into its Cholesky factor.

    Returns (beta_hat, beta_star, sigma_star, alpha_hat, alpha_star, center) where alpha are
    intercepts at X = center (the observed means): one scalar without groups, one per cluster
    code with groups.
    """
    yo, Xo = y[observed], X[observed]
    center = Xo.mean(axis=0) if len(yo) else np.zeros(X.shape[1])
    Xo -= center  # Xo is a copy (boolean indexing)
    if groups is None:
        y_center = float(yo.mean())
        design = np.column_stack([np.ones(len(yo)), Xo])
        beta_hat, beta_star, sigma, ridged = bayesian_regression_draw(design, yo - y_center, rng, ridge)
        if ridged:
            context.log(f"ridge {ridge:g} added to the normal equations")
        return beta_hat[1:], beta_star[1:], sigma, beta_hat[0] + y_center, beta_star[0] + y_center, center
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
    return beta_hat, beta_star, sigma, alpha_hat, alpha_star, center


class _CentredLinear(Draw):
    """A linear predictor alpha + (x - center)' beta, with the intercepts stored at the centre.

    Evaluating at the centre keeps the predictions of a shifted predictor (1e12 + x) exact to
    the rounding of the data; ``alpha`` gives the intercepts at x = 0, as usual.
    """

    def _linear(self, X, groups):
        return _intercepts_for(self.alpha_centred, groups, self.name) + (X - self.center) @ self.beta

    @property
    def alpha(self):
        """Intercept(s) at x = 0: a scalar, or one per cluster code (fixed clusters)."""
        return self.alpha_centred - self.center @ self.beta


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
class _NormalDraw(_CentredLinear):
    def __init__(self, beta, alpha_centred, sigma, name, center):
        self.beta, self.alpha_centred, self.sigma, self.name = beta, alpha_centred, sigma, name
        self.center = center

    def sample(self, X, groups, rng):
        return self._linear(X, groups) + self.sigma * rng.standard_normal(len(X))


class BayesianNormal(_SingleLevelBase):
    """Bayesian linear regression imputation (mice's ``norm``).

    y = alpha + X beta + e, e ~ N(0, sigma^2), flat prior on (alpha, beta, log sigma).
    Each visit draws sigma*^2 = RSS / chi^2_{n-p} and beta* ~ N(beta_hat, sigma*^2 (X'X)^-1)
    (Rubin 1987, p. 167; van Buuren 2018, Algorithm 3.1) and imputes
    y* = alpha* + x' beta* + sigma* eps. With the cluster column coded 1, alpha is a
    cluster fixed effect (see the module docstring).

    The prior is scale-equivariant (flat in beta and in log sigma: a column in other units
    changes nothing but the units of the imputations); the fit centres the predictors, so a
    shifted predictor (1e12 + x) loses no precision in X'X.

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
    r_names = {"norm": {}}
    _parameter_constraints = {"ridge": [Interval(Real, 0, None, closed="left")]}

    def __init__(self, ridge: float = 1e-5):
        self.ridge = ridge

    def _draw(self, y, observed, X, roles, groups, rng, state, context):
        _, beta_star, sigma, _, alpha_star, center = _linear_draw(y, observed, X, groups, rng, context, self.ridge)
        return _NormalDraw(beta_star, alpha_star, sigma, f"BayesianNormal for {context.target!r}", center), None


# --------------------------------------------------------------------------- pmm
class _PMMDraw(_CentredLinear):
    def __init__(self, beta, alpha_centred, yhat_donors, y_donors, donors, name, center):
        self.beta, self.alpha_centred, self.center = beta, alpha_centred, center
        self.yhat_donors, self.y_donors = yhat_donors, y_donors
        self.donors, self.name = donors, name

    def sample(self, X, groups, rng):
        target = self._linear(X, groups)
        # with cluster fixed effects, distinct donors within a cluster (shared ones correlate its imputations)
        strata = None if groups is None or np.ndim(self.alpha_centred) == 0 else np.asarray(groups)
        index = pmm_match(self.yhat_donors, np.broadcast_to(target, (len(X),)).astype(float), self.donors, rng, strata)
        return self.y_donors[index]


class PredictiveMeanMatching(_SingleLevelBase):
    """Predictive mean matching (mice's ``pmm``, matchtype 1).

    The donors' predictions use the least-squares estimate, y_hat_obs = X_obs beta_hat;
    the recipients' use a posterior draw, y_hat_mis = X_mis beta* (van Buuren 2018,
    §3.4). Each recipient receives the observed value of one of the ``donors`` donors
    whose predictions are closest, drawn at random. Only observed values are imputed,
    so the imputations respect the data's support (integers stay integers). With the
    cluster column coded 1 the predictions include cluster fixed effects. The prior is
    :class:`BayesianNormal`'s (flat, scale-equivariant).

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
    r_names = {"pmm": {}}
    _parameter_constraints = {
        "donors": [Interval(Integral, 1, None, closed="left")],
        "ridge": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, donors: int = 5, ridge: float = 1e-5):
        self.donors = donors
        self.ridge = ridge

    def _draw(self, y, observed, X, roles, groups, rng, state, context):
        beta_hat, beta_star, _, alpha_hat, alpha_star, center = _linear_draw(
            y, observed, X, groups, rng, context, self.ridge
        )
        go = None if groups is None else groups[observed]
        yhat_donors = _intercepts_for(alpha_hat, go, "") + (X[observed] - center) @ beta_hat
        yhat_donors = np.broadcast_to(yhat_donors, (int(observed.sum()),)).astype(float)
        draw = _PMMDraw(
            beta_star,
            alpha_star,
            yhat_donors,
            y[observed].copy(),
            self.donors,
            f"PredictiveMeanMatching for {context.target!r}",
            center,
        )
        return draw, None


# --------------------------------------------------------------------------- logit family
class _NewtonState:
    """Warm start of the logit models: the last penalised ML estimate of the chain.

    In the fit's units: intercepts at x = ``center``, slopes per unit of x / 2^``exponents``.
    """

    def __init__(self, n_columns, alpha, beta, center=None, exponents=None):
        self.n_columns, self.alpha, self.beta = n_columns, alpha, beta
        p = beta.shape[0]
        self.center = np.zeros(p) if center is None else center
        self.exponents = np.zeros(p, dtype=int) if exponents is None else exponents

    def start(self, center, exponents):
        """(alpha, beta) moved exactly to another centre and other units."""
        beta_original = np.ldexp(self.beta, -self.exponents[:, None])
        alpha = self.alpha + (center - self.center) @ beta_original
        return alpha, np.ldexp(beta_original, exponents[:, None])


def _augmentation_rows(X, n_categories):
    """White, Daniel & Royston (2010) pseudo-rows against separation, as mice's ``augment``.

    For each predictor and each category, two rows with that predictor at its mean +- 0.5
    SD (clamped to its range) and the others at their means, each of weight
    (p + 1) / (2 p K): the pseudo-data add p + 1 observations in total. Without
    predictors, one row per category of weight 1 / K (mice adds none; the intercept then
    stays finite when only one category is observed).
    """
    n, p = X.shape
    K = n_categories
    if p == 0:
        return np.zeros((K, 0)), np.arange(K), np.full(K, 1.0 / K)
    mean = X.mean(axis=0)
    sd = X.std(axis=0, ddof=1) if n > 1 else np.zeros(p)
    rows = 2 * p * K
    Xa = np.tile(mean, (rows, 1))
    column = np.repeat(np.arange(p), 2 * K)
    sign = np.tile([0.5, -0.5], p * K)
    low, high = X.min(axis=0)[column], X.max(axis=0)[column]
    Xa[np.arange(rows), column] = np.clip(mean[column] + sign * sd[column], low, high)
    ya = np.tile(np.repeat(np.arange(K), 2), p)
    return Xa, ya, np.full(rows, (p + 1) / rows)


def _logit_fit_and_draw(model, y, observed, X, groups, rng, state, context, n_categories):
    """Penalised (augmented) ML fit of the multinomial logit and a draw from its normal approximation.

    Returns (alpha_hat, alpha_star, beta_hat, beta_star, new_state, center). Without groups the
    intercepts are one vector (m,); with groups they are (J, m), NaN for clusters without
    observed rows; intercepts are at x = center (the observed means), slopes in the data's units.
    """
    K = n_categories
    codes = model._category_codes(y, observed, K, context)
    Xo = X[observed]
    n_obs, p = Xo.shape
    Xa, ya, wa = _augmentation_rows(X, K)
    # Fit in units where the predictors are centred and divided by powers of two near their SDs
    # (exact): the Newton tolerance on the coefficients and the ridge then mean the same whatever
    # the units, and a shifted predictor (1e12 + x) keeps its information matrix well conditioned.
    center = Xo.mean(axis=0)
    exponents = power_of_two_exponents(Xo.std(axis=0), np.abs(center)) if p else np.zeros(0, dtype=int)
    Xo -= center  # Xo and Xa are copies
    Xa -= center
    scale_by_powers_of_two(Xo, -exponents, out=Xo)
    scale_by_powers_of_two(Xa, -exponents, out=Xa)
    if groups is None:
        parts_X, parts_y, parts_w = [Xo, Xa], [codes, ya], [np.ones(n_obs), wa]
        parts_g = [np.zeros(n_obs + len(ya), dtype=np.intp)]
        n_groups, present = 1, None
    else:
        J = context.n_clusters
        go = groups[observed]
        present = np.flatnonzero(np.bincount(go, minlength=J) > 0)
        compact = np.full(J, -1, dtype=np.intp)
        compact[present] = np.arange(len(present))
        G0 = len(present)
        # One pseudo-observation per cluster, split equally over the K categories at the
        # cluster's mean covariates: a log-F(2/K, ...) type prior that keeps every cluster
        # intercept finite when the cluster observed a single category.
        xbar = cluster_means(Xo, go, J)[present] if p else np.zeros((G0, 0))
        Xc = np.repeat(xbar, K, axis=0)
        yc = np.tile(np.arange(K), G0)
        gc = np.repeat(np.arange(G0), K)
        parts_X, parts_y, parts_w = [Xo, Xc], [codes, yc], [np.ones(n_obs), np.full(G0 * K, 1.0 / K)]
        parts_g = [compact[go], gc]
        n_groups = G0
        if p:  # WDR rows get an intercept of their own: they inform the slopes only
            parts_X.append(Xa)
            parts_y.append(ya)
            parts_w.append(wa)
            parts_g.append(np.full(len(ya), G0, dtype=np.intp))
            n_groups += 1
    Xf, yf, wf, gf = (np.concatenate(parts) for parts in (parts_X, parts_y, parts_w, parts_g))
    state = model._reuse_state(state, _NewtonState, p, alpha=(n_groups, K - 1), beta=(p, K - 1))
    start = None if state is None else state.start(center, exponents)
    fit = multinomial_newton(Xf, yf, wf, gf, n_groups, K, start, model.ridge, model.max_iter)
    if not fit["converged"]:
        context.log(
            f"{type(model).__name__} for {context.target!r}: Newton iterations did not converge in "
            f"{model.max_iter} steps; the last estimate is used"
        )
    if fit["ridged"]:
        context.log(f"ridge {model.ridge:g} added to the information matrix of {context.target!r}")
    m = K - 1
    alpha_hat, beta_hat = fit["alpha"], fit["beta"]
    z = rng.standard_normal(p * m)
    if p:
        delta = linalg.solve_triangular(fit["S_chol"], z, lower=True, trans="T")
    else:
        delta = np.zeros(0)
    beta_star = beta_hat + delta.reshape(p, m)
    # alpha | beta ~ N(alpha_hat - D^-1 B (beta - beta_hat), D^-1), per group.
    zg = rng.standard_normal((n_groups, m))
    noise = np.linalg.solve(np.swapaxes(fit["D_chol"], -1, -2), zg[:, :, None])[:, :, 0]
    alpha_star = alpha_hat - np.einsum("gkq,q->gk", fit["E"], delta) + noise
    new_state = _NewtonState(p, alpha_hat, beta_hat, center, exponents)
    # slopes back to the data's units (intercepts stay at x = center; see _CategoryDraw)
    beta_hat, beta_star = np.ldexp(beta_hat, -exponents[:, None]), np.ldexp(beta_star, -exponents[:, None])
    if present is None:
        return alpha_hat[0], alpha_star[0], beta_hat, beta_star, new_state, center
    full_hat = np.full((context.n_clusters, m), np.nan)
    full_star = np.full((context.n_clusters, m), np.nan)
    full_hat[present] = alpha_hat[: len(present)]
    full_star[present] = alpha_star[: len(present)]
    return full_hat, full_star, beta_hat, beta_star, new_state, center


def _logit_intercepts(alpha, groups, name):
    """Intercepts (n, m) of each row: the common vector, or the cluster's fixed effects."""
    if alpha.ndim == 1:
        return alpha[None, :]
    if groups is None:
        raise ValueError(f"{name}: this draw has cluster fixed effects and needs cluster codes.")
    groups = np.asarray(groups, dtype=np.intp)
    J = len(alpha)
    unseen = (groups >= J) | (groups < 0)
    unseen[~unseen] = np.isnan(alpha[groups[~unseen], 0])
    if unseen.any():
        raise ValueError(
            f"{name}: fixed-cluster imputation cannot impute rows of clusters without observed values "
            f"at fit (cluster codes {sorted(set(groups[unseen].tolist()))[:10]}); use a random-effects "
            "model such as RandomEffectsLogistic or RandomEffectsCategorical, or code the cluster column -2."
        )
    return alpha[groups]


class _CategoryDraw(Draw):
    """Draw of a (multinomial) logit model: categories drawn from the drawn probabilities.

    Intercepts are stored at x = ``center`` (exact logits for a shifted predictor); ``alpha`` and
    ``alpha_hat`` give them at x = 0.
    """

    def __init__(self, alpha_centred, beta, alpha_hat_centred, beta_hat, name, center):
        self.alpha_centred, self.beta = alpha_centred, beta
        self.alpha_hat_centred, self.beta_hat = alpha_hat_centred, beta_hat
        self.name, self.center = name, center

    @property
    def alpha(self):
        return self.alpha_centred - self.center @ self.beta

    @property
    def alpha_hat(self):
        return self.alpha_hat_centred - self.center @ self.beta_hat

    def probabilities(self, X, groups):
        """Category probabilities (n, K) at the drawn parameters."""
        eta = _logit_intercepts(self.alpha_centred, groups, self.name) + (X - self.center) @ self.beta
        return softmax_reference(eta)

    def sample(self, X, groups, rng):
        P = self.probabilities(X, groups)
        u = rng.random(len(X))
        # inverse-cdf draw: the category is the number of cumulative probabilities below u
        return (u[:, None] > np.cumsum(P, axis=1)[:, :-1]).sum(axis=1).astype(float)


class _LogitBase(_SingleLevelBase):
    _parameter_constraints = {
        "ridge": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
    }

    def _n_categories(self, y, observed, context):
        raise NotImplementedError

    def _draw(self, y, observed, X, roles, groups, rng, state, context):
        K = self._n_categories(y, observed, context)
        alpha_hat, alpha_star, beta_hat, beta_star, new_state, center = _logit_fit_and_draw(
            self, y, observed, X, groups, rng, state, context, K
        )
        name = f"{type(self).__name__} for {context.target!r}"
        return _CategoryDraw(alpha_star, beta_star, alpha_hat, beta_hat, name, center), new_state


class BayesianLogistic(_LogitBase):
    """Logistic regression imputation with a proper parameter draw (mice's ``logreg``).

    Model: logit P(y = 1 | x) = alpha + x' beta. Each visit

    1. augments the observed rows with the pseudo-data of White, Daniel & Royston (2010)
       against perfect separation: for every predictor and each outcome, two rows with
       that predictor at its mean +- 0.5 SD (clamped to its range), the others at their
       means, each of weight (p + 1) / (4 p), so that p + 1 pseudo-observations are
       added in total (mice's ``augment``);
    2. finds the weighted ML estimate theta_hat = (alpha_hat, beta_hat) by Newton/IRLS
       with step halving, warm-started from the chain's previous estimate;
    3. draws theta* ~ N(theta_hat, I(theta_hat)^-1), the normal approximation to the
       posterior (mice's ``cov.unscaled`` draw);
    4. imputes y* ~ Bernoulli(expit(alpha* + x' beta*)).

    With the cluster column coded 1 (fixed-cluster imputation) the intercept becomes a
    cluster fixed effect alpha_j. A logit model cannot be centred, so the J intercepts are
    estimated jointly with beta: the Newton system is solved by eliminating the
    (diagonal) intercept block through its Schur complement, vectorised with bincount,
    at a cost linear in J and with no n x J matrix. Each cluster with observed rows also
    receives one pseudo-observation at its mean covariates, half a success and half a
    failure (a log-F(1, 1) prior on its centred intercept, Greenland & Mansournia 2015),
    so clusters whose observed y are all 0 or all 1 keep finite intercepts; the WDR
    pseudo-rows then carry an intercept of their own and inform the slopes only. The draw
    takes beta* from its marginal N(beta_hat, S^-1) and each alpha_j* from its
    conditional normal given beta*. Rows of clusters without observed y at fit cannot be
    imputed (ValueError naming the clusters).

    The prior (the WDR pseudo-data at the predictors' mean +- 0.5 SD, and the log-F pseudo-rows at
    the cluster means) is scale-equivariant: it is defined by the predictors' own means and SDs.
    The fit works on predictors centred and divided by a power of two near their SD (exact), so
    the Newton tolerance and the ridge do not depend on their units.

    Parameters
    ----------
    ridge : float, default=1e-5
        Relative ridge added to the diagonal of the information matrix only if its Cholesky
        factorisation fails (logged).
    max_iter : int, default=100
        Maximum number of Newton steps per visit (non-convergence is logged). Each step
        costs O(n p^2 + J).

    References
    ----------
    White, I. R., Daniel, R., Royston, P. (2010). Avoiding bias due to perfect prediction in
    multiple imputation of incomplete categorical variables. CSDA 54, 2267-2275.
    van Buuren, S. (2018). Flexible Imputation of Missing Data, 2nd ed., §3.6.

    Examples
    --------
    >>> import numpy as np
    >>> from skmlmi.conditional.single_level import BayesianLogistic
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 2)); y = (rng.random(300) < 1 / (1 + np.exp(-X[:, 0]))).astype(float)
    >>> observed = rng.random(300) < 0.7
    >>> draw, state = BayesianLogistic().draw(y, observed, X, np.ones(2, int), None, rng)
    >>> set(draw.sample(X[~observed], None, rng)) <= {0.0, 1.0}
    True
    """

    target_kinds = frozenset({"binary"})
    r_names = {"logreg": {}}

    def __init__(self, ridge: float = 1e-5, max_iter: int = 100):
        self.ridge = ridge
        self.max_iter = max_iter

    def _n_categories(self, y, observed, context):
        return 2


class Polytomous(_LogitBase):
    """Multinomial logistic regression imputation with a proper parameter draw.

    Model (reference category 0): log P(y = k | x) / P(y = 0 | x) = alpha_k + x' beta_k,
    k = 1..K-1, (K-1)(p+1) parameters. Each visit augments the observed rows with the
    White, Daniel & Royston (2010) pseudo-data (two rows per predictor and category, weight
    (p + 1) / (2 p K) each; one row per category of weight 1/K without predictors), finds
    the weighted ML estimate by Newton's method on all (K-1)(p+1) parameters (vectorised,
    warm-started), draws theta* ~ N(theta_hat, I(theta_hat)^-1) and imputes each row's
    category from its probabilities at theta*. Unlike R's ``polyreg`` (``nnet::multinom``,
    probabilities from the ML fit without a parameter draw), this imputation is proper.
    Every category in ``0..K-1`` receives pseudo-rows, so a category that is never
    observed still gets a small, finite probability.

    Ordered categorical targets are accepted, but the order is ignored: the model is the
    unordered multinomial logit (more parameters than a proportional-odds model, but no
    proportional-odds assumption to violate).

    With the cluster column coded 1, each cluster gets its own intercept vector alpha_j
    (fixed effects), estimated jointly with the slopes by a Newton step that eliminates
    the (K-1) x (K-1) intercept blocks through a Schur complement (batched solves, cost
    linear in J). Each cluster with observed rows receives one pseudo-observation at its
    mean covariates split equally over the K categories, which keeps its intercepts
    finite when it observed a single category (see :class:`BayesianLogistic`). Rows of
    clusters without observed y cannot be imputed (ValueError naming the clusters).

    Priors and units as :class:`BayesianLogistic` (scale-equivariant pseudo-data).

    Parameters
    ----------
    ridge : float, default=1e-5
        Relative ridge added to the information matrix only if its Cholesky factorisation
        fails (logged).
    max_iter : int, default=100
        Maximum number of Newton steps per visit. Each step costs
        O(n (K-1)^2 p^2 + J (K-1)^3 + ((K-1) p)^3).

    Examples
    --------
    >>> import numpy as np
    >>> from skmlmi.conditional.base import DrawContext
    >>> from skmlmi.conditional.single_level import Polytomous
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 1)); y = np.digitize(X[:, 0] + rng.normal(size=300), [-0.5, 0.5]).astype(float)
    >>> observed = rng.random(300) < 0.7
    >>> context = DrawContext(target="y", kind="categorical", n_categories=3)
    >>> draw, _ = Polytomous().draw(y, observed, X, np.ones(1, int), None, rng, context=context)
    >>> set(draw.sample(X[~observed], None, rng)) <= {0.0, 1.0, 2.0}
    True
    """

    target_kinds = frozenset({"binary", "categorical"})
    r_names = {"polyreg": {}}

    def __init__(self, ridge: float = 1e-5, max_iter: int = 100):
        self.ridge = ridge
        self.max_iter = max_iter

    def _n_categories(self, y, observed, context):
        if context.n_categories >= 2:
            return int(context.n_categories)
        codes = y[observed]
        return max(int(np.nanmax(codes)) + 1 if codes.size else 2, 2)
