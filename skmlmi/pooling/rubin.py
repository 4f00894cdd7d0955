"""Rubin's rules and multiparameter tests on arrays.

This room holds pure functions: they take the m per-imputation estimates and their
covariance matrices (or test statistics) as arrays and return pooled tables. They know
nothing about imputers, DataFrames of raw data or analysis models, so results from any
source (R, statsmodels, a hand-written estimator) can be pooled here.

Notation (Rubin 1987; Barnard & Rubin 1999; van Buuren 2018, ch. 2.3 and 5.3). For
imputations l = 1..m with estimates Q_l (k,) and covariance matrices U_l (k, k):

.. math::

    \\bar Q = \\frac1m \\sum_l Q_l,\\quad
    \\bar U = \\frac1m \\sum_l U_l,\\quad
    B = \\frac1{m-1} \\sum_l (Q_l - \\bar Q)(Q_l - \\bar Q)',\\quad
    T = \\bar U + (1 + 1/m) B.

Per parameter: relative increase in variance r = (1 + 1/m) B / Ubar, proportion of variance
due to missingness lambda = (1 + 1/m) B / T, Barnard-Rubin degrees of freedom nu and fraction
of missing information fmi = (r + 2 / (nu + 3)) / (r + 1).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

__all__ = [
    "RubinComponents",
    "barnard_rubin_df",
    "d1",
    "d2",
    "d2_from_statistics",
    "d3_from_deviances",
    "pool",
    "pool_scalar",
    "pool_variance_components",
    "rubin_components",
]

SUMMARY_COLUMNS = [
    "estimate",
    "std_error",
    "statistic",
    "df",
    "p_value",
    "conf_low",
    "conf_high",
    "riv",
    "lambda",
    "fmi",
    "ubar",
    "b",
    "t",
]
TEST_COLUMNS = ["F", "df1", "df2", "p_value", "riv"]


# --------------------------------------------------------------------------- inputs
def _as_dfcom(dfcom: float | None) -> float:
    """Complete-data df: None or inf means large sample; otherwise a positive number."""
    if dfcom is None:
        return math.inf
    try:
        value = float(dfcom)
    except (TypeError, ValueError):
        raise TypeError(f"dfcom must be a number or None, got {dfcom!r}") from None
    if math.isnan(value) or value <= 0:
        raise ValueError(f"dfcom must be positive (or None / inf for a large sample), got {dfcom!r}")
    return value


def _check_arrays(estimates, covariances) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate (m, k) estimates and (m, k, k) covariances; 1-d estimates mean k = 1."""
    estimates = _aligned_estimates(estimates)
    try:
        q = np.asarray(estimates, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"estimates must be numbers (an (m, k) array): {exc}") from None
    if q.ndim == 1:
        q = q[:, None]
    if q.ndim != 2:
        raise ValueError(f"estimates must be an (m, k) array, got shape {np.shape(estimates)}")
    m, k = q.shape
    if m < 1 or k < 1:
        raise ValueError(f"estimates must have at least one imputation and one parameter, got shape {q.shape}")
    if not np.all(np.isfinite(q)):
        bad = np.argwhere(~np.isfinite(q))[0]
        raise ValueError(f"estimates contain a non-finite value (imputation {bad[0] + 1}, parameter {bad[1]})")
    if covariances is None:
        return q, None
    try:
        u = np.asarray(covariances, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"covariances must be numbers (an (m, k, k) array): {exc}") from None
    if u.ndim == 1 and k == 1:
        u = u[:, None, None]
    elif u.ndim == 2 and u.shape == (m, k):
        # per-parameter variances only: a diagonal covariance per imputation
        u = np.einsum("ij,jk->ijk", u, np.eye(k))
    if u.shape != (m, k, k):
        raise ValueError(f"covariances must have shape (m, k, k) = {(m, k, k)}, got {np.shape(covariances)}")
    if not np.all(np.isfinite(u)):
        bad = np.argwhere(~np.isfinite(u))[0]
        raise ValueError(f"covariances contain a non-finite value (imputation {bad[0] + 1})")
    diag = np.diagonal(u, axis1=1, axis2=2)
    if np.any(diag < 0):
        bad = np.argwhere(diag < 0)[0]
        raise ValueError(f"covariances have a negative variance (imputation {bad[0] + 1}, parameter {bad[1]})")
    return q, u


