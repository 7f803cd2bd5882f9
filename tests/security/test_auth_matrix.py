"""The authentication matrix, over real gRPC on loopback with certificates from
`certs init`: every wrong credential ends in a failed handshake, UNAUTHENTICATED or
PERMISSION_DENIED; every right one is served (the positive controls)."""

from __future__ import annotations

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cloudai import rpc
from cloudai.convert import spec_to_pb, state_to_pb
from cloudai.model import TaskSpec, TaskState
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import client_pb2_grpc, master_worker_pb2_grpc
from cloudai.proto import common_pb2 as pb
from cloudai.proto import master_agent_pb2 as apb
from cloudai.proto import master_worker_pb2 as mw
from cloudai.security.tokens import Role, TokenStore

OK = grpc.StatusCode.OK
HANDSHAKE = grpc.StatusCode.UNAVAILABLE  # what a client sees when TLS fails
UNAUTH = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED


def code_of(call, *args, timeout: float = 5, **kwargs) -> grpc.StatusCode:
    try:
        result = call(*args, timeout=timeout, **kwargs)
        if hasattr(result, "__next__"):  # a server stream: read its first message
            next(result, None)
            result.cancel()
    except grpc.RpcError as err:
        return err.code()
    return OK


def status(stub) -> grpc.StatusCode:
    return code_of(stub.GetStatus, cpb.StatusRequest())


def submit(stub, **spec) -> cpb.SubmitTaskResponse:
    spec.setdefault("image", "cloudai/sample-task:latest")
    return stub.SubmitTask(cpb.SubmitTaskRequest(spec=spec_to_pb(TaskSpec(**spec))), timeout=5)


# -- transport: the TLS handshake -----------------------------------------------------------


def test_valid_client_certificate_and_token_is_served(secure):
    assert status(secure.cluster("admin", "admin")) == OK


def test_no_client_certificate_fails_the_handshake(secure):
    creds = grpc.ssl_channel_credentials(
        root_certificates=(secure.pki.root / "ca.crt").read_bytes()
    )
    ch = grpc.secure_channel(secure.target, creds)
    ch = grpc.intercept_channel(ch, rpc._BearerToken(secure.tokens["admin"]))
    assert status(client_pb2_grpc.ClusterStub(ch)) == HANDSHAKE
    ch.close()


def test_certificate_from_a_foreign_ca_fails_the_handshake(secure):
    tls = secure.pki.tls("admin", cert_from=secure.pki.foreign)  # trusts our CA, foreign cert
    assert status(client_pb2_grpc.ClusterStub(secure.raw_channel(tls, secure.tokens["admin"]))) == (
        HANDSHAKE
    )


def test_expired_certificate_fails_the_handshake(secure):
    assert status(secure.cluster("expired", "admin")) == HANDSHAKE


def test_client_that_does_not_trust_the_master_fails_the_handshake(secure):
    tls = secure.pki.tls("admin", ca_from=secure.pki.foreign)  # our cert, foreign CA as root
    assert status(client_pb2_grpc.ClusterStub(secure.raw_channel(tls, secure.tokens["admin"]))) == (
        HANDSHAKE
    )


def test_master_certificate_must_name_the_host_dialled(secure):
    assert status(secure.cluster("admin", "admin", server_name="evil.example")) == HANDSHAKE


def test_plaintext_client_cannot_talk_to_a_tls_master(secure):
    plain = secure.raw_channel(None, secure.tokens["admin"])
    assert status(client_pb2_grpc.ClusterStub(plain)) == HANDSHAKE


# -- tokens ---------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "cai_not-a-real-token-0123456789abcdef", "revoked"])
def test_missing_wrong_or_revoked_token_is_unauthenticated(secure, token):
    assert status(secure.cluster("admin", token)) == UNAUTH


