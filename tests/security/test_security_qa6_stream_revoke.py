"""A token revoked while its holder has a stream open: real gRPC, mTLS and tokens.

The interceptor checked a token only when a call started, so an agent's work stream
(or a `logs --follow`) opened before `cloudai token revoke` kept being served.
"""

from __future__ import annotations

import grpc
import pytest

from cloudai.convert import spec_to_pb
from cloudai.model import TaskSpec
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import master_agent_pb2 as apb
from cloudai.security.tokens import TokenStore
from tests.security.seckit import start_secure_master


@pytest.fixture
def cluster(tmp_path, pki):
    c = start_secure_master(tmp_path, pki)
    c.add_worker("worker-a")
    yield c
    c.close()


def submit(cluster) -> str:
    spec = spec_to_pb(TaskSpec(image="cloudai/sample-task:latest"))
    return cluster.cluster().SubmitTask(cpb.SubmitTaskRequest(spec=spec), timeout=5).task_id


def answer(agent, batch) -> None:
    """Answer a batch with no placements: the master offers the next one only then."""
    agent.SubmitPlacements(apb.PlacementBatch(agent_id="a-1", sequence=batch.sequence), timeout=5)


def test_revoked_agent_token_ends_its_open_work_stream(cluster):
    stream = cluster.agent().WatchSchedulingWork(apb.WatchRequest(agent_id="a-1"), timeout=20)
    first = submit(cluster)
    batch = next(stream)
    assert first in [t.task_id for t in batch.tasks]  # the stream works

    # Revoked while its batch is still owed, so no batch can be due before this.
    TokenStore(cluster.tokens_path).revoke(token=cluster.tokens["agent"])
    answer(cluster.agent(token="admin"), batch)  # the master now owes the stream more
    submit(cluster)

    with pytest.raises(grpc.RpcError) as err:
        for extra in stream:
            raise AssertionError(f"a revoked agent still received a batch: {extra}")
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in err.value.details()


def test_valid_agent_token_keeps_its_stream(cluster):
    """The control: without a revocation the new task arrives on the same stream."""
    agent = cluster.agent()
    stream = agent.WatchSchedulingWork(apb.WatchRequest(agent_id="a-1"), timeout=20)
    submit(cluster)
    answer(agent, next(stream))
    second = submit(cluster)

    for _ in range(5):  # the master may first re-offer the unplaced task alone
        batch = next(stream)
        if second in [t.task_id for t in batch.tasks]:
            break
        answer(agent, batch)
    else:
        raise AssertionError("the second task never reached the agent")
    stream.cancel()
