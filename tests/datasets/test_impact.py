"""IMPACT and IPDNa loaders, and the (reduced) IMPACT recovery validation of the multilevel imputation."""

import warnings

import numpy as np
import pandas as pd

from skmlmi.datasets.impact import load_impact, load_impact_incomplete, load_ipdna


def test_load_impact_has_r_levels_and_no_missing_values():
    data = load_impact()
    assert data.shape == (11022, 11) and data["name"].nunique() == 15
    assert not data.isna().any().any()  # pupil "None" is a level, not a missing value
    assert list(data["motor_score"].cat.categories) == ["1/2", "3", "4", "5/6"]
    assert list(data["pupil"].cat.categories) == ["Both", "None", "One"]
    assert list(data["ct"].cat.categories) == ["I/II", "III", "IV/V"] and data["ct"].cat.ordered
    assert list(data["type"].cat.categories) == ["OBS", "RCT"]
    assert int((data["pupil"] == "None").sum()) == 2296
    assert data.groupby("name", observed=True)["type"].nunique().max() == 1  # study-level design


def test_load_impact_incomplete_is_seeded_and_has_the_stated_patterns():
    a = load_impact_incomplete(random_state=5)
    b = load_impact_incomplete(random_state=5)
    pd.testing.assert_frame_equal(a, b)
    complete = load_impact()
    by_study = a.isna().groupby(a["name"])
    assert int(by_study["ct"].all().sum()) == 3
    assert int(by_study["hypots"].all().sum()) == 2
    assert int(by_study["pupil"].all().sum()) == 0 and a["pupil"].isna().mean() > 0.1
    # ct is also sporadically missing outside its 3 systematic studies
    sporadic = by_study["ct"].mean()
    assert ((sporadic > 0) & (sporadic < 1)).sum() == 12
    # hypots only systematically: every study either complete or entirely missing
    assert set(by_study["hypots"].mean().unique()) <= {0.0, 1.0}
    # the values left are the complete data's
    kept = a["ct"].notna()
    assert (a.loc[kept, "ct"] == complete.loc[kept, "ct"]).all()
    assert not a[["age", "motor_score", "mort", "type", "name"]].isna().any().any()
    assert not load_impact_incomplete(random_state=6).equals(a)


def test_load_ipdna_has_systematically_missing_bnp():
    data = load_ipdna()
    assert data.shape == (11685, 10) and data["centre"].nunique() == 28
    assert int(data["bnp"].isna().sum()) == 8931
    assert int(data["bnp"].isna().groupby(data["centre"]).all().sum()) == 10


# --------------------------------------------------------------------------- reduced IMPACT recovery
def _study_variance(data, column, value):
    from skmlmi.analysis import LogisticMixedModel

    frame = pd.DataFrame({"name": data["name"], "indicator": (data[column] != value).astype(int)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = LogisticMixedModel("indicator ~ 1 + (1 | name)").fit(frame)
    return float(fit.variance_components_["Intercept~~Intercept|name"])


def test_impact_recovery_reduced():
    # Reduced version of benchmarks/validate_impact.py (20 amputations, m = 20 there): one
    # amputation, m = 3, max_iter = 4. With one amputation the pooled - complete difference of
    # a term has SD ~0.75 complete-data SE (fraction of missing information ~0.35; seen over 4
    # amputations), so the CI bound is 2 SE per term (an ordered-probit imputation of ct, which
    # is misspecified here, misses ctIII by 2.2 SE); the 0.25 SE criterion on the mean over 20
    # amputations is the benchmark's. Single-level imputation must shrink the between-study
    # variances of the imputed ct and pupil (complete 0.178 and 0.190) by more than 10 % and below
    # the multilevel imputation's (with m = 3 the multilevel value is noisy: the draws of Psi from
    # 12 observed studies are wide; the benchmark compares the distances to the truth over 20 amputations).
    from skmlmi import MultilevelIterativeImputer
    from skmlmi.analysis import LogisticMixedModel
    from skmlmi.conditional import BayesianLogistic, Polytomous, RandomEffectsCategorical
    from skmlmi.conditional.two_stage import TwoStageLogistic
    from skmlmi.pooling import pool

    formula = "mort ~ type + age + motor_score + pupil + ct + (1 | name)"
    terms = ["pupilNone", "pupilOne", "ctIII", "ctIV/V"]
    complete = load_impact()
    reference = LogisticMixedModel(formula, reference_levels={"motor_score": "5/6"}).fit(complete)
    se = pd.Series(np.sqrt(np.diag(reference.cov_params_)), index=reference.coef_.index)
    incomplete = load_impact_incomplete(random_state=1)
    incomplete["ct"] = incomplete["ct"].cat.as_unordered()  # congenial with the treatment contrasts
    columns = list(incomplete.columns)
    predictors = {
        "ct": ["type", "age", "motor_score", "pupil", "hypox", "hypots", "tsah", "edh", "mort"],
        "pupil": ["type", "age", "motor_score", "ct", "hypox", "hypots", "tsah", "edh", "mort"],
        "hypots": ["type", "age", "hypox", "mort", "pupil"],
    }
    results = {}
    for multilevel in (True, False):
        matrix = pd.DataFrame(0, index=columns, columns=columns)
        for target, names in predictors.items():
            matrix.loc[target, names] = 1
            matrix.loc[target, "name"] = -2 if multilevel else 0
        methods = ({"ct": RandomEffectsCategorical(), "pupil": RandomEffectsCategorical(), "hypots": TwoStageLogistic()}
                   if multilevel else {"ct": Polytomous(), "pupil": Polytomous(), "hypots": BayesianLogistic()})
        imp = MultilevelIterativeImputer(methods=methods, predictor_matrix=matrix, n_imputations=3, max_iter=4,
                                         random_state=1, n_jobs=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sets = imp.fit_transform_all(incomplete, groups="name")
        assert all(not s[["ct", "pupil", "hypots"]].isna().any().any() for s in sets)
        if multilevel:
            fits = [LogisticMixedModel(formula, reference_levels={"motor_score": "5/6"}).fit(s) for s in sets]
            table = pool(np.array([f.coef_.to_numpy() for f in fits]), np.array([f.cov_params_ for f in fits]),
                         names=list(fits[0].coef_.index))
            bias = (table["estimate"][terms] - reference.coef_[terms]) / se[terms]
            assert (bias.abs() < 2.0).all(), bias
        results[multilevel] = [np.mean([_study_variance(s, c, v) for s in sets])
                               for c, v in (("ct", "I/II"), ("pupil", "Both"))]
    truth = [_study_variance(complete, "ct", "I/II"), _study_variance(complete, "pupil", "Both")]
    for k in range(2):
        assert results[False][k] < 0.9 * truth[k], (results, truth)  # single level shrinks it
        assert results[True][k] > results[False][k], (results, truth)  # multilevel keeps more of it
