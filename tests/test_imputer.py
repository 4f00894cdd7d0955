"""The chained-equations engine: data handling, contracts, reproducibility, bad input."""

import os
import pickle
import time
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline

import skmlmi.imputer as imputer_module
from skmlmi import MultilevelIterativeImputer
from skmlmi.conditional import BayesianLogistic, BayesianNormal, PredictiveMeanMatching, RandomEffectsNormal
from skmlmi.conditional.two_stage import TwoStageNormal
from skmlmi.datasets import load_popmis
from skmlmi.predictors import make_predictor_matrix

PMM = PredictiveMeanMatching()


@pytest.fixture(scope="module")
def popmis():
    return load_popmis()[["school", "popular", "sex", "texp"]]


@pytest.fixture
def mixed_frame():
    """Every column kind, with missing values in each."""
    rng = np.random.default_rng(3)
    n = 240
    school = np.repeat(np.arange(12), 20)
    x = rng.normal(size=n) + school * 0.1
    frame = pd.DataFrame(
        {
            "school": school,
            "x": x,
            "count": rng.poisson(3 + (x > 0), size=n).astype(float),
            "flag": (x + rng.normal(size=n) > 0).astype(float),
            "colour": pd.Categorical(rng.choice(["red", "green", "blue"], size=n)),
            "grade": pd.Categorical(
                rng.choice(["low", "mid", "high"], size=n), categories=["low", "mid", "high"], ordered=True
            ),
            "label": pd.Series(rng.choice(["a", "b"], size=n), dtype="str"),
        }
    )
    for k, column in enumerate(["x", "count", "flag", "colour", "grade", "label"]):
        rows = rng.choice(n, size=25 + k, replace=False)
        frame.loc[rows, column] = np.nan if frame[column].dtype.kind == "f" else None
    return frame


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# ----------------------------------------------------------------------------- data round trip
def test_dataframe_round_trip_keeps_names_dtypes_and_categories(mixed_frame):
    imp = MultilevelIterativeImputer(n_imputations=2, max_iter=2, random_state=0)
    sets = _quiet(imp.fit_transform_all, mixed_frame)
    assert len(sets) == 2
    for out in sets:
        assert list(out.columns) == list(mixed_frame.columns)
        assert out.isna().sum().sum() == 0
        for column in mixed_frame.columns:
            assert out[column].dtype == mixed_frame[column].dtype, column
        assert list(out["grade"].cat.categories) == ["low", "mid", "high"] and out["grade"].cat.ordered
        assert set(out["label"]) <= {"a", "b"}
        assert np.all(out["count"] == np.round(out["count"]))  # integer kind stays integer
        assert set(out["flag"]) <= {0.0, 1.0}
        observed = mixed_frame.notna()
        for column in mixed_frame.columns:
            pd.testing.assert_series_equal(out[column][observed[column]], mixed_frame[column][observed[column]])


def test_column_kinds_detected_and_overridable(mixed_frame):
    imp = MultilevelIterativeImputer(n_imputations=1, max_iter=1, random_state=0)
    _quiet(imp.fit, mixed_frame)
    kinds = {codec.name: codec.kind for codec in imp._layout.codecs}
    assert kinds == {
        "school": "integer",
        "x": "continuous",
        "count": "integer",
        "flag": "binary",
        "colour": "categorical",
        "grade": "categorical",
        "label": "binary",
    }
    imp = MultilevelIterativeImputer(
        n_imputations=1,
        max_iter=1,
        column_kinds={"count": "continuous"},
        methods={"count": BayesianNormal()},
        random_state=0,
    )
    out = _quiet(imp.fit_transform, mixed_frame)
    assert not np.all(out["count"] == np.round(out["count"]))


def test_array_in_array_out():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3))
    X[rng.random((100, 3)) < 0.2] = np.nan
    out = MultilevelIterativeImputer(n_imputations=2, max_iter=2, random_state=0).fit_transform(X)
    assert isinstance(out, np.ndarray) and out.shape == X.shape and not np.isnan(out).any()


def test_an_array_keeps_its_cluster_labels_and_its_categories_labels():
    # the working matrix holds 0 in the cluster column and codes for categories: an array input must come back
    # with its labels (it came back with a column of zeros, and 0/1 for 'p'/'q')
    A = np.array([[10, 1.0], [10, np.nan], [10, 3.0], [20, 4.0], [20, 5.0], [20, np.nan], [30, 2.0], [30, 1.0]])
    imp = MultilevelIterativeImputer(n_imputations=2, max_iter=1, random_state=0)
    for out in (_quiet(imp.fit_transform, A, groups=0), *_quiet(imp.fit_transform_all, A, groups=0), imp.transform(A)):
        assert out.dtype == float and np.array_equal(out[:, 0], A[:, 0]) and not np.isnan(out).any()
        observed = ~np.isnan(A[:, 1])
        assert np.array_equal(out[observed, 1], A[observed, 1])
    labelled = np.array(
        [["a", 1.0, "p"], ["a", np.nan, "q"], ["a", 3.0, None], ["b", 4.0, "p"], ["b", 5.0, "q"], ["b", np.nan, "p"],
         ["c", 2.0, "q"], ["c", 1.0, "p"]], dtype=object,
    )  # fmt: skip
    out = _quiet(imp.fit_transform, labelled, groups=0)
    assert out.dtype == object and list(out[:, 0]) == list(labelled[:, 0])
    assert set(out[:, 2]) == {"p", "q"} and list(out[[0, 1, 3], 2]) == ["p", "q", "p"]
    dropped = MultilevelIterativeImputer(n_imputations=1, max_iter=1, random_state=0, keep_groups=False)
    assert _quiet(dropped.fit_transform, A, groups=0).shape == (8, 1)
    # asked for a DataFrame, each column typed by its values (an object array's numbers are numbers)
    framed = _quiet(imp.set_output(transform="pandas").fit_transform, labelled, groups=0)
    assert list(framed.columns) == ["x0", "x1", "x2"] and framed["x1"].dtype == float
    assert list(framed["x0"]) == list(labelled[:, 0]) and set(framed["x2"]) == {"p", "q"}


