"""The command line."""

import pytest

from skmlmi.cli import demo_popmis, main


def test_demo_popmis_shows_clustering_matters():
    table = demo_popmis(m=3, max_iter=3, seed=1)
    icc = table.loc["icc"]
    # complete cases ~0.50; PMM ignoring schools loses about half of it (R: 0.20 +- 0.02)
    assert icc["PMM ignoring clusters"] < icc["complete cases"] - 0.15
    assert abs(icc["PMM with school fixed effects"] - icc["complete cases"]) < 0.1


def test_cli_demo_prints_the_table(capsys):
    assert main(["demo", "popmis", "--m", "2", "--max-iter", "2"]) == 0
    out = capsys.readouterr().out
    assert "PMM ignoring clusters" in out and "icc" in out


def test_cli_help_and_unknown_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
