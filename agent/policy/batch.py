"""One batch through the pipeline: the per-task loop and the per-batch explanations.

This is the hot path (tens of thousands of decisions a second), so it is written to
make few Python and numpy calls per task: filters that do not depend on the task run
once per batch, scoring is one matrix-vector product plus cached rows (see plan.py),
and the per-plugin scores of the candidates are computed for the whole batch at the
end, vectorised, from the worker views recorded at decision time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .filters import Filter
from .hints import placement_hint
from .placement import Candidate, CandidateList, CandidateTable, Placement
from .plan import ScoringPlan
from .scorers import Scorer, feature_matrix
from .snapshot import ClusterState, TaskRequest

_NEG = -np.inf
_MAX_MISSES = 4


@dataclass(slots=True)
class _Prev:
    """The filter chain's answer for the last task, kept so that a next task with the
    same needs can reuse it."""

    task: int
    alive: np.ndarray
    feasible: int
    rejections: dict[str, int]
    winner: int  # the worker it reserved, -1 if none


def _same_needs(a: TaskRequest, b: TaskRequest) -> bool:
    return (
        a.cpu == b.cpu
        and a.memory_bytes == b.memory_bytes
        and a.gpu == b.gpu
        and a.image == b.image
        and not a.pinned_worker
        and a.selector == b.selector
        and a.avoid_workers == b.avoid_workers
    )


class Batch:
    def __init__(
        self,
        filters: Sequence[Filter],
        scorers: Sequence[tuple[Scorer, float]],
        state: ClusterState,
        tasks: Sequence[TaskRequest],
        top_k: int,
    ) -> None:
        self.filters, self.state, self.tasks, self.top_k = list(filters), state, tasks, top_k
        self.n = len(state)
        self._start, self._per_task = self._leading_round_filters()
        self.plan = ScoringPlan(scorers, state, excluded=~self._start[0])
        self.phi = feature_matrix(tasks)
        scaled = self.phi * self.plan.feature_scale
        # Each task's features as its scoring variant expects them (see ScoringPlan).
        self._phi_cpu = np.ascontiguousarray(scaled[:, list(self.plan.features(False))])
        self._phi_gpu = scaled
        # Consecutive tasks with the same needs (replicas of one job) reuse the previous
        # filter answer when every per-task filter can re-judge one worker.
        self._incremental = all(hasattr(f, "check") for f in self._per_task)
        self._dynamic = [f for f in self._per_task if getattr(f, "dynamic", True)]
        self._prev: _Prev | None = None
        self.out: list[Placement] = []
        # Records of scored decisions, flat, for `_explain`: output position, task
        # index, candidate count, candidate workers, totals, views at decision time,
        # and the values of the scorers that are neither linear nor cached.
        self._pos: list[int] = []
        self._task: list[int] = []
        self._k: list[int] = []
        self._workers: list[int] = []
        self._totals: list[float] = []
        self._views: list[np.ndarray] = []
        self._other: list[list[np.ndarray]] = []
        # (output position, task index, pinned worker index or None).
        self._unplaced: list[tuple[int, int, int | None]] = []

    def _leading_round_filters(self) -> tuple[tuple, list[Filter]]:
        """Filters marked `per_round` (their answer does not depend on the task) at the
        head of the chain are run once for the batch instead of once per task."""
        alive, n, reasons = None, self.n, {}
        k = 0
        probe = TaskRequest(task_id="")
        for f in self.filters:
            if not getattr(f, "per_round", False):
                break
            mask = f.filter(probe, self.state)
            k += 1
            if mask is None:
                continue
            new = mask if alive is None else alive & mask
            left = int(np.count_nonzero(new))
            if left < n:
                _merge(reasons, f.reasons(probe, self.state, alive, n - left))
            alive, n = new, left
        all_pass = np.ones(self.n, bool)
        return (alive if alive is not None else all_pass, n, reasons), self.filters[k:]

    def decide(self, i: int) -> None:
        task = self.tasks[i]
        prev = self._prev
        if prev is not None and _same_needs(task, self.tasks[prev.task]):
            alive, feasible, rejections = self._refilter(task, prev)
        else:
            alive, feasible, rejections = self._filter(task)
        p = Placement(task.task_id, task.attempt, "", [], rejections, "", False, feasible, self.n)
        self.out.append(p)
        self._prev = None
        if task.pinned_worker:
            self._pinned(p, i, task, alive)
        elif feasible == 0:
            self._unplaced.append((len(self.out) - 1, i, None))
            if self._incremental:
                self._prev = _Prev(i, alive, 0, rejections, -1)
        else:
            phi = self._phi_gpu[i] if task.gpu > 0 else self._phi_cpu[i]
            total, rows = self.plan.total(task, phi, alive)
            self._pick(p, i, task, total, alive, rows)

    def _filter(self, task: TaskRequest) -> tuple[np.ndarray, int, dict[str, int]]:
        alive, n, base = self._start
        rejections = dict(base)
        state = self.state
        count_nonzero = np.count_nonzero
        for f in self._per_task:
            mask = f.filter(task, state)
            if mask is None:
                continue
            # Masks are never modified in place, so they may be shared.
            new = alive & mask
            left = count_nonzero(new)
            if left < n:
                for reason, count in f.reasons(task, state, alive, n - left).items():
                    rejections[reason] = rejections.get(reason, 0) + count
            alive, n = new, left
        return alive, n, rejections

    def _refilter(self, task: TaskRequest, prev: _Prev) -> tuple[np.ndarray, int, dict[str, int]]:
        """The filter chain's answer for a task with the same needs as the previous one.
        Since then only the previous winner changed, so only it is judged again: the
        same answer as `_filter`, at a fraction of the cost."""
        alive, n, rejections = prev.alive, prev.feasible, dict(prev.rejections)
        if prev.winner >= 0:
            failed = self._recheck(task, prev.winner)
            if failed is not None:
                alive = alive.copy()  # it may be a filter's shared mask
                alive[prev.winner] = False
                n -= 1
                _merge(rejections, failed)
        return alive, n, rejections

    def _pick(
        self,
        p: Placement,
        i: int,
        task: TaskRequest,
        total: np.ndarray,
        alive: np.ndarray,
        rows: list[np.ndarray],
    ) -> None:
        """Take the best feasible workers of `total`, record, reserve."""
        state = self.state
        k = min(self.top_k, p.feasible)
        cands = _top(total, alive, k, self._totals)
        if not cands:
            self._unplaced.append((len(self.out) - 1, i, None))
            return
        k = len(cands)
        j = cands[0]
        p.worker_id = state.ids[j]
        self._pos.append(len(self.out) - 1)
        self._task.append(i)
        self._k.append(k)
        self._workers.extend(cands)
        self._views.append(state.view.take(cands, axis=0))
        if rows:
            self._other.append([r[cands] for r in rows])
        self.plan.reserved(j, state.reserve(j, task.cpu, task.memory_bytes, task.gpu))
        if self._incremental:
            self._prev = _Prev(i, alive, p.feasible, p.rejections, j)

    def _recheck(self, task: TaskRequest, j: int) -> dict[str, int] | None:
        """None if worker j still passes the filters a reservation can affect, else the
        reason it fails now."""
        for f in self._dynamic:
            if not f.check(task, self.state, j):  # type: ignore[attr-defined]
                one = np.zeros(self.n, bool)
                one[j] = True
                return f.reasons(task, self.state, one, 1)
        return None

    def _pinned(self, p: Placement, i: int, task: TaskRequest, alive: np.ndarray) -> None:
        # A manual pin skips the scorers but not the filters, judged on that worker alone.
        p.pinned = True
        self._prev = None
        j = self.state.index.get(task.pinned_worker)
        if j is None:
            p.rejections = {"unknown worker": 1}
            p.hint = f"worker {task.pinned_worker} is not registered: pin another worker"
            return
        if alive[j]:
            p.worker_id, p.rejections = task.pinned_worker, {}
            p.candidates = [Candidate(task.pinned_worker, 0.0)]
            self.plan.reserved(j, self.state.reserve(j, task.cpu, task.memory_bytes, task.gpu))
            return
        p.rejections = _first_reason(self.filters, task, self.state, j)
        self._unplaced.append((len(self.out) - 1, i, j))

    def finish(self) -> list[Placement]:
        self._explain()
        # Hints describe the state after this batch's reservations: the state the task
        # faces next. Tasks with the same needs get the same hint, computed once.
        hints: dict[tuple, str] = {}
        for pos, i, only in self._unplaced:
            task = self.tasks[i]
            key = (task.demand, tuple(task.selector.items()), task.avoid_workers, only)
            if key not in hints:
                hints[key] = placement_hint(task, self.state, only)
            self.out[pos].hint = hints[key]
        return self.out

    def _explain(self) -> None:
        """Per-plugin scores of every candidate, computed for all decisions at once."""
        if not self._pos:
            return
        plan = self.plan
        pair_task = np.repeat(np.arange(len(self._pos)), self._k)
        workers = np.array(self._workers)
        cols: list[np.ndarray] = []
        if plan.linear:
            phi = self.phi[self._task][pair_task]
            view = np.concatenate(self._views, axis=0)
            cols += plan.linear_scores(phi, view, phi[:, 3] > 0)
        if plan.cached:
            cols += plan.cached_scores([self.tasks[i] for i in self._task], pair_task, workers)
        if plan.other:
            cols += [np.concatenate(x) for x in zip(*self._other, strict=True)]
        scores = np.stack(cols, axis=1) if cols else np.zeros((len(workers), 0))
        table = CandidateTable(self.state.ids, plan.names, self._workers, self._totals, scores)
        start, out = 0, self.out
        for pos, k in zip(self._pos, self._k, strict=True):
            out[pos].candidates = CandidateList(table, start, k)
            start += k


def _top(total: np.ndarray, alive: np.ndarray, k: int, totals: list[float]) -> list[int]:
    """The k best feasible workers, appending their totals to `totals`; ties go to the
    lowest index. Clobbers `total` (with -inf) at every worker it looked at.

    Most top-scored workers are feasible, so checking the few best one by one is
    cheaper than masking every infeasible worker first; after a few misses (say, a
    bin-packing profile that favours full workers) it masks them all at once.
    Repeated argmax also beats argpartition for a small k.
    """
    cands: list[int] = []
    misses = 0
    while len(cands) < k:
        j = int(total.argmax())
        value = float(total[j])
        if value == _NEG:
            break  # only a misbehaving scorer leaves a feasible worker at -inf
        total[j] = _NEG
        if alive[j]:
            cands.append(j)
            totals.append(value)
            continue
        misses += 1
        if misses == _MAX_MISSES:
            np.putmask(total, ~alive, _NEG)
    return cands


def _merge(into: dict[str, int], more: dict[str, int]) -> None:
    for reason, count in more.items():
        into[reason] = into.get(reason, 0) + count


def _first_reason(
    filters: Sequence[Filter], task: TaskRequest, state: ClusterState, j: int
) -> dict[str, int]:
    """Why worker j fails the chain: the first failing filter's reason."""
    one = np.zeros(len(state), bool)
    one[j] = True
    for f in filters:
        mask = f.filter(task, state)
        if mask is not None and not mask[j]:
            return f.reasons(task, state, one, 1)
    return {}
