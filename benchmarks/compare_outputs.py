"""Old code against new code on the same machine, in one run: are the outputs identical?

A refactoring that should not change behaviour is checked by running both versions of the
package on the same seeded cases and comparing every output exactly (no tolerance):

* popmis (school as groups): the default models, and explicit ones (PredictiveMeanMatching
  ignoring the schools, RandomEffectsNormal and RandomEffectsPMM with a random slope);
* IMPACT (studies as groups, ct/pupil/hypots removed sporadically and in whole studies):
  the default models, and explicit multilevel (RandomEffectsCategorical, TwoStageLogistic)
  and single-level (Polytomous, BayesianLogistic) models with the study's predictors;
* popmis with parallel chains, ``continue_fit`` and ``transform_all`` of new data;
* obesity (Weight missing not at random): the default model, HeckmanSelection with Time
  as exclusion restriction, and RandomEffectsNormal;
* several grouping factors, seeded simulations: three levels (school/class, with class- and
  school-level variables) and crossed factors, the default models (commits before several
  factors report that the old side cannot run these two);

each with m = 3 and a few iterations. Per case it compares every cell of every completed
dataset (values, dtypes, index and columns), the chain means and variances, the logged
events and warnings, a ``transform`` of the data with the stored draws, and the pooled
tables of an analysis (Rubin's rules through ``pool``/``MIPooler``/``pool_scalar``).

Usage::

    python benchmarks/compare_outputs.py                    # against the merge-base with main (or HEAD~1)
    python benchmarks/compare_outputs.py --against 2337d9a  # any commit or ref

The old code is checked out into a temporary ``git worktree add --detach``; each side runs
in its own child process (``PYTHONPATH=<tree> python compare_outputs.py --emit out.pkl``)
with the same cases (this file's, so both sides run exactly the same script) and one BLAS
thread. The new side is this file's working tree, uncommitted changes included. Prints a
table of case x outcome and exits 1 when anything differs, 2 when a side fails to run.

The cases keep to the public API the package had at 2337d9a, so older commits run them too
(except the two of several grouping factors).
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
M = 3
MAX_ITER = 3

POPMIS_ANALYSIS = "popular ~ sex + texp + (1 | school)"
IMPACT_ANALYSIS = "mort ~ type + age + motor_score + pupil + ct + (1 | name)"
IMPACT_PREDICTORS = {
    "ct": ["type", "age", "motor_score", "pupil", "hypox", "hypots", "tsah", "edh", "mort"],
    "pupil": ["type", "age", "motor_score", "ct", "hypox", "hypots", "tsah", "edh", "mort"],
    "hypots": ["type", "age", "hypox", "mort", "pupil"],
}


# ---------------------------------------------------------------------------- the cases
# Each case returns a dict of named outputs (DataFrames, Series, arrays, lists, scalars).


def _imputer_outputs(imputer, data, groups) -> dict:
    """Fit ``imputer``, and collect what it produced."""
    sets = imputer.fit_transform_all(data, groups=groups)
    out = {f"dataset[{i}]": frame for i, frame in enumerate(sets)}
    out["chain_mean_"] = np.asarray(imputer.chain_mean_)
    out["chain_var_"] = np.asarray(imputer.chain_var_)
    out["logged_events_"] = imputer.logged_events_.reset_index(drop=True)
    out["transform"] = imputer.transform(data)
    out["models"] = pd.Series({column: repr(model) for column, model in imputer.methods_.items()}, dtype=object)
    return out


def _popmis_data():
    from skmlmi.datasets import load_popmis

    return load_popmis()[["school", "popular", "sex", "texp"]]


def _popmis(methods=None, matrix=None) -> dict:
    from skmlmi import MIPooler, MultilevelIterativeImputer
    from skmlmi.analysis import LinearMixedModel

    data = _popmis_data()

    def imputer():
        return MultilevelIterativeImputer(
            methods=methods, predictor_matrix=matrix, n_imputations=M, max_iter=MAX_ITER, random_state=2022, n_jobs=1
        )

    out = _imputer_outputs(imputer(), data, "school")
    pooler = MIPooler(imputer(), LinearMixedModel(POPMIS_ANALYSIS), n_jobs=1).fit(data, groups="school")
    out["pooled table"] = pooler.results_.table
    out["pooled variance components"] = pooler.results_.variance_components
    return out


def case_popmis_default() -> dict:
    return _popmis()


def case_popmis_pmm_ignoring_schools() -> dict:
    from skmlmi.conditional import PredictiveMeanMatching

    return _popmis({"popular": PredictiveMeanMatching()}, {"school": {"popular": 0}})


def _slope():
    return {"school": {"popular": -2}, "sex": {"popular": 2}, "texp": {"popular": 1}}


def case_popmis_random_effects_normal() -> dict:
    from skmlmi.conditional import RandomEffectsNormal

    return _popmis({"popular": RandomEffectsNormal()}, _slope())


def case_popmis_random_effects_pmm() -> dict:
    from skmlmi.conditional import RandomEffectsPMM

    return _popmis({"popular": RandomEffectsPMM()}, _slope())


def case_popmis_parallel_continued() -> dict:
    """Two chains in parallel, continued by two iterations, then new data imputed by every chain."""
    from skmlmi import MultilevelIterativeImputer

    data = _popmis_data()
    imputer = MultilevelIterativeImputer(n_imputations=M, max_iter=MAX_ITER, random_state=7, n_jobs=2)
    out = _imputer_outputs(imputer, data, "school")
    imputer.continue_fit(2)
    out["continued chain_mean_"] = np.asarray(imputer.chain_mean_)
    out["continued logged_events_"] = imputer.logged_events_.reset_index(drop=True)
    new_data = data.iloc[::4].reset_index(drop=True)
    out.update({f"transform_all[{i}]": frame for i, frame in enumerate(imputer.transform_all(new_data))})
    return out


def _impact(kind: str) -> dict:
    from skmlmi import MultilevelIterativeImputer
    from skmlmi.analysis import LogisticMixedModel
    from skmlmi.conditional import BayesianLogistic, Polytomous, RandomEffectsCategorical
    from skmlmi.conditional.two_stage import TwoStageLogistic
    from skmlmi.datasets import load_impact_incomplete
    from skmlmi.pooling import pool

    data = load_impact_incomplete(2022)
    data["ct"] = data["ct"].cat.as_unordered()  # as the demo and benchmarks/_impact.py
    methods = matrix = None
    if kind != "default":
        columns = list(data.columns)
        matrix = pd.DataFrame(0, index=columns, columns=columns)
        for target, predictors in IMPACT_PREDICTORS.items():
            matrix.loc[target, predictors] = 1
            matrix.loc[target, "name"] = -2 if kind == "multilevel" else 0
        if kind == "multilevel":
            methods = {
                "ct": RandomEffectsCategorical(),
                "pupil": RandomEffectsCategorical(),
                "hypots": TwoStageLogistic(),
            }
        else:
            methods = {"ct": Polytomous(), "pupil": Polytomous(), "hypots": BayesianLogistic()}
    imputer = MultilevelIterativeImputer(
        methods=methods, predictor_matrix=matrix, n_imputations=M, max_iter=MAX_ITER, random_state=2022, n_jobs=1
    )
    out = _imputer_outputs(imputer, data, "name")
    # The analysis on the m completed datasets, pooled with ``pool`` (MIPooler is popmis's).
    fits = [
        LogisticMixedModel(IMPACT_ANALYSIS, reference_levels={"motor_score": "5/6"}).fit(out[f"dataset[{i}]"])
        for i in range(M)
    ]
    out["pooled table"] = pool(
        np.array([f.coef_.to_numpy() for f in fits]),
        np.array([np.asarray(f.cov_params_) for f in fits]),
        names=list(fits[0].coef_.index),
    )
    out["tau2 per imputation"] = np.array([float(f.variance_components_.iloc[0]) for f in fits])
    return out


def case_impact_default() -> dict:
    return _impact("default")


def case_impact_multilevel() -> dict:
    return _impact("multilevel")


def case_impact_single_level() -> dict:
    return _impact("single-level")


def _obesity(model, code) -> dict:
    from skmlmi import MultilevelIterativeImputer
    from skmlmi.datasets import load_obesity
    from skmlmi.pooling import pool_scalar

    data = load_obesity()
    methods = None if model is None else {"Weight": model}
    matrix = None if code is None else {"Time": {"Weight": code}}
    imputer = MultilevelIterativeImputer(
        methods=methods, predictor_matrix=matrix, n_imputations=M, max_iter=MAX_ITER, random_state=2024, n_jobs=1
    )
    out = _imputer_outputs(imputer, data, "Cluster")
    sets = [out[f"dataset[{i}]"] for i in range(M)]
    out["pooled mean weight"] = pool_scalar(
        [s["Weight"].mean() for s in sets], [s["Weight"].var(ddof=1) / len(s) for s in sets]
    )
    return out


def case_obesity_default() -> dict:
    return _obesity(None, None)


def case_obesity_heckman() -> dict:
    from skmlmi.conditional import HeckmanSelection

    return _obesity(HeckmanSelection(), -3)


def case_obesity_random_effects_normal() -> dict:
    from skmlmi.conditional import RandomEffectsNormal

    return _obesity(RandomEffectsNormal(), 1)


def _several_factors_data(structure: str) -> tuple[pd.DataFrame, list]:
    """A seeded three-level (30 schools x 4 classes x 8 pupils) or crossed (60 x 20 units) dataset: pupil-level
    x and y, and for three levels a class-level c and category k and a school-level s, each partly missing."""
    rng = np.random.default_rng(7)
    if structure == "nested":
        school, unit = np.repeat(np.arange(30), 32), np.repeat(np.arange(120), 8)
        data = pd.DataFrame({"school": school, "class": unit % 4})
        data["s"] = rng.normal(size=30)[school]
        data["c"] = (0.5 * rng.normal(size=30)[np.arange(120) // 4] + rng.normal(size=120))[unit]
        data["k"] = pd.Categorical(np.array(["a", "b", "c"])[rng.integers(0, 3, 120)][unit])
        data.loc[np.isin(unit, rng.choice(120, 20, replace=False)), ["c", "k"]] = np.nan
        data.loc[np.isin(school, rng.choice(30, 4, replace=False)), "s"] = np.nan
        groups = ["school", "class"]
    else:
        a, b = rng.integers(0, 60, 1200), rng.integers(0, 20, 1200)
        data = pd.DataFrame({"a": a, "b": b})
        groups = ["a", "b"]
    n = len(data)
    data["x"] = rng.normal(size=n) + rng.normal(size=int(data[groups[0]].max()) + 1)[data[groups[0]]]
    data["y"] = (
        0.5 * data["x"] + rng.normal(size=n) + rng.normal(size=int(data[groups[-1]].max()) + 1)[data[groups[-1]]]
    )
    data.loc[rng.random(n) < 0.2, "x"] = np.nan
    data.loc[rng.random(n) < 0.2, "y"] = np.nan
    return data, groups


def _several_factors(structure: str) -> dict:
    from skmlmi import MultilevelIterativeImputer

    data, groups = _several_factors_data(structure)
    imputer = MultilevelIterativeImputer(
        n_imputations=M, max_iter=MAX_ITER, random_state=2022, n_jobs=1, cluster_structure=structure
    )
    return _imputer_outputs(imputer, data, groups)


def case_three_level_default() -> dict:
    """Nested school/class factors (the defaults; commits before several factors cannot run it)."""
    return _several_factors("nested")


def case_crossed_default() -> dict:
    """Crossed factors (the defaults)."""
    return _several_factors("crossed")


def case_mixed_kinds_default() -> dict:
    """One factor, 40 clusters of 5-40 rows, every kind the defaults choose a model for: continuous, whole-number
    and binary missing in rows; continuous and binary missing in whole clusters; cluster-level continuous and
    binary (the validity matrix's kinds, where a change of the models chosen shows first)."""
    from skmlmi import MultilevelIterativeImputer

    rng = np.random.default_rng(11)
    sizes = rng.integers(5, 41, 40)
    g = np.repeat(np.arange(40), sizes)
    n = g.size
    u = rng.normal(size=(40, 4))
    data = pd.DataFrame({"g": g, "z": rng.normal(size=n) + 0.5 * u[g, 0]})
    data["x"] = 0.5 * data["z"] + u[g, 1] + rng.normal(size=n)
    data["k"] = np.round(10 + data["z"] + 2 * u[g, 2] + rng.normal(size=n) * 2)
    data["b"] = (rng.random(n) < 1 / (1 + np.exp(-(0.8 * data["z"] + u[g, 3])))).astype(float)
    data["sx"] = data["z"] + u[g, 1] + rng.normal(size=n)
    data["sb"] = (rng.random(n) < 0.4).astype(float)
    data["w"] = rng.normal(size=40)[g]
    data["wb"] = (rng.random(40) < 0.5).astype(float)[g]
    data["y"] = data["x"] + 0.3 * data["z"] + data["w"] + u[g, 0] + rng.normal(size=n)
    for column in ("x", "k", "b"):
        data.loc[rng.random(n) < 0.2, column] = np.nan
    for column in ("sx", "sb", "w", "wb"):
        data.loc[np.isin(g, rng.choice(40, 8, replace=False)), column] = np.nan
    imputer = MultilevelIterativeImputer(n_imputations=M, max_iter=MAX_ITER, random_state=2022, n_jobs=1)
    return _imputer_outputs(imputer, data, "g")


CASES = {name[len("case_") :]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}


# ---------------------------------------------------------------------------- one side (child)


def emit(path: str, cases: list[str]) -> None:
    """Run the cases with the skmlmi on PYTHONPATH and pickle their outputs to ``path``."""
    import skmlmi

    results = {"skmlmi": str(Path(skmlmi.__file__).resolve().parent), "cases": {}}
    for name in cases:
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                out = CASES[name]()
            except Exception as error:  # a case the old (or new) code cannot run is a difference
                out = {"error": f"{type(error).__name__}: {error}"}
        out["warnings"] = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
        out["seconds"] = time.perf_counter() - start
        results["cases"][name] = out
    with open(path, "wb") as handle:
        pickle.dump(results, handle)


# ---------------------------------------------------------------------------- comparison


def _max_abs_diff(a, b) -> float:
    try:
        x = np.asarray(a, dtype=float)
        y = np.asarray(b, dtype=float)
    except (TypeError, ValueError):
        return float("nan")
    if x.shape != y.shape:
        return float("nan")
    both_nan = np.isnan(x) & np.isnan(y)
    diff = np.where(both_nan, 0.0, np.abs(x - y))
    return float(np.nanmax(np.where(np.isnan(diff), np.inf, diff))) if diff.size else 0.0


def _frame_difference(old: pd.DataFrame, new: pd.DataFrame) -> str | None:
    if not old.columns.equals(new.columns):
        return f"columns {list(old.columns)} -> {list(new.columns)}"
    if not old.index.equals(new.index) or old.index.dtype != new.index.dtype:
        return "index"
    for column in old.columns:
        a, b = old[column], new[column]
        if a.dtype != b.dtype:
            return f"column {column!r}: dtype {a.dtype} -> {b.dtype}"
        if not a.equals(b):
            if isinstance(a.dtype, pd.CategoricalDtype):
                return f"column {column!r}: {int((a.astype(object) != b.astype(object)).sum())} cells"
            return f"column {column!r}: max abs diff {_max_abs_diff(a, b):.3g}"
    return None


def difference(old, new) -> str | None:
    """None when ``old`` and ``new`` are identical, else where they first differ."""
    if type(old) is not type(new):
        return f"type {type(old).__name__} -> {type(new).__name__}"
    if isinstance(old, pd.DataFrame):
        return _frame_difference(old, new)
    if isinstance(old, pd.Series):
        if old.name != new.name:
            return f"name {old.name!r} -> {new.name!r}"
        return _frame_difference(old.to_frame("value"), new.to_frame("value"))
    if isinstance(old, np.ndarray):
        if old.shape != new.shape or old.dtype != new.dtype:
            return f"shape/dtype {old.shape} {old.dtype} -> {new.shape} {new.dtype}"
        if not np.array_equal(old, new, equal_nan=old.dtype.kind in "fc"):
            return f"max abs diff {_max_abs_diff(old, new):.3g}"
        return None
    if isinstance(old, list | tuple):
        if len(old) != len(new):
            return f"length {len(old)} -> {len(new)}"
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            found = difference(a, b)
            if found:
                return f"[{i}] {found}"
        return None
    same = old == new or (isinstance(old, float) and np.isnan(old) and np.isnan(new))
    return None if same else f"{old!r} -> {new!r}"


def compare(old: dict, new: dict) -> list[tuple[str, str, list[str]]]:
    """Per case: (case, outcome, details of every differing output)."""
    rows = []
    for name in old["cases"]:
        a, b = old["cases"][name], new["cases"][name]
        if "error" in a or "error" in b:  # a case that does not run on a side is never "identical"
            failed = [f"{side} fails with {c['error']}" for side, c in (("old", a), ("new", b)) if "error" in c]
            rows.append((name, "; ".join(failed), failed))
            continue
        details = []
        for key in dict.fromkeys([*a, *b]):
            if key == "seconds":
                continue
            if key not in a or key not in b:
                details.append(f"{key}: only in {'old' if key in a else 'new'}")
                continue
            found = difference(a[key], b[key])
            if found:
                details.append(f"{key}: {found}")
        rows.append((name, "identical" if not details else f"differs ({details[0]})", details))
    return rows


# ---------------------------------------------------------------------------- driver


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


def default_against() -> str:
    """The merge-base with main, or HEAD~1 when HEAD is on main (or there is no main)."""
    try:
        base = _git("merge-base", "HEAD", "main")
        if base != _git("rev-parse", "HEAD"):
            return base
    except subprocess.CalledProcessError:
        pass
    return _git("rev-parse", "HEAD~1")


def _child(tree: Path, out: Path, cases: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONHASHSEED="0")
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"  # both sides use the same BLAS threading, whatever the caller's environment
    command = [sys.executable, str(HERE), "--emit", str(out), "--cases", *cases]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", help="commit or ref of the old code (default: merge-base with main, or HEAD~1)")
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=sorted(CASES), help="cases to run")
    parser.add_argument("--serial", action="store_true", help="run the two sides one after the other")
    parser.add_argument("--verbose", action="store_true", help="list every differing output of a case")
    parser.add_argument("--emit", help=argparse.SUPPRESS)  # child mode: run the cases, pickle the outputs
    args = parser.parse_args(argv)
    if args.emit:
        emit(args.emit, args.cases)
        return 0

    against = args.against or default_against()
    commit = _git("rev-parse", "--verify", f"{against}^{{commit}}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="skmlmi-compare-") as tmp:
        old_tree = Path(tmp) / "old"
        _git("worktree", "add", "--detach", str(old_tree), commit)
        try:
            sides = {"old": (old_tree, Path(tmp) / "old.pkl"), "new": (REPO, Path(tmp) / "new.pkl")}
            processes = {}
            for side, (tree, out) in sides.items():
                processes[side] = _child(tree, out, args.cases)
                if args.serial:
                    processes[side].wait()
            outputs = {}
            for side, process in processes.items():
                _, stderr = process.communicate()
                if process.returncode != 0:
                    print(f"the {side} side failed:\n{stderr}", file=sys.stderr)
                    return 2
                with open(sides[side][1], "rb") as handle:
                    outputs[side] = pickle.load(handle)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old_tree)], check=False)
    for side, (tree, _) in sides.items():
        if Path(outputs[side]["skmlmi"]) != (tree / "skmlmi").resolve():
            print(f"the {side} side imported skmlmi from {outputs[side]['skmlmi']}, not {tree}", file=sys.stderr)
            return 2

    rows = compare(outputs["old"], outputs["new"])
    head = _git("rev-parse", "--short", "HEAD")
    dirty = " + uncommitted changes" if _git("status", "--porcelain", "--untracked-files=no") else ""
    print(f"old: {commit[:12]} ({against})    new: {head}{dirty} (working tree {REPO})")
    print(
        f"{platform.node()} | Python {platform.python_version()} | numpy {np.__version__} | pandas {pd.__version__}"
        f" | m = {M}, max_iter = {MAX_ITER}, one BLAS thread per side"
    )
    width = max(len(name) for name, _, _ in rows)
    print(f"\n{'case':<{width}}  {'old s':>6}  {'new s':>6}  outcome")
    for name, outcome, details in rows:
        seconds = [outputs[side]["cases"][name]["seconds"] for side in ("old", "new")]
        print(f"{name:<{width}}  {seconds[0]:6.1f}  {seconds[1]:6.1f}  {outcome}")
        if args.verbose:
            for detail in details[1:]:
                print(f"{'':<{width}}                  also {detail}")
    differing = sum(outcome != "identical" for _, outcome, _ in rows)
    print(
        f"\n{len(rows) - differing} of {len(rows)} cases identical"
        f" ({time.perf_counter() - started:.0f} s in all)\n"
        f"rerun: python benchmarks/compare_outputs.py --against {against}"
    )
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
