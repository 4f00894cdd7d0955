"""Convergence statistics of the chained-equations chains: split-R-hat and autocorrelation.

Pure functions on arrays of chain statistics (for instance the imputer's ``chain_mean_``
rearranged to chains x iterations x variables); plots and tables build on them. Nothing
here knows about the imputer.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import special, stats

__all__ = ["rhat", "autocorrelation"]


def _as_chains(chains, name: str) -> tuple[np.ndarray, bool]:
    try:
        arr = np.asarray(chains, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: chains must be numbers (chains x iterations [x k]): {exc}") from None
    if arr.ndim == 2:
        return arr[:, :, None], True
    if arr.ndim != 3:
        raise ValueError(
            f"{name}: chains must have shape (n_chains, n_iterations) or (n_chains, n_iterations, k); got {arr.shape}."
        )
    return arr, False


def _split(arr: np.ndarray) -> np.ndarray:
    """Halves of every chain as separate chains; the middle draw of an odd length is dropped."""
    half = arr.shape[1] // 2
    return np.concatenate([arr[:, :half], arr[:, arr.shape[1] - half :]], axis=0)


def _basic_rhat(arr: np.ndarray) -> np.ndarray:
    """Gelman-Rubin potential scale reduction of (M, N, k) chains (BDA3, eq. 11.4)."""
    M, N, _ = arr.shape
    means = arr.mean(axis=1)  # (M, k)
    B = N * means.var(axis=0, ddof=1)
    W = arr.var(axis=1, ddof=1).mean(axis=0)
    var_plus = (N - 1) / N * W + B / N
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.sqrt(var_plus / W)
    # every chain constant: R-hat undefined unless all chains agree exactly
    constant = W == 0
    out[constant] = np.where(B[constant] == 0, 1.0, np.inf)
    return out


def _rank_normalise(arr: np.ndarray) -> np.ndarray:
    """Normal scores of the pooled ranks (Vehtari et al. 2021, eq. 14), per parameter."""
    M, N, k = arr.shape
    flat = arr.reshape(M * N, k)
    ranks = stats.rankdata(flat, axis=0, method="average")
    return special.ndtri((ranks - 3 / 8) / (M * N + 1 / 4)).reshape(M, N, k)


def rhat(chains: ArrayLike, *, split: bool = True, rank_normalized: bool = False) -> float | np.ndarray:
    """Potential scale reduction factor R-hat of several chains.

    For M chains of length N (after splitting each chain in halves when ``split``, which
    also detects trends within a chain), with chain means theta_m, within-chain
    variances s_m^2 and the grand mean theta:

        B = N / (M - 1) sum_m (theta_m - theta)^2,   W = mean_m s_m^2,
        var+ = (N - 1) / N W + B / N,                R-hat = sqrt(var+ / W)

    (Gelman et al. 2013, BDA3 §11.4). R-hat near 1 means the chains mix; values above
    1.1 (1.01 in Vehtari et al.'s stricter advice) mean more iterations are needed.
    With ``rank_normalized`` the statistic is Vehtari et al.'s (2021): the maximum of the
    split-R-hat of the rank-normalised draws and of the rank-normalised folded draws
    ``|theta - median|``, robust to heavy tails and sensitive to differences in scale
    (R's ``rstan::Rhat``, which mice's ``convergence()`` reports).

    Parameters
    ----------
    chains : array-like of shape (n_chains, n_iterations) or (n_chains, n_iterations, k)
        Draws of a scalar, or of k parameters, per chain and iteration.
    split : bool, default=True
        Split each chain in two halves (needs at least 4 iterations).
    rank_normalized : bool, default=False
        Vehtari et al.'s rank-normalised, folded version (applied to the split chains
        when ``split``; Vehtari et al. always split).

    Returns
    -------
    float or ndarray of shape (k,)
        R-hat per parameter. Chains that are all constant give 1 when they agree and
        inf when they do not.

    References
    ----------
    Gelman, A., Carlin, J. B., Stern, H. S., Dunson, D. B., Vehtari, A., Rubin, D. B.
    (2013). Bayesian Data Analysis, 3rd ed., §11.4.
    Vehtari, A., Gelman, A., Simpson, D., Carpenter, B., Bürkner, P.-C. (2021).
    Rank-normalization, folding, and localization: an improved R-hat for assessing
    convergence of MCMC. Bayesian Analysis 16, 667-718.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> round(float(rhat(rng.normal(size=(4, 1000)))), 2)
    1.0
    >>> bool(rhat(rng.normal(size=(4, 1000)) + np.arange(4)[:, None]) > 1.5)
    True
    """
    arr, scalar = _as_chains(chains, "rhat")
    if split:
        if arr.shape[1] < 4:
            raise ValueError(f"rhat: split-R-hat needs at least 4 iterations per chain; got {arr.shape[1]}.")
        arr = _split(arr)
    elif arr.shape[1] < 2:
        raise ValueError(f"rhat: needs at least 2 iterations per chain; got {arr.shape[1]}.")
    if arr.shape[0] < 2:
        raise ValueError("rhat: needs at least 2 chains (or 1 chain with split=True).")
    if not np.isfinite(arr).all():
        raise ValueError("rhat: chains contain NaN or infinite values.")
    if rank_normalized:
        bulk = _basic_rhat(_rank_normalise(arr))
        folded = np.abs(arr - np.median(arr.reshape(-1, arr.shape[2]), axis=0))
        tail = _basic_rhat(_rank_normalise(folded))
        out = np.maximum(bulk, tail)
    else:
        out = _basic_rhat(arr)
    return float(out[0]) if scalar else out


def autocorrelation(chains: ArrayLike, lag: int = 1, *, per_chain: bool = False) -> float | np.ndarray:
    """Lag-``lag`` autocorrelation of chains, pooled over chains or per chain.

    With chain means theta_m, the pooled estimator is

        rho(lag) = sum_m sum_{t=1}^{N-lag} (theta_mt - theta_m)(theta_m,t+lag - theta_m)
                   / sum_m sum_{t=1}^{N} (theta_mt - theta_m)^2,

    the usual (biased, positive semi-definite) autocorrelation estimator applied to each
    chain's deviations from its own mean, so differences between chains do not count as
    autocorrelation. High autocorrelation of the chain means across iterations means the
    sampler moves slowly and needs more iterations.

    Parameters
    ----------
    chains : array-like of shape (n_chains, n_iterations) or (n_chains, n_iterations, k)
    lag : int, default=1
        Lag, 1 <= lag < n_iterations.
    per_chain : bool, default=False
        Return one value per chain instead of the pooled value.

    Returns
    -------
    float, or ndarray of shape (k,), (n_chains,) or (n_chains, k)
        NaN where a chain (or every chain) is constant.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> e = rng.normal(size=(4, 5000))
    >>> ar = np.zeros_like(e)
    >>> for t in range(1, 5000):
    ...     ar[:, t] = 0.8 * ar[:, t - 1] + e[:, t]
    >>> round(float(autocorrelation(ar)), 1)
    0.8
    """
    arr, scalar = _as_chains(chains, "autocorrelation")
    N = arr.shape[1]
    if not (isinstance(lag, (int, np.integer)) and 1 <= lag < N):
        raise ValueError(f"autocorrelation: lag must be an integer in [1, {N - 1}]; got {lag!r}.")
    dev = arr - arr.mean(axis=1, keepdims=True)
    cross = (dev[:, :-lag] * dev[:, lag:]).sum(axis=1)  # (M, k)
    total = (dev**2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = cross / total if per_chain else cross.sum(axis=0) / total.sum(axis=0)
    if scalar:
        return out[:, 0] if per_chain else float(out[0])
    return out
