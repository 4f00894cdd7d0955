"""Data for the Heckman selection model: a known-truth simulator and the obesity and hiv examples.

* :func:`make_heckman` simulates clustered data whose outcome is missing not at random
  under a selection model with known parameters;
* :func:`load_obesity` and :func:`load_hiv` load the case-study data of the tutorial
  (R packages miceheckman and GJRM; provenance in ``data/PROVENANCE.md``);
* :func:`interviewer_effect` derives the hiv exclusion restriction (each interviewer's
  effect on consent to the HIV test) as the tutorial does.
"""

from __future__ import annotations

from importlib import resources
from numbers import Integral, Real

import numpy as np
import pandas as pd
from scipy import special
from sklearn.utils import Bunch
from sklearn.utils._param_validation import validate_params

from .._random import as_generator
from ..analysis.mixed import LogisticMixedModel
from .simulate import _check_size

__all__ = ["make_heckman", "load_obesity", "load_hiv", "interviewer_effect"]

_HIV_CATEGORICAL = (
    "region",
    "marital",
    "std",
    "age1sex_cat",
    "highhiv",
    "partner",
    "condom",
    "aidscare",
    "knowsdiedofaids",
    "evertestedHIV",
    "smoke",
    "religion",
    "ethnicity",
    "language",
    "interviewerID",
)


def _read(name: str, **kwargs) -> pd.DataFrame:
    with resources.files(__package__).joinpath("data", name).open("rb") as handle:
        return pd.read_csv(handle, **kwargs)


