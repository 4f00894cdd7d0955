"""The planner (skmlmi._plan): the plan is returned, nothing is set, and models are checked before any chain runs."""

import warnings

import numpy as np
import pandas as pd
import pytest

from skmlmi import MultilevelIterativeImputer
from skmlmi._clusters import Clusters
from skmlmi._frontdoor import Layout, WorkingData, detect_codecs, encode, read_frame
from skmlmi._kernels import poisson_fixed_effects
from skmlmi._plan import COUNT_FIT_TOLERANCE, PlanSettings, make_plan
from skmlmi.conditional import BayesianNormal


@pytest.fixture
def clustered():
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(30), 10)
    x = rng.normal(size=300)
    y = x + rng.normal(size=300) + 0.1 * g
    y[rng.random(300) < 0.15] = np.nan
    return pd.DataFrame({"g": [f"s{k:02d}" for k in g], "x": x, "y": y})


def _working(frame):
    _, frame, source, is_frame = read_frame(frame)
    clusters = Clusters.from_data(frame, "g")
    layout = Layout(list(frame.columns), detect_codecs(frame, None), "g", is_frame)
    W, missing = encode(frame, layout)
    return WorkingData(frame, source, layout, W, missing, clusters)


def test_make_plan_returns_everything_it_decides_and_leaves_the_estimator_alone(clustered):
    data = _working(clustered)
    plan = make_plan(data, PlanSettings(), data.missing, np.zeros(len(clustered), dtype=bool))
    assert plan.visit_sequence == ["y"]
    assert type(plan.methods["y"]).__name__ == "RandomEffectsPMM"
    assert plan.predictor_matrix.loc["y", "x"] == 3  # level-1 predictor with its cluster mean, by default
    assert plan.clusters is data.clusters and plan.n_clusters == 30
    np.testing.assert_array_equal(plan.impute_rows[2], np.flatnonzero(clustered["y"].isna()))
    # the same plan again: planning is a function of its inputs
    again = make_plan(data, PlanSettings(), data.missing, np.zeros(len(clustered), dtype=bool))
    assert again.predictor_matrix.equals(plan.predictor_matrix) and again.events == plan.events


