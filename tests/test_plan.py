"""The planner (skmlmi._plan): the plan is returned, nothing is set, and models are checked before any chain runs."""

import warnings

import numpy as np
import pandas as pd
import pytest

from skmlmi import MultilevelIterativeImputer
from skmlmi._clusters import Clusters
from skmlmi._frontdoor import Layout, WorkingData, detect_codecs, encode, read_frame
from skmlmi._plan import PlanSettings, make_plan
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
    assert type(plan.methods["y"]).__name__ == "RandomEffectsNormal"
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
