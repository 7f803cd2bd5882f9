"""Task retention: deleting finished tasks with everything stored only for them.

A task in a terminal state whose `updated_at` is older than the cut-off is deleted,
together with its results (which hold the attempts' log tails) and its placement
decisions. `updated_at` is when the task ended: nothing writes a task once it is
terminal (a late result for it goes to the results only).

Deletion goes in batches of BATCH tasks, each its own transaction in SQLite, so one
pass never holds the write lock for long. Both stores find the tasks through their
(state, created_at) index: a task is created before it ends, so `created_at` before
the cut-off bounds the search to old tasks without a new index.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from cloudai.model import TERMINAL_STATES

BATCH = 500
TERMINAL = sorted(s.value for s in TERMINAL_STATES)

SQLITE_FINISHED = (
    f"SELECT id FROM tasks WHERE state IN ({','.join('?' * len(TERMINAL))})"
    " AND created_at < ? AND updated_at < ? LIMIT ?"
)


def in_batches(delete_batch: Callable[[int], int], limit: int = 0) -> int:
    """Call `delete_batch(n)` (it deletes up to n tasks, returns how many) until it
    finds fewer than n or `limit` tasks are deleted (0: no limit). Returns the total."""
    total = 0
    while True:
        n = BATCH if limit <= 0 else min(BATCH, limit - total)
        if n <= 0:
            return total
        done = delete_batch(n)
        total += done
        if done < n:
            return total


def sqlite_finished_params(before: float, n: int) -> tuple[Any, ...]:
    return (*TERMINAL, float(before), float(before), int(n))


def sqlite_batch(conn: sqlite3.Connection, before: float, n: int) -> int:
    """One batch, inside the caller's write transaction."""
    ids = [row[0] for row in conn.execute(SQLITE_FINISHED, sqlite_finished_params(before, n))]
    if not ids:
        return 0
    marks = ",".join("?" * len(ids))
    conn.execute(f"DELETE FROM results WHERE task_id IN ({marks})", ids)
    conn.execute(f"DELETE FROM decisions WHERE task_id IN ({marks})", ids)
    return conn.execute(f"DELETE FROM tasks WHERE id IN ({marks})", ids).rowcount


def mongo_batch(tasks: Any, results: Any, decisions: Any, before: float, n: int) -> int:
    """One batch over the three collections. A task's results and decisions go first:
    if the master stops half-way, the task is still there for the next pass, and
    nothing is left behind that no task names."""
    cut = {"$lt": float(before)}
    query = {"state": {"$in": TERMINAL}, "created_at": cut, "updated_at": cut}
    ids = [doc["_id"] for doc in tasks.find(query, {"_id": True}).limit(int(n))]
    if not ids:
        return 0
    results.delete_many({"task_id": {"$in": ids}})
    decisions.delete_many({"task_id": {"$in": ids}})
    return tasks.delete_many({"_id": {"$in": ids}, "state": {"$in": TERMINAL}}).deleted_count
