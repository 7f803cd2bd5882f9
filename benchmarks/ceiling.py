"""The learned orderer's ceiling: a search fitted to the evaluation windows themselves.

Not a policy. The weights are searched and chosen on the very windows they are
scored on, so the figure bounds what the linear family (priority.LinearPriority over
`--features`) could reach on those windows, and says nothing about generalising.
If even this stays above a target, no model of the family trained elsewhere will
reach it there. docs/placement-results.md ran it as a throwaway script in Rounds 3
and 8; Round 14 adds `--clock`, six interactions of the time of day (the UTC time
of day of the decision, as a phase on the unit circle) with the job's run time,
size and whether it fits now: can an orderer use the daily cycle of the arrivals?
Round 15 adds `--hidden H`: a small neural scorer added to the linear keys,
v . tanh(W x + b) over `--mlp-features` x (by default the inputs of RLScheduler's
kernel network: run time, size, wait, whether it fits, and when it could start). Is
the linear family what stops the search?

    python benchmarks/ceiling.py --trace ../shared/traces/lublin_256.swf.gz \\
        --sequences 10 --length 1024 --seed 1 [--clock] [--hidden 8] [--backfill] \\
        [--iterations 10] [--population 14]

The search is a cross-entropy search like `cloudai sim train`'s (population 14, the
4 best kept, spread 0.3 at first), on the mean bsld over the windows, starting at the
best of the named rules (and F1 itself when `f1_age` is searched). The best weights
so far are re-scored in every population, so the figure never gets worse. The extra
terms start where they change no key: the clock weights and the scorer's output
weights v at zero (W starts at fixed random values, b at zero).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys

import numpy as np
from window_oracle import HEURISTICS, bsld_of, cli, maker, say, the_parts

from cloudai.agent.learn.priority import FEATURES, LinearPriority, job_features
from cloudai.agent.learn.train import F1_EXACT, RULES, Part, project
from cloudai.agent.policy.job_ordering import JobColumns
from cloudai.errors import ConfigError

# Round 8's searched features (F1 is in the family through f1_term and f1_age).
BASE = "log_runtime,log_wait,fits,log_area,wait_ratio,f1_term,log_delay,fills_gap,log_idle,f1_age"
# RLScheduler's kernel network reads a job's wait, requested time and processors, the
# free processors and whether it can start now; log_delay stands for the last two.
MLP_IN = "log_runtime,log_procs,log_wait,fits,log_delay"
CLOCK = ("runtime_sin", "runtime_cos", "procs_sin", "procs_cos", "fits_sin", "fits_cos")
DAY = 86_400.0


def clock_features(c: JobColumns) -> np.ndarray:
    """(jobs, 6): log-scaled run time, log-scaled size and `fits`, each times the sine
    and the cosine of the time of day now (now = submit + wait, the same for every
    queued job in the simulator)."""
    now = float(np.max(c.submit + c.wait))
    phase = 2.0 * math.pi * (now % DAY) / DAY
    s, co = math.sin(phase), math.cos(phase)
    cap = c.capacity if math.isfinite(c.capacity) and c.capacity > 1 else 1024.0
    lr = np.log10(np.maximum(c.runtime, 1.0)) / 5.0
    lp = np.log2(np.maximum(c.procs, 1.0)) / math.log2(cap)
    fits = c.fits.astype(np.float64)
    return np.stack([lr * s, lr * co, lp * s, lp * co, fits * s, fits * co], axis=1)


class Mlp:
    """v . tanh(W x + b) over job_features(`features`): `hidden` units, and the flat
    parameter vector [W (hidden x inputs, row by row), b, v]."""

    def __init__(self, params: np.ndarray, features: tuple[str, ...], hidden: int) -> None:
        k = len(features)
        self.features = features
        self.w = params[: hidden * k].reshape(hidden, k)
        self.b = params[hidden * k : hidden * (k + 1)]
        self.v = params[hidden * (k + 1) :]

    @staticmethod
    def size(inputs: int, hidden: int) -> int:
        return hidden * (inputs + 2)

    @staticmethod
    def start(inputs: int, hidden: int) -> np.ndarray:
        """W at fixed random values (seed 0, scaled by 1/sqrt(inputs)), b and v zero."""
        w = np.random.default_rng(0).standard_normal(hidden * inputs) / math.sqrt(inputs)
        return np.concatenate([w, np.zeros(2 * hidden)])

    def __call__(self, c: JobColumns) -> np.ndarray:
        x = job_features(c, self.features)
        return np.tanh(x @ self.w.T + self.b) @ self.v


@dataclasses.dataclass(frozen=True)
class Family:
    """The searched family: linear weights on `features`, then the clock weights
    (if `clock`), then the scorer's parameters (if `hidden`)."""

    features: tuple[str, ...]
    clock: bool = False
    hidden: int = 0
    mlp_in: tuple[str, ...] = ()

    def names(self) -> list[str]:
        h = self.hidden
        mlp = [f"w{i}_{f}" for i in range(h) for f in self.mlp_in]
        mlp += [f"b{i}" for i in range(h)] + [f"v{i}" for i in range(h)]
        return [*self.features, *(CLOCK if self.clock else ()), *mlp]

    def pad(self) -> np.ndarray:
        """The extra terms' starting values, after the linear weights."""
        clock = np.zeros(len(CLOCK) if self.clock else 0)
        mlp = Mlp.start(len(self.mlp_in), self.hidden) if self.hidden else np.zeros(0)
        return np.concatenate([clock, mlp])


