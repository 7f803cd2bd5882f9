"""QA pass 8 (store): a MongoDB URI that names its user and leaves the password to
MONGODB_PASSWORD (or CLOUDAI_MONGODB_PASSWORD), which keeps the secret out of the URI.
The master refused it as 'invalid MongoDB URI ...: A password is required'."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudai.master.store import SQLiteStore, open_store
from cloudai.master.store.mongo import with_credentials

SECRET = "s3cr/t@p:ss"
QUOTED = "s3cr%2Ft%40p%3Ass"


@pytest.mark.parametrize(
    ("uri", "user", "expected"),
    [
        ("mongodb://cloudai@h:27017/", "cloudai", f"mongodb://cloudai:{QUOTED}@h:27017/"),
        ("mongodb://cloudai@h/", None, f"mongodb://cloudai:{QUOTED}@h/"),
        ("mongodb://a%40b@h/", "a@b", f"mongodb://a%40b:{QUOTED}@h/"),
        # Not this user's password: the URI's user is left as written.
        ("mongodb://cloudai@h/", "alice", "mongodb://cloudai@h/"),
        # Mechanisms that take no password.
        ("mongodb://CN%3Dme@h/?authMechanism=MONGODB-X509", None, None),
        ("mongodb://me%40REALM@h/?authmechanism=GSSAPI", "me@REALM", None),
    ],
)
def test_a_uri_naming_its_user_gets_the_configured_password(uri, user, expected) -> None:
    assert with_credentials(uri, user, SECRET) == (expected or uri)


def test_the_master_opens_such_a_uri_and_masks_the_password(tmp_path: Path) -> None:
    """As the master calls it: unreachable here, so it falls back with one warning
    line instead of refusing a URI it was told how to complete."""
    warnings: list[str] = []
    store = open_store(
        "mongodb://cloudai@127.0.0.1:1/?serverSelectionTimeoutMS=200",
        mongo_username="cloudai",
        mongo_password=SECRET,
        fallback_sqlite_path=tmp_path / "fallback.db",
        warn=warnings.append,
    )
    try:
        assert isinstance(store, SQLiteStore)
    finally:
        store.close()
    (line,) = warnings
    assert line.startswith("MongoDB unreachable at mongodb://cloudai:***@127.0.0.1:1/")
    assert SECRET not in line and QUOTED not in line and "\n" not in line


def test_a_document_bson_refuses_is_a_store_error_not_a_raw_exception():
    """Text with a lone surrogate (or a document over 16 MiB, an integer over 8 bytes)
    is refused by the driver's BSON encoding, which raises no PyMongoError: the master
    answered "internal error". It is a StoreError naming the cause now. Over the
    mongomock STAND-IN, which encodes as the driver does for this case."""
    import mongomock

    from cloudai.errors import StoreError
    from cloudai.master.store import MongoStore
    from tests.store.builders import make_task

    store = MongoStore("mongodb://mongomock.invalid/", client=mongomock.MongoClient())
    task = make_task("t1")
    task.spec.env = {"K": "\udc80"}
    with pytest.raises(StoreError, match=r"create_task failed .*cannot be stored .*surrogates"):
        store.create_task(task)
    assert store.get_task("t1") is None
