"""Column kinds and the numeric encoding the engine works on.

Every column of the input becomes one float column of a working matrix: numbers stay
numbers, binary and categorical columns become codes ``0..K-1``. A :class:`ColumnCodec`
remembers how to go back, so DataFrames round-trip with their names, dtypes and categories.

A categorical column keeps its declared categories (a pandas Categorical's, unused ones
included) in its codes and in the output, but only the categories observed at fit are ever
modelled or imputed: the engine records them in :attr:`ColumnCodec.observed_codes`, and new
data holding a category declared but never observed is an error (no fitted model knows it).

Kinds (DESIGN §4): bool, numeric with observed values only in {0, 1}, or a categorical /
string column with two levels -> ``binary``; categorical / string / object with more
levels -> ``categorical`` (ordered when the pandas categorical is ordered); integer
dtype, or float holding only integers, with more than two values -> ``integer``; other
numeric -> ``continuous``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

KINDS = ("continuous", "integer", "binary", "categorical")


@dataclass
class ColumnCodec:
    """How one input column maps to a float working column and back."""

    name: Any
    kind: str
    dtype: Any
    categories: list | None = None  # labels of codes 0..K-1 (binary and categorical)
    ordered: bool = False
    numeric_levels: bool = False  # binary stored as its own 0/1 numbers
    boolean_objects: bool = False  # an object column of True/False: decoded back to bools
    observed_codes: np.ndarray | None = None  # codes with an observed cell at fit (binary, categorical)

    @property
    def n_categories(self) -> int:
        return len(self.categories) if self.categories is not None else 0

    # ------------------------------------------------------------------ encode
    def encode(self, series: pd.Series) -> np.ndarray:
        """Float working column; NaN where missing. Unknown categories are an error."""
        missing = series.isna().to_numpy()
        if self.categories is None or self.numeric_levels:
            numbers_as_categories = isinstance(series.dtype, pd.CategoricalDtype) and ptypes.is_numeric_dtype(
                series.dtype.categories.dtype
            )
            if _is_textual(series) and not numbers_as_categories:  # text where fit saw numbers: never parsed
                raise TypeError(
                    f"Column {self.name!r} was numeric at fit but holds text now (dtype {series.dtype}, e.g. "
                    f"{series.dropna().iloc[0]!r}); convert it with pd.to_numeric."
                )
            values = _numeric_values(series, self.name)
            if self.categories is None:
                _check_scale(values, self.name)
            if self.numeric_levels:
                bad = ~missing & ~np.isin(values, self.categories)
                if bad.any():
                    raise ValueError(
                        f"Column {self.name!r} was binary (0/1) at fit but holds "
                        f"{sorted(set(values[bad].tolist()))[:5]} now."
                    )
                self._check_observed(values, missing)
            return values
        labels = series.astype(object).to_numpy()
        codes = pd.Categorical(labels, categories=self.categories).codes.astype(float)
        unknown = (codes < 0) & ~missing
        if unknown.any():
            raise ValueError(
                f"Column {self.name!r} holds categories not seen at fit: "
                f"{sorted({str(v) for v in labels[unknown]})[:5]}."
            )
        codes[missing] = np.nan
        self._check_observed(codes, missing)
        return codes

    def observed_categories(self, codes: np.ndarray) -> list:
        """Labels of the given codes (for messages)."""
        if ptypes.is_bool_dtype(self.dtype) or self.boolean_objects:
            return [bool(c) for c in codes]
        return [self.categories[int(c)] for c in codes]

    def _check_observed(self, codes: np.ndarray, missing: np.ndarray) -> None:
        """New data may only hold categories observed at fit: the fitted models know no others."""
        if self.observed_codes is None:
            return
        unseen = ~missing & ~np.isin(codes, self.observed_codes)
        if unseen.any():
            labels = self.observed_categories(np.unique(codes[unseen]))
            raise ValueError(
                f"Column {self.name!r} holds {_plural(labels, 'category', 'categories')} {labels[:5]}, declared but "
                f"never observed at fit: the fitted imputation models know nothing about "
                f"{'it' if len(labels) == 1 else 'them'} (observed at fit: "
                f"{self.observed_categories(self.observed_codes)})."
            )

    # ------------------------------------------------------------------ decode
    def decode(self, values: np.ndarray, index=None) -> pd.Series:
        """Series with the input's dtype from a complete working column."""
        if self.categories is not None and not self.numeric_levels:
            codes = np.asarray(np.rint(values), dtype=int)
            if isinstance(self.dtype, pd.CategoricalDtype):
                cat = pd.Categorical.from_codes(codes, dtype=self.dtype)
                return pd.Series(cat, index=index, name=self.name)
            labels = np.asarray(self.categories, dtype=object)[codes]
            return pd.Series(labels, index=index, name=self.name).astype(self.dtype)
        if self.kind == "binary":
            values = np.rint(values)  # codes 0/1
        if ptypes.is_bool_dtype(self.dtype) or self.boolean_objects:
            return pd.Series(values.astype(bool), index=index, name=self.name).astype(self.dtype)
        series = pd.Series(values, index=index, name=self.name)
        if ptypes.is_integer_dtype(self.dtype) and not np.all(values == np.round(values)):
            # never round: an integer dtype that receives fractional imputations (a normal model,
            # a squeezed bound, ``post``) becomes the matching float dtype
            return series.astype("Float64" if isinstance(self.dtype, pd.api.extensions.ExtensionDtype) else float)
        try:
            return series.astype(self.dtype)
        except (TypeError, ValueError):
            return series


