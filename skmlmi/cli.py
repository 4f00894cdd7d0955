"""Command line: ``skmlmi impute``, ``skmlmi pool``, ``skmlmi diagnose``, ``skmlmi demo``.

A thin layer over the package: it reads and writes tables, turns options into estimator
parameters and reports. Every command checks what it can before any work starts (files,
table formats and their optional packages, columns, model names, numbers, role codes,
whether the output can be written) and ends with one of a few exit codes: 0 done, 1 the run
failed, 2 a usage error, 130 interrupted, 141 standard output closed early. Messages are one
line on stderr (``skmlmi: error: ...``); ``--debug`` or ``SKMLMI_DEBUG=1`` adds a failure's
traceback, and ``--quiet`` silences progress and warnings. One table of formats
(``TABLE_FORMATS``: CSV, TSV, Parquet, Feather, JSON) serves every file read or written.

The demo shows why clustering matters: popmis imputed ignoring the schools, with school
fixed effects and with random-effects models, each analysed with the random-intercept
model ``popular ~ sex + texp + (1 | school)`` and pooled (MIPooler), beside the
complete-case fit.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["main"]


ANALYSIS = "popular ~ sex + texp + (1 | school)"
TABLE_COLUMNS = ["estimate", "std_error", "statistic", "df", "p_value", "riv", "fmi"]


_MAX_SETTINGS_LENGTH = 1000  # characters of a --method model's settings, Name(key=value, ...)


def _strategies():
    """The imputation strategies of the demo: (label, methods, predictor matrix)."""
    from .conditional import PredictiveMeanMatching, RandomEffectsNormal, RandomEffectsPMM

    slope = {"school": {"popular": -2}, "sex": {"popular": 2}, "texp": {"popular": 1}}
    return [
        ("PMM ignoring clusters", {"popular": PredictiveMeanMatching()}, {"school": {"popular": 0}}),
        ("PMM, school fixed effects", {"popular": PredictiveMeanMatching()}, {"school": {"popular": 1}}),
        ("random-effects PMM", {"popular": RandomEffectsPMM()}, slope),
        ("random-effects normal", {"popular": RandomEffectsNormal()}, slope),
    ]


def demo_popmis(m: int = 20, max_iter: int = 10, seed: int = 2022, n_jobs: int | None = None, verbose: int = 0) -> dict:
    """Run the popmis demonstration.

    Returns a dict: ``tables`` (strategy -> pooled mitml-style table), ``variance``
    (DataFrame of pooled variance components and ICC, one column per strategy, the
    complete-case fit first) and ``seconds`` (imputation time per strategy).
    """
    from .analysis import LinearMixedModel
    from .datasets import load_popmis
    from .imputer import MultilevelIterativeImputer
    from .pooling import MIPooler

    data = load_popmis()[["school", "popular", "sex", "texp"]]
    complete = LinearMixedModel(ANALYSIS, missing="drop").fit(data)
    cc = complete.summary() if hasattr(complete, "summary") else None
    tables = {"complete cases": _complete_table(complete, cc)}
    variance = {"complete cases": complete.variance_components_}
    seconds = {}
    for label, methods, predictors in _strategies():
        imputer = MultilevelIterativeImputer(
            methods=methods,
            predictor_matrix=predictors,
            n_imputations=m,
            max_iter=max_iter,
            random_state=seed,
            n_jobs=n_jobs,
            verbose=verbose,
        )
        pooler = MIPooler(imputer, LinearMixedModel(ANALYSIS), n_jobs=n_jobs)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pooler.fit(data, groups="school")
        seconds[label] = time.perf_counter() - start
        tables[label] = pooler.results_.table[TABLE_COLUMNS]
        variance[label] = pooler.results_.variance_components
    return {"tables": tables, "variance": pd.DataFrame(variance), "seconds": seconds}


def _complete_table(fit, summary) -> pd.DataFrame:
    """The complete-case fit in the pooled table's columns (no imputation: riv = fmi = 0)."""
    from scipy import stats

    se = np.sqrt(np.diag(fit.cov_params_.to_numpy()))
    t = fit.coef_.to_numpy() / se
    return pd.DataFrame(
        {
            "estimate": fit.coef_.to_numpy(),
            "std_error": se,
            "statistic": t,
            "df": fit.df_resid_,
            "p_value": 2 * stats.t.sf(np.abs(t), fit.df_resid_),
            "riv": 0.0,
            "fmi": 0.0,
        },
        index=pd.Index(fit.coef_.index, name="term"),
    )


IMPACT_ANALYSIS = "mort ~ type + age + motor_score + pupil + ct + (1 | name)"