def test_revocation_takes_effect_on_a_running_master(secure):
    store = TokenStore(secure.tokens_path)
    token, _ = store.create(Role.SUBMITTER, "carol")
    stub = secure.cluster("admin", token)
    assert status(stub) == OK
    time.sleep(0.01)  # a distinct mtime on coarse filesystems
    store.revoke(token=token)
    assert status(stub) == UNAUTH


def test_health_checks_need_no_token(secure):
    health = health_pb2_grpc.HealthStub(secure.channel("admin", None))
    resp = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


# -- roles ----------------------------------------------------------------------------------

WORKER_REF = pb.TaskRef(task_id="t-0", attempt=1)


@pytest.mark.parametrize(
    "who, rpc_name, expected",
    [
        # a worker token: only the MasterWorker RPCs
        ("worker-a", "DrainWorker", DENIED),
        ("worker-a", "SubmitTask", DENIED),
        ("worker-a", "ListWorkers", DENIED),
        ("worker-a", "WatchSchedulingWork", DENIED),
        ("worker-a", "SubmitPlacements", DENIED),
        # an agent token: only the MasterAgent RPCs
        ("agent", "SubmitTask", DENIED),
        ("agent", "RegisterWorker", DENIED),
        ("agent", "WatchSchedulingWork", OK),
        # a submitter: no admin RPCs, no worker or agent RPCs
        ("alice", "DrainWorker", DENIED),
        ("alice", "RegisterWorker", DENIED),
        ("alice", "SubmitPlacements", DENIED),
        ("alice", "ListWorkers", OK),
        # the master's token is for workers, not for the master
        ("master", "ListWorkers", DENIED),
        # admin: everything
        ("admin", "DrainWorker", OK),
        ("admin", "SubmitPlacements", OK),
    ],
)
def test_role_matrix(secure, who, rpc_name, expected):
    cert = who if who in ("worker-a", "agent", "alice") else "admin"
    cluster = secure.cluster(cert, who)
    workers = master_worker_pb2_grpc.MasterWorkerStub(secure.channel(cert, who))
    agent = secure.agent(cert, who)
    calls = {
        "DrainWorker": lambda: code_of(
            cluster.DrainWorker, cpb.DrainRequest(worker_id="worker-b", undrain=True)
        ),
        "SubmitTask": lambda: code_of(
            cluster.SubmitTask,
            cpb.SubmitTaskRequest(spec=pb.TaskSpec(image="alpine"), dry_run=True),
        ),
        "ListWorkers": lambda: code_of(cluster.ListWorkers, cpb.ListWorkersRequest()),
        # Allowed, it waits for work: a deadline, not a denial, ends it.
        "WatchSchedulingWork": lambda: code_of(
            agent.WatchSchedulingWork, apb.WatchRequest(agent_id="probe"), timeout=0.5
        ),
        "SubmitPlacements": lambda: code_of(
            agent.SubmitPlacements, apb.PlacementBatch(agent_id="probe")
        ),
        "RegisterWorker": lambda: code_of(
            workers.RegisterWorker,
            mw.RegisterWorkerRequest(
                worker_id="rogue", address="127.0.0.1:9", capacity=pb.Resources(cpu=1)
            ),
        ),
    }
    got = calls[rpc_name]()
    if expected == OK and rpc_name == "WatchSchedulingWork":
        assert got in (OK, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)
    else:
        assert got == expected


def test_pinned_submit_needs_admin(secure):
    with pytest.raises(grpc.RpcError) as err:
        submit(secure.cluster("alice", "alice"), pinned_worker="worker-b")
    assert err.value.code() == DENIED and "admin" in err.value.details()
    resp = submit(secure.cluster("admin", "admin"), pinned_worker="worker-b")
    assert resp.task_id


