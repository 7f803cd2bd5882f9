"""How much choosing among fixed rules could gain, and how much an online chooser gets.

Every expert (heuristic or named rule) is run on the same windows. Two figures follow:

- **The hindsight bound**: the mean bsld if, for each window, the expert that did best
  on that very window had been used. No policy can know this; it bounds what any way
  of switching between these experts once per window could reach.
- **Follow the leader** (`--ftl H:R`): an online chooser that sees only the past.
  Every R hours of simulated time it replays the jobs that arrived in the last H hours
  (each running its *requested* time, from an empty machine) under every expert, and
  uses the one with the lowest bsld until the next choice. It starts with F1 (or the
  first expert) and keeps its expert when fewer than 30 jobs arrived in H hours.

    python benchmarks/window_oracle.py --trace ../shared/traces/lublin_256.swf.gz \\
        --sequences 10 --length 1024 --seed 1 [--backfill] [--ftl 72:6] [--json]

Without `--heldout` the windows are those of `cloudai sim compare --sequences K
--length L --seed S` on `--slice`; with it, sequences drawn as `cloudai sim train`
draws its training data (plain windows of `--slice`, seeded), for a choice made
without the evaluation windows. The experts' figures equal `sim compare`'s (the same
simulator, windows and orderers); docs/placement-results.md, Round 10, uses this.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import numpy as np

from cloudai.agent.learn.guard import paired_t
from cloudai.agent.learn.priority import LinearPriority
from cloudai.agent.learn.train import RULES, Part, TrainConfig, draw_parts
from cloudai.agent.policy.registry import REGISTRY, Kind
from cloudai.agent.sim.machine import simulate_machine
from cloudai.agent.sim.metrics import metrics
from cloudai.agent.sim.runner import SimConfig, load_trace, machine_size, windows
from cloudai.cli.sim_cmds import _slice
from cloudai.errors import ConfigError

HEURISTICS = ("wfp3", "unicep", "sjf", "f1")
EXPERTS = tuple(dict.fromkeys((*HEURISTICS, *RULES)))  # sjf is both: list it once
MIN_JOBS = 30  # fewer arrivals in the replayed past: keep the current expert


def maker(name: str):
    """A fresh orderer for `name`: a registered heuristic or one of train.RULES."""
    if name in RULES:
        return lambda: LinearPriority(RULES[name])
    REGISTRY.create(Kind.ORDERER, name)  # a ConfigError now for an unknown name
    return lambda: REGISTRY.create(Kind.ORDERER, name)


class FollowTheLeader:
    """An orderer that switches to the expert with the best replay of the recent past."""

    def __init__(self, part: Part, experts: dict, first: str, hours: float, every: float, bf):
        self.part, self.experts, self.backfill = part, experts, bf
        self.span, self.every = hours * 3600.0, every * 3600.0
        self.name, self.current = first, experts[first]()
        self.next_choice = -np.inf

    def keys(self, c):
        now = float(np.max(c.submit + c.wait))  # wait = now - submit for every queued job
        if now >= self.next_choice:
            self._choose(now)
            self.next_choice = now + self.every
        return self.current.keys(c)

    def _choose(self, now: float) -> None:
        tr = self.part.trace
        lo = int(np.searchsorted(tr.submit, now - self.span))
        hi = int(np.searchsorted(tr.submit, now, "right"))
        if hi - lo < MIN_JOBS:
            return
        past = tr.take(slice(lo, hi))
        past = dataclasses.replace(past, run=np.maximum(past.req_time, 1.0).astype(past.run.dtype))
        score = {
            name: metrics(simulate_machine(past, self.part.procs, make(), self.backfill))["bsld"]
            for name, make in self.experts.items()
        }
        best = min(score, key=score.get)
        if best != self.name:
            self.name, self.current = best, self.experts[best]()


def bsld_of(parts: list[Part], order_for, backfill: bool) -> np.ndarray:
    """Each window's mean bsld; `order_for(part)` gives the orderer for that window."""
    return np.array(
        [metrics(simulate_machine(p.trace, p.procs, order_for(p), backfill))["bsld"] for p in parts]
    )


def the_parts(a) -> list[Part]:
    cfg = SimConfig(slice=_slice(a.slice), sequences=a.sequences, length=a.length, seed=a.seed)
    trace = load_trace(a.trace, cfg)
    procs = machine_size(trace, cfg)
    if a.heldout:
        tcfg = TrainConfig(windows=a.sequences, length=a.length, seed=a.seed)
        return draw_parts([(trace, procs)], tcfg)
    spans = windows(len(trace), a.sequences, a.length, a.seed)
    return [Part(trace.window(s, n), procs) for s, n in spans]


def say(line: str) -> None:
    """Progress, on stderr (stdout is the result)."""
    print(line, file=sys.stderr, flush=True)


