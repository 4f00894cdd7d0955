"""Multilevel amputation: make complete data incomplete with a known mechanism.

:func:`ampute` is mice's ``ampute`` (Schouten, Lugtig & Vink 2018) extended to clustered
data, for simulation studies of imputation methods: rows are assigned missing-data
patterns; within a pattern, a row's probability of being made incomplete is a logistic
function of a standardised weighted sum score of its values (MAR: the variables the
pattern keeps; MNAR: those it removes; MCAR: none), shifted so that the expected
proportion of incomplete rows equals ``prop``. Two multilevel extensions:

* sporadic missingness with cluster-varying rates: a random cluster effect
  ``u_c ~ N(0, cluster_variation^2)`` is added on the logit scale (the shift is solved
  after ``u_c`` is drawn, so the expected overall proportion is still ``prop``);
* systematic missingness: chosen variables are removed entirely in chosen clusters, or in
  a number of clusters drawn at random (as a study that never measured the variable).

This module works on DataFrames and knows nothing about the imputation engine.

References
----------
Schouten, R. M., Lugtig, P. and Vink, G. (2018). Generating missing values for simulation
purposes: a multivariate amputation procedure. Journal of Statistical Computation and
Simulation 88, 2909-2930.
"""

from __future__ import annotations

import sys
import types
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import optimize, special

from ._columns import cluster_codes
from ._random import as_generator

__all__ = ["ampute"]

_MECHANISMS = ("MCAR", "MAR", "MNAR")
_TYPES = ("RIGHT", "LEFT", "MID", "TAIL")


# --------------------------------------------------------------------------- helpers
def _numeric_view(frame: pd.DataFrame) -> np.ndarray:
    """Numeric matrix for the scores: numbers as they are, bool as 0/1, categories as codes.

    Categorical and string columns contribute through their integer codes (pandas
    category order; sorted unique values for strings and objects), so an ordered
    categorical contributes its order and an unordered one an arbitrary but fixed
    ordering: give it weight 0 if that is not wanted. Missing values get NaN here and
    score as the column mean.
    """
    out = np.empty(frame.shape, dtype=float)
    for i, name in enumerate(frame.columns):  # loop over columns, not rows
        col = frame[name]
        if isinstance(col.dtype, pd.CategoricalDtype):
            codes = col.cat.codes.to_numpy().astype(float)
            codes[codes < 0] = np.nan
            out[:, i] = codes
        elif pd.api.types.is_bool_dtype(col.dtype):
            out[:, i] = col.astype("float64").to_numpy()
        elif pd.api.types.is_numeric_dtype(col.dtype):
            out[:, i] = col.to_numpy(dtype=float, na_value=np.nan)
        else:
            codes = pd.Categorical(col.astype(object).where(col.notna(), None)).codes.astype(float)
            codes[codes < 0] = np.nan
            out[:, i] = codes
    return out


