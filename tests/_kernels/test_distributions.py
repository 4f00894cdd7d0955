"""skmlmi._kernels.distributions: each sampler against scipy's law, each function against scipy's values.

Samplers are checked in distribution with seeded draws: a one-sample Kolmogorov-Smirnov test
against scipy's CDF (or a two-sample test where scipy has no CDF), and moments within a few Monte
Carlo standard errors. The thresholds (p > 1e-4, 4.5 SE) make a false alarm in this module less
likely than 1e-3 for a correct sampler, while a sampler off by 1% of an SD in its mean fails the
200,000-draw checks.
"""

import numpy as np
import pytest
from scipy import special, stats

from skmlmi._kernels import (
    bivariate_normal_cdf,
    inverse_wishart,
    log_interval_probability,
    mills_ratio,
    polya_gamma,
    polya_gamma_moments,
    student_t_mixing,
    truncated_normal,
    truncated_normal_below,
    wishart_precision_draw,
)

KS_ALPHA = 1e-4


# --------------------------------------------------------------------------- bivariate normal
def test_bivariate_normal_cdf_matches_closed_form_and_genz_reference():
    # closed form at the origin: 1/4 + arcsin(rho) / (2 pi)
    rho = np.array([-0.999, -0.95, -0.5, 0.0, 0.3, 0.8, 0.93, 0.9999])
    np.testing.assert_allclose(bivariate_normal_cdf(0.0, 0.0, rho), 0.25 + np.arcsin(rho) / (2 * np.pi), atol=1e-13)
    # rho = 0 factorises; rho -> 1 gives Phi(min(a, b))
    a = np.linspace(-4, 3, 15)
    np.testing.assert_allclose(bivariate_normal_cdf(a, 0.7, 0.0), special.ndtr(a) * special.ndtr(0.7), atol=1e-14)
    np.testing.assert_allclose(bivariate_normal_cdf(a, 0.7, 0.999999), special.ndtr(np.minimum(a, 0.7)), atol=1e-3)
    bvnu = pytest.importorskip("scipy.stats._stats_pythran")._bvnu  # scipy's scalar Genz BVNU
    rng = np.random.default_rng(0)
    a, b = rng.normal(scale=2, size=(2, 300))
    r = rng.uniform(-0.999, 0.999, 300)
    expected = np.array([bvnu(-x, -y, c) for x, y, c in zip(a, b, r, strict=True)])
    np.testing.assert_allclose(bivariate_normal_cdf(a, b, r), expected, atol=1e-14)


# --------------------------------------------------------------------------- Polya-Gamma
@pytest.mark.parametrize("c", [0.0, 0.5, 2.0, 8.0, 40.0, -3.0])
def test_polya_gamma_moments_match_theory(c):
    rng = np.random.default_rng(11)
    n = 40_000
    draws = polya_gamma(np.full(n, c), rng)
    mean, var = polya_gamma_moments(np.array(c))
    # Sample mean: SE = sqrt(var / n). Sample variance: SE = sqrt((m4 - var^2) / n) with the
    # fourth central moment estimated from the draws (PG is skewed, so not 2 var^2 / n).
    # 4.5 SE: with 12 comparisons a false alarm has probability < 1e-4.
    assert abs(draws.mean() - mean) < 4.5 * np.sqrt(var / n)
    m4 = np.mean((draws - draws.mean()) ** 4)
    assert abs(draws.var() - var) < 4.5 * np.sqrt((m4 - draws.var() ** 2) / n)
    assert np.all(draws > 0)


def test_polya_gamma_vectorised_over_mixed_arguments_keeps_shape_and_order():
    rng = np.random.default_rng(0)
    c = np.tile([0.0, 300.0], 5000).reshape(100, 100)
    draws = polya_gamma(c, rng)
    assert draws.shape == c.shape
    # Means 1/4 and tanh(150)/600 ~ 1/600: each half must sit near its own mean.
    assert abs(draws[c == 0].mean() - 0.25) < 0.01
    assert abs(draws[c == 300].mean() - 1 / 600) < 1e-4


def test_truncated_normal_stays_inside_far_tail_intervals():
    rng = np.random.default_rng(0)
    mean = np.zeros(2000)
    lower = np.full(2000, 30.0)
    upper = np.full(2000, np.inf)
    draws = truncated_normal(mean, lower, upper, rng)
    assert np.all(np.isfinite(draws)) and np.all(draws >= 30.0)
    # E[Z | Z > 30] ~ 30 + 1/30.
    assert abs(draws.mean() - (30 + 1 / 30)) < 0.01


def test_polya_gamma_agrees_in_law_with_its_series_representation():
    # PG(1, c) = (1 / (2 pi^2)) sum_k g_k / ((k - 1/2)^2 + c^2 / (4 pi^2)), g_k ~ Exp(1): truncated at
    # K = 2000 terms, the remainder's mean (about 1 / (2 pi^2 K) = 2.5e-5) is added. A two-sample
    # KS test of 20,000 draws each detects a shift of about 1.5% of an SD.
    rng = np.random.default_rng(5)
    n, K = 20_000, 2000
    for c in (0.0, 1.5, 6.0):
        k = np.arange(1, K + 1)
        denominators = (k - 0.5) ** 2 + c**2 / (4 * np.pi**2)
        series = np.zeros(n)
        for start in range(0, K, 250):  # blocks of terms, to bound memory
            g = rng.standard_exponential((n, min(250, K - start)))
            series += g @ (1.0 / denominators[start : start + 250])
        series = series / (2 * np.pi**2) + np.sum(1.0 / ((np.arange(K + 1, 200 * K) - 0.5) ** 2)) / (2 * np.pi**2)
        ours = polya_gamma(np.full(n, c), rng)
        assert stats.ks_2samp(ours, series).pvalue > KS_ALPHA


