"""The eight meta-learners, all on the Conv-4 backbone, looked up by name."""

from metahw.models.learners.base import ALGORITHMS, MetaLearner, build_learner
from metahw.models.learners.gradient import ANIL, FOMAML, MAML, MetaSGD, ProtoMAML, Reptile
from metahw.models.learners.metric import MatchingNet, ProtoNet

__all__ = [
    "ALGORITHMS",
    "ANIL",
    "FOMAML",
    "MAML",
    "MatchingNet",
    "MetaLearner",
    "MetaSGD",
    "ProtoMAML",
    "ProtoNet",
    "Reptile",
    "build_learner",
]
