"""Random-effects logistic model with a random intercept for each of several grouping factors.

Nested (pupils in classes in schools) or crossed factors: the model is
logit P(y = 1) = f' beta + sum_k u_k[g_k] with u_k ~ N(0, tau_k^2). Polya-Gamma augmentation
(Polson, Scott & Windle 2013) makes it, given omega, the weighted normal model of
:func:`~skmlmi._kernels.multi_factor_gibbs` with working response (y - 1/2) / omega, weights omega
and unit error variance, whose blocks (beta and one factor's intercepts jointly, given the others)
need no loop over clusters. :class:`~skmlmi.conditional.RandomEffectsLogistic` calls
:func:`fit_logistic_factors` when the engine hands it more than one factor's codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from .._kernels import (
    FactorSlopeState,
    FactorState,
    Standardiser,
    factor_cross_products,
    factor_designs,
    factor_row_effects,
    multi_factor_gibbs,
    multi_factor_slopes_gibbs,
    polya_gamma,
    student_t_mixing,
)
from ._random_effects_factors import FactorNormalDraw, factor_slope_columns, log_unobserved_units, slope_effects

__all__ = ["FactorLogisticState", "fit_logistic_factors"]

# tau_k^2 ~ IW(1, 0.1): the one-factor model's Psi ~ IW(q, 0.1 I_q) with q = 1 (log-odds scale)
_TAU_PRIOR = (1.0, 0.1)


@dataclass
class FactorLogisticState:
    """Sampler state of the logistic model with a random intercept per grouping factor (one chain).

    ``beta_std`` is standardised by ``std`` (as the one-factor model's); the intercepts and their
    variances are on the log-odds scale, which standardising the predictors leaves unchanged.
    """

    n_columns: int
    counts: tuple
    beta_std: np.ndarray
    gibbs: FactorState
    mixing: np.ndarray
    std: Standardiser

    @property
    def variances(self) -> dict:
        """tau_k^2 per factor, or with random slopes each factor's Psi_k (log-odds scale, standardised predictors)."""
        if isinstance(self.gibbs, FactorSlopeState):
            return {"psi": [psi.copy() for psi in self.gibbs.psi]}
        return {"tau2": self.gibbs.tau2.copy()}


class FactorLogisticDraw(FactorNormalDraw):
    """One draw of the logistic model with a random intercept per grouping factor."""

    def __init__(self, beta_std, effects, tau, std, name):
        super().__init__(std.matrix() @ beta_std, effects, tau, 0.0, name)
        self.beta_std, self.std = beta_std, std

    def _linear_predictor(self, X, effects):
        return self.std.design(X) @ self.beta_std + effects

    def sample(self, X, groups, rng):
        X = np.asarray(X, dtype=float).reshape(len(groups), -1)
        eta = self._linear_predictor(X, self._effects(groups, rng))
        return (rng.random(len(eta)) < special.expit(eta)).astype(float)


class FactorLogisticSlopeDraw(FactorLogisticDraw):
    """The logistic draw with random slopes per factor, on the standardised predictors ``zcols[k]`` of the design."""

    def __init__(self, beta_std, effects, psi, zcols, std, name):
        super().__init__(beta_std, effects, np.zeros(len(effects)), std, name)
        self.roots = [np.linalg.cholesky(0.5 * (p + p.T)) for p in psi]
        self.zcols = zcols

    def sample(self, X, groups, rng):
        X = np.asarray(X, dtype=float).reshape(len(groups), -1)
        groups = np.asarray(groups)
        design = self.std.design(X)
        eta = design @ self.beta_std + slope_effects(
            factor_designs(design, self.zcols), self.effects, self.roots, groups, rng
        )
        return (rng.random(len(eta)) < special.expit(eta)).astype(float)


def fit_logistic_factors(model, y, observed, X, roles, groups, rng, state, context):
    """Draw of :class:`~skmlmi.conditional.RandomEffectsLogistic` with a random intercept per factor.

    ``groups`` holds one column of codes per factor. Each
    Gibbs step draws omega_i ~ PG(1, eta_i), then runs one step of the weighted multi-factor
    sampler (beta with the Student-t prior of the one-factor model, each factor's intercepts,
    tau_k^2 ~ IW(1 + J_k, 0.1 + sum u^2) over the units with observed y), then the Student-t
    mixing variances. Units with no observed y carry population draws N(0, tau_k^2).
    """
    name = model._name(context)
    counts = tuple(int(c) for c in context.factor_counts)
    # each factor's design columns with random effects: the intercept, then its slopes
    zcols = factor_slope_columns(roles, len(counts), context.slopes_over)
    p = X.shape[1]
    state = model._reuse_state(state, FactorLogisticState, p, counts=counts)
    yo = model._observed_codes(y, observed, 2, context).astype(float)
    go = groups[observed]
    std = Standardiser.fit(X[observed])
    design = std.design(X[observed])
    scales = model._prior_scales(p)
    if state is None:
        beta = np.zeros(p + 1)
        mean_y = np.clip(yo.mean(), 0.5 / len(yo), 1 - 0.5 / len(yo))
        beta[0] = np.log(mean_y / (1 - mean_y))
        if any(z.size > 1 for z in zcols):
            gibbs = FactorSlopeState(
                [np.zeros((J, z.size)) for J, z in zip(counts, zcols, strict=True)],
                [0.5 * np.eye(z.size) for z in zcols],
                1.0,
                beta,
            )
        else:
            gibbs = FactorState([np.zeros(J) for J in counts], np.full(len(counts), 0.5), 1.0, beta)
        mixing = np.ones(p + 1)
    else:  # the chain's parameters, restandardised by this visit's means and SDs
        old = state.gibbs
        beta = state.std.transfer(std) @ state.beta_std
        if isinstance(old, FactorSlopeState):  # slopes on the standardised predictors: a warm start
            gibbs = FactorSlopeState([u.copy() for u in old.u], [psi.copy() for psi in old.psi], 1.0, beta)
        else:
            gibbs = FactorState([u.copy() for u in old.u], old.tau2.copy(), 1.0, beta)
        mixing = state.mixing
    if state is None:  # logged at the chain's first visit
        log_unobserved_units(go, counts, context, context.log)
    kappa = yo - 0.5
    prior = (0.0, 0.0) + _TAU_PRIOR
    slopes = isinstance(gibbs, FactorSlopeState)
    Z = factor_designs(design, zcols)  # gathered once per visit, not per Gibbs step
    for _ in range(model._n_steps(state)):  # loop over Gibbs steps: omega changes every step
        if slopes:
            effects = np.sum([factor_row_effects(Z[k], u, go[:, k]) for k, u in enumerate(gibbs.u)], axis=0)
        else:
            effects = np.sum([u[go[:, k]] for k, u in enumerate(gibbs.u)], axis=0)
        omega = polya_gamma(design @ gibbs.beta + effects, rng)
        response = kappa / omega
        precision = 1.0 / (scales**2 * mixing)
        if slopes:
            multi_factor_slopes_gibbs(
                design, response, go, counts, zcols, gibbs, 1, prior, rng, weights=omega, beta_precision=precision, Z=Z
            )
        else:
            cross = factor_cross_products(design, response, go, counts, weights=omega)
            multi_factor_gibbs(
                design, response, go, counts, cross, gibbs, 1, prior, rng, weights=omega, beta_precision=precision
            )
        mixing = student_t_mixing(gibbs.beta, scales, float(model.prior_df), rng)
    new_state = FactorLogisticState(p, counts, gibbs.beta.copy(), gibbs, mixing, std)
    if slopes:
        draw = FactorLogisticSlopeDraw(gibbs.beta.copy(), [u.copy() for u in gibbs.u], gibbs.psi, zcols, std, name)
    else:
        draw = FactorLogisticDraw(gibbs.beta.copy(), [u.copy() for u in gibbs.u], np.sqrt(gibbs.tau2), std, name)
    return draw, new_state
