"""One batch through the pipeline: the per-task loop and the per-batch explanations.

This is the hot path (tens of thousands of decisions a second), so it is written to
make few Python and numpy calls per task:

- Filters that do not depend on the task run once per batch.
- Tasks come in runs: consecutive replicas of one job, with the same needs. The
  filter chain runs for the first task of a run; each next task re-judges only the
  worker the previous one took, the only worker that changed.
- Scoring is one pass over the cluster per run (see plan.py); a shortlist of the best
  workers then serves the run's other tasks, re-ranking just that same worker (see
  shortlist.py). Scorers that are neither linear nor cached (tetris, a learned model)
  are called once per task instead, as they may depend on anything.
- The per-plugin scores of the candidates are computed for the whole batch at once,
  vectorised, from a record of the decisions and reservations (see explain.py).

Every shortcut gives the same decisions, candidates and rejection counts as running
the whole chain for every task; tests check it against a plain reference pipeline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence

import numpy as np

from .explain import DecisionLog
from .filters import Filter
from .hints import placement_hint
from .holds import HELD_REASON, MAX_HOLD_TRIES, needs, waited, worker_to_hold
from .placement import Candidate, CandidateList, Placement
from .plan import ScoringPlan
from .scorers import Scorer, feature_matrix
from .shortlist import Shortlist, top
from .snapshot import ClusterState, TaskRequest, one_worker

# The filter chain's answer for a task: the mask of workers that pass, how many, the
# rejections by reason, and the filters a reservation could change the verdict of.
Filtered = tuple[np.ndarray, int, dict[str, int], list[Filter]]
# A placed task's candidates until `_take` sets them.
_LATER: Sequence[Candidate] = ()
_INF = np.inf
log = logging.getLogger("cloudai.agent.policy")


class Batch:
    def __init__(
        self,
        filters: Sequence[Filter],
        scorers: Sequence[tuple[Scorer, float]],
        state: ClusterState,
        tasks: Sequence[TaskRequest],
        top_k: int,
        hold_after: float | None = None,
        now: float = 0.0,
    ) -> None:
        self.filters, self.state, self.tasks, self.top_k = list(filters), state, tasks, top_k
        # The worker held for a starving task, and that task's output position (holds.py).
        self._hold_after, self._now = hold_after, now
        self.held: tuple[int, int] | None = None
        self._hold_tries, self._nowhere = MAX_HOLD_TRIES, set()
        self.n = len(state)
        self._start, self._per_task = self._leading_round_filters()
        self.plan = ScoringPlan(scorers, state, excluded=~self._start[0])
        self.phi = feature_matrix(tasks)
        scaled = self.phi * self.plan.feature_scale
        # Each task's features as its scoring variant expects them (see ScoringPlan).
        self._phi = (np.ascontiguousarray(scaled[:, list(self.plan.features(False))]), scaled)
        # Runs of tasks with the same needs (replicas of one job) reuse the first task's
        # filter answer when every per-task filter can re-judge one worker.
        self._incremental = all(hasattr(f, "check") for f in self._per_task)
        self._score_key = _score_key(self.plan)
        self.out: list[Placement] = []
        self.log = DecisionLog(self.plan, self.phi)
        self._table = self.log.table()
        # (output position, task index, pinned worker index or None).
        self._unplaced: list[tuple[int, int, int | None]] = []
        # Candidates whose total was NaN or +inf (a misbehaving scorer): never picked.
        self.unscorable = 0

    def _leading_round_filters(self) -> tuple[Filtered, list[Filter]]:
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
                reasons = _merged(reasons, f.reasons(probe, self.state, alive, n - left))
            alive, n = new, left
        all_pass = np.ones(self.n, bool)
        return (alive if alive is not None else all_pass, n, reasons, []), self.filters[k:]

    def run(self, order: Sequence[int]) -> None:
        """Decide the tasks, in `order`, a run of same-needs tasks at a time."""
        pos = 0
        while pos < len(order):
            end = self._run_end(order, pos)
            before = len(self._unplaced)
            self._decide_run(order[pos:end])
            if self._hold_after is not None and self.held is None and self._hold_tries:
                self._hold(self._unplaced[before:])
            pos = end

    def _hold(self, unplaced: Sequence[tuple[int, int, int | None]]) -> None:
        """Hold a worker for the first of `unplaced` that has waited long enough: no
        later task of the batch is placed there (see holds.py)."""
        for k, (pos, i, _) in enumerate(unplaced):
            task = self.tasks[i]
            if waited(task, self._now) < self._hold_after:  # type: ignore[operator]
                continue
            kind = needs(task)
            if kind in self._nowhere:
                continue
            alive, n, reasons, extra = self._start
            self._hold_tries -= 1
            j = worker_to_hold(task, self.state, alive, self.filters)
            if j is None:
                self._nowhere.add(kind)
                return
            if alive[j]:
                alive = alive.copy()
                alive[j] = False
                self._start = (alive, n - 1, _merged(reasons, {HELD_REASON: 1}), extra)
                self._held_in_run(j, unplaced[k + 1 :])
            self.held = (j, pos)
            return

    def _held_in_run(self, j: int, later: Sequence[tuple[int, int, int | None]]) -> None:
        """The tasks of the run after the one held for (same needs, all unplaced) see
        worker j as held, as they would if each were decided alone: j moves from the
        reason it failed for to HELD_REASON."""
        for pos, i, _ in later:
            p = self.out[pos]
            for reason in _first_reason(self._per_task, self.tasks[i], self.state, j):
                left = p.rejections.get(reason, 0) - 1
                if left > 0:
                    p.rejections[reason] = left
                else:
                    p.rejections.pop(reason, None)
            p.rejections[HELD_REASON] = p.rejections.get(HELD_REASON, 0) + 1

    def _run_end(self, order: Sequence[int], pos: int) -> int:
        """Where the run starting at `pos` ends: the tasks after it that ask for the
        same (demand, image, selector, avoided workers, scorer cache keys), unpinned."""
        tasks, end, stop = self.tasks, pos + 1, len(order)
        first = tasks[order[pos]]
        if first.pinned_worker or not self._incremental:
            return end
        key = self._score_key
        first_key, cpu, mem, gpu = key(first), first.cpu, first.memory_bytes, first.gpu
        image, selector, avoid = first.image, first.selector, first.avoid_workers
        while end < stop:
            t = tasks[order[end]]
            if (
                t.cpu != cpu
                or t.memory_bytes != mem
                or t.gpu != gpu
                or t.image != image
                or t.pinned_worker
                or t.selector != selector
                or t.avoid_workers != avoid
                or key(t) != first_key
            ):
                break
            end += 1
        return end

    def _decide_run(self, run: Sequence[int]) -> None:
        task = self.tasks[run[0]]
        chain = self._filter(task)
        if task.pinned_worker:
            self._pinned(self._new(run[0], chain[1], chain[2]), run[0], task, chain[0])
        elif chain[1] == 0:
            for i in run:
                self._new(i, 0, dict(chain[2]))
                self._unplaced.append((len(self.out) - 1, i, None))
        elif self.plan.other:
            self._place_each(run, task, chain)
        else:
            self._place_shortlisted(run, task, chain)

    def _new(self, i: int, feasible: int, rejections: dict[str, int]) -> Placement:
        task = self.tasks[i]
        p = Placement(task.task_id, task.attempt, "", [], rejections, "", False, feasible, self.n)
        self.out.append(p)
        return p

    def _filter(self, task: TaskRequest) -> Filtered:
        alive, n, base, _ = self._start
        rejections = dict(base)
        state = self.state
        count_nonzero = np.count_nonzero
        # None means "nothing to check for this task", so such a filter passes every
        # worker whatever the reservations: only the others need re-judging later.
        checks = []
        for f in self._per_task:
            mask = f.filter(task, state)
            if mask is None:
                continue
            if getattr(f, "dynamic", True):
                checks.append(f)
            # Masks are never modified in place, so they may be shared.
            new = alive & mask
            left = count_nonzero(new)
            if left < n:
                for reason, count in f.reasons(task, state, alive, n - left).items():
                    rejections[reason] = rejections.get(reason, 0) + count
            alive, n = new, left
        return alive, n, rejections, checks

    def _place_shortlisted(self, run: Sequence[int], task: TaskRequest, chain: Filtered) -> None:
        """A run whose totals change only where reservations change workers: one pass
        over the cluster, then a shortlist re-ranked one worker per task."""
        alive, feasible, rejections, checks = chain
        plan, head = self.plan, run[0]
        row, cached = self._phi[task.gpu > 0][head], plan.cached_rows(task)
        self.log.cached_of[head] = cached
        total = self._finite(plan.total(task, row, alive, cached)[0], alive)
        phi, value = row.tolist(), self._value
        short = Shortlist(total, alive, min(self.top_k + len(run) - 1, feasible), feasible)
        tasks, out, k, n = self.tasks, self.out, self.top_k, self.n
        winner = -1
        for i in run:
            if winner >= 0:
                failed = self._recheck(task, winner, checks) if checks else None
                if failed is None:
                    short.rerank_first(value(task, phi, winner, cached))
                else:
                    short.rerank_first(None)
                    feasible, rejections = feasible - 1, _merged(rejections, failed)
            t = tasks[i]
            rej = dict(rejections)
            p = Placement(t.task_id, t.attempt, "", _LATER, rej, "", False, feasible, n)
            out.append(p)
            # With no worker left, the rest of the run finds none either.
            m = min(k, feasible)
            winner = self._take(p, head, task, short.negs[:m], short.workers[:m]) if m else -1
            if winner < 0:
                p.candidates = []
                self._unplaced.append((len(out) - 1, i, None))

    def _place_each(self, run: Sequence[int], task: TaskRequest, chain: Filtered) -> None:
        """A run scored task by task (its scorers may change with every call)."""
        alive, feasible, rejections, checks = chain
        phi, cached = self._phi[task.gpu > 0][run[0]], self.plan.cached_rows(task)
        self.log.cached_of[run[0]] = cached
        winner = -1
        for i in run:
            if winner >= 0:
                failed = self._recheck(task, winner, checks)
                if failed is not None:
                    alive = alive.copy()  # it may be a filter's shared mask
                    alive[winner] = False
                    feasible, rejections = feasible - 1, _merged(rejections, failed)
            p = self._new(i, feasible, dict(rejections))
            winner = -1
            if feasible:
                total, rows = self.plan.total(task, phi, alive, cached)
                total = self._finite(total, alive)
                negs, workers = top(total, alive, min(self.top_k, feasible))
                winner = self._take(p, run[0], task, negs, workers, rows)
            if winner < 0:
                self._unplaced.append((len(self.out) - 1, i, None))

    def _finite(self, total: np.ndarray, alive: np.ndarray) -> np.ndarray:
        """`total` with NaN and +inf made -inf: unscorable, so no pick takes them (one
        max is cheap next to the pass that made `total`; NaN makes it NaN)."""
        if total.size and not total.max() < _INF:
            bad = ~(total < _INF)
            self.unscorable += int(np.count_nonzero(bad & alive))
            total[bad] = -_INF
        return total

    def _value(self, task: TaskRequest, phi: list[float], j: int, cached: list) -> float | None:
        """plan.value, or None (unscorable, as if gone) when it is NaN or +inf."""
        v = self.plan.value(task, phi, j, cached)
        if v < _INF:
            return v
        self.unscorable += 1
        return None

    def _take(
        self,
        p: Placement,
        head: int,
        task: TaskRequest,
        negs: list[float],
        workers: list[int],
        rows: list[np.ndarray] | None = None,
    ) -> int:
        """Record the candidates (best first) and reserve the winner; return it, or -1
        when there is none (only a misbehaving scorer leaves no finite total)."""
        if not workers:
            return -1
        j, log = workers[0], self.log
        p.worker_id = self.state.ids[j]
        p.candidates = CandidateList(self._table, len(log.workers), len(workers))
        log.decisions.extend((head, len(workers), len(log.reserved)))
        log.workers.extend(workers)
        log.neg_totals.extend(negs)
        if rows:
            log.other.append([r[workers] for r in rows])
        self._reserve(j, task)
        return j

    def _reserve(self, j: int, task: TaskRequest) -> None:
        view = self.state.reserve(j, task.cpu, task.memory_bytes, task.gpu)
        self.plan.reserved(j, view)
        self.log.reserved.append(j)
        self.log.views_after.extend(view)

    def _recheck(self, task: TaskRequest, j: int, checks: list[Filter]) -> dict[str, int] | None:
        """None if worker j still passes `checks`, the filters a reservation can
        affect, else the reason it fails now."""
        state = self.state
        for f in checks:
            if not f.check(task, state, j):  # type: ignore[attr-defined]
                return f.reasons(task, state, one_worker(self.n, j), 1)
        return None

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
            self._reserve(j, task)
            return
        held = self.held is not None and self.held[0] == j
        p.rejections = (
            {HELD_REASON: 1} if held else _first_reason(self.filters, task, self.state, j)
        )
        self._unplaced.append((len(self.out) - 1, i, j))

    def finish(self) -> list[Placement]:
        if self.unscorable:
            log.warning(
                "%d candidate total(s) were NaN or infinite: treated as unscorable "
                "(a scorer misbehaves, or a profile weight is out of range)",
                self.unscorable,
            )
        # Hints describe the state after this batch's reservations: the state the task
        # faces next. Tasks with the same needs get the same hint, computed once.
        hints: dict[tuple, str] = {}
        for pos, i, only in self._unplaced:
            task = self.tasks[i]
            key = (task.demand, tuple(task.selector.items()), task.avoid_workers, only)
            if key not in hints:
                hints[key] = placement_hint(task, self.state, only)
            self.out[pos].hint = hints[key]
        if self.held is not None:
            j, pos = self.held
            p = self.out[pos]
            held = f"worker {self.state.ids[j]} is held for it (no newer task goes there)"
            p.hint = f"{p.hint}; {held}" if p.hint else held
        return self.out


def _score_key(plan: ScoringPlan) -> Callable[[TaskRequest], Hashable]:
    """What, besides the demand, the plan's rows for a task depend on."""
    keys = [s.cache_key for s, _ in plan.cached]
    if len(keys) == 1:
        return keys[0]
    return lambda task: tuple(key(task) for key in keys)


def _merged(into: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    """A new dict: `into` plus `more`, counts added."""
    out = dict(into)
    for reason, count in more.items():
        out[reason] = out.get(reason, 0) + count
    return out


def _first_reason(
    filters: Sequence[Filter], task: TaskRequest, state: ClusterState, j: int
) -> dict[str, int]:
    """Why worker j fails the chain: the first failing filter's reason."""
    one = one_worker(len(state), j)
    for f in filters:
        mask = f.filter(task, state)
        if mask is not None and not mask[j]:
            return f.reasons(task, state, one, 1)
    return {}
