"""HeckmanSelection: likelihood numerics, draws, clusters, engine runs (reduced; full runs in benchmarks/)."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import special

from skmlmi import MultilevelIterativeImputer
from skmlmi.conditional import RandomEffectsNormal
from skmlmi.conditional.base import DrawContext
from skmlmi.conditional.heckman import HeckmanSelection
from skmlmi.datasets.heckman import interviewer_effect, load_hiv, load_obesity, make_heckman


def _arrays(data, exclusion=True):
    columns = ["x", "z"] if exclusion else ["x"]
    y = data["y"].to_numpy()
    observed = ~np.isnan(y)
    roles = np.array([1, -3]) if exclusion else np.array([1])
    return np.nan_to_num(y), observed, data[columns].to_numpy(), roles, data["cluster"].to_numpy()


def _draw(data, rng=0, model=None, exclusion=True, context=None, groups=True):
    y, observed, X, roles, g = _arrays(data, exclusion)
    context = context or DrawContext(target="y", n_clusters=int(g.max()) + 1 if groups else 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        draw, state = (model or HeckmanSelection()).draw(
            y, observed, X, roles, g if groups else None, np.random.default_rng(rng), None, context
        )
    return draw, state, context


def test_missing_values_are_drawn_from_the_truncated_conditional_law():
    # y | s = 0 has mean v'b + sigma rho E[u | u < c] and variance sigma^2 (1 - rho^2 + rho^2 Var[u | u < c])
    # with c = -w'g; R's mean shift + N(0, sigma^2) noise has variance sigma^2 (too large).
    data = make_heckman(n_clusters=1, cluster_size=1500, random_state=5)
    draw, _, _ = _draw(data, groups=False)
    lay = draw.layout
    theta = draw.theta[0]
    row = np.array([[0.3, -0.5]])
    eta_s, eta_o = draw._linear(row, theta[None, :])
    sigma, rho = np.exp(theta[lay.log_sigma]), np.tanh(theta[lay.rho])
    c = -eta_s[0]
    lam = np.exp(special.log_ndtr(c) * -1 - 0.5 * c * c - 0.5 * np.log(2 * np.pi))  # phi(c) / Phi(c)
    mean_u, var_u = -lam, 1 - c * lam - lam**2
    mean = draw.y_center + draw.y_scale * (eta_o[0] + sigma * rho * mean_u)
    sd = draw.y_scale * sigma * np.sqrt(1 - rho**2 + rho**2 * var_u)
    n = 200_000
    values = draw.sample(np.repeat(row, n, axis=0), None, np.random.default_rng(7))
    # Monte Carlo SE of the mean sd / sqrt(n); of the SD about sd / sqrt(2n): 5 SE tolerances
    assert abs(values.mean() - mean) < 5 * sd / np.sqrt(n)
    assert abs(values.std() - sd) < 5 * sd / np.sqrt(2 * n)
    assert sd < draw.y_scale * sigma * 0.97  # the truncated law is narrower than R's noise


# ----------------------------------------------------------------------------- estimates and clusters
def test_per_cluster_rho_estimates_are_centred_on_the_truth():
    estimates = []
    for seed in (11, 12):
        data = make_heckman(n_clusters=15, cluster_size=200, rho=0.6, random_state=seed)
        draw, _, _ = _draw(data)
        assert draw.estimable.all()
        estimates.append(draw.rho_hat)
    estimates = np.concatenate(estimates)
    # per-cluster SE of atanh(rho_hat) ~ 0.27 at n = 200 (cluster_table), i.e. ~0.17 on the rho scale;
    # the mean of 30 clusters has SE ~0.03: 4 SE = 0.12
    assert abs(estimates.mean() - 0.6) < 0.12


def test_systematically_missing_and_unseen_clusters_are_imputed_from_the_population():
    data = make_heckman(n_clusters=6, cluster_size=150, random_state=2)
    data.loc[data["cluster"] == 0, "y"] = np.nan  # systematically missing
    context = DrawContext(target="y", n_clusters=6, cluster_labels=["a", "b", "c", "d", "e", "f"])
    draw, _, context = _draw(data, context=context)
    assert not draw.estimable[0] and draw.estimable[1:].all()
    assert any("cluster 'a' not estimable (no observed values)" in e for e in context.events)
    X = data[["x", "z"]].to_numpy()[:50]
    for code in (0, 9):  # systematic training cluster, unseen cluster
        values = draw.sample(X, np.full(50, code), np.random.default_rng(1))
        assert np.isfinite(values).all() and values.std() > 0
    table = draw.cluster_table()
    assert list(table["cluster"]) == ["a", "b", "c", "d", "e", "f"] and np.isnan(table.loc[0, "rho_hat"])


def test_cluster_without_missing_values_is_not_estimable_and_logged():
    data = make_heckman(n_clusters=5, cluster_size=150, random_state=4)
    complete = make_heckman(n_clusters=5, cluster_size=150, random_state=4, return_truth=True)[1]
    data.loc[data["cluster"] == 2, "y"] = complete.loc[data["cluster"] == 2, "y"]
    draw, _, context = _draw(data)
    assert not draw.estimable[2] and draw.estimable.sum() == 4
    assert any("cluster '2' not estimable (no missing values" in e for e in context.events)


def test_no_exclusion_restriction_warns_and_logs():
    data = make_heckman(n_clusters=3, cluster_size=150, exclusion=False, random_state=1)
    y, observed, X, roles, g = _arrays(data, exclusion=False)
    context = DrawContext(target="y", n_clusters=3)
    with pytest.warns(UserWarning, match="no exclusion restriction"):
        HeckmanSelection().draw(y, observed, X, roles, g, np.random.default_rng(0), None, context)
    assert any("functional form" in e for e in context.events)


def test_roles_select_the_equations():
    data = make_heckman(n_clusters=3, cluster_size=150, random_state=6)
    y, observed, X, _, g = _arrays(data)
    X3 = np.column_stack([X, np.random.default_rng(0).normal(size=len(y))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        draw, _ = HeckmanSelection().draw(y, observed, X3, np.array([2, -3, -4]), g, np.random.default_rng(0))
    draw = getattr(draw, "inner", draw)
    assert draw.layout.selection.tolist() == [0, 1] and draw.layout.outcome.tolist() == [0, 2]


def test_single_level_model_without_groups_corrects_the_mean():
    data, complete, _ = make_heckman(n_clusters=1, cluster_size=3000, rho=0.6, random_state=8, return_truth=True)
    y, observed, X, roles, _ = _arrays(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        draw, state = HeckmanSelection().draw(y, observed, X, roles, None, np.random.default_rng(0))
    imputed = draw.sample(X[~observed], None, np.random.default_rng(1))
    truth = complete["y"].to_numpy()[~observed].mean()
    # the observed mean overstates the missing ones by ~0.9 SD(y); imputation SE ~ 0.06 (one draw, ~1200 rows
    # plus parameter uncertainty): 0.2 is > 3 SE and far below the MAR bias
    assert abs(imputed.mean() - truth) < 0.2 < y[observed].mean() - truth


def test_pmm_imputes_observed_values():
    data = make_heckman(n_clusters=4, cluster_size=150, random_state=9)
    draw, _, _ = _draw(data, model=HeckmanSelection(pmm=True))
    y, observed, X, _, g = _arrays(data)
    values = draw.sample(X[~observed], g[~observed], np.random.default_rng(3))
    assert set(values) <= set(y[observed])


def test_binary_outcome_corrects_the_prevalence():
    data, complete, _ = make_heckman(n_clusters=8, cluster_size=400, rho=0.6, random_state=10, return_truth=True)
    data["y"] = np.where(data["y"].isna(), np.nan, (data["y"] > 1).astype(float))
    truth = float((complete["y"].to_numpy()[data["y"].isna()] > 1).mean())
    context = DrawContext(target="y", kind="binary", n_categories=2, n_clusters=8)
    y, observed, X, roles, g = _arrays(data)
    means = []
    for seed in range(3):
        draw, _ = HeckmanSelection().draw(y, observed, X, roles, g, np.random.default_rng(seed), None, context)
        values = draw.sample(X[~observed], g[~observed], np.random.default_rng(seed + 10))
        assert set(np.unique(values)) <= {0.0, 1.0}
        means.append(values.mean())
    observed_prevalence = y[observed].mean()
    # observed prevalence overstates the missing rows' by ~0.3; the mean of 3 draws over ~1280 rows has
    # SE ~0.03 (binomial + parameter uncertainty): 0.1 is > 3 SE
    assert abs(np.mean(means) - truth) < 0.1 < observed_prevalence - truth


# ----------------------------------------------------------------------------- engine (reduced validation)
def _engine_bias(rho, reps, seed0):
    out = {"heckman": [], "mar": []}
    for r in range(reps):
        data, complete, _ = make_heckman(
            n_clusters=10, cluster_size=150, rho=rho, missing_prop=0.4, random_state=seed0 + r, return_truth=True
        )
        for name, model, z_role in (("heckman", HeckmanSelection(), -3), ("mar", RandomEffectsNormal(), 1)):
            imp = MultilevelIterativeImputer(
                methods={"y": model}, n_imputations=3, max_iter=3, random_state=r, predictor_matrix={"z": {"y": z_role}}
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sets = imp.fit_transform_all(data, groups="cluster")
            mean = np.mean([s["y"].mean() for s in sets])
            slope = np.mean([np.polyfit(s["x"], s["y"], 1)[0] for s in sets])
            out[name].append((mean - complete["y"].mean(), slope - np.polyfit(complete["x"], complete["y"], 1)[0]))
    return {k: np.mean(v, axis=0) for k, v in out.items()}


def test_heckman_removes_the_mnar_bias_that_mar_imputation_keeps():
    bias = _engine_bias(0.6, reps=3, seed0=100)
    sd_y = 1.22  # population SD of y in make_heckman
    # benchmarks/validate_heckman.py (40 reps) gives Heckman mean bias ~0 (per-rep SD ~0.03 at this size, so the
    # mean of 3 reps has SE ~0.02) and MAR ~0.37; slope: Heckman ~0 (SE ~0.02), MAR ~-0.12 (relative -23%)
    assert abs(bias["heckman"][0]) < 0.08 * sd_y
    assert abs(bias["mar"][0]) > 3 * abs(bias["heckman"][0]) and bias["mar"][0] > 0.2
    assert abs(bias["heckman"][1]) / 0.5 < 0.12 and abs(bias["mar"][1]) > 3 * abs(bias["heckman"][1])


def test_with_rho_zero_heckman_and_mar_are_both_unbiased():
    bias = _engine_bias(0.0, reps=2, seed0=200)
    # per-rep SD of the mean error ~0.03 (Heckman) and ~0.02 (MAR): 2 reps give SE ~0.02; 0.08 > 3 SE
    for name in ("heckman", "mar"):
        assert abs(bias[name][0]) < 0.08 and abs(bias[name][1]) < 0.08


def test_obesity_runs_end_to_end_with_time_as_exclusion_restriction():
    obesity = load_obesity()
    imp = MultilevelIterativeImputer(
        methods={"Weight": HeckmanSelection()},
        predictor_matrix={"Time": {"Weight": -3}},
        n_imputations=2,
        max_iter=2,
        random_state=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sets = imp.fit_transform_all(obesity, groups="Cluster")
    assert all(not s["Weight"].isna().any() for s in sets)
    draw = imp.final_draws_[0][imp.visit_sequence_.index("Weight")]
    table = getattr(draw, "inner", draw).cluster_table()
    # cluster 5 has no observed weight: imputed from the population distribution
    assert table["estimable"].tolist() == [True, True, True, True, False]
    assert table["rho_hat"].iloc[:4].between(-1, 1).all()
    assert obesity["Weight"].isna().sum() == 790  # caller's data untouched


def test_hiv_interviewer_effect_is_the_exclusion_restriction():
    hiv = load_hiv()
    effect = interviewer_effect(hiv)
    assert effect.index.equals(hiv.index) and np.isfinite(effect).all()
    per_interviewer = effect.groupby(hiv["interviewerID"], observed=True).nunique()
    assert (per_interviewer == 1).all() and effect.std() > 0.05
    # interviewers whose respondents consent more often get larger effects
    consent = hiv.groupby("interviewerID", observed=True)["hivconsent"].mean()
    first = effect.groupby(hiv["interviewerID"], observed=True).first()
    assert np.corrcoef(consent, first)[0, 1] > 0.5
    data = hiv[["hiv", "age", "condom", "region"]].assign(interviewer_effect=effect.to_numpy())
    imp = MultilevelIterativeImputer(
        methods={"hiv": HeckmanSelection()},
        n_imputations=1,
        max_iter=1,
        predictor_matrix={"interviewer_effect": {"hiv": -3}},
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        completed = imp.fit_transform_all(data, groups="region")[0]
    assert set(completed["hiv"].unique()) <= {0, 1}
    assert completed["hiv"].mean() > data["hiv"].mean()  # refusers are more often HIV positive (rho < 0)


def test_make_heckman_missing_share_and_truth():
    data, complete, truth = make_heckman(
        n_clusters=20, cluster_size=250, missing_prop=0.3, random_state=0, return_truth=True
    )
    # 5000 Bernoulli(0.3) with cluster-level variation: SE ~0.01
    assert abs(data["y"].isna().mean() - 0.3) < 0.04
    assert complete["y"].notna().all() and isinstance(data, pd.DataFrame) and truth.rho == 0.6
    with pytest.raises(ValueError, match="rho"):
        make_heckman(rho=1.0)


def test_bad_outcome_for_kind_is_an_error():
    data = make_heckman(n_clusters=3, cluster_size=100, random_state=0)
    y, observed, X, roles, g = _arrays(data)
    context = DrawContext(target="y", kind="continuous", n_clusters=3)
    with pytest.raises(ValueError, match="outcome='binary'.*'y'"):
        HeckmanSelection(outcome="binary").draw(y, observed, X, roles, g, np.random.default_rng(0), None, context)


def test_ignored_rows_take_no_part_in_the_selection_equation():
    # ignoring rows (fit(..., ignore=...)) must be the same as leaving them out: before,
    # HeckmanSelection counted ignored responders as non-responders
    from skmlmi.datasets import make_heckman

    data = make_heckman(n_clusters=6, cluster_size=120, random_state=5)
    ignore = np.zeros(len(data), dtype=bool)
    ignore[np.flatnonzero(data["y"].notna().to_numpy())[::4]] = True
    runs = []
    for frame, mask in ((data, ignore), (data[~ignore].reset_index(drop=True), None)):
        imp = MultilevelIterativeImputer(
            methods={"y": HeckmanSelection()},
            predictor_matrix={"z": {"y": -3}},
            n_imputations=2,
            max_iter=1,
            random_state=3,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp.fit(frame, groups="cluster", ignore=mask)
        runs.append(imp.imputations_["y"])
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-7)
