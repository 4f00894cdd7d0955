"""The planner: what every chain will do, decided once at ``fit`` and returned as a :class:`Plan`.

From the working data (:class:`~skmlmi._frontdoor.WorkingData`) and the imputer's settings
it chooses, for every incomplete column, the conditional model (given, or the default of its
kind and missingness pattern from the model registry), its predictors and their roles (the
predictor matrix, with cluster means by default and quickpred's reduction for wide data), the
visit sequence, the rows used to fit and the cells to impute (``where``/``ignore``), and the
post-processing (bounds, ``post``, derived columns). It sets no attribute of the estimator:
everything it decides is in the :class:`Plan`, including the resolved predictor matrix and
the events to log. :func:`design` assembles a target's predictor columns from the current data.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from ._clusters import Clusters
from ._kernels import cluster_sums, poisson_fixed_effects
from ._passive import DerivedColumn, parse_bounds, parse_derived, parse_post
from ._warnings import warn_user, with_column
from .conditional.base import ROLE_NAMES, BaseConditionalImputer
from .conditional.registry import (
    COUNT_MODELS,
    default_model,
    find_models,
    make_model,
    models_accepting,
    models_for_kind,
)
from .predictors import ROWS_PER_PREDICTOR, limit_predictors, validate_predictor_matrix
from .recommend import ColumnFacts, _recommend_one_factor

__all__ = [
    "ClusterMeanCache",
    "Plan",
    "PlanSettings",
    "Predictor",
    "Target",
    "check_settings",
    "design",
    "make_plan",
]

#: Clusters observing a target per cluster-level term of its model, below which the default
#: cluster means are left out (see :meth:`_Planner.afford_cluster_means`).
CLUSTERS_PER_TERM = 10

#: The default Poisson model of a count column is kept only where the Pearson dispersion phi of
#: a Poisson regression of the count on its predictors (cluster fixed effects) is within
#: ``min(COUNT_FIT_TOLERANCE, COUNT_FIT_Z * SE(phi))`` of 1 (see :meth:`_Planner.check_counts`).
COUNT_FIT_TOLERANCE = 0.05
COUNT_FIT_Z = 2.0


@dataclass
class Predictor:
    column: int  # index in the working matrix
    role: int  # original role code (1..4, -3, -4)
    kind: str
    n_categories: int
    name: str
    levels: np.ndarray | None = None  # categorical: codes observed in its fitting rows (dummies of levels[1:])
    means_by: tuple = (0,)  # codes 3 and 4: the grouping factors whose cluster means the design adds
    slopes_by: tuple | None = None  # codes 2 and 4: the grouping factors its random slope varies over (None: all)

    @property
    def adds_means(self) -> bool:
        return self.role in (3, 4) and bool(self.means_by)

    @property
    def terms(self) -> int:
        """Coefficients it needs per level (one per dummy of a categorical predictor)."""
        return max(len(self.levels) - 1, 1) if self.kind == "categorical" and self.levels is not None else 1

    @property
    def width(self) -> int:
        """Columns it adds to the design (dummies of a categorical predictor, and their cluster means per factor)."""
        categories = self.n_categories if self.levels is None else len(self.levels)
        dummies = max(categories - 1, 0) if self.kind == "categorical" else 1
        return dummies * (1 + len(self.means_by) if self.adds_means else 1)


@dataclass
class Target:
    """Everything a chain needs to visit one variable."""

    column: int
    name: str
    kind: str
    n_categories: int
    ordered: bool
    model: BaseConditionalImputer
    predictors: list[Predictor]
    cluster_role: int  # -2 random, 1 fixed, 0 none (as passed to the model)
    levels: np.ndarray | None = None  # binary/categorical: codes observed in its fitting rows, increasing
    ignores_clusters: bool = False  # a single-level model given the cluster column coded -2 (warned once)
    factor: int | None = None  # several grouping factors: None = all of them (codes (n, k)), else that factor's
    compatible: str | None = None  # imputed compatibly with the analysis model: "outcome" or "covariate"

    @property
    def recoded(self) -> bool:
        """Whether some declared category is unobserved, so the model sees the codes 0..len(levels)-1."""
        return self.levels is not None and not np.array_equal(self.levels, np.arange(self.n_categories))


@dataclass(frozen=True)
class PlanSettings:
    """The imputer's parameters the planner reads (see :class:`~skmlmi.MultilevelIterativeImputer`)."""

    methods: Any = None
    predictor_matrix: Any = None
    visit_sequence: Any = "left-to-right"
    cluster_means: bool = True
    cluster_mean_levels: dict | None = None
    random_slope_levels: dict | None = None
    derived: dict | None = None
    bounds: dict | None = None
    post: dict | None = None
    analysis_model: Any = None