def _aligned_estimates(estimates):
    """A sequence of Series (one per imputation) as an (m, k) DataFrame aligned on the names.

    ``np.asarray`` would stack them by position, silently pairing different parameters
    when the imputations list them in different orders.
    """
    if isinstance(estimates, Sequence) and len(estimates) and all(isinstance(e, pd.Series) for e in estimates):
        names = list(estimates[0].index)
        for i, e in enumerate(estimates[1:], start=2):
            if not e.index.is_unique or set(e.index) != set(names):
                raise ValueError(
                    f"estimates of imputation {i} name parameters {sorted(map(str, e.index))}; "
                    f"imputation 1 names {sorted(map(str, names))}"
                )
        return pd.DataFrame([e.reindex(names).to_numpy(dtype=float) for e in estimates], columns=names)
    return estimates


def _solve(a, b, what: str):
    """``np.linalg.solve`` with a message that says which matrix is singular."""
    try:
        return np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        raise ValueError(
            f"{what} is singular: a parameter with zero variance, or parameters that are exact "
            "linear combinations of others; leave them out of the test"
        ) from None


def _as_numbers(values, name: str) -> np.ndarray:
    """``values`` as a float array; text and other non-numbers are a ValueError naming ``name``."""
    try:
        return np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numbers: {exc}") from None


def _null(null, k: int) -> np.ndarray:
    if null is None:
        return np.zeros(k)
    q0 = np.asarray(null, dtype=float).ravel()
    if q0.shape != (k,):
        raise ValueError(f"null must hold one value per tested parameter ({k}); got {np.shape(null)}")
    return q0


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k (number of tested parameters) must be a positive integer; got {k!r}")
    return int(k)


# --------------------------------------------------------------------------- components
@dataclass(frozen=True)
class RubinComponents:
    """The matrices of Rubin's rules for k parameters pooled over m imputations.

    Attributes
    ----------
    m : int
        Number of imputations.
    qbar : ndarray of shape (k,)
        Mean of the estimates.
    ubar : ndarray of shape (k, k)
        Mean within-imputation covariance.
    b : ndarray of shape (k, k)
        Between-imputation covariance (denominator m - 1; zero when m = 1).
    t : ndarray of shape (k, k)
        Total covariance ``ubar + (1 + 1/m) b``.
    """

    m: int
    qbar: np.ndarray
    ubar: np.ndarray
    b: np.ndarray
    t: np.ndarray

    @property
    def riv(self) -> np.ndarray:
        """Relative increase in variance per parameter, (1 + 1/m) diag(B) / diag(Ubar)."""
        add = (1.0 + 1.0 / self.m) * np.diag(self.b)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(add == 0, 0.0, add / np.diag(self.ubar))

    @property
    def lam(self) -> np.ndarray:
        """Proportion of the total variance due to missingness, (1 + 1/m) diag(B) / diag(T)."""
        add = (1.0 + 1.0 / self.m) * np.diag(self.b)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(add == 0, 0.0, add / np.diag(self.t))


def rubin_components(estimates: ArrayLike, covariances: ArrayLike | None = None) -> RubinComponents:
    """Qbar, Ubar, B and T of Rubin's rules with full covariance matrices.

    Parameters
    ----------
    estimates : array-like of shape (m, k)
        Per-imputation estimates (a 1-d array is one parameter).
    covariances : array-like of shape (m, k, k) or (m, k), default=None
        Per-imputation covariance matrices (or variances). None pools point estimates
        only: Ubar is then NaN.

    Returns
    -------
    RubinComponents

    Examples
    --------
    >>> c = rubin_components([[1.0], [1.2], [0.9], [1.1], [1.05]], [0.04, 0.05, 0.045, 0.05, 0.042])
    >>> round(float(c.b[0, 0]), 6), round(float(c.t[0, 0]), 6)
    (0.0125, 0.0604)
    """
    q, u = _check_arrays(estimates, covariances)
    m, k = q.shape
    qbar = q.mean(axis=0)
    dev = q - qbar
    with np.errstate(over="ignore", invalid="ignore"):  # checked below, with a message
        b = dev.T @ dev / (m - 1) if m > 1 else np.zeros((k, k))
        ubar = u.mean(axis=0) if u is not None else np.full((k, k), np.nan)
        t = ubar + (1.0 + 1.0 / m) * b
    if not (np.isfinite(qbar).all() and np.isfinite(b).all() and np.isfinite(ubar[~np.isnan(ubar)]).all()):
        raise ValueError(
            "the estimates or covariances are too large to pool (their mean, between-imputation variance or "
            f"mean covariance overflows; largest estimate {np.abs(q).max():.3g}): rescale the variables"
        )
    return RubinComponents(m=m, qbar=qbar, ubar=ubar, b=b, t=t)


