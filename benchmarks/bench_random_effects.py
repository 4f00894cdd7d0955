"""Speed of the random-effects models end to end, beside R's mice in the same run.

Run: python benchmarks/bench_random_effects.py [--big]
- popmis: popular imputed with a random slope of sex and texp fixed, m = 5, max_iter = 5,
  n_jobs = 1, skmlmi RandomEffectsNormal / RandomEffectsPMM against R mice 2l.pan, 2l.lmer
  (and 2l.norm) when Rscript with mice and pan is installed
  (apt-get install -y --no-install-recommends r-base-core r-cran-mice r-cran-pan r-cran-lme4).
- --big: synthetic data, 10,000 clusters, 5 incomplete continuous variables (30% missing
  each), m = 5, max_iter = 10, n_jobs = 2, at 100k, 300k and 1M rows: wall time and peak memory.
- --floor: the memory-bandwidth floor of the 1M-row problem and of 100k rows x 20 variables
  (1,000 clusters), and each problem's time against it. The floor (the speed issue's formula) is
  m x max_iter x (sum over targets of rows x design columns x 8 bytes x 2 passes), divided by the
  single-thread copy bandwidth measured in the same run (a numpy copy of a 1 GiB array) and by
  min(n_jobs, cores); design columns are a target's predictors and the target itself.
- --huge: the same at 10M rows in 100,000 clusters, the m completed datasets written to one
  long Parquet file as they are made (``fit_write``; needs pyarrow), so that they are never all
  in memory: wall time (writing included) and peak memory (main process + workers).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _common import best_of, machine, run_r, workers_peak_gib

from skmlmi import MultilevelIterativeImputer
from skmlmi.conditional import RandomEffectsNormal, RandomEffectsPMM
from skmlmi.datasets import load_popmis

R_TEMPLATE = """
suppressMessages({{library(mice); library(lme4)}})
d <- popmis[, c("school", "popular", "sex", "texp")]
pred <- make.predictorMatrix(d); pred[,] <- 0; pred["popular", ] <- c(-2, 0, 2, 1)
mt <- make.method(d); mt[] <- ""; mt["popular"] <- "{method}"
t <- min(replicate(3, system.time(mice(d, m = 5, maxit = 5, method = mt, predictorMatrix = pred,
                                        printFlag = FALSE, seed = 1))[["elapsed"]]))
