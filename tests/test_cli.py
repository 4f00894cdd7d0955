"""The command line."""

import os
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from skmlmi import MultilevelIterativeImputer
from skmlmi.analysis import OLS
from skmlmi.cli import demo_popmis, main
from skmlmi.cli import main as cli_main


def test_demo_popmis_shows_clustering_matters():
    result = demo_popmis(m=3, max_iter=3, seed=1)
    icc = result["variance"].loc["ICC|school"]
    # complete cases ~0.50; PMM ignoring schools loses about half of it (R: 0.20 +- 0.02)
    assert icc["PMM ignoring clusters"] < icc["complete cases"] - 0.15
    for label in ["PMM, school fixed effects", "random-effects PMM", "random-effects normal"]:
        assert abs(icc[label] - icc["complete cases"]) < 0.1, label
    table = result["tables"]["random-effects normal"]
    assert list(table.columns) == ["estimate", "std_error", "statistic", "df", "p_value", "riv", "fmi"]


def test_cli_demo_prints_the_tables(capsys):
    assert main(["demo", "popmis", "--m", "2", "--max-iter", "2"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "PMM ignoring clusters" in out and "ICC|school" in out and "fmi" in out
    # progress while it runs (it used to print nothing for 12-20 s), on standard error; --quiet silences it
    assert "[skmlmi] 4/4 chain-iterations (100%)" in captured.err
    assert main(["demo", "popmis", "--m", "2", "--max-iter", "2", "--quiet"]) == 0
    assert "chain-iterations" not in capsys.readouterr().err


def test_cli_help_and_unknown_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2


@pytest.fixture
def popmis_csv(tmp_path):
    from skmlmi.datasets import load_popmis

    path = tmp_path / "popmis.csv"
    load_popmis()[["school", "popular", "sex", "texp"]].to_csv(path, index=False)
    return path


def test_impute_then_pool(popmis_csv, tmp_path, capsys):
    out = tmp_path / "long.csv"
    code = main(
        [
            "impute",
            str(popmis_csv),
            "--groups",
            "school",
            "--method",
            "popular=2l.pan",
            "--role",
            "popular:sex=2",
            "--m",
            "3",
            "--max-iter",
            "2",
            "--seed",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    import pandas as pd

    long = pd.read_csv(out)
    assert list(long.columns[:2]) == [".imp", ".id"] and sorted(long[".imp"].unique()) == [1, 2, 3]
    assert long["popular"].notna().all()
    assert "[skmlmi] 6/6 chain-iterations (100%)" in capsys.readouterr().err  # progress, chains x iterations
    assert main(["pool", str(out), "--formula", "popular ~ sex + texp + (1 | school)"]) == 0
    printed = capsys.readouterr().out
    assert "fmi" in printed and "ICC|school" in printed


def test_impute_errors_have_exit_codes(popmis_csv, tmp_path, capsys):
    out = str(tmp_path / "x.csv")
    assert main(["impute", str(tmp_path / "missing.csv"), "--out", out]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["impute", str(popmis_csv), "--groups", "class", "--out", out]) == 2
    assert "unknown column" in capsys.readouterr().err
    assert main(["impute", str(popmis_csv), "--method", "popular=nonsense", "--out", out]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert main(["pool", str(popmis_csv), "--formula", "popular ~ sex"]) == 2
    assert "no .imp column" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["impute", "pool", "diagnose", "demo"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: skmlmi " + command in capsys.readouterr().out


def test_diagnose_writes_pattern_icc_and_recommendations(popmis_csv, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "diagnosis"
    assert main(["diagnose", str(popmis_csv), "--groups", "school", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "RandomEffectsPMM" in printed and "popular" in printed
    for name in ["pattern.png", "missing_by_cluster.png", "icc.csv", "recommended_methods.csv"]:
        assert (out / name).stat().st_size > 0, name


def test_demo_obesity_heckman_above_mar(capsys):
    assert main(["demo", "obesity", "--m", "3", "--max-iter", "2"]) == 0
    out = capsys.readouterr().out
    assert "Heckman (MNAR)" in out and "MAR" in out and "MC SE" in out


def test_demo_obesity_reports_the_monte_carlo_se_of_each_pooled_mean():
    from skmlmi.cli import demo_obesity

    table = demo_obesity(m=3, max_iter=2)
    imputed = table.loc[["Heckman (MNAR)", "MAR"]]
    # MC SE = sqrt(B / m) while SE^2 = Ubar + (1 + 1/m) B: 0 < MC SE < SE whenever the imputations differ
    assert ((imputed["MC SE"] > 0) & (imputed["MC SE"] < imputed["SE"])).all()
    assert np.isnan(table.loc["observed only", "MC SE"])


def test_demo_impact_prints_terms_against_complete_data(capsys):
    from skmlmi.cli import demo_impact

    table = demo_impact(m=2, max_iter=2, seed=1)
    assert list(table.index) == ["pupilNone", "pupilOne", "ctIII", "ctIV/V"]
    assert "recommended (multilevel): difference / SE" in table.columns
    # even a tiny run lands within a few complete-data SEs of the complete-data log-odds
    assert (table["recommended (multilevel): difference / SE"].abs() < 4).all()


# --------------------------------------------------------------------------- checks before the work, exit codes
@pytest.fixture
def small_csv(tmp_path):
    """60 rows in 6 clusters, y missing in about a fifth of them: imputed in well under a second."""
    import pandas as pd

    rng = np.random.default_rng(11)
    data = pd.DataFrame({"g": np.repeat(np.arange(6), 10), "x": rng.normal(size=60), "y": rng.normal(size=60)})
    data.loc[rng.random(60) < 0.2, "y"] = np.nan
    path = tmp_path / "d.csv"
    data.to_csv(path, index=False)
    return path


@pytest.fixture
def no_imputation(monkeypatch):
    """Fail the test if a chain would run: the checks under test must come first."""
    from skmlmi import MultilevelIterativeImputer

    def started(*args, **kwargs):
        raise AssertionError("the imputation started")

    monkeypatch.setattr(MultilevelIterativeImputer, "_fit", started)  # every way of fitting goes through it


def _files(directory):
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def _usage_error(capsys, argv, *fragments):
    """Run argv; assert exit code 2 and one line ``skmlmi: error: ...`` holding every fragment."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("skmlmi: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("d.csv/out.csv", "is not a directory"),  # the parent is a regular file (holds for root too)
        ("absent/out.csv", "does not exist"),
        ("existing_dir", "is a directory"),
        ("d.csv", "is the input file"),
    ],
)
def test_unwritable_output_is_a_usage_error_before_imputing(small_csv, tmp_path, capsys, no_imputation, out, message):
    (tmp_path / "existing_dir").mkdir()
    before = _files(tmp_path)
    target = str(tmp_path / out)
    _usage_error(capsys, ["impute", str(small_csv), "--groups", "g", "--out", target], "--out", out, message)
    assert _files(tmp_path) == before
    assert small_csv.read_text().startswith("g,x,y")  # the input is untouched


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_directory_or_file_is_a_usage_error_before_imputing(small_csv, tmp_path, capsys, no_imputation):
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "old.csv").write_text("kept\n")
    locked.chmod(0o555)
    try:
        _usage_error(capsys, ["impute", str(small_csv), "--out", str(locked / "new.csv")], "not writable")
        (locked / "old.csv").chmod(0o444)
        _usage_error(capsys, ["impute", str(small_csv), "--out", str(locked / "old.csv")], "not writable")
        assert sorted(p.name for p in locked.iterdir()) == ["old.csv"]
        assert (locked / "old.csv").read_text() == "kept\n"
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize(
    ("argv_tail", "fragments"),
    [
        (["--out", "o.xlsx"], ["o.xlsx", "'.xlsx'", "csv (.csv)", "parquet", "feather", "json"]),
        (["--out", "o"], ["no suffix", "csv (.csv)"]),
        (["--out", "o.parquet.gz"], ["cannot be compressed"]),
        (["--out", "o.parquet", "--format", "csv"], ["says parquet", "--format is csv"]),
    ],
)
def test_unknown_output_format_is_a_usage_error_listing_the_formats(
    small_csv, tmp_path, capsys, monkeypatch, no_imputation, argv_tail, fragments
):
    # before, --out o.xlsx imputed everything and wrote CSV text into a file named .xlsx
    monkeypatch.chdir(tmp_path)
    before = _files(tmp_path)
    _usage_error(capsys, ["impute", str(small_csv), "--groups", "g", *argv_tail], *fragments)
    assert _files(tmp_path) == before


def test_input_of_unknown_format_is_a_usage_error(tmp_path, capsys, no_imputation):
    sheet = tmp_path / "d.xlsx"
    sheet.write_bytes(b"PK\x03\x04 not a table")
    _usage_error(capsys, ["impute", str(sheet), "--out", str(tmp_path / "o.csv")], "d.xlsx", "unknown table format")
    _usage_error(capsys, ["diagnose", str(sheet), "--groups", "g", "--out", str(tmp_path / "r")], "d.xlsx")
    assert _files(tmp_path) == ["d.xlsx"]


@pytest.mark.parametrize(("out", "label"), [("o.parquet", "Parquet"), ("o.feather", "Feather")])
def test_missing_pyarrow_names_the_pip_line_before_imputing(
    small_csv, tmp_path, capsys, monkeypatch, no_imputation, out, label
):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` now fails
    stored = tmp_path / f"in_{out}"
    stored.write_bytes(b"PAR1")
    before = _files(tmp_path)
    argv = ["impute", str(small_csv), "--groups", "g", "--out", str(tmp_path / out)]
    _usage_error(capsys, argv, f"writing {label}", "needs pyarrow", 'pip install "skmlmi[parquet]"')
    _usage_error(capsys, ["pool", str(stored), "--formula", "y ~ x"], f"reading {label}", "skmlmi[parquet]")
    assert _files(tmp_path) == before


def test_diagnose_without_matplotlib_names_the_pip_line_and_writes_nothing(small_csv, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    argv = ["diagnose", str(small_csv), "--groups", "g", "--out", str(tmp_path / "report")]
    _usage_error(capsys, argv, "needs matplotlib", 'pip install "skmlmi[plot]"')
    assert not (tmp_path / "report").exists()


def test_the_extras_the_messages_name_exist():
    import tomllib
    from pathlib import Path

    from skmlmi.cli import TABLE_FORMATS

    extras = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for fmt in TABLE_FORMATS.values():
        if fmt.requires:
            assert any(dep.startswith(fmt.requires) for dep in extras[fmt.extra]), fmt.name
    assert any(dep.startswith("matplotlib") for dep in extras["plot"])


@pytest.mark.parametrize(
    ("model", "fragments"),
    [
        ("BaseConditionalImputer", ["unknown model 'BaseConditionalImputer'", "abstract base class"]),
        ("Draw", ["unknown model 'Draw'"]),
        ("ROLE_NAMES", ["unknown model 'ROLE_NAMES'"]),
        ("base", ["unknown model 'base'"]),
        ("2l.foo", ["unknown model '2l.foo'"]),
        ("randomeffectsnormal", ["did you mean RandomEffectsNormal?"]),
    ],
)
def test_model_names_are_checked_before_imputing(small_csv, tmp_path, capsys, no_imputation, model, fragments):
    # before, y=BaseConditionalImputer ended in an AttributeError traceback
    argv = ["impute", str(small_csv), "--groups", "g", "--method", f"y={model}", "--out", str(tmp_path / "o.csv")]
    err = _usage_error(capsys, argv, *fragments)
    assert "RandomEffectsNormal" in err and "2l.pan" in err  # the available names are listed
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("settings", ["a=" + "-" * 100_000 + "1", "a=" + "(" * 5_000 + "1" + ")" * 5_000])
def test_huge_model_settings_are_a_usage_error_not_a_memory_error(small_csv, tmp_path, capsys, no_imputation, settings):
    argv = [
        "impute",
        str(small_csv),
        "--method",
        f"y=RandomEffectsNormal({settings})",
        "--out",
        str(tmp_path / "o.csv"),
    ]
    _usage_error(capsys, argv, "settings longer than 1000 characters")


@pytest.mark.parametrize(
    ("argv_tail", "fragments"),
    [
        (["--groups", "school"], ["--groups", "'school'"]),
        (["--method", "z=pmm"], ["--method z=pmm", "'z'"]),
        (["--role", "y:z=1"], ["--role y:z=1", "'z'"]),
        (["--role", "z:x=1"], ["--role z:x=1", "'z'"]),
        (["--groups", "g", "--method", "g=pmm"], ["'g' is a cluster column"]),
        (["--method", "y=pmm", "--method", "y=norm"], ["--method y is given twice"]),
        (["--method", "=pmm"], ["--method '=pmm': expected COLUMN=MODEL"]),
        (["--role", "y:x"], ["--role 'y:x': expected TARGET:PREDICTOR=CODE"]),
    ],
)
def test_column_names_are_checked_before_imputing(small_csv, tmp_path, capsys, no_imputation, argv_tail, fragments):
    _usage_error(capsys, ["impute", str(small_csv), "--out", str(tmp_path / "o.csv"), *argv_tail], *fragments)
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize(
    ("argv_tail", "fragments"),
    [
        (["--m", "0"], ["--m 0", "at least 1"]),
        (["--max-iter", "-1"], ["--max-iter -1", "0 or more"]),
        (["--seed", "-1"], ["--seed -1"]),
        (["--n-jobs", "0"], ["--n-jobs 0"]),
        (["--role", "y:x=7"], ["--role y:x=7", "7 is not a role code", "-2 (cluster identifier)"]),
        (["--role", "y:y=1"], ["cannot predict itself"]),
        (["--role", "y:x=-2"], ["only a cluster column"]),
        (["--role", "y:g=2"], ["the cluster column may only be coded -2"]),
        (["--method", "y=pmm", "--role", "y:x=2"], ["PredictiveMeanMatching cannot honour code 2"]),
    ],
)
def test_numbers_and_role_codes_are_checked_before_imputing(
    small_csv, tmp_path, capsys, no_imputation, argv_tail, fragments
):
    # before, --m 0 and --role y:x=7 were exit code 1 (found by the imputer) where other usage errors were 2
    argv = ["impute", str(small_csv), "--groups", "g", "--out", str(tmp_path / "o.csv"), *argv_tail]
    _usage_error(capsys, argv, *fragments)
    assert not (tmp_path / "o.csv").exists()


def test_demo_numbers_are_checked_before_the_demo_runs(capsys, monkeypatch):
    import skmlmi.cli

    monkeypatch.setattr(skmlmi.cli, "demo_popmis", lambda *a: pytest.fail("the demo ran"))
    _usage_error(capsys, ["demo", "popmis", "--m", "0"], "--m 0")
    _usage_error(capsys, ["demo", "popmis", "--max-iter", "-2"], "--max-iter -2")


def test_input_holding_the_output_columns_is_a_usage_error(small_csv, tmp_path, capsys, no_imputation):
    import pandas as pd

    long = tmp_path / "long.csv"
    pd.read_csv(small_csv).assign(**{".imp": 1, ".id": range(60)}).to_csv(long, index=False)
    _usage_error(capsys, ["impute", str(long), "--out", str(tmp_path / "o.csv")], "['.imp', '.id']")


def test_data_the_output_format_cannot_hold_fail_before_imputing(tmp_path, capsys, no_imputation):
    pytest.importorskip("pyarrow")
    import json

    records = [{"g": i // 2, "x": value, "y": 1.0 if i % 3 else None} for i, value in enumerate([1, "a", 2.5, "b"])]
    data = tmp_path / "d.json"
    data.write_text(json.dumps(records))
    argv = ["impute", str(data), "--groups", "g", "--out", str(tmp_path / "o.parquet")]
    _usage_error(capsys, argv, "--out", "cannot be written as Parquet")
    assert _files(tmp_path) == ["d.json"]


def test_failure_during_the_run_is_exit_1_with_one_line(small_csv, tmp_path, capsys, monkeypatch):
    from skmlmi import MultilevelIterativeImputer

    def singular(*args, **kwargs):  # as a chain raises it: carrying the chains that failed
        error = np.linalg.LinAlgError("Singular matrix")
        error.failed_chains = [1]
        raise error

    monkeypatch.setattr(MultilevelIterativeImputer, "_fit", singular)
    monkeypatch.delenv("SKMLMI_DEBUG", raising=False)
    argv = ["impute", str(small_csv), "--groups", "g", "--out", str(tmp_path / "o.csv")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("skmlmi: error: LinAlgError: Singular matrix") and err.count("\n") == 1, err
    assert "Traceback" not in err and "--debug" in err
    assert not (tmp_path / "o.csv").exists()
    assert main([*argv, "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("SKMLMI_DEBUG", "1")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "LinAlgError: Singular matrix" in err


def test_data_the_imputer_rejects_before_its_chains_is_a_usage_error(tmp_path, capsys):
    import pandas as pd

    data = pd.DataFrame({"g": [1, 1, 2, 2, np.nan, 3], "y": [1.0, np.nan, 2.0, 3.0, 4.0, 5.0]})
    data.to_csv(tmp_path / "d.csv", index=False)
    argv = ["impute", str(tmp_path / "d.csv"), "--groups", "g", "--out", str(tmp_path / "o.csv")]
    _usage_error(capsys, argv, "the imputer rejects the data before imputing", "missing cluster labels")
    assert not (tmp_path / "o.csv").exists()


def test_a_value_error_inside_a_chain_is_a_failure_during_the_run(small_csv, tmp_path, capsys, monkeypatch):
    from skmlmi.conditional import RandomEffectsNormal

    def refuse(self, *args, **kwargs):
        raise ValueError("cannot be fitted here")

    monkeypatch.setattr(RandomEffectsNormal, "_draw", refuse)
    argv = [
        "impute",
        str(small_csv),
        "--groups",
        "g",
        "--method",
        "y=RandomEffectsNormal",
        "--out",
        str(tmp_path / "o.csv"),
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "chain 1, iteration 1, column 'y' (RandomEffectsNormal): cannot be fitted here" in err, err


def test_a_failed_write_leaves_no_partial_file_and_keeps_the_old_one(small_csv, tmp_path, capsys, monkeypatch):
    import pandas as pd

    out = tmp_path / "o.csv"
    out.write_text("an earlier result\n")

    def disk_full(self, path, *args, **kwargs):
        with open(path, "w") as file:
            file.write(".imp,.id,g")  # a partial file, then the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", disk_full)
    assert (
        main(["impute", str(small_csv), "--groups", "g", "--m", "1", "--max-iter", "1", "--quiet", "--out", str(out)])
        == 1
    )
    err = capsys.readouterr().err
    assert "could not write" in err and str(out) in err and "No space left" in err
    assert out.read_text() == "an earlier result\n"
    assert _files(tmp_path) == ["d.csv", "o.csv"]  # no temporary file left behind


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".csv.gz", ".json", ".json.bz2", ".parquet", ".feather"])
def test_every_table_format_round_trips_through_impute_and_pool(small_csv, tmp_path, capsys, suffix):
    from skmlmi.cli import _table_format

    out, pooled = tmp_path / f"long{suffix}", tmp_path / f"pooled{suffix}"
    fmt, compression = _table_format(pooled, "--out")
    if fmt.requires:
        pytest.importorskip(fmt.requires)
    argv = ["impute", str(small_csv), "--groups", "g", "--m", "2", "--max-iter", "1", "--seed", "1", "--quiet"]
    assert main([*argv, "--out", str(out)]) == 0
    assert main(["pool", str(out), "--formula", "y ~ x + (1 | g)", "--out", str(pooled), "--quiet"]) == 0
    assert "pooled over m = 2" in capsys.readouterr().out
    table = fmt.read(pooled, compression)
    assert list(table["term"]) == ["(Intercept)", "x"] and table["estimate"].notna().all()
    assert _files(tmp_path) == sorted(["d.csv", out.name, pooled.name])


def test_pool_checks_the_formula_and_the_file_before_fitting(tmp_path, capsys, monkeypatch):
    import pandas as pd

    monkeypatch.setattr(OLS, "fit", lambda *a, **k: pytest.fail("a model was fitted"))
    long = tmp_path / "long.csv"
    pd.DataFrame({".imp": [0, 0], ".id": [0, 1], "y": [1.0, None], "x": [1.0, 2.0]}).to_csv(long, index=False)
    _usage_error(capsys, ["pool", str(long), "--formula", "y ~ x"], "no imputed datasets")
    pd.DataFrame({".imp": [1, 1], ".id": [0, 1], "y": [1.0, 2.0], "x": [1.0, 2.0]}).to_csv(long, index=False)
    _usage_error(capsys, ["pool", str(long), "--formula", "y ~ x + z"], "--formula", "'z'")
    _usage_error(capsys, ["pool", str(long), "--formula", "y x"], "--formula")
    _usage_error(capsys, ["pool", str(long), "--formula", "y ~ x", "--out", str(tmp_path / "t.xlsx")], "t.xlsx")


def test_pool_failure_names_the_imputation_and_is_exit_1(tmp_path, capsys, monkeypatch):
    import pandas as pd

    def singular(self, data):
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(OLS, "fit", singular)
    long = tmp_path / "long.csv"
    pd.DataFrame({".imp": [1, 1, 1], ".id": [0, 1, 2], "y": [1.0, 2, 3], "x": [1.0, 2, 4]}).to_csv(long, index=False)
    assert main(["pool", str(long), "--formula", "y ~ x"]) == 1
    err = capsys.readouterr().err
    assert "imputation 1" in err and "LinAlgError: Singular matrix" in err and "Traceback" not in err


def test_diagnose_checks_before_writing(small_csv, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    report = tmp_path / "report"
    _usage_error(capsys, ["diagnose", str(small_csv), "--groups", "school", "--out", str(report)], "'school'")
    assert not report.exists()
    _usage_error(capsys, ["diagnose", str(small_csv), "--groups", "g", "--out", str(small_csv)], "not a directory")


def test_version(capsys):
    from skmlmi import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"skmlmi {__version__}\n"


@pytest.mark.parametrize("command", [[], ["impute"], ["pool"], ["diagnose"]])
def test_help_documents_exit_codes_and_table_formats(capsys, command):
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    out = capsys.readouterr().out
    for fragment in ["exit status", "  1  ", "  2  ", "141", "SKMLMI_DEBUG", "--debug"]:
        assert fragment in out, fragment
    for name in ["csv", "tsv", "parquet", "feather", "json", 'pip install "skmlmi[parquet]"']:
        assert name in out, name


def test_quiet_silences_progress_and_warnings_but_not_errors(small_csv, tmp_path, capsys, recwarn):
    # PMM ignores the clusters: the imputer warns that the model of y is single-level
    argv = ["impute", str(small_csv), "--groups", "g", "--method", "y=pmm", "--m", "1", "--max-iter", "1"]
    assert main([*argv, "--out", str(tmp_path / "a.csv")]) == 0
    err = capsys.readouterr().err
    assert "skmlmi: warning: The imputation model of 'y' is single-level" in err  # one line, no file:line
    assert "[skmlmi] 1/1 chain-iterations (100%)" in err
    recwarn.clear()
    assert main([*argv, "--out", str(tmp_path / "b.csv"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    assert not [w for w in recwarn if "single-level" in str(w.message)]  # not even as a Python warning
    _usage_error(capsys, [*argv, "--out", str(tmp_path / "c.xlsx"), "--quiet"], "c.xlsx")


def test_closed_stdout_ends_quietly(tmp_path):
    """`skmlmi pool ... | head -1`: the reader goes away; no "Broken pipe", no traceback."""
    import subprocess
    from pathlib import Path

    import pandas as pd

    rng = np.random.default_rng(1)
    long = tmp_path / "long.csv"
    pd.DataFrame(
        {
            ".imp": np.repeat([1, 2], 20),
            ".id": np.tile(np.arange(20), 2),
            "x": rng.normal(size=40),
            "y": rng.normal(size=40),
        }
    ).to_csv(long, index=False)
    root = str(Path(__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(
        [sys.executable, "-m", "skmlmi.cli", "pool", str(long), "--formula", "y ~ x"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    process.stdout.close()  # closed before the command writes anything
    with process.stderr:
        err = process.stderr.read().decode()
    process.wait(timeout=120)
    assert process.returncode == 141, err
    assert err == ""


# --------------------------------------------------------------------------- hostile inputs


def _quiet(func, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return func(*args, **kwargs)


@pytest.mark.parametrize(
    ("argv_tail", "message"),
    [
        (["--method", "y=PredictiveMeanMatching(donors=3"], "settings must be key=value"),
        (["--method", "y=PredictiveMeanMatching(3)"], "as keywords"),
        (["--method", "y=PredictiveMeanMatching(bogus=3)"], "unexpected keyword"),
        (["--method", "y=PredictiveMeanMatching(donors=-3)"], "donors"),
        (["--role", "y:x=abc"], "must be an integer"),
    ],
)
def test_cli_bad_model_and_role_strings_are_usage_errors(tmp_path, six_clusters, capsys, argv_tail, message):
    data = tmp_path / "d.csv"
    six_clusters.to_csv(data, index=False)
    code = cli_main(["impute", str(data), "--out", str(tmp_path / "o.csv"), "--groups", "g", "--quiet", *argv_tail])
    assert code == 2
    assert message in capsys.readouterr().err


def test_cli_unreadable_inputs_and_outputs_are_usage_errors(tmp_path, six_clusters, capsys):
    empty, header, semicolon, data = (tmp_path / n for n in ("empty.csv", "header.csv", "semi.csv", "d.csv"))
    empty.write_text("")
    header.write_text("g,x,y\n")
    semicolon.write_text("g;x;y\n1;2;3\n")
    six_clusters.to_csv(data, index=False)
    cases = [
        (["impute", str(empty), "--out", str(tmp_path / "o.csv")], "is empty"),
        (["impute", str(header), "--out", str(tmp_path / "o.csv")], "no rows"),
        (["impute", str(semicolon), "--out", str(tmp_path / "o.csv")], "read as one column"),
        (["impute", str(data), "--out", str(tmp_path / "missing" / "o.csv"), "--quiet"], "does not exist"),
    ]
    for argv, message in cases:
        assert cli_main(argv) == 2
        assert message in capsys.readouterr().err


def test_cli_reads_tab_separated_files(tmp_path, six_clusters):
    data, out = tmp_path / "d.tsv", tmp_path / "o.csv"
    six_clusters.to_csv(data, index=False, sep="\t")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert (
            cli_main(
                ["impute", str(data), "--out", str(out), "--groups", "g", "--m", "1", "--max-iter", "1", "--quiet"]
            )
            == 0
        )
    long = pd.read_csv(out)
    assert list(long.columns) == [".imp", ".id", "g", "x", "y"] and long["y"].notna().all()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([1, "a", 2.5, "b"], r"mixes numbers and strings \(e\.g\. 1 and 'a'\).*pd\.to_numeric"),
        ([1.0, [2, 3], 4.0, 5.0], r"holds values of type list \(e\.g\. \[2, 3\]\)"),
    ],
)
def test_object_column_of_mixed_values_says_what_it_holds(six_clusters, values, message):
    data = six_clusters.head(4).assign(odd=pd.Series(values, dtype=object))
    data.loc[0, "y"] = np.nan
    with pytest.raises(TypeError, match=rf"Column 'odd' {message}"):
        _quiet(MultilevelIterativeImputer(n_imputations=1, max_iter=1).fit, data, groups="g")


@pytest.fixture
def long_csv(tmp_path, six_clusters):
    """A long-format file of two completed datasets, as `skmlmi impute` writes."""
    complete = six_clusters.fillna(0.0)
    long = pd.concat([complete.assign(**{".imp": i, ".id": np.arange(len(complete))}) for i in (1, 2)])
    path = tmp_path / "long.csv"
    long.to_csv(path, index=False)
    return path


FORMULA_ESCAPES = [
    "y ~ I(__import__('os').system('touch pwned.txt'))",
    "y ~ x + I(x.to_csv('pwned.txt'))",
    "y ~ np.save('pwned', x) + (1 | g)",
    "y ~ x + (1 + I(open('pwned.txt', 'w')) | g)",
    "y ~ C(x, Treatment(__import__('os').system('touch pwned.txt')))",
    "y ~ poly(x, exec('open(1, 2)'))",
    "y ~ x + (1 | g.__class__)",
    "y ~ {open('pwned.txt', 'w')}",
    "y ~ x.__init__.__globals__['sys'].modules['os'].system('touch pwned.txt')",
]


@pytest.mark.parametrize("formula", FORMULA_ESCAPES)
def test_cli_pool_formula_escape_attempts_are_usage_errors_creating_no_file(
    tmp_path, long_csv, capsys, monkeypatch, formula
):
    monkeypatch.chdir(tmp_path)
    before = _files(tmp_path)
    assert cli_main(["pool", str(long_csv), "--formula", formula]) == 2
    assert "--formula" in capsys.readouterr().err
    assert _files(tmp_path) == before and not list(tmp_path.glob("pwned*"))


def test_cli_pool_fits_formulas_with_transformed_terms(long_csv, capsys):
    assert (
        cli_main(["pool", str(long_csv), "--formula", 'y ~ I(x ** 2) + np.exp(x) + C(g, Treatment("3")) + scale(x)'])
        == 0
    )
    out = capsys.readouterr().out
    assert "I(x ** 2)" in out and "np.exp(x)" in out and "g0" in out and "scale(x)" in out


# --------------------------------------------------------------------------- several grouping factors
@pytest.fixture
def three_level_csv(tmp_path):
    """Pupils in classes in schools: class labels 0-3 repeat in every school (nested as lme4's school/class)."""
    rng = np.random.default_rng(3)
    school = np.repeat(np.arange(8), 24)
    klass = np.tile(np.repeat(np.arange(4), 6), 8)
    x = rng.normal(size=school.size)
    y = 1 + 0.5 * x + rng.normal(0, 0.5, 8)[school] + rng.normal(0, 0.5, (8, 4))[school, klass]
    data = pd.DataFrame({"school": school, "class": klass, "x": x, "y": y + rng.normal(size=school.size)})
    data.loc[rng.random(len(data)) < 0.2, "y"] = np.nan
    path = tmp_path / "d3.csv"
    data.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("structure", [None, "nested"])
def test_impute_then_pool_with_several_grouping_factors(three_level_csv, tmp_path, capsys, structure):
    out = tmp_path / "o.csv"
    argv = ["impute", str(three_level_csv), "--groups", "school,class", "--m", "2", "--max-iter", "2"]
    argv += ["--seed", "1", "--quiet", "--out", str(out)]
    assert main(argv + (["--cluster-structure", structure] if structure else [])) == 0
    long = pd.read_csv(out)
    assert long[".imp"].nunique() == 2 and long["y"].notna().all()
    assert main(["pool", str(out), "--formula", "y ~ x + (1 | school/class)", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "pooled over m = 2" in printed and "ICC|school" in printed and "ICC|class:school" in printed


def test_impute_crossed_structure_is_passed_to_the_imputer(three_level_csv, tmp_path, monkeypatch):
    seen = {}

    def record(self, data, groups=None, *args, **kwargs):
        seen.update(groups=groups, structure=self.cluster_structure)
        raise AssertionError("stop")

    monkeypatch.setattr(MultilevelIterativeImputer, "_fit", record)
    argv = ["impute", str(three_level_csv), "--groups", " school , class", "--cluster-structure", "crossed"]
    assert main([*argv, "--out", str(tmp_path / "o.csv")]) == 1
    assert seen == {"groups": ["school", "class"], "structure": "crossed"}
    # one column stays the single-factor call
    assert main(["impute", str(three_level_csv), "--groups", "school", "--out", str(tmp_path / "o.csv")]) == 1
    assert seen["groups"] == "school"


@pytest.mark.parametrize(
    ("argv_tail", "fragments"),
    [
        (["--groups", "school,klass"], ["--groups", "'klass'"]),
        (["--groups", "school,,class"], ["--groups", "separated by commas"]),
        (["--groups", "school,school"], ["--groups", "more than once"]),
        (["--groups", "school,class", "--method", "class=pmm"], ["'class' is a cluster column"]),
        (["--groups", "school,class", "--role", "class:x=1"], ["'class' is a cluster column"]),
        (["--groups", "school,class", "--role", "y:class=2"], ["cluster column may only be coded"]),
        (["--groups", "school", "--role", "y:class=-2"], ["only a cluster column (--groups school)"]),
        (["--groups", "school,class", "--cluster-structure", "tree"], ["--cluster-structure", "tree"]),
    ],
)
def test_several_groups_are_checked_before_imputing(
    three_level_csv, tmp_path, capsys, no_imputation, argv_tail, fragments
):
    argv = ["impute", str(three_level_csv), "--out", str(tmp_path / "o.csv"), *argv_tail]
    if "--cluster-structure" in argv_tail:  # argparse's own usage message (several lines), still exit 2
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and all(f in err for f in fragments), err
        return
    _usage_error(capsys, argv, *fragments)


def test_cli_pool_crossed_grouping_factors_fit(three_level_csv, tmp_path, capsys):
    complete = pd.read_csv(three_level_csv).fillna(0.0)
    long = pd.concat([complete.assign(**{".imp": i, ".id": np.arange(len(complete))}) for i in (1, 2)])
    long.to_csv(tmp_path / "long.csv", index=False)
    # class labels 0-3 read as their own factor: crossed with school
    assert cli_main(["pool", str(tmp_path / "long.csv"), "--formula", "y ~ x + (1 | school) + (1 | class)"]) == 0
    printed = capsys.readouterr().out
    assert "ICC|school" in printed and "ICC|class" in printed


def test_cli_pool_several_grouping_factors_with_binomial_is_a_usage_error(long_csv, capsys):
    _usage_error(
        capsys, ["pool", str(long_csv), "--formula", "y ~ 1 + (1 | g) + (1 | x)", "--family", "binomial"], "takes one"
    )


def test_diagnose_with_several_groups_writes_tables_per_factor(three_level_csv, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    report = tmp_path / "report"
    argv = ["diagnose", str(three_level_csv), "--groups", "school,class", "--cluster-structure", "nested"]
    assert main([*argv, "--out", str(report), "--quiet"]) == 0
    by_cluster = pd.read_csv(report / "missing_by_cluster.csv")
    assert set(by_cluster["factor"]) == {"school", "class"}
    assert (by_cluster["factor"] == "class").sum() == 32  # classes combined with their school
    assert list(pd.read_csv(report / "icc.csv", index_col=0).columns) == ["ICC|school", "ICC|class:school"]
    recommended = pd.read_csv(report / "recommended_methods.csv")
    assert recommended.set_index("column").loc["y", "method_name"] == "RandomEffectsPMM"
    assert "school: sporadic; class: sporadic" in capsys.readouterr().out
    _usage_error(
        capsys, ["diagnose", str(three_level_csv), "--groups", "school,klass", "--out", str(report)], "'klass'"
    )


def test_na_values_codes_mean_missing(tmp_path, capsys):
    # "-999 means missing" and "." too: those cells are imputed like empty ones, the count is reported, and a
    # number code matches by value (-999.0 too); without the option -999 is data.
    rng = np.random.default_rng(8)
    n = 120
    frame = pd.DataFrame(
        {
            "school": np.repeat(np.arange(12), 10),
            "x": rng.normal(size=n).round(3),
            "grade": rng.choice(["a", "b", "c"], n),
        }
    )
    frame["y"] = frame["x"] + rng.normal(size=n)
    frame.loc[::7, "y"] = -999
    frame.loc[3, "x"] = -999.0
    frame.loc[::9, "grade"] = "."
    source = tmp_path / "coded.csv"
    frame.to_csv(source, index=False)
    out = tmp_path / "long.csv"
    argv = ["impute", str(source), "--groups", "school", "--m", "2", "--max-iter", "2", "--seed", "1"]
    assert main([*argv, "--out", str(out), "--na-values", "-999", "."]) == 0
    err = capsys.readouterr().err
    coded = int((frame["y"] == -999).sum() + 1 + (frame["grade"] == ".").sum())
    assert f"--na-values: {coded} cell(s) set missing in ['x', 'grade', 'y']" in err
    long = pd.read_csv(out)
    assert not (long[["x", "y"]] == -999).any().any() and not (long["grade"] == ".").any()
    assert long[["x", "y", "grade"]].notna().all().all()
    assert main([*argv, "--out", str(tmp_path / "raw.csv"), "--quiet"]) == 0
    assert (pd.read_csv(tmp_path / "raw.csv")["y"] == -999).any()


def test_impute_says_which_model_each_column_gets_and_leaves_row_identifiers_out(tmp_path, capsys):
    # before the run: the model of each incomplete column (R's mice(data, maxit = 0)); a column with a different
    # value in every row (text, or one run of consecutive integers) is a row identifier: not a predictor,
    # copied to the output unchanged
    rng = np.random.default_rng(5)
    n = 60
    data = pd.DataFrame(
        {
            "record": np.arange(1001, 1001 + n),
            "code": [f"p{i:03d}" for i in rng.permutation(n)],
            "g": np.repeat(np.arange(6), 10),
            "x": rng.normal(size=n),
            "y": rng.normal(size=n),
        }
    )
    data.loc[rng.random(n) < 0.3, "y"] = np.nan
    path, out = tmp_path / "d.csv", tmp_path / "out.csv"
    data.to_csv(path, index=False)
    assert main(["impute", str(path), "--groups", "g", "--m", "2", "--max-iter", "2", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "'record', 'code' hold(s) a different value in every row" in err
    models = err[err.index("models:") :].splitlines()[1:3]
    assert models[0].split()[:4] == ["column", "kind", "model", "n_missing"]
    assert models[1].split()[:4] == ["y", "continuous", "RandomEffectsPMM()", str(data["y"].isna().sum())]
    assert "record" not in models[1] and "code" not in models[1]  # not among the predictors
    long = pd.read_csv(out)
    assert list(long.columns) == [".imp", ".id", *data.columns]
    for k in (1, 2):
        pd.testing.assert_series_equal(
            long.loc[long[".imp"] == k, "code"].reset_index(drop=True), data["code"], check_names=False
        )
    # named in --role, an identifier-like column is the user's predictor
    argv = ["impute", str(path), "--groups", "g", "--role", "record:y=1", "--m", "1", "--max-iter", "1"]
    assert main([*argv, "--out", str(tmp_path / "o2.csv")]) == 0
    err = capsys.readouterr().err
    assert "'code' hold(s)" in err and "record" in err[err.index("models:") :]


def test_impute_without_groups_says_it_is_single_level_and_names_a_likely_cluster_column(small_csv, tmp_path, capsys):
    data = pd.read_csv(small_csv).rename(columns={"g": "school_id"})
    data.to_csv(tmp_path / "s.csv", index=False)
    assert (
        main(["impute", str(tmp_path / "s.csv"), "--m", "1", "--max-iter", "1", "--out", str(tmp_path / "o.csv")]) == 0
    )
    err = capsys.readouterr().err
    assert "no --groups given: the imputation is single-level" in err
    assert "'school_id' (6 values) look(s) like a cluster identifier" in err


def test_impute_writes_the_logged_events_next_to_the_output_and_names_the_file(small_csv, tmp_path, capsys):
    # cluster 0 has no observed y: an event of the model, which the warning refers to and the file holds
    data = pd.read_csv(small_csv)
    data.loc[data["g"] == 0, "y"] = np.nan
    data.to_csv(tmp_path / "d.csv", index=False)
    out = tmp_path / "imputed.csv.gz"
    assert (
        main(["impute", str(tmp_path / "d.csv"), "--groups", "g", "--m", "2", "--max-iter", "1", "--out", str(out)])
        == 0
    )
    err = capsys.readouterr().err
    events_file = tmp_path / "imputed.events.csv"
    assert events_file.is_file() and f"written to {events_file}" in err
    events = pd.read_csv(events_file)
    assert {"column", "count"} <= set(events.columns) and events["column"].eq("y").any()
    assert "logged_events_" not in err and "(see the events file named at the end)" in err


def test_the_events_file_takes_the_output_name_without_its_format_suffixes(tmp_path):
    from skmlmi.cli import _write_events

    events = pd.DataFrame({"column": ["y"], "count": [1]})
    for out, expected in (
        ("run.2024.csv.gz", "run.2024.events.csv"),
        ("long.parquet", "long.events.csv"),
        ("plain", "plain.events.csv"),
    ):
        assert _write_events(events, str(tmp_path / out)) == str(tmp_path / expected)
        assert pd.read_csv(tmp_path / expected).equals(events)
    assert _write_events(events.iloc[:0], str(tmp_path / "none.csv")) is None


# --------------------------------------------------------------------------- output written as it is made
@pytest.fixture
def identified_csv(tmp_path):
    """40 rows in 5 clusters with a row identifier (copied, not modelled), a whole-number and a text column."""
    rng = np.random.default_rng(3)
    n = 40
    data = pd.DataFrame(
        {
            "record": [f"r{i:02d}" for i in rng.permutation(n)],
            "g": np.repeat(np.arange(5), 8),
            "x": rng.normal(size=n),
            "k": rng.integers(0, 5, n).astype(float),
            "y": rng.normal(size=n),
        }
    )
    data.loc[rng.random(n) < 0.25, "y"] = np.nan
    data.loc[rng.random(n) < 0.2, "k"] = np.nan
    path = tmp_path / "d.csv"
    data.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv.gz", ".parquet"])
def test_impute_writes_each_dataset_as_it_is_made_and_the_file_equals_the_in_memory_one(
    identified_csv, tmp_path, monkeypatch, suffix
):
    # CSV, TSV and Parquet are written one completed dataset at a time (never all m in memory): the same
    # file as the in-memory path writes, identifier columns and the incomplete data (.imp 0) included
    import skmlmi.cli
    from skmlmi.cli import _table_format

    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    argv = ["impute", str(identified_csv), "--groups", "g", "--m", "3", "--max-iter", "2", "--seed", "4", "--quiet"]
    argv += ["--include-original"]
    streamed, whole = tmp_path / f"streamed{suffix}", tmp_path / f"whole{suffix}"
    with monkeypatch.context() as patch:  # the streaming path never holds the m datasets
        patch.setattr(MultilevelIterativeImputer, "fit_transform_all", lambda *a, **k: pytest.fail("all m in memory"))
        assert main([*argv, "--out", str(streamed)]) == 0
    monkeypatch.setattr(skmlmi.cli, "_streams", lambda fmt, path: False)
    assert main([*argv, "--out", str(whole)]) == 0
    fmt, compression = _table_format(whole, "--out")
    a, b = fmt.read(streamed, compression), fmt.read(whole, compression)
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == [".imp", ".id", "record", "g", "x", "k", "y"]
    assert sorted(a[".imp"].unique()) == [0, 1, 2, 3] and a.loc[a[".imp"] > 0, ["k", "y"]].notna().all().all()
    if fmt.name == "csv":
        assert streamed.read_bytes() == whole.read_bytes()


def test_impute_streams_with_a_format_named_by_option_and_writes_whole_to_a_link(identified_csv, tmp_path):
    # --format names the format of a file whose suffix does not; a link (or device) is written through, whole
    out = tmp_path / "result.txt"
    argv = ["impute", str(identified_csv), "--groups", "g", "--m", "2", "--max-iter", "1", "--quiet"]
    assert main([*argv, "--out", str(out), "--format", "tsv"]) == 0
    long = pd.read_csv(out, sep="\t")
    assert len(long) == 2 * 40 and list(long.columns[:2]) == [".imp", ".id"]
    target, link = tmp_path / "target.csv", tmp_path / "link.csv"
    target.write_text("old\n")
    link.symlink_to(target)
    assert main([*argv, "--out", str(link)]) == 0
    assert link.is_symlink() and len(pd.read_csv(target)) == 2 * 40
