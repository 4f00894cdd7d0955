"""The command line."""

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
