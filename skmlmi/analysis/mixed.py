"""Mixed analysis models: the linear mixed model (one or several grouping factors) and the logistic one.

All cluster computations are vectorised: the data are sorted by cluster once, per-cluster
cross-products come from ``np.add.reduceat`` and the q x q systems of all clusters are
solved as one (J, q, q) stack. Several grouping factors (nested or crossed) go through the
block-eliminated sparse system of :mod:`._profiled`.
"""

from __future__ import annotations

import warnings
from numbers import Integral
from typing import Self

import numpy as np
import pandas as pd
from scipy import linalg, optimize, special
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMParams

from .._kernels import SortedClusters, logistic_irls
from .._threads import one_blas_thread
from ._base import FormulaModel, _named_cov
from ._profiled import MultiCrossProducts, ThetaMap, conditional_modes, marginal_loglik, profiled_criterion
from .formula import Design

__all__ = ["LinearMixedModel", "LogisticMixedModel"]


# --------------------------------------------------------------------------- helpers
def _vc_label(name: str) -> str:
    return "Intercept" if name == "(Intercept)" else name


def _variance_component_series(cov_re, names, blocks, group, residual=None, icc_residual=None) -> pd.Series:
    """mitml ``extra.pars`` naming: variances, then covariances (upper triangle), residual, ICC."""
    labels = [_vc_label(n) for n in names]
    out = {}
    for i, a in enumerate(labels):
        out[f"{a}~~{a}|{group}"] = float(cov_re[i, i])
    for block in blocks:
        for ii, i in enumerate(block):
            for j in block[ii + 1 :]:
                out[f"{labels[i]}~~{labels[j]}|{group}"] = float(cov_re[i, j])
    if residual is not None:
        out["Residual~~Residual"] = float(residual)
    if "(Intercept)" in names and icc_residual is not None:
        tau00 = float(cov_re[names.index("(Intercept)"), names.index("(Intercept)")])
        out[f"ICC|{group}"] = tau00 / (tau00 + icc_residual)
    return pd.Series(out, name="estimate")


def _several_factor_components(covs: dict, names: dict, blocks: dict, residual: float) -> pd.Series:
    """mitml-style names for several grouping factors: per factor (lme4's order) its variances, then
    covariances, ``Residual~~Residual``, then ``ICC|g`` per factor with a random intercept:
    tau_00(g) / (sum of the factors' intercept variances + sigma^2)."""
    out = {}
    intercepts = {}
    for group, cov in covs.items():
        part = _variance_component_series(cov, names[group], blocks[group], group)
        out.update(part.to_dict())
        if "(Intercept)" in names[group]:
            i = names[group].index("(Intercept)")
            intercepts[group] = float(cov[i, i])
    out["Residual~~Residual"] = float(residual)
    total = sum(intercepts.values()) + float(residual)
    for group, tau00 in intercepts.items():
        out[f"ICC|{group}"] = tau00 / total
    return pd.Series(out, name="estimate")


def _minimise_cobyqa(objective, x0: np.ndarray, bounds: list, n_theta: int):
    """COBYQA: bounded derivative-free trust-region method, successor of lme4's BOBYQA.

    Finite-difference gradients of the profiled deviance are too noisy for tight tolerances.
    """
    return optimize.minimize(
        objective,
        x0,
        method="COBYQA",
        bounds=bounds,
        options={"initial_tr_radius": 0.2, "final_tr_radius": 1e-9, "maxfev": 500 * (n_theta + 1)},
    )


# --------------------------------------------------------------------------- linear mixed model
class _LMMCrossProducts:
    """Sufficient statistics of y = X beta + Z b + e for a single grouping factor."""

    def __init__(self, design: Design):
        X, Z, y = design.X, design.Z, design.y
        cl = SortedClusters(design.groups, design.n_groups)
        Xs, Zs, ys = X[cl.order], Z[cl.order], y[cl.order]
        self.n, self.p = X.shape
        self.q = Z.shape[1]
        self.ZZ = cl.sums(Zs[:, :, None] * Zs[:, None, :])  # (J, q, q)
        self.ZX = cl.sums(Zs[:, :, None] * Xs[:, None, :])  # (J, q, p)
        self.Zy = cl.sums(Zs * ys[:, None])  # (J, q)
        self.XX = Xs.T @ Xs
        self.Xy = Xs.T @ ys
        self.yy = float(ys @ ys)


class _ThetaMap(ThetaMap):
    """Lower-triangular relative covariance factor Lambda (lme4's theta), block-diagonal."""

    def from_cov(self, rel_cov: np.ndarray) -> np.ndarray:
        """theta of the Cholesky factor of a relative covariance (jittered if singular)."""
        q = self.q
        mask = np.zeros((q, q), dtype=bool)
        mask[self.rows, self.cols] = True
        mask = mask | mask.T
        cov = np.where(mask, rel_cov, 0.0)
        w, v = np.linalg.eigh(cov)
        cov = (v * np.maximum(w, 1e-6)) @ v.T
        return np.linalg.cholesky(cov)[self.rows, self.cols]


def _lmm_terms(lam: np.ndarray, cp: _LMMCrossProducts):
    """Per-cluster M_j = I + Lambda' Z_j'Z_j Lambda and the projections needed by all criteria."""
    LZZL = np.einsum("ki,jkl,lm->jim", lam, cp.ZZ, lam)
    M = LZZL + np.eye(cp.q)
    chol = np.linalg.cholesky(M)
    logdet = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum()
    LZX = np.einsum("ki,jkp->jip", lam, cp.ZX)
    LZy = lam.T @ cp.Zy.T  # (q, J)
    LZy = LZy.T
    return M, logdet, LZX, LZy


