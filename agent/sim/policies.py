"""The simulator's policy names, each a queue orderer plus a placement profile.

Every name resolves to plugins of the one registry: the orderer ranks the queue, the
profile (filters and weighted scorers) picks the worker through `place_batch`. On the
single machine of an SWF log only the orderer matters (there is one worker), so the
placement baselines all behave as FCFS there.

    fcfs sjf wfp3 unicep f1           orderer of that name, first-fit placement
    random roundrobin firstfit bestfit spread binpack tetris fgd
                                      FCFS order, profile of that name
    learned                           the model's orderer and (if tuned) profile
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from cloudai.agent.policy.baselines import DEVICE_FILTERS, baseline_profile
from cloudai.agent.policy.profiles import Profile
from cloudai.agent.policy.registry import REGISTRY, Kind
from cloudai.errors import ConfigError

ORDERING = ("fcfs", "sjf", "wfp3", "unicep", "f1")
PLACEMENT = ("random", "roundrobin", "firstfit", "bestfit", "spread", "binpack", "tetris", "fgd")
POLICY_NAMES = (*ORDERING, *PLACEMENT, "learned")


@dataclass
class Policy:
    """A resolved policy: orderer name and params, and the placement profile."""

    name: str
    orderer: str
    profile: Profile
    orderer_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    model_version: str = ""

    def make_orderer(self, **extra: Any) -> Any:
        return REGISTRY.create(Kind.ORDERER, self.orderer, **{**self.orderer_params, **extra})


def resolve(name: str, model: Any = None) -> Policy:
    """The Policy for a simulator policy name; `model` is a loaded learned model
    (cloudai.agent.learn.model.LearnedModel) for `learned`."""
    if name in ORDERING:
        return Policy(name, name, _with_devices(baseline_profile("firstfit")))
    if name in PLACEMENT:
        return Policy(name, "fcfs", _with_devices(baseline_profile(name)))
    if name == "learned":
        from cloudai.agent.learn.model import load_default_model

        m = model or load_default_model()
        return Policy(
            name,
            "learned",
            _with_devices(m.placement_profile()),
            {"model": m},
            model_version=m.version,
        )
    known = ", ".join(POLICY_NAMES)
    raise ConfigError(f"unknown policy {name!r} (known: {known})")


def _with_devices(profile: Profile) -> Profile:
    """Add the per-device GPU filter: on the simulator's per-device cluster model a
    profile without it could pick a worker whose free GPU is split across devices."""
    if "gpu_devices" in profile.filters:
        return profile
    filters = tuple(f for f in DEVICE_FILTERS if f in profile.filters or f == "gpu_devices")
    return dataclasses.replace(profile, filters=filters)
