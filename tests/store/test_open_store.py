"""open_store: URL parsing, credential handling and the MongoDB-unreachable fallback."""

from __future__ import annotations

import time
from pathlib import Path

import mongomock
import pytest

import cloudai.master.store as store_pkg
from cloudai.errors import ConfigError
from cloudai.master.store import MongoStore, SQLiteStore, mask_uri, open_store
from cloudai.master.store.mongo import with_credentials

UNREACHABLE = "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300"
PASSWORD = "s3cr/t@p:ss"


@pytest.mark.parametrize(
    ("make_url", "expected_rel"),
    [
        pytest.param(lambda d: f"sqlite:///{d}/abs.db", "abs.db", id="sqlite-absolute"),
        pytest.param(lambda d: "sqlite:///data/rel.db", "data/rel.db", id="sqlite-relative"),
        pytest.param(lambda d: f"{d}/bare.db", "bare.db", id="bare-absolute"),
        pytest.param(lambda d: "bare-rel.db", "bare-rel.db", id="bare-relative"),
        pytest.param(lambda d: f"  sqlite:///{d}/pad.db ", "pad.db", id="whitespace"),
    ],
)
def test_sqlite_urls_open_the_named_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_url, expected_rel: str
) -> None:
    monkeypatch.chdir(tmp_path)

    store = open_store(make_url(tmp_path))

    try:
        expected = (tmp_path / expected_rel).resolve()
        assert isinstance(store, SQLiteStore)
        assert Path(store.path) == expected and expected.exists()
        assert store.url == f"sqlite:///{expected}"
    finally:
        store.close()


@pytest.mark.parametrize("url", ["sqlite://:memory:", "sqlite:///:memory:", ":memory:"])
def test_memory_urls_open_a_private_memory_store(url: str) -> None:
    store = open_store(url)
    try:
        assert isinstance(store, SQLiteStore)
        assert store.path == ":memory:" and store.url == "sqlite://:memory:"
    finally:
        store.close()


@pytest.mark.parametrize(
    ("url", "message_part"),
    [
        ("postgres://db/cloudai", "unsupported store URL"),
        ("redis://localhost:6379", "unsupported store URL"),
        ("sqlite://relative.db", "three slashes"),
        ("sqlite:///", "names no SQLite file"),
        ("", "no store URL"),
        ("   ", "no store URL"),
    ],
)
def test_unsupported_urls_raise_config_error(url: str, message_part: str) -> None:
    with pytest.raises(ConfigError, match=message_part):
        open_store(url)


def test_config_error_for_foreign_url_does_not_echo_its_password() -> None:
    with pytest.raises(ConfigError) as info:
        open_store(f"postgres://bob:{PASSWORD}@db/x")
    assert PASSWORD not in str(info.value) and "bob:***@db" in str(info.value)


@pytest.mark.parametrize(
    ("uri", "masked"),
    [
        ("mongodb://host:27017/", "mongodb://host:27017/"),
        ("mongodb://bob:pw@host/db", "mongodb://bob:***@host/db"),
        ("mongodb://bob@host/", "mongodb://bob@host/"),
        ("mongodb+srv://bob:p%40ss@c.example.net/", "mongodb+srv://bob:***@c.example.net/"),
        ("mongodb://bob:pa/ss@wo@h1,h2/?rs=x", "mongodb://bob:***@h1,h2/?rs=x"),  # unescaped
        ("mongodb://bob:pa?ss@h/?app=me@corp", "mongodb://bob:***@h/?app=me@corp"),
        ("mongodb://h/?appname=me@corp", "mongodb://h/?appname=me@corp"),
        (
            "mongodb://h/?tls=true&tlsCertificateKeyFilePassword=k3y",
            "mongodb://h/?tls=true&tlsCertificateKeyFilePassword=***",
        ),
        (
            "mongodb://h/?authMechanismProperties=AWS_SESSION_TOKEN:abc&w=1",
            "mongodb://h/?authMechanismProperties=***&w=1",
        ),
    ],
)
def test_mask_uri_hides_secrets(uri: str, masked: str) -> None:
    assert mask_uri(uri) == masked


