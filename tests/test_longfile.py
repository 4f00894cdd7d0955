"""Completed datasets written to one long-format file as they are made (MultilevelIterativeImputer.fit_write)."""

import warnings

import numpy as np
import pandas as pd
import pytest

import skmlmi.imputer as imputer_module
from skmlmi import MultilevelIterativeImputer
from skmlmi._longfile import LongFileWriter, long_file_format, promote_integers
from skmlmi.conditional import RandomEffectsNormal
from skmlmi.datasets import load_popmis


@pytest.fixture(scope="module")
def popmis():
    return load_popmis()[["school", "popular", "sex", "texp"]]


def _imputer(**params):
    return MultilevelIterativeImputer(n_imputations=3, max_iter=2, random_state=7, **params)


@pytest.mark.parametrize("name", ["imputed.parquet", "imputed.pq", "imputed.csv", "imputed.tsv.gz", "imputed.csv.bz2"])
def test_the_file_holds_what_the_long_format_holds(popmis, tmp_path, name):
    if name.endswith(("parquet", "pq")):
        pytest.importorskip("pyarrow")
    before = popmis.copy()
    _imputer().fit_write(popmis, tmp_path / name, groups="school", include_original=True)
    expected = _imputer().fit_transform_all(popmis, groups="school").long(include_original=popmis)
    fmt, compression = long_file_format(name)
    if fmt == "parquet":
        written = pd.read_parquet(tmp_path / name)
    else:
        written = pd.read_csv(tmp_path / name, sep="," if fmt == "csv" else "\t", compression=compression)
    pd.testing.assert_frame_equal(written, expected.reset_index(drop=True), check_dtype=fmt == "parquet")
    pd.testing.assert_frame_equal(popmis, before)  # the caller's data untouched


def test_one_completed_dataset_at_a_time(popmis, tmp_path, monkeypatch):
    """Each dataset is written before the next is made, so m of them are never held together."""
    events = []
    completed, write = imputer_module.MultilevelIterativeImputer._completed, LongFileWriter.write

    def logged_completed(self, data, chain, results, plan=None):
        events.append(("made", chain))
        return completed(self, data, chain, results, plan)

    def logged_write(self, number, frame):
        events.append(("written", number - 1))
        return write(self, number, frame)

    monkeypatch.setattr(imputer_module.MultilevelIterativeImputer, "_completed", logged_completed)
    monkeypatch.setattr(LongFileWriter, "write", logged_write)
    _imputer().fit_write(popmis, tmp_path / "out.csv", groups="school")
    assert events == [(kind, c) for c in range(3) for kind in ("made", "written")]