def _plural(items, one: str, many: str) -> str:
    return one if len(items) == 1 else many


def _holds_bools(series: pd.Series) -> bool:
    """An object column whose observed values are all True/False."""
    observed = series.dropna()
    return (
        series.dtype == object and bool(len(observed)) and observed.map(lambda v: isinstance(v, bool | np.bool_)).all()
    )


#: Whole numbers beyond this magnitude are not all representable in the float64 working copy.
_EXACT_INTEGERS = 2**53


def _check_exact_integers(series: pd.Series, name) -> None:
    """An incomplete column of whole numbers beyond 2**53 is an error: in the float64 working copy
    neighbouring values merge (2**62 + 1 .. 2**62 + 511 all become 2**62), so the models would see
    values the data do not hold, and predictive mean matching would impute them."""
    if ptypes.is_bool_dtype(series.dtype) or not series.isna().any():
        return  # a complete column is never imputed; its values are returned exactly
    observed = series.dropna()
    if ptypes.is_integer_dtype(series.dtype):
        largest = max(abs(int(observed.max())), abs(int(observed.min()))) if len(observed) else 0
        beyond = largest > _EXACT_INTEGERS
    elif series.dtype == object:
        beyond = bool(observed.map(
            lambda v: isinstance(v, int | np.integer) and not isinstance(v, bool) and abs(int(v)) > _EXACT_INTEGERS
        ).any())  # fmt: skip
    else:
        return
    if beyond:
        raise ValueError(
            f"Column {name!r} holds whole numbers beyond 2**53 in magnitude, which the imputation's floating-point "
            "numbers cannot all hold exactly (neighbouring values would merge); subtract an offset (such as its "
            "smallest value) first, or make it categorical (.astype(str)) if its values are codes. This holds for "
            "every incomplete column of the data, imputed or not (drop one that is not needed)."
        )


def _numeric_values(series: pd.Series, name) -> np.ndarray:
    _check_exact_integers(series, name)
    if series.dtype == object:  # pd.NA, None and NaN all mean missing; float() accepts only NaN
        series = series.where(series.notna(), np.nan)
    if ptypes.is_bool_dtype(series.dtype) or _holds_bools(series):
        return series.astype("float64").to_numpy()
    try:
        values = series.astype("float64").to_numpy()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"Column {name!r} is neither numeric nor categorical.") from exc
    if np.isinf(values).any():
        raise ValueError(f"Column {name!r} contains infinite values; code them as NaN or finite numbers.")
    return values


#: Magnitudes the numerics handle: squares and cross-products of n values neither overflow nor underflow.
_LARGEST, _SMALLEST = 1e100, 1e-100


