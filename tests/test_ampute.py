"""Multilevel amputation: proportions, mechanisms, cluster-varying and systematic
missingness, reproducibility, dtypes and bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from skmlmi.ampute import ampute


def _clustered(n_clusters=40, size=100, seed=0):
    rng = np.random.default_rng(seed)
    n = n_clusters * size
    school = np.repeat([f"s{i:02d}" for i in range(n_clusters)], size)
    x = rng.normal(size=n)
    y = 0.5 * x + rng.normal(size=n)
    grade = pd.Categorical(rng.choice(["low", "mid", "high"], size=n), categories=["low", "mid", "high"], ordered=True)
    return pd.DataFrame(
        {
            "school": school,
            "x": x,
            "y": y,
            "count": rng.poisson(3, size=n),
            "flag": rng.random(n) < 0.4,
            "grade": grade,
            "city": pd.Series(rng.choice(["A", "B", "C"], size=n), dtype="str"),
        }
    )


def _slope_z(indicator: np.ndarray, predictor: np.ndarray) -> float:
    """z statistic of the slope of a logistic regression of the missingness indicator."""
    fit = sm.Logit(indicator.astype(float), sm.add_constant(predictor)).fit(disp=0)
    return float(fit.tvalues[1])


# --------------------------------------------------------------------------- proportions
@pytest.mark.parametrize("mechanism", ["MCAR", "MAR", "MNAR"])
@pytest.mark.parametrize("kind", ["RIGHT", "LEFT", "MID", "TAIL"])
def test_expected_proportion_is_achieved(mechanism, kind):
    df = _clustered()
    n = len(df)
    out = ampute(df, groups="school", prop=0.3, mechanism=mechanism, type=kind, random_state=1)
    rate = out.drop(columns="school").isna().any(axis=1).mean()
    # rows are independent Bernoulli draws whose probabilities average exactly prop, so the
    # count's variance is at most the binomial n p (1 - p); 4 SD -> false alarm ~6e-5 per case
    assert abs(rate - 0.3) < 4 * np.sqrt(0.3 * 0.7 / n)


def test_cluster_variation_keeps_the_proportion_and_spreads_cluster_rates():
    df = _clustered(n_clusters=60, size=100)
    n = len(df)
    rates = {}
    for sd in (0.0, 1.5):
        out = ampute(df, groups="school", prop=0.3, patterns=[["y"]], cluster_variation=sd, random_state=2)
        miss = out["y"].isna()
        assert abs(miss.mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / n)
        rates[sd] = miss.groupby(df["school"]).mean()
    # without cluster effects the between-cluster variance of rates is binomial: p(1 - p)/100 = 0.0021
    # (its estimate from 60 clusters has relative SE ~ sqrt(2/59) = 0.18); an SD of 1.5 on the logit
    # scale gives rates spread well beyond that (variance ~0.04)
    assert rates[0.0].var() < 1.8 * 0.3 * 0.7 / 100
    assert rates[1.5].var() > 5 * 0.3 * 0.7 / 100


# --------------------------------------------------------------------------- mechanisms
def test_mar_missingness_depends_on_the_weighted_variable_with_the_sign_of_type():
    df = _clustered()
    for kind, sign in (("RIGHT", 1), ("LEFT", -1)):
        out = ampute(df, prop=0.4, mechanism="MAR", patterns=[["y"]], weights={"x": 1.0}, type=kind, random_state=3)
        z = _slope_z(out["y"].isna().to_numpy(), df["x"].to_numpy())
        assert sign * z > 10  # a strong, correctly signed dependence
    # MID: the middle of the scores goes missing, so |x| predicts observation
    out = ampute(df, prop=0.4, mechanism="MAR", patterns=[["y"]], weights={"x": 1.0}, type="MID", random_state=3)
    assert _slope_z(out["y"].isna().to_numpy(), np.abs(df["x"].to_numpy())) < -10


def test_mcar_missingness_does_not_depend_on_the_data():
    df = _clustered()
    out = ampute(df, prop=0.4, mechanism="MCAR", patterns=[["y"]], random_state=4)
    miss = out["y"].isna().to_numpy()
    # under MCAR the slope's z statistic is ~N(0, 1): |z| < 4 fails with probability 6e-5
    assert abs(_slope_z(miss, df["x"].to_numpy())) < 4
    assert abs(_slope_z(miss, df["y"].to_numpy())) < 4


def test_mnar_missingness_depends_on_the_amputed_values_themselves():
    df = _clustered()
    out = ampute(df, prop=0.4, mechanism="MNAR", patterns=[["y"]], random_state=5)
    assert _slope_z(out["y"].isna().to_numpy(), df["y"].to_numpy()) > 10


def test_categorical_codes_enter_the_scores():
    df = _clustered()
    out = ampute(df, prop=0.4, mechanism="MAR", patterns=[["y"]], weights={"grade": 1.0}, random_state=6)
    by_grade = out["y"].isna().groupby(df["grade"], observed=True).mean()
    assert by_grade["low"] < by_grade["mid"] < by_grade["high"]  # RIGHT: high codes missing more often


# --------------------------------------------------------------------------- systematic
def test_systematic_clusters_are_entirely_missing():
    df = _clustered()
    out, mask = ampute(
        df,
        groups="school",
        prop=0.2,
        patterns=[["y"]],
        systematic_clusters={"x": 3, "grade": ["s01", "s07"]},
        random_state=7,
        return_mask=True,
    )
    x_all = out["x"].isna().groupby(df["school"]).all()
    assert x_all.sum() == 3
    assert not out["x"].isna()[~df["school"].isin(x_all[x_all].index)].any()  # x missing nowhere else
    grade_all = out["grade"].isna().groupby(df["school"]).all()
    assert sorted(grade_all[grade_all].index) == ["s01", "s07"]
    assert mask["x"].sum() == 300
    assert not mask["school"].any() and not out["school"].isna().any()
    # the mask is exactly what went missing (the input had no missing values)
    pd.testing.assert_frame_equal(mask, out.isna())


def test_systematic_only_with_groups_as_an_array():
    df = _clustered().drop(columns="school")
    groups = np.repeat(np.arange(40), 100)
    out = ampute(df, groups=groups, prop=0.0, systematic_clusters={"y": [0, 5]}, random_state=8)
    assert out["y"].isna().sum() == 200
    assert out.drop(columns="y").notna().all().all()


# --------------------------------------------------------------------------- contract
def test_same_seed_same_amputation_and_input_unchanged():
    df = _clustered()
    before = df.copy(deep=True)
    kwargs = dict(groups="school", prop=0.3, cluster_variation=1.0, systematic_clusters={"x": 2}, random_state=11)
    a = ampute(df, **kwargs)
    b = ampute(df, **kwargs)
    pd.testing.assert_frame_equal(a, b)
    c = ampute(df, **{**kwargs, "random_state": 12})
    assert not a.isna().equals(c.isna())
    pd.testing.assert_frame_equal(df, before)


def test_output_dtypes():
    df = _clustered()
    out = ampute(df, groups="school", prop=0.5, mechanism="MCAR", random_state=13)
    assert isinstance(out["grade"].dtype, pd.CategoricalDtype) and out["grade"].cat.ordered
    assert out["city"].dtype == df["city"].dtype
    assert out["count"].dtype == np.float64  # integers with missing values
    assert out["flag"].dtype == "boolean"
    assert out["school"].dtype == df["school"].dtype
    for name in ("x", "y", "count", "flag", "grade", "city"):
        assert out[name].isna().any(), name


def test_array_input_and_numeric_patterns():
    X = np.random.default_rng(0).normal(size=(2000, 3))
    out = ampute(X, prop=0.25, patterns=[[1, 0, 1], [0, 1, 1]], freq=[3, 1], random_state=14)
    assert list(out.columns) == [0, 1, 2]
    assert not out[2].isna().any()
    # freq 3:1 -> column 1 is amputed ~3 times as often as column 0 (counts ~375 vs ~125)
    assert 2.0 < out[1].isna().sum() / out[0].isna().sum() < 4.5


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(prop=1.0), ValueError, "prop"),
        (dict(prop=-0.1), ValueError, "prop"),
        (dict(mechanism="NMAR"), ValueError, "mechanism"),
        (dict(type="UP"), ValueError, "type"),
        (dict(patterns=[["nope"]]), ValueError, "nope"),
        (dict(patterns=[["school"]], groups="school"), ValueError, "school"),
        (dict(patterns=[[1, 1, 1, 1, 1, 1]], groups="school"), ValueError, "amputate no variable"),
        (dict(patterns=[[1, 0]], groups="school"), ValueError, "shape"),
        (dict(patterns=[["x"]], freq=[1, 2]), ValueError, "freq"),
        (dict(patterns=[["y"]], weights={"y": 1.0}), ValueError, "MNAR"),
        (dict(patterns=[["y"]], weights={"zzz": 1.0}), ValueError, "zzz"),
        (dict(groups="nope"), ValueError, "nope"),
        (dict(groups=np.arange(3)), ValueError, "labels"),
        (dict(cluster_variation=1.0), ValueError, "need groups"),
        (dict(groups="school", cluster_variation=-1.0), ValueError, "cluster_variation"),
        (dict(groups="school", systematic_clusters={"x": 41}), ValueError, "41 clusters"),
        (dict(groups="school", systematic_clusters={"x": ["s99"]}), ValueError, "s99"),
        (dict(groups="school", systematic_clusters={"bogus": 2}), ValueError, "bogus"),
        (dict(groups="school", systematic_clusters={"x": "s01"}), ValueError, "list of cluster labels"),
    ],
)
def test_bad_input_raises_clear_errors(kwargs, error, match):
    df = _clustered(n_clusters=40, size=5)
    with pytest.raises(error, match=match):
        ampute(df, random_state=0, **kwargs)


def test_non_tabular_data_is_refused():
    with pytest.raises(TypeError, match="DataFrame"):
        ampute([[1.0, 2.0], [3.0, 4.0]])


def test_former_name_systematic_still_works_with_a_warning():
    df = _clustered(n_clusters=10, size=20)
    new = ampute(df, groups="school", prop=0.0, systematic_clusters={"x": 2}, random_state=4)
    with pytest.warns(FutureWarning, match="systematic_clusters"):
        old = ampute(df, groups="school", prop=0.0, systematic={"x": 2}, random_state=4)
    pd.testing.assert_frame_equal(new, old)
    with pytest.raises(ValueError, match="only"):
        ampute(df, groups="school", systematic={"x": 2}, systematic_clusters={"x": 2})


def test_package_level_ampute_is_callable():
    import skmlmi

    df = _clustered(n_clusters=5, size=20)
    pd.testing.assert_frame_equal(skmlmi.ampute(df, prop=0.3, random_state=2), ampute(df, prop=0.3, random_state=2))


@pytest.mark.parametrize("random_state", ["seed", 1.5, [1.5]])
def test_a_random_state_that_cannot_seed_is_a_type_error_naming_it(random_state):
    data = pd.DataFrame({"x": np.arange(20.0), "y": np.arange(20.0) ** 2})
    with pytest.raises(TypeError, match="random_state must be an int, a numpy Generator or SeedSequence"):
        ampute(data, random_state=random_state)


# --------------------------------------------------------------------------- hostile inputs
@pytest.fixture
def ten_clusters():
    rng = np.random.default_rng(6)
    g = np.repeat(np.arange(10), 30)
    return pd.DataFrame({"g": g, "x": rng.normal(size=300), "y": rng.normal(size=300)})


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
def test_ampute_bad_arguments_get_clear_errors(ten_clusters, kwargs, error, match):
    with pytest.raises(error, match=match):
        ampute(ten_clusters, groups="g", random_state=0, **kwargs)


def test_ampute_refuses_duplicated_columns_and_infinite_values(ten_clusters):
    with pytest.raises(ValueError, match="duplicated column names"):
        ampute(pd.concat([ten_clusters, ten_clusters[["x"]]], axis=1), groups="g")
    bad = ten_clusters.copy()
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


def test_ampute_warns_when_the_weighted_score_is_constant(ten_clusters):
    data = ten_clusters.assign(y=1.0)
    with pytest.warns(UserWarning, match=r"pattern 0 has a constant MAR score .*\['y'\]"):
        ampute(data, groups="g", prop=0.3, patterns=[["x"]], random_state=0)
