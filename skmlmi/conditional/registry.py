"""What every conditional model declares, and the one table of default models.

The models are discovered, not listed: every subclass of
:class:`~skmlmi.conditional.base.BaseConditionalImputer` that :mod:`skmlmi.conditional`
exports is registered, with what its class declares -- ``target_kinds``, ``accepted_roles``,
``requires_groups``, ``handles_systematic``, ``cluster_level`` and ``r_names`` (the R method
names it answers to, with the settings each implies). Adding a model is adding its file and
exporting its class.

This module answers, for the imputer, :func:`~skmlmi.recommend.recommend_methods`,
:func:`~skmlmi.predictors.suggest_predictors`, the command line and the docs:

* :func:`make_model`: a model from its class name (``"RandomEffectsPMM"``) or an R method
  name (``"2l.pan"``), with a "did you mean" for near misses;
* :func:`find_models`: the models that can impute a kind, with or without clusters, with
  systematically missing clusters, at the cluster level, honouring a role code;
* :func:`default_model`: the default model of a column, from :data:`DEFAULT_MODELS`, the one
  table of default choices, and :data:`COUNT_MODELS`, its entries for count columns;
* :func:`model_table`: the docs' table of the models and what each declares.

It knows the models' declarations only; it knows nothing about data or the sampler.
"""

from __future__ import annotations

import difflib
from functools import cache
from typing import Any, Literal

from .. import conditional as _package
from .base import BaseConditionalImputer

__all__ = [
    "DEFAULT_MODELS",
    "COUNT_MODELS",
    "all_models",
    "r_method_names",
    "resolve_name",
    "make_model",
    "unknown_model_message",
    "find_models",
    "models_accepting",
    "models_for_kind",
    "default_situation",
    "default_model",
    "model_table",
]

KINDS = ("continuous", "integer", "binary", "categorical")

#: The default model of an incomplete column: situation -> model name per kind
#: (continuous, integer, binary, categorical), in the order of :data:`KINDS`.
#:
#: - ``"single level"``: no clusters; mice's defaults (pmm, logreg, polyreg);
#: - ``"random effects"``: level-1 column in clustered data, missing sporadically, or in whole
#:   clusters that are small or too few for per-cluster fits: the one-stage random-effects
#:   models, whose Gibbs samplers draw systematically missing clusters from the population;
#:   predictive mean matching for numbers, continuous as whole (mice's default): it keeps
#:   their support, and a skewed variable's relations. With a lognormal x missing at random on
#:   y (35%, 60 clusters of 2-60 rows), the normal model put the slope of y ~ x + (1 | g) 19%
#:   above the complete data's (95% coverage 0.20 over 200 replications) and PMM 3.7% (0.83);
#:   with a normal x, or missing completely at random, both are within 1%
#:   (benchmarks/validate_skewed_default.py), and PMM meets the validity matrix's continuous
#:   cells (benchmarks/validate_defaults.py, 180 replications);
#: - ``"two-stage"``: level-1 column missing in whole clusters, with clusters large and numerous
#:   enough for per-cluster fits and their meta-analysis (there is no two-stage categorical
#:   model); predictive mean matching for numbers, for the same reason: in 16 studies of 120-300
#:   rows with a lognormal x missing in 4 whole studies and at random on y elsewhere, the normal
#:   two-stage model put the slope 9% above the complete data's, PMM 0.8% (40 replications);
#: - ``"cluster level"``: a column constant within clusters, missing in whole clusters: one
#:   value per cluster (predictive mean matching for whole numbers only: with the few donor
#:   clusters a cluster-level variable has it attenuated relations by 7-17%,
#:   benchmarks/validate_defaults.py);
#: - ``"partly observed clusters"``: a cluster-level column missing in part of some clusters:
#:   the cluster's observed value fills them.
DEFAULT_MODELS: dict[str, tuple[str, str, str, str]] = {
    "single level": ("PredictiveMeanMatching", "PredictiveMeanMatching", "BayesianLogistic", "Polytomous"),
    "random effects": ("RandomEffectsPMM", "RandomEffectsPMM", "RandomEffectsLogistic", "RandomEffectsCategorical"),
    "two-stage": ("TwoStagePMM", "TwoStagePMM", "TwoStageLogistic", "RandomEffectsCategorical"),
    "cluster level": ("ClusterLevelNormal", "ClusterLevelPMM", "ClusterLevelLogistic", "ClusterMean"),
    "partly observed clusters": ("ClusterMean", "ClusterMean", "ClusterMean", "ClusterMean"),
}

