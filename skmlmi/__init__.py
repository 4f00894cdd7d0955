"""skmlmi: multiple imputation of incomplete multilevel data, the scikit-learn way."""

__version__ = "0.1.0.dev0"

from .imputer import ImputedDatasets, MultilevelIterativeImputer
from .pooling import MIPooler
from .recommend import missing_by_cluster, recommend_methods

__all__ = [
    "ImputedDatasets",
    "MIPooler",
    "MultilevelIterativeImputer",
    "__version__",
    "missing_by_cluster",
    "recommend_methods",
]