@pytest.mark.parametrize(
    ("uri", "user", "password", "expected"),
    [
        ("mongodb://h:27017/", "bob", "pw", "mongodb://bob:pw@h:27017/"),
        ("mongodb://h/", "bob", PASSWORD, "mongodb://bob:s3cr%2Ft%40p%3Ass@h/"),
        ("mongodb+srv://c.net/", "a b", "x", "mongodb+srv://a+b:x@c.net/"),
        ("mongodb://h/", "bob", None, "mongodb://bob@h/"),
        ("mongodb://own:pw@h/", "bob", "other", "mongodb://own:pw@h/"),  # URI wins
        ("mongodb://h/", None, None, "mongodb://h/"),
        ("mongodb://h/?appname=me@corp", "bob", "pw", "mongodb://bob:pw@h/?appname=me@corp"),
    ],
)
def test_with_credentials_inserts_quoted_credentials(
    uri: str, user: str | None, password: str | None, expected: str
) -> None:
    assert with_credentials(uri, user, password) == expected


def test_password_without_username_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="without a username"):
        with_credentials("mongodb://h/", None, "pw")


def test_reachable_mongo_opens_mongo_store_with_credentials_and_masked_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, str] = {}
    server = mongomock.MongoClient()

    def fake_ping(uri: str, timeout_s: float) -> None:
        seen["ping"] = uri

    def fake_mongo_store(uri: str, **kw) -> MongoStore:
        seen["store"], seen["exclusive"] = uri, kw["exclusive"]
        return MongoStore(uri, client=server, **kw)

    monkeypatch.setattr(store_pkg, "ping", fake_ping)
    monkeypatch.setattr(store_pkg, "MongoStore", fake_mongo_store)

    store = open_store("mongodb://db:27017/", mongo_username="bob", mongo_password=PASSWORD)

    assert isinstance(store, MongoStore)
    assert seen["ping"] == seen["store"] == "mongodb://bob:s3cr%2Ft%40p%3Ass@db:27017/"
    assert store.url == "mongodb://bob:***@db:27017/"
    assert seen["exclusive"] is False
    master = open_store("mongodb://db:27017/", exclusive=True)  # a master's: it takes the lease
    assert seen["exclusive"] is True
    assert server.cloudai.master_lease.find_one({"_id": "master"}) is not None
    master.close()
    assert server.cloudai.master_lease.find_one({"_id": "master"}) is None


@pytest.mark.parametrize(
    "uri",
    [
        pytest.param(UNREACHABLE, id="uri-timeout-300ms"),
        pytest.param("mongodb://127.0.0.1:1/", id="default-timeout-2s"),
    ],
)
def test_unreachable_mongo_falls_back_to_sqlite_with_one_warning(tmp_path: Path, uri: str) -> None:
    warnings: list[str] = []
    fallback = tmp_path / "fallback.db"
    started = time.monotonic()

    store = open_store(
        uri,
        mongo_username="bob",
        mongo_password=PASSWORD,
        fallback_sqlite_path=fallback,
        warn=warnings.append,
    )

    elapsed = time.monotonic() - started
    try:
        assert isinstance(store, SQLiteStore) and Path(store.path) == fallback
        assert elapsed < 3.0
        assert len(warnings) == 1
        (line,) = warnings
        assert "\n" not in line
        assert line.startswith("MongoDB unreachable at mongodb://bob:***@127.0.0.1:1/")
        assert line.endswith(f"; falling back to SQLite at {fallback}")
        assert PASSWORD not in line and "s3cr" not in line
        assert PASSWORD not in store.url
    finally:
        store.close()


def test_unreachable_mongo_without_fallback_path_is_a_config_error() -> None:
    warnings: list[str] = []
    with pytest.raises(ConfigError) as info:
        open_store(UNREACHABLE, mongo_username="bob", mongo_password=PASSWORD, warn=warnings.append)
    assert "no fallback SQLite path" in str(info.value)
    assert "s3cr" not in str(info.value)
    assert warnings == []
