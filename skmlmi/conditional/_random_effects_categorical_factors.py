"""Random-effects categorical model (unordered and ordered) with a random intercept for each of several factors.

Nested (pupils in classes in schools) or crossed factors. :class:`~skmlmi.conditional.RandomEffectsCategorical`
calls :func:`fit_categorical_factors` when the engine hands it more than one factor's codes.

**Unordered** targets, category 0 the reference: the multinomial logit

    eta_ik = f_i' beta_k + sum_f u_kf[g_f(i)],  u_kf ~ N(0, tau_kf^2)  (k = 1..K-1),

with an intercept per category and factor, independent across categories (the one-factor model
correlates a unit's K - 1 intercepts through Psi; with several factors each category's intercepts
get their own variance per factor). Gibbs step, for each category k in turn (Holmes & Held 2006;
Polson, Scott & Windle 2013, §3.3): given the other categories the likelihood of category k is a
binary logit with offset C_ik = log sum_{l != k} exp(eta_il); omega_ik ~ PG(1, eta_ik - C_ik) makes
it the weighted normal model y~_ik = ((y_i = k) - 1/2) / omega_ik + C_ik, weights omega_ik, unit
error variance, which :func:`~skmlmi._kernels.multi_factor_gibbs` draws (beta_k and one factor's
intercepts jointly, given the other factors').

**Ordered** targets: the cumulative probit y_i = c iff gamma_{c-1} < y*_i <= gamma_c,
y*_i = f_i' beta + sum_f u_f[g_f(i)] + e_i, e_i ~ N(0, 1), gamma_0 = 0, as the one-factor model:
the cutpoints by a random-walk Metropolis step on their log gaps with the latents integrated out,
then y* from truncated normals, then the same multi-factor step with unit weights and variance.

Priors as the one-factor model's: Student-t on the standardised slopes, tau^2 ~ IW(1, 0.1) per
factor (category), log gaps N(0, 2^2). Units without an observed value carry population draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from .._kernels import (
    FactorState,
    Standardiser,
    factor_cross_products,
    multi_factor_gibbs,
    polya_gamma,
    student_t_mixing,
    truncated_normal,
)
from ._random_effects_factors import log_unobserved_units, refuse_random_slopes
from ._random_effects_logistic_factors import _TAU_PRIOR, FactorLogisticDraw

__all__ = ["FactorCategoricalState", "fit_categorical_factors"]


@dataclass
class FactorCategoricalState:
    """Sampler state of one chain: one :class:`FactorState` per modelled linear predictor.

    Unordered: K - 1 (categories 1..K-1 against 0); ordered: one, with the cutpoints' log gaps.
    ``beta`` in each is standardised by ``std``; intercepts and variances are on the link scale.
    """

    n_columns: int
    counts: tuple
    n_categories: int
    ordered: bool
    gibbs: list
    mixing: list
    log_gaps: np.ndarray | None
    std: Standardiser

    @property
    def variances(self) -> dict:
        """tau^2 per factor: (K - 1, n_factors) unordered, (1, n_factors) ordered (link scale)."""
        return {"tau2": np.array([g.tau2 for g in self.gibbs])}


class FactorCategoricalDraw(FactorLogisticDraw):
    """One draw: the linear predictors of each modelled category (or the ordered latent) and their sampling."""

    def __init__(self, parts: list[FactorLogisticDraw], cutpoints: np.ndarray | None):
        self.parts, self.cutpoints = parts, cutpoints
        self.name = parts[0].name

    def sample(self, X, groups, rng):
        X = np.asarray(X, dtype=float).reshape(len(groups), -1)
        eta = np.column_stack([part._linear_predictor(X, part._effects(groups, rng)) for part in self.parts])
        if self.cutpoints is not None:
            return np.searchsorted(self.cutpoints, eta[:, 0] + rng.standard_normal(len(eta))).astype(float)
        probabilities = special.softmax(np.column_stack([np.zeros(len(eta)), eta]), axis=1)
        cumulative = np.cumsum(probabilities, axis=1)
        return np.minimum((cumulative < rng.random(len(eta))[:, None]).sum(axis=1), eta.shape[1]).astype(float)


def _start(codes, K, ordered, p, counts):
    """The chain's first values: intercepts from the marginal proportions, everything else 0 (or 0.5)."""
    shares = np.bincount(codes, minlength=K) + 0.5
    if ordered:
        thresholds = special.ndtri(np.cumsum(shares)[:-1] / shares.sum())
        intercepts = [-thresholds[0]]
        log_gaps = np.log(np.maximum(np.diff(thresholds), 1e-2))
    else:
        intercepts, log_gaps = list(np.log(shares[1:] / shares[0])), None
    gibbs = []
    for intercept in intercepts:
        beta = np.zeros(p + 1)
        beta[0] = intercept
        gibbs.append(FactorState([np.zeros(J) for J in counts], np.full(len(counts), 0.5), 1.0, beta))
    return gibbs, [np.ones(p + 1) for _ in gibbs], log_gaps