def test_polya_gamma_moments_match_the_series_of_the_law():
    # mean = (1 / (2 pi^2)) sum_k 1 / d_k, variance = (1 / (4 pi^4)) sum_k 1 / d_k^2 (independent Exp(1) terms)
    k = np.arange(1, 2_000_001)
    for c in (0.0, 1e-4, 0.7, 5.0, 50.0):
        d = (k - 0.5) ** 2 + c**2 / (4 * np.pi**2)
        mean, var = polya_gamma_moments(np.array([c]))
        # the series truncated after K terms misses about 1 / (2 pi^2 K) of the mean
        np.testing.assert_allclose(mean[0], np.sum(1 / d) / (2 * np.pi**2), rtol=1e-9, atol=1 / (2 * np.pi**2 * len(k)))
        np.testing.assert_allclose(var[0], np.sum(1 / d**2) / (4 * np.pi**4), rtol=1e-6)


# --------------------------------------------------------------------------- truncated normals
@pytest.mark.parametrize(("mean", "lower", "upper"), [(0.0, -1.0, 0.5), (2.0, -np.inf, 0.0), (-1.0, 3.0, np.inf)])
def test_truncated_normal_follows_scipys_truncnorm(mean, lower, upper):
    rng = np.random.default_rng(1)
    n = 50_000
    draws = truncated_normal(np.full(n, mean), np.full(n, lower), np.full(n, upper), rng)
    law = stats.truncnorm(lower - mean, upper - mean, loc=mean)
    assert np.all((draws >= lower) & (draws <= upper))
    assert stats.kstest(draws, law.cdf).pvalue > KS_ALPHA


def test_truncated_normal_below_follows_scipys_truncnorm_even_far_in_the_tail():
    rng = np.random.default_rng(2)
    for upper in (0.7, -3.0, -30.0):
        draws = truncated_normal_below(np.full(50_000, upper), rng)
        assert np.all(draws <= upper) and np.all(np.isfinite(draws))
        assert stats.kstest(draws, stats.truncnorm(-np.inf, upper).cdf).pvalue > KS_ALPHA


def test_log_interval_probability_and_mills_ratio_match_scipy():
    lower = np.array([-np.inf, -1.0, 0.5])
    upper = np.array([0.3, 2.0, np.inf])
    expected = np.log(stats.norm.cdf(upper) - stats.norm.cdf(lower))
    np.testing.assert_allclose(log_interval_probability(lower, upper), expected, rtol=1e-12)
    # far tails, where the difference of CDFs underflows: log of the survival function's difference
    np.testing.assert_allclose(
        log_interval_probability(np.array([8.0]), np.array([9.0])),
        np.log(stats.norm.sf(8.0) - stats.norm.sf(9.0)),
        rtol=1e-10,
    )
    x = np.array([-30.0, -5.0, 0.0, 2.0, 10.0])
    np.testing.assert_allclose(mills_ratio(x), np.exp(stats.norm.logpdf(x) - stats.norm.logcdf(x)), rtol=1e-12)


# --------------------------------------------------------------------------- Wishart
def test_inverse_wishart_matches_scipy_in_law():
    rng = np.random.default_rng(3)
    scale = np.array([[2.0, 0.6], [0.6, 1.0]])
    df = 7.0
    draws = np.array([inverse_wishart(df, scale, rng) for _ in range(20_000)])
    reference = stats.invwishart(df, scale).rvs(20_000, random_state=4)
    for a, b in ((0, 0), (0, 1), (1, 1)):
        assert stats.ks_2samp(draws[:, a, b], reference[:, a, b]).pvalue > KS_ALPHA
    # mean scale / (df - q - 1); the element SDs from the reference draws
    se = reference.std(axis=0) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - scale / (df - 3)) < 4.5 * se)


def test_wishart_precision_draw_is_the_inverse_wishart_through_its_precision():
    rng = np.random.default_rng(6)
    S = np.array([[1.5, -0.4, 0.2], [-0.4, 1.0, 0.1], [0.2, 0.1, 0.8]])
    df = 9.0
    precisions, roots = zip(*(wishart_precision_draw(S, df, rng) for _ in range(20_000)), strict=True)
    precisions = np.array(precisions)
    roots = np.array(roots)
    # Psi = C C' and Psi^-1 = precision: the two outputs are one draw
    np.testing.assert_allclose(
        np.einsum("nij,njk->nik", roots @ np.swapaxes(roots, 1, 2), precisions)[:50],
        np.broadcast_to(np.eye(3), (50, 3, 3)),
        atol=1e-8,
    )
    reference = stats.wishart(df, np.linalg.inv(S)).rvs(20_000, random_state=7)
    for a, b in ((0, 0), (1, 2), (2, 2)):
        assert stats.ks_2samp(precisions[:, a, b], reference[:, a, b]).pvalue > KS_ALPHA


def test_student_t_mixing_variances_follow_their_inverse_gamma():
    # lambda | beta ~ IG((df + 1) / 2, (df + beta^2 / s^2) / 2)
    rng = np.random.default_rng(8)
    n, df, s = 50_000, 7.0, 2.5
    for beta in (0.0, 4.0):
        draws = student_t_mixing(np.full(n, beta), np.full(n, s), df, rng)
        law = stats.invgamma((df + 1) / 2, scale=(df + (beta / s) ** 2) / 2)
        assert stats.kstest(draws, law.cdf).pvalue > KS_ALPHA
    assert np.all(student_t_mixing(np.ones(3), np.ones(3), np.inf, rng) == 1.0)
