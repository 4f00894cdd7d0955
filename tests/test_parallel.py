"""Chains and analysis fits on a Dask cluster give the same results as n_jobs=1."""

import warnings

import joblib
import pandas as pd
import pytest

from skmlmi import MIPooler, MultilevelIterativeImputer
from skmlmi.analysis import LinearMixedModel
from skmlmi.conditional import RandomEffectsNormal
from skmlmi.datasets import load_popmis

distributed = pytest.importorskip("dask.distributed", reason="the dask extra is not installed")


def _pooler(n_jobs):
    imputer = MultilevelIterativeImputer(
        methods={"popular": RandomEffectsNormal()}, n_imputations=4, max_iter=3, random_state=5, n_jobs=n_jobs
    )
    return MIPooler(imputer, LinearMixedModel("popular ~ sex + texp + (1 | school)"), n_jobs=n_jobs)


def test_dask_backend_gives_results_identical_to_one_job():
    data = load_popmis()[["school", "popular", "sex", "texp"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = _pooler(1).fit(data, groups="school")
        with (
            distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
            ) as cluster,
            distributed.Client(cluster),
        ):
            with joblib.parallel_config(backend="dask"):
                on_cluster = _pooler(-1).fit(data, groups="school")
    pd.testing.assert_frame_equal(on_cluster.results_.table, reference.results_.table)
    for a, b in zip(
        on_cluster.imputer_.imputations_["popular"].T, reference.imputer_.imputations_["popular"].T, strict=True
    ):
        pd.testing.assert_series_equal(pd.Series(a), pd.Series(b))
