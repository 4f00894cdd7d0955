"""Looking at the data and the imputations: patterns, correlations, predictor matrices, traces.

The plots of the multilevel imputation workflow (R's ``md.pattern``, ggmice's
``plot_pattern``/``plot_corr``/``plot_pred``/``plot_trace``, mice's ``densityplot``,
``convergence()``), plus what R lacks: missingness per cluster (sporadic vs systematic),
observed vs imputed values within chosen clusters and the intraclass correlation of every
variable before and after imputation.

One convention everywhere: a plotting function returns a :class:`DiagnosticPlot` with
``.figure`` (matplotlib Figure), ``.axes`` (the main Axes, or an array of them) and
``.table`` (a DataFrame of exactly what is drawn), and unpacks as
``fig, axes, table = plot_...(...)``. Table-only functions (:func:`md_pattern`,
:func:`convergence_table`, :func:`icc`, :func:`icc_table`) return DataFrames/Series and
need no matplotlib.

This room reads data frames and a fitted imputer's public attributes (``chain_mean_``,
``chain_var_``, ``incomplete_columns_``, ``imputations_``, ``predictor_matrix_``); it
never changes them and knows nothing of the conditional models.
"""

from __future__ import annotations

import numbers
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from .._columns import cluster_codes
from ..conditional.base import ROLE_NAMES
from ..predictors import _correlations, _numeric_codes
from .convergence import autocorrelation, rhat

if TYPE_CHECKING:  # annotations only: the imputer imports nothing from here, and matplotlib is optional
    from matplotlib.axes import Axes

    from ..imputer import ImputedDatasets, MultilevelIterativeImputer

Columns = Sequence[Hashable] | None
Groups = Hashable | ArrayLike

__all__ = [
    "DiagnosticPlot",
    "md_pattern",
    "plot_pattern",
    "plot_missing_by_cluster",
    "plot_corr",
    "plot_predictor_matrix",
    "plot_trace",
    "trace_table",
    "convergence_table",
    "plot_imputed",
    "icc",
    "icc_table",
]

OBSERVED_COLOUR = "#006CC2"  # ggmice's observed blue
MISSING_COLOUR = "#B61A51"  # ggmice's missing/imputed red
#: Colours of the role codes in :func:`plot_predictor_matrix`.
ROLE_COLOURS = {
    0: "#FFFFFF",
    1: "#4C9BE8",
    2: "#2CA02C",
    3: "#FF9F1C",
    4: "#9467BD",
    -2: "#404040",
    -3: "#8C564B",
    -4: "#E377C2",
}


@dataclass
class DiagnosticPlot:
    """What every plotting function of this module returns.

    Attributes
    ----------
    figure : matplotlib.figure.Figure
    axes : matplotlib.axes.Axes or ndarray of Axes
        The main Axes (an array for faceted plots).
    table : DataFrame
        The numbers drawn, in tidy form (documented by each function).

    Unpacks as ``fig, axes, table = result``.
    """

    figure: Any
    axes: Any
    table: pd.DataFrame

    def __iter__(self):
        return iter((self.figure, self.axes, self.table))

    def __repr__(self) -> str:
        title = self.figure._suptitle.get_text() if getattr(self.figure, "_suptitle", None) else ""
        return (
            f"DiagnosticPlot({title + ', ' if title else ''}{len(self.figure.axes)} Axes; "
            f"table: {self.table.shape[0]} rows x {self.table.shape[1]} columns)"
        )

    def _repr_png_(self) -> bytes:
        """The figure as a PNG: Jupyter shows the plot itself, once.

        pyplot keeps the figure open, and Jupyter's inline backend shows every open figure
        again at the end of the cell; the figure is closed in pyplot here (it stays usable:
        ``savefig``, ``table``), so the plot appears once.
        """
        import io

        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", bbox_inches="tight")
        _pyplot().close(self.figure)
        return buffer.getvalue()

    def savefig(self, *args: Any, **kwargs: Any) -> None:
        """Shortcut for ``self.figure.savefig``.

        Parameters
        ----------
        *args, **kwargs
            Passed to matplotlib's ``Figure.savefig`` (the file name first).
        """
        self.figure.savefig(*args, **kwargs)


# ----------------------------------------------------------------------------- helpers
def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("skmlmi's plots need matplotlib: pip install 'skmlmi[plot]'") from exc
    return plt


def _as_frame(data, name: str = "data") -> pd.DataFrame:
    if isinstance(data, np.ndarray) and data.ndim == 2:
        return pd.DataFrame(data, columns=[f"x{i}" for i in range(data.shape[1])])
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame (or a 2-D array); got {type(data).__name__}.")
    if not data.columns.is_unique:
        repeated = sorted(map(str, data.columns[data.columns.duplicated()].unique()))
        raise ValueError(f"{name} has duplicated column names {repeated}; rename them first.")
    return data


def _pick_columns(frame: pd.DataFrame, columns, exclude=()) -> list:
    if columns is None:
        return [c for c in frame.columns if c not in exclude]
    if isinstance(columns, str) or not isinstance(columns, Sequence | pd.Index | np.ndarray):
        columns = [columns]
    columns = list(columns)
    unknown = [c for c in columns if c not in frame.columns]
    if unknown:
        raise ValueError(f"columns not in the data: {unknown}.")
    return columns


def _groups(frame: pd.DataFrame, groups) -> tuple[np.ndarray, pd.Index, Any]:
    """Integer cluster codes (sorted labels), the labels, and the column name (or None)."""
    return cluster_codes(frame, groups)


