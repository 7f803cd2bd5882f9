"""run_worker as a real process: serves, retries a missing master, exits 0 on SIGTERM,
and exits 1 with one line when the master refuses its id for good or no Docker engine
answers (the worker checks it before it serves)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.worker.fake_master import FakeMaster, free_port

SCRIPT = """
from cloudai.config import WorkerSettings
from cloudai.worker.main import run_worker
settings = WorkerSettings(_env_file=None, id="wmain", ip="127.0.0.1", port=0,
                          master="127.0.0.1:{port}", heartbeat_interval=0.2)
raise SystemExit(run_worker(settings))
"""


@pytest.mark.docker  # it checks the engine at start-up
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_worker_shuts_down_cleanly_on_signal(sig: signal.Signals) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT.format(port=free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "unreachable, retrying in" in line:
                break
        assert any("[wmain] serving on 127.0.0.1:" in x for x in lines), lines
        assert "master at 127.0.0.1:" in lines[-1]
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "[wmain] stopped" in out and "Traceback" not in out


@pytest.mark.docker
def test_run_worker_exits_1_when_its_id_is_held_by_a_live_worker() -> None:
    """The master answers ALREADY_EXISTS: no retry, one line on stderr, exit 1."""
    master = FakeMaster()
    master.id_in_use = (
        "worker id wmain is in use by a live worker at 127.0.0.1:7001 (last heartbeat 1s "
        "ago); stop it or pick another --id"
    )
    port = master.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", SCRIPT.format(port=port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        master.stop()
    assert proc.returncode == 1, proc
    assert proc.stderr == f"cloudai worker: {master.id_in_use}\n"
    assert len(master.registrations) == 1  # not retried
    assert "[wmain] stopped" in proc.stdout


def test_run_worker_exits_1_when_no_docker_engine_answers() -> None:
    """Before it serves or registers: not an ACTIVE worker that fails every task."""
    master = FakeMaster()
    port = master.start()
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent-cloudai.sock"}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", SCRIPT.format(port=port)],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
    finally:
        master.stop()
    assert proc.returncode == 1, proc
    assert proc.stderr == (
        "cloudai worker: cannot reach the Docker engine at unix:///nonexistent-cloudai.sock: "
        "no such file or directory; is dockerd running?\n"
    )
    assert "serving on" not in proc.stdout and master.registrations == []
