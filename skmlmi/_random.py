"""One way from a user's ``random_state`` to a numpy Generator (simulators, amputation)."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.utils import check_random_state


def as_generator(random_state) -> np.random.Generator:
    """A Generator from an int, None, a Generator, a SeedSequence or a legacy RandomState.

    A legacy RandomState seeds a new Generator from one of its integers (scikit-learn's
    convention); anything else is a TypeError naming the value.
    """
    if isinstance(random_state, np.random.RandomState):
        legacy = check_random_state(random_state)
        return np.random.default_rng(legacy.randint(np.iinfo(np.int32).max))
    known = random_state is None or isinstance(random_state, Integral | np.random.Generator | np.random.SeedSequence)
    try:
        if known and not isinstance(random_state, bool):
            return np.random.default_rng(random_state)
    except ValueError:  # a negative seed
        pass
    raise TypeError(
        "random_state must be an int, a numpy Generator or SeedSequence, a RandomState, or None; "
        f"got {random_state!r:.40}."
    )
