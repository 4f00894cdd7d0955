"""skmlmi._progress: the progress bar over chain-iterations, and its lines when there is no bar."""

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from joblib import parallel_backend

import skmlmi.imputer as imputer_module
from skmlmi import MultilevelIterativeImputer
from skmlmi._progress import Progress

LINE = re.compile(r"\[skmlmi\] (\d+)/(\d+) chain-iterations \((\d+)%\), \d+\.\d s elapsed(, about \d+\.\d s left)?$")


def _lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("[skmlmi]") and "chain-iterations" in line]


def test_without_a_bar_a_line_at_every_quarter_and_one_line_for_a_jump_over_several(capsys):
    progress = Progress(40, enabled=True, bar=False)
    for _ in range(40):
        progress.update(1)
    progress.close()
    lines = _lines(capsys.readouterr().err)
    assert [int(LINE.match(line).group(1)) for line in lines] == [10, 20, 30, 40]
    assert lines[-1].endswith("elapsed")  # no time left at the end
    progress = Progress(40, enabled=True, bar=False)
    progress.update(35)  # a finished chain of 35 iterations crosses three quarters
    progress.update(5)
    assert [int(LINE.match(line).group(1)) for line in _lines(capsys.readouterr().err)] == [35, 40]


def test_disabled_progress_prints_nothing(capsys):
    progress = Progress(10, enabled=False, bar=True)
    progress.update(10)
    progress.close()
    assert capsys.readouterr().err == ""


def test_the_bar_counts_every_chain_iteration(capsys):
    pytest.importorskip("tqdm")
    progress = Progress(12, enabled=True, bar=True)
    for _ in range(12):
        progress.update(1)
    progress.close()
    assert "12/12" in capsys.readouterr().err


def _data(seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(20), 10)
    x = rng.normal(size=200) + rng.normal(size=20)[g]
    y = x + rng.normal(size=20)[g] + rng.normal(size=200)
    x[rng.random(200) < 0.3] = np.nan
    return pd.DataFrame({"y": y, "x": x, "g": g})


@pytest.mark.parametrize("in_process", [True, False])
def test_verbose_imputer_reports_chains_times_iterations_in_process_and_with_parallel_chains(
    capsys, monkeypatch, in_process
):
    # m = 3 chains of 4 iterations: 12 chain-iterations, whether the chains run here (one update per
    # iteration) or through joblib (one update of 4 per finished chain); a quiet imputer prints nothing.
    if not in_process:
        monkeypatch.setattr(imputer_module, "IN_PROCESS_WORK", 0)
    with warnings.catch_warnings(), parallel_backend("threading" if not in_process else "loky"):
        warnings.simplefilter("ignore")
        MultilevelIterativeImputer(n_imputations=3, max_iter=4, random_state=0, verbose=1, n_jobs=2).fit(
            _data(), groups="g"
        )
        lines = _lines(capsys.readouterr().err)
        assert lines and all(LINE.match(line) for line in lines)
        assert LINE.match(lines[-1]).group(1, 2, 3) == ("12", "12", "100")
        MultilevelIterativeImputer(n_imputations=3, max_iter=4, random_state=0, n_jobs=2).fit(_data(), groups="g")
    assert capsys.readouterr().err == ""
