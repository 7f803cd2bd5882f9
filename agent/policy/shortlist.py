"""The best workers for the tasks of one job, kept exactly ranked between its tasks.

Replicas of a job ask for the same thing, so their totals are the same row, except
where a reservation changed a worker: and between two replicas only one worker
changed, the one the previous replica took. A shortlist ranks the best few workers
once per job (one pass over the cluster) and then re-ranks just that worker before
each replica, which costs a handful of Python operations instead of a pass over
every worker.

Exactness: the list holds every feasible worker ranked at or above `bound` (the last
one ranked when the list was made; None when it holds them all), and nothing else.
Workers outside the list rank below `bound` and do not change, so the head of the
list is always the true best, with ties going to the lowest worker index. A list of
`top_k + replicas - 1` workers is long enough: each replica removes at most one.
"""

from __future__ import annotations

from bisect import bisect_left

import numpy as np

_NEG = -np.inf
# After this many infeasible workers at the top, mask all infeasible ones at once: the
# best-scored workers mostly fit, but when one does not (a big task, a busy cluster),
# many usually do not.
_MAX_MISSES = 1


class Shortlist:
    """Parallel lists, best first: `negs` (minus each total: ascending sorts best
    first) and `workers` (equal totals: lowest index first)."""

    __slots__ = ("negs", "workers", "_bound")

    def __init__(self, total: np.ndarray, alive: np.ndarray, m: int, feasible: int) -> None:
        """The best `m` workers of `total` among `alive` (`feasible` of them). Clobbers
        `total` (with -inf) at every worker it looked at."""
        self.negs, self.workers = top(total, alive, m)
        complete = len(self.negs) < m or m >= feasible
        self._bound = None if complete else (self.negs[-1], self.workers[-1])

    def rerank_first(self, total: float | None) -> None:
        """The first worker (the one the last task took) now has `total`, or None when
        it no longer passes the filters."""
        negs, workers = self.negs, self.workers
        del negs[0]
        j = workers.pop(0)
        if total is None or not total > _NEG:  # gone, or a misbehaving scorer's -inf/NaN
            return
        neg, bound = -total, self._bound
        if bound is not None and (neg, j) > bound:
            return  # it now ranks below the list: outside, like every worker not in it
        at = bisect_left(negs, neg)
        while at < len(negs) and negs[at] == neg and workers[at] < j:
            at += 1
        negs.insert(at, neg)
        workers.insert(at, j)


def top(total: np.ndarray, alive: np.ndarray, k: int) -> tuple[list[float], list[int]]:
    """The k best workers of `total` among `alive`, best first (ties: lowest index),
    as minus their totals and their indices. Clobbers `total` (with -inf) at every
    worker it looked at.

    Most top-scored workers are feasible, so checking the few best one by one is
    cheaper than masking every infeasible worker first; after a miss it masks them
    all at once. Repeated argmax also beats argpartition for the short lists needed
    here.
    """
    negs: list[float] = []
    workers: list[int] = []
    misses, argmax, item, neg = 0, total.argmax, total.item, _NEG
    while len(workers) < k:
        j = int(argmax())
        value = item(j)
        if value == neg:
            break  # only a misbehaving scorer leaves a feasible worker at -inf
        total[j] = neg
        if alive[j]:
            negs.append(-value)
            workers.append(j)
            continue
        misses += 1
        if misses == _MAX_MISSES:
            np.putmask(total, ~alive, neg)
    return negs, workers
