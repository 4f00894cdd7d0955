"""Role codes, the predictor matrix and the default conditional model of each column.

The predictor matrix has one row per target variable and one column per variable;
entries are mice's role codes (see :data:`skmlmi.conditional.ROLE_NAMES`). Only rows of
incomplete variables matter. The cluster column, when the clusters are a column of the
data, is coded ``-2`` (cluster identifier of a multilevel model), ``1`` (cluster fixed
effects for a single-level model) or ``0`` (ignored).
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from ._clusters import Clusters
from ._columns import detect_codec
from .analysis.formula import parse_formula
from .conditional.base import ROLE_NAMES, BaseConditionalImputer
from .conditional.cluster_level import is_cluster_constant
from .conditional.registry import default_model, find_models

if TYPE_CHECKING:  # annotations only: the imputer imports this module
    from .imputer import MultilevelIterativeImputer

__all__ = ["make_predictor_matrix", "validate_predictor_matrix", "default_method", "default_cluster_level_model"]

VALID_ROLES = frozenset(ROLE_NAMES)
#: Codes the cluster column may take in a row of the predictor matrix.
CLUSTER_ROLES = frozenset({0, 1, -2})


def make_predictor_matrix(columns: Sequence, groups_column: Hashable | None = None) -> pd.DataFrame:
    """Default predictor matrix: every other column a fixed predictor (1), the cluster -2.

    Parameters
    ----------
    columns : sequence
        Variable names (the cluster column included when it is one of them).
    groups_column : hashable, optional
        Name of the cluster column.

    Examples
    --------
    >>> make_predictor_matrix(["school", "popular", "sex"], groups_column="school")
             school  popular  sex
    school        0        0    0
    popular      -2        0    1
    sex          -2        1    0
    """
    if isinstance(columns, str) or not isinstance(columns, Iterable):
        raise TypeError(f"columns must be a sequence of column names; got {type(columns).__name__}.")
    columns = pd.Index(list(columns), tupleize_cols=False)  # tuple names stay names, not a MultiIndex
    if not columns.is_unique:
        raise ValueError(f"columns holds duplicated names: {sorted(map(str, columns[columns.duplicated()]))}.")
    if groups_column is not None and groups_column not in columns:
        raise ValueError(f"groups_column {groups_column!r} is not one of the columns {list(columns)}.")
    matrix = pd.DataFrame(1 - np.eye(len(columns), dtype=int), index=columns, columns=columns)
    if groups_column is not None:
        matrix[groups_column] = -2
        matrix.loc[groups_column, :] = 0
    return matrix


def _given_entries(predictor_matrix, columns) -> list[tuple]:
    """(target, predictor, code) triples of a dict, DataFrame or square array."""
    if isinstance(predictor_matrix, dict):
        for predictor, column in predictor_matrix.items():
            if not isinstance(column, Mapping | pd.Series):
                raise TypeError(
                    f"predictor_matrix as a dict maps each predictor to {{target: code}}; "
                    f"predictor_matrix[{predictor!r}] is {type(column).__name__} ({column!r:.40})."
                )
        return [
            (target, predictor, value)
            for predictor, column in predictor_matrix.items()
            for target, value in column.items()
        ]
    if isinstance(predictor_matrix, pd.DataFrame):
        for axis in (predictor_matrix.index, predictor_matrix.columns):
            if not axis.is_unique:
                raise ValueError(f"predictor_matrix repeats the labels {sorted(map(str, axis[axis.duplicated()]))}.")
        values = predictor_matrix.to_numpy()
        return [
            (t, p, values[i, j])
            for i, t in enumerate(predictor_matrix.index)
            for j, p in enumerate(predictor_matrix.columns)
        ]
    array = np.asarray(predictor_matrix)
    if array.shape != (len(columns), len(columns)):
        raise ValueError(
            f"predictor_matrix has shape {array.shape}; expected ({len(columns)}, {len(columns)}), "
            "one row and one column per variable in the order of X."
        )
    return [(t, p, array[i, j]) for i, t in enumerate(columns) for j, p in enumerate(columns)]


def _valid_block(predictor_matrix, columns, position):
    """Row positions, column positions and float codes of a DataFrame or square array that is valid as a whole.

    None for a dict, or when some entry needs the entry-by-entry checks of
    :func:`validate_predictor_matrix` (unknown or repeated names, wrong shape, a value that
    is not a role code): those then raise their error naming the entry.
    """
    if isinstance(predictor_matrix, pd.DataFrame):
        index, labels = list(predictor_matrix.index), list(predictor_matrix.columns)
        try:
            rows = np.array([position[name] for name in index], dtype=np.intp)
            cols = np.array([position[name] for name in labels], dtype=np.intp)
        except (KeyError, TypeError):  # unknown (or unhashable) names
            return None
        if np.unique(rows).size < rows.size or np.unique(cols).size < cols.size:
            return None
        frame = predictor_matrix
    elif predictor_matrix is None or isinstance(predictor_matrix, dict):
        return None
    else:
        frame = np.asarray(predictor_matrix)
        if frame.shape != (len(columns), len(columns)):
            return None
        rows = cols = np.arange(len(columns))
    try:
        values = np.asarray(frame, dtype=float)
    except (TypeError, ValueError):
        return None
    known = values[~np.isnan(values)]
    if not np.all(np.isin(known, sorted(VALID_ROLES))):
        return None
    return rows, cols, values


def validate_predictor_matrix(
    predictor_matrix: pd.DataFrame | Mapping | ArrayLike | None,
    columns: Sequence,
    groups_column: Hashable | None = None,
    defaults: ArrayLike | None = None,
    return_given: bool = False,
    other_groups_columns: Sequence = (),
) -> pd.DataFrame | tuple[pd.DataFrame, np.ndarray]:
    """Check a user's predictor matrix and complete it to the full square form.

    Rows and columns not given default to the :func:`make_predictor_matrix` entries (or to
    ``defaults``, a square array of codes), so a user may pass only the rows of the
    variables they want to change. An array must be square with one row and column per
    variable. Unknown names, unknown codes, a variable predicting itself and a cluster
    column coded other than 0, 1 or -2 are ``ValueError`` naming the entry. With
    ``return_given``, also returns the boolean (p, p) array of the entries the user set.

    Parameters
    ----------
    predictor_matrix : DataFrame, dict of dicts, array-like or None
        Role codes, target rows x predictor columns (a dict: predictor -> {target: code},
        as a DataFrame's ``to_dict()``); None for the defaults.
    columns : sequence
        The variables' names, in the data's order.
    groups_column : hashable, default=None
        Name of the cluster column, when it is one of ``columns``.
    defaults : array-like of shape (p, p), default=None
        Codes of the entries not given; default those of :func:`make_predictor_matrix`.
    return_given : bool, default=False
        Also return which entries the user set.
    other_groups_columns : sequence, default=()
        The further grouping factors' columns (several factors): cluster identifiers of every
        model that takes several factors, coded ``-2`` as the fitted ``predictor_matrix_`` shows
        them (``0`` is read the same); any other code given there is an error.

    Returns
    -------
    DataFrame of shape (p, p), or (DataFrame, ndarray of bool) with ``return_given``
    """
    columns = list(columns)
    position = {name: k for k, name in enumerate(columns)}
    if defaults is not None:
        codes = np.array(defaults, dtype=int)
    else:
        codes = 1 - np.eye(len(columns), dtype=int)
        if groups_column is not None:
            g = position[groups_column]
            codes[:, g] = -2
            codes[g, :] = 0
    given = np.zeros(codes.shape, dtype=bool)
    block = _valid_block(predictor_matrix, columns, position)
    if block is not None:  # a whole matrix of valid codes at once: p^2 entries, no Python loop over them
        rows, cols, values = block
        known = ~np.isnan(values)  # a DataFrame's empty cell keeps the default
        codes[np.ix_(rows, cols)] = np.where(known, values, codes[np.ix_(rows, cols)]).astype(int)
        given[np.ix_(rows, cols)] = known
    elif predictor_matrix is not None:
        entries = _given_entries(predictor_matrix, columns)
        unknown = sorted({str(n) for r, c, _ in entries for n in (r, c) if n not in position})
        if unknown:
            raise ValueError(f"predictor_matrix names unknown columns: {unknown}.")
        for target, predictor, value in entries:
            try:
                number = float(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"predictor_matrix must hold integer role codes; predictor_matrix[{target!r}, {predictor!r}] "
                    f"is {value!r:.40}."
                ) from exc
            if np.isnan(number):
                continue  # a DataFrame's empty cell: keep the default
            if not np.isfinite(number) or number != round(number):
                raise ValueError(
                    f"predictor_matrix must hold integer role codes (no fractions); "
                    f"predictor_matrix[{target!r}, {predictor!r}] is {number}."
                )
            if int(number) not in VALID_ROLES:
                raise ValueError(
                    f"predictor_matrix[{target!r}, {predictor!r}] = {int(number)} is not a role code; valid "
                    f"codes: {', '.join(f'{k} ({v})' for k, v in ROLE_NAMES.items())}."
                )
            codes[position[target], position[predictor]] = int(number)
            given[position[target], position[predictor]] = True
    labels = pd.Index(columns, tupleize_cols=False)  # tuple names stay names, not a MultiIndex
    full = pd.DataFrame(codes, index=labels, columns=labels)
    names = columns
    diagonal = np.flatnonzero(np.diag(codes) != 0)
    if diagonal.size:
        name = names[diagonal[0]]
        raise ValueError(f"predictor_matrix[{name!r}, {name!r}] must be 0: a variable cannot predict itself.")
    if groups_column is not None:
        g = names.index(groups_column)
        bad_cluster = np.flatnonzero(~np.isin(codes[:, g], sorted(CLUSTER_ROLES)))
        if bad_cluster.size:
            name = names[bad_cluster[0]]
            raise ValueError(
                f"predictor_matrix[{name!r}, {groups_column!r}] = {codes[bad_cluster[0], g]}: the cluster "
                "column may only be -2 (cluster identifier), 1 (cluster fixed effects) or 0 (not used)."
            )
        further = [position[c] for c in other_groups_columns]
        for k in further:
            coded = given[:, k] & ~np.isin(codes[:, k], [-2, 0])
            wrong = np.flatnonzero(coded & ~np.isin(np.arange(len(names)), further + [g]))
            if wrong.size:
                raise ValueError(
                    f"predictor_matrix[{names[wrong[0]]!r}, {names[k]!r}] = {codes[wrong[0], k]}: {names[k]!r} is a "
                    "further grouping factor, a cluster identifier of every model (-2)."
                )
        others = np.delete(codes, [g] + further, axis=1) == -2
        rows = np.flatnonzero(others.any(axis=1))
        if rows.size:
            other_names = [c for k, c in enumerate(names) if k != g and k not in further]
            raise ValueError(
                f"predictor_matrix row {names[rows[0]]!r} codes "
                f"{[other_names[k] for k in np.flatnonzero(others[rows[0]])]} as -2, but only the cluster column "
                f"{groups_column!r} can be the cluster identifier."
            )
    if groups_column is None and (full.to_numpy() == -2).any():
        r, c = map(int, np.argwhere(full.to_numpy() == -2)[0])
        raise ValueError(
            f"predictor_matrix[{full.index[r]!r}, {full.columns[c]!r}] = -2 but no groups were given; "
            "pass groups= to fit."
        )
    return (full, given) if return_given else full


def default_cluster_level_model(kind: str, partial_clusters: bool = False) -> BaseConditionalImputer:
    """Default model of a variable constant within clusters (a cluster-level variable).

    ``ClusterMean`` where some cluster is only partly observed (its observed value fills the
    cluster) or the variable is categorical; otherwise one value per cluster from a model at
    the cluster level: ``ClusterLevelNormal`` (continuous), ``ClusterLevelPMM`` (whole
    numbers: observed values), ``ClusterLevelLogistic`` (binary). The choice is the
    registry's (:data:`skmlmi.conditional.registry.DEFAULT_MODELS`, which gives the reasons).

    Parameters
    ----------
    kind : {"continuous", "integer", "binary", "categorical"}
        The column's kind.
    partial_clusters : bool, default=False
        Whether some cluster observes the variable in only part of its rows.

    Returns
    -------
    BaseConditionalImputer
    """
    return default_model(kind, True, "partial" if partial_clusters else True)


def default_method(
    kind: str, multilevel: bool, cluster_level: bool = False, partial_clusters: bool = False
) -> BaseConditionalImputer:
    """Default conditional model for a column of the given kind.

    Without clusters these are mice's defaults (pmm, logreg, polyreg). With clusters
    (``multilevel``) they are the random-effects models: continuous ->
    :class:`~skmlmi.conditional.RandomEffectsNormal` (proper draws of every parameter,
    the model of R's 2l.pan, whose variance components it reproduces), integer ->
    :class:`~skmlmi.conditional.RandomEffectsPMM` (imputes observed values only, so
    counts and scores keep their support), binary ->
    :class:`~skmlmi.conditional.RandomEffectsLogistic`, categorical ->
    :class:`~skmlmi.conditional.RandomEffectsCategorical`. A variable constant within
    every cluster (``cluster_level``) gets :func:`default_cluster_level_model`. The choice
    is the registry's (:func:`skmlmi.conditional.registry.default_model`, which also knows
    systematically missing clusters).

    Parameters
    ----------
    kind : {"continuous", "integer", "binary", "categorical"}
        The column's kind.
    multilevel : bool
        Whether the data have clusters.
    cluster_level : bool, default=False
        Whether the variable is constant within every cluster.
    partial_clusters : bool, default=False
        For a cluster-level variable: whether some cluster observes it in only part of its rows.

    Returns
    -------
    BaseConditionalImputer
    """
    return default_model(kind, multilevel, ("partial" if partial_clusters else True) if cluster_level else False)


# =============================================================================== quickpred, suggestions
# Appended section (issue 8): predictor selection from the data (mice's quickpred) and from the
# analysis model (suggest_predictors). Imports are local to this section so that the module's
# existing top stays untouched.
from dataclasses import dataclass, field  # noqa: E402

__all__ += ["quickpred", "suggest_predictors", "PredictorSuggestion"]


def _numeric_codes(data: pd.DataFrame) -> pd.DataFrame:
    """R's ``data.matrix``: numbers as floats, bool as 0/1, categoricals and text by their level codes.

    Categorical columns use their category order, text columns their sorted distinct
    values (R's alphabetical factor levels); missing values stay NaN.
    """
    out = {}
    for name in data.columns:
        col = data[name]
        if isinstance(col.dtype, pd.CategoricalDtype):
            codes = col.cat.codes.to_numpy().astype(float)
            codes[codes < 0] = np.nan
            out[name] = codes
        elif pd.api.types.is_bool_dtype(col.dtype):
            out[name] = col.astype(float).to_numpy()
        elif pd.api.types.is_numeric_dtype(col.dtype):
            out[name] = col.to_numpy(dtype=float, na_value=np.nan)
        else:
            labels = col.dropna().astype(str)
            levels = np.sort(labels.unique())
            codes = np.full(len(col), np.nan)
            codes[col.notna().to_numpy()] = np.searchsorted(levels, labels.to_numpy())
            out[name] = codes
    return pd.DataFrame(out, index=data.index, columns=data.columns)


def _correlations(data: pd.DataFrame, method: str = "pearson") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pairwise-complete correlations v = cor(x_a, x_b) and u = cor(R_a, x_b) (signed, NaN kept).

    ``R_a`` is the response indicator of column a (1 observed, 0 missing); u's rows are the
    indicators, its columns the variables, as in mice's ``quickpred``.
    """
    if method not in ("pearson", "spearman", "kendall"):
        raise ValueError(f"method must be 'pearson', 'spearman' or 'kendall'; got {method!r}.")
    x = _numeric_codes(data)
    v = x.corr(method=method)
    indicators = data.notna().astype(float)
    indicators.columns = [f"\0R{i}" for i in range(data.shape[1])]  # names that cannot clash
    both = pd.concat([indicators, x.set_axis([f"\0X{i}" for i in range(data.shape[1])], axis=1)], axis=1)
    p = data.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        full = both.corr(method=method).to_numpy()
    u = pd.DataFrame(full[:p, p:], index=data.columns, columns=data.columns)
    return v, u


def _per_target(value, name: str, columns: list) -> np.ndarray:
    """A threshold as a (p, p) matrix: scalar, one value per target (sequence/Series/dict) or a matrix."""
    p = len(columns)
    if isinstance(value, pd.DataFrame):
        return value.reindex(index=columns, columns=columns).to_numpy(dtype=float)
    if isinstance(value, dict):
        value = pd.Series(value)
    if isinstance(value, pd.Series):
        unknown = sorted(map(str, set(value.index) - set(columns)))
        if unknown:
            raise ValueError(f"{name} names unknown columns: {unknown}.")
        value = value.reindex(columns).to_numpy(dtype=float)
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        return np.full((p, p), float(arr))
    if arr.shape == (p,):
        return np.repeat(arr[:, None], p, axis=1)  # R recycles a vector down the columns: one value per target
    if arr.shape == (p, p):
        return arr
    raise ValueError(
        f"{name} must be a scalar, one value per column ({p}) or a {p} x {p} matrix; got shape {arr.shape}."
    )


def _column_list(names, columns: list, argument: str) -> list:
    if isinstance(names, str) or not isinstance(names, (list, tuple, set, frozenset, pd.Index, np.ndarray)):
        names = [names]
    names = list(names)
    unknown = [n for n in names if n not in columns]
    if unknown:
        raise ValueError(f"{argument} names columns not in the data: {unknown}.")
    return names


def quickpred(
    data: pd.DataFrame,
    mincor: float | ArrayLike | Mapping = 0.1,
    minpuc: float | ArrayLike | Mapping = 0,
    include: Hashable | Sequence[Hashable] = (),
    exclude: Hashable | Sequence[Hashable] = (),
    method: str = "pearson",
    groups: Hashable | None = None,
) -> pd.DataFrame:
    """Predictor matrix from the correlations in the data (mice's ``quickpred``).

    For target a and candidate predictor b, with x the data (categorical and text columns
    by their level codes, R's ``data.matrix``) and R_a the response indicator of a
    (1 observed, 0 missing), pairwise-complete correlations give

        ``v[a, b] = |cor(x_a, x_b)|``, ``u[a, b] = |cor(R_a, x_b)|`` (NaN -> 0),

    and b predicts a when ``max(v[a, b], u[a, b]) > mincor``: it predicts the value or
    whether the value is missing (van Buuren et al. 1999). When ``minpuc`` is not 0, b
    is dropped where its proportion of usable cases

        puc[a, b] = #(a missing and b observed) / #(a missing)

    is below ``minpuc``. Then columns in ``exclude`` are set to 0, columns in ``include``
    to 1, the diagonal to 0 and the rows of complete variables to 0 (mice's order).

    Parameters
    ----------
    data : DataFrame
        The incomplete data.
    mincor : float, sequence, Series, dict or DataFrame, default=0.1
        Minimum correlation: one value, one per target (a sequence in column order, or a
        Series/dict by name) or a target x predictor matrix.
    minpuc : float, sequence, Series, dict or DataFrame, default=0
        Minimum proportion of usable cases, in the same forms.
    include, exclude : column name or sequence of names, default=()
        Predictors always used / never used. Unlike R's partial matching (``pmatch``),
        names must match exactly; unknown names are an error.
    method : {"pearson", "spearman", "kendall"}, default="pearson"
        Correlation coefficient.
    groups : column name, default=None
        The cluster column (not in R's quickpred, which knows nothing of clusters): it is
        left out of the correlations (its labels are nominal) and coded -2 in the row of
        every incomplete variable, so the matrix is ready for the multilevel models.

    Returns
    -------
    DataFrame of int, shape (p, p)
        Rows are targets, columns predictors, both labelled by the column names.

    References
    ----------
    van Buuren, S., Boshuizen, H. C., Knook, D. L. (1999). Multiple imputation of missing
    blood pressure covariates in survival analysis. Statistics in Medicine 18, 681-694.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> df = pd.DataFrame({"y": [1.0, 2, np.nan, 4, 5, np.nan], "x": [1.0, 2, 3, 4, 6, 5],
    ...                    "z": [3.0, 1, 2, 3, 1, 2]})
    >>> quickpred(df, mincor=0.3)
       y  x  z
    y  0  1  1
    x  0  0  0
    z  0  0  0
    """
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"quickpred: data must be a pandas DataFrame; got {type(data).__name__}.")
    columns = list(data.columns)
    if groups is not None:
        if isinstance(groups, (list, np.ndarray, pd.Series)) or groups not in columns:
            raise ValueError(f"quickpred: groups must be the name of the cluster column of data; got {groups!r}.")
        if data[groups].isna().any():
            raise ValueError(f"quickpred: the cluster column {groups!r} has missing labels.")
    exclude = _column_list(exclude, columns, "exclude")
    include = _column_list(include, columns, "include")
    mincor_m = _per_target(mincor, "mincor", columns)
    minpuc_m = _per_target(minpuc, "minpuc", columns)

    v, u = _correlations(data, method)
    v, u = v.to_numpy(), u.to_numpy()
    pred = (_quickpred_score(v, u) > mincor_m).astype(int)
    if np.any(minpuc_m != 0):
        missing = data.isna().to_numpy().astype(float)
        n_missing = missing.sum(axis=0)
        usable = missing.T @ (1.0 - missing)  # [a, b] = #(a missing, b observed)
        with np.errstate(invalid="ignore", divide="ignore"):
            puc = usable / n_missing[:, None]
        pred[np.nan_to_num(puc, nan=1.0) < minpuc_m] = 0
    index = {c: i for i, c in enumerate(columns)}
    pred[:, [index[c] for c in exclude]] = 0
    pred[:, [index[c] for c in include]] = 1
    np.fill_diagonal(pred, 0)
    complete = ~data.isna().any(axis=0).to_numpy()
    pred[complete, :] = 0
    out = pd.DataFrame(pred, index=pd.Index(columns), columns=pd.Index(columns))
    if groups is not None:
        out[groups] = 0
        out.loc[~complete, groups] = -2
        out.loc[groups, :] = 0
    return out


@dataclass
class PredictorSuggestion:
    """Imputation model proposed from an analysis model by :func:`suggest_predictors`.

    Attributes
    ----------
    predictor_matrix : DataFrame
        Role codes over the data's columns (rows = targets), ready for
        ``MultilevelIterativeImputer(predictor_matrix=...)``.
    methods : dict
        Column -> conditional model for every incomplete variable the formula uses.
    explanation : str
        The reasoning, one paragraph per target, with the rules applied and their sources.
    levels : dict
        Column -> 1 (varies within clusters) or 2 (constant within clusters). With several
        grouping factors: 1, or the grouping column within whose units the column is constant
        (the outermost such factor: a school-level variable is also constant within classes).
    groups : str, list of str or None
        The ``groups`` to fit the imputer with: the cluster column, the grouping columns outer to
        inner (several random terms, e.g. ``["school", "class"]`` for ``(1 | school/class)``), or
        None for a single-level model.
    cluster_structure : {"auto", "nested"} or None
        With several grouping factors, the imputer's ``cluster_structure``: ``"nested"`` for a
        formula that nests (``school/class``, ``school:class``: inner labels combined with the
        outer ones, as lme4), ``"auto"`` for separate terms such as ``(1 | a) + (1 | b)``; None
        otherwise. :meth:`MultilevelIterativeImputer.from_suggestion` sets it.
    random_slope_levels : dict
        With several grouping factors, the imputer's ``random_slope_levels``: each predictor coded
        2 or 4 whose random slope the formula gives to some factors only (``(1 | s) + (1 + x | d)``:
        ``{"x": ["d"]}``), the outcome's reversed slope in its covariates' models included (the
        factors of all of them). Empty when every slope is at every factor.
        :meth:`MultilevelIterativeImputer.from_suggestion` sets it.
    """

    predictor_matrix: pd.DataFrame
    methods: dict
    explanation: str
    levels: dict = field(default_factory=dict)
    groups: Any = None
    cluster_structure: str | None = None
    random_slope_levels: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.explanation

    def imputer(self, **params: Any) -> MultilevelIterativeImputer:
        """Deprecated: use ``MultilevelIterativeImputer.from_suggestion(suggestion, **params)``.

        Kept for one release; the imputer is built where the imputer lives.

        Parameters
        ----------
        **params
            Further parameters of the imputer (``n_imputations``, ``random_state``, ...).

        Returns
        -------
        MultilevelIterativeImputer
        """
        warnings.warn(
            "PredictorSuggestion.imputer() is deprecated; use MultilevelIterativeImputer.from_suggestion(suggestion).",
            FutureWarning,
            stacklevel=2,
        )
        from .imputer import MultilevelIterativeImputer  # the deprecated path only: imputer imports this module

        return MultilevelIterativeImputer.from_suggestion(self, **params)


_ROLE_FALLBACK = {4: (2, 3, 1), 3: (1,), 2: (1,), 1: ()}


def _accepted_code(code: int, model) -> int:
    if code in model.accepted_roles:
        return code
    for alt in _ROLE_FALLBACK[code]:
        if alt in model.accepted_roles:
            return alt
    return 1


def _formula_groups(parsed, data: pd.DataFrame) -> tuple[list, str | None]:
    """The imputer's ``groups`` (columns, outer to inner) and ``cluster_structure`` for the formula's random terms.

    One factor: its name, as before. Several one-column factors (``(1 | a) + (1 | b)``): those
    columns, fewest units first (the outer factor of a nesting has fewer units), structure
    ``"auto"`` (nested or crossed as the labels say, as lme4 reads them). Factors that nest by
    interaction (``school/class`` gives ``school`` and ``class:school``): the chain's columns,
    outer to inner, structure ``"nested"`` (the inner labels combined with the outer, as lme4).
    """
    factors = parsed.random_factors
    if len(factors) <= 1:
        return ([parsed.group] if factors else []), None
    if all(len(f.columns) == 1 for f in factors):
        columns = list(dict.fromkeys(f.columns[0] for f in factors))
        counts = data[columns].nunique()
        return sorted(columns, key=lambda c: counts[c]), "auto"  # a stable sort: ties keep the formula's order
    chain = sorted(factors, key=lambda f: len(f.columns))
    groups: list = []
    for factor in chain:
        new = [c for c in factor.columns if c not in groups]
        if len(new) != 1 or len(factor.columns) != len(groups) + 1:
            names = ", ".join(repr(f.name) for f in factors)
            raise ValueError(
                f"suggest_predictors: the grouping factors {names} of formula {parsed.formula!r} are neither "
                "separate columns ((1 | a) + (1 | b)) nor one nesting (school/class, with a term for each level); "
                "the imputer takes groups as grouping columns, outer to inner"
            )
        groups += new
    return groups, "nested"


def _slope_factors(parsed, grouping: list) -> dict:
    """Column -> the grouping columns (of ``groups``, outer to inner) over which the formula gives it a random slope.

    A factor's column in ``groups`` is its own, or for a nesting (``class:school``) its innermost one.
    """
    out: dict = {}
    for factor in parsed.random_factors:
        column = max(factor.columns, key=grouping.index)
        for variable in parsed.columns_of(term for block in factor.blocks for term in block.terms):
            out.setdefault(variable, [])
            if column not in out[variable]:
                out[variable].append(column)
    return {v: [g for g in grouping if g in columns] for v, columns in out.items()}


def suggest_predictors(
    formula: str,
    data: pd.DataFrame,
    *,
    auxiliary: Sequence[Hashable] = (),
    cluster_means: bool = True,
    column_kinds: dict | None = None,
) -> PredictorSuggestion:
    """Propose the predictor matrix and the conditional models from the analysis model.

    The imputation model must be at least as rich as the analysis model (congeniality,
    Meng 1994): every variable, random slope and cluster-level effect of the analysis
    must be in the imputation model of every incomplete variable it involves. From an
    lme4-style formula ``y ~ x1 + w + (1 + x1 | g)`` the rules are, for each incomplete
    variable t of the formula (and of ``auxiliary``):

    1. the cluster column g is coded -2 (cluster identifier);
    2. if t is the outcome y: a predictor with a random slope in the analysis model is
       coded 2, a fixed one 1;
    3. if t is a covariate: the outcome y predicts it (leaving y out would bias its
       coefficient towards zero); if t has a random slope in the analysis model, y gets a
       random slope in t's model (the "reversed" random-slope model of Grund, Lüdtke and
       Robitzsch 2016, an approximation that works well in their simulations); other
       covariates are coded 1;
    4. with ``cluster_means`` (default), level-1 predictors of level-1 targets also
       enter with their cluster mean (1 -> 3, 2 -> 4), so the imputation keeps separate
       within- and between-cluster associations (contextual effects); without the means a
       random-intercept imputation forces them equal (Enders, Mistler and Keller 2016;
       Grund, Lüdtke and Robitzsch 2018);
    5. a variable constant within clusters is a cluster-level (level-2) variable: as a
       predictor it is coded 1 (its cluster mean is itself), as a target it gets a
       cluster-level model (:func:`~skmlmi.conditional.registry.default_model`; the other
       variables enter through their cluster means);
    6. level-1 targets get the random-effects model of their kind (the same function); a
       code the model cannot honour is lowered to one it can (4 -> 2 -> 1, 3 -> 1), and the
       explanation says so;
    7. without a grouping factor, every predictor is coded 1 and the models are mice's
       single-level defaults;
    8. with several random terms (``(1 | school/class)``, ``(1 | a) + (1 | b)``) every grouping
       column is coded -2 and the suggestion's ``groups`` lists them, outer to inner, for
       ``fit``; a variable constant within the units of a factor gets that factor's
       cluster-level model; level-1 targets get a random-effects model with a random intercept
       per factor, where one takes several factors for their kind (continuous, whole numbers and
       binary now; the explanation says where none does yet).

    Interactions (``x1:x2``) are not reproduced by main-effect chained equations; the
    explanation names them and suggests a derived (passive) column. Columns of the data
    the formula does not use are left out (code 0) unless listed in ``auxiliary``, where
    they are used as fixed predictors (and imputed, if incomplete, like covariates).

    Parameters
    ----------
    formula : str
        lme4-style analysis formula, e.g. ``"popular ~ sex + texp + (1 + sex | school)"``
        (see :func:`skmlmi.analysis.formula.parse_formula`).
    data : DataFrame
        The incomplete data; it must hold every column the formula names.
    auxiliary : column name or sequence of names, default=()
        Variables outside the analysis model that should help the imputation.
    cluster_means : bool, default=True
        Whether level-1 predictors enter level-1 targets' models with their cluster mean.
    column_kinds : dict, default=None
        Overrides of the detected column kinds, as in the imputer.

    Returns
    -------
    PredictorSuggestion
        ``.predictor_matrix`` (DataFrame of role codes), ``.methods`` (dict of models),
        ``.explanation`` (text), ``.levels``, ``.groups`` and ``.cluster_structure``;
        ``MultilevelIterativeImputer.from_suggestion(suggestion)`` builds the imputer, to be
        fitted with ``groups=suggestion.groups``.

    References
    ----------
    Enders, C. K., Mistler, S. A., Keller, B. T. (2016). Multilevel multiple imputation:
    a review and evaluation of joint modeling and chained equations imputation.
    Psychological Methods 21, 222-240.
    Grund, S., Lüdtke, O., Robitzsch, A. (2016). Multiple imputation of missing covariate
    values in multilevel models with random slopes: a cautionary note. Behavior Research
    Methods 48, 640-649.
    Grund, S., Lüdtke, O., Robitzsch, A. (2018). Multiple imputation of missing data for
    multilevel models: simulations and recommendations. Organizational Research Methods
    21, 111-149.
    Meng, X.-L. (1994). Multiple-imputation inferences with uncongenial sources of input.
    Statistical Science 9, 538-558.

    Examples
    --------
    >>> from skmlmi.datasets import load_popmis
    >>> data = load_popmis()[["school", "popular", "sex", "texp"]]
    >>> s = suggest_predictors("popular ~ sex + texp + (1 + sex | school)", data)
    >>> s.predictor_matrix.loc["popular"].to_dict()
    {'school': -2, 'popular': 0, 'sex': 4, 'texp': 1}
    >>> type(s.methods["popular"]).__name__
    'RandomEffectsPMM'
    >>> s.groups
    'school'
    """

    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"suggest_predictors: data must be a pandas DataFrame; got {type(data).__name__}.")
    parsed = parse_formula(formula)
    columns = list(data.columns)
    absent = [v for v in parsed.variables if v not in columns]
    if absent:
        raise ValueError(f"suggest_predictors: columns {absent} of formula {formula!r} are not in the data.")
    auxiliary = _column_list(auxiliary, columns, "auxiliary")
    column_kinds = dict(column_kinds or {})
    response = parsed.response
    grouping, structure = _formula_groups(parsed, data)
    group = grouping[0] if grouping else None
    several = len(grouping) > 1
    for column in grouping:
        if data[column].isna().any():
            raise ValueError(f"suggest_predictors: the cluster column {column!r} has missing labels.")
        if column in auxiliary:
            raise ValueError(f"suggest_predictors: the cluster column {column!r} cannot be an auxiliary variable.")

    # the columns the terms use (a term may be a transformation such as np.log(x) or C(f, Treatment("b")))
    fixed_vars = parsed.fixed_variables
    slope_vars = parsed.columns_of(term for f in parsed.random_factors for block in f.blocks for term in block.terms)
    model_vars = list(dict.fromkeys(([response] if response else []) + fixed_vars + slope_vars + auxiliary))
    model_vars = [v for v in model_vars if v not in grouping]
    multilevel = group is not None

    slope_factors = _slope_factors(parsed, grouping) if several else {}
    slope_levels: dict = {}
    levels = {}
    if several:
        clusters = Clusters.from_data(data, grouping, structure)
        levels = {v: 1 for v in model_vars}
        for name, factor in zip(grouping, clusters.factors, strict=True):  # outer to inner: the outermost wins
            constant = is_cluster_constant(data[model_vars], factor.codes) if model_vars else pd.Series(dtype=bool)
            levels.update({v: name for v in model_vars if levels[v] == 1 and bool(constant[v])})
    elif multilevel:
        constant = is_cluster_constant(data[model_vars], data[group]) if model_vars else pd.Series(dtype=bool)
        levels = {v: 2 if bool(constant[v]) else 1 for v in model_vars}
    else:
        levels = {v: 1 for v in model_vars}
    kinds = {v: detect_codec(data[v], v, column_kinds.get(v)).kind for v in model_vars}
    n_missing = data[model_vars].isna().sum()
    incomplete = [v for v in model_vars if n_missing[v] > 0]

    matrix = pd.DataFrame(0, index=pd.Index(columns), columns=pd.Index(columns), dtype=int)
    methods: dict = {}
    lines = [f"Imputation model suggested for the analysis model {formula!r}."]
    if several:
        counts = ", ".join(f"{n} units of {c!r}" for c, n in zip(grouping, clusters.counts, strict=True))
        nested = ", cluster_structure='nested' (inner labels combined with the outer, as lme4's a/b)"
        upper = "; ".join(
            f"{c}-level (constant within {c}): {[v for v in model_vars if levels[v] == c]}"
            for c in grouping
            if any(levels[v] == c for v in model_vars)
        )
        lines.append(
            f"Grouping factors, outer to inner: {grouping} ({clusters.structure}; {counts}); fit the imputer with "
            f"groups={grouping}{nested if structure == 'nested' else ''}. {upper + '; ' if upper else ''}level 1: "
            f"{[v for v in model_vars if levels[v] == 1] or 'none'}."
        )
    elif multilevel:
        lines.append(
            f"Clusters: {group!r} ({data[group].nunique()} clusters). Level-2 (constant within clusters): "
            f"{[v for v in model_vars if levels[v] == 2] or 'none'}; level 1: "
            f"{[v for v in model_vars if levels[v] == 1] or 'none'}."
        )
    complete_vars = [v for v in model_vars if v not in incomplete]
    if complete_vars:
        lines.append(f"Complete (not imputed, rows left 0): {complete_vars}.")
    if not incomplete:
        lines.append("No variable of the model is incomplete: nothing to impute.")

    for t in incomplete:
        role = (
            "outcome"
            if t == response
            else (
                "auxiliary variable" if t in auxiliary and t not in fixed_vars and t not in slope_vars else "covariate"
            )
        )
        head = f"{t} ({role}, {n_missing[t]} missing, {kinds[t]}"
        reasons = []
        if multilevel and levels[t] != 1:
            model = default_model(kinds[t], multilevel, cluster_level=True)
            if kinds[t] == "categorical":
                why = (
                    "cluster-level categorical variable: ClusterMean fills a cluster's missing rows from its "
                    "observed rows, and clusters with none from a cluster-level multinomial logit"
                )
            else:
                why = "cluster-level variable: imputed once per cluster, other variables enter as cluster means"
            level = f"level of {levels[t]!r}" if several else "level 2"
            lines.append(f"- {head}, {level}): {type(model).__name__} ({why}).")
        else:
            model = default_model(kinds[t], multilevel)
            if several and not model.multiple_factors:
                able = find_models(kinds[t], multiple_factors=True)
                model = able[0]() if able else None
            if model is None:
                lines.append(
                    f"- {head}, level 1): no conditional model takes several grouping factors for a {kinds[t]} "
                    f"column yet, so none is suggested and the imputer refuses it with groups={grouping}; fit "
                    f"with one factor (e.g. the innermost, {grouping[-1]!r}) to impute it."
                )
            else:
                lines.append(f"- {head}{', level 1' if multilevel else ''}): {type(model).__name__}.")
        if model is not None:
            methods[t] = model
        if multilevel:
            matrix.loc[t, group] = -2
            unit = f" per unit of {group!r}" if several else ""
            reasons.append(f"{group} -2: cluster identifier (random intercept{unit})")
        for g in grouping[1:]:  # the matrix codes the first factor; the imputer makes the others identifiers too
            reasons.append(f"{g} 0 here, -2 in the imputer: a further grouping factor (random intercept per unit)")
        for p in model_vars:
            if p == t:
                continue
            if not multilevel:
                code, why = 1, "fixed effect"
            elif levels[t] != 1:
                code, why = 1, ("cluster-level predictor" if levels[p] != 1 else "enters through its cluster mean")
            elif levels[p] != 1:
                code, why = 1, "cluster-level predictor (its cluster mean is itself)"
            else:
                if t == response:
                    slope = p in slope_vars
                    why = (
                        "random slope in the analysis model"
                        if slope
                        else "fixed effect in the analysis model"
                        if p in fixed_vars
                        else "auxiliary variable"
                    )
                elif p == response:
                    slope = t in slope_vars
                    why = (
                        "outcome, with a random slope because the analysis model has a random slope of "
                        f"{t} (reversed random-slope model)"
                        if slope
                        else "outcome of the analysis model predicts its incomplete covariates"
                    )
                else:
                    slope = False
                    why = "other variable of the model" if p not in auxiliary else "auxiliary variable"
                code = 2 if slope else 1
                if cluster_means:
                    code += 2
                    why += " + cluster mean (contextual effect)"
                if several and code in (2, 4) and not (model is not None and model.slopes_with_several_factors):
                    why += (
                        f"; {type(model).__name__} takes no random slopes with several grouping factors, code "
                        f"{code} lowered to {code - 1} (the analysis model's random slope is not reproduced)"
                    )
                    code -= 1
                accepted = code if model is None else _accepted_code(code, model)
                if accepted != code:
                    why += (
                        f"; {type(model).__name__} cannot honour code {code} ({ROLE_NAMES[code]}), "
                        f"lowered to {accepted}"
                    )
                    code = accepted
                over = slope_factors.get(p if t == response else t, grouping)
                if code in (2, 4) and several and len(over) < len(grouping):
                    slope_levels.setdefault(p, set()).update(over)
                    why += f"; the slope varies over {over} only, as in the analysis model (random_slope_levels)"
            matrix.loc[t, p] = code
            reasons.append(f"{p} {code}: {why}")
        lines.extend(f"    {r}" for r in reasons)

    interactions = [":".join(term) for term in parsed.fixed if len(term) > 1]
    if interactions and incomplete:
        lines.append(
            f"Interactions {interactions}: chained equations with main effects do not reproduce them. Add each "
            "product as a derived column (derived={'a_b': 'a * b'}), or impute separately by the levels of a "
            "categorical moderator; the suggested matrix uses the main effects only."
        )
    unused = [c for c in columns if c not in model_vars and c not in grouping]
    if unused:
        lines.append(
            f"Not in the analysis model, left out (code 0): {unused}; pass auxiliary=[...] to use some "
            "as predictors (quickpred() shows which correlate with the incomplete variables)."
        )
    if multilevel and cluster_means and incomplete:
        lines.append(
            "Cluster means (codes 3/4) keep within- and between-cluster associations apart (Enders, "
            "Mistler & Keller 2016; Grund, Lüdtke & Robitzsch 2018); pass cluster_means=False for small "
            "clusters where they are unreliable and no contextual effect is analysed."
        )
    return PredictorSuggestion(
        predictor_matrix=matrix,
        methods=methods,
        explanation="\n".join(lines),
        levels=levels,
        groups=(grouping if several else group),
        cluster_structure=structure,
        random_slope_levels={p: [g for g in grouping if g in over] for p, over in slope_levels.items()},
    )


