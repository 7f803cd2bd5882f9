"""A master whose store fails keeps its workers, and changes nothing it says failed.

A heartbeat that would also store a telemetry sample (every CLOUDAI_TELEMETRY_SAMPLE_S)
is still answered when that write fails. It used to fail the whole heartbeat, so the
worker went back to registering (which needs the store too) and was lost at the
heartbeat timeout, its tasks requeued as if it had died.

A drain (or its undo) that could not be stored is not in effect either. It used to be
in effect in memory while the client was told it failed, and the scheduler was not
woken: tasks the undo made placeable waited for the next queue change.

A real master process whose writes fail (RLIMIT_FSIZE set with prlimit, lifted
later), and the worker's own Membership over real loopback gRPC."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from cloudai import rpc
from cloudai.config import WorkerSettings
from cloudai.model import Resources
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import client_pb2_grpc
from cloudai.proto import common_pb2 as pb
from cloudai.proto import master_worker_pb2 as mw
from cloudai.proto import master_worker_pb2_grpc as mw_grpc
from cloudai.worker.membership import MemberHooks, Membership
from tests.ports import free_port

from .harness import FakeWorkerServicer, serve_worker
from .test_startup_errors import serving_master

TIMEOUT_S = 2.0
UNLIMITED = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)


@pytest.fixture
def master(tmp_path) -> Iterator[tuple[subprocess.Popen, int]]:
    port = free_port()
    env = dict(os.environ, CLOUDAI_TELEMETRY_SAMPLE_S="0.3")
    extra = ("--heartbeat-timeout", str(TIMEOUT_S), "--agent-timeout", "0.2")
    with serving_master(port, tmp_path / "m.db", *extra, env=env) as proc:
        yield proc, port


def _workers(port: int) -> dict[str, pb.WorkerInfo]:
    with rpc.channel(f"127.0.0.1:{port}") as ch:
        stub = client_pb2_grpc.ClusterStub(ch)
        listed = stub.ListWorkers(cpb.ListWorkersRequest(), timeout=5).workers
    return {w.id: w for w in listed}


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_failing_store_does_not_cost_a_worker_its_heartbeats(master):
    proc, port = master
    said: list[str] = []
    settings = WorkerSettings(
        id="w-qa7", master=f"127.0.0.1:{port}", heartbeat_interval=0.2, ip="127.0.0.1"
    )
    hooks = MemberHooks(
        running=list, cached_images=list, stop_attempts=lambda refs: None, say=said.append
    )
    with rpc.channel(settings.master) as channel:
        member = Membership(settings, channel, Resources(cpu=1, memory_bytes=2**30), hooks)
        member.start(f"127.0.0.1:{free_port()}")
        try:
            _wait(lambda: member.registrations == 1, 10, "the registration")
            resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))
            time.sleep(2 * TIMEOUT_S)  # many samples due, all failing; past the timeout
            info = _workers(port)["w-qa7"]
            resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, UNLIMITED)
        finally:
            member.stop()
    assert info.health == pb.WORKER_HEALTH_ACTIVE, said
    assert member.registrations == 1, said  # never sent back to registering
    assert not [x for x in said if "heartbeat failed" in x], said
    proc.terminate()
    log, _ = proc.communicate(timeout=30)
    assert "telemetry sample" in log and "SQLite write failed" in log, log
    assert "lost" not in log, log


def _fail_writes(proc: subprocess.Popen, failing: bool) -> None:
    limit = (1, resource.RLIM_INFINITY) if failing else UNLIMITED
    resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, limit)


def cli(port: int, command: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "cloudai", command, "--master", f"127.0.0.1:{port}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.fixture
def fake_worker(master):
    """A fake worker registered as w1 and heartbeating until the test ends."""
    _, port = master
    servicer = FakeWorkerServicer()
    server, wport = serve_worker(servicer)
    address, done = f"127.0.0.1:{wport}", threading.Event()
    channel = rpc.channel(f"127.0.0.1:{port}")
    stub = mw_grpc.MasterWorkerStub(channel)
    cap = pb.Resources(cpu=4, memory_bytes=8 * 2**30)
    request = mw.RegisterWorkerRequest(worker_id="w1", address=address, capacity=cap)
    assert stub.RegisterWorker(request, timeout=5).accepted

    def beat() -> None:
        while not done.wait(0.3):
            with contextlib.suppress(grpc.RpcError):  # this test's subject is elsewhere
                stub.SendHeartbeat(mw.HeartbeatRequest(worker_id="w1", address=address), timeout=5)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    yield servicer
    done.set()
    thread.join(5)
    channel.close()
    server.stop(0)


def test_a_drain_undo_the_store_refused_is_not_in_effect(master, fake_worker):
    proc, port = master
    assert cli(port, "drain", "w1").returncode == 0
    task_id = json.loads(cli(port, "submit", "alpine", "--json", "--", "true").stdout)["id"]
    _fail_writes(proc, True)
    try:
        undo = cli(port, "drain", "w1", "--undo")
        workers = json.loads(cli(port, "workers", "--json").stdout)
        time.sleep(1.0)  # the scheduler had time to place the task, had it been free
        assigned = list(fake_worker.assigned)
    finally:
        _fail_writes(proc, False)
    assert undo.returncode == 2 and "cannot use its store" in undo.stderr, undo
    # Before: ACTIVE in memory (DRAINING in the store) though the undo was refused.
    assert [w["health"] for w in workers] == ["WORKER_HEALTH_DRAINING"], workers
    assert assigned == []
    # Tried again once the store works: in effect, and the task is placed at once.
    assert cli(port, "drain", "w1", "--undo").returncode == 0
    _wait(lambda: fake_worker.assigned == [(task_id, 1)], 10, "the placement")
