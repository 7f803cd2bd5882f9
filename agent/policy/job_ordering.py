"""Job-aware queue orderers: SJF, WFP3, UNICEP and F1 (the HPC priority heuristics).

Each orderer is a priority function over columns of job features (`JobColumns`):
`keys(cols)` gives one key per job, smallest first. The same `keys` serves both entry
points, so the formula exists once:

- the live agent and `place_batch` call `order(tasks, now)`, which builds the columns
  from the TaskRequests (runtime estimates come from the `runtime` mapping, e.g. the
  predictor's or the trace's requested time);
- the single-machine simulator keeps its queue as arrays and calls `keys` directly,
  thousands of times per trace, without building Python objects per decision.

Formulas (r requested time, n requested processors, s submit time, w wait), as
given with the traces (RLScheduler, Zhang et al. SC'20; Carastan-Santos and de
Camargo SC'17 for F1):

    SJF     r
    WFP3    -(w / r)^3 * n
    UNICEP  -w / (log2(n) * r)
    F1      log10(r) * n + 870 * log10(s)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .snapshot import TaskRequest

# When nothing estimates a task's runtime, all tasks look alike (one hour) and the
# submission order decides: SJF then degrades to FIFO, which is the safe default.
DEFAULT_RUNTIME_S = 3600.0
# Keeps log2(1) = 0 from dividing by zero in UNICEP (one-processor jobs then get the
# largest priority among jobs that have waited, as in RLScheduler's implementation).
_TINY = 1e-15


@dataclass(slots=True)
class JobColumns:
    """Per-job features of a queue, one array entry per job.

    `capacity` is the machine size (or the largest worker's cpu) and `free` what is
    free now; `fits` says whether each job could start now. `release_in` and
    `release_procs`, when known (the single-machine simulator), are the running
    jobs' remaining *requested* times (sorted) and their sizes: from them
    `start_delay` tells when each job could start. Policies that ignore the machine
    (SJF, F1, ...) simply do not read them.
    """

    submit: np.ndarray
    wait: np.ndarray
    runtime: np.ndarray
    procs: np.ndarray
    fits: np.ndarray
    free: float = math.inf
    capacity: float = math.inf
    release_in: np.ndarray | None = None
    release_procs: np.ndarray | None = None
    user: np.ndarray | None = None  # user ids, when known (SWF logs)
    estimate: np.ndarray | None = None  # run-time estimates besides `runtime`, if any

    def start_delay(self) -> np.ndarray:
        """Seconds until each job could start if nothing else started, by the running
        jobs' requested ends (its EASY shadow time): 0 for jobs that fit now, and
        also 0 for jobs that do not when the running jobs are unknown."""
        delay = np.zeros(len(self.procs))
        rel = self.release_in
        if rel is None or not len(rel) or self.fits.all():
            return delay
        free_then = self.free + np.cumsum(self.release_procs)
        k = np.searchsorted(free_then, self.procs, side="left")
        late = ~self.fits
        delay[late] = rel[np.minimum(k[late], len(rel) - 1)]
        return delay

    @classmethod
    def from_tasks(
        cls,
        tasks: Sequence[TaskRequest],
        now: float,
        runtime: Mapping[str, float] | None = None,
        default_runtime: float = DEFAULT_RUNTIME_S,
        free: float = math.inf,
        capacity: float = math.inf,
    ) -> JobColumns:
        n = len(tasks)
        est = runtime or {}
        submit = np.fromiter((t.created_at for t in tasks), np.float64, n)
        queued = np.fromiter((t.queued_at or t.created_at for t in tasks), np.float64, n)
        procs = np.fromiter((t.cpu for t in tasks), np.float64, n)
        r = np.fromiter((est.get(t.task_id, default_runtime) for t in tasks), np.float64, n)
        return cls(
            submit=submit,
            wait=np.maximum(now - queued, 0.0),
            runtime=np.maximum(r, 1.0),
            procs=procs,
            fits=procs <= free,
            free=free,
            capacity=capacity,
        )


class KeyOrderer:
    """Base of the key-based orderers: smallest key first, then oldest, then index.

    Constructor arguments (all optional, usable as profile params): `runtime`, a
    mapping task id -> estimated seconds; `default_runtime` for tasks it misses;
    `free` and `capacity`, the cpu free now and the largest worker's cpu.
    """

    name = ""

    def __init__(
        self,
        runtime: Mapping[str, float] | None = None,
        default_runtime: float = DEFAULT_RUNTIME_S,
        free: float = math.inf,
        capacity: float = math.inf,
    ) -> None:
        self.runtime = runtime
        self.default_runtime = float(default_runtime)
        self.free, self.capacity = float(free), float(capacity)

    def keys(self, c: JobColumns) -> np.ndarray:
        raise NotImplementedError

    def order(self, tasks: Sequence[TaskRequest], now: float) -> list[int]:
        if not tasks:
            return []
        c = JobColumns.from_tasks(
            tasks, now, self.runtime, self.default_runtime, self.free, self.capacity
        )
        return np.lexsort((np.arange(len(tasks)), c.submit, self.keys(c))).tolist()


class Sjf(KeyOrderer):
    """Shortest (requested or predicted) job first."""

    name = "sjf"

    def keys(self, c: JobColumns) -> np.ndarray:
        return c.runtime


class Wfp3(KeyOrderer):
    """Favours jobs that waited long relative to their length, weighted by size."""

    name = "wfp3"

    def keys(self, c: JobColumns) -> np.ndarray:
        return -((c.wait / c.runtime) ** 3) * c.procs


class Unicep(KeyOrderer):
    """Like WFP3 but favours small jobs: wait over (log2(size) * length)."""

    name = "unicep"

    def keys(self, c: JobColumns) -> np.ndarray:
        den = np.maximum(np.log2(np.maximum(c.procs, _TINY)), _TINY) * c.runtime
        return -(c.wait + _TINY) / den


class F1(KeyOrderer):
    """The best function found by Carastan-Santos and de Camargo's regression (SC'17)."""

    name = "f1"

    def keys(self, c: JobColumns) -> np.ndarray:
        s = np.maximum(c.submit, 0.1)
        return np.log10(c.runtime) * c.procs + 870.0 * np.log10(s)


class Fcfs(KeyOrderer):
    """First come, first served by submit time (the same order as `fifo`, as a key)."""

    name = "fcfs"

    def keys(self, c: JobColumns) -> np.ndarray:
        return c.submit


JOB_ORDERERS: tuple[type[KeyOrderer], ...] = (Fcfs, Sjf, Wfp3, Unicep, F1)