def test_whole_numbers_beyond_2_to_the_53_are_refused_where_they_would_be_imputed():
    # the float64 working copy merges neighbouring values there (2**62 + 0..4 all became 2**62, and PMM imputed
    # numbers no row held); a complete column is returned exactly and passes
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"g": rng.integers(0, 15, 300), "x": rng.normal(size=300)})
    big = pd.array(rng.integers(0, 5, 300) + 2**62, dtype="Int64")
    incomplete = data.assign(t=big)
    incomplete.loc[rng.random(300) < 0.2, "t"] = pd.NA
    imp = MultilevelIterativeImputer(n_imputations=2, max_iter=1, random_state=0)
    for t in (incomplete["t"], incomplete["t"].astype(object)):
        with pytest.raises(ValueError, match=r"Column 't' holds whole numbers beyond 2\*\*53"):
            _quiet(imp.fit, data.assign(t=t), groups="g")
    complete = data.assign(t=big, x=data["x"].where(rng.random(300) > 0.2))
    out = _quiet(imp.fit_transform, complete, groups="g")
    assert out["t"].equals(complete["t"])


def test_caller_data_never_modified(popmis):
    before = popmis.copy(deep=True)
    imp = MultilevelIterativeImputer(methods=PMM, n_imputations=2, max_iter=2, random_state=0)
    _quiet(imp.fit_transform_all, popmis, groups="school")
    _quiet(imp.transform, popmis)
    pd.testing.assert_frame_equal(popmis, before)


def test_fit_transform_all_returns_the_chains_completed_data(popmis):
    imp = MultilevelIterativeImputer(methods=PMM, n_imputations=3, max_iter=3, random_state=1)
    sets = _quiet(imp.fit_transform_all, popmis, groups="school")
    missing = popmis["popular"].isna().to_numpy()
    for c in range(3):
        np.testing.assert_array_equal(sets[c]["popular"].to_numpy()[missing], imp.imputations_["popular"][:, c])
    assert imp.chain_mean_.shape == (3, 3, 1) and imp.chain_var_.shape == (3, 3, 1)
    np.testing.assert_allclose(imp.chain_mean_[:, -1, 0], imp.imputations_["popular"].mean(axis=0))
    long = sets.long()
    assert long.shape == (3 * len(popmis), popmis.shape[1] + 2)
    assert list(long.columns[:2]) == [".imp", ".id"] and sorted(long[".imp"].unique()) == [1, 2, 3]
    assert sets.long(include_original=popmis)[".imp"].min() == 0
    one = _quiet(
        MultilevelIterativeImputer(methods=PMM, n_imputations=3, max_iter=3, random_state=1).fit_transform,
        popmis,
        groups="school",
    )
    pd.testing.assert_frame_equal(one, sets[0])


def test_no_missing_values_is_identity():
    X = np.arange(12.0).reshape(4, 3)
    imp = MultilevelIterativeImputer(n_imputations=2, random_state=0).fit(X)
    np.testing.assert_array_equal(imp.transform(X), X)
    assert imp.chain_mean_.shape == (2, 10, 0)


# ----------------------------------------------------------------------------- groups
@pytest.mark.parametrize("labels", ["int", "str", "categorical"])
def test_groups_labels_of_any_type(popmis, labels):
    data = popmis.copy()
    if labels == "str":
        data["school"] = "s" + data["school"].astype(str)
    elif labels == "categorical":
        data["school"] = pd.Categorical(data["school"].astype(str))
    fixed = {"school": {"popular": 1}}
    imp = MultilevelIterativeImputer(methods=PMM, predictor_matrix=fixed, n_imputations=1, max_iter=2, random_state=0)
    out = _quiet(imp.fit_transform, data, groups="school")
    assert out["popular"].notna().all()
    pd.testing.assert_series_equal(out["school"], data["school"])
    # the same clusters given as an array give the same imputations
    imp2 = MultilevelIterativeImputer(methods=PMM, predictor_matrix=None, n_imputations=1, max_iter=2, random_state=0)
    _quiet(imp2.fit, data.drop(columns="school"), groups=data["school"].to_numpy())
    assert len(imp2.cluster_labels_) == 100


def test_groups_column_name_remembered_for_transform(popmis):
    imp = MultilevelIterativeImputer(methods=PMM, n_imputations=2, max_iter=2, random_state=0)
    _quiet(imp.fit, popmis, groups="school")
    out = _quiet(imp.transform, popmis)
    assert out["popular"].notna().all()


def test_array_groups_must_be_passed_again(popmis):
    X = popmis.drop(columns="school")
    imp = MultilevelIterativeImputer(methods=PMM, n_imputations=1, max_iter=1, random_state=0)
    _quiet(imp.fit, X, groups=popmis["school"].to_numpy())
    with pytest.raises(ValueError, match="pass groups"):
        imp.transform(X)
    assert _quiet(imp.transform, X, groups=popmis["school"].to_numpy())["popular"].notna().all()


def test_groups_with_nan_or_wrong_length_is_an_error(popmis):
    imp = MultilevelIterativeImputer(methods=PMM, n_imputations=1, max_iter=1)
    groups = np.array(popmis["school"], dtype=float)
    groups[5] = np.nan
    with pytest.raises(ValueError, match="missing labels"):
        imp.fit(popmis.drop(columns="school"), groups=groups)
    with pytest.raises(ValueError, match="length"):
        imp.fit(popmis, groups=np.arange(10))
    with pytest.raises(ValueError, match="not a column"):
        imp.fit(popmis, groups="class")


def test_keep_groups_false_drops_the_cluster_column(popmis):
    imp = MultilevelIterativeImputer(methods=PMM, n_imputations=1, max_iter=1, keep_groups=False, random_state=0)
    out = _quiet(imp.fit_transform, popmis, groups="school")
    assert "school" not in out.columns
    assert list(imp.get_feature_names_out()) == ["popular", "sex", "texp"]


def test_single_level_model_with_cluster_id_warns_once(popmis):
    imp = MultilevelIterativeImputer(methods=PMM, n_imputations=2, max_iter=3, random_state=0)
    with pytest.warns(UserWarning, match="ignores the clustering") as record:
        imp.fit(popmis, groups="school")
    assert sum("ignores the clustering" in str(w.message) for w in record) == 1


def test_fixed_cluster_imputation_refuses_unseen_clusters(popmis):
    imp = MultilevelIterativeImputer(
        methods=PMM, predictor_matrix={"school": {"popular": 1}}, n_imputations=1, max_iter=1, random_state=0
    )
    _quiet(imp.fit, popmis, groups="school")
    new = popmis.head(30).copy()
    new["school"] = 999
    with pytest.raises(ValueError, match=r"clusters \['999'\] are new.*random-effects model"):
        imp.transform(new)


# ----------------------------------------------------------------------------- reproducibility
@pytest.fixture(scope="module")
def reference_run(popmis):
    imp = MultilevelIterativeImputer(methods=PMM, n_imputations=4, max_iter=3, random_state=7, n_jobs=1)
    return _quiet(imp.fit_transform_all, popmis, groups="school")


