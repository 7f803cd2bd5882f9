"""The simulator's metrics, under the names the JSON output and the docs use.

    bsld                  mean bounded slowdown, max((wait + run) / max(run, 10), 1)
    mean_jct, p95_jct     job completion time, submit to end (seconds)
    mean_wait             submit to start (seconds)
    makespan              first submit to last end (seconds)
    utilization           busy processor-seconds / (capacity * makespan); for a
                          saturation run, the allocated share of GPUs at the end
    unplaced              jobs that never started (too big, or refused at saturation)
    unallocated_gpu_frac  GPUs left unallocated when the cluster could no longer place
                          the arriving workload (FGD's measure); null without GPUs

Only jobs that ran count in the time metrics. Several sequences (windows) are
combined by averaging each metric over sequences, except `unplaced`, which is summed;
with equal-length windows the mean bsld equals the bsld of all their jobs together.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .machine import Outcome

METRICS = (
    "bsld",
    "mean_jct",
    "p95_jct",
    "mean_wait",
    "makespan",
    "utilization",
    "unplaced",
    "unallocated_gpu_frac",
)
BSLD_FLOOR_S = 10.0


def bounded_slowdown(wait: np.ndarray, run: np.ndarray) -> np.ndarray:
    return np.maximum((wait + run) / np.maximum(run, BSLD_FLOOR_S), 1.0)


def metrics(o: Outcome) -> dict[str, float | int | None]:
    tr, ok = o.trace, o.placed
    wait = o.start[ok] - tr.submit[ok]
    run = tr.run[ok]
    jct = wait + run
    if ok.any():
        makespan = float(o.end[ok].max() - tr.submit.min())
        busy = float(np.sum(tr.procs[ok] * run))
        util = busy / (o.capacity * makespan) if makespan > 0 else 0.0
    else:
        makespan, util = 0.0, 0.0
    return {
        "bsld": _mean(bounded_slowdown(wait, run)),
        "mean_jct": _mean(jct),
        "p95_jct": float(np.percentile(jct, 95)) if jct.size else None,
        "mean_wait": _mean(wait),
        "makespan": makespan,
        "utilization": o.utilization if o.utilization is not None else util,
        "unplaced": int(np.count_nonzero(~ok)),
        "unallocated_gpu_frac": o.unallocated_gpu_frac,
    }


def combine(runs: Sequence[dict[str, float | int | None]]) -> dict[str, float | int | None]:
    """Metrics of several sequences: means, except `unplaced` (a sum)."""
    out: dict[str, float | int | None] = {}
    for key in METRICS:
        values = [r[key] for r in runs if r[key] is not None]
        if key == "unplaced":
            out[key] = int(sum(values))
        else:
            out[key] = float(np.mean(values)) if values else None
    return out


def _mean(a: np.ndarray) -> float | None:
    """None when no job ran: 0 would read as a perfect result (bsld is at least 1)."""
    return float(a.mean()) if a.size else None
