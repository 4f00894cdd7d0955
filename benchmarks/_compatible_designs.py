"""Known-truth designs of imputation compatible with the analysis model, shared by
``validate_compatible.py`` and its reduced CI test.

Each design draws clustered data with known parameters, makes covariates missing at random on
the outcome, imputes them by chained equations (the defaults, with the groups) and compatibly
with the analysis model (``analysis_model=``), fits the analysis model on every completed
dataset (and on the complete data), pools with Rubin's rules and returns one row per quantity
and method: estimate, its 95% interval and the truth.

Designs (J clusters of n rows; u0 ~ N(0, 0.3) unless said; MAR: P(missing) = expit(a + y_std)
calibrated to the stated share):

* ``random slope``: x = N(0, 0.2) cluster + N(0, 0.8); y = 1 + 0.5 x + u0 + u1 x + e,
  Var(u1) = 0.15, Var(e) = 0.5; x 30% missing; analysis ``y ~ x + (1 + x | g)`` (the design of
  the R anchor ``smc_anchor_r.R``);
* ``cross-level interaction``: w = N(0, 1) per cluster (complete); y = 1 + 0.5 x + 0.3 w +
  0.3 x w + u0 + e, Var(e) = 0.5; x 30% missing; analysis ``y ~ x * w + (1 | g)``;
* ``level-1 interaction``: x1, x2 correlated 0.3 (each ICC 0.2); y = 1 + 0.5 x1 + 0.4 x2 +
  0.3 x1 x2 + u0 + e; x1 and x2 each 25% missing; analysis ``y ~ x1 * x2 + (1 | g)``;
* ``quadratic``: y = 1 + 0.5 x + 0.25 x^2 + u0 + e; x 30% missing; analysis
  ``y ~ x + I(x ** 2) + (1 | g)``;
* ``logistic``: x continuous (ICC 0.2), z binary (P = expit(-0.3 + 0.5 x)); logit P(y = 1) =
  -0.5 + 0.6 x + 0.8 z + u0, Var(u0) = 0.5; x and z each 25% missing; analysis
  ``y ~ x + z + (1 | g)`` (logistic mixed model);
* ``random intercept``: y = 1 + 0.5 x + u0 + e; x 30% missing; analysis ``y ~ x + (1 | g)``,
  where chained equations are already right;
* ``cluster-level covariate``: z = N(0, 1) per cluster, y = 1 + 0.5 x + 0.3 z + 0.3 x z + u0 + e;
  z missing in 30% of the clusters, MAR on the cluster mean of y; analysis ``y ~ x * z + (1 | g)``.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
from scipy import special

from skmlmi import MIPooler, MultilevelIterativeImputer
from skmlmi.analysis import LinearMixedModel, LogisticMixedModel

DESIGNS = (
    "random slope",
    "cross-level interaction",
    "level-1 interaction",
    "quadratic",
    "logistic",
    "random intercept",
    "cluster-level covariate",
)
FORMULAS = {
    "random slope": "y ~ x + (1 + x | g)",
    "cross-level interaction": "y ~ x * w + (1 | g)",
    "level-1 interaction": "y ~ x1 * x2 + (1 | g)",
    "quadratic": "y ~ x + I(x ** 2) + (1 | g)",
    "logistic": "y ~ x + z + (1 | g)",
    "random intercept": "y ~ x + (1 | g)",
    "cluster-level covariate": "y ~ x * z + (1 | g)",
}
#: (quantity, truth, relative bound): fixed effects by name, variance components as "var:..."
CHECKS = {
    "random slope": [("x", 0.5, 0.02), ("var:x~~x|g", 0.15, 0.05), ("var:Residual~~Residual", 0.5, 0.03)],
    "cross-level interaction": [("x:w", 0.3, 0.05), ("x", 0.5, 0.05)],
    "level-1 interaction": [("x1:x2", 0.3, 0.05), ("x1", 0.5, 0.05), ("x2", 0.4, 0.05)],
    "quadratic": [("I(x ** 2)", 0.25, 0.05), ("x", 0.5, 0.05)],
    "logistic": [("x", 0.6, 0.05), ("z", 0.8, 0.05)],
    "random intercept": [("x", 0.5, 0.05), ("var:Intercept~~Intercept|g", 0.3, 0.05)],
    "cluster-level covariate": [("x:z", 0.3, 0.05)],
}
METHODS = ("complete", "chained", "compatible")
MISSING_SHARE = 0.3


def _mar(score: np.ndarray, share: float, rng) -> np.ndarray:
    """Rows missing with P = expit(a + standardised score), a set so that the expected share is ``share``."""
    z = (score - score.mean()) / score.std()
    lo, hi = -20.0, 20.0
    for _ in range(60):  # bisection on the intercept (a loop over iterations, not rows)
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if special.expit(mid + z).mean() < share else (lo, mid)
    return rng.random(len(z)) < special.expit(0.5 * (lo + hi) + z)


def simulate(design: str, rng, n_clusters: int = 100, cluster_size: int = 20) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Complete and incomplete data of one replication."""
    J, n = n_clusters, cluster_size
    g = np.repeat(np.arange(J), n)
    N = J * n

    def level1(icc=0.2):
        return rng.normal(0, np.sqrt(icc), J)[g] + rng.normal(0, np.sqrt(1 - icc), N)

    u0 = rng.normal(0, np.sqrt(0.3), J)[g]
    e = rng.normal(0, np.sqrt(0.5), N)
    data = {"g": g}
    if design == "random slope":
        x = level1()
        u1 = rng.normal(0, np.sqrt(0.15), J)[g]
        y = 1 + 0.5 * x + u0 + u1 * x + e
        data.update(y=y, x=x)
        incomplete = {"x": MISSING_SHARE}
    elif design == "cross-level interaction":
        x, w = level1(), rng.normal(0, 1, J)[g]
        y = 1 + 0.5 * x + 0.3 * w + 0.3 * x * w + u0 + e
        data.update(y=y, x=x, w=w)
        incomplete = {"x": MISSING_SHARE}
    elif design == "level-1 interaction":
        x1 = level1()
        x2 = 0.3 * x1 + np.sqrt(1 - 0.09) * level1()
        y = 1 + 0.5 * x1 + 0.4 * x2 + 0.3 * x1 * x2 + u0 + e
        data.update(y=y, x1=x1, x2=x2)
        incomplete = {"x1": 0.25, "x2": 0.25}
    elif design == "quadratic":
        x = level1()
        y = 1 + 0.5 * x + 0.25 * x**2 + u0 + e
        data.update(y=y, x=x)
        incomplete = {"x": MISSING_SHARE}
    elif design == "logistic":
        x = level1()
        z = (rng.random(N) < special.expit(-0.3 + 0.5 * x)).astype(float)
        u = rng.normal(0, np.sqrt(0.5), J)[g]
        y = (rng.random(N) < special.expit(-0.5 + 0.6 * x + 0.8 * z + u)).astype(float)
        data.update(y=y, x=x, z=z)
        incomplete = {"x": 0.25, "z": 0.25}
    elif design == "random intercept":
        x = level1()
        y = 1 + 0.5 * x + u0 + e
        data.update(y=y, x=x)
        incomplete = {"x": MISSING_SHARE}
    elif design == "cluster-level covariate":
        x, z = level1(), rng.normal(0, 1, J)
        y = 1 + 0.5 * x + 0.3 * z[g] + 0.3 * x * z[g] + u0 + e
        data.update(y=y, x=x, z=z[g])
        incomplete = {}
    else:
        raise ValueError(f"unknown design {design!r}; one of {DESIGNS}")
    full = pd.DataFrame(data)
    amputed = full.copy()
    score = full["y"].to_numpy() + (rng.normal(0, 1, N) if design == "logistic" else 0.0)
    for column, share in incomplete.items():
        amputed.loc[_mar(score, share, rng), column] = np.nan
    if design == "cluster-level covariate":  # whole clusters, MAR on the cluster mean of y
        ybar = np.bincount(g, weights=full["y"].to_numpy()) / n
        amputed.loc[_mar(ybar, MISSING_SHARE, rng)[g], "z"] = np.nan
    return full, amputed


