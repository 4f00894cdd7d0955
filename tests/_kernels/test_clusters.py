"""skmlmi._kernels.clusters: the one rule of constancy within clusters, and the places that use it."""

import numpy as np
import pandas as pd
import pytest

from skmlmi import MultilevelIterativeImputer
from skmlmi._kernels import (
    CONSTANT_ULPS,
    SortedClusters,
    cluster_constancy,
    cluster_counts,
    cluster_cross_products,
    cluster_means,
    cluster_sums,
    compress_clusters,
    constant_within_clusters,
    rows_of_clusters,
    sort_by_cluster,
    weighted_cluster_cross_products,
)
from skmlmi.conditional.cluster_level import is_cluster_constant
from skmlmi.predictors import suggest_predictors
from skmlmi.recommend import recommend_methods

EPS = np.finfo(float).eps

EPS = np.finfo(float).eps


def _two_level(seed=0, J=30, n_j=8):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(J), n_j)
    return rng, groups


# --------------------------------------------------------------------------- the rule
@pytest.mark.parametrize("unit", [1.0, 1e-12, 1e-200, 1e200])
def test_row_level_variable_in_any_units_varies_and_a_cluster_level_one_is_constant(unit):
    # No absolute floor: a row-level variable measured in units of 1e-12 (or 1e-200) varies
    # exactly as it does in units of 1 (the old rule, with a floor of 1, took it for a
    # cluster-level variable).
    rng, groups = _two_level()
    row_level = unit * rng.normal(size=len(groups))
    cluster_level = unit * rng.normal(size=30)[groups]
    np.testing.assert_array_equal(
        constant_within_clusters(np.column_stack([row_level, cluster_level]), groups, 30), [False, True]
    )
    assert not is_cluster_constant(row_level, groups) and is_cluster_constant(cluster_level, groups)


def test_shifted_by_1e12_a_varying_column_still_varies():
    # 1e12 + x: the spacing of doubles there is 1.2e-4, the tolerance CONSTANT_ULPS * eps * 1e12
    # = 9e-4; an x of SD 1 varies a thousand times more, a cluster-level x repeats exactly.
    rng, groups = _two_level(1)
    varying = 1e12 + rng.normal(size=len(groups))
    constant = 1e12 + rng.normal(size=30)[groups]
    assert not is_cluster_constant(varying, groups)
    assert is_cluster_constant(constant, groups)


def test_a_cluster_of_a_million_rows_of_one_value_is_constant():
    # A mean over 10^6 rows carries ~1e-10 relative rounding error, which a rule on cluster means
    # at 1e-12 would take for variation; comparing values with one of their cluster's values does not.
    groups = np.repeat([0, 1], [1_000_000, 3])
    values = np.where(groups == 0, 0.1, 0.7)
    mean = np.bincount(groups, weights=values)[0] / 1_000_000
    assert mean != 0.1  # the cluster mean of the repeated float is not the float
    assert is_cluster_constant(values, groups)
    reference, varying = cluster_constancy(values, groups, 2)
    np.testing.assert_array_equal(reference, [0.1, 0.7])  # the value itself, not a mean
    assert not varying.any()


def test_tolerance_is_a_few_units_of_rounding_of_the_largest_magnitude():
    groups = np.array([0, 0, 1, 1])
    top = 1e6
    inside = np.array([3.0, 3.0 + CONSTANT_ULPS * EPS * top, top, top])
    outside = np.array([3.0, 3.0 + 3 * CONSTANT_ULPS * EPS * top, top, top])
    assert constant_within_clusters(inside[:, None], groups, 2)[0]
    assert not constant_within_clusters(outside[:, None], groups, 2)[0]


