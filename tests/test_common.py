"""scikit-learn's estimator checks over every public estimator of skmlmi.

Expected failures are listed here, in one place, with the reason.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skmlmi import MultilevelIterativeImputer

#: check name -> why skmlmi deliberately differs.
EXPECTED_FAILURES = {
    MultilevelIterativeImputer: {},
}


def _estimators():
    return [MultilevelIterativeImputer(n_imputations=2, max_iter=2, random_state=0)]


@parametrize_with_checks(_estimators(), expected_failed_checks=lambda est: EXPECTED_FAILURES.get(type(est), {}))
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