def test_submitter_owns_its_tasks_and_cannot_cancel_anothers(secure):
    alice, bob = secure.cluster("alice", "alice"), secure.cluster("bob", "bob")
    task_id = submit(alice, selector={"zone": "nowhere"}).task_id  # stays queued
    assert alice.GetTask(cpb.GetTaskRequest(task_id=task_id), timeout=5).spec.owner == "alice"
    with pytest.raises(grpc.RpcError) as err:
        bob.CancelTask(cpb.CancelRequest(task_id=task_id), timeout=5)
    assert err.value.code() == DENIED
    resp = alice.CancelTask(cpb.CancelRequest(task_id=task_id), timeout=5)
    assert resp.task.state == state_to_pb(TaskState.CANCELLED)


def test_owner_comes_from_the_token_not_the_request(secure):
    alice = secure.cluster("alice", "alice")
    task_id = submit(alice, owner="bob", selector={"zone": "nowhere"}).task_id
    assert alice.GetTask(cpb.GetTaskRequest(task_id=task_id), timeout=5).spec.owner == "alice"
    secure.cluster().CancelTask(cpb.CancelRequest(task_id=task_id), timeout=5)  # admin may


# -- workers speak only for themselves ----------------------------------------------------


def _task_on(secure, worker_id: str) -> tuple[str, int]:
    """Admin pins a task to `worker_id`; wait until the master dispatched it (over mTLS)."""
    w = secure.workers[worker_id]
    w.servicer.event.clear()
    task_id = submit(secure.cluster(), pinned_worker=worker_id).task_id
    deadline = time.time() + 10
    while time.time() < deadline:
        for tid, attempt in w.servicer.assigned:
            if tid == task_id:
                return tid, attempt
        w.servicer.event.wait(0.1)
    raise AssertionError(f"{task_id} never reached {worker_id}")


def test_master_dispatches_to_workers_over_mtls(secure):
    task_id, attempt = _task_on(secure, "worker-b")
    assert attempt == 1


def test_worker_a_cannot_report_for_worker_b_or_its_tasks(secure):
    task_id, attempt = _task_on(secure, "worker-b")
    as_a = secure.mw("worker-a", "worker-a")
    done = dict(task_id=task_id, attempt=attempt, state=state_to_pb(TaskState.SUCCEEDED))
    # Speaking as worker-b with worker-a's token: refused by the interceptor.
    with pytest.raises(grpc.RpcError) as err:
        as_a.ReportTaskStatus(mw.TaskStatusReport(worker_id="worker-b", **done), timeout=5)
    assert err.value.code() == DENIED
    # As itself, for a task it does not hold: refused by fencing.
    ack = as_a.ReportTaskStatus(mw.TaskStatusReport(worker_id="worker-a", **done), timeout=5)
    assert not ack.accepted and "not held by worker-a" in ack.message
    task = secure.cluster().GetTask(cpb.GetTaskRequest(task_id=task_id), timeout=5)
    assert task.state != state_to_pb(TaskState.SUCCEEDED)
    # worker-b itself may.
    as_b = secure.mw("worker-b", "worker-b")
    assert as_b.ReportTaskStatus(
        mw.TaskStatusReport(worker_id="worker-b", **done), timeout=5
    ).accepted


def test_worker_token_must_come_with_its_own_certificate(secure):
    stolen = secure.mw("worker-b", "worker-a")  # worker-b's certificate, worker-a's token
    req = mw.HeartbeatRequest(worker_id="worker-a", telemetry=pb.Telemetry())
    assert code_of(stolen.SendHeartbeat, req) == DENIED


def test_worker_cannot_register_as_another(secure):
    as_a = secure.mw("worker-a", "worker-a")
    req = mw.RegisterWorkerRequest(
        worker_id="worker-b", address="127.0.0.1:9", capacity=pb.Resources(cpu=1, memory_bytes=1)
    )
    assert code_of(as_a.RegisterWorker, req) == DENIED


def test_worker_accepts_calls_only_from_the_masters_certificate(secure):
    w = secure.workers["worker-b"]
    req = mw.CancelTaskRequest(task_id="t-1", attempt=1)
    for cert, expected in (("worker-a", DENIED), ("admin", DENIED), ("master", OK)):
        ch = rpc.channel(f"127.0.0.1:{w.port}", tls=secure.pki.tls(cert))
        assert code_of(master_worker_pb2_grpc.WorkerStub(ch).CancelTask, req) == expected, cert
        ch.close()


