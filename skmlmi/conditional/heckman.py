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
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions

from .._kernels import (
    SelectionLayout,
    bivariate_normal_cdf,
    constant_within_clusters,
    find_redundant_columns,
    fit_selection_by_cluster,
    mills_ratio,
    pmm_match,
    rows_of_clusters,
    truncated_normal_below,
)
from ..meta_analysis import draw_study_effects, meta_analysis, study_posterior
from .base import BaseConditionalImputer, Draw

__all__ = ["HeckmanSelection", "bivariate_normal_cdf"]


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
        if self.single_level:
            return np.broadcast_to(self.theta[0], (n, self.theta.shape[1]))
        if groups is None:
            raise ValueError(f"{self.name}: this draw is per cluster and needs the cluster codes of the rows.")

        def draw_new(codes, inverse, rows):
            mean = np.broadcast_to(self.population_mean, (len(codes), len(self.population_mean)))
            return draw_study_effects(mean, self.population_covariance, rng)

        return rows_of_clusters(self.theta, groups, draw_new)

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
            u = truncated_normal_below(-eta_s, rng)
            latent = eta_o + rho * u + np.sqrt(1.0 - rho**2) * rng.standard_normal(n)
            return (latent > 0).astype(float)
        sigma = np.exp(th[:, self.layout.log_sigma])
        if self.pmm:
            # match the recipients' E[y | x, s = 0] to the donors' E[y | x, s = 1]
            target = eta_o - sigma * rho * mills_ratio(eta_s * -1.0)
            index = pmm_match(self.donor_prediction, target, self.donors, rng)
            return self.donor_values[index]
        u = truncated_normal_below(-eta_s, rng)
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
            constant = constant_within_clusters(X[rows], g, context.n_clusters)
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
            raise self._no_observed_values(context)
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
        layout = SelectionLayout(np.flatnonzero(roles != -4), np.flatnonzero(roles != -3), binary)
        W, V = layout.designs(Xs[rows])
        ys = (np.where(s, y, y_center)[rows] - y_center) / y_scale
        sr = s[rows]
        usable_state = self._reuse_state(state, _HeckmanState, X.shape[1]) is not None
        warm = state.theta if usable_state else None
        new_state = _HeckmanState(X.shape[1], None, dict(state.psi) if usable_state else {})
        J = context.n_clusters if groups is not None else 1
        codes = groups[rows] if groups is not None else np.zeros(int(rows.sum()), dtype=np.intp)

        fit = fit_selection_by_cluster(W, V, ys, sr, codes, J, layout, warm)
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
            draw.donor_prediction = eta_o + sigma * rho * mills_ratio(eta_s)
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
            fit_mar = fit_selection_by_cluster(W, V, ys, sr, np.zeros(len(ys), dtype=np.intp), 1, layout, None, free)
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
            pooled = fit_selection_by_cluster(W, V, ys, sr, codes, 1, layout, None)
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
