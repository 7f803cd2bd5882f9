"""The placement pipeline: order the queue, filter, score, pick, reserve, record.

`place_batch` is a pure function of its inputs (a snapshot and the tasks): no network,
no clock unless `now` is left out. The live agent, the master's fallback and the
simulator all call it, so a policy exists once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cloudai.model import DecisionRecord

from .batch import Batch
from .filters import Filter
from .ordering import Orderer
from .placement import Candidate, CandidateList, Placement
from .profiles import Profile, resolve_profile
from .registry import REGISTRY, Kind, Registry
from .scorers import Scorer
from .snapshot import ClusterState, TaskRequest

__all__ = [
    "Candidate",
    "CandidateList",
    "Pipeline",
    "Placement",
    "place_batch",
    "to_decision_record",
]


@dataclass
class Pipeline:
    """A profile turned into plugin instances."""

    profile: Profile
    filters: list[Filter]
    scorers: list[tuple[Scorer, float]]
    orderer: Orderer

    @classmethod
    def build(
        cls, profile: Profile, registry: Registry = REGISTRY, orderer: str | None = None
    ) -> Pipeline:
        profile.check(registry)

        def make(kind: Kind, name: str) -> Any:
            return profile.make(kind, name, registry)

        # A weight of 0 switches a scorer off: it is not even built.
        weighted = [(n, float(w)) for n, w in profile.scorers.items() if w > 0]
        return cls(
            profile=profile,
            filters=[make(Kind.FILTER, n) for n in profile.filters],
            scorers=[(make(Kind.SCORER, n), w) for n, w in weighted],
            orderer=make(Kind.ORDERER, orderer or profile.orderer),
        )


def place_batch(
    tasks: Sequence[TaskRequest],
    state: ClusterState,
    profile: Profile | str = "default",
    *,
    orderer: str | None = None,
    now: float | None = None,
    top_k: int = 3,
    registry: Registry = REGISTRY,
    mutate: bool = False,
) -> list[Placement]:
    """Place `tasks` on `state`'s workers; return one Placement per task, in the order
    they were decided. Each placement reserves its resources for the rest of the batch,
    so the batch never overcommits a worker. `state` is left untouched unless `mutate`
    (the simulator keeps the reservations). `profile` is a Profile, a built-in name or
    a profile file path; `orderer` overrides the profile's queue orderer."""
    # A Profile object is checked, and its plugins built, by Pipeline.build alone.
    chosen = profile if isinstance(profile, Profile) else resolve_profile(profile, registry)
    pipeline = Pipeline.build(chosen, registry, orderer)
    work = state if mutate else state.copy()
    at = time.time() if now is None else now
    hold = chosen.hold_after_s
    batch = Batch(pipeline.filters, pipeline.scorers, work, tasks, max(1, top_k), hold, at)
    batch.run(pipeline.orderer.order(tasks, at))
    return batch.finish()


def to_decision_record(
    placement: Placement,
    policy: str,
    profile: str,
    model_version: str = "",
    fallback: bool = False,
    source: str = "agent",
    decided_at: float | None = None,
) -> DecisionRecord:
    return DecisionRecord(
        task_id=placement.task_id,
        attempt=placement.attempt,
        worker_id=placement.worker_id,
        policy=policy,
        profile=profile,
        model_version=model_version,
        candidates=[c.to_dict() for c in placement.candidates],
        rejections=dict(placement.rejections),
        summary=placement.summary,
        hint=placement.hint,
        fallback=fallback,
        decided_at=time.time() if decided_at is None else decided_at,
        source=source,
    )
