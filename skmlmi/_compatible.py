"""Imputation compatible with the analysis model (substantive-model-compatible chained equations).

Chained equations impute each variable from a conditional model of its own. When the analysis
model has a random slope of an incomplete covariate, an interaction or a non-linear term, no
such conditional model is compatible with it, and the analysis is biased however long the
chains run. Given the analysis model (an lme4-type formula, linear or logistic, one grouping
factor)

    y_ij = f(x_ij)' beta + z(x_ij)' b_j + e_ij,   b_j ~ N(0, Psi),  e_ij ~ N(0, sigma^2)
    (logistic: P(y_ij = 1) = expit(f(x_ij)' beta + z(x_ij)' b_j)),

every incomplete variable of the formula is drawn from its full conditional under the joint
model p(y | x) p(x_k | x_-k) (Bartlett et al. 2015 for single-level data; Goldstein et al. 2014,
Enders, Du & Keller 2020, Grund, Luedtke & Robitzsch 2021 for multilevel data):

    p(x_ij | y, rest)  is proportional to  p(y_ij | x_ij, rest; beta, b_j, sigma^2) p(x_ij | x_-k; covariate model).

A visit of an incomplete covariate x:

1. draws the analysis model's parameters (beta, b_j, Psi, sigma^2) from the completed data
   (:class:`~skmlmi.conditional.RandomEffectsNormal` or
   :class:`~skmlmi.conditional.RandomEffectsLogistic` on the formula's design, the formula's
   random terms as random slopes; its Gibbs state carried across visits);
2. draws the covariate model's parameters (random-intercept normal for a continuous x,
   random-intercept logistic for a binary one, the other predictors of x as the predictor
   matrix gives them, never the outcome) from all modelled rows of the completed data: the
   rows where x is observed alone are a selected sample when missingness depends on y;
3. draws each missing x_ij from its full conditional: exactly when the analysis model is linear
   and its linear predictor is linear in x (interactions with other variables and random slopes
   included: the product of two normal densities in x is normal), exactly for a binary x (two
   points); otherwise by Metropolis-Hastings steps whose proposal is the covariate model (the
   acceptance ratio is then the ratio of the analysis model's likelihoods), ``N_METROPOLIS``
   steps per visit, acceptance rates recorded.

The outcome's missing values are drawn from the analysis model given the current parameters and
cluster effects. Every term of the formula (``x:w``, ``I(x ** 2)``, ``np.log(x)``) is computed from
the current values by the formula's own coding, never imputed as a variable of its own.

Differences from peers: jomo's ``jomo.lmer`` models the covariates jointly (a multivariate normal
with latent normals for categorical ones) and draws them by Metropolis steps; mdmb and Blimp use
sequential (factored) covariate models and Metropolis steps throughout; here the covariate
models are the chained conditional ones (as smcfcs), and draws are exact wherever the full
conditional has a closed form.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import special

from ._plan import Plan, Target, as_model, design
from .analysis.formula import ParsedFormula, build_design, fixed_design_at, parse_formula
from .conditional.base import DrawContext
from .conditional.cluster_level import (
    ClusterLevelLogistic,
    ClusterLevelNormal,
    _ClusterLogisticDraw,
    _design,
    _sample_clusters,
)
from .conditional.random_effects import RandomEffectsNormal, RandomEffectsPMM
from .conditional.random_effects_discrete import RandomEffectsCategorical, RandomEffectsLogistic

__all__ = ["AnalysisModelSpec", "CompatibleDraw", "plan_analysis_model", "compatible_values", "sample_compatible"]

ANALYSIS_GIBBS_STEPS = 2  # Gibbs steps of the analysis model's parameters per visit
ANALYSIS_BURNIN = 5  # ... at its first draw in a chain (from the complete cases), as RandomEffectsNormal
COVARIATE_GIBBS_STEPS = 2  # ... and of a default covariate model's
N_METROPOLIS = 10  # Metropolis-Hastings steps per visit where the full conditional has no closed form
_LINEAR_TOL = 1e-8  # relative second difference below which a design is taken as linear in x


# --------------------------------------------------------------------------- the analysis model
@dataclass(frozen=True)
class AnalysisModelSpec:
    """What the chains need to know about the analysis model (made once, at fit)."""

    formula: str
    parsed: ParsedFormula
    family: str  # "linear" | "logistic"
    outcome: int  # working column of the response
    variables: tuple  # (formula variable, working column) of the non-grouping variables
    categories: dict  # working column -> labels of its codes (entered as a categorical)
    levels: dict  # the design's categorical levels and formulaic state (new values coded alike)
    state: dict = field(repr=False)
    fixed_names: tuple = ()
    slope_columns: tuple = ()  # positions in the design without intercept that carry a random slope
    covariates: tuple = ()  # working columns of the incomplete covariates imputed compatibly
    cluster_level: frozenset = frozenset()  # ... those constant within clusters (one value per cluster)
    products: tuple | None = None  # each fixed term as its factors' expressions (numeric terms), or None
    linear_in: frozenset = frozenset()  # covariates the design is linear in (exact normal full conditionals)

    def _product_design(self, W, rows, column, values):
        """The fixed design without intercept as products of its factors' values (numeric terms only)."""
        index = dict(self.variables)
        shape = np.shape(rows)
        X = np.empty((np.size(rows), len(self.products)))
        cache = {}

        def factor_values(factor):
            if factor.text not in cache:
                expression = factor.value
                inputs = {
                    i: (np.broadcast_to(values, shape) if index[name] == column else W[rows, index[name]])
                    for i, name in enumerate(expression.names)
                }
                if expression.tree[0] == "column":  # a variable as it is: nothing to evaluate
                    cache[factor.text] = inputs[expression.tree[1]]
                else:
                    with np.errstate(all="ignore"):
                        cache[factor.text] = expression.evaluate(inputs, n_rows=np.size(rows))
            return cache[factor.text]

        for k, term in enumerate(self.products):
            X[:, k] = factor_values(term[0])
            for factor in term[1:]:
                with np.errstate(all="ignore"):
                    X[:, k] *= factor_values(factor)
        return X, np.isfinite(X).all(axis=1)

    @property
    def roles(self) -> np.ndarray:
        roles = np.ones(len(self.fixed_names) - 1, dtype=int)
        roles[list(self.slope_columns)] = 2
        return roles

    def frame(self, W: np.ndarray, rows, column: int | None = None, values=None) -> pd.DataFrame:
        """The formula's variables at ``rows`` of the working data, column ``column`` set to ``values``."""
        data = {}
        for name, j in self.variables:
            v = W[rows, j] if column != j else np.broadcast_to(values, np.shape(rows)).astype(float)
            if j in self.categories:
                labels = self.categories[j]
                v = pd.Categorical.from_codes(np.rint(v).astype(int), categories=pd.Index(labels))
            data[name] = v
        return pd.DataFrame(data)

    def design(self, W: np.ndarray, rows, column: int | None = None, values=None) -> tuple[np.ndarray, np.ndarray]:
        """Fixed design without its intercept at ``rows`` (column set to ``values``), and which rows are defined."""
        if self.products is not None:
            return self._product_design(W, rows, column, values)
        X, defined = fixed_design_at(self.parsed, self.frame(W, rows, column, values), self.levels, self.state)
        return X[:, 1:], defined


