"""What R mice users rely on in the engine: derived columns, bounds, post, where/ignore,
over-imputation, continuing chains, logged events."""

import warnings

import numpy as np
import pandas as pd
import pytest

from skmlmi import MultilevelIterativeImputer
from skmlmi.conditional import BayesianNormal, PredictiveMeanMatching, RandomEffectsNormal
from skmlmi.datasets import load_popmis
from skmlmi.diagnostics import overimpute


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.fixture(scope="module")
def popmis():
    return load_popmis()[["school", "popular", "sex", "texp"]]


@pytest.fixture
def body():
    rng = np.random.default_rng(11)
    n = 300
    height = rng.normal(1.72, 0.09, n)
    weight = 22 * height**2 + rng.normal(0, 7, n)
    frame = pd.DataFrame({"height": height, "weight": weight, "age": rng.normal(40, 10, n)})
    frame["bmi"] = frame["weight"] / frame["height"] ** 2
    frame.loc[rng.choice(n, 60, replace=False), "weight"] = np.nan
    frame.loc[rng.choice(n, 40, replace=False), "height"] = np.nan
    frame.loc[rng.choice(n, 30, replace=False), "bmi"] = np.nan
    return frame


@pytest.mark.parametrize(
    "formula", ["weight / height ** 2", (lambda d: d["weight"] / d["height"] ** 2)], ids=["expression", "callable"]
)
def test_derived_column_identical_to_its_formula_in_every_output(body, formula):
    matrix = {"bmi": {"weight": 0, "height": 0}}  # bmi must not predict its own inputs
    imp = MultilevelIterativeImputer(
        methods=BayesianNormal(),
        derived={"bmi": formula},
        predictor_matrix=matrix,
        n_imputations=3,
        max_iter=3,
        random_state=0,
    )
    sets = imp.fit_transform_all(body)
    for out in [*sets, imp.transform(body)]:
        np.testing.assert_allclose(out["bmi"], out["weight"] / out["height"] ** 2)
    assert "bmi" not in imp.visit_sequence_ and "bmi" in imp.incomplete_columns_


def test_derived_column_may_start_entirely_missing(body):
    # an interaction added as an empty column is filled from its inputs (mice: passive
    # columns need no observed values), and the caller's empty column stays empty
    data = body.assign(bmi=np.nan)
    matrix = {"bmi": {"weight": 0, "height": 0}}
    imp = MultilevelIterativeImputer(
        methods=BayesianNormal(),
        derived={"bmi": "weight / height ** 2"},
        predictor_matrix=matrix,
        n_imputations=2,
        max_iter=2,
        random_state=0,
    )
    for out in imp.fit_transform_all(data):
        np.testing.assert_allclose(out["bmi"], out["weight"] / out["height"] ** 2)
    assert data["bmi"].isna().all()
    with pytest.raises(ValueError, match="'age' is entirely missing"):
        MultilevelIterativeImputer(n_imputations=1).fit(body.assign(age=np.nan))


def test_derived_column_is_left_out_of_its_inputs_models_unless_coded(body):
    # bmi is a function of weight and height: as their predictor it would predict each from itself, and the chain
    # would stay at its start. By default it is left out of their models (logged); coded 1 by the user, it is
    # kept and the circularity is warned of; a derived callable without declared inputs is warned of too.
    imp = MultilevelIterativeImputer(
        methods=BayesianNormal(), derived={"bmi": "weight / height ** 2"}, n_imputations=1, max_iter=1, random_state=0
    )
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        imp.fit(body)
    assert not any("circular" in str(w.message) for w in record)
    assert (imp.predictor_matrix_.loc[["weight", "height"], "bmi"] == 0).all()
    assert imp.predictor_matrix_.loc["age", "bmi"] == 1
    assert imp.logged_events_["reason"].str.contains("left out of the models of its inputs").any()
    imp.set_params(predictor_matrix={"bmi": {"weight": 1}})
    with pytest.warns(UserWarning, match="circular"):
        imp.fit(body)
    assert imp.predictor_matrix_.loc["weight", "bmi"] == 1 and imp.predictor_matrix_.loc["height", "bmi"] == 0
    bare = imp.set_params(predictor_matrix=None, derived={"bmi": lambda d: d["weight"] / d["height"] ** 2})
    with pytest.warns(UserWarning, match="circular"):
        bare.fit(body)
    with pytest.raises(ValueError, match="unknown columns"):
        imp.set_params(derived={"bmi": "weight / heigth ** 2"}).fit(body)


