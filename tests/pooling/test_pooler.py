"""MIPooler: the impute-fit-pool workflow as one scikit-learn meta-estimator."""

import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_score

from skmlmi import MIPooler, MultilevelIterativeImputer
from skmlmi.analysis import OLS, LinearMixedModel, LogisticMixedModel
from skmlmi.conditional import PredictiveMeanMatching, RandomEffectsNormal, RandomEffectsPMM
from skmlmi.datasets import load_popmis

RI = "popular ~ sex + texp + (1 | school)"


@pytest.fixture(scope="module")
def popmis():
    return load_popmis()[["school", "popular", "sex", "texp"]]


def _imputer(**kwargs):
    params = dict(methods={"popular": RandomEffectsNormal()}, n_imputations=4, max_iter=3, random_state=1)
    params.update(kwargs)
    return MultilevelIterativeImputer(**params)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def test_pooled_table_and_variance_components(popmis):
    pooler = _quiet(MIPooler(_imputer(), LinearMixedModel(RI)).fit, popmis, groups="school")
    table = pooler.results_.table
    assert list(table.index) == ["(Intercept)", "sex", "texp"]
    for column in [
        "estimate",
        "std_error",
        "statistic",
        "df",
        "p_value",
        "conf_low",
        "conf_high",
        "riv",
        "lambda",
        "fmi",
    ]:
        assert column in table.columns
    fits = pooler.estimators_
    assert len(fits) == 4
    np.testing.assert_allclose(table["estimate"], np.mean([f.coef_ for f in fits], axis=0))
    # mitml: variance components averaged, the ICC per imputation then averaged
    iccs = [f.variance_components_["ICC|school"] for f in fits]
    assert pooler.results_.variance_components["ICC|school"] == pytest.approx(np.mean(iccs))
    # the multilevel imputation keeps the ICC near the complete-case 0.50 (R 2l.pan: 0.49)
    assert 0.42 < pooler.results_.variance_components["ICC|school"] < 0.56
    # Barnard-Rubin df with dfcom = the first fit's residual df (mice's pool)
    assert (table["df"] < fits[0].df_resid_).all()


def test_fits_are_identical_for_any_n_jobs(popmis):
    one = _quiet(MIPooler(_imputer(), LinearMixedModel(RI), n_jobs=1).fit, popmis, groups="school")
    two = _quiet(MIPooler(_imputer(), LinearMixedModel(RI), n_jobs=2).fit, popmis, groups="school")
    pd.testing.assert_frame_equal(one.results_.table, two.results_.table)


def test_incomplete_y_is_imputed_with_x(popmis):
    X, y = popmis.drop(columns="popular"), popmis["popular"]
    X = X.assign(sex=X["sex"].astype(float))
    X.loc[X.index[::9], "sex"] = np.nan
    pooler = _quiet(
        MIPooler(
            _imputer(
                methods={"popular": RandomEffectsNormal(), "sex": RandomEffectsPMM()},
                column_kinds={"sex": "continuous"},
            ),
            OLS("popular ~ sex + texp"),
        ).fit,
        X,
        y,
        groups="school",
    )
    assert set(pooler.imputer_.incomplete_columns_) == {"sex", "popular"}
    prediction = _quiet(pooler.predict, X.head(20))
    assert prediction.shape == (20,) and np.isfinite(prediction).all()


def test_any_sklearn_regressor_pools_point_estimates(popmis):
    data = popmis.dropna().copy()
    X, y = data[["school", "sex", "texp"]], data["popular"]
    X.loc[X.index[::7], "texp"] = np.nan
    pooler = _quiet(
        MIPooler(
            MultilevelIterativeImputer(n_imputations=3, max_iter=2, random_state=0, keep_groups=False),
            LinearRegression(),
        ).fit,
        X,
        y,
        groups="school",
    )
    assert "no within-imputation variance" in pooler.results_.note
    np.testing.assert_allclose(
        pooler.results_.table["estimate"], np.mean([f.coef_ for f in pooler.estimators_], axis=0)
    )
    assert 0 < _quiet(pooler.score, X, y) < 1


