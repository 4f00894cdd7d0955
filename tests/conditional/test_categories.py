"""Declared categories that no row holds: never imputed, kept in the output dtype, refused in new data.

A pandas Categorical may declare categories that the data never show (a filtered subset,
a questionnaire option nobody ticked). Nothing can be learnt about them, so every model
imputes the observed categories only; the declared ones stay in the output's dtype.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

from skmlmi import MultilevelIterativeImputer
from skmlmi.conditional import (
    BayesianLogistic,
    ClusterLevelLogistic,
    ClusterLevelPMM,
    ClusterMean,
    HeckmanSelection,
    Polytomous,
    RandomEffectsCategorical,
    RandomEffectsLogistic,
    TwoStageLogistic,
)

N_CLUSTERS, CLUSTER_SIZE = 25, 16
N = N_CLUSTERS * CLUSTER_SIZE
#: unobserved categories at the start, in the middle and at the end of the declared list
UNORDERED = (["a", "b", "c", "d", "e", "f"], ["b", "c", "e"])
ORDERED = (["none", "low", "mid", "high", "top", "max"], ["low", "mid", "top"])


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _data(declared, observed, ordered=False, n_missing=200, seed=0):
    """Clustered data whose categorical ``c`` depends on ``x`` and the cluster, with ``n_missing`` cells missing."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(N_CLUSTERS), CLUSTER_SIZE)
    x = rng.normal(size=N)
    latent = x + rng.normal(0, 0.7, N_CLUSTERS)[g] + rng.logistic(size=N)
    cuts = np.quantile(latent, np.linspace(0, 1, len(observed) + 1)[1:-1])
    c = pd.Categorical(np.asarray(observed)[np.searchsorted(cuts, latent)], categories=declared, ordered=ordered)
    frame = pd.DataFrame({"g": g, "x": x, "c": c})
    frame.loc[rng.choice(N, size=n_missing, replace=False), "c"] = None
    return frame


CATEGORICAL_MODELS = [
    pytest.param(Polytomous(), None, id="Polytomous"),
    pytest.param(Polytomous(), "g", id="Polytomous-groups"),
    pytest.param(RandomEffectsCategorical(), "g", id="RandomEffectsCategorical"),
]


@pytest.mark.parametrize(
    "declared, observed, ordered", [(*UNORDERED, False), (*ORDERED, True)], ids=["unordered", "ordered"]
)
@pytest.mark.parametrize("model, groups", CATEGORICAL_MODELS)
def test_declared_but_unobserved_categories_are_never_imputed(model, groups, declared, observed, ordered):
    data = _data(declared, observed, ordered)
    imp = MultilevelIterativeImputer(methods={"c": model}, n_imputations=20, max_iter=2, random_state=3)
    sets = _quiet(imp.fit_transform_all, data, groups=groups)
    missing = data["c"].isna().to_numpy()
    imputed = pd.concat([s["c"][missing] for s in sets])
    assert len(imputed) == 20 * 200
    counts = imputed.value_counts()
    assert counts[[c for c in declared if c not in observed]].sum() == 0
    assert (counts[observed] > 0).all()
    for s in sets:
        assert s["c"].dtype == data["c"].dtype  # declared categories and the ordered flag kept
        assert list(s["c"].cat.categories) == declared and s["c"].cat.ordered == ordered


def test_cluster_level_categorical_never_imputes_unobserved_categories():
    data = _data(*UNORDERED, n_missing=0)
    cluster_value = data.groupby("g")["c"].transform("first")  # one category per cluster: a cluster-level variable
    data["c"] = pd.Categorical(cluster_value, categories=UNORDERED[0])
    data.loc[data["g"].isin([0, 1, 2]), "c"] = None  # systematically missing clusters: the fallback model
    data.loc[[100, 101, 200], "c"] = None  # sporadic cells: the cluster's mode
    imp = MultilevelIterativeImputer(methods={"c": ClusterMean()}, n_imputations=20, max_iter=1, random_state=2)
    sets = _quiet(imp.fit_transform_all, data, groups="g")
    imputed = pd.concat([s["c"][data["c"].isna()] for s in sets])
    assert set(imputed.unique()) <= set(data["c"].dropna().unique())
    assert all(s["c"].dtype == data["c"].dtype for s in sets)


