"""QA10: a worker's result message is shown by `task`, `explain` and the console, so
its control characters (escape sequences, bell, carriage return, NUL) are replaced
when the master stores it. Replaced, not refused: a worker retries a refused result
forever, and the result itself (state, exit code, log tail) must be kept."""

from __future__ import annotations

import time

import pytest

from cloudai.proto import client_pb2 as cpb
from cloudai.proto import common_pb2 as pb
from cloudai.proto import master_worker_pb2 as mw

from .harness import make_harness

HOSTILE = "boom\x1b[2J\x1b]0;pwned\x07\rover\x00nul\x9b31m\u202eevil\tand\nmore"


@pytest.fixture
def h(tmp_path):
    harness = make_harness(tmp_path, agent_timeout=0.3)  # the master places tasks itself
    yield harness
    harness.close()


def _placed(h, task_id: str) -> pb.Task:
    deadline = time.time() + 15
    while time.time() < deadline:
        task = h.cluster.GetTask(cpb.GetTaskRequest(task_id=task_id), timeout=10)
        if task.state == pb.TASK_STATE_PLACED:
            return task
        time.sleep(0.05)
    raise AssertionError(f"{task_id} was not placed")


def test_control_characters_of_a_result_message_are_replaced(h):
    h.add_worker("w1")
    spec = pb.TaskSpec(image="alpine", command=["true"])
    task_id = h.cluster.SubmitTask(cpb.SubmitTaskRequest(spec=spec), timeout=10).task_id
    task = _placed(h, task_id)
    ack = h.mw.ReportTaskStatus(
        mw.TaskStatusReport(
            worker_id="w1",
            task_id=task_id,
            attempt=task.attempt,
            state=pb.TASK_STATE_FAILED,
            reason="nonzero_exit",
            message=HOSTILE,
            log_tail="raw \x1b[31mlog\n",
            exit_code=3,
            has_exit_code=True,
        ),
        timeout=10,
    )
    assert ack.accepted
    task = h.cluster.GetTask(cpb.GetTaskRequest(task_id=task_id), timeout=10)
    assert task.state == pb.TASK_STATE_FAILED and task.exit_code == 3
    assert task.message == (
        "boom\ufffd[2J\ufffd]0;pwned\ufffd\ufffdover\ufffdnul\ufffd31m\ufffdevil\tand\nmore"
    )
    assert task.log_tail == "raw \x1b[31mlog\n"  # the container's own output, as it was
    explained = h.cluster.Explain(cpb.ExplainRequest(task_id=task_id), timeout=10)
    for text in (explained.text, explained.task.message, *(a.message for a in task.attempts)):
        assert not any(c in text for c in "\x1b\x07\r\x00\x9b\u202e"), repr(text)