@dataclass
class Plan:
    """What every chain shares: targets in visit order, rows, post-processing, and what was decided."""

    targets: list[Target]  # one per visit of the visit sequence
    auxiliary: list[int]  # complete-at-fit columns: a model is made and drawn only if new data need it
    clusters: Clusters | None
    names: list  # column names, for derived expressions
    fit_rows: dict[int, np.ndarray]  # column -> bool mask of rows used for fitting
    impute_rows: dict[int, np.ndarray]  # column -> indices of the cells to impute (mice's where)
    write_rows: dict[int, np.ndarray]  # column -> positions in impute_rows of missing cells
    incomplete: list[int]  # columns in chain_mean_'s last axis (targets, then derived)
    derived: list[DerivedColumn] = field(default_factory=list)
    bounds: dict = field(default_factory=dict)
    post: dict = field(default_factory=dict)
    partial_predictors: bool = False  # missing cells outside `where` leave NaN predictors
    modelled_rows: np.ndarray | None = None  # rows not ignored (None: all)
    # what the planner decided, for the fitted attributes and for the models of complete columns
    predictor_matrix: pd.DataFrame | None = None
    visit_sequence: list = field(default_factory=list)
    methods: dict = field(default_factory=dict)
    events: list = field(default_factory=list)  # (column, reason), decided before the chains ran
    planner: _Planner | None = None
    analysis: Any = None  # the analysis model imputed compatibly with (skmlmi._compatible.AnalysisModelSpec)

    @property
    def groups(self) -> np.ndarray | None:
        """Integer cluster codes of the rows (None without clusters)."""
        return None if self.clusters is None else self.clusters.codes

    @property
    def n_clusters(self) -> int:
        return 0 if self.clusters is None else self.clusters.count

    def model_groups(self, target: Target, clusters: Clusters | None = None):
        """The cluster codes ``target``'s model receives: None, the codes of one factor, or those of every
        factor as an (n, k) array (a model taking several factors). ``clusters``: new data's (default the fit's)."""
        clusters = self.clusters if clusters is None else clusters
        if clusters is None or target.cluster_role == 0:
            return None
        if clusters.n_factors == 1:
            return clusters.codes
        if target.factor is None:
            return clusters.code_matrix
        if target.model.cluster_level and clusters.structure == "nested" and target.factor > 0:
            return clusters.code_matrix[:, : target.factor + 1]  # its units and the outer factors they lie in
        return clusters.factors[target.factor].codes

    def auxiliary_target(self, j: int, W: np.ndarray) -> Target | None:
        """The imputation model of column ``j``, complete at fit, for new data that lack it (None if it has none).

        Made as the planner would have made it at fit (quickpred's reduction warned, not logged);
        the plan does not change.
        """
        try:
            target, _, _ = self.planner.target(j)
        except ValueError:
            return None  # transform then names the column it cannot impute
        rows = self.fit_rows[j]
        _, reason = self.planner.limit_predictors(target, W, rows, rows)
        if reason:
            warn_user(with_column(target.name, reason))
        return target

    def for_new_data(self, missing: np.ndarray, clusters: Clusters | None) -> Plan:
        """This plan's post-processing, with the rows of new data (``missing``: the cells to impute)."""
        impute_rows = {j: np.flatnonzero(missing[:, j]) for j in range(missing.shape[1])}
        for d in self.derived:
            affected = missing[:, d.column] | missing[:, _inputs(d, missing.shape[1])].any(axis=1)
            impute_rows[d.column] = np.flatnonzero(affected)
        return Plan(
            self.targets,
            self.auxiliary,
            clusters,
            self.names,
            {},
            impute_rows,
            {},
            [],
            self.derived,
            self.bounds,
            self.post,
            analysis=self.analysis,
        )


def _inputs(d: DerivedColumn, p: int) -> list[int]:
    """The columns a derived column is computed from (all others when it does not say)."""
    return sorted(d.depends_on) if d.depends_on else [j for j in range(p) if j != d.column]


# --------------------------------------------------------------------------- designs
class ClusterMeanCache:
    """One chain's cluster means of its predictor columns, each row given its unit's mean, kept between visits.

    A predictor's means by a factor change only when its column is written (its target's visit,
    or a derived column recomputed), so a chain computes them once per write instead of once per
    visit of every target that takes them: :meth:`written` drops what a write makes stale. The
    means are the same numbers either way (same sums, same order).
    """

    def __init__(self) -> None:
        self._means: dict = {}

    def written(self, columns) -> None:
        """Columns of the working data just written: their means are recomputed when next asked for."""
        for column in columns:
            for key in [key for key in self._means if key[0] == column]:
                del self._means[key]

    def get(self, pred: Predictor, factor_index: int, compute) -> np.ndarray:
        key = (pred.column, factor_index)  # a column's dummies (its observed levels) are the plan's, fixed
        if key not in self._means:
            self._means[key] = compute()
        return self._means[key]


def _unit_means(block: np.ndarray, factor) -> np.ndarray:
    """Each row's unit mean of ``block``'s columns, by one grouping factor."""
    with np.errstate(invalid="ignore", divide="ignore"):  # a cluster of new data's codes without rows
        means = cluster_sums(block, factor.codes, factor.count) / factor.sizes[:, None]
    return means[factor.codes]


def design(W: np.ndarray, target: Target, clusters: Clusters | None, means: ClusterMeanCache | None = None):
    """Predictor matrix, role codes, names and random-slope factors of one target from the working data.

    Categorical predictors become treatment dummies of the categories observed in their
    fitting rows (the first the reference; a declared category never observed would be an
    all-zero, constant dummy), each inheriting its variable's role; codes 3 and 4 add the
    cluster means of the predictor (over all rows of each cluster, current completed
    values) as fixed effects and become 1 and 2: with several grouping factors, the means
    by each factor in the predictor's ``means_by`` (named ``mean(x|class)``). ``slopes_by`` has one
    entry per column: the factors a column coded 2 has its random slope over (None: every factor).
    ``means``: a chain's cache of the cluster means (None: computed here).
    """
    blocks, roles, names, slopes_by = [], [], [], []
    for pred in target.predictors:
        values = W[:, pred.column]
        if pred.kind == "categorical":
            levels = np.arange(pred.n_categories) if pred.levels is None else pred.levels
            block = (values[:, None] == levels[None, 1:]).astype(float)
            block[np.isnan(values)] = np.nan
            labels = [f"{pred.name}[{int(k)}]" for k in levels[1:]]
            if not labels:  # one category observed: no contrast to estimate
                continue
        else:
            block, labels = values[:, None], [pred.name]
        base_role = {3: 1, 4: 2}.get(pred.role, pred.role)
        blocks.append(block)
        roles += [base_role] * block.shape[1]
        names += labels
        slopes_by += [pred.slopes_by] * block.shape[1]
        if pred.adds_means:
            for k in pred.means_by:
                factor = clusters.factors[k]
                if means is None:
                    blocks.append(_unit_means(block, factor))
                else:
                    blocks.append(means.get(pred, k, lambda block=block, factor=factor: _unit_means(block, factor)))
                roles += [1] * block.shape[1]
                slopes_by += [None] * block.shape[1]
                by = f"|{factor.column if factor.column is not None else k + 1}" if clusters.n_factors > 1 else ""
                names += [f"mean({label}{by})" for label in labels]
    if not blocks:
        return np.empty((W.shape[0], 0)), np.empty(0, dtype=int), [], ()
    # column-major, as the working data: each column is written whole, and the models' gathers,
    # means and cross-products read contiguous columns
    X = np.empty((W.shape[0], len(roles)), order="F")
    start = 0
    for block in blocks:
        X[:, start : start + block.shape[1]] = block
        start += block.shape[1]
    return X, np.asarray(roles, dtype=int), names, tuple(slopes_by)


