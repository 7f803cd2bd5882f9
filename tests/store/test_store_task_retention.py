"""Task retention in the store (`delete_finished_tasks`), run against every backend
(sqlite, mongomock-STANDIN, mongodb-real when CLOUDAI_TEST_MONGODB_URI is set): only
terminal tasks that ended before the cut-off go, with their results (log tails) and
decisions; live tasks and everything of the kept tasks stay. The SQLite-only tests at
the end check that the search uses an index and that each batch is its own
transaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudai.master.store import SQLiteStore, Store, retention
from cloudai.model import TERMINAL_STATES, Task, TaskState

from .builders import make_decision, make_result, make_task

CUT = 10_000.0  # the cut-off: tasks that ended before it are due
OLD, NEW = CUT - 5_000.0, CUT + 5_000.0


def _task(task_id: str, state: TaskState, created: float, ended: float) -> Task:
    task = make_task(task_id, state=state, created_at=created)
    task.updated_at = ended
    if state != TaskState.PENDING:
        task.attempt, task.worker_id = 1, "w-1"
    return task


def _add(store: Store, task: Task, with_rows: bool = True) -> None:
    store.create_task(task)
    if with_rows:
        store.put_result(make_result(task.id, 1, log_tail=f"log of {task.id}\n"))
        store.add_decision(make_decision(task.id, task.created_at + 1))


def _ids(store: Store) -> set[str]:
    return {t.id for t in store.list_tasks()}


def test_only_terminal_tasks_that_ended_before_the_cut_off_are_deleted(store: Store) -> None:
    for state in sorted(TERMINAL_STATES):
        _add(store, _task(f"old-{state.value}", state, OLD, OLD))
    kept = [
        _task("old-pending", TaskState.PENDING, OLD, OLD),
        _task("old-placed", TaskState.PLACED, OLD, OLD),
        _task("old-running", TaskState.RUNNING, OLD, OLD),
        _task("ended-recently", TaskState.SUCCEEDED, OLD, NEW),  # created long ago
        _task("ended-at-cut", TaskState.FAILED, OLD, CUT),  # not *before* the cut-off
        _task("new-failed", TaskState.FAILED, NEW, NEW),
    ]
    for task in kept:
        _add(store, task)

    deleted = store.delete_finished_tasks(CUT)

    assert deleted == len(TERMINAL_STATES)
    assert _ids(store) == {t.id for t in kept}
    for state in TERMINAL_STATES:
        assert store.get_task(f"old-{state.value}") is None
    assert store.get_task("old-running") == kept[2]
    counts = store.count_tasks_by_state()
    assert counts[TaskState.CANCELLED.value] == counts[TaskState.TIMED_OUT.value] == 0
    assert counts[TaskState.SUCCEEDED.value] == 1 and counts[TaskState.FAILED.value] == 2


def test_results_logs_and_decisions_go_with_their_task_only(store: Store) -> None:
    _add(store, _task("t-gone", TaskState.SUCCEEDED, OLD, OLD))
    store.put_result(make_result("t-gone", 2, log_tail="second attempt\n", exit_code=1))
    store.add_decision(make_decision("t-gone", OLD + 2))
    _add(store, _task("t-live", TaskState.RUNNING, OLD, OLD))
    _add(store, _task("t-recent", TaskState.FAILED, NEW, NEW))
    store.add_telemetry_sample("w-1", OLD, {"cpu_percent": 1.0})  # not the tasks'

    assert store.delete_finished_tasks(CUT) == 1

    assert store.get_results("t-gone") == [] and store.list_decisions("t-gone", limit=0) == []
    assert all(d.task_id != "t-gone" for d in store.iter_decisions())
    for kept in ("t-live", "t-recent"):
        (result,) = store.get_results(kept)
        assert result.log_tail == f"log of {kept}\n"
        assert [d.task_id for d in store.list_decisions(kept)] == [kept]
    assert store.telemetry_history("w-1") == [(OLD, {"cpu_percent": 1.0})]


def test_more_tasks_than_one_batch_are_all_deleted(store: Store) -> None:
    due = 2 * retention.BATCH + 7
    with store.batch():  # one transaction for the setup (SQLite)
        for i in range(due):
            _add(store, _task(f"t-{i:05d}", TaskState.SUCCEEDED, OLD + i, OLD + i), i % 100 == 0)
        _add(store, _task("t-pending", TaskState.PENDING, OLD, OLD))

    assert store.delete_finished_tasks(CUT) == due

    assert _ids(store) == {"t-pending"}
    assert store.get_results("t-00100") == [] and store.list_decisions("t-01000") == []
    assert store.delete_finished_tasks(CUT) == 0  # nothing left to delete


def test_a_limit_caps_one_call_and_the_rest_stays_for_the_next(store: Store) -> None:
    with store.batch():
        for i in range(retention.BATCH + 3):
            _add(store, _task(f"t-{i:04d}", TaskState.CANCELLED, OLD, OLD), with_rows=False)

    assert store.delete_finished_tasks(CUT, limit=retention.BATCH + 1) == retention.BATCH + 1
    assert len(_ids(store)) == 2
    assert store.delete_finished_tasks(CUT, limit=retention.BATCH + 1) == 2
    assert _ids(store) == set()


def test_nothing_due_deletes_nothing(store: Store) -> None:
    _add(store, _task("t-new", TaskState.SUCCEEDED, NEW, NEW))
    _add(store, _task("t-old-pending", TaskState.PENDING, OLD, OLD))

    assert store.delete_finished_tasks(CUT) == 0
    assert store.delete_finished_tasks(0.0) == 0

    assert _ids(store) == {"t-new", "t-old-pending"}
    assert len(store.get_results("t-new")) == 1


def test_deleted_tasks_stay_gone_after_a_restart(backend) -> None:
    store = backend.open()
    _add(store, _task("t-gone", TaskState.FAILED, OLD, OLD))
    _add(store, _task("t-kept", TaskState.FAILED, NEW, NEW))
    assert store.delete_finished_tasks(CUT) == 1
    store.close()

    again = backend.open()
    try:
        assert again.get_task("t-gone") is None and again.get_results("t-gone") == []
        assert _ids(again) == {"t-kept"}
    finally:
        again.close()


# -- SQLite only -------------------------------------------------------------------
@pytest.fixture
def sqlite_store(tmp_path: Path):
    s = SQLiteStore(tmp_path / "retention.db")
    yield s
    s.close()


def test_sqlite_search_uses_the_state_index(sqlite_store: SQLiteStore) -> None:
    """No table scan of the tasks (the large table): the (state, created_at) index."""
    conn = sqlite_store._conn
    params = retention.sqlite_finished_params(CUT, retention.BATCH)
    plan = " ".join(
        r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + retention.SQLITE_FINISHED, params)
    )

    assert "USING INDEX idx_tasks_state (state=? AND created_at<?)" in plan
    assert "SCAN tasks" not in plan


def test_sqlite_commits_each_batch_on_its_own(sqlite_store: SQLiteStore) -> None:
    """The write lock is taken once per batch, not once for the whole deletion."""
    with sqlite_store.batch():
        for i in range(2 * retention.BATCH + 1):
            _add(sqlite_store, _task(f"t-{i:04d}", TaskState.FAILED, OLD, OLD), with_rows=False)
    statements: list[str] = []
    sqlite_store._conn.set_trace_callback(statements.append)
    try:
        assert sqlite_store.delete_finished_tasks(CUT) == 2 * retention.BATCH + 1
    finally:
        sqlite_store._conn.set_trace_callback(None)

    assert statements.count("BEGIN IMMEDIATE") == 3
    assert statements.count("COMMIT") == 3
