"""Validity matrix of the default imputation models: every kind of incomplete variable, as predictor and as outcome.

For each kind of variable the defaults choose a model for, a two-level simulation with known
truth makes that variable, x, 30% missing (MAR on the outcome y), imputes it with the package
defaults (``MultilevelIterativeImputer(n_imputations=20, max_iter=10)``,
``fit_transform_all(data, groups="g")``) and, as the contrast, with the same imputer without
groups (the g column dropped: mice's single-level defaults PMM, logistic, polytomous), and
analyses every completed dataset twice. The set-up lives in ``benchmarks/_validity.py``.

Data-generating model
---------------------
Clusters j = 1..J, J in {30, 100}, sizes n_j drawn uniformly from 5..40 (mean 22.5; N about
675 or 2250). rho in {0.1, 0.3}. Always complete:

* z_ij = zeta_j + eps_ij, zeta_j ~ N(0, 0.2), eps_ij ~ N(0, 0.8) (ICC of z 0.2); zbar_j its cluster mean;
* y_ij = f(x_ij) + 0.3 z_ij + u_j + e_ij, u_j ~ N(0, rho), e_ij ~ N(0, 1 - rho), so the
  random-intercept variance of the predictor-role model is tau^2_y = rho.

x by kind, with its effect f(x) on y (the predictor-role truth) and the outcome-role analysis
with its truth (a_j, c_j ~ N(0, s^2), s^2 = rho / (1 - rho) pi^2/3, the latent-scale variance
that gives ICC rho; L_ij a standard logistic error):

* continuous: x = 0.5 z + b_j + w_ij, b_j ~ N(0, rho), w_ij ~ N(0, 1 - rho); f(x) = 0.5 x;
  LMM x ~ z + (1 | g): (Intercept) 0, z 0.5.
* whole-number: x = round(10 + z + b_j + w_ij), b_j ~ N(0, 4 rho), w_ij ~ N(0, 4 (1 - rho) - 1/12)
  (values about 3..17, a score or count); f(x) = 0.25 x - 2.5; LMM x ~ z + (1 | g):
  (Intercept) 10, z 1.0.
* binary: x = 1[-0.5 + 0.8 z + a_j + L_ij > 0]; f(x) = 0.5 x; logistic GLMM x ~ z + (1 | g):
  (Intercept) -0.5, z 0.8.
* unordered (A, B, C): A if -0.5 + 0.8 z + a_j + L > 0, else B if c_j + L' > 0, else C
  (sequential logits, so that 1[x = A] is exactly a random-intercept logistic model and the
  categories a multinomial logit in z); f(x) = 0.5 [B] - 0.3 [C]; logistic GLMM
  1[x = A] ~ z + (1 | g): (Intercept) -0.5, z 0.8.
* ordered (A < B < C): cuts -0.5 and 0.8 on 0.8 z + a_j + L (cumulative logit);
  f(x) = 0.4 [B] + 0.8 [C]; logistic GLMM 1[x = C] ~ z + (1 | g): (Intercept) -0.8, z 0.8.
* cluster continuous: x_j = 1.5 zbar_j + v_j, v_j ~ N(0, 1), the same in every row of cluster j;
  f(x) = 0.5 x; OLS of x_j on zbar_j, one row per cluster: (Intercept) 0, zbar 1.5.
* cluster binary: x_j = 1[-0.5 + 2 zbar_j + L_j > 0]; f(x) = 0.5 x; logistic regression of x_j
  on zbar_j, one row per cluster, by Firth's bias-reduced estimate: (Intercept) -0.5, zbar 2.0.
  Why Firth, not maximum likelihood: with J = 30 the ML estimate of zbar is 13-17% high in the
  complete data, and it does not exist where a completed dataset is separated. Complete data
  with J = 30 are never separated on zbar (0 of 3000 replications at either rho), but the 21 or
  so observed clusters alone are, in 0.7% (rho 0.1) and 0.4% (rho 0.3) of replications; there
  the imputations' posterior, rightly, allows large slopes, and imputed datasets complete the
  separation (at rho 0.1, 9 of 3000 imputed datasets with the former normal-approximation draw
  of ClusterLevelLogistic, 18 of 3000 with its exact draw). One such dataset among m = 20 made
  the pooled ML estimate reach hundreds (a mean paired bias of +1.7, MC SE 0.8, over 480
  replications). Firth's estimate is finite on every dataset and unbiased to O(1/n), so the cell
  measures the imputation, not the small-sample failure of the ML estimate.
* systematic continuous, systematic binary: x as continuous and binary, but missing in whole
  clusters; the same analyses and truths.

The ICC of x given z (the outcome-role model's ICC|g) is rho for every level-1 kind (latent scale
for binary and categorical x; exact for whole-number x, whose rounding variance 1/12 is taken
off the within variance); its random-intercept variance tau^2_x is rho (continuous), 4 rho
(whole-number) and s^2 (discrete). Cluster-level x has no within-cluster variance: there rho is
the ICC of y only. The residual ICC of y equals the ICC of x on purpose: then the default
random-intercept imputation model of x given y and z (no cluster means) is exactly congenial
for continuous and whole-number x (the cluster effect of x given y is independent of the
cluster's y values only when the two ICCs agree), and close for discrete x; a mismatch is a
known source of bias that the defaults' predictor matrix (role 1, no cluster means) does not
address, and is not what this matrix tests.

The effects are substantial but ordinary: 0.5 residual SD of y per SD of x (or between a
binary x's groups), odds ratios of 2.2 per SD of z, and a cluster-level x of which zbar explains
about a third. The 5% bound is 0.2-1.2 complete-data SE on them (J = 30 to 100), small next to
the single-level contrast's biases of the coefficient of x (9-39%), and its MC SE target needs
tens, not thousands, of replications for the slopes; the intercepts of a numeric x and effects
under 2 SE (the logistic regression of 30 clusters) get the 0.1-SE bound and need hundreds.

Missingness: P(x missing) = expit(c + 1.0 * standardised y_ij) for the sporadic kinds
(continuous, whole-number, binary, unordered, ordered); whole clusters with
expit(c + 1.0 * standardised ybar_j) for the cluster-level and systematically missing kinds;
c solves mean probability = 0.3 in each dataset. Amputations that would leave a category
unobserved or fewer than 3 clusters observed are redrawn.

Analyses of each complete or completed dataset (one set of m = 20 imputations serves both):

* predictor role: y ~ x + z + (1 | g), REML (x as treatment dummies, reference A, when
  categorical); target: the coefficient(s) of x, and tau^2_y;
* outcome role: x ~ z + (1 | g) by REML (continuous, whole-number), by the Laplace
  approximation with a logistic link (binary; categorical: the indicator of the category in
  the table); for cluster-level x the cluster-level regression in the table (the value of
  a cluster's first row, which a single-level imputation may vary within the cluster);
  targets: intercept and slope, tau^2_x and the ICC of x.

The fitters are the fast ones of ``benchmarks/_validity.py`` (REML profiled over the variance
ratio on per-cluster sums; Laplace with Newton steps), equal to the package's
``LinearMixedModel`` and ``LogisticMixedModel`` to about 1e-7 (tests/validation/test_validate_defaults.py
checks it). Pooling: Rubin's rules (``skmlmi.pooling.pool``, Barnard-Rubin df with the
complete-data df_resid, as MIPooler's default); variance components and ICC averaged over the
imputations (as mitml).

Criteria (flags for the defaults; the single-level imputation is shown as the contrast)
---------------------------------------------------------------------------------------
* bias: |E(pooled - complete-data estimate)| below 5% of |truth|, or 0.1 complete-data SE where
  |truth| < 2 SE and for intercepts (a location has no natural origin for a relative bound).
  The criterion uses the *paired* difference from the complete-data analysis of the same
  replication: it is the imputation's own contribution. Where the complete-data estimator is
  unbiased (the linear models' fixed effects) its expectation equals the bias against the
  truth, with a far smaller Monte Carlo SE (the data's sampling error cancels); where it is
  not (logistic mixed models, logistic regression of 30 clusters, variance components) only
  the paired difference separates the imputation from the estimator's small-sample bias. The
  bias against the truth is printed too (``bias``), with its MC SE.
* ICC: |E(pooled ICC of x - complete-data ICC)| < 0.02 (paired, same reason: REML and Laplace
  variance components are biased in small samples), from the outcome-role model.
* tau^2: |E(pooled tau^2 - complete-data tau^2)| / tau^2 < 10% (paired), for the model of each
  role that has a random intercept.
* coverage: the share of 95% intervals (Rubin) containing the truth lies in the 99%
  binomial acceptance region, family-wise over every row of the table (Bonferroni).
* mc: every paired MC SE is at most a third of its bound, i.e. the replications suffice for
  the bias verdicts; the table states R and the MC SEs are in the CSV.

Run
---
``python benchmarks/validate_defaults.py [--reps N] [--jobs 2]``: all 9 kinds x J {30, 100} x
rho {0.1, 0.3}; N = 250 replications per cell by default, times REPS_FACTOR of
``benchmarks/_validity.py`` for the kinds that are cheap per replication and need more (cluster
continuous and cluster binary 1000, systematic continuous 750); the single-level contrast in the
first ``--contrast-reps`` (100) of them. Replications are seeded by
``SeedSequence([seed, kind, J, rho, replication])``, so results do not depend on ``--jobs``.
One replication (both imputations, m = 20, and their 80 analyses) takes 0.2-0.5 s for the
continuous-type and cluster-level kinds and 1-3 s for the binary and categorical ones on one
free core (J = 30 to 100; the imputations take 75-90% of it): the default run is about 11,000
core-seconds, 1.5 hours on 2 free cores (a 30-replication run of every cell, 2040 replications,
took 11 minutes). ``--csv`` names the summary table's file
(default benchmarks/validate_defaults.csv), ``--rows`` the per-replication rows (from which
``--summarise-only`` recomputes the table).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import machine
from _validity import ICC_BOUND, KINDS, METHODS, REPS_FACTOR, TAU2_SHARE, replication, summarise
from joblib import Parallel, delayed

SHORT = {
    "continuous": "continuous",
    "whole-number": "whole-number",
    "binary": "binary",
    "unordered": "unordered",
    "ordered": "ordered",
    "cluster continuous": "cl-continuous",
    "cluster binary": "cl-binary",
    "systematic continuous": "sys-continuous",
    "systematic binary": "sys-binary",
}


def _regions(table: pd.DataFrame) -> str:
    regions = table.drop_duplicates("R").sort_values("R")
    return ", ".join(
        f"R = {r}: [{lo:.3f}, {hi:.3f}]"
        for r, lo, hi in zip(regions["R"], regions["cov_low"], regions["cov_high"], strict=True)
    )


def _with_se(value: float, se: float, digits: int = 3) -> str:
    if not np.isfinite(value):
        return ""
    return f"{value:+.{digits}f}({se:.{digits}f})" if np.isfinite(se) else f"{value:+.{digits}f}"


def _flag(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return "ok" if bool(value) else "FAIL"


def printable(table: pd.DataFrame) -> pd.DataFrame:
    """The summary with estimates and their MC SEs side by side, and the flags as ok / FAIL."""
    out = pd.DataFrame(
        {
            "kind": table["kind"].map(SHORT),
            "role": table["role"].str[:4],
            "term": table["term"],
            "J": table["J"],
            "rho": table["icc"],
            "R": table["R"],
            "truth": table["truth"].map("{:.2f}".format),
            "cd_mean": table["cd_mean"].map("{:.3f}".format),
            "bound": table["bound"].map("{:.3f}".format),
            "def_bias(mcse)": [_with_se(v, s) for v, s in zip(table["def_bias"], table["def_bias_mcse"], strict=True)],
            "def_paired(mcse)": [
                _with_se(v, s) for v, s in zip(table["def_paired"], table["def_paired_mcse"], strict=True)
            ],
            "def_cov": table["def_cov"].map("{:.3f}".format),
        }
    )
    if "sl_paired" in table:
        out["sl_paired(mcse)"] = [
            _with_se(v, s) for v, s in zip(table["sl_paired"], table["sl_paired_mcse"], strict=True)
        ]
        out["sl_cov"] = table["sl_cov"].map("{:.3f}".format)
    out["cd_cov"] = table["cd_cov"].map("{:.3f}".format)
    for short in ("def", "sl"):
        if f"{short}_icc" in table:
            out[f"{short}_icc"] = table[f"{short}_icc"].map(lambda v: "" if np.isnan(v) else f"{v:+.3f}")
            out[f"{short}_tau2"] = table[f"{short}_tau2"].map(lambda v: "" if np.isnan(v) else f"{v:+.2f}")
    for name in ("bias", "icc", "tau2", "cov", "mc"):
        out[name] = table[f"ok_{name}"].map(_flag)
    return out


def replications_of(kind: str, reps: int) -> int:
    """Replications of a kind's cells: ``reps`` times its factor (at least one)."""
    return max(1, round(reps * REPS_FACTOR.get(kind, 1)))


