"""WorkerNode against an in-process fake master, over real loopback gRPC."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import docker
import grpc
import pytest

from cloudai.config import WorkerSettings
from cloudai.convert import spec_to_pb, state_to_pb
from cloudai.model import TaskSpec, TaskState
from cloudai.proto import common_pb2
from cloudai.proto import master_worker_pb2 as mw
from cloudai.proto import master_worker_pb2_grpc as mw_grpc
from cloudai.rpc import channel
from cloudai.worker.containers import container_name, labels
from cloudai.worker.node import WorkerNode
from tests.worker.fake_master import FakeMaster, free_port
from tests.worker.workerkit import (
    BASE_IMAGE,
    make_settings,
    new_task_id,
    remove_worker_containers,
)

RUNNING = state_to_pb(TaskState.RUNNING)
pytestmark = pytest.mark.docker


@pytest.fixture
def master() -> Iterator[FakeMaster]:
    fake = FakeMaster()
    yield fake
    fake.stop()


@pytest.fixture
def start_node(docker_client: docker.DockerClient) -> Iterator[Callable[..., WorkerNode]]:
    nodes: list[WorkerNode] = []

    def start(master_port: int, **overrides: object) -> WorkerNode:
        settings = make_settings(master=f"127.0.0.1:{master_port}", **overrides)
        node = WorkerNode(settings)
        nodes.append(node)
        node.start()
        return node

    yield start
    for node in nodes:
        node.stop(grace=0.5, kill_running=True)
        remove_worker_containers(docker_client, node.settings.id)


def worker_stub(node: WorkerNode) -> mw_grpc.WorkerStub:
    return mw_grpc.WorkerStub(channel(node.address))


def assign(node: WorkerNode, task_id: str, *command: str, attempt: int = 1, **kw: object):
    spec = TaskSpec(image=BASE_IMAGE, command=list(command), **kw)  # type: ignore[arg-type]
    request = mw.AssignTaskRequest(task_id=task_id, attempt=attempt, spec=spec_to_pb(spec))
    return worker_stub(node).AssignTask(request, timeout=5)


def terminal_report(master: FakeMaster, task_id: str) -> mw.TaskStatusReport | None:
    done = [r for r in master.reports_for(task_id) if r.state != RUNNING]
    return done[0] if done else None


def test_registers_with_real_capacity_and_heartbeats_telemetry(
    master: FakeMaster, start_node: Callable[..., WorkerNode]
) -> None:
    node = start_node(master.start(), labels={"zone": "a"})
    assert master.wait_for(lambda m: len(m.heartbeats) >= 2, timeout=5)
    reg = master.registrations[0]
    assert reg.worker_id == node.settings.id and reg.address == node.address
    assert master.heartbeats[0].address == node.address  # which registration it is
    assert node.address == f"127.0.0.1:{node.port}" and node.port > 0
    assert reg.capacity.cpu >= 1 and reg.capacity.memory_bytes > 0
    assert dict(reg.labels) == {"zone": "a"} and reg.hostname and reg.version
    assert reg.telemetry.memory_total_bytes > 0
    assert BASE_IMAGE in reg.cached_images
    beat = master.heartbeats[-1]
    assert beat.worker_id == node.settings.id
    assert beat.telemetry.memory_total_bytes > 0 and beat.telemetry.timestamp > 0
    assert 0 <= beat.telemetry.cpu_percent <= 100 and beat.telemetry.disk_percent > 0


def test_reregisters_when_the_master_forgets_it(
    master: FakeMaster, start_node: Callable[..., WorkerNode]
) -> None:
    start_node(master.start())
    assert master.wait_for(lambda m: len(m.heartbeats) >= 1, timeout=5)
    assert len(master.registrations) == 1
    master.forget_once = True
    assert master.wait_for(lambda m: len(m.registrations) >= 2, timeout=5)


def test_registers_once_a_late_master_comes_up(
    master: FakeMaster, start_node: Callable[..., WorkerNode], capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    start_node(port)
    time.sleep(1.2)
    assert "unreachable, retrying in" in capsys.readouterr().out
    master.start(port)
    assert master.wait_for(lambda m: len(m.registrations) >= 1, timeout=8)
    assert master.wait_for(lambda m: len(m.heartbeats) >= 1, timeout=5)


def test_reregisters_after_a_master_outage(
    master: FakeMaster, start_node: Callable[..., WorkerNode]
) -> None:
    port = master.start()
    start_node(port)
    assert master.wait_for(lambda m: len(m.heartbeats) >= 1, timeout=5)
    master.stop()
    time.sleep(0.6)
    again = FakeMaster()
    try:
        again.start(port)
        assert again.wait_for(lambda m: len(m.registrations) >= 1, timeout=8)
    finally:
        again.stop()


def test_task_reports_running_then_its_result(
    master: FakeMaster, start_node: Callable[..., WorkerNode]
) -> None:
    node = start_node(master.start())
    task_id = new_task_id()
    resp = assign(node, task_id, "sh", "-c", "echo hi; sleep 0.3; exit 3")
    assert resp.accepted
    again = assign(node, task_id, "sh", "-c", "echo hi; sleep 0.3; exit 3")
    assert again.accepted and "already" in again.message
    assert master.wait_for(lambda m: terminal_report(m, task_id) is not None, timeout=10)
    running, done = master.reports_for(task_id)
    assert running.state == RUNNING and running.started_at > 0 and running.container_id
    assert done.state == state_to_pb(TaskState.FAILED)
    assert (done.exit_code, done.has_exit_code, done.reason) == (3, True, "nonzero_exit")
    assert "hi" in done.log_tail and done.finished_at >= done.started_at > 0
    assert done.worker_id == node.settings.id
    assert master.wait_for(lambda m: m.heartbeats and not m.heartbeats[-1].running, timeout=5)


def test_heartbeat_lists_running_attempts(
    master: FakeMaster, start_node: Callable[..., WorkerNode]
) -> None:
    node = start_node(master.start())
    task_id = new_task_id()
    assert assign(node, task_id, "sleep", "30").accepted

    def listed(m: FakeMaster) -> bool:
        return bool(m.heartbeats) and [
            (r.task_id, r.attempt) for r in m.heartbeats[-1].running
        ] == [(task_id, 1)]

    assert master.wait_for(listed, timeout=5)


@pytest.mark.parametrize(
    ("task_id", "attempt", "image"),
    [("", 1, BASE_IMAGE), ("t-1", 0, BASE_IMAGE), ("t-1", 1, "Bad Image!")],
)
def test_assign_rejects_invalid_requests(
    master: FakeMaster,
    start_node: Callable[..., WorkerNode],
    task_id: str,
    attempt: int,
    image: str,
) -> None:
    node = start_node(master.start())
    request = mw.AssignTaskRequest(
        task_id=task_id, attempt=attempt, spec=common_pb2.TaskSpec(image=image)
    )
    with pytest.raises(grpc.RpcError) as err:
        worker_stub(node).AssignTask(request, timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_cancel_over_rpc_reports_cancelled(
    master: FakeMaster, start_node: Callable[..., WorkerNode], docker_client: docker.DockerClient
) -> None:
    node = start_node(master.start())
    task_id = new_task_id()
    assert assign(node, task_id, "sleep", "30").accepted
    assert master.wait_for(lambda m: m.reports_for(task_id), timeout=10)
    stub = worker_stub(node)
    assert stub.CancelTask(mw.CancelTaskRequest(task_id=task_id, attempt=1), timeout=5).found
    assert master.wait_for(lambda m: terminal_report(m, task_id) is not None, timeout=10)
    report = terminal_report(master, task_id)
    assert report is not None
    assert (report.state, report.reason) == (state_to_pb(TaskState.CANCELLED), "cancelled")
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(container_name(task_id, 1))
    missing = mw.CancelTaskRequest(task_id=new_task_id(), attempt=1)
    assert not stub.CancelTask(missing, timeout=5).found


def test_get_task_logs_follows_until_eof(
    master: FakeMaster, start_node: Callable[..., WorkerNode]
) -> None:
    node = start_node(master.start())
    task_id = new_task_id()
    script = "for i in 1 2 3 4; do echo tick-$i; sleep 0.2; done"
    assert assign(node, task_id, "sh", "-c", script).accepted
    assert master.wait_for(lambda m: m.reports_for(task_id), timeout=10)
    request = mw.GetTaskLogsRequest(task_id=task_id, attempt=1, follow=True)
    chunks = list(worker_stub(node).GetTaskLogs(request, timeout=10))
    assert chunks[-1].eof and not any(c.eof for c in chunks[:-1])
    text = "".join(c.data for c in chunks)
    assert "tick-1" in text and "tick-4" in text
    # After the container is gone the kept tail answers, tail_lines applied.
    assert master.wait_for(lambda m: terminal_report(m, task_id) is not None, timeout=10)
    request = mw.GetTaskLogsRequest(task_id=task_id, attempt=1, tail_lines=1)
    assert "".join(c.data for c in worker_stub(node).GetTaskLogs(request, timeout=5)) == "tick-4\n"
    unknown = mw.GetTaskLogsRequest(task_id=new_task_id(), attempt=1)
    with pytest.raises(grpc.RpcError) as err:
        list(worker_stub(node).GetTaskLogs(unknown, timeout=5))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_master_stop_list_kills_a_superseded_attempt_without_a_report(
    master: FakeMaster, start_node: Callable[..., WorkerNode]
) -> None:
    node = start_node(master.start())
    task_id = new_task_id()
    assert assign(node, task_id, "sleep", "30").accepted
    assert master.wait_for(lambda m: m.reports_for(task_id), timeout=10)
    master.stop_next = [common_pb2.TaskRef(task_id=task_id, attempt=1)]
    deadline = time.monotonic() + 10
    while node.running() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert node.running() == []
    time.sleep(0.3)
    assert terminal_report(master, task_id) is None  # fenced: nothing reported


def test_refused_running_report_stops_the_attempt(
    master: FakeMaster, start_node: Callable[..., WorkerNode]
) -> None:
    master.refuse_tasks = {"t-stale"}
    node = start_node(master.start())
    began = time.monotonic()
    assert assign(node, "t-stale", "sleep", "30").accepted
    deadline = began + 10
    while (node.running() or master.report_calls == 0) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert node.running() == [] and time.monotonic() - began < 10
    assert master.report_calls == 1  # the RUNNING report, refused; no result sent after it


def test_drain_is_learnt_from_heartbeats_but_the_master_decides_placement(
    master: FakeMaster, start_node: Callable[..., WorkerNode]
) -> None:
    master.drain = True
    node = start_node(master.start())
    assert master.wait_for(lambda m: len(m.heartbeats) >= 2, timeout=5)
    assert node.membership.master_drain
    # The flag may be stale (a drain lifted since the last heartbeat): an assignment
    # from the master, which places nothing on a drained worker, is accepted.
    assert assign(node, new_task_id(), "true").accepted


def test_readopts_a_leftover_container_and_reports_its_result(
    master: FakeMaster,
    start_node: Callable[..., WorkerNode],
    docker_client: docker.DockerClient,
) -> None:
    settings = make_settings()
    task_id = new_task_id()
    docker_client.containers.run(
        BASE_IMAGE,
        ["sh", "-c", "sleep 0.8; echo left; exit 5"],
        name=container_name(task_id, 2),
        labels=labels(task_id, 2, settings.id, 0.0),
        detach=True,
    )
    start_node(master.start(), id=settings.id)
    assert master.wait_for(lambda m: m.registrations, timeout=5)
    assert [(r.task_id, r.attempt) for r in master.registrations[0].running] == [(task_id, 2)]
    assert master.wait_for(lambda m: terminal_report(m, task_id) is not None, timeout=10)
    report = terminal_report(master, task_id)
    assert report is not None and (report.attempt, report.exit_code) == (2, 5)
    assert "left" in report.log_tail


def test_settings_reach_the_node(settings: WorkerSettings) -> None:
    node = WorkerNode(settings)
    assert node.capacity.cpu >= 1 and node.capacity.memory_bytes > 0
    node.stop()


def test_a_long_registration_outage_is_logged_sparsely(
    start_node: Callable[..., WorkerNode], capsys: pytest.CaptureFixture[str]
) -> None:
    """The 1st, 2nd, 4th, 8th... failure in a row is said, with the count: a worker
    whose master stays down (or refuses its token) does not log every few seconds."""
    node = start_node(free_port(), heartbeat_interval=0.5)  # a try every 0.5 s
    out, deadline = "", time.monotonic() + 30
    while "(failed 8 times" not in out and time.monotonic() < deadline:
        time.sleep(0.5)
        out += capsys.readouterr().out
    time.sleep(1.0)  # a few more tries, none of them said
    node.stop(grace=0.5)
    out += capsys.readouterr().out
    lines = [x for x in out.splitlines() if "retrying in" in x]
    assert "unreachable, retrying in" in lines[0] and "times in a row" not in lines[0]
    counts = [int(x.split("(failed ")[1].split()[0]) for x in lines[1:]]
    assert counts[:3] == [2, 4, 8], lines
    assert len(lines) <= 5, lines
