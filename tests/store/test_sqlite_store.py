"""SQLite-only behaviour: WAL, durability across SIGKILL, index use, error translation."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cloudai.errors import Conflict, StoreError
from cloudai.master.store import SQLiteStore
from cloudai.master.store.sqlite import list_tasks_query
from cloudai.model import TaskState

from .builders import make_task, make_worker

LIVE = [TaskState.PENDING, TaskState.PLACED, TaskState.RUNNING]


def test_file_store_uses_wal_journal(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "s.db").close()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_committed_transition_survives_sigkill(tmp_path: Path) -> None:
    """A child commits a create and a CAS update, then SIGKILLs itself at once:
    no close(), no checkpoint. The parent must find the updated task."""
    db = tmp_path / "killed.db"
    child = textwrap.dedent(
        f"""
        import os, signal
        from cloudai.master.store import SQLiteStore
        from cloudai.model import Task, TaskSpec, TaskState
        store = SQLiteStore({str(db)!r})
        task = Task(id="t-1", spec=TaskSpec(image="busybox"))
        store.create_task(task)
        task.state, task.attempt, task.worker_id = TaskState.PLACED, 1, "w-1"
        assert store.update_task(task, TaskState.PENDING, 0)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()

    store = SQLiteStore(db)
    try:
        task = store.get_task("t-1")
        assert task is not None
        assert (task.state, task.attempt, task.worker_id) == (TaskState.PLACED, 1, "w-1")
    finally:
        store.close()


@pytest.mark.parametrize(
    ("states", "worker_id", "limit", "index"),
    [
        (LIVE, None, 0, "idx_tasks_state"),
        (LIVE, None, 50, "idx_tasks_state"),
        (None, "w-1", 0, "idx_tasks_worker_id"),
        (None, None, 20, "idx_tasks_created_at"),
    ],
)
def test_list_queries_use_an_index(
    states: list[TaskState] | None, worker_id: str | None, limit: int, index: str
) -> None:
    store = SQLiteStore(":memory:")
    query = list_tasks_query(states, worker_id, limit)
    assert query is not None
    sql, params = query

    plan = " ".join(row[3] for row in store._conn.execute("EXPLAIN QUERY PLAN " + sql, params))

    assert f"INDEX {index}" in plan
    assert re.search(r"SCAN tasks(?! USING)", plan) is None  # never a table scan
    store.close()


def test_empty_state_filter_skips_the_database() -> None:
    assert list_tasks_query([], None, 0) is None


def test_calls_after_close_raise_store_error() -> None:
    store = SQLiteStore(":memory:")
    store.close()
    with pytest.raises(StoreError):
        store.get_task("t-1")
    with pytest.raises(StoreError):
        store.create_task(make_task("t-1"))


def test_unopenable_path_raises_store_error(tmp_path: Path) -> None:
    (tmp_path / "a-directory.db").mkdir()
    with pytest.raises(StoreError, match="cannot open SQLite store"):
        SQLiteStore(tmp_path / "a-directory.db")


def test_failed_write_rolls_back_and_store_stays_usable(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    try:
        store.create_task(make_task("t-1"))
        with pytest.raises(StoreError), store._write() as conn:
            conn.execute("UPDATE tasks SET state = 'RUNNING' WHERE id = 't-1'")
            conn.execute("INSERT INTO no_such_table VALUES (1)")

        task = store.get_task("t-1")
        assert task is not None and task.state == TaskState.PENDING
        assert store.count_tasks_by_state()["RUNNING"] == 0
        store.create_task(make_task("t-2"))
        assert [t.id for t in store.list_tasks()] == ["t-1", "t-2"]
    finally:
        store.close()


def _commits(store: SQLiteStore, run) -> list[str]:
    """The synchronous level (as SQLite reports it: 1 NORMAL, 2 FULL) of each COMMIT
    that `run()` makes, and the level left afterwards."""
    conn, levels, seen = store._conn, [], []
    conn.set_trace_callback(seen.append)
    try:
        run()
    finally:
        conn.set_trace_callback(None)
    level = "NORMAL"
    for sql in seen:
        if sql.startswith("PRAGMA synchronous="):
            level = sql.split("=", 1)[1]
        elif sql == "COMMIT":
            levels.append(level)
    after = {1: "NORMAL", 2: "FULL"}[conn.execute("PRAGMA synchronous").fetchone()[0]]
    return [*levels, f"then {after}"]


def test_acknowledging_writes_are_fsynced_and_the_rest_are_not(tmp_path: Path) -> None:
    """A new task (the submit's answer), a cancel and a batch (the agent's placements)
    commit at synchronous=FULL; a task's other transitions and the worker-driven
    writes at NORMAL. The level goes back to NORMAL after each, failed or not."""
    store = SQLiteStore(tmp_path / "s.db")
    task = make_task("t-1")
    assert _commits(store, lambda: store.create_task(task)) == ["FULL", "then NORMAL"]
    running = make_task("t-1", state=TaskState.RUNNING)
    assert _commits(store, lambda: store.update_task(running, TaskState.PENDING, 0)) == [
        "NORMAL",
        "then NORMAL",
    ]
    cancelled = make_task("t-1", state=TaskState.CANCELLED)
    assert _commits(store, lambda: store.update_task(cancelled, TaskState.RUNNING, 0)) == [
        "FULL",
        "then NORMAL",
    ]
    assert store.get_task("t-1").state == TaskState.CANCELLED
    worker = make_worker("w-1")
    assert _commits(store, lambda: store.upsert_worker(worker)) == ["NORMAL", "then NORMAL"]
    sample = lambda: store.add_telemetry_sample("w-1", 5.0, {"cpu": 1})  # noqa: E731
    assert _commits(store, sample) == ["NORMAL", "then NORMAL"]

    def batch() -> None:
        with store.batch():
            store.create_task(make_task("t-2"))
            store.create_task(make_task("t-3"))

    assert _commits(store, batch) == ["FULL", "then NORMAL"]
    with pytest.raises(Conflict):  # a failed durable write leaves NORMAL behind too
        _commits(store, lambda: store.create_task(make_task("t-2")))
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 1
    store.close()
