"""Pooling of analyses of multiply imputed data: Rubin's rules, multiparameter tests.

``rubin`` holds pure functions on arrays (usable with results from any source);
``model_tests`` compares nested analysis models fitted on the m completed datasets.
"""

from .model_tests import test_models
from .rubin import (
    RubinComponents,
    barnard_rubin_df,
    d1,
    d2,
    d2_from_statistics,
    d3_from_deviances,
    pool,
    pool_scalar,
    rubin_components,
)

# MIPooler (pooler.py) is added here by the lead: from .pooler import MIPooler

__all__ = [
    "RubinComponents",
    "barnard_rubin_df",
    "d1",
    "d2",
    "d2_from_statistics",
    "d3_from_deviances",
    "pool",
    "pool_scalar",
    "rubin_components",
    "test_models",
]
