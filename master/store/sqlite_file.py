"""What the SQLite store checks about its file before it writes to it.

- `check_schema`: the file is empty, or a CloudAI store of a schema version this
  code knows. A database of another program is refused before anything touches it
  (no WAL switch, no tables added), and so is one written by a newer CloudAI.
- `check_not_a_folder`: a folder given as the file is named as such.
- `MasterLock`: one master per database file. Two masters on one file would each
  schedule the same queue and declare the other's workers lost.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path

from cloudai.errors import StoreError

#: The columns CloudAI needs in each of its tables.
TABLES: dict[str, frozenset[str]] = {
    "workers": frozenset({"id", "doc"}),
    "tasks": frozenset({"id", "state", "attempt", "worker_id", "created_at", "updated_at", "doc"}),
    "results": frozenset({"task_id", "attempt", "doc"}),
    "decisions": frozenset({"id", "task_id", "decided_at", "doc"}),
    "telemetry": frozenset({"id", "worker_id", "at", "sample"}),
}


def check_not_a_folder(path: str, url: str) -> None:
    """StoreError naming the mistake when the path is a folder (SQLite only says
    "unable to open database file"), before a lock file is made beside it."""
    if Path(path).is_dir():
        raise StoreError(
            f"cannot open SQLite store at {url}: {path} is a folder, not a database "
            f"file: give the file's path, e.g. sqlite:///{Path(path) / 'master.db'}"
        )


def check_schema(conn: sqlite3.Connection, url: str, known_version: int) -> None:
    """StoreError unless the file is empty or holds a CloudAI store this code can use.
    The tables decide whose file it is before the version does: another program's
    database may set user_version too (a browser's is 70 and more), and must not be
    taken for a newer CloudAI's."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    tables = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    foreign = sorted(t for t in tables if not _is_ours(conn, t))
    ours = len(tables) > len(foreign)
    if version > known_version and (ours or not foreign):
        raise StoreError(
            f"{url} was written by a newer CloudAI (store schema version {version}; this "
            f"one knows up to {known_version}): upgrade CloudAI or use another --db"
        )
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise StoreError(
            f"{url} is not a CloudAI store (it holds table(s) {shown} of another program): "
            "give --db a new or CloudAI file; it was left unchanged"
        )


def _is_ours(conn: sqlite3.Connection, table: str) -> bool:
    wanted = TABLES.get(table)
    if wanted is None:
        return False
    columns = {row[1] for row in conn.execute(f"PRAGMA table_info('{table}')")}
    return wanted <= columns


class MasterLock:
    """An exclusive lock on PATH.lock, held while a master uses the file. The lock
    file keeps the holder's pid for the message; the kernel drops the lock when the
    holder exits, even by SIGKILL, so a stale file never blocks a restart."""

    def __init__(self, db_path: str, url: str) -> None:
        self.path = Path(db_path + ".lock")
        self.created = False  # by us: removed again if the store is refused (release)
        try:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                self.created = True
            except FileExistsError:
                self._fd = os.open(self.path, os.O_RDWR, 0o644)
        except OSError as err:
            msg = f"cannot open SQLite store at {url}: {self.path}: {err.strerror}"
            raise StoreError(msg) from err
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip()
            os.close(self._fd)
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise StoreError(
                f"another master is using {url}{who}: stop it, or give this one another --db"
            ) from err
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self, refused: bool = False) -> None:
        """Drop the lock. When the store was refused (another program's file, a newer
        CloudAI's), a lock file this master created goes too: the user's directory is
        left as it was found."""
        if self._fd >= 0:
            if refused and self.created:
                self.path.unlink(missing_ok=True)
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = -1
