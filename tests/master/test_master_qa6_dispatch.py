"""Dispatch errors over real gRPC: only a worker that cannot be reached is marked
unreachable; one that answers with an error refused the task, stays in placement, and
its tasks go back to the queue (a pinned one fails after MAX_DISPATCH_FAILURES). A
batch is cut to what a worker accepts, and an avoided worker is offered again once the
avoidance lapses. An in-process master on a fixed loopback port, fake workers."""

from __future__ import annotations

import time

import grpc
import pytest

from cloudai.convert import spec_to_pb
from cloudai.master import dispatcher, retry, scheduler
from cloudai.model import Resources, TaskSpec
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import common_pb2 as pb
from cloudai.proto import master_worker_pb2 as mw

from .harness import FakeWorker, FakeWorkerServicer, GiB, Harness, make_harness, serve_worker


class Refusing(FakeWorkerServicer):
    """Aborts the first `times` assignment calls with `code`, then accepts."""

    def __init__(self, code: grpc.StatusCode, times: int = 1_000_000, batch_only=False):
        super().__init__()
        self.code, self.times, self.batch_only = code, times, batch_only
        self.calls: list[int] = []  # assignments per call

    def AssignTask(self, request, context):
        if not self.batch_only and self._refuse(1):
            context.abort(self.code, "refused on purpose")
        return super().AssignTask(request, context)

    def AssignTasks(self, request, context):
        if self._refuse(len(request.assignments)):
            context.abort(self.code, "refused on purpose")
        return super().AssignTasks(request, context)

    def _refuse(self, n: int) -> bool:
        self.calls.append(n)
        self.times -= 1
        return self.times >= 0


@pytest.fixture(autouse=True)
def fast(monkeypatch):
    monkeypatch.setattr(retry, "DISPATCH_BACKOFF_BASE_S", 0.02)
    monkeypatch.setattr(retry, "DISPATCH_BACKOFF_CAP_S", 0.05)
    monkeypatch.setattr(dispatcher, "ASSIGN_TIMEOUT_S", 1.0)
    monkeypatch.setattr(scheduler, "AVOID_FOR_S", 0.3)  # lapses: the one worker is used again


def start(tmp_path, servicer: FakeWorkerServicer | None = None, register=True) -> Harness:
    h = make_harness(tmp_path, agent_timeout=0.05)
    servicer = servicer or FakeWorkerServicer()
    server, port = serve_worker(servicer)
    cap = pb.Resources(cpu=64, memory_bytes=256 * GiB)
    h.workers["w1"] = FakeWorker("w1", servicer, server, port, cap)
    if register:
        h.register(h.workers["w1"])
    return h


def submit(h: Harness, env: dict[str, str] | None = None, pinned: str = "") -> str:
    spec = TaskSpec(image="cloudai/sample-task:latest", resources=Resources(0.1, 64 * 1024**2))
    spec.env, spec.pinned_worker = env or {}, pinned
    return h.cluster.SubmitTask(cpb.SubmitTaskRequest(spec=spec_to_pb(spec)), timeout=10).task_id


def get(h: Harness, tid: str) -> pb.Task:
    return h.cluster.GetTask(cpb.GetTaskRequest(task_id=tid), timeout=5)


def wait_for(check, timeout: float = 8.0):
    deadline = time.time() + timeout
    while not (result := check()):
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)
    return result


def unreachable(h: Harness) -> tuple[int, str]:
    st = h.cluster.GetStatus(cpb.StatusRequest(), timeout=5)
    [w] = h.cluster.ListWorkers(cpb.ListWorkersRequest(), timeout=5).workers
    return st.workers_unreachable, w.unreachable_error


REFUSALS = [
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
]


@pytest.mark.parametrize("code", REFUSALS, ids=lambda c: c.name)
def test_a_refusal_requeues_the_task_and_leaves_the_worker_reachable(tmp_path, code):
    h = start(tmp_path, Refusing(code, times=1))
    try:
        tid = submit(h)
        wait_for(lambda: h.workers["w1"].servicer.assigned)  # the second try is taken
        first = get(h, tid).attempts[0]
        assert first.reason == "worker_rejected"
        assert first.message == f"worker w1 refused the task: {code.name}: refused on purpose"
        assert unreachable(h) == (0, "")
        assert h.workers["w1"].servicer.assigned == [(tid, 2)]
    finally:
        h.close()


