"""Runtime and peak-memory predictors, trained on the store's task history.

A finished attempt is one example: what was asked (image, command, name, owner,
cpu, memory, GPU, timeout, priority) and what happened (run time, peak memory).
The strongest signal is how the *same* work ran before, so besides the request the
features are the mean log outcome of earlier runs with the same image+command, image,
name and owner (NaN when there is none), and how many there were. Training computes
these from strictly earlier runs only, as inference would see them, so there is no
leak. Targets are log1p(seconds) and log1p(bytes); scikit-learn's
HistGradientBoostingRegressor handles the missing statistics natively. A feature
that is missing in *every* training example (no task has an owner or a name, or every
command ran only once) carries nothing to learn from and makes scikit-learn's fit fail,
so training drops it, for each model on its own (peaks may be unknown in every run
while run times are known); the predictor remembers the columns each model kept
(`columns`, `memory_columns`) and prediction reads the same ones.

At inference the predictor keeps the per-key statistics of its whole training
history. `cloudai agent train` retrains from the store on demand.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from cloudai.model import Task, TaskSpec, TaskState

from .model import LearnedModel, load_default_model

KEYS = ("command", "image", "name", "owner")
FEATURES = (
    "cpu",
    "log_memory",
    "gpu",
    "log_timeout",
    "priority",
    *(f"past_{k}" for k in KEYS),
    "log_runs",
)
MIN_EXAMPLES = 8


@dataclass
class Example:
    spec: TaskSpec
    runtime_s: float
    peak_memory: float
    finished_at: float


def _keys(spec: TaskSpec) -> dict[str, str]:
    return {
        "command": spec.image + "\0" + "\0".join(spec.command),
        "image": spec.image,
        "name": spec.name,
        "owner": spec.owner,
    }


def examples_from_tasks(tasks: Iterable[Task]) -> list[Example]:
    """Every attempt that ran to an end with timings, oldest first."""
    out = []
    for t in tasks:
        for a in t.attempts:
            if a.state not in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.TIMED_OUT):
                continue
            if a.started_at <= 0 or a.finished_at < a.started_at:
                continue
            run = a.finished_at - a.started_at
            out.append(Example(t.spec, run, float(a.peak_memory_bytes), a.finished_at))
    return sorted(out, key=lambda e: e.finished_at)


@dataclass
class _Stats:
    """Running sums of log outcomes per key value: [runtime, memory, runs, runs with a
    known peak]. A peak of 0 is unknown (a container re-adopted after a worker
    restart), so it adds to neither the memory sum nor its count. Files written before
    the fourth entry existed hold three, and count every run for memory. Plain dicts
    (no lambdas), so a trained predictor pickles into a model file."""

    sums: dict[str, dict[str, list[float]]] = field(default_factory=lambda: {k: {} for k in KEYS})

    def features(self, spec: TaskSpec, which: int) -> list[float]:
        keys = _keys(spec)
        row = []
        for k in KEYS:
            row.append(_mean(self.sums[k].get(keys[k]) if keys[k] else None, which))
        runs = self.sums["command"].get(keys["command"])
        return [*row, math.log1p(runs[2] if runs else 0)]

    def add(self, e: Example) -> None:
        keys = _keys(e.spec)
        known = e.peak_memory > 0
        for k in KEYS:
            if keys[k]:
                s = self.sums[k].setdefault(keys[k], [0.0, 0.0, 0, 0])
                s[0] += math.log1p(e.runtime_s)
                s[2] += 1
                if known:
                    s[1] += math.log1p(e.peak_memory)
                    s[3] += 1


def _mean(s: list[float] | None, which: int) -> float:
    """The mean log runtime (which 0) or log peak memory (1) of one key's sums."""
    if not s:
        return math.nan
    n = s[3] if which == 1 and len(s) > 3 else s[2]
    return s[which] / n if n else math.nan


def _request(spec: TaskSpec) -> list[float]:
    r = spec.resources
    return [
        r.cpu,
        math.log1p(r.memory_bytes),
        r.gpu,
        math.log1p(spec.timeout_s),
        float(spec.priority),
    ]


