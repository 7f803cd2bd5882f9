"""Tiny hand-made traces and clusters for exact, hand-checked expectations."""

from __future__ import annotations

import numpy as np

from cloudai.agent.sim.trace import Nodes, Trace

GIB = 1024**3


def jobs(*rows: tuple[float, float, float, float], max_procs: int = 4) -> Trace:
    """rows: (submit, run, procs, requested time)."""
    a = np.array(rows, np.float64).reshape(-1, 4)
    n = len(a)
    return Trace(
        name="tiny",
        job_id=np.arange(1, n + 1),
        submit=a[:, 0],
        run=a[:, 1],
        procs=a[:, 2],
        req_time=a[:, 3],
        memory=np.full(n, GIB, np.float64),
        gpu=np.zeros(n),
        user=np.zeros(n, np.int64),
        max_procs=max_procs,
    )


def pods(*gpus: float) -> Trace:
    """One-cpu, 1 GiB pods asking for these GPU amounts, arriving in this order."""
    t = jobs(*[(float(k), 100.0, 1.0, 100.0) for k in range(len(gpus))])
    t.gpu = np.array(gpus, np.float64)
    return t


def nodes(*gpus: int, cpu: float = 8.0) -> Nodes:
    n = len(gpus)
    return Nodes(
        ids=[f"n{i}" for i in range(n)],
        cpu=np.full(n, cpu),
        memory=np.full(n, 8.0 * GIB),
        gpus=np.array(gpus, np.int64),
        model=["gpu"] * n,
    )
