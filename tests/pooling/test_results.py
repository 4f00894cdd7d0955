"""PooledResults: the pooled table, its metadata as attributes, summary, intervals and tests."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from skmlmi import MultilevelIterativeImputer
from skmlmi.analysis import OLS, LinearMixedModel
from skmlmi.conditional import RandomEffectsNormal
from skmlmi.datasets import load_popmis
from skmlmi.pooling import MIPooler, PooledResults, d1, d2, pool, pool_results, rubin_components, test_models

RNG = np.random.default_rng(7)
M, K = 5, 3
Q = pd.DataFrame(RNG.normal([1.0, 0.5, -0.2], 0.1, size=(M, K)), columns=["a", "b", "c"])
_BASE = np.array([[0.04, 0.005, 0.0], [0.005, 0.03, 0.002], [0.0, 0.002, 0.02]])
U = np.stack([_BASE * s for s in (1.0, 1.1, 0.9, 1.05, 0.95)])


@pytest.fixture(scope="module")
def popmis():
    return load_popmis()[["school", "popular", "sex", "texp"]]


def _imputer():
    return MultilevelIterativeImputer(
        methods={"popular": RandomEffectsNormal()}, n_imputations=3, max_iter=2, random_state=1
    )


def _fit(pooler, data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pooler.fit(data, groups="school")


@pytest.fixture(scope="module")
def fitted(popmis):
    return _fit(MIPooler(_imputer(), LinearMixedModel("popular ~ sex + texp + (1 | school)")), popmis)


@pytest.mark.parametrize("dfcom", [None, 60])
def test_table_equals_what_pool_returns(dfcom):
    results = pool_results(Q, U, dfcom=dfcom, alpha=0.1)
    expected = pool(Q, U, dfcom=dfcom, alpha=0.1)
    pd.testing.assert_frame_equal(results.table, expected, check_exact=True)
    assert (results.m, results.alpha) == (M, 0.1)
    assert results.dfcom == (np.inf if dfcom is None else 60.0)
    assert results.df_method == ("Rubin (large sample)" if dfcom is None else "Barnard-Rubin")
    pd.testing.assert_series_equal(results.params, expected["estimate"])
    pd.testing.assert_series_equal(results.bse, expected["std_error"])


def test_rubin_components_and_per_term_variances():
    results = pool_results(Q, U, dfcom=60)
    comp = rubin_components(Q, U)
    for name in ("qbar", "ubar", "b", "t"):
        np.testing.assert_array_equal(getattr(results.components, name), getattr(comp, name))
    variances = results.variances
    assert list(variances.columns) == ["within", "between", "total"]
    np.testing.assert_allclose(variances["total"], variances["within"] + (1 + 1 / M) * variances["between"])
    np.testing.assert_allclose(variances["total"], results.bse**2, rtol=1e-12)


def test_summary_header_says_m_df_method_and_dfcom():
    results = pool_results(Q, U, dfcom=60, model="OLS", formula="y ~ a + b + c")
    text = str(results.summary())
    assert "Imputations (m):  5" in text
    assert "df method:        Barnard-Rubin" in text
    assert "dfcom:            60" in text
    assert "y ~ a + b + c" in text and "Confidence level: 95%" in text
    for term in ("a", "b", "c"):
        assert f"\n{term} " in text
    summary = results.summary()
    assert summary.as_text() == text and "<table" in summary._repr_html_()
    header, table = summary.tables
    assert header.loc["df method", "value"] == "Barnard-Rubin"
    pd.testing.assert_frame_equal(table, results.table.drop(columns=["ubar", "b", "t"]))
    large = str(pool_results(Q, U).summary())
    assert "Rubin (large sample)" in large and "inf (large sample)" in large


def test_repr_is_one_line():
    results = pool_results(Q, U, dfcom=60, model="OLS", formula="y ~ a + b + c")
    assert repr(results) == "<PooledResults: OLS 'y ~ a + b + c', 3 terms, m = 5, Barnard-Rubin df (dfcom = 60)>"


@pytest.mark.parametrize("dfcom", [None, 60])
def test_d1_equals_the_d1_function_on_the_same_inputs(dfcom):
    results = pool_results(Q, U, dfcom=dfcom)
    pd.testing.assert_frame_equal(results.test(), d1(Q.to_numpy(), U, dfcom=dfcom))
    sub = ["a", "c"]
    got = results.test(sub, null=[1.0, 0.0])
    pd.testing.assert_frame_equal(got, d1(Q[sub].to_numpy(), U[:, [0, 2]][:, :, [0, 2]], dfcom=dfcom, null=[1.0, 0.0]))
    assert got.attrs["terms"] == sub
    pd.testing.assert_frame_equal(results.test(sub, method="D2"), d2(Q[sub].to_numpy(), U[:, [0, 2]][:, :, [0, 2]]))


def test_likelihood_tests_refuse_without_the_nested_model():
    results = pool_results(Q, U)
    with pytest.raises(ValueError, match="D3 compares the likelihoods of two nested models: pass null_fits"):
        results.test(method="D3")
    with pytest.raises(ValueError, match="D2 on likelihood ratios"):
        results.test(method="D2", use="likelihood")
    with pytest.raises(ValueError, match="pooled from arrays"):
        results.test(method="D3", null_fits=[object()] * M)
    with pytest.raises(ValueError, match=r"terms \['z'\] are not among the pooled terms"):
        results.test(["a", "z"])


@pytest.mark.filterwarnings("ignore:the small-sample df of D1")
def test_d3_with_null_fits_equals_test_models(popmis):
    full = _fit(MIPooler(_imputer(), OLS("popular ~ sex + texp")), popmis)
    null = _fit(MIPooler(_imputer(), OLS("popular ~ sex")), popmis)
    for method in ("D1", "D3"):
        dfcom = full.results_.dfcom if method == "D1" else None
        expected = test_models(full.estimators_, null.estimators_, method=method, dfcom=dfcom)
        got = full.results_.test(method=method, null_fits=null.estimators_)
        pd.testing.assert_frame_equal(got, expected)


@pytest.mark.parametrize("alpha", [0.01, 0.1, 0.5])
def test_conf_int_at_another_alpha_uses_t_quantiles_with_the_pooled_df(alpha):
    results = pool_results(Q, U, dfcom=40)
    table = results.table
    crit = stats.t.ppf(1 - alpha / 2, table["df"])
    interval = results.conf_int(alpha=alpha)
    np.testing.assert_allclose(interval["conf_low"], table["estimate"] - crit * table["std_error"], rtol=1e-12)
    np.testing.assert_allclose(interval["conf_high"], table["estimate"] + crit * table["std_error"], rtol=1e-12)
    default = results.conf_int()
    pd.testing.assert_frame_equal(default, table[["conf_low", "conf_high"]], check_exact=False, rtol=1e-12)


def test_pooler_holds_results_with_the_models_name_and_formula(fitted):
    results = fitted.results_
    assert isinstance(results, PooledResults)
    assert results.model == "LinearMixedModel" and results.formula == "popular ~ sex + texp + (1 | school)"
    assert results.m == 3 and results.df_method == "Barnard-Rubin"
    assert results.dfcom == fitted.estimators_[0].df_resid_
    assert list(results.icc.index) == ["ICC|school"]
    assert len(results.fits) == 3
    text = str(results.summary())
    assert "LinearMixedModel" in text and "Variance components" in text and "ICC|school" in text


def test_old_attributes_warn_and_give_the_same_values(fitted):
    results = fitted.results_
    with pytest.warns(FutureWarning, match=r"summary_ is deprecated .* use MIPooler.results_.table"):
        summary = fitted.summary_
    assert summary is results.table
    with pytest.warns(FutureWarning, match="results_.variance_components"):
        components = fitted.variance_components_
    assert components is results.variance_components
    with pytest.warns(FutureWarning, match="results_.components"):
        pooled = fitted.pooled_
    assert pooled is results.components
    assert summary.attrs["m"] == 3  # still filled for one release
    unfitted = MIPooler(_imputer(), OLS("popular ~ sex"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not hasattr(unfitted, "summary_")


def test_point_estimates_only_results_refuse_what_needs_variances(popmis):
    from sklearn.linear_model import LinearRegression

    data = popmis.dropna()
    pooler = MIPooler(_imputer(), LinearRegression())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pooler.fit(data[["school", "sex", "texp"]], data["popular"], groups="school")
    results = pooler.results_
    assert list(results.table.columns) == ["estimate", "between_sd"]
    assert results.df_method == "none (point estimates only)" and results.dfcom is None
    assert "no within-imputation variance" in str(results.summary())
    with pytest.raises(ValueError, match="needs standard errors"):
        results.conf_int()
    with pytest.raises(ValueError, match="needs standard errors"):
        results.test()


@pytest.mark.filterwarnings("ignore:the small-sample df of D1")
def test_results_pickle(fitted):
    results = pickle.loads(pickle.dumps(fitted.results_))
    pd.testing.assert_frame_equal(results.table, fitted.results_.table)
    assert repr(results) == repr(fitted.results_)
    assert str(results.summary()) == str(fitted.results_.summary())
    np.testing.assert_array_equal(results.components.t, fitted.results_.components.t)
    pd.testing.assert_frame_equal(results.test(["sex", "texp"]), fitted.results_.test(["sex", "texp"]))
    again = pickle.loads(pickle.dumps(fitted))
    pd.testing.assert_frame_equal(again.results_.table, fitted.results_.table)
