"""The smallest change that would make an unplaceable task placeable.

The checks follow the filter order: no healthy worker at all (what the workers are
instead: draining, with the one to take back with `cloudai drain WORKER --undo`, and/or
inactive, saying which shut down and which stopped heartbeating; or none there at all),
then labels nobody has,
then workers the task must avoid, then resources. For resources the hint prefers a
single change: if some worker misses only one resource, lower that request to the
most that is free on such a worker, choosing the resource that needs the smallest
relative cut. Otherwise it names the worker that needs the smallest cut overall.
"""

from __future__ import annotations

import math

import numpy as np

from .snapshot import EPS, GIB, RESOURCE_NAMES, ClusterState, TaskRequest


def placement_hint(task: TaskRequest, state: ClusterState, only: int | None = None) -> str:
    """Hint for `task` on `state`; `only` restricts it to one (pinned) worker.
    Empty when the task fits as it is."""
    pool = np.ones(len(state), bool)
    if only is not None:
        pool = np.zeros(len(state), bool)
        pool[only] = True
    healthy = pool & state.active
    if not healthy.any():
        if only is None:
            return _no_active_hint(task, state)
        if state.left_s[only] >= 0:
            return f"worker {state.ids[only]} shut down: pin another worker"
        health = state.health_of(only).value.lower()
        return f"worker {state.ids[only]} is {health}: pin another worker"
    base, why = _matching(task, state, healthy, only)
    return why or _resource_hint(task, state, base, only)


def _no_active_hint(task: TaskRequest, state: ClusterState) -> str:
    """No worker is active: say what the workers are instead."""
    if len(state) == 0:
        return (
            "no worker to place on (none registered, or all unreachable or without a "
            "Docker engine): start a worker"
        )
    if state.draining.any():
        return _draining_hint(task, state)
    return _inactive_hint(state)


def _inactive_hint(state: ClusterState) -> str:
    """Every worker is inactive: say which shut down (they said so when they stopped)
    and which stopped heartbeating (killed, hung, or cut off). No age: a hint is kept
    with its decision and read later (`cloudai workers` shows when each left)."""
    n, left = len(state), int(np.count_nonzero(state.left_s >= 0))
    if n == 1:
        if left:
            return f"worker {state.ids[0]} shut down: restart it or start another"
        return f"worker {state.ids[0]} is inactive (no heartbeats): restart it or start another"
    if not left:
        return f"all {n} workers are inactive (no heartbeats): restart one or start another"
    if left == n:
        return f"all {n} workers shut down: restart one or start another"
    return (
        f"all {n} workers are inactive ({left} shut down, {n - left} without heartbeats): "
        "restart one or start another"
    )


def _draining_hint(task: TaskRequest, state: ClusterState) -> str:
    """No worker is active and some drain (the others are inactive): name one to take
    back (one the task fits, if any), and what else the task would need there if none
    fits as it is."""
    base, why = _matching(task, state, state.draining, None)
    # Only the draining workers are looked at, so "healthy" in the usual hint is dropped.
    then = (why or _resource_hint(task, state, base, None)).replace("healthy ", "")
    fits = base & np.all(state.free >= np.array(task.demand)[:, None] - EPS, axis=0)
    pick = state.ids[int(np.argmax(fits if fits.any() else base if base.any() else state.draining))]
    draining = int(state.draining.sum())
    if len(state) == 1:
        hint = f"worker {pick} is draining: `cloudai drain {pick} --undo` lets it take tasks again"
    elif draining < len(state):
        inactive = len(state) - draining
        hint = (
            f"no active worker ({draining} draining, {inactive} inactive): "
            f"`cloudai drain {pick} --undo` lets {pick} take tasks again"
        )
    else:
        hint = (
            f"all {len(state)} workers are draining: "
            f"`cloudai drain {pick} --undo` lets {pick} take tasks again"
        )
    return f"{hint}; then: {then}" if then else hint