cat(t, "\\n")
"""


def popmis_seconds(model) -> float:
    data = load_popmis()[["school", "popular", "sex", "texp"]]
    imp = MultilevelIterativeImputer(
        methods={"popular": model},
        predictor_matrix={"sex": {"popular": 2}},
        n_imputations=5,
        max_iter=5,
        random_state=1,
        n_jobs=1,
    )
    return best_of(lambda: imp.fit_transform_all(data, groups="school"))


def synthetic(n_rows: int, cluster_size: int = 100, p: int = 5, share: float = 0.3, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_clusters = n_rows // cluster_size
    cluster = np.repeat(np.arange(n_clusters), cluster_size)
    effects = rng.normal(size=(n_clusters, p))
    common = rng.normal(size=(n_rows, 1))
    X = effects[cluster] + common + rng.normal(size=(n_rows, p))
    X[rng.random((n_rows, p)) < share] = np.nan
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(p)])
    frame.insert(0, "cluster", cluster)
    return frame


def copy_bandwidth(gib: float = 1.0, repeats: int = 3) -> float:
    """Single-thread copy bandwidth (bytes copied per second): best of ``repeats`` copies of a ``gib`` GiB array."""
    source = np.ones(int(gib * 2**30) // 8)
    target = np.empty_like(source)
    np.copyto(target, source)  # touch the pages first: the copies time memory, not page faults
    best = best_of(lambda: np.copyto(target, source), repeats)
    return source.nbytes / best


def floor_seconds(n_rows: int, p: int, m: int, max_iter: int, n_jobs: int, bandwidth: float) -> float:
    """m x max_iter x (p targets x rows x p design columns x 8 bytes x 2 passes) / bandwidth / min(n_jobs, cores)."""
    return m * max_iter * p * n_rows * p * 8 * 2 / bandwidth / min(n_jobs, os.cpu_count() or 1)


def _big_one(n_rows: int, n_clusters: int = 10_000, write: str | None = None, p: int = 5) -> None:
    """Run in a child process so that the peak memory is this problem's alone."""
    data = synthetic(n_rows, cluster_size=n_rows // n_clusters if n_rows >= 10 * n_clusters else 10, p=p)
    imp = MultilevelIterativeImputer(
        methods=RandomEffectsNormal(), n_imputations=5, max_iter=10, random_state=1, n_jobs=2
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if write is None:
            imp.fit(data, groups="cluster")
        else:
            imp.fit_write(data, write, groups="cluster")
    seconds = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"{seconds:.2f} {own:.2f} {workers_peak_gib():.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--big", action="store_true", help="also the 100k / 300k / 1M-row problems")
    parser.add_argument("--huge", action="store_true", help="also 10M rows in 100,000 clusters, written to Parquet")
    parser.add_argument("--floor", action="store_true", help="also the memory-bandwidth floor and time against it")
    parser.add_argument("--big-one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--variables", type=int, default=5, help=argparse.SUPPRESS)
    parser.add_argument("--clusters", type=int, default=10_000, help=argparse.SUPPRESS)
    parser.add_argument("--write", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.big_one:
        _big_one(args.big_one, args.clusters, args.write, args.variables)
        return
    warnings.simplefilter("ignore")
    print(machine())
    print("\n| popmis, m=5, maxit=5, n_jobs=1 | skmlmi (s) | R mice (s) | R / skmlmi |\n| --- | --- | --- | --- |")
    rows = [
        ("RandomEffectsNormal vs 2l.pan", RandomEffectsNormal(), "2l.pan"),
        ("RandomEffectsNormal vs 2l.lmer", RandomEffectsNormal(), "2l.lmer"),
        ("RandomEffectsNormal(heteroscedastic) vs 2l.norm", RandomEffectsNormal(heteroscedastic=True), "2l.norm"),
        ("RandomEffectsPMM vs 2l.pan", RandomEffectsPMM(), "2l.pan"),
    ]
    r_cache = {}
    for label, model, method in rows:
        ours = popmis_seconds(model)
        if method not in r_cache:
            r_cache[method] = run_r(R_TEMPLATE.format(method=method))
        r = r_cache[method]
        ratio = f"{r / ours:.1f}x" if r else "R not installed"
        print(f"| {label} | {ours:.3f} | {r if r else '-'} | {ratio} |")
    if args.big:
        print(
            "\n| rows | clusters | 5 incomplete vars, m=5, max_iter=10, n_jobs=2: wall (s) | peak memory, "
            "main + all workers (GB) |\n| --- | --- | --- | --- |"
        )
        for n in (100_000, 300_000, 1_000_000):
            out = subprocess.run(
                [sys.executable, __file__, "--big-one", str(n)], capture_output=True, text=True, check=True
            ).stdout.split()
            seconds, own, child = map(float, out)
            print(f"| {n:,} | 10,000 | {seconds:.1f} | {own:.2f} + {child:.2f} = {own + child:.2f} |")
    if args.floor:
        problems = ((1_000_000, 10_000, 5), (100_000, 1_000, 20))
        runs, load = [], os.getloadavg()[0]
        for n, clusters, p in problems:
            command = [sys.executable, __file__, "--big-one", str(n), "--clusters", str(clusters)]
            command += ["--variables", str(p)]
            runs.append(subprocess.run(command, capture_output=True, text=True, check=True).stdout.split())
        # measured after the runs: a child started after this process held 2 GiB would report that peak as its own
        bandwidth = copy_bandwidth()
        print(
            f"\nSingle-thread copy bandwidth (numpy copy of 1 GiB): {bandwidth / 1e9:.2f} GB/s; load before the runs "
            f"{load:.2f}\n\n| problem (m=5, max_iter=10, n_jobs=2) | wall (s) | floor (s) | wall / floor "
            "| peak memory, main + workers (GB) |\n| --- | --- | --- | --- | --- |"
        )
        for (n, clusters, p), run in zip(problems, runs, strict=True):
            seconds, own, child = map(float, run)
            floor = floor_seconds(n, p, 5, 10, 2, bandwidth)
            print(
                f"| {n:,} rows x {clusters:,} clusters x {p} variables | {seconds:.2f} | {floor:.2f} | "
                f"{seconds / floor:.1f}x | {own:.2f} + {child:.2f} = {own + child:.2f} |"
            )
    if args.huge:
        with tempfile.TemporaryDirectory() as folder:
            path = str(Path(folder, "imputed.parquet"))
            command = [sys.executable, __file__, "--big-one", "10000000", "--clusters", "100000", "--write", path]
            seconds, own, child = map(
                float, subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
            )
            size = Path(path).stat().st_size / 1024**3
        print(
            f"\n10,000,000 rows, 100,000 clusters, m = 5 written to Parquet ({size:.2f} GiB): {seconds:.1f} s, peak "
            f"memory {own:.2f} + {child:.2f} = {own + child:.2f} GiB (main + workers)"
        )


if __name__ == "__main__":
    main()
