"""quickpred (mice semantics), predictor matrices suggested from an lme4-style analysis formula, and the
reduction of predictors the rows cannot support (wide data)."""

import numpy as np
import pandas as pd
import pytest

from skmlmi import MultilevelIterativeImputer
from skmlmi.conditional import (
    BayesianLogistic,
    ClusterLevelPMM,
    Polytomous,
    PredictiveMeanMatching,
    RandomEffectsCategorical,
    RandomEffectsLogistic,
    RandomEffectsNormal,
    RandomEffectsPMM,
)
from skmlmi.datasets import load_popmis
from skmlmi.predictors import (
    PredictorSuggestion,
    _correlations,
    available_pairs_correlation,
    limit_predictors,
    quickpred,
    suggest_predictors,
    validate_predictor_matrix,
)


@pytest.fixture
def small():
    # y is missing in rows 4, 5; x correlates with y's values; m correlates with whether y is missing
    return pd.DataFrame(
        {
            "y": [1.0, 2.0, 3.0, 4.5, np.nan, np.nan],
            "x": [1.1, 1.9, 3.2, 4.0, 5.0, 6.0],
            "m": [0.0, 0.1, 0.0, 0.0, 1.0, 1.0],
            "z": [np.nan, 1.0, 0.0, 1.0, 0.0, np.nan],
        }
    )


def _abs_cor(a, b):
    ok = ~np.isnan(a) & ~np.isnan(b)
    return abs(np.corrcoef(a[ok], b[ok])[0, 1])


# ----------------------------------------------------------------------------- quickpred
def test_quickpred_matches_hand_computed_correlations(small):
    arr = {c: small[c].to_numpy() for c in small}
    resp = {c: small[c].notna().to_numpy(dtype=float) for c in small}
    mincor = 0.6
    expected = pd.DataFrame(0, index=small.columns, columns=small.columns)
    for a in ("y", "z"):  # incomplete targets
        for b in small.columns:
            if a == b:
                continue
            v, u = _abs_cor(arr[a], arr[b]), _abs_cor(resp[a], arr[b])
            expected.loc[a, b] = int(max(np.nan_to_num(v), np.nan_to_num(u)) > mincor)
    out = quickpred(small, mincor=mincor)
    pd.testing.assert_frame_equal(out, expected)
    # the hand case: m enters y's row only through the response indicator (|cor(R_y, m)| ~ 0.99, |cor(y, m)| < .5)
    assert _abs_cor(arr["y"], arr["m"]) < mincor < _abs_cor(resp["y"], arr["m"])
    assert out.loc["y", "m"] == 1 and out.loc["y", "x"] == 1
    # by hand: |v[y, z]| = 0.11, |u[y, z]| = 0.58; |v[z, x]| = 0.51, |u[z, x]| = 0.01; |u[z, y]| = 0.73
    assert out.loc["y"].tolist() == [0, 1, 1, 0] and out.loc["z"].tolist() == [1, 0, 0, 0]
    assert (out.loc[["x", "m"]] == 0).all().all()  # complete variables are not targets
    assert (np.diag(out) == 0).all()


def test_quickpred_minpuc_drops_predictors_missing_with_the_target(small):
    # y missing in rows 4, 5; z is missing in row 5 too: puc[y, z] = 1/2; x observed there: puc = 1
    base = quickpred(small, mincor=0.0)
    assert base.loc["y", "z"] == 1
    out = quickpred(small, mincor=0.0, minpuc=0.6)
    assert out.loc["y", "z"] == 0 and out.loc["y", "x"] == 1
    assert quickpred(small, mincor=0.0, minpuc=0.5).loc["y", "z"] == 1  # puc < minpuc strictly


def test_quickpred_include_exclude_and_per_target_mincor(small):
    out = quickpred(small, mincor=0.99, include=["z"], exclude="x")
    assert out.loc["y", "z"] == 1 and out.loc["y", "x"] == 0 and out.loc["z", "z"] == 0
    per_target = quickpred(small, mincor={"y": 0.0, "z": 1.0})
    assert per_target.loc["y"].sum() == 3 and per_target.loc["z"].sum() == 0
    with pytest.raises(ValueError, match="exclude names columns not in the data"):
        quickpred(small, exclude=["nope"])
    with pytest.raises(ValueError, match="mincor must be"):
        quickpred(small, mincor=[0.1, 0.2])


