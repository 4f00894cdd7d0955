"""Pluggable conditional models of the chained-equations sampler, one file per family.

Every model follows the contract of :class:`~skmlmi.conditional.base.BaseConditionalImputer`.
"""

from .base import ROLE_NAMES, BaseConditionalImputer, Draw, DrawContext
from .single_level import BayesianNormal, PredictiveMeanMatching

__all__ = [
    "ROLE_NAMES",
    "BaseConditionalImputer",
    "Draw",
    "DrawContext",
    "BayesianNormal",
    "PredictiveMeanMatching",
]
