"""QA pass 10 (soak): followed log streams must not take every RPC thread of a worker.

Each `cloudai logs -f` of a task is one followed GetTaskLogs stream from the master to
the task's worker, held for as long as the task runs (and, when the follower detaches
from a task that prints nothing, until it next prints: the master only notices then).
Every such stream holds one of the worker's RPC threads. With as many streams as the
worker has threads, the master's AssignTask and CancelTask calls queued behind them:
the worker looked unreachable, and a cancel did not reach it. Engine-free: the servicer
is the worker's own, on a server built as the node builds it, in front of a fake node
whose tasks print one line and then nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from cloudai.model import TaskSpec
from cloudai.proto import common_pb2
from cloudai.proto import master_worker_pb2 as mw
from cloudai.proto import master_worker_pb2_grpc as mw_grpc
from cloudai.rpc import build_server, listen_address
from cloudai.worker.logs import LogStream
from cloudai.worker.service import MAX_FOLLOWED_STREAMS, SERVICE_NAME, WorkerServicer

# More followers than the worker has RPC threads (build_server's default, as the node).
FOLLOWERS = 40


class QuietNode:
    """Tasks that print `start`, then nothing until `speak` is set."""

    def __init__(self) -> None:
        self.speak = threading.Event()
        self.cancelled: list[tuple[str, int]] = []

    def assign(self, task_id: str, attempt: int, spec: TaskSpec) -> tuple[bool, str]:
        return True, "accepted"

    def cancel(self, task_id: str, attempt: int, reason: str = "") -> bool:
        self.cancelled.append((task_id, attempt))
        return True

    def logs(self, task_id: str, attempt: int, follow: bool, tail: int) -> LogStream:
        closed = threading.Event()

        def chunks() -> Iterator[bytes]:
            yield b"start\n"
            if follow:
                while not (self.speak.wait(0.05) or closed.is_set()):
                    pass

        return LogStream(chunks(), closer=closed.set)


@pytest.fixture
def worker() -> Iterator[tuple[mw_grpc.WorkerStub, QuietNode]]:
    node = QuietNode()
    servicer = WorkerServicer(node)
    server, port, _health = build_server(
        listen_address("127.0.0.1", 0),
        [lambda s: mw_grpc.add_WorkerServicer_to_server(servicer, s)],
        [SERVICE_NAME],
    )
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield mw_grpc.WorkerStub(channel), node
    finally:
        node.speak.set()
        channel.close()
        server.stop(grace=None).wait()


def _first(call) -> str:
    """A stream's first chunk's data, or the code it ended with."""
    try:
        return next(call).data
    except grpc.RpcError as err:
        return err.code().name


def _follow(stub: mw_grpc.WorkerStub, task_id: str) -> tuple[grpc.Future, str]:
    """Open a followed stream; (the call, its first chunk's data or the refusal's code)."""
    req = mw.GetTaskLogsRequest(task_id=task_id, attempt=1, follow=True)
    call = stub.GetTaskLogs(req, timeout=60)
    return call, _first(call)


def _spec() -> common_pb2.TaskSpec:
    return common_pb2.TaskSpec(image="cloudai/sample-task:latest")


def test_followed_streams_leave_threads_for_assign_and_cancel(worker) -> None:
    stub, node = worker
    calls: list[grpc.Future] = []
    try:
        for i in range(MAX_FOLLOWED_STREAMS):
            call, first = _follow(stub, f"t-quiet{i:02d}")
            calls.append(call)
            assert first == "start\n"
        # More followers, up to more streams than the worker has threads: each is
        # either served or refused; none may be left queued for a thread.
        answers: list[str] = []
        readers = []
        for i in range(FOLLOWERS - MAX_FOLLOWED_STREAMS):
            req = mw.GetTaskLogsRequest(task_id=f"t-more{i:02d}", attempt=1, follow=True)
            call = stub.GetTaskLogs(req, timeout=60)
            calls.append(call)
            reader = threading.Thread(target=lambda c=call: answers.append(_first(c)))
            reader.start()
            readers.append(reader)
        deadline = time.monotonic() + 10
        for reader in readers:
            reader.join(timeout=max(0.0, deadline - time.monotonic()))

        # The control plane still answers at once, with every stream still open.
        req = mw.AssignTaskRequest(task_id="t-new", attempt=1, spec=_spec())
        assert stub.AssignTask(req, timeout=5).accepted
        cancel = mw.CancelTaskRequest(task_id="t-quiet00", attempt=1, reason="user")
        assert stub.CancelTask(cancel, timeout=5).found
        assert node.cancelled == [("t-quiet00", 1)]
        # A one-shot read (`cloudai logs` without -f) is not refused either.
        once = stub.GetTaskLogs(mw.GetTaskLogsRequest(task_id="t-once", attempt=1), timeout=5)
        assert "".join(c.data for c in once) == "start\n"

        # The followers past the limit were told so at once (the master tries again).
        assert answers == ["RESOURCE_EXHAUSTED"] * (FOLLOWERS - MAX_FOLLOWED_STREAMS)
    finally:
        for call in calls:
            call.cancel()


def test_a_stream_that_ends_frees_its_place(worker) -> None:
    stub, node = worker
    calls = [_follow(stub, f"t-quiet{i:02d}") for i in range(MAX_FOLLOWED_STREAMS)]
    assert all(first == "start\n" for _, first in calls)
    assert _follow(stub, "t-extra")[1] == "RESOURCE_EXHAUSTED"
    # The followers leave (the master cancels their streams): their places come free.
    for call, _ in calls:
        call.cancel()
    for _ in range(200):  # each try is one round trip; the release follows the cancel
        call, first = _follow(stub, "t-later")
        if first == "start\n":
            call.cancel()
            break
        threading.Event().wait(0.05)
    else:
        pytest.fail("the places of cancelled streams were never released")
    # And a followed stream that simply ends (the task ended) frees its place too.
    node.speak.set()
    ended = stub.GetTaskLogs(mw.GetTaskLogsRequest(task_id="t-end", attempt=1, follow=True))
    assert [c.data for c in ended] == ["start\n", ""]


def test_fenced_attempts_are_forgotten_when_settled_and_bounded_otherwise(monkeypatch):
    """QA10: `_fenced` grew by one entry for every cancelled or superseded attempt for
    the worker's whole life. A settled attempt now leaves it (the capped `_done`
    remembers it), and fences of attempts that never ran here are capped."""
    from cloudai.proto import common_pb2
    from cloudai.worker.node import FENCED_MEMORY, WorkerNode
    from tests.worker.workerkit import make_settings

    node = WorkerNode(make_settings(master="127.0.0.1:1"))
    try:
        monkeypatch.setattr(node.executor, "remove", lambda *key: None)
        refs = [common_pb2.TaskRef(task_id=f"t-{i}", attempt=1) for i in range(FENCED_MEMORY + 50)]
        node._stop_attempts(refs)
        assert len(node._fenced) == FENCED_MEMORY
        assert ("t-0", 1) not in node._fenced and (f"t-{FENCED_MEMORY + 49}", 1) in node._fenced
        node._settle((f"t-{FENCED_MEMORY + 49}", 1))
        assert (f"t-{FENCED_MEMORY + 49}", 1) not in node._fenced
        assert node.assign(f"t-{FENCED_MEMORY + 49}", 1, None)[1] == "already ran here"
    finally:
        node.stop()
