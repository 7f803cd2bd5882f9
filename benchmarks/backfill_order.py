"""Does the order of EASY's backfilling candidates matter apart from the head's?

The simulator ranks the queue once per decision with one orderer: its first job gets
the reservation and the rest are backfilled in that same order. Here the head is
chosen by one orderer and the backfilling candidates are ranked by another, on the
validation sequences `cloudai sim train` uses and on evaluation windows of several
seeds (docs/placement-results.md, "Round 5"):

    python benchmarks/backfill_order.py --trace ../shared/traces/KTH-SP2-1996-2.1-cln.swf.gz \
        --train-slice 0:0.7 --eval-slice 0.7:1 --heads f1,sjf,agent/models/default.joblib \
        --backfills f1,sjf,area --validation 24 --eval-seeds 1,2,3

It prints one JSON line per (head, backfill) pair: the mean bsld on the validation
sequences ("val") and on each seed's ten evaluation windows ("seed1", ...).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from cloudai.agent.learn.model import load_model
from cloudai.agent.learn.priority import LinearPriority
from cloudai.agent.learn.train import TrainConfig, training_parts
from cloudai.agent.policy.registry import REGISTRY, Kind
from cloudai.agent.sim.machine import MachineSim
from cloudai.agent.sim.metrics import metrics
from cloudai.agent.sim.runner import SimConfig, load_trace, machine_size, windows
from cloudai.cli.sim_cmds import _exclude, _load, _slice


class _Keys:
    """An orderer from a key function of the job columns (smallest first)."""

    def __init__(self, key) -> None:
        self.keys = key


EXTRA = {
    "area": _Keys(lambda c: c.runtime * c.procs),  # smallest area first
    "narrow": _Keys(lambda c: c.procs),
    "wide": _Keys(lambda c: -c.procs),
    "ljf": _Keys(lambda c: -c.runtime),
}


def orderer(name: str):
    """A registered orderer, one of EXTRA, or a model file's backfilling weights."""
    if name in EXTRA:
        return EXTRA[name]
    if name.endswith(".joblib"):
        m = load_model(name)
        return LinearPriority(m.weights(True), m.features, m.recent)
    return REGISTRY.create(Kind.ORDERER, name)


class SplitSim(MachineSim):
    """EASY backfilling with the candidates ranked by `backfill_orderer`."""

    def __init__(self, trace, procs: int, head, backfill_orderer) -> None:
        super().__init__(trace, procs, head, backfill=True)
        self.head, self.backfill_orderer = head, backfill_orderer

    def _backfill_around(self, j: int) -> None:
        self.orderer = self.backfill_orderer
        try:
            super()._backfill_around(j)
        finally:
            self.orderer = self.head


def mean_bsld(parts, head: str, backfill: str) -> float:
    runs = [SplitSim(t, p, orderer(head), orderer(backfill)).run() for t, p in parts]
    return round(float(np.mean([metrics(o)["bsld"] for o in runs])), 2)


def _parts(a: argparse.Namespace) -> dict[str, list]:
    train_cfg = SimConfig(slice=_slice(a.train_slice))
    eval_cfg = SimConfig(slice=_slice(a.eval_slice))
    train, whole = load_trace(a.trace, train_cfg), load_trace(a.trace, eval_cfg)
    procs = machine_size(whole, eval_cfg)
    tcfg = TrainConfig(
        windows=a.validation,
        length=a.length,
        seed=a.seed + 7919,
        exclude=_exclude(a.exclude),
        load=_load(a.load),
        sampler=a.sampler,
    )
    sets = {"val": [(p.trace, p.procs) for p in training_parts([(train, procs)], tcfg)]}
    for s in (int(x) for x in a.eval_seeds.split(",") if x):
        sets[f"seed{s}"] = [
            (whole.window(w0, n), procs) for w0, n in windows(len(whole), a.windows, a.length, s)
        ]
    return sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trace", required=True)
    ap.add_argument("--train-slice", default="", help="where validation comes from, e.g. 0:0.7")
    ap.add_argument("--eval-slice", default="", help="where evaluation windows come from")
    ap.add_argument("--exclude", default="", help="K:L:S as in `cloudai sim train`")
    ap.add_argument("--sampler", default="bootstrap", choices=("bootstrap", "resample"))
    ap.add_argument("--load", default="", help="LO:HI offered-load stretch")
    ap.add_argument("--validation", type=int, default=24, help="validation sequences")
    ap.add_argument("--seed", type=int, default=0, help="as `sim train --seed` (+7919)")
    ap.add_argument("--windows", type=int, default=10)
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--eval-seeds", default="1")
    ap.add_argument("--heads", default="f1,sjf")
    ap.add_argument("--backfills", default="f1,sjf,area")
    a = ap.parse_args()
    sets = _parts(a)
    for head in a.heads.split(","):
        for bf in a.backfills.split(","):
            row = {k: mean_bsld(parts, head, bf) for k, parts in sets.items()}
            print(json.dumps({"head": head, "backfill": bf, **row}), flush=True)


if __name__ == "__main__":
    from cloudai.errors import ConfigError

    try:
        main()
    except ConfigError as err:
        raise SystemExit(f"backfill_order: {err}") from None