def _matching(
    task: TaskRequest, state: ClusterState, healthy: np.ndarray, only: int | None
) -> tuple[np.ndarray, str]:
    """Healthy workers with the task's labels that it need not avoid, or why none."""
    base = healthy.copy()
    for key, value in task.selector.items():
        has = state.label_mask(key, value)
        if not (healthy & has).any():
            if only is not None:
                return base, f"worker {state.ids[only]} has no label {key}={value}"
            if not has.any():
                return base, f"no worker has label {key}={value}"
            return base, _label_elsewhere(state, has, f"{key}={value}")
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


def _label_elsewhere(state: ClusterState, has: np.ndarray, label: str) -> str:
    """Only unhealthy workers have `label`: name a draining one to take back, if any."""
    why = f"no healthy worker has label {label}"
    draining = np.flatnonzero(has & state.draining)
    if not draining.size:
        return why
    name = state.ids[int(draining[0])]
    return f"{why}: {name} has it but is draining (`cloudai drain {name} --undo`)"


def _resource_hint(
    task: TaskRequest, state: ClusterState, base: np.ndarray, only: int | None
) -> str:
    need = np.array(task.demand)
    asked = np.flatnonzero(need > 0)
    idx = np.flatnonzero(base)
    if asked.size == 0 or idx.size == 0:
        return ""
    for r in asked:
        if not (state.cap[r, idx] > EPS).any():
            pinned = state.ids[only] if only is not None else None
            return _none_has(RESOURCE_NAMES[r], pinned, bool(task.selector))
    free = state.free[np.ix_(asked, idx)]
    short = free < need[asked, None] - EPS
    if not short.any(axis=0).all():
        return ""  # some worker fits as it is
    where = f"free on {state.ids[only]}" if only is not None else "largest free on a healthy worker"
    wait = _wait_note(state, idx, need)
    single = short & (short.sum(axis=0) == 1)
    best: tuple[float, int, float] | None = None
    for n, r in enumerate(asked):
        if single[n].any():
            limit = float(free[n, single[n]].max())
            cut = (need[r] - limit) / need[r]
            if limit > EPS and (best is None or cut < best[0]):
                best = (cut, int(r), limit)
    if best is not None:
        return f"request <= {_amount(best[1], best[2])} ({where}){wait}"
    return _several(state, idx, need, asked, free, wait)


def _none_has(resource: str, pinned: str | None, selector: bool) -> str:
    """'no healthy worker has a GPU', or for a pinned task 'worker w1 has no GPU'."""
    name = resource.upper() if resource in ("cpu", "gpu") else resource
    if pinned is not None:
        return f"worker {pinned} has no {name}"
    who = "no healthy worker with its labels" if selector else "no healthy worker"
    return f"{who} has {'a' if resource == 'gpu' else 'any'} {name}"


def _several(
    state: ClusterState,
    idx: np.ndarray,
    need: np.ndarray,
    asked: np.ndarray,
    free: np.ndarray,
    wait: str,
) -> str:
    """Every worker misses several resources: the one needing the smallest cut."""
    for n, r in enumerate(asked):
        if free[n].max() <= EPS:
            return f"wait for capacity: no matching healthy worker has any {RESOURCE_NAMES[r]} free"
    cut = np.max((need[asked, None] - np.maximum(free, 0.0)) / need[asked, None], axis=0)
    j = int(idx[int(np.argmin(cut))])
    parts = [
        f"<= {_amount(int(r), float(state.free[r, j]))}"
        for r in asked
        if state.free[r, j] < need[r] - EPS
    ]
    return f"request {' and '.join(parts)} (free on {state.ids[j]}){wait}"


def _wait_note(state: ClusterState, idx: np.ndarray, need: np.ndarray) -> str:
    """Does waiting help: would the task fit one of these workers once it is idle?"""
    fits = np.all(state.cap[:, idx] >= (need - EPS)[:, None], axis=0)
    return ", or wait for running tasks to finish" if fits.any() else ""


def _amount(r: int, value: float) -> str:
    # Round down, so that following the hint really makes the task fit.
    if RESOURCE_NAMES[r] == "memory":
        if value >= GIB:
            return f"{math.floor(value / GIB * 10) / 10:.1f} GiB memory"
        return f"{math.floor(value / 1024**2)} MiB memory"
    return f"{math.floor(value * 100 + 1e-6) / 100:g} {RESOURCE_NAMES[r]}"
