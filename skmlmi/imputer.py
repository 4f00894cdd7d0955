"""The chained-equations engine: :class:`MultilevelIterativeImputer`.

``fit`` is the algorithm in five steps, each in its own module:

1. **validate** the parameters (scikit-learn's ``_parameter_constraints``);
2. **encode** the data at the front door (:mod:`skmlmi._frontdoor`): the working matrix,
   the column codecs and the one :class:`~skmlmi._clusters.Clusters` value;
3. **plan** (:mod:`skmlmi._plan`): each incomplete column's conditional model, predictors
   and roles, the visit sequence, the rows to fit and the cells to impute;
4. **run** m independent chains (:mod:`skmlmi._sampler`), seeded by
   ``SeedSequence(random_state).spawn(m)`` and run through ``sklearn.utils.parallel.Parallel``
   with one BLAS thread each, so the results are bit-identical for any ``n_jobs`` and joblib
   backend;
5. **store** what they produced as the fitted attributes (mice's ``chainMean``, ``imp``, ...).

``transform`` is a pure function of the fitted state and the new data
(:func:`skmlmi._sampler.impute_new_data`).
"""

from __future__ import annotations

import copy
import numbers
import sys
from collections.abc import Hashable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from joblib import effective_n_jobs
from joblib.parallel import get_active_backend
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import _check_feature_names, _check_n_features, check_is_fitted

from ._clusters import STRUCTURES, Clusters
from ._compatible import plan_analysis_model
from ._errors import in_context
from ._frame import cell_mask, from_pandas, positional_labels, to_pandas
from ._frontdoor import (
    Layout,
    WorkingData,
    check_ignore,
    check_where,
    detect_codecs,
    encode,
    learn_observed_categories,
    read_frame,
    write_output,
)
from ._longfile import LongFileWriter, check_long_columns, long_frame, promote_integers
from ._plan import PlanSettings, check_settings, make_plan
from ._progress import Progress
from ._sampler import ChainFailure, FittedChains, NonFiniteImputationError, chain_generators, impute_new_data, run_chain
from ._threads import one_blas_thread as _one_blas_thread
from ._warnings import warn_user, with_column
from .conditional.base import BaseConditionalImputer
from .predictors import PredictorSuggestion

if TYPE_CHECKING:
    from .pooling.results import PooledResults

__all__ = ["MultilevelIterativeImputer", "ImputedDatasets", "NonFiniteImputationError"]


_MAX_EVENT_WARNINGS = 20  # distinct logged events issued as warnings at fit; the rest are counted in one


class ImputedDatasets(list):
    """The m completed datasets of an imputation (R's ``mids`` completed).

    A list of DataFrames (pandas or polars, or pyarrow Tables or arrays, as the imputer
    returns them) with :meth:`complete` (one dataset, numbered from 1 as in mice), :meth:`long`
    to stack them like ``mice::complete(imp, "long")``, :meth:`broad` and :meth:`repeated` to put
    them side by side (``"broad"``, ``"repeated"``), and :meth:`analyse` to fit an analysis
    model on each and pool the fits without imputing again (``with(imp, ...)`` and ``pool()``).

    Parameters
    ----------
    datasets : iterable of DataFrame
        The m completed datasets.
    data : DataFrame, default=None
        The incomplete data they were imputed from (as given), kept as ``.data`` so that
        diagnostics take the result alone (``plot_imputed(completed, ["popular"])``).
    groups : column name or array-like, default=None
        The cluster labels or column given with it, kept as ``.groups``.
    """

    def __init__(self, datasets: Any = (), data: Any = None, groups: Any = None):
        super().__init__(datasets)
        self.data, self.groups = data, groups

    def complete(self, i: int) -> Any:
        """The i-th completed dataset, i = 1..m (``mice::complete(imp, i)``; ``self[i - 1]``).

        Parameters
        ----------
        i : int
            Number of the imputation, from 1.

        Returns
        -------
        DataFrame
            As the imputer returned it.
        """
        if isinstance(i, bool) or not isinstance(i, numbers.Integral) or not 1 <= i <= len(self):
            raise ValueError(f"complete(i) takes an imputation number 1..{len(self)}; got {i!r}.")
        return self[int(i) - 1]

    def analyse(
        self,
        estimator: BaseEstimator,
        n_jobs: int | None = None,
        dfcom: float | str | None = "auto",
        alpha: float = 0.05,
    ) -> PooledResults:
        """Fit ``estimator`` on each completed dataset and pool the m fits (Rubin's rules).

        R's ``pool(with(imp, lmer(...)))``: the imputations at hand are analysed, none is made
        again, so analyses of the same datasets can be compared. A shortcut for
        ``MIPooler(None, estimator, ...).fit_completed(self).results_``.

        Parameters
        ----------
        estimator : formula model
            ``LinearMixedModel("popular ~ sex + texp + (1 | school)")``, ``LogisticMixedModel(...)``
            or another estimator with a ``formula``.
        n_jobs : int, default=None
            Fits in parallel through joblib.
        dfcom : float, "auto" or None, default="auto"
            Complete-data degrees of freedom (as :class:`~skmlmi.MIPooler`).
        alpha : float, default=0.05
            1 - confidence level of the intervals.

        Returns
        -------
        PooledResults
            With the m fits in ``.fits``.
        """
        from .pooling import MIPooler

        return MIPooler(None, estimator, n_jobs=n_jobs, dfcom=dfcom, alpha=alpha).fit_completed(self).results_

    def broad(self) -> pd.DataFrame:
        """The m datasets side by side, imputation by imputation: ``x.1, y.1, x.2, y.2, ...``
        (``mice::complete(imp, "broad")``), with the datasets' row labels.

        Returns
        -------
        DataFrame
            In the datasets' library (polars datasets give a polars frame).
        """
        return self._wide(by_variable=False)

    def repeated(self) -> pd.DataFrame:
        """The m datasets side by side, variable by variable: ``x.1, x.2, ..., y.1, y.2, ...``
        (``mice::complete(imp, "repeated")``), with the datasets' row labels.

        Returns
        -------
        DataFrame
            In the datasets' library (polars datasets give a polars frame).
        """
        return self._wide(by_variable=True)

    def _wide(self, by_variable: bool) -> pd.DataFrame:
        """Columns ``f"{name}.{k}"`` of dataset k = 1..m, grouped by imputation or by variable."""
        if not len(self):
            raise ValueError("There are no completed datasets to put side by side.")
        frames, source = [], None
        for data in self:
            frame, source = to_pandas(data)
            frames.append(frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(frame))
        names = list(frames[0].columns)
        labels = {f"{name}.{k}" for name in names for k in range(1, len(frames) + 1)}
        clash = [name for name in names if str(name) in labels]
        if clash:
            raise ValueError(
                f"Columns {clash} have the names the wide layout gives to other columns' imputations "
                "(name.k); rename them first."
            )
        pairs = (
            [(name, k) for name in names for k in range(len(frames))]
            if by_variable
            else [(name, k) for k in range(len(frames)) for name in names]
        )
        wide = pd.concat([frames[k][name].rename(f"{name}.{k + 1}") for name, k in pairs], axis=1)
        if source.frame is not None:  # each imputation's column keeps the caller's dtype
            schema = source.schema or {}
            return from_pandas(wide, source.library, schema={f"{n}.{k + 1}": schema.get(str(n)) for n, k in pairs})
        return wide

    def long(self, include_original: pd.DataFrame | None = None) -> pd.DataFrame:
        """Stacked long format with ``.imp`` (1..m) and ``.id`` (row position) columns.

        A pandas result keeps each dataset's row labels as its index (repeated once per
        imputation, as mice's row names), so that ``long.loc[label]`` finds a row's m values.

        Parameters
        ----------
        include_original : DataFrame (pandas or polars), optional
            The incomplete data, stacked first with ``.imp = 0`` (mice's ``include=TRUE``).

        Returns
        -------
        DataFrame
            In the datasets' library (polars datasets give a polars frame); an integer column
            imputed with fractions in some dataset is a float column throughout.
        """
        frames = []
        sets = ([include_original] if include_original is not None else []) + list(self)
        start = 0 if include_original is not None else 1
        for k, data in enumerate(sets, start=start):
            frame, source = to_pandas(data)  # polars and pyarrow datasets are stacked as pandas
            if not isinstance(frame, pd.DataFrame | np.ndarray):
                raise TypeError(f"include_original must be the incomplete data frame; got {type(data).__name__}.")
            frames.append(long_frame(k, frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(frame)))
        stacked = pd.concat(frames)
        if source.frame is not None:  # ... and returned in their library
            return from_pandas(stacked, source.library, schema=source.schema)
        return stacked


