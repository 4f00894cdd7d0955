"""Random-effects (two-level) conditional models for continuous targets.

The linear mixed model y_ij = x_ij' beta + z_ij' b_j + e_ij of mice's ``2l.pan`` /
``2l.norm`` / ``2l.lmer`` and miceadds' ``2l.pmm``, fitted by a Gibbs sampler that works
on per-cluster cross-products only: one pass over the observed rows per visit (one
``np.bincount`` per product), then every Gibbs step costs O(J q^2 p) on batched
``(J, q, q)`` stacks, whatever the number of rows. The sampler state is carried from one
chained-equations visit to the next (warm start).

This module knows nothing about DataFrames, column names or the chained-equations loop:
it receives numeric arrays, role codes (1 fixed, 2 fixed + random slope; the engine
already turned codes 3/4 into 1/2 plus a cluster-mean column) and integer cluster codes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from numbers import Integral
from typing import Any

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from .._kernels import (
    MixedCrossProducts,
    normal_mixed_gibbs,
    pmm_match,
    rows_of_clusters,
    symmetric_eigenvalues,
)
from ._priors import check_prior, prior_values
from ._random_effects_factors import FactorPMMDraw, fit_several_factors
from .base import BaseConditionalImputer, Draw, DrawContext, cluster_names

__all__ = ["RandomEffectsNormal", "RandomEffectsPMM"]

#: Condition number of the random-effects correlation matrix above which Psi is
#: reported as near singular.
_COND_TOL = 1e8


# --------------------------------------------------------------------------- state
@dataclass
class RandomEffectsState:
    """Sampler state of a random-effects model, carried between visits of one chain.

    Attributes
    ----------
    n_columns : int
        Number of predictor columns the state belongs to (the base class resets the
        state when it changes).
    n_clusters : int
        Number of clusters J.
    slope_columns : tuple of int
        Columns of X with a random slope (after demotion of cluster-constant ones).
    psi_precision : ndarray of shape (q, q)
        Current Psi^-1, in the sampler's units (see ``y_exponent``).
    psi_sqrt : ndarray of shape (q, q)
        A square root C of Psi (C C' = Psi), in the sampler's units.
    sigma2 : float or ndarray of shape (J,)
        Residual variance (one per cluster when heteroscedastic), in the sampler's units.
    sigma0_sq, nu : float
        Hyperparameters of the cluster-specific residual variances
        (heteroscedastic only): sigma_j^-2 ~ Gamma(nu / 2, rate nu sigma0^2 / 2);
        sigma0^2 in the sampler's units.
    y_exponent : int
        The sampler works on y / 2^y_exponent and x_k / 2^x_exponents[k] (powers of two near
        each column's SD, chosen at the chain's first visit and kept while the state is
        used): exact rescalings, so results are those of the original units, without over-
        or underflow for data of order 1e-100 or 1e100. Psi's entry (k, l) is in the units of
        y^2 / (z_k z_l) of the rescaled columns, sigma^2 in those of y^2.
    x_exponents : ndarray of int of shape (p,)
        The exponents of the predictor columns.
    beta : ndarray of shape (p + 1,)
        Fixed effects (intercept first) of the last step, on the original y scale.
    b : ndarray of shape (J, q)
        Random effects of the last step, on the original scale (clusters without observed y:
        drawn from the population).
    n_steps : int
        Gibbs steps run so far on this chain.
    trace : dict of ndarray
        Per step of the last visit, on the original scale: ``"sigma2"`` (the residual variance,
        or sigma0^2 when heteroscedastic) and ``"psi"`` (shape (steps, q, q)), for convergence
        checks. (A slope variance of a target of order 1e-99 on a predictor of order 1e99 is
        below the smallest double and shows as 0; the sampler itself works in rescaled units.)
    logged : set of str
        Keys of the messages already logged on this chain (each hard case is reported
        once per chain, not at every visit).
    """

    n_columns: int
    n_clusters: int
    slope_columns: tuple
    psi_precision: np.ndarray
    psi_sqrt: np.ndarray
    sigma2: Any
    sigma0_sq: float = 1.0
    nu: float = 1.0
    y_exponent: int = 0
    x_exponents: np.ndarray | None = None
    beta: np.ndarray | None = None
    b: np.ndarray | None = None
    n_steps: int = 0
    trace: dict = field(default_factory=dict)
    logged: set = field(default_factory=set)


# --------------------------------------------------------------------------- draws
class _RandomEffectsNormalDraw(Draw):
    """One posterior draw (beta*, b*_j, Psi*, sigma*^2) of the linear mixed model."""

    def __init__(self, beta, slope_columns, b, psi_sqrt, sigma, nu, sigma0_sq, name):
        self.beta = beta  # (p + 1,), intercept first
        self.slope_columns = np.asarray(slope_columns, dtype=int)
        self.b = b  # (J, q)
        self.psi_sqrt = psi_sqrt
        self.sigma = sigma  # scalar, or (J,) when heteroscedastic
        self.nu, self.sigma0_sq = nu, sigma0_sq
        self.name = name

    @property
    def n_clusters(self) -> int:
        return self.b.shape[0]

    def _effects(self, groups, rng):
        """Random effects and residual SDs per row; new clusters drawn from the population."""
        if groups is None:
            raise ValueError(f"{self.name}: this draw has random effects and needs cluster codes (groups).")
        hetero = np.ndim(self.sigma) > 0
        q = self.b.shape[1]

        def draw_new(codes, inverse, rows):
            new_b = rng.standard_normal((len(codes), q)) @ self.psi_sqrt.T
            if not hetero:
                return new_b
            new_sd = 1.0 / np.sqrt(rng.gamma(self.nu / 2, 2.0 / (self.nu * self.sigma0_sq), size=len(codes)))
            return np.column_stack([new_b, new_sd])

        table = np.column_stack([self.b, self.sigma]) if hetero else self.b
        rows = rows_of_clusters(table, groups, draw_new)
        b_rows, sd_rows = (rows[:, :q], rows[:, q]) if hetero else (rows, self.sigma)
        return b_rows, sd_rows

    def _linear_predictor(self, X, b_rows):
        eta = self.beta[0] + X @ self.beta[1:]
        eta += b_rows[:, 0]
        if len(self.slope_columns):
            eta += np.einsum("ij,ij->i", X[:, self.slope_columns], b_rows[:, 1:])
        return eta

    def sample(self, X, groups, rng):
        X = np.asarray(X, dtype=float).reshape(len(groups) if groups is not None else len(X), -1)
        b_rows, sd_rows = self._effects(groups, rng)
        return self._linear_predictor(X, b_rows) + sd_rows * rng.standard_normal(len(X))


class _RandomEffectsPMMDraw(_RandomEffectsNormalDraw):
    """Predictive mean matching on predictions that include the random effects."""

    def __init__(self, normal: _RandomEffectsNormalDraw, yhat_donors, y_donors, donors):
        self.__dict__.update(normal.__dict__)
        self.yhat_donors = yhat_donors
        self.y_donors = y_donors
        self.donors = donors

    def sample(self, X, groups, rng):
        X = np.asarray(X, dtype=float).reshape(len(groups) if groups is not None else len(X), -1)
        b_rows, _ = self._effects(groups, rng)
        target = self._linear_predictor(X, b_rows)
        # distinct donors within a cluster: shared donors would correlate the cluster's imputations
        strata = None if groups is None else np.asarray(groups)
        return self.y_donors[pmm_match(self.yhat_donors, target, self.donors, rng, strata)]


def _start_values(suff: MixedCrossProducts, q, heteroscedastic):
    """Moment-based start: OLS residual variance split between cluster and residual level."""
    if heteroscedastic:
        XX, Xy, yy = suff.XX_j.sum(0), suff.Xy_j.sum(0), suff.yy_j.sum()
    else:
        XX, Xy, yy = suff.XX, suff.Xy, suff.yy
    beta = np.linalg.lstsq(XX, Xy, rcond=None)[0]
    rss = max(float(yy - beta @ Xy), 0.0)
    var_e = max(rss / max(suff.n - len(beta), 1), 1e-6 * yy / suff.n)
    if not var_e > 0:  # a perfect fit (e.g. one observed row): any positive start will do
        var_e = 1.0  # the sampler's units: y / 2^e_y with 2^e_y near y's SD or magnitude
    # Start Psi wide (half the residual variance on each random effect, slopes scaled by
    # their column's variance): from a wide start b_j is close to the per-cluster fit and
    # the first Psi draw already reflects the data; a narrow start shrinks b_j and Psi
    # climbs out slowly (the usual slow escape from zero of the centred parametrisation).
    zvar = np.ones(q)
    if q > 1:
        n_tot = suff.ZW[:, 0, 0].sum()
        s = suff.ZW[:, 0, suff.z_active[1:]].sum(0)
        ss = np.array([suff.ZZ[:, k, k].sum() for k in range(1, q)])
        zvar[1:] = ss / n_tot - (s / n_tot) ** 2
        # a slope column with no spread cannot reach the sampler (it is dropped as constant or
        # demoted to a fixed effect); guard anyway, in the sampler's units (rescaled columns)
        zvar[1:] = np.where(zvar[1:] > 0, zvar[1:], 1.0)
    psi = np.diag(0.5 * var_e / zvar)
    sigma2 = 0.5 * var_e
    return np.linalg.inv(psi), np.linalg.cholesky(psi), sigma2


class RandomEffectsNormal(BaseConditionalImputer):
    r"""Two-level normal imputation by a warm-started Gibbs sampler (mice's ``2l.pan``).

    Model, for row i of cluster j:

    .. math::

        y_{ij} = x_{ij}'\beta + z_{ij}'b_j + e_{ij},\quad
        b_j \sim N_q(0, \Psi),\quad e_{ij} \sim N(0, \sigma^2)

    where x = (1, every predictor column) are the fixed effects (role-1 and role-2
    columns, and the cluster-mean columns the engine builds for roles 3 and 4) and
    z = (1, role-2 columns) the random effects (random intercept always, random slopes
    for role 2/4). Priors (pan's defaults, Schafer & Yucel 2002, as mice's ``2l.pan``
    passes them: a = 1, Binv = 1, c = q, Dinv = I_q):

    .. math::

        p(\beta) \propto 1,\quad \sigma^2 \sim IW(a, B_{inv}),\quad
        \Psi \sim IW(c, D_{inv}),

    with IW(nu, S) meaning Psi^-1 ~ Wishart(nu, S^-1), so sigma^-2 ~ Gamma(a/2, rate Binv/2).

    Full conditionals of one Gibbs step (observed rows only; n of them, J_o clusters
    with at least one observed y; M_j = Z_j'Z_j + sigma^2 Psi^-1):

    1. beta | Psi, sigma^2, y ~ N(V X'V_y^-1 y, V) with V^-1 = sum_j X_j' V_j^-1 X_j,
       V_j = sigma^2 I + Z_j Psi Z_j', i.e. b integrated out; by Woodbury
       X_j'V_j^-1 X_j = (X_j'X_j - X_j'Z_j M_j^-1 Z_j'X_j) / sigma^2.
    2. b_j | beta, Psi, sigma^2, y ~ N(M_j^-1 Z_j'(y_j - X_j beta), sigma^2 M_j^-1),
       independently over clusters (one batched Cholesky of the (J, q, q) stack M).
    3. Psi | b ~ IW(c + J_o, Dinv + sum_j b_j b_j').
    4. sigma^2 | beta, b ~ IW(a + n, Binv + sum_ij (y_ij - x_ij'beta - z_ij'b_j)^2).

    Steps 1-2 draw (beta, b) jointly from p(beta, b | Psi, sigma^2, y) (blocking by
    collapsing b out of beta's conditional). Pan alternates b | beta and beta | b, and
    beta's intercept and slopes are confounded with the means of b_j, which makes its
    chain crawl when clusters are large or tau^2 is large relative to sigma^2 / n_j;
    drawing them jointly removes that dependence, and the chain's memory sits in
    (Psi, sigma^2) only. All four steps use the per-cluster cross-products Z_j'[X_j,
    y_j] (and global X'X, X'y, y'y) computed once per visit by ``np.bincount`` over the
    cluster codes, so a step costs O(J q^2 p) regardless of n.

    Clusters with no observed y (systematically missing) take no part in the steps
    (their b_j would be pure prior draws; leaving them out is the same posterior with
    better mixing); after the last step their b_j ~ N(0, Psi) (and, heteroscedastic,
    sigma_j^2 from its hierarchical prior). Clusters unseen at fit get the same draws at
    sample time, one per cluster. Imputations are y* = x'beta + z'b_j + sigma e*.

    ``heteroscedastic=True`` gives cluster-specific residual variances with the
    hierarchical prior of mice's ``2l.norm`` (Kasim & Raudenbush 1998):
    sigma_j^-2 ~ Gamma(nu/2, rate nu sigma0^2/2), flat priors on sigma0^2 and on
    1/nu. Step 1 weights cluster j by 1/sigma_j^2 and step 4 becomes
    sigma_j^-2 ~ Gamma((n_j + nu)/2, rate (RSS_j + nu sigma0^2)/2), followed by
    sigma0^2 ~ Gamma(J_o nu/2 + 1, rate nu J_o / (2 H)) (H the harmonic mean of
    sigma_j^2) and 2l.norm's gamma approximation to nu's conditional,
    nu ~ Gamma(J_o/2 - 1, rate J_o (sigma0^2/H - log sigma0^2 + log G - 1)/2)
    (G the geometric mean). Unlike 2l.norm, role-1 predictors are kept.

    Parameters
    ----------
    n_gibbs : int, default=4
        Gibbs steps per visit. The state carries over between the chained-equations
        iterations of a chain, so over ``max_iter`` iterations the chain runs
        ``n_burnin + max_iter * n_gibbs`` steps (R's 2l.pan restarts pan with 500 steps
        at every visit). The default comes from convergence checks on popmis
        (``popular`` with a random slope of ``sex``, ``texp`` fixed;
        ``benchmarks/bench_random_effects_kernel.py --convergence``). In a long chain
        the lag-1 / lag-3 / lag-10 autocorrelations of the parameter draws are
        0.18 / 0.03 / -0.01 for sigma^2, 0.37 / 0.12 / 0.01 for Psi_00 and
        0.56 / 0.22 / -0.01 for the slope variance Psi_11 (the slowest). What the
        imputations need is that the chained iterations mix: with 20 chains x 20
        iterations, the split-R-hat of the chain means and variances of the imputed
        values is 1.00-1.01 and the lag-1 autocorrelation of the chain means across
        iterations is about 0 for 3, 4 and 5 steps per visit alike (-0.12 with 4), and the
        popmis parity with R's 2l.pan holds (tests/validation/test_parity_popmis.py); 4 leaves the
        slowest parameter's draws of successive visits correlated at about 0.15. With
        ``heteroscedastic=True`` the hyperparameter sigma0^2 mixes slower (lag-10
        autocorrelation 0.14); raise ``n_gibbs`` then, or when clusters are small and the
        ICC low (Psi mixes slower). A step costs O(J q^2 p) (about 3-4 ms with
        J = 10,000, q = 3, p = 6, one core).
    n_burnin : int, default=5
        Extra steps at the first visit of a chain (no state yet), from a moment-based
        start (OLS residual variance split evenly between the levels, Psi diagonal). On
        popmis the 20-chain means of sigma^2 and Psi are within 1.5 Monte Carlo SE of
        the stationary means from step 5 on (the slope variance starts 19 SE high), and
        the chained iterations, whose first ones are discarded as burn-in anyway,
        continue it; heteroscedastic, sigma0^2 needs about 10 steps (raise it then).
    heteroscedastic : bool, default=False
        Cluster-specific residual variances (mice's 2l.norm model) instead of one
        residual variance.
    prior : {"weak", "scaled", "pan"} or dict, default="weak"
        ``"weak"``: a = 1, Binv = 0.05 var(y) for sigma^2; c = q, Dinv = 0.05 var(y)
        diag(1, 1/var(z_k)) for Psi, with var the observed variances (Binv = var(y) made
        sigma^2's posterior about (var(y) + RSS) / n, 37% too large for 20 clusters of 5 rows
        with a well-predicted y; 4% at 0.05 var(y), MC SE 4%). ``"scaled"``: pan's
        numbers (a = 1, Binv = 1, c = q, Dinv = I_q) applied to y / sd(y) and z_k / sd(z_k),
        i.e. Dinv = var(y) diag(1, 1/var(z_k)): worth one pseudo-cluster whose effect has
        the total variance of y, which with few clusters and a low ICC inflates Psi (with
        30 clusters and an ICC of 0.1, the completed data's tau^2 by 12%, and by 38% where
        whole clusters are imputed); ``"weak"`` gives that pseudo-cluster a twentieth of
        the variance (within 0.3% and 8% in those designs), and is the default. Both are
        scale-equivariant, the imputations do not depend on the units of y or of any
        predictor (multiplying a column by c multiplies the imputations of y by c if it is
        y, and changes nothing otherwise; by a power of two, bit for bit), and a shift of y
        or of a fixed-effect predictor changes nothing but the imputations' location. A
        shift of a random-slope predictor is different: random slopes stay uncentred (the
        random intercept is the cluster effect where that predictor is 0), so the shift
        re-defines the random intercept, and Psi's prior, set on the uncentred column, is
        not invariant to it (the likelihood is): the imputations then agree only up to the
        prior's influence, which vanishes as the number of clusters grows. The
        heteroscedastic hyperpriors (flat on sigma0^2 and 1/nu) are scale-equivariant too.
        ``"pan"``: the same numbers on the data's own scale, exactly as mice's
        2l.pan, and deliberately not scale-equivariant (it reproduces R): for a target
        with variance well below 1 they swamp Psi and sigma^2 (popularity in units of 1e-8
        would be imputed with an SD of about 1e6 of those units), above it they are
        negligible. A dict with keys ``a``, ``Binv``, ``c``, ``Dinv`` (scalar or (q, q)) sets
        them directly, on the data's scale, equally not equivariant; where such numbers
        cannot be represented in the sampler's units (y of order 1e-99 with a random slope
        of order 1e99) the draw raises a ValueError pointing to ``"weak"``. Ignored
        for sigma^2 when heteroscedastic (the hierarchical prior replaces it).

    Notes
    -----
    Hard cases (each logged once per chain through ``context.log``, naming the variable):

    - a cluster with a single observed row: kept; its random slopes are identified
      only through Psi (shrinkage to the population).
    - a cluster with no observed y: imputed from the population distribution.
    - fewer clusters with observed y than 2 q: Psi is dominated by its proper prior
      (documented shrinkage toward Dinv / (c + J_o - q - 1)); no error.
    - a role-2 predictor constant within every cluster: its random slope is not
      identified; it is kept as a fixed effect only.
    - near-singular Psi (a variance near zero or a correlation near +-1): reported;
      the sampler works with Psi^-1 and a square root of Psi, never inverts Psi, and
      adds a relative ridge only if a Cholesky factorisation fails.

    Messages are logged once per chain (the state remembers them), not at every visit.

    Complexity per visit: O(n_obs q p) for the cross-products (one bincount per
    product), then O(n_gibbs J q^2 p); sampling is O(n_rows p).

    See Also
    --------
    RandomEffectsPMM : the same sampler, imputing observed values by predictive mean
        matching.

    References
    ----------
    Schafer, J. L. & Yucel, R. M. (2002). Computational strategies for multivariate
    linear mixed-effects models with missing values. JCGS 11, 437-457.
    Kasim, R. M. & Raudenbush, S. W. (1998). Application of Gibbs sampling to nested
    variance components models with heterogeneous within-group variance. JEBS 23, 93-116.

    Examples
    --------
    >>> import numpy as np
    >>> from skmlmi.conditional.random_effects import RandomEffectsNormal
    >>> rng = np.random.default_rng(0)
    >>> groups = np.repeat(np.arange(30), 10)
    >>> X = rng.normal(size=(300, 1))
    >>> y = 1 + X[:, 0] + rng.normal(size=30)[groups] + rng.normal(size=300)
    >>> observed = rng.random(300) < 0.7
    >>> draw, state = RandomEffectsNormal().draw(y, observed, X, np.array([2]), groups, rng)
    >>> draw.sample(X[~observed], groups[~observed], rng).shape == ((~observed).sum(),)
    True
    >>> state.n_steps
    9
    """

    target_kinds = frozenset({"continuous", "integer"})
    r_names = {"2l.pan": {}, "2l.lmer": {}, "2l.norm": {"heteroscedastic": True}}
    accepted_roles = frozenset({1, 2, 3, 4})
    requires_groups = True
    handles_systematic = True
    default_cluster_means = True
    multiple_factors = True
    slopes_with_several_factors = True

    _parameter_constraints = {
        "n_gibbs": [Interval(Integral, 1, None, closed="left")],
        "n_burnin": [Interval(Integral, 0, None, closed="left")],
        "heteroscedastic": ["boolean"],
        "prior": [StrOptions({"pan", "scaled", "weak"}), dict],
    }

    def _validate_params(self):
        super()._validate_params()
        check_prior(self.prior)

    def __init__(self, n_gibbs: int = 4, n_burnin: int = 5, heteroscedastic: bool = False, prior: str | dict = "weak"):
        self.n_gibbs = n_gibbs
        self.n_burnin = n_burnin
        self.heteroscedastic = heteroscedastic
        self.prior = prior

    # ------------------------------------------------------------------ helpers
    def _usable_columns(self, X, observed, roles, groups, context):
        # Redundant columns are found inside the sampler from the cross-products it
        # builds anyway (one pass over the rows instead of two); see MixedCrossProducts.
        return np.ones(X.shape[1], dtype=bool)

    def _fit_chain(self, y, observed, X, roles, groups, rng, state, context):
        """Validate, build cross-products, run the Gibbs steps; returns what a draw needs."""
        name = self._name(context)
        if not observed.any():
            raise self._no_observed_values(context)
        J = int(context.n_clusters)
        state = self._reuse_state(state, RandomEffectsState)
        log_once = self._event_log(state)

        hetero = bool(self.heteroscedastic)
        suff = MixedCrossProducts(y, observed, X, roles, groups, J, hetero)
        for index, reason in suff.dropped.items():
            log_once(f"{context.target!r}: predictor {context.predictor_name(index)!r} dropped: {reason}")
        # A role-2 column constant within every cluster has no within-cluster slope.
        keep = [0]
        for k, column in enumerate(suff.candidates, start=1):
            if suff.slope_constant[k - 1]:
                log_once(
                    f"{context.target!r}: predictor {context.predictor_name(int(column))!r} is constant within "
                    "clusters, so its random slope is not identified; it is kept as a fixed effect only"
                )
            else:
                keep.append(k)
        keep = np.asarray(keep)
        slope_columns = tuple(int(c) for c in suff.candidates[keep[1:] - 1])
        q = len(keep)
        self._log_cluster_problems(suff, J, q, context, log_once)

        fresh = (
            state is None
            or state.n_clusters != J
            or state.slope_columns != slope_columns
            or state.n_columns != X.shape[1]
            or (np.ndim(state.sigma2) > 0) != hetero
            or state.x_exponents is None
        )
        # The sampler's units: powers of two near the SDs, kept for the chain (the state is in them)
        suff.rescale(*(suff.default_exponents() if fresh else (state.y_exponent, state.x_exponents)))
        suff.set_slopes(keep)
        sd_y = float(np.sqrt(suff.var_y)) if suff.var_y > 0 else 1.0
        sd_z = [float(np.sqrt(suff.var_x[c])) if suff.var_x[c] > 0 else 1.0 for c in slope_columns]
        prior = prior_values(self.prior, q, sd_y, sd_z, suff, context.target)

        if fresh:
            precision, psi_sqrt, sigma2 = _start_values(suff, q, hetero)
            state = RandomEffectsState(
                n_columns=X.shape[1],
                n_clusters=J,
                slope_columns=slope_columns,
                psi_precision=precision,
                psi_sqrt=psi_sqrt,
                sigma2=np.full(J, sigma2) if hetero else sigma2,
                sigma0_sq=float(sigma2),
                nu=1.0,
                logged=log_once.logged,
                y_exponent=suff.y_exponent,
                x_exponents=suff.x_exponents,
            )
            n_steps = self.n_gibbs + self.n_burnin
        else:
            n_steps = self.n_gibbs
        beta_hat, b_posterior, ridged = normal_mixed_gibbs(suff, state, n_steps, prior, hetero, rng)
        if ridged:
            log_once(
                f"{context.target!r}: a ridge was added to a numerically singular precision matrix in the "
                "random-effects sampler (near-singular Psi or collinear predictors)"
            )
        self._check_psi(state, suff, context, log_once)

        # systematically missing clusters: effects (and variances) from the population
        empty = suff.empty
        if len(empty):
            state.b[empty] = rng.standard_normal((len(empty), q)) @ state.psi_sqrt.T
            if hetero:
                state.sigma2[empty] = 1.0 / rng.gamma(state.nu / 2, 2.0 / (state.nu * state.sigma0_sq), len(empty))
        # back to the caller's units (exact): the draw imputes on the original scale
        state.b = suff.effects_original(state.b)
        with np.errstate(over="ignore", under="ignore"):  # a slope variance ~(1e-99 / 1e99)^2 is not a double
            state.trace = {
                "sigma2": suff.variance_original(state.trace["sigma2"]),
                "psi": suff.psi_original(state.trace["psi"]),
            }
        sigma = np.ldexp(np.sqrt(state.sigma2), suff.y_exponent)
        sigma = sigma if hetero else float(sigma)
        draw = _RandomEffectsNormalDraw(
            state.beta.copy(),
            slope_columns,
            state.b.copy(),
            suff.psi_sqrt_original(state.psi_sqrt),
            sigma,
            state.nu,
            float(suff.variance_original(state.sigma0_sq)),
            name,
        )
        log_once.flush(context)
        return draw, state, suff, beta_hat, b_posterior

    @staticmethod
    def _log_cluster_problems(suff, J, q, context, log_once):
        target = context.target
        single = suff.fitted[suff.counts[suff.fitted] == 1]
        if len(single):
            log_once(
                f"{target!r}: {len(single)} cluster(s) with a single observed row "
                f"({cluster_names(single, context.cluster_name)}); their random effects are shrunk to the "
                "population distribution"
            )
        empty = suff.empty
        if len(empty):
            log_once(
                f"{target!r}: {len(empty)} cluster(s) with no observed value (systematically missing: "
                f"{cluster_names(empty, context.cluster_name)}); imputed from the population distribution "
                "of the random effects"
            )
        if len(suff.fitted) < 2 * q:
            log_once(
                f"{target!r}: {q} random effect(s) but only {len(suff.fitted)} cluster(s) with observed "
                "values; the random-effects covariance Psi is determined mostly by its prior (shrinkage); "
                "consider fewer random slopes"
            )

    @staticmethod
    def _check_psi(state, suff, context, log_once):
        psi = state.psi_sqrt @ state.psi_sqrt.T
        variances = psi.diagonal()
        if len(variances) > 1:
            d = np.sqrt(np.maximum(variances, np.finfo(float).tiny))  # sampler's units: ~1 unless degenerate
            eig = symmetric_eigenvalues(psi / np.outer(d, d))  # of the correlation matrix
        else:
            eig = (1.0, 1.0)
        sigma2 = float(np.mean(state.sigma2))
        # variance each random effect adds to y: Psi_kk E(z_k^2)
        tiny = variances * suff.mean_z2 < 1e-8 * sigma2
        if eig[0] <= eig[-1] / _COND_TOL or tiny.any():
            with np.errstate(over="ignore", under="ignore"):  # for the message only
                variances = np.diag(suff.psi_original(psi))
            log_once(
                f"{context.target!r}: the random-effects covariance Psi is near singular (condition number of "
                f"its correlation matrix {eig[-1] / max(eig[0], np.finfo(float).tiny):.2g}, variances "
                f"{variances}); "
                "a random effect has (almost) no variance or two are perfectly correlated; "
                "consider dropping a random slope",
                key="near-singular Psi",
            )

    def _draw(self, y, observed, X, roles, groups, rng, state, context: DrawContext):
        if groups.ndim == 2:
            draw, state, _ = fit_several_factors(self, y, observed, X, roles, groups, rng, state, context, donors=False)
            return draw, state
        draw, state, *_ = self._fit_chain(y, observed, X, roles, groups, rng, state, context)
        return draw, state


class RandomEffectsPMM(RandomEffectsNormal):
    r"""Predictive mean matching on two-level predictions (miceadds' ``2l.pmm``).

    Fits the linear mixed model of :class:`RandomEffectsNormal` with the same
    warm-started Gibbs sampler, then imputes by matching on predictions that include
    the random effects: each row to impute receives the observed value of one of the
    ``donors`` observed rows whose predictions are closest (drawn at random), so only
    observed values are imputed (integers stay integers, the support and skewness of y
    are kept).

    Matching type (``matchtype``); recipients always use the draw,
    y_hat_mis = x'beta* + z'b*_j (b*_j ~ N(0, Psi*) in clusters without observed y or
    unseen at fit):

    - 1 (default; mice's default type for ``pmm``, adapted to random effects): donors'
      fixed effects at their conditional posterior mean beta_hat = E(beta | Psi*,
      sigma*^2, y), their random effects a fresh draw b'_j ~ p(b_j | beta_hat, Psi*,
      sigma*^2, y), so y_hat_obs = x'beta_hat + z'b'_j.
    - 2 (miceadds' 2l.pmm with ``match_sampled_pars = TRUE``): the draw (beta*, b*_j)
      for donors and recipients alike. Donors of the recipient's own cluster with the
      same predictor values then tie exactly with it and are always among the closest,
      so with few-valued predictors and small clusters the imputations copy the
      cluster's observed values: the ICC of the completed data rises (by 0.05 with 8
      rows per cluster, an ICC of 0.5 and half of y missing; see
      tests/conditional/test_random_effects.py). For comparison with miceadds only.

    Why not donors at the posterior means b_hat_j, as mice's type 1 would be read (and as
    this model did before)? A donor's own y is part of the data that estimate its
    cluster's effect, so its residual around b_hat_j is an in-sample residual: in a
    random-intercept model with shrinkage factor lambda_j = tau^2 / (tau^2 + sigma^2 / n_j),
    Var(y - x'beta - b_hat_j) = sigma^2 - V_j and Cov(y - x'beta - b_hat_j, b_hat_j) = V_j,
    where V_j = lambda_j sigma^2 / n_j = Var(b_j | y). Donors' residuals are too small and
    grow with their predictions, so the imputations have too little within-cluster
    variance and too strong a relation with the predictors. In single-level PMM the same
    defect is of order p / n and negligible; here it is of order 1 / n_j per cluster (8%
    of sigma^2 with 9 observed rows and an ICC of 0.2), and it tilted the slope of a
    whole-number predictor by +8% in a known-truth simulation
    (benchmarks/validate_pmm_slope.py). With b'_j drawn given beta_hat the donors'
    residuals have variance sigma^2 and are uncorrelated with their predictions (b'_j and
    b_j are exchangeable given the data), while beta_hat (not beta*) keeps the
    uncertainty about beta in the imputations, which matching donors and recipients on
    the same beta* (type 2) partly cancels.

    Matching is global (donors from any cluster), as miceadds does; the cluster enters
    through b_j in the predictions. Recipients of one cluster get distinct donors wherever
    their pools of ``donors`` closest allow: recipients whose predictions are equal (same
    cluster, same predictor values: common with binary or few-valued predictors) would
    otherwise share a donor with probability 1 / ``donors``, which correlates their
    imputations and shrinks the within-cluster variance (popmis: sigma^2 3% low with the
    default 5 donors, 9% with one).

    Parameters
    ----------
    donors : int, default=5
        Size of the pool of closest donors to draw from.
    matchtype : {1, 2}, default=1
        Which parameters the donors' predictions use (see above).
    n_gibbs, n_burnin, prior
        As :class:`RandomEffectsNormal` (homoscedastic model): the default prior ``"weak"`` (and ``"scaled"``)
        is scale-equivariant, ``"pan"`` reproduces R and is not.

    Examples
    --------
    >>> import numpy as np
    >>> from skmlmi.conditional.random_effects import RandomEffectsPMM
    >>> rng = np.random.default_rng(0)
    >>> groups = np.repeat(np.arange(30), 10)
    >>> X = rng.normal(size=(300, 1))
    >>> y = np.round(1 + X[:, 0] + rng.normal(size=30)[groups] + rng.normal(size=300))
    >>> observed = rng.random(300) < 0.7
    >>> draw, _ = RandomEffectsPMM().draw(y, observed, X, np.array([1]), groups, rng)
    >>> set(draw.sample(X[~observed], groups[~observed], rng)) <= set(y[observed])
    True
    """

    r_names = {"2l.pmm": {}}

    _parameter_constraints = {
        "donors": [Interval(Integral, 1, None, closed="left")],
        "matchtype": [Interval(Integral, 1, 2, closed="both")],
        "n_gibbs": [Interval(Integral, 1, None, closed="left")],
        "n_burnin": [Interval(Integral, 0, None, closed="left")],
        "prior": [StrOptions({"pan", "scaled", "weak"}), dict],
    }

    def __init__(
        self, donors: int = 5, matchtype: int = 1, n_gibbs: int = 4, n_burnin: int = 5, prior: str | dict = "weak"
    ):
        self.donors = donors
        self.matchtype = matchtype
        self.n_gibbs = n_gibbs
        self.n_burnin = n_burnin
        self.prior = prior

    heteroscedastic = False  # the matching model is homoscedastic

    def _draw(self, y, observed, X, roles, groups, rng, state, context: DrawContext):
        if groups.ndim == 2:
            # matchtype 1: donors' fixed effects at beta_hat and intercepts drawn given it; 2: the draw itself
            normal, state, yhat = fit_several_factors(
                self, y, observed, X, roles, groups, rng, state, context, donors=True
            )
            if self.matchtype == 2:
                yhat = normal._linear_predictor(X[observed], normal.row_effects(X[observed], groups[observed], rng))
            return FactorPMMDraw(normal, yhat, y[observed].copy(), int(self.donors)), state
        normal, state, suff, beta_hat, b_posterior = self._fit_chain(y, observed, X, roles, groups, rng, state, context)
        Xo, go = X[observed], groups[observed]
        if self.matchtype == 1:
            # donors: fixed effects at their posterior mean, random effects a fresh draw given it
            # (never the posterior mean b_hat_j, whose in-sample residuals lack Var(b_j | y); see Notes)
            b_donors = np.zeros_like(normal.b)
            b_donors[suff.fitted] = b_posterior.draw(rng)
            fitted = _RandomEffectsNormalDraw(
                beta_hat, normal.slope_columns, b_donors, normal.psi_sqrt, 0.0, 1.0, 1.0, ""
            )
            yhat_donors = fitted._linear_predictor(Xo, b_donors[go])
        else:
            yhat_donors = normal._linear_predictor(Xo, normal.b[go])
        draw = _RandomEffectsPMMDraw(normal, yhat_donors, y[observed].copy(), int(self.donors))
        draw.name = f"{type(self).__name__} for {context.target!r}"
        return draw, state