#: The default model of a count column where it differs from the integer entry of
#: :data:`DEFAULT_MODELS`: situation -> model name. A count column is an integer column whose
#: observed values are non-negative and spread like Poisson counts within clusters (the rule of
#: :func:`skmlmi.recommend.is_count_column`); where they are over- or underdispersed, or the data
#: have no clusters, the integer default (predictive mean matching) keeps the observed distribution;
#: the imputer's planner also falls back to it where the count model does not fit the count given
#: its predictors (``skmlmi._plan._Planner.check_counts``).
#: Only the one-stage random-effects situation has a count model: the two-stage and cluster-level
#: count defaults stay PMM until validated (benchmarks/validate_random_effects_poisson.py validates
#: the random-effects Poisson model).
COUNT_MODELS: dict[str, str] = {
    "random effects": "RandomEffectsPoisson",
}


# --------------------------------------------------------------------------- discovery
@cache
def _models() -> dict[str, type[BaseConditionalImputer]]:
    found = {}
    for name in _package.__all__:
        obj = getattr(_package, name)
        if isinstance(obj, type) and issubclass(obj, BaseConditionalImputer) and obj is not BaseConditionalImputer:
            found[obj.__name__] = obj
    return dict(sorted(found.items()))


@cache
def _r_names() -> dict[str, tuple[type[BaseConditionalImputer], dict]]:
    table: dict[str, tuple[type[BaseConditionalImputer], dict]] = {}
    for cls in _models().values():
        for r_name, settings in cls.r_names.items():
            if r_name in table:
                raise RuntimeError(
                    f"R method name {r_name!r} is declared by both {table[r_name][0].__name__} and {cls.__name__}; "
                    "a subclass must declare its own r_names"
                )
            table[r_name] = (cls, dict(settings))
    return dict(sorted(table.items()))


def all_models() -> list[type[BaseConditionalImputer]]:
    """Every registered conditional model class, by name."""
    return list(_models().values())


def r_method_names() -> dict[str, str]:
    """R method name -> the model it stands for, written as Python (``"RandomEffectsNormal(heteroscedastic=True)"``)."""
    return {r_name: _spelled(cls, settings) for r_name, (cls, settings) in _r_names().items()}


def _spelled(cls, settings) -> str:
    return f"{cls.__name__}({', '.join(f'{k}={v!r}' for k, v in settings.items())})"


# --------------------------------------------------------------------------- by name
def unknown_model_message(name: str) -> str:
    """Why ``name`` is not a model, with the nearest valid name and the valid names.

    Parameters
    ----------
    name : str
        The name a user gave.

    Returns
    -------
    str
    """
    choices = list(_models()) + list(_r_names())
    folded = {choice.lower(): choice for choice in choices}
    close = folded.get(name.lower()) or next(iter(difflib.get_close_matches(name, choices, n=1)), None)
    what = " (the abstract base class of the models, not a model)" if name == "BaseConditionalImputer" else ""
    hint = f"; did you mean {close}?" if close else ""
    return f"unknown model {name!r}{what}{hint} (models: {', '.join(_models())}; R names: {', '.join(_r_names())})"


def resolve_name(name: str) -> tuple[type[BaseConditionalImputer], dict]:
    """The model class and the settings a name implies: a class name (case-sensitive) or an R method name.

    Parameters
    ----------
    name : str
        A model's class name or an R method name (``"2l.pan"``).

    Returns
    -------
    (type, dict)
        The model class and the settings the name implies.

    Raises
    ------
    ValueError
        For any other name, with the nearest valid name ("did you mean") and the list of
        valid names.
    """
    if not isinstance(name, str):
        raise TypeError(f"a model name must be a string; got {type(name).__name__}")
    if name in _models():
        return _models()[name], {}
    if name in _r_names():
        cls, settings = _r_names()[name]
        return cls, dict(settings)
    raise ValueError(unknown_model_message(name))


