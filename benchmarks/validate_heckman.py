"""Validation of HeckmanSelection on data with a known truth (make_heckman).

For each setting (rho = 0.6 and rho = 0; an exclusion restriction; 15 clusters of 200;
40% missing) and each replication, the data are imputed m times with

* HeckmanSelection (x both equations, z selection only (-3), cluster -2), and
* RandomEffectsNormal (MAR; x and z as predictors, cluster -2),

and the completed-data estimates (mean of y; OLS slope of y on x) are compared with the
complete-data estimates of the same replication (so the sampling error of the data
cancels and what remains is the error due to imputation). Reported per method: the
average bias over replications, its Monte Carlo standard error (SD / sqrt(R)), the
bias of the mean in units of SD(y) and the slope's relative bias. Also the per-cluster
ML estimates of rho (first chain's last draw), averaged over clusters and replications.

Acceptance (issue 7): with rho = 0.6, |bias of the mean| < 0.05 SD(y) and relative slope
bias < 10% with HeckmanSelection, MAR at least 3 times more biased; with rho = 0 both
unbiased (|bias| within 3 Monte Carlo SE); per-cluster rho centred on the truth.

Run: ``python benchmarks/validate_heckman.py [--reps 40] [--m 5] [--iter 5]``
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

from skmlmi import MultilevelIterativeImputer
from skmlmi.conditional import RandomEffectsNormal
from skmlmi.conditional.heckman import HeckmanSelection
from skmlmi.datasets.heckman import make_heckman

try:
    from _common import machine
except ImportError:  # run from another directory

    def machine() -> str:
        return ""


def estimates(frame: pd.DataFrame) -> tuple[float, float]:
    """Mean of y and OLS slope of y on x."""
    x, y = frame["x"].to_numpy(), frame["y"].to_numpy()
    xc = x - x.mean()
    return float(y.mean()), float(xc @ (y - y.mean()) / (xc @ xc))


def impute(data: pd.DataFrame, method: str, m: int, max_iter: int, seed: int):
    if method == "heckman":
        model = HeckmanSelection()
        matrix = {"x": {"y": 1}, "z": {"y": -3}, "cluster": {"y": -2}}
    else:
        model = RandomEffectsNormal()
        matrix = {"x": {"y": 1}, "z": {"y": 1}, "cluster": {"y": -2}}
    imp = MultilevelIterativeImputer(
        methods={"y": model}, predictor_matrix=matrix, n_imputations=m, max_iter=max_iter, random_state=seed
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sets = imp.fit_transform_all(data, groups="cluster")
    return imp, sets


def cluster_rho(imp) -> np.ndarray:
    """Per-cluster ML estimates of rho from the first chain's final HeckmanSelection draw."""
    draw = imp.final_draws_[0][imp.visit_sequence_.index("y")]
    draw = getattr(draw, "inner", draw)
    return np.where(draw.estimable, draw.rho_hat, np.nan)


def run(
    rho: float,
    reps: int,
    m: int,
    max_iter: int,
    n_clusters: int,
    cluster_size: int,
    missing_prop: float,
    seed0: int = 0,
) -> tuple[pd.DataFrame, np.ndarray]:
    rows, rhos = [], []
    for r in range(reps):
        data, complete, truth = make_heckman(
            n_clusters=n_clusters,
            cluster_size=cluster_size,
            rho=rho,
            missing_prop=missing_prop,
            random_state=seed0 + r,
            return_truth=True,
        )
        mean_c, slope_c = estimates(complete)
        for method in ("heckman", "mar"):
            imp, sets = impute(data, method, m, max_iter, seed0 + 1000 + r)
            est = np.array([estimates(s) for s in sets]).mean(axis=0)
            rows.append(
                {
                    "rep": r,
                    "method": method,
                    "mean_bias": est[0] - mean_c,
                    "slope_bias": est[1] - slope_c,
                    "slope_complete": slope_c,
                    "sd_y": float(complete["y"].std()),
                }
            )
            if method == "heckman":
                rhos.append(cluster_rho(imp))
    return pd.DataFrame(rows), np.concatenate(rhos)


def summarise(frame: pd.DataFrame, rhos: np.ndarray, rho: float) -> pd.DataFrame:
    out = []
    for method, part in frame.groupby("method", sort=False):
        R = len(part)
        sd_y = part["sd_y"].mean()
        slope = part["slope_complete"].mean()
        out.append(
            {
                "method": method,
                "reps": R,
                "mean_bias": part["mean_bias"].mean(),
                "mean_bias_mcse": part["mean_bias"].std() / np.sqrt(R),
                "mean_bias_per_sd": part["mean_bias"].mean() / sd_y,
                "slope_bias": part["slope_bias"].mean(),
                "slope_bias_mcse": part["slope_bias"].std() / np.sqrt(R),
                "slope_rel_bias": part["slope_bias"].mean() / slope,
            }
        )
    table = pd.DataFrame(out).set_index("method")
    finite = rhos[np.isfinite(rhos)]
    print(
        f"per-cluster rho estimates (true {rho}): mean {finite.mean():.3f}, median {np.median(finite):.3f}, "
        f"MC SE of the mean {finite.std() / np.sqrt(finite.size):.3f} (clusters x reps = {finite.size}; "
        f"{int(np.sum(~np.isfinite(rhos)))} not estimable)"
    )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--m", type=int, default=5)
    parser.add_argument("--iter", type=int, default=5)
    parser.add_argument("--clusters", type=int, default=15)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--missing", type=float, default=0.4)
    args = parser.parse_args()
    print(machine())
    print(
        f"make_heckman: {args.clusters} clusters x {args.size}, {args.missing:.0%} missing, exclusion restriction; "
        f"m = {args.m}, max_iter = {args.iter}, {args.reps} replications"
    )
    pd.set_option("display.width", 160)
    for rho in (0.6, 0.0):
        start = time.perf_counter()
        frame, rhos = run(rho, args.reps, args.m, args.iter, args.clusters, args.size, args.missing)
        print(f"\nrho = {rho} ({time.perf_counter() - start:.0f} s)")
        table = summarise(frame, rhos, rho)
        print(table.round(4).to_string())
        if rho != 0:
            h, mar = table.loc["heckman"], table.loc["mar"]
            print(
                f"MAR / Heckman |bias|: mean {abs(mar.mean_bias) / abs(h.mean_bias):.1f}x, "
                f"slope {abs(mar.slope_bias) / abs(h.slope_bias):.1f}x"
            )


if __name__ == "__main__":
    main()
