"""skmlmi._kernels.glm: batched Newton / IRLS fits against statsmodels' one fit at a time."""

import numpy as np
import pytest
import statsmodels.api as sm

from skmlmi._kernels import batched_irls, logistic_irls, multinomial_newton, poisson_fixed_effects


@pytest.mark.parametrize("family", ["logistic", "poisson"])
def test_batched_irls_equals_one_glm_per_cluster(family):
    rng = np.random.default_rng(0)
    J, per = 6, 80
    g = np.repeat(np.arange(J), per)
    D = np.column_stack([np.ones(J * per), rng.normal(size=J * per)])
    eta = 0.3 * rng.normal(size=J)[g] + 0.8 * D[:, 1]
    y = (
        (rng.random(J * per) < 1 / (1 + np.exp(-eta))).astype(float)
        if family == "logistic"
        else rng.poisson(np.exp(eta))
    )
    active = np.ones(J, dtype=bool)
    beta, cov, converged = batched_irls(D, y.astype(float), g, J, active, family, np.zeros((J, 2)), 100)
    assert converged.all()
    glm_family = sm.families.Binomial() if family == "logistic" else sm.families.Poisson()
    for j in range(J):
        rows = g == j
        fit = sm.GLM(y[rows], D[rows], family=glm_family).fit(tol=1e-12)
        np.testing.assert_allclose(beta[j], fit.params, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(cov[j], fit.cov_params(), rtol=1e-5, atol=1e-10)


def test_batched_irls_stops_a_separated_cluster_unconverged():
    g = np.repeat([0, 1], 20)
    x = np.tile(np.linspace(-1, 1, 20), 2)
    D = np.column_stack([np.ones(40), x])
    y = np.r_[(x[:20] > 0).astype(float), (np.random.default_rng(1).random(20) < 0.5).astype(float)]
    beta, _, converged = batched_irls(D, y, g, 2, np.ones(2, dtype=bool), "logistic", np.zeros((2, 2)), 200)
    assert not converged[0] and np.all(np.isfinite(beta))


def test_multinomial_newton_with_one_group_equals_statsmodels_mnlogit():
    rng = np.random.default_rng(2)
    n = 600
    X = rng.normal(size=(n, 2))
    eta = np.column_stack([np.zeros(n), 0.3 + X @ [0.8, -0.4], -0.2 + X @ [-0.5, 0.6]])
    prob = np.exp(eta) / np.exp(eta).sum(axis=1, keepdims=True)
    y = (prob.cumsum(axis=1) < rng.random(n)[:, None]).sum(axis=1)
    fit = multinomial_newton(X, y, np.ones(n), np.zeros(n, dtype=np.intp), 1, 3, tol=1e-12)
    assert fit["converged"]
    reference = sm.MNLogit(y, sm.add_constant(X)).fit(disp=0, method="newton", tol=1e-12)
    np.testing.assert_allclose(fit["alpha"][0], reference.params[0], rtol=1e-6)
    np.testing.assert_allclose(fit["beta"], reference.params[1:], rtol=1e-6)


def test_logistic_irls_equals_statsmodels_logit():
    rng = np.random.default_rng(3)
    X = np.column_stack([np.ones(300), rng.normal(size=(300, 2))])
    y = (rng.random(300) < 1 / (1 + np.exp(-(X @ [0.2, 1.0, -0.5])))).astype(float)
    np.testing.assert_allclose(logistic_irls(X, y), sm.Logit(y, X).fit(disp=0, tol=1e-12).params, rtol=1e-7)


def test_poisson_fixed_effects_equals_glm_with_cluster_dummies():
    rng = np.random.default_rng(3)
    J, per = 7, 25
    g = np.repeat(np.arange(J), per)
    n = J * per
    level2 = rng.normal(size=J)[g]  # constant within clusters: absorbed by the cluster intercepts
    X = np.column_stack([rng.normal(size=n), rng.binomial(1, 0.4, size=n), level2])
    y = rng.poisson(np.exp(0.4 * X[:, 0] - 0.5 * X[:, 1] + rng.normal(size=J)[g])).astype(float)
    y[g == 2] = 0.0  # a cluster of zeros: its intercept is -inf, it is left out
    fit = poisson_fixed_effects(X, y, g, J)
    kept = g != 2
    dummies = (g[kept, None] == np.setdiff1d(np.arange(J), [2])[None, :]).astype(float)
    glm = sm.GLM(y[kept], np.column_stack([X[kept, :2], dummies]), family=sm.families.Poisson()).fit(tol=1e-12)
    assert fit.converged and fit.rank == 2 and fit.n_clusters == J - 1 and fit.n_rows == kept.sum()
    np.testing.assert_allclose(fit.coef[:2], glm.params[:2], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(fit.fitted[kept], glm.fittedvalues, rtol=1e-7)
    assert np.all(fit.fitted[~kept] == 0)
    assert fit.df == glm.df_resid
    np.testing.assert_allclose(fit.pearson, glm.pearson_chi2, rtol=1e-7)
    np.testing.assert_allclose(fit.dispersion, glm.pearson_chi2 / glm.df_resid, rtol=1e-7)


def test_pearson_dispersion_standard_error_matches_its_spread_under_the_poisson_model():
    # 400 seeded data sets of small, varying counts (where Var(r^2) = 2 + 1/mu matters): phi's mean
    # is 1 within 3.5 MC SE, and its SD matches the mean reported SE: the SD of 400 draws has a
    # relative SE of about 1 / sqrt(2 * 400) = 3.5%, and 15% is about 4 of those
    rng = np.random.default_rng(4)
    J, per = 40, 12
    g = np.repeat(np.arange(J), per)
    phi, se = [], []
    for _ in range(400):
        X = rng.normal(size=(J * per, 2))
        y = rng.poisson(np.exp(-0.5 + 0.6 * X[:, 0] + 0.5 * rng.normal(size=J)[g]))
        fit = poisson_fixed_effects(X, y, g, J)
        phi.append(fit.dispersion)
        se.append(fit.dispersion_se)
    phi, se = np.array(phi), np.array(se)
    assert abs(phi.mean() - 1) < 3.5 * phi.std() / np.sqrt(len(phi))
    assert abs(phi.std() / se.mean() - 1) < 0.15
