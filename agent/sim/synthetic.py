"""Seeded synthetic workloads: jobs for one machine or a heterogeneous cluster.

Arrivals are Poisson at a rate that offers `load` (0..1) of the machine's
processor-seconds; runtimes are log-normal (many short jobs, a long tail), sizes are
mostly powers of two, and requested times over-estimate runtimes by 1-5x, as users
do. With `gpu_share` > 0 some jobs ask for a share of one GPU or whole GPUs.
"""

from __future__ import annotations

import numpy as np

from .trace import Nodes, Trace

GIB = 1024**3
_GPU_DEMANDS = np.array([0.25, 0.5, 1.0, 1.0, 2.0, 8.0])


def synthetic_trace(
    n: int, seed: int = 0, procs: int = 256, load: float = 0.9, gpu_share: float = 0.0
) -> Trace:
    if n <= 0 or procs <= 0 or not 0 < load <= 2:
        raise ValueError("need n > 0, procs > 0 and 0 < load <= 2")
    rng = np.random.default_rng(seed)
    sizes = 2 ** rng.integers(0, int(np.log2(procs)) + 1, n)
    odd = rng.random(n) < 0.25  # a quarter are not powers of two
    sizes = np.where(odd, rng.integers(1, procs + 1, n), sizes).astype(np.float64)
    # Small jobs are more common: halve the size of most jobs, repeatedly.
    sizes = np.maximum(1.0, np.floor(sizes / 2 ** rng.geometric(0.5, n)))
    run = np.minimum(np.round(rng.lognormal(np.log(600.0), 1.8, n)), 36 * 3600.0)
    req = np.ceil(run * rng.uniform(1.0, 5.0, n) / 60.0) * 60.0
    mean_gap = float(np.mean(sizes * run)) / (load * procs)
    submit = np.cumsum(rng.exponential(mean_gap, n))
    gpu = np.where(rng.random(n) < gpu_share, rng.choice(_GPU_DEMANDS, n), 0.0)
    return Trace(
        name=f"synthetic-{n}-seed{seed}",
        job_id=np.arange(1, n + 1),
        submit=np.round(submit),
        run=run,
        procs=sizes,
        req_time=np.maximum(req, run),
        memory=sizes * rng.uniform(0.5, 4.0, n) * GIB,
        gpu=gpu,
        user=rng.integers(0, 50, n),
        max_procs=procs,
    )


# (cpu, memory GiB, gpus, share of the fleet): a GPU-sharing cluster's shapes.
NODE_TYPES = ((96, 384, 8, 0.35), (104, 512, 2, 0.25), (64, 256, 4, 0.15), (32, 256, 0, 0.25))


def synthetic_nodes(n: int, seed: int = 0) -> Nodes:
    rng = np.random.default_rng(seed)
    share = np.array([t[3] for t in NODE_TYPES])
    kinds = rng.choice(len(NODE_TYPES), n, p=share / share.sum())
    rows = np.array([NODE_TYPES[k][:3] for k in kinds], np.float64)
    return Nodes(
        ids=[f"node-{i:04d}" for i in range(n)],
        cpu=rows[:, 0],
        memory=rows[:, 1] * GIB,
        gpus=rows[:, 2].astype(np.int64),
        model=["gpu" if g else "" for g in rows[:, 2]],
    )
