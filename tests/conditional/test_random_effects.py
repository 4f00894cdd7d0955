"""Tests of the two-level normal and PMM conditional models (random_effects.py).

The models are called directly through the conditional-model contract, in a mini
chained loop for one variable: draw, impute the missing rows, feed the completed y
back together with the returned state (warm start).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skmlmi.conditional.base import DrawContext
from skmlmi.conditional.random_effects import RandomEffectsNormal, RandomEffectsPMM, RandomEffectsState
from skmlmi.conditional.single_level import PredictiveMeanMatching

SHARED = Path(os.environ["SKMLMI_SHARED"])


# --------------------------------------------------------------------------- helpers
def simulate(J=150, n_j=20, tau=(1.0, 0.5), sigma=1.0, beta=(1.0, 0.5, -0.3), missing=0.3, seed=0):
    """y = beta0 + beta1 x1 + beta2 x2 + b0_j + b1_j x1 + e; x1 random slope, x2 fixed (level 2)."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(J), n_j)
    n = len(groups)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=J)[groups]
    b = rng.normal(size=(J, 2)) * tau
    y = beta[0] + beta[1] * x1 + beta[2] * x2 + b[groups, 0] + b[groups, 1] * x1 + sigma * rng.normal(size=n)
    observed = rng.random(n) >= missing
    X = np.column_stack([x1, x2])
    return y, observed, X, np.array([2, 1]), groups


def chain(model, y, observed, X, roles, groups, seed=1, visits=10, context=None, keep=False):
    """A mini chained loop for one variable; returns the completed y, the states and draws."""
    rng = np.random.default_rng(seed)
    context = context or DrawContext(target="y", n_clusters=int(groups.max()) + 1)
    y = y.copy()
    y[~observed] = np.mean(y[observed])  # the engine's start: any fill works
    state, states, draws = None, [], []
    for _ in range(visits):
        draw, state = model.draw(y, observed, X, roles, groups, rng, state, context)
        y[~observed] = draw.sample(X[~observed], groups[~observed], rng)
        if keep:
            # the draw holds Psi and sigma on the data's scale (the state is in the sampler's units)
            states.append((state.beta.copy(), draw.psi_sqrt @ draw.psi_sqrt.T, np.square(draw.sigma)))
            draws.append(draw)
    return y, states, draws, context


def icc_anova(y, groups):
    """One-way ANOVA estimate of the intraclass correlation (balanced clusters)."""
    J = groups.max() + 1
    n_j = np.bincount(groups, minlength=J)
    means = np.bincount(groups, weights=y, minlength=J) / n_j
    within = np.sum((y - means[groups]) ** 2) / (len(y) - J)
    between = np.var(means, ddof=1) - within / n_j.mean()
    return between / (between + within)


# --------------------------------------------------------------------------- recovery
def test_posterior_recovers_known_fixed_effects_and_variances():
    y, observed, X, roles, groups = simulate(seed=3)
    _, states, _, _ = chain(RandomEffectsNormal(n_gibbs=5), y, observed, X, roles, groups, visits=60, keep=True)
    beta = np.array([s[0] for s in states[10:]])
    psi = np.array([s[1] for s in states[10:]])
    sigma2 = np.array([s[2] for s in states[10:]])
    draws = {
        "beta0": beta[:, 0],
        "beta1": beta[:, 1],
        "beta2": beta[:, 2],
        "tau2_0": psi[:, 0, 0],
        "tau2_1": psi[:, 1, 1],
        "sigma2": sigma2,
    }
    truth = {"beta0": 1.0, "beta1": 0.5, "beta2": -0.3, "tau2_0": 1.0, "tau2_1": 0.25, "sigma2": 1.0}
    # A calibrated posterior puts the truth within 4 posterior SDs (two-sided tail
    # 6e-5 per parameter); the posterior SD is estimated from 50 draws of a chain whose
    # lag-5 autocorrelation is small, so its own error is ~10%, hence 4.5 SDs.
    for name, value in truth.items():
        d = draws[name]
        assert abs(d.mean() - value) < 4.5 * d.std(), (name, d.mean(), d.std())
    # and the posterior is informative: SDs well below the parameter values
    assert draws["sigma2"].std() < 0.1 and draws["tau2_0"].std() < 0.3