def _check_scale(values: np.ndarray, name) -> None:
    """Values so large (or so small, all of them) that products overflow or vanish are an error."""
    magnitude = np.abs(values[~np.isnan(values)])
    if not magnitude.size:
        return
    largest = float(magnitude.max())
    if largest > _LARGEST or 0 < largest < _SMALLEST:
        raise ValueError(
            f"Column {name!r} holds values of magnitude {largest:.3g}, beyond what the imputation "
            f"numerics handle ({_SMALLEST:g} to {_LARGEST:g}); rescale it (e.g. change its units)."
        )


def _check_object_values(observed: pd.Series, name) -> None:
    """An object column must hold numbers only (strings only are categorical): say what else it holds."""
    numeric = observed.map(lambda v: isinstance(v, int | float | bool | np.number)).to_numpy(dtype=bool)
    if numeric.all():
        return
    textual = observed.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
    if (numeric | textual).all():
        number, text = observed[numeric].iloc[0], observed[textual].iloc[0]
        raise TypeError(
            f"Column {name!r} mixes numbers and strings (e.g. {number!r} and {text!r}); make it one or the "
            "other: numeric with pd.to_numeric (errors='coerce' turns text such as missing-value codes into "
            "NaN), or categorical with .astype(str)."
        )
    other = observed[~(numeric | textual)].iloc[0]
    raise TypeError(
        f"Column {name!r} holds values of type {type(other).__name__} (e.g. {other!r:.60}); the argument must be "
        "a string or a number in every cell: convert the column to numeric or categorical."
    )


def _is_textual(series: pd.Series) -> bool:
    if isinstance(series.dtype, pd.CategoricalDtype) or ptypes.is_string_dtype(series.dtype):
        if series.dtype == object:
            observed = series.dropna()
            return bool(len(observed)) and observed.map(lambda v: isinstance(v, str)).all()
        return True
    return False


def _numeric_kind(observed: np.ndarray, boolean: bool) -> str:
    """Binary (only 0 and 1, or a bool dtype), integer (whole numbers, more than two values) or continuous.

    In passes over the values, without sorting them (``np.unique`` sorted each column, twice at set-up: 0.4 s of
    a 1M-row fit's set-up): a column with a fraction is continuous at once."""
    if boolean or (len(observed) and np.all((observed == 0.0) | (observed == 1.0))):
        return "binary"
    if not len(observed) or not np.all(observed == np.round(observed)):
        return "continuous"
    low, high = observed.min(), observed.max()
    more_than_two = bool(np.any((observed != low) & (observed != high)))
    return "integer" if more_than_two else "continuous"  # two whole values other than 0/1: as before


