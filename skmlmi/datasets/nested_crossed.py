"""Example data with several grouping factors: three-level nested (egsingle, Pastes) and crossed (InstEval).

Byte-identical copies of the R exports (``egsingle.csv`` and ``insteval.csv`` gzip-compressed),
read with the factor coding R's packages give them, so that lme4 formulas give lme4's
coefficient names (``femaleMale``, ``black1``, ``service1``). Provenance: ``data/PROVENANCE.md``.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["load_egsingle", "load_insteval", "load_pastes"]


def _read(name: str, **kwargs) -> pd.DataFrame:
    with resources.files(__package__).joinpath("data", name).open("rb") as handle:
        return pd.read_csv(handle, **kwargs)


def _factor(series: pd.Series, categories=None, ordered: bool = False) -> pd.Categorical:
    categories = sorted(series.dropna().unique()) if categories is None else categories
    return pd.Categorical(series, categories=categories, ordered=ordered)


def load_egsingle() -> pd.DataFrame:
    """Mathematics scores of pupils over school years: years within children within schools (three levels).

    7230 test results of 1721 children in 60 schools, from the U.S. Sustaining Effects Study
    (a subset distributed with the HLM software: Bryk, Raudenbush and Congdon 1996; converted
    to R by Doran and Lockwood 2004). Source: R package mlmRev 1.0-8 (``egsingle``), GPL (>= 2);
    exported by R 4.2.2 with ``write.csv``. Complete (no missing values).

    Columns, with R's types: ``schoolid`` and ``childid`` (categorical; child ids are unique
    across schools), ``year`` (centred test year, -2.5 to 2.5), ``grade``, ``math`` (IRT scale
    score), ``retained`` (categorical 0/1), ``female`` (categorical Female/Male, reference
    Female as in R, so the coefficient is ``femaleMale``), ``black`` and ``hispanic``
    (categorical 0/1: coefficients ``black1``, ``hispanic1``), ``size`` (school enrolment),
    ``lowinc`` (% low income) and ``mobility`` (school level).

    Returns
    -------
    DataFrame of shape (7230, 12)

    Examples
    --------
    >>> from skmlmi.datasets import load_egsingle
    >>> data = load_egsingle()
    >>> data.shape, data["schoolid"].nunique(), data["childid"].nunique()
    ((7230, 12), 60, 1721)
    """
    data = _read("egsingle.csv.gz", compression="gzip", dtype={"schoolid": str, "childid": str})
    for column in ("schoolid", "childid"):
        data[column] = _factor(data[column])
    for column in ("retained", "black", "hispanic"):
        data[column] = _factor(data[column], [0, 1])
    data["female"] = _factor(data["female"], ["Female", "Male"])
    return data


def load_insteval() -> pd.DataFrame:
    """Student evaluations of lectures at ETH Zurich: students crossed with lecturers.

    73,421 ratings by 2972 students (``s``) of 1128 lecturers (``d``): a cross-classified
    design, each student rating several lecturers and each lecturer rated by many students.
    Anonymised and slightly simplified on purpose by the source. Source: R package lme4 1.1-31
    (``InstEval``), GPL (>= 2); exported by R 4.2.2 with ``write.csv``. Complete.

    Columns, with R's types: ``s``, ``d``, ``dept`` (categorical, 14 departments),
    ``studage`` (ordered 2 < 4 < 6 < 8, semesters enrolled), ``lectage`` (ordered 1-6),
    ``service`` (categorical 0/1, lecture held for another department: coefficient
    ``service1``), ``y`` (rating 1-5).

    Returns
    -------
    DataFrame of shape (73421, 7)

    Examples
    --------
    >>> from skmlmi.datasets import load_insteval
    >>> data = load_insteval()
    >>> data.shape, data["s"].nunique(), data["d"].nunique()
    ((73421, 7), 2972, 1128)
    """
    data = _read("insteval.csv.gz", compression="gzip")
    for column in ("s", "d", "dept"):
        data[column] = _factor(data[column])
    for column in ("studage", "lectage"):
        data[column] = _factor(data[column], ordered=True)
    data["service"] = _factor(data["service"], [0, 1])
    return data


def load_pastes() -> pd.DataFrame:
    """Strength of a chemical paste: casks within batches (three levels, two assays per cask).

    60 assays: 10 batches (``batch`` A-J), 3 casks per batch (``cask`` a-c: the labels REPEAT
    across batches, so the cask factor is ``batch:cask``, 30 samples, as lme4's
    ``(1 | batch/cask)`` makes it), 2 assays per cask. From Davies and Goldsmith (eds, 1972),
    Statistical Methods in Research and Production, 4th ed., section 6.5. Source: R package
    lme4 1.1-31 (``Pastes``), GPL (>= 2); exported by R 4.2.2 with ``write.csv``. Complete.

    Columns: ``strength``, ``batch``, ``cask`` and ``sample`` (= batch:cask), categorical.

    Returns
    -------
    DataFrame of shape (60, 4)

    Examples
    --------
    >>> from skmlmi.datasets import load_pastes
    >>> data = load_pastes()
    >>> data.shape, data["cask"].nunique(), data["sample"].nunique()
    ((60, 4), 3, 30)
    """
    data = _read("pastes.csv")
    for column in ("batch", "cask", "sample"):
        data[column] = _factor(data[column])
    return data