@validate_params(
    {
        "n_clusters": [Integral],
        "cluster_size": [Integral],
        "rho": [Real],
        "missing_prop": [Real],
        "exclusion": ["boolean"],
        "random_state": [np.random.Generator, "random_state"],
        "return_truth": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def make_heckman(
    n_clusters: int = 15,
    cluster_size: int = 200,
    rho: float = 0.6,
    missing_prop: float = 0.4,
    exclusion: bool = True,
    random_state: int | np.random.Generator | None = None,
    return_truth: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame, Bunch]:
    """Clustered data with an outcome missing not at random under a Heckman selection model.

    For row i of cluster j (j = 1..J):

    .. math::

        y_{ij} &= \\beta_0 + b_j + \\beta_1 x_{ij} + \\sigma \\varepsilon_{ij}, \\\\
        s_{ij} &= 1\\{\\gamma_0 + a_j + \\gamma_1 x_{ij} + \\gamma_2 z_{ij} + u_{ij} > 0\\},

    with ``x, z ~ N(0, 1)`` independent, cluster intercepts ``b_j ~ N(0, 0.5^2)`` and
    ``a_j ~ N(0, 0.3^2)``, ``(u, eps)`` standard bivariate normal with correlation ``rho``,
    ``beta = (1, 0.5)``, ``sigma = 1``, ``gamma_1 = 0.5``, ``gamma_2 = 1`` (the exclusion
    restriction: z moves selection, not the outcome; 0 and no ``z`` column when
    ``exclusion=False``), and ``gamma_0`` set so that the expected share of missing
    ``y`` (``s = 0``) is ``missing_prop``. With ``rho > 0`` the missing values are the
    low ones even given x and z, so the observed mean and every MAR imputation
    overstate the mean of y, and the slope of x is attenuated.

    Parameters
    ----------
    n_clusters : int, default=15
    cluster_size : int, default=200
    rho : float in (-1, 1), default=0.6
        Correlation of the selection and outcome errors (0: missing at random given x, z).
    missing_prop : float in (0, 1), default=0.4
        Expected share of missing outcomes.
    exclusion : bool, default=True
        Whether selection depends on the extra predictor z.
    random_state : int, Generator or None
    return_truth : bool, default=False
        Also return the complete data and the true parameters.

    Returns
    -------
    data : DataFrame with columns ``cluster`` (0..J-1), ``x``, ``z`` (if ``exclusion``), ``y``
        The incomplete data (y NaN where s = 0).
    complete : DataFrame
        Only with ``return_truth``: the same data with every y.
    truth : Bunch
        Only with ``return_truth``: ``beta`` (intercept, slope), ``sigma``, ``rho``,
        ``gamma`` (intercept, x, z), ``outcome_intercept_sd``, ``selection_intercept_sd``,
        ``outcome_intercepts`` (b_j), ``selection_intercepts`` (a_j), ``mean_y`` (the
        population mean of y, beta_0), ``sd_y`` (its population SD) and ``missing_share``.

    Examples
    --------
    >>> data, complete, truth = make_heckman(n_clusters=4, cluster_size=50, random_state=0, return_truth=True)
    >>> data.shape, list(data.columns), truth.rho
    ((200, 4), ['cluster', 'x', 'z', 'y'], 0.6)
    >>> bool(data["y"].mean() > complete["y"].mean())  # the missing values are the low ones
    True
    """
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, Integral) or n_clusters < 1:
        raise ValueError(f"n_clusters must be a positive integer; got {n_clusters!r}.")
    if isinstance(cluster_size, bool) or not isinstance(cluster_size, Integral) or cluster_size < 1:
        raise ValueError(f"cluster_size must be a positive integer; got {cluster_size!r}.")
    _check_size(int(n_clusters) * int(cluster_size))
    if not -1 < rho < 1:
        raise ValueError(f"rho must lie in (-1, 1); got {rho!r}.")
    if not 0 < missing_prop < 1:
        raise ValueError(f"missing_prop must lie in (0, 1); got {missing_prop!r}.")
    rng = as_generator(random_state)
    J, m = int(n_clusters), int(cluster_size)
    n = J * m
    beta = np.array([1.0, 0.5])
    sigma = 1.0
    b_sd, a_sd = 0.5, 0.3
    gamma_x, gamma_z = 0.5, (1.0 if exclusion else 0.0)
    # P(s = 0) = Phi(-gamma_0 / sd(linear predictor + u)) = missing_prop
    total_sd = np.sqrt(1.0 + a_sd**2 + gamma_x**2 + gamma_z**2)
    gamma_0 = -total_sd * special.ndtri(missing_prop)
    cluster = np.repeat(np.arange(J), m)
    b = rng.normal(0.0, b_sd, J)
    a = rng.normal(0.0, a_sd, J)
    x = rng.standard_normal(n)
    z = rng.standard_normal(n)
    u = rng.standard_normal(n)
    eps = rho * u + np.sqrt(1.0 - rho**2) * rng.standard_normal(n)
    y = beta[0] + b[cluster] + beta[1] * x + sigma * eps
    s = gamma_0 + a[cluster] + gamma_x * x + gamma_z * z + u > 0
    complete = pd.DataFrame({"cluster": cluster, "x": x, "z": z, "y": y})
    if not exclusion:
        complete = complete.drop(columns="z")
    data = complete.copy()
    data.loc[~s, "y"] = np.nan
    if not return_truth:
        return data
    truth = Bunch(
        beta=beta,
        sigma=sigma,
        rho=float(rho),
        gamma=np.array([gamma_0, gamma_x, gamma_z]),
        outcome_intercept_sd=b_sd,
        selection_intercept_sd=a_sd,
        outcome_intercepts=b,
        selection_intercepts=a,
        mean_y=float(beta[0]),
        sd_y=float(np.sqrt(b_sd**2 + beta[1] ** 2 + sigma**2)),
        missing_share=float(1.0 - s.mean()),
    )
    return data, complete, truth


def load_obesity() -> pd.DataFrame:
    """Obesity data with body weight missing not at random (R package miceheckman, ``obesity``).

    2111 respondents in 5 clusters. Columns: ``Gender`` (categorical 0/1), ``Age``
    (66 missing), ``Height`` (m, 365 missing), ``FAVC`` (frequent consumption of
    high-calorie food, categorical 0/1, 365 missing), ``Weight`` (kg, 790 missing, MNAR;
    entirely missing in cluster 5), ``Time`` (the exclusion restriction of the Heckman
    model: it affects whether weight is reported, not weight itself) and ``Cluster``.
    Source: miceheckman (GPL >= 3).

    Returns
    -------
    DataFrame of shape (2111, 7)

    Examples
    --------
    >>> data = load_obesity()
    >>> data.shape, int(data["Weight"].isna().sum()), str(data["Gender"].dtype)
    ((2111, 7), 790, 'category')
    """
    data = _read("obesity.csv")
    for column in ("Gender", "FAVC"):
        data[column] = pd.Categorical(data[column].astype("Int64"), categories=[0, 1])
    return data


def load_hiv() -> pd.DataFrame:
    """HIV data with test results missing for those who refused the test (R package GJRM, ``hiv``).

    6416 respondents in 9 regions (simulated from the Zambian Demographic and Health
    Survey, GJRM's ``hiv``). ``hiv`` (0/1) is missing (1318 rows) exactly where
    ``hivconsent`` is 0: people who refuse the test may differ in HIV status (MNAR).
    The other columns: ``age``, ``education`` (years), ``wealth``, ``region`` (the
    cluster), ``marital``, ``std``, ``age1sex_cat``, ``highhiv``, ``partner``,
    ``condom``, ``aidscare``, ``knowsdiedofaids``, ``evertestedHIV``, ``smoke``,
    ``religion``, ``ethnicity``, ``language``, ``interviewerID`` (91 interviewers) and
    ``sw`` (survey weight). Text columns, ``region`` and ``interviewerID`` are pandas
    categoricals. Source: GJRM (GPL >= 2).

    Returns
    -------
    DataFrame of shape (6416, 21)

    Examples
    --------
    >>> data = load_hiv()
    >>> data.shape, int(data["hiv"].isna().sum()), data["region"].nunique()
    ((6416, 21), 1318, 9)
    """
    data = _read("hiv.csv")
    for column in _HIV_CATEGORICAL:
        data[column] = data[column].astype("category")
    return data


def interviewer_effect(
    data: pd.DataFrame,
    consent: str = "hivconsent",
    interviewer: str = "interviewerID",
    adjust: tuple[str, ...] = ("region", "language"),
    name: str = "interviewer_effect",
) -> pd.Series:
    """Each interviewer's effect on consent: the exclusion restriction of the hiv case study.

    Fits the random-intercept logistic model (lme4: ``glmer(consent ~ region + language +
    (1 | interviewerID), family = binomial)``, here
    :class:`skmlmi.analysis.LogisticMixedModel`, Laplace approximation)

    .. math::

        \\operatorname{logit} P(\\text{consent}_{i} = 1) = x_i'\\beta + b_{k(i)}, \\qquad
        b_k \\sim N(0, \\tau^2),

    and returns, for every row, the predicted effect ``b_k`` (conditional mode) of its
    interviewer k. An interviewer's persuasiveness moves consent to the test but not HIV
    status, so it can enter the selection equation only (role ``-3``). Interviewers are
    not assigned at random, so the model adjusts for ``adjust`` (region and language), as
    in the tutorial and Munoz et al. (2023).

    Parameters
    ----------
    data : DataFrame
        Must hold ``consent`` (0/1), ``interviewer`` and the ``adjust`` columns, complete.
    consent, interviewer : str
        Column names of the response indicator and of the interviewer identifier.
    adjust : tuple of str, default=("region", "language")
        Fixed effects of the consent model (categorical columns become dummies).
    name : str, default="interviewer_effect"
        Name of the returned Series.

    Returns
    -------
    Series aligned with ``data.index``: the interviewer effect (log-odds scale) of each row.

    Examples
    --------
    >>> data = load_hiv()
    >>> effect = interviewer_effect(data)  # doctest: +SKIP
    >>> data = data.assign(interviewer_effect=effect)  # doctest: +SKIP
    """
    if isinstance(adjust, str):  # one column, not its letters
        adjust = (adjust,)
    missing = [c for c in (consent, interviewer, *adjust) if c not in data.columns]
    if missing:
        raise ValueError(f"interviewer_effect: data has no column(s) {missing}.")
    incomplete = [c for c in (consent, interviewer, *adjust) if data[c].isna().any()]
    if incomplete:
        raise ValueError(
            f"interviewer_effect: column(s) {incomplete} have missing values; the consent model needs them complete."
        )
    frame = pd.DataFrame(
        {
            "consent_": pd.to_numeric(data[consent]).astype(float),
            "interviewer_": data[interviewer].astype(str).to_numpy(),
        },
        index=data.index,
    )
    terms = []
    for k, column in enumerate(adjust):
        frame[f"adjust{k}_"] = (
            data[column].astype(str)
            if not pd.api.types.is_numeric_dtype(data[column]) or isinstance(data[column].dtype, pd.CategoricalDtype)
            else data[column]
        )
        terms.append(f"adjust{k}_")
    formula = f"consent_ ~ {' + '.join(terms) if terms else '1'} + (1 | interviewer_)"
    fit = LogisticMixedModel(formula).fit(frame)
    effects = fit.random_effects_["Intercept"]
    effects.index = effects.index.astype(str)
    return pd.Series(effects.reindex(frame["interviewer_"]).to_numpy(), index=data.index, name=name)
