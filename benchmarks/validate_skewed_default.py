"""The default model of a continuous level-1 variable on skewed data: predictive mean matching against the normal model.

Design (known truth): 60 clusters of 2 to 60 rows (uniform), a level-1 predictor x with a
cluster component, either lognormal, x = exp(0.5 u_j + 0.6 e_ij), or normal with the same
latent structure, x = 1.6 + (0.5 u_j + 0.6 e_ij) / 0.78; the outcome y = 1 + 0.8 x + N(0, 0.7) cluster
+ N(0, 1); x missing in 35% of the rows, at random on y (P = expit(c + 1.5 standardised y),
strong selection) or completely at random. Analysis: y ~ x + (1 | g) by REML; m = 10,
max_iter = 10. Printed per cell: the mean over replications of the pooled slope minus the truth
and minus the complete data's (paired), with Monte Carlo SEs, the 95% coverage and the random-
intercept variance's paired relative difference, for the defaults (RandomEffectsPMM for a
continuous level-1 column) and for RandomEffectsNormal (the default before it).

Cell ``ipd`` (individual participant data, where the defaults are two-stage models): 16 studies
of 120-300 rows, x = exp(0.4 u_j + 0.6 e_ij), y = 1 + 0.8 x + N(0, 0.5) study + N(0, 1); x missing
in 4 whole studies and, elsewhere, 25% at random on y (P = expit(c + 1.5 standardised y));
m = 10, max_iter = 5; defaults (TwoStagePMM) against TwoStageNormal.

Run: python benchmarks/validate_skewed_default.py [--reps 200] [--jobs 2]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from _validity import fit_linear_mixed
from joblib import Parallel, delayed
from scipy import optimize, special
from threadpoolctl import threadpool_limits

from skmlmi import MultilevelIterativeImputer
from skmlmi.conditional import RandomEffectsNormal, TwoStageNormal
from skmlmi.pooling import pool

SLOPE, TAU2 = 0.8, 0.49
METHODS = {"defaults": None, "normal model": RandomEffectsNormal}
IPD_METHODS = {"defaults": None, "normal model": TwoStageNormal}


def simulate(rep: int, distribution: str, mechanism: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The incomplete data (g, y, x) and the complete x of replication ``rep``."""
    if mechanism == "ipd":
        return simulate_ipd(rep)
    rng = np.random.default_rng([7, rep])
    n_clusters = 60
    g = np.repeat(np.arange(n_clusters), rng.integers(2, 61, n_clusters))
    n = g.size
    latent = 0.5 * rng.normal(size=n_clusters)[g] + 0.6 * rng.normal(size=n)
    x = np.exp(latent) if distribution == "lognormal" else 1.6 + latent / 0.78
    y = 1.0 + SLOPE * x + rng.normal(0.0, 0.7, n_clusters)[g] + rng.normal(0.0, 1.0, n)
    if mechanism == "mar":
        s = (y - y.mean()) / y.std()
        c = optimize.brentq(lambda c: special.expit(c + 1.5 * s).mean() - 0.35, -20.0, 20.0)
        missing = rng.random(n) < special.expit(c + 1.5 * s)
    else:
        missing = rng.random(n) < 0.35
    return pd.DataFrame({"g": g, "y": y, "x": np.where(missing, np.nan, x)}), x


def simulate_ipd(rep: int) -> tuple[pd.DataFrame, np.ndarray]:
    """16 studies, x missing in 4 whole studies and at random on y elsewhere (see the module docstring)."""
    rng = np.random.default_rng([13, rep])
    n_studies = 16
    g = np.repeat(np.arange(n_studies), rng.integers(120, 301, n_studies))
    n = g.size
    x = np.exp(0.4 * rng.normal(size=n_studies)[g] + 0.6 * rng.normal(size=n))
    y = 1.0 + SLOPE * x + rng.normal(0.0, 0.5, n_studies)[g] + rng.normal(size=n)
    s = (y - y.mean()) / y.std()
    c = optimize.brentq(lambda c: special.expit(c + 1.5 * s).mean() - 0.25, -20.0, 20.0)
    missing = (rng.random(n) < special.expit(c + 1.5 * s)) | np.isin(g, rng.choice(n_studies, 4, replace=False))
    return pd.DataFrame({"g": g, "y": y, "x": np.where(missing, np.nan, x)}), x


def replication(rep: int, distribution: str, mechanism: str, m: int = 10) -> list[dict]:
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data, x = simulate(rep, distribution, mechanism)
        g, y = data["g"].to_numpy(), data["y"].to_numpy()
        n, n_clusters = len(data), int(g.max()) + 1

        def fit(values):
            return fit_linear_mixed(y, np.column_stack([np.ones(n), values]), g, n_clusters)

        complete = fit(x)
        rows = []
        methods = IPD_METHODS if mechanism == "ipd" else METHODS
        for method, model in methods.items():
            imputer = MultilevelIterativeImputer(
                methods=None if model is None else model(),
                n_imputations=m,
                max_iter=5 if mechanism == "ipd" else 10,
                random_state=rep,
            )
            fits = [fit(d["x"].to_numpy()) for d in imputer.fit_transform_all(data, groups="g")]
            coefficients, covariances = np.array([f.coef for f in fits]), np.array([f.cov for f in fits])
            table = pool(coefficients, covariances, dfcom=n - 2, names=["(Intercept)", "x"])
            estimate, low, high = table.loc["x", ["estimate", "conf_low", "conf_high"]]
            rows.append(
                {
                    "distribution": distribution,
                    "mechanism": mechanism,
                    "method": method,
                    "model": type(imputer.methods_["x"]).__name__,
                    "rep": rep,
                    "bias": estimate - SLOPE,
                    "paired": estimate - complete.coef[1],
                    "covered": low <= SLOPE <= high,
                    "tau2": (np.mean([f.tau2 for f in fits]) - complete.tau2) / (0.25 if mechanism == "ipd" else TAU2),
                }
            )
        return rows


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    grouped = rows.groupby(["distribution", "mechanism", "method", "model"], sort=False)

    def mean_se(column):
        return grouped[column].mean(), grouped[column].std() / np.sqrt(grouped[column].count())

    out = pd.DataFrame({"R": grouped["rep"].count()})
    for column in ("bias", "paired", "tau2"):
        out[column], out[f"{column}_mcse"] = mean_se(column)
    out["coverage"] = grouped["covered"].mean()
    return out.reset_index()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    cells = [(d, mech) for d in ("lognormal", "normal") for mech in ("mar", "mcar")] + [("lognormal", "ipd")]
    rows = Parallel(n_jobs=args.jobs)(
        delayed(replication)(rep, d, mech) for rep in range(args.reps) for d, mech in cells
    )
    table = summarise(pd.DataFrame([row for part in rows for row in part]))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(4).to_string(index=False))
    print(f"\n{args.reps} replications per cell; {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