@pytest.mark.parametrize("n_jobs, backend", [(2, "loky"), (-1, "loky"), (2, "threading")])
def test_results_identical_for_any_n_jobs_and_backend(popmis, reference_run, n_jobs, backend, monkeypatch):
    # popmis is small enough to run in this process whatever n_jobs says: the threshold set to 0 sends the
    # chains to the workers, whose results must be the same
    monkeypatch.setattr(imputer_module, "IN_PROCESS_WORK", 0)
    monkeypatch.setattr(imputer_module, "COLD_START_WORK", 0)
    imp = MultilevelIterativeImputer(methods=PMM, n_imputations=4, max_iter=3, random_state=7, n_jobs=n_jobs)
    with joblib.parallel_config(backend=backend):
        sets = _quiet(imp.fit_transform_all, popmis, groups="school")
    for ours, ref in zip(sets, reference_run, strict=True):
        pd.testing.assert_frame_equal(ours, ref)


def test_small_jobs_run_in_this_process_and_larger_ones_in_workers(popmis, reference_run, monkeypatch):
    # Starting worker processes costs more than popmis' whole job: it runs here (joblib is not called), with the
    # results of n_jobs=1; above the threshold the chains go to joblib.
    calls = []

    class CountingParallel(joblib.Parallel):
        def __call__(self, iterable):
            calls.append(self.n_jobs)
            return super().__call__(iterable)

    monkeypatch.setattr(imputer_module, "Parallel", CountingParallel)
    imp = MultilevelIterativeImputer(methods=PMM, n_imputations=4, max_iter=3, random_state=7, n_jobs=2)
    sets = _quiet(imp.fit_transform_all, popmis, groups="school")
    assert calls == []
    for ours, ref in zip(sets, reference_run, strict=True):
        pd.testing.assert_frame_equal(ours, ref)
    work = len(popmis) * 1 * 3 * 4  # rows x targets x iterations x chains
    monkeypatch.setattr(imputer_module, "IN_PROCESS_WORK", work)  # not below it: workers, once they run
    monkeypatch.setattr(imputer_module, "_workers_running", lambda: True)
    _quiet(imp.fit_transform_all, popmis, groups="school")
    assert calls == [2]
    # while no worker runs yet, starting them pays only from COLD_START_WORK (row-visits x design columns)
    monkeypatch.setattr(imputer_module, "_workers_running", lambda: False)
    weighted = len(popmis) * 3 * 4 * (len(imp._fitted.plan.targets[0].predictors) + 1)
    monkeypatch.setattr(imputer_module, "COLD_START_WORK", weighted + 1)
    sets = _quiet(imp.fit_transform_all, popmis, groups="school")
    assert calls == [2]
    for ours, ref in zip(sets, reference_run, strict=True):
        pd.testing.assert_frame_equal(ours, ref)
    monkeypatch.setattr(imputer_module, "COLD_START_WORK", weighted)
    _quiet(imp.fit_transform_all, popmis, groups="school")
    assert calls == [2, 2]


def test_live_workers_are_seen_after_a_parallel_call():
    # the cold-start rule reads loky's executor: after a parallel call its workers are there to be seen
    joblib.Parallel(n_jobs=2, backend="loky")(joblib.delayed(abs)(-k) for k in range(4))
    assert imputer_module._workers_running()


def test_transform_is_deterministic_and_survives_pickling(popmis, tmp_path):
    imp = MultilevelIterativeImputer(methods=PMM, n_imputations=2, max_iter=2, random_state=3)
    _quiet(imp.fit, popmis, groups="school")
    first = _quiet(imp.transform, popmis)
    pd.testing.assert_frame_equal(first, _quiet(imp.transform, popmis))
    clone = pickle.loads(pickle.dumps(imp))
    pd.testing.assert_frame_equal(first, _quiet(clone.transform, popmis))
    joblib.dump(imp, tmp_path / "imp.joblib")
    pd.testing.assert_frame_equal(first, _quiet(joblib.load(tmp_path / "imp.joblib").transform, popmis))
    others = _quiet(imp.transform_all, popmis)
    assert len(others) == 2 and not others[0].equals(others[1])


def test_transform_completes_rows_with_several_missing_values(mixed_frame):
    imp = MultilevelIterativeImputer(n_imputations=1, max_iter=2, random_state=0)
    _quiet(imp.fit, mixed_frame)
    new = mixed_frame.head(40).copy()
    new.loc[new.index[:10], ["x", "count", "colour"]] = np.nan
    out = _quiet(imp.transform, new)
    assert out.isna().sum().sum() == 0


# ----------------------------------------------------------------------------- sklearn integration
def test_set_output_pandas_and_feature_names():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    X[::7, 0] = np.nan
    imp = MultilevelIterativeImputer(n_imputations=1, max_iter=1, random_state=0).set_output(transform="pandas")
    out = imp.fit_transform(X)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == ["x0", "x1"]


def test_pipeline_with_groups_routed(popmis):
    data = popmis.dropna(subset=["popular"]).copy()
    y = data.pop("popular").to_numpy()
    data.loc[data.index[::5], "sex"] = np.nan
    X, groups = data.drop(columns="school"), data["school"].to_numpy()
    with sklearn.config_context(enable_metadata_routing=True):
        imp = MultilevelIterativeImputer(
            methods=PMM,
            n_imputations=1,
            max_iter=2,
            keep_groups=False,
            random_state=0,
            column_kinds={"sex": "continuous"},
        )
        imp.set_fit_request(groups=True).set_transform_request(groups=True)
        pipe = Pipeline([("impute", imp), ("model", Ridge())])
        _quiet(pipe.fit, X, y, groups=groups)
        prediction = _quiet(pipe.predict, X, groups=groups)
    assert prediction.shape == (len(X),) and np.isfinite(prediction).all()


