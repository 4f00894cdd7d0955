"""Random-effects normal and PMM models with a random intercept for each of several grouping factors.

Nested (pupils in classes in schools) or crossed (students and lecturers) factors: the model is
y = X beta + sum_k u_k[g_k] + e with u_k ~ N(0, tau_k^2) and e ~ N(0, sigma^2); each factor's
intercepts are drawn as a block given the others (:func:`~skmlmi._kernels.multi_factor_gibbs`,
no loop over clusters). :class:`~skmlmi.conditional.RandomEffectsNormal` and
:class:`~skmlmi.conditional.RandomEffectsPMM` call :func:`fit_several_factors` when the engine
hands them more than one factor's codes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._kernels import (
    FactorSlopeState,
    FactorState,
    factor_cross_products,
    find_redundant_columns,
    multi_factor_gibbs,
    multi_factor_slopes_gibbs,
    pmm_match,
    power_of_two_exponents,
    rows_of_clusters,
    scale_by_powers_of_two,
)
from ._priors import given_prior, prior_values
from .base import Draw

__all__ = ["FactorModelState", "factor_slope_columns", "fit_several_factors"]


@dataclass
class FactorModelState:
    """Sampler state of the model with a random intercept per grouping factor (one chain).

    ``gibbs`` is in the sampler's units (y / 2^y_exponent, columns / 2^x_exponents, centred);
    the exponents are chosen at the chain's first visit and kept while the state is used.
    ``trace`` holds, per Gibbs step of the last visit, nothing yet beyond the final values;
    ``tau2`` and ``sigma2`` on the original scale are in :attr:`variances`.
    """

    n_columns: int
    counts: tuple
    columns: np.ndarray
    y_exponent: int
    x_exponents: np.ndarray
    gibbs: FactorState
    n_steps: int = 0
    logged: set = field(default_factory=set)
    # the factors' co-occurrence counts over the observed rows (factor_pair_counts), which stay the same in
    # every visit of a chain: kept with the rows they count, and not pickled (rebuilt when needed)
    pairs: tuple | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "pairs": None}

    def pair_counts(self, key: tuple) -> dict | None:
        """The kept co-occurrence counts if they count the rows ``key`` (:func:`_rows_key`) stands for, else None."""
        return self.pairs[1] if self.pairs is not None and self.pairs[0] == key else None

    @property
    def variances(self) -> dict:
        """tau_k^2 per factor (or, with random slopes, each factor's Psi_k in the sampler's units of the
        predictors) and sigma^2, on the original scale of y."""
        sigma2 = float(np.ldexp(self.gibbs.sigma2, 2 * self.y_exponent))
        if isinstance(self.gibbs, FactorSlopeState):
            return {"psi": [np.ldexp(psi, 2 * self.y_exponent) for psi in self.gibbs.psi], "sigma2": sigma2}
        return {"tau2": np.ldexp(self.gibbs.tau2, 2 * self.y_exponent), "sigma2": sigma2}


class FactorNormalDraw(Draw):
    """One posterior draw of the normal model with a random intercept per grouping factor."""

    def __init__(self, beta, effects, tau, sigma, name):
        self.beta = beta  # (p + 1,), intercept first, original scale
        self.effects = effects  # one (J_k,) array per factor
        self.tau = tau  # (k,) SDs of the factors' intercepts
        self.sigma = sigma
        self.name = name

    def _effects(self, groups, rng):
        groups = np.asarray(groups)
        if groups.ndim != 2 or groups.shape[1] != len(self.effects):
            raise ValueError(
                f"{self.name}: this draw has {len(self.effects)} grouping factors and needs their codes as an "
                f"(n, {len(self.effects)}) array; got shape {groups.shape}."
            )
        total = np.zeros(len(groups))
        for k, (u, tau) in enumerate(zip(self.effects, self.tau, strict=True)):

            def draw_new(codes, inverse, rows, tau=tau):  # a cluster unseen at fit: a population draw
                return tau * rng.standard_normal((len(codes), 1))

            total += rows_of_clusters(u[:, None], groups[:, k], draw_new)[:, 0]
        return total

    def _linear_predictor(self, X, effects):
        return self.beta[0] + X @ self.beta[1:] + effects

    def row_effects(self, X, groups, rng):
        """Every factor's random effects in each row's linear predictor (population draws for unseen units)."""
        return self._effects(groups, rng)

    def sample(self, X, groups, rng):
        X = np.asarray(X, dtype=float).reshape(len(groups), -1)
        return self._linear_predictor(X, self.row_effects(X, groups, rng)) + self.sigma * rng.standard_normal(len(X))


@dataclass(frozen=True)
class SlopeUnits:
    """Factor k's effects (J, q_k) in the sampler's units (y / 2^y_exponent, centred predictors / 2^x_exponents)
    to the caller's: the intercept, then one slope per column (a class, not a closure: draws are pickled)."""

    y_exponent: int
    x_exponents: list  # per factor, its slope columns' exponents
    x_means: list  # per factor, its slope columns' means over the fitting rows

    def __call__(self, u: np.ndarray, k: int) -> np.ndarray:
        out = u * np.r_[np.ldexp(1.0, self.y_exponent), np.ldexp(1.0, self.y_exponent - self.x_exponents[k])]
        out[:, 0] -= out[:, 1:] @ self.x_means[k]
        return out