def test_gridsearch_over_imputation_settings_with_group_folds(popmis):
    """Groups reach the split (argument), the imputer (its groups_column) and scoring."""
    data = popmis.copy()
    y = data.pop("popular")
    keep = y.notna()
    X, y = data[keep], y[keep]
    X = X.assign(texp=X["texp"].astype(float))
    X.loc[X.index[::6], "texp"] = np.nan
    pooler = MIPooler(
        MultilevelIterativeImputer(
            n_imputations=2, max_iter=2, random_state=0, groups_column="school", keep_groups=False
        ),
        Ridge(),
    )
    grid = {
        "imputer__max_iter": [1, 2],
        "imputer__methods": [{"texp": RandomEffectsPMM()}, {"texp": PredictiveMeanMatching()}],
    }
    search = GridSearchCV(pooler, grid, cv=GroupKFold(n_splits=3))
    _quiet(search.fit, X, y, groups=X["school"])
    assert len(search.cv_results_["mean_test_score"]) == 4
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()  # test folds hold unseen schools


def test_groups_routed_through_metadata_routing(popmis):
    data = popmis.dropna().copy()
    y = data.pop("popular")
    X = data.drop(columns="school").assign(texp=data["texp"].astype(float))
    X.loc[X.index[::6], "texp"] = np.nan
    groups = data["school"].to_numpy()
    with sklearn.config_context(enable_metadata_routing=True):
        pooler = MIPooler(MultilevelIterativeImputer(n_imputations=2, max_iter=2, random_state=0), Ridge())
        pooler.set_fit_request(groups=True).set_score_request(groups=True)
        # groups reach the splitter, MIPooler.fit (hence the imputer) and MIPooler.score
        scores = _quiet(cross_val_score, pooler, X, y, cv=GroupKFold(n_splits=3), params={"groups": groups})
    assert np.isfinite(scores).all()


def test_one_imputation_warns(popmis):
    with pytest.warns(UserWarning, match="single imputation"):
        MIPooler(_imputer(n_imputations=1), LinearMixedModel(RI)).fit(popmis, groups="school")


def test_failing_analysis_reports_the_imputation(popmis):
    with pytest.raises(Exception, match="imputation 1"):
        _quiet(MIPooler(_imputer(), LinearMixedModel("popular ~ nothere + (1 | school)")).fit, popmis, groups="school")


def _with_unused_categories(seed=0):
    """Clustered data with a categorical predictor declaring categories no row holds, at start, middle and end."""
    rng = np.random.default_rng(seed)
    n_clusters, size = 30, 20
    g = np.repeat(np.arange(n_clusters), size)
    x = rng.normal(size=g.size)
    category = rng.choice(["b", "c", "e"], size=g.size)
    effect = pd.Series({"b": 0.0, "c": 0.5, "e": -0.5})[category].to_numpy()
    u = rng.normal(0, 0.5, n_clusters)[g]
    data = pd.DataFrame(
        {
            "g": g,
            "x": x,
            "C": pd.Categorical(category, categories=["a", "b", "c", "d", "e", "f"]),
            "y": 1 + 0.5 * x + effect + u + rng.normal(size=g.size),
            "yb": (rng.random(g.size) < 1 / (1 + np.exp(-(0.3 * x + effect + u)))).astype(int),
        }
    )
    data.loc[rng.random(g.size) < 0.25, "C"] = None
    data.loc[rng.random(g.size) < 0.2, "y"] = np.nan
    return data


@pytest.mark.parametrize(
    "model",
    [LinearMixedModel("y ~ C + x + (1 | g)"), LogisticMixedModel("yb ~ C + x + (1 | g)")],
    ids=["LinearMixedModel", "LogisticMixedModel"],
)
def test_unobserved_categories_pool_like_data_without_them(model):
    data = _with_unused_categories()[["g", "x", "C", model.formula.split(" ")[0]]]
    imputer = MultilevelIterativeImputer(n_imputations=4, max_iter=3, random_state=2)
    pooler = _quiet(MIPooler(imputer, model).fit, data, groups="g")
    trimmed = data.assign(C=data["C"].cat.remove_unused_categories())
    reference = _quiet(MIPooler(imputer, model).fit, trimmed, groups="g")
    assert list(pooler.results_.table.index) == ["(Intercept)", "Cc", "Ce", "x"]
    pd.testing.assert_frame_equal(pooler.results_.table, reference.results_.table, check_exact=False, rtol=1e-10)
    assert "(C: ['a', 'd', 'f'])" in pooler.results_.note
    assert reference.results_.note == ""
    assert all(f.levels == {"C": ["b", "c", "e"]} for f in pooler.estimators_)
    assert pooler.predict(data.iloc[:10], groups=data["g"].iloc[:10]).shape == (10,)


