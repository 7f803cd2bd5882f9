"""Issue 2 end to end: a master, workers and Docker, driven through the CLI and console."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid

import psutil
import pytest

from .conftest import (
    SAMPLE_IMAGE,
    SUCCESS_LINE,
    cli,
    cli_json,
    state,
    wait_task,
    wait_until,
    workers_by_id,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]
# Typed into the console: wrong usages first, then the task, then two listings.
CONSOLE_LINES = (
    "task",
    "task nope " + SAMPLE_IMAGE,
    "task worker-1 'Bad Image!'",
    "bogus",
    f"task worker-1 {SAMPLE_IMAGE}",
    "workers",
    "status",
)


def start(cluster_factory, n_workers=2, **kw):
    c = cluster_factory(**kw)
    c.start_master()
    for i in range(1, n_workers + 1):
        c.start_worker(f"worker-{i}")
    wait_until(lambda: c.active_workers() >= n_workers, 60, "workers to register")
    return c


def submit(address: str, *args: str) -> str:
    out = cli_json(address, "submit", *args)
    return out["id"]  # type: ignore[index]


def test_workers_register_with_real_capacity(cluster_factory):
    c = start(cluster_factory)
    workers = workers_by_id(c.address)
    assert set(workers) == {"worker-1", "worker-2"}
    for w in workers.values():
        assert w["health"] == "WORKER_HEALTH_ACTIVE"
        assert w["capacity"]["cpu"] == psutil.cpu_count()
        assert w["capacity"]["memory_bytes"] == psutil.virtual_memory().total
        assert w["telemetry"]["memory_total_bytes"] > 0


def test_console_task_runs_sample_and_stores_success(tmp_path, docker_client):
    """The seed's manual flow: `task worker-1 <image>` typed into the master> console."""
    from cloudai.cli.demo import LocalCluster

    c = LocalCluster(tmp_path)
    master = _start_console_master(c.port, f"sqlite:///{tmp_path / 'console.db'}")
    c.procs["console-master"] = master
    try:
        c.start_worker("worker-1")
        wait_until(lambda: c.active_workers() >= 1, 60, "worker-1")
        _type_into(master, *CONSOLE_LINES)
        task_id = _wait_console_task_succeeded(c.address)
        _type_into(master, f"logs {task_id}", "exit")
        out, _ = master.communicate(timeout=20)
        assert master.returncode == 0
        _check_console_output(out)
    finally:
        if master.poll() is None:
            master.kill()
        c.stop()


def _start_console_master(port: int, db: str) -> subprocess.Popen:
    """`cloudai master` with its interactive console on a pipe (line-buffered text)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cloudai",
            "master",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--db",
            db,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )


def _type_into(master: subprocess.Popen, *lines: str) -> None:
    for line in lines:
        master.stdin.write(line + "\n")
        master.stdin.flush()


def _wait_console_task_succeeded(address: str) -> str:
    """The id of the task the console submitted, once it succeeded; its logs hold the
    sample's success line."""
    tasks = wait_until(
        lambda: [t for t in cli_json(address, "tasks") if state(t) == "SUCCEEDED"],
        90,
        "the console task to succeed",
    )
    task_id = tasks[0]["id"]
    logs = cli(address, "logs", task_id)
    assert SUCCESS_LINE in logs.stdout
    return task_id


def _check_console_output(out: str) -> None:
    assert "usage: task <worker_id> <docker_image>" in out
    assert "unknown worker 'nope'" in out
    assert "invalid image reference 'Bad Image!'" in out
    assert "unknown command 'bogus'" in out
    assert f"submitted to worker-1 ({SAMPLE_IMAGE})" in out
    assert "Workers (1)" in out and "╭" in out
    assert out.count(SUCCESS_LINE) >= 1  # `logs` in the console printed the task's output
    assert "Traceback" not in out