def test_quickpred_codes_categoricals_and_marks_the_cluster_column(small):
    df = small.assign(f=pd.Categorical(["a", "b", "a", "b", "a", "b"]), g=[1, 1, 2, 2, 3, 3])
    out = quickpred(df, mincor=0.1, groups="g")
    assert out.loc["y", "g"] == -2 and out.loc["z", "g"] == -2 and out.loc["x", "g"] == 0
    assert (out.loc["g"] == 0).all()
    codes = np.array([0.0, 1, 0, 1, 0, 1])
    assert out.loc["y", "f"] == int(
        max(_abs_cor(df["y"].to_numpy(), codes), _abs_cor(df["y"].notna().to_numpy(float), codes)) > 0.1
    )


# ----------------------------------------------------------------------------- suggestions
@pytest.fixture(scope="module")
def popmis_incomplete():
    data = load_popmis()[["school", "popular", "sex", "texp", "teachpop"]].copy()
    rng = np.random.default_rng(5)
    data["sex"] = data["sex"].astype(float)
    data.loc[rng.random(len(data)) < 0.2, "sex"] = np.nan
    data["texp"] = data["texp"].astype(float)
    data.loc[data["school"].isin([3, 5, 7]), "texp"] = np.nan  # systematically missing, level 2
    return data


def test_suggestion_for_popmis_outcome_uses_random_slope_and_cluster_mean():
    s = suggest_predictors("popular ~ sex + texp + (1 + sex | school)", load_popmis())
    assert isinstance(s, PredictorSuggestion)
    row = s.predictor_matrix.loc["popular"]
    assert row.to_dict() == {"pupil": 0, "school": -2, "popular": 0, "sex": 4, "texp": 1, "const": 0, "teachpop": 0}
    assert list(s.methods) == ["popular"] and isinstance(s.methods["popular"], RandomEffectsPMM)
    assert s.levels == {"popular": 1, "sex": 1, "texp": 2}
    assert "random slope in the analysis model" in s.explanation and str(s) == s.explanation
    plain = suggest_predictors("popular ~ sex + texp + (1 + sex | school)", load_popmis(), cluster_means=False)
    assert plain.predictor_matrix.loc["popular", "sex"] == 2


def test_suggestion_imputes_covariates_with_the_outcome_and_level2_models(popmis_incomplete):
    s = suggest_predictors("popular ~ sex + texp + (1 + sex | school)", popmis_incomplete, auxiliary="teachpop")
    pm = s.predictor_matrix
    # sex has a random slope in the analysis model: the outcome gets one in sex's model (+ its cluster mean)
    assert pm.loc["sex", "popular"] == 4 and pm.loc["sex", "school"] == -2 and pm.loc["sex", "texp"] == 1
    assert isinstance(s.methods["sex"], RandomEffectsLogistic)
    # texp is constant within schools: a cluster-level model, level-1 variables through their means
    assert isinstance(s.methods["texp"], ClusterLevelPMM)
    assert pm.loc["texp"].to_dict() == {"school": -2, "popular": 1, "sex": 1, "texp": 0, "teachpop": 1}
    assert pm.loc["popular", "teachpop"] == 3  # auxiliary: fixed + cluster mean
    assert (pm.loc["teachpop"] == 0).all()  # complete: not a target


def test_suggested_setup_runs_in_the_imputer(popmis_incomplete):
    s = suggest_predictors("popular ~ sex + texp + (1 + sex | school)", popmis_incomplete, auxiliary=["teachpop"])
    imp = MultilevelIterativeImputer.from_suggestion(s, n_imputations=2, max_iter=2, random_state=0)
    completed = imp.fit_transform_all(popmis_incomplete, groups="school")
    assert not completed[0].isna().any().any()
    pd.testing.assert_frame_equal(imp.predictor_matrix_.astype(int), s.predictor_matrix)
    # texp stays constant within schools, including the 3 systematically missing ones
    assert completed[1].groupby("school")["texp"].nunique().max() == 1


def test_categorical_target_keeps_the_reversed_random_slope_and_lower_codes_fall_back():
    rng = np.random.default_rng(0)
    n = 60
    df = pd.DataFrame(
        {"g": np.repeat(np.arange(6), 10), "y": rng.normal(size=n), "grade": rng.choice(["a", "b", "c"], size=n)}
    )
    df.loc[:7, "grade"] = None
    s = suggest_predictors("y ~ grade + (1 + grade | g)", df)
    assert isinstance(s.methods["grade"], RandomEffectsCategorical)  # random slopes since codes 2/4 are honoured
    assert s.predictor_matrix.loc["grade", "y"] == 4
    assert "cannot honour" not in s.explanation
    # a model without random slopes gets the nearest code it honours: 4 -> 3 -> 1
    from skmlmi.predictors import _accepted_code

    assert _accepted_code(4, Polytomous()) == 1 and _accepted_code(4, RandomEffectsNormal()) == 4


