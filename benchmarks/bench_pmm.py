"""Speed of single-level PMM: popmis beside R's mice, and a 100,000-row synthetic problem.

Run: python benchmarks/bench_pmm.py
R's mice is timed in the same run when Rscript with mice is installed
(apt-get install -y --no-install-recommends r-base-core r-cran-mice).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from _common import best_of, machine, run_r

from skmlmi import MultilevelIterativeImputer
from skmlmi.conditional import PredictiveMeanMatching
from skmlmi.datasets import load_popmis

R_POPMIS = """
suppressMessages(library(mice))
d <- popmis[, c("school", "popular", "sex", "texp")]
pred <- make.predictorMatrix(d); pred[,] <- 0; pred["popular", c("sex", "texp")] <- 1
mt <- make.method(d); mt[] <- ""; mt["popular"] <- "pmm"
t <- min(replicate(3, system.time(mice(d, m = 5, maxit = 5, method = mt, predictorMatrix = pred,
                                        printFlag = FALSE, seed = 1))[["elapsed"]]))
cat(t, "\\n")
"""


def popmis_seconds() -> float:
    data = load_popmis()[["school", "popular", "sex", "texp"]]
    imp = MultilevelIterativeImputer(
        methods=PredictiveMeanMatching(),
        predictor_matrix={"school": {"popular": 0}},
        n_imputations=5,
        max_iter=5,
        random_state=1,
        n_jobs=1,
    )
    return best_of(lambda: imp.fit_transform_all(data, groups="school"))


def synthetic_seconds(n: int = 100_000, p: int = 5, share: float = 0.3) -> float:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, p))
    X[:, 1:] += X[:, [0]]
    X[rng.random((n, p)) < share] = np.nan
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(p)])
    imp = MultilevelIterativeImputer(
        methods=PredictiveMeanMatching(), n_imputations=5, max_iter=5, random_state=1, n_jobs=1
    )
    return best_of(lambda: imp.fit_transform_all(frame), repeat=1)


def main() -> None:
    warnings.simplefilter("ignore")
    print(machine())
    ours = popmis_seconds()
    r = run_r(R_POPMIS)
    print("\n| problem | skmlmi (s) | R mice (s) | R / skmlmi |\n| --- | --- | --- | --- |")
    ratio = f"{r / ours:.1f}x" if r else "R not installed"
    print(f"| popmis PMM, m=5, maxit=5, n_jobs=1 | {ours:.3f} | {r if r else '-'} | {ratio} |")
    big = synthetic_seconds()
    print(f"| synthetic 100,000 x 5, 30% missing per column, PMM, m=5, maxit=5, n_jobs=1 | {big:.2f} | - | - |")


if __name__ == "__main__":
    main()
