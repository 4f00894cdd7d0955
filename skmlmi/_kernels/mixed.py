"""Draws of Gaussian linear mixed models, all clusters at once.

The Polya-Gamma augmented logit and the probit latent model are, given their latent
variables, weighted linear mixed models: fixed effects drawn with the random effects
integrated out, then every cluster's effects given them, on ``(J, q, q)`` stacks built by one
``np.add.reduceat`` over rows sorted by cluster; and random effects of clusters without data
from the population distribution. The normal linear mixed model of
:class:`~skmlmi.conditional.RandomEffectsNormal` runs its Gibbs steps here on per-cluster
cross-products only (:class:`MixedCrossProducts`, one pass over the rows per visit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from .clusters import cluster_counts, cluster_cross_products, cluster_sums, constant_within_clusters, rows_of_clusters
from .designs import power_of_two_exponents, redundant_columns_from_moments
from .distributions import wishart_precision_draw
from .linalg import batched_inverse_factor, batched_small_cholesky, lower_inverse, ridge_cholesky

__all__ = [
    "MixedCrossProducts",
    "RandomEffectsPosterior",
    "normal_mixed_gibbs",
    "cluster_blocks",
    "collapsed_mixed_draw",
    "population_effects",
    "FactorState",
    "FactorSlopeState",
    "factor_designs",
    "factor_row_effects",
    "multi_factor_slopes_gibbs",
    "factor_cross_products",
    "multi_factor_gibbs",
]


# |mean| / SD of an uncentred column beyond which its raw second moments lose more than ~1e-8
# of its variance to cancellation (eps * 1e4^2 ~ 2e-8)
_CANCELLATION = 1e4


def cluster_blocks(
    design: np.ndarray, random: np.ndarray, weights: np.ndarray, starts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-products of a weighted mixed model: total F'WF and per-cluster F_j'W_j Z_j.

    Rows are sorted by cluster (cluster j occupies ``starts[j]:starts[j + 1]``); Z is the
    sub-matrix ``design[:, random]``. Returns ``(FWF, FWZ)`` with shapes (m, m) and
    (J, m, q): one matrix product and one ``np.add.reduceat`` over the (n, m q) products,
    never an n x J matrix.
    """
    weighted = design * weights[:, None]
    total = weighted.T @ design
    m, q = design.shape[1], len(random)
    if q == 1 and random[0] == 0:  # random intercept only (design[:, 0] is the intercept column)
        products = weighted
    else:
        products = (weighted[:, :, None] * design[:, None, random]).reshape(len(design), m * q)
    blocks = np.add.reduceat(products, starts, axis=0).reshape(len(starts), m, q)
    return total, blocks


