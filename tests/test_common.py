"""scikit-learn's estimator checks over every public estimator of skmlmi.

Estimators are discovered (sklearn.utils.discovery-style walk over the package), not
listed by hand; expected failures are listed here, in one place, with the reason.
"""

import inspect
import pkgutil

from sklearn.base import BaseEstimator
from sklearn.utils.estimator_checks import parametrize_with_checks

import skmlmi
from skmlmi import MIPooler, MultilevelIterativeImputer
from skmlmi.conditional.base import BaseConditionalImputer

FORMULA_MODELS = (
    "formula models are fitted on a DataFrame holding the formula's named columns; the checks pass unnamed arrays"
)
#: estimator class name -> {check name: why skmlmi deliberately differs}
EXPECTED_FAILURES: dict[str, dict[str, str]] = {
    "MultilevelIterativeImputer": {},
    "MIPooler": {},
}


def _public_estimators():
    """Every public BaseEstimator subclass of skmlmi except the conditional models.

    Conditional models are not transformers (DESIGN §4); they have their own contract
    suite in tests/conditional/test_contract.py.
    """
    import importlib

    found = {}
    for module in pkgutil.walk_packages(skmlmi.__path__, "skmlmi."):
        if any(part.startswith("_") for part in module.name.split(".")[1:]):
            continue
        for name, obj in inspect.getmembers(importlib.import_module(module.name), inspect.isclass):
            if (
                issubclass(obj, BaseEstimator)
                and not issubclass(obj, BaseConditionalImputer)
                and not name.startswith("_")
                and obj.__module__.startswith("skmlmi")
                and not inspect.isabstract(obj)
            ):
                found[name] = obj
    return found


def _instances():
    from sklearn.linear_model import Ridge

    out = []
    for name in sorted(_public_estimators()):
        if name == "MultilevelIterativeImputer":
            out.append(MultilevelIterativeImputer(n_imputations=2, max_iter=2, random_state=0))
        elif name == "MIPooler":
            out.append(MIPooler(MultilevelIterativeImputer(n_imputations=2, max_iter=1, random_state=0), Ridge()))
    return out


def test_every_public_estimator_is_checked():
    """Formula-based analysis models are checked by their own suites (tests/analysis/)."""
    checked = {type(e).__name__ for e in _instances()}
    formula = {n for n, c in _public_estimators().items() if "formula" in inspect.signature(c).parameters}
    assert set(_public_estimators()) == checked | formula, FORMULA_MODELS


@parametrize_with_checks(_instances(), expected_failed_checks=lambda est: EXPECTED_FAILURES.get(type(est).__name__, {}))
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