def detect_codec(series: pd.Series, name, kind: str | None = None) -> ColumnCodec:
    """Kind and encoding of one column (``kind`` overrides the detection)."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"column_kinds[{name!r}] = {kind!r} is not one of {KINDS}.")
    dtype = series.dtype
    if ptypes.is_complex_dtype(dtype):
        raise ValueError(f"Column {name!r}: Complex data not supported.")
    if isinstance(dtype, pd.CategoricalDtype) or _is_textual(series):
        if isinstance(dtype, pd.CategoricalDtype):
            categories, ordered = list(dtype.categories), bool(dtype.ordered)
        else:
            categories, ordered = sorted(series.dropna().astype(str).unique().tolist()), False
        detected = "binary" if len(categories) == 2 else "categorical"
        kind = kind or detected
        if kind in ("continuous", "integer"):
            raise ValueError(f"column_kinds[{name!r}] = {kind!r} but the column is categorical.")
        if kind == "binary" and len(categories) != 2:
            raise ValueError(f"Column {name!r} declared binary has {len(categories)} categories.")
        return ColumnCodec(name, kind, dtype, categories, ordered)
    if ptypes.is_object_dtype(dtype):
        _check_object_values(series.dropna(), name)
    if not (ptypes.is_numeric_dtype(dtype) or ptypes.is_bool_dtype(dtype) or ptypes.is_object_dtype(dtype)):
        raise TypeError(f"Column {name!r} of dtype {dtype} is neither numeric nor categorical.")
    values = _numeric_values(series, name)
    observed = values[~np.isnan(values)]
    if kind is None:
        kind = _numeric_kind(observed, ptypes.is_bool_dtype(dtype))
    if kind in ("continuous", "integer"):  # no list of values needed: no sort of the column
        return ColumnCodec(name, kind, dtype)
    distinct = np.unique(observed)
    if kind == "binary":
        if not np.isin(distinct, [0.0, 1.0]).all():
            if len(distinct) > 2:
                raise ValueError(f"Column {name!r} declared binary has {len(distinct)} distinct values.")
            # two arbitrary numbers: code them 0/1 in sorted order
            return ColumnCodec(name, "binary", dtype, list(distinct) if len(distinct) == 2 else [0.0, 1.0])
        return ColumnCodec(name, "binary", dtype, [0.0, 1.0], numeric_levels=True, boolean_objects=_holds_bools(series))
    if kind == "categorical":
        return ColumnCodec(name, "categorical", dtype, list(distinct))
    return ColumnCodec(name, kind, dtype)


def cluster_codes(data: pd.DataFrame, groups) -> tuple[np.ndarray, pd.Index, Any]:
    """Integer cluster codes ``0..J-1`` (sorted labels), the labels, and the groups column name.

    ``groups`` is a column name of ``data`` or an array of one label per row; string,
    integer and categorical labels all work. A name that is not a column, a length
    mismatch or a missing label is a ``ValueError``.
    """
    column = None
    if isinstance(groups, bool | np.bool_):
        raise TypeError(f"groups={groups!r}: pass the name of the cluster column or one cluster label per row.")
    if _is_column_name(groups, data):  # a tuple can name a column too
        column, labels = groups, data[groups]
        if isinstance(labels, pd.DataFrame):
            raise ValueError(f"groups={groups!r} names {labels.shape[1]} columns of the data (duplicated name).")
    elif np.ndim(groups) == 0:
        raise ValueError(f"groups={groups!r} is not a column of the data.")
    else:
        if isinstance(groups, pd.DataFrame):
            if groups.shape[1] != 1:
                raise ValueError(
                    f"groups is a DataFrame with {groups.shape[1]} columns; pass one column of cluster labels."
                )
            groups = groups.iloc[:, 0]
        try:
            shape = np.shape(groups)
        except ValueError:  # ragged nested sequences
            shape = None
        if shape is None or len(shape) != 1:
            raise ValueError(
                f"groups must be a column name or one cluster label per row (1-D); got "
                f"{'a ragged sequence' if shape is None else f'an array of shape {shape}'}."
            )
        labels = (
            groups
            if isinstance(groups, pd.Series)
            else pd.Series(list(groups) if isinstance(groups, tuple) else np.asarray(groups))
        )
        if labels.ndim != 1 or len(labels) != len(data):
            raise ValueError(
                f"groups has {len(labels)} labels (length {len(labels)}, shape {np.shape(groups)}) but "
                f"the data have {len(data)} rows."
            )
        labels = _aligned(labels, data.index)
    missing = np.asarray(labels.isna(), dtype=bool)
    if missing.any():
        where = f"grouping column {column!r}" if column is not None else "groups"
        raise ValueError(
            f"{where} has missing cluster labels ({int(missing.sum())} missing labels, first at row "
            f"{int(np.flatnonzero(missing)[0])}); every row needs a cluster."
        )
    values = labels.to_numpy()
    try:
        codes, uniques = pd.factorize(values, sort=True)
    except TypeError:  # labels of mixed types cannot be sorted: order of appearance
        codes, uniques = pd.factorize(values)
    return codes.astype(np.intp), pd.Index(uniques, name=column), column


def _is_column_name(groups, data: pd.DataFrame) -> bool:
    """Whether ``groups`` is the (hashable) name of a column, e.g. a string, a number or a tuple."""
    try:
        return groups in data.columns
    except (TypeError, ValueError):  # unhashable: an array of labels
        return False


def _aligned(labels: pd.Series, index: pd.Index) -> pd.Series:
    """A Series of labels in the row order of the data.

    A Series whose index holds exactly the data's (unique) row labels in another order is
    aligned on them, as pandas would; any other Series is taken in its positional order
    (as scikit-learn takes arrays), which is also what a default index means.
    """
    if (
        not labels.index.equals(index)
        and labels.index.is_unique
        and index.is_unique
        and len(labels.index.intersection(index)) == len(index)
    ):
        return labels.reindex(index)
    return labels
