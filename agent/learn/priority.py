"""The learned queue orderer: a linear priority function over job features.

    priority(job) = w . features(job),   highest priority first

The features are scale-free transforms of what every orderer sees (JobColumns):
requested (or predicted) runtime, size, wait, whether the job fits the free
capacity now, and their interactions as WFP/UNICEP use them. The weights come from
a model file (cloudai.agent.learn.model); there is one weight vector for queues with
EASY backfilling and one without, because the best order differs: without
backfilling the chosen job blocks the machine, so fitting *now* matters far more.

The live agent never blocks a queue (every task that fits is placed), so it uses the
backfilling weights; it passes the cpu free and the largest worker's cpu as `free`
and `capacity` when it knows them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from cloudai.agent.policy.job_ordering import DEFAULT_RUNTIME_S, JobColumns, KeyOrderer
from cloudai.agent.policy.snapshot import TaskRequest

FEATURES = (
    "log_runtime",
    "log_procs",
    "log_wait",
    "fits",
    "log_area",
    "wait_ratio",
    "procs_over_free",
    "f1_term",
    "procs_frac",
    # Added in the second feature set; models trained on the first nine still load.
    "fits_short",
    "fits_procs",
    "log_bsld",
    "free_short",
    "runtime_rank",
    "procs_rank",
    "wait_rank",
    # Third set: when the job could start (JobColumns.start_delay, 0 when unknown).
    "log_delay",
    "start_bsld",
    "log_idle",
    "fills_gap",
    # Fourth set: run-time estimates from users' past jobs (JobColumns.estimate; the
    # requested time when there is none).
    "log_estimate",
    "estimate_ratio",
    # Fifth set: F1's ageing term, 870 log10(submit) / capacity (see job_features).
    "f1_age",
)


def _rank(x: np.ndarray) -> np.ndarray:
    """Each job's rank in the queue by x, scaled to 0..1 (0 = smallest)."""
    m = len(x)
    if m < 2:
        return np.zeros(m)
    return np.argsort(np.argsort(x, kind="stable"), kind="stable") / (m - 1)


_DELAYED = {"log_delay", "start_bsld", "log_idle", "fills_gap"}


def _first_start(delay: np.ndarray) -> float:
    """The earliest time a job that does not fit now could start (inf if all fit)."""
    later = delay[delay > 0]
    return float(later.min()) if len(later) else np.inf


class _Scaled:
    """What the features are computed from: JobColumns' columns, clipped and scaled
    (a job's runtime at least 1 s, the machine size 1024 cpus when unknown)."""

    def __init__(self, c: JobColumns, delayed: bool) -> None:
        self.c = c
        self.r = np.maximum(c.runtime, 1.0)
        self.n = np.maximum(c.procs, 1e-3)
        finite = math.isfinite(c.capacity) and c.capacity > 1
        self.size = math.log2(c.capacity) if finite else 10.0
        self.cap = c.capacity if finite else 1024.0
        self.free = c.free if math.isfinite(c.free) else np.inf
        self.lr = np.log10(self.r) / 5.0
        self.fits = c.fits.astype(np.float64)
        self.free_frac = min(self.free / self.cap, 1.0) if self.free != np.inf else 1.0
        self.delay = c.start_delay() if delayed else None
        self.idle = self.free if self.free != np.inf else 0.0
        self.est = self.r if c.estimate is None else np.maximum(c.estimate, 1.0)

    def procs_over_free(self) -> np.ndarray:
        if self.free == np.inf:
            return np.zeros_like(self.n)
        return np.minimum(self.n / max(self.free, 1e-9), 1.0)

    def bsld_after(self, delay: np.ndarray | float) -> np.ndarray:
        """log10 of the bounded slowdown if the job started after `delay` more seconds."""
        c, r = self.c, self.r
        return np.log10(np.maximum((c.wait + delay + r) / np.maximum(r, 10.0), 1.0))


