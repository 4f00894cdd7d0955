"""The sampler: chains, visits, initialisation and seed streams, as functions of a :class:`~skmlmi._plan.Plan`.

One chain (:func:`run_chain`) starts from draws of each column's observed values (mice's
initialisation) and then, in every iteration, visits the targets in the plan's order: the
target's design is assembled from the current completed data (:func:`~skmlmi._plan.design`),
its conditional model draws its parameters from the fitting rows, and the draw imputes the
cells to impute, followed by bounds, ``post`` and the derived columns (:func:`visit`). Chains
are independent: chain c draws from ``SeedSequence(entropy).spawn(m)[c]``; new data and the
models of columns complete at fit have streams of their own (:func:`transform_generator`,
:func:`auxiliary_generator`), so results do not depend on ``n_jobs``, the joblib backend or
the order in which things are asked for. :func:`impute_new_data` is ``transform``: a pure
function of the fitted chains and the new data.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass, field, replace

import numpy as np

from ._clusters import Clusters
from ._compatible import CompatibleDraw, compatible_values, sample_compatible
from ._errors import in_context
from ._passive import apply_bounds
from ._plan import ClusterMeanCache, Plan, Target, design
from ._threads import one_blas_thread as _one_blas_thread
from ._warnings import warn_user, with_column
from .conditional.base import Draw, DrawContext

__all__ = [
    "ChainFailure",
    "ChainResult",
    "FittedChains",
    "NonFiniteImputationError",
    "chain_generators",
    "impute_new_data",
    "run_chain",
]

_TRANSFORM_STREAM = 0x7472616E  # spawn-key namespace of the transform generators ("tran")
_AUXILIARY_STREAM = 0x61757869  # ... and of the final draws for complete columns ("auxi")


# --------------------------------------------------------------------------- seed streams
def chain_generators(entropy: int, m: int) -> list[np.random.Generator]:
    """One generator per chain: ``SeedSequence(entropy).spawn(m)``."""
    return [np.random.Generator(np.random.PCG64(seed)) for seed in np.random.SeedSequence(entropy).spawn(m)]


def transform_generator(entropy: int, chain: int) -> np.random.Generator:
    """Generator of chain ``chain``'s imputation of new data (the same for every call)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy, spawn_key=(_TRANSFORM_STREAM, chain))))


def auxiliary_generator(entropy: int, chain: int, column: int) -> np.random.Generator:
    """Generator of the draw, for new data, of a column that was complete at fit."""
    seed = np.random.SeedSequence(entropy, spawn_key=(_AUXILIARY_STREAM, chain, column))
    return np.random.Generator(np.random.PCG64(seed))


def _labels(plan: Plan):
    return None if plan.clusters is None else plan.clusters.labels


# --------------------------------------------------------------------------- one chain
@dataclass
class ChainResult:
    values: dict[int, np.ndarray]  # column -> imputed values of its impute rows
    chain_mean: np.ndarray  # (n_iter, n_incomplete)
    chain_var: np.ndarray
    draws: list  # final draw of each visit of the visit sequence
    states: list
    events: list = field(default_factory=list)
    rng: np.random.Generator | None = None
    acceptance: dict = field(default_factory=dict)  # column -> [accepted, proposed] Metropolis-Hastings steps


def _finish(values: np.ndarray, target: Target) -> np.ndarray:
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
class Whereabouts:
    """Where a chain is: the context an exception raised there is re-raised with."""

    chain: int
    stage: str = "initialisation"
    target: Target | None = None

    def __str__(self) -> str:
        text = f"chain {self.chain + 1}, {self.stage}"
        if self.target is not None:
            text += f", column {self.target.name!r} ({type(self.target.model).__name__})"
        return text


@dataclass
class ChainFailure:
    """A chain that raised: returned by the worker (not raised) so that the other chains finish and are kept."""

    chain: int
    error: Exception
    where: str
    traceback: str