def collapsed_mixed_draw(
    total: np.ndarray,
    blocks: np.ndarray,
    design: np.ndarray,
    random: np.ndarray,
    response: np.ndarray,
    starts: np.ndarray,
    psi_inverse: np.ndarray,
    prior_precision: np.ndarray,
    rng: np.random.Generator,
    prior_mean_b: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Joint draw of (beta, b_1..b_J) in a weighted Gaussian linear mixed model.

    The likelihood is exp(sum_i r_i eta_i - 1/2 sum_i w_i eta_i^2) with
    eta_i = f_i' beta + z_i' b_j, which is the Polya-Gamma augmented logit
    (w = omega, r = y - 1/2) and the unit-variance probit latent model (w = 1, r = z).
    Priors beta ~ N(0, diag(1 / prior_precision)) and b_j ~ N(m_j, Psi).
    With P_j = Psi^-1 + Z_j'W_j Z_j and g_j = Z_j' r_j + Psi^-1 m_j, integrating out b_j gives

        beta | . ~ N(A^-1 a, A^-1),  A = D + F'WF - sum_j F_j'W_j Z_j P_j^-1 Z_j'W_j F_j,
                                     a = F'r - sum_j F_j'W_j Z_j P_j^-1 g_j,

    and then b_j | beta, . ~ N(P_j^-1 (g_j - Z_j'W_j F_j beta), P_j^-1), for all clusters at
    once on (J, q, q) stacks. Drawing beta with b integrated out avoids the slow mixing
    of the intercept against the random intercepts that a two-block Gibbs sampler has.
    Rows are sorted by cluster, cluster j starting at ``starts[j]`` (:func:`sort_by_cluster`).
    """
    n_clusters, m, q = blocks.shape
    zr = np.add.reduceat(response[:, None] * design[:, random], starts, axis=0)  # rows sorted by cluster
    if prior_mean_b is not None:
        zr = zr + prior_mean_b @ psi_inverse.T
    precision_b = psi_inverse[None] + blocks[:, random, :]
    rhs = np.concatenate([np.swapaxes(blocks, 1, 2), zr[:, :, None]], axis=2)  # (J, q, m + 1)
    solved = np.linalg.solve(precision_b, rhs)
    a_matrix = np.diag(prior_precision) + total - np.einsum("jaq,jqb->ab", blocks, solved[:, :, :m])
    a_vector = design.T @ response - np.einsum("jaq,jq->a", blocks, solved[:, :, m])
    a_matrix = 0.5 * (a_matrix + a_matrix.T)
    chol = np.linalg.cholesky(a_matrix)
    mean = np.linalg.solve(chol.T, np.linalg.solve(chol, a_vector))
    beta = mean + np.linalg.solve(chol.T, rng.standard_normal(m))
    b_mean = solved[:, :, m] - np.einsum("jqa,a->jq", solved[:, :, :m], beta)
    chol_b = np.linalg.cholesky(precision_b)
    noise = np.linalg.solve(np.swapaxes(chol_b, 1, 2), rng.standard_normal((n_clusters, q, 1)))[:, :, 0]
    return beta, b_mean + noise


def population_effects(groups: np.ndarray, known: np.ndarray, psi: np.ndarray, rng: np.random.Generator):
    """Random effects of rows' clusters, drawing new clusters from N(0, Psi).

    ``known`` (J, q) holds the drawn effects of clusters with observed data and NaN rows
    for the others. Clusters whose code is >= J (unseen at fit) or whose row is NaN
    (systematically missing) get one N(0, Psi) draw each, shared by all their rows.
    """
    q = known.shape[1]

    def draw_new(codes, inverse, rows):
        # Psi is on the data's scale (a slope's variance is in 1/x^2 units): factor its correlation
        # form, whose jitter of 1e-12 is then relative to each effect's own variance
        sd = np.sqrt(np.diag(psi))
        sd = np.where(sd > 0, sd, 1.0)
        chol = sd[:, None] * np.linalg.cholesky(psi / np.outer(sd, sd) + 1e-12 * np.eye(q))
        return rng.standard_normal((len(codes), q)) @ chol.T

    return rows_of_clusters(known, groups, draw_new, missing_is_new=True)


# --------------------------------------------------------------------------- normal linear mixed model
class MixedCrossProducts:
    """Cross-products of the observed rows that the Gibbs steps need (no row data kept).

    y is centred at its observed mean and the fixed-only (role-1) columns at theirs;
    both shifts move only the intercept (flat prior), and they keep the cross-products
    free of cancellation. Random-slope columns are left as they are, because shifting
    them would re-define the random intercept and change what Psi's prior means.
    Columns that are constant or collinear on the observed rows are dropped here,
    judged from the same cross-products (one pass over the rows instead of two).

    The cross-products are built on the caller's scale (products of two values within the
    accepted range 1e-100..1e100 cannot over- or underflow), then :meth:`rescale` divides
    y and every column by a power of two near its SD, exactly, before the Gibbs steps:
    their precisions, variance ratios and Woodbury products would otherwise overflow for y
    of order 1e-99 and a predictor of order 1e99.
    """

    def __init__(self, y, observed, X, roles, groups, n_clusters, heteroscedastic):
        rows = np.flatnonzero(observed)
        n, p = len(rows), X.shape[1]
        self.n, self.n_columns = n, p
        # Column-major working copy: every column contiguous, for fast bincount weights and
        # products, gathered column by column from the (column-major) design: each read and written
        # whole, about four times faster than gathering its rows and transposing them.
        Wt = np.empty((p + 1, n))
        for k in range(p):  # a loop over the few columns
            np.take(X[:, k], rows, out=Wt[k])
        means = Wt[:p].sum(axis=1) / n
        shift = np.where(roles == 1, means, 0.0)
        Wt[:p] -= shift[:, None]
        np.take(y, rows, out=Wt[p])
        self.y_shift = float(Wt[p].sum() / n)
        Wt[p] -= self.y_shift
        W = Wt.T
        # global cross-products of [1, W]
        sums = Wt.sum(axis=1)
        gram = Wt @ W
        cov = gram / n - np.outer(sums, sums) / n**2
        self.var_y = float(cov[p, p])
        self.var_x = np.diag(cov)[:p].copy()
        cov = cov[:p, :p]
        offset = np.abs(means - shift)  # random-slope columns stay uncentred (centring would redefine the intercept)
        if np.any(offset > _CANCELLATION * np.sqrt(np.maximum(np.diag(cov), 0.0))):
            # their raw moments lose the variance to cancellation (relative error ~ eps mean^2 / var):
            # the redundancy check gets centred moments (one more pass, only for such columns)
            centred = Wt[:p] - (means - shift)[:, None]
            cov = centred @ centred.T / n
        self.dropped = redundant_columns_from_moments(means, cov) if p else {}
        self.columns = np.array([k for k in range(p) if k not in self.dropped], dtype=int)
        if len(self.columns) < p:
            kept = np.concatenate([self.columns, [p]])
            Wt = Wt[kept]
            W = Wt.T
            sums = sums[kept]
            gram = gram[np.ix_(kept, kept)]
        self.shift = shift[self.columns]
        self.y_magnitude = abs(self.y_shift)  # the scale of a constant y
        self.x_magnitude = np.abs(means)
        pk = len(self.columns)
        self.p1 = pk + 1  # fixed-effects columns incl. intercept; y is column p1 of [1, W]
        self.counts = np.bincount(groups[rows], minlength=n_clusters)
        self.fitted = np.flatnonzero(self.counts > 0)
        self.empty = np.flatnonzero(self.counts == 0)  # systematically missing clusters
        compact = np.zeros(n_clusters, dtype=np.intp)
        compact[self.fitted] = np.arange(len(self.fitted))
        g = compact[groups[rows]]
        Jf = len(self.fitted)
        # candidate random-effect rows: intercept (0) and role-2 columns (positions in [1, W])
        self.candidates = self.columns[roles[self.columns] == 2]
        zidx = np.concatenate([[0], np.flatnonzero(roles[self.columns] == 2) + 1])
        self.zidx = zidx
        if heteroscedastic:
            full = cluster_cross_products(W, g, Jf)  # (Jf, p1 + 1, p1 + 1)
            self.XX_j = full[:, : self.p1, : self.p1]
            self.Xy_j = full[:, : self.p1, self.p1]
            self.yy_j = full[:, self.p1, self.p1]
            zw = full[:, zidx, :]
        else:
            zw = cluster_cross_products(W, g, Jf, left=zidx)
            D = np.empty((pk + 2, pk + 2))
            D[0, 0] = n
            D[0, 1:] = D[1:, 0] = sums
            D[1:, 1:] = gram
            self.XX = D[: self.p1, : self.p1]
            self.Xy = D[: self.p1, self.p1]
            self.yy = D[self.p1, self.p1]
        self.ZW = zw  # (Jf, q_candidates, p1 + 1)
        # a role-2 column constant within every cluster (the one rule) has no within-cluster slope
        self.slope_constant = self._slopes_constant(W, g, Jf)
        self.y_exponent, self.x_exponents = 0, np.zeros(p, dtype=int)
        self.set_slopes(np.arange(len(zidx)))

    def _slopes_constant(self, W, g, Jf) -> np.ndarray:
        """Which role-2 columns are constant within every cluster, by :func:`constant_within_clusters`.

        The cross-products give a cheap sufficient answer first: a cluster whose within-cluster sum
        of squares sum z^2 - (sum z)^2 / n_j exceeds 1e-8 n_j max|z|^2 (rounding can reach
        ~eps n_j max|z|^2) holds two values ~1e-4 max|z| apart, far beyond the rule's tolerance, so
        the column varies; only columns without such a cluster go through the rule itself.
        """
        slopes = self.zidx[1:]
        if not len(slopes):
            return np.zeros(0, dtype=bool)
        n_j = self.ZW[:, 0, 0]
        sums = self.ZW[:, 1:, 0]
        squares = self.ZW[:, np.arange(1, len(self.zidx)), slopes]
        with np.errstate(invalid="ignore", divide="ignore"):
            within = squares - sums**2 / n_j[:, None]
        largest = np.abs(W[:, slopes - 1]).max(axis=0)
        varies = np.any(within > 1e-8 * n_j[:, None] * largest**2, axis=0)
        constant = np.zeros(len(slopes), dtype=bool)
        unsure = np.flatnonzero(~varies)
        if len(unsure):
            constant[unsure] = constant_within_clusters(W[:, slopes[unsure] - 1], g, Jf)
        return constant

    def default_exponents(self) -> tuple[int, np.ndarray]:
        """Powers of two near the SD of y and of each column (their magnitude where the SD is 0)."""
        y_exponent = int(power_of_two_exponents(np.sqrt(max(self.var_y, 0.0)), self.y_magnitude)[0])
        return y_exponent, power_of_two_exponents(np.sqrt(np.maximum(self.var_x, 0.0)), self.x_magnitude)

    def rescale(self, y_exponent: int, x_exponents: np.ndarray) -> None:
        """Divide y by 2^y_exponent and column k by 2^x_exponents[k] in every stored cross-product.

        ``np.ldexp`` multiplies by an exact power of two, so the cross-products equal those of
        the rescaled data bit for bit; :meth:`set_slopes` must be called afterwards.
        """
        self.y_exponent, self.x_exponents = int(y_exponent), np.asarray(x_exponents, dtype=int)
        # exponent of each column of [1, W]: intercept, kept predictors, y
        e = np.concatenate([[0], self.x_exponents[self.columns], [self.y_exponent]])
        self.column_exponents = e
        self.var_y = float(np.ldexp(self.var_y, -2 * self.y_exponent))
        self.var_x = np.ldexp(self.var_x, -2 * self.x_exponents)
        p1 = self.p1
        if hasattr(self, "XX_j"):
            self.XX_j = np.ldexp(self.XX_j, -(e[:p1, None] + e[None, :p1]))
            self.Xy_j = np.ldexp(self.Xy_j, -(e[:p1] + e[p1]))
            self.yy_j = np.ldexp(self.yy_j, -2 * e[p1])
        else:
            self.XX = np.ldexp(self.XX, -(e[:p1, None] + e[None, :p1]))
            self.Xy = np.ldexp(self.Xy, -(e[:p1] + e[p1]))
            self.yy = float(np.ldexp(self.yy, -2 * e[p1]))
        self.ZW = np.ldexp(self.ZW, -(e[self.zidx][:, None] + e[None, :]))

    def beta_original(self, beta):
        """Fixed effects on the caller's scale: one per column of X (0 for dropped ones)."""
        out = np.zeros(self.n_columns + 1)
        out[self.columns + 1] = np.ldexp(beta[1:], self.y_exponent - self.x_exponents[self.columns])
        out[0] = np.ldexp(beta[0], self.y_exponent) + self.y_shift - self.shift @ out[self.columns + 1]
        return out

    def effect_exponents(self) -> np.ndarray:
        """Exponent taking each active random effect (intercept, then slopes) to the caller's scale."""
        return self.y_exponent - self.column_exponents[self.z_active]

    def effects_original(self, b):
        """Random effects (J, q) on the caller's scale."""
        return np.ldexp(b, self.effect_exponents())

    def psi_original(self, psi):
        """A (..., q, q) Psi on the caller's scale (may underflow where Psi is below ~1e-308 there)."""
        d = self.effect_exponents()
        return np.ldexp(psi, d[:, None] + d[None, :])

    def psi_sqrt_original(self, psi_sqrt):
        """A square root C of Psi (C C' = Psi) on the caller's scale: its rows rescaled."""
        return np.ldexp(psi_sqrt, self.effect_exponents()[:, None])

    def variance_original(self, variance):
        """Residual variances on the caller's scale."""
        return np.ldexp(variance, 2 * self.y_exponent)

    def set_slopes(self, keep):
        """Restrict the random-effects rows to ``keep`` (indices into zidx)."""
        zw = self.ZW[:, keep, :]
        self.z_active = self.zidx[keep]
        self.ZZ = zw[:, :, self.z_active]
        self.ZX = np.ascontiguousarray(zw[:, :, : self.p1])  # contiguous: ZX_flat @ beta is one BLAS call
        self.ZX_flat = self.ZX.reshape(-1, self.p1)
        self.Zy = zw[:, :, self.p1]
        self.mean_z2 = np.diagonal(self.ZZ, axis1=1, axis2=2).sum(0) / self.n  # E(z_k^2) over the rows


@dataclass
class RandomEffectsPosterior:
    """Conditional posterior of the fitted clusters' random effects given fixed effects beta_hat:
    b_j ~ N(mean_j, sd_j^2 L_j^-T L_j^-1), with L_j L_j' = Z_j'Z_j + sigma^2 Psi^-1 (the Gibbs step's),
    all in the sampler's units; ``exponents`` are the powers of two that map them to the caller's."""

    mean: np.ndarray  # (J_fitted, q)
    lower_inverse: np.ndarray  # (J_fitted, q, q): L_j^-1
    sd: Any  # residual SD: scalar, or (J_fitted, 1) when heteroscedastic
    exponents: np.ndarray  # (q,)

    def expected(self) -> np.ndarray:
        """The conditional posterior means b_hat_j on the caller's scale."""
        return np.ldexp(self.mean, self.exponents)

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """One draw of every fitted cluster's random effects, on the caller's scale."""
        z = self.sd * rng.standard_normal(self.mean.shape)
        return np.ldexp(self.mean + np.einsum("jki,jk->ji", self.lower_inverse, z), self.exponents)


def normal_mixed_gibbs(suff, state, n_steps, prior, heteroscedastic, rng):
    """Run ``n_steps`` Gibbs steps, updating ``state`` in place (fitted clusters only).

    Each step: (beta, b) | Psi, sigma^2 jointly (beta from its marginal posterior with b
    integrated out, then b_j | beta), Psi | b, sigma^2 | beta, b (and the hierarchical
    hyperparameters when heteroscedastic). Returns the conditional posterior mean beta_hat of the
    fixed effects at the last step, the conditional posterior of the random effects given it (for
    PMM donors) and whether a ridge was needed.
    """
    a, Binv, c, Dinv = prior
    ZZ, ZX, Zy = suff.ZZ, suff.ZX, suff.Zy
    Jf, q = Zy.shape
    p1 = ZX.shape[2]
    n_j = suff.counts[suff.fitted].astype(float)
    fitted = suff.fitted
    trace_s, trace_root = np.empty(n_steps), np.empty((n_steps, q, q))
    precision = state.psi_precision
    psi_sqrt = state.psi_sqrt
    sigma2 = state.sigma2[fitted] if heteroscedastic else state.sigma2
    sigma0_sq, nu = state.sigma0_sq, state.nu
    ridged = False
    for step in range(n_steps):
        s2 = sigma2[:, None, None] if heteroscedastic else sigma2
        Linv, bad = batched_inverse_factor(ZZ + s2 * precision)  # M_j^-1 = L_j^-T L_j^-1, never formed
        ridged |= bool(bad.any())
        LZX = Linv @ ZX  # (Jf, q, p1): X_j'Z_j M_j^-1 Z_j'X_j = LZX_j' LZX_j
        LZy = np.einsum("jik,jk->ji", Linv, Zy)
        if heteroscedastic:
            w = 1.0 / sigma2
            wLZX = (w[:, None, None] * LZX).reshape(-1, p1)
            XVX = np.tensordot(w, suff.XX_j, axes=1) - wLZX.T @ LZX.reshape(-1, p1)
            XVy = w @ suff.Xy_j - wLZX.T @ LZy.reshape(-1)
        else:
            flat = LZX.reshape(-1, p1)
            XVX = (suff.XX - flat.T @ flat) / sigma2
            XVy = (suff.Xy - flat.T @ LZy.reshape(-1)) / sigma2
        Lb, ridge_b = ridge_cholesky(XVX, 1e-8)  # from XVX's lower triangle
        ridged |= ridge_b
        Lb_inv = lower_inverse(Lb)  # XVX^-1 = Lb^-T Lb^-1
        beta_hat = Lb_inv.T @ (Lb_inv @ XVy)
        beta = beta_hat + Lb_inv.T @ rng.standard_normal(p1)
        e = Zy - (suff.ZX_flat @ beta).reshape(Jf, q)  # Z_j'(y_j - X_j beta), (Jf, q)
        sd = np.sqrt(sigma2)[:, None] if heteroscedastic else np.sqrt(sigma2)
        # b_j = M_j^-1 e_j + sd L_j^-T z_j = L_j^-T (L_j^-1 e_j + sd z_j)
        u = np.einsum("jik,jk->ji", Linv, e) + sd * rng.standard_normal((Jf, q))
        b = np.einsum("jki,jk->ji", Linv, u)
        # Psi | b ~ IW(c + Jf, Dinv + sum_j b_j b_j')
        precision, psi_sqrt = wishart_precision_draw(Dinv + b.T @ b, c + Jf, rng)
        # residual sums of squares from the cross-products (no pass over rows)
        cross = np.einsum("jq,jq->j", b, np.einsum("jik,jk->ji", ZZ, b) - 2.0 * e)
        if heteroscedastic:
            rss_j = suff.yy_j - 2.0 * suff.Xy_j @ beta + np.einsum("jk,k->j", suff.XX_j @ beta, beta) + cross
            rss_j = np.maximum(rss_j, 0.0)
            precision_e = rng.gamma(n_j / 2 + nu / 2, 2.0 / (rss_j + nu * sigma0_sq))
            sigma2 = 1.0 / precision_e
            # hyperparameters of Kasim & Raudenbush (1998), as mice's 2l.norm
            inv_h = precision_e.mean()  # 1 / harmonic mean of sigma_j^2
            sigma0_sq = rng.gamma(Jf * nu / 2 + 1, 2.0 / (nu * Jf * inv_h))
            # log G - log sigma0^2 as the mean log of ratios: scale free, no difference of large logs
            log_ratio = float(np.mean(np.log(sigma2 / sigma0_sq)))
            rate = Jf * (sigma0_sq * inv_h + log_ratio - 1.0) / 2
            nu = rng.gamma(max(Jf / 2 - 1, 0.5), 1.0 / max(rate, 1e-12))
            nu = min(max(nu, 1e-3), 1e6)  # keep the Gamma shapes finite and positive
            trace_s[step] = sigma0_sq
        else:
            rss = suff.yy - 2.0 * suff.Xy @ beta + beta @ suff.XX @ beta + cross.sum()
            rss = max(float(rss), 0.0)
            sigma2 = 1.0 / rng.gamma((a + suff.n) / 2, 2.0 / (Binv + rss))
            trace_s[step] = sigma2
        trace_root[step] = psi_sqrt
    state.psi_precision, state.psi_sqrt = precision, psi_sqrt
    state.sigma0_sq, state.nu = float(sigma0_sq), float(nu)
    if heteroscedastic:
        state.sigma2[fitted] = sigma2
    else:
        state.sigma2 = float(sigma2)
    state.beta = suff.beta_original(beta)
    state.b = np.zeros((state.n_clusters, q))
    state.b[fitted] = b
    state.n_steps += n_steps
    state.trace = {"sigma2": trace_s, "psi": trace_root @ np.swapaxes(trace_root, 1, 2)}
    # PMM matchtype 1: the fixed effects' conditional posterior mean at the last step's variances,
    # and the random effects' conditional posterior given it, b_j | beta_hat ~ N(b_hat_j, sd^2 L_j^-T L_j^-1)
    # (mean and the factor that draws from it; see RandomEffectsPMM)
    b_hat = np.einsum("jki,jk->ji", Linv, np.einsum("jik,jk->ji", Linv, Zy - (suff.ZX_flat @ beta_hat).reshape(Jf, q)))
    return suff.beta_original(beta_hat), RandomEffectsPosterior(b_hat, Linv, sd, suff.effect_exponents()), ridged


# --------------------------------------------------------------------------- several grouping factors
@dataclass
class FactorState:
    """Gibbs state of a normal model with a random intercept per grouping factor (sampler's units).

    ``u[k]`` holds factor k's intercepts (length J_k), ``tau2[k]`` their variance, ``sigma2`` the
    residual variance; ``beta`` the fixed effects of the last block, intercept first.
    """

    u: list
    tau2: np.ndarray
    sigma2: float
    beta: np.ndarray | None = None


def factor_cross_products(
    X: np.ndarray, y: np.ndarray, codes: np.ndarray, counts, weights=None, pairs: dict | None = None
) -> dict:
    """What the Gibbs blocks of :func:`multi_factor_gibbs` reuse: X'X, X'y and, per factor, the
    cluster sizes, the per-cluster sums of the columns of X and of y (one ``np.bincount`` per
    column and factor; X holds the intercept column first). With per-row ``weights`` w, the
    weighted ones: X'WX, X'Wy, the clusters' sums of w, of w x and of w y. Without weights also
    y'y and the factors' co-occurrence counts (:func:`factor_pair_counts`, or ``pairs`` when the
    caller kept them from an earlier visit of the same rows), from which the Gibbs steps need no
    pass over the rows."""
    wX, wy = (X, y) if weights is None else (X * weights[:, None], weights * y)
    if weights is None:
        pairs = factor_pair_counts(codes, counts) if pairs is None else pairs
    sums = [None] * len(counts)
    for k in np.argsort(counts, kind="stable")[::-1]:  # the factor with most units (the innermost) first
        inner = None
        if weights is None:  # a factor already summed whose units lie within k's
            inner = next((f for f in range(len(counts)) if sums[f] is not None and _nested_in(pairs[f, k])), None)
        if inner is not None:  # nested: the sums of k's units add up those of the units within them
            parent = pairs[k, inner].astype(bool).astype(float)
            sums[k] = tuple(parent @ part for part in sums[inner])
            continue
        factor = np.ascontiguousarray(codes[:, k])
        sums[k] = (cluster_counts(factor, counts[k], weights), cluster_sums(wX, factor, counts[k]),
                   cluster_sums(wy, factor, counts[k]))  # fmt: skip
    cross = {"XX": wX.T @ X, "Xy": wX.T @ y, "factors": sums}
    if weights is None:
        cross["yy"] = float(y @ y)
        cross["pairs"] = pairs
    return cross


def _nested_in(N) -> bool:
    """Whether every row unit of the co-occurrence counts ``N`` (J_f x J_k) lies within one column unit."""
    return bool(np.all(np.diff(N.indptr) <= 1))


def factor_pair_counts(codes: np.ndarray, counts) -> dict:
    """N_kl = Z_k'Z_l for every ordered pair of factors k != l: the sparse J_k x J_l matrix counting the rows
    that lie in unit i of factor k and unit j of factor l (one entry per unit for nested factors, at most one
    per row for crossed ones). The rows' sums per unit of k of another factor's effects are then N_kl u_l: J_k
    values from the matrix's entries, not a pass over the rows."""
    n, K = codes.shape
    pairs = {}
    for k in range(K):
        for m in range(k + 1, K):
            N = sparse.coo_array((np.ones(n), (codes[:, k], codes[:, m])), shape=(counts[k], counts[m])).tocsr()
            pairs[k, m], pairs[m, k] = N, N.T.tocsr()
    return pairs


def multi_factor_gibbs(
    X,
    y,
    codes,
    counts,
    cross,
    state: FactorState,
    n_steps,
    prior,
    rng,
    donor_effects=False,
    weights=None,
    beta_precision=None,
):
    """``n_steps`` Gibbs steps of y = X beta + sum_k u_k[g_k] + e, u_k ~ N(0, tau_k^2), e ~ N(0, sigma^2).

    Blocks, for each factor k in turn: (beta, u_k) given the other factors' intercepts, drawn
    jointly (beta with u_k integrated out, then every u_kj given beta: the one-factor collapsed
    step of :func:`normal_mixed_gibbs`, on the response less the other factors' effects), then
    tau_k^2 | u_k from its inverse-gamma posterior (clusters with observed rows only; the
    others' intercepts are population draws). Then sigma^2 | everything. Crossed and nested
    factors are sampled alike, one factor given the others; every step is vectorised over the
    clusters of a factor, the only loop being over factors. Without weights no step passes over
    the rows: the other factors' intercepts summed over each unit's rows are N_kl u_l (the units'
    co-occurrence counts of :func:`factor_pair_counts`, in ``cross``), and sigma^2's residual sum
    of squares is expanded in the cross-products (recomputed from the rows where the fit is so
    close that the expansion would cancel); with weights, which change every step, the rows'
    effects are kept and summed per unit by ``np.bincount``.

    With per-row ``weights`` w (``cross`` from :func:`factor_cross_products` with the same weights)
    the errors are e_i ~ N(0, sigma^2 / w_i) with sigma^2 held at ``state.sigma2`` (not drawn): the
    Polya-Gamma augmented logit is this model with w = omega, y = (y - 1/2) / omega and sigma^2 = 1.
    ``beta_precision`` (p1,) gives beta the prior N(0, diag(sigma^2 / beta_precision)) (default flat).

    ``prior`` = (a, Binv, c, Dinv): sigma^2 ~ IW(a, Binv), tau_k^2 ~ IW(c, Dinv). Updates
    ``state`` in place; returns beta_hat (the fixed effects' conditional posterior mean in the last
    block) and, with ``donor_effects``, one more sweep of the intercepts drawn given beta_hat
    (predictive mean matching's donors) else None.
    """
    a, Binv, c, Dinv = prior
    n, p1 = X.shape
    K = len(counts)
    u = state.u
    codes = [np.ascontiguousarray(codes[:, k]) for k in range(K)]  # each factor's codes read whole
    pairs = cross.get("pairs")
    if pairs is None:  # weighted: the other factors' effects summed over the rows, kept per row
        rows_effect = [u[k][codes[k]] for k in range(K)]
        total = np.sum(rows_effect, axis=0)
    beta_hat = np.zeros(p1)

    def x_other(k):
        """X'W(sum of the other factors' intercepts) = sum over l != k of S_l'u_l, S_l the clusters' (weighted)
        sums of X: J_l x p values, not a pass over the n x p design."""
        return sum((cross["factors"][f][1].T @ u[f] for f in range(K) if f != k), np.zeros(p1))

    def z_other(k, effects):
        """Z_k'W(sum of the other factors' intercepts): each unit of k's (weighted) sum of them over its rows."""
        if pairs is not None:
            return sum((pairs[k, f] @ effects[f] for f in range(K) if f != k), np.zeros(counts[k]))
        other = total - rows_effect[k]
        return np.bincount(codes[k], weights=other if weights is None else weights * other, minlength=counts[k])

    def block(k, effects, fixed_beta=None):
        n_k, S, Zy = cross["factors"][k]
        Zr = Zy - z_other(k, effects)
        M = n_k + state.sigma2 / state.tau2[k]  # (J_k,): Z_j'Z_j + sigma^2 / tau^2
        if fixed_beta is None:
            SM = S / M[:, None]
            XVX = cross["XX"] - S.T @ SM
            XVy = cross["Xy"] - x_other(k) - SM.T @ Zr
            mean, beta = _beta_draw(XVX, XVy, state.sigma2, beta_precision, rng)
        else:
            mean = beta = fixed_beta
        effects = (Zr - S @ beta) / M + np.sqrt(state.sigma2 / M) * rng.standard_normal(counts[k])
        return mean, beta, effects

    for _ in range(n_steps):
        for k in range(K):
            beta_hat, beta, u[k] = block(k, u)
            fitted = cross["factors"][k][0] > 0
            ss = float(u[k][fitted] @ u[k][fitted])
            state.tau2[k] = 1.0 / rng.gamma((c + fitted.sum()) / 2, 2.0 / (Dinv + ss))
            if pairs is None:
                new = u[k][codes[k]]
                total += new - rows_effect[k]
                rows_effect[k] = new
        state.beta = beta
        if weights is not None:  # sigma^2 known (1 for the Polya-Gamma augmented logit)
            continue
        rss = None if pairs is None else _factor_rss(cross, beta, u)
        if rss is None or not rss > _RSS_CANCELLATION * cross["yy"]:  # near-exact fit: the expansion cancels
            rows_total = total if pairs is None else sum(u[k][codes[k]] for k in range(K))
            rss = _direct_rss(y, X, beta, rows_total)
        state.sigma2 = _sigma2_draw(rss, len(y), a, Binv, rng)
    donors = None
    if donor_effects:
        if pairs is None:
            donors = _donor_sweep(
                u, lambda k, fixed: block(k, u, fixed), beta_hat, lambda k, v: v[codes[k]], rows_effect, total
            )
        else:  # each factor's donors given the others' donors already drawn (a Gibbs sweep)
            donors = [v.copy() for v in u]
            for k in range(K):
                donors[k] = block(k, donors, beta_hat)[2]
    return beta_hat, donors


#: Residual sum of squares, as a share of y'y, below which it is recomputed from the rows: the
#: expansion from cross-products loses about eps * y'y to cancellation (1e-10 of the residual here).
_RSS_CANCELLATION = 1e-6


def _factor_rss(cross: dict, beta: np.ndarray, u: list) -> float:
    """|y - X beta - sum_k Z_k u_k|^2 from the cross-products (no pass over the rows):
    y'y - 2 beta'X'y + beta'X'X beta - 2 sum_k u_k'(Z_k'y - Z_k'X beta) + sum_k u_k'N_kk u_k
    + sum_{k != l} u_k'N_kl u_l, N_kk the units' sizes."""
    rss = cross["yy"] - 2.0 * beta @ cross["Xy"] + beta @ cross["XX"] @ beta
    for k, (n_k, S, Zy) in enumerate(cross["factors"]):
        rss += u[k] @ (n_k * u[k] - 2.0 * (Zy - S @ beta))
        rss += sum(u[k] @ (cross["pairs"][k, f] @ u[f]) for f in range(len(u)) if f != k)
    return float(rss)


def _direct_rss(y, X, beta, total) -> float:
    """|y - X beta - total|^2 from the rows, ``total`` the random effects' contribution to each row."""
    resid = y - X @ beta - total
    return float(resid @ resid)


def _beta_draw(XVX, XVy, sigma2, beta_precision, rng) -> tuple[np.ndarray, np.ndarray]:
    """beta | (one factor's effects integrated out) ~ N((X'V^-1X)^-1 X'V^-1 y, sigma^2 (X'V^-1X)^-1), with the
    prior precision diag(sigma^2 * beta_precision) added when given: (its mean, a draw)."""
    if beta_precision is not None:
        XVX = XVX + np.diag(sigma2 * beta_precision)
    L, _ = ridge_cholesky(0.5 * (XVX + XVX.T), 1e-8)
    mean = np.linalg.solve(L.T, np.linalg.solve(L, XVy))
    return mean, mean + np.sqrt(sigma2) * np.linalg.solve(L.T, rng.standard_normal(len(XVy)))


def _sigma2_draw(rss: float, n: int, a, Binv, rng) -> float:
    """sigma^2 | everything: the inverse gamma IW(a + n, Binv + RSS) of the residuals' sum of squares."""
    return 1.0 / rng.gamma((a + n) / 2, 2.0 / (Binv + rss))


def _donor_sweep(u, block, beta_hat, row_effect, rows_effect, total) -> list:
    """One more sweep of every factor's effects drawn given beta_hat (predictive mean matching's donors);
    ``row_effect(k, effects)`` gives factor k's contribution to each row."""
    donors = [v.copy() for v in u]
    for k in range(len(u)):
        _, _, donors[k] = block(k, beta_hat)
        new = row_effect(k, donors[k])
        total += new - rows_effect[k]
        rows_effect[k] = new
    return donors


# --------------------------------------------------------------------------- several factors, random slopes
@dataclass
class FactorSlopeState:
    """Gibbs state of a normal model with random effects (intercept and slopes) per grouping factor.

    ``u[k]`` holds factor k's effects, shape (J_k, q) (intercept first, then one slope per
    column of ``zcols`` after the first), ``psi[k]`` their (q, q) covariance, ``sigma2`` the
    residual variance, ``beta`` the fixed effects of the last block (sampler's units).
    """

    u: list
    psi: list
    sigma2: float
    beta: np.ndarray | None = None


def factor_designs(X: np.ndarray, zcols: list) -> list:
    """Each factor's random-effects design X[:, zcols[k]], gathered once; factors with the same terms share it."""
    gathered = {}
    for z in zcols:
        gathered.setdefault(tuple(z), np.ascontiguousarray(X[:, z]))
    return [gathered[tuple(z)] for z in zcols]


def _shared(arrays: list, make) -> list:
    """``make(a)`` for each array, computed once for arrays that are the same object (factors sharing terms)."""
    made: dict = {}
    for a in arrays:
        if id(a) not in made:
            made[id(a)] = make(a)
    return [made[id(a)] for a in arrays]


def factor_row_effects(Z: np.ndarray, u: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """z_i'u_{g_i} for every row: the factor's contribution to the linear predictor."""
    return np.einsum("iq,iq->i", Z, u[codes])


def multi_factor_slopes_gibbs(
    X,
    y,
    codes,
    counts,
    zcols,
    state: FactorSlopeState,
    n_steps,
    prior,
    rng,
    donor_effects=False,
    weights=None,
    beta_precision=None,
    Z=None,
):
    """``n_steps`` Gibbs steps of y = X beta + sum_k Z_k u_k[g_k] + e with u_kj ~ N(0, Psi_k), e ~ N(0, sigma^2).

    ``Z_k = X[:, zcols[k]]`` (each starting with 0, the intercept column): factor k's random terms,
    as lme4's ``(1 + x | a) + (1 | b)``; one array for all factors gives every factor the same terms,
    ``(1 + x | a) + (1 + x | b)``. The blocks are those of
    :func:`multi_factor_gibbs` with q x q effects per cluster: (beta, u_k) given the other factors'
    effects, beta with u_k integrated out (X'V^-1X = X'X - sum_j X_j'Z_j M_j^-1 Z_j'X_j, M_j =
    Z_j'Z_j + sigma^2 Psi_k^-1), then u_kj | beta ~ N(M_j^-1 Z_j'(r_j - X_j beta), sigma^2 M_j^-1),
    then Psi_k | u_k ~ IW(c + q - 1 + J_k^obs, Dinv I + sum_j u_kj u_kj') over the clusters with
    observed rows (the others' effects are population draws, M_j = sigma^2 Psi_k^-1); then
    sigma^2. Vectorised over the clusters of a factor ((J, q, q) stacks). ``prior``, ``weights``,
    ``beta_precision`` (the Polya-Gamma augmented logit: sigma^2 held at ``state.sigma2``) and the
    return value as :func:`multi_factor_gibbs`. ``Z``: the factors' designs from :func:`factor_designs`
    when the caller already holds them (a sampler calling once per Gibbs step).
    """
    a, Binv, c, Dinv = prior
    n, p1 = X.shape
    K = len(counts)
    zcols = [np.asarray(zcols)] * K if np.ndim(zcols[0]) == 0 else [np.asarray(z) for z in zcols]
    Z = factor_designs(X, zcols) if Z is None else Z
    codes = [np.ascontiguousarray(codes[:, k]) for k in range(K)]
    wX = X if weights is None else X * weights[:, None]
    wZ = Z if weights is None else _shared(Z, lambda Zk: Zk * weights[:, None])
    XX, Xy = wX.T @ X, wX.T @ y
    products = _shared(wZ, lambda Zk: (Zk[:, :, None] * X[:, None, :]).reshape(n, -1))  # z_i x_i' per row
    sums = []
    for k, J in enumerate(counts):
        q = zcols[k].size
        ZX = cluster_sums(products[k], codes[k], J).reshape(J, q, p1)
        Zy = cluster_sums(wZ[k] * y[:, None], codes[k], J)
        sums.append((ZX, ZX[:, :, zcols[k]], Zy, cluster_counts(codes[k], J) > 0))
    u = state.u
    rows_effect = [factor_row_effects(Z[k], u[k], codes[k]) for k in range(K)]
    total = np.sum(rows_effect, axis=0)
    beta_hat = np.zeros(p1)

    def block(k, fixed_beta=None):
        ZX, ZZ, Zy, _ = sums[k]
        other = total - rows_effect[k]
        Zr = Zy - cluster_sums(wZ[k] * other[:, None], codes[k], counts[k])
        precision = np.linalg.inv(state.psi[k])
        M = ZZ + state.sigma2 * precision
        Minv = np.linalg.inv(M)
        if fixed_beta is None:
            A = Minv @ ZX  # (J, q, p1)
            XVX = XX - np.einsum("jqp,jqr->pr", ZX, A)
            # X'W(other factors' effects) from their clusters' sums of z x' (no pass over the design)
            x_other = sum((np.einsum("jqp,jq->p", sums[f][0], u[f]) for f in range(K) if f != k), np.zeros(p1))
            XVy = Xy - x_other - np.einsum("jqp,jq->p", A, Zr)
            mean, beta = _beta_draw(XVX, XVy, state.sigma2, beta_precision, rng)
        else:
            mean = beta = fixed_beta
        centre = np.einsum("jqr,jr->jq", Minv, Zr - ZX @ beta)
        root, _ = batched_small_cholesky(0.5 * (Minv + np.swapaxes(Minv, 1, 2)))
        draws = rng.standard_normal((counts[k], zcols[k].size))
        effects = centre + np.sqrt(state.sigma2) * np.einsum("jqr,jr->jq", root, draws)
        return mean, beta, effects

    for _ in range(n_steps):
        for k in range(K):
            beta_hat, beta, u[k] = block(k)
            fitted = sums[k][3]
            scatter = u[k][fitted].T @ u[k][fitted]
            q = zcols[k].size
            _, root = wishart_precision_draw(Dinv * np.eye(q) + scatter, c + q - 1 + fitted.sum(), rng)
            state.psi[k] = root @ root.T
            new = factor_row_effects(Z[k], u[k], codes[k])
            total += new - rows_effect[k]
            rows_effect[k] = new
        state.beta = beta
        if weights is None:  # with weights sigma^2 is known (1 for the Polya-Gamma augmented logit)
            state.sigma2 = _sigma2_draw(_direct_rss(y, X, beta, total), len(y), a, Binv, rng)
    donors = None
    if donor_effects:
        donors = _donor_sweep(
            u, block, beta_hat, lambda k, v: factor_row_effects(Z[k], v, codes[k]), rows_effect, total
        )
    return beta_hat, donors