def test_parquet_row_groups_are_at_most_chunk_rows(popmis, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    _imputer().fit_write(popmis, tmp_path / "out.parquet", groups="school", chunk_rows=600)
    meta = pq.ParquetFile(tmp_path / "out.parquet").metadata
    sizes = [meta.row_group(k).num_rows for k in range(meta.num_row_groups)]
    assert max(sizes) <= 600 and sum(sizes) == 3 * len(popmis)


def test_an_integer_column_imputed_with_fractions_is_a_float_column_in_every_dataset(popmis, tmp_path):
    pytest.importorskip("pyarrow")
    data = popmis.assign(score=np.round(popmis["popular"] * 10).astype("Int64"))
    data = data.drop(columns="popular")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _imputer(methods={"score": RandomEffectsNormal()}).fit_write(
            data, tmp_path / "out.parquet", groups="school", include_original=True
        )
    written = pd.read_parquet(tmp_path / "out.parquet")
    assert written["score"].dtype == "Float64"
    missing = data["score"].isna().to_numpy()[written[".id"]]
    imputed = written.loc[(written[".imp"] > 0).to_numpy() & missing, "score"]
    assert (imputed != imputed.round()).any()  # the draws are not rounded on the way out
    # a whole-number column imputed by PMM keeps its integer type
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the count check's note
        _imputer().fit_write(data, tmp_path / "pmm.parquet", groups="school")
    assert pd.api.types.is_integer_dtype(pd.read_parquet(tmp_path / "pmm.parquet")["score"].dtype)


def test_promote_integers_changes_only_integer_columns_named():
    frame = pd.DataFrame({"a": [1, 2], "b": pd.array([1, None], dtype="Int64"), "c": [0.5, 1.0], "d": [3, 4]})
    out = promote_integers(frame, {"a", "b", "c"})
    assert out.dtypes.astype(str).tolist() == ["float64", "Float64", "float64", "int64"]
    assert promote_integers(frame, set()) is frame


def test_without_the_groups_column_the_original_data_lose_it_too(popmis, tmp_path):
    _imputer(keep_groups=False).fit_write(popmis, tmp_path / "out.csv", groups="school", include_original=True)
    written = pd.read_csv(tmp_path / "out.csv")
    assert list(written.columns) == [".imp", ".id", "popular", "sex", "texp"]
    assert sorted(written[".imp"].unique()) == [0, 1, 2, 3]


@pytest.mark.parametrize("name", ["out.xlsx", "out", "out.parquet.gz", "out.gz"])
def test_a_file_name_of_no_known_format_is_refused_before_the_chains_run(popmis, tmp_path, name):
    imputer = _imputer()
    with pytest.raises(ValueError, match=r"Cannot tell the format of .*" + name.replace(".", r"\.")):
        imputer.fit_write(popmis, tmp_path / name, groups="school")
    assert not hasattr(imputer, "n_iter_")
    assert not (tmp_path / name).exists()


def test_columns_named_like_the_long_formats_own_are_refused_before_the_chains_run(popmis, tmp_path):
    imputer = _imputer()
    with pytest.raises(ValueError, match=r"columns named \['\.imp'\]"):
        imputer.fit_write(popmis.rename(columns={"texp": ".imp"}), tmp_path / "out.csv", groups="school")
    assert not hasattr(imputer, "n_iter_")


def test_a_failure_while_writing_leaves_no_file_and_an_earlier_one_intact(popmis, tmp_path, monkeypatch):
    target = tmp_path / "out.csv"
    target.write_text("earlier results\n")
    write = LongFileWriter.write

    def failing_write(self, number, frame):
        if number == 2:
            raise OSError("disk full")
        return write(self, number, frame)

    monkeypatch.setattr(LongFileWriter, "write", failing_write)
    with pytest.raises(OSError, match="disk full"):
        _imputer().fit_write(popmis, target, groups="school")
    assert target.read_text() == "earlier results\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_array_input_gets_its_positions_as_column_names(popmis, tmp_path, suffix):
    if suffix == "parquet":
        pytest.importorskip("pyarrow")
    path = tmp_path / f"out.{suffix}"
    _imputer().fit_write(popmis.to_numpy(), path, groups=popmis["school"].to_numpy())
    written = pd.read_parquet(path) if suffix == "parquet" else pd.read_csv(path)
    assert list(written.columns) == [".imp", ".id", "0", "1", "2", "3"]
    expected = _imputer().fit_transform_all(popmis.to_numpy(), groups=popmis["school"].to_numpy()).long()
    np.testing.assert_allclose(written.to_numpy(dtype=float), expected.to_numpy(dtype=float))


@pytest.mark.parametrize("bad", [0, -5, 2.5, "x", True, None])
def test_chunk_rows_must_be_a_positive_whole_number(popmis, tmp_path, bad):
    with pytest.raises(ValueError, match="chunk_rows must be a positive whole number"):
        _imputer().fit_write(popmis, tmp_path / "out.csv", groups="school", chunk_rows=bad)


def test_a_folder_that_cannot_take_the_file_is_refused_before_the_chains_run(popmis, tmp_path):
    (tmp_path / "taken.csv").mkdir()
    cases = [
        (tmp_path / "taken.csv", ValueError, "it is a folder"),
        (tmp_path / "missing" / "out.csv", ValueError, "the folder .* does not exist"),
        (5, TypeError, "path must be a file name"),
        (None, TypeError, "path must be a file name"),
    ]
    for path, error, match in cases:
        imputer = _imputer()
        with pytest.raises(error, match=match):
            imputer.fit_write(popmis, path, groups="school")
        assert not hasattr(imputer, "n_iter_")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.csv"]


def test_a_fit_that_fails_leaves_no_temporary_file(popmis, tmp_path):
    with pytest.raises(ValueError, match="nope"):
        _imputer().fit_write(popmis, tmp_path / "out.csv", groups="nope")
    assert list(tmp_path.iterdir()) == []
