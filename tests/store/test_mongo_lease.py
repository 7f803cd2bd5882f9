"""One master per MongoDB database (master/store/mongo_lease.py): SQLite's file lock
had no MongoDB equivalent, so two masters on one database both scheduled its queue.

Run over the mongomock STAND-IN (no MongoDB server can be installed here: it checks
our calls and documents, not a server's atomicity), and over a real server when
CLOUDAI_TEST_MONGODB_URI is set. The lease's TTL is cut to 0.6 s to keep it fast."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import mongomock
import pytest
from pymongo import MongoClient

from cloudai.errors import StoreError
from cloudai.master.store import MongoStore, mongo_lease

from .conftest import MONGO_URI_ENV

TTL = 0.6

pytestmark = pytest.mark.mongo


class Server:
    """Opens master stores on one database: the stand-in's shared client, or a real
    server's database of this test (dropped after it)."""

    def __init__(self, kind: str) -> None:
        self.database = f"cloudai_lease_{uuid.uuid4().hex[:8]}"
        if kind == "mongomock":
            self.uri, self.client = "mongodb://mongomock.invalid/", mongomock.MongoClient()
        else:
            self.uri = os.environ[MONGO_URI_ENV]
            self.client = MongoClient(self.uri, serverSelectionTimeoutMS=5000)
        self.said: list[str] = []
        self.opened: list[MongoStore] = []

    def master(self) -> MongoStore:
        store = MongoStore(
            self.uri, self.database, client=self.client, exclusive=True, say=self.said.append
        )
        self.opened.append(store)
        return store

    @property
    def lease(self):
        return self.client.get_database(self.database).get_collection("master_lease")


@pytest.fixture(
    params=[
        pytest.param("mongomock", id="mongomock-STANDIN"),
        pytest.param(
            "real",
            id="mongodb-real",
            marks=pytest.mark.skipif(
                not os.environ.get(MONGO_URI_ENV), reason=f"no MongoDB server: set {MONGO_URI_ENV}"
            ),
        ),
    ]
)
def server(request, monkeypatch) -> Iterator[Server]:
    monkeypatch.setattr(mongo_lease, "LEASE_TTL_S", TTL)
    s = Server(request.param)
    yield s
    for store in s.opened:
        store.close()
    if request.param == "real":
        s.client.drop_database(s.database)
        s.client.close()


def test_a_second_master_waits_one_ttl_then_is_refused_while_the_first_renews(server):
    first = server.master()
    started = time.monotonic()
    with pytest.raises(StoreError) as err:
        server.master()
    waited = time.monotonic() - started
    holder = first._lease.holder
    assert f"is in use by another master ({holder}," in str(err.value)
    assert "run one master per database" in str(err.value)
    assert TTL <= waited < TTL + 3, waited  # it outlived the holder's TTL: renewed
    assert server.said == [
        f"MongoDB {first.url} is in use by the master {holder}: waiting up to {TTL:g}s "
        "for its lease to lapse"
    ]
    first.list_tasks()  # the first goes on using the store


def test_a_closed_masters_lease_is_taken_at_once(server):
    server.master().close()
    started = time.monotonic()
    second = server.master()
    assert time.monotonic() - started < TTL
    assert server.lease.find_one({"_id": "master"})["holder"] == second._lease.holder
    assert server.said == []


def test_a_killed_master_of_this_host_is_taken_over_at_once(server):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    server.lease.insert_one(
        {
            "_id": "master",
            "holder": "gone",
            "host": socket.gethostname(),
            "pid": int(dead.stdout),
            "expires_at": time.time() + 3600,
        }  # fmt: skip
    )
    started = time.monotonic()
    server.master()
    assert time.monotonic() - started < TTL and server.said == []


def test_a_master_elsewhere_that_stopped_renewing_is_taken_over_when_it_lapses(server):
    server.lease.insert_one(
        {
            "_id": "master",
            "holder": "elsewhere:1:x",
            "host": "elsewhere",
            "pid": 1,
            "expires_at": time.time() + TTL,
        }  # fmt: skip
    )
    store = server.master()
    assert len(server.said) == 1 and "elsewhere:1:x" in server.said[0]
    assert server.lease.find_one({"_id": "master"})["holder"] == store._lease.holder


def test_a_master_that_lost_its_lease_stops_using_the_store_and_leaves_it_alone(server):
    store = server.master()
    server.lease.update_one({"_id": "master"}, {"$set": {"holder": "intruder:2:y",
                            "expires_at": time.time() + 3600}})  # fmt: skip
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not store._lease._lost:
        time.sleep(0.05)
    with pytest.raises(StoreError, match=r"lost its lease on MongoDB .* to intruder:2:y"):
        store.list_tasks()
    store.close()  # closes without a word: nothing of the intruder's is touched
    assert server.lease.find_one({"_id": "master"})["holder"] == "intruder:2:y"


def test_a_lease_not_renewed_in_time_stops_the_store_until_it_is(server):
    store = server.master()
    store._lease._valid_until = time.time() - 1  # as after a pause or a partition
    with pytest.raises(StoreError, match="could not renew its lease"):
        store.list_tasks()
    store._lease._renew()
    store.list_tasks()


def test_a_store_opened_without_exclusive_takes_no_lease(server):
    store = MongoStore(server.uri, server.database, client=server.client)
    server.opened.append(store)
    assert store._lease is None and server.lease.find_one({"_id": "master"}) is None