def hours_spec(flag: str, text: str) -> tuple[float, float]:
    """H:R, two positive numbers of hours (--ftl here, --gate in gate_oracle.py)."""
    try:
        hours, every = (float(x) for x in text.split(":"))
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: give H:R in hours, e.g. 72:6") from None
    if not (hours > 0 and every > 0):
        raise ConfigError(f"{flag} {text!r}: both hours must be positive")
    return hours, every


def summary(per: dict[str, np.ndarray]) -> dict:
    """The experts' figures, the best heuristic and rule, and the hindsight bound."""
    names = list(per)
    heur = [n for n in names if n in HEURISTICS] or names
    best = min(heur, key=lambda n: per[n].mean())
    table = np.array([per[n] for n in names])
    return {
        "windows": table.shape[1],
        "experts": {n: {"mean": float(v.mean()), "bsld": v.tolist()} for n, v in per.items()},
        "best_heuristic": best,
        "best_expert": min(names, key=lambda n: per[n].mean()),
        "hindsight": {
            "mean": float(table.min(0).mean()),
            "ratio": float(table.min(0).mean() / per[best].mean()),
            "picks": [names[i] for i in table.argmin(0)],
        },
    }


def experts_on(parts: list[Part], makers: dict, backfill: bool) -> dict:
    """Every expert's per-window bsld on `parts`, and summary()'s figures of them."""
    per = {}
    for n, make in makers.items():
        per[n] = bsld_of(parts, lambda _, make=make: make(), backfill)
        say(f"{n}: {per[n].mean():.2f}")
    return summary(per)


def versus(out: dict, got: np.ndarray) -> dict:
    """A chooser's per-window bsld against the best heuristic's and the best expert's."""
    per = {n: np.array(e["bsld"]) for n, e in out["experts"].items()}
    best, leader = per[out["best_heuristic"]], per[out["best_expert"]]
    gain, t = paired_t(got, leader)
    return {
        "mean": float(got.mean()),
        "ratio": float(got.mean() / best.mean()),
        "gain_vs_best_expert": gain,
        "t": t,
        "bsld": got.tolist(),
    }


def run(a) -> dict:
    names = [n for n in a.experts.split(",") if n]
    experts = {n: maker(n) for n in names}
    specs = [hours_spec("--ftl", s) for s in a.ftl.split(",") if s]
    parts = the_parts(a)
    out = experts_on(parts, experts, a.backfill)
    out["ftl"] = {}
    first = "f1" if "f1" in names else names[0]
    for hours, every in specs:
        say(f"follow the leader {hours:g}:{every:g} on {len(parts)} windows ...")
        how = (experts, first, hours, every, a.backfill)
        got = bsld_of(parts, lambda p, how=how: FollowTheLeader(p, *how), a.backfill)
        out["ftl"][f"{hours:g}:{every:g}"] = versus(out, got)
    return out


def show(out: dict, key: str = "ftl", label: str = "follow the leader {}") -> None:
    """The experts, the bound, and each chooser run under out[key]."""
    for n, e in out["experts"].items():
        print(f"{n:24s} {e['mean']:9.2f}")
    b = out["best_heuristic"]
    print(f"best heuristic: {b} {out['experts'][b]['mean']:.2f}")
    h = out["hindsight"]
    print(f"hindsight best expert per window: {h['mean']:.2f} ({h['ratio']:.3f} x {b})")
    for spec, f in out[key].items():
        print(
            f"{label.format(spec)}: {f['mean']:.2f} ({f['ratio']:.3f} x {b}); "
            f"vs {out['best_expert']}: d {f['gain_vs_best_expert']:+.3f}, t {f['t']:+.2f}"
        )


def window_args(ap: argparse.ArgumentParser) -> None:
    """The windows and experts (shared with gate_oracle.py)."""
    ap.add_argument("--trace", required=True)
    ap.add_argument("--slice", default="", help="e.g. 0.7:1 (the part evaluated)")
    ap.add_argument("--sequences", type=int, default=10)
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--heldout", action="store_true", help="windows drawn as sim train draws")
    ap.add_argument("--backfill", action="store_true")
    ap.add_argument("--experts", default=",".join(EXPERTS), help="default: %(default)s")


def cli(prog: str, a: argparse.Namespace, run_it, show_it) -> int:
    """Run; print JSON or the table; a ConfigError is one line on stderr, exit 2."""
    try:
        out = run_it(a)
    except ConfigError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(out))
    else:
        show_it(out)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    window_args(ap)
    ap.add_argument("--ftl", default="", help="H:R[,H:R...] hours: follow-the-leader runs")
    ap.add_argument("--json", action="store_true")
    return cli("window_oracle", ap.parse_args(), run, show)


if __name__ == "__main__":
    sys.exit(main())
