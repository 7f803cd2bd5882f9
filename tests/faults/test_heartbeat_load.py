"""Heartbeat load (issue 5, item 7): 1,000 simulated workers speaking the real protocol
to a real master process heartbeat for the full 60 s at about 1,100 heartbeats a
second combined; no healthy worker may ever be marked lost.

The simulated workers are those of benchmarks/heartbeat_load.py (loaded from there,
not copied), so the suite and `python benchmarks/heartbeat_load.py --seconds 60`
measure the same thing. The figures (p99 latency, master CPU, rate) are printed even
without -s, kept as the test's JUnit properties, and appended to
$CLOUDAI_FAULTS_REPORT when it is set.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from .faultkit import record

pytestmark = [pytest.mark.slow]
BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "heartbeat_load.py"
WORKERS, SECONDS, INTERVAL_S, TIMEOUT_S = 1000, 60.0, 0.9, 5.0


def _bench():
    spec = importlib.util.spec_from_file_location("heartbeat_load", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(SECONDS + 180)
def test_thousand_workers_heartbeat_60s_and_none_is_marked_lost(capsys, record_property):
    f = _bench().run(workers=WORKERS, seconds=SECONDS, interval=INTERVAL_S, timeout=TIMEOUT_S)
    for key, value in f.items():
        record_property(key, value)
    with capsys.disabled():
        record("heartbeat_load_60s", **f)
    assert f["rate_per_s"] >= 1000
    assert f["errors"] == 0 and f["answered_unknown"] == 0
    assert f["max_gap_between_answers_s"] < f["heartbeat_timeout_s"]
    assert f["max_inactive_seen"] == 0 and f["lost_in_master_log"] == 0
    assert f["active_at_end"] == WORKERS
