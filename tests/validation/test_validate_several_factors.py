"""Three-level known-truth validation, reduced for CI: the class-level variance kept, and lost by a two-level model.

The full study is benchmarks/validate_several_factors.py (100 schools x 10 classes x 10 pupils,
m = 20, three-level, two-level and single-level imputation). Here: 40 schools x 5 classes x 8
pupils, REPS replications, m = 5, the three-level defaults and the two-level contrast only. The
criteria's bounds come from the benchmark (issue 13's validity matrix), widened for the few
replications:

* the three-level imputation meets a bound B when |mean paired difference| < B + t MC SE, t the
  1 - alpha / (2K) quantile of Student's t with R - 1 df; a method whose true bias is B exactly
  passes with probability at least 1 - alpha / K;
* the two-level contrast loses the class variance when its mean paired relative difference is
  below -(B + t MC SE): it is biased low beyond the bound, not only beyond zero;
* the slope's 95% coverage lies in the 1 - alpha / K binomial acceptance region over R replications.

K counts every assertion and alpha = 0.01, so a valid imputation fails with probability at most
1% on any machine; nothing here is a number measured on one machine.
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _validity import COVERAGE_ALPHA  # noqa: E402
from validate_several_factors import QUANTITIES, SLOPES, ampute, replication, simulate, summarise  # noqa: E402

REPS = 16
DESIGN = {"n_schools": 40, "n_classes": 5, "n_pupils": 8}
#: Assertions of the study: the three-level bias of every quantity, each slope's coverage, the two-level class loss.
N_TESTS = len(QUANTITIES) + len(SLOPES) + 1


@pytest.fixture(scope="module")
def table():
    rows = []
    for rep in range(REPS):
        rows += replication(**DESIGN, rep=rep, m=5, methods=("three-level", "two-level"))
    frame = pd.DataFrame(rows)
    widen = stats.t.ppf(1.0 - COVERAGE_ALPHA / (2.0 * N_TESTS), REPS - 1)
    return summarise(frame, widen=widen, n_tests=N_TESTS).set_index(["method", "quantity"])


def test_amputation_is_mar_in_two_patterns():
    data = simulate(**DESIGN, rng=np.random.default_rng(0))
    incomplete = ampute(data, np.random.default_rng(1))
    missing = incomplete[["x", "y"]].isna()
    assert not missing.all(axis=1).any()  # never both in one row
    # 30% each: binomial SD of a share of 1600 rows is about 0.011
    assert np.allclose(missing.mean(), 0.3, atol=0.05)
    # MAR on the other variable: x goes missing more often where y is high
    assert data.loc[missing["x"], "y"].mean() > data.loc[~missing["x"], "y"].mean()
    # c in whole classes, s in whole schools, about 30% of each (200 classes: binomial SD 0.03; 40 schools: 0.07)
    classes = incomplete.groupby(["school", "class"])["c"]
    assert (classes.count() % 8 == 0).all() and abs(classes.count().eq(0).mean() - 0.3) < 0.1
    schools = incomplete.groupby("school")["s"]
    assert (schools.count() % 40 == 0).all() and abs(schools.count().eq(0).mean() - 0.3) < 0.2


@pytest.mark.parametrize("quantity", [name for name, _, _ in QUANTITIES])
def test_three_level_imputation_keeps_every_quantity(table, quantity):
    row = table.loc[("three-level", quantity)]
    assert row["ok_bias"], row.to_dict()


@pytest.mark.parametrize("slope", list(SLOPES))
def test_three_level_imputation_covers_the_slopes(table, slope):
    row = table.loc[("three-level", slope)]
    assert row["ok_cov"], row.to_dict()


def test_two_level_imputation_loses_the_class_variance(table):
    row = table.loc[("two-level", "var class:school")]
    widen = stats.t.ppf(1.0 - COVERAGE_ALPHA / (2.0 * N_TESTS), REPS - 1)
    assert row["paired"] < -(row["bound"] + widen * row["paired_mcse"]), row.to_dict()
