"""Single-level analysis models: OLS and GLM adapters over statsmodels."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import special
from sklearn.utils._param_validation import StrOptions

from ._base import FormulaModel, _named_cov
from .formula import Design

__all__ = ["GLM", "OLS"]


class OLS(FormulaModel):
    """Ordinary least squares from a formula (R's ``lm``), over statsmodels ``OLS``.

    Model y = X beta + e, e ~ N(0, sigma^2 I). ``cov_params_`` = s^2 (X'X)^{-1} with
    s^2 = RSS / (n - p); ``loglik_`` is the ML log-likelihood (sigma^2 = RSS / n), as R's
    ``logLik.lm``; ``variance_components_`` holds ``Residual~~Residual`` = s^2 (mitml).

    Parameters
    ----------
    formula : str
        For example ``"y ~ x + f"`` (see :mod:`skmlmi.analysis.formula`).
    reference_levels : dict, default=None
        Reference level per categorical column (default: the first level).
    missing : {"raise", "drop"}, default="raise"
        Rows with missing values in the formula's columns: an error, or dropped
        (complete-case analysis, R's ``na.omit``; the count is in ``n_dropped_``).
    levels : dict, default=None
        Levels of categorical predictors, ``{column: [level, ...]}``, used whatever the data
        hold (a level no row holds is an all-zero column, which the fit refuses). Default:
        the levels present in the data; :class:`~skmlmi.MIPooler` sets the categories
        observed in the incomplete data, so that every completed dataset is coded alike.

    Attributes
    ----------
    coef_ : Series
        Coefficients named as R names them.
    cov_params_ : DataFrame
    df_resid_ : float
        n - p.
    variance_components_ : Series
    loglik_ : float
    n_params_ : int
        p + 1.
    nobs_ : int

    Examples
    --------
    >>> df = pd.DataFrame({"y": [1.0, 2.1, 2.9, 4.2, 5.1], "x": [1.0, 2, 3, 4, 5]})
    >>> round(float(OLS("y ~ x").fit(df).coef_["x"]), 3)
    1.03
    """

    _t_reference = True

    def _fit_design(self, design: Design) -> None:
        res = sm.OLS(design.y, design.X).fit()
        names = design.fixed_names
        n, p = design.X.shape
        self.coef_ = pd.Series(res.params, index=names, name="estimate")
        self.cov_params_ = _named_cov(np.asarray(res.cov_params()), names)
        self.df_resid_ = float(n - p)
        rss = float(res.ssr)
        self.variance_components_ = pd.Series({"Residual~~Residual": rss / (n - p)}, name="estimate")
        self.loglik_ = float(res.llf)
        self.n_params_ = p + 1
        self._sigma2_ml = rss / n

    def _linear_predictor(self, design: Design, random_effects: bool) -> np.ndarray:
        return design.X @ self.coef_.to_numpy()

    def likelihood_params(self) -> dict:
        """beta and the ML residual variance RSS / n (mitml's choice for lm)."""
        return {"beta": self.coef_.to_numpy().copy(), "sigma2": np.array(self._sigma2_ml)}

    def loglik_at(self, params: dict, data: pd.DataFrame | None = None) -> float:
        design = self._design_for(data)
        beta, sigma2 = np.asarray(params["beta"], float), float(params["sigma2"])
        resid = design.y - design.X @ beta
        n = resid.shape[0]
        return float(-0.5 * n * np.log(2 * np.pi * sigma2) - 0.5 * resid @ resid / sigma2)


_FAMILIES = {
    "gaussian": sm.families.Gaussian,
    "binomial": sm.families.Binomial,
    "poisson": sm.families.Poisson,
}


class GLM(FormulaModel):
    """Generalised linear model from a formula (R's ``glm``), over statsmodels ``GLM``.

    Canonical links: identity (gaussian), logit (binomial, response 0/1 or a two-level
    factor whose second level is 1), log (poisson). ``cov_params_`` is the inverse Fisher
    information times the dispersion (Pearson chi^2 / df for gaussian, 1 otherwise), as R's
    ``vcov.glm``; ``loglik_`` as R's ``logLik.glm`` (gaussian with sigma^2 = RSS / n);
    ``predict`` returns the mean response (probabilities for binomial).

    Parameters
    ----------
    formula : str
    family : {"gaussian", "binomial", "poisson"}, default="gaussian"
    reference_levels : dict, default=None
        Reference level per categorical column.
    missing : {"raise", "drop"}, default="raise"
        Rows with missing values: an error, or dropped (complete-case analysis).
    levels : dict, default=None
        Levels of categorical predictors, ``{column: [level, ...]}``, used whatever the data
        hold (a level no row holds is an all-zero column, which the fit refuses). Default:
        the levels present in the data; :class:`~skmlmi.MIPooler` sets the categories
        observed in the incomplete data, so that every completed dataset is coded alike.

    Attributes
    ----------
    coef_, cov_params_, df_resid_ (n - p), variance_components_ (gaussian only:
    ``Residual~~Residual``), loglik_, n_params_, nobs_

    Examples
    --------
    >>> df = pd.DataFrame({"y": [0, 0, 1, 0, 1, 1], "x": [1.0, 2, 3, 4, 5, 6]})
    >>> round(float(GLM("y ~ x", family="binomial").fit(df).coef_["x"]), 3)
    1.214
    """

    _parameter_constraints: dict = {
        **FormulaModel._parameter_constraints,
        "family": [StrOptions(set(_FAMILIES))],
    }

    def __init__(
        self,
        formula: str,
        family: str = "gaussian",
        reference_levels: dict | None = None,
        missing: str = "raise",
        levels: dict | None = None,
    ):
        super().__init__(formula, reference_levels=reference_levels, missing=missing, levels=levels)
        self.family = family

    @property
    def _t_reference(self) -> bool:  # type: ignore[override]
        return self.family == "gaussian"

    def _fit_design(self, design: Design) -> None:
        y = design.y
        if self.family == "binomial" and not np.all((y == 0) | (y == 1)):
            raise ValueError(f"family='binomial' needs a 0/1 response; column {self.formula_.response!r} is not")
        if self.family == "poisson" and (np.any(y < 0) or np.any(y != np.round(y))):
            raise ValueError(f"family='poisson' needs non-negative integer counts in {self.formula_.response!r}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)
            res = sm.GLM(y, design.X, family=_FAMILIES[self.family]()).fit()
        names = design.fixed_names
        n, p = design.X.shape
        self.coef_ = pd.Series(res.params, index=names, name="estimate")
        self.cov_params_ = _named_cov(np.asarray(res.cov_params()), names)
        self.df_resid_ = float(n - p)
        if self.family == "gaussian":
            rss = float(np.sum(res.resid_response**2))
            self.variance_components_ = pd.Series({"Residual~~Residual": rss / (n - p)}, name="estimate")
            self._sigma2_ml = rss / n
            self.n_params_ = p + 1
        else:
            self.variance_components_ = pd.Series(dtype=float, name="estimate")
            self.n_params_ = p
        self.loglik_ = self.loglik_at(self.likelihood_params(), None, design=design)

    def _linear_predictor(self, design: Design, random_effects: bool) -> np.ndarray:
        return design.X @ self.coef_.to_numpy()

    def _inverse_link(self, eta: np.ndarray) -> np.ndarray:
        if self.family == "binomial":
            return special.expit(eta)
        if self.family == "poisson":
            return np.exp(eta)
        return eta

    def likelihood_params(self) -> dict:
        out = {"beta": self.coef_.to_numpy().copy()}
        if self.family == "gaussian":
            out["sigma2"] = np.array(self._sigma2_ml)
        return out

    def loglik_at(self, params: dict, data: pd.DataFrame | None = None, design: Design | None = None) -> float:
        """Log-likelihood of ``data`` (default: the training data) at the given parameters.

        Parameters
        ----------
        params : dict
            ``beta`` (and ``sigma2`` for the gaussian family), as :meth:`likelihood_params`.
        data : DataFrame, default=None
            Data to evaluate the likelihood on; None for the training data.
        design : Design, default=None
            An already built design of the data (saves rebuilding it); overrides ``data``.

        Returns
        -------
        float
        """
        design = design if design is not None else self._design_for(data)
        eta = design.X @ np.asarray(params["beta"], float)
        y = design.y
        if self.family == "binomial":
            return float(np.sum(y * eta - np.logaddexp(0.0, eta)))
        if self.family == "poisson":
            return float(np.sum(y * eta - np.exp(eta) - special.gammaln(y + 1)))
        sigma2 = float(params["sigma2"])
        resid = y - eta
        return float(-0.5 * y.shape[0] * np.log(2 * np.pi * sigma2) - 0.5 * resid @ resid / sigma2)