def test_levels_set_by_the_user_are_kept(popmis):
    data = popmis.assign(sex=pd.Categorical(popmis["sex"].map({0: "boy", 1: "girl"}), categories=["girl", "boy"]))
    model = LinearMixedModel("popular ~ sex + texp + (1 | school)", levels={"sex": ["boy", "girl"]})
    pooler = _quiet(MIPooler(_imputer(), model).fit, data, groups="school")
    assert list(pooler.results_.table.index) == ["(Intercept)", "sexgirl", "texp"]


# --------------------------------------------------------------------------- hostile inputs
@pytest.fixture
def small():
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"g": np.repeat(np.arange(6), 10), "x": rng.normal(size=60)})
    y = pd.Series(rng.normal(size=60), name="y").where(rng.random(60) > 0.2)
    return X, y


def _small_pooler(**params):
    return MIPooler(
        MultilevelIterativeImputer(n_imputations=2, max_iter=2, random_state=1), LinearRegression(), **params
    )


@pytest.mark.parametrize("params", [{"alpha": 2}, {"alpha": 0}, {"dfcom": -1}, {"dfcom": "x"}])
def test_alpha_and_dfcom_are_validated_at_fit(small, params):
    with pytest.raises(ValueError, match=f"The '{next(iter(params))}' parameter of MIPooler"):
        _small_pooler(**params).fit(*small, groups="g")


def test_a_class_instead_of_an_instance_says_so(small):
    with pytest.raises(TypeError, match=r"estimator is the class LinearRegression; pass an instance"):
        MIPooler(_imputer(), LinearRegression).fit(*small, groups="g")


def test_y_must_be_one_response_per_row(small):
    X, y = small
    with pytest.raises(TypeError, match="y must hold one response per row of X; got str 'y'"):
        _small_pooler().fit(X, "y", groups="g")
    with pytest.raises(ValueError, match=r"y must be 1-D, one response per row of X; got shape \(60, 2\)"):
        _small_pooler().fit(X, np.zeros((60, 2)), groups="g")


def test_array_x_takes_groups_by_column_index_with_y(small):
    X, y = small
    pooler = _quiet(_small_pooler().fit, X.to_numpy(), y.to_numpy(), groups=0)
    assert pooler.imputer_.cluster_labels_.tolist() == list(range(6))
    assert np.isfinite(_quiet(pooler.predict, X.to_numpy())).all()


# --------------------------------------------------------------------------- hostile inputs


def _small_imputer(**params):
    return MultilevelIterativeImputer(**{"n_imputations": 2, "max_iter": 2, "random_state": 1, **params})


def test_pooler_fitted_with_the_response_in_x_predicts_and_scores_without_it(six_clusters):
    pooler = _quiet(MIPooler(_small_imputer(), LinearMixedModel("y ~ x + (1 | g)")).fit, six_clusters, groups="g")
    complete = six_clusters.dropna()
    with_y = pooler.predict(complete)
    np.testing.assert_allclose(pooler.predict(complete.drop(columns="y")), with_y)
    assert pooler.score(complete) == pytest.approx(pooler.score(complete.drop(columns="y"), complete["y"]))


def test_pooler_score_with_missing_y_is_a_clear_error(six_clusters):
    from sklearn.linear_model import LinearRegression

    X = six_clusters.drop(columns="y")
    pooler = _quiet(MIPooler(_small_imputer(), LinearRegression()).fit, X, six_clusters["y"], groups="g")
    with pytest.raises(ValueError, match="y has .* missing values"):
        pooler.score(X, six_clusters["y"])


def test_pooler_y_named_like_a_column_of_x_is_renamed(six_clusters):
    from sklearn.linear_model import LogisticRegression

    X = six_clusters.drop(columns="y")
    y = (X["x"] > 0).astype(float)  # a Series named "x", like a column of X
    y.iloc[:5] = np.nan
    pooler = _quiet(MIPooler(_small_imputer(), LogisticRegression()).fit, X, y, groups="g")
    assert set(pooler.predict(X)) <= {0.0, 1.0}