def _row_effects(gibbs: FactorState, codes: np.ndarray) -> np.ndarray:
    return np.sum([u[codes[:, k]] for k, u in enumerate(gibbs.u)], axis=0)


def _step(model, design, response, go, counts, weights, gibbs, mixing, scales, rng):
    """One weighted multi-factor Gibbs step (unit error variance) and the Student-t mixing variances."""
    cross = factor_cross_products(design, response, go, counts, weights=weights)
    prior = (0.0, 0.0) + _TAU_PRIOR
    multi_factor_gibbs(
        design, response, go, counts, cross, gibbs, 1, prior, rng,
        weights=weights, beta_precision=1.0 / (scales**2 * mixing),
    )  # fmt: skip
    return student_t_mixing(gibbs.beta, scales, float(model.prior_df), rng)


def fit_categorical_factors(model, y, observed, X, roles, groups, rng, state, context):
    """Draw of :class:`~skmlmi.conditional.RandomEffectsCategorical` with a random intercept per factor."""
    from .random_effects_discrete import _ordered_log_posterior, _ordered_proposal_chol

    name = model._name(context)
    refuse_random_slopes(name, roles)
    K = int(context.n_categories) if context.n_categories else 2
    ordered = bool(context.ordered) and K > 2
    counts = tuple(int(c) for c in context.factor_counts)
    p = X.shape[1]
    state = model._reuse_state(state, FactorCategoricalState, p, counts=counts, n_categories=K, ordered=ordered)
    codes = model._observed_codes(y, observed, K, context).astype(np.intp)
    go = groups[observed]
    std = Standardiser.fit(X[observed])
    design = std.design(X[observed])
    scales = model._prior_scales(p)
    if state is None:
        gibbs, mixing, log_gaps = _start(codes, K, ordered, p, counts)
        log_unobserved_units(go, counts, context, context.log)
    else:  # the chain's parameters, restandardised by this visit's means and SDs
        transfer = state.std.transfer(std)
        gibbs = [FactorState([u.copy() for u in g.u], g.tau2.copy(), 1.0, transfer @ g.beta) for g in state.gibbs]
        mixing, log_gaps = [m.copy() for m in state.mixing], state.log_gaps
    n = len(codes)
    if ordered:
        eta = design @ gibbs[0].beta + _row_effects(gibbs[0], go)
        chol = _ordered_proposal_chol(log_gaps, eta, codes)
        current = _ordered_log_posterior(log_gaps, eta, codes)[0]
        ones = np.ones(n)
        for _ in range(model._n_steps(state)):  # loop over Gibbs steps
            for _ in range(2):  # two Metropolis proposals of the cutpoints per step
                proposal = log_gaps + chol @ rng.standard_normal(len(log_gaps))
                value = _ordered_log_posterior(proposal, eta, codes)[0]
                if np.log(rng.random()) < value - current:
                    log_gaps, current = proposal, value
            gamma = np.r_[-np.inf, 0.0, np.cumsum(np.exp(log_gaps)), np.inf]
            latent = truncated_normal(eta, gamma[codes], gamma[codes + 1], rng)
            mixing[0] = _step(model, design, latent, go, counts, ones, gibbs[0], mixing[0], scales, rng)
            eta = design @ gibbs[0].beta + _row_effects(gibbs[0], go)
            current = _ordered_log_posterior(log_gaps, eta, codes)[0]
        cutpoints = np.r_[0.0, np.cumsum(np.exp(log_gaps))]  # gamma_0 = 0 identifies the intercept
    else:
        eta = np.zeros((n, K))
        for k in range(1, K):
            eta[:, k] = design @ gibbs[k - 1].beta + _row_effects(gibbs[k - 1], go)
        for _ in range(model._n_steps(state)):  # loop over Gibbs steps
            for k in range(1, K):  # and over categories: each given the others
                log_rest = special.logsumexp(np.delete(eta, k, axis=1), axis=1)
                omega = polya_gamma(eta[:, k] - log_rest, rng)
                response = ((codes == k) - 0.5) / omega + log_rest
                mixing[k - 1] = _step(
                    model, design, response, go, counts, omega, gibbs[k - 1], mixing[k - 1], scales, rng
                )
                eta[:, k] = design @ gibbs[k - 1].beta + _row_effects(gibbs[k - 1], go)
        cutpoints = None
    new_state = FactorCategoricalState(p, counts, K, ordered, gibbs, mixing, log_gaps if ordered else None, std)
    parts = [
        FactorLogisticDraw(g.beta.copy(), [u.copy() for u in g.u], np.sqrt(g.tau2), std, name) for g in gibbs
    ]  # fmt: skip
    return FactorCategoricalDraw(parts, cutpoints), new_state
