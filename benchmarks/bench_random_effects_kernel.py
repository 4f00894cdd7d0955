"""Time one visit (draw + sample) of the random-effects models, and check their mixing.

Reproduce with::

    python benchmarks/bench_random_effects_kernel.py               # timings
    python benchmarks/bench_random_effects_kernel.py --convergence # default n_gibbs check
    python benchmarks/bench_random_effects_kernel.py --profile     # cProfile of one 1M-row visit

Timings: popmis (2,000 rows, 100 schools; ``popular`` from sex (random slope) and texp
(fixed)) and a synthetic 1,000,000-row x 10,000-cluster dataset with 5 predictors (2
random slopes, q = 3) and 30% of y missing. One "visit" is what the chained-equations
engine does per variable and iteration: ``model.draw`` (cross-products + n_gibbs Gibbs
steps) followed by ``draw.sample`` on the missing rows. The time per Gibbs step is
measured by differencing visits with n_gibbs = 1 and n_gibbs = 41.

Convergence: a long chain on popmis gives the lag autocorrelations of sigma^2 and the
entries of Psi; 20 chains from the moment-based start show how many steps the start
needs (mean over chains per step against the stationary mean, in Monte Carlo SE units),
and split-R-hat over 20 chains of the steps after burn-in.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from skmlmi.conditional.base import DrawContext
from skmlmi.conditional.random_effects import RandomEffectsNormal, RandomEffectsPMM

POPMIS = Path(os.environ.get("SKMLMI_SHARED", "/work/shared")) / "data" / "popmis.csv"


def load_popmis():
    import pandas as pd

    df = pd.read_csv(POPMIS)
    groups = pd.factorize(df["school"], sort=True)[0]
    y = df["popular"].to_numpy(float)
    observed = ~np.isnan(y)
    y = np.where(observed, y, np.nanmean(y))
    X = df[["sex", "texp"]].to_numpy(float)
    return y, observed, X, np.array([2, 1]), groups


def synthetic(n=1_000_000, J=10_000, seed=0):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, J, n)
    X = rng.normal(size=(n, 5))
    roles = np.array([2, 2, 1, 1, 1])
    b = rng.normal(size=(J, 3)) * [0.7, 0.3, 0.3]
    y = 1 + X @ [0.5, -0.3, 0.2, 0.1, 0.0] + b[groups, 0] + (X[:, :2] * b[groups, 1:]).sum(1) + rng.normal(size=n)
    observed = rng.random(n) >= 0.3
    return y, observed, X, roles, groups


def time_visit(model, data, repeats, state_warm=True):
    y, observed, X, roles, groups = data
    rng = np.random.default_rng(1)
    context = DrawContext(target="y", n_clusters=int(groups.max()) + 1)
    draw, state = model.draw(y, observed, X, roles, groups, rng, None, context)  # first visit (burn-in)
    missing = ~observed
    Xm, gm = X[missing], groups[missing]
    t_draw = t_sample = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        draw, state = model.draw(y, observed, X, roles, groups, rng, state if state_warm else None, context)
        t1 = time.perf_counter()
        y[missing] = draw.sample(Xm, gm, rng)
        t2 = time.perf_counter()
        t_draw += t1 - t0
        t_sample += t2 - t1
    return t_draw / repeats, t_sample / repeats


def timings():
    print("command: python benchmarks/bench_random_effects_kernel.py (BLAS pinned to 1 thread)")
    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}, numpy {np.__version__}"
    )
    rows = []
    for label, data, repeats in (("popmis", load_popmis(), 20), ("1M x 10k", synthetic(), 3)):
        for model in (RandomEffectsNormal(), RandomEffectsNormal(heteroscedastic=True), RandomEffectsPMM()):
            name = type(model).__name__ + ("(hetero)" if getattr(model, "heteroscedastic", False) else "")
            d, s = time_visit(model, [a.copy() for a in data], repeats)
            one = type(model)(**{**model.get_params(), "n_gibbs": 1})
            many = type(model)(**{**model.get_params(), "n_gibbs": 41})
            d1, _ = time_visit(one, [a.copy() for a in data], repeats)
            d41, _ = time_visit(many, [a.copy() for a in data], repeats)
            per_step = (d41 - d1) / 40
            rows.append((label, name, d, s, per_step, d1 - per_step))
    print(
        f"\n{'data':10s} {'model':28s} {'draw (s)':>9s} {'sample (s)':>10s} {'visit (s)':>9s} "
        f"{'per step (ms)':>13s} {'setup (s)':>9s}"
    )
    for label, name, d, s, step, setup in rows:
        print(f"{label:10s} {name:28s} {d:9.4f} {s:10.4f} {d + s:9.4f} {1000 * step:13.2f} {setup:9.4f}")
    print(
        "\nvisit = draw (cross-products + n_gibbs=10 steps) + sample of the missing rows; "
        "setup = draw time without the Gibbs steps."
    )


def acf(x, lag):
    x = x - x.mean()
    return float(x[:-lag] @ x[lag:] / (x @ x))


def split_rhat(chains):
    half = chains.shape[1] // 2
    c = np.concatenate([chains[:, :half], chains[:, half : 2 * half]])
    n = c.shape[1]
    W = c.var(axis=1, ddof=1).mean()
    B = n * c.mean(axis=1).var(ddof=1)
    return float(np.sqrt(((n - 1) / n * W + B / n) / W))


def convergence():
    y, observed, X, roles, groups = load_popmis()
    for hetero in (False, True):
        print(f"\n=== popmis, heteroscedastic={hetero} ===")
        model = RandomEffectsNormal(n_gibbs=5000, n_burnin=0, heteroscedastic=hetero)
        _, state = model.draw(y, observed, X, roles, groups, np.random.default_rng(0), None, DrawContext())
        tr = state.trace
        series = {
            "sigma2" if not hetero else "sigma0^2": tr["sigma2"][100:],
            "psi00": tr["psi"][100:, 0, 0],
            "psi11": tr["psi"][100:, 1, 1],
            "psi01": tr["psi"][100:, 0, 1],
        }
        print(f"{'param':10s} {'mean':>8s} " + " ".join(f"{'lag' + str(k):>7s}" for k in (1, 2, 3, 5, 10)))
        for name, v in series.items():
            print(f"{name:10s} {v.mean():8.4f} " + " ".join(f"{acf(v, k):7.3f}" for k in (1, 2, 3, 5, 10)))
        stationary = {k: (v.mean(), v.std()) for k, v in series.items()}
        chains = []
        for c in range(20):
            m = RandomEffectsNormal(n_gibbs=220, n_burnin=0, heteroscedastic=hetero)
            _, st = m.draw(y, observed, X, roles, groups, np.random.default_rng(100 + c), None, DrawContext())
            chains.append(np.column_stack([st.trace["sigma2"], st.trace["psi"][:, 0, 0], st.trace["psi"][:, 1, 1]]))
        chains = np.array(chains)
        print("steps from the start: (20-chain mean - stationary mean) / (stationary sd / sqrt(20))")
        names = list(series)[:3]
        for step in (0, 1, 2, 5, 10, 20):
            z = [
                (chains[:, step, k].mean() - stationary[n][0]) / (stationary[n][1] / np.sqrt(20))
                for k, n in enumerate(names)
            ]
            print(f"  step {step:3d}: " + "  ".join(f"{n} {v:+6.2f}" for n, v in zip(names, z, strict=True)))
        print(
            "split-R-hat over 20 chains, steps 20-220: "
            + ", ".join(f"{n} {split_rhat(chains[:, 20:, k]):.3f}" for k, n in enumerate(names))
        )


def profile():
    import cProfile
    import pstats

    data = synthetic()
    model = RandomEffectsNormal()
    cProfile.runctx(
        "time_visit(model, data, 2)",
        globals(),
        {"model": model, "data": data, "time_visit": time_visit},
        "/tmp/re_profile",
    )
    pstats.Stats("/tmp/re_profile").sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    from threadpoolctl import threadpool_limits

    # one BLAS thread, as the engine pins it inside each chain (tiny batched products
    # are slower with threads, and other processes share the cores)
    threadpool_limits(1)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--convergence", action="store_true")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.convergence:
        convergence()
    elif args.profile:
        profile()
    else:
        timings()