# ----------------------------------------------------------------------------- bad input
def test_bad_input_gives_clear_errors(popmis):
    imp = MultilevelIterativeImputer(methods=PMM, n_imputations=1, max_iter=1)
    with pytest.raises(TypeError, match="'when'"):
        imp.fit(popmis.assign(when=pd.Timestamp("2020-01-01")))
    with pytest.raises(ValueError, match="'empty' is entirely missing"):
        imp.fit(popmis.assign(empty=np.nan))
    with pytest.raises(ValueError, match="'sex' contains infinite"):
        imp.fit(popmis.assign(sex=np.where(popmis["sex"] == 1, np.inf, 0.0)))
    with pytest.raises(ValueError, match="unknown columns"):
        MultilevelIterativeImputer(predictor_matrix={"nope": {"popular": 1}}).fit(popmis, groups="school")
    with pytest.raises(ValueError, match="not a role code"):
        MultilevelIterativeImputer(predictor_matrix={"sex": {"popular": 7}}).fit(popmis, groups="school")
    with pytest.raises(ValueError, match="n_imputations"):
        MultilevelIterativeImputer(n_imputations=0).fit(popmis)
    with pytest.raises(ValueError, match=r"cannot honour role code 2 .*'sex' of 'popular'.*RandomEffects"):
        MultilevelIterativeImputer(methods=PMM, predictor_matrix={"sex": {"popular": 2}}).fit(popmis, groups="school")
    with pytest.raises(TypeError, match="methods\\['popular'\\]"):
        MultilevelIterativeImputer(methods={"popular": Ridge()}).fit(popmis)


def test_clusters_of_one_row_and_constant_or_collinear_predictors():
    rng = np.random.default_rng(5)
    n = 150
    frame = pd.DataFrame({"g": np.r_[np.repeat(np.arange(20), 7), np.arange(20, 30)], "x": rng.normal(size=n)})
    frame["x2"] = 2 * frame["x"] + 1  # perfectly collinear
    frame["c"] = 3.0  # constant
    frame["y"] = frame["x"] + rng.normal(size=n)
    frame.loc[rng.choice(n, 40, replace=False), "y"] = np.nan
    imp = MultilevelIterativeImputer(methods=BayesianNormal(), n_imputations=2, max_iter=2, random_state=0)
    with pytest.warns(UserWarning, match="see logged_events_"):
        out = imp.fit_transform(frame, groups="g")
    assert out["y"].notna().all() and np.isfinite(out["y"]).all()
    reasons = " ".join(imp.logged_events_["reason"])
    assert "'c' dropped: constant" in reasons and "collinear" in reasons
    assert list(imp.logged_events_.columns) == ["iteration", "chain", "column", "reason", "count", "chains"]
    # each event once, counted over the 2 chains x 2 iterations it happened in
    constant = imp.logged_events_[imp.logged_events_["reason"].str.contains("'c' dropped: constant")]
    assert len(constant) == 1 and constant[["count", "chains"]].to_numpy().tolist() == [[4, 2]]


def test_visit_sequences(mixed_frame):
    imp = MultilevelIterativeImputer(n_imputations=1, max_iter=1, visit_sequence="monotone", random_state=0)
    _quiet(imp.fit, mixed_frame)
    counts = mixed_frame[imp.visit_sequence_].isna().sum().to_numpy()
    assert np.all(np.diff(counts) >= 0)
    imp.set_params(visit_sequence=["x", "count", "x", "flag", "colour", "grade", "label"])
    _quiet(imp.fit, mixed_frame)
    assert imp.visit_sequence_.count("x") == 2
    with pytest.raises(ValueError, match="leaves out"):
        imp.set_params(visit_sequence=["x"]).fit(mixed_frame)


def test_columns_complete_at_fit_are_imputed_in_new_data(popmis):
    imp = MultilevelIterativeImputer(n_imputations=2, max_iter=2, random_state=0)
    _quiet(imp.fit, popmis, groups="school")
    new = popmis.head(100).copy()
    new.loc[new.index[:20], "sex"] = np.nan
    new.loc[new.index[20:40], "texp"] = np.nan
    first = _quiet(imp.transform, new)
    assert first.isna().sum().sum() == 0 and set(first["sex"]) <= {0, 1}
    # texp is constant within schools (a cluster-level model): one value per school, an observed one
    filled = first.loc[new.index[20:40]]
    assert (filled.groupby("school")["texp"].nunique() == 1).all()
    assert set(filled["texp"]) <= set(popmis["texp"])
    pd.testing.assert_frame_equal(first, _quiet(imp.transform, new))


