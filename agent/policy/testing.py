"""Builders for tests, notebooks and the simulator's fixtures.

state = make_state(
    make_worker("w1").cpu(4).mem("8g").gpu(1).label("zone", "a"),
    make_worker("w2").cpu(8).mem("16g").used(cpu=2).draining(),
)
task = make_task("t1").cpu(2).mem("1g").selector(zone="a").build()
"""

from __future__ import annotations

from typing import Self

from cloudai.model import Resources, WorkerHealth
from cloudai.validation import parse_size

from .snapshot import ClusterState, TaskRequest, WorkerSpec


class WorkerBuilder:
    def __init__(self, worker_id: str) -> None:
        self._w = WorkerSpec(id=worker_id, capacity=Resources(1.0, 1024**3, 0.0))

    def cpu(self, n: float) -> Self:
        self._w.capacity.cpu = float(n)
        return self

    def mem(self, size: str | int) -> Self:
        self._w.capacity.memory_bytes = parse_size(size)
        return self

    def gpu(self, n: float) -> Self:
        self._w.capacity.gpu = float(n)
        return self

    def used(self, cpu: float = 0.0, mem: str | int = 0, gpu: float = 0.0) -> Self:
        """Resources already allocated to running tasks."""
        self._w.allocated = Resources(float(cpu), parse_size(mem), float(gpu))
        return self

    def label(self, key: str, value: str) -> Self:
        self._w.labels[key] = value
        return self

    def image(self, *refs: str) -> Self:
        self._w.cached_images = self._w.cached_images | set(refs)
        return self

    def load(self, cpu_percent: float = 0.0, memory_percent: float = 0.0) -> Self:
        """Live telemetry."""
        self._w.cpu_percent, self._w.memory_percent = cpu_percent, memory_percent
        return self

    def health(self, health: WorkerHealth) -> Self:
        self._w.health = health
        return self

    def unhealthy(self) -> Self:
        return self.health(WorkerHealth.INACTIVE)

    def draining(self) -> Self:
        return self.health(WorkerHealth.DRAINING)

    def build(self) -> WorkerSpec:
        w = self._w
        return WorkerSpec(
            id=w.id,
            capacity=Resources(w.capacity.cpu, w.capacity.memory_bytes, w.capacity.gpu),
            allocated=Resources(w.allocated.cpu, w.allocated.memory_bytes, w.allocated.gpu),
            health=w.health,
            labels=dict(w.labels),
            cached_images=frozenset(w.cached_images),
            cpu_percent=w.cpu_percent,
            memory_percent=w.memory_percent,
        )


class TaskBuilder:
    def __init__(self, task_id: str) -> None:
        self._t = TaskRequest(task_id=task_id, cpu=1.0, memory_bytes=256 * 1024**2)

    def cpu(self, n: float) -> Self:
        self._t.cpu = float(n)
        return self

    def mem(self, size: str | int) -> Self:
        self._t.memory_bytes = parse_size(size)
        return self

    def gpu(self, n: float) -> Self:
        self._t.gpu = float(n)
        return self

    def image(self, ref: str) -> Self:
        self._t.image = ref
        return self

    def selector(self, **labels: str) -> Self:
        self._t.selector.update(labels)
        return self

    def priority(self, p: int) -> Self:
        self._t.priority = p
        return self

    def queued(self, at: float, created: float | None = None) -> Self:
        self._t.queued_at = at
        self._t.created_at = at if created is None else created
        return self

    def avoid(self, *worker_ids: str) -> Self:
        self._t.avoid_workers = (*self._t.avoid_workers, *worker_ids)
        return self

    def pin(self, worker_id: str) -> Self:
        self._t.pinned_worker = worker_id
        return self

    def attempt(self, n: int) -> Self:
        self._t.attempt = n
        return self

    def build(self) -> TaskRequest:
        t = self._t
        return TaskRequest(
            task_id=t.task_id,
            attempt=t.attempt,
            cpu=t.cpu,
            memory_bytes=t.memory_bytes,
            gpu=t.gpu,
            image=t.image,
            selector=dict(t.selector),
            priority=t.priority,
            created_at=t.created_at,
            queued_at=t.queued_at,
            avoid_workers=t.avoid_workers,
            pinned_worker=t.pinned_worker,
        )


def make_worker(worker_id: str) -> WorkerBuilder:
    """A worker with 1 cpu and 1 GiB unless told otherwise."""
    return WorkerBuilder(worker_id)


def make_task(task_id: str) -> TaskBuilder:
    """A task asking for 1 cpu and 256 MiB unless told otherwise."""
    return TaskBuilder(task_id)


def make_state(*workers: WorkerBuilder | WorkerSpec) -> ClusterState:
    return ClusterState.from_workers(
        w.build() if isinstance(w, WorkerBuilder) else w for w in workers
    )


def tasks(*builders: TaskBuilder | TaskRequest) -> list[TaskRequest]:
    return [b.build() if isinstance(b, TaskBuilder) else b for b in builders]
