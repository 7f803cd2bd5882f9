"""Long silent streams survive the clients' keepalive pings.

Every channel pings an idle connection (rpc.channel_options). gRPC servers allow by
default one ping per 5 minutes without data and answer the third early ping with
GOAWAY too_many_pings: `cloudai logs --follow` on a quiet task died after about a
minute, and the agent lost its watch stream. The intervals are shortened here through
the same option-building functions, so the test takes seconds instead of minutes.
"""

from __future__ import annotations

import threading
import time
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from cloudai import rpc
from cloudai.config import MasterSettings
from cloudai.master.server import Master
from cloudai.master.store import SQLiteStore
from cloudai.model import TaskSpec
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import client_pb2_grpc

KEEPALIVE_MS = 1000  # gRPC pings no more often than about once a second
SILENCE_S = 6.0  # a server with gRPC's defaults cuts the stream after about 3 s


@pytest.fixture
def master(tmp_path):
    s = MasterSettings(
        _env_file=None,  # type: ignore[call-arg]
        host="127.0.0.1",
        port=0,
        console=False,
        agent_timeout=3600.0,
    )
    m = Master(s, store=SQLiteStore(tmp_path / "m.db"), keepalive_ms=KEEPALIVE_MS)
    m.start()
    yield m
    m.stop(grace=0.5)


def test_follow_stream_outlives_silence_longer_than_the_ping_strikes(master):
    """A task that stays PENDING (no worker) gives a follower no data at all; once it
    is cancelled, the stream still delivers its end."""
    task = master.submit(TaskSpec(image="alpine"))
    threading.Timer(SILENCE_S, master.cancel, args=(task.id,)).start()
    began = time.monotonic()
    with rpc.channel(f"127.0.0.1:{master.port}", keepalive_ms=KEEPALIVE_MS) as ch:
        stub = client_pb2_grpc.ClusterStub(ch)
        chunks = list(stub.StreamLogs(cpb.LogsRequest(task_id=task.id, follow=True), timeout=60))
    assert time.monotonic() - began >= SILENCE_S
    assert chunks and chunks[-1].eof


def test_a_server_with_grpc_defaults_cuts_the_same_stream():
    """The control: the same client against gRPC's default ping policy is cut, so the
    test above does exercise the pings."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with rpc.channel(f"127.0.0.1:{port}", keepalive_ms=KEEPALIVE_MS) as ch:
            watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest())
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as err:
                next(watch)  # nothing more is ever sent
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "ping" in (err.value.details() or "").lower()
    finally:
        server.stop(0)


def test_server_options_accept_the_channel_keepalive():
    """The pairing the fix relies on, for the production intervals too."""
    for keepalive in (KEEPALIVE_MS, rpc.KEEPALIVE_MS):
        client = dict(rpc.channel_options(keepalive))
        server = dict(rpc.server_options(keepalive))
        allowed = server["grpc.http2.min_ping_interval_without_data_ms"]
        assert allowed < client["grpc.keepalive_time_ms"]
        assert server["grpc.keepalive_permit_without_calls"] == 1
        assert server["grpc.so_reuseport"] == 0
