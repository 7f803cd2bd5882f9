"""FGD: fragmentation-gradient descent placement for (fractional) GPUs.

Weng et al., "Beware of Fragmentation: Scheduling GPU-Sharing Workloads with
Fragmentation Gradient Descent", USENIX ATC'23. The fragmentation of a worker n
*measured by* a task class m, F_n(m), is the free GPU on n that m could not use:

- all of n's free GPU, when m cannot run on n at all (cpu, memory or GPUs short);
- otherwise the free share of every device holding less than min(d_m, 1), m's GPU
  demand (so for a CPU-only class nothing is a fragment).

F_n(M) = sum_m p_m F_n(m) weighs the classes by their popularity p_m in the target
workload M. FGD places a task on the feasible worker whose F_n(M) grows least (the
steepest descent of total fragmentation), assuming the device choice that
`gpu_devices.pick_devices` will make there. The scorer's raw value is -growth, so
with min-max normalisation the best worker scores 100.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .gpu_devices import device_view
from .snapshot import CPU, EPS, GIB, MEM, ClusterState, TaskRequest

# The target workload when none is given: a GPU-sharing mix loosely shaped like the
# openb trace (most tasks want one whole GPU or a share of one). Rows are
# (cpu, memory GiB, gpu, popularity).
DEFAULT_WORKLOAD: tuple[tuple[float, float, float, float], ...] = (
    (4.0, 8.0, 1.0, 0.45),
    (4.0, 8.0, 0.5, 0.25),
    (2.0, 4.0, 0.25, 0.10),
    (2.0, 4.0, 0.0, 0.10),
    (8.0, 32.0, 2.0, 0.05),
    (16.0, 64.0, 8.0, 0.05),
)


class Workload:
    """Task classes (cpu, memory bytes, gpu) with popularity weights summing to 1."""

    def __init__(self, rows: Sequence[Sequence[float]]) -> None:
        a = np.asarray(rows, np.float64).reshape(-1, 4)
        if a.size == 0 or (a[:, 3] < 0).any() or a[:, 3].sum() <= 0:
            raise ValueError("a workload needs rows (cpu, memory GiB, gpu, weight >= 0)")
        self.cpu, self.mem = a[:, 0], a[:, 1] * GIB
        self.gpu, self.weight = a[:, 2], a[:, 3] / a[:, 3].sum()
        self.threshold = np.minimum(self.gpu, 1.0)

    @classmethod
    def from_demands(cls, cpu, memory_bytes, gpu, top: int = 32) -> Workload:
        """The `top` most frequent (cpu, memory, gpu) demands of a trace, by count."""
        keys = np.stack([cpu, np.asarray(memory_bytes, np.float64) / GIB, gpu], axis=1)
        uniq, counts = np.unique(np.round(keys, 3), axis=0, return_counts=True)
        best = np.argsort(-counts, kind="stable")[:top]
        return cls(np.column_stack([uniq[best], counts[best]]))

    def fragmentation(self, cpu_free: np.ndarray, mem_free: np.ndarray, dev: np.ndarray):
        """F(M) for each row: cpu_free (C,), mem_free (C,), dev (C, G) -> (C,)."""
        fit = (cpu_free[:, None] >= self.cpu - EPS) & (mem_free[:, None] >= self.mem)
        whole = np.count_nonzero(dev >= 1.0 - EPS, axis=1)[:, None]
        biggest = dev.max(axis=1, initial=0.0)[:, None]
        fit &= np.where(self.gpu < 1.0, biggest >= self.gpu - EPS, whole >= self.gpu - EPS)
        small = dev[:, :, None] < self.threshold[None, None, :] - EPS
        part = np.einsum("cg,cgk->ck", dev, small)
        frag = np.where(fit, part, dev.sum(axis=1)[:, None])
        return frag @ self.weight


class FragmentationGradient:
    """Place where the workload-weighted GPU fragmentation grows least (FGD).

    Params: `workload`, a Workload or rows (cpu, memory GiB, gpu, weight); default
    DEFAULT_WORKLOAD. The simulator passes the trace's own demand distribution."""

    name = "fgd"
    bounds: tuple[float, float] | None = None

    def __init__(self, workload: Workload | Sequence[Sequence[float]] | None = None) -> None:
        if workload is None:
            workload = DEFAULT_WORKLOAD
        self.workload = workload if isinstance(workload, Workload) else Workload(workload)

    def score(self, task: TaskRequest, state: ClusterState, mask: np.ndarray) -> np.ndarray:
        raw = np.zeros(len(state))
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            return raw
        dev = device_view(state)[idx]
        cpu, mem = state.free[CPU, idx], state.free[MEM, idx]
        before = self.workload.fragmentation(cpu, mem, dev)
        after = self.workload.fragmentation(
            cpu - task.cpu, mem - task.memory_bytes, _take(dev, task.gpu)
        )
        raw[idx] = before - after  # minus the growth: higher is better
        return raw


def _take(dev: np.ndarray, gpu: float) -> np.ndarray:
    """Every row's devices after placing `gpu` there, as pick_devices would."""
    out = dev.copy()
    if gpu <= 0:
        return out
    rows = np.arange(len(dev))
    if gpu < 1.0:
        room = np.where(dev >= gpu - EPS, dev, np.inf)
        best = room.argmin(axis=1)
        ok = np.isfinite(room[rows, best])
        out[rows[ok], best[ok]] -= gpu
        return out
    whole = dev >= 1.0 - EPS
    take = whole & (np.cumsum(whole, axis=1) <= round(gpu))
    out[take] -= 1.0
    return out
