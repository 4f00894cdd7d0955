"""Known-truth validation of cross-classified imputation: ratings by students of lecturers.

Each replication simulates a complete cross-classified dataset, makes y and x 30% missing (MAR),
imputes it three ways and analyses every completed dataset with the model that generated y,
``LinearMixedModel("y ~ x + (1 | a) + (1 | b)")`` (REML, as lme4 fits crossed intercepts):

* ``crossed``: the package defaults with both factors,
  ``MultilevelIterativeImputer(cluster_structure="crossed").fit_transform_all(data, groups=["a", "b"])``;
* ``one-factor``: the defaults clustered by a only (the b column dropped), as R's 2l methods with
  one cluster variable would;
* ``single-level``: the defaults without groups (both columns dropped);

and the complete data are analysed too. The two contrasts are expected to fail: the factor the
imputation model ignores loses its variance in the imputed values.

Data-generating model
---------------------
A units a (students, default 300) and B units b (lecturers, default 60), crossed and sparse: each
unit of a meets ``met`` (10) units of b drawn at random, with ``per_cell`` (2) rows per meeting
(N = 6000), so that each unit of b meets about 50 units of a:

* x_iab = p_a + q_b + w_iab, p ~ N(0, 0.15), q ~ N(0, 0.10), w ~ N(0, 0.75);
* y_iab = 0.5 x_iab + u_a + v_b + e_iab, u ~ N(0, 0.15), v ~ N(0, 0.10), e ~ N(0, 0.75).

Truth of the analysis model: slope of x 0.5, variances 0.15 (a), 0.10 (b), 0.75 (residual), ICCs
0.15 and 0.10 (each factor's variance over the sum of all three, as mitml). As in the three-level
study (benchmarks/validate_several_factors.py), x has the same variance shares as y's residual on
purpose, so that the default imputation model of x (a random intercept per factor, y as a
predictor) is exactly congenial.

Missingness, criteria and pooling: as benchmarks/validate_several_factors.py (x and y 30% missing
in two MAR patterns, never both in one row; paired biases against the complete-data analysis of
the same replication with bounds of 5% of the slope, 10% of a variance and 0.02 for an ICC; 95%
coverage in the 99% binomial acceptance region; MC SE at most a third of each bound).

Run
---
``python benchmarks/validate_crossed.py [--a 300 --b 60 --met 10 --per-cell 2] [--reps 100] [--m 20]
[--max-iter 10] [--jobs 2] [--methods crossed one-factor single-level] [--rows rows.csv]``.
Replications are seeded by ``SeedSequence([seed, a, b, met, per_cell, replication])``: results do
not depend on ``--jobs``. ``--summarise-only --rows rows.csv`` recomputes the table from saved rows.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits
from validate_several_factors import (
    add_options,
    ampute_rows,
    analyse,
    compare_methods,
    impute_with,
    report,
    run,
    summarise,
)

FORMULA = "y ~ x + (1 | a) + (1 | b)"
SLOPES = {"x": 0.5}
#: Variance shares of the factors a and b and of the residual (of y given x, and of x).
SHARES = {"a": 0.15, "b": 0.10, "residual": 0.75}
METHODS = ("crossed", "one-factor", "single-level")
QUANTITIES = (
    ("x", None, SLOPES["x"]),
    ("var a", "Intercept~~Intercept|a", SHARES["a"]),
    ("var b", "Intercept~~Intercept|b", SHARES["b"]),
    ("var residual", "Residual~~Residual", SHARES["residual"]),
    ("ICC a", "ICC|a", SHARES["a"]),
    ("ICC b", "ICC|b", SHARES["b"]),
)


def simulate(n_a: int, n_b: int, met: int, per_cell: int, rng: np.random.Generator) -> pd.DataFrame:
    """One complete dataset of the crossed design (see the module docstring)."""
    a = np.repeat(np.arange(n_a), met * per_cell)
    # each unit of a meets `met` distinct units of b: the first `met` of a random permutation per unit
    b = np.repeat(np.argsort(rng.random((n_a, n_b)), axis=1)[:, :met].ravel(), per_cell)

    def crossed() -> np.ndarray:
        return (
            rng.normal(0.0, np.sqrt(SHARES["a"]), n_a)[a]
            + rng.normal(0.0, np.sqrt(SHARES["b"]), n_b)[b]
            + rng.normal(0.0, np.sqrt(SHARES["residual"]), a.size)
        )

    x = crossed()
    y = SLOPES["x"] * x + crossed()
    return pd.DataFrame({"a": a, "b": b, "y": y, "x": x})


def impute(data: pd.DataFrame, method: str, m: int, max_iter: int, random_state: int) -> list[pd.DataFrame]:
    """m completed datasets of one method (crossed, one-factor by a, single-level)."""
    use = {"crossed": "all", "one-factor": "first", "single-level": "none"}[method]
    return impute_with(data, ["a", "b"], "crossed", use, m, max_iter, random_state)


def replication(
    n_a: int,
    n_b: int,
    met: int,
    per_cell: int,
    rep: int,
    m: int = 20,
    max_iter: int = 10,
    seed: int = 2024,
    methods=METHODS,
) -> list[dict]:
    """One replication: rows (method x quantity) with the estimate, its SE and coverage (slope), and seconds."""
    with threadpool_limits(1):  # one BLAS thread: results do not depend on the machine's thread count
        sequence = np.random.SeedSequence([seed, n_a, n_b, met, per_cell, rep])
        data_seed, amputation_seed, imputation_seed = sequence.spawn(3)
        complete = simulate(n_a, n_b, met, per_cell, np.random.default_rng(data_seed))
        incomplete = ampute_rows(complete, np.random.default_rng(amputation_seed))
        design = {"a": n_a, "b": n_b, "met": met, "per_cell": per_cell, "rep": rep}
        random_state = int(imputation_seed.generate_state(1)[0] % (2**31 - 1))
        return compare_methods(
            complete, incomplete, design, methods, impute, partial(analyse, formula=FORMULA, slopes=SLOPES), QUANTITIES,
            m, max_iter, random_state,
        )  # fmt: skip


def _replicate(n_a, n_b, met, per_cell, m, max_iter, seed, methods, rep):
    return replication(n_a, n_b, met, per_cell, rep, m, max_iter, seed, methods)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=int, default=300, help="units of the factor a")
    parser.add_argument("--b", type=int, default=60, help="units of the factor b")
    parser.add_argument("--met", type=int, default=10, help="units of b each unit of a meets")
    parser.add_argument("--per-cell", type=int, default=2, help="rows per meeting")
    add_options(parser, METHODS)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    replicate = partial(
        _replicate, args.a, args.b, args.met, args.per_cell, args.m, args.max_iter, args.seed, tuple(args.methods)
    )
    rows = pd.read_csv(args.rows) if args.summarise_only else run(replicate, args.reps, args.jobs, args.rows)
    wall = time.perf_counter() - start
    first = rows.iloc[0]
    n_rows = int(first["a"] * first["met"] * first["per_cell"])
    design = (
        f"{first['a']} units of a x {first['b']} of b, each unit of a meeting {first['met']} of b with "
        f"{first['per_cell']} rows per meeting (N = {n_rows})"
    )
    command = sys.argv[1:] if argv is None else list(argv)
    table = summarise(rows, quantities=QUANTITIES)
    report(rows, table, "validate_crossed.py", command, design, wall, args.jobs)


if __name__ == "__main__":
    main()
