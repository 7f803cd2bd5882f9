"""Hostile input gets INVALID_ARGUMENT naming the field; secrets stay out of the store's
plain text, of listings, snapshots, logs and error messages; images are admitted by an
allow-list. In-process master on loopback port 0; no Docker."""

from __future__ import annotations

import logging
import stat

import grpc
import pytest

from cloudai.convert import spec_to_pb
from cloudai.model import Resources, TaskSpec
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import common_pb2 as pb
from cloudai.proto import master_agent_pb2 as apb
from cloudai.proto import master_worker_pb2 as mw
from cloudai.security.images import ImagePolicy
from tests.master.harness import GiB, make_harness

SECRET = "hunter2-very-secret"


@pytest.fixture
def h(tmp_path):
    harness = make_harness(tmp_path, max_worker_cpu=64, max_worker_memory=256 * GiB)
    yield harness
    harness.close()


def rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call(request, timeout=5)
    return err.value


def register(**fields) -> mw.RegisterWorkerRequest:
    base = dict(
        worker_id="w1",
        address="127.0.0.1:9",
        capacity=pb.Resources(cpu=4, memory_bytes=8 * GiB),
        hostname="h",
    )
    return mw.RegisterWorkerRequest(**{**base, **fields})


# -- hostile input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_, field",
    [
        (register(worker_id="../../etc"), "worker_id"),
        (register(address="no-port"), "address"),
        (register(address="h:99999"), "address"),
        (register(hostname="x" * 300), "hostname"),
        (register(hostname="\x1b[31mred"), "hostname"),
        (register(labels={"ok": "has space"}), "label value"),
        (register(capacity=pb.Resources(cpu=65, memory_bytes=GiB)), "capacity.cpu"),
        (register(capacity=pb.Resources(cpu=4, memory_bytes=10**15)), "capacity.memory_bytes"),
        (register(capacity=pb.Resources(cpu=float("nan"), memory_bytes=GiB)), "capacity.cpu"),
        (register(capacity=pb.Resources(cpu=4, memory_bytes=GiB, gpu=-1)), "capacity.gpu"),
        (register(telemetry=pb.Telemetry(cpu_percent=float("inf"))), "telemetry.cpu_percent"),
        (register(telemetry=pb.Telemetry(load1=-1)), "telemetry.load1"),
        (register(running=[pb.TaskRef(task_id="t-1", attempt=0)]), "running[0].attempt"),
        (register(cached_images=["x" * 1000]), "cached_images[0]"),
    ],
)
def test_register_rejects_bad_fields_by_name(h, request_, field):
    err = rpc_error(h.mw.RegisterWorker, request_)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in err.details()


