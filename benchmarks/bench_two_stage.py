"""Two-stage models: speed on popmis and IMPACT, and the known-truth coverage simulation.

Run: python benchmarks/bench_two_stage.py [--reps 1000] [--skip-impact] [--skip-coverage]

1. popmis (2000 pupils, 100 schools), ``popular`` by TwoStageNormal / TwoStagePMM with
   ``sex`` (and, beside micemd's setting, with the school-level ``texp`` in the
   meta-regression, which micemd cannot do), m = 5, max_iter = 5, n_jobs = 1. micemd is
   not installed here (CRAN unreachable); its timings on the same kind of machine are
   quoted from the issue: 2l.2stage.norm 85 s, 2l.2stage.pmm 648 s.
2. IMPACT (11,022 rows, 15 studies), the incomplete data of
   :func:`skmlmi.datasets.impact.load_impact_incomplete` (seed 1) with the validated set-up
   of ``benchmarks/validate_impact.py``: ct and pupil by RandomEffectsCategorical (with the
   mort x predictor interactions), hypots by TwoStageLogistic, m = 20, max_iter = 10.
3. Coverage: x_ij ~ N(mu_j, 1), y = 1 + 0.5 x + v_j + e in 30 clusters of 40; x
   systematically missing in 6 random clusters and MAR on y elsewhere; TwoStageNormal
   imputes x from y (m = 5). Estimands: E[x] = 0 (mean of cluster means, df J - 1) and the
   within-cluster slope 0.5 (df n - J - 1). Coverage of the pooled 95 % intervals must lie
   in the 99 % binomial acceptance region around 0.95 for the number of replications.

Both wall-clock (best of 3) and CPU seconds are printed: on a shared machine the CPU time
is the fairer figure.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from _common import machine
from _impact import incomplete_data, make_imputer
from scipy import stats

from skmlmi import MultilevelIterativeImputer
from skmlmi.conditional import DrawContext
from skmlmi.conditional.two_stage import TwoStageNormal, TwoStagePMM
from skmlmi.datasets import load_popmis
from skmlmi.pooling import pool_scalar

MICEMD_SECONDS = {"TwoStageNormal": 85.0, "TwoStagePMM": 648.0}


def timed(fn, repeat: int = 3) -> tuple[float, float]:
    """Best wall-clock and best CPU seconds of ``repeat`` runs."""
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus)


def popmis_rows() -> list[dict]:
    rows = []
    for columns in (["school", "popular", "sex"], ["school", "popular", "sex", "texp"]):
        data = load_popmis()[columns]
        for model in (TwoStageNormal(), TwoStagePMM()):
            imp = MultilevelIterativeImputer(
                methods={"popular": model}, n_imputations=5, max_iter=5, random_state=1, n_jobs=1
            )
            wall, cpu = timed(lambda imp=imp, data=data: imp.fit_transform_all(data, groups="school"))
            name = type(model).__name__
            rows.append(
                {
                    "data": "popmis " + "+".join(columns[2:]),
                    "model": name,
                    "wall s": wall,
                    "cpu s": cpu,
                    "micemd s": MICEMD_SECONDS[name] if "texp" not in columns else np.nan,
                }
            )
    return rows


def impact_row() -> dict:
    """The validated IMPACT set-up (benchmarks/_impact.py, multilevel, mort interactions), m = 20, max_iter = 10."""
    data, _, interactions = incomplete_data(seed=1)
    imp = make_imputer(data.columns, "multilevel", m=20, max_iter=10, seed=1, interactions=interactions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wall, cpu = timed(lambda: imp.fit_transform_all(data, groups="name"), repeat=1)
    return {
        "data": "IMPACT m=20 max_iter=10",
        "model": "REcat(ct, pupil) + TwoStageLogistic(hypots)",
        "wall s": wall,
        "cpu s": cpu,
        "micemd s": np.nan,
    }


def coverage(reps: int, m: int = 5, seed: int = 2024) -> pd.DataFrame:
    truth = np.array([0.0, 0.5])
    hits, estimates_all = np.zeros(2), []
    J, n = 30, 40
    for child in np.random.SeedSequence(seed).spawn(reps):
        rng = np.random.default_rng(child)
        groups = np.repeat(np.arange(J), n)
        x = rng.normal(size=J)[groups] + rng.normal(size=J * n)
        y = 1 + 0.5 * x + rng.normal(0, 0.7, J)[groups] + rng.normal(size=J * n)
        systematic = rng.choice(J, 6, replace=False)
        p = 1 / (1 + np.exp(1.0 - 0.8 * (y - y.mean())))
        observed = ~((rng.random(J * n) < p) | np.isin(groups, systematic))
        q_all, u_all = [], []
        context = DrawContext(target="x", n_clusters=J, predictor_names=("y",))
        for _ in range(m):
            draw, _ = TwoStageNormal().draw(
                np.where(observed, x, 0.0), observed, y[:, None], np.array([1]), groups, rng, None, context
            )
            xi = x.copy()
            xi[~observed] = draw.sample(y[~observed, None], groups[~observed], rng)
            counts = np.bincount(groups, None, J)
            cm = np.bincount(groups, xi, J) / counts
            xc, yc = xi - cm[groups], y - (np.bincount(groups, y, J) / counts)[groups]
            slope = xc @ yc / (xc @ xc)
            s2 = ((yc - slope * xc) ** 2).sum() / (len(y) - J - 1)
            q_all.append([cm.mean(), slope])
            u_all.append([cm.var(ddof=1) / J, s2 / (xc @ xc)])
        q_all, u_all = np.array(q_all), np.array(u_all)
        dfs = [J - 1, len(y) - J - 1]
        for k in range(2):
            row = pool_scalar(q_all[:, k], u_all[:, k], dfcom=dfs[k])
            hits[k] += row["conf_low"] <= truth[k] <= row["conf_high"]
        estimates_all.append(q_all.mean(axis=0))
    low, high = stats.binom.ppf([0.005, 0.995], reps, 0.95) / reps
    est = np.array(estimates_all)
    return pd.DataFrame(
        {
            "estimand": ["E[x]", "within slope"],
            "truth": truth,
            "mean estimate": est.mean(axis=0),
            "coverage": hits / reps,
            "region low": low,
            "region high": high,
            "inside": (hits / reps >= low) & (hits / reps <= high),
        }
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=1000)
    parser.add_argument("--skip-impact", action="store_true")
    parser.add_argument("--skip-coverage", action="store_true")
    args = parser.parse_args(argv)
    print(machine())
    print("command: python benchmarks/bench_two_stage.py", " ".join(argv or []))
    rows = popmis_rows()
    if not args.skip_impact:
        rows.append(impact_row())
    print(pd.DataFrame(rows).round(3).to_string(index=False))
    if not args.skip_coverage:
        start = time.perf_counter()
        table = coverage(args.reps)
        print(f"\ncoverage, {args.reps} replications, m = 5 ({time.perf_counter() - start:.0f} s)")
        print(table.round(4).to_string(index=False))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
