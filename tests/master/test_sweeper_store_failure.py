"""The sweeper handles each lost worker on its own. One `try` used to wrap the whole
pass: a store write that failed while requeueing one lost worker's tasks (a full
disk) left the other lost workers of that pass unhandled, and skipped the requeue of
ownerless tasks. Now the failure is logged (once per interval, however many passes
fail), the rest of the pass goes on, and the failed worker's tasks are requeued by a
later pass once the store works again.

The real SQLite store, the real registry, task manager and sweeper; the store's task
write fails (with the project's StoreError, as SQLite's "database or disk is full"
does) for the tasks of one chosen worker only."""

from __future__ import annotations

import logging

import pytest

from cloudai.errors import StoreError
from cloudai.master.registry import WorkerRegistry
from cloudai.master.store import SQLiteStore
from cloudai.master.sweeper import Sweeper
from cloudai.master.tasks import TaskManager
from cloudai.model import Resources, Task, TaskSpec, TaskState, WorkerRecord

GiB = 1024**3


class DiskFullFor(SQLiteStore):
    """The real store, except that moving a task off `broken` fails as a full disk."""

    broken = ""

    def update_task(self, task: Task, expect_state: TaskState, expect_attempt: int) -> bool:
        held_by = task.current.worker_id if task.current else ""
        if self.broken and held_by == self.broken and expect_state.active:
            raise StoreError(f"SQLite write failed ({self.url}): database or disk is full")
        return super().update_task(task, expect_state, expect_attempt)


@pytest.fixture
def parts(tmp_path):
    store = DiskFullFor(tmp_path / "m.db")
    registry = WorkerRegistry(store, timeout_s=30.0, sample_s=3600.0)
    notified: list[int] = []
    tasks = TaskManager(store, registry, on_change=lambda: notified.append(1))
    sweeper = Sweeper(
        store,
        registry,
        tasks,
        heartbeat_timeout=30.0,
        telemetry_retention_s=3600.0,
        notify=lambda: notified.append(1),
    )
    yield store, registry, tasks, sweeper
    store.close()


def _place_two_on(registry: WorkerRegistry, tasks: TaskManager, wid: str, port: int) -> list[str]:
    rec = WorkerRecord(id=wid, address=f"127.0.0.1:{port}", capacity=Resources(4, 8 * GiB, 0))
    registry.register(rec, [], [], None)
    ids = []
    for _ in range(2):
        task = tasks.submit(TaskSpec(image="busybox", resources=Resources(1, GiB, 0)))
        placed, why = tasks.commit_placement(task.id, task.attempt, wid, None)
        assert placed is not None, why
        ids.append(task.id)
    return ids


def _silence(registry: WorkerRegistry, *worker_ids: str) -> None:
    """As if these workers had sent no heartbeat for a minute (timeout: 30 s)."""
    for wid in worker_ids:
        registry.get(wid).record.last_heartbeat -= 60.0


def _states(store: SQLiteStore, ids: list[str]) -> set[TaskState]:
    return {store.get_task(t).state for t in ids}


def test_a_failed_requeue_stops_neither_the_other_workers_nor_a_later_retry(parts, caplog):
    store, registry, tasks, sweeper = parts
    on_w1 = _place_two_on(registry, tasks, "w1", 47101)
    on_w2 = _place_two_on(registry, tasks, "w2", 47102)
    store.broken = "w1"  # the disk is full for w1's tasks
    _silence(registry, "w1", "w2")
    caplog.set_level(logging.INFO, logger="cloudai.master")

    sweeper.sweep_once()
    # The same pass, after w1 failed first (workers are handled by id): w2's tasks moved.
    assert _states(store, on_w2) == {TaskState.PENDING}
    assert _states(store, on_w1) == {TaskState.PLACED}
    assert {t.id for t in tasks.pending()} == set(on_w2)
    assert registry.get("w1").lost and registry.get("w2").lost
    # w1 is not expired again (it is INACTIVE), yet later passes retry its tasks: they
    # still belong to it. A store that keeps failing is logged once, not per pass.
    assert registry.expire() == []
    for _ in range(5):
        sweeper.sweep_once()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "requeueing the tasks of lost worker w1 failed" in errors[0]
    assert "database or disk is full" in errors[0]
    assert _states(store, on_w1) == {TaskState.PLACED}

    store.broken = ""  # the disk has room again
    sweeper.sweep_once()
    assert _states(store, on_w1) == {TaskState.PENDING}
    assert {t.id for t in tasks.pending()} == set(on_w1 + on_w2)
    for tid in on_w1:  # a worker loss, as for w2: no retry spent, w1 avoided
        task = store.get_task(tid)
        assert (task.current.worker_id, task.current.reason) == ("w1", "worker_lost")
        assert task.worker_losses == 1 and task.avoid_workers == ["w1"]
    assert "worker w1 is inactive: requeued 2 task(s) it held" in caplog.text


def test_a_failing_health_write_in_expire_still_returns_every_lost_worker(parts, caplog):
    """expire() persists each lost worker's health on its own: one failing write no
    longer hides the other lost workers (nor the failing one) from the pass."""
    store, registry, tasks, sweeper = parts
    on_w1 = _place_two_on(registry, tasks, "w1", 47103)
    on_w2 = _place_two_on(registry, tasks, "w2", 47104)
    real = store.set_worker_health

    def health(worker_id, h, at):
        if worker_id == "w1":
            raise StoreError("SQLite write failed: database or disk is full")
        return real(worker_id, h, at)

    store.set_worker_health = health
    _silence(registry, "w1", "w2")
    caplog.set_level(logging.ERROR, logger="cloudai.master")
    assert sorted(registry.expire()) == ["w1", "w2"]
    assert "storing that worker w1 is inactive failed" in caplog.text
    assert {r.id: r.health.value for r in store.list_workers()} == {
        "w1": "ACTIVE",
        "w2": "INACTIVE",
    }
    sweeper.sweep_once()  # w1 and w2 are INACTIVE now: their tasks have no owner
    assert _states(store, on_w1 + on_w2) == {TaskState.PENDING}
