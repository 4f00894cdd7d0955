"""Comparisons of nested analysis models fitted on m completed datasets (mitml ``testModels``).

The tested parameters are the fixed effects of ``fits`` that are not in ``null_fits``
(matched by name). The models only need the analysis-model interface of
:mod:`skmlmi.analysis`: ``coef_``, ``cov_params_``, ``loglik_``, ``n_params_`` and, for D3,
``likelihood_params()``, ``loglik_at(params)`` and ``refit_ml()``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .rubin import d1, d2, d2_from_statistics, d3_from_deviances

__all__ = ["test_models"]


def _check_fits(fits, null_fits):
    if isinstance(fits, (str, bytes)) or not isinstance(fits, Sequence):
        raise TypeError("fits must be a list of fitted analysis models, one per imputation")
    if isinstance(null_fits, (str, bytes)) or not isinstance(null_fits, Sequence):
        raise TypeError("null_fits must be a list of fitted analysis models, one per imputation")
    if len(fits) != len(null_fits):
        raise ValueError(f"fits ({len(fits)}) and null_fits ({len(null_fits)}) must have one model per imputation each")
    if len(fits) < 2:
        raise ValueError("model tests need at least two imputations")
    for label, group in (("fits", fits), ("null_fits", null_fits)):
        for i, fit in enumerate(group):
            if not hasattr(fit, "coef_"):
                raise TypeError(f"{label}[{i}] is not a fitted analysis model (no coef_)")


def _tested_terms(fits, null_fits) -> list[str]:
    names = list(fits[0].coef_.index)
    null_names = set(null_fits[0].coef_.index)
    for i, (fit, null) in enumerate(zip(fits, null_fits, strict=True)):
        if list(fit.coef_.index) != names or set(null.coef_.index) != null_names:
            raise ValueError(
                f"the terms of imputation {i + 1} differ from those of imputation 1; "
                "fit the same formula with the same factor levels on every completed dataset"
            )
    extra = [n for n in null_names if n not in names]
    if extra:
        raise ValueError(f"null_fits are not nested in fits: terms {extra} are only in the null model")
    tested = [n for n in names if n not in null_names]
    if not tested:
        raise ValueError("fits and null_fits have the same fixed effects: there is nothing to test")
    return tested


def _mean_params(param_dicts: list[dict]) -> dict:
    """Average every parameter (vector or matrix) over imputations, as mitml does for D3."""
    return {key: np.mean([np.asarray(p[key], float) for p in param_dicts], axis=0) for key in param_dicts[0]}


def test_models(
    fits: Sequence,
    null_fits: Sequence,
    method: str = "D1",
    use: str = "wald",
    dfcom: float | None = None,
    ariv: str = "default",
) -> pd.DataFrame:
    """Test a model against a nested null model over m imputations (mitml ``testModels``).

    Parameters
    ----------
    fits : list of fitted analysis models
        The larger model fitted on each completed dataset (same formula everywhere).
    null_fits : list of fitted analysis models
        The nested model on the same datasets, in the same order.
    method : {"D1", "D2", "D3"}, default="D1"
        * D1: pooled Wald test (Li, Raghunathan & Rubin 1991) on the tested fixed effects
          and their covariance; with ``dfcom`` the df of Reiter (2007). See :func:`~skmlmi.pooling.d1`.
        * D2: pooled chi-square statistics (Li, Meng et al. 1991), Wald statistics
          (``use="wald"``) or likelihood-ratio statistics -2(LL0 - LL1) (``use="likelihood"``).
        * D3: pooled likelihood-ratio test (Meng & Rubin 1992): each model's log-likelihood
          is also evaluated at the parameters averaged over imputations (fixed effects,
          random-effects covariance matrix, residual variance), on each dataset.
    use : {"wald", "likelihood"}, default="wald"
        Statistic for D2 (ignored otherwise).
    dfcom : float or None, default=None
        Complete-data df for D1 (None = large sample, mitml's default; mice's ``D1`` passes
        the residual df of the model). Ignored with a warning by D2 and D3.
    ariv : {"default", "positive"}, default="default"
        "positive" truncates the relative increase in variance at 0 (D2, D3).

    Returns
    -------
    DataFrame
        One row named after the method, columns F, df1, df2, p_value, riv.
        ``attrs`` holds m, the tested terms, and whether REML fits were refitted by ML.

    Notes
    -----
    Like mitml, fits made by REML are refitted by ML (``refit_ml()``) for D2 on likelihoods
    and for D3, because restricted likelihoods of models with different fixed effects are
    not comparable.

    mice's own ``D3()`` differs from mitml's and from this function: its "restricted"
    deviance refits each model as ``y ~ 1`` (lm) or ``y ~ (random part)`` (merMod) with the
    offset X beta-bar, so an intercept shift, sigma^2 and the variance components are
    re-estimated instead of being fixed at their pooled values, and deviances come from
    ``glance()$logLik``. The D3 values of ``mice::D3`` and ``testModels(method = "D3")``
    therefore differ; this function follows mitml. Unlike mitml (which refuses ``glm`` for
    D3), GLMs and the logistic mixed model are accepted: their likelihoods at pooled
    parameters are as well defined as the linear ones.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from skmlmi.analysis import OLS
    >>> rng = np.random.default_rng(0)
    >>> sets = [pd.DataFrame({"x": rng.normal(size=50), "z": rng.normal(size=50)}) for _ in range(3)]
    >>> for s in sets:
    ...     s["y"] = 0.5 * s.x + rng.normal(size=50)
    >>> full = [OLS("y ~ x + z").fit(s) for s in sets]
    >>> null = [OLS("y ~ z").fit(s) for s in sets]
    >>> test_models(full, null, method="D1").columns.tolist()
    ['F', 'df1', 'df2', 'p_value', 'riv']
    """
    if method not in ("D1", "D2", "D3"):
        raise ValueError(f"method must be 'D1', 'D2' or 'D3', got {method!r}")
    if use not in ("wald", "likelihood"):
        raise ValueError(f"use must be 'wald' or 'likelihood', got {use!r}")
    if use == "likelihood" and method != "D2":
        warnings.warn(f"use='likelihood' only applies to D2 and was ignored by {method}", UserWarning, stacklevel=2)
    if dfcom is not None and method != "D1":
        warnings.warn(f"dfcom is only used by D1 and was ignored by {method}", UserWarning, stacklevel=2)
    _check_fits(fits, null_fits)
    tested = _tested_terms(fits, null_fits)
    m, k = len(fits), len(tested)
    attrs = {
        "m": m,
        "terms": tested,
        "method": method,
        "use": use if method == "D2" else ("likelihood" if method == "D3" else "wald"),
    }

    if method == "D1" or (method == "D2" and use == "wald"):
        q = np.array([fit.coef_[tested].to_numpy() for fit in fits])
        u = np.array([fit.cov_params_.loc[tested, tested].to_numpy() for fit in fits])
        table = d1(q, u, dfcom=dfcom) if method == "D1" else d2(q, u, ariv=ariv)
        attrs["refit_ml"] = False
        table.attrs.update(attrs)
        return table

    reml = any(getattr(f, "is_reml_", False) for f in list(fits) + list(null_fits))
    if reml:
        fits = [f.refit_ml() for f in fits]
        null_fits = [f.refit_ml() for f in null_fits]
    attrs["refit_ml"] = reml
    ll1 = np.array([f.loglik_ for f in fits])
    ll0 = np.array([f.loglik_ for f in null_fits])
    k_ll = fits[0].n_params_ - null_fits[0].n_params_
    if k_ll != k:
        raise ValueError(
            f"the models differ in {k_ll} likelihood parameters but in {k} fixed effects; "
            "likelihood-based tests need models that differ only in fixed effects"
        )
    dev_own = -2.0 * (ll0 - ll1)
    if method == "D2":
        table = d2_from_statistics(dev_own, k, ariv=ariv)
    else:
        pooled1 = _mean_params([f.likelihood_params() for f in fits])
        pooled0 = _mean_params([f.likelihood_params() for f in null_fits])
        ll1_bar = np.array([f.loglik_at(pooled1) for f in fits])
        ll0_bar = np.array([f.loglik_at(pooled0) for f in null_fits])
        table = d3_from_deviances(dev_own, -2.0 * (ll0_bar - ll1_bar), k, ariv=ariv)
    table.attrs.update(attrs)
    return table


# pytest must not collect this public function as a test when the module is imported by a test file
test_models.__test__ = False