def test_pooler_wraps_exceptions_whose_constructor_takes_other_arguments(six_clusters):
    class Failing:
        def fit(self, X, y=None):
            raise UnicodeDecodeError("utf-8", b"x", 0, 1, "bad byte")

        def get_params(self, deep=True):
            return {}

        def set_params(self, **params):
            return self

    X = six_clusters.drop(columns="y")
    with pytest.raises(UnicodeDecodeError) as info:  # its own type, so that callers catching it still do
        _quiet(MIPooler(_small_imputer(), Failing()).fit, X, six_clusters["y"].fillna(0.0), groups="g")
    assert "raised in the analysis model, on imputation 1" in info.value.__notes__


def test_nested_analysis_model_pools_components_and_an_icc_per_level():
    # the analysis model may have more grouping factors than the imputation: components are pooled per level
    rng = np.random.default_rng(1)
    school, klass = np.repeat(np.arange(30), 20), np.repeat(np.arange(150), 4)
    x = rng.normal(size=600)
    y = 1 + 0.5 * x + rng.normal(0, 0.6, 30)[school] + rng.normal(0, 0.5, 150)[klass] + rng.normal(size=600)
    data = pd.DataFrame({"school": school, "klass": pd.Categorical(klass % 5), "x": x, "y": y})
    data.loc[rng.random(600) < 0.2, "y"] = np.nan
    imputer = _imputer(methods={"y": RandomEffectsNormal()}, predictor_matrix={"klass": {"y": 0}})
    pooler = _quiet(MIPooler(imputer, LinearMixedModel("y ~ x + (1 | school/klass)")).fit, data, groups="school")
    components = pooler.results_.variance_components
    assert list(components.index) == [
        "Intercept~~Intercept|klass:school",
        "Intercept~~Intercept|school",
        "Residual~~Residual",
        "ICC|klass:school",
        "ICC|school",
    ]
    per_imputation = [fit.variance_components_ for fit in pooler.estimators_]
    np.testing.assert_allclose(components, pd.concat(per_imputation, axis=1).mean(axis=1), rtol=1e-12)
    assert list(pooler.results_.icc.index) == ["ICC|klass:school", "ICC|school"]


def test_completed_datasets_are_analysed_and_pooled_without_imputing_again(popmis):
    # R's pool(with(imp, lmer(...))): the datasets at hand are analysed as they are. Pooling them must equal
    # MIPooler.fit with the same imputer (which imputes the same datasets), and refitting on a changed dataset
    # must change the result (the datasets given are the ones used).
    from skmlmi.imputer import ImputedDatasets

    imputer = MultilevelIterativeImputer(
        methods={"popular": RandomEffectsNormal()}, n_imputations=3, max_iter=3, random_state=4
    )
    model = LinearMixedModel("popular ~ sex + texp + (1 | school)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        completed = imputer.fit_transform_all(popmis, groups="school")
        reference = MIPooler(imputer, model).fit(popmis, groups="school").results_
        pooled = completed.analyse(model)
    pd.testing.assert_frame_equal(pooled.table, reference.table)
    assert len(pooled.fits) == 3 and pooled.m == 3
    pd.testing.assert_frame_equal(completed.complete(2), completed[1])
    with pytest.raises(ValueError, match=r"1\.\.3"):
        completed.complete(0)
    shifted = ImputedDatasets([frame.assign(popular=frame["popular"] + 1.0 * frame["sex"]) for frame in completed])
    assert shifted.analyse(model).table.loc["sex", "estimate"] == pytest.approx(
        pooled.table.loc["sex", "estimate"] + 1.0, rel=1e-6
    )
    pooler = MIPooler(None, model).fit_completed(completed)
    with pytest.raises(AttributeError, match="fit_completed"):
        pooler.predict(popmis)
    with pytest.raises(TypeError, match="imputer is None"):
        MIPooler(None, model).fit(popmis, groups="school")
    with pytest.raises(ValueError, match="still has missing values in \\['popular'\\], which the model uses"):
        MIPooler(None, model).fit_completed([popmis])
    unused = [frame.assign(note=np.where(frame.index % 2 == 0, np.nan, 1.0)) for frame in completed]
    pd.testing.assert_frame_equal(ImputedDatasets(unused).analyse(model).table, pooled.table)  # not read: allowed
    with pytest.raises(TypeError, match="list of the m completed datasets"):
        MIPooler(None, model).fit_completed(popmis)
