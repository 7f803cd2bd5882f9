"""A worker that shut down (SIGTERM: it says it leaves) is told apart from one that
stopped heartbeating (SIGKILL), in `cloudai explain` and across a master restart.

- explain's hint for a task no worker can take said "worker w1 is inactive (no
  heartbeats)" for a worker that had shut down; it now says "worker w1 shut down",
  and a pinned task waiting for it says so too, as does its failure once the worker
  is not back within the heartbeat timeout (explain showed such an ended task as
  still "waiting"). A killed worker keeps the "no heartbeats" wording.
- The leave was in memory only: a restarted master showed the worker as an ACTIVE,
  unregistered one. It is stored now: after a restart `cloudai workers` shows it
  INACTIVE (left Ns ago), nothing is placed on it, and its next registration makes
  it ACTIVE again.

Real master processes and `cloudai` CLI commands; the workers are processes running
the worker's own Membership (tests/master/leaving_worker.py: a real `cloudai worker`
needs a Docker engine). Loopback ports from tests/ports.py."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.faultkit import wait_until
from tests.ports import free_port

from .test_startup_errors import serving_master

pytestmark = pytest.mark.workers  # real worker processes with fixed ids (tests/conftest.py)

TIMEOUT_S = 2.0  # the heartbeat timeout: a killed worker is inactive after it


class Cluster:
    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "m.db"
        self.port = free_port()
        self.workers: dict[str, subprocess.Popen] = {}
        self._stack = contextlib.ExitStack()
        self.master: subprocess.Popen | None = None

    @contextlib.contextmanager
    def serving(self, agent_timeout: float = 0.2) -> Iterator[subprocess.Popen]:
        extra = ("--heartbeat-timeout", str(TIMEOUT_S), "--agent-timeout", str(agent_timeout))
        with serving_master(self.port, self.db, *extra) as proc:
            self.master = proc
            yield proc

    def start_worker(self, wid: str, cpu: float = 4.0) -> subprocess.Popen:
        port = free_port(avoid=(self.port,))
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.master.leaving_worker", wid, str(self.port)]
            + [str(port), str(cpu)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=Path(__file__).parents[2],
        )
        self.workers[wid] = proc
        assert proc.stdout is not None
        for line in proc.stdout:  # blocks until it registered (or exited)
            if line.strip() == "registered":
                return proc
        raise AssertionError(f"worker {wid} exited before it registered: {proc.wait()}")

    def stop_worker(self, wid: str, sig: signal.Signals) -> None:
        proc = self.workers.pop(wid)
        proc.send_signal(sig)
        code = proc.wait(10)
        assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL), proc.stdout.read()
        proc.stdout.close()

    def close(self) -> None:
        for proc in self.workers.values():
            proc.kill()
            proc.wait(10)
            proc.stdout.close()

    def cli(self, *args: str) -> str:
        cmd = [sys.executable, "-m", "cloudai", args[0], "--master", f"127.0.0.1:{self.port}"]
        done = subprocess.run([*cmd, *args[1:]], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def workers_json(self) -> dict[str, dict]:
        return {w["id"]: w for w in json.loads(self.cli("workers", "--json"))}

    def submit(self, *args: str) -> str:
        return json.loads(self.cli("submit", "busybox", "--json", *args, "--", "true"))["id"]


@pytest.fixture
def cluster(tmp_path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.close()


def _hint(c: Cluster, task_id: str, pattern: str) -> str:
    """The explain text of task_id once it matches pattern (decisions come in the
    background: the master's fallback places within --agent-timeout)."""

    def matching() -> str:
        text = c.cli("explain", task_id)
        return text if re.search(pattern, text) else ""

    return wait_until(matching, 10, f"explain {task_id} to match {pattern!r}")


def test_explain_says_a_worker_shut_down_and_a_killed_one_sent_no_heartbeats(cluster):
    c = cluster
    with c.serving():
        c.start_worker("w1", cpu=2)
        c.start_worker("w2", cpu=2)
        # w1 is full with a pinned task; a second one pinned to it waits in the queue.
        c.submit("--worker", "w1", "--cpu", "2")
        waiting = c.submit("--worker", "w1", "--cpu", "2")
        _hint(c, waiting, r"waiting for pinned worker w1: task does not fit")

        c.stop_worker("w1", signal.SIGTERM)
        wait_until(lambda: c.workers_json()["w1"].get("left_at"), 5, "w1's leave")
        # Waiting for it, then (it is not back within the heartbeat timeout) failed:
        # both say it shut down. On a loaded machine the first may already be over.
        text = _hint(c, waiting, r"pinned worker w1(: worker 'w1')? shut down")
        assert "inactive" not in text and "no heartbeat" not in text, text
        text = _hint(c, waiting, r"is FAILED\n")
        assert text.splitlines()[1] == (
            "ended without being placed (worker_lost): pinned worker w1 shut down and did "
            "not come back within the heartbeat timeout; submit the task again, without "
            "--worker or pinned to a live worker"
        ), text

        c.stop_worker("w2", signal.SIGKILL)  # no leave: inactive at the heartbeat timeout
        wait_until(lambda: "INACTIVE" in c.workers_json()["w2"]["health"], 3 * TIMEOUT_S, "w2 lost")
        task = c.submit("--cpu", "1")
        text = _hint(c, task, r"smallest change that would make it placeable: all 2 workers")
        assert re.search(
            r"all 2 workers are inactive \(1 shut down, 1 without "
            r"heartbeats\): restart one or start another",
            text,
        ), text


def test_explain_of_the_only_worker_shut_down_or_killed(cluster):
    c = cluster
    with c.serving():
        c.start_worker("w1")
        c.stop_worker("w1", signal.SIGTERM)
        wait_until(lambda: c.workers_json()["w1"].get("left_at"), 5, "w1's leave")
        task = c.submit()
        text = _hint(c, task, r"placeable: worker w1 shut down: restart it or start")
        assert "no heartbeats" not in text, text

        c.start_worker("w1")  # back, then killed: it says nothing
        wait_until(lambda: "PLACED" in c.cli("task", task), 5, "the task placed on w1")
        c.stop_worker("w1", signal.SIGKILL)
        wait_until(lambda: "INACTIVE" in c.workers_json()["w1"]["health"], 3 * TIMEOUT_S, "w1 lost")
        task = c.submit()
        text = _hint(c, task, r"placeable: worker w1 is inactive \(no heartbeats\): restart it")
        assert "shut down" not in text, text


def test_a_leave_outlives_a_master_restart_and_a_registration_clears_it(cluster):
    c = cluster
    with c.serving():
        c.start_worker("w1")
        c.stop_worker("w1", signal.SIGTERM)
        left_at = wait_until(lambda: c.workers_json()["w1"].get("left_at"), 5, "w1's leave")
    with c.serving():  # the same database
        w1 = c.workers_json()["w1"]
        assert w1["health"] == "WORKER_HEALTH_INACTIVE"
        assert w1.get("left_at") == pytest.approx(left_at, abs=1e-3)  # SQLite's JSON: 15 digits
        assert re.search(r"w1\W+INACTIVE \(left \d+s ago\)", c.cli("workers")), c.cli("workers")
        task = c.submit()
        time.sleep(1.0)  # several fallback rounds (--agent-timeout 0.2)
        assert "PENDING" in c.cli("task", task)  # nothing placed on it

        c.start_worker("w1")  # it restarts and registers
        w1 = c.workers_json()["w1"]
        assert w1["health"] == "WORKER_HEALTH_ACTIVE" and not w1.get("left_at"), w1
        wait_until(lambda: "PLACED" in c.cli("task", task), 5, "the task placed on w1")
        assert "w1" in c.cli("task", task)