def _profiled(theta_map: _ThetaMap, theta: np.ndarray, cp: _LMMCrossProducts, reml: bool):
    """lme4's profiled deviance (ML or REML criterion) with beta-hat and sigma^2-hat."""
    lam = theta_map.matrix(theta)
    M, logdet_m, LZX, LZy = _lmm_terms(lam, cp)
    rhs = np.concatenate([LZX, LZy[:, :, None]], axis=2)  # (J, q, p + 1)
    sol = np.linalg.solve(M, rhs)
    cross = np.einsum("jqa,jqb->ab", rhs, sol)  # sum_j rhs_j' M_j^{-1} rhs_j
    p = cp.p
    XVX = cp.XX - cross[:p, :p]
    XVy = cp.Xy - cross[:p, p]
    yVy = cp.yy - cross[p, p]
    beta = np.linalg.solve(XVX, XVy)
    r2 = max(yVy - beta @ XVy, 1e-300)
    n = cp.n
    if reml:
        sign, logdet_x = np.linalg.slogdet(XVX)
        dof = n - p
        dev = logdet_m + logdet_x + dof * (1.0 + np.log(2.0 * np.pi * r2 / dof))
        sigma2 = r2 / dof
    else:
        dev = logdet_m + n * (1.0 + np.log(2.0 * np.pi * r2 / n))
        sigma2 = r2 / n
    return dev, beta, sigma2, XVX, lam, M, LZX, LZy


