"""Random-effects meta-analysis: parity with R's mixmeta, the moment and likelihood
estimators against dense textbook formulas, boundary cases, draws and bad input."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from skmlmi.meta_analysis import (
    cholesky_parameters,
    draw_study_effects,
    meta_analysis,
    psi_from_parameters,
    study_posterior,
)

REFERENCE = Path(os.environ["SKMLMI_SHARED"]) / "reference"


def _close(value: float, reference: float, tol: float = 1e-4) -> bool:
    """The issue's parity rule: relative error, or absolute for values below 1e-2."""
    if abs(reference) < 1e-2:
        return abs(value - reference) <= tol
    return abs(value - reference) <= tol * abs(reference)


def _reference_inputs():
    inputs = pd.read_csv(REFERENCE / "meta_analysis_inputs.csv")
    J = len(inputs)
    S = np.zeros((J, 2, 2))
    S[:, 0, 0] = inputs["s11"]
    S[:, 1, 0] = S[:, 0, 1] = inputs["s21"]
    S[:, 1, 1] = inputs["s22"]
    return inputs, S


def _simulate(rng, J, k, d, psi_scale=0.4):
    """A meta-regression with known truth: random S_j, covariates, unstructured Psi."""
    X = np.column_stack([np.ones(J)] + [rng.normal(size=J) for _ in range(d - 1)])
    A = rng.normal(size=(J, k, k)) * 0.3
    S = A @ np.swapaxes(A, 1, 2) + 0.05 * np.eye(k)
    B = rng.normal(size=(d, k))
    L = np.tril(rng.normal(size=(k, k))) * psi_scale
    psi = L @ L.T
    noise = np.einsum("jab,jb->ja", np.linalg.cholesky(S + psi), rng.normal(size=(J, k)))
    return X @ B + noise, S, X


# --------------------------------------------------------------------------- parity with R
@pytest.mark.skipif(not (REFERENCE / "meta_analysis_cases.csv").exists(), reason="R reference files not available")
@pytest.mark.parametrize("case", ["univariate", "bivariate"])
@pytest.mark.parametrize("method", ["reml", "ml", "mm"])
def test_matches_mixmeta_reference(case, method):
    inputs, S2 = _reference_inputs()
    cases = pd.read_csv(REFERENCE / "meta_analysis_cases.csv")
    ref = cases[(cases["case"] == case) & (cases["method"] == method)].set_index("term")
    if case == "univariate":
        fit = meta_analysis(inputs["y_univariate"].to_numpy(), inputs["s_univariate"].to_numpy(), method=method)
    else:
        fit = meta_analysis(inputs[["y1", "y2"]].to_numpy(), S2, method=method)
    assert fit.converged
    for term, row in ref.iterrows():
        if term.startswith("coef"):
            j = int(term[4:]) - 1
            assert _close(fit.coefficients[0, j], row["estimate"]), (term, fit.coefficients[0, j], row["estimate"])
            assert _close(fit.standard_errors[0, j], row["std_error"]), (term, fit.standard_errors[0, j])
        else:
            a, b = int(term[3]) - 1, int(term[4]) - 1
            assert _close(fit.psi[a, b], row["estimate"]), (term, fit.psi[a, b], row["estimate"])


# --------------------------------------------------------------------------- estimators against textbook formulas
def test_univariate_moments_is_dersimonian_laird_meta_regression():
    rng = np.random.default_rng(11)
    J = 15
    x = rng.normal(size=J)
    X = np.column_stack([np.ones(J), x])
    s2 = rng.uniform(0.02, 0.2, J)
    y = 0.3 + 0.5 * x + rng.normal(scale=np.sqrt(s2 + 0.1))
    fit = meta_analysis(y, s2, X, method="mm")
    # DerSimonian-Laird for meta-regression: tau2 = (Q - (J - d)) / (tr W - tr((X'WX)^-1 X'W^2X))
    W = np.diag(1 / s2)
    M = X.T @ W @ X
    beta_fe = np.linalg.solve(M, X.T @ W @ y)
    Q = (y - X @ beta_fe) @ W @ (y - X @ beta_fe)
    tau2 = (Q - (J - 2)) / (np.trace(W) - np.trace(np.linalg.solve(M, X.T @ W @ W @ X)))
    assert tau2 > 0
    np.testing.assert_allclose(fit.psi[0, 0], tau2, rtol=1e-10)
    Wr = np.diag(1 / (s2 + tau2))
    np.testing.assert_allclose(fit.coefficients[:, 0], np.linalg.solve(X.T @ Wr @ X, X.T @ Wr @ y), rtol=1e-10)