def _heatmap_ticks(ax, rows: list, columns: list, rotate: bool = True) -> None:
    ax.set_xticks(np.arange(len(columns)))
    ax.set_xticklabels([str(c) for c in columns], rotation=90 if rotate else 0)
    ax.set_yticks(np.arange(len(rows)))
    ax.set_yticklabels([str(r) for r in rows])
    ax.set_xticks(np.arange(len(columns) + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(len(rows) + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=1.0)
    ax.tick_params(which="minor", length=0)


# ----------------------------------------------------------------------------- patterns
def md_pattern(data: pd.DataFrame, columns: Columns = None) -> pd.DataFrame:
    """Missing-data patterns with their counts (R's ``mice::md.pattern``).

    Columns are sorted by their number of missing values (ascending, ties in data
    order); patterns are the distinct rows of the missingness indicator, sorted as
    md.pattern sorts them (lexicographically on the missing-indicator string, so the
    complete pattern comes first).

    Parameters
    ----------
    data : DataFrame
    columns : sequence of names, default=None
        Variables to include (default all).

    Returns
    -------
    DataFrame
        One row per pattern (index 0..P-1) and a last row ``"total"``. Columns:
        ``count`` (rows with the pattern; total: number of rows), one column per variable
        (1 observed, 0 missing; total: missing values of the variable) and ``n_missing``
        (variables missing in the pattern; total: missing cells). md.pattern's row names
        are our ``count``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> df = pd.DataFrame({"a": [1, np.nan, 3, np.nan], "b": [1.0, 2, 3, 4], "c": [np.nan, 2, 3, np.nan]})
    >>> md_pattern(df)
           count  b  a  c  n_missing
    0          1  1  1  1          0
    1          1  1  1  0          1
    2          1  1  0  1          1
    3          1  1  0  0          2
    total      4  0  2  2          4
    """
    frame = _as_frame(data)
    columns = _pick_columns(frame, columns)
    missing = frame[columns].isna().to_numpy()
    n_missing = missing.sum(axis=0)
    order = np.argsort(n_missing, kind="stable")
    missing = missing[:, order]
    names = [columns[i] for i in order]
    if len(missing):
        patterns, counts = np.unique(missing, axis=0, return_counts=True)
    else:
        patterns, counts = np.zeros((0, len(names)), dtype=bool), np.zeros(0, dtype=int)
    table = pd.DataFrame((~patterns).astype(int), columns=names)
    table.insert(0, "count", counts.astype(int))
    table["n_missing"] = patterns.sum(axis=1).astype(int)
    total = [len(frame), *n_missing[order].astype(int).tolist(), int(n_missing.sum())]
    table.loc["total"] = total
    return table.astype(int)


def plot_pattern(
    data: pd.DataFrame,
    columns: Columns = None,
    *,
    max_patterns: int | None = None,
    figsize: tuple[float, float] | None = None,
) -> DiagnosticPlot:
    """Missing-data pattern plot (ggmice's ``plot_pattern``, mice's ``md.pattern`` plot).

    One row per pattern, one column per variable (sorted by number of missing values),
    blue = observed, red = missing. Left: rows with the pattern; right: variables missing
    in the pattern; top: variable names; bottom: missing values per variable.

    Parameters
    ----------
    data : DataFrame
    columns : sequence of names, default=None
        Variables to show (default all).
    max_patterns : int, default=None
        Show only the most frequent patterns (the table keeps them all).
    figsize : tuple, default=None
        Figure size in inches (default grows with the number of patterns and variables).

    Returns
    -------
    DiagnosticPlot
        ``.table`` is :func:`md_pattern`'s table.

    Examples
    --------
    >>> from skmlmi.datasets import load_popmis
    >>> plot = plot_pattern(load_popmis())  # doctest: +SKIP
    """
    plt = _pyplot()
    table = md_pattern(data, columns)
    body = table.drop(index="total")
    if max_patterns is not None:
        if isinstance(max_patterns, bool) or not isinstance(max_patterns, numbers.Integral) or max_patterns < 1:
            raise ValueError(f"max_patterns must be a positive integer or None, got {max_patterns!r}.")
        keep = body["count"].sort_values(ascending=False, kind="stable").index[:max_patterns]
        body = body.loc[sorted(keep)]
    names = [c for c in table.columns if c not in ("count", "n_missing")]
    grid = body[names].to_numpy()
    P, p = grid.shape
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    fig, ax = plt.subplots(figsize=figsize or (1.2 + 0.6 * max(p, 2) + 1.5, 1.5 + 0.35 * max(P, 2)))
    ax.imshow(
        grid,
        cmap=ListedColormap([MISSING_COLOUR, OBSERVED_COLOUR]),
        vmin=0,
        vmax=1,
        aspect="auto",
        interpolation="nearest",
    )
    _heatmap_ticks(ax, list(body["count"]), names)
    ax.xaxis.tick_top()
    ax.set_ylabel("rows with the pattern")
    bottom = ax.secondary_xaxis("bottom")
    bottom.set_xticks(np.arange(p))
    bottom.set_xticklabels([str(v) for v in table.loc["total", names]])
    bottom.set_xlabel("missing values per variable")
    right = ax.secondary_yaxis("right")
    right.set_yticks(np.arange(P))
    right.set_yticklabels([str(v) for v in body["n_missing"]])
    right.set_ylabel("variables missing")
    ax.legend(
        handles=[Patch(color=OBSERVED_COLOUR, label="observed"), Patch(color=MISSING_COLOUR, label="missing")],
        loc="upper left",
        bbox_to_anchor=(1.12, 1.0),
        frameon=False,
    )
    ax.set_title(f"{P} missing-data patterns" + (f" (of {len(table) - 1})" if P < len(table) - 1 else ""), pad=60)
    fig.tight_layout()
    return DiagnosticPlot(fig, ax, table)


_STATUS_COLOURS = {"complete": OBSERVED_COLOUR, "sporadic": "#F4A259", "systematic": MISSING_COLOUR}


def plot_missing_by_cluster(
    data: pd.DataFrame, groups: Groups, columns: Columns = None, *, figsize: tuple[float, float] | None = None
) -> DiagnosticPlot:
    """Per-cluster view of sporadic vs systematic missingness.

    Left: proportion missing of each incomplete variable (rows) in each cluster
    (columns), clusters in label order; cells of systematically missing clusters are
    marked with a white cross. Right: number of clusters in which each variable is complete,
    sporadically or systematically missing. Systematically missing variables need models
    that draw the cluster's effects from the population distribution (the random-effects
    and two-stage models), not per-cluster fits.

    Parameters
    ----------
    data : DataFrame
    groups : column name or array-like of shape (n,)
    columns : sequence of names, default=None
        Variables (default all); complete ones are left out.
    figsize : tuple, default=None

    Returns
    -------
    DiagnosticPlot
        ``.axes`` = (heat-map Axes, bar Axes); ``.table`` =
        :func:`skmlmi.recommend.missing_by_cluster` with ``by="cluster"`` (``column, cluster,
        size, n_observed, n_missing, status``) plus ``prop_missing``.
    """
    from ..recommend import missing_by_cluster

    plt = _pyplot()
    frame = _as_frame(data)
    _, labels, gcol = _groups(frame, groups)
    columns = [c for c in _pick_columns(frame, columns, exclude=(gcol,)) if frame[c].isna().any()]
    if not columns:
        raise ValueError("plot_missing_by_cluster: no incomplete column to show.")
    subset = frame[columns + ([gcol] if gcol is not None else [])]
    table = missing_by_cluster(subset, gcol if gcol is not None else groups, by="cluster")
    table["prop_missing"] = table["n_missing"] / table["size"]
    J, p = len(labels), len(columns)
    prop = table["prop_missing"].to_numpy().reshape(p, J)  # one block of J clusters (sorted labels) per column
    systematic = (table["status"] == "systematic").to_numpy().reshape(p, J)

    fig, axes = plt.subplots(
        1, 2, figsize=figsize or (min(4 + 0.09 * J, 16) + 4, 1.8 + 0.45 * p), gridspec_kw={"width_ratios": [3, 1]}
    )
    ax, bar_ax = axes
    image = ax.imshow(prop, cmap="Reds", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    rows, cols = np.nonzero(systematic)
    ax.scatter(cols, rows, s=18, c="white", marker="x", linewidths=1.2, label="systematic (all missing)")
    ax.set_yticks(np.arange(p))
    ax.set_yticklabels([str(c) for c in columns])
    step = max(1, int(np.ceil(J / 25)))
    ax.set_xticks(np.arange(0, J, step))
    ax.set_xticklabels([str(v) for v in labels[::step]], rotation=90, fontsize=7)
    ax.set_xlabel(f"cluster ({gcol})" if gcol is not None else "cluster")
    ax.set_title("proportion missing per cluster")
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01)
    if systematic.any():
        from matplotlib.lines import Line2D

        marker = Line2D([], [], marker="x", color="black", linestyle="None", label="systematic (all missing)")
        ax.legend(handles=[marker], loc="upper right", bbox_to_anchor=(1.0, -0.25), fontsize=8, frameon=False)

    counts = (
        table.groupby(["column", "status"], sort=False)
        .size()
        .unstack(fill_value=0)
        .reindex(index=columns, columns=list(_STATUS_COLOURS), fill_value=0)
    )
    left = np.zeros(p)
    for status, colour in _STATUS_COLOURS.items():
        bar_ax.barh(np.arange(p), counts[status].to_numpy(), left=left, color=colour, label=status)
        left += counts[status].to_numpy()
    bar_ax.set_yticks(np.arange(p))
    bar_ax.set_yticklabels([str(c) for c in columns])
    bar_ax.invert_yaxis()
    bar_ax.set_xlabel("clusters")
    bar_ax.set_title("clusters by missingness")
    bar_ax.legend(fontsize=8, loc="upper right", bbox_to_anchor=(1.0, -0.25), frameon=False)
    fig.tight_layout()
    return DiagnosticPlot(fig, axes, table)


# ----------------------------------------------------------------------------- correlations
def plot_corr(
    data: pd.DataFrame,
    columns: Columns = None,
    *,
    method: str = "pearson",
    missingness: bool = False,
    annotate: bool | None = None,
    ax: Axes | None = None,
) -> DiagnosticPlot:
    """Heat map of pairwise-complete correlations (ggmice's ``plot_corr``).

    With ``missingness=False``: cor(x_a, x_b) over the rows observing both (categorical
    and text columns by their level codes, R's ``data.matrix``). With
    ``missingness=True``: cor(R_a, x_b), the correlation of the response indicator R_a
    of incomplete variable a (1 observed, 0 missing) with variable b over the rows where
    b is observed -- quickpred's u, signed: a variable that predicts whether a is missing
    belongs in a's imputation model (MAR). Undefined correlations (a constant column)
    are left blank.

    Parameters
    ----------
    data : DataFrame
    columns : sequence of names, default=None
        Variables to use (default all; drop the cluster id, whose codes are nominal).
    method : {"pearson", "spearman", "kendall"}, default="pearson"
    missingness : bool, default=False
        Correlations of the missingness indicators (rows: incomplete variables).
    annotate : bool, default=None
        Write the values in the cells (default when at most 12 columns).
    ax : Axes, default=None
        Draw into this Axes.

    Returns
    -------
    DiagnosticPlot
        ``.table``: the correlation matrix (rows = variables or their indicators).
    """
    plt = _pyplot()
    frame = _as_frame(data)
    columns = _pick_columns(frame, columns)
    v, u = _correlations(frame[columns], method)
    if missingness:
        incomplete = [c for c in columns if frame[c].isna().any()]
        if not incomplete:
            raise ValueError("plot_corr(missingness=True): no column is incomplete, so there is no indicator.")
        table = u.loc[incomplete]
        table.index = pd.Index(incomplete, name="indicator of")
        title = f"cor(response indicator, variable) ({method})"
    else:
        table = v
        title = f"pairwise-complete correlations ({method})"
    table.columns.name = "variable"
    if ax is None:
        nr, nc = table.shape
        fig, ax = plt.subplots(figsize=(2.2 + 0.55 * max(nc, 3), 1.6 + 0.5 * max(nr, 3)))
    else:
        fig = ax.figure
    values = np.ma.masked_invalid(table.to_numpy(dtype=float))
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="#DDDDDD")
    image = ax.imshow(values, cmap=cmap, vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    _heatmap_ticks(ax, list(table.index), list(table.columns))
    if annotate is None:
        annotate = table.shape[1] <= 12
    if annotate:
        for (i, j), value in np.ndenumerate(table.to_numpy(dtype=float)):
            if np.isfinite(value):
                ax.text(
                    j,
                    i,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if abs(value) > 0.6 else "black",
                )
    ax.set_title(title)
    if missingness:
        ax.set_ylabel("response indicator of")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return DiagnosticPlot(fig, ax, table)


# ----------------------------------------------------------------------------- predictor matrix
def plot_predictor_matrix(
    predictor_matrix: pd.DataFrame | MultilevelIterativeImputer, *, annotate: bool = True, ax: Axes | None = None
) -> DiagnosticPlot:
    """The predictor matrix as coloured role codes with a legend in words (ggmice's ``plot_pred``).

    Rows are targets (imputed variables), columns predictors; the legend lists the codes
    present with :data:`skmlmi.conditional.ROLE_NAMES` ("2: fixed effect + random slope").

    Parameters
    ----------
    predictor_matrix : DataFrame or fitted MultilevelIterativeImputer
        Role codes, or an imputer (its ``predictor_matrix_``).
    annotate : bool, default=True
        Write the code in each non-zero cell.
    ax : Axes, default=None

    Returns
    -------
    DiagnosticPlot
        ``.table``: the matrix drawn (int codes).
    """
    plt = _pyplot()
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    if hasattr(predictor_matrix, "predictor_matrix_"):
        predictor_matrix = predictor_matrix.predictor_matrix_
    elif hasattr(predictor_matrix, "fit") and not isinstance(predictor_matrix, pd.DataFrame):
        raise ValueError("plot_predictor_matrix: the imputer is not fitted (no predictor_matrix_).")
    if not isinstance(predictor_matrix, pd.DataFrame):
        arr = np.asarray(predictor_matrix)
        if arr.ndim != 2:
            raise ValueError(f"predictor_matrix must be 2-D; got shape {arr.shape}.")
        predictor_matrix = pd.DataFrame(arr)
    values = predictor_matrix.to_numpy()
    try:
        codes = values.astype(float)
    except (TypeError, ValueError) as exc:
        raise ValueError("predictor_matrix must hold integer role codes.") from exc
    bad = ~np.isin(codes, list(ROLE_NAMES))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(
            f"predictor_matrix[{predictor_matrix.index[r]!r}, {predictor_matrix.columns[c]!r}] = "
            f"{values[r, c]!r} is not a role code; valid: {sorted(ROLE_NAMES)}."
        )
    table = pd.DataFrame(codes.astype(int), index=predictor_matrix.index, columns=predictor_matrix.columns)
    all_codes = sorted(ROLE_NAMES)
    cmap = ListedColormap([ROLE_COLOURS[c] for c in all_codes])
    norm = BoundaryNorm(np.arange(len(all_codes) + 1) - 0.5, len(all_codes))
    position = {c: i for i, c in enumerate(all_codes)}
    index_grid = np.vectorize(position.__getitem__, otypes=[int])(table.to_numpy()) if table.size else table
    if ax is None:
        nr, nc = table.shape
        fig, ax = plt.subplots(figsize=(4.5 + 0.5 * max(nc, 3), 1.6 + 0.45 * max(nr, 3)))
    else:
        fig = ax.figure
    ax.imshow(index_grid, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
    _heatmap_ticks(ax, list(table.index), list(table.columns))
    ax.grid(which="minor", color="#BBBBBB", linewidth=0.8)
    if annotate:
        for (i, j), code in np.ndenumerate(table.to_numpy()):
            if code != 0:
                ax.text(
                    j,
                    i,
                    str(code),
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white" if code in (-2, 4, 2, -3) else "black",
                )
    ax.set_xlabel("predictor")
    ax.set_ylabel("target (imputed variable)")
    present = [c for c in all_codes if (table.to_numpy() == c).any()]
    handles = [Patch(facecolor=ROLE_COLOURS[c], edgecolor="#888888", label=f"{c}: {ROLE_NAMES[c]}") for c in present]
    ax.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=8, title="role code"
    )
    ax.set_title("predictor matrix")
    fig.tight_layout()
    return DiagnosticPlot(fig, ax, table)


# ----------------------------------------------------------------------------- chains
def _check_fitted(imputer) -> None:
    if not hasattr(imputer, "chain_mean_"):
        raise ValueError("the imputer is not fitted: call fit or fit_transform_all first.")


def _chain_columns(imputer, columns) -> list[int]:
    names = list(imputer.incomplete_columns_)
    if columns is None:
        return list(range(len(names)))
    if isinstance(columns, str) or not isinstance(columns, Sequence | pd.Index | np.ndarray):
        columns = [columns]
    unknown = [c for c in columns if c not in names]
    if unknown:
        raise ValueError(f"columns {unknown} were not imputed; imputed columns: {names}.")
    return [names.index(c) for c in columns]


def trace_table(imputer: MultilevelIterativeImputer, columns: Columns = None) -> pd.DataFrame:
    """Chain means and SDs per iteration: long table ``column, chain, iteration, mean, sd``.

    Chains and iterations count from 1 as mice's ``chainMean`` dimnames; ``sd`` is the
    square root of ``chain_var_`` (NaN where a variance is undefined).

    Parameters
    ----------
    imputer : fitted MultilevelIterativeImputer
        The imputer whose chains to tabulate.
    columns : sequence of names, default=None
        Imputed columns to include; default all.

    Returns
    -------
    DataFrame
    """
    _check_fitted(imputer)
    idx = _chain_columns(imputer, columns)
    mean = np.asarray(imputer.chain_mean_, dtype=float)[:, :, idx]
    with np.errstate(invalid="ignore"):
        sd = np.sqrt(np.asarray(imputer.chain_var_, dtype=float)[:, :, idx])
    m, T, k = mean.shape
    names = np.array([imputer.incomplete_columns_[i] for i in idx], dtype=object)
    # column outermost (in incomplete_columns_ order), then chain, then iteration
    col, chain, it = np.meshgrid(np.arange(k), np.arange(1, m + 1), np.arange(1, T + 1), indexing="ij")
    return pd.DataFrame(
        {
            "column": names[col.ravel()],
            "chain": chain.ravel(),
            "iteration": it.ravel(),
            "mean": mean.transpose(2, 0, 1).ravel(),
            "sd": sd.transpose(2, 0, 1).ravel(),
        }
    )


def plot_trace(
    imputer: MultilevelIterativeImputer, columns: Columns = None, *, figsize: tuple[float, float] | None = None
) -> DiagnosticPlot:
    """Trace plots of the chains: mean and SD of the imputed values per iteration (mice's ``plot(imp)``).

    One row per imputed variable, mean on the left and SD on the right, one line per
    chain. Chains that mix well overlap and show no trend after the first iterations;
    :func:`convergence_table` gives R-hat and the autocorrelation.

    Parameters
    ----------
    imputer : fitted MultilevelIterativeImputer
    columns : sequence of names, default=None
        Imputed variables to show (default all, in ``incomplete_columns_`` order).
    figsize : tuple, default=None

    Returns
    -------
    DiagnosticPlot
        ``.axes`` of shape (n_columns, 2); ``.table`` = :func:`trace_table`.
    """
    plt = _pyplot()
    table = trace_table(imputer, columns)
    names = [imputer.incomplete_columns_[i] for i in _chain_columns(imputer, columns)]
    m, T = imputer.chain_mean_.shape[:2]
    if not names:
        raise ValueError("plot_trace: the imputer imputed no column (the data had no missing values).")
    if T == 0:
        raise ValueError("plot_trace: the chains ran no iteration (max_iter=0); nothing to trace.")
    fig, axes = plt.subplots(len(names), 2, figsize=figsize or (9, 2.2 * len(names) + 0.6), squeeze=False, sharex=True)
    colours = plt.get_cmap("tab10")
    for r, name in enumerate(names):
        rows = table[table["column"] == name]
        for c, stat in enumerate(("mean", "sd")):
            ax = axes[r, c]
            values = rows[stat].to_numpy().reshape(m, T)
            for chain in range(m):
                ax.plot(
                    np.arange(1, T + 1),
                    values[chain],
                    color=colours(chain % 10),
                    linewidth=1.2,
                    label=f"chain {chain + 1}",
                )
            ax.set_ylabel(f"{stat} {name}")
    for ax in axes[-1]:
        ax.set_xlabel("iteration")
    axes[0, 0].set_title("chain mean")
    axes[0, 1].set_title("chain SD")
    if m <= 10:
        axes[0, 1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.tight_layout()
    return DiagnosticPlot(fig, axes, table)


def convergence_table(
    imputer: MultilevelIterativeImputer,
    columns: Columns = None,
    *,
    parameter: str = "mean",
    rank_normalized: bool = False,
) -> pd.DataFrame:
    """Split-R-hat and lag-1 autocorrelation of the chains per variable and iteration.

    For each imputed variable and iteration t, over iterations 1..t of the m chains of
    the chain means (``parameter="mean"``) or SDs (``"sd"``):

    * ``rhat``: split-R-hat (:func:`~skmlmi.diagnostics.rhat`; Vehtari et al.'s
      rank-normalised version with ``rank_normalized``, which is what R's
      ``mice::convergence`` reports through ``rstan::Rhat``); NaN for t < 4;
    * ``autocorrelation``: lag-1 autocorrelation pooled over chains, each chain about its
      own mean (:func:`~skmlmi.diagnostics.autocorrelation`); NaN for t < 3. (mice's
      "ac" differs: the running mean of the across-chain correlation between iterations
      t-1 and t.)

    Values of R-hat near 1 at the last iterations and small autocorrelation mean the
    chains have mixed; a trend gives large both.

    Parameters
    ----------
    imputer : fitted MultilevelIterativeImputer
    columns : sequence of names, default=None
    parameter : {"mean", "sd"}, default="mean"
    rank_normalized : bool, default=False

    Returns
    -------
    DataFrame
        Columns ``column, iteration, rhat, autocorrelation``; NaN also where a chain
        statistic is undefined (a variance with one imputed cell).
    """
    _check_fitted(imputer)
    if parameter not in ("mean", "sd"):
        raise ValueError(f"parameter must be 'mean' or 'sd'; got {parameter!r}.")
    idx = _chain_columns(imputer, columns)
    if parameter == "mean":
        arr = np.asarray(imputer.chain_mean_, dtype=float)[:, :, idx]
    else:
        with np.errstate(invalid="ignore"):
            arr = np.sqrt(np.asarray(imputer.chain_var_, dtype=float)[:, :, idx])
    m, T, k = arr.shape
    r_hat = np.full((T, k), np.nan)
    ac = np.full((T, k), np.nan)
    finite = np.isfinite(arr).all(axis=(0, 1))
    good = arr[:, :, finite]
    if good.shape[2]:
        for t in range(3, T + 1):  # loop over iterations only; every statistic is vectorised over columns
            with np.errstate(invalid="ignore", divide="ignore"):
                ac[t - 1, finite] = autocorrelation(good[:, :t], lag=1)
            if t >= 4:
                r_hat[t - 1, finite] = rhat(good[:, :t], rank_normalized=rank_normalized)
    names = np.array([imputer.incomplete_columns_[i] for i in idx], dtype=object)
    return pd.DataFrame(
        {
            "column": np.repeat(names, T),
            "iteration": np.tile(np.arange(1, T + 1), k),
            "rhat": r_hat.T.ravel(),
            "autocorrelation": ac.T.ravel(),
        }
    )


# ----------------------------------------------------------------------------- observed vs imputed
def _kind(series: pd.Series, name) -> tuple[str, Any]:
    from .._columns import detect_codec

    codec = detect_codec(series, name)
    return codec.kind, codec


def _imputed_values(frame: pd.DataFrame, imputed, columns: list) -> dict:
    """Column -> (missing mask (n,), list over sets of the imputed values at the mask)."""
    out = {}
    if hasattr(imputed, "imputations_"):
        kinds = getattr(imputed, "column_kinds", None) or {}
        from .._columns import detect_codec

        for name in columns:
            if name not in imputed.imputations_:
                raise ValueError(f"column {name!r} was not imputed by this imputer.")
            mask = frame[name].isna().to_numpy()
            cells = np.asarray(imputed.imputations_[name])
            if cells.shape[0] != mask.sum():
                raise ValueError(
                    f"column {name!r}: the imputer imputed {cells.shape[0]} cells but the data has {mask.sum()} "
                    "missing values (was `where` used, or other data?); pass the completed datasets instead."
                )
            codec = detect_codec(frame[name], name, kinds.get(name))
            out[name] = (mask, [codec.decode(cells[:, k]).to_numpy() for k in range(cells.shape[1])])
        return out
    if isinstance(imputed, pd.DataFrame) or not isinstance(imputed, Sequence):
        raise TypeError(
            "imputed must be a list of completed DataFrames (fit_transform_all's result) or a fitted "
            f"MultilevelIterativeImputer; got {type(imputed).__name__}."
        )
    if not len(imputed):
        raise ValueError("imputed holds no completed dataset.")
    for k, done in enumerate(imputed):
        if not isinstance(done, pd.DataFrame) or len(done) != len(frame):
            raise ValueError(f"completed dataset {k} must be a DataFrame with {len(frame)} rows like data.")
    for name in columns:
        mask = frame[name].isna().to_numpy()
        sets = []
        for k, done in enumerate(imputed):
            if name not in done.columns:
                raise ValueError(f"column {name!r} is not in completed dataset {k}.")
            values = done[name].to_numpy()[mask]
            if pd.isna(values).any():
                raise ValueError(f"completed dataset {k} still has missing values in {name!r}.")
            sets.append(values)
        out[name] = (mask, sets)
    return out


def _density(ax, values: np.ndarray, grid: np.ndarray, **style) -> None:
    from scipy.stats import gaussian_kde

    values = np.asarray(values, dtype=float)
    if len(values) >= 2 and np.ptp(values) > 0:
        ax.plot(grid, gaussian_kde(values)(grid), **style)
    elif len(values):  # one value (or all equal): a rug mark instead of a density
        ax.plot(values, np.zeros_like(values), "|", markersize=12, color=style.get("color"))


def _from_result(data, imputed, columns, groups, function: str):
    """(data, imputations, columns, groups) of a diagnostic called with the data and its imputations, or with
    the completed datasets alone (an ImputedDatasets carries its data and groups; its second argument is then
    the columns)."""
    from ..imputer import ImputedDatasets

    if isinstance(data, ImputedDatasets):
        if getattr(data, "data", None) is None:
            raise ValueError(
                f"These completed datasets do not carry their incomplete data: call {function}(data, completed)."
            )
        if imputed is not None and columns is not None:
            raise TypeError(f"{function}(completed, columns): the completed datasets already are the imputations.")
        columns = imputed if imputed is not None else columns
        groups = data.groups if groups is None else groups
        return data.data, data, columns, groups
    if imputed is None:
        raise TypeError(f"{function} needs the imputations: {function}(data, completed) or {function}(completed).")
    return data, imputed, columns, groups


def plot_imputed(
    data: pd.DataFrame | ImputedDatasets,
    imputed: Sequence[pd.DataFrame] | MultilevelIterativeImputer | None = None,
    columns: Columns = None,
    *,
    groups: Groups | None = None,
    clusters: Sequence[Hashable] | None = None,
    n_clusters: int = 4,
    figsize: tuple[float, float] | None = None,
) -> DiagnosticPlot:
    """Observed vs imputed values, overall and within chosen clusters (mice's ``densityplot``).

    Continuous and integer variables: kernel density of the observed values (thick blue)
    and of the imputed values of each completed dataset (thin red), as mice's
    ``densityplot``. Binary and categorical variables: proportion of each category among
    observed values and among imputed values (mean over datasets; whiskers span the
    datasets). Under MAR the two may differ; wildly different shapes, impossible values
    or imputations that ignore the cluster (the same in every cluster) call for a
    different model.

    Parameters
    ----------
    data : DataFrame or ImputedDatasets
        The incomplete data; or the completed datasets of ``fit_transform_all`` alone, which
        carry the data they were imputed from and its groups (``plot_imputed(completed,
        ["popular"])``: the second argument is then ``columns``).
    imputed : list of DataFrame or fitted MultilevelIterativeImputer, default=None
        Completed datasets (``fit_transform_all``'s result), or the imputer fitted on
        ``data`` (its ``imputations_`` are taken at ``data``'s missing cells).
    columns : sequence of names, default=None
        Variables (default every incomplete column but the cluster column).
    groups : column name or array-like, default=None
        Cluster labels; with them a panel per chosen cluster follows the overall panel.
    clusters : sequence of labels, default=None
        Clusters to show; default the ``n_clusters`` clusters with the most missing
        values in ``columns``.
    n_clusters : int, default=4
    figsize : tuple, default=None

    Returns
    -------
    DiagnosticPlot
        ``.axes`` of shape (n_columns, 1 + n_clusters); ``.table``: long summary with
        ``column, cluster ("all" or label), source ("observed"/"imputed"), imputation
        (0 observed, 1..m), n`` and ``mean, sd`` (continuous) or ``category, proportion``
        (categorical).
    """
    data, imputed, columns, groups = _from_result(data, imputed, columns, groups, "plot_imputed")
    plt = _pyplot()
    frame = _as_frame(data)
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, numbers.Integral) or n_clusters < 1:
        raise ValueError(f"n_clusters must be a positive integer, got {n_clusters!r}.")
    codes = labels = gcol = None
    if groups is not None:
        codes, labels, gcol = _groups(frame, groups)
    if columns is None:
        columns = [c for c in frame.columns if c != gcol and frame[c].isna().any()]
        if not columns:
            raise ValueError("plot_imputed: data has no missing values to compare.")
    columns = _pick_columns(frame, columns)
    values = _imputed_values(frame, imputed, columns)

    chosen: list = []
    if codes is not None:
        if clusters is None:
            n_miss = np.zeros(len(labels))
            for name in columns:
                n_miss += np.bincount(codes, weights=values[name][0].astype(float), minlength=len(labels))
            order = np.argsort(-n_miss, kind="stable")[:n_clusters]
            chosen = sorted(order.tolist())
        else:
            clusters = list(clusters) if not np.isscalar(clusters) else [clusters]
            unknown = [c for c in clusters if c not in labels]
            if unknown:
                raise ValueError(f"clusters {unknown} are not among the cluster labels.")
            chosen = [int(labels.get_loc(c)) for c in clusters]
    panels = [("all", None)] + [(labels[c], c) for c in chosen]
    ncol = len(panels)
    fig, axes = plt.subplots(
        len(columns), ncol, figsize=figsize or (3.0 * ncol + 0.5, 2.4 * len(columns) + 0.5), squeeze=False
    )
    rows = []
    for r, name in enumerate(columns):
        mask, sets = values[name]
        kind, codec = _kind(frame[name], name)
        observed_all = frame[name].to_numpy()[~mask]
        categorical = kind in ("binary", "categorical")
        if categorical:
            categories = list(codec.categories)
        else:
            pooled = np.concatenate(
                [np.asarray(observed_all, dtype=float)] + [np.asarray(s, dtype=float) for s in sets]
            )
            lo, hi = float(pooled.min()), float(pooled.max())
            pad = 0.1 * (hi - lo) if hi > lo else 1.0
            grid = np.linspace(lo - pad, hi + pad, 256)
        for c, (label, code) in enumerate(panels):
            ax = axes[r, c]
            if code is None:
                obs, imp = observed_all, sets
            else:
                in_obs = codes[~mask] == code
                in_imp = codes[mask] == code
                obs, imp = observed_all[in_obs], [s[in_imp] for s in sets]
            if categorical:
                obs_p = _proportions(obs, categories)
                imp_p = np.array([_proportions(s, categories) for s in imp])
                x = np.arange(len(categories))
                ax.bar(x - 0.2, obs_p, width=0.4, color=OBSERVED_COLOUR, label="observed")
                if imp_p.size and len(imp[0]):
                    mean_p = imp_p.mean(axis=0)
                    ax.bar(
                        x + 0.2,
                        mean_p,
                        width=0.4,
                        color=MISSING_COLOUR,
                        label="imputed",
                        yerr=np.vstack([mean_p - imp_p.min(axis=0), imp_p.max(axis=0) - mean_p]),
                        capsize=2,
                    )
                ax.set_xticks(x)
                ax.set_xticklabels([_label(cat) for cat in categories], rotation=45 if len(categories) > 4 else 0)
                ax.set_ylim(0, 1)
                ax.set_ylabel("proportion" if c == 0 else "")
                rows.append(_category_rows(name, label, "observed", 0, obs, obs_p, categories))
                for k, (s, p) in enumerate(zip(imp, imp_p, strict=True), start=1):
                    rows.append(_category_rows(name, label, "imputed", k, s, p, categories))
            else:
                _density(ax, obs, grid, color=OBSERVED_COLOUR, linewidth=2.2, label="observed", zorder=3)
                for k, s in enumerate(imp):
                    _density(
                        ax, s, grid, color=MISSING_COLOUR, linewidth=0.9, alpha=0.8, label="imputed" if k == 0 else None
                    )
                ax.set_xlim(grid[0], grid[-1])
                ax.set_ylabel("density" if c == 0 else "")
                rows.append(_moment_rows(name, label, "observed", 0, obs))
                for k, s in enumerate(imp, start=1):
                    rows.append(_moment_rows(name, label, "imputed", k, s))
            n_imp = len(imp[0]) if imp else 0
            title = f"{name}: all clusters" if code is None else f"{name}: cluster {label}"
            ax.set_title(f"{title}\n(obs {len(obs)}, imp {n_imp})", fontsize=9)
    axes[0, 0].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    table = pd.concat(rows, ignore_index=True)
    return DiagnosticPlot(fig, axes, table)


def _label(category) -> str:
    if isinstance(category, float | np.floating) and float(category).is_integer():
        return str(int(category))
    return str(category)


def _proportions(values, categories) -> np.ndarray:
    if len(values) == 0:
        return np.zeros(len(categories))
    codes = pd.Categorical(np.asarray(values, dtype=object), categories=categories).codes
    return np.bincount(codes[codes >= 0], minlength=len(categories)) / len(values)


def _moment_rows(column, cluster, source, k, values) -> pd.DataFrame:
    v = np.asarray(values, dtype=float)
    return pd.DataFrame(
        {
            "column": [column],
            "cluster": [cluster],
            "source": [source],
            "imputation": [k],
            "n": [len(v)],
            "mean": [v.mean() if len(v) else np.nan],
            "sd": [v.std(ddof=1) if len(v) > 1 else np.nan],
        }
    )


def _category_rows(column, cluster, source, k, values, proportions, categories) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "column": column,
            "cluster": [cluster] * len(categories),
            "source": source,
            "imputation": k,
            "n": len(values),
            "category": list(categories),
            "proportion": proportions,
        }
    )