class LinearMixedModel(FormulaModel):
    """Linear mixed model (lme4 ``lmer``) with one or several grouping factors, nested or crossed.

    Model: y = X beta + sum_k Z_k b_k + e, e ~ N(0, sigma^2 I); for grouping factor k the
    effects of its clusters are independent, b_kj ~ N_{q_k}(0, Psi_k). Psi_k is unstructured
    within a random-effects term ``(1 + x | g)`` and zero between terms (``(1 | g) + (0 + x | g)``,
    ``(1 + x || g)``). Several factors: nested ``(1 | school/class)`` (= ``(1 | school) +
    (1 | class:school)``, the inner factor combined with the outer as lme4 does) or crossed
    ``(1 | s) + (1 | d)``, with random slopes at any level (``(year | school) + (year | school:child)``).

    Fitting: lme4's profiled deviance (REML criterion by default, or ML) in the relative
    Cholesky factor theta (Bates et al. 2015, J. Stat. Softw. 67(1), eqs. 34 and 41) is
    minimised with COBYQA, the bounded derivative-free successor of lme4's BOBYQA, from lme4's
    start (theta = identity); beta and sigma^2 are profiled out in closed form.

    - One grouping factor: each evaluation costs O(J q^3 + J q p^2) on per-cluster
      cross-products computed once (the q x q systems of all clusters solved as one stack).
      statsmodels ``MixedLM`` (lbfgs, then bfgs and Powell) provides the start with
      ``solver="statsmodels"``, and is the automatic restart when COBYQA does not converge
      (then Powell as a last resort). MixedLM's own standard errors are not used: its Hessian
      gives fixed-effect SEs a few percent away from lme4's for random-slope models.
    - Several grouping factors: the sparse system Lambda' Z'Z Lambda + I, which lme4 factors
      with CHOLMOD, is factored with scipy by block elimination (:mod:`skmlmi.analysis._profiled`):
      the factor with the most effects (the innermost level, or the larger crossed factor) by
      batched q x q Cholesky factors, the others through their dense Schur complement (sparse
      LU above 3000 effects). InstEval (73,421 rows, 2972 students crossed with 1128 lecturers)
      fits in about 3 s. The start is always lme4's (MixedLM takes one grouping factor), with
      Powell as the restart; the fit runs with one BLAS thread.

    Inference as lme4: ``cov_params_`` = sigma^2 (X' V*^{-1} X)^{-1} at the estimates
    (V* = I + Z Lambda Lambda' Z'), ``df_resid_`` = n - (p + n_theta + 1) (lme4
    ``df.residual``), ``loglik_`` the REML (or ML) log-likelihood as lme4's ``logLik``.

    Parameters
    ----------
    formula : str
        lme4 formula, e.g. ``"popular ~ 1 + sex + texp + (1 + sex | school)"``,
        ``"math ~ year + (1 | schoolid/childid)"`` or ``"y ~ service + (1 | s) + (1 | d)"``.
    reml : bool, default=True
        REML (lme4's default) or maximum likelihood.
    solver : {"profiled", "statsmodels"}, default="profiled"
        Start of the optimisation of the profiled criterion: lme4's (fast; statsmodels is
        then only a fallback) or a statsmodels ``MixedLM`` fit (slower, Python loop over
        clusters inside statsmodels). With several grouping factors lme4's start is used.
    reference_levels : dict, default=None
        Reference level per categorical column.
    missing : {"raise", "drop"}, default="raise"
        Rows with missing values: an error, or dropped (complete-case analysis).
    levels : dict, default=None
        Levels of categorical predictors, ``{column: [level, ...]}``, used whatever the data
        hold (a level no row holds is an all-zero column, which the fit refuses). Default:
        the levels present in the data; :class:`~skmlmi.MIPooler` sets the categories
        observed in the incomplete data, so that every completed dataset is coded alike.

    Attributes
    ----------
    coef_ : Series
        Fixed effects.
    cov_params_ : DataFrame
    df_resid_ : float
    variance_components_ : Series
        mitml names: ``Intercept~~Intercept|g``, ``x~~x|g``, ``Intercept~~x|g``,
        ``Residual~~Residual`` and ``ICC|g`` = tau_00 / (tau_00 + sigma^2) (with a random intercept).
        Several factors: the components of each factor in lme4's order (decreasing number of
        clusters; ``Intercept~~Intercept|class:school``, ``Intercept~~Intercept|school``), the
        residual, then an ICC per factor with a random intercept, ``ICC|g`` = tau_00(g) /
        (sum over factors of tau_00 + sigma^2): the share of the variance at x = 0 lying at that
        level (mitml reports no ICC with several factors).
    cov_re_ : DataFrame or dict of DataFrame
        Psi; with several factors a dict of Psi_k by factor name, in lme4's order.
    scale_ : float
        sigma^2.
    random_effects_ : DataFrame or dict of DataFrame
        Conditional modes (BLUPs) of b_j, one row per cluster; with several factors a dict by
        factor name.
    loglik_ : float
    n_params_ : int
        p + n_theta + 1.
    theta_ : ndarray
        lme4's theta (relative Cholesky factor entries; several factors in lme4's order).
    group_levels_ : Index or dict of Index
        Cluster labels (a dict by factor name with several factors).
    converged_ : bool

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(30), 10)
    >>> df = pd.DataFrame({"g": g, "x": rng.normal(size=300)})
    >>> df["y"] = 1 + 0.5 * df.x + rng.normal(size=30)[g] + rng.normal(size=300)
    >>> fit = LinearMixedModel("y ~ x + (1 | g)").fit(df)
    >>> fit.coef_.round(2).tolist(), fit.df_resid_
    ([0.9, 0.55], 296.0)

    Casks within batches (lme4's ``Pastes``): a variance component and an ICC per level.

    >>> from skmlmi.datasets import load_pastes
    >>> nested = LinearMixedModel("strength ~ 1 + (1 | batch/cask)").fit(load_pastes())
    >>> nested.variance_components_.round(3).to_dict()  # doctest: +NORMALIZE_WHITESPACE
    {'Intercept~~Intercept|cask:batch': 8.434, 'Intercept~~Intercept|batch': 1.657,
     'Residual~~Residual': 0.678, 'ICC|cask:batch': 0.783, 'ICC|batch': 0.154}
    """

    _mixed = True
    _several_factors = True
    _parameter_constraints: dict = {
        **FormulaModel._parameter_constraints,
        "reml": ["boolean"],
        "solver": [StrOptions({"profiled", "statsmodels"})],
    }

    def __init__(
        self,
        formula: str,
        reml: bool = True,
        solver: str = "profiled",
        reference_levels: dict | None = None,
        missing: str = "raise",
        levels: dict | None = None,
    ):
        super().__init__(formula, reference_levels=reference_levels, missing=missing, levels=levels)
        self.reml = reml
        self.solver = solver

    @property
    def is_reml_(self) -> bool:
        return bool(self.reml)

    # ------------------------------------------------------------------ fitting
    def _statsmodels_start(self, design: Design, theta_map: _ThetaMap) -> np.ndarray | None:
        """Relative-factor start values from statsmodels MixedLM (None if it fails)."""
        q = design.Z.shape[1]
        free = None
        if len(design.blocks) > 1:
            pattern = np.zeros((q, q))
            for block in design.blocks:
                pattern[np.ix_(block, block)] = 1.0
            free = MixedLMParams.from_components(fe_params=np.ones(design.X.shape[1]), cov_re=pattern)
        model = MixedLM(design.y, design.X, design.groups, exog_re=design.Z)
        for method in ("lbfgs", "bfgs", "powell"):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    # a start only: the exact criterion is optimised afterwards, so few iterations suffice
                    res = model.fit(reml=bool(self.reml), method=method, free=free, maxiter=20)
            except (np.linalg.LinAlgError, ValueError):
                continue
            cov_re, scale = np.asarray(res.cov_re), float(res.scale)
            if np.all(np.isfinite(cov_re)) and np.isfinite(scale) and scale > 0:
                return theta_map.from_cov(cov_re / scale)
        return None

    def _fit_design(self, design: Design) -> None:
        if len(design.factors) > 1:
            self._fit_several(design)
            return
        cp = _LMMCrossProducts(design)
        theta_map = _ThetaMap(cp.q, design.blocks)
        n_theta = theta_map.rows.shape[0]
        if cp.n <= cp.p + n_theta + 1:
            raise ValueError(f"{cp.n} rows are too few for {cp.p} fixed effects and {n_theta} covariance parameters")
        lme4_start = np.where(theta_map.is_diag, 1.0, 0.0)

        def objective(theta):
            return _profiled(theta_map, theta, cp, bool(self.reml))[0]

        def cobyqa(x0):
            return _minimise_cobyqa(objective, x0, theta_map.bounds, n_theta)

        if self.solver == "statsmodels":
            sm_start = self._statsmodels_start(design, theta_map)
            best = cobyqa(lme4_start if sm_start is None else sm_start)
        else:
            best = cobyqa(lme4_start)
        # lme4's start (relative SDs of 1) suits random-effect columns near unit scale; a column far from it (a
        # slope of x ~ 5e-3 +- 1e-3, relative SD near 200) can leave the optimiser at a poor point, 14 times too
        # small a slope variance in one such case (lme4 warns to rescale). A second start at 1 / rms(z_k) makes every
        # effect's start contribute about sigma^2; the better optimum is kept.
        rms = np.sqrt(np.mean(design.Z**2, axis=0))
        rms = np.where(rms > 0, rms, 1.0)
        if np.any(np.abs(np.log10(rms)) > 1.0):
            scaled = cobyqa(np.where(theta_map.is_diag, 1.0 / rms[theta_map.rows], 0.0))
            if np.isfinite(scaled.fun) and (scaled.fun < best.fun or not np.isfinite(best.fun)):
                best = scaled
        if not best.success:
            # robustness: restart from statsmodels MixedLM's solution, then Powell as a last resort
            sm_start = self._statsmodels_start(design, theta_map)
            candidates = [best]
            if sm_start is not None:
                candidates.append(cobyqa(sm_start))
            candidates.append(
                optimize.minimize(
                    objective,
                    best.x,
                    method="Powell",
                    bounds=theta_map.bounds,
                    options={"xtol": 1e-10, "ftol": 1e-14, "maxiter": 20000},
                )
            )
            best = min(candidates, key=lambda r: r.fun if np.isfinite(r.fun) else np.inf)
        theta = np.where(theta_map.is_diag, np.maximum(best.x, 0.0), best.x)
        dev, beta, sigma2, XVX, lam, M, LZX, LZy = _profiled(theta_map, theta, cp, bool(self.reml))
        self.converged_ = bool(np.isfinite(dev) and best.success)
        if not self.converged_:
            warnings.warn(f"LinearMixedModel {self.formula!r} did not converge", ConvergenceWarning, stacklevel=3)
        self._set_results(design, theta_map, theta, dev, beta, sigma2, XVX, lam, M, LZX, LZy)

    def _set_results(self, design, theta_map, theta, dev, beta, sigma2, XVX, lam, M, LZX, LZy):
        names, group = design.fixed_names, self.formula_.group
        n_theta = theta.shape[0]
        self.theta_ = theta
        self.coef_ = pd.Series(beta, index=names, name="estimate")
        self.cov_params_ = _named_cov(sigma2 * np.linalg.inv(XVX), names)
        self.n_params_ = design.X.shape[1] + n_theta + 1
        self.df_resid_ = float(design.X.shape[0] - self.n_params_)
        self.loglik_ = float(-dev / 2.0)
        cov_re = sigma2 * lam @ lam.T
        self.scale_ = float(sigma2)
        self.cov_re_ = _named_cov(cov_re, [_vc_label(n) for n in design.random_names])
        self.variance_components_ = _variance_component_series(
            cov_re, design.random_names, design.blocks, group, residual=sigma2, icc_residual=sigma2
        )
        # conditional modes b_j = Lambda M_j^{-1} Lambda' Z_j'(y_j - X_j beta)
        u = np.linalg.solve(M, (LZy - LZX @ beta)[..., None])[..., 0]
        self.random_effects_ = pd.DataFrame(
            u @ lam.T, index=design.group_levels, columns=[_vc_label(n) for n in design.random_names]
        )
        self.group_levels_ = design.group_levels
        self._theta_map = theta_map

    def _fit_several(self, design: Design) -> None:
        """Several grouping factors: lme4's profiled criterion on the block-eliminated sparse system."""
        n = design.X.shape[0]
        for factor in design.factors:  # lme4's checks: a variance needs >= 2 clusters and must differ from the residual
            if not 1 < factor.n_groups < n:
                raise ValueError(
                    f"grouping factor {factor.name!r} of formula {self.formula!r} has {factor.n_groups} cluster(s) for "
                    f"{n} rows: a random effect needs at least 2 clusters and fewer clusters than rows"
                )
        cp = MultiCrossProducts(design)
        if cp.n <= cp.p + cp.n_theta + 1:
            raise ValueError(f"{cp.n} rows are too few for {cp.p} fixed effects and {cp.n_theta} covariance parameters")
        reml = bool(self.reml)

        def objective(theta):
            return profiled_criterion(cp, theta, reml)[0]

        # one BLAS thread: the dense Schur complement (order ~1000) gains little from two threads, loses
        # tenfold when other processes share the cores, and the result must not depend on thread counts
        with one_blas_thread():
            best = _minimise_cobyqa(objective, cp.start(), cp.bounds, cp.n_theta)
            if not best.success:
                # robustness: Powell from COBYQA's last point (statsmodels MixedLM takes one grouping factor only)
                powell = optimize.minimize(
                    objective,
                    best.x,
                    method="Powell",
                    bounds=cp.bounds,
                    options={"xtol": 1e-10, "ftol": 1e-14, "maxiter": 20000},
                )
                if np.isfinite(powell.fun) and (powell.fun <= best.fun or not np.isfinite(best.fun)):
                    best = powell
            theta = np.where(cp.is_diag, np.maximum(best.x, 0.0), best.x)
            crit, beta, sigma2, XVX, system = profiled_criterion(cp, theta, reml)
            modes = conditional_modes(cp, system, beta) if np.isfinite(crit) else None
        self.converged_ = bool(np.isfinite(crit) and best.success)
        if not np.isfinite(crit):
            raise ValueError(f"LinearMixedModel {self.formula!r}: the criterion is not finite at the optimum")
        if not self.converged_:
            warnings.warn(f"LinearMixedModel {self.formula!r} did not converge", ConvergenceWarning, stacklevel=3)
        names = design.fixed_names
        self.theta_ = theta
        self.coef_ = pd.Series(beta, index=names, name="estimate")
        self.cov_params_ = _named_cov(sigma2 * np.linalg.inv(XVX), names)
        self.n_params_ = design.X.shape[1] + cp.n_theta + 1
        self.df_resid_ = float(design.X.shape[0] - self.n_params_)
        self.loglik_ = float(-crit / 2.0)
        self.scale_ = float(sigma2)
        templates = cp.templates(theta)
        covs, labels, blocks = {}, {}, {}
        self.cov_re_, self.random_effects_, self.group_levels_ = {}, {}, {}
        for k in cp.order:
            factor = design.factors[k]
            covs[factor.name] = sigma2 * templates[k] @ templates[k].T
            labels[factor.name] = factor.random_names
            blocks[factor.name] = factor.blocks
            shown = [_vc_label(n) for n in factor.random_names]
            self.cov_re_[factor.name] = _named_cov(covs[factor.name], shown)
            self.random_effects_[factor.name] = pd.DataFrame(modes[k], index=factor.group_levels, columns=shown)
            self.group_levels_[factor.name] = factor.group_levels
        self.variance_components_ = _several_factor_components(covs, labels, blocks, sigma2)

    # ------------------------------------------------------------------ prediction
    def _linear_predictor(self, design: Design, random_effects: bool) -> np.ndarray:
        eta = design.X @ self.coef_.to_numpy()
        if random_effects and len(design.factors) > 1:
            for factor in design.factors:  # a few grouping factors: each adds its clusters' effects at once
                seen = factor.groups >= 0
                b = self.random_effects_[factor.name].to_numpy()
                eta[seen] += np.einsum("ij,ij->i", factor.Z[seen], b[factor.groups[seen]])
        elif random_effects:
            seen = design.groups >= 0
            b = self.random_effects_.to_numpy()
            eta[seen] += np.einsum("ij,ij->i", design.Z[seen], b[design.groups[seen]])
        return eta

    # ------------------------------------------------------------------ likelihood interface
    def refit_ml(self) -> Self:
        """The same model refitted by ML on the training data (self if already ML)."""
        if not self.reml:
            return self
        new = clone(self).set_params(reml=False)
        for attr in ("formula_", "levels_", "feature_names_in_", "n_features_in_", "nobs_"):
            setattr(new, attr, getattr(self, attr))
        new._fit_design(self._design)
        new._design = self._design
        return new

    def likelihood_params(self) -> dict:
        """beta, Psi (``cov_re``) and sigma^2, as mitml's D3 pools them (Tau matrices averaged).

        With several grouping factors ``cov_re`` is block diagonal: the factors' Psi_k in the
        order of ``cov_re_``.
        """
        if isinstance(self.cov_re_, dict):
            cov_re = linalg.block_diag(*[c.to_numpy() for c in self.cov_re_.values()])
        else:
            cov_re = self.cov_re_.to_numpy().copy()
        return {"beta": self.coef_.to_numpy().copy(), "cov_re": cov_re, "sigma2": np.array(self.scale_)}

    def loglik_at(self, params: dict, data: pd.DataFrame | None = None) -> float:
        """Marginal ML log-likelihood at beta, Psi, sigma^2 (mitml's ``devfun2`` evaluation).

        -2 l = n log(2 pi sigma^2) + sum_j log|V*_j| + (y - X beta)' V*^{-1} (y - X beta) / sigma^2,
        V*_j = I + Z_j Psi Z_j' / sigma^2, computed through the q x q matrices of all clusters.

        Parameters
        ----------
        params : dict
            ``beta``, ``cov_re`` (Psi) and ``sigma2``, as :meth:`likelihood_params`.
        data : DataFrame, default=None
            Data to evaluate the likelihood on; None for the training data.

        Returns
        -------
        float
        """
        design = self._design_for(data)
        if len(design.factors) > 1:
            return self._several_loglik_at(params, design)
        cp = _LMMCrossProducts(design)
        beta = np.asarray(params["beta"], float)
        sigma2 = float(params["sigma2"])
        rel = np.asarray(params["cov_re"], float) / sigma2
        w, v = np.linalg.eigh((rel + rel.T) / 2.0)
        lam = v * np.sqrt(np.maximum(w, 0.0))  # any factor with lam lam' = Psi / sigma^2
        M, logdet_m, LZX, LZy = _lmm_terms(lam, cp)
        rr = cp.yy - 2.0 * beta @ cp.Xy + beta @ cp.XX @ beta
        lzr = LZy - LZX @ beta
        quad = rr - np.einsum("jq,jq->", lzr, np.linalg.solve(M, lzr[..., None])[..., 0])
        return float(-0.5 * (cp.n * np.log(2.0 * np.pi * sigma2) + logdet_m + quad / sigma2))

    def _several_loglik_at(self, params: dict, design: Design) -> float:
        cp = MultiCrossProducts(design)
        cov_re = np.asarray(params["cov_re"], float)
        by_name, start = {}, 0
        for name, cov in self.cov_re_.items():  # the blocks of cov_re, in the order of cov_re_
            q = cov.shape[0]
            by_name[name] = cov_re[start : start + q, start : start + q]
            start += q
        covs = [by_name[f.name] for f in design.factors]
        return marginal_loglik(cp, np.asarray(params["beta"], float), covs, float(params["sigma2"]))


