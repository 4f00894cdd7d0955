"""The contract every conditional model honours.

A conditional model imputes one incomplete variable given its predictors. The
chained-equations engine (:mod:`skmlmi.imputer`) calls :meth:`BaseConditionalImputer.draw`
once per visit; the model returns a :class:`Draw` (one posterior draw of its
parameters) and its own sampler state, which the engine hands back at the next visit
(warm start). The draw then imputes rows through :meth:`Draw.sample`, for the training
data and for new data alike, including rows of clusters never seen at fit.

What reaches a model is numeric only: the target as floats (binary and categorical
targets as integer codes ``0..K-1``), a predictor matrix whose categorical predictors are
already expanded to dummy columns, the role code of each column, and integer cluster codes.
Nothing here knows about DataFrames, column names or the chained-equations loop; names
arrive only inside :class:`DrawContext`, for messages.

Role codes are mice's (``0`` unused, ``1`` fixed, ``2`` fixed + random slope, ``3`` fixed +
cluster mean, ``4`` fixed + random slope + cluster mean, ``-2`` cluster identifier, ``-3``
selection equation only, ``-4`` outcome equation only). The engine validates the codes
against :attr:`BaseConditionalImputer.accepted_roles`, removes unused columns, and
expands codes 3 and 4 into the column itself (as 1 or 2) plus its cluster mean (as 1),
so :meth:`_draw` sees only the codes ``1, 2, -3, -4``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from .._kernels import find_redundant_columns, rows_of_clusters

__all__ = [
    "ROLE_NAMES",
    "BaseConditionalImputer",
    "Draw",
    "DrawContext",
    "EventLog",
    "cluster_names",
    "rows_of_clusters",
]

#: Names listed in a message before "and k more".
MAX_NAMES = 5

#: Role codes of the predictor matrix, in words (mice's convention).
ROLE_NAMES: dict[int, str] = {
    0: "not used",
    1: "fixed effect",
    2: "fixed effect + random slope",
    3: "fixed effect + cluster mean",
    4: "fixed effect + random slope + cluster mean",
    -2: "cluster identifier",
    -3: "selection equation only (exclusion restriction)",
    -4: "outcome equation only",
}

TARGET_KINDS = frozenset({"continuous", "binary", "categorical", "integer"})


@dataclass
class DrawContext:
    """What a model may know about its target besides the numbers.

    Parameters
    ----------
    target : str
        Name of the target variable, used in warnings and logged events only.
    kind : {"continuous", "binary", "categorical", "integer"}
        Kind of the target. Binary targets arrive as 0/1, categorical ones as codes
        ``0..n_categories-1``.
    n_categories : int
        Number of categories of a categorical target (2 for binary, 0 otherwise).
    ordered : bool
        Whether the categories of a categorical target are ordered.
    n_clusters : int
        Number of training clusters J; cluster codes ``0..J-1`` belong to clusters seen
        at fit, larger codes (at sample time) to unseen clusters.
    predictor_names : tuple of str
        One name per column of ``X``, for messages.
    cluster_labels : sequence or None
        The original label of each cluster code, for messages.
    events : list of str
        What the model decided on its own during this draw (dropped predictors, ridge
        added, clusters treated as systematically missing). Filled through :meth:`log`;
        the engine turns them into ``logged_events_`` rows and warnings.
    modelled_rows : ndarray of bool or None
        Rows that belong to the model's data (None: all). The engine's ``ignore`` rows are
        excluded. ``observed`` is the response indicator within these rows: a model of the
        non-response itself (:class:`HeckmanSelection`) takes its non-responders from
        them, so an ignored row is neither a responder nor a non-responder.
    checked : bool
        Whether the caller has already validated the model's parameters and the fitting
        rows' finiteness (the engine does both once, at fit); a model used directly gets
        these checks at every draw.
    factor_counts : tuple of int
        Several grouping factors (``groups`` of shape (n, k), for a model whose
        ``multiple_factors`` is True): the cluster count of each (codes ``0..count-1`` at fit).
        Empty with one factor.
    factor_names : tuple of str
        The names of those factors (their grouping columns; None for labels given as arrays), for
        messages. Empty or None: "grouping factor 1", ...
    slope_factors : tuple
        Several grouping factors: one entry per column of ``X``, the indices of the factors over
        which that column's random slope (role 2) varies, or None for every factor (the
        imputer's ``random_slope_levels``). Empty: every slope varies over every factor.
    """

    target: str = "y"
    kind: str = "continuous"
    n_categories: int = 0
    ordered: bool = False
    n_clusters: int = 0
    predictor_names: tuple[str, ...] = ()
    cluster_labels: Any = None
    events: list[str] = field(default_factory=list)
    modelled_rows: Any = None
    checked: bool = False
    factor_counts: tuple = ()
    factor_names: tuple = ()
    slope_factors: tuple = ()

    def slopes_over(self, k: int, columns: np.ndarray) -> np.ndarray:
        """Which of ``columns`` have their random slope over grouping factor ``k``.

        Parameters
        ----------
        k : int
            The factor (0-based, as the columns of ``groups``).
        columns : ndarray of int
            Indices into ``X`` of columns coded 2.

        Returns
        -------
        ndarray of bool
            One entry per column: True where its slope varies over factor ``k``.
        """
        columns = np.asarray(columns, dtype=int)
        if not self.slope_factors:
            return np.ones(columns.size, dtype=bool)
        chosen = [self.slope_factors[c] for c in columns]
        return np.array([f is None or k in f for f in chosen], dtype=bool)

    def factor_name(self, k: int) -> str:
        """How messages name grouping factor ``k`` (0-based): its column, else "grouping factor k + 1".

        Parameters
        ----------
        k : int
            The factor's position in ``groups`` (outer to inner).

        Returns
        -------
        str
        """
        name = self.factor_names[k] if k < len(self.factor_names) else None
        return repr(name) if name is not None else f"grouping factor {k + 1}"

    def log(self, reason: str) -> None:
        """Record something the sampler decided on its own.

        Parameters
        ----------
        reason : str
            The decision, as the logged event's text.
        """
        self.events.append(reason)

    def cluster_name(self, code: int) -> str:
        """Original label of a cluster code, for messages.

        Parameters
        ----------
        code : int
            A cluster code (its own text when the context has no label for it).

        Returns
        -------
        str
        """
        if self.cluster_labels is not None and 0 <= code < len(self.cluster_labels):
            return str(self.cluster_labels[code])
        return str(code)

    def predictor_name(self, index: int) -> str:
        """Name of predictor column ``index`` of ``X``, for messages.

        Parameters
        ----------
        index : int
            Column of the design.

        Returns
        -------
        str
            Its name, or ``x<index>`` when the context has none.
        """
        if index < len(self.predictor_names):
            return str(self.predictor_names[index])
        return f"x{index}"


class Draw:
    """One posterior draw of a conditional model's parameters.

    Subclasses store the drawn parameters and implement :meth:`sample`. A draw must be
    picklable: the fitted imputer keeps the last draw of every model of every chain to
    impute new data.
    """

    def sample(self, X: np.ndarray, groups: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
        """Imputations for the given rows.

        Parameters
        ----------
        X : ndarray of shape (n_rows, p)
            Predictors of the rows to impute, with the columns and roles the draw was
            made with.
        groups : ndarray of shape (n_rows,) of int, or None
            Cluster codes; codes ``>= n_clusters`` belong to clusters unseen at fit,
            whose cluster effects a multilevel draw takes from the population
            distribution.
        rng : numpy.random.Generator

        Returns
        -------
        ndarray of shape (n_rows,)
            Imputed values (codes for binary and categorical targets).
        """
        raise NotImplementedError


def cluster_names(codes: Iterable[int], name_of: Callable[[int], str], limit: int = MAX_NAMES) -> str:
    """The clusters ``codes`` named for a message: ``'a', 'b', 'c' and 4 more``.

    Parameters
    ----------
    codes : iterable of int
        Cluster codes.
    name_of : callable
        Maps a code to its label (:meth:`DrawContext.cluster_name`).
    limit : int
        How many are named before the rest are counted.

    Returns
    -------
    str
    """
    codes = list(codes)
    shown = ", ".join(repr(name_of(int(c))) for c in codes[:limit])
    return shown + (f" and {len(codes) - limit} more" if len(codes) > limit else "")


class EventLog:
    """Messages a model logs at most once per chain.

    The keys already logged live in the chain's state (``logged``), so a message repeated at every
    visit reaches the logged events once; messages of this visit wait in ``pending`` until
    :meth:`flush` hands them to the context (after the draw succeeded).

    Parameters
    ----------
    logged : set, optional
        Keys logged at earlier visits of the chain (shared, updated in place).
    """

    def __init__(self, logged: set | None = None):
        self.logged = set() if logged is None else logged
        self.pending: list[str] = []

    def __call__(self, message: str, key: Any = None) -> None:
        """Log ``message`` unless its key (the message itself by default) was logged on this chain."""
        key = message if key is None else key
        if key not in self.logged:
            self.logged.add(key)
            self.pending.append(message)

    def flush(self, context: DrawContext) -> None:
        """Hand this visit's messages to ``context``.

        Parameters
        ----------
        context : DrawContext
            The visit's context, whose events they join.
        """
        for message in self.pending:
            context.log(message)
        self.pending = []


class _SubsetDraw(Draw):
    """A draw fitted on a subset of the predictor columns (redundant ones dropped)."""

    def __init__(self, inner: Draw, keep: np.ndarray):
        self.inner = inner
        self.keep = keep

    def sample(self, X, groups, rng):
        return self.inner.sample(X[:, self.keep], groups, rng)


class BaseConditionalImputer(BaseEstimator):
    """Base class of the conditional models of the chained-equations sampler.

    Subclasses declare their capabilities as class attributes and implement
    :meth:`_draw`; hyperparameters go in ``__init__`` (stored unchanged, so that
    ``GridSearchCV`` can tune them through the imputer's ``methods``).

    The lifecycle every model repeats lives here, so a model file holds only its maths and
    its :class:`Draw`: input checks and redundant columns (:meth:`draw`), whether the chain's
    state can be continued (:meth:`_reuse_state`), messages logged once per chain
    (:meth:`_event_log`, :class:`EventLog`), the one error for a target without observed values
    (:meth:`_no_observed_values`) and for bad category codes (:meth:`_category_codes`), how a
    message names the model (:meth:`_name`) and clusters (:func:`cluster_names`), and one
    population draw per cluster unseen at fit or systematically missing
    (:func:`~skmlmi._kernels.rows_of_clusters`). Numerics live in :mod:`skmlmi._kernels`.

    Attributes
    ----------
    target_kinds : frozenset of str
        Kinds of target the model imputes.
    accepted_roles : frozenset of int
        Predictor role codes the model honours (see :data:`ROLE_NAMES`). Code 1 is
        always accepted.
    requires_groups : bool
        Whether the model needs a cluster identifier (role -2).
    supports_fixed_clusters : bool
        Whether the model can absorb cluster fixed effects (the cluster column coded 1);
        such a model then receives the cluster codes as ``groups``.
    handles_systematic : bool
        Whether the model imputes clusters in which the target is never observed.
    uses_groups_if_given : bool
        Whether the model, though it works without clusters, uses the cluster codes when
        the cluster column is coded -2 (e.g. a Heckman model per cluster).
    default_cluster_means : bool
        Whether the imputer's default predictor matrix gives this model the cluster means
        of its level-1 predictors (code 3). True for the one-stage random-intercept models,
        whose one coefficient per predictor would otherwise force the within- and
        between-cluster slopes to be equal; False for models with cluster-specific
        coefficients (two-stage), cluster-level and single-level models.
    cluster_level : bool
        Whether the model imputes a cluster-level variable (one value per cluster, constant
        within clusters) rather than one value per row.
    multiple_factors : bool
        Whether the model takes several grouping factors (nested or crossed): it then receives
        ``groups`` of shape (n, k), one column of codes per factor (outer to inner), and
        ``DrawContext.factor_counts``.
    slopes_with_several_factors : bool
        Whether it honours role ``2`` (random slopes) with several factors too.
    r_names : dict of str to dict
        The R method names (mice, miceadds, micemd) this model stands for, each with the
        settings it implies, e.g. ``{"2l.norm": {"heteroscedastic": True}}``. The imputer's
        ``methods`` and the command line accept them; each name belongs to one model.
    """

    _parameter_constraints: dict = {}  # a model without hyperparameters has nothing to validate
    target_kinds: frozenset = frozenset()
    accepted_roles: frozenset = frozenset({1})
    requires_groups: bool = False
    supports_fixed_clusters: bool = False
    handles_systematic: bool = False
    uses_groups_if_given: bool = False
    default_cluster_means: bool = False
    cluster_level: bool = False
    multiple_factors: bool = False
    slopes_with_several_factors: bool = False
    r_names: dict = {}

    def draw(
        self,
        y: np.ndarray,
        observed: np.ndarray,
        X: np.ndarray,
        roles: np.ndarray,
        groups: np.ndarray | None,
        rng: np.random.Generator,
        state: Any = None,
        context: DrawContext | None = None,
    ) -> tuple[Draw, Any]:
        """One posterior draw of the parameters from the observed rows.

        Parameters
        ----------
        y : ndarray of shape (n,)
            Current values of the target (imputed values in unobserved rows).
        observed : ndarray of shape (n,) of bool
            Rows used to fit the model (observed and not ignored).
        X : ndarray of shape (n, p)
            Numeric predictors, categorical predictors expanded to dummy columns that
            inherit their variable's role.
        roles : ndarray of shape (p,) of int
            Role code of each column of ``X`` (1, 2, -3 or -4; see module docstring).
        groups : ndarray of shape (n,) of int, or None
            Cluster codes ``0..J-1``.
        rng : numpy.random.Generator
        state : object, optional
            The model's own state returned by its previous draw on this chain (warm
            start); ``None`` at the first visit.
        context : DrawContext, optional
            Names and kinds for messages; events the model logs are appended to it.

        Returns
        -------
        draw : Draw
        new_state : object
        """
        context = DrawContext() if context is None else context
        if not context.checked:  # a model used directly gets the checks the imputer makes once, at fit
            self._validate_params()
        if not isinstance(rng, np.random.Generator):
            raise TypeError(
                f"{type(self).__name__}.draw needs rng, a numpy.random.Generator (np.random.default_rng(seed)); "
                f"got {type(rng).__name__}."
            )
        y = np.asarray(y, dtype=float)
        observed = np.asarray(observed, dtype=bool)
        X = np.asarray(X, dtype=float).reshape(len(y), -1)
        roles = np.asarray(roles, dtype=int)
        if observed.shape != y.shape or roles.shape != (X.shape[1],):
            raise ValueError(
                f"{type(self).__name__} for {context.target!r}: y {y.shape}, observed "
                f"{observed.shape}, X {X.shape} and roles {roles.shape} do not conform."
            )
        if not observed.any():
            raise self._no_observed_values(context)
        finite = None if context.checked else np.isfinite(X[observed]).all(axis=0)
        if finite is not None and not (np.isfinite(y[observed]).all() and finite.all()):
            what = (
                f"predictor {context.predictor_name(int(np.flatnonzero(~finite)[0]))!r}"
                if np.isfinite(y[observed]).all()
                else "the target"
            )
            raise ValueError(
                f"{type(self).__name__} for {context.target!r}: {what} has missing or infinite values in the "
                "observed rows; the rows a model is fitted on must be complete."
            )
        if groups is not None and np.ndim(groups) == 2 and np.shape(groups)[1] > 1:
            groups = self._factor_codes(groups, y, context)
        elif groups is not None:
            groups = np.asarray(groups, dtype=np.intp)
            groups = groups[:, 0] if groups.ndim == 2 else groups  # one factor as an (n, 1) array
            if groups.shape != y.shape:
                raise ValueError(
                    f"{type(self).__name__} for {context.target!r}: groups has shape {groups.shape}, y {y.shape}."
                )
            if len(groups) and groups.min() < 0:
                raise ValueError(f"{type(self).__name__} for {context.target!r}: cluster codes must be >= 0.")
            if context.n_clusters == 0:  # a model called directly: the engine always says (Clusters.count)
                context.n_clusters = int(groups.max()) + 1 if len(groups) else 0
            elif len(groups) and groups.max() >= context.n_clusters:
                raise ValueError(
                    f"{type(self).__name__} for {context.target!r}: cluster codes must lie in "
                    f"0..{context.n_clusters - 1} at fit (DrawContext.n_clusters), got {int(groups.max())}."
                )
        elif self.requires_groups:
            raise ValueError(
                f"{type(self).__name__} for {context.target!r} needs a cluster "
                "identifier: pass groups and code the cluster column -2."
            )
        bad = sorted(set(roles.tolist()) - set(self.accepted_roles) - {1})
        if bad:
            raise ValueError(
                f"{type(self).__name__} cannot honour role code {bad[0]} "
                f"({ROLE_NAMES.get(bad[0], 'unknown')}) given to predictors of "
                f"{context.target!r}."
            )
        keep = self._usable_columns(X, observed, roles, groups, context)
        if keep.all():
            return self._draw(y, observed, X, roles, groups, rng, state, context)
        if state is not None and getattr(state, "n_columns", keep.sum()) != keep.sum():
            state = None
        inner, new_state = self._draw(y, observed, X[:, keep], roles[keep], groups, rng, state, context)
        return _SubsetDraw(inner, keep), new_state

    def _factor_codes(self, groups, y, context: DrawContext) -> np.ndarray:
        """Codes of several grouping factors, (n, k), checked against ``context.factor_counts``."""
        if not (self.multiple_factors or self.cluster_level):
            raise ValueError(
                f"{self._name(context)} takes one grouping factor; groups has {np.shape(groups)[1]} columns."
            )
        groups = np.asarray(groups, dtype=np.intp)
        if groups.shape[0] != len(y):
            raise ValueError(f"{self._name(context)}: groups has shape {groups.shape}, y {y.shape}.")
        if len(groups) and groups.min() < 0:
            raise ValueError(f"{self._name(context)}: cluster codes must be >= 0.")
        if not context.factor_counts:  # a model called directly
            context.factor_counts = tuple(int(c) for c in (groups.max(axis=0) + 1 if len(groups) else groups[0]))
        elif len(context.factor_counts) != groups.shape[1] or (
            len(groups) and (groups.max(axis=0) >= np.asarray(context.factor_counts)).any()
        ):
            raise ValueError(
                f"{self._name(context)}: the codes of groups {groups.shape} do not fit the factors' cluster "
                f"counts {context.factor_counts} (DrawContext.factor_counts)."
            )
        # a cluster-level model's units are the last (innermost) factor's; the others are outer to them
        context.n_clusters = int(context.factor_counts[-1 if self.cluster_level else 0])
        return groups

    # ------------------------------------------------------------------ lifecycle every model shares
    def _name(self, context: DrawContext) -> str:
        """How messages name the model and its target: ``"RandomEffectsNormal for 'popular'"``."""
        return f"{type(self).__name__} for {context.target!r}"

    def _no_observed_values(self, context: DrawContext) -> ValueError:
        """THE error for a target with no observed value to fit on (one wording for every model)."""
        return ValueError(f"{type(self).__name__}: no observed values of {context.target!r} to fit the model on.")

    def _category_codes(
        self, y: np.ndarray, observed: np.ndarray, n_categories: int, context: DrawContext
    ) -> np.ndarray:
        """The observed target as category codes ``0..n_categories-1`` (integers); THE error otherwise."""
        if not observed.any():
            raise self._no_observed_values(context)
        yo = y[observed]
        finite = np.isfinite(yo)
        codes = np.where(finite, yo, -1.0).astype(np.intp)
        bad = ~finite | (codes != yo) | (codes < 0) | (codes >= n_categories)
        if bad.any():
            raise ValueError(
                f"{self._name(context)}: the observed target must hold category codes 0..{n_categories - 1}; "
                f"found {np.unique(yo[bad])[:5].tolist()}."
            )
        return codes

    @staticmethod
    def _reuse_state(state: Any, state_type: type, n_columns: int | None = None, **expected: Any) -> Any:
        """The chain's state from the previous visit if this visit can continue from it, else None.

        A state is reused (warm start) when it is a ``state_type``, holds ``n_columns`` predictor
        columns (when given), and each attribute named in ``expected`` equals the given value (a
        tuple given for an array attribute is compared with its shape). Anything else (a state of
        another model, a different design, other clusters) starts the sampler afresh.
        """
        if not isinstance(state, state_type):
            return None
        if n_columns is not None and getattr(state, "n_columns", None) != n_columns:
            return None
        for name, value in expected.items():
            current = getattr(state, name, None)
            if isinstance(value, tuple) and hasattr(current, "shape"):
                current = current.shape
            if isinstance(current, np.ndarray) or isinstance(value, np.ndarray):
                same = np.array_equal(current, value)
            else:
                same = current == value
            if not same:
                return None
        return state

    @staticmethod
    def _event_log(state: Any) -> EventLog:
        """The log-once channel of a chain: keys logged at earlier visits live in ``state.logged``."""
        return EventLog(getattr(state, "logged", None))

    def _usable_columns(self, X, observed, roles, groups, context) -> np.ndarray:
        """Mask of predictor columns to keep: constant and collinear ones are dropped.

        Judged on the rows used for fitting, as mice's ``remove.lindep``; each dropped
        column is logged. Models with a different notion of redundancy (cluster fixed
        effects absorb cluster-constant columns) override this.
        """
        if X.shape[1] == 0:
            return np.ones(0, dtype=bool)
        drop = find_redundant_columns(X[observed])
        for index, reason in drop.items():
            context.log(f"predictor {context.predictor_name(index)!r} dropped: {reason}")
        keep = np.ones(X.shape[1], dtype=bool)
        keep[list(drop)] = False
        return keep

    def _draw(self, y, observed, X, roles, groups, rng, state, context) -> tuple[Draw, Any]:
        """The model's maths: one posterior draw given validated, pruned inputs."""
        raise NotImplementedError
