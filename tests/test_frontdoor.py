"""The front door (skmlmi._frontdoor): the caller's data in and out, exactly."""

import numpy as np
import pandas as pd
import pytest

from skmlmi._clusters import Clusters
from skmlmi._frontdoor import (
    Layout,
    WorkingData,
    check_ignore,
    check_where,
    detect_codecs,
    encode,
    read_frame,
    write_output,
)


@pytest.fixture
def frame():
    return pd.DataFrame(
        {
            "g": ["a", "a", "b", "b"],
            "big": pd.array([2**53 + 1, 3, 2**60, 7], dtype="Int64"),  # complete: incomplete ones are refused
            "sex": pd.Categorical(["m", None, "f", "m"]),
            "x": [0.5, None, 1.5, 2.5],
        }
    )


def test_working_matrix_codes_categories_and_marks_missing_cells(frame):
    _, pandas_frame, _, is_frame = read_frame(frame)
    layout = Layout(list(frame.columns), detect_codecs(pandas_frame, None), "g", is_frame)
    W, missing = encode(pandas_frame, layout)
    assert not missing[:, 0].any()  # the cluster column is never missing: its codes travel in Clusters
    np.testing.assert_array_equal(
        missing[:, 1:], [[False, False, False], [False, True, True], [False, False, False], [False, False, False]]
    )
    assert set(W[~missing[:, 2], 2]) <= {0.0, 1.0}


def test_cells_not_written_keep_the_callers_values_exactly(frame):
    _, pandas_frame, source, is_frame = read_frame(frame)
    layout = Layout(list(frame.columns), detect_codecs(pandas_frame, None), "g", is_frame)
    W, missing = encode(pandas_frame, layout)
    W[1, 3], W[1, 2] = 5.0, 0.0  # "imputed"
    out = write_output(W, pandas_frame, source, layout, True, None, changed=[1, 2, 3], written=missing)
    assert out["big"].tolist() == [2**53 + 1, 3, 2**60, 7]  # the float working copy would have rounded 2**53 + 1
    assert out["sex"].dtype == frame["sex"].dtype and not out["sex"].isna().any()
    assert out["x"].tolist() == [0.5, 5.0, 1.5, 2.5]
    assert frame["x"].isna().sum() == 1  # the caller's data are untouched


def test_where_and_ignore_are_checked_against_the_data(frame):
    _, pandas_frame, source, is_frame = read_frame(frame)
    layout = Layout(list(frame.columns), detect_codecs(pandas_frame, None), "g", is_frame)
    W, missing = encode(pandas_frame, layout)
    data = WorkingData(pandas_frame, source, layout, W, missing, Clusters.from_data(pandas_frame, "g"))
    assert check_where(None, data) is missing
    with pytest.raises(ValueError, match="cluster column 'g'"):
        check_where(np.ones((4, 4), dtype=bool), data)
    with pytest.raises(ValueError, match="boolean mask of shape"):
        check_where(np.ones((4, 3), dtype=bool), data)
    with pytest.raises(ValueError, match="boolean array of length 4"):
        check_ignore([0, 1, 0, 1], 4)


@pytest.mark.parametrize("bad", [np.zeros((0, 2)), np.zeros((3, 0)), np.zeros(3)])
def test_empty_or_one_dimensional_data_are_refused(bad):
    with pytest.raises(ValueError, match="sample|feature|2D"):
        read_frame(bad)
