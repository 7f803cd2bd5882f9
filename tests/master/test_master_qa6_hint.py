"""`submit --dry-run` and `explain` when no worker is active and the workers are a mix of
draining and inactive ones: the hint says so and names the drain to undo, over real
gRPC (an in-process master on a loopback port, fake workers)."""

from __future__ import annotations

import time

from cloudai.cli.client_cmds import _dry_run_text
from cloudai.convert import spec_to_pb
from cloudai.model import Resources, TaskSpec
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import common_pb2 as pb
from cloudai.proto import master_worker_pb2 as mw

from .harness import GiB, Harness, make_harness

HINT = (
    "no active worker (1 draining, 1 inactive): `cloudai drain w1 --undo` lets w1 take tasks again"
)


def register(h: Harness, worker_id: str, port: int) -> None:
    req = mw.RegisterWorkerRequest(
        worker_id=worker_id,
        address=f"127.0.0.1:{port}",
        capacity=pb.Resources(cpu=4, memory_bytes=8 * GiB),
        hostname="test",
    )
    assert h.mw.RegisterWorker(req, timeout=5).accepted


def beat(h: Harness, worker_id: str) -> None:
    req = mw.HeartbeatRequest(worker_id=worker_id, telemetry=pb.Telemetry(cpu_percent=1))
    assert h.mw.SendHeartbeat(req, timeout=5).known


def health(h: Harness) -> dict[str, int]:
    workers = h.cluster.ListWorkers(cpb.ListWorkersRequest(), timeout=5).workers
    return {w.id: w.health for w in workers}


def test_dry_run_and_explain_say_draining_and_inactive(tmp_path):
    h = make_harness(tmp_path, agent_timeout=0.2, heartbeat_timeout=1)
    try:
        register(h, "w1", 1)
        register(h, "w2", 2)  # never heartbeats: inactive after a second
        h.cluster.DrainWorker(cpb.DrainRequest(worker_id="w1"), timeout=5)
        deadline = time.monotonic() + 8
        while health(h) != {"w1": pb.WORKER_HEALTH_DRAINING, "w2": pb.WORKER_HEALTH_INACTIVE}:
            assert time.monotonic() < deadline, health(h)
            beat(h, "w1")
            time.sleep(0.1)
        spec = spec_to_pb(TaskSpec(image="cloudai/sample-task:latest", resources=Resources(1, GiB)))
        dry = h.cluster.SubmitTask(cpb.SubmitTaskRequest(spec=spec, dry_run=True), timeout=5)
        assert dry.decision.hint == HINT
        assert _dry_run_text(dry.decision).endswith(f"\nsmallest change: {HINT}")
        tid = h.cluster.SubmitTask(cpb.SubmitTaskRequest(spec=spec), timeout=5).task_id
        text = ""
        while HINT not in text:
            assert time.monotonic() < deadline + 5, text
            beat(h, "w1")
            time.sleep(0.1)
            text = h.cluster.Explain(cpb.ExplainRequest(task_id=tid), timeout=5).text
        assert f"smallest change that would make it placeable: {HINT}" in text
    finally:
        h.close()
