r"""Two-stage imputation: per-cluster fits combined by a random-effects meta-analysis.

The models of this room are micemd's ``2l.2stage.norm``, ``2l.2stage.pmm``,
``2l.2stage.bin`` and ``2l.2stage.pois`` (Resche-Rigon & White 2018; Audigier et al.
2018), built for individual participant data where a variable is missing in whole
clusters (studies that never measured it, *systematically missing*) as well as in
single rows (*sporadically missing*). Stage 1 fits the target's regression separately
in every cluster; stage 2 pools the cluster estimates by a random-effects
meta-analysis (:mod:`skmlmi.meta_analysis`), which borrows strength across clusters
without pretending that they are one population.

Model, for row i of cluster j:

.. math::

    g(E[y_{ij}]) = d_{ij}'\beta_j,\qquad \beta_j \sim N_k(B' z_j, \Psi),

with ``d_ij = (1, x_ij)`` the within-cluster design (every predictor that varies within
clusters gets a cluster-specific coefficient), ``z_j = (1, cluster-level predictors of
cluster j)`` the study-level design of the meta-regression, and, for the normal model,
``y_ij = d_ij' beta_j + e_ij``, ``e_ij ~ N(0, sigma_j^2)``,
``log sigma_j^2 ~ N(mu_s, psi_s)``.

What is done better than micemd (R_METHODS.md §3.9-§3.11):

* the within-cluster covariance of ``beta_hat_j`` is the cluster's own
  ``sigma_j^2 (X_j'X_j)^-1`` (micemd uses the *global* ``X'X``, about J times too small);
* ``(B, Psi)`` are drawn from their approximate posterior whatever the estimator (micemd
  draws no ``Psi`` under its default method of moments);
* predictors constant within clusters, which a per-cluster fit cannot estimate, enter
  the meta-regression as study-level covariates (micemd crashes);
* predictive mean matching uses each row's own cluster draw whatever the row order
  (micemd is correct only when rows are sorted by cluster), and is vectorised;
* the residual variances are pooled on the log scale with the exact moments of
  ``log chi^2`` (micemd uses the approximation ``2 / (df - 4)`` and needs ``df > 4``).

This module knows nothing about DataFrames, column names or the chained-equations loop.

References
----------
Resche-Rigon, M. and White, I. R. (2018). Multiple imputation by chained equations for
systematically and sporadically missing multilevel data. Statistical Methods in Medical
Research 27, 1634-1649.

Audigier, V., White, I. R., Jolani, S., Debray, T. P. A., Quartagno, M., Carpenter, J.,
van Buuren, S. and Resche-Rigon, M. (2018). Multiple imputation for multilevel data with
continuous and binary variables. Statistical Science 33, 160-183.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from scipy import special
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions

from .._kernels import (
    batched_irls,
    cluster_counts,
    cluster_means,
    constant_within_clusters,
    find_redundant_columns,
    pmm_match,
    power_of_two_exponents,
    rows_of_clusters,
    weighted_cluster_cross_products,
)
from ..meta_analysis import draw_study_effects, meta_analysis, study_posterior
from .base import BaseConditionalImputer, Draw, cluster_names

__all__ = ["TwoStageNormal", "TwoStagePMM", "TwoStageLogistic", "TwoStagePoisson"]

#: relative tolerance on the smallest eigenvalue of a cluster's scaled X_j'X_j
_SINGULAR = 1e-8


# --------------------------------------------------------------------------- design
class _Layout:
    """How a row's predictors split into the within-cluster design and the study-level design.

    ``within`` columns vary within some cluster: they get cluster-specific coefficients,
    centred and scaled by their observed-row mean and SD (so the separation guard of the
    GLMs is scale free). ``level2`` columns are constant within every cluster: they are
    the meta-regression's covariates, centred and scaled over the clusters.
    """

    def __init__(self, within, level2, center, scale, z_center, z_scale):
        self.within, self.level2 = within, level2
        self.center, self.scale = center, scale
        self.z_center, self.z_scale = z_center, z_scale

    def design(self, X: np.ndarray) -> np.ndarray:
        """``(n, k)`` within design ``[1, (x - center) / scale]``."""
        W = (X[:, self.within] - self.center) / self.scale
        return np.column_stack([np.ones(len(X)), W])

    def study(self, Z: np.ndarray) -> np.ndarray:
        """``(J, d)`` study design ``[1, (z - z_center) / z_scale]`` from raw cluster values."""
        return np.column_stack([np.ones(len(Z)), (Z - self.z_center) / self.z_scale])


def _estimable_designs(xtx: np.ndarray, n_j: np.ndarray, k: int, min_df: int):
    """Clusters whose design supports a fit: enough rows, and X_j'X_j numerically nonsingular.

    Returns (estimable mask, too-few-rows mask, singular mask).
    """
    few = n_j < k + min_df
    singular = np.zeros(len(n_j), dtype=bool)
    check = ~few
    if check.any():
        A = xtx[check]
        d = np.sqrt(np.clip(np.diagonal(A, axis1=1, axis2=2), 1e-300, None))
        corr = A / (d[:, :, None] * d[:, None, :])
        eig = np.linalg.eigvalsh(corr)
        singular[check] = eig[:, 0] <= _SINGULAR * eig[:, -1]
    return ~few & ~singular, few, singular


class _TwoStageState:
    """Warm start: Psi estimates of the meta-analyses and the GLM coefficients of the chain.

    ``psi`` is in the model's units: for the normal model y / 2^y_exponent.
    """

    def __init__(self, n_columns, psi=None, psi_sigma=None, coefficients=None, y_exponent=0):
        self.n_columns = n_columns
        self.psi, self.psi_sigma, self.coefficients = psi, psi_sigma, coefficients
        self.y_exponent = y_exponent


# --------------------------------------------------------------------------- draws
class _TwoStageDraw(Draw):
    """Cluster-specific coefficients for the J training clusters, and the population for others."""

    def __init__(
        self, layout, coefficients, B, psi, sigma, mu_sigma, psi_sigma, family, name, y_exponent=0, y_center=0.0
    ):
        self.layout = layout
        self.coefficients = coefficients  # (J, k), on the data's scale
        # The population, in the model's units (y - y_center) / 2^y_exponent (exact; normal model):
        # beta_j ~ N(B' z_j, Psi), log sigma_j^2 ~ N(mu_sigma, psi_sigma). Drawn there, mapped back.
        self.B, self.psi = B, psi  # (d, k), (k, k)
        self.sigma = sigma  # (J,) or None, on the data's scale
        self.mu_sigma, self.psi_sigma = mu_sigma, psi_sigma
        self.y_exponent, self.y_center = y_exponent, y_center
        self.family, self.name = family, name

    def _row_coefficients(self, X, groups, rng):
        """Coefficients (n, k) and residual SDs (n,) of each row: its cluster's draw."""
        if groups is None:
            raise ValueError(f"{self.name}: a two-stage draw needs the cluster code of every row.")
        k = self.coefficients.shape[1]

        def draw_new(codes, inverse, rows):
            # clusters unseen at fit: one population draw per cluster, with its own study-level covariates
            Zraw = cluster_means(X[rows][:, self.layout.level2], inverse, len(codes))
            mean = self.layout.study(Zraw) @ self.B
            new = draw_study_effects(mean, np.broadcast_to(self.psi, mean.shape + mean.shape[-1:]), rng)
            new = np.ldexp(new, self.y_exponent)
            new[:, 0] += self.y_center
            if self.sigma is None:
                return new
            log_s2 = self.mu_sigma + np.sqrt(self.psi_sigma) * rng.standard_normal(len(codes))
            return np.column_stack([new, np.ldexp(np.exp(0.5 * log_s2), self.y_exponent)])

        if self.sigma is None:
            return rows_of_clusters(self.coefficients, groups, draw_new), None
        rows = rows_of_clusters(np.column_stack([self.coefficients, self.sigma]), groups, draw_new)
        coef, sigma = rows[:, :k], rows[:, k]
        return coef, sigma

    def linear_predictor(self, X, groups, rng):
        coef, sigma = self._row_coefficients(X, groups, rng)
        return np.einsum("ik,ik->i", self.layout.design(X), coef), sigma

    def sample(self, X, groups, rng):
        eta, sigma = self.linear_predictor(X, groups, rng)
        if self.family == "normal":
            return eta + sigma * rng.standard_normal(len(eta))
        if self.family == "logistic":
            return (rng.random(len(eta)) < special.expit(eta)).astype(float)
        # Poisson: cap the log-mean (exp(30) ~ 1e13) so a wild population draw cannot overflow
        return rng.poisson(np.exp(np.minimum(eta, 30.0))).astype(float)