def test_nonzero_exit_is_failed_with_code_and_logs(cluster_factory):
    c = start(cluster_factory, 1)
    tid = submit(
        c.address,
        "cloudai/base:bookworm",
        "--worker",
        "worker-1",
        "--",
        "sh",
        "-c",
        "echo about to fail; exit 3",
    )
    t = wait_task(c.address, tid)
    assert (state(t), t["exit_code"], t["reason"]) == ("FAILED", 3, "nonzero_exit")
    assert "about to fail" in cli(c.address, "logs", tid).stdout
    as_json = cli_json(c.address, "logs", tid)
    assert as_json["task_id"] == tid and "about to fail" in as_json["logs"]


def test_missing_image_fails_naming_it_and_worker_stays_healthy(cluster_factory):
    c = start(cluster_factory, 1)
    image = f"cloudai-test/does-not-exist-{uuid.uuid4().hex[:6]}:never"
    t = wait_task(c.address, submit(c.address, image, "--worker", "worker-1"))
    assert state(t) == "FAILED"
    assert t["reason"] in ("image_not_found", "pull_failed")
    assert image in t["message"]
    assert workers_by_id(c.address)["worker-1"]["health"] == "WORKER_HEALTH_ACTIVE"
    ok = wait_task(c.address, submit(c.address, SAMPLE_IMAGE, "--worker", "worker-1"))
    assert state(ok) == "SUCCEEDED"


def test_memory_hog_is_oomkilled(cluster_factory):
    c = start(cluster_factory, 1)
    hog = "x = bytearray(256 * 1024 * 1024); print(len(x))"
    tid = submit(
        c.address,
        "cloudai/base:bookworm",
        "--worker",
        "worker-1",
        "--memory",
        "32m",
        "--",
        "python3",
        "-c",
        hog,
    )
    t = wait_task(c.address, tid)
    assert (state(t), t["reason"], t["exit_code"]) == ("FAILED", "oom_killed", 137)


def test_worker_pulls_from_local_registry(cluster_factory, docker_client, registry):
    ref = f"{registry}/cloudai/sample-task:e2e-{uuid.uuid4().hex[:8]}"
    docker_client.images.get(SAMPLE_IMAGE).tag(ref)
    for line in docker_client.images.push(ref, stream=True, decode=True):
        assert "error" not in line, line
    docker_client.images.remove(ref)
    with pytest.raises(Exception):  # noqa: B017 - docker.errors.ImageNotFound
        docker_client.images.get(ref)
    c = start(cluster_factory, 1)
    t = wait_task(c.address, submit(c.address, ref, "--worker", "worker-1"), timeout=120)
    assert state(t) == "SUCCEEDED"
    docker_client.images.get(ref)  # the worker really pulled it
    docker_client.images.remove(ref)


def test_killed_worker_becomes_inactive(cluster_factory):
    c = start(cluster_factory, 2, heartbeat_timeout=3.0)
    c.procs["worker-2"].send_signal(signal.SIGKILL)
    killed_at = time.time()
    wait_until(
        lambda: workers_by_id(c.address)["worker-2"]["health"] == "WORKER_HEALTH_INACTIVE",
        20,
        "worker-2 to be marked inactive",
    )
    assert time.time() - killed_at >= 2.5  # not before the timeout
    assert workers_by_id(c.address)["worker-1"]["health"] == "WORKER_HEALTH_ACTIVE"


def test_master_sigkill_and_restart_keeps_state(cluster_factory):
    c = start(cluster_factory, 2)
    tid = submit(c.address, SAMPLE_IMAGE, "--worker", "worker-1")
    assert state(wait_task(c.address, tid)) == "SUCCEEDED"
    c.procs["master"].send_signal(signal.SIGKILL)
    c.procs["master"].wait()
    log_before = (c.root / "master.log").stat().st_size
    c.start_master()

    def reregistered():
        after = (c.root / "master.log").read_text()[log_before:]
        return all(f"worker worker-{i} registered" in after for i in (1, 2))

    wait_until(reregistered, 60, "workers to re-register by themselves")
    assert c.active_workers() == 2
    t = cli_json(c.address, "task", tid)
    assert state(t) == "SUCCEEDED"
    assert SUCCESS_LINE in cli(c.address, "logs", tid).stdout