def demo_impact(
    m: int = 10, max_iter: int = 10, seed: int = 2022, n_jobs: int | None = None, verbose: int = 0
) -> pd.DataFrame:
    """IMPACT with ct, pupil and hypots removed (sporadically and in whole studies).

    Imputes with the recommended models (random-effects categorical for ct and pupil,
    two-stage logistic for hypots) and with single-level models, pools the logistic mixed
    model and returns the pupil and ct log-odds beside the complete-data fit, with each
    difference in complete-data standard errors.
    """
    from .analysis import LogisticMixedModel
    from .conditional import BayesianLogistic, Polytomous
    from .datasets import load_impact, load_impact_incomplete
    from .imputer import MultilevelIterativeImputer
    from .pooling import MIPooler

    complete, data = load_impact(), load_impact_incomplete(seed)
    for frame in (complete, data):  # ct's categories do not act monotonically on mortality
        frame["ct"] = frame["ct"].cat.as_unordered()
    truth = LogisticMixedModel(IMPACT_ANALYSIS).fit(complete)
    terms = ["pupilNone", "pupilOne", "ctIII", "ctIV/V"]
    se = np.sqrt(np.diag(truth.cov_params_.loc[terms, terms]))
    table = pd.DataFrame({"complete data": truth.coef_[terms]})
    strategies = {
        "recommended (multilevel)": (None, None),
        "single level": (
            {"ct": Polytomous(), "pupil": Polytomous(), "hypots": BayesianLogistic()},
            {"name": {"ct": 0, "pupil": 0, "hypots": 0}},
        ),
    }
    for label, (methods, matrix) in strategies.items():
        imputer = MultilevelIterativeImputer(
            methods=methods,
            predictor_matrix=matrix,
            n_imputations=m,
            max_iter=max_iter,
            random_state=seed,
            n_jobs=n_jobs,
            verbose=verbose,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pooler = MIPooler(imputer, LogisticMixedModel(IMPACT_ANALYSIS), n_jobs=n_jobs).fit(data, groups="name")
        table[label] = pooler.results_.table.loc[terms, "estimate"]
        table[f"{label}: difference / SE"] = (table[label] - table["complete data"]) / se
    return table


def demo_obesity(
    m: int = 20, max_iter: int = 5, seed: int = 2024, n_jobs: int | None = None, verbose: int = 0
) -> pd.DataFrame:
    """Obesity: Weight missing not at random; Heckman selection model against MAR.

    Returns the pooled mean weight (Rubin's rules) under HeckmanSelection (Time the
    exclusion restriction, coded -3) and under the MAR random-effects normal model, with
    its total standard error ``SE`` and its Monte Carlo standard error ``MC SE``,
    sqrt(B / m): how far a run with other random numbers (another seed, or the same seed on
    a machine whose BLAS kernels round differently) would typically land. Cluster 5 has no
    observed weight, so each imputation draws its level afresh and B is large; m = 20
    (a few seconds) halves the Monte Carlo variance of the former m = 10.
    """
    from .conditional import HeckmanSelection, RandomEffectsNormal
    from .datasets import load_obesity
    from .imputer import MultilevelIterativeImputer
    from .pooling import pool_scalar

    data = load_obesity()
    rows = {}
    for label, model, code in (("Heckman (MNAR)", HeckmanSelection(), -3), ("MAR", RandomEffectsNormal(), 1)):
        imputer = MultilevelIterativeImputer(
            methods={"Weight": model},
            predictor_matrix={"Time": {"Weight": code}},
            n_imputations=m,
            max_iter=max_iter,
            random_state=seed,
            n_jobs=n_jobs,
            verbose=verbose,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sets = imputer.fit_transform_all(data, groups="Cluster")
        pooled = pool_scalar([s["Weight"].mean() for s in sets], [s["Weight"].var(ddof=1) / len(s) for s in sets])
        rows[label] = {
            "pooled mean weight": pooled["estimate"],
            "SE": pooled["std_error"],
            "MC SE": np.sqrt(pooled["b"] / m),
        }
    rows["observed only"] = {"pooled mean weight": data["Weight"].mean(), "SE": np.nan, "MC SE": np.nan}
    return pd.DataFrame(rows).T


DEMO_DEFAULTS = {"popmis": (20, 10, 2022), "impact": (5, 10, 2022), "obesity": (20, 5, 2024)}


def _demo(args) -> int:
    m, max_iter, seed = DEMO_DEFAULTS[args.dataset]
    args.m = m if args.m is None else args.m
    args.max_iter = max_iter if args.max_iter is None else args.max_iter
    args.seed = seed if args.seed is None else args.seed
    _check_numbers(args)
    options = ("display.width", 160, "display.max_columns", 12, "display.float_format", "{:.4f}".format)
    if args.dataset == "impact":
        print(
            "IMPACT: 11,022 patients in 15 studies; ct and hypots removed in whole studies, ct and pupil "
            f"sporadically.\nAnalysis model: {IMPACT_ANALYSIS}, pooled over m = {args.m} imputations.\n"
        )
        with pd.option_context(*options):
            print(
                demo_impact(args.m, args.max_iter, args.seed, args.n_jobs, verbose=0 if args.quiet else 1).to_string()
            )
        return 0
    if args.dataset == "obesity":
        print("obesity: Weight missing for 790 of 2111 respondents (MNAR); Time is the exclusion restriction.\n")
        with pd.option_context(*options):
            print(
                demo_obesity(args.m, args.max_iter, args.seed, args.n_jobs, verbose=0 if args.quiet else 1).to_string()
            )
        print(
            f"\nPooled over m = {args.m} imputations. MC SE: the Monte Carlo standard error, sqrt(B / m); "
            "runs with another seed or on another machine agree within a few of them."
        )
        return 0
    print(
        "popmis: 2000 pupils in 100 schools, popularity missing for 848 (MAR).\n"
        f"Analysis model: {ANALYSIS} (REML), pooled over m = {args.m} imputations "
        f"(max_iter = {args.max_iter}, seed = {args.seed}) with Rubin's rules, Barnard-Rubin df.\n"
    )
    result = demo_popmis(args.m, args.max_iter, args.seed, args.n_jobs, verbose=0 if args.quiet else 1)
    options = ("display.width", 160, "display.max_columns", 12, "display.float_format", "{:.4f}".format)
    with pd.option_context(*options):
        for label, table in result["tables"].items():
            took = f" ({result['seconds'][label]:.2f} s to impute and analyse)" if label in result["seconds"] else ""
            print(f"== {label}{took}")
            print(table.to_string(), "\n")
        print("== pooled variance components and ICC (mitml: per-imputation values averaged)")
        print(result["variance"].T.to_string())
    icc = result["variance"].loc["ICC|school"]
    print(
        f"\nIgnoring the schools drops the ICC from {icc['complete cases']:.2f} (complete cases) to "
        f"{icc['PMM ignoring clusters']:.2f}; the multilevel imputations keep it "
        f"({icc['random-effects normal']:.2f} with the random-effects normal model)."
    )
    return 0


# ----------------------------------------------------------------------------- impute / pool / diagnose
#: Exit codes of every command (also in ``skmlmi --help``).
EXIT_FAILURE = 1  # the run started and failed
EXIT_USAGE = 2  # the command cannot work as given; found before any work
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it
EXIT_BROKEN_PIPE = 141  # standard output closed by its reader (128 + SIGPIPE), as for `yes | head -1`
#: Environment variable that, set to 1, adds the traceback to a failure's message (as ``--debug``).
DEBUG_VARIABLE = "SKMLMI_DEBUG"

NA_VALUES_HELP = (
    'codes meaning "missing" besides empty cells and NA, e.g. --na-values -999 . (a number matches by value)'
)

EXIT_STATUS = f"""\
exit status:
  0    done
  1    the run failed: a model that cannot be fitted inside a chain, an output that
       could not be written; one line on stderr ({DEBUG_VARIABLE}=1 or --debug adds the
       traceback)
  2    usage error, found before any work starts: an unknown option, file, column,
       model or table format, an invalid number or role code, an output that cannot
       be written, a missing optional dependency, data the imputer rejects before its
       chains start
  130  interrupted
  141  standard output closed early (e.g. `| head -1`): the command stops quietly,
       with the status of a process ended by SIGPIPE
"""


class CLIError(Exception):
    """A usage error, found before any work: one line on stderr, exit code 2."""


class CLIFailure(Exception):
    """A failure during the run, with the context the user needs: one line on stderr, exit code 1."""


# ----------------------------------------------------------------------------- table formats
@dataclass(frozen=True)
class TableFormat:
    """A file format for tables: its name (``--format``), suffixes and the optional package it needs."""

    name: str
    label: str
    suffixes: tuple[str, ...]
    requires: str | None = None  # optional package, installed by the extra below
    extra: str | None = None
    compressible: bool = False  # .gz, .bz2 or .xz may follow the suffix

    def read(self, path, compression) -> pd.DataFrame:
        if self.name in ("csv", "tsv"):
            # "NA" and empty fields are missing; other strings (e.g. a level called "None") stay data
            return pd.read_csv(
                path,
                sep="\t" if self.name == "tsv" else ",",
                compression=compression,
                keep_default_na=False,
                na_values=["", "NA", "NaN", "nan"],
            )
        if self.name == "json":  # read here, not by read_json, whose guesses (dates) vary across pandas versions
            import bz2
            import gzip
            import json
            import lzma

            opener = {None: open, "gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}[compression]
            with opener(path, "rt", encoding="utf-8") as file:
                records = json.load(file)
            if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                raise ValueError("expected a list of records, [{column: value, ...}, ...], as --format json writes")
            return pd.DataFrame(records)
        return pd.read_parquet(path) if self.name == "parquet" else pd.read_feather(path)

    def write(self, frame: pd.DataFrame, path, compression=None, index: bool = False) -> None:
        if index and self.name not in ("csv", "tsv"):  # the row labels as a column, which every format keeps
            frame, index = frame.reset_index(), False
            if pd.api.types.is_object_dtype(frame.iloc[:, 0]):  # labels of mixed types (e.g. counts and "total")
                frame[frame.columns[0]] = frame.iloc[:, 0].astype(str)
        if self.name in ("csv", "tsv"):
            frame.to_csv(path, sep="\t" if self.name == "tsv" else ",", index=index, compression=compression)
        elif self.name == "json":
            frame.to_json(path, orient="records", compression=compression)
        elif self.name == "parquet":
            frame.to_parquet(path, index=index)
        else:
            frame.reset_index(drop=True).to_feather(path)


#: The one table of formats of every command that reads or writes tables: chosen by the file
#: name's suffix (or ``--format``); anything else is a usage error that lists these.
TABLE_FORMATS = {
    f.name: f
    for f in (
        TableFormat("csv", "CSV", (".csv",), compressible=True),
        TableFormat("tsv", "tab-separated", (".tsv", ".tab"), compressible=True),
        TableFormat("parquet", "Parquet", (".parquet", ".pq"), requires="pyarrow", extra="parquet"),
        TableFormat("feather", "Feather", (".feather",), requires="pyarrow", extra="parquet"),
        TableFormat("json", "JSON (records)", (".json",), compressible=True),
    )
}
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz"}


def _formats_help() -> str:
    lines = ["table formats, of every file read or written (by the suffix of its name; --format for --out):"]
    for f in TABLE_FORMATS.values():
        needs = f'needs {f.requires}: pip install "skmlmi[{f.extra}]"' if f.requires else ""
        packed = f"also {', '.join(f.suffixes[0] + c for c in COMPRESSIONS)}" if f.compressible else ""
        details = "; ".join(part for part in (needs, packed) if part)
        lines.append(f"  {f.name:<8} {', '.join(f.suffixes):<18} {details}".rstrip())
    return "\n".join(lines) + "\n"


def _formats_list() -> str:
    return ", ".join(f"{f.name} ({', '.join(f.suffixes)})" for f in TABLE_FORMATS.values())


def _table_format(path, what: str, given: str | None = None) -> tuple[TableFormat, str | None]:
    """The format (and compression) of a table file, from its suffix or ``--format``.

    Raises CLIError for an unknown suffix, a suffix that contradicts ``--format``, or a
    compression suffix on a format that is not compressed that way; the message lists the
    supported formats.
    """
    suffixes = [s.lower() for s in Path(path).suffixes]
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression:
        suffixes = suffixes[:-1]
    suffix = suffixes[-1] if suffixes else None
    by_suffix = next((f for f in TABLE_FORMATS.values() if suffix in f.suffixes), None)
    if given is not None:
        chosen = TABLE_FORMATS[given]
        if by_suffix is not None and by_suffix is not chosen:
            raise CLIError(f"{what} {path}: the suffix {suffix} says {by_suffix.name}, but --format is {given}")
    elif by_suffix is None:
        shown = f"suffix {suffix!r}" if suffix else "no suffix"
        raise CLIError(
            f"{what} {path}: unknown table format ({shown}); supported: {_formats_list()}"
            + ("; or give --format" if what == "--out" else "")
        )
    else:
        chosen = by_suffix
    if compression and not chosen.compressible:
        raise CLIError(f"{what} {path}: {chosen.label} files cannot be compressed with {Path(path).suffix}")
    return chosen, compression


def _require(package: str, extra: str, purpose: str):
    """Import an optional dependency, or fail with the line that installs it."""
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError:
        raise CLIError(f'{purpose} needs {package}, which is not installed: pip install "skmlmi[{extra}]"') from None


def _read_table(path: str) -> pd.DataFrame:
    file = Path(path)
    if not file.exists():
        raise CLIError(f"no such file: {path}")
    if file.is_dir():
        raise CLIError(f"{path} is a directory, not a data file")
    fmt, compression = _table_format(path, "input")
    if fmt.requires:
        _require(fmt.requires, fmt.extra, f"reading {fmt.label} ({path})")
    if not os.access(file, os.R_OK):
        raise CLIError(f"{path} cannot be read: permission denied")
    try:
        frame = fmt.read(file, compression)
    except pd.errors.EmptyDataError:
        raise CLIError(f"{path} is empty") from None
    except Exception as exc:  # whatever the parser says, the file is not a table of this format
        raise CLIError(f"{path} could not be read as a {fmt.label} file: {_one_line(exc)}") from None
    if fmt.name == "csv" and frame.shape[1] == 1 and any(c in str(frame.columns[0]) for c in ";\t|"):
        raise CLIError(
            f"{path} was read as one column {str(frame.columns[0])!r}: the fields must be separated by "
            "commas (or tabs in a .tsv file)"
        )
    if len(frame) == 0:
        raise CLIError(f"{path} has a header but no rows" if frame.shape[1] else f"{path} is empty")
    return frame


def _missing_codes(frame: pd.DataFrame, codes: list[str] | None, quiet: bool) -> pd.DataFrame:
    """``frame`` with the cells holding one of ``codes`` (``--na-values``, e.g. -999 or ".") set missing.

    A code matches a text cell as written and a number cell by value (``-999`` matches -999 and
    -999.0). Says how many cells in which columns, unless ``quiet``.
    """
    if not codes:
        return frame
    values = list(codes)
    for code in codes:
        try:
            values.append(float(code))
        except ValueError:
            continue
    hit = frame.isin(values)
    if not quiet:
        columns = [str(c) for c in frame.columns[hit.any().to_numpy()]]
        print(f"--na-values: {int(hit.to_numpy().sum())} cell(s) set missing in {columns}", file=sys.stderr)
    return frame.mask(hit)


def _output_file(path: str, given_format: str | None, inputs=()) -> tuple[TableFormat, str | None]:
    """Check, before any work, that a table can be written to ``--out``: format known, its
    package installed, the file writable and not one of the inputs. Returns the format."""
    file = Path(path)
    if file.is_dir():
        raise CLIError(f"--out {path} is a directory; give a file name ({_formats_list()})")
    fmt, compression = _table_format(path, "--out", given_format)
    if fmt.requires:
        _require(fmt.requires, fmt.extra, f"writing {fmt.label} ({path})")
    parent = file.absolute().parent
    if not parent.exists():
        raise CLIError(f"--out {path}: the directory {parent} does not exist")
    if not parent.is_dir():
        raise CLIError(f"--out {path}: {parent} is not a directory")
    if file.exists():
        if any(Path(source).exists() and os.path.samefile(file, source) for source in inputs):
            raise CLIError(f"--out {path} is the input file; write the output elsewhere so the data are kept")
        if not os.access(file, os.W_OK):
            raise CLIError(f"--out {path} exists and is not writable")
    elif not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(f"--out {path}: the directory {parent} is not writable")
    return fmt, compression


def _output_directory(path: str) -> Path:
    """Check, before any work, that ``--out`` is a directory that exists or can be made, and
    that it is writable."""
    directory = Path(path).absolute()
    if directory.exists() and not directory.is_dir():
        raise CLIError(f"--out {path} exists and is not a directory")
    existing = directory
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise CLIError(f"--out {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CLIError(f"--out {path}: the directory {existing} is not writable")
    return Path(path)


def _check_writable(frame: pd.DataFrame, fmt: TableFormat, path: str) -> None:
    """Serialise the input data to memory in the output's format, so that what the format cannot
    hold (say, a column of numbers and strings in Parquet) is found before the imputation."""
    import io

    if fmt.name in ("csv", "tsv"):
        return  # text holds anything
    try:
        fmt.write(frame, io.StringIO() if fmt.name == "json" else io.BytesIO())
    except Exception as exc:
        raise CLIError(f"--out {path}: the data cannot be written as {fmt.label}: {_one_line(exc)}") from None


def _write_table(frame, path: str, fmt: TableFormat, compression=None, index: bool = False) -> None:
    """Write a table whole or not at all: into a temporary file beside ``path``, then renamed,
    so a failure leaves neither a partial file nor a damaged earlier one."""
    if isinstance(frame, pd.Series):
        frame = frame.to_frame()
    target = Path(path)
    try:
        if target.is_symlink() or (target.exists() and not target.is_file()):  # a link, /dev/null, a pipe
            fmt.write(frame, target, compression, index)
            return
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            fmt.write(frame, temporary, compression, index)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
    except Exception as exc:
        raise CLIFailure(f"could not write {path} ({fmt.label}): {type(exc).__name__}: {_one_line(exc)}") from exc


# ----------------------------------------------------------------------------- checks before the work
def _check_numbers(args) -> None:
    """The numeric options of the commands that impute, checked before anything runs."""
    if args.m is not None and args.m < 1:
        raise CLIError(f"--m {args.m}: the number of imputations must be at least 1")
    if args.max_iter is not None and args.max_iter < 0:
        raise CLIError(f"--max-iter {args.max_iter}: the iterations per chain must be 0 or more")
    if args.seed is not None and not 0 <= args.seed < 2**32:
        raise CLIError(f"--seed {args.seed}: the seed must be an integer from 0 to 2**32 - 1 = {2**32 - 1}")
    if args.n_jobs == 0:
        raise CLIError("--n-jobs 0: give the number of chains to run in parallel (1 or more, or -1 for all cores)")


def parse_model(text: str):
    """A conditional model from ``Name`` or ``Name(key=value, ...)`` (R method names too).

    The names are the registry's (:mod:`skmlmi.conditional.registry`): a model's class name
    or an R method name, whose implied settings the given ones override. Raises CLIError (a
    usage error) for a name that is not a conditional model, settings that are not literal
    keywords, or settings the model rejects.
    """
    import ast

    from .conditional.registry import resolve_name

    text = text.strip()
    name, _, rest = text.partition("(")
    name = name.strip()
    try:
        model_class, implied = resolve_name(name)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    kwargs = {}
    if rest:
        if len(rest) > _MAX_SETTINGS_LENGTH:  # the parser's memory grows with nesting: refuse, not crash
            raise CLIError(f"model {text[:40]!r}...: settings longer than {_MAX_SETTINGS_LENGTH} characters")
        try:
            call = ast.parse(f"f({rest}", mode="eval").body
            if not isinstance(call, ast.Call) or call.args or any(kw.arg is None for kw in call.keywords):
                raise CLIError(f"model {text!r}: give the settings as keywords, e.g. {name}(key=value)")
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            raise CLIError(
                f"model {text!r}: settings must be key=value with literal values (numbers, quoted "
                f"strings, True/False/None): {exc}"
            ) from None
    try:
        model = model_class(**{**implied, **kwargs})
        model._validate_params()
    except (TypeError, ValueError) as exc:  # ValueError: sklearn's InvalidParameterError
        raise CLIError(f"model {text!r}: {_one_line(exc)}") from None
    return model


def _assignments(items, what, form):
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise CLIError(f"{what} {item!r}: expected {form}")
        if key in out:
            raise CLIError(f"{what} {key} is given twice ({out[key]!r} and {value!r})")
        out[key] = value
    return out


def _check_columns(data, names, what):
    unknown = [n for n in names if n not in data.columns]
    if unknown:
        raise CLIError(f"{what}: unknown column(s) {unknown}; the data have {list(data.columns)}")


def _groups(text: str | None, data, option: str = "--groups") -> list[str] | None:
    """The grouping columns of ``--groups A,B`` (outer to inner), each checked to be a column of the data."""
    if text is None:
        return None
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise CLIError(f"{option} {text!r}: expected column names separated by commas, e.g. school,class")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise CLIError(f"{option} {text!r}: {twice} given more than once")
    _check_columns(data, names, option)
    return names


def _roles(items, data, groups, methods) -> dict:
    """The ``--role`` entries as a predictor matrix (predictor -> target -> code), each checked."""
    groups = groups or []
    named = ",".join(groups)
    from .conditional.base import ROLE_NAMES
    from .conditional.registry import models_accepting

    valid = ", ".join(f"{code} ({meaning})" for code, meaning in ROLE_NAMES.items())
    roles: dict = {}
    for key, text in _assignments(items, "--role", "TARGET:PREDICTOR=CODE").items():
        target, sep, predictor = (part.strip() for part in key.partition(":"))
        if not sep or not target or not predictor:
            raise CLIError(f"--role {key}={text}: expected TARGET:PREDICTOR=CODE")
        _check_columns(data, [target, predictor], f"--role {key}={text}")
        try:
            code = int(text)
        except ValueError:
            raise CLIError(f"--role {key}={text}: the code must be an integer, one of {valid}") from None
        if code not in ROLE_NAMES:
            raise CLIError(f"--role {key}={text}: {code} is not a role code; valid codes: {valid}")
        if target == predictor and code != 0:
            raise CLIError(f"--role {key}={text}: a variable cannot predict itself")
        if target in groups:
            raise CLIError(f"--role {key}={text}: {target!r} is a cluster column (--groups), which is never imputed")
        if predictor in groups and code not in (-2, 0, 1):
            raise CLIError(
                f"--role {key}={text}: the cluster column may only be coded -2 (cluster identifier), "
                "1 (cluster fixed effects) or 0 (not used)"
            )
        if code == -2 and predictor not in groups:
            raise CLIError(
                f"--role {key}={text}: only a cluster column (--groups{' ' + named if named else ''}) can be coded -2"
            )
        model = methods.get(target)
        if model is not None and predictor in groups and code == 1 and not model.supports_fixed_clusters:
            raise CLIError(f"--role {key}={text}: {type(model).__name__} cannot absorb cluster fixed effects")
        if model is not None and predictor not in groups and code not in (0, 1) and code not in model.accepted_roles:
            raise CLIError(
                f"--role {key}={text}: {type(model).__name__} cannot honour code {code} ({ROLE_NAMES[code]}); "
                f"models that can: {', '.join(models_accepting(code))}"
            )
        roles.setdefault(predictor, {})[target] = code
    return roles


# ----------------------------------------------------------------------------- commands
def _impute(args) -> int:
    from .imputer import MultilevelIterativeImputer

    # everything that can be checked is checked before the chains start
    fmt, compression = _output_file(args.out, args.format, inputs=[args.data])
    _check_numbers(args)
    data = _missing_codes(_read_table(args.data), args.na_values, args.quiet)
    reserved = [c for c in (".imp", ".id") if c in data.columns]
    if reserved:
        raise CLIError(
            f"{args.data} has column(s) {reserved}, which the long-format output adds (is it an imputed file?); "
            "rename or drop them"
        )
    groups = _groups(args.groups, data)
    methods = {}
    for column, text in _assignments(args.method, "--method", "COLUMN=MODEL").items():
        _check_columns(data, [column], f"--method {column}={text}")
        if column in (groups or []):
            raise CLIError(f"--method {column}={text}: {column!r} is a cluster column (--groups), never imputed")
        methods[column] = parse_model(text)
    roles = _roles(args.role, data, groups, methods)
    _check_writable(data, fmt, args.out)
    named = set(methods) | set(roles) | {t for targets in roles.values() for t in targets} | set(groups or [])
    identifiers = [c for c in _identifier_columns(data) if c not in named]
    if identifiers and not args.quiet:
        print(
            f"skmlmi: note: {', '.join(map(repr, identifiers))} hold(s) a different value in every row (a row "
            "identifier): left out of the imputation models and copied to the output as they are (name it in "
            "--role to use it as a predictor)",
            file=sys.stderr,
        )
    if groups is None and not args.quiet:
        _note_no_groups(data.drop(columns=identifiers))
    imputer = MultilevelIterativeImputer(
        methods=methods or None,
        predictor_matrix=roles or None,
        cluster_structure=args.cluster_structure,
        n_imputations=args.m,
        max_iter=args.max_iter,
        random_state=args.seed,
        n_jobs=args.n_jobs,
        verbose=0 if args.quiet else 1,
    )
    try:
        imputer._validate_params()
    except ValueError as exc:
        raise CLIError(_one_line(exc)) from None
    modelled = data.drop(columns=identifiers)
    # one column stays a column name: exactly the single-factor call of the library
    group_argument = groups[0] if groups and len(groups) == 1 else groups
    start = time.perf_counter()
    streaming = _streams(fmt, args.out)
    try:  # verbose: the model of each column before the chains run, then their progress
        if streaming:  # one completed dataset in memory at a time, written as it is made
            rows = _impute_to_file(imputer, modelled, group_argument, data, identifiers, fmt, compression, args)
        else:
            sets = imputer.fit_transform_all(modelled, groups=group_argument)
    except (ValueError, TypeError) as exc:
        if hasattr(exc, "failed_chains"):  # raised inside a chain: a failure during the run
            raise
        raise CLIError(f"the imputer rejects the data before imputing: {_one_line(exc)}") from None
    if not streaming:
        if identifiers:  # back in their places, as they were
            sets = type(sets)(_restore_columns(completed, data, identifiers) for completed in sets)
        long = sets.long(include_original=data if args.include_original else None)
        _write_table(long, args.out, fmt, compression)
        rows = len(long)
    if not args.quiet:  # the events file is written where it can be named (not with --quiet)
        events_file = _write_events(imputer.logged_events_, args.out)
        print(
            f"imputed {len(imputer.incomplete_columns_)} column(s) {imputer.incomplete_columns_} in "
            f"{time.perf_counter() - start:.1f} s; wrote {rows} rows (m = {args.m}, long format with .imp, "
            f".id) to {args.out}",
            file=sys.stderr,
        )
        if events_file is not None:
            print(
                f"{len(imputer.logged_events_)} logged event(s) of the models (what the warnings above refer "
                f"to, counted over the chains) written to {events_file}",
                file=sys.stderr,
            )
    return 0


def _streams(fmt: TableFormat, path: str) -> bool:
    """Whether ``impute`` writes the completed datasets one at a time (:meth:`fit_write`'s writer): CSV, TSV
    and Parquet to a regular file (or a new one). JSON and Feather, and links, devices and pipes, are
    written whole, from all m datasets in memory."""
    target = Path(path)
    regular = not target.is_symlink() and (not target.exists() or target.is_file())
    return fmt.name in ("csv", "tsv", "parquet") and regular


def _impute_to_file(imputer, modelled, groups, data, identifiers, fmt, compression, args) -> int:
    """Fit and write the long output one completed dataset at a time; returns the rows written."""
    from ._longfile import LongFileWriter

    try:
        writer = LongFileWriter(args.out, file_format=fmt.name, compression=compression)
    except (OSError, ValueError) as exc:  # the folder or the file, found before the chains
        raise CLIError(f"--out {args.out}: cannot be written ({type(exc).__name__}: {_one_line(exc)})") from None

    def restore(frame: pd.DataFrame) -> pd.DataFrame:  # identifier columns back in their places
        return _restore_columns(frame, data, identifiers) if identifiers else frame

    original = modelled if args.include_original else None
    try:
        imputer._fit_write(modelled, writer, groups, None, None, original=original, prepare=restore)
    except Exception as exc:
        if getattr(imputer, "_fitted", None) is None:  # the imputer's own error, before or in the chains
            raise
        raise CLIFailure(f"could not write {args.out} ({fmt.label}): {type(exc).__name__}: {_one_line(exc)}") from exc
    return writer.rows_written


def _identifier_columns(data: pd.DataFrame, min_rows: int = 10) -> list:
    """Complete columns holding a different value in every row that look like row identifiers: text or
    categories, or whole numbers making up one run of consecutive integers (1..n, 1001..1000+n)."""
    if len(data) < min_rows:
        return []
    found = []
    for column in data.columns:
        values = data[column]
        if values.isna().any() or values.nunique() < len(values):
            continue
        if pd.api.types.is_bool_dtype(values):
            continue
        if not pd.api.types.is_numeric_dtype(values):
            found.append(column)
            continue
        numbers = values.to_numpy(dtype=float)
        if np.all(np.isfinite(numbers)) and np.all(numbers == np.round(numbers)):
            if numbers.max() - numbers.min() + 1 == len(numbers):
                found.append(column)
    return found


#: Words in a column name that suggest a cluster identifier (for the note when --groups is missing).
CLUSTER_WORDS = (
    "school", "class", "cluster", "group", "hospital", "clinic", "centre", "center", "site", "study",
    "region", "country", "ward", "practice", "subject", "patient", "person", "id", "team", "firm",
)  # fmt: skip


def _note_no_groups(data: pd.DataFrame) -> None:
    """Say that the run is single-level, naming columns that look like cluster identifiers: complete, whole
    numbers or labels, several rows per value, and a name with a word of ``CLUSTER_WORDS``."""
    candidates = []
    for column in data.columns:
        values = data[column]
        words = re.split(r"[^a-z]+", str(column).lower())
        if values.isna().any() or not any(w in CLUSTER_WORDS or w.rstrip("s") in CLUSTER_WORDS for w in words):
            continue
        if pd.api.types.is_float_dtype(values) and not np.all(values == np.round(values)):
            continue
        k = values.nunique()
        if 2 <= k <= len(values) / 2:
            candidates.append(f"{column!r} ({k} values)")
    hint = (
        f"; {', '.join(candidates)} look(s) like a cluster identifier: give --groups if the rows are clustered by it"
        if candidates
        else ""
    )
    print(f"skmlmi: note: no --groups given: the imputation is single-level and ignores any clustering{hint}",
          file=sys.stderr)  # fmt: skip


def _restore_columns(completed: pd.DataFrame, data: pd.DataFrame, columns: list) -> pd.DataFrame:
    """``completed`` with ``columns`` of ``data`` put back at their places."""
    out = completed.copy()
    for column in columns:
        out.insert(list(data.columns).index(column), column, data[column].to_numpy())
    return out


def _write_events(events: pd.DataFrame, out: str) -> str | None:
    """The logged events as a CSV next to the output (``NAME.events.csv`` for ``NAME.csv.gz``), or None if none."""
    if events is None or events.empty:
        return None
    path = Path(out)
    name = path.name
    for suffixes in (tuple(COMPRESSIONS), tuple(s for f in TABLE_FORMATS.values() for s in f.suffixes)):
        ending = next((s for s in suffixes if name.lower().endswith(s)), "")  # the compression, then the format
        name = name[: len(name) - len(ending)]
    target = path.with_name(f"{name or 'imputed'}.events.csv")
    try:
        events.to_csv(target, index=False)
    except OSError as exc:
        print(f"skmlmi: warning: could not write the logged events to {target}: {exc}", file=sys.stderr)
        return None
    return str(target)


def _pool(args) -> int:
    from .analysis import GLM, OLS, LinearMixedModel, LogisticMixedModel, parse_formula
    from .pooling import pool, pool_variance_components

    out = _output_file(args.out, args.format, inputs=[args.file]) if args.out else None
    long = _read_table(args.file)
    absent = [c for c in (".imp", ".id") if c not in long.columns]
    if absent:
        raise CLIError(
            f"{args.file} has {' and '.join(f'no {c} column' for c in absent)}: expected the long format written "
            "by `skmlmi impute`"
        )
    numbers = pd.to_numeric(long[".imp"], errors="coerce")
    if numbers.isna().any() or (numbers % 1 != 0).any():
        raise CLIError(f"{args.file}: the .imp column must hold the imputation numbers (whole numbers)")
    long = long.assign(**{".imp": numbers.astype(int)})
    long = long[long[".imp"] > 0]
    if long.empty:
        raise CLIError(f"{args.file} holds no imputed datasets (rows with .imp > 0)")
    try:
        parsed = parse_formula(args.formula)
    except (TypeError, ValueError) as exc:
        raise CLIError(f"--formula: {_one_line(exc)}") from None
    if parsed.response is None:
        raise CLIError(f"--formula {args.formula!r} has no response (write it as 'y ~ x + ...')")
    _check_columns(long, parsed.variables, f"--formula {args.formula!r}")
    if args.family == "binomial" and len(parsed.random_factors) > 1:  # said before any fit
        names = ", ".join(repr(f.name) for f in parsed.random_factors)
        raise CLIError(
            f"--formula {args.formula!r} has several grouping factors ({names}); with --family binomial the model "
            "takes one (LogisticMixedModel). Several nested or crossed factors are fitted with --family gaussian"
        )
    if args.family == "binomial":
        model = LogisticMixedModel(args.formula) if parsed.is_mixed else GLM(args.formula, family="binomial")
    else:
        model = LinearMixedModel(args.formula) if parsed.is_mixed else OLS(args.formula)
    fits = []
    for number, data in long.groupby(".imp", sort=True):
        try:
            fits.append(type(model)(**model.get_params()).fit(data.drop(columns=[".imp", ".id"])))
        except Exception as exc:
            raise CLIFailure(
                f"the analysis model failed on imputation {number}: {type(exc).__name__}: {_one_line(exc)}"
            ) from exc
    names = list(fits[0].coef_.index)
    estimates = np.stack([f.coef_[names].to_numpy() for f in fits])
    covariances = np.stack([f.cov_params_.loc[names, names].to_numpy() for f in fits])
    table = pool(estimates, covariances, dfcom=None if args.large_sample else fits[0].df_resid_, names=names)
    with pd.option_context("display.width", 160, "display.float_format", "{:.4f}".format):
        print(f"{args.formula}: pooled over m = {len(fits)} imputations")
        print(table[TABLE_COLUMNS].to_string())
        if hasattr(fits[0], "variance_components_") and len(fits[0].variance_components_):
            vc = pool_variance_components([f.variance_components_ for f in fits])
            print("\nvariance components (pooled over imputations):")
            print(vc.to_string())
    if out is not None:
        _write_table(table, args.out, *out, index=True)
    return 0


def _diagnose(args) -> int:
    fmt = TABLE_FORMATS[args.format]
    if fmt.requires:
        _require(fmt.requires, fmt.extra, f"writing {fmt.label} tables")
    _require("matplotlib", "plot", "skmlmi diagnose (its plots)")
    out = _output_directory(args.out)
    data = _missing_codes(_read_table(args.data), args.na_values, args.quiet)
    groups = _groups(args.groups, data)

    import matplotlib

    matplotlib.use("Agg")
    from . import diagnostics
    from .recommend import recommend_methods

    pattern_plot, _, pattern = diagnostics.plot_pattern(data)
    if len(groups) == 1:
        cluster_plot, _, by_cluster = diagnostics.plot_missing_by_cluster(data, groups[0])
        iccs = diagnostics.icc(data, groups[0])
        recommended = recommend_methods(data, groups[0])
    else:
        cluster_plot, by_cluster, iccs, recommended = _diagnose_factors(data, groups, args.cluster_structure)
    out.mkdir(parents=True, exist_ok=True)
    pattern_plot.savefig(out / "pattern.png", dpi=100)
    cluster_plot.savefig(out / "missing_by_cluster.png", dpi=100)
    tables = {
        "pattern": (pattern, True),
        "missing_by_cluster": (by_cluster, True),
        "recommended_methods": (recommended.assign(method=recommended["method"].map(repr)), False),
        "icc": (iccs, True),
    }
    for name, (table, index) in tables.items():
        _write_table(table, out / f"{name}{fmt.suffixes[0]}", fmt, index=index)
    with pd.option_context("display.width", 160, "display.max_colwidth", 60):
        print("ICC per variable (observed values):")
        print(iccs.to_string())
        print("\nrecommended conditional models:")
        print(recommended[["column", "pattern", "method", "reason"]].to_string(index=False))
    if not args.quiet:
        print(f"\nwrote pattern.png, missing_by_cluster.png and tables ({fmt.label}) to {out}", file=sys.stderr)
    return 0


def _diagnose_factors(data, groups: list, structure: str):
    """``diagnose`` with several grouping factors: the plot by the innermost factor's units, the tables per factor.

    The ICC of each level comes from each variable's mixed model with a random intercept per factor
    (:func:`~skmlmi.diagnostics.icc_by_level`), so that an inner factor's ICC does not hold the outer one's.
    """
    from . import diagnostics
    from ._clusters import Clusters
    from .recommend import missing_by_cluster, recommend_methods

    try:
        clusters = Clusters.from_data(data, groups, structure)
    except ValueError as exc:
        raise CLIError(f"--groups {','.join(groups)}: {_one_line(exc)}") from None
    frame = data.drop(columns=groups)
    inner = np.asarray(clusters.factors[-1].codes)
    cluster_plot, _, _ = diagnostics.plot_missing_by_cluster(frame, inner)
    by_cluster = missing_by_cluster(frame, clusters, by="cluster")  # the factors encoded once, above
    iccs = diagnostics.icc_by_level(data, groups, structure)
    return cluster_plot, by_cluster, iccs, recommend_methods(frame, clusters)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``skmlmi`` command.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after ``skmlmi`` (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit code: 0 done; 1 the run failed (one line on stderr, the traceback with
        ``--debug`` or ``SKMLMI_DEBUG=1``); 2 a usage error, found before any work; 130
        interrupted; 141 standard output closed by its reader (``| head``), without a
        message. ``--help``, ``--version`` and argparse's own usage errors raise
        ``SystemExit`` with 0 or 2, as argparse does.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get(DEBUG_VARIABLE, "").strip() not in ("", "0")
    try:
        with _messages(quiet=args.quiet), np.printoptions(precision=4):
            code = int(args.run(args))
            sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        _detach_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print("skmlmi: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except CLIError as exc:
        print(f"skmlmi: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a failure during the run: one line, the traceback on request
        if debug:
            traceback.print_exc(file=sys.stderr)
        message = _one_line(exc) if isinstance(exc, CLIFailure) else f"{type(exc).__name__}: {_one_line(exc)}"
        hint = "" if debug else f" (--debug or {DEBUG_VARIABLE}=1 for the traceback)"
        print(f"skmlmi: error: {message}{hint}", file=sys.stderr)
        return EXIT_FAILURE


def _one_line(exc) -> str:
    """An exception's message on one line (the lines of a multi-line message joined)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def _detach_stdout() -> None:
    """Point standard output at devnull, so that the interpreter's final flush into a closed
    pipe does not print "Exception ignored ... BrokenPipeError" (the recipe of Python's
    ``signal`` documentation)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (e.g. captured in tests)
        pass


@contextlib.contextmanager
def _messages(quiet: bool):
    """Warnings and logging during a command: one line each (``skmlmi: warning: ...``), or none
    with ``--quiet`` (worker processes started meanwhile included); errors print either way.
    The previous settings are restored afterwards."""
    logging_level, environment = logging.root.manager.disable, os.environ.get("PYTHONWARNINGS")
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
            logging.disable(logging.WARNING)
            os.environ["PYTHONWARNINGS"] = "ignore"
        else:
            warnings.showwarning = _show_warning
        try:
            yield
        finally:
            logging.disable(logging_level)
            if environment is None:
                os.environ.pop("PYTHONWARNINGS", None)
            else:
                os.environ["PYTHONWARNINGS"] = environment


def _show_warning(message, category, filename, lineno, file=None, line=None):
    name = "warning" if category is UserWarning else f"warning: {category.__name__}"
    # a command-line user has no logged_events_ attribute: they get the events file
    text = _one_line(message).replace("(see logged_events_)", "(see the events file named at the end)")
    print(f"skmlmi: {name}: {text}", file=sys.stderr if file is None else file)


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's layout, except that text with line breaks (the epilogs' tables) is kept as written."""

    def _fill_text(self, text, width, indent):
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="skmlmi",
        description="Multiple imputation of multilevel data.",
        epilog=EXIT_STATUS + "\n" + _formats_help(),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"skmlmi {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="no progress messages and no warnings; errors still print")
    common.add_argument("--debug", action="store_true", help=f"the traceback of a failure (as {DEBUG_VARIABLE}=1)")
    options = {"parents": [common], "epilog": EXIT_STATUS, "formatter_class": _HelpFormatter}
    writes = {**options, "epilog": EXIT_STATUS + "\n" + _formats_help()}
    formats = list(TABLE_FORMATS)

    demo = sub.add_parser("demo", help="run a worked example", description="Run a worked example.", **options)
    demo.add_argument(
        "dataset",
        choices=["popmis", "impact", "obesity"],
        help="popmis (why clustering matters), impact (systematically missing variables), obesity (MNAR, Heckman)",
    )
    demo.add_argument(
        "--m", type=int, default=None, help="number of imputations (default 20 for popmis and obesity, 5 for impact)"
    )
    demo.add_argument("--max-iter", type=int, default=None, help="iterations per chain (default 10; obesity 5)")
    demo.add_argument("--seed", type=int, default=None, help="random seed (default 2022; obesity 2024)")
    demo.add_argument("--n-jobs", type=int, default=None, help="parallel chains (default 1)")
    demo.set_defaults(run=_demo)

    impute = sub.add_parser(
        "impute",
        **writes,
        help="impute a data file",
        description=(
            "Impute DATA with m chains and write the completed datasets in long format (.imp, .id columns, like "
            "mice::complete(imp, 'long')). Options, columns, models, numbers and the output are checked before "
            "the imputation starts."
        ),
    )
    impute.add_argument("data", help="input file (a table format below); empty fields and NA are missing")
    impute.add_argument(
        "--groups",
        metavar="COLUMN[,COLUMN...]",
        help="cluster column, or several separated by commas, outer to inner (e.g. school,class)",
    )
    impute.add_argument(
        "--cluster-structure",
        choices=["auto", "nested", "crossed"],
        default="auto",
        help="with several --groups: nested (inner labels combined with the outer, as lme4's school/class), crossed, "
        "or auto (nested when every inner label lies in one outer unit; default)",
    )
    impute.add_argument(
        "--method",
        action="append",
        metavar="COLUMN=MODEL",
        help="conditional model of a column, e.g. popular=RandomEffectsNormal or popular=2l.pan; "
        "repeat for more columns (default: by column kind)",
    )
    impute.add_argument(
        "--role",
        action="append",
        metavar="TARGET:PREDICTOR=CODE",
        help="predictor-matrix entry (mice codes: 0, 1, 2, 3, 4, -2, -3, -4); repeatable",
    )
    impute.add_argument("--m", type=int, default=5, help="number of imputations, 1 or more (default 5)")
    impute.add_argument("--max-iter", type=int, default=10, help="iterations per chain, 0 or more (default 10)")
    impute.add_argument("--seed", type=int, default=None, help="random seed, 0 to 2**32 - 1")
    impute.add_argument("--n-jobs", type=int, default=None, help="chains run in parallel (default 1; -1: all cores)")
    impute.add_argument("--out", required=True, help="output file; its suffix gives the format (see below)")
    impute.add_argument("--format", choices=formats, help="format of --out, where its suffix does not say")
    impute.add_argument("--include-original", action="store_true", help="also write the incomplete data as .imp 0")
    impute.add_argument("--na-values", nargs="+", metavar="CODE", help=NA_VALUES_HELP)
    impute.set_defaults(run=_impute)

    pooling = sub.add_parser(
        "pool",
        **writes,
        help="fit a model on each imputation and pool",
        description=(
            "Fit an analysis model (lme4-style formula) on each completed dataset of a long-format file and pool "
            "with Rubin's rules (mitml-style table)."
        ),
    )
    pooling.add_argument("file", help="long-format file written by `skmlmi impute`")
    pooling.add_argument("--formula", required=True, help='e.g. "popular ~ sex + texp + (1 | school)"')
    pooling.add_argument("--family", choices=["gaussian", "binomial"], default="gaussian", help="default gaussian")
    pooling.add_argument("--large-sample", action="store_true", help="large-sample df (mitml's default)")
    pooling.add_argument("--out", help="also write the pooled table (one row per term) to this file")
    pooling.add_argument("--format", choices=formats, help="format of --out, where its suffix does not say")
    pooling.set_defaults(run=_pool)

    diagnose = sub.add_parser(
        "diagnose",
        **writes,
        help="missing-data pattern, ICC, recommended models",
        description=(
            "Describe the missing data of DATA: pattern, sporadic vs systematic missingness per cluster, ICC per "
            "variable and the recommended conditional models, with plots (needs matplotlib) and tables written "
            "to --out."
        ),
    )
    diagnose.add_argument("data", help="input file (a table format below)")
    diagnose.add_argument(
        "--groups",
        required=True,
        metavar="COLUMN[,COLUMN...]",
        help="cluster column, or several separated by commas, outer to inner (e.g. school,class): then the tables "
        "are per factor (the plot by the innermost)",
    )
    diagnose.add_argument(
        "--cluster-structure",
        choices=["auto", "nested", "crossed"],
        default="auto",
        help="with several --groups, as for impute (default auto)",
    )
    diagnose.add_argument("--out", required=True, help="output directory (made if absent)")
    diagnose.add_argument("--na-values", nargs="+", metavar="CODE", help=NA_VALUES_HELP)
    diagnose.add_argument("--format", choices=formats, default="csv", help="format of the tables (default csv)")
    diagnose.set_defaults(run=_diagnose)

    return parser


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
