"""Derived (passive) columns, bounds and ``post`` callables: parsing and the bounded draw (skmlmi._passive)."""

import numpy as np
import pandas as pd
import pytest

from skmlmi._passive import REDRAWS, apply_bounds, parse_bounds, parse_derived, parse_post

COLUMNS = ["weight", "height", "bmi", "school"]


def test_expression_depends_on_the_columns_it_names_and_computes_from_the_working_data():
    (bmi,) = parse_derived({"bmi": "weight / height ** 2"}, COLUMNS, "school")
    assert (bmi.column, bmi.name, bmi.depends_on) == (2, "bmi", frozenset({0, 1}))
    W = np.array([[80.0, 2.0, np.nan, 0], [45.0, 1.5, np.nan, 1], [60.0, 1.0, np.nan, 1]])
    np.testing.assert_allclose(bmi.values(W, COLUMNS, np.array([0, 1])), [20.0, 20.0])


def test_callable_sees_a_frame_of_its_declared_columns_only():
    seen = []

    def ratio(frame):
        seen.append(list(frame.columns))
        return frame["weight"] / frame["height"]

    (derived,) = parse_derived({"bmi": (ratio, ["weight", "height"])}, COLUMNS, "school")
    W = np.array([[80.0, 2.0, np.nan, 0]])
    np.testing.assert_allclose(derived.values(W, COLUMNS, np.array([0])), [40.0])
    assert seen == [["weight", "height"]]


def test_a_plain_callable_has_unknown_dependencies():
    (derived,) = parse_derived({"bmi": lambda frame: frame["weight"]}, COLUMNS, None)
    assert derived.depends_on == frozenset()


def test_a_callable_returning_the_wrong_number_of_values_is_an_error_naming_it():
    (derived,) = parse_derived({"bmi": lambda frame: np.ones(5)}, COLUMNS, None)
    with pytest.raises(ValueError, match=r"derived\['bmi'\] returned 5 values for 1 rows"):
        derived.values(np.zeros((1, 4)), COLUMNS, np.array([0]))


@pytest.mark.parametrize(
    "derived, error, match",
    [
        ({"bmi2": "weight"}, ValueError, "not a column"),
        ({"school": "weight"}, ValueError, "cluster column"),
        ({"bmi": "bmi + 1"}, ValueError, "depends on itself"),
        ({"bmi": "weight / height", "weight": "bmi * height"}, ValueError, r"circle: 'bmi' <- 'weight' <- 'bmi'"),
        ({"bmi": "2 + 3"}, ValueError, "uses no column"),
        ({"bmi": (len, ["age"])}, ValueError, "unknown columns"),
        ({"bmi": 3}, TypeError, "expression string, a callable"),
    ],
)
def test_bad_derived_specifications_name_the_column(derived, error, match):
    with pytest.raises(error, match=match):
        parse_derived(derived, COLUMNS, "school")


def test_bounds_are_keyed_by_position_and_none_means_unbounded():
    assert parse_bounds({"weight": (0, None), "height": (None, 2.5)}, COLUMNS) == {
        0: (0.0, np.inf),
        1: (-np.inf, 2.5),
    }
    assert parse_bounds(None, COLUMNS) == {}


@pytest.mark.parametrize(
    "bounds, match",
    [({"age": (0, 1)}, "not a column"), ({"weight": (5, 1)}, "low exceeds high"), ({"weight": 3}, "pair")],
)
def test_bad_bounds_are_errors(bounds, match):
    with pytest.raises(ValueError, match=match):
        parse_bounds(bounds, COLUMNS)


def test_post_needs_callables_on_known_columns():
    assert list(parse_post({"height": np.abs}, COLUMNS)) == [1]
    with pytest.raises(TypeError, match=r"post\['height'\]"):
        parse_post({"height": 3}, COLUMNS)
    with pytest.raises(ValueError, match="not a column"):
        parse_post({"age": np.abs}, COLUMNS)


def test_values_outside_the_bounds_are_redrawn_before_any_is_squeezed():
    values = np.array([-1.0, 0.5, 2.0])
    redrawn = []

    def redraw(index):
        redrawn.append(index.tolist())
        return np.full(index.size, 0.25)

    out, squeezed = apply_bounds(values, (0.0, 1.0), redraw)
    np.testing.assert_array_equal(out, [0.25, 0.5, 0.25])
    assert squeezed == 0
    assert redrawn == [[0, 2]]
    np.testing.assert_array_equal(values, [-1.0, 0.5, 2.0])  # the caller's array is untouched


def test_values_still_outside_after_the_redraws_are_squeezed_onto_the_bound():
    calls = []

    def redraw(index):
        calls.append(index.size)
        return np.full(index.size, 5.0)

    out, squeezed = apply_bounds(np.array([5.0, 0.5]), (0.0, 1.0), redraw)
    np.testing.assert_array_equal(out, [1.0, 0.5])
    assert squeezed == 1
    assert calls == [1] * REDRAWS


def test_derived_columns_read_categorical_inputs_as_their_categories_not_their_codes():
    # The working data hold a categorical column as codes 0..K-1. An expression must compute on the categories'
    # numbers (dept == 2 is category 2, which is code 1 here), a callable must receive the labels, and an
    # expression over text categories is an error that says to use a callable.
    import warnings

    from skmlmi import MultilevelIterativeImputer

    rng = np.random.default_rng(3)
    n = 200
    data = pd.DataFrame(
        {
            "dept": pd.Categorical(rng.choice([1, 2, 5], n), categories=[1, 2, 5]),
            "sex": pd.Categorical(rng.choice(["f", "m"], n)),
            "x": rng.normal(size=n),
        }
    )
    data.loc[rng.random(n) < 0.2, "x"] = np.nan
    data = data.assign(in_two=np.nan, x_dept=np.nan, male=np.nan)
    imp = MultilevelIterativeImputer(
        n_imputations=1,
        max_iter=1,
        random_state=0,
        derived={
            "in_two": "x * (dept == 2)",
            "x_dept": "x * dept",
            "male": (lambda d: (d["sex"] == "m").astype(float), ["sex"]),
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = imp.fit_transform(data)
    dept = out["dept"].astype(int).to_numpy()
    np.testing.assert_array_equal(out["in_two"], out["x"] * (dept == 2))
    np.testing.assert_allclose(out["x_dept"], out["x"] * dept)
    np.testing.assert_array_equal(out["male"], (out["sex"] == "m").astype(float))
    with pytest.raises(ValueError, match=r"reads 'sex'.*Use a callable"):
        imp.set_params(derived={"male": "sex == 1"}).fit(data.drop(columns=["in_two", "x_dept"]))


def test_derived_columns_are_computed_after_the_derived_columns_they_use():
    # listed before its input, bmi was computed from a still-missing weight (non-finite values)
    derived = parse_derived({"bmi": "weight + height", "weight": "height * 2"}, COLUMNS, "school")
    assert [d.name for d in derived] == ["weight", "bmi"]
    independent = parse_derived({"bmi": "height * 2", "weight": "height + 1"}, COLUMNS, "school")
    assert [d.name for d in independent] == ["bmi", "weight"]  # the order given, where nothing forces another