def test_single_level_formula_gives_fixed_effects_and_single_level_models(popmis_incomplete):
    s = suggest_predictors("popular ~ sex + texp", popmis_incomplete)
    pm = s.predictor_matrix
    assert pm.loc["popular", ["sex", "texp"]].tolist() == [1, 1] and pm.loc["sex", "popular"] == 1
    assert (pm["school"] == 0).all()
    assert isinstance(s.methods["popular"], PredictiveMeanMatching)
    assert isinstance(s.methods["sex"], BayesianLogistic)


def test_interactions_and_unused_columns_are_named_in_the_explanation(popmis_incomplete):
    s = suggest_predictors("popular ~ sex * texp + (1 | school)", popmis_incomplete)
    assert "sex:texp" in s.explanation and "derived column" in s.explanation
    assert "['teachpop']" in s.explanation  # not in the model: left out, with the hint
    assert s.predictor_matrix.loc["popular", "sex"] == 3  # no random slope: fixed + cluster mean


def test_bad_formula_inputs_are_clear_errors(popmis_incomplete):
    with pytest.raises(ValueError, match=r"columns \['nope'\]"):
        suggest_predictors("popular ~ nope + (1 | school)", popmis_incomplete)
    bad = popmis_incomplete.copy()
    bad.loc[0, "school"] = np.nan
    with pytest.raises(ValueError, match="missing labels"):
        suggest_predictors("popular ~ sex + (1 | school)", bad)
    with pytest.raises(TypeError, match="DataFrame"):
        suggest_predictors("popular ~ sex", popmis_incomplete.to_numpy())


# ----------------------------------------------------------------------------- predictor matrix checks
def test_whole_predictor_matrix_is_checked_at_once_with_the_same_result():
    columns = [f"v{k}" for k in range(6)]
    rng = np.random.default_rng(4)
    codes = rng.choice([0, 1, 2, 3], size=(6, 6))
    np.fill_diagonal(codes, 0)
    frame = pd.DataFrame(codes, index=columns, columns=columns).astype(float)
    frame.iloc[1, 3] = np.nan  # an empty cell keeps the default
    as_dict = {c: {r: frame.loc[r, c] for r in columns if not np.isnan(frame.loc[r, c])} for c in columns}
    full, given = validate_predictor_matrix(frame, columns, return_given=True)
    full_dict, given_dict = validate_predictor_matrix(as_dict, columns, return_given=True)
    pd.testing.assert_frame_equal(full, full_dict)
    np.testing.assert_array_equal(given, given_dict)
    assert not given[1, 3] and full.iloc[1, 3] == 1
    # errors still name the entry
    frame.iloc[2, 4] = 7
    with pytest.raises(ValueError, match=r"predictor_matrix\['v2', 'v4'\] = 7 is not a role code"):
        validate_predictor_matrix(frame, columns)
    frame.iloc[2, 4] = 1.5
    with pytest.raises(ValueError, match="no fractions"):
        validate_predictor_matrix(frame, columns)
    with pytest.raises(ValueError, match="unknown columns"):
        validate_predictor_matrix(frame.rename(index={"v0": "w"}), columns)


# ----------------------------------------------------------------------------- wide data: limit_predictors
def _incomplete_matrix(seed=0, n=50, p=12):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)) * rng.uniform(1e-3, 1e3, p) + rng.uniform(-1e6, 1e6, p)
    X[rng.random((n, p)) < 0.15] = np.nan
    return X


def _exact_correlation(a, b):
    """Pearson correlation of the pairs both observe, in exact rational arithmetic."""
    from fractions import Fraction

    ok = ~np.isnan(a) & ~np.isnan(b)
    a, b = [Fraction(float(x)) for x in a[ok]], [Fraction(float(x)) for x in b[ok]]
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    sab = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    return float(sab) / np.sqrt(float(sum((x - ma) ** 2 for x in a)) * float(sum((y - mb) ** 2 for y in b)))


