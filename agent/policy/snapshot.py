"""The placement core's input: the pending tasks and a snapshot of the workers.

Workers are held column-wise in numpy arrays so that filters and scorers work on the
whole cluster at once. Resource arrays are resource-major, shape (3, N) with rows
cpu, memory bytes, gpu: each resource is then a contiguous row, which makes the
per-task comparisons in the filters about twice as fast as strided (N, 3) columns.
`capacity` and `allocated` still give the conventional (N, 3) view. The scorers' derived
per-worker numbers (`view`) are worker-major, (N, 7): a reservation rewrites one row.

GPUs are a pool per worker (a count, possibly fractional). That is a simplification:
a 0.5-GPU task and a 1-GPU task both fit a worker whose pool has >= that much free,
even if the free share is split across devices. Fragmentation-aware placement (FGD)
needs per-device free fractions, which would become a (N, max_gpus) array here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from cloudai.model import Resources, TaskSpec, WorkerHealth

CPU, MEM, GPU = 0, 1, 2
RESOURCE_NAMES = ("cpu", "memory", "gpu")
GIB = 1024**3
# Tolerance for fractional cpu/gpu sums (0.1 + 0.2 must fit in 0.3).
EPS = 1e-9


def normalise_image(ref: str) -> str:
    """'busybox' and 'docker.io/library/busybox:latest' name the same cached image."""
    ref = ref.strip()
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix) :]
            break
    last = ref.rsplit("/", 1)[-1]
    if ref and "@" not in ref and ":" not in last:
        ref += ":latest"
    return ref


@dataclass(slots=True)
class TaskRequest:
    """What the placement core needs to know about one pending task."""

    task_id: str
    attempt: int = 1
    cpu: float = 0.0
    memory_bytes: int = 0
    gpu: float = 0.0
    image: str = ""
    selector: dict[str, str] = field(default_factory=dict)
    priority: int = 0
    created_at: float = 0.0
    queued_at: float = 0.0
    avoid_workers: tuple[str, ...] = ()
    pinned_worker: str = ""

    @classmethod
    def from_spec(
        cls,
        task_id: str,
        attempt: int,
        spec: TaskSpec,
        *,
        created_at: float = 0.0,
        queued_at: float = 0.0,
        avoid_workers: Iterable[str] = (),
    ) -> TaskRequest:
        r = spec.resources
        return cls(
            task_id=task_id,
            attempt=attempt,
            cpu=float(r.cpu),
            memory_bytes=int(r.memory_bytes),
            gpu=float(r.gpu),
            image=spec.image,
            selector=dict(spec.selector),
            priority=int(spec.priority),
            created_at=created_at,
            queued_at=queued_at or created_at,
            avoid_workers=tuple(avoid_workers),
            pinned_worker=spec.pinned_worker,
        )

    @property
    def demand(self) -> tuple[float, float, float]:
        return (self.cpu, float(self.memory_bytes), self.gpu)


@dataclass(slots=True)
class WorkerSpec:
    """One worker as a row of the snapshot; a convenient way to build a ClusterState."""

    id: str
    capacity: Resources
    allocated: Resources = field(default_factory=Resources)
    health: WorkerHealth = WorkerHealth.ACTIVE
    labels: dict[str, str] = field(default_factory=dict)
    cached_images: frozenset[str] = frozenset()
    cpu_percent: float = 0.0
    memory_percent: float = 0.0
    # Seconds since the worker said it shut down, when the snapshot was taken; -1
    # if it did not (an inactive worker without it stopped heartbeating).
    left_s: float = -1.0


class WorkerView(NamedTuple):
    """Per-worker quantities the scorers share, as arrays (all workers) or floats (one).

    a_*: allocated fraction of capacity; b_*: 1 / capacity (memory per GiB), 0 where
    the worker has none of that resource; load: live load fraction (0..1), telemetry
    plus what this round has reserved there since the snapshot.
    With these, "used fraction after placing demand d" is simply a + b * d.
    """

    a_cpu: np.ndarray | float
    a_mem: np.ndarray | float
    a_gpu: np.ndarray | float
    b_cpu: np.ndarray | float
    b_mem: np.ndarray | float
    b_gpu: np.ndarray | float
    load: np.ndarray | float


_HEALTH_CODES = {WorkerHealth.ACTIVE: 0, WorkerHealth.INACTIVE: 1, WorkerHealth.DRAINING: 2}
_HEALTH_OF_CODE = {v: k for k, v in _HEALTH_CODES.items()}


class ClusterState:
    """The workers of one scheduling round, as arrays.

    Mutable in one way only: `reserve` adds a placed task's demand to a worker, so the
    tasks of one batch never overcommit. Everything else is fixed for the round, which
    lets label and image masks be computed once and cached.
    """

    def __init__(
        self,
        ids: Sequence[str],
        capacity: np.ndarray,
        allocated: np.ndarray,
        health: Sequence[WorkerHealth],
        labels: Sequence[dict[str, str]],
        cached_images: Sequence[Iterable[str]],
        cpu_percent: np.ndarray,
        memory_percent: np.ndarray,
        left_s: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        n = len(ids)
        self.ids = list(ids)
        self.index = {w: i for i, w in enumerate(self.ids)}
        self.cap = np.ascontiguousarray(np.asarray(capacity, dtype=np.float64).reshape(n, 3).T)
        alloc = np.asarray(allocated, dtype=np.float64).reshape(n, 3).T
        # Only `free` is kept up to date; allocation is derived from it when asked for.
        self.free = self.cap - alloc
        self.health_code = np.array([_HEALTH_CODES[WorkerHealth(h)] for h in health], np.int8)
        self.active = self.health_code == 0
        self.labels = [dict(x) for x in labels]
        self.cached_images = [frozenset(normalise_image(i) for i in imgs) for imgs in cached_images]
        self.cpu_percent = np.clip(np.asarray(cpu_percent, np.float64), 0.0, 100.0)
        self.memory_percent = np.clip(np.asarray(memory_percent, np.float64), 0.0, 100.0)
        # Seconds since each worker said it shut down; -1 where it did not (hints.py).
        self.left_s = np.full(n, -1.0) if left_s is None else np.asarray(left_s, np.float64)
        self.view = self._build_view()
        self._label_masks: dict[tuple[str, str], np.ndarray] = {}
        self._image_masks: dict[str, np.ndarray] = {}

    @classmethod
    def from_workers(cls, workers: Iterable[WorkerSpec]) -> ClusterState:
        ws = list(workers)
        return cls(
            ids=[w.id for w in ws],
            capacity=np.array([_triple(w.capacity) for w in ws], np.float64).reshape(-1, 3),
            allocated=np.array([_triple(w.allocated) for w in ws], np.float64).reshape(-1, 3),
            health=[w.health for w in ws],
            labels=[w.labels for w in ws],
            cached_images=[w.cached_images for w in ws],
            cpu_percent=np.array([w.cpu_percent for w in ws], np.float64),
            memory_percent=np.array([w.memory_percent for w in ws], np.float64),
            left_s=np.array([w.left_s for w in ws], np.float64),
        )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def capacity(self) -> np.ndarray:
        """(N, 3): cpu, memory bytes, gpu."""
        return self.cap.T

    @property
    def alloc(self) -> np.ndarray:
        """(3, N) allocated resources, including this round's reservations."""
        return self.cap - self.free

    @property
    def allocated(self) -> np.ndarray:
        """(N, 3): cpu, memory bytes, gpu."""
        return self.alloc.T

    @property
    def healthy(self) -> np.ndarray:
        return self.active

    @property
    def draining(self) -> np.ndarray:
        return self.health_code == 2

    def health_of(self, i: int) -> WorkerHealth:
        return _HEALTH_OF_CODE[int(self.health_code[i])]

    def label_mask(self, key: str, value: str) -> np.ndarray:
        """Workers whose label `key` equals `value`; computed once per round."""
        m = self._label_masks.get((key, value))
        if m is None:
            m = np.fromiter((lb.get(key) == value for lb in self.labels), bool, len(self.labels))
            self._label_masks[(key, value)] = m
        return m

    def image_mask(self, image: str) -> np.ndarray:
        """Workers that already hold `image`; computed once per round."""
        m = self._image_masks.get(image)
        if m is None:
            ref = normalise_image(image)
            m = np.fromiter((ref in imgs for imgs in self.cached_images), bool, len(self.ids))
            self._image_masks[image] = m
        return m

    def workers_view(self, i: int | None = None) -> WorkerView:
        """The scorers' view of all workers (arrays) or of worker i (Python floats)."""
        if i is None:
            return WorkerView(*self.view.T)
        return WorkerView(*self.view[i].tolist())

    def reserve(self, i: int, cpu: float, memory_bytes: float, gpu: float) -> WorkerView:
        """Hold a placed task's resources on worker i for the rest of the round; return
        worker i's new view (floats), which callers use to refresh what they derive."""
        free, view = self.free, self.view
        free[CPU, i] -= cpu
        free[MEM, i] -= memory_bytes
        free[GPU, i] -= gpu
        # Scalar updates of one view column: far cheaper than rebuilding the view.
        a_cpu, a_mem, a_gpu, b_cpu, b_mem, b_gpu, load = view[i].tolist()
        share_cpu, share_mem = cpu * b_cpu, memory_bytes / GIB * b_mem
        new = WorkerView(
            a_cpu + share_cpu,
            a_mem + share_mem,
            a_gpu + gpu * b_gpu,
            b_cpu,
            b_mem,
            b_gpu,
            min(load + (share_cpu + share_mem) / 2, 1.0),
        )
        view[i] = new
        return new

    def _build_view(self) -> np.ndarray:
        cap, alloc = self.cap, self.cap - self.free
        has = cap > 0
        b = np.divide(1.0, cap, out=np.zeros_like(cap), where=has)
        a = alloc * b
        b[MEM] *= GIB
        # `reserve` adds each placed task's share, which telemetry cannot show yet.
        load = (self.cpu_percent + self.memory_percent) / 200
        return np.ascontiguousarray(np.vstack([a, b, np.clip(load, 0.0, 1.0)[None, :]]).T)

    def copy(self) -> ClusterState:
        new = object.__new__(ClusterState)
        new.__dict__.update(self.__dict__)
        new.free, new.view = self.free.copy(), self.view.copy()
        # Masks depend only on fields that a round never changes: share them.
        return new

    def worker(self, i: int) -> WorkerSpec:
        """Row i back as a WorkerSpec (for messages and tests, not for hot paths)."""
        return WorkerSpec(
            id=self.ids[i],
            capacity=_resources(self.cap[:, i]),
            allocated=_resources(self.alloc[:, i]),
            health=self.health_of(i),
            labels=dict(self.labels[i]),
            cached_images=self.cached_images[i],
            cpu_percent=float(self.cpu_percent[i]),
            memory_percent=float(self.memory_percent[i]),
            left_s=float(self.left_s[i]),
        )


def one_worker(n: int, j: int) -> np.ndarray:
    """A mask of n workers that passes worker j alone."""
    one = np.zeros(n, bool)
    one[j] = True
    return one


def _triple(r: Resources) -> tuple[float, float, float]:
    return (float(r.cpu), float(r.memory_bytes), float(r.gpu))


def _resources(col: np.ndarray) -> Resources:
    return Resources(cpu=float(col[CPU]), memory_bytes=int(col[MEM]), gpu=float(col[GPU]))
