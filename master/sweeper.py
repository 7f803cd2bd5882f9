"""The sweeper: marks silent workers lost and requeues their tasks; trims telemetry
and deletes finished tasks past their retention.

One pass (`sweep_once`) runs every `interval` seconds. Each worker is handled on its
own: a store write that fails for one (a full disk, a database outage) is logged
(at most once per interval: throttle.py) and the pass goes on with the others. A
lost worker whose tasks could not be requeued is not returned by `registry.expire()`
again (it is INACTIVE by then), but it still holds those tasks, so every later pass
finds it among the owners of live tasks (`_requeue_ownerless`) and tries again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from cloudai.errors import CloudAIError

from .registry import WorkerRegistry
from .store.base import Store
from .tasks import TaskManager
from .throttle import Throttle

log = logging.getLogger("cloudai.master")
TRIM_EVERY_S = 3600.0  # how often old telemetry samples and finished tasks are deleted
# Finished tasks deleted per pass at most: a backlog (a first start with retention on
# a large store) goes over the next passes instead of holding up lost workers' requeue.
TASKS_PER_PASS = 5000
T = TypeVar("T")


class Sweeper:
    def __init__(
        self,
        store: Store,
        registry: WorkerRegistry,
        tasks: TaskManager,
        *,
        heartbeat_timeout: float,
        telemetry_retention_s: float,
        task_retention_s: float = 0.0,
        notify: Callable[[], None],
    ) -> None:
        self._store = store
        self._registry = registry
        self._tasks = tasks
        self._timeout = heartbeat_timeout
        self._retention = telemetry_retention_s
        self._task_retention = task_retention_s  # 0: finished tasks are kept for ever
        self._tasks_due = False  # hourly, and again after a pass that hit TASKS_PER_PASS
        self._notify = notify
        self._trimmed_at = 0.0
        self._log = Throttle()
        self.interval = min(1.0, heartbeat_timeout / 4)

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            self.sweep_once()

    def sweep_once(self) -> None:
        """One pass; never raises a CloudAIError (each step logs its own)."""
        if time.time() - self._trimmed_at >= TRIM_EVERY_S:
            self._trimmed_at = time.time()
            self._guard("trimming old telemetry", self._trim_telemetry)
            self._tasks_due = self._task_retention > 0
        if self._tasks_due:
            self._tasks_due = False  # a failed deletion waits for the next hour
            self._guard("deleting old finished tasks", self._delete_finished)
        for worker_id in self._guard("marking silent workers lost", self._registry.expire) or []:
            moved = self._guard(
                f"requeueing the tasks of lost worker {worker_id}", self._lost, worker_id
            )
            if moved is not None:
                log.warning(
                    "worker %s lost (no heartbeat for %.0fs); requeued %d task(s)",
                    worker_id,
                    self._timeout,
                    len(moved),
                )
            self._notify()  # the cluster changed, whether or not tasks moved
        self._requeue_ownerless()

    def _lost(self, worker_id: str) -> list[str]:
        try:
            return self._tasks.worker_lost(worker_id)
        except CloudAIError:
            self._notify()  # some of its tasks may have moved before the failure
            raise

    def _guard(self, what: str, fn: Callable[..., T], *args: object) -> T | None:
        try:
            return fn(*args)
        except CloudAIError as err:
            if self._log.ready():
                log.error("sweeper: %s failed (tried again on the next pass): %s", what, err)
            return None

    def _trim_telemetry(self) -> None:
        n = self._store.trim_telemetry(time.time() - self._retention)
        if n:
            log.info("deleted %d telemetry sample(s) older than %.0f s", n, self._retention)

    def _delete_finished(self) -> None:
        before = time.time() - self._task_retention
        n = self._store.delete_finished_tasks(before, limit=TASKS_PER_PASS)
        self._tasks_due = n >= TASKS_PER_PASS  # more may be due: go on next pass
        if n:
            log.info("deleted %d finished task(s) older than %.0f s", n, self._task_retention)

    def _requeue_ownerless(self) -> None:
        """Tasks held by a worker that is inactive or unknown have no live owner: a
        master killed between marking a worker lost and requeueing its tasks leaves
        them so, and so does a store write that failed in an earlier pass. Requeue
        them too, so nothing stays RUNNING without an owner. A worker that left (shut
        down) still owns its tasks until its heartbeat timeout."""
        for worker_id in sorted(self._tasks.active_worker_ids()):
            entry = self._registry.get(worker_id)
            if entry is not None and not entry.lost:
                continue
            how = "unknown" if entry is None else "inactive"
            what = f"requeueing the tasks of {how} worker {worker_id}"
            moved = self._guard(what, self._lost, worker_id)
            if moved:
                log.warning(
                    "worker %s is %s: requeued %d task(s) it held", worker_id, how, len(moved)
                )
