"""The chained-equations engine: :class:`MultilevelIterativeImputer`.

The engine turns the data into a float working matrix (:mod:`skmlmi._columns`), asks
:mod:`skmlmi.predictors` for each target's predictors and model, and runs m independent
chains. In every iteration of a chain each incomplete variable is visited in turn: its
design is assembled from the current completed data, its conditional model draws its
parameters from the rows used for fitting and imputes the cells to impute. The chains
are independent, seeded by ``SeedSequence(random_state).spawn(m)``, and run through
``sklearn.utils.parallel.Parallel`` with one BLAS thread each, so the results are
bit-identical for any ``n_jobs`` and joblib backend.
"""

from __future__ import annotations

import copy
import numbers
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from joblib import effective_n_jobs
from joblib.parallel import get_active_backend
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context, clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import _check_feature_names, _check_n_features, check_is_fitted

from ._columns import ColumnCodec, cluster_codes, detect_codec
from ._errors import in_context
from ._frame import cell_mask, from_pandas, positional_labels, to_output, to_pandas
from ._kernels import cluster_means
from ._passive import apply_bounds, parse_bounds, parse_derived, parse_post
from ._threads import one_blas_thread as _one_blas_thread
from .conditional.base import ROLE_NAMES, BaseConditionalImputer, Draw, DrawContext
from .conditional.cluster_level import is_cluster_constant
from .conditional.registry import default_model, find_models, make_model, models_accepting, models_for_kind
from .predictors import ROWS_PER_PREDICTOR, PredictorSuggestion, limit_predictors, validate_predictor_matrix

__all__ = ["MultilevelIterativeImputer", "ImputedDatasets"]


_MAX_EVENT_WARNINGS = 20  # distinct logged events issued as warnings at fit; the rest are counted in one

_TRANSFORM_STREAM = 0x7472616E  # spawn-key namespace of the transform generators ("tran")
_AUXILIARY_STREAM = 0x61757869  # ... and of the final draws for complete columns ("auxi")


class ImputedDatasets(list):
    """The m completed datasets of an imputation (R's ``mids`` completed).

    A list of DataFrames (pandas or polars, or pyarrow Tables or arrays, as the imputer
    returns them) with :meth:`long` to stack them like ``mice::complete(imp, "long")``.
    """

    def long(self, include_original: pd.DataFrame | None = None) -> pd.DataFrame:
        """Stacked long format with ``.imp`` (1..m) and ``.id`` (row position) columns.

        Parameters
        ----------
        include_original : DataFrame (pandas or polars), optional
            The incomplete data, stacked first with ``.imp = 0`` (mice's ``include=TRUE``).

        Returns
        -------
        DataFrame
            In the datasets' library (polars datasets give a polars frame); an integer column
            imputed with fractions in some dataset is a float column throughout.
        """
        frames = []
        sets = ([include_original] if include_original is not None else []) + list(self)
        start = 0 if include_original is not None else 1
        for k, data in enumerate(sets, start=start):
            frame, source = to_pandas(data)  # polars and pyarrow datasets are stacked as pandas
            if not isinstance(frame, pd.DataFrame | np.ndarray):
                raise TypeError(f"include_original must be the incomplete data frame; got {type(data).__name__}.")
            frame = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(frame)
            taken = [c for c in (".imp", ".id") if c in frame.columns]
            if taken:
                raise ValueError(f"The data have columns named {taken}, which long() adds; rename them first.")
            frame = frame.reset_index(drop=True)
            frame.insert(0, ".id", np.arange(len(frame)))
            frame.insert(0, ".imp", k)
            frames.append(frame)
        stacked = pd.concat(frames, ignore_index=True)
        if source.frame is not None:  # ... and returned in their library
            return from_pandas(stacked, source.library, schema=source.schema)
        return stacked


# ----------------------------------------------------------------------------- plan
@dataclass
class _Predictor:
    column: int  # index in the working matrix
    role: int  # original role code (1..4, -3, -4)
    kind: str
    n_categories: int
    name: str
    levels: np.ndarray | None = None  # categorical: codes observed in its fitting rows (dummies of levels[1:])


@dataclass
class _Target:
    """Everything a chain needs to visit one variable."""

    column: int
    name: str
    kind: str
    n_categories: int
    ordered: bool
    model: BaseConditionalImputer
    predictors: list[_Predictor]
    cluster_role: int  # -2 random, 1 fixed, 0 none (as passed to the model)
    levels: np.ndarray | None = None  # binary/categorical: codes observed in its fitting rows, increasing

    @property
    def recoded(self) -> bool:
        """Whether some declared category is unobserved, so the model sees the codes 0..len(levels)-1."""
        return self.levels is not None and not np.array_equal(self.levels, np.arange(self.n_categories))


@dataclass
class _Plan:
    """What every chain shares: targets in visit order, rows, post-processing."""

    targets: list[_Target]  # one per visit of the visit sequence
    auxiliary: list[int]  # complete-at-fit columns: a model is made and drawn only if new data need it
    groups: np.ndarray | None
    n_clusters: int
    cluster_labels: Any
    names: list  # column names, for derived expressions
    fit_rows: dict[int, np.ndarray]  # column -> bool mask of rows used for fitting
    impute_rows: dict[int, np.ndarray]  # column -> indices of the cells to impute (mice's where)
    write_rows: dict[int, np.ndarray]  # column -> positions in impute_rows of missing cells
    incomplete: list[int]  # columns in chain_mean_'s last axis (targets, then derived)
    derived: list = field(default_factory=list)
    bounds: dict = field(default_factory=dict)
    post: dict = field(default_factory=dict)
    partial_predictors: bool = False  # missing cells outside `where` leave NaN predictors
    modelled_rows: np.ndarray | None = None  # rows not ignored (None: all)


@dataclass
class _ChainResult:
    values: dict[int, np.ndarray]  # column -> imputed values of its impute rows
    chain_mean: np.ndarray  # (n_iter, n_incomplete)
    chain_var: np.ndarray
    draws: list  # final draw of each visit of the visit sequence
    states: list
    events: list = field(default_factory=list)
    rng: np.random.Generator | None = None


def _design(W: np.ndarray, target: _Target, groups, n_clusters):
    """Predictor matrix, role codes and names of one target from the working data.

    Categorical predictors become treatment dummies of the categories observed in their
    fitting rows (the first the reference; a declared category never observed would be an
    all-zero, constant dummy), each inheriting its variable's role; codes 3 and 4 add the
    cluster means of the predictor (over all rows of each cluster, current completed
    values) as fixed effects and become 1 and 2.
    """
    blocks, roles, names = [], [], []
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
        if pred.role in (3, 4):
            blocks.append(cluster_means(block, groups, n_clusters)[groups])
            roles += [1] * block.shape[1]
            names += [f"mean({label})" for label in labels]
    if not blocks:
        return np.empty((W.shape[0], 0)), np.empty(0, dtype=int), []
    return np.hstack(blocks), np.asarray(roles, dtype=int), names


#: Clusters observing a target per cluster-level term of its model, below which the default
#: cluster means are left out (see MultilevelIterativeImputer._afford_cluster_means).
_CLUSTERS_PER_TERM = 10


def _finish(values: np.ndarray, target: _Target) -> np.ndarray:
    """Imputations on the target's scale: category codes stay codes in range.

    Numbers are never rounded here: a whole-number column keeps whole numbers because its
    default model imputes observed values (PMM); a normal model chosen for it imputes
    unrounded draws, since rounding a normal draw adds variance (Horton, Lipsitz & Parzen
    2003). Users who want rounded values ask for them with ``post``.
    """
    values = np.asarray(values, dtype=float)
    if target.kind in ("binary", "categorical"):
        return np.clip(np.rint(values), 0, max(target.n_categories - 1, 1))
    return values


class NonFiniteImputationError(ValueError):
    """A draw, ``post`` or derived column gave NaN or infinite values (never written to the data)."""


@dataclass
class _Whereabouts:
    """Where a chain is: the context an exception raised there is re-raised with."""

    chain: int
    stage: str = "initialisation"
    target: _Target | None = None

    def __str__(self) -> str:
        text = f"chain {self.chain + 1}, {self.stage}"
        if self.target is not None:
            text += f", column {self.target.name!r} ({type(self.target.model).__name__})"
        return text


@dataclass
class _ChainFailure:
    """A chain that raised: returned by the worker (not raised) so that the other chains finish and are kept."""

    chain: int
    error: Exception
    where: str
    traceback: str


def _check_finite(values: np.ndarray, what: str, groups, labels) -> np.ndarray:
    """``values`` if all finite; else a :class:`NonFiniteImputationError` naming ``what`` and the clusters."""
    bad = ~np.isfinite(values)
    if bad.any():
        where = ""
        if groups is not None and labels is not None:
            codes = np.unique(groups[bad])
            known = codes[codes < len(labels)]
            names = [repr(_plain(labels[c])) for c in known[:5]] + (["new clusters"] if len(known) < len(codes) else [])
            where = f" in cluster(s) {', '.join(names)}{' and more' if len(known) > 5 else ''}"
        first = float(values[bad][0])
        raise NonFiniteImputationError(
            f"{what} gave {int(bad.sum())} non-finite value(s) of {values.size}{where} (first: {first})."
        )
    return values


def _plain(label):
    """A numpy scalar label as the Python value it holds (for messages)."""
    return label.item() if isinstance(label, np.generic) else label