def _plan_table(plan, clustered: bool) -> pd.DataFrame:
    """One row per visit: its column, kind, model, cells to impute, predictors (role codes other than 1
    shown), how the model uses the clusters, and whether it is imputed through the analysis model."""
    rows = []
    for target in plan.targets:
        if not clustered:
            clusters = "none"
        elif target.ignores_clusters:
            clusters = "ignored"
        else:
            clusters = {-2: "random effects", 1: "fixed effects"}.get(target.cluster_role, "ignored")
        rows.append(
            {
                "column": target.name,
                "kind": target.kind,
                "model": repr(target.model),
                "n_missing": int(np.size(plan.impute_rows[target.column])),
                "predictors": ", ".join(p.name if p.role == 1 else f"{p.name} ({p.role})" for p in target.predictors),
                "clusters": clusters,
                "compatible": target.compatible or "",
            }
        )
    return pd.DataFrame(rows, columns=["column", "kind", "model", "n_missing", "predictors", "clusters", "compatible"])


# ----------------------------------------------------------------------------- estimator
#: Rows x visits (summed over chains) below which the chains run in this process whatever ``n_jobs``
#: says: starting worker processes costs about 2 s on first use (each imports numpy, pandas and
#: scikit-learn), more than such a job takes serially (popmis with m = 5 and 5 iterations: 50,000
#: row-visits, 0.06 s). Measured on a 2-core machine: 100,000 rows x 5 targets x 10 iterations x 5
#: chains (25 million) took 3.3 s in one process and 1.9 s on 2 warm workers.
IN_PROCESS_WORK = 2_000_000

#: The threshold while joblib has no worker processes running yet, in row-visits times design columns
#: (a visit's cost grows with its target's predictors): starting workers (about 1.5 s on 2 cores, each
#: importing numpy, pandas and scikit-learn) pays only on larger jobs. Measured on a 2-core machine, each
#: run a new process, 5 incomplete variables (5 design columns per target), m = 5, 10 iterations,
#: n_jobs = 2 against 1: 100,000 rows (125 million) 3.6-4.1 s against 2.9-3.2 s; 200,000 rows 6.0-6.3 s
#: against 4.5-4.8 s; 300,000 rows 6.7-7.2 s against 6.3-6.4 s; 1,000,000 rows (1.25 billion) 17.6 s
#: against 22.5 s; 100,000 rows of 20 variables (2 billion) 21 s in workers against 33 s in one.
COLD_START_WORK = 600_000_000


def _workers_running() -> bool:
    """Whether joblib's reusable loky executor holds live worker processes (started by an earlier call).

    It reads loky's private state: anything unexpected there counts as no workers, which only runs a
    mid-sized job in this process (the results are the same either way)."""
    try:
        from joblib.externals.loky import reusable_executor

        executor = reusable_executor._executor
        return executor is not None and bool(executor._processes)
    except Exception:  # a change of loky's internals must not break a fit
        return False


