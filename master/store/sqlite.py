"""SQLite store: the embedded default. One file, WAL mode, one connection behind a lock.

Each write is its own transaction, committed before the call returns. In WAL mode
with synchronous=NORMAL a committed transaction survives a killed process (the
WAL frames are already in the OS page cache), but a power loss can drop the most
recent commits. So the writes that acknowledge something a client cannot get back
by itself, a new task (its id is the submit's answer) and a cancel, are committed
with synchronous=FULL: the WAL is fsynced before the call returns, and with it
every commit before. So is a batch (the agent's placements: one fsync for the
batch). The single writes that follow the workers' reports (task states, results,
telemetry, registrations) stay at NORMAL; after a power loss the master and the
workers reconcile them as after a crash, at worst by running a task again
(docs/reliability.md).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pydantic_core

from cloudai.errors import Conflict, StoreError
from cloudai.model import (
    DecisionRecord,
    Result,
    Task,
    TaskState,
    WorkerHealth,
    WorkerRecord,
)

from . import retention
from .base import Store, cut_log_tail
from .sqlite_file import MasterLock, check_not_a_folder, check_schema

MEMORY = ":memory:"
SCHEMA_VERSION = 1
SYNCHRONOUS = "NORMAL"  # every write but the durable ones (see above)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS workers (
    id   TEXT PRIMARY KEY,
    doc  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    id         TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    attempt    INTEGER NOT NULL,
    worker_id  TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    doc        TEXT NOT NULL
);
-- (state, created_at) serves both "non-terminal tasks" and their ordering, so
-- listing the live queue never touches the terminal history.
CREATE INDEX IF NOT EXISTS idx_tasks_state ON tasks(state, created_at);
CREATE INDEX IF NOT EXISTS idx_tasks_created_at ON tasks(created_at);
CREATE INDEX IF NOT EXISTS idx_tasks_worker_id ON tasks(worker_id, created_at);
CREATE TABLE IF NOT EXISTS results (
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    doc     TEXT NOT NULL,
    PRIMARY KEY (task_id, attempt)
);
CREATE TABLE IF NOT EXISTS decisions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id    TEXT NOT NULL,
    decided_at REAL NOT NULL,
    doc        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_decisions_task_id ON decisions(task_id, decided_at);
CREATE INDEX IF NOT EXISTS idx_decisions_decided_at ON decisions(decided_at);
CREATE TABLE IF NOT EXISTS telemetry (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    worker_id TEXT NOT NULL,
    at        REAL NOT NULL,
    sample    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_telemetry_worker ON telemetry(worker_id, at);
"""


def _dumps(doc: dict) -> str:
    """Compact JSON. pydantic-core's encoder writes the same text several times faster
    than json.dumps; json.dumps is the fallback for what it refuses (lone surrogates)."""
    try:
        return pydantic_core.to_json(doc).decode()
    except (ValueError, UnicodeDecodeError):
        return json.dumps(doc, separators=(",", ":"))


