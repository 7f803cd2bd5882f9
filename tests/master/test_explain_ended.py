"""`cloudai explain` of an ended task says how it ended: it showed a task that failed
while queued (pinned to a worker that was lost) as still "waiting for pinned worker",
and one that failed after its placement as placed, without its failure."""

from __future__ import annotations

import dataclasses

from cloudai.master.explain import explain_text
from cloudai.model import TaskState
from tests.store.builders import make_decision, make_task


def _ended(state: TaskState, reason: str, message: str, pinned: str = ""):
    task = make_task("t1", state=state, attempt=1, worker_id=pinned)
    task.spec = dataclasses.replace(task.spec, pinned_worker=pinned)
    task.reason, task.message = reason, message
    return task


def test_a_task_that_ended_in_the_queue_is_not_shown_as_waiting():
    task = _ended(TaskState.FAILED, "worker_lost", "pinned worker w1 was lost", pinned="w1")
    waiting = dataclasses.replace(
        make_decision("t1", 5.0, "w1"), committed=False, rejections={}, reject_reason="gone"
    )
    for decisions in ([], [waiting]):
        lines = explain_text(task, decisions).splitlines()
        assert lines == [
            "task t1 (busybox:1.36) is FAILED",
            "ended without being placed (worker_lost): pinned worker w1 was lost",
        ], lines


def test_a_placed_task_that_failed_says_why_and_a_success_adds_nothing():
    placed = make_decision("t1", 5.0, "w1")
    failed = _ended(TaskState.FAILED, "worker_lost", "worker w1 no longer runs attempt 1")
    lines = explain_text(failed, [placed]).splitlines()
    assert lines[1].startswith("placed on w1 at attempt 1 by agent"), lines
    assert lines[-1] == "ended (worker_lost): worker w1 no longer runs attempt 1", lines
    done = _ended(TaskState.SUCCEEDED, "completed", "")
    assert not any(line.startswith("ended") for line in explain_text(done, [placed]).splitlines())
