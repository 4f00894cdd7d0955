"""Expressions a user passes as strings (``derived=``) are checked and evaluated, never run as code.

Every escape attempt is refused with a ValueError naming the offending part, by the parser
and at ``fit`` of the imputer, before anything is evaluated, and creates no file. Accepted
expressions give what numpy (and, for what it supported, ``DataFrame.eval``) gives.
"""

import pickle
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skmlmi import MultilevelIterativeImputer
from skmlmi._expressions import FUNCTIONS, MAX_DEPTH, MAX_LENGTH, parse_expression
from skmlmi.conditional import BayesianNormal

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ["g", "x", "z"]


@pytest.fixture
def small():
    """The issue's reproducer data: three clusters of two rows."""
    return pd.DataFrame({"g": [0, 0, 1, 1, 2, 2], "x": [1.0, 2, np.nan, 4, 5, 6], "z": [2.0, 4, np.nan, 8, 10, 12]})


@pytest.fixture
def body():
    rng = np.random.default_rng(3)
    n = 120
    height = rng.normal(1.72, 0.09, n)
    frame = pd.DataFrame(
        {
            "clinic": np.repeat(np.arange(12), 10),
            "height": height,
            "body weight": 22 * height**2 + rng.normal(0, 7, n),
            "visits": rng.integers(0, 6, n),
        }
    )
    frame["bmi"] = frame["body weight"] / frame["height"] ** 2
    frame.loc[rng.choice(n, 20, replace=False), "body weight"] = np.nan
    frame.loc[rng.choice(n, 15, replace=False), "bmi"] = np.nan
    return frame


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in an empty directory and check afterwards that nothing was written there, nor in the repository.

    Every attempt writes to a name starting with ``pwned`` (relative, so into the working directory).
    """
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    assert list(tmp_path.iterdir()) == []
    assert list(REPO.glob("pwned*")) == [] and list(Path.cwd().glob("pwned*")) == []


def _fit(data, expression, **kwargs):
    imputer = MultilevelIterativeImputer(derived={"z": expression}, n_imputations=1, max_iter=1, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return imputer.fit_transform(data, groups="g")


# ------------------------------------------------------------------------ escape attempts
# (id, expression, what the message must name)
ESCAPES = [
    (
        "dunder-chain-to-os-system",
        "x.__init__.__globals__['sys'].modules['os'].system('touch pwned.txt') + x",
        r"attribute access '\.__init__'",
    ),
    ("class-subclasses", "x.__class__.__bases__[0].__subclasses__()", r"attribute access '\.__class__'"),
    ("dunder-import", "__import__('os').system('touch pwned.txt')", r"calling '__import__'"),
    ("dunder-name", "__builtins__", r"name '__builtins__' is not allowed"),
    ("open-file", "open('pwned.txt', 'w')", r"calling 'open'"),
    ("to-csv", "x.to_csv('pwned.txt')", r"attribute access '\.to_csv'"),
    ("to-pickle", "x.to_pickle('pwned.pkl') + x", r"attribute access '\.to_pickle'"),
    ("values-tofile", "x.values.tofile('pwned.bin')", r"attribute access '\.values'"),
    ("attribute-of-call-result", "abs(x).real", r"attribute access '\.real'"),
    ("getattr", "getattr(x, 'to_csv')('pwned.txt')", r"calling \"getattr"),
    ("eval", "eval('1')", r"calling 'eval'"),
    ("exec", "exec('open(1, 2)')", r"calling 'exec'"),
    ("breakpoint", "breakpoint()", r"calling 'breakpoint'"),
    ("globals", "globals()", r"calling 'globals'"),
    ("np-save", "np.save('pwned', x)", r"'np\.save' is not among the allowed functions"),
    ("np-load", "np.load('pwned.npy')", r"'np\.load' is not among the allowed functions"),
    ("numpy-lib", "numpy.lib.format.open_memmap('pwned.npy')", r"'numpy\.lib' is not among the allowed functions"),
    ("np-os", "np.os.system('touch pwned.txt')", r"'np\.os' is not among the allowed functions"),
    ("np-function-globals", "np.log.__globals__", r"attribute access '\.__globals__'"),
    ("np-function-call-attribute", "np.where.__call__(x, 1, 0)", r"attribute access '\.__call__'"),
    ("lambda", "(lambda: open('pwned.txt', 'w'))()", r"calling .lambda: open"),
    ("comprehension", "[open('pwned.txt', 'w') for _ in x]", r"comprehension"),
    ("generator", "max(v for v in x)", r"calling 'max'"),
    ("subscript", "x[0]", r"subscript 'x\[0\]'"),
    ("slice", "x[::2] + x", r"subscript 'x\[::2\]'"),
    ("string-literal", "'touch pwned.txt'", r"string literal"),
    ("bytes-literal", "b'pwned' + x", r"bytes literal"),
    ("f-string", "f'{x.to_csv(1)}'", r"f-string"),
    ("walrus", "(y := x) + y", r"assignment expression 'y := x'"),
    ("starred", "maximum(*x)", r"starred argument '\*x'"),
    ("keyword-unpacking", "clip(x, **{'a_min': 0})", r"'\*\*' unpacking"),
    ("keyword-argument", "round(x, decimals=2)", r"keyword argument 'decimals='"),
    ("hidden-in-untaken-branch", "x if True else open('pwned.txt', 'w')", r"calling 'open'"),
    ("hidden-behind-short-circuit", "x or __import__('os')", r"calling '__import__'"),
    ("backticked-name-called", "`__import__`('os')", r"column `__import__` cannot be called"),
    ("backtick-inside-backticks", "`x`y` + x", r"backtick is not closed"),
    ("quote-breaking-out-of-backticks", "`x') + open('pwned.txt', 'w') + ('` + x", r"unknown columns"),
    ("list-display", "[x, z]", r"list"),
    ("tuple-display", "(x, z)", r"tuple"),
    ("membership", "x in (1, 2)", r"operator 'in'"),
    ("identity", "x is None", r"operator 'is'"),
    ("complex-literal", "x + 1j", r"complex number '1j'"),
    ("none", "None", r"constant 'None'"),
    ("null-byte", "x\x00", r"not a valid expression"),
    ("yield", "(yield x)", r"yield 'yield x' is not allowed"),
    ("xor-as-power", "x ^ 2", r"operator '\^' \(exclusive or; write \*\* for a power\)"),
]


@pytest.mark.parametrize(("expression", "match"), [e[1:] for e in ESCAPES], ids=[e[0] for e in ESCAPES])
def test_escape_attempt_refused_by_the_parser_naming_the_offending_part(in_tmp, expression, match):
    with pytest.raises(ValueError, match=match):
        parse_expression(expression, COLUMNS, label="derived['z']")


@pytest.mark.parametrize(("expression", "match"), [e[1:] for e in ESCAPES], ids=[e[0] for e in ESCAPES])
def test_escape_attempt_refused_at_fit_before_anything_is_evaluated(in_tmp, small, expression, match):
    imputer = MultilevelIterativeImputer(derived={"z": expression}, n_imputations=1, max_iter=1)  # only stores
    with pytest.raises(ValueError, match=r"derived\['z'\] = .*" + match):
        imputer.fit(small, groups="g")


def test_issue_reproducer_creates_no_file(in_tmp, small):
    e = "x.__init__.__globals__['sys'].modules['os'].system('touch pwned.txt') + x"
    with pytest.raises(ValueError, match=r"attribute access '\.__init__'.*allowed: column names"):
        MultilevelIterativeImputer(derived={"z": e}, n_imputations=1, max_iter=1).fit_transform(small, groups="g")


def test_the_file_check_sees_what_dataframe_eval_used_to_write(tmp_path, monkeypatch):
    # the evaluator derived= used before: the same string writes a file, which the check above would see
    monkeypatch.chdir(tmp_path)
    pd.DataFrame({"x": [1.0]}).eval("x.to_csv('pwned.txt')", engine="python")
    assert [p.name for p in tmp_path.iterdir()] == ["pwned.txt"]


def test_refused_expression_stops_fit_before_any_imputation(small):
    calls = []

    def spy(values):
        calls.append(values)
        return values

    imputer = MultilevelIterativeImputer(derived={"z": "x.to_csv(1)"}, post={"x": spy}, n_imputations=1, max_iter=1)
    with pytest.raises(ValueError, match="to_csv"):
        imputer.fit(small, groups="g")
    assert calls == []


@pytest.mark.parametrize("expression", ["10 ** 10 ** 10 + x", "9 ** 9 ** 9 ** 9 * x", "(abs(x) + 2) ** 10 ** 400"])
def test_huge_constant_powers_overflow_to_inf_instead_of_hanging(in_tmp, small, expression):
    start = time.perf_counter()
    values = parse_expression(expression, COLUMNS).evaluate({1: [2.0, 3.0]})
    assert np.isinf(values).all()
    with pytest.raises(ValueError, match=r"derived\['z'\] gave"):  # the engine's non-finite check
        _fit(small, expression)
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize(
    "expression",
    [
        "-" * 5000 + "x",
        "not " * 2000 + "x",
        "+".join(["x"] * 5000),
        "x if x else " * 800 + "x",
        "log(" * 150 + "x" + ")" * 150,
        "(" * 500 + "x" + ")" * 500,
        "-(" * (MAX_DEPTH + 5) + "x" + ")" * (MAX_DEPTH + 5),
        "x ** " * 1900 + "x",
    ],
    ids=["unary-minus", "not", "long-sum", "conditionals", "calls", "parentheses", "negations", "powers"],
)
def test_deeply_nested_expression_is_a_value_error_not_a_recursion_crash(in_tmp, small, expression):
    with pytest.raises(ValueError, match=r"nested|valid expression"):
        parse_expression(expression, COLUMNS)
    with pytest.raises(ValueError, match=r"derived\['z'\]"):
        _fit(small, expression)


def test_overlong_expression_refused():
    with pytest.raises(ValueError, match=f"more than {MAX_LENGTH}"):
        parse_expression("x" + " " * MAX_LENGTH, COLUMNS)


def test_long_chains_of_one_operator_do_not_count_as_nesting():
    # a sum score over many items is flat: evaluated in a loop, not recursively
    columns = [f"item{i}" for i in range(300)]
    expression = parse_expression(" + ".join(columns), columns)
    values = {j: np.full(2, float(j)) for j in range(300)}
    np.testing.assert_array_equal(expression.evaluate(values), np.full(2, sum(range(300))))


def test_not_a_string_is_a_type_error():
    with pytest.raises(TypeError, match="expression string"):
        parse_expression(b"x", COLUMNS)


# ------------------------------------------------------------------------ names
def test_unknown_column_is_named_with_a_suggestion():
    with pytest.raises(ValueError, match=r"unknown columns \['heigth'\] \('heigth': did you mean 'height'\?\)"):
        parse_expression("weight / heigth ** 2", ["weight", "height"])


def test_label_matching_two_columns_as_text_is_ambiguous():
    with pytest.raises(ValueError, match="`1` matches 2 columns"):
        parse_expression("`1` * 2", [1, "1"])


def test_non_string_labels_are_named_in_backticks():
    e = parse_expression("`0` + `1` * x", [0, 1, "x"])
    np.testing.assert_array_equal(e.evaluate({0: [1.0], 1: [2.0], 2: [3.0]}), [7.0])
    assert e.positions == (0, 1, 2)


def test_column_named_like_a_function_is_the_column_as_a_value_and_the_function_when_called():
    e = parse_expression("log(log) + log + `log`", ["log"])
    np.testing.assert_allclose(e.evaluate({0: [np.e, 1.0]}), [1 + 2 * np.e, 2.0])
    with pytest.raises(ValueError, match="function 'exp' must be called"):
        parse_expression("exp + 1", ["log"])


def test_backticked_names_hold_spaces_quotes_and_symbols():
    columns = ["body weight", "height (m)", "it's", "a+b"]
    e = parse_expression("`body weight` / `height (m)` ** 2 + `it's` - `a+b`", columns)
    out = e.evaluate({0: [80.0], 1: [2.0], 2: [1.0], 3: [0.5]})
    np.testing.assert_array_equal(out, [80.0 / 4.0 + 1.0 - 0.5])
    with pytest.raises(ValueError, match="empty backticks"):
        parse_expression("`` + 1", columns)


def test_placeholders_for_backticked_names_never_collide_with_written_names():
    columns = ["_bt0_", "a b"]
    e = parse_expression("_bt0_ * 10 + `a b`", columns)
    np.testing.assert_array_equal(e.evaluate({0: [1.0], 1: [2.0]}), [12.0])


# ------------------------------------------------------------------------ values
@pytest.fixture
def frame():
    rng = np.random.default_rng(7)
    return pd.DataFrame({"x": rng.uniform(0.1, 5, 50), "z": rng.normal(0, 3, 50), "k": rng.integers(-3, 9, 50)})


def _ours(expression, frame):
    columns = list(frame.columns)
    e = parse_expression(expression, columns)
    return e.evaluate({j: frame.iloc[:, j].to_numpy() for j in e.positions})


@pytest.mark.parametrize(
    "expression",
    [
        "x / z ** 2",
        "x + z * 2 - x / 3",
        "x // 2 + k % 3",
        "-x ** 2 + +z",
        "(x - z) / (x + z) * k",
        "x > z",
        "(x > 1) & (z < 2) | (k == 3)",
        "~(x > 1)",
        "sqrt(x) + exp(z / 10) - log1p(x) + log(x) * expm1(x / 10)",
        "sin(z) * cos(z) + tanh(x) + arctan2(x, z) + abs(z)",
        "x * 2.5e-1 + 1e3",
    ],
)
def test_results_identical_to_what_dataframe_eval_gave(frame, expression):
    expected = frame.eval(expression, engine="python")
    np.testing.assert_array_equal(_ours(expression, frame), np.asarray(expected, dtype=float))


def test_bmi_expression_equals_numpy(frame):
    np.testing.assert_array_equal(_ours("x / z ** 2", frame), frame["x"].to_numpy() / frame["z"].to_numpy() ** 2)


def test_np_numpy_and_bare_function_names_agree(frame):
    expected = np.log(frame["x"].to_numpy())
    for text in ["log(x)", "np.log(x)", "numpy.log(x)"]:
        np.testing.assert_array_equal(_ours(text, frame), expected)


def test_where_and_conditional_expressions_are_elementwise(frame):
    x, z = frame["x"].to_numpy(), frame["z"].to_numpy()
    expected = np.where(x > 2, x, z)
    np.testing.assert_array_equal(_ours("where(x > 2, x, z)", frame), expected)
    np.testing.assert_array_equal(_ours("x if x > 2 else z", frame), expected)
    np.testing.assert_array_equal(_ours("1 if x > 2 and z < 0 else 0", frame), ((x > 2) & (z < 0)).astype(float))
    np.testing.assert_array_equal(_ours("not x > 2 or z > 0", frame), (~(x > 2) | (z > 0)).astype(float))


def test_comparisons_give_zero_one_and_chain_as_in_python(frame):
    x = frame["x"].to_numpy()
    np.testing.assert_array_equal(_ours("1 < x <= 3", frame), ((1 < x) & (x <= 3)).astype(float))
    np.testing.assert_array_equal(_ours("(x > 1) + (x > 2)", frame), (x > 1).astype(float) + (x > 2))
    with pytest.raises(ValueError, match=r"'&' binds more tightly than the comparison"):
        _ours("x > 1 & z < 2", frame)


def test_rounding_clipping_and_extremes(frame):
    x, z, k = (frame[c].to_numpy(dtype=float) for c in ["x", "z", "k"])
    np.testing.assert_array_equal(_ours("round(x, 1) + round(z)", frame), np.round(x, 1) + np.round(z))
    np.testing.assert_array_equal(_ours("round(k * 15, -1)", frame), np.round(k * 15, -1))
    np.testing.assert_array_equal(_ours("clip(z, -1, x)", frame), np.clip(z, -1, x))
    np.testing.assert_array_equal(_ours("minimum(x, z) + maximum(x, 0)", frame), np.minimum(x, z) + np.maximum(x, 0))
    with pytest.raises(ValueError, match=r"decimals of round\(\) must be an integer literal"):
        _ours("round(x, 1.5)", frame)
    with pytest.raises(ValueError, match=r"clip\(\) takes 3 arguments, got 2"):
        _ours("clip(x, 1)", frame)


def test_integer_and_boolean_columns_are_computed_in_float(frame):
    e = parse_expression("k / 2 + b", ["k", "b"])
    out = e.evaluate({0: np.array([1, 2, 3], dtype=np.int64), 1: np.array([True, False, True])})
    np.testing.assert_array_equal(out, [1.5, 1.0, 2.5])
    assert out.dtype == np.float64


def test_every_allowed_function_evaluates_on_floats():
    for name, (_, fewest, _) in FUNCTIONS.items():
        args = ", ".join(["x"] * fewest)
        out = parse_expression(f"{name}({args})", ["x"]).evaluate({0: [0.5, 2.0]})
        assert out.shape == (2,) and out.dtype == np.float64, name


def test_every_allowed_function_is_documented_on_the_one_page():
    from skmlmi._expressions import CONTRASTS, TERM_FUNCTIONS

    guide = (REPO / "docs" / "user_guide" / "expressions.rst").read_text()
    names = [*FUNCTIONS, *TERM_FUNCTIONS, *CONTRASTS]
    missing = [
        name for name in names if f"``{name}``" not in guide and f" {name}," not in guide and f"``{name}(" not in guide
    ]
    assert missing == []


def test_parsed_expression_survives_pickling():
    e = parse_expression("log(`a b`) if c > 0 else -1", ["a b", "c"])
    again = pickle.loads(pickle.dumps(e))
    values = {0: [np.e, 1.0], 1: [1.0, -1.0]}
    np.testing.assert_array_equal(again.evaluate(values), e.evaluate(values))


# ------------------------------------------------------------------------ in the imputer
@pytest.mark.filterwarnings("ignore:The imputation model of")
def test_derived_expression_with_backticked_names_holds_in_every_completed_dataset(body):
    imputer = MultilevelIterativeImputer(
        methods=BayesianNormal(),
        derived={"bmi": "`body weight` / height ** 2"},
        predictor_matrix={"bmi": {"body weight": 0, "height": 0}},
        n_imputations=2,
        max_iter=2,
        random_state=0,
    )
    sets = imputer.fit_transform_all(body, groups="clinic")
    for out in [*sets, imputer.transform(body)]:
        np.testing.assert_allclose(out["bmi"], out["body weight"] / out["height"] ** 2)
    restored = pickle.loads(pickle.dumps(imputer))
    pd.testing.assert_frame_equal(restored.transform(body), imputer.transform(body))


@pytest.mark.filterwarnings("ignore:The imputation model of")
def test_derived_expression_over_an_integer_column(body):
    data = body.assign(weekly=np.nan)
    imputer = MultilevelIterativeImputer(
        methods=BayesianNormal(),
        derived={"weekly": "where(visits > 2, log1p(visits), 0)"},
        predictor_matrix={"weekly": {"visits": 0}},
        n_imputations=1,
        max_iter=1,
        random_state=0,
    )
    out = imputer.fit_transform(data, groups="clinic")
    visits = out["visits"].to_numpy(dtype=float)
    np.testing.assert_array_equal(out["weekly"].to_numpy(), np.where(visits > 2, np.log1p(visits), 0))


def test_derived_expression_without_a_column_is_refused(small):
    with pytest.raises(ValueError, match=r"derived\['z'\] = '3' uses no column"):
        _fit(small, "3")


def test_derived_division_by_zero_is_a_non_finite_error_naming_the_column(small):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # evaluation itself is silent
        with pytest.raises(ValueError, match=r"derived\['z'\] gave"):
            _fit(small, "x / (x - x)")


# ------------------------------------------------------------------------ other strings
# Formula terms speak the same language: each escape attempt, written as a formula term, is refused before
# formulaic (which evaluates its terms with Python's eval) receives anything, and creates no file.
def _formula_escape_cases():
    for name, expression, match in ESCAPES:
        if "backtick" in name:
            match = None  # the formula's reader finds the broken quoting first (a call or backtick not closed)
        yield pytest.param(f"x ~ z + I({expression})", match, id=f"I-{name}")
        yield pytest.param(f"x ~ poly({expression}, 2) + (1 | g)", match, id=f"poly-{name}")
        yield pytest.param(f"x ~ z + (1 + I({expression}) | g)", match, id=f"random-{name}")
        yield pytest.param(f"x ~ {expression} + z", None, id=f"bare-{name}")


@pytest.mark.parametrize(("formula", "match"), list(_formula_escape_cases()))
def test_escape_attempt_in_a_formula_term_is_refused_before_formulaic_sees_it(in_tmp, small, formula, match):
    from skmlmi.analysis import LinearMixedModel, parse_formula

    with pytest.raises(ValueError, match=match):
        parse_formula(formula)
    with pytest.raises(ValueError, match=match):
        LinearMixedModel(formula).fit(small.dropna())


@pytest.mark.parametrize(
    "formula",
    [
        'x ~ C(z, Treatment(__import__("os").system("touch pwned.txt")))',
        'x ~ C(z, levels=open("pwned.txt", "w"))',
        "x ~ C(z.to_csv('pwned.txt'))",
        'x ~ bs(z, extrapolation="pwned")',
        "x ~ bs(z, df=10 ** 9)",
        "x ~ poly(z, 1000000)",
        "x ~ bs(z, **{'df': 3})",
        "x ~ np.log(C(z))",
        "x ~ {open('pwned.txt', 'w')}",
        "x ~ z + (1 | g.__class__)",
        "`x') + open('pwned.txt', 'w') + ('` ~ z",
        "x ~ z + (1 | open('pwned.txt', 'w'))",
        "x ~ I(10 ** 10 ** 10) + z",
    ],
)
def test_wrapper_options_are_literals_and_grouping_factors_columns(in_tmp, small, formula):
    from skmlmi.analysis import OLS, parse_formula

    with pytest.raises((ValueError, TypeError)):
        parse_formula(formula)
        OLS(formula).fit(small.dropna())


def test_formula_terms_and_derived_columns_compute_alike(small):
    from skmlmi.analysis import OLS

    data = small.dropna().assign(w=lambda d: d.x + 0.5)
    expression = "np.log(w) + sqrt(x) * 2 if w > 3 else where(x > 4, 1, 0) ** 2"
    fit = OLS(f"z ~ I({expression})").fit(data)
    derived = parse_expression(expression, list(data.columns)).evaluate(
        {j: data.iloc[:, j].to_numpy() for j in range(data.shape[1])}
    )
    np.testing.assert_allclose(fit._design.X[:, 1], derived)


@pytest.mark.parametrize(
    "text",
    [
        "RandomEffectsNormal(alpha=__import__('os').system('touch pwned.txt'))",
        "RandomEffectsNormal(**{'a': open('pwned.txt', 'w')})",
        "__builtins__",
        "os.system('touch pwned.txt')",
    ],
)
def test_cli_model_settings_are_literals_and_names_are_models(in_tmp, text):
    # `skmlmi impute --method y=...`: the name must be a conditional model, the settings literals
    from skmlmi.cli import CLIError, parse_model

    with pytest.raises(CLIError, match=r"literal values|unknown model|keywords"):
        parse_model(text)
