"""A master whose store fails answers UNAVAILABLE, like a lost connection, plus a
trailing-metadata mark: every peer (client, worker, agent) then names the store, not
the network. Real gRPC over loopback with the master's own abort helper."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from cloudai import rpc
from cloudai.agent.sidecar import _describe
from cloudai.cli.client import Client, describe_error
from cloudai.cli.reconnect import Patience
from cloudai.errors import NotFound, StoreError
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import client_pb2_grpc as cpb_grpc
from cloudai.proto import common_pb2 as pb
from cloudai.worker.membership import _why

FULL = "SQLite write failed (sqlite:///m.db): database or disk is full"


def _handler(err: Exception):
    def call(request: bytes, context: grpc.ServicerContext) -> bytes:
        rpc.abort(context, err)

    return grpc.method_handlers_generic_handler(
        "t.T", {"Call": grpc.unary_unary_rpc_method_handler(call)}
    )


@pytest.fixture
def answer() -> Iterator:
    servers = []

    def failing_with(err: Exception) -> grpc.RpcError:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
        server.add_generic_rpc_handlers((_handler(err),))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        with (
            grpc.insecure_channel(f"127.0.0.1:{port}") as ch,
            pytest.raises(grpc.RpcError) as caught,
        ):
            ch.unary_unary("/t.T/Call")(b"", timeout=10)
        return caught.value

    yield failing_with
    for server in servers:
        server.stop(None)


def test_a_store_failure_is_named_by_every_peer(answer):
    err = answer(StoreError(FULL))
    assert err.code() == grpc.StatusCode.UNAVAILABLE and rpc.store_failed(err)
    assert describe_error(err, "m:1") == (
        f"the CloudAI master at m:1 cannot use its store (try again later): {FULL}"
    )
    assert _why(err) == f"cannot use its store: {FULL}"
    assert _describe(err) == f"the master cannot use its store: {FULL}"


def test_other_errors_and_lost_connections_are_not_store_failures(answer):
    err = answer(NotFound("no task 't-1'"))
    assert not rpc.store_failed(err) and describe_error(err, "m:1") == "no task 't-1'"
    with grpc.insecure_channel("127.0.0.1:1") as ch, pytest.raises(grpc.RpcError) as lost:
        ch.unary_unary("/t.T/Call")(b"", timeout=5)
    assert lost.value.code() == grpc.StatusCode.UNAVAILABLE
    assert not rpc.store_failed(lost.value) and _why(lost.value) == "unreachable"
    assert "cannot reach the CloudAI master at m:1" in describe_error(lost.value, "m:1")


class _FailingTwice(cpb_grpc.ClusterServicer):
    """GetTask fails twice with a store failure, then answers."""

    def __init__(self) -> None:
        self.calls = 0

    def GetTask(self, request, context):
        self.calls += 1
        if self.calls <= 2:
            rpc.abort(context, StoreError(FULL))
        return pb.Task(id=request.task_id)


def test_a_wait_riding_out_a_failing_store_says_so(capsys):
    servicer = _FailingTwice()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    cpb_grpc.add_ClusterServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    client = Client(f"127.0.0.1:{port}", reconnect=30)
    try:
        task = Patience(client).call("GetTask", cpb.GetTaskRequest(task_id="t-1"))
    finally:
        client.close()
        server.stop(None)
    assert task.id == "t-1" and servicer.calls == 3
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"cloudai: the CloudAI master at 127.0.0.1:{port} cannot use its store (try again "
        f"later): {FULL}; retrying for up to 30s",
        "cloudai: reconnected",
    ]
