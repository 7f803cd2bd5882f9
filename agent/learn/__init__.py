"""Learned policies: the learned queue orderer, model files, training, predictors.

Importing the package registers the `learned` orderer with the policy registry.
"""

from __future__ import annotations

from cloudai.agent.policy.registry import REGISTRY, Kind

from .model import DEFAULT_MODEL, LearnedModel, ModelError, load_default_model, load_model
from .priority import FEATURES, LearnedOrderer, LinearPriority

if REGISTRY.kind_of(LearnedOrderer.name) is None:
    REGISTRY.register(Kind.ORDERER, LearnedOrderer.name, LearnedOrderer)

__all__ = [
    "DEFAULT_MODEL",
    "FEATURES",
    "LearnedModel",
    "LearnedOrderer",
    "LinearPriority",
    "ModelError",
    "load_default_model",
    "load_model",
]
