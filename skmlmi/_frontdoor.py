"""The front door: the caller's data <-> the float working matrix the engine computes on.

In: a pandas or polars DataFrame, a pyarrow Table or an array (:mod:`skmlmi._frame` converts
the libraries) becomes :class:`WorkingData`: the columns' codecs (kind, categories, dtype;
:mod:`skmlmi._columns`), the working matrix ``W`` (floats, NaN for missing, categories as codes
``0..K-1``), the missing-cell mask and the one :class:`~skmlmi._clusters.Clusters` value.
Out: :func:`write_output` decodes a completed working matrix into the caller's container,
keeping every cell that was not imputed exactly as the caller gave it.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ._clusters import Clusters
from ._columns import ColumnCodec, detect_codec
from ._frame import Source, to_output, to_pandas

__all__ = [
    "Layout",
    "WorkingData",
    "check_ignore",
    "check_where",
    "detect_codecs",
    "encode",
    "read_frame",
    "write_output",
]


@dataclass(frozen=True)
class Layout:
    """The shape of the data seen at fit: columns, their codecs and the cluster column."""

    columns: list
    codecs: list[ColumnCodec]
    groups_column: Hashable | None
    is_frame: bool
    other_groups_columns: tuple = ()  # the further grouping factors' columns (several factors)

    @property
    def groups_columns(self) -> tuple:
        """Every grouping column of X (the first factor's, then the others')."""
        return (() if self.groups_column is None else (self.groups_column,)) + tuple(self.other_groups_columns)

    def position(self, name) -> int:
        return self.columns.index(name)

    def align(self, frame: pd.DataFrame, is_frame: bool) -> pd.DataFrame:
        """New data in the columns' order seen at fit (by position when names are on one side only)."""
        if is_frame != self.is_frame:  # scikit-learn has warned about the names
            return frame.set_axis(self.columns, axis=1)
        if is_frame and list(frame.columns) != self.columns:
            absent = [c for c in self.columns if c not in frame.columns]
            if absent:
                raise ValueError(f"X lacks columns seen at fit: {absent}.")
            return frame[self.columns]
        return frame


@dataclass
class WorkingData:
    """One dataset at the front door: the caller's frame and its working matrix.

    Attributes
    ----------
    frame : DataFrame
        The caller's data as pandas (never modified).
    source : Source
        Where it came from (library, schema), to return results in the same container.
    layout : Layout
    W : ndarray of shape (n, p)
        Floats; NaN marks a missing cell; the cluster column holds zeros (its codes travel in
        ``clusters``).
    missing : ndarray of bool, shape (n, p)
        Missing cells (never the cluster column's).
    clusters : Clusters or None
    """

    frame: pd.DataFrame
    source: Source
    layout: Layout
    W: np.ndarray
    missing: np.ndarray
    clusters: Clusters | None

    @property
    def columns(self) -> list:
        return self.layout.columns

    @property
    def codecs(self) -> list[ColumnCodec]:
        return self.layout.codecs

    @property
    def groups_column(self):
        return self.layout.groups_column


def read_frame(X) -> tuple:
    """X converted (polars and pyarrow through :mod:`skmlmi._frame`), as a pandas frame, its source, and
    whether it came with column names. Sparse, non-2-D and empty data are errors."""
    converted, source = to_pandas(X)
    if isinstance(converted, pd.DataFrame):
        frame, is_frame = converted, True
    else:
        if hasattr(converted, "toarray") or hasattr(converted, "tocsr"):
            raise TypeError("Sparse input is not supported; pass a dense array or a DataFrame.")
        array = np.asarray(converted)
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
    return converted, frame, source, is_frame


def detect_codecs(frame: pd.DataFrame, column_kinds: dict | None) -> list[ColumnCodec]:
    """One codec per column: its kind (``column_kinds`` overrides the detected one), categories and dtype."""
    kinds = dict(column_kinds or {})
    unknown = [k for k in kinds if k not in frame.columns]
    if unknown:
        raise ValueError(f"column_kinds names unknown columns: {unknown}.")
    return [detect_codec(frame[name], name, kinds.get(name)) for name in frame.columns]


