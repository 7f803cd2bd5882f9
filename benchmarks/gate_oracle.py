"""Switching rules from the machine's state: how much a gate could gain, and with what.

A gate is a chooser that, every R hours of simulated time, picks one rule (heuristic
or named rule, as window_oracle.py's experts) from what it knows now and uses it
until the next choice. Here the choice is made the expensive way: each rule is
replayed from the current state (queue, running jobs, free processors) for the next
H hours, and the one whose replay costs least is used (cost: the total bounded
slowdown, at H, of the jobs waiting now and arriving by then, as in lookahead.py).
What the replays know of the future is the question:

- `--future hindsight`: the trace's real arrivals and real run times. No policy can
  know these; this bounds what any gate that switches every R hours could reach.
- `--future arrivals`: the real arrivals, but every job (arrived or not) running its
  requested time: what knowing the arrivals alone is worth.
- `--future sampled --samples N`: N futures drawn from the workload model fitted to
  the jobs outside the evaluation data (resample.py; the same draws for every rule),
  every job running its requested time. This is the choice a gate trained on the
  state could at best learn to imitate, when the workload's jobs are independent of
  one another (as in Lublin-1, which a model of independent jobs generated).
- `--future none`: nothing arrives after now; requested run times.
- `--future recent`: the next H hours repeat the last H hours of this window's own
  arrivals (the jobs the scheduler has seen, shifted forward by H), requested run
  times. One future, no fitted model: "tomorrow looks like today", which a workload
  whose users submit in sessions (KTH-SP2) may follow better than independent draws.

    python benchmarks/gate_oracle.py --trace ../shared/traces/lublin_256.swf.gz \\
        --sequences 10 --length 1024 --seed 1 --gate 24:6 --future sampled --samples 3 \\
        [--backfill] [--json]

The windows are window_oracle.py's (those of `cloudai sim compare`, or `--heldout`).
The workload model is fitted to the jobs of `--fit LO:HI` when it is given; otherwise
to the jobs outside `--slice` (KTH-SP2: `--slice 0.7:1` fits it to the first 70%), or
without a slice, outside the protocol's evaluation windows (`--sequences K --length L`,
seed 1), as lookahead.py. On training-side windows (`--slice 0:0.7 --heldout`) give
`--fit 0:0.7`, or the model would be fitted to the evaluation data.
docs/placement-results.md, Round 11, uses this.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

import numpy as np
from window_oracle import (
    cli,
    experts_on,
    hours_spec,
    maker,
    say,
    show,
    the_parts,
    versus,
    window_args,
)

from cloudai.agent.learn.heldout import eval_mask
from cloudai.agent.learn.lookahead import Planner, PlannerSim
from cloudai.agent.learn.resample import FutureSampler
from cloudai.agent.sim.machine import MachineSim
from cloudai.agent.sim.metrics import metrics
from cloudai.agent.sim.runner import SimConfig, load_trace
from cloudai.agent.sim.trace import Trace
from cloudai.cli.sim_cmds import _slice
from cloudai.errors import ConfigError

FUTURES = ("hindsight", "arrivals", "sampled", "none", "recent")


class GateSim(PlannerSim):
    """The single-machine simulator with a gate choosing the rule every `every` s."""

    def __init__(
        self,
        trace: Trace,
        procs: int,
        rules: dict,
        plan: Planner,
        every: float,
        bf: bool,
        seen: Trace | None = None,
    ):
        """`plan.base` is the first rule used; with `seen` the replays see that trace
        (the real arrivals, and run times as it has them) instead of `plan.future`."""
        super().__init__(trace, procs, plan, bf)
        self.rules, self.every, self.seen = rules, every, seen
        self.name = next(n for n, r in rules.items() if r is plan.base)
        self.next_choice = -np.inf
        self.picks: Counter[str] = Counter()

    def _best(self, jobs: list[int]) -> int:
        if self.t >= self.next_choice:
            self._choose()
            self.next_choice = self.t + self.every
        return MachineSim._best(self, jobs)

    def _choose(self) -> None:
        if len(self.queue) < 2:
            return
        cost = dict.fromkeys(self.rules, 0.0)
        futures = self.futures() if self.seen is None else [(self.seen, self.tasks)]
        for known, tasks in futures:
            for name, rule in self.rules.items():
                cost[name] += self.rollout(known, tasks, None, rule)
        self.decisions += 1
        self.name = min(cost, key=cost.get)
        self.orderer = self.rules[self.name]
        self.picks[self.name] += 1


class RecentFuture:
    """A future that repeats the recent past: draw(t, until) returns the jobs of
    `trace` that arrived in (2t - until, t], shifted forward by until - t."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace

    def draw(self, t: float, until: float, rng: np.random.Generator) -> Trace:
        span = until - t
        sub = self.trace.submit
        idx = np.flatnonzero((sub > t - span) & (sub <= t))
        out = self.trace.take(idx, "recent")
        out.submit = out.submit + span
        return out


