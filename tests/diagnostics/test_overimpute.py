"""Over-imputation: arguments are checked before the imputer runs."""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

from skmlmi import MultilevelIterativeImputer
from skmlmi.diagnostics import overimpute


@pytest.fixture
def data():
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"g": np.repeat(np.arange(6), 10), "x": rng.normal(size=60), "y": rng.normal(size=60)})
    frame.loc[rng.random(60) < 0.2, "y"] = np.nan
    return frame


@pytest.mark.parametrize("sample", [0, -1, 1.5, np.nan, "10", True])
def test_sample_must_be_a_share_or_a_whole_number_of_cells(data, sample):
    imputer = MultilevelIterativeImputer(n_imputations=2, max_iter=1)
    with pytest.raises(ValueError, match="sample must be a share in"):
        overimpute(imputer, data, groups="g", sample=sample)


@pytest.mark.parametrize("imputer", [LinearRegression(), MultilevelIterativeImputer, None])
def test_the_imputer_must_be_an_imputer_instance(data, imputer):
    with pytest.raises(TypeError, match="imputer must be an imputer instance"):
        overimpute(imputer, data, groups="g")


# --------------------------------------------------------------------------- hostile inputs
@pytest.fixture
def six_clusters():
    rng = np.random.default_rng(11)
    n = 60
    df = pd.DataFrame({"g": np.repeat(np.arange(6), 10), "x": rng.normal(size=n), "y": rng.normal(size=n)})
    df.loc[rng.random(n) < 0.2, "y"] = np.nan
    return df


def _small_imputer(**params):
    return MultilevelIterativeImputer(**{"n_imputations": 2, "max_iter": 2, "random_state": 1, **params})


def _quiet(func, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return func(*args, **kwargs)


def test_overimpute_with_group_labels_and_with_nothing_to_check(six_clusters):
    data = six_clusters.drop(columns="g")
    result = _quiet(overimpute, _small_imputer(), data, groups=six_clusters["g"].to_numpy(), random_state=0)
    assert list(result.coverage.index) == ["y"]  # was "truth value of an array is ambiguous"
    with pytest.raises(ValueError, match="no incomplete continuous column"):
        _quiet(overimpute, _small_imputer(), six_clusters.dropna(), groups="g")
