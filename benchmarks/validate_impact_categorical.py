"""IMPACT recovery of the pupil and ct terms under RandomEffectsCategorical, with Monte Carlo errors.

For each amputation seed s (:func:`skmlmi.datasets.impact.load_impact_incomplete`, ``ct``
made unordered unless ``--ordered-ct``), the data are imputed (``ct`` and ``pupil`` by the
chosen categorical model, ``hypots`` by TwoStageLogistic, predictors as
``benchmarks/validate_impact.py``), ``mort ~ type + age + motor_score + pupil + ct + (1 | name)``
is fitted to every completed dataset and pooled with Rubin's rules, and the pooled estimate
is compared with the complete-data fit in units of the complete-data SE. Printed per term:
the mean difference over amputations, its SD and the Monte Carlo SE of the mean
(SD / sqrt(amputations)); the target is |mean| < 0.25.

Run: python benchmarks/validate_impact_categorical.py --model re --amputations 40 --m 5 --max-iter 5
(``--model``: ``re`` RandomEffectsCategorical, ``single`` Polytomous; ``--out file.csv`` keeps
the per-amputation differences). About 7 s per amputation with m = 5, max_iter = 5 on one core.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

from skmlmi import MultilevelIterativeImputer
from skmlmi.analysis import LogisticMixedModel
from skmlmi.conditional import Polytomous, RandomEffectsCategorical
from skmlmi.conditional.two_stage import TwoStageLogistic
from skmlmi.datasets.impact import load_impact, load_impact_incomplete
from skmlmi.pooling import pool

FORMULA = "mort ~ type + age + motor_score + pupil + ct + (1 | name)"
TERMS = ["pupilNone", "pupilOne", "ctIII", "ctIV/V"]
PREDICTORS = {
    "ct": ["type", "age", "motor_score", "pupil", "hypox", "hypots", "tsah", "edh", "mort"],
    "pupil": ["type", "age", "motor_score", "ct", "hypox", "hypots", "tsah", "edh", "mort"],
    "hypots": ["type", "age", "hypox", "mort", "pupil"],
}


def analysis_model() -> LogisticMixedModel:
    return LogisticMixedModel(FORMULA, reference_levels={"motor_score": "5/6"})


def add_mort_interactions(data: pd.DataFrame) -> list[str]:
    """Columns mort x (dummy-coded predictor) for the pupil model, added in place; returns their names.

    With a logistic analysis model, P(pupil | mort, X) is not a main-effects multinomial logit
    in X (the term log{(1 + e^eta0(X)) / (1 + e^(eta0(X) + beta_k))} is nonlinear in X); the
    interactions let the pupil-mort association vary with X instead of biasing its average.
    """
    base = pd.get_dummies(data[["type", "age", "motor_score", "hypox", "tsah", "edh"]], drop_first=True, dtype=float)
    names = []
    for column in base.columns:
        data[f"mort_x_{column}"] = base[column] * data["mort"]
        names.append(f"mort_x_{column}")
    return names


def make_imputer(columns, model: str, m: int, max_iter: int, seed: int, n_gibbs: int,
                 interactions=(), interaction_targets=("pupil",)) -> MultilevelIterativeImputer:
    matrix = pd.DataFrame(0, index=columns, columns=columns)
    for target, predictors in PREDICTORS.items():
        matrix.loc[target, predictors] = 1
        matrix.loc[target, "name"] = -2
    for target in interaction_targets:
        matrix.loc[target, list(interactions)] = 1
    categorical = {"re": lambda: RandomEffectsCategorical(n_gibbs=n_gibbs), "single": Polytomous}[model]
    methods = {"ct": categorical(), "pupil": categorical(), "hypots": TwoStageLogistic()}
    return MultilevelIterativeImputer(methods=methods, predictor_matrix=matrix, n_imputations=m,
                                      max_iter=max_iter, random_state=seed, n_jobs=1)


def one_amputation(seed: int, args, reference: pd.Series, se: pd.Series) -> tuple[pd.Series, float]:
    incomplete = load_impact_incomplete(random_state=seed)
    if not args.ordered_ct:
        incomplete["ct"] = incomplete["ct"].cat.as_unordered()
    columns = list(incomplete.columns)
    interactions = add_mort_interactions(incomplete) if args.mort_interactions else []
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # logged events (systematic clusters) are expected here
        sets = make_imputer(incomplete.columns, args.model, args.m, args.max_iter, seed,
                            args.n_gibbs, interactions, args.interaction_targets).fit_transform_all(incomplete,
                                                                                                    groups="name")
    sets = [d[columns] for d in sets]
    seconds = time.perf_counter() - start
    fits = [analysis_model().fit(d) for d in sets]
    table = pool(np.array([f.coef_.to_numpy() for f in fits]), np.array([f.cov_params_ for f in fits]),
                 names=list(fits[0].coef_.index))
    return (table["estimate"][TERMS] - reference[TERMS]) / se[TERMS], seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["re", "single"], default="re")
    parser.add_argument("--amputations", type=int, default=40)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--m", type=int, default=5)
    parser.add_argument("--max-iter", type=int, default=5)
    parser.add_argument("--n-gibbs", type=int, default=5)
    parser.add_argument("--ordered-ct", action="store_true")
    parser.add_argument("--mort-interactions", action="store_true",
                        help="add mort x predictor interactions to the pupil model")
    parser.add_argument("--interaction-targets", nargs="+", default=["pupil"], choices=["pupil", "ct"],
                        help="which imputation models get the mort interactions (default pupil)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    complete_fit = analysis_model().fit(load_impact())
    reference = complete_fit.coef_
    se = pd.Series(np.sqrt(np.diag(complete_fit.cov_params_)), index=reference.index)
    rows, seconds = [], []
    for seed in range(args.first_seed, args.first_seed + args.amputations):
        diff, sec = one_amputation(seed, args, reference, se)
        rows.append(diff.rename(seed))
        seconds.append(sec)
        print(f"amputation {seed}: {diff.round(2).to_dict()} ({sec:.1f} s imputation)", flush=True)
    frame = pd.DataFrame(rows)
    if args.out:
        frame.to_csv(args.out)
    summary = pd.DataFrame({"mean": frame.mean(), "sd": frame.std(ddof=1),
                            "mc_se": frame.std(ddof=1) / np.sqrt(len(frame))})
    print(f"\n{args.model}, ordered ct: {args.ordered_ct}, mort interactions: {args.mort_interactions}, "
          f"{len(frame)} amputations, m = {args.m}, "
          f"max_iter = {args.max_iter}, n_gibbs = {args.n_gibbs}; imputation {np.mean(seconds):.1f} s each")
    print(summary.round(3).to_string())


if __name__ == "__main__":
    main()
