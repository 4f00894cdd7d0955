"""make_multilevel: a simulator of incomplete two-level data with known parameters."""

import numpy as np
import pandas as pd
import pytest

from skmlmi.conditional.cluster_level import is_cluster_constant
from skmlmi.datasets.simulate import make_multilevel


def test_layout_sizes_and_reproducibility():
    data = make_multilevel(n_clusters=30, cluster_size=(5, 9), random_state=1)
    again = make_multilevel(n_clusters=30, cluster_size=(5, 9), random_state=1)
    pd.testing.assert_frame_equal(data, again)
    assert list(data.columns) == ["cluster", "x", "w", "y"]
    sizes = data.groupby("cluster").size()
    assert len(sizes) == 30 and sizes.min() >= 5 and sizes.max() <= 9 and sizes.nunique() > 1
    assert is_cluster_constant(data["w"].to_numpy(), data["cluster"].to_numpy())
    assert not data["w"].isna().any() and not data["cluster"].isna().any()
    assert not data.equals(make_multilevel(n_clusters=30, cluster_size=(5, 9), random_state=2))


def test_truth_and_complete_data_are_returned():
    data, complete, truth = make_multilevel(
        n_clusters=20, icc=0.3, slope_sd=0.2, beta=(2.0, -1.0), level2_effect=0.7, random_state=3, return_truth=True
    )
    assert truth.icc == pytest.approx(0.3) and truth.tau00 / (truth.tau00 + truth.sigma2) == pytest.approx(0.3)
    assert truth.tau11 == pytest.approx(0.04) and truth.tau01 == 0.0
    assert truth.beta.to_dict() == {"Intercept": 2.0, "x": -1.0, "w": 0.7}
    assert truth.random_effects.shape == (20, 2)
    assert not complete.isna().any().any()
    observed = data.notna()
    pd.testing.assert_frame_equal(data[observed], complete[observed])


def test_complete_data_have_the_stated_variance_components():
    # Moment estimators on a large sample (J = 400 clusters of 30). Fixed part by OLS, then
    # per-cluster within slopes b_j: var(b_j) = tau11 + sigma2 / Sxx_j, and for slope_sd = 0 the ANOVA
    # estimator of tau00. SDs of the estimators (from their chi-square-like sampling distributions)
    # are ~0.009 (tau11), ~0.017 (tau00), ~0.004 (sigma2) and ~0.02 (fixed effects); tolerances ~4 SD.
    _, complete, truth = make_multilevel(
        n_clusters=400, cluster_size=30, icc=0.2, slope_sd=0.3, random_state=4, return_truth=True
    )
    g = complete["cluster"].to_numpy()
    x, w, y = (complete[c].to_numpy() for c in ("x", "w", "y"))
    design = np.column_stack([np.ones(len(y)), x, w])
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    np.testing.assert_allclose(coef, truth.beta.to_numpy(), atol=0.08)
    n_j = np.bincount(g)
    xc = x - (np.bincount(g, weights=x) / n_j)[g]
    yc = y - (np.bincount(g, weights=y) / n_j)[g]
    sxx = np.bincount(g, weights=xc * xc)
    slopes = np.bincount(g, weights=xc * yc) / sxx
    assert slopes.var(ddof=1) - np.mean(truth.sigma2 / sxx) == pytest.approx(truth.tau11, abs=0.035)

    _, complete, truth = make_multilevel(
        n_clusters=400, cluster_size=30, icc=0.2, slope_sd=0.0, random_state=5, return_truth=True
    )
    g, x, w, y = (complete[c].to_numpy() for c in ("cluster", "x", "w", "y"))
    resid = y - np.column_stack([np.ones(len(y)), x, w]) @ truth.beta.to_numpy()
    means = np.bincount(g, weights=resid) / 30
    within = np.sum((resid - means[g]) ** 2) / (len(y) - 400)
    assert within == pytest.approx(truth.sigma2, abs=0.02)
    assert means.var(ddof=1) - within / 30 == pytest.approx(truth.tau00, abs=0.07)


def test_mcar_missing_share_matches_missing_prop():
    # 200 x 20 = 4000 cells per column: binomial SD sqrt(.3 * .7 / 4000) = 0.0072; tolerance 4 SD.
    data = make_multilevel(n_clusters=200, missing="MCAR", missing_prop=0.3, random_state=6)
    share = data[["x", "y"]].isna().mean()
    assert np.all(np.abs(share - 0.3) < 0.03)
    assert data[["x", "y"]].isna().all(axis=1).any()  # independent cells: some rows miss both


def test_mar_missingness_depends_on_observed_values_only():
    data, complete, _ = make_multilevel(
        n_clusters=300, missing="MAR", missing_prop=0.3, random_state=7, return_truth=True
    )
    share = data[["x", "y"]].isna().mean()
    assert np.all(np.abs(share - 0.3) < 0.03)  # expected share exactly 0.3; SD < 0.01
    assert not data[["x", "y"]].isna().all(axis=1).any()  # each row misses at most one value
    # rows losing y have larger x (the score of the y pattern is x + w); rows losing x larger y.
    # Differences of ~0.5 SD; the SE of each difference of means is ~0.03.
    assert complete["x"][data["y"].isna()].mean() - complete["x"][data["y"].notna()].mean() > 0.3
    assert complete["y"][data["x"].isna()].mean() - complete["y"][data["x"].notna()].mean() > 0.3


def test_missingness_options():
    assert not make_multilevel(n_clusters=5, missing=None, random_state=0).isna().any().any()
    only_y = make_multilevel(n_clusters=50, missing_columns=("y",), random_state=0)
    assert only_y["y"].isna().any() and not only_y["x"].isna().any()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"icc": 1.2}, "icc"),
        ({"cluster_size": (5, 2)}, "cluster_size"),
        ({"n_clusters": 0}, "n_clusters"),
        ({"missing_columns": ("w",)}, "missing_columns"),
        ({"missing": "MNAR"}, "missing"),
        ({"missing_prop": 0.6}, "at most one value"),
        ({"beta": (1.0,)}, "beta"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_multilevel(**kwargs)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"icc": "a"}, ValueError, "'icc' parameter of make_multilevel"),
        ({"level2_effect": "a"}, ValueError, "'level2_effect' parameter of make_multilevel"),
        ({"return_truth": "x"}, ValueError, "'return_truth' parameter of make_multilevel"),
        ({"random_state": "x"}, ValueError, "'random_state' parameter of make_multilevel"),
        ({"beta": ("a", "b")}, ValueError, "beta must hold two numbers"),
        ({"n_clusters": True}, ValueError, "n_clusters must be a positive integer"),
        ({"cluster_size": True}, ValueError, "cluster_size must be an int or a"),
        ({"n_clusters": 10**9, "cluster_size": 10**9}, ValueError, "a simulator makes at most"),
    ],
)
def test_wrong_types_and_impossible_sizes_are_clear_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        make_multilevel(**kwargs)