def _dense_jackson_white_riley(y, S, X):
    """Literal stacked translation of mixmeta's mixmeta.mm (Jk x Jk matrices)."""
    J, k = y.shape
    Xs = np.vstack([np.kron(np.eye(k), X[j][None, :]) for j in range(J)])
    W = np.zeros((J * k, J * k))
    for j in range(J):
        W[j * k : (j + 1) * k, j * k : (j + 1) * k] = np.linalg.inv(S[j])
    ys = y.ravel()
    H = Xs @ np.linalg.solve(Xs.T @ W @ Xs, Xs.T @ W)
    IminusH = np.eye(J * k) - H

    def btr(A):
        return sum(A[j * k : (j + 1) * k, j * k : (j + 1) * k] for j in range(J))

    Q = btr(W @ np.outer(IminusH @ ys, IminusH @ ys))
    A = IminusH.T @ W
    Bm = IminusH.T
    tBA = np.zeros((k * k, k * k))
    for r in range(J):
        for c in range(J):
            a = A[r * k : (r + 1) * k, c * k : (c + 1) * k]
            b = Bm[r * k : (r + 1) * k, c * k : (c + 1) * k]
            tBA += np.kron(b, a).T
    vec = np.linalg.solve(tBA, (Q - btr(Bm)).ravel(order="F"))
    psi = vec.reshape(k, k, order="F")
    # mixmeta's checkPD (negative eigenvalues to sqrt(eps)), applied as documented on the
    # scale of the median within variances
    unit = np.sqrt(np.median(np.diagonal(S, axis1=1, axis2=2), axis=0))
    values, vectors = np.linalg.eigh((psi + psi.T) / 2 / np.outer(unit, unit))
    values[values < 0] = np.sqrt(np.finfo(float).eps)
    return (vectors * values) @ vectors.T * np.outer(unit, unit)


def test_matrix_moments_match_dense_stacked_formula_with_covariates():
    for J in (9, 60):  # J = 9 floors a negative eigenvalue, J = 60 is an interior solution
        y, S, X = _simulate(np.random.default_rng(J), J=J, k=3, d=2, psi_scale=1.0)
        expected = _dense_jackson_white_riley(y, S, X)
        assert (np.linalg.eigvalsh(expected).min() > 1e-3) == (J == 60)
        fit = meta_analysis(y, S, X, method="mm")
        np.testing.assert_allclose(fit.psi, expected, rtol=1e-9, atol=1e-12)


def _dense_loglik(psi, y, S, X, reml):
    """Independent dense (restricted) log-likelihood with mixmeta's constants."""
    J, k = y.shape
    d = X.shape[1]
    Xs = np.vstack([np.kron(np.eye(k), X[j][None, :]) for j in range(J)])
    Sigma = np.zeros((J * k, J * k))
    for j in range(J):
        Sigma[j * k : (j + 1) * k, j * k : (j + 1) * k] = S[j] + psi
    Winv = np.linalg.inv(Sigma)
    M = Xs.T @ Winv @ Xs
    beta = np.linalg.solve(M, Xs.T @ Winv @ y.ravel())
    r = y.ravel() - Xs @ beta
    value = -0.5 * np.linalg.slogdet(Sigma)[1] - 0.5 * r @ Winv @ r
    if reml:
        const = -0.5 * (J * k - d * k) * np.log(2 * np.pi) + 0.5 * k * np.linalg.slogdet(X.T @ X)[1]
        return value - 0.5 * np.linalg.slogdet(M)[1] + const
    return value - 0.5 * J * k * np.log(2 * np.pi)


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_likelihood_estimate_is_the_dense_likelihood_maximum(method):
    rng = np.random.default_rng(3)
    y, S, X = _simulate(rng, J=14, k=2, d=2)
    fit = meta_analysis(y, S, X, method=method)
    reml = method == "reml"
    assert fit.converged
    np.testing.assert_allclose(fit.log_likelihood, _dense_loglik(fit.psi, y, S, X, reml), rtol=1e-10)

    def negative(theta):
        return -_dense_loglik(psi_from_parameters(theta, 2), y, S, X, reml)

    # a derivative-free search started at our estimate finds nothing better (up to its own tolerance)
    best = optimize.minimize(negative, fit.parameters, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12})
    assert -best.fun <= fit.log_likelihood + 1e-8
    # and every coordinate perturbation lowers the likelihood
    for e in np.eye(fit.parameters.size) * 1e-3:
        assert negative(fit.parameters + e) > -fit.log_likelihood
        assert negative(fit.parameters - e) > -fit.log_likelihood