# --------------------------------------------------------------------------- df
def barnard_rubin_df(lam: ArrayLike, m: int, dfcom: float | None = None) -> np.ndarray:
    """Barnard-Rubin (1999) degrees of freedom, numerically stable form.

    .. math::

        \\nu_{old} = (m - 1) / \\lambda^2,\\quad
        \\nu_{obs} = \\frac{\\nu_{com} + 1}{\\nu_{com} + 3} \\nu_{com} (1 - \\lambda),\\quad
        \\nu = \\frac{\\nu_{old}\\nu_{obs}}{\\nu_{old} + \\nu_{obs}}
             = \\frac{(m-1)\\tau}{(\\nu_{com} + 3)(m - 1) + \\lambda^2 \\tau},\\quad
        \\tau = (1 - \\lambda)(1 + \\nu_{com})\\nu_{com}.

    The right-hand form (mice >= 3.19) is evaluated, so lambda = 0 (no between-imputation
    variance) gives nu = nu_obs instead of 0/0. mice <= 3.18 (including the 3.15 that
    produced the shipped reference files) floors lambda at 1e-4 first, so where B is
    (nearly) zero its df is ``1 / (1/nu_obs + 1e8/(m-1))`` instead of ~nu_obs; elsewhere the
    two agree. With a large sample (``dfcom`` None or inf) nu = (m - 1) / lambda^2, which is
    inf when lambda = 0 (the t reference becomes normal).

    Parameters
    ----------
    lam : array-like
        lambda = (1 + 1/m) B / T per parameter.
    m : int
        Number of imputations (>= 2).
    dfcom : float or None, default=None
        Complete-data residual degrees of freedom; None or inf = large sample.

    Returns
    -------
    ndarray
        Degrees of freedom, same shape as ``lam``.

    Examples
    --------
    >>> float(barnard_rubin_df(0.2483443708609272, 5, 97)).__round__(6)
    33.99734
    """
    lam = _as_numbers(lam, "lam")
    dfcom = _as_dfcom(dfcom)
    if isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 1:
        raise ValueError(f"m (number of imputations) must be a positive integer; got {m!r}")
    if np.any((lam < 0) | (lam > 1)):
        raise ValueError(f"lam (the fraction of variance due to missingness) must lie in [0, 1]; got {lam}")
    if m == 1 and np.any(lam > 0):
        raise ValueError("m = 1: one imputation has no between-imputation variance, so lam must be 0")
    with np.errstate(divide="ignore", invalid="ignore"):
        if math.isinf(dfcom):
            return np.where(lam == 0, np.inf, (m - 1) / lam**2)
        tau = (1.0 - lam) * (1.0 + dfcom) * dfcom
        return (m - 1) * tau / ((dfcom + 3.0) * (m - 1) + lam**2 * tau)


# --------------------------------------------------------------------------- pooling
def _table(comp: RubinComponents, names, dfcom: float, alpha: float) -> pd.DataFrame:
    k = comp.qbar.shape[0]
    se = np.sqrt(np.diag(comp.t))
    riv, lam = comp.riv, comp.lam
    if comp.m > 1:
        df = barnard_rubin_df(lam, comp.m, dfcom)
    else:
        df = np.full(k, dfcom)
    with np.errstate(divide="ignore", invalid="ignore"):
        fmi = (riv + 2.0 / (df + 3.0)) / (riv + 1.0)
        fmi = np.where(np.isinf(riv), 1.0, fmi)  # Ubar = 0: all information is missing-data information
        statistic = comp.qbar / se
    # mice floors df at 0.001 before computing p-values (summary.mipo); same here.
    df_p = np.maximum(df, 1e-3)
    p_value = 2.0 * stats.t.sf(np.abs(statistic), df_p)
    crit = stats.t.ppf(1.0 - alpha / 2.0, df_p)
    table = pd.DataFrame(
        {
            "estimate": comp.qbar,
            "std_error": se,
            "statistic": statistic,
            "df": df,
            "p_value": p_value,
            "conf_low": comp.qbar - crit * se,
            "conf_high": comp.qbar + crit * se,
            "riv": riv,
            "lambda": lam,
            "fmi": fmi,
            "ubar": np.diag(comp.ubar),
            "b": np.diag(comp.b),
            "t": np.diag(comp.t),
        },
        index=pd.Index(names, name="term"),
    )
    table.attrs.update({"m": comp.m, "dfcom": dfcom, "alpha": alpha})
    return table


def _names(names, k: int, estimates) -> list:
    if names is None:
        if isinstance(estimates, pd.DataFrame):
            return list(estimates.columns)
        return [f"x{j}" for j in range(k)]
    names = list(names)
    if len(names) != k:
        raise ValueError(f"names has {len(names)} entries but there are {k} parameters")
    if len(set(names)) != k:
        raise ValueError(f"names must be unique, got {names}")
    return names


