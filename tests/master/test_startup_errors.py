"""Start-up errors of `cloudai master` and `cloudai worker` as real processes: one line
on stderr, exit status 1, never a traceback, and never a second process "listening" on
a port that another one holds (gRPC's default SO_REUSEPORT allowed that)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudai import rpc
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import client_pb2_grpc
from tests.ports import free_port


def cloudai(*args: str, stdin=subprocess.DEVNULL, env=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cloudai", *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def run(*args: str, env=None) -> tuple[int, str, str]:
    proc = cloudai(*args, env=env)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


def one_line_exit_1(code: int, err: str, expected: str) -> None:
    assert code == 1, err
    assert err.count("\n") == 1 and expected in err, err
    assert "Traceback" not in err and "RuntimeError" not in err


def master_args(port: int, db: Path, *extra: str) -> list[str]:
    return ["master", "--no-console", "--port", str(port), "--db", f"sqlite:///{db}", *extra]


def wait_serving(port: int, timeout: float = 30) -> None:
    with rpc.channel(f"127.0.0.1:{port}") as ch:
        client_pb2_grpc.ClusterStub(ch).GetStatus(
            cpb.StatusRequest(), timeout=timeout, wait_for_ready=True
        )


@contextlib.contextmanager
def serving_master(
    port: int, db: Path, *extra: str, env=None, preexec_fn=None
) -> Iterator[subprocess.Popen]:
    """A real master process on `port` (output merged into stdout), serving; stopped
    with SIGTERM at the end."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cloudai", *master_args(port, db, *extra)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        preexec_fn=preexec_fn,
    )
    try:
        wait_serving(port)
        yield proc
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


@pytest.fixture
def running_master(tmp_path):
    port = free_port()
    proc = cloudai(*master_args(port, tmp_path / "first.db"))
    try:
        wait_serving(port)
        yield port
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def test_second_master_on_a_port_in_use_fails_with_one_line(tmp_path, running_master):
    port = running_master
    code, out, err = run(*master_args(port, tmp_path / "second.db"))
    one_line_exit_1(code, err, f"cloudai master: cannot listen on 127.0.0.1:{port}: address in use")
    assert "listening" not in out
    assert not (tmp_path / "second.db").exists()  # refused before it opened a store
    wait_serving(port, timeout=5)  # the first one still serves


@pytest.mark.docker  # the first worker must start, and it checks its engine first
def test_worker_on_a_port_in_use_fails_with_one_line(tmp_path, running_master):
    """A second worker on a worker's port, and a worker on the master's port."""
    worker_port = free_port()
    args = ["--ip", "127.0.0.1", "--master", f"127.0.0.1:{running_master}"]
    first = cloudai("worker", "--id", "wa", "--port", str(worker_port), *args)
    try:
        _wait_line(first, "[wa] registered with master")
        for port in (worker_port, running_master):
            code, out, err = run("worker", "--id", "wb", "--port", str(port), *args)
            expected = f"cloudai worker: cannot listen on 127.0.0.1:{port}: address in use"
            one_line_exit_1(code, err, expected)
            assert "serving on" not in out and "registered" not in out
    finally:
        first.terminate()
        first.communicate(timeout=20)


@pytest.mark.parametrize(
    "docker_host, cause",
    [
        ("unix:///nonexistent.sock", "no such file or directory"),
        ("tcp://127.0.0.1:1", "connection refused"),
    ],
)
def test_worker_without_a_docker_engine_fails_with_one_line(running_master, docker_host, cause):
    """It used to register as ACTIVE and fail every task placed on it."""
    env = {**os.environ, "DOCKER_HOST": docker_host}
    args = ["--id", "qd", "--port", str(free_port()), "--master", f"127.0.0.1:{running_master}"]
    code, out, err = run("worker", *args, "--ip", "127.0.0.1", env=env)
    expected = (
        f"cloudai worker: cannot reach the Docker engine at {docker_host}: {cause}; "
        "is dockerd running?"
    )
    one_line_exit_1(code, err, expected)
    assert "serving on" not in out and "registered" not in out
    with rpc.channel(f"127.0.0.1:{running_master}") as ch:
        workers = client_pb2_grpc.ClusterStub(ch).ListWorkers(cpb.ListWorkersRequest(), timeout=5)
    assert list(workers.workers) == []


def test_port_held_by_another_program_is_one_line(tmp_path):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        code, _, err = run(*master_args(port, tmp_path / "m.db"))
    one_line_exit_1(code, err, f"cannot listen on 127.0.0.1:{port}: address in use")


@pytest.mark.parametrize("port", ["99999", "65536", "-1"])
@pytest.mark.parametrize("process", ["master", "worker"])
def test_port_out_of_range_is_refused(tmp_path, process, port):
    extra = ["--master", "127.0.0.1:1", "--ip", "127.0.0.1"] if process == "worker" else []
    db = ["--db", f"sqlite:///{tmp_path / 'm.db'}", "--no-console"] if process == "master" else []
    code, out, err = run(process, "--port", port, *db, *extra)
    one_line_exit_1(code, err, f"invalid --port {port}: use 1-65535")
    assert "listening" not in out and "serving" not in out


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--db", "bogus://x"], "unsupported store URL"),
        (["--host", "0.0.0.0"], "refusing to serve on 0.0.0.0"),
        (["--heartbeat-timeout", "-1"], "invalid heartbeat_timeout"),
        (["--host", "192.0.2.7", "--insecure"], "address not available"),
    ],
)
def test_master_configuration_errors_exit_1(tmp_path, args, expected):
    """Exit status 2 is the clients' "master cannot be reached"; a master that cannot
    start exits 1."""
    proc = cloudai("master", "--no-console", "--port", str(free_port()), *args)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    last = err.strip().splitlines()[-1]
    assert expected in last and "Traceback" not in err


def test_port_zero_picks_a_free_port(tmp_path):
    proc = cloudai(*master_args(0, tmp_path / "m.db"))
    try:
        line = _wait_line(proc, "listening on")
        port = int(line.split("listening on 127.0.0.1:")[1].split()[0])
        assert port > 0
        wait_serving(port, timeout=5)
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def _wait_line(proc: subprocess.Popen, needle: str, timeout: float = 30) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if needle in line:
            return line
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"no line with {needle!r} (exit {proc.poll()})")