def _sample(draw, X, groups, rows, target, plan, rng, log):
    """Imputations of ``rows``: the model's draw, then the bounds, then ``post`` (in this order).

    A non-finite value at any stage is an error naming the column and the stage (the chain
    and iteration are added by the caller): NaN would otherwise pass the bounds unnoticed
    and leave the "completed" data incomplete.
    """
    g = None if groups is None else groups[rows]
    model = f"the draw of {type(target.model).__name__} for {target.name!r}"

    def sample(index=None):
        X_rows = X[rows] if index is None else X[rows[index]]
        g_rows = g if index is None or g is None else g[index]
        return _check_finite(_finish(draw.sample(X_rows, g_rows, rng), target), model, g_rows, plan.cluster_labels)

    values = sample()
    bounds = plan.bounds.get(target.column)
    if bounds is not None:

        def redraw(index):
            return sample(index)

        values, squeezed = apply_bounds(values, bounds, redraw)
        if squeezed:
            log(target.name, [f"{squeezed} draws still outside the bounds {bounds} after redrawing: squeezed"])
    post = plan.post.get(target.column)
    if post is not None:
        values = np.asarray(post(values.copy()), dtype=float)
        if values.shape != (rows.size,):
            raise ValueError(f"post[{target.name!r}] returned {values.shape} values for {rows.size} cells.")
        _check_finite(values, f"post[{target.name!r}]", g, plan.cluster_labels)
    return values


class _ConstantDraw(Draw):
    """The draw of a binary or categorical target with one category observed: that category."""

    def __init__(self, code: float):
        self.code = code

    def sample(self, X, groups, rng):
        return np.full(X.shape[0], self.code)


class _RecodedDraw(Draw):
    """A draw made on the observed categories' codes 0..K_obs-1, sampling the declared codes."""

    def __init__(self, inner: Draw, levels: np.ndarray):
        self.inner = inner
        self.levels = levels

    def sample(self, X, groups, rng):
        codes = np.asarray(self.inner.sample(X, groups, rng), dtype=float)
        out = np.full(codes.shape, np.nan)  # NaN: a cell whose predictors stay missing (partial `where`)
        known = ~np.isnan(codes)
        out[known] = self.levels[np.clip(np.rint(codes[known]), 0, self.levels.size - 1).astype(np.intp)]
        return out


def _draw(target, y, fit_rows, X, roles, groups, rng, state, context):
    """The target model's draw, on the codes of the target's observed categories only.

    A declared category that no fitting row holds has nothing to learn its probability
    from: the model sees the observed categories as ``0..K_obs-1`` (order kept), and its
    draw maps its samples back to the declared codes, so such a category is never imputed.
    With one category observed no model is fitted (logged at fit): it is the imputation.
    """
    if target.levels is not None and target.levels.size == 1:
        return _ConstantDraw(float(target.levels[0])), None
    if not target.recoded:
        return target.model.draw(y, fit_rows, X, roles, groups, rng, state, context)
    compact = np.zeros(target.n_categories)  # unobserved categories only occur outside the fitting rows
    compact[target.levels] = np.arange(target.levels.size)
    context.n_categories = target.levels.size
    draw, state = target.model.draw(compact[y.astype(np.intp)], fit_rows, X, roles, groups, rng, state, context)
    return _RecodedDraw(draw, target.levels), state


def _recompute_derived(W, plan, changed: int | None):
    """Recompute the derived columns that depend on column ``changed`` (None: all)."""
    for d in plan.derived:
        if changed is None or not d.depends_on or changed in d.depends_on:
            rows = plan.impute_rows[d.column]
            if rows.size:
                values = d.values(W, plan.names, rows)
                W[rows, d.column] = _check_finite(values, f"derived[{d.name!r}]", None, None)


def _visit(W, target, plan, rng, state, log, imputed=None, draw_only=False):
    """Draw the target's model from the current data and impute its cells.

    ``imputed`` holds the target's imputations of all its ``where`` cells; only the
    missing ones are written into the working data (over-imputed observed cells keep
    their observed value as predictors of the other variables, as in mice).
    """
    X, roles, names = _design(W, target, plan.groups, plan.n_clusters)
    model_groups = plan.groups if target.cluster_role != 0 else None
    context = DrawContext(
        target=str(target.name),
        kind=target.kind,
        n_categories=target.n_categories,
        ordered=target.ordered,
        n_clusters=plan.n_clusters if model_groups is not None else 0,
        predictor_names=tuple(names),
        cluster_labels=plan.cluster_labels,
        modelled_rows=plan.modelled_rows,
        checked=True,  # parameters validated and data checked finite at fit; fitting rows exclude NaN
    )
    col = target.column
    fit_rows = plan.fit_rows[col]
    rows = plan.impute_rows[col]
    if plan.partial_predictors:
        complete = ~np.isnan(X).any(axis=1)
        fit_rows = fit_rows & complete
        keep = complete[rows]
    y = W[:, col]
    if np.isnan(y).any():
        y = np.where(np.isnan(y), 0.0, y)  # cells outside `where` stay missing: never fitted
    draw, state = _draw(target, y, fit_rows, X, roles, model_groups, rng, state, context)
    log(target.name, context.events)
    if draw_only or rows.size == 0:
        return draw, state
    if plan.partial_predictors and not keep.all():
        values = np.full(rows.size, np.nan)
        values[keep] = _sample(draw, X, model_groups, rows[keep], target, plan, rng, log)
    else:
        values = _sample(draw, X, model_groups, rows, target, plan, rng, log)
    imputed[col] = values
    write = plan.write_rows[col]
    W[rows[write], col] = values[write]
    _recompute_derived(W, plan, col)
    return draw, state


def _initialise(W, plan, rng):
    """Fill the cells to impute with draws from the column's observed, non-ignored values."""
    for col in dict.fromkeys(t.column for t in plan.targets):
        rows, write = plan.impute_rows[col], plan.write_rows[col]
        pool = W[plan.fit_rows[col], col]
        W[rows[write], col] = pool[rng.integers(0, len(pool), size=int(write.sum()))]
    _recompute_derived(W, plan, None)


def _auxiliary_rng(entropy, chain, column):
    """Generator of the draw, for new data, of a column that was complete at fit."""
    seed = np.random.SeedSequence(entropy, spawn_key=(_AUXILIARY_STREAM, chain, column))
    return np.random.Generator(np.random.PCG64(seed))


def _run_chain(
    plan: _Plan,
    W: np.ndarray,
    rng: np.random.Generator,
    n_iter: int,
    chain: int,
    start_iter: int = 0,
    states=None,
    verbose: int = 0,
) -> _ChainResult | _ChainFailure:
    """Run one chain for ``n_iter`` iterations; an exception is returned with where it happened.

    ``W`` is the incomplete working data (it may be a read-only memory map shared by the
    workers); the chain works on its own copy, whose cells to impute start from draws of
    the column's observed values (mice's initialisation) unless ``states`` holds the
    state of a chain being continued, whose completed data ``W`` then is.
    """
    whereabouts = _Whereabouts(chain)
    try:
        return _run_chain_steps(plan, W, rng, n_iter, chain, start_iter, states, verbose, whereabouts)
    except Exception as error:  # returned, not raised: the other chains' work is kept (see _raise_failures)
        return _ChainFailure(chain, error, str(whereabouts), traceback.format_exc())


