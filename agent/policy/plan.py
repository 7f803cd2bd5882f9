"""The weighted, normalised sum of a profile's scorers for one round, computed fast.

Per task the naive way calls every scorer over every worker: tens of numpy calls per
decision, each a microsecond or more. Instead:

- Linear scorers (see scorers.LinearScorer) are folded, weights and normalisation
  included, into one (features x workers) matrix per "variant" (CPU task or GPU task,
  as the allocation scorers weigh GPUs only for GPU tasks). A task's linear total is
  then its features weighed against those rows.
- A reservation changes one worker, so it changes one column: the CPU variant's column
  is recomputed at once from the same `terms`, with Python floats (the scorers' terms
  compiled into one function, see fused.py); the GPU variant's columns are marked
  stale and refreshed when the next GPU task comes.
- Cached scorers are computed once per cache key (e.g. per image) per round.
- Any other scorer (tetris, a learned model) is called per task, as written.

One worker's total can also be computed alone (`value`), with Python floats, for the
worker a reservation just changed. It is exactly the number the whole-cluster `total`
gives: both add the same products in the same order (see `weigh`), and numpy's
elementwise float64 arithmetic rounds exactly as Python's does. (A BLAS matrix-vector
product would be faster but sums in a block- and position-dependent order, with fused
multiply-adds, so equal workers could get totals an ulp apart and a tie could go to
the wrong one.) For the same reason a linear scorer's `terms` must be elementwise
arithmetic (+ - * /), so that arrays and floats give the same coefficients.

For every worker that passes the filters the result is the weighted sum of
`normalise(scorer.score(...))`, which the tests check against the scorers' own `score`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from functools import cache
from itertools import repeat
from operator import add, itemgetter, mul

import numpy as np

from .fused import Column, fuse
from .scorers import FEATURES, CachedScorer, LinearScorer, Scorer, normalise
from .snapshot import GPU, ClusterState, TaskRequest, WorkerView

_K = len(FEATURES)
# A CPU task's GPU monomials are zero, so the CPU variant keeps only these rows.
CPU_FEATURES = tuple(f for f, name in enumerate(FEATURES) if "gpu" not in name)
_ALL_FEATURES = tuple(range(_K))
# Above this many stale columns one vectorised refresh (about a hundred numpy calls for
# the built-in scorers) beats per-column Python floats (a few microseconds each).
_VECTOR_REFRESH = 32
# Pairs per slice when explaining a batch's candidates (see linear_scores).
_SLICE = 8192
_PICK = {False: itemgetter(*CPU_FEATURES), True: itemgetter(*_ALL_FEATURES)}


class ScoringPlan:
    def __init__(
        self,
        scorers: Sequence[tuple[Scorer, float]],
        state: ClusterState,
        excluded: np.ndarray | None = None,
    ) -> None:
        """`excluded`: workers no task can use this round (e.g. dead ones). Their total
        is -inf, so the pick never has to look at them."""
        self.state = state
        self._excluded = excluded if excluded is not None and excluded.any() else None
        self.linear: list[tuple[LinearScorer, float, float]] = []
        self.cached: list[tuple[CachedScorer, float]] = []
        self.other: list[tuple[Scorer, float]] = []
        for s, w in scorers:
            if isinstance(s, LinearScorer) and s.bounds is not None:
                lo, hi = s.bounds
                self.linear.append((s, w * 100.0 / (hi - lo), lo))
            elif isinstance(s, CachedScorer) and s.bounds is not None:
                self.cached.append((s, w))
            else:
                self.other.append((s, w))
        scales = [sc for _, sc, _ in self.linear]
        uniform = len(set(scales)) <= 1
        # When every linear scorer has the same scale (same weight and range, the usual
        # case), the scale goes into the task's features instead of into every column,
        # and a column refresh is a plain sum of the scorers' terms.
        self.feature_scale = scales[0] if scales and uniform else 1.0
        self._col_scales = None if uniform else scales
        self._offset = -sum(sc * lo for _, sc, lo in self.linear) / self.feature_scale
        self._lin = [s for s, _, _ in self.linear]
        self._psi: dict[bool, np.ndarray] = {}
        self._stale_gpu: set[int] = set()
        self._rows: list[dict[Hashable, np.ndarray]] = [{} for _ in self.cached]
        # The CPU column `reserved` computed last, as floats: `value` needs it next.
        self._fresh: tuple[int, Sequence[float]] = (-1, ())
        # Per variant, the scorers' terms compiled into one function (None: not traceable).
        self._fused: dict[bool, Column | None] = {}
        # GPU tasks can only land on GPU workers, so only their columns need refreshing.
        self._has_gpu = (state.cap[GPU] > 0).tolist()

    @property
    def names(self) -> list[str]:
        """Scorer names in the order of `explain`'s columns."""
        groups: list[Sequence[tuple]] = [self.linear, self.cached, self.other]
        return [entry[0].name for group in groups for entry in group]

    def total(
        self,
        task: TaskRequest,
        phi: Sequence[float] | np.ndarray,
        mask: np.ndarray,
        cached: list[tuple[np.ndarray, float]] | None = None,
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Weighted total per worker (a fresh array) and the normalised rows of the
        `other` scorers, for explanations. `phi` is the task's features times
        `feature_scale`, restricted to `features(task.gpu > 0)`; `cached` is
        `cached_rows(task)` if the caller has it."""
        if self.linear:
            total = weigh(self._matrix(task.gpu > 0), np.asarray(phi, np.float64))
        else:
            total = np.zeros(len(self.state))
        for row, w in self.cached_rows(task) if cached is None else cached:
            total += row if w == 1.0 else w * row
        rows = []
        for s, w in self.other:
            row = normalise(s.score(task, self.state, mask), s.bounds, mask)
            total += w * row
            rows.append(row)
        return total, rows

    def cached_rows(self, task: TaskRequest) -> list[tuple[np.ndarray, float]]:
        """The task's normalised row and weight for each cached scorer."""
        return [(self._cached_row(n, s, task), w) for n, (s, w) in enumerate(self.cached)]

    def value(
        self,
        task: TaskRequest,
        phi: Sequence[float],
        j: int,
        cached: list[tuple[np.ndarray, float]] | None = None,
    ) -> float:
        """`total(task, ...)[j]`, the same number, for worker j alone; `cached` is
        `cached_rows(task)` if the caller has it. Only for plans without `other`
        scorers (which score the whole cluster at once)."""
        gpu = task.gpu > 0
        fresh_j, col = self._fresh
        if gpu or fresh_j != j:
            col = self._matrix(gpu)[:, j].tolist()
        # sum() starts from 0, and 0 + x == x: the same additions as `weigh`.
        value = sum(map(mul, col, phi))
        for row, w in self.cached_rows(task) if cached is None else cached:
            x = row.item(j)
            value += x if w == 1.0 else w * x
        return value

    @staticmethod
    def features(gpu: bool) -> tuple[int, ...]:
        """Which FEATURES the variant's matrix has, i.e. which `total` expects in `phi`."""
        return _ALL_FEATURES if gpu else CPU_FEATURES

    def reserved(self, j: int, view: WorkerView) -> None:
        """Worker j's allocation changed and `view` is its new view."""
        psi = self._psi.get(False)
        if psi is not None:
            col = self._column(view, False)
            psi[:, j] = col
            self._fresh = (j, col)
        if self._has_gpu[j] and True in self._psi:
            self._stale_gpu.add(j)

    def cached_scores(
        self,
        cached: Sequence[list[tuple[np.ndarray, float]]],
        pair_task: np.ndarray,
        pair_worker: np.ndarray,
    ) -> list[np.ndarray]:
        """Normalised cached-scorer values for M pairs (task, worker): `cached[t]` is
        task t's `cached_rows`, pair m is (pair_task[m], pair_worker[m])."""
        out = []
        for n in range(len(self.cached)):
            slot: dict[int, int] = {}  # rows are shared between tasks with one key
            rows: list[np.ndarray] = []
            of_task = []
            for task_rows in cached:
                row = task_rows[n][0]
                r = slot.get(id(row))
                if r is None:
                    r = slot[id(row)] = len(rows)
                    rows.append(row)
                of_task.append(r)
            of = np.fromiter(of_task, np.intp, len(of_task))
            out.append(np.stack(rows)[of[pair_task], pair_worker])
        return out

    def linear_scores(self, phi: np.ndarray, view: np.ndarray, gpu: np.ndarray) -> list[np.ndarray]:
        """Normalised score per linear scorer for M (task, worker) pairs: `phi` (M, K)
        unscaled features, `view` (M, 7) worker views at decision time, `gpu` (M,)."""
        # In slices: temporaries of a few thousand floats stay in cache and reuse
        # numpy's small buffers, which is several times faster than whole-batch arrays.
        parts = [
            self._linear_scores(phi[a : a + _SLICE], view[a : a + _SLICE], gpu[a : a + _SLICE])
            for a in range(0, len(gpu), _SLICE)
        ]
        if not parts:
            return [np.zeros(0) for _ in self.linear]
        return [np.concatenate(col) for col in zip(*parts, strict=True)]

    def _linear_scores(self, phi: np.ndarray, view: np.ndarray, gpu: np.ndarray) -> list:
        out = [np.zeros(len(gpu)) for _ in self.linear]
        for variant in (False, True):
            sel = np.flatnonzero(gpu == variant)
            if sel.size == 0:
                continue
            v = WorkerView(*np.ascontiguousarray(view[sel].T))
            features = np.ascontiguousarray(phi[sel].T)
            for n, (s, _, lo) in enumerate(self.linear):
                raw = np.zeros(sel.size)
                for f, coef in enumerate(s.terms(v, variant)):
                    if not (isinstance(coef, float | int) and coef == 0):
                        raw += features[f] * coef
                hi = s.bounds[1] if s.bounds else lo + 1.0
                out[n][sel] = np.clip((raw - lo) * (100.0 / (hi - lo)), 0.0, 100.0)
        return out

    # -- internals ---------------------------------------------------------------------
    def _matrix(self, gpu: bool) -> np.ndarray:
        """The variant's (features, workers) matrix, brought up to date."""
        psi = self._psi.get(gpu)
        if psi is None:
            psi = self._psi[gpu] = self._fold(self.state.workers_view(), gpu, len(self.state))
            return psi
        if gpu and self._stale_gpu:
            stale = self._stale_gpu
            if len(stale) > _VECTOR_REFRESH:
                idx = np.fromiter(stale, np.intp, len(stale))
                psi[:, idx] = self._fold(WorkerView(*self.state.view[idx].T), True, len(idx))
            else:
                for j in stale:
                    psi[:, j] = self._column(self.state.workers_view(j), True)
            stale.clear()
        return psi

    def _fold(self, view: WorkerView, gpu: bool, n: int) -> np.ndarray:
        """(features, n), feature-major, so that a task's total runs over whole rows.
        The same additions, in the same order, as `_column`."""
        psi = np.zeros((_K, n))
        scales = self._col_scales
        for m, s in enumerate(self._lin):
            for f, coef in enumerate(s.terms(view, gpu)):
                term = coef if scales is None else scales[m] * np.asarray(coef)
                if m:
                    psi[f] += term
                else:
                    psi[f] = term
        psi[0] += self._offset
        if self._excluded is not None and n == len(self.state):
            # -inf times the "one" feature (always 1): these workers never win, so the
            # pick never looks at them.
            psi[0, self._excluded] = -np.inf
        return np.ascontiguousarray(psi[list(self.features(gpu))])

    def _column(self, view: WorkerView, gpu: bool) -> list[float]:
        """One worker's column, with Python floats: the numbers `_fold` gives."""
        if gpu not in self._fused:
            terms = [s.terms for s in self._lin]
            self._fused[gpu] = fuse(terms, gpu, self.features(gpu), self._col_scales, self._offset)
        fused = self._fused[gpu]
        if fused is not None:
            return fused(*view)
        scales, pick = self._col_scales, _PICK[gpu]
        col: Iterable[float] = ()
        for m, s in enumerate(self._lin):
            t: Iterable[float] = pick(s.terms(view, gpu))
            if scales is not None:
                t = map(mul, repeat(scales[m]), t)
            col = map(add, col, t) if m else t
        out = list(col)
        out[0] += self._offset
        return out

    def _cached_row(self, n: int, s: CachedScorer, task: TaskRequest) -> np.ndarray:
        key = s.cache_key(task)
        row = self._rows[n].get(key)
        if row is None:
            mask = np.ones(len(self.state), bool)
            row = self._rows[n][key] = normalise(s.score(task, self.state, mask), s.bounds, mask)
        return row


def weigh(psi: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """sum_f phi[f] * psi[f] for every worker (column), adding the products in the
    order f = 0, 1, ...: bit for bit what `sum(map(mul, column, phi))` gives."""
    if _einsum_is_sequential():
        return np.einsum("f,fw->w", phi, psi)
    # Each row times its feature, then the rows added one after another (a reduction
    # over the outer axis adds whole rows in order): slower, but the order is certain.
    return np.add.reduce(psi * phi[:, None], axis=0)


@cache
def _einsum_is_sequential() -> bool:
    """Whether this numpy's einsum adds the products in order with separate multiplies
    and adds (no fused multiply-add), like Python floats do. Checked once, on data
    shaped like ours."""
    rng = np.random.default_rng(7)
    for k in (len(CPU_FEATURES), _K):
        psi = rng.normal(size=(k, 67)) * rng.choice([1e-3, 1.0, 1e3], size=(k, 67))
        phi = rng.normal(size=k) * 50
        want = [sum(map(mul, col, phi.tolist())) for col in psi.T.tolist()]
        if np.einsum("f,fw->w", phi, psi).tolist() != want:
            return False
    return True
