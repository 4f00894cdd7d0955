"""The validity matrix of the default models, reduced for CI, and the fast fitters it relies on.

The full matrix is benchmarks/validate_defaults.py (9 kinds x J {30, 100} x rho {0.1, 0.3},
250-1000 replications, m = 20). Here: the fast analysis fitters of benchmarks/_validity.py against
the package's LinearMixedModel and LogisticMixedModel; the data-generating models against their
stated truths on one large sample; and the reduced matrix (J = 30, rho = 0.3, REPS replications,
m = 5, max_iter = 5; the kinds of REPS_FACTOR, cheaper per replication, get more) with its
acceptance regions widened to the few replications:

* a bias (or ICC, tau^2) bound B is met when |mean paired difference| < B + t MC SE, t the
  1 - alpha / (2K) quantile of Student's t with R - 1 df (R the cell's replications): a method
  whose true bias is B exactly passes with probability at least 1 - alpha / K (the MC SE is
  estimated from R replications, hence t rather than the normal);
* coverage lies in the 1 - alpha / K binomial acceptance region of 95% over R replications;

K counts every assertion of the matrix and alpha = 0.01, so a valid imputation fails the test
with probability at most 1% on any machine. Nothing here is a number measured on one machine.
The single-level contrast runs in the first CONTRAST_REPS replications only (its ICC loss is
large). The criteria that fail with today's defaults (KNOWN_FAILURES) have their own test, an
expected failure, so that the rest keeps guarding and a fix shows as an unexpected pass.
"""

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _validity import (  # noqa: E402
    COVERAGE_ALPHA,
    KINDS,
    METHODS,
    REPS_FACTOR,
    _laplace,
    analyse,
    fit_linear_mixed,
    fit_logistic,
    fit_logistic_firth,
    fit_logistic_mixed,
    replication,
    simulate,
    summarise,
)

from skmlmi.analysis import LinearMixedModel, LogisticMixedModel  # noqa: E402

REPS = 36
CONTRAST_REPS = 12
DESIGN = {"n_clusters": 30, "icc": 0.3}
#: Criteria that fail with today's defaults (benchmarks/validate_defaults.py, J = 30), each with its own
#: expected-failure test so that a fix shows as an unexpected pass. None at present: the cluster-level binary
#: predictor (coefficient 6-7% low while ClusterLevelLogistic drew from logreg's normal approximation) passes since
#: it draws from the exact posterior.
KNOWN_FAILURES: list[tuple[str, str, str]] = []


def _clustered(seed, n_clusters, tau):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_clusters), rng.integers(5, 41, n_clusters))
    n = g.size
    z = rng.normal(size=n)
    x = 0.5 * z + rng.normal(0, 0.6, n_clusters)[g] + rng.normal(size=n)
    y = 0.5 * x + 0.3 * z + rng.normal(0, tau, n_clusters)[g] + rng.normal(size=n)
    b = (rng.random(n) < 1 / (1 + np.exp(-(-0.5 + 0.8 * z + rng.normal(0, 2 * tau, n_clusters)[g])))).astype(float)
    return pd.DataFrame({"g": g, "x": x, "y": y, "z": z, "b": b})


