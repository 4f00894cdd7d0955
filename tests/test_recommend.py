"""Classification of sporadic/systematic missingness per cluster, and the recommended conditional models."""

import numpy as np
import pandas as pd
import pytest

from skmlmi.conditional import (
    ClusterLevelLogistic,
    ClusterLevelNormal,
    ClusterLevelPMM,
    ClusterMean,
    RandomEffectsCategorical,
    RandomEffectsLogistic,
    RandomEffectsPMM,
)
from skmlmi.conditional.two_stage import TwoStageLogistic, TwoStagePMM
from skmlmi.recommend import missing_by_cluster, recommend_methods


def _studies(n_clusters=8, size=150, seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_clusters), size)
    return rng, pd.DataFrame({"study": g, "x": rng.normal(size=g.size)})


def test_missing_by_cluster_counts_systematic_sporadic_and_complete_clusters():
    df = pd.DataFrame(
        {
            "g": ["a"] * 3 + ["b"] * 2 + ["c"] * 4,
            "x": [1.0, np.nan, 2.0, np.nan, np.nan, 1.0, 2.0, 3.0, 4.0],
            "z": np.arange(9.0),
        }
    )
    table = missing_by_cluster(df, "g")
    assert table["column"].tolist() == ["x"]  # complete columns and the groups column left out
    row = table.iloc[0]
    assert (row["n_systematic"], row["n_sporadic"], row["n_complete"], row["n_missing"]) == (1, 1, 1, 3)
    assert row["systematic_clusters"] == ["b"]
    assert (row["min_cluster_size"], row["max_cluster_size"], row["min_observed"]) == (2, 4, 2)
    long = missing_by_cluster(df, "g", by="cluster")
    assert long[["cluster", "size", "n_observed", "status"]].values.tolist() == [
        ["a", 3, 2, "sporadic"],
        ["b", 2, 0, "systematic"],
        ["c", 4, 4, "complete"],
    ]


def test_missing_by_cluster_accepts_label_arrays_and_leaves_the_data_alone():
    df = pd.DataFrame({"x": [1.0, np.nan, np.nan, 2.0]})
    before = df.copy()
    table = missing_by_cluster(df, np.array([0, 0, 1, 1]))
    assert table.loc[0, "n_sporadic"] == 2
    pd.testing.assert_frame_equal(df, before)


@pytest.mark.parametrize(
    "groups, message", [(None, "groups is required"), ("nope", "'nope' is not a column"), (np.arange(3), "3 labels")]
)
def test_bad_groups_are_clear_errors(groups, message):
    df = pd.DataFrame({"x": [1.0, np.nan, 2.0, 3.0]})
    with pytest.raises(ValueError, match=message):
        missing_by_cluster(df, groups)


def test_recommendation_rules_cover_each_branch():
    rng, df = _studies()
    g = df["study"].to_numpy()
    n = len(df)
    df["cont_sys"] = np.where(g < 2, np.nan, rng.normal(size=n))  # systematic, large clusters
    df["int_sys"] = np.where(g < 2, np.nan, rng.integers(0, 50, n)).astype(float)
    df["bin_sys"] = np.where(g < 2, np.nan, rng.integers(0, 2, n)).astype(float)
    df["bin_spor"] = np.where(rng.random(n) < 0.2, np.nan, rng.integers(0, 2, n)).astype(float)
    df["cont_spor"] = np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n))
    df["cat"] = pd.Categorical(np.where(g < 1, None, rng.choice(["a", "b", "c"], n)))
    level2 = rng.normal(size=8)[g]
    df["level2"] = np.where(np.isin(g, [3]), np.nan, level2)
    df["level2_int"] = np.where(np.isin(g, [3]), np.nan, np.round(10 * level2))
    df["level2_bin"] = np.where(np.isin(g, [3, 4]), np.nan, level2 > 0)
    df["all_missing"] = np.nan
    table = recommend_methods(df, "study").set_index("column")
    expect = {
        "cont_sys": TwoStagePMM,
        "int_sys": TwoStagePMM,
        "bin_sys": TwoStageLogistic,
        "bin_spor": RandomEffectsLogistic,
        "cont_spor": RandomEffectsPMM,
        "cat": RandomEffectsCategorical,
        "level2": ClusterLevelNormal,
        "level2_int": ClusterLevelPMM,
        "level2_bin": ClusterLevelLogistic,
    }
    for column, cls in expect.items():
        assert isinstance(table.loc[column, "method"], cls), (column, table.loc[column, "method_name"])
        assert table.loc[column, "reason"]
    assert table.loc["all_missing", "method"] is None and table.loc["all_missing", "pattern"] == "all missing"
    assert table.loc["cont_sys", "pattern"] == "systematic" and table.loc["cont_sys", "n_systematic"] == 2
    assert table.loc["cat", "pattern"] == "systematic"
    assert bool(table.loc["level2", "cluster_level"])


