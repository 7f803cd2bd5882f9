"""Feasibility filters: each passes or rejects every worker for one task, with a reason.

A filter answers over the whole cluster at once (a boolean mask, True = passes).
Returning None means "nothing to check for this task" (no selector, no GPU asked),
which costs the pipeline nothing. A rejection is an expected answer, never an error.

The pipeline counts each rejected worker under the *first* filter that rejects it,
so the order of a profile's filters is also the order of explanation: structural
reasons (dead, draining, avoided, wrong labels) come before transient ones (busy).
It is also the cheap order: health is precomputed for the round and label masks are
cached per (key, value), while resource checks change with every reservation.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from .snapshot import CPU, EPS, GPU, MEM, ClusterState, TaskRequest


@runtime_checkable
class Filter(Protocol):
    """A feasibility check over every worker at once.

    Optional extras the pipeline uses when present:
    - `per_round = True` promises the answer does not depend on the task; a filter
      leading the chain is then run once per batch.
    - `check(task, state, j) -> bool`, the same verdict for worker j alone, and
      `dynamic = True` when a reservation can change the verdict. Together they let
      the pipeline re-judge just the worker a reservation changed (e.g. for the next
      replica of the same job) instead of re-running the whole chain.
    """

    name: str

    def filter(self, task: TaskRequest, state: ClusterState) -> np.ndarray | None:
        """Mask of workers that pass (do not modify it), or None when all pass."""
        ...

    def reasons(
        self, task: TaskRequest, state: ClusterState, before: np.ndarray | None, count: int
    ) -> dict[str, int]:
        """Reason -> count for the `count` workers this filter newly rejected.

        `before` is the mask of workers alive before this filter (None = all)."""
        ...


class _OneReason:
    """A filter whose rejections all share one reason."""

    name = ""

    def reason(self, task: TaskRequest) -> str:
        raise NotImplementedError

    def reasons(
        self, task: TaskRequest, state: ClusterState, before: np.ndarray | None, count: int
    ) -> dict[str, int]:
        return {self.reason(task): count}


class HealthFilter:
    """Only ACTIVE workers take new tasks: lost ones cannot, draining ones must not.

    A rejected worker is counted as draining, as shut down (it said it left: its
    `left_s` is set), or as unhealthy (it stopped heartbeating), as the hint tells them."""

    name = "health"
    per_round = True
    UNHEALTHY = "worker unhealthy"
    DRAINING = "worker draining"
    SHUT_DOWN = "worker shut down"

    def filter(self, task: TaskRequest, state: ClusterState) -> np.ndarray | None:
        return state.active

    def check(self, task: TaskRequest, state: ClusterState, j: int) -> bool:
        return bool(state.active[j])

    def reasons(
        self, task: TaskRequest, state: ClusterState, before: np.ndarray | None, count: int
    ) -> dict[str, int]:
        rejected = ~state.active if before is None else before & ~state.active
        draining = rejected & state.draining
        left = int(np.count_nonzero(rejected & ~draining & (state.left_s >= 0)))
        n_draining = int(np.count_nonzero(draining))
        out = {
            self.UNHEALTHY: count - n_draining - left,
            self.SHUT_DOWN: left,
            self.DRAINING: n_draining,
        }
        return {k: v for k, v in out.items() if v}


class AvoidFilter(_OneReason):
    """A task stays away from the workers where its earlier attempts died."""

    name = "avoid"

    def filter(self, task: TaskRequest, state: ClusterState) -> np.ndarray | None:
        if not task.avoid_workers:
            return None
        idx = [state.index[w] for w in task.avoid_workers if w in state.index]
        if not idx:
            return None
        mask = np.ones(len(state), bool)
        mask[idx] = False
        return mask

    def check(self, task: TaskRequest, state: ClusterState, j: int) -> bool:
        return state.ids[j] not in task.avoid_workers

    def reason(self, task: TaskRequest) -> str:
        return "avoided after failure"


class SelectorFilter:
    """Every `key=value` of the task's selector must be a label of the worker."""

    name = "selector"

    def filter(self, task: TaskRequest, state: ClusterState) -> np.ndarray | None:
        if not task.selector:
            return None
        items = iter(task.selector.items())
        mask = state.label_mask(*next(items)).copy()
        for key, value in items:
            mask &= state.label_mask(key, value)
        return mask

    def check(self, task: TaskRequest, state: ClusterState, j: int) -> bool:
        labels = state.labels[j]
        return all(labels.get(k) == v for k, v in task.selector.items())

    def reasons(
        self, task: TaskRequest, state: ClusterState, before: np.ndarray | None, count: int
    ) -> dict[str, int]:
        # Each worker is reported under the first selector term it misses.
        alive = np.ones(len(state), bool) if before is None else before.copy()
        out: dict[str, int] = {}
        for key, value in task.selector.items():
            miss = alive & ~state.label_mask(key, value)
            n = int(np.count_nonzero(miss))
            if n:
                out[f"label mismatch: {key}={value}"] = n
                alive &= ~miss
        return out


class CpuFilter(_OneReason):
    name = "cpu"
    dynamic = True

    def filter(self, task: TaskRequest, state: ClusterState) -> np.ndarray | None:
        if task.cpu <= 0:
            return None
        return state.free[CPU] >= task.cpu - EPS

    def check(self, task: TaskRequest, state: ClusterState, j: int) -> bool:
        return task.cpu <= 0 or state.free[CPU, j] >= task.cpu - EPS

    def reason(self, task: TaskRequest) -> str:
        return "insufficient cpu"


class MemoryFilter(_OneReason):
    name = "memory"
    dynamic = True

    def filter(self, task: TaskRequest, state: ClusterState) -> np.ndarray | None:
        if task.memory_bytes <= 0:
            return None
        # Bytes are integers held exactly in float64 (< 2**53): no tolerance needed.
        return state.free[MEM] >= task.memory_bytes

    def check(self, task: TaskRequest, state: ClusterState, j: int) -> bool:
        return task.memory_bytes <= 0 or state.free[MEM, j] >= task.memory_bytes

    def reason(self, task: TaskRequest) -> str:
        return "insufficient memory"


class GpuFilter(_OneReason):
    """Whole and fractional GPUs, checked against the worker's GPU pool.

    A request below 1 (a shared GPU) fits when the pool has at least that much free;
    a whole-GPU request needs that many GPUs' worth free. With a pool both checks are
    the same comparison; they differ once GPUs are tracked per device (see snapshot).
    """

    name = "gpu"
    dynamic = True

    def filter(self, task: TaskRequest, state: ClusterState) -> np.ndarray | None:
        if task.gpu <= 0:
            return None
        return state.free[GPU] >= task.gpu - EPS

    def check(self, task: TaskRequest, state: ClusterState, j: int) -> bool:
        return task.gpu <= 0 or state.free[GPU, j] >= task.gpu - EPS

    def reason(self, task: TaskRequest) -> str:
        return "insufficient gpu"


BUILTIN_FILTERS: tuple[type, ...] = (
    HealthFilter,
    AvoidFilter,
    SelectorFilter,
    CpuFilter,
    MemoryFilter,
    GpuFilter,
)
DEFAULT_FILTERS: tuple[str, ...] = tuple(f.name for f in BUILTIN_FILTERS)
# What the master checks again when it commits a placement (avoiding is a preference).
ENFORCED_FILTERS: tuple[str, ...] = tuple(f.name for f in BUILTIN_FILTERS if f is not AvoidFilter)
