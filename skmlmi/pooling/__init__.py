"""Pooling of analyses of multiply imputed data: Rubin's rules, multiparameter tests.

``rubin`` holds pure functions on arrays (usable with results from any source);
``model_tests`` compares nested analysis models fitted on the m completed datasets;
``results`` holds :class:`PooledResults`, the one object pooled results come in.
"""

from .model_tests import test_models
from .results import PooledResults, PooledSummary, pool_results
from .rubin import (
    RubinComponents,
    barnard_rubin_df,
    d1,
    d2,
    d2_from_statistics,
    d3_from_deviances,
    pool,
    pool_scalar,
    pool_variance_components,
    rubin_components,
)

__all__ = [
    "PooledResults",
    "PooledSummary",
    "RubinComponents",
    "barnard_rubin_df",
    "d1",
    "d2",
    "d2_from_statistics",
    "d3_from_deviances",
    "pool",
    "pool_results",
    "pool_scalar",
    "pool_variance_components",
    "rubin_components",
    "test_models",
]

from .pooler import MIPooler  # noqa: E402

__all__ += ["MIPooler"]
