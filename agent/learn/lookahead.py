"""Look-ahead planning on the single machine: a teacher for learned orderers.

At each decision the planner takes a shortlist of the queue: the base orderer's
first `shortlist` jobs, plus the first `fits` jobs in that order that fit now. For
each candidate it replays the machine forward for `horizon` seconds, the candidate
first and the base orderer after it, and it picks the candidate with the lowest
total bounded slowdown of the jobs waiting now and those arriving by then (a job not
started by the horizon counts as waiting until it).

It sees no more than a scheduler could:
- the jobs that have arrived, and the running jobs' requested ends;
- every replayed job runs for its requested time;
- the future is not the trace's. With a FutureSampler (resample.py), arrivals are
  drawn from a workload model fitted to the held-out jobs, `samples` times, with
  the same draws for every candidate. Without one, nothing arrives after now.

It is slow: about a shortlist's worth of short simulations per decision. It runs
only in the simulator, so it is not a policy the live agent can use. What it is
for: measuring how much better than the heuristics a decision rule could do with
a model of the future (docs/placement-results.md, Round 3), and giving labels for
a fast learned policy to imitate.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

import numpy as np

from cloudai.agent.sim.machine import MachineSim, job_tasks
from cloudai.agent.sim.trace import Trace

from .resample import FutureSampler


@dataclass
class Planner:
    base: Any  # an orderer: the shortlist's order and the replays' decisions
    future: FutureSampler | None = None  # None: nothing arrives after now
    shortlist: int = 3
    fits: int = 2
    horizon: float = 3600.0
    samples: int = 1
    seed: int = 0


class PlannerSim(MachineSim):
    """The single-machine simulator, with the planner choosing each queue head (EASY
    backfilling, when on, still scans the base orderer's order)."""

    def __init__(self, trace: Trace, procs: int, planner: Planner, backfill: bool = False):
        super().__init__(trace, procs, planner.base, backfill)
        self.planner = planner
        self.decisions = 0

    def _best(self, jobs: list[int]) -> int:
        if len(jobs) == 1:
            return jobs[0]
        cands = self.candidates(jobs)
        cost = np.zeros(len(cands))
        for known, tasks in self.futures():
            for i, c in enumerate(cands):
                cost[i] += self.rollout(known, tasks, c)
        self.decisions += 1
        return int(cands[int(np.argmin(cost))])

    def futures(self):
        """What each replay of this decision knows: one (trace, tasks) per sample of
        the future (one, with nothing arriving, without a sampler); see _known."""
        p = self.planner
        for m in range(p.samples if p.future is not None else 1):
            yield self._known(np.random.default_rng([p.seed, self.decisions, m]))

    def candidates(self, jobs: list[int]) -> list[int]:
        ranked = self._ranked(jobs).tolist()
        out = ranked[: self.planner.shortlist]
        fitting = [j for j in ranked if self.trace.procs[j] <= self.free]
        return out + [j for j in fitting[: self.planner.fits] if j not in out]

    def _known(self, rng: np.random.Generator) -> tuple[Trace, list]:
        """The jobs arrived so far, then (with a sampler) imagined arrivals up to the
        horizon; every job's run time is its requested time."""
        n0 = self.next_arrival
        known = self.trace.take(slice(0, n0))
        tasks = self.tasks[:n0]
        if self.planner.future is not None:
            later = self.planner.future.draw(self.t, self.t + self.planner.horizon, rng)
            known = known.then(later)
            tasks = tasks + job_tasks(later.procs, n0)
        known.run = known.req_time.copy()
        return known, tasks

    def rollout(self, known: Trace, tasks: list, first: int | None, orderer=None) -> float:
        """Total bounded slowdown, at the horizon, of the jobs waiting now and those
        arriving by then, if `first` is the next job chosen (None: the orderer's
        pick) and `orderer` (by default the planner's base) decides the rest."""
        base = self.planner.base if orderer is None else orderer
        sim = MachineSim(known, self.n_procs, base, self.backfill, tasks)
        n0 = self.next_arrival
        sim.start[:n0] = self.start[:n0]
        sim.queue = list(self.queue)
        sim.running = [(self.start[j] + known.run[j], j) for _, j in self.running]
        heapq.heapify(sim.running)
        sim.state.reserve(0, self.n_procs - self.free, 0, 0.0)
        sim.next_arrival, sim.t = n0, self.t
        until = self.t + self.planner.horizon
        sim.run_until(until, first)
        idx = np.concatenate([np.asarray(self.queue, np.int64), np.arange(n0, len(known))])
        idx = idx[known.submit[idx] <= until]
        start = np.where(np.isnan(sim.start[idx]), max(until, sim.t), sim.start[idx])
        run = known.run[idx]
        bsld = (start - known.submit[idx] + run) / np.maximum(run, 10.0)
        return float(np.sum(np.maximum(bsld, 1.0)))