def fit_range(text: str) -> tuple[float, float]:
    try:
        return _slice(text)
    except ConfigError:
        raise ConfigError(f"--fit {text!r}: use A:B with 0 <= A < B <= 1, e.g. 0:0.7") from None


def sampler(a) -> FutureSampler:
    """The workload model, fitted to the jobs of `--fit`, by default those outside the
    evaluation data."""
    full = load_trace(a.trace, SimConfig())
    mask = np.zeros(len(full), bool)  # True: not fitted to
    if a.fit or a.slice:
        mask[full.span(*(fit_range(a.fit) if a.fit else _slice(a.slice)))] = True
        mask = ~mask if a.fit else mask
    else:
        mask = eval_mask(len(full), a.sequences, a.length, 1)
    try:
        return FutureSampler(full, mask)
    except ValueError as err:  # nothing outside the evaluation data to fit it to
        raise ConfigError(f"--future sampled: {err}") from None


def gate_run(part, rules: dict, a, hours: float, every: float) -> tuple[float, Counter]:
    """One window under the gate: its bsld, and how often each rule was chosen."""
    first = rules["f1"] if "f1" in rules else next(iter(rules.values()))
    future = {"sampled": a.model, "recent": RecentFuture(part.trace)}.get(a.future)
    samples = a.samples if a.future == "sampled" else 1
    plan = Planner(first, future, horizon=hours * 3600.0, samples=samples)
    seen = part.trace if a.future in ("hindsight", "arrivals") else None
    if a.future == "arrivals":
        seen = seen.take(slice(None))
        seen.run = seen.req_time.copy()
    sim = GateSim(part.trace, part.procs, rules, plan, every * 3600.0, a.backfill, seen)
    return float(metrics(sim.run())["bsld"]), sim.picks


def run(a) -> dict:
    if a.future not in FUTURES:
        raise ConfigError(f"--future {a.future!r}: one of {', '.join(FUTURES)}")
    if a.samples < 1:
        raise ConfigError(f"--samples {a.samples}: at least 1")
    makers = {n: maker(n) for n in a.experts.split(",") if n}
    specs = [hours_spec("--gate", s) for s in a.gate.split(",") if s]
    a.model = sampler(a) if a.future == "sampled" else None
    parts = the_parts(a)
    out = experts_on(parts, makers, a.backfill)
    out["gate"] = {}
    for hours, every in specs:
        say(f"gate {hours:g}:{every:g}, future {a.future}, on {len(parts)} windows ...")
        got, picks = [], Counter()
        for part in parts:
            bsld, chosen = gate_run(part, {n: m() for n, m in makers.items()}, a, hours, every)
            got.append(bsld)
            picks += chosen
        g = {"future": a.future, **versus(out, np.array(got)), "picks": dict(picks.most_common())}
        out["gate"][f"{hours:g}:{every:g}"] = g
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    window_args(ap)
    ap.add_argument("--gate", default="24:6", help="H:R[,H:R...] hours (default: %(default)s)")
    ap.add_argument("--future", default="sampled", help=", ".join(FUTURES))
    ap.add_argument("--samples", type=int, default=3, help="with --future sampled")
    ap.add_argument("--fit", default="", help="LO:HI, the jobs the workload model is fitted to")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    return cli("gate_oracle", a, run, lambda out: show(out, "gate", f"gate {{}} ({a.future})"))


if __name__ == "__main__":
    sys.exit(main())
