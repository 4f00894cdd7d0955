"""The command line."""

import numpy as np
import pytest

from skmlmi.cli import demo_popmis, main


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
    out = capsys.readouterr().out
    assert "PMM ignoring clusters" in out and "ICC|school" in out and "fmi" in out


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
    assert "iteration 2 of 2" in capsys.readouterr().err  # progress, chains x iterations
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
