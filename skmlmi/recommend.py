"""Which clusters miss which variables, and which conditional model suits each incomplete column.

In clustered data a variable can be missing in single rows (*sporadically*) or in whole
clusters (*systematically*: a study that never measured it). The two call for different
imputation models, and R users pick them with micemd's ``find.defaultMethod``. This room
offers the same help:

* :func:`missing_by_cluster` classifies every cluster of every incomplete column as
  complete, sporadically or systematically missing, with cluster sizes and observed
  counts (a tidy table; the diagnostics plot it);
* :func:`recommend_methods` recommends a conditional model per incomplete column, with the
  reason, from documented thresholds.

This module works on DataFrames and column names; it knows nothing about the
chained-equations loop.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from ._clusters import Clusters, factor_specs
from ._columns import cluster_codes, detect_codec
from .conditional.base import BaseConditionalImputer
from .conditional.cluster_level import is_cluster_constant
from .conditional.registry import COUNT_MODELS, default_model, find_models

__all__ = ["missing_by_cluster", "recommend_methods", "is_count_column"]


# --------------------------------------------------------------------------- helpers

#: The columns of recommend_methods' table, in order ("factor" with several grouping factors, "share_small" with one).
RECOMMENDATION_COLUMNS = (
    "column",
    "kind",
    "pattern",
    "cluster_level",
    "factor",
    "n_clusters",
    "n_systematic",
    "n_sporadic",
    "n_observed_clusters",
    "prop_missing",
    "median_observed",
    "share_small",
    "method",
    "method_name",
    "reason",
)


#: recommend_methods' defaults (micemd's ``ni.small``, ``prop.small`` and the fewest clusters for a meta-analysis),
#: which the imputer's plan uses too.
LARGE_CLUSTER, PROP_SMALL, MIN_CLUSTERS = 100, 0.4, 5


def _frame_and_groups(data: Any, groups: Any) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, Any]:
    """The data without the groups column, integer cluster codes, the cluster labels and the groups column name."""
    if isinstance(data, np.ndarray):
        if data.ndim != 2:
            raise TypeError(f"data must be a DataFrame or a 2-D array; got an array of shape {data.shape}")
        data = pd.DataFrame(data)
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame or a 2-D numpy array; got {type(data).__name__}")
    if data.columns.has_duplicates:
        duplicated = data.columns[data.columns.duplicated()].unique().tolist()
        raise ValueError(f"data has duplicated column names {duplicated[:10]}; give every column a unique name")
    if groups is None:
        raise ValueError("groups is required: a column name of data or an array of cluster labels")
    if isinstance(groups, Clusters):  # the engine's clusters, encoded once at fit
        if len(groups.codes) != len(data):
            raise ValueError(f"groups holds {len(groups.codes)} rows but the data have {len(data)}.")
        return data, groups.codes, np.asarray(groups.labels), None
    codes, uniques, name = cluster_codes(data, groups)
    frame = data.drop(columns=[name]) if name is not None else data
    return frame, codes, np.asarray(uniques), name


def _frame_and_factors(data: Any, groups: Any, cluster_structure: str) -> tuple[pd.DataFrame, Clusters]:
    """The data without the grouping columns and the grouping factors (one or several) as a :class:`Clusters`."""
    if cluster_structure not in ("auto", "nested", "crossed"):
        raise ValueError(f"cluster_structure must be 'auto', 'nested' or 'crossed'; got {cluster_structure!r}")
    if isinstance(data, np.ndarray) and data.ndim == 2:
        data = pd.DataFrame(data)
    if isinstance(data, pd.DataFrame) and isinstance(groups, list) and 0 < len(groups) != len(data):
        if all(isinstance(g, str) for g in groups):
            unknown = [g for g in groups if g not in data.columns]
            if unknown:  # column names, some not in the data: name them (not "2 labels for n rows")
                raise ValueError(
                    f"groups names columns that are not in the data: {unknown}; the data have {list(data.columns)}"
                )
        if len(groups) == 1:  # a one-element list of a column name is that column
            groups = groups[0]
    frame, codes, labels, name = _frame_and_groups(data, groups) if _one_factor(data, groups) else (None,) * 4
    if frame is not None:
        if isinstance(groups, Clusters):
            return frame, groups
        return frame, Clusters(codes, pd.Index(labels, tupleize_cols=False), name)
    if isinstance(groups, Clusters):  # several factors encoded by the caller: data hold no grouping column
        if len(groups.codes) != len(data):
            raise ValueError(f"groups holds {len(groups.codes)} rows but the data have {len(data)}.")
        return data, groups
    clusters = Clusters.from_data(data, groups, cluster_structure)
    return data.drop(columns=list(clusters.columns)), clusters


def _one_factor(data: Any, groups: Any) -> bool:
    """Whether ``groups`` gives one grouping factor (the single-factor path, unchanged)."""
    if isinstance(groups, Clusters):
        return groups.n_factors == 1
    if not isinstance(data, pd.DataFrame) or groups is None:
        return True  # the single-factor path says what is wrong with them
    specs = factor_specs(data, groups)
    return specs is None or len(specs) == 1


def _factor_names(clusters: Clusters) -> list:
    """A name per grouping factor: its column, or its position (``"factor 0"``) for labels given as arrays."""
    return [f.column if f.column is not None else f"factor {k}" for k, f in enumerate(clusters.factors)]


def _cluster_table(missing: np.ndarray, codes: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """Cluster sizes and observed counts of one column (bincounts, no loop over clusters)."""
    size = np.bincount(codes, minlength=n_clusters)
    observed = np.bincount(codes, weights=(~missing).astype(float), minlength=n_clusters).astype(int)
    return size, observed


#: Band of the within-cluster dispersion index (pooled within-cluster variance over the mean) in
#: which non-negative whole numbers are taken for Poisson counts (see :func:`is_count_column`).
COUNT_DISPERSION = (0.8, 2.0)


def is_count_column(values: np.ndarray, codes: np.ndarray, dispersion: tuple[float, float] = COUNT_DISPERSION) -> bool:
    """Whether a whole-number column looks like Poisson counts within its clusters.

    The defaults give such a column the random-effects Poisson model
    (:class:`~skmlmi.conditional.RandomEffectsPoisson`) instead of predictive mean matching.
    True when the observed values are non-negative whole numbers, not all zero, and their
    within-cluster dispersion index

        D = [sum_j sum_i (y_ij - ybar_j)^2 / sum_j (n_j - 1)] / ybar

    (pooled within-cluster variance over the mean, over clusters with two or more observed
    values) lies in ``dispersion``. Under the model D is about 1 + ybar (exp(var(x'beta)) - 1):
    1 without predictors, more the stronger they are. A count with extra within-cluster
    variation (negative binomial counts, D = 1 + ybar / shape + ...) or a bounded or
    underdispersed whole number (scores, ages in a school class, years: D well below 1) is
    left to predictive mean matching, which keeps the observed distribution. A Poisson count
    with strong predictors and a large mean can exceed the upper bound too: it then gets PMM,
    the safe side. The bounds (0.8, 2) were checked by benchmarks/validate_random_effects_poisson.py
    (30% MAR, 50 clusters of 20, ICC 0.3, 60 replications): with negative binomial counts of
    shape 1 (D 2.5-4.3 in 20 simulated data sets, never taken for counts) the Poisson model's
    imputations moved the slope of an outcome on the count by +0.046 (MC SE 0.006; coverage
    0.62) and inflated the variance of the cluster means, where RandomEffectsPMM gave -0.014
    (MC SE 0.003; coverage 0.95); with Poisson counts (D 1.1-1.5, always taken for counts) the
    Poisson model kept the mean count and the clustering (differences from the complete data
    within 2 MC SE at 50 and 100 clusters, ICC 0.1 and 0.3) where RandomEffectsPMM shrank the
    variance of the cluster means by about 10% at ICC 0.3.

    This rule sees the column alone. The imputer then checks the Poisson model given the
    count's actual predictors (a Poisson regression with cluster fixed effects whose Pearson
    dispersion must be within min(0.05, 2 SE) of 1) and falls back to RandomEffectsPMM where it
    does not fit, e.g. a count that strongly predicts another variable, being underdispersed
    given it.

    Parameters
    ----------
    values : ndarray of shape (n,)
        The column, NaN where missing.
    codes : ndarray of shape (n,) of int
        Cluster codes.
    dispersion : (float, float), default=(0.8, 2.0)
        Accepted band of D.

    Returns
    -------
    bool

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> codes = np.repeat(np.arange(40), 25)
    >>> counts = rng.poisson(np.exp(0.5 + 0.5 * rng.normal(size=40))[codes]).astype(float)
    >>> is_count_column(counts, codes), is_count_column(counts + 2000.0, codes)
    (True, False)
    >>> is_count_column(rng.negative_binomial(1, 0.3, size=1000).astype(float), codes)
    False
    """
    values = np.asarray(values, dtype=float)
    observed = ~np.isnan(values)
    y, g = values[observed], np.asarray(codes)[observed]
    if not len(y) or np.any(y < 0) or np.any(y != np.floor(y)) or not np.isfinite(y).all() or not y.any():
        return False
    n_clusters = int(g.max()) + 1
    n_j = np.bincount(g, minlength=n_clusters)
    means = np.bincount(g, weights=y, minlength=n_clusters) / np.maximum(n_j, 1)
    within = np.sum((y - means[g]) ** 2)
    df = np.sum(np.maximum(n_j - 1, 0))
    if df < 1:
        return False
    index = within / df / y.mean()
    return bool(dispersion[0] <= index <= dispersion[1])


# --------------------------------------------------------------------------- classification
def missing_by_cluster(
    data: pd.DataFrame,
    groups: Any,
    by: Literal["column", "cluster"] = "column",
    cluster_structure: str = "auto",
) -> pd.DataFrame:
    """Sporadic and systematic missingness of every incomplete column, cluster by cluster.

    A cluster is *systematically missing* for a column when none of its rows is observed,
    *sporadically missing* when some (not all) are, *complete* when all are. With several
    grouping factors every factor is classified on its own: a variable never measured in some
    classes but in every school is systematically missing by class and sporadically by school.

    Parameters
    ----------
    data : DataFrame
        The incomplete data.
    groups : column name, array of shape (n,), or list of column names
        Cluster labels; a column of ``data`` is not itself classified. Several grouping factors
        as the imputer takes them: a list of column names (or a 2-D array / DataFrame of labels),
        outer to inner.
    by : {"column", "cluster"}, default="column"
        ``"column"``: one row per incomplete column (summary). ``"cluster"``: one row per
        (incomplete column, cluster), for plots.
    cluster_structure : {"auto", "nested", "crossed"}, default="auto"
        With several factors, as the imputer's parameter: ``"nested"`` combines inner labels with
        the outer ones (class 1 of school A is not class 1 of school B).

    Returns
    -------
    DataFrame
        ``by="column"``: columns ``column``, ``n_missing``, ``prop_missing``,
        ``n_clusters``, ``n_systematic``, ``n_sporadic``, ``n_complete``,
        ``systematic_clusters`` (list of labels), ``min_cluster_size``,
        ``median_cluster_size``, ``max_cluster_size``, ``median_observed`` (median number
        of observed rows among clusters with any), ``min_observed`` (same, minimum).
        ``by="cluster"``: columns ``column``, ``cluster``, ``size``, ``n_observed``,
        ``n_missing``, ``status`` (``"complete"``, ``"sporadic"`` or ``"systematic"``).
        Complete columns are left out of both. With several grouping factors both tables
        have a ``factor`` column after ``column`` (the factor's column name, or ``"factor k"``
        for labels given as arrays) and one row per column and factor (per column, factor and
        cluster for ``by="cluster"``).

    Raises
    ------
    TypeError
        When ``data`` is not a DataFrame or 2-D array.
    ValueError
        When ``groups`` is missing, names no column, has the wrong length or missing labels.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> df = pd.DataFrame({"g": [1, 1, 2, 2, 3, 3], "x": [1.0, np.nan, np.nan, np.nan, 2.0, 3.0],
    ...                    "z": [1, 2, 3, 4, 5, 6]})
    >>> missing_by_cluster(df, "g")[["column", "n_systematic", "n_sporadic", "n_complete"]]
      column  n_systematic  n_sporadic  n_complete
    0      x             1           1           1
    >>> missing_by_cluster(df, "g", by="cluster")["status"].tolist()
    ['sporadic', 'systematic', 'complete']
    """
    if by not in ("column", "cluster"):
        raise ValueError(f"by must be 'column' or 'cluster'; got {by!r}")
    frame, clusters = _frame_and_factors(data, groups, cluster_structure)
    if clusters.n_factors == 1:
        return _missing_by_one_factor(frame, clusters.codes, np.asarray(clusters.labels, dtype=object), by)
    tables = []
    for name, factor in zip(_factor_names(clusters), clusters.factors, strict=True):  # a loop over the few factors
        labels = np.empty(len(factor.labels), dtype=object)
        labels[:] = list(factor.labels)  # tuple labels of combined nested factors stay tuples
        table = _missing_by_one_factor(frame, factor.codes, labels, by)
        tables.append(table.assign(factor=[name] * len(table), _order=np.arange(len(table))))
    joined = pd.concat(tables, ignore_index=True)
    if by == "column":  # one row per column and factor, the factors of a column together, outer to inner
        joined = joined.sort_values(["_order"], kind="stable").reset_index(drop=True)
    columns = ["column", "factor"] + [c for c in joined.columns if c not in ("column", "factor", "_order")]
    return joined[columns]


def _missing_by_one_factor(frame: pd.DataFrame, codes: np.ndarray, labels: np.ndarray, by: str) -> pd.DataFrame:
    """:func:`missing_by_cluster` for one grouping factor (codes and labels)."""
    J = len(labels)
    rows, long = [], []
    for name in frame.columns:  # loop over columns, not clusters
        missing = frame[name].isna().to_numpy()
        if not missing.any():
            continue
        size, observed = _cluster_table(missing, codes, J)
        status = np.where(observed == 0, "systematic", np.where(observed < size, "sporadic", "complete"))
        if by == "cluster":
            long.append(
                pd.DataFrame(
                    {
                        "column": name,
                        "cluster": labels,
                        "size": size,
                        "n_observed": observed,
                        "n_missing": size - observed,
                        "status": status,
                    }
                )
            )
            continue
        seen = observed[observed > 0]
        rows.append(
            {
                "column": name,
                "n_missing": int(missing.sum()),
                "prop_missing": float(missing.mean()),
                "n_clusters": J,
                "n_systematic": int((status == "systematic").sum()),
                "n_sporadic": int((status == "sporadic").sum()),
                "n_complete": int((status == "complete").sum()),
                "systematic_clusters": labels[status == "systematic"].tolist(),
                "min_cluster_size": int(size.min()),
                "median_cluster_size": float(np.median(size)),
                "max_cluster_size": int(size.max()),
                "median_observed": float(np.median(seen)) if seen.size else 0.0,
                "min_observed": int(seen.min()) if seen.size else 0,
            }
        )
    if by == "cluster":
        if not long:
            return pd.DataFrame(columns=["column", "cluster", "size", "n_observed", "n_missing", "status"])
        return pd.concat(long, ignore_index=True)
    columns = [
        "column",
        "n_missing",
        "prop_missing",
        "n_clusters",
        "n_systematic",
        "n_sporadic",
        "n_complete",
        "systematic_clusters",
        "min_cluster_size",
        "median_cluster_size",
        "max_cluster_size",
        "median_observed",
        "min_observed",
    ]
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------- recommendation
def recommend_methods(
    data: pd.DataFrame,
    groups: Any,
    large_cluster: int = LARGE_CLUSTER,
    prop_small: float = PROP_SMALL,
    min_clusters: int = MIN_CLUSTERS,
    column_kinds: dict | None = None,
    cluster_structure: str = "auto",
) -> pd.DataFrame:
    """A conditional model for every incomplete column, with the reason (micemd's ``find.defaultMethod``, revised).

    Rules, in order (``J_obs`` = clusters with at least one observed value of the column;
    a cluster is *small* when it has fewer than ``large_cluster`` observed values, and the
    clusters are *small* when more than ``prop_small`` of the ``J_obs`` are):

    1. no observed value: no model (``method`` None) -- nothing to impute from;
    2. constant within every cluster (a cluster-level variable): ``ClusterLevelNormal``
       (continuous), ``ClusterLevelPMM`` (integer), ``ClusterLevelLogistic`` (binary) or
       ``ClusterMean`` (categorical), which impute one value per cluster;
    3. categorical with more than two categories: ``RandomEffectsCategorical``, sporadic
       or systematic (there is no two-stage categorical model; its random intercepts are
       drawn from the population for systematically missing clusters);
    4. systematically missing in some cluster, clusters large and ``J_obs >= min_clusters``
       (binary: at least ``min_clusters`` clusters with both outcomes observed, since a
       per-cluster logistic fit of an all-0 or all-1 cluster is not estimable):
       a two-stage model -- ``TwoStagePMM`` (continuous and integer: keeps the observed support,
       and a skewed variable's shape) or ``TwoStageLogistic`` (binary). Large clusters make the
       per-cluster fits informative, every predictor gets a cluster-specific coefficient
       and cluster-specific residual variances (heteroscedasticity across studies), as in
       IPD meta-analysis;
    5. otherwise (sporadic only, or systematic with small or few clusters): the one-stage
       random-effects model -- ``RandomEffectsPMM`` (continuous and integer: observed values, so
       a skewed variable keeps its shape; or ``RandomEffectsPoisson`` for counts),
       ``RandomEffectsLogistic`` (binary) -- whose Gibbs sampler pools the clusters through
       the likelihood and also draws systematically missing clusters from the population.

    Differences from micemd's ``find.defaultMethod(I.small = 7, ni.small = 100,
    prop.small = 0.4)``: micemd counts "few clusters" among clusters *with missing values*
    (its comment says observed clusters; R_METHODS.md §2.3), and recommends two-stage
    models for large clusters even under sporadic missingness only; here the count is of
    clusters with observed values, the cluster-size rule is the same (100 observed rows,
    40 %), and sporadic-only columns keep the one-stage models (they use every row without
    a per-cluster fit that small or unbalanced clusters could break).

    With several grouping factors (nested or crossed) the models must take them all, and the
    rules are: no observed value, no model; constant within the units of a factor (outer
    factors first: a school-level variable is also constant within classes), that factor's
    cluster-level model, which imputes one value per unit of it; continuous or whole numbers
    otherwise, ``RandomEffectsPMM``, binary ``RandomEffectsLogistic``,
    categorical ``RandomEffectsCategorical``, with a random intercept per factor (systematically
    missing units drawn from the population; there are no two-stage or Poisson models for
    several factors).

    Parameters
    ----------
    data : DataFrame
        The incomplete data.
    groups : column name, array of shape (n,), or list of column names
        Cluster labels; several grouping factors as a list of column names (or a 2-D array /
        DataFrame of labels), outer to inner.
    large_cluster : int, default=100
        Observed values from which a cluster counts as large (micemd's ``ni.small``).
    prop_small : float, default=0.4
        Clusters are small when more than this share of the observed clusters is small
        (micemd's ``prop.small``).
    min_clusters : int, default=5
        Fewest clusters with observed values for a two-stage model (its meta-analysis
        estimates a between-cluster covariance from them).
    column_kinds : dict, default=None
        Kind overrides ``{column: "continuous"|"integer"|"binary"|"categorical"}``, as the
        imputer's parameter.
    cluster_structure : {"auto", "nested", "crossed"}, default="auto"
        With several factors, as the imputer's parameter.

    Returns
    -------
    DataFrame
        One row per incomplete column: ``column``, ``kind``, ``pattern`` (``"sporadic"``,
        ``"systematic"``, ``"sporadic+systematic"`` or ``"all missing"``),
        ``cluster_level`` (bool), ``n_clusters``, ``n_systematic``, ``n_sporadic``,
        ``n_observed_clusters``, ``prop_missing``, ``median_observed``, ``share_small``,
        ``method`` (an unfitted conditional model instance, or None), ``method_name`` and
        ``reason``. With several grouping factors: ``pattern`` per factor
        (``"school: sporadic; class: systematic"``), ``cluster_level`` the factor within whose
        units the column is constant (None for a row-level column), the counts of the innermost
        factor (of ``cluster_level``'s factor for a cluster-level column), and a ``factor`` column
        naming the factor those counts are of.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"study": np.repeat(np.arange(8), 150), "x": rng.normal(size=1200),
    ...                    "y": rng.normal(size=1200)})
    >>> df.loc[df["study"] < 2, "x"] = np.nan                 # two studies never measured x
    >>> df.loc[rng.random(1200) < 0.1, "y"] = np.nan          # y sporadically missing
    >>> recommend_methods(df, "study")[["column", "pattern", "method_name"]]
      column     pattern       method_name
    0      x  systematic       TwoStagePMM
    1      y    sporadic  RandomEffectsPMM
    """
    if isinstance(large_cluster, bool) or not (isinstance(large_cluster, int | np.integer) and large_cluster >= 1):
        raise ValueError(f"large_cluster must be a positive integer; got {large_cluster!r}")
    if isinstance(prop_small, bool) or not (isinstance(prop_small, int | float | np.number) and 0 <= prop_small <= 1):
        raise ValueError(f"prop_small must be a number in [0, 1]; got {prop_small!r}")
    if isinstance(min_clusters, bool) or not (isinstance(min_clusters, int | np.integer) and min_clusters >= 2):
        raise ValueError(f"min_clusters must be an integer >= 2; got {min_clusters!r}")
    if column_kinds is not None and not isinstance(column_kinds, dict):
        raise TypeError(f"column_kinds must be a dict {{column: kind}}; got {type(column_kinds).__name__}")
    column_kinds = dict(column_kinds or {})
    frame, clusters = _frame_and_factors(data, groups, cluster_structure)
    unknown = [k for k in column_kinds if k not in frame.columns]
    if unknown:
        raise ValueError(f"column_kinds names columns that are not in data (or are the groups column): {unknown}")
    if clusters.n_factors > 1:
        return _recommend_several(frame, clusters, column_kinds)
    return _recommend_one_factor(frame, clusters, column_kinds, large_cluster, prop_small, min_clusters)


class ColumnFacts(NamedTuple):
    """What the imputer's set-up already knows of a column, so that the recommendation does not detect it again:
    its codec, its encoded values (NaN where missing) and its constancy within clusters (the one rule,
    :meth:`~skmlmi._clusters.Clusters.constancy`)."""

    codec: Any
    encoded: np.ndarray
    constancy: Literal[False, "whole", "partial"]


def _recommend_one_factor(
    frame: pd.DataFrame,
    clusters: Clusters,
    column_kinds: dict,
    large_cluster: int = LARGE_CLUSTER,
    prop_small: float = PROP_SMALL,
    min_clusters: int = MIN_CLUSTERS,
    facts: dict | None = None,
) -> pd.DataFrame:
    """:func:`recommend_methods` with one grouping factor. ``facts`` (column name -> :class:`ColumnFacts`)
    gives what the caller has already detected; other columns are detected here."""
    codes, labels = clusters.codes, clusters.labels
    summary = missing_by_cluster(frame, clusters)
    out = []
    for row in summary.to_dict("records"):  # loop over incomplete columns; names of any type (tuples too)
        name = row["column"]
        series = frame[name]
        known = (facts or {}).get(name)
        codec = known.codec if known is not None else detect_codec(series, name, column_kinds.get(name))
        kind = codec.kind
        encoded = known.encoded if known is not None else np.asarray(codec.encode(series), dtype=float)
        missing = series.isna().to_numpy()
        size, observed = _cluster_table(missing, codes, len(labels))
        j_obs = int((observed > 0).sum())
        j_fit = j_obs
        if kind == "binary":
            # a per-cluster logistic fit needs both outcomes: all-0 / all-1 clusters are not estimable
            events = np.bincount(codes, weights=np.nan_to_num(encoded), minlength=len(labels))
            j_fit = int(((events > 0) & (events < observed)).sum())
        share_small = float((observed[observed > 0] < large_cluster).mean()) if j_obs else float("nan")
        n_sys, n_spor = int(row["n_systematic"]), int(row["n_sporadic"])
        if j_obs == 0:
            pattern = "all missing"
        elif n_sys and n_spor:
            pattern = "sporadic+systematic"
        else:
            pattern = "systematic" if n_sys else "sporadic"
        constant = known.constancy if known is not None else is_cluster_constant(series.to_numpy(), codes)
        level2 = bool(j_obs and constant)
        count = kind == "integer" and not level2 and is_count_column(encoded, codes)
        model, reason = _choose(
            kind,
            pattern,
            level2,
            j_obs,
            share_small,
            n_sys,
            large_cluster,
            prop_small,
            min_clusters,
            j_fit,
            count,
        )
        out.append(
            {
                "column": name,
                "kind": kind,
                "pattern": pattern,
                "cluster_level": level2,
                "n_clusters": int(row["n_clusters"]),
                "n_systematic": n_sys,
                "n_sporadic": n_spor,
                "n_observed_clusters": j_obs,
                "prop_missing": float(row["prop_missing"]),
                "median_observed": float(row["median_observed"]),
                "share_small": share_small,
                "method": model,
                "method_name": None if model is None else type(model).__name__,
                "reason": reason,
            }
        )
    return pd.DataFrame(out, columns=[c for c in RECOMMENDATION_COLUMNS if c != "factor"])


def _choose(
    kind, pattern, level2, j_obs, share_small, n_sys, large_cluster, prop_small, min_clusters, j_fit, count=False
) -> tuple[BaseConditionalImputer | None, str]:
    """The rules of :func:`recommend_methods`: the situation, the registry's model for it, and the reason."""
    if j_obs == 0:
        return None, "no observed value: nothing to impute from (drop the column or give it a model by hand)"
    small = share_small > prop_small
    meta_analysable = not small and j_fit >= min_clusters
    cluster_level = ("partial" if "sporadic" in pattern else True) if level2 else False
    model = default_model(
        kind, True, cluster_level, systematic=n_sys > 0, meta_analysable=meta_analysable, count=count and not level2
    )
    if level2:
        if "sporadic" in pattern:
            return model, (
                "constant within clusters (cluster-level) but missing in part of some "
                "clusters: filled from the cluster's observed value (clusters with none "
                "observed from a cluster-level model)"
            )
        if kind == "categorical":
            return model, "constant within clusters (cluster-level) and categorical: imputed per cluster"
        return model, "constant within clusters (cluster-level): imputed once per cluster"
    if kind == "categorical":
        return model, (
            f"categorical, {pattern} missingness: random-intercept categorical model "
            + (
                "(systematically missing clusters drawn from the population; no two-stage categorical model)"
                if n_sys
                else "(one-stage)"
            )
        )
    if n_sys:
        if meta_analysable:
            return model, (
                f"systematically missing in {n_sys} cluster(s); {j_obs} observed clusters, "
                f"{share_small:.0%} with < {large_cluster} observed values (<= {prop_small:.0%}): large clusters, "
                "two-stage model (per-cluster fits + random-effects meta-analysis)"
            )
        why = (
            f"{share_small:.0%} of the observed clusters have < {large_cluster} observed values "
            f"(> {prop_small:.0%}: small clusters)"
            if small
            else f"only {j_obs} observed clusters (< {min_clusters}) for a meta-analysis"
            if j_obs < min_clusters
            else f"only {j_fit} of the {j_obs} observed clusters have both outcomes (< {min_clusters}) for a "
            "meta-analysis of per-cluster logistic fits"
        )
        lead = f"systematically missing in {n_sys} cluster(s) but {why}: one-stage random-effects model"
    else:
        lead = "sporadic missingness only: one-stage random-effects model using every observed row"
    if kind == "integer" and type(model).__name__ in COUNT_MODELS.values():
        return model, lead + (
            " (Poisson: non-negative whole numbers spread like counts within clusters; the imputer uses "
            "RandomEffectsPMM instead where a Poisson regression on its predictors does not fit)"
        )
    if kind == "integer":
        return model, lead + " (PMM: integers stay integers)"
    return model, lead


def _recommend_several(frame: pd.DataFrame, clusters: Clusters, column_kinds: dict) -> pd.DataFrame:
    """:func:`recommend_methods` with several grouping factors: models that take them all, or None with why."""
    names = _factor_names(clusters)
    summary = missing_by_cluster(frame, clusters)
    out = []
    for name, rows in summary.groupby("column", sort=False):  # loop over incomplete columns
        series = frame[name]
        codec = detect_codec(series, name, column_kinds.get(name))
        kind = codec.kind
        by_factor = rows.set_index("factor")
        patterns = {f: _pattern(by_factor.loc[f]) for f in names}
        level = None
        if patterns[names[0]] != "all missing":
            encoded = np.asarray(codec.encode(series), dtype=float)
            missing = np.isnan(encoded)
            level, found = next(
                ((k, c) for k, c in enumerate(f.constancy(encoded, missing) for f in clusters.factors) if c),
                (None, False),
            )
        counted = names[-1] if level is None else names[level]
        row = by_factor.loc[counted]
        if patterns[names[0]] == "all missing":
            model, reason = (
                None,
                "no observed value: nothing to impute from (drop the column or give it a model by hand)",
            )
        elif level is not None:
            partial = "partial" if found == "partial" else True
            model = default_model(kind, True, partial)
            reason = (
                f"constant within the units of {counted!r} (a {counted}-level variable): imputed once per {counted} "
                "unit by a cluster-level model, lower-level predictors aggregated to it"
            )
            if partial == "partial":
                reason += "; missing in part of some units: filled from the unit's observed value"
        elif find_models(kind, multiple_factors=True):
            model = default_model(kind, True, False)  # the default of every kind that has one takes several factors
            systematic = [f for f in names if "systematic" in patterns[f]]
            reason = (
                f"a random intercept per grouping factor ({', '.join(map(repr, names))}, {clusters.structure})"
                + (
                    f"; systematically missing by {', '.join(map(repr, systematic))}: those units' intercepts are "
                    "drawn from the population (no two-stage model takes several factors)"
                    if systematic
                    else ": sporadic missingness only, every observed row used"
                )
                + (" (PMM: integers stay integers)" if kind == "integer" else "")
            )
        else:
            model = None
            reason = (
                f"no conditional model takes several grouping factors for a {kind} column yet: give groups one "
                f"factor (e.g. the innermost, {names[-1]!r}) to impute it"
            )
        out.append(
            {
                "column": name,
                "kind": kind,
                "pattern": "; ".join(f"{f}: {patterns[f]}" for f in names),
                "cluster_level": None if level is None else names[level],
                "factor": counted,
                "n_clusters": int(row["n_clusters"]),
                "n_systematic": int(row["n_systematic"]),
                "n_sporadic": int(row["n_sporadic"]),
                "n_observed_clusters": int(row["n_clusters"] - row["n_systematic"]),
                "prop_missing": float(row["prop_missing"]),
                "median_observed": float(row["median_observed"]),
                "method": model,
                "method_name": None if model is None else type(model).__name__,
                "reason": reason,
            }
        )
    return pd.DataFrame(out, columns=[c for c in RECOMMENDATION_COLUMNS if c != "share_small"])


def _pattern(row: pd.Series) -> str:
    """The pattern of one column by one factor, from its :func:`missing_by_cluster` row."""
    n_sys, n_spor = int(row["n_systematic"]), int(row["n_sporadic"])
    if n_sys == int(row["n_clusters"]):
        return "all missing"
    if n_sys and n_spor:
        return "sporadic+systematic"
    return "systematic" if n_sys else "sporadic"
