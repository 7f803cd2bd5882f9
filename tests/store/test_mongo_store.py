"""MongoStore-only behaviour, over the mongomock STAND-IN (no MongoDB server can be
installed here): write concern, indexes, error translation, ping, client ownership."""

from __future__ import annotations

import time

import mongomock
import pytest
from pymongo.errors import AutoReconnect, ServerSelectionTimeoutError

from cloudai.errors import ConfigError, Conflict, StoreError, Unavailable
from cloudai.master.store import MongoStore
from cloudai.master.store.mongo import ping, short_reason

from .builders import make_task

pytestmark = pytest.mark.mongo

COLLECTIONS = ["workers", "tasks", "results", "decisions", "telemetry"]


@pytest.fixture
def server() -> mongomock.MongoClient:
    return mongomock.MongoClient()


@pytest.fixture
def mongo(server: mongomock.MongoClient) -> MongoStore:
    return MongoStore("mongodb://bob:hunter2@db.local:27017/?authSource=admin", client=server)


def test_url_masks_the_password(mongo: MongoStore) -> None:
    assert mongo.url == "mongodb://bob:***@db.local:27017/?authSource=admin"


@pytest.mark.parametrize("name", COLLECTIONS)
def test_collections_write_with_majority_concern(mongo: MongoStore, name: str) -> None:
    collection = getattr(mongo, f"_{name}")
    assert collection.write_concern.document == {"w": "majority"}


@pytest.mark.parametrize(
    ("collection", "index"),
    [
        ("tasks", "state_1_created_at_1"),
        ("tasks", "created_at_1"),
        ("tasks", "worker_id_1_created_at_1"),
        ("results", "task_id_1_attempt_1"),
        ("decisions", "task_id_1_decided_at_-1"),
        ("decisions", "decided_at_1"),
        ("telemetry", "worker_id_1_at_1"),
    ],
)
def test_indexes_are_created_on_start(
    mongo: MongoStore, server: mongomock.MongoClient, collection: str, index: str
) -> None:
    assert index in server["cloudai"][collection].index_information()


def test_reopening_keeps_data_and_index_creation_is_idempotent(
    server: mongomock.MongoClient,
) -> None:
    MongoStore("mongodb://h/", client=server).create_task(make_task("t-1"))
    again = MongoStore("mongodb://h/", client=server)
    assert again.get_task("t-1") == make_task("t-1")


@pytest.mark.parametrize(
    ("method", "args", "driver_error"),
    [
        ("get_task", ("t-1",), ServerSelectionTimeoutError("no servers, Timeout: 1s")),
        ("list_tasks", (), AutoReconnect("connection reset")),
        ("create_task", (make_task("t-1"),), AutoReconnect("primary stepped down")),
    ],
)
def test_driver_errors_become_store_errors(
    mongo: MongoStore, monkeypatch: pytest.MonkeyPatch, method: str, args: tuple, driver_error
) -> None:
    def fail(*_a, **_k):
        raise driver_error

    for op in ["find_one", "find", "insert_one"]:
        monkeypatch.setattr(mongo._tasks, op, fail)

    with pytest.raises(StoreError) as info:
        getattr(mongo, method)(*args)
    assert info.value.__cause__ is driver_error
    assert "hunter2" not in str(info.value)


def test_duplicate_key_becomes_conflict_not_store_error(mongo: MongoStore) -> None:
    mongo.create_task(make_task("t-1"))
    with pytest.raises(Conflict) as info:
        mongo.create_task(make_task("t-1"))
    assert not isinstance(info.value, StoreError)


def test_close_leaves_an_injected_client_open(
    mongo: MongoStore, server: mongomock.MongoClient
) -> None:
    mongo.create_task(make_task("t-1"))
    mongo.close()
    assert server["cloudai"]["tasks"].count_documents({}) == 1


def test_store_ping_succeeds_on_a_live_client(mongo: MongoStore) -> None:
    mongo.ping(timeout_s=0.5)  # raises Unavailable otherwise


def test_ping_unreachable_server_raises_unavailable_quickly() -> None:
    started = time.monotonic()
    with pytest.raises(Unavailable, match="Connection refused|refused|timed out"):
        ping("mongodb://127.0.0.1:1/", timeout_s=0.3)
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize(
    "uri", ["mongodb://bob:pw@", "mongodb://h:notaport/", "mongodb+srv://h:27017/"]
)
def test_malformed_uri_is_a_config_error_in_ping_and_store(uri: str) -> None:
    with pytest.raises(ConfigError, match="invalid MongoDB URI"):
        ping(uri, timeout_s=0.3)
    with pytest.raises(ConfigError, match="invalid MongoDB URI"):
        MongoStore(uri)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "127.0.0.1:1: [Errno 111] Connection refused (configured timeouts: "
            "socketTimeoutMS: 300.0ms, connectTimeoutMS: 300.0ms), Timeout: 0.3s, "
            "Topology Description: <TopologyDescription ...>",
            "127.0.0.1:1: [Errno 111] Connection refused",
        ),
        ("first line\nsecond line", "first line"),
        ("auth failed for bob:sekret", "auth failed for bob:***"),
    ],
)
def test_short_reason_is_one_clean_line(message: str, expected: str) -> None:
    assert short_reason(RuntimeError(message), ["sekret"]) == expected