def _fits_to_arrays(fits: Sequence) -> tuple[pd.DataFrame, np.ndarray]:
    """Estimates (a DataFrame, one column per term) and covariances (m, k, k) of m fitted analyses.

    Each of ``fits`` is a statsmodels results object (``params`` and ``cov_params()``), a fitted
    skmlmi analysis model (``coef_`` and ``cov_params_``), or an ``(estimates, covariance)`` pair
    (a covariance matrix, or a vector of variances). Terms are matched by name (statsmodels'
    formula API and pandas inputs name them; plain arrays are numbered); every fit must have the
    same terms.
    """
    if isinstance(fits, pd.DataFrame | np.ndarray | str) or not isinstance(fits, Sequence) or not len(fits):
        raise TypeError(
            "pool without covariances takes a list of m fitted analyses (statsmodels results, fitted skmlmi "
            f"models, or (estimates, covariance) pairs); got {type(fits).__name__}. With an array of estimates, "
            "pass their covariances too."
        )
    estimates, covariances = [], []
    for c, fit in enumerate(fits, start=1):
        if isinstance(fit, tuple) and len(fit) == 2:
            q, u = fit
        elif hasattr(fit, "params") and callable(getattr(fit, "cov_params", None)):
            q, u = fit.params, fit.cov_params()
        elif hasattr(fit, "coef_") and hasattr(fit, "cov_params_"):
            q, u = fit.coef_, fit.cov_params_
        else:
            raise TypeError(
                f"fit {c} ({type(fit).__name__}) is neither fitted results with params and cov_params() (statsmodels), "
                "a fitted skmlmi analysis model, nor an (estimates, covariance) pair. (Estimates as arrays need "
                "their covariances: pool(estimates, covariances).)"
            )
        q = q.astype(float) if isinstance(q, pd.Series) else pd.Series(np.ravel(np.asarray(q, dtype=float)))
        if isinstance(u, pd.DataFrame):
            u = u.reindex(index=q.index, columns=q.index)
        u = np.asarray(u, dtype=float)
        if u.shape not in ((len(q), len(q)), (len(q),)):
            raise ValueError(f"fit {c}: {len(q)} estimates but a covariance of shape {u.shape}.")
        if estimates and list(q.index) != list(estimates[0].index):
            raise ValueError(
                f"fit {c} has other terms than fit 1: {sorted(map(str, set(q.index) ^ set(estimates[0].index)))}."
            )
        estimates.append(q)
        covariances.append(np.diag(u) if u.ndim == 1 else u)
    return pd.DataFrame(estimates).reset_index(drop=True), np.stack(covariances)