def plan_analysis_model(plan: Plan, analysis_model, data) -> Plan:
    """The plan with the analysis model's variables imputed compatibly with it (``analysis_model`` None: as is).

    ``data`` is the fit's working data. The outcome's target (if incomplete) and each incomplete
    covariate's target are marked; a covariate's model becomes the one whose density the sampler
    uses (RandomEffectsNormal or RandomEffectsLogistic, or the user's if it is one of these) and
    loses the outcome (and columns derived from it) as predictors.
    """
    if analysis_model is None:
        return plan
    formula = _formula_text(analysis_model)
    parsed = parse_formula(formula)
    columns = list(plan.names)
    where = f"analysis_model {formula!r}"
    if parsed.response is None:
        raise ValueError(f"{where} has no response (write 'y ~ ...').")
    unknown = [v for v in parsed.variables if v not in columns]
    if unknown:
        raise ValueError(f"{where} names {unknown}, which are not columns of the data.")
    if not parsed.random_factors:
        raise ValueError(
            f"{where} has no random part: compatible imputation needs a mixed model with a random intercept "
            "of the imputer's grouping factor, e.g. '(1 | school)' or '(1 + x | school)'."
        )
    factor = parsed.single_factor()
    groups_column = plan.planner.groups_column if plan.planner is not None else None
    if plan.clusters is None or plan.clusters.n_factors != 1 or list(factor.columns) != [groups_column]:
        raise ValueError(
            f"{where} groups by {factor.name!r}; compatible imputation takes one grouping factor, the imputer's "
            f"groups column (here {groups_column!r}): fit with groups={factor.name!r}."
        )
    codecs = data.codecs
    grouping = set(factor.columns)
    outcome = columns.index(parsed.response)
    variables = tuple((v, columns.index(v)) for v in parsed.variables if v not in grouping)
    derived = {d.column: d for d in plan.derived}
    for name, j in variables:
        if j in derived:
            raise ValueError(
                f"{where} uses the derived column {name!r}; write its expression in the formula instead "
                "(e.g. I(x ** 2), x:w), so that it is recomputed from each candidate value."
            )
    kind_of = {j: codecs[j].kind for _, j in variables}
    family = {"continuous": "linear", "integer": "linear", "binary": "logistic"}.get(kind_of[outcome])
    if family is None:
        raise ValueError(
            f"{where}: the response {parsed.response!r} is {kind_of[outcome]}; compatible imputation takes a "
            "continuous (linear mixed model) or binary (logistic mixed model) response."
        )
    methods = plan.planner.settings.methods
    if isinstance(methods, dict) and parsed.response in methods:
        raise ValueError(
            f"methods names {parsed.response!r}, the response of {where}, which is imputed from the analysis model "
            "itself; leave it out of methods."
        )
    targets = {t.column: t for t in plan.targets}
    limited = [columns[j] for _, j in variables if j in targets and (j in plan.bounds or j in plan.post)]
    if limited:
        raise ValueError(
            f"bounds or post are set for {limited}, which {where} imputes from their full conditional "
            "distributions; a bound or a post-processing step would change that distribution. Remove them."
        )
    if plan.partial_predictors:
        raise ValueError(f"{where} needs every missing cell of its variables imputed (a `where` leaving some missing).")
    categories = {
        j: list(codecs[j].categories)
        for _, j in variables
        if j != outcome and codecs[j].categories is not None and not codecs[j].numeric_levels
    }
    covariates = tuple(j for _, j in variables if j != outcome and j in targets)
    for j in covariates:
        kind = kind_of[j]
        constant = plan.planner.cluster_constant.get(j, False)
        if constant == "partial":
            raise ValueError(
                f"{where}: {columns[j]!r} is constant within clusters but observed in some rows of a cluster "
                "and missing in others; fill those cells with the cluster's value first."
            )
        if constant and kind == "categorical":
            raise ValueError(
                f"{where}: {columns[j]!r} is an incomplete categorical covariate constant within clusters; "
                "compatible imputation takes cluster-level covariates that are continuous or binary (categorical: "
                "not yet)."
            )
    spec = _make_spec(formula, parsed, family, outcome, variables, categories, covariates, data, plan)
    numeric = [j for j in covariates if kind_of[j] in ("continuous", "integer")]
    spec = replace(
        spec,
        cluster_level=frozenset(j for j in covariates if plan.planner.cluster_constant.get(j, False)),
        linear_in=_linear_in(spec, numeric, data.W, np.flatnonzero(~data.missing[:, [j for _, j in variables]].any(1))),
    )
    return _mark_targets(plan, spec, kind_of)


