"""Hostile inputs for the core rooms: imputer, columns, pooling, analysis, diagnostics, CLI.

Each test pins a defect found by an adversarial review (a crash with an obscure
numpy/pandas message, a silently wrong result, or caller data changed) so that it stays
fixed. Data are tiny and seeded; the assertions are exact (no Monte Carlo tolerance is
involved: each checks an error, a dtype, an exact value or a deterministic identity).
"""

import warnings

import numpy as np
import pandas as pd
import pytest

from skmlmi import MIPooler, MultilevelIterativeImputer
from skmlmi.analysis import OLS, LinearMixedModel, LogisticMixedModel
from skmlmi.cli import main as cli_main
from skmlmi.conditional import PredictiveMeanMatching
from skmlmi.diagnostics import overimpute, plot_trace
from skmlmi.pooling import d1, d2, d2_from_statistics, d3_from_deviances, pool, pool_variance_components


@pytest.fixture
def clustered():
    rng = np.random.default_rng(11)
    n = 60
    df = pd.DataFrame({"g": np.repeat(np.arange(6), 10), "x": rng.normal(size=n), "y": rng.normal(size=n)})
    df.loc[rng.random(n) < 0.2, "y"] = np.nan
    return df


def _imputer(**params):
    return MultilevelIterativeImputer(**{"n_imputations": 2, "max_iter": 2, "random_state": 1, **params})


