"""Heartbeat load (issue 5, item 7), the short CI version: 1,000 simulated workers
speaking the real protocol to a real master process at about 1,100 heartbeats a
second. The full 60 s run is `python benchmarks/heartbeat_load.py --seconds 60`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from .faultkit import record

pytestmark = [pytest.mark.slow]
BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "heartbeat_load.py"


def _bench():
    spec = importlib.util.spec_from_file_location("heartbeat_load", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_thousand_workers_heartbeat_and_none_is_marked_lost():
    f = _bench().run(workers=1000, seconds=12.0, interval=0.9, timeout=5.0)
    record("heartbeat_load_short", **f)
    assert f["rate_per_s"] >= 1000
    assert f["errors"] == 0 and f["answered_unknown"] == 0
    assert f["max_gap_between_answers_s"] < f["heartbeat_timeout_s"]
    assert f["max_inactive_seen"] == 0 and f["lost_in_master_log"] == 0
    assert f["active_at_end"] == 1000