@pytest.mark.parametrize("transform", [lambda x: x * 1e-12, lambda x: x + 1e12], ids=["tiny-units", "huge-offset"])
@pytest.mark.parametrize(
    ("model", "role"),
    [(RandomEffectsNormal, 1), (RandomEffectsNormal, 2), (TwoStageNormal, 1)],
    ids=["fixed", "random-slope", "two-stage"],
)
def test_predictors_in_tiny_units_or_with_huge_offsets_are_not_dropped(transform, model, role):
    # a predictor whose SD is small against its mean or against 1 still varies; the
    # constant-column check must not drop it (it did below an absolute SD of 1e-10 or
    # 1e-10 |mean|), so the imputations keep the slope of y on x (0.7 per SD of x)
    rng = np.random.default_rng(3)
    J, n_j = 30, 20
    groups = np.repeat(np.arange(J), n_j)
    x = rng.normal(size=J * n_j)
    y = 0.7 * x + rng.normal(0, 0.5, J)[groups] + rng.normal(0, 0.5, J * n_j)
    missing = rng.random(J * n_j) < 0.3
    data = pd.DataFrame({"g": groups, "x": transform(x), "y": np.where(missing, np.nan, y)})
    imp = MultilevelIterativeImputer(
        methods={"y": model()}, predictor_matrix={"y": {"x": role}}, n_imputations=1, max_iter=1, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = imp.fit_transform(data, groups="g")
    assert not imp.logged_events_["reason"].str.contains("constant").any()
    slope = np.polyfit(x[missing], out.loc[missing, "y"], 1)[0]
    # the draw's slope has SE ~ 0.6 / sqrt(180) ~ 0.05 (residual SD with cluster effects
    # drawn ~0.6); 0.25 leaves 5 SE, while a dropped x gives a slope near 0
    assert abs(slope - 0.7) < 0.25, slope


# ----------------------------------------------------------------------------- default predictor matrix
def test_default_matrix_gives_level1_predictors_their_cluster_means(popmis):
    data = popmis.copy()
    data["aux"] = np.random.default_rng(0).normal(size=len(data))
    data.loc[data.index[::7], "sex"] = np.nan
    imp = _quiet(MultilevelIterativeImputer(n_imputations=1, max_iter=1, random_state=0).fit, data, groups="school")
    matrix = imp.predictor_matrix_
    # level-1 predictors of the random-effects targets: code 3; texp is constant within schools: 1
    assert matrix.loc["popular", ["sex", "aux", "texp", "school"]].tolist() == [3, 3, 1, -2]
    assert matrix.loc["sex", ["popular", "aux", "texp"]].tolist() == [3, 3, 1]
    # the completed data do not depend on whether the codes were given or defaulted
    given = {"sex": {"popular": 3}, "aux": {"popular": 3, "sex": 3}, "popular": {"sex": 3}}
    explicit = MultilevelIterativeImputer(
        n_imputations=2, max_iter=2, random_state=0, predictor_matrix=given, cluster_means=False
    )
    default = MultilevelIterativeImputer(n_imputations=2, max_iter=2, random_state=0)
    for a, b in zip(
        _quiet(explicit.fit_transform_all, data, groups="school"),
        _quiet(default.fit_transform_all, data, groups="school"),
        strict=True,
    ):
        pd.testing.assert_frame_equal(a, b)


def test_cluster_means_follow_the_user_and_the_model(popmis):
    data = popmis.copy()
    data.loc[data.index[::7], "sex"] = np.nan
    # a user's code is kept; cluster_means=False gives mice's matrix
    imp = _quiet(
        MultilevelIterativeImputer(n_imputations=1, max_iter=1, predictor_matrix={"sex": {"popular": 1}}).fit,
        data,
        groups="school",
    )
    assert imp.predictor_matrix_.loc["popular", "sex"] == 1 and imp.predictor_matrix_.loc["sex", "popular"] == 3
    imp = _quiet(
        MultilevelIterativeImputer(n_imputations=1, max_iter=1, cluster_means=False).fit, data, groups="school"
    )
    assert (imp.predictor_matrix_.drop(columns="school").to_numpy() <= 1).all()
    # models with cluster-specific coefficients or no clusters take no default cluster means
    imp = _quiet(
        MultilevelIterativeImputer(
            n_imputations=1,
            max_iter=1,
            methods={"popular": TwoStageNormal(), "sex": BayesianLogistic()},
            predictor_matrix={"school": {"sex": 0}},
        ).fit,
        data,
        groups="school",
    )
    assert imp.predictor_matrix_.loc["popular", "sex"] == 1 and imp.predictor_matrix_.loc["sex", "popular"] == 1
    imp = _quiet(MultilevelIterativeImputer(n_imputations=1, max_iter=1).fit, data.drop(columns="school"))
    assert (imp.predictor_matrix_.to_numpy() <= 1).all()


def test_default_cluster_means_need_enough_observed_clusters(popmis):
    # 12 schools observe popular: intercept + texp + mean(sex) = 3 cluster-level terms need 30
    data = popmis[popmis["school"] <= 12].copy()
    imp = _quiet(MultilevelIterativeImputer(n_imputations=1, max_iter=1).fit, data, groups="school")
    assert imp.predictor_matrix_.loc["popular", "sex"] == 1
    assert imp.logged_events_["reason"].str.contains(r"cluster means of \['sex'\] left out").any()
    # asked for, they are kept
    imp = _quiet(
        MultilevelIterativeImputer(n_imputations=1, max_iter=1, predictor_matrix={"sex": {"popular": 3}}).fit,
        data,
        groups="school",
    )
    assert imp.predictor_matrix_.loc["popular", "sex"] == 3
    # 30 schools: enough
    imp = _quiet(
        MultilevelIterativeImputer(n_imputations=1, max_iter=1).fit, popmis[popmis["school"] <= 30], groups="school"
    )
    assert imp.predictor_matrix_.loc["popular", "sex"] == 3


# --------------------------------------------------------------------------- wide data
def _wide(p, n=30, seed=0, groups=None):
    """n rows, p noise columns x0.., y depending on x3 and x7 and missing in its first 5 rows."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"x{k}" for k in range(p)])
    frame["y"] = frame["x3"] + frame["x7"] + 0.3 * rng.normal(size=n)
    frame.loc[:4, "y"] = np.nan
    if groups is not None:
        frame.insert(0, "g", np.arange(n) % groups)
    return frame


def test_predictors_the_rows_cannot_support_are_reduced_by_quickpreds_rule_and_logged():
    frame = _wide(400, n=60)  # y is observed on 55 rows: room for 18 predictors
    imp = MultilevelIterativeImputer(n_imputations=1, max_iter=1, random_state=0)
    with pytest.warns(UserWarning, match=r"y: 18 of 400 predictors kept"):
        out = imp.fit_transform(frame)
    row = imp.predictor_matrix_.loc["y"]
    kept = set(row.index[row != 0])
    assert len(kept) == 18 and {"x3", "x7"} <= kept
    events = imp.logged_events_[imp.logged_events_["reason"].str.contains("predictors kept")]
    assert events[["iteration", "chain", "column"]].values.tolist() == [[0, 0, "y"]]
    assert "quickpred" in events["reason"].iloc[0] and out["y"].notna().all()
    # deterministic, and the columns' units do not matter
    scaled = frame * np.logspace(-6, 6, frame.shape[1]) + 1e3
    again = _quiet(MultilevelIterativeImputer(n_imputations=1, max_iter=1, random_state=5).fit, scaled)
    pd.testing.assert_series_equal(again.predictor_matrix_.loc["y"], row)
    # a column with enough rows keeps every predictor
    small = _quiet(MultilevelIterativeImputer(n_imputations=1, max_iter=1).fit, frame[["x3", "x7", "x9", "y"]])
    assert (small.predictor_matrix_.loc["y"] != 0).sum() == 3


def test_predictor_matrix_entries_are_never_dropped_by_the_reduction():
    frame = _wide(200)
    imp = _quiet(
        MultilevelIterativeImputer(predictor_matrix={"x150": {"y": 1}}, n_imputations=1, max_iter=1).fit, frame
    )
    row = imp.predictor_matrix_.loc["y"]
    assert row["x150"] == 1 and (row != 0).sum() == 8 and {"x3", "x7"} <= set(row.index[row != 0])
    # a matrix given in full is used as given, with a logged warning that the rows cannot support it
    full = MultilevelIterativeImputer(
        predictor_matrix=make_predictor_matrix(frame.columns), n_imputations=1, max_iter=1
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        full.fit(frame)
    assert any(
        "y: 200 predictor columns for 25 rows" in str(w.message) and "kept as set" in str(w.message) for w in caught
    )
    assert (full.predictor_matrix_.loc["y"] != 0).sum() == 200


def test_reduction_counts_cluster_means_and_keeps_the_cluster_column():
    frame = _wide(150, n=120, groups=40)  # 115 rows observe y: 38 predictor columns
    imp = _quiet(MultilevelIterativeImputer(n_imputations=1, max_iter=1, random_state=0).fit, frame, groups="g")
    row = imp.predictor_matrix_.loc["y"]
    assert row["g"] == -2
    columns = int(((row == 1) | (row == 2)).sum() + 2 * ((row == 3) | (row == 4)).sum())
    assert 0 < columns <= 115 // 3 and {"x3", "x7"} <= set(row.index[row > 0])
    assert imp.logged_events_["reason"].str.contains("predictors kept").any()


def test_cluster_fixed_effects_take_one_row_per_cluster_from_the_budget():
    frame = _wide(150, n=120, groups=40)
    imp = MultilevelIterativeImputer(methods=PMM, predictor_matrix={"g": {"y": 1}}, n_imputations=1, max_iter=1)
    _quiet(imp.fit, frame, groups="g")
    row = imp.predictor_matrix_.loc["y"].drop("g")
    assert row["x3"] == row["x7"] == 1 and 0 < (row != 0).sum() <= (115 - 40) // 3
    assert imp.logged_events_["reason"].str.contains("115 rows observing it less its 40 cluster fixed effects").any()


def test_thirty_rows_and_2001_columns_impute_in_seconds():
    # The reproducer: was still running after 313 s (one eigendecomposition per dropped column).
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(30, 2001)), columns=[f"x{k}" for k in range(2001)])
    frame.iloc[3, 5] = np.nan
    start = time.perf_counter()
    out = _quiet(MultilevelIterativeImputer(n_imputations=1, max_iter=1, random_state=0).fit_transform, frame)
    assert time.perf_counter() - start < 60 and out.notna().all().all()


def test_redundancy_check_factorises_once_for_a_wide_matrix_given_in_full(monkeypatch):
    # 30 rows, 800 predictors kept as given: 771 are dropped as collinear at each draw, from one
    # factorisation (the old loop made one eigendecomposition per dropped column).
    frame = _wide(800)
    calls = []
    for name in ("eigh", "svd"):
        original = getattr(np.linalg, name)
        monkeypatch.setattr(np.linalg, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    imp = MultilevelIterativeImputer(predictor_matrix=make_predictor_matrix(frame.columns), n_imputations=1, max_iter=2)
    _quiet(imp.fit, frame)
    events = imp.logged_events_
    dropped = events.loc[events["reason"].str.contains("dropped: collinear"), "count"]
    assert len(dropped) == 800 - 24 and dropped.sum() == 2 * (800 - 24)  # per visit: 25 rows and an intercept
    # support 24 columns; each column's event once, counted over the 2 visits
    assert len(calls) <= 2 * 2  # per visit: one factorisation and one check of the kept columns


def test_thousands_of_logged_events_give_a_bounded_number_of_warnings():
    # 30 rows x 400 columns, the matrix given in full: hundreds of "collinear: dropped" events
    rng = np.random.default_rng(4)
    data = pd.DataFrame(rng.normal(size=(30, 400)), columns=[f"c{j}" for j in range(400)])
    data.iloc[0, 0] = np.nan
    matrix = make_predictor_matrix(list(data.columns))
    imp = MultilevelIterativeImputer(predictor_matrix=matrix, n_imputations=1, max_iter=1, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        imp.fit(data)
    assert len(imp.logged_events_) > 100
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(messages) <= 21
    assert messages[-1].endswith("more events for 1 column(s) (see logged_events_)")


# --------------------------------------------------------------------------- hostile inputs


def _small_imputer(**params):
    return MultilevelIterativeImputer(**{"n_imputations": 2, "max_iter": 2, "random_state": 1, **params})


def test_tuple_column_names_work_as_groups_and_in_the_predictor_matrix(six_clusters):
    # tuples used to be read as arrays of labels (groups) and turned the matrix into a MultiIndex (KeyError 2)
    data = six_clusters.set_axis([("a", 1), ("b", 1), ("c", 2)], axis=1)
    out = _quiet(_small_imputer().fit_transform, data, groups=("a", 1))
    assert list(out.columns) == list(data.columns)
    assert out[("c", 2)].notna().all()
    assert _quiet(_small_imputer().fit_transform, data)[("c", 2)].notna().all()


def test_methods_naming_unknown_or_cluster_column_is_an_error(six_clusters):
    with pytest.raises(ValueError, match=r"methods names \['q'\]"):
        _small_imputer(methods={"q": PredictiveMeanMatching()}).fit(six_clusters, groups="g")
    with pytest.raises(ValueError, match="cluster column 'g'"):
        _small_imputer(methods={"g": PredictiveMeanMatching()}).fit(six_clusters, groups="g")


def test_groups_true_is_a_type_error_not_a_length_mismatch(six_clusters):
    with pytest.raises(TypeError, match="groups=True"):
        _small_imputer().fit(six_clusters, groups=True)


def test_groups_series_with_permuted_index_is_aligned_on_the_rows(six_clusters):
    # a Series indexed like the data but in another order used to be read by position
    data = six_clusters.drop(columns="g")
    labels = six_clusters["g"]
    shuffled = labels.iloc[np.random.default_rng(0).permutation(len(labels))]
    imp = _quiet(_small_imputer(n_imputations=1).fit, data, groups=shuffled)
    np.testing.assert_array_equal(imp._fitted.plan.groups, labels.to_numpy())
    # with an array X there is no index to align on: the Series is positional
    imp = _quiet(_small_imputer(n_imputations=1).fit, data.to_numpy(), groups=shuffled)
    np.testing.assert_array_equal(imp._fitted.plan.groups, shuffled.to_numpy())


def test_transform_chain_beyond_the_chains_fails_before_fitting(six_clusters):
    with pytest.raises(ValueError, match="transform_chain=5"):
        _small_imputer(transform_chain=5).fit(six_clusters, groups="g")


def test_object_column_of_bools_comes_back_as_bools(six_clusters):
    data = six_clusters.copy()
    data["b"] = pd.Series(np.arange(len(data)) % 3 == 0, dtype=object)
    data.loc[[1, 2, 4], "b"] = None
    out = _quiet(_small_imputer().fit_transform, data, groups="g")
    assert all(isinstance(v, bool) for v in out["b"])  # used to be 1.0 / 0.0, observed cells included
    assert out["b"].iloc[0] is True and out["b"].iloc[3] is True


def test_observed_integers_beyond_float_precision_are_kept_exactly(six_clusters):
    # the float working copy rounds 2**60 + 1 to 2**60; a complete column of such numbers (a predictor) must
    # come back with the caller's values (an incomplete one is refused: see the 2**53 test)
    data = six_clusters.copy()
    data["big"] = pd.array(np.arange(len(data), dtype=np.int64) + 2**60, dtype="Int64")
    original = data.copy()
    out = _quiet(_small_imputer().fit_transform, data, groups="g")
    assert (out["big"] == original["big"]).all() and out["big"].dtype == "Int64"
    assert out.drop(columns="big").notna().all().all()
    pd.testing.assert_frame_equal(data, original)  # the caller's data untouched


def test_over_imputed_observed_cells_still_show_their_imputations(six_clusters):
    where = six_clusters.isna().to_numpy()
    where[:3, 1] = True  # over-impute three observed x
    out = _quiet(_small_imputer().fit_transform, six_clusters, groups="g", where=where)
    assert not np.allclose(out["x"].iloc[:3], six_clusters["x"].iloc[:3])
    assert (out["x"].iloc[3:] == six_clusters["x"].iloc[3:]).all()


@pytest.mark.parametrize("scale", [1e300, 1e-300])
def test_values_beyond_the_numerics_range_are_an_error_naming_the_column(six_clusters, scale):
    # 1e300 crashed in LAPACK ("SVD did not converge"); 1e-300 silently imputed one repeated value
    data = six_clusters.assign(z=six_clusters["x"] * scale)
    data.loc[:4, "z"] = np.nan
    with pytest.raises(ValueError, match="Column 'z' holds values of magnitude"):
        _small_imputer().fit(data, groups="g")


# (a 2-D array with several columns is several grouping factors: tests/conditional/test_multiple_factors.py)
@pytest.mark.parametrize("groups", [[[0, 1]] * 60, np.zeros((60, 1))])
def test_groups_of_more_than_one_dimension_are_named_as_groups(six_clusters, groups):
    with pytest.raises(ValueError, match="groups must be a column name or one cluster label per row"):
        _small_imputer().fit(six_clusters.drop(columns="g"), groups=groups)


def test_object_column_with_pandas_na_is_numeric_with_missing_values(six_clusters):
    data = six_clusters.assign(y=six_clusters["y"].astype(object))
    data.loc[1, "y"] = pd.NA
    out = _quiet(_small_imputer().fit_transform, data, groups="g")
    observed = six_clusters["y"].notna().to_numpy().copy()
    observed[1] = False
    assert not out["y"].isna().any() and out["y"][observed].astype(float).equals(six_clusters["y"][observed])


def test_text_where_fit_saw_numbers_is_an_error_naming_the_column(six_clusters):
    imp = _quiet(_small_imputer().fit, six_clusters, groups="g")
    with pytest.raises(TypeError, match="Column 'x' was numeric at fit but holds text now"):
        imp.transform(six_clusters.assign(x=six_clusters["x"].astype(str)))


@pytest.mark.parametrize("option", ["bounds", "post"])
def test_bounds_and_post_on_the_cluster_column_are_errors(six_clusters, option):
    value = (0, 1) if option == "bounds" else np.round
    with pytest.raises(ValueError, match=f"{option} names the cluster column 'g'"):
        _small_imputer(**{option: {"g": value}}).fit(six_clusters, groups="g")


def test_bounds_on_a_categorical_column_are_an_error(six_clusters):
    data = six_clusters.assign(c=pd.Categorical(np.where(np.arange(60) % 7 == 0, None, list("abc") * 20)))
    with pytest.raises(ValueError, match="bounds names 'c', a categorical column"):
        _small_imputer(bounds={"c": (0, 1)}).fit(data, groups="g")


def test_methods_for_a_complete_column_must_be_able_to_impute_its_kind(six_clusters):
    data = six_clusters.assign(c=pd.Categorical(list("abc") * 20))  # complete: its model serves new data
    with pytest.raises(ValueError, match="PredictiveMeanMatching cannot impute 'c', a categorical column"):
        _small_imputer(methods={"c": PredictiveMeanMatching()}).fit(data, groups="g")


def test_long_format_refuses_clashing_columns_and_non_frames(six_clusters):
    sets = _quiet(_small_imputer().fit_transform_all, six_clusters.rename(columns={"x": ".imp"}), groups="g")
    with pytest.raises(ValueError, match=r"columns named \['.imp'\], which the long format adds"):
        sets.long()
    with pytest.raises(TypeError, match="include_original must be the incomplete data frame; got str"):
        sets.long(include_original="data")


def test_continue_fit_refuses_a_boolean_iteration_count(six_clusters):
    imp = _quiet(_small_imputer().fit, six_clusters, groups="g")
    with pytest.raises(ValueError, match="n_iter must be a positive integer"):
        imp.continue_fit(True)


@pytest.mark.parametrize(
    "matrix, error, match",
    [
        ({"x": 1}, TypeError, r"predictor_matrix\['x'\] is int"),
        ({"x": {"y": np.inf}}, ValueError, r"predictor_matrix\['y', 'x'\] is inf"),
        ({"x": {"y": "one"}}, ValueError, r"predictor_matrix\['y', 'x'\] is 'one'"),
        (pd.DataFrame(1, index=["y", "y"], columns=["x", "g"]), ValueError, r"repeats the labels \['y'\]"),
    ],
)
def test_malformed_predictor_matrices_name_the_entry(six_clusters, matrix, error, match):
    with pytest.raises(error, match=match):
        _small_imputer(predictor_matrix=matrix).fit(six_clusters, groups="g")


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="parallel chains need two cores")
def test_two_jobs_are_not_slower_than_one_on_a_mid_sized_job(monkeypatch):
    # Parallel chains must pay off once the workers are up: the median of interleaved fits with n_jobs=2 is at
    # most 1.15 times that with n_jobs=1, on 100,000 rows x 5 incomplete variables, m = 4, 6 iterations (24
    # million row-visits, above the in-process threshold). Ratios, not times. The test suite runs on both cores
    # (pytest -n 2), so the other core is usually busy with another test: measured 0.59 on 2 free cores, 0.90 to
    # 1.0 with the other core busy; 5 pairs, not 3, for a steadier median.
    rng = np.random.default_rng(0)
    n = 100_000
    cluster = np.repeat(np.arange(n // 10), 10)
    values = rng.normal(size=(n, 5)) + rng.normal(size=(n // 10, 5))[cluster]
    values[rng.random(values.shape) < 0.3] = np.nan
    data = pd.DataFrame(values, columns=[f"x{k}" for k in range(5)]).assign(cluster=cluster)
    assert n * 5 * 6 * 4 >= imputer_module.IN_PROCESS_WORK
    monkeypatch.setattr(imputer_module, "COLD_START_WORK", 0)  # the first call starts the workers, as it did

    def seconds(n_jobs):
        imp = MultilevelIterativeImputer(n_imputations=4, max_iter=6, random_state=0, n_jobs=n_jobs)
        start = time.perf_counter()
        _quiet(imp.fit, data, groups="cluster")
        return time.perf_counter() - start

    seconds(2)  # start the workers (joblib keeps them for the next calls)

    def median_ratio():
        times = {1: [], 2: []}
        for _ in range(5):
            for n_jobs in (1, 2):
                times[n_jobs].append(seconds(n_jobs))
        return np.median(times[2]) / np.median(times[1]), times

    # a heavy test on the other core can hold a whole round of pairs (a clean clone's run gave 1.20, its 2-job
    # fits rising from 1.5 to 2.4 s as the other worker's test started): one more round, the same bound
    ratio, times = median_ratio()
    if ratio > 1.15:
        ratio, times = median_ratio()
    assert ratio <= 1.15, times


def test_warnings_point_at_the_users_own_line_whatever_the_call_path(popmis):
    # An event warned from deep in the engine must name the line of the user's call, through fit, fit_transform,
    # fit_transform_all and a Pipeline alike (a fixed stacklevel pointed at sklearn/base.py on some of them), and
    # say the column once ("popular: 'popular': ..." repeated it).
    def imputer():
        return MultilevelIterativeImputer(
            methods={"popular": BayesianNormal()}, n_imputations=1, max_iter=1, random_state=0
        )

    calls = {
        "fit": lambda: imputer().fit(popmis, groups="school"),
        "fit_transform": lambda: imputer().fit_transform(popmis, groups="school"),
        "fit_transform_all": lambda: imputer().fit_transform_all(popmis, groups="school"),
        "pipeline": lambda: Pipeline([("impute", imputer().set_params(groups_column="school"))]).fit_transform(popmis),
    }
    for how, call in calls.items():
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            call()
        single = [w for w in record if "single-level" in str(w.message)]
        assert single, how
        assert all(w.filename == __file__ for w in single), (how, {w.filename for w in single})
    assert not any(str(w.message).startswith("popular: 'popular'") for w in record)


def test_long_format_keeps_the_row_labels(popmis):
    # mice's long format carries the row names: here the datasets' row labels are the long frame's index, one
    # repeat per imputation, so a row's m values are found by its label; .id stays the position.
    data = popmis.set_index(popmis.index * 10 + 7)
    imp = MultilevelIterativeImputer(methods=PMM, n_imputations=3, max_iter=2, random_state=2)
    sets = _quiet(imp.fit_transform_all, data, groups="school")
    long = sets.long(include_original=data)
    label = data.index[data["popular"].isna().to_numpy()][0]
    rows = long.loc[label]
    assert rows[".imp"].tolist() == [0, 1, 2, 3] and rows["popular"].iloc[1:].notna().all()
    assert (
        list(long.index[: len(data)]) == list(data.index)
        and (long[".id"].to_numpy()[: len(data)] == range(len(data))).all()
    )


def test_broad_and_repeated_layouts_put_the_datasets_side_by_side_as_mice(six_clusters):
    # mice::complete(imp, "broad") orders the columns by imputation (x.1 y.1 x.2 y.2 ...), "repeated" by
    # variable (x.1 x.2 ... y.1 y.2 ...); both keep the row names. Values are the datasets' own.
    data = six_clusters.set_index(six_clusters.index * 3 + 5)
    sets = _quiet(_small_imputer(n_imputations=3).fit_transform_all, data, groups="g")
    broad, repeated = sets.broad(), sets.repeated()
    names = list(data.columns)
    assert list(broad.columns) == [f"{n}.{k}" for k in (1, 2, 3) for n in names]
    assert list(repeated.columns) == [f"{n}.{k}" for n in names for k in (1, 2, 3)]
    for frame in (broad, repeated):
        assert list(frame.index) == list(data.index)
        for k in (1, 2, 3):
            pd.testing.assert_series_equal(frame[f"y.{k}"], sets.complete(k)["y"], check_names=False)
    clash = data.assign(**{"y.2": 0.0})
    sets = _quiet(_small_imputer(n_imputations=2).fit_transform_all, clash, groups="g")
    with pytest.raises(ValueError, match=r"Columns \['y.2'\] have the names the wide layout gives"):
        sets.broad()


def test_broad_layout_of_polars_datasets_is_polars_with_the_callers_dtypes(six_clusters):
    pl = pytest.importorskip("polars")
    data = pl.from_pandas(six_clusters.assign(g=six_clusters["g"].astype("int32")))
    sets = _quiet(_small_imputer(n_imputations=2).fit_transform_all, data, groups="g")
    broad = sets.broad()
    assert isinstance(broad, pl.DataFrame) and broad.columns == ["g.1", "x.1", "y.1", "g.2", "x.2", "y.2"]
    assert broad.schema["g.2"] == pl.Int32 and broad["y.2"].null_count() == 0


def test_plan_summary_names_each_visits_model_without_fitting(popmis):
    # R: mice(data, maxit = 0)$method. The imputer stays unfitted; the models are those fit would use.
    imp = MultilevelIterativeImputer(methods={"popular": RandomEffectsNormal()}, n_imputations=2, max_iter=1)
    summary = imp.plan_summary(popmis, groups="school")
    assert not hasattr(imp, "methods_")
    row = summary.set_index("column").loc["popular"]
    assert row["model"] == "RandomEffectsNormal()" and row["clusters"] == "random effects"
    assert row["n_missing"] == popmis["popular"].isna().sum()
    _quiet(imp.fit, popmis, groups="school")
    assert list(summary["column"]) == imp.visit_sequence_
    assert summary.set_index("column")["model"].to_dict() == {c: repr(m) for c, m in imp.methods_.items()}
    single = MultilevelIterativeImputer(methods="pmm").plan_summary(popmis, groups="school")
    assert set(single["clusters"]) == {"ignored"}


def test_verbose_fit_prints_the_plan_summary_before_the_chains(popmis, capsys):
    # verbose=1 says which model each column got (the table of plan_summary) before the progress of the chains
    imp = MultilevelIterativeImputer(methods={"popular": RandomEffectsNormal()}, n_imputations=2, max_iter=1, verbose=1)
    _quiet(imp.fit, popmis, groups="school")
    err = capsys.readouterr().err
    assert err.index("models:") < err.index("chain-iterations")
    table = err[err.index("models:") :].splitlines()[1:3]
    assert table[0].split() == ["column", "kind", "model", "n_missing", "predictors", "clusters"]
    assert table[1].split()[:3] == ["popular", "integer", "RandomEffectsNormal()"]
