"""Docker engine trouble (issue 5, "the worker survives the Docker daemon restarting"),
simulated: the worker talks to Docker through a socket proxy (DOCKER_HOST) that the
test cuts and restores, so the outage can last as long as the test wants (past the
worker's grace) without touching the engine other tests use. From the worker's side
that is what a daemon going away looks like: every connection drops, new ones are
refused, then the engine answers again. The containers keep running meanwhile, as
with Docker's live-restore. The real dockerd restart, which stops the containers
(no live-restore), is tests/faults/test_docker_restart.py, run last in the session.
"""

from __future__ import annotations

import time

import pytest

from cloudai.worker.containers import container_name

from .faultkit import health, proxied_worker, record, state, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.slow]
GRACE_S = 5.0


def test_worker_survives_docker_engine_outages(make_cluster, docker_client, tmp_path):
    with proxied_worker(make_cluster, tmp_path / "docker.sock", GRACE_S) as (c, proxy, wid):
        _outages(c, proxy, docker_client, wid)


def _outages(c, proxy, docker_client, wid):
    c.start(1)
    worker = c.procs[wid]
    short = _short_outage_while_a_container_runs(c, proxy, wid)
    long = _outage_past_the_grace(c, proxy, docker_client, wid)
    fresh = c.submit(["sh", "-c", "echo fine"])
    assert state(c.wait_terminal([fresh], 60)[fresh]) == "SUCCEEDED"
    assert worker.poll() is None and "Traceback" not in c.log(wid)
    record(
        "docker_engine_outage",
        simulated_by="socket proxy cut (DOCKER_HOST), real dockerd untouched",
        **short,
        grace_s=GRACE_S,
        **long,
        worker_crashed=False,
    )


def _short_outage_while_a_container_runs(c, proxy, wid) -> dict:
    """1. A short outage while a container runs: it is re-attached, and ends once."""
    worker = c.procs[wid]
    survivor = c.submit(["sh", "-c", "sleep 6; echo survived"])
    wait_until(lambda: state(c.task(survivor)) == "RUNNING", 60, "the task to run")
    proxy.down()
    down_at = time.time()
    time.sleep(1.0)
    during = c.submit(["sh", "-c", "echo after the outage"])
    time.sleep(2.0)
    assert worker.poll() is None and health(c.workers()[wid]) == "ACTIVE"
    proxy.up()
    short_outage = time.time() - down_at
    done = c.wait_terminal([survivor, during], 60)
    s = done[survivor]
    assert state(s) == "SUCCEEDED" and len(s.attempts) == 1
    assert "survived" in c.cli("logs", survivor).stdout
    d = done[during]
    assert state(d) == "SUCCEEDED" and d.retries_used == 0  # engine trouble: its own budget
    engine_errors = [a.reason for a in d.attempts[:-1]]
    assert set(engine_errors) <= {"docker_error"}
    assert "engine is back: supervising" in c.log(wid)
    return {
        "short_outage_s": short_outage,
        "running_task_readopted": True,
        "attempts_of_running_task": len(s.attempts),
        "engine_errors_of_task_submitted_during_outage": len(engine_errors),
    }


def _outage_past_the_grace(c, proxy, docker_client, wid) -> dict:
    """2. An outage past the grace: the attempt is reported failed with a reason, the
    worker carries on, and the container it had to give up is removed later."""
    worker = c.procs[wid]
    stuck = c.submit(["sleep", "60"])
    wait_until(lambda: state(c.task(stuck)) == "RUNNING", 60, "the long task to run")
    proxy.down()
    down_at = time.time()
    reported_after = _wait_first_attempt_failed(c, stuck, down_at)
    time.sleep(max(0.0, down_at + GRACE_S + 2 - time.time()))
    assert worker.poll() is None and health(c.workers()[wid]) == "ACTIVE"
    proxy.up()
    orphan_removed = _wait_given_up_container_removed(docker_client, stuck)
    assert c.cli("cancel", stuck).returncode in (0, 1)  # 1 if its retries already ended
    return {
        "long_outage_reported_failed_after_s": reported_after,
        "given_up_container_removed_after_engine_back_s": orphan_removed,
    }


def _wait_first_attempt_failed(c, task_id: str, down_at: float) -> float:
    """Seconds from the outage's start until the task's first attempt was reported
    failed by the engine's absence, with a message."""

    def first_attempt_failed() -> bool:
        a = c.task(task_id).attempts[0]
        return a.reason == "docker_error"

    wait_until(first_attempt_failed, GRACE_S + 10, "the attempt to be reported failed")
    reported_after = time.time() - down_at
    first = c.task(task_id).attempts[0]
    assert first.reason == "docker_error" and first.message
    return reported_after


def _wait_given_up_container_removed(docker_client, task_id: str) -> float:
    """Call as soon as the engine is back: seconds until the container of the given-up
    attempt 1 is gone."""
    up_at = time.time()
    orphan = container_name(task_id, 1)
    wait_until(
        lambda: not docker_client.api.containers(all=True, filters={"name": orphan}),
        30,
        "the given-up container to be removed",
        every=0.5,
    )
    return time.time() - up_at