def _quiet(func, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return func(*args, **kwargs)


# --------------------------------------------------------------------------- imputer and columns
def test_tuple_column_names_work_as_groups_and_in_the_predictor_matrix(clustered):
    # tuples used to be read as arrays of labels (groups) and turned the matrix into a MultiIndex (KeyError 2)
    data = clustered.set_axis([("a", 1), ("b", 1), ("c", 2)], axis=1)
    out = _quiet(_imputer().fit_transform, data, groups=("a", 1))
    assert list(out.columns) == list(data.columns)
    assert out[("c", 2)].notna().all()
    assert _quiet(_imputer().fit_transform, data)[("c", 2)].notna().all()


def test_methods_naming_unknown_or_cluster_column_is_an_error(clustered):
    with pytest.raises(ValueError, match=r"methods names \['q'\]"):
        _imputer(methods={"q": PredictiveMeanMatching()}).fit(clustered, groups="g")
    with pytest.raises(ValueError, match="cluster column 'g'"):
        _imputer(methods={"g": PredictiveMeanMatching()}).fit(clustered, groups="g")


def test_groups_true_is_a_type_error_not_a_length_mismatch(clustered):
    with pytest.raises(TypeError, match="groups=True"):
        _imputer().fit(clustered, groups=True)


def test_groups_series_with_permuted_index_is_aligned_on_the_rows(clustered):
    # a Series indexed like the data but in another order used to be read by position
    data = clustered.drop(columns="g")
    labels = clustered["g"]
    shuffled = labels.iloc[np.random.default_rng(0).permutation(len(labels))]
    imp = _quiet(_imputer(n_imputations=1).fit, data, groups=shuffled)
    np.testing.assert_array_equal(imp._fitted.plan.groups, labels.to_numpy())
    # with an array X there is no index to align on: the Series is positional
    imp = _quiet(_imputer(n_imputations=1).fit, data.to_numpy(), groups=shuffled)
    np.testing.assert_array_equal(imp._fitted.plan.groups, shuffled.to_numpy())


def test_transform_chain_beyond_the_chains_fails_before_fitting(clustered):
    with pytest.raises(ValueError, match="transform_chain=5"):
        _imputer(transform_chain=5).fit(clustered, groups="g")


def test_object_column_of_bools_comes_back_as_bools(clustered):
    data = clustered.copy()
    data["b"] = pd.Series(np.arange(len(data)) % 3 == 0, dtype=object)
    data.loc[[1, 2, 4], "b"] = None
    out = _quiet(_imputer().fit_transform, data, groups="g")
    assert all(isinstance(v, bool) for v in out["b"])  # used to be 1.0 / 0.0, observed cells included
    assert out["b"].iloc[0] is True and out["b"].iloc[3] is True


def test_observed_integers_beyond_float_precision_are_kept_exactly(clustered):
    # the float working copy rounds 2**60 + 1 to 2**60; observed cells must keep the caller's values
    data = clustered.copy()
    data["big"] = pd.array(np.arange(len(data), dtype=np.int64) + 2**60, dtype="Int64")
    data.loc[3:5, "big"] = pd.NA
    original = data.copy()
    out = _quiet(_imputer().fit_transform, data, groups="g")
    observed = original["big"].notna()
    assert (out.loc[observed, "big"] == original.loc[observed, "big"]).all()
    assert out["big"].notna().all() and out["big"].dtype == "Int64"
    pd.testing.assert_frame_equal(data, original)  # the caller's data untouched


def test_over_imputed_observed_cells_still_show_their_imputations(clustered):
    where = clustered.isna().to_numpy()
    where[:3, 1] = True  # over-impute three observed x
    out = _quiet(_imputer().fit_transform, clustered, groups="g", where=where)
    assert not np.allclose(out["x"].iloc[:3], clustered["x"].iloc[:3])
    assert (out["x"].iloc[3:] == clustered["x"].iloc[3:]).all()


@pytest.mark.parametrize("scale", [1e300, 1e-300])
def test_values_beyond_the_numerics_range_are_an_error_naming_the_column(clustered, scale):
    # 1e300 crashed in LAPACK ("SVD did not converge"); 1e-300 silently imputed one repeated value
    data = clustered.assign(z=clustered["x"] * scale)
    data.loc[:4, "z"] = np.nan
    with pytest.raises(ValueError, match="Column 'z' holds values of magnitude"):
        _imputer().fit(data, groups="g")


# --------------------------------------------------------------------------- pooling
def test_pool_aligns_a_list_of_series_by_parameter_name():
    estimates = [pd.Series({"a": 1.0, "b": 2.0}), pd.Series({"b": 2.2, "a": 1.2})]
    table = _quiet(pool, estimates, [[0.1, 0.1], [0.1, 0.1]])
    assert list(table.index) == ["a", "b"]
    assert table.loc["a", "estimate"] == pytest.approx(1.1)
    assert table.loc["b", "estimate"] == pytest.approx(2.1)
    with pytest.raises(ValueError, match="imputation 2 name parameters"):
        pool([pd.Series({"a": 1.0}), pd.Series({"c": 1.0})], [[0.1], [0.1]])


def test_pool_fmi_is_one_when_all_information_is_missing_information():
    table = pool([[1.0], [1.2], [0.9]], [0.0, 0.0, 0.0])
    assert table["fmi"].iloc[0] == 1.0  # was NaN (inf / inf)


def test_wald_tests_on_singular_covariances_say_so():
    q = [[1.0, 2.0], [1.1, 2.1], [0.9, 1.8]]
    singular = np.ones((3, 2, 2))
    with pytest.raises(ValueError, match="Ubar is singular"):
        d1(q, singular)
    with pytest.raises(ValueError, match="U_l is singular"):
        d2(q, singular)
    with pytest.raises(ValueError, match="null must hold one value per tested parameter"):
        d1(q, np.stack([np.eye(2)] * 3), null=[0.0])


def test_d1_small_sample_df_falls_back_where_reiter_is_undefined():
    # k(m - 1) = 2: Reiter's a = r t / (t - 2) divides by zero; df2 was NaN beside a chi-square p-value
    q = [[1.0, 2.0], [1.1, 2.1]]
    u = np.stack([np.diag([0.1, 0.2])] * 2)
    with pytest.warns(UserWarning, match="large-sample df"):
        table = d1(q, u, dfcom=10)
    assert np.isfinite(table["df2"].iloc[0])
    assert table["df2"].iloc[0] == pytest.approx(d1(q, u)["df2"].iloc[0])


def test_pooled_tests_check_k_and_deviances():
    with pytest.raises(ValueError, match="positive integer"):
        d2_from_statistics([1.0, 2.0, 3.0], 0)
    with pytest.raises(ValueError, match="positive integer"):
        d3_from_deviances([5.0, 6.0], [5.0, 5.5], 1.5)
    with pytest.raises(ValueError, match="non-finite"):
        d3_from_deviances([np.nan, 6.0], [5.0, 5.5], 1)


def test_variance_components_with_a_nan_pool_to_nan_with_a_warning():
    parts = [pd.Series({"a": 1.0, "b": 2.0}), pd.Series({"a": np.nan, "b": 4.0})]
    with pytest.warns(UserWarning, match=r"\['a'\] are undefined"):
        out = pool_variance_components(parts)
    assert np.isnan(out["a"]) and out["b"] == 3.0  # the NaN imputation was silently skipped
    with pytest.raises(ValueError, match="repeat names"):
        pool_variance_components([pd.Series([1.0, 2.0], index=["a", "a"])])


def test_pooler_fitted_with_the_response_in_x_predicts_and_scores_without_it(clustered):
    pooler = _quiet(MIPooler(_imputer(), LinearMixedModel("y ~ x + (1 | g)")).fit, clustered, groups="g")
    complete = clustered.dropna()
    with_y = pooler.predict(complete)
    np.testing.assert_allclose(pooler.predict(complete.drop(columns="y")), with_y)
    assert pooler.score(complete) == pytest.approx(pooler.score(complete.drop(columns="y"), complete["y"]))


def test_pooler_score_with_missing_y_is_a_clear_error(clustered):
    from sklearn.linear_model import LinearRegression

    X = clustered.drop(columns="y")
    pooler = _quiet(MIPooler(_imputer(), LinearRegression()).fit, X, clustered["y"], groups="g")
    with pytest.raises(ValueError, match="y has .* missing values"):
        pooler.score(X, clustered["y"])


def test_pooler_y_named_like_a_column_of_x_is_renamed(clustered):
    from sklearn.linear_model import LogisticRegression

    X = clustered.drop(columns="y")
    y = (X["x"] > 0).astype(float)  # a Series named "x", like a column of X
    y.iloc[:5] = np.nan
    pooler = _quiet(MIPooler(_imputer(), LogisticRegression()).fit, X, y, groups="g")
    assert set(pooler.predict(X)) <= {0.0, 1.0}


def test_pooler_wraps_exceptions_whose_constructor_takes_other_arguments(clustered):
    class Failing:
        def fit(self, X, y=None):
            raise UnicodeDecodeError("utf-8", b"x", 0, 1, "bad byte")

        def get_params(self, deep=True):
            return {}

        def set_params(self, **params):
            return self

    X = clustered.drop(columns="y")
    with pytest.raises(UnicodeDecodeError) as info:  # its own type, so that callers catching it still do
        _quiet(MIPooler(_imputer(), Failing()).fit, X, clustered["y"].fillna(0.0), groups="g")
    assert "raised in the analysis model, on imputation 1" in info.value.__notes__


# --------------------------------------------------------------------------- analysis
def test_analysis_models_name_the_problem_in_degenerate_designs(clustered):
    data = clustered.dropna()
    with pytest.raises(ValueError, match="too few for the 2 fixed effects"):
        OLS("y ~ x").fit(data.iloc[:2])  # was ZeroDivisionError
    with pytest.raises(ValueError, match=r"\['x'\] .* hold infinite values"):
        OLS("y ~ x").fit(data.assign(x=np.r_[np.inf, data["x"].to_numpy()[1:]]))  # was "rank deficient"
    with pytest.raises(ValueError, match="appear more than once"):
        OLS("y ~ x").fit(pd.concat([data, data[["x"]]], axis=1))  # was "truth value of a Series is ambiguous"


def test_unused_categories_do_not_make_the_design_rank_deficient(clustered):
    data = clustered.dropna()
    f = np.array(["a", "b", "c"])[np.arange(len(data)) % 3]
    with_unused = data.assign(f=pd.Categorical(f, categories=["a", "b", "c", "d"]))
    fit = OLS("y ~ x + f").fit(with_unused)
    reference = OLS("y ~ x + f").fit(data.assign(f=f))
    pd.testing.assert_series_equal(fit.coef_, reference.coef_)


def test_logistic_mixed_model_warns_on_separation_and_constant_response():
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"g": np.repeat(np.arange(12), 10), "x": rng.normal(size=120)})
    with pytest.warns(UserWarning, match="numerically 0 or 1"):
        _quiet_convergence(LogisticMixedModel("b ~ x + (1 | g)").fit, df.assign(b=(df["x"] > 0).astype(int)))
    with pytest.warns(UserWarning, match="the response is 0 in every row"):
        _quiet_convergence(LogisticMixedModel("b ~ x + (1 | g)").fit, df.assign(b=0))