# ----------------------------------------------------------------------------- ICC
def _icc_values(frame: pd.DataFrame, columns: list, codes: np.ndarray, J: int) -> dict:
    """One-way ANOVA ICC(1) of each column on its observed rows (see :func:`icc`)."""
    numeric = _numeric_codes(frame[columns])
    out = {}
    for name in columns:
        x = numeric[name].to_numpy()
        ok = ~np.isnan(x)
        g, v = codes[ok], x[ok]
        n_j = np.bincount(g, minlength=J).astype(float)
        present = n_j > 0
        Jp, N = int(present.sum()), float(n_j.sum())
        if Jp < 2 or N - Jp < 1:
            out[name] = np.nan
            continue
        means = np.bincount(g, weights=v, minlength=J) / np.where(present, n_j, 1.0)
        grand = v.mean()
        ssb = float((n_j * (means - grand) ** 2).sum())
        ssw = float(((v - means[g]) ** 2).sum())
        msb, msw = ssb / (Jp - 1), ssw / (N - Jp)
        n0 = (N - float((n_j**2).sum()) / N) / (Jp - 1)
        denominator = msb + (n0 - 1.0) * msw
        out[name] = (msb - msw) / denominator if denominator > 0 else np.nan
    return out


def _icc_columns(frame: pd.DataFrame, columns, gcol) -> list:
    from .._columns import detect_codec

    chosen = _pick_columns(frame, columns, exclude=(gcol,))
    keep = []
    for name in chosen:
        col = frame[name]
        ordered = isinstance(col.dtype, pd.CategoricalDtype) and col.cat.ordered
        if not ordered and detect_codec(col, name).kind == "categorical":
            if columns is not None:
                raise ValueError(
                    f"icc: column {name!r} is an unordered categorical with more than two levels; "
                    "its ICC is not defined on codes."
                )
            continue  # skipped: codes of unordered levels carry no order
        keep.append(name)
    return keep


