"""The IMPACT recovery study, shared by benchmarks/validate_impact.py, bench_two_stage.py and the reduced CI test.

One *amputation* (:func:`skmlmi.datasets.impact.load_impact_incomplete` with a seed) is
imputed by

* ``multilevel``: ``ct`` and ``pupil`` by RandomEffectsCategorical, ``hypots`` by
  TwoStageLogistic (the study coded -2; ``type`` is study-level and enters the
  meta-regression), or
* ``single-level``: Polytomous for ``ct`` and ``pupil``, BayesianLogistic for ``hypots``,
  the study ignored,

then ``mort ~ type + age + motor_score + pupil + ct + (1 | name)`` (LogisticMixedModel,
motor score reference 5/6 as lme4's reference table) is fitted to every completed dataset
and pooled with Rubin's rules. The result is the pooled estimate minus the complete-data
estimate in complete-data SEs, per term, and the random-intercept variance tau^2 of the
mort model (mean over the completed datasets, as mitml) minus the complete data's.

Two choices make the imputation models congenial with the analysis model:

* ``ct`` is imputed as *unordered*: the analysis uses treatment contrasts and ct III and
  IV/V carry the same risk (log-odds 0.81 and 0.83 against I/II); a cumulative-probit
  model forces a monotone relation and put the ctIII term about 2.5 SE off;
* the ct and pupil models get ``mort x predictor`` interaction columns
  (:func:`add_mort_interactions`): under a logistic analysis model, P(covariate | mort, X)
  is not a main-effects model in X; without them the pupil terms came out about 0.4 SE
  high on average.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from skmlmi import MultilevelIterativeImputer
from skmlmi.analysis import LogisticMixedModel
from skmlmi.conditional import BayesianLogistic, Polytomous, RandomEffectsCategorical
from skmlmi.conditional.two_stage import TwoStageLogistic
from skmlmi.datasets.impact import load_impact, load_impact_incomplete
from skmlmi.pooling import pool

FORMULA = "mort ~ type + age + motor_score + pupil + ct + (1 | name)"
TERMS = ["pupilNone", "pupilOne", "ctIII", "ctIV/V"]
TAU2 = "Intercept~~Intercept|name"
PREDICTORS = {
    "ct": ["type", "age", "motor_score", "pupil", "hypox", "hypots", "tsah", "edh", "mort"],
    "pupil": ["type", "age", "motor_score", "ct", "hypox", "hypots", "tsah", "edh", "mort"],
    "hypots": ["type", "age", "hypox", "mort", "pupil"],
}
KINDS = ("multilevel", "single-level")


def analysis_model() -> LogisticMixedModel:
    return LogisticMixedModel(FORMULA, reference_levels={"motor_score": "5/6"})


def add_mort_interactions(data: pd.DataFrame) -> list[str]:
    """Columns mort x (dummy-coded complete predictor), added in place; returns their names.

    With a logistic analysis model, P(pupil | mort, X) is not a main-effects multinomial logit
    in X (the term log{(1 + e^eta0(X)) / (1 + e^(eta0(X) + beta_k))} is nonlinear in X); the
    interactions let the covariate-mort association vary with X instead of biasing its average.
    """
    base = pd.get_dummies(data[["type", "age", "motor_score", "hypox", "tsah", "edh"]], drop_first=True, dtype=float)
    names = []
    for column in base.columns:
        data[f"mort_x_{column}"] = base[column] * data["mort"]
        names.append(f"mort_x_{column}")
    return names


def make_imputer(
    columns, kind: str, m: int, max_iter: int, seed: int, interactions=(), interaction_targets=("ct", "pupil")
) -> MultilevelIterativeImputer:
    """The imputer of one kind (``"multilevel"`` or ``"single-level"``) with the study's predictors."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    multilevel = kind == "multilevel"
    matrix = pd.DataFrame(0, index=columns, columns=columns)
    for target, predictors in PREDICTORS.items():
        matrix.loc[target, predictors] = 1
        matrix.loc[target, "name"] = -2 if multilevel else 0
    for target in interaction_targets:
        matrix.loc[target, list(interactions)] = 1
    if multilevel:
        methods = {"ct": RandomEffectsCategorical(), "pupil": RandomEffectsCategorical(), "hypots": TwoStageLogistic()}
    else:
        methods = {"ct": Polytomous(), "pupil": Polytomous(), "hypots": BayesianLogistic()}
    return MultilevelIterativeImputer(
        methods=methods, predictor_matrix=matrix, n_imputations=m, max_iter=max_iter, random_state=seed, n_jobs=1
    )


def incomplete_data(seed: int, ordered_ct: bool = False, mort_interactions: bool = True):
    """Amputation ``seed`` of IMPACT, ready for the imputer: (data, analysis columns, interaction columns)."""
    data = load_impact_incomplete(random_state=seed)
    if not ordered_ct:
        data["ct"] = data["ct"].cat.as_unordered()
    columns = list(data.columns)
    interactions = add_mort_interactions(data) if mort_interactions else []
    return data, columns, interactions


def complete_reference() -> dict:
    """The complete-data fit: estimates, SEs and tau^2."""
    fit = analysis_model().fit(load_impact())
    return {
        "coef": fit.coef_,
        "se": pd.Series(np.sqrt(np.diag(fit.cov_params_)), index=fit.coef_.index),
        "tau2": float(fit.variance_components_[TAU2]),
    }


def pooled_fit(datasets) -> tuple[pd.DataFrame, float]:
    """Rubin-pooled fixed effects and the mean random-intercept variance over the completed datasets."""
    fits = [analysis_model().fit(d) for d in datasets]
    table = pool(
        np.array([f.coef_.to_numpy() for f in fits]),
        np.array([f.cov_params_ for f in fits]),
        names=list(fits[0].coef_.index),
    )
    return table, float(np.mean([f.variance_components_[TAU2] for f in fits]))


def study_variance(data: pd.DataFrame, column: str, reference_level: str) -> float:
    """Between-study variance of logit P(column != reference_level) (``~ 1 + (1 | name)``)."""
    frame = pd.DataFrame({"name": data["name"], "indicator": (data[column] != reference_level).astype(int)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # intercept-only fits may stop at the optimiser's tolerance
        fit = LogisticMixedModel("indicator ~ 1 + (1 | name)").fit(frame)
    return float(fit.variance_components_[TAU2])


def one_amputation(
    seed: int,
    reference: dict,
    m: int = 5,
    max_iter: int = 5,
    kinds=KINDS,
    ordered_ct: bool = False,
    mort_interactions: bool = True,
    interaction_targets=("ct", "pupil"),
    study_variances: bool = False,
) -> list[dict]:
    """Impute amputation ``seed`` with each kind and compare the pooled analysis with the complete data's."""
    data, columns, interactions = incomplete_data(seed, ordered_ct, mort_interactions)
    rows = []
    for kind in kinds:
        imputer = make_imputer(data.columns, kind, m, max_iter, seed, interactions, interaction_targets)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # logged events (systematic clusters) are expected here
            sets = [d[columns] for d in imputer.fit_transform_all(data, groups="name")]
            table, tau2 = pooled_fit(sets)
        bias = (table["estimate"][TERMS] - reference["coef"][TERMS]) / reference["se"][TERMS]
        row = {"seed": seed, "kind": kind, **bias.to_dict(), "tau2 - complete": tau2 - reference["tau2"]}
        if study_variances:
            row["study variance ct"] = np.mean([study_variance(d, "ct", "I/II") for d in sets])
            row["study variance pupil"] = np.mean([study_variance(d, "pupil", "Both") for d in sets])
        rows.append(row)
    return rows
