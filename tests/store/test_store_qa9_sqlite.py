"""QA pass 8 (store) on the SQLite file and its transactions: another program's
database that sets a schema version is not taken for a newer CloudAI's, a folder
given as the file is named as such (as a real `cloudai master`), and a batch that
SQLite rolled back as a whole (a full disk) writes nothing more outside it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cloudai.errors import StoreError
from cloudai.master.store import SQLiteStore

from .builders import make_decision, make_task
from .test_store_qa6_sqlite_file import refused


def _foreign_db(path: Path, version: int) -> bytes:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT)")
        conn.execute(f"PRAGMA user_version = {version}")
    conn.close()
    return path.read_bytes()


# -- whose file it is ------------------------------------------------------------------------


def test_another_programs_versioned_database_is_not_called_a_newer_cloudai(tmp_path) -> None:
    """A browser's places.sqlite has user_version 70 and more: the master said it was
    'written by a newer CloudAI' and told the user to upgrade CloudAI."""
    db = tmp_path / "places.sqlite"
    before = _foreign_db(db, 70)

    refused(str(db), "is not a CloudAI store (it holds table(s) moz_places of another program)")

    assert db.read_bytes() == before


def test_a_newer_cloudai_store_with_a_table_this_one_lacks_is_still_newer(tmp_path) -> None:
    """The control: a newer CloudAI may add tables; its file is still CloudAI's."""
    db = tmp_path / "future.db"
    SQLiteStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE leases (id TEXT PRIMARY KEY, doc TEXT)")
        conn.execute("PRAGMA user_version = 2")
    conn.close()

    with pytest.raises(StoreError, match="written by a newer CloudAI .store schema version 2"):
        SQLiteStore(db)


def test_a_folder_given_as_the_file_is_named_and_gets_no_lock_beside_it(tmp_path) -> None:
    """SQLite only said 'unable to open database file', and d.lock was left behind."""
    folder = tmp_path / "data"
    folder.mkdir()

    refused(f"sqlite:///{folder}", f"{folder} is a folder, not a database file")

    assert not Path(f"{folder}.lock").exists()
    assert list(folder.iterdir()) == []


# -- a batch SQLite rolled back ---------------------------------------------------------------


@pytest.fixture
def store_that_fails_whole(tmp_path: Path):
    """A store whose insert of a decision for task 'boom' makes SQLite roll the whole
    transaction back, as it does on a full disk or an I/O error (SQLITE_FULL,
    SQLITE_IOERR) in the middle of a transaction."""
    store = SQLiteStore(tmp_path / "m.db")
    store._conn.execute(  # a TEMP trigger lives on this connection only
        "CREATE TEMP TRIGGER boom BEFORE INSERT ON decisions WHEN NEW.task_id = 'boom'"
        " BEGIN SELECT RAISE(ROLLBACK, 'database or disk is full'); END"
    )
    yield store
    store.close()


def test_a_batch_rolled_back_by_sqlite_writes_nothing_more(store_that_fails_whole) -> None:
    """Before: the writes after the failure committed one by one, outside the batch,
    while the batch's end reported it failed ('cannot commit - no transaction is
    active'): the caller, told nothing was stored, had tasks placed it never sent."""
    store = store_that_fails_whole
    with pytest.raises(StoreError, match="the whole batch was rolled back"), store.batch():
        store.create_task(make_task("t-before"))
        with pytest.raises(StoreError, match="database or disk is full"):
            store.add_decision(make_decision("boom", 1.0))
        with pytest.raises(StoreError, match="the whole batch was rolled back"):
            store.create_task(make_task("t-after"))

    assert store.list_tasks() == []
    assert store.list_decisions("boom") == []


def test_a_store_whose_batch_was_rolled_back_works_on(store_that_fails_whole) -> None:
    store = store_that_fails_whole
    lost = "disk is full; the whole batch was rolled back"
    with pytest.raises(StoreError, match=lost), store.batch():
        store.add_decision(make_decision("boom", 1.0))

    with store.batch():
        store.create_task(make_task("t-1"))
    store.create_task(make_task("t-2"))

    assert [t.id for t in store.list_tasks()] == ["t-1", "t-2"]
