"""Amputation study on real data with several grouping factors: egsingle (three levels) and insteval (crossed).

Each amputation makes two variables of a complete real dataset 30% missing (MAR), imputes them
with the package defaults and both grouping factors, and analyses every completed dataset with
the reference model of ../shared/reference/README.md:

* egsingle (7,230 rows: years in 1,721 children in 60 schools; mlmRev): ``math`` and ``black``
  amputed; ``math ~ year + female + black + hispanic + (1 | schoolid/childid)`` (``ri_reml``),
  imputed with ``groups=["schoolid", "childid"]`` (nested). ``black`` is a child's attribute
  (constant within children), so it goes missing for whole children and is imputed at the child
  level (with a random school intercept).
* insteval (73,421 ratings by 2,972 students of 1,128 lecturers; lme4): ``y`` (ratings 1-5) and
  ``service`` amputed; ``y ~ service + (1 | s) + (1 | d)`` (``crossed_reml``), imputed with
  ``groups=["s", "d"]`` (crossed).

Missingness (MAR, each pattern on what it observes): egsingle: the children are split at random
into two halves; in one, whole children lose ``black`` with P = expit(c + standardised mean of
the child's math); in the other, rows lose ``math`` with P = expit(c + standardised (year +
black)); c makes each share 0.6 of its half, so about 30% of each variable is missing. insteval:
as benchmarks/validate_several_factors.py's ``ampute_rows`` (``y`` on ``service`` and ``service``
on ``y``, never both in one row).

Criteria (the several-factors issue): over the amputations, for every fixed effect the mean of
(pooled - complete) / complete-data SE lies below 0.25 in absolute value, and every variance
component's mean of (pooled - complete) / complete lies within 10%. Both with their Monte Carlo
SE (printed), so that a pass is not luck of few amputations.

Variants of the imputation models (the analysis stays the reference's): ``--year-squared`` adds
year^2 (egsingle's growth is concave) as a predictor of the imputations only; ``--derived
NAME=EXPRESSION ...`` adds derived (passive) columns, recomputed from the current imputations, as
predictors (egsingle: ``black_year=black * year``, the slower growth of black children, -0.111 per
year with SE 0.014 when added to ``ri_reml``); ``--slopes [FACTOR]``
makes ``year`` a random-slope predictor of ``math`` (egsingle) or ``y`` and ``service`` random-slope
predictors of each other (insteval), the slope varying over FACTOR only (``random_slope_levels``) or,
bare, over every factor (:func:`slope_options`).

Run: ``python benchmarks/validate_real_several_factors.py [--datasets egsingle insteval] [--reps 50]
[--m 20] [--max-iter 10] [--jobs 1] [--rows rows.csv] [--year-squared] [--slopes [FACTOR]]``.
Amputation r is seeded by ``SeedSequence([seed, dataset index, r])``, the same amputations for
every variant.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from _common import machine
from _validity import MISSING_SHARE, _calibrated
from threadpoolctl import threadpool_limits
from validate_several_factors import ampute_rows, pooled, run

from skmlmi import MultilevelIterativeImputer
from skmlmi.analysis import LinearMixedModel
from skmlmi.datasets import load_egsingle, load_insteval

#: dataset -> (loader, analysis model, grouping factors, cluster_structure)
DATASETS = {
    "egsingle": (
        load_egsingle,
        "math ~ year + female + black + hispanic + (1 | schoolid/childid)",
        ["schoolid", "childid"],
        "nested",
    ),
    "insteval": (load_insteval, "y ~ service + (1 | s) + (1 | d)", ["s", "d"], "crossed"),
}
SE_BOUND, COMPONENT_BOUND = 0.25, 0.10


def ampute_egsingle(data: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """``black`` missing for whole children, ``math`` for rows, in two halves of the children (MAR)."""
    child = data["childid"].cat.codes.to_numpy()
    n_children = child.max() + 1
    black_half = rng.random(n_children) < 0.5
    within = MISSING_SHARE / 0.5
    math = data["math"].to_numpy(dtype=float)
    black = data["black"].to_numpy(dtype=float)
    child_math = np.bincount(child, math, n_children) / np.bincount(child, minlength=n_children)
    lose_black = np.zeros(n_children, dtype=bool)
    lose_black[black_half] = rng.random(black_half.sum()) < _calibrated(child_math[black_half], within)
    rows_b = ~black_half[child]
    lose_math = np.zeros(len(data), dtype=bool)
    score = data["year"].to_numpy(dtype=float) + black
    lose_math[rows_b] = rng.random(rows_b.sum()) < _calibrated(score[rows_b], within)
    out = data.copy()
    out.loc[lose_black[child], "black"] = np.nan
    out.loc[lose_math, "math"] = np.nan
    return out


def ampute(name: str, data: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    if name == "egsingle":
        return ampute_egsingle(data, rng)
    return ampute_rows(data, rng, x="service", y="y")


def analyse(frames: list[pd.DataFrame], formula: str) -> tuple[pd.DataFrame, pd.Series]:
    """Pooled fixed effects (Rubin) and variance components averaged over the imputations (as mitml)."""
    results = pooled([LinearMixedModel(formula).fit(frame) for frame in frames])
    return results.table, results.variance_components


def amputation(
    name: str,
    complete: pd.DataFrame,
    reference,
    m: int,
    max_iter: int,
    seed: int,
    rep: int,
    auxiliary=None,
    options: dict | None = None,
):
    """One amputation: rows (term or component) with the pooled and the complete-data values.

    ``auxiliary``: a function of the complete data giving columns added to the incomplete data as
    predictors of the imputation models only (complete, computed before amputation from complete
    columns only). ``options``: further parameters of the imputer (see :func:`slope_options`)."""
    _, formula, groups, structure = DATASETS[name]
    table, components = reference
    with threadpool_limits(1):
        amputation_seed, imputation_seed = np.random.SeedSequence([seed, list(DATASETS).index(name), rep]).spawn(2)
        incomplete = ampute(name, complete, np.random.default_rng(amputation_seed))
        if auxiliary is not None:
            incomplete = incomplete.assign(**auxiliary(complete))
        for derived in (options or {}).get("derived", {}):  # computed by the imputer from the current imputations
            incomplete[derived] = np.nan
        random_state = int(imputation_seed.generate_state(1)[0] % (2**31 - 1))
        imputer = MultilevelIterativeImputer(
            n_imputations=m,
            max_iter=max_iter,
            random_state=random_state,
            cluster_structure=structure,
            n_jobs=1,
            **(options or {}),
        )
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sets = imputer.fit_transform_all(incomplete, groups=groups)
        middle = time.perf_counter()
        pooled, pooled_components = analyse(list(sets), formula)
        stop = time.perf_counter()
    base = {"dataset": name, "rep": rep, "seconds": middle - start, "analysis_seconds": stop - middle}
    rows = [
        {**base, "kind": "fixed", "name": term, "value": (pooled.loc[term, "estimate"] - row["estimate"])
         / row["std_error"]}
        for term, row in table.iterrows()
    ]  # fmt: skip
    rows += [
        {**base, "kind": "component", "name": key, "value": pooled_components[key] / value - 1.0}
        for key, value in components.items()
        if not key.startswith("ICC")
    ]
    return rows


def _amputate(name, complete, reference, m, max_iter, seed, auxiliary, options, rep):
    return amputation(name, complete, reference, m, max_iter, seed, rep, auxiliary, options)


def slope_options(name: str, factor: str | None, code: int) -> dict:
    """Random slopes in the imputation models (``code`` 2, or 4 with the predictor's cluster means), varying over
    ``factor`` only (``random_slope_levels``; None: over every factor).

    * insteval: ``y`` and ``service`` each a random-slope predictor of the other. The complete data have a
      random slope of service over lecturers (likelihood ratio about 400 against ``crossed_reml``), which an
      intercept-only imputation of y given service (and of service given y) flattens.
    * egsingle: ``year`` a random-slope predictor of ``math`` (the reference's ``rs`` models: growth varies
      between children and schools).
    """
    pairs = {"insteval": [("service", "y"), ("y", "service")], "egsingle": [("year", "math")]}[name]
    matrix = pd.DataFrame({predictor: {target: code} for predictor, target in pairs})
    levels = None if factor is None else {predictor: [factor] for predictor, _ in pairs}
    return {"predictor_matrix": matrix, "random_slope_levels": levels}


def derived_options(items: list[str], columns: list[str]) -> dict:
    """``derived`` from ``NAME=EXPRESSION`` items, and under ``inputs`` the data's columns each expression reads."""
    derived = dict(item.split("=", 1) for item in items)
    inputs = {name: [c for c in columns if re.search(rf"\b{re.escape(c)}\b", expression)]
              for name, expression in derived.items()}  # fmt: skip
    return {"derived": derived, "inputs": inputs}


def _year_squared(data: pd.DataFrame) -> dict:
    """egsingle's growth is concave in year (year^2: -0.039, SE 0.004, in the ri_reml model with it added)."""
    return {"year2": data["year"] ** 2}


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and MC SE of each term's standardised difference and each component's relative difference."""
    grouped = rows.groupby(["dataset", "kind", "name"], sort=False)["value"]
    table = grouped.agg(R="count", mean="mean", sd="std").reset_index()
    table["mcse"] = table["sd"] / np.sqrt(table["R"])
    table["bound"] = np.where(table["kind"] == "fixed", SE_BOUND, COMPONENT_BOUND)
    table["ok"] = table["mean"].abs() < table["bound"]
    return table.drop(columns="sd")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--reps", type=int, default=50, help="amputations per dataset")
    parser.add_argument("--m", type=int, default=20)
    parser.add_argument("--max-iter", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--rows", type=Path, default=None, help="per-amputation rows (CSV)")
    parser.add_argument(
        "--year-squared", action="store_true", help="egsingle: year^2 as an auxiliary predictor of the imputations"
    )
    parser.add_argument(
        "--slopes",
        nargs="?",
        const="both",
        default=None,
        help="random slopes in the imputation models (see slope_options) over this factor (every factor if bare)",
    )
    parser.add_argument("--slope-code", type=int, choices=(2, 4), default=2, help="with --slopes: code 2 or 4")
    parser.add_argument(
        "--derived",
        nargs="+",
        default=[],
        metavar="NAME=EXPRESSION",
        help="derived (passive) columns added as predictors of the imputations, e.g. 'black_year=black * year'",
    )
    args = parser.parse_args(argv)
    frames = []
    print(machine())
    print("python benchmarks/validate_real_several_factors.py " + " ".join(sys.argv[1:] if argv is None else argv))
    for name in args.datasets:
        loader, formula, _, _ = DATASETS[name]
        complete = loader()
        start = time.perf_counter()
        reference = analyse([complete], formula)
        auxiliary = _year_squared if args.year_squared and name == "egsingle" else None
        options = {}
        if args.slopes is not None:
            options = slope_options(name, None if args.slopes == "both" else args.slopes, args.slope_code)
        if args.derived:
            options.update(derived_options(args.derived, list(complete.columns)))
            circular = {name: {c: 0 for c in inputs} for name, inputs in options.pop("inputs").items()}
            matrix = pd.DataFrame(circular)  # not a predictor of its own inputs (mice's passive imputation)
            given = options.get("predictor_matrix")
            options["predictor_matrix"] = matrix if given is None else given.combine_first(matrix)
        one = partial(_amputate, name, complete, reference, args.m, args.max_iter, args.seed, auxiliary, options)
        path = None if args.rows is None else args.rows.with_name(f"{args.rows.stem}_{name}{args.rows.suffix}")
        rows = run(one, args.reps, args.jobs, path)
        seconds = rows[["seconds", "analysis_seconds"]].drop_duplicates().mean()
        print(
            f"{name}: {len(complete)} rows, {args.reps} amputations in {time.perf_counter() - start:.0f} s wall; "
            f"per amputation {seconds['seconds']:.1f} s imputing (m = {args.m}) and "
            f"{seconds['analysis_seconds']:.1f} s analysing"
        )
        frames.append(rows)
    table = summarise(pd.concat(frames, ignore_index=True))
    print(
        f"\nfixed: mean (pooled - complete) / complete SE, bound {SE_BOUND}; component: mean (pooled - complete) / "
        f"complete, bound {COMPONENT_BOUND:.0%}; mcse: Monte Carlo SE of the mean\n"
    )
    with pd.option_context("display.width", 200, "display.float_format", "{:+.4f}".format):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
