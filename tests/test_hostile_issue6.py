"""Hostile inputs for the issue-6 rooms: ampute, recommend_methods, meta_analysis, two-stage models.

Each test pins a defect found by an adversarial review (a crash with an obscure numpy
message, or a silently wrong result) so that it stays fixed.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

from skmlmi import MultilevelIterativeImputer, recommend_methods
from skmlmi.ampute import ampute
from skmlmi.conditional.two_stage import TwoStageLogistic, TwoStageNormal
from skmlmi.meta_analysis import meta_analysis


@pytest.fixture
def clustered():
    rng = np.random.default_rng(6)
    g = np.repeat(np.arange(10), 30)
    return pd.DataFrame({"g": g, "x": rng.normal(size=300), "y": rng.normal(size=300)})


# --------------------------------------------------------------------------- meta_analysis
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


# --------------------------------------------------------------------------- ampute
def test_ampute_name_patterns_work_with_integer_column_labels():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(200, 3)))
    out, mask = ampute(df, prop=0.4, patterns=[[0], [1, 2]], random_state=1, return_mask=True)
    both = mask[1] & mask[2]
    assert mask[0].any() and both.any()
    assert not (mask[0] & mask[1]).any()  # each row gets one pattern
    assert (mask[1] == mask[2]).all()  # pattern [1, 2] removes both together
    # a full-width 0/1 row keeps mice's matrix meaning
    _, mask01 = ampute(df, prop=0.4, patterns=[[0, 1, 1]], random_state=1, return_mask=True)
    assert mask01[0].any() and not mask01[[1, 2]].any().any()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"cluster_variation": "1"}, ValueError, "cluster_variation"),
        ({"cluster_variation": None}, ValueError, "cluster_variation"),
        ({"patterns": "x"}, ValueError, "list of lists of column names"),
        ({"patterns": ["x", "y"]}, ValueError, "list of lists of column names"),
        ({"patterns": {"x": 0}}, ValueError, "list of lists of column names"),
        ({"weights": "y", "patterns": [["x"]]}, ValueError, "weights must be"),
        ({"freq": "ab"}, ValueError, "freq must hold"),
    ],
)
def test_ampute_bad_arguments_get_clear_errors(clustered, kwargs, error, match):
    with pytest.raises(error, match=match):
        ampute(clustered, groups="g", random_state=0, **kwargs)


def test_ampute_refuses_duplicated_columns_and_infinite_values(clustered):
    with pytest.raises(ValueError, match="duplicated column names"):
        ampute(pd.concat([clustered, clustered[["x"]]], axis=1), groups="g")
    bad = clustered.copy()
    bad.loc[3, "x"] = np.inf
    with pytest.raises(ValueError, match=r"\['x'\] hold infinite values"):
        ampute(bad, groups="g", random_state=0)


def test_ampute_scores_huge_values_and_empty_columns_without_numpy_warnings():
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"x": rng.normal(size=400) * 1e300, "y": rng.normal(size=400), "z": np.nan})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = ampute(df, prop=0.4, patterns=[["y"]], weights={"x": 1.0}, random_state=0)
    # MAR on x with type RIGHT: high x loses y more often. With 200 rows per half, the two
    # rates differ by ~0.25 at this prop; their difference has SD ~0.05, so > 0.1 is safe.
    rates = out["y"].isna().groupby(df["x"] > 0).mean()
    assert rates[True] - rates[False] > 0.1


def test_ampute_warns_when_the_weighted_score_is_constant(clustered):
    data = clustered.assign(y=1.0)
    with pytest.warns(UserWarning, match=r"pattern 0 has a constant MAR score .*\['y'\]"):
        ampute(data, groups="g", prop=0.3, patterns=[["x"]], random_state=0)


# --------------------------------------------------------------------------- recommend_methods
def test_recommend_keeps_one_stage_for_a_binary_with_too_few_clusters_holding_both_outcomes():
    # 7 large observed clusters, but only study 2 has any event: a per-cluster logistic fit is
    # estimable in one cluster only, so TwoStageLogistic would stop the imputer with an error.
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(8), 150)
    b = np.zeros(g.size)
    b[(g == 2) & (np.arange(g.size) % 150 < 10)] = 1.0
    df = pd.DataFrame({"g": g, "p": rng.normal(size=g.size), "b": b})
    df.loc[df["g"] == 0, "b"] = np.nan
    row = recommend_methods(df, "g").iloc[0]
    assert row["method_name"] == "RandomEffectsLogistic"
    assert "1 of the 7 observed clusters have both outcomes" in row["reason"]
    # with events everywhere the two-stage model is still chosen
    df["b"] = np.where(df["b"].isna(), np.nan, (rng.random(g.size) < 0.3).astype(float))
    assert recommend_methods(df, "g").iloc[0]["method_name"] == "TwoStageLogistic"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"large_cluster": True}, ValueError, "large_cluster"),
        ({"prop_small": "a"}, ValueError, "prop_small"),
        ({"column_kinds": ["x"]}, TypeError, "column_kinds must be a dict"),
    ],
)
def test_recommend_bad_arguments_get_clear_errors(clustered, kwargs, error, match):
    data = clustered.assign(x=clustered["x"].where(clustered["g"] > 0))
    with pytest.raises(error, match=match):
        recommend_methods(data, "g", **kwargs)


def test_recommend_refuses_duplicated_columns(clustered):
    data = pd.concat([clustered, clustered[["x"]]], axis=1)
    with pytest.raises(ValueError, match="duplicated column names"):
        recommend_methods(data, "g")


# --------------------------------------------------------------------------- two-stage models
def test_too_few_estimable_clusters_error_says_why():
    # y constant within every cluster: each per-cluster fit is perfect, none is estimable
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(6), 20)
    df = pd.DataFrame({"g": g, "x": rng.normal(size=120), "y": g * 1.0})
    df.loc[df["g"] == 0, "y"] = np.nan
    df.loc[rng.random(120) < 0.1, "y"] = np.nan
    imp = MultilevelIterativeImputer(methods={"y": TwoStageNormal()}, n_imputations=1, max_iter=1, random_state=0)
    with pytest.raises(ValueError, match=r"only 0 of 6 cluster\(s\).*1 without observed values; 5 with perfect fit"):
        imp.fit_transform_all(df, groups="g")


def test_separated_and_all_zero_clusters_are_logged_and_imputed_without_nan():
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(10), 40)
    x = rng.normal(size=400)
    b = (rng.random(400) < 1 / (1 + np.exp(-x))).astype(float)
    b[g == 3] = (x[g == 3] > 0).astype(float)  # perfectly separated cluster
    b[g == 4] = 0.0  # no event
    df = pd.DataFrame({"g": pd.Categorical([f"s{j}" for j in g]), "x": x, "b": b})
    df.loc[(df["g"] == "s0") | (rng.random(400) < 0.15), "b"] = np.nan
    before = df.copy()
    imp = MultilevelIterativeImputer(methods={"b": TwoStageLogistic()}, n_imputations=2, max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sets = imp.fit_transform_all(df, groups="g")
    assert df.equals(before)
    assert all(s["b"].notna().all() and s["b"].isin([0.0, 1.0]).all() for s in sets)
    reasons = " ".join(imp.logged_events_["reason"])
    assert "separation" in reasons and "'s3'" in reasons
    assert "all 0 or all 1" in reasons and "'s4'" in reasons
