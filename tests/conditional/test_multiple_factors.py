"""Several grouping factors: the front door (nested, crossed, combined labels) and the models with a
random intercept per factor, against known truth.

Known-truth tests: seeded replications; the imputed data's variance components (method of moments)
are compared with those of the complete data, replication by replication, and the mean difference
must lie within 3.5 Monte Carlo standard errors of zero (3 components, family-wise), while the
imputation by one factor only must be biased in the same test (the ignored factor's variance moves
to the residual).
"""

import warnings

import numpy as np
import pandas as pd
import pytest

from skmlmi import MultilevelIterativeImputer
from skmlmi._clusters import Clusters
from skmlmi.analysis import LinearMixedModel
from skmlmi.conditional import (
    ClusterLevelLogistic,
    ClusterLevelNormal,
    ClusterLevelPMM,
    ClusterMean,
    RandomEffectsCategorical,
    RandomEffectsLogistic,
    RandomEffectsNormal,
    RandomEffectsPMM,
    TwoStageLogistic,
)
from skmlmi.conditional.base import DrawContext

SCHOOLS, CLASSES, PUPILS = 60, 5, 8  # balanced: 60 schools x 5 classes x 8 pupils


def _missing_at_random(rng, frame):
    """y missing with probability logistic(-1 + x): about 30%, MAR on x."""
    incomplete = frame.copy()
    incomplete.loc[rng.random(len(frame)) < 1 / (1 + np.exp(1.0 - frame["x"])), "y"] = np.nan
    return incomplete


def _three_level(seed):
    """Variance shares of y given x: 0.10 school, 0.15 class, 0.50 pupil (x adds 0.25 at level 1)."""
    rng = np.random.default_rng(seed)
    n = SCHOOLS * CLASSES * PUPILS
    school = np.repeat(np.arange(SCHOOLS), CLASSES * PUPILS)
    klass = np.repeat(np.arange(SCHOOLS * CLASSES), PUPILS)
    x = rng.normal(size=n)
    y = (
        0.5 * x
        + np.sqrt(0.10) * rng.normal(size=SCHOOLS)[school]
        + np.sqrt(0.15) * rng.normal(size=SCHOOLS * CLASSES)[klass]
        + np.sqrt(0.50) * rng.normal(size=n)
    )
    frame = pd.DataFrame({"school": school, "klass": klass, "x": x, "y": y})
    return frame, _missing_at_random(rng, frame)


def _nested_components(y, shape=(SCHOOLS, CLASSES, PUPILS)):
    """(school, class, residual) variance of y by the balanced three-level ANOVA."""
    SCHOOLS, CLASSES, PUPILS = shape
    y = np.asarray(y).reshape(SCHOOLS, CLASSES, PUPILS)
    class_means = y.mean(axis=2)
    school_means = class_means.mean(axis=1)
    ms_error = ((y - class_means[:, :, None]) ** 2).sum() / (SCHOOLS * CLASSES * (PUPILS - 1))
    ms_class = PUPILS * ((class_means - school_means[:, None]) ** 2).sum() / (SCHOOLS * (CLASSES - 1))
    ms_school = CLASSES * PUPILS * ((school_means - school_means.mean()) ** 2).sum() / (SCHOOLS - 1)
    return np.array([(ms_school - ms_class) / (CLASSES * PUPILS), (ms_class - ms_error) / PUPILS, ms_error])


def _crossed(seed, n_a=120, n_b=40, met=10, per_cell=2):
    """Sparse crossed factors: each unit of a meets 10 of the 40 units of b; shares 0.15 a, 0.10 b."""
    rng = np.random.default_rng(seed)
    a = np.repeat(np.arange(n_a), met * per_cell)
    b = np.concatenate([np.repeat(rng.choice(n_b, met, replace=False), per_cell) for _ in range(n_a)])
    x = rng.normal(size=len(a))
    y = (
        0.5 * x
        + np.sqrt(0.15) * rng.normal(size=n_a)[a]
        + np.sqrt(0.10) * rng.normal(size=n_b)[b]
        + np.sqrt(0.50) * rng.normal(size=len(a))
    )
    frame = pd.DataFrame({"a": a, "b": b, "x": x, "y": y})
    return frame, _missing_at_random(rng, frame)


def _pair_sums(y, g):
    """Sum over pairs of rows within a unit of (y_i - y_j)^2, and the number of such pairs."""
    n = np.bincount(g)
    s1, s2 = np.bincount(g, y), np.bincount(g, y * y)
    return (n * s2 - s1**2).sum(), (n * (n - 1) / 2).sum()


