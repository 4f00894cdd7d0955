"""Known-truth validation of three-level (nested) imputation: pupils in classes in schools.

Each replication simulates a complete three-level dataset, makes the pupil-level y and x, the
class-level c and the school-level s 30% missing (MAR), imputes it three ways and analyses every
completed dataset with the model that generated y,
``LinearMixedModel("y ~ x + c + s + (1 | school/class)")`` (REML, as lme4 fits ``school/class``):

* ``three-level``: the package defaults with both factors,
  ``MultilevelIterativeImputer(cluster_structure="nested").fit_transform_all(data, groups=["school", "class"])``;
* ``two-level``: the defaults clustered by school only (the class column dropped), as R's 2l methods
  with one cluster variable would;
* ``single-level``: the defaults without groups (both columns dropped);

and the complete data are analysed too. The two contrasts are expected to fail: a level the
imputation model ignores loses its variance in the imputed values (two-level imputation moves
the class variance of imputed y into the residual; single-level imputation also the school's).

Data-generating model
---------------------
S schools, C classes per school, P pupils per class (default 100 x 10 x 10, N = 10,000). Class
labels 0..C-1 repeat in every school (so ``school/class`` means class within school, as lme4's
``pastes``):

* x_isc = a_s + b_sc + w_isc, a ~ N(0, 0.10), b ~ N(0, 0.15), w ~ N(0, 0.75);
* s_s ~ N(0, 1), a school-level variable;
* c_sc = 0.5 s_s + g_s + h_sc, g ~ N(0, 0.20), h ~ N(0, 0.55), a class-level variable with a
  school part (0.45 of its variance 1.0 lies between schools);
* y_isc = 0.5 x_isc + 0.3 c_sc + 0.3 s_s + u_s + v_sc + e_isc, u ~ N(0, 0.10), v ~ N(0, 0.15),
  e ~ N(0, 0.75).

Truth of the analysis model: slopes of x 0.5, c 0.3, s 0.3, variances 0.10 (school), 0.15 (class:school),
0.75 (residual), ICCs 0.10 and 0.15 (each level's intercept variance over their sum and the
residual, as mitml). x has its own random effects with the same variance shares as y's residual
on purpose: then the regression of x on y is the same within classes, between classes and between
schools, and the default imputation model of x (random intercepts at each level, y as a
predictor, no cluster means) is exactly congenial; unequal shares would need cluster means of
y as predictors, which this design does not test.

Missingness: MAR in two patterns, as mice's ``ampute``: each row is a candidate for the pattern
"x missing" or "y missing" with probability 1/2 (independently of the data); a candidate of the
first loses x with P = expit(k + 1.0 * standardised y), of the second loses y with
P = expit(k' + 1.0 * standardised x), k and k' solving mean P = 0.6 among the candidates, so that
30% of x and 30% of y are missing, never both in one row, and each pattern's probability depends
only on what that pattern observes. Then whole classes lose c with P = expit(k'' + 1.0 *
standardised mean of the class's observed y), and whole schools lose s with the same rule on the
school's observed y (30% each): MAR, since the y values these use are observed.

Pooling: Rubin's rules (``skmlmi.pooling.pool_results``, Barnard-Rubin df with the analysis
model's complete-data ``df_resid_``, as MIPooler's default); variance components and ICCs
averaged over the imputations (as mitml's ``testEstimates(extra.pars = TRUE)``).

Criteria (issue 13's validity matrix; helpers and bounds from ``benchmarks/_validity.py``)
--------------------------------------------------------------------------------------
* bias: |E(pooled slope - complete-data slope)| below 5% of |truth| (paired in the replication:
  the imputation's own contribution; the bias against the truth is printed too, with its MC SE);
* variance components: |E(pooled - complete-data component)| / truth below 10% (paired: REML
  components are slightly biased in finite samples, and that is the estimator's, not the
  imputation's); ICC per level: |E(pooled - complete-data ICC)| below 0.02;
* coverage: the share of 95% Rubin intervals of the slope containing 0.5 lies in the 99%
  binomial acceptance region, family-wise (Bonferroni) over the coverage rows of the table;
* mc: the MC SE of each paired bias is at most a third of its bound (enough replications).

Run
---
``python benchmarks/validate_several_factors.py [--schools 100 --classes 10 --pupils 10]
[--reps 100] [--m 20] [--max-iter 10] [--jobs 2] [--rows rows.csv]``. Replications are seeded by
``SeedSequence([seed, schools, classes, pupils, replication])``: results do not depend on ``--jobs``.
``--summarise-only --rows rows.csv`` recomputes the table from saved per-replication rows.
The analyses dominate the cost: with 60 x 6 x 8 (N = 2880) and m = 10 one replication took 0.3-0.5 s
of imputation and about 3 s of analysis per method (20 replications, 112 s wall on 2 shared cores).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from _common import machine
from _validity import (
    BIAS_SHARE,
    ICC_BOUND,
    MISSING_SHARE,
    TAU2_SHARE,
    _calibrated,
    _mean_se,
    bias_bound,
    coverage_region,
)
from joblib import Parallel, delayed
from scipy import stats
from threadpoolctl import threadpool_limits

from skmlmi import MultilevelIterativeImputer
from skmlmi.analysis import LinearMixedModel
from skmlmi.pooling import pool_results

FORMULA = "y ~ x + c + s + (1 | school/class)"
#: The analysis model's slopes: of the pupil-level x, the class-level c and the school-level s.
SLOPES = {"x": 0.5, "c": 0.3, "s": 0.3}
#: Variance shares of school, class and pupil: of y's residual (the analysis model's components) and of x.
SHARES = {"school": 0.10, "class": 0.15, "residual": 0.75}
METHODS = ("three-level", "two-level", "single-level")
#: Analysis quantities: the name in the table, the name in ``variance_components_`` (None: the slope), the truth.
QUANTITIES = (
    *((name, None, slope) for name, slope in SLOPES.items()),
    ("var school", "Intercept~~Intercept|school", SHARES["school"]),
    ("var class:school", "Intercept~~Intercept|class:school", SHARES["class"]),
    ("var residual", "Residual~~Residual", SHARES["residual"]),
    ("ICC school", "ICC|school", SHARES["school"]),
    ("ICC class:school", "ICC|class:school", SHARES["class"]),
)


# =============================================================================== data
def simulate(n_schools: int, n_classes: int, n_pupils: int, rng: np.random.Generator) -> pd.DataFrame:
    """One complete dataset of the three-level design (see the module docstring)."""
    n_units = n_schools * n_classes
    school = np.repeat(np.arange(n_schools), n_classes * n_pupils)
    unit = np.repeat(np.arange(n_units), n_pupils)  # class within school, 0 .. S*C - 1

    def three_level() -> np.ndarray:
        return (
            rng.normal(0.0, np.sqrt(SHARES["school"]), n_schools)[school]
            + rng.normal(0.0, np.sqrt(SHARES["class"]), n_units)[unit]
            + rng.normal(0.0, np.sqrt(SHARES["residual"]), school.size)
        )

    x = three_level()
    s = rng.normal(0.0, 1.0, n_schools)
    c = (
        0.5 * s[np.arange(n_units) // n_classes]
        + rng.normal(0.0, np.sqrt(0.20), n_schools)[np.arange(n_units) // n_classes]
        + rng.normal(0.0, np.sqrt(0.55), n_units)
    )
    y = SLOPES["x"] * x + SLOPES["c"] * c[unit] + SLOPES["s"] * s[school] + three_level()
    return pd.DataFrame({"school": school, "class": unit % n_classes, "y": y, "x": x, "c": c[unit], "s": s[school]})


def ampute_rows(data: pd.DataFrame, rng: np.random.Generator, x: str = "x", y: str = "y") -> pd.DataFrame:
    """x and y each 30% missing, MAR in two patterns (x missing on y, y missing on x; never both)."""
    candidate_x = rng.random(len(data)) < 0.5  # the pattern a row may take, independent of the data
    within = MISSING_SHARE / 0.5
    names = (x, y)
    y, x = data[names[1]].to_numpy(dtype=float), data[names[0]].to_numpy(dtype=float)
    missing_x = np.zeros(len(data), dtype=bool)
    missing_y = np.zeros(len(data), dtype=bool)
    missing_x[candidate_x] = rng.random(candidate_x.sum()) < _calibrated(y[candidate_x], within)
    missing_y[~candidate_x] = rng.random((~candidate_x).sum()) < _calibrated(x[~candidate_x], within)
    out = data.copy()
    out.loc[missing_x, names[0]] = np.nan
    out.loc[missing_y, names[1]] = np.nan
    return out


def ampute(data: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """x and y as :func:`ampute_rows`; then c in 30% of the classes and s in 30% of the schools (MAR)."""
    out = ampute_rows(data, rng)
    # whole classes lose c, whole schools s, on the mean of their observed y (MAR)
    for column, unit in (("c", data["school"] * (data["class"].max() + 1) + data["class"]), ("s", data["school"])):
        codes, inverse = np.unique(unit.to_numpy(), return_inverse=True)
        observed_y = out["y"].to_numpy()
        seen = ~np.isnan(observed_y)
        mean_y = np.bincount(inverse[seen], observed_y[seen], len(codes)) / np.maximum(
            np.bincount(inverse[seen], minlength=len(codes)), 1
        )
        lose = rng.random(len(codes)) < _calibrated(mean_y, MISSING_SHARE)
        out.loc[lose[inverse], column] = np.nan
    return out


# =============================================================================== one replication
def impute_with(
    data: pd.DataFrame, factors: list, structure: str, use: str, m: int, max_iter: int, random_state: int
) -> list[pd.DataFrame]:
    """m completed datasets imputed by the defaults with every grouping factor (``use`` "all"), the first
    only ("first"; the others' columns dropped) or none ("none"), with the factors' columns put back."""
    params = {"n_imputations": m, "max_iter": max_iter, "random_state": random_state, "n_jobs": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if use == "all":
            sets = MultilevelIterativeImputer(cluster_structure=structure, **params).fit_transform_all(
                data, groups=factors
            )
        elif use == "first":
            first = MultilevelIterativeImputer(**params)
            sets = first.fit_transform_all(data.drop(columns=factors[1:]), groups=factors[0])
        else:
            sets = MultilevelIterativeImputer(**params).fit_transform_all(data.drop(columns=factors))
    return [completed.assign(**{f: data[f].to_numpy() for f in factors}) for completed in sets]


def impute(data: pd.DataFrame, method: str, m: int, max_iter: int, random_state: int) -> list[pd.DataFrame]:
    """m completed datasets of one method (three-level, two-level by school, single-level)."""
    use = {"three-level": "all", "two-level": "first", "single-level": "none"}[method]
    return impute_with(data, ["school", "class"], "nested", use, m, max_iter, random_state)


def pooled(fits: list):
    """Rubin's rules over fitted mixed models (Barnard-Rubin df with the complete-data ``df_resid_``) and their
    variance components averaged over the imputations (as mitml)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # m = 1 (the complete data): no between-imputation variance
        return pool_results(
            np.stack([f.coef_.to_numpy() for f in fits]),
            np.stack([f.cov_params_.to_numpy() for f in fits]),
            dfcom=fits[0].df_resid_,
            names=list(fits[0].coef_.index),
            variance_components=[f.variance_components_ for f in fits],
        )


def analyse(frames: list[pd.DataFrame], formula: str = FORMULA, slopes=SLOPES) -> dict:
    """Pooled slopes (Rubin; the complete data: its own t interval) and averaged variance components."""
    fits = [LinearMixedModel(formula).fit(frame) for frame in frames]
    results = pooled(fits)
    out = {}
    for name in slopes:
        out[name] = results.table.loc[name, ["estimate", "std_error", "conf_low", "conf_high"]].to_dict()
        if len(fits) == 1:  # one fit: Rubin's table is degenerate; use the fit's own t interval
            est, se = float(fits[0].coef_[name]), float(np.sqrt(fits[0].cov_params_.loc[name, name]))
            crit = stats.t.ppf(0.975, fits[0].df_resid_)
            out[name] = {"estimate": est, "std_error": se, "conf_low": est - crit * se, "conf_high": est + crit * se}
    out["components"] = results.variance_components
    return out


def seed_sequence(seed: int, n_schools: int, n_classes: int, n_pupils: int, rep: int) -> np.random.SeedSequence:
    """The replication's own seed: a function of the design and the replication only, not of the jobs."""
    return np.random.SeedSequence([seed, n_schools, n_classes, n_pupils, rep])


def _rows(result: dict, base: dict, quantities=QUANTITIES) -> list[dict]:
    rows = []
    for name, component, truth in quantities:
        row = {**base, "quantity": name, "truth": truth}
        if component is None:
            x = result[name]
            row.update(
                estimate=x["estimate"],
                std_error=x["std_error"],
                covered=bool(x["conf_low"] <= truth <= x["conf_high"]),
            )
        else:
            row.update(estimate=float(result["components"][component]), std_error=np.nan, covered=np.nan)
        rows.append(row)
    return rows


def _replicate(n_schools, n_classes, n_pupils, m, max_iter, seed, methods, rep):
    return replication(n_schools, n_classes, n_pupils, rep, m, max_iter, seed, methods)


def replication(
    n_schools: int,
    n_classes: int,
    n_pupils: int,
    rep: int,
    m: int = 20,
    max_iter: int = 10,
    seed: int = 2024,
    methods=METHODS,
) -> list[dict]:
    """One replication: rows (method x quantity) with the estimate, its SE and coverage (slope), and seconds."""
    with threadpool_limits(1):  # one BLAS thread: results do not depend on the machine's thread count
        data_seed, amputation_seed, imputation_seed = seed_sequence(seed, n_schools, n_classes, n_pupils, rep).spawn(3)
        complete = simulate(n_schools, n_classes, n_pupils, np.random.default_rng(data_seed))
        incomplete = ampute(complete, np.random.default_rng(amputation_seed))
        design = {"schools": n_schools, "classes": n_classes, "pupils": n_pupils, "rep": rep}
        random_state = int(imputation_seed.generate_state(1)[0] % (2**31 - 1))
        return compare_methods(
            complete, incomplete, design, methods, impute, analyse, QUANTITIES, m, max_iter, random_state
        )


def compare_methods(complete, incomplete, design, methods, impute, analyse, quantities, m, max_iter, random_state):
    """Rows of the complete-data analysis and of each method's imputations, timed (see :func:`replication`)."""
    start = time.perf_counter()
    rows = _rows(
        analyse([complete]), {**design, "method": "complete", "seconds": 0.0, "analysis_seconds": 0.0}, quantities
    )
    rows[0]["analysis_seconds"] = time.perf_counter() - start
    for method in methods:
        start = time.perf_counter()
        sets = impute(incomplete, method, m, max_iter, random_state)
        middle = time.perf_counter()
        result = analyse(sets)
        stop = time.perf_counter()
        base = {**design, "method": method, "seconds": middle - start, "analysis_seconds": stop - middle}
        rows += _rows(result, base, quantities)
    return rows


# =============================================================================== summary and criteria
def summarise(
    rows: list[dict] | pd.DataFrame, widen: float = 0.0, n_tests: int | None = None, quantities=QUANTITIES
) -> pd.DataFrame:
    """One row per method x quantity: truth, means, biases with MC SEs, coverage and the ok flags.

    The slope's bound is 5% of its truth (0.1 complete-data SE if the truth were under 2 SE);
    variance components are judged relative to their truth (10%), ICCs absolutely (0.02). With
    ``widen`` = t, a bias passes when it lies within bound + t MC SE (the reduced CI test's
    allowance for few replications); ``n_tests`` overrides the Bonferroni count of coverage rows.
    """
    frame = pd.DataFrame(rows)
    wide = frame.pivot_table(
        index=["quantity", "rep"], columns="method", values=["estimate", "std_error", "covered"], aggfunc="first"
    )
    methods = list(frame["method"].unique())  # in the order of the replication: complete first
    slopes = {name for name, component, _ in quantities if component is None}
    out = []
    for name, _, truth in quantities:
        part = wide.xs(name, level="quantity")
        complete = part["estimate"]["complete"]
        relative = name.startswith("var")
        scale = truth if relative else 1.0
        if name in slopes:
            bound = bias_bound(truth, float(part["std_error"]["complete"].mean()), name, "continuous")
        else:
            bound = TAU2_SHARE if relative else ICC_BOUND
        for method in methods:
            est = part["estimate"][method].dropna()
            row = {"method": method, "quantity": name, "R": len(est), "truth": truth, "mean": est.mean()}
            row["bias"], row["bias_mcse"] = _mean_se((est - truth) / scale)
            row["paired"], row["paired_mcse"] = (
                _mean_se((est - complete[est.index]) / scale) if method != "complete" else (np.nan, np.nan)
            )
            row["relative"] = relative
            row["bound"] = bound
            row["cov"] = part["covered"][method].dropna().astype(float).mean() if name in slopes else np.nan
            out.append(row)
    table = pd.DataFrame(out)
    coverage_rows = table["cov"].notna()
    regions = np.array([coverage_region(int(r), n_tests or int(coverage_rows.sum())) for r in table["R"]])
    table["cov_low"], table["cov_high"] = regions[:, 0], regions[:, 1]
    imputed = table["method"] != "complete"
    table["ok_bias"] = (table["paired"].abs() < table["bound"] + widen * table["paired_mcse"]).where(imputed)
    table["ok_cov"] = ((table["cov"] >= table["cov_low"]) & (table["cov"] <= table["cov_high"])).where(coverage_rows)
    table["ok_mc"] = (table["paired_mcse"] <= table["bound"] / 3.0).where(imputed)
    return table


def _with_se(value: float, se: float) -> str:
    if not np.isfinite(value):
        return ""
    return f"{value:+.4f}({se:.4f})" if np.isfinite(se) else f"{value:+.4f}"


def _flag(value) -> str:
    return "-" if pd.isna(value) else ("ok" if bool(value) else "FAIL")


def printable(table: pd.DataFrame) -> pd.DataFrame:
    """Estimates with their MC SEs side by side; relative biases for the variances; flags as ok / FAIL."""
    return pd.DataFrame(
        {
            "method": table["method"],
            "quantity": table["quantity"],
            "R": table["R"],
            "truth": table["truth"].map("{:.3f}".format),
            "mean": table["mean"].map("{:.4f}".format),
            "scale": np.where(table["relative"], "rel", "abs"),
            "bias vs truth(mcse)": [_with_se(v, s) for v, s in zip(table["bias"], table["bias_mcse"], strict=True)],
            "paired(mcse)": [_with_se(v, s) for v, s in zip(table["paired"], table["paired_mcse"], strict=True)],
            "bound": table["bound"].map("{:.3f}".format),
            "cov": table["cov"].map(lambda v: "" if np.isnan(v) else f"{v:.3f}"),
            "bias": table["ok_bias"].map(_flag),
            "coverage": table["ok_cov"].map(_flag),
            "mc": table["ok_mc"].map(_flag),
        }
    )


def run(replicate, reps: int, jobs: int, rows_path: Path | None) -> pd.DataFrame:
    """``replicate(rep)`` for every replication, in parallel; rows are written to ``rows_path`` as they arrive."""
    results = Parallel(n_jobs=jobs, return_as="generator_unordered")(delayed(replicate)(rep) for rep in range(reps))
    rows, writer, handle = [], None, None
    if rows_path is not None:
        handle = open(rows_path, "w", newline="")
    try:
        for done, chunk in enumerate(results, start=1):
            rows += chunk
            if handle is not None:
                if writer is None:
                    writer = csv.DictWriter(handle, fieldnames=list(chunk[0]))
                    writer.writeheader()
                writer.writerows(chunk)
                handle.flush()
            if done % max(1, reps // 10) == 0:
                print(f"  {done}/{reps} replications", file=sys.stderr, flush=True)
    finally:
        if handle is not None:
            handle.close()
    return pd.DataFrame(rows)


def report(rows: pd.DataFrame, table: pd.DataFrame, script: str, command: list, design: str, wall: float, jobs: int):
    """Print the machine, the command, the design, the seconds per replication and the table."""
    imputed = rows[rows["method"] != "complete"].drop_duplicates(["rep", "method"])
    per_rep = imputed.groupby("method", sort=False)[["seconds", "analysis_seconds"]].mean()
    print(machine())
    print(f"python benchmarks/{script} " + " ".join(command))
    coverage = table[table["cov"].notna()].iloc[0]
    print(
        f"{design}; {rows['rep'].nunique()} replications in {wall:.0f} s wall ({jobs} jobs)\n"
        f"95% coverage acceptance region (99% family-wise over {int(table['cov'].notna().sum())} rows): "
        f"[{coverage['cov_low']:.3f}, {coverage['cov_high']:.3f}]"
    )
    print("\nSeconds per replication (imputation with m imputations; the m analyses of its completed datasets):")
    print(per_rep.round(2).to_string())
    print(
        "\nbias vs truth = mean(pooled - truth); paired = mean(pooled - complete data, same replication); both "
        "relative to the truth (rel) for the variances, absolute (abs) for the slopes and ICCs; bound on |paired|: "
        f"{BIAS_SHARE:.0%} of a slope, {TAU2_SHARE:.0%} of a variance, {ICC_BOUND} for an ICC; cov: 95% CI "
        "coverage of a slope.\n"
    )
    with pd.option_context("display.width", 250, "display.max_rows", 100, "display.max_columns", 20):
        print(printable(table).to_string(index=False))


def add_options(parser: argparse.ArgumentParser, methods: tuple) -> None:
    """The options every known-truth study of several factors shares."""
    parser.add_argument("--reps", type=int, default=100, help="replications")
    parser.add_argument("--m", type=int, default=20, help="imputations")
    parser.add_argument("--max-iter", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2, help="replications in parallel (results do not depend on it)")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--methods", nargs="+", choices=methods, default=list(methods), help="imputations compared")
    parser.add_argument("--rows", type=Path, default=None, help="per-replication rows (CSV)")
    parser.add_argument("--summarise-only", action="store_true", help="recompute the table from --rows")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schools", type=int, default=100)
    parser.add_argument("--classes", type=int, default=10, help="classes per school")
    parser.add_argument("--pupils", type=int, default=10, help="pupils per class")
    add_options(parser, METHODS)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    replicate = partial(
        _replicate, args.schools, args.classes, args.pupils, args.m, args.max_iter, args.seed, tuple(args.methods)
    )
    rows = pd.read_csv(args.rows) if args.summarise_only else run(replicate, args.reps, args.jobs, args.rows)
    wall = time.perf_counter() - start
    first = rows.iloc[0]
    n_rows = int(first["schools"] * first["classes"] * first["pupils"])
    design = f"{first['schools']} schools x {first['classes']} classes x {first['pupils']} pupils (N = {n_rows})"
    command = sys.argv[1:] if argv is None else list(argv)
    report(rows, summarise(rows), "validate_several_factors.py", command, design, wall, args.jobs)


if __name__ == "__main__":
    main()