def _linear_in(spec: AnalysisModelSpec, columns: list, W: np.ndarray, rows: np.ndarray) -> frozenset:
    """The numeric covariates the fixed design is linear in: a zero second difference at every test point.

    Linearity is a property of the formula (x, x:w and random slopes are linear in x; I(x ** 2),
    np.log(x), np.abs(x) are not), so it is decided once: at each complete row, at points spread
    over the covariate's range and beyond (mean -/+ 4 SD, steps of one SD), so that a kink such as
    ``np.abs`` at 0 is crossed.
    """
    rows = rows[: min(len(rows), 500)]  # the decision does not need every row
    linear = set()
    for j in columns:
        observed = W[rows, j]
        centre, sd = float(np.mean(observed)), float(np.std(observed)) or 1.0
        starts = centre + sd * np.linspace(-4.0, 4.0, len(rows))
        designs = [spec.design(W, rows, j, starts + k * sd) for k in range(3)]
        if all(defined.all() for _, defined in designs) and _is_linear([X for X, _ in designs]):
            linear.add(j)
    return frozenset(linear)


def _formula_text(analysis_model) -> str:
    if isinstance(analysis_model, str):
        return analysis_model
    formula = getattr(analysis_model, "formula", None)
    if isinstance(formula, str):
        return formula
    raise TypeError(
        "analysis_model must be an lme4-type formula string such as 'y ~ x + (1 + x | g)' or a "
        f"LinearMixedModel / LogisticMixedModel holding one; got {type(analysis_model).__name__}."
    )


