"""Worker identity and dead addresses, with real master and worker processes.

- A task pinned to a worker that heartbeats but cannot be reached at the address it
  advertises (QA: `--ip 127.0.0.3 --bind 127.0.0.1`) used to be dispatched about
  twice a second for ever. Dispatch failures now back off, and the pinned task fails
  `worker_unreachable` after MAX_DISPATCH_FAILURES in a row.
- A second process registering a live worker's id from another address used to take
  the address over silently. It is refused and exits 1 with one line; a restart at
  the same address works at once, one at another address once the old registration
  has timed out, and a superseded process cannot keep the id alive.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from cloudai.master.retry import MAX_DISPATCH_FAILURES
from tests.ports import free_port

from .faultkit import FaultCluster, health, record, state, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def spawn_worker(c: FaultCluster, name: str, wid: str, port: int) -> subprocess.Popen:
    """Another process for worker id `wid` (under its own name, so both are tracked)."""
    args = ["--ip", "127.0.0.1", "--port", str(port), "--heartbeat-interval", "1"]
    return c._spawn(name, ["worker", "--id", wid, "--master", c.address, *args])


def refused_line(c: FaultCluster, name: str, proc: subprocess.Popen) -> str:
    assert proc.wait(30) == 1, c.log(name)
    errors = [x for x in c.log(name).splitlines() if x.startswith("cloudai worker:")]
    assert len(errors) == 1 and "Traceback" not in c.log(name), c.log(name)
    return errors[0]


def address_of(c: FaultCluster, wid: str) -> str:
    return c.workers()[wid].address


def test_pinned_task_on_an_unreachable_worker_fails_after_bounded_backed_off_tries(
    make_cluster,
):
    c = make_cluster()
    c.start(1)  # a healthy worker too: the unpinned task must still run
    dead = c.wid(9)
    c.start_worker(dead, "--ip", "127.0.0.3", "--bind", "127.0.0.1")
    wait_until(lambda: c.active_count() == 2, 60, "both workers")
    pinned = c.submit(["true"], pinned_worker=dead)
    began = time.time()
    t = c.wait_terminal([pinned], 60)[pinned]
    took = time.time() - began
    assert (state(t), t.reason) == ("FAILED", "worker_unreachable"), t
    assert len(t.attempts) == MAX_DISPATCH_FAILURES
    assert all(a.reason == "worker_rejected" for a in t.attempts)
    assert f"{MAX_DISPATCH_FAILURES} times in a row" in t.message
    assert f"last error: worker {dead} unreachable at 127.0.0.3:" in t.message
    placed = [a.placed_at for a in t.attempts]
    gaps = [b - a for a, b in zip(placed, placed[1:], strict=False)]
    assert gaps[-1] > 2 * gaps[0] and gaps[-1] >= 2.0, gaps  # backed off: 0.5 s .. 4 s
    assert c.results(pinned) == [(MAX_DISPATCH_FAILURES, dead)]  # the last error, stored
    time.sleep(2)  # and it stays failed: no more dispatches
    assert len(c.task(pinned).attempts) == MAX_DISPATCH_FAILURES
    assert c.log("master").count("dispatch of 1 task(s) failed") == MAX_DISPATCH_FAILURES
    assert health(c.workers()[dead]) == "ACTIVE"  # it heartbeats: only its address is dead
    record("pinned_unreachable", attempts=len(t.attempts), seconds_to_fail=took, gaps_s=gaps)


def test_unpinned_task_avoids_an_unreachable_worker(make_cluster):
    c = make_cluster()
    dead = c.wid(9)
    c.start_master()
    c.start_worker(dead, "--ip", "127.0.0.3", "--bind", "127.0.0.1")
    wait_until(lambda: c.active_count() == 1, 60, "the unreachable worker")
    free = c.submit(["true"])
    wait_until(lambda: len(c.task(free).attempts) >= 1, 30, "a dispatch to it")
    c.start_worker(c.wid(1))
    t = c.wait_terminal([free], 60)[free]
    assert state(t) == "SUCCEEDED" and t.worker_id == c.wid(1), t
    assert {a.worker_id for a in t.attempts[:-1]} == {dead}


def test_a_live_workers_id_is_not_taken_over_from_another_address(make_cluster):
    c = make_cluster(heartbeat_timeout=4.0)
    c.start(1)
    wid = c.wid(1)
    held = address_of(c, wid)
    impostor = spawn_worker(c, "impostor", wid, free_port())
    line = refused_line(c, "impostor", impostor)
    assert f"worker id {wid} is in use by a live worker at {held}" in line, line
    assert "stop it or pick another --id" in line
    assert address_of(c, wid) == held  # untouched: the real worker's tasks still reach it
    tid = c.submit(["true"], pinned_worker=wid)
    assert state(c.wait_terminal([tid], 60)[tid]) == "SUCCEEDED"


def test_restarts_at_the_same_address_at_once_and_elsewhere_after_the_timeout(make_cluster):
    c = make_cluster(heartbeat_timeout=4.0)
    c.start(1)
    wid = c.wid(1)
    held = address_of(c, wid)
    c.signal(wid, signal.SIGKILL)
    killed = time.time()
    c.start_worker(wid)  # same port: a crashed worker restarted as it was
    wait_until(lambda: c.log(wid).count("registered with master") == 2, 30, "re-registration")
    assert time.time() - killed < 4.0 and address_of(c, wid) == held
    c.signal(wid, signal.SIGKILL)
    elsewhere = free_port()
    early = spawn_worker(c, "early", wid, elsewhere)
    assert "is in use by a live worker" in refused_line(c, "early", early)
    wait_until(lambda: health(c.workers()[wid]) == "INACTIVE", 30, "the timeout")
    spawn_worker(c, "moved", wid, elsewhere)
    wait_until(lambda: address_of(c, wid) == f"127.0.0.1:{elsewhere}", 30, "the new address")
    wait_until(lambda: health(c.workers()[wid]) == "ACTIVE", 30, "the moved worker")


def test_a_superseded_process_cannot_keep_the_id(make_cluster):
    """The old process, paused past the timeout while the id moved elsewhere, comes
    back: its heartbeats name its old address, so the master makes it register again,
    refuses it, and it exits; the id stays with the new process."""
    c = make_cluster(heartbeat_timeout=4.0)
    c.start(1)
    wid = c.wid(1)
    c.signal(wid, signal.SIGSTOP)
    wait_until(lambda: health(c.workers()[wid]) == "INACTIVE", 30, "the timeout")
    new_port = free_port()
    spawn_worker(c, "successor", wid, new_port)
    wait_until(lambda: address_of(c, wid) == f"127.0.0.1:{new_port}", 30, "the successor")
    c.signal(wid, signal.SIGCONT)
    line = refused_line(c, wid, c.procs[wid])
    assert f"is in use by a live worker at 127.0.0.1:{new_port}" in line, line
    assert "registered at 127.0.0.1:" in c.log("master")  # the heartbeat it was told off for
    assert address_of(c, wid) == f"127.0.0.1:{new_port}"
    assert health(c.workers()[wid]) == "ACTIVE"
