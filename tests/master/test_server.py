"""The master as a service: health, reflection, worker liveness, shutdown paths, config."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from cloudai.cli.demo import free_port
from cloudai.config import MasterSettings
from cloudai.master.store import SQLiteStore
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import common_pb2 as pb
from cloudai.proto import master_worker_pb2 as mw

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


def _console_master(tmp_path) -> tuple[subprocess.Popen, int]:
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
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    from cloudai import rpc
    from cloudai.proto import client_pb2_grpc

    ch = rpc.channel(f"127.0.0.1:{port}")
    client_pb2_grpc.ClusterStub(ch).GetStatus(cpb.StatusRequest(), timeout=30, wait_for_ready=True)
    ch.close()
    return proc, port


def test_console_ctrl_d_shuts_down_cleanly(tmp_path):
    proc, _ = _console_master(tmp_path)
    out, _ = proc.communicate(input="status\n", timeout=20)  # then end of input
    assert proc.returncode == 0
    assert "CloudAI master" in out and "master stopped" in out and "Traceback" not in out


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