# ------------------------------------------------------------------------------ fast fitters
@pytest.mark.parametrize("seed, n_clusters, tau", [(0, 30, 0.5), (1, 100, 0.3), (2, 30, 0.0), (3, 100, 1.0)])
def test_fast_linear_mixed_model_equals_package(seed, n_clusters, tau):
    data = _clustered(seed, n_clusters, tau)
    X = np.column_stack([np.ones(len(data)), data["x"], data["z"]])
    fast = fit_linear_mixed(data["y"].to_numpy(), X, data["g"].to_numpy(), n_clusters)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = LinearMixedModel("y ~ x + z + (1 | g)").fit(data)
    np.testing.assert_allclose(fast.coef, ref.coef_.to_numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fast.cov, ref.cov_params_.to_numpy(), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(
        [fast.tau2, fast.sigma2, fast.df_resid],
        [ref.variance_components_["Intercept~~Intercept|g"], ref.scale_, ref.df_resid_],
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize("seed, n_clusters, tau", [(0, 30, 0.5), (1, 100, 0.3), (2, 30, 0.0), (3, 100, 1.0)])
def test_fast_logistic_mixed_model_equals_package(seed, n_clusters, tau):
    data = _clustered(seed, n_clusters, tau)
    X = np.column_stack([np.ones(len(data)), data["z"]])
    fast = fit_logistic_mixed(data["b"].to_numpy(), X, data["g"].to_numpy(), n_clusters)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = LogisticMixedModel("b ~ z + (1 | g)").fit(data)
    np.testing.assert_allclose(fast.coef, ref.coef_.to_numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.sqrt(np.diag(fast.cov)), np.sqrt(np.diag(ref.cov_params_.to_numpy())), rtol=1e-5)
    assert abs(fast.tau2 - ref.variance_components_["Intercept~~Intercept|g"]) < 1e-6
    assert abs(fast.icc - ref.variance_components_["ICC|g"]) < 1e-6


def test_fast_logistic_mixed_model_stops_at_tau_zero_only_at_a_maximum():
    # tau = 0 is stationary for every data set (the Laplace log-likelihood is even in tau); here
    # it is not the maximum: the log-likelihood is 2.6 higher at tau^2 = 0.16
    from scipy.special import expit

    rng = np.random.default_rng(25)
    g = np.repeat(np.arange(30), rng.integers(5, 41, 30))
    z = rng.normal(size=g.size)
    y = (rng.random(g.size) < expit(-0.5 + 0.8 * z + rng.normal(0, 0.6, 30)[g])).astype(float)
    X = np.column_stack([np.ones(g.size), z])
    fit = fit_logistic_mixed(y, X, g, 30)[0]

    def loglik(beta, tau):
        return _laplace(np.r_[beta, tau][None], X, y[None], g, 30, np.zeros((1, 30)))[0][0]

    glm = fit_logistic(y, X).coef
    assert fit.tau2 > 0.05
    assert loglik(fit.coef, np.sqrt(fit.tau2)) > loglik(glm, 0.0) + 1.0
    # without cluster effects tau = 0 is the maximum here: the fit is the logistic regression itself
    flat = (rng.random(g.size) < expit(-0.5 + 0.8 * z)).astype(float)
    at_zero = fit_logistic_mixed(flat, X, g, 30)[0]
    assert at_zero.tau2 == 0
    np.testing.assert_allclose(at_zero.coef, fit_logistic(flat, X).coef, rtol=1e-10)
    np.testing.assert_allclose(at_zero.cov, fit_logistic(flat, X).cov, rtol=1e-5)


def test_batched_logistic_fits_equal_one_at_a_time():
    data = _clustered(4, 30, 0.5)
    g, X = data["g"].to_numpy(), np.column_stack([np.ones(len(data)), data["z"]])
    rng = np.random.default_rng(0)
    responses = np.array([np.where(rng.random(len(data)) < 0.2, 1 - data["b"], data["b"]) for _ in range(4)])
    batch = fit_logistic_mixed(responses, X, g, 30)
    for response, fit in zip(responses, batch, strict=True):
        single = fit_logistic_mixed(response, X, g, 30)[0]
        np.testing.assert_allclose(fit.coef, single.coef, atol=1e-8)
        np.testing.assert_allclose(fit.cov, single.cov, rtol=1e-6)


def test_fast_logistic_regression_equals_statsmodels():
    import statsmodels.api as sm

    data = _clustered(5, 30, 0.5)
    X = np.column_stack([np.ones(len(data)), data["z"]])
    fast = fit_logistic(data["b"].to_numpy(), X)
    ref = sm.GLM(data["b"].to_numpy(), X, family=sm.families.Binomial()).fit(tol=1e-12)
    np.testing.assert_allclose(fast.coef, ref.params, rtol=1e-8)
    np.testing.assert_allclose(fast.cov, ref.cov_params(), rtol=1e-8)


def test_firth_logistic_regression_maximises_the_jeffreys_penalised_likelihood():
    from scipy import optimize, special

    rng = np.random.default_rng(3)
    X = np.column_stack([np.ones(30), rng.normal(size=30)])
    y = (rng.random(30) < special.expit(-0.5 + 2.0 * X[:, 1])).astype(float)

    def negative(beta):
        eta = X @ beta
        info = X.T @ ((special.expit(eta) * special.expit(-eta))[:, None] * X)
        return -(y @ eta - np.logaddexp(0.0, eta).sum() + 0.5 * np.linalg.slogdet(info)[1])

    fit = fit_logistic_firth(y, X)
    ref = optimize.minimize(negative, np.zeros(2), method="BFGS", options={"gtol": 1e-10}).x
    np.testing.assert_allclose(fit.coef, ref, atol=1e-6)
    assert np.all(np.abs(fit.coef) < np.abs(fit_logistic(y, X).coef))  # shrunk towards 0 from the ML estimate
    # separated data: the ML estimate does not exist, Firth's is finite
    separated = fit_logistic_firth((X[:, 1] > 0).astype(float), X)
    assert np.all(np.isfinite(separated.coef)) and np.all(np.isfinite(separated.cov))


# ------------------------------------------------------------------------------ the stated truths
@pytest.mark.parametrize(
    "kind", ["continuous", "whole-number", "binary", "unordered", "ordered", "cluster continuous", "cluster binary"]
)
def test_simulations_have_the_stated_truth(kind):
    """On one large sample (1500 clusters) the complete-data estimates sit within 4.5 SE of the truth.

    4.5 SE: a Bonferroni bound at 1e-4 family-wise for the ~40 estimates checked across kinds. A
    variance component's relative SE is about c sqrt(2 / J), c = 1 + sigma^2 / (n tau^2) for a
    linear model (1.1 here) and larger for a logistic one, whose within-cluster information is
    smaller; c = 1.5 and 3 are upper bounds.
    """
    n_clusters = 1500
    data, truth = simulate(kind, n_clusters, 0.3, np.random.default_rng(7))
    fits = {role: f[0] for role, f in analyse([data], kind, truth, data["g"].to_numpy(), n_clusters).items()}
    for role, targets, positions in (
        ("predictor", truth.predictor, range(1, 1 + len(truth.predictor))),
        ("outcome", truth.outcome, range(2)),
    ):
        fit = fits[role]
        for k, term in zip(positions, targets, strict=True):
            se = np.sqrt(fit.cov[k, k])
            assert abs(fit.coef[k] - targets[term]) < 4.5 * se, (kind, role, term, fit.coef[k], targets[term], se)
    relative = 4.5 * np.sqrt(2.0 / n_clusters)
    assert abs(fits["predictor"].tau2 / truth.tau2_y - 1) < 1.5 * relative, kind
    if np.isfinite(truth.tau2_x):
        c = 1.5 if kind in ("continuous", "whole-number") else 3.0
        assert abs(fits["outcome"].tau2 / truth.tau2_x - 1) < c * relative, kind
        assert abs(fits["outcome"].icc / truth.icc_x - 1) < c * relative, kind


# ------------------------------------------------------------------------------ the reduced matrix
@pytest.fixture(scope="module")
def reduced():
    rows = []
    for kind in KINDS:
        for rep in range(REPS * REPS_FACTOR.get(kind, 1)):
            methods = METHODS if rep < CONTRAST_REPS else METHODS[:1]
            rows += replication(kind, DESIGN["n_clusters"], DESIGN["icc"], rep, m=5, max_iter=5, methods=methods)
    frame = pd.DataFrame(rows)
    base = summarise(frame)
    n_tests = int(2 * len(base) + base["def_icc"].notna().sum() + base["def_tau2"].notna().sum())
    widen = stats.t.ppf(1.0 - COVERAGE_ALPHA / (2.0 * n_tests), base["R"].to_numpy() - 1)
    return summarise(frame, widen=widen, n_tests=n_tests)


def _failures(table):
    return table[
        ["kind", "role", "term", "bound", "def_paired", "def_paired_mcse", "def_cov", "def_icc", "def_tau2"]
    ].to_string()


@pytest.mark.parametrize("criterion", ["ok_bias", "ok_icc", "ok_tau2", "ok_cov"])
def test_defaults_are_valid_for_every_kind(reduced, criterion):
    known = [(kind, role) for kind, role, c in KNOWN_FAILURES if c == criterion]
    cells = pd.Series(list(zip(reduced["kind"], reduced["role"], strict=True)), index=reduced.index)
    failed = reduced[reduced[criterion].eq(False) & ~cells.isin(known)]
    assert failed.empty, _failures(failed)


@pytest.mark.xfail(reason="a criterion listed in KNOWN_FAILURES", strict=False)
@pytest.mark.parametrize("kind, role, criterion", KNOWN_FAILURES)
def test_cluster_level_defaults_are_valid(reduced, kind, role, criterion):
    cell = reduced[(reduced["kind"] == kind) & (reduced["role"] == role)]
    assert not cell[criterion].eq(False).any(), _failures(cell)


def test_single_level_imputation_loses_the_icc(reduced):
    # the contrast has power: ignoring the clusters shrinks the ICC of a level-1 x (truth 0.3)
    sporadic = reduced[(reduced["role"] == "outcome") & reduced["kind"].isin(["continuous", "binary", "ordered"])]
    assert (sporadic["sl_icc"] + 3 * sporadic["sl_icc_mcse"] < -0.02).all(), sporadic[["kind", "sl_icc"]]
