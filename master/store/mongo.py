"""MongoDB store (pymongo). Writes use write concern "majority"; every task
transition is a conditional replace on (_id, state, attempt), so the server, not
this process, decides which of two racing writers wins.

Documents are the model's `to_dict()` plus `_id`. pymongo errors are translated
into CloudAI errors here and nowhere else.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, quote_plus, unquote_plus

import pymongo
from bson.errors import BSONError
from pymongo import ASCENDING, DESCENDING, MongoClient
from pymongo.errors import (
    ConfigurationError,
    ConnectionFailure,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
)
from pymongo.write_concern import WriteConcern

from cloudai.errors import ConfigError, Conflict, StoreError, Unavailable
from cloudai.model import (
    DecisionRecord,
    Result,
    Task,
    TaskState,
    WorkerHealth,
    WorkerRecord,
)

from . import retention
from .base import Store, cut_log_tail
from .mongo_lease import MasterLease

#: Used when the URI sets no serverSelectionTimeoutMS: an outage surfaces as a
#: StoreError within seconds instead of pymongo's 30 s default.
DEFAULT_SELECTION_TIMEOUT_MS = 10_000
_AUTH_FAILED = 18
_SECRET_QUERY_KEYS = ("password", "authmechanismproperties", "secret", "token")
_NO_ID = {"_id": False}
# What BSON encoding refuses (a document over 16 MiB, an 8-byte-overflowing integer,
# text with lone surrogates): not PyMongoError, so it would reach the caller raw.
_UNSTORABLE = (BSONError, OverflowError, UnicodeEncodeError)
_NO_PASSWORD_MECHANISMS = ("MONGODB-X509", "GSSAPI", "MONGODB-AWS", "MONGODB-OIDC")
_DNS_FAILURE = re.compile(r"\bDNS\b|resolution lifetime", re.IGNORECASE)


# -- URIs -----------------------------------------------------------------------
def _split_authority(uri: str, lenient: bool = False) -> tuple[str, str, str]:
    """(scheme "://", userinfo, rest). The last "@" before the query ends the
    userinfo, so an unescaped "/" or "@" inside a password is still found.
    `lenient` (masking only) also finds a password holding an unescaped "?":
    over-masking a display string is harmless, leaking a password is not."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return "", "", uri
    at = rest.split("?", 1)[0].rfind("@")
    if at < 0 and lenient:
        at = rest.find("@")
        if ":" not in rest[: max(at, 0)]:
            at = -1  # nothing secret before that "@"
    if at < 0:
        return scheme + sep, "", rest
    return scheme + sep, rest[:at], rest[at + 1 :]


def mask_uri(uri: str) -> str:
    """The URI with its password (and secret query options) replaced by ***."""
    prefix, userinfo, rest = _split_authority(uri, lenient=True)
    if userinfo:
        user, has_pw, _ = userinfo.partition(":")
        rest = f"{user}:***@{rest}" if has_pw else f"{user}@{rest}"
    base, qmark, query = rest.partition("?")
    if qmark:
        parts = []
        for part in query.split("&"):
            key, eq, _ = part.partition("=")
            secret = eq and any(s in key.lower() for s in _SECRET_QUERY_KEYS)
            parts.append(f"{key}=***" if secret else part)
        base = f"{base}?{'&'.join(parts)}"
    return prefix + base


def has_credentials(uri: str) -> bool:
    return bool(_split_authority(uri)[1])


def with_credentials(uri: str, username: str | None, password: str | None) -> str:
    """Insert URL-quoted credentials into a URI that has none. Credentials
    already in the URI win: they were written there on purpose. A URI that names
    only its user (mongodb://cloudai@host, the secret kept out of it) gets the
    password, unless another username is given or its mechanism takes none."""
    if not username and not password:
        return uri
    prefix, userinfo, rest = _split_authority(uri)
    if not prefix:
        raise ConfigError(f"not a MongoDB URI: {mask_uri(uri)}")
    if userinfo:
        return _with_password(uri, userinfo, username, password)
    if not username:
        raise ConfigError("a MongoDB password was given without a username")
    cred = quote_plus(username) + (f":{quote_plus(password)}" if password else "")
    return f"{prefix}{cred}@{rest}"


