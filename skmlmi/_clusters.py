"""The one home of cluster facts: :class:`Clusters`.

The front door encodes the cluster labels exactly once, at ``fit``, into a frozen
:class:`Clusters`: integer codes ``0..J-1`` (labels sorted), the labels, the cluster sizes,
the count and the cluster column of X. Everything downstream (the planner, the sampler,
the conditional models through :class:`~skmlmi.conditional.base.DrawContext`,
:func:`~skmlmi.recommend.recommend_methods`) reads the codes and the count from it and never
re-encodes labels or guesses the count from ``max(codes)``.

New data keep the codes of the clusters seen at fit; clusters unseen at fit get codes
``J, J+1, ...`` (:meth:`Clusters.recode`), which the models read as "draw this cluster's
effect from the population". One grouping factor for now; the value is the place where a
later release holds several (nested or crossed), each with its own codes.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from ._columns import cluster_codes
from ._kernels import cluster_constancy

__all__ = ["Clusters"]


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
    """

    codes: np.ndarray
    labels: pd.Index
    column: Hashable | None = None
    n_seen_at_fit: int | None = None

    @classmethod
    def from_data(cls, frame: pd.DataFrame, groups: Any) -> Clusters:
        """Encode ``groups`` (a column name of ``frame`` or one label per row) once."""
        codes, labels, column = cluster_codes(frame, groups)
        return cls(codes, pd.Index(labels, name=None), column)

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

    @property
    def sizes(self) -> np.ndarray:
        """Rows per cluster code (length :attr:`count`)."""
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
        fitted = self.fitted_labels
        new = Clusters.from_data(frame, groups)
        values = np.asarray(new.labels)[new.codes]
        index = fitted.get_indexer(values)
        unseen = index < 0
        if unseen.all() and len(values) and _label_kind(values) != _label_kind(fitted):
            warnings.warn(
                f"No cluster of the new data was seen at fit, and their labels are {_label_kind(values)} where "
                f"the fitted ones are {_label_kind(fitted)} (e.g. {values[0]!r} vs "
                f"{fitted[0]!r}): every cluster is treated as new. Convert the labels if they "
                "name the same clusters.",
                UserWarning,
                stacklevel=6,
            )
        labels = fitted
        if unseen.any():
            _, first_seen = pd.factorize(values[unseen])
            index[unseen] = len(fitted) + pd.Index(first_seen).get_indexer(values[unseen])
            labels = fitted.append(pd.Index(first_seen))
        return Clusters(index.astype(np.intp), labels, new.column, len(fitted))


def _label_kind(labels) -> str:
    """``"numbers"`` or ``"text"``: what a set of cluster labels holds, for the mismatch warning."""
    return "numbers" if pd.api.types.is_numeric_dtype(pd.Index(labels)) else "text"
