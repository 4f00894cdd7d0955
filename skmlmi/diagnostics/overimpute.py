"""Over-imputation: does the imputation model predict values we know?

For a sample of observed cells of chosen continuous columns, the cells are set missing,
imputed m times with the same imputation model, and each observed value is compared with
the spread of its imputations (micemd's ``overimpute``, Blackwell, Honaker & King 2017).
A well-calibrated model covers about ``1 - alpha`` of the observed values with its
central ``1 - alpha`` intervals.

The sampled cells are masked rather than only marked in ``where``: a cell marked but still
observed would take part in fitting its own imputation model and make the check look
better than it is. Masking a sample of ``sample`` cells per column (default: at most
10% of the observed ones) changes the fitted model little.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.base import clone

from .._frame import to_pandas

if TYPE_CHECKING:  # annotations only (matplotlib is optional)
    from matplotlib.axes import Axes

    from ..imputer import MultilevelIterativeImputer

__all__ = ["overimpute", "OverimputationResult"]


@dataclass
class OverimputationResult:
    """Outcome of :func:`overimpute`.

    Attributes
    ----------
    table : DataFrame
        One row per over-imputed cell: column, row, observed, imputed_mean, lower, upper,
        covered.
    coverage : Series
        Share of observed values inside their interval, per column.
    alpha : float
    """

    table: pd.DataFrame
    coverage: pd.Series
    alpha: float

    def plot(self, ax: Axes | Sequence[Axes] | None = None) -> tuple[Any, Any]:
        """Observed values against their imputed means with intervals (needs matplotlib).

        Parameters
        ----------
        ax : Axes or sequence of Axes, default=None
            One axes per over-imputed column; default a new figure with a row of them.

        Returns
        -------
        figure, axes
        """
        import matplotlib.pyplot as plt

        columns = list(self.coverage.index)
        if ax is None:
            fig, axes = plt.subplots(1, len(columns), figsize=(4.5 * len(columns), 4), squeeze=False)
            axes = axes[0]
        else:
            axes, fig = np.atleast_1d(ax), np.atleast_1d(ax)[0].figure
        for axis, column in zip(axes, columns, strict=True):
            part = self.table[self.table["column"] == column]
            colours = np.where(part["covered"], "tab:blue", "tab:red")
            axis.errorbar(
                part["observed"],
                part["imputed_mean"],
                yerr=[part["imputed_mean"] - part["lower"], part["upper"] - part["imputed_mean"]],
                fmt="none",
                ecolor=colours,
                alpha=0.4,
            )
            axis.scatter(part["observed"], part["imputed_mean"], c=colours, s=10)
            low, high = part[["observed", "lower"]].min().min(), part[["observed", "upper"]].max().max()
            axis.plot([low, high], [low, high], color="grey", lw=1)
            axis.set_xlabel(f"observed {column}")
            axis.set_ylabel("imputed (mean and interval)")
            axis.set_title(f"{column}: coverage {self.coverage[column]:.2f} (target {1 - self.alpha:.2f})")
        return fig, axes


def overimpute(
    imputer: MultilevelIterativeImputer,
    X: pd.DataFrame,
    groups: Hashable | ArrayLike | None = None,
    columns: Sequence[Hashable] | None = None,
    sample: int | float = 0.1,
    alpha: float = 0.1,
    random_state: int | np.random.Generator | np.random.RandomState | None = None,
) -> OverimputationResult:
    """Over-impute a sample of observed cells and report the coverage of their intervals.

    Parameters
    ----------
    imputer : MultilevelIterativeImputer
        The imputation model to check (cloned; its ``n_imputations`` chains give the
        spread of each cell's imputations, so use 20 or more).
    X : DataFrame
        The incomplete data.
    groups : hashable or array-like, optional
        As for the imputer's ``fit``.
    columns : list, optional
        Continuous columns to check; default every incomplete continuous column.
    sample : int or float, default=0.1
        Cells per column: a number, or a share of the observed cells.
    alpha : float, default=0.1
        Intervals are the ``alpha/2`` and ``1 - alpha/2`` quantiles of the imputations.
    random_state : int, optional
        Seed of the cell sample (the imputer keeps its own seed).

    Returns
    -------
    OverimputationResult
    """
    if not isinstance(X, pd.DataFrame):
        raise TypeError("overimpute needs a DataFrame, so that columns can be named.")
    if not isinstance(alpha, numbers.Real) or not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}.")
    share = isinstance(sample, numbers.Real) and 0 < sample < 1
    whole = isinstance(sample, numbers.Real) and np.isfinite(sample) and sample >= 1 and sample == int(sample)
    if isinstance(sample, bool) or not (share or whole):
        raise ValueError(f"sample must be a share in (0, 1) or a whole number of cells >= 1, got {sample!r}.")
    if isinstance(imputer, type) or not hasattr(imputer, "fit_transform_all"):
        raise TypeError(
            f"imputer must be an imputer instance such as MultilevelIterativeImputer(...), got {imputer!r:.60}."
        )
    imputer = clone(imputer)
    if imputer.n_imputations < 20:
        warnings.warn(
            f"n_imputations={imputer.n_imputations}: intervals from fewer than 20 imputations are crude.",
            UserWarning,
            stacklevel=2,
        )
    if columns is None:
        group_column = groups if np.ndim(groups) == 0 else None  # a name, or labels (an array)
        columns = [
            c
            for c in X.columns
            if X[c].isna().any()
            and pd.api.types.is_float_dtype(X[c])
            and X[c].dropna().nunique() > 2
            and c != group_column
        ]
        if not columns:
            raise ValueError("overimpute: no incomplete continuous column to check; name columns= explicitly.")
    elif not columns:
        raise ValueError("overimpute: columns is empty.")
    unknown = [c for c in columns if c not in X.columns]
    if unknown:
        raise ValueError(f"overimpute: unknown columns {unknown}.")
    rng = np.random.default_rng(random_state)
    masked = X.copy()
    chosen = {}
    for column in columns:
        if not pd.api.types.is_numeric_dtype(X[column]):
            raise ValueError(f"overimpute checks continuous columns; {column!r} is not numeric.")
        observed = np.flatnonzero(X[column].notna().to_numpy())
        size = int(sample if sample >= 1 else max(1, round(sample * observed.size)))
        if size >= observed.size:
            raise ValueError(f"overimpute: sample of {size} cells would mask every observed value of {column!r}.")
        chosen[column] = np.sort(rng.choice(observed, size=size, replace=False))
        masked.iloc[chosen[column], masked.columns.get_loc(column)] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sets = imputer.fit_transform_all(masked, groups=groups)
    sets = [to_pandas(s)[0] for s in sets]  # pandas, whatever the imputer's set_output says
    rows = []
    for column, cells in chosen.items():
        draws = np.column_stack([s[column].to_numpy(dtype=float)[cells] for s in sets])
        observed = X[column].to_numpy(dtype=float)[cells]
        lower, upper = np.quantile(draws, [alpha / 2, 1 - alpha / 2], axis=1)
        rows.append(
            pd.DataFrame(
                {
                    "column": column,
                    "row": X.index[cells],
                    "observed": observed,
                    "imputed_mean": draws.mean(axis=1),
                    "lower": lower,
                    "upper": upper,
                    "covered": (observed >= lower) & (observed <= upper),
                }
            )
        )
    table = pd.concat(rows, ignore_index=True)
    coverage = table.groupby("column", sort=False)["covered"].mean().rename("coverage")
    return OverimputationResult(table, coverage, alpha)