def _make_spec(formula, parsed, family, outcome, variables, categories, covariates, data, plan) -> AnalysisModelSpec:
    """The formula's coding learnt on the rows where all its variables are observed."""
    W, missing = data.W, data.missing
    cols = [j for _, j in variables]
    complete = ~missing[:, cols].any(axis=1)
    if plan.modelled_rows is not None:
        complete &= plan.modelled_rows
    if complete.sum() < 2:
        raise ValueError(f"analysis_model {formula!r}: fewer than two rows have all its variables observed.")
    rows = np.flatnonzero(complete)
    provisional = AnalysisModelSpec(formula, parsed, family, outcome, variables, categories, {}, {})
    frame = provisional.frame(W, rows)
    frame[parsed.random_factors[0].columns[0]] = plan.clusters.codes[rows]
    first = build_design(parsed, frame)
    if not parsed.intercept or first.fixed_names[0] != "(Intercept)":
        raise ValueError(f"analysis_model {formula!r} needs a fixed intercept.")
    random = list(first.random_names)
    if not random or random[0] != "(Intercept)":
        raise ValueError(f"analysis_model {formula!r} needs a random intercept ('(1 + ... | g)').")
    fixed = list(first.fixed_names)
    absent = [r for r in random[1:] if r not in fixed]
    if absent:
        raise ValueError(
            f"analysis_model {formula!r}: the random terms {absent} are not fixed terms too; write each random slope "
            "in the fixed part as well, as lme4's usual 'y ~ x + (1 + x | g)'."
        )
    slopes = tuple(fixed.index(r) - 1 for r in random[1:])
    state = {"fixed": first.state["fixed"]}
    spec = replace(
        provisional,
        levels=first.levels,
        state=state,
        fixed_names=tuple(fixed),
        slope_columns=slopes,
        covariates=covariates,
    )
    return _with_products(spec, W, rows, first.X[:, 1:])


def _with_products(spec: AnalysisModelSpec, W, rows, X) -> AnalysisModelSpec:
    """The spec computing its design as products of numeric factors when that reproduces the formula's coding.

    Terms of numeric columns and expressions (``x``, ``x:w``, ``I(x ** 2)``, ``np.log(x)``) are
    products of their factors' values; computing them so skips building a DataFrame and a
    formulaic model matrix at every evaluation. The shortcut is taken only when it gives the
    formula's own design on the rows it was learnt on (same columns, same order, same values).
    """
    parsed = spec.parsed
    categorical = {spec.variables[k][0] for k, (_, j) in enumerate(spec.variables) if j in spec.categories}
    terms = []
    for term in parsed.fixed:
        factors = [parsed.terms[text] for text in term]
        if any(f.wrapper not in (None, "I") or set(f.value.names) & categorical for f in factors):
            return spec
        terms.append(tuple(factors))
    candidate = replace(spec, products=tuple(terms))
    try:
        fast, defined = candidate._product_design(W, rows, None, None)
    except (ValueError, TypeError, KeyError):
        return spec
    if fast.shape == X.shape and defined.all() and np.allclose(fast, X, rtol=1e-12, atol=0.0):
        return candidate
    return spec


