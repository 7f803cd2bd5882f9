"""Decisions per second of the placement core, in one process, no network.

    python -m cloudai.agent.bench --workers 1000 --tasks 10000        (prints JSON)

The cluster is seeded and heterogeneous (see policy.synthetic): nine machine types
from 4-cpu boxes to 8-GPU servers, 4% of workers lost or draining, 0-50% already
allocated, zone/disk/gpu labels, some images cached, live cpu and memory telemetry.
The tasks come in jobs of identical replicas (1-16, mean about 3.7), with mixed cpu,
memory and GPU requests (8% ask for GPUs, many fractional), some label selectors and a
few workers to avoid; `max_job=1` makes every task its own job.

Everything goes in ONE batch: the tasks are sized so that most of them fit the free
capacity (about 97% place), so no resources are released mid-run. The timed part is
`place_batch` alone: ordering, filtering, scoring, reservations, and the decision
records (candidates with their totals, rejection counts, hints for the unplaced). The
candidates' per-plugin scores are computed for the whole batch when the first one is
read, and their Python objects when read; `records_per_s` times turning every decision
into a DecisionRecord, which includes both, as the agent does before sending.
"""

from __future__ import annotations

import argparse
import json
import time

from .policy.core import place_batch, to_decision_record
from .policy.profiles import resolve_profile
from .policy.synthetic import random_cluster, random_tasks

NOW = 1_000_000.0


def bench_placement(
    workers: int, tasks: int, seed: int = 0, profile: str = "default", max_job: int = 16
) -> dict:
    prof = resolve_profile(profile)
    state = random_cluster(workers, seed)
    queue = random_tasks(tasks, seed, now=NOW, workers=workers, max_job=max_job)
    started = time.perf_counter()
    placements = place_batch(queue, state, prof, now=NOW)
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    for p in placements:
        to_decision_record(p, prof.name, prof.name, decided_at=NOW)
    record_s = time.perf_counter() - started
    return {
        "workers": workers,
        "tasks": tasks,
        "decisions": len(placements),
        "placed": sum(p.placed for p in placements),
        "seconds": round(seconds, 4),
        "decisions_per_s": round(len(placements) / seconds, 1) if seconds else 0.0,
        "profile": prof.name,
        "max_job": max_job,
        "seed": seed,
        "records_per_s": round(len(placements) / record_s, 1) if record_s else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m cloudai.agent.bench", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--workers", type=int, default=1000)
    ap.add_argument("--tasks", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", default="default")
    ap.add_argument("--max-job", type=int, default=16, help="largest job (1: no replicas)")
    ap.add_argument("--runs", type=int, default=1, help="repeat and report the median run")
    args = ap.parse_args(argv)
    runs = [
        bench_placement(args.workers, args.tasks, args.seed, args.profile, args.max_job)
        for _ in range(max(1, args.runs))
    ]
    runs.sort(key=lambda r: r["decisions_per_s"])
    result = dict(runs[len(runs) // 2])
    if len(runs) > 1:
        result["runs"] = [r["decisions_per_s"] for r in runs]
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