def test_available_pairs_correlation_is_quickpreds_pairwise_correlation():
    X = _incomplete_matrix()
    X[:, 7] = 3.0  # no variation: NaN, as pandas
    frame = pd.DataFrame(X, columns=[f"c{k}" for k in range(X.shape[1])])
    v, u = _correlations(frame)
    for a in range(X.shape[1]):
        np.testing.assert_allclose(available_pairs_correlation(X[:, a], X), v.iloc[a].to_numpy(), atol=1e-12)
        indicator = (~np.isnan(X[:, a])).astype(float)
        np.testing.assert_allclose(available_pairs_correlation(indicator, X), u.iloc[a].to_numpy(), atol=1e-12)
    # shifted far from its spread (1e12 + x, x ~ 1e-3): the correlation of the stored values, exactly
    X[:, 4] = 1e12 + (X[:, 4] - np.nanmean(X[:, 4])) / np.nanstd(X[:, 4]) * 1e-3
    for a in (0, 4):
        assert available_pairs_correlation(X[:, a], X)[4] == pytest.approx(
            _exact_correlation(X[:, a], X[:, 4]), abs=1e-9
        )


def _limit(y, X, widths=None, given=None, n_units=None, rows=None):
    p = X.shape[1]
    fit = ~np.isnan(y) if rows is None else rows & ~np.isnan(y)
    usable = np.ones(len(y), dtype=bool) if rows is None else rows
    widths = np.ones(p, dtype=int) if widths is None else np.asarray(widths)
    given = np.zeros(p, dtype=bool) if given is None else np.asarray(given)
    return limit_predictors(y, fit, usable, X, widths, given, int(fit.sum()) if n_units is None else n_units)


def test_limit_predictors_keeps_the_strongest_quickpred_predictors_within_a_third_of_the_rows():
    rng = np.random.default_rng(1)
    n, p = 150, 100
    X = rng.normal(size=(n, p))
    y = X[:, 10] + 0.8 * X[:, 20] - 0.6 * X[:, 30] + 0.3 * rng.normal(size=n)
    y[rng.random(n) < 0.2 + 0.5 * (X[:, 40] > 1)] = np.nan  # missingness depends on x40
    keep, score, budget = _limit(y, X)
    fit = ~np.isnan(y)
    assert budget == fit.sum() // 3 and keep.sum() == min(budget, np.count_nonzero(score > 0.1))
    assert keep[[10, 20, 30, 40]].all()  # three predict y, one whether y is missing
    assert np.all(score[keep] > 0.1) and score[keep].min() >= score[~keep].max()
    # the score is quickpred's: the larger absolute correlation with y or with its response indicator
    frame = pd.DataFrame(np.column_stack([X, y]))
    v, u = _correlations(frame)
    expected = np.maximum(np.abs(v.iloc[p, :p].to_numpy()), np.abs(u.iloc[p, :p].to_numpy()))
    np.testing.assert_allclose(score, np.nan_to_num(expected), atol=1e-12)
    # enough rows: nothing is reduced
    keep, _, _ = _limit(y, X[:, :5])
    assert keep.all()


def test_limit_predictors_is_scale_free_and_deterministic():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 30))
    y = X @ rng.normal(size=30) * 0.3 + rng.normal(size=40)
    y[:6] = np.nan
    keep, score, _ = _limit(y, X)
    units = np.logspace(-12, 12, 30)
    keep2, score2, _ = _limit(1e-8 * y + 5e-8, X * units + 1e4 * units * np.linspace(-1, 1, 30))
    np.testing.assert_array_equal(keep, keep2)
    np.testing.assert_allclose(score, score2, atol=1e-9)
    # ties keep the earlier column
    tied = np.column_stack([X[:, :1]] * 20)
    keep, _, budget = _limit(y, tied)
    assert np.flatnonzero(keep).tolist() == list(range(budget))


def test_limit_predictors_never_drops_given_predictors_and_counts_their_columns():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(30, 40))
    y = X[:, 0] + X[:, 1] + 0.5 * rng.normal(size=30)
    given = np.zeros(40, dtype=bool)
    given[[35, 36, 37]] = True  # unrelated to y, kept because the user asked for them
    keep, _, budget = _limit(y, X, given=given)
    assert budget == 10 and keep[[35, 36, 37]].all() and keep[[0, 1]].all() and keep.sum() == 10
    given[20:39] = True  # more than the rows support: kept all the same, nothing else added
    keep, _, _ = _limit(y, X, given=given)
    assert keep[given].all() and not keep[~given].any()
    # a predictor wider than what is left is passed over for narrower ones
    widths = np.ones(40, dtype=int)
    widths[0] = 12  # e.g. a categorical with 13 categories
    keep, _, _ = _limit(y, X, widths=widths)
    assert not keep[0] and keep[1] and keep.sum() == 10


