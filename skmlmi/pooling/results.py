"""One object for pooled results: the tidy table, what produced it, and what can be asked of it.

:class:`PooledResults` is to pooling what a statsmodels results object is to a fit: the
pooled table (:func:`~skmlmi.pooling.pool`'s DataFrame) as ``.table``; the facts about how
it was pooled (m, the df method, dfcom, alpha, the analysis model) as plain attributes, not
in ``DataFrame.attrs`` (which pandas drops); Rubin's components, pooled variance components
and the ICC; ``summary()``, ``conf_int()`` and multiparameter tests (``test()``).

This room only assembles what :mod:`~skmlmi.pooling.rubin` and
:mod:`~skmlmi.pooling.model_tests` compute; it knows nothing about imputers or data.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from .model_tests import test_models
from .rubin import (
    SUMMARY_COLUMNS,
    RubinComponents,
    _as_dfcom,
    _check_arrays,
    _pool_parts,
    d1,
    d2,
    pool_variance_components,
)

__all__ = ["PooledResults", "PooledSummary", "pool_results"]

# The columns summary() prints; ubar, b and t are in PooledResults.variances.
_SUMMARY_COLUMNS = SUMMARY_COLUMNS[: SUMMARY_COLUMNS.index("fmi") + 1]


def _df_method(m: int, dfcom: float | None, has_variances: bool) -> str:
    if not has_variances:
        return "none (point estimates only)"
    if m == 1:
        return "complete data (m = 1)"
    if dfcom is None or math.isinf(dfcom):
        return "Rubin (large sample)"
    return "Barnard-Rubin"


class PooledSummary:
    """The printed summary of a :class:`PooledResults` (statsmodels' ``Summary`` style).

    ``str()`` (or :meth:`as_text`) gives the text, notebooks render :meth:`as_html`.

    Parameters
    ----------
    tables : list of DataFrame
        The header (one row per fact: model, formula, m, df method, dfcom, confidence
        level), the pooled table, and the pooled variance components when there are any.
    title : str
        The first line.
    extra_txt : str
        What the table lacks or leaves out (the results' ``note``), printed at the end.
    """

    def __init__(self, tables: list[pd.DataFrame], title: str, extra_txt: str = ""):
        self.tables = tables
        self.title = title
        self.extra_txt = extra_txt

    def _blocks(self) -> list[str]:
        header, table, *rest = self.tables
        facts = [f"{key + ':':<18}{value}" for key, value in header["value"].items()]
        half = (len(facts) + 1) // 2
        left, right = facts[:half], facts[half:] + [""] * (2 * half - len(facts))
        width = max(len(f) for f in left) + 4
        blocks = ["\n".join(f"{a:<{width}}{b}".rstrip() for a, b in zip(left, right, strict=True))]
        formatters = {c: (lambda v: f"{v:.1f}") if c == "df" else (lambda v: f"{v:.4f}") for c in table.columns}
        blocks.append(table.to_string(formatters=formatters))
        if rest:
            blocks.append(
                "Variance components (mean over imputations)\n" + rest[0].to_string(float_format="{:.4f}".format)
            )
        return blocks

    def as_text(self) -> str:
        """The summary as plain text."""
        blocks = self._blocks()
        width = max(len(line) for block in blocks for line in block.splitlines())
        width = max(width, len(self.title))
        lines = [self.title.center(width).rstrip(), "=" * width]
        for i, block in enumerate(blocks):
            if i:
                lines.append("-" * width)
            lines.append(block)
        lines.append("=" * width)
        if self.extra_txt:
            lines.append(f"Note: {self.extra_txt}")
        return "\n".join(lines)

    def as_html(self) -> str:
        """The summary as an HTML fragment (header, tables, note)."""
        header, table, *rest = self.tables
        parts = [
            f"<h4>{html.escape(self.title)}</h4>",
            header.to_html(header=False),
            table.to_html(float_format="{:.4f}".format),
        ]
        if rest:
            parts.append("<p>Variance components (mean over imputations)</p>")
            parts.append(rest[0].to_html(float_format="{:.4f}".format))
        if self.extra_txt:
            parts.append(f"<p>Note: {html.escape(self.extra_txt)}</p>")
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.as_text()

    def __repr__(self) -> str:
        return self.as_text()

    def _repr_html_(self) -> str:
        return self.as_html()


class PooledResults:
    """Results of pooling m analyses of multiply imputed data with Rubin's rules.

    Made by :func:`pool_results` (from arrays) and by :class:`~skmlmi.MIPooler`
    (``results_``, from the m fitted analysis models); not usually built by hand.

    Parameters
    ----------
    table : DataFrame
        The pooled table indexed by term (:func:`~skmlmi.pooling.pool`'s output), or, when
        the analysis model gave no covariances, the point estimates (``estimate``,
        ``between_sd``).
    m : int
        Number of imputations.
    dfcom : float or None, default=None
        Complete-data degrees of freedom used (``inf`` for a large sample; None when no
        covariances were pooled).
    alpha : float, default=0.05
        1 - confidence level of the table's intervals.
    components : RubinComponents, default=None
        Qbar, Ubar, B and T (full k x k matrices); None without covariances.
    estimates : DataFrame of shape (m, k), default=None
        The per-imputation estimates (columns are the terms).
    covariances : ndarray of shape (m, k, k), default=None
        The per-imputation covariance matrices.
    variance_components : Series, default=None
        Pooled variance components and ICC (:func:`~skmlmi.pooling.pool_variance_components`).
    model : str, default=None
        Name of the analysis model.
    formula : str, default=None
        Its formula, when it has one.
    note : str, default=""
        What the table lacks or leaves out.
    fits : list, default=None
        The m fitted analysis models (needed by likelihood-based tests).

    Attributes
    ----------
    table : DataFrame
        Indexed by term: estimate, std_error, statistic, df, p_value, conf_low, conf_high,
        riv, lambda, fmi, ubar, b, t.
    m : int
        Number of imputations.
    df_method : str
        How the df were computed: ``"Barnard-Rubin"`` (finite dfcom), ``"Rubin (large
        sample)"`` ((m - 1) / lambda^2), ``"complete data (m = 1)"`` or ``"none (point
        estimates only)"``.
    dfcom : float or None
        Complete-data df (``inf`` = large sample).
    alpha : float
        1 - confidence level of ``table``'s intervals.
    components : RubinComponents or None
        Qbar, Ubar, B and T as full matrices (what the multiparameter tests use).
    estimates : DataFrame or None
        The (m, k) per-imputation estimates.
    covariances : ndarray or None
        The (m, k, k) per-imputation covariances.
    variance_components : Series
        Pooled variance components and ICCs (empty when the model has none).
    model, formula : str or None
        The analysis model's name and formula.
    note : str
        What the table lacks or leaves out ("" when nothing).
    fits : list or None
        The fitted analysis models, when the results come from them.

    See Also
    --------
    pool_results : Pool arrays into a PooledResults.
    skmlmi.MIPooler : Holds one as ``results_``.

    Examples
    --------
    >>> q = [[1.00, 0.5], [1.20, 0.4], [0.90, 0.6], [1.10, 0.55], [1.05, 0.45]]
    >>> u = [[0.040, 0.01], [0.050, 0.012], [0.045, 0.011], [0.050, 0.01], [0.042, 0.012]]
    >>> res = pool_results(q, u, dfcom=97, names=["x", "z"])
    >>> res
    <PooledResults: 2 terms, m = 5, Barnard-Rubin df (dfcom = 97)>
    >>> res.params.round(3).tolist()
    [1.05, 0.5]
    >>> res.conf_int(alpha=0.1).round(3).loc["x"].tolist()
    [0.634, 1.466]
    >>> res.test(["x", "z"]).round(3).loc["D1", ["F", "df1"]].tolist()
    [15.607, 2.0]
    """

    def __init__(
        self,
        table: pd.DataFrame,
        *,
        m: int,
        dfcom: float | None = None,
        alpha: float = 0.05,
        components: RubinComponents | None = None,
        estimates: pd.DataFrame | None = None,
        covariances: np.ndarray | None = None,
        variance_components: pd.Series | None = None,
        model: str | None = None,
        formula: str | None = None,
        note: str = "",
        fits: list | None = None,
    ):
        self.table = table
        self.m = int(m)
        self.dfcom = None if dfcom is None else float(dfcom)
        self.alpha = float(alpha)
        self.components = components
        self.estimates = estimates
        self.covariances = covariances
        self.variance_components = (
            pd.Series(dtype=float, name="estimate") if variance_components is None else variance_components
        )
        self.model = model
        self.formula = formula
        self.note = note
        self.fits = fits
        self.df_method = _df_method(self.m, self.dfcom, covariances is not None)

    # ------------------------------------------------------------------ accessors
    @property
    def terms(self) -> list:
        """The pooled parameters' names."""
        return list(self.table.index)

    @property
    def conf_level(self) -> float:
        """Confidence level of ``table``'s intervals, 1 - alpha."""
        return 1.0 - self.alpha

    def _require_variances(self, what: str) -> None:
        if self.covariances is None:
            raise ValueError(f"{what} needs standard errors, and these results have none: {self.note}")

    @property
    def params(self) -> pd.Series:
        """Pooled estimates (Qbar), indexed by term."""
        return self.table["estimate"]

    @property
    def bse(self) -> pd.Series:
        """Pooled standard errors, sqrt(T), indexed by term."""
        self._require_variances("bse")
        return self.table["std_error"]

    @property
    def tvalues(self) -> pd.Series:
        """Qbar / sqrt(T), indexed by term."""
        self._require_variances("tvalues")
        return self.table["statistic"]

    @property
    def pvalues(self) -> pd.Series:
        """Two-sided p-values on the pooled df, indexed by term."""
        self._require_variances("pvalues")
        return self.table["p_value"]

    @property
    def variances(self) -> pd.DataFrame:
        """Rubin's variances per term: within (Ubar), between (B) and total (T)."""
        self._require_variances("variances")
        return self.table[["ubar", "b", "t"]].set_axis(["within", "between", "total"], axis=1)

    @property
    def icc(self) -> pd.Series:
        """The pooled intraclass correlations (entries of ``variance_components`` named ``ICC...``)."""
        vc = self.variance_components
        return vc[[str(name).startswith("ICC") for name in vc.index]]

    def conf_int(self, alpha: float | None = None) -> pd.DataFrame:
        """Confidence intervals Qbar -/+ t_{df, 1 - alpha/2} sqrt(T) on each term's pooled df.

        Parameters
        ----------
        alpha : float, default=None
            1 - confidence level; None uses the results' ``alpha`` (the table's intervals).

        Returns
        -------
        DataFrame
            Columns conf_low, conf_high, indexed by term.
        """
        self._require_variances("conf_int")
        alpha = self.alpha if alpha is None else alpha
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
        table = self.table
        # as pool(): df floored at 0.001, as mice's summary.mipo
        crit = stats.t.ppf(1.0 - alpha / 2.0, np.maximum(table["df"].to_numpy(), 1e-3))
        half = crit * table["std_error"].to_numpy()
        return pd.DataFrame(
            {"conf_low": table["estimate"] - half, "conf_high": table["estimate"] + half}, index=table.index
        )

    # ------------------------------------------------------------------ tests
    def test(
        self,
        terms: Sequence[str] | None = None,
        method: str = "D1",
        *,
        null: ArrayLike | None = None,
        null_fits: Sequence | None = None,
        use: str = "wald",
        ariv: str = "default",
    ) -> pd.DataFrame:
        """Multiparameter test: do the terms equal ``null`` (D1, D2), or does a nested model fit as well (D2, D3)?

        Without ``null_fits``, D1 (:func:`~skmlmi.pooling.d1`, with the results' dfcom, so
        Reiter's small-sample df when it is finite) and D2 on Wald statistics
        (:func:`~skmlmi.pooling.d2`) test ``terms`` from the stored estimates and
        covariances. With ``null_fits`` (the nested model fitted on the same completed
        datasets) the fitted models are compared by :func:`~skmlmi.pooling.test_models`,
        which also offers D2 on likelihood ratios (``use="likelihood"``) and D3.

        Parameters
        ----------
        terms : sequence of str, default=None
            Terms tested (default: every term, intercept included). Not used with
            ``null_fits``, where the tested terms are those the null model lacks.
        method : {"D1", "D2", "D3"}, default="D1"
            The test.
        null : array-like of shape (len(terms),), default=None
            Hypothesised values (default zeros); not used with ``null_fits``.
        null_fits : list of fitted analysis models, default=None
            The nested model on each completed dataset, in the order of ``fits``.
        use : {"wald", "likelihood"}, default="wald"
            Statistic of D2.
        ariv : {"default", "positive"}, default="default"
            "positive" truncates the relative increase in variance at 0 (D2, D3).

        Returns
        -------
        DataFrame
            One row named after the method: F, df1, df2, p_value, riv.

        Raises
        ------
        ValueError
            When the results have no covariances, when D3 or D2 on likelihoods is asked
            without ``null_fits``, or when ``null_fits`` is given to results pooled from
            arrays (no fitted models to compare).
        """
        if method not in ("D1", "D2", "D3"):
            raise ValueError(f"method must be 'D1', 'D2' or 'D3', got {method!r}")
        if use not in ("wald", "likelihood"):
            raise ValueError(f"use must be 'wald' or 'likelihood', got {use!r}")
        if null_fits is not None:
            if self.fits is None:
                raise ValueError(
                    "null_fits needs the fitted analysis models, and these results were pooled from arrays: "
                    "call skmlmi.pooling.test_models(fits, null_fits) or d3_from_deviances yourself"
                )
            if terms is not None or null is not None:
                raise ValueError(
                    "with null_fits the tested terms are those the null model lacks: leave terms and null out"
                )
            dfcom = self.dfcom if method == "D1" else None
            return test_models(self.fits, null_fits, method=method, use=use, dfcom=dfcom, ariv=ariv)
        if method == "D3" or use == "likelihood":
            what = "D3" if method == "D3" else "D2 on likelihood ratios"
            raise ValueError(
                f"{what} compares the likelihoods of two nested models: pass null_fits, the nested model fitted on "
                "the same completed datasets (for example MIPooler(...).fit(...).estimators_ with the same imputer)"
            )
        self._require_variances(f"{method} (a Wald test)")
        chosen = self.terms if terms is None else list([terms] if isinstance(terms, str) else terms)
        missing = [t for t in chosen if t not in self.table.index]
        if missing or not chosen:
            raise ValueError(f"terms {missing or chosen} are not among the pooled terms {self.terms}")
        positions = [self.terms.index(t) for t in chosen]
        q = self.estimates.to_numpy(dtype=float)[:, positions]
        u = self.covariances[:, positions][:, :, positions]
        table = d1(q, u, dfcom=self.dfcom, null=null) if method == "D1" else d2(q, u, null=null, ariv=ariv)
        table.attrs.update({"terms": chosen})
        return table

    # ------------------------------------------------------------------ printing
    def summary(self) -> PooledSummary:
        """The header (model, formula, m, df method, dfcom, confidence level), the table, the variance components.

        Returns
        -------
        PooledSummary
            Prints as text; notebooks render it as HTML; ``.tables`` holds the DataFrames.
        """
        facts = {"Model": self.model or "(not given)"}
        if self.formula:
            facts["Formula"] = self.formula
        facts["Imputations (m)"] = str(self.m)
        facts["Terms"] = str(len(self.table))
        facts["df method"] = self.df_method
        if self.dfcom is not None:
            facts["dfcom"] = "inf (large sample)" if math.isinf(self.dfcom) else f"{self.dfcom:g}"
        if self.covariances is not None:
            facts["Confidence level"] = (
                f"{self.conf_level:.0%}" if round(self.conf_level, 2) == self.conf_level else f"{self.conf_level:g}"
            )
        header = pd.DataFrame({"value": facts})
        columns = [c for c in _SUMMARY_COLUMNS if c in self.table.columns] or list(self.table.columns)
        tables = [header, self.table[columns]]
        if len(self.variance_components):
            tables.append(self.variance_components.to_frame())
        return PooledSummary(tables, "Multiple imputation: pooled results", self.note)

    def __repr__(self) -> str:
        model = (
            f"{self.model} {self.formula!r}, "
            if self.model and self.formula
            else (f"{self.model}, " if self.model else "")
        )
        df = self.df_method
        if self.df_method == "Barnard-Rubin":
            df = f"Barnard-Rubin df (dfcom = {self.dfcom:g})"
        elif self.covariances is not None and self.m > 1:
            df = f"{df} df"
        return f"<PooledResults: {model}{len(self.table)} terms, m = {self.m}, {df}>"


def pool_results(
    estimates: ArrayLike,
    covariances: ArrayLike | None,
    dfcom: float | None = None,
    names: Sequence[str] | None = None,
    alpha: float = 0.05,
    *,
    variance_components: pd.Series | None = None,
    model: str | None = None,
    formula: str | None = None,
) -> PooledResults:
    """Pool m sets of estimates with Rubin's rules into a :class:`PooledResults`.

    The same pooling as :func:`~skmlmi.pooling.pool` (whose DataFrame is the result's
    ``.table``), kept with its inputs, so the result can also give Rubin's full matrices,
    other confidence levels and multiparameter tests.

    Parameters
    ----------
    estimates : array-like of shape (m, k)
        Estimates of k parameters on each of m completed datasets (a DataFrame supplies
        the names; a list of Series is aligned on their names).
    covariances : array-like of shape (m, k, k) or (m, k)
        Their covariance matrices (or only the variances).
    dfcom : float or None, default=None
        Complete-data residual df; None or ``inf`` means a large sample.
    names : sequence of str, default=None
        Parameter names; default from a DataFrame's columns, else ``x0 .. x{k-1}``.
    alpha : float, default=0.05
        1 - confidence level of the table's intervals.
    variance_components : sequence of Series, default=None
        The m analyses' variance components (and ICCs), pooled by
        :func:`~skmlmi.pooling.pool_variance_components`.
    model : str, default=None
        Name of the analysis model, for the summary.
    formula : str, default=None
        Its formula, for the summary.

    Returns
    -------
    PooledResults

    Examples
    --------
    >>> q = [[1.00], [1.20], [0.90], [1.10], [1.05]]
    >>> u = [0.040, 0.050, 0.045, 0.050, 0.042]
    >>> res = pool_results(q, u, dfcom=97, names=["x"])
    >>> res.m, res.df_method, res.dfcom
    (5, 'Barnard-Rubin', 97.0)
    >>> res.table.loc["x", ["estimate", "df"]].round(5).tolist()
    [1.05, 33.99734]
    """
    table, comp, aligned = _pool_parts(estimates, covariances, dfcom, names, alpha, stacklevel=3)
    q, u = _check_arrays(aligned, covariances)
    pooled_vc = pool_variance_components(variance_components) if variance_components is not None else None
    return PooledResults(
        table,
        m=comp.m,
        dfcom=_as_dfcom(dfcom),
        alpha=alpha,
        components=comp,
        estimates=pd.DataFrame(q, columns=table.index),
        covariances=u,
        variance_components=pooled_vc,
        model=model,
        formula=formula,
    )
