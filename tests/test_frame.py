"""polars (and pyarrow) in and out: skmlmi._frame, the one place data cross between libraries.

A polars DataFrame must work exactly like its pandas twin: groups by column name, names and
dtypes kept, the same numbers for the same seed, output in polars unless ``set_output``
asks for another container.
"""

import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skmlmi import MIPooler, MultilevelIterativeImputer
from skmlmi.analysis import LinearMixedModel
from skmlmi.conditional import BayesianNormal
from skmlmi.datasets import load_popmis

pl = pytest.importorskip("polars")

N = 240
GRADES = ["low", "mid", "high", "never"]  # "never" is declared but never observed


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _twins():
    """The same data as a polars DataFrame and as a pandas DataFrame, every column kind incomplete.

    polars Enum <-> pandas Categorical with the same categories; polars Categorical and
    String <-> pandas object strings (both code the labels in sorted order).
    """
    rng = np.random.default_rng(3)
    school = np.repeat(np.arange(12), N // 12)
    x = rng.normal(size=N) + school * 0.1
    columns = {
        "school": [f"s{s:02d}" for s in school],
        "x": x.tolist(),
        "count": rng.poisson(3 + (x > 0)).tolist(),
        "small": rng.integers(0, 9, size=N).tolist(),
        "flag": (x + rng.normal(size=N) > 0).tolist(),
        "colour": rng.choice(["red", "green", "blue"], size=N).tolist(),
        "grade": rng.choice(GRADES[:3], size=N).tolist(),
        "label": rng.choice(["a", "b"], size=N).tolist(),
    }
    for k, name in enumerate(list(columns)[1:]):
        for row in rng.choice(N, size=20 + k, replace=False):
            columns[name][row] = None
    polars = pl.DataFrame(
        {
            "school": columns["school"],
            "x": pl.Series(columns["x"], dtype=pl.Float64),
            "count": pl.Series(columns["count"], dtype=pl.Int64),
            "small": pl.Series(columns["small"], dtype=pl.UInt8),
            "flag": pl.Series(columns["flag"], dtype=pl.Boolean),
            "colour": pl.Series(columns["colour"], dtype=pl.Categorical),
            "grade": pl.Series(columns["grade"], dtype=pl.Enum(GRADES)),
            "label": pl.Series(columns["label"], dtype=pl.String),
        }
    )
    pandas = pd.DataFrame(
        {
            "school": pd.Series(columns["school"], dtype=object),
            "x": pd.Series(columns["x"], dtype=float),
            "count": pd.array(columns["count"], dtype="Int64"),
            "small": pd.array(columns["small"], dtype="UInt8"),
            "flag": pd.array(columns["flag"], dtype="boolean"),
            "colour": pd.Series(columns["colour"], dtype=object),
            "grade": pd.Categorical(columns["grade"], categories=GRADES),
            "label": pd.Series(columns["label"], dtype=object),
        }
    )
    return polars, pandas


def _imputer(**kwargs):
    # a normal model for "count" imputes fractions: the Int64 column must come back as Float64
    params = dict(n_imputations=2, max_iter=2, random_state=0, methods={"count": BayesianNormal()})
    return MultilevelIterativeImputer(**(params | kwargs))


def _values(frame, column):
    """A column's cells as Python objects (None for missing), from polars or pandas."""
    if isinstance(frame, pl.DataFrame):
        return frame[column].to_list()
    series = frame[column].astype(object)
    return series.where(series.notna(), None).tolist()


def _assert_same_cells(polars_frame, pandas_frame):
    assert list(polars_frame.columns) == list(pandas_frame.columns)
    for column in pandas_frame.columns:
        assert _values(polars_frame, column) == _values(pandas_frame, column), column


# ----------------------------------------------------------------------------- groups
def test_polars_groups_by_column_name_returns_polars():
    polars, _ = _twins()
    imp = _imputer()
    out = _quiet(imp.fit_transform, polars, groups="school")
    assert isinstance(out, pl.DataFrame)
    assert out.columns == polars.columns and out.null_count().sum_horizontal().item() == 0
    assert list(imp.cluster_labels_) == sorted(set(polars["school"]))
    again = _quiet(imp.transform, polars)  # the column name is remembered
    assert isinstance(again, pl.DataFrame) and again.null_count().sum_horizontal().item() == 0


def test_groups_as_polars_series_are_cluster_labels_in_row_order():
    polars, pandas = _twins()
    by_name = _quiet(_imputer(keep_groups=False).fit_transform_all, polars, groups="school")
    imp = _imputer()
    by_series = _quiet(imp.fit_transform_all, polars.drop("school"), groups=polars["school"])
    assert isinstance(by_series[0], pl.DataFrame) and list(imp.cluster_labels_) == sorted(set(polars["school"]))
    for named, labelled in zip(by_name, by_series, strict=True):
        assert named.equals(labelled)
    # a polars Series of labels with pandas X
    pandas_x = _quiet(_imputer().fit_transform_all, pandas.drop(columns="school"), groups=polars["school"])
    _assert_same_cells(by_series[1], pandas_x[1])
    # a pandas Series with polars X: taken by position (polars has no index to align it on)
    shifted = pd.Series(pandas["school"].to_numpy(), index=np.arange(N)[::-1])
    assert _quiet(_imputer().fit_transform_all, polars.drop("school"), groups=shifted)[1].equals(by_series[1])


# ----------------------------------------------------------------------------- dtypes and numbers
def test_polars_dtypes_are_kept_and_int_with_fractions_becomes_float64():
    polars, _ = _twins()
    sets = _quiet(_imputer().fit_transform_all, polars, groups="school")
    for completed in sets:
        assert dict(completed.schema) == {
            "school": pl.String,
            "x": pl.Float64,
            "count": pl.Float64,  # normal draws are not whole numbers (never rounded)
            "small": pl.UInt8,  # predictive mean matching imputes observed values
            "flag": pl.Boolean,
            "colour": pl.Categorical,
            "grade": pl.Enum(GRADES),  # declared categories kept, the unobserved one never imputed
            "label": pl.String,
        }
        assert completed.null_count().sum_horizontal().item() == 0
        assert "never" not in completed["grade"].to_list()
        assert set(completed["colour"].to_list()) == {"red", "green", "blue"}
        observed = polars["count"].is_not_null()
        assert (
            completed["count"].filter(observed).to_list() == polars["count"].filter(observed).cast(pl.Float64).to_list()
        )


def test_polars_gives_the_numbers_of_its_pandas_twin_bit_for_bit():
    polars, pandas = _twins()
    from_polars, from_pandas = _imputer(), _imputer()
    polars_sets = _quiet(from_polars.fit_transform_all, polars, groups="school")
    pandas_sets = _quiet(from_pandas.fit_transform_all, pandas, groups="school")
    for a, b in zip(polars_sets, pandas_sets, strict=True):
        assert isinstance(a, pl.DataFrame) and isinstance(b, pd.DataFrame)
        _assert_same_cells(a, b)
    np.testing.assert_array_equal(from_polars.chain_mean_, from_pandas.chain_mean_)
    new = polars.head(60)
    for a, b in zip(
        _quiet(from_polars.transform_all, new), _quiet(from_pandas.transform_all, pandas.head(60)), strict=True
    ):
        _assert_same_cells(a, b)


def test_null_and_nan_both_mark_missing_and_cells_left_missing_keep_theirs():
    """In a float column NaN is missing as null is (pandas' rule); a `where` that skips a cell leaves it as it was."""
    x = [1.0, 2.0, None, 4.0, float("nan"), 6.0] * 6
    polars = pl.DataFrame({"g": [0, 0, 1, 1, 2, 2] * 6, "x": x, "z": [2.0, 4, 5, 8, 10, 12] * 6})
    imp = MultilevelIterativeImputer(n_imputations=1, max_iter=1, random_state=0)
    completed = _quiet(imp.fit_transform, polars, groups="g")
    assert completed["x"].null_count() == 0 and completed["x"].is_nan().sum() == 0
    assert imp.imputations_["x"].shape == (12, 1)  # 6 nulls and 6 NaN
    where = np.zeros(polars.shape, dtype=bool)
    where[:, 1] = polars["x"].is_null().to_numpy()  # impute the nulls only
    partial = _quiet(imp.fit_transform, polars, groups="g", where=where)
    assert partial["x"].null_count() == 0 and partial["x"].is_nan().sum() == 6
    by_name = _quiet(imp.fit_transform, polars, groups="g", where=polars.select(x=pl.col("x").is_null()))
    assert by_name.equals(partial)  # a polars mask names the columns it marks, as a pandas one


def test_callers_polars_frame_is_not_modified():
    polars, _ = _twins()
    before = polars.clone()
    imp = _imputer()
    _quiet(imp.fit_transform_all, polars, groups="school")
    _quiet(imp.transform_all, polars)
    assert polars.equals(before) and polars.schema == before.schema


# ----------------------------------------------------------------------------- set_output
@pytest.mark.parametrize("library", ["pandas", "polars"])
def test_set_output_polars_returns_polars_from_every_method(library):
    polars, pandas = _twins()
    X = polars if library == "polars" else pandas
    imp = _imputer().set_output(transform="polars")
    outputs = [_quiet(imp.fit_transform, X, groups="school")]
    outputs += list(_quiet(imp.fit_transform_all, X, groups="school"))
    outputs += [_quiet(imp.transform, X), *_quiet(imp.transform_all, X)]
    for out in outputs:
        assert isinstance(out, pl.DataFrame) and out.columns == polars.columns
        assert out["count"].dtype == pl.Float64 and out["flag"].dtype == pl.Boolean
        assert out.null_count().sum_horizontal().item() == 0
    categorical = pl.Enum(GRADES) if library == "polars" else pl.Categorical  # pandas categories -> Categorical
    assert outputs[0]["grade"].dtype == categorical
    # and back: polars in, pandas out on request; pandas in, pandas out by default
    pandas_out = _quiet(_imputer().set_output(transform="pandas").fit_transform_all, polars, groups="school")
    assert isinstance(pandas_out[0], pd.DataFrame) and pandas_out[0]["count"].dtype == "Float64"
    _assert_same_cells(outputs[1], pandas_out[0])


def test_scikit_learn_set_output_checks_pass():
    from sklearn.utils.estimator_checks import (
        check_global_output_transform_pandas,
        check_global_set_output_transform_polars,
        check_set_output_transform_pandas,
        check_set_output_transform_polars,
    )

    imp = MultilevelIterativeImputer(n_imputations=2, max_iter=2, random_state=0)
    for check in (
        check_set_output_transform_polars,
        check_global_set_output_transform_polars,
        check_set_output_transform_pandas,
        check_global_output_transform_pandas,
    ):
        _quiet(check, "MultilevelIterativeImputer", imp)


def test_imputer_fitted_on_a_frame_transforms_an_array_by_column_position():
    _, pandas = _twins()
    numeric = pandas[["x", "count", "small"]].astype(float)
    imp = _imputer(n_imputations=1)
    _quiet(imp.fit, numeric)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        from_array = imp.transform(numeric.to_numpy())
    assert isinstance(from_array, np.ndarray)  # arrays in, arrays out
    np.testing.assert_array_equal(from_array, _quiet(imp.transform, numeric).to_numpy())


def test_pipeline_with_set_output_polars():
    polars, _ = _twins()
    numeric = polars.select("school", "x", "count", "small").with_columns(pl.col("school").str.slice(1).cast(pl.Int64))
    y = np.arange(N, dtype=float)
    imputer = MultilevelIterativeImputer(n_imputations=1, max_iter=2, random_state=0, groups_column="school")
    scaled = Pipeline([("impute", imputer), ("scale", StandardScaler())]).set_output(transform="polars")
    out = _quiet(scaled.fit_transform, numeric)
    assert (
        isinstance(out, pl.DataFrame) and out.columns == numeric.columns and out.null_count().sum_horizontal()[0] == 0
    )
    model = Pipeline([("impute", imputer), ("model", Ridge())]).set_output(transform="polars")
    prediction = _quiet(_quiet(model.fit, numeric, y).predict, numeric)
    assert prediction.shape == (N,) and np.isfinite(prediction).all()


# ----------------------------------------------------------------------------- completed datasets
def test_long_format_of_polars_datasets_is_polars():
    polars, pandas = _twins()
    sets = _quiet(_imputer().fit_transform_all, polars, groups="school")
    long = sets.long(include_original=polars)
    assert isinstance(long, pl.DataFrame) and long.columns == [".imp", ".id", *polars.columns]
    assert long.height == 3 * N and long[".imp"].unique().sort().to_list() == [0, 1, 2]
    assert long["grade"].dtype == pl.Enum(GRADES) and long["count"].dtype == pl.Float64
    reference = _quiet(_imputer().fit_transform_all, pandas, groups="school").long(include_original=pandas)
    _assert_same_cells(long, reference)


def test_pyarrow_table_in_gives_pyarrow_out_with_the_polars_numbers():
    pa = pytest.importorskip("pyarrow")
    polars, _ = _twins()
    table = polars.drop("grade").to_arrow()  # pyarrow has no Enum
    out = _quiet(_imputer().fit_transform_all, table, groups="school")
    reference = _quiet(_imputer().fit_transform_all, polars.drop("grade"), groups="school")
    for a, b in zip(out, reference, strict=True):
        assert isinstance(a, pa.Table) and a.column_names == b.columns
        assert (
            pl.from_arrow(a)
            .with_columns(pl.col("colour").cast(pl.String))
            .equals(b.with_columns(pl.col("colour").cast(pl.String)))
        )


def test_polars_works_without_pyarrow():
    """polars' own pandas conversion needs pyarrow; ours does not."""
    script = textwrap.dedent(
        """
        import sys, warnings
        sys.modules["pyarrow"] = None  # any import of pyarrow fails
        warnings.simplefilter("ignore")
        import pandas as pd, polars as pl
        from skmlmi import MultilevelIterativeImputer
        X = pl.DataFrame({"g": ["a", "a", "b", "b", "c", "c"] * 5, "x": [1.0, 2, None, 4, 5, 6] * 5,
                          "k": pl.Series([1, None, 3, 4, 2, 1] * 5, dtype=pl.Int32),
                          "e": pl.Series(["u", "v", None, "u", "v", "u"] * 5, dtype=pl.Enum(["u", "v"]))})
        imp = MultilevelIterativeImputer(n_imputations=2, max_iter=1, random_state=0)
        sets = imp.fit_transform_all(X, groups="g")
        assert sets[0].schema == X.schema and sets.long().height == 60
        pandas_in = pd.DataFrame({"g": [0, 0, 1, 1] * 5, "k": pd.array([1, None, 2, 3] * 5, dtype="Int64"),
                                  "c": pd.Categorical(["a", None, "b", "a"] * 5)})
        out = imp.set_output(transform="polars").fit_transform(pandas_in, groups="g")
        assert dict(out.schema) == {"g": pl.Int64, "k": pl.Int64, "c": pl.Categorical}
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


# ----------------------------------------------------------------------------- errors
def test_lazy_frames_and_unsupported_dtypes_are_clear_errors():
    polars, _ = _twins()
    imp = _imputer()
    with pytest.raises(TypeError, match=r"LazyFrame; collect it first"):
        imp.fit(polars.lazy(), groups="school")
    dated = polars.with_columns(when=pl.date(2020, 1, 1))
    with pytest.raises(TypeError, match=r"Column 'when' has dtype Date"):
        imp.fit(dated, groups="school")


# ----------------------------------------------------------------------------- MIPooler
def test_mipooler_with_polars_pools_what_pandas_pools():
    data = load_popmis()[["school", "popular", "sex", "texp"]]
    polars = pl.from_pandas(data)

    def pooler(imputer=None):
        imputer = imputer or MultilevelIterativeImputer(n_imputations=2, max_iter=2, random_state=1)
        return MIPooler(imputer, LinearMixedModel("popular ~ sex + texp + (1 | school)"))

    reference = _quiet(pooler().fit, data, groups="school")
    fitted = _quiet(pooler().fit, polars, groups="school")
    pd.testing.assert_frame_equal(fitted.results_.table, reference.results_.table)  # tables stay pandas
    pd.testing.assert_series_equal(fitted.results_.variance_components, reference.results_.variance_components)
    np.testing.assert_array_equal(_quiet(fitted.predict, polars), _quiet(reference.predict, data))
    observed = data.dropna(subset=["popular"])
    assert _quiet(fitted.score, pl.from_pandas(observed)) == _quiet(reference.score, observed)
    # an imputer set to polars output still hands the analysis model pandas data
    polars_imputer = MultilevelIterativeImputer(n_imputations=2, max_iter=2, random_state=1).set_output(
        transform="polars"
    )
    pd.testing.assert_frame_equal(
        _quiet(pooler(polars_imputer).fit, polars, groups="school").results_.table, reference.results_.table
    )
    # X, y and groups as polars, a plain scikit-learn model
    X, y = data.drop(columns=["popular", "school"]), data["popular"]
    ridge = MIPooler(MultilevelIterativeImputer(n_imputations=2, max_iter=2, random_state=1), Ridge())
    by_pandas = _quiet(ridge.fit, X, y, groups=data["school"]).results_.table
    by_polars = _quiet(ridge.fit, pl.from_pandas(X), pl.from_pandas(y), groups=polars["school"]).results_.table
    pd.testing.assert_frame_equal(by_polars, by_pandas)
