"""Individual participant data with systematically missing variables: IMPACT and IPDNa.

* :func:`load_impact`: the complete IMPACT traumatic brain injury data (R package
  metamisc), 11,022 patients in 15 studies;
* :func:`load_impact_incomplete`: the same with missing values made by
  :func:`skmlmi.ampute.ampute` -- ``ct`` systematically missing in 3 studies and
  sporadically missing (MAR) elsewhere, ``pupil`` sporadically missing (MAR), ``hypots``
  systematically missing in 2 studies -- so that imputations can be checked against
  the complete data;
* :func:`load_ipdna`: real heart-failure IPD from 28 centres with systematically missing
  ``bnp`` (R package micemd).

The data are the R packages' own (see ``data/PROVENANCE.md``); cite the sources.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

from .._random import as_generator
from ..ampute import ampute

__all__ = ["load_impact", "load_impact_incomplete", "load_ipdna"]

#: Factor levels of IMPACT as R's metamisc stores them (``ct`` is an ordered classification).
IMPACT_LEVELS: dict[str, tuple[list[str], bool]] = {
    "type": (["OBS", "RCT"], False),
    "motor_score": (["1/2", "3", "4", "5/6"], False),
    "pupil": (["Both", "None", "One"], False),
    "ct": (["I/II", "III", "IV/V"], True),
}


def _read(name: str, **kwargs) -> pd.DataFrame:
    with resources.files(__package__).joinpath("data", name).open("rb") as handle:
        return pd.read_csv(handle, **kwargs)


def load_impact() -> pd.DataFrame:
    """Complete IMPACT traumatic brain injury data (R package metamisc, ``impact``).

    11,022 patients clustered in 15 studies (Steyerberg et al. 2008; Debray & de Jong,
    metamisc, GPL-3). The data were imputed once by their publishers, so they are
    complete. Columns:

    ========== ============================================================================
    name       study (cluster; 15 levels, a string column)
    type       categorical: OBS (observational cohort), RCT (trial) -- constant per study
    age        int, years
    motor_score categorical: Glasgow Coma Scale motor score "1/2", "3", "4", "5/6"
    pupil      categorical: pupillary reactivity "Both", "None", "One"
    ct         ordered categorical: Marshall CT classification "I/II" < "III" < "IV/V"
    hypox      int 0/1, hypoxia
    hypots     int 0/1, hypotension
    tsah       int 0/1, traumatic subarachnoid haemorrhage
    edh        int 0/1, epidural haematoma
    mort       int 0/1, 6-month mortality
    ========== ============================================================================

    The categorical levels are R's (its factor levels in that order), so that treatment
    contrasts use R's reference levels. Note that the pupil level "None" is a value, not
    a missing value (the CSV is read without pandas' default NA strings).

    Returns
    -------
    DataFrame of shape (11022, 11)

    Examples
    --------
    >>> from skmlmi.datasets.impact import load_impact
    >>> data = load_impact()
    >>> data.shape, data["name"].nunique(), int(data.isna().sum().sum())
    ((11022, 11), 15, 0)
    >>> list(data["ct"].cat.categories), data["ct"].cat.ordered
    (['I/II', 'III', 'IV/V'], True)
    """
    data = _read("impact.csv", keep_default_na=False, na_values=[""])
    for column, (levels, ordered) in IMPACT_LEVELS.items():
        data[column] = pd.Categorical(data[column], categories=levels, ordered=ordered)
    return data


def load_impact_incomplete(random_state: int | np.random.Generator | None = 2022) -> pd.DataFrame:
    """IMPACT with systematically and sporadically missing values, made with :func:`~skmlmi.ampute.ampute`.

    Starting from :func:`load_impact`, in this order (one generator seeded by ``random_state``):

    1. sporadic MAR amputation of ``ct`` and ``pupil``: 30 % of the rows are made
       incomplete (patterns: ``ct`` alone, ``pupil`` alone, both, with frequencies 0.4,
       0.4, 0.2), with probabilities rising with a weighted sum score of
       ``age + mort + 0.5 motor_score + 0.5 tsah + 0.5 edh`` (standardised; motor score
       through its level order, so worse scores -- lower levels -- are missing less often),
       and cluster-varying rates (logit-scale study effects with SD 0.5);
    2. systematic amputation: ``ct`` is removed in 3 studies and ``hypots`` in 2 studies,
       drawn at random.

    About 36 % of ``ct``, 18 % of ``pupil`` and 17 % of ``hypots`` are missing for the
    default seed (the exact shares depend on the studies drawn). The missingness is MAR
    given the analysis variables ``age``, ``mort`` and ``motor_score`` and the auxiliaries
    ``tsah`` and ``edh``, so an imputation model with those predictors recovers the
    complete-data estimates.

    Parameters
    ----------
    random_state : int, Generator or None, default=2022
        Seed of the amputation; the same seed gives the same data.

    Returns
    -------
    DataFrame of shape (11022, 11)
        Same columns and dtypes as :func:`load_impact` (``hypots`` becomes float64 to hold
        NaN).

    Examples
    --------
    >>> from skmlmi.datasets.impact import load_impact_incomplete
    >>> data = load_impact_incomplete(random_state=1)
    >>> systematic = data.isna().groupby(data["name"]).all()
    >>> int(systematic["ct"].sum()), int(systematic["hypots"].sum()), int(systematic["pupil"].sum())
    (3, 2, 0)
    """
    complete = load_impact()
    rng = as_generator(random_state)
    sporadic = ampute(
        complete,
        groups="name",
        prop=0.3,
        mechanism="MAR",
        patterns=[["ct"], ["pupil"], ["ct", "pupil"]],
        freq=[0.4, 0.4, 0.2],
        weights={"age": 1.0, "mort": 1.0, "motor_score": 0.5, "tsah": 0.5, "edh": 0.5},
        cluster_variation=0.5,
        random_state=rng,
    )
    return ampute(sporadic, groups="name", prop=0.0, systematic_clusters={"ct": 3, "hypots": 2}, random_state=rng)


def load_ipdna() -> pd.DataFrame:
    """Heart-failure individual participant data with systematically missing values (R package micemd, ``IPDNa``).

    11,685 patients from 28 centres (micemd 1.10.1, GPL-2/3; Audigier et al. 2018). Columns:
    ``centre`` (cluster, int), ``gender`` (int 0/1), ``bmi``, ``age``, ``sbp``, ``dbp``,
    ``hr``, ``lvef`` (floats), ``bnp`` (float, log scale as shipped), ``afib`` (float 0/1,
    atrial fibrillation). Missing: ``bnp`` 8,931 (systematically missing in 10 centres),
    ``bmi`` 2,428, ``afib`` 550, ``age`` 429, ``dbp`` 423, ``sbp`` 407, ``hr`` 170.

    Returns
    -------
    DataFrame of shape (11685, 10)

    Examples
    --------
    >>> from skmlmi.datasets.impact import load_ipdna
    >>> data = load_ipdna()
    >>> data.shape, int(data["bnp"].isna().groupby(data["centre"]).all().sum())
    ((11685, 10), 10)
    """
    return _read("IPDNa.csv")