def _quiet_convergence(func, *args):
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return func(*args)


# --------------------------------------------------------------------------- diagnostics
def test_plot_trace_without_imputed_columns_is_a_clear_error(clustered):
    import matplotlib

    matplotlib.use("Agg")
    imp = _imputer().fit(clustered.dropna(), groups="g")
    with pytest.raises(ValueError, match="imputed no column"):
        plot_trace(imp)


def test_overimpute_with_group_labels_and_with_nothing_to_check(clustered):
    data = clustered.drop(columns="g")
    result = _quiet(overimpute, _imputer(), data, groups=clustered["g"].to_numpy(), random_state=0)
    assert list(result.coverage.index) == ["y"]  # was "truth value of an array is ambiguous"
    with pytest.raises(ValueError, match="no incomplete continuous column"):
        _quiet(overimpute, _imputer(), clustered.dropna(), groups="g")


# --------------------------------------------------------------------------- CLI
@pytest.mark.parametrize(
    ("argv_tail", "message"),
    [
        (["--method", "y=PredictiveMeanMatching(donors=3"], "settings must be key=value"),
        (["--method", "y=PredictiveMeanMatching(3)"], "as keywords"),
        (["--method", "y=PredictiveMeanMatching(bogus=3)"], "unexpected keyword"),
        (["--method", "y=PredictiveMeanMatching(donors=-3)"], "donors"),
        (["--role", "y:x=abc"], "must be an integer"),
    ],
)
def test_cli_bad_model_and_role_strings_are_usage_errors(tmp_path, clustered, capsys, argv_tail, message):
    data = tmp_path / "d.csv"
    clustered.to_csv(data, index=False)
    code = cli_main(["impute", str(data), "--out", str(tmp_path / "o.csv"), "--groups", "g", "--quiet", *argv_tail])
    assert code == 2
    assert message in capsys.readouterr().err


