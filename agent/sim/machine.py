"""The single-machine simulator: one machine of N processors, as SWF logs assume.

Placement on one machine is trivial, so the policy is the queue order. The loop
follows RLScheduler's SchedGym (Zhang et al., SC'20), whose protocol the targets use:

1. At each decision point the policy's priority function ranks the whole queue and
   its first job is chosen.
2. If the job fits it starts at once and the next decision follows at the same time.
3. If not, the job stays chosen (it is not re-ranked) while time advances to the
   next completion. With EASY backfilling the job gets a reservation at the earliest
   time enough processors will be free by the running jobs' *requested* times (the
   shadow time); meanwhile other queued jobs, scanned in the policy's order, start if
   they fit now and either end (by requested time) before the shadow time or use only
   processors the reserved job will not need. Arrivals are then events too.

What is shared with the live agent: the priority function is the registered
orderer's `keys` (the same method `order` uses in `place_batch`), and every start is
checked with the registered cpu filter's `check` against a one-worker ClusterState
whose reservations the loop keeps (`reserve`, and a negative reserve on completion).
What is not: `place_batch` itself, whose per-call set-up would dominate a trace of
thousands of single-worker decisions and could not change any of them.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from cloudai.agent.policy.job_ordering import JobColumns
from cloudai.agent.policy.registry import REGISTRY, Kind
from cloudai.agent.policy.snapshot import CPU, ClusterState, TaskRequest, WorkerSpec
from cloudai.model import Resources

from .trace import Trace


@dataclass
class Outcome:
    """What happened to each job of a run (NaN start: never started)."""

    trace: Trace
    start: np.ndarray
    end: np.ndarray
    capacity: float
    # Set by cluster runs: unallocated GPU fraction when the cluster saturated, and
    # the allocated share of GPUs then (there is no time-based utilisation there).
    unallocated_gpu_frac: float | None = None
    utilization: float | None = None

    @property
    def placed(self) -> np.ndarray:
        return ~np.isnan(self.start)


class MachineSim:
    def __init__(
        self,
        trace: Trace,
        procs: int,
        orderer,
        backfill: bool = False,
        tasks: list[TaskRequest] | None = None,
    ) -> None:
        """`orderer`: anything with `keys(JobColumns) -> ndarray` (smallest first).
        `tasks`: the jobs as TaskRequests, when the caller already has them."""
        if procs <= 0:
            raise ValueError("the machine needs at least one processor")
        self.trace, self.n_procs, self.orderer, self.backfill = trace, procs, orderer, backfill
        self.state = ClusterState.from_workers([_machine(procs)])
        self.fit = REGISTRY.create(Kind.FILTER, "cpu")
        self.tasks = tasks if tasks is not None else job_tasks(trace.procs)
        n = len(trace)
        self.start, self.end = np.full(n, np.nan), np.full(n, np.nan)
        self.queue: list[int] = []
        self.running: list[tuple[float, int]] = []  # heap of (end, job)
        self.next_arrival, self.t = 0, 0.0
        # Orderers that learn from completions (RecentRuntimes) are told of each one.
        self.observe = getattr(orderer, "observe", None)

    @property
    def free(self) -> float:
        return float(self.state.free[CPU, 0])

    def run(self) -> Outcome:
        self.run_until(np.inf)
        return Outcome(self.trace, self.start, self.end, float(self.n_procs))

    def run_until(self, t_stop: float, first: int | None = None) -> None:
        """Decide and start jobs until the clock reaches t_stop (or every job has
        started). `first`, a queued job, is the first decision instead of the
        orderer's pick (a look-ahead planner's candidate, lookahead.py)."""
        tr = self.trace
        while (self.next_arrival < len(tr) or self.queue) and self.t < t_stop:
            if not self.queue:
                self._advance(arrivals=True)
                continue
            j, first = (self._best(self.queue) if first is None else first), None
            while not self.fit.check(self.tasks[j], self.state, 0):
                if self.backfill:
                    self._backfill_around(j)
                self._advance(arrivals=self.backfill)
            self._start(j)

    # -- decisions ---------------------------------------------------------------------
    def _columns(self, q: np.ndarray) -> JobColumns:
        tr = self.trace
        procs = tr.procs[q]
        run = np.fromiter((k for _, k in self.running), np.int64, len(self.running))
        ends = np.maximum(self.start[run] + tr.req_time[run] - self.t, 0.0)
        by_end = np.argsort(ends, kind="stable")
        return JobColumns(
            submit=tr.submit[q],
            wait=np.maximum(self.t - tr.submit[q], 0.0),
            runtime=np.maximum(tr.req_time[q], 1.0),
            procs=procs,
            fits=procs <= self.free,
            free=self.free,
            capacity=float(self.n_procs),
            release_in=ends[by_end],
            release_procs=tr.procs[run][by_end],
            user=tr.user[q],
        )

    def _ranked(self, jobs: list[int]) -> np.ndarray:
        q = np.asarray(jobs, np.int64)
        keys = self.orderer.keys(self._columns(q))
        return q[np.lexsort((q, self.trace.submit[q], keys))]

    def _best(self, jobs: list[int]) -> int:
        if len(jobs) == 1:
            return jobs[0]
        return int(self._ranked(jobs)[0])

    def _backfill_around(self, j: int) -> None:
        """EASY: start jobs that do not delay j's reservation."""
        others = [k for k in self.queue if k != j]
        if not others:
            return
        shadow, extra = self._reservation(j)
        tr, q = self.trace, self._ranked(others)
        # A cheap vector pre-check; each start is still decided by the filter below.
        maybe = (tr.procs[q] <= self.free) & (
            (self.t + tr.req_time[q] <= shadow) | (tr.procs[q] <= extra)
        )
        for c in q[maybe].tolist():
            task = self.tasks[c]
            if not self.fit.check(task, self.state, 0):
                continue
            ends_in_time = self.t + self.trace.req_time[c] <= shadow
            if ends_in_time or task.cpu <= extra:
                if not ends_in_time:
                    extra -= task.cpu
                self._start(c)

    def _reservation(self, j: int) -> tuple[float, float]:
        """Shadow time for job j, and the processors left over then."""
        need, free = self.trace.procs[j], self.free
        tr = self.trace
        expected = sorted(
            (max(self.start[k] + tr.req_time[k], self.t), tr.procs[k]) for _, k in self.running
        )
        for when, procs in expected:
            free += procs
            if free >= need:
                return when, free - need
        return float("inf"), 0.0  # unreachable: j fits an empty machine

    # -- events --------------------------------------------------------------------------
    def _start(self, j: int) -> None:
        task = self.tasks[j]
        self.state.reserve(0, task.cpu, 0, 0.0)
        self.queue.remove(j)
        self.start[j] = self.t
        self.end[j] = self.t + self.trace.run[j]
        heapq.heappush(self.running, (self.end[j], j))

    def _advance(self, arrivals: bool) -> None:
        """Move time to the next event: a completion, or (when `arrivals`, or when
        nothing runs) an arrival; apply every event due by then."""
        tr = self.trace
        t_done = self.running[0][0] if self.running else np.inf
        t_arr = tr.submit[self.next_arrival] if self.next_arrival < len(tr) else np.inf
        self.t = max(self.t, min(t_done, t_arr) if arrivals or not self.running else t_done)
        while self.running and self.running[0][0] <= self.t:
            _, k = heapq.heappop(self.running)
            self.state.reserve(0, -self.tasks[k].cpu, 0, 0.0)
            if self.observe is not None:
                self.observe(int(tr.user[k]), float(tr.run[k]))
        while self.next_arrival < len(tr) and tr.submit[self.next_arrival] <= self.t:
            k = self.next_arrival
            self.next_arrival += 1
            if tr.procs[k] <= self.n_procs:
                self.queue.append(k)
            # else: it can never run here; it stays unplaced (NaN start)


def job_tasks(procs: np.ndarray, first: int = 0) -> list[TaskRequest]:
    """One TaskRequest per job (ids from `first`): what the cpu filter checks."""
    return [TaskRequest(task_id=str(first + j), cpu=float(c)) for j, c in enumerate(procs)]


def _machine(procs: int) -> WorkerSpec:
    return WorkerSpec(id="machine", capacity=Resources(float(procs), 0, 0.0))


def simulate_machine(trace: Trace, procs: int, orderer, backfill: bool = False) -> Outcome:
    return MachineSim(trace, procs, orderer, backfill).run()
