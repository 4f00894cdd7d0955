"""Does the default model for whole-number columns tilt the slopes? (issue: right by default)

Known-truth design of the real-data case that found the problem (750 students in 50 schools,
achievement ~ reading difficulty + SES + (1 | school)), J = 50 clusters of 15 rows:

    SES        = round(46 + a_j + e),  a_j ~ N(0, 8^2),  e ~ N(0, 16^2)      (whole numbers)
    difficulty = 2.6 + 0.01 (SES - 46) + c_j + d,  c_j ~ N(0, 0.3^2),  d ~ N(0, 0.6^2)
    achievement = 520 - 33 difficulty + 1.25 SES + u_j + r,  u_j ~ N(0, 27^2),  r ~ N(0, 80^2)

SES is 40% missing, MCAR or MAR on achievement (P(missing) = expit(alpha + z), z the
standardised achievement, alpha giving 40% on average); difficulty is 20% MCAR. Each
replication imputes (m = 10, max_iter = 10) with every method, fits the analysis model
(REML random-intercept model) on every completed dataset, and pools the fixed effects by
Rubin's rules (Barnard-Rubin df); tau^2 and sigma^2 are averaged over the imputations.

Methods: ``defaults`` (what the imputer chooses with groups: SES, whole numbers ->
RandomEffectsPMM; difficulty -> RandomEffectsNormal; level-1 predictors with their cluster
means), ``defaults-nomeans`` (the same models with mice's predictor matrix, every predictor
1), and with the default matrix for SES: RandomEffectsPMM with the donor matching used
before the fix (posterior means b_hat_j, ``pmm_bhat``), with miceadds' sampled-parameter
matching (``pmm_type2``), and RandomEffectsNormal (``normal``); plus the complete data (no
missing values: the reference every method should reproduce).

Run: ``python benchmarks/validate_pmm_slope.py --reps 300 --jobs 2`` (full: about 300
replications per mechanism, MC SE of the mean SES slope about 0.01); ``--methods`` picks
methods, ``--mechanism MAR`` one mechanism.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from scipy import integrate, optimize, special, stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine  # noqa: E402
from _fast_lmm import fit_random_intercept  # noqa: E402

from skmlmi import MultilevelIterativeImputer  # noqa: E402
from skmlmi.conditional import RandomEffectsNormal, RandomEffectsPMM  # noqa: E402
from skmlmi.pooling import pool  # noqa: E402

TRUTH = {"ses": 1.25, "difficulty": -33.0}
J, SIZE, M, MAX_ITER = 50, 15, 10, 10
TERMS = ["(Intercept)", "difficulty", "ses"]


def _alpha(prop: float = 0.4) -> float:
    """Intercept of expit(alpha + z), z ~ N(0, 1), giving ``prop`` missing on average."""

    def mean_missing(alpha):
        return integrate.quad(lambda z: special.expit(alpha + z) * stats.norm.pdf(z), -10, 10)[0] - prop

    return optimize.brentq(mean_missing, -5, 5)


ALPHA = _alpha()


def simulate(rng: np.random.Generator, mechanism: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    g = np.repeat(np.arange(J), SIZE)
    n = len(g)
    ses = np.round(46 + rng.normal(0, 8, J)[g] + rng.normal(0, 16, n))
    difficulty = 2.6 + 0.01 * (ses - 46) + rng.normal(0, 0.3, J)[g] + rng.normal(0, 0.6, n)
    achievement = 520 - 33 * difficulty + 1.25 * ses + rng.normal(0, 27, J)[g] + rng.normal(0, 80, n)
    full = pd.DataFrame({"school": g, "achievement": achievement, "difficulty": difficulty, "ses": ses})
    data = full.copy()
    if mechanism == "MAR":
        z = (achievement - achievement.mean()) / achievement.std()
        ses_missing = rng.random(n) < special.expit(ALPHA + z)
    else:
        ses_missing = rng.random(n) < 0.4
    data.loc[ses_missing, "ses"] = np.nan
    data.loc[rng.random(n) < 0.2, "difficulty"] = np.nan
    return full, data


class PosteriorMeanDonorsPMM(RandomEffectsPMM):
    """RandomEffectsPMM as it was before the fix: donors scored at the posterior means b_hat_j.

    Kept here, not in the package, only to show the bias it causes."""

    def _fit_chain(self, *args):
        normal, state, suff, beta_hat, b_posterior = super()._fit_chain(*args)
        b_posterior.draw = lambda rng: b_posterior.expected()  # donors at the posterior means
        return normal, state, suff, beta_hat, b_posterior


def imputer(method: str, seed: int) -> MultilevelIterativeImputer:
    """``defaults`` (cluster means included), ``defaults-nomeans`` (mice's matrix: every predictor 1),
    or the model named for SES with the default matrix."""
    methods = {
        "defaults": None,
        "defaults-nomeans": None,
        "pmm_bhat": {"ses": PosteriorMeanDonorsPMM()},
        "pmm_type2": {"ses": RandomEffectsPMM(matchtype=2)},
        "normal": {"ses": RandomEffectsNormal()},
    }[method]
    return MultilevelIterativeImputer(
        methods=methods,
        n_imputations=M,
        max_iter=MAX_ITER,
        random_state=seed,
        cluster_means=method != "defaults-nomeans",
    )


def analyse(data: pd.DataFrame):
    X = np.column_stack([np.ones(len(data)), data["difficulty"].to_numpy(), data["ses"].to_numpy()])
    return fit_random_intercept(data["achievement"].to_numpy(), X, data["school"].to_numpy())


def replication(seed: int, mechanism: str, methods: list[str]) -> list[dict]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, mechanism == "MAR"]))
    full, data = simulate(rng, mechanism)
    rows = []
    reference = analyse(full)
    rows.append(_row(seed, mechanism, "complete data", [reference], reference))
    for method in methods:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sets = imputer(method, seed).fit_transform_all(data, groups="school")
        rows.append(_row(seed, mechanism, method, [analyse(s) for s in sets], reference))
    return rows


def _row(seed, mechanism, method, fits, reference) -> dict:
    if len(fits) > 1:
        table = pool([f.coef for f in fits], [f.cov for f in fits], dfcom=fits[0].df_resid, names=TERMS)
    else:
        f = fits[0]
        half = stats.t.ppf(0.975, f.df_resid) * f.se
        table = pd.DataFrame({"estimate": f.coef, "conf_low": f.coef - half, "conf_high": f.coef + half}, index=TERMS)
    row = {"seed": seed, "mechanism": mechanism, "method": method}
    for term in ("ses", "difficulty"):
        row[term] = table.loc[term, "estimate"]
        row[f"{term}_paired"] = table.loc[term, "estimate"] - reference.coef[TERMS.index(term)]
        row[f"{term}_covered"] = table.loc[term, "conf_low"] <= TRUTH[term] <= table.loc[term, "conf_high"]
    row["tau2"] = np.mean([f.tau2 for f in fits])
    row["sigma2"] = np.mean([f.sigma2 for f in fits])
    row["tau2_paired"] = row["tau2"] - reference.tau2
    row["sigma2_paired"] = row["sigma2"] - reference.sigma2
    return row


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    def mc(x):
        return x.std(ddof=1) / np.sqrt(len(x))

    out = frame.groupby(["mechanism", "method"], sort=False).agg(
        reps=("ses", "size"),
        ses=("ses", "mean"),
        ses_bias=("ses", lambda x: x.mean() - TRUTH["ses"]),
        ses_mcse=("ses", mc),
        ses_paired=("ses_paired", "mean"),
        ses_paired_mcse=("ses_paired", mc),
        ses_coverage=("ses_covered", "mean"),
        difficulty_bias=("difficulty", lambda x: x.mean() - TRUTH["difficulty"]),
        difficulty_mcse=("difficulty", mc),
        difficulty_coverage=("difficulty_covered", "mean"),
        tau2=("tau2", "mean"),
        tau2_paired=("tau2_paired", "mean"),
        tau2_paired_mcse=("tau2_paired", mc),
        sigma2=("sigma2", "mean"),
        sigma2_paired=("sigma2_paired", "mean"),
        sigma2_paired_mcse=("sigma2_paired", mc),
    )
    return out


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=300)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + reps - 1")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--mechanism", choices=["MAR", "MCAR", "both"], default="both")
    parser.add_argument("--methods", default="defaults,defaults-nomeans,pmm_bhat,pmm_type2,normal")
    parser.add_argument("--out", default=None, help="CSV of the replications")
    args = parser.parse_args(argv)
    methods = args.methods.split(",")
    mechanisms = ["MAR", "MCAR"] if args.mechanism == "both" else [args.mechanism]
    started = time.perf_counter()
    seeds = range(args.first_seed, args.first_seed + args.reps)
    jobs = [(seed, mech) for mech in mechanisms for seed in seeds]
    results = Parallel(n_jobs=args.jobs)(delayed(replication)(seed, mech, methods) for seed, mech in jobs)
    frame = pd.DataFrame([row for rows in results for row in rows])
    if args.out:
        frame.to_csv(args.out, index=False)
    table = summarise(frame)
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.precision", 4):
        print(f"# {machine()}")
        print(
            f"# python benchmarks/validate_pmm_slope.py --reps {args.reps} --jobs {args.jobs} "
            f"--mechanism {args.mechanism} --methods {args.methods}"
        )
        print(
            f"# truth: ses slope {TRUTH['ses']}, difficulty slope {TRUTH['difficulty']}; 'paired' = method minus "
            "the complete-data fit of the same replication"
        )
        print(table.T.to_string())
        print(f"# {time.perf_counter() - started:.0f} s")
    return table


if __name__ == "__main__":
    main()
