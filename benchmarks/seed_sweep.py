"""The learned policy against the best heuristic on many window seeds, not just one.

The issue's protocol scores ten windows of 1,024 jobs drawn with seed 1, and one
draw moves a policy's ratio to the best heuristic by more than the target's 10%
(docs/placement-results.md, "How noisy the protocol is"). This runs the same
comparison as `cloudai sim compare --sequences K --length L --seed S` for each seed
and prints, per seed, the best of the heuristics, the learned policy and their ratio,
then the median ratio and how many seeds meet a target ratio:

    python benchmarks/seed_sweep.py --trace ../shared/traces/KTH-SP2-1996-2.1-cln.swf.gz \
        --slice 0.7:1 --seeds 1-20 --model agent/models/kth.joblib --backfill

Caution for Lublin-1: the Lublin model was trained on jobs outside the seed-1 windows,
and other seeds' windows overlap those jobs, so only seed 1 is held out for it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys

from cloudai.agent.learn.model import load_model
from cloudai.agent.sim.runner import SimConfig, load_trace, run_policy
from cloudai.cli.sim_cmds import _slice

HEURISTICS = ("fcfs", "wfp3", "unicep", "sjf", "f1")


def seeds(spec: str) -> list[int]:
    """'1-20' or '1,2,5' -> the seeds."""
    if "-" in spec:
        lo, hi = (int(x) for x in spec.split("-"))
        return list(range(lo, hi + 1))
    return [int(x) for x in spec.split(",")]


def sweep(trace, cfg: SimConfig, model, seed_list: list[int], progress=None) -> list[dict]:
    rows = []
    for s in seed_list:
        c = dataclasses.replace(cfg, seed=s)
        bsld = {p: run_policy(trace, p, c)["bsld"] for p in HEURISTICS}
        best = min(bsld, key=bsld.get)
        learned = run_policy(trace, "learned", c, model)["bsld"]
        rows.append(
            {
                "seed": s,
                "best": best,
                "best_bsld": bsld[best],
                "learned": learned,
                "ratio": learned / bsld[best],
            }  # fmt: skip
        )
        if progress:
            progress(f"seed {s}: {best} {bsld[best]:.2f}, learned {learned:.2f}")
    return rows


def summary(rows: list[dict], target: float) -> dict:
    ratios = [r["ratio"] for r in rows]
    return {
        "seeds": len(rows),
        "median_ratio": statistics.median(ratios),
        "min_ratio": min(ratios),
        "max_ratio": max(ratios),
        "seeds_meeting_target": sum(x <= target for x in ratios),
        "target": target,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trace", required=True)
    ap.add_argument("--slice", default="", help="e.g. 0.7:1 (the part evaluated)")
    ap.add_argument("--model", default="", help="model file (default: the shipped default)")
    ap.add_argument("--seeds", default="1-10", help="'1-20' or '1,2,5' (default: %(default)s)")
    ap.add_argument("--sequences", type=int, default=10)
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--backfill", action="store_true")
    ap.add_argument("--target", type=float, default=0.9, help="ratio to meet (default: 0.9)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    cfg = SimConfig(
        backfill=a.backfill, sequences=a.sequences, length=a.length,
        slice=_slice(a.slice),
    )  # fmt: skip
    trace = load_trace(a.trace, cfg)
    model = load_model(a.model) if a.model else None
    rows = sweep(trace, cfg, model, seeds(a.seeds), lambda s: print(s, file=sys.stderr))
    out = {"rows": rows, **summary(rows, a.target)}
    if a.json:
        print(json.dumps(out, indent=2))
        return 0
    for r in rows:
        print(f"seed {r['seed']:>3}  {r['best']:>6} {r['best_bsld']:9.2f}  "
              f"learned {r['learned']:9.2f}  ratio {r['ratio']:.3f}")  # fmt: skip
    print(
        f"median ratio {out['median_ratio']:.3f} (range {out['min_ratio']:.3f}-"
        f"{out['max_ratio']:.3f}); {out['seeds_meeting_target']} of {out['seeds']} seeds "
        f"at or below {a.target}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
