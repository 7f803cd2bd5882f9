"""The placement policy library: a pure pipeline over a snapshot, no network.

    from cloudai.agent.policy import place_batch, make_state, make_worker, make_task

    state = make_state(make_worker("w1").cpu(4).mem("8g"), make_worker("w2").cpu(8).mem("16g"))
    [p] = place_batch([make_task("t1").cpu(2).build()], state, "binpack")
    p.worker_id, p.summary, p.candidates, p.rejections, p.hint

Modules: snapshot (inputs), filters, scorers, ordering, registry, profiles, plan (fast
weighted scoring), batch (the per-task loop), hints, placement (outputs), core (entry).
"""

from __future__ import annotations

from . import baselines as _baselines  # noqa: F401  (registers the baselines)
from .core import Pipeline, place_batch, to_decision_record
from .filters import DEFAULT_FILTERS, Filter
from .ordering import AGING_S, Orderer
from .placement import Candidate, Placement
from .profiles import BUILTIN_PROFILES, Profile, load_profile, resolve_profile, save_profile
from .registry import REGISTRY, Kind, Registry
from .scorers import CachedScorer, LinearScorer, Scorer, normalise
from .snapshot import ClusterState, TaskRequest, WorkerSpec
from .testing import make_state, make_task, make_worker

__all__ = [
    "AGING_S",
    "BUILTIN_PROFILES",
    "DEFAULT_FILTERS",
    "REGISTRY",
    "CachedScorer",
    "Candidate",
    "ClusterState",
    "Filter",
    "Kind",
    "LinearScorer",
    "Orderer",
    "Pipeline",
    "Placement",
    "Profile",
    "Registry",
    "Scorer",
    "TaskRequest",
    "WorkerSpec",
    "load_profile",
    "make_state",
    "make_task",
    "make_worker",
    "normalise",
    "place_batch",
    "resolve_profile",
    "save_profile",
    "to_decision_record",
]
