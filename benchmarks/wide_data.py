"""Wide data: more columns than the rows support (issue 14), before and after.

Designs (each fit in a fresh interpreter, timed around ``fit_transform_all`` only):

- ``30 x P``: 30 rows, P independent normal columns, one missing cell; ``n_imputations=1,
  max_iter=1`` (the issue's reproducer, ``skmlmi impute --m 1 --max-iter 1``), P = 100, 200,
  400, 2,001; and the same 2,001-column file through the command line, end to end.
- ``200 x 500, 20 clusters``: 500 variables from 5 latent factors with cluster random effects
  (ICC about 0.2), 10% missing completely at random in 50 of them, ``groups`` given,
  ``n_imputations=5, max_iter=5, n_jobs=2``.

Goals: 30 x 2,001 under 10 s; 200 x 500 under 60 s on 2 cores.

Run: python benchmarks/wide_data.py [--old PATH] [--repeats 3] [--old-timeout 300]
``--old`` is a checkout of the code before (e.g. ``git worktree add --detach /tmp/wide-old
0702d52``); its runs are interleaved with the new ones, and the table gives the median of each
and their ratio. A run of the old code longer than ``--old-timeout`` seconds is stopped and
reported as a lower bound (it is not repeated).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
NEW = HERE.parent


def narrow_wide(p: int, n: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.standard_normal((n, p)), columns=[f"x{i}" for i in range(p)])
    frame.iloc[3, 5] = np.nan
    return frame


def clustered_wide(n: int = 200, p: int = 500, clusters: int = 20, incomplete: int = 50, seed: int = 0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(clusters), n // clusters)
    factors = rng.standard_normal((n, 5)) + 0.5 * rng.standard_normal((clusters, 5))[g]
    X = factors @ rng.normal(0, 0.6, (5, p)) + 0.5 * rng.standard_normal((clusters, p))[g] + rng.standard_normal((n, p))
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(p)])
    for j in rng.choice(p, incomplete, replace=False):
        frame.iloc[rng.choice(n, n // 10, replace=False), j] = np.nan
    frame.insert(0, "g", g)
    return frame


def run(design: str) -> float:
    """Seconds of one fit (this interpreter imports whichever skmlmi is on its path)."""
    from skmlmi import MultilevelIterativeImputer

    warnings.simplefilter("ignore")
    if design == "clustered":
        frame, groups, params = clustered_wide(), "g", {"n_imputations": 5, "max_iter": 5, "n_jobs": 2}
    else:
        frame, groups, params = narrow_wide(int(design)), None, {"n_imputations": 1, "max_iter": 1}
    imputer = MultilevelIterativeImputer(random_state=1, **params)
    start = time.perf_counter()
    imputer.fit_transform_all(frame, groups=groups)
    return time.perf_counter() - start


def timed(code: Path, design: str, timeout: float | None) -> float | None:
    """Seconds of one fit in a fresh interpreter with ``code`` first on the path; None on timeout."""
    env = dict(os.environ, PYTHONPATH=str(code))
    # run from an empty directory: `python -m` puts the working directory first on the path,
    # ahead of PYTHONPATH, and a checkout there would be imported instead of ``code``
    with tempfile.TemporaryDirectory() as tmp:
        if design == "cli":
            data = Path(tmp) / "wide.csv"
            narrow_wide(2001).to_csv(data, index=False)
            command = [sys.executable, "-m", "skmlmi.cli", "impute", str(data), "--m", "1", "--max-iter", "1"]
            command += ["--seed", "1", "--quiet", "--out", str(Path(tmp) / "out.csv")]
            start = time.perf_counter()
            try:
                subprocess.run(command, env=env, cwd=tmp, check=True, capture_output=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                return None
            return time.perf_counter() - start
        command = [sys.executable, str(Path(__file__).resolve()), "--run", design]
        try:
            out = subprocess.run(command, env=env, cwd=tmp, check=True, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return float(out.stdout.strip().splitlines()[-1])


DESIGNS = [
    ("100", "30 x 100, 1 missing cell, m=1, max_iter=1"),
    ("200", "30 x 200, 1 missing cell, m=1, max_iter=1"),
    ("400", "30 x 400, 1 missing cell, m=1, max_iter=1"),
    ("2001", "30 x 2,001, 1 missing cell, m=1, max_iter=1"),
    ("cli", "30 x 2,001 through `skmlmi impute --m 1 --max-iter 1` (CSV in and out)"),
    ("clustered", "200 x 500 + clusters (20), 10% missing in 50 columns, m=5, max_iter=5, n_jobs=2"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, help="checkout of the code before, timed beside this one")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--old-timeout", type=float, default=300.0)
    parser.add_argument("--only", nargs="*", help="design keys to run (default: all)")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        import skmlmi

        if Path(skmlmi.__file__).resolve().parents[1] != Path(os.environ.get("PYTHONPATH", "")).resolve():
            raise SystemExit(f"imported {skmlmi.__file__}, not the code under PYTHONPATH")
        print(run(args.run))
        return
    sys.path.insert(0, str(HERE))
    from _common import machine

    print(machine())
    print("command: python " + " ".join([f"benchmarks/{Path(__file__).name}", *sys.argv[1:]]))
    if args.old:
        old_head = subprocess.run(
            ["git", "-C", str(args.old), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        print(f"old: {args.old} at {old_head.stdout.strip() or '?'}; new: {NEW}")
    print(
        f"median of {args.repeats} interleaved runs (old, new, old, new, ...); seconds of the fit only "
        "(CLI: the whole command)\n"
    )
    rows = []
    for key, label in DESIGNS:
        if args.only and key not in args.only:
            continue
        old_times, new_times, old_capped = [], [], False
        for _ in range(args.repeats):
            if args.old and not old_capped:
                seconds = timed(args.old, key, args.old_timeout)
                if seconds is None:
                    old_capped = True
                else:
                    old_times.append(seconds)
            new_times.append(timed(NEW, key, None))
        new = statistics.median(new_times)
        if not args.old:
            old_text, ratio = "", ""
        elif old_capped and not old_times:
            old_text, ratio = f"> {args.old_timeout:.0f}", f"> {args.old_timeout / new:.0f}"
        else:
            old = statistics.median(old_times)
            old_text, ratio = f"{old:.2f}", f"{old / new:.1f}"
        rows.append({"design": label, "old (s)": old_text, "new (s)": f"{new:.2f}", "old / new": ratio})
        print(
            f"  {label}: old {old_text or '-'}, new {new:.2f} (runs: {', '.join(f'{t:.2f}' for t in new_times)})",
            flush=True,
        )
    print()
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
