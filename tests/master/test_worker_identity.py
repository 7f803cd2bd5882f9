"""Who holds a worker id, over the real protocol: a live worker's id is not taken over
from another address or host, and heartbeats say which registration they belong to."""

from __future__ import annotations

import time

import grpc
import pytest

from cloudai.proto import common_pb2 as pb
from cloudai.proto import master_worker_pb2 as mw

from .harness import GiB, make_harness

TIMEOUT_S = 1.0


@pytest.fixture
def h(tmp_path):
    harness = make_harness(tmp_path, heartbeat_timeout=TIMEOUT_S)
    yield harness
    harness.close()


def register(h, address: str, hostname: str = "host-a", wid: str = "w1"):
    req = mw.RegisterWorkerRequest(
        worker_id=wid,
        address=address,
        capacity=pb.Resources(cpu=2, memory_bytes=GiB),
        hostname=hostname,
    )
    return h.mw.RegisterWorker(req, timeout=5)


def heartbeat(h, address: str, wid: str = "w1") -> bool:
    req = mw.HeartbeatRequest(worker_id=wid, address=address)
    return h.mw.SendHeartbeat(req, timeout=5).known


def address_of(h, wid: str = "w1") -> str:
    return h.master.registry.get(wid).record.address


def test_live_id_from_another_address_is_refused(h):
    assert register(h, "127.0.0.1:7001").accepted
    with pytest.raises(grpc.RpcError) as err:
        register(h, "127.0.0.1:7002")
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert err.value.details().startswith(
        "worker id w1 is in use by a live worker at 127.0.0.1:7001 (last heartbeat 0s ago); "
        "stop it or pick another --id"
    )
    assert address_of(h) == "127.0.0.1:7001"
    assert heartbeat(h, "127.0.0.1:7001")


def test_same_address_on_another_host_is_refused(h):
    """Two machines both advertising localhost:50052 (the defaults) are two workers."""
    assert register(h, "localhost:50052", "host-a").accepted
    with pytest.raises(grpc.RpcError) as err:
        register(h, "localhost:50052", "host-b")
    assert "at localhost:50052 on host host-a" in err.value.details()


def test_restart_at_the_same_address_is_accepted_at_once(h):
    assert register(h, "127.0.0.1:7001").accepted
    assert register(h, "127.0.0.1:7001").accepted


def test_another_address_is_accepted_once_the_holder_timed_out(h):
    assert register(h, "127.0.0.1:7001").accepted
    time.sleep(TIMEOUT_S + 0.2)
    assert register(h, "127.0.0.1:7002").accepted
    assert address_of(h) == "127.0.0.1:7002"


def test_heartbeat_from_a_superseded_address_is_not_known(h):
    """It does not keep the worker alive: it is told to register again."""
    assert register(h, "127.0.0.1:7001").accepted
    time.sleep(TIMEOUT_S + 0.2)
    assert register(h, "127.0.0.1:7002").accepted
    seen = h.master.registry.get("w1").record.last_heartbeat
    assert not heartbeat(h, "127.0.0.1:7001")
    assert h.master.registry.get("w1").record.last_heartbeat == seen
    assert heartbeat(h, "127.0.0.1:7002")
    assert heartbeat(h, "")  # a worker of an older version sends no address


def test_heartbeat_address_is_checked_like_a_registration(h):
    assert register(h, "127.0.0.1:7001").accepted
    with pytest.raises(grpc.RpcError) as err:
        heartbeat(h, "not an address")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
