"""Every conditional model imputes the same values whatever the units of a continuous column.

One parametrised suite over every model (discovered, not listed: a new model without a case
here fails :func:`test_every_model_has_a_scale_case`), driven at the model level as the
engine drives it (``model.draw`` then ``draw.sample``, three visits with the state carried
and the imputations fed back). The properties:

* **Powers of two** (2^33, 2^-33, and the extremes of the accepted range, 2^+-328 ~ 1e+-99,
  with the target and the predictors scaled in opposite directions): multiplying by a power
  of two is exact in floating point, so a model without an absolute constant on the data's
  scale gives bit-identical imputations, up to that factor (same donors, same draws).
* **Other factors and a shift** (x 1e10, x 1e-10; + 1e12): the data themselves are then
  rounded differently, so imputations can only agree up to the propagated rounding. For
  continuous imputations (not donor values) they agree to 1e-6 of the target's SD. For a
  shift by 1e12 the columns have SD ~1000: doubles near 1e12 are 1.2e-4 apart, so the data
  and the imputations carry a rounding of up to 6e-5 = 6e-8 SD each, far below 1e-6 SD (with
  SD 1 it would be 6e-5 SD, and the test would measure the number format, not the model).
  The shift applies to the target and the fixed-effect predictors; a random-slope
  predictor's shift re-defines the random intercept (b_0j is the cluster effect where the
  predictor is 0): RandomEffectsNormal/PMM keep such predictors uncentred, so their
  inverse-Wishart prior on Psi is not invariant to that shift and only the scalings hold
  there (the discrete random-effects models and RandomEffectsPoisson centre every predictor, so the shift holds).
* **Donor and discrete imputations** (PMM, categories) under those factors are compared in
  distribution: 30 replicate draws per arm with independent seeds, the per-replicate mean
  (and, for continuous donors, SD) of the imputations compared by a two-sample
  Kolmogorov-Smirnov test at level 0.001 per statistic (seeded, so deterministic).

The last test drives the engine (``MultilevelIterativeImputer`` with its default models).

``RandomEffectsNormal(prior="pan")`` (and a dict prior) reproduce R's 2l.pan with fixed
numbers on the data's scale and are deliberately not scale-equivariant: they are exempt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from skmlmi import MultilevelIterativeImputer
from skmlmi.conditional import (
    BayesianLogistic,
    BayesianNormal,
    ClusterLevelLogistic,
    ClusterLevelNormal,
    ClusterLevelPMM,
    ClusterMean,
    HeckmanSelection,
    Polytomous,
    PredictiveMeanMatching,
    RandomEffectsCategorical,
    RandomEffectsLogistic,
    RandomEffectsNormal,
    RandomEffectsPMM,
    RandomEffectsPoisson,
)
from skmlmi.conditional.base import DrawContext
from skmlmi.conditional.registry import all_models
from skmlmi.conditional.two_stage import TwoStageLogistic, TwoStageNormal, TwoStagePMM, TwoStagePoisson

POWERS = (2.0**33, 2.0**-33)
EXTREME = 2.0**328  # ~5.5e98: inside the accepted range 1e-100..1e100 (skmlmi._columns._check_scale)
FACTORS = (1e10, 1e-10)
SHIFT = 1e12
SHIFT_SD = 1000.0  # SD of the columns in the shift test (see the module docstring)
REPLICATES = 30
LEVEL = 1e-3


@dataclass
class Case:
    """One model configuration and the data it is tested on."""

    id: str
    make: type
    params: dict = field(default_factory=dict)
    kind: str = "continuous"
    roles: tuple = (2, 1)  # of the columns x1, x2 (and w, cluster level, where present)
    design: str = "row"  # "row", "cluster" (cluster-level target), "heckman", "two_stage"
    groups: bool = True
    n_categories: int = 0
    ordered: bool = False

    @property
    def donors(self) -> bool:
        """Imputations are observed values (PMM) or categories: compared in distribution."""
        pmm = "PMM" in self.make.__name__ or self.make is ClusterMean or self.params.get("pmm", False)
        return pmm or self.kind != "continuous"

    @property
    def slope_columns(self) -> list[int]:
        return [k for k, role in enumerate(self.roles) if role in (2, 4)]

    def model(self):
        return self.make(**self.params)


CASES = [
    Case("BayesianNormal", BayesianNormal, roles=(1, 1), groups=False),
    Case("BayesianNormal-fixed-clusters", BayesianNormal, roles=(1, 1)),
    Case("PredictiveMeanMatching", PredictiveMeanMatching, roles=(1, 1), groups=False),
    Case("PredictiveMeanMatching-fixed-clusters", PredictiveMeanMatching, roles=(1, 1)),
    Case("BayesianLogistic", BayesianLogistic, kind="binary", roles=(1, 1), groups=False, n_categories=2),
    Case("BayesianLogistic-fixed-clusters", BayesianLogistic, kind="binary", roles=(1, 1), n_categories=2),
    Case("Polytomous", Polytomous, kind="categorical", roles=(1, 1), groups=False, n_categories=3),
    Case("Polytomous-fixed-clusters", Polytomous, kind="categorical", roles=(1, 1), n_categories=3),
    Case("ClusterLevelNormal", ClusterLevelNormal, roles=(1, 1), design="cluster"),
    Case("ClusterLevelPMM", ClusterLevelPMM, roles=(1, 1), design="cluster"),
    Case("ClusterLevelLogistic", ClusterLevelLogistic, kind="binary", roles=(1, 1), design="cluster", n_categories=2),
    Case("ClusterMean", ClusterMean, roles=(1, 1), design="cluster"),
    Case("ClusterMean-categorical", ClusterMean, kind="categorical", roles=(1, 1), design="cluster", n_categories=3),
    Case("RandomEffectsNormal", RandomEffectsNormal),
    Case("RandomEffectsNormal-heteroscedastic", RandomEffectsNormal, {"heteroscedastic": True}),
    Case("RandomEffectsNormal-scaled-prior", RandomEffectsNormal, {"prior": "scaled"}),
    Case("RandomEffectsPMM", RandomEffectsPMM),
    Case("RandomEffectsPMM-matchtype2", RandomEffectsPMM, {"matchtype": 2}),
    Case("RandomEffectsLogistic", RandomEffectsLogistic, kind="binary", n_categories=2),
    Case("RandomEffectsCategorical", RandomEffectsCategorical, kind="categorical", n_categories=3),
    Case(
        "RandomEffectsCategorical-ordered", RandomEffectsCategorical, kind="categorical", n_categories=4, ordered=True
    ),
    Case("RandomEffectsPoisson", RandomEffectsPoisson, kind="integer"),
    Case("TwoStageNormal", TwoStageNormal, roles=(1, 1, 1), design="two_stage"),
    Case("TwoStageNormal-reml", TwoStageNormal, {"method": "reml"}, roles=(1, 1, 1), design="two_stage"),
    Case("TwoStagePMM", TwoStagePMM, roles=(1, 1, 1), design="two_stage"),
    Case("TwoStageLogistic", TwoStageLogistic, kind="binary", roles=(1, 1, 1), design="two_stage", n_categories=2),
    Case("TwoStagePoisson", TwoStagePoisson, kind="integer", roles=(1, 1, 1), design="two_stage"),
    Case("HeckmanSelection", HeckmanSelection, roles=(1, -3), design="heckman"),
    Case("HeckmanSelection-pmm", HeckmanSelection, {"pmm": True}, roles=(1, -3), design="heckman"),
    Case("HeckmanSelection-binary", HeckmanSelection, kind="binary", roles=(1, -3), design="heckman", n_categories=2),
    Case("HeckmanSelection-single-level", HeckmanSelection, roles=(1, -3), design="heckman", groups=False),
]
IDS = [case.id for case in CASES]


def _data(case: Case, seed: int = 0):
    """A two-level problem of the case's kind: y, observed, X (x1, x2[, w]) and cluster codes."""
    rng = np.random.default_rng(seed)
    J, n_j = 16, 30
    groups = np.repeat(np.arange(J), n_j)
    n = J * n_j
    x1 = rng.normal(size=n) + 0.5 * rng.normal(size=J)[groups]
    x2 = rng.normal(size=n)
    w = rng.normal(size=J)[groups]  # cluster level
    u = 0.7 * rng.normal(size=J)[groups]
    slope = 1.0 + 0.3 * rng.normal(size=J)[groups]
    linear = 0.5 + slope * x1 - 0.5 * x2 + 0.4 * w + u
    observed = rng.random(n) < 0.7
    if case.design == "cluster":
        X = np.column_stack([x1, w])
        linear = 0.5 + 0.8 * w + 0.5 * rng.normal(size=J)[groups]  # one value per cluster
        observed = (rng.random(J) < 0.7)[groups]
    elif case.design == "two_stage":
        X = np.column_stack([x1, x2, w])
    else:
        X = np.column_stack([x1, x2])
    noise = rng.normal(size=n)
    if case.design == "heckman":  # missing not at random: selection on x1, x2 (excluded) and y's error
        selection = 0.4 + 0.5 * x1 + 1.0 * x2 + 0.6 * noise + 0.8 * rng.normal(size=n)
        observed = selection > 0
        linear = 1.0 + x1 + 0.3 * u
    if case.kind == "continuous":
        y = linear + (0.8 * noise if case.design != "cluster" else 0.0)
    elif case.kind == "binary":
        y = (linear + noise > 0).astype(float)
    elif case.kind == "categorical":
        cuts = np.quantile(linear, np.linspace(0, 1, case.n_categories + 1)[1:-1])
        y = np.digitize(linear + 0.5 * noise * (case.design != "cluster"), cuts).astype(float)
    else:
        y = rng.poisson(np.exp(0.3 + 0.3 * linear)).astype(float)
    if case.design in ("row", "two_stage") and case.make.handles_systematic:
        observed[groups == 0] = False  # a systematically missing cluster: effects from the population
    y = np.where(observed, y, np.nan if case.kind == "continuous" else 0.0)
    y[~observed] = np.nanmean(y) if case.kind == "continuous" else 0.0  # the engine's start fill
    return y, observed, X, groups if case.groups else None


