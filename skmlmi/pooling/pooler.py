"""MIPooler: impute, fit an analysis model on each completed dataset, pool.

The whole multiple-imputation workflow as one scikit-learn meta-estimator, so that
``Pipeline``, ``cross_validate`` and ``GridSearchCV`` over imputation settings work.
This module sees completed datasets and fitted analysis models only; imputation is the
imputer's business.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone, is_classifier
from sklearn.exceptions import DataConversionWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils._available_if import available_if
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import _check_feature_names, _check_n_features, check_is_fitted

from .._errors import in_context
from .._frame import positional_labels, series_to_pandas, to_pandas
from .._threads import one_blas_thread
from ..analysis.formula import observed_levels, parse_formula, unused_categories_note
from ..analysis.mixed import LinearMixedModel, LogisticMixedModel
from .results import PooledResults, pool_results
from .rubin import pool_variance_components

if TYPE_CHECKING:  # annotations only: the imputer is duck-typed here (fit_transform_all, transform_all)
    from ..imputer import MultilevelIterativeImputer

__all__ = ["MIPooler"]

_TARGET = "__target__"


def _fit_one(estimator, data, y_name, formula_model, index):
    """Fit one clone on one completed dataset; failures name the imputation.

    One BLAS thread, as in the chains: with ``n_jobs > 1`` the fits run in loky workers with
    fewer BLAS threads than the main process, and on large data a mixed model's estimates move
    by about 1e-8 with the BLAS thread count, so the pooled results would otherwise depend on
    ``n_jobs`` and on the machine's number of cores.
    """
    try:
        with one_blas_thread():
            if formula_model or y_name is None:
                return estimator.fit(data)
            return estimator.fit(data.drop(columns=[y_name]), data[y_name])
    except Exception as exc:  # re-raised with the imputation number
        raise in_context(exc, f"the analysis model, on imputation {index + 1}") from exc


def _column_of(X, data, groups):
    """``groups`` for the imputer's data: an array X's column index names its column once y has joined it."""
    positional = isinstance(groups, numbers.Integral) and not isinstance(groups, bool)
    if positional and not isinstance(X, pd.DataFrame) and isinstance(data, pd.DataFrame):
        return f"x{groups}"
    return groups


class MIPooler(MetaEstimatorMixin, BaseEstimator):
    """Multiple imputation as one estimator: impute, fit on each completed dataset, pool.

    ``fit(X, y)`` imputes X together with y (so an incomplete y is imputed as part of the
    imputation model), fits a clone of ``estimator`` on each of the m completed datasets
    in parallel, and pools the m fits with Rubin's rules (Barnard-Rubin degrees of
    freedom with the analysis model's residual df as complete-data df). ``predict``
    imputes new data with each chain's stored draws (y entering as an all-missing column,
    so the imputer sees the columns it was fitted on) and averages the m models'
    predictions.

    Analysis models with standard errors (``skmlmi.analysis``: ``LinearMixedModel``,
    ``LogisticMixedModel``, ``OLS``, ``GLM``) get full Rubin inference. Any other
    scikit-learn regressor or classifier is pooled on its point estimates (the mean of
    ``coef_``) and its predictions; the summary then says that no within-imputation
    variance was available.

    Parameters
    ----------
    imputer : MultilevelIterativeImputer
        The imputation model (cloned at fit).
    estimator : estimator, default=None
        The analysis model. A formula model (one with a ``formula`` parameter) is fitted
        on the completed DataFrame, which holds the response; any other estimator on
        (X, y). None: the imputer's ``analysis_model`` (a formula becomes a
        :class:`~skmlmi.analysis.LinearMixedModel`, or a
        :class:`~skmlmi.analysis.LogisticMixedModel` for a binary response).
    n_jobs : int, default=None
        The m analysis fits run in parallel; results do not depend on it.
    dfcom : float, "auto" or None, default="auto"
        Complete-data degrees of freedom for the Barnard-Rubin correction: the first
        fit's ``df_resid_`` ("auto", as mice's ``pool``), a number, or None for the
        large-sample df (mitml's default).
    alpha : float, default=0.05
        The summary's confidence intervals have level 1 - alpha.

    Attributes
    ----------
    imputer_ : MultilevelIterativeImputer
        The fitted imputer. Its output follows its input (``set_output`` reset to
        ``"default"``), so the completed datasets the analysis model sees are pandas
        DataFrames whatever the input library and output settings.
    estimators_ : list
        The m fitted analysis models.
    results_ : PooledResults
        The pooled results: ``results_.table`` (indexed by term: estimate, std_error,
        statistic, df, p_value, conf_low, conf_high, riv, lambda, fmi, ubar, b, t),
        ``results_.summary()`` (header with m, df method and dfcom, then the table),
        ``results_.variance_components`` (variance components and ICC pooled as mitml's
        ``testEstimates(extra.pars=TRUE)``: the plain mean over imputations, the ICC
        computed per imputation and then averaged), ``results_.components`` (Rubin's
        Qbar, Ubar, B, T), ``results_.test()`` (D1, D2, D3), ``results_.conf_int()`` and
        ``results_.note`` (what the table lacks or leaves out, e.g. declared categories no
        row of the data holds). Without within-imputation variances (a plain scikit-learn
        estimator) the table holds ``estimate`` and ``between_sd`` only.
    summary_ : DataFrame
        Deprecated, use ``results_.table`` (removed in the next release).
    variance_components_ : Series
        Deprecated, use ``results_.variance_components`` (removed in the next release).
    pooled_ : RubinComponents or None
        Deprecated, use ``results_.components`` (removed in the next release).

    Examples
    --------
    >>> from skmlmi import MultilevelIterativeImputer, MIPooler
    >>> from skmlmi.analysis import LinearMixedModel
    >>> from skmlmi.datasets import load_popmis
    >>> data = load_popmis()[["school", "popular", "sex", "texp"]]
    >>> pooler = MIPooler(MultilevelIterativeImputer(n_imputations=5, max_iter=5, random_state=1),
    ...                   LinearMixedModel("popular ~ sex + texp + (1 | school)"))
    >>> results = pooler.fit(data, groups="school").results_
    >>> results  # doctest: +ELLIPSIS
    <PooledResults: LinearMixedModel '...', 3 terms, m = 5, Barnard-Rubin df (dfcom = 1995)>
    >>> print(results.summary())  # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
    Multiple imputation: pooled results
    ===...
    Model:            LinearMixedModel                       df method:        Barnard-Rubin
    Formula:          popular ~ sex + texp + (1 | school)    dfcom:            1995
    Imputations (m):  5                                      Confidence level: 95%
    Terms:            3
    ---...
                estimate std_error statistic    df p_value conf_low conf_high    riv lambda    fmi
    term...
    (Intercept) ...
    sex         ...
    texp        ...
    Variance components (mean over imputations)
    ...
    ICC|school ...
    >>> float(round(results.params["sex"], 1))
    0.9
    """

    _parameter_constraints: dict = {
        "imputer": [HasMethods(["fit_transform_all", "transform_all"]), None],
        "estimator": [HasMethods(["fit"]), None],
        "n_jobs": [numbers.Integral, None],
        "dfcom": [Interval(numbers.Real, 0, None, closed="neither"), StrOptions({"auto"}), None],
        "alpha": [Interval(numbers.Real, 0, 1, closed="neither")],
    }

    def __init__(
        self,
        imputer: MultilevelIterativeImputer,
        estimator: BaseEstimator | None = None,
        n_jobs: int | None = None,
        dfcom: float | str | None = "auto",
        alpha: float = 0.05,
    ):
        self.imputer = imputer
        self.estimator = estimator
        self.n_jobs = n_jobs
        self.dfcom = dfcom
        self.alpha = alpha

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = self._model.__sklearn_tags__()
        tags.estimator_type = inner.estimator_type
        tags.classifier_tags = inner.classifier_tags
        tags.regressor_tags = inner.regressor_tags
        tags.input_tags.allow_nan = True
        tags.target_tags.required = False
        return tags

    # ------------------------------------------------------------------ data assembly
    @property
    def _model(self):
        """The analysis model: ``estimator``, or the imputer's ``analysis_model`` when it is None."""
        if self.estimator is not None:
            return self.estimator
        given = getattr(self.imputer, "analysis_model", None)
        if given is None:
            raise ValueError(
                "MIPooler needs an estimator (the analysis model), or an imputer given analysis_model= "
                "whose model it then fits."
            )
        if not isinstance(given, str):
            return given
        plan = getattr(getattr(getattr(self, "imputer_", None), "_fitted", None), "plan", None)
        logistic = plan is not None and plan.analysis is not None and plan.analysis.family == "logistic"
        return LogisticMixedModel(given) if logistic else LinearMixedModel(given)

    @property
    def _formula_model(self) -> bool:
        return "formula" in self._model.get_params(deep=False)

    def _target_name(self, y):
        if self._formula_model:
            return parse_formula(self._model.formula).response
        name = getattr(y, "name", None)
        return str(name) if isinstance(name, str) and name else _TARGET

    def _free_target_name(self, X, y):
        """The name y takes in the imputer's data: its own, unless X already has a column of that name.

        ``y = df["x"] > 0`` is named "x" after its source; for a non-formula estimator the
        name only labels the column the imputer sees, so a clash takes the neutral name.
        """
        name = self._target_name(y)
        if not self._formula_model and isinstance(X, pd.DataFrame) and name in X.columns:
            name = _TARGET
        return name

    def _with_target(self, X, y, y_name):
        """X with y as one more column (all missing at predict time)."""
        if isinstance(X, pd.DataFrame):
            frame = X.copy()
        else:
            array = np.asarray(X)
            if array.ndim != 2:
                raise ValueError(f"Expected a 2D array, got shape {array.shape}.")
            frame = pd.DataFrame(array, columns=[f"x{j}" for j in range(array.shape[1])])
        if y_name in frame.columns:
            raise ValueError(f"X already has a column named {y_name!r}; rename it or pass y inside X.")
        values = np.full(len(frame), np.nan) if y is None else np.asarray(y)
        if len(values) != len(frame):
            raise ValueError(f"y has {len(values)} rows but X has {len(frame)}.")
        frame[y_name] = values
        return frame

    def _check_input(self, X, reset: bool):
        """Shape, sparsity and feature names of X (before y joins it)."""
        if hasattr(X, "toarray") or hasattr(X, "tocsr"):
            raise TypeError("Sparse input is not supported; pass a dense array or a DataFrame.")
        if not isinstance(X, pd.DataFrame):
            X = np.asarray(X)
            if X.ndim != 2:
                raise ValueError(
                    f"Expected a 2D array, got an array of shape {X.shape}; Reshape your data with "
                    "array.reshape(-1, 1) if it has a single feature."
                )
        if X.shape[0] == 0:
            raise ValueError(f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of 1 is required.")
        if X.shape[1] == 0:
            raise ValueError(f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 is required.")
        _check_feature_names(self, X, reset=reset)
        _check_n_features(self, X, reset=reset)
        return X

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: ArrayLike | None = None, groups: Hashable | ArrayLike | None = None) -> Self:
        """Impute X (with y), fit the analysis model on each completed dataset, pool.

        Parameters
        ----------
        X : DataFrame (pandas or polars), pyarrow Table or array-like
            polars and pyarrow data are converted to pandas on the way in: the analysis
            model sees pandas DataFrames.
        y : array-like or Series (pandas or polars), default=None
            Response, possibly incomplete; a formula model may instead find it in X.
        groups : hashable or array-like, default=None
            Clusters, as for the imputer (a column name of X, or labels).

        Returns
        -------
        self
        """
        for name in ("imputer", "estimator"):
            if isinstance(getattr(self, name), type):
                raise TypeError(
                    f"{name} is the class {getattr(self, name).__name__}; pass an instance, "
                    f"e.g. {getattr(self, name).__name__}()."
                )
        self._validate_params()
        if self.imputer is None:
            raise TypeError(
                "MIPooler.fit imputes, and imputer is None: pass an imputer, or analyse completed datasets you "
                "already have with fit_completed(completed)."
            )
        X, source = to_pandas(X)
        X = self._check_input(X, reset=True)
        groups = positional_labels(groups, source)
        y = series_to_pandas(y)
        if y is not None and not isinstance(y, pd.Series):
            y = np.asarray(y)
        if y is not None and y.ndim == 0:
            raise TypeError(
                f"y must hold one response per row of X; got {type(y.item()).__name__} {y.item()!r:.40}. "
                "(A formula model finds its response in X: leave y=None.)"
            )
        if y is not None and (y.ndim > 2 or y.ndim == 2 and y.shape[1] != 1):
            raise ValueError(f"y must be 1-D, one response per row of X; got shape {y.shape}.")
        if y is not None and y.ndim == 2 and y.shape[1] == 1:
            warnings.warn(
                "A column-vector y was passed when a 1d array was expected; it is raveled.",
                DataConversionWarning,
                stacklevel=2,
            )
            y = np.ravel(y)
        if y is not None and len(y) and pd.isna(pd.Series(np.asarray(y).ravel())).all():
            raise ValueError("y is entirely missing: nothing to fit the analysis model on.")
        if y is not None:
            self._y_name = self._free_target_name(X, y)
            if isinstance(X, pd.DataFrame) and not all(isinstance(c, str) for c in X.columns):
                # integer column labels: the target takes the next integer, so labels stay one type
                self._y_name = max((c for c in X.columns if isinstance(c, numbers.Integral)), default=-1) + 1
            data = self._with_target(X, y, self._y_name)
        else:
            response = self._target_name(None) if self._formula_model else None
            self._y_name = response if isinstance(X, pd.DataFrame) and response in X.columns else None
            data = X
        self._y_in_X = y is None and self._y_name is not None  # the response was a column of X at fit
        self._fit_columns = list(data.columns) if isinstance(data, pd.DataFrame) else None
        self.imputer_ = clone(self.imputer)
        if hasattr(self.imputer_, "set_output"):  # pandas in, pandas out, whatever set_output says
            self.imputer_.set_output(transform="default")
        sets = self.imputer_.fit_transform_all(data, groups=_column_of(X, data, groups))
        formula_model = self._formula_model
        estimator = self._coded_as_observed(data) if formula_model else self._model
        with one_blas_thread():  # taken here, it also covers fits run in threads of this process
            self.estimators_ = Parallel(n_jobs=self.n_jobs)(
                delayed(_fit_one)(clone(estimator), data_c, self._y_name, formula_model, c)
                for c, data_c in enumerate(sets)
            )
        self._pool()
        return self

    def fit_completed(self, completed: Sequence) -> Self:
        """Fit the analysis model on each of m completed datasets you already have, and pool; nothing is imputed.

        R's ``fit <- with(imp, lmer(...)); pool(fit)``: the datasets of
        :meth:`~skmlmi.MultilevelIterativeImputer.fit_transform_all` (or any m DataFrames with
        the same columns) are analysed as they are, so the results belong to those imputations.
        ``imputer`` is not used (it may be None), and ``predict`` and ``score``, which impute new
        data with the chains, are not available.

        Parameters
        ----------
        completed : sequence of DataFrame (pandas or polars) or pyarrow Table
            The m completed datasets. The estimator must be a formula model (its variables,
            the response included, are read from each dataset by name).

        Returns
        -------
        self
            With ``estimators_`` (one fit per dataset) and ``results_``.
        """
        self._validate_params()
        if not self._formula_model:
            raise TypeError(
                f"fit_completed needs a formula model, which finds its response in each dataset; "
                f"{type(self._model).__name__} has no formula (use LinearMixedModel, LogisticMixedModel, ...)."
            )
        if isinstance(completed, pd.DataFrame) or not isinstance(completed, Sequence) or not len(completed):
            raise TypeError(
                f"completed must be a list of the m completed datasets (fit_transform_all's result); got "
                f"{type(completed).__name__}{' with no datasets' if isinstance(completed, Sequence) else ''}."
            )
        frames = [to_pandas(data)[0] for data in completed]
        for c, frame in enumerate(frames, start=1):
            if not isinstance(frame, pd.DataFrame):
                raise TypeError(f"completed dataset {c} is {type(frame).__name__}; expected a DataFrame.")
            if list(frame.columns) != list(frames[0].columns):
                raise ValueError(f"completed dataset {c} has other columns than dataset 1; are they one imputation's?")
        used = [v for v in parse_formula(self._model.formula).variables if v in frames[0].columns]
        for c, frame in enumerate(frames, start=1):  # the columns the model reads (others may stay incomplete)
            missing = [str(v) for v in used if frame[v].isna().any()]
            if missing:
                raise ValueError(f"completed dataset {c} still has missing values in {missing}, which the model uses.")
        self._y_name = self._target_name(None)
        estimator = self._coded_as_observed(frames[0])
        with one_blas_thread():
            self.estimators_ = Parallel(n_jobs=self.n_jobs)(
                delayed(_fit_one)(clone(estimator), frame, self._y_name, True, c) for c, frame in enumerate(frames)
            )
        self._pool()
        return self

    def _coded_as_observed(self, data):
        """The formula model with its categorical predictors' levels fixed to those observed in ``data``.

        The imputer imputes observed categories only, so each completed dataset holds these
        levels; fixing them makes every completed dataset coded alike, and leaves out the
        categories a pandas categorical declares but no row of the incomplete data holds.
        Levels the user set are kept.
        """
        if not isinstance(data, pd.DataFrame) or self._model.get_params(deep=False).get("levels", 0) is not None:
            return self._model

        levels = observed_levels(parse_formula(self._model.formula), data)
        return clone(self._model).set_params(levels=levels) if levels else self._model

    def _pool(self):
        fits = self.estimators_
        names = self._aligned_terms(fits)
        vcs = [f.variance_components_ for f in fits if hasattr(f, "variance_components_")]
        model = type(self._model).__name__
        formula = self._model.get_params(deep=False).get("formula") if self._formula_model else None
        if all(hasattr(f, "cov_params_") for f in fits):
            estimates = np.stack([f.coef_.reindex(names).to_numpy(dtype=float) for f in fits])
            covariances = np.stack(
                [f.cov_params_.reindex(index=names, columns=names).to_numpy(dtype=float) for f in fits]
            )
            results = pool_results(
                estimates,
                covariances,
                self._dfcom(fits),
                names,
                self.alpha,
                variance_components=vcs or None,  # checked: every imputation reports the same components
                model=model,
                formula=formula,
            )
            results.fits = fits
        else:
            described = {
                "m": len(fits),
                "variance_components": pool_variance_components(vcs) if vcs else None,
                "model": model,
                "formula": formula,
                "fits": fits,
            }
            if len(fits) == 1:
                warnings.warn("Only one imputation: no between-imputation variance.", UserWarning, stacklevel=3)
            coefs = np.stack([np.ravel(getattr(f, "coef_", np.full(len(names), np.nan))) for f in fits])
            table = pd.DataFrame(
                {"estimate": coefs.mean(axis=0), "between_sd": coefs.std(axis=0, ddof=1) if len(fits) > 1 else np.nan},
                index=pd.Index(names, name="term"),
            )
            results = PooledResults(
                table,
                alpha=self.alpha,
                note=(
                    "point estimates pooled only: the analysis model gives no within-imputation variance, so no "
                    "standard errors, tests or intervals"
                ),
                **described,
            )

        notes = [results.note, unused_categories_note(getattr(fits[0], "dropped_levels_", {}))]
        results.note = "; ".join(note for note in notes if note)
        if results.note:
            results.table.attrs["note"] = results.note  # deprecated: read results_.note
        self.results_ = results

    def _deprecated(self, old: str, new: str):
        """The value of a pre-``results_`` attribute, with a FutureWarning naming its replacement."""
        check_is_fitted(self, "results_")  # unfitted: AttributeError, so hasattr() stays False
        warnings.warn(
            f"MIPooler.{old} is deprecated and will be removed in the next release; use MIPooler.{new}.",
            FutureWarning,
            stacklevel=3,
        )
        return getattr(self.results_, new.removeprefix("results_."))

    @property
    def summary_(self) -> pd.DataFrame:
        """Deprecated: use ``results_.table``."""
        return self._deprecated("summary_", "results_.table")

    @property
    def variance_components_(self) -> pd.Series:
        """Deprecated: use ``results_.variance_components``."""
        return self._deprecated("variance_components_", "results_.variance_components")

    @property
    def pooled_(self):
        """Deprecated: use ``results_.components``."""
        return self._deprecated("pooled_", "results_.components")

    def _aligned_terms(self, fits) -> list:
        """Term names common to every fit; terms absent from some imputations are an error."""
        if not hasattr(fits[0], "coef_"):
            return []
        if not isinstance(fits[0].coef_, pd.Series):
            return [f"coef{j}" for j in range(np.size(fits[0].coef_))]
        names = list(fits[0].coef_.index)
        for c, f in enumerate(fits[1:], start=2):
            other = list(f.coef_.index)
            if set(other) != set(names):
                lost = sorted(set(names) ^ set(other))
                raise ValueError(
                    f"imputation {c} has different terms than imputation 1 ({lost}); a category absent from a "
                    "completed dataset? Fix the factor levels (pandas categoricals keep them) or the formula."
                )
        return names

    def _dfcom(self, fits):
        if self.dfcom == "auto":
            return getattr(fits[0], "df_resid_", None)
        if isinstance(self.dfcom, str):
            raise ValueError(f"dfcom={self.dfcom!r}: use 'auto', a number or None.")
        return self.dfcom

    # ------------------------------------------------------------------ predict / score
    def _completed_new(self, X, groups):
        check_is_fitted(self, "estimators_")
        if not hasattr(self, "imputer_"):
            raise AttributeError(
                "This MIPooler analysed completed datasets (fit_completed) and has no imputer to complete new data; "
                "fit it with fit(X, groups=...) to predict."
            )
        X, source = to_pandas(X)
        groups = positional_labels(groups, source)
        if self._y_name is not None and isinstance(X, pd.DataFrame) and self._y_name in X.columns:
            X = X.drop(columns=[self._y_name])  # predictions must not see the response
        if getattr(self, "_y_in_X", False) and isinstance(X, pd.DataFrame):
            # fitted on X holding the response: X is checked with the response back, all missing
            data = self._with_target(X, None, self._y_name)
            self._check_input(
                data[self._fit_columns] if set(self._fit_columns) <= set(data.columns) else data, reset=False
            )
        else:
            X = self._check_input(X, reset=False)
            data = X if self._y_name is None else self._with_target(X, None, self._y_name)
        if isinstance(data, pd.DataFrame) and self._fit_columns is not None:
            data = data[self._fit_columns]
        sets = self.imputer_.transform_all(data, groups=_column_of(X, data, groups))
        if self._y_name is not None:
            sets = [s.drop(columns=[self._y_name]) if isinstance(s, pd.DataFrame) else s[:, :-1] for s in sets]
        return sets

    def predict(self, X: Any, groups: Hashable | ArrayLike | None = None) -> np.ndarray:
        """Average of the m models' predictions on X imputed by each chain's final draws.

        Parameters
        ----------
        X : DataFrame (pandas or polars), pyarrow Table or array-like
            New data, with the columns seen at fit (the response left out).
        groups : hashable or array-like, default=None
            Clusters, as at fit; not needed when fit was given a column name.

        Returns
        -------
        ndarray of shape (n,)
        """
        sets = self._completed_new(X, groups)
        if is_classifier(self) and all(hasattr(f, "predict_proba") for f in self.estimators_):
            proba = np.mean([f.predict_proba(s) for f, s in zip(self.estimators_, sets, strict=True)], axis=0)
            return self.estimators_[0].classes_[np.argmax(proba, axis=1)]
        return np.mean(
            [np.asarray(f.predict(s), dtype=float) for f, s in zip(self.estimators_, sets, strict=True)], axis=0
        )

    def _estimator_has_predict_proba(self):
        return hasattr(self._model, "predict_proba")

    @available_if(_estimator_has_predict_proba)
    def predict_proba(self, X: Any, groups: Hashable | ArrayLike | None = None) -> np.ndarray:
        """Average of the m models' class probabilities (classifiers only).

        Parameters
        ----------
        X : DataFrame (pandas or polars), pyarrow Table or array-like
            New data, with the columns seen at fit (the response left out).
        groups : hashable or array-like, default=None
            Clusters, as at fit; not needed when fit was given a column name.

        Returns
        -------
        ndarray of shape (n, n_classes)
        """
        sets = self._completed_new(X, groups)
        return np.mean([f.predict_proba(s) for f, s in zip(self.estimators_, sets, strict=True)], axis=0)

    def score(self, X: Any, y: ArrayLike | None = None, groups: Hashable | ArrayLike | None = None) -> float:
        """R^2 (regressors) or accuracy (classifiers) of the averaged predictions.

        Parameters
        ----------
        X : DataFrame (pandas or polars), pyarrow Table or array-like
            New data, with the columns seen at fit.
        y : array-like, default=None
            Observed responses; a formula model may instead find them in X.
        groups : hashable or array-like, default=None
            Clusters, as at fit; not needed when fit was given a column name.

        Returns
        -------
        float
        """
        X, _ = to_pandas(X)
        if y is None:
            if self._y_name is None or not isinstance(X, pd.DataFrame) or self._y_name not in X:
                raise ValueError("score needs y (or, for a formula model, the response inside X).")
            y, X = X[self._y_name], X.drop(columns=[self._y_name])
        prediction = self.predict(X, groups=groups)
        y = np.asarray(y)
        if y.dtype.kind in "fc" and np.isnan(y).any():
            raise ValueError(
                f"score needs the observed response: y has {int(np.isnan(y).sum())} missing values; "
                "score on the rows where it is observed."
            )
        if is_classifier(self):
            return accuracy_score(y, prediction)
        return r2_score(y, prediction)