class FactorSlopeDraw(FactorNormalDraw):
    """A draw with random slopes per factor: ``effects[k]`` (J_k, q_k), intercept then one slope per column of
    ``slope_columns[k]`` (columns of X), on the original scale; units unseen at fit draw theirs from N(0, Psi_k)
    (``to_original(u, k)`` maps factor k's effects in the sampler's units to the original scale)."""

    def __init__(self, beta, effects, psi_roots, to_original, slope_columns, sigma, name):
        self.beta, self.effects, self.sigma, self.name = beta, effects, sigma, name
        self.psi_roots, self.to_original, self.slope_columns = psi_roots, to_original, slope_columns

    def row_effects(self, X, groups, rng):
        groups = np.asarray(groups)
        if groups.ndim != 2 or groups.shape[1] != len(self.effects):
            raise ValueError(
                f"{self.name}: this draw has {len(self.effects)} grouping factors and needs their codes as an "
                f"(n, {len(self.effects)}) array; got shape {groups.shape}."
            )
        return slope_effects(
            factor_designs(X, self.slope_columns), self.effects, self.psi_roots, groups, rng, self.to_original
        )


def factor_designs(X, slope_columns) -> list:
    """Each factor's random-effects design [1, X[:, slope_columns[k]]]."""
    X = np.asarray(X)
    return [np.column_stack([np.ones(len(X)), X[:, columns]]) for columns in slope_columns]


def slope_effects(Z, effects, roots, groups, rng, to_scale=None) -> np.ndarray:
    """sum over the factors k of z_ik'u_k[g_ik] for every row: ``Z[k]`` factor k's random-effects design,
    ``effects[k]`` (J_k, q_k) per unit seen at fit; a unit unseen draws its effects from N(0, Psi_k)
    (``roots[k]`` R with R R' = Psi_k), mapped by ``to_scale(u, k)`` onto the effects' scale when they are
    not the sampler's."""
    total = np.zeros(len(groups))
    for k, (u, root) in enumerate(zip(effects, roots, strict=True)):

        def draw_new(codes, inverse, rows, root=root, k=k):  # a unit unseen at fit: a population draw
            new = rng.standard_normal((len(codes), root.shape[0])) @ root.T
            return new if to_scale is None else to_scale(new, k)

        total += np.einsum("iq,iq->i", Z[k], rows_of_clusters(u, groups[:, k], draw_new))
    return total


class FactorPMMDraw(FactorNormalDraw):
    """Predictive mean matching on predictions that include every factor's intercept."""

    def __init__(self, normal: FactorNormalDraw, yhat_donors, y_donors, donors):
        self.__dict__.update(normal.__dict__)
        self.normal = normal
        self.yhat_donors, self.y_donors, self.donors = yhat_donors, y_donors, donors

    def row_effects(self, X, groups, rng):
        return self.normal.row_effects(X, groups, rng)  # intercepts only, or with slopes

    def sample(self, X, groups, rng):
        X = np.asarray(X, dtype=float).reshape(len(groups), -1)
        target = self._linear_predictor(X, self.row_effects(X, groups, rng))
        strata = np.asarray(groups)[:, -1]  # distinct donors within an innermost unit
        return self.y_donors[pmm_match(self.yhat_donors, target, self.donors, rng, strata)]


