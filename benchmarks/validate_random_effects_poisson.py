"""Known-truth validation of RandomEffectsPoisson, against RandomEffectsPMM and single-level PMM.

Design (per replication): J clusters (50 or 100) of 20 rows; x ~ N(0, 1); a count

    y_ij ~ Poisson(exp(beta0 + 0.4 x_ij + u_j)),  u_j ~ N(0, psi),

with beta0 = 0.5 and psi set by the latent-scale ICC of the log rate (Nakagawa & Schielzeth 2010),
ICC = psi / (psi + log(1 + 1/lambda)), lambda the mean count: ICC 0.1 or 0.3; and an outcome

    o_ij = 1 + 0.3 y_ij + 0.5 x_ij + v_j + e_ij,  v_j ~ N(0, 0.25), e_ij ~ N(0, s^2), s = 2
    (``--outcome-sd``; with s = 1 the count is so strong a predictor of o that y given o is
    underdispersed against any Poisson model: see RandomEffectsPoisson's docstring).

30% of the counts are missing at random given x and o (logistic in both). ``--overdispersed``
replaces the Poisson by a negative binomial with the same mean and shape 1 within clusters
(variance mu + mu^2): the case the defaults must not give the Poisson model.

Each replication imputes y (m = 10, max_iter = 5) with the three models through
MultilevelIterativeImputer (x and o as predictors, with their cluster means for the random-effects
models) and analyses every completed data set:

* the slope of y in the random-intercept linear mixed model o ~ y + x + (1 | cluster) (REML);
* the marginal mean count, with its cluster-robust variance (between-cluster variance of the
  cluster means over J, clusters of equal size);
* the variance of the counts' cluster means (how much clustering the imputations keep; no
  coverage: its estimand is the population value, compared with the complete-data estimate).

The model "defaults" gives the imputer no model for y: it chooses (RandomEffectsPoisson for a
count whose Poisson regression on its predictors fits, else RandomEffectsPMM; the column
poisson_share says in what share of the replications it chose the Poisson model).

Pooled by Rubin's rules (Barnard-Rubin df). Reported per model: bias against the truth
(the slope 0.3; the mean count exp(beta0 + 0.4^2/2 + psi/2), or the NB analogue), its Monte Carlo
SE, the 95% coverage against the 99% binomial acceptance region of the replications, and the
mean difference from the complete-data estimate of the same replication (paired, with its MC SE).

Run: python benchmarks/validate_random_effects_poisson.py [--reps 60] [--outcome-sd 2] [--overdispersed]
[--clusters 50 100] [--icc 0.1 0.3] [--models ...] [--n-jobs 2]
(about 0.25 s per replication and model on an idle core; 60 replications of the full grid took 376 s
on 2 shared cores).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from _common import machine
from _fast_lmm import fit_random_intercept
from _simulations import acceptance_region
from joblib import Parallel, delayed

from skmlmi import MultilevelIterativeImputer
from skmlmi.conditional import PredictiveMeanMatching, RandomEffectsPMM, RandomEffectsPoisson
from skmlmi.pooling.rubin import pool_scalar

BETA0, BETA_X, SLOPE_O = 0.5, 0.4, 0.3
CLUSTER_SIZE = 20
MODELS = {
    "RandomEffectsPoisson": lambda: ({"y": RandomEffectsPoisson()}, None),
    "RandomEffectsPMM": lambda: ({"y": RandomEffectsPMM()}, None),
    "single-level PMM": lambda: ({"y": PredictiveMeanMatching()}, {"cluster": {"y": 0}}),
    "defaults": lambda: (None, None),  # the model the imputer chooses for y (is_count_column, then the planner's check)
}


def psi_for(icc: float) -> float:
    """Random-intercept variance of the log rate giving a latent-scale ICC (lambda at u = 0 and x's mean effect)."""
    mean_count = np.exp(BETA0 + BETA_X**2 / 2)
    residual = np.log1p(1.0 / mean_count)
    return icc * residual / (1.0 - icc)


def simulate(seed: int, n_clusters: int, icc: float, overdispersed: bool = False, outcome_sd: float = 2.0):
    rng = np.random.default_rng(seed)
    psi = psi_for(icc)
    groups = np.repeat(np.arange(n_clusters), CLUSTER_SIZE)
    n = groups.size
    x = rng.normal(size=n)
    mu = np.exp(BETA0 + BETA_X * x + rng.normal(scale=np.sqrt(psi), size=n_clusters)[groups])
    if overdispersed:  # negative binomial, shape 1: a gamma(1, 1) frailty per row
        mu = mu * rng.gamma(1.0, 1.0, size=n)
    y = rng.poisson(mu).astype(float)
    v = rng.normal(scale=0.5, size=n_clusters)[groups]
    o = 1 + SLOPE_O * y + 0.5 * x + v + rng.normal(scale=outcome_sd, size=n)
    z_o = (o - o.mean()) / o.std()
    missing = rng.random(n) < 1 / (1 + np.exp(-(-1.0 + 0.6 * x + 0.6 * z_o)))  # MAR on x and o, about 30%
    frame = pd.DataFrame({"cluster": groups, "x": x, "o": o, "y": y})
    frame.loc[missing, "y"] = np.nan
    truth = {"slope": SLOPE_O, "mean": np.exp(BETA0 + BETA_X**2 / 2 + psi / 2)}
    return frame, y, truth


def analyse(frame: pd.DataFrame, y: np.ndarray) -> dict:
    """Estimates and variances of the slope of y in o ~ y + x + (1 | cluster), the mean count, the
    variance of the cluster means of y."""
    groups = frame["cluster"].to_numpy()
    J = groups.max() + 1
    X = np.column_stack([np.ones(len(y)), y, frame["x"].to_numpy()])
    fit = fit_random_intercept(frame["o"].to_numpy(), X, groups)
    means = np.bincount(groups, weights=y, minlength=J) / np.bincount(groups, minlength=J)
    return {
        "slope": (fit.coef[1], fit.cov[1, 1], fit.df_resid),
        "mean": (y.mean(), means.var(ddof=1) / J, J - 1),
        "cluster_variance": (means.var(ddof=1), np.nan, np.nan),
    }


def replication(
    seed: int, n_clusters: int, icc: float, model: str, overdispersed: bool, outcome_sd: float = 2.0, m: int = 10
) -> list[dict]:
    frame, y_full, truth = simulate(seed, n_clusters, icc, overdispersed, outcome_sd)
    complete = analyse(frame, y_full)
    methods, matrix = MODELS[model]()
    imputer = MultilevelIterativeImputer(
        methods=methods, predictor_matrix=matrix, n_imputations=m, max_iter=5, random_state=seed
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        completed = imputer.fit_transform_all(frame, groups="cluster")
    results = [analyse(data, data["y"].to_numpy()) for data in completed]
    chosen = type(imputer.methods_["y"]).__name__
    rows = []
    for quantity in ("slope", "mean", "cluster_variance"):
        q = np.array([r[quantity][0] for r in results])
        row = {"J": n_clusters, "ICC": icc, "model": model, "quantity": quantity, "seed": seed, "chosen": chosen}
        row["complete"] = complete[quantity][0]
        if quantity == "cluster_variance":
            row.update(estimate=q.mean(), covered=np.nan, truth=np.nan)
        else:
            u = np.array([r[quantity][1] for r in results])
            pooled = pool_scalar(q, u, dfcom=complete[quantity][2])
            row.update(
                estimate=pooled["estimate"],
                covered=pooled["conf_low"] <= truth[quantity] <= pooled["conf_high"],
                truth=truth[quantity],
            )
        rows.append(row)
    return rows


def summarise(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    out = []
    for (J, icc, model, quantity), part in frame.groupby(["J", "ICC", "model", "quantity"], sort=False):
        reps = len(part)
        difference = part["estimate"] - part["complete"]
        error = part["estimate"] - part["truth"]
        out.append(
            {
                "J": J,
                "ICC": icc,
                "quantity": quantity,
                "model": model,
                "truth": part["truth"].iloc[0],
                "bias": error.mean(),
                "mc_se": error.std(ddof=1) / np.sqrt(reps),
                "coverage": part["covered"].astype(float).mean(),
                "vs_complete": difference.mean(),
                "vs_complete_mc_se": difference.std(ddof=1) / np.sqrt(reps),
                "poisson_share": (part["chosen"] == "RandomEffectsPoisson").mean(),
            }
        )
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=60)
    parser.add_argument("--clusters", type=int, nargs="+", default=[50, 100])
    parser.add_argument("--icc", type=float, nargs="+", default=[0.1, 0.3])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--overdispersed", action="store_true")
    parser.add_argument("--outcome-sd", type=float, default=2.0, help="residual SD s of the outcome o")
    parser.add_argument("--n-jobs", type=int, default=2)
    args = parser.parse_args()
    print(machine())
    start = time.perf_counter()
    jobs = [
        delayed(replication)(seed, J, icc, model, args.overdispersed, args.outcome_sd)
        for J in args.clusters
        for icc in args.icc
        for model in args.models
        for seed in range(args.reps)
    ]
    rows = [row for block in Parallel(n_jobs=args.n_jobs)(jobs) for row in block]
    table = summarise(rows)
    low, high = acceptance_region(args.reps)
    print(
        f"\n{args.reps} replications per cell{' (negative binomial counts, shape 1)' if args.overdispersed else ''}, "
        f"outcome residual SD {args.outcome_sd:g}, "
        f"{time.perf_counter() - start:.0f} s; 99% acceptance region for 95% coverage: [{low:.3f}, {high:.3f}]\n"
    )
    with pd.option_context("display.width", 200, "display.float_format", "{:.4f}".format):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