def test_worker_cannot_inflate_capacity_beyond_the_admins_bound(h):
    err = rpc_error(
        h.mw.RegisterWorker, register(capacity=pb.Resources(cpu=1000, memory_bytes=GiB))
    )
    assert "capacity.cpu 1000 is out of bounds: 0 to 64" in err.details()
    assert "CLOUDAI_MAX_WORKER_CPU" in err.details()
    assert h.mw.RegisterWorker(register(), timeout=5).accepted  # within bounds: fine


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda h: (h.mw.ReportTaskStatus, mw.TaskStatusReport(worker_id="w1", task_id="t-1",
                    attempt=1, state=4, log_tail="x" * (2 * 1024 * 1024))), "log_tail"),
        (lambda h: (h.mw.ReportTaskStatus, mw.TaskStatusReport(worker_id="w1", task_id="t-1",
                    attempt=1, state=99)), "task state"),
        (lambda h: (h.mw.ReportTaskStatus, mw.TaskStatusReport(worker_id="w1", task_id="t-1",
                    attempt=1, state=4, reason="x\ny")), "reason"),
        (lambda h: (h.mw.SendHeartbeat, mw.HeartbeatRequest(worker_id="w1",
                    telemetry=pb.Telemetry(memory_percent=101))), "telemetry.memory_percent"),
        (lambda h: (h.cluster.GetTask, cpb.GetTaskRequest(task_id="x" * 100)), "task_id"),
        (lambda h: (h.cluster.ListTasks, cpb.ListTasksRequest(limit=-1)), "limit"),
        (lambda h: (h.cluster.ListTasks, cpb.ListTasksRequest(states=[42])), "state"),
        (lambda h: (h.cluster.DrainWorker, cpb.DrainRequest(worker_id="")), "worker_id"),
        (lambda h: (h.cluster.SubmitTask, cpb.SubmitTaskRequest(spec=pb.TaskSpec(
                    image="alpine", env={"1BAD": "x"}))), "environment variable name"),
        (lambda h: (h.cluster.SubmitTask, cpb.SubmitTaskRequest(spec=pb.TaskSpec(
                    image="alpine", cap_add=["ALL"]))), "cap_add"),
        (lambda h: (h.cluster.SubmitTask, cpb.SubmitTaskRequest(spec=pb.TaskSpec(
                    image="alpine", user="root; rm -rf /"))), "invalid user"),
        (lambda h: (h.cluster.SubmitTask, cpb.SubmitTaskRequest(spec=pb.TaskSpec(
                    image="alpine", name="\x1b]0;pwned\x07"))), "name"),
        (lambda h: (h.cluster.SubmitTask, cpb.SubmitTaskRequest(spec=pb.TaskSpec(
                    image="UPPER/Case"))), "invalid image reference"),
        (lambda h: (h.agent.SubmitPlacements, apb.PlacementBatch(decisions=[apb.Decision(
                    task_id="t-1", worker_id="w 1")])), "decisions[0].worker_id"),
        (lambda h: (h.agent.SubmitPlacements, apb.PlacementBatch(decisions=[apb.Decision(
                    task_id="t-1", candidates=[apb.Candidate(worker_id="w1",
                    total=float("nan"))])])), "decisions[0].candidates[0].total"),
    ],
)  # fmt: skip
def test_every_rpc_names_the_bad_field(h, make, field):
    call, request = make(h)
    err = rpc_error(call, request)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in err.details(), err.details()


def test_oversized_request_is_resource_exhausted(h):
    huge = cpb.SubmitTaskRequest(spec=pb.TaskSpec(image="alpine", name="x" * (17 * 1024**2)))
    assert rpc_error(h.cluster.SubmitTask, huge).code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_internal_errors_do_not_leak_their_text(h, monkeypatch, caplog):
    def boom(*args, **kwargs):
        raise RuntimeError("/secret/path password=swordfish")

    monkeypatch.setattr(h.master, "status", boom)
    with caplog.at_level(logging.ERROR, logger="cloudai.master"):
        err = rpc_error(h.cluster.GetStatus, cpb.StatusRequest())
    assert err.code() == grpc.StatusCode.INTERNAL
    assert "swordfish" not in err.details() and "internal error" in err.details()
    assert "swordfish" in caplog.text  # the operator still sees it, in the master's log


# -- image admission ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image, admitted",
    [
        ("127.0.0.1:5000/team/app:1", True),
        ("127.0.0.1:5000/other:1", False),
        ("cloudai/sample-task:latest", True),
        ("docker.io/cloudai/sample-task", True),
        ("cloudaix/evil", False),
        ("alpine:3.20", True),
        ("alpine", False),  # latest is not 3.20
        ("docker.io/library/alpine:3.20", True),
        ("busybox@sha256:" + "a" * 64, True),  # any digest of an allowed repository
        ("busybox:latest", True),
        ("evil.example/busybox", False),
        ("localhost:5000/x", False),
    ],
)
def test_image_allowlist(image, admitted):
    policy = ImagePolicy(["127.0.0.1:5000/team/", "cloudai/", "alpine:3.20", "busybox"])
    assert (policy.problem(image) == "") == admitted


def test_empty_allowlist_admits_everything():
    assert ImagePolicy([]).problem("anything/at:all") == ""


