"""The real Docker daemon restarting under a worker WITH live-restore: what live-restore
promises (containers keep running while dockerd is away) and what the worker must do
with it (ride out the outage, then report each attempt once, as it really ended).

dockerd is stopped with SIGTERM and started again as scripts/setup.sh starts it (see
dockerd.py), plus `--live-restore` on its command line; /etc/docker/daemon.json is not
touched. Two restarts happen under one real worker:

1. while a task runs `sleep 12`: its container must keep running through the restart
   (same id, same StartedAt and PID, not restarted), and the task must end SUCCEEDED
   on attempt 1 with its whole log and exit code 0;
2. while two short tasks run, the daemon kept down until both have ended: each must
   be reported once the daemon is back, with its real exit code (0 and 7).

Marked `docker_restart` like test_docker_restart.py, by the same rule: it runs last in
the session, in CI it must be able to restart dockerd, elsewhere it skips. Its fixture
puts the daemon back as it was found (live-restore off) whatever happens.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .dockerd import LIVE_RESTORE, Daemon, HealthWatch, ensure_restartable
from .faultkit import TERMINAL, containers_of, health, record, state, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.docker_restart, pytest.mark.serial]

LONG = "echo started; sleep 12; echo done"
SHORT = "echo started; sleep 5; echo done; exit {code}"
SHORT_CODES = (0, 7)
DOWN_S = 7.0  # how long the daemon stays away in case 2, from the SIGTERM


@pytest.fixture
def live_dockerd(make_cluster, docker_client):
    """The machine's dockerd, restarted with --live-restore; put back as it was found
    (its own flags, live-restore off) at teardown whatever happened. Depends on
    make_cluster so that it is torn down first (the cluster's teardown needs Docker)."""
    ensure_restartable(docker_client)
    daemon = Daemon()
    try:
        daemon.stop()
        daemon.start(extra=[LIVE_RESTORE])
        assert docker_client.info().get("LiveRestoreEnabled") is True
        yield daemon
    finally:
        daemon.restore()
        assert docker_client.info().get("LiveRestoreEnabled") is False
        docker_client.ping()


def restart(daemon: Daemon, hold_down=None) -> tuple[float, float]:
    """SIGTERM dockerd, call hold_down() while it is away, start it again (with
    --live-restore). Returns (seconds the engine was away, time.time() it was back)."""
    began = time.monotonic()
    daemon.stop()
    if hold_down is not None:
        hold_down()
    daemon.start(extra=[LIVE_RESTORE])
    return time.monotonic() - began, time.time()


def test_containers_outlive_real_dockerd_restart_with_live_restore(
    make_cluster, live_dockerd, docker_client, capsys, record_property
):
    c = make_cluster()
    wid = c.wid(1)
    c.start(1)
    with HealthWatch(c, wid) as watch:
        through = _task_runs_through_restart(c, live_dockerd, docker_client, wid)
        while_down = _tasks_end_while_daemon_down(c, live_dockerd, docker_client, wid)
    assert c.procs[wid].poll() is None, "the worker process died"
    assert watch.polls > 20 and watch.seen == [], f"worker not ACTIVE at times: {watch.seen}"
    assert health(c.workers()[wid]) == "ACTIVE"
    log = c.log(wid)
    assert "Traceback" not in log
    assert log.count("engine is back: supervising") == 1 + len(SHORT_CODES), log[-3000:]
    figures = {**through, **while_down, "worker_ever_not_active": len(watch.seen)}
    for key, value in figures.items():
        record_property(key, value)
    with capsys.disabled():
        record("docker_live_restore", **figures)


# -- 1. the container runs on through the restart ---------------------------------------
def _task_runs_through_restart(c, daemon, docker_client, wid) -> dict:
    tid = c.submit(["sh", "-c", LONG])
    before = _running_container(c, docker_client, wid, tid)
    down_s, up_at = restart(daemon)
    after = docker_client.api.inspect_container(before["Id"])
    assert after["State"]["Running"], "live-restore: the container should still run"
    assert after["State"]["StartedAt"] == before["State"]["StartedAt"], "it was restarted"
    assert after["State"]["Pid"] == before["State"]["Pid"] and after["RestartCount"] == 0
    t, reported_at = _wait_reported(c, tid, 60)
    first = t.attempts[0]
    assert state(t) == "SUCCEEDED" and len(t.attempts) == 1, t
    assert first.reason == "completed" and first.exit_code == 0 and first.worker_id == wid
    out = c.cli("logs", tid).stdout
    assert out.count("started") == 1 and out.count("done") == 1, out
    return {
        "running_dockerd_down_s": down_s,
        "running_container_kept": "same id, StartedAt and PID",
        "running_task_final": f"{state(t)} on attempt {len(t.attempts)}, exit {first.exit_code}",
        "running_task_reported_after_engine_back_s": reported_at - up_at,
        "running_task_reported_after_its_end_s": reported_at - first.finished_at,
        "running_attempt_runtime_s": _runtime(t),
    }


# -- 2. the containers end while the daemon is away -------------------------------------
def _tasks_end_while_daemon_down(c, daemon, docker_client, wid) -> dict:
    tids = {code: c.submit(["sh", "-c", SHORT.format(code=code)]) for code in SHORT_CODES}
    pids = {
        code: _running_container(c, docker_client, wid, tid)["State"]["Pid"]
        for code, tid in tids.items()
    }
    ended_down: list[bool] = []
    stopped = time.monotonic()  # just before the SIGTERM

    def hold_down() -> None:
        alive = [code for code, pid in pids.items() if _alive(pid)]
        assert alive == list(SHORT_CODES), f"tasks ended before dockerd was gone: {alive}"
        wait_until(lambda: not any(map(_alive, pids.values())), 15, "the tasks to end")
        ended_down.append(True)
        time.sleep(max(0.0, DOWN_S - (time.monotonic() - stopped)))

    down_s, up_at = restart(daemon, hold_down)
    assert ended_down, "the tasks did not end while dockerd was away"
    reported = {code: _wait_reported(c, tid, 60) for code, tid in tids.items()}
    for code, (t, _) in reported.items():
        _check_real_exit(t, code, wid)
        # Its end is Docker's (while the daemon was away), not when the worker saw it.
        assert t.attempts[0].finished_at < up_at - 1, (t.attempts[0].finished_at, up_at)
    logs = {code: c.cli("logs", tid).stdout for code, tid in tids.items()}
    assert all(out.count("started") == 1 for out in logs.values()), logs
    return {
        "ended_dockerd_down_s": down_s,
        "ended_tasks_final": "; ".join(
            f"{state(t)} {t.attempts[0].reason} exit {t.exit_code}" for t, _ in reported.values()
        ),
        "ended_reported_after_engine_back_s": max(at for _, at in reported.values()) - up_at,
        "ended_attempt_runtime_s": max(_runtime(t) for t, _ in reported.values()),
        "ended_output_while_down_in_log": all("done" in out for out in logs.values()),
    }


def _check_real_exit(t, code: int, wid: str) -> None:
    want = ("SUCCEEDED", "completed") if code == 0 else ("FAILED", "nonzero_exit")
    assert len(t.attempts) == 1 and t.attempts[0].worker_id == wid, t
    assert (state(t), t.attempts[0].reason, t.exit_code) == (*want, code), t


# -- helpers ------------------------------------------------------------------------------
def _running_container(c, docker_client, wid, tid) -> dict:
    """The task's container (inspect), once it runs and has printed `started`."""
    wait_until(lambda: state(c.task(tid)) == "RUNNING", 60, "the task to run")
    found = wait_until(
        lambda: [x for x in containers_of(docker_client, wid) if tid in x["Labels"].values()],
        10,
        "the task's container",
    )
    cid = found[0]["Id"]
    wait_until(lambda: b"started" in docker_client.api.logs(cid), 30, "the task's output")
    return docker_client.api.inspect_container(cid)


def _wait_reported(c, tid: str, timeout: float):
    """(the task, time.time() the master first showed it terminal), polled 20 times a
    second."""
    t = wait_until(
        lambda: (t := c.task(tid)) and state(t) in TERMINAL and t,
        timeout,
        f"task {tid} to be reported",
        every=0.05,
    )
    return t, time.time()


def _runtime(t) -> float:
    return t.attempts[0].finished_at - t.attempts[0].started_at


def _alive(pid: int) -> bool:
    """The container's process still runs (a zombie has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"