_MAKE: dict[str, Callable[[_Scaled], np.ndarray]] = {
    "log_runtime": lambda x: x.lr,
    "log_procs": lambda x: np.log2(np.maximum(x.n, 1.0)) / x.size,
    "log_wait": lambda x: np.log10(1.0 + x.c.wait) / 5.0,
    "fits": lambda x: x.fits,
    "log_area": lambda x: np.log10(1.0 + x.r * x.n) / 8.0,
    "wait_ratio": lambda x: np.log10(1.0 + x.c.wait / x.r),
    "procs_over_free": _Scaled.procs_over_free,
    "f1_term": lambda x: np.log10(x.r) * x.n / x.cap,
    "procs_frac": lambda x: x.n / x.cap,
    "fits_short": lambda x: x.fits * (1.0 - x.lr),
    "fits_procs": lambda x: x.fits * x.n / x.cap,
    "log_bsld": lambda x: x.bsld_after(0.0),
    "free_short": lambda x: x.free_frac * (1.0 - x.lr),
    "runtime_rank": lambda x: _rank(x.r),
    "procs_rank": lambda x: _rank(x.n),
    "wait_rank": lambda x: _rank(x.c.wait),
    "log_delay": lambda x: np.log10(1.0 + x.delay) / 5.0,
    "start_bsld": lambda x: x.bsld_after(x.delay),
    "log_idle": lambda x: np.log10(1.0 + x.idle * x.delay) / 8.0,
    "fills_gap": lambda x: x.fits * (x.r <= _first_start(x.delay)),
    "log_estimate": lambda x: np.log10(x.est) / 5.0,
    "estimate_ratio": lambda x: np.log10(x.est / x.r),
    "f1_age": lambda x: 870.0 * np.log10(np.maximum(x.c.submit, 0.1)) / x.cap,
}


def job_features(c: JobColumns, names: Sequence[str] = FEATURES) -> np.ndarray:
    """(jobs, len(names)), each roughly in 0..1 for typical HPC and cloud jobs.

    - log_runtime, log_procs, log_wait, log_area: log-scaled runtime, size, wait,
      runtime x size; wait_ratio: log(1 + wait / runtime) (WFP/UNICEP's ageing);
    - fits: 1 if the job fits the free cpu now; procs_over_free: its size over that;
    - f1_term: log10(runtime) x size / capacity (F1's dominant term); procs_frac;
    - fits_short, fits_procs: fits x (1 - log_runtime), fits x procs_frac (the short
      or large job among those that can start now);
    - log_bsld: log10 of the bounded slowdown the job would have if it started now;
    - free_short: free share of the machine x (1 - log_runtime);
    - runtime_rank, procs_rank, wait_rank: the job's rank in the queue, 0..1;
    - log_delay: log-scaled seconds until it could start (its shadow time, 0 if it
      fits now or the running jobs are unknown); start_bsld: log10 of the bounded
      slowdown it would have if it started then; log_idle: log-scaled processor-
      seconds the free processors would idle waiting for it (what choosing it costs
      without backfilling); fills_gap: 1 if it fits now and, by requested times,
      ends before any job that does not fit could start (so it delays none of them);
    - log_estimate: log-scaled estimated run time (JobColumns.estimate, e.g. from the
      user's recent jobs; the requested time when unknown); estimate_ratio: log10 of
      estimate over requested time (<= 0: how much the user over-asks).
    """
    if not len(c.runtime) or not names:
        return np.zeros((len(c.runtime), len(names)))
    x = _Scaled(c, delayed=bool(_DELAYED & set(names)))
    return np.stack([_MAKE[k](x) for k in names], axis=1)


