"""Analysis models for completed datasets (formula-based, sklearn-compatible) and the formula parser."""

from .formula import Design, ParsedFormula, RandomBlock, RandomFactor, build_design, parse_formula
from .linear import GLM, OLS
from .mixed import LinearMixedModel, LogisticMixedModel

__all__ = [
    "GLM",
    "OLS",
    "Design",
    "LinearMixedModel",
    "LogisticMixedModel",
    "ParsedFormula",
    "RandomBlock",
    "RandomFactor",
    "build_design",
    "parse_formula",
]
