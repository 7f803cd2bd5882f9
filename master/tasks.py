"""Task lifecycle: the queue, placement commits, worker reports, requeues and cancels.

Every transition is a conditional write to the store (state and attempt checked)
made *before* anyone is told about it. The in-memory index holds only non-terminal
tasks, so a restart on a store with 100,000 finished tasks loads just the live ones.

    PENDING -> PLACED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED | TIMED_OUT
       ^         |          |
       +---------+----------+   worker lost, refused dispatch, or retryable failure
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from cloudai.errors import Conflict, NotFound, StoreError
from cloudai.model import (
    Attempt,
    DecisionRecord,
    Reason,
    Resources,
    Result,
    Task,
    TaskSpec,
    TaskState,
    new_task_id,
)

from .live import LiveIndex
from .registry import WorkerRegistry, engine_trouble_text
from .reports import Report
from .retry import (
    HOPELESS,
    MAX_DISPATCH_FAILURES,
    TRANSIENT,
    backoff,
    dispatch_backoff,
    dispatch_failures,
)
from .store.base import Store


def _copy(task: Task) -> Task:
    return task.clone()


class TaskManager:
    def __init__(
        self,
        store: Store,
        registry: WorkerRegistry,
        *,
        max_worker_losses: int = 3,
        max_transient_retries: int = 3,
        max_dispatch_failures: int = MAX_DISPATCH_FAILURES,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._max_losses = max_worker_losses
        self._max_transient = max_transient_retries
        self._max_dispatch_failures = max_dispatch_failures
        self._on_change = on_change
        self._lock = threading.RLock()
        self._live = LiveIndex()
        self._reload()

    # -- reads -----------------------------------------------------------------
    def get(self, task_id: str) -> Task:
        with self._lock:
            task = self._live.get(task_id)
            if task is not None:
                return _copy(task)
        task = self._store.get_task(task_id)
        if task is None:
            raise NotFound(f"no task {task_id!r}")
        return task

    def pending(self, now: float | None = None, *, pinned: bool | None = None) -> list[Task]:
        """PENDING tasks whose retry backoff has elapsed, oldest first: only those
        pinned to a worker (pinned=True), only the others (False), or all."""
        now = time.time() if now is None else now
        with self._lock:
            return self._live.pending(now, pinned=pinned)

    def next_wakeup(self) -> float | None:
        """Earliest future queued_at among backed-off tasks (for the scheduler's timer)."""
        with self._lock:
            return self._live.next_wakeup(time.time())

    def came_due_at(self) -> float:
        """The latest queued_at among backed-off tasks next_wakeup has found due."""
        with self._lock:
            return self._live.came_due_at

    def allocated(self, worker_id: str) -> Resources:
        with self._lock:
            return self._live.allocated(worker_id)

    def active_worker_ids(self) -> set[str]:
        """Workers that hold PLACED or RUNNING tasks."""
        with self._lock:
            return self._live.active_worker_ids()

    def live_on(self, worker_id: str) -> list[Task]:
        with self._lock:
            return [_copy(t) for t in self._live.on_worker(worker_id)]

    def is_current(self, task_id: str, attempt: int) -> bool:
        with self._lock:
            t = self._live.get(task_id)
            return t is not None and t.attempt == attempt and t.state.active

    # -- submit ------------------------------------------------------------------
    def submit(self, spec: TaskSpec) -> Task:
        now = time.time()
        task = Task(id=new_task_id(), spec=spec, created_at=now, updated_at=now, queued_at=now)
        with self._lock:
            self._store.create_task(task)  # persisted before the id is returned
            self._index(task)
        self._on_change()
        return _copy(task)

    # -- placement -----------------------------------------------------------------
    @contextmanager
    def batch(self) -> Iterator[None]:
        """Commit many transitions in one store transaction. If it fails, the live
        index is reloaded from the store so memory never runs ahead of it."""
        with self._lock:
            try:
                with self._store.batch():
                    yield
            except BaseException:
                self._reload()
                raise

    def _reload(self) -> None:
        self._live.clear()
        live = [TaskState.PENDING, TaskState.PLACED, TaskState.RUNNING]
        for task in self._store.list_tasks(states=live):
            self._index(task)

    def commit_placement(
        self, task_id: str, attempt: int, worker_id: str, decision: DecisionRecord | None
    ) -> tuple[Task | None, str]:
        """Validate and commit one placement on its own. Returns (placed task, "") or
        (None, reason) for a stale or invalid placement; the task then stays queued."""
        with self._lock:
            task = self._live.get(task_id)
            reason = self._placement_problem(task, attempt, worker_id)
            if reason:
                self._record(decision, committed=False, reject_reason=reason)
                return None, reason
            assert task is not None
            new = task.evolve()
            now = time.time()
            new.state, new.attempt, new.worker_id, new.updated_at = (
                TaskState.PLACED,
                task.attempt + 1,
                worker_id,
                now,
            )
            new.attempts.append(Attempt(number=new.attempt, worker_id=worker_id, placed_at=now))
            self._write(new, task)
            if decision is not None:
                decision.attempt = new.attempt
            self._record(decision, committed=True)
            # The live index never mutates a task in place (copy on write), so the
            # placed task is handed out as is; the dispatcher only reads it.
            return new, ""

    def _placement_problem(self, task: Task | None, attempt: int, worker_id: str) -> str:
        if task is None:
            return "task is not pending (unknown or finished)"
        if task.state != TaskState.PENDING:
            return f"task is {task.state.value}, not PENDING"
        if attempt != task.attempt:
            return f"stale placement: task is at attempt {task.attempt}, placement names {attempt}"
        entry = self._registry.get(worker_id)
        if entry is None or not entry.registered:
            return f"worker {worker_id!r} is not registered"
        if entry.left_at:
            return f"worker {worker_id!r} shut down"
        if not entry.healthy:
            return f"worker {worker_id!r} is {entry.record.health.value.lower()}"
        if task.spec.pinned_worker and task.spec.pinned_worker != worker_id:
            return f"task is pinned to {task.spec.pinned_worker!r}"
        # A task pinned to the worker is still sent: it has its own bound on failures.
        if entry.unreachable is not None and not task.spec.pinned_worker:
            return entry.unreachable.describe(worker_id)
        if entry.engine_trouble:  # pinned or not: it would only be refused
            return engine_trouble_text(worker_id, entry.engine_trouble)
        for key, value in task.spec.selector.items():
            if entry.record.labels.get(key) != value:
                return f"worker {worker_id!r} lacks label {key}={value}"
        free = entry.record.capacity - self._live.allocated(worker_id)
        if not task.spec.resources.fits_in(free):
            need = _fmt(task.spec.resources)
            return f"task does not fit worker {worker_id!r} (free {_fmt(free)}, needs {need})"
        return ""

    def record_unplaced(self, decision: DecisionRecord) -> None:
        """Keep the latest reason a task could not be placed (what `explain` shows)."""
        with self._lock:
            if decision.task_id in self._live:
                self._record(decision, committed=False, reject_reason="unplaced")

    def dispatch_failed(
        self, task_id: str, attempt: int, message: str, *, unreachable: bool = False
    ) -> None:
        """The worker refused the task or could not be reached. Like a worker loss this
        spends no retry, and it has its own bound: the task goes back to the queue with
        a backoff that doubles with each dispatch failure in a row (avoiding that worker
        for a while), except that a task pinned to the worker fails once it has failed
        `max_dispatch_failures` times in a row: it could wait for ever otherwise."""
        with self._lock:
            task = self._live.get(task_id)
            if task is None or task.attempt != attempt or task.state != TaskState.PLACED:
                return
            new = task.evolve()
            self._end_attempt(new, TaskState.FAILED, None, Reason.WORKER_REJECTED, message)
            failures = dispatch_failures(new)
            if new.spec.pinned_worker and failures >= self._max_dispatch_failures:
                self._give_up_dispatch(new, failures, message, unreachable)
            else:
                self._requeue(new, delay=dispatch_backoff(failures), avoid=task.worker_id)
            self._write(new, task)
        self._on_change()

    def _give_up_dispatch(self, task: Task, failures: int, error: str, unreachable: bool) -> None:
        reason = Reason.WORKER_UNREACHABLE if unreachable else Reason.WORKER_REJECTED
        message = (
            f"pinned worker {task.worker_id} could not take the task "
            f"{failures} times in a row; last error: {error}"
        )
        self._fail_pinned(task, reason, message)

    def _fail_pinned(self, task: Task, reason: Reason, message: str) -> None:
        """FAILED for good, with a result naming the pinned worker."""
        task.state, task.reason, task.message = TaskState.FAILED, reason, message
        result = Result(task.id, task.attempt, TaskState.FAILED, reason=reason)
        result.message, result.worker_id = message, task.spec.pinned_worker
        result.finished_at = time.time()
        self._store.put_result(result)

    def fail_pinned_to_gone(self, gone: Callable[[str], str]) -> list[str]:
        """Fail the queued tasks pinned to a worker that is gone for good; `gone(id)`
        says how ("" while it may still come back). Placement never sends a pinned
        task elsewhere, so such a task would wait for ever."""
        failed = []
        with self._lock:
            for task in self._live.pending(math.inf, pinned=True):
                how = gone(task.spec.pinned_worker)
                if not how:
                    continue
                new = task.evolve()
                message = (
                    f"pinned worker {task.spec.pinned_worker} {how}; submit the task again, "
                    "without --worker or pinned to a live worker"
                )
                self._fail_pinned(new, Reason.WORKER_LOST, message)
                self._write(new, task)
                failed.append(task.id)
        if failed:
            self._on_change()
        return failed

    # -- worker reports ------------------------------------------------------------
    def report(self, r: Report) -> tuple[bool, str]:
        """Apply a worker's report. (accepted, message); a stale attempt is refused."""
        with self._lock:
            task = self._live.get(r.task_id)
            if task is None:
                return self._report_on_finished(r)
            if r.attempt != task.attempt:
                return False, _not_current(r, task.attempt)
            if task.worker_id != r.worker_id:
                return False, f"task {r.task_id} attempt {r.attempt} is not held by {r.worker_id}"
            if r.state == TaskState.RUNNING:
                return self._mark_running(task, r)
            if not r.state.terminal:
                return False, f"cannot report state {r.state.value}"
            self._finish(task, r)
        self._on_change()
        return True, "recorded"

    def _report_on_finished(self, r: Report) -> tuple[bool, str]:
        stored = self._store.get_task(r.task_id)
        if stored is None:
            return False, f"unknown task {r.task_id!r}"
        if stored.attempt == r.attempt and stored.worker_id == r.worker_id:
            # Already terminal (e.g. cancelled, or a repeated report): keep the result, ack.
            if r.state.terminal and not any(
                x.attempt == r.attempt for x in self._store.get_results(r.task_id)
            ):
                self._store.put_result(r.result())
            return True, f"task already {stored.state.value}"
        if stored.attempt == r.attempt:  # it ended without this worker (lost, then failed)
            why = f", {stored.reason}" if stored.reason else ""
            return False, f"task already ended ({stored.state.value}{why}) without {r.worker_id}"
        return False, _not_current(r, stored.attempt)

    def _mark_running(self, task: Task, r: Report) -> tuple[bool, str]:
        if task.state == TaskState.RUNNING:
            return True, "already running"
        new = task.evolve()
        new.state, new.updated_at = TaskState.RUNNING, time.time()
        if new.current:
            new.current.state = TaskState.RUNNING
            new.current.started_at = r.started_at or time.time()
        self._write(new, task)
        return True, "recorded"

    def _finish(self, task: Task, r: Report) -> None:
        self._store.put_result(r.result())
        new = task.evolve()
        new.exit_code = r.exit_code
        self._end_attempt(new, r.state, r.exit_code, r.reason, r.message, r)
        delay = self._spend_retry(new, r)
        if delay is None:
            new.state, new.reason, new.message = r.state, r.reason, r.message
        else:
            self._requeue(new, delay=delay)
        self._write(new, task)

    def _spend_retry(self, task: Task, r: Report) -> float | None:
        """Spend a retry on a failed attempt and return its backoff, or None if the
        failure is final. Engine trouble (pull_failed, docker_error) first uses its own
        bound, so a registry blip does not eat the user's --retries."""
        if r.state != TaskState.FAILED or r.reason in HOPELESS:
            return None
        if r.reason in TRANSIENT and task.transient_failures < self._max_transient:
            task.transient_failures += 1
            return backoff(task.transient_failures)
        if task.retries_used >= task.spec.max_retries:
            return None
        task.retries_used += 1
        if r.reason == Reason.OOM_KILLED:
            self._grow_memory(task, r.peak_memory_bytes)
        return backoff(task.retries_used)

    def _grow_memory(self, task: Task, peak: int = 0) -> None:
        """After an OOM kill, ask for twice the memory, up to the largest worker. A task
        that asked for none ran under the worker's default limit, which its peak shows."""
        largest = max((e.record.capacity.memory_bytes for e in self._registry.all()), default=0)
        current = task.spec.resources.memory_bytes or peak or 256 * 1024**2
        task.spec = task.spec.clone()  # the spec is shared with the previous version
        task.spec.resources.memory_bytes = min(current * 2, largest) if largest else current * 2

    # -- worker loss, cancel -------------------------------------------------------
    def worker_lost(self, worker_id: str) -> list[str]:
        """Requeue the PLACED and RUNNING tasks of a lost worker; quarantine poison tasks."""
        moved = []
        with self._lock:
            for task in self._live.on_worker(worker_id):
                new = task.evolve()
                msg = f"worker {worker_id} lost (missed heartbeats)"
                self._end_attempt(new, TaskState.FAILED, None, Reason.WORKER_LOST, msg)
                new.worker_losses += 1
                if new.worker_losses >= self._max_losses:
                    new.state, new.reason = TaskState.FAILED, Reason.POISON
                    new.message = f"quarantined: {new.worker_losses} workers lost while running it"
                else:
                    self._requeue(new, delay=0.0, avoid=worker_id)
                self._write(new, task)
                moved.append(task.id)
        if moved:
            self._on_change()
        return moved

    def reconcile(self, worker_id: str, running: set[tuple[str, int]], grace_s: float) -> list[str]:
        """Requeue tasks the master believes run on `worker_id` but the worker does not
        report (a dispatch lost in a master crash, a worker restarted without its
        containers). Workers list an attempt until its final report is acknowledged."""
        now = time.time()
        orphans = []
        with self._lock:
            for task in self._live.on_worker(worker_id):
                cur = task.current
                if (task.id, task.attempt) in running or (cur and now - cur.placed_at < grace_s):
                    continue
                new = task.evolve()
                msg = f"worker {worker_id} no longer runs attempt {task.attempt}"
                self._end_attempt(new, TaskState.FAILED, None, Reason.WORKER_LOST, msg)
                self._requeue(new, delay=0.0)
                self._write(new, task)
                orphans.append(task.id)
        if orphans:
            self._on_change()
        return orphans

    def cancel(self, task_id: str) -> tuple[Task, str]:
        """Cancel a queued or running task. Returns (task, worker_id to kill or "")."""
        with self._lock:
            task = self._live.get(task_id)
            if task is None:
                stored = self._store.get_task(task_id)
                if stored is None:
                    raise NotFound(f"no task {task_id!r}")
                raise Conflict(f"task {task_id} is already {stored.state.value}")
            new = task.evolve()
            worker = task.worker_id if task.state.active else ""
            if new.current and task.state.active:
                self._end_attempt(
                    new, TaskState.CANCELLED, None, Reason.CANCELLED, "cancelled by user"
                )
            new.state, new.reason, new.message = (
                TaskState.CANCELLED,
                Reason.CANCELLED,
                "cancelled by user",
            )
            self._write(new, task)
        self._on_change()
        return _copy(new), worker

    # -- internals -------------------------------------------------------------
    def _end_attempt(
        self,
        task: Task,
        state: TaskState,
        exit_code: int | None,
        reason: str,
        message: str,
        r: Report | None = None,
    ) -> None:
        cur = task.current
        if cur is None:
            return
        cur.state, cur.exit_code, cur.reason, cur.message = state, exit_code, str(reason), message
        cur.finished_at = r.finished_at if r and r.finished_at else time.time()
        if r is not None:
            cur.started_at = r.started_at or cur.started_at
            cur.peak_memory_bytes = r.peak_memory_bytes

    def _requeue(self, task: Task, *, delay: float, avoid: str = "") -> None:
        now = time.time()
        task.state, task.worker_id, task.updated_at = TaskState.PENDING, "", now
        task.queued_at = now + delay
        if avoid and avoid not in task.avoid_workers:
            task.avoid_workers = [*task.avoid_workers, avoid][-8:]

    def _write(self, new: Task, old: Task) -> None:
        new.updated_at = time.time()
        if not self._store.update_task(new, old.state, old.attempt):
            raise StoreError(f"task {new.id} changed underneath the master")
        self._unindex(old)
        self._index(new)

    def _index(self, task: Task) -> None:
        self._live.add(task)

    def _unindex(self, task: Task) -> None:
        self._live.remove(task)

    def _record(
        self, decision: DecisionRecord | None, *, committed: bool, reject_reason: str = ""
    ) -> None:
        if decision is None:
            return
        decision.committed, decision.reject_reason = committed, reject_reason
        # A task left pending is offered again on every change: a repeat of its last
        # stored reason is not stored again (live.py, LiveIndex.repeats).
        if not committed and self._live.repeats(decision):
            return
        self._store.add_decision(decision)


def _fmt(r: Resources) -> str:
    return f"cpu={r.cpu:g}, mem={r.memory_bytes / 1024**2:.0f}MiB, gpu={r.gpu:g}"


def _not_current(r: Report, attempt: int) -> str:
    """Why a report for another attempt than the task's is refused."""
    if r.attempt > attempt:  # e.g. attempt 1 of a task never dispatched (attempt 0)
        return f"attempt {r.attempt} of task {r.task_id} was never dispatched"
    return f"attempt {r.attempt} is superseded by attempt {attempt}"
