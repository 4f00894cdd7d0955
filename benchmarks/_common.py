"""Shared bits of the benchmark scripts: machine description, timing, R runner."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy
import sklearn

import skmlmi

SHARED = Path(__file__).resolve().parents[2] / "shared"


def machine() -> str:
    return (
        f"{platform.node()} | {platform.processor() or platform.machine()} | {os.cpu_count()} cores | "
        f"Python {platform.python_version()} | numpy {np.__version__} | scipy {scipy.__version__} | "
        f"pandas {pd.__version__} | scikit-learn {sklearn.__version__} | skmlmi {skmlmi.__version__}"
    )


def best_of(fn, repeat: int = 3) -> float:
    """Smallest wall time of ``repeat`` runs (seconds)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run_r(script: str) -> float | None:
    """Run an R script that prints one number (seconds); None when R/mice are absent."""
    if shutil.which("Rscript") is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False) as handle:
        handle.write(script)
    result = subprocess.run(["Rscript", handle.name], capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        print("R failed:", result.stderr.strip().splitlines()[-1:])
        return None
    return float(result.stdout.strip().splitlines()[-1])


def workers_peak_gib() -> float:
    """Sum of the peak resident memory (VmHWM, GiB) of this process's descendants, read from /proc (Linux).

    joblib's workers outlive a call (they are kept for the next one), so the operating system's
    peak of finished children never counts them. Each worker's own peak, summed: an upper bound of
    what they held at once."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, ValueError, IndexError):
            continue
    mine, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - mine
        mine |= frontier
    total = 0.0
    for pid in mine:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024**2
        except OSError:
            continue
    return total
