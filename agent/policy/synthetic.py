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
                    round(cpu * used[0] * 4) / 4, int(mem * GIB * used[1]), float(int(gpu * used[2]))
                ),
                health=(WorkerHealth.ACTIVE, WorkerHealth.INACTIVE, WorkerHealth.DRAINING)[health[i]],
                labels=labels,
                cached_images=frozenset(images),
                cpu_percent=float(min(100.0, used[0] * 100 * busy)),
                memory_percent=float(min(100.0, used[1] * 100 * busy)),
            )
        )
    return out


def random_cluster(n: int, seed: int = 0) -> ClusterState:
    return ClusterState.from_workers(random_workers(n, seed))


def random_tasks(n: int, seed: int = 0, now: float = 1_000_000.0, workers: int = 0) -> list[TaskRequest]:
    """`workers` (the cluster size) lets a few tasks avoid a worker they failed on."""
    rng = np.random.default_rng(seed + 1)
    cpu = rng.choice([0.25, 0.5, 1.0, 2.0, 4.0], size=n, p=[0.25, 0.3, 0.25, 0.12, 0.08])
    mem = rng.choice([0.25, 0.5, 1.0, 2.0, 4.0, 8.0], size=n, p=[0.2, 0.25, 0.25, 0.15, 0.1, 0.05])
    is_gpu = rng.random(n) < 0.08
    gpu = np.where(is_gpu, rng.choice([0.25, 0.5, 1.0, 2.0], size=n, p=[0.3, 0.3, 0.3, 0.1]), 0.0)
    images = _zipf(rng, len(IMAGES), n)
    queued = now - rng.uniform(0, 3600, size=n)
    roll = rng.random(n)
    out = []
    for i in range(n):
        selector: dict[str, str] = {}
        if roll[i] < 0.10:
            selector["zone"] = ZONES[i % 3]
        elif roll[i] < 0.13:
            selector["disk"] = "ssd"
        if is_gpu[i] and roll[i] > 0.9:
            selector["gpu"] = "a100"
        avoid = (f"w{int(rng.integers(workers)):04d}",) if workers and roll[i] > 0.98 else ()
        out.append(
            TaskRequest(
                task_id=f"t{i:05d}",
                cpu=float(cpu[i]),
                memory_bytes=int(mem[i] * GIB),
                gpu=float(gpu[i]),
                image=IMAGES[images[i]],
                selector=selector,
                priority=int(rng.integers(0, 4)),
                created_at=float(queued[i]),
                queued_at=float(queued[i]),
                avoid_workers=avoid,
            )
        )
    return out
