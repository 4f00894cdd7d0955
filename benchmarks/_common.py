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