def test_the_old_suggestion_imputer_method_warns_and_builds_the_same_imputer(popmis_incomplete):
    s = suggest_predictors("popular ~ sex + texp + (1 | school)", popmis_incomplete)
    with pytest.warns(FutureWarning, match="from_suggestion"):
        old = s.imputer(n_imputations=2, random_state=0)
    new = MultilevelIterativeImputer.from_suggestion(s, n_imputations=2, random_state=0)
    assert old.get_params().keys() == new.get_params().keys() and old.n_imputations == new.n_imputations == 2
    pd.testing.assert_frame_equal(old.predictor_matrix, new.predictor_matrix)
    assert new.predictor_matrix is not s.predictor_matrix  # a copy: changing one leaves the suggestion as it was
    with pytest.raises(TypeError, match="from_suggestion takes the result of suggest_predictors"):
        MultilevelIterativeImputer.from_suggestion({"methods": {}})
    with pytest.raises(TypeError, match=r"sets \['methods'\] from the suggestion"):
        MultilevelIterativeImputer.from_suggestion(s, methods={})


# --------------------------------------------------------------------------- hostile inputs
def test_make_predictor_matrix_checks_its_columns():
    from skmlmi.predictors import make_predictor_matrix

    with pytest.raises(ValueError, match=r"duplicated names: \['a'\]"):
        make_predictor_matrix(["a", "a"])
    with pytest.raises(ValueError, match="groups_column 'z' is not one of the columns"):
        make_predictor_matrix(["a", "b"], groups_column="z")
    with pytest.raises(TypeError, match="sequence of column names; got str"):
        make_predictor_matrix("abc")


# --------------------------------------------------------------------------- several grouping factors
def _three_levels(seed=3):
    """8 schools x 4 classes x 6 pupils; class labels 0-3 repeat in every school (nested as school/class)."""
    rng = np.random.default_rng(seed)
    school = np.repeat(np.arange(8), 24)
    klass = np.tile(np.repeat(np.arange(4), 6), 8)
    n = school.size
    data = pd.DataFrame({"school": school, "class": klass, "x": rng.normal(size=n)})
    data["y"] = np.where(rng.random(n) < 0.2, np.nan, data["x"] + rng.normal(size=n))
    data["z"] = np.where((school == 1) & (klass == 2), np.nan, rng.normal(size=n))
    data["sch"] = np.where(school == 3, np.nan, rng.normal(size=8)[school])
    data["cl"] = np.where((school == 2) & (klass == 1), np.nan, rng.normal(size=(8, 4))[school, klass])
    data["b"] = np.where(rng.random(n) < 0.2, np.nan, rng.integers(0, 2, n))
    return data


@pytest.mark.parametrize("random_part", ["(1 | school/class)", "(1 | school) + (1 | school:class)"])
@pytest.mark.filterwarnings("ignore:.*cluster means of:UserWarning")
def test_suggestion_from_nested_random_terms_gives_the_imputer_both_factors(random_part):
    data = _three_levels()[["school", "class", "x", "y", "z", "sch", "cl"]]
    s = suggest_predictors(f"y ~ x + z + sch + cl + {random_part}", data)
    assert s.groups == ["school", "class"] and s.cluster_structure == "nested"
    assert s.levels == {"y": 1, "x": 1, "z": 1, "sch": "school", "cl": "class"}
    names = {c: type(m).__name__ for c, m in s.methods.items()}
    assert names == {
        "y": "RandomEffectsPMM",
        "z": "RandomEffectsPMM",
        "sch": "ClusterLevelNormal",
        "cl": "ClusterLevelNormal",
    }
    assert s.predictor_matrix.loc["y", "school"] == -2 and s.predictor_matrix.loc["y", "x"] == 3
    assert "groups=['school', 'class']" in s.explanation
    imputer = MultilevelIterativeImputer.from_suggestion(s, max_iter=1, random_state=0)
    assert imputer.cluster_structure == "nested"
    completed = imputer.fit_transform(data, groups=s.groups)
    assert not completed[["y", "z", "sch", "cl"]].isna().any().any()
    # the class-level variable was imputed once per class of a school (labels combined with the school)
    assert completed.groupby(["school", "class"])["cl"].nunique().max() == 1


