"""skmlmi._kernels.designs: power-of-two units, redundant (constant and collinear) predictors."""

import numpy as np
import pytest

from skmlmi._kernels import (
    _null_leverage_order,
    find_redundant_columns,
    power_of_two_exponents,
    redundant_columns_from_moments,
    scale_by_powers_of_two,
)

EPS = np.finfo(float).eps


# --------------------------------------------------------------------------- units
def test_scaling_by_powers_of_two_is_ldexp_bit_for_bit():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(1000, 4)) * 10.0 ** rng.integers(-300, 300, size=(1000, 4))
    values[0] = [np.finfo(float).tiny, 5e-324, np.inf, -0.0]
    for exponents in (
        np.array([0, 3, -7, 60]),
        np.array([-900, 900, 12, -40]),
        np.array([1070, -1070, 1, 0]),
        np.zeros(4, int),
    ):
        np.testing.assert_array_equal(scale_by_powers_of_two(values, exponents), np.ldexp(values, exponents))
        out = values.copy()
        scale_by_powers_of_two(out, exponents, out=out)
        np.testing.assert_array_equal(out, np.ldexp(values, exponents))


def test_power_of_two_exponents_put_the_spread_in_one_to_two():
    spread = np.array([1.0, 1.9, 2.0, 0.75, 3e-99, 7e99])
    e = power_of_two_exponents(spread)
    scaled = np.ldexp(spread, -e)
    assert np.all((scaled >= 1.0) & (scaled < 2.0))
    # a zero spread falls back on the magnitude, and to 0 without one
    np.testing.assert_array_equal(power_of_two_exponents(np.array([0.0, 0.0]), np.array([8.0, 0.0])), [3, 0])
    # exactly equivariant: a power-of-two rescaling shifts the exponent and nothing else
    np.testing.assert_array_equal(power_of_two_exponents(np.ldexp(spread, 33)), e + 33)


# --------------------------------------------------------------------------- redundant columns
def _eigen_loop(X, eps=1e-8, maxcor=0.99999):
    """The redundancy check as it was (mice's ``remove.lindep``): one eigendecomposition per dropped column.

    Kept here as the definition the one-factorisation version must reproduce. Also returns
    whether each choice was a tie (two loadings on the smallest eigenvector equal up to
    rounding, as for duplicated columns), where the old choice depended on rounding alone.
    """
    n, p = X.shape
    Xc = X - X.mean(axis=0)
    cov = Xc.T @ Xc / n
    sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
    drop = {int(k): "constant" for k in np.flatnonzero(sd <= 16 * EPS * np.abs(X.mean(axis=0)))}
    alive = np.array([k for k in range(p) if k not in drop], dtype=int)
    tie = False
    if alive.size < 2:
        return drop, tie
    corr = cov[np.ix_(alive, alive)] / np.outer(sd[alive], sd[alive])
    while alive.size >= 2:
        values, vectors = np.linalg.eigh(corr)
        if values[0] > eps * values[-1]:
            break
        loading = np.abs(vectors[:, 0])
        worst = int(np.argmax(loading))
        tie |= bool(np.sort(loading)[-2] > loading[worst] * (1 - 1e-6)) if loading.size > 1 else False
        if np.sum(np.abs(corr[worst]) >= maxcor) > 1:
            drop[int(alive[worst])] = "collinear (|r| >= 0.99999 with another predictor)"
        else:
            drop[int(alive[worst])] = "collinear (linear combination of other predictors)"
        keep = np.arange(alive.size) != worst
        alive, corr = alive[keep], corr[np.ix_(keep, keep)]
    return drop, tie