def test_bounds_never_violated_and_post_applied(popmis):
    imp = MultilevelIterativeImputer(
        methods={"popular": BayesianNormal()},
        bounds={"popular": (4.9, 5.1)},
        predictor_matrix={"school": {"popular": 0}},
        n_imputations=3,
        max_iter=3,
        random_state=1,
    )
    sets = _quiet(imp.fit_transform_all, popmis, groups="school")
    missing = popmis["popular"].isna()
    for out in [*sets, _quiet(imp.transform, popmis)]:
        assert out.loc[missing, "popular"].between(4.9, 5.1).all()
    # with bounds narrower than the draws, some values are squeezed, and the log says so
    assert imp.logged_events_["reason"].str.contains("squeezed").any()
    imp = MultilevelIterativeImputer(
        methods={"popular": BayesianNormal()},
        post={"popular": lambda v: np.round(v, 1)},
        predictor_matrix={"school": {"popular": 0}},
        n_imputations=2,
        max_iter=2,
        random_state=1,
    )
    out = _quiet(imp.fit_transform, popmis, groups="school")
    np.testing.assert_allclose(out["popular"], np.round(out["popular"], 1))


def test_ignored_rows_do_not_change_the_fitted_draws(popmis):
    ignore = np.zeros(len(popmis), dtype=bool)
    ignore[popmis.index[popmis["popular"].notna()][:300]] = True
    altered = popmis.copy()
    altered.loc[ignore, "popular"] = altered.loc[ignore, "popular"] + 50  # absurd values, never fitted
    runs = []
    for data in (popmis, altered):
        imp = MultilevelIterativeImputer(
            methods={"popular": RandomEffectsNormal()}, n_imputations=2, max_iter=3, random_state=4
        )
        _quiet(imp.fit, data, groups="school", ignore=ignore)
        runs.append(imp.imputations_["popular"])
    np.testing.assert_array_equal(*runs)
    imp = MultilevelIterativeImputer(
        methods={"popular": RandomEffectsNormal()}, n_imputations=2, max_iter=3, random_state=4
    )
    _quiet(imp.fit, altered, groups="school")
    assert not np.array_equal(imp.imputations_["popular"], runs[0])  # not ignoring them does change them


def test_where_overimputes_observed_cells(popmis):
    where = popmis.isna().to_numpy()
    marked = np.flatnonzero(popmis["popular"].notna().to_numpy())[:50]
    where[marked, 1] = True
    imp = MultilevelIterativeImputer(
        methods={"popular": RandomEffectsNormal()}, n_imputations=2, max_iter=2, random_state=0
    )
    sets = _quiet(imp.fit_transform_all, popmis, groups="school", where=where)
    assert imp.imputations_["popular"].shape == (where[:, 1].sum(), 2)
    # the completed data show the over-imputations (mice's complete), not the observed values
    assert not np.allclose(sets[0]["popular"].to_numpy()[marked], popmis["popular"].to_numpy()[marked])
    with pytest.raises(ValueError, match="boolean mask"):
        imp.fit(popmis, groups="school", where=where[:10])


def test_missing_cells_outside_where_stay_missing(popmis):
    data = popmis.copy()
    data.loc[data.index[:40], "sex"] = np.nan
    where = data.isna().to_numpy()
    where[:40, 2] = False  # leave the first 40 sex values missing
    imp = MultilevelIterativeImputer(
        methods={"popular": RandomEffectsNormal(), "sex": PredictiveMeanMatching()},
        column_kinds={"sex": "continuous"},
        n_imputations=1,
        max_iter=2,
        random_state=0,
    )
    out = _quiet(imp.fit_transform, data, groups="school", where=where)
    assert out["sex"].isna().sum() == 40
    # rows lacking a predictor are neither fitted nor imputed (mice)
    both = data["popular"].isna().to_numpy()[:40]
    assert out["popular"].iloc[:40][both].isna().all()


def test_continuing_chains_equals_running_longer(popmis):
    def make(max_iter):
        return MultilevelIterativeImputer(
            methods={"popular": RandomEffectsNormal()}, n_imputations=2, max_iter=max_iter, random_state=9
        )

    longer = _quiet(make(5).fit, popmis, groups="school")
    continued = _quiet(make(3).fit, popmis, groups="school")
    _quiet(continued.continue_fit, 2)
    np.testing.assert_array_equal(continued.imputations_["popular"], longer.imputations_["popular"])
    np.testing.assert_array_equal(continued.chain_mean_, longer.chain_mean_)
    assert continued.n_iter_ == 5 and continued.chain_mean_.shape == (2, 5, 1)
    pd.testing.assert_frame_equal(_quiet(continued.transform, popmis), _quiet(longer.transform, popmis))


