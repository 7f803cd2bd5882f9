"""QA10: a reader that leaves a followed log stream of a quiet task frees it at once.

The master read the worker's followed stream and looked at its own caller only when
the next chunk came: a reader who left (Ctrl-C) a task that prints nothing for a
while kept a master server thread, and a worker stream, until the task printed again
or ended. Some 64 such readers took every thread of the master's server, and
heartbeats, reports and `status` timed out. Now the worker's stream is cancelled
when the reader leaves.
"""

from __future__ import annotations

import threading
import time

import pytest

from cloudai.model import TaskState
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import common_pb2 as pb

from .harness import FakeWorkerServicer, make_harness
from .test_logs_follow import _report

READERS = 80  # more than the master's server threads (64)


class Quiet(FakeWorkerServicer):
    """A task that printed one line and then nothing: followed streams stay open."""

    def __init__(self) -> None:
        super().__init__()
        self.open = 0
        self.lock = threading.Lock()
        self.done = threading.Event()

    def GetTaskLogs(self, request, context):
        with self.lock:
            self.open += 1
        try:
            yield pb.LogChunk(data="start\n")
            while request.follow and context.is_active() and not self.done.wait(0.05):
                pass
        finally:
            with self.lock:
                self.open -= 1


@pytest.fixture
def h(tmp_path):
    harness = make_harness(tmp_path, agent_timeout=0.3)  # the master places tasks itself
    yield harness
    harness.close()


def _running(h, worker: str) -> str:
    tid = h.cluster.SubmitTask(cpb.SubmitTaskRequest(spec=pb.TaskSpec(image="alpine"))).task_id
    deadline = time.time() + 15
    while (task := h.cluster.GetTask(cpb.GetTaskRequest(task_id=tid))).state != (
        pb.TASK_STATE_PLACED
    ):
        assert time.time() < deadline, "never placed"
        time.sleep(0.05)
    _report(h, worker, tid, task.attempt, TaskState.RUNNING)
    return tid


def test_readers_that_leave_a_quiet_followed_stream_free_it(h):
    worker = Quiet()
    h.add_worker("w1", servicer=worker)
    tid = _running(h, "w1")
    try:
        staying = h.cluster.StreamLogs(cpb.LogsRequest(task_id=tid, follow=True))
        assert next(staying).data == "start\n"
        time.sleep(0.5)
        assert worker.open == 1  # a reader still there keeps its stream
        for _ in range(READERS):
            call = h.cluster.StreamLogs(cpb.LogsRequest(task_id=tid, follow=True), timeout=10)
            assert next(call).data == "start\n"
            call.cancel()  # the reader leaves (Ctrl-C)
        _until_open(worker, 1)  # only the reader still there keeps its stream
        status = h.cluster.GetStatus(cpb.StatusRequest(), timeout=5)  # a thread is free
        assert status.workers_active == 1
        staying.cancel()
        _until_open(worker, 0)
    finally:
        worker.done.set()


def _until_open(worker: Quiet, n: int) -> None:
    deadline = time.time() + 10
    while worker.open != n:
        assert time.time() < deadline, f"{worker.open} worker streams open, not {n}"
        time.sleep(0.05)
