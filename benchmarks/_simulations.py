"""Known-truth simulations shared by the validation scripts and their reduced CI tests.

Each replication draws data with known parameters, imputes, analyses with the model that
generated the data, pools with Rubin's rules and returns the pooled estimates, their
confidence intervals and the truth.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from skmlmi import MIPooler, MultilevelIterativeImputer
from skmlmi.analysis import LinearMixedModel
from skmlmi.conditional import PredictiveMeanMatching, RandomEffectsNormal
from skmlmi.datasets import make_multilevel

ANALYSIS = "y ~ x + w + (1 + x | cluster)"
FIXED = ["(Intercept)", "x", "w"]


def multilevel_methods(kind: str):
    """Imputation models of the random-slope simulation: multilevel, or single-level PMM."""
    if kind == "multilevel":
        # y's model mirrors the analysis; x gets y as a random-slope predictor (the usual
        # approximation to the congenial model of a covariate in a random-slope model)
        return (
            {"y": RandomEffectsNormal(), "x": RandomEffectsNormal()},
            {"x": {"y": 2}, "y": {"x": 2}, "w": {"y": 1, "x": 1}},
        )
    return ({"y": PredictiveMeanMatching(), "x": PredictiveMeanMatching()}, {"cluster": {"y": 0, "x": 0}})


def random_slope_replication(
    seed: int, kind: str = "multilevel", n_clusters: int = 60, cluster_size: int = 20, m: int = 10, max_iter: int = 5
) -> dict:
    """One replication: MAR in y and x (30% each), impute, fit the random-slope model, pool."""
    data, _, truth = make_multilevel(
        n_clusters=n_clusters,
        cluster_size=cluster_size,
        icc=0.2,
        missing="MAR",
        missing_prop=0.3,
        random_state=seed,
        return_truth=True,
    )
    methods, matrix = multilevel_methods(kind)
    imputer = MultilevelIterativeImputer(
        methods=methods, predictor_matrix=matrix, n_imputations=m, max_iter=max_iter, random_state=seed
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pooler = MIPooler(imputer, LinearMixedModel(ANALYSIS)).fit(data, groups="cluster")
    table = pooler.results_.table
    out = {"seed": seed, "kind": kind, "icc": pooler.results_.variance_components["ICC|cluster"], "icc_true": truth.icc}
    for term in FIXED:
        out[f"{term}_estimate"] = table.loc[term, "estimate"]
        out[f"{term}_covered"] = (
            table.loc[term, "conf_low"] <= truth.beta[_truth_name(term)] <= table.loc[term, "conf_high"]
        )
        out[f"{term}_true"] = truth.beta[_truth_name(term)]
    return out


def _truth_name(term: str) -> str:
    return "Intercept" if term == "(Intercept)" else term


def acceptance_region(n: int, p: float = 0.95, level: float = 0.99) -> tuple[float, float]:
    """Central ``level`` binomial acceptance region for a coverage rate over n replications."""
    low, high = stats.binom.interval(level, n, p)
    return low / n, high / n


def summarise(rows: list[dict]) -> pd.DataFrame:
    """Relative bias, coverage and ICC bias per imputation kind."""
    frame = pd.DataFrame(rows)
    out = []
    for kind, part in frame.groupby("kind", sort=False):
        for term in FIXED:
            truth = part[f"{term}_true"].iloc[0]
            est = part[f"{term}_estimate"]
            out.append(
                {
                    "kind": kind,
                    "quantity": term,
                    "truth": truth,
                    "mean": est.mean(),
                    "relative_bias": (est.mean() - truth) / truth,
                    "mc_se": est.std(ddof=1) / np.sqrt(len(est)),
                    "coverage": part[f"{term}_covered"].mean(),
                }
            )
        out.append(
            {
                "kind": kind,
                "quantity": "ICC",
                "truth": part["icc_true"].iloc[0],
                "mean": part["icc"].mean(),
                "relative_bias": np.nan,
                "mc_se": part["icc"].std(ddof=1) / np.sqrt(len(part)),
                "coverage": np.nan,
                "bias": part["icc"].mean() - part["icc_true"].iloc[0],
            }
        )
    return pd.DataFrame(out)