# --------------------------------------------------------------------------- settings
def as_model(spec, where: str):
    """A conditional model given as an instance, or by name (class or R method name) resolved now, at fit."""
    if not isinstance(spec, str):
        return spec
    try:
        return make_model(spec)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def check_settings(settings: PlanSettings, columns: list, codecs: list, groups_column) -> None:
    """Every column ``methods``, ``bounds`` or ``post`` names must exist and be imputable as asked.

    ``groups_column``: the cluster column, or a tuple of the grouping columns (several factors)."""
    grouping = [g for g in (groups_column if isinstance(groups_column, tuple) else (groups_column,)) if g is not None]
    for option in ("bounds", "post"):
        for name in grouping:
            if name in (getattr(settings, option) or {}):
                raise ValueError(f"{option} names the cluster column {name!r}, which is never imputed.")
    for name in settings.bounds or {}:
        codec = codecs[columns.index(name)] if name in columns else None
        if codec is not None and codec.categories is not None and not codec.numeric_levels:
            raise ValueError(f"bounds names {name!r}, a {codec.kind} column: bounds apply to numbers, not categories.")
    methods = settings.methods
    if isinstance(methods, str):
        as_model(methods, "methods")
    if not isinstance(methods, dict):
        return
    unknown = [name for name in methods if name not in columns]
    if unknown:
        raise ValueError(f"methods names {unknown}, which are not columns of X; columns: {columns}.")
    for name in grouping:
        if name in methods:
            raise ValueError(f"methods names the cluster column {name!r}, which is never imputed.")
    for name, model in methods.items():  # complete columns too: new data may need their model
        model = as_model(model, f"methods[{name!r}]")
        kind = codecs[columns.index(name)].kind
        if isinstance(model, BaseConditionalImputer) and kind not in model.target_kinds:
            raise ValueError(
                f"{type(model).__name__} cannot impute {name!r}, a {kind} column; models that can: "
                f"{', '.join(models_for_kind(kind))}."
            )


def _fixed_cluster_models():
    return [c for c in find_models() if c.supports_fixed_clusters]