def run(
    kinds,
    clusters,
    iccs,
    reps: int,
    contrast_reps: int,
    jobs: int,
    m: int,
    max_iter: int,
    seed: int,
    rows_path: Path | None,
    resume: bool = False,
) -> pd.DataFrame:
    """All replications of all cells, in parallel; rows are written to ``rows_path`` as they arrive.

    With ``resume``, replications whose every method is already in ``rows_path`` are read back, not rerun; a
    replication's random numbers depend only on its cell and index, so the result is the same as one whole run.
    """
    tasks = [
        (kind, J, icc, rep)
        for kind in kinds
        for rep in range(replications_of(kind, reps))
        for J in clusters
        for icc in iccs
    ]
    tasks.sort(key=lambda task: task[3])  # replication-major: a run stopped early has every cell
    methods_of = {task: METHODS if task[3] < contrast_reps else METHODS[:1] for task in tasks}
    rows, fields = [], None
    if resume and rows_path is not None and rows_path.exists():
        previous = pd.read_csv(rows_path)
        fields = list(previous.columns)
        finished = {
            task
            for task, part in previous.groupby(["kind", "J", "icc", "rep"])
            if task in methods_of and set(methods_of[task]) <= set(part["method"])
        }
        keys = previous[["kind", "J", "icc", "rep"]].itertuples(index=False, name=None)
        keep = [key in finished for key in keys]
        rows = previous[keep].to_dict("records")
        tasks = [task for task in tasks if task not in finished]
        print(f"  resuming: {len(finished)} replications read back, {len(tasks)} to run", file=sys.stderr)
    results = Parallel(n_jobs=jobs, return_as="generator_unordered")(
        delayed(replication)(kind, J, icc, rep, m, max_iter, seed, methods_of[kind, J, icc, rep])
        for kind, J, icc, rep in tasks
    )
    writer = None
    handle = None
    if rows_path is not None:
        handle = open(rows_path, "w", newline="")
        if rows:  # rewritten without the incomplete replications of the stopped run
            writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
            handle.flush()
    try:
        for done, chunk in enumerate(results, start=1):
            rows += chunk
            if handle is not None:
                if writer is None:
                    fields = list(dict.fromkeys(k for row in chunk for k in row))
                    writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
                    writer.writeheader()
                writer.writerows(chunk)
                handle.flush()
            if done % max(1, len(tasks) // 20) == 0:
                print(f"  {done}/{len(tasks)} replications", file=sys.stderr, flush=True)
    finally:
        if handle is not None:
            handle.close()
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=250, help="replications per design of the kinds with factor 1")
    parser.add_argument("--contrast-reps", type=int, default=100, help="replications that run the contrast too")
    parser.add_argument("--jobs", type=int, default=2, help="replications in parallel (results do not depend on it)")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS, metavar="KIND")
    parser.add_argument("--clusters", nargs="+", type=int, default=[30, 100])
    parser.add_argument("--iccs", nargs="+", type=float, default=[0.1, 0.3])
    parser.add_argument("--m", type=int, default=20, help="imputations")
    parser.add_argument("--max-iter", type=int, default=10)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--csv", type=Path, default=Path(__file__).with_suffix(".csv"), help="summary table")
    parser.add_argument("--rows", type=Path, default=None, help="per-replication rows (CSV)")
    parser.add_argument("--summarise-only", action="store_true", help="recompute the table from --rows")
    parser.add_argument("--resume", action="store_true", help="continue a stopped run from its --rows")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.summarise_only:
        rows = pd.read_csv(args.rows)
    else:
        rows = run(
            args.kinds,
            args.clusters,
            args.iccs,
            args.reps,
            args.contrast_reps,
            args.jobs,
            args.m,
            args.max_iter,
            args.seed,
            args.rows,
            args.resume,
        )
    wall = time.perf_counter() - start
    table = summarise(rows)
    table.to_csv(args.csv, index=False)
    imputed = rows[rows["method"] != "complete"].drop_duplicates(["kind", "J", "icc", "rep", "method"])
    per_rep = imputed.groupby(["kind", "J", "method"])[["seconds", "analysis_seconds"]].mean().unstack("method")
    models = imputed.drop_duplicates(["kind", "method"]).pivot(index="kind", columns="method", values="model")
    command = sys.argv[1:] if argv is None else list(argv)
    print(machine())
    print("python benchmarks/validate_defaults.py " + " ".join(command))
    reps_of = {
        kind: (int(part["R"].iloc[0]), int(part["sl_R"].iloc[0]) if "sl_R" in part else 0)  # no contrast: 0
        for kind, part in table.groupby("kind", sort=False)
    }
    print(
        f"{int((imputed['method'] == 'defaults').sum())} replications in {wall:.0f} s wall ({args.jobs} jobs); "
        "replications per cell (defaults, contrast): "
        + ", ".join(f"{SHORT[k]} {r}, {c}" for k, (r, c) in reps_of.items())
        + f"\n95% coverage acceptance regions (99% family-wise over {len(table)} rows): {_regions(table)}"
    )
    print("\nDefault models (with groups) and the contrast (without):")
    print(models.reindex([k for k in KINDS if k in models.index]).to_string())
    print("\nSeconds per replication (imputation with m imputations; the 2m analyses of its completed datasets):")
    print(per_rep.round(2).to_string())
    print(
        "\nbias = pooled - truth; paired = pooled - complete data (same replication); icc: paired bias of the ICC "
        "of x; tau2: paired bias of tau^2 relative to its truth; cov: 95% CI coverage.\n"
    )
    with pd.option_context("display.width", 250, "display.max_rows", 1000, "display.max_columns", 40):
        print(printable(table).to_string(index=False))
    failing = failures(table)
    print(f"\n{failing['row'].nunique()} of {len(table)} rows fail a criterion; table written to {args.csv}")
    for line in failing.itertuples():
        print(f"  {line.row}: {line.criterion} {line.what}")


