"""Role codes, the predictor matrix and the default conditional model of each column.

The predictor matrix has one row per target variable and one column per variable;
entries are mice's role codes (see :data:`skmlmi.conditional.ROLE_NAMES`). Only rows of
incomplete variables matter. The cluster column, when the clusters are a column of the
data, is coded ``-2`` (cluster identifier of a multilevel model), ``1`` (cluster fixed
effects for a single-level model) or ``0`` (ignored).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .conditional.base import ROLE_NAMES

__all__ = ["make_predictor_matrix", "validate_predictor_matrix", "default_method"]

VALID_ROLES = frozenset(ROLE_NAMES)
#: Codes the cluster column may take in a row of the predictor matrix.
CLUSTER_ROLES = frozenset({0, 1, -2})


def make_predictor_matrix(columns: Sequence, groups_column=None) -> pd.DataFrame:
    """Default predictor matrix: every other column a fixed predictor (1), the cluster -2.

    Parameters
    ----------
    columns : sequence
        Variable names (the cluster column included when it is one of them).
    groups_column : hashable, optional
        Name of the cluster column.

    Examples
    --------
    >>> make_predictor_matrix(["school", "popular", "sex"], groups_column="school")
             school  popular  sex
    school        0        0    0
    popular      -2        0    1
    sex          -2        1    0
    """
    columns = list(columns)
    matrix = pd.DataFrame(1 - np.eye(len(columns), dtype=int), index=columns, columns=columns)
    if groups_column is not None:
        matrix[groups_column] = -2
        matrix.loc[groups_column, :] = 0
    return matrix


def validate_predictor_matrix(predictor_matrix, columns: Sequence, groups_column=None) -> pd.DataFrame:
    """Check a user's predictor matrix and complete it to the full square form.

    Rows and columns not given default to the :func:`make_predictor_matrix` entries, so
    a user may pass only the rows of the variables they want to change. An array must be
    square with one row and column per variable. Unknown names, unknown codes, a
    variable predicting itself and a cluster column coded other than 0, 1 or -2 are
    ``ValueError`` naming the entry.
    """
    columns = list(columns)
    full = make_predictor_matrix(columns, groups_column)
    if predictor_matrix is None:
        return full
    if isinstance(predictor_matrix, dict):
        predictor_matrix = pd.DataFrame(predictor_matrix)
    if isinstance(predictor_matrix, pd.DataFrame):
        given = predictor_matrix.fillna(full.loc[predictor_matrix.index.intersection(full.index),
                                                 predictor_matrix.columns.intersection(full.columns)])
    else:
        array = np.asarray(predictor_matrix)
        if array.shape != (len(columns), len(columns)):
            raise ValueError(
                f"predictor_matrix has shape {array.shape}; expected ({len(columns)}, {len(columns)}), "
                "one row and one column per variable in the order of X."
            )
        given = pd.DataFrame(array, index=columns, columns=columns)
    unknown = [c for c in list(given.index) + list(given.columns) if c not in full.columns]
    if unknown:
        raise ValueError(f"predictor_matrix names unknown columns: {sorted(map(str, set(unknown)))}.")
    values = given.to_numpy()
    try:
        numeric = values.astype(float)
    except (TypeError, ValueError) as exc:
        raise ValueError("predictor_matrix must hold integer role codes.") from exc
    if np.isnan(numeric).any() or not np.all(numeric == np.round(numeric)):
        raise ValueError("predictor_matrix must hold integer role codes (no NaN or fractions).")
    bad = ~np.isin(numeric.astype(int), sorted(VALID_ROLES))
    if bad.any():
        r, c = map(int, np.argwhere(bad)[0])
        raise ValueError(
            f"predictor_matrix[{given.index[r]!r}, {given.columns[c]!r}] = {int(numeric[r, c])} is not a "
            f"role code; valid codes: {', '.join(f'{k} ({v})' for k, v in ROLE_NAMES.items())}."
        )
    full.loc[given.index, given.columns] = numeric.astype(int)
    for name in full.index:
        if full.loc[name, name] != 0:
            raise ValueError(f"predictor_matrix[{name!r}, {name!r}] must be 0: a variable cannot predict itself.")
        if groups_column is not None and full.loc[name, groups_column] not in CLUSTER_ROLES:
            raise ValueError(
                f"predictor_matrix[{name!r}, {groups_column!r}] = {full.loc[name, groups_column]}: the cluster "
                "column may only be -2 (cluster identifier), 1 (cluster fixed effects) or 0 (not used)."
            )
        if groups_column is not None and name != groups_column:
            others = full.loc[name].drop(groups_column)
            if (others == -2).any():
                raise ValueError(
                    f"predictor_matrix row {name!r} codes {list(others.index[others == -2])} as -2, but "
                    f"only the cluster column {groups_column!r} can be the cluster identifier."
                )
    if groups_column is None and (full.to_numpy() == -2).any():
        r, c = map(int, np.argwhere(full.to_numpy() == -2)[0])
        raise ValueError(
            f"predictor_matrix[{full.index[r]!r}, {full.columns[c]!r}] = -2 but no groups were given; "
            "pass groups= to fit."
        )
    return full


def default_method(kind: str, multilevel: bool, cluster_level: bool = False):
    """Default conditional model for a column of the given kind.

    Without clusters these are mice's defaults (pmm, logreg, polyreg). With clusters
    (``multilevel``) they are the random-effects models where they exist: continuous and
    integer -> :class:`~skmlmi.conditional.RandomEffectsPMM`, binary ->
    :class:`~skmlmi.conditional.RandomEffectsLogistic`, categorical ->
    :class:`~skmlmi.conditional.RandomEffectsCategorical`, and a variable constant within
    every cluster -> :class:`~skmlmi.conditional.ClusterLevelPMM`.
    """
    from . import conditional as c

    def first(*names):
        for name in names:
            if hasattr(c, name):
                return getattr(c, name)()
        raise ValueError(f"no conditional model available for a {kind} target")

    if multilevel:
        if cluster_level:
            return first("ClusterLevelPMM")
        if kind in ("continuous", "integer"):
            return first("RandomEffectsPMM")
        if kind == "binary":
            return first("RandomEffectsLogistic")
        return first("RandomEffectsCategorical")
    if kind in ("continuous", "integer"):
        return c.PredictiveMeanMatching()
    if kind == "binary":
        return first("BayesianLogistic")
    return first("Polytomous")