def test_a_pinned_task_on_a_worker_refusing_the_master_token_fails_fast(tmp_path):
    h = start(tmp_path, Refusing(grpc.StatusCode.UNAUTHENTICATED))
    try:
        tid = submit(h, pinned="w1")
        done = wait_for(lambda: (t := get(h, tid)).state == pb.TASK_STATE_FAILED and t)
        assert done.reason == "worker_rejected"
        assert done.attempt == retry.MAX_DISPATCH_FAILURES
        assert "last error: worker w1 refused the task: UNAUTHENTICATED" in done.message
        assert unreachable(h) == (0, "")  # never cycled through unreachable marks
    finally:
        h.close()


def test_a_worker_that_answers_too_late_is_still_marked_unreachable(tmp_path, monkeypatch):
    monkeypatch.setattr(dispatcher, "ASSIGN_TIMEOUT_S", 0.2)

    class Slow(FakeWorkerServicer):
        def AssignTask(self, request, context):
            time.sleep(0.6)
            return super().AssignTask(request, context)

    h = start(tmp_path, Slow())
    try:
        tid = submit(h)
        count, error = wait_for(lambda: (u := unreachable(h))[0] and u)
        assert count == 1 and error.startswith("DEADLINE_EXCEEDED")
        where = f"unreachable at 127.0.0.1:{h.workers['w1'].port}: DEADLINE_EXCEEDED"
        assert where in get(h, tid).attempts[0].message
    finally:
        h.close()


def test_a_batch_larger_than_a_worker_takes_is_cut_and_every_task_is_sent(tmp_path):
    """Three tasks of 7 MiB of env each, placed together: one call would exceed the
    worker's 16 MiB request limit (RESOURCE_EXHAUSTED, formerly 'unreachable')."""
    h = start(tmp_path, register=False)
    try:
        env = {f"K{i}": "x" * 30_000 for i in range(240)}  # ~7 MiB
        tids = {submit(h, env) for _ in range(3)}
        h.register(h.workers["w1"])  # all three are placed in one batch now
        wait_for(lambda: len(h.workers["w1"].servicer.assigned) == 3)
        assert {t for t, _ in h.workers["w1"].servicer.assigned} == tids
        assert all(get(h, t).attempt == 1 for t in tids)  # none was refused on the way
        assert unreachable(h) == (0, "")
    finally:
        h.close()


def test_a_batch_the_worker_finds_too_large_is_sent_again_in_halves(tmp_path):
    refusing = Refusing(grpc.StatusCode.RESOURCE_EXHAUSTED, times=1, batch_only=True)
    h = start(tmp_path, refusing, register=False)
    try:
        tids = {submit(h) for _ in range(4)}
        h.register(h.workers["w1"])
        wait_for(lambda: len(refusing.assigned) == 4)
        assert refusing.calls == [4, 2, 2]
        assert {t for t, _ in refusing.assigned} == tids
        assert all(get(h, t).attempt == 1 for t in tids)
    finally:
        h.close()


def test_assignments_are_cut_into_calls_by_count_and_size(monkeypatch):
    reqs = [mw.AssignTaskRequest(task_id=f"t-{i}", attempt=1) for i in range(7)]
    monkeypatch.setattr(dispatcher, "MAX_CALL_TASKS", 3)
    assert list(dispatcher._calls(reqs)) == [(0, 3), (3, 6), (6, 7)]
    monkeypatch.setattr(dispatcher, "MAX_CALL_BYTES", 1)
    assert list(dispatcher._calls(reqs)) == [(i, i + 1) for i in range(7)]


def test_a_task_avoiding_its_only_worker_is_offered_again_when_that_lapses(tmp_path, monkeypatch):
    """Refused once by the only worker that fits, the task avoids it for AVOID_FOR_S;
    when that lapses, it must be placed again without anything else changing."""

    class RefuseOnce(FakeWorkerServicer):
        def AssignTask(self, request, context):
            if request.attempt == 1:
                return mw.AssignTaskResponse(accepted=False, message="busy")
            return super().AssignTask(request, context)

    h = start(tmp_path, RefuseOnce())
    try:
        tid = submit(h)
        wait_for(lambda: h.workers["w1"].servicer.assigned, timeout=5)
        assert h.workers["w1"].servicer.assigned == [(tid, 2)]
        assert get(h, tid).attempts[0].message == "worker refused: busy"
    finally:
        h.close()