def _standardise(values: np.ndarray) -> np.ndarray:
    """Columns to mean 0, SD 1 (constant columns to 0; missing values to 0 = the mean).

    Each column is first divided by its largest absolute value, so that values near the
    float limits (1e300) do not overflow the mean and SD; entirely missing columns score 0.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        top = np.max(np.abs(np.where(np.isnan(values), 0.0, values)), axis=0, initial=0.0)
        values = values / np.where(top > 0, top, 1.0)
        observed = (~np.isnan(values)).sum(axis=0)
        filled = np.where(np.isnan(values), 0.0, values)
        mean = filled.sum(axis=0) / np.maximum(observed, 1)
        centred = np.where(np.isnan(values), 0.0, values - mean)
        sd = np.sqrt((centred**2).sum(axis=0) / np.maximum(observed, 1))
    sd = np.where(sd > 0, sd, 1.0)
    return centred / sd


def _pattern_matrix(patterns: Any, columns: list) -> np.ndarray:
    """Patterns as a (n_patterns, n_vars) 0/1 matrix, 0 = made missing (mice's convention)."""
    n_vars = len(columns)
    if patterns is None:
        return 1 - np.eye(n_vars, dtype=int)
    if isinstance(patterns, pd.DataFrame):
        unknown = [c for c in patterns.columns if c not in columns]
        if unknown:
            raise ValueError(f"patterns name columns that cannot be amputed or do not exist: {unknown}")
        mat = np.ones((len(patterns), n_vars), dtype=float)
        for name in patterns.columns:
            mat[:, columns.index(name)] = patterns[name].to_numpy(dtype=float)
    elif isinstance(patterns, str | Mapping) or (
        isinstance(patterns, Sequence) and len(patterns) > 0 and any(isinstance(p, str) for p in patterns)
    ):
        raise ValueError(
            f"patterns must be a 0/1 matrix, a DataFrame or a list of lists of column names, such as "
            f"[['x'], ['x', 'z']] (one list per pattern); got {patterns!r}"
        )
    elif (
        isinstance(patterns, Sequence)
        and len(patterns) > 0
        and all(_is_name_list(p, columns, n_vars) for p in patterns)
    ):
        mat = np.ones((len(patterns), n_vars), dtype=float)
        for i, names in enumerate(patterns):  # list of lists of column names to remove
            for name in names:
                if name not in columns:
                    raise ValueError(f"pattern {i} names column {name!r}, which cannot be amputed or does not exist")
                mat[i, columns.index(name)] = 0
    else:
        expected = (
            f"patterns must be a (n_patterns, {n_vars}) 0/1 matrix over the columns {columns}, a DataFrame "
            "with column names, or a list of lists of column names"
        )
        try:
            mat = np.asarray(patterns, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{expected}; got {patterns!r}") from exc
        if mat.ndim == 1:
            mat = mat[None, :]
        if mat.ndim != 2 or mat.shape[1] != n_vars:
            raise ValueError(f"{expected}; got shape {mat.shape}")
    if not np.all(np.isin(mat, (0, 1))):
        raise ValueError("patterns must hold only 0 (amputed) and 1 (kept)")
    kept_all = np.flatnonzero(mat.min(axis=1) == 1)
    if kept_all.size:
        raise ValueError(f"patterns {kept_all.tolist()} amputate no variable (all entries 1)")
    return mat.astype(int)


def _is_name_list(entry: Any, columns: list, n_vars: int) -> bool:
    """A list of column names (not a row of 0/1 numbers).

    With integer column labels a row such as ``[0, 1, 1]`` could be either: it is read as a
    0/1 row when it has one 0/1 entry per column (mice's convention), as names otherwise.
    """
    if not isinstance(entry, Sequence) or isinstance(entry, str):
        return False
    if all(not isinstance(v, int | float | np.number) for v in entry):
        return True
    zero_one_row = len(entry) == n_vars and all(isinstance(v, int | float | np.number) and v in (0, 1) for v in entry)
    return not zero_one_row and all(_hashable(v) and v in columns for v in entry)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _weight_matrix(weights: Any, pattern: np.ndarray, columns: list, mechanism: str) -> np.ndarray:
    """Weights (n_patterns, n_vars): mice's defaults, or the user's (matrix, DataFrame or dict)."""
    n_pat, n_vars = pattern.shape
    if weights is None:
        if mechanism == "MAR":
            return pattern.astype(float)
        if mechanism == "MNAR":
            return 1.0 - pattern
        return np.zeros((n_pat, n_vars))
    if isinstance(weights, Mapping):
        unknown = [c for c in weights if c not in columns]
        if unknown:
            raise ValueError(f"weights name unknown columns: {unknown}")
        row = np.zeros(n_vars)
        for name, value in weights.items():
            row[columns.index(name)] = float(value)
        mat = np.tile(row, (n_pat, 1))
    elif isinstance(weights, pd.DataFrame):
        unknown = [c for c in weights.columns if c not in columns]
        if unknown:
            raise ValueError(f"weights name unknown columns: {unknown}")
        if len(weights) != n_pat:
            raise ValueError(f"weights must have one row per pattern ({n_pat}); got {len(weights)}")
        mat = np.zeros((n_pat, n_vars))
        for name in weights.columns:
            mat[:, columns.index(name)] = weights[name].to_numpy(dtype=float)
    else:
        try:
            mat = np.asarray(weights, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"weights must be a numeric (n_patterns, n_vars) matrix, a DataFrame or a dict {{column: weight}}; "
                f"got {weights!r}"
            ) from exc
        if mat.ndim == 1:
            mat = np.tile(mat, (n_pat, 1))
        if mat.shape != (n_pat, n_vars):
            raise ValueError(f"weights must have shape ({n_pat}, {n_vars}) (patterns x variables); got {mat.shape}")
    if not np.all(np.isfinite(mat)):
        raise ValueError("weights must be finite")
    if mechanism == "MAR":
        bad = np.argwhere((mat != 0) & (pattern == 0))
        if bad.size:
            i, j = bad[0]
            raise ValueError(
                f"MAR weights must be 0 on the variables a pattern amputes, but pattern {int(i)} weights "
                f"{columns[int(j)]!r}, which it amputes: that is MNAR (use mechanism='MNAR')"
            )
    return mat


def _link(scores: np.ndarray, kind: str) -> np.ndarray:
    """mice's logistic types on standardised scores (before the shift)."""
    if kind == "RIGHT":
        return scores
    if kind == "LEFT":
        return -scores
    if kind == "MID":
        return -np.abs(scores) + 0.75
    return np.abs(scores) - 0.75  # TAIL


def _solve_shift(linear: np.ndarray, prop: float) -> float:
    """The shift b with mean(expit(linear + b)) = prop, by Brent's method (monotone in b)."""

    def excess(b: float) -> float:
        return float(special.expit(linear + b).mean()) - prop

    lo, hi = -1.0, 1.0
    while excess(lo) > 0:
        lo *= 2.0
    while excess(hi) < 0:
        hi *= 2.0
    return float(optimize.brentq(excess, lo, hi, xtol=1e-12))


def _cluster_codes(data: pd.DataFrame, groups: Any) -> tuple[np.ndarray | None, np.ndarray | None, Any]:
    """Integer cluster codes, the cluster labels and the name of the groups column (if any)."""
    if groups is None:
        return None, None, None
    codes, labels, name = cluster_codes(data, groups)
    return codes, np.asarray(labels), name


# --------------------------------------------------------------------------- entry point


def ampute(
    data: pd.DataFrame | np.ndarray,
    groups: Any = None,
    prop: float = 0.5,
    mechanism: Literal["MCAR", "MAR", "MNAR"] = "MAR",
    patterns: Any = None,
    freq: Sequence[float] | np.ndarray | None = None,
    weights: Any = None,
    type: Literal["RIGHT", "LEFT", "MID", "TAIL"] = "RIGHT",  # noqa: A002 - mice's argument name
    cluster_variation: float = 0.0,
    systematic_clusters: Mapping[Any, int | Sequence[Any]] | None = None,
    random_state: int | np.random.Generator | np.random.SeedSequence | None = None,
    return_mask: bool = False,
    systematic: Mapping[Any, int | Sequence[Any]] | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Make complete (clustered) data incomplete with a chosen mechanism (mice's ``ampute``, multilevel).

    Sporadic amputation (mice's algorithm, ``bycases = TRUE``):

    1. each row is assigned one of the ``patterns`` with probabilities ``freq``;
    2. within pattern ``p``, the row's weighted sum score ``s_i = sum_v w_pv z_iv`` of the
       standardised values ``z`` is standardised over the rows of the pattern;
    3. the row is made incomplete (its pattern's zeros become missing) with probability

       .. math:: \\pi_i = \\operatorname{expit}(f(s_i) + u_{c(i)} + b_p),

       ``f`` by ``type``: RIGHT ``s`` (high scores missing more often), LEFT ``-s``,
       MID ``-|s| + 0.75``, TAIL ``|s| - 0.75`` (MCAR: ``s = 0``); ``u_c ~ N(0, cluster_variation^2)``
       are cluster effects (0 when ``cluster_variation = 0``) and ``b_p`` is solved by
       Brent's method so that the mean of ``pi_i`` over the pattern's rows equals ``prop``
       exactly, given their scores and the drawn ``u_c``. (mice instead bisects on 10,000
       standard normal test scores and rounds to 3 decimals, so its expected proportion
       is only approximately ``prop``, and is off when the scores are not normal.)

    Systematic amputation: for each ``column: clusters`` in ``systematic_clusters``, the column is
    set missing in every row of those clusters (an int draws that many clusters at random,
    independently per column; a list names them). It comes on top of the sporadic
    amputation, whose ``prop`` counts rows made incomplete by the patterns only.

    Parameters
    ----------
    data : DataFrame or 2-D array
        Complete data (existing missing values are kept and score as the column mean).
        Numeric, bool, categorical and string columns are accepted; the scores use bool as
        0/1 and categorical/string columns through their codes (category order; sorted
        values for strings) -- an unordered categorical's codes are arbitrary, so give it
        weight 0 unless that is intended.
    groups : column name or array of shape (n,), default None
        Cluster labels. A column of ``data`` is never amputed nor used in scores. Needed
        for ``cluster_variation > 0`` and ``systematic_clusters``.
    prop : float in [0, 1), default 0.5
        Expected proportion of rows made incomplete by the patterns (0: systematic amputation only).
    mechanism : {"MCAR", "MAR", "MNAR"}, default "MAR"
    patterns : 0/1 matrix, DataFrame or list of lists of column names, default None
        Missing-data patterns over the amputable columns (all but the groups column), 0 =
        made missing, mice's convention; a DataFrame names its columns (others kept); a
        list such as ``[["x"], ["x", "z"]]`` names the columns each pattern removes.
        Default: each variable missing alone.
    freq : array of shape (n_patterns,), default None
        Relative frequencies of the patterns (normalised); default equal.
    weights : matrix (n_patterns, n_vars), DataFrame, dict or None
        Score weights. Default: MAR 1 on the variables the pattern keeps, MNAR 1 on those
        it removes. A dict ``{column: weight}`` applies to every pattern. Under MAR a
        nonzero weight on a variable the pattern removes is refused (that is MNAR).
    type : {"RIGHT", "LEFT", "MID", "TAIL"}, default "RIGHT"
        Which scores are likely to be missing (see above).
    cluster_variation : float >= 0, default 0.0
        SD of the cluster effects on the logit scale: rates vary across clusters (an SD of
        1 spreads cluster rates around prop = 0.3 roughly between 0.1 and 0.6).
    systematic_clusters : dict, default None
        ``{column: n_clusters}`` or ``{column: [cluster labels]}``, e.g. ``{"ct": 3}`` or
        ``{"ct": ["TINT", "SLIN"]}``.
    random_state : int, Generator, SeedSequence or None
        Seed; the same seed gives the same amputation.
    return_mask : bool, default False
        Also return a boolean DataFrame, True where this call removed a value.
    systematic : dict, default None
        Former name of ``systematic_clusters`` (deprecated; give one of the two).

    Returns
    -------
    DataFrame
        A new DataFrame (the input is never modified) with the removed values missing.
        Integer columns that received missing values become float64, bool columns pandas'
        nullable "boolean"; categorical and string columns keep their dtype. With
        ``return_mask``, the pair ``(amputed, mask)``.

    Raises
    ------
    TypeError
        When ``data`` is not a DataFrame or 2-D array.
    ValueError
        For a bad ``prop``, ``mechanism``, ``type``, ``patterns``, ``freq``, ``weights``,
        ``cluster_variation`` or ``systematic_clusters`` (naming the column or cluster at fault), and
        for a pattern whose MAR/MNAR weights are all zero; for duplicated column names and
        for infinite values (which have no score).

    Warns
    -----
    UserWarning
        When a pattern's MAR/MNAR score is constant over its rows (the weighted columns do
        not vary), so that its missingness is in fact MCAR.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"school": np.repeat(np.arange(20), 50), "x": rng.normal(size=1000),
    ...                    "y": rng.normal(size=1000)})
    >>> out = ampute(df, groups="school", prop=0.3, patterns=[["y"]], systematic_clusters={"x": 2},
    ...              random_state=1)
    >>> int(out["x"].isna().groupby(df["school"]).all().sum())
    2
    >>> df["x"].isna().any()  # the input is untouched
    np.False_
    """
    if systematic is not None:
        if systematic_clusters is not None:
            raise ValueError("give systematic_clusters only (systematic is its former name)")
        warnings.warn("ampute(systematic=...) is renamed systematic_clusters=...", FutureWarning, stacklevel=2)
        systematic_clusters = systematic
    if isinstance(data, np.ndarray):
        if data.ndim != 2:
            raise TypeError(f"data must be a DataFrame or a 2-D array; got an array of shape {data.shape}")
        data = pd.DataFrame(data)
    elif not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame or a 2-D numpy array; got {_type_name(data)}")
    if not isinstance(prop, int | float | np.number) or not (0.0 <= float(prop) < 1.0):
        raise ValueError(f"prop must be a number in [0, 1); got {prop!r}")
    prop = float(prop)
    if mechanism not in _MECHANISMS:
        raise ValueError(f"mechanism must be one of {_MECHANISMS}; got {mechanism!r}")
    if type not in _TYPES:
        raise ValueError(f"type must be one of {_TYPES}; got {type!r}")
    if (
        isinstance(cluster_variation, bool)
        or not isinstance(cluster_variation, int | float | np.number)
        or not np.isfinite(cluster_variation)
        or cluster_variation < 0
    ):
        raise ValueError(f"cluster_variation must be a finite number >= 0; got {cluster_variation!r}")
    if data.columns.has_duplicates:
        duplicated = data.columns[data.columns.duplicated()].unique().tolist()
        raise ValueError(f"data has duplicated column names {duplicated[:10]}; give every column a unique name")
    rng = as_generator(random_state)
    n = len(data)
    codes, labels, group_name = _cluster_codes(data, groups)
    if codes is None and (cluster_variation > 0 or systematic_clusters):
        raise ValueError(
            "cluster_variation and systematic_clusters need groups (a column name or an array of cluster labels)"
        )
    columns = [c for c in data.columns if c != group_name] if group_name is not None else list(data.columns)
    if not columns:
        raise ValueError("data has no column to amputate")

    pattern = _pattern_matrix(patterns, columns)
    n_pat, n_vars = pattern.shape
    if freq is None:
        freq_arr = np.full(n_pat, 1.0 / n_pat)
    else:
        try:
            freq_arr = np.asarray(freq, dtype=float).ravel()
        except (TypeError, ValueError):
            freq_arr = np.full(0, np.nan)  # refused below with the message that says what freq must be
        valid = freq_arr.shape == (n_pat,) and np.all(np.isfinite(freq_arr)) and np.all(freq_arr >= 0)
        if not valid or freq_arr.sum() <= 0:
            raise ValueError(f"freq must hold {n_pat} non-negative numbers (one per pattern) with a positive sum")
        freq_arr = freq_arr / freq_arr.sum()
    weight = _weight_matrix(weights, pattern, columns, mechanism)
    if mechanism != "MCAR":
        empty = np.flatnonzero(np.all(weight == 0, axis=1))
        if empty.size:
            raise ValueError(
                f"patterns {empty.tolist()} have all-zero {mechanism} weights (under MAR: no variable is kept "
                "to depend on); give weights, change the patterns or use mechanism='MCAR'"
            )

    # --- random draws, always in this order so that a seed fixes the result
    assignment = rng.choice(n_pat, size=n, p=freq_arr)
    n_clusters = 0 if labels is None else len(labels)
    effects = rng.normal(0.0, cluster_variation, size=n_clusters) if cluster_variation > 0 else np.zeros(n_clusters)
    uniforms = rng.random(n)

    row_effect = effects[codes] if codes is not None else np.zeros(n)
    values = _numeric_view(data[columns])
    infinite = np.isinf(values).any(axis=0)
    if infinite.any():
        raise ValueError(
            f"columns {[columns[j] for j in np.flatnonzero(infinite)][:10]} hold infinite values, which have no "
            "standardised score; code them as missing (NaN) or finite numbers"
        )
    z = _standardise(values)
    mask = np.zeros((n, n_vars), dtype=bool)
    probability = np.zeros(n)
    if prop > 0:
        for p in range(n_pat):  # loop over the (few) patterns
            rows = np.flatnonzero(assignment == p)
            if rows.size == 0:
                continue
            if mechanism == "MCAR":
                scores = np.zeros(rows.size)
            else:
                raw = z[rows] @ weight[p]
                sd = raw.std()
                scores = (raw - raw.mean()) / sd if sd > 0 else np.zeros(rows.size)
                if not sd > 0 and rows.size > 1:
                    weighted = [columns[j] for j in np.flatnonzero(weight[p])]
                    warnings.warn(
                        f"ampute: pattern {p} has a constant {mechanism} score (its weighted columns {weighted[:10]} "
                        "do not vary over its rows), so its missingness is MCAR; weight varying columns",
                        UserWarning,
                        stacklevel=2,
                    )
            linear = _link(scores, type) + row_effect[rows]
            if mechanism == "MCAR" and cluster_variation == 0:
                probability[rows] = prop  # exactly mice's MCAR
            else:
                probability[rows] = special.expit(linear + _solve_shift(linear, prop))
            hit = rows[uniforms[rows] < probability[rows]]
            mask[np.ix_(hit, np.flatnonzero(pattern[p] == 0))] = True

    if systematic_clusters:
        if not isinstance(systematic_clusters, Mapping):
            raise ValueError(
                "systematic_clusters must be a dict {column: number of clusters or list of cluster labels}"
            )
        label_index = {lab: i for i, lab in enumerate(labels.tolist())}
        for name, spec in systematic_clusters.items():  # loop over the named columns
            if name not in columns:
                raise ValueError(
                    f"systematic_clusters names column {name!r}, which cannot be amputed or does not exist"
                )
            if (
                isinstance(spec, bool)
                or not isinstance(spec, int | np.integer | Sequence | np.ndarray)
                or isinstance(spec, str)
            ):
                raise ValueError(
                    f"systematic_clusters[{name!r}] must be a number of clusters or a list of cluster labels; "
                    f"got {spec!r}"
                )
            if isinstance(spec, int | np.integer):
                if not 0 <= spec <= n_clusters:
                    raise ValueError(
                        f"systematic_clusters[{name!r}] asks for {spec} clusters but there are {n_clusters} clusters"
                    )
                chosen = rng.choice(n_clusters, size=int(spec), replace=False)
            else:
                unknown = [lab for lab in spec if lab not in label_index]
                if unknown:
                    raise ValueError(f"systematic_clusters[{name!r}] names unknown clusters {unknown[:10]}")
                chosen = np.array([label_index[lab] for lab in spec], dtype=int)
            mask[np.isin(codes, chosen), columns.index(name)] = True

    mask &= data[columns].notna().to_numpy()  # report only values this call removed
    out = data.copy()
    for j, name in enumerate(columns):  # loop over columns
        if not mask[:, j].any():
            continue
        col = out[name]
        if pd.api.types.is_bool_dtype(col.dtype):
            col = col.astype("boolean")
        elif pd.api.types.is_integer_dtype(col.dtype) and not isinstance(col.dtype, pd.api.extensions.ExtensionDtype):
            col = col.astype("float64")
        out[name] = col.mask(mask[:, j])
    if return_mask:
        mask_frame = pd.DataFrame(False, index=data.index, columns=data.columns)
        for j, name in enumerate(columns):
            mask_frame[name] = mask[:, j]
        return out, mask_frame
    return out


def _type_name(obj: Any) -> str:
    """Type name for error messages."""
    return f"{obj.__class__.__module__}.{obj.__class__.__name__}"


class _CallableModule(types.ModuleType):
    """``skmlmi.ampute`` is both this module and, called, the function: ``from skmlmi import
    ampute; ampute(df)`` works as ``from skmlmi.ampute import ampute`` does (the package
    attribute stays the module, so ``skmlmi.ampute.ampute`` and the API docs resolve)."""

    def __call__(self, *args, **kwargs):
        return ampute(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
