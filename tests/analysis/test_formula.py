"""lme4-style formulas: Wilkinson fixed parts (formulaic), lme4's bars, R-style design matrices."""

import numpy as np
import pandas as pd
import pytest

from skmlmi.analysis import build_design, parse_formula


@pytest.fixture
def frame():
    return pd.DataFrame(
        {
            "y": [1.0, 2, 3, 4, 5, 6],
            "f": ["b", "a", "c", "a", "b", "c"],
            "x": [0.5, 1, 2, 3, 4, 5],
            "z": [1.0, 0, 1, 0, 1, 1],
            "g": [1, 1, 2, 2, 3, 3],
        }
    )


def test_random_slope_formula_parses_into_one_correlated_block():
    f = parse_formula("popular ~ 1 + sex + texp + (1 + sex | school)")
    assert f.response == "popular" and f.intercept and f.group == "school"
    assert f.fixed == (("sex",), ("texp",))
    assert len(f.random) == 1 and f.random[0].intercept and f.random[0].terms == (("sex",),)


@pytest.mark.parametrize("formula", ["y ~ x + (1 | g) + (0 + x | g)", "y ~ x + (1 + x || g)", "y ~ x + (x || g)"])
def test_uncorrelated_random_effects_become_separate_blocks(formula):
    f = parse_formula(formula)
    assert [(b.intercept, b.terms) for b in f.random] == [(True, ()), (False, (("x",),))]


def test_powers_that_would_take_formulaic_minutes_to_expand_are_refused_at_once():
    # formulaic forms terms^k products (about 20 microseconds each): (a + b)^16 took seconds, 10 terms^10 never
    # ended; a formula string must not hang the caller
    import time

    start = time.perf_counter()
    for formula, match in [
        ("y ~ (a + b)**16", r"\(\.\.\.\)\^16 of 2 terms"),
        ("y ~ (a+b+c+d+e+f+g+h+i+j)^10", r"10\^10 products"),
        ("y ~ (a*b*c*d*e*f)^4", r"of 63 terms"),  # a crossing's terms are every product of its factors
        ("y ~ ((a + b)^2)^3", "a power of a power"),
        ("y ~ (a + b)^2**3", "a power of a power"),  # formulaic kept one of the two, R reads ^(2^3)
        ("y ~ ((a+b+c+d+e+f+g+h+i+j):(k+l+m+n+o+p+q+r+s+t))^3", r"of 100 terms"),  # an interaction of sums
    ]:
        with pytest.raises(ValueError, match=match):
            parse_formula(formula)
    assert time.perf_counter() - start < 1.0
    assert parse_formula("y ~ (a + b + c + d)^3").fixed[-1] == ("b", "c", "d")  # 64 products: expanded
    assert len(parse_formula("y ~ ((a+b+c+d+e)*(f+g+h+i+j))^2").fixed) == 255  # 35 terms: 1,225 products


def test_crossing_and_powers_expand_like_r():
    assert parse_formula("y ~ a*b + c").fixed == (("a",), ("b",), ("c",), ("a", "b"))
    assert parse_formula("y ~ (a + b + c)^2 - a:b").fixed == (("a",), ("b",), ("c",), ("a", "c"), ("b", "c"))
    assert not parse_formula("y ~ 0 + x").intercept
    assert not parse_formula("y ~ x - 1").intercept


@pytest.mark.parametrize(
    ("formula", "match"),
    [
        ("y ~ log(x) + open(x)", "calling 'open' is not allowed"),
        ("y ~ x + (1 | g + h)", "cannot read the grouping factor"),
        ("y ~ x + (1 | log(g))", "grouping factor .* must be a column"),
        ("y ~ x * (1 | g)", "must stand alone"),
        ("y ~ 2 + x", "numeric constant 2 is not a term"),
        ("log(y) ~ x", "the response must be a single column name"),
        ("y ~ x + (1 | g", "parenthesis is not closed"),
        ("y ~ x + (1 | g) + (1 | g)", "intercept appears in two"),
        ("y x", "exactly one '~'"),
        ("y ~ x + g + (1 | g)", "grouping factor 'g' also appears"),
        ("y ~ y + x", "response 'y' also appears"),
    ],
)
def test_unsupported_or_malformed_formulas_raise_clear_errors(formula, match):
    with pytest.raises(ValueError, match=match):
        parse_formula(formula)