class _TwoStagePMMDraw(_TwoStageDraw):
    def __init__(self, normal: _TwoStageDraw, yhat_donors, y_donors, donors):
        self.__dict__.update(normal.__dict__)
        self.yhat_donors, self.y_donors, self.donors = yhat_donors, y_donors, donors

    def sample(self, X, groups, rng):
        target, _ = self.linear_predictor(X, groups, rng)
        # distinct donors within a cluster: shared ones would correlate the cluster's imputations
        return self.y_donors[pmm_match(self.yhat_donors, target, self.donors, rng, np.asarray(groups))]


# --------------------------------------------------------------------------- base
class _TwoStageBase(BaseConditionalImputer):
    """Shared machinery: design split, estimability, the meta-analysis and the coefficient draws."""

    accepted_roles = frozenset({1, 2, 3, 4})
    requires_groups = True
    handles_systematic = True
    _family = "normal"

    _parameter_constraints = {
        "method": [StrOptions({"reml", "ml", "mm"})],
        "min_residual_df": [Interval(Integral, 1, None, closed="left")],
    }

    # ------------------------------------------------------------------ stage 0: layout
    def _layout(self, X, observed, groups, J, context):
        level2 = constant_within_clusters(X, groups, J)  # over all rows, observed or not
        within = np.flatnonzero(~level2)
        level2 = np.flatnonzero(level2)
        Xo = X[observed][:, within]
        center = Xo.mean(axis=0) if len(Xo) else np.zeros(len(within))
        scale = Xo.std(axis=0) if len(Xo) else np.ones(len(within))
        scale = np.where(scale > 0, scale, 1.0)
        Zraw = cluster_means(X[:, level2], groups, J)
        Zraw = np.where(np.isnan(Zraw), 0.0, Zraw)  # clusters without rows here: never sampled
        z_center = Zraw.mean(axis=0) if J else np.zeros(len(level2))
        z_scale = Zraw.std(axis=0) if J else np.ones(len(level2))
        z_scale = np.where(z_scale > 0, z_scale, 1.0)
        return _Layout(within, level2, center, scale, z_center, z_scale), Zraw

    def _study_design(self, layout, Zraw, estimable, context, why=""):
        """Study design of the meta-regression, without cluster-level columns constant across estimable clusters."""
        name = f"{type(self).__name__} for {context.target!r}"
        if len(layout.level2):
            drop = find_redundant_columns(Zraw[estimable])
            if drop:
                for index, reason in drop.items():
                    context.log(
                        f"cluster-level predictor {context.predictor_name(int(layout.level2[index]))!r} dropped "
                        f"from the meta-regression: {reason} across the clusters with an estimable fit"
                    )
                keep = np.array([i not in drop for i in range(len(layout.level2))])
                layout.level2 = layout.level2[keep]
                layout.z_center, layout.z_scale = layout.z_center[keep], layout.z_scale[keep]
                Zraw = Zraw[:, keep]
        Z = layout.study(Zraw)
        n_est = int(estimable.sum())
        if n_est <= Z.shape[1]:
            cl = [context.predictor_name(int(i)) for i in layout.level2]
            raise ValueError(
                f"{name}: only {n_est} of {len(estimable)} cluster(s) have an estimable per-cluster fit"
                + (f" (not estimable: {why})" if why else "")
                + f", but the meta-analysis needs more clusters than its {Z.shape[1]} study-level design column(s)"
                + (f" (intercept + cluster-level predictors {cl}); remove cluster-level predictors or" if cl else ";")
                + " use a one-stage random-effects model (RandomEffectsNormal, RandomEffectsLogistic)."
            )
        return Z

    # ------------------------------------------------------------------ stage 2
    def _meta(self, estimates, within, Z, start, context, what):
        """Meta-analysis with the chosen method; falls back to the method of moments (logged)."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            try:
                fit = meta_analysis(estimates, within, design=Z, method=self.method, start=start)
            except (np.linalg.LinAlgError, FloatingPointError) as exc:
                if self.method == "mm":
                    raise
                context.log(f"{what}: {self.method} meta-analysis failed ({exc}); method of moments used instead")
                fit = meta_analysis(estimates, within, design=Z, method="mm")
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            context.log(f"{what}: the {self.method} meta-analysis did not converge; its last iterate is used")
        return fit

    def _coefficient_draws(self, beta_hat, V, estimable, Z, rng, state, context):
        """Meta-analysis of the cluster coefficients and one draw of every cluster's coefficients.

        Estimable clusters: beta*_j ~ N(m_j, V_j) with (V_j, m_j) the posterior given their own
        estimate and N(B*' z_j, Psi*); the others: beta*_j ~ N(B*' z_j, Psi*).
        """
        J, k = beta_hat.shape[0], beta_hat.shape[1]
        start = None if self._reuse_state(state, _TwoStageState, psi=(k, k)) is None else state.psi
        fit = self._meta(
            beta_hat[estimable], V[estimable], Z[estimable], start, context, f"coefficients of {context.target!r}"
        )
        B_star, psi_star = fit.draw(rng)
        mean = Z @ B_star
        post_mean, post_cov = mean.copy(), np.broadcast_to(psi_star, (J, k, k)).copy()
        m_est, v_est = study_posterior(beta_hat[estimable], V[estimable], mean[estimable], psi_star)
        post_mean[estimable], post_cov[estimable] = m_est, v_est
        coefficients = draw_study_effects(post_mean, post_cov, rng)
        return coefficients, B_star, psi_star, fit

    def _log_non_estimable(self, has_rows, estimable, reasons, context):
        """One event per reason listing the clusters with observed values whose fit was not estimable.

        Returns the same in one line (how many clusters for which reason), for the error raised
        when too few clusters are left for the meta-analysis.
        """
        summary = [f"{int((~has_rows).sum())} without observed values"] if (~has_rows).any() else []
        for label, mask in reasons:
            codes = np.flatnonzero(has_rows & mask)
            if codes.size:
                context.log(
                    f"{codes.size} cluster(s) with observed {context.target!r} treated as systematically missing "
                    f"({label}): {cluster_names(codes, context.cluster_name, limit=10)}"
                )
                summary.append(f"{codes.size} with {label}")
        return "; ".join(summary)

    def _check_observed(self, y, observed, groups, context):
        name = self._name(context)
        if not observed.any():
            raise self._no_observed_values(context)
        J = context.n_clusters
        if groups.min(initial=0) < 0 or groups.max(initial=0) >= J:
            raise ValueError(f"{name}: cluster codes must lie in 0..{J - 1}.")
        return name


# --------------------------------------------------------------------------- normal
class TwoStageNormal(_TwoStageBase):
    r"""Two-stage normal imputation (micemd's ``2l.2stage.norm``), vectorised across clusters.

    Model, for row i of cluster j (``d_ij = (1, x_ij)``, every within-cluster predictor
    with a cluster-specific coefficient; ``z_j = (1, cluster-level predictors)``):

    .. math::

        y_{ij} = d_{ij}'\beta_j + e_{ij},\quad e_{ij} \sim N(0, \sigma_j^2),\quad
        \beta_j \sim N_k(B'z_j, \Psi),\quad \log\sigma_j^2 \sim N(\mu_s, \psi_s).

    One visit (one posterior draw):

    1. **Per-cluster least squares**, all clusters at once: ``X_j'X_j`` and ``X_j'y_j``
       from one ``np.bincount`` per cross-product, ``beta_hat_j`` by one batched solve,
       ``s_j^2 = RSS_j / df_j``, ``df_j = n_j - k``. A cluster is *estimable* if
       ``df_j >= min_residual_df``, its scaled ``X_j'X_j`` is numerically nonsingular
       (smallest/largest eigenvalue of its correlation form > 1e-8) and ``s_j^2 > 0``;
       the others (with observed rows) are treated as systematically missing and logged.
    2. **Residual variances** on the log scale: since ``df_j s_j^2 / sigma_j^2 ~ chi^2_df``,
       ``L_j = log s_j^2 - psi(df_j/2) - log(2/df_j)`` is unbiased for ``log sigma_j^2``
       with variance ``psi'(df_j/2)`` (digamma and trigamma: the exact moments, where
       micemd uses ``2/(df_j - 4)``). A univariate meta-analysis of ``L_j`` gives
       ``(mu_s*, psi_s*)`` drawn from their approximate posterior; estimable clusters draw
       ``log sigma*_j^2`` from its normal posterior given ``L_j``, the others from
       ``N(mu_s*, psi_s*)``.
    3. **Coefficients**: the within covariance of ``beta_hat_j`` given ``sigma*_j`` is the
       cluster's own ``S_j = sigma*_j^2 (X_j'X_j)^-1`` (micemd: the global ``X'X``, wrong).
       The meta-regression ``beta_hat_j ~ N(B'z_j, S_j + Psi)`` is fitted by ``method``
       and ``(B*, Psi*)`` drawn (REML/ML: normal approximation on the Cholesky factor of
       Psi, then B given Psi*; moments: parametric bootstrap of Psi; see
       :meth:`skmlmi.meta_analysis.MetaAnalysisResult.draw`).
    4. **Cluster coefficients**: estimable clusters ``beta*_j ~ N(m_j, V_j)``,
       ``V_j = (Psi*^-1 + S_j^-1)^-1``, ``m_j = V_j(Psi*^-1 B*'z_j + S_j^-1 beta_hat_j)``
       (:func:`skmlmi.meta_analysis.study_posterior`); systematically missing clusters
       and clusters unseen at fit ``beta*_j ~ N(B*'z_j, Psi*)``.
    5. Imputations ``y* = d'beta*_j + sigma*_j eps``.

    Predictor roles: codes 1 and 2 mean the same here -- as in micemd, *every* predictor
    that varies within clusters gets a cluster-specific coefficient (a per-cluster fit
    cannot hold a coefficient fixed across clusters). Predictors constant within every
    cluster (for example the study design, or the cluster means the engine adds for codes
    3 and 4) cannot be estimated by a per-cluster fit: they become study-level covariates
    ``z_j`` of the meta-regression (they predict the cluster intercepts and slopes); one
    that does not vary across the estimable clusters is dropped from it (logged). With
    fewer estimable clusters than study-level design columns + 1 the model raises a
    ValueError saying so.

    Parameters
    ----------
    method : {"mm", "reml", "ml"}, default="mm"
        Estimator of the meta-analyses (:func:`skmlmi.meta_analysis.meta_analysis`).
        "mm" (micemd's default; the Jackson-White-Riley matrix method of moments,
        DerSimonian-Laird for the univariate variance model) is closed form, about ten
        times faster than the likelihood fits, and its Psi draws come from a parametric
        bootstrap of the estimator (micemd draws none under "mm"). "reml"/"ml" draw Psi
        from the normal approximation on its Cholesky factor (micemd's draw_psi), and
        warm-start each fit from the previous visit's estimate.
    min_residual_df : int, default=2
        Smallest residual df ``n_j - k`` of an estimable cluster (micemd: 5).

    Notes
    -----
    Cost per visit: O(n_obs k^2) for the cross-products, O(J k^3) for the batched solves,
    plus the meta-analyses (milliseconds for tens to hundreds of clusters and k <= 6).
    The residual-variance model has an intercept only (as micemd).

    Units: the model has no prior, and nothing in it depends on the units of a column
    (scale-equivariant). Within-cluster predictors are centred and scaled by their SD,
    cluster-level ones likewise over the clusters, and y is centred and divided by a power of
    two near its SD (exact), so the log residual variances are pooled as the same numbers
    whatever y's units (a power-of-two rescaling of y or of a predictor gives bit-identical
    imputations), and data of order 1e-99 or 1e99 neither over- nor underflow.

    References
    ----------
    Resche-Rigon & White (2018), Statistical Methods in Medical Research 27, 1634-1649.

    Examples
    --------
    >>> import numpy as np
    >>> from skmlmi.conditional import DrawContext
    >>> from skmlmi.conditional.two_stage import TwoStageNormal
    >>> rng = np.random.default_rng(0)
    >>> groups = np.repeat(np.arange(20), 30); x = rng.normal(size=(600, 1))
    >>> y = 1 + (1 + 0.3 * rng.normal(size=20))[groups] * x[:, 0] + rng.normal(size=600)
    >>> observed = groups >= 3                                   # clusters 0-2 never observed
    >>> context = DrawContext(target="y", n_clusters=20)
    >>> draw, _ = TwoStageNormal().draw(y, observed, x, np.array([1]), groups, rng, None, context)
    >>> bool(np.isfinite(draw.sample(x[~observed], groups[~observed], rng)).all())
    True
    """

    target_kinds = frozenset({"continuous", "integer"})
    r_names = {"2l.2stage.norm": {}}

    def __init__(self, method: str = "mm", min_residual_df: int = 2):
        self.method = method
        self.min_residual_df = min_residual_df

    def _fit_normal(self, y, observed, X, groups, rng, state, context):
        name = self._check_observed(y, observed, groups, context)
        J = context.n_clusters
        layout, Zraw = self._layout(X, observed, groups, J, context)
        go = groups[observed]
        D = layout.design(X[observed])
        k = D.shape[1]
        yo = y[observed]
        y_center = float(yo.mean())
        yc = yo - y_center  # centring keeps RSS = y'y - b'X'y free of cancellation
        # Work on y / 2^e, 2^e near y's SD (exact): the log residual variances pooled below are then
        # the same numbers whatever y's units, and nothing over- or underflows for y of order 1e+-99.
        y_exponent = int(power_of_two_exponents(np.sqrt(yc @ yc / len(yc)), abs(y_center))[0])
        np.ldexp(yc, -y_exponent, out=yc)
        n_j = cluster_counts(go, J)
        xtx = weighted_cluster_cross_products(D, go, J)
        xty = np.stack([np.bincount(go, weights=D[:, a] * yc, minlength=J) for a in range(k)], axis=1)
        yty = np.bincount(go, weights=yc * yc, minlength=J)
        estimable, few, singular = _estimable_designs(xtx, n_j, k, self.min_residual_df)
        beta_hat = np.zeros((J, k))
        inv = np.broadcast_to(np.eye(k), (J, k, k)).copy()
        if estimable.any():
            inv[estimable] = np.linalg.inv(xtx[estimable])
            beta_hat[estimable] = np.einsum("jab,jb->ja", inv[estimable], xty[estimable])
        df = np.maximum(n_j - k, 1.0)
        rss = yty - np.einsum("ja,ja->j", beta_hat, xty)
        s2 = np.where(estimable, rss / df, 1.0)
        perfect = estimable & (s2 <= 1e-12 * float(yc @ yc) / len(yc))  # relative to y's own variance
        estimable &= ~perfect
        has_rows = n_j > 0
        why = self._log_non_estimable(
            has_rows,
            estimable,
            [
                (
                    f"fewer than k + {self.min_residual_df} = {k + self.min_residual_df} observed rows for its "
                    f"{k} coefficients",
                    few,
                ),
                ("singular design: a predictor is constant or collinear among its observed rows", singular),
                ("perfect fit: zero residual variance", perfect),
            ],
            context,
        )
        Z = self._study_design(layout, Zraw, estimable, context, why)

        # --- residual variances, pooled on the log scale (exact moments of log chi^2)
        half = df[estimable] / 2.0
        L = np.log(s2[estimable]) - special.digamma(half) - np.log(1.0 / half)
        v = special.polygamma(1, half)
        start_s = None if state is None else state.psi_sigma
        fit_s = self._meta(L, v, None, start_s, context, f"residual variances of {context.target!r}")
        mu_s, psi_s = fit_s.draw(rng)
        mu_s, psi_s = float(mu_s[0, 0]), float(psi_s[0, 0])
        log_s2 = mu_s + np.sqrt(psi_s) * rng.standard_normal(J)
        m_s, v_s = study_posterior(L, v, np.array([mu_s]), np.array([[psi_s]]))
        log_s2[estimable] = m_s[:, 0] + np.sqrt(np.maximum(v_s[:, 0, 0], 0.0)) * rng.standard_normal(m_s.shape[0])
        sigma2 = np.exp(log_s2)

        # --- coefficients: within covariance of each cluster's own fit given sigma*_j
        V = sigma2[:, None, None] * inv
        previous = getattr(state, "y_exponent", y_exponent)
        if state is not None and state.psi is not None and previous != y_exponent:
            state.psi = np.ldexp(state.psi, 2 * (previous - y_exponent))  # warm start in this visit's units
        coef, B_star, psi_star, fit = self._coefficient_draws(beta_hat, V, estimable, Z, rng, state, context)
        # back to y's units: exact powers of two, then the centre (the population stays in the model's units)
        coef = np.ldexp(coef, y_exponent)
        coef[:, 0] += y_center
        sigma = np.ldexp(np.sqrt(sigma2), y_exponent)
        draw = _TwoStageDraw(layout, coef, B_star, psi_star, sigma, mu_s, psi_s, "normal", name, y_exponent, y_center)
        new_state = _TwoStageState(X.shape[1], fit.psi, fit_s.psi, y_exponent=y_exponent)
        return (
            draw,
            new_state,
            dict(
                beta_hat=beta_hat,
                V=V,
                estimable=estimable,
                Z=Z,
                fit=fit,
                layout=layout,
                y_center=y_center,
                y_exponent=y_exponent,
            ),
        )

    def _draw(self, y, observed, X, roles, groups, rng, state, context):
        draw, new_state, _ = self._fit_normal(y, observed, X, groups, rng, state, context)
        return draw, new_state


class TwoStagePMM(TwoStageNormal):
    r"""Two-stage predictive mean matching (micemd's ``2l.2stage.pmm``), correct in any row order.

    The parameters are drawn as in :class:`TwoStageNormal`. Each row to impute gets the
    target ``d_i'beta*_{c(i)}`` with its *own cluster's* drawn coefficients (population
    draws for systematically missing and unseen clusters). The donors are all rows with
    an observed target; their predictions use the posterior mean of their cluster's
    coefficients at the point estimates ``(B_hat, Psi_hat)`` (the analogue of mice's
    matchtype 1: donors from the estimate, recipients from the draw); donors in clusters
    without an estimable fit use the population mean ``B_hat'z_j``. A recipient receives
    the observed value of one of the ``donors`` closest donors, drawn at random
    (vectorised matching, O((n_obs + n_mis) log n_obs)).

    micemd builds the candidates' predictions in cluster-sorted order but indexes them
    in the data's order, so its imputations are right only for data sorted by cluster,
    and it loops over the missing rows; here every prediction is indexed by the row's
    own cluster code, so the result does not depend on the order of the rows.

    Parameters
    ----------
    donors : int, default=5
        Size of the pool of closest donors.
    method : {"mm", "reml", "ml"}, default="mm"
    min_residual_df : int, default=2

    Examples
    --------
    >>> import numpy as np
    >>> from skmlmi.conditional import DrawContext
    >>> from skmlmi.conditional.two_stage import TwoStagePMM
    >>> rng = np.random.default_rng(0)
    >>> groups = np.repeat(np.arange(20), 30); x = rng.normal(size=(600, 1))
    >>> y = np.round(2 + x[:, 0] + rng.normal(size=20)[groups] + rng.normal(size=600))
    >>> observed = groups >= 2
    >>> draw, _ = TwoStagePMM().draw(y, observed, x, np.array([2]), groups, rng, None,
    ...                              DrawContext(target="y", n_clusters=20))
    >>> set(draw.sample(x[~observed], groups[~observed], rng)) <= set(y[observed])
    True
    """

    r_names = {"2l.2stage.pmm": {}}

    _parameter_constraints = {
        **TwoStageNormal._parameter_constraints,
        "donors": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, donors: int = 5, method: str = "mm", min_residual_df: int = 2):
        self.donors = donors
        self.method = method
        self.min_residual_df = min_residual_df

    def _draw(self, y, observed, X, roles, groups, rng, state, context):
        draw, new_state, parts = self._fit_normal(y, observed, X, groups, rng, state, context)
        fit, estimable, Z = parts["fit"], parts["estimable"], parts["Z"]
        point = Z @ fit.coefficients
        m_est, _ = study_posterior(parts["beta_hat"][estimable], parts["V"][estimable], point[estimable], fit.psi)
        point[estimable] = m_est
        go = groups[observed]
        D = parts["layout"].design(X[observed])
        yhat = np.ldexp(np.einsum("ik,ik->i", D, point[go]), parts["y_exponent"]) + parts["y_center"]
        return _TwoStagePMMDraw(draw, yhat, y[observed].copy(), self.donors), new_state


# --------------------------------------------------------------------------- GLMs
class _TwoStageGLM(_TwoStageBase):
    """Two-stage GLM: per-cluster maximum likelihood, meta-analysis, draws (micemd's 2l.2stage.bin/pois)."""

    _parameter_constraints = {
        **_TwoStageBase._parameter_constraints,
        "max_standard_error": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self, method: str = "mm", min_residual_df: int = 1, max_standard_error: float = 10.0, max_iter: int = 25
    ):
        self.method = method
        self.min_residual_df = min_residual_df
        self.max_standard_error = max_standard_error
        self.max_iter = max_iter

    def _degenerate_outcome(self, yo, go, n_j, J):
        """Clusters whose observed outcome cannot identify an intercept (all 0 / all 1)."""
        raise NotImplementedError

    def _draw(self, y, observed, X, roles, groups, rng, state, context):
        name = self._check_observed(y, observed, groups, context)
        J = context.n_clusters
        yo = y[observed]
        self._check_outcome(yo, name)
        layout, Zraw = self._layout(X, observed, groups, J, context)
        go = groups[observed]
        D = layout.design(X[observed])
        k = D.shape[1]
        n_j = cluster_counts(go, J)
        xtx = weighted_cluster_cross_products(D, go, J)
        estimable, few, singular = _estimable_designs(xtx, n_j, k, self.min_residual_df)
        degenerate = estimable & self._degenerate_outcome(yo, go, n_j, J)
        estimable &= ~degenerate
        if self._reuse_state(state, _TwoStageState, coefficients=(J, k)) is not None:
            start = np.where(np.isfinite(state.coefficients), state.coefficients, 0.0)
        else:
            start = np.zeros((J, k))
            start[:, 0] = self._start_intercept(yo, go, n_j, J)
        beta_hat, cov, converged = batched_irls(D, yo, go, J, estimable, self._family, start, self.max_iter)
        se = np.sqrt(np.abs(np.diagonal(cov, axis1=1, axis2=2))).max(axis=1)
        unstable = estimable & (
            ~converged | ~np.isfinite(se) | (se > self.max_standard_error) | ~np.isfinite(beta_hat).all(axis=1)
        )
        estimable &= ~unstable
        why = self._log_non_estimable(
            n_j > 0,
            estimable,
            [
                (
                    f"fewer than k + {self.min_residual_df} = {k + self.min_residual_df} observed rows for its "
                    f"{k} coefficients",
                    few,
                ),
                ("singular design: a predictor is constant or collinear among its observed rows", singular),
                (self._degenerate_label, degenerate),
                (
                    f"separation or no convergence: a standardised coefficient's SE above {self.max_standard_error:g} "
                    f"or Newton not converged in {self.max_iter} iterations",
                    unstable,
                ),
            ],
            context,
        )
        Z = self._study_design(layout, Zraw, estimable, context, why)
        coef, B_star, psi_star, fit = self._coefficient_draws(beta_hat, cov, estimable, Z, rng, state, context)
        stored = np.where(estimable[:, None], beta_hat, np.nan)
        draw = _TwoStageDraw(layout, coef, B_star, psi_star, None, None, None, self._family, name)
        return draw, _TwoStageState(X.shape[1], fit.psi, None, stored)


class TwoStageLogistic(_TwoStageGLM):
    r"""Two-stage logistic imputation of a binary target (micemd's ``2l.2stage.bin``).

    Model: ``logit P(y_ij = 1) = d_ij'beta_j``, ``beta_j ~ N_k(B'z_j, Psi)``. One visit:

    1. per-cluster maximum likelihood by Newton-Raphson, all clusters at once (the
       ``(J, k, k)`` information stack from bincounts, one batched solve per iteration,
       warm-started from the previous visit's estimates), with the cluster's own
       inverse information ``V_j`` as within covariance;
    2. clusters not estimable -- fewer than ``k + min_residual_df`` observed rows, a
       singular design, an outcome all 0 or all 1, or (quasi-)separation detected by a
       standardised coefficient SE above ``max_standard_error`` or no convergence in
       ``max_iter`` steps -- are treated as systematically missing (logged);
    3. meta-regression of ``beta_hat_j`` on ``z_j`` with within covariances ``V_j``,
       draw ``(B*, Psi*)``, then ``beta*_j`` from the cluster's posterior (estimable) or
       ``N(B*'z_j, Psi*)`` (the others and unseen clusters), as :class:`TwoStageNormal`;
    4. ``y* ~ Bernoulli(expit(d'beta*_j))``.

    Predictors are standardised (observed-row mean and SD) before the fits, so
    ``max_standard_error`` does not depend on their units (micemd's guard, any SE > 1000
    on the raw scale, does): there is no prior, and the model is scale-equivariant.
    Roles 1 and 2 mean the same (every within-cluster predictor
    has a cluster-specific coefficient); cluster-level predictors enter the
    meta-regression (see :class:`TwoStageNormal`).

    Parameters
    ----------
    method : {"mm", "reml", "ml"}, default="mm"
    min_residual_df : int, default=1
        Smallest ``n_j - k`` of an estimable cluster.
    max_standard_error : float, default=10.0
        Largest standard error of a standardised coefficient of an estimable cluster.
    max_iter : int, default=25
        Newton iterations per visit.

    Examples
    --------
    >>> import numpy as np
    >>> from skmlmi.conditional import DrawContext
    >>> from skmlmi.conditional.two_stage import TwoStageLogistic
    >>> rng = np.random.default_rng(0)
    >>> groups = np.repeat(np.arange(20), 60); x = rng.normal(size=(1200, 1))
    >>> y = (rng.random(1200) < 1 / (1 + np.exp(-x[:, 0] - rng.normal(size=20)[groups]))).astype(float)
    >>> context = DrawContext(target="y", kind="binary", n_categories=2, n_clusters=20)
    >>> draw, _ = TwoStageLogistic().draw(y, groups >= 2, x, np.array([1]), groups, rng, None, context)
    >>> set(np.unique(draw.sample(x, groups, rng))) <= {0.0, 1.0}
    True
    """

    target_kinds = frozenset({"binary"})
    r_names = {"2l.2stage.bin": {}}
    _family = "logistic"
    _degenerate_label = "its observed outcome is all 0 or all 1"

    def _check_outcome(self, yo, name):
        if np.any((yo != 0) & (yo != 1)):
            raise ValueError(f"{name}: the observed target must be coded 0/1; found {np.unique(yo)[:10].tolist()}.")

    def _degenerate_outcome(self, yo, go, n_j, J):
        events = np.bincount(go, weights=yo, minlength=J)
        return (events == 0) | (events == n_j)

    def _start_intercept(self, yo, go, n_j, J):
        events = np.bincount(go, weights=yo, minlength=J)
        rate = (events + 0.5) / (n_j + 1.0)
        return special.logit(rate)


class TwoStagePoisson(_TwoStageGLM):
    r"""Two-stage Poisson imputation of a count target (micemd's ``2l.2stage.pois``).

    Model: ``log E[y_ij] = d_ij'beta_j``, ``beta_j ~ N_k(B'z_j, Psi)``; per-cluster
    maximum likelihood, meta-regression and draws exactly as :class:`TwoStageLogistic`
    (a cluster whose observed counts are all 0 is not estimable), then
    ``y* ~ Poisson(exp(d'beta*_j))`` (the log-mean capped at 30 so that an extreme
    population draw cannot overflow; micemd replaces non-finite draws by the mean of the
    others).

    Parameters
    ----------
    method : {"mm", "reml", "ml"}, default="mm"
    min_residual_df : int, default=1
    max_standard_error : float, default=10.0
    max_iter : int, default=25

    Examples
    --------
    >>> import numpy as np
    >>> from skmlmi.conditional import DrawContext
    >>> from skmlmi.conditional.two_stage import TwoStagePoisson
    >>> rng = np.random.default_rng(0)
    >>> groups = np.repeat(np.arange(20), 40); x = rng.normal(size=(800, 1))
    >>> y = rng.poisson(np.exp(0.5 + 0.3 * x[:, 0] + 0.3 * rng.normal(size=20)[groups])).astype(float)
    >>> context = DrawContext(target="y", kind="integer", n_clusters=20)
    >>> draw, _ = TwoStagePoisson().draw(y, groups >= 2, x, np.array([1]), groups, rng, None, context)
    >>> bool((draw.sample(x, groups, rng) >= 0).all())
    True
    """

    target_kinds = frozenset({"integer"})
    r_names = {"2l.2stage.pois": {}}
    _family = "poisson"
    _degenerate_label = "its observed counts are all 0"

    def _check_outcome(self, yo, name):
        if np.any(yo < 0) or np.any(yo != np.round(yo)):
            raise ValueError(f"{name}: the observed target must hold non-negative counts.")

    def _degenerate_outcome(self, yo, go, n_j, J):
        return np.bincount(go, weights=yo, minlength=J) == 0

    def _start_intercept(self, yo, go, n_j, J):
        total = np.bincount(go, weights=yo, minlength=J)
        return np.log((total + 0.5) / (n_j + 1.0))
