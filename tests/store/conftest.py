"""Backends and builders for the store tests.

The `backend` fixture runs every contract test once per backend:

- ``sqlite``: a real SQLite file in a temp dir.
- ``mongomock-STANDIN``: the real MongoStore code over mongomock, an in-memory
  stand-in for a MongoDB server (none can be installed on these machines). It
  checks our pymongo calls and document shapes, not server behaviour such as
  write concern or atomicity under concurrency.
- ``mongodb-real``: a real server, only when CLOUDAI_TEST_MONGODB_URI is set. Each
  test gets its own database, dropped afterwards.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import mongomock
import pytest
from pymongo import MongoClient

from cloudai.master.store import MongoStore, SQLiteStore, Store

MONGO_URI_ENV = "CLOUDAI_TEST_MONGODB_URI"
_RUN_ID = uuid.uuid4().hex[:8]
_db_counter = itertools.count()


class Backend:
    """Opens stores over one underlying database; `open()` twice simulates a restart."""

    name = ""
    in_memory = False

    def open(self) -> Store:
        raise NotImplementedError

    def cleanup(self) -> None:
        pass


class SQLiteBackend(Backend):
    name = "sqlite"

    def __init__(self, directory: Path) -> None:
        self.path = directory / "state.db"

    def open(self) -> Store:
        return SQLiteStore(self.path)


class MongomockBackend(Backend):
    """STAND-IN for MongoDB: one shared mongomock client plays the server, so a
    second open() sees the first one's data as a restarted master would."""

    name = "mongomock-STANDIN"
    in_memory = True

    def __init__(self) -> None:
        self.client = mongomock.MongoClient()

    def open(self) -> Store:
        return MongoStore("mongodb://mongomock.invalid/", client=self.client)


class RealMongoBackend(Backend):
    name = "mongodb-real"

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.database = f"cloudai_test_{_RUN_ID}_{next(_db_counter)}"

    def open(self) -> Store:
        return MongoStore(self.uri, database=self.database)

    def cleanup(self) -> None:
        client: MongoClient = MongoClient(self.uri, serverSelectionTimeoutMS=5000)
        try:
            client.drop_database(self.database)
        finally:
            client.close()


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("mongomock", id="mongomock-STANDIN", marks=pytest.mark.mongo),
    pytest.param(
        "mongodb-real",
        id="mongodb-real",
        marks=[
            pytest.mark.mongo,
            pytest.mark.skipif(
                not os.environ.get(MONGO_URI_ENV),
                reason=f"no MongoDB server: set {MONGO_URI_ENV}=mongodb://... to run "
                "the contract suite against a real one",
            ),
        ],
    ),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    kinds = {
        "sqlite": lambda: SQLiteBackend(tmp_path),
        "mongomock": MongomockBackend,
        "mongodb-real": lambda: RealMongoBackend(os.environ[MONGO_URI_ENV]),
    }
    chosen: Backend = kinds[request.param]()
    yield chosen
    chosen.cleanup()


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    opened = backend.open()
    yield opened
    opened.close()
