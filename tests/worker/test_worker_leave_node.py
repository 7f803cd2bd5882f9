"""A stopping WorkerNode tells the master it leaves: after its last results, with
its running attempts, without stopping their containers (unless kill_running), and
within a bounded wait when the master does not answer. Fake master, real gRPC and
real Docker."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import docker
import pytest

from cloudai.convert import spec_to_pb, state_to_pb
from cloudai.model import TaskSpec, TaskState
from cloudai.proto import master_worker_pb2 as mw
from cloudai.proto import master_worker_pb2_grpc as mw_grpc
from cloudai.rpc import channel
from cloudai.worker.containers import LABEL_TASK
from cloudai.worker.node import WorkerNode
from tests.worker.fake_master import FakeMaster
from tests.worker.workerkit import (
    BASE_IMAGE,
    make_settings,
    new_task_id,
    remove_worker_containers,
)

RUNNING = state_to_pb(TaskState.RUNNING)
CANCELLED = state_to_pb(TaskState.CANCELLED)
pytestmark = pytest.mark.docker


class OrderedMaster(FakeMaster):
    """Records heartbeats and reports in one sequence; can hang heartbeats."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[object] = []
        self.hang = threading.Event()
        self.release = threading.Event()

    def SendHeartbeat(self, request, context):  # noqa: N802 - gRPC naming
        if self.hang.is_set():
            self.release.wait(30)  # a master that does not answer
        with self._cond:
            self.calls.append(request)
        return super().SendHeartbeat(request, context)

    def ReportTaskStatus(self, request, context):  # noqa: N802
        with self._cond:
            self.calls.append(request)
        return super().ReportTaskStatus(request, context)

    def stop(self) -> None:
        self.release.set()
        super().stop()


@pytest.fixture
def master() -> Iterator[OrderedMaster]:
    fake = OrderedMaster()
    yield fake
    fake.stop()


@pytest.fixture
def node(master: OrderedMaster, docker_client: docker.DockerClient) -> Iterator[WorkerNode]:
    n = WorkerNode(make_settings(master=f"127.0.0.1:{master.start()}"))
    n.start()
    assert master.wait_for(lambda m: m.heartbeats, timeout=10)
    yield n
    n.stop(grace=0.5, kill_running=True)
    remove_worker_containers(docker_client, n.settings.id)


def _run_sleep(node: WorkerNode, master: FakeMaster) -> str:
    task_id = new_task_id()
    spec = TaskSpec(image=BASE_IMAGE, command=["sleep", "60"])
    request = mw.AssignTaskRequest(task_id=task_id, attempt=1, spec=spec_to_pb(spec))
    with channel(node.address) as ch:
        assert mw_grpc.WorkerStub(ch).AssignTask(request, timeout=5).accepted
    assert master.wait_for(lambda m: m.reports_for(task_id), timeout=30)
    return task_id


def _leaves(master: OrderedMaster) -> list[mw.HeartbeatRequest]:
    return [c for c in master.calls if isinstance(c, mw.HeartbeatRequest) and c.leaving]


def _timed(fn: Callable[[], object]) -> float:
    began = time.monotonic()
    fn()
    return time.monotonic() - began


def test_a_graceful_stop_says_it_leaves_and_keeps_the_container_running(
    node: WorkerNode, master: OrderedMaster, docker_client: docker.DockerClient
) -> None:
    task_id = _run_sleep(node, master)
    node.stop(grace=1.0)
    (leave,) = _leaves(master)
    assert master.calls[-1] is leave  # nothing after it: heartbeats stopped first
    assert leave.address == node.address and leave.worker_id == node.settings.id
    assert [(r.task_id, r.attempt) for r in leave.running] == [(task_id, 1)]
    assert [r.state for r in master.reports_for(task_id)] == [RUNNING]
    # Left for a restarted worker to re-adopt.
    (container,) = docker_client.api.containers(filters={"label": f"{LABEL_TASK}={task_id}"})
    assert container["State"] == "running"


def test_kill_running_reports_cancelled_before_it_leaves(
    node: WorkerNode, master: OrderedMaster
) -> None:
    task_id = _run_sleep(node, master)
    node.stop(grace=3.0, kill_running=True)
    ends = [
        i
        for i, c in enumerate(master.calls)
        if isinstance(c, mw.TaskStatusReport) and c.task_id == task_id and c.state == CANCELLED
    ]
    (leave,) = _leaves(master)
    assert len(ends) == 1 and ends[0] < master.calls.index(leave)


def test_a_master_that_does_not_answer_delays_the_stop_by_two_seconds_at_most(
    node: WorkerNode, master: OrderedMaster
) -> None:
    master.hang.set()
    time.sleep(0.5)  # a heartbeat is in flight now (every 0.2 s)
    assert _timed(lambda: node.stop(grace=1.0)) < 3.0
    assert node.wait(0) and not _leaves(master)
