"""The one value that carries cluster facts (skmlmi._clusters.Clusters).

Named apart from tests/_kernels/test_clusters.py: the test folders are not packages.
"""

import numpy as np
import pandas as pd
import pytest

from skmlmi._clusters import Clusters


def test_codes_labels_sizes_and_count_come_from_one_encoding():
    frame = pd.DataFrame({"school": ["b", "a", "b", "c", "a", "b"], "x": range(6)})
    clusters = Clusters.from_data(frame, "school")
    assert list(clusters.labels) == ["a", "b", "c"] and clusters.column == "school"
    np.testing.assert_array_equal(clusters.codes, [1, 0, 1, 2, 0, 1])
    np.testing.assert_array_equal(clusters.sizes, [2, 3, 1])
    assert clusters.count == clusters.n_seen == 3 and not clusters.unseen.any()
    assert clusters.observing(np.array([True, False, False, False, True, False])) == 2


def test_new_data_keep_the_codes_of_seen_clusters_and_number_the_new_ones_after_them():
    fitted = Clusters.from_data(pd.DataFrame({"g": [10, 20, 30]}), "g")
    new = fitted.recode(pd.DataFrame({"g": [30, 99, 10, 77, 99]}), "g")
    np.testing.assert_array_equal(new.codes, [2, 3, 0, 4, 3])
    assert new.n_seen == 3 and new.count == 5 and new.label_of(4) == 77
    np.testing.assert_array_equal(new.unseen, [False, True, False, True, True])


def test_labels_of_another_type_than_at_fit_are_warned_about():
    fitted = Clusters.from_data(pd.DataFrame({"g": [1, 2]}), "g")
    with pytest.warns(UserWarning, match="treated as new"):
        fitted.recode(pd.DataFrame({"g": ["1", "2"]}), "g")


@pytest.mark.parametrize("scale", [1.0, 2.0**-40, 1e12])
def test_constancy_is_the_one_scale_free_rule(scale):
    frame = pd.DataFrame({"g": [0, 0, 1, 1, 2, 2]})
    clusters = Clusters.from_data(frame, "g")
    level2 = np.array([1.0, 1.0, 2.0, 2.0, 5.0, 5.0]) * scale
    level1 = np.array([1.0, 1.5, 2.0, 2.0, 5.0, 5.0]) * scale
    none = np.zeros(6, dtype=bool)
    assert clusters.constancy(level2, none) == "whole"
    assert clusters.constancy(level1, none) is False
    partly = np.array([False, True, False, False, False, False])
    assert clusters.constancy(np.where(partly, np.nan, level2), partly) == "partial"
    # no cluster holding two values: no evidence of a cluster-level variable
    assert clusters.constancy(np.array([1.0, np.nan, 2.0, np.nan, 3.0, np.nan]), ~np.isfinite([1, np.nan] * 3)) is False


@pytest.mark.parametrize(
    ("groups", "message"), [(["g", "nope"], r"\['nope'\] are not columns"), (["g", "g"], "'g' repeated")]
)
def test_a_list_of_grouping_columns_with_a_wrong_entry_names_it(groups, message):
    frame = pd.DataFrame({"g": [0, 0, 1, 1, 2, 2], "x": range(6)})
    with pytest.raises(ValueError, match=message):
        Clusters.from_data(frame, groups)


def test_unseen_numeric_labels_of_several_factors_are_not_called_text():
    """Several factors' labels pass through object arrays; new numbers are numbers, not a type mismatch."""
    import warnings

    fitted = Clusters.from_data(pd.DataFrame({"s": [1, 1, 2], "c": [10, 11, 20]}), ["s", "c"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = fitted.recode(pd.DataFrame({"s": [1, 9], "c": [99, 98]}), ["s", "c"])
    assert new.factors[1].n_seen == 3 and new.factors[1].count == 5
    with pytest.warns(UserWarning, match="labels are text where the fitted ones are numbers"):
        fitted.recode(pd.DataFrame({"s": ["a"], "c": ["b"]}), ["s", "c"])