def test_worker_must_register_an_address_its_certificate_names(secure):
    as_a = secure.mw("worker-a", "worker-a")
    req = mw.RegisterWorkerRequest(
        worker_id="worker-a",
        address="192.0.2.66:50052",  # not in worker-a's certificate
        capacity=pb.Resources(cpu=1, memory_bytes=1024**3),
    )
    with pytest.raises(grpc.RpcError) as err:
        as_a.RegisterWorker(req, timeout=5)
    assert err.value.code() == DENIED
    assert "cloudai certs issue DIR worker-a --host 192.0.2.66" in err.value.details()


def test_every_rpc_has_an_access_rule():
    """A new RPC is denied until it is given a rule: this test names the ones missing."""
    from cloudai.proto import client_pb2, master_agent_pb2, master_worker_pb2
    from cloudai.security.interceptor import MASTER_RULES, WORKER_RULES

    def covered(rules, service, method):
        return f"/{service.full_name}/{method.name}" in rules or f"/{service.full_name}/*" in rules

    missing = []
    for module, name, rules in (
        (client_pb2, "Cluster", MASTER_RULES),
        (master_worker_pb2, "MasterWorker", MASTER_RULES),
        (master_agent_pb2, "MasterAgent", MASTER_RULES),
        (master_worker_pb2, "Worker", WORKER_RULES),
    ):
        service = module.DESCRIPTOR.services_by_name[name]
        missing += [m.full_name for m in service.methods if not covered(rules, service, m)]
    assert not missing, f"add these to cloudai/security/interceptor.py: {missing}"


def test_worker_can_also_require_a_master_token(secure):
    """Optional second factor on the master -> worker direction: a role-master token."""
    from cloudai.security.interceptor import WORKER_RULES, AuthInterceptor
    from tests.security.seckit import RecordingWorker

    servicer = RecordingWorker()
    server, port, _ = rpc.build_server(
        "127.0.0.1:0",
        [lambda s: master_worker_pb2_grpc.add_WorkerServicer_to_server(servicer, s)],
        ["cloudai.v1.Worker"],
        tls=secure.pki.tls("worker-a"),
        interceptors=[
            AuthInterceptor(
                WORKER_RULES,
                tokens=TokenStore(secure.tokens_path),
                peer_names=frozenset({"master"}),
            )
        ],
    )
    server.start()
    req = mw.CancelTaskRequest(task_id="t-1", attempt=1)
    try:
        for token, expected in ((None, UNAUTH), ("worker-a", DENIED), ("master", OK)):
            ch = rpc.channel(
                f"127.0.0.1:{port}",
                tls=secure.pki.tls("master"),
                token=secure.tokens[token] if token else "",
            )
            got = code_of(master_worker_pb2_grpc.WorkerStub(ch).CancelTask, req)
            ch.close()
            assert got == expected, token
    finally:
        server.stop(0)


def test_a_master_that_cannot_read_its_tokens_says_so_not_unreachable(tmp_path, pki):
    """QA pass 7: with its tokens file damaged the master refuses every call (it fails
    closed), and the CLI said `cannot reach the CloudAI master: is it running?`."""
    from cloudai.cli.client import describe_error

    from .seckit import start_secure_master

    cluster = start_secure_master(tmp_path, pki)
    try:
        stub = cluster.cluster()
        assert code_of(stub.GetStatus, cpb.StatusRequest()) == OK
        cluster.tokens_path.write_text("{ not json")
        with pytest.raises(grpc.RpcError) as err:
            stub.GetStatus(cpb.StatusRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert describe_error(err.value, cluster.target) == (
            f"{rpc.TOKENS_UNCHECKABLE} ({cluster.target})"
        )
    finally:
        cluster.close()