def _near_collinear(ratio, seed=0, n=60):
    """x3 = x0 - x1/2 + delta e with the correlation matrix's smallest/largest eigenvalue = ``ratio``."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)) * [1.0, 3.0, 0.2, 50.0] + [0.0, 10.0, -4.0, 1e3]
    e = rng.normal(size=n)
    basis = np.column_stack([np.ones(n), X])
    e -= basis @ np.linalg.lstsq(basis, e, rcond=None)[0]
    e /= e.std()
    delta = 1e-3
    for _ in range(30):  # the eigenvalue ratio grows as delta^2
        Z = np.column_stack([X, X[:, 0] - 0.5 * X[:, 1] + delta * e])
        values = np.linalg.eigvalsh(np.corrcoef(Z, rowvar=False))
        delta *= np.sqrt(ratio * values[-1] / values[0])
    return Z


def _designs():
    rng = np.random.default_rng(42)
    n = 40
    x = rng.normal(size=(n, 5)) * [1.0, 2.0, 0.5, 10.0, 1e-3] + [0.0, 5.0, -1.0, 1e4, 0.0]
    yield "sum last", np.column_stack([x, x[:, 0] + x[:, 1]]), {5}
    yield "sum first", np.column_stack([x[:, 0] + x[:, 1], x]), {0}  # the combination goes, wherever it is
    yield "combination of three", np.column_stack([x, 2 * x[:, 0] - x[:, 2] + 0.5 * x[:, 3]]), {5}
    yield "constant", np.column_stack([x, np.full(n, 7.5)]), {5}
    yield "constant and sum", np.column_stack([np.full(n, -1.0), x, x[:, 2] - 500 * x[:, 4]]), {0, 6}
    yield "two separate sums", np.column_stack([x, x[:, 0] + 0.5 * x[:, 1], x[:, 2] - 0.05 * x[:, 3]]), {5, 6}
    yield "dependent sums", np.column_stack([x, x[:, 0] + x[:, 1], x[:, 0] + x[:, 1] + x[:, 2]]), None
    yield "below the tolerance", _near_collinear(0.5e-8), {4}
    yield "above the tolerance", _near_collinear(2e-8), set()
    yield "no collinearity", x, set()


@pytest.mark.parametrize("name, X, expected", list(_designs()), ids=[d[0] for d in _designs()])
def test_one_factorisation_drops_what_the_eigen_loop_dropped(name, X, expected):
    old, tie = _eigen_loop(X)
    new = find_redundant_columns(X)
    assert not tie
    assert new == old  # same columns, same reasons, same order
    if expected is not None:
        assert set(new) == expected


def test_one_factorisation_matches_the_eigen_loop_on_random_designs_with_collinearity():
    rng = np.random.default_rng(7)
    for trial in range(400):
        n, p = int(rng.integers(12, 60)), int(rng.integers(3, 10))
        X = rng.normal(size=(n, p)) * rng.uniform(0.01, 100, p) + rng.uniform(-1e3, 1e3, p)
        k, a, b = rng.choice(p, 3, replace=False)
        noise = [0.0, 1e-7, 1e-5, 1e-3][trial % 4]  # exact, near, at and beyond the tolerance
        X[:, k] = X[:, a] * rng.normal() + X[:, b] * rng.normal() + noise * X[:, a].std() * rng.normal(size=n)
        if trial % 5 == 0:
            X[:, rng.integers(p)] = 2.5
        old, tie = _eigen_loop(X)
        if not tie:
            assert find_redundant_columns(X) == old, trial


def test_of_duplicated_columns_the_first_stays():
    # The eigen loop chose between duplicates by rounding (a tie of +-0.7071 loadings); now the later goes.
    rng = np.random.default_rng(1)
    for _ in range(50):
        X = rng.normal(size=(30, 5)) * rng.uniform(0.1, 10, 5)
        a, b = np.sort(rng.choice(5, 2, replace=False))
        X[:, b] = -2 * X[:, a] + 1
        assert find_redundant_columns(X) == {int(b): "collinear (|r| >= 0.99999 with another predictor)"}
    X = rng.normal(size=(30, 3))
    X = np.column_stack([X, X[:, 1], X[:, 1], X[:, 0]])
    assert sorted(find_redundant_columns(X)) == [3, 4, 5]


@pytest.mark.parametrize("n, p", [(30, 400), (400, 60), (60, 100)])
def test_redundancy_check_factorises_once_not_once_per_dropped_column(monkeypatch, n, p):
    calls = []
    for name in ("eigh", "svd"):
        original = getattr(np.linalg, name)
        monkeypatch.setattr(np.linalg, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, p))
    X[:, p // 2 :] = X[:, : p - p // 2] @ rng.normal(size=(p - p // 2, p - p // 2)) if n > p else X[:, p // 2 :]
    dropped = find_redundant_columns(X)
    assert len(dropped) >= min(p - n + 1, p // 2)
    assert len(calls) <= 2  # one factorisation, one check of the kept columns


def test_rows_and_correlation_matrix_give_the_same_columns_for_wide_data():
    # More columns than twice the rows: the rows are factorised, not the p x p correlation matrix.
    rng = np.random.default_rng(5)
    for _ in range(60):
        n = int(rng.integers(4, 30))
        p = int(rng.integers(2 * n + 1, 5 * n + 5))
        X = rng.normal(size=(n, p)) * rng.uniform(0.1, 10, p) + rng.uniform(-100, 100, p)
        X[:, 3] = 2 * X[:, 0]
        X[:, 2] = 5.0
        Xc = X - X.mean(axis=0)
        from_moments = redundant_columns_from_moments(X.mean(axis=0), Xc.T @ Xc / n)
        assert find_redundant_columns(X) == from_moments
        assert len(from_moments) == p - (n - 1)  # n rows and an intercept support n - 1 columns


def test_null_space_and_row_space_updates_choose_the_same_columns():
    rng = np.random.default_rng(3)
    for _ in range(60):
        n = int(rng.integers(5, 40))
        X = rng.normal(size=(n, int(rng.integers(n + 1, 3 * n + 5))))
        X[:, 1] = X[:, 0]
        Z = (X - X.mean(axis=0)) / X.std(axis=0)
        values, vectors = np.linalg.eigh(Z.T @ Z / n)
        d = int(np.count_nonzero(values <= 1e-8 * values[-1]))
        assert _null_leverage_order(null_basis=vectors[:, :d]) == _null_leverage_order(row_basis=vectors[:, d:])