def _context(case: Case, J: int = 16) -> DrawContext:
    return DrawContext(
        target="y",
        kind=case.kind,
        n_categories=case.n_categories,
        ordered=case.ordered,
        n_clusters=J if case.groups else 0,
        predictor_names=("x1", "x2", "w"),
    )


def _impute(case: Case, y, observed, X, groups, seed: int, visits: int = 3) -> np.ndarray:
    """Imputations of the missing rows over ``visits`` chained visits (state and imputations fed back),
    then of 20 rows in two clusters unseen at fit (models that impute those)."""
    y = y.copy()
    rng = np.random.default_rng(seed)
    state, out = None, []
    model = case.model()
    roles = np.array(case.roles)
    rows = ~observed
    for _ in range(visits):
        draw, state = model.draw(y, observed, X, roles, groups, rng, state, _context(case))
        values = draw.sample(X[rows], None if groups is None else groups[rows], rng)
        y[rows] = values
        out.append(values)
    if groups is not None and case.make.requires_groups:
        unseen = groups.max() + 1 + np.arange(20) % 2
        out.append(draw.sample(X[:20], unseen, rng))
    return np.concatenate(out)


def _rescaled(case: Case, y, X, target: float = 1.0, predictors: float = 1.0, shift: float = 0.0):
    """The data in other units: y * target + shift (continuous targets), X * predictors + shift
    (the shift on fixed-effect columns only; see the module docstring)."""
    ys = y * target + shift if case.kind == "continuous" else y
    Xs = X * predictors
    if shift:
        fixed = [
            k
            for k in range(X.shape[1])
            if k not in case.slope_columns
            or case.make in (RandomEffectsLogistic, RandomEffectsCategorical, RandomEffectsPoisson)
        ]
        Xs[:, fixed] += shift
    return ys, Xs