def make_model(name: str, **settings: Any) -> BaseConditionalImputer:
    """An unfitted model from its class name or R method name; ``settings`` override those the name implies.

    Parameters
    ----------
    name : str
        A model's class name or an R method name.
    **settings
        Hyperparameters of the model.

    Returns
    -------
    BaseConditionalImputer

    Examples
    --------

    >>> make_model("2l.norm")
    RandomEffectsNormal(heteroscedastic=True)
    >>> make_model("RandomEffectsPMM", donors=3)
    RandomEffectsPMM(donors=3)
    """
    cls, implied = resolve_name(name)
    return cls(**{**implied, **settings})


# --------------------------------------------------------------------------- by capability
def find_models(
    kind: str | None = None,
    *,
    groups: bool | None = None,
    systematic: bool | None = None,
    cluster_level: bool | None = None,
    role: int | None = None,
    multiple_factors: bool | None = None,
) -> list[type[BaseConditionalImputer]]:
    """The registered models that can do all of what is asked (None: not asked).

    Parameters
    ----------
    kind : {"continuous", "integer", "binary", "categorical"}, optional
        A target kind the model imputes.
    groups : bool, optional
        True: models that use a cluster identifier (they need it, or use it when given);
        False: models that work without one.
    systematic : bool, optional
        True: models that impute clusters in which the target is never observed.
    cluster_level : bool, optional
        True: models of cluster-level variables (one value per cluster); False: row-level models.
    role : int, optional
        A predictor role code the model honours (-2: models that take a cluster identifier).
    multiple_factors : bool, optional
        True: models that take several grouping factors (nested or crossed).
    """
    out = []
    for cls in _models().values():
        if kind is not None and kind not in cls.target_kinds:
            continue
        if groups is not None:
            uses = cls.requires_groups or cls.uses_groups_if_given
            if (groups and not uses) or (not groups and cls.requires_groups):
                continue
        if systematic and not cls.handles_systematic:
            continue
        if cluster_level is not None and cls.cluster_level != cluster_level:
            continue
        if role is not None and not _honours(cls, role):
            continue
        if multiple_factors is not None and cls.multiple_factors != multiple_factors:
            continue
        out.append(cls)
    return out


def _honours(cls, role: int) -> bool:
    if role == -2:
        return cls.requires_groups
    return role == 1 or role in cls.accepted_roles


def models_accepting(role: int) -> list[str]:
    """Names of the models that honour a predictor role code.

    Parameters
    ----------
    role : int
        A role code of :data:`~skmlmi.conditional.ROLE_NAMES`.

    Returns
    -------
    list of str
    """
    return [cls.__name__ for cls in find_models(role=role)]


def models_for_kind(kind: str) -> list[str]:
    """Names of the models that impute a target kind.

    Parameters
    ----------
    kind : {"continuous", "integer", "binary", "categorical"}

    Returns
    -------
    list of str
    """
    return [cls.__name__ for cls in find_models(kind)]


# --------------------------------------------------------------------------- defaults
def default_situation(
    multilevel: bool,
    cluster_level: bool | Literal["partial"] = False,
    systematic: bool = False,
    meta_analysable: bool = False,
) -> str:
    """The row of :data:`DEFAULT_MODELS` for a column (see :func:`default_model`).

    Parameters
    ----------
    multilevel : bool
        Whether the data have clusters.
    cluster_level : bool or "partial"
        Whether the column is constant within clusters (``"partial"``: some cluster holds
        both observed and missing cells of it).
    systematic : bool
        Whether some cluster never observes it.
    meta_analysable : bool
        Whether its clusters are large and many enough for a two-stage model.

    Returns
    -------
    str
    """
    if not multilevel:
        return "single level"
    if cluster_level == "partial":
        return "partly observed clusters"
    if cluster_level:
        return "cluster level"
    if systematic and meta_analysable:
        return "two-stage"
    return "random effects"