# --------------------------------------------------------------------------- the planner
class _Planner:
    """What the plan's targets are made from; :meth:`target` changes nothing.

    Kept in the plan (read-only) so that the model of a column complete at fit can be made,
    as at fit, when new data lack it.
    """

    def __init__(self, data, settings: PlanSettings, fit_rows: dict, ignore: np.ndarray, visit: list[int], derived=()):
        self.columns, self.codecs, self.groups_column = data.columns, data.codecs, data.groups_column
        self.clusters: Clusters | None = data.clusters
        self.grouping = data.layout.groups_columns  # every grouping column: never imputed nor a predictor
        self.settings = settings
        self.events: list = []
        self.cluster_constant = self._cluster_constancy(data.W, data.missing)
        self.level_of = self._factor_levels(data.W, data.missing)
        self.factor_constant = self._factor_constancy(data.W, data.missing)
        self.mean_levels = self._named_levels("cluster_mean_levels")
        self.slope_levels = self._named_levels("random_slope_levels")
        defaults = self._default_codes() if self.clusters is not None and settings.cluster_means else None
        self.matrix, self.given = validate_predictor_matrix(
            settings.predictor_matrix,
            self.columns,
            self.groups_column,
            defaults,
            return_given=True,
            other_groups_columns=self.grouping[1:],
        )
        self._break_feedback(derived)
        grouping = [self.columns.index(name) for name in self.grouping]
        for k in grouping[1:]:  # a further grouping factor's column: a cluster identifier, never imputed
            self.matrix.iloc[[j for j in range(len(self.columns)) if j not in grouping], k] = -2
            self.matrix.iloc[k, :] = 0
        self.levels = self._category_levels(data, fit_rows, set(visit))
        self.observed_rows = fit_rows  # the rows fitting each target (their clusters estimate its means)
        self.recommended = self._recommend(data, data.missing)
        self.check_counts(data.W, fit_rows, ignore, visit)

    def _break_feedback(self, derived) -> None:
        """A derived column is not a predictor of its own inputs unless the user codes it so.

        It is a function of them: in an input's model it would predict the input from the input's
        own current value, and the chain would stay where it started (mice's passive imputation asks
        the user to set these entries to 0; here they are 0 by default, logged). A derived column
        whose inputs are not declared (a bare callable) keeps its codes, and make_plan warns where
        it predicts a column.
        """
        for d in derived:
            inputs = [j for j in sorted(d.depends_on) if self.columns[j] not in self.grouping]
            broken = [j for j in inputs if not self.given[j, d.column] and self.matrix.iat[j, d.column] != 0]
            for j in broken:
                self.matrix.iat[j, d.column] = 0
            if broken:
                names = [self.columns[j] for j in broken]
                self.events.append(
                    (d.name, f"derived column {d.name!r} left out of the models of its inputs {names} (it would "
                     "predict them from themselves); code it in predictor_matrix to keep it")
                )  # fmt: skip

    # ---------------------------------------------------------------- facts of the data
    def _cluster_constancy(self, W, missing) -> dict:
        if self.clusters is None:
            return {}
        return {
            j: self.clusters.constancy(W[:, j], missing[:, j])
            for j in range(W.shape[1])
            if self.columns[j] not in self.grouping
        }

    def _factor_levels(self, W, missing) -> dict:
        """Several grouping factors: column -> (factor, constancy) for the columns constant within the units
        of a factor other than the first (a class-level variable in schools/classes), by the one rule
        (:meth:`Clusters.constancy`); the first such factor, outer to inner. Constancy within the first
        factor stays in ``cluster_constant``, as with one factor."""
        if self.clusters is None or self.clusters.n_factors == 1:
            return {}
        levels = {}
        for j, constant in self.cluster_constant.items():
            if constant:
                continue
            for k, factor in enumerate(self.clusters.factors[1:], start=1):
                found = factor.constancy(W[:, j], missing[:, j])
                if found:
                    levels[j] = (k, found)
                    break
        return levels

    def _factor_constancy(self, W, missing) -> dict:
        """Column -> whether it is constant within the units of each grouping factor (outer to inner; one
        factor: its clusters), by the one rule; in nested factors constancy within a unit holds in every unit
        inside it."""
        if self.clusters is None:
            return {}
        nested = self.clusters.structure == "nested"
        constant = {}
        for j, first in self.cluster_constant.items():
            flags = [bool(first)]
            for factor in self.clusters.factors[1:]:
                flags.append((nested and flags[-1]) or bool(factor.constancy(W[:, j], missing[:, j])))
            constant[j] = tuple(flags)
        return constant

    def level_codes(self, j: int) -> np.ndarray | None:
        """The codes of the factor at whose level column ``j`` lives (the first factor's by default)."""
        if self.clusters is None:
            return None
        k = self.level_of.get(j, (0, None))[0]
        return self.clusters.factors[k].codes

    def _category_levels(self, data, fit_rows, targets) -> dict[int, np.ndarray]:
        """Codes of the categories each binary/categorical column holds in its fitting rows.

        Only these are modelled: a target's model sees them as ``0..K_obs-1`` and a predictor
        gets their dummies. Decisions the models cannot log (one category observed; categories
        observed only in ignored rows) go to the plan's events. Derived columns are computed,
        not imputed: any of their declared categories may occur.
        """
        derived = set(self.settings.derived or ())
        levels = {}
        for j, codec in enumerate(self.codecs):
            name = self.columns[j]
            if codec.categories is None or name in self.grouping or name in derived:
                continue
            levels[j] = np.unique(data.W[fit_rows[j], j]).astype(np.intp)
            ignored_only = np.setdiff1d(codec.observed_codes, levels[j])
            if ignored_only.size:
                reason = (
                    f"categories {codec.observed_categories(ignored_only)} are observed only in ignored rows: no "
                    "imputation model learns them, so they are never imputed, and as a predictor they count as the "
                    "reference category"
                )
                self.events.append((name, reason))
            if j in targets and levels[j].size == 1:
                label = codec.observed_categories(levels[j])[0]
                reason = f"one category observed ({label!r}): every imputation is {label!r}, no model is fitted"
                self.events.append((name, reason))
        return levels

    def _recommend(self, data, missing) -> dict:
        """Default models of the incomplete columns with clusters: :func:`recommend_methods`.

        It tells sporadic from systematic missingness and cluster-level variables, and
        picks random-effects, two-stage or cluster-level models accordingly.
        """
        methods = self.settings.methods
        if self.clusters is None or isinstance(methods, BaseConditionalImputer | str) or self.clusters.n_factors > 1:
            return {}  # several factors: the defaults by level (model_for); the recommender reads one factor
        given = methods or {}
        columns = [c for j, c in enumerate(self.columns) if missing[:, j].any() and c not in given]
        if not columns:
            return {}
        # the codecs and constancy found at set-up, so that no column is detected twice
        facts = {
            self.columns[j]: ColumnFacts(self.codecs[j], data.W[:, j], self.cluster_constant[j])
            for j in range(len(self.columns))
            if self.columns[j] in columns
        }
        kinds = {name: fact.codec.kind for name, fact in facts.items()}
        table = _recommend_one_factor(data.frame[columns], self.clusters, kinds, facts=facts)
        return dict(zip(table["column"], table["method"], strict=True))

    def check_counts(self, W: np.ndarray, fit_rows: dict, ignore: np.ndarray, visit: list[int]) -> None:
        """Keep the default Poisson model of a count only where it fits the count given its predictors.

        :func:`~skmlmi.recommend.is_count_column` looks at the count alone (its within-cluster
        dispersion); the Poisson model is a model of the count *given its predictors*, and can be
        wrong there though right marginally: a count that strongly predicts a continuous variable
        o is underdispersed given o (p(y | o) carries a factor exp(-c^2 y^2 / (2 s^2)) for
        o = a + c y + e, e ~ N(0, s^2)), which no Poisson model expresses; its too spread
        imputations then attenuate o's relation to the count (slope bias -0.036, MC SE 0.002,
        coverage 0.78 where RandomEffectsPMM gave -0.007, benchmarks/validate_random_effects_poisson.py
        with outcome SD 1).

        The check fits a Poisson regression of the count on its predictor columns (the target's
        design, categorical dummies included; cluster means and random slopes as plain columns)
        with one intercept per cluster, absorbing the clustering whatever its distribution
        (:func:`~skmlmi._kernels.poisson_fixed_effects`), on the rows where the count and every
        predictor are observed, and takes its Pearson dispersion phi. The Poisson model stays the
        default only when

            |phi - 1| <= min(COUNT_FIT_TOLERANCE, COUNT_FIT_Z * SE(phi)):

        phi must be consistent with 1 under the Poisson model (a two-sided 5% test; SE(phi) is
        about sqrt(2 / df), larger for small counts) *and* within 5% of it. The 5% is
        the size of the misfit the Poisson model may carry where it replaces
        RandomEffectsPMM: the imputations' conditional variance then errs by less than the
        8-10% by which RandomEffectsPMM shrinks the variance of the cluster means (ICC 0.3), the
        defect the Poisson model is chosen to avoid; with outcome SD 1 phi is about 0.88. With
        much data the test decides, with little the 5% band; anything else, a fit that fails, or
        no degrees of freedom left, is doubt, and the default is RandomEffectsPMM (logged once).
        Models the user names are never checked.

        In benchmarks/validate_random_effects_poisson.py (ICC 0.3, 100 replications per design,
        differences from the complete-data estimate with their MC SE) the defaults chose the
        Poisson model in 8%, 1% and 9% of the replications with outcome SD 1 (50, 100, 20
        clusters; slope -0.008 (0.002), -0.006 (0.001), -0.008 (0.003) against
        RandomEffectsPMM's -0.007, -0.006, -0.007; the Poisson model's -0.036, -0.043, -0.034),
        never for negative binomial counts, and in 60%, 69% and 61% with outcome SD 2 (50, 100
        clusters) and 3 (50), where they shrank the variance of the cluster means by 0.016,
        0.011 and 0.025 (RandomEffectsPMM 0.086, 0.077, 0.076) with slopes as good as either
        model's.
        """
        if self.clusters is None or not self.recommended:
            return
        codes, count = self.clusters.codes, self.clusters.count
        for j in dict.fromkeys(visit):
            name = self.columns[j]
            model = self.recommended.get(name)
            if model is None or type(model).__name__ not in COUNT_MODELS.values():
                continue
            target, _, _ = self.target(j)
            rows = fit_rows[j].copy()
            self.limit_predictors(target, W, rows, ~ignore)  # the predictors the model will have
            plain = replace(target, predictors=[replace(p, role=1) for p in target.predictors])
            X = design(W, plain, self.clusters)[0]
            rows &= np.isfinite(X).all(axis=1)
            fit = poisson_fixed_effects(X[rows], W[rows, j], codes[rows], count)
            phi, se = fit.dispersion, fit.dispersion_se
            if fit.converged and np.isfinite(phi) and abs(phi - 1.0) <= min(COUNT_FIT_TOLERANCE, COUNT_FIT_Z * se):
                continue
            fallback = default_model(self.codecs[j].kind, True)  # the non-count model of the same situation
            if not np.isfinite(phi):
                why = (
                    f"no degrees of freedom left to check the Poisson model ({fit.n_rows} rows, "
                    f"{fit.n_clusters} clusters)"
                )
            elif not fit.converged:
                why = "the Poisson regression given its predictors did not converge"
            else:
                why = (
                    f"Poisson conditional model does not fit (Pearson dispersion {phi:.2f}, SE {se:.2f}, given its "
                    f"predictors; within {COUNT_FIT_TOLERANCE:g} of 1 is needed)"
                )
            self.recommended[name] = fallback
            self.events.append((name, f"count column: {why}: {type(fallback).__name__}"))

    def _default_codes(self) -> np.ndarray:
        """Default role codes with clusters: level-1 predictors of level-1 targets with their cluster means.

        In a random-intercept model a predictor without its cluster mean must have the same
        within- and between-cluster slope; where they differ (a contextual effect, or a
        predictor whose cluster-level part relates differently to the target), the
        imputations distort the between-cluster relations and the variance components
        (Enders, Mistler & Keller 2016; Grund, Lüdtke & Robitzsch 2018). Code 3 adds the
        cluster mean, so both slopes are free; variables constant within clusters (level 2)
        stay 1, their mean being themselves. Models whose ``default_cluster_means`` is False get
        1 (see :meth:`target`); entries the user sets are kept as given.
        """
        p = len(self.columns)
        constant = self.cluster_constant
        level1 = np.array([j in constant and not constant[j] for j in range(p)])
        codes = 1 - np.eye(p, dtype=int)
        codes[np.ix_(level1, level1)] *= 3
        if self.groups_column is not None:
            g = self.columns.index(self.groups_column)
            codes[:, g] = -2
            codes[g, :] = 0
        return codes

    # ---------------------------------------------------------------- one target
    def model_for(self, j: int) -> BaseConditionalImputer:
        """The (cloned, validated) conditional model of column ``j``: given, or the default."""
        name, codec = self.columns[j], self.codecs[j]
        methods = self.settings.methods
        if isinstance(methods, BaseConditionalImputer | str):
            model = as_model(methods, "methods")
        elif isinstance(methods, dict) and name in methods:
            model = as_model(methods[name], f"methods[{name!r}]")
            if not isinstance(model, BaseConditionalImputer):
                raise TypeError(
                    f"methods[{name!r}] is {type(model).__name__}; expected a conditional model such as "
                    "RandomEffectsNormal(), or its name: a class name ('RandomEffectsPMM') or R's ('2l.pan')."
                )
        else:
            cluster_level = self.cluster_constant.get(j, False) or self.level_of.get(j, (0, False))[1]
            model = self.recommended.get(name) or default_model(
                codec.kind, self.clusters is not None, "partial" if cluster_level == "partial" else bool(cluster_level)
            )
        if codec.kind not in model.target_kinds:
            raise ValueError(
                f"{type(model).__name__} cannot impute {name!r}, a {codec.kind} column; models that can: "
                f"{', '.join(models_for_kind(codec.kind))}."
            )
        model = clone(model)
        model._validate_params()
        return model

    def target(self, j: int) -> tuple[Target, list, list]:
        """Column ``j``'s target, the changes it makes to the predictor matrix and the events it logs.

        Changes are ``(row, columns, code)`` to apply in order; nothing here is modified.
        """
        name, codec = self.columns[j], self.codecs[j]
        model = self.model_for(j)
        row = self.matrix.iloc[j].to_numpy()  # by position: names may be tuples, which .loc reads as (row, column)
        if self.groups_column is not None:
            cluster_role = int(row[self.columns.index(self.groups_column)])
        else:
            cluster_role = -2 if self.clusters is not None else 0
        if model.requires_groups and cluster_role != -2:
            raise ValueError(
                f"{type(model).__name__} for {name!r} needs the cluster column coded -2 "
                f"(it is {cluster_role}{' and no groups were given' if self.clusters is None else ''})."
            )
        if cluster_role == 1 and not model.supports_fixed_clusters:
            raise ValueError(
                f"The cluster column is coded 1 (cluster fixed effects) for {name!r}, which "
                f"{type(model).__name__} cannot absorb; models that can: "
                f"{', '.join(c.__name__ for c in _fixed_cluster_models())}."
            )
        ignores_clusters = cluster_role == -2 and not (model.requires_groups or model.uses_groups_if_given)
        if ignores_clusters:
            cluster_role = 0  # a single-level model: warned once by make_plan
        factor = self._factor_of(j, model, cluster_role)
        outer = self.mean_factors(j, model)
        predictors, lowered = [], []
        for k, pred_name in enumerate(self.columns):
            role = int(row[k])
            if role == 0 or pred_name in self.grouping:
                continue
            takes_means = model.default_cluster_means or bool(outer and model.cluster_level)
            if role == 3 and not self.given[j, k] and not takes_means:
                role = 1  # a default cluster mean this model does not take (see BaseConditionalImputer)
                lowered.append(k)
            if role == 3 and model.cluster_level and outer:
                pass  # the means of outer units, aggregated to the model's own units with the predictor
            elif role not in model.accepted_roles and role != 1:
                raise ValueError(
                    f"{type(model).__name__} cannot honour role code {role} ({ROLE_NAMES[role]}) given to "
                    f"predictor {pred_name!r} of {name!r}; models that can: {', '.join(models_accepting(role))}."
                )
            pcodec = self.codecs[k]
            means_by = (0,) if outer is None else tuple(f for f in outer if self._takes_mean_by(k, f))
            if role == 3 and not means_by and not self.given[j, k]:
                role = 1  # constant within every unit it would be averaged over: its means are itself
                lowered.append(k)
            slopes_by = self._slopes_by(k)
            if role in (2, 4) and slopes_by == ():
                role -= 1  # random_slope_levels names no factor for it: a fixed slope
            predictor = Predictor(k, role, pcodec.kind, pcodec.n_categories, str(pred_name), self.levels.get(k))
            predictors.append(replace(predictor, means_by=means_by, slopes_by=slopes_by))
        changes = [(j, lowered, 1)] if lowered else []
        events = []
        left_out = self.afford_cluster_means(j, predictors)
        if left_out:
            if left_out[0]:
                changes.append((j, [p.column for p in left_out[0]], 1))
            events.append((name, left_out[1]))
        target = Target(
            column=j,
            name=str(name),
            kind=codec.kind,
            n_categories=codec.n_categories,
            ordered=codec.ordered,
            model=model,
            predictors=predictors,
            cluster_role=cluster_role,
            levels=self.levels.get(j),
            ignores_clusters=ignores_clusters,
            factor=factor,
        )
        return target, changes, events

    def mean_factors(self, j: int, model: BaseConditionalImputer) -> tuple | None:
        """The grouping factors whose cluster means codes 3 and 4 add to column ``j``'s model (None: one factor).

        With several factors the means are taken at every level above the target's own, as
        miceadds' ``ml.lmer`` does with ``aggregate_automatically``: a level-1 target gets a
        predictor's mean by each factor (school and class; both crossed factors); a target living
        at an inner nested level (a class-level variable) gets the means by the outer factors, its
        model aggregating them to its units with the predictor; a target at the outermost level,
        or constant within a crossed factor, gets none. Each predictor then skips the factors it is
        constant within (its mean there is itself): see :attr:`factor_constant`.
        """
        if self.clusters is None or self.clusters.n_factors == 1:
            return None
        if self.cluster_constant.get(j):
            return ()
        if j in self.level_of:
            k = self.level_of[j][0]
            return tuple(range(k)) if self.clusters.structure == "nested" and model.cluster_level else ()
        return tuple(range(self.clusters.n_factors))

    def _takes_mean_by(self, k: int, f: int) -> bool:
        """Whether predictor ``k`` coded 3 or 4 gets its cluster means by factor ``f`` (one above its target's
        level): when it varies within the factor's units and ``cluster_mean_levels`` does not exclude it."""
        chosen = self.mean_levels.get(k)
        return not self.factor_constant[k][f] and (chosen is None or f in chosen)

    def _named_levels(self, setting: str) -> dict[int, frozenset]:
        """``cluster_mean_levels`` or ``random_slope_levels`` checked and read as column -> the indices of the
        factors named."""
        given = getattr(self.settings, setting)
        if not given:
            return {}
        factors = [] if self.clusters is None else [f.column for f in self.clusters.factors]
        levels = {}
        for column, names in given.items():
            if column not in self.columns or column in self.grouping:
                raise ValueError(
                    f"{setting} names {column!r}, which is not a predictor column of X; "
                    f"columns: {[c for c in self.columns if c not in self.grouping]}."
                )
            names = [names] if isinstance(names, str) or not isinstance(names, list | tuple) else names
            unknown = [name for name in names if name not in factors]
            if unknown:
                raise ValueError(
                    f"{setting}[{column!r}] names {unknown}, which are not grouping columns; "
                    f"the grouping columns are {factors}."
                )
            levels[self.columns.index(column)] = frozenset(factors.index(name) for name in names)
        return levels

    def _slopes_by(self, k: int) -> tuple | None:
        """The factors over which predictor ``k``'s random slope (codes 2 and 4) varies: None for every factor
        (the default, and with one factor whenever it is named), else those ``random_slope_levels`` names."""
        chosen = self.slope_levels.get(k)
        if chosen is None or (chosen and self.clusters.n_factors == 1):
            return None
        return tuple(sorted(chosen))

    def _factor_of(self, j: int, model: BaseConditionalImputer, cluster_role: int) -> int | None:
        """Which grouping factor a model uses when there are several: None for all (a model taking several
        factors), one factor's index for a cluster-level model (the factor at whose level column ``j``
        lives: its units are the model's clusters, lower-level predictors aggregated to them); a model
        that uses clusters but takes one factor is an error naming it."""
        name = self.columns[j]
        if self.clusters is None or self.clusters.n_factors == 1 or cluster_role == 0:
            return None if self.clusters is None or self.clusters.n_factors > 1 else 0
        if cluster_role == -2 and model.cluster_level:
            return self.level_of.get(j, (0, None))[0]
        if cluster_role == -2 and model.multiple_factors:
            return None
        kind = self.codecs[j].kind
        able = [c.__name__ for c in find_models(kind, multiple_factors=True)]
        advice = (
            f"models that take several for a {kind} column: {', '.join(able)} (methods)"
            if able
            else f"no model takes several for a {kind} column yet: give groups one factor"
        )
        raise ValueError(
            f"{type(model).__name__} for {name!r} takes one grouping factor, and groups gives "
            f"{self.clusters.n_factors} ({self.clusters.structure}); {advice}."
        )

    def afford_cluster_means(self, j: int, predictors: list[Predictor]):
        """Leave out the default cluster means where too few clusters observe the target to estimate them.

        Cluster means, like level-2 predictors, are estimated from the clusters in which the
        target is observed: with fewer than ``CLUSTERS_PER_TERM`` such clusters per
        cluster-level term (intercept, level-2 predictors, means; a categorical predictor
        counts one term per dummy) their coefficients are barely determined, and their
        posterior draws throw the imputations of clusters without observed values far out
        (obesity: 4 clusters observe Weight, 5 terms; a fifth cluster's imputed mean weight
        ranged from -134 to 150 kg). Such a target keeps mice's codes (1), logged once;
        means the user asked for are kept. With several factors the rule holds factor by factor:
        the units of a factor observing the target against its terms at that level (intercept,
        predictors constant within the factor's units, means by it), and only the means by a
        factor that fails are left out. Returns ``(predictors lowered to 1, event)`` or None.
        """
        defaulted = [p for p in predictors if p.role == 3 and not self.given[j, p.column]]
        if not defaulted:
            return None
        fit_rows = self.observed_rows.get(j)
        if fit_rows is None:  # a column complete at fit (its model is made for new data): all its rows
            fit_rows = np.ones(self.clusters.codes.shape, dtype=bool)
        dropped = []
        for f, factor in enumerate(self.clusters.factors):
            if not any(f in p.means_by for p in defaulted):
                continue
            terms = 1 + sum(
                p.terms
                for p in predictors
                if (p.adds_means and f in p.means_by) or (p.role != 0 and self.factor_constant[p.column][f])
            )
            observed = factor.observing(fit_rows)
            if observed < CLUSTERS_PER_TERM * terms:
                dropped.append((factor.column if factor.column is not None else f + 1, observed, terms))
                for p in defaulted:
                    p.means_by = tuple(k for k in p.means_by if k != f)
        if not dropped:
            return None
        lowered = [p for p in defaulted if not p.means_by]
        for p in lowered:
            p.role = 1
        if self.clusters.n_factors == 1:
            _, observed, terms = dropped[0]
            return lowered, (
                f"cluster means of {[p.name for p in defaulted]} left out of the default model: "
                f"{observed} cluster(s) observe it for {terms} cluster-level terms (at least "
                f"{CLUSTERS_PER_TERM} per term are needed); code them 3 in predictor_matrix to keep them"
            )
        reason = "; ".join(
            f"means by {column!r} of {[p.name for p in defaulted]} left out of the default model: {observed} "
            f"unit(s) of {column!r} observe it for {terms} terms at that level (at least {CLUSTERS_PER_TERM} "
            "per term are needed)"
            for column, observed, terms in dropped
        )
        return lowered, reason + "; code them 3 in predictor_matrix to keep them"

    def limit_predictors(self, target: Target, W, fit_rows, usable_rows) -> tuple[list, str | None]:
        """Reduce the default predictors of a target its rows cannot support, by quickpred's rule.

        When the model's predictor columns (dummies and cluster means included) exceed a third
        of the rows observing the target (of the clusters observing it, for a cluster-level
        target; of the rows less one per cluster, for cluster fixed effects), the predictors
        the user did not set in ``predictor_matrix`` are kept only where their correlation with
        the target or with its missingness exceeds 0.1, strongest first, within that budget
        (:func:`~skmlmi.predictors.limit_predictors`). Returns the changes to the predictor
        matrix and the event to log (None when nothing is too many).
        """
        predictors = target.predictors
        cluster_level = bool(self.cluster_constant.get(target.column) or target.column in self.level_of)
        codes = self.level_codes(target.column)
        n_rows = int(fit_rows.sum())
        fixed = target.cluster_role == 1 and not cluster_level
        n_clusters = int(np.unique(codes[fit_rows]).size) if codes is not None and (cluster_level or fixed) else 0
        n_units = n_clusters if cluster_level else n_rows - n_clusters
        widths = np.array([p.width for p in predictors], dtype=int)
        if widths.sum() * ROWS_PER_PREDICTOR <= n_units:
            return [], None
        j, columns = target.column, [p.column for p in predictors]
        given = self.given[j, columns]
        keep, _, budget = limit_predictors(W[:, j], fit_rows, usable_rows, W[:, columns], widths, given, n_units)
        units = f"{n_units} clusters observing it" if cluster_level else f"{n_rows} rows observing it"
        if fixed:
            units += f" less its {n_clusters} cluster fixed effects"
        if keep.all():
            return [], (
                f"{widths.sum()} predictor columns for {units} (more than a third): kept as set in "
                "predictor_matrix; quickpred() suggests a smaller set"
            )
        kept = [p for p, k in zip(predictors, keep, strict=True) if k]
        target.predictors = kept
        names = [p.name for p in kept]
        reason = (
            f"{len(kept)} of {len(predictors)} predictors kept by quickpred's rule "
            f"({names[:10]}{' ...' if len(names) > 10 else ''}): their {widths.sum()} columns outnumbered a third "
            f"of the {units} ({budget}), so only those whose absolute correlation with it or with its "
            f"missingness exceeds 0.1 are used, strongest first, up to {budget} columns"
            f"{' (those set in predictor_matrix are kept as given)' if given.any() else ''}; "
            "set its row of predictor_matrix to choose them"
        )
        return [(j, [c for c, k in zip(columns, keep, strict=True) if not k], 0)], reason


