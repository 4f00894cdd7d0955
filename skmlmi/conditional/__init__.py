"""Pluggable conditional models of the chained-equations sampler, one file per family.

Every model follows the contract of :class:`~skmlmi.conditional.base.BaseConditionalImputer`:

- :mod:`~skmlmi.conditional.single_level`: ``BayesianNormal``, ``PredictiveMeanMatching``,
  ``BayesianLogistic``, ``Polytomous`` (mice's norm, pmm, logreg, polyreg), optionally with
  cluster fixed effects;
- :mod:`~skmlmi.conditional.random_effects`: ``RandomEffectsNormal``, ``RandomEffectsPMM``
  (mice's 2l.pan / 2l.norm / 2l.lmer, miceadds' 2l.pmm);
- :mod:`~skmlmi.conditional.random_effects_discrete`: ``RandomEffectsLogistic``,
  ``RandomEffectsCategorical`` (mice's 2l.bin; categorical targets R's mice lacks);
- :mod:`~skmlmi.conditional.random_effects_poisson`: ``RandomEffectsPoisson`` (micemd's
  2l.glm.pois), for counts;
- :mod:`~skmlmi.conditional.cluster_level`: ``ClusterLevelNormal``, ``ClusterLevelPMM``,
  ``ClusterLevelLogistic``, ``ClusterMean`` (mice's 2lonly.norm, 2lonly.pmm, 2lonly.mean;
  miceadds' 2lonly.function with logreg);
- :mod:`~skmlmi.conditional.two_stage`: ``TwoStageNormal``, ``TwoStagePMM``,
  ``TwoStageLogistic``, ``TwoStagePoisson`` (micemd's 2l.2stage.*), for variables missing in
  whole clusters;
- :mod:`~skmlmi.conditional.heckman`: ``HeckmanSelection`` (micemd's 2l.2stage.heckman), for
  outcomes missing not at random.

:mod:`~skmlmi.conditional.registry` finds every model exported here and reads what it
declares (kinds, roles, systematic missingness, level, R method names): names, capabilities
and the default model of a column come from there.
"""

from .base import ROLE_NAMES, BaseConditionalImputer, Draw, DrawContext
from .cluster_level import ClusterLevelLogistic, ClusterLevelNormal, ClusterLevelPMM, ClusterMean
from .heckman import HeckmanSelection
from .random_effects import RandomEffectsNormal, RandomEffectsPMM
from .random_effects_discrete import RandomEffectsCategorical, RandomEffectsLogistic
from .random_effects_poisson import RandomEffectsPoisson
from .single_level import BayesianLogistic, BayesianNormal, Polytomous, PredictiveMeanMatching
from .two_stage import TwoStageLogistic, TwoStageNormal, TwoStagePMM, TwoStagePoisson

__all__ = [
    "ROLE_NAMES",
    "BaseConditionalImputer",
    "Draw",
    "DrawContext",
    "BayesianNormal",
    "PredictiveMeanMatching",
    "BayesianLogistic",
    "Polytomous",
    "RandomEffectsNormal",
    "RandomEffectsPMM",
    "RandomEffectsLogistic",
    "RandomEffectsCategorical",
    "RandomEffectsPoisson",
    "ClusterLevelNormal",
    "ClusterLevelPMM",
    "ClusterLevelLogistic",
    "ClusterMean",
    "HeckmanSelection",
    "TwoStageNormal",
    "TwoStagePMM",
    "TwoStageLogistic",
    "TwoStagePoisson",
]
