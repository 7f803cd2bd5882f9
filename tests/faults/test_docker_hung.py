"""A Docker engine that hangs: it accepts connections and answers nothing (a wedged
dockerd, one stopped with SIGSTOP). Simulated as in test_docker_faults.py: the worker
talks to Docker through a socket proxy (DOCKER_HOST), which the test freezes, so the
real engine, which other tests use, is untouched and the containers keep running.

Before the worker pinged its engine (worker/watch.py), a hang left a running task
RUNNING for as long as it lasted (`container.wait()` has no timeout), its `--timeout`
could not fire, and every new task placed there waited out the client's 60 s timeout
and failed. The master side (heartbeats' engine_trouble) is
tests/master/test_engine_trouble.py.
"""

from __future__ import annotations

import time

import pytest

from cloudai.worker.containers import container_name
from cloudai.worker.watch import PROBE_EVERY_S, PROBE_TIMEOUT_S, SILENT_S

from .faultkit import health, proxied_worker, record, state, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.slow]
GRACE_S = 8.0


def test_a_hung_engine_is_given_up_and_its_worker_left_out(make_cluster, docker_client, tmp_path):
    with proxied_worker(make_cluster, tmp_path / "docker.sock", GRACE_S) as (c, proxy, wid):
        c.start(1)
        figures = _hang(c, proxy, docker_client, wid)
    record("docker_engine_hung", simulated_by="socket proxy frozen (DOCKER_HOST)", **figures)


def _hang(c, proxy, docker_client, wid) -> dict:
    # Its --timeout passes while the engine hangs: the kill cannot get through.
    stuck = c.submit(["sleep", "60"], timeout=3)
    wait_until(lambda: state(c.task(stuck)) == "RUNNING", 60, "the task to run")
    proxy.freeze()
    frozen_at = time.time()
    given_up = _first_attempt(c, stuck, "docker_error", GRACE_S + PROBE_EVERY_S + 20)
    given_up_after = time.time() - frozen_at
    assert "has not answered" in given_up.message and "gave it up" in given_up.message
    assert given_up_after >= GRACE_S  # not before the grace

    # Once silent for SILENT_S, the worker says so in its heartbeats: the master places
    # nothing on it (the worker would refuse it too), and the task waits, nothing spent.
    time.sleep(max(0.0, frozen_at + SILENT_S + PROBE_TIMEOUT_S - time.time()))
    fresh = c.submit(["sh", "-c", "echo after the hang"])
    why = wait_until(lambda: _left_out(c, fresh), 15, "explain to say why it waits")
    assert "has not answered" in why and not c.task(fresh).attempts
    trouble = c.workers()[wid].engine_trouble
    assert trouble.startswith("the Docker engine at unix://") and "has not answered" in trouble
    assert c.procs[wid].poll() is None and health(c.workers()[wid]) == "ACTIVE"
    assert "the Docker engine has not answered for" in c.log(wid)
    hung_s = time.time() - frozen_at

    proxy.thaw()
    thawed_at = time.time()
    wait_until(lambda: "answers again" in c.log(wid), 2 * PROBE_EVERY_S + 5, "the engine back")
    done = c.wait_terminal([fresh, stuck], 90)
    f = done[fresh]
    assert state(f) == "SUCCEEDED" and len(f.attempts) == 1, f
    assert not c.workers()[wid].engine_trouble
    assert "after the hang" in c.cli("logs", fresh).stdout
    s = done[stuck]
    assert state(s) == "TIMED_OUT" and s.attempts[-1].reason == "timeout", s
    removed_after = _gone(docker_client, container_name(stuck, 1), thawed_at)
    assert c.procs[wid].poll() is None and "Traceback" not in c.log(wid)
    return {
        "grace_s": GRACE_S,
        "running_attempt_given_up_after_s": given_up_after,
        "task_submitted_during_hang_started_after_thaw_s": f.attempts[0].started_at - thawed_at,
        "engine_hung_for_s": hung_s,
        "given_up_container_removed_after_thaw_s": removed_after,
    }


def _first_attempt(c, task_id: str, reason: str, timeout: float):
    """The task's first attempt, once it has ended with `reason`."""

    def ended():
        attempts = c.task(task_id).attempts
        return attempts and attempts[0].reason == reason and attempts[0]

    return wait_until(ended, timeout, f"the first attempt to end with {reason}", every=0.2)


def _left_out(c, task_id: str) -> str:
    """The line of `cloudai explain` that says why the task is not placed on the
    worker, once there is one."""
    text = c.cli("explain", task_id).stdout
    return next((line for line in text.splitlines() if "cannot run containers" in line), "")


def _gone(docker_client, name: str, since: float) -> float:
    wait_until(
        lambda: not docker_client.api.containers(all=True, filters={"name": name}),
        40,
        f"container {name} to be removed",
        every=0.5,
    )
    return time.time() - since