# --------------------------------------------------------------------------- the plan
def resolve_visit_sequence(visit_sequence, columns: list, groups_column, missing, derived_cols=frozenset()) -> list:
    """Column positions in visit order: data order, monotone, reverse-monotone or the user's list."""
    incomplete = [j for j in range(len(columns)) if missing[:, j].any()]
    if isinstance(visit_sequence, str):
        if visit_sequence == "monotone":
            return sorted(incomplete, key=lambda j: (missing[:, j].sum(), j))
        if visit_sequence == "reverse-monotone":
            return sorted(incomplete, key=lambda j: (-missing[:, j].sum(), j))
        return incomplete
    order = []
    for name in visit_sequence:
        if name not in columns:
            raise ValueError(f"visit_sequence names {name!r}, which is not a column of X.")
        if name == groups_column:
            raise ValueError(f"visit_sequence names the cluster column {name!r}, which is never imputed.")
        if columns.index(name) in derived_cols:
            raise ValueError(f"visit_sequence names the derived column {name!r}, which is computed, not imputed.")
        order.append(columns.index(name))
    absent = [columns[j] for j in incomplete if j not in order]
    if absent:
        raise ValueError(f"visit_sequence leaves out incomplete columns {absent}.")
    return order


def make_plan(data, settings: PlanSettings, where: np.ndarray, ignore: np.ndarray) -> Plan:
    """The plan of a fit: targets in visit order with their models and predictors, rows and post-processing.

    ``data`` is the fit's :class:`~skmlmi._frontdoor.WorkingData`; ``where`` the cells to
    impute and ``ignore`` the rows never used for fitting (both already checked).
    """
    columns, W, missing = data.columns, data.W, data.missing
    derived = parse_derived(settings.derived, columns, data.groups_column, data.codecs)
    derived_cols = {d.column for d in derived}
    to_impute = where.copy()
    to_impute[:, sorted(derived_cols)] = False
    visit = resolve_visit_sequence(settings.visit_sequence, columns, data.groups_column, to_impute, derived_cols)
    fit_rows = {j: ~missing[:, j] & ~ignore for j in range(W.shape[1])}  # mice's ry, less the ignored rows
    planner = _Planner(data, settings, fit_rows, ignore, visit, derived)
    matrix, events = planner.matrix.copy(), list(planner.events)
    targets, made, single_level = [], {}, []
    for j in visit:
        if j not in made:
            target, changes, target_events = planner.target(j)
            _check_systematic(target, data.clusters, fit_rows[j], to_impute[:, j])
            more, reason = planner.limit_predictors(target, W, fit_rows[j], ~ignore)
            for row, cols, code in changes + more:  # one assignment per change: a pandas call each
                matrix.iloc[row, cols] = code
            events += target_events + ([(columns[j], reason)] if reason else [])
            if target.ignores_clusters:
                single_level.append(target.name)
            made[j] = target
        targets.append(made[j])
    for name in dict.fromkeys(single_level):
        warn_user(
            f"The imputation model of {name!r} is single-level: it ignores the clustering "
            "(cluster column coded -2). Use a random-effects model, or code the cluster column 1 "
            "for cluster fixed effects."
        )
    _warn_circular(derived, made)
    incomplete = list(dict.fromkeys(visit))
    impute_rows = {j: np.flatnonzero(to_impute[:, j]) for j in range(W.shape[1])}
    for d in derived:
        affected = missing[:, d.column] | missing[:, _inputs(d, W.shape[1])].any(axis=1)
        impute_rows[d.column] = np.flatnonzero(affected)
        if affected.any():
            incomplete.append(d.column)
    write_rows = {j: missing[impute_rows[j], j] | (j in derived_cols) for j in range(W.shape[1])}
    never_modelled = derived_cols | {j for j, name in enumerate(columns) if name in data.layout.groups_columns}
    auxiliary = [j for j in range(W.shape[1]) if j not in made and j not in never_modelled]
    return Plan(
        targets=targets,
        auxiliary=auxiliary,
        clusters=data.clusters,
        names=columns,
        fit_rows=fit_rows,
        impute_rows=impute_rows,
        write_rows=write_rows,
        incomplete=incomplete,
        derived=derived,
        bounds=parse_bounds(settings.bounds, columns),
        post=parse_post(settings.post, columns),
        partial_predictors=bool((missing & ~where).any()),
        modelled_rows=~ignore if ignore.any() else None,
        predictor_matrix=matrix,
        visit_sequence=[columns[j] for j in visit],
        methods={columns[j]: made[j].model for j in dict.fromkeys(visit)},
        events=events,
        planner=planner,
    )


