"""Test configuration: where the R reference results live.

``shared/`` (R's reference results and the example data) sits beside the repository in
the project's checkouts and CI; ``SKMLMI_SHARED`` overrides it. Tests that need it skip
when it is absent.
"""

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

_ROOT = Path(__file__).resolve().parents[1]
_CANDIDATES = [os.environ.get("SKMLMI_SHARED", ""), _ROOT.parent / "shared", _ROOT / "shared"]
os.environ["SKMLMI_SHARED"] = str(
    next((Path(c) for c in _CANDIDATES if c and Path(c, "reference").is_dir()), _ROOT.parent / "shared")
)
