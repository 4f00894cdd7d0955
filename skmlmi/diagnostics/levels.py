"""ICC per level with several grouping factors (nested or crossed), from each variable's variance components.

With one factor :func:`~skmlmi.diagnostics.icc` (the one-way ANOVA ICC) is the ICC. With
several, a one-way ICC by an inner factor also holds the outer factor's variance (classes
differ partly because their schools do), so the ICC of each level comes from a mixed model
with a random intercept per factor, as lme4 users compute it (``lmer(v ~ 1 + (1 | school/class))``
and mitml's ``ICC|...``): REML variance components sigma^2_k of each factor and sigma^2 of
the residual, and

    ICC_k = sigma^2_k / (sum_l sigma^2_l + sigma^2).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd

from .._clusters import Clusters
from ..predictors import _numeric_codes
from .plots import _as_frame, _icc_columns


def icc_by_level(
    data: pd.DataFrame,
    groups: Sequence[Hashable] | pd.DataFrame | np.ndarray,
    cluster_structure: str = "auto",
    columns: Sequence[Hashable] | None = None,
) -> pd.DataFrame:
    """ICC of each variable at each level of several grouping factors, on its observed values.

    Each variable's observed values are fitted by
    :class:`~skmlmi.analysis.LinearMixedModel` with an intercept and a random intercept per
    grouping factor (REML); the ICC of a factor is its variance over the total variance
    (the factors' and the residual's). Nested factors use their combined units (class within
    school, as lme4's ``school/class``). Binary variables are taken as 0/1 (the linear ICC,
    not the latent-scale one), ordered categoricals as their codes 0..K-1; unordered
    categoricals with more than two levels are skipped (an error if named in ``columns``).

    Parameters
    ----------
    data : DataFrame
        The incomplete data.
    groups : list of column names, DataFrame or 2-D array
        The grouping factors, outer to inner (as ``MultilevelIterativeImputer``'s ``groups``).
        One factor gives the one-column table of the same mixed model.
    cluster_structure : {"auto", "nested", "crossed"}, default="auto"
        As ``MultilevelIterativeImputer``: "nested" combines inner labels with the outer ones
        (classes a, b, c repeated in every school).
    columns : sequence of names, default=None
        Variables (default every column but the grouping columns).

    Returns
    -------
    DataFrame
        One row per variable, one column ``ICC|<factor>`` per factor (named as in the mixed
        model's variance components: ``class:school`` for a nested inner factor). NaN where
        the model cannot be fitted (fewer than 2 units of a factor observe the variable, or
        it is constant), with the reason in ``attrs["failures"]``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> school = np.repeat(np.arange(30), 20); klass = np.repeat(np.arange(150), 4)
    >>> y = rng.normal(0, 0.5, 30)[school] + rng.normal(0, 0.5, 150)[klass] + rng.normal(size=600)
    >>> table = icc_by_level(pd.DataFrame({"school": school, "class": klass, "y": y}), ["school", "class"])
    >>> list(table.columns)
    ['ICC|school', 'ICC|class:school']
    """
    from ..analysis import LinearMixedModel

    frame = _as_frame(data)
    clusters = Clusters.from_data(frame, groups, cluster_structure)
    names = [str(c) for c in clusters.columns] if clusters.columns else [f"g{k}" for k in range(clusters.n_factors)]
    grouping = set(clusters.columns or ())
    keep = _icc_columns(frame.drop(columns=list(grouping)), columns, None)
    numeric = _numeric_codes(frame[keep])
    # safe names in the formula (the user's column names may be anything); labels: lme4's, for nested factors
    slots = [f"g{k}" for k in range(clusters.n_factors)]
    nested = clusters.structure == "nested"
    labels = [":".join(reversed(names[: k + 1])) if nested and k else names[k] for k in range(clusters.n_factors)]
    formula = "v ~ 1 + " + " + ".join(f"(1 | {slot})" for slot in slots)
    table, failures = {}, {}
    for name in keep:
        values = numeric[name].to_numpy(dtype=float)
        seen = ~np.isnan(values)
        fit_frame = pd.DataFrame(
            {"v": values[seen], **{s: f.codes[seen] for s, f in zip(slots, clusters.factors, strict=True)}}
        )
        try:
            if fit_frame["v"].nunique() < 2:
                raise ValueError("it is constant on its observed rows")
            components = LinearMixedModel(formula).fit(fit_frame).variance_components_
            table[name] = [float(components[f"ICC|{slot}"]) for slot in slots]
        except (ValueError, np.linalg.LinAlgError) as error:
            table[name] = [np.nan] * len(slots)
            failures[name] = str(error)
    out = pd.DataFrame.from_dict(table, orient="index", columns=[f"ICC|{label}" for label in labels], dtype=float)
    out.attrs["failures"] = failures
    return out