def test_heteroscedastic_recovers_cluster_specific_variances():
    rng = np.random.default_rng(5)
    J, n_j = 60, 30
    groups = np.repeat(np.arange(J), n_j)
    sd_j = np.where(np.arange(J) < J // 2, 0.5, 2.0)  # variances 0.25 and 4
    y = rng.normal(size=J)[groups] + sd_j[groups] * rng.normal(size=J * n_j)
    observed = rng.random(J * n_j) >= 0.2
    X = np.zeros((J * n_j, 0))
    model = RandomEffectsNormal(heteroscedastic=True)
    _, states, _, _ = chain(model, y, observed, X, np.zeros(0, int), groups, visits=20, keep=True)
    s2 = np.mean([s[2] for s in states[5:]], axis=0)
    # With ~24 observed rows a cluster's sigma_j^2 has a posterior CV of about
    # sqrt(2/24) = 0.29; averaged over 30 clusters the group means are within ~6%.
    assert abs(np.mean(s2[: J // 2]) - 0.25) < 0.25 * 0.25
    assert abs(np.mean(s2[J // 2 :]) - 4.0) < 0.25 * 4.0


def test_completed_data_keep_the_icc_that_single_level_pmm_loses():
    y, observed, X, roles, groups = simulate(J=100, n_j=20, tau=(1.0, 0.0), missing=0.4, seed=7)
    X, roles = X[:, 1:], roles[1:]  # x2 (level-2) only: the ICC of y is (1 + 0.09)/(2.09)
    icc_full = icc_anova(y, groups)
    icc_re = np.mean(
        [
            icc_anova(chain(RandomEffectsNormal(), y, observed, X, roles, groups, seed=s, visits=5)[0], groups)
            for s in range(4)
        ]
    )
    icc_pmm_re = icc_anova(chain(RandomEffectsPMM(), y, observed, X, roles, groups, seed=11, visits=5)[0], groups)
    single, rng = PredictiveMeanMatching(), np.random.default_rng(0)
    y_pmm = y.copy()
    for _ in range(5):
        draw, _ = single.draw(y_pmm, observed, X, roles * 0 + 1, None, rng)
        y_pmm[~observed] = draw.sample(X[~observed], None, rng)
    icc_single = icc_anova(y_pmm, groups)
    # Between-imputation SD of the completed-data ICC is about 0.015 here (40% missing,
    # 100 clusters); 0.05 is > 3 SDs for one imputation and more for the mean of 4.
    assert abs(icc_re - icc_full) < 0.04
    assert abs(icc_pmm_re - icc_full) < 0.05
    # single-level PMM ignores the clusters: 40% of values carry no cluster effect
    assert icc_single < icc_full - 0.1


# --------------------------------------------------------------------------- warm start
def test_warm_start_state_is_returned_and_continued():
    y, observed, X, roles, groups = simulate(J=40, n_j=10)
    model = RandomEffectsNormal(n_gibbs=7, n_burnin=3)
    rng = np.random.default_rng(0)
    context = DrawContext(target="y", n_clusters=40)
    _, state = model.draw(y, observed, X, roles, groups, rng, None, context)
    assert isinstance(state, RandomEffectsState) and state.n_steps == 10
    precision_before = state.psi_precision.copy()
    _, state2 = model.draw(y, observed, X, roles, groups, rng, state, context)
    assert state2 is state and state2.n_steps == 17  # continued, no second burn-in
    assert not np.allclose(precision_before, state2.psi_precision)
    # the next visit starts from the stored state: a state whose Psi is (almost) zero
    # shrinks every b_j to 0, so one step draws Psi ~ IW(c + J, I), mean I / (J + 1) = 0.024,
    # far below the posterior of the slope variance (0.25 simulated)
    one = RandomEffectsNormal(n_gibbs=1)
    state.psi_precision = 1e8 * np.eye(2)
    _, forced = one.draw(y, observed, X, roles, groups, rng, state, context)
    assert forced.trace["psi"][0, 1, 1] < 0.06
    _, fresh = one.draw(y, observed, X, roles, groups, rng, None, context)
    assert fresh.trace["psi"][-1, 1, 1] > 0.1
    # a state from another design (different number of clusters) is not reused
    _, other = model.draw(y, observed, X, roles, np.minimum(groups, 19), rng, state, DrawContext(n_clusters=20))
    assert other.n_steps == 10 and other is not state


def test_draw_is_picklable_and_reproducible_with_seeded_rng():
    y, observed, X, roles, groups = simulate(J=30, n_j=10)
    first, *_ = chain(RandomEffectsNormal(), y, observed, X, roles, groups, seed=42, visits=3)
    second, _, draws, _ = chain(RandomEffectsNormal(), y, observed, X, roles, groups, seed=42, visits=3, keep=True)
    third, *_ = chain(RandomEffectsNormal(), y, observed, X, roles, groups, seed=43, visits=3)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first[~observed], third[~observed])
    clone = pickle.loads(pickle.dumps(draws[-1]))
    rows = ~observed
    np.testing.assert_array_equal(
        clone.sample(X[rows], groups[rows], np.random.default_rng(0)),
        draws[-1].sample(X[rows], groups[rows], np.random.default_rng(0)),
    )


# --------------------------------------------------------------------------- systematic
def test_systematically_missing_cluster_drawn_from_population():
    y, observed, X, roles, groups = simulate(J=120, n_j=25, tau=(1.0, 0.0), beta=(1.0, 0.5, 0.0), seed=2)
    X, roles = X[:, :1], np.array([1])
    systematic = np.arange(100, 120)
    observed[np.isin(groups, systematic)] = False
    model = RandomEffectsNormal()
    context = DrawContext(target="score", n_clusters=120, cluster_labels=[f"school{j}" for j in range(120)])
    rng = np.random.default_rng(0)
    yc, state, deviations, implied = y.copy(), None, [], []
    yc[~observed] = y[observed].mean()
    for _ in range(40):
        draw, state = model.draw(yc, observed, X, roles, groups, rng, state, context)
        yc[~observed] = draw.sample(X[~observed], groups[~observed], rng)
        resid = yc - state.beta[0] - X[:, 0] * state.beta[1]
        deviations.append(np.bincount(groups, weights=resid, minlength=120)[systematic] / 25)
        implied.append((draw.psi_sqrt @ draw.psi_sqrt.T)[0, 0] + draw.sigma**2 / 25)
    deviations = np.array(deviations)
    # A systematic cluster's mean deviation is N(0, Psi_00 + sigma^2 / 25) given the
    # draw. 800 values: the mean has SE ~0.04 (x3 for the correlation through the
    # parameters) and the mean square an SE of ~5% (sqrt(2/800)), 20% allowed.
    assert abs(deviations.mean()) < 0.15
    assert abs((deviations**2).mean() / np.mean(implied) - 1) < 0.2
    # and it is the population distribution, not zero: Psi_00 is about tau^2 = 1
    assert 0.7 < np.mean(implied) < 1.5
    assert any("no observed value" in e and "'score'" in e and "'school100'" in e for e in context.events)


def test_unseen_clusters_at_sample_time_get_population_effects():
    y, observed, X, roles, groups = simulate(J=80, n_j=20, tau=(1.5, 0.0), seed=4)
    _, _, draws, _ = chain(RandomEffectsNormal(), y, observed, X, roles, groups, visits=4, keep=True)
    draw = draws[-1]
    rng = np.random.default_rng(9)
    new_groups = np.repeat(np.arange(80, 380), 30)  # 300 clusters never seen
    Xn = np.zeros((len(new_groups), 2))
    out = draw.sample(Xn, new_groups, rng)
    means = out.reshape(300, 30).mean(axis=1)
    within = out.reshape(300, 30).var(axis=1, ddof=1).mean()
    psi00 = (draw.psi_sqrt @ draw.psi_sqrt.T)[0, 0]
    # var of cluster means = Psi_00 + sigma^2 / 30; with 300 clusters its SE is ~8%
    assert abs(means.var(ddof=1) - (psi00 + draw.sigma**2 / 30)) < 0.3 * psi00
    assert abs(within - draw.sigma**2) < 0.1 * draw.sigma**2


# --------------------------------------------------------------------------- PMM
def test_pmm_imputes_only_observed_values_with_both_matchtypes():
    y, observed, X, roles, groups = simulate(J=50, n_j=12, seed=8)
    y = np.round(y * 2) / 2  # a coarse support
    for matchtype in (1, 2):
        completed, *_ = chain(RandomEffectsPMM(matchtype=matchtype), y, observed, X, roles, groups, visits=3)
        assert set(np.unique(completed[~observed])) <= set(np.unique(y[observed]))


def test_pmm_predictions_include_the_random_effects():
    # y = b_j only: donors of a recipient must come from clusters with similar b_j
    rng = np.random.default_rng(1)
    J, n_j = 50, 20
    groups = np.repeat(np.arange(J), n_j)
    b = np.linspace(-5, 5, J)
    y = b[groups] + 0.1 * rng.normal(size=J * n_j)
    observed = rng.random(J * n_j) >= 0.3
    completed, *_ = chain(RandomEffectsPMM(), y, observed, np.zeros((J * n_j, 0)), np.zeros(0, int), groups, visits=3)
    # the cluster effects are 0.2 apart and the residual SD 0.1: imputations stay in their cluster's range
    assert np.max(np.abs(completed[~observed] - b[groups[~observed]])) < 0.6


def test_pmm_imputations_keep_the_icc_and_the_within_cluster_variance():
    # Many small clusters, ICC 0.5, half of y missing, no predictors: every recipient of a
    # cluster has the same prediction. Donors scored at the posterior means b_hat_j (whose
    # residuals lack Var(b_j | y) and grow with b_hat_j) raise the completed data's ICC by
    # 0.06-0.08 here; donors shared inside a cluster (probability 1/5 per pair) shrink the
    # imputations' within-cluster variance to about 0.85 and raise the ICC by about 0.02. (matchtype=2
    # fails here too, by design: see RandomEffectsPMM's Notes.)
    icc_shift, squares, dof = [], 0.0, 0
    for seed in range(4):
        rng = np.random.default_rng(100 + seed)
        J, n_j = 1500, 8
        groups = np.repeat(np.arange(J), n_j)
        y = rng.normal(size=J)[groups] + rng.normal(size=J * n_j)
        observed = rng.random(J * n_j) >= 0.5
        completed, *_ = chain(
            RandomEffectsPMM(), y, observed, np.zeros((J * n_j, 0)), np.zeros(0, int), groups, seed=seed, visits=4
        )
        icc_shift.append(icc_anova(completed, groups) - icc_anova(y, groups))
        g, v = groups[~observed], completed[~observed]
        counts = np.bincount(g, minlength=J)
        means = np.bincount(g, weights=v, minlength=J) / np.maximum(counts, 1)
        squares += np.sum((v - means[g]) ** 2)
        dof += int(np.sum(np.maximum(counts - 1, 0)))
    # one replication's ICC shift has SD 0.0104 (12 replications of this design), so 4 SD of the mean of 4
    assert abs(np.mean(icc_shift)) < 4 * 0.0104 / 2, icc_shift
    # the pooled within-cluster variance of the imputations (sigma^2 = 1) has SE ~ sqrt(2 / dof)
    assert abs(squares / dof - 1.0) < 4 * np.sqrt(2 / dof), squares / dof


# --------------------------------------------------------------------------- hard cases
def test_cluster_of_one_row_is_imputed_and_logged():
    y, observed, X, roles, groups = simulate(J=40, n_j=10, seed=5)
    keep = ~((groups < 5) & (np.arange(len(groups)) % 10 != 0))  # clusters 0..4 keep one row
    y, observed, X, groups = y[keep], observed[keep], X[keep], groups[keep]
    observed[groups < 5] = True
    completed, _, _, context = chain(RandomEffectsNormal(), y, observed, X, roles, groups, visits=3)
    assert np.isfinite(completed).all()
    assert any("single observed row" in e and "'y'" in e for e in context.events)


def test_more_random_effects_than_clusters_support_is_shrunk_and_logged():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(3), 15)
    X = rng.normal(size=(45, 3))
    y = X.sum(axis=1) + rng.normal(size=3)[groups] + rng.normal(size=45)
    observed = rng.random(45) >= 0.3
    model = RandomEffectsNormal()
    completed, _, draws, context = chain(model, y, observed, X, np.array([2, 2, 1]), groups, visits=3, keep=True)
    assert np.isfinite(completed).all() and draws[-1].b.shape == (3, 3)
    assert any("determined mostly by its prior" in e and "'y'" in e for e in context.events)


def test_random_slope_constant_within_clusters_becomes_fixed_and_is_logged():
    y, observed, X, roles, groups = simulate(J=40, n_j=10, seed=6)
    context = DrawContext(target="y", n_clusters=40, predictor_names=("x1", "texp"))
    completed, _, draws, context = chain(
        RandomEffectsNormal(), y, observed, X, np.array([2, 2]), groups, visits=3, context=context, keep=True
    )
    assert np.isfinite(completed).all()
    assert tuple(draws[-1].slope_columns) == (0,)  # texp lost its random slope, kept its fixed effect
    assert draws[-1].beta[2] != 0
    assert any("'texp' is constant within clusters" in e and "'y'" in e for e in context.events)


def test_near_singular_psi_is_logged_without_failure():
    # A warm state whose Psi has correlation 1 - 1e-9 and a prior with no mass (Dinv
    # 1e-12): b_j are drawn almost collinear, so the next Psi draw is near singular too.
    y, observed, X, roles, groups = simulate(J=60, n_j=10, seed=9)
    model = RandomEffectsNormal(n_gibbs=1, prior={"Dinv": 1e-12})
    rng = np.random.default_rng(0)
    context = DrawContext(target="y", n_clusters=60)
    _, state = model.draw(y, observed, X, roles, groups, rng, None, context)
    assert not any("near singular" in e for e in context.events)
    state.psi_precision = np.linalg.inv(np.array([[1.0, 1 - 1e-9], [1 - 1e-9, 1.0]]))
    draw, state = model.draw(y, observed, X, roles, groups, rng, state, context)
    out = draw.sample(X[~observed], groups[~observed], rng)
    assert np.isfinite(out).all() and np.isfinite(draw.b).all()
    assert any("near singular" in e and "'y'" in e for e in context.events)


def test_hard_cases_are_logged_once_per_chain():
    y, observed, X, roles, groups = simulate(J=30, n_j=10, seed=1)
    observed[groups == 0] = False
    _, _, _, context = chain(RandomEffectsNormal(), y, observed, X, roles, groups, visits=5)
    assert sum("no observed value" in e for e in context.events) == 1


def test_heteroscedastic_handles_single_row_and_systematic_clusters():
    y, observed, X, roles, groups = simulate(J=30, n_j=8, seed=10)
    observed[groups == 0] = False
    observed[(groups == 1) & (np.arange(len(groups)) % 8 != 0)] = False
    completed, _, draws, context = chain(
        RandomEffectsNormal(heteroscedastic=True), y, observed, X, roles, groups, visits=4, keep=True
    )
    assert np.isfinite(completed).all() and np.all(draws[-1].sigma > 0)
    assert any("no observed value" in e for e in context.events)
    out = draws[-1].sample(X[:5], np.full(5, 99), np.random.default_rng(0))  # unseen cluster
    assert np.isfinite(out).all()


def test_no_observed_values_is_a_clear_error():
    y, observed, X, roles, groups = simulate(J=10, n_j=5)
    with pytest.raises(ValueError, match="no observed values of 'income'"):
        RandomEffectsNormal().draw(
            y, np.zeros_like(observed), X, roles, groups, np.random.default_rng(0), None, DrawContext(target="income")
        )
    with pytest.raises(ValueError, match="needs a cluster identifier"):
        RandomEffectsNormal().draw(y, observed, X, roles, None, np.random.default_rng(0))


def test_collinear_predictor_is_dropped_and_logged():
    y, observed, X, roles, groups = simulate(J=30, n_j=10, seed=12)
    X = np.column_stack([X, 2 * X[:, 1] + 1])
    context = DrawContext(target="y", n_clusters=30, predictor_names=("x1", "x2", "x2copy"))
    completed, _, draws, context = chain(
        RandomEffectsNormal(), y, observed, X, np.array([2, 1, 1]), groups, visits=2, context=context, keep=True
    )
    assert np.isfinite(completed).all() and np.count_nonzero(draws[-1].beta[1:]) == 2
    assert any("dropped: collinear" in e for e in context.events)


# --------------------------------------------------------------------------- popmis
@pytest.mark.skipif(not (SHARED / "data" / "popmis.csv").exists(), reason="shared popmis data not available")
def test_popmis_variance_components_close_to_r_2l_pan():
    pd = pytest.importorskip("pandas")
    df = pd.read_csv(SHARED / "data" / "popmis.csv")
    ref = pd.read_csv(SHARED / "reference" / "popmis_mice.csv")
    ref = ref[ref["method"] == "2l.pan"].set_index("term")
    groups = pd.factorize(df["school"], sort=True)[0]
    y = df["popular"].to_numpy(float)
    observed = ~np.isnan(y)
    X = df[["sex", "texp"]].to_numpy(float)
    estimates = []
    for seed in range(20):
        completed, *_ = chain(
            RandomEffectsNormal(), np.nan_to_num(y), observed, X, np.array([2, 1]), groups, seed=seed, visits=5
        )
        # moment (ANOVA) estimates of tau2 and sigma2 of the random-intercept model on the
        # completed data, after removing the fixed effects of sex and texp by within/between OLS
        n_j = np.bincount(groups)
        ybar = np.bincount(groups, weights=completed) / n_j
        sbar = np.bincount(groups, weights=X[:, 0]) / n_j
        yw, sw = completed - ybar[groups], X[:, 0] - sbar[groups]
        slope = (sw @ yw) / (sw @ sw)
        sigma2 = np.sum((yw - slope * sw) ** 2) / (len(y) - len(n_j) - 1)
        texp = X[:, 1][np.r_[0, np.flatnonzero(np.diff(groups)) + 1]]
        D = np.column_stack([np.ones(len(n_j)), texp])
        u = ybar - slope * sbar
        r = u - D @ np.linalg.lstsq(D, u, rcond=None)[0]
        tau2 = r @ r / (len(n_j) - 2) - sigma2 * np.mean(1 / n_j)
        estimates.append((tau2, sigma2))
    est = np.array(estimates)
    for k, term in enumerate(("tau2", "sigma2")):
        ours, se_ours = est[:, k].mean(), est[:, k].std(ddof=1) / np.sqrt(len(est))
        r_value, se_r = ref.loc[term, "estimate"], ref.loc[term, "mc_se"]
        # the parity rule (moment estimates here, REML in R: they agree to ~0.003 on popmis)
        assert abs(ours - r_value) <= 4 * np.hypot(se_ours, se_r) + 0.01, (term, ours, r_value)


def test_scaled_prior_is_scale_invariant_and_pan_prior_is_not():
    y, observed, X, roles, groups = simulate(J=40, n_j=10, seed=13)
    c = 1e-3
    base, *_ = chain(RandomEffectsNormal(prior="scaled"), y, observed, X, roles, groups, seed=5, visits=3)
    small, *_ = chain(RandomEffectsNormal(prior="scaled"), c * y, observed, X, roles, groups, seed=5, visits=3)
    # the same random numbers give the same chain on the new scale (up to rounding)
    np.testing.assert_allclose(small[~observed], c * base[~observed], rtol=1e-6)
    # pan's fixed prior (Binv = 1, Dinv = I) swamps a target with variance ~1e-6
    pan, *_ = chain(RandomEffectsNormal(prior="pan"), c * y, observed, X, roles, groups, seed=5, visits=3)
    assert np.std(pan[~observed]) > 10 * np.std(small[~observed])


@pytest.mark.parametrize(
    "prior, match",
    [
        ({"df": 3}, r"unknown prior keys \['df'\]"),
        ({"a": 0}, r"prior\['a'\] must be a positive number"),
        ({"c": "two"}, r"prior\['c'\] must be a positive number"),
        ({"Dinv": "a"}, r"prior\['Dinv'\] must be a number or a square matrix"),
        ({"Dinv": np.ones((2, 3))}, r"prior\['Dinv'\] must be a finite number or square matrix"),
    ],
)
def test_a_dict_prior_is_checked_with_the_parameters_before_any_chain(prior, match):
    from skmlmi import MultilevelIterativeImputer

    rng = np.random.default_rng(0)
    data = pd.DataFrame({"g": np.repeat(np.arange(6), 10), "x": rng.normal(size=60), "y": rng.normal(size=60)})
    data.loc[::7, "y"] = np.nan
    for model in (RandomEffectsNormal(prior=prior), RandomEffectsPMM(prior=prior)):
        imputer = MultilevelIterativeImputer(methods={"y": model}, n_imputations=1, max_iter=1)
        with pytest.raises(ValueError, match=match) as info:
            imputer.fit(data, groups="g")
        assert "chain" not in str(info.value)  # raised while planning, not inside a chain
