"""Vectorised numerics shared by the conditional models and the analysis models.

One module per subject; every name is re-exported here, so ``from skmlmi._kernels import x``
works whichever module ``x`` lives in:

* :mod:`.clusters`: per-cluster counts, sums, means and cross-products (``np.bincount``), rows
  sorted by cluster for ``np.add.reduceat`` (:class:`SortedClusters`), and the one rule of
  "constant within clusters" (:func:`cluster_constancy`);
* :mod:`.designs`: redundant (constant or collinear) columns, exact power-of-two units;
* :mod:`.standardise`: the standardised design [1, (X - center) / scale] and back;
* :mod:`.linalg`: Cholesky factors with a ridge fallback, batched over ``(J, q, q)`` stacks;
* :mod:`.regression`: Bayesian linear regression draws, predictive mean matching;
* :mod:`.distributions`: Polya-Gamma, truncated normals, inverse Wishart, Student-t mixing
  variances, the bivariate normal CDF;
* :mod:`.mixed`: draws of a weighted Gaussian linear mixed model on all clusters at once;
* :mod:`.selection`: per-cluster likelihood of the Heckman selection model and its batched
  Newton fit;
* :mod:`.glm`: batched Newton / IRLS fits (per-cluster logit and log-linear models, a
  multinomial logit with one intercept vector per group).

No Python loop over rows or clusters lives here; loops over the (few) columns, categories,
rejection rounds or iterations are allowed. Nothing here knows about DataFrames, column names
or the imputation loop.
"""

from __future__ import annotations

from .clusters import *  # noqa: F403
from .clusters import __all__ as _clusters_all
from .designs import *  # noqa: F403
from .designs import __all__ as _designs_all

# private helpers of the former single module, still importable from here
from .designs import (  # noqa: F401
    _collinear_columns,
    _constant_columns,
    _null_leverage_order,
    _pick_largest,
    _record_collinear,
)
from .distributions import *  # noqa: F403
from .distributions import __all__ as _distributions_all
from .glm import *  # noqa: F403
from .glm import __all__ as _glm_all
from .linalg import *  # noqa: F403
from .linalg import __all__ as _linalg_all
from .linalg import _strict_lower  # noqa: F401
from .mixed import *  # noqa: F403
from .mixed import __all__ as _mixed_all
from .regression import *  # noqa: F403
from .regression import __all__ as _regression_all
from .regression import _distinct_within_strata  # noqa: F401
from .selection import *  # noqa: F403
from .selection import __all__ as _selection_all
from .standardise import *  # noqa: F403
from .standardise import __all__ as _standardise_all

__all__ = [
    *_clusters_all,
    *_designs_all,
    *_distributions_all,
    *_glm_all,
    *_linalg_all,
    *_mixed_all,
    *_regression_all,
    *_selection_all,
    *_standardise_all,
]
