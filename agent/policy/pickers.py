"""Classic placement baselines as scorers: first-fit, best-fit, random, round-robin.

Each is a plain scorer, so a profile of one of them with weight 1 makes the pipeline
pick exactly what the textbook rule picks (the argmax of the normalised score), and
the decision is recorded and explained like any other. Ties go to the lowest worker
index, as everywhere in the pipeline.
"""

from __future__ import annotations

import numpy as np

from .scorers import Terms, evaluate, feature_matrix, terms
from .snapshot import ClusterState, TaskRequest, WorkerView


class FirstFit:
    """The first feasible worker in snapshot order: score falls with the index."""

    name = "firstfit"
    bounds: tuple[float, float] | None = (0.0, 1.0)

    # Deliberately not a CachedScorer: a profile of cached scorers alone takes a path
    # of the pipeline (ScoringPlan.value) that expects at least one linear scorer.
    def score(self, task: TaskRequest, state: ClusterState, mask: np.ndarray) -> np.ndarray:
        n = len(state)
        return 1.0 - np.arange(n, dtype=np.float64) / max(n, 1)


class BestFit:
    """The worker left with the least free capacity after placement.

    Unlike `most_allocated` it counts a GPU worker's idle GPUs even for a CPU task,
    so CPU work does not strand GPUs ("least remaining resources, summed over all
    dimensions", the best-fit baseline of Weng et al., ATC'23). The raw score is the
    mean used fraction after placement over the resources the worker has.
    """

    name = "bestfit"
    bounds: tuple[float, float] | None = (0.0, 1.0)

    def terms(self, v: WorkerView, gpu: bool) -> Terms:
        # 2 or 3 resources per worker: a GPU-less worker has no GPU left to count.
        k = 2.0 + (np.asarray(v.b_gpu) > 0)
        return terms((v.a_cpu + v.a_mem + v.a_gpu) / k, v.b_cpu / k, v.b_mem / k, v.b_gpu / k)

    def score(self, task: TaskRequest, state: ClusterState, mask: np.ndarray) -> np.ndarray:
        phi = feature_matrix([task])[0]
        return evaluate(phi, self.terms(state.workers_view(), task.gpu > 0), len(state))


class RandomPick:
    """A uniformly random feasible worker. `seed` (or a shared `rng`, which the
    simulator passes so that successive batches continue one random stream) makes
    it reproducible."""

    name = "random"
    bounds: tuple[float, float] | None = (0.0, 1.0)

    def __init__(self, seed: int | None = None, rng: np.random.Generator | None = None) -> None:
        self.rng = rng if rng is not None else np.random.default_rng(seed)

    def score(self, task: TaskRequest, state: ClusterState, mask: np.ndarray) -> np.ndarray:
        return self.rng.random(len(state))


class Cursor:
    """Where round-robin starts next; shared across batches by whoever keeps it."""

    def __init__(self, position: int = 0) -> None:
        self.position = position


class RoundRobin:
    """Each decision starts its search one worker further than the last: the first
    feasible worker at or after the cursor wins. Without a shared `cursor` the
    rotation restarts with every batch."""

    name = "roundrobin"
    bounds: tuple[float, float] | None = (0.0, 1.0)

    def __init__(self, cursor: Cursor | None = None) -> None:
        self.cursor = cursor or Cursor()

    def score(self, task: TaskRequest, state: ClusterState, mask: np.ndarray) -> np.ndarray:
        n = max(len(state), 1)
        start = self.cursor.position % n
        self.cursor.position = start + 1
        return 1.0 - ((np.arange(n) - start) % n) / n


PICKERS: tuple[type, ...] = (FirstFit, BestFit, RandomPick, RoundRobin)