def _rows_key(rows: np.ndarray, codes: np.ndarray) -> tuple:
    """A cheap fingerprint of a visit's observed rows and their units (one pass)."""
    return rows.size, int(rows.sum()), tuple(int(c) for c in codes.sum(axis=0))


def factor_slope_columns(roles: np.ndarray, n_factors: int, slopes_over) -> list:
    """Each factor's random terms as columns of the design with its intercept first (column 0): the intercept,
    then the columns coded 2 whose slope varies over that factor (``slopes_over(k, positions)``: a mask of
    the positions of ``roles``, as :meth:`~skmlmi.conditional.base.DrawContext.slopes_over`)."""
    slopes = np.flatnonzero(roles == 2)
    return [np.r_[0, slopes[slopes_over(k, slopes)] + 1] for k in range(n_factors)]


def factor_prior(prior, var_y: float, y_exponent: int):
    """(a, Binv, c, Dinv) of sigma^2 and of each tau_k^2, in the sampler's units (y / 2^y_exponent)."""
    if isinstance(prior, dict) or prior == "pan":
        a, Binv, c, Dinv = given_prior(prior, 1)
        return a, float(np.ldexp(Binv, -2 * y_exponent)), c, float(np.ldexp(Dinv[0, 0], -2 * y_exponent))
    a, Binv, c, Dinv = prior_values(prior, 1, np.sqrt(var_y) if var_y > 0 else 1.0, [])
    return a, Binv, c, float(Dinv[0, 0])


def refuse_random_slopes(name: str, roles: np.ndarray) -> None:
    """Random slopes with several grouping factors in the discrete models: a clear error, not a silent intercept."""
    if (roles == 2).any():
        raise ValueError(
            f"{name}: random slopes (role 2) with several grouping factors are not implemented for this model "
            "(RandomEffectsNormal, RandomEffectsPMM and RandomEffectsLogistic take them); code the predictors 1 "
            "(a random intercept per factor)."
        )


def log_unobserved_units(codes: np.ndarray, counts: tuple, context, log) -> None:
    """Log, per factor, the units without an observed value (their intercepts are population draws)."""
    for k, J in enumerate(counts):
        n_empty = int((np.bincount(codes[:, k], minlength=J) == 0).sum())
        if n_empty:
            log(
                f"{n_empty} unit(s) of {context.factor_name(k)} with no observed value of {context.target!r}: "
                "their intercepts are drawn from the population distribution"
            )


