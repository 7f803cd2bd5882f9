"""The master as a service: health, reflection, worker liveness, shutdown paths, config."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from cloudai.config import MasterSettings
from cloudai.master.store import SQLiteStore
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import common_pb2 as pb
from cloudai.proto import master_worker_pb2 as mw
from tests.ports import free_port

from .harness import make_harness


@pytest.fixture
def h(tmp_path):
    harness = make_harness(tmp_path, heartbeat_timeout=0.6)
    yield harness
    harness.close()


@pytest.mark.parametrize(
    "service", ["", "cloudai.v1.Cluster", "cloudai.v1.MasterWorker", "cloudai.v1.MasterAgent"]
)
def test_health_check_serves_every_service(h, service):
    stub = health_pb2_grpc.HealthStub(h.channel)
    resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_our_services(h):
    stub = reflection_pb2_grpc.ServerReflectionStub(h.channel)
    req = reflection_pb2.ServerReflectionRequest(list_services="")
    resp = next(iter(stub.ServerReflectionInfo(iter([req]), timeout=5)))
    names = {s.name for s in resp.list_services_response.service}
    assert {"cloudai.v1.Cluster", "cloudai.v1.MasterWorker", "cloudai.v1.MasterAgent"} <= names


def _health(h, wid):
    workers = h.cluster.ListWorkers(cpb.ListWorkersRequest(), timeout=5).workers
    return {w.id: w.health for w in workers}[wid]


def test_silent_worker_goes_inactive_and_comes_back(h):
    h.add_worker("w1")
    assert _health(h, "w1") == pb.WORKER_HEALTH_ACTIVE
    deadline = time.time() + 5
    while _health(h, "w1") != pb.WORKER_HEALTH_INACTIVE and time.time() < deadline:
        time.sleep(0.1)
    assert _health(h, "w1") == pb.WORKER_HEALTH_INACTIVE
    resp = h.mw.SendHeartbeat(
        mw.HeartbeatRequest(worker_id="w1", telemetry=pb.Telemetry(cpu_percent=5))
    )
    assert resp.known
    assert _health(h, "w1") == pb.WORKER_HEALTH_ACTIVE


def test_unknown_worker_heartbeat_asks_it_to_register(h):
    assert not h.mw.SendHeartbeat(mw.HeartbeatRequest(worker_id="ghost"), timeout=5).known


def _console_master(tmp_path, stdin=subprocess.PIPE, **popen) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
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
            f"sqlite:///{tmp_path / 'c.db'}",
        ],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )
    from cloudai import rpc
    from cloudai.proto import client_pb2_grpc

    ch = rpc.channel(f"127.0.0.1:{port}")
    client_pb2_grpc.ClusterStub(ch).GetStatus(cpb.StatusRequest(), timeout=30, wait_for_ready=True)
    ch.close()
    return proc, port


def test_console_ctrl_d_on_a_terminal_shuts_down_cleanly(tmp_path):
    """Ctrl-D typed on a terminal (a real pseudo-terminal here) is `exit`."""
    control, terminal = pty.openpty()
    try:
        proc, _ = _console_master(tmp_path, stdin=terminal)
        os.write(control, b"status\n\x04")  # a command, then Ctrl-D at a line start
        out, _ = proc.communicate(timeout=20)
    finally:
        os.close(control)
        os.close(terminal)
    assert proc.returncode == 0
    assert "CloudAI master" in out and "master stopped" in out and "Traceback" not in out


@pytest.mark.parametrize("stdin", ["pipe", "devnull", "unreadable", "closed"])
def test_console_input_that_is_no_terminal_ends_and_the_master_serves_on(tmp_path, stdin):
    """`cloudai master < /dev/null`, nohup (an unreadable stdin), `<&-`, a pipe that
    closes: the end of such input is no request to stop (it once stopped the master
    at once); the master says so in one line and serves on until SIGTERM."""
    with open(os.devnull, "w") as write_only:
        streams = {
            "pipe": {"stdin": subprocess.PIPE},
            "devnull": {"stdin": subprocess.DEVNULL},
            "unreadable": {"stdin": write_only},
            "closed": {"stdin": subprocess.DEVNULL, "preexec_fn": lambda: os.close(0)},
        }
        proc, port = _console_master(tmp_path, **streams[stdin])
    if stdin == "pipe":
        proc.stdin.write("status\n")
        proc.stdin.close()  # end of input
    time.sleep(1.0)
    assert proc.poll() is None  # still running
    from cloudai import rpc
    from cloudai.proto import client_pb2_grpc

    with rpc.channel(f"127.0.0.1:{port}") as ch:
        client_pb2_grpc.ClusterStub(ch).GetStatus(cpb.StatusRequest(), timeout=5)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)
    out = proc.stdout.read()
    assert proc.returncode == 0 and "master stopped" in out and "Traceback" not in out
    assert out.count("console off") == 1 and "serving headless" in out


def test_console_master_sigterm_shuts_down_cleanly(tmp_path):
    proc, port = _console_master(tmp_path)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "master stopped" in out and "Traceback" not in out
    with pytest.raises(grpc.RpcError):
        from cloudai import rpc
        from cloudai.proto import client_pb2_grpc

        client_pb2_grpc.ClusterStub(rpc.channel(f"127.0.0.1:{port}")).GetStatus(
            cpb.StatusRequest(), timeout=1
        )


def test_settings_read_env_and_seed_mongo_keys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "MONGODB_USERNAME=seed-user\nMONGODB_PASSWORD=s3cret\nCLOUDAI_PORT=6000\n"
    )
    monkeypatch.setenv("CLOUDAI_HEARTBEAT_TIMEOUT", "9")
    s = MasterSettings()
    assert (s.mongodb_username, s.port, s.heartbeat_timeout) == ("seed-user", 6000, 9.0)
    assert s.mongodb_password.get_secret_value() == "s3cret" and "s3cret" not in repr(s)
    assert MasterSettings(port=7000).port == 7000  # a flag wins over env and .env
    monkeypatch.delenv("CLOUDAI_HEARTBEAT_TIMEOUT")


def test_sweeper_trims_telemetry_past_retention(tmp_path):
    store = SQLiteStore(tmp_path / "master.db")
    now = time.time()
    store.add_telemetry_sample("w-1", now - 7200, {"cpu_percent": 1.0})
    store.add_telemetry_sample("w-1", now - 10, {"cpu_percent": 2.0})
    store.close()
    harness = make_harness(tmp_path, heartbeat_timeout=0.6, telemetry_retention_s=3600.0)
    try:
        store = harness.master.store
        deadline = time.time() + 5
        while len(store.telemetry_history("w-1", limit=0)) != 1 and time.time() < deadline:
            time.sleep(0.05)
        assert [s for _, s in store.telemetry_history("w-1", limit=0)] == [{"cpu_percent": 2.0}]
    finally:
        harness.close()


def _blocked_signals(pid: int, tid: int) -> int:
    for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
        if line.startswith("SigBlk:"):
            return int(line.split()[1], 16)
    raise AssertionError("no SigBlk line")


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_only_the_main_thread_takes_sigterm(tmp_path):
    """SIGTERM and SIGINT are blocked in every thread but the master's main one, so the
    kernel delivers them there: one taken by another thread left the main thread in
    its blocking wait or console read, and the master ignored SIGTERM for minutes."""
    proc, port = _console_master(tmp_path)
    try:
        stop = (1 << (signal.SIGTERM - 1)) | (1 << (signal.SIGINT - 1))
        tids = sorted(int(t) for t in os.listdir(f"/proc/{proc.pid}/task"))
        assert len(tids) > 3  # the master's threads and gRPC's
        masks = {tid: _blocked_signals(proc.pid, tid) for tid in tids}
        assert masks[proc.pid] & stop == 0, "the main thread must take the signals"
        takers = [t for t, m in masks.items() if t != proc.pid and m & stop != stop]
        assert takers == [], f"threads that can take SIGTERM/SIGINT: {takers}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 0