class RecentRuntimes:
    """Runtime estimates from each user's last `k` completed jobs (Tsafrir, Etsion and
    Feitelson, TPDS 2007): a queued job's estimate is their mean run time, capped by
    its requested time; a user with no completed job yet, or no user id (negative,
    as in synthetic logs), keeps the requested time. The simulator calls `observe`
    at each completion, so an estimate uses only jobs that have ended."""

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError("recent runtimes need k >= 1")
        self.k = int(k)
        self.history: dict[int, list[float]] = {}

    def observe(self, user: int, runtime: float) -> None:
        if user < 0:
            return
        h = self.history.setdefault(int(user), [])
        h.append(float(runtime))
        del h[: -self.k]

    def estimate(self, c: JobColumns) -> np.ndarray:
        if c.user is None or not self.history:
            return c.runtime
        hist = self.history
        mean = np.fromiter(
            (sum(h) / len(h) if (h := hist.get(int(u))) else np.inf for u in c.user),
            np.float64,
            len(c.user),
        )
        return np.maximum(np.minimum(mean, c.runtime), 1.0)


class LinearPriority:
    """keys = -(features . w): what the simulator and training call directly.
    `features` names the weights (default: all of FEATURES, in order). With
    `recent` = k > 0, RecentRuntimes(k) fills JobColumns.estimate, which the
    log_estimate and estimate_ratio features read."""

    def __init__(
        self, weights: np.ndarray, features: Sequence[str] = FEATURES, recent: int = 0
    ) -> None:
        self.weights = np.asarray(weights, np.float64)
        self.features = tuple(features)
        self.recent = RecentRuntimes(recent) if recent else None
        unknown = [f for f in self.features if f not in FEATURES]
        if unknown:
            raise ValueError(f"unknown features {unknown}")
        if self.weights.shape != (len(self.features),):
            raise ValueError(f"need {len(self.features)} weights, got {self.weights.shape}")
        # Only features with a nonzero weight are computed: the others change no key
        # (model files carry zeros for the features their search left out).
        keep = self.weights != 0
        self._used = tuple(f for f, k in zip(self.features, keep, strict=True) if k)
        self._used_weights = self.weights[keep]

    def observe(self, user: int, runtime: float) -> None:
        """A job of `user` ended after `runtime` seconds (used only with `recent`)."""
        if self.recent is not None:
            self.recent.observe(user, runtime)

    def keys(self, c: JobColumns) -> np.ndarray:
        if self.recent is not None and c.user is not None:
            c = dataclasses.replace(c, estimate=self.recent.estimate(c))
        return -(job_features(c, self._used) @ self._used_weights)


class LearnedOrderer(KeyOrderer):
    """The `learned` orderer. Params: `model` (a LearnedModel or a model file path;
    default: the shipped model), `backfill` (which weight vector), plus KeyOrderer's
    `runtime`, `default_runtime`, `free`, `capacity`."""

    name = "learned"

    def __init__(
        self,
        model: Any = None,
        backfill: bool = True,
        runtime: Mapping[str, float] | None = None,
        default_runtime: float = DEFAULT_RUNTIME_S,
        free: float = math.inf,
        capacity: float = math.inf,
    ) -> None:
        from .model import LearnedModel, load_default_model, load_model

        super().__init__(runtime, default_runtime, free, capacity)
        if model is None:
            model = load_default_model()
        elif not isinstance(model, LearnedModel):
            model = load_model(model)
        self.model = model
        self.priority = LinearPriority(model.weights(backfill), model.features, model.recent)

    def observe(self, user: int, runtime: float) -> None:
        self.priority.observe(user, runtime)

    def keys(self, c: JobColumns) -> np.ndarray:
        return self.priority.keys(c)

    def order(self, tasks: Sequence[TaskRequest], now: float) -> list[int]:
        """A user's explicit priority still comes first (the learned weights carry
        their own ageing through the wait features); within it, the learned order.
        Traces have no priorities, so in the simulator this is the learned order."""
        if not tasks:
            return []
        c = JobColumns.from_tasks(
            tasks, now, self.runtime, self.default_runtime, self.free, self.capacity
        )
        prio = np.fromiter((t.priority for t in tasks), np.float64, len(tasks))
        return np.lexsort((np.arange(len(tasks)), c.submit, self.keys(c), -prio)).tolist()
