"""Known-truth validation of the random-effects imputation, reduced for CI.

The full version (200 replications) is benchmarks/validate_random_effects.py. Here 24
replications: the 99% binomial acceptance region for a 95% coverage rate over 24 runs
is [0.83, 1.0], and the bias targets (relative bias < 5%, |ICC bias| < 0.02) get three
Monte Carlo standard errors of the 24-run mean on top, the noise a reduced run adds.
"""

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _simulations import FIXED, acceptance_region, random_slope_replication, summarise  # noqa: E402

from skmlmi import MultilevelIterativeImputer  # noqa: E402
from skmlmi.conditional import RandomEffectsNormal  # noqa: E402
from skmlmi.datasets import load_popmis  # noqa: E402
from skmlmi.diagnostics import rhat  # noqa: E402

REPS = 24


@pytest.fixture(scope="module")
def simulation():
    rows = [random_slope_replication(seed) for seed in range(REPS)]
    rows += [random_slope_replication(seed, "single") for seed in range(6)]
    return summarise(rows).set_index(["kind", "quantity"])


def test_random_effects_imputation_recovers_known_truth(simulation):
    low, high = acceptance_region(REPS)
    multilevel = simulation.loc["multilevel"]
    for term in FIXED:
        row = multilevel.loc[term]
        assert abs(row["mean"] - row["truth"]) < 0.05 * abs(row["truth"]) + 3 * row["mc_se"], term
        assert low <= row["coverage"] <= high, term
    icc = multilevel.loc["ICC"]
    assert abs(icc["bias"]) < 0.02 + 3 * icc["mc_se"]


def test_single_level_pmm_is_biased_in_the_icc(simulation):
    # truth 0.2; ignoring the clusters halves it (about -0.10 here), far beyond MC error
    single = simulation.loc[("single", "ICC")]
    assert single["bias"] < -0.05 and single["bias"] + 4 * single["mc_se"] < 0


def test_chains_converge_on_popmis():
    """20 chains x 20 iterations: split-R-hat of the chain means and variances below 1.1."""
    data = load_popmis()[["school", "popular", "sex", "texp"]]
    imp = MultilevelIterativeImputer(
        methods={"popular": RandomEffectsNormal()},
        predictor_matrix={"sex": {"popular": 2}},
        n_imputations=20,
        max_iter=20,
        random_state=3,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imp.fit(data, groups="school")
    assert rhat(imp.chain_mean_[:, :, 0]) < 1.1
    assert rhat(imp.chain_var_[:, :, 0]) < 1.1
    assert np.isfinite(imp.chain_mean_).all()
