"""Column kinds, the numeric working encoding and its way back, and cluster codes (skmlmi._columns)."""

import numpy as np
import pandas as pd
import pytest

from skmlmi._columns import cluster_codes, detect_codec


@pytest.mark.parametrize(
    "series, kind",
    [
        (pd.Series([0.5, 1.25, np.nan]), "continuous"),
        (pd.Series([1.0, 2.0, 5.0, np.nan]), "integer"),
        (pd.Series([0, 1, 1, 0]), "binary"),
        (pd.Series([True, False, None], dtype="boolean"), "binary"),
        (pd.Series(["a", "b", None]), "binary"),
        (pd.Series(["a", "b", "c"]), "categorical"),
    ],
)
def test_kind_is_detected_from_the_values(series, kind):
    assert detect_codec(series, "x").kind == kind


def test_declared_kind_overrides_detection_and_unknown_kinds_are_errors():
    assert detect_codec(pd.Series([1.0, 2.0, 3.0]), "x", kind="continuous").kind == "continuous"
    with pytest.raises(ValueError, match=r"column_kinds\['x'\]"):
        detect_codec(pd.Series([1.0, 2.0]), "x", kind="count")
    with pytest.raises(ValueError, match="'x'.*categorical"):
        detect_codec(pd.Series(["a", "b", "c"]), "x", kind="continuous")


def test_categorical_round_trips_with_declared_categories_and_order():
    dtype = pd.CategoricalDtype(["low", "mid", "high"], ordered=True)
    series = pd.Series(["high", None, "low"], dtype=dtype, name="grade")
    codec = detect_codec(series, "grade")
    codes = codec.encode(series)
    np.testing.assert_array_equal(codes, [2.0, np.nan, 0.0])
    back = codec.decode(np.array([2.0, 1.0, 0.0]), index=series.index)
    assert back.dtype == dtype
    assert back.tolist() == ["high", "mid", "low"]


def test_two_arbitrary_numbers_declared_binary_are_coded_zero_one_and_decoded_back():
    series = pd.Series([3.0, 7.0, np.nan, 7.0])
    assert detect_codec(series, "x").kind == "continuous"  # binary only when declared (0/1 aside)
    codec = detect_codec(series, "x", kind="binary")
    np.testing.assert_array_equal(codec.encode(series), [0.0, 1.0, np.nan, 1.0])
    assert codec.decode(np.array([1.0, 0.0])).tolist() == [7.0, 3.0]


def test_integer_dtype_receiving_fractions_becomes_float_instead_of_rounding():
    codec = detect_codec(pd.Series([1, 2, 3], dtype="int64"), "n")
    assert codec.decode(np.array([1.0, 2.0])).dtype == np.int64
    out = codec.decode(np.array([1.0, 2.5]))
    assert out.dtype == np.float64
    assert out.tolist() == [1.0, 2.5]


def test_new_data_with_categories_unseen_at_fit_is_an_error_naming_the_column():
    codec = detect_codec(pd.Series(["a", "b", "c"]), "colour")
    with pytest.raises(ValueError, match="'colour'.*not seen at fit"):
        codec.encode(pd.Series(["a", "z"]))


def test_text_where_fit_saw_numbers_is_a_type_error():
    codec = detect_codec(pd.Series([1.5, 2.5]), "x")
    with pytest.raises(TypeError, match="'x' was numeric at fit"):
        codec.encode(pd.Series(["1.5", "oops"]))


def test_cluster_codes_from_a_column_name_are_sorted_labels():
    data = pd.DataFrame({"school": ["b", "a", "b", "c"], "y": [1.0, 2.0, 3.0, 4.0]})
    codes, labels, column = cluster_codes(data, "school")
    np.testing.assert_array_equal(codes, [1, 0, 1, 2])
    assert list(labels) == ["a", "b", "c"]
    assert column == "school"


def test_cluster_codes_from_labels_align_a_permuted_series_on_the_rows():
    data = pd.DataFrame({"y": [1.0, 2.0, 3.0]}, index=[10, 11, 12])
    groups = pd.Series(["x", "y", "x"], index=[12, 10, 11])  # row 10 is in cluster "y"
    codes, labels, column = cluster_codes(data, groups)
    assert [labels[c] for c in codes] == ["y", "x", "x"]
    assert column is None


@pytest.mark.parametrize(
    "groups, error, match",
    [
        (True, TypeError, "groups=True"),
        ("nope", ValueError, "not a column"),
        ([1, 2], ValueError, "2 labels"),
        ([1, None, 2], ValueError, "missing cluster labels"),
    ],
)
def test_bad_groups_are_errors_that_say_what_is_wrong(groups, error, match):
    data = pd.DataFrame({"y": [1.0, 2.0, 3.0]})
    with pytest.raises(error, match=match):
        cluster_codes(data, groups)


def test_numeric_kind_detection_without_sorting_matches_the_rule_on_distinct_values():
    # The kind of a numeric column is found without np.unique; it must be the rule stated on the distinct values:
    # binary when they are within {0, 1} (or the dtype is bool), integer when whole and more than two, else
    # continuous (two whole values other than 0/1 included).
    from skmlmi._columns import detect_codec

    def by_distinct(observed, boolean):
        distinct = np.unique(observed)
        if boolean or (0 < len(distinct) <= 2 and np.isin(distinct, [0.0, 1.0]).all()):
            return "binary"
        if len(observed) and np.all(observed == np.round(observed)) and len(distinct) > 2:
            return "integer"
        return "continuous"

    rng = np.random.default_rng(0)
    columns = [
        rng.normal(size=50),
        np.round(rng.normal(size=50) * 3),
        rng.integers(0, 2, 50).astype(float),
        np.ones(50),
        np.zeros(50),
        np.r_[np.full(25, 3.0), np.full(25, 7.0)],
        np.r_[np.full(25, 3.0), np.full(24, 7.0), 5.0],
        np.r_[0.0, 1.0, 0.5],
        np.r_[np.nan, np.nan, 1.0],
        np.r_[-1.0, 0.0],
    ]
    for values in columns:
        observed = values[~np.isnan(values)]
        assert detect_codec(pd.Series(values), "v").kind == by_distinct(observed, False), values[:5]
    assert detect_codec(pd.Series([True, False, True]), "b").kind == "binary"
