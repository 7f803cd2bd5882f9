"""The state-store interface. One contract, two implementations (SQLite, MongoDB).

Every task transition goes through `update_task`, a conditional write that checks
the task's current state and attempt: a write based on a stale read fails (returns
False) instead of overwriting. The master persists before it acknowledges.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from cloudai.model import (
    DecisionRecord,
    Result,
    Task,
    TaskState,
    WorkerHealth,
    WorkerRecord,
)

# Bound on a stored log tail (bytes of UTF-8 text). Longer logs keep their end.
MAX_LOG_TAIL = 64 * 1024


class Store(ABC):
    """Durable cluster state. Implementations must be safe to call from many threads."""

    #: Human-readable location, e.g. "sqlite:///var/lib/cloudai.db". Never includes secrets.
    url: str

    @abstractmethod
    def close(self) -> None: ...

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group writes: a backend may commit them together when the block ends (SQLite
        does, in one transaction). Callers acknowledge nothing until the block exits.
        The default runs each write on its own, which is always correct."""
        yield

    # -- workers -------------------------------------------------------------
    @abstractmethod
    def upsert_worker(self, worker: WorkerRecord) -> None: ...

    @abstractmethod
    def get_worker(self, worker_id: str) -> WorkerRecord | None: ...

    @abstractmethod
    def list_workers(self) -> list[WorkerRecord]: ...

    @abstractmethod
    def set_worker_health(self, worker_id: str, health: WorkerHealth, at: float) -> bool:
        """Set health and last-seen time. False if the worker is unknown."""

    @abstractmethod
    def set_worker_left(self, worker_id: str, at: float) -> bool:
        """Record that the worker said it shut down at `at` (0 clears it); its health
        is left as it is. A new registration (upsert_worker) clears it too. False if
        the worker is unknown."""

    @abstractmethod
    def add_telemetry_sample(self, worker_id: str, at: float, sample: dict) -> None:
        """Append one sampled telemetry point (the master samples; it does not store every beat)."""

    @abstractmethod
    def telemetry_history(self, worker_id: str, limit: int = 100) -> list[tuple[float, dict]]:
        """The newest `limit` samples of a worker, oldest first. limit=0 means all."""

    @abstractmethod
    def trim_telemetry(self, before: float) -> int:
        """Delete the telemetry samples taken before `before`; returns how many."""

    # -- tasks ---------------------------------------------------------------
    @abstractmethod
    def create_task(self, task: Task) -> None:
        """Insert a new task. Raises cloudai.errors.Conflict if the id exists."""

    @abstractmethod
    def get_task(self, task_id: str) -> Task | None: ...

    @abstractmethod
    def list_tasks(
        self,
        states: Iterable[TaskState] | None = None,
        worker_id: str | None = None,
        limit: int = 0,
        owner: str | None = None,
    ) -> list[Task]:
        """Tasks ordered by creation time (oldest first; ties by id). limit=0 means no
        limit; with a limit, the *newest* `limit` tasks are returned, still oldest first.
        states=None means any state; an empty `states` matches nothing. owner=None
        means any owner; otherwise only tasks whose spec.owner equals it (the limit
        applies after this filter)."""

    @abstractmethod
    def update_task(self, task: Task, expect_state: TaskState, expect_attempt: int) -> bool:
        """Replace the stored task iff its stored state and attempt equal the expected
        ones. Returns False (and writes nothing) otherwise."""

    @abstractmethod
    def count_tasks_by_state(self) -> dict[str, int]:
        """Task count per state value; every TaskState is a key, 0 when none."""

    @abstractmethod
    def delete_finished_tasks(self, before: float, limit: int = 0) -> int:
        """Delete the tasks in a terminal state that ended (`updated_at`) before
        `before`, with their results (and so their log tails) and decisions; never a
        task that is not terminal. At most `limit` tasks (0: all), in batches of
        retention.BATCH, each written on its own. Returns how many tasks."""

    # -- results -------------------------------------------------------------
    @abstractmethod
    def put_result(self, result: Result) -> None:
        """Insert or replace the result of (task_id, attempt). log_tail is cut to MAX_LOG_TAIL."""

    @abstractmethod
    def get_results(self, task_id: str) -> list[Result]:
        """All stored results of a task, by attempt number."""

    # -- decisions -----------------------------------------------------------
    @abstractmethod
    def add_decision(self, decision: DecisionRecord) -> None: ...

    @abstractmethod
    def list_decisions(self, task_id: str, limit: int = 20) -> list[DecisionRecord]:
        """Decisions of one task, newest first. limit=0 means all."""

    @abstractmethod
    def iter_decisions(self, since: float = 0.0, limit: int = 0) -> list[DecisionRecord]:
        """Decisions made at or after `since`, oldest first (training data).
        limit=0 means no limit; otherwise the oldest `limit` such decisions."""


def cut_log_tail(text: str, limit: int = MAX_LOG_TAIL) -> str:
    """Keep the last `limit` bytes of text, on a character boundary."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    return data[-limit:].decode("utf-8", "ignore")