def test_submit_outside_the_allowlist_is_refused_with_a_clear_error(tmp_path):
    h = make_harness(tmp_path, image_allowlist=["127.0.0.1:5000/"])
    try:
        req = cpb.SubmitTaskRequest(spec=pb.TaskSpec(image="docker.io/evil/miner"))
        err = rpc_error(h.cluster.SubmitTask, req)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not allowed on this cluster" in err.details() and "127.0.0.1:5000/" in err.details()
        ok = cpb.SubmitTaskRequest(spec=pb.TaskSpec(image="127.0.0.1:5000/app@sha256:" + "b" * 64))
        assert h.cluster.SubmitTask(ok, timeout=5).task_id
    finally:
        h.close()


# -- secrets -------------------------------------------------------------------------------------


def test_secret_env_is_encrypted_at_rest_and_never_listed(h, tmp_path):
    worker = h.add_worker("w1")
    spec = TaskSpec(
        image="alpine",
        env={"PLAIN": "visible", "TOKEN": SECRET},
        secret_env_keys=["TOKEN"],
        resources=Resources(cpu=1),
        pinned_worker="w1",
    )
    task_id = h.cluster.SubmitTask(cpb.SubmitTaskRequest(spec=spec_to_pb(spec)), timeout=5).task_id
    assert worker.servicer.event.wait(10)
    shown = [
        h.cluster.GetTask(cpb.GetTaskRequest(task_id=task_id), timeout=5),
        *h.cluster.ListTasks(cpb.ListTasksRequest(), timeout=5).tasks,
        h.cluster.Explain(cpb.ExplainRequest(task_id=task_id), timeout=5),
    ]
    for message in shown:
        assert SECRET not in str(message)
    assert h.cluster.GetTask(cpb.GetTaskRequest(task_id=task_id), timeout=5).spec.env == {
        "PLAIN": "visible"
    }
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("master.db*") if p.is_file())
    assert SECRET.encode() not in raw and b"enc:v1:" in raw
    key = tmp_path / "master.db.secrets-key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_agents_never_see_secret_values(h):
    spec = TaskSpec(image="alpine", env={"TOKEN": SECRET}, secret_env_keys=["TOKEN"])
    h.cluster.SubmitTask(cpb.SubmitTaskRequest(spec=spec_to_pb(spec)), timeout=5)
    batch = h.master.scheduler.snapshot(h.master.tasks.pending())
    assert batch.tasks and SECRET not in str(batch)
    assert "enc:v1" not in str(batch)  # not even the ciphertext


def test_secret_values_reach_the_worker_decrypted(tmp_path, monkeypatch):
    from tests.master.harness import FakeWorkerServicer

    seen: list[dict[str, str]] = []
    original = FakeWorkerServicer.AssignTask

    def capture(self, request, context):
        seen.append(dict(request.spec.env))
        return original(self, request, context)

    monkeypatch.setattr(FakeWorkerServicer, "AssignTask", capture)
    h = make_harness(tmp_path)
    try:
        worker = h.add_worker("w1")
        spec = TaskSpec(
            image="alpine", env={"TOKEN": SECRET}, secret_env_keys=["TOKEN"], pinned_worker="w1"
        )
        h.cluster.SubmitTask(cpb.SubmitTaskRequest(spec=spec_to_pb(spec)), timeout=5)
        assert worker.servicer.event.wait(10)
        assert seen == [{"TOKEN": SECRET}]
    finally:
        h.close()


def test_mongodb_password_never_shown(tmp_path, monkeypatch):
    """An unreachable MongoDB with credentials: the warning and the status are masked."""
    from cloudai.config import MasterSettings
    from cloudai.master.server import Master

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    warnings: list[str] = []
    s = MasterSettings(
        _env_file=None,  # type: ignore[call-arg]
        host="127.0.0.1",
        port=0,
        console=False,
        db="mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=100",
        mongodb_username="cloudai",
        mongodb_password="s3cr3t-pw",
    )
    master = Master(s, warn=warnings.append)
    master.start()
    try:
        assert warnings and all("s3cr3t-pw" not in w for w in warnings)
        assert "s3cr3t-pw" not in str(master.status()) and "s3cr3t-pw" not in repr(s)
    finally:
        master.stop(grace=0.1)