def test_cluster_fixed_effects_are_refused_before_the_chains_where_a_cluster_never_observes_the_target(clustered):
    data = clustered.copy()
    data.loc[data["g"] == "s03", "y"] = np.nan
    imputer = MultilevelIterativeImputer(
        methods={"y": BayesianNormal()}, predictor_matrix=pd.DataFrame({"g": {"y": 1}}), n_imputations=1, max_iter=1
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(
            ValueError, match=r"BayesianNormal cannot impute 'y' in clusters where it is never observed.*\['s03'\]"
        ):
            imputer.fit(data, groups="g")
    assert not hasattr(imputer, "final_draws_")  # refused at planning, no chain ran
    # observed in every cluster: the same model and matrix are fine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imputer.fit(clustered, groups="g")
    assert not np.isnan(imputer.imputations_["y"]).any()


# --------------------------------------------------------------------------- the count check
def _counts(outcome_sd, seed=0, J=600, n_j=20):
    """Poisson counts y (log-linear in x, random intercepts) and an outcome o = 1 + 0.3 y + 0.5 x + v + e."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(J), n_j)
    x = rng.normal(size=J * n_j)
    y = rng.poisson(np.exp(0.5 + 0.4 * x + 0.5 * rng.normal(size=J)[g])).astype(float)
    o = 1 + 0.3 * y + 0.5 * x + 0.5 * rng.normal(size=J)[g] + rng.normal(scale=outcome_sd, size=J * n_j)
    y[rng.random(J * n_j) < 0.2] = np.nan
    return pd.DataFrame({"g": [f"s{k:03d}" for k in g], "x": x, "o": o, "y": y})


@pytest.mark.parametrize(
    ("outcome_sd", "expected"),
    [(1.0, "RandomEffectsPMM"), (None, "RandomEffectsPoisson")],
)
def test_the_default_poisson_model_is_kept_only_where_it_fits_the_count_given_its_predictors(outcome_sd, expected):
    # With outcome SD 1 the count is underdispersed given o (Pearson dispersion about 0.88); without
    # o among its predictors it is Poisson given x. 9600 observed counts make the SE of the dispersion
    # about 0.015, so the 0.05 tolerance is more than 3.29 SEs from 1 and from 0.88: either decision
    # is wrong with probability below 0.001 (checked below from the fit's own SE, not assumed).
    frame = _counts(outcome_sd or 1.0)
    if outcome_sd is None:
        frame = frame.drop(columns="o")
    data = _working(frame)
    plan = make_plan(data, PlanSettings(), data.missing, np.zeros(len(frame), dtype=bool))
    assert type(plan.methods["y"]).__name__ == expected
    observed = frame["y"].notna().to_numpy()
    predictors = frame.drop(columns=["g", "y"]).to_numpy()[observed]
    fit = poisson_fixed_effects(predictors, frame["y"].to_numpy()[observed], data.clusters.codes[observed], 600)
    margin = abs(abs(fit.dispersion - 1) - COUNT_FIT_TOLERANCE) if outcome_sd else COUNT_FIT_TOLERANCE
    assert margin > 3.29 * fit.dispersion_se
    logged = [reason for column, reason in plan.events if column == "y"]
    if expected == "RandomEffectsPMM":
        assert logged == [
            f"count column: Poisson conditional model does not fit (Pearson dispersion {fit.dispersion:.2f}, "
            f"SE {fit.dispersion_se:.2f}, given its predictors; within 0.05 of 1 is needed): RandomEffectsPMM"
        ]
    else:
        assert not logged


def test_a_poisson_model_the_user_names_is_never_checked():
    frame = _counts(1.0, J=100)
    data = _working(frame)
    settings = PlanSettings(methods={"y": "RandomEffectsPoisson"})
    plan = make_plan(data, settings, data.missing, np.zeros(len(frame), dtype=bool))
    assert type(plan.methods["y"]).__name__ == "RandomEffectsPoisson" and not plan.events


# --------------------------------------------------------------------------- cluster means by level
def _three_levels(seed=0, schools=50, classes=4, pupils=6):
    rng = np.random.default_rng(seed)
    school = np.repeat(np.arange(schools), classes * pupils)
    klass = np.repeat(np.arange(schools * classes), pupils)
    n = school.size
    s = rng.normal(size=schools)[school]
    c = rng.normal(size=schools * classes)[klass]
    x = rng.normal(size=n) + 0.5 * c
    y = x + c + s + rng.normal(size=n)
    frame = pd.DataFrame({"school": school, "class": klass, "x": x, "c": c, "s": s, "y": y})
    frame.loc[rng.random(n) < 0.2, "y"] = np.nan
    frame.loc[np.isin(klass, rng.choice(schools * classes, 10, replace=False)), "c"] = np.nan
    return frame


def _design_names(imputer):
    from skmlmi._plan import design

    plan = imputer._fitted.plan
    return {t.name: design(imputer._fitted.W, t, plan.clusters)[2] for t in plan.targets}


def test_codes_3_add_the_means_by_every_level_above_the_target():
    imputer = MultilevelIterativeImputer(n_imputations=1, max_iter=1, random_state=0)
    imputer.fit(_three_levels(), groups=["school", "class"])
    names = _design_names(imputer)
    # a pupil-level target: the pupil-level x by school and by class, the class-level c by school only,
    # the school-level s none (each is its own mean where it is constant)
    assert names["y"] == ["x", "mean(x|school)", "mean(x|class)", "c", "mean(c|school)", "s"]
    # a class-level target (imputed over classes with a school intercept): the school means of its predictors
    assert names["c"] == ["x", "mean(x|school)", "s", "y", "mean(y|school)"]
    assert imputer.predictor_matrix_.loc["y", "s"] == 1 and imputer.predictor_matrix_.loc["y", "x"] == 3


def test_cluster_mean_levels_chooses_the_factors_and_names_what_it_does_not_know():
    data = _three_levels()
    imputer = MultilevelIterativeImputer(
        n_imputations=1, max_iter=1, random_state=0, cluster_mean_levels={"x": ["class"], "c": "school"}
    )
    imputer.fit(data, groups=["school", "class"])
    assert _design_names(imputer)["y"] == ["x", "mean(x|class)", "c", "mean(c|school)", "s"]
    for levels, message in (
        ({"z": ["school"]}, r"names 'z', which is not a predictor column"),
        ({"x": ["district"]}, r"cluster_mean_levels\['x'\] names \['district'\], which are not grouping columns"),
    ):
        with pytest.raises(ValueError, match=message):
            MultilevelIterativeImputer(n_imputations=1, max_iter=1, cluster_mean_levels=levels).fit(
                data, groups=["school", "class"]
            )


def test_random_slope_levels_reach_the_design_as_each_columns_factors():
    from skmlmi._plan import design

    matrix = pd.DataFrame({"x": {"y": 4}, "s": {"y": 2}})
    imputer = MultilevelIterativeImputer(
        n_imputations=1, max_iter=1, random_state=0, predictor_matrix=matrix, random_slope_levels={"x": ["class"]}
    )
    imputer.fit(_three_levels(), groups=["school", "class"])
    plan = imputer._fitted.plan
    target = next(t for t in plan.targets if t.name == "y")
    _, roles, names, slopes_by = design(imputer._fitted.W, target, plan.clusters)
    by_name = dict(zip(names, zip(roles, slopes_by, strict=True), strict=True))
    assert by_name["x"] == (2, (1,))  # the slope of x varies over classes only
    assert by_name["mean(x|school)"] == (1, None) and by_name["s"] == (2, None)  # s: over every factor


def test_crossed_factors_give_the_means_by_both():
    rng = np.random.default_rng(1)
    n = 1200
    a, b = rng.integers(0, 40, n), rng.integers(0, 30, n)
    x = rng.normal(size=n) + rng.normal(size=30)[b]
    y = x + rng.normal(size=40)[a] + rng.normal(size=n)
    y[rng.random(n) < 0.2] = np.nan
    frame = pd.DataFrame({"a": a, "b": b, "x": x, "y": y})
    imputer = MultilevelIterativeImputer(n_imputations=1, max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # read as crossed
        imputer.fit(frame, groups=["a", "b"])
    assert _design_names(imputer)["y"] == ["x", "mean(x|a)", "mean(x|b)"]


def test_one_factor_keeps_its_names(clustered):
    imputer = MultilevelIterativeImputer(n_imputations=1, max_iter=1, random_state=0).fit(clustered, groups="g")
    assert _design_names(imputer)["y"] == ["x", "mean(x)"]


def test_too_few_units_of_one_factor_leave_out_only_its_means():
    imputer = MultilevelIterativeImputer(n_imputations=1, max_iter=1, random_state=0)
    with pytest.warns(UserWarning, match=r"y: means by 'school' of \['x', 'c'\] left out.*20 unit\(s\) of 'school'"):
        imputer.fit(_three_levels(schools=20), groups=["school", "class"])
    assert _design_names(imputer)["y"] == ["x", "mean(x|class)", "c", "s"]  # 80 classes afford the class means
    assert imputer.predictor_matrix_.loc["y", "x"] == 3 and imputer.predictor_matrix_.loc["y", "c"] == 1


def test_the_fitted_predictor_matrix_of_several_factors_can_be_given_back():
    data = _three_levels()
    first = MultilevelIterativeImputer(n_imputations=1, max_iter=1, random_state=0)
    first.fit(data, groups=["school", "class"])
    matrix = first.predictor_matrix_.copy()
    assert matrix.loc["y", "class"] == -2 and matrix.loc["y", "school"] == -2
    matrix.loc["c", "y"] = 1
    again = MultilevelIterativeImputer(n_imputations=1, max_iter=1, random_state=0, predictor_matrix=matrix)
    again.fit(data, groups=["school", "class"])
    assert again.predictor_matrix_.loc["c", "y"] == 1
    matrix.loc["y", "class"] = 1
    with pytest.raises(ValueError, match=r"predictor_matrix\['y', 'class'\] = 1: 'class' is a further grouping factor"):
        MultilevelIterativeImputer(n_imputations=1, max_iter=1, predictor_matrix=matrix).fit(
            data, groups=["school", "class"]
        )


def test_set_up_detects_each_column_once_and_recommends_what_recommend_methods_does(monkeypatch):
    """The plan hands its codecs and constancy to the recommendation: no column is detected twice
    (the issue's 1M-row set-up spent a third of its time doing so), and the models are the same."""
    import skmlmi._clusters
    import skmlmi.recommend
    from skmlmi import recommend_methods

    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(40), 12)
    frame = pd.DataFrame(
        {
            "g": g,
            "x": rng.normal(size=480),
            "w": np.repeat(rng.normal(size=40), 12),  # cluster-level
            "k": np.round(rng.normal(50.0, 10.0, 480)),  # whole numbers
            "b": (rng.random(480) < 0.4).astype(float),
            "c": pd.Categorical(rng.choice(["p", "q", "r"], 480)),
            "s": rng.normal(size=480),  # missing in whole clusters of 12 rows: small, so a one-stage model
            "t": (rng.random(480) < 0.5).astype(float),  # the same, binary
        }
    )
    frame.loc[np.isin(g, [0, 2, 4, 6, 8, 10]), ["s", "t"]] = np.nan
    for name, share in (("x", 0.2), ("k", 0.2), ("b", 0.2), ("c", 0.2)):
        frame.loc[rng.random(480) < share, name] = np.nan
    frame.loc[np.isin(g, [1, 5, 9]), "w"] = np.nan
    expected = recommend_methods(frame, "g").set_index("column")["method_name"]
    assert expected[["s", "t"]].tolist() == ["RandomEffectsPMM", "RandomEffectsLogistic"]  # the thresholds agree

    calls = []
    original = skmlmi._clusters.cluster_constancy
    monkeypatch.setattr(skmlmi._clusters, "cluster_constancy", lambda *a: calls.append(1) or original(*a))

    def detected_again(*args, **kwargs):
        raise AssertionError("a column was detected again by the recommendation")

    monkeypatch.setattr(skmlmi.recommend, "detect_codec", detected_again)
    monkeypatch.setattr(skmlmi.recommend, "is_cluster_constant", detected_again)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = MultilevelIterativeImputer(random_state=0).plan_summary(frame, groups="g")
    assert len(calls) == frame.shape[1] - 1  # one constancy per column, the groups column aside
    chosen = table.set_index("column")["model"].str.split("(").str[0]
    assert chosen.reindex(expected.index).tolist() == expected.tolist()