def icc(data: pd.DataFrame, groups: Groups, columns: Columns = None) -> pd.Series:
    """Intraclass correlation of each variable (one-way ANOVA estimator), on observed values.

    With J clusters holding n_j observed values (N in all), cluster means x_j and grand
    mean x,

        MSB = sum_j n_j (x_j - x)^2 / (J - 1),   MSW = sum_ij (x_ij - x_j)^2 / (N - J),
        n0 = (N - sum_j n_j^2 / N) / (J - 1),    ICC = (MSB - MSW) / (MSB + (n0 - 1) MSW),

    ICC(1) of Shrout and Fleiss (1979) with Donner's (1986) n0 for unequal cluster
    sizes; clusters with no observed value drop out. The estimate can be negative when
    clusters differ less than chance would make them. A variable constant within
    clusters has ICC 1 (a cluster-level variable, for the cluster-level models); a
    level-1 variable with an ICC near 0 needs no multilevel imputation model, one with
    a sizeable ICC does. One ``np.bincount`` per variable.

    Binary variables (0/1 numbers, bool, two labels) use 0/1 (the linear ICC, not the
    latent-scale one of a logistic model); ordered categoricals use their codes 0..K-1;
    unordered categorical and text variables with more than two levels are skipped
    (an error if named in ``columns``).

    Parameters
    ----------
    data : DataFrame
    groups : column name or array-like of shape (n,)
    columns : sequence of names, default=None
        Variables (default every column but the cluster column).

    Returns
    -------
    Series
        ICC per variable (NaN when fewer than 2 clusters observe it or it is constant).

    References
    ----------
    Shrout, P. E., Fleiss, J. L. (1979). Intraclass correlations: uses in assessing rater
    reliability. Psychological Bulletin 86, 420-428.
    Donner, A. (1986). A review of inference procedures for the intraclass correlation
    coefficient in the one-way random effects model. International Statistical Review
    54, 67-82.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"g": [1, 1, 2, 2], "x": [1.0, 3.0, 5.0, 7.0], "w": [0.0, 0.0, 1.0, 1.0]})
    >>> icc(df, "g").round(3).to_dict()
    {'x': 0.778, 'w': 1.0}
    """
    frame = _as_frame(data)
    codes, labels, gcol = _groups(frame, groups)
    keep = _icc_columns(frame, columns, gcol)
    return pd.Series(_icc_values(frame, keep, codes, len(labels)), index=pd.Index(keep), name="icc", dtype=float)


