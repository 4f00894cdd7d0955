"""skmlmi._random: one way from a user's random_state to a numpy Generator."""

import numpy as np
import pytest

from skmlmi._random import as_generator


def test_seeds_generators_and_sequences_give_the_streams_numpy_gives():
    expected = np.random.default_rng(7).random(3)
    np.testing.assert_array_equal(as_generator(7).random(3), expected)
    np.testing.assert_array_equal(as_generator(np.random.SeedSequence(7)).random(3), expected)
    rng = np.random.default_rng(7)
    assert as_generator(rng) is rng  # a Generator is used as it is, its state advancing
    assert isinstance(as_generator(None), np.random.Generator)


def test_a_legacy_random_state_seeds_a_generator_reproducibly():
    a = as_generator(np.random.RandomState(3)).random(4)
    b = as_generator(np.random.RandomState(3)).random(4)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad", [True, -1, 1.5, "7"])
def test_anything_else_is_a_type_error_naming_it(bad):
    with pytest.raises(TypeError, match="random_state must be"):
        as_generator(bad)
