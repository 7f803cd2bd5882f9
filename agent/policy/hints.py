"""The smallest change that would make an unplaceable task placeable.

The checks follow the filter order: no healthy worker at all, then labels nobody has,
then workers the task must avoid, then resources. For resources the hint prefers a
single change: if some worker misses only one resource, suggest lowering that request
to the most that is free on such a worker, choosing the resource that needs the
smallest relative cut. Otherwise it names the worker that needs the smallest cut.
"""

from __future__ import annotations

import math

import numpy as np

from .snapshot import EPS, GIB, RESOURCE_NAMES, ClusterState, TaskRequest


def placement_hint(task: TaskRequest, state: ClusterState, only: int | None = None) -> str:
    """Hint for `task` on `state`; `only` restricts it to one (pinned) worker."""
    pool = np.ones(len(state), bool)
    if only is not None:
        pool = np.zeros(len(state), bool)
        pool[only] = True
    healthy = pool & state.active
    if not healthy.any():
        if only is not None:
            return f"worker {state.ids[only]} is {state.health_of(only).value.lower()}: pin another worker"
        return "no healthy worker"
    base, why = _matching(task, state, healthy, only)
    if why:
        return why
    return _resource_hint(task, state, base, only)


def _matching(
    task: TaskRequest, state: ClusterState, healthy: np.ndarray, only: int | None
) -> tuple[np.ndarray, str]:
    base = healthy.copy()
    for key, value in task.selector.items():
        has = state.label_mask(key, value)
        if not (healthy & has).any():
            if only is not None:
                return base, f"worker {state.ids[only]} has no label {key}={value}"
            if not has.any():
                return base, f"no worker has label {key}={value}"
            return base, f"no healthy worker has label {key}={value}"
        base &= has
    if not base.any():
        labels = ", ".join(f"{k}={v}" for k, v in task.selector.items())
        return base, f"no healthy worker has all of the labels {labels}"
    avoided = [state.index[w] for w in task.avoid_workers if w in state.index]
    if avoided:
        base[avoided] = False
        if not base.any():
            return base, "the only matching workers are avoided after this task failed there"
    return base, ""


def _resource_hint(
    task: TaskRequest, state: ClusterState, base: np.ndarray, only: int | None
) -> str:
    need = np.array(task.demand)
    asked = need > 0
    fits = state.free >= (need - EPS)[:, None]
    fail = ~fits & asked[:, None] & base[None, :]
    if not fail.any():
        return ""
    where = "free" if only is not None else "largest free on a healthy worker"
    single = fail & (fail.sum(axis=0) == 1)[None, :]
    best: tuple[float, int, float] | None = None
    for r in np.flatnonzero(asked):
        if single[r].any():
            limit = float(state.free[r, single[r]].max())
            cut = (need[r] - limit) / need[r]
            if best is None or cut < best[0]:
                best = (cut, int(r), limit)
    if best is not None and best[2] > EPS:
        _, r, limit = best
        return f"request <= {_amount(r, limit)} ({where}){_capacity_note(state, base, need)}"
    return _multi_hint(state, base, need, asked, where)


def _multi_hint(
    state: ClusterState, base: np.ndarray, need: np.ndarray, asked: np.ndarray, where: str
) -> str:
    idx = np.flatnonzero(base)
    free = np.maximum(state.free[:, idx], 0.0)
    short = np.where(asked[:, None], (need[:, None] - free) / np.where(need > 0, need, 1)[:, None], 0)
    worst = np.max(np.maximum(short, 0.0), axis=0)
    j = int(idx[int(np.argmin(worst))])
    parts = [
        f"<= {_amount(r, float(state.free[r, j]))}"
        for r in np.flatnonzero(asked)
        if state.free[r, j] < need[r] - EPS
    ]
    if any(state.free[r, j] <= EPS for r in np.flatnonzero(asked) if need[r] > 0):
        names = ", ".join(RESOURCE_NAMES[r] for r in np.flatnonzero(asked))
        return f"wait for capacity: no healthy worker has enough free {names}"
    return f"request {' and '.join(parts)} ({where}: {state.ids[j]}){_capacity_note(state, base, need)}"


def _capacity_note(state: ClusterState, base: np.ndarray, need: np.ndarray) -> str:
    """Say whether waiting helps: does the task fit some worker once it is idle?"""
    big = base & np.all(state.cap >= (need - EPS)[:, None], axis=0)
    return ", or wait for running tasks to finish" if big.any() else ""


def _amount(r: int, value: float) -> str:
    # Round down, so that following the hint really makes the task fit.
    if RESOURCE_NAMES[r] == "memory":
        if value >= GIB:
            return f"{math.floor(value / GIB * 10) / 10:.1f} GiB memory"
        return f"{math.floor(value / 1024**2)} MiB memory"
    return f"{math.floor(value * 100 + 1e-6) / 100:g} {RESOURCE_NAMES[r]}"