def _crossed_components(frame):
    """(a, b, residual) variances by pair differences: half the mean squared difference of two rows is
    sigma^2 in one cell, tau_b^2 + sigma^2 within a unit of a across units of b, and so on (unbiased)."""
    y, a, b = (frame[c].to_numpy() for c in ("y", "a", "b"))
    cell = np.unique(a * (b.max() + 1) + b, return_inverse=True)[1]
    (d_a, p_a), (d_b, p_b), (d_c, p_c) = _pair_sums(y, a), _pair_sums(y, b), _pair_sums(y, cell)
    sigma2 = d_c / p_c / 2
    return np.array([(d_b - d_c) / (p_b - p_c) / 2 - sigma2, (d_a - d_c) / (p_a - p_c) / 2 - sigma2, sigma2])


def _bias(simulate, components, model, groups, replications, n_imputations=10, max_iter=10):
    """Mean over replications of (imputed - complete) variance components, and its Monte Carlo SE."""
    differences = []
    for r in range(replications):
        complete, incomplete = simulate(1000 + r)
        imputer = MultilevelIterativeImputer(
            methods={"y": model}, n_imputations=n_imputations, max_iter=max_iter, random_state=r
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imputed = imputer.fit_transform_all(incomplete, groups=groups)
        estimate = np.mean([components(d) for d in imputed], axis=0)
        differences.append(estimate - components(complete))
    differences = np.array(differences)
    return differences.mean(axis=0), differences.std(axis=0, ddof=1) / np.sqrt(replications)


def _nested(frame):
    return _nested_components(frame["y"])


@pytest.mark.parametrize("model", [RandomEffectsNormal(), RandomEffectsPMM()], ids=["normal", "pmm"])
def test_three_levels_keep_each_levels_variance_and_two_levels_do_not(model):
    bias, se = _bias(_three_level, _nested, model, ["school", "klass"], 20)
    assert (se < 0.1 * np.array([0.10, 0.15, 0.75])).all()  # the test can see a 10% bias
    assert (np.abs(bias) < 3.5 * se).all(), (bias, se)
    if isinstance(model, RandomEffectsNormal) and not isinstance(model, RandomEffectsPMM):
        two_level, se2 = _bias(_three_level, _nested, model, "school", 20)
        # by school only, the imputed values lack the class variance: it moves to the residual
        assert two_level[1] < -3.5 * se2[1] and two_level[1] < -0.2 * 0.15, (two_level, se2)
        assert two_level[2] > 3.5 * se2[2], (two_level, se2)


@pytest.mark.parametrize("model", [RandomEffectsNormal(), RandomEffectsPMM()], ids=["normal", "pmm"])
def test_crossed_factors_keep_both_variances_and_one_factor_does_not(model):
    bias, se = _bias(_crossed, _crossed_components, model, ["a", "b"], 20)
    assert (se < 0.1 * np.array([0.15, 0.10, 0.75])).all()
    assert (np.abs(bias) < 3.5 * se).all(), (bias, se)
    if not isinstance(model, RandomEffectsPMM):
        one, se1 = _bias(_crossed, _crossed_components, model, "a", 20)
        assert one[1] < -3.5 * se1[1] and one[1] < -0.2 * 0.10, (one, se1)


BINARY = (40, 5, 10)  # 40 schools x 5 classes x 10 pupils


def _discrete_layout(rng):
    """The BINARY design's codes, a standard normal x, and a maker of school + class intercepts (SDs 0.6, 0.5)."""
    schools, classes, pupils = BINARY
    school = np.repeat(np.arange(schools), classes * pupils)
    klass = np.repeat(np.arange(schools * classes), pupils)
    x = rng.normal(size=school.size)

    def effects():
        return 0.6 * rng.normal(size=schools)[school] + 0.5 * rng.normal(size=schools * classes)[klass]

    return school, klass, x, effects


def _three_level_binary(seed):
    """logit P(y = 1) = -0.3 + 0.8 x + u_school + u_class, SDs 0.6 and 0.5; y 30% MAR on x."""
    rng = np.random.default_rng(seed)
    school, klass, x, effects = _discrete_layout(rng)
    n = school.size
    eta = -0.3 + 0.8 * x + effects()
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    frame = pd.DataFrame({"school": school, "klass": klass, "x": x, "y": y})
    return frame, _missing_at_random(rng, frame)


def _nested_binary(frame):
    return _nested_components(frame["y"], BINARY)


def test_binary_three_levels_keep_each_levels_variance_and_two_levels_do_not():
    # the between-unit variance components of the 0/1 outcome (ANOVA moments): about 0.016 school and
    # 0.010 class in the complete data; 20 replications of m = 5
    bias, se = _bias(_three_level_binary, _nested_binary, RandomEffectsLogistic(), ["school", "klass"], 20, 5, 5)
    assert (np.abs(bias) < 3.5 * se).all(), (bias, se)
    assert (se[:2] < 0.2 * np.array([0.016, 0.010])).all(), se  # the test can see a 20% bias
    two_level, se2 = _bias(_three_level_binary, _nested_binary, RandomEffectsLogistic(), "school", 20, 5, 5)
    # by school only, the imputed values lack the class variation
    assert two_level[1] < -3.5 * se2[1] and two_level[1] < -0.2 * 0.010, (two_level, se2)


def _three_level_categorical(seed, ordered):
    """Categories 0, 1, 2 with school and class intercepts (SDs 0.6 and 0.5 per linear predictor), 30% MAR on x.

    Unordered: multinomial logit, eta_k = c_k + 0.8 x + u_school,k + u_class,k for k = 1, 2 (independent
    intercepts per category). Ordered: cumulative probit on 0.8 x + u_school + u_class + e, cuts -0.3 and 0.5.
    """
    rng = np.random.default_rng(seed)
    school, klass, x, effects = _discrete_layout(rng)
    n = school.size
    if ordered:
        latent = 0.8 * x + effects() + rng.normal(size=n)
        y = np.searchsorted([-0.3, 0.5], latent).astype(float)
    else:
        eta = np.column_stack([np.zeros(n), -0.2 + 0.8 * x + effects(), -0.5 - 0.8 * x + effects()])
        cumulative = np.cumsum(np.exp(eta) / np.exp(eta).sum(axis=1, keepdims=True), axis=1)
        y = np.minimum((cumulative < rng.random(n)[:, None]).sum(axis=1), 2).astype(float)
    frame = pd.DataFrame({"school": school, "klass": klass, "x": x, "y": y})
    incomplete = _missing_at_random(rng, frame)
    categories = pd.CategoricalDtype([0.0, 1.0, 2.0], ordered=ordered)
    return frame.astype({"y": categories}), incomplete.astype({"y": categories})


def _nested_indicators(frame):
    """ANOVA components (school, class, residual) of the indicators of categories 1 and 2."""
    y = frame["y"].astype(float)
    return np.concatenate([_nested_components(y == k, BINARY) for k in (1.0, 2.0)])


@pytest.mark.parametrize("ordered", [False, True], ids=["unordered", "ordered"])
def test_categorical_three_levels_keep_each_levels_variance_and_two_levels_do_not(ordered):
    """The indicators' between-unit variances (about 0.01-0.02 per level in the complete data) are kept within
    3.5 MC SE (6 components, family-wise); by school only the class variation of the imputed values is lost."""

    def simulate(seed):
        return _three_level_categorical(seed, ordered)

    model = RandomEffectsCategorical()
    bias, se = _bias(simulate, _nested_indicators, model, ["school", "klass"], 20, 5, 5)
    assert (np.abs(bias) < 3.5 * se).all(), (bias, se)
    two_level, se2 = _bias(simulate, _nested_indicators, model, "school", 20, 5, 5)
    class_rows = [1, 4]
    assert (two_level[class_rows] < -3.5 * se2[class_rows]).any(), (two_level, se2)


def test_binary_new_data_with_an_unseen_class():
    _, incomplete = _three_level_binary(3)
    imputer = MultilevelIterativeImputer(methods={"y": "RandomEffectsLogistic"}, n_imputations=2, max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imputer.fit(incomplete, groups=["school", "klass"])
    new = incomplete.iloc[:60].copy()
    new.loc[:29, "klass"] = 10_000  # a class unseen at fit: its intercept is a population draw
    new.loc[:, "y"] = np.nan
    out = imputer.transform(new)
    assert set(out["y"].unique()) <= {0.0, 1.0} and out["y"].notna().all()


# --------------------------------------------------------------------------- the front door
def _small():
    frame, incomplete = _three_level(0)
    return frame.iloc[:400].reset_index(drop=True), incomplete.iloc[:400].reset_index(drop=True)


def test_one_factor_in_a_list_is_that_column_bit_for_bit():
    _, incomplete = _small()
    one = MultilevelIterativeImputer(n_imputations=2, max_iter=2, random_state=0).fit_transform(
        incomplete, groups="school"
    )
    listed = MultilevelIterativeImputer(n_imputations=2, max_iter=2, random_state=0).fit_transform(
        incomplete, groups=["school"]
    )
    pd.testing.assert_frame_equal(one, listed)


def test_factors_from_columns_arrays_and_frames_agree():
    _, incomplete = _small()
    labels = incomplete[["school", "klass"]].to_numpy()
    results = []
    for data, groups in (
        (incomplete, ["school", "klass"]),
        (incomplete[["x", "y"]], labels),
        (incomplete[["x", "y"]], pd.DataFrame(labels)),
    ):
        imputer = MultilevelIterativeImputer(methods="RandomEffectsNormal", n_imputations=2, max_iter=2, random_state=0)
        out = imputer.fit_transform(data, groups=groups)
        results.append(out["y"].to_numpy())
        assert imputer._fitted.plan.clusters.structure == "nested"
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


def test_grouping_columns_are_never_predictors_and_dropped_together():
    _, incomplete = _small()
    imputer = MultilevelIterativeImputer(methods="RandomEffectsPMM", n_imputations=2, max_iter=2, keep_groups=False)
    out = imputer.fit_transform(incomplete, groups=["school", "klass"])
    assert list(out.columns) == ["x", "y"]
    assert imputer.predictor_matrix_.loc["y", "klass"] == -2
    assert imputer.predictor_matrix_.loc["klass"].eq(0).all()
    assert list(imputer.get_feature_names_out()) == ["x", "y"]


def test_repeating_inner_labels_are_crossed_unless_nested_is_said():
    frame = pd.DataFrame({"batch": np.repeat(list("ABCDEFGH"), 6), "cask": np.tile(np.repeat(list("abc"), 2), 8)})
    with pytest.warns(UserWarning, match="cluster_structure='nested'"):  # the trap is named
        assert Clusters.from_data(frame, ["batch", "cask"]).structure == "crossed"
    nested = Clusters.from_data(frame, ["batch", "cask"], "nested")
    assert nested.structure == "nested" and nested.counts == (8, 24)
    assert nested.factors[1].labels[0] == ("A", "a")  # batch:cask, as lme4's batch/cask


def test_crossed_said_of_nested_data_warns():
    _, incomplete = _small()
    with pytest.warns(UserWarning, match="look nested"):
        Clusters.from_data(incomplete, ["school", "klass"], "crossed")


def test_a_model_taking_one_factor_is_a_clear_error():
    _, incomplete = _small()
    incomplete["z"] = (incomplete["x"] > 0).astype(float)
    incomplete.loc[::7, "z"] = np.nan
    imputer = MultilevelIterativeImputer(methods={"z": TwoStageLogistic()}, n_imputations=1, max_iter=1)
    with pytest.raises(ValueError, match="TwoStageLogistic for 'z' takes one grouping factor"):
        imputer.fit(incomplete, groups=["school", "klass"])


def test_new_data_with_unseen_units_of_each_factor():
    _, incomplete = _small()
    imputer = MultilevelIterativeImputer(methods="RandomEffectsNormal", n_imputations=2, max_iter=3, random_state=0)
    imputer.fit(incomplete, groups=["school", "klass"])
    new = incomplete.iloc[:40].copy()
    new.loc[:19, "klass"] = 10_000  # a class unseen at fit, in a seen school
    new.loc[:, "y"] = np.nan
    out = imputer.transform(new)
    assert out["y"].notna().all()
    np.testing.assert_array_equal(out["x"], new["x"])


def test_direct_draw_with_an_array_of_factor_codes():
    rng = np.random.default_rng(0)
    frame, incomplete = _crossed(3)
    groups = frame[["a", "b"]].to_numpy()
    observed = incomplete["y"].notna().to_numpy()
    X = frame[["x"]].to_numpy()
    draw, state = RandomEffectsNormal().draw(frame["y"].to_numpy(), observed, X, np.array([1]), groups, rng)
    assert draw.sample(X[~observed], groups[~observed], rng).shape == ((~observed).sum(),)
    assert state.variances["tau2"].shape == (2,)


def test_variables_of_each_level_are_imputed_at_their_level():
    """A school-level and a class-level variable, missing in whole schools / classes: each is imputed by a
    cluster-level model on the units of its own factor, so it stays constant within them (new data too)."""
    _, incomplete = _three_level(5)
    rng = np.random.default_rng(2)
    school, klass = incomplete["school"].to_numpy(), incomplete["klass"].to_numpy()
    s = rng.normal(size=SCHOOLS)
    w = 0.5 * s[np.arange(SCHOOLS * CLASSES) // CLASSES] + rng.normal(size=SCHOOLS * CLASSES)
    incomplete["s"], incomplete["w"] = s[school], w[klass]
    incomplete.loc[np.isin(school, rng.choice(SCHOOLS, 18, replace=False)), "s"] = np.nan
    incomplete.loc[np.isin(klass, rng.choice(SCHOOLS * CLASSES, 90, replace=False)), "w"] = np.nan
    imputer = MultilevelIterativeImputer(methods={"y": "RandomEffectsNormal"}, n_imputations=2, max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        completed = imputer.fit_transform_all(incomplete, groups=["school", "klass"])
    assert {t.name: (type(t.model).__name__, t.factor) for t in imputer._fitted.plan.targets} == {
        "y": ("RandomEffectsNormal", None),
        "s": ("ClusterLevelNormal", 0),
        "w": ("ClusterLevelNormal", 1),
    }
    for data in completed:
        assert data["s"].notna().all() and data["w"].notna().all()
        assert data.groupby("school")["s"].nunique().max() == 1
        assert data.groupby("klass")["w"].nunique().max() == 1
    new = incomplete.iloc[:80].copy()
    new["w"] = np.nan
    new.loc[:39, "klass"] = 10_000  # an unseen class: one draw for all its rows
    assert imputer.transform(new).groupby("klass")["w"].nunique().max() == 1


def test_nested_factors_given_inner_to_outer_are_an_error_when_nested_is_said():
    _, incomplete = _small()
    assert Clusters.from_data(incomplete, ["klass", "school"]).structure == "crossed"  # same random intercepts
    with pytest.raises(ValueError, match="inner to outer"):
        Clusters.from_data(incomplete, ["klass", "school"], "nested")


def _class_level(seed, kind):
    """A class-level variable c (150 schools x 5 classes x 3 pupils) with most of its variance between schools:
    c_sc = g_s + h_sc, Var g = 1, Var h = 0.25 (binary: the indicator c > 0); 40% of classes lack it (MCAR)."""
    rng = np.random.default_rng(seed)
    n_schools, n_classes, n_pupils = 150, 5, 3
    units = n_schools * n_classes
    klass = np.repeat(np.arange(units), n_pupils)
    c = rng.normal(size=n_schools)[np.arange(units) // n_classes] + 0.5 * rng.normal(size=units)
    if kind == "binary":
        c = (c > 0).astype(float)
    elif kind in ("categorical", "ordered"):  # labels of three bands of the class value
        bands = ["low", "middle", "high"]
        c = pd.Categorical(np.array(bands)[np.digitize(c, [-0.5, 0.5])], categories=bands, ordered=kind == "ordered")
    frame = pd.DataFrame(
        {"school": klass // n_classes, "klass": klass, "x": rng.normal(size=klass.size), "c": c[klass]}
    )
    incomplete = frame.copy()
    incomplete.loc[(rng.random(units) < 0.4)[klass], "c"] = np.nan
    return frame, incomplete


def _between_schools(frame):
    """One-way ANOVA estimate of the between-school variance of the classes' values (balanced; of the
    indicator of "high" for a categorical c)."""
    c = frame["c"]
    c = (c == "high").astype(float) if isinstance(c.dtype, pd.CategoricalDtype) else c
    values = c.groupby(frame["klass"]).first().to_numpy().reshape(-1, 5)
    return 5 * values.mean(axis=1).var(ddof=1) - values.var(axis=1, ddof=1).mean()


@pytest.mark.parametrize(
    "model, kind",
    [
        (ClusterLevelNormal(), "continuous"),
        (ClusterLevelPMM(), "continuous"),
        (ClusterLevelLogistic(), "binary"),
        (ClusterMean(), "binary"),
        (ClusterMean(), "categorical"),
        (ClusterMean(), "ordered"),
    ],
    ids=["normal", "pmm", "logistic", "mean-binary", "mean-categorical", "mean-ordered"],
)
def test_a_class_level_variable_keeps_its_school_variance(model, kind):
    """Imputed at the class level with a random school intercept (the classes of a school share their school's
    part). A model over classes alone (the school column dropped, one factor: the class) imputes the classes
    without it. Measured over these 10 replications (relative bias, MC SE): with the school intercept -0.2%
    (1.2%) normal, +0.4% (1.7%) PMM, -3.6% (1.6%) logistic; ClusterMean's classes without an observed value
    (a random-intercept logistic or categorical model over the classes in their schools) -3.1% (1.7%)
    binary, -2.2% (2.0%) unordered, -1.8% (2.0%) ordered (indicator of the top band); over classes alone
    -64% to -67%. Bound: 10% (the validity matrix's for variance components) + 3 MC SE."""
    replications = 10
    kept, lost = [], []
    for r in range(replications):
        complete, incomplete = _class_level(r, kind)
        truth = _between_schools(complete)
        for groups, out in ((["school", "klass"], kept), ("klass", lost)):
            imputer = MultilevelIterativeImputer(methods={"c": model}, n_imputations=5, max_iter=3, random_state=r)
            data = incomplete if groups != "klass" else incomplete.drop(columns="school")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                imputed = imputer.fit_transform_all(data, groups=groups)
            imputed = [d.assign(school=complete["school"]) for d in imputed]
            out.append(np.mean([_between_schools(d) for d in imputed]) / truth - 1.0)
    for share, within in ((np.mean(kept), True), (np.mean(lost), False)):
        se = np.std(kept if within else lost, ddof=1) / np.sqrt(replications)
        if within:
            assert abs(share) < 0.10 + 3 * se, (share, se)
        else:
            assert share < -(0.10 + 3 * se), (share, se)


def test_a_cluster_level_model_given_crossed_codes_is_a_clear_error():
    rng = np.random.default_rng(0)
    groups = np.column_stack([np.tile([0, 1], 6), np.repeat(np.arange(3), 4)])  # class 0 in schools 0 and 1
    y = np.repeat(rng.normal(size=3), 4)
    observed = np.repeat([True, True, False], 4)
    with pytest.raises(ValueError, match="lies in more than one unit of an outer factor"):
        ClusterLevelNormal().draw(y, observed, np.zeros((12, 0)), np.ones(0, int), groups, rng)


@pytest.mark.parametrize("ordered", [False, True], ids=["unordered", "ordered"])
def test_categorical_new_data_with_an_unseen_class_keeps_the_categories(ordered):
    _, incomplete = _three_level_categorical(3, ordered)
    imputer = MultilevelIterativeImputer(n_imputations=2, max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imputer.fit(incomplete, groups=["school", "klass"])
    assert type(imputer.methods_["y"]).__name__ == "RandomEffectsCategorical"  # the default with several factors
    new = incomplete.iloc[:60].copy()
    new.loc[:29, "klass"] = 10_000  # a class unseen at fit: its intercepts are population draws
    new.loc[:, "y"] = np.nan
    out = imputer.transform(new)
    assert out["y"].notna().all() and out["y"].dtype == incomplete["y"].dtype


def test_a_missing_label_of_an_inner_factor_names_its_column():
    _, incomplete = _small()
    incomplete["klass"] = incomplete["klass"].astype(float).where(incomplete.index != 7)
    with pytest.raises(ValueError, match="grouping column 'klass' has missing cluster labels"):
        MultilevelIterativeImputer(n_imputations=1, max_iter=1).fit(incomplete, groups=["school", "klass"])


def test_units_without_an_observed_value_are_logged_by_their_factors_name():
    _, incomplete = _small()
    incomplete.loc[incomplete["klass"] == incomplete["klass"].iloc[0], "y"] = np.nan  # one class without y
    imputer = MultilevelIterativeImputer(methods={"y": "RandomEffectsNormal"}, n_imputations=1, max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imputer.fit(incomplete, groups=["school", "klass"])
    reasons = " ".join(imputer.logged_events_["reason"].astype(str))
    assert "1 unit(s) of 'klass' with no observed value of 'y'" in reasons, reasons


def _crossed_slope(seed):
    """Crossed factors a (200 units) and b (40): y = 0.5 x + u_a + v_b0 + v_b1 x + e with Var(v_b1) = 0.2;
    y 30-40% missing, MAR on x."""
    rng = np.random.default_rng(seed)
    n_a, n_b, n = 200, 40, 6000
    a, b = rng.integers(0, n_a, n), rng.integers(0, n_b, n)
    x = rng.normal(size=n) + rng.normal(0, 0.4, n_b)[b]
    y = (
        0.5 * x
        + rng.normal(0, 0.4, n_a)[a]
        + rng.normal(0, 0.3, n_b)[b]
        + rng.normal(0, np.sqrt(0.2), n_b)[b] * x
        + rng.normal(0, 0.8, n)
    )
    complete = pd.DataFrame({"a": a, "b": b, "x": x, "y": y})
    incomplete = complete.copy()
    incomplete.loc[rng.random(n) < 1 / (1 + np.exp(1 - 0.8 * x)), "y"] = np.nan
    return complete, incomplete


@pytest.mark.parametrize("model", [RandomEffectsNormal(), RandomEffectsPMM()], ids=["normal", "pmm"])
def test_random_slopes_with_crossed_factors_keep_the_slope_variance(model):
    """A predictor coded 2 gets a random slope at every factor. Without it, the b-level variance of the slope
    of x is imputed as zero and the completed data lose half of it. Measured here (seeds 0-2, m = 3; relative
    bias of that variance against the complete data's): with the slope +3.8%, +0.2%, +3.4% (normal) and +1.9%,
    -3.1%, +1.5% (PMM); with intercepts only -51% to -60% for both. Asserted: the mean of the three within 15%
    (the validity matrix's 10% + about 3 MC SE of a mean of three) with the slope, below -35% without it."""
    formula = "y ~ x + (1 | a) + (1 + x | b)"
    kept, lost = [], []
    for seed in range(3):
        complete, incomplete = _crossed_slope(seed)
        truth = LinearMixedModel(formula).fit(complete).variance_components_["x~~x|b"]
        for matrix, out in ((pd.DataFrame({"x": {"y": 2}}), kept), (None, lost)):
            imputer = MultilevelIterativeImputer(
                methods={"y": model}, predictor_matrix=matrix, n_imputations=3, max_iter=5, random_state=seed
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sets = imputer.fit_transform_all(incomplete, groups=["a", "b"])
            estimate = np.mean([LinearMixedModel(formula).fit(s).variance_components_["x~~x|b"] for s in sets])
            out.append(estimate / truth - 1.0)
    assert abs(np.mean(kept)) < 0.15, kept
    assert np.mean(lost) < -0.35, lost


def test_random_slopes_with_several_factors_impute_new_data_with_unseen_units():
    complete, incomplete = _crossed_slope(0)
    imputer = MultilevelIterativeImputer(
        predictor_matrix=pd.DataFrame({"x": {"y": 2}}), n_imputations=2, max_iter=2, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imputer.fit(incomplete, groups=["a", "b"])
        new = incomplete.iloc[:50].assign(a=lambda d: d["a"] + 1000, y=np.nan)  # units of a unseen at fit
        new.loc[new.index[:10], "b"] = 999  # and of b
        out = imputer.transform(new, groups=["a", "b"])
    assert np.isfinite(out["y"]).all() and out["y"].std() > 0


@pytest.mark.parametrize("slope_sd, low, high", [(1.0, 0.5, 2.0), (0.0, 0.0, 0.1)])
def test_logistic_random_slopes_with_crossed_factors_find_the_slope_variance(slope_sd, low, high):
    """RandomEffectsLogistic with a predictor coded 2 and crossed factors: the posterior mean of the b-level
    slope variance (on x's scale; the model works on x / 2 SD) against its truth. Measured (seeds 0-2): 1.06,
    0.97, 1.55 for a variance of 1; 0.007, 0.018, 0.007 for none. Asserted on seed 0 with bounds about 2.5
    posterior SDs wide (40 units of b)."""
    rng = np.random.default_rng(0)
    n_a, n_b, n = 200, 40, 8000
    a, b = rng.integers(0, n_a, n), rng.integers(0, n_b, n)
    x = rng.normal(size=n)
    eta = -0.3 + 0.5 * x + rng.normal(0, 0.5, n_a)[a] + rng.normal(0, 0.5, n_b)[b]
    eta = eta + rng.normal(0, slope_sd, n_b)[b] * x
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    groups = np.column_stack([a, b])
    state, variances = None, []
    for visit in range(12):
        context = DrawContext(
            target="y", kind="binary", n_categories=2, factor_counts=(n_a, n_b), factor_names=("a", "b")
        )
        draw, state = RandomEffectsLogistic().draw(
            y, np.ones(n, bool), x[:, None], np.array([2]), groups, rng, state, context
        )
        if visit >= 4:
            variances.append(state.variances["psi"][1][1, 1] / state.std.scale[0] ** 2)
    assert low < np.mean(variances) < high, variances
    unseen = groups[:20].copy()
    unseen[:5, 1] = n_b + 7  # units of b unseen at fit: population draws
    assert set(np.unique(draw.sample(x[:20, None], unseen, rng))) <= {0.0, 1.0}


def _slope_over_b(**params) -> MultilevelIterativeImputer:
    """An imputer of :func:`_crossed_slope`'s y with a random slope of x over b only."""
    return MultilevelIterativeImputer(
        predictor_matrix=pd.DataFrame({"x": {"y": 2}}), random_slope_levels={"x": ["b"]}, **params
    )


def test_random_slope_levels_give_the_slope_to_the_factors_named():
    """``random_slope_levels={"x": ["b"]}``: the slope of x varies over b only, as ``(1 | a) + (1 + x | b)``.
    The model state holds a 1 x 1 covariance for a and 2 x 2 for b, and the completed data keep the b-level
    slope variance (one seed, m = 3: within 25%, about 3 SE of one replication of the test above)."""
    formula = "y ~ x + (1 | a) + (1 + x | b)"
    complete, incomplete = _crossed_slope(1)
    truth = LinearMixedModel(formula).fit(complete).variance_components_["x~~x|b"]
    imputer = _slope_over_b(n_imputations=3, max_iter=5, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sets = imputer.fit_transform_all(incomplete, groups=["a", "b"])
    psi = imputer._fitted.results[0].states[0].variances["psi"]  # y: the only incomplete column
    assert [p.shape for p in psi] == [(1, 1), (2, 2)]
    estimate = np.mean([LinearMixedModel(formula).fit(s).variance_components_["x~~x|b"] for s in sets])
    assert abs(estimate / truth - 1.0) < 0.25, (estimate, truth)


def test_an_empty_random_slope_level_list_makes_the_slope_fixed():
    _, incomplete = _crossed_slope(2)
    incomplete = incomplete.iloc[:1500]

    def imputed(**options):
        imputer = MultilevelIterativeImputer(n_imputations=1, max_iter=2, random_state=0, **options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return imputer.fit_transform(incomplete, groups=["a", "b"])

    fixed = imputed(predictor_matrix=pd.DataFrame({"x": {"y": 1}}))
    emptied = imputed(predictor_matrix=pd.DataFrame({"x": {"y": 2}}), random_slope_levels={"x": []})
    pd.testing.assert_frame_equal(fixed, emptied)


@pytest.mark.parametrize(
    "levels, message",
    [({"z": ["a"]}, "random_slope_levels names 'z', which is not a predictor column"),
     ({"x": ["school"]}, r"random_slope_levels\['x'\] names \['school'\], which are not grouping columns")],
)  # fmt: skip
def test_random_slope_levels_naming_unknown_columns_are_errors(levels, message):
    _, incomplete = _crossed_slope(0)
    imputer = MultilevelIterativeImputer(random_slope_levels=levels, n_imputations=1, max_iter=1)
    with pytest.raises(ValueError, match=message):
        imputer.fit(incomplete.iloc[:500], groups=["a", "b"])


def test_logistic_random_slopes_at_one_factor_only():
    rng = np.random.default_rng(3)
    n_a, n_b, n = 100, 30, 3000
    a, b = rng.integers(0, n_a, n), rng.integers(0, n_b, n)
    x = rng.normal(size=n)
    eta = 0.5 * x + rng.normal(0, 0.5, n_a)[a] + rng.normal(0, 1.0, n_b)[b] * x
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    groups = np.column_stack([a, b])
    context = DrawContext(
        target="y", kind="binary", n_categories=2, factor_counts=(n_a, n_b), factor_names=("a", "b"),
        slope_factors=((1,),),
    )  # fmt: skip
    draw, state = RandomEffectsLogistic().draw(
        y, np.ones(n, bool), x[:, None], np.array([2]), groups, rng, None, context
    )
    assert [p.shape for p in state.variances["psi"]] == [(1, 1), (2, 2)]
    assert [u.shape for u in draw.effects] == [(n_a, 1), (n_b, 2)]
    assert set(np.unique(draw.sample(x[:20, None], groups[:20], rng))) <= {0.0, 1.0}


@pytest.mark.parametrize("model", ["RandomEffectsNormal", "RandomEffectsPMM", "RandomEffectsLogistic"])
def test_an_imputer_with_random_slopes_and_several_factors_pickles(model):
    """The draws keep no local function: the fitted imputer survives pickle and imputes new data alike."""
    import pickle

    _, incomplete = _crossed_slope(0)
    incomplete = incomplete.iloc[:1500].copy()
    if model == "RandomEffectsLogistic":
        incomplete["y"] = (incomplete["y"] > incomplete["y"].median()).astype(float).where(incomplete["y"].notna())
    imputer = _slope_over_b(methods={"y": model}, n_imputations=1, max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imputer.fit(incomplete, groups=["a", "b"])
        again = pickle.loads(pickle.dumps(imputer))
        new = incomplete.iloc[:40].assign(y=np.nan)
        pd.testing.assert_frame_equal(imputer.transform(new), again.transform(new))
