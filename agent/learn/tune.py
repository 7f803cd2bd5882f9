"""Tuning placement-profile weights in the simulator, and `cloudai sim train`.

`tune_profile` searches the weights of a set of scorers by cross-entropy (CEM) to
minimise the unallocated-GPU fraction of saturation runs on training node subsets.
Weights are sampled as |w| and the search starts at FGD alone, so the best profile
found is never worse than FGD on the training runs. The result is a plain Profile,
which `save_profile` writes as a file the agent loads with `--profile`.

`train_on_trace` is what `cloudai sim train` runs: CEM over the learned orderer's
weights for an SWF trace (see train.py), or profile tuning for an openb trace.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from cloudai.agent.policy.baselines import DEVICE_FILTERS
from cloudai.agent.policy.profiles import Profile
from cloudai.agent.sim.cluster import saturate
from cloudai.agent.sim.policies import Policy
from cloudai.agent.sim.trace import Nodes, Trace

from .model import LearnedModel, load_default_model
from .train import TrainConfig, train_model

TUNED_SCORERS = ("fgd", "bestfit", "tetris", "most_allocated", "least_allocated", "firstfit")


@dataclass
class TuneHistory:
    best: list[float] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    start: float = math.nan  # FGD alone on the training runs


def profile_of(weights: Sequence[float], name: str = "tuned") -> Profile:
    scorers = {s: round(float(abs(w)), 4) for s, w in zip(TUNED_SCORERS, weights, strict=True)}
    if not any(scorers.values()):
        scorers["fgd"] = 1.0
    return Profile(name, scorers, DEVICE_FILTERS, "fifo", description="tuned in the simulator")


def unallocated(profile: Profile, runs: Sequence[tuple[Trace, Nodes, int]]) -> float:
    """Mean unallocated-GPU fraction of saturation runs (trace, nodes, seed)."""
    policy = Policy(profile.name, "fcfs", profile)
    return float(np.mean([saturate(t, n, policy, s).unallocated_gpu_frac for t, n, s in runs]))


def tune_profile(
    runs: Sequence[tuple[Trace, Nodes, int]],
    iterations: int = 8,
    population: int = 12,
    seed: int = 0,
    on_iteration: Callable[[int, float, Profile], None] | None = None,
) -> tuple[Profile, TuneHistory]:
    rng = np.random.default_rng(seed)
    mean = np.zeros(len(TUNED_SCORERS))
    mean[0] = 1.0
    std = np.full(len(TUNED_SCORERS), 0.5)
    hist = TuneHistory(start=unallocated(profile_of(mean), runs))
    best_w, best_s = mean.copy(), hist.start
    n_elite = max(2, population // 4)
    for it in range(iterations):
        pop = np.abs(mean + std * rng.standard_normal((population, len(TUNED_SCORERS))))
        pop[0] = best_w
        scores = np.array([unallocated(profile_of(w), runs) for w in pop])
        elite = pop[np.argsort(scores, kind="stable")[:n_elite]]
        mean, std = elite.mean(axis=0), elite.std(axis=0) + 0.02
        if scores.min() < best_s:
            best_s, best_w = float(scores.min()), pop[int(scores.argmin())].copy()
        hist.best.append(best_s)
        hist.mean.append(float(scores.mean()))
        if on_iteration:
            on_iteration(it, best_s, profile_of(best_w))
    return profile_of(best_w), hist


def train_on_trace(
    path: str,
    cfg,
    tcfg: TrainConfig,
    progress: Callable[[str], None] | None = None,
    base: LearnedModel | None = None,
) -> LearnedModel:
    """`cloudai sim train`: a model trained on (a slice of) the trace at `path`. For
    openb the profile is tuned on two seeded node subsets (seeds S and S+1, each also
    seeding its run's inflation) and the orderer weights are kept from `base`."""
    from cloudai.agent.sim.runner import check_format, load_trace, machine_size

    say = progress or (lambda line: None)
    fmt = check_format(path, cfg)
    trace = load_trace(path, cfg)
    if fmt == "openb":
        return _tune_openb(trace, cfg, tcfg, say, base or load_default_model())
    procs = machine_size(trace, cfg)
    model, hist = train_model(
        [(trace, procs)],
        tcfg,
        lambda mode, it, s, v: say(_progress(mode, it, s, v if tcfg.validation else None)),
        base=base
        or (load_default_model() if len(tcfg.modes) < 2 or tcfg.start_from_base else None),
        say=say,
    )
    for mode, h in hist.items():
        if h.guard is not None:
            say(f"{mode} {h.guard.line()}")
    return model


def _tune_openb(
    trace: Trace, cfg, tcfg: TrainConfig, say: Callable[[str], None], base: LearnedModel
) -> LearnedModel:
    """The profile tuned on two seeded node subsets; the orderer weights from `base`."""
    from cloudai.agent.sim.runner import load_nodes

    seeds = (cfg.seed, cfg.seed + 1)
    runs = [(trace, load_nodes(dataclasses.replace(cfg, seed=s)), s) for s in seeds]
    profile, hist = tune_profile(
        runs,
        tcfg.iterations,
        tcfg.population,
        tcfg.seed,
        lambda it, s, p: say(f"tune {it}: unallocated {s:.4f} {p.scorers}"),
    )
    meta = {**base.meta, "profile_tuned_on": f"{trace.name}, node subsets {seeds}"}
    meta.update(tune_start_fgd=hist.start, tune_best=hist.best[-1] if hist.best else None)
    return LearnedModel.new(
        base.weights(True),
        base.weights(False),
        profile=profile,
        meta=meta,
        predictors=base.predictors,
        name="tuned",
        features=base.features,
        recent=base.recent,
    )


def _progress(mode: str, it: int, train: float, val: float | None) -> str:
    """One line per CEM iteration; the validation score only when there is one."""
    line = f"{mode} {it}: train log-bsld {train:.4f}"
    return line if val is None else f"{line}, validation {val:.4f}"