def test_warm_start_reaches_the_same_estimate():
    rng = np.random.default_rng(8)
    y, S, X = _simulate(rng, J=25, k=2, d=1)
    cold = meta_analysis(y, S, X, method="reml")
    warm = meta_analysis(y, S, X, method="reml", start=cold.psi * 1.3)
    np.testing.assert_allclose(warm.psi, cold.psi, rtol=1e-6, atol=1e-10)


# --------------------------------------------------------------------------- boundary and degenerate input
def test_homogeneous_studies_give_psi_at_the_boundary_without_warning():
    rng = np.random.default_rng(2)
    J = 10
    s2 = rng.uniform(0.05, 0.1, J)
    y = 0.5 + 0.01 * rng.normal(size=J)  # spread far below the within SDs: Q << J - 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for method in ("reml", "ml"):
            fit = meta_analysis(y, s2, method=method)
            assert fit.converged
            assert fit.psi[0, 0] < 1e-6
            draws = np.array([fit.draw_psi(rng)[0, 0] for _ in range(50)])
            assert np.all(draws >= 0)
        mm = meta_analysis(y, s2, method="mm")
    # mixmeta's floor sqrt(eps), in units of the median within variance
    assert mm.psi[0, 0] == pytest.approx(np.sqrt(np.finfo(float).eps) * np.median(s2))


def test_moment_estimate_is_equivariant_to_the_units_of_the_estimates():
    rng = np.random.default_rng(15)
    y, S, X = _simulate(rng, J=9, k=3, d=2)
    unit = np.array([1.0, 1e-4, 1e3])  # e.g. coefficients of predictors measured in very different units
    base = meta_analysis(y, S, X, method="mm")
    assert np.linalg.eigvalsh(base.psi).min() < 1e-6  # a boundary case, where the eigenvalue floor acts
    scaled = meta_analysis(y * unit, S * np.outer(unit, unit), X, method="mm")
    np.testing.assert_allclose(scaled.psi, base.psi * np.outer(unit, unit), rtol=1e-8, atol=1e-20)
    np.testing.assert_allclose(scaled.coefficients, base.coefficients * unit, rtol=1e-8)
    # the likelihood fit too (to its convergence tolerance)
    base = meta_analysis(y, S, X, method="reml")
    scaled = meta_analysis(y * unit, S * np.outer(unit, unit), X, method="reml")
    assert scaled.converged
    np.testing.assert_allclose(scaled.psi / np.outer(unit, unit), base.psi, rtol=1e-5, atol=1e-9)


def test_cholesky_parameters_roundtrip_including_singular_psi():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(3, 3))
    for psi in (A @ A.T, np.outer(A[0], A[0]), np.zeros((3, 3))):
        theta = cholesky_parameters(psi)
        np.testing.assert_allclose(psi_from_parameters(theta, 3), psi, atol=1e-12)
    # column-major vech, as mvmeta's par: (L11, L21, L31, L22, L32, L33)
    L = np.array([[1.0, 0, 0], [2.0, 3.0, 0], [4.0, 5.0, 6.0]])
    np.testing.assert_allclose(cholesky_parameters(L @ L.T), [1, 2, 4, 3, 5, 6])


@pytest.mark.parametrize(
    ("estimates", "within", "design", "method", "match"),
    [
        (np.array([0.3]), np.array([0.1]), None, "reml", "more studies than design columns"),
        (np.zeros((3, 2)), np.stack([np.eye(2), np.eye(2), np.ones((2, 2))]), None, "mm", r"studies \[2\]"),
        (np.array([0.1, np.nan, 0.3]), np.array([0.1, 0.1, 0.1]), None, "reml", r"not finite for studies \[1\]"),
        (np.zeros((3, 2)), np.ones((3, 2)), None, "reml", "shape"),
        (np.zeros(4), np.ones(4), np.column_stack([np.ones(4), np.ones(4)]), "ml", "rank deficient"),
        (np.zeros(4), np.array([0.1, -0.1, 0.1, 0.1]), None, "reml", r"studies \[1\]"),
        (np.zeros(4), np.ones(4), None, "bayes", "method must be"),
    ],
)
def test_bad_input_raises_clear_error(estimates, within, design, method, match):
    with pytest.raises(ValueError, match=match):
        meta_analysis(estimates, within, design, method=method)