def default_model(
    kind: str,
    multilevel: bool,
    cluster_level: bool | Literal["partial"] = False,
    systematic: bool = False,
    meta_analysable: bool = False,
    count: bool = False,
) -> BaseConditionalImputer:
    """The default conditional model of a column, from :data:`DEFAULT_MODELS` and :data:`COUNT_MODELS`.

    Parameters
    ----------
    kind : {"continuous", "integer", "binary", "categorical"}
        The column's kind.
    multilevel : bool
        Whether the data have clusters (a grouping column coded -2).
    cluster_level : bool or "partial", default=False
        True for a column constant within every cluster (a cluster-level variable);
        ``"partial"`` when such a column is also missing in part of some cluster.
    systematic : bool, default=False
        Whether the column is missing in whole clusters.
    meta_analysable : bool, default=False
        Whether its clusters are large and numerous enough for per-cluster fits and their
        meta-analysis (the thresholds of :func:`~skmlmi.recommend.recommend_methods`).
    count : bool, default=False
        Whether an integer column holds counts (:func:`~skmlmi.recommend.is_count_column`): its
        model is then :data:`COUNT_MODELS`' entry for the situation, where there is one.

    Returns
    -------
    BaseConditionalImputer
        An unfitted model with its default settings; its declarations are checked against
        the situation (kind, clusters, systematic missingness, level).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown column kind {kind!r}; kinds: {', '.join(KINDS)}")
    if count and kind != "integer":
        raise ValueError(f"count=True is for integer columns; got a {kind} column")
    situation = default_situation(multilevel, cluster_level, systematic, meta_analysable)
    name = DEFAULT_MODELS[situation][KINDS.index(kind)]
    if count:
        name = COUNT_MODELS.get(situation, name)
    cls = _models()[name]
    problem = _misfit(cls, kind, multilevel, bool(cluster_level), systematic)
    if problem:
        table = "COUNT_MODELS" if count and situation in COUNT_MODELS else "DEFAULT_MODELS"
        raise RuntimeError(f"{table}[{situation!r}] names {cls.__name__} for a {kind} column, which {problem}")
    return cls()


def _misfit(cls, kind, multilevel, cluster_level, systematic) -> str | None:
    """What the class declares that contradicts the situation, or None."""
    if kind not in cls.target_kinds:
        return "does not impute that kind"
    if cls.requires_groups and not multilevel:
        return "needs clusters"
    if multilevel and systematic and not cls.handles_systematic:
        return "cannot impute clusters in which the column is never observed"
    if multilevel and cls.cluster_level != cluster_level:
        return "is a cluster-level model" if cls.cluster_level else "is not a cluster-level model"
    return None


# --------------------------------------------------------------------------- the docs
_ROLE_CODES = (2, 3, 4, -3, -4)


def model_table() -> list[list[str]]:
    """The docs' table of the registered models: one row per model, what it declares.

    Columns: model, R names, target kinds, role codes honoured besides 1 (and -2 for models
    that take a cluster identifier), whether it imputes clusters never observed, its level,
    and the situations in which the defaults choose it. ``docs/conf.py`` renders it on the
    models page (``.. model-table::``), so the page lists every model the registry finds.

    >>> next(row for row in model_table() if row[0] == "RandomEffectsPoisson")[1:4]
    ['2l.glm.pois', 'integer', '-2, 2, 3, 4']
    """
    chosen: dict[str, dict[str, list[str]]] = {}  # model -> situation -> kinds
    for situation, row in DEFAULT_MODELS.items():
        for kind, name in zip(KINDS, row, strict=True):
            chosen.setdefault(name, {}).setdefault(situation, []).append(kind)
    for situation, name in COUNT_MODELS.items():
        chosen.setdefault(name, {}).setdefault(situation, []).append("counts")
    rows = []
    for cls in _models().values():
        roles = ([-2] if cls.requires_groups else []) + [r for r in _ROLE_CODES if r in cls.accepted_roles]
        rows.append(
            [
                cls.__name__,
                ", ".join(cls.r_names) or "--",
                ", ".join(kind for kind in KINDS if kind in cls.target_kinds),
                ", ".join(str(r) for r in sorted(roles)) or "--",
                "yes" if cls.handles_systematic else "no",
                "cluster" if cls.cluster_level else "row",
                "; ".join(
                    f"{situation} ({', '.join(kinds)})" for situation, kinds in chosen.get(cls.__name__, {}).items()
                )
                or "--",
            ]
        )
    return rows
