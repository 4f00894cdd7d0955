"""Random-effects Poisson model for counts (micemd's ``2l.glm.pois``, with a proper posterior draw).

This room holds one model, :class:`RandomEffectsPoisson`: a count y_ij of row i in cluster j
is Poisson with log-mean f_ij' beta + z_ij' b_j and b_j ~ N(0, Psi). Its sampler is a
Metropolis-within-Gibbs sampler whose proposals are one Newton (IRLS) step from the current
point (Gamerman 1997), for the random effects of every cluster at once (per-cluster gradients
and information matrices are ``np.add.reduceat`` sums over cluster-sorted rows; the
accept/reject decision is per cluster) and for the fixed effects as one block, plus an exact
Gibbs step of the fixed effects of the random part in the centred parametrisation, which
keeps the intercept from mixing slowly against the random intercepts. Nothing here loops over
rows or clusters; loops run over Gibbs steps.

It shares the priors, the standardised design, the population draws of unseen clusters and
the logged events with the discrete random-effects models (:mod:`.random_effects_discrete`).
It knows nothing about DataFrames, column names or the chained-equations loop; names arrive
only through :class:`~skmlmi.conditional.base.DrawContext`, for messages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._kernels import (
    Standardiser,
    compress_clusters,
    inverse_wishart,
    sort_by_cluster,
    student_t_mixing,
)
from .random_effects_discrete import (
    _PSI_PRIOR_SCALE,
    GLMMDraw,
    GLMMState,
    _check_groups,
    _DiscreteRandomEffectsBase,
    _log_few_clusters,
    _log_systematic,
)

__all__ = ["RandomEffectsPoisson"]

# exp(709) is the largest finite double: a log-mean above this in a proposal means a rejected
# proposal (its log-likelihood is hugely negative), not an overflow.
_MAX_ETA_FIT = 700.0
# Imputations: the log-mean capped at 30 (exp(30) ~ 1e13) so that an extreme population draw
# of a new cluster's effect cannot overflow numpy's Poisson sampler (as TwoStagePoisson).
_MAX_ETA_IMPUTE = 30.0
# Damped Newton iterations of the start values (first visit): enough from the observed log mean rate.
_START_ITERATIONS = 10


# =========================================================================== the Newton-proposal step
def _newton_parts(z, offset, y, theta, prior_precision, block, starts):
    """Per block: log posterior, the Newton step's end point theta + H^-1 g, and the Cholesky factor of H.

    See :func:`_newton_metropolis` for the notation; (K, d) coefficients, (K, d, d) factors.
    """
    n_blocks, d = theta.shape
    eta = offset + np.einsum("nd,nd->n", z, theta[block])
    mu = np.exp(np.minimum(eta, _MAX_ETA_FIT))
    log_target = np.add.reduceat(y * eta - mu, starts) - 0.5 * np.einsum("kd,de,ke->k", theta, prior_precision, theta)
    gradient = np.add.reduceat(z * (y - mu)[:, None], starts, axis=0) - theta @ prior_precision
    weighted = mu[:, None] * z
    if d == 1:
        information = np.add.reduceat(weighted * z, starts, axis=0)[:, :, None]
    else:
        products = (weighted[:, :, None] * z[:, None, :]).reshape(len(y), d * d)
        information = np.add.reduceat(products, starts, axis=0).reshape(n_blocks, d, d)
    chol = np.linalg.cholesky(information + prior_precision[None])
    step = np.linalg.solve(np.swapaxes(chol, 1, 2), np.linalg.solve(chol, gradient[:, :, None]))[:, :, 0]
    return log_target, theta + step, chol


def _newton_mode(z, offset, y, theta, prior_precision, block, starts, n_iter=_START_ITERATIONS):
    """Damped Newton iterations towards each block's conditional mode (start values only).

    Far from the mode a Newton-step proposal is rarely accepted (its reverse density is tiny),
    so the first visit starts the chain near the mode. Steps are capped at 1 on the log scale:
    from a log-mean far below the data an undamped step overshoots.
    """
    for _ in range(n_iter):
        mean = _newton_parts(z, offset, y, theta, prior_precision, block, starts)[1]
        step = mean - theta
        theta = theta + step / np.maximum(1.0, np.abs(step).max(axis=1, keepdims=True))
    return theta


def _newton_metropolis(
    z: np.ndarray,
    offset: np.ndarray,
    y: np.ndarray,
    current: np.ndarray,
    prior_precision: np.ndarray,
    block: np.ndarray,
    starts: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """One Metropolis-Hastings step per block, proposals by one Newton step (Gamerman 1997).

    Block k holds the coefficients theta_k (d,) of the rows ``starts[k]:starts[k + 1]`` (rows
    sorted by block; ``block`` is each row's block), with log-mean eta_i = offset_i + z_i' theta_k
    and prior theta_k ~ N(0, prior_precision^-1). Its log posterior, gradient and negative Hessian are

        l(theta) = sum_i (y_i eta_i - exp(eta_i)) - theta' P theta / 2,
        g(theta) = sum_i z_i (y_i - mu_i) - P theta,    H(theta) = sum_i mu_i z_i z_i' + P,

    and the proposal is theta' ~ N(theta + H^-1 g, H^-1), all evaluated at the current theta, so
    the acceptance ratio carries the reverse proposal density at theta'. Every block is proposed
    and accepted at once: (K, d, d) stacks and ``np.add.reduceat`` sums, no loop over blocks.

    Returns the new coefficients (K, d) and the acceptance indicator (K,).
    """
    n_blocks, d = current.shape

    def parts(theta):
        return _newton_parts(z, offset, y, theta, prior_precision, block, starts)

    def log_proposal(theta, mean, chol):
        # N(mean, (L L')^-1): log density up to the constant, 1/2 log|L L'| - |L'(theta - mean)|^2 / 2
        scaled = np.einsum("kde,kd->ke", chol, theta - mean)
        return np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1) - 0.5 * (scaled**2).sum(axis=1)

    log_now, mean_now, chol_now = parts(current)
    noise = rng.standard_normal((n_blocks, d, 1))
    proposal = mean_now + np.linalg.solve(np.swapaxes(chol_now, 1, 2), noise)[:, :, 0]
    log_new, mean_new, chol_new = parts(proposal)
    log_ratio = (
        log_new - log_now + log_proposal(current, mean_new, chol_new) - log_proposal(proposal, mean_now, chol_now)
    )
    with np.errstate(invalid="ignore"):  # a NaN ratio (an overflowing proposal) is a rejection
        accept = np.log(rng.random(n_blocks)) < log_ratio
    return np.where(accept[:, None], proposal, current), accept


def _recentre(beta, b, random, prior_variance, psi, rng):
    """Exact Gibbs draw of the fixed effects of the random part in the centred parametrisation.

    With c_j = beta_R + b_j (beta_R: the coefficients of the intercept and the random-slope
    columns) the likelihood depends on beta_R only through the c_j, so given c and Psi,

        beta_R | c ~ N(A^-1 Psi^-1 sum_j c_j, A^-1),   A = D^-1 + J Psi^-1,

    D the prior variances of beta_R. Alternating this draw with the non-centred updates
    (Papaspiliopoulos, Roberts & Skold 2007; Yu & Meng 2011) lets the intercept move with the
    random intercepts instead of against them.
    """
    centred = b + beta[random]
    psi_inverse = np.linalg.inv(psi)
    precision = np.diag(1.0 / prior_variance[random]) + len(b) * psi_inverse
    chol = np.linalg.cholesky(0.5 * (precision + precision.T))
    mean = np.linalg.solve(chol.T, np.linalg.solve(chol, psi_inverse @ centred.sum(axis=0)))
    beta_random = mean + np.linalg.solve(chol.T, rng.standard_normal(len(random)))
    beta = beta.copy()
    beta[random] = beta_random
    return beta, centred - beta_random


# =========================================================================== state and draw
@dataclass
class _PoissonState(GLMMState):
    acceptance: tuple = (np.nan, np.nan)  # of the random-effects and fixed-effects proposals, last visit


class _PoissonDraw(GLMMDraw):
    """One draw (beta, b, Psi) of the random-effects Poisson model; its linear predictor is the log mean."""

    log_mean = GLMMDraw.linear_predictor

    def sample(self, X, groups, rng):
        if groups is None:
            raise ValueError("RandomEffectsPoisson draws need cluster codes to impute.")
        eta = self.log_mean(np.asarray(X, dtype=float), groups, rng)
        return rng.poisson(np.exp(np.minimum(eta, _MAX_ETA_IMPUTE))).astype(float)


# =========================================================================== the model
class RandomEffectsPoisson(_DiscreteRandomEffectsBase):
    """Multilevel Poisson imputation of counts with random intercept and slopes (micemd's ``2l.glm.pois``).

    Model, for row i of cluster j::

        y_ij ~ Poisson(mu_ij),   log mu_ij = f_ij' beta + z_ij' b_j,   b_j ~ N_q(0, Psi),

    f_ij = (1, x_ij) holds every predictor (fixed effects for roles 1 and 2, and the
    cluster-mean columns the engine adds for roles 3 and 4), z_ij = (1, x_ij[role 2]) the
    random intercept and the random slopes of the role-2 (and 4) predictors.

    Priors as :class:`~skmlmi.conditional.RandomEffectsLogistic`, on predictors centred and
    scaled by two standard deviations (so the imputations do not depend on the predictors'
    units or origin): beta_k ~ Student-t(``prior_df``, 0, ``prior_scale``) (log rate ratio per
    two SD), intercept scale 10; Psi ~ IW(q, 0.1 I_q) (proper: Psi stays positive definite with
    few clusters; a log-rate variance of 0.1 is an ICC of the log-rate of about 0.1).

    Sampler, ``n_gibbs`` steps per visit (Metropolis within Gibbs):

    1. every b_j | beta, Psi by a Metropolis-Hastings step whose proposal is one Newton (IRLS)
       step from the current b_j with the inverse information as covariance (Gamerman 1997),
       for all clusters at once, accepted cluster by cluster;
    2. beta | b by the same kind of step, one block;
    3. the intercept and random-slope coefficients beta_R | b, Psi exactly, in the centred
       parametrisation c_j = beta_R + b_j (Papaspiliopoulos, Roberts & Skold 2007): the
       intercept then moves with the random intercepts, not against them;
    4. Psi | b ~ IW(q + J_obs, 0.1 I + sum_j b_j b_j') over the J_obs clusters with observed y;
    5. the Student-t mixing variances.

    Each step leaves the posterior invariant, so the chain's draws of (beta, b, Psi) are
    posterior draws: a proper imputation model. micemd's ``2l.glm.pois`` instead draws beta
    from the glmer fit's normal approximation, Psi from an inverse Wishart given the fitted
    b-hat, and every cluster's effect from N(0, Psi*) -- also for clusters with observed
    counts, which loses the cluster's own information and understates the ICC of the
    imputations ([quirk] of R_METHODS.md, 3.12).

    The state (beta, b, Psi, the mixing variances) is carried across visits of the same chain
    (warm start). The first visit runs ``4 * n_gibbs + 10`` steps from the observed log mean
    rate, b = 0 and Psi = I. Imputations: y* ~ Poisson(exp(f' beta* + z' b*_j)), the log-mean
    capped at 30. Clusters without observed y (systematically missing) and clusters unseen at
    fit take b*_j ~ N(0, Psi*), one draw per cluster shared by its rows.

    The model assumes the counts are Poisson given the predictors and the cluster: no extra
    variation within clusters (overdispersion), and no bound (a score out of 10 is not a
    count). Where that fails, :class:`~skmlmi.conditional.RandomEffectsPMM` keeps the observed
    distribution; the defaults choose this model only for columns that look like such counts
    (:func:`~skmlmi.recommend.is_count_column`).

    A count that strongly predicts a continuous variable o of the imputation model is not
    Poisson given o: with o = a + c y + e, e ~ N(0, s^2), p(y | o, ...) carries a factor
    exp(-c^2 y^2 / (2 s^2)), an underdispersion no log-linear model in o can express, so the
    imputations are too spread and attenuate o's relation to y. In
    ``benchmarks/validate_random_effects_poisson.py`` (50 clusters, ICC 0.3, c = 0.3) the slope
    of o on y in the pooled mixed model differed from the complete-data slope by -0.036 (MC SE
    0.002, 100 replications; coverage 0.78) with s = 1, where RandomEffectsPMM gave -0.007 (MC
    SE 0.002), and by -0.0004 (MC SE 0.006, 60 replications) with s = 3. The defaults
    therefore keep this model for a count only where a Poisson regression of the count on its
    predictors (cluster fixed effects) has a Pearson dispersion within min(0.05, 2 SE) of 1, and
    give it ``RandomEffectsPMM`` otherwise (the planner's check, logged; with s = 1 the
    dispersion is about 0.88). Given by hand, this model is used as given: where a count is a
    strong predictor of another variable, prefer ``RandomEffectsPMM`` (``"2l.pmm"``).

    Parameters
    ----------
    n_gibbs : int, default=5
        Gibbs steps per visit. Each costs four passes over the observed rows (a proposal and
        its reverse density for the random and for the fixed effects).
    prior_scale : float, default=2.5
        Scale of the Student-t prior of each standardised slope (log rate ratio per two
        standard deviations of the predictor).
    prior_df : float, default=7.0
        Degrees of freedom of that prior; ``np.inf`` gives a normal prior.

    Notes
    -----
    Cost per Gibbs step: O(n p^2 + n q^2) for the per-cluster and total information matrices
    (``np.add.reduceat`` over cluster-sorted rows), O(J q^3 + p^3) for the batched Cholesky
    factors. No Python loop over rows or clusters. The acceptance rates of the last visit are
    kept in the chain state (``acceptance``: random effects, fixed effects); with counts of a
    few per row they are typically 0.8-0.99.

    References
    ----------
    Gamerman, D. (1997). Sampling from the posterior distribution in generalized linear mixed
    models. Statistics and Computing 7, 57-68.
    Papaspiliopoulos, O., Roberts, G. O. & Skold, M. (2007). A general framework for the
    parametrization of hierarchical models. Statistical Science 22, 59-73.
    Audigier, V. et al. (2018). Multiple imputation for multilevel data with continuous and
    binary variables. Statistical Science 33, 160-183.

    Examples
    --------
    >>> import numpy as np
    >>> from skmlmi.conditional import DrawContext, RandomEffectsPoisson
    >>> rng = np.random.default_rng(0)
    >>> groups = np.repeat(np.arange(20), 30); x = rng.normal(size=(600, 1))
    >>> y = rng.poisson(np.exp(0.5 + 0.3 * x[:, 0] + 0.5 * rng.normal(size=20)[groups])).astype(float)
    >>> observed = rng.random(600) < 0.7
    >>> context = DrawContext(target="y", kind="integer", n_clusters=20)
    >>> draw, state = RandomEffectsPoisson().draw(y, observed, x, np.array([1]), groups, rng, None, context)
    >>> imputed = draw.sample(x[~observed], groups[~observed], rng)
    >>> bool((imputed >= 0).all() and (imputed == np.round(imputed)).all())
    True
    """

    target_kinds = frozenset({"integer"})
    r_names = {"2l.glm.pois": {}}
    accepted_roles = frozenset({1, 2, 3, 4})

    def _draw(self, y, observed, X, roles, groups, rng, state, context):
        name = f"{type(self).__name__} for {context.target!r}"
        J = context.n_clusters
        _check_groups(groups, J, name)
        yo = self._observed_counts(y, observed, groups, context)
        go, present_codes, present = compress_clusters(groups[observed], J)
        n_obs_clusters = len(present_codes)
        p = X.shape[1]
        random = np.r_[0, 1 + np.flatnonzero(roles == 2)].astype(np.intp)
        q = len(random)
        std = Standardiser.fit(X[observed])
        # Rows sorted by cluster: per-cluster sums are then single np.add.reduceat calls.
        order, starts = sort_by_cluster(go, n_obs_clusters)
        design, go, yo = std.design(X[observed])[order], go[order], yo[order]
        scales = self._prior_scales(p)
        _log_few_clusters(q, n_obs_clusters, context)

        if state is None or state.n_columns != p or state.random != tuple(random) or state.b_std.shape[0] != J:
            beta = np.zeros(p + 1)
            beta[0] = np.log(max(yo.mean(), 0.5 / len(yo)))
            b = np.zeros((n_obs_clusters, q))
            psi = np.eye(q)
            mixing = np.ones(p + 1)
            state = None
        z = design[:, random]
        whole = np.zeros(1, dtype=np.intp)
        rows_in_one_block = np.zeros(len(yo), dtype=np.intp)
        if state is None:  # start near the conditional modes given Psi = I (see _newton_mode)
            prior = np.diag(1.0 / scales**2)
            for _ in range(3):
                b = _newton_mode(z, design @ beta, yo, b, np.linalg.inv(psi), go, starts)
                random_part = np.einsum("nq,nq->n", z, b[go])
                beta = _newton_mode(design, random_part, yo, beta[None], prior, rows_in_one_block, whole)[0]
        else:  # the chain's parameters, restandardised by this visit's means and SDs
            beta, b, psi, mixing = state.restandardised(std, present_codes)
        n_steps = self._n_steps(state)
        accepted_b = accepted_beta = 0.0
        for _ in range(n_steps):
            prior_variance = scales**2 * mixing
            b, accept_b = _newton_metropolis(z, design @ beta, yo, b, np.linalg.inv(psi), go, starts, rng)
            random_part = np.einsum("nq,nq->n", z, b[go])
            beta_block, accept_beta = _newton_metropolis(
                design, random_part, yo, beta[None], np.diag(1.0 / prior_variance), rows_in_one_block, whole, rng
            )
            beta, b = _recentre(beta_block[0], b, random, prior_variance, psi, rng)
            psi = inverse_wishart(q + n_obs_clusters, _PSI_PRIOR_SCALE * np.eye(q) + b.T @ b, rng)
            mixing = student_t_mixing(beta, scales, float(self.prior_df), rng)
            accepted_b += accept_b.mean()
            accepted_beta += float(accept_beta[0])

        acceptance = (accepted_b / n_steps, accepted_beta / n_steps)
        if min(acceptance) < 0.2:
            context.log(
                f"{context.target!r}: Metropolis acceptance {acceptance[0]:.2f} (random effects), "
                f"{acceptance[1]:.2f} (fixed effects) in this visit; the chain mixes slowly, raise n_gibbs"
            )
        _log_systematic(present, groups, context, "random effects")
        b_full = np.full((J, q), np.nan)
        b_full[present_codes] = b
        new_state = _PoissonState(p, tuple(random), beta, b_full, psi, mixing, std, acceptance)
        return _PoissonDraw(beta, b_full, psi, random[1:] - 1, std), new_state

    def _observed_counts(self, y, observed, groups, context) -> np.ndarray:
        """The observed counts; a value that is not a non-negative whole number is an error naming its cluster."""
        yo = y[observed]
        bad = (yo < 0) | (yo != np.floor(yo))
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            cluster = context.cluster_name(int(groups[observed][first]))
            raise ValueError(
                f"{type(self).__name__} for {context.target!r}: the observed values must be counts (non-negative "
                f"whole numbers); found {float(yo[first]):g} in cluster {cluster!r} ({int(bad.sum())} such value(s)). "
                "Use RandomEffectsPMM or RandomEffectsNormal for other numbers."
            )
        if not yo.any():
            context.log(
                f"{context.target!r} is 0 in every observed row: the imputations follow the priors "
                "(intercept scale 10 on the log rate), mostly zeros"
            )
        return yo
