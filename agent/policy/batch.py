"""One batch through the pipeline: the per-task loop and the per-batch explanations.

This is the hot path (tens of thousands of decisions a second), so it is written to
make few Python and numpy calls per task: filters that do not depend on the task run
once per batch, scoring is one matrix-vector product plus cached rows (see plan.py),
and the per-plugin scores of the candidates are computed for the whole batch at the
end, vectorised, from the worker views recorded at decision time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .filters import Filter
from .hints import placement_hint
from .placement import Candidate, CandidateList, Placement, _Table
from .plan import ScoringPlan
from .scorers import Scorer, feature_matrix
from .snapshot import ClusterState, TaskRequest

_NEG = -np.inf


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
        self.plan = ScoringPlan(scorers, state)
        self.phi = feature_matrix(tasks)
        self.phi_scaled = self.phi * self.plan.feature_scale
        self._start, self._per_task = self._leading_round_filters()
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
        alive, feasible, rejections = self._filter(task)
        p = Placement(task.task_id, task.attempt, "", [], rejections, "", False, feasible, self.n)
        self.out.append(p)
        if task.pinned_worker:
            self._pinned(p, i, task, alive)
        elif feasible == 0:
            self._unplaced.append((len(self.out) - 1, i, None))
        else:
            self._score(p, i, task, alive, feasible)

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

    def _score(self, p: Placement, i: int, task: TaskRequest, alive: np.ndarray, n: int) -> None:
        state = self.state
        total, rows = self.plan.total(task, self.phi_scaled[i], alive)
        if n < self.n:
            np.putmask(total, ~alive, _NEG)
        # Repeated argmax beats argpartition for a small k; ties go to the lowest index.
        k = min(self.top_k, n)
        cands = []
        totals = self._totals
        for _ in range(k):
            j = int(total.argmax())
            cands.append(j)
            totals.append(float(total[j]))
            total[j] = _NEG
        j = cands[0]
        p.worker_id = state.ids[j]
        self._pos.append(len(self.out) - 1)
        self._task.append(i)
        self._k.append(k)
        self._workers.extend(cands)
        self._views.append(state.view.take(cands, axis=1))
        if rows:
            self._other.append([r[cands] for r in rows])
        self.plan.reserved(j, state.reserve(j, task.cpu, task.memory_bytes, task.gpu))

    def _pinned(self, p: Placement, i: int, task: TaskRequest, alive: np.ndarray) -> None:
        # A manual pin skips the scorers but not the filters, judged on that worker alone.
        p.pinned = True
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
            view = np.concatenate(self._views, axis=1)
            cols += plan.linear_scores(phi, view, phi[:, 3] > 0)
        if plan.cached:
            cols += plan.cached_scores([self.tasks[i] for i in self._task], pair_task, workers)
        if plan.other:
            cols += [np.concatenate(x) for x in zip(*self._other, strict=True)]
        scores = np.stack(cols, axis=1) if cols else np.zeros((len(workers), 0))
        table = _Table(self.state.ids, plan.names, self._workers, self._totals, scores)
        start, out = 0, self.out
        for pos, k in zip(self._pos, self._k, strict=True):
            out[pos].candidates = CandidateList(table, start, k)
            start += k


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