def test_unused_categories_change_nothing_but_the_dtype():
    """The models see the same codes whether or not unused categories are declared: the same draws."""
    data = _data(*UNORDERED, n_missing=120)
    data["d"] = _data(*ORDERED, n_missing=60, seed=1)["c"]  # a categorical predictor with unused categories
    data.loc[data.index[::7], "x"] = np.nan
    imp = MultilevelIterativeImputer(n_imputations=2, max_iter=3, random_state=5)
    declared = imp.fit_transform_all(data, groups="g")
    events = imp.logged_events_
    trimmed = data.assign(c=data["c"].cat.remove_unused_categories(), d=data["d"].cat.remove_unused_categories())
    reference = MultilevelIterativeImputer(n_imputations=2, max_iter=3, random_state=5).fit_transform_all(
        trimmed, groups="g"
    )
    for one, other in zip(declared, reference, strict=True):
        pd.testing.assert_frame_equal(one.astype({"c": str, "d": str}), other.astype({"c": str, "d": str}))
        assert one["c"].dtype == data["c"].dtype and one["d"].dtype == data["d"].dtype
    assert not events["reason"].str.contains("constant").any()  # no all-zero dummy of an unused category


# ----------------------------------------------------------------------------- one observed category
BINARY_MODELS = [
    pytest.param(BayesianLogistic(), None, id="BayesianLogistic"),
    pytest.param(Polytomous(), None, id="Polytomous"),
    pytest.param(RandomEffectsLogistic(), "g", id="RandomEffectsLogistic"),
    pytest.param(RandomEffectsCategorical(), "g", id="RandomEffectsCategorical"),
    pytest.param(TwoStageLogistic(), "g", id="TwoStageLogistic"),
    pytest.param(HeckmanSelection(), "g", id="HeckmanSelection"),
    pytest.param(HeckmanSelection(), None, id="HeckmanSelection-single-level"),
]


@pytest.mark.parametrize("model, groups", BINARY_MODELS)
def test_binary_target_with_one_observed_category_takes_it_and_logs_once(model, groups):
    data = _data(["no", "yes"], ["yes"], n_missing=100)
    imp = MultilevelIterativeImputer(methods={"c": model}, n_imputations=3, max_iter=2, random_state=0)
    with pytest.warns(UserWarning, match=r"c: one category observed \('yes'\)") as record:
        sets = imp.fit_transform_all(data, groups=groups)
    assert sum("one category observed" in str(w.message) for w in record) == 1
    assert all((s["c"] == "yes").all() and s["c"].dtype == data["c"].dtype for s in sets)
    events = imp.logged_events_
    once = events[events["reason"].str.contains("one category observed")]
    assert len(once) == 1 and once[["iteration", "chain"]].to_numpy().tolist() == [[0, 0]]
    new = data.iloc[:40].copy()
    new.loc[new.index[::2], "c"] = None
    assert (imp.transform(new)["c"] == "yes").all()


@pytest.mark.parametrize(
    "model",
    [ClusterLevelPMM(), ClusterLevelLogistic(), ClusterMean()],
    ids=["ClusterLevelPMM", "ClusterLevelLogistic", "ClusterMean"],
)
def test_cluster_level_binary_with_one_observed_category(model):
    data = _data(["no", "yes"], ["no"], n_missing=0)
    data.loc[data["g"].isin([3, 4]), "c"] = None
    sets = _quiet(
        MultilevelIterativeImputer(methods={"c": model}, n_imputations=2, max_iter=1, random_state=0).fit_transform_all,
        data,
        groups="g",
    )
    assert all((s["c"] == "no").all() for s in sets)


def test_numeric_zero_one_target_with_only_zeros_stays_zero():
    data = _data(["a", "b"], ["a"], n_missing=50).assign(c=lambda d: d["c"].map({"a": 0.0}).astype(float))
    imp = MultilevelIterativeImputer(n_imputations=2, max_iter=1, random_state=0)
    with pytest.warns(UserWarning, match=r"one category observed \(0\.0\)"):
        sets = imp.fit_transform_all(data)
    assert all((s["c"] == 0).all() and s["c"].dtype == np.float64 for s in sets)


