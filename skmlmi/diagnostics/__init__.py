"""Seeing the data and the imputations: patterns, correlations, predictor matrices,
convergence, observed vs imputed, ICC, over-imputation.

Plotting functions need matplotlib (the ``plot`` extra) and return a
:class:`DiagnosticPlot` (``figure``, ``axes``, ``table``); the statistics do not need it.
"""

from .convergence import autocorrelation, rhat
from .levels import icc_by_level
from .overimpute import OverimputationResult, overimpute
from .plots import (
    DiagnosticPlot,
    convergence_table,
    icc,
    icc_table,
    md_pattern,
    plot_corr,
    plot_imputed,
    plot_missing_by_cluster,
    plot_pattern,
    plot_predictor_matrix,
    plot_trace,
    trace_table,
)

__all__ = [
    "DiagnosticPlot",
    "OverimputationResult",
    "autocorrelation",
    "convergence_table",
    "icc",
    "icc_by_level",
    "icc_table",
    "md_pattern",
    "overimpute",
    "plot_corr",
    "plot_imputed",
    "plot_missing_by_cluster",
    "plot_pattern",
    "plot_predictor_matrix",
    "plot_trace",
    "rhat",
    "trace_table",
]