# --------------------------------------------------------------------------- logistic mixed model
class _BinaryClusters:
    def __init__(self, design: Design):
        self.cl = SortedClusters(design.groups, design.n_groups)
        self.X = design.X[self.cl.order]
        self.y = design.y[self.cl.order]
        self.g = self.cl.codes
        self.J = design.n_groups


def _conditional_modes(eta, tau, data: _BinaryClusters, u0=None, max_iter=100):
    """Newton for the mode of sum_i l_i(eta_i + tau u_j) - u_j^2 / 2 in every cluster at once.

    The criterion is strictly concave; steps are capped at 4 (in units of the N(0, 1) prior
    sd) so far starts cannot overshoot into the flat tails of the logistic.
    """
    J, g = data.J, data.g
    u = np.zeros(J) if u0 is None else u0.copy()
    converged_once = False
    for _ in range(max_iter):
        mu = special.expit(eta + tau * u[g])
        grad = tau * np.bincount(g, data.y - mu, minlength=J) - u
        hess = tau**2 * np.bincount(g, mu * (1.0 - mu), minlength=J) + 1.0
        step = np.clip(grad / hess, -4.0, 4.0)
        u = u + step
        if np.max(np.abs(step)) < 1e-10:
            if converged_once:  # one extra step once converged: quadratic convergence to ~1e-15
                break
            converged_once = True
    return u


