"""BLAS thread pinning (skmlmi/_threads.py): chains and analysis fits run with one BLAS thread,
and the process's own setting comes back afterwards, also when chains run in threads."""

import threading
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, RegressorMixin
from threadpoolctl import threadpool_info, threadpool_limits

from skmlmi import MIPooler, MultilevelIterativeImputer
from skmlmi._threads import one_blas_thread
from skmlmi.conditional import RandomEffectsNormal
from skmlmi.datasets import load_popmis


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


@pytest.fixture
def two_blas_threads():
    """The process's BLAS setting during the test is 2 (1 on a one-core machine), as a user's might be."""
    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        if max(before) < 2:
            pytest.skip("one core: the BLAS libraries run one thread whatever is asked")
        yield before


def test_pin_taken_by_the_calling_thread_covers_its_worker_threads(two_blas_threads):
    # as with joblib's threading backend: the calling thread pins around the parallel section,
    # worker threads pin around each chain and finish in any order
    first_inside, second_inside, first_left = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with one_blas_thread():
            seen["first"] = _blas_threads()
            first_inside.set()
            second_inside.wait(10)
        first_left.set()

    def second():
        first_inside.wait(10)
        with one_blas_thread():
            second_inside.set()
            first_left.wait(10)
            seen["second, after the first left"] = _blas_threads()

    with one_blas_thread():
        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
    assert set(seen["first"]) == {1} and set(seen["second, after the first left"]) == {1}
    assert _blas_threads() == two_blas_threads


def test_pin_is_reentrant(two_blas_threads):
    with one_blas_thread():
        with one_blas_thread():
            assert set(_blas_threads()) == {1}
        assert set(_blas_threads()) == {1}
    assert _blas_threads() == two_blas_threads


@pytest.mark.parametrize("n_jobs, backend", [(1, "loky"), (2, "threading")])
def test_chains_run_with_one_blas_thread_and_leave_the_setting_as_it_was(two_blas_threads, n_jobs, backend):
    seen = []

    def record(values):  # post-processing runs inside the chain, where the draws are made
        seen.append(_blas_threads())
        return values

    data = load_popmis()[["school", "popular", "sex", "texp"]]
    imputer = MultilevelIterativeImputer(
        n_imputations=4, max_iter=2, random_state=1, n_jobs=n_jobs, post={"popular": record}
    )
    with warnings.catch_warnings(), joblib.parallel_config(backend=backend):
        warnings.simplefilter("ignore")
        imputer.fit(data, groups="school")
    assert len(seen) == 8 and all(set(threads) == {1} for threads in seen)
    assert _blas_threads() == two_blas_threads


class _RecordsBlasThreads(RegressorMixin, BaseEstimator):
    """A mean-only regressor that records the BLAS thread count its fit ran with."""

    def fit(self, X, y):
        self.blas_threads_ = _blas_threads()
        self.coef_ = pd.Series([float(np.mean(y))], index=["(Intercept)"])
        return self

    def predict(self, X):
        return np.full(len(X), self.coef_.iloc[0])


@pytest.mark.parametrize("n_jobs, backend", [(1, "loky"), (2, "threading")])
def test_analysis_fits_run_with_one_blas_thread(two_blas_threads, n_jobs, backend):
    # the fits of the main process (n_jobs=1) would otherwise use all threads and those of
    # loky workers fewer, and on large data the thread count moves a mixed model's estimates
    data = load_popmis()[["school", "popular", "sex", "texp"]]
    imputer = MultilevelIterativeImputer(n_imputations=2, max_iter=1, random_state=1)
    pooler = MIPooler(imputer, _RecordsBlasThreads(), n_jobs=n_jobs)
    with warnings.catch_warnings(), joblib.parallel_config(backend=backend):
        warnings.simplefilter("ignore")
        pooler.fit(data.drop(columns="popular"), data["popular"], groups="school")
    assert all(set(fit.blas_threads_) == {1} for fit in pooler.estimators_)
    assert _blas_threads() == two_blas_threads


def _every_default_kind(seed: int = 11) -> pd.DataFrame:
    """40 clusters of 5-40 rows with a column of every kind the defaults choose a model for."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(40), rng.integers(5, 41, 40))
    n, u = g.size, rng.normal(size=(40, 4))
    data = pd.DataFrame({"g": g, "z": rng.normal(size=n) + 0.5 * u[g, 0]})
    data["x"] = 0.5 * data["z"] + u[g, 1] + rng.normal(size=n)
    data["k"] = np.round(10 + data["z"] + 2 * u[g, 2] + 2 * rng.normal(size=n))
    data["b"] = (rng.random(n) < 1 / (1 + np.exp(-(0.8 * data["z"] + u[g, 3])))).astype(float)
    data["c"] = pd.Categorical(rng.choice(list("pqr"), n))
    data["sx"] = data["z"] + u[g, 1] + rng.normal(size=n)
    data["sb"] = (rng.random(n) < 0.4).astype(float)
    data["w"] = rng.normal(size=40)[g]
    data["wb"] = (rng.random(40) < 0.5).astype(float)[g]
    data["y"] = data["x"] + 0.3 * data["z"] + data["w"] + u[g, 0] + rng.normal(size=n)
    for column in ("x", "k", "b", "c"):
        data.loc[rng.random(n) < 0.2, column] = np.nan
    for column in ("sx", "sb", "w", "wb"):
        data.loc[np.isin(g, rng.choice(40, 8, replace=False)), column] = np.nan
    return data


def test_chains_in_threads_give_the_datasets_of_one_job_with_every_default_model():
    """Chains running at once in threads of one process share the plan and the model objects: none of
    the default models (normal, PMM, logistic, categorical, cluster-level) may keep a chain's state on
    them. Small data, so that the threads take turns often."""
    data = _every_default_kind()

    def run(n_jobs):  # and the normal model, a default before predictive mean matching took its place
        imputer = MultilevelIterativeImputer(
            methods={"x": RandomEffectsNormal()}, n_imputations=6, max_iter=3, random_state=3, n_jobs=n_jobs
        )
        with warnings.catch_warnings(), joblib.parallel_config(backend="threading"):
            warnings.simplefilter("ignore")
            return imputer.fit_transform_all(data, groups="g"), imputer

    reference, imputer = run(1)
    assert {type(m).__name__ for m in imputer.methods_.values()} >= {
        "RandomEffectsNormal", "RandomEffectsPMM", "RandomEffectsLogistic", "RandomEffectsCategorical",
        "ClusterLevelNormal", "ClusterLevelLogistic",
    }  # fmt: skip
    for _ in range(3):
        threaded, _ = run(2)
        for a, b in zip(reference, threaded, strict=True):
            pd.testing.assert_frame_equal(a, b)