class MultilevelIterativeImputer(TransformerMixin, BaseEstimator):
    """Multiple imputation of multilevel data by chained equations.

    Each incomplete variable is imputed in turn from a conditional model given the
    other variables (fully conditional specification, van Buuren 2018, ch. 4), in m
    independent chains; R's ``mice()`` with the 2l methods is the model. With
    ``groups`` the default models are random-effects models that keep the intraclass
    correlation; without, they are mice's single-level defaults.

    Parameters
    ----------
    methods : dict, BaseConditionalImputer or str, default=None
        Conditional model per incomplete column (``{"popular": RandomEffectsNormal()}``),
        or one model for every incomplete column. A model may be given by name: its class
        name (``"RandomEffectsPMM"``) or an R method name (``"2l.pan"``, ``"2l.norm"``, ...;
        see :func:`skmlmi.conditional.registry.r_method_names`), resolved at ``fit``.
        Columns not named get the default of their kind: without groups
        :class:`~skmlmi.conditional.PredictiveMeanMatching` (continuous, integer),
        :class:`~skmlmi.conditional.BayesianLogistic` (binary),
        :class:`~skmlmi.conditional.Polytomous` (categorical); with groups the
        random-effects models, two-stage or cluster-level models where the missingness
        calls for them (see :data:`skmlmi.conditional.registry.DEFAULT_MODELS`).
    predictor_matrix : DataFrame, dict or array-like, default=None
        Role codes, one row per target and one column per variable (mice's
        ``predictorMatrix``; codes in :data:`skmlmi.conditional.ROLE_NAMES`). A DataFrame,
        or a dict ``{predictor: {target: code}}``, may hold only the entries to change. Default: every other column a
        fixed predictor (1), the cluster column -2. Where a target's default predictors
        outnumber what its rows support, they are reduced by quickpred's rule (see Notes);
        entries given here are always kept.
    visit_sequence : {"left-to-right", "monotone", "reverse-monotone"} or list, default="left-to-right"
        Order in which incomplete columns are visited in each iteration: columns in
        data order, by increasing or decreasing number of missing values, or an
        explicit list of column names (repeats allowed).
    n_imputations : int, default=5
        Number of chains, hence of completed datasets (mice's ``m``).
    max_iter : int, default=10
        Iterations of each chain (mice's ``maxit``). Cost is linear in
        ``n_imputations * max_iter * (number of visits)``.
    column_kinds : dict, default=None
        Overrides of the detected kind of a column: ``"continuous"``, ``"integer"``,
        ``"binary"`` or ``"categorical"``. The kind chooses the default model: a
        whole-number column (``"integer"``: integer dtype, or floats that are all whole
        numbers) gets predictive mean matching, which imputes observed values, so it keeps
        whole numbers. Draws are never rounded: a normal model chosen for a whole-number
        column imputes unrounded values (rounding adds variance and biases it); to round,
        pass ``post={column: numpy.round}``. An integer-dtype column that receives
        non-whole imputations is returned as a float column (logged).
    keep_groups : bool, default=True
        Whether the output keeps the cluster column (when groups is a column of X).
    transform_chain : int, default=0
        Which chain's completed data ``fit_transform`` returns and whose stored draws
        ``transform`` uses.
    transform_iter : int, default=3
        Passes over the visit sequence in ``transform`` so that rows with several
        missing values are completed consistently (one pass suffices, and is used, when
        no row has more than one missing value).
    random_state : int, RandomState instance or None, default=None
        Seed of the chains: chain c uses ``SeedSequence(random_state).spawn(m)[c]``.
    n_jobs : int, default=None
        Chains run in parallel through joblib; results do not depend on it. A job too small to
        pay for worker processes (rows x visits over all chains under
        :data:`~skmlmi.imputer.IN_PROCESS_WORK`, as popmis with m = 5; while no worker has been
        started yet, under :data:`~skmlmi.imputer.COLD_START_WORK`, about 480,000 rows of 5
        incomplete variables with m = 5 and 10 iterations) runs in this process with joblib's
        default backend.
    verbose : int, default=0
        1 prints, on standard error, the model of each column before the chains run (the table
        of :meth:`plan_summary`), then their progress: a bar over the chain-iterations (chains x
        iterations) with the time left when tqdm is installed (``pip install skmlmi[progress]``)
        and the output is a terminal or Jupyter, otherwise a line at every quarter of the work;
        chains in worker processes count as each finishes. Each chain's Metropolis-Hastings
        acceptance rates follow (``analysis_model``). 2 adds joblib's task messages.
    derived : dict, default=None
        Derived (passive) columns, never imputed by a model but recomputed from their
        inputs after each visit of an input, so they stay consistent in every completed
        dataset (mice's passive imputation): ``{"bmi": "weight / height ** 2"}`` (an
        expression over column names) or ``{"bmi": callable}`` (receives a DataFrame of the
        current data; recomputed after every visit), or ``(callable, [inputs])``. Cells
        recomputed: those where the derived value or one of its inputs is missing.
        An expression is checked at ``fit``, before anything is computed, and evaluated with
        numpy, never run as Python code. It may hold column names (in backticks when not
        identifiers: ``"`body weight` / height ** 2"``), numbers, ``+ - * / // % **``,
        comparisons, ``and``/``or``/``not`` (``&``/``|``/``~``), ``a if condition else b``
        and the functions ``abs, sqrt, cbrt, square, exp, expm1, log, log1p, log2, log10``,
        the trigonometric and hyperbolic ones and their inverses (``sin``, ``arctan2``,
        ``tanh``, ...), ``floor, ceil, trunc, round, sign, minimum, maximum, power, clip,
        where, isnan, isfinite`` (bare or as ``np.log``); anything else (attributes,
        subscripts, other calls, strings, ...) is a ValueError naming the offending part.
        A binary or categorical input enters as its categories, never as the working
        codes: an expression computes on categories that are numbers (``"x * (dept == 2)"``
        is category 2), and is a ValueError for text categories; a callable receives the
        labels. A derived column whose inputs are known (an expression, or a callable with its
        inputs) is left out of its inputs' imputation models (it would predict each from
        itself; mice asks for these ``predictorMatrix`` entries to be set to 0), logged; code
        it in ``predictor_matrix`` to keep it. It predicts the other columns as usual.
    bounds : dict, default=None
        ``{"popular": (0, 10)}``: draws outside the bounds are redrawn from the same
        conditional model (up to 20 times), then squeezed onto the bound (logged).
    post : dict, default=None
        ``{column: callable}`` applied to each vector of imputations after the bounds
        (mice's ``post``), e.g. rounding. Every completed dataset is made in one order:
        the model's draw, then ``bounds``, then ``post``, then the derived columns from
        these final values; nothing changes the values afterwards, so bounds (unless
        ``post`` moves values outside them), ``post`` and derived columns hold exactly.
    groups_column : str, default=None
        Name of the cluster column of X, used when ``fit`` receives no ``groups``. This is
        the path that always works inside ``GridSearchCV`` and ``cross_validate``, where
        ``groups`` goes to the splitter only (unless metadata routing is enabled).
    cluster_means : bool, default=True
        With groups, whether the default predictor matrix gives the level-1 predictors of a
        level-1 target their cluster means (code ``3`` instead of ``1``), so that within-
        and between-cluster associations are imputed separately (Enders, Mistler & Keller
        2016; Grund, Lüdtke & Robitzsch 2018). Variables constant within clusters, models
        that cannot use cluster means, and entries given in ``predictor_matrix`` are not
        changed. ``False`` gives mice's default matrix (every predictor ``1``). The models
        that take them are the one-stage random-effects models
        (``default_cluster_means`` in :class:`~skmlmi.conditional.BaseConditionalImputer`).
    cluster_structure : {"auto", "nested", "crossed"}, default="auto"
        With several grouping factors (``groups`` a list of column names, or a 2-D array or
        DataFrame of labels, outer to inner): ``"auto"`` reads them as nested when every unit of
        each lies within one unit of the factor before it, and as crossed otherwise;
        ``"nested"`` combines each inner factor's labels with the outer ones (as lme4's
        ``school/class``: class labels ``a``, ``b``, ``c`` repeating in every school mean
        school:class); ``"crossed"`` takes the labels as given (a warning when they look
        nested). One grouping factor: ignored. The models that take several factors are
        :class:`~skmlmi.conditional.RandomEffectsNormal`,
        :class:`~skmlmi.conditional.RandomEffectsPMM` and
        :class:`~skmlmi.conditional.RandomEffectsLogistic` (a random intercept per factor).
    cluster_mean_levels : dict, default=None
        With several grouping factors, the factors whose cluster means codes ``3`` and ``4`` add
        for a predictor: ``{"ses": ["school"]}`` gives ``ses`` its school means only. By default
        (and for predictors not named) a predictor gets its means by every factor above the
        target's level at which it varies, as miceadds' ``ml.lmer`` with
        ``aggregate_automatically=TRUE``: a pupil-level target gets the class and the school
        means, a class-level target the school means; a target constant within the outermost
        factor, or within a crossed factor, gets none. A factor named here that is not above the
        target's level, or within whose units the predictor is constant, is skipped for that
        target. One grouping factor: the means by it, whatever is given.
    random_slope_levels : dict, default=None
        With several grouping factors, the factors over which a predictor coded ``2`` or ``4``
        (random slope) has its random slope: ``{"service": ["d"]}`` gives ``service`` a slope
        varying over lecturers ``d`` and a random intercept only over students ``s``, as lme4's
        ``(1 | s) + (1 + service | d)``. By default (and for predictors not named) the slope
        varies over every factor, as ``(1 + x | school) + (1 + x | class)``. An empty list makes
        the slope fixed (codes ``2`` and ``4`` read as ``1`` and ``3``). One grouping factor: the
        slope varies over it whenever the factor is named.
    analysis_model : str or LinearMixedModel or LogisticMixedModel, default=None
        The analysis model, as an lme4-type formula (``"y ~ x + w + x:w + (1 + x | g)"``) or a
        mixed model holding one: every incomplete variable of the formula is then imputed
        compatibly with it (substantive-model-compatible imputation; see
        :mod:`skmlmi._compatible`): the outcome from the analysis model, each incomplete
        covariate from (covariate model) x (the analysis model's likelihood), exactly where that
        has a closed form and by Metropolis-Hastings steps otherwise. A continuous or whole-number
        response gives a linear mixed model, a binary one a logistic mixed model. One grouping
        factor (the imputer's groups column), a fixed and a random intercept; covariates
        continuous, whole-number, binary or categorical (cluster-level ones continuous or binary). Other incomplete
        columns (auxiliary variables) are imputed by their own models as usual. Use it when the
        analysis has random slopes, interactions or non-linear terms of incomplete variables,
        which no chained conditional model can match. ``acceptance_rates_`` reports the
        Metropolis-Hastings acceptance per variable and chain.

    Attributes
    ----------
    chain_mean_, chain_var_ : ndarray of shape (n_imputations, max_iter, n_incomplete)
        Mean and variance of the imputed values of each incomplete column after each
        iteration (mice's ``chainMean``/``chainVar``; categorical columns on their codes
        0..K-1).
    incomplete_columns_ : list
        Names of the incomplete columns, the last axis of ``chain_mean_``.
    imputations_ : dict
        Column -> array (n_missing, n_imputations) of the imputed values (mice's ``imp``).
    methods_ : dict
        The conditional model used for each incomplete column.
    predictor_matrix_ : DataFrame
        The resolved predictor matrix.
    visit_sequence_ : list
        The resolved visit sequence.
    final_draws_ : list of list
        Per chain, the last draw of each visit's conditional model.
    logged_events_ : DataFrame
        What the sampler decided on its own: one row per distinct event, with the first
        iteration and chain it happened in (0 and 0: decided once, before the chains ran, as
        in mice), column, reason, ``count`` (how often: an event of every visit repeats in
        every chain and iteration) and ``chains`` (in how many chains).
    acceptance_rates_ : DataFrame
        With ``analysis_model``: the share of Metropolis-Hastings proposals accepted, per
        variable drawn by such steps (rows) and chain (columns), over all iterations. Variables
        drawn exactly from their full conditionals are not listed. Empty otherwise.
    n_features_in_, feature_names_in_
        As in scikit-learn.

    See Also
    --------
    sklearn.impute.IterativeImputer : single-level, single imputation.

    Notes
    -----
    **When a chain fails.** An exception raised inside a chain (by a model, a ``post``
    callable, a derived column, or a non-finite draw) does not stop the other chains. Once
    they are done, the first failure is raised again with its own type, the chain,
    iteration, column and model leading its message, and the original as ``__cause__``;
    it carries ``failed_chains`` and ``finished_chains`` (chain numbers from 1) and
    ``completed``, the finished chains' completed datasets. They are what a successful fit
    would have given for those chains; analysing them alone is sound only if the failure
    is unrelated to the data the chain imputed. A failed ``fit`` leaves the imputer
    unfitted; a failed :meth:`continue_fit` leaves it as it was, so it can be continued
    once the cause is removed, with the same result as had nothing failed.

    **Wide data.** When a target's model would have more predictor columns than a third of
    the rows observing it (dummies of categorical predictors and cluster means count; for a
    cluster-level target, a third of the clusters observing it; with cluster fixed effects,
    of the rows less one per cluster), the predictors not given in
    ``predictor_matrix`` are reduced at ``fit`` by the rule of mice's ``quickpred``
    (:func:`~skmlmi.predictors.quickpred`, van Buuren et al. 1999): a predictor stays when
    its absolute correlation with the target, or with the target's response indicator,
    exceeds 0.1 (Pearson, on the pairs of values available in the fitting data; categories
    by their codes), and of those the strongest stay while they fit in a third of the rows
    (:func:`~skmlmi.predictors.limit_predictors`). Correlations do not depend on units, and
    ties keep the earlier column, so the choice is deterministic. It is made once, from the
    incomplete data, logged in ``logged_events_`` (the target, how many predictors were
    kept and why) and shown in ``predictor_matrix_``. Entries given in ``predictor_matrix``
    are kept even beyond that bound (then only logged): pass the whole matrix, e.g.
    :func:`~skmlmi.predictors.make_predictor_matrix`, to keep every predictor. At each draw,
    constant and collinear predictors are dropped and logged (mice's ``remove.lindep``),
    reading the collinear ones from one eigendecomposition of their correlation matrix (one
    singular value decomposition of the rows when the columns outnumber twice the rows).
    30 rows and 2,000 columns impute in about a second (``benchmarks/wide_data.py``).

    Examples
    --------
    >>> from skmlmi import MultilevelIterativeImputer
    >>> from skmlmi.conditional import RandomEffectsPMM
    >>> from skmlmi.datasets import load_popmis
    >>> data = load_popmis()[["school", "popular", "sex", "texp"]]
    >>> imp = MultilevelIterativeImputer(methods=RandomEffectsPMM(), n_imputations=2,
    ...                                  max_iter=2, random_state=1)
    >>> sets = imp.fit_transform_all(data, groups="school")
    >>> len(sets), int(sets[0]["popular"].isna().sum())
    (2, 0)
    """

    _parameter_constraints: dict = {
        "methods": [dict, BaseConditionalImputer, str, None],
        "predictor_matrix": ["array-like", dict, None],
        "visit_sequence": [StrOptions({"left-to-right", "monotone", "reverse-monotone"}), list],
        "n_imputations": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 0, None, closed="left")],
        "column_kinds": [dict, None],
        "keep_groups": ["boolean"],
        "transform_chain": [Interval(numbers.Integral, 0, None, closed="left")],
        "transform_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "n_jobs": [numbers.Integral, None],
        "verbose": ["verbose"],
        "derived": [dict, None],
        "bounds": [dict, None],
        "post": [dict, None],
        "groups_column": [str, numbers.Integral, tuple, list, None],
        "cluster_means": ["boolean"],
        "cluster_structure": [StrOptions(set(STRUCTURES))],
        "cluster_mean_levels": [dict, None],
        "random_slope_levels": [dict, None],
        "analysis_model": [str, HasMethods(["fit"]), None],
    }

    def __init__(
        self,
        methods: dict | BaseConditionalImputer | str | None = None,
        predictor_matrix: pd.DataFrame | dict | ArrayLike | None = None,
        visit_sequence: str | list = "left-to-right",
        n_imputations: int = 5,
        max_iter: int = 10,
        column_kinds: dict | None = None,
        keep_groups: bool = True,
        transform_chain: int = 0,
        transform_iter: int = 3,
        random_state: int | np.random.RandomState | None = None,
        n_jobs: int | None = None,
        verbose: int = 0,
        derived: dict | None = None,
        bounds: dict | None = None,
        post: dict | None = None,
        groups_column: Hashable | list | None = None,
        cluster_means: bool = True,
        cluster_structure: str = "auto",
        cluster_mean_levels: dict | None = None,
        random_slope_levels: dict | None = None,
        analysis_model: str | Any | None = None,
    ) -> None:
        self.methods = methods
        self.predictor_matrix = predictor_matrix
        self.visit_sequence = visit_sequence
        self.n_imputations = n_imputations
        self.max_iter = max_iter
        self.column_kinds = column_kinds
        self.keep_groups = keep_groups
        self.transform_chain = transform_chain
        self.transform_iter = transform_iter
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.derived = derived
        self.bounds = bounds
        self.post = post
        self.groups_column = groups_column
        self.cluster_means = cluster_means
        self.cluster_structure = cluster_structure
        self.cluster_mean_levels = cluster_mean_levels
        self.random_slope_levels = random_slope_levels
        self.analysis_model = analysis_model

    # ------------------------------------------------------------------ sklearn plumbing
    @classmethod
    def from_suggestion(cls, suggestion: PredictorSuggestion, **params: Any) -> MultilevelIterativeImputer:
        """The imputer a :func:`~skmlmi.predictors.suggest_predictors` suggestion describes.

        Parameters
        ----------
        suggestion : PredictorSuggestion
            Its ``methods`` and ``predictor_matrix`` become the imputer's (copies), and with several
            grouping factors its ``cluster_structure`` and ``random_slope_levels`` (unless given); fit with
            ``groups=suggestion.groups``.
        **params
            Any other parameter of the imputer (``n_imputations``, ``random_state``, ...).

        Returns
        -------
        MultilevelIterativeImputer
        """
        if not isinstance(suggestion, PredictorSuggestion):
            raise TypeError(f"from_suggestion takes the result of suggest_predictors; got {type(suggestion).__name__}.")
        taken = sorted({"methods", "predictor_matrix"} & params.keys())
        if taken:
            raise TypeError(f"from_suggestion sets {taken} from the suggestion; change the suggestion instead.")
        if suggestion.cluster_structure is not None:  # several grouping factors: read as the formula nests them
            params.setdefault("cluster_structure", suggestion.cluster_structure)
        if suggestion.random_slope_levels:  # slopes at some factors only, as the formula has them
            params.setdefault("random_slope_levels", dict(suggestion.random_slope_levels))
        return cls(methods=dict(suggestion.methods), predictor_matrix=suggestion.predictor_matrix.copy(), **params)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        tags.non_deterministic = False
        return tags

    # ------------------------------------------------------------------ public API
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(
        self, X: Any, y: None = None, groups: Any = None, where: Any = None, ignore: ArrayLike | None = None
    ) -> MultilevelIterativeImputer:
        """Run the chains on X.

        Parameters
        ----------
        X : DataFrame (pandas or polars), pyarrow Table or array-like of shape (n_samples, n_features)
            Incomplete data; NaN, pandas NA or polars null marks missing values. The output
            follows the input's library unless ``set_output`` chooses one.
        y : ignored
        groups : hashable, list or array-like of shape (n_samples,) or (n_samples, k), default=None
            Cluster labels, or the name of the cluster column of X (remembered, so that
            ``transform`` needs no groups argument); several grouping factors as a list of
            column names or a 2-D array / DataFrame of labels, outer to inner (see
            ``cluster_structure``).
        where : array-like of bool, shape (n_samples, n_features), default=None
            Cells to impute (mice's ``where``); default the missing ones. Observed cells
            marked are over-imputed: their imputations are stored and appear in the
            completed data, while the chains keep using the observed value as predictor.
            Missing cells not marked stay missing, and rows with such a predictor are left
            out of the models that use it.
        ignore : array-like of bool, shape (n_samples,), default=None
            Rows imputed but never used to fit a conditional model (mice's ``ignore``),
            e.g. a test set that must not shape the imputation model.

        Returns
        -------
        self
        """
        self._fit(X, groups, where, ignore)
        return self

    def fit_transform(
        self, X: Any, y: None = None, groups: Any = None, where: Any = None, ignore: ArrayLike | None = None
    ) -> Any:
        """Run the chains and return chain ``transform_chain``'s completed data.

        Parameters
        ----------
        X, y, groups, where, ignore
            As in :meth:`fit`.

        Returns
        -------
        DataFrame or ndarray
            One completed dataset, in the input's container.
        """
        return self.fit_transform_all(X, groups=groups, where=where, ignore=ignore)[self._chain_index()]

    def fit_transform_all(
        self, X: Any, y: None = None, groups: Any = None, where: Any = None, ignore: ArrayLike | None = None
    ) -> ImputedDatasets:
        """Run the chains and return the m completed datasets they produced (R's ``mice()``).

        Parameters
        ----------
        X, y, groups, where, ignore
            As in :meth:`fit`.

        Returns
        -------
        ImputedDatasets
            The m completed datasets, in the input's container.
        """
        data = self._fit(X, groups, where, ignore)
        return ImputedDatasets(
            (self._completed(data, c, self._fitted.results) for c in range(self.n_imputations)),
            data=X,
            groups=groups if groups is not None else self.groups_column,
        )

    def fit_write(
        self,
        X: Any,
        path: str | Path,
        groups: Any = None,
        where: Any = None,
        ignore: ArrayLike | None = None,
        *,
        include_original: bool = False,
        chunk_rows: int = 1_000_000,
    ) -> MultilevelIterativeImputer:
        """Run the chains and write the m completed datasets to one long-format file, one at a time.

        The file holds what ``fit_transform_all(X).long()`` holds (mice's ``complete(imp,
        "long")``: ``.imp`` 1..m and ``.id``, the row's position, in front of the data's
        columns; the row labels are not written), but only one completed dataset is in memory
        at a time, so that m datasets of a large input need not fit in memory together. An
        integer column imputed with fractions in any dataset is a float column throughout.

        Parameters
        ----------
        path : str or Path
            The file, created or replaced. Its suffix gives the format: ``.parquet`` or ``.pq``
            (needs pyarrow, the ``parquet`` extra; written in row groups), ``.csv`` or ``.tsv``,
            optionally compressed (``.gz``, ``.bz2``, ``.xz``, ``.zst``).
        X, groups, where, ignore
            As in :meth:`fit`.
        include_original : bool, default=False
            Also write the incomplete data, as ``.imp`` 0 (mice's ``include = TRUE``).
        chunk_rows : int, default=1_000_000
            Largest Parquet row group.

        Column names that are not strings (an array's 0, 1, ...) are written as strings.

        Returns
        -------
        self
        """
        check_long_columns(getattr(X, "columns", ()))
        writer = LongFileWriter(path, chunk_rows)  # a bad name or folder, or no pyarrow, fails before the chains
        original = _pandas_frame(X) if include_original else None
        self._fit_write(X, writer, groups, where, ignore, original)
        return self

    def _fit_write(self, X, writer: LongFileWriter, groups, where, ignore, original=None, prepare=None) -> None:
        """:meth:`fit_write` to an open writer; ``original``: the incomplete data to write first (``.imp``
        0), as a DataFrame; ``prepare``: a function applied to every frame before it is written (the
        command line puts back the identifier columns it left out of the models)."""
        try:
            data = self._fit(X, groups, where, ignore)
        except BaseException:
            writer.__exit__(None, None, None)  # nothing written: its temporary file goes
            raise
        results, plan = self._fitted.results, self._fitted.plan
        prepare = prepare or (lambda frame: frame)
        # integer columns with a fraction in any chain: floats in every dataset, so that the file has one schema
        fractional = {
            self._layout.columns[col]
            for col in plan.incomplete
            if any(np.any(r.values[col] != np.round(r.values[col])) for r in results)
        }
        with writer:
            for chain in range(self.n_imputations):
                completed = prepare(_pandas_frame(self._completed(data, chain, results)))
                fractional &= set(completed.columns)
                if original is not None and chain == 0:  # the incomplete data in the output's columns
                    original = prepare(original)
                    original = original[list(completed.columns)] if original.shape[1] > completed.shape[1] else original
                    writer.write(0, promote_integers(original, fractional))
                writer.write(chain + 1, promote_integers(completed, fractional))

    def transform(self, X: Any, groups: Any = None) -> Any:
        """One completed dataset of X, imputed with chain ``transform_chain``'s final draws.

        Deterministic for a fitted imputer: the same X gives the same output. Rows of
        clusters unseen at fit get cluster effects from the population distribution. A
        missing cell of a cluster-level column (constant within clusters at fit) in a
        cluster seen at fit takes that cluster's value at fit (observed, or imputed by the
        chain).

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Data with the columns seen at fit.
        groups : hashable or array-like of shape (n_samples,), default=None
            Cluster labels (not needed when the cluster column was named at fit).

        Returns
        -------
        DataFrame or ndarray
            The completed data, in the input's container.
        """
        return self._transform_chain(X, groups, self._chain_index())

    def transform_all(self, X: Any, groups: Any = None) -> ImputedDatasets:
        """m completed datasets of X, one per chain (R's ``mice.mids(newdata=)``).

        Parameters
        ----------
        X, groups
            As in :meth:`transform`.

        Returns
        -------
        ImputedDatasets
        """
        return ImputedDatasets(
            (self._transform_chain(X, groups, c) for c in range(self.n_imputations)),
            data=X,
            groups=groups if groups is not None else self._layout.groups_column,
        )

    def get_feature_names_out(self, input_features: ArrayLike | None = None) -> np.ndarray:
        """Output column names (without the cluster column when ``keep_groups=False``).

        Parameters
        ----------
        input_features : array-like of str, default=None
            Names to use instead of those seen at fit.
        """
        check_is_fitted(self, "n_features_in_")
        layout = self._layout
        if hasattr(self, "feature_names_in_"):
            names = np.asarray(layout.columns, dtype=object)
        else:
            names = np.asarray([f"x{j}" for j in range(self.n_features_in_)], dtype=object)
        if input_features is not None:
            input_features = np.asarray(input_features, dtype=object)
            if len(input_features) != len(names):
                raise ValueError("input_features does not match the number of features seen at fit.")
            names = input_features
        if layout.groups_columns and not self.keep_groups:
            names = names[[c not in layout.groups_columns for c in layout.columns]]
        return names

    def plan_summary(self, X: Any, groups: Any = None) -> pd.DataFrame:
        """The model each incomplete column would get, without imputing (R: ``mice(data, maxit = 0)``).

        Validates the parameters and the data as :meth:`fit` does and plans the visits, then stops:
        nothing is fitted or drawn, and the imputer is left unfitted.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
        groups : as for :meth:`fit`

        Returns
        -------
        DataFrame
            One row per visit, in the visit sequence: ``column``, ``kind`` (as the column was
            read), ``model`` (the conditional model, ``repr``), ``n_missing`` (cells to impute),
            ``predictors`` (names, with their role code where it is not 1) and ``clusters`` (how the
            model uses the clusters: ``"random effects"``, ``"fixed effects"``, ``"ignored"`` or
            ``"none"`` without groups); ``compatible`` marks columns imputed through the
            analysis model.
        """
        self._validate_params()
        data, plan = self._plan(X, groups)
        return _plan_table(plan, data.clusters is not None)

    def continue_fit(self, n_iter: int = 1) -> MultilevelIterativeImputer:
        """Run every chain ``n_iter`` more iterations (R's ``mice.mids``).

        The chains continue from their last state and random-number streams, so the
        result is identical to having fitted with ``max_iter + n_iter`` from the start.
        ``chain_mean_``/``chain_var_`` grow along the iteration axis and ``n_iter_`` counts
        the iterations run.

        Parameters
        ----------
        n_iter : int, default=1
            Iterations to add to every chain.

        Returns
        -------
        self
        """
        check_is_fitted(self, "final_draws_")
        if isinstance(n_iter, bool) or not isinstance(n_iter, numbers.Integral) or n_iter < 1:
            raise ValueError(f"n_iter must be a positive integer, got {n_iter!r}.")
        fitted, start = self._fitted, self.n_iter_
        results = self._run_chains(  # copies of the generators and states: a failure leaves the fit as it was
            [
                (fitted.plan, fitted.chain_data(c), copy.deepcopy(r.rng), n_iter, c, start, copy.deepcopy(r.states))
                for c, r in enumerate(fitted.results)
            ]
        )
        self._raise_failures(results)
        for old, new in zip(fitted.results, results, strict=True):
            new.chain_mean = np.vstack([old.chain_mean, new.chain_mean])
            new.chain_var = np.vstack([old.chain_var, new.chain_var])
            new.events = old.events + new.events
            for col, (accepted, proposed) in old.acceptance.items():
                counts = new.acceptance.setdefault(col, [0, 0])
                counts[0] += accepted
                counts[1] += proposed
        n_done = self.n_iter_
        self._store(FittedChains(fitted.plan, fitted.W, results, fitted.entropy, fitted.observed_pool))
        self.n_iter_ = n_done + n_iter
        return self

    # ------------------------------------------------------------------ the algorithm
    def _fit(self, X, groups, where=None, ignore=None) -> WorkingData:
        """Validate, encode, plan, run, store; returns the encoded training data."""
        self._validate_params()
        if self.transform_chain >= self.n_imputations:  # fail before the chains run, not after
            self._chain_index()
        data, plan = self._plan(X, groups, where, ignore)
        if self.verbose >= 1:  # which model each column got, before the chains run (R: mice(data, maxit = 0))
            table = _plan_table(plan, data.clusters is not None)
            if self.analysis_model is None:
                table = table.drop(columns="compatible")
            with pd.option_context("display.width", 160, "display.max_colwidth", 60):
                print(f"models:\n{table.to_string(index=False)}", file=sys.stderr, flush=True)
        for j in dict.fromkeys(t.column for t in plan.targets):
            if not plan.fit_rows[j].any():
                raise ValueError(f"Column {data.columns[j]!r} has no observed, non-ignored values to fit.")
        entropy = self._seed_entropy()
        rngs = chain_generators(entropy, self.n_imputations)
        results = self._run_chains([(plan, data.W, rng, self.max_iter, c, 0, None) for c, rng in enumerate(rngs)])
        pool = {j: data.W[~data.missing[:, j], j] for j in range(data.W.shape[1]) if (~data.missing[:, j]).any()}
        fitted = FittedChains(plan, data.W, results, entropy, pool)
        self._raise_failures(results, data, fitted)
        self.predictor_matrix_ = plan.predictor_matrix
        self.visit_sequence_ = plan.visit_sequence
        self.methods_ = plan.methods
        self._store(fitted)
        self.n_iter_ = self.max_iter
        return data

    def _plan(self, X, groups, where=None, ignore=None):
        """The encoded data and the plan of the visits (the set-up of :meth:`fit` and :meth:`plan_summary`)."""
        data = self._encode_fit(X, groups)
        where = check_where(cell_mask(where), data)
        ignore = check_ignore(ignore, len(data.frame))
        return data, plan_analysis_model(make_plan(data, self._settings(), where, ignore), self.analysis_model, data)

    def _settings(self) -> PlanSettings:
        return PlanSettings(
            methods=self.methods,
            predictor_matrix=self.predictor_matrix,
            visit_sequence=self.visit_sequence,
            cluster_means=self.cluster_means,
            cluster_mean_levels=self.cluster_mean_levels,
            random_slope_levels=self.random_slope_levels,
            derived=self.derived,
            bounds=self.bounds,
            post=self.post,
            analysis_model=self.analysis_model,
        )

    def _encode_fit(self, X, groups) -> WorkingData:
        """The front door at fit: frame, codecs, clusters, working matrix; data the plan cannot use are errors."""
        if isinstance(X, pd.DataFrame):
            X = X.copy(deep=False)  # never touch the caller's object
        frame, source, is_frame = self._read(X, reset=True)
        if groups is None and self.groups_column is not None:
            groups = self.groups_column
        groups = positional_labels(groups, source)
        clusters = None if groups is None else Clusters.from_data(frame, groups, self.cluster_structure)
        self.cluster_labels_ = None if clusters is None else clusters.labels
        groups_column = None if clusters is None else clusters.column
        others = () if clusters is None else tuple(f.column for f in clusters.others if f.column is not None)
        columns = list(frame.columns)
        codecs = detect_codecs(frame, self.column_kinds)
        check_settings(self._settings(), columns, codecs, (groups_column, *others))
        layout = Layout(columns, codecs, groups_column, is_frame, others)
        W, missing = encode(frame, layout)
        codecs = learn_observed_categories(codecs, W, missing, columns, layout.groups_columns)
        self._layout = layout = Layout(columns, codecs, groups_column, is_frame, others)
        derived = set(self.derived or ())  # computed from their inputs: may start empty
        for j, name in enumerate(columns):
            if name not in layout.groups_columns and name not in derived and missing[:, j].all():
                raise ValueError(
                    f"Column {name!r} is entirely missing: nothing to learn its distribution from. "
                    "Drop it, or give it observed values."
                )
        return WorkingData(frame, source, layout, W, missing, clusters)

    def _run_chains(self, chains: list[tuple]) -> list:
        """Run the chains (argument tuples of :func:`~skmlmi._sampler.run_chain`): through joblib, or
        directly in this process when joblib would run them one after the other here anyway, or when
        the work is too small to pay for worker processes (:data:`IN_PROCESS_WORK`, or
        :data:`COLD_START_WORK` while none is running yet). Results are the same either way: each chain
        has its own random stream and one BLAS thread."""
        chains = [args + (self.verbose,) for args in chains]
        backend = get_active_backend()[0]
        loky = type(backend).__name__ == "LokyBackend"
        work = weighted = 0  # rows x visits over the chains; and times each visit's design columns
        for plan, W, _, n_iter, *_ in chains:
            work += W.shape[0] * len(plan.targets) * n_iter
            weighted += W.shape[0] * n_iter * sum(len(t.predictors) + 1 for t in plan.targets)
        progress = Progress(sum(args[3] for args in chains), enabled=self.verbose >= 1)
        try:
            cold = loky and not _workers_running() and weighted < COLD_START_WORK
            if loky and (effective_n_jobs(self.n_jobs) == 1 or work < IN_PROCESS_WORK or cold):
                return [run_chain(*args, progress=progress.update) for args in chains]
            # results in order, each as soon as it and those before it are done (a backend that cannot
            # hand them over one by one, as multiprocessing, gives them all at the end)
            as_done = "generator" if getattr(backend, "supports_return_generator", False) else "list"
            results = []
            with _one_blas_thread():  # taken here, it also covers chains run in threads of this process
                finished = Parallel(n_jobs=self.n_jobs, verbose=max(self.verbose - 1, 0), return_as=as_done)(
                    delayed(run_chain)(*args) for args in chains
                )
                for args, result in zip(chains, finished, strict=True):
                    progress.update(args[3])
                    results.append(result)
            return results
        finally:
            progress.close()

    def _raise_failures(self, results, data: WorkingData | None = None, fitted: FittedChains | None = None) -> None:
        """Re-raise the first failed chain's exception with where it happened; keep what finished.

        The exception has the original's type, with the chain, iteration, column and model
        leading its message and the original as ``__cause__``. It carries
        ``failed_chains`` (chain numbers from 1), ``finished_chains`` and, after ``fit``,
        ``completed``: the finished chains' completed datasets (an :class:`ImputedDatasets`),
        so that a long run is not lost to one chain.
        """
        failures = [r for r in results if isinstance(r, ChainFailure)]
        if not failures:
            return
        first = failures[0]
        first.error.add_note(f"traceback in the chain:\n{first.traceback}")
        finished = [c for c, r in enumerate(results) if not isinstance(r, ChainFailure)]
        error = in_context(first.error, first.where)
        if len(failures) > 1:
            others = "; ".join(f.where for f in failures[1:])
            error.add_note(f"{len(failures) - 1} more chain(s) failed too: {others}")
        error.failed_chains = [f.chain + 1 for f in failures]
        error.finished_chains = [c + 1 for c in finished]
        if data is not None:
            error.completed = ImputedDatasets(self._completed(data, c, results, fitted.plan) for c in finished)
        raise error

    def _store(self, fitted: FittedChains) -> None:
        """The fitted state and attributes (mice's ``chainMean``, ``chainVar``, ``imp``, ``loggedEvents``)."""
        plan, results, columns = fitted.plan, fitted.results, self._layout.columns
        self._fitted = fitted
        self.incomplete_columns_ = [columns[j] for j in plan.incomplete]
        self.chain_mean_ = np.stack([r.chain_mean for r in results])
        self.chain_var_ = np.stack([r.chain_var for r in results])
        self.imputations_ = {
            columns[col]: np.column_stack([r.values[col] for r in results])
            if plan.impute_rows[col].size
            else np.empty((0, len(results)))
            for col in plan.incomplete
        }
        self.final_draws_ = [r.draws for r in results]
        rows = [(0, 0, column, reason) for column, reason in plan.events]  # decided before the chains ran
        rows += [ev for r in results for ev in r.events]
        self.logged_events_ = _counted_events(rows)
        _warn_events(rows)
        accepted = sorted({col for r in results for col in r.acceptance})
        self.acceptance_rates_ = pd.DataFrame(
            {
                f"chain {c + 1}": [
                    r.acceptance[col][0] / r.acceptance[col][1] if col in r.acceptance else np.nan for col in accepted
                ]
                for c, r in enumerate(results)
            },
            index=pd.Index([columns[col] for col in accepted], name="variable"),
        )

    # ------------------------------------------------------------------ helpers
    def _chain_index(self) -> int:
        if self.transform_chain >= self.n_imputations:
            raise ValueError(f"transform_chain={self.transform_chain} but there are only {self.n_imputations} chains.")
        return self.transform_chain

    def _seed_entropy(self) -> int:
        if self.random_state is None:
            return np.random.SeedSequence().entropy
        if isinstance(self.random_state, numbers.Integral):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(0, 2**31 - 1))

    def _read(self, X, reset: bool):
        """X as pandas at the front door (:func:`~skmlmi._frontdoor.read_frame`), with scikit-learn's
        checks of feature names and counts; new data are put in the columns' order seen at fit."""
        converted, frame, source, is_frame = read_frame(X)
        _check_feature_names(self, converted, reset=reset)
        _check_n_features(self, frame, reset=reset)
        if not reset:
            frame = self._layout.align(frame, is_frame)
        return frame, source, is_frame

    def _completed(self, data: WorkingData, chain: int, results, plan=None):
        """Chain ``chain``'s completed training data in the input's format."""
        plan = self._fitted.plan if plan is None else plan
        W = data.W.copy(order="F")
        written = np.zeros(W.shape, dtype=bool)
        for col in plan.incomplete:
            W[plan.impute_rows[col], col] = results[chain].values[col]
            written[plan.impute_rows[col], col] = True
        return write_output(
            W, data.frame, data.source, self._layout, self.keep_groups, self, changed=plan.incomplete, written=written
        )

    def _transform_chain(self, X, groups, chain: int):
        """The front door for new data, :func:`~skmlmi._sampler.impute_new_data`, and back out."""
        check_is_fitted(self, "final_draws_")
        layout = self._layout
        frame, source, _ = self._read(X, reset=False)
        groups = positional_labels(groups, source)
        if groups is None:
            fitted = self._fitted.plan.clusters
            several = fitted is not None and fitted.n_factors > 1
            if several and len(layout.groups_columns) == fitted.n_factors:
                groups = list(layout.groups_columns)
            elif not several:
                groups = layout.groups_column
        if groups is None:
            clusters = None
            if self.cluster_labels_ is not None:
                raise ValueError("The imputer was fitted with groups; pass groups to transform as well.")
        elif self._fitted.plan.clusters is None:
            raise ValueError("The imputer was fitted without groups; transform takes none either.")
        else:
            clusters = self._fitted.plan.clusters.recode(frame, groups)
        W, missing = encode(frame, layout)
        if not missing.any():
            return write_output(W, frame, source, layout, self.keep_groups, self)
        W, written = impute_new_data(self._fitted, W, missing, clusters, chain, self.transform_iter)
        changed = np.flatnonzero(written.any(axis=0)).tolist()
        return write_output(W, frame, source, layout, self.keep_groups, self, changed=changed, written=written)


