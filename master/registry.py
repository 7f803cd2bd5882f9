"""The worker registry: registrations (persisted) and heartbeats (in memory).

Only registration and health changes reach the store, plus a telemetry sample per
worker every `sample_s` seconds; everything else a heartbeat carries stays in memory,
so the master absorbs thousands of heartbeats a second.

The store is never called while the registry's lock is held: the task manager reads
the registry in the middle of a store transaction, so holding both the other way
round would deadlock. Health writes go through `_persist_health`, which writes the
latest state in turn, so the store ends with the last health whatever the order (a
drain is written under the same lock, before it is in effect: see `set_drain`).

A worker whose heartbeats arrive but that the master cannot call (a wrong or
firewalled address) is marked unreachable, in memory only: placement leaves it out
until the dispatcher reaches it again. A new registration clears the mark.

A worker that stops gracefully says so (a heartbeat with `leaving`): it turns INACTIVE
at once, so placement leaves it out, and its id is free for a restart at another
address. When it left is stored (`left_at`, kept until it registers again), so that a
restarted master knows it shut down; its health in the store is not changed by the
leave. Its tasks are not lost yet: it leaves its containers running for a restarted
worker to re-adopt, so they wait for the heartbeat timeout as a silent worker's do
(`expire`), and only then is the worker lost (and INACTIVE in the store).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace

import grpc

from cloudai.errors import CloudAIError, StoreError
from cloudai.model import Resources, WorkerHealth, WorkerRecord
from cloudai.proto import common_pb2 as pb

from . import retry
from .store.base import Store
from .throttle import Throttle

log = logging.getLogger("cloudai.master")


class WorkerIdInUse(CloudAIError):
    """A registration for an id that another live worker holds."""

    code = grpc.StatusCode.ALREADY_EXISTS


@dataclass(frozen=True, slots=True)
class Unreachable:
    """The master could not call the worker: since when, left out of placement until
    when, after how many failed checks in a row (dispatches and probes), and why."""

    since: float
    until: float
    failures: int
    error: str

    def describe(self, worker_id: str, now: float | None = None) -> str:
        wait = max(0.0, self.until - (time.time() if now is None else now))
        return (
            f"worker {worker_id!r} is unreachable (last dispatch failed: {self.error}); "
            f"retrying it in {wait:.0f}s"
        )


def engine_trouble_text(worker_id: str, trouble: str) -> str:
    """Why placement leaves the worker out, for `explain` and refused placements."""
    return f"worker {worker_id!r} cannot run containers now: {trouble}"


@dataclass(slots=True)
class WorkerEntry:
    record: WorkerRecord
    telemetry: pb.Telemetry = field(default_factory=pb.Telemetry)
    running: list[tuple[str, int]] = field(default_factory=list)
    cached_images: list[str] = field(default_factory=list)
    # Registered with this master process (False for records loaded from the store
    # after a restart: those workers are asked to register again).
    registered: bool = False
    # When this master loaded it from the store (0: registered with this master): the
    # heartbeat timeout counts from then until it is heard from (`silent_since`).
    loaded_at: float = 0.0
    last_sample: float = 0.0
    drain_requested: bool = False
    # Set while the master cannot reach the worker; replaced, never changed in place.
    unreachable: Unreachable | None = None
    # When the worker said it was shutting down (0: it did not). Stored; kept until it
    # registers again.
    left_at: float = 0.0
    # It left, and the heartbeat timeout has passed since (`expire`): its tasks are lost.
    expired: bool = False
    # Why the worker cannot run containers now, from its heartbeats ("": it can).
    engine_trouble: str = ""

    @property
    def healthy(self) -> bool:
        return self.record.health == WorkerHealth.ACTIVE

    @property
    def silent_since(self) -> float:
        """Since when the heartbeat timeout counts: its last heartbeat, or for a worker
        not heard from since this master loaded it, the later of that and the load."""
        return max(self.record.last_heartbeat, self.loaded_at)

    @property
    def leaving(self) -> bool:
        """It left, within the heartbeat timeout: it still owns its tasks."""
        return bool(self.left_at) and not self.expired

    @property
    def lost(self) -> bool:
        """INACTIVE, and not because it left within the heartbeat timeout: the tasks
        it held have no owner any more."""
        return self.record.health == WorkerHealth.INACTIVE and not self.leaving


class WorkerRegistry:
    def __init__(self, store: Store, *, timeout_s: float, sample_s: float = 60.0) -> None:
        self._store = store
        self._timeout = timeout_s
        self._sample_s = sample_s
        self._lock = threading.Lock()
        self._persist = threading.Lock()  # taken before the store, never under _lock
        self._workers: dict[str, WorkerEntry] = {}
        self._sample_log = Throttle()
        self._health_log = Throttle()
        now = time.time()
        for rec in store.list_workers():
            self._workers[rec.id] = _loaded(rec, now)

    def register(
        self,
        rec: WorkerRecord,
        running: list[tuple[str, int]],
        images: list[str],
        telemetry: pb.Telemetry | None,
    ) -> bool:
        """Insert or refresh a worker. Returns True if its health changed (cluster changed).
        Raises WorkerIdInUse while another live worker holds the id (see _holder_problem)."""
        with self._persist:  # one registration at a time: check, persist, publish
            with self._lock:
                old = self._workers.get(rec.id)
                problem = _holder_problem(old, rec, self._timeout)
                draining = bool(old and old.drain_requested)
                rec.health = WorkerHealth.DRAINING if draining else WorkerHealth.ACTIVE
                if old is not None:
                    rec.registered_at = old.record.registered_at
            if problem:
                raise WorkerIdInUse(problem)
            self._store.upsert_worker(rec)  # persisted before the worker is told
            return self._publish(rec, running, images, telemetry, draining)

    def _publish(
        self,
        rec: WorkerRecord,
        running: list[tuple[str, int]],
        images: list[str],
        telemetry: pb.Telemetry | None,
        draining: bool,
    ) -> bool:
        with self._lock:
            old = self._workers.get(rec.id)
            entry = WorkerEntry(
                record=rec,
                running=running,
                cached_images=images[:500],
                registered=True,
                drain_requested=draining,
            )
            if telemetry is not None:
                entry.telemetry = telemetry
            self._workers[rec.id] = entry  # a fresh entry: no unreachable mark
            return (
                old is None
                or old.record.health != rec.health
                or not old.registered
                or old.unreachable is not None
            )

    def heartbeat(
        self,
        worker_id: str,
        telemetry: pb.Telemetry,
        running: list[tuple[str, int]],
        images: list[str],
        address: str = "",
    ) -> tuple[WorkerEntry | None, bool]:
        """Record a heartbeat. Returns (entry, revived); entry is None if the worker is
        unknown, unregistered, or registered at another address than the one this
        heartbeat names (a superseded process: it must register again)."""
        now = time.time()
        with self._lock:
            entry = self._live_entry(worker_id, address)
            # After a leave, only a heartbeat that was in flight can come from that
            # process (a restart registers first): it must not make the worker ACTIVE.
            if entry is None or entry.left_at:
                return None, False
            entry.record.last_heartbeat = now
            entry.telemetry = telemetry
            entry.running = running
            if images:
                entry.cached_images = images[:500]
            revived = entry.record.health == WorkerHealth.INACTIVE
            if revived:
                entry.record.health = (
                    WorkerHealth.DRAINING if entry.drain_requested else WorkerHealth.ACTIVE
                )
            sample = now - entry.last_sample >= self._sample_s
            if sample:
                entry.last_sample = now
        if revived:
            self._persist_health(worker_id)
        if sample:
            self._sample(worker_id, now, telemetry)
        return entry, revived

    def set_engine_trouble(self, worker_id: str, trouble: str) -> bool:
        """What the worker's heartbeat says of its Docker engine ("" when it answers).
        Returns True when that changed whether the worker can take tasks."""
        with self._lock:
            entry = self._workers.get(worker_id)
            if entry is None or entry.engine_trouble == trouble:
                return False
            was, entry.engine_trouble = entry.engine_trouble, trouble
        if trouble and not was:
            log.warning(
                "worker %s cannot run containers: %s; placing nothing on it", worker_id, trouble
            )
        elif was and not trouble:
            log.info("worker %s can run containers again", worker_id)
        return bool(was) != bool(trouble)

    def _sample(self, worker_id: str, now: float, telemetry: pb.Telemetry) -> None:
        """Store a telemetry sample. A failing store loses the sample, not the
        heartbeat: failing it would send the worker back to registering (which needs
        the store too), and lose it at the heartbeat timeout. Logged once per interval."""
        try:
            self._store.add_telemetry_sample(worker_id, now, _telemetry_dict(telemetry))
        except StoreError as err:
            if self._sample_log.ready():
                log.error("storing a telemetry sample of worker %s failed: %s", worker_id, err)

    def leave(self, worker_id: str, address: str = "") -> WorkerEntry | None:
        """The worker is shutting down: INACTIVE from now on, its tasks left to
        `expire`. None if it is unknown or registered at another address. The leave
        is stored (left_at, not the health); if that write fails it is in effect
        still, until a master restart (logged)."""
        now = time.time()
        with self._persist:  # no registration of its restart in between
            with self._lock:
                entry = self._live_entry(worker_id, address)
                if entry is None:
                    return None
                entry.record.last_heartbeat = now
                entry.record.health = WorkerHealth.INACTIVE
                entry.left_at = entry.left_at or now
                entry.unreachable = None  # gone, not unreachable: no probes, no hint
            try:
                self._store.set_worker_left(worker_id, entry.left_at)
            except StoreError as err:
                if self._health_log.ready():
                    log.error("storing that worker %s left failed: %s", worker_id, err)
        return entry

    def _live_entry(self, worker_id: str, address: str) -> WorkerEntry | None:
        """The registered entry of the process at `address` (any, if empty), or None.
        Called with the lock held."""
        entry = self._workers.get(worker_id)
        if entry is None or not entry.registered:
            return None
        if address and address != entry.record.address:
            _log_superseded(worker_id, address, entry.record.address)
            return None
        return entry

    def expire(self) -> list[str]:
        """Mark workers silent for longer than the timeout INACTIVE, and those that
        left, lost; return their ids."""
        now = time.time()
        lost = []
        with self._lock:
            for entry in self._workers.values():
                rec = entry.record
                if entry.lost or now - entry.silent_since <= self._timeout:
                    continue
                rec.health, entry.expired = WorkerHealth.INACTIVE, True
                entry.unreachable = None  # lost now: that says more than the mark
                lost.append(rec.id)
        for worker_id in lost:  # each on its own: one failing write stops no other
            try:
                self._persist_health(worker_id)
            except StoreError as err:  # in effect in memory; a restart expires it again
                if self._health_log.ready():
                    log.error("storing that worker %s is inactive failed: %s", worker_id, err)
        return lost

    def set_drain(self, worker_id: str, drain: bool) -> WorkerEntry | None:
        """Drain the worker or lift it: persisted first, then in effect, so that a
        failing store (StoreError) leaves it as it was, as the caller is told."""
        with self._persist:  # no registration replaces the entry meanwhile
            with self._lock:
                entry = self._workers.get(worker_id)
                if entry is None:
                    return None
                health = _drained(entry.record.health, drain)
                seen, left = entry.record.last_heartbeat, entry.leaving
            if not left:  # a worker that left stays as it was in the store
                self._store.set_worker_health(worker_id, health, seen)
            with self._lock:
                entry.drain_requested = drain
                entry.record.health = _drained(entry.record.health, drain)
        return entry

    def mark_unreachable(
        self, worker_id: str, error: str = "", address: str = "", *, renew: bool = False
    ) -> tuple[Unreachable | None, bool]:
        """A call to the worker failed. Outside a cool-down this starts the next one,
        twice as long as the last (retry.unreachable_cooldown); within one (calls that
        were in flight, pinned tasks) it only keeps the latest error. An empty `error`
        keeps the last one. A failure at another `address` than the registered one
        (the worker registered again meanwhile) is ignored, and so is one with `renew`
        (a failed probe) on a worker that is no longer marked, and one on a worker
        that left or is INACTIVE (a call in flight when it went).
        Returns (the mark or None, whether this call set it on an unmarked worker)."""
        now = time.time()
        with self._lock:
            entry = self._workers.get(worker_id)
            if entry is None or (address and address != entry.record.address):
                return None, False
            if entry.left_at or entry.record.health == WorkerHealth.INACTIVE:
                return None, False
            old = entry.unreachable
            if old is None and renew:
                return None, False
            entry.unreachable = _next_mark(old, error, now)
            return entry.unreachable, old is None

    def mark_reachable(self, worker_id: str) -> bool:
        """The worker answered a call: clear its mark. Returns True if it was marked."""
        entry = self._workers.get(worker_id)
        if entry is None or entry.unreachable is None:  # the common case, lock-free
            return False
        with self._lock:
            entry = self._workers.get(worker_id)
            if entry is None or entry.unreachable is None:
                return False
            entry.unreachable = None
            return True

    def gone_for_good(self, worker_id: str) -> str:
        """How a worker is gone for good ("" if it may come back): lost, that is
        silent past the heartbeat timeout (or left and not back within it). Submit
        refuses an unknown worker, and a worker not yet registered may still come."""
        entry = self._workers.get(worker_id)
        if entry is None or not entry.lost:
            return ""
        if entry.left_at:
            return "shut down and did not come back within the heartbeat timeout"
        return "was lost (no heartbeat within the timeout)"

    def unreachable(self) -> list[tuple[str, Unreachable]]:
        """The workers marked unreachable now, with their marks, by id. Lock-free, as
        get() and all() are (see there): the scheduler calls it once per batch."""
        entries = list(self._workers.values())
        return sorted((e.record.id, m) for e in entries if (m := e.unreachable) is not None)

    def engine_troubled(self) -> list[tuple[str, str]]:
        """The live workers that say they cannot run containers now, with why, by id.
        Lock-free, as unreachable()."""
        entries = list(self._workers.values())
        return sorted(
            (e.record.id, t)
            for e in entries
            if (t := e.engine_trouble) and e.registered and e.record.health != WorkerHealth.INACTIVE
        )

    def _persist_health(self, worker_id: str) -> None:
        with self._persist:
            with self._lock:
                entry = self._workers.get(worker_id)
                # A worker that left stays as it was in the store until it expires.
                if entry is None or entry.leaving:
                    return
                health, seen = entry.record.health, entry.record.last_heartbeat
            self._store.set_worker_health(worker_id, health, seen)

    # get() and all() take no lock, on purpose: the task manager calls them while it
    # holds the store's lock (a batch of placements). Writers here no longer call the
    # store under this lock, but a lock-free read keeps the batch from ever waiting on
    # a heartbeat (the deadlock was found by tests/security/test_fuzz.py). One dict
    # read, or one copy of its values, is atomic under the GIL.
    def get(self, worker_id: str) -> WorkerEntry | None:
        return self._workers.get(worker_id)

    def all(self) -> list[WorkerEntry]:
        return sorted(list(self._workers.values()), key=lambda e: e.record.id)

    def capacity(self, worker_id: str) -> Resources | None:
        entry = self.get(worker_id)
        return entry.record.capacity if entry else None


def _loaded(rec: WorkerRecord, now: float) -> WorkerEntry:
    """A worker known from the store, after a master restart: unregistered, with a
    full timeout to come back (from `now`, loaded_at). One that had left is INACTIVE
    (left_at kept), and already lost if it had been stored INACTIVE (its timeout passed).

    Its last heartbeat is kept only where the store has it right (heartbeats are not
    stored, only health changes): one that left was last heard when it left, and one
    stored INACTIVE when its heartbeats stopped. One stored ACTIVE or DRAINING may have
    beaten until the master stopped: when is not known (0), and no time is made up."""
    stored = rec.health
    entry = WorkerEntry(record=rec, drain_requested=stored == WorkerHealth.DRAINING, loaded_at=now)
    if rec.left_at:
        entry.left_at, entry.expired = rec.left_at, stored == WorkerHealth.INACTIVE
        rec.health, rec.last_heartbeat = WorkerHealth.INACTIVE, rec.left_at
    elif stored != WorkerHealth.INACTIVE:
        rec.last_heartbeat = 0.0
    return entry


def _drained(health: WorkerHealth, drain: bool) -> WorkerHealth:
    """The health after a drain or its undo: an inactive worker stays inactive."""
    if health == WorkerHealth.INACTIVE:
        return health
    return WorkerHealth.DRAINING if drain else WorkerHealth.ACTIVE


def _next_mark(old: Unreachable | None, error: str, now: float) -> Unreachable:
    if old is not None and now < old.until:
        return replace(old, error=error or old.error)
    failures = old.failures + 1 if old else 1
    return Unreachable(
        since=old.since if old else now,
        until=now + retry.unreachable_cooldown(failures),
        failures=failures,
        error=error or (old.error if old else "unknown error"),
    )


def _log_superseded(worker_id: str, address: str, registered: str) -> None:
    log.warning(
        "heartbeat from worker %s at %s, but that id is registered at %s: "
        "asking it to register again",
        worker_id,
        address,
        registered,
    )


def _holder_problem(old: WorkerEntry | None, rec: WorkerRecord, timeout_s: float) -> str:
    """Why `rec` may not take its id: another live worker holds it. Live means heard
    from within the heartbeat timeout by this master process; another address or host
    means another process. A restart at the same address on the same host (the old
    process is gone: the port is free again), a worker that went silent and one that
    said it shut down are fine."""
    if old is None or not old.registered or old.left_at:
        return ""  # unknown, silent since a master restart, or shut down
    held = old.record
    silent_s = time.time() - held.last_heartbeat
    same_host = not held.hostname or not rec.hostname or held.hostname == rec.hostname
    if silent_s > timeout_s or (held.address == rec.address and same_host):
        return ""
    where = held.address if same_host else f"{held.address} on host {held.hostname}"
    return (
        f"worker id {rec.id} is in use by a live worker at {where} (last heartbeat "
        f"{silent_s:.0f}s ago); stop it or pick another --id (the id of a worker that "
        f"stopped is free {timeout_s:g}s after its last heartbeat)"
    )


def _telemetry_dict(t: pb.Telemetry) -> dict:
    return {
        "cpu_percent": t.cpu_percent,
        "memory_percent": t.memory_percent,
        "memory_used_bytes": t.memory_used_bytes,
        "disk_percent": t.disk_percent,
        "gpu_util_percent": list(t.gpu_util_percent),
        "load1": t.load1,
    }
