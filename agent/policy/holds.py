"""Holding a worker for a task that has waited too long: no starvation of big tasks.

Without it, a task that needs a whole worker can wait for ever behind a stream of
small ones: each time a little room frees up, a small task takes it, so no worker
ever empties enough for the big one. Ageing (ordering.py) puts the old task first in
every batch, but being first does not help when it fits nowhere.

So, as Slurm's and Maui's reservations do, a batch holds one worker for the first
task, in placement order, that has waited at least `hold_after_s` and could not be
placed for lack of room: no later task of the batch is placed there. The worker
then only empties, and the task starts there as soon as it fits (or anywhere else
sooner). Each batch chooses again from its snapshot; the held worker is the one
that lacks the least of the task's demand, so it stays the choice while it empties.

Only one worker is held per batch (EASY backfilling's one reservation), so a queue
of big tasks cannot take the cluster out of service; the others wait their turn.
A task whose age is unknown (queued_at and created_at 0) is never held for.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .filters import Filter
from .snapshot import EPS, ClusterState, TaskRequest, one_worker

# Five minutes: far longer than a batch interval, so a big task that merely arrives
# while the cluster is busy does not idle a worker, yet short next to the hours a
# starved task can wait.
HOLD_AFTER_S = 300.0
# The rejection reason the tasks after it see for the held worker.
HELD_REASON = "held for an older task"
# Starving tasks no worker could ever take (too big, or no worker matches) cost a
# look each: a batch takes at most this many looks, and one per kind of task (needs),
# so that thousands of them cost next to nothing.
MAX_HOLD_TRIES = 8
# Filters replaced by a capacity check: the room they judge is what a hold frees.
RESOURCE_FILTERS = frozenset({"cpu", "memory", "gpu"})


def waited(task: TaskRequest, now: float) -> float:
    """Seconds the task has waited in the queue; -1 when its age is unknown."""
    since = task.queued_at or task.created_at
    return now - since if since > 0 else -1.0


def needs(task: TaskRequest) -> tuple:
    """What `worker_to_hold` finding no worker depends on."""
    selector = tuple(sorted(task.selector.items()))
    return (task.demand, task.image, selector, task.avoid_workers, task.pinned_worker)


def worker_to_hold(
    task: TaskRequest, state: ClusterState, alive: np.ndarray, filters: Sequence[Filter]
) -> int | None:
    """The worker to hold for `task`, or None if no worker could ever take it.

    Candidates pass every filter but the resource ones (judged on the real state)
    and have the capacity for the task's demand. Of those, the one whose free room
    falls shortest of the demand, as a fraction of its capacity, is held; ties go
    to the first in snapshot order, so repeated batches choose the same worker."""
    j = state.index.get(task.pinned_worker) if task.pinned_worker else None
    if task.pinned_worker and j is None:
        return None
    ok = alive.copy() if j is None else one_worker(len(state), j) & alive
    for f in filters:
        if getattr(f, "name", "") in RESOURCE_FILTERS:
            continue
        mask = f.filter(task, state)
        if mask is not None:
            ok &= mask
    demand = np.array(task.demand, np.float64)[:, None]
    ok &= np.all(state.cap >= demand - EPS, axis=0)
    if not ok.any():
        return None
    lacking = np.clip(demand - state.free, 0.0, None)
    share = np.divide(lacking, state.cap, out=np.zeros_like(lacking), where=state.cap > 0)
    worst = np.where(ok, share.max(axis=0), np.inf)
    return int(np.argmin(worst))
