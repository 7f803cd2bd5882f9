"""Simulator speed: replay all 10,000 jobs of Lublin-1 with the learned policy.

    .venv/bin/python benchmarks/sim_speed.py [--trace PATH] [--runs 3]

Prints JSON: seconds per full replay (median of the runs), with and without EASY
backfilling, and jobs per second. The target is under 30 s per replay.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from cloudai.agent.sim.runner import SimConfig, load_trace, run_policy

DEFAULT_TRACE = Path(__file__).resolve().parents[2] / "shared" / "traces" / "lublin_256.swf.gz"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trace", default=str(DEFAULT_TRACE))
    ap.add_argument("--policy", default="learned")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    trace = load_trace(args.trace)
    out = {"trace": trace.name, "jobs": len(trace), "policy": args.policy}
    for backfill in (False, True):
        times = []
        for _ in range(max(1, args.runs)):
            started = time.perf_counter()
            row = run_policy(trace, args.policy, SimConfig(backfill=backfill))
            times.append(time.perf_counter() - started)
        key = "backfill" if backfill else "no_backfill"
        sec = statistics.median(times)
        out[key] = {
            "seconds": round(sec, 3),
            "jobs_per_s": round(len(trace) / sec, 1),
            "bsld": round(row["bsld"], 2),
        }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