def _agq_loglik(beta, tau, data: _BinaryClusters, nodes, weights, u0=None):
    """Adaptive Gauss-Hermite log-likelihood (Laplace when one node) and its pieces."""
    eta = data.X @ beta
    u = _conditional_modes(eta, tau, data, u0)
    g, J = data.g, data.J
    mu = special.expit(eta + tau * u[g])
    hess = tau**2 * np.bincount(g, mu * (1.0 - mu), minlength=J) + 1.0
    if nodes.shape[0] == 1:
        ll_j = np.bincount(g, data.y * (eta + tau * u[g]) - np.logaddexp(0.0, eta + tau * u[g]), minlength=J)
        total = np.sum(ll_j - 0.5 * u**2 - 0.5 * np.log(hess))
        return total, u, mu, hess, eta
    scale = np.sqrt(2.0 / hess)  # (J,)
    uk = u[:, None] + scale[:, None] * nodes[None, :]  # (J, K)
    lin = eta[:, None] + tau * uk[g]  # (n, K)
    ll = data.y[:, None] * lin - np.logaddexp(0.0, lin)
    ll_jk = data.cl.sums(ll)  # (J, K) (rows are sorted by cluster)
    log_terms = ll_jk - 0.5 * uk**2 + nodes[None, :] ** 2 + np.log(weights)[None, :]
    log_int = special.logsumexp(log_terms, axis=1) + np.log(scale) - 0.5 * np.log(2.0 * np.pi)
    return float(np.sum(log_int)), u, mu, hess, eta