def _back(case: Case, values, target: float = 1.0, shift: float = 0.0):
    return (values - shift) / target if case.kind == "continuous" else values


# --------------------------------------------------------------------------- discovery
def test_every_model_has_a_scale_case():
    covered = {case.make for case in CASES}
    missing = [cls.__name__ for cls in all_models() if cls not in covered]
    assert not missing, f"models without a scale-equivariance case: {missing}"


# --------------------------------------------------------------------------- powers of two
@pytest.mark.parametrize("what", ["target", "predictors"])
@pytest.mark.parametrize("factor", POWERS, ids=["2^33", "2^-33"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_power_of_two_rescaling_gives_bit_identical_imputations(case, factor, what):
    if what == "target" and case.kind != "continuous":
        pytest.skip("a discrete target has no units")
    y, observed, X, groups = _data(case)
    base = _impute(case, y, observed, X, groups, seed=1)
    scales = {"target": factor} if what == "target" else {"predictors": factor}
    ys, Xs = _rescaled(case, y, X, **scales)
    scaled = _impute(case, ys, observed, Xs, groups, seed=1)
    np.testing.assert_array_equal(_back(case, scaled, scales.get("target", 1.0)), base)


@pytest.mark.parametrize("direction", [1, -1], ids=["y~1e-99,X~1e99", "y~1e99,X~1e-99"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_extreme_units_impute_like_unit_scale(case, direction):
    # Target of order 1e-99 with predictors of order 1e99 (and the reverse), inside the accepted
    # range: cross-products of the two kinds of columns and the inverse variances would over- or
    # underflow; the models compute in power-of-two units near each column's SD, so the result is
    # the unit-scale result, bit for bit (the data are exact power-of-two rescalings of it).
    y, observed, X, groups = _data(case)
    base = _impute(case, y, observed, X, groups, seed=2)
    target, predictors = EXTREME ** (-direction), EXTREME**direction
    ys, Xs = _rescaled(case, y, X, target=target, predictors=predictors)
    with np.errstate(over="raise", invalid="raise"):  # no overflow and no NaN, not even silently
        scaled = _impute(case, ys, observed, Xs, groups, seed=2)
    assert np.isfinite(scaled).all()
    np.testing.assert_array_equal(_back(case, scaled, target), base)


# --------------------------------------------------------------------------- other units
def _near_cases():
    return [case for case in CASES if not case.donors]


@pytest.mark.parametrize("change", ["x1e10", "x1e-10", "+1e12"])
@pytest.mark.parametrize("case", _near_cases(), ids=[c.id for c in _near_cases()])
def test_continuous_imputations_agree_to_1e_6_sd_in_other_units(case, change):
    y, observed, X, groups = _data(case)
    if change == "+1e12":
        y, X = y * SHIFT_SD, X * SHIFT_SD
        base = _impute(case, y, observed, X, groups, seed=3)
        ys, Xs = _rescaled(case, y, X, shift=SHIFT)
        back = _back(case, _impute(case, ys, observed, Xs, groups, seed=3), shift=SHIFT)
    else:
        factor = {"x1e10": 1e10, "x1e-10": 1e-10}[change]
        base = _impute(case, y, observed, X, groups, seed=3)
        ys, Xs = _rescaled(case, y, X, target=factor, predictors=factor)
        back = _back(case, _impute(case, ys, observed, Xs, groups, seed=3), factor)
    sd = np.std(y[observed])
    assert np.max(np.abs(back - base)) <= 1e-6 * sd


def _replicate_statistics(case: Case, y, observed, X, groups, seeds, target=1.0, shift=0.0):
    """Per independent replicate (one visit each): mean and SD of the imputations, original units."""
    out = []
    for seed in seeds:
        values = _back(case, _impute(case, y, observed, X, groups, seed=seed, visits=1), target, shift)
        out.append((values.mean(), values.std()))
    return np.array(out)


@pytest.mark.parametrize("change", ["x1e10", "x1e-10", "+1e12"])
@pytest.mark.parametrize("case", [c for c in CASES if c.donors], ids=[c.id for c in CASES if c.donors])
def test_donor_and_discrete_imputations_are_equal_in_distribution_in_other_units(case, change):
    y, observed, X, groups = _data(case)
    target, predictors, shift = {"x1e10": (1e10, 1e10, 0.0), "x1e-10": (1e-10, 1e-10, 0.0), "+1e12": (1.0, 1.0, SHIFT)}[
        change
    ]
    if shift:
        y = y * SHIFT_SD if case.kind == "continuous" else y
        X = X * SHIFT_SD
    base = _replicate_statistics(case, y, observed, X, groups, range(REPLICATES))
    ys, Xs = _rescaled(case, y, X, target=target, predictors=predictors, shift=shift)
    other = _replicate_statistics(case, ys, observed, Xs, groups, range(1000, 1000 + REPLICATES), target, shift)
    statistics = [0, 1] if case.kind == "continuous" else [0]  # mean, and SD of donor values
    for k in statistics:
        p_value = stats.ks_2samp(base[:, k], other[:, k]).pvalue
        assert p_value > LEVEL, (["mean", "sd"][k], p_value)


# --------------------------------------------------------------------------- exemption
def test_pan_prior_is_exempt_and_says_so():
    # prior="pan" reproduces R's 2l.pan: its numbers (Binv = 1, Dinv = I) are on the data's scale,
    # so the imputations of a target in units of 2^-33 are not those of the target in units of 1.
    case = Case("RandomEffectsNormal-pan", RandomEffectsNormal, {"prior": "pan"})
    y, observed, X, groups = _data(case)
    base = _impute(case, y, observed, X, groups, seed=4)
    ys, Xs = _rescaled(case, y, X, target=2.0**-33)
    assert not np.allclose(_back(case, _impute(case, ys, observed, Xs, groups, seed=4), 2.0**-33), base)
    assert "not scale-equivariant" in " ".join(RandomEffectsNormal.__doc__.split())
    # where pan's numbers cannot be represented at the data's scale, a ValueError says so
    ys, Xs = _rescaled(case, y, X, target=EXTREME**-1, predictors=EXTREME)
    with pytest.raises(ValueError, match="prior='weak'"):
        _impute(case, ys, observed, Xs, groups, seed=4)


# --------------------------------------------------------------------------- the engine
def _school_frame(seed: int = 0) -> pd.DataFrame:
    """Pupils in 20 schools: y, x (row level), w (school level), b (binary), each incomplete."""
    rng = np.random.default_rng(seed)
    J, n_j = 20, 15
    school = np.repeat(np.arange(J), n_j)
    n = J * n_j
    u = rng.normal(size=J)[school]
    x = rng.normal(size=n) + 0.5 * u
    w = rng.normal(size=J)[school]
    y = 1 + 0.8 * x + 0.5 * w + u + rng.normal(size=n)
    b = (y + rng.normal(size=n) > 1).astype(float)
    frame = pd.DataFrame({"school": school, "y": y, "x": x, "w": w, "b": b})
    for column, share in (("y", 0.25), ("x", 0.2), ("b", 0.15)):
        frame.loc[rng.random(n) < share, column] = np.nan
    frame.loc[np.isin(school, [2, 5]), "w"] = np.nan
    return frame


@pytest.mark.parametrize("column", ["x", "w"])
def test_engine_with_default_models_is_scale_equivariant(column):
    # MultilevelIterativeImputer with its default models (random-effects normal and logistic,
    # cluster-level PMM): one column in units of 2^33 gives bit-identical completed data (that
    # column divided back), in units of 1e10 data within 1e-6 SD of every column (the rounding of
    # the rescaled column propagates at ~1e-15 SD).
    frame = _school_frame()

    def complete(data):
        imputer = MultilevelIterativeImputer(n_imputations=2, max_iter=3, random_state=1)
        return [completed.copy() for completed in imputer.fit_transform_all(data, groups="school")]

    base = complete(frame)
    for factor, exact in ((2.0**33, True), (1e10, False)):
        scaled = frame.copy()
        scaled[column] = scaled[column] * factor
        for expected, got in zip(base, complete(scaled), strict=True):
            got[column] = got[column] / factor
            for name in ("y", "x", "w", "b"):
                a, b = expected[name].to_numpy(float), got[name].to_numpy(float)
                if exact:
                    np.testing.assert_array_equal(b, a, err_msg=f"{name} with {column} x 2^33")
                else:
                    assert np.max(np.abs(b - a)) <= 1e-6 * np.nanstd(frame[name]), (name, column)
