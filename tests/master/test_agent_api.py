"""The MasterAgent surface over real gRPC: batches on change, validated commits."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from cloudai.cli import views
from cloudai.cli.client_cmds import _dry_run_text
from cloudai.convert import spec_to_pb
from cloudai.model import Resources, TaskSpec
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import common_pb2 as pb
from cloudai.proto import master_agent_pb2 as apb

from .harness import GiB, make_harness


@pytest.fixture
def h(tmp_path):
    harness = make_harness(tmp_path)
    yield harness
    harness.close()


def submit(h, cpu=1.0, mem=GiB, **kw) -> str:
    spec = TaskSpec(image="cloudai/sample-task:latest", resources=Resources(cpu, mem, 0), **kw)
    return h.cluster.SubmitTask(cpb.SubmitTaskRequest(spec=spec_to_pb(spec)), timeout=5).task_id


def first_batch(h, timeout=5.0) -> apb.SchedulingBatch:
    stream = h.agent.WatchSchedulingWork(apb.WatchRequest(agent_id="test-agent"), timeout=timeout)
    batch = next(iter(stream))
    stream.cancel()
    return batch


def decision(task_id: str, worker: str, attempt: int = 0) -> apb.Decision:
    return apb.Decision(task_id=task_id, attempt=attempt, worker_id=worker, policy="test")


def test_batch_snapshot_carries_tasks_and_workers(h):
    h.add_worker("w1", cpu=4, labels={"zone": "a"})
    tid = submit(h, cpu=2)
    batch = first_batch(h)
    assert [t.task_id for t in batch.tasks] == [tid]
    w = batch.workers[0]
    assert (w.worker_id, w.capacity.cpu, w.labels["zone"]) == ("w1", 4, "a")
    assert w.health == pb.WORKER_HEALTH_ACTIVE


def test_batch_arrives_within_milliseconds_of_submit(h):
    h.add_worker("w1")
    stream = h.agent.WatchSchedulingWork(apb.WatchRequest(agent_id="a"), timeout=10)
    got: list[float] = []

    def consume():
        for _ in stream:
            got.append(time.perf_counter())
            return

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.3)  # the stream is open and idle
    sent = time.perf_counter()
    submit(h)
    t.join(5)
    stream.cancel()
    assert got and got[0] - sent < 0.5  # no polling interval in the way


def test_malicious_agent_placements_are_rejected_and_nothing_overcommits(h):
    h.add_worker("w1", cpu=2)
    dead = h.add_worker("dead", cpu=8)
    dead.server.stop(0)
    h.master.registry.get("dead").record.health = h.master.registry.get(
        "dead"
    ).record.health.INACTIVE
    a, b, c = submit(h, cpu=1.5), submit(h, cpu=1.5), submit(h, cpu=1)
    batch = first_batch(h)
    results = h.agent.SubmitPlacements(
        apb.PlacementBatch(
            agent_id="evil",
            sequence=batch.sequence,
            decisions=[
                decision(a, "w1"),
                decision(b, "w1"),
                decision(c, "dead"),
                decision(a, "w1"),
                decision("t-nope", "w1"),
                decision(c, "ghost"),
            ],
        ),
        timeout=5,
    )
    by = [(r.task_id, r.accepted, r.reason) for r in results.results]
    assert by[0][1] is True
    assert by[1][1] is False and "does not fit" in by[1][2]  # overcommit
    assert by[2][1] is False and "inactive" in by[2][2]  # dead worker
    assert by[3][1] is False and "not PENDING" in by[3][2]  # already placed
    assert by[4][1] is False and "not pending" in by[4][2]  # unknown task
    assert by[5][1] is False and "not registered" in by[5][2]  # unknown worker
    alloc = h.master.tasks.allocated("w1")
    assert alloc.cpu == 1.5 <= 2
    explain = h.cluster.Explain(cpb.ExplainRequest(task_id=b), timeout=5)
    assert any("does not fit" in d.reject_reason for d in explain.decisions)


def test_stale_attempt_in_placement_is_rejected(h):
    h.add_worker("w1")
    tid = submit(h)
    batch = first_batch(h)
    res = h.agent.SubmitPlacements(
        apb.PlacementBatch(sequence=batch.sequence, decisions=[decision(tid, "w1", attempt=3)])
    )
    assert not res.results[0].accepted and "stale placement" in res.results[0].reason


def test_committed_placement_is_dispatched_to_the_worker(h):
    w = h.add_worker("w1")
    tid = submit(h)
    batch = first_batch(h)
    res = h.agent.SubmitPlacements(
        apb.PlacementBatch(sequence=batch.sequence, decisions=[decision(tid, "w1")])
    )
    assert res.results[0].accepted
    assert w.servicer.event.wait(5)
    assert w.servicer.assigned == [(tid, 1)]
    task = h.cluster.GetTask(cpb.GetTaskRequest(task_id=tid))
    assert task.state == pb.TASK_STATE_PLACED and task.worker_id == "w1"


def test_bad_worker_registration_is_invalid_argument(h):
    from cloudai.proto import master_worker_pb2 as mw

    bad = [
        mw.RegisterWorkerRequest(
            worker_id="", address="127.0.0.1:1", capacity=pb.Resources(cpu=1, memory_bytes=1)
        ),
        mw.RegisterWorkerRequest(
            worker_id="w x", address="127.0.0.1:1", capacity=pb.Resources(cpu=1, memory_bytes=1)
        ),
        mw.RegisterWorkerRequest(
            worker_id="w1", address="nohost", capacity=pb.Resources(cpu=1, memory_bytes=1)
        ),
        mw.RegisterWorkerRequest(
            worker_id="w1", address="h:1", capacity=pb.Resources(cpu=-1, memory_bytes=1)
        ),
        mw.RegisterWorkerRequest(
            worker_id="w1", address="h:1", capacity=pb.Resources(cpu=1e9, memory_bytes=1)
        ),
    ]
    for req in bad:
        with pytest.raises(grpc.RpcError) as err:
            h.mw.RegisterWorker(req, timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_next_snapshot_waits_for_the_batch_being_committed(h, monkeypatch):
    """While a batch of placements commits, the agent's next snapshot is held back;
    once it is sent it no longer holds the tasks that batch placed."""
    h.add_worker("w1", cpu=8)
    placed_id, other_id = submit(h), submit(h)
    stream = h.agent.WatchSchedulingWork(apb.WatchRequest(agent_id="a"), timeout=10)
    batches = iter(stream)
    first = next(batches)
    assert {t.task_id for t in first.tasks} == {placed_id, other_id}
    scheduler = h.master.scheduler
    real_apply, release, entered = scheduler._apply_all, threading.Event(), threading.Event()

    def slow_apply(*args, **kw):
        entered.set()
        assert release.wait(5)
        return real_apply(*args, **kw)

    monkeypatch.setattr(scheduler, "_apply_all", slow_apply)
    batch = apb.PlacementBatch(
        agent_id="a", sequence=first.sequence, decisions=[decision(placed_id, "w1")]
    )
    committing = threading.Thread(target=h.agent.SubmitPlacements, args=(batch,))
    committing.start()
    assert entered.wait(5)
    submit(h)  # a change while the batch commits: a new snapshot is due
    time.sleep(0.3)
    assert scheduler._outstanding  # the snapshot waits for the commit
    release.set()
    committing.join(5)
    second = next(batches)
    stream.cancel()
    ids = {t.task_id for t in second.tasks}
    assert placed_id not in ids and other_id in ids


def _status_when(h, check, timeout=5.0) -> cpb.StatusResponse:
    deadline = time.monotonic() + timeout
    while True:
        status = h.cluster.GetStatus(cpb.StatusRequest(), timeout=5)
        if check(status) or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_a_second_agent_is_logged_and_counted_in_status(h, caplog):
    """Placement is unchanged (both get batches, the master commits the first placement
    of each task), but the master warns, and status shows how many agents are on."""
    h.add_worker("w1")
    submit(h)
    first = h.agent.WatchSchedulingWork(apb.WatchRequest(agent_id="a1"), timeout=10)
    next(iter(first))
    caplog.set_level("INFO", logger="cloudai.master")
    assert _status_when(h, lambda s: s.agents_connected == 1).connected_agent_ids == ["a1"]
    assert "other agent stream" not in caplog.text
    second = h.agent.WatchSchedulingWork(apb.WatchRequest(agent_id="a2"), timeout=10)
    next(iter(second))
    both = _status_when(h, lambda s: s.agents_connected == 2)
    assert (both.agents_connected, list(both.connected_agent_ids)) == (2, ["a1", "a2"])
    warned = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "agent a2 connected while 1 other agent" in warned[0].message
    assert "(a1)" in warned[0].message
    assert "2 connected (a1, a2): run only one agent per master" in views.status_panel(both)
    second.cancel()
    one = _status_when(h, lambda s: s.agents_connected == 1)
    assert (list(one.connected_agent_ids), one.agent_id) == (["a1"], "a1")
    assert "1 connected (a1)" in views.status_panel(one)
    first.cancel()
    assert _status_when(h, lambda s: s.agents_connected == 0).agents_connected == 0


def test_dry_run_of_a_gpu_share_with_no_gpu_anywhere_names_the_gpu(h):
    h.add_worker("w1", cpu=4)
    spec = TaskSpec(image="cloudai/sample-task:latest", resources=Resources(0.5, GiB, 0.5))
    req = cpb.SubmitTaskRequest(spec=spec_to_pb(spec), dry_run=True)
    d = h.cluster.SubmitTask(req, timeout=5).decision
    assert (d.worker_id, d.hint) == ("", "no healthy worker has a GPU")
    assert _dry_run_text(d).endswith("\nsmallest change: no healthy worker has a GPU")