def _run_chain_steps(plan, W, rng, n_iter, chain, start_iter, states, verbose, whereabouts) -> _ChainResult:
    """The body of :func:`_run_chain`; ``whereabouts`` follows the stage and the column visited."""
    W = np.array(W)  # one working copy per chain
    if states is None:
        _initialise(W, plan, rng)
    states = [None] * len(plan.targets) if states is None else list(states)
    draws = [None] * len(plan.targets)
    chain_mean = np.full((n_iter, len(plan.incomplete)), np.nan)
    chain_var = np.full((n_iter, len(plan.incomplete)), np.nan)
    imputed = {col: W[plan.impute_rows[col], col].copy() for col in plan.incomplete}
    derived = {d.column for d in plan.derived}
    events: list = []
    iteration = start_iter
    started = time.perf_counter()

    def log(name, reasons):
        events.extend((iteration + 1, chain + 1, name, reason) for reason in reasons)

    with _one_blas_thread():
        for k in range(n_iter):
            iteration = start_iter + k
            whereabouts.stage = f"iteration {iteration + 1}"
            for t, target in enumerate(plan.targets):
                whereabouts.target = target
                draws[t], states[t] = _visit(W, target, plan, rng, states[t], log, imputed)
            whereabouts.target = None
            for j, col in enumerate(plan.incomplete):
                values = W[plan.impute_rows[col], col] if col in derived else imputed[col]
                if col in derived:
                    imputed[col] = values.copy()
                if values.size:
                    if plan.partial_predictors:  # cells whose predictors stay missing stay NaN
                        values = values[~np.isnan(values)]
                    chain_mean[k, j] = values.mean() if values.size else np.nan
                    chain_var[k, j] = values.var(ddof=1) if values.size > 1 else np.nan
            if verbose:
                print(
                    f"[skmlmi] chain {chain + 1}: iteration {iteration + 1} of {start_iter + n_iter} done "
                    f"({time.perf_counter() - started:.1f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    return _ChainResult(imputed, chain_mean, chain_var, draws, states, events, rng)


# ----------------------------------------------------------------------------- estimator
class MultilevelIterativeImputer(TransformerMixin, BaseEstimator):
    """Multiple imputation of multilevel data by chained equations.

    Each incomplete variable is imputed in turn from a conditional model given the
    other variables (fully conditional specification, van Buuren 2018, ch. 4), in m
    independent chains; R's ``mice()`` with the 2l methods is the model. With
    ``groups`` the default models are random-effects models that keep the intraclass
    correlation; without, they are mice's single-level defaults.

    Parameters
    ----------
    methods : dict, BaseConditionalImputer or str, default=None
        Conditional model per incomplete column (``{"popular": RandomEffectsNormal()}``),
        or one model for every incomplete column. A model may be given by name: its class
        name (``"RandomEffectsPMM"``) or an R method name (``"2l.pan"``, ``"2l.norm"``, ...;
        see :func:`skmlmi.conditional.registry.r_method_names`), resolved at ``fit``.
        Columns not named get the default of their kind: without groups
        :class:`~skmlmi.conditional.PredictiveMeanMatching` (continuous, integer),
        :class:`~skmlmi.conditional.BayesianLogistic` (binary),
        :class:`~skmlmi.conditional.Polytomous` (categorical); with groups the
        random-effects models, two-stage or cluster-level models where the missingness
        calls for them (see :data:`skmlmi.conditional.registry.DEFAULT_MODELS`).
    predictor_matrix : DataFrame, dict or array-like, default=None
        Role codes, one row per target and one column per variable (mice's
        ``predictorMatrix``; codes in :data:`skmlmi.conditional.ROLE_NAMES`). A DataFrame,
        or a dict ``{predictor: {target: code}}``, may hold only the entries to change. Default: every other column a
        fixed predictor (1), the cluster column -2. Where a target's default predictors
        outnumber what its rows support, they are reduced by quickpred's rule (see Notes);
        entries given here are always kept.
    visit_sequence : {"left-to-right", "monotone", "reverse-monotone"} or list, default="left-to-right"
        Order in which incomplete columns are visited in each iteration: columns in
        data order, by increasing or decreasing number of missing values, or an
        explicit list of column names (repeats allowed).
    n_imputations : int, default=5
        Number of chains, hence of completed datasets (mice's ``m``).
    max_iter : int, default=10
        Iterations of each chain (mice's ``maxit``). Cost is linear in
        ``n_imputations * max_iter * (number of visits)``.
    column_kinds : dict, default=None
        Overrides of the detected kind of a column: ``"continuous"``, ``"integer"``,
        ``"binary"`` or ``"categorical"``. The kind chooses the default model: a
        whole-number column (``"integer"``: integer dtype, or floats that are all whole
        numbers) gets predictive mean matching, which imputes observed values, so it keeps
        whole numbers. Draws are never rounded: a normal model chosen for a whole-number
        column imputes unrounded values (rounding adds variance and biases it); to round,
        pass ``post={column: numpy.round}``. An integer-dtype column that receives
        non-whole imputations is returned as a float column (logged).
    keep_groups : bool, default=True
        Whether the output keeps the cluster column (when groups is a column of X).
    transform_chain : int, default=0
        Which chain's completed data ``fit_transform`` returns and whose stored draws
        ``transform`` uses.
    transform_iter : int, default=3
        Passes over the visit sequence in ``transform`` so that rows with several
        missing values are completed consistently (one pass suffices, and is used, when
        no row has more than one missing value).
    random_state : int, RandomState instance or None, default=None
        Seed of the chains: chain c uses ``SeedSequence(random_state).spawn(m)[c]``.
    n_jobs : int, default=None
        Chains run in parallel through joblib; results do not depend on it.
    verbose : int, default=0
        Progress on standard error: one line per chain and iteration (chains x
        iterations), with elapsed time; 2 adds joblib's task messages.
    derived : dict, default=None
        Derived (passive) columns, never imputed by a model but recomputed from their
        inputs after each visit of an input, so they stay consistent in every completed
        dataset (mice's passive imputation): ``{"bmi": "weight / height ** 2"}`` (an
        expression over column names) or ``{"bmi": callable}`` (receives a DataFrame of the
        current data; recomputed after every visit), or ``(callable, [inputs])``. Cells
        recomputed: those where the derived value or one of its inputs is missing.
        An expression is checked at ``fit``, before anything is computed, and evaluated with
        numpy, never run as Python code. It may hold column names (in backticks when not
        identifiers: ``"`body weight` / height ** 2"``), numbers, ``+ - * / // % **``,
        comparisons, ``and``/``or``/``not`` (``&``/``|``/``~``), ``a if condition else b``
        and the functions ``abs, sqrt, cbrt, square, exp, expm1, log, log1p, log2, log10``,
        the trigonometric and hyperbolic ones and their inverses (``sin``, ``arctan2``,
        ``tanh``, ...), ``floor, ceil, trunc, round, sign, minimum, maximum, power, clip,
        where, isnan, isfinite`` (bare or as ``np.log``); anything else (attributes,
        subscripts, other calls, strings, ...) is a ValueError naming the offending part.
    bounds : dict, default=None
        ``{"popular": (0, 10)}``: draws outside the bounds are redrawn from the same
        conditional model (up to 20 times), then squeezed onto the bound (logged).
    post : dict, default=None
        ``{column: callable}`` applied to each vector of imputations after the bounds
        (mice's ``post``), e.g. rounding. Every completed dataset is made in one order:
        the model's draw, then ``bounds``, then ``post``, then the derived columns from
        these final values; nothing changes the values afterwards, so bounds (unless
        ``post`` moves values outside them), ``post`` and derived columns hold exactly.
    groups_column : str, default=None
        Name of the cluster column of X, used when ``fit`` receives no ``groups``. This is
        the path that always works inside ``GridSearchCV`` and ``cross_validate``, where
        ``groups`` goes to the splitter only (unless metadata routing is enabled).
    cluster_means : bool, default=True
        With groups, whether the default predictor matrix gives the level-1 predictors of a
        level-1 target their cluster means (code ``3`` instead of ``1``), so that within-
        and between-cluster associations are imputed separately (Enders, Mistler & Keller
        2016; Grund, Lüdtke & Robitzsch 2018). Variables constant within clusters, models
        that cannot use cluster means, and entries given in ``predictor_matrix`` are not
        changed. ``False`` gives mice's default matrix (every predictor ``1``). The models
        that take them are the one-stage random-effects models
        (``default_cluster_means`` in :class:`~skmlmi.conditional.BaseConditionalImputer`).

    Attributes
    ----------
    chain_mean_, chain_var_ : ndarray of shape (n_imputations, max_iter, n_incomplete)
        Mean and variance of the imputed values of each incomplete column after each
        iteration (mice's ``chainMean``/``chainVar``; categorical columns on their codes
        0..K-1).
    incomplete_columns_ : list
        Names of the incomplete columns, the last axis of ``chain_mean_``.
    imputations_ : dict
        Column -> array (n_missing, n_imputations) of the imputed values (mice's ``imp``).
    methods_ : dict
        The conditional model used for each incomplete column.
    predictor_matrix_ : DataFrame
        The resolved predictor matrix.
    visit_sequence_ : list
        The resolved visit sequence.
    final_draws_ : list of list
        Per chain, the last draw of each visit's conditional model.
    logged_events_ : DataFrame
        What the sampler decided on its own, with iteration, chain, column and reason
        (iteration and chain 0: decided once, before the chains ran, as in mice).
    n_features_in_, feature_names_in_
        As in scikit-learn.

    See Also
    --------
    sklearn.impute.IterativeImputer : single-level, single imputation.

    Notes
    -----
    **When a chain fails.** An exception raised inside a chain (by a model, a ``post``
    callable, a derived column, or a non-finite draw) does not stop the other chains. Once
    they are done, the first failure is raised again with its own type, the chain,
    iteration, column and model leading its message, and the original as ``__cause__``;
    it carries ``failed_chains`` and ``finished_chains`` (chain numbers from 1) and
    ``completed``, the finished chains' completed datasets. They are what a successful fit
    would have given for those chains; analysing them alone is sound only if the failure
    is unrelated to the data the chain imputed. A failed ``fit`` leaves the imputer
    unfitted; a failed :meth:`continue_fit` leaves it as it was, so it can be continued
    once the cause is removed, with the same result as had nothing failed.

    **Wide data.** When a target's model would have more predictor columns than a third of
    the rows observing it (dummies of categorical predictors and cluster means count; for a
    cluster-level target, a third of the clusters observing it; with cluster fixed effects,
    of the rows less one per cluster), the predictors not given in
    ``predictor_matrix`` are reduced at ``fit`` by the rule of mice's ``quickpred``
    (:func:`~skmlmi.predictors.quickpred`, van Buuren et al. 1999): a predictor stays when
    its absolute correlation with the target, or with the target's response indicator,
    exceeds 0.1 (Pearson, on the pairs of values available in the fitting data; categories
    by their codes), and of those the strongest stay while they fit in a third of the rows
    (:func:`~skmlmi.predictors.limit_predictors`). Correlations do not depend on units, and
    ties keep the earlier column, so the choice is deterministic. It is made once, from the
    incomplete data, logged in ``logged_events_`` (the target, how many predictors were
    kept and why) and shown in ``predictor_matrix_``. Entries given in ``predictor_matrix``
    are kept even beyond that bound (then only logged): pass the whole matrix, e.g.
    :func:`~skmlmi.predictors.make_predictor_matrix`, to keep every predictor. At each draw,
    constant and collinear predictors are dropped and logged (mice's ``remove.lindep``),
    reading the collinear ones from one eigendecomposition of their correlation matrix (one
    singular value decomposition of the rows when the columns outnumber twice the rows).
    30 rows and 2,000 columns impute in about a second (``benchmarks/wide_data.py``).

    Examples
    --------
    >>> from skmlmi import MultilevelIterativeImputer
    >>> from skmlmi.conditional import PredictiveMeanMatching
    >>> from skmlmi.datasets import load_popmis
    >>> data = load_popmis()[["school", "popular", "sex", "texp"]]
    >>> imp = MultilevelIterativeImputer(methods=PredictiveMeanMatching(), n_imputations=2,
    ...                                  max_iter=2, random_state=1)
    >>> sets = imp.fit_transform_all(data, groups="school")  # doctest: +SKIP
    >>> len(sets), int(sets[0]["popular"].isna().sum())  # doctest: +SKIP
    (2, 0)
    """

    _parameter_constraints: dict = {
        "methods": [dict, BaseConditionalImputer, str, None],
        "predictor_matrix": ["array-like", dict, None],
        "visit_sequence": [StrOptions({"left-to-right", "monotone", "reverse-monotone"}), list],
        "n_imputations": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 0, None, closed="left")],
        "column_kinds": [dict, None],
        "keep_groups": ["boolean"],
        "transform_chain": [Interval(numbers.Integral, 0, None, closed="left")],
        "transform_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "n_jobs": [numbers.Integral, None],
        "verbose": ["verbose"],
        "derived": [dict, None],
        "bounds": [dict, None],
        "post": [dict, None],
        "groups_column": [str, numbers.Integral, tuple, None],
        "cluster_means": ["boolean"],
    }

    def __init__(
        self,
        methods=None,
        predictor_matrix=None,
        visit_sequence="left-to-right",
        n_imputations: int = 5,
        max_iter: int = 10,
        column_kinds=None,
        keep_groups: bool = True,
        transform_chain: int = 0,
        transform_iter: int = 3,
        random_state=None,
        n_jobs=None,
        verbose: int = 0,
        derived=None,
        bounds=None,
        post=None,
        groups_column=None,
        cluster_means: bool = True,
    ):
        self.methods = methods
        self.predictor_matrix = predictor_matrix
        self.visit_sequence = visit_sequence
        self.n_imputations = n_imputations
        self.max_iter = max_iter
        self.column_kinds = column_kinds
        self.keep_groups = keep_groups
        self.transform_chain = transform_chain
        self.transform_iter = transform_iter
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.derived = derived
        self.bounds = bounds
        self.post = post
        self.groups_column = groups_column
        self.cluster_means = cluster_means

    # ------------------------------------------------------------------ sklearn plumbing
    @classmethod
    def from_suggestion(cls, suggestion: PredictorSuggestion, **params) -> MultilevelIterativeImputer:
        """The imputer a :func:`~skmlmi.predictors.suggest_predictors` suggestion describes.

        Parameters
        ----------
        suggestion : PredictorSuggestion
            Its ``methods`` and ``predictor_matrix`` become the imputer's (copies).
        **params
            Any other parameter of the imputer (``n_imputations``, ``random_state``, ...).

        Returns
        -------
        MultilevelIterativeImputer
        """
        if not isinstance(suggestion, PredictorSuggestion):
            raise TypeError(f"from_suggestion takes the result of suggest_predictors; got {type(suggestion).__name__}.")
        taken = sorted({"methods", "predictor_matrix"} & params.keys())
        if taken:
            raise TypeError(f"from_suggestion sets {taken} from the suggestion; change the suggestion instead.")
        return cls(methods=dict(suggestion.methods), predictor_matrix=suggestion.predictor_matrix.copy(), **params)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        tags.non_deterministic = False
        return tags

    # ------------------------------------------------------------------ public API
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None, groups=None, where=None, ignore=None):
        """Run the chains on X.

        Parameters
        ----------
        X : DataFrame (pandas or polars), pyarrow Table or array-like of shape (n_samples, n_features)
            Incomplete data; NaN, pandas NA or polars null marks missing values. The output
            follows the input's library unless ``set_output`` chooses one.
        y : ignored
        groups : hashable or array-like of shape (n_samples,), default=None
            Cluster labels, or the name of the cluster column of X (remembered, so that
            ``transform`` needs no groups argument).
        where : array-like of bool, shape (n_samples, n_features), default=None
            Cells to impute (mice's ``where``); default the missing ones. Observed cells
            marked are over-imputed: their imputations are stored and appear in the
            completed data, while the chains keep using the observed value as predictor.
            Missing cells not marked stay missing, and rows with such a predictor are left
            out of the models that use it.
        ignore : array-like of bool, shape (n_samples,), default=None
            Rows imputed but never used to fit a conditional model (mice's ``ignore``),
            e.g. a test set that must not shape the imputation model.

        Returns
        -------
        self
        """
        self._fit(X, groups, where, ignore)
        return self

    def fit_transform(self, X, y=None, groups=None, where=None, ignore=None):
        """Run the chains and return chain ``transform_chain``'s completed data."""
        return self.fit_transform_all(X, groups=groups, where=where, ignore=ignore)[self._chain_index()]

    def fit_transform_all(self, X, y=None, groups=None, where=None, ignore=None) -> ImputedDatasets:
        """Run the chains and return the m completed datasets they produced (R's ``mice()``).

        Parameters are those of :meth:`fit`.
        """
        frame, source = self._fit(X, groups, where, ignore)
        return ImputedDatasets(self._completed(frame, c, source) for c in range(self.n_imputations))

    def transform(self, X, groups=None):
        """One completed dataset of X, imputed with chain ``transform_chain``'s final draws.

        Deterministic for a fitted imputer: the same X gives the same output. Rows of
        clusters unseen at fit get cluster effects from the population distribution. A
        missing cell of a cluster-level column (constant within clusters at fit) in a
        cluster seen at fit takes that cluster's value at fit (observed, or imputed by the
        chain).
        """
        return self._transform_chain(X, groups, self._chain_index())

    def transform_all(self, X, groups=None) -> ImputedDatasets:
        """m completed datasets of X, one per chain (R's ``mice.mids(newdata=)``)."""
        return ImputedDatasets(self._transform_chain(X, groups, c) for c in range(self.n_imputations))

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "n_features_in_")
        if hasattr(self, "feature_names_in_"):
            names = np.asarray(self._columns, dtype=object)
        else:
            names = np.asarray([f"x{j}" for j in range(self.n_features_in_)], dtype=object)
        if input_features is not None:
            input_features = np.asarray(input_features, dtype=object)
            if len(input_features) != len(names):
                raise ValueError("input_features does not match the number of features seen at fit.")
            names = input_features
        if self._groups_column is not None and not self.keep_groups:
            names = names[[c != self._groups_column for c in self._columns]]
        return names

    # ------------------------------------------------------------------ fitting
    def _chain_index(self):
        if self.transform_chain >= self.n_imputations:
            raise ValueError(f"transform_chain={self.transform_chain} but there are only {self.n_imputations} chains.")
        return self.transform_chain

    def _fit(self, X, groups, where=None, ignore=None):
        self._validate_params()
        if isinstance(X, pd.DataFrame):
            X = X.copy(deep=False)  # never touch the caller's object
        frame, source = self._as_frame(X, reset=True)
        if groups is None and self.groups_column is not None:
            groups = self.groups_column
        if self.transform_chain >= self.n_imputations:  # fail before the chains run, not after
            self._chain_index()
        codes, labels, groups_column = self._encode_groups(frame, positional_labels(groups, source), reset=True)
        self._is_frame = source.is_frame
        self._groups_column = groups_column
        self._columns = list(frame.columns)
        self._codecs = self._detect_codecs(frame)
        self._check_methods()
        W = self._encode(frame)
        missing = np.isnan(W)
        if groups_column is not None:
            missing[:, self._columns.index(groups_column)] = False
        self._record_observed_categories(W, missing)
        self._check_data(frame, W, missing)
        where = self._check_where(cell_mask(where), missing, frame)
        ignore = self._check_ignore(ignore, len(frame))
        self._recommended = self._recommend(frame, codes, missing)
        plan = self._make_plan(W, missing, where, ignore, codes, labels)
        self._plan = plan
        self._entropy = self._seed_entropy()
        seeds = np.random.SeedSequence(self._entropy).spawn(self.n_imputations)
        self._check_fittable(W, plan)
        rngs = [np.random.Generator(np.random.PCG64(seed)) for seed in seeds]
        results = self._parallel(
            [(plan, W, rng, self.max_iter, c, 0, None, self.verbose) for c, rng in enumerate(rngs)]
        )
        self._W = W
        self._raise_failures(results, frame, source)
        self._store_results(plan, results)
        self._observed_pool = {col: W[~missing[:, col], col] for col in range(W.shape[1]) if (~missing[:, col]).any()}
        return frame, source

    def continue_fit(self, n_iter: int = 1):
        """Run every chain ``n_iter`` more iterations (R's ``mice.mids``).

        The chains continue from their last state and random-number streams, so the
        result is identical to having fitted with ``max_iter + n_iter`` from the start.
        ``chain_mean_``/``chain_var_`` grow along the iteration axis and ``n_iter_`` counts
        the iterations run.

        Returns
        -------
        self
        """
        check_is_fitted(self, "final_draws_")
        if isinstance(n_iter, bool) or not isinstance(n_iter, numbers.Integral) or n_iter < 1:
            raise ValueError(f"n_iter must be a positive integer, got {n_iter!r}.")
        plan, previous = self._plan, self._chain_results
        results = self._parallel(  # copies of the generators and states: a failure leaves the fit as it was
            [
                (
                    plan,
                    self._chain_data(c),
                    copy.deepcopy(r.rng),
                    n_iter,
                    c,
                    self.n_iter_,
                    copy.deepcopy(r.states),
                    self.verbose,
                )
                for c, r in enumerate(previous)
            ]
        )
        self._raise_failures(results)
        for old, new in zip(previous, results, strict=True):
            new.chain_mean = np.vstack([old.chain_mean, new.chain_mean])
            new.chain_var = np.vstack([old.chain_var, new.chain_var])
            new.events = old.events + new.events
        n_done = self.n_iter_
        self._store_results(plan, results)
        self.n_iter_ = n_done + n_iter
        return self

    def _raise_failures(self, results, frame=None, source=None) -> None:
        """Re-raise the first failed chain's exception with where it happened; keep what finished.

        The exception has the original's type, with the chain, iteration, column and model
        leading its message and the original as ``__cause__``. It carries
        ``failed_chains`` (chain numbers from 1), ``finished_chains`` and, after ``fit``,
        ``completed``: the finished chains' completed datasets (an :class:`ImputedDatasets`),
        so that a long run is not lost to one chain.
        """
        failures = [r for r in results if isinstance(r, _ChainFailure)]
        if not failures:
            return
        first = failures[0]
        first.error.add_note(f"traceback in the chain:\n{first.traceback}")
        finished = [c for c, r in enumerate(results) if not isinstance(r, _ChainFailure)]
        error = in_context(first.error, first.where)
        if len(failures) > 1:
            others = "; ".join(f.where for f in failures[1:])
            error.add_note(f"{len(failures) - 1} more chain(s) failed too: {others}")
        error.failed_chains = [f.chain + 1 for f in failures]
        error.finished_chains = [c + 1 for c in finished]
        if frame is not None:
            error.completed = ImputedDatasets(self._completed(frame, c, source, results) for c in finished)
        raise error

    def _parallel(self, chains):
        """Run the chains (argument tuples of :func:`_run_chain`): through joblib, or directly in
        this process when joblib would run them one after the other here anyway (saves its
        set-up, which matters for small data). Results are the same either way."""
        if effective_n_jobs(self.n_jobs) == 1 and type(get_active_backend()[0]).__name__ == "LokyBackend":
            return [_run_chain(*args) for args in chains]
        with _one_blas_thread():  # taken here, it also covers chains run in threads of this process
            return Parallel(n_jobs=self.n_jobs, verbose=max(self.verbose - 1, 0))(
                delayed(_run_chain)(*args) for args in chains
            )

    def _chain_data(self, chain):
        """The working data as chain ``chain`` left it (the observed cells never change)."""
        W = self._W.copy()
        for col in self._plan.incomplete:
            rows, write = self._plan.impute_rows[col], self._plan.write_rows[col]
            W[rows[write], col] = self._chain_results[chain].values[col][write]
        return W

    def _seed_entropy(self):
        if self.random_state is None:
            return np.random.SeedSequence().entropy
        if isinstance(self.random_state, numbers.Integral):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(0, 2**31 - 1))

    def _as_frame(self, X, reset):
        """X as a pandas DataFrame (polars and pyarrow converted by :mod:`skmlmi._frame`), and its source."""
        X, source = to_pandas(X)
        if isinstance(X, pd.DataFrame):
            frame, is_frame = X, True
        else:
            if hasattr(X, "toarray") or hasattr(X, "tocsr"):
                raise TypeError("Sparse input is not supported; pass a dense array or a DataFrame.")
            array = np.asarray(X)
            if array.ndim != 2:
                raise ValueError(
                    f"Expected a 2D array or DataFrame, got an array of shape {array.shape}. Reshape your data "
                    "with array.reshape(-1, 1) if it has a single feature."
                )
            frame, is_frame = pd.DataFrame(array), False
        if frame.shape[0] == 0:
            raise ValueError(f"Found array with 0 sample(s) (shape={frame.shape}) while a minimum of 1 is required.")
        if frame.shape[1] == 0:
            raise ValueError(f"Found array with 0 feature(s) (shape={frame.shape}) while a minimum of 1 is required.")
        _check_feature_names(self, X, reset=reset)
        _check_n_features(self, frame, reset=reset)
        if not reset and is_frame != self._is_frame:  # names on one side only: by position, as scikit-learn (it warned)
            frame = frame.set_axis(self._columns, axis=1)
        if not reset and is_frame and list(frame.columns) != self._columns:
            missing = [c for c in self._columns if c not in frame.columns]
            if missing:
                raise ValueError(f"X lacks columns seen at fit: {missing}.")
            frame = frame[self._columns]
        return frame, source

    def _encode_groups(self, frame, groups, reset):
        """Integer cluster codes; at transform, unseen clusters get codes >= J."""
        if groups is None and not reset and self._groups_column is not None:
            groups = self._groups_column
        if groups is None:
            if reset:
                self.cluster_labels_ = None
            elif getattr(self, "cluster_labels_", None) is not None:
                raise ValueError("The imputer was fitted with groups; pass groups to transform as well.")
            return None, None, None
        codes, labels, groups_column = cluster_codes(frame, groups)
        if reset:
            self.cluster_labels_ = pd.Index(labels, name=None)
            return codes, self.cluster_labels_, groups_column
        # new data: clusters seen at fit keep their codes, unseen ones get codes >= J
        values = np.asarray(labels)[codes]
        index = self.cluster_labels_.get_indexer(values)
        unseen = index < 0
        if unseen.all() and len(values) and _label_kind(values) != _label_kind(self.cluster_labels_):
            warnings.warn(
                f"No cluster of the new data was seen at fit, and their labels are {_label_kind(values)} where "
                f"the fitted ones are {_label_kind(self.cluster_labels_)} (e.g. {values[0]!r} vs "
                f"{self.cluster_labels_[0]!r}): every cluster is treated as new. Convert the labels if they "
                "name the same clusters.",
                UserWarning,
                stacklevel=4,
            )
        if unseen.any():
            _, new = pd.factorize(values[unseen])
            index[unseen] = len(self.cluster_labels_) + pd.Index(new).get_indexer(values[unseen])
        return index.astype(np.intp), self.cluster_labels_, groups_column

    def _check_methods(self):
        """Every column ``methods``, ``bounds`` or ``post`` names must exist and be imputable as asked."""
        for option in ("bounds", "post"):
            if self._groups_column is not None and self._groups_column in (getattr(self, option) or {}):
                raise ValueError(f"{option} names the cluster column {self._groups_column!r}, which is never imputed.")
        for name in self.bounds or {}:
            codec = self._codecs[self._columns.index(name)] if name in self._columns else None
            if codec is not None and codec.categories is not None and not codec.numeric_levels:
                raise ValueError(
                    f"bounds names {name!r}, a {codec.kind} column: bounds apply to numbers, not categories."
                )
        if isinstance(self.methods, str):
            _as_model(self.methods, "methods")
        if not isinstance(self.methods, dict):
            return
        unknown = [name for name in self.methods if name not in self._columns]
        if unknown:
            raise ValueError(f"methods names {unknown}, which are not columns of X; columns: {self._columns}.")
        if self._groups_column is not None and self._groups_column in self.methods:
            raise ValueError(f"methods names the cluster column {self._groups_column!r}, which is never imputed.")
        for name, model in self.methods.items():  # complete columns too: new data may need their model
            model = _as_model(model, f"methods[{name!r}]")
            kind = self._codecs[self._columns.index(name)].kind
            if isinstance(model, BaseConditionalImputer) and kind not in model.target_kinds:
                raise ValueError(
                    f"{type(model).__name__} cannot impute {name!r}, a {kind} column; models that can: "
                    f"{', '.join(models_for_kind(kind))}."
                )

    def _detect_codecs(self, frame) -> list[ColumnCodec]:
        kinds = dict(self.column_kinds or {})
        unknown = [k for k in kinds if k not in frame.columns]
        if unknown:
            raise ValueError(f"column_kinds names unknown columns: {unknown}.")
        return [detect_codec(frame[name], name, kinds.get(name)) for name in frame.columns]

    def _encode(self, frame) -> np.ndarray:
        W = np.empty(frame.shape, dtype=float)
        for j, (name, codec) in enumerate(zip(frame.columns, self._codecs, strict=True)):
            if name == self._groups_column:
                W[:, j] = 0.0  # never read: the clusters travel as codes
            else:
                W[:, j] = codec.encode(frame[name])
        return W

    def _record_observed_categories(self, W, missing):
        """Each binary/categorical codec learns which of its categories the data hold (new data may hold no other)."""
        for j, codec in enumerate(self._codecs):
            # a derived column may start entirely missing: its values come from its inputs, not from a model
            if codec.categories is not None and self._columns[j] != self._groups_column and not missing[:, j].all():
                self._codecs[j] = replace(codec, observed_codes=np.unique(W[~missing[:, j], j]))

    def _category_levels(self, W, missing, ignore, targets, derived_cols) -> dict[int, np.ndarray]:
        """Codes of the categories each binary/categorical column holds in its fitting rows.

        Only these are modelled: a target's model sees them as ``0..K_obs-1`` and a predictor
        gets their dummies. Decisions the models cannot log (one category observed; categories
        observed only in ignored rows) go to ``logged_events_`` once, as iteration 0. Derived
        columns are computed, not imputed: any of their declared categories may occur.
        """
        levels, self._plan_events = {}, []
        for j, codec in enumerate(self._codecs):
            if codec.categories is None or self._columns[j] == self._groups_column or j in derived_cols:
                continue
            levels[j] = np.unique(W[~missing[:, j] & ~ignore, j]).astype(np.intp)
            name = self._columns[j]
            ignored_only = np.setdiff1d(codec.observed_codes, levels[j])
            if ignored_only.size:
                reason = (
                    f"categories {codec.observed_categories(ignored_only)} are observed only in ignored rows: no "
                    "imputation model learns them, so they are never imputed, and as a predictor they count as the "
                    "reference category"
                )
                self._plan_events.append((name, reason))
            if j in targets and levels[j].size == 1:
                label = codec.observed_categories(levels[j])[0]
                reason = f"one category observed ({label!r}): every imputation is {label!r}, no model is fitted"
                self._plan_events.append((name, reason))
        return levels

    def _check_data(self, frame, W, missing):
        derived = set(self.derived or ())  # computed from their inputs: may start empty
        for j, name in enumerate(self._columns):
            if name != self._groups_column and name not in derived and missing[:, j].all():
                raise ValueError(
                    f"Column {name!r} is entirely missing: nothing to learn its distribution from. "
                    "Drop it, or give it observed values."
                )

    def _resolve_visit_sequence(self, missing, derived_cols=frozenset()) -> list[int]:
        incomplete = [j for j in range(len(self._columns)) if missing[:, j].any()]
        seq = self.visit_sequence
        if isinstance(seq, str):
            if seq == "monotone":
                return sorted(incomplete, key=lambda j: (missing[:, j].sum(), j))
            if seq == "reverse-monotone":
                return sorted(incomplete, key=lambda j: (-missing[:, j].sum(), j))
            return incomplete
        order = []
        for name in seq:
            if name not in self._columns:
                raise ValueError(f"visit_sequence names {name!r}, which is not a column of X.")
            if name == self._groups_column:
                raise ValueError(f"visit_sequence names the cluster column {name!r}, which is never imputed.")
            if self._columns.index(name) in derived_cols:
                raise ValueError(f"visit_sequence names the derived column {name!r}, which is computed, not imputed.")
            order.append(self._columns.index(name))
        absent = [self._columns[j] for j in incomplete if j not in order]
        if absent:
            raise ValueError(f"visit_sequence leaves out incomplete columns {absent}.")
        return order

    def _model_for(self, name, codec, multilevel, cluster_level):
        methods = self.methods
        if isinstance(methods, BaseConditionalImputer | str):
            model = _as_model(methods, "methods")
        elif isinstance(methods, dict) and name in methods:
            model = _as_model(methods[name], f"methods[{name!r}]")
            if not isinstance(model, BaseConditionalImputer):
                raise TypeError(
                    f"methods[{name!r}] is {type(model).__name__}; expected a conditional model such as "
                    "RandomEffectsNormal(), or its name: a class name ('RandomEffectsPMM') or R's ('2l.pan')."
                )
        else:
            model = self._recommended.get(name) or default_model(
                codec.kind, multilevel, "partial" if cluster_level == "partial" else bool(cluster_level)
            )
        if codec.kind not in model.target_kinds:
            raise ValueError(
                f"{type(model).__name__} cannot impute {name!r}, a {codec.kind} column; models that can: "
                f"{', '.join(models_for_kind(codec.kind))}."
            )
        model = clone(model)
        model._validate_params()
        return model

    def _recommend(self, frame, codes, missing) -> dict:
        """Default models of the incomplete columns with clusters: :func:`recommend_methods`.

        It tells sporadic from systematic missingness and cluster-level variables, and
        picks random-effects, two-stage or cluster-level models accordingly.
        """
        if codes is None or isinstance(self.methods, BaseConditionalImputer | str):
            return {}
        given = self.methods or {}
        columns = [c for j, c in enumerate(self._columns) if missing[:, j].any() and c not in given]
        if not columns:
            return {}
        from .recommend import recommend_methods

        kinds = {codec.name: codec.kind for codec in self._codecs if codec.name != self._groups_column}
        table = recommend_methods(frame[columns], codes, column_kinds={c: kinds[c] for c in columns})
        return dict(zip(table["column"], table["method"], strict=True))

    def _default_codes(self, cluster_constant) -> np.ndarray:
        """Default role codes with clusters: level-1 predictors of level-1 targets with their cluster means.

        In a random-intercept model a predictor without its cluster mean must have the same
        within- and between-cluster slope; where they differ (a contextual effect, or a
        predictor whose cluster-level part relates differently to the target), the
        imputations distort the between-cluster relations and the variance components
        (Enders, Mistler & Keller 2016; Grund, Lüdtke & Robitzsch 2018). Code 3 adds the
        cluster mean, so both slopes are free; variables constant within clusters (level 2)
        stay 1, their mean being themselves. Models whose ``default_cluster_means`` is False get
        1 (see :meth:`_make_target`); entries the user sets are kept as given.
        """
        p = len(self._columns)
        level1 = np.array([j in cluster_constant and not cluster_constant[j] for j in range(p)])
        codes = 1 - np.eye(p, dtype=int)
        codes[np.ix_(level1, level1)] *= 3
        if self._groups_column is not None:
            g = self._columns.index(self._groups_column)
            codes[:, g] = -2
            codes[g, :] = 0
        return codes

    def _make_target(self, j, matrix, codes, multilevel, cluster_constant):
        name, codec = self._columns[j], self._codecs[j]
        model = self._model_for(name, codec, multilevel, cluster_constant.get(j, False))
        row = matrix.iloc[j].to_numpy()  # by position: names may be tuples, which .loc would read as (row, column)
        if self._groups_column is not None:
            cluster_role = int(row[self._columns.index(self._groups_column)])
        else:
            cluster_role = -2 if codes is not None else 0
        if model.requires_groups and cluster_role != -2:
            raise ValueError(
                f"{type(model).__name__} for {name!r} needs the cluster column coded -2 "
                f"(it is {cluster_role}{' and no groups were given' if codes is None else ''})."
            )
        if cluster_role == 1 and not model.supports_fixed_clusters:
            raise ValueError(
                f"The cluster column is coded 1 (cluster fixed effects) for {name!r}, which "
                f"{type(model).__name__} cannot absorb; models that can: "
                f"{', '.join(c.__name__ for c in _fixed_cluster_models())}."
            )
        if cluster_role == -2 and not (model.requires_groups or model.uses_groups_if_given):
            cluster_role = 0
            self._warn_ignored.append(name)
        predictors, lowered = [], []
        for k, pred_name in enumerate(self._columns):
            role = int(row[k])
            if role == 0 or pred_name == self._groups_column:
                continue
            if role == 3 and not self._given_codes[j, k] and not model.default_cluster_means:
                role = 1  # a default cluster mean this model does not take (see BaseConditionalImputer)
                lowered.append(k)
            if role not in model.accepted_roles and role != 1:
                raise ValueError(
                    f"{type(model).__name__} cannot honour role code {role} ({ROLE_NAMES[role]}) given to "
                    f"predictor {pred_name!r} of {name!r}; models that can: {', '.join(models_accepting(role))}."
                )
            pcodec = self._codecs[k]
            levels = self._levels.get(k)
            predictors.append(_Predictor(k, role, pcodec.kind, pcodec.n_categories, str(pred_name), levels))
        if lowered:  # one assignment per target: one per cell costs a pandas call each, p^2 for p targets
            self.predictor_matrix_.iloc[j, lowered] = 1
        self._afford_cluster_means(j, predictors, cluster_constant)
        return _Target(
            column=j,
            name=str(name),
            kind=codec.kind,
            n_categories=codec.n_categories,
            ordered=codec.ordered,
            model=model,
            predictors=predictors,
            cluster_role=cluster_role,
            levels=self._levels.get(j),
        )

    def _afford_cluster_means(self, j, predictors, cluster_constant) -> None:
        """Leave out the default cluster means where too few clusters observe the target to estimate them.

        Cluster means, like level-2 predictors, are estimated from the clusters in which the
        target is observed: with fewer than ``_CLUSTERS_PER_TERM`` such clusters per
        cluster-level term (intercept, level-2 predictors, means; a categorical predictor
        counts one term per dummy) their coefficients are barely determined, and their
        posterior draws throw the imputations of clusters without observed values far out
        (obesity: 4 clusters observe Weight, 5 terms; a fifth cluster's imputed mean weight
        ranged from -134 to 150 kg). Such a target keeps mice's codes (1), logged once;
        means the user asked for are kept.
        """
        defaulted = [p for p in predictors if p.role == 3 and not self._given_codes[j, p.column]]
        if not defaulted:
            return

        def width(p):  # columns of the design: one per dummy of a categorical predictor
            return max(len(p.levels) - 1, 1) if p.kind == "categorical" and p.levels is not None else 1

        terms = 1 + sum(width(p) for p in predictors if p.role in (3, 4) or cluster_constant.get(p.column))
        observed = self._observed_clusters.get(j, self._n_clusters)
        if observed >= _CLUSTERS_PER_TERM * terms:
            return
        for p in defaulted:
            p.role = 1
        self.predictor_matrix_.iloc[j, [p.column for p in defaulted]] = 1
        self._plan_events.append(
            (
                self._columns[j],
                (
                    f"cluster means of {[p.name for p in defaulted]} left out of the default model: "
                    f"{observed} cluster(s) observe it for {terms} cluster-level terms (at least "
                    f"{_CLUSTERS_PER_TERM} per term are needed); "
                    "code them 3 in predictor_matrix to keep them"
                ),
            )
        )

    def _limit_predictors(self, target, W, fit_rows, usable_rows, codes, cluster_level) -> str | None:
        """Reduce the default predictors of a target its rows cannot support, by quickpred's rule.

        When the model's predictor columns (dummies and cluster means included) exceed a third
        of the rows observing the target (of the clusters observing it, for a cluster-level
        target; of the rows less one per cluster, for cluster fixed effects), the predictors
        the user did not set in ``predictor_matrix`` are kept only where their correlation with
        the target or with its missingness exceeds 0.1, strongest first, within that budget
        (:func:`~skmlmi.predictors.limit_predictors`). Returns the event to log, or None when
        nothing is too many.
        """
        predictors = target.predictors
        n_rows = int(fit_rows.sum())
        fixed = target.cluster_role == 1 and not cluster_level
        n_clusters = int(np.unique(codes[fit_rows]).size) if codes is not None and (cluster_level or fixed) else 0
        n_units = n_clusters if cluster_level else n_rows - n_clusters

        def width(p):  # columns of the design, as _design builds them
            categories = p.n_categories if p.levels is None else len(p.levels)
            dummies = max(categories - 1, 0) if p.kind == "categorical" else 1
            return dummies * (2 if p.role in (3, 4) else 1)

        widths = np.array([width(p) for p in predictors], dtype=int)
        if widths.sum() * ROWS_PER_PREDICTOR <= n_units:
            return None
        j, columns = target.column, [p.column for p in predictors]
        given = self._given_codes[j, columns]
        keep, _, budget = limit_predictors(W[:, j], fit_rows, usable_rows, W[:, columns], widths, given, n_units)
        units = f"{n_units} clusters observing it" if cluster_level else f"{n_rows} rows observing it"
        if fixed:
            units += f" less its {n_clusters} cluster fixed effects"
        if keep.all():
            return (
                f"{widths.sum()} predictor columns for {units} (more than a third): kept as set in "
                "predictor_matrix; quickpred() suggests a smaller set"
            )
        kept = [p for p, k in zip(predictors, keep, strict=True) if k]
        target.predictors = kept
        self.predictor_matrix_.iloc[j, [c for c, k in zip(columns, keep, strict=True) if not k]] = 0
        names = [p.name for p in kept]
        return (
            f"{len(kept)} of {len(predictors)} predictors kept by quickpred's rule "
            f"({names[:10]}{' ...' if len(names) > 10 else ''}): their {widths.sum()} columns outnumbered a third "
            f"of the {units} ({budget}), so only those whose absolute correlation with it or with its "
            f"missingness exceeds 0.1 are used, strongest first, up to {budget} columns"
            f"{' (those set in predictor_matrix are kept as given)' if given.any() else ''}; "
            "set its row of predictor_matrix to choose them"
        )

    def _check_where(self, where, missing, frame):
        """Cells to impute: the missing ones, or a user mask (observed cells = over-imputation)."""
        if where is None:
            return missing
        if isinstance(where, pd.DataFrame):
            unknown = [c for c in where.columns if c not in self._columns]
            if unknown:
                raise ValueError(f"where names unknown columns {unknown}.")
            where = where.reindex(columns=self._columns, fill_value=False).to_numpy()
        where = np.asarray(where)
        if where.shape != missing.shape or where.dtype != bool:
            raise ValueError(f"where must be a boolean mask of shape {missing.shape}; got {where.dtype} {where.shape}.")
        if self._groups_column is not None and where[:, self._columns.index(self._groups_column)].any():
            raise ValueError(
                f"where marks cells of the cluster column {self._groups_column!r}, which is never imputed."
            )
        return where.copy()

    def _check_ignore(self, ignore, n):
        if ignore is None:
            return np.zeros(n, dtype=bool)
        ignore = np.asarray(ignore)
        if ignore.shape != (n,) or ignore.dtype != bool:
            raise ValueError(f"ignore must be a boolean array of length {n}; got {ignore.dtype} {ignore.shape}.")
        return ignore.copy()

    def _make_plan(self, W, missing, where, ignore, codes, labels) -> _Plan:
        derived = parse_derived(self.derived, self._columns, self._groups_column)
        derived_cols = {d.column for d in derived}
        multilevel = codes is not None
        n_clusters = len(labels) if multilevel else 0
        cluster_constant = {}
        if multilevel:
            for j in range(W.shape[1]):
                if self._columns[j] != self._groups_column:
                    cluster_constant[j] = _constant_within_clusters(W[:, j], codes, n_clusters, missing[:, j])
        defaults = self._default_codes(cluster_constant) if multilevel and self.cluster_means else None
        matrix, self._given_codes = validate_predictor_matrix(
            self.predictor_matrix, self._columns, self._groups_column, defaults, return_given=True
        )
        self.predictor_matrix_ = matrix
        self._warn_ignored = []
        to_impute = where.copy()
        to_impute[:, sorted(derived_cols)] = False
        visit = self._resolve_visit_sequence(to_impute, derived_cols)
        self._levels = self._category_levels(W, missing, ignore, set(visit), derived_cols)
        self._n_clusters = n_clusters
        self._observed_clusters = (
            {  # clusters holding a fitting row of each target (a loop over columns)
                j: int(np.count_nonzero(np.bincount(codes[~missing[:, j] & ~ignore], minlength=n_clusters)))
                for j in set(visit)
            }
            if multilevel
            else {}
        )
        self.visit_sequence_ = [self._columns[j] for j in visit]
        targets, made = [], {}
        for j in visit:
            if j not in made:
                made[j] = self._make_target(j, matrix, codes, multilevel, cluster_constant)
                level2 = bool(cluster_constant.get(j))
                reason = self._limit_predictors(made[j], W, ~missing[:, j] & ~ignore, ~ignore, codes, level2)
                if reason:
                    self._plan_events.append((self._columns[j], reason))
            targets.append(made[j])
        complete = [
            j
            for j in range(W.shape[1])
            if j not in made and j not in derived_cols and self._columns[j] != self._groups_column
        ]
        self._cluster_constant = cluster_constant  # for the complete columns' models, made on demand
        self._auxiliary_targets = {}
        for name in dict.fromkeys(self._warn_ignored):
            if name in self.visit_sequence_:
                warnings.warn(
                    f"The imputation model of {name!r} is single-level: it ignores the clustering "
                    "(cluster column coded -2). Use a random-effects model, or code the cluster column 1 "
                    "for cluster fixed effects.",
                    UserWarning,
                    stacklevel=4,
                )
        self._warn_circular(derived, made)
        incomplete = list(dict.fromkeys(visit))
        self.methods_ = {self._columns[j]: made[j].model for j in incomplete}
        fit_rows = {j: ~missing[:, j] & ~ignore for j in range(W.shape[1])}
        impute_rows = {j: np.flatnonzero(to_impute[:, j]) for j in range(W.shape[1])}
        for d in derived:
            inputs = sorted(d.depends_on) if d.depends_on else [j for j in range(W.shape[1]) if j != d.column]
            affected = missing[:, d.column] | missing[:, inputs].any(axis=1)
            impute_rows[d.column] = np.flatnonzero(affected)
            if affected.any():
                incomplete.append(d.column)
        write_rows = {j: missing[impute_rows[j], j] | (j in derived_cols) for j in range(W.shape[1])}
        partial = bool((missing & ~where).any())
        return _Plan(
            targets,
            complete,
            codes,
            n_clusters,
            labels,
            self._columns,
            fit_rows,
            impute_rows,
            write_rows,
            incomplete,
            derived,
            parse_bounds(self.bounds, self._columns),
            parse_post(self.post, self._columns),
            partial,
            ~ignore if ignore.any() else None,
        )

    def _warn_circular(self, derived, made):
        """A derived column that predicts one of its own inputs feeds back on itself."""
        for d in derived:
            for j, target in made.items():
                if (not d.depends_on or j in d.depends_on) and any(p.column == d.column for p in target.predictors):
                    warnings.warn(
                        f"Derived column {d.name!r} predicts {target.name!r}, one of its own inputs: the imputation "
                        f"model of {target.name!r} is circular. Set predictor_matrix[{target.name!r}, {d.name!r}] "
                        "to 0.",
                        UserWarning,
                        stacklevel=5,
                    )

    def _check_fittable(self, W, plan):
        for target in dict.fromkeys(t.column for t in plan.targets):
            if not plan.fit_rows[target].any():
                raise ValueError(f"Column {self._columns[target]!r} has no observed, non-ignored values to fit.")

    def _store_results(self, plan, results):
        names = [self._columns[j] for j in plan.incomplete]
        self.incomplete_columns_ = names
        self.chain_mean_ = np.stack([r.chain_mean for r in results])
        self.chain_var_ = np.stack([r.chain_var for r in results])
        self.imputations_ = {
            self._columns[col]: np.column_stack([r.values[col] for r in results])
            if plan.impute_rows[col].size
            else np.empty((0, len(results)))
            for col in plan.incomplete
        }
        self.final_draws_ = [r.draws for r in results]
        self._auxiliary_draws = [{} for _ in results]  # filled on demand by transform
        self._chain_results = results
        rows = [(0, 0, column, reason) for column, reason in self._plan_events]  # decided before the chains ran
        rows += [ev for r in results for ev in r.events]
        self.logged_events_ = pd.DataFrame(rows, columns=["iteration", "chain", "column", "reason"])
        distinct = list(dict.fromkeys((ev[2], ev[3]) for ev in rows))  # once per distinct event ...
        for column, reason in distinct[:_MAX_EVENT_WARNINGS]:
            warnings.warn(f"{column}: {reason} (see logged_events_)", UserWarning, stacklevel=4)
        if len(distinct) > _MAX_EVENT_WARNINGS:  # ... and wide data's thousands summarised in one
            columns = len({column for column, _ in distinct[_MAX_EVENT_WARNINGS:]})
            warnings.warn(
                f"{len(distinct) - _MAX_EVENT_WARNINGS} more events for {columns} column(s) (see logged_events_)",
                UserWarning,
                stacklevel=4,
            )
        self.n_iter_ = self.max_iter

    # ------------------------------------------------------------------ output
    def _completed(self, frame, chain, source, results=None):
        """Chain ``chain``'s completed training data in the input's format (``results``: the fitted chains')."""
        results = self._chain_results if results is None else results
        W = self._W.copy()
        written = np.zeros(W.shape, dtype=bool)
        for col in self._plan.incomplete:
            W[self._plan.impute_rows[col], col] = results[chain].values[col]
            written[self._plan.impute_rows[col], col] = True
        return self._output(W, frame, source, changed=self._plan.incomplete, written=written)

    def _output(self, W, frame, source, changed=None, written=None):
        """``W`` in the input's format; ``changed`` lists the columns that may differ from ``frame``
        (default: those with missing values), ``written`` marks the cells imputed or recomputed
        (default: the missing ones). The other cells of a DataFrame keep the caller's values
        exactly: the float working copy would round integers beyond 2**53. The result goes out
        in the caller's container, or the one ``set_output`` asks for (:func:`skmlmi._frame.to_output`)."""
        if not self._is_frame:
            out = W
            if self._groups_column is not None and not self.keep_groups:
                out = np.delete(out, self._columns.index(self._groups_column), axis=1)
            return to_output(out, source, self)
        out = frame.copy()
        if changed is None:
            changed = [
                j for j, name in enumerate(self._columns) if name != self._groups_column and frame[name].isna().any()
            ]
        for j in changed:
            name = self._columns[j]
            decoded = self._codecs[j].decode(W[:, j], index=frame.index)
            keep = np.flatnonzero(~(written[:, j] if written is not None else frame[name].isna().to_numpy()))
            if keep.size:
                try:
                    decoded.iloc[keep] = frame[name].iloc[keep].to_numpy()
                except (TypeError, ValueError):  # an observed value the fitted dtype cannot hold: as decoded
                    pass
            out[name] = decoded
        if self._groups_column is not None and not self.keep_groups:
            out = out.drop(columns=[self._groups_column])
        return to_output(out, source, self)

    def _transform_chain(self, X, groups, chain):
        check_is_fitted(self, "final_draws_")
        frame, source = self._as_frame(X, reset=False)
        groups = positional_labels(groups, source)
        codes, _, _ = self._encode_groups(frame, groups, reset=False)
        W = self._encode(frame)
        missing = np.isnan(W)
        if self._groups_column is not None:
            missing[:, self._columns.index(self._groups_column)] = False
        if not missing.any():
            return self._output(W, frame, source)
        plan = self._plan
        cells = missing.copy()
        self._fill_known_cluster_values(W, missing, codes, chain)
        rng = np.random.Generator(
            np.random.PCG64(np.random.SeedSequence(self._entropy, spawn_key=(_TRANSFORM_STREAM, chain)))
        )
        visits = [(t, d) for t, d in zip(plan.targets, self.final_draws_[chain], strict=True)]
        for j in plan.auxiliary:
            target = self._auxiliary_target(j) if missing[:, j].any() else None
            if target is not None:
                visits.append((target, self._auxiliary_draw(chain, target)))
        derived = {d.column for d in plan.derived}
        missing[:, sorted(derived)] = False  # computed, never imputed
        visits = [(t, d) for t, d in visits if missing[:, t.column].any()]
        covered = {t.column for t, d in visits if d is not None}
        lacking = [self._columns[j] for j in np.flatnonzero(missing.any(axis=0)) if j not in covered]
        if lacking:
            raise ValueError(
                f"Columns {lacking} have missing values but no imputation model could be fitted for "
                "them (they were complete at fit; see logged_events_)."
            )
        for t, _ in visits:
            rows = missing[:, t.column]
            pool = self._observed_pool[t.column]
            W[rows, t.column] = pool[rng.integers(0, len(pool), size=int(rows.sum()))]
        n_clusters = max(int(codes.max()) + 1, self._plan.n_clusters) if codes is not None else 0
        self._check_fixed_cluster_rows(visits, missing, codes, frame, groups)
        new_plan = self._new_data_plan(cells, codes, n_clusters)
        passes = 1 if missing.sum(axis=1).max() <= 1 else self.transform_iter

        def log(name, reasons):
            for reason in reasons:
                warnings.warn(f"{name}: {reason}", UserWarning, stacklevel=4)

        whereabouts = _Whereabouts(chain, "transform with its final draws")
        try:
            _recompute_derived(W, new_plan, None)
            with _one_blas_thread():
                for _ in range(passes):
                    for target, draw in visits:
                        whereabouts.target = target
                        rows = np.flatnonzero(missing[:, target.column])
                        X, _, _ = _design(W, target, codes, n_clusters)
                        g = codes if target.cluster_role != 0 else None
                        W[rows, target.column] = _sample(draw, X, g, rows, target, new_plan, rng, log)
                        _recompute_derived(W, new_plan, target.column)
        except Exception as error:
            raise in_context(error, str(whereabouts)) from error
        changed = set(np.flatnonzero(cells.any(axis=0)).tolist())
        written = cells.copy()
        for d in plan.derived:
            if new_plan.impute_rows[d.column].size:
                changed.add(d.column)
                written[new_plan.impute_rows[d.column], d.column] = True
        return self._output(W, frame, source, changed=sorted(changed), written=written)

    def _fill_known_cluster_values(self, W, missing, codes, chain):
        """Missing cells of a cluster-level column in a cluster seen at fit take its value there.

        A cluster-level variable (constant within clusters at fit) has one value per
        cluster: observed, or imputed by this chain. New rows of a seen cluster reuse it
        rather than drawing a second, different value for the same cluster.
        """
        if codes is None:
            return
        seen = codes < self._plan.n_clusters
        for j, constant in self._cluster_constant.items():
            rows = missing[:, j] & seen
            if not constant or not rows.any():
                continue
            fitted = self._W[:, j].copy()
            if j in self._chain_results[chain].values:
                at, write = self._plan.impute_rows[j], self._plan.write_rows[j]
                fitted[at[write]] = self._chain_results[chain].values[j][write]
            per_cluster = np.full(self._plan.n_clusters, np.nan)
            per_cluster[self._plan.groups] = fitted
            W[rows, j] = per_cluster[codes[rows]]
            missing[rows, j] = np.isnan(W[rows, j])

    def _check_fixed_cluster_rows(self, visits, missing, codes, frame, groups):
        """Cluster fixed effects exist only for clusters seen at fit: name the others."""
        for target, _ in visits:
            if target.cluster_role != 1:
                continue
            rows = missing[:, target.column] & (codes >= self._plan.n_clusters)
            if rows.any():
                labels = (
                    frame[self._groups_column] if self._groups_column is not None else pd.Series(np.asarray(groups))
                )
                unseen = sorted(map(str, pd.unique(labels.to_numpy()[rows])))
                raise ValueError(
                    f"{target.name!r} is imputed with cluster fixed effects (cluster column coded 1), which "
                    f"exist only for clusters seen at fit; clusters {unseen[:10]} are new. Use a random-effects "
                    "model such as RandomEffectsNormal or RandomEffectsPMM (cluster column coded -2)."
                )

    def _auxiliary_target(self, j):
        """The imputation model of column ``j``, complete at fit (None if it cannot have one)."""
        if j not in self._auxiliary_targets:
            try:
                self._auxiliary_targets[j] = target = self._make_target(
                    j, self.predictor_matrix_, self._plan.groups, self._plan.groups is not None, self._cluster_constant
                )
            except ValueError:
                self._auxiliary_targets[j] = None  # transform then names the column it cannot impute
            else:
                rows, level2 = self._plan.fit_rows[j], bool(self._cluster_constant.get(j))
                reason = self._limit_predictors(target, self._W, rows, rows, self._plan.groups, level2)
                if reason:
                    warnings.warn(f"{target.name}: {reason}", UserWarning, stacklevel=5)
        return self._auxiliary_targets[j]

    def _auxiliary_draw(self, chain, target):
        """Draw, from chain ``chain``'s final data, the model of a column complete at fit.

        Only new data with this column missing need it, so it is made on demand (and kept):
        from the chain's final completed data and a random stream of its own, so the
        result does not depend on when or in which order it is asked for.
        """
        cache = self._auxiliary_draws[chain]
        if target.column not in cache:
            events = []

            def log(name, reasons):
                events.extend(reasons)

            try:
                draw, _ = _visit(
                    self._chain_data(chain),
                    target,
                    self._plan,
                    _auxiliary_rng(self._entropy, chain, target.column),
                    None,
                    log,
                    draw_only=True,
                )
            except (ValueError, np.linalg.LinAlgError) as exc:
                raise ValueError(
                    f"Column {target.name!r} was complete at fit and has missing values now, but its "
                    f"imputation model cannot be fitted: {exc}"
                ) from exc
            for reason in dict.fromkeys(events):
                warnings.warn(f"{target.name}: {reason}", UserWarning, stacklevel=4)
            cache[target.column] = draw
        return cache[target.column]

    def _new_data_plan(self, missing, codes, n_clusters):
        """The fitted plan's post-processing, with the rows of new data."""
        plan = self._plan
        impute_rows = {j: np.flatnonzero(missing[:, j]) for j in range(missing.shape[1])}
        for d in plan.derived:
            inputs = sorted(d.depends_on) if d.depends_on else [j for j in range(missing.shape[1]) if j != d.column]
            impute_rows[d.column] = np.flatnonzero(missing[:, d.column] | missing[:, inputs].any(axis=1))
        return _Plan(
            plan.targets,
            plan.auxiliary,
            codes,
            n_clusters,
            plan.cluster_labels,
            plan.names,
            {},
            impute_rows,
            {},
            [],
            plan.derived,
            plan.bounds,
            plan.post,
        )


def _label_kind(labels) -> str:
    """``"numbers"`` or ``"text"``: what a set of cluster labels holds, for the mismatch warning."""
    return "numbers" if pd.api.types.is_numeric_dtype(pd.Index(labels)) else "text"


def _constant_within_clusters(values, groups, n_clusters, missing):
    """False, or ("whole" | "partial") for a column constant within every cluster.

    "partial": some cluster has both observed and missing cells of the column.
    """
    if not is_cluster_constant(values, groups):
        return False
    n_missing = np.bincount(groups[missing], minlength=n_clusters)
    n_rows = np.bincount(groups, minlength=n_clusters)
    return "partial" if ((n_missing > 0) & (n_missing < n_rows)).any() else "whole"


def _fixed_cluster_models():
    return [c for c in find_models() if c.supports_fixed_clusters]


def _as_model(spec, where: str):
    """A conditional model given as an instance, or by name (class or R method name) resolved now, at fit."""
    if not isinstance(spec, str):
        return spec
    try:
        return make_model(spec)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
