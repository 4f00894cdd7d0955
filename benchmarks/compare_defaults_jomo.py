"""The validity matrix's hardest cells side by side: the package defaults and R's jomo (a joint model).

For each cell ``KIND:J:RHO`` of benchmarks/validate_defaults.py, the same replications (same
seeds, so the same data and amputations as the matrix) are imputed by the defaults and by
``jomo::jomo`` (the joint multivariate normal model with random intercepts, latent normal for
binary variables; x a level-2 outcome for the cluster-level kinds), m = 20 each, and analysed
and summarised with the matrix's own code and criteria. jomo runs 1,000 burn-in iterations and
100 between imputations (benchmarks/jomo_cells.R).

Why: three J = 30 cells of the matrix fail their criteria (cluster-level continuous tau^2,
cluster-level binary zbar, systematically missing binary intercept). Whether a joint model
meets them tells a defect of the defaults from a small-sample property of proper imputation
with about 21 observed clusters.

Needs R with jomo (``apt-get install r-base-core r-cran-jomo``). Run:
``python benchmarks/compare_defaults_jomo.py [--cells "cluster continuous:30:0.1" ...] [--reps 200]``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import machine
from _validity import _pooled_rows, ampute, analyse, replication, seed_sequence, simulate, summarise

FAILING_CELLS = ["cluster continuous:30:0.1", "cluster binary:30:0.1", "systematic binary:30:0.3"]
SCRIPT = Path(__file__).with_name("jomo_cells.R")


def jomo_rows(kind: str, J: int, icc: float, reps: range, m: int, nburn: int, nbetween: int, seed: int) -> list:
    """The matrix's rows (method "jomo") of jomo's imputations of the given replications."""
    cases = {}
    for rep in reps:
        data_seed, amputation_seed, _ = seed_sequence(seed, kind, J, icc, rep).spawn(3)
        complete, truth = simulate(kind, J, icc, np.random.default_rng(data_seed))
        cases[rep] = (complete, ampute(complete, kind, np.random.default_rng(amputation_seed)), truth)
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder, "in.csv"), Path(folder, "out.csv")
        pd.concat([incomplete.assign(rep=rep) for rep, (_, incomplete, _) in cases.items()]).to_csv(source, index=False)
        command = ["Rscript", str(SCRIPT), kind, str(source), str(target), str(nburn), str(nbetween), str(m)]
        subprocess.run(command, check=True, capture_output=True)
        imputed = pd.read_csv(target)
    rows = []
    for rep, (complete, incomplete, truth) in cases.items():
        part = imputed[imputed["rep"] == rep]
        sets = [incomplete.assign(x=part.loc[part["imp"] == k, "x"].to_numpy()) for k in range(1, m + 1)]
        groups = complete["g"].to_numpy()
        base = {"kind": kind, "J": J, "icc": icc, "rep": rep, "method": "jomo", "model": "jomo", "seconds": np.nan}
        rows += _pooled_rows(analyse(sets, kind, truth, groups, J), truth, base)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=FAILING_CELLS, metavar="KIND:J:RHO")
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--m", type=int, default=20)
    parser.add_argument("--nburn", type=int, default=1000)
    parser.add_argument("--nbetween", type=int, default=100)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args(argv)
    if shutil.which("Rscript") is None:
        print("Rscript not found: this comparison needs R with jomo.", file=sys.stderr)
        return 2
    print(machine())
    print("python benchmarks/compare_defaults_jomo.py " + " ".join(sys.argv[1:] if argv is None else argv))
    tables = []
    for cell in args.cells:
        kind, J, icc = cell.split(":")
        J, icc = int(J), float(icc)
        start = time.perf_counter()
        rows = []
        for rep in range(args.reps):
            rows += replication(kind, J, icc, rep, args.m, 10, args.seed, ("defaults",))
        middle = time.perf_counter()
        rows += jomo_rows(kind, J, icc, range(args.reps), args.m, args.nburn, args.nbetween, args.seed)
        print(f"{cell}: defaults {middle - start:.0f} s, jomo {time.perf_counter() - middle:.0f} s", flush=True)
        # summarise() reads its contrast from method "single-level": jomo takes that place, renamed below
        frame = pd.DataFrame(rows).replace({"method": {"jomo": "single-level"}})
        tables.append(summarise(frame))
    table = pd.concat(tables, ignore_index=True)
    columns = {"def_paired": "defaults", "def_paired_mcse": "MC SE", "def_cov": "cov", "def_tau2": "tau2"}
    columns |= {"sl_paired": "jomo", "sl_paired_mcse": "jomo MC SE", "sl_cov": "jomo cov", "sl_tau2": "jomo tau2"}
    shown = table[["kind", "role", "term", "J", "icc", "R", "bound", *columns]].rename(columns=columns)
    print("\npaired bias (pooled - complete data, same replication) with MC SE; bound: the matrix's; tau2: paired")
    print("bias of the analysis' random-intercept variance relative to its truth (bound 10%); cov: 95% CI coverage\n")
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(shown.round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
