"""Training the learned orderer in the simulator, by cross-entropy search (CEM).

The policy is a linear priority over job features (priority.py). CEM keeps a Gaussian
over the weight vector; each iteration samples a population, scores every candidate
by simulating the *training* windows, and refits the Gaussian to the best (elite)
candidates. The score is the mean over windows of log(mean bsld): each window counts
by its relative improvement, so a few pathological windows cannot dominate (or, with
objective "mean", the log of the plain mean, as the evaluation averages).

The search starts at the best (on the training windows) of SJF, F1's main term, a
UNICEP-like ageing SJF, "fits now, smallest area first" and "starts soonest,
smallest area first" (plus F1 exactly when the features include its ageing term,
f1_age, and with start_from_base a base model's weights; with start_on_validation
the best on the validation sequences), and keeps the best candidate seen, so the
result is never worse than that start on the training windows. With `validation` > 0
the result is instead the candidate (the start or a best-so-far) that scores best on
that many validation sequences, drawn like the training ones with another seed: on
small data the best on the training windows overfits. With `guard` set, that result
ships only if it beats the best of the named rules (RULES, and F1) on the validation
sequences by a paired test at that confidence; otherwise the rule does (guard.py).

Training windows come from the given trace slices; with `exclude` set, from
block-bootstrap sequences of the jobs outside the evaluation windows (heldout.py);
and, with `synthetic` > 0, from seeded synthetic sequences of a 256-processor machine
at high load (agent.sim.synthetic, half of them with exact requested times, as in the
Lublin model). They are never the evaluation data. One weight vector is searched per
mode in `modes`; a mode not searched keeps a base model's weights. Everything is
seeded: the windows, the samples, and the simulator.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from cloudai.agent.sim.machine import simulate_machine
from cloudai.agent.sim.metrics import metrics
from cloudai.agent.sim.trace import Trace
from cloudai.errors import ConfigError
from cloudai.lifetime import die_with_parent

from .guard import Verdict, judge
from .model import LearnedModel
from .priority import FEATURES, LinearPriority


@dataclass
class TrainConfig:
    iterations: int = 20
    population: int = 24
    elite_frac: float = 0.25
    windows: int = 16
    length: int = 1024
    seed: int = 0
    workers: int = 1  # simulation processes; 1 = in this process
    init_std: float = 1.0
    synthetic: int = 0  # extra synthetic training sequences (see synthetic_parts)
    # Held-out training (heldout.py): leave out the jobs of the evaluation windows
    # (exclude = (sequences, length, seed)) and train on block-bootstrap sequences of
    # the rest, in blocks of `block` jobs. (0, 0, 0) = plain windows of the slices.
    exclude: tuple[int, int, int] = (0, 0, 0)
    block: int = 128
    load: tuple[float, float] | None = None  # offered load range (heldout.py's stretch)
    # With exclude: "bootstrap" (heldout.py: blocks of consecutive held-out jobs) or
    # "resample" (resample.py: a workload model fitted to the held-out jobs).
    sampler: str = "bootstrap"
    features: tuple[str, ...] = FEATURES  # the searched weights (a subset of FEATURES)
    modes: tuple[str, ...] = ("backfill", "no_backfill")  # weight vectors to search
    # Validation: this many more sequences, drawn like the training ones with another
    # seed; the result is the candidate (start or best-so-far) that scores best on them.
    validation: int = 0
    start_from_base: bool = False  # also start the search at the base model's weights
    # With validation: choose the start on the validation sequences, not the training ones.
    start_on_validation: bool = False
    objective: str = "logmean"  # or "mean" (see score)
    recent: int = 0  # the orderer estimates run times from users' last k jobs (0: off)
    # With validation: the one-sided confidence (e.g. 0.95) at which a searched result
    # must beat the best named rule on the validation sequences, else that rule ships
    # (guard.py). 0: off.
    guard: float = 0.0

    def check(self) -> TrainConfig:
        """Raise ConfigError (one line, named by `cloudai sim train`'s flag) for a
        setting out of range; return self when every one is usable."""
        least = {"iterations": 0, "population": 1, "windows": 0, "length": 1}
        least.update(synthetic=0, validation=0, block=1, recent=0, workers=1)
        for key, low in least.items():
            value = getattr(self, key)
            if value < low:
                flag = "--" + {"recent": "recent-runtimes"}.get(key, key)
                raise ConfigError(f"{flag} {value}: must be {low} or more")
        if self.windows + self.synthetic < 1:
            raise ConfigError("--windows 0: nothing to train on (give --windows or --synthetic)")
        if self.start_on_validation and not self.validation:
            raise ConfigError("--start-on-validation needs --validation N")
        if self.guard and not 0.5 <= self.guard < 1:
            raise ConfigError(f"--guard {self.guard}: must be 0 (off) or in [0.5, 1)")
        if self.guard and self.validation < 3:
            raise ConfigError("--guard needs --validation 3 or more")
        if not (math.isfinite(self.init_std) and self.init_std > 0):
            raise ConfigError(f"--init-std {self.init_std}: must be a positive number")
        return self


@dataclass
class Part:
    """One training window: a trace slice and the machine it runs on."""

    trace: Trace
    procs: int


@dataclass
class History:
    best: list[float] = field(default_factory=list)  # best score per iteration
    mean: list[float] = field(default_factory=list)  # population mean per iteration
    baseline: float = math.nan  # SJF's score on the same windows
    val: list[float] = field(default_factory=list)  # validation score per iteration
    guard: Verdict | None = None  # with cfg.guard: whether the searched result shipped


def draw_parts(traces: Sequence[tuple[Trace, int]], cfg: TrainConfig) -> list[Part]:
    """cfg.windows windows of cfg.length jobs, spread over the traces (seeded); with
    cfg.load, each is stretched in time to an offered load drawn from that range (an
    augmentation: the evaluation period may be loaded unlike the training one)."""
    from .heldout import stretch

    rng = np.random.default_rng(cfg.seed)
    loads = np.random.default_rng(cfg.seed + 104_729)  # the same windows with or without
    parts = []
    for k in range(cfg.windows):
        trace, procs = traces[k % len(traces)]
        if cfg.length > len(trace):
            raise ConfigError(f"--length {cfg.length} is longer than the trace ({len(trace)} jobs)")
        start = int(rng.integers(0, len(trace) - cfg.length + 1))
        window = trace.window(start, cfg.length)
        if cfg.load is not None:
            stretch(window, float(loads.uniform(*cfg.load)), procs)
        parts.append(Part(window, procs))
    return parts


def heldout_parts(traces: Sequence[tuple[Trace, int]], cfg: TrainConfig) -> list[Part]:
    """cfg.windows sequences that avoid the evaluation windows cfg.exclude = (K, L,
    seed) of each trace, spread over the traces: block-bootstrap (heldout.py) or
    drawn from a fitted workload model (resample.py), per cfg.sampler."""
    from .heldout import eval_mask, heldout_sequences, segments
    from .resample import resampled_sequences

    k, length, seed = cfg.exclude
    flag = f"--exclude {k}:{length}:{seed}"
    parts = []
    for i, (trace, procs) in enumerate(traces):
        count = len(range(i, cfg.windows, len(traces)))
        if length > len(trace):  # named by --exclude: --length is the training windows'
            raise ConfigError(f"{flag}: L={length} is longer than the trace ({len(trace)} jobs)")
        mask = eval_mask(len(trace), k, length, seed)
        # Both samplers need held-out stretches of two or more jobs (their arrival gaps).
        if not any(n > 1 for _, n in segments(mask)):
            raise ConfigError(
                f"{flag}: its windows leave no two consecutive jobs of {trace.name} "
                f"({len(trace)} jobs) to train on: exclude fewer or shorter windows"
            )
        if cfg.sampler == "resample":
            seqs = resampled_sequences(trace, mask, count, cfg.length, cfg.seed + i, cfg.load)
        else:
            seqs = heldout_sequences(
                trace, mask, count, cfg.length, cfg.block, cfg.seed + i, cfg.load
            )
        parts.extend(Part(s, procs) for s in seqs)
    return parts


def training_parts(traces: Sequence[tuple[Trace, int]], cfg: TrainConfig) -> list[Part]:
    """The training windows: held-out sequences when cfg.exclude is set, plain
    windows of the traces otherwise; plus cfg.synthetic synthetic sequences."""
    parts = heldout_parts(traces, cfg) if cfg.exclude[0] else draw_parts(traces, cfg)
    return parts + synthetic_parts(cfg.synthetic, cfg.length, cfg.seed)


SYNTHETIC_PROCS = 256


def synthetic_parts(k: int, length: int, seed: int) -> list[Part]:
    """k seeded synthetic sequences of `length` jobs on 256 processors, offered load
    0.95..1.3; every other one with requested time = runtime (exact estimates)."""
    from cloudai.agent.sim.synthetic import synthetic_trace

    parts = []
    for i in range(k):
        s = 1_000_003 + seed * 1000 + i  # away from the seeds tests and notebooks use
        load = float(np.random.default_rng(s).uniform(0.95, 1.3))
        t = synthetic_trace(length, seed=s, procs=SYNTHETIC_PROCS, load=load)
        if i % 2 == 0:
            t.req_time = t.run.copy()
        parts.append(Part(t, SYNTHETIC_PROCS))
    return parts


def score(
    weights: np.ndarray,
    parts: Sequence[Part],
    backfill: bool,
    features: Sequence[str] = FEATURES,
    objective: str = "logmean",
    recent: int = 0,
) -> float:
    """Lower is better. "logmean": the mean over windows of log(mean bsld), so each
    window counts by its relative change; "mean": log of the mean over windows of
    the mean bsld, as the evaluation averages it (the worst windows weigh most)."""
    return aggregate(bslds(weights, parts, backfill, features, recent), objective)


def aggregate(bsld: np.ndarray, objective: str) -> float:
    """score's objective from the windows' mean bsld values."""
    if objective == "mean":
        return math.log(float(np.mean(bsld)))
    return sum(math.log(b) for b in bsld) / len(bsld)


def bslds(
    weights: np.ndarray,
    parts: Sequence[Part],
    backfill: bool,
    features: Sequence[str] = FEATURES,
    recent: int = 0,
) -> np.ndarray:
    """The mean bsld of each window under the linear priority `weights`."""
    order = LinearPriority(weights, features, recent)
    runs = (simulate_machine(p.trace, p.procs, order, backfill) for p in parts)
    return np.array([metrics(r)["bsld"] for r in runs])


_PARTS: list[Part] = []


def _init(parts: list[Part], parent: int | None = None) -> None:
    global _PARTS
    _PARTS = parts
    if parent is not None:
        die_with_parent(parent)


def _score_in_worker(args: tuple[np.ndarray, bool, tuple[str, ...], str, int]) -> float:
    return score(args[0], _PARTS, *args[1:])


class _InProcess:
    """The pool interface, run in this process (workers=1: no extra processes)."""

    def __init__(self, parts: list[Part]) -> None:
        _init(parts)

    def __enter__(self) -> _InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(self, fn, items):
        return map(fn, items)


def _pool(workers: int, parts: list[Part]):
    if workers <= 1:
        return _InProcess(parts)
    return ProcessPoolExecutor(workers, initializer=_init, initargs=(parts, os.getpid()))


def heuristic_weights(**named: float) -> np.ndarray:
    w = np.zeros(len(FEATURES))
    for k, v in named.items():
        w[FEATURES.index(k)] = v
    return w


def project(weights: np.ndarray, features: Sequence[str]) -> np.ndarray:
    """A FEATURES-long weight vector restricted to `features`."""
    return np.array([weights[FEATURES.index(f)] for f in features])


# The named rules the search starts from (and the guard compares against).
RULES = {
    "sjf": heuristic_weights(log_runtime=-1.0),
    "f1_main_term": heuristic_weights(log_runtime=-0.3, f1_term=-1.0),
    "sjf_aged": heuristic_weights(log_runtime=-1.0, wait_ratio=0.3),  # UNICEP-like ageing
    "fits_smallest_area": heuristic_weights(fits=3.0, log_area=-1.0),
    "soonest_smallest_area": heuristic_weights(log_delay=-3.0, log_area=-1.0),
}
# F1 exactly: a start only when the searched features include its ageing (f1_age).
F1_EXACT = heuristic_weights(f1_term=-1.0, f1_age=-1.0)


def cem(
    parts: list[Part],
    backfill: bool,
    cfg: TrainConfig,
    on_iteration: Callable[[int, float, np.ndarray, float], None] | None = None,
    val: list[Part] | None = None,
    extra_starts: Sequence[np.ndarray] = (),
    say: Callable[[str], None] = lambda line: None,
) -> tuple[np.ndarray, History]:
    """The best weights found (on `val` when given, else on `parts`), and the curve.
    The search starts at the best on `parts` of named_rules and `extra_starts` (weights
    over cfg.features)."""
    rng = np.random.default_rng(cfg.seed + 1)
    feats = tuple(cfg.features)
    rules = named_rules(feats)
    candidates = [*rules.values(), *(np.asarray(w) for w in extra_starts)]
    how = (backfill, feats, cfg.objective, cfg.recent)
    on = f" and {len(val)} validation sequences" if cfg.start_on_validation and val else ""
    say(f"scoring {len(candidates)} starts on {len(parts)} training windows{on}")
    starts = [score(w, parts, *how) for w in candidates]
    # The rules' validation runs are kept: the guard compares against them too.
    rule_val, on_val = {}, []
    if cfg.start_on_validation and val:
        rule_val = {n: bslds(w, val, backfill, feats, cfg.recent) for n, w in rules.items()}
        on_val = [aggregate(b, cfg.objective) for b in rule_val.values()]
        on_val += [score(w, val, *how) for w in candidates[len(rules) :]]
    first = int(np.argmin(on_val or starts))
    mean = candidates[first].copy()
    std = np.full(len(feats), cfg.init_std)
    n_elite = max(2, int(cfg.population * cfg.elite_frac))
    hist = History(baseline=starts[0])
    best_w, best_s = mean.copy(), starts[first]
    pick = _Selector(val, how, best_w, on_val[first] if on_val else None)
    with _pool(cfg.workers, parts) as pool:
        for it in range(cfg.iterations):
            pop = mean + std * rng.standard_normal((cfg.population, len(feats)))
            pop[0] = best_w  # elitism: the best so far is always re-evaluated
            jobs = [(w, *how) for w in pop]
            scores = np.array(list(pool.map(_score_in_worker, jobs)))
            elite = pop[np.argsort(scores)[:n_elite]]
            mean, std = elite.mean(axis=0), elite.std(axis=0) + 0.02
            if scores.min() < best_s:
                best_s, best_w = float(scores.min()), pop[int(scores.argmin())].copy()
                pick.offer(best_w)
            hist.best.append(best_s)
            hist.mean.append(float(scores.mean()))
            hist.val.append(pick.score)
            if on_iteration:
                on_iteration(it, best_s, best_w, pick.score)
    if not val:
        return best_w, hist
    if not cfg.guard:
        return pick.weights, hist
    also = "" if rule_val else f" and {len(rules)} rules"
    say(f"guard: scoring the result{also} on {len(val)} validation sequences")
    hist.guard = ship_guard(pick.weights, rules, val, how, cfg.guard, rule_val)
    return (pick.weights if hist.guard.kept else rules[hist.guard.against]), hist


def named_rules(feats: Sequence[str]) -> dict[str, np.ndarray]:
    """RULES as weights over `feats`, plus F1 exactly when `feats` has its ageing term."""
    rules = {name: project(w, feats) for name, w in RULES.items()}
    if "f1_age" in feats:
        rules["f1"] = project(F1_EXACT, feats)
    return rules


def ship_guard(
    pick: np.ndarray,
    rules: dict[str, np.ndarray],
    val: list[Part],
    how: tuple,
    confidence: float,
    rule_val: dict[str, np.ndarray] | None = None,
) -> Verdict:
    """guard.judge on the validation windows: `pick` against the best of `rules`
    (`rule_val`: the rules' per-window bsld there, when already simulated)."""
    backfill, feats, _, recent = how
    mine = bslds(pick, val, backfill, feats, recent)
    if not rule_val:
        rule_val = {name: bslds(w, val, backfill, feats, recent) for name, w in rules.items()}
    return judge(mine, rule_val, confidence)


class _Selector:
    """Keeps the candidate with the best validation score (none: the last offered)."""

    def __init__(self, val, how: tuple, first: np.ndarray, known: float | None = None) -> None:
        self.val, self.how = val, how
        self.weights, self.score = first.copy(), math.nan
        self.offer(first, known)

    def offer(self, w: np.ndarray, known: float | None = None) -> None:
        """`known`: w's validation score when it was already computed."""
        if not self.val:
            return
        s = score(w, self.val, *self.how) if known is None else known
        if not s >= self.score:  # also when self.score is NaN (the first)
            self.weights, self.score = w.copy(), s


MODES = {"backfill": True, "no_backfill": False}
VAL_SEED = 7919  # validation sequences use seed + this


def _expand(weights: np.ndarray, names: Sequence[str], into: Sequence[str]) -> np.ndarray:
    """Weights over `names` as weights over `into`: zero for features not in `names`
    (and weights of features not in `into` are dropped)."""
    w = dict(zip(names, weights, strict=True))
    return np.array([w.get(f, 0.0) for f in into])


def train_model(
    traces: Sequence[tuple[Trace, int]],
    cfg: TrainConfig,
    on_iteration: Callable[[str, int, float, float], None] | None = None,
    name: str = "learned",
    base: LearnedModel | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> tuple[LearnedModel, dict[str, History]]:
    """Train the weight vectors of cfg.modes (with and/or without backfilling) on
    `traces`, each a (trace, machine size) pair: the training slices only. A mode not
    trained keeps `base`'s weights (needed then). `say` gets a line before each long
    step that `on_iteration` does not report (scoring the starts, the guard)."""
    parts = training_parts(traces, cfg)
    val = None
    if cfg.validation:
        other = dataclasses.replace(cfg, windows=cfg.validation, seed=cfg.seed + VAL_SEED)
        val = training_parts(traces, dataclasses.replace(other, synthetic=0))
    found, hist = {}, {}
    for mode in cfg.modes:
        cb = (lambda it, s, w, v, m=mode: on_iteration(m, it, s, v)) if on_iteration else None
        extra = []
        if cfg.start_from_base and base is not None:
            extra = [_expand(base.weights(MODES[mode]), base.features, cfg.features)]
        found[mode], hist[mode] = cem(
            parts, MODES[mode], cfg, cb, val, extra, lambda line, m=mode: say(f"{m}: {line}")
        )
    feats = tuple(cfg.features)
    kept = [m for m in MODES if m not in found]
    if kept:
        if base is None:
            raise ValueError(f"modes {kept} are not trained: a base model must provide them")
        feats = tuple(f for f in FEATURES if f in feats or f in base.features)
        found = {m: _expand(w, cfg.features, feats) for m, w in found.items()}
        found.update({m: _expand(base.weights(MODES[m]), base.features, feats) for m in kept})
    model = LearnedModel.new(
        found["backfill"],
        found["no_backfill"],
        profile=base.placement_profile() if base is not None and base.profile else None,
        predictors=base.predictors if base is not None else None,
        meta=_meta(traces, cfg, hist, base, kept),
        name=name,
        features=feats,
        recent=cfg.recent,
    )
    return model, hist


def _meta(
    traces: Sequence[tuple[Trace, int]],
    cfg: TrainConfig,
    hist: dict[str, History],
    base: LearnedModel | None,
    kept: list[str],
) -> dict:
    """How a model was trained, for its file's `meta`."""
    return {
        "trained_on": [f"{t.name} ({len(t)} jobs, {p} procs)" for t, p in traces],
        "windows": cfg.windows,
        "excluded_eval_windows": list(cfg.exclude) if cfg.exclude[0] else None,
        "block": cfg.block if cfg.exclude[0] and cfg.sampler == "bootstrap" else None,
        "sampler": cfg.sampler if cfg.exclude[0] else None,
        "load": list(cfg.load) if cfg.load else None,
        "synthetic": cfg.synthetic,
        "length": cfg.length,
        "seed": cfg.seed,
        "iterations": cfg.iterations,
        "population": cfg.population,
        "trained_modes": list(cfg.modes),
        "started_from_base": bool(cfg.start_from_base and base is not None),
        "start_on_validation": cfg.start_on_validation,
        "kept_from": {m: base.version for m in kept} if kept and base else None,
        "validation": cfg.validation,
        "objective": cfg.objective,
        "recent": cfg.recent,
        "val_score": {m: h.val[-1] if h.val else None for m, h in hist.items()},
        "train_score": {m: h.best[-1] if h.best else h.baseline for m, h in hist.items()},
        "sjf_score": {m: h.baseline for m, h in hist.items()},
        "guard": cfg.guard or None,
        "guard_verdict": {m: h.guard.as_dict() for m, h in hist.items() if h.guard} or None,
    }