def test_ordered_categorical_with_one_observed_category():
    data = _data(["low", "mid", "high"], ["mid"], ordered=True, n_missing=80)
    imp = MultilevelIterativeImputer(
        methods={"c": RandomEffectsCategorical()}, n_imputations=2, max_iter=1, random_state=0
    )
    sets = _quiet(imp.fit_transform_all, data, groups="g")
    assert all((s["c"] == "mid").all() and s["c"].dtype == data["c"].dtype for s in sets)


# ----------------------------------------------------------------------------- ignored rows, where, new data
def test_category_observed_only_in_ignored_rows_is_never_imputed():
    data = _data(*UNORDERED, n_missing=150)
    ignore = np.zeros(N, dtype=bool)
    ignore[::13] = True
    data.loc[[0, 13, 26], "c"] = "a"  # observed, but only in rows that must not shape the models
    imp = MultilevelIterativeImputer(n_imputations=10, max_iter=2, random_state=4)
    with pytest.warns(UserWarning, match=r"categories \['a'\] are observed only in ignored rows"):
        sets = imp.fit_transform_all(data, groups="g", ignore=ignore)
    missing = data["c"].isna().to_numpy()
    imputed = pd.concat([s["c"][missing] for s in sets])
    assert (imputed == "a").sum() == 0 and set(imputed.unique()) == {"b", "c", "e"}
    assert all((s["c"].iloc[[0, 13, 26]] == "a").all() for s in sets)  # observed values stay
    assert (imp.logged_events_["reason"].str.contains("only in ignored rows")).sum() == 1
    assert (imp.transform(data)["c"].iloc[[0, 13, 26]] == "a").all()  # observed at fit: new data may hold it


def test_over_imputation_draws_observed_categories_only():
    data = _data(*UNORDERED, n_missing=100)
    where = data.isna().to_numpy()
    where[:150, 2] = True  # over-impute observed cells too
    imp = MultilevelIterativeImputer(
        methods={"c": RandomEffectsCategorical()}, n_imputations=10, max_iter=2, random_state=6
    )
    sets = _quiet(imp.fit_transform_all, data, groups="g", where=where)
    values = pd.concat([s["c"][where[:, 2]] for s in sets])
    assert set(values.unique()) == {"b", "c", "e"}
    assert set(np.unique(imp.imputations_["c"])) == {1.0, 2.0, 4.0}  # the declared codes of b, c, e


@pytest.mark.parametrize("column", ["c", "d"], ids=["target", "predictor"])
def test_new_data_with_a_declared_but_unobserved_category_is_refused(column):
    data = _data(*UNORDERED, n_missing=100)
    data["d"] = _data(*ORDERED, n_missing=0, seed=2)["c"]
    imp = _quiet(MultilevelIterativeImputer(n_imputations=2, max_iter=1, random_state=0).fit, data, groups="g")
    new = data.iloc[:20].copy()
    new.loc[new.index[0], column] = "f" if column == "c" else "high"
    new.loc[new.index[1], "c"] = None
    label = "f" if column == "c" else "high"
    message = rf"Column '{column}' holds category \['{label}'\], declared but never observed at fit"
    with pytest.raises(ValueError, match=message):
        imp.transform(new)


def test_string_columns_keep_their_dtype():
    data = _data(*UNORDERED, n_missing=100)
    data["c"] = data["c"].astype("str")  # pandas 3's string dtype; missing cells stay missing
    sets = _quiet(
        MultilevelIterativeImputer(n_imputations=2, max_iter=1, random_state=0).fit_transform_all, data, groups="g"
    )
    assert all(s["c"].dtype == data["c"].dtype and s["c"].notna().all() for s in sets)
    assert set(sets[0]["c"]) == {"b", "c", "e"}


def test_every_model_of_binary_or_categorical_targets_is_tested_here():
    from skmlmi.conditional.registry import all_models

    tested = {type(p.values[0]).__name__ for p in CATEGORICAL_MODELS + BINARY_MODELS} | {
        "ClusterLevelPMM",
        "ClusterLevelLogistic",
        "ClusterMean",
    }
    needed = {c.__name__ for c in all_models() if c.target_kinds & {"binary", "categorical"}}
    assert needed <= tested, f"add {sorted(needed - tested)} to the tests of unobserved categories"
