"""The rejections of a task no worker can take count a worker that shut down (SIGTERM:
it said it leaves) as "worker shut down", and one that stopped heartbeating (SIGKILL)
as "worker unhealthy", as the hint already told them apart. Both placers agree: the
master's own fallback and a live `cloudai agent` process (the same policy library, fed
the snapshot's `left_at`). They counted both as "2 worker unhealthy".

Real master, agent and `cloudai` CLI processes; the workers run the worker's own
Membership (tests/master/leaving_worker.py). Loopback ports as in leaving_worker."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.faultkit import wait_until

from .test_worker_left_explain_restart import TIMEOUT_S, Cluster

pytestmark = pytest.mark.workers  # real worker processes with fixed ids (tests/conftest.py)

EXPECTED = {"worker shut down": 1, "worker unhealthy": 1}


@pytest.fixture
def cluster(tmp_path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.close()


def _agent(port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cloudai", "agent", "--master", f"127.0.0.1:{port}"]
    return subprocess.Popen(
        [*cmd, "--id", "agent-left"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).parents[2],
    )


def _latest_decision(c: Cluster, task_id: str, source: str) -> dict:
    """The latest decision on task_id, once one from `source` (agent or master) with
    rejections is stored (they come in the background, each round)."""

    def decided() -> dict:
        got = json.loads(c.cli("explain", task_id, "--json")).get("decisions") or [{}]
        d = got[0]
        return d if d.get("source") == source and d.get("rejections") else {}

    return wait_until(decided, 20, f"a decision by the {source} on {task_id}")


@pytest.mark.parametrize("placer", ["master", "agent"])
def test_rejections_tell_a_worker_that_shut_down_from_a_killed_one(cluster, placer):
    c = cluster
    # With an agent, the master waits for it long enough that no fallback decides.
    with c.serving(agent_timeout=0.2 if placer == "master" else 15.0):
        agent = _agent(c.port) if placer == "agent" else None
        try:
            if agent is not None:
                status = lambda: json.loads(c.cli("status", "--json"))  # noqa: E731
                wait_until(lambda: status().get("agents_connected"), 30, "the agent")
            c.start_worker("w1", cpu=2)
            c.start_worker("w2", cpu=2)
            c.stop_worker("w1", signal.SIGTERM)
            wait_until(lambda: c.workers_json()["w1"].get("left_at"), 5, "w1's leave")
            c.stop_worker("w2", signal.SIGKILL)
            health = lambda: c.workers_json()["w2"]["health"]  # noqa: E731
            wait_until(lambda: "INACTIVE" in health(), 3 * TIMEOUT_S, "w2 lost")

            task = c.submit("--cpu", "1")
            d = _latest_decision(c, task, placer)
            assert d["rejections"] == EXPECTED, d
            assert d.get("fallback", False) is (placer == "master"), d
            text = c.cli("explain", task)
            assert "1 worker shut down" in text and "1 worker unhealthy" in text, text
            assert "2 worker unhealthy" not in text and "2 workers unhealthy" not in text, text
        finally:
            if agent is not None:
                agent.terminate()
                agent.wait(10)
