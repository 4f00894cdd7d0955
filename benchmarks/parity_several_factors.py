"""Parity of LinearMixedModel with lme4 for several grouping factors (nested, crossed, random slopes).

Run from the repository root:  python benchmarks/parity_several_factors.py [--large]
Data: the package's copies of egsingle, insteval and pastes; references: tests/analysis/reference/
(lme4 1.1-31 fits of shared/anchors-r/multilevel3_reference.R and benchmarks/egsingle_rs_tight_reference.R).
Per model: max relative difference of fixed estimates (|d| / max(|ref|, SE) for near-zero estimates),
of their standard errors, of the variance components (variances and covariances), the REML
criterion or ML deviance relative to lme4's (ours minus lme4's; negative = a better optimum; lme4's
are rounded to 8 significant digits, 10 for the tight refits), and the fit's wall time.
``--large`` adds a timing of a simulated three-level design of 1M rows (1000 schools x 50 classes
x 20 pupils, 4 covariates): y ~ x1 + ... + x4 + (1 | school/class).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "analysis"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import machine  # noqa: E402
from test_mixed_several_factors import MODELS, REFERENCE, _component_name  # noqa: E402

from skmlmi.analysis import LinearMixedModel  # noqa: E402


def parity_table() -> pd.DataFrame:
    rows, fits = [], {}
    for (reference, model), (loader, formula, reml, _) in MODELS.items():
        table = pd.read_csv(REFERENCE / f"{reference}_lmer.csv")
        table = table[table.model == model]
        key = (loader.__name__, formula, reml)
        if key not in fits:
            data = loader()
            start = time.perf_counter()
            fits[key] = (LinearMixedModel(formula, reml=reml).fit(data), time.perf_counter() - start)
        fit, seconds = fits[key]
        fixed = table[table.kind == "fixed"].set_index("term")
        se = np.sqrt(np.diag(fit.cov_params_.loc[fixed.index, fixed.index]))
        scale = np.maximum(fixed.estimate.abs(), fixed.std_error)
        components = table[table.kind.isin(["variance", "covariance"])]
        names = [_component_name(g, t) for g, t in zip(components.group, components.term, strict=True)]
        ours = fit.variance_components_[names].to_numpy()
        criterion = table[(table.kind == "fit") & table.term.isin(["REMLcrit", "deviance"])].estimate.iloc[0]
        rows.append(
            {
                "file": f"{reference}_lmer.csv",
                "model": model,
                "fixed": float(np.max(np.abs(fit.coef_[fixed.index] - fixed.estimate) / scale)),
                "std_error": float(np.max(np.abs(se - fixed.std_error) / fixed.std_error)),
                "components": float(np.max(np.abs(ours - components.estimate) / components.estimate.abs())),
                "criterion_rel": float((-2 * fit.loglik_ - criterion) / criterion),
                "fit_s": seconds,
            }
        )
    return pd.DataFrame(rows)


def large_nested(seed: int = 1) -> tuple[float, pd.Series]:
    rng = np.random.default_rng(seed)
    n_school, n_class, n_pupil = 1000, 50, 20
    school = np.repeat(np.arange(n_school), n_class * n_pupil)
    klass = np.repeat(np.arange(n_school * n_class), n_pupil)
    X = rng.normal(size=(school.shape[0], 4))
    y = (
        X @ np.array([0.5, -0.3, 0.2, 0.1])
        + rng.normal(0, np.sqrt(0.1), n_school)[school]
        + rng.normal(0, np.sqrt(0.15), n_school * n_class)[klass]
        + rng.normal(0, np.sqrt(0.75), school.shape[0])
    )
    data = pd.DataFrame({"school": school, "class": klass % n_class, "y": y})
    for j in range(4):
        data[f"x{j + 1}"] = X[:, j]
    start = time.perf_counter()
    fit = LinearMixedModel("y ~ x1 + x2 + x3 + x4 + (1 | school/class)").fit(data)
    return time.perf_counter() - start, fit.variance_components_


def main() -> None:
    print(machine())
    with pd.option_context("display.width", 160, "display.float_format", "{:.2e}".format):
        print(parity_table().to_string(index=False))
    if "--large" in sys.argv:
        seconds, components = large_nested()
        print(f"\n1M rows, 1000 schools x 50 classes, (1 | school/class): fit {seconds:.1f} s")
        print(components.round(4).to_string())


if __name__ == "__main__":
    main()