def _analysis(design: str):
    formula = FORMULAS[design]
    return LogisticMixedModel(formula) if design == "logistic" else LinearMixedModel(formula)


def _pooled(design: str, datasets: list[pd.DataFrame]) -> dict:
    """Pooled estimates and 95% intervals of the checked quantities.

    The complete data are passed twice: with no between-imputation variance, Rubin's rules give
    the complete-data fit and its Wald interval.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = MIPooler(None, _analysis(design)).fit_completed(datasets).results_
    out = {}
    for quantity, _, _ in CHECKS[design]:
        if quantity.startswith("var:"):
            out[quantity] = (float(results.variance_components[quantity[4:]]), np.nan, np.nan)
        else:
            row = results.table.loc[quantity]
            out[quantity] = (float(row["estimate"]), float(row["conf_low"]), float(row["conf_high"]))
    return out


def replication(design: str, seed: int, m: int = 10, max_iter: int = 10, n_clusters: int = 100, cluster_size: int = 20):
    """Rows (design, rep, method, quantity, truth, estimate, low, high, seconds) of one replication."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, DESIGNS.index(design)]))
    full, amputed = simulate(design, rng, n_clusters, cluster_size)
    rows = []
    truth = {q: t for q, t, _ in CHECKS[design]}

    def record(method, datasets, seconds):
        for quantity, (est, low, high) in _pooled(design, datasets).items():
            rows.append(
                {
                    "design": design,
                    "rep": seed,
                    "method": method,
                    "quantity": quantity,
                    "truth": truth[quantity],
                    "estimate": est,
                    "low": low,
                    "high": high,
                    "seconds": seconds,
                }
            )

    record("complete", [full, full], 0.0)
    for method, analysis_model in (("chained", None), ("compatible", FORMULAS[design])):
        imputer = MultilevelIterativeImputer(
            n_imputations=m, max_iter=max_iter, random_state=seed, analysis_model=analysis_model
        )
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            datasets = imputer.fit_transform_all(amputed, groups="g")
        record(method, list(datasets), time.perf_counter() - started)
    return rows


def summarise(rows) -> pd.DataFrame:
    """Bias (relative to the truth) with its MC SE, the bound, coverage and mean time per design, quantity, method."""
    frame = pd.DataFrame(rows)
    out = []
    for (design, quantity, method), part in frame.groupby(["design", "quantity", "method"], sort=False):
        truth = part["truth"].iloc[0]
        bound = dict((q, b) for q, _, b in CHECKS[design])[quantity]
        rel = (part["estimate"] - truth) / abs(truth)
        covered = ((part["low"] <= truth) & (truth <= part["high"])).astype(float)
        rmse = float(np.sqrt(np.mean((part["estimate"] - truth) ** 2)))
        out.append(
            {
                "design": design,
                "quantity": quantity,
                "method": method,
                "R": len(part),
                "truth": truth,
                "mean": part["estimate"].mean(),
                "rel_bias": rel.mean(),
                "mc_se": rel.std(ddof=1) / np.sqrt(len(part)),
                "bound": bound,
                "coverage": covered.mean() if part["low"].notna().all() else np.nan,
                "rmse": rmse,
                "seconds": part["seconds"].mean(),
            }
        )
    return pd.DataFrame(out)
