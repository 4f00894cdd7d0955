"""skmlmi._kernels.standardise: the standardised design and its maps between standardisations."""

import numpy as np

from skmlmi._kernels import Standardiser, standardised_to_original


def test_transfer_keeps_the_linear_predictor_and_original_scale_recovers_the_coefficients():
    rng = np.random.default_rng(0)
    X = rng.normal(loc=[3.0, -1e3], scale=[2.0, 50.0], size=(100, 2))
    first, second = Standardiser.fit(X[:60]), Standardiser.fit(X[40:])
    beta = np.array([0.5, 1.0, -2.0])
    t = first.transfer(second)
    np.testing.assert_allclose(second.design(X) @ (t @ beta), first.design(X) @ beta, rtol=1e-12, atol=1e-10)
    # on the data's scale, [1, X] beta_original is the same linear predictor
    b = rng.normal(size=(4, 2))
    original, b_original, psi = standardised_to_original(first, np.array([0, 1]), beta, b, np.eye(2))
    np.testing.assert_allclose(np.column_stack([np.ones(100), X]) @ original, first.design(X) @ beta, rtol=1e-10)
    assert b_original.shape == b.shape and psi.shape == (2, 2)


def test_scale_is_two_standard_deviations_and_constant_columns_stay_unscaled():
    X = np.column_stack([np.arange(10.0), np.full(10, 4.0)])
    std = Standardiser.fit(X)
    np.testing.assert_allclose(std.scale, [2 * np.arange(10.0).std(), 1.0])
    np.testing.assert_allclose(std.design(X)[:, 2], 0.0)