def _check_systematic(target: Target, clusters: Clusters | None, fit_rows, impute_rows) -> None:
    """A model that cannot impute clusters without observed values (``handles_systematic`` False) is
    refused before the chains run when the target has cells to impute in such a cluster.

    Only models that use the clusters are concerned: with cluster fixed effects (code 1) a
    cluster never observed has no effect to estimate. Single-level models ignore the clusters
    (warned) and impute any row.
    """
    if clusters is None or target.cluster_role == 0 or target.model.handles_systematic:
        return
    count = clusters.count
    never_observed = (np.bincount(clusters.codes[impute_rows], minlength=count) > 0) & (
        np.bincount(clusters.codes[fit_rows], minlength=count) == 0
    )
    if never_observed.any():
        codes = np.flatnonzero(never_observed)
        labels = [clusters.label_of(c) for c in codes[:10]]
        raise ValueError(
            f"{type(target.model).__name__} cannot impute {target.name!r} in clusters where it is never observed "
            f"({codes.size} cluster(s): {labels}{' ...' if codes.size > 10 else ''}); models that can: "
            f"{', '.join(c.__name__ for c in find_models() if c.handles_systematic and target.kind in c.target_kinds)}."
        )


def _warn_circular(derived, made) -> None:
    """A derived column that predicts one of its own inputs feeds back on itself."""
    for d in derived:
        for j, target in made.items():
            if (not d.depends_on or j in d.depends_on) and any(p.column == d.column for p in target.predictors):
                warn_user(
                    f"Derived column {d.name!r} predicts {target.name!r}, one of its own inputs: the imputation "
                    f"model of {target.name!r} is circular. Set predictor_matrix[{target.name!r}, {d.name!r}] "
                    "to 0."
                )