def _mark_targets(plan: Plan, spec: AnalysisModelSpec, kind_of: dict) -> Plan:
    """Targets of the analysis model's variables: the outcome's and the covariates' (their models and predictors)."""
    methods = plan.planner.settings.methods
    outcome_deps = {d.column for d in plan.derived if not d.depends_on or spec.outcome in d.depends_on}
    dropped = {spec.outcome} | outcome_deps
    matrix = plan.predictor_matrix.copy() if plan.predictor_matrix is not None else None
    made: dict[int, Target] = {}
    for target in plan.targets:
        j = target.column
        if j in made:
            continue
        if j == spec.outcome:
            model = analysis_sampler(spec.family)
            made[j] = replace(target, model=model, compatible="outcome")
        elif j in spec.covariates:
            given = methods.get(plan.names[j]) if isinstance(methods, dict) else methods
            model = _covariate_model(plan.names[j], kind_of[j], given, spec, j in spec.cluster_level)
            keep = [p for p in target.predictors if p.column not in dropped]
            if matrix is not None:
                matrix.iloc[j, sorted(dropped)] = 0
            made[j] = replace(target, model=model, predictors=keep, compatible="covariate")
        else:
            made[j] = target
    targets = [made[t.column] for t in plan.targets]
    methods_out = dict(plan.methods)
    for j, target in made.items():
        methods_out[plan.names[j]] = target.model
    return replace(plan, targets=targets, predictor_matrix=matrix, methods=methods_out, analysis=spec)


def _covariate_model(name, kind, given, spec, cluster_level=False):
    """The covariate model of an incomplete covariate: the user's if it gives a density, else the default."""
    if cluster_level:
        wanted = ClusterLevelLogistic if kind == "binary" else ClusterLevelNormal
        if given is None:
            return wanted()
    else:
        wanted = {"binary": RandomEffectsLogistic, "categorical": RandomEffectsCategorical}.get(
            kind, RandomEffectsNormal
        )
    if given is None:
        return wanted(n_gibbs=COVARIATE_GIBBS_STEPS)
    if isinstance(given, str):
        given = as_model(given, f"methods[{name!r}]")
    if type(given) is not wanted or isinstance(given, RandomEffectsPMM):
        raise ValueError(
            f"methods[{name!r}] is {type(given).__name__}, but {name!r} is a covariate of analysis_model "
            f"{spec.formula!r}, imputed from its full conditional: its covariate model must be {wanted.__name__} "
            "(whose density the sampler uses), or leave it out of methods."
        )
    return given


def analysis_sampler(family: str):
    """The Gibbs sampler of the analysis model's parameters: ``ANALYSIS_GIBBS_STEPS`` steps per visit.

    Its state runs on across the visits of a chain, and every visit changes the data it is drawn
    from (the imputations): a step or two per visit let the parameters follow the data, as the
    one step per iteration of a data-augmentation Gibbs sampler does.
    """
    if family == "linear":
        return RandomEffectsNormal(n_gibbs=ANALYSIS_GIBBS_STEPS, n_burnin=ANALYSIS_BURNIN)
    return RandomEffectsLogistic(n_gibbs=ANALYSIS_GIBBS_STEPS)


