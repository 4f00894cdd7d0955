"""Example datasets shipped with skmlmi, and simulators with known truth.

The data are the R packages' own (see ``data/PROVENANCE.md`` beside this file); cite the
sources when you use them.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = [
    "interviewer_effect",
    "load_egsingle",
    "load_hiv",
    "load_impact",
    "load_impact_incomplete",
    "load_insteval",
    "load_ipdna",
    "load_obesity",
    "load_pastes",
    "load_popmis",
    "make_heckman",
    "make_multilevel",
]


def _read(name: str, **kwargs) -> pd.DataFrame:
    with resources.files(__package__).joinpath("data", name).open("rb") as handle:
        return pd.read_csv(handle, **kwargs)


def load_popmis() -> pd.DataFrame:
    """Pupil popularity data with missing popularity scores (R package mice, ``popmis``).

    2000 pupils in 100 schools, simulated after Hox (2010). Columns: ``pupil``,
    ``school`` (cluster), ``popular`` (0-10, 848 missing, MAR), ``sex`` (0 boy, 1 girl),
    ``texp`` (teacher experience, constant within school), ``const``, ``teachpop``.
    Source: mice 3.15 (GPL-2/3).

    Returns
    -------
    DataFrame of shape (2000, 7)

    Examples
    --------
    >>> from skmlmi.datasets import load_popmis
    >>> data = load_popmis()
    >>> data.shape, int(data["popular"].isna().sum()), data["school"].nunique()
    ((2000, 7), 848, 100)
    """
    return _read("popmis.csv")


from .heckman import interviewer_effect, load_hiv, load_obesity, make_heckman  # noqa: E402
from .impact import load_impact, load_impact_incomplete, load_ipdna  # noqa: E402
from .nested_crossed import load_egsingle, load_insteval, load_pastes  # noqa: E402
from .simulate import make_multilevel  # noqa: E402
