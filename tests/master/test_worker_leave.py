"""A worker that shuts down gracefully says it leaves (a heartbeat with `leaving`):
the master places nothing more on it at once, but leaves its running tasks to the
heartbeat timeout, and a restart of it registers at once, from any address.
In-process master, fake workers speaking the real protocol over loopback gRPC."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from cloudai.cli.views import workers_table
from cloudai.convert import spec_to_pb, state_to_pb
from cloudai.model import Resources, TaskState
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import common_pb2 as pb
from cloudai.proto import master_worker_pb2 as mw

from .harness import FakeWorker, FakeWorkerServicer, GiB, Harness, make_harness, serve_worker
from .test_tasks import spec

TIMEOUT_S = 2.0


@pytest.fixture
def h(tmp_path):
    harness = make_harness(tmp_path, heartbeat_timeout=TIMEOUT_S, agent_timeout=0.05)
    yield harness
    harness.close()


@pytest.fixture
def keep_alive(h):
    """Heartbeat a fake worker in the background until the test ends."""
    done = threading.Event()
    threads = []

    def start(w: FakeWorker) -> None:
        request = mw.HeartbeatRequest(worker_id=w.worker_id, address=_address(w))
        thread = threading.Thread(target=_beat, args=(h, request, done), daemon=True)
        thread.start()
        threads.append(thread)

    yield start
    done.set()
    for thread in threads:
        thread.join(5)


def _beat(h: Harness, request: mw.HeartbeatRequest, done: threading.Event) -> None:
    while not done.wait(0.2):
        h.mw.SendHeartbeat(request, timeout=5)


def _address(w: FakeWorker) -> str:
    return f"127.0.0.1:{w.port}"


def _leave(h: Harness, w: FakeWorker, running=(), address: str = "") -> mw.HeartbeatResponse:
    refs = [pb.TaskRef(task_id=t, attempt=a) for t, a in running]
    request = mw.HeartbeatRequest(
        worker_id=w.worker_id, address=address or _address(w), running=refs, leaving=True
    )
    return h.mw.SendHeartbeat(request, timeout=5)


def _workers(h: Harness) -> dict[str, pb.WorkerInfo]:
    return {w.id: w for w in h.cluster.ListWorkers(cpb.ListWorkersRequest(), timeout=5).workers}


def _submit(h: Harness, **kw) -> str:
    return h.cluster.SubmitTask(
        cpb.SubmitTaskRequest(spec=spec_to_pb(spec(**kw))), timeout=5
    ).task_id


def _task(h: Harness, task_id: str) -> pb.Task:
    return h.cluster.GetTask(cpb.GetTaskRequest(task_id=task_id), timeout=5)


def _wait(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _running_on(h: Harness, w: FakeWorker, **kw) -> str:
    """A task pinned to `w`, assigned to it and reported RUNNING."""
    task_id = _submit(h, pinned_worker=w.worker_id, **kw)
    _wait(lambda: (task_id, 1) in w.servicer.assigned, 5, "the assignment")
    report = mw.TaskStatusReport(
        worker_id=w.worker_id,
        task_id=task_id,
        attempt=1,
        state=state_to_pb(TaskState.RUNNING),
        started_at=time.time(),
    )
    assert h.mw.ReportTaskStatus(report, timeout=5).accepted
    return task_id


def test_a_leaving_worker_gets_no_new_task_but_keeps_its_own_until_the_timeout(h, keep_alive):
    w1, w2 = h.add_worker("w1"), h.add_worker("w2")
    keep_alive(w2)
    mine = _running_on(h, w1)

    left_at = time.time()
    assert _leave(h, w1, running=[(mine, 1)]).known
    assert _workers(h)["w1"].health == pb.WORKER_HEALTH_INACTIVE
    assert h.master.status().workers_inactive == 1
    # Not lost: its container runs on, for a restarted worker to re-adopt.
    assert _task(h, mine).state == pb.TASK_STATE_RUNNING and _task(h, mine).worker_id == "w1"
    # The leave is not a health change for the store: it is undone by a restart.
    assert {r.id: r.health.value for r in h.master.store.list_workers()}["w1"] == "ACTIVE"

    new = [_submit(h) for _ in range(4)]
    _wait(lambda: len(w2.servicer.assigned) == 4, 5, "the new tasks on w2")
    assert sorted(t for t, _ in w2.servicer.assigned) == sorted(new)
    assert w1.servicer.assigned == [(mine, 1)]  # no dispatch to the leaving worker
    with pytest.raises(grpc.RpcError) as pinned:  # a manual pin says why it is refused
        _submit(h, pinned_worker="w1")
    assert "is inactive: it shut down" in pinned.value.details()
    # A heartbeat that was in flight at the leave does not make it ACTIVE again.
    late = mw.HeartbeatRequest(worker_id="w1", address=_address(w1))
    assert not h.mw.SendHeartbeat(late, timeout=5).known
    assert _workers(h)["w1"].health == pb.WORKER_HEALTH_INACTIVE

    # The heartbeat timeout still decides about its task: lost then, and only then.
    # It is pinned to w1, so it is not requeued elsewhere: it fails (see below).
    lost = _wait(lambda: _task(h, mine).state == pb.TASK_STATE_FAILED, 3 * TIMEOUT_S, "loss")
    assert lost and time.time() - left_at >= TIMEOUT_S
    attempt = _task(h, mine).attempts[0]
    assert (attempt.worker_id, attempt.reason) == ("w1", "worker_lost")
    assert {r.id: r.health.value for r in h.master.store.list_workers()}["w1"] == "INACTIVE"


def test_a_restart_of_a_worker_that_left_registers_at_once_at_another_address(h):
    w1 = h.add_worker("w1")
    mine = _running_on(h, w1)
    assert _leave(h, w1, running=[(mine, 1)]).known
    # The restarted process serves on another port: the id is free, as it left.
    server, port = serve_worker(FakeWorkerServicer())
    try:
        resp = h.mw.RegisterWorker(
            mw.RegisterWorkerRequest(
                worker_id="w1",
                address=f"127.0.0.1:{port}",
                capacity=w1.capacity,
                hostname="test",
                running=[pb.TaskRef(task_id=mine, attempt=1)],
            ),
            timeout=5,
        )
        assert resp.accepted and not resp.stop  # it re-adopts its container
        info = _workers(h)["w1"]
        assert info.health == pb.WORKER_HEALTH_ACTIVE and info.address == f"127.0.0.1:{port}"
        task = _task(h, mine)
        assert (task.state, task.attempt) == (pb.TASK_STATE_RUNNING, 1)
    finally:
        server.stop(0)


def test_a_leave_from_another_address_than_the_registered_one_is_ignored(h):
    w1 = h.add_worker("w1")
    assert not _leave(h, w1, address="127.0.0.1:1").known  # a superseded process
    assert _workers(h)["w1"].health == pb.WORKER_HEALTH_ACTIVE
    assert not h.mw.SendHeartbeat(mw.HeartbeatRequest(worker_id="ghost", leaving=True)).known


def test_tasks_pinned_to_a_lost_worker_fail_instead_of_waiting_for_ever(h, keep_alive):
    """Its running task and one queued behind it (the worker is full): once the worker
    is lost, placement would never send them elsewhere, so they fail, with a result
    naming the worker. A task not pinned to it is requeued and runs elsewhere."""
    w1, w2 = h.add_worker("w1"), h.add_worker("w2")
    keep_alive(w2)
    big = Resources(4.0, GiB, 0.0)
    mine = _running_on(h, w1, resources=big)
    beat = mw.HeartbeatRequest(
        worker_id="w1", address=_address(w1), running=[pb.TaskRef(task_id=mine, attempt=1)]
    )
    assert h.mw.SendHeartbeat(beat, timeout=5).known  # its last word: it runs `mine`
    assert [r.task_id for r in _workers(h)["w1"].running] == [mine]
    queued = _submit(h, pinned_worker="w1", resources=big)
    free = _submit(h)
    _wait(lambda: len(w1.servicer.assigned) + len(w2.servicer.assigned) == 2, 5, "dispatch")
    assert _task(h, queued).state == pb.TASK_STATE_PENDING  # w1 is full
    silent_at = time.time()
    for task_id in (mine, queued):
        _wait(lambda t=task_id: _task(h, t).state == pb.TASK_STATE_FAILED, 4 * TIMEOUT_S, "fail")
        task = _task(h, task_id)
        assert task.reason == "worker_lost"
        assert task.message == (
            "pinned worker w1 was lost (no heartbeat within the timeout); submit the task "
            "again, without --worker or pinned to a live worker"
        )
    assert time.time() - silent_at >= TIMEOUT_S - 0.5  # not before the timeout
    assert [a.reason for a in _task(h, mine).attempts] == ["worker_lost"]
    assert list(_task(h, queued).attempts) == []
    [result] = h.master.store.get_results(queued)
    assert (result.worker_id, result.reason) == ("w1", "worker_lost")
    assert _task(h, free).state != pb.TASK_STATE_FAILED
    # A late report of the lost attempt is refused, saying why (not "attempt 1 is
    # superseded by attempt 1").
    late = mw.TaskStatusReport(worker_id="w1", task_id=mine, attempt=1,
                               state=state_to_pb(TaskState.SUCCEEDED))  # fmt: skip
    ack = h.mw.ReportTaskStatus(late, timeout=5)
    assert not ack.accepted
    assert ack.message == "task already ended (FAILED, worker_lost) without w1"
    # Its last report no longer counts: the task it listed is not its own any more,
    # and the table shows no CPU or memory use for a process that is gone.
    lost_w1 = _workers(h)["w1"]
    assert list(lost_w1.running) == []
    row = next(line for line in workers_table([lost_w1]).splitlines() if "w1" in line)
    cells = [c.strip() for c in row.split("│")[1:-1]]
    assert cells[5:8] == ["-", "-", "0"]  # CPU, MEM, TASKS
