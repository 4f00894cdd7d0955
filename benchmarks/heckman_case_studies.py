"""The tutorial's MNAR case studies with HeckmanSelection, against the MAR answer.

* obesity (R package miceheckman): Weight is missing not at random (790 of 2111, all
  of cluster 5); Time is the exclusion restriction (-3), Cluster the cluster (-2); the
  other incomplete columns (Age, Height, FAVC) get the engine's default models.
* hiv (R package GJRM): HIV status is missing for the 1318 of 6416 people who refused
  the test. The exclusion restriction is each interviewer's effect on consent, from a
  random-intercept logistic model of hivconsent on region and language with interviewer
  as the random effect (:func:`skmlmi.datasets.heckman.interviewer_effect`); region is
  the cluster; age, marital status, condom use and smoking enter both equations.

For each, the script prints the per-cluster estimates of rho (first chain's final draw:
ML estimate, SE of atanh rho, drawn rho) and the pooled mean weight / HIV prevalence
(average over the m completed datasets, with Rubin's total SE of a mean) under
HeckmanSelection and under the MAR model (RandomEffectsNormal / RandomEffectsLogistic
with the exclusion restriction as an ordinary predictor), plus the end-to-end time of
obesity with m = 5, max_iter = 5 (target: under 5 s).

Run: ``python benchmarks/heckman_case_studies.py [--m 10] [--iter 5]``
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

from skmlmi import MultilevelIterativeImputer
from skmlmi.conditional import RandomEffectsLogistic, RandomEffectsNormal
from skmlmi.conditional.heckman import HeckmanSelection
from skmlmi.datasets.heckman import interviewer_effect, load_hiv, load_obesity
from skmlmi.pooling import pool_scalar

try:
    from _common import machine
except ImportError:  # run from another directory

    def machine() -> str:
        return ""


def pooled_mean(sets, column: str) -> tuple[float, float]:
    """Rubin's rules for the mean of a column: pooled estimate and total standard error."""
    values = [np.asarray(s[column], dtype=float) for s in sets]
    pooled = pool_scalar([v.mean() for v in values], [v.var(ddof=1) / len(v) for v in values])
    return float(pooled["estimate"]), float(pooled["std_error"])


def heckman_table(imp, column: str) -> pd.DataFrame:
    draw = imp.final_draws_[0][imp.visit_sequence_.index(column)]
    return getattr(draw, "inner", draw).cluster_table()


def run(data, column, groups, heckman_matrix, mar_matrix, mar_model, m, max_iter, seed, heckman=None):
    out = {}
    for label, model, matrix in (
        ("Heckman (MNAR)", heckman or HeckmanSelection(), heckman_matrix),
        ("MAR", mar_model, mar_matrix),
    ):
        imp = MultilevelIterativeImputer(
            methods={column: model}, predictor_matrix=matrix, n_imputations=m, max_iter=max_iter, random_state=seed
        )
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sets = imp.fit_transform_all(data, groups=groups)
        elapsed = time.perf_counter() - start
        out[label] = (imp, sets, elapsed)
    return out


def report(title, results, column, scale=1.0, unit=""):
    print(f"\n=== {title} ===")
    imp = results["Heckman (MNAR)"][0]
    table = heckman_table(imp, column)
    print("rho per cluster (chain 1, final iteration):")
    print(table.round(3).to_string(index=False))
    for label, (_, sets, elapsed) in results.items():
        estimate, se = pooled_mean(sets, column)
        print(
            f"{label:15s}: pooled mean {column} = {scale * estimate:.3f}{unit} (SE {scale * se:.3f}), {elapsed:.1f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--m", type=int, default=10)
    parser.add_argument("--iter", type=int, default=5)
    args = parser.parse_args()
    print(machine())
    pd.set_option("display.width", 160)

    # ---------------------------------------------------------------- obesity
    obesity = load_obesity()
    print(
        f"\nobesity: observed mean Weight {obesity['Weight'].mean():.2f} kg "
        f"({int(obesity['Weight'].isna().sum())} of {len(obesity)} missing)"
    )
    heckman_matrix = {"Time": {"Weight": -3}}
    mar_matrix = {"Time": {"Weight": 1}}
    results = run(
        obesity, "Weight", "Cluster", heckman_matrix, mar_matrix, RandomEffectsNormal(), args.m, args.iter, 2024
    )
    report(f"obesity, m = {args.m}, max_iter = {args.iter}", results, "Weight", unit=" kg")
    times = []
    for _ in range(3):
        imp = MultilevelIterativeImputer(
            methods={"Weight": HeckmanSelection()},
            predictor_matrix=heckman_matrix,
            n_imputations=5,
            max_iter=5,
            random_state=1,
        )
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp.fit_transform_all(obesity, groups="Cluster")
        times.append(time.perf_counter() - start)
    print(
        f"obesity end to end, m = 5, max_iter = 5 (all incomplete columns): best of 3 {min(times):.2f} s "
        f"(runs {', '.join(f'{t:.2f}' for t in times)})"
    )

    # ---------------------------------------------------------------- hiv
    hiv = load_hiv()
    start = time.perf_counter()
    effect = interviewer_effect(hiv)
    spread = effect.groupby(hiv["interviewerID"], observed=True).first().std()
    print(
        f"\nhiv: interviewer effects (glmer hivconsent ~ region + language + (1 | interviewerID)) in "
        f"{time.perf_counter() - start:.1f} s; SD over interviewers {spread:.3f}"
    )
    data = hiv[["hiv", "age", "marital", "condom", "smoke", "region"]].assign(interviewer_effect=effect.to_numpy())
    print(f"observed HIV prevalence {data['hiv'].mean():.4f} ({int(data['hiv'].isna().sum())} of {len(data)} missing)")
    heckman_matrix = {"interviewer_effect": {"hiv": -3}}
    mar_matrix = {"interviewer_effect": {"hiv": 1}}
    results = run(data, "hiv", "region", heckman_matrix, mar_matrix, RandomEffectsLogistic(), args.m, args.iter, 2024)
    report(f"hiv, m = {args.m}, max_iter = {args.iter}", results, "hiv")


if __name__ == "__main__":
    main()
