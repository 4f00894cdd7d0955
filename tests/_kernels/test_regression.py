"""skmlmi._kernels.regression: Bayesian regression draws and predictive mean matching."""

import numpy as np

from skmlmi._kernels import bayesian_regression_draw, pmm_match


def test_bayesian_regression_draw_has_rubins_posterior():
    # beta* | sigma* ~ N(beta_hat, sigma*^2 (X'X)^-1), sigma*^2 = RSS / chi2_{n-p}: over 4,000 draws
    # the mean of beta* is beta_hat and E[sigma*^2] = RSS / (n - p - 2), within 4.5 Monte Carlo SEs.
    rng = np.random.default_rng(0)
    n, p = 40, 3
    X = np.column_stack([np.ones(n), rng.normal(size=(n, p - 1))])
    y = X @ [1.0, 0.5, -2.0] + rng.normal(size=n)
    beta_hat = np.linalg.lstsq(X, y, rcond=None)[0]
    rss = float(np.sum((y - X @ beta_hat) ** 2))
    draws = [bayesian_regression_draw(X, y, rng) for _ in range(4000)]
    np.testing.assert_allclose(draws[0][0], beta_hat, rtol=1e-10)
    beta_star = np.array([d[1] for d in draws])
    sigma2 = np.array([d[2] for d in draws]) ** 2
    cov = (rss / (n - p - 2)) * np.linalg.inv(X.T @ X)
    assert np.all(np.abs(beta_star.mean(axis=0) - beta_hat) < 4.5 * np.sqrt(np.diag(cov) / 4000))
    assert abs(sigma2.mean() - rss / (n - p - 2)) < 4.5 * sigma2.std() / np.sqrt(4000)


def test_pmm_match_draws_among_the_k_closest_donors_uniformly():
    rng = np.random.default_rng(1)
    donors = np.arange(20, dtype=float)
    recipients = np.full(30_000, 7.2)
    picked = donors[pmm_match(donors, recipients, 3, rng)]
    assert set(np.unique(picked)) == {6.0, 7.0, 8.0}
    # each of the 3 donors with probability 1/3: counts within 4.5 binomial SEs
    counts = np.array([(picked == v).sum() for v in (6.0, 7.0, 8.0)])
    assert np.all(np.abs(counts - 10_000) < 4.5 * np.sqrt(30_000 * (1 / 3) * (2 / 3)))


def test_pmm_match_gives_recipients_of_one_stratum_distinct_donors():
    rng = np.random.default_rng(2)
    donors = np.arange(10, dtype=float)
    index = pmm_match(donors, np.full(4, 5.0), 5, rng, strata=np.zeros(4, dtype=int))
    assert len(set(index.tolist())) == 4