def test_small_or_few_clusters_keep_the_one_stage_model():
    # 40 clusters of 30: systematic, but every observed cluster has < 100 observed values
    rng, small = _studies(n_clusters=40, size=30)
    small["y"] = np.where(small["study"] < 3, np.nan, rng.normal(size=len(small)))
    row = recommend_methods(small, "study").iloc[0]
    assert isinstance(row["method"], RandomEffectsPMM) and "small clusters" in row["reason"]
    # 4 large clusters: too few for a meta-analysis (min_clusters = 5)
    rng, few = _studies(n_clusters=4, size=300)
    few["y"] = np.where(few["study"] < 1, np.nan, rng.normal(size=len(few)))
    row = recommend_methods(few, "study").iloc[0]
    assert isinstance(row["method"], RandomEffectsPMM) and "only 3 observed clusters" in row["reason"]
    # the thresholds are parameters
    row = recommend_methods(small, "study", large_cluster=20).iloc[0]
    assert isinstance(row["method"], TwoStagePMM)


def test_categorical_cluster_level_column_gets_cluster_mean():
    rng, df = _studies()
    kind = np.array(["RCT", "OBS", "CC"])[rng.integers(0, 3, 8)][df["study"]]
    df["design"] = pd.Series(kind).where(df["study"] != 0)
    row = recommend_methods(df, "study").iloc[0]
    assert isinstance(row["method"], ClusterMean)


def test_recommendations_for_impact_follow_the_case_study():
    from skmlmi.datasets.impact import load_impact_incomplete

    table = recommend_methods(load_impact_incomplete(random_state=3), "name").set_index("column")
    assert table.loc["ct", "pattern"] == "sporadic+systematic" and table.loc["ct", "n_systematic"] == 3
    assert isinstance(table.loc["ct", "method"], RandomEffectsCategorical)
    assert table.loc["pupil", "pattern"] == "sporadic"
    assert isinstance(table.loc["hypots", "method"], TwoStageLogistic)


def test_bad_thresholds_are_refused():
    _, df = _studies()
    df.loc[0, "x"] = np.nan
    for kwargs in ({"large_cluster": 0}, {"prop_small": 1.5}, {"min_clusters": 1}):
        with pytest.raises(ValueError):
            recommend_methods(df, "study", **kwargs)


def test_column_names_of_any_hashable_type_including_tuples():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(60, 3))).set_axis([("a", 1), ("b", 1), ("c", 2)], axis=1)
    df.iloc[::5, 1] = np.nan
    table = recommend_methods(df, np.repeat(np.arange(6), 10))
    assert table["column"].tolist() == [("b", 1)]


# --------------------------------------------------------------------------- hostile inputs
@pytest.fixture
def ten_clusters():
    rng = np.random.default_rng(6)
    g = np.repeat(np.arange(10), 30)
    return pd.DataFrame({"g": g, "x": rng.normal(size=300), "y": rng.normal(size=300)})


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
def test_recommend_bad_arguments_get_clear_errors(ten_clusters, kwargs, error, match):
    data = ten_clusters.assign(x=ten_clusters["x"].where(ten_clusters["g"] > 0))
    with pytest.raises(error, match=match):
        recommend_methods(data, "g", **kwargs)


def test_recommend_refuses_duplicated_columns(ten_clusters):
    data = pd.concat([ten_clusters, ten_clusters[["x"]]], axis=1)
    with pytest.raises(ValueError, match="duplicated column names"):
        recommend_methods(data, "g")


# --------------------------------------------------------------------------- several grouping factors
def _three_levels(seed=3):
    """8 schools x 4 classes x 6 pupils; class labels 0-3 repeat in every school (nested as school/class)."""
    rng = np.random.default_rng(seed)
    school = np.repeat(np.arange(8), 24)
    klass = np.tile(np.repeat(np.arange(4), 6), 8)
    n = school.size
    df = pd.DataFrame({"school": school, "class": klass})
    df["y"] = np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n))  # sporadic by both factors
    df["z"] = np.where((school == 1) & (klass == 2), np.nan, rng.normal(size=n))  # never measured in one class
    df["sch"] = np.where(school == 3, np.nan, rng.normal(size=8)[school])  # school level, one school missing
    df["cl"] = np.where((school == 2) & (klass == 1), np.nan, rng.normal(size=(8, 4))[school, klass])
    df["b"] = np.where(rng.random(n) < 0.2, np.nan, rng.integers(0, 2, n))
    df["k"] = np.where(rng.random(n) < 0.2, np.nan, rng.integers(0, 9, n)).astype(float)
    df["cat"] = pd.Categorical(np.where(rng.random(n) < 0.2, None, rng.choice(["a", "b", "c"], n)))
    return df


