"""skmlmi._kernels.glm: batched Newton / IRLS fits against statsmodels' one fit at a time."""

import numpy as np
import pytest
import statsmodels.api as sm

from skmlmi._kernels import batched_irls, logistic_irls, multinomial_newton


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