def _laplace_gradient(beta, tau, data: _BinaryClusters, u, mu, hess):
    """Exact gradient of the Laplace log-likelihood in (beta, tau) (implicit mode derivatives)."""
    g, J, X = data.g, data.J, data.X
    w = mu * (1.0 - mu)
    wp = w * (1.0 - 2.0 * mu)
    resid = data.y - mu
    cl = data.cl
    sum_w = np.bincount(g, w, minlength=J)
    sum_wp = np.bincount(g, wp, minlength=J)
    sum_r = np.bincount(g, resid, minlength=J)
    sum_wx = cl.sums(w[:, None] * X)  # (J, p)
    sum_wpx = cl.sums(wp[:, None] * X)
    du_dbeta = -tau * sum_wx / hess[:, None]
    du_dtau = (sum_r - tau * u * sum_w) / hess
    dh_dbeta = tau**2 * sum_wpx + (tau**3 * sum_wp)[:, None] * du_dbeta
    dh_dtau = 2 * tau * sum_w + tau**2 * u * sum_wp + tau**3 * sum_wp * du_dtau
    grad_beta = X.T @ resid - np.sum(dh_dbeta / (2.0 * hess[:, None]), axis=0)
    grad_tau = np.sum(u * sum_r) - np.sum(dh_dtau / (2.0 * hess))
    return grad_beta, grad_tau


