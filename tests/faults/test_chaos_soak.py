"""Chaos soak: benchmarks/chaos_soak.py for 55 s on 2 workers with a 3 s heartbeat
timeout. Its schedule always holds a worker loss (a worker SIGKILLed and left down
until the master marks it INACTIVE, then started again with the same id) among the
first two faults; at this length every other kind runs too (master, agent and worker
crashes, a worker SIGTERM, a drain). The soak runs as a script of its own, as a user
runs it, and the invariants are asserted from its --json figures: every acknowledged
task known and terminal, as its kind allows, none with two successful attempts,
worker_lost really exercised, the returning worker's superseded containers stopped,
no container left behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .faultkit import record

# serial: it runs alone, as it measures timing under load (scripts/run_tests.py).
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.serial]
BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "chaos_soak.py"
ARGS = ["--duration", "55", "--workers", "2", "--seed", "1", "--heartbeat-timeout", "3"]
ARGS += ["--fault-every", "6", "--max-sleep", "10", "--json"]
SHOWN = ("acknowledged", "ended", "missing", "duplicate_successes", "faults")
SHOWN += ("tasks_requeued_worker_lost", "stale_containers_at_return", "leftover_containers")
SHOWN += ("queue_drain_s", "total_s")


def _soak() -> tuple[dict, subprocess.CompletedProcess]:
    done = subprocess.run(
        [sys.executable, str(BENCH), *ARGS], capture_output=True, text=True, timeout=280
    )
    out = done.stdout.strip()
    assert out, f"no figures (exit {done.returncode}); stderr:\n{done.stderr[-4000:]}"
    return json.loads(out.splitlines()[-1]), done


@pytest.mark.timeout(300)
def test_chaos_soak_with_a_worker_loss_drops_no_acknowledged_task(
    docker_client, capsys, record_property
):
    f, done = _soak()
    for key, value in f.items():
        record_property(key, value)
    with capsys.disabled():
        record("chaos_soak", **{k: f[k] for k in SHOWN})
    why = f"{f['failed_invariants']}\nstderr:\n{done.stderr[-4000:]}"
    assert f["faults"].get("worker_loss", 0) >= 1, why
    assert f["acknowledged"] >= 20 and f["queue_drain_s"] is not None, why
    assert f["missing"] == 0, f["missing_examples"]
    assert sum(f["ended"].values()) == f["acknowledged"], why
    assert f["unexpected_end"] == 0, f["unexpected_examples"]
    assert f["duplicate_successes"] == 0, why
    assert f["tasks_requeued_worker_lost"] >= 1, why
    assert f["worker_losses_undetected"] == 0 and f["stale_containers_left"] == 0, why
    assert f["leftover_containers"] == 0, why
    assert f["failed_invariants"] == [] and done.returncode == 0, why