def fit_several_factors(model, y, observed, X, roles, groups, rng, state, context, donors):
    """Draw of ``model`` (RandomEffectsNormal or -PMM) with a random intercept per grouping factor.

    ``groups`` holds one column of codes per factor; each factor's intercepts are drawn as a
    block given the others (:func:`~skmlmi._kernels.multi_factor_gibbs`). Predictors coded 2
    get a random slope at every factor, with a full covariance per factor
    (:func:`~skmlmi._kernels.multi_factor_slopes_gibbs`), as lme4's ``(1 + x | a) + (1 + x | b)``.
    With ``donors`` the observed rows' predictions (fixed effects at their posterior mean plus a
    fresh draw of the random effects) are returned too, for predictive mean matching.
    """
    name = model._name(context)
    if getattr(model, "heteroscedastic", False):
        raise ValueError(f"{name}: heteroscedastic=True takes one grouping factor; groups has {groups.shape[1]}.")
    counts = tuple(int(c) for c in context.factor_counts)
    state = model._reuse_state(state, FactorModelState, X.shape[1], counts=counts)
    log_once = model._event_log(state)
    rows = np.flatnonzero(observed)
    yo, go = y[rows], groups[rows]
    if state is None:
        drop = find_redundant_columns(X[rows]) if X.shape[1] else {}
        for index, reason in drop.items():
            log_once(f"{context.target!r}: predictor {context.predictor_name(index)!r} dropped: {reason}")
        columns = np.array([k for k in range(X.shape[1]) if k not in drop], dtype=int)
    else:
        columns = state.columns
    # the observed rows' design, centred and scaled, intercept first, built in place: the visit's
    # largest array, gathered once, column by column (column-major, as the design: each column read and
    # written whole, about four times faster than gathering rows of a column-major array)
    Xs = np.empty((rows.size, columns.size + 1), order="F")
    Xs[:, 0] = 1.0
    Xo = Xs[:, 1:]
    for i, column in enumerate(columns):  # a loop over the few columns
        np.take(X[:, column], rows, out=Xs[:, i + 1])
    x_mean, y_mean = Xo.mean(axis=0), float(yo.mean())
    if state is None:
        y_exponent = int(power_of_two_exponents(np.array([yo.std()]), np.array([abs(y_mean)]))[0])
        x_exponents = power_of_two_exponents(Xo.std(axis=0), np.abs(x_mean)) if len(columns) else np.zeros(0, int)
    else:
        y_exponent, x_exponents = state.y_exponent, state.x_exponents
    np.subtract(Xo, x_mean, out=Xo)
    scale_by_powers_of_two(Xo, -x_exponents, out=Xo)
    ys = np.ldexp(yo - y_mean, -y_exponent)
    var_y = float(ys.var())
    prior = factor_prior(model.prior, var_y, y_exponent)
    log_unobserved_units(go, counts, context, log_once)
    n_steps = model.n_gibbs
    zcols = factor_slope_columns(roles[columns], len(counts), lambda k, c: context.slopes_over(k, columns[c]))
    slopes = any(z.size > 1 for z in zcols)
    if state is None:
        start = 0.5 * var_y if var_y > 0 else 1.0
        if slopes:
            gibbs = FactorSlopeState(
                [np.zeros((J, z.size)) for J, z in zip(counts, zcols, strict=True)],
                [start / len(counts) * np.eye(z.size) for z in zcols],
                start,
            )
        else:
            gibbs = FactorState([np.zeros(J) for J in counts], np.full(len(counts), start / len(counts)), start)
        state = FactorModelState(X.shape[1], counts, columns, y_exponent, x_exponents, gibbs, logged=log_once.logged)
        n_steps += model.n_burnin
    if slopes:
        beta_hat, donor_effects = multi_factor_slopes_gibbs(
            Xs, ys, go, counts, zcols, state.gibbs, n_steps, prior, rng, donor_effects=donors
        )
    else:
        key = _rows_key(rows, go)
        cross = factor_cross_products(Xs, ys, go, counts, pairs=state.pair_counts(key))
        state.pairs = (key, cross["pairs"])
        beta_hat, donor_effects = multi_factor_gibbs(
            Xs, ys, go, counts, cross, state.gibbs, n_steps, prior, rng, donor_effects=donors
        )
    state.n_steps += n_steps

    def original(beta):  # fixed effects back to the caller's units, one per column of X
        out = np.zeros(X.shape[1] + 1)
        out[columns + 1] = np.ldexp(beta[1:], y_exponent - x_exponents)
        out[0] = np.ldexp(beta[0], y_exponent) + y_mean - x_mean @ out[columns + 1]
        return out

    g = state.gibbs
    sigma = float(np.ldexp(np.sqrt(g.sigma2), y_exponent))
    if slopes:
        kept = [z[1:] - 1 for z in zcols]  # each factor's slopes, as positions among the kept columns
        slope_columns = [columns[c] for c in kept]
        to_original = SlopeUnits(y_exponent, [x_exponents[c] for c in kept], [x_mean[c] for c in kept])
        roots = [np.linalg.cholesky(0.5 * (psi + psi.T)) for psi in g.psi]
        effects = [to_original(u, k) for k, u in enumerate(g.u)]
        draw = FactorSlopeDraw(original(g.beta), effects, roots, to_original, slope_columns, sigma, name)
    else:
        draw = FactorNormalDraw(
            original(g.beta),
            [np.ldexp(u, y_exponent) for u in g.u],
            np.ldexp(np.sqrt(g.tau2), y_exponent),
            sigma,
            name,
        )
    log_once.flush(context)
    extra = None
    if donors:
        fixed, X_donors = original(beta_hat), X[observed]
        if slopes:
            donor_units = [to_original(u, k) for k, u in enumerate(donor_effects)]
            effects = slope_effects(factor_designs(X_donors, slope_columns), donor_units, roots, go, rng, to_original)
        else:
            effects = np.zeros(len(rows))
            for k, u in enumerate(donor_effects):
                effects += np.ldexp(u, y_exponent)[go[:, k]]
        extra = fixed[0] + X_donors @ fixed[1:] + effects
    return draw, state, extra
