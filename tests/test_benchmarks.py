"""The master benchmark still runs end to end on a small cluster (its figures are for
docs/benchmarks.md; here only that every committed placement reached the workers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_placement_master_benchmark_delivers_every_committed_placement():
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "placement_master.py"),
            *("--workers", "100", "--tasks", "1000", "--batch", "250"),
            *("--latency-tasks", "10", "--runs", "1", "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    figures = json.loads(out[out.index("{") :])
    assert figures["undelivered"] == 0
    assert figures["placements_per_s"] > 0 and figures["delivered_per_s"] > 0
    assert 0 < figures["assign_calls"] <= 1000  # at most one call per placement
    assert figures["latency_p50_ms"] > 0
