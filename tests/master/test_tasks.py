"""TaskManager lifecycle on a real SQLite store: every transition persisted and fenced."""

from __future__ import annotations

import time

import pytest

from cloudai.errors import Conflict, NotFound
from cloudai.master.tasks import Report, TaskManager
from cloudai.model import DecisionRecord, Reason, Resources, TaskSpec, TaskState

from .conftest import GiB, add_worker


def spec(**kw) -> TaskSpec:
    kw.setdefault("resources", Resources(1.0, GiB, 0.0))
    return TaskSpec(image="cloudai/sample-task:latest", **kw)


def place(tasks: TaskManager, task_id: str, worker: str = "w1"):
    t = tasks.get(task_id)
    placed, reason = tasks.commit_placement(
        task_id, t.attempt, worker, DecisionRecord(task_id, t.attempt)
    )
    assert placed is not None, reason
    return placed


def finish(tasks, t, state=TaskState.SUCCEEDED, code=0, reason="completed", worker="w1"):
    return tasks.report(
        Report(
            worker,
            t.id,
            t.attempt,
            state,
            exit_code=code,
            reason=reason,
            log_tail="done\n",
            started_at=time.time(),
            finished_at=time.time(),
        )
    )


def test_submit_is_persisted_before_return(tasks, store, changes):
    t = tasks.submit(spec())
    assert store.get_task(t.id).state == TaskState.PENDING
    assert changes, "a submit must wake the scheduler"


def test_place_run_succeed_persists_each_step(tasks, store, registry):
    add_worker(registry)
    t = place(tasks, tasks.submit(spec()).id)
    assert (t.state, t.attempt, t.worker_id) == (TaskState.PLACED, 1, "w1")
    assert store.get_task(t.id).state == TaskState.PLACED
    assert tasks.allocated("w1").cpu == 1.0
    assert tasks.report(Report("w1", t.id, 1, TaskState.RUNNING, started_at=time.time()))[0]
    assert store.get_task(t.id).state == TaskState.RUNNING
    assert finish(tasks, t) == (True, "recorded")
    done = store.get_task(t.id)
    assert (done.state, done.exit_code) == (TaskState.SUCCEEDED, 0)
    assert store.get_results(t.id)[0].log_tail == "done\n"
    assert tasks.allocated("w1").cpu == 0.0


@pytest.mark.parametrize(
    "setup, worker, expect",
    [
        ("unknown-worker", "nope", "not registered"),
        ("overcommit", "w1", "does not fit"),
        ("selector", "w1", "lacks label"),
        ("stale-attempt", "w1", "stale placement"),
        ("already-placed", "w1", "not PENDING"),
        ("unhealthy", "w1", "inactive"),
    ],
)
def test_invalid_placements_are_rejected_with_reasons(
    tasks, registry, store, setup, worker, expect
):
    add_worker(registry, cpu=2.0)
    s = spec(resources=Resources(3.0 if setup == "overcommit" else 1.0, GiB, 0))
    if setup == "selector":
        s.selector = {"gpu": "a100"}
    t = tasks.submit(s)
    attempt = t.attempt
    if setup == "stale-attempt":
        attempt = 7
    if setup == "already-placed":
        place(tasks, t.id)
        attempt = 1
    if setup == "unhealthy":
        time.sleep(0.35)
        registry.expire()
    d = DecisionRecord(t.id, attempt, worker_id=worker)
    placed, reason = tasks.commit_placement(t.id, attempt, worker, d)
    assert placed is None and expect in reason
    assert store.list_decisions(t.id)[0].reject_reason == reason
    assert tasks.allocated("w1").cpu <= 1.0  # never overcommitted


def test_stale_report_is_refused_after_requeue(tasks, registry):
    add_worker(registry, "w1")
    add_worker(registry, "w2")
    t = place(tasks, tasks.submit(spec()).id, "w1")
    tasks.worker_lost("w1")
    again = place(tasks, t.id, "w2")
    assert again.attempt == 2
    ok, msg = finish(tasks, t, worker="w1")  # the old attempt 1 reports late
    assert not ok and "superseded" in msg
    assert tasks.get(t.id).state == TaskState.PLACED


def test_report_from_wrong_worker_is_refused(tasks, registry):
    add_worker(registry, "w1")
    add_worker(registry, "w2")
    t = place(tasks, tasks.submit(spec()).id, "w1")
    ok, msg = finish(tasks, t, worker="w2")
    assert not ok and "not held by w2" in msg


