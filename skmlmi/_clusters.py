"""The one home of cluster facts: :class:`Clusters`.

The front door encodes the cluster labels exactly once, at ``fit``, into a frozen
:class:`Clusters`: integer codes ``0..J-1`` (labels sorted), the labels, the cluster sizes,
the count and the cluster column of X. Everything downstream (the planner, the sampler,
the conditional models through :class:`~skmlmi.conditional.base.DrawContext`,
:func:`~skmlmi.recommend.recommend_methods`) reads the codes and the count from it and never
re-encodes labels or guesses the count from ``max(codes)``.

New data keep the codes of the clusters seen at fit; clusters unseen at fit get codes
``J, J+1, ...`` (:meth:`Clusters.recode`), which the models read as "draw this cluster's
effect from the population".

Several grouping factors (``groups`` a list of column names, or a 2-D array / DataFrame of
labels, ordered outer to inner) are held as one :class:`Clusters` per factor: ``codes``,
``labels``, ``column`` and ``count`` of the value itself are those of the first (outer) factor,
so every one-factor code path reads it unchanged; :attr:`Clusters.factors` lists all of them and
:attr:`Clusters.structure` says whether they are nested (every inner unit inside one outer unit)
or crossed. ``cluster_structure="nested"`` combines each inner factor's labels with those of the
factors outside it (lme4's ``school/class``: class labels ``a``-``c`` repeating in every school mean
school:class), so the factors are nested by construction.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd

from ._columns import _is_column_name, cluster_codes
from ._kernels import cluster_constancy
from ._warnings import warn_user

__all__ = ["Clusters", "STRUCTURES"]

#: What ``cluster_structure`` may say about several grouping factors.
STRUCTURES = ("auto", "nested", "crossed")


@dataclass(frozen=True, eq=False)
class Clusters:
    """Cluster membership of the rows of one dataset.

    Attributes
    ----------
    codes : ndarray of shape (n_rows,), intp
        Cluster code of every row: ``0..J-1`` for the clusters seen at fit (in the order of
        ``labels``), ``J`` and above for clusters new at ``transform``.
    labels : Index
        One label per code: the J clusters seen at fit, sorted (in order of appearance when they
        cannot be sorted), then the clusters of new data unseen at fit, in order of appearance.
    column : hashable or None
        The cluster column of X, or None when the labels were passed as an array.
    n_seen : int or None
        J, the clusters seen at fit (None: all of ``labels``).
    others : tuple of Clusters
        The further grouping factors (one-factor values), outer to inner; empty with one factor.
    structure : {"single", "nested", "crossed"}
        How the factors relate: one factor, nested (each unit of a factor inside one unit of the
        factor before it) or crossed.
    combined : bool
        Whether inner labels were combined with the outer ones (``cluster_structure="nested"``).
    """

    codes: np.ndarray
    labels: pd.Index
    column: Hashable | None = None
    n_seen_at_fit: int | None = None
    others: tuple = ()
    structure: str = "single"
    combined: bool = False

    @classmethod
    def from_data(cls, frame: pd.DataFrame, groups: Any, structure: str = "auto") -> Clusters:
        """Encode ``groups`` once: a column name of ``frame`` or one label per row, or several factors
        (a list of column names, a 2-D array or DataFrame of labels), outer to inner."""
        specs = factor_specs(frame, groups)
        if specs is None or len(specs) == 1:
            codes, labels, column = cluster_codes(frame, groups if specs is None else specs[0])
            return cls(codes, pd.Index(labels, name=None), column)
        raw = [cluster_codes(frame, spec) for spec in specs]
        nested = all(_nested(raw[k - 1][0], raw[k][0], len(raw[k - 1][1])) for k in range(1, len(raw)))
        combine = structure == "nested" and not nested
        if combine and all(_nested(raw[k][0], raw[k - 1][0], len(raw[k][1])) for k in range(1, len(raw))):
            raise ValueError(
                f"cluster_structure='nested' reads the grouping factors {_names(raw)} outer to inner, but each "
                "lies within the one after it: they are given inner to outer. Reverse their order."
            )
        if structure == "auto" and not nested:  # the common trap: class labels a, b, c reused in every school
            inner = [k for k in range(1, len(raw)) if not _nested(raw[k - 1][0], raw[k][0], len(raw[k - 1][1]))]
            names = _names(raw)
            warn_user(
                f"The grouping factors {names} are read as crossed: units of factor {inner[0] + 1} occur in several "
                f"units of factor {inner[0]}. If they are nested with labels that repeat across the outer units "
                "(classes a, b, c in every school), pass cluster_structure='nested', or the inner factor's "
                "variance is imputed as far too small; pass cluster_structure='crossed' to say they are crossed.",
            )
        if structure == "crossed" and nested:
            warn_user(
                f"cluster_structure='crossed', but the grouping factors {_names(raw)} look nested (every unit "
                "of each lies within one unit of the factor before it); they are used as crossed factors, "
                "which for random intercepts is the same model when the inner labels are unique.",
            )
        factors = []
        for k, (codes, labels, column) in enumerate(raw):
            if combine and k > 0:
                codes, labels = _combine_codes([r[0] for r in raw[: k + 1]], [r[1] for r in raw[: k + 1]])
            factors.append(cls(codes, pd.Index(labels, name=None, tupleize_cols=False), column))
        first = factors[0]
        return cls(
            first.codes,
            first.labels,
            first.column,
            others=tuple(factors[1:]),
            structure="nested" if nested or combine else "crossed",
            combined=combine,
        )

    # ------------------------------------------------------------------ several factors
    @property
    def n_factors(self) -> int:
        """How many grouping factors (1 for one)."""
        return 1 + len(self.others)

    @cached_property
    def factors(self) -> tuple:
        """One one-factor :class:`Clusters` per grouping factor, outer to inner (the first is this value's)."""
        if not self.others:
            return (self,)
        return (Clusters(self.codes, self.labels, self.column, self.n_seen_at_fit),) + self.others

    @cached_property
    def code_matrix(self) -> np.ndarray:
        """The codes of every factor, shape (n_rows, n_factors) (built once: every visit of a chain reads it)."""
        return np.column_stack([f.codes for f in self.factors])

    @property
    def counts(self) -> tuple:
        """Codes in use per factor."""
        return tuple(f.count for f in self.factors)

    @property
    def columns(self) -> tuple:
        """The grouping columns of X (factors given as labels have none)."""
        return tuple(f.column for f in self.factors if f.column is not None)

    @property
    def n_seen(self) -> int:
        """J: the clusters seen at fit."""
        return len(self.labels) if self.n_seen_at_fit is None else self.n_seen_at_fit

    @property
    def count(self) -> int:
        """Codes in use: J, plus the clusters of new data unseen at fit."""
        return len(self.labels)

    @property
    def fitted_labels(self) -> pd.Index:
        """The labels of the J clusters seen at fit."""
        return self.labels[: self.n_seen]

    @cached_property
    def sizes(self) -> np.ndarray:
        """Rows per cluster code (length :attr:`count`; counted once per value: every design's means divide by it)."""
        return np.bincount(self.codes, minlength=self.count)

    @property
    def unseen(self) -> np.ndarray:
        """Rows of clusters not seen at fit (boolean mask)."""
        return self.codes >= self.n_seen

    def observing(self, rows: np.ndarray) -> int:
        """How many clusters hold at least one of ``rows`` (a boolean mask)."""
        return int(np.count_nonzero(np.bincount(self.codes[rows], minlength=self.count)))

    def constancy(self, values: np.ndarray, missing: np.ndarray) -> Literal[False, "whole", "partial"]:
        """False, or ``"whole"``/``"partial"`` for a column constant within every cluster.

        The one rule of :func:`skmlmi._kernels.cluster_constancy` (relative to the column's
        own magnitude). ``"partial"``: some cluster has both observed and missing cells of it.
        """
        _, varying = cluster_constancy(values, self.codes, self.count)
        repeated = np.bincount(self.codes[~np.isnan(values)], minlength=self.count).max(initial=0) >= 2
        if varying.any() or not repeated:  # no cluster holding two values: no evidence of level 2
            return False
        n_missing = np.bincount(self.codes[missing], minlength=self.count)
        return "partial" if ((n_missing > 0) & (n_missing < self.sizes)).any() else "whole"

    def label_of(self, code: int) -> Any:
        """The label of a code, as the plain Python value it holds (for messages)."""
        label = self.labels[code]
        return label.item() if isinstance(label, np.generic) else label

    def recode(self, frame: pd.DataFrame, groups: Any) -> Clusters:
        """The clusters of new data: seen clusters keep their codes, unseen ones get ``J, J+1, ...``."""
        if self.others:
            specs = factor_specs(frame, groups)
            if specs is None or len(specs) != self.n_factors:  # (a one-element list is one factor)
                raise ValueError(
                    f"The imputer was fitted with {self.n_factors} grouping factors; groups of new data must give "
                    f"as many (got {1 if specs is None else len(specs)})."
                )
            raw = [cluster_codes(frame, spec) for spec in specs]
            factors = []
            for k, (fitted, (codes, labels, column)) in enumerate(zip(self.factors, raw, strict=True)):
                if self.combined and k > 0:
                    codes, labels = _combine_codes([r[0] for r in raw[: k + 1]], [r[1] for r in raw[: k + 1]])
                values = pd.Index(labels, tupleize_cols=False)
                factors.append(fitted._recode_values(np.asarray(values, dtype=object)[codes], column))
            first = factors[0]
            return replace(first, others=tuple(factors[1:]), structure=self.structure, combined=self.combined)
        new = Clusters.from_data(frame, groups)
        return self._recode_values(np.asarray(new.labels)[new.codes], new.column)

    def _recode_values(self, values: np.ndarray, column: Hashable | None) -> Clusters:
        """One factor of new data from its labels per row (see :meth:`recode`)."""
        fitted = self.fitted_labels
        index = fitted.get_indexer(values)
        unseen = index < 0
        if unseen.all() and len(values) and _label_kind(values) != _label_kind(fitted):
            warn_user(
                f"No cluster of the new data was seen at fit, and their labels are {_label_kind(values)} where "
                f"the fitted ones are {_label_kind(fitted)} (e.g. {values[0]!r} vs "
                f"{fitted[0]!r}): every cluster is treated as new. Convert the labels if they "
                "name the same clusters.",
            )
        labels = fitted
        if unseen.any():
            _, first_seen = pd.factorize(values[unseen])
            index[unseen] = len(fitted) + pd.Index(first_seen).get_indexer(values[unseen])
            labels = fitted.append(pd.Index(first_seen))
        return Clusters(index.astype(np.intp), labels, column, len(fitted))


def _label_kind(labels) -> str:
    """``"numbers"`` or ``"text"``: what a set of cluster labels holds, for the mismatch warning."""
    # inferred from the values: several factors' labels arrive as object arrays, whose dtype says nothing
    numeric = pd.api.types.infer_dtype(pd.Index(labels), skipna=True) in ("integer", "floating", "mixed-integer-float")
    return "numbers" if numeric else "text"


def factor_specs(frame: pd.DataFrame, groups: Any) -> list | None:
    """The grouping factors ``groups`` names, outer to inner, or None for one factor.

    Several factors: a list of two or more distinct column names of ``frame`` (a list as long as
    the data stays one factor's labels, as before), a DataFrame with several columns, or a 2-D
    array of labels with several columns. A one-element list of a column name is that one column.
    """
    if isinstance(groups, list) and groups:
        named = [_is_column_name(g, frame) for g in groups]
        # distinct column names are the columns even when the list is as long as the data (two rows, two factors)
        if all(named) and len(set(map(repr, groups))) == len(groups):
            return list(groups)
        if any(named) and len(groups) != len(
            frame
        ):  # meant as grouping columns: say which entry is wrong, not that the lengths differ
            absent = [g for g, known in zip(groups, named, strict=True) if not known]
            repeated = sorted({repr(g) for g in groups if sum(repr(h) == repr(g) for h in groups) > 1})
            problem = f"{absent} are not columns of the data" if absent else f"{', '.join(repeated)} repeated"
            raise ValueError(f"groups={groups!r} names grouping columns, outer to inner, but {problem}.")
    if isinstance(groups, pd.DataFrame):
        if groups.shape[1] > 1:
            return [groups.iloc[:, k] for k in range(groups.shape[1])]
        return None
    if isinstance(groups, np.ndarray) and groups.ndim == 2 and groups.shape[1] > 1:
        return [groups[:, k] for k in range(groups.shape[1])]
    return None


def _nested(outer: np.ndarray, inner: np.ndarray, n_outer: int) -> bool:
    """Whether every unit of ``inner`` lies within one unit of ``outer`` (codes of both)."""
    pairs = np.unique(inner.astype(np.int64) * n_outer + outer)
    return bool((np.bincount(pairs // n_outer) <= 1).all())


def _combine_codes(codes: list, labels: list) -> tuple[np.ndarray, list]:
    """Codes and tuple labels of the innermost factor combined with every factor outside it."""
    key = np.zeros(len(codes[0]), dtype=np.int64)
    for c, lab in zip(codes, labels, strict=True):
        key = key * len(lab) + c
    unique, inverse = np.unique(key, return_inverse=True)
    parts, rest = [], unique
    for lab in reversed(labels):  # unique keys back to each factor's code (one pass per factor, not per unit)
        parts.append(np.asarray(lab, dtype=object)[rest % len(lab)])
        rest = rest // len(lab)
    tuples = list(zip(*[p.tolist() for p in reversed(parts)], strict=True))
    return inverse.astype(np.intp).reshape(-1), tuples


def _names(raw) -> str:
    return ", ".join(repr(r[2]) if r[2] is not None else f"#{k}" for k, r in enumerate(raw))
