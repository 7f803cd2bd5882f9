"""One master per MongoDB database: a lease document, as SQLite's file lock is.

Two masters on one database would each schedule the same queue and declare the
other's workers lost. A master holds the document `{_id: "master"}` in the
`master_lease` collection while it runs: it takes it when the document is missing,
expired, or its own; renews it every third of LEASE_TTL_S; and deletes it when it
closes. A second master waits one TTL for the holder to renew (a master that was
SIGKILLed stops renewing) and is refused if it does. A holder on this host whose
process is gone is taken over at once, so a local restart does not wait.

A master that cannot renew in time (a network partition, a paused process) stops
using the store until it renews: once its lease has expired another master may hold
it. One that finds the lease held by another has lost it for good, and every store
call says so. Leases compare wall clocks: the masters' hosts must agree on the time
within a few seconds (NTP), as with any lease.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psutil
from pymongo.errors import DuplicateKeyError, PyMongoError

from cloudai.errors import StoreError

log = logging.getLogger("cloudai.master.store")

LEASE_TTL_S = 15.0
LEASE_ID = "master"


class MasterLease:
    """The lease on `collection`, taken by the constructor (StoreError if another
    master holds it) and renewed in a background thread until `release()`."""

    def __init__(
        self,
        collection: Any,
        url: str,
        *,
        ttl_s: float | None = None,
        say: Callable[[str], object] = print,
    ) -> None:
        self._coll, self._url, self._ttl = collection, url, ttl_s or LEASE_TTL_S
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lost = ""  # who took the lease from this master, once it has lost it
        self._valid_until = 0.0
        self._stop = threading.Event()
        self._acquire(say)
        self._thread = threading.Thread(target=self._renew_loop, name="mongo-lease", daemon=True)
        self._thread.start()

    # -- taking it ---------------------------------------------------------------------
    def _acquire(self, say: Callable[[str], object]) -> None:
        deadline, said = time.time() + self._ttl + 1.0, False
        while True:
            other = self._try_take()
            if other is None:
                return
            if _gone_from_this_host(other) and self._take_over(other):
                return
            if time.time() >= deadline:
                raise StoreError(self._refusal(other))
            if not said:
                say(
                    f"MongoDB {self._url} is in use by the master {other.get('holder', '?')}: "
                    f"waiting up to {self._ttl:g}s for its lease to lapse"
                )
                said = True
            time.sleep(min(1.0, self._ttl / 5))

    def _try_take(self) -> dict | None:
        """None once this master holds the lease, else the holder's document."""
        now = time.time()
        mine = {"$or": [{"expires_at": {"$lt": now}}, {"holder": self.holder}]}
        try:
            self._coll.find_one_and_update(
                {"_id": LEASE_ID, **mine}, {"$set": self._doc(now)}, upsert=True
            )
        except DuplicateKeyError:  # the document exists and is another's, unexpired
            return self._coll.find_one({"_id": LEASE_ID}) or {}
        self._valid_until = now + self._ttl
        return None

    def _take_over(self, other: dict) -> bool:
        now = time.time()
        filt = {"_id": LEASE_ID, "holder": other.get("holder")}
        if self._coll.update_one(filt, {"$set": self._doc(now)}).matched_count != 1:
            return False
        self._valid_until = now + self._ttl
        log.info("took over the MongoDB lease of %s: its process is gone", other.get("holder"))
        return True

    def _doc(self, now: float) -> dict:
        host = socket.gethostname()
        return {
            "holder": self.holder,
            "host": host,
            "pid": os.getpid(),
            "expires_at": now + self._ttl,
        }

    def _refusal(self, other: dict) -> str:
        return (
            f"MongoDB {self._url} is in use by another master ({other.get('holder', '?')}, "
            f"which renewed its lease within the last {self._ttl:g}s): run one master per "
            "database, or stop that one first"
        )

    # -- keeping it --------------------------------------------------------------------
    def _renew_loop(self) -> None:
        while not self._stop.wait(self._ttl / 3):
            try:
                self._renew()
            except PyMongoError as err:  # unreachable: check() refuses once it lapses
                log.warning("renewing the MongoDB master lease failed: %s", err)

    def _renew(self) -> None:
        now = time.time()
        filt = {"_id": LEASE_ID, "holder": self.holder}
        if self._coll.update_one(filt, {"$set": {"expires_at": now + self._ttl}}).matched_count:
            self._valid_until = now + self._ttl
            return
        if self._try_take() is None:  # it lapsed and nobody took it: ours again
            return
        doc = self._coll.find_one({"_id": LEASE_ID}) or {}
        self._lost = doc.get("holder", "another master")
        log.error("this master lost its MongoDB lease to %s: it stops using the store", self._lost)
        self._stop.set()

    def check(self) -> None:
        """StoreError unless this master may use the store now."""
        if self._lost:
            raise StoreError(
                f"this master lost its lease on MongoDB {self._url} to {self._lost}: "
                "another master uses the database; restart this one once that one stops"
            )
        if time.time() >= self._valid_until:
            raise StoreError(
                f"this master could not renew its lease on MongoDB {self._url} in time: "
                "it does not use the store until it does"
            )

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._lost:
            return
        try:
            self._coll.delete_one({"_id": LEASE_ID, "holder": self.holder})
        except PyMongoError as err:  # it lapses on its own
            log.warning("releasing the MongoDB master lease failed: %s", err)


def _gone_from_this_host(doc: dict) -> bool:
    """The holder ran on this host and its process no longer runs."""
    pid = doc.get("pid")
    if doc.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    return not psutil.pid_exists(pid)
