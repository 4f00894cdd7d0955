"""Known-truth validation of imputation compatible with the analysis model, against chained equations.

Each design of ``_compatible_designs.py`` (random slope, cross-level interaction, level-1
interaction with both covariates incomplete, quadratic term, random-intercept logistic model with
an incomplete continuous and an incomplete binary covariate, and a random-intercept linear model
where chained equations are already right) is simulated ``--reps`` times; each replication is
imputed by chained equations (the defaults, with the groups) and with ``analysis_model=`` (the
same data, the same seed), the analysis model fitted on every completed dataset and pooled.

Printed per design, quantity and method: mean estimate, bias relative to the truth with its Monte
Carlo SE, the bound (issue's criteria: random slope fixed slope 2%, slope variance 5%, residual
variance 3%; interactions, quadratic term and log odds ratios 5%), 95% coverage (the 99% binomial
acceptance region, Bonferroni over the rows checked), RMSE and seconds per imputation run. A row
passes when |bias| is within its bound and the MC SE at most a third of it, and coverage is inside
the region; the random-intercept design passes when the compatible method's bias and RMSE lie
within 2 MC SE of chained equations' and it takes at most 3 times as long.

Run::

    python benchmarks/validate_compatible.py --reps 200            # the full run (about 2-3 hours on 2 cores)
    python benchmarks/validate_compatible.py --reps 20 --designs quadratic
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _compatible_designs import CHECKS, DESIGNS, replication, summarise  # noqa: E402

COVERAGE_LEVEL = 0.99


def verdict(table: pd.DataFrame) -> pd.DataFrame:
    """The table with the pass/fail columns of the criteria (compatible rows; the rest for contrast)."""
    table = table.copy()
    checked = table["method"] == "compatible"
    n_tests = int((checked & table["coverage"].notna()).sum())
    low, high = [], []
    for r in table["R"]:
        lo, hi = stats.binom.interval(1 - (1 - COVERAGE_LEVEL) / max(n_tests, 1), int(r), 0.95)
        low.append(lo / r)
        high.append(hi / r)
    table["cov_low"], table["cov_high"] = low, high
    table["bias_ok"] = (table["rel_bias"].abs() <= table["bound"]) & (table["mc_se"] <= table["bound"] / 3)
    table["cov_ok"] = table["coverage"].isna() | table["coverage"].between(table["cov_low"], table["cov_high"])
    table["passes"] = np.where(checked, (table["bias_ok"] & table["cov_ok"]).map({True: "yes", False: "NO"}), "")
    return table


def same_as_chained(frame: pd.DataFrame) -> pd.DataFrame:
    """Random-intercept design: the compatible method's bias and RMSE against chained equations' (paired)."""
    part = frame[frame["design"] == "random intercept"]
    out = []
    for quantity, rows in part.groupby("quantity", sort=False):
        wide = rows.pivot_table(index="rep", columns="method", values="estimate")
        truth = rows["truth"].iloc[0]
        diff = wide["compatible"] - wide["chained"]
        sq = (wide["compatible"] - truth) ** 2 - (wide["chained"] - truth) ** 2
        seconds = rows.pivot_table(index="rep", columns="method", values="seconds").mean()
        out.append(
            {
                "quantity": quantity,
                "bias_difference": diff.mean(),
                "mc_se": diff.std(ddof=1) / np.sqrt(len(diff)),
                "mse_difference": sq.mean(),
                "mse_mc_se": sq.std(ddof=1) / np.sqrt(len(sq)),
                "time_ratio": seconds["compatible"] / seconds["chained"],
            }
        )
    table = pd.DataFrame(out)
    table["passes"] = (
        (table["bias_difference"].abs() <= 2 * table["mc_se"])
        & (table["mse_difference"] <= 2 * table["mse_mc_se"])
        & (table["time_ratio"] <= 3.0)
    )
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--designs", default=",".join(DESIGNS))
    parser.add_argument("--m", type=int, default=10)
    parser.add_argument("--max-iter", type=int, default=10)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--first-rep", type=int, default=0)
    parser.add_argument("--out", default=None, help="CSV of the replications' rows")
    parser.add_argument("--summarise", default=None, help="summarise a CSV written by --out instead of running")
    args = parser.parse_args(argv)
    if args.summarise:
        return report(pd.read_csv(args.summarise), None)
    designs = [d.strip() for d in args.designs.split(",")]
    unknown = [d for d in designs if d not in CHECKS]
    if unknown:
        parser.error(f"unknown designs {unknown}; choose from {list(DESIGNS)}")
    started = time.perf_counter()
    jobs = [(d, r) for d in designs for r in range(args.first_rep, args.first_rep + args.reps)]
    results = Parallel(n_jobs=args.n_jobs)(delayed(replication)(d, r, args.m, args.max_iter) for d, r in jobs)
    rows = [row for result in results for row in result]
    frame = pd.DataFrame(rows)
    if args.out:
        frame.to_csv(args.out, index=False)
    return report(frame, time.perf_counter() - started)


def report(frame: pd.DataFrame, seconds: float | None) -> int:
    """Print the table and the random-intercept contrast; 0 when every compatible row passes."""
    pd.set_option("display.width", 250)
    table = verdict(summarise(frame))
    columns = ["design", "quantity", "method", "R", "truth", "mean", "rel_bias", "mc_se", "bound", "coverage"]
    columns += ["cov_low", "cov_high", "rmse", "seconds", "passes"]
    print(table[columns].round(4).to_string(index=False))
    failed = int((table["passes"] == "NO").sum())
    if (frame["design"] == "random intercept").any():
        contrast = same_as_chained(frame)
        print("\nrandom intercept, compatible - chained (paired):")
        print(contrast.round(4).to_string(index=False))
        failed += int((~contrast["passes"]).sum())
    if seconds is not None:
        print(f"\n{frame[['design', 'rep']].drop_duplicates().shape[0]} replications in {seconds:.0f} s")
    print(f"{failed} row(s) outside their criteria")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
