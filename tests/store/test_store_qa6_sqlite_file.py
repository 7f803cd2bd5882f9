"""What `cloudai master` does with the SQLite file it is given, as a real process:
another program's database and a newer CloudAI's are refused untouched, a second
master on the same file is refused, what was acknowledged survives kill -9, and a
folder that cannot be made is one line, not a traceback. Plus the MongoDB URI
options pymongo only warned about."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cloudai import rpc
from cloudai.errors import ConfigError
from cloudai.master.store import SQLiteStore, open_store
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import client_pb2_grpc
from tests.ports import free_port

from .builders import make_task


def start(port: int, db: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cloudai", "master", "--no-console", "--port", str(port)]
        + ["--db", db],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def refused(db: str, part: str, env: dict | None = None) -> None:
    proc = start(free_port(), db, env)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    assert err.count("\n") == 1 and part in err and "Traceback" not in err, err
    assert "listening" not in out


@contextmanager
def stub(port: int) -> Iterator[client_pb2_grpc.ClusterStub]:
    with rpc.channel(f"127.0.0.1:{port}") as ch:
        yield client_pb2_grpc.ClusterStub(ch)


def wait_serving(port: int) -> None:
    with stub(port) as cluster:
        cluster.GetStatus(cpb.StatusRequest(), timeout=30, wait_for_ready=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
    proc.communicate(timeout=20)


# -- the file -----------------------------------------------------------------------------


def test_another_programs_database_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT)")
        conn.execute("INSERT INTO tasks VALUES (1, 'buy milk')")
    conn.close()
    before = db.read_bytes()

    refused(str(db), "is not a CloudAI store (it holds table(s) tasks of another program)")

    assert db.read_bytes() == before  # not switched to WAL, no tables added
    assert not Path(f"{db}-wal").exists()
    assert not Path(f"{db}.lock").exists()  # the lock file it made went with it


def test_a_newer_schema_version_is_refused_and_kept(tmp_path: Path) -> None:
    db = tmp_path / "future.db"
    SQLiteStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 7")
    conn.close()

    Path(f"{db}.lock").write_text("4242\n")  # left by the newer master that used it
    refused(str(db), "written by a newer CloudAI (store schema version 7; this one knows up to 1)")

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 7
    conn.close()
    assert Path(f"{db}.lock").exists()  # there before this master: not its to remove


def test_a_cloudai_store_without_a_version_still_opens(tmp_path: Path) -> None:
    """The control: a store written before user_version was set is CloudAI's own."""
    db = tmp_path / "old.db"
    store = SQLiteStore(db)
    store.create_task(make_task("t-old"))
    store.close()
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 0")
    conn.close()

    store = SQLiteStore(db)
    try:
        assert store.get_task("t-old") is not None
    finally:
        store.close()


def test_a_folder_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")

    refused(f"sqlite:///{tmp_path}/file/sub/m.db", "cannot open SQLite store")


def test_an_unusable_data_folder_does_not_stop_a_master_with_its_own_db(tmp_path: Path) -> None:
    """The default data folder is only the MongoDB fallback's home: a master given
    --db elsewhere must not die making it."""
    (tmp_path / "file").write_text("x")
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "file" / "data")}
    port = free_port()
    proc = start(port, str(tmp_path / "m.db"), env)
    try:
        wait_serving(port)
    finally:
        stop(proc)
    assert proc.returncode == 0, proc.stderr


# -- one master per file, and kill -9 -------------------------------------------------------


def test_second_master_on_one_file_is_refused_and_kill_9_keeps_acknowledged(tmp_path) -> None:
    db = str(tmp_path / "shared.db")
    port = free_port()
    first = start(port, db)
    try:
        wait_serving(port)
        spec = cpb.SubmitTaskRequest()
        spec.spec.image = "cloudai/sample-task:latest"
        with stub(port) as cluster:
            task_id = cluster.SubmitTask(spec, timeout=10).task_id
        refused(db, f"another master is using sqlite:///{db} (pid {first.pid})")
        reader = SQLiteStore(db)  # a reader (agent train) may still open it
        assert reader.get_task(task_id) is not None
        reader.close()
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        port2 = free_port()
        second = start(port2, db)  # the kernel dropped the dead master's lock
        try:
            wait_serving(port2)
            with stub(port2) as cluster:
                got = cluster.GetTask(cpb.GetTaskRequest(task_id=task_id), timeout=10)
            assert got.id == task_id
        finally:
            stop(second)
    finally:
        stop(first)


# -- MongoDB URI options --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "part"),
    [
        ("serverSelectionTimeoutMS=abc", "serverselectiontimeoutms must be an integer"),
        ("replicaSett=rs0", "Unknown option"),
    ],
)
def test_a_bad_mongodb_uri_option_is_bad_input_not_a_fallback(tmp_path, query, part) -> None:
    url = f"mongodb://127.0.0.1:1/?{query}"
    with pytest.raises(ConfigError, match=part) as err:
        open_store(url, fallback_sqlite_path=tmp_path / "fallback.db", warn=lambda m: None)
    assert "invalid MongoDB URI" in str(err.value)
    assert not (tmp_path / "fallback.db").exists()
