"""QA10: requests that are not protobuf at all, or not valid UTF-8 in a string field.

gRPC Python decodes a request before any interceptor runs: such bytes ended
INTERNAL "Exception deserializing request!" with a traceback in the server's log,
before any token was checked. Now every CloudAI server (master and worker) answers
INVALID_ARGUMENT with one line naming the expected message, after the caller's
token and certificate were checked, and logs no traceback.
"""

from __future__ import annotations

import logging

import grpc
import pytest

from cloudai import rpc
from cloudai.config import WorkerSettings
from cloudai.proto import client_pb2, master_agent_pb2, master_worker_pb2
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import master_worker_pb2 as mw
from cloudai.proto import master_worker_pb2_grpc as mw_grpc
from cloudai.security.setup import for_worker
from cloudai.worker.logs import LogStream
from cloudai.worker.service import SERVICE_NAME, WorkerServicer
from tests.security.seckit import make_pki, start_secure_master

GARBAGE = {
    "not protobuf": b"\xff" * 16,
    "truncated": b"\x0a\xff\xff\xff\xff\x0f",
    "http": b"GET / HTTP/1.1\r\n\r\n",
}


def _methods(module, service: str):
    for m in module.DESCRIPTOR.services_by_name[service].methods:
        yield f"/cloudai.v1.{service}/{m.name}", m.output_type.full_name, m.server_streaming, m


MASTER_METHODS = [
    *_methods(client_pb2, "Cluster"),
    *_methods(master_worker_pb2, "MasterWorker"),
    *_methods(master_agent_pb2, "MasterAgent"),
]


def _raw_call(channel: grpc.Channel, path: str, streaming: bool, data: bytes, **kw):
    if streaming:
        return list(channel.unary_stream(path)(data, timeout=10, **kw))
    return channel.unary_unary(path)(data, timeout=10, **kw)


def _assert_invalid(err: grpc.RpcError, input_type: str) -> None:
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
    details = err.details()
    assert details.startswith("malformed request: not a valid " + input_type), details
    assert "\n" not in details and "Exception" not in details and len(details) < 300


def _no_traceback(caplog) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


@pytest.mark.parametrize("label", sorted(GARBAGE))
def test_master_answers_bytes_that_are_not_protobuf_with_invalid_argument(h, caplog, label):
    caplog.set_level(logging.INFO)
    for path, _out, streaming, method in MASTER_METHODS:
        with pytest.raises(grpc.RpcError) as info:
            _raw_call(h.channel, path, streaming, GARBAGE[label])
        _assert_invalid(info.value, method.input_type.full_name)
    _no_traceback(caplog)
    assert h.cluster.GetStatus(cpb.StatusRequest(), timeout=10).version


def _string_field(number: int, payload: bytes) -> bytes:
    assert number < 16 and len(payload) < 128
    return bytes([(number << 3) | 2, len(payload)]) + payload


def test_master_refuses_invalid_utf8_in_a_string_field(h, caplog):
    caplog.set_level(logging.INFO)
    valid = mw.RegisterWorkerRequest(worker_id="w1", address="127.0.0.1:1").SerializeToString()
    # worker_id (field 1) again, as bytes that are not UTF-8: the last value wins.
    data = valid + _string_field(1, b"\xff\xfe(\xc3")
    with pytest.raises(grpc.RpcError) as info:
        h.channel.unary_unary("/cloudai.v1.MasterWorker/RegisterWorker")(data, timeout=10)
    _assert_invalid(info.value, "cloudai.v1.RegisterWorkerRequest")
    logs = cpb.LogsRequest(task_id="t-1").SerializeToString() + _string_field(1, b"\xc0\xaf")
    with pytest.raises(grpc.RpcError) as info:
        list(h.channel.unary_stream("/cloudai.v1.Cluster/StreamLogs")(logs, timeout=10))
    _assert_invalid(info.value, "cloudai.v1.LogsRequest")
    _no_traceback(caplog)
    assert not h.cluster.ListWorkers(cpb.ListWorkersRequest(), timeout=10).workers


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    cluster = start_secure_master(tmp_path_factory.mktemp("master"), pki)
    yield cluster
    cluster.close()


