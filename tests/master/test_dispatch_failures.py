"""Failed dispatches on a real SQLite store: backed off, bounded for pinned tasks, and
counted apart from the retry budget and the worker-loss quarantine."""

from __future__ import annotations

import time

from cloudai.master.retry import MAX_DISPATCH_FAILURES, dispatch_backoff
from cloudai.model import Reason, TaskState

from .conftest import add_worker
from .test_tasks import finish, place, spec


def fail_dispatch(tasks, task_id: str, worker: str = "w1", **kw) -> float:
    """Place the task (a commit does not wait out the backoff: the scheduler does),
    fail its dispatch; return the delay the task was given before it is placed again."""
    placed = place(tasks, task_id, worker)
    tasks.dispatch_failed(task_id, placed.attempt, "worker refused: shutting down", **kw)
    return tasks.get(task_id).queued_at - time.time()


def test_pinned_task_fails_after_max_failures_in_a_row_with_the_last_error(tasks, store, registry):
    add_worker(registry, "w1")
    task = tasks.submit(spec(pinned_worker="w1", max_retries=3))
    for _ in range(MAX_DISPATCH_FAILURES - 1):
        fail_dispatch(tasks, task.id, unreachable=True)
        assert tasks.get(task.id).state == TaskState.PENDING
    placed = place(tasks, task.id)
    tasks.dispatch_failed(task.id, placed.attempt, "worker w1 unreachable at h:1: UNAVAILABLE",
                          unreachable=True)  # fmt: skip
    done = store.get_task(task.id)
    assert (done.state, done.reason) == (TaskState.FAILED, Reason.WORKER_UNREACHABLE)
    assert done.retries_used == 0 and done.worker_losses == 0  # neither budget was spent
    assert "last error: worker w1 unreachable at h:1" in done.message
    [result] = store.get_results(task.id)
    assert (result.attempt, result.reason) == (MAX_DISPATCH_FAILURES, "worker_unreachable")
    assert "UNAVAILABLE" in result.message
    assert tasks.allocated("w1").cpu == 0


def test_a_worker_that_keeps_refusing_ends_worker_rejected(tasks, store, registry):
    add_worker(registry, "w1")
    task = tasks.submit(spec(pinned_worker="w1"))
    for _ in range(MAX_DISPATCH_FAILURES):
        fail_dispatch(tasks, task.id)
    assert store.get_task(task.id).reason == Reason.WORKER_REJECTED


def test_the_backoff_doubles_with_each_failure_in_a_row(tasks, registry):
    add_worker(registry, "w1")
    task = tasks.submit(spec(pinned_worker="w1"))
    delays = [fail_dispatch(tasks, task.id) for _ in range(3)]
    for n, delay in enumerate(delays, 1):
        nominal = 0.5 * 2 ** (n - 1)
        assert nominal / 2 - 0.05 <= delay <= nominal, (n, delays)
    assert dispatch_backoff(50) <= 30.0


def test_a_dispatch_that_worked_starts_the_count_again(tasks, store, registry):
    """Only failures in a row count: one real attempt in between resets them."""
    add_worker(registry, "w1")
    task = tasks.submit(spec(pinned_worker="w1", max_retries=1))
    for _ in range(MAX_DISPATCH_FAILURES - 1):
        fail_dispatch(tasks, task.id)
    ran = place(tasks, task.id)
    finish(tasks, ran, TaskState.FAILED, 1, "nonzero_exit")  # a retry is spent
    fail_dispatch(tasks, task.id)
    t = tasks.get(task.id)
    assert t.state == TaskState.PENDING and t.retries_used == 1


def test_unpinned_task_is_requeued_avoiding_the_worker_however_often(tasks, registry):
    add_worker(registry, "w1")
    task = tasks.submit(spec())
    for _ in range(MAX_DISPATCH_FAILURES + 1):
        fail_dispatch(tasks, task.id, unreachable=True)
    t = tasks.get(task.id)
    assert t.state == TaskState.PENDING and t.avoid_workers == ["w1"]
