"""Speed of imputation with several grouping factors: insteval (crossed) and a 1M-row three-level simulation.

Run: ``python benchmarks/bench_several_factors.py [--case insteval three-level] [--jobs 2] [--rows 1000000]``.
Each case runs in a fresh process (so that peak memory is its own) and prints wall time and peak
resident memory.

* insteval: 73,421 ratings by 2,972 students of 1,128 lecturers (crossed), ``y`` and ``service``
  30% missing (MAR, as benchmarks/validate_several_factors.py's ``ampute_rows``), m = 5,
  max_iter = 10, ``groups=["s", "d"]``.
* three-level: 1,000 schools x 50 classes x 20 pupils (1M rows at the default ``--rows``): y and
  four pupil-level covariates (each 20% missing, MCAR), a class-level and a school-level variable
  (10% of classes / schools missing), m = 5, max_iter = 10, ``groups=["school", "class"]`` nested.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd
from _common import machine, workers_peak_gib

from skmlmi import MultilevelIterativeImputer


def insteval_data() -> tuple[pd.DataFrame, list, str]:
    from validate_several_factors import ampute_rows

    from skmlmi.datasets import load_insteval

    data = ampute_rows(load_insteval(), np.random.default_rng(0), x="service", y="y")
    return data, ["s", "d"], "crossed"


def three_level_data(n_rows: int) -> tuple[pd.DataFrame, list, str]:
    rng = np.random.default_rng(0)
    pupils, classes = 20, 50
    n_schools = max(1, n_rows // (pupils * classes))
    n_units = n_schools * classes
    n = n_units * pupils
    school = np.repeat(np.arange(n_schools), classes * pupils)
    unit = np.repeat(np.arange(n_units), pupils)
    school_var = rng.normal(size=n_schools)
    class_var = 0.5 * school_var[np.arange(n_units) // classes] + rng.normal(size=n_units)
    columns = {"school": school, "class": unit % classes, "s": school_var[school], "c": class_var[unit]}
    for k in range(4):
        columns[f"x{k}"] = (
            0.3 * rng.normal(size=n_schools)[school] + 0.4 * rng.normal(size=n_units)[unit] + rng.normal(size=n)
        )
    columns["y"] = sum(0.3 * columns[f"x{k}"] for k in range(4)) + 0.2 * columns["c"] + rng.normal(size=n)
    data = pd.DataFrame(columns)
    for name in ("y", "x0", "x1", "x2", "x3"):
        data.loc[rng.random(n) < 0.2, name] = np.nan
    data.loc[(rng.random(n_units) < 0.1)[unit], "c"] = np.nan
    data.loc[(rng.random(n_schools) < 0.1)[school], "s"] = np.nan
    return data, ["school", "class"], "nested"


def one_case(case: str, jobs: int, n_rows: int) -> None:
    data, groups, structure = insteval_data() if case == "insteval" else three_level_data(n_rows)
    imputer = MultilevelIterativeImputer(
        n_imputations=5, max_iter=10, random_state=0, n_jobs=jobs, cluster_structure=structure
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imputer.fit_transform_all(data, groups=groups)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    models = ", ".join(f"{k}: {type(v).__name__}" for k, v in imputer.methods_.items())
    print(
        f"{case}: {len(data)} rows, m = 5, max_iter = 10, n_jobs = {jobs}: {seconds:.1f} s; peak memory "
        f"{peak:.2f} GiB in this process, {workers_peak_gib():.2f} GiB summed over its workers' peaks; {models}",
        flush=True,
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs="+", choices=["insteval", "three-level"], default=["insteval", "three-level"])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the three-level case")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child process: one case
    args = parser.parse_args(argv)
    if args.one:
        one_case(args.case[0], args.jobs, args.rows)
        return
    print(machine())
    for case in args.case:  # each in its own process: peak memory is the case's own
        command = [
            sys.executable,
            __file__,
            "--one",
            "--case",
            case,
            "--jobs",
            str(args.jobs),
            "--rows",
            str(args.rows),
        ]
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