def pool(
    estimates: ArrayLike,
    covariances: ArrayLike | None = None,
    dfcom: float | None = None,
    names: Sequence[str] | None = None,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Pool m sets of estimates with Rubin's rules (full covariance matrices).

    Design: the return value is one tidy DataFrame (statsmodels ``summary2`` style), with the
    diagonals of Ubar, B and T as columns. The full k x k matrices come from
    :func:`rubin_components` (same inputs), which is what the multiparameter tests use.

    For each parameter: estimate = Qbar, std_error = sqrt(T), statistic = Qbar / sqrt(T),
    df = Barnard-Rubin df (see :func:`barnard_rubin_df`; large-sample df
    (m - 1)/lambda^2 when ``dfcom`` is None, as mitml's ``testEstimates`` default; mice's
    ``pool`` instead defaults to dfcom = df.residual of the first fit -- pass it to match),
    p_value = 2 P(t_df > ``|statistic|``), confidence limits Qbar -/+ t_{df, 1-alpha/2} sqrt(T),
    riv, lambda and fmi = (riv + 2/(df + 3)) / (riv + 1).

    Parameters
    ----------
    estimates : array-like of shape (m, k), or a list of m fitted analyses
        Estimates of k parameters on each of m completed datasets. A DataFrame supplies
        the names from its columns. Without ``covariances``: the m analyses themselves,
        statsmodels results, fitted skmlmi models or ``(estimates, covariance)`` pairs
        (terms matched by name; every fit must have the same terms), as R's ``pool(fit)``.
    covariances : array-like of shape (m, k, k) or (m, k), default=None
        Their covariance matrices (or only the variances, the squared standard errors).
    dfcom : float or None, default=None
        Complete-data residual degrees of freedom (for example ``df_resid_`` of an analysis
        model, or a statsmodels result's ``df_resid``). None or ``inf`` means a large sample.
    names : sequence of str, default=None
        Parameter names (the index of the result); default ``x0 .. x{k-1}``.
    alpha : float, default=0.05
        1 - confidence level of the intervals.

    Returns
    -------
    DataFrame
        Indexed by ``term``; columns estimate, std_error, statistic, df, p_value,
        conf_low, conf_high, riv, lambda, fmi, ubar, b, t. :func:`~skmlmi.pooling.pool_results`
        returns the same table inside a :class:`~skmlmi.pooling.PooledResults`, with m, dfcom,
        alpha and the df method as attributes. (``attrs`` still holds m, dfcom and alpha;
        it is deprecated, pandas drops it in many operations, and it will be left empty
        in the next release.)

    Warns
    -----
    UserWarning
        With m = 1: no between-imputation variance; the table then holds the single
        analysis (df = dfcom, riv = lambda = 0).

    References
    ----------
    Rubin (1987) Multiple Imputation for Nonresponse in Surveys. Barnard & Rubin (1999)
    Biometrika 86, 948-955. mice ``pool``; mitml ``testEstimates``.

    Examples
    --------
    >>> q = [[1.00], [1.20], [0.90], [1.10], [1.05]]
    >>> u = [0.040, 0.050, 0.045, 0.050, 0.042]
    >>> pool(q, u, dfcom=97, names=["x"]).loc["x", ["estimate", "df", "fmi"]].round(6).tolist()
    [1.05, 33.99734, 0.288977]
    """
    if covariances is None:
        estimates, covariances = _fits_to_arrays(estimates)
    return _pool_parts(estimates, covariances, dfcom, names, alpha, stacklevel=3)[0]


def _pool_parts(estimates, covariances, dfcom, names, alpha, stacklevel: int):
    """The work of :func:`pool`: (table, components, aligned estimates), shared with ``pool_results``."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    dfcom = _as_dfcom(dfcom)
    estimates = _aligned_estimates(estimates)
    comp = rubin_components(estimates, covariances)
    names = _names(names, comp.qbar.shape[0], estimates)
    if comp.m == 1:
        warnings.warn(
            "pooling a single imputation (m = 1): there is no between-imputation variance, so the "
            "standard errors ignore the uncertainty about the missing values",
            UserWarning,
            stacklevel=stacklevel,
        )
    return _table(comp, names, dfcom, alpha), comp, estimates


def pool_scalar(q: ArrayLike, u: ArrayLike, dfcom: float | None = None, alpha: float = 0.05) -> pd.Series:
    """Pool one scalar estimand (mice ``pool.scalar``).

    Parameters
    ----------
    q : array-like of shape (m,)
        Per-imputation estimates.
    u : array-like of shape (m,)
        Their variances (squared standard errors).
    dfcom : float or None, default=None
        Complete-data df; mice's ``pool.scalar(Q, U, n, k)`` uses dfcom = n - k.
    alpha : float, default=0.05
        1 - confidence level.

    Returns
    -------
    Series
        estimate, std_error, statistic, df, p_value, conf_low, conf_high, riv, lambda, fmi,
        ubar, b, t (one row of :func:`pool`).

    Examples
    --------
    >>> r = pool_scalar([1.0, 1.2, 0.9, 1.1, 1.05], [0.04, 0.05, 0.045, 0.05, 0.042], dfcom=97)
    >>> round(float(r["riv"]), 10), round(float(r["df"]), 7)
    (0.3303964758, 33.99734)
    """
    q, u = _as_numbers(q, "q"), _as_numbers(u, "u")
    if q.ndim > 1 or u.ndim > 1:
        raise ValueError(f"q and u must be 1-D, one value per imputation; got shapes {q.shape} and {u.shape}")
    q, u = q.ravel(), u.ravel()
    if q.shape != u.shape:
        raise ValueError(f"q and u must have the same length, got {q.shape[0]} and {u.shape[0]}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if q.shape[0] > 1 else "default")
        table = pool(q[:, None], u[:, None, None], dfcom=dfcom, names=["estimate"], alpha=alpha)
    out = table.iloc[0].copy()
    out.name = None
    return out


def pool_variance_components(components: Sequence[pd.Series]) -> pd.Series:
    """Pool variance components and ICCs as mitml's ``testEstimates(extra.pars = TRUE)``.

    The plain mean over imputations of each named quantity, with no variance, df or
    transformation: the pooled ICC is the mean of the per-imputation ICCs, not
    tau00-bar / (tau00-bar + sigma2-bar).

    Parameters
    ----------
    components : sequence of Series
        ``variance_components_`` of the m fitted analysis models.

    Returns
    -------
    Series
        Indexed by name, in the order of the first imputation.

    Raises
    ------
    ValueError
        When the names differ between imputations (the imputation is named).

    Examples
    --------
    >>> a = pd.Series({"Residual~~Residual": 1.0, "ICC|g": 0.2})
    >>> b = pd.Series({"Residual~~Residual": 3.0, "ICC|g": 0.4})
    >>> pool_variance_components([a, b]).round(6).to_dict()
    {'Residual~~Residual': 2.0, 'ICC|g': 0.3}
    """
    if isinstance(components, str | pd.Series | Mapping) or not isinstance(components, Iterable):
        raise TypeError(
            f"components must be a sequence of Series (one per imputation); got {type(components).__name__}"
        )
    try:
        components = [pd.Series(c, dtype=float) for c in components]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"components must be Series of numbers, one per imputation: {exc}") from None
    if not components:
        raise ValueError("no variance components to pool")
    names = list(components[0].index)
    for i, c in enumerate(components, start=1):
        if not c.index.is_unique:
            raise ValueError(
                f"variance components of imputation {i} repeat names: {sorted(map(str, c.index[c.index.duplicated()]))}"
            )
        if set(c.index) != set(names):
            raise ValueError(
                f"variance components of imputation {i} ({sorted(c.index)}) differ from those of imputation 1 "
                f"({sorted(names)})"
            )
    table = pd.concat([c[names] for c in components], axis=1)
    undefined = table.isna().any(axis=1)
    if undefined.any():
        warnings.warn(
            f"variance components {list(table.index[undefined])} are undefined (NaN) in some imputations: their "
            "pooled value is NaN",
            UserWarning,
            stacklevel=2,
        )
    out = table.mean(axis=1, skipna=False)
    out.index.name = "term"
    out.name = "estimate"
    return out


# --------------------------------------------------------------------------- tests
def _test_table(method: str, f_value: float, k: int, df2: float, riv: float, **attrs) -> pd.DataFrame:
    f_value = float(f_value)
    p_value = float(stats.f.sf(f_value, k, df2)) if np.isfinite(df2) else float(stats.chi2.sf(f_value * k, k))
    table = pd.DataFrame(
        [[f_value, float(k), float(df2), p_value, float(riv)]],
        columns=TEST_COLUMNS,
        index=pd.Index([method], name="test"),
    )
    table.attrs.update(attrs)
    return table


def _d1_df(r: float, k: int, m: int, dfcom: float) -> float:
    """Denominator df of D1: Li, Raghunathan & Rubin (1991), or Reiter (2007) with dfcom."""
    t = k * (m - 1)
    if r == 0:
        return math.inf
    if math.isinf(dfcom):
        if t > 4:
            return 4.0 + (t - 4.0) * (1.0 + (1.0 - 2.0 / t) / r) ** 2
        return t * (1.0 + 1.0 / k) * (1.0 + 1.0 / r) ** 2 / 2.0
    if t <= 2:
        return _d1_large_sample_df(r, k, m, t)  # a = r t / (t - 2) is undefined (R returns NaN)
    if t <= 4:
        warnings.warn(
            f"the small-sample df of D1 (Reiter 2007) is unreliable with k(m - 1) = {t} <= 4; use more imputations",
            UserWarning,
            stacklevel=3,
        )
    a = r * t / (t - 2.0)
    vstar = (dfcom + 1.0) / (dfcom + 3.0) * dfcom
    c0 = 1.0 / (t - 4.0) if t != 4 else math.inf
    c1 = vstar - 2.0 * (1.0 + a)
    c2 = vstar - 4.0 * (1.0 + a)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z = _reiter_z(a, c0, c1, c2)
    df = 4.0 + 1.0 / z
    if not np.isfinite(df) or df <= 0:
        return _d1_large_sample_df(r, k, m, t)
    return df


def _reiter_z(a: float, c0: float, c1: float, c2: float) -> float:
    """z of Reiter (2007), eq. 2 (see R_METHODS.md 4.3); numpy floats, so 1/0 is inf, not an exception."""
    a, c0, c1, c2 = (np.float64(v) for v in (a, c0, c1, c2))
    return (
        1.0 / c2
        + c0 * (a**2 * c1 / ((1.0 + a) ** 2 * c2))
        + c0 * (8.0 * a**2 * c1 / ((1.0 + a) * c2**2) + 4.0 * a**2 / ((1.0 + a) * c2))
        + c0 * (4.0 * a**2 / (c2 * c1) + 16.0 * a**2 * c1 / c2**3)
        + c0 * (8.0 * a**2 / c2**2)
    )


def _d1_large_sample_df(r: float, k: int, m: int, t: int) -> float:
    """Fallback where Reiter's small-sample df is undefined (R's mitml returns NaN there)."""
    warnings.warn(
        f"the small-sample df of D1 (Reiter 2007) is undefined with k(m - 1) = {t} and this dfcom; the "
        "large-sample df (Li, Raghunathan & Rubin 1991) is reported instead",
        UserWarning,
        stacklevel=4,
    )
    return _d1_df(r, k, m, math.inf)


def d1(
    estimates: ArrayLike, covariances: ArrayLike, dfcom: float | None = None, null: ArrayLike | None = None
) -> pd.DataFrame:
    """D1: multivariate Wald test of k parameters pooled over imputations.

    Li, Raghunathan & Rubin (1991); with finite ``dfcom`` the denominator df of
    Reiter (2007), as mitml ``testModels(method = "D1", df.com = ...)`` and mice ``D1``.

    .. math::

        r_1 = (1 + 1/m)\\,\\mathrm{tr}(B \\bar U^{-1}) / k,\\quad
        D_1 = (\\bar Q - Q_0)' [(1 + r_1)\\bar U]^{-1} (\\bar Q - Q_0) / k \\sim F(k, \\nu_1),

    with t = k(m - 1): nu_1 = 4 + (t - 4)(1 + (1 - 2/t)/r_1)^2 if t > 4, else
    t(1 + 1/k)(1 + 1/r_1)^2 / 2. With dfcom, nu_1 = 4 + 1/z (Reiter 2007, eq. 1-2; see
    R_METHODS.md 4.3). r_1 = 0 gives nu_1 = inf (chi-square reference).

    Parameters
    ----------
    estimates : array-like of shape (m, k)
    covariances : array-like of shape (m, k, k)
    dfcom : float or None, default=None
        Complete-data df; None = large sample (mitml's default).
    null : array-like of shape (k,), default=None
        Hypothesised values Q_0 (default zeros).

    Returns
    -------
    DataFrame
        One row ``D1`` with columns F, df1, df2, p_value, riv.

    Examples
    --------
    >>> q = [[.5, .2], [.6, .25], [.45, .10], [.55, .30], [.5, .22]]
    >>> base = [[.02, .005], [.005, .03]]
    >>> u = [[[s * v for v in row] for row in base] for s in (1, 1.1, 0.9, 1.05, 1)]
    >>> d1(q, u).round(4).values.tolist()[0][:2]
    [5.7808, 2.0]
    """
    q, u = _check_arrays(estimates, covariances)
    if u is None:
        raise ValueError("D1 needs the per-imputation covariance matrices")
    m, k = q.shape
    if m < 2:
        raise ValueError("D1 needs at least two imputations")
    dfcom = _as_dfcom(dfcom)
    comp = rubin_components(q, u)
    q0 = _null(null, k)
    r = (1.0 + 1.0 / m) * np.trace(_solve(comp.ubar, comp.b, "the mean within-imputation covariance Ubar")) / k
    diff = comp.qbar - q0
    f_value = diff @ _solve((1.0 + r) * comp.ubar, diff, "the mean within-imputation covariance Ubar") / k
    return _test_table("D1", f_value, k, _d1_df(r, k, m, dfcom), r, m=m, dfcom=dfcom)


def d2_from_statistics(chisq: ArrayLike, k: int, ariv: str = "default") -> pd.DataFrame:
    """D2: pool m chi-square statistics with k degrees of freedom (Li, Meng et al. 1991).

    .. math::

        r_2 = (1 + 1/m)\\,\\mathrm{var}(\\sqrt{d_l}),\\quad
        D_2 = \\frac{\\bar d / k - (m + 1)/(m - 1)\\, r_2}{1 + r_2} \\sim F(k, \\nu_2),\\quad
        \\nu_2 = k^{-3/m} (m - 1)(1 + 1/r_2)^2.

    Parameters
    ----------
    chisq : array-like of shape (m,)
        Per-imputation Wald or likelihood-ratio statistics d_l (negative values from
        numerical noise in likelihood ratios are set to 0).
    k : int
        Degrees of freedom of each statistic (number of tested parameters).
    ariv : {"default", "positive"}, default="default"
        "positive" truncates r_2 at 0 before D2 and nu_2 are computed. (mitml applies the
        truncation only to the reported RIV of D2; here it is applied to the test.)

    Returns
    -------
    DataFrame
        One row ``D2`` with columns F, df1, df2, p_value, riv.
    """
    d = _as_numbers(chisq, "chisq").ravel()
    m = d.shape[0]
    k = _check_k(k)
    if m < 2:
        raise ValueError("D2 needs at least two imputations")
    if ariv not in ("default", "positive"):
        raise ValueError(f"ariv must be 'default' or 'positive', got {ariv!r}")
    if not np.all(np.isfinite(d)):
        raise ValueError("chisq contains non-finite statistics")
    d = np.maximum(d, 0.0)
    r = (1.0 + 1.0 / m) * np.var(np.sqrt(d), ddof=1)
    if ariv == "positive":
        r = max(r, 0.0)
    f_value = (d.mean() / k - (m + 1.0) / (m - 1.0) * r) / (1.0 + r)
    with np.errstate(divide="ignore"):
        df2 = k ** (-3.0 / m) * (m - 1.0) * (1.0 + 1.0 / r) ** 2 if r != 0 else math.inf
    return _test_table("D2", f_value, k, df2, r, m=m)


def d2(
    estimates: ArrayLike, covariances: ArrayLike, null: ArrayLike | None = None, ariv: str = "default"
) -> pd.DataFrame:
    """D2 on Wald statistics: d_l = (Q_l - Q_0)' U_l^{-1} (Q_l - Q_0), pooled by :func:`d2_from_statistics`.

    Parameters
    ----------
    estimates : array-like of shape (m, k)
    covariances : array-like of shape (m, k, k)
    null : array-like of shape (k,), default=None
        Hypothesised values (default zeros).
    ariv : {"default", "positive"}, default="default"

    Returns
    -------
    DataFrame
        One row ``D2`` with columns F, df1, df2, p_value, riv.

    Examples
    --------
    >>> q = [[.5, .2], [.6, .25], [.45, .10], [.55, .30], [.5, .22]]
    >>> base = [[.02, .005], [.005, .03]]
    >>> u = [[[s * v for v in row] for row in base] for s in (1, 1.1, 0.9, 1.05, 1)]
    >>> d2(q, u).round(4).values.tolist()[0][:3]
    [6.0905, 2.0, 302.5248]
    """
    q, u = _check_arrays(estimates, covariances)
    if u is None:
        raise ValueError("D2 (Wald) needs the per-imputation covariance matrices")
    k = q.shape[1]
    q0 = _null(null, k)
    diff = q - q0
    # batched solve over the m imputations
    chisq = np.einsum("ij,ij->i", diff, _solve(u, diff[..., None], "a within-imputation covariance U_l")[..., 0])
    return d2_from_statistics(chisq, k, ariv=ariv)


def d3_from_deviances(dev_own: ArrayLike, dev_pooled: ArrayLike, k: int, ariv: str = "default") -> pd.DataFrame:
    """D3 (Meng & Rubin 1992) from likelihood-ratio statistics.

    .. math::

        \\bar d_L = \\mathrm{mean}_l\\, d_l(\\hat\\psi_l),\\quad
        \\tilde d_L = \\mathrm{mean}_l\\, d_l(\\bar\\psi),\\quad
        r_3 = \\frac{m + 1}{k(m - 1)} (\\bar d_L - \\tilde d_L),\\quad
        D_3 = \\tilde d_L / (k (1 + r_3)) \\sim F(k, \\nu_3),

    with nu_3 as nu_1 of D1 without dfcom.

    Parameters
    ----------
    dev_own : array-like of shape (m,)
        -2 (LL0_l - LL1_l) with each imputation's own ML estimates.
    dev_pooled : array-like of shape (m,)
        -2 (LL0_l - LL1_l) evaluated at the pooled (averaged) parameters of each model.
    k : int
        Number of tested parameters.
    ariv : {"default", "positive"}, default="default"
        "positive" truncates r_3 at 0.

    Returns
    -------
    DataFrame
        One row ``D3`` with columns F, df1, df2, p_value, riv.
    """
    own = _as_numbers(dev_own, "dev_own").ravel()
    pooled = _as_numbers(dev_pooled, "dev_pooled").ravel()
    m = own.shape[0]
    if pooled.shape[0] != m or m < 2:
        raise ValueError("D3 needs the same number (>= 2) of own and pooled deviances")
    if ariv not in ("default", "positive"):
        raise ValueError(f"ariv must be 'default' or 'positive', got {ariv!r}")
    k = _check_k(k)
    if not (np.all(np.isfinite(own)) and np.all(np.isfinite(pooled))):
        raise ValueError("D3: the deviances contain non-finite values (a log-likelihood that could not be evaluated?)")
    dbar, dtilde = own.mean(), pooled.mean()
    r = (m + 1.0) / (k * (m - 1.0)) * (dbar - dtilde)
    if ariv == "positive":
        r = max(r, 0.0)
    f_value = dtilde / (k * (1.0 + r))
    return _test_table("D3", f_value, k, _d1_df(r, k, m, math.inf), r, m=m)