class LogisticMixedModel(FormulaModel):
    """Random-intercept logistic regression (lme4 ``glmer(family = binomial)``).

    Model: logit P(y_ij = 1 | b_j) = x_ij' beta + b_j, b_j = tau u_j, u_j ~ N(0, 1).
    Maximum likelihood with the marginal likelihood of each cluster approximated by
    adaptive Gauss-Hermite quadrature centred at the conditional mode u_j-hat with scale
    1/sqrt(H_j), H_j = 1 + tau^2 sum_i mu_ij (1 - mu_ij) (Pinheiro & Bates 1995). One node
    (the default, as glmer's ``nAGQ = 1``) is the Laplace approximation, optimised with its
    exact gradient (implicit differentiation of the modes); more nodes start from the
    Laplace optimum. The conditional modes of all clusters are found by one vectorised
    Newton iteration.

    ``cov_params_`` is the beta block of the inverse Hessian of -log L in (tau, beta), as
    lme4's ``vcov`` (``use.hessian = TRUE``). ``df_resid_`` = n - (p + 1).

    Parameters
    ----------
    formula : str
        E.g. ``"mort ~ type + age + motor_score + pupil + ct + (1 | name)"``; a random
        intercept only. The response is 0/1 (or a two-level factor: second level = 1).
    n_agq : int, default=1
        Quadrature nodes (1 = Laplace).
    max_iter : int, default=200
        Iterations of the outer optimiser.
    reference_levels : dict, default=None
        Reference level per categorical column.
    missing : {"raise", "drop"}, default="raise"
        Rows with missing values: an error, or dropped (complete-case analysis).
    levels : dict, default=None
        Levels of categorical predictors, ``{column: [level, ...]}``, used whatever the data
        hold (a level no row holds is an all-zero column, which the fit refuses). Default:
        the levels present in the data; :class:`~skmlmi.MIPooler` sets the categories
        observed in the incomplete data, so that every completed dataset is coded alike.

    Attributes
    ----------
    coef_, cov_params_, df_resid_, loglik_, n_params_ (p + 1), nobs_
    variance_components_ : Series
        ``Intercept~~Intercept|g`` = tau^2 and the latent-scale ``ICC|g`` = tau^2 / (tau^2 + pi^2/3)
        (Snijders & Bosker; mitml reports no ICC for glmer).
    random_effects_ : DataFrame
        Conditional modes of b_j.
    group_levels_ : Index
    converged_ : bool

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> g = np.repeat(np.arange(40), 25)
    >>> x = rng.normal(size=1000)
    >>> p = 1 / (1 + np.exp(-(-0.5 + x + rng.normal(0, 0.7, 40)[g])))
    >>> df = pd.DataFrame({"g": g, "x": x, "y": (rng.uniform(size=1000) < p).astype(int)})
    >>> fit = LogisticMixedModel("y ~ x + (1 | g)").fit(df)
    >>> bool(abs(fit.coef_["x"] - 1) < 0.25)
    True
    """

    _mixed = True
    _parameter_constraints: dict = {
        **FormulaModel._parameter_constraints,
        "n_agq": [Interval(Integral, 1, 50, closed="both")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        formula: str,
        n_agq: int = 1,
        max_iter: int = 200,
        reference_levels: dict | None = None,
        missing: str = "raise",
        levels: dict | None = None,
    ):
        super().__init__(formula, reference_levels=reference_levels, missing=missing, levels=levels)
        self.n_agq = n_agq
        self.max_iter = max_iter

    def _inverse_link(self, eta):
        return special.expit(eta)

    def _check_design(self, design: Design):
        if len(design.random_names) != 1 or design.random_names[0] != "(Intercept)":
            raise ValueError(
                f"LogisticMixedModel supports a random intercept (1 | g) only; formula {self.formula!r} "
                f"has random effects {design.random_names}"
            )
        if not np.all((design.y == 0) | (design.y == 1)):
            raise ValueError(f"LogisticMixedModel needs a 0/1 response; {self.formula_.response!r} is not")

    def _fit_design(self, design: Design) -> None:
        self._check_design(design)
        data = _BinaryClusters(design)
        p = design.X.shape[1]
        # optimise in column-scaled coordinates (beta_scaled = beta * scale) for conditioning
        col_scale = data.X.std(axis=0)
        col_scale[col_scale < 1e-12] = 1.0
        scaled = _BinaryClusters(design)
        scaled.X = data.X / col_scale
        laplace = (np.zeros(1), np.array([np.sqrt(np.pi)]))
        unscale = np.r_[1.0 / col_scale, 1.0]

        def negll_laplace(par):
            beta, tau = par[:p], par[p]
            ll, u, mu, hess, _ = _agq_loglik(beta, tau, scaled, *laplace)
            gb, gt = _laplace_gradient(beta, tau, scaled, u, mu, hess)
            return -ll, -np.r_[gb, gt]

        # start: ordinary logistic regression and tau = 1 (lme4's theta start)
        start = np.r_[logistic_irls(scaled.X, scaled.y), 1.0]
        bounds = [(None, None)] * p + [(0.0, None)]
        res = optimize.minimize(
            negll_laplace,
            start,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": self.max_iter, "ftol": 1e-15, "gtol": 1e-8},
        )
        if res.x[p] < 1e-6:
            # tau = 0 is a stationary point of the Laplace likelihood (symmetric in tau), so
            # L-BFGS-B can stop on the bound below an interior maximum (seen: loglik -327.03 at
            # tau = 0 against -324.40 at tau^2 = 0.16): restart from inside and keep the best
            for tau0 in (0.25, 1.0, 2.0):
                retry = optimize.minimize(
                    negll_laplace,
                    np.r_[res.x[:p], tau0],
                    jac=True,
                    method="L-BFGS-B",
                    bounds=bounds,
                    options={"maxiter": self.max_iter, "ftol": 1e-15, "gtol": 1e-8},
                )
                if retry.fun < res.fun - 1e-9:
                    res = retry
        par = res.x
        converged = bool(res.success)
        if not converged:
            # L-BFGS-B's line search often gives up ("ABNORMAL") at the optimum itself, where
            # the Laplace log-likelihood is flat to machine precision: accept the point when
            # its gradient vanishes (the variance's component only where it is not on the bound)
            gradient = negll_laplace(par)[1]
            free = np.ones(p + 1, dtype=bool)
            free[p] = par[p] > 1e-8 or gradient[p] < 0
            converged = bool(np.max(np.abs(gradient[free])) < 1e-3)
        nodes, weights = np.polynomial.hermite.hermgauss(self.n_agq)
        if self.n_agq > 1:

            def negll(par_):
                return -_agq_loglik(par_[:p], par_[p], scaled, nodes, weights)[0]

            res = optimize.minimize(
                negll,
                par,
                method="Powell",
                bounds=bounds,
                options={"maxiter": 50 * self.max_iter, "xtol": 1e-8, "ftol": 1e-13},
            )
            par, converged = res.x, bool(res.success)
            hess = _numeric_hessian(negll, par)
        else:

            def grad(par_):
                return negll_laplace(par_)[1]

            hess = _jacobian(grad, par)
            hess = (hess + hess.T) / 2.0
        # back to the original coordinates: H_orig = D H D with D = diag(1 / scale)
        hess = hess * np.outer(1.0 / unscale, 1.0 / unscale)
        par = par * unscale
        if not converged:
            warnings.warn(
                f"LogisticMixedModel {self.formula!r}: the optimiser stopped before convergence ({res.message})",
                ConvergenceWarning,
                stacklevel=3,
            )
        self.converged_ = converged
        beta, tau = par[:p], float(par[p])
        ll, u, *_ = _agq_loglik(beta, tau, data, nodes, weights)
        fitted = special.expit(data.X @ beta + tau * u[data.g])
        eps = 10 * np.finfo(float).eps  # R's glm.fit threshold
        if np.all(data.y == data.y[0]):
            warnings.warn(
                f"LogisticMixedModel {self.formula!r}: the response is {int(data.y[0])} in every row: the intercept "
                "diverges and no estimate or standard error is meaningful",
                UserWarning,
                stacklevel=3,
            )
        elif np.any(fitted < eps) or np.any(fitted > 1 - eps):
            warnings.warn(
                f"LogisticMixedModel {self.formula!r}: fitted probabilities numerically 0 or 1 occurred (perfect or "
                "quasi-complete separation): the estimates and standard errors of the separating terms are not "
                "identified",
                UserWarning,
                stacklevel=3,
            )
        # theta first (lme4 order); at the boundary tau = 0 only the beta block is informative
        order = np.r_[p, np.arange(p)]
        H = hess[np.ix_(order, order)]
        cov = np.linalg.inv(H)[1:, 1:] if tau > 1e-6 else np.linalg.inv(H[1:, 1:])
        names = design.fixed_names
        group = self.formula_.group
        self.coef_ = pd.Series(beta, index=names, name="estimate")
        self.cov_params_ = _named_cov(cov, names)
        self.n_params_ = p + 1
        self.df_resid_ = float(design.X.shape[0] - self.n_params_)
        self.loglik_ = float(ll)
        self.tau_ = tau
        self.variance_components_ = _variance_component_series(
            np.array([[tau**2]]), ["(Intercept)"], [np.array([0])], group, icc_residual=np.pi**2 / 3.0
        )
        self.random_effects_ = pd.DataFrame({"Intercept": tau * u}, index=design.group_levels)
        self.group_levels_ = design.group_levels

    def _linear_predictor(self, design: Design, random_effects: bool) -> np.ndarray:
        eta = design.X @ self.coef_.to_numpy()
        if random_effects:
            seen = design.groups >= 0
            eta[seen] += self.random_effects_["Intercept"].to_numpy()[design.groups[seen]]
        return eta

    def likelihood_params(self) -> dict:
        return {"beta": self.coef_.to_numpy().copy(), "cov_re": np.array([[self.tau_**2]])}

    def loglik_at(self, params: dict, data: pd.DataFrame | None = None) -> float:
        """(Adaptive quadrature) log-likelihood at beta and tau^2 = ``cov_re``.

        Parameters
        ----------
        params : dict
            ``beta`` and ``cov_re`` (the 1 x 1 tau^2), as :meth:`likelihood_params`.
        data : DataFrame, default=None
            Data to evaluate the likelihood on; None for the training data.

        Returns
        -------
        float
        """
        design = self._design_for(data)
        nodes, weights = np.polynomial.hermite.hermgauss(self.n_agq)
        tau = float(np.sqrt(max(float(np.asarray(params["cov_re"]).ravel()[0]), 0.0)))
        return float(_agq_loglik(np.asarray(params["beta"], float), tau, _BinaryClusters(design), nodes, weights)[0])


def _jacobian(fun, x, rel_step=1e-6):
    """Central-difference Jacobian of a vector function."""
    x = np.asarray(x, float)
    h = rel_step * np.maximum(np.abs(x), 1.0)
    cols = []
    for i in range(x.shape[0]):
        e = np.zeros_like(x)
        e[i] = h[i]
        lo = x - e
        if i == x.shape[0] - 1 and lo[i] < 0:  # tau bound: one-sided difference
            cols.append((fun(x + e) - fun(x)) / h[i])
        else:
            cols.append((fun(x + e) - fun(lo)) / (2 * h[i]))
    return np.column_stack(cols)


def _numeric_hessian(fun, x, rel_step=1e-4):
    x = np.asarray(x, float)
    h = rel_step * np.maximum(np.abs(x), 1.0)
    d = x.shape[0]
    H = np.empty((d, d))
    f0 = fun(x)
    for i in range(d):
        ei = np.zeros(d)
        ei[i] = h[i]
        H[i, i] = (fun(x + ei) - 2 * f0 + fun(x - ei)) / h[i] ** 2
        for j in range(i):
            ej = np.zeros(d)
            ej[j] = h[j]
            H[i, j] = H[j, i] = (fun(x + ei + ej) - fun(x + ei - ej) - fun(x - ei + ej) + fun(x - ei - ej)) / (
                4 * h[i] * h[j]
            )
    return H
