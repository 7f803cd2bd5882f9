"""The record of a batch's decisions, and the per-plugin scores computed from it.

Every decision's candidates carry their per-plugin scores (what `cloudai explain`
shows). Computing them decision by decision would cost more than deciding, so the
batch records, as it goes, what they depend on: the candidates of each decision, the
first task of its run (which has the same features and cached rows), and how many
reservations came before it; and a log of the reservations, with each reserved
worker's new view. The scores of all candidates are computed at once, vectorised,
when the first candidate of the batch is read (see placement.CandidateTable).

The record keeps its own copies of everything it needs, so the state may change
meanwhile (a simulator goes on placing on it), and it holds no placement, so no
reference cycle keeps a batch alive.
"""

from __future__ import annotations

from array import array

import numpy as np

from .placement import CandidateTable
from .plan import ScoringPlan

CachedRows = list[tuple[np.ndarray, float]]


class DecisionLog:
    def __init__(self, plan: ScoringPlan, phi: np.ndarray) -> None:
        """`phi`: (tasks, features) unscaled features of the batch's tasks."""
        state = plan.state
        self.plan, self.phi, self.n = plan, phi, len(state)
        # Typed arrays, not lists: appending costs the same, and numpy reads them
        # without a copy.
        # Per decision, flat: first task of its run, candidate count, reservations so far.
        self.decisions = array("q")
        self.cached_of: dict[int, CachedRows] = {}  # by first task of a run
        # Per candidate, decisions one after another (shared with the table).
        self.workers = array("q")
        self.neg_totals = array("d")
        # Per decision, the rows of the scorers that are neither linear nor cached.
        self.other: list[list[np.ndarray]] = []
        # The reservations: which worker, and its view after it (flat).
        self.reserved = array("q")
        self.views_after = array("d")
        self.views_before = state.view.copy()

    def table(self) -> CandidateTable:
        """The batch's candidate table, computing its scores from this record. (The
        record keeps no reference to it: that would be a cycle.)"""
        ids = self.plan.state.ids
        return CandidateTable(ids, self.plan.names, self.workers, self.neg_totals, self.scores)

    def scores(self) -> np.ndarray:
        """(candidates, plugins) normalised scores, in `plan.names` order."""
        plan = self.plan
        heads, counts, before = np.frombuffer(self.decisions, np.int64).reshape(-1, 3).T
        pair_task = np.repeat(np.arange(len(heads)), counts)
        workers = np.frombuffer(self.workers, np.int64)
        cols: list[np.ndarray] = []
        if plan.linear:
            phi = self.phi[heads[pair_task]]
            view = self.views(workers, before[pair_task])
            cols += plan.linear_scores(phi, view, phi[:, 3] > 0)
        if plan.cached:
            # One entry per run: replicas share their first task's cached rows.
            first, run_of = np.unique(heads, return_inverse=True)
            cached = [self.cached_of[i] for i in first.tolist()]
            cols += plan.cached_scores(cached, run_of[pair_task], workers)
        if plan.other:
            cols += [np.concatenate(x) for x in zip(*self.other, strict=True)]
        return np.stack(cols, axis=1) if cols else np.zeros((len(workers), 0))

    def views(self, workers: np.ndarray, before: np.ndarray) -> np.ndarray:
        """The view of each `workers[m]` after the first `before[m]` reservations of
        the batch: the latest of its own among them, else its view at the start."""
        start, r = self.views_before, len(self.reserved)
        if not r:
            return start[workers]
        # Reservations sorted by (worker, order), each coded as one integer.
        res = np.frombuffer(self.reserved, np.int64)
        code = np.sort(res * (r + 1) + np.arange(r))
        at = np.searchsorted(code, workers * (r + 1) + before) - 1
        last = code[np.maximum(at, 0)]
        mine = (at >= 0) & (last // (r + 1) == workers)
        version = np.where(mine, self.n + last % (r + 1), workers)
        after = np.frombuffer(self.views_after, np.float64).reshape(-1, start.shape[1])
        return np.concatenate([start, after])[version]