class Predictors:
    """Runtime (seconds) and peak memory (bytes) predictors for task specs."""

    def __init__(
        self,
        runtime,
        memory,
        stats: _Stats,
        n_examples: int,
        columns: Sequence[int] | None = None,
        memory_columns: Sequence[int] | None = None,
    ) -> None:
        self.runtime_model, self.memory_model = runtime, memory
        self.stats, self.n_examples = stats, n_examples
        # Indices into FEATURES the runtime model was fitted on (None: all of them).
        self.columns = None if columns is None else [int(c) for c in columns]
        # ... and the memory model (None: the runtime model's, as in older files).
        self.memory_columns = None if memory_columns is None else [int(c) for c in memory_columns]

    def _columns(self, which: int) -> list[int] | None:
        cols = getattr(self, "columns", None)  # files from before `columns` existed
        mem = getattr(self, "memory_columns", None)  # ... or `memory_columns`
        return mem if which == 1 and mem is not None else cols

    @property
    def features(self) -> tuple[str, ...]:
        """The names of the features the runtime model reads."""
        cols = self._columns(0)
        return FEATURES if cols is None else tuple(FEATURES[c] for c in cols)

    @property
    def memory_features(self) -> tuple[str, ...]:
        """The names of the features the memory model reads."""
        cols = self._columns(1)
        return FEATURES if cols is None else tuple(FEATURES[c] for c in cols)

    @property
    def dropped(self) -> tuple[str, ...]:
        """Features neither model reads: no training example had a value for them."""
        read = {*self.features, *self.memory_features}
        return tuple(f for f in FEATURES if f not in read)

    @property
    def memory_dropped(self) -> tuple[str, ...]:
        """Features only the memory model leaves out (no earlier run of that key had a
        known peak, e.g. every container ended before its memory was sampled)."""
        return tuple(f for f in self.features if f not in self.memory_features)

    def _x(self, specs: Sequence[TaskSpec], which: int) -> np.ndarray:
        x = np.array([_request(s) + self.stats.features(s, which) for s in specs], np.float64)
        cols = self._columns(which)
        return x if cols is None else x[:, cols]

    @classmethod
    def fit(cls, examples: Sequence[Example], seed: int = 0) -> Predictors:
        from sklearn.ensemble import HistGradientBoostingRegressor

        if len(examples) < MIN_EXAMPLES:
            raise ValueError(f"need at least {MIN_EXAMPLES} finished runs, have {len(examples)}")
        stats, x_run, x_mem = _Stats(), [], []
        for e in examples:  # features from strictly earlier runs
            x_run.append(_request(e.spec) + stats.features(e.spec, 0))
            x_mem.append(_request(e.spec) + stats.features(e.spec, 1))
            stats.add(e)
        y_run = np.log1p([e.runtime_s for e in examples])
        peaks = np.array([e.peak_memory for e in examples], np.float64)
        # The memory model learns only from the runs whose peak is known (0: unknown):
        # an unknown peak taken as 0 bytes would pull every prediction towards 0, and
        # packing would then count a task as a few kB. With no known peak at all it
        # learns 0 from every run, which packing reads as unknown (the request).
        known = peaks > 0
        mem_rows = known if known.any() else np.ones(len(peaks), bool)
        y_mem = np.log1p(peaks[mem_rows])
        x_mem_known = np.array(x_mem)[mem_rows]
        # Each model keeps the columns it has values for: peaks may be unknown in every
        # run (short containers) while run times, always known, still carry history.
        cols, mem_cols = _informative(np.array(x_run)), _informative(x_mem_known)
        x_run, x_mem = np.array(x_run)[:, cols], x_mem_known[:, mem_cols]
        # Small histories (a new cluster) still need leaves: the default of 20 examples
        # per leaf would leave a few dozen runs unsplit.
        leaf = max(2, min(20, len(examples) // 10))
        params = {"max_iter": 200, "min_samples_leaf": leaf, "random_state": seed}
        # One thread: task histories are small, and OpenMP threads spin badly when the
        # machine is busy (an agent shares it with workers).
        with threadpool_limits(1):
            runtime = HistGradientBoostingRegressor(**params).fit(x_run, y_run)
            memory = HistGradientBoostingRegressor(**params).fit(x_mem, y_mem)
        return cls(runtime, memory, stats, len(examples), cols, mem_cols)

    def predict_runtime(self, specs: Sequence[TaskSpec]) -> np.ndarray:
        if not specs:
            return np.zeros(0)
        with threadpool_limits(1):
            return np.maximum(np.expm1(self.runtime_model.predict(self._x(specs, 0))), 0.0)

    def predict_memory(self, specs: Sequence[TaskSpec]) -> np.ndarray:
        if not specs:
            return np.zeros(0)
        with threadpool_limits(1):
            return np.maximum(np.expm1(self.memory_model.predict(self._x(specs, 1))), 0.0)

    def importances(self, examples: Sequence[Example], seed: int = 0) -> dict[str, float]:
        """Permutation importance of each feature for the runtime model (0.0 for the
        features training dropped)."""
        from sklearn.inspection import permutation_importance

        stats, x = _Stats(), []
        for e in examples:
            x.append(_request(e.spec) + stats.features(e.spec, 0))
            stats.add(e)
        y = np.log1p([e.runtime_s for e in examples])
        cols = [FEATURES.index(f) for f in self.features]
        with threadpool_limits(1):
            res = permutation_importance(
                self.runtime_model, np.array(x)[:, cols], y, n_repeats=5, random_state=seed
            )
        got = dict(zip(self.features, res.importances_mean.tolist(), strict=True))
        return {f: got.get(f, 0.0) for f in FEATURES}


def _informative(x: np.ndarray) -> list[int]:
    """The columns with a value in at least one row: a column that is all NaN (every
    example missing the statistic) is dropped. `log_runs` is never NaN, so at least
    one column is always kept."""
    return [c for c in range(len(FEATURES)) if np.isfinite(x[:, c]).any()]


def packed_memory(requested: int, predicted: float, margin: float) -> int:
    """The memory to pack by: the prediction plus a safety margin, never more than was
    requested (the container's limit is the request, so more could never be used)."""
    if requested <= 0 or not math.isfinite(predicted) or predicted <= 0:
        return requested
    return int(min(requested, math.ceil(predicted * (1.0 + margin))))


def train_from_store(url: str, base: LearnedModel | None = None, seed: int = 0) -> LearnedModel:
    """A model with predictors fitted on the store's history at `url`, keeping the
    priority weights and profile of `base` (default: the shipped model)."""
    from cloudai.master.store import open_store

    _existing_store(url)
    store = open_store(url)
    try:
        examples = examples_from_tasks(store.list_tasks())
    finally:
        store.close()
    return with_predictors(base or load_default_model(), examples, seed, source=url)


def _existing_store(url: str) -> None:
    """ConfigError unless a SQLite `url` names an existing store file: opening a store
    creates a missing one, and training must not leave an empty database behind."""
    from pathlib import Path

    from cloudai.errors import ConfigError
    from cloudai.master.store import sqlite_path
    from cloudai.master.store.sqlite import MEMORY

    if url.strip().startswith(("mongodb://", "mongodb+srv://")):
        return
    path = sqlite_path(url.strip())
    if path == MEMORY:
        return
    p = Path(path).expanduser()
    if p.is_dir():
        raise ConfigError(f"no store at {str(p)!r}: it is a directory")
    if not p.exists():
        raise ConfigError(f"no store at {str(p)!r}")
    if p.stat().st_size == 0:
        raise ConfigError(f"no store at {str(p)!r}: the file is empty")


def with_predictors(
    base: LearnedModel, examples: Sequence[Example], seed: int = 0, source: str = ""
) -> LearnedModel:
    from cloudai.master.store.mongo import mask_uri

    pred = Predictors.fit(examples, seed)
    meta = {
        **base.meta,
        # Kept in the file, which is shared: a MongoDB URL without its password.
        "predictors_trained_on": mask_uri(source),
        "examples": len(examples),
        "predictor_features": list(pred.features),
    }
    model = LearnedModel.new(
        base.weights(True),
        base.weights(False),
        profile=base.placement_profile() if base.profile else None,
        predictors={"tasks": pred},
        meta=meta,
        name="predictors",
        features=base.features,
    )
    return model


def synthetic_examples(n: int, seed: int = 0, apps: int = 12) -> list[Example]:
    """A seeded task history: `apps` kinds of work (image + command) with their own
    runtime and memory, run by a few owners. For notebooks and tests."""
    from cloudai.model import Resources

    rng = np.random.default_rng(seed)
    base_run = np.exp(rng.uniform(np.log(5), np.log(3600), apps))
    base_mem = np.exp(rng.uniform(np.log(64), np.log(4096), apps)) * 1024**2
    out = []
    for k in range(n):
        a = int(rng.integers(apps))
        spec = TaskSpec(
            image=f"registry.local/app-{a % 5}:v1",
            command=["python", f"job{a}.py"],
            resources=Resources(float(rng.choice([0.5, 1, 2])), int(base_mem[a] * 2), 0.0),
            name=f"job{a}",
            owner=f"user{a % 3}",
            timeout_s=float(base_run[a] * 4),
        )
        run = float(base_run[a] * rng.lognormal(0, 0.3))
        mem = float(base_mem[a] * rng.lognormal(0, 0.15))
        out.append(Example(spec, run, mem, float(k)))
    return out


def holdout_curve(
    examples: Sequence[Example], sizes: Sequence[int], seed: int = 0
) -> list[dict[str, float]]:
    """Learning curve: fit on the first `size` examples of the oldest 70%, measure the
    mean absolute error of log runtime and log memory on the newest 30%."""
    cut = int(len(examples) * 0.7)
    train, test = list(examples[:cut]), list(examples[cut:])
    out = []
    for size in sizes:
        p = Predictors.fit(train[:size], seed)
        rt = p.predict_runtime([e.spec for e in test])
        mem = p.predict_memory([e.spec for e in test])
        out.append(
            {
                "examples": float(min(size, len(train))),
                "mae_log_runtime": float(
                    np.mean(np.abs(np.log1p(rt) - np.log1p([e.runtime_s for e in test])))
                ),
                "mae_log_memory": float(
                    np.mean(np.abs(np.log1p(mem) - np.log1p([e.peak_memory for e in test])))
                ),
            }
        )
    return out
