"""Shared machinery of the formula-based analysis models.

Every analysis model is a scikit-learn estimator built from a formula and fitted on a
DataFrame. After ``fit`` it exposes what pooling needs, with R's names:

``coef_`` (Series), ``cov_params_`` (DataFrame), ``df_resid_`` (float), ``variance_components_``
(Series, mitml's ``extra.pars`` names), ``loglik_`` (float), ``n_params_`` (number of
likelihood parameters, R's ``attr(logLik, "df")``), and for likelihood-based tests
``likelihood_params()``, ``loglik_at(params, data=None)`` and ``refit_ml()``. Each also
records ``dropped_levels_``: the categories a pandas categorical declares but no row holds,
left out of the design (R's ``droplevels``) and noted by ``summary()``.
"""

from __future__ import annotations

import numbers
from abc import abstractmethod
from typing import Self

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted

from .formula import Design, ParsedFormula, build_design, parse_formula, unused_categories_note


class FormulaModel(RegressorMixin, BaseEstimator):
    """Base class: formula parsing, designs, predictions, summary.

    Subclasses implement ``_fit_design(design)`` (set the fitted attributes),
    ``_linear_predictor(design, random_effects)``, ``_inverse_link`` and the likelihood
    methods.
    """

    _parameter_constraints: dict = {
        "formula": [str],
        "reference_levels": [dict, None],
        "missing": [StrOptions({"raise", "drop"})],
        "levels": [dict, None],
    }

    #: whether the model needs a grouping factor in its formula
    _mixed: bool = False
    #: whether the model takes several grouping factors (nested or crossed)
    _several_factors: bool = False

    def __init__(
        self, formula: str, reference_levels: dict | None = None, missing: str = "raise", levels: dict | None = None
    ):
        self.formula = formula
        self.reference_levels = reference_levels
        self.missing = missing
        self.levels = levels

    # ------------------------------------------------------------------ data
    def _parse(self) -> ParsedFormula:
        parsed = parse_formula(self.formula)
        if len(parsed.random_factors) > 1 and not self._several_factors:  # said before any data are read
            names = ", ".join(repr(f.name) for f in parsed.random_factors)
            raise ValueError(
                f"{type(self).__name__} takes one grouping factor; in formula {self.formula!r} the term "
                f"{parsed.random_factors[1].text!r} adds another ({names}). Nested and crossed random effects are "
                "fitted by LinearMixedModel"
            )
        if parsed.response is None:
            raise ValueError(f"{type(self).__name__} needs a response: formula {self.formula!r} has no left-hand side")
        if self._mixed and not parsed.is_mixed:
            raise ValueError(
                f"{type(self).__name__} needs a random-effects term such as (1 | g) in the formula, "
                f"got {self.formula!r}"
            )
        if not self._mixed and parsed.is_mixed:
            raise ValueError(
                f"{type(self).__name__} is a single-level model; formula {self.formula!r} has random effects "
                "(use LinearMixedModel or LogisticMixedModel)"
            )
        return parsed

    def _data_with_response(self, X, y, parsed: ParsedFormula) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            raise TypeError(
                f"{type(self).__name__}.fit expects a pandas DataFrame holding the formula's columns, "
                f"got {type(X).__name__}"
            )
        if y is None:
            return X
        y = np.asarray(y)
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"y has {y.shape[0]} rows but X has {X.shape[0]}")
        return X.assign(**{parsed.response: y})  # a new frame: the caller's data are untouched

    def _training_design(self, X, y) -> Design:
        parsed = self._parse()
        data = self._data_with_response(X, y, parsed)
        design = build_design(
            parsed, data, reference_levels=self.reference_levels, missing=self.missing, category_levels=self.levels
        )
        self.n_dropped_ = int(len(data) - design.X.shape[0])
        self.dropped_levels_ = design.dropped_levels
        if design.X.shape[1] == 0:
            raise ValueError(f"formula {self.formula!r} has no fixed effects")
        self.formula_ = parsed
        self.levels_ = design.levels
        self.feature_names_in_ = np.asarray([str(c) for c in data.columns], dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        self.nobs_ = int(design.X.shape[0])
        if self.nobs_ <= design.X.shape[1]:
            raise ValueError(
                f"{self.nobs_} rows are too few for the {design.X.shape[1]} fixed effects of {self.formula!r}: no "
                "residual degrees of freedom"
            )
        rank = np.linalg.matrix_rank(design.X)
        if rank < design.X.shape[1]:
            raise ValueError(
                f"the fixed-effects design of {self.formula!r} is rank deficient (rank {rank} < "
                f"{design.X.shape[1]} columns {design.fixed_names}); remove collinear or constant terms"
            )
        return design

    def _new_design(self, X) -> Design:
        check_is_fitted(self, "coef_")
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"{type(self).__name__} expects a pandas DataFrame, got {type(X).__name__}")
        return build_design(
            self.formula_,
            X,
            levels=self.levels_,
            group_levels=getattr(self, "group_levels_", None),
            require_response=False,
            state=self._design.state,
        )

    # ------------------------------------------------------------------ fit / predict
    def fit(self, X: pd.DataFrame, y: ArrayLike | None = None) -> Self:
        """Fit the model.

        Parameters
        ----------
        X : DataFrame
            Holds every column of the formula (the response too, unless ``y`` is given).
        y : array-like of shape (n,), default=None
            Response values; override the response column of ``X`` when given.

        Returns
        -------
        self
        """
        self._validate_params()
        design = self._training_design(X, y)
        self._fit_design(design)
        self._design = design
        return self

    @abstractmethod
    def _fit_design(self, design: Design) -> None: ...

    @abstractmethod
    def _linear_predictor(self, design: Design, random_effects: bool) -> np.ndarray: ...

    def _inverse_link(self, eta: np.ndarray) -> np.ndarray:
        return eta

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Mean response for the rows of ``X`` (response scale).

        Mixed models add the predicted random effects of clusters seen at fit; rows of
        clusters unseen at fit get the population prediction (random effects 0), as lme4's
        ``predict(allow.new.levels = TRUE)``.

        Parameters
        ----------
        X : DataFrame
            Holds the formula's predictors (and, for a mixed model, its grouping factor).

        Returns
        -------
        ndarray of shape (n,)
        """
        design = self._new_design(X)
        return self._inverse_link(self._linear_predictor(design, random_effects=True))

    def score(self, X: pd.DataFrame, y: ArrayLike | None = None, sample_weight: ArrayLike | None = None) -> float:
        """R^2 of the response against :meth:`predict` (for binary responses: Efron's pseudo-R^2).

        Parameters
        ----------
        X : DataFrame
            Holds the formula's predictors (and the response when ``y`` is None).
        y : array-like, default=None
            Observed responses; default the response column of ``X``.
        sample_weight : array-like, default=None
            Weights of the rows in R^2.

        Returns
        -------
        float
        """
        design = self._new_design(X)  # built once: it gives the response (when X holds it) and the prediction
        if y is None:
            if self.formula_.response not in X.columns:
                raise ValueError(f"score needs y or the response column {self.formula_.response!r} in X")
            y = design.y
        predicted = self._inverse_link(self._linear_predictor(design, random_effects=True))
        return float(r2_score(np.asarray(y, dtype=float), predicted, sample_weight=sample_weight))

    # ------------------------------------------------------------------ reporting
    def summary(self, alpha: float = 0.05) -> pd.DataFrame:
        """Fixed-effects table: estimate, std_error, statistic, p_value, conf_low, conf_high.

        Uses the t distribution with ``df_resid_`` for linear models with an estimated
        scale and the normal distribution otherwise (as R's summary for lm/glm; lme4 prints
        no p-values). ``attrs["note"]`` names declared categories left out of the design.

        Parameters
        ----------
        alpha : float, default=0.05
            The confidence intervals have level 1 - alpha.

        Returns
        -------
        DataFrame
            Indexed by term.
        """
        check_is_fitted(self, "coef_")
        if not isinstance(alpha, numbers.Real) or not 0 < alpha < 1:
            raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
        se = np.sqrt(np.diag(self.cov_params_.to_numpy()))
        stat = self.coef_.to_numpy() / se
        dist = stats.t(self.df_resid_) if self._t_reference else stats.norm()
        crit = dist.ppf(1 - alpha / 2)
        table = pd.DataFrame(
            {
                "estimate": self.coef_.to_numpy(),
                "std_error": se,
                "statistic": stat,
                "p_value": 2 * dist.sf(np.abs(stat)),
                "conf_low": self.coef_.to_numpy() - crit * se,
                "conf_high": self.coef_.to_numpy() + crit * se,
            },
            index=pd.Index(self.coef_.index, name="term"),
        )
        note = unused_categories_note(getattr(self, "dropped_levels_", {}))
        if note:
            table.attrs["note"] = note
        return table

    _t_reference: bool = False

    # ------------------------------------------------------------------ likelihood interface
    @property
    def is_reml_(self) -> bool:
        """Whether ``loglik_`` is a restricted likelihood (then tests refit with ML)."""
        return False

    def refit_ml(self) -> Self:
        """This model fitted by maximum likelihood (self when it already is)."""
        check_is_fitted(self, "coef_")
        return self

    @abstractmethod
    def likelihood_params(self) -> dict:
        """Parameters at which :meth:`loglik_at` reproduces ``loglik_`` (ML fits): a dict of arrays."""

    @abstractmethod
    def loglik_at(self, params: dict, data: pd.DataFrame | None = None) -> float:
        """Log-likelihood of ``data`` (default: the training data) at the given parameters.

        Parameters
        ----------
        params : dict
            The model's parameters, keyed as :meth:`likelihood_params` returns them.
        data : DataFrame, default=None
            Data to evaluate the likelihood on; None for the training data.

        Returns
        -------
        float
        """

    def _design_for(self, data) -> Design:
        check_is_fitted(self, "coef_")
        if data is None:
            return self._design
        return build_design(self.formula_, data, levels=self.levels_, state=self._design.state)


def _named_cov(cov: np.ndarray, names: list[str]) -> pd.DataFrame:
    return pd.DataFrame(cov, index=names, columns=names)
