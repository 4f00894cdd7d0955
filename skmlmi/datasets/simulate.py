"""Simulators of incomplete multilevel data with known parameters.

Used by the tests, the benchmarks and the notebooks to check that an imputation method
recovers what generated the data: fixed effects, variance components and the ICC.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np
import pandas as pd
from scipy import optimize, special
from sklearn.utils import Bunch
from sklearn.utils._param_validation import validate_params

from .._random import as_generator

__all__ = ["make_multilevel"]

_MISSABLE = ("y", "x")

#: Rows a simulator makes at most (about 3 GB of columns): beyond, a typo, not a study.
_MAX_ROWS = 10**8


def _check_size(n_rows: int) -> None:
    """A simulated data set of ``n_rows`` rows must fit in memory (no hang allocating it)."""
    if n_rows > _MAX_ROWS:
        raise ValueError(f"the data would have {n_rows:,} rows; a simulator makes at most {_MAX_ROWS:,}.")


@validate_params(
    {
        "n_clusters": [Integral],
        "cluster_size": "no_validation",  # an int or a (min, max) pair: checked below
        "icc": [Real],
        "beta": ["array-like"],
        "slope_sd": [Real],
        "level2_effect": [Real],
        "x_icc": [Real],
        "missing": [str, None],
        "missing_prop": [Real],
        "missing_columns": "no_validation",  # a name or names: checked below
        "random_state": [np.random.Generator, "random_state"],
        "return_truth": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def make_multilevel(
    n_clusters: int = 100,
    cluster_size: int | tuple[int, int] = 20,
    icc: float = 0.2,
    beta: Sequence[float] = (1.0, 0.5),
    slope_sd: float = 0.3,
    level2_effect: float = 0.3,
    x_icc: float = 0.2,
    missing: str | None = "MAR",
    missing_prop: float = 0.3,
    missing_columns: Sequence[str] = ("y", "x"),
    random_state: int | np.random.Generator | np.random.RandomState | None = None,
    return_truth: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame, Bunch]:
    """Two-level data with a random intercept, a random slope and a level-2 covariate.

    The model, for row i of cluster j (j = 1..J):

        y_ij = beta_0 + beta_1 x_ij + gamma w_j + u_0j + u_1j x_ij + e_ij,
        u_0j ~ N(0, tau00),  u_1j ~ N(0, tau11),  cov(u_0j, u_1j) = 0,  e_ij ~ N(0, sigma2),
        x_ij = sqrt(x_icc) a_j + sqrt(1 - x_icc) d_ij,  a_j, d_ij ~ N(0, 1)  (var x = 1),
        w_j ~ N(0, 1),

    with (beta_0, beta_1) = ``beta``, gamma = ``level2_effect``, tau11 = ``slope_sd**2``,
    and the residual variance at x = 0 split by the intraclass correlation:
    tau00 = ``icc``, sigma2 = 1 - ``icc`` (so icc = tau00 / (tau00 + sigma2), the ICC of
    y given the fixed part at x = 0, which is what a random-intercept-and-slope
    analysis model estimates). x and y are level-1 variables, w is measured at the
    cluster level (constant within clusters).

    Missingness (in the columns ``missing_columns``, a subset of ``("y", "x")``; w and
    the cluster id stay complete):

    * ``"MCAR"``: every cell of those columns is missing independently with probability
      ``missing_prop``;
    * ``"MAR"``: pattern-based, as mice's ``ampute``. Each row is a candidate for
      exactly one missingness pattern (one of the columns missing) with probability
      1 / len(missing_columns); among the candidates of the pattern "c missing", a row is
      made incomplete with probability expit(s_i + delta), where s_i is the sum of the
      standardised values of the other variables of the row (x and w for y; y and w for
      x; all observed in that pattern) and delta is set so that on average a share
      ``missing_prop`` of each column is missing. A row thus never misses both y and x,
      and the probability of each pattern depends only on values observed in it: the
      data are MAR, not MCAR (rows with large x and w lose y more often, rows with large
      y and w lose x more often, so a complete-case analysis is biased);
    * ``None``: complete data.

    Parameters
    ----------
    n_clusters : int, default=100
        Number of clusters J.
    cluster_size : int or (int, int), default=20
        Rows per cluster, or the inclusive range (min, max) of uniformly drawn sizes.
    icc : float in (0, 1), default=0.2
        tau00 / (tau00 + sigma2).
    beta : (float, float), default=(1.0, 0.5)
        Fixed intercept and fixed slope of x.
    slope_sd : float >= 0, default=0.3
        Standard deviation sqrt(tau11) of the random slope of x.
    level2_effect : float, default=0.3
        Fixed effect gamma of the level-2 covariate w.
    x_icc : float in [0, 1), default=0.2
        Share of the variance of x between clusters.
    missing : {"MAR", "MCAR"} or None, default="MAR"
        Missingness mechanism.
    missing_prop : float in [0, 1), default=0.3
        Expected share of missing values in each column of ``missing_columns``. Under
        MAR it must be below 1 / len(missing_columns) (each row misses at most one value).
    missing_columns : sequence of {"y", "x"}, default=("y", "x")
        Columns with missing values.
    random_state : int, Generator, RandomState or None, default=None
        Seed.
    return_truth : bool, default=False
        Also return the complete data and the true parameters.

    Returns
    -------
    data : DataFrame with columns ``cluster`` (int 0..J-1), ``x``, ``w``, ``y``
        The incomplete data (NaN marks missing values), sorted by cluster.
    complete : DataFrame
        Only with ``return_truth``: the same data before missingness.
    truth : Bunch
        Only with ``return_truth``: ``beta`` (Series indexed ``Intercept``, ``x``, ``w``),
        ``tau00``, ``tau11``, ``tau01`` (0), ``sigma2``, ``icc``, ``random_effects``
        (array (J, 2) of the drawn u_0j, u_1j) and ``missing`` (the mechanism).

    Examples
    --------
    >>> from skmlmi.datasets.simulate import make_multilevel
    >>> data, complete, truth = make_multilevel(n_clusters=10, random_state=0, return_truth=True)
    >>> data.shape, list(data.columns), round(truth.icc, 2)
    ((200, 4), ['cluster', 'x', 'w', 'y'], 0.2)
    >>> bool(data["y"].isna().any()), bool(complete["y"].isna().any())
    (True, False)
    """
    rng = as_generator(random_state)
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, Integral) or n_clusters < 1:
        raise ValueError(f"n_clusters must be a positive integer; got {n_clusters!r}.")
    low, high = _size_range(cluster_size)
    _check_size(int(n_clusters) * high)
    if not 0 < icc < 1:
        raise ValueError(f"icc must lie in (0, 1); got {icc!r}.")
    if not 0 <= x_icc < 1:
        raise ValueError(f"x_icc must lie in [0, 1); got {x_icc!r}.")
    if slope_sd < 0:
        raise ValueError(f"slope_sd must be >= 0; got {slope_sd!r}.")
    try:
        beta = np.asarray(beta, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"beta must hold two numbers (intercept, slope of x); got {beta!r}.") from None
    if beta.shape != (2,):
        raise ValueError(f"beta must hold two numbers (intercept, slope of x); got {beta.tolist()!r}.")
    missing_columns = tuple(missing_columns)
    unknown = [c for c in missing_columns if c not in _MISSABLE]
    if unknown or len(set(missing_columns)) != len(missing_columns):
        raise ValueError(f"missing_columns must be distinct names among {_MISSABLE}; got {missing_columns!r}.")
    if missing not in ("MAR", "MCAR", None):
        raise ValueError(f"missing must be 'MAR', 'MCAR' or None; got {missing!r}.")
    if not 0 <= missing_prop < 1:
        raise ValueError(f"missing_prop must lie in [0, 1); got {missing_prop!r}.")
    if missing == "MAR" and missing_columns and missing_prop * len(missing_columns) >= 1:
        raise ValueError(
            f"with MAR missingness each row misses at most one value, so missing_prop ({missing_prop}) must "
            f"be below 1 / {len(missing_columns)}."
        )

    sizes = rng.integers(low, high + 1, size=n_clusters)
    cluster = np.repeat(np.arange(n_clusters), sizes)
    n = len(cluster)
    tau00, sigma2, tau11 = float(icc), 1.0 - float(icc), float(slope_sd) ** 2
    w = rng.standard_normal(n_clusters)
    u = rng.standard_normal((n_clusters, 2)) * np.sqrt([tau00, tau11])
    x = np.sqrt(x_icc) * rng.standard_normal(n_clusters)[cluster] + np.sqrt(1 - x_icc) * rng.standard_normal(n)
    y = (
        beta[0]
        + beta[1] * x
        + level2_effect * w[cluster]
        + u[cluster, 0]
        + u[cluster, 1] * x
        + np.sqrt(sigma2) * rng.standard_normal(n)
    )
    complete = pd.DataFrame({"cluster": cluster, "x": x, "w": w[cluster], "y": y})
    data = complete.copy()
    if missing is not None and missing_columns and missing_prop > 0:
        mask = _missing_mask(complete, missing, missing_prop, missing_columns, rng)
        for column, miss in mask.items():
            data.loc[miss, column] = np.nan
    if not return_truth:
        return data
    truth = Bunch(
        beta=pd.Series([beta[0], beta[1], float(level2_effect)], index=["Intercept", "x", "w"]),
        tau00=tau00,
        tau11=tau11,
        tau01=0.0,
        sigma2=sigma2,
        icc=tau00 / (tau00 + sigma2),
        random_effects=u,
        missing=missing,
    )
    return data, complete, truth


def _size_range(cluster_size) -> tuple[int, int]:
    if isinstance(cluster_size, bool):
        raise ValueError(f"cluster_size must be an int or a (min, max) pair; got {cluster_size!r}.")
    if isinstance(cluster_size, Integral):
        low = high = int(cluster_size)
    else:
        try:
            low, high = (int(v) for v in cluster_size)
        except (TypeError, ValueError):
            raise ValueError(f"cluster_size must be an int or a (min, max) pair; got {cluster_size!r}.") from None
    if low < 1 or high < low:
        raise ValueError(f"cluster_size must be >= 1 with min <= max; got {cluster_size!r}.")
    return low, high


def _standardise(v: np.ndarray) -> np.ndarray:
    sd = v.std()
    return (v - v.mean()) / (sd if sd > 0 else 1.0)


def _missing_mask(complete, missing, prop, columns, rng) -> dict[str, np.ndarray]:
    n = len(complete)
    if missing == "MCAR":
        return {c: rng.random(n) < prop for c in columns}
    # MAR, pattern-based: a row is a candidate for one pattern, amputed given its observed values.
    pattern = rng.integers(0, len(columns), size=n)
    target = prop * len(columns)  # mean amputation probability among a pattern's candidates
    scores = {
        "y": _standardise(complete["x"].to_numpy()) + _standardise(complete["w"].to_numpy()),
        "x": _standardise(complete["y"].to_numpy()) + _standardise(complete["w"].to_numpy()),
    }
    mask = {}
    for k, column in enumerate(columns):  # loop over (at most two) columns
        candidates = pattern == k
        s = scores[column][candidates]
        shift = optimize.brentq(lambda d, s=s: special.expit(s + d).mean() - target, -50.0, 50.0)
        miss = np.zeros(n, dtype=bool)
        miss[candidates] = rng.random(candidates.sum()) < special.expit(s + shift)
        mask[column] = miss
    return mask
