"""The placement pipeline: order the queue, filter, score, pick, reserve, record.

`place_batch` is a pure function of its inputs (a snapshot and the tasks): no network,
no clock unless `now` is left out. The live agent, the master's fallback and the
simulator all call it, so a policy exists once.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
        profile.validate(registry)

        def make(kind: Kind, name: str) -> Any:
            return registry.create(kind, name, **profile.params.get(name, {}))

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
    pipeline = Pipeline.build(resolve_profile(profile, registry), registry, orderer)
    work = state if mutate else state.copy()
    with _collector_paused():
        batch = Batch(pipeline.filters, pipeline.scorers, work, tasks, max(1, top_k))
        batch.run(pipeline.orderer.order(tasks, time.time() if now is None else now))
        return batch.finish()


_pause_lock = threading.Lock()
_pauses = 0
_was_enabled = False


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a batch runs.

    A large batch allocates tens of thousands of small objects (placements, their
    rejection counts, candidate lists) and no reference cycles, so the collections
    those allocations set off, dozens of them and often one of the whole process, can
    free nothing and cost about a tenth of the batch. Reference counting frees memory
    as usual; collections resume after the batch with the usual thresholds. Batches
    running at once (threads) share one pause.
    """
    global _pauses, _was_enabled
    with _pause_lock:
        if _pauses == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0 and _was_enabled:
                gc.enable()


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
