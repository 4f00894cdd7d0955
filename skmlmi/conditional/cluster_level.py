"""Conditional models for variables measured at the cluster level (mice's ``2lonly.*``).

A cluster-level (level-2) variable takes one value per cluster: a school's size, a
hospital's type, a study's design. Imputing it row by row would give the rows of one
cluster different values, and would count each cluster as many times as it has rows.
These models aggregate to one row per cluster, impute at that level and expand back:

* :class:`ClusterLevelNormal` (``2lonly.norm``): Bayesian linear regression of the cluster
  values on the cluster means of the predictors;
* :class:`ClusterLevelPMM` (``2lonly.pmm``): predictive mean matching at the cluster level,
  donors being the observed clusters;
* :class:`ClusterLevelLogistic` (miceadds' ``2lonly.function`` with ``logreg``): Bayesian
  logistic regression of a binary cluster value on the predictors' cluster means;
* :class:`ClusterMean` (``2lonly.mean``): fills a cluster's missing rows from the cluster's
  own observed values, a repair for inconsistently recorded level-2 data.

Level-1 predictors enter through their cluster means (over all rows of the cluster, with
the current completed values), level-2 predictors through their (constant) value. Every
aggregation is one ``np.bincount`` per column; there is no loop over clusters.

With nested grouping factors (pupils in classes in schools) a variable constant within
classes but not within schools is imputed at the class level, and its classes lie in
schools: the model of the class values then carries a random school intercept (one per
outer factor) -- :class:`~skmlmi.conditional.RandomEffectsNormal`,
:class:`~skmlmi.conditional.RandomEffectsPMM` or :class:`~skmlmi.conditional.RandomEffectsLogistic`
fitted with the classes as rows and the schools as clusters -- so that a class without a
value receives its school's part of the variable, which the school's other classes
reveal. mice's ``2lonly`` methods take one cluster variable and have no such term; a
regression over classes alone imputed a class-level variable without its school variance
(about two thirds of it lost in a test where the schools carry 80% of the variance), and
biased its coefficient in a three-level analysis by -9% (tests/conditional/test_multiple_factors.py,
benchmarks/validate_several_factors.py). :class:`ClusterMean` repairs within each class and
ignores the outer factors.

:func:`is_cluster_constant` tells which columns are cluster-level, so that the engine can
choose these models by default.

This module knows nothing about DataFrames (except that :func:`is_cluster_constant`
accepts one), column names or the chained-equations loop.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd
from scipy import linalg, special
from sklearn.utils._param_validation import Interval

from .._kernels import (
    bayesian_regression_draw,
    cluster_constancy,
    cluster_counts,
    cluster_means,
    find_redundant_columns,
    pmm_match,
    power_of_two_exponents,
)
from .base import BaseConditionalImputer, Draw, DrawContext
from .random_effects import RandomEffectsNormal, RandomEffectsPMM
from .random_effects_discrete import RandomEffectsCategorical, RandomEffectsLogistic
from .single_level import BayesianLogistic, Polytomous, _augmentation_rows, _CategoryDraw

__all__ = ["ClusterLevelLogistic", "ClusterLevelNormal", "ClusterLevelPMM", "ClusterMean", "is_cluster_constant"]


# --------------------------------------------------------------------------- detection
def is_cluster_constant(values: Any, groups: Any) -> bool | np.ndarray | pd.Series:
    """Whether a variable takes a single value within every cluster (a cluster-level variable).

    Missing values are ignored: a column is cluster-constant when, in every cluster, all
    its non-missing values are equal, up to a few units of rounding of the column's largest
    magnitude (the package's one rule, :func:`skmlmi._kernels.cluster_constancy`: relative to
    the column's own magnitude with no absolute floor, so a row-level variable in units of
    1e-12, or shifted by 1e12, is not taken for a cluster-level one).
    A column gives no evidence of being measured at the cluster level, and is reported
    ``False``, when no cluster holds two or more non-missing values (for instance when
    every cluster has one row) or when it is entirely missing.

    Parameters
    ----------
    values : array-like of shape (n,) or (n, p), or DataFrame
        The variable(s); numeric, boolean, string or categorical (non-numeric values are
        compared as labels).
    groups : array-like of shape (n,)
        Cluster labels (any hashable values; missing labels are an error).

    Returns
    -------
    bool, ndarray of shape (p,) of bool, or Series
        One answer per column: a bool for 1-D input, an array for a 2-D array and a
        Series indexed by column name for a DataFrame.

    Notes
    -----
    Cost O(n) per column: each value is compared with one value of its cluster (no cluster
    sums, so the answer does not depend on the clusters' sizes).

    Examples
    --------
    >>> import numpy as np
    >>> groups = np.array([0, 0, 1, 1, 1])
    >>> is_cluster_constant(np.array([2.0, 2.0, 5.0, np.nan, 5.0]), groups)
    True
    >>> is_cluster_constant(np.array([[1.0, 2.0], [1.0, 3.0], [4.0, 2.0], [4.0, 2.0], [4.0, 2.0]]), groups)
    array([ True, False])
    """
    codes = _group_codes(groups)
    if isinstance(values, pd.DataFrame):
        if len(values) != len(codes):
            raise ValueError(f"values has {len(values)} rows but groups has {len(codes)}.")
        return pd.Series(
            {column: _one_constant(values[column].to_numpy(), codes) for column in values.columns}, dtype=bool
        )
    if isinstance(values, pd.Series):
        values = values.to_numpy()
    arr = np.asarray(values)
    if arr.ndim not in (1, 2):
        raise ValueError(f"values must be 1-D or 2-D; got shape {arr.shape}.")
    if arr.shape[0] != len(codes):
        raise ValueError(f"values has {arr.shape[0]} rows but groups has {len(codes)}.")
    if arr.ndim == 1:
        return _one_constant(arr, codes)
    if arr.dtype.kind in "biuf":  # all columns numeric: one call of the rule for the whole array
        return _constant_with_evidence(arr.astype(float), codes)
    return np.array([_one_constant(arr[:, k], codes) for k in range(arr.shape[1])], dtype=bool)


def _group_codes(groups) -> np.ndarray:
    groups = groups.to_numpy() if isinstance(groups, pd.Series) else np.asarray(groups)
    if groups.ndim != 1:
        raise ValueError(f"groups must be 1-D; got shape {groups.shape}.")
    codes, _ = pd.factorize(groups, use_na_sentinel=True)
    if (codes < 0).any():
        raise ValueError(f"groups has missing cluster labels (first at row {int(np.argmax(codes < 0))}).")
    return codes


def _one_constant(column: np.ndarray, codes: np.ndarray) -> bool:
    if column.dtype.kind in "biuf":
        v = column.astype(float)
    else:  # labels: compare codes, missing labels -> NaN
        labels, _ = pd.factorize(pd.Series(column, dtype=object), use_na_sentinel=True)
        v = np.where(labels < 0, np.nan, labels.astype(float))
    return bool(_constant_with_evidence(v[:, None], codes)[0])


def _constant_with_evidence(V: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The one rule on the columns of ``V`` (n, p), and evidence: a cluster holding two values."""
    if V.shape[1] == 0 or V.shape[0] == 0:
        return np.zeros(V.shape[1], dtype=bool)
    n_groups = int(codes.max()) + 1
    _, varying = cluster_constancy(V, codes, n_groups)
    present = ~np.isnan(V)
    counts = np.stack([np.bincount(codes[present[:, k]], minlength=n_groups) for k in range(V.shape[1])], axis=1)
    return ~varying.any(axis=0) & (counts.max(axis=0, initial=0) >= 2)


# --------------------------------------------------------------------------- aggregation
class _ClusterData:
    """One row per cluster: counts, predictor means over all rows, target mean over observed rows."""

    def __init__(self, y, observed, X, groups, n_clusters):
        self.n_rows = cluster_counts(groups, n_clusters)
        self.n_observed = cluster_counts(groups[observed], n_clusters)
        self.xbar = cluster_means(X, groups, n_clusters) if X.shape[1] else np.zeros((n_clusters, 0))
        go, yo = groups[observed], y[observed]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.bincount(go, weights=yo, minlength=n_clusters) / self.n_observed
        self.fitted = self.n_observed > 0  # clusters whose value is (at least partly) observed
        # A cluster's value is its observed value itself where that is constant (a mean of equal
        # floats may differ in the last bit, and PMM must donate observed values exactly).
        reference, self.varying = cluster_constancy(yo, go, n_clusters)
        self.ybar = np.where(self.varying, mean, reference)


def _cluster_names(context: DrawContext, codes) -> str:
    codes = list(codes)
    names = ", ".join(repr(context.cluster_name(int(c))) for c in codes[:10])
    return names + (f" and {len(codes) - 10} more" if len(codes) > 10 else "")


def _design(xbar: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Cluster-level design [1, xbar - center]: centring moves only the intercept (flat prior) and
    keeps X'X well conditioned for a shifted predictor (1e12 + x)."""
    return np.column_stack([np.ones(len(xbar)), xbar - center])


class _CentredCoefficients:
    """``coef`` at xbar = 0 from the coefficients stored at xbar = ``center``."""

    @property
    def coef(self):
        coef = self.coef_centred.copy()
        coef[0] -= self.center @ coef[1:]
        return coef


def _sample_clusters(X, groups, name):
    """Cluster codes present among the rows to impute, their row index and predictor means."""
    if groups is None:
        raise ValueError(f"{name}: a cluster-level draw needs the cluster codes of the rows to impute.")
    groups = np.asarray(groups, dtype=np.intp)
    groups = groups[:, -1] if groups.ndim == 2 else groups  # nested factors: the model's own units are the last
    codes, inverse = np.unique(groups, return_inverse=True)
    xbar = cluster_means(X, inverse, len(codes)) if X.shape[1] else np.zeros((len(codes), 0))
    return codes, inverse, xbar


class _WithinOuterUnitsDraw(Draw):
    """A unit-level draw made by a random-intercept model over the outer units (see ``_draw_within``)."""

    def __init__(self, inner: Draw, name: str):
        self.inner, self.name = inner, name

    def sample(self, X, groups, rng):
        groups = np.asarray(groups, dtype=np.intp)
        codes, first, inverse = np.unique(groups[:, -1], return_index=True, return_inverse=True)
        xbar = cluster_means(X, inverse, len(codes)) if X.shape[1] else np.zeros((len(codes), 0))
        outer = groups[first, :-1]
        values = self.inner.sample(xbar, outer[:, 0] if outer.shape[1] == 1 else outer, rng)
        return np.asarray(values, dtype=float)[inverse]


class _ClusterLevelBase(BaseConditionalImputer):
    """Shared checks: a cluster identifier, predictors judged at the cluster level.

    ``groups`` is one factor's codes (the model's units are its clusters), or, for a variable
    at an inner level of nested factors (a class-level variable of pupils in classes in
    schools), an (n, k) array of the factors outer to inner whose last column holds the
    model's units: each unit then lies in one unit of every outer factor, and the model of
    the units' values carries a random intercept for each outer factor (``_draw_within``).
    """

    accepted_roles = frozenset({1})
    requires_groups = True
    supports_fixed_clusters = False
    handles_systematic = True
    cluster_level = True

    #: whether a cluster may hold observed and missing rows at once
    _allows_partial = False

    def _within_outer(self) -> BaseConditionalImputer | None:
        """The model of the unit values at an inner level of nested factors (None: outer factors ignored)."""
        return None

    def _units(self, groups, context) -> tuple[np.ndarray, np.ndarray | None]:
        """The model's unit codes and, at an inner level of nested factors, each unit's outer codes (J, k - 1)."""
        if groups.ndim == 1:
            return groups, None
        units, J = groups[:, -1], context.n_clusters
        outer = np.zeros((J, groups.shape[1] - 1), dtype=np.intp)
        outer[units] = groups[:, :-1]
        crossing = np.flatnonzero((outer[units] != groups[:, :-1]).any(axis=1))
        if crossing.size:
            raise ValueError(
                f"{self._name(context)}: unit {context.cluster_name(int(units[crossing[0]]))!r} of the last "
                "grouping factor lies in more than one unit of an outer factor; a cluster-level model takes "
                "several factors only when they are nested (outer to inner)."
            )
        return units, outer

    def _draw_within(self, data, outer, rng, state, context, yfit=None, model=None):
        """Impute the units' values by ``_within_outer`` (a random-intercept model) over the outer units.

        A class-level variable varies between schools as well as between classes: a regression over
        classes alone would impute it without its school component, which the other classes of the
        school carry (a three-level simulation gave its slope in the analysis 9% low). The units
        with a value are the model's rows (the target their value, the predictors their means), and
        the outer factors its clusters.
        """
        fitted = data.fitted
        xfit = data.xbar[fitted]
        if yfit is None:
            yfit = data.ybar[fitted]
            if context.kind == "binary":
                yfit = np.rint(yfit)  # a value averaged over rows that disagree (logged) goes to the nearer code
        counts = context.factor_counts[:-1]
        sub_context = DrawContext(
            target=context.target,
            kind=context.kind,
            n_categories=context.n_categories,
            ordered=context.ordered,
            n_clusters=int(counts[0]),
            factor_counts=tuple(counts) if len(counts) > 1 else (),
            factor_names=tuple(context.factor_names[:-1]) if len(counts) > 1 else (),
            predictor_names=context.predictor_names,
            checked=True,
        )
        groups = outer[fitted, 0] if outer.shape[1] == 1 else outer[fitted]
        ones = np.ones(xfit.shape[1], dtype=int)
        inner, state = (self._within_outer() if model is None else model).draw(
            yfit, np.ones(len(yfit), dtype=bool), xfit, ones, groups, rng, state, sub_context
        )
        # the inner model's rows are this level's units and its clusters the outer factor's units
        context.events.extend(f"the model of its units within the outer units: {event}" for event in sub_context.events)
        return _WithinOuterUnitsDraw(inner, self._name(context)), state

    def _usable_columns(self, X, observed, roles, groups, context):
        # Redundancy is judged on the cluster-level design the model is fitted on: a level-1
        # predictor whose cluster means are constant carries nothing at this level.
        if X.shape[1] == 0:
            return np.ones(0, dtype=bool)
        groups = self._units(groups, context)[0]
        J = context.n_clusters
        fitted = cluster_counts(groups[observed], J) > 0
        xbar = cluster_means(X, groups, J)[fitted]
        drop = find_redundant_columns(xbar, scale=np.abs(X).max(axis=0))
        keep = np.ones(X.shape[1], dtype=bool)
        for index, reason in drop.items():
            context.log(
                f"predictor {context.predictor_name(index)!r} of cluster-level {context.target!r} "
                f"dropped: its cluster means are {reason}"
            )
            keep[index] = False
        return keep

    def _aggregate(self, y, observed, X, groups, context) -> _ClusterData:
        J = context.n_clusters
        if groups.size and (groups.min() < 0 or groups.max() >= J):
            raise ValueError(f"{type(self).__name__} for {context.target!r}: cluster codes must lie in 0..{J - 1}.")
        data = _ClusterData(y, observed, X, groups, J)
        partial = np.flatnonzero((data.n_observed > 0) & (data.n_observed < data.n_rows))
        if partial.size and not self._allows_partial:
            raise ValueError(
                f"{type(self).__name__}: cluster-level variable {context.target!r} is observed in some rows "
                f"and missing in others of cluster(s) {_cluster_names(context, partial)}. A cluster-level "
                "variable must be missing for the whole cluster or for none of it; if the level-2 data are "
                "recorded inconsistently, use ClusterMean to fill each cluster from its observed values."
            )
        if not data.fitted.any():
            raise ValueError(
                f"{type(self).__name__} for {context.target!r}: no cluster has an observed value to fit on."
            )
        varying = np.flatnonzero(data.varying)
        if varying.size and not self._allows_partial:  # ClusterMean exists to repair such data
            context.log(
                f"cluster-level variable {context.target!r} is not constant within cluster(s) "
                f"{_cluster_names(context, varying)}; the mean of its observed values there is used"
            )
        return data


# --------------------------------------------------------------------------- normal
class _ClusterNormalDraw(_CentredCoefficients, Draw):
    def __init__(self, coef_centred, sigma, name, center):
        self.coef_centred, self.sigma, self.name, self.center = coef_centred, sigma, name, center

    def sample(self, X, groups, rng):
        codes, inverse, xbar = _sample_clusters(X, groups, self.name)
        values = _design(xbar, self.center) @ self.coef_centred + self.sigma * rng.standard_normal(len(codes))
        return values[inverse]


class ClusterLevelNormal(_ClusterLevelBase):
    """Bayesian normal imputation of a cluster-level variable (mice's ``2lonly.norm``).

    The data are aggregated to one row per cluster j: the target value y_j (the mean of
    its observed rows) and the cluster means xbar_j of the predictors over all rows of the
    cluster (level-1 predictors thus enter as their cluster means, level-2 predictors
    as themselves). On the clusters with an observed value the model is

        y_j = alpha + xbar_j' beta + u_j,  u_j ~ N(0, sigma^2),

    with the flat prior on (alpha, beta, log sigma) (scale-equivariant; the cluster means are
    centred before the fit, so a shifted predictor keeps X'X well conditioned); each visit draws
    sigma*^2 = RSS / chi^2_{J_obs - p - 1} and (alpha*, beta*) ~ N(hat, sigma*^2 (X'X)^-1)
    (Rubin 1987, p. 167, as mice's ``norm``) and imputes one value per cluster,
    y_j* = alpha* + xbar_j' beta* + sigma* eps_j, given to every row of the cluster.

    A cluster whose value is observed in some rows and missing in others is a ValueError
    naming the clusters (use :class:`ClusterMean` for such data). Clusters without an
    observed value (the usual case), including clusters unseen at fit, are imputed
    from their predictors' cluster means. Observed values that vary within a cluster
    are averaged (logged).

    Parameters
    ----------
    ridge : float, default=1e-5
        Relative ridge added to X'X only if its Cholesky factorisation fails (logged),
        for instance with fewer observed clusters than predictors. Cost per visit: O(n p)
        to aggregate plus O(J p^2).

    Notes
    -----
    With few observed clusters the completed data's variance components are a little high, as
    with any posterior (proper) imputation: the imputed values carry the posterior uncertainty of
    (alpha, beta, sigma), a share of sigma^2 of order 1 / J_obs. In the validity matrix
    (benchmarks/validate_defaults.py, J = 30, about 21 clusters observed, ICC of y 0.1) the
    random-intercept variance of ``y ~ x + z + (1 | g)`` is 13.7% (MC SE 1.6%) above the complete
    data's, and R's ``2lonly.norm`` 12.8% on the same datasets; at J = 100, 4%. Measured on the
    same 400 replications: equal cluster sizes instead of 5 to 40 give 11.1% (1.5%), so the
    unequal reliability of the cluster means is a small part of it; a prior making the posterior
    mean of sigma^2 its unbiased estimate (two more degrees of freedom) gives 9.9% (1.5%). The
    cluster means are kept manifest: shrinking them towards the grand mean (latent aggregation)
    is right for a level-1 variable that the target predicts, and wrong for one that defines a
    context (there it moved the coefficient of x by -0.18 in the same design). R's jomo (a joint
    model with latent cluster means) does worse on the same 200 replications: +35% (2.2%), against
    +12.6% (2.0%) here, and an intercept bias of the outcome-role regression of -0.027 (MC SE 0.006)
    against +0.006 (0.006); benchmarks/compare_defaults_jomo.py.

    See Also
    --------
    ClusterLevelPMM, ClusterMean, is_cluster_constant

    Examples
    --------
    >>> import numpy as np
    >>> from skmlmi.conditional.base import DrawContext
    >>> rng = np.random.default_rng(0)
    >>> groups = np.repeat(np.arange(40), 5)
    >>> X = rng.normal(size=(200, 1))
    >>> y = np.repeat(rng.normal(size=40), 5)
    >>> observed = np.repeat(rng.random(40) < 0.7, 5)
    >>> context = DrawContext(target="size", n_clusters=40)
    >>> draw, _ = ClusterLevelNormal().draw(y, observed, X, np.ones(1, int), groups, rng, context=context)
    >>> imputed = draw.sample(X[~observed], groups[~observed], rng)
    >>> bool(is_cluster_constant(imputed, groups[~observed]))
    True
    """

    target_kinds = frozenset({"continuous", "integer"})
    r_names = {"2lonly.norm": {}}
    _parameter_constraints = {"ridge": [Interval(Real, 0, None, closed="left")]}

    def __init__(self, ridge: float = 1e-5):
        self.ridge = ridge

    def _within_outer(self) -> BaseConditionalImputer:
        return RandomEffectsNormal()

    def _draw(self, y, observed, X, roles, groups, rng, state, context):
        units, outer = self._units(groups, context)
        data = self._aggregate(y, observed, X, units, context)
        if outer is not None:
            return self._draw_within(data, outer, rng, state, context)
        center = data.xbar[data.fitted].mean(axis=0)
        design = _design(data.xbar[data.fitted], center)
        _, coef, sigma, ridged = bayesian_regression_draw(design, data.ybar[data.fitted], rng, self.ridge)
        if ridged:
            context.log(f"ridge {self.ridge:g} added to the cluster-level normal equations of {context.target!r}")
        return _ClusterNormalDraw(coef, sigma, f"ClusterLevelNormal for {context.target!r}", center), None


# --------------------------------------------------------------------------- pmm
class _ClusterPMMDraw(_CentredCoefficients, Draw):
    def __init__(self, coef_centred, yhat_donors, y_donors, donors, name, center):
        self.coef_centred, self.yhat_donors, self.y_donors = coef_centred, yhat_donors, y_donors
        self.donors, self.name, self.center = donors, name, center

    def values(self, xbar, rng):
        """One imputed value per cluster with predictor means ``xbar``."""
        target = _design(xbar, self.center) @ self.coef_centred
        return self.y_donors[pmm_match(self.yhat_donors, target, self.donors, rng)]

    def sample(self, X, groups, rng):
        codes, inverse, xbar = _sample_clusters(X, groups, self.name)
        return self.values(xbar, rng)[inverse]


def _cluster_pmm(data, donors, ridge, rng, context, name):
    center = data.xbar[data.fitted].mean(axis=0)
    design = _design(data.xbar[data.fitted], center)
    y_fit = data.ybar[data.fitted]
    coef_hat, coef_star, _, ridged = bayesian_regression_draw(design, y_fit, rng, ridge)
    if ridged:
        context.log(f"ridge {ridge:g} added to the cluster-level normal equations of {context.target!r}")
    return _ClusterPMMDraw(coef_star, design @ coef_hat, y_fit.copy(), donors, name, center)


class ClusterLevelPMM(_ClusterLevelBase):
    """Predictive mean matching for a cluster-level variable (mice's ``2lonly.pmm``).

    Aggregates to one row per cluster as :class:`ClusterLevelNormal` and matches at that
    level: the donors are the clusters with an observed value, their predictions use the
    least-squares estimate (yhat_j = xbar_j' beta_hat), the recipients' a posterior draw
    (xbar_j' beta*); each recipient cluster receives the observed value of one of the
    ``donors`` closest donor clusters, drawn at random (matchtype 1, van Buuren 2018,
    §3.4), for all its rows. Only observed cluster values are imputed.

    The prior is :class:`ClusterLevelNormal`'s (flat, scale-equivariant).

    Parameters
    ----------
    donors : int, default=5
        Size of the pool of closest donor clusters.
    ridge : float, default=1e-5
        Relative ridge used only if X'X is numerically singular (logged).

    See Also
    --------
    ClusterLevelNormal, ClusterMean

    Examples
    --------
    >>> import numpy as np
    >>> from skmlmi.conditional.base import DrawContext
    >>> rng = np.random.default_rng(0)
    >>> groups = np.repeat(np.arange(40), 5)
    >>> X = rng.normal(size=(200, 1))
    >>> y = np.repeat(rng.integers(0, 4, size=40), 5).astype(float)
    >>> observed = np.repeat(rng.random(40) < 0.7, 5)
    >>> context = DrawContext(target="type", n_clusters=40)
    >>> draw, _ = ClusterLevelPMM().draw(y, observed, X, np.ones(1, int), groups, rng, context=context)
    >>> set(draw.sample(X[~observed], groups[~observed], rng)) <= set(y[observed])
    True
    """

    target_kinds = frozenset({"continuous", "integer", "binary"})
    r_names = {"2lonly.pmm": {}}
    _parameter_constraints = {
        "donors": [Interval(Integral, 1, None, closed="left")],
        "ridge": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, donors: int = 5, ridge: float = 1e-5):
        self.donors = donors
        self.ridge = ridge

    def _within_outer(self) -> BaseConditionalImputer:
        return RandomEffectsPMM(donors=self.donors)

    def _draw(self, y, observed, X, roles, groups, rng, state, context):
        units, outer = self._units(groups, context)
        data = self._aggregate(y, observed, X, units, context)
        if outer is not None:
            return self._draw_within(data, outer, rng, state, context)
        name = f"ClusterLevelPMM for {context.target!r}"
        return _cluster_pmm(data, self.donors, self.ridge, rng, context, name), None


# --------------------------------------------------------------------------- logistic
class _ClusterLogisticDraw(Draw):
    def __init__(self, inner: Draw, name: str):
        self.inner, self.name = inner, name

    def sample(self, X, groups, rng):
        codes, inverse, xbar = _sample_clusters(X, groups, self.name)
        return np.asarray(self.inner.sample(xbar, None, rng), dtype=float)[inverse]


#: Proposals of the sampling-importance-resampling draw, and the degrees of freedom of their t law.
_SIR_PROPOSALS, _SIR_DF = 1000, 4.0


def _logistic_posterior_draw(inner, xfit, yfit, rng, context) -> _CategoryDraw:
    """One draw from the exact posterior of the logit, by sampling-importance-resampling.

    The posterior is the one whose normal approximation ``inner`` (a
    :class:`~skmlmi.conditional.BayesianLogistic` fit) draws from: the likelihood of the
    observed clusters times the White-Daniel-Royston pseudo-data. ``_SIR_PROPOSALS`` candidates
    come from a multivariate t with ``_SIR_DF`` degrees of freedom at the mode, scaled by the
    inverse information there (heavier tails than the posterior, so the importance weights
    are bounded), and one is resampled with probability proportional to posterior / proposal.
    Cost O(M J p) for M proposals and J observed clusters, no loop.
    """
    n, p = xfit.shape
    center = inner.center
    exponents = power_of_two_exponents(xfit.std(axis=0), np.abs(center)) if p else np.zeros(0, dtype=int)
    Xa, ya, wa = _augmentation_rows(xfit, 2)
    # the fit's own units (centred, divided by powers of two): exact, and scale-free
    design = np.column_stack([np.ones(n + len(ya)), np.ldexp(np.vstack([xfit, Xa]) - center, -exponents)])
    response = np.concatenate([yfit, ya.astype(float)])
    weight = np.concatenate([np.ones(n), wa])
    # inner's intercept is at x = center, so the same in these units; its slopes are in the data's units
    mode = np.concatenate([inner.alpha_hat_centred, np.ldexp(inner.beta_hat[:, 0], exponents)])
    mu = special.expit(design @ mode)
    information = design.T @ ((weight * mu * (1.0 - mu))[:, None] * design)
    try:
        chol = np.linalg.cholesky(information)
    except np.linalg.LinAlgError:  # singular information: keep the normal approximation's draw
        context.log(f"ClusterLevelLogistic for {context.target!r}: singular information; normal approximation used")
        return inner
    q = p + 1
    # t proposals: mode + L^-T z / s, s = sqrt(chi2_nu / nu), so that (theta - mode)' I (theta - mode) = |z|^2 / s^2
    z = rng.standard_normal((_SIR_PROPOSALS, q))
    scale = np.sqrt(rng.chisquare(_SIR_DF, _SIR_PROPOSALS) / _SIR_DF)
    candidates = mode + linalg.solve_triangular(chol, z.T, lower=True, trans="T").T / scale[:, None]
    log_proposal = -0.5 * (_SIR_DF + q) * np.log1p(np.sum(z * z, axis=1) / (scale * scale) / _SIR_DF)
    eta = candidates @ design.T
    log_posterior = (response * eta - np.logaddexp(0.0, eta)) @ weight
    log_w = log_posterior - log_proposal
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    ess = 1.0 / np.sum(w * w)
    if ess < 0.05 * _SIR_PROPOSALS:
        context.log(
            f"ClusterLevelLogistic for {context.target!r}: the posterior is far from its normal approximation "
            f"(effective sample size {ess:.0f} of {_SIR_PROPOSALS} proposals)"
        )
    star = candidates[rng.choice(_SIR_PROPOSALS, p=w)]
    alpha_star = star[:1]
    beta_star = np.ldexp(star[1:], -exponents)[:, None]
    return _CategoryDraw(alpha_star, beta_star, inner.alpha_hat_centred, inner.beta_hat, inner.name, center)


class ClusterLevelLogistic(_ClusterLevelBase):
    """Bayesian logistic imputation of a binary cluster-level variable.

    The data are aggregated to one row per cluster as in :class:`ClusterLevelNormal`; on the
    clusters with an observed value the model is

        logit P(y_j = 1) = alpha + xbar_j' beta,

    with the prior of :class:`~skmlmi.conditional.BayesianLogistic` (mice's ``logreg``: the
    White-Daniel-Royston pseudo-data against separation). Each visit draws (alpha*, beta*)
    from its exact posterior, and each cluster without an observed value (or unseen at fit)
    receives one Bernoulli draw, given to all its rows. This is miceadds'
    ``2lonly.function`` with ``imputationFunction = "logreg"``, except for the draw: ``logreg``
    draws from the normal approximation at the posterior mode, which with a few dozen
    clusters misses the posterior's skew away from zero. Here the mode and information
    define a multivariate t proposal (4 df) and one of 1000 proposals is resampled with
    weights posterior / proposal (sampling-importance-resampling; a weak effective sample
    size is logged). In the package's validity matrix (benchmarks/validate_defaults.py: 30
    clusters of 5-40 rows, about 21 observed, 480 replications) the coefficient of the
    imputed variable in the analysis came out 5-7% low with the normal approximation and
    2-4% low with the exact draw (0.2-1% with 100 clusters). The exact draw also makes the
    imputed variable follow the predictors' means a little more closely: the regression of
    the variable on a predictor's cluster mean came out about 8% of its coefficient higher
    than with the normal approximation (30 clusters, 200 replications; MC SE 3%). mice's
    ``2lonly.pmm`` on a binary variable matches on predicted probabilities among few donor
    clusters, which pulls the imputations to the middle (14% attenuation in the same
    simulation).

    The prior (the pseudo-data, at the cluster means' own mean +- 0.5 SD) is
    scale-equivariant. A cluster whose value is observed in some rows and missing in others
    is a ValueError naming the clusters (use :class:`ClusterMean`).

    Parameters
    ----------
    ridge : float, default=1e-5
        As :class:`~skmlmi.conditional.BayesianLogistic`.
    max_iter : int, default=100
        Newton steps per visit (to the posterior mode). Cost per visit: O(n p) to aggregate,
        then O(J p^2) per step and O(1000 J p) for the draw.

    See Also
    --------
    ClusterLevelNormal, ClusterLevelPMM, ClusterMean

    Examples
    --------
    >>> import numpy as np
    >>> from skmlmi.conditional.base import DrawContext
    >>> rng = np.random.default_rng(0)
    >>> groups = np.repeat(np.arange(60), 5)
    >>> X = rng.normal(size=(300, 1))
    >>> y = np.repeat((rng.random(60) < 0.4).astype(float), 5)
    >>> observed = np.repeat(rng.random(60) < 0.7, 5)
    >>> context = DrawContext(target="private", kind="binary", n_categories=2, n_clusters=60)
    >>> draw, _ = ClusterLevelLogistic().draw(y, observed, X, np.ones(1, int), groups, rng, context=context)
    >>> imputed = draw.sample(X[~observed], groups[~observed], rng)
    >>> set(imputed) <= {0.0, 1.0} and bool(is_cluster_constant(imputed, groups[~observed]))
    True
    """

    target_kinds = frozenset({"binary"})
    r_names = {}
    _parameter_constraints = {
        "ridge": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, ridge: float = 1e-5, max_iter: int = 100):
        self.ridge = ridge
        self.max_iter = max_iter

    def _within_outer(self) -> BaseConditionalImputer:
        return RandomEffectsLogistic()

    def _draw(self, y, observed, X, roles, groups, rng, state, context):
        units, outer = self._units(groups, context)
        data = self._aggregate(y, observed, X, units, context)
        if outer is not None:
            return self._draw_within(data, outer, rng, state, context)
        xfit = data.xbar[data.fitted]
        # a value averaged over rows that disagree (logged by _aggregate) is taken to the nearer code
        yfit = np.rint(data.ybar[data.fitted])
        sub_context = DrawContext(
            target=context.target, kind="binary", n_categories=2, predictor_names=context.predictor_names
        )
        # the posterior mode (warm-started across visits) and its normal approximation
        inner, state = BayesianLogistic(ridge=self.ridge, max_iter=self.max_iter)._draw(
            yfit, np.ones(len(yfit), dtype=bool), xfit, np.ones(xfit.shape[1], dtype=int), None, rng, state, sub_context
        )
        context.events.extend(sub_context.events)
        inner = _logistic_posterior_draw(inner, xfit, yfit, rng, context)
        return _ClusterLogisticDraw(inner, f"ClusterLevelLogistic for {context.target!r}"), state


# --------------------------------------------------------------------------- mean
class _ClusterMeanDraw(Draw):
    def __init__(self, fill, fallback, categorical, name):
        self.fill, self.fallback, self.categorical, self.name = fill, fallback, categorical, name

    def sample(self, X, groups, rng):
        codes, inverse, xbar = _sample_clusters(X, groups, self.name)
        known = codes < len(self.fill)
        values = np.full(len(codes), np.nan)
        values[known] = self.fill[codes[known]]
        need = np.isnan(values)
        if need.any() and isinstance(self.fallback, _WithinOuterUnitsDraw):  # units within outer units
            rows = need[inverse]
            drawn = self.fallback.sample(X[rows], np.asarray(groups)[rows], rng)
            values[inverse[rows]] = drawn
        elif need.any():  # clusters with nothing observed: the fallback model, from the predictors' means
            if self.categorical:
                values[need] = self.fallback.sample(xbar[need], None, rng)
            else:
                values[need] = self.fallback.values(xbar[need], rng)
        return values[inverse]


class ClusterMean(_ClusterLevelBase):
    """Fill a cluster's missing rows from the cluster's observed values (mice's ``2lonly.mean``).

    Meant to repair level-2 variables recorded inconsistently: where a cluster has some
    observed rows, every missing row of that cluster receives

    * continuous targets: the mean of the cluster's observed values;
    * integer targets: that mean rounded to the nearest integer;
    * binary and categorical targets: the cluster's most frequent observed category,
      ties broken at random. (R's ``2lonly.mean`` takes the median code truncated towards
      zero, which is neither the mode its help page promises nor a sensible summary of
      unordered categories.)

    These fills are deterministic given the data (up to ties) and do not reflect
    uncertainty; that is the point of a repair. (Whether a cluster's observed values are
    one value is the package's one rule of constancy, relative to the variable's magnitude.)

    Clusters with no observed value (and clusters unseen at fit) do not stay missing, as
    in R: they are imputed from the population of clusters, by cluster-level predictive
    mean matching on the predictors' cluster means for continuous and integer targets
    (as :class:`ClusterLevelPMM`, donors being the observed clusters' values), or by a
    cluster-level multinomial logit with a parameter draw for binary and categorical
    targets (as :class:`~skmlmi.conditional.single_level.Polytomous`, fitted on the
    clusters' modes). At an inner level of nested grouping factors (a class-level variable of
    pupils in classes in schools) they are imputed by a model over the units with a random
    intercept per outer factor, so that a class keeps its school's part: ``RandomEffectsPMM``
    (continuous, integer), ``RandomEffectsLogistic`` (binary) or ``RandomEffectsCategorical``
    (categorical, ordered or not). Training clusters imputed that way are logged by name.

    Parameters
    ----------
    donors : int, default=5
        Donor pool of the fallback predictive mean matching.
    ridge : float, default=1e-5
        Relative ridge of the fallback models, used only if their information matrix is
        singular (logged).

    See Also
    --------
    ClusterLevelNormal, ClusterLevelPMM

    Examples
    --------
    >>> import numpy as np
    >>> from skmlmi.conditional.base import DrawContext
    >>> rng = np.random.default_rng(0)
    >>> groups = np.array([0, 0, 0, 1, 1, 1])
    >>> y = np.array([2.0, 4.0, 0.0, 7.0, 7.0, 0.0])
    >>> observed = np.array([True, True, False, True, True, False])
    >>> context = DrawContext(target="size", n_clusters=2)
    >>> draw, _ = ClusterMean().draw(y, observed, np.zeros((6, 0)), np.ones(0, int), groups, rng, context=context)
    >>> draw.sample(np.zeros((2, 0)), np.array([0, 1]), rng)
    array([3., 7.])
    """

    target_kinds = frozenset({"continuous", "integer", "binary", "categorical"})
    r_names = {"2lonly.mean": {}}
    _allows_partial = True
    _parameter_constraints = {
        "donors": [Interval(Integral, 1, None, closed="left")],
        "ridge": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, donors: int = 5, ridge: float = 1e-5):
        self.donors = donors
        self.ridge = ridge

    def _fallback_within(self, context) -> BaseConditionalImputer:
        """The model of the units with no observed value at an inner level of nested factors."""
        if context.kind == "binary":
            return RandomEffectsLogistic()
        if context.kind == "categorical":
            return RandomEffectsCategorical()
        return RandomEffectsPMM(donors=self.donors)

    def _draw(self, y, observed, X, roles, groups, rng, state, context):
        # the repair fills each unit from its own rows; at an inner level of nested factors the units
        # with none observed are imputed by a random-intercept model over the outer units (a class of a
        # school: the school's other classes carry its school part), else by a regression over units
        groups, outer = self._units(groups, context)
        data = self._aggregate(y, observed, X, groups, context)
        J = context.n_clusters
        name = f"ClusterMean for {context.target!r}"
        categorical = context.kind in ("binary", "categorical")
        if categorical:
            codes = y[observed].astype(np.intp)
            K = max(int(context.n_categories), int(codes.max()) + 1, 2)
            counts = np.bincount(groups[observed] * K + codes, minlength=J * K).reshape(J, K)
            # counts are integers: a uniform jitter below 1 only breaks ties, at random
            fill = np.argmax(counts + rng.random((J, K)), axis=1).astype(float)
            fill[~data.fitted] = np.nan
        else:
            fill = data.ybar.copy()
            if context.kind == "integer":
                fill = np.rint(fill)
        if outer is not None:
            model = self._fallback_within(context)
            fallback, state = self._draw_within(data, outer, rng, state, context, fill[data.fitted], model)
            fill[~data.fitted] = np.nan
            self._log_empty(data, context, f"a {type(model).__name__} model over the outer units")
            return _ClusterMeanDraw(fill, fallback, categorical, name), state
        if categorical:
            sub_context = DrawContext(
                target=context.target, kind="categorical", n_categories=K, predictor_names=context.predictor_names
            )
            xfit = data.xbar[data.fitted]
            fallback, _ = Polytomous(ridge=self.ridge)._draw(
                fill[data.fitted],
                np.ones(len(xfit), dtype=bool),
                xfit,
                np.ones(xfit.shape[1], dtype=int),
                None,
                rng,
                None,
                sub_context,
            )
            context.events.extend(sub_context.events)
        else:
            fallback = _cluster_pmm(data, self.donors, self.ridge, rng, context, name)
            fill[~data.fitted] = np.nan
        how = "a cluster-level multinomial logit" if categorical else "cluster-level predictive mean matching"
        self._log_empty(data, context, how)
        return _ClusterMeanDraw(fill, fallback, categorical, name), None

    @staticmethod
    def _log_empty(data, context, how: str) -> None:
        empty = np.flatnonzero((data.n_rows > 0) & ~data.fitted)
        if empty.size:
            context.log(
                f"ClusterMean: cluster(s) {_cluster_names(context, empty)} have no observed value of "
                f"{context.target!r}; imputed by {how} on the predictors' cluster means"
            )