def test_overimpute_reports_coverage_of_observed_values(popmis):
    imp = MultilevelIterativeImputer(
        methods={"popular": RandomEffectsNormal()}, n_imputations=20, max_iter=3, random_state=2
    )
    result = overimpute(imp, popmis, groups="school", columns=["popular"], sample=100, alpha=0.1, random_state=0)
    assert list(result.table.columns) == ["column", "row", "observed", "imputed_mean", "lower", "upper", "covered"]
    assert len(result.table) == 100
    # A calibrated model covers ~90%; with 100 cells and 20 imputations per interval the
    # empirical coverage has sd ~ 0.03 plus the quantile noise of 20 draws, so 0.75 is far below.
    assert 0.75 <= result.coverage["popular"] <= 1.0
    single = MultilevelIterativeImputer(
        methods={"popular": PredictiveMeanMatching()},
        n_imputations=20,
        max_iter=3,
        predictor_matrix={"school": {"popular": 0}},
        random_state=2,
    )
    worse = overimpute(single, popmis, groups="school", columns=["popular"], sample=100, random_state=0)
    # ignoring the schools widens the intervals: wider than the multilevel model's
    width = (result.table["upper"] - result.table["lower"]).mean()
    assert (worse.table["upper"] - worse.table["lower"]).mean() > width
    fig, _ = result.plot()
    assert "coverage" in fig.axes[0].get_title()


def test_transform_reuses_a_seen_clusters_value_of_a_cluster_level_column(popmis):
    # texp is a school attribute: a new pupil of a known school with texp missing gets that
    # school's value (observed at fit, or imputed there by the same chain), not a new draw
    data = popmis.copy()
    unobserved_school = data["school"].iloc[0]
    data.loc[data["school"] == unobserved_school, "texp"] = np.nan  # imputed at fit
    imp = MultilevelIterativeImputer(n_imputations=6, max_iter=2, random_state=3)
    sets = _quiet(imp.fit_transform_all, data, groups="school")
    new = data.groupby("school").head(1).copy()
    new["texp"] = np.nan
    for fitted, out in zip(sets, _quiet(imp.transform_all, new), strict=True):
        expected = fitted.groupby("school")["texp"].first()
        np.testing.assert_array_equal(out["texp"].to_numpy(), expected.loc[new["school"]].to_numpy())
    # the chains imputed the unobserved school differently, and each chain's value is reused; two chains
    # can pick the same donor (one of 5 close ones), six chains all doing so has probability ~ (1/3)^5
    values = [out.loc[out["school"] == unobserved_school, "texp"].iloc[0] for out in _quiet(imp.transform_all, new)]
    assert len(set(values)) > 1
    # unseen schools still draw from the cluster-level model
    unseen = new.assign(school=new["school"] + 10_000)
    assert not _quiet(imp.transform, unseen)["texp"].isna().any()


def test_transform_warns_when_cluster_labels_changed_type(popmis):
    # schools 1..100 at fit, "1".."100" at transform: the same schools, but no label matches
    imp = MultilevelIterativeImputer(n_imputations=1, max_iter=1, random_state=0)
    _quiet(imp.fit, popmis, groups="school")
    new = popmis.head(20).assign(school=lambda d: d["school"].astype(str))
    with pytest.warns(UserWarning, match="treated as new"):
        imp.transform(new)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        imp.transform(popmis.head(20).assign(school=popmis["school"].head(20) + 1000))  # new schools, same type
    assert not any("treated as new" in str(w.message) for w in caught)


