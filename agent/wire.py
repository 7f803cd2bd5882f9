"""Translation between the master-agent wire messages and the placement core's types.

    SchedulingBatch  -> (list[TaskRequest], ClusterState)   batch_from_pb
    Placement        -> Decision                            decision_to_pb
    list[Placement]  -> PlacementBatch                      placements_to_pb

and the reverse directions, which the tests and the master use to build batches.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import numpy as np

from cloudai.convert import (
    decision_from_pb,
    health_from_pb,
    health_to_pb,
    resources_to_pb,
    spec_to_pb,
)
from cloudai.convert import decision_to_pb as record_to_pb
from cloudai.model import Resources, TaskSpec
from cloudai.proto import common_pb2, master_agent_pb2

from .policy.core import to_decision_record
from .policy.placement import Candidate, Placement
from .policy.snapshot import ClusterState, TaskRequest, WorkerSpec


def tasks_from_pb(batch: master_agent_pb2.SchedulingBatch) -> list[TaskRequest]:
    out = []
    for t in batch.tasks:
        r, spec = t.spec.resources, t.spec
        out.append(
            TaskRequest(
                task_id=t.task_id,
                attempt=t.attempt,
                cpu=r.cpu,
                memory_bytes=r.memory_bytes,
                gpu=r.gpu,
                image=spec.image,
                selector=dict(spec.selector),
                priority=spec.priority,
                created_at=t.created_at,
                queued_at=t.queued_at or t.created_at,
                avoid_workers=tuple(t.avoid_workers),
                pinned_worker=spec.pinned_worker,
            )
        )
    return out


def state_from_pb(batch: master_agent_pb2.SchedulingBatch) -> ClusterState:
    ws = batch.workers
    cpu_pct = np.fromiter((w.telemetry.cpu_percent for w in ws), np.float64, len(ws))
    mem_pct = np.fromiter((_memory_percent(w.telemetry) for w in ws), np.float64, len(ws))
    return ClusterState(
        ids=[w.worker_id for w in ws],
        capacity=np.array([_triple(w.capacity) for w in ws], np.float64).reshape(-1, 3),
        allocated=np.array([_triple(w.allocated) for w in ws], np.float64).reshape(-1, 3),
        health=[health_from_pb(w.health) for w in ws],
        labels=[dict(w.labels) for w in ws],
        cached_images=[list(w.cached_images) for w in ws],
        cpu_percent=cpu_pct,
        memory_percent=mem_pct,
        left_s=[_left_s(w.left_at, batch.timestamp) for w in ws],
    )


def _left_s(left_at: float, timestamp: float) -> float:
    """Seconds from the worker's leave to the snapshot (both the master's clock);
    -1 if it did not leave (or an older master did not say)."""
    return max(0.0, timestamp - left_at) if left_at > 0 else -1.0


def batch_from_pb(
    batch: master_agent_pb2.SchedulingBatch,
) -> tuple[list[TaskRequest], ClusterState]:
    return tasks_from_pb(batch), state_from_pb(batch)


def batch_to_pb(
    tasks: Iterable[TaskRequest],
    workers: Iterable[WorkerSpec],
    *,
    sequence: int = 0,
    timestamp: float | None = None,
) -> master_agent_pb2.SchedulingBatch:
    """A SchedulingBatch carrying what the placement core reads (for tests and tools)."""
    now = time.time() if timestamp is None else timestamp
    return master_agent_pb2.SchedulingBatch(
        sequence=sequence,
        timestamp=now,
        tasks=[_pending_pb(t) for t in tasks],
        workers=[_worker_pb(w, now) for w in workers],
    )


def _pending_pb(t: TaskRequest) -> master_agent_pb2.PendingTask:
    spec = TaskSpec(
        image=t.image,
        resources=Resources(t.cpu, t.memory_bytes, t.gpu),
        priority=t.priority,
        selector=dict(t.selector),
        pinned_worker=t.pinned_worker,
    )
    return master_agent_pb2.PendingTask(
        task_id=t.task_id,
        attempt=t.attempt,
        spec=spec_to_pb(spec),
        created_at=t.created_at,
        queued_at=t.queued_at,
        avoid_workers=list(t.avoid_workers),
    )


def _worker_pb(w: WorkerSpec, timestamp: float) -> master_agent_pb2.WorkerSnapshot:
    return master_agent_pb2.WorkerSnapshot(
        worker_id=w.id,
        capacity=resources_to_pb(w.capacity),
        allocated=resources_to_pb(w.allocated),
        telemetry=common_pb2.Telemetry(cpu_percent=w.cpu_percent, memory_percent=w.memory_percent),
        cached_images=sorted(w.cached_images),
        labels=dict(w.labels),
        health=health_to_pb(w.health),
        left_at=timestamp - w.left_s if w.left_s >= 0 else 0.0,
    )


def decision_to_pb(
    placement: Placement,
    *,
    policy: str,
    profile: str,
    model_version: str = "",
    fallback: bool = False,
    source: str = "agent",
    decided_at: float | None = None,
) -> master_agent_pb2.Decision:
    record = to_decision_record(
        placement, policy, profile, model_version, fallback, source, decided_at
    )
    return record_to_pb(record)


def placements_to_pb(
    placements: Sequence[Placement],
    *,
    agent_id: str,
    sequence: int,
    policy: str,
    profile: str,
    model_version: str = "",
    source: str = "agent",
) -> master_agent_pb2.PlacementBatch:
    now = time.time()
    return master_agent_pb2.PlacementBatch(
        agent_id=agent_id,
        sequence=sequence,
        decisions=[
            decision_to_pb(
                p,
                policy=policy,
                profile=profile,
                model_version=model_version,
                source=source,
                decided_at=now,
            )
            for p in placements
        ],
    )


def placement_from_pb(d: master_agent_pb2.Decision) -> Placement:
    """The inverse of decision_to_pb, as far as a Decision carries it (the summary is
    derived, and the feasible/worker counts are not on the wire)."""
    record = decision_from_pb(d)
    return Placement(
        task_id=record.task_id,
        attempt=record.attempt,
        worker_id=record.worker_id,
        candidates=[
            Candidate(c["worker_id"], float(c["total"]), dict(c["scores"]))
            for c in record.candidates
        ],
        rejections=dict(record.rejections),
        hint=record.hint,
    )


def _triple(r: common_pb2.Resources) -> tuple[float, float, float]:
    return (r.cpu, float(r.memory_bytes), r.gpu)


def _memory_percent(t: common_pb2.Telemetry) -> float:
    if t.memory_percent or not t.memory_total_bytes:
        return t.memory_percent
    return 100.0 * t.memory_used_bytes / t.memory_total_bytes