@pytest.mark.parametrize(
    ("cert", "token", "path", "code"),
    [
        ("admin", None, "/cloudai.v1.Cluster/GetTask", grpc.StatusCode.UNAUTHENTICATED),
        ("admin", "revoked", "/cloudai.v1.MasterAgent/SubmitPlacements", "UNAUTHENTICATED"),
        ("worker-a", "worker-a", "/cloudai.v1.MasterAgent/SubmitPlacements", "PERMISSION_DENIED"),
        ("agent", "agent", "/cloudai.v1.MasterWorker/SendHeartbeat", "PERMISSION_DENIED"),
        ("alice", "alice", "/cloudai.v1.Cluster/DrainWorker", "PERMISSION_DENIED"),
        ("admin", "admin", "/cloudai.v1.MasterWorker/RegisterWorker", "INVALID_ARGUMENT"),
        ("agent", "agent", "/cloudai.v1.MasterAgent/SubmitPlacements", "INVALID_ARGUMENT"),
    ],
)
def test_secure_master_checks_the_caller_before_the_bytes(secure, caplog, cert, token, path, code):
    """Garbage from a caller without a valid token is UNAUTHENTICATED, from a role that
    may not call the method PERMISSION_DENIED, as for a well-formed request; only a
    caller allowed to call learns that its request is malformed."""
    caplog.set_level(logging.INFO)
    expected = code if isinstance(code, grpc.StatusCode) else grpc.StatusCode[code]
    with pytest.raises(grpc.RpcError) as info:
        secure.channel(cert, token).unary_unary(path)(GARBAGE["not protobuf"], timeout=10)
    assert info.value.code() == expected, (info.value.code(), info.value.details())
    assert "Exception" not in info.value.details()
    assert not [r for r in caplog.records if r.exc_info]


class _Node:
    """The node behind the worker's servicer: never reached by malformed requests."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def assign(self, task_id, attempt, spec):
        self.calls.append("assign")
        return True, "accepted"

    def cancel(self, task_id, attempt, reason=""):
        self.calls.append("cancel")
        return False

    def logs(self, task_id, attempt, follow, tail) -> LogStream:
        self.calls.append("logs")
        raise AssertionError("not reached")


def test_worker_server_answers_bytes_that_are_not_protobuf_with_invalid_argument(caplog):
    """The worker's server is built with the interceptors of `for_worker`, as WorkerNode
    builds it (plaintext on loopback: no TLS, no tokens)."""
    caplog.set_level(logging.INFO)
    settings = WorkerSettings(_env_file=None, id="wfz", ip="127.0.0.1", port=0)  # type: ignore[call-arg]
    security, _bind = for_worker(settings, lambda m: None)
    node = _Node()
    server, port, _ = rpc.build_server(
        "127.0.0.1:0",
        [lambda s: mw_grpc.add_WorkerServicer_to_server(WorkerServicer(node), s)],
        [SERVICE_NAME],
        interceptors=security.interceptors,
    )
    server.start()
    channel = rpc.channel(f"127.0.0.1:{port}")
    try:
        for path, _out, streaming, method in _methods(master_worker_pb2, "Worker"):
            for data in GARBAGE.values():
                with pytest.raises(grpc.RpcError) as info:
                    _raw_call(channel, path, streaming, data)
                _assert_invalid(info.value, method.input_type.full_name)
        assert node.calls == []
        answer = mw_grpc.WorkerStub(channel).CancelTask(
            mw.CancelTaskRequest(task_id="t-1", attempt=1), timeout=10
        )
        assert not answer.found and node.calls == ["cancel"]
    finally:
        channel.close()
        server.stop(0)
    _no_traceback(caplog)
