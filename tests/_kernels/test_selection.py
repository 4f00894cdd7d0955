"""skmlmi._kernels.selection: the per-cluster selection-model likelihood, its derivatives and its fit."""

import numpy as np
import pytest

from skmlmi._kernels import selection as sel
from skmlmi.datasets.heckman import make_heckman


def _arrays(data):
    y = data["y"].to_numpy()
    observed = ~np.isnan(y)
    return np.nan_to_num(y), observed, data[["x", "z"]].to_numpy(), data["cluster"].to_numpy()


@pytest.mark.parametrize("binary", [False, True])
def test_analytic_gradient_and_hessian_match_finite_differences(binary):
    data = make_heckman(n_clusters=4, cluster_size=120, random_state=3)
    y, observed, X, g = _arrays(data)
    if binary:
        y = (y > 1).astype(float)
    layout = sel.SelectionLayout(np.array([0, 1]), np.array([0]), binary)
    W, V = layout.designs((X - X.mean(0)) / X.std(0))
    clusters = sel._Clusters(W, V, y, observed, g, 4)
    theta = np.random.default_rng(1).normal(scale=0.4, size=(4, layout.size))
    value, grad = sel._loglik(theta, clusters, layout)
    h = 1e-6
    numeric = np.empty_like(grad)
    for k in range(layout.size):
        up, down = theta.copy(), theta.copy()
        up[:, k] += h
        down[:, k] -= h
        numeric[:, k] = (sel._loglik(up, clusters, layout)[0] - sel._loglik(down, clusters, layout)[0]) / (2 * h)
    # central differences: error O(h^2 f''') plus rounding ~ eps |f| / h ~ 1e-7 for |f| ~ 300
    np.testing.assert_allclose(grad, numeric, atol=1e-5 * (1 + np.abs(value).max() / 100))
    H = sel._hessian(theta, clusters, layout)
    np.testing.assert_allclose(H, sel._hessian_numerical(theta, clusters, layout), atol=1e-5, rtol=1e-6)


def test_fit_by_cluster_recovers_the_selection_model_in_large_clusters():
    # 3 clusters of 3,000 rows: every parameter's standard error is below ~0.1, so the fitted
    # values lie within 4.5 of their own standard errors of the truth.
    data, _, truth = make_heckman(n_clusters=3, cluster_size=3000, rho=0.6, random_state=4, return_truth=True)
    y, observed, X, g = _arrays(data)
    center, scale = X.mean(0), X.std(0)
    layout = sel.SelectionLayout(np.array([0, 1]), np.array([0]), False)
    W, V = layout.designs((X - center) / scale)
    fit = sel.fit_selection_by_cluster(W, V, y, observed, g, 3, layout, None)
    assert fit.estimable.all()
    se = np.sqrt(np.diagonal(fit.covariance, axis1=1, axis2=2))
    rho = np.tanh(fit.theta[:, layout.rho])
    se_rho = se[:, layout.rho] * (1 - rho**2)
    assert np.all(np.abs(rho - 0.6) < 4.5 * se_rho)