# --------------------------------------------------------------------------- the analysis model's likelihood
class _Outcome:
    """The analysis model's draw at some rows: linear predictor, log-likelihood, imputations."""

    def __init__(self, spec: AnalysisModelSpec, draw, groups: np.ndarray, rng):
        self.spec, self.draw, self.rng = spec, draw, rng
        self.groups = groups
        if spec.family == "linear":
            self.b_rows, self.sd = draw._effects(groups, rng)

    def eta(self, X: np.ndarray) -> np.ndarray:
        if self.spec.family == "linear":
            return self.draw._linear_predictor(X, self.b_rows)
        return self.draw.linear_predictor(X, self.groups, self.rng)

    def loglik(self, eta: np.ndarray, y: np.ndarray) -> np.ndarray:
        if self.spec.family == "linear":
            return -0.5 * ((y - eta) / self.sd) ** 2
        return -np.logaddexp(0.0, np.where(y > 0.5, -eta, eta))

    def sample(self, eta: np.ndarray) -> np.ndarray:
        if self.spec.family == "linear":
            return eta + self.sd * self.rng.standard_normal(len(eta))
        return (self.rng.random(len(eta)) < special.expit(eta)).astype(float)


@dataclass
class CompatibleDraw:
    """A visit's draws: the analysis model's and, for a covariate, its covariate model's."""

    analysis: object
    covariate: object = None

    def sample(self, X, groups, rng):  # pragma: no cover - the engine calls sample_compatible
        raise TypeError("a compatible draw imputes through the analysis model (sample_compatible), not alone")


def draw_analysis_model(W, plan: Plan, rng, state, log):
    """One visit's draw of the analysis model's parameters from the completed data."""
    spec = plan.analysis
    n = W.shape[0]
    rows = np.arange(n)
    X, defined = spec.design(W, rows)
    y = W[:, spec.outcome]
    observed = defined & np.isfinite(y)
    if plan.modelled_rows is not None:
        observed &= plan.modelled_rows
    start = state is None
    if start:
        # The chain's first draw: from the complete cases, whose fit is near the posterior, not from the
        # initial imputations (draws of each column's observed values), which carry none of the model's
        # structure; the data-augmentation chain would need many iterations to climb from their fit
        # (a random slope's variance most of all).
        complete = np.logical_and.reduce([plan.fit_rows[j] for _, j in spec.variables])
        if (observed & complete).sum() > 2 * len(spec.fixed_names):
            observed = observed & complete
    model = analysis_sampler(spec.family)
    name = plan.names[spec.outcome]
    context = DrawContext(
        target=str(name),
        kind="continuous" if spec.family == "linear" else "binary",
        n_categories=0 if spec.family == "linear" else 2,
        n_clusters=plan.clusters.count,
        predictor_names=spec.fixed_names[1:],
        cluster_labels=plan.clusters.labels,
        modelled_rows=plan.modelled_rows,
        checked=True,
    )
    draw, state = model.draw(
        np.where(observed, y, 0.0), observed, X, spec.roles, plan.clusters.codes, rng, state, context
    )
    if not start:  # the start's events describe the complete cases, not the data the chain imputes from
        log(name, context.events)
    return draw, state


def compatible_values(W, target: Target, plan: Plan, rng, state, analysis_state, log, means=None, acceptance=None):
    """A compatible visit of ``target``: the draws and the imputations of its impute rows.

    Returns ``(draw, state, analysis_state, values)``.
    """
    analysis, analysis_state = draw_analysis_model(W, plan, rng, analysis_state, log)
    col = target.column
    rows = plan.impute_rows[col]
    if target.compatible == "outcome":
        draw = CompatibleDraw(analysis)
        return draw, state, analysis_state, _outcome_values(W, rows, plan.analysis, analysis, plan.clusters.codes, rng)
    X, roles, names, _ = design(W, target, plan.clusters, means)
    levels = _levels(target)
    context = DrawContext(
        target=str(target.name),
        kind=target.kind,
        n_categories=len(levels) if levels is not None else target.n_categories,
        ordered=False,  # a multinomial covariate model for ordered categories too: its probabilities are what is used
        n_clusters=plan.clusters.count,
        predictor_names=tuple(names),
        cluster_labels=plan.clusters.labels,
        modelled_rows=plan.modelled_rows,
        checked=True,
    )
    # all rows of the completed data (data augmentation); the chain's first draw from the observed values
    start = state is None
    observed = plan.fit_rows[col] if start else np.isfinite(W[:, col])
    if plan.modelled_rows is not None:
        observed = observed & plan.modelled_rows
    current = np.where(observed, W[:, col], 0.0)
    if levels is not None:  # the model sees the observed categories as 0..K_obs-1 (an unobserved one is never drawn)
        compact = np.zeros(target.n_categories)
        compact[levels] = np.arange(levels.size)
        current = compact[current.astype(np.intp)]
    covariate, state = target.model.draw(current, observed, X, roles, plan.clusters.codes, rng, state, context)
    if not start:  # the start's events describe the observed values only
        log(target.name, context.events)
    draw = CompatibleDraw(analysis, covariate)
    values = sample_compatible(W, X, rows, target, plan.analysis, draw, plan.clusters.codes, rng, acceptance)
    return draw, state, analysis_state, values