def _target_labels(plan, target):
    """The cluster labels of the factor a target's model uses (several factors: the first, or a
    cluster-level model's own)."""
    if plan.clusters is not None and plan.clusters.n_factors > 1 and target.factor:
        return plan.clusters.factors[target.factor].labels
    return _labels(plan)


def check_finite(values: np.ndarray, what: str, groups, labels) -> np.ndarray:
    """``values`` if all finite; else a :class:`NonFiniteImputationError` naming ``what`` and the clusters."""
    bad = ~np.isfinite(values)
    if bad.any():
        where = ""
        if groups is not None and labels is not None:
            codes = np.unique(groups[bad] if np.ndim(groups) == 1 else groups[bad, 0])  # several factors: the first
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


def sample_rows(draw, X, groups, rows, target, plan, rng, log):
    """Imputations of ``rows``: the model's draw, then the bounds, then ``post`` (in this order).

    A non-finite value at any stage is an error naming the column and the stage (the chain
    and iteration are added by the caller): NaN would otherwise pass the bounds unnoticed
    and leave the "completed" data incomplete.
    """
    g = None if groups is None else groups[rows]
    model = f"the draw of {type(target.model).__name__} for {target.name!r}"
    labels = _target_labels(plan, target)

    def sample(index=None):
        X_rows = X[rows] if index is None else X[rows[index]]
        g_rows = g if index is None or g is None else g[index]
        return check_finite(_finish(draw.sample(X_rows, g_rows, rng), target), model, g_rows, labels)

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
        check_finite(values, f"post[{target.name!r}]", g, labels)
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


def recompute_derived(W, plan, changed: int | None) -> list[int]:
    """Recompute the derived columns that depend on column ``changed`` (None: all); returns those written."""
    written = []
    for d in plan.derived:
        if changed is None or not d.depends_on or changed in d.depends_on:
            rows = plan.impute_rows[d.column]
            if rows.size:
                values = d.values(W, plan.names, rows)
                W[rows, d.column] = check_finite(values, f"derived[{d.name!r}]", None, None)
                written.append(d.column)
    return written


