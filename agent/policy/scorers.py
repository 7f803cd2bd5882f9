"""Scorers: how good each feasible worker is for one task, normalised to 0..100.

A scorer returns a raw score per worker; `normalise` maps it to 0..100 using the
scorer's declared `bounds` (or min-max over the feasible workers when a scorer, e.g. a
learned model, has no natural range). Fixed bounds keep scores comparable across
decisions, which matters because decisions are also training data.

Allocation scorers look at the resources the task asks for: cpu and memory always,
GPU only for GPU tasks, so a CPU task's score is not changed by a worker's idle GPUs.

Two optional capabilities let the pipeline go fast without a second implementation:

- `LinearScorer`: the raw score is `features(task) . terms(worker)`, a quadratic form
  of the task's demand (see FEATURES) with per-worker coefficients. The pipeline folds
  every linear scorer of a profile into one matrix, so the weighted sum costs one
  matrix-vector product per task; a reservation refreshes one column. `score` is
  computed from the same `terms`, so there is one formula per scorer.
- `CachedScorer`: the score depends only on `cache_key(task)` and on worker fields that
  a round never changes (e.g. cached images), so it is computed once per key per round.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .snapshot import GIB, ClusterState, TaskRequest, WorkerView

# Monomials of the demand (cpu, memory in GiB, gpu) that linear scorers may weigh.
FEATURES = ("one", "cpu", "mem", "gpu", "cpu2", "mem2", "gpu2", "cpu_mem", "cpu_gpu", "mem_gpu")
Terms = tuple[Any, ...]
_ZERO7, _ZERO9 = (0.0,) * 7, (0.0,) * 9


@runtime_checkable
class Scorer(Protocol):
    name: str
    bounds: tuple[float, float] | None

    def score(self, task: TaskRequest, state: ClusterState, mask: np.ndarray) -> np.ndarray:
        """Raw score of placing `task` on each worker; only `mask` workers matter."""
        ...


@runtime_checkable
class LinearScorer(Scorer, Protocol):
    """The raw score is `features(task) . terms(worker)`. It must lie within `bounds`
    for every worker that can take the task: the fast path folds the normalisation
    into the matrix and so cannot clip."""

    def terms(self, view: WorkerView, gpu: bool) -> Terms:
        """Coefficients of FEATURES, as arrays (all workers) or floats (one worker)."""
        ...


@runtime_checkable
class CachedScorer(Scorer, Protocol):
    def cache_key(self, task: TaskRequest) -> Hashable: ...


def terms(
    one: Any = 0.0,
    cpu: Any = 0.0,
    mem: Any = 0.0,
    gpu: Any = 0.0,
    cpu2: Any = 0.0,
    mem2: Any = 0.0,
    gpu2: Any = 0.0,
    cpu_mem: Any = 0.0,
    cpu_gpu: Any = 0.0,
    mem_gpu: Any = 0.0,
) -> Terms:
    """Build a Terms tuple by feature name (in FEATURES order); unnamed features are 0."""
    return (one, cpu, mem, gpu, cpu2, mem2, gpu2, cpu_mem, cpu_gpu, mem_gpu)


def feature_matrix(tasks: Sequence[TaskRequest]) -> np.ndarray:
    """(T, len(FEATURES)) demand monomials, memory in GiB."""
    n = len(tasks)
    c = np.fromiter((t.cpu for t in tasks), np.float64, n)
    m = np.fromiter((t.memory_bytes for t in tasks), np.float64, n) / GIB
    g = np.fromiter((t.gpu for t in tasks), np.float64, n)
    one = np.ones(n)
    return np.stack([one, c, m, g, c * c, m * m, g * g, c * m, c * g, m * g], axis=1)


def evaluate(phi: np.ndarray, t: Terms, n: int) -> np.ndarray:
    """features . terms for every worker (the reference path, not the hot one)."""
    raw = np.zeros(n)
    for f, coef in zip(phi.tolist(), t, strict=True):
        if f and not (isinstance(coef, float) and coef == 0.0):
            raw += f * np.asarray(coef)
    return raw


def normalise(
    raw: np.ndarray, bounds: tuple[float, float] | None, mask: np.ndarray | None = None
) -> np.ndarray:
    """Map raw scores to 0..100: linearly from `bounds`, else min-max over `mask`."""
    if bounds is not None:
        lo, hi = bounds
        return np.clip((raw - lo) * (100.0 / (hi - lo)), 0.0, 100.0)
    sel = raw if mask is None else raw[mask]
    if sel.size == 0:
        return np.zeros_like(raw)
    lo, hi = float(sel.min()), float(sel.max())
    if hi - lo <= 1e-12:
        # No scorer signal among the candidates: each is as good as the best.
        return np.full_like(raw, 100.0)
    return np.clip((raw - lo) * (100.0 / (hi - lo)), 0.0, 100.0)


class _Linear:
    name = ""
    bounds: tuple[float, float] | None = (0.0, 1.0)

    def terms(self, view: WorkerView, gpu: bool) -> Terms:
        raise NotImplementedError

    def score(self, task: TaskRequest, state: ClusterState, mask: np.ndarray) -> np.ndarray:
        phi = feature_matrix([task])[0]
        return evaluate(phi, self.terms(state.workers_view(), task.gpu > 0), len(state))


class LeastAllocated(_Linear):
    """Spread: mean free fraction of the requested resources after placement."""

    name = "least_allocated"

    def terms(self, v: WorkerView, gpu: bool) -> Terms:
        if gpu:
            return terms(
                1 - (v.a_cpu + v.a_mem + v.a_gpu) / 3, -v.b_cpu / 3, -v.b_mem / 3, -v.b_gpu / 3
            )
        return (1 - (v.a_cpu + v.a_mem) / 2, -v.b_cpu / 2, -v.b_mem / 2, *_ZERO7)


class MostAllocated(_Linear):
    """Bin-pack: mean used fraction of the requested resources after placement."""

    name = "most_allocated"

    def terms(self, v: WorkerView, gpu: bool) -> Terms:
        if gpu:
            return terms((v.a_cpu + v.a_mem + v.a_gpu) / 3, v.b_cpu / 3, v.b_mem / 3, v.b_gpu / 3)
        return ((v.a_cpu + v.a_mem) / 2, v.b_cpu / 2, v.b_mem / 2, *_ZERO7)


class BalancedAllocation(_Linear):
    """1 - 4 * variance of the used fractions u = a + b*d after placement.

    Low variance means the worker's resources run out together, so none is stranded.
    Variance (not the standard deviation) keeps the score a quadratic form of the
    demand; 4 * variance of values in [0, 1] is at most 1, so the raw is in [0, 1].
    """

    name = "balanced_allocation"

    def terms(self, v: WorkerView, gpu: bool) -> Terms:
        if gpu:
            return _balanced3(v)
        # With two resources, 4 * variance is the squared difference (u_cpu - u_mem)^2.
        # A plain tuple (one, cpu, mem, gpu, cpu2, mem2, gpu2, cpu_mem, ...): this runs
        # once per placement.
        dif, bc, bm = v.a_cpu - v.a_mem, v.b_cpu, v.b_mem
        return (
            1 - dif * dif,
            -2 * dif * bc,
            2 * dif * bm,
            0.0,
            -bc * bc,
            -bm * bm,
            0.0,
            2 * bc * bm,
            0.0,
            0.0,
        )


def _balanced3(v: WorkerView) -> Terms:
    """1 - 4 var(u) for u = a + b*d over three resources, expanded in d."""
    a, b = (v.a_cpu, v.a_mem, v.a_gpu), (v.b_cpu, v.b_mem, v.b_gpu)
    mean_a = (a[0] + a[1] + a[2]) / 3
    var_const = (a[0] * a[0] + a[1] * a[1] + a[2] * a[2]) / 3 - mean_a * mean_a
    lin = [2 * b[r] * (a[r] - mean_a) / 3 for r in range(3)]
    sq = [b[r] * b[r] * (2 / 9) for r in range(3)]
    cross = {
        k: -2 * b[r] * b[s] / 9
        for k, r, s in (("cpu_mem", 0, 1), ("cpu_gpu", 0, 2), ("mem_gpu", 1, 2))
    }
    return terms(
        1 - 4 * var_const,
        -4 * lin[0],
        -4 * lin[1],
        -4 * lin[2],
        cpu2=-4 * sq[0],
        mem2=-4 * sq[1],
        gpu2=-4 * sq[2],
        **{k: -4 * c for k, c in cross.items()},
    )


class LiveLoad(_Linear):
    """Prefer workers that are idle now: telemetry cpu% and memory%, not reservations.

    The round adds each placed task's share (see ClusterState.reserve), so a batch does
    not pile onto the one idle worker before its telemetry can show the new load."""

    name = "live_load"

    def terms(self, v: WorkerView, gpu: bool) -> Terms:
        return (1 - v.load, *_ZERO9)


class ImageLocality:
    """100 when the task's image is already on the worker: no pull, faster start."""

    name = "image_locality"
    bounds: tuple[float, float] | None = (0.0, 1.0)

    def cache_key(self, task: TaskRequest) -> Hashable:
        return task.image

    def score(self, task: TaskRequest, state: ClusterState, mask: np.ndarray) -> np.ndarray:
        if not task.image:
            return np.zeros(len(state))
        return state.image_mask(task.image).astype(np.float64)