def _levels(target: Target) -> np.ndarray | None:
    """The codes of a categorical target's categories observed at fit (None for other kinds)."""
    if target.kind != "categorical":
        return None
    return target.levels if target.levels is not None else np.arange(target.n_categories)


def _outcome_values(W, rows, spec, analysis, groups, rng) -> np.ndarray:
    outcome = _Outcome(spec, analysis, groups[rows], rng)
    X, defined = spec.design(W, rows)
    if not defined.all():
        raise ValueError(f"analysis_model {spec.formula!r}: a term is not finite in rows {rows[~defined][:5].tolist()}")
    return outcome.sample(outcome.eta(X))


def sample_compatible(W, X, rows, target, spec, draw: CompatibleDraw, groups, rng, acceptance=None) -> np.ndarray:
    """Imputations of ``target`` at ``rows`` from its full conditional given the current data.

    ``X`` is the covariate model's design (all rows); ``acceptance`` (column -> [accepted, proposed])
    collects the Metropolis-Hastings counts.
    """
    if target.compatible == "outcome":
        return _outcome_values(W, rows, spec, draw.analysis, groups, rng)
    col = target.column
    g = groups[rows]
    y = W[rows, spec.outcome]
    outcome = _Outcome(spec, draw.analysis, g, rng)

    def loglik(values):
        Xa, defined = spec.design(W, rows, col, values)
        out = outcome.loglik(outcome.eta(Xa), y)
        return np.where(defined, out, -np.inf)

    if col in spec.cluster_level:
        return _cluster_level_values(W, X, rows, g, col, spec, draw, outcome, y, loglik, rng, acceptance)

    if target.kind == "categorical":
        levels = _levels(target)
        log_p = np.log(np.maximum(draw.covariate.probabilities(X[rows], g, rng), np.finfo(float).tiny))
        log_p += np.column_stack([loglik(float(level)) for level in levels])  # a loop over the few categories
        p = special.softmax(log_p, axis=1)
        chosen = (np.cumsum(p, axis=1) < rng.random(len(rows))[:, None]).sum(axis=1)
        return levels[np.minimum(chosen, levels.size - 1)].astype(float)
    if target.kind == "binary":
        eta_x = draw.covariate.linear_predictor(X[rows], g, rng)
        p = special.expit(eta_x + loglik(1.0) - loglik(0.0))
        return (rng.random(len(rows)) < p).astype(float)
    b_rows, sd_x = draw.covariate._effects(g, rng)
    mean_x = draw.covariate._linear_predictor(X[rows], b_rows)
    current = W[rows, col]
    if spec.family == "linear" and col in spec.linear_in:
        # eta(x) = eta(x0) + c (x - x0), y ~ N(eta(x), sigma^2), x ~ N(m, s^2):
        # x | y ~ N(v (m / s^2 + c (y - eta(x0) + c x0) / sigma^2), v), 1 / v = 1 / s^2 + c^2 / sigma^2
        eta0, c, sigma2 = _linear_terms(W, rows, col, spec, outcome, current, np.broadcast_to(sd_x, current.shape))
        precision = 1.0 / sd_x**2 + c**2 / sigma2
        centre = (mean_x / sd_x**2 + c * (y - eta0 + c * current) / sigma2) / precision
        return centre + rng.standard_normal(len(rows)) / np.sqrt(precision)
    return _metropolis(loglik, current, mean_x, sd_x, rng, acceptance, col)