def failures(table: pd.DataFrame) -> pd.DataFrame:
    """One line per failed criterion: its value against its bound, and how far beyond it in MC SEs."""
    checks = (("bias", "def_paired", "bound"), ("icc", "def_icc", ICC_BOUND), ("tau2", "def_tau2", TAU2_SHARE))
    out, seen = [], set()
    for _, row in table.iterrows():
        name = f"{SHORT[row['kind']]} {row['role']} {row['term']} J={row['J']} rho={row['icc']}"
        for criterion, value, bound in checks:
            cell = (row["kind"], row["role"], row["J"], row["icc"], criterion)
            if criterion != "bias":  # the ICC and tau^2 belong to the model, not to a term: reported once
                if cell in seen:
                    continue
                seen.add(cell)
                name = name.replace(f" {row['term']} ", " ")
            bound = row[bound] if isinstance(bound, str) else bound
            if row[f"ok_{criterion}"] is not np.nan and pd.notna(row[f"ok_{criterion}"]) and not row[f"ok_{criterion}"]:
                excess = (abs(row[value]) - bound) / row[f"{value}_mcse"]
                out.append((name, criterion, f"{row[value]:+.3f} vs bound {bound:.3f}: beyond by {excess:.1f} MC SE"))
        if not row["ok_cov"]:
            out.append(
                (name, "coverage", f"{row['def_cov']:.3f} outside [{row['cov_low']:.3f}, {row['cov_high']:.3f}]")
            )
    return pd.DataFrame(out, columns=["row", "criterion", "what"])


if __name__ == "__main__":
    main()