def visit(W, target, plan, rng, state, log, imputed=None, draw_only=False, means=None):
    """Draw the target's model from the current data and impute its cells.

    ``imputed`` holds the target's imputations of all its ``where`` cells; only the
    missing ones are written into the working data (over-imputed observed cells keep
    their observed value as predictors of the other variables, as in mice). ``means``: the
    chain's :class:`~skmlmi._plan.ClusterMeanCache`, told of every column written.
    """
    X, roles, names, slopes_by = design(W, target, plan.clusters, means)
    model_groups = plan.model_groups(target)
    n_factors = np.shape(model_groups)[1] if np.ndim(model_groups) == 2 else 0  # several factors: their codes
    context = DrawContext(
        target=str(target.name),
        kind=target.kind,
        n_categories=target.n_categories,
        ordered=target.ordered,
        n_clusters=_n_clusters(plan.clusters, target) if model_groups is not None else 0,
        factor_counts=plan.clusters.counts[:n_factors] if n_factors else (),
        factor_names=_factor_names(plan.clusters, n_factors),
        predictor_names=tuple(names),
        slope_factors=slopes_by if n_factors and any(f is not None for f in slopes_by) else (),
        cluster_labels=_target_labels(plan, target),
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
        values[keep] = sample_rows(draw, X, model_groups, rows[keep], target, plan, rng, log)
    else:
        values = sample_rows(draw, X, model_groups, rows, target, plan, rng, log)
    _write(W, plan, col, values, imputed, means)
    return draw, state


def _write(W, plan, col, values, imputed, means) -> None:
    """Keep a visit's imputations of the impute rows, write the missing cells, recompute what derives from them."""
    imputed[col] = values
    write = plan.write_rows[col]
    W[plan.impute_rows[col][write], col] = values[write]
    written = [col, *recompute_derived(W, plan, col)]
    if means is not None:
        means.written(written)


def compatible_visit(W, target, plan, rng, state, analysis_state, log, imputed, means, acceptance):
    """A visit of a variable of the analysis model (see :mod:`skmlmi._compatible`); returns its draw and the states."""
    draw, state, analysis_state, values = compatible_values(
        W, target, plan, rng, state, analysis_state, log, means, acceptance
    )
    values = check_finite(_finish(values, target), f"the compatible draw for {target.name!r}", None, None)
    _write(W, plan, target.column, values, imputed, means)
    return draw, state, analysis_state


def _factor_names(clusters: Clusters | None, n_factors: int) -> tuple:
    """The grouping columns of the first ``n_factors`` factors (those a target's model receives), for messages."""
    if not n_factors:  # no clusters, or one factor
        return ()
    return tuple(f.column for f in clusters.factors[:n_factors])  # None: DrawContext.factor_name numbers it


def _n_clusters(clusters: Clusters, target) -> int:
    """The cluster count of the factor a target's model uses (the first when it takes them all)."""
    return clusters.count if target.factor is None else clusters.factors[target.factor].count


def _initialise(W, plan, rng):
    """Fill the cells to impute with draws from the column's observed, non-ignored values."""
    for col in dict.fromkeys(t.column for t in plan.targets):
        rows, write = plan.impute_rows[col], plan.write_rows[col]
        pool = W[plan.fit_rows[col], col]
        W[rows[write], col] = pool[rng.integers(0, len(pool), size=int(write.sum()))]
    recompute_derived(W, plan, None)


def run_chain(
    plan: Plan,
    W: np.ndarray,
    rng: np.random.Generator,
    n_iter: int,
    chain: int,
    start_iter: int = 0,
    states=None,
    verbose: int = 0,
    progress=None,
) -> ChainResult | ChainFailure:
    """Run one chain for ``n_iter`` iterations; an exception is returned with where it happened.

    ``W`` is the incomplete working data (it may be a read-only memory map shared by the
    workers); the chain works on its own copy, whose cells to impute start from draws of
    the column's observed values (mice's initialisation) unless ``states`` holds the
    state of a chain being continued, whose completed data ``W`` then is. ``progress`` (chains run
    in this process) is called after every iteration.
    """
    whereabouts = Whereabouts(chain)
    try:
        return _run_chain_steps(plan, W, rng, n_iter, chain, start_iter, states, verbose, whereabouts, progress)
    except Exception as error:  # returned, not raised: the other chains' work is kept (see _raise_failures)
        return ChainFailure(chain, error, str(whereabouts), traceback.format_exc())


def _run_chain_steps(plan, W, rng, n_iter, chain, start_iter, states, verbose, whereabouts, progress) -> ChainResult:
    """The body of :func:`_run_chain`; ``whereabouts`` follows the stage and the column visited."""
    W = np.array(W, order="F")  # one working copy per chain, column-major (see encode)
    if states is None:
        _initialise(W, plan, rng)
    # one state per visit, and the analysis model's (compatible imputation) last
    states = [None] * (len(plan.targets) + 1) if states is None else list(states)
    draws = [None] * len(plan.targets)
    acceptance: dict = {}
    means = ClusterMeanCache()
    chain_mean = np.full((n_iter, len(plan.incomplete)), np.nan)
    chain_var = np.full((n_iter, len(plan.incomplete)), np.nan)
    imputed = {col: W[plan.impute_rows[col], col].copy() for col in plan.incomplete}
    derived = {d.column for d in plan.derived}
    events: list = []
    iteration = start_iter

    def log(name, reasons):
        events.extend((iteration + 1, chain + 1, name, reason) for reason in reasons)

    with _one_blas_thread():
        for k in range(n_iter):
            iteration = start_iter + k
            whereabouts.stage = f"iteration {iteration + 1}"
            for t, target in enumerate(plan.targets):
                whereabouts.target = target
                if target.compatible:
                    draws[t], states[t], states[-1] = compatible_visit(
                        W, target, plan, rng, states[t], states[-1], log, imputed, means, acceptance
                    )
                else:
                    draws[t], states[t] = visit(W, target, plan, rng, states[t], log, imputed, means=means)
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
            if progress is not None:
                progress(1)
    if verbose and acceptance:
        rates = ", ".join(f"{plan.names[col]!r} {a / max(p, 1):.2f}" for col, (a, p) in acceptance.items())
        print(f"[skmlmi] chain {chain + 1}: Metropolis-Hastings acceptance {rates}", file=sys.stderr, flush=True)
    return ChainResult(imputed, chain_mean, chain_var, draws, states, events, rng, acceptance)


# --------------------------------------------------------------------------- new data
@dataclass(frozen=True)
class FittedChains:
    """What ``fit`` leaves for ``transform``: the plan, the data it was fitted on and each chain's end state."""

    plan: Plan
    W: np.ndarray  # the incomplete working data at fit
    results: list[ChainResult]
    entropy: int
    observed_pool: dict[int, np.ndarray]  # column -> its observed values at fit (initialisation of new data)

    def chain_data(self, chain: int) -> np.ndarray:
        """The working data as chain ``chain`` left it (the observed cells never change)."""
        W = self.W.copy(order="F")
        for col in self.plan.incomplete:
            rows, write = self.plan.impute_rows[col], self.plan.write_rows[col]
            W[rows[write], col] = self.results[chain].values[col][write]
        return W

    def auxiliary_draw(self, chain: int, target: Target) -> Draw:
        """Draw, from chain ``chain``'s final data, the model of a column complete at fit.

        Only new data with this column missing need it, so it is made when asked for: from the
        chain's final completed data and a random stream of its own, so the result does not
        depend on when or in which order it is asked for.
        """
        events = []

        def log(name, reasons):
            events.extend(reasons)

        try:
            rng = auxiliary_generator(self.entropy, chain, target.column)
            draw, _ = visit(self.chain_data(chain), target, self.plan, rng, None, log, draw_only=True)
        except (ValueError, np.linalg.LinAlgError) as exc:
            raise ValueError(
                f"Column {target.name!r} was complete at fit and has missing values now, but its "
                f"imputation model cannot be fitted: {exc}"
            ) from exc
        for reason in dict.fromkeys(events):
            warn_user(with_column(target.name, reason))
        return draw

    def fill_known_cluster_values(self, W, missing, clusters: Clusters | None, chain: int) -> None:
        """Missing cells of a cluster-level column in a cluster seen at fit take its value there.

        A cluster-level variable (constant within clusters at fit) has one value per cluster:
        observed, or imputed by this chain. New rows of a seen cluster reuse it rather than
        drawing a second, different value for the same cluster.
        """
        if clusters is None:
            return
        plan = self.plan
        levels = {j: (0, constant) for j, constant in plan.planner.cluster_constant.items()}
        levels.update(plan.planner.level_of)  # several factors: columns constant within another factor's units
        for j, (k, constant) in levels.items():
            fitted_factor, new_factor = plan.clusters.factors[k], clusters.factors[k]
            rows = missing[:, j] & ~new_factor.unseen
            if not constant or not rows.any():
                continue
            fitted = self.W[:, j].copy()
            if j in self.results[chain].values:
                at, write = plan.impute_rows[j], plan.write_rows[j]
                fitted[at[write]] = self.results[chain].values[j][write]
            per_cluster = np.full(fitted_factor.count, np.nan)
            per_cluster[fitted_factor.codes] = fitted
            W[rows, j] = per_cluster[new_factor.codes[rows]]
            missing[rows, j] = np.isnan(W[rows, j])


def _check_fixed_cluster_rows(visits, missing, clusters: Clusters | None) -> None:
    """Cluster fixed effects exist only for clusters seen at fit: name the others."""
    for target, _ in visits:
        if target.cluster_role != 1:
            continue
        rows = missing[:, target.column] & clusters.unseen
        if rows.any():
            unseen = sorted(map(str, (clusters.label_of(c) for c in np.unique(clusters.codes[rows]))))
            raise ValueError(
                f"{target.name!r} is imputed with cluster fixed effects (cluster column coded 1), which "
                f"exist only for clusters seen at fit; clusters {unseen[:10]} are new. Use a random-effects "
                "model such as RandomEffectsNormal or RandomEffectsPMM (cluster column coded -2)."
            )


def impute_new_data(
    fitted: FittedChains, W: np.ndarray, missing: np.ndarray, clusters: Clusters | None, chain: int, passes: int
) -> tuple[np.ndarray, list[int]]:
    """Impute the missing cells of new data ``W`` (in place) with chain ``chain``'s final draws.

    Cells start from draws of the column's observed values at fit and are then imputed,
    ``passes`` times over the visit sequence when a row has several missing values, by the
    chain's final draws (columns complete at fit get theirs from :meth:`FittedChains.auxiliary_draw`).
    Deterministic: the generator is the chain's transform stream. Returns ``W`` and the mask of
    cells written (imputed, or recomputed derived cells).
    """
    plan = fitted.plan
    cells = missing.copy()
    missing = missing.copy()
    fitted.fill_known_cluster_values(W, missing, clusters, chain)
    rng = transform_generator(fitted.entropy, chain)
    visits = list(zip(plan.targets, fitted.results[chain].draws, strict=True))
    analysis_draw = next((d.analysis for d in fitted.results[chain].draws if isinstance(d, CompatibleDraw)), None)
    for j in plan.auxiliary:
        target = plan.auxiliary_target(j, fitted.W) if missing[:, j].any() else None
        if target is not None and analysis_draw is not None and j == plan.analysis.outcome:
            # an outcome complete at fit: drawn from the analysis model the chain drew last
            visits.append((replace(target, compatible="outcome"), CompatibleDraw(analysis_draw)))
        elif target is not None:
            visits.append((target, fitted.auxiliary_draw(chain, target)))
    derived = {d.column for d in plan.derived}
    missing[:, sorted(derived)] = False  # computed, never imputed
    visits = [(t, d) for t, d in visits if missing[:, t.column].any()]
    covered = {t.column for t, d in visits if d is not None}
    lacking = [plan.names[j] for j in np.flatnonzero(missing.any(axis=0)) if j not in covered]
    if lacking:
        raise ValueError(
            f"Columns {lacking} have missing values but no imputation model could be fitted for "
            "them (they were complete at fit; see logged_events_)."
        )
    for t, _ in visits:
        rows = missing[:, t.column]
        pool = fitted.observed_pool[t.column]
        W[rows, t.column] = pool[rng.integers(0, len(pool), size=int(rows.sum()))]
    _check_fixed_cluster_rows(visits, missing, clusters)
    new_plan = plan.for_new_data(cells, clusters)
    passes = 1 if missing.sum(axis=1).max() <= 1 else passes

    def log(name, reasons):
        for reason in reasons:
            warn_user(with_column(name, reason))

    whereabouts = Whereabouts(chain, "transform with its final draws")
    try:
        recompute_derived(W, new_plan, None)
        with _one_blas_thread():
            for _ in range(passes):
                for target, draw in visits:
                    whereabouts.target = target
                    rows = np.flatnonzero(missing[:, target.column])
                    X = design(W, target, clusters)[0]
                    g = new_plan.model_groups(target)
                    if target.compatible:  # from its full conditional with the stored draws
                        values = sample_compatible(W, X, rows, target, plan.analysis, draw, clusters.codes, rng)
                        W[rows, target.column] = check_finite(_finish(values, target), target.name, None, None)
                    else:
                        W[rows, target.column] = sample_rows(draw, X, g, rows, target, new_plan, rng, log)
                    recompute_derived(W, new_plan, target.column)
    except Exception as error:
        raise in_context(error, str(whereabouts)) from error
    written = cells.copy()
    for d in plan.derived:
        if new_plan.impute_rows[d.column].size:
            written[new_plan.impute_rows[d.column], d.column] = True
    return W, written
