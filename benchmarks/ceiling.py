"""The learned orderer's ceiling: a search fitted to the evaluation windows themselves.

Not a policy. The weights are searched and chosen on the very windows they are
scored on, so the figure bounds what the linear family (priority.LinearPriority over
`--features`) could reach on those windows, and says nothing about generalising.
If even this stays above a target, no model of the family trained elsewhere will
reach it there. docs/placement-results.md ran it as a throwaway script in Rounds 3
and 8; Round 14 adds `--clock`, six interactions of the time of day (the UTC time
of day of the decision, as a phase on the unit circle) with the job's run time,
size and whether it fits now: can an orderer use the daily cycle of the arrivals?

    python benchmarks/ceiling.py --trace ../shared/traces/lublin_256.swf.gz \\
        --sequences 10 --length 1024 --seed 1 [--clock] [--backfill] [--iterations 10]

The search is a cross-entropy search like `cloudai sim train`'s (population 14, the
4 best kept, spread 0.3 at first), on the mean bsld over the windows, starting at the
best of the named rules (and F1 itself when `f1_age` is searched). The best weights
so far are re-scored in every population, so the figure never gets worse.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np
from window_oracle import HEURISTICS, bsld_of, cli, maker, say, the_parts

from cloudai.agent.learn.priority import FEATURES, LinearPriority
from cloudai.agent.learn.train import F1_EXACT, RULES, Part, project
from cloudai.agent.policy.job_ordering import JobColumns
from cloudai.errors import ConfigError

# Round 8's searched features (F1 is in the family through f1_term and f1_age).
BASE = "log_runtime,log_wait,fits,log_area,wait_ratio,f1_term,log_delay,fills_gap,log_idle,f1_age"
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


class ClockPriority:
    """LinearPriority over `features`, plus `clock` weights on clock_features."""

    def __init__(self, weights: np.ndarray, features: tuple[str, ...], clock: bool) -> None:
        k = len(features)
        self.base = LinearPriority(weights[:k], features)
        self.clock = weights[k:] if clock else np.zeros(0)

    def keys(self, c: JobColumns) -> np.ndarray:
        keys = self.base.keys(c)
        if not len(self.clock) or not len(c.runtime):
            return keys
        return keys - clock_features(c) @ self.clock


def starts(features: tuple[str, ...], clock: bool) -> dict[str, np.ndarray]:
    """The named rules (and F1 exactly, when f1_age is searched) as weight vectors."""
    named = dict(RULES)
    if "f1_age" in features:
        named["f1"] = F1_EXACT
    pad = np.zeros(len(CLOCK) if clock else 0)
    return {n: np.concatenate([project(w, features), pad]) for n, w in named.items()}


def mean_bsld(parts: list[Part], make, backfill: bool) -> float:
    """The mean over the windows of each window's mean bsld, a fresh `make()` each."""
    return float(bsld_of(parts, lambda _: make(), backfill).mean())


def search(parts: list[Part], a, features: tuple[str, ...]) -> dict:
    def cost(w: np.ndarray) -> float:
        return mean_bsld(parts, lambda: ClockPriority(w, features, a.clock), a.backfill)

    named = starts(features, a.clock)
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
    names = [*features, *(CLOCK if a.clock else ())]
    return {"starts": first, "start": name, "best": best, "curve": curve,
            "weights": dict(zip(names, best_w.round(4).tolist(), strict=True))}  # fmt: skip


def run(a) -> dict:
    features = tuple(f for f in a.features.split(",") if f)
    unknown = [f for f in features if f not in FEATURES]
    if unknown or not features:
        raise ConfigError(f"--features: unknown or none: {unknown} (known: {', '.join(FEATURES)})")
    if a.iterations < 0 or a.population < 5:
        raise ConfigError("--iterations must be >= 0 and --population >= 5")
    parts = the_parts(a)
    heur = {h: mean_bsld(parts, maker(h), a.backfill) for h in HEURISTICS}
    best_h = min(heur, key=heur.get)
    out = {"heuristics": heur, "best_heuristic": best_h, **search(parts, a, features)}
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
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--population", type=int, default=14)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    a.heldout = False
    return cli("ceiling", a, run, show)


if __name__ == "__main__":
    sys.exit(main())