def test_missing_by_cluster_reports_each_factor():
    df = _three_levels()
    table = missing_by_cluster(df, ["school", "class"], cluster_structure="nested")
    assert list(table.columns[:2]) == ["column", "factor"]
    assert table[["column", "factor"]].values.tolist()[:4] == [
        ["y", "school"],
        ["y", "class"],
        ["z", "school"],
        ["z", "class"],
    ]
    z = table[table["column"] == "z"].set_index("factor")
    # one class never measured z: systematic by class, sporadic by school
    assert (z.loc["class", "n_systematic"], z.loc["class", "n_clusters"]) == (1, 32)
    assert z.loc["class", "systematic_clusters"] == [(1, 2)]
    assert (z.loc["school", "n_systematic"], z.loc["school", "n_sporadic"]) == (0, 1)
    sch = table[table["column"] == "sch"].set_index("factor")
    assert sch.loc["school", "systematic_clusters"] == [3] and sch.loc["class", "n_systematic"] == 4
    long = missing_by_cluster(df, ["school", "class"], by="cluster", cluster_structure="nested")
    assert set(long["factor"]) == {"school", "class"}
    assert len(long[(long["column"] == "z") & (long["factor"] == "class")]) == 32
    # one grouping column: the table is as before, without a factor column
    assert "factor" not in missing_by_cluster(df.drop(columns="class"), "school").columns
    assert "factor" not in missing_by_cluster(df.drop(columns="class"), ["school"]).columns


def test_missing_by_cluster_crossed_labels_are_not_combined():
    df = _three_levels()
    table = missing_by_cluster(df, ["school", "class"])  # auto: class labels repeat across schools -> crossed
    z = table[table["column"] == "z"].set_index("factor")
    assert z.loc["class", "n_clusters"] == 4 and z.loc["class", "n_systematic"] == 0


def test_missing_by_cluster_several_factors_bad_names_are_clear_errors():
    df = _three_levels()
    with pytest.raises(ValueError, match="'klass'"):
        missing_by_cluster(df, ["school", "klass"])
    with pytest.raises(ValueError, match="cluster_structure"):
        missing_by_cluster(df, ["school", "class"], cluster_structure="tree")


@pytest.mark.filterwarnings("ignore:.*cluster means of:UserWarning")
def test_recommend_methods_with_several_factors():
    df = _three_levels()
    table = recommend_methods(df, ["school", "class"], cluster_structure="nested").set_index("column")
    names = table["method_name"].to_dict()
    assert names["y"] == "RandomEffectsPMM" and names["z"] == "RandomEffectsPMM"
    assert names["k"] == "RandomEffectsPMM"
    assert names["sch"] == "ClusterLevelNormal" and table.loc["sch", "cluster_level"] == "school"
    assert names["cl"] == "ClusterLevelNormal" and table.loc["cl", "cluster_level"] == "class"
    assert pd.isna(table.loc["y", "cluster_level"])
    assert table.loc["z", "pattern"] == "school: sporadic; class: systematic"
    assert (table.loc["z", "factor"], table.loc["z", "n_systematic"], table.loc["z", "n_clusters"]) == ("class", 1, 32)
    assert (table.loc["sch", "factor"], table.loc["sch", "n_systematic"]) == ("school", 1)
    assert "drawn from the population" in table.loc["z", "reason"]
    assert names["b"] == "RandomEffectsLogistic"
    assert names["cat"] == "RandomEffectsCategorical"
    for column in ("y", "z", "k", "b", "cat"):
        assert table.loc[column, "method"].multiple_factors
    # the recommended models are the ones the imputer accepts with these factors
    from skmlmi import MultilevelIterativeImputer

    methods = {c: m for c, m in table["method"].items() if m is not None}
    data = df
    imputer = MultilevelIterativeImputer(methods=methods, cluster_structure="nested", max_iter=1, random_state=0)
    completed = imputer.fit_transform(data, groups=["school", "class"])
    assert not completed.isna().any().any()


def test_recommend_methods_several_factors_all_missing_column():
    df = _three_levels()[["school", "class", "y"]].assign(gone=np.nan)
    table = recommend_methods(df, ["school", "class"]).set_index("column")
    assert table.loc["gone", "method"] is None and "no observed value" in table.loc["gone", "reason"]
