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

from bisect import insort

import numpy as np

_NEG = -np.inf
# After this many infeasible workers at the top, mask all infeasible ones at once: the
# best-scored workers mostly fit, but when one does not (a big task, a busy cluster),
# many usually do not.
_MAX_MISSES = 1


class Shortlist:
    __slots__ = ("keys", "_bound")

    def __init__(self, total: np.ndarray, alive: np.ndarray, m: int, feasible: int) -> None:
        """The best `m` workers of `total` among `alive` (`feasible` of them). Clobbers
        `total` (with -inf) at every worker it looked at."""
        # Keys sort best first: higher total, then lower index.
        self.keys: list[tuple[float, int]] = top(total, alive, m)
        complete = len(self.keys) < m or m >= feasible
        self._bound = None if complete else self.keys[-1]

    def rerank_first(self, total: float | None) -> None:
        """The first worker (the one the last task took) now has `total`, or None when
        it no longer passes the filters."""
        _, j = self.keys.pop(0)
        if total is None or not total > _NEG:  # gone, or a misbehaving scorer's -inf/NaN
            return
        key = (-total, j)
        if self._bound is None or key < self._bound:
            insort(self.keys, key)


def top(total: np.ndarray, alive: np.ndarray, k: int) -> list[tuple[float, int]]:
    """The k best workers of `total` among `alive`, as (-total, index) best first; ties
    go to the lowest index. Clobbers `total` (with -inf) at every worker it looked at.

    Most top-scored workers are feasible, so checking the few best one by one is
    cheaper than masking every infeasible worker first; after a few misses (say, a
    bin-packing profile that favours full workers) it masks them all at once.
    Repeated argmax also beats argpartition for the short lists needed here.
    """
    keys: list[tuple[float, int]] = []
    misses = 0
    while len(keys) < k:
        j = int(total.argmax())
        value = total.item(j)
        if value == _NEG:
            break  # only a misbehaving scorer leaves a feasible worker at -inf
        total[j] = _NEG
        if alive[j]:
            keys.append((-value, j))
            continue
        misses += 1
        if misses == _MAX_MISSES:
            np.putmask(total, ~alive, _NEG)
    return keys
