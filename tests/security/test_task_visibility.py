"""Submitters read only their own tasks, over real gRPC with mTLS and tokens.

GetTask, Explain and StreamLogs of another subject's task: PERMISSION_DENIED (as for
CancelTask). ListTasks: only the caller's tasks, filtered in the store query. Admin
sees everything; with tokens off (loopback) nothing changes.
"""

from __future__ import annotations

import grpc
import pytest

from cloudai.convert import state_to_pb
from cloudai.model import TaskState
from cloudai.proto import client_pb2 as cpb
from tests.master.harness import make_harness
from tests.security.test_auth_matrix import DENIED, OK, code_of, submit

NOT_FOUND = grpc.StatusCode.NOT_FOUND
NOWHERE = {"zone": "nowhere"}  # no worker matches: the task stays queued


@pytest.fixture(scope="module")
def owned(secure):
    """Tasks of alice (two), bob (one) and admin (one), submitted in that order,
    on a master of this module alone. name -> task id."""
    alice, bob = secure.cluster("alice", "alice"), secure.cluster("bob", "bob")
    return {
        "alice-1": submit(alice, selector=NOWHERE).task_id,
        "alice-2": submit(alice, selector=NOWHERE).task_id,
        "bob-1": submit(bob, selector=NOWHERE).task_id,
        "admin-1": submit(secure.cluster(), selector=NOWHERE).task_id,
    }


def read_codes(stub, task_id: str) -> dict[str, grpc.StatusCode]:
    """The status of every per-task read RPC for this caller."""
    return {
        "GetTask": code_of(stub.GetTask, cpb.GetTaskRequest(task_id=task_id)),
        "Explain": code_of(stub.Explain, cpb.ExplainRequest(task_id=task_id)),
        "StreamLogs": code_of(stub.StreamLogs, cpb.LogsRequest(task_id=task_id)),
    }


def listed(stub, **request) -> list[str]:
    resp = stub.ListTasks(cpb.ListTasksRequest(**request), timeout=5)
    return [t.id for t in resp.tasks]


def all_codes(code: grpc.StatusCode) -> dict[str, grpc.StatusCode]:
    return dict.fromkeys(("GetTask", "Explain", "StreamLogs"), code)


def test_submitter_cannot_read_anothers_task(secure, owned):
    bob = secure.cluster("bob", "bob")
    for name in ("alice-1", "admin-1"):
        assert read_codes(bob, owned[name]) == all_codes(DENIED), name
    alice = secure.cluster("alice", "alice")
    assert read_codes(alice, owned["bob-1"]) == all_codes(DENIED)


def test_denial_names_no_content(secure, owned):
    bob = secure.cluster("bob", "bob")
    with pytest.raises(grpc.RpcError) as err:
        bob.GetTask(cpb.GetTaskRequest(task_id=owned["alice-1"]), timeout=5)
    assert err.value.code() == DENIED
    assert err.value.details() == f"task {owned['alice-1']} belongs to another user"


def test_submitter_reads_its_own_tasks(secure, owned):
    alice = secure.cluster("alice", "alice")
    for name in ("alice-1", "alice-2"):
        assert read_codes(alice, owned[name]) == all_codes(OK), name
    task = alice.GetTask(cpb.GetTaskRequest(task_id=owned["alice-1"]), timeout=5)
    assert (task.id, task.spec.owner) == (owned["alice-1"], "alice")
    explain = alice.Explain(cpb.ExplainRequest(task_id=owned["alice-2"]), timeout=5)
    assert explain.task.id == owned["alice-2"]


def test_unknown_task_is_not_found_for_a_submitter(secure, owned):
    assert read_codes(secure.cluster("bob", "bob"), "t-does-not-exist") == all_codes(NOT_FOUND)


def test_admin_reads_every_task(secure, owned):
    admin = secure.cluster()
    for name, task_id in owned.items():
        assert read_codes(admin, task_id) == all_codes(OK), name


def test_list_tasks_returns_only_the_callers_tasks(secure, owned):
    alice, bob = secure.cluster("alice", "alice"), secure.cluster("bob", "bob")
    assert set(listed(alice)) == {owned["alice-1"], owned["alice-2"]}
    assert set(listed(bob)) == {owned["bob-1"]}
    assert set(listed(secure.cluster())) == set(owned.values())


def test_list_filter_applies_before_the_limit(secure, owned):
    """bob's and admin's tasks are newer than alice's: a filter applied after the
    limit would leave alice an empty page."""
    alice = secure.cluster("alice", "alice")
    assert listed(alice, limit=1) == [owned["alice-2"]]
    assert listed(alice, limit=2) == [owned["alice-1"], owned["alice-2"]]


def test_list_filters_combine_with_the_owner(secure, owned):
    alice = secure.cluster("alice", "alice")
    pending = [state_to_pb(TaskState.PENDING)]
    assert set(listed(alice, states=pending)) == {owned["alice-1"], owned["alice-2"]}
    assert listed(alice, states=[state_to_pb(TaskState.RUNNING)]) == []
    assert listed(alice, worker_id="worker-a") == []


@pytest.mark.parametrize("who", ["worker-a", "agent"])
def test_worker_and_agent_cannot_read_tasks(secure, owned, who):
    stub = secure.cluster(who, who)
    assert read_codes(stub, owned["alice-1"]) == all_codes(DENIED)
    assert code_of(stub.ListTasks, cpb.ListTasksRequest()) == DENIED


def test_without_tokens_every_caller_reads_every_task(tmp_path):
    """Loopback development mode: no identity, so nothing is filtered, and an owner
    given in the request is kept as is."""
    h = make_harness(tmp_path)
    try:
        ids = {
            owner: submit(h.cluster, owner=owner, selector=NOWHERE).task_id
            for owner in ("alice", "bob")
        }
        assert set(listed(h.cluster)) == set(ids.values())
        for task_id in ids.values():
            assert read_codes(h.cluster, task_id) == all_codes(OK)
        task = h.cluster.GetTask(cpb.GetTaskRequest(task_id=ids["bob"]), timeout=5)
        assert task.spec.owner == "bob"
    finally:
        h.close()
