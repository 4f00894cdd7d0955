"""Cross-classified known-truth validation, reduced for CI: both variances kept, one lost by one-factor imputation.

The full study is benchmarks/validate_crossed.py (300 x 60 sparse crossed factors, m = 20, crossed,
one-factor and single-level imputation). Here: 120 units of a meeting 8 of 30 units of b with 2 rows
per meeting (N = 1920), REPS replications, m = 5, the crossed defaults and the one-factor contrast.
Bounds as the three-level reduced test (tests/validation/test_validate_several_factors.py): a bound B
passes when |mean paired difference| < B + t MC SE, t the 1 - alpha / (2K) quantile of Student's t
with R - 1 df, K the number of assertions, alpha = 0.01.
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _validity import COVERAGE_ALPHA  # noqa: E402
from validate_crossed import QUANTITIES, replication, simulate  # noqa: E402
from validate_several_factors import summarise  # noqa: E402

REPS = 12
DESIGN = {"n_a": 120, "n_b": 30, "met": 8, "per_cell": 2}
#: Assertions: the crossed bias of every quantity, the slope's coverage, the one-factor loss of b's variance.
N_TESTS = len(QUANTITIES) + 2
WIDEN = stats.t.ppf(1.0 - COVERAGE_ALPHA / (2.0 * N_TESTS), REPS - 1)


@pytest.fixture(scope="module")
def table():
    rows = []
    for rep in range(REPS):
        rows += replication(**DESIGN, rep=rep, m=5, methods=("crossed", "one-factor"))
    return summarise(pd.DataFrame(rows), widen=WIDEN, n_tests=N_TESTS, quantities=QUANTITIES).set_index(
        ["method", "quantity"]
    )


def test_the_design_is_sparse_and_crossed():
    data = simulate(**DESIGN, rng=np.random.default_rng(0))
    meetings = data.groupby("a")["b"].nunique()
    assert (meetings == DESIGN["met"]).all()  # each unit of a meets `met` distinct units of b
    assert data.groupby("b")["a"].nunique().min() > 1  # and each unit of b several units of a


@pytest.mark.parametrize("quantity", [name for name, _, _ in QUANTITIES])
def test_crossed_imputation_keeps_every_quantity(table, quantity):
    row = table.loc[("crossed", quantity)]
    assert row["ok_bias"], row.to_dict()


def test_crossed_imputation_covers_the_slope(table):
    row = table.loc[("crossed", "x")]
    assert row["ok_cov"], row.to_dict()


def test_one_factor_imputation_loses_the_other_factors_variance(table):
    row = table.loc[("one-factor", "var b")]
    assert row["paired"] < -(row["bound"] + WIDEN * row["paired_mcse"]), row.to_dict()
