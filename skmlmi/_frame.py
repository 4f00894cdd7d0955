"""The front door for dataframes other than pandas: polars and pyarrow in, the same out.

The engine works on pandas DataFrames (the column codecs of :mod:`skmlmi._columns`, the
``derived`` callables, the analysis formulas all read pandas). This module is the one place
that knows about other dataframe libraries: :func:`to_pandas` turns a polars DataFrame or a
pyarrow Table into a pandas DataFrame when data come in, and :func:`to_output` turns the
pandas result back into the caller's library (or the one ``set_output`` asks for) when they
go out. Both go through narwhals (the compatibility layer scikit-learn itself requires from
1.9 on), so polars and pyarrow take one code path, and neither library is imported unless
the caller passes its objects or asks for its output.

What the conversion keeps, column by column:

============================  =================================  ===============================
polars / pyarrow dtype        pandas dtype inside the engine     dtype out
============================  =================================  ===============================
Float32, Float64              float32, float64 (NaN missing)     the same
Int8 ... Int64, UInt8 ...     Int8 ... UInt64 (nullable)         the same; Float64 when a draw
                                                                 is not a whole number
Boolean                       boolean (nullable)                 Boolean
String                        object (str, None missing)         String
Categorical                   category: the values held, sorted  Categorical
Enum (polars)                 category: the declared categories  the same Enum
all null                      float64                            Float64 (a derived column)
============================  =================================  ===============================

Missing values: null marks a missing value, and so does NaN in a float column (as NaN does in
pandas; polars and pyarrow float columns can hold both). A cell left missing in the output
(a ``where`` mask that skips it) keeps its null or NaN. Other dtypes (dates, durations,
lists, structs, decimals, binary) are an error naming the column, as they are for pandas.

This module must not know about imputation: it converts containers and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import narwhals.stable.v2 as nw
import numpy as np
import pandas as pd
from narwhals.dependencies import (
    is_polars_dataframe,
    is_polars_lazyframe,
    is_polars_series,
    is_pyarrow_chunked_array,
    is_pyarrow_table,
)
from pandas.api import types as ptypes
from sklearn.utils._set_output import _get_output_config

__all__ = ["Source", "to_pandas", "series_to_pandas", "cell_mask", "positional_labels", "to_output", "from_pandas"]

#: The libraries converted here; pandas DataFrames and arrays pass through untouched.
LIBRARIES = ("polars", "pyarrow")


@dataclass(frozen=True)
class Source:
    """What the caller passed, remembered from the way in to the way out.

    ``library`` is ``"pandas"``, ``"array"``, ``"polars"`` or ``"pyarrow"``; for the last two,
    ``frame`` is the caller's frame (narwhals-wrapped, never modified), whose dtypes the
    output takes and whose null or NaN fills the cells left missing; for pandas, ``index``
    is the caller's row index, which a pandas output built from an array keeps.
    """

    library: str
    frame: Any = None
    index: Any = None

    @property
    def is_frame(self) -> bool:
        return self.library != "array"

    @property
    def schema(self) -> dict:
        return dict(self.frame.schema) if self.frame is not None else {}


# ----------------------------------------------------------------------------- in
def to_pandas(X) -> tuple[Any, Source]:
    """``X`` as the engine takes it, and where it came from.

    A polars DataFrame or pyarrow Table becomes a pandas DataFrame (dtypes as in the module
    docstring, a default RangeIndex); a pandas DataFrame and anything else (arrays, lists)
    are returned as they are.
    """
    if isinstance(X, pd.DataFrame):
        return X, Source("pandas", index=X.index)
    if is_polars_lazyframe(X):
        raise TypeError("X is a polars LazyFrame; collect it first (X.collect()).")
    if is_polars_dataframe(X) or is_pyarrow_table(X):
        frame = nw.from_native(X, eager_only=True)
        return _frame_to_pandas(frame), Source(_library(frame), frame)
    return X, Source("array")


def series_to_pandas(values):
    """A polars Series or pyarrow ChunkedArray as a pandas Series (its name and dtype kept as
    :func:`to_pandas` keeps a column's); anything else as it is."""
    if is_polars_series(values) or is_pyarrow_chunked_array(values):
        series = nw.from_native(values, series_only=True)
        return _frame_to_pandas(series.to_frame()).iloc[:, 0]
    return values


def cell_mask(where):
    """A polars or pyarrow frame of booleans (a ``where`` mask) as a pandas DataFrame of numpy
    bools, which the engine reads by column name; anything else as it is."""
    frame, source = to_pandas(where)
    if source.frame is None:
        return where
    if frame.isna().to_numpy().any():
        raise ValueError("where has null cells; mark every cell True or False.")
    return frame.astype({name: bool for name in frame.columns if ptypes.is_bool_dtype(frame[name].dtype)})


def positional_labels(groups, source: Source):
    """Cluster labels as the engine takes them.

    A polars or pyarrow Series (or one-column frame) becomes pandas. A pandas Series or
    DataFrame aligns on the rows of a pandas X only: any other X has no index to align on,
    so the labels are taken in row order, as scikit-learn takes arrays.
    """
    groups = series_to_pandas(groups)
    if is_polars_dataframe(groups) or is_pyarrow_table(groups):
        groups = to_pandas(groups)[0]
    if isinstance(groups, pd.Series | pd.DataFrame) and source.library != "pandas":
        return groups.reset_index(drop=True)  # X's rows are 0..n-1 inside the engine
    return groups


def _library(obj) -> str:
    return "polars" if obj.implementation is nw.Implementation.POLARS else "pyarrow"


#: Dtypes converted a block of columns at a time (one copy for all the columns of a dtype).
_NUMPY = {
    nw.Float32: np.float32,
    nw.Float64: np.float64,
    nw.Int8: np.int8,
    nw.Int16: np.int16,
    nw.Int32: np.int32,
    nw.Int64: np.int64,
    nw.UInt8: np.uint8,
    nw.UInt16: np.uint16,
    nw.UInt32: np.uint32,
    nw.UInt64: np.uint64,
    nw.Boolean: np.bool_,
}


_FROM_NUMPY = {np.dtype(numpy): known for known, numpy in _NUMPY.items()}


def _numpy_dtype(dtype):
    return next((numpy for known, numpy in _NUMPY.items() if dtype == known), None)


def _blocks(dtypes) -> tuple[dict, list]:
    """Positions of the columns by dtype (numbers and booleans), and the positions of the others."""
    blocks, others = {}, []
    for j, dtype in enumerate(dtypes):
        if _numpy_dtype(dtype) is None:
            others.append(j)
        else:
            blocks.setdefault(str(dtype), []).append(j)
    return blocks, others


def _frame_to_pandas(frame) -> pd.DataFrame:
    """A narwhals DataFrame as a pandas DataFrame (see the module docstring for the dtypes)."""
    names, dtypes = list(frame.columns), list(frame.schema.values())
    index = pd.RangeIndex(len(frame))
    null = frame.select(nw.all().is_null()).to_numpy().astype(bool) if names else np.zeros((len(frame), 0), bool)
    pieces = []
    blocks, others = _blocks(dtypes)
    for positions in blocks.values():
        dtype, block_names = dtypes[positions[0]], [names[j] for j in positions]
        numpy = _numpy_dtype(dtype)
        if dtype.is_float():
            values = np.array(frame.select(block_names).to_numpy(), dtype=numpy)
            values[null[:, positions]] = np.nan  # NaN in the data stays NaN: missing, as in pandas
            pieces.append(pd.DataFrame(values, columns=block_names, index=index))
            continue
        filler = False if dtype == nw.Boolean else 0
        values = np.asarray(frame.select(nw.col(*block_names).fill_null(filler)).to_numpy(), dtype=numpy)
        array = pd.arrays.BooleanArray if dtype == nw.Boolean else pd.arrays.IntegerArray
        columns = {names[j]: array(values[:, k].copy(), null[:, j]) for k, j in enumerate(positions)}
        pieces.append(pd.DataFrame(columns, index=index))
    if others:
        columns = {names[j]: _column_to_pandas(frame[names[j]], null[:, j]) for j in others}
        pieces.append(pd.DataFrame(columns, index=index))
    if not pieces:
        return pd.DataFrame(index=index)
    out = pieces[0] if len(pieces) == 1 else pd.concat(pieces, axis=1)
    return out if list(out.columns) == names else out[names]


def _column_to_pandas(series, null) -> pd.Series:
    """One string, categorical or all-null column as a pandas Series."""
    name, dtype = series.name, series.dtype
    if dtype == nw.String:
        return pd.Series(_labels(series, null), dtype=object, name=name)
    if dtype == nw.Categorical or dtype == nw.Enum:
        labels = _labels(series.cast(nw.String), null)
        if dtype == nw.Enum:
            categories = list(dtype.categories)
        else:  # polars 2 keeps no per-column list of categories: the values held, sorted
            categories = sorted(set(labels[~null].tolist()))
        return pd.Series(pd.Categorical(labels, categories=categories), name=name)
    if bool(null.all()):  # all null (polars' Null dtype): a derived column that starts empty
        return pd.Series(np.full(len(series), np.nan), name=name)
    raise TypeError(
        f"Column {name!r} has dtype {dtype}, which is neither numeric nor categorical; convert it (a date to a "
        "number, for example) or drop it."
    )


def _labels(series, null) -> np.ndarray:
    labels = np.asarray(series.to_numpy(), dtype=object)
    labels[null] = None
    return labels


# ----------------------------------------------------------------------------- out
def to_output(out, source: Source, estimator):
    """The engine's result ``out`` (a pandas DataFrame, or an array for array input) in the
    container the caller gets.

    ``set_output(transform="pandas" | "polars")`` (on the estimator, or scikit-learn's global
    ``transform_output``) chooses it; by default the output follows the input: pandas in,
    pandas out; polars in, polars out; pyarrow in, pyarrow out; array in, array out.
    """
    container = _get_output_config("transform", estimator)["dense"]
    if container == "default":
        container = source.library
    if container == "array":  # an imputer fitted on a DataFrame, given an array
        return out.to_numpy() if isinstance(out, pd.DataFrame) else out
    if isinstance(out, np.ndarray):
        out = pd.DataFrame(out, columns=estimator.get_feature_names_out(), index=source.index)
    if container in LIBRARIES:
        if not all(isinstance(name, str) for name in out.columns):  # polars and pyarrow name columns by strings
            out = out.set_axis(list(estimator.get_feature_names_out()), axis=1)
        native = source.frame if source.library == container else None
        return from_pandas(out, container, schema=source.schema if native is not None else {}, original=native)
    return out  # pandas, or a container registered with scikit-learn, which wraps the pandas result


def from_pandas(frame: pd.DataFrame, library: str, schema: dict | None = None, original=None):
    """A pandas DataFrame as a ``library`` ("polars" or "pyarrow") frame.

    Each column takes its dtype from ``schema`` (the caller's dtypes) where one is given,
    except that an integer column holding non-whole numbers becomes Float64; otherwise the
    dtype follows the pandas one. Cells missing in ``frame`` take ``original``'s value
    (null or NaN) when ``original`` (row-aligned with ``frame``) is given, else null.
    """
    schema = schema or {}
    names = [name if isinstance(name, str) else str(name) for name in frame.columns]
    if len(set(names)) < len(names):
        raise ValueError(f"{library} needs distinct column names; the output has {names}.")
    if not names:
        return nw.from_dict({}, backend=library).to_native()
    dtypes = [
        _output_dtype(dtype, schema.get(name), lambda j=j: frame.iloc[:, j])
        for j, (name, dtype) in enumerate(zip(names, frame.dtypes, strict=True))
    ]
    missing = frame.isna().to_numpy()
    pieces = []
    blocks, others = _blocks(dtypes)
    for positions in blocks.values():
        dtype = dtypes[positions[0]]
        filler = np.nan if dtype.is_float() else (False if dtype == nw.Boolean else 0)
        values = frame.iloc[:, positions].to_numpy(dtype=_numpy_dtype(dtype), na_value=filler)
        pieces.append(nw.from_numpy(values, schema={names[j]: dtype for j in positions}, backend=library))
    for j in others:  # strings, categoricals, enums: the labels as strings, then the dtype
        labels = frame.iloc[:, j].to_numpy(dtype=object)
        labels = [None if gap else str(label) for label, gap in zip(labels, missing[:, j], strict=True)]
        column = nw.new_series(names[j], labels, nw.String, backend=library)
        pieces.append((column if dtypes[j] == nw.String else column.cast(dtypes[j])).to_frame())
    out = pieces[0] if len(pieces) == 1 else nw.concat(pieces, how="horizontal")
    restored = []
    for j in np.flatnonzero(missing.any(axis=0)):
        name, dtype = names[j], dtypes[j]
        if original is not None and name in original.columns:
            before = original[name].cast(dtype)
        else:
            before = nw.new_series(name, [None] * len(frame), dtype, backend=library)
        keep = nw.new_series(name, ~missing[:, j], nw.Boolean, backend=library)
        restored.append(out[name].zip_with(keep, before).alias(name))
    if restored:
        out = out.with_columns(*restored)
    return (out if out.columns == names else out.select(names)).to_native()


def _output_dtype(pandas_dtype, dtype, column):
    """The narwhals dtype a column leaves with: the caller's (``dtype``) where it still fits.
    ``column()`` gives the pandas column, read only for columns of Python objects."""
    natural = _natural_dtype(pandas_dtype, column)
    if dtype is None or dtype == nw.Unknown:
        return natural
    if dtype.is_integer() and not natural.is_integer():
        return nw.Float64  # an integer column imputed with fractions, as for pandas
    return dtype


def _natural_dtype(dtype, column):
    """The narwhals dtype of a pandas column, as polars' own conversion would choose it."""
    if isinstance(dtype, pd.CategoricalDtype):
        categories = dtype.categories
        if ptypes.is_string_dtype(categories.dtype) or ptypes.is_object_dtype(categories.dtype):
            return nw.Categorical
        return _natural_dtype(categories.dtype, lambda: pd.Series(categories))
    if ptypes.is_bool_dtype(dtype):
        return nw.Boolean
    if ptypes.is_numeric_dtype(dtype):
        return _FROM_NUMPY.get(np.dtype(getattr(dtype, "numpy_dtype", dtype)), nw.Float64)
    kind = pd.api.types.infer_dtype(column(), skipna=True)
    numbers = {"integer": nw.Int64, "floating": nw.Float64, "mixed-integer-float": nw.Float64, "empty": nw.Float64}
    return nw.Boolean if kind == "boolean" else numbers.get(kind, nw.String)
