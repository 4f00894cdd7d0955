"""Split-R-hat and autocorrelation of chains."""

import numpy as np
import pytest

from skmlmi.diagnostics.convergence import autocorrelation, rhat


def test_rhat_known_answer_without_split():
    # means 2.5, 3.5; W = var(1, 2, 3, 4) = 5/3; B = N var(means) = 4 * 0.5 = 2;
    # var+ = 3/4 * 5/3 + 2/4 = 1.75; R-hat = sqrt(1.75 / (5/3)) = sqrt(1.05)
    chains = np.array([[1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 4.0, 5.0]])
    assert rhat(chains, split=False) == pytest.approx(np.sqrt(1.05), rel=1e-12)


def test_rhat_known_answer_with_split():
    # split chains: (1, 2), (3, 4), (2, 3), (4, 5), N = 2: means 1.5, 3.5, 2.5, 4.5; W = 0.5;
    # B = N var(means) = 2 * 5/3; var+ = (N - 1) / N W + B / N = 0.25 + 5/3
    chains = np.array([[1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 4.0, 5.0]])
    assert rhat(chains) == pytest.approx(np.sqrt((0.25 + 5 / 3) / 0.5), rel=1e-12)


def test_rhat_of_stationary_chains_is_one():
    # 4 iid chains of 2000 (8 split chains of 1000): R-hat - 1 ~ (chi2_7 / 7 - 1) / (2 N), well below 0.01
    rng = np.random.default_rng(0)
    chains = rng.normal(size=(4, 2000, 3))
    out = rhat(chains)
    assert out.shape == (3,) and np.all(np.abs(out - 1) < 0.01)
    assert abs(rhat(np.tile(rng.normal(size=2000), (4, 1))) - 1) < 0.01  # identical chains
    assert np.all(np.abs(rhat(chains, rank_normalized=True) - 1) < 0.01)


def test_rhat_flags_chains_with_different_means():
    # chain means 0, 1, 2, 3 with unit within variance: var+ / W ~ 1 + var(means) = 2.67, R-hat ~ 1.6
    rng = np.random.default_rng(1)
    chains = rng.normal(size=(4, 500)) + np.arange(4)[:, None]
    assert rhat(chains) > 1.5
    assert rhat(chains, rank_normalized=True) > 1.5


def test_split_rhat_detects_a_trend_within_a_single_chain():
    chain = np.linspace(0, 5, 400)[None, :] + np.random.default_rng(2).normal(size=(1, 400))
    assert rhat(chain) > 1.5
    with pytest.raises(ValueError, match="at least 2 chains"):
        rhat(chain, split=False)


def test_rank_normalized_rhat_detects_different_scales():
    # Same location, scales 1 and 10: the classic R-hat barely moves (means agree), the folded
    # rank-normalised R-hat (Vehtari et al. 2021) sees the difference in spread.
    rng = np.random.default_rng(3)
    chains = rng.normal(size=(4, 1000)) * np.array([1, 1, 10, 10])[:, None]
    assert rhat(chains) < 1.02
    assert rhat(chains, rank_normalized=True) > 1.1


def test_rhat_of_constant_chains():
    assert rhat(np.ones((3, 10))) == 1.0
    assert rhat(np.array([[1.0] * 10, [2.0] * 10])) == np.inf


def test_rhat_input_errors():
    with pytest.raises(ValueError, match="at least 4 iterations"):
        rhat(np.ones((2, 3)))
    with pytest.raises(ValueError, match="shape"):
        rhat(np.ones(5))
    with pytest.raises(ValueError, match="NaN"):
        rhat(np.array([[1.0, np.nan, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]]))


def test_autocorrelation_known_answer():
    # deviations -1.5, -0.5, 0.5, 1.5: lag-1 products 0.75 - 0.25 + 0.75 = 1.25, sum of squares 5
    assert autocorrelation(np.array([[1.0, 2.0, 3.0, 4.0]])) == pytest.approx(0.25)
    # pooled over chains: each chain's own mean is removed, so a shift between chains adds nothing
    both = np.array([[1.0, 2.0, 3.0, 4.0], [11.0, 12.0, 13.0, 14.0]])
    assert autocorrelation(both) == pytest.approx(0.25)
    np.testing.assert_allclose(autocorrelation(both, per_chain=True), [0.25, 0.25])


def test_autocorrelation_of_ar1_and_white_noise():
    # AR(1) with phi = 0.8: the estimator's SD ~ sqrt((1 - phi^2) / (4 * 5000)) = 0.004 (bias ~ -1/N)
    rng = np.random.default_rng(4)
    e = rng.normal(size=(4, 5000, 2))
    ar = np.zeros_like(e)
    for t in range(1, 5000):
        ar[:, t] = 0.8 * ar[:, t - 1] + e[:, t]
    np.testing.assert_allclose(autocorrelation(ar), 0.8, atol=0.02)
    np.testing.assert_allclose(autocorrelation(ar, lag=2), 0.64, atol=0.03)
    assert np.all(np.abs(autocorrelation(e)) < 0.03)  # SD 1/sqrt(20000) = 0.007
    assert autocorrelation(ar, per_chain=True).shape == (4, 2)


def test_autocorrelation_rejects_bad_lag():
    with pytest.raises(ValueError, match="lag"):
        autocorrelation(np.ones((2, 5)), lag=5)


def test_text_chains_are_an_error_naming_the_function():
    with pytest.raises(ValueError, match="rhat: chains must be numbers"):
        rhat([["a", "b"], ["c", "d"]])
    with pytest.raises(ValueError, match="autocorrelation: chains must be numbers"):
        autocorrelation([[1.0, 2.0], [1.0]])