def test_categorical_predictors_use_treatment_contrasts_with_first_level_reference(frame):
    d = build_design(parse_formula("y ~ f*x"), frame)
    assert d.fixed_names == ["(Intercept)", "fb", "fc", "x", "fb:x", "fc:x"]
    np.testing.assert_array_equal(d.X[:, 1], (frame.f == "b").to_numpy(float))
    np.testing.assert_array_equal(d.X[:, 4], ((frame.f == "b") * frame.x).to_numpy(float))


def test_reference_level_can_be_chosen(frame):
    d = build_design(parse_formula("y ~ f"), frame, reference_levels={"f": "c"})
    assert d.fixed_names == ["(Intercept)", "fa", "fb"]
    with pytest.raises(ValueError, match="reference level 'q'"):
        build_design(parse_formula("y ~ f"), frame, reference_levels={"f": "q"})


def test_margin_rule_gives_full_coding_like_model_matrix(frame):
    assert build_design(parse_formula("y ~ 0 + f + x"), frame).fixed_names == ["fa", "fb", "fc", "x"]
    assert build_design(parse_formula("y ~ x + x:f"), frame).fixed_names == ["(Intercept)", "x", "x:fb", "x:fc"]
    assert build_design(parse_formula("y ~ x:f"), frame).fixed_names == ["(Intercept)", "x:fa", "x:fb", "x:fc"]


def test_pandas_categorical_keeps_its_category_order_and_bool_is_a_factor(frame):
    frame = frame.assign(f=pd.Categorical(frame.f, categories=["c", "b", "a"]), flag=frame.z > 0)
    d = build_design(parse_formula("y ~ f + flag"), frame)
    assert d.fixed_names == ["(Intercept)", "fb", "fa", "flagTRUE"]


def test_random_design_and_group_codes(frame):
    d = build_design(parse_formula("y ~ x + (1 + f | g)"), frame)
    assert d.random_names == ["(Intercept)", "fb", "fc"]
    assert d.groups.tolist() == [0, 0, 1, 1, 2, 2] and list(d.group_levels) == [1, 2, 3]
    new = build_design(
        parse_formula("y ~ x + (1 + f | g)"),
        frame.assign(g=[1, 9, 2, 2, 3, 3]),
        levels=d.levels,
        group_levels=d.group_levels,
    )
    assert new.groups.tolist() == [0, -1, 1, 1, 2, 2]