def icc_table(
    data: pd.DataFrame | ImputedDatasets,
    completed: Sequence[pd.DataFrame] | None = None,
    groups: Groups | None = None,
    columns: Columns = None,
) -> pd.DataFrame:
    """ICC of each variable before and after imputation.

    ``observed`` is :func:`icc` on the incomplete data; ``imputed`` the mean over the
    completed datasets of the ICC of each (``imputed_sd`` its SD across datasets, which
    reflects the imputation uncertainty). A single-level imputation model pulls the
    imputed ICC of an incomplete level-1 variable towards 0; a good multilevel model
    keeps it near the observed one (under MCAR; under MAR a moderate shift is possible).

    Parameters
    ----------
    data : DataFrame or ImputedDatasets
        The incomplete data; or the completed datasets alone (``icc_table(completed)``), which
        carry their data and groups (the second argument is then ``columns``).
    completed : list of DataFrame, default=None
        The completed datasets (``fit_transform_all``'s result).
    groups : column name or array-like of shape (n,), default=None
        Cluster labels (a column name must be a column of every completed dataset too);
        required unless ``data`` carries them.
    columns : sequence of names, default=None

    Returns
    -------
    DataFrame
        Index: variables; columns ``n_missing, observed, imputed, imputed_sd, difference``
        (imputed - observed).
    """
    data, completed, columns, groups = _from_result(data, completed, columns, groups, "icc_table")
    if groups is None:
        raise TypeError("icc_table needs the cluster labels: groups=...")
    frame = _as_frame(data)
    codes, labels, gcol = _groups(frame, groups)
    keep = _icc_columns(frame, columns, gcol)
    if isinstance(completed, pd.DataFrame) or not isinstance(completed, Sequence) or not len(completed):
        raise TypeError("completed must be a non-empty list of completed DataFrames.")
    before = _icc_values(frame, keep, codes, len(labels))
    after = []
    for k, done in enumerate(completed):
        if not isinstance(done, pd.DataFrame) or len(done) != len(frame):
            raise ValueError(f"completed dataset {k} must be a DataFrame with {len(frame)} rows like data.")
        absent = [c for c in keep if c not in done.columns]
        if absent:
            raise ValueError(f"completed dataset {k} lacks columns {absent}.")
        cast = done[keep].copy()
        for name in keep:  # code the completed columns with the data's levels
            if isinstance(frame[name].dtype, pd.CategoricalDtype):
                cast[name] = pd.Categorical(cast[name], dtype=frame[name].dtype)
            elif not pd.api.types.is_numeric_dtype(frame[name].dtype) and not pd.api.types.is_bool_dtype(
                frame[name].dtype
            ):
                levels = sorted(frame[name].dropna().astype(str).unique())
                cast[name] = pd.Categorical(cast[name].astype(str), categories=levels)
        after.append(_icc_values(cast, keep, codes, len(labels)))
    imputed = np.array([[a[c] for c in keep] for a in after])
    table = pd.DataFrame(
        {
            "n_missing": frame[keep].isna().sum().to_numpy(),
            "observed": [before[c] for c in keep],
            "imputed": imputed.mean(axis=0),
            "imputed_sd": imputed.std(axis=0, ddof=1) if len(after) > 1 else np.nan,
        },
        index=pd.Index(keep, name="variable"),
    )
    table["difference"] = table["imputed"] - table["observed"]
    return table
