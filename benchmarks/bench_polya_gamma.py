"""Our Polya-Gamma PG(1, c) sampler against the ``polyagamma`` package's C sampler: speed and law.

Run (``polyagamma`` is not a dependency; install it anywhere on the path)::

    pip install --target /tmp/pgpkg polyagamma
    PYTHONPATH=/tmp/pgpkg:. python benchmarks/bench_polya_gamma.py

Speed: best of 5 whole calls, one draw per element of ``c`` (the shape a Gibbs step asks for:
one tilting per observed row), for c spread as the linear predictors of a logit model and for
c = 0, and the whole draw of a RandomEffectsLogistic visit (n_gibbs = 5, 200 clusters of 50 rows,
80% observed) with each sampler plugged in. Law: two-sample Kolmogorov-Smirnov test between
200,000 draws of each sampler at several c, and each sample's mean against the exact mean
tanh(c/2) / (2c), in Monte Carlo standard errors (exact variance (sinh c - c) / (4 c^3 cosh^2(c/2))).
"""

from __future__ import annotations

import platform
import time

import numpy as np
from scipy import stats

from skmlmi._kernels import polya_gamma, polya_gamma_moments


def _best(fun, repeat=5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fun()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    import polyagamma

    print(f"python {platform.python_version()}, numpy {np.__version__}, polyagamma {polyagamma.__version__}")
    print(f"machine: {platform.machine()} {platform.processor() or ''}".rstrip())
    print("\nspeed (seconds, best of 5; one draw per element)")
    print(f"{'n':>9} {'c':>12} {'skmlmi':>9} {'polyagamma':>11} {'ratio':>7}")
    for n in (1_000, 100_000, 1_000_000):
        for label, c in (
            ("N(0, 2^2)", np.random.default_rng(0).normal(scale=2.0, size=n)),
            ("0", np.zeros(n)),
        ):
            rng_ours, rng_theirs = np.random.default_rng(1), np.random.default_rng(1)
            ours = _best(lambda c=c, rng=rng_ours: polya_gamma(c, rng))
            theirs = _best(lambda c=c, rng=rng_theirs: polyagamma.random_polyagamma(1.0, c, random_state=rng))
            print(f"{n:>9} {label:>12} {ours:>9.4f} {theirs:>11.4f} {ours / theirs:>7.2f}")
    print("\nlaw (200,000 draws each): two-sample KS p-value, mean errors in Monte Carlo SEs")
    print(f"{'c':>6} {'KS D':>8} {'KS p':>7} {'skmlmi z':>9} {'polyagamma z':>13}")
    n = 200_000
    for c0 in (0.0, 0.5, 2.0, 5.0, 20.0, 60.0):
        c = np.full(n, c0)
        ours = polya_gamma(c, np.random.default_rng(11))
        theirs = polyagamma.random_polyagamma(1.0, c, random_state=np.random.default_rng(12))
        test = stats.ks_2samp(ours, theirs)
        mean, var = polya_gamma_moments(np.array([c0]))
        se = np.sqrt(var[0] / n)
        print(
            f"{c0:>6g} {test.statistic:>8.4f} {test.pvalue:>7.3f} {(ours.mean() - mean[0]) / se:>9.2f} "
            f"{(theirs.mean() - mean[0]) / se:>13.2f}"
        )
    print("\nRandomEffectsLogistic: one visit (n_gibbs = 5, 10,000 rows), seconds, best of 5")
    from skmlmi.conditional import random_effects_discrete as red
    from skmlmi.conditional.random_effects_discrete import RandomEffectsLogistic

    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(200), 50)
    x = rng.normal(size=(10_000, 2))
    y = (rng.random(10_000) < 1 / (1 + np.exp(-(x[:, 0] + rng.normal(size=200)[groups])))).astype(float)
    observed = rng.random(10_000) < 0.8
    model = RandomEffectsLogistic()
    _, state = model.draw(y, observed, x, np.array([1, 1]), groups, np.random.default_rng(0))

    def visit():
        model.draw(y, observed, x, np.array([1, 1]), groups, np.random.default_rng(1), state)

    ours = _best(visit)
    original = red.polya_gamma
    red.polya_gamma = lambda c, rng: polyagamma.random_polyagamma(1.0, c, random_state=rng)
    try:
        theirs = _best(visit)
    finally:
        red.polya_gamma = original
    print(f"skmlmi sampler {ours:.4f}, polyagamma sampler {theirs:.4f}, ratio {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
