"""QA10: what a misbehaving worker answers to an assignment is bounded and checked.

Found by fuzzing the gRPC surfaces: a worker's refusal text was stored whole and raw
(2 MB with terminal escapes, shown by `task` and `explain`), and a worker whose
AssignTasks answer listed fewer results than assignments left the unanswered tasks
PLACED until the heartbeat timeout. A worker sent more than it takes in one call now
refuses it whole (RESOURCE_EXHAUSTED, which the master answers by halving), where it
used to answer only the first 1,024.
"""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from cloudai.master.dispatcher import MAX_PEER_TEXT
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import common_pb2 as pb
from cloudai.proto import master_worker_pb2 as mw
from cloudai.proto import master_worker_pb2_grpc as mw_grpc
from cloudai.rpc import channel
from cloudai.worker.service import MAX_BATCH_ASSIGNMENTS, WorkerServicer

from .harness import FakeWorkerServicer, make_harness

ESCAPES = "\x1b[2J\x1b]0;pwned\x07\r"


class Refuses(FakeWorkerServicer):
    def AssignTask(self, request, context):
        return mw.AssignTaskResponse(accepted=False, message=ESCAPES + "A" * 2_000_000)


class AnswersOne(FakeWorkerServicer):
    """Answers only the first assignment of a call (and accepts it)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def AssignTasks(self, request, context):
        with self.lock:
            self.calls.append(len(request.assignments))
        first = request.assignments[0]
        self.assigned.append((first.task_id, first.attempt))
        return mw.AssignTasksResponse(results=[mw.AssignTaskResponse(accepted=True)])


def _submit(h, **spec) -> str:
    req = cpb.SubmitTaskRequest(spec=pb.TaskSpec(image="alpine", **spec))
    return h.cluster.SubmitTask(req).task_id


def _until(check, timeout: float = 20.0):
    deadline = time.time() + timeout
    while True:
        got = check()
        if got or time.time() > deadline:
            return got
        time.sleep(0.1)


def test_a_refusal_is_stored_bounded_and_without_terminal_escapes(h):
    h.add_worker("evil", servicer=Refuses())
    tid = _submit(h, pinned_worker="evil")

    def refused():
        t = h.cluster.GetTask(cpb.GetTaskRequest(task_id=tid))
        return t if "worker refused" in t.message else None

    task = _until(refused)
    assert task, "the refusal never reached the task"
    assert len(task.message) < MAX_PEER_TEXT + 200
    assert "\x1b" not in task.message and "\x07" not in task.message
    assert "\r" not in task.message
    assert "\ufffd[2J" in task.message  # shown as replaced, not silently dropped
    text = h.cluster.Explain(cpb.ExplainRequest(task_id=tid)).text
    assert "\x1b" not in text and len(text) < 5_000


@pytest.fixture
def fallback(tmp_path):
    """A master that places tasks itself at once (no agent)."""
    harness = make_harness(tmp_path, agent_timeout=0.3)
    yield harness
    harness.close()


def test_tasks_a_worker_did_not_answer_for_are_requeued_at_once(fallback):
    h = fallback
    worker = AnswersOne()
    ids = [_submit(h) for _ in range(4)]  # queued first, so that one batch places them all
    h.add_worker("w1", servicer=worker)

    def all_assigned():
        return {t for t, _ in worker.assigned} == set(ids)

    # Each call gets one answer: the rest are requeued and sent again, one more each time.
    assert _until(all_assigned), (worker.assigned, worker.calls)
    assert max(worker.calls) > 1  # the batches really were cut short
    for tid in ids:
        t = h.cluster.GetTask(cpb.GetTaskRequest(task_id=tid))
        assert t.state in (pb.TASK_STATE_PLACED, pb.TASK_STATE_RUNNING), tid


class _Node:
    def __init__(self) -> None:
        self.assigned = 0

    def assign(self, task_id, attempt, spec):
        self.assigned += 1
        return True, "accepted"


def test_a_worker_refuses_an_oversized_batch_whole():
    from concurrent import futures

    node = _Node()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    mw_grpc.add_WorkerServicer_to_server(WorkerServicer(node), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        spec = mw.AssignTaskRequest(task_id="t-x", attempt=1)
        spec.spec.CopyFrom(pb.TaskSpec(image="alpine"))
        too_many = mw.AssignTasksRequest(assignments=[spec] * (MAX_BATCH_ASSIGNMENTS + 1))
        with channel(f"127.0.0.1:{port}") as ch:
            stub = mw_grpc.WorkerStub(ch)
            with pytest.raises(grpc.RpcError) as err:
                stub.AssignTasks(too_many, timeout=10)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert node.assigned == 0
            ok = stub.AssignTasks(mw.AssignTasksRequest(assignments=[spec] * 3), timeout=10)
            assert len(ok.results) == 3 and node.assigned == 3
    finally:
        server.stop(0)


def test_a_report_for_an_attempt_never_dispatched_says_so(h):
    tid = _submit(h, selector={"zone": "nowhere"})  # stays pending: attempt 0
    h.add_worker("w1")
    report = mw.TaskStatusReport(
        worker_id="w1", task_id=tid, attempt=1, state=pb.TASK_STATE_FAILED, reason="x"
    )
    ack = h.mw.ReportTaskStatus(report, timeout=10)
    assert not ack.accepted
    assert ack.message == f"attempt 1 of task {tid} was never dispatched"