# --------------------------------------------------------------------------- study posterior
def test_study_posterior_matches_precision_form_and_handles_singular_psi():
    rng = np.random.default_rng(4)
    y, S, _ = _simulate(rng, J=6, k=2, d=1)
    psi = np.array([[0.3, 0.1], [0.1, 0.2]])
    mu = np.array([0.2, -0.1])
    mean, cov = study_posterior(y, S, mu, psi)
    for j in range(6):  # the textbook precision form, study by study
        V = np.linalg.inv(np.linalg.inv(psi) + np.linalg.inv(S[j]))
        np.testing.assert_allclose(cov[j], V, rtol=1e-10)
        np.testing.assert_allclose(mean[j], V @ (np.linalg.solve(psi, mu) + np.linalg.solve(S[j], y[j])), rtol=1e-10)
    # Psi = 0 (boundary): every study effect is the population mean, with no uncertainty
    mean0, cov0 = study_posterior(y, S, mu, np.zeros((2, 2)))
    np.testing.assert_allclose(mean0, np.broadcast_to(mu, y.shape))
    np.testing.assert_allclose(cov0, 0.0, atol=1e-15)
    draws = draw_study_effects(mean0, cov0, rng)
    np.testing.assert_allclose(draws, mean0)


def test_fitted_study_posterior_shrinks_towards_the_pooled_mean():
    inputs, _ = _reference_inputs()
    y = inputs["y_univariate"].to_numpy()
    fit = meta_analysis(y, inputs["s_univariate"].to_numpy())
    mean, cov = fit.study_posterior()
    pooled = fit.coefficients[0, 0]
    assert np.all(np.abs(mean[:, 0] - pooled) < np.abs(y - pooled))
    assert np.all(cov[:, 0, 0] < inputs["s_univariate"].to_numpy())


# --------------------------------------------------------------------------- draws
def test_marginal_coefficient_draws_have_the_fitted_mean_and_covariance():
    rng = np.random.default_rng(6)
    y, S, X = _simulate(rng, J=20, k=2, d=2)
    fit = meta_analysis(y, S, X, method="reml")
    n = 4000
    draws = np.array([fit.draw(rng, conditional=False)[0].ravel(order="F") for _ in range(n)])
    se = np.sqrt(np.diag(fit.coefficients_covariance))
    # mean of n draws: SE = sd / sqrt(n); 5 SE leaves a 1 in ~1.7 million false alarm per coordinate
    np.testing.assert_array_less(np.abs(draws.mean(axis=0) - fit.coefficients.ravel(order="F")), 5 * se / np.sqrt(n))
    # variance: relative SE sqrt(2 / (n - 1)) = 0.022, 5 SE = 0.11
    np.testing.assert_allclose(draws.var(axis=0), se**2, rtol=0.11)


def test_likelihood_psi_draws_are_normal_on_the_cholesky_scale():
    inputs, _ = _reference_inputs()
    fit = meta_analysis(inputs["y_univariate"].to_numpy(), inputs["s_univariate"].to_numpy(), method="reml")
    theta_hat = fit.parameters[0]
    sd = np.sqrt(fit.parameters_covariance[0, 0])
    rng = np.random.default_rng(9)
    n = 3000
    psi = np.array([fit.draw_psi(rng)[0, 0] for _ in range(n)])
    # Psi* = theta*^2 with theta* ~ N(theta_hat, sd^2): E = theta_hat^2 + sd^2, Var = 4 theta_hat^2 sd^2 + 2 sd^4
    mean, var = theta_hat**2 + sd**2, 4 * theta_hat**2 * sd**2 + 2 * sd**4
    assert abs(psi.mean() - mean) < 5 * np.sqrt(var / n)  # 5 Monte Carlo SE
    # SD of a noncentral chi-square sample (kurtosis ~6 here): relative SE ~ sqrt((6 - 1) / (4 n)) = 0.02, 5 SE = 0.1
    assert psi.std() == pytest.approx(np.sqrt(var), rel=0.1)