def _cluster_level_values(W, X, rows, g, col, spec, draw, outcome, y, loglik, rng, acceptance) -> np.ndarray:
    """One value per cluster of a cluster-level covariate w, from p(w_j) prod_i p(y_ij | w_j): the rows' log-likelihoods
    summed per cluster (exact normal when linear in w, exact two-point when binary, else Metropolis-Hastings)."""
    codes, inverse, xbar = _sample_clusters(X[rows], g, "cluster-level covariate")
    n_units = len(codes)

    def per_unit(values_rows):
        return np.bincount(inverse, weights=values_rows, minlength=n_units)

    def unit_loglik(unit_values):
        return per_unit(loglik(unit_values[inverse]))

    covariate = draw.covariate
    if isinstance(covariate, _ClusterLogisticDraw):
        p1 = covariate.inner.probabilities(xbar, None)[:, 1]
        with np.errstate(divide="ignore"):
            logit = np.log(p1) - np.log1p(-p1)
        p = special.expit(logit + unit_loglik(np.ones(n_units)) - unit_loglik(np.zeros(n_units)))
        return (rng.random(n_units) < p).astype(float)[inverse]
    mean_w = _design(xbar, covariate.center) @ covariate.coef_centred
    sd_w = np.full(n_units, float(covariate.sigma))
    current_rows = W[rows, col]
    current = per_unit(current_rows) / np.bincount(inverse, minlength=n_units)  # constant within a unit
    if spec.family == "linear" and col in spec.linear_in:  # the row-level formula, its sums taken per cluster
        eta0, c, sigma2 = _linear_terms(W, rows, col, spec, outcome, current[inverse], sd_w[inverse])
        precision = 1.0 / sd_w**2 + per_unit(c**2 / sigma2)
        centre = (mean_w / sd_w**2 + per_unit(c * (y - eta0 + c * current[inverse]) / sigma2)) / precision
        return (centre + rng.standard_normal(n_units) / np.sqrt(precision))[inverse]
    return _metropolis(unit_loglik, current, mean_w, sd_w, rng, acceptance, col)[inverse]


def _is_linear(designs) -> bool:
    """Whether designs at x0, x0 + s and x0 + 2 s have a zero second difference (the design is linear in x)."""
    second = designs[2] - 2.0 * designs[1] + designs[0]
    scale = np.maximum(np.abs(designs[0]), np.maximum(np.abs(designs[1]), np.abs(designs[2])))
    return not np.any(np.abs(second) > _LINEAR_TOL * np.maximum(scale, 1.0))


def _linear_terms(W, rows, col, spec, outcome, current, step):
    """For a design linear in x: eta(x0), the slope c of the linear predictor in x per row, and sigma^2 per row."""
    X0, _ = spec.design(W, rows, col, current)
    X1, _ = spec.design(W, rows, col, current + step)
    eta0 = outcome.eta(X0)
    c = (outcome.eta(X1) - eta0) / step
    return eta0, c, np.broadcast_to(outcome.sd, current.shape) ** 2


def _metropolis(loglik, current, mean_x, sd_x, rng, acceptance, col) -> np.ndarray:
    """Independence Metropolis-Hastings steps with the covariate model as proposal (per row, or per cluster)."""
    x = current.copy()
    ll = loglik(x)
    accepted = 0
    for _ in range(N_METROPOLIS):  # a loop over steps; each step is vectorised over rows
        proposal = mean_x + sd_x * rng.standard_normal(len(x))
        ll_new = loglik(proposal)
        take = np.log(rng.random(len(x))) < ll_new - ll
        x[take], ll[take] = proposal[take], ll_new[take]
        accepted += int(take.sum())
    if acceptance is not None:
        counts = acceptance.setdefault(col, [0, 0])
        counts[0] += accepted
        counts[1] += N_METROPOLIS * len(x)
    return x
