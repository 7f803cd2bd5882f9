"""QA10: a duplicate AssignTask for an attempt that already ran on the worker.

A retried or replayed AssignTask of an attempt that still runs was idempotent, but
once the attempt had ended it was accepted again and ran a second container for
the same (task, attempt): a second result for an attempt the master had already
recorded (or had fenced), and the task's command run twice. Hammering AssignTask
and CancelTask for one attempt ran it dozens of times. Now the worker answers
"already ran here" and runs nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from cloudai.convert import spec_to_pb, state_to_pb
from cloudai.model import TaskSpec, TaskState
from cloudai.proto import master_worker_pb2 as mw
from cloudai.proto import master_worker_pb2_grpc as mw_grpc
from cloudai.rpc import channel
from cloudai.worker.node import WorkerNode
from tests.dockerkit import require_docker
from tests.worker.fake_master import FakeMaster
from tests.worker.workerkit import BASE_IMAGE, make_settings, remove_worker_containers

pytestmark = pytest.mark.docker
RUNNING = state_to_pb(TaskState.RUNNING)


@pytest.fixture
def cluster() -> Iterator[tuple[FakeMaster, WorkerNode]]:
    client = require_docker(BASE_IMAGE)
    master = FakeMaster()
    port = master.start()
    node = WorkerNode(make_settings(master=f"127.0.0.1:{port}"))
    node.start()
    try:
        yield master, node
    finally:
        node.stop(grace=0.5, kill_running=True)
        master.stop()
        remove_worker_containers(client, node.settings.id)
        client.close()


def _assign(node: WorkerNode, task_id: str) -> mw.AssignTaskResponse:
    spec = spec_to_pb(TaskSpec(image=BASE_IMAGE, command=["true"]))
    request = mw.AssignTaskRequest(task_id=task_id, attempt=1, spec=spec)
    with channel(node.address) as ch:
        return mw_grpc.WorkerStub(ch).AssignTask(request, timeout=10)


def _settled(node: WorkerNode, key: tuple[str, int]) -> None:
    deadline = time.time() + 30
    while key in node.running():
        assert time.time() < deadline, f"{key} never settled"
        time.sleep(0.05)


def _ends(master: FakeMaster, task_id: str) -> int:
    return sum(1 for r in master.reports_for(task_id) if r.state != RUNNING)


@pytest.mark.parametrize("refused", [False, True], ids=["acknowledged", "fenced"])
def test_an_attempt_that_ran_is_not_run_again(cluster, refused):
    master, node = cluster
    task_id = f"t-qa10dup{int(refused)}"
    if refused:  # the master refuses its report: the attempt is fenced
        master.refuse_tasks.add(task_id)
    first = _assign(node, task_id)
    assert first.accepted and first.message == "accepted"
    assert master.wait_for(lambda m: m.report_calls >= 1, timeout=30)
    _settled(node, (task_id, 1))
    calls = master.report_calls
    for _ in range(3):
        again = _assign(node, task_id)
        assert again.accepted and again.message == "already ran here"
    time.sleep(1.5)  # a second run would start and report within this
    assert (task_id, 1) not in node.running()
    assert master.report_calls == calls
    assert _ends(master, task_id) == (0 if refused else 1)