class SQLiteStore(Store):
    """`Store` over one SQLite file (or ":memory:"). `exclusive`: hold the file for
    one master (a second one is refused); readers such as `agent train` pass False."""

    def __init__(self, path: str | Path, *, exclusive: bool = False) -> None:
        raw = str(path)
        if raw == MEMORY:
            self.path = MEMORY
            self.url = "sqlite://:memory:"
        else:
            resolved = Path(raw).expanduser().resolve()
            self.path = str(resolved)
            self.url = f"sqlite:///{resolved}"
        self._lock = threading.RLock()
        self._batch_depth = 0
        self._batch_lost = ""  # why SQLite rolled the open batch back, if it did
        self._master_lock: MasterLock | None = None
        try:
            self._conn = self._connect(exclusive)
        except BaseException:
            self._unlock(refused=True)
            raise

    def _connect(self, exclusive: bool) -> sqlite3.Connection:
        try:
            if self.path != MEMORY:
                check_not_a_folder(self.path, self.url)
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                if exclusive:
                    self._master_lock = MasterLock(self.path, self.url)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a write is
            # exactly one transaction and nothing stays open between calls.
            conn = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=10.0
            )
            try:
                _prepare(conn, self.url)
            except BaseException:
                conn.close()
                raise
            return conn
        except (sqlite3.Error, OSError) as err:
            raise StoreError(f"cannot open SQLite store at {self.url}: {err}") from err

    # -- plumbing ---------------------------------------------------------------
    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as err:
                raise StoreError(f"SQLite read failed ({self.url}): {err}") from err

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Many writes in one transaction: one commit instead of one per write. It is
        durable (fsynced), as any write inside may be. If SQLite rolls the whole
        transaction back (a full disk, an I/O error), every later write of the batch
        and its end raise StoreError: nothing of it is stored, none of it outside it."""
        with self._lock:
            if self._batch_depth:
                self._batch_depth += 1
                try:
                    yield
                finally:
                    self._batch_depth -= 1
                return
            self._batch_depth, self._batch_lost = 1, ""
            try:
                with self._transaction(durable=True):
                    yield
                    self._check_batch()
            finally:
                self._batch_depth = 0

    def _check_batch(self) -> None:
        """StoreError if SQLite has rolled back the open batch's transaction."""
        if not self._conn.in_transaction:
            why = self._batch_lost or "its transaction ended"
            raise StoreError(
                f"SQLite write failed ({self.url}): {why}; the whole batch was rolled back"
            )

    def _begin(self) -> None:
        try:
            # IMMEDIATE takes the write lock up front, so a second process on
            # the same file waits (busy timeout) instead of failing mid-way.
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as err:
            raise StoreError(f"SQLite write failed ({self.url}): {err}") from err

    @contextmanager
    def _write(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction: committed on success, rolled back on any error. `durable`:
        fsynced before this returns (synchronous=FULL, which SQLite lets a connection
        change only between transactions)."""
        with self._lock:
            if self._batch_depth:
                # Every write here is one statement, and SQLite undoes a failed
                # statement on its own: the rest of the batch stays intact. Unless
                # it rolled the whole transaction back: then nothing more is
                # written, lest it commit on its own, outside the batch.
                self._check_batch()
                try:
                    yield self._conn
                except sqlite3.Error as err:
                    if not (self._conn.in_transaction or self._batch_lost):
                        self._batch_lost = str(err)
                    self._check_batch()
                    raise StoreError(f"SQLite write failed ({self.url}): {err}") from err
                return
            with self._transaction(durable):
                yield self._conn

    @contextmanager
    def _transaction(self, durable: bool) -> Iterator[None]:
        """BEGIN ... COMMIT, rolled back on any error; `durable`: at synchronous=FULL."""
        with self._fsynced(durable):
            self._begin()
            try:
                yield
                self._conn.execute("COMMIT")
            except BaseException as err:
                self._rollback()
                if isinstance(err, sqlite3.Error):
                    raise StoreError(f"SQLite write failed ({self.url}): {err}") from err
                raise

    @contextmanager
    def _fsynced(self, on: bool) -> Iterator[None]:
        """With `on`: synchronous=FULL for the transaction inside, NORMAL again after."""
        if not on:
            yield
            return
        try:
            self._conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as err:
            raise StoreError(f"SQLite write failed ({self.url}): {err}") from err
        try:
            yield
        finally:
            with suppress(sqlite3.Error):
                self._conn.execute(f"PRAGMA synchronous={SYNCHRONOUS}")

    def _rollback(self) -> None:
        # The failed statement may already have ended the transaction.
        with suppress(sqlite3.Error):
            self._conn.execute("ROLLBACK")

    def _unlock(self, refused: bool = False) -> None:
        if self._master_lock is not None:
            self._master_lock.release(refused)

    def close(self) -> None:
        with self._lock:
            try:
                self._conn.close()
            except sqlite3.Error as err:
                raise StoreError(f"closing {self.url} failed: {err}") from err
            finally:
                self._unlock()

    # -- workers ----------------------------------------------------------------
    def upsert_worker(self, worker: WorkerRecord) -> None:
        with self._write() as c:
            c.execute(
                "INSERT INTO workers (id, doc) VALUES (?, ?)"
                " ON CONFLICT(id) DO UPDATE SET doc = excluded.doc",
                (worker.id, _dumps(worker.to_dict())),
            )

    def get_worker(self, worker_id: str) -> WorkerRecord | None:
        with self._read() as c:
            row = c.execute("SELECT doc FROM workers WHERE id = ?", (worker_id,)).fetchone()
        return WorkerRecord.from_dict(json.loads(row[0])) if row else None

    def list_workers(self) -> list[WorkerRecord]:
        with self._read() as c:
            rows = c.execute("SELECT doc FROM workers ORDER BY id").fetchall()
        return [WorkerRecord.from_dict(json.loads(r[0])) for r in rows]

    def set_worker_health(self, worker_id: str, health: WorkerHealth, at: float) -> bool:
        with self._write() as c:
            cur = c.execute(
                "UPDATE workers SET doc = json_set(doc, '$.health', ?, '$.last_heartbeat', ?)"
                " WHERE id = ?",
                (WorkerHealth(health).value, float(at), worker_id),
            )
            return cur.rowcount == 1

    def set_worker_left(self, worker_id: str, at: float) -> bool:
        # In the JSON document, as every worker field: no column, so a database of an
        # older CloudAI opens as it is (its workers have no left_at: they did not leave).
        with self._write() as c:
            cur = c.execute(
                "UPDATE workers SET doc = json_set(doc, '$.left_at', ?) WHERE id = ?",
                (float(at), worker_id),
            )
            return cur.rowcount == 1

    def add_telemetry_sample(self, worker_id: str, at: float, sample: dict) -> None:
        with self._write() as c:
            c.execute(
                "INSERT INTO telemetry (worker_id, at, sample) VALUES (?, ?, ?)",
                (worker_id, float(at), _dumps(sample)),
            )

    def telemetry_history(self, worker_id: str, limit: int = 100) -> list[tuple[float, dict]]:
        sql = "SELECT at, sample FROM telemetry WHERE worker_id = ? ORDER BY at DESC, id DESC"
        params: list[Any] = [worker_id]
        if limit > 0:
            sql += " LIMIT ?"
            params.append(limit)
        with self._read() as c:
            rows = c.execute(sql, params).fetchall()
        return [(float(at), json.loads(s)) for at, s in reversed(rows)]

    def trim_telemetry(self, before: float) -> int:
        with self._write() as c:
            return c.execute("DELETE FROM telemetry WHERE at < ?", (float(before),)).rowcount

    # -- tasks ------------------------------------------------------------------
    def create_task(self, task: Task) -> None:
        with self._write(durable=True) as c:
            try:
                c.execute(
                    "INSERT INTO tasks (id, state, attempt, worker_id, created_at, updated_at, doc)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (task.id, *_task_columns(task)),
                )
            except sqlite3.IntegrityError as err:
                raise Conflict(f"task {task.id} already exists") from err

    def get_task(self, task_id: str) -> Task | None:
        with self._read() as c:
            row = c.execute("SELECT doc FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return Task.from_dict(json.loads(row[0])) if row else None

    def list_tasks(
        self,
        states: Iterable[TaskState] | None = None,
        worker_id: str | None = None,
        limit: int = 0,
        owner: str | None = None,
    ) -> list[Task]:
        query = list_tasks_query(states, worker_id, limit, owner)
        if query is None:
            return []
        with self._read() as c:
            rows = c.execute(*query).fetchall()
        # The query runs newest first so LIMIT keeps the newest N; callers get oldest first.
        return [Task.from_dict(json.loads(r[0])) for r in reversed(rows)]

    def update_task(self, task: Task, expect_state: TaskState, expect_attempt: int) -> bool:
        state, attempt, worker_id, created_at, updated_at, doc = _task_columns(task)
        with self._write(durable=task.state == TaskState.CANCELLED) as c:
            cur = c.execute(
                "UPDATE tasks SET state = ?, attempt = ?, worker_id = ?, created_at = ?,"
                " updated_at = ?, doc = ? WHERE id = ? AND state = ? AND attempt = ?",
                (
                    state,
                    attempt,
                    worker_id,
                    created_at,
                    updated_at,
                    doc,
                    task.id,
                    TaskState(expect_state).value,
                    int(expect_attempt),
                ),
            )
            return cur.rowcount == 1

    def count_tasks_by_state(self) -> dict[str, int]:
        counts = {s.value: 0 for s in TaskState}
        with self._read() as c:
            # GROUP BY state walks idx_tasks_state only; the task documents stay on disk.
            for state, n in c.execute("SELECT state, COUNT(*) FROM tasks GROUP BY state"):
                counts[state] = int(n)
        return counts

    def delete_finished_tasks(self, before: float, limit: int = 0) -> int:
        def one_batch(n: int) -> int:  # one short transaction per batch
            with self._write() as c:
                return retention.sqlite_batch(c, before, n)

        return retention.in_batches(one_batch, limit)

    # -- results ----------------------------------------------------------------
    def put_result(self, result: Result) -> None:
        doc = result.to_dict()
        doc["log_tail"] = cut_log_tail(result.log_tail)
        with self._write() as c:
            c.execute(
                "INSERT INTO results (task_id, attempt, doc) VALUES (?, ?, ?)"
                " ON CONFLICT(task_id, attempt) DO UPDATE SET doc = excluded.doc",
                (result.task_id, int(result.attempt), _dumps(doc)),
            )

    def get_results(self, task_id: str) -> list[Result]:
        with self._read() as c:
            rows = c.execute(
                "SELECT doc FROM results WHERE task_id = ? ORDER BY attempt", (task_id,)
            ).fetchall()
        return [Result.from_dict(json.loads(r[0])) for r in rows]

    # -- decisions --------------------------------------------------------------
    def add_decision(self, decision: DecisionRecord) -> None:
        with self._write() as c:
            c.execute(
                "INSERT INTO decisions (task_id, decided_at, doc) VALUES (?, ?, ?)",
                (decision.task_id, float(decision.decided_at), _dumps(decision.to_dict())),
            )

    def list_decisions(self, task_id: str, limit: int = 20) -> list[DecisionRecord]:
        sql = "SELECT doc FROM decisions WHERE task_id = ? ORDER BY decided_at DESC, id DESC"
        params: list[Any] = [task_id]
        if limit > 0:
            sql += " LIMIT ?"
            params.append(limit)
        with self._read() as c:
            rows = c.execute(sql, params).fetchall()
        return [DecisionRecord.from_dict(json.loads(r[0])) for r in rows]

    def iter_decisions(self, since: float = 0.0, limit: int = 0) -> list[DecisionRecord]:
        sql = "SELECT doc FROM decisions WHERE decided_at >= ? ORDER BY decided_at, id"
        params: list[Any] = [float(since)]
        if limit > 0:
            sql += " LIMIT ?"
            params.append(limit)
        with self._read() as c:
            rows = c.execute(sql, params).fetchall()
        return [DecisionRecord.from_dict(json.loads(r[0])) for r in rows]


def _prepare(conn: sqlite3.Connection, url: str) -> None:
    # Before any write: another program's database, or a newer CloudAI's, is
    # refused as it is, not converted to WAL and half-migrated.
    check_schema(conn, url, SCHEMA_VERSION)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={SYNCHRONOUS}")
    conn.execute("PRAGMA foreign_keys=ON")
    # CREATE ... IF NOT EXISTS only reads the schema: opening a large
    # file costs the same as opening an empty one.
    conn.executescript(_SCHEMA)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def list_tasks_query(
    states: Iterable[TaskState] | None, worker_id: str | None, limit: int, owner: str | None = None
) -> tuple[str, list[Any]] | None:
    """SQL and parameters for list_tasks, newest first; None when no state can match.
    Separate so a test can check the plan uses the state index."""
    where: list[str] = []
    params: list[Any] = []
    if states is not None:
        values = sorted({TaskState(s).value for s in states})
        if not values:
            return None
        where.append(f"state IN ({','.join('?' * len(values))})")
        params.extend(values)
    if worker_id is not None:
        where.append("worker_id = ?")
        params.append(worker_id)
    if owner is not None:
        # Deliberately unindexed: an expression index on it (with created_at) made an
        # owner's list_tasks ~6x faster (its SQL 30-75x) but the store's task writes
        # ~24% slower, since every rewrite of `doc` rewrites the index entry too
        # (benchmarks/store_owner_index.py). The query walks idx_tasks_created_at.
        where.append("json_extract(doc, '$.spec.owner') = ?")
        params.append(owner)
    sql = "SELECT doc FROM tasks"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, id DESC"
    if limit > 0:
        sql += " LIMIT ?"
        params.append(limit)
    return sql, params


def _task_columns(task: Task) -> tuple[str, int, str, float, float, str]:
    """The indexed columns mirror fields of `doc`; both are always written together."""
    return (
        TaskState(task.state).value,
        int(task.attempt),
        task.worker_id,
        float(task.created_at),
        float(task.updated_at),
        _dumps(task.to_dict()),
    )