class ExtendedPriority:
    """LinearPriority over the family's features, minus the clock terms and the scorer."""

    def __init__(self, weights: np.ndarray, family: Family) -> None:
        k = len(family.features)
        self.base = LinearPriority(weights[:k], family.features)
        rest = weights[k:]
        self.clock = rest[: len(CLOCK)] if family.clock else np.zeros(0)
        rest = rest[len(self.clock) :]
        self.mlp = Mlp(rest, family.mlp_in, family.hidden) if family.hidden else None

    def keys(self, c: JobColumns) -> np.ndarray:
        keys = self.base.keys(c)
        if not len(c.runtime):
            return keys
        if len(self.clock):
            keys = keys - clock_features(c) @ self.clock
        if self.mlp is not None:
            keys = keys - self.mlp(c)
        return keys


def starts(family: Family) -> dict[str, np.ndarray]:
    """The named rules (and F1 exactly, when f1_age is searched) as weight vectors."""
    named = dict(RULES)
    if "f1_age" in family.features:
        named["f1"] = F1_EXACT
    pad = family.pad()
    return {n: np.concatenate([project(w, family.features), pad]) for n, w in named.items()}


def mean_bsld(parts: list[Part], make, backfill: bool) -> float:
    """The mean over the windows of each window's mean bsld, a fresh `make()` each."""
    return float(bsld_of(parts, lambda _: make(), backfill).mean())


def search(parts: list[Part], a, family: Family) -> dict:
    def cost(w: np.ndarray) -> float:
        return mean_bsld(parts, lambda: ExtendedPriority(w, family), a.backfill)

    named = starts(family)
    first = {n: cost(w) for n, w in named.items()}
    say("starts: " + ", ".join(f"{n} {v:.2f}" for n, v in first.items()))
    name = min(first, key=first.get)
    best_w, best = named[name], first[name]
    mean, std = best_w.copy(), np.full(len(best_w), 0.3)
    rng = np.random.default_rng(a.seed + 1 if a.search_seed is None else a.search_seed)
    curve = []
    for it in range(a.iterations):
        pop = mean + std * rng.standard_normal((a.population, len(mean)))
        pop[0] = best_w  # elitism: the best so far is always re-scored
        scores = np.array([cost(w) for w in pop])
        elite = pop[np.argsort(scores)[:4]]
        mean, std = elite.mean(axis=0), elite.std(axis=0) + 0.02
        if scores.min() < best:
            best, best_w = float(scores.min()), pop[int(scores.argmin())].copy()
        curve.append(best)
        say(f"iteration {it + 1}/{a.iterations}: best {best:.2f}")
    weights = dict(zip(family.names(), best_w.round(4).tolist(), strict=True))
    return {"starts": first, "start": name, "best": best, "curve": curve, "weights": weights}


def feature_list(flag: str, text: str) -> tuple[str, ...]:
    features = tuple(f for f in text.split(",") if f)
    unknown = [f for f in features if f not in FEATURES]
    if unknown or not features:
        raise ConfigError(f"{flag}: unknown or none: {unknown} (known: {', '.join(FEATURES)})")
    return features


def run(a) -> dict:
    features = feature_list("--features", a.features)
    mlp_in = feature_list("--mlp-features", a.mlp_features)
    if a.iterations < 0 or a.population < 5 or a.hidden < 0:
        raise ConfigError("--iterations and --hidden must be >= 0 and --population >= 5")
    family = Family(features, a.clock, a.hidden, mlp_in if a.hidden else ())
    parts = the_parts(a)
    heur = {h: mean_bsld(parts, maker(h), a.backfill) for h in HEURISTICS}
    best_h = min(heur, key=heur.get)
    out = {"heuristics": heur, "best_heuristic": best_h, **search(parts, a, family)}
    out["ratio"] = out["best"] / heur[best_h]
    return out


def show(out: dict) -> None:
    b = out["best_heuristic"]
    print(f"best heuristic: {b} {out['heuristics'][b]:.2f}")
    print(f"search start: {out['start']} {out['starts'][out['start']]:.2f}")
    print(f"ceiling (fitted to these windows): {out['best']:.2f} ({out['ratio']:.3f} x {b})")
    print("weights: " + ", ".join(f"{k} {v:+.3f}" for k, v in out["weights"].items() if v))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trace", required=True)
    ap.add_argument("--slice", default="", help="e.g. 0.7:1 (the part evaluated)")
    ap.add_argument("--sequences", type=int, default=10)
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=1, help="the windows' seed")
    ap.add_argument("--search-seed", type=int, help="the search's (default: --seed + 1)")
    ap.add_argument("--backfill", action="store_true")
    ap.add_argument("--features", default=BASE, help="default: %(default)s")
    ap.add_argument("--clock", action="store_true", help="also search the time-of-day terms")
    ap.add_argument("--hidden", type=int, default=0, help="units of the neural scorer (0: none)")
    ap.add_argument("--mlp-features", default=MLP_IN, help="its inputs; default: %(default)s")
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--population", type=int, default=14)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    a.heldout = False
    return cli("ceiling", a, run, show)


if __name__ == "__main__":
    sys.exit(main())
