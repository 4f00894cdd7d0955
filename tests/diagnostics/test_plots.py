"""Diagnostic plots and tables: md.pattern, missingness per cluster, correlations, predictor
matrix, traces, convergence, observed vs imputed, ICC. Headless (Agg); structural checks plus
the returned tables against hand-computed values."""

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")


import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from skmlmi import MultilevelIterativeImputer  # noqa: E402
from skmlmi.conditional import ROLE_NAMES, BayesianLogistic, PredictiveMeanMatching  # noqa: E402
from skmlmi.datasets import load_popmis  # noqa: E402
from skmlmi.diagnostics.plots import (  # noqa: E402
    DiagnosticPlot,
    convergence_table,
    icc,
    icc_table,
    md_pattern,
    plot_corr,
    plot_imputed,
    plot_missing_by_cluster,
    plot_pattern,
    plot_predictor_matrix,
    plot_trace,
    trace_table,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def tiny():
    # nmis: a 2, b 2, c 0 -> column order c, a, b (ties in data order, as R's order())
    return pd.DataFrame({"a": [1.0, np.nan, 3, np.nan, 5], "b": [np.nan, np.nan, 3, 4, 5], "c": [1.0, 2, 3, 4, 5]})


@pytest.fixture(scope="module")
def popmis_small():
    """popmis with sex also missing (sporadic) and a fitted 2-chain imputer."""
    data = load_popmis()[["school", "popular", "sex", "texp"]].copy()
    rng = np.random.default_rng(3)
    data["sex"] = data["sex"].astype(float)
    data.loc[rng.random(len(data)) < 0.15, "sex"] = np.nan
    imp = MultilevelIterativeImputer(n_imputations=2, max_iter=5, random_state=1)  # random-effects defaults
    completed = imp.fit_transform_all(data, groups="school")
    return data, imp, completed


# ----------------------------------------------------------------------------- md.pattern
def test_md_pattern_counts_and_margins_match_hand_computation(tiny):
    # is.na patterns in (c, a, b) order: 001, 011, 000, 010, 000 -> sorted 000 (x2), 001, 010, 011
    table = md_pattern(tiny)
    assert list(table.columns) == ["count", "c", "a", "b", "n_missing"]
    body = table.drop(index="total")
    assert body["count"].tolist() == [2, 1, 1, 1]
    assert body[["c", "a", "b"]].to_numpy().tolist() == [[1, 1, 1], [1, 1, 0], [1, 0, 1], [1, 0, 0]]
    assert body["n_missing"].tolist() == [0, 1, 1, 2]
    assert table.loc["total"].tolist() == [5, 0, 2, 2, 4]


def test_plot_pattern_draws_one_cell_per_pattern_and_variable(tiny):
    result = plot_pattern(tiny)
    assert isinstance(result, DiagnosticPlot)
    fig, ax, table = result  # the documented unpacking
    image = ax.get_images()[0].get_array()
    assert image.shape == (4, 3)
    assert np.array_equal(np.asarray(image), table.drop(index="total")[["c", "a", "b"]].to_numpy())
    assert [t.get_text() for t in ax.get_xticklabels()] == ["c", "a", "b"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["2", "1", "1", "1"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["observed", "missing"]


def test_plot_pattern_max_patterns_keeps_the_most_frequent(tiny):
    _, ax, table = plot_pattern(tiny, max_patterns=1)
    assert ax.get_images()[0].get_array().shape == (1, 3)
    assert len(table) == 5  # the table keeps every pattern


# ----------------------------------------------------------------------------- per cluster
def test_plot_missing_by_cluster_table_classifies_sporadic_and_systematic():
    df = pd.DataFrame({"g": ["a", "a", "b", "b", "c"], "x": [np.nan, 1.0, np.nan, np.nan, 2.0], "y": [1.0, 2, 3, 4, 5]})
    table = plot_missing_by_cluster(df, "g").table
    assert set(table["column"]) == {"x"}  # complete columns are left out
    x = table.set_index("cluster")
    assert x["status"].to_dict() == {"a": "sporadic", "b": "systematic", "c": "complete"}
    assert x["n_missing"].tolist() == [1, 2, 0] and x["prop_missing"].tolist() == [0.5, 1.0, 0.0]
    with pytest.raises(ValueError, match="no incomplete column"):
        plot_missing_by_cluster(df, "g", columns=["y"])


def test_plot_missing_by_cluster_marks_every_systematic_cell():
    df = pd.DataFrame(
        {
            "g": np.repeat([1, 2, 3, 4], 3),
            "x": [np.nan] * 3 + [1.0, np.nan, 2] + [1.0] * 6,
            "z": [1.0] * 9 + [np.nan] * 3,
        }
    )
    fig, (heat, bars), table = plot_missing_by_cluster(df, df["g"].to_numpy())
    assert heat.get_images()[0].get_array().shape == (2, 4)
    marks = heat.collections[0].get_offsets()
    assert sorted(map(tuple, np.asarray(marks).tolist())) == [(0.0, 0.0), (3.0, 1.0)]  # (cluster, variable)
    # stacked bars: 3 statuses x 2 variables; widths = clusters per status
    widths = [p.get_width() for p in bars.patches]
    assert widths == [2, 3, 1, 0, 1, 1]  # complete (x, z), sporadic (x, z), systematic (x, z)
    assert len(table) == 8


# ----------------------------------------------------------------------------- correlations
def test_plot_corr_is_pairwise_complete_correlation():
    df = pd.DataFrame(
        {
            "x": [1.0, 2, 3, 4, np.nan, 6],
            "y": [2.0, 1, 4, np.nan, 5, 7],
            "f": pd.Categorical(["a", "b", "a", "c", "b", "c"], categories=["c", "b", "a"]),
        }
    )
    _, ax, table = plot_corr(df)
    both = ~np.isnan(df["x"]) & ~np.isnan(df["y"])
    expected = np.corrcoef(df["x"][both], df["y"][both])[0, 1]
    assert table.loc["x", "y"] == pytest.approx(expected, rel=1e-12)
    codes = np.array([2.0, 1, 2, 0, 1, 0])  # categories order c, b, a -> codes 0, 1, 2 (R's data.matrix)
    ok = ~np.isnan(df["x"])
    assert table.loc["f", "x"] == pytest.approx(np.corrcoef(codes[ok], df["x"][ok])[0, 1], rel=1e-12)
    assert ax.get_images()[0].get_array().shape == (3, 3)
    assert len(ax.texts) == 9  # annotated cells


def test_plot_corr_missingness_correlates_response_indicators_with_variables():
    df = pd.DataFrame({"x": [1.0, 2, 3, 4, 5, 6], "y": [np.nan, np.nan, 3, 4, 5, 6], "z": [1.0, 0, 1, 0, 1, 1]})
    _, ax, table = plot_corr(df, missingness=True)
    assert list(table.index) == ["y"]  # only incomplete variables have an indicator
    r = np.array([0.0, 0, 1, 1, 1, 1])
    assert table.loc["y", "x"] == pytest.approx(np.corrcoef(r, df["x"])[0, 1], rel=1e-12)
    assert table.loc["y", "z"] == pytest.approx(np.corrcoef(r, df["z"])[0, 1], rel=1e-12)
    assert np.isnan(table.loc["y", "y"])  # R_y is constant where y is observed
    with pytest.raises(ValueError, match="no column is incomplete"):
        plot_corr(df.dropna(), missingness=True)


# ----------------------------------------------------------------------------- predictor matrix
def test_plot_predictor_matrix_legend_names_the_codes_present_in_words():
    pm = pd.DataFrame([[0, 4, -2], [1, 0, -2], [0, 0, 0]], index=["y", "x", "g"], columns=["y", "x", "g"])
    _, ax, table = plot_predictor_matrix(pm)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [f"{c}: {ROLE_NAMES[c]}" for c in (-2, 0, 1, 4)]
    assert sorted(t.get_text() for t in ax.texts) == ["-2", "-2", "1", "4"]
    assert table.equals(pm)
    pm.iloc[0, 1] = 7
    with pytest.raises(ValueError, match="not a role code"):
        plot_predictor_matrix(pm)


def test_plot_predictor_matrix_accepts_a_fitted_imputer(popmis_small):
    _, imp, _ = popmis_small
    _, _, table = plot_predictor_matrix(imp)
    assert table.equals(imp.predictor_matrix_.astype(int))


# ----------------------------------------------------------------------------- traces and convergence
def test_plot_trace_draws_every_chain_for_mean_and_sd(popmis_small):
    _, imp, _ = popmis_small
    _, axes, table = plot_trace(imp)
    k = len(imp.incomplete_columns_)
    assert axes.shape == (k, 2)
    assert all(len(ax.get_lines()) == 2 for ax in axes.ravel())  # 2 chains
    col = imp.incomplete_columns_.index("sex")
    line = axes[col, 1].get_lines()[1]  # chain 2's SD
    assert np.allclose(line.get_ydata(), np.sqrt(imp.chain_var_[1, :, col]))
    sex = table[(table["column"] == "sex") & (table["chain"] == 1)]
    assert np.allclose(sex["mean"], imp.chain_mean_[0, :, col]) and sex["iteration"].tolist() == [1, 2, 3, 4, 5]
    assert len(trace_table(imp, ["popular"])) == 2 * 5


def test_convergence_table_matches_hand_computed_rhat_and_autocorrelation():
    # chains (1, 2, 3, 4) and (2, 3, 4, 5): split-R-hat at t = 4 is sqrt((0.25 + 5/3) / 0.5) (see
    # test_convergence.py); lag-1 autocorrelation at t = 3: deviations (-1, 0, 1) -> 0; at t = 4:
    # deviations (-1.5, -.5, .5, 1.5): (0.75 - 0.25 + 0.75) / 5 = 0.25.
    means = np.array([[1.0, 2, 3, 4], [2.0, 3, 4, 5]])[:, :, None]
    fake = SimpleNamespace(chain_mean_=means, chain_var_=np.ones_like(means), incomplete_columns_=["y"])
    table = convergence_table(fake)
    assert table["iteration"].tolist() == [1, 2, 3, 4]
    assert np.isnan(table["rhat"][:3]).all() and np.isnan(table["autocorrelation"][:2]).all()
    assert table["rhat"].iloc[3] == pytest.approx(np.sqrt((0.25 + 5 / 3) / 0.5), rel=1e-12)
    assert table["autocorrelation"].iloc[2] == pytest.approx(0.0, abs=1e-12)
    assert table["autocorrelation"].iloc[3] == pytest.approx(0.25, rel=1e-12)
    sd = convergence_table(fake, parameter="sd")
    assert sd["rhat"].iloc[3] == 1.0  # constant, agreeing chains


def test_convergence_table_on_a_fitted_imputer_has_one_row_per_column_and_iteration(popmis_small):
    _, imp, _ = popmis_small
    table = convergence_table(imp)
    assert len(table) == len(imp.incomplete_columns_) * 5
    last = table[table["iteration"] == 5]
    assert np.isfinite(last["rhat"]).all() and (last["rhat"] > 0.5).all()
    with pytest.raises(ValueError, match="not fitted"):
        convergence_table(MultilevelIterativeImputer())


# ----------------------------------------------------------------------------- observed vs imputed
def test_plot_imputed_overall_and_per_cluster_panels(popmis_small):
    data, imp, completed = popmis_small
    _, axes, table = plot_imputed(data, completed, ["popular", "sex"], groups="school", clusters=[1, 2])
    assert axes.shape == (2, 3)
    assert len(axes[0, 0].get_lines()) == 1 + 2  # observed density + one per completed set
    assert len(axes[1, 0].patches) == 2 * 2  # observed and imputed bars for categories 0 and 1
    obs = table[(table["column"] == "popular") & (table["cluster"] == "all") & (table["source"] == "observed")]
    assert obs["mean"].iloc[0] == pytest.approx(data["popular"].mean()) and obs["n"].iloc[0] == 1152
    miss = data["popular"].isna()
    imp2 = table[(table["column"] == "popular") & (table["cluster"] == 2) & (table["imputation"] == 2)]
    in2 = miss & (data["school"] == 2)
    assert imp2["mean"].iloc[0] == pytest.approx(completed[1].loc[in2, "popular"].mean())
    sex = table[(table["column"] == "sex") & (table["cluster"] == "all") & (table["source"] == "observed")]
    assert sex.set_index("category")["proportion"][1.0] == pytest.approx(data["sex"].mean())


def test_plot_imputed_from_the_imputer_equals_plot_from_completed_sets(popmis_small):
    data, imp, completed = popmis_small
    from_sets = plot_imputed(data, completed, ["popular", "sex"]).table
    from_imputer = plot_imputed(data, imp, ["popular", "sex"]).table
    pd.testing.assert_frame_equal(from_sets, from_imputer)


def test_plot_imputed_default_clusters_are_those_with_most_missing(popmis_small):
    data, _, completed = popmis_small
    _, axes, table = plot_imputed(data, completed, ["popular"], groups="school", n_clusters=2)
    counts = data["popular"].isna().groupby(data["school"]).sum()
    top = sorted(counts.sort_values(ascending=False, kind="stable").index[:2])
    assert [c for c in table["cluster"].unique() if c != "all"] == top
    with pytest.raises(ValueError, match="not among the cluster labels"):
        plot_imputed(data, completed, ["popular"], groups="school", clusters=[999])


# ----------------------------------------------------------------------------- ICC
def test_icc_matches_one_way_anova_by_hand():
    # clusters of 2 and 3: x = (1, 3 | 4, 6, 8). Means 2, 6; grand 4.4.
    # SSB = 2 (2 - 4.4)^2 + 3 (6 - 4.4)^2 = 11.52 + 7.68 = 19.2; MSB = 19.2
    # SSW = 2 + 8 = 10; MSW = 10 / 3; n0 = (5 - 13/5) / 1 = 2.4
    # ICC = (19.2 - 10/3) / (19.2 + 1.4 * 10/3)
    df = pd.DataFrame(
        {"g": [1, 1, 2, 2, 2], "x": [1.0, 3, 4, 6, 8], "w": [5.0, 5, 7, 7, np.nan], "f": ["a", "b", "c", "a", "b"]}
    )
    out = icc(df, "g")
    assert out["x"] == pytest.approx((19.2 - 10 / 3) / (19.2 + 1.4 * 10 / 3), rel=1e-12)
    assert out["w"] == 1.0  # constant within clusters: a cluster-level variable
    assert "f" not in out.index  # unordered categorical with 3 levels: skipped
    with pytest.raises(ValueError, match="unordered categorical"):
        icc(df, "g", columns=["f"])


def test_icc_table_averages_the_icc_of_the_completed_sets():
    df = pd.DataFrame({"g": [1, 1, 2, 2, 2], "x": [1.0, np.nan, 4, 6, 8]})
    sets = [df.fillna({"x": v}) for v in (2.0, 3.0, 5.0)]
    table = icc_table(df, sets, "g")
    per_set = [icc(s, "g")["x"] for s in sets]
    assert table.loc["x", "observed"] == pytest.approx(icc(df, "g")["x"])
    assert table.loc["x", "imputed"] == pytest.approx(np.mean(per_set))
    assert table.loc["x", "imputed_sd"] == pytest.approx(np.std(per_set, ddof=1))
    assert table.loc["x", "n_missing"] == 1


def test_icc_table_shows_single_level_imputation_shrinking_the_icc(popmis_small):
    # PMM without cluster information (cluster column coded 0) ignores the clustering: the ICC of the
    # imputed popularity falls to ~0.38 from the observed 0.56 (seen: SD across sets ~0.04, so the mean of
    # 2 sets has SE ~0.03 and the 0.1 margin is > 2.5 SE from the 0.18 drop); the random-effects
    # defaults keep it at ~0.59.
    data, _, _ = popmis_small
    pm = pd.DataFrame({"school": {"popular": 0, "sex": 0}})
    imp = MultilevelIterativeImputer(
        methods={"popular": PredictiveMeanMatching(), "sex": BayesianLogistic()},
        predictor_matrix=pm,
        n_imputations=2,
        max_iter=3,
        random_state=2,
    )
    completed = imp.fit_transform_all(data, groups="school")
    table = icc_table(data, completed, "school")
    assert table.loc["popular", "imputed"] < table.loc["popular", "observed"] - 0.1
    assert table.loc["texp", "observed"] == 1.0


def test_bad_groups_and_columns_are_clear_errors(tiny):
    with pytest.raises(ValueError, match="missing cluster labels"):
        icc(tiny, [1, 1, None, 2, 2])
    with pytest.raises(ValueError, match="columns not in the data"):
        md_pattern(tiny, ["a", "nope"])
    with pytest.raises(TypeError, match="DataFrame"):
        md_pattern([1, 2, 3])


# ----------------------------------------------------------------------------- hostile inputs
def test_duplicated_column_names_are_refused_by_every_data_diagnostic(tiny):
    data = tiny.set_axis(["a", "a", "c"], axis=1)
    for call in (lambda: md_pattern(data), lambda: plot_pattern(data), lambda: plot_corr(data)):
        with pytest.raises(ValueError, match=r"duplicated column names \['a'\]"):
            call()


@pytest.mark.parametrize("max_patterns", [0, -1, "a", 2.5, True])
def test_plot_pattern_max_patterns_must_be_a_positive_integer(tiny, max_patterns):
    with pytest.raises(ValueError, match="max_patterns must be a positive integer or None"):
        plot_pattern(tiny, max_patterns=max_patterns)


@pytest.mark.parametrize("n_clusters", [0, -1, 1.5])
def test_plot_imputed_n_clusters_must_be_a_positive_integer(popmis_small, n_clusters):
    data, _, completed = popmis_small
    with pytest.raises(ValueError, match="n_clusters must be a positive integer"):
        plot_imputed(data, completed, groups="school", n_clusters=n_clusters)


# --------------------------------------------------------------------------- hostile inputs


def _small_imputer(**params):
    return MultilevelIterativeImputer(**{"n_imputations": 2, "max_iter": 2, "random_state": 1, **params})


def test_plot_trace_without_imputed_columns_is_a_clear_error(six_clusters):
    import matplotlib

    matplotlib.use("Agg")
    imp = _small_imputer().fit(six_clusters.dropna(), groups="g")
    with pytest.raises(ValueError, match="imputed no column"):
        plot_trace(imp)


def test_a_plot_shows_once_in_jupyter_as_a_png_with_a_short_text_form(tiny):
    # Jupyter shows a cell's value by _repr_png_ and then every figure pyplot still has open: the
    # PNG closes the figure in pyplot, so the plot appears once; the text form is one short line.
    plot = plot_pattern(tiny)
    assert plot.figure.number in plt.get_fignums()
    png = plot._repr_png_()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    assert plot.figure.number not in plt.get_fignums()
    assert repr(plot) == f"DiagnosticPlot(1 Axes; table: {len(plot.table)} rows x {plot.table.shape[1]} columns)"
    plot.savefig(__import__("io").BytesIO(), format="png")  # still usable after display


def test_plot_imputed_takes_the_completed_datasets_alone(popmis_small):
    # the result of fit_transform_all carries its incomplete data and groups (as mice's mids): the same plot
    # as with the data and the imputations given separately
    data, imp, _ = popmis_small
    completed = imp.fit_transform_all(data, groups="school")
    alone = plot_imputed(completed, ["popular"], clusters=[1, 2])
    separate = plot_imputed(data, completed, ["popular"], groups="school", clusters=[1, 2])
    pd.testing.assert_frame_equal(alone.table, separate.table)
    with pytest.raises(TypeError, match="needs the imputations"):
        plot_imputed(data)
    completed.data = None
    with pytest.raises(ValueError, match="do not carry their incomplete data"):
        plot_imputed(completed)


def test_icc_table_takes_the_completed_datasets_alone(popmis_small):
    data, imp, _ = popmis_small
    completed = imp.fit_transform_all(data, groups="school")
    pd.testing.assert_frame_equal(icc_table(completed), icc_table(data, completed, "school"))
    pd.testing.assert_frame_equal(icc_table(completed, ["popular"]), icc_table(data, completed, "school", ["popular"]))
    with pytest.raises(TypeError, match="needs the imputations"):
        icc_table(data, groups="school")
