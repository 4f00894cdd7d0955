"""Convergence statistics and checks of the imputations.

Plots need matplotlib (the ``plot`` extra); the statistics do not.
"""

from .convergence import autocorrelation, rhat
from .overimpute import OverimputationResult, overimpute

__all__ = ["rhat", "autocorrelation", "overimpute", "OverimputationResult"]
