"""A worker that shuts down gracefully (SIGTERM) tells the master it leaves: the
master stops placing tasks on it at once, not at the heartbeat timeout, keeps its
running tasks for a restarted worker to re-adopt, and takes a restart at once.
Real master and worker processes on loopback, real Docker."""

from __future__ import annotations

import json
import re
import signal
import time

import pytest

from tests.ports import free_port

from .faultkit import health, record, state, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.slow]
TIMEOUT_S = 30.0  # the heartbeat timeout: far longer than any wait below


def _sigterm(c, worker_id: str) -> float:
    """SIGTERM the worker; seconds until it exited (with status 0)."""
    began = time.time()
    c.signal(worker_id, signal.SIGTERM)
    assert c.procs[worker_id].wait(10) == 0
    return time.time() - began


def _left(c, worker_id: str) -> bool:
    return health(c.workers()[worker_id]) == "INACTIVE"


def test_a_worker_stopped_with_sigterm_gets_no_new_task_at_once(make_cluster):
    c = make_cluster(heartbeat_timeout=TIMEOUT_S)
    c.start(2)
    victim, other = c.wid(1), c.wid(2)
    began = time.time()
    exited = _sigterm(c, victim)
    wait_until(lambda: _left(c, victim), 2, f"{victim} to be left out of placement")
    left_out = time.time() - began

    ids = [c.submit(["sh", "-c", "echo hi"]) for _ in range(4)]
    done = c.wait_terminal(ids, 60)
    # Each ran at its first attempt on the other worker: no dispatch to the one gone.
    assert {tid: state(t) for tid, t in done.items()} == dict.fromkeys(ids, "SUCCEEDED")
    assert {t.attempts[0].worker_id for t in done.values()} == {other}
    assert all(len(t.attempts) == 1 for t in done.values())
    workers = {w["id"]: w for w in json.loads(c.cli("workers", "--json").stdout)}
    assert workers[victim]["health"] == "WORKER_HEALTH_INACTIVE"
    assert not workers[victim].get("unreachable_error")  # it left, it was not lost
    assert workers[victim]["left_at"] >= began
    assert re.search(rf"{victim}\b.*INACTIVE \(left \d+s ago\)", c.cli("workers").stdout)
    assert "left (shut down)" in c.log("master")
    record("worker_leave", exited_s=exited, left_out_s=left_out, timeout_s=TIMEOUT_S)


def test_a_worker_restarted_after_sigterm_is_active_and_readopts_its_task(make_cluster):
    c = make_cluster(heartbeat_timeout=TIMEOUT_S)
    c.start(1)
    wid = c.wid(1)
    task_id = c.submit(["sh", "-c", "sleep 8; echo done"])
    wait_until(lambda: state(c.task(task_id)) == "RUNNING", 30, "the task to run")
    _sigterm(c, wid)
    wait_until(lambda: _left(c, wid), 2, f"{wid} to be left out of placement")
    assert state(c.task(task_id)) == "RUNNING"  # not lost: its container runs on

    c.worker_ports[wid] = free_port()  # a restart at another port: the id is free
    began = time.time()
    c.start_worker(wid)
    wait_until(lambda: health(c.workers()[wid]) == "ACTIVE", 15, f"{wid} back")
    back = time.time() - began
    assert not c.workers()[wid].left_at  # registered again: no longer gone
    task = c.wait_terminal([task_id], 60)[task_id]
    assert state(task) == "SUCCEEDED" and [a.worker_id for a in task.attempts] == [wid]
    assert "re-adopting its container" in c.log(wid)
    record("worker_leave_restart", active_again_s=back)


@pytest.mark.parametrize("fault", [signal.SIGSTOP, signal.SIGKILL], ids=["paused", "killed"])
def test_a_worker_stops_promptly_while_the_master_is_down(make_cluster, fault):
    c = make_cluster(heartbeat_timeout=TIMEOUT_S)
    c.start(1)
    c.signal("master", fault)
    time.sleep(1.5)  # heartbeats (every second) now hang or fail
    exited = _sigterm(c, c.wid(1))
    assert exited < 3.0, f"the worker took {exited:.1f}s to stop"
    assert "leaving without telling the master" in c.log(c.wid(1))
    record(f"worker_leave_master_{signal.Signals(fault).name}", exited_s=exited)