class Tetris:
    """Alignment: cosine of the demand and the worker's free vector.

    Both are taken as fractions of the worker's capacity (Grandl et al., "Multi-resource
    packing", SIGCOMM 2014), then unit-normalised, so a CPU-heavy task prefers a worker
    with mostly CPU left, leaving memory-rich workers to memory-heavy tasks."""

    name = "tetris"
    bounds: tuple[float, float] | None = (0.0, 1.0)

    def score(self, task: TaskRequest, state: ClusterState, mask: np.ndarray) -> np.ndarray:
        v = state.workers_view()
        d = [(task.cpu, v.b_cpu, v.a_cpu), (task.memory_bytes / GIB, v.b_mem, v.a_mem)]
        if task.gpu > 0:
            d.append((task.gpu, v.b_gpu, v.a_gpu))
        dot = np.zeros(len(state))
        dn2 = np.zeros(len(state))
        fn2 = np.zeros(len(state))
        for dem, b, a in d:
            dn = dem * b
            fn = 1.0 - a
            dot += dn * fn
            dn2 += dn * dn
            fn2 += fn * fn
        den = np.sqrt(dn2 * fn2)
        return np.divide(dot, den, out=np.zeros_like(dot), where=den > 0)


BUILTIN_SCORERS: tuple[type, ...] = (
    LeastAllocated,
    MostAllocated,
    BalancedAllocation,
    LiveLoad,
    ImageLocality,
    Tetris,
)
