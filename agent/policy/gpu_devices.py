"""Per-device GPU accounting, for fractional GPUs (openb) and fragmentation (FGD).

The live snapshot keeps GPUs as one pool per worker (see snapshot.py): a 0.5-GPU task
and a 1-GPU task both fit a worker with 1.0 free in total, even when that is two
half-free devices. `DeviceClusterState` is a ClusterState that also tracks the free
fraction of every device, (N, G), and allocates devices on `reserve`:

- a fractional request (< 1) goes to one device, the best fit (the least free device
  that still holds it), leaving whole devices whole;
- a whole request (k >= 1) takes k fully free devices.

The pool columns stay in step (they are the devices' sums), so every pool-based
filter and scorer keeps working unchanged. The `gpu_devices` filter adds the
per-device check; on a plain ClusterState it has nothing to add and passes.
"""

from __future__ import annotations

import numpy as np

from .snapshot import EPS, GPU, ClusterState, TaskRequest, WorkerView


class DeviceClusterState(ClusterState):
    """A ClusterState with `dev_free` (N, G): each device's free fraction, 0..1.
    Devices a worker does not have are 0 (never free)."""

    dev_free: np.ndarray
    # The devices the latest `reserve` took, so that a simulator can release them.
    last_devices: list[int]

    @classmethod
    def with_devices(cls, base: ClusterState, dev_free: np.ndarray) -> DeviceClusterState:
        new = object.__new__(cls)
        new.__dict__.update(base.__dict__)
        new.dev_free = np.asarray(dev_free, np.float64).copy()
        new.last_devices = []
        return new

    def copy(self) -> DeviceClusterState:
        new = super().copy()
        new.__class__ = DeviceClusterState
        new.dev_free = self.dev_free.copy()
        return new  # type: ignore[return-value]

    def reserve(self, i: int, cpu: float, memory_bytes: float, gpu: float) -> WorkerView:
        self.last_devices = pick_devices(self.dev_free[i], gpu)
        for g in self.last_devices:
            self.dev_free[i, g] -= min(gpu, 1.0)
        return super().reserve(i, cpu, memory_bytes, gpu)

    def release(
        self, i: int, cpu: float, memory_bytes: float, gpu: float, devices: list[int]
    ) -> None:
        """Give back a finished task's resources (the simulator's departures)."""
        for g in devices:
            self.dev_free[i, g] = min(self.dev_free[i, g] + min(gpu, 1.0), 1.0)
        super().reserve(i, -cpu, -memory_bytes, -gpu)


def pick_devices(free: np.ndarray, gpu: float) -> list[int]:
    """The devices a request takes on one worker: best fit for a share of one
    device, the first fully free ones for whole GPUs. Empty if it does not fit."""
    if gpu <= 0:
        return []
    if gpu < 1.0:
        ok = np.flatnonzero(free >= gpu - EPS)
        return [int(ok[np.argmin(free[ok])])] if ok.size else []
    whole = np.flatnonzero(free >= 1.0 - EPS)
    k = int(round(gpu))
    return whole[:k].tolist() if whole.size >= k else []


def device_view(state: ClusterState) -> np.ndarray:
    """(N, G) free fraction per device. A plain (pool) state is read as packed:
    floor(free) whole devices and one device holding the remainder."""
    if isinstance(state, DeviceClusterState):
        return state.dev_free
    free = np.maximum(state.free[GPU], 0.0)
    g = max(int(np.ceil(state.cap[GPU].max(initial=0.0))), 1)
    idx = np.arange(g)[None, :]
    return np.clip(free[:, None] - idx, 0.0, 1.0)


def device_fit(task: TaskRequest, dev_free: np.ndarray) -> np.ndarray:
    """Which workers (rows of `dev_free`) can hold the task's GPUs, device by device."""
    if task.gpu < 1.0:
        return dev_free.max(axis=1, initial=0.0) >= task.gpu - EPS
    return np.count_nonzero(dev_free >= 1.0 - EPS, axis=1) >= round(task.gpu)


class GpuDeviceFilter:
    """A fractional GPU must fit on one device, and k whole GPUs need k free devices.

    It runs after the pool filter (`gpu`), which has already rejected workers with too
    little GPU in total; this one rejects what the pool hides: free GPU split across
    devices. On a plain pool snapshot there is nothing to add."""

    name = "gpu_devices"
    dynamic = True

    def filter(self, task: TaskRequest, state: ClusterState) -> np.ndarray | None:
        if task.gpu <= 0 or not isinstance(state, DeviceClusterState):
            return None
        return device_fit(task, state.dev_free)

    def check(self, task: TaskRequest, state: ClusterState, j: int) -> bool:
        if task.gpu <= 0 or not isinstance(state, DeviceClusterState):
            return True
        return bool(device_fit(task, state.dev_free[j : j + 1])[0])

    def reasons(
        self, task: TaskRequest, state: ClusterState, before: np.ndarray | None, count: int
    ) -> dict[str, int]:
        return {"gpu fragmented across devices": count}