def _counted_events(rows: list) -> pd.DataFrame:
    """One row per distinct event (column and reason), in the order they first happened, with the first
    iteration and chain it happened in, how often (``count``) and in how many chains (``chains``).

    The same event repeats in every chain and often every iteration (a predictor dropped as collinear
    at each visit): m x max_iter rows that say one thing."""
    events = pd.DataFrame(rows, columns=["iteration", "chain", "column", "reason"])
    if events.empty:
        return events.assign(count=pd.Series(dtype=int), chains=pd.Series(dtype=int))
    key = events["column"].map(repr) + "\x00" + events["reason"].astype(str)  # names of any type (tuples too)
    grouped = events.groupby(key, sort=False)
    counted = grouped.agg(iteration=("iteration", "min"), chain=("chain", "min"))
    counted["column"] = grouped["column"].first()
    counted["reason"] = grouped["reason"].first()
    counted["count"] = grouped.size()
    counted["chains"] = grouped["chain"].nunique()
    return counted.reset_index(drop=True)[["iteration", "chain", "column", "reason", "count", "chains"]]


def _warn_events(rows: list) -> None:
    """Each distinct logged event once as a warning; wide data's thousands summarised in one."""
    distinct = list(dict.fromkeys((ev[2], ev[3]) for ev in rows))
    for column, reason in distinct[:_MAX_EVENT_WARNINGS]:
        warn_user(f"{with_column(column, reason)} (see logged_events_)")
    if len(distinct) > _MAX_EVENT_WARNINGS:
        columns = len({column for column, _ in distinct[_MAX_EVENT_WARNINGS:]})
        warn_user(f"{len(distinct) - _MAX_EVENT_WARNINGS} more events for {columns} column(s) (see logged_events_)")


def _pandas_frame(data: Any) -> pd.DataFrame:
    """A dataset (pandas, polars, pyarrow or an array) as a pandas DataFrame, for the long-format file."""
    frame, _ = to_pandas(data)
    return frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(frame)