def test_moment_psi_bootstrap_draws_match_the_sampling_distribution_of_the_estimator():
    # micemd's "mm" returns Psi_hat every time; our bootstrap draw must spread as the
    # moment estimator does across data sets drawn from the truth.
    rng = np.random.default_rng(1)
    J, k = 200, 2
    A = rng.normal(size=(J, k, k)) * 0.3
    S = A @ np.swapaxes(A, 1, 2) + 0.05 * np.eye(k)
    psi = np.array([[0.2, 0.05], [0.05, 0.1]])
    root = np.linalg.cholesky(S + psi)

    def simulate():
        return np.array([0.3, -0.2]) + np.einsum("jab,jb->ja", root, rng.normal(size=(J, k)))

    sampling = np.array([meta_analysis(simulate(), S, method="mm").psi for _ in range(300)])
    fit = meta_analysis(simulate(), S, method="mm")
    draws = np.array([fit.draw_psi(rng) for _ in range(400)])
    assert np.all(np.linalg.eigvalsh(draws) >= 0)
    # SDs from 300 and 400 draws have ~4% Monte Carlo error each, and the bootstrap SD also
    # follows Psi_hat (~10% off the truth with J = 200): accept a ratio within 0.75..1.33.
    ratio = draws.std(axis=0)[np.tril_indices(k)] / sampling.std(axis=0)[np.tril_indices(k)]
    assert np.all((ratio > 0.75) & (ratio < 1.33)), ratio
    # centred on the estimate (no truncation at this J): |mean - Psi_hat| below 5 Monte Carlo SE
    np.testing.assert_array_less(np.abs(draws.mean(axis=0) - fit.psi), 5 * draws.std(axis=0) / np.sqrt(400))


def test_likelihood_fit_offers_bootstrap_psi_draws_and_mm_refuses_normal_draws():
    inputs, S2 = _reference_inputs()
    fit = meta_analysis(inputs[["y1", "y2"]].to_numpy(), S2, method="reml")
    rng = np.random.default_rng(3)
    draws = np.array([fit.draw_psi(rng, how="bootstrap") for _ in range(5)])
    assert np.all(np.linalg.eigvalsh(draws) >= -1e-12)
    assert np.ptp(draws[:, 0, 0]) > 0
    mm = meta_analysis(inputs[["y1", "y2"]].to_numpy(), S2, method="mm")
    with pytest.raises(ValueError, match="bootstrap"):
        mm.draw_psi(rng, how="normal")


def test_conditional_coefficient_draws_carry_psi_uncertainty():
    rng = np.random.default_rng(13)
    y, S, _ = _simulate(rng, J=8, k=1, d=1, psi_scale=0.6)
    fit = meta_analysis(y, S, method="reml")
    n = 3000
    conditional = np.array([fit.draw(rng)[0][0, 0] for _ in range(n)])
    marginal = np.array([fit.draw(rng, conditional=False)[0][0, 0] for _ in range(n)])
    # with 8 studies Psi is uncertain, and mixing over it fattens the coefficient's posterior;
    # the ratio of two variances from 3000 draws each has relative SE ~0.037
    assert conditional.var() > 1.1 * marginal.var()


def test_result_is_picklable_and_draws_reproducibly():
    inputs, S2 = _reference_inputs()
    fit = meta_analysis(inputs[["y1", "y2"]].to_numpy(), S2, method="ml")
    again = pickle.loads(pickle.dumps(fit))
    a = fit.draw(np.random.default_rng(1))
    b = again.draw(np.random.default_rng(1))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


# --------------------------------------------------------------------------- hostile inputs
def test_moment_estimate_is_equivariant_to_outcome_units_twelve_orders_apart():
    # Outcomes in units 1e-6, 1 and 1e6 (within variances 1e-12 .. 1e12): S_j^-1 on the raw
    # scale is too ill-conditioned to invert, and the moment estimate used to be off by 30 in
    # the rescaled Psi. Equivariance is exact algebra, so the only error is rounding (~1e-14).
    rng = np.random.default_rng(5)
    J, k = 8, 3
    y = rng.normal(size=(J, k))
    A = rng.normal(size=(J, k, k))
    S = A @ A.transpose(0, 2, 1) * 0.1 + 0.05 * np.eye(k)
    u = np.array([1e-6, 1.0, 1e6])
    reference = meta_analysis(y, S, method="mm")
    scaled = meta_analysis(y * u, S * np.outer(u, u), method="mm")
    np.testing.assert_allclose(scaled.psi / np.outer(u, u), reference.psi, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(scaled.coefficients / u, reference.coefficients, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("method", ["mm", "reml"])
def test_univariate_estimate_survives_extreme_units(method):
    # DerSimonian-Laird at scale 1e-150 used to return Psi = 0 (relative error 1); the fit
    # must be the same in any units up to rounding.
    y = np.array([0.1, 0.5, 0.9, 0.3])
    s2 = np.array([0.04, 0.05, 0.03, 0.06])
    reference = meta_analysis(y, s2, method=method)
    for c in (1e-150, 1e150):
        fit = meta_analysis(y * c, s2 * c * c, method=method)
        assert fit.psi[0, 0] / c**2 == pytest.approx(reference.psi[0, 0], rel=1e-6)
        assert fit.coefficients[0, 0] / c == pytest.approx(reference.coefficients[0, 0], rel=1e-6)