def test_suggestion_from_crossed_terms_orders_factors_and_gives_every_kind_a_model():
    data = _three_levels()[["school", "class", "x", "y", "b"]]
    rng = np.random.default_rng(0)
    data["c"] = np.where(rng.random(len(data)) < 0.2, None, rng.choice(["p", "q", "r"], len(data)))
    s = suggest_predictors("y ~ x + b + c + (1 | school) + (1 | class)", data)
    assert s.groups == ["class", "school"] and s.cluster_structure == "auto"  # fewest units first
    assert type(s.methods["y"]).__name__ == "RandomEffectsPMM"
    assert type(s.methods["b"]).__name__ == "RandomEffectsLogistic"  # a random intercept per factor
    assert type(s.methods["c"]).__name__ == "RandomEffectsCategorical"  # an intercept per factor and category


@pytest.mark.filterwarnings("ignore:.*cluster means of:UserWarning")
def test_suggestion_with_several_factors_keeps_random_slopes_the_model_draws():
    data = _three_levels()[["school", "class", "x", "y", "z"]]
    s = suggest_predictors("y ~ x + z + (1 + x | school/class)", data)
    assert s.predictor_matrix.loc["y", "x"] == 4  # RandomEffectsPMM: slope (at every factor) and cluster means
    binary = data.assign(y=(data["y"] > data["y"].median()).astype(float).where(data["y"].notna()))
    assert suggest_predictors("y ~ x + z + (1 + x | school/class)", binary).predictor_matrix.loc["y", "x"] == 4
    bands = pd.Categorical(np.digitize(data["y"], data["y"].quantile([1 / 3, 2 / 3]))).astype(str)
    categorical = data.assign(y=pd.Series(bands, index=data.index).where(data["y"].notna()).astype("category"))
    lowered = suggest_predictors("y ~ x + z + (1 + x | school/class)", categorical)
    assert lowered.predictor_matrix.loc["y", "x"] == 3
    assert "RandomEffectsCategorical takes no random slopes with several grouping factors" in lowered.explanation
    imputer = MultilevelIterativeImputer.from_suggestion(s, max_iter=1, random_state=0)
    assert not imputer.fit_transform(data, groups=s.groups)[["y", "z"]].isna().any().any()


@pytest.mark.parametrize(
    "random_part, levels",
    [
        ("(1 + x | school/class)", {}),  # a slope at every factor: the imputer's default
        ("(1 | school) + (1 + x | school:class)", {"x": ["class"], "z": ["class"]}),
        ("(1 + x | school) + (1 | school:class)", {"x": ["school"], "z": ["school"]}),
    ],
)
@pytest.mark.filterwarnings("ignore:.*cluster means of:UserWarning")
def test_suggestion_gives_each_random_slope_the_factors_of_the_formula(random_part, levels):
    """A slope at some factors only becomes random_slope_levels: for x in the outcome z's model and, reversed,
    for z in the model of x (both incomplete; y complete)."""
    data = _three_levels()[["school", "class", "x", "y", "z"]].assign(y=lambda d: d["y"].fillna(0.0))
    data["x"] = data["x"].where(np.arange(len(data)) % 5 != 0)
    s = suggest_predictors(f"z ~ x + y + {random_part}", data)
    assert s.random_slope_levels == levels
    imputer = MultilevelIterativeImputer.from_suggestion(s, n_imputations=1, max_iter=1, random_state=0)
    assert imputer.random_slope_levels == (levels or None)
    assert not imputer.fit_transform(data, groups=s.groups)[["x", "z"]].isna().any().any()


def test_suggestion_with_one_factor_carries_its_column_and_no_structure(popmis_incomplete):
    s = suggest_predictors("popular ~ sex + (1 | school)", popmis_incomplete)
    assert s.groups == "school" and s.cluster_structure is None
    assert MultilevelIterativeImputer.from_suggestion(s).cluster_structure == "auto"


def test_random_terms_that_are_not_one_nesting_are_a_clear_error():
    data = _three_levels().assign(region=lambda d: d["school"] % 2)
    with pytest.raises(ValueError, match="neither separate columns"):
        suggest_predictors("y ~ x + (1 | school:class) + (1 | region)", data)