def test_cli_unreadable_inputs_and_outputs_are_usage_errors(tmp_path, clustered, capsys):
    empty, header, semicolon, data = (tmp_path / n for n in ("empty.csv", "header.csv", "semi.csv", "d.csv"))
    empty.write_text("")
    header.write_text("g,x,y\n")
    semicolon.write_text("g;x;y\n1;2;3\n")
    clustered.to_csv(data, index=False)
    cases = [
        (["impute", str(empty), "--out", str(tmp_path / "o.csv")], "is empty"),
        (["impute", str(header), "--out", str(tmp_path / "o.csv")], "no rows"),
        (["impute", str(semicolon), "--out", str(tmp_path / "o.csv")], "read as one column"),
        (["impute", str(data), "--out", str(tmp_path / "missing" / "o.csv"), "--quiet"], "does not exist"),
    ]
    for argv, message in cases:
        assert cli_main(argv) == 2
        assert message in capsys.readouterr().err


def test_cli_reads_tab_separated_files(tmp_path, clustered):
    data, out = tmp_path / "d.tsv", tmp_path / "o.csv"
    clustered.to_csv(data, index=False, sep="\t")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert (
            cli_main(
                ["impute", str(data), "--out", str(out), "--groups", "g", "--m", "1", "--max-iter", "1", "--quiet"]
            )
            == 0
        )
    long = pd.read_csv(out)
    assert list(long.columns) == [".imp", ".id", "g", "x", "y"] and long["y"].notna().all()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([1, "a", 2.5, "b"], r"mixes numbers and strings \(e\.g\. 1 and 'a'\).*pd\.to_numeric"),
        ([1.0, [2, 3], 4.0, 5.0], r"holds values of type list \(e\.g\. \[2, 3\]\)"),
    ],
)
def test_object_column_of_mixed_values_says_what_it_holds(clustered, values, message):
    data = clustered.head(4).assign(odd=pd.Series(values, dtype=object))
    data.loc[0, "y"] = np.nan
    with pytest.raises(TypeError, match=rf"Column 'odd' {message}"):
        _quiet(MultilevelIterativeImputer(n_imputations=1, max_iter=1).fit, data, groups="g")


