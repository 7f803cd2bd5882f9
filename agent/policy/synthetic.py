"""Seeded synthetic clusters and task queues, for benchmarks, tests and notebooks.

The shapes are loosely modelled on public cluster traces: a few machine types (mostly
CPU boxes, a few GPU boxes), tasks mostly small with a long tail, a minority asking
for GPUs (many of them fractional), some with label selectors, popular images cached
on many workers.
"""

from __future__ import annotations

import numpy as np

from cloudai.model import Resources, WorkerHealth

from .snapshot import GIB, ClusterState, TaskRequest, WorkerSpec

# (cpu, memory GiB, gpus, share of the fleet, gpu model)
MACHINE_TYPES = (
    (4, 16, 0, 0.20, ""),
    (8, 32, 0, 0.25, ""),
    (16, 64, 0, 0.20, ""),
    (32, 128, 0, 0.10, ""),
    (16, 32, 0, 0.10, ""),
    (8, 64, 0, 0.05, ""),
    (32, 256, 4, 0.05, "a100"),
    (64, 512, 8, 0.03, "a100"),
    (8, 64, 1, 0.02, "t4"),
)
IMAGES = tuple(f"registry.local/app-{k}:v1" for k in range(20))
ZONES = ("a", "b", "c")


def _zipf(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1)
    return rng.choice(n, size=size, p=p / p.sum())


def random_workers(n: int, seed: int = 0) -> list[WorkerSpec]:
    rng = np.random.default_rng(seed)
    shares = np.array([m[3] for m in MACHINE_TYPES])
    kinds = rng.choice(len(MACHINE_TYPES), size=n, p=shares / shares.sum())
    health = rng.choice(3, size=n, p=[0.96, 0.02, 0.02])
    out = []
    for i, k in enumerate(kinds.tolist()):
        cpu, mem, gpu, _, model = MACHINE_TYPES[k]
        used = rng.uniform(0.0, 0.5, size=3)
        labels = {"zone": ZONES[i % 3]}
        if rng.random() < 0.3:
            labels["disk"] = "ssd"
        if model:
            labels["gpu"] = model
        images = {IMAGES[j] for j in _zipf(rng, len(IMAGES), int(rng.integers(0, 5)))}
        busy = rng.uniform(0.3, 1.1)
        out.append(
            WorkerSpec(
                id=f"w{i:04d}",
                capacity=Resources(float(cpu), mem * GIB, float(gpu)),
                allocated=Resources(
                    round(cpu * used[0] * 4) / 4,
                    int(mem * GIB * used[1]),
                    float(int(gpu * used[2])),
                ),
                health=(WorkerHealth.ACTIVE, WorkerHealth.INACTIVE, WorkerHealth.DRAINING)[
                    health[i]
                ],
                labels=labels,
                cached_images=frozenset(images),
                cpu_percent=float(min(100.0, used[0] * 100 * busy)),
                memory_percent=float(min(100.0, used[1] * 100 * busy)),
            )
        )
    return out


def random_cluster(n: int, seed: int = 0) -> ClusterState:
    return ClusterState.from_workers(random_workers(n, seed))


# Tasks come in jobs of identical replicas, as in batch traces (a job's tasks share one
# resource request); sizes 1..16, mean about 3.7 tasks per job.
JOB_SIZES = ((1, 0.40), (2, 0.25), (4, 0.15), (8, 0.12), (16, 0.08))


def random_tasks(
    n: int, seed: int = 0, now: float = 1_000_000.0, workers: int = 0, max_job: int = 16
) -> list[TaskRequest]:
    """`n` tasks in jobs of up to `max_job` replicas (1: every task is its own job).
    `workers` (the cluster size) lets a few tasks avoid a worker they failed on."""
    rng = np.random.default_rng(seed + 1)
    sizes = [(s, p) for s, p in JOB_SIZES if s <= max_job]
    out: list[TaskRequest] = []
    while len(out) < n:
        size = int(rng.choice([s for s, _ in sizes], p=_norm([p for _, p in sizes])))
        job = _random_job(rng, len(out), workers, now)
        for r in range(min(size, n - len(out))):
            avoid = (
                (f"w{int(rng.integers(workers)):04d}",) if workers and rng.random() < 0.02 else ()
            )
            out.append(
                TaskRequest(
                    task_id=f"t{len(out):05d}",
                    attempt=1 + len(avoid),
                    avoid_workers=avoid,
                    created_at=job.created_at + r * 1e-3,
                    queued_at=job.queued_at + r * 1e-3,
                    **{f: getattr(job, f) for f in _JOB_FIELDS},
                )
            )
    return out


_JOB_FIELDS = ("cpu", "memory_bytes", "gpu", "image", "selector", "priority")


def _norm(p: list[float]) -> np.ndarray:
    a = np.array(p)
    return a / a.sum()


def _random_job(rng: np.random.Generator, k: int, workers: int, now: float) -> TaskRequest:
    cpu = float(rng.choice([0.25, 0.5, 1.0, 2.0, 4.0], p=[0.25, 0.3, 0.25, 0.12, 0.08]))
    mem = float(rng.choice([0.25, 0.5, 1.0, 2.0, 4.0, 8.0], p=[0.2, 0.25, 0.25, 0.15, 0.1, 0.05]))
    gpu = (
        float(rng.choice([0.25, 0.5, 1.0, 2.0], p=[0.3, 0.3, 0.3, 0.1]))
        if rng.random() < 0.08
        else 0.0
    )
    roll = rng.random()
    selector: dict[str, str] = {}
    if roll < 0.10:
        selector["zone"] = ZONES[k % 3]
    elif roll < 0.13:
        selector["disk"] = "ssd"
    if gpu and roll > 0.9:
        selector["gpu"] = "a100"
    queued = now - float(rng.uniform(0, 3600))
    return TaskRequest(
        task_id="",
        cpu=cpu,
        memory_bytes=int(mem * GIB),
        gpu=gpu,
        image=IMAGES[int(_zipf(rng, len(IMAGES), 1)[0])],
        selector=selector,
        priority=int(rng.integers(0, 4)),
        created_at=queued,
        queued_at=queued,
    )
