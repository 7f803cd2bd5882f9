"""A SQLite store written before workers' leaves were stored (no `left_at` in its
worker documents, same schema version) opens as it is: its workers did not leave,
and a leave is stored from then on. Nothing was added to the schema: a worker is one
JSON document, so an older CloudAI also reads a newer file (it ignores the key)."""

from __future__ import annotations

import json
import sqlite3

from cloudai.master.store import SQLiteStore

# A worker as CloudAI 0.x stored it, before `left_at`.
OLD_DOC = {
    "id": "w-old",
    "address": "10.0.0.5:50052",
    "capacity": {"cpu": 4.0, "memory_bytes": 8 * 2**30, "gpu": 0.0},
    "labels": {"zone": "a"},
    "health": "ACTIVE",
    "hostname": "host-old",
    "version": "0.1.0",
    "registered_at": 100.0,
    "last_heartbeat": 200.0,
}


def test_an_older_sqlite_store_without_left_at_opens_and_stores_leaves(tmp_path) -> None:
    path = tmp_path / "old.db"
    SQLiteStore(path).close()  # the tables, as every version since schema 1 makes them
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO workers (id, doc) VALUES (?, ?)", ("w-old", json.dumps(OLD_DOC)))
    conn.close()

    store = SQLiteStore(path, exclusive=True)
    try:
        old = store.get_worker("w-old")
        assert old is not None and old.left_at == 0.0 and old.labels == {"zone": "a"}
        assert store.set_worker_left("w-old", at=250.0)
    finally:
        store.close()
    doc = json.loads(sqlite3.connect(path).execute("SELECT doc FROM workers").fetchone()[0])
    assert doc == {**OLD_DOC, "left_at": 250.0}  # the rest of the document untouched
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 1
