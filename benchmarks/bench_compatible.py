"""Speed of imputation compatible with the analysis model, against R's jomo.lmer in the same run.

The random-slope design of ``_compatible_designs.py`` (100 clusters x 20 rows, x 30% missing
at random on y, analysis ``y ~ x + (1 + x | g)``), m = 20:

* skmlmi ``analysis_model=``: 20 independent chains on one core (``n_jobs=1``, as jomo), of 10
  iterations (the default, and the settings of ``validate_compatible.py``) and of 5 iterations
  (``validate_compatible.py --designs "random slope" --max-iter 5`` holds the random-slope design's
  criteria at 5 iterations too). With ``n_jobs=2`` a job this small runs in this process anyway
  (worker processes would cost more than they save: ``IN_PROCESS_WORK`` in ``imputer.py``);
* jomo.lmer at the settings of the R anchor (``../shared/anchors-r/smc_anchor_r.R``, whose 83
  replications gave a slope variance within 0.1% of the complete data's): one chain, 1000
  burn-in iterations, then 100 iterations between imputations (2,900 iterations).

The same simulated datasets go to both; each repeat times one imputation call per method,
interleaved (R's time is measured inside R around ``jomo.lmer`` only, so R's start-up is not
counted against it). Medians over the repeats, and the ratio. Needs R with jomo
(``apt-get install r-base-core r-cran-jomo``); without it only skmlmi is timed.

Run::

    python benchmarks/bench_compatible.py --repeats 5
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _compatible_designs import FORMULAS, simulate  # noqa: E402

from skmlmi import MultilevelIterativeImputer  # noqa: E402

R_SCRIPT = r"""
suppressPackageStartupMessages(library(jomo))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
d$g <- factor(d$g)
set.seed(as.integer(args[2]))
t <- system.time(invisible(capture.output(
  imp <- jomo.lmer(y ~ x + (1 + x | g), data = d[, c("y", "x", "g")], level = c(1, 1, 1),
                   nburn = 1000, nbetween = 100, nimp = 20, output = 0, out.iter = 1e9))))
cat(t[["elapsed"]], "\n")
"""


def time_skmlmi(data: pd.DataFrame, max_iter: int, seed: int) -> float:
    imputer = MultilevelIterativeImputer(
        n_imputations=20, max_iter=max_iter, random_state=seed, n_jobs=1, analysis_model=FORMULAS["random slope"]
    )
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imputer.fit_transform_all(data, groups="g")
    return time.perf_counter() - started


def time_jomo(csv: Path, script: Path, seed: int) -> float:
    out = subprocess.run(["Rscript", str(script), str(csv), str(seed)], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    has_r = shutil.which("Rscript") is not None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "jomo.R"
        script.write_text(R_SCRIPT)
        # one untimed call first: the first call in a process pays for lazy imports and caches, as
        # R's library(jomo) is paid outside the timed call
        time_skmlmi(simulate("random slope", np.random.default_rng(args.repeats))[1], 10, 0)
        for rep in range(args.repeats):
            _, data = simulate("random slope", np.random.default_rng(rep))
            csv = Path(tmp) / f"data{rep}.csv"
            data.to_csv(csv, index=False)
            row = {"repeat": rep}
            row["skmlmi 10 iterations"] = time_skmlmi(data, 10, rep)
            if has_r:
                row["jomo.lmer"] = time_jomo(csv, script, rep)
            row["skmlmi 5 iterations"] = time_skmlmi(data, 5, rep)
            rows.append(row)
            print(row, flush=True)
    table = pd.DataFrame(rows).set_index("repeat")
    medians = table.median()
    print("\nmedian seconds per imputation (m = 20):")
    print(medians.round(3).to_string())
    if has_r:
        for column in ("skmlmi 10 iterations", "skmlmi 5 iterations"):
            ratios = table["jomo.lmer"] / table[column]
            print(
                f"jomo.lmer / {column}: {medians['jomo.lmer'] / medians[column]:.1f}x "
                f"(ratio of medians; per repeat {ratios.min():.1f}x to {ratios.max():.1f}x, "
                f"median {ratios.median():.1f}x)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
