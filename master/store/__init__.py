"""State stores: the `Store` contract, its SQLite and MongoDB backends, and
`open_store`, which picks one from a URL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cloudai.errors import ConfigError, Unavailable

from .base import MAX_LOG_TAIL, Store, cut_log_tail
from .mongo import MongoStore, mask_uri, ping, with_credentials
from .sqlite import MEMORY, SQLiteStore

__all__ = [
    "MAX_LOG_TAIL",
    "MongoStore",
    "SQLiteStore",
    "Store",
    "cut_log_tail",
    "mask_uri",
    "open_store",
]

#: How long open_store waits for MongoDB before falling back to SQLite.
MONGO_PING_TIMEOUT_S = 2.0
_SQLITE_PREFIX = "sqlite:///"
_MONGO_SCHEMES = ("mongodb://", "mongodb+srv://")


def sqlite_path(url: str) -> str:
    """The file path (or ":memory:") named by a sqlite URL or a bare path.

    sqlite:////abs/x.db -> /abs/x.db, sqlite:///rel/x.db -> rel/x.db,
    sqlite://:memory: -> :memory:, /abs/x.db -> /abs/x.db.
    """
    if url in ("sqlite://:memory:", "sqlite:///:memory:", MEMORY):
        return MEMORY
    if url.startswith(_SQLITE_PREFIX):
        path = url[len(_SQLITE_PREFIX) :]
    elif "://" in url:
        raise ConfigError(
            f"unsupported store URL {mask_uri(url)!r}: use sqlite:///PATH (three slashes), "
            "sqlite://:memory:, a plain file path, or mongodb://HOST[:PORT] / mongodb+srv://HOST"
        )
    else:
        path = url
    if not path.strip():
        raise ConfigError(f"store URL {url!r} names no SQLite file")
    return path


def open_store(
    url: str,
    *,
    mongo_username: str | None = None,
    mongo_password: str | None = None,
    fallback_sqlite_path: str | Path | None = None,
    warn: Callable[[str], object] = print,
    exclusive: bool = False,
) -> Store:
    """Open the store named by `url`.

    sqlite:///PATH, sqlite://:memory: or a bare path open a SQLiteStore.
    mongodb:// and mongodb+srv:// open a MongoStore; credentials given here are
    inserted into a URI that has none. If MongoDB does not answer within
    MONGO_PING_TIMEOUT_S, one line goes to `warn` and a SQLiteStore at
    `fallback_sqlite_path` is returned (ConfigError if there is none).
    Anything else raises ConfigError. `exclusive`: a master's SQLite file or MongoDB
    database, which a second master may not use (StoreError; mongo_lease.py).
    """
    if not url or not url.strip():
        raise ConfigError("no store URL configured")
    url = url.strip()
    if url.startswith(_MONGO_SCHEMES):
        fallback = fallback_sqlite_path
        return _open_mongo(url, mongo_username, mongo_password, fallback, warn, exclusive)
    return SQLiteStore(sqlite_path(url), exclusive=exclusive)


def _open_mongo(
    url: str,
    username: str | None,
    password: str | None,
    fallback: str | Path | None,
    warn: Callable[[str], object],
    exclusive: bool,
) -> Store:
    uri = with_credentials(url, username, password)
    masked = mask_uri(uri)
    try:
        ping(uri, MONGO_PING_TIMEOUT_S)
    except Unavailable as err:
        if fallback is None:
            raise ConfigError(
                f"MongoDB unreachable at {masked}: {err}; and no fallback SQLite path is set"
            ) from err
        store = SQLiteStore(fallback, exclusive=exclusive)
        reason = " ".join(str(err).split())  # one line, whatever the driver said
        warn(f"MongoDB unreachable at {masked}: {reason}; falling back to SQLite at {store.path}")
        return store
    return MongoStore(uri, exclusive=exclusive, say=warn)