def test_repeated_terminal_report_is_acknowledged_once(tasks, registry, store):
    add_worker(registry)
    t = place(tasks, tasks.submit(spec()).id)
    assert finish(tasks, t)[0]
    ok, msg = finish(tasks, t)
    assert ok and "already SUCCEEDED" in msg
    assert len(store.get_results(t.id)) == 1


def test_retry_budget_and_backoff(tasks, registry):
    add_worker(registry)
    t = tasks.submit(spec(max_retries=1))
    first = place(tasks, t.id)
    finish(tasks, first, TaskState.FAILED, 1, Reason.NONZERO_EXIT)
    requeued = tasks.get(t.id)
    assert requeued.state == TaskState.PENDING and requeued.retries_used == 1
    assert requeued.queued_at > time.time()  # backoff: not ready at once
    requeued.queued_at = 0
    second = place(tasks, t.id)
    assert second.attempt == 2
    finish(tasks, second, TaskState.FAILED, 1, Reason.NONZERO_EXIT)
    final = tasks.get(t.id)
    assert (final.state, final.exit_code, len(final.attempts)) == (TaskState.FAILED, 1, 2)


def test_missing_image_is_not_retried(tasks, registry):
    add_worker(registry)
    t = place(tasks, tasks.submit(spec(max_retries=5)).id)
    finish(tasks, t, TaskState.FAILED, None, Reason.IMAGE_NOT_FOUND)
    assert tasks.get(t.id).state == TaskState.FAILED


def test_oom_retry_raises_memory_up_to_largest_worker(tasks, registry):
    add_worker(registry, "w1", mem=3 * GiB)
    t = place(tasks, tasks.submit(spec(max_retries=2, resources=Resources(1, 2 * GiB, 0))).id)
    finish(tasks, t, TaskState.FAILED, 137, Reason.OOM_KILLED)
    assert tasks.get(t.id).spec.resources.memory_bytes == 3 * GiB


def test_worker_loss_requeues_without_spending_retries_and_quarantines_poison(tasks, registry):
    for w in ("w1", "w2", "w3"):
        add_worker(registry, w)
    t = tasks.submit(spec())
    for i, w in enumerate(("w1", "w2", "w3"), 1):
        place(tasks, t.id, w)
        tasks.worker_lost(w)
        cur = tasks.get(t.id)
        assert cur.retries_used == 0 and cur.worker_losses == i
    final = tasks.get(t.id)
    assert final.state == TaskState.FAILED and final.reason == Reason.POISON


def test_cancel_pending_and_running(tasks, registry, store):
    add_worker(registry)
    pending = tasks.submit(spec())
    assert tasks.cancel(pending.id)[1] == ""
    running = place(tasks, tasks.submit(spec()).id)
    cancelled, worker = tasks.cancel(running.id)
    assert worker == "w1" and cancelled.state == TaskState.CANCELLED
    assert store.get_task(running.id).state == TaskState.CANCELLED
    with pytest.raises(Conflict):
        tasks.cancel(running.id)
    with pytest.raises(NotFound):
        tasks.cancel("t-nope")
    # The worker's late report for the cancelled attempt is acknowledged, not applied.
    ok, _ = finish(tasks, running, TaskState.CANCELLED, 137, Reason.CANCELLED)
    assert ok and store.get_task(running.id).state == TaskState.CANCELLED


def test_restart_reloads_live_tasks_and_allocation(tasks, registry, store):
    add_worker(registry)
    t = place(tasks, tasks.submit(spec()).id)
    again = TaskManager(store, registry)
    assert again.get(t.id).state == TaskState.PLACED
    assert again.allocated("w1").cpu == 1.0
    assert again.is_current(t.id, 1)


def test_reconcile_requeues_attempts_the_worker_does_not_run(tasks, registry):
    add_worker(registry)
    t = place(tasks, tasks.submit(spec()).id)
    assert tasks.reconcile("w1", set(), grace_s=60) == []  # just placed: dispatch may be in flight
    assert tasks.reconcile("w1", {(t.id, 1)}, grace_s=0) == []  # the worker runs it
    assert tasks.reconcile("w1", set(), grace_s=0) == [t.id]
    again = tasks.get(t.id)
    assert again.state == TaskState.PENDING and again.attempts[-1].reason == Reason.WORKER_LOST