def test_unseen_level_and_missing_values_are_named(frame):
    d = build_design(parse_formula("y ~ f"), frame)
    with pytest.raises(ValueError, match="column 'f' has levels not seen at fit"):
        build_design(parse_formula("y ~ f"), frame.assign(f=["a", "zz", "b", "a", "b", "c"]), levels=d.levels)
    holed = frame.assign(x=[np.nan, 1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="'x': 1"):
        build_design(parse_formula("y ~ x"), holed)
    assert build_design(parse_formula("y ~ x"), holed, missing="drop").X.shape == (5, 2)
    with pytest.raises(ValueError, match=r"columns \['w'\]"):
        build_design(parse_formula("y ~ w"), frame)


def test_declared_categories_no_row_holds_are_dropped_and_listed(frame):
    declared = frame.assign(f=pd.Categorical(frame.f, categories=["z", "a", "b", "q", "c", "y"]))
    d = build_design(parse_formula("y ~ f"), declared)
    assert d.fixed_names == ["(Intercept)", "fb", "fc"]
    assert d.dropped_levels == {"f": ["z", "q", "y"]}
    assert build_design(parse_formula("y ~ f"), frame).dropped_levels == {}


def test_category_levels_fix_the_coding_whatever_the_data_hold(frame):
    parsed = parse_formula("y ~ f + x")
    some = frame.assign(f=["a", "a", "c", "a", "c", "c"])  # "b" absent from this dataset
    d = build_design(parsed, some, category_levels={"f": ["a", "b", "c"]})
    assert d.fixed_names == ["(Intercept)", "fb", "fc", "x"] and not d.X[:, 1].any()
    d = build_design(parsed, some, category_levels={"f": ["a", "b", "c"]}, reference_levels={"f": "c"})
    assert d.fixed_names == ["(Intercept)", "fa", "fb", "x"]
    with pytest.raises(ValueError, match=r"column 'f' holds levels \['c'\] that are not among the levels given"):
        build_design(parsed, some, category_levels={"f": ["a", "b"]})
    with pytest.raises(ValueError, match="levels given for numeric column 'x'"):
        build_design(parsed, frame, category_levels={"x": [0.5, 1.0]})
    with pytest.raises(ValueError, match=r"not in the formula: \['w'\]"):
        build_design(parsed, frame, category_levels={"w": ["a"]})


def test_observed_levels_leave_out_missing_values_and_unused_categories(frame):
    from skmlmi.analysis.formula import observed_levels

    incomplete = frame.assign(f=pd.Categorical(["b", None, "c", None, "b", "c"], categories=["a", "b", "c", "d"]))
    assert observed_levels(parse_formula("y ~ f + x + (1 | g)"), incomplete) == {"f": ["b", "c"]}


# --------------------------------------------------------------------------- hostile inputs
def test_deeply_nested_parentheses_parse_or_are_a_value_error_never_a_recursion_error():
    assert parse_formula("y ~ " + "(" * 3000 + "x" + ")" * 3000).fixed == (("x",),)
    with pytest.raises(ValueError, match="more than 10000"):
        parse_formula("y ~ " + "(" * 30000 + "x" + ")" * 30000)


@pytest.mark.parametrize("given", [None, {"one": ["k"]}])
def test_a_factor_with_one_level_is_an_error_not_silently_dropped(frame, given):
    with pytest.raises(ValueError, match=r"column 'one' .* categorical with 1 level\(s\) \['k'\]"):
        build_design(parse_formula("y ~ x + one"), frame.assign(one="k"), category_levels=given)


def test_dates_in_a_formula_are_a_type_error_naming_the_column(frame):
    data = frame.assign(t=pd.date_range("2020-01-01", periods=6))
    with pytest.raises(TypeError, match=r"columns 't' \(datetime64.*\) .* neither numeric nor categorical"):
        build_design(parse_formula("y ~ t"), data)


def test_build_design_needs_a_parsed_formula(frame):
    with pytest.raises(TypeError, match="parsed must be a ParsedFormula"):
        build_design("y ~ x", frame)


# --------------------------------------------------------------------------- formulas people write
def test_transformed_terms_are_computed_by_the_expression_evaluator_and_named_as_written(frame):
    d = build_design(parse_formula('y ~ C(f, Treatment("c")) + I(x ** 2) + np.log(x) + sqrt(z)'), frame)
    assert d.fixed_names == ["(Intercept)", "fa", "fb", "I(x ** 2)", "np.log(x)", "sqrt(z)"]
    np.testing.assert_allclose(d.X[:, 3], frame.x**2)
    np.testing.assert_allclose(d.X[:, 4], np.log(frame.x))
    np.testing.assert_array_equal(d.X[:, 1], (frame.f == "a").to_numpy(float))


def test_c_of_a_column_equals_reference_levels_and_codes_numeric_columns_as_factors(frame):
    with_c = build_design(parse_formula('y ~ C(f, Treatment("c")) + x'), frame)
    with_ref = build_design(parse_formula("y ~ f + x"), frame, reference_levels={"f": "c"})
    assert with_c.fixed_names == with_ref.fixed_names
    np.testing.assert_array_equal(with_c.X, with_ref.X)
    d = build_design(parse_formula('y ~ C(g, Treatment("3"))'), frame)  # the level matched as text (CLI strings)
    assert d.fixed_names == ["(Intercept)", "g1", "g2"]
    with pytest.raises(ValueError, match=r"reference level 'q' of column 'f'"):
        build_design(parse_formula('y ~ C(f, Treatment("q"))'), frame)


def test_interactions_of_transformed_terms_and_wilkinson_operators(frame):
    d = build_design(parse_formula("y ~ f * np.log(x)"), frame)
    assert d.fixed_names == ["(Intercept)", "fb", "fc", "np.log(x)", "fb:np.log(x)", "fc:np.log(x)"]
    np.testing.assert_allclose(d.X[:, 4], (frame.f == "b") * np.log(frame.x))
    assert parse_formula("y ~ x / z").fixed == (("x",), ("x", "z"))
    assert parse_formula("y ~ (x + z + f)**2").fixed[-1] == ("z", "f")


def test_stateful_transforms_keep_the_training_state_for_new_data(frame):
    parsed = parse_formula("y ~ scale(x) + poly(x, 2) + bs(x, df=3)")
    d = build_design(parsed, frame)
    assert d.fixed_names[:4] == ["(Intercept)", "scale(x)", "poly(x, 2)1", "poly(x, 2)2"]
    new = frame.iloc[:2].assign(x=[1.5, 4.5])
    out = build_design(parsed, new, levels=d.levels, state=d.state, require_response=False)
    mean, sd = frame.x.mean(), frame.x.std()
    np.testing.assert_allclose(out.X[:, 1], (new.x - mean) / sd)  # the training mean and SD, not new data's
    with pytest.raises(ValueError, match=r"factor `bs\(x, df=3\)`.*extrapolation"):  # errors name the user's terms
        build_design(parsed, new.assign(x=[10.0, 20.0]), levels=d.levels, state=d.state, require_response=False)


def test_non_finite_transformed_term_is_named(frame):
    with pytest.raises(ValueError, match=r"term 'np.log\(z\)' .* is not finite in 2 rows"):
        build_design(parse_formula("y ~ np.log(z)"), frame)
    with pytest.raises(TypeError, match=r"term 'I\(f \* 2\)' .* categorical column 'f'"):
        build_design(parse_formula("y ~ I(f * 2)"), frame)


@pytest.mark.parametrize(
    ("formula", "factors"),
    [
        ("y ~ x + (1 | g)", [("g", ("g",), [(True, ())])]),
        ("y ~ x + (1 + x | g)", [("g", ("g",), [(True, (("x",),))])]),
        ("y ~ x + (x || g)", [("g", ("g",), [(True, ()), (False, (("x",),))])]),
        ("y ~ x + (0 + x | g)", [("g", ("g",), [(False, (("x",),))])]),
        ("y ~ x + (1 | a/b)", [("a", ("a",), [(True, ())]), ("b:a", ("a", "b"), [(True, ())])]),
        ("y ~ x + (1 | a) + (1 | b)", [("a", ("a",), [(True, ())]), ("b", ("b",), [(True, ())])]),
        ("y ~ x + (1 | a:b)", [("a:b", ("a", "b"), [(True, ())])]),
        (
            "y ~ x + (1 + x | a/b/c)",
            [(n, c, [(True, (("x",),))]) for n, c in [("a", ("a",)), ("b:a", ("a", "b")), ("c:b:a", ("a", "b", "c"))]],
        ),
    ],
)
def test_random_terms_parse_into_named_grouping_factors(formula, factors):
    parsed = parse_formula(formula)
    got = [(f.name, f.columns, [(b.intercept, b.terms) for b in f.blocks]) for f in parsed.random_factors]
    assert got == factors


def test_several_grouping_factors_get_one_design_each_with_nested_labels_combined(frame):
    d = build_design(parse_formula("y ~ x + (1 | g/f) + (0 + x | z)"), frame)
    assert [f.name for f in d.factors] == ["g", "f:g", "z"]
    assert d.Z is None and d.groups is None  # several factors: the arrays live on each FactorDesign
    inner = d.factors[1]
    assert inner.n_groups == 6 and list(inner.group_levels[:2]) == ["1:a", "1:b"]
    np.testing.assert_array_equal(d.factors[2].Z[:, 0], frame["x"].to_numpy())


def test_one_combined_grouping_factor_fits(frame):
    d = build_design(parse_formula("y ~ x + (1 | g:f)"), frame)
    assert d.n_groups == 6 and list(d.group_levels[:2]) == ["1:a", "1:b"]


def test_observed_levels_include_columns_in_c(frame):
    from skmlmi.analysis.formula import observed_levels

    incomplete = frame.assign(g=[1.0, np.nan, 2, 2, 3, 3])
    assert observed_levels(parse_formula("y ~ C(g) + f"), incomplete) == {"g": [1.0, 2.0, 3.0], "f": ["a", "b", "c"]}