# ----------------------------------------------------------------------------- completion order, finiteness
def test_bounds_post_and_derived_hold_exactly_in_every_completed_dataset(popmis):
    # popular holds whole numbers; a normal model imputes unrounded draws, bounds are applied
    # to them, then post, then the derived column from the final values
    data = popmis.assign(pop_sq=popmis["popular"] ** 2)
    imp = MultilevelIterativeImputer(
        methods={"popular": RandomEffectsNormal()},
        bounds={"popular": (2.5, 8.5)},
        post={"popular": lambda v: np.round(v, 1)},
        derived={"pop_sq": lambda d: d["popular"] ** 2},
        n_imputations=3,
        max_iter=3,
        random_state=4,
    )
    missing = data["popular"].isna()
    for out in _quiet(imp.fit_transform_all, data, groups="school"):
        imputed = out.loc[missing, "popular"]
        assert imputed.between(2.5, 8.5).all()
        np.testing.assert_array_equal(imputed, np.round(imputed, 1))
        assert (imputed != np.round(imputed)).mean() > 0.5  # not rounded to whole numbers
        np.testing.assert_array_equal(out["pop_sq"], out["popular"] ** 2)
    # without post, a normal model's imputations of a whole-number column are not rounded at all
    plain = MultilevelIterativeImputer(
        methods={"popular": RandomEffectsNormal()}, n_imputations=1, max_iter=2, random_state=4
    )
    imputed = _quiet(plain.fit_transform, popmis, groups="school").loc[missing, "popular"]
    assert (imputed != np.round(imputed, 6)).all()


def test_integer_dtype_receiving_fractions_becomes_float(popmis):
    data = popmis.assign(popular=popmis["popular"].astype("Int64"))
    imp = MultilevelIterativeImputer(
        methods={"popular": RandomEffectsNormal()}, n_imputations=1, max_iter=1, random_state=0
    )
    assert _quiet(imp.fit_transform, data, groups="school")["popular"].dtype == "Float64"
    pmm = MultilevelIterativeImputer(n_imputations=1, max_iter=1, random_state=0)  # whole numbers: dtype kept
    assert _quiet(pmm.fit_transform, data, groups="school")["popular"].dtype == "Int64"


class _NaNDraw:
    def sample(self, X, groups, rng):
        out = np.zeros(len(X))
        out[groups == 3] = np.nan
        return out


class _NaNModel(RandomEffectsNormal):
    """A model whose draws are NaN in the cluster with code 3 (stands in for a numerical failure)."""

    def _draw(self, y, observed, X, roles, groups, rng, state, context):
        return _NaNDraw(), None


@pytest.mark.parametrize("where", ["model", "post", "derived"])
def test_a_non_finite_value_is_an_error_naming_where_it_arose(popmis, where):
    data = popmis.assign(ratio=popmis["popular"] / popmis["texp"])
    kwargs = {
        "model": {"methods": {"popular": _NaNModel()}},
        "post": {"post": {"popular": lambda v: np.where(v > 5, np.inf, v)}},
        "derived": {"derived": {"ratio": lambda d: d["popular"] / (d["texp"] - d["texp"])}},
    }[where]
    imp = MultilevelIterativeImputer(n_imputations=2, max_iter=2, random_state=0, **kwargs)
    expected = {
        "model": r"chain 1, iteration 1, column 'popular' \(_NaNModel\): the draw of _NaNModel for 'popular' "
        r"gave \d+ non-finite value\(s\) of \d+ in cluster\(s\) 4",  # cluster code 3 is school 4
        "post": r"chain 1, iteration 1, column 'popular' \(\w+\): post\['popular'\] gave",
        "derived": r"chain 1, initialisation: derived\['ratio'\] gave",
    }[where]
    with pytest.raises(ValueError, match=expected):
        _quiet(imp.fit_transform_all, data, groups="school")


class _PostFailure(RuntimeError):
    """A user's error, raised by a ``post`` callable."""


def _post_failing_on_calls(calls):
    """A ``post`` for one column that raises on the given call numbers (1, 2, ... in order of calls)."""
    count = {"n": 0}

    def post(values):
        count["n"] += 1
        if count["n"] in calls:
            raise _PostFailure(f"call {count['n']} refused")
        return values

    return post


def test_an_exception_in_a_chain_says_where_and_keeps_the_finished_chains(popmis):
    # chains run in order in this process (n_jobs=None): with max_iter=2 chain 2 makes calls 3 and 4
    settings = {"n_imputations": 3, "max_iter": 2, "random_state": 5}
    post = {"popular": _post_failing_on_calls({3})}
    imp = MultilevelIterativeImputer(post=post, **settings)
    with pytest.raises(_PostFailure, match=r"^chain 2, iteration 1, column 'popular' \(\w+\): call 3 refused") as info:
        _quiet(imp.fit_transform_all, popmis, groups="school")
    error = info.value
    assert isinstance(error.__cause__, _PostFailure)
    assert error.failed_chains == [2] and error.finished_chains == [1, 3]
    assert any("traceback in the chain" in note for note in error.__cause__.__notes__)
    # the finished chains are those a successful fit gives, not discarded
    whole = _quiet(
        MultilevelIterativeImputer(post={"popular": lambda v: v}, **settings).fit_transform_all, popmis, groups="school"
    )
    assert len(error.completed) == 2
    pd.testing.assert_frame_equal(error.completed[0], whole[0])
    pd.testing.assert_frame_equal(error.completed[1], whole[2])
    assert not hasattr(imp, "final_draws_")  # a failed fit leaves no fitted imputer behind