def _with_password(uri: str, userinfo: str, username: str | None, password: str | None) -> str:
    user, has_pw, _ = userinfo.partition(":")
    other_user = username and unquote_plus(user) != username
    if has_pw or not password or other_user or _passwordless_mechanism(uri):
        return uri
    prefix, _, rest = _split_authority(uri)
    return f"{prefix}{user}:{quote_plus(password)}@{rest}"


def _passwordless_mechanism(uri: str) -> bool:
    query = uri.partition("?")[2]
    return any(
        key.lower() == "authmechanism" and value.upper() in _NO_PASSWORD_MECHANISMS
        for key, value in parse_qsl(query)
    )


def _uri_selection_timeout_ms(uri: str) -> int | None:
    query = uri.partition("?")[2]
    for key, value in parse_qsl(query):
        if key.lower() == "serverselectiontimeoutms":
            try:
                return int(float(value))
            except ValueError:
                return None
    return None


def short_reason(err: BaseException, secrets: Iterable[str] = ()) -> str:
    """One line: pymongo's selection errors carry a multi-line topology dump."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    text = text.split(", Timeout:")[0]
    text = re.sub(r"\s*\(configured timeouts:[^)]*\)", "", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***").replace(quote_plus(secret), "***")
    return text[:200]


def _password_of(uri: str) -> str:
    return _split_authority(uri)[1].partition(":")[2]


def new_client(uri: str, **options: Any) -> MongoClient:
    """A MongoClient, with a malformed URI reported as ConfigError and an
    unresolvable mongodb+srv:// name (resolved right here) as Unavailable."""
    pw = _password_of(uri)
    try:
        with warnings.catch_warnings():
            # pymongo only warns about a bad option value (serverSelectionTimeoutMS=abc)
            # and then ignores it: a typo in the URI is bad input, not a Python warning.
            warnings.simplefilter("error", UserWarning)
            return MongoClient(uri, **options)
    except (ConfigurationError, ValueError, UserWarning) as err:  # bad URIs
        if _DNS_FAILURE.search(str(err)):
            raise Unavailable(short_reason(err, [pw])) from err
        reason = short_reason(err, [pw])
        raise ConfigError(f"invalid MongoDB URI {mask_uri(uri)}: {reason}") from err


def ping(uri: str, timeout_s: float = 2.0) -> None:
    """Check that a MongoDB server answers within `timeout_s` (or the URI's own,
    shorter serverSelectionTimeoutMS). Raises Unavailable, ConfigError (bad URI
    or rejected credentials) or StoreError."""
    ms = int(timeout_s * 1000)
    from_uri = _uri_selection_timeout_ms(uri)
    if from_uri is not None:
        ms = min(ms, from_uri)
    masked, pw = mask_uri(uri), _password_of(uri)
    client = new_client(uri, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms, socketTimeoutMS=ms)
    try:
        client.admin.command("ping")
    except ConnectionFailure as err:  # includes ServerSelectionTimeoutError
        raise Unavailable(short_reason(err, [pw])) from err
    except OperationFailure as err:
        if err.code == _AUTH_FAILED:
            raise ConfigError(f"MongoDB at {masked} rejected the credentials") from err
        raise StoreError(f"MongoDB ping at {masked} failed: {short_reason(err, [pw])}") from err
    except PyMongoError as err:
        raise StoreError(f"MongoDB ping at {masked} failed: {short_reason(err, [pw])}") from err
    finally:
        client.close()