def test_missing_values_are_ignored_and_labels_are_compared_as_labels():
    groups = np.array(["a", "a", "a", "b", "b", "c"])
    assert is_cluster_constant(np.array([2.0, np.nan, 2.0, 5.0, 5.0, np.nan]), groups)
    assert not is_cluster_constant(np.array([2.0, np.nan, 2.5, 5.0, 5.0, np.nan]), groups)
    assert is_cluster_constant(np.array(["x", None, "x", "y", "y", "z"], dtype=object), groups)
    assert not is_cluster_constant(np.array(["x", "w", "x", "y", "y", "z"], dtype=object), groups)
    reference, varying = cluster_constancy(np.array([np.nan, np.nan, 1.0, 2.0]), np.array([0, 0, 1, 1]), 2)
    assert np.isnan(reference[0]) and not varying[0] and varying[1]


def test_clusters_of_one_row_give_no_evidence_but_no_variation_either():
    groups = np.arange(5)
    values = np.arange(5.0)
    # no cluster holds two values: no within-cluster variation (no within coefficient) ...
    assert constant_within_clusters(values[:, None], groups, 5)[0]
    # ... but no evidence of a cluster-level variable either
    assert not is_cluster_constant(values, groups)
    # singletons next to a cluster that varies
    assert not is_cluster_constant(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0, 0, 1, 2]))


def test_two_dimensional_input_and_dataframes_use_the_same_rule():
    rng, groups = _two_level(2)
    X = np.column_stack([1e-12 * rng.normal(size=len(groups)), rng.normal(size=30)[groups]])
    np.testing.assert_array_equal(is_cluster_constant(X, groups), [False, True])
    frame = pd.DataFrame(X, columns=["tiny", "school_size"])
    assert is_cluster_constant(frame, groups).to_dict() == {"tiny": False, "school_size": True}


# --------------------------------------------------------------------------- its users
def _frame_with_tiny_row_level_variable(seed=3):
    rng, groups = _two_level(seed, J=25, n_j=10)
    n = len(groups)
    frame = pd.DataFrame(
        {
            "school": groups,
            "tiny": 1e-12 * rng.normal(size=n),  # row level, in small units
            "size": np.round(rng.normal(size=25) * 100 + 500)[groups] + 0.5,  # cluster level
            "y": rng.normal(size=n),
        }
    )
    frame.loc[rng.random(n) < 0.2, "tiny"] = np.nan
    frame.loc[np.isin(groups, [3, 7]), "size"] = np.nan
    frame.loc[rng.random(n) < 0.2, "y"] = np.nan
    return frame


def test_recommend_methods_and_suggest_predictors_use_the_rule():
    frame = _frame_with_tiny_row_level_variable()
    table = recommend_methods(frame, "school").set_index("column")
    assert not table.loc["tiny", "cluster_level"] and table.loc["size", "cluster_level"]
    assert table.loc["tiny", "method_name"] != "ClusterLevelPMM"
    suggestion = suggest_predictors("y ~ tiny + size + (1 | school)", frame)
    assert suggestion.levels["tiny"] == 1 and suggestion.levels["size"] == 2


def test_engine_does_not_impute_a_tiny_row_level_variable_as_cluster_level():
    frame = _frame_with_tiny_row_level_variable()
    imputer = MultilevelIterativeImputer(n_imputations=1, max_iter=1, random_state=0)
    imputer.fit(frame, groups="school")
    assert type(imputer.methods_["tiny"]).__name__ not in ("ClusterLevelPMM", "ClusterLevelNormal", "ClusterMean")
    assert type(imputer.methods_["size"]).__name__.startswith("Cluster")


# --------------------------------------------------------------------------- sums and cross-products
def test_cluster_sums_means_and_counts_equal_a_groupby():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 6, size=300)
    groups[groups == 4] = 5  # cluster 4 empty
    values = rng.normal(size=(300, 3))
    frame = pd.DataFrame(values).groupby(groups)
    np.testing.assert_allclose(cluster_sums(values, groups, 6)[[0, 1, 2, 3, 5]], frame.sum().to_numpy(), rtol=1e-12)
    means = cluster_means(values, groups, 6)
    np.testing.assert_allclose(means[[0, 1, 2, 3, 5]], frame.mean().to_numpy(), rtol=1e-12)
    assert np.isnan(means[4]).all()
    np.testing.assert_array_equal(cluster_counts(groups, 6), np.bincount(groups, minlength=6))