# --------------------------------------------------------------------------- second probe: imputer, columns
@pytest.mark.parametrize("groups", [np.zeros((60, 2)), [[0, 1]] * 60, np.zeros((60, 1))])
def test_groups_of_more_than_one_dimension_are_named_as_groups(clustered, groups):
    with pytest.raises(ValueError, match="groups must be a column name or one cluster label per row"):
        _imputer().fit(clustered.drop(columns="g"), groups=groups)


def test_object_column_with_pandas_na_is_numeric_with_missing_values(clustered):
    data = clustered.assign(y=clustered["y"].astype(object))
    data.loc[1, "y"] = pd.NA
    out = _quiet(_imputer().fit_transform, data, groups="g")
    observed = clustered["y"].notna().to_numpy().copy()
    observed[1] = False
    assert not out["y"].isna().any() and out["y"][observed].astype(float).equals(clustered["y"][observed])


def test_text_where_fit_saw_numbers_is_an_error_naming_the_column(clustered):
    imp = _quiet(_imputer().fit, clustered, groups="g")
    with pytest.raises(TypeError, match="Column 'x' was numeric at fit but holds text now"):
        imp.transform(clustered.assign(x=clustered["x"].astype(str)))


@pytest.mark.parametrize("option", ["bounds", "post"])
def test_bounds_and_post_on_the_cluster_column_are_errors(clustered, option):
    value = (0, 1) if option == "bounds" else np.round
    with pytest.raises(ValueError, match=f"{option} names the cluster column 'g'"):
        _imputer(**{option: {"g": value}}).fit(clustered, groups="g")


def test_bounds_on_a_categorical_column_are_an_error(clustered):
    data = clustered.assign(c=pd.Categorical(np.where(np.arange(60) % 7 == 0, None, list("abc") * 20)))
    with pytest.raises(ValueError, match="bounds names 'c', a categorical column"):
        _imputer(bounds={"c": (0, 1)}).fit(data, groups="g")


def test_methods_for_a_complete_column_must_be_able_to_impute_its_kind(clustered):
    data = clustered.assign(c=pd.Categorical(list("abc") * 20))  # complete: its model serves new data
    with pytest.raises(ValueError, match="PredictiveMeanMatching cannot impute 'c', a categorical column"):
        _imputer(methods={"c": PredictiveMeanMatching()}).fit(data, groups="g")


def test_long_format_refuses_clashing_columns_and_non_frames(clustered):
    sets = _quiet(_imputer().fit_transform_all, clustered.rename(columns={"x": ".imp"}), groups="g")
    with pytest.raises(ValueError, match=r"columns named \['.imp'\], which long\(\) adds"):
        sets.long()
    with pytest.raises(TypeError, match="include_original must be the incomplete data frame; got str"):
        sets.long(include_original="data")


def test_continue_fit_refuses_a_boolean_iteration_count(clustered):
    imp = _quiet(_imputer().fit, clustered, groups="g")
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
def test_malformed_predictor_matrices_name_the_entry(clustered, matrix, error, match):
    with pytest.raises(error, match=match):
        _imputer(predictor_matrix=matrix).fit(clustered, groups="g")


def test_make_predictor_matrix_checks_its_columns():
    from skmlmi.predictors import make_predictor_matrix

    with pytest.raises(ValueError, match=r"duplicated names: \['a'\]"):
        make_predictor_matrix(["a", "a"])
    with pytest.raises(ValueError, match="groups_column 'z' is not one of the columns"):
        make_predictor_matrix(["a", "b"], groups_column="z")
    with pytest.raises(TypeError, match="sequence of column names; got str"):
        make_predictor_matrix("abc")