# =============================================================================== wide data
# Appended section (issue 14): the engine's reduction of a target's predictors when they outnumber
# what its rows support, by quickpred's rule.
__all__ += ["limit_predictors"]

#: mice's ``quickpred`` default ``mincor``, the threshold of :func:`limit_predictors`.
QUICKPRED_MINCOR = 0.1
#: Observations (rows, or clusters for a cluster-level target) per predictor column below which
#: the engine reduces a target's default predictors (:func:`limit_predictors`).
ROWS_PER_PREDICTOR = 3


def _quickpred_score(v, u) -> np.ndarray:
    """quickpred's criterion: the larger of |cor(x_a, x_b)| and |cor(R_a, x_b)|, NaN (no pairs, no variation) as 0."""
    return np.maximum(np.nan_to_num(np.abs(v), nan=0.0), np.nan_to_num(np.abs(u), nan=0.0))


def available_pairs_correlation(a: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``a`` (n,) with each column of ``B`` (n, p) on the rows where both are observed.

    NaN marks a missing value. Each pair is centred at its own means before the products,
    and centred again at the mean of those deviations (the rounding of a mean of values far
    from 0, e.g. 1e12 + x, would otherwise stay in every deviation), so a column shifted by
    1e12 or in units of 1e-12 gives the correlation of its natural units; NaN where a pair has
    fewer than two rows or no variation. The numbers of pandas' pairwise-complete
    ``DataFrame.corr`` (what :func:`quickpred` uses) for ordinary data, in O(n p) without
    the p x p matrix. Columns are taken in blocks to bound the memory.
    """
    a = np.asarray(a, dtype=float)
    B = np.asarray(B, dtype=float)
    n, p = B.shape
    out = np.full(p, np.nan)
    a_known = ~np.isnan(a)
    step = max(1, 2**22 // max(n, 1))
    for start in range(0, p, step):
        block = B[:, start : start + step]
        M = ~np.isnan(block) & a_known[:, None]
        count = M.sum(axis=0)
        A = np.where(M, a[:, None], 0.0)
        Z = np.where(M, block, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            for _ in range(2):
                A = np.where(M, A - A.sum(axis=0) / count, 0.0)
                Z = np.where(M, Z - Z.sum(axis=0) / count, 0.0)
            r = np.einsum("ij,ij->j", A, Z) / np.sqrt(np.einsum("ij,ij->j", A, A) * np.einsum("ij,ij->j", Z, Z))
        r[count < 2] = np.nan
        out[start : start + step] = np.clip(r, -1.0, 1.0)
    return out


def limit_predictors(
    y: np.ndarray,
    fit_rows: np.ndarray,
    usable_rows: np.ndarray,
    X: np.ndarray,
    widths: np.ndarray,
    given: np.ndarray,
    n_units: int,
    mincor: float = QUICKPRED_MINCOR,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Which predictors of one target to keep when they outnumber what its rows support.

    The imputation model of a target observed on ``n_units`` rows (the engine passes the
    clusters observing a cluster-level target, and the rows less the clusters for a model with
    cluster fixed effects) has ``sum(widths)`` predictor columns (dummies of a categorical
    predictor and cluster means count). When that exceeds ``n_units / 3`` the predictors
    not ``given`` by the user are reduced by mice's ``quickpred`` rule (van Buuren et al.
    1999; :func:`quickpred`): with pairwise-complete correlations

        ``score_b = max(|cor(y, x_b)|, |cor(R_y, x_b)|)``,

    y's observed values on ``fit_rows``, R_y its response indicator on ``usable_rows`` (NaN
    correlations count 0), a predictor is kept when ``score_b > mincor`` and, strongest
    first, while its columns fit in ``floor(n_units / 3)`` less those of the given
    predictors (a predictor too wide for what is left is passed over for narrower ones).
    Pearson correlations do not depend on units or origin; ties keep the earlier column,
    so the choice is deterministic. Given predictors are always kept, even beyond the budget.

    Parameters
    ----------
    y : ndarray of shape (n,)
        The target (category codes for a categorical one); NaN where missing.
    fit_rows, usable_rows : ndarray of shape (n,) of bool
        Rows fitting the target's model (observed, not ignored), and rows counted at all
        (not ignored).
    X : ndarray of shape (n, p)
        One column per candidate predictor (category codes for a categorical one), NaN where missing.
    widths : ndarray of shape (p,) of int
        Columns each predictor adds to the model.
    given : ndarray of shape (p,) of bool
        Predictors the user asked for: kept whatever their correlation.
    n_units : int
    mincor : float, default=0.1

    Returns
    -------
    keep : ndarray of shape (p,) of bool
    score : ndarray of shape (p,)
    budget : int
        ``floor(n_units / 3)``, the predictor columns the target's rows support.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(30, 40))
    >>> y = X[:, 3] + 0.5 * X[:, 7] + 0.3 * rng.normal(size=30)
    >>> rows = np.ones(30, dtype=bool)
    >>> keep, score, budget = limit_predictors(y, rows, rows, X, np.ones(40, int), np.zeros(40, bool), 30)
    >>> budget, int(keep.sum()), bool(keep[3] and keep[7])
    (10, 10, True)
    """
    widths = np.asarray(widths, dtype=int)
    given = np.asarray(given, dtype=bool)
    budget = int(n_units) // ROWS_PER_PREDICTOR
    keep = np.ones(len(widths), dtype=bool)
    if widths.sum() <= budget:
        return keep, np.full(len(widths), np.nan), budget
    v = available_pairs_correlation(np.where(fit_rows, y, np.nan), X)
    u = available_pairs_correlation(np.where(usable_rows, fit_rows.astype(float), np.nan), X)
    score = _quickpred_score(v, u)
    keep = given.copy()
    room = budget - int(widths[given].sum())
    for b in np.argsort(-score, kind="stable"):
        if given[b] or score[b] <= mincor:
            continue
        if widths[b] <= room:
            keep[b] = True
            room -= int(widths[b])
    return keep, score, budget
