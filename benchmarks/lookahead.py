"""The look-ahead planner (agent/learn/lookahead.py) against its base heuristic.

    python benchmarks/lookahead.py --trace ../shared/traces/lublin_256.swf.gz \
        --sequences 10 --length 1024 --seed 1 [--horizon 3600] [--samples 1] [--backfill]

It replays the windows `cloudai sim compare` draws with the same flags, or, with
`--heldout N`, N sequences drawn as `cloudai sim train --exclude K:L:S --sampler
resample --load LO:HI` validates on (`--heldout-seed`, by default 7919: training's
seed 0 plus 7919), which contain no job of the evaluation windows. Imagined
arrivals come from a workload model fitted to the jobs outside those windows (the
evaluation windows of `--exclude-seed`, by default the protocol's seed 1). For
each window it prints the base heuristic's and the planner's bsld; at the end, the
means, their ratio and the seconds. This is a diagnostic of how much a model of the
future is worth, not a policy the live agent can run (see the module docstring).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator

import numpy as np

from cloudai.agent.learn.heldout import eval_mask
from cloudai.agent.learn.lookahead import Planner, PlannerSim
from cloudai.agent.learn.resample import FutureSampler
from cloudai.agent.learn.train import TrainConfig, training_parts
from cloudai.agent.policy.registry import REGISTRY, Kind
from cloudai.agent.sim.machine import simulate_machine
from cloudai.agent.sim.metrics import metrics
from cloudai.agent.sim.runner import SimConfig, load_trace, machine_size, windows
from cloudai.agent.sim.trace import Trace
from cloudai.cli.sim_cmds import _load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trace", required=True)
    ap.add_argument("--sequences", type=int, default=10)
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=1, help="which windows (as compare)")
    ap.add_argument("--exclude-seed", type=int, default=1, help="windows the model avoids")
    ap.add_argument("--base", default="f1", help="heuristic for the shortlist and replays")
    ap.add_argument("--shortlist", type=int, default=3)
    ap.add_argument("--fits", type=int, default=2)
    ap.add_argument("--horizon", type=float, default=3600.0, help="seconds")
    ap.add_argument("--samples", type=int, default=1, help="imagined futures (0: none)")
    ap.add_argument("--heldout", type=int, default=0, help="N held-out sequences instead")
    ap.add_argument("--heldout-seed", type=int, default=7919)
    ap.add_argument("--load", default="0.9:1.25", help="with --heldout: LO:HI offered load")
    ap.add_argument("--backfill", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    cfg = SimConfig()
    trace = load_trace(a.trace, cfg)
    procs = machine_size(trace, cfg)
    mask = eval_mask(len(trace), a.sequences, a.length, a.exclude_seed)
    base = REGISTRY.create(Kind.ORDERER, a.base)
    future = FutureSampler(trace, mask) if a.samples else None
    plan = Planner(base, future, a.shortlist, a.fits, a.horizon, max(a.samples, 1), a.seed)
    rows, started = [], time.perf_counter()
    for label, part in _cases(a, trace, procs):
        heuristic = metrics(simulate_machine(part, procs, base, a.backfill))["bsld"]
        planned = metrics(PlannerSim(part, procs, plan, a.backfill).run())["bsld"]
        rows.append((heuristic, planned))
        if not a.json:
            print(f"{label}: {a.base} {heuristic:9.2f}   planner {planned:9.2f}", flush=True)
    h, p = (float(np.mean(c)) for c in zip(*rows, strict=True))
    out = {a.base: h, "planner": p, "ratio": p / h, "seconds": time.perf_counter() - started}
    text = f"mean: {a.base} {h:.2f}, planner {p:.2f}, ratio {p / h:.3f}"
    print(json.dumps(out) if a.json else text)


def _cases(a: argparse.Namespace, trace: Trace, procs: int) -> Iterator[tuple[str, Trace]]:
    """The evaluation windows, or (--heldout) held-out validation-style sequences."""
    if not a.heldout:
        for start, length in windows(len(trace), a.sequences, a.length, a.seed):
            yield f"window at {start:6d}", trace.window(start, length)
        return
    cfg = TrainConfig(
        windows=a.heldout,
        length=a.length,
        seed=a.heldout_seed,
        exclude=(a.sequences, a.length, a.exclude_seed),
        load=_load(a.load),
        sampler="resample",
    )
    for i, part in enumerate(training_parts([(trace, procs)], cfg)):
        yield f"held-out sequence {i:3d}", part.trace


if __name__ == "__main__":
    from cloudai.errors import ConfigError

    try:
        main()
    except ConfigError as err:
        raise SystemExit(f"lookahead: {err}") from None
