"""Score heuristics and model files on held-out training-style sequences.

`cloudai sim compare` scores policies on the evaluation windows; this scores them on
sequences drawn the way `cloudai sim train` draws its validation data, so that which
model to ship can be decided without looking at the evaluation windows:

    python benchmarks/heldout_check.py --trace ../shared/traces/lublin_256.swf.gz \
        --exclude 10:1024:1 --sampler resample --load 0.9:1.25 --sequences 48 \
        --seed 7919 --policies f1,sjf --models agent/models/lublin.joblib --backfill

It prints one line per policy (mean bsld over the sequences) and, with --json, the
per-sequence figures. The sequences are exactly `training_parts` with the given seed
(`cloudai sim train --seed S --validation N` validates on seed S + 7919).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from cloudai.agent.learn.model import load_model
from cloudai.agent.learn.priority import LinearPriority
from cloudai.agent.learn.train import TrainConfig, training_parts
from cloudai.agent.policy.registry import REGISTRY, Kind
from cloudai.agent.sim.machine import simulate_machine
from cloudai.agent.sim.metrics import metrics
from cloudai.agent.sim.runner import SimConfig, load_trace, machine_size
from cloudai.cli.sim_cmds import _exclude, _load, _slice


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trace", required=True)
    ap.add_argument("--slice", default="", help="e.g. 0:0.7 (plain windows of it)")
    ap.add_argument("--exclude", default="", help="K:L:S as in `cloudai sim train`")
    ap.add_argument("--sampler", default="bootstrap", choices=("bootstrap", "resample"))
    ap.add_argument("--load", default="", help="LO:HI offered-load stretch")
    ap.add_argument("--sequences", type=int, default=24)
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=7919)
    ap.add_argument("--policies", default="f1,sjf")
    ap.add_argument("--models", default="")
    ap.add_argument("--backfill", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    cfg = SimConfig(slice=_slice(a.slice))
    trace = load_trace(a.trace, cfg)
    procs = machine_size(trace, cfg)
    tcfg = TrainConfig(
        windows=a.sequences,
        length=a.length,
        seed=a.seed,
        exclude=_exclude(a.exclude),
        load=_load(a.load),
        sampler=a.sampler,
    )
    parts = training_parts([(trace, procs)], tcfg)
    makers = {p: (lambda p=p: REGISTRY.create(Kind.ORDERER, p)) for p in a.policies.split(",") if p}
    for path in filter(None, a.models.split(",")):
        m = load_model(path)
        makers[path] = lambda m=m: LinearPriority(m.weights(a.backfill), m.features, m.recent)
    out = {}
    for name, make in makers.items():
        bsld = [
            metrics(simulate_machine(p.trace, p.procs, make(), a.backfill))["bsld"] for p in parts
        ]
        out[name] = bsld
        if not a.json:
            print(f"{name:40s} mean bsld {np.mean(bsld):9.2f}", flush=True)
    if a.json:
        print(json.dumps({k: {"mean": float(np.mean(v)), "bsld": v} for k, v in out.items()}))


if __name__ == "__main__":
    from cloudai.errors import ConfigError

    try:
        main()
    except ConfigError as err:
        raise SystemExit(f"heldout_check: {err}") from None