@pytest.mark.parametrize("order", ["C", "F"])
def test_cluster_sums_are_the_columnwise_bincounts_bit_for_bit_in_either_layout(order):
    # row-major values are summed in one sparse pass, column-major ones column by column: the same
    # sums, in the same order, as one np.bincount per column (values spanning many magnitudes, so
    # that a different order of addition would show)
    rng = np.random.default_rng(3)
    groups = rng.integers(0, 500, size=20_000)
    values = np.asarray(rng.normal(size=(20_000, 5)) * 10.0 ** rng.integers(-8, 8, size=(20_000, 5)), order=order)
    expected = np.column_stack([np.bincount(groups, weights=values[:, k], minlength=501) for k in range(5)])
    np.testing.assert_array_equal(cluster_sums(values, groups, 501), expected)
    strided = values[:, ::2]  # neither layout: column by column
    np.testing.assert_array_equal(cluster_sums(strided, groups, 501), expected[:, ::2])


def test_cluster_cross_products_equal_dense_per_cluster_products():
    rng = np.random.default_rng(1)
    groups = rng.integers(0, 4, size=100)
    W = rng.normal(size=(100, 2))
    D = np.column_stack([np.ones(100), W])
    weights = rng.random(100)
    full = cluster_cross_products(W, groups, 4)
    part = cluster_cross_products(W, groups, 4, left=np.array([0, 2]))
    weighted = weighted_cluster_cross_products(D, groups, 4, weights)
    for j in range(4):
        rows = groups == j
        np.testing.assert_allclose(full[j], D[rows].T @ D[rows], rtol=1e-12)
        np.testing.assert_allclose(part[j], (D[rows].T @ D[rows])[[0, 2]], rtol=1e-12)
        np.testing.assert_allclose(weighted[j], (D[rows] * weights[rows, None]).T @ D[rows], rtol=1e-12)


def test_sorted_clusters_sum_in_one_pass_and_subset_keeps_the_order():
    groups = np.array([2, 0, 2, 3, 0, 3, 3])
    clusters = SortedClusters(groups, 5)
    values = np.arange(7.0)[clusters.order]
    np.testing.assert_array_equal(clusters.sums(values), [5.0, 0.0, 2.0, 14.0, 0.0])  # 1 and 4 have no rows
    sub, rows = clusters.subset(np.array([False, False, True, True, False]))
    np.testing.assert_array_equal(sub.sums(values[rows]), [2.0, 14.0])
    order, starts = sort_by_cluster(np.array([1, 0, 1]), 2)
    np.testing.assert_array_equal(order, [1, 0, 2])
    np.testing.assert_array_equal(starts, [0, 1])
    codes, present_codes, present = compress_clusters(np.array([3, 0, 3]), 5)
    np.testing.assert_array_equal(codes, [1, 0, 1])
    np.testing.assert_array_equal(present_codes, [0, 3])


def test_rows_of_clusters_draw_each_new_cluster_once():
    table = np.array([[1.0], [np.nan], [3.0]])
    calls = []

    def draw_new(codes, inverse, rows):
        calls.append(codes.tolist())
        return 100.0 + codes[:, None].astype(float)

    out = rows_of_clusters(table, np.array([0, 2, 5, 5, 1, 7]), draw_new)
    np.testing.assert_array_equal(out[:, 0], [1.0, 3.0, 105.0, 105.0, np.nan, 107.0])
    out = rows_of_clusters(table, np.array([0, 1, 1, 5]), draw_new, missing_is_new=True)
    np.testing.assert_array_equal(out[:, 0], [1.0, 101.0, 101.0, 105.0])
    assert calls == [[5, 7], [1, 5]]