class _SingularModel(RandomEffectsNormal):
    """A model whose fit meets a singular matrix (stands in for a numerical failure inside a model)."""

    def _draw(self, y, observed, X, roles, groups, rng, state, context):
        return np.linalg.solve(np.zeros((2, 2)), np.ones(2)), None


def test_a_numerical_error_in_a_model_keeps_its_type_and_names_column_model_chain_iteration(popmis):
    imp = MultilevelIterativeImputer(methods={"texp": _SingularModel()}, n_imputations=2, max_iter=1, random_state=0)
    data = popmis.assign(texp=popmis["texp"].where(popmis["school"] != 1))
    with pytest.raises(
        np.linalg.LinAlgError, match=r"chain 1, iteration 1, column 'texp' \(_SingularModel\): Singular"
    ):
        _quiet(imp.fit, data, groups="school")


def test_continue_fit_after_a_failure_resumes_as_if_it_had_not_happened(popmis):
    # max_iter=2 makes calls 1-4 at fit (2 chains); continue_fit's first call (5) fails
    settings = {"n_imputations": 2, "random_state": 3}
    imp = MultilevelIterativeImputer(max_iter=2, post={"popular": _post_failing_on_calls({5})}, **settings)
    _quiet(imp.fit, popmis, groups="school")
    with pytest.raises(_PostFailure, match="chain 1, iteration 3"):
        _quiet(imp.continue_fit, 1)
    assert imp.n_iter_ == 2 and imp.chain_mean_.shape[1] == 2  # the fit is as it was
    _quiet(imp.continue_fit, 1)
    straight = MultilevelIterativeImputer(max_iter=3, post={"popular": lambda v: v}, **settings)
    _quiet(straight.fit, popmis, groups="school")
    np.testing.assert_array_equal(imp.imputations_["popular"], straight.imputations_["popular"])
    np.testing.assert_array_equal(imp.chain_mean_, straight.chain_mean_)


def test_an_exception_in_transform_names_the_chain_and_column(popmis):
    imp = MultilevelIterativeImputer(
        post={"popular": _post_failing_on_calls({3})}, n_imputations=1, max_iter=2, random_state=0
    )
    _quiet(imp.fit, popmis, groups="school")
    with pytest.raises(_PostFailure, match=r"chain 1, transform with its final draws, column 'popular'"):
        _quiet(imp.transform, popmis)


def test_the_chains_cache_of_cluster_means_follows_every_write(monkeypatch):
    """Cluster means are kept between visits and dropped when their column is written (its own visit, or a
    derived column recomputed): the imputations equal those of a chain that recomputes every mean."""
    from skmlmi import _plan

    rng = np.random.default_rng(5)
    school = np.repeat(np.arange(40), 3 * 8)
    klass = np.repeat(np.arange(120), 8)
    x = rng.normal(size=school.size) + rng.normal(size=120)[klass]
    y = x + rng.normal(size=40)[school] + rng.normal(size=school.size)
    frame = pd.DataFrame({"school": school, "class": klass, "x": x, "y": y})
    frame.loc[rng.random(len(frame)) < 0.25, "x"] = np.nan
    frame.loc[rng.random(len(frame)) < 0.25, "y"] = np.nan
    frame["x2"] = frame["x"] ** 2
    options = dict(
        n_imputations=2,
        max_iter=3,
        random_state=1,
        derived={"x2": "x ** 2"},
        predictor_matrix=pd.DataFrame({"x2": {"y": 3, "x": 0}, "x": {"y": 3}, "y": {"x": 3}}),
    )

    def impute():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return MultilevelIterativeImputer(**options).fit_transform_all(frame, groups=["school", "class"])

    cached = impute()
    monkeypatch.setattr(_plan.ClusterMeanCache, "get", lambda self, pred, k, compute: compute())
    for a, b in zip(cached, impute(), strict=True):
        pd.testing.assert_frame_equal(a, b)
