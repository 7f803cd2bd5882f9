"""`cloudai logs --follow` across attempts (QA: it exited 0 without a word when the
worker running the task was SIGKILLed, and the task was pending for a retry).

A real master, real gRPC, the real `cloudai logs` process; the workers are fake ones
speaking the real protocol, so that one of them can die mid-stream on cue."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from cloudai.convert import state_to_pb
from cloudai.model import DecisionRecord, TaskSpec, TaskState
from cloudai.proto import common_pb2 as pb
from cloudai.proto import master_worker_pb2 as mw

from .harness import FakeWorkerServicer, make_harness

HEARTBEAT_TIMEOUT_S = 1.0


class DyingLogs(FakeWorkerServicer):
    """Streams one line, then holds the stream open until its server is stopped."""

    def __init__(self) -> None:
        super().__init__()
        self.streaming = threading.Event()

    def GetTaskLogs(self, request, context):
        yield pb.LogChunk(data="attempt 1 output\n")
        self.streaming.set()
        while context.is_active():
            time.sleep(0.05)


@pytest.fixture
def h(tmp_path):
    harness = make_harness(tmp_path, heartbeat_timeout=HEARTBEAT_TIMEOUT_S)
    yield harness
    harness.close()


@contextlib.contextmanager
def heartbeats(h, worker_id: str) -> Iterator[list[pb.TaskRef]]:
    """Keep `worker_id` alive meanwhile; it lists the attempts put in the list."""
    address = f"127.0.0.1:{h.workers[worker_id].port}"
    running: list[pb.TaskRef] = []
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(0.1):
            req = mw.HeartbeatRequest(worker_id=worker_id, address=address, running=running)
            h.mw.SendHeartbeat(req, timeout=5)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        stop.set()
        thread.join(5)


def _place_and_run(h, task_id: str, worker_id: str) -> int:
    task = h.master.tasks.get(task_id)
    placed, why = h.master.tasks.commit_placement(
        task_id, task.attempt, worker_id, DecisionRecord(task_id, task.attempt)
    )
    assert placed is not None, why
    _report(h, worker_id, task_id, placed.attempt, TaskState.RUNNING)
    return placed.attempt


def _report(h, worker_id: str, task_id: str, attempt: int, state: TaskState, **kw) -> None:
    report = mw.TaskStatusReport(
        worker_id=worker_id,
        task_id=task_id,
        attempt=attempt,
        state=state_to_pb(state),
        started_at=time.time(),
        **kw,
    )
    assert h.mw.ReportTaskStatus(report, timeout=5).accepted


@contextlib.contextmanager
def following(h, task_id: str) -> Iterator[subprocess.Popen]:
    """`cloudai logs TASK --follow` as a process (killed at the end if still there)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDAI_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cloudai", "logs", task_id, "--follow"]
        + ["--master", f"127.0.0.1:{h.master.port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_follow_goes_on_with_the_next_attempt_after_the_worker_is_lost(h):
    dying = DyingLogs()
    first = h.add_worker("w1", servicer=dying)
    h.add_worker("w2")
    task = h.master.submit(TaskSpec(image="cloudai/sample-task:latest"))
    w1_alive = contextlib.ExitStack()
    on_w1 = w1_alive.enter_context(heartbeats(h, "w1"))
    # w1 beats until it dies: on a busy machine `cloudai logs` can take longer to start
    # than the heartbeat timeout, and a silent w1 would be lost before it streamed.
    with w1_alive, following(h, task.id) as follower, heartbeats(h, "w2") as running:
        assert _place_and_run(h, task.id, "w1") == 1
        on_w1.append(pb.TaskRef(task_id=task.id, attempt=1))
        assert follower.stdout.readline() == "attempt 1 output\n"
        w1_alive.close()  # w1 stops heartbeating
        first.server.stop(0)  # and dies mid-stream
        notice = follower.stderr.readline()  # once the master marked w1 lost
        assert notice == "cloudai: attempt 1 ended: worker lost; the task is pending again\n"
        assert h.master.tasks.get(task.id).state == TaskState.PENDING
        attempt = _place_and_run(h, task.id, "w2")
        running.append(pb.TaskRef(task_id=task.id, attempt=attempt))
        assert follower.stdout.readline() == f"logs of {task.id}\n"  # attempt 2's, from w2
        _report(h, "w2", task.id, attempt, TaskState.SUCCEEDED, has_exit_code=True,
                reason="completed", finished_at=time.time(), log_tail="stored\n")  # fmt: skip
        out, err = follower.communicate(timeout=30)
    assert follower.returncode == 0, err
    assert out == ""  # nothing twice, and not the stored tail after streamed output
    assert err == ""  # one notice only
    assert h.master.tasks.get(task.id).state == TaskState.SUCCEEDED


def test_follow_of_a_retried_task_names_the_exit_code_and_follows_the_retry(h):
    h.add_worker("w1")
    task = h.master.submit(TaskSpec(image="cloudai/sample-task:latest", max_retries=1))
    _place_and_run(h, task.id, "w1")
    with following(h, task.id) as follower, heartbeats(h, "w1") as running:
        running.append(pb.TaskRef(task_id=task.id, attempt=1))
        assert follower.stdout.readline() == f"logs of {task.id}\n"
        _report(h, "w1", task.id, 1, TaskState.FAILED, exit_code=3, has_exit_code=True,
                reason="nonzero_exit", finished_at=time.time())  # fmt: skip
        _wait(lambda: h.master.tasks.get(task.id).state == TaskState.PENDING, "the retry")
        _wait(lambda: h.master.tasks.get(task.id).queued_at <= time.time(), "the backoff")
        attempt = _place_and_run(h, task.id, "w1")
        running[:] = [pb.TaskRef(task_id=task.id, attempt=attempt)]
        assert follower.stdout.readline() == f"logs of {task.id}\n"  # the retry's output
        _report(h, "w1", task.id, attempt, TaskState.SUCCEEDED, has_exit_code=True,
                reason="completed", finished_at=time.time())  # fmt: skip
        out, err = follower.communicate(timeout=30)
    assert follower.returncode == 0, err
    assert err == "cloudai: attempt 1 ended: exited with code 3; the task is pending again\n"
    assert out == ""


def _wait(predicate, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


LINES = [f"line {i}\n" for i in range(10)]


class RestartingLogs(FakeWorkerServicer):
    """The worker restarts mid-stream and re-adopts the container: the first followed
    stream breaks after 3 lines; lines 3-5 are written while nobody reads; later
    reads give the output so far from its start, and a followed one goes on to the end."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[bool, int]] = []

    def GetTaskLogs(self, request, context):
        self.calls.append((request.follow, request.tail_lines))
        if len(self.calls) == 1:
            yield from (pb.LogChunk(data=line) for line in LINES[:3])
            context.abort(grpc.StatusCode.UNAVAILABLE, "worker restarting")
        yield pb.LogChunk(data="".join(LINES[:4]))
        yield pb.LogChunk(data="".join(LINES[4:6]))
        if request.follow:
            yield from (pb.LogChunk(data=line) for line in LINES[6:])


def test_follow_resumes_where_the_worker_stream_broke_while_the_attempt_runs_on(h):
    """QA pass 7: the follower printed lines 1-5, went quiet until the task ended and
    exited 0, although `cloudai logs` afterwards had all 15 lines."""
    servicer = RestartingLogs()
    h.add_worker("w1", servicer=servicer)
    task = h.master.submit(TaskSpec(image="cloudai/sample-task:latest"))
    with heartbeats(h, "w1") as running:
        attempt = _place_and_run(h, task.id, "w1")
        running.append(pb.TaskRef(task_id=task.id, attempt=attempt))
        with following(h, task.id) as follower:
            got = [follower.stdout.readline() for _ in LINES]
            assert got == LINES  # each line once, in order, across the break
            _report(h, "w1", task.id, attempt, TaskState.SUCCEEDED, has_exit_code=True,
                    reason="completed", finished_at=time.time(),
                    log_tail="".join(LINES))  # fmt: skip
            out, err = follower.communicate(timeout=30)
    assert follower.returncode == 0, err
    assert (out, err) == ("", "")  # the stored tail adds nothing already sent
    assert servicer.calls[:3] == [(True, 0), (False, 0), (True, 0)]


class EndsEarly(FakeWorkerServicer):
    """The worker's stream ends after 2 of 4 lines (its container was removed); the
    store gets all 4 with the result."""

    def GetTaskLogs(self, request, context):
        if request.follow:
            yield pb.LogChunk(data="".join(LINES[:2]))
        else:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such container")


def test_follow_sends_what_only_the_store_holds_when_the_attempt_ends(h):
    h.add_worker("w1", servicer=EndsEarly())
    task = h.master.submit(TaskSpec(image="cloudai/sample-task:latest"))
    with heartbeats(h, "w1") as running:
        attempt = _place_and_run(h, task.id, "w1")
        running.append(pb.TaskRef(task_id=task.id, attempt=attempt))
        with following(h, task.id) as follower:
            assert [follower.stdout.readline() for _ in range(2)] == LINES[:2]
            _report(h, "w1", task.id, attempt, TaskState.SUCCEEDED, has_exit_code=True,
                    reason="completed", finished_at=time.time(),
                    log_tail="".join(LINES[:4]))  # fmt: skip
            out, err = follower.communicate(timeout=30)
    assert follower.returncode == 0, err
    assert (out, err) == ("".join(LINES[2:4]), "")


def test_logs_of_a_running_task_whose_worker_is_gone_says_so(h):
    w1 = h.add_worker("w1")
    task = h.master.submit(TaskSpec(image="cloudai/sample-task:latest"))
    # It still heartbeats (not lost yet, however slowly `cloudai logs` starts: the
    # timeout here is 1 s), but its log server does not answer.
    with heartbeats(h, "w1") as running:
        attempt = _place_and_run(h, task.id, "w1")
        running.append(pb.TaskRef(task_id=task.id, attempt=attempt))
        w1.server.stop(0)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDAI_")}
        done = subprocess.run(
            [sys.executable, "-m", "cloudai", "logs", task.id, "--master",
             f"127.0.0.1:{h.master.port}"],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
    assert done.returncode == 0 and done.stdout == ""
    assert done.stderr.startswith("cloudai: worker w1 did not answer (UNAVAILABLE")


def test_sent_finds_where_a_reader_stands_in_a_log_tail():
    from cloudai.master.logstream import Sent

    sent = Sent(whole=False)  # it began with the last lines only (--tail)
    sent.add("b\nc\n")
    assert sent.rest("a\nb\nc\nd\n", exact=True) == "d\n"  # found by what was sent last
    assert sent.rest("x\ny\n", exact=False) is None  # not there: cannot tell
    whole = Sent(whole=True)
    whole.add("a\nb\n")
    assert whole.rest("a\nb\nb\n", exact=True) == "b\n"  # an offset: repeats are no matter
    assert whole.rest("a\n", exact=True) is None  # shorter than what was sent
    assert Sent(whole=False).rest("all\n", exact=False) == "all\n"  # nothing sent yet