# -- store ----------------------------------------------------------------------
class MongoStore(Store):
    """`Store` over one MongoDB database. Pass `client` to inject a ready client
    (tests pass a mongomock.MongoClient); an injected client is not closed by close()."""

    def __init__(
        self,
        uri: str,
        database: str = "cloudai",
        client: Any = None,
        *,
        exclusive: bool = False,
        say: Callable[[str], object] = print,
    ) -> None:
        self.url = mask_uri(uri)
        self._lease: MasterLease | None = None
        self.database = database
        self._owns_client = client is None
        if client is None:
            options: dict[str, Any] = {}
            if _uri_selection_timeout_ms(uri) is None:
                options["serverSelectionTimeoutMS"] = DEFAULT_SELECTION_TIMEOUT_MS
            client = new_client(uri, **options)
        self._client = client
        with self._errors("connect"):
            db = client.get_database(database)
            majority = WriteConcern("majority")
            self._workers = db.get_collection("workers", write_concern=majority)
            self._tasks = db.get_collection("tasks", write_concern=majority)
            self._results = db.get_collection("results", write_concern=majority)
            self._decisions = db.get_collection("decisions", write_concern=majority)
            self._telemetry = db.get_collection("telemetry", write_concern=majority)
            self._db = db
            self._ensure_indexes()
            if exclusive:  # a master's: one master per database (mongo_lease.py)
                lease = db.get_collection("master_lease", write_concern=majority)
                self._lease = MasterLease(lease, self.url, say=say)

    def _ensure_indexes(self) -> None:
        # create_index is a no-op when the index exists, so this is cheap on restart.
        self._tasks.create_index([("state", ASCENDING), ("created_at", ASCENDING)])
        self._tasks.create_index([("created_at", ASCENDING)])
        self._tasks.create_index([("worker_id", ASCENDING), ("created_at", ASCENDING)])
        self._results.create_index([("task_id", ASCENDING), ("attempt", ASCENDING)])
        self._decisions.create_index([("task_id", ASCENDING), ("decided_at", DESCENDING)])
        self._decisions.create_index([("decided_at", ASCENDING)])
        self._telemetry.create_index([("worker_id", ASCENDING), ("at", ASCENDING)])

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        if self._lease is not None:
            self._lease.check()
        try:
            yield
        except PyMongoError as err:
            raise StoreError(f"MongoDB {action} failed ({self.url}): {short_reason(err)}") from err
        except _UNSTORABLE as err:  # raised by the driver before anything is sent
            raise StoreError(
                f"MongoDB {action} failed ({self.url}): the document cannot be stored "
                f"({type(err).__name__}: {short_reason(err)})"
            ) from err

    def ping(self, timeout_s: float = 2.0) -> None:
        """Raise Unavailable unless the server answers within `timeout_s`."""
        try:
            with pymongo.timeout(timeout_s):
                self._db.command("ping")
        except PyMongoError as err:
            raise Unavailable(f"MongoDB at {self.url}: {short_reason(err)}") from err

    def close(self) -> None:
        lease, self._lease = self._lease, None  # closing needs no lease
        if lease is not None:
            lease.release()
        if self._owns_client:
            with self._errors("close"):
                self._client.close()

    # -- workers ----------------------------------------------------------------
    def upsert_worker(self, worker: WorkerRecord) -> None:
        with self._errors("upsert_worker"):
            doc = {"_id": worker.id, **worker.to_dict()}
            self._workers.replace_one({"_id": worker.id}, doc, upsert=True)

    def get_worker(self, worker_id: str) -> WorkerRecord | None:
        with self._errors("get_worker"):
            doc = self._workers.find_one({"_id": worker_id}, _NO_ID)
        return WorkerRecord.from_dict(doc) if doc else None

    def list_workers(self) -> list[WorkerRecord]:
        with self._errors("list_workers"):
            docs = list(self._workers.find({}, _NO_ID).sort("_id", ASCENDING))
        return [WorkerRecord.from_dict(d) for d in docs]

    def set_worker_health(self, worker_id: str, health: WorkerHealth, at: float) -> bool:
        change = {"health": WorkerHealth(health).value, "last_heartbeat": float(at)}
        with self._errors("set_worker_health"):
            res = self._workers.update_one({"_id": worker_id}, {"$set": change})
        return res.matched_count == 1

    def set_worker_left(self, worker_id: str, at: float) -> bool:
        with self._errors("set_worker_left"):
            res = self._workers.update_one({"_id": worker_id}, {"$set": {"left_at": float(at)}})
        return res.matched_count == 1

    def add_telemetry_sample(self, worker_id: str, at: float, sample: dict) -> None:
        with self._errors("add_telemetry_sample"):
            self._telemetry.insert_one(
                {"worker_id": worker_id, "at": float(at), "sample": dict(sample)}
            )

    def telemetry_history(self, worker_id: str, limit: int = 100) -> list[tuple[float, dict]]:
        with self._errors("telemetry_history"):
            cursor = self._telemetry.find({"worker_id": worker_id}).sort(
                [("at", DESCENDING), ("_id", DESCENDING)]
            )
            docs = list(cursor.limit(limit) if limit > 0 else cursor)
        return [(float(d["at"]), d["sample"]) for d in reversed(docs)]

    def trim_telemetry(self, before: float) -> int:
        with self._errors("trim_telemetry"):
            return self._telemetry.delete_many({"at": {"$lt": float(before)}}).deleted_count

    # -- tasks ------------------------------------------------------------------
    def create_task(self, task: Task) -> None:
        with self._errors("create_task"):
            try:
                self._tasks.insert_one({"_id": task.id, **task.to_dict()})
            except DuplicateKeyError as err:
                raise Conflict(f"task {task.id} already exists") from err

    def get_task(self, task_id: str) -> Task | None:
        with self._errors("get_task"):
            doc = self._tasks.find_one({"_id": task_id}, _NO_ID)
        return Task.from_dict(doc) if doc else None

    def list_tasks(
        self,
        states: Iterable[TaskState] | None = None,
        worker_id: str | None = None,
        limit: int = 0,
        owner: str | None = None,
    ) -> list[Task]:
        query: dict[str, Any] = {}
        if states is not None:
            values = sorted({TaskState(s).value for s in states})
            if not values:
                return []
            query["state"] = {"$in": values}
        if worker_id is not None:
            query["worker_id"] = worker_id
        if owner is not None:
            query["spec.owner"] = owner
        with self._errors("list_tasks"):
            # Newest first so limit keeps the newest N; reversed below to oldest first.
            cursor = self._tasks.find(query, _NO_ID).sort(
                [("created_at", DESCENDING), ("_id", DESCENDING)]
            )
            docs = list(cursor.limit(limit) if limit > 0 else cursor)
        return [Task.from_dict(d) for d in reversed(docs)]

    def update_task(self, task: Task, expect_state: TaskState, expect_attempt: int) -> bool:
        guard = {
            "_id": task.id,
            "state": TaskState(expect_state).value,
            "attempt": int(expect_attempt),
        }
        with self._errors("update_task"):
            res = self._tasks.replace_one(guard, {"_id": task.id, **task.to_dict()})
        # matched, not modified: rewriting an identical document is still a win.
        return res.matched_count == 1

    def count_tasks_by_state(self) -> dict[str, int]:
        counts = {s.value: 0 for s in TaskState}
        with self._errors("count_tasks_by_state"):
            rows = list(self._tasks.aggregate([{"$group": {"_id": "$state", "n": {"$sum": 1}}}]))
        for row in rows:
            counts[row["_id"]] = int(row["n"])
        return counts

    def delete_finished_tasks(self, before: float, limit: int = 0) -> int:
        def one_batch(n: int) -> int:
            with self._errors("delete_finished_tasks"):
                colls = (self._tasks, self._results, self._decisions)
                return retention.mongo_batch(*colls, before, n)

        return retention.in_batches(one_batch, limit)

    # -- results ----------------------------------------------------------------
    def put_result(self, result: Result) -> None:
        doc = result.to_dict()
        doc["log_tail"] = cut_log_tail(result.log_tail)
        # The id is derived from (task_id, attempt), so the upsert cannot race
        # into two documents for one attempt.
        key = f"{result.task_id}/{int(result.attempt)}"
        with self._errors("put_result"):
            self._results.replace_one({"_id": key}, {"_id": key, **doc}, upsert=True)

    def get_results(self, task_id: str) -> list[Result]:
        with self._errors("get_results"):
            docs = list(self._results.find({"task_id": task_id}, _NO_ID).sort("attempt", 1))
        return [Result.from_dict(d) for d in docs]

    # -- decisions --------------------------------------------------------------
    def add_decision(self, decision: DecisionRecord) -> None:
        with self._errors("add_decision"):
            self._decisions.insert_one(decision.to_dict())

    def list_decisions(self, task_id: str, limit: int = 20) -> list[DecisionRecord]:
        with self._errors("list_decisions"):
            cursor = self._decisions.find({"task_id": task_id}, _NO_ID).sort(
                [("decided_at", DESCENDING), ("_id", DESCENDING)]
            )
            docs = list(cursor.limit(limit) if limit > 0 else cursor)
        return [DecisionRecord.from_dict(d) for d in docs]

    def iter_decisions(self, since: float = 0.0, limit: int = 0) -> list[DecisionRecord]:
        with self._errors("iter_decisions"):
            cursor = self._decisions.find({"decided_at": {"$gte": float(since)}}, _NO_ID).sort(
                [("decided_at", ASCENDING), ("_id", ASCENDING)]
            )
            docs = list(cursor.limit(limit) if limit > 0 else cursor)
        return [DecisionRecord.from_dict(d) for d in docs]