def encode(frame: pd.DataFrame, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """The working matrix of ``frame`` and its missing-cell mask (the cluster column is never missing).

    Column-major: the chains read a variable's column for every design they build, and a column of
    a row-major matrix is strided, one cache line per value."""
    W = np.empty(frame.shape, dtype=float, order="F")
    for j, (name, codec) in enumerate(zip(frame.columns, layout.codecs, strict=True)):
        W[:, j] = 0.0 if name in layout.groups_columns else codec.encode(frame[name])
    missing = np.isnan(W)
    return W, missing


def learn_observed_categories(codecs: list[ColumnCodec], W, missing, layout_columns, grouping: tuple) -> list:
    """Each binary/categorical codec learns which of its categories the data hold (new data may hold no other).

    ``grouping``: the grouping columns (:attr:`Layout.groups_columns`), which are never modelled."""
    learned = list(codecs)
    for j, codec in enumerate(codecs):
        # a derived column may start entirely missing: its values come from its inputs, not from a model
        if codec.categories is not None and layout_columns[j] not in grouping and not missing[:, j].all():
            learned[j] = replace(codec, observed_codes=np.unique(W[~missing[:, j], j]))
    return learned


def write_output(W, frame, source, layout: Layout, keep_groups: bool, estimator, changed=None, written=None):
    """``W`` in the input's format.

    An array comes back as an array, with its cluster labels and its categories' labels (not the
    working matrix's codes) in their columns: of floats when every column is numeric, else of
    objects (or in the container ``set_output`` asks for, each column typed by its values).

    ``changed`` lists the columns that may differ from ``frame`` (default: those with missing
    values), ``written`` marks the cells imputed or recomputed (default: the missing ones). The
    other cells of a DataFrame keep the caller's values exactly: the float working copy would
    round integers beyond 2**53. The result goes out in the caller's container, or the one
    ``set_output`` asks for (:func:`skmlmi._frame.to_output`).
    """
    columns, grouping = layout.columns, layout.groups_columns
    out = frame.copy()  # an array's too (its frame, columns 0, 1, ...): labels and categories decoded alike
    if changed is None:
        changed = [j for j, name in enumerate(columns) if name not in grouping and frame[name].isna().any()]
    for j in changed:
        name = columns[j]
        decoded = layout.codecs[j].decode(W[:, j], index=frame.index)
        keep = np.flatnonzero(~(written[:, j] if written is not None else frame[name].isna().to_numpy()))
        if keep.size:
            try:
                decoded.iloc[keep] = frame[name].iloc[keep].to_numpy()
            except (TypeError, ValueError):  # an observed value the fitted dtype cannot hold: as decoded
                pass
        out[name] = decoded
    if grouping and not keep_groups:
        out = out.drop(columns=list(grouping))
    if not layout.is_frame:  # an array's columns typed by their values, named as the estimator names them
        out = out.infer_objects().set_axis(list(estimator.get_feature_names_out()), axis=1)
    return to_output(out, source, estimator)


def check_where(where, data: WorkingData) -> np.ndarray:
    """Cells to impute: the missing ones, or a user mask (observed cells = over-imputation)."""
    missing, columns = data.missing, data.columns
    if where is None:
        return missing
    if isinstance(where, pd.DataFrame):
        unknown = [c for c in where.columns if c not in columns]
        if unknown:
            raise ValueError(f"where names unknown columns {unknown}.")
        where = where.reindex(columns=columns, fill_value=False).to_numpy()
    where = np.asarray(where)
    if where.shape != missing.shape or where.dtype != bool:
        raise ValueError(f"where must be a boolean mask of shape {missing.shape}; got {where.dtype} {where.shape}.")
    for name in data.layout.groups_columns:
        if where[:, columns.index(name)].any():
            raise ValueError(f"where marks cells of the cluster column {name!r}, which is never imputed.")
    return where.copy()


def check_ignore(ignore, n: int) -> np.ndarray:
    if ignore is None:
        return np.zeros(n, dtype=bool)
    ignore = np.asarray(ignore)
    if ignore.shape != (n,) or ignore.dtype != bool:
        raise ValueError(f"ignore must be a boolean array of length {n}; got {ignore.dtype} {ignore.shape}.")
    return ignore.copy()
