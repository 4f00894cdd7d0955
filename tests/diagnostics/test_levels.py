"""icc_by_level: the ICC of each level of nested or crossed factors, from each variable's mixed model."""

import numpy as np
import pandas as pd
import pytest

from skmlmi.analysis import LinearMixedModel
from skmlmi.diagnostics import icc, icc_by_level

#: Variance shares: school 0.10, class 0.15, pupil 0.75 (total 1, so the shares are the ICCs).
SCHOOL, CLASS = 0.10, 0.15


def _three_level(seed, schools=100, classes=5, pupils=8):
    rng = np.random.default_rng(seed)
    school = np.repeat(np.arange(schools), classes * pupils)
    unit = np.repeat(np.arange(schools * classes), pupils)
    y = (
        rng.normal(0, np.sqrt(SCHOOL), schools)[school]
        + rng.normal(0, np.sqrt(CLASS), schools * classes)[unit]
        + rng.normal(0, np.sqrt(1 - SCHOOL - CLASS), school.size)
    )
    frame = pd.DataFrame({"school": school, "class": unit % classes, "y": y})
    frame.loc[rng.random(len(frame)) < 0.2, "y"] = np.nan
    return frame


def test_each_levels_icc_is_unbiased_where_the_one_way_icc_of_the_inner_factor_is_not():
    """Over 8 datasets the mean ICC per level lies within 4 MC SE (+0.01 for REML's small-sample bias) of the truth;
    the one-way ICC of the classes holds the school variance too (about 0.25)."""
    tables = [icc_by_level(_three_level(seed), ["school", "class"], "nested") for seed in range(8)]
    values = np.array([t.loc["y"].to_numpy() for t in tables])
    mean, se = values.mean(axis=0), values.std(axis=0, ddof=1) / np.sqrt(len(values))
    assert np.all(np.abs(mean - [SCHOOL, CLASS]) < 4 * se + 0.01), (mean, se)
    frame = _three_level(0)
    one_way = icc(frame.assign(unit=frame["school"] * 5 + frame["class"]).drop(columns=["school", "class"]), "unit")
    assert one_way["y"] > tables[0].loc["y", "ICC|class:school"] + 0.05


def test_it_is_the_mixed_models_icc_and_names_nested_and_crossed_levels():
    frame = _three_level(1)
    table = icc_by_level(frame, ["school", "class"], "nested")
    assert list(table.columns) == ["ICC|school", "ICC|class:school"]
    fit = LinearMixedModel("y ~ 1 + (1 | school/class)").fit(frame.dropna())
    np.testing.assert_allclose(table.loc["y"], fit.variance_components_[["ICC|school", "ICC|class:school"]], rtol=1e-6)
    crossed = icc_by_level(frame, ["school", "class"], "crossed")  # class labels 0-4 shared by every school
    assert list(crossed.columns) == ["ICC|school", "ICC|class"]


def test_constant_variables_are_nan_with_a_reason_and_the_data_are_not_modified():
    frame = _three_level(2).assign(k=1.0, b=lambda d: (d["y"] > 0).astype(float))
    before = frame.copy()
    table = icc_by_level(frame, ["school", "class"], "nested")
    pd.testing.assert_frame_equal(frame, before)
    assert table.loc["k"].isna().all() and "constant" in table.attrs["failures"]["k"]
    assert table.loc["b"].notna().all()
    with pytest.raises(ValueError, match="'nope'"):
        icc_by_level(frame, ["school", "nope"])
